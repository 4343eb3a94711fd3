"""``BridgeNetwork``: a host bridge that carries the host's LAN address, and the hypervisors' views of it.

- the bridge step (``bridge.create.sh.j2``): ifcfg (el7) or NetworkManager keyfiles (el9) for
  boot, plus a live move of the address with ip(8), rolled back if the gateway stops answering;
- on kvm hosts, a libvirt Network in bridge mode (guests plug into the bridge, libvirt manages
  no addresses);
- on docker hosts whose containers need LAN addresses, a Docker network with the bridge driver
  *on the existing bridge*: ``com.docker.network.bridge.name`` makes dockerd adopt the bridge
  instead of creating one, so each container's veth is a port of the LAN bridge, reachable from
  the LAN and from the host itself. ``inhibit_ipv4`` keeps dockerd from putting its gateway
  address on the bridge (the host's address is already there) and masquerading is off, so the
  containers route via the LAN gateway under their own addresses. macvlan/ipvlan with
  ``parent=<bridge>`` would also give LAN addresses, but their containers cannot talk to the
  host they run on, which the host's own checks and the HAProxy tier need.
"""

from __future__ import annotations

import pulumi
import pulumi_command as command
import pulumi_docker as docker
import pulumi_libvirt as libvirt

from ..model import Bridge, DockerGuest, Fleet, Host
from ..remote.scripts import RenderedStep
from ..remote.step import RemoteStep


def docker_bridge_options(bridge: Bridge) -> dict[str, str]:
    return {
        "com.docker.network.bridge.name": bridge.name,
        "com.docker.network.bridge.inhibit_ipv4": "true",
        "com.docker.network.bridge.enable_ip_masquerade": "false",
    }


def docker_network_args(bridge: Bridge) -> dict:
    """The arguments of the host's ``docker.Network`` on ``bridge`` (pure; the L4 tests create the
    same network in a real dockerd from them)."""
    gateway = bridge.gateway or bridge.address.ip
    return {
        "name": bridge.name,
        "driver": "bridge",
        "options": docker_bridge_options(bridge),
        "ipam_configs": [{"subnet": str(bridge.address.network), "gateway": str(gateway)}],
    }


class BridgeNetwork(pulumi.ComponentResource):
    """Type ``virtfleet:host:BridgeNetwork``; ``attach`` adds the hypervisors' networks once the
    host's providers exist."""

    def __init__(
        self,
        host: Host,
        bridge: Bridge,
        *,
        step: RenderedStep,
        connection: command.remote.ConnectionArgs,
        after: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``after``: the host's previous step; children do not inherit a component's depends_on."""
        super().__init__("virtfleet:host:BridgeNetwork", f"{host.name}-{bridge.name}", None, opts)
        self.host = host
        self.bridge = bridge
        self.step = RemoteStep(
            step,
            machine=host.name,
            name=step.name,
            connection=connection,
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )
        self.libvirt_network: libvirt.Network | None = None
        self.docker_network: docker.Network | None = None
        self.register_outputs({"bridge": bridge.name, "address": str(bridge.address)})

    def attach(
        self,
        fleet: Fleet,
        *,
        libvirt_provider: libvirt.Provider | None,
        docker_provider: docker.Provider | None,
        depends_on: list[pulumi.Resource],
    ) -> None:
        bridge, host = self.bridge, self.host
        if libvirt_provider is not None:
            self.libvirt_network = libvirt.Network(
                f"{host.name}-net-{bridge.name}", name=bridge.name, mode="bridge", bridge=bridge.name,
                autostart=True,
                opts=pulumi.ResourceOptions(parent=self, provider=libvirt_provider, depends_on=depends_on),
            )  # fmt: skip
        lan_containers = [
            g for g in fleet.guests_on(host.name)
            if isinstance(g, DockerGuest) and g.network is not None and g.network.bridge == bridge.name
        ]  # fmt: skip
        if docker_provider is not None and lan_containers:
            self.docker_network = docker.Network(
                f"{host.name}-docker-{bridge.name}", **docker_network_args(bridge),
                opts=pulumi.ResourceOptions(parent=self, provider=docker_provider, depends_on=depends_on),
            )  # fmt: skip

"""``HypervisorHost``: one host of the stack, prepared for its roles by remote steps."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker
import pulumi_libvirt as libvirt

from ..connection import connection_for
from ..model import Fleet, Host, Role
from ..remote_step import RemoteStep
from ..secrets import Secrets
from ..steps import render_step


def hosts_entries(fleet: Fleet) -> list[tuple[str, str, str]]:
    """(address, short name, FQDN) of every machine of the stack, for /etc/hosts (the seed's list)."""
    entries = []
    for name in [h.name for h in fleet.hosts] + [g.name for g in fleet.guests]:
        entries.append((fleet.machine_address(name), name, f"{name}.{fleet.domain}"))
    return entries


class HypervisorHost(pulumi.ComponentResource):
    """Type ``virtfleet:host:HypervisorHost``.

    Guests use: ``connection`` (SSH to the host), ``ready`` (resources a guest must wait for),
    ``libvirt_provider`` / ``docker_provider`` (None unless the host has that role) and
    ``libvirt_networks`` (bridge name -> libvirt Network).
    """

    def __init__(self, host: Host, *, fleet: Fleet, secrets: Secrets, opts: pulumi.ResourceOptions | None = None):
        super().__init__("virtfleet:host:HypervisorHost", host.name, None, opts)
        self.host = host
        self.connection = connection_for(fleet, host.address, host.port, host.host_key, secrets.ssh)
        if host.host_key is None:
            pulumi.log.warn(
                f"host {host.name}: no hostKey pinned; SSH will trust whatever key {host.address} presents. "
                f"Pin it: ssh-keyscan -t ed25519 {host.address}",
                resource=self,
            )
        child = pulumi.ResourceOptions(parent=self)
        hosts_step = RemoteStep(
            render_step(host.name, "hosts-file", "hosts-file", entries=hosts_entries(fleet)),
            machine=host.name,
            name="hosts-file",
            connection=self.connection,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ready: list[pulumi.Resource] = [hosts_step]
        self.libvirt_provider: libvirt.Provider | None = None
        self.libvirt_networks: dict[str, libvirt.Network] = {}
        self.docker_provider: docker.Provider | None = None
        target = f"{fleet.ssh.user}@{host.address}:{host.port}"
        if host.has_role(Role.KVM):
            self.libvirt_provider = libvirt.Provider(
                f"{host.name}-libvirt", uri=f"qemu+ssh://{target}/system", opts=child
            )
            for bridge in host.bridges:
                # libvirt's bridge mode: guests plug into the host bridge; libvirt manages no addresses.
                self.libvirt_networks[bridge.name] = libvirt.Network(
                    f"{host.name}-net-{bridge.name}",
                    name=bridge.name,
                    mode="bridge",
                    bridge=bridge.name,
                    autostart=True,
                    opts=pulumi.ResourceOptions(parent=self, provider=self.libvirt_provider, depends_on=self.ready),
                )
        if host.has_role(Role.DOCKER):
            self.docker_provider = docker.Provider(f"{host.name}-docker", host=f"ssh://{target}", opts=child)
        self.register_outputs({"address": host.address, "roles": [str(r) for r in host.roles]})

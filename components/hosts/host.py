"""``HypervisorHost``: one host of the stack, prepared for its roles by remote steps."""

from __future__ import annotations

import pulumi

from ..connection import connection_for
from ..model import Fleet, Host
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
        self.libvirt_provider = None
        self.docker_provider = None
        self.libvirt_networks: dict = {}
        hosts_step = RemoteStep(
            render_step(host.name, "hosts-file", "hosts-file", entries=hosts_entries(fleet)),
            machine=host.name,
            name="hosts-file",
            connection=self.connection,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ready: list[pulumi.Resource] = [hosts_step]
        self.register_outputs({"address": host.address, "roles": [str(r) for r in host.roles]})

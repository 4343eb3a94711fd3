"""SSH connections for pulumi-command, one per machine, with the pinned host key when given."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command

from ..model import Fleet


@dataclass(frozen=True)
class SshCredentials:
    """The secret half of SSH access; the rest comes from ``Fleet.ssh``."""

    private_key: pulumi.Output[str] | None  # secret Output; None when ssh.useAgent is true
    agent_socket: str | None = None


def connection_for(
    fleet: Fleet, address: str, port: int, host_key: str | None, creds: SshCredentials
) -> command.remote.ConnectionArgs:
    """Connection to ``address`` as ``fleet.ssh.user``, via the jump host when one is set."""
    ssh = fleet.ssh
    proxy = None
    if ssh.jump_host is not None:
        jump = ssh.jump_host
        proxy = command.remote.ProxyConnectionArgs(
            host=jump.host,
            port=jump.port,
            user=jump.user,
            host_key=jump.host_key,
            private_key=creds.private_key,
            agent_socket_path=creds.agent_socket,
        )
    return command.remote.ConnectionArgs(
        host=address,
        port=port,
        user=ssh.user,
        host_key=host_key,
        private_key=creds.private_key,
        agent_socket_path=creds.agent_socket,
        proxy=proxy,
        dial_error_limit=20,  # hosts that reboot (xen, openvz) come back within ~10 minutes
        per_dial_timeout=30,
    )

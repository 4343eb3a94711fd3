"""Secrets as Pulumi secret Outputs: from ``pulumi config set --secret``, or generated."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from ..model import Fleet, KvmGuest, OpenvzGuest, VirtualboxGuest
from ..model.common import normalized_private_key
from ..remote.connection import SshCredentials
from .config import secret_config


@dataclass(frozen=True)
class Secrets:
    ssh: SshCredentials
    stats_password: pulumi.Output[str] | None
    root_password: pulumi.Output[str] | None
    tls_certificate: pulumi.Output[str] | None
    # PEM chain + key for the hosts' consoles (Cockpit), when the stack supplies one.
    console_certificate: pulumi.Output[str] | None = None
    # The public half of sshPrivateKey, authorized on guests so the key that reaches the hosts
    # reaches the guests too; None with ssh.useAgent (then only ssh.authorizedKeys).
    login_public_key: pulumi.Output[str] | None = None


def _configured_or_generated(key: str, resource_name: str, length: int) -> pulumi.Output[str]:
    configured = secret_config(key)
    if configured is not None:
        return configured
    generated = random.RandomPassword(resource_name, length=length, special=False)
    return pulumi.Output.secret(generated.result)


def public_key_of(private_key: pulumi.Output[str]) -> pulumi.Output[str]:
    """The OpenSSH public key of an OpenSSH/PEM private key (pulumi-tls); a public key is no secret."""
    derived = tls.get_public_key_output(private_key_openssh=private_key)
    return pulumi.Output.unsecret(derived.public_key_openssh.apply(lambda key: key.strip()))


def load_secrets(fleet: Fleet) -> Secrets:
    lb = fleet.load_balancer
    # As a key file holds it (ending in a newline): `pulumi config set` drops it, OpenSSH needs it.
    configured_key = None if fleet.ssh.use_agent else secret_config("sshPrivateKey")
    private_key = configured_key.apply(normalized_private_key) if configured_key is not None else None
    needs_root = any(
        (isinstance(g, KvmGuest) and g.uses_installer)
        or isinstance(g, OpenvzGuest)
        or (isinstance(g, VirtualboxGuest) and g.image is None)  # its kickstart's rootpw
        for g in fleet.guests
    )
    return Secrets(
        # With ssh.useAgent, pulumi-command (and ssh for libvirt/docker) use $SSH_AUTH_SOCK.
        ssh=SshCredentials(private_key=private_key),
        stats_password=_configured_or_generated("statsPassword", "stats-password", 24)
        if lb is not None and lb.stats.enabled
        else None,
        root_password=_configured_or_generated("rootPassword", "root-password", 24) if needs_root else None,
        tls_certificate=secret_config("tlsCertificate") if lb is not None and lb.https.enabled else None,
        login_public_key=public_key_of(private_key) if private_key is not None else None,
        console_certificate=secret_config("consoleCertificate") if any(h.console for h in fleet.hosts) else None,
    )

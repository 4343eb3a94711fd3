"""Secrets as Pulumi secret Outputs: from ``pulumi config set --secret``, or generated."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_random as random

from .connection import SshCredentials
from .model import Fleet, KvmGuest
from .stack_config import secret_config


@dataclass(frozen=True)
class Secrets:
    ssh: SshCredentials
    stats_password: pulumi.Output[str] | None
    root_password: pulumi.Output[str] | None
    tls_certificate: pulumi.Output[str] | None


def _configured_or_generated(key: str, resource_name: str, length: int) -> pulumi.Output[str]:
    configured = secret_config(key)
    if configured is not None:
        return configured
    generated = random.RandomPassword(resource_name, length=length, special=False)
    return pulumi.Output.secret(generated.result)


def load_secrets(fleet: Fleet) -> Secrets:
    lb = fleet.load_balancer
    needs_root = any(isinstance(g, KvmGuest) and g.uses_installer for g in fleet.guests)
    return Secrets(
        # With ssh.useAgent, pulumi-command (and ssh for libvirt/docker) use $SSH_AUTH_SOCK.
        ssh=SshCredentials(private_key=None if fleet.ssh.use_agent else secret_config("sshPrivateKey")),
        stats_password=_configured_or_generated("statsPassword", "stats-password", 24)
        if lb is not None and lb.stats.enabled
        else None,
        root_password=_configured_or_generated("rootPassword", "root-password", 24) if needs_root else None,
        tls_certificate=secret_config("tlsCertificate") if lb is not None and lb.https.enabled else None,
    )

"""Hypervisor hosts: where they are, how to reach them, what they run, how much they hold."""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface
from typing import Literal

from pydantic import Field, field_validator

from .common import Cidr, ConsoleTitle, Frozen, HostAddress, HostKey, InterfaceName, Name, Port, PublicKey


class Role(StrEnum):
    KVM = "kvm"
    XEN = "xen"
    OPENVZ = "openvz"
    VIRTUALBOX = "virtualbox"
    DOCKER = "docker"
    CONSOLE = "console"


# Roles that cannot share one host, and why (checked in rules.py).
ROLE_CONFLICTS: dict[frozenset[Role], str] = {
    frozenset({Role.XEN, Role.KVM}): (
        "Xen boots its own hypervisor with Linux as dom0, and KVM needs the bare-metal kernel "
        "(the seed: never install KVM on a Xen kernel)"
    ),
    frozenset({Role.XEN, Role.VIRTUALBOX}): "VirtualBox's vboxdrv cannot run inside a Xen dom0",
    frozenset({Role.XEN, Role.OPENVZ}): "both replace the host kernel (Xen dom0 vs OpenVZ's vzkernel)",
    frozenset({Role.OPENVZ, Role.KVM}): (
        "OpenVZ boots Virtuozzo's vzkernel, whose VMs are managed by prlctl, not by stock libvirt/KVM"
    ),
    frozenset({Role.OPENVZ, Role.VIRTUALBOX}): "vboxdrv is not built for Virtuozzo's vzkernel",
    frozenset({Role.OPENVZ, Role.DOCKER}): "Docker Engine does not support Virtuozzo's vzkernel",
    frozenset({Role.KVM, Role.VIRTUALBOX}): (
        "kvm_intel/kvm_amd and vboxdrv both claim VT-x/AMD-V; VirtualBox fails with "
        "VERR_VMX_IN_VMX_ROOT_MODE while KVM is loaded"
    ),
}

# Roles whose software exists only for EL7 (checked in rules.py).
EL7_ONLY_ROLES: dict[Role, str] = {
    Role.XEN: "the Xen4CentOS repository (centos-release-xen) ships for CentOS 7 only",
    Role.OPENVZ: "Virtuozzo 7 / OpenVZ 7 and its vzkernel are built on EL7",
}

# Roles whose guests are hardware-virtualized: the host's CPU must show vmx or svm.
ROLES_NEEDING_CPU_VIRT = frozenset({Role.KVM, Role.VIRTUALBOX})
# Roles that replace the kernel and need a reboot before they work.
ROLES_NEEDING_REBOOT = frozenset({Role.XEN, Role.OPENVZ})


class Capacity(Frozen):
    """What the host offers guests, and how far it may be overcommitted."""

    cpu_threads: int = Field(ge=1, description="hardware threads guests may use")
    memory_mib: int = Field(ge=256, alias="memoryMiB", description="memory guests may use, MiB")
    disk_gib: int = Field(ge=1, alias="diskGiB", description="guest storage, GiB")
    cpu_overcommit: float = Field(4.0, ge=1.0, le=32.0, description="vCPUs per hardware thread")
    memory_overcommit: float = Field(1.0, ge=1.0, le=4.0, description="guest memory per MiB (KVM balloons)")
    disk_overcommit: float = Field(1.0, ge=1.0, le=10.0, description="thin-provisioned GiB per GiB")


# Cockpit's port (cockpit.socket's ListenStream); the console role binds it to the host's management address.
CONSOLE_PORT = 9090


class Console(Frozen):
    """The console role's settings: Cockpit, the web console the seed's GUIs became (virt-manager, the
    VirtualBox GUI, ovz-web-panel). Locked by default: TLS, only the networks named, no root login."""

    allow_from: tuple[Cidr, ...] = Field(
        min_length=1,
        description="networks that may reach the console (port 9090), CIDR; required, no default: nothing "
        "else reaches it (a firewalld rich rule per network, and cockpit removed from the default zone)",
    )
    idle_timeout_minutes: int = Field(
        15, ge=1, le=1440, description="minutes of inactivity after which a session is logged out"
    )
    title: ConsoleTitle | None = Field(None, description="the login page's title; default: '<host> (stack <stack>)'")


class Bridge(Frozen):
    """A Linux bridge that takes over ``interface``'s address; guests share it (the seed's brid0)."""

    name: InterfaceName = Field(description="bridge device, at most 15 characters (the seed: brid0)")
    interface: InterfaceName = Field(description="the NIC whose address moves onto the bridge (eth0)")
    address: IPv4Interface = Field(description="the host's address on the bridge, CIDR: 10.0.0.2/24")
    gateway: IPv4Address | None = Field(None, description="default route via the bridge")
    dns: tuple[IPv4Address, ...] = Field((), description="resolvers for the host and, by default, its guests")
    stp: bool = Field(False, description="spanning tree on the bridge")

    @field_validator("address")
    @classmethod
    def _has_prefix(cls, value: IPv4Interface) -> IPv4Interface:
        if value.network.prefixlen > 30:
            raise ValueError("the bridge needs a subnet with room for guests: a prefix of /30 or shorter")
        return value


class Host(Frozen):
    name: Name = Field(description="host name; also its resource name and /etc/hosts entry")
    address: HostAddress = Field(
        description="IPv4 address or DNS name (RFC 1123) virtfleet connects to over SSH; no user@, no :port"
    )
    port: Port = Field(22, description="SSH port")
    host_key: HostKey | None = Field(None, description="pinned SSH host key; without it the plan warns")
    os_family: Literal["el7", "el9"] = Field("el9", description="el7: yum + network-scripts; el9: dnf + NetworkManager")
    roles: tuple[Role, ...] = Field(min_length=1, description="what the host runs; see the role table")
    capacity: Capacity = Field(description="what guests may use, with overcommit ratios")
    selinux: Literal["enforcing", "permissive", "disabled"] = Field(
        "enforcing", description="disabled only when set explicitly (needs a reboot)"
    )
    allow_reboot: bool = Field(False, description="xen/openvz: reboot into the new kernel; else stop and say so")
    bridges: tuple[Bridge, ...] = Field((), description="bridges guests attach to")
    firewall: bool = Field(True, description="manage firewalld ports for what the host serves")
    console: Console | None = Field(None, description="the console role's settings (Cockpit); required with it")

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, roles: tuple[Role, ...]) -> tuple[Role, ...]:
        if len(set(roles)) != len(roles):
            raise ValueError("each role may appear once")
        return roles

    def has_role(self, role: Role) -> bool:
        return role in self.roles

    def management_ip(self) -> IPv4Address | None:
        """The IPv4 address the host is managed at: its address, else its first bridge's (a host
        reached by DNS name); None when it has neither."""
        try:
            return IPv4Address(self.address)
        except ValueError:
            return self.bridges[0].address.ip if self.bridges else None

    def bridge(self, name: str) -> Bridge | None:
        return next((b for b in self.bridges if b.name == name), None)


class JumpHost(Frozen):
    host: HostAddress = Field(description="bastion every SSH connection goes through: IPv4 address or DNS name")
    port: Port = 22
    user: Name = "root"
    host_key: HostKey | None = None


class SshAccess(Frozen):
    """How virtfleet logs in to hosts. The private key itself is the secret ``virtfleet:sshPrivateKey``."""

    user: Name = "root"
    use_agent: bool = Field(False, description="authenticate with $SSH_AUTH_SOCK instead of sshPrivateKey")
    jump_host: JumpHost | None = Field(None, description="optional bastion")
    authorized_keys: tuple[PublicKey, ...] = Field(
        (),
        description="OpenSSH public keys ('<type> <base64> [comment]', parsed as real keys; a private key is "
        "refused) authorized on guests besides the public half of sshPrivateKey",
    )

"""Guests of every type. Each type is one class; ``GUEST_TYPES`` maps the ``type`` key to it.

A new guest type is a new class here (with ``required_role``) plus a component file under
``components/guests/``; the rules and the loader pick it up from ``GUEST_TYPES``.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from typing import Annotated, ClassVar, Literal

from pydantic import Field, HttpUrl, StringConstraints, model_validator

from .common import Frozen, InterfaceName, MacAddress, Name, Port, SafeText
from .hosts import Role

PowerState = Literal["running", "paused", "stopped"]


class GuestNetwork(Frozen):
    bridge: InterfaceName = Field(description="a bridge of the guest's host (hosts[].bridges[].name)")
    ip: IPv4Address
    mac: MacAddress | None = Field(None, description="fixed MAC; derived stably from the name when absent")


class Guest(Frozen):
    """What every guest has. Subclasses set ``type`` and the host role they need."""

    required_role: ClassVar[Role]
    # Whether the guest can be an HAProxy web server and how httpd gets onto it (see haproxy_tier).
    needs_network: ClassVar[bool] = True

    name: Name = Field(description="guest name: domain/container name, hostname, resource name")
    type: str = Field(description="kvm | xen | openvz | virtualbox | docker")
    host: Name = Field(description="hosts[].name of the host it runs on")
    vcpus: int = Field(1, ge=1, le=256, description="virtual CPUs")
    memory_mib: int = Field(1024, ge=16, alias="memoryMiB", description="memory, MiB")
    disk_gib: int = Field(10, ge=1, le=65536, alias="diskGiB", description="root disk, GiB")
    network: GuestNetwork | None = Field(None, description="static address on a bridge of its host")
    autostart: bool = Field(True, description="start with the host")
    power_state: PowerState = Field("running", description="running | paused | stopped")
    os_family: Literal["el7", "el9"] = Field("el9", description="the guest's own OS")

    @model_validator(mode="after")
    def _network_present(self):
        if self.needs_network and self.network is None:
            raise ValueError(f"a {self.type} guest needs network: {{bridge, ip}} on its host's bridge")
        return self


class CloudImage(Frozen):
    url: HttpUrl | None = Field(None, description="qcow2 cloud image; default: the os family's GenericCloud")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class Installer(Frozen):
    """The seed's path: boot an install tree's kernel/initrd with a kickstart on the command line."""

    location: HttpUrl = Field(description="install tree (has images/pxeboot/vmlinuz and initrd.img)")
    packages: tuple[SafeText, ...] = ("@core",)
    timezone: SafeText = "UTC"


class KvmGuest(Guest):
    required_role: ClassVar[Role] = Role.KVM
    type: Literal["kvm"]
    image: CloudImage | None = None
    install: Installer | None = None
    cpu_mode: Literal["host-passthrough", "host-model", "custom"] = "host-passthrough"
    graphics: Literal["spice", "vnc", "none"] = "spice"
    packages: tuple[SafeText, ...] = ()
    runcmd: tuple[SafeText, ...] = ()
    protect: bool = Field(False, description="Pulumi refuses to delete the domain")
    retain_disk: bool = Field(False, description="keep the guest's disk when the domain is deleted")

    @model_validator(mode="after")
    def _one_source(self):
        if self.image is not None and self.install is not None:
            raise ValueError("set either image (cloud image) or install (kickstart installer), not both")
        return self

    @property
    def uses_installer(self) -> bool:
        return self.install is not None


class XenGuest(Guest):
    required_role: ClassVar[Role] = Role.XEN
    type: Literal["xen"]
    mode: Literal["pvh", "hvm", "pv"] = "pvh"
    image: HttpUrl | None = Field(None, description="raw/qcow2 disk image; default: the os family's cloud image")
    on_reboot: Literal["restart", "destroy", "preserve"] = "restart"
    on_crash: Literal["restart", "destroy", "preserve", "coredump-destroy"] = "restart"


# An OS template's name says its release: centos-7-x86_64-minimal, almalinux-9-x86_64, ...
_TEMPLATE_RELEASE = re.compile(r"^(?:centos|rhel|almalinux|rocky|oraclelinux|scientific|vzlinux)-(\d+)\b")
DEFAULT_OSTEMPLATE = "centos-7-x86_64-minimal"


def ostemplate_family(ostemplate: str) -> str | None:
    """el7/el9 for a template named after an EL 7 or 9 release; None when the name does not tell."""
    match = _TEMPLATE_RELEASE.match(ostemplate)
    return {"7": "el7", "9": "el9"}.get(match.group(1)) if match else None


class OpenvzGuest(Guest):
    required_role: ClassVar[Role] = Role.OPENVZ
    type: Literal["openvz"]
    ctid: int = Field(ge=101, le=2147483647, description="container ID; 0-100 are reserved")
    ostemplate: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+$")] = Field(
        DEFAULT_OSTEMPLATE, description="OS template (vzpkg list -O); changing it re-creates the container"
    )
    nameservers: tuple[IPv4Address, ...] = Field((), description="resolvers; default: the bridge's dns")
    swap_mib: int = Field(0, ge=0, alias="swapMiB", description="VSwap, MiB (vzctl --swap)")
    protect: bool = Field(False, description="Pulumi refuses to delete the container")
    retain_disk: bool = Field(
        False, description="on delete keep the private area (vzctl unregister instead of destroy)"
    )

    @model_validator(mode="before")
    @classmethod
    def _family_from_template(cls, data):
        """Without osFamily, a container runs what its template holds (the default: CentOS 7)."""
        if isinstance(data, dict) and "osFamily" not in data and "os_family" not in data:
            family = ostemplate_family(str(data.get("ostemplate", DEFAULT_OSTEMPLATE)))
            if family is not None:
                data = {**data, "osFamily": family}
        return data


class VirtualboxGuest(Guest):
    required_role: ClassVar[Role] = Role.VIRTUALBOX
    type: Literal["virtualbox"]
    os_type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]+$")] = Field(
        "RedHat_64", description="VBoxManage --ostype"
    )
    image: HttpUrl | None = Field(None, description="VDI/VMDK disk to clone; default: empty disk + installer")
    vrde: bool = Field(False, description="remote display on 127.0.0.1 only")


class PortMapping(Frozen):
    host_port: Port
    container_port: Port
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: IPv4Address = IPv4Address("127.0.0.1")


class DockerGuest(Guest):
    required_role: ClassVar[Role] = Role.DOCKER
    needs_network: ClassVar[bool] = False
    type: Literal["docker"]
    image: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/:@-]*$")] = Field(description="e.g. httpd:2.4")
    disk_gib: int = Field(0, ge=0, alias="diskGiB", description="containers use the host's image store")
    ports: tuple[PortMapping, ...] = ()
    env: dict[str, SafeText] = Field(default_factory=dict)
    command: tuple[SafeText, ...] | None = None
    restart: Literal["no", "on-failure", "always", "unless-stopped"] = "unless-stopped"


GUEST_TYPES: dict[str, type[Guest]] = {
    cls.model_fields["type"].annotation.__args__[0]: cls  # the Literal's one value
    for cls in (KvmGuest, XenGuest, OpenvzGuest, VirtualboxGuest, DockerGuest)
}

"""Guests of every type. Each type is one class; ``GUEST_TYPES`` maps the ``type`` key to it.

A new guest type is a new class here (with ``required_role``) plus a component file under
``components/guests/``; the rules and the loader pick it up from ``GUEST_TYPES``.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from .common import (
    EnvName,
    Frozen,
    InterfaceName,
    KickstartPackage,
    MacAddress,
    Name,
    PlainUrl,
    Port,
    RpmPackage,
    SafeText,
    TimeZone,
)
from .hosts import Role

PowerState = Literal["running", "paused", "stopped"]


class GuestNetwork(Frozen):
    bridge: InterfaceName = Field(description="a bridge of the guest's host (hosts[].bridges[].name)")
    ip: IPv4Address
    mac: MacAddress | None = Field(None, description="fixed MAC; derived stably from the name when absent")


class Guest(Frozen):
    """What every guest has. Subclasses set ``type`` and the host role they need."""

    required_role: ClassVar[Role]
    # Whether the guest can be an HAProxy web server and how httpd gets onto it (see components.lb).
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
    url: PlainUrl | None = Field(None, description="qcow2 cloud image; default: the os family's GenericCloud")
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="64 lowercase hex digits; without it a plain-HTTP url warns"
    )


class Installer(Frozen):
    """The seed's path: boot an install tree's kernel/initrd with a kickstart on the command line."""

    location: PlainUrl = Field(description="install tree (has images/pxeboot/vmlinuz and initrd.img)")
    packages: tuple[KickstartPackage, ...] = Field(
        ("@core",), description="%packages lines: package names, @group and @^environment ids, -name to exclude"
    )
    timezone: TimeZone = Field("UTC", description="a tz database zone (UTC, Europe/London)")

    @field_validator("packages")
    @classmethod
    def _no_contradiction(cls, packages: tuple[str, ...]) -> tuple[str, ...]:
        # Anaconda resolves "name" and "-name" in the same %packages by their order (pykickstart: the
        # later line wins for packages, both stay for groups): a contradiction the user did not mean.
        both = sorted({p for p in packages if not p.startswith("-")} & {p[1:] for p in packages if p.startswith("-")})
        if both:
            raise ValueError(f"{', '.join(both)} listed both to install and to exclude (-{both[0]}); keep one")
        environments = sorted({p for p in packages if p.startswith("@^")})
        if len(environments) > 1:
            # %packages takes one environment; pykickstart keeps one of several, silently.
            raise ValueError(f"one @^environment at most, got {', '.join(environments)}")
        return packages


class KvmGuest(Guest):
    required_role: ClassVar[Role] = Role.KVM
    type: Literal["kvm"]
    image: CloudImage | None = None
    install: Installer | None = None
    cpu_mode: Literal["host-passthrough", "host-model", "custom"] = "host-passthrough"
    graphics: Literal["spice", "vnc", "none"] = "spice"
    packages: tuple[RpmPackage, ...] = Field((), description="cloud-init packages: RPM names or @group ids")
    runcmd: tuple[SafeText, ...] = Field(
        (), description="cloud-init runcmd: one-line shell commands, run as root at first boot (JSON-quoted)"
    )
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
    """A Xen domain managed with xl (components/guests/xen.py; README: "Xen guests")."""

    required_role: ClassVar[Role] = Role.XEN
    type: Literal["xen"]
    mode: Literal["pvh", "hvm", "pv"] = Field(
        "pvh", description="xl.cfg type (pvh, hvm or pv); a change re-creates the domain"
    )
    image: CloudImage | None = Field(None, description="cloud image (qcow2); default: the os family's GenericCloud")
    install: Installer | None = Field(None, description="the seed's path: PV install from an install tree (mode: pv)")
    max_memory_mib: int | None = Field(
        None, ge=16, alias="maxMemoryMiB", description="xl.cfg maxmem, MiB: the ceiling of live memory changes"
    )
    max_vcpus: int | None = Field(None, ge=1, le=256, description="xl.cfg maxvcpus: the ceiling of live vcpu changes")
    graphics: Literal["vnc", "spice", "none"] | None = Field(
        None, description="hvm only, on 127.0.0.1 (vnc, spice or none); default vnc for hvm, none otherwise"
    )
    packages: tuple[RpmPackage, ...] = Field((), description="cloud-init packages: RPM names or @group ids")
    runcmd: tuple[SafeText, ...] = Field(
        (), description="cloud-init runcmd: one-line shell commands, run as root at first boot (JSON-quoted)"
    )
    on_reboot: Literal["restart", "destroy", "preserve"] = "restart"
    on_crash: Literal["restart", "destroy", "preserve", "coredump-destroy"] = "restart"
    protect: bool = Field(False, description="Pulumi refuses to delete the domain")
    retain_disk: bool = Field(False, description="keep the guest's disk image when the domain is deleted")

    @model_validator(mode="after")
    def _xen_consistent(self):
        if self.image is not None and self.install is not None:
            raise ValueError("set either image (cloud image) or install (kickstart installer), not both")
        if self.install is not None and self.mode != "pv":
            raise ValueError(
                "install boots the install tree's PV kernel (the seed's virt-install --paravirt): mode: pv"
            )
        if self.max_memory_mib is not None and self.max_memory_mib < self.memory_mib:
            raise ValueError(f"maxMemoryMiB {self.max_memory_mib} is below memoryMiB {self.memory_mib}")
        if self.max_vcpus is not None and self.max_vcpus < self.vcpus:
            raise ValueError(f"maxVcpus {self.max_vcpus} is below vcpus {self.vcpus}")
        if self.graphics not in (None, "none") and self.mode != "hvm":
            raise ValueError(f"graphics: {self.graphics} needs mode: hvm (pv/pvh domains have the serial console)")
        return self

    @property
    def uses_installer(self) -> bool:
        return self.install is not None

    @property
    def maxmem_mib(self) -> int:
        return self.max_memory_mib if self.max_memory_mib is not None else self.memory_mib

    @property
    def maxvcpus(self) -> int:
        return self.max_vcpus if self.max_vcpus is not None else self.vcpus

    @property
    def display(self) -> str:
        """The remote display: vnc/spice for hvm (vnc unless set), none for pv/pvh."""
        if self.graphics is None:
            return "vnc" if self.mode == "hvm" else "none"
        return self.graphics


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
    ostemplate: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] = Field(
        DEFAULT_OSTEMPLATE,
        description="OS template (vzpkg list -O): letters, digits and ._-, starting with a letter or digit; "
        "changing it re-creates the container",
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
    image: PlainUrl | None = Field(
        None,
        description="VDI/VMDK disk image (URL ending .vdi or .vmdk), downloaded once per host and cloned; "
        "default: an empty disk and VBoxManage unattended install",
    )
    install: Installer | None = Field(
        None, description="unattended install from an install tree (its images/boot.iso); default: the os family's"
    )
    vrde: bool = Field(False, description="remote display (VRDE) on 127.0.0.1 only")
    firmware: Literal["bios", "efi"] = Field("bios", description="VBoxManage modifyvm --firmware")
    allow_restart: bool = Field(
        False, description="a memoryMiB/vcpus change may power the VM off (ACPI, then poweroff) and start it again"
    )
    shutdown_timeout_seconds: int = Field(
        120, ge=0, le=3600, description="wait this long after the ACPI power button before a hard poweroff"
    )
    protect: bool = Field(False, description="Pulumi refuses to delete the VM")
    retain_disk: bool = Field(False, description="on delete keep the VM's disk (unregistervm without --delete)")

    @field_validator("image")
    @classmethod
    def _disk_image(cls, value):
        if value is not None and not (value.path or "").lower().endswith((".vdi", ".vmdk")):
            raise ValueError("a VirtualBox disk image is a .vdi or .vmdk file (the URL's path ends so)")
        return value

    @model_validator(mode="after")
    def _one_source(self):
        if self.image is not None and self.install is not None:
            raise ValueError("set either image (disk image to clone) or install (unattended install), not both")
        return self


class PortMapping(Frozen):
    host_port: Port = Field(description="port on the Docker host")
    container_port: Port = Field(description="port inside the container")
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: IPv4Address = Field(IPv4Address("127.0.0.1"), description="host address it is published on")


class DockerGuest(Guest):
    required_role: ClassVar[Role] = Role.DOCKER
    needs_network: ClassVar[bool] = False
    type: Literal["docker"]
    image: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/:@-]*$")] = Field(
        description="image reference, e.g. httpd:2.4, or pinned: httpd:2.4@sha256:…"
    )
    disk_gib: int = Field(0, ge=0, alias="diskGiB", description="containers use the host's image store")
    ports: tuple[PortMapping, ...] = Field((), description="published ports (docker run -p)")
    env: dict[EnvName, SafeText] = Field(
        default_factory=dict,
        description="environment variables (docker run -e): NAME (letters, digits, '_') to a one-line value",
    )
    command: tuple[SafeText, ...] | None = Field(None, description="replaces the image's CMD")
    protect: bool = Field(False, description="Pulumi refuses to delete the container")
    restart: Literal["no", "on-failure", "always", "unless-stopped"] = Field(
        "unless-stopped", description="restart policy; always/unless-stopped also start it with the host's dockerd"
    )

    @model_validator(mode="before")
    @classmethod
    def _autostart_is_the_restart_policy(cls, data):
        """A container starts with the host through its restart policy: ``autostart: false`` without
        an explicit ``restart`` means ``restart: no``."""
        if isinstance(data, dict) and data.get("autostart") is False and "restart" not in data:
            data = {**data, "restart": "no"}
        return data

    @field_validator("power_state")
    @classmethod
    def _no_pause(cls, value: str) -> str:
        # docker pause freezes the processes but keeps the memory, and Docker still reports the
        # container as running, so the restart policy and the provider's must_run would not see it.
        if value == "paused":
            raise ValueError("docker guests are running or stopped; paused is not supported (docker pause by hand)")
        return value

    @model_validator(mode="after")
    def _autostart_matches_restart(self):
        if not self.autostart and self.restart in ("always", "unless-stopped"):
            raise ValueError(
                f"autostart: false, but restart: {self.restart} starts the container with dockerd; "
                "set restart: no or on-failure (or drop autostart)"
            )
        return self


GUEST_TYPES: dict[str, type[Guest]] = {
    cls.model_fields["type"].annotation.__args__[0]: cls  # the Literal's one value
    for cls in (KvmGuest, XenGuest, OpenvzGuest, VirtualboxGuest, DockerGuest)
}

"""The lab's stack: a committed stack with what only the lab can know, and the machines that carry it.

The lab carries the stack's own addresses (inside its namespaces), so almost nothing changes:

- every host's ``hostKey`` is pinned to its view's freshly made host key;
- the stack logs in with the lab operator's key (``sshPrivateKey``), not an agent;
- KVM and Xen guests boot the lab's generated image, served by the operator with its sha256
  (nothing is downloaded from outside this machine); KVM guests use a CPU model QEMU runs here;
- installer guests (kickstart, KVM and Xen) and VirtualBox installs get the lab's install tree;
- a Docker image pinned by digest is the lab's own image, pinned by its digest in the lab's registry.

What the lab cannot boot (a guest OS) is stood in for: each guest the program logs in to over SSH
(the HAProxy tier's web servers and its balancer node, when those are KVM, Xen or VirtualBox
guests) is a namespace at the guest's address with an sshd view of its own, like a host's.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.model import Fleet, KvmGuest, Role, load_fleet
from components.model.balancer_pair import GUEST_NIC

IMAGE_PORT = 8080
CLOUD_IMAGE = "lab-cloud.qcow2"
INSTALL_TREE = "install"
# QEMU here refuses host-passthrough and host-model (MSR 0x10a); a named model runs.
LAB_CPU_MODE = "custom"
SSH_GUEST_TYPES = ("kvm", "xen", "virtualbox")


@dataclass(frozen=True)
class Machine:
    name: str
    addresses: tuple[str, ...]  # with prefix length
    os_family: str = "el9"
    libvirt: bool = False
    docker: bool = False
    cpu_virt: bool = False
    xen: bool = False  # shows itself a Xen dom0 (lab/view.py)
    vz_kernel: bool = False  # shows an OpenVZ 7 kernel (lab/view.py)
    stand_in: bool = False  # a guest the lab cannot boot: an sshd view at its address
    interface: str = "eth0"  # the NIC's name: a KVM/Xen guest's is lan0, as virtfleet names it
    web_root: str | None = None
    # An OpenVZ container (the vzctl fake: no network of its own): its address serves the page the
    # tier put in the container's root on its host, (host, path in the host's view).
    serves_from: tuple[str, str] | None = None


@dataclass(frozen=True)
class Topology:
    operator: str  # address with prefix length
    machines: tuple[Machine, ...]

    @property
    def operator_ip(self) -> str:
        return str(ipaddress.ip_interface(self.operator).ip)


def read_values(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text()) or {}
    return {k.split(":", 1)[1]: v for k, v in (document.get("config") or {}).items() if k.startswith("virtfleet:")}


def ssh_guests(fleet: Fleet) -> list[str]:
    """Guests the program logs in to over SSH: the tier's web servers of an SSH type, and its node."""
    lb = fleet.load_balancer
    if lb is None:
        return []
    names = [*lb.backends, *lb.backups, *lb.nodes]
    guests = {g.name: g for g in fleet.guests}
    return [n for n in dict.fromkeys(names) if n in guests and guests[n].type in SSH_GUEST_TYPES]


def topology(fleet: Fleet) -> Topology:
    first = fleet.hosts[0].bridges[0]
    gateway = first.gateway or next(first.address.network.hosts())
    operator = f"{gateway}/{first.address.network.prefixlen}"
    machines = []
    for host in fleet.hosts:
        prefix = next((b.address.network.prefixlen for b in host.bridges if str(b.address.ip) == host.address), 24)
        machines.append(
            Machine(
                name=host.name,
                addresses=(f"{host.address}/{prefix}",),
                os_family=host.os_family,
                libvirt=host.has_role(Role.KVM),
                docker=host.has_role(Role.DOCKER),
                cpu_virt=host.has_role(Role.KVM) or host.has_role(Role.VIRTUALBOX),
                xen=host.has_role(Role.XEN),
                vz_kernel=host.has_role(Role.OPENVZ),
            )
        )
    lb = fleet.load_balancer
    web_servers = {*lb.backends, *lb.backups} if lb else set()
    for name in ssh_guests(fleet):
        guest = fleet.guest(name)
        network = fleet.host(guest.host).bridge(guest.network.bridge).address.network
        machines.append(
            Machine(
                name=name,
                addresses=(f"{guest.network.ip}/{network.prefixlen}",),
                os_family=guest.os_family,
                stand_in=True,
                interface=GUEST_NIC if guest.type in ("kvm", "xen") else "eth0",
                # a web server serves the page its step puts there (the balancer's node serves nothing)
                web_root="/var/www/html" if name in web_servers else None,
            )
        )
    for name in [*lb.backends, *lb.backups] if lb else []:
        guest = fleet.guest(name)
        if guest.type != "openvz":
            continue
        network = fleet.host(guest.host).bridge(guest.network.bridge).address.network
        root = f"/var/lib/virtfleet-fakes/vz/root/{guest.ctid}/var/www/html"  # tests/fakes/vzctl.py
        machines.append(
            Machine(name=name, addresses=(f"{guest.network.ip}/{network.prefixlen}",), serves_from=(guest.host, root))
        )
    return Topology(operator, tuple(machines))


def lab_values(values: dict[str, Any], *, host_keys: dict[str, str], image_url: str, image_sha256: str,
               install_url: str, docker_images: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """The source stack's values as the lab deploys them (see the module docstring). ``docker_images``:
    a pinned reference (``httpd:2.4.65@sha256:…``) -> the same image pinned in the lab's registry."""
    lab = copy.deepcopy(values)
    ssh = dict(lab.get("ssh") or {})
    ssh.pop("useAgent", None)
    lab["ssh"] = ssh
    for host in lab["hosts"]:
        host["hostKey"] = host_keys[host["name"]]
    for guest in lab.get("guests") or []:
        kind = guest.get("type")
        if kind == "kvm":
            guest["cpuMode"] = LAB_CPU_MODE
        if kind in ("kvm", "xen"):
            if guest.get("install"):
                guest["install"] = {**guest["install"], "location": install_url}
            else:
                guest["image"] = {"url": image_url, "sha256": image_sha256}
        elif kind == "virtualbox" and not guest.get("image"):
            guest["install"] = {**(guest.get("install") or {}), "location": install_url}
        elif kind == "docker" and guest.get("image") in docker_images:
            guest["image"] = docker_images[guest["image"]]
    return lab


def write_stack_file(path: Path, values: dict[str, Any], comment: str) -> None:
    document = {"config": {f"virtfleet:{k}": v for k, v in values.items()}}
    path.write_text(f"# {comment}\n" + yaml.safe_dump(document, sort_keys=False, width=120))


def source_fleet(values: dict[str, Any]) -> Fleet:
    """A stack's values through the model, with the plan's stand-in for the key each user sets."""
    from plan.mocks import planned_private_key

    return load_fleet({**values, "sshPrivateKey": planned_private_key()}, {"sshPrivateKey"}, {})


__all__ = ["KvmGuest", "Machine", "Topology", "lab_values", "read_values", "topology", "write_stack_file"]

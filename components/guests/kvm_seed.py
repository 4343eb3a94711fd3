"""What a KVM guest is born with (pure): its MAC, cloud-init seed or kickstart, installer cmdline.

Both provisioning paths ride on one seed ISO that the host builds (``render_seed_iso_step``:
genisoimage, volume label ``cidata``, files ``user-data``, ``meta-data``, ``network-config``) and
the guest mounts as its CD-ROM. Not ``libvirt.CloudInitDisk``: pulumi-libvirt 0.5.4 uploads it
through a libvirt stream and reads it back by downloading it at every refresh, and parallel
streams over its one connection deadlock (dmacvicar/terraform-provider-libvirt#594: a refresh of
the lab's two guests hung for 20 minutes).

- cloud image: cloud-init's NoCloud datasource reads the seed from that ISO;
- installer: the ISO's ``user-data`` *is* the kickstart, and the kernel command line points
  Anaconda at it with ``inst.ks=hd:LABEL=cidata:/user-data``.

The guest's NIC is named ``lan0`` in both paths (cloud-init ``set-name``; dracut ``ifname=``),
bound to the guest's fixed MAC, so the address never depends on the kernel's naming.

Xen guests are born from the same renderers (``xen_config``: their seed ISO is built on the host).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Interface

from ..lb.web_servers import first_boot
from ..model import Fleet, KvmGuest, VirtualboxGuest, XenGuest
from ..model.hosts import Bridge
from ..osfamily import OsFamily
from ..remote.scripts import RemoteFile, RenderedStep, render_step
from ..render import render

NIC = "lan0"
KICKSTART_ON_SEED = "hd:LABEL=cidata:/user-data"
INSTALL_KERNEL = "images/pxeboot/vmlinuz"
INSTALL_INITRD = "images/pxeboot/initrd.img"
# Where each rendered file lands, for RenderedFiles (build/<stack>/<guest>/<path>):
# the seed ISO as the guest mounts it, and the kickstart where Anaconda leaves a copy.
SEED_PATHS = {
    "user-data": "/cidata/user-data",
    "meta-data": "/cidata/meta-data",
    "network-config": "/cidata/network-config",
}
KICKSTART_PATH = "/root/original-ks.cfg"


def guest_mac(guest: KvmGuest) -> str:
    """The configured MAC, else 52:54:00 (QEMU/KVM's prefix) + 3 bytes of a hash of the name."""
    if guest.network is not None and guest.network.mac is not None:
        return guest.network.mac
    tail = hashlib.sha256(f"virtfleet-mac:{guest.name}".encode()).digest()[:3]
    return "52:54:00:" + ":".join(f"{b:02x}" for b in tail)


@dataclass(frozen=True)
class GuestAddressing:
    ip: str
    interface: IPv4Interface  # ip/prefix on the bridge's subnet
    gateway: str | None
    dns: tuple[str, ...]


def addressing(guest: KvmGuest | XenGuest, bridge: Bridge) -> GuestAddressing:
    interface = IPv4Interface(f"{guest.network.ip}/{bridge.address.network.prefixlen}")
    return GuestAddressing(
        ip=str(guest.network.ip),
        interface=interface,
        gateway=str(bridge.gateway) if bridge.gateway else None,
        dns=tuple(str(d) for d in bridge.dns),
    )


def render_user_data(guest: KvmGuest | XenGuest, fleet: Fleet, login_keys: tuple[str, ...] = ()) -> str:
    """``login_keys``: public keys authorized besides ssh.authorizedKeys (the stack's own login key).

    A web server of the HAProxy tier also gets httpd, its page and its ports (``first_boot``).
    """
    web = first_boot(guest, fleet)
    commands = ()
    if web is not None:
        ports = " ".join(f"--add-port={p}/tcp" for p in web.ports)
        opened = f"firewall-cmd --permanent {ports} && firewall-cmd --reload"
        firewall = f"if systemctl is-active --quiet firewalld; then {opened}; fi"
        commands = (*web.commands, "systemctl enable --now httpd", firewall)
    return render(
        "cloud-init/user-data.j2",
        name=guest.name,
        fqdn=f"{guest.name}.{fleet.domain}",
        admin_user=fleet.ssh.user,
        authorized_keys=(*fleet.ssh.authorized_keys, *login_keys),
        packages=tuple(dict.fromkeys((*guest.packages, *(web.packages if web else ())))),
        runcmd=(*guest.runcmd, *commands),
        web_files=web.files if web else (),
    )


def render_meta_data(guest: KvmGuest | XenGuest, user_data: str, network_config: str) -> str:
    # A new instance-id whenever the seed changes makes cloud-init apply it again on next boot.
    instance = hashlib.sha256(f"{user_data}\0{network_config}".encode()).hexdigest()[:12]
    return render("cloud-init/meta-data.j2", name=guest.name, instance_id=f"{guest.name}-{instance}")


def render_network_config(guest: KvmGuest | XenGuest, bridge: Bridge, fleet: Fleet, *, mac: str | None = None) -> str:
    """``mac``: the NIC's MAC when the guest type derives its own (Xen: ``xen_mac``)."""
    net = addressing(guest, bridge)
    return render(
        "cloud-init/network-config.j2",
        name=guest.name,
        bridge=bridge.name,
        nic=NIC,
        mac=mac or guest_mac(guest),
        address=str(net.interface),
        gateway=net.gateway,
        dns=net.dns,
        domain=fleet.domain,
    )


def render_kickstart(
    guest: KvmGuest | XenGuest | VirtualboxGuest,
    fleet: Fleet,
    bridge: Bridge,
    family: OsFamily,
    root_hash: str,
    login_keys: tuple[str, ...] = (),
    *,
    nic: str = NIC,
    disk: str = "vda",
    additions: bool = False,
) -> str:
    """The guest's kickstart. KVM's defaults; a VirtualBox guest names its NIC by MAC, its SATA disk
    ``sda`` and asks for the Guest Additions (``additions``)."""
    net = addressing(guest, bridge)
    web = first_boot(guest, fleet)
    return render(
        "ks.cfg.j2",
        name=guest.name,
        family=family,
        location=str(guest.install.location),
        timezone=guest.install.timezone,
        nic=nic,
        disk=disk,
        additions=additions,
        ip=net.ip,
        netmask=str(net.interface.netmask),
        gateway=net.gateway,
        dns=net.dns,
        fqdn=f"{guest.name}.{fleet.domain}",
        root_password_hash=root_hash,
        packages=tuple(dict.fromkeys((*guest.install.packages, *(web.packages if web else ())))),
        authorized_keys=(*fleet.ssh.authorized_keys, *login_keys),
        web=web,
    )


def install_tree_file(guest: KvmGuest | XenGuest, relative: str) -> str:
    location = str(guest.install.location)
    return location + ("" if location.endswith("/") else "/") + relative


def installer_cmdline(guest: KvmGuest, fleet: Fleet, bridge: Bridge) -> list[dict[str, str]]:
    """Kernel arguments for the installer, one map per argument (the provider's ``cmdlines``).

    dracut brings ``lan0`` up with the static address before Anaconda fetches stage2 from the
    install tree; the kickstart's ``network`` line then configures the installed system alike.
    """
    net = addressing(guest, bridge)
    ip = f"{net.ip}::{net.gateway or ''}:{net.interface.netmask}:{guest.name}.{fleet.domain}:{NIC}:none"
    args = [
        {"inst.repo": str(guest.install.location)},
        {"inst.ks": KICKSTART_ON_SEED},
        {"_": "inst.text"},  # the provider writes a "_" key's value as a bare word
        {"ifname": f"{NIC}:{guest_mac(guest)}"},
        {"ip": ip},
        *({"nameserver": d} for d in net.dns),
        {"console": "ttyS0,115200n8"},
    ]
    return args


def render_seed_iso_step(
    host: str, guest: str, files: dict[str, str], state: str, iso: str, *, pool: str | None = None
) -> RenderedStep:
    """The host step that builds ``guest``'s seed ISO at ``iso`` from ``files`` (name -> text), kept
    in ``state``/seed. Its files are embedded in the script (secret: a kickstart holds root's hash).
    A KVM guest mounts it by path, so create needs no pool refresh; with ``pool`` (the ISO lies in
    that pool's directory), delete refreshes it so libvirt stops listing the ISO as a volume."""
    return render_step(
        host,
        f"{guest}-seed",
        "seed-iso",
        files=[RemoteFile(f"{state}/seed/{name}", text, 0o600) for name, text in files.items()],
        secret=True,
        guest=guest,
        seed_dir=f"{state}/seed",
        iso=iso,
        pool=pool or "",
    )

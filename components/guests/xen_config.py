"""What a Xen guest is made of on its host (pure): its xl.cfg, its seed, its lifecycle steps.

Files on the Xen host (README, "Xen guests"):

- ``/etc/xen/<name>.cfg``: the domain's xl.cfg (``templates/xl.cfg.j2``); ``/etc/xen/auto/<name>.cfg``
  links to it exactly when ``autostart`` (xendomains starts what that directory holds);
- ``/var/lib/xen/images/<name>.img``: the guest's disk, a **raw file image** (the hosts declare no
  volume group, and a file image needs nothing the xen role does not install: ``qemu-img``
  converts the shared base into it); the directory is Xen's and virt-install's default;
- ``/var/lib/xen/images/<name>-seed.iso``: the NoCloud seed (label ``cidata``), rendered by the same
  renderers as the KVM guests' (``kvm_seed``); on the installer path it carries the kickstart as
  ``user-data``, which Anaconda reads with ``inst.ks=hd:LABEL=cidata:/user-data``;
- ``/var/lib/xen/images/virtfleet-base-…``: a cloud image or an install tree's PV kernel/initrd,
  downloaded once per host and URL (a host step, like the KVM base volumes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..model import Fleet, XenGuest
from ..osfamily import os_family
from ..remote.scripts import RemoteFile, RenderedStep, render_step
from ..render import render
from .base_image import base_file_name
from .base_image import render_base_image_step as render_shared_download
from .kvm_seed import (
    INSTALL_INITRD,
    INSTALL_KERNEL,
    KICKSTART_ON_SEED,
    NIC,
    addressing,
    install_tree_file,
    render_kickstart,
    render_meta_data,
    render_network_config,
    render_seed_iso_step,
    render_user_data,
)
from .remote_guest import GuestLifecycle

IMAGES = "/var/lib/xen/images"
CFG = "/etc/xen/{name}.cfg"
AUTO_LINK = "/etc/xen/auto/{name}.cfg"
STATE = "/var/lib/virtfleet/xen/{name}"  # seed sources, installer config, install marker
SPICE_BASE_PORT = 5910  # + the guest's position among its host's SPICE guests
SHUTDOWN_TIMEOUT_S = 120  # xl shutdown -w, then xl destroy
INSTALL_TIMEOUT_S = 3600


def xen_mac(guest: XenGuest) -> str:
    """The configured MAC, else 00:16:3e (Xen's OUI) + 3 bytes of a hash of the name."""
    if guest.network.mac is not None:
        return guest.network.mac
    tail = hashlib.sha256(f"virtfleet-mac:{guest.name}".encode()).digest()[:3]
    return "00:16:3e:" + ":".join(f"{b:02x}" for b in tail)


def base_image_path(host: str, url: str, suffix: str) -> tuple[str, str]:
    """(step name, path on the host) of the shared download of ``url``: one per host and URL."""
    file_name = base_file_name(url, suffix)
    return "xen-" + file_name.removeprefix("virtfleet-").removesuffix(suffix), f"{IMAGES}/{file_name}"


def image_url(guest: XenGuest) -> str:
    return str(guest.image.url) if guest.image and guest.image.url else os_family(guest.os_family).cloud_image


def render_base_image_step(host: str, url: str, sha256: str | None, suffix: str = ".qcow2") -> RenderedStep:
    """The host step that downloads ``url`` once (verified when a sha256 is given)."""
    name, path = base_image_path(host, url, suffix)
    return render_shared_download(host, name, url, sha256, path)


@dataclass(frozen=True)
class XenInstaller:
    kernel: str  # on the host
    initrd: str
    extra: str  # the installer's kernel command line


def installer(guest: XenGuest, fleet: Fleet) -> XenInstaller:
    """The install tree's PV kernel and initrd (host paths) and Anaconda's command line: dracut
    brings ``lan0`` up with the static address, the kickstart is read from the seed disk."""
    host = fleet.host(guest.host)
    net = addressing(guest, host.bridge(guest.network.bridge))
    ip = f"{net.ip}::{net.gateway or ''}:{net.interface.netmask}:{guest.name}.{fleet.domain}:{NIC}:none"
    words = [
        f"inst.repo={guest.install.location}",
        f"inst.ks={KICKSTART_ON_SEED}",
        "inst.text",
        f"ifname={NIC}:{xen_mac(guest)}",
        f"ip={ip}",
        *(f"nameserver={d}" for d in net.dns),
        "console=hvc0",
    ]
    extra = " ".join(words)
    if any(c in extra for c in "\"\\'\n"):  # xl.cfg string: the model's URL grammar already refuses these
        raise ValueError(f"guest {guest.name}: the installer command line cannot be an xl.cfg string: {extra!r}")
    kernel = base_image_path(guest.host, install_tree_file(guest, INSTALL_KERNEL), "")[1]
    initrd = base_image_path(guest.host, install_tree_file(guest, INSTALL_INITRD), "")[1]
    return XenInstaller(kernel, initrd, extra)


def spice_port(guest: XenGuest, fleet: Fleet) -> int:
    spice = [g.name for g in fleet.guests if isinstance(g, XenGuest) and g.host == guest.host and g.display == "spice"]
    return SPICE_BASE_PORT + (spice.index(guest.name) if guest.name in spice else 0)


def render_xl_cfg(guest: XenGuest, fleet: Fleet, *, install: bool = False) -> str:
    """The domain's xl.cfg; ``install``: the installer's (kernel, ramdisk, extra) instead of pygrub."""
    return render(
        "xl.cfg.j2",
        name=guest.name,
        os_family=guest.os_family,
        source=f"installer {guest.install.location}" if guest.uses_installer else f"cloud image {image_url(guest)}",
        mode=guest.mode,
        memory=guest.memory_mib,
        maxmem=guest.maxmem_mib,
        vcpus=guest.vcpus,
        maxvcpus=guest.maxvcpus,
        mac=xen_mac(guest),
        bridge=guest.network.bridge,
        disk=f"{IMAGES}/{guest.name}.img",
        seed=f"{IMAGES}/{guest.name}-seed.iso",
        on_reboot=guest.on_reboot,
        on_crash=guest.on_crash,
        installer=installer(guest, fleet) if install else None,
        display=guest.display,
        spice_port=spice_port(guest, fleet) if guest.display == "spice" else None,
    )


def seed_files(guest: XenGuest, fleet: Fleet, login_keys: tuple[str, ...], root_hash: str | None) -> dict[str, str]:
    """The seed ISO's files by name: cloud-init's three, or the kickstart as ``user-data``."""
    host = fleet.host(guest.host)
    bridge = host.bridge(guest.network.bridge)
    if guest.uses_installer:
        family = os_family(guest.os_family)
        if root_hash is None:
            raise ValueError(f"guest {guest.name}: the kickstart needs root's password hash")
        return {"user-data": render_kickstart(guest, fleet, bridge, family, root_hash, login_keys)}
    user_data = render_user_data(guest, fleet, login_keys)
    network_config = render_network_config(guest, bridge, fleet, mac=xen_mac(guest))
    return {
        "user-data": user_data,
        "meta-data": render_meta_data(guest, user_data, network_config),
        "network-config": network_config,
    }


def render_seed_step(guest: XenGuest, fleet: Fleet, login_keys: tuple[str, ...], root_hash: str | None) -> RenderedStep:
    """The step that builds the seed ISO (its files are embedded: the kickstart holds root's hash)."""
    files = seed_files(guest, fleet, login_keys, root_hash)
    return render_seed_iso_step(
        guest.host, guest.name, files, STATE.format(name=guest.name), f"{IMAGES}/{guest.name}-seed.iso"
    )


def domain_replace_fields(guest: XenGuest) -> dict:
    """Everything in the xl.cfg that xl cannot change on a live domain: a new value is a new
    domain (memory and vcpus change live with xl mem-set / vcpu-set, up to maxmem / maxvcpus)."""
    return {
        "type": guest.mode,
        "maxmem": guest.maxmem_mib,
        "maxvcpus": guest.maxvcpus,
        "mac": xen_mac(guest),
        "bridge": guest.network.bridge,
        "disk": guest.disk_gib,
        "source": str(guest.install.location) if guest.uses_installer else image_url(guest),
        "on_reboot": guest.on_reboot,
        "on_crash": guest.on_crash,
        "graphics": guest.display,
    }


def render_domain_step(guest: XenGuest, fleet: Fleet) -> GuestLifecycle:
    """The domain's lifecycle step on its host (pure); its xl.cfg files are embedded in the script
    and checked with ``xl create -n`` before they are installed."""
    files = [RemoteFile(CFG.format(name=guest.name), render_xl_cfg(guest, fleet))]
    base = kernel = initrd = ""
    if guest.uses_installer:
        files.append(
            RemoteFile(f"{STATE.format(name=guest.name)}/install.cfg", render_xl_cfg(guest, fleet, install=True))
        )
        boot = installer(guest, fleet)
        kernel, initrd = boot.kernel, boot.initrd
    else:
        base = base_image_path(guest.host, image_url(guest), ".qcow2")[1]
    step = render_step(
        guest.host,
        f"{guest.name}-domain",
        "xen-domain",
        files=files,
        secret=True,  # embeds its files (nothing secret: the step is a plain command)
        install_files=False,
        guest=guest.name,
        host=guest.host,
        installer=guest.uses_installer,
        mode=guest.mode,
        base=base,
        kernel=kernel,
        initrd=initrd,
        disk=f"{IMAGES}/{guest.name}.img",
        seed=f"{IMAGES}/{guest.name}-seed.iso",
        disk_gib=guest.disk_gib,
        memory_mib=guest.memory_mib,
        vcpus=guest.vcpus,
        autostart=guest.autostart,
        power_state=guest.power_state,
        retain_disk=guest.retain_disk,
        cfg=CFG.format(name=guest.name),
        auto_link=AUTO_LINK.format(name=guest.name),
        state_dir=STATE.format(name=guest.name),
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        install_timeout=INSTALL_TIMEOUT_S,
    )
    return GuestLifecycle(step, domain_replace_fields(guest))

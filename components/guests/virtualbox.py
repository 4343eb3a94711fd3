"""``VirtualboxGuest``: a headless VirtualBox VM on its host, a remote guest lifecycle
(``remote_guest``) driven by ``VBoxManage``.

The seed builds the VM in the GUI and installs the Guest Additions by hand; on a server the same
is ``VBoxManage``: ``createvm --register`` under ``VM_BASE``, one ``modifyvm`` (memory, CPUs,
firmware, a bridged NIC on the host's bridge with the guest's MAC, VRDE on 127.0.0.1 only, no
audio, no USB, autostart), a SATA disk and a DVD drive, then either

- **image**: a VDI/VMDK downloaded once per host into ``MEDIA_DIR`` and cloned (``clonemedium``)
  as the VM's disk, or
- **installer** (the default): an empty disk (``createmedium``) and ``VBoxManage unattended
  install`` with the install tree's ``images/boot.iso``, the guest's own kickstart (the KVM
  installer's renderer, ``render_kickstart``, with the SATA disk ``sda`` and the NIC named by its
  MAC) as ``--script-template`` and ``--install-additions``. The kickstart holds the root
  password's crypt hash: a secret step of its own writes it (0600) before the VM step runs.

Memory and CPUs change only while the VM is powered off: the step stops it (ACPI power button,
then ``poweroff`` after ``shutdownTimeoutSeconds``) and starts it again when ``allowRestart`` is
set, and otherwise fails naming that key. Everything else ``modifyvm`` sets is a replace field.
"""

from __future__ import annotations

import hashlib
import re

import pulumi

from ..model import Fleet
from ..model import VirtualboxGuest as VirtualboxGuestModel
from ..model.guests import Installer
from ..osfamily import os_family
from ..remote.scripts import RemoteFile, RenderedStep, render_step
from ..remote.step import RemoteStep
from .context import GuestContext
from .kvm_password import root_password_hash
from .kvm_seed import render_kickstart
from .remote_guest import GuestLifecycle, field_of, lifecycle_step, replace_key

VM_BASE = "/var/lib/virtfleet/virtualbox/vms"  # createvm --basefolder: <VM_BASE>/<name>/<name>.vbox
MEDIA_DIR = "/var/lib/virtfleet/virtualbox/media"  # downloads, once per host and URL
KICKSTART_FILE = "/var/lib/virtfleet/virtualbox/kickstart/{name}.cfg"  # 0600: holds the root hash
RETAINED_DIR = "/var/lib/virtfleet/virtualbox/retained"  # disks kept by retainDisk
VBOX_OUI = "08:00:27"  # VirtualBox's own MAC prefix
BOOT_ISO = "images/boot.iso"
# The install tree a VM without image/install is installed from, per OS family.
DEFAULT_INSTALL_TREES = {
    "el7": "https://vault.centos.org/7.9.2009/os/x86_64/",
    "el9": "https://mirror.stream.centos.org/9-stream/BaseOS/x86_64/os/",
}


def vm_mac(guest: VirtualboxGuestModel) -> str:
    """The configured MAC, else 08:00:27 + 3 bytes of a hash of the name (stable across runs)."""
    if guest.network.mac is not None:
        return guest.network.mac
    tail = hashlib.sha256(f"virtfleet-mac:{guest.name}".encode()).digest()[:3]
    return VBOX_OUI + ":" + ":".join(f"{b:02x}" for b in tail)


def installer_of(guest: VirtualboxGuestModel) -> Installer | None:
    """The unattended install's source: ``install``, else the family's tree; None for an image."""
    if guest.image is not None:
        return None
    return guest.install or Installer(location=DEFAULT_INSTALL_TREES[guest.os_family])


def media_path(url: str) -> str:
    """Where a download lands on the host: one file per URL (digest + the URL's file name)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rstrip("/").rsplit("/", 1)[-1])
    return f"{MEDIA_DIR}/{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"


def vm_replace_fields(guest: VirtualboxGuestModel, fleet: Fleet) -> dict:
    """What needs a new VM: everything ``modifyvm``/the disk set up except memory and CPUs, and on
    the installer path what the installation baked in (address, OS family, packages, time zone)."""
    installer = installer_of(guest)
    fields = {
        "ostype": guest.os_type,
        "firmware": guest.firmware,
        "bridge": guest.network.bridge,
        "mac": vm_mac(guest),
        "vrde": guest.vrde,
        "autostart": guest.autostart,
        "diskGiB": guest.disk_gib,
        "source": str(guest.image) if installer is None else str(installer.location),
    }
    if installer is not None:
        fields.update(
            ip=str(guest.network.ip),
            osFamily=guest.os_family,
            packages=" ".join(installer.packages),
            timezone=installer.timezone,
        )
    return fields


def render_vm_step(guest: VirtualboxGuestModel, fleet: Fleet) -> GuestLifecycle:
    """The VM's lifecycle step on its host (pure)."""
    installer = installer_of(guest)
    source = str(guest.image) if installer is None else _tree_file(str(installer.location), BOOT_ISO)
    step = render_step(
        guest.host,
        f"{guest.name}-vm",
        "virtualbox-vm",
        guest=guest.name,
        host=guest.host,
        ostype=guest.os_type,
        basefolder=VM_BASE,
        memory_mib=guest.memory_mib,
        cpus=guest.vcpus,
        firmware=guest.firmware,
        bridge=guest.network.bridge,
        mac=vm_mac(guest).replace(":", "").upper(),
        vrde=guest.vrde,
        autostart=guest.autostart,
        disk_mib=guest.disk_gib * 1024,
        installer=installer is not None,
        source_url=source,
        source_path=media_path(source),
        kickstart=KICKSTART_FILE.format(name=guest.name),
        fqdn=f"{guest.name}.{fleet.domain}",
        timezone=installer.timezone if installer else "UTC",
        power_state=guest.power_state,
        allow_restart=guest.allow_restart,
        shutdown_timeout=guest.shutdown_timeout_seconds,
        retain_disk=guest.retain_disk,
        retained_dir=RETAINED_DIR,
    )
    return GuestLifecycle(step, vm_replace_fields(guest, fleet))


def _tree_file(location: str, relative: str) -> str:
    return location + ("" if location.endswith("/") else "/") + relative


def render_kickstart_step(
    guest: VirtualboxGuestModel, fleet: Fleet, password: str, login_keys: tuple[str, ...]
) -> RenderedStep:
    """The secret step that writes the guest's kickstart on its host (0600). It names the VM's
    replace fields, so a re-created VM is installed from a kickstart written for it."""
    host = fleet.host(guest.host)
    bridge = host.bridge(guest.network.bridge)
    installed = guest.model_copy(update={"install": installer_of(guest)})
    text = render_kickstart(
        installed,
        fleet,
        bridge,
        os_family(guest.os_family),
        root_password_hash(guest.name, password),
        login_keys,
        nic=vm_mac(guest),
        disk="sda",
        additions=True,
    )
    path = KICKSTART_FILE.format(name=guest.name)
    return render_step(
        guest.host,
        f"{guest.name}-kickstart",
        "virtualbox-kickstart",
        secret=True,
        files=(RemoteFile(path, text, 0o600),),
        guest=guest.name,
        path=path,
        vm=replace_key(vm_replace_fields(guest, fleet)),
    )


class VirtualboxGuest(pulumi.ComponentResource):
    """Type ``virtfleet:guest:VirtualboxGuest``. Outputs, read back from ``VBoxManage showvminfo
    --machinereadable`` on the host: ``name``, ``uuid``, ``host``, ``ip`` (what the Guest Additions
    report), ``mac``, ``state`` (running | paused | stopped) and ``readback`` (the whole line)."""

    def __init__(
        self, guest: VirtualboxGuestModel, *, context: GuestContext, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("virtfleet:guest:VirtualboxGuest", guest.name, None, opts)
        host = context.host
        fleet = context.fleet
        if "virtualbox" not in host.host.roles:
            raise ValueError(f"guest {guest.name}: host {host.host.name} has no virtualbox role")
        depends: list[pulumi.Resource] = list(host.ready)
        password = context.secrets.root_password  # load_secrets makes one for every installer VM
        if installer_of(guest) is not None:
            login_key = context.secrets.login_public_key
            keys = login_key.apply(lambda k: (k,)) if login_key is not None else pulumi.Output.from_input(())
            kickstart = RemoteStep(
                pulumi.Output.all(password, keys).apply(
                    lambda args: render_kickstart_step(guest, fleet, args[0], tuple(args[1]))
                ),
                machine=guest.host,
                name=f"{guest.name}-kickstart",
                connection=host.connection,
                opts=pulumi.ResourceOptions(parent=self, depends_on=host.ready),
            )
            depends.append(kickstart)
        self.vm, state = lifecycle_step(
            render_vm_step(guest, fleet),
            connection=host.connection,
            protect=guest.protect,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*depends, *context.roll_after]),
        )
        self.readback = state
        self.name = field_of(state, "name", guest.name)
        self.uuid = field_of(state, "uuid")
        self.host = field_of(state, "host", guest.host)
        self.ip = field_of(state, "ip")
        self.mac = field_of(state, "mac")
        self.state = field_of(state, "state")
        # The program exports these per remote guest (stack output guestStatus).
        self.readback_outputs = {
            "name": self.name, "uuid": self.uuid, "host": self.host, "ip": self.ip, "mac": self.mac,
            "state": self.state,
        }  # fmt: skip
        self.register_outputs(self.readback_outputs)

#!/usr/bin/env -S python3 -S
"""Fake ``VBoxManage`` (VirtualBox 7.0): registered VMs with settings, storage, media and a power state.

Subcommands, with VBoxManage's syntax: ``createvm --name N [--ostype T] [--basefolder D]
[--register]``, ``modifyvm VM <options>``, ``storagectl VM --name N --add sata|ide [--controller C]
[--portcount N] [--bootable on|off]``, ``storageattach VM --storagectl N --port P --device D --type
hdd|dvddrive --medium PATH|none|emptydrive``, ``createmedium [disk] --filename F --size MB [--format
VDI|VMDK]``, ``clonemedium [disk] SRC DST [--format F]``, ``closemedium [disk] F [--delete]``,
``unattended install VM --iso=F [--script-template=F] [--install-additions] [--hostname=H]
[--time-zone=Z] [--user=…] …``, ``startvm VM [--type headless|gui|separate]``, ``controlvm VM
pause|resume|acpipowerbutton|poweroff``, ``showvminfo VM --machinereadable``, ``unregistervm VM
[--delete|--delete-all]``, ``setextradata VM KEY [VALUE]``, ``getextradata VM KEY``, ``guestproperty
get VM PROP``, ``setproperty autostartdbpath PATH``, ``list vms|runningvms|systemproperties|hdds``.

Output and exit codes follow VBoxManage: a syntax error (unknown option or value) prints ``VBoxManage:
error: …`` and exits 2 (RTEXITCODE_SYNTAX); a refused operation prints ``VBoxManage: error: …`` plus
the Details/Context lines and exits 1. What the real one refuses, this one refuses: ``modifyvm``,
``storagectl``, ``unregistervm`` and attaching a disk while the VM runs or is paused ("already locked
for a session"), ``startvm`` of a running VM, ``controlvm`` of one that is not running, ``createvm``
over an existing settings file or name, ``createmedium`` over an existing file, ``closemedium`` of an
attached medium, ``unattended install`` of a running VM or without its ISO, ``--autostart-enabled on``
without an autostart database path (``setproperty autostartdbpath``), ``startvm`` while
``vboxdrv.service`` is not active (the kernel driver is not loaded).

``showvminfo --machinereadable`` prints VirtualBox 7.0's ``key="value"`` lines (numbers bare, keys
with '-' quoted: ``"SATA-0-0"="…"``). Two things a host does on its own are modelled: after
``unattended install`` and ``startvm``, Anaconda runs the kickstart — at the next ``showvminfo`` the
VM has powered off (the kickstart's ``poweroff``), and when the kickstart runs VirtualBox's
``vboxpostinstall.sh`` the Guest Additions are in, so while the VM runs ``guestproperty get VM
/VirtualBox/GuestInfo/Net/0/V4/IP`` answers the kickstart's ``network --ip``; and the guest's OS
answers the ACPI power button by powering off unless the VM's ``acpi_ignored`` is set in the state
(a test's knob for a hung guest). ``createvm`` writes the settings file, ``createmedium`` a sparse
file of the size, ``clonemedium`` a byte copy; ``unregistervm --delete`` removes the settings file,
the Logs folder, the attached disks and the folder when empty (files unattended left there stay,
as on a real host); ``--autostart-enabled`` keeps ``<db>/<user>.start`` counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import uuid as uuidlib
from pathlib import Path

import fakelib

HOME_BASE = Path("/root/VirtualBox VMs")  # the default machine folder of root
OSTYPES = {
    "RedHat_64": "Red Hat (64-bit)", "RedHat": "Red Hat (32-bit)", "Oracle_64": "Oracle (64-bit)",
    "Fedora_64": "Fedora (64-bit)", "Linux_64": "Other Linux (64-bit)", "Other": "Other/Unknown",
}  # fmt: skip
ON_OFF = ("on", "off")
SWITCHES = ("--audio-enabled", "--usb-ohci", "--usb-ehci", "--usb-xhci", "--vrde", "--autostart-enabled")
IP_PROPERTY = "/VirtualBox/GuestInfo/Net/0/V4/IP"


def main(prog: str, argv: list[str]) -> int:
    if not argv:
        fakelib.fail(
            "Oracle VM VirtualBox Command Line Management Interface Version 7.0.12\nUsage: VBoxManage <command>", 2
        )
    state = fakelib.load("vbox", {"vms": {}, "media": {}, "system": {"autostartdbpath": ""}})
    loaded = json.dumps(state, sort_keys=True)  # a query (showvminfo, list, get…) writes no state file
    command, args = argv[0], argv[1:]
    handlers = {
        "createvm": createvm, "modifyvm": modifyvm, "storagectl": storagectl, "storageattach": storageattach,
        "createmedium": createmedium, "createhd": createmedium, "clonemedium": clonemedium,
        "closemedium": closemedium, "unattended": unattended, "startvm": startvm, "controlvm": controlvm,
        "showvminfo": showvminfo, "unregistervm": unregistervm, "setextradata": setextradata,
        "getextradata": getextradata, "guestproperty": guestproperty, "setproperty": setproperty, "list": list_,
    }  # fmt: skip
    if command not in handlers:
        fakelib.fail(f"VBoxManage: error: Invalid command '{command}'", 2)
    try:
        code = handlers[command](state, args)
    finally:
        if json.dumps(state, sort_keys=True) != loaded:
            fakelib.save("vbox", state)
    return code


def syntax(message: str):
    fakelib.fail(f"VBoxManage: error: {message}", 2)


def refuse(message: str, context: str, code: str = "VBOX_E_INVALID_OBJECT_STATE (0x80bb0007)"):
    fakelib.fail(
        f"VBoxManage: error: {message}\nVBoxManage: error: Details: code {code}, component MachineWrap, "
        f'interface IMachine, callee nsISupports\nVBoxManage: error: Context: "{context}"',
        1,
    )


def options(args: list[str], valued: set[str], flags: set[str] = frozenset()) -> list[tuple[str, str]]:
    """``--opt value``, ``--opt=value`` and flags, in order; anything else is a syntax error."""
    out = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in flags and not eq:
            out.append((name, ""))
            i += 1
        elif name in valued:
            if not eq:
                if i + 1 >= len(args):
                    syntax(f"Option '{name}' requires a value")
                value = args[i + 1]
                i += 1
            out.append((name, value))
            i += 1
        else:
            syntax(f"Invalid parameter '{arg}'")
    return out


def find_vm(state: dict, ref: str) -> dict:
    for vm in state["vms"].values():
        if ref in (vm["name"], vm["uuid"]):
            return vm
    fakelib.fail(
        f"VBoxManage: error: Could not find a registered machine named '{ref}'\nVBoxManage: error: Details: code "
        "VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component VirtualBoxWrap, interface IVirtualBox, callee nsISupports\n"
        f'VBoxManage: error: Context: "FindMachine(Bstr(a->argv[0]).raw(), machine.asOutParam())"',
        1,
    )


def locked(vm: dict) -> bool:
    return vm["state"] in ("running", "paused")


def require_unlocked(vm: dict, context: str) -> None:
    if locked(vm):
        refuse(f"The machine '{vm['name']}' is already locked for a session (or being unlocked)", context)


def new_uuid() -> str:
    return str(uuidlib.uuid4())


# -- createvm / modifyvm ----------------------------------------------------------------------------


def createvm(state: dict, args: list[str]) -> int:
    opts = dict(
        options(args, {"--name", "--ostype", "--basefolder", "--groups", "--uuid", "--default"}, {"--register"})
    )
    name = opts.get("--name")
    if not name:
        syntax("Parameter --name is required")
    ostype = opts.get("--ostype", "Other")
    if ostype not in OSTYPES:
        fakelib.fail(f"VBoxManage: error: Guest OS type '{ostype}' is invalid", 1)
    folder = Path(opts.get("--basefolder", str(HOME_BASE))) / name
    cfg = folder / f"{name}.vbox"
    if cfg.exists():
        fakelib.fail(f"VBoxManage: error: Machine settings file '{cfg}' already exists", 1)
    if "--register" in opts and any(vm["name"] == name for vm in state["vms"].values()):
        fakelib.fail(f"VBoxManage: error: A machine named '{name}' already exists", 1)
    vm_uuid = opts.get("--uuid") or new_uuid()
    folder.mkdir(parents=True, exist_ok=True)
    fakelib.write_file(
        cfg, f'<?xml version="1.0"?>\n<VirtualBox><Machine uuid="{{{vm_uuid}}}" name="{name}"/></VirtualBox>\n'
    )
    if "--register" in opts:
        state["vms"][vm_uuid] = {
            "name": name, "uuid": vm_uuid, "ostype": ostype, "cfgfile": str(cfg), "folder": str(folder),
            "memory": 128, "cpus": 1, "firmware": "BIOS", "nic1": "nat", "bridgeadapter1": "",
            "macaddress1": "080027" + hashlib.sha256(vm_uuid.encode()).hexdigest()[:6].upper(),
            "audio": "pulse", "usb_ohci": "off", "usb_ehci": "off", "usb_xhci": "off",
            "vrde": "off", "vrdeaddress": "", "autostart": "off", "boot": ["floppy", "dvd", "disk", "none"],
            "controllers": [], "attachments": {}, "extradata": {}, "state": "poweroff", "acpi_ignored": False,
            "unattended": None, "installing": False, "installed": None, "additions": False,
        }  # fmt: skip
    print(f"Virtual machine '{name}' is created{' and registered' if '--register' in opts else ''}.")
    print(f"UUID: {vm_uuid}")
    print(f"Settings file: '{cfg}'")
    return 0


MODIFY_ALIASES = {
    "--bridge-adapter1": "--bridgeadapter1", "--mac-address1": "--macaddress1", "--usbohci": "--usb-ohci",
    "--usbehci": "--usb-ehci", "--usbxhci": "--usb-xhci", "--vrdeaddress": "--vrde-address",
    "--vrdeport": "--vrde-port", "--autostart": "--autostart-enabled",
}  # fmt: skip
MODIFY_OPTIONS = {
    "--memory", "--cpus", "--firmware", "--nic1", "--bridgeadapter1", "--macaddress1", "--audio-enabled",
    "--audio", "--usb-ohci", "--usb-ehci", "--usb-xhci", "--vrde", "--vrde-address", "--vrde-port",
    "--autostart-enabled", "--boot1", "--boot2", "--boot3", "--boot4", "--ostype",
}  # fmt: skip


def modifyvm(state: dict, args: list[str]) -> int:
    if not args:
        syntax("Not enough parameters")
    vm = find_vm(state, args[0])
    opts = [(MODIFY_ALIASES.get(k, k), v) for k, v in options(args[1:], MODIFY_OPTIONS | set(MODIFY_ALIASES))]
    if not opts:
        syntax("No options given")
    for key, value in opts:  # every value checked before anything changes, as the real one parses first
        if key in ("--memory", "--cpus") and not (value.isdigit() and int(value) >= 1):
            syntax(f"Invalid {key[2:]} value '{value}'")
        if key == "--firmware" and value not in ("bios", "efi", "efi32", "efi64"):
            syntax(f"Invalid --firmware argument '{value}'")
        if key == "--nic1" and value not in ("none", "null", "nat", "bridged", "intnet", "hostonly", "natnetwork"):
            syntax(f"Invalid type '{value}' specfied for NIC 1")
        if key == "--macaddress1" and not (value == "auto" or re.fullmatch(r"[0-9A-Fa-f]{12}", value)):
            fakelib.fail(f"VBoxManage: error: Invalid MAC address format '{value}'", 1)
        if key in SWITCHES and value not in ON_OFF:
            syntax(f"Invalid {key} argument '{value}'")
        if key.startswith("--boot") and value not in ("none", "floppy", "dvd", "disk", "net"):
            syntax(f"Invalid boot device '{value}'")
        if key == "--ostype" and value not in OSTYPES:  # as createvm: IMachine::OSTypeId refuses it
            fakelib.fail(f"VBoxManage: error: Guest OS type '{value}' is invalid", 1)
    require_unlocked(vm, "LockMachine(a->session, LockType_Write)")
    for key, value in opts:
        if key == "--memory":
            vm["memory"] = int(value)
        elif key == "--cpus":
            vm["cpus"] = int(value)
        elif key == "--firmware":
            vm["firmware"] = "BIOS" if value == "bios" else value.upper()
        elif key == "--nic1":
            vm["nic1"] = value
        elif key == "--bridgeadapter1":
            vm["bridgeadapter1"] = value
        elif key == "--macaddress1":
            vm["macaddress1"] = value.upper() if value != "auto" else vm["macaddress1"]
        elif key == "--audio-enabled":
            vm["audio"] = "none" if value == "off" else "pulse"
        elif key == "--audio":
            vm["audio"] = value
        elif key in ("--usb-ohci", "--usb-ehci", "--usb-xhci"):
            vm[key[2:].replace("-", "_")] = value
        elif key == "--vrde":
            vm["vrde"] = value
        elif key == "--vrde-address":
            vm["vrdeaddress"] = value
        elif key == "--autostart-enabled":
            set_autostart(state, vm, value == "on")
        elif key.startswith("--boot"):
            vm["boot"][int(key[-1]) - 1] = value
        elif key == "--ostype":
            vm["ostype"] = value
    return 0


def set_autostart(state: dict, vm: dict, enabled: bool) -> None:
    """Machine::setAutostartEnabled: the VM's owner's ``<db>/<user>.start`` counts its autostart VMs."""
    if enabled == (vm["autostart"] == "on"):
        return
    db = state["system"]["autostartdbpath"]
    if not db:
        refuse("Setting the autostart property failed (VERR_PATH_NOT_FOUND)", "COMSETTER(AutostartEnabled)(fEnabled)")
    path = Path(db) / f"{os.environ.get('USER') or 'root'}.start"
    count = int(path.read_text().strip() or 0) if path.exists() else 0
    count += 1 if enabled else -1
    if count > 0:
        fakelib.write_file(path, f"{count}\n")
    else:
        path.unlink(missing_ok=True)
    vm["autostart"] = "on" if enabled else "off"
    vm["autostartdb"] = db


# -- storage ----------------------------------------------------------------------------------------


def storagectl(state: dict, args: list[str]) -> int:
    if not args:
        syntax("Not enough parameters")
    vm = find_vm(state, args[0])
    opts = dict(
        options(
            args[1:], {"--name", "--add", "--controller", "--portcount", "--bootable", "--hostiocache"}, {"--remove"}
        )
    )
    name = opts.get("--name")
    if not name:
        syntax("Storage controller name not specified")
    require_unlocked(vm, "LockMachine(a->session, LockType_Write)")
    names = [c["name"] for c in vm["controllers"]]
    if "--remove" in opts:
        if name not in names:
            fakelib.fail(f"VBoxManage: error: Couldn't find the controller with the name: '{name}'", 1)
        vm["controllers"] = [c for c in vm["controllers"] if c["name"] != name]
        return 0
    bus = opts.get("--add")
    if bus not in ("ide", "sata", "scsi", "floppy", "sas", "usb", "pcie", "virtio"):
        syntax(f"Invalid --add argument '{bus}'")
    if name in names:
        fakelib.fail(f"VBoxManage: error: Storage controller named '{name}' already exists", 1)
    default = {"ide": "PIIX4", "sata": "IntelAhci"}.get(bus, bus)
    ports = int(opts.get("--portcount", "30" if bus == "sata" else "2"))
    vm["controllers"].append({
        "name": name, "bus": bus, "type": opts.get("--controller", default), "ports": ports,
        "devices": 2 if bus == "ide" else 1, "bootable": opts.get("--bootable", "on"),
    })  # fmt: skip
    return 0


def storageattach(state: dict, args: list[str]) -> int:
    if not args:
        syntax("Not enough parameters")
    vm = find_vm(state, args[0])
    opts = dict(options(args[1:], {"--storagectl", "--port", "--device", "--type", "--medium", "--mtype"}))
    ctl = next((c for c in vm["controllers"] if c["name"] == opts.get("--storagectl")), None)
    if ctl is None:
        fakelib.fail(f"VBoxManage: error: Could not find a controller named '{opts.get('--storagectl')}'", 1)
    port, device = int(opts.get("--port", "0")), int(opts.get("--device", "0"))
    if port >= ctl["ports"] or device >= ctl["devices"]:
        fakelib.fail(f"VBoxManage: error: The port and/or count parameter are out of range [0..{ctl['ports'] - 1}]", 1)
    slot = f"{ctl['name']}-{port}-{device}"
    medium, kind = opts.get("--medium"), opts.get("--type")
    if medium is None:
        syntax("Missing --medium argument")
    current = vm["attachments"].get(slot)
    if medium == "none":
        if current is not None and current["type"] == "hdd":
            require_unlocked(vm, "DetachDevice(Bstr(pszCtl).raw(), port, device)")
        vm["attachments"].pop(slot, None)
        return 0
    if kind not in ("hdd", "dvddrive", "fdd"):
        syntax(f"Invalid --type argument '{kind}'")
    if kind == "hdd":
        require_unlocked(vm, "AttachDevice(Bstr(pszCtl).raw(), port, device, DeviceType_HardDisk, pMedium2Mount)")
        if not Path(medium).is_file():
            fakelib.fail(f"VBoxManage: error: Could not find file for the medium '{medium}' (VERR_FILE_NOT_FOUND)", 1)
        state["media"].setdefault(medium, {"uuid": new_uuid(), "format": "VDI", "size_mib": 0})
        vm["attachments"][slot] = {"type": "hdd", "medium": medium}
    elif medium == "emptydrive":
        vm["attachments"][slot] = {"type": kind, "medium": "emptydrive"}
    else:
        if not Path(medium).is_file():
            fakelib.fail(f"VBoxManage: error: Could not find file for the medium '{medium}' (VERR_FILE_NOT_FOUND)", 1)
        vm["attachments"][slot] = {"type": kind, "medium": medium}
    return 0


def _medium_args(args: list[str]) -> list[str]:
    return args[1:] if args and args[0] in ("disk", "dvd", "floppy") else args


def createmedium(state: dict, args: list[str]) -> int:
    opts = dict(options(_medium_args(args), {"--filename", "--size", "--sizebyte", "--format", "--variant"}))
    filename = opts.get("--filename")
    if not filename or not opts.get("--size", "").isdigit():
        syntax("Parameters --filename and --size are required")
    fmt = opts.get("--format", "VDI").upper()
    if fmt not in ("VDI", "VMDK", "VHD"):
        fakelib.fail(f"VBoxManage: error: Invalid hard disk format '{fmt}'", 1)
    path = Path(filename)
    if path.exists() or filename in state["media"]:
        fakelib.fail(
            f"VBoxManage: error: Failed to create medium\nVBoxManage: error: Could not create the medium storage "
            f"unit '{filename}'.\nVBoxManage: error: VDI: cannot create image '{filename}' (VERR_ALREADY_EXISTS)",
            1,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"<<< Oracle VM VirtualBox Disk Image >>>\n")
        f.truncate(int(opts["--size"]) * 1024 * 1024)  # sparse, like a dynamic VDI's logical size
    medium_uuid = new_uuid()
    state["media"][filename] = {"uuid": medium_uuid, "format": fmt, "size_mib": int(opts["--size"])}
    print("0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%", file=sys.stderr)
    print(f"Medium created. UUID: {medium_uuid}")
    return 0


def clonemedium(state: dict, args: list[str]) -> int:
    positional, flagged = [], []
    rest = _medium_args(args)
    i = 0
    while i < len(rest):
        if not rest[i].startswith("--"):
            positional.append(rest[i])
        else:
            flagged.append(rest[i])
            if "=" not in rest[i] and rest[i] in ("--format", "--variant") and i + 1 < len(rest):
                flagged.append(rest[i + 1])
                i += 1
        i += 1
    if len(positional) != 2:
        syntax("Mandatory parameters missing" if len(positional) < 2 else f"Invalid parameter '{positional[2]}'")
    src, dst = positional
    opts = dict(options(flagged, {"--format", "--variant"}, {"--existing"}))
    if not Path(src).is_file():
        fakelib.fail(f"VBoxManage: error: Could not find file for the medium '{src}' (VERR_FILE_NOT_FOUND)", 1)
    if Path(dst).exists():
        fakelib.fail(f"VBoxManage: error: Cannot create the clone medium '{dst}' (VERR_ALREADY_EXISTS)", 1)
    fmt = opts.get("--format", "VDI").upper()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_bytes(Path(src).read_bytes())
    medium_uuid = new_uuid()
    state["media"][dst] = {"uuid": medium_uuid, "format": fmt, "size_mib": Path(dst).stat().st_size // 1048576}
    print("0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%", file=sys.stderr)
    print(f"Clone medium created in format '{fmt}'. UUID: {medium_uuid}")
    return 0


def closemedium(state: dict, args: list[str]) -> int:
    rest = _medium_args(args)
    delete = "--delete" in rest
    names = [a for a in rest if a != "--delete"]
    if len(names) != 1:
        syntax("Invalid closemedium parameters")
    path = names[0]
    if path not in state["media"]:
        fakelib.fail(f"VBoxManage: error: Could not find file for the medium '{path}' (VERR_FILE_NOT_FOUND)", 1)
    users = [vm["name"] for vm in state["vms"].values() if any(a["medium"] == path for a in vm["attachments"].values())]
    if users:
        fakelib.fail(
            f"VBoxManage: error: Medium '{path}' cannot be closed because it is still attached to {len(users)} "
            "virtual machines",
            1,
        )
    del state["media"][path]
    if delete:
        Path(path).unlink(missing_ok=True)
    return 0


# -- unattended / power -----------------------------------------------------------------------------


def unattended(state: dict, args: list[str]) -> int:
    if len(args) < 2 or args[0] != "install":
        syntax("Invalid unattended subcommand" if args else "Missing subcommand")
    vm = find_vm(state, args[1])
    valued = {
        "--iso", "--script-template", "--post-install-template", "--hostname", "--time-zone", "--user", "--password",
        "--password-file", "--full-user-name", "--locale", "--country", "--additions-iso", "--language",
        "--extra-install-kernel-parameters", "--start-vm", "--image-index", "--key",
    }  # fmt: skip
    opts = dict(options(args[2:], valued, {"--install-additions", "--no-install-additions", "--dry-run"}))
    iso = opts.get("--iso")
    if not iso:
        syntax("Missing --iso option")
    if not Path(iso).is_file():
        fakelib.fail(f"VBoxManage: error: Could not locate the installation ISO file '{iso}'", 1)
    template = opts.get("--script-template")
    if template is not None and not Path(template).is_file():
        fakelib.fail(f"VBoxManage: error: Failed to read the script template '{template}' (VERR_FILE_NOT_FOUND)", 1)
    require_unlocked(vm, "LockMachine(ptrSessionMachine, LockType_Write)")
    script = Path(template).read_text() if template else ""
    folder = Path(vm["folder"])
    aux = folder / f"Unattended-{vm['uuid']}-aux-iso.viso"
    fakelib.write_file(aux, f"--iso {iso}\n")
    fakelib.write_file(folder / f"Unattended-{vm['uuid']}-ks.cfg", script)
    dvd = next((s for s, a in vm["attachments"].items() if a["type"] == "dvddrive"), None)
    if dvd is None:
        fakelib.fail("VBoxManage: error: The VM has no DVD drive to attach the installation medium to", 1)
    vm["attachments"][dvd] = {"type": "dvddrive", "medium": str(aux)}
    vm["unattended"] = {
        "iso": iso, "script_sha256": hashlib.sha256(script.encode()).hexdigest(), "script": script,
        "additions": "--install-additions" in opts, "hostname": opts.get("--hostname", ""),
        "timezone": opts.get("--time-zone", ""),
    }  # fmt: skip
    where = f"machine '{vm['name']}' ({vm['uuid']})"
    print(f"VBoxManage: info: Preparing unattended installation of {vm['ostype']} in {where}.")
    print(f"VBoxManage: info: VM '{vm['name']}' ({vm['uuid']}) is ready to be started (e.g. VBoxManage startvm).")
    return 0


def startvm(state: dict, args: list[str]) -> int:
    if not args:
        syntax("Not enough parameters")
    vm = find_vm(state, args[0])
    opts = dict(options(args[1:], {"--type"}))
    if opts.get("--type", "gui") not in ("gui", "headless", "separate", "sdl"):
        syntax(f"Invalid session type '{opts['--type']}'")
    if locked(vm):
        refuse(
            f"The machine '{vm['name']}' is already locked by a session (or being locked or unlocked)",
            "LaunchVMProcess",
        )
    if not fakelib.unit_active("vboxdrv"):
        fakelib.fail(
            f"VBoxManage: error: The virtual machine '{vm['name']}' has terminated unexpectedly during startup "
            "with exit code 1 (0x1)\nVBoxManage: error: Details: The VirtualBox kernel driver is not accessible "
            "(vboxdrv not loaded)",
            1,
        )
    print(f'Waiting for VM "{vm["name"]}" to power on...')
    vm["state"] = "running"
    if vm["unattended"] is not None:
        vm["installing"] = True
    print(f'VM "{vm["name"]}" has been successfully started.')
    return 0


def finish_install(vm: dict) -> None:
    """Anaconda ran the kickstart to its poweroff: the disk holds the system, maybe the additions."""
    info = vm.pop("unattended")
    vm["unattended"] = None
    vm["installing"] = False
    vm["state"] = "poweroff"
    ip = re.search(r"^network .*--ip=(\S+)", info["script"], re.M)
    vm["installed"] = {
        "script_sha256": info["script_sha256"],
        "hostname": info["hostname"],
        "ip": ip.group(1) if ip else None,
    }
    vm["additions"] = info["additions"] and "vboxpostinstall.sh" in info["script"]


def controlvm(state: dict, args: list[str]) -> int:
    if len(args) < 2:
        syntax("Not enough parameters")
    vm = find_vm(state, args[0])
    action = args[1]
    if action not in ("pause", "resume", "acpipowerbutton", "poweroff", "reset", "savestate"):
        syntax(f"Invalid parameter '{action}'")
    if not locked(vm):
        fakelib.fail(f"VBoxManage: error: Machine '{vm['name']}' is not currently running", 1)
    if action == "pause":
        if vm["state"] != "running":
            refuse("VM is not running (state: Paused)", "Pause()", "VBOX_E_INVALID_VM_STATE (0x80bb0002)")
        vm["state"] = "paused"
    elif action == "resume":
        if vm["state"] != "paused":
            refuse("VM is not paused (state: Running)", "Resume()", "VBOX_E_INVALID_VM_STATE (0x80bb0002)")
        vm["state"] = "running"
    elif action == "acpipowerbutton":
        if vm["state"] != "running":
            refuse("Invalid machine state: Paused", "PowerButton()", "VBOX_E_INVALID_VM_STATE (0x80bb0002)")
        if not vm["acpi_ignored"] and not vm["installing"]:
            vm["state"] = "poweroff"
    elif action == "poweroff":
        print("0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%", file=sys.stderr)
        vm["state"] = "poweroff"
        vm["installing"] = False
    elif action == "savestate":
        vm["state"] = "saved"
    return 0


# -- read-back ---------------------------------------------------------------------------------------


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def showvminfo(state: dict, args: list[str]) -> int:
    if not args:
        syntax("Not enough parameters")
    vm = find_vm(state, args[0])
    opts = dict(options(args[1:], {"--log"}, {"--machinereadable", "--details"}))
    if vm["installing"]:
        finish_install(vm)
    if "--machinereadable" not in opts:
        print(f"Name:                        {vm['name']}\nUUID:                        {vm['uuid']}")
        print(f"State:                       {vm['state']}")
        return 0
    folder = vm["folder"]
    lines = [
        ("name", quote(vm["name"])), ("Encryption", quote("disabled")), ("groups", quote("/")),
        ("ostype", quote(OSTYPES[vm["ostype"]])), ("UUID", quote(vm["uuid"])), ("CfgFile", quote(vm["cfgfile"])),
        ("SnapFldr", quote(f"{folder}/Snapshots")), ("LogFldr", quote(f"{folder}/Logs")),
        ("hardwareuuid", quote(vm["uuid"])), ("memory", str(vm["memory"])), ("pagefusion", quote("off")),
        ("vram", "8"), ("cpuexecutioncap", "100"), ("hpet", quote("off")), ("cpu-profile", quote("host")),
        ("chipset", quote("piix3")), ("firmware", quote(vm["firmware"])), ("cpus", str(vm["cpus"])),
        ("pae", quote("on")), ("longmode", quote("on")), ("bootmenu", quote("messageandmenu")),
        *((f"boot{i + 1}", quote(dev)) for i, dev in enumerate(vm["boot"])),
        ("acpi", quote("on")), ("ioapic", quote("on")), ("biosapic", quote("apic")),
        ("VMState", quote(vm["state"])), ("VMStateChangeTime", quote("2026-12-01T05:00:00.000000000")),
        ("graphicscontroller", quote("vboxvga")), ("monitorcount", "1"),
    ]  # fmt: skip
    for index, ctl in enumerate(vm["controllers"]):
        lines += [
            (f"storagecontrollername{index}", quote(ctl["name"])),
            (f"storagecontrollertype{index}", quote(ctl["type"])),
            (f"storagecontrollerinstance{index}", quote("0")), (f"storagecontrollermaxportcount{index}", quote("30")),
            (f"storagecontrollerportcount{index}", quote(str(ctl["ports"]))),
            (f"storagecontrollerbootable{index}", quote(ctl["bootable"])),
        ]  # fmt: skip
        for port in range(ctl["ports"]):
            for device in range(ctl["devices"]):
                slot = f"{ctl['name']}-{port}-{device}"
                att = vm["attachments"].get(slot)
                lines.append((quote(slot), quote(att["medium"] if att else "none")))
                if att and att["type"] == "hdd":
                    media_uuid = state["media"].get(att["medium"], {}).get("uuid", "")
                    lines.append((quote(f"{ctl['name']}-ImageUUID-{port}-{device}"), quote(media_uuid)))
    if vm["nic1"] == "bridged":
        lines.append(("bridgeadapter1", quote(vm["bridgeadapter1"])))
    elif vm["nic1"] == "nat":
        lines.append(("natnet1", quote("nat")))
    lines += [
        ("macaddress1", quote(vm["macaddress1"])), ("cableconnected1", quote("on")), ("nic1", quote(vm["nic1"])),
        ("nictype1", quote("82540EM")), ("nicspeed1", quote("0")),
        *((f"nic{i}", quote("none")) for i in range(2, 9)),
        ("hidpointing", quote("ps2mouse")), ("hidkeyboard", quote("ps2kbd")), ("uart1", quote("off")),
        ("audio", quote(vm["audio"])), ("audio_out", quote("off")), ("audio_in", quote("off")),
        ("clipboard", quote("disabled")), ("draganddrop", quote("disabled")), ("vrde", quote(vm["vrde"])),
    ]  # fmt: skip
    if vm["vrde"] == "on":
        lines += [
            ("vrdeport", "3389"),
            ("vrdeports", quote("3389")),
            ("vrdeaddress", quote(vm["vrdeaddress"] or "0.0.0.0")),
        ]
    lines += [
        ("usb", quote(vm["usb_ohci"])), ("ehci", quote(vm["usb_ehci"])), ("xhci", quote(vm["usb_xhci"])),
        ("recording_enabled", quote("off")), ("GuestMemoryBalloon", "0"),
        ("autostart-enabled", quote(vm["autostart"])), ("autostart-delay", "0"),
    ]  # fmt: skip
    if vm["additions"] and vm["state"] == "running":
        lines += [("GuestOSType", quote("RedHat_64")), ("GuestAdditionsRunLevel", "2"),
                  ("GuestAdditionsVersion", quote("7.0.12 r159484"))]  # fmt: skip
    for key, value in lines:
        print(f"{key}={value}")
    return 0


def setextradata(state: dict, args: list[str]) -> int:
    if len(args) not in (2, 3):
        syntax("Incorrect number of parameters")
    vm = find_vm(state, args[0])
    if len(args) == 2 or args[2] == "":
        vm["extradata"].pop(args[1], None)
    else:
        vm["extradata"][args[1]] = args[2]
    return 0


def getextradata(state: dict, args: list[str]) -> int:
    if len(args) != 2:
        syntax("Incorrect number of parameters")
    value = find_vm(state, args[0])["extradata"].get(args[1])
    print(f"Value: {value}" if value is not None else "No value set!")
    return 0


def guestproperty(state: dict, args: list[str]) -> int:
    if len(args) < 3 or args[0] != "get":
        syntax("Invalid guestproperty subcommand")
    vm = find_vm(state, args[1])
    value = None
    if args[2] == IP_PROPERTY and vm["state"] == "running" and vm["additions"] and vm["installed"]:
        value = vm["installed"]["ip"]
    print(f"Value: {value}" if value else "No value set!")
    return 0


def unregistervm(state: dict, args: list[str]) -> int:
    if not args:
        syntax("Not enough parameters")
    vm = find_vm(state, args[0])
    flags = dict(options(args[1:], set(), {"--delete", "--delete-all"}))
    if locked(vm):
        refuse(
            f"Cannot unregister the machine '{vm['name']}' while it is locked",
            "Unregister(CleanupMode_DetachAllReturnHardDisksOnly)",
        )
    if vm["autostart"] == "on" and state["system"]["autostartdbpath"]:
        set_autostart(state, vm, False)
    del state["vms"][vm["uuid"]]
    if flags:
        for att in vm["attachments"].values():
            if att["type"] == "hdd" or ("--delete-all" in flags and att["medium"] not in ("emptydrive",)):
                Path(att["medium"]).unlink(missing_ok=True)
                state["media"].pop(att["medium"], None)
        cfg = Path(vm["cfgfile"])
        for path in (cfg, cfg.with_name(cfg.name + "-prev")):
            path.unlink(missing_ok=True)
        logs = Path(vm["folder"]) / "Logs"
        if logs.is_dir():
            for f in logs.iterdir():
                f.unlink()
            logs.rmdir()
        folder = Path(vm["folder"])
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    else:
        for att in vm["attachments"].values():  # the media stay registered, detached
            if att["type"] == "hdd":
                state["media"].setdefault(att["medium"], {"uuid": new_uuid(), "format": "VDI", "size_mib": 0})
    return 0


def setproperty(state: dict, args: list[str]) -> int:
    if len(args) != 2:
        syntax("Incorrect number of parameters")
    if args[0] != "autostartdbpath":
        syntax(f"Invalid parameter '{args[0]}'")
    if args[1] != "null" and not Path(args[1]).is_dir():
        fakelib.fail(f"VBoxManage: error: The given path '{args[1]}' is not a directory (VERR_PATH_NOT_FOUND)", 1)
    state["system"]["autostartdbpath"] = "" if args[1] == "null" else args[1]
    return 0


def list_(state: dict, args: list[str]) -> int:
    what = args[0] if args else ""
    if what in ("vms", "runningvms"):
        for vm in state["vms"].values():
            if what == "vms" or locked(vm):
                print(f'"{vm["name"]}" {{{vm["uuid"]}}}')
    elif what == "systemproperties":
        print("API version:                     7_0")
        print(f"Default machine folder:          {HOME_BASE}")
        print(f"Autostart Database Path:         {state['system']['autostartdbpath']}")
    elif what == "hdds":
        for path, medium in state["media"].items():
            print(f"UUID:           {medium['uuid']}\nFormat:         {medium['format']}\nLocation:       {path}\n")
    else:
        syntax(f"Unknown subcommand '{what}'")
    return 0


if __name__ == "__main__":
    fakelib.run(main)

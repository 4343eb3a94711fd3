"""L4: prod's VirtualBox VM (centos7vm1 on vbox1), its whole lifecycle run for real over SSH.

The exact ``create``/``delete`` strings (and the secret kickstart step's stdin) the program records
run through a real sshd (``LoopbackSshd``), as pulumi-command sends them, together with the host's
own ``virtualbox-autostart`` step. VirtualBox needs its kernel driver, so ``VBoxManage`` is the
stateful fake of ``tests/fakes`` (VirtualBox 7.0's syntax, ``showvminfo --machinereadable`` output
and exit codes; it refuses what the real one refuses, ``modifyvm`` of a running VM among them);
bash, curl, sed and flock are the real ones. The install tree (``images/boot.iso``) and disk images
are served over HTTP on 127.0.0.1 by the test, which counts the downloads. Variants of the stack
(memory, allowRestart, power state, retainDisk, image) are the program run on an edited copy of
Pulumi.prod.yaml, so each step is what ``pulumi up`` would run after that edit.
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import threading
from dataclasses import dataclass
from functools import cache

import pytest
from support.drift_check import drift, drifted
from support.el_repos import role_repos_command
from support.sshd import LoopbackSshd
from support.step_run import Result, ok, run, second_run_changes_nothing
from support.tools import require_root, require_tool

import plan.mocks
from components.guests.remote_guest import readback
from components.guests.virtualbox import KICKSTART_FILE, RETAINED_DIR, VM_BASE, render_vm_step, vm_mac
from components.hosts.host_steps import virtualbox_autostart_step
from components.model import load_fleet
from components.remote.scripts import as_command
from plan.run import StackConfig, load_stack, run_program

pytestmark = pytest.mark.real
GUEST, HOST = "centos7vm1", "vbox1"
STATE = "/var/lib/virtfleet-fakes"
FOLDER = f"{VM_BASE}/{GUEST}"
DISK = f"{FOLDER}/{GUEST}.vdi"
KICKSTART = KICKSTART_FILE.format(name=GUEST)
BOOT_ISO = b"fake boot.iso of an EL install tree\n"
DISK_IMAGE = b"<<< Oracle VM VirtualBox Disk Image >>>\n" + bytes(range(256)) * 16


class _Files(http.server.BaseHTTPRequestHandler):
    files = {"/el9/images/boot.iso": BOOT_ISO, "/disks/c7.vdi": DISK_IMAGE}
    requests: list[str] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(autouse=True)
def _fresh_requests():
    _Files.requests.clear()


@dataclass(frozen=True)
class Step:
    name: str
    create: str
    delete: str
    stdin: str | None
    triggers: list

    def report(self, action: str, word: str) -> str:
        return f"virtfleet: {HOST}/{self.name} ({action}): {word}"


def program(server: str, **changes) -> dict[str, Step]:
    """prod with centos7vm1 installed from the test's tree (or ``image``) and ``changes``: its steps
    and the host's autostart step, by short name. The base stack's steps are what the program
    records; a variant's VM step is rendered by the same pure function, which
    ``test_variant_steps_are_the_programs`` ties to the program (a program run costs seconds)."""
    if "image" not in changes:
        changes = {"install": {"location": f"{server}/el9/"}, **changes}
    base = _program(json.dumps({"install": changes["install"]} if "install" in changes else {}, sort_keys=True))
    if set(changes) == {"install"}:
        return base
    steps = {"vm": vm_step(changes)}
    if "image" not in changes:
        steps["kickstart"] = base["kickstart"]
    return {**steps, "autostart": base["autostart"]}


def vm_step(changes: dict) -> Step:
    config, _ = load_stack("prod")
    values = copy.deepcopy(config.values)
    next(g for g in values["guests"] if g["name"] == GUEST).update(changes)
    fleet = load_fleet(values, set(config.secret_keys))
    lifecycle = render_vm_step(fleet.guest(GUEST), fleet)
    step = lifecycle.step
    return Step(step.name, as_command(step.create), as_command(step.delete), None, [lifecycle.replace_key])


@cache
def _program(changes_json: str) -> dict[str, Step]:
    config, _ = load_stack("prod")
    values = copy.deepcopy(config.values)
    next(g for g in values["guests"] if g["name"] == GUEST).update(json.loads(changes_json))
    rec = run_program(StackConfig(config.name, values, set(config.secret_keys), list(config.placeholders)))
    steps = {}
    for short, name in (
        ("vm", f"{GUEST}-vm"),
        ("kickstart", f"{GUEST}-kickstart"),
        ("autostart", "virtualbox-autostart"),
    ):
        matches = [c for c in rec.of_type("command:remote:Command") if c.name == f"{HOST}-{name}"]
        if matches:
            c = matches[0]
            steps[short] = Step(
                name, c.inputs["create"], c.inputs["delete"], c.inputs.get("stdin"), c.inputs["triggers"]
            )
    return steps


def test_variant_steps_are_the_programs(server):
    """The pure rendering the variants use is, byte for byte, what the program records."""
    recorded = _program(json.dumps({"install": {"location": f"{server}/el9/"}, "memoryMiB": 2048}, sort_keys=True))
    assert program(server, memoryMiB=2048)["vm"] == recorded["vm"]


def vms(sshd: LoopbackSshd) -> dict:
    """The fake's own record of the VMs by name (what VBoxSVC keeps in its registry and settings)."""
    state = json.loads(ok(sshd, f"cat {STATE}/vbox.json"))
    return {vm["name"]: vm for vm in state["vms"].values()} | {"_media": state["media"]}


def vbox_host(sshd: LoopbackSshd, steps: dict[str, Step]) -> None:
    """A prepared vbox1: EL9, VirtualBox installed and vboxdrv running (what its role step leaves,
    the package's %pre adds the vboxusers group), then its autostart step run for real."""
    sshd.upload("AlmaLinux release 9.3 (Shamrock Pampas Cat)\n", "/etc/redhat-release")
    ok(sshd, role_repos_command("virtualbox", "el9"))
    ok(sshd, "dnf -y install VirtualBox-7.0 >/dev/null && systemctl enable --now vboxdrv >/dev/null 2>&1")
    if "autostart" in steps:
        _, fleet = load_stack("prod")
        rendered = virtualbox_autostart_step(fleet.host(HOST), fleet)
        for f in rendered.uploads:  # what the step's CopyToRemote puts on the host first
            sshd.upload(f.content, rendered.staging_path(f), f.mode)
        create(sshd, steps["autostart"])


def create(sshd: LoopbackSshd, step: Step, word: str = "changed", code: int = 0) -> Result:
    result = run(sshd, step.create, step.stdin)
    assert result.code == code, str(result)
    if code == 0:
        assert result.last == step.report("create", word), str(result)
    return result


def up(sshd: LoopbackSshd, steps: dict[str, Step], word: str = "changed") -> Result:
    """The guest's steps in the program's order: kickstart (installer path), then the VM."""
    if "kickstart" in steps:
        create(sshd, steps["kickstart"], "changed" if word == "changed" else "unchanged")
    return create(sshd, steps["vm"], word)


def require_lab() -> None:
    require_root()
    require_tool("sshd")
    require_tool("curl")


def test_vm_create_installs_converges_and_reads_back_what_the_host_holds(server):
    """Create: the autostart database, the VM with every modifyvm setting, an empty disk, the
    unattended install with the kickstart the secret step wrote (0600) and the Guest Additions, then
    running headless; boot.iso downloaded once; the last JSON line is the VM as showvminfo reports
    it (the IP is what the additions report). A second run changes nothing, byte for byte."""
    require_lab()
    steps = program(server)
    with LoopbackSshd() as sshd:
        vbox_host(sshd, steps)
        assert "Autostart Database Path:         /etc/vbox/autostart.d\n" in ok(
            sshd, "VBoxManage list systemproperties"
        )
        assert ok(sshd, "stat -c %a:%G /etc/vbox/autostart.d") == "1770:vboxusers\n"
        assert "VBOXAUTOSTART_DB=/etc/vbox/autostart.d\n" in ok(sshd, "cat /etc/default/virtualbox")
        first = up(sshd, steps)
        assert any(f"VM {GUEST} created in {FOLDER}" in c for c in first.changes), str(first)
        assert any("installed (unattended" in c for c in first.changes), str(first)
        vm = vms(sshd)[GUEST]
        assert (vm["state"], vm["memory"], vm["cpus"], vm["firmware"]) == ("running", 1024, 2, "BIOS")
        assert (vm["nic1"], vm["bridgeadapter1"]) == ("bridged", "brid0")
        assert vm["macaddress1"] == vm_mac_hex()
        assert (vm["audio"], vm["usb_ohci"], vm["usb_ehci"], vm["usb_xhci"], vm["vrde"]) == (
            "none",
            "off",
            "off",
            "off",
            "off",
        )
        assert vm["autostart"] == "on" and vm["autostartdb"] == "/etc/vbox/autostart.d"
        assert ok(sshd, "cat /etc/vbox/autostart.d/root.start") == "1\n"
        assert vm["attachments"]["SATA-0-0"] == {"type": "hdd", "medium": DISK}
        assert vm["attachments"]["IDE-0-0"]["medium"] == "emptydrive", "the installer's DVD is detached"
        assert vms(sshd)["_media"][DISK]["size_mib"] == 8 * 1024
        kickstart = ok(sshd, f"cat {KICKSTART}")
        assert ok(sshd, f"stat -c %a {KICKSTART}") == "600\n" and "rootpw --iscrypted $6$" in kickstart
        assert vm["installed"]["script_sha256"] == hashlib.sha256(kickstart.encode()).hexdigest()
        assert vm["additions"] is True and vm["installed"]["hostname"] == f"{GUEST}.packt.co.uk"
        assert _Files.requests == ["/el9/images/boot.iso"]
        state = readback("\n".join(first.out))
        assert state == {
            "name": GUEST, "uuid": vm["uuid"], "host": HOST, "state": "running", "ip": "10.0.0.16",
            "mac": vm_mac(fleet_guest()), "memoryMiB": 1024, "cpus": 2, "ostype": "Red Hat (64-bit)",
            "firmware": "BIOS", "bridge": "brid0", "vrde": False, "autostart": True,
        }  # fmt: skip
        files = f"find {VM_BASE} /var/lib/virtfleet/virtualbox -printf '%p %m %s\\n' | sort"
        snapshot = f"sha256sum {STATE}/vbox.json {KICKSTART}; {files}"
        second_run_changes_nothing(sshd, snapshot, lambda: up(sshd, steps, "unchanged"), state, "the VM")
        assert _Files.requests == ["/el9/images/boot.iso"], "boot.iso is downloaded once per host"


def fleet_guest():
    _, fleet = load_stack("prod")
    return fleet.guest(GUEST)


def vm_mac_hex() -> str:
    return vm_mac(fleet_guest()).replace(":", "").upper()


def test_outputs_are_the_read_back_line(server, monkeypatch):
    """The component's outputs (stack output guestStatus) are parsed from the step's stdout."""
    require_lab()
    steps = program(server)
    with LoopbackSshd() as sshd:
        vbox_host(sshd, steps)
        out = up(sshd, steps).out
    state = readback("\n".join(out))
    computed = {**plan.mocks._COMPUTED, "command:remote:Command": {"stdout": "\n".join(out), "stderr": ""}}
    monkeypatch.setattr(plan.mocks, "_COMPUTED", computed)
    config, _ = load_stack("prod")
    exported = run_program(config).outputs["guestStatus"][GUEST]
    assert exported == {k: state[k] for k in ("name", "uuid", "host", "ip", "mac", "state")}
    assert exported["state"] == "running" and exported["ip"] == "10.0.0.16" and exported["uuid"]


def test_memory_change_needs_allow_restart(server):
    """memoryMiB 1024 -> 2048 on the running VM: the same triggers (an update). Without
    allowRestart the step fails naming the key and leaves the VM as it was (running, 1024); with
    it, the VM is shut down by its ACPI power button, modifyvm'd and started again."""
    require_lab()
    base = program(server)
    refused = program(server, memoryMiB=2048)
    allowed = program(server, memoryMiB=2048, allowRestart=True)
    assert refused["vm"].triggers == base["vm"].triggers == allowed["vm"].triggers
    with LoopbackSshd() as sshd:
        vbox_host(sshd, base)
        up(sshd, base)
        failed = create(sshd, refused["vm"], code=1)
        assert "allowRestart: true" in failed.err and "modifyvm --memory 2048" in failed.err, str(failed)
        vm = vms(sshd)[GUEST]
        assert (vm["state"], vm["memory"]) == ("running", 1024)
        changed = create(sshd, allowed["vm"])
        assert changed.changes == [
            f"changed: VM {GUEST} powered off for modifyvm --memory 2048 (allowRestart)",
            f"changed: VM {GUEST}: modifyvm --memory 2048",
            f"changed: VM {GUEST} started (headless)",
        ], str(changed)
        vm = vms(sshd)[GUEST]
        assert (vm["state"], vm["memory"], vm["installed"] is not None) == ("running", 2048, True)
        assert readback("\n".join(changed.out))["memoryMiB"] == 2048
        create(sshd, allowed["vm"], "unchanged")
        # A guest that ignores the power button is powered off after shutdownTimeoutSeconds.
        ok(sshd, f"python3 -c \"import json; p='{STATE}/vbox.json'; s=json.load(open(p)); "
                 f"[v.update(acpi_ignored=True) for v in s['vms'].values()]; json.dump(s, open(p, 'w'))\"")  # fmt: skip
        hung = program(server, memoryMiB=1536, allowRestart=True, shutdownTimeoutSeconds=2)
        result = create(sshd, hung["vm"])
        assert (
            f"changed: VM {GUEST} did not shut down within 2 s of the ACPI power button: powered off" in result.changes
        )
        assert (vms(sshd)[GUEST]["memory"], vms(sshd)[GUEST]["state"]) == (1536, "running")


def test_power_states_are_reached(server):
    """running -> paused (controlvm pause) -> stopped (ACPI power button) -> paused (started, then
    paused) -> running (resume); each state reported by the read-back, each second run unchanged."""
    require_lab()
    steps = program(server)
    with LoopbackSshd() as sshd:
        vbox_host(sshd, steps)
        up(sshd, steps)
        for target, fake_state, change in (
            ("paused", "paused", f"changed: VM {GUEST} paused"),
            ("stopped", "poweroff", f"changed: VM {GUEST} stopped"),
            ("paused", "paused", f"changed: VM {GUEST} started (headless) and paused"),
            ("running", "running", f"changed: VM {GUEST} resumed"),
        ):
            step = program(server, powerState=target)["vm"]
            result = create(sshd, step)
            assert result.changes == [change], (target, str(result))
            assert vms(sshd)[GUEST]["state"] == fake_state
            assert readback("\n".join(result.out))["state"] == target
            create(sshd, step, "unchanged")


def test_delete_leaves_nothing_and_is_repeatable(server):
    """Delete (after the kickstart step's): the running VM powered off, unregistered with its disk,
    settings, unattended files and folder; the autostart count dropped; the kickstart removed. A
    second delete finds nothing and says unchanged."""
    require_lab()
    steps = program(server)
    with LoopbackSshd() as sshd:
        vbox_host(sshd, steps)
        up(sshd, steps)
        result = run(sshd, steps["vm"].delete)
        assert result.code == 0 and result.last == steps["vm"].report("delete", "changed"), str(result)
        kick = run(sshd, steps["kickstart"].delete)
        assert kick.code == 0 and kick.last == steps["kickstart"].report("delete", "changed"), str(kick)
        state = vms(sshd)
        assert GUEST not in state and DISK not in state["_media"]
        assert not sshd.exists(FOLDER) and not sshd.exists(KICKSTART)
        assert not sshd.exists("/etc/vbox/autostart.d/root.start")
        assert ok(sshd, "VBoxManage list vms") == ""
        for step in (steps["vm"], steps["kickstart"]):
            again = run(sshd, step.delete)
            assert again.code == 0 and again.last == step.report("delete", "unchanged"), str(again)


def test_retain_disk_keeps_the_disk_and_a_new_vm_starts_clean(server):
    """retainDisk: the disk is detached, closed and moved to the retained folder; the VM is gone
    and the same step creates a fresh one."""
    require_lab()
    steps = program(server, retainDisk=True)
    with LoopbackSshd() as sshd:
        vbox_host(sshd, steps)
        up(sshd, steps)
        ok(sshd, f"printf witness >> {DISK}")
        result = run(sshd, steps["vm"].delete)
        assert result.code == 0, str(result)
        kept = ok(sshd, f"ls {RETAINED_DIR}").split()
        assert len(kept) == 1 and kept[0].startswith(f"{GUEST}-") and kept[0].endswith(".vdi")
        assert ok(sshd, f"tail -c 7 {RETAINED_DIR}/{kept[0]}") == "witness"
        assert GUEST not in vms(sshd) and not sshd.exists(FOLDER)
        create(sshd, steps["vm"])
        assert vms(sshd)[GUEST]["state"] == "running"


def test_image_is_downloaded_once_and_cloned(server):
    """image: the VDI is fetched once per host and cloned byte for byte as the VM's disk; no
    installer, no kickstart step; a VM of the same name that virtfleet did not create is refused."""
    require_lab()
    steps = program(server, image=f"{server}/disks/c7.vdi")
    assert "kickstart" not in steps
    with LoopbackSshd() as sshd:
        vbox_host(sshd, steps)
        first = create(sshd, steps["vm"])
        assert f"changed: VM {GUEST} created in {FOLDER} from {server}/disks/c7.vdi" in first.changes
        assert ok(sshd, f"sha256sum < {DISK}").split()[0] == hashlib.sha256(DISK_IMAGE).hexdigest()
        vm = vms(sshd)[GUEST]
        assert vm["unattended"] is None and vm["installed"] is None and vm["state"] == "running"
        assert readback("\n".join(first.out))["ip"] is None, "no Guest Additions report an address"
        create(sshd, steps["vm"], "unchanged")
        assert _Files.requests == ["/disks/c7.vdi"]
        ok(sshd, f"VBoxManage setextradata {GUEST} virtfleet/guest")  # the marker removed by hand
        foreign = create(sshd, steps["vm"], code=1)
        assert "virtfleet did not create" in foreign.err, str(foreign)
        refused = run(sshd, steps["vm"].delete)
        assert refused.code == 1 and GUEST in vms(sshd), str(refused)


def test_drift_names_a_vm_whose_memory_was_changed_by_hand(server):
    """`make drift`'s check of the VM step after someone gave the VM more memory (powered off,
    modifyvm, started again): exactly that difference, the VM left as found; with allowRestart the
    step's create puts the stack's memory back and the check is in sync again."""
    require_lab()
    steps = program(server, allowRestart=True)
    checks = {"vm": steps["vm"]}
    with LoopbackSshd() as sshd:
        vbox_host(sshd, steps)
        up(sshd, steps)
        assert drifted(drift(sshd, checks, HOST)) == {}
        ok(sshd, f"VBoxManage controlvm {GUEST} poweroff && VBoxManage modifyvm {GUEST} --memory 2048"
                 f" && VBoxManage startvm {GUEST} --type headless")  # fmt: skip
        found = drifted(drift(sshd, checks, HOST))
        assert found == {
            "vm": [
                f"power off VirtualBox VM {GUEST} for modifyvm --memory 1024, then bring it back (it is running;"
                " allowRestart)",
                f"set VM {GUEST}'s memory to 1024 MiB (it has 2048 MiB)",
            ]
        }, found
        assert (vms(sshd)[GUEST]["memory"], vms(sshd)[GUEST]["state"]) == (2048, "running")
        create(sshd, steps["vm"])
        assert drifted(drift(sshd, checks, HOST)) == {}
        assert vms(sshd)[GUEST]["memory"] == 1024

"""VirtualboxGuest under the Pulumi mocks (L2) and its rendered artifacts under their tools (L3).

L2: prod's VirtualBox web server (centos7vm1 on vbox1) gets its component, its secret kickstart step
and its VM step; the VM waits for its host's steps (the autostart part of the virtualbox role among
them) and the kickstart, and the HAProxy tier's web server step on it waits for the VM. What needs a
new VM is the only thing in the VM Command's triggers; memory, CPUs and power state are updates.
L3: shellcheck on every variant of the steps, pykickstart on the VM's kickstart, and the step's
``showvminfo --machinereadable`` parser (``vf_mr``, bash) on samples written from that format.
"""

from __future__ import annotations

import copy
import subprocess

import pytest
from conftest import STACKS, guest_variant, recording
from support.tools import ksvalidator, require_tool

from components.guests.remote_guest import replace_key
from components.guests.virtualbox import (
    KICKSTART_FILE,
    render_kickstart_step,
    render_vm_step,
    vm_mac,
    vm_replace_fields,
)
from components.hosts.host_steps import host_steps
from components.model import load_fleet
from components.osfamily import os_family
from components.remote.scripts import STDIN_RUNNER
from components.render import render
from plan.mocks import placeholder
from plan.run import StackConfig, load_stack, run_program

COMMAND = "command:remote:Command"
GUEST, HOST = "centos7vm1", "vbox1"


def program(**changes):
    return guest_variant("prod", GUEST, **changes)


def vm_command(rec):
    return rec.named(f"{HOST}-{GUEST}-vm", COMMAND)


def test_prod_virtualbox_web_server_gets_its_component_and_steps():
    fleet, rec = recording("prod")
    component = rec.named(GUEST, "virtfleet:guest:VirtualboxGuest")
    steps = {r.name for r in rec.children(component.urn)}
    assert steps == {f"{HOST}-{GUEST}-vm", f"{HOST}-{GUEST}-kickstart"}
    vm = vm_command(rec)
    guest = fleet.guest(GUEST)
    assert vm.inputs["triggers"] == [replace_key(vm_replace_fields(guest, fleet))]
    assert "triggers[*]" in vm.replace_on_changes and vm.delete_before_replace
    create = vm.inputs["create"]
    for piece in (
        "VBoxManage createvm --name \"$vf_vm\" --ostype RedHat_64 --basefolder \"$vf_base\" --register",
        "--nic1 bridged --bridgeadapter1 brid0 --macaddress1 " + vm_mac(guest).replace(":", "").upper(),
        "--vrde off", "--autostart-enabled on", "--audio-enabled off", "--usb-ohci off",
        "VBoxManage unattended install", "--install-additions", "--script-template=\"$vf_kickstart\"",
        "VBoxManage startvm \"$vf_vm\" --type headless",
    ):  # fmt: skip
        assert piece in create, piece
    assert "--vrde-address" not in create, "VRDE stays off unless vrde: true"
    # The VM waits for every step of its host and for its kickstart.
    host_urns = {r.urn for r in rec.of_type(COMMAND) if r.name.startswith(f"{HOST}-") and GUEST not in r.name}
    assert host_urns and host_urns <= set(vm.dependencies)
    assert rec.named(f"{HOST}-virtualbox-autostart", COMMAND).urn in vm.dependencies
    assert rec.named(f"{HOST}-{GUEST}-kickstart", COMMAND).urn in vm.dependencies
    # Until a run reports it, the outputs carry the declared identity and nothing invented.
    assert rec.outputs["guestStatus"][GUEST] == {
        "name": GUEST, "uuid": None, "host": HOST, "ip": None, "mac": None, "state": None,
    }  # fmt: skip


@pytest.mark.parametrize("stack", STACKS)
def test_no_virtualbox_guest_is_pending(stack):
    fleet, rec = recording(stack)
    assert not [g.name for g in fleet.guests if g.type == "virtualbox" and g.name in rec.outputs["pendingGuests"]]


def test_web_server_step_on_the_vm_runs_after_the_vm():
    """prod's balancer does not list centos7vm1 (backends webserver1-3, backup backupwebserver), so
    prod as committed has no VirtualBox web server: prod with centos7vm1 added as a backup does. The
    HAProxy tier's web server step reaches it over SSH (webserver-httpd) only once its VM exists."""
    config, _ = load_stack("prod")
    values = copy.deepcopy(config.values)
    values["loadBalancer"]["backups"] = [*values["loadBalancer"]["backups"], GUEST]
    rec = run_program(StackConfig("prod", values, set(config.secret_keys), list(config.placeholders)))
    web = rec.named(f"{GUEST}-webserver-httpd", COMMAND)
    assert vm_command(rec).urn in web.dependencies
    assert "httpd" in web.inputs["create"]
    assert GUEST not in rec.outputs["pendingGuests"]
    # As committed, no tier step touches the VM.
    _, committed = recording("prod")
    assert not [r for r in committed.of_type(COMMAND) if r.name == f"{GUEST}-webserver-httpd"]


def test_kickstart_step_is_secret_and_on_stdin():
    _, rec = recording("prod")
    step = rec.named(f"{HOST}-{GUEST}-kickstart", COMMAND)
    assert step.inputs["create"] == step.inputs["update"] == STDIN_RUNNER
    assert {"stdin", "delete"} <= step.secret_paths and step.inputs["logging"] == "none"
    assert (
        "rootpw --iscrypted $6$" in step.inputs["stdin"] and placeholder("random-password") not in step.inputs["stdin"]
    )
    assert KICKSTART_FILE.format(name=GUEST) in step.inputs["stdin"]
    assert "rootpw" not in vm_command(rec).inputs["create"], "the VM step carries no part of the kickstart"


REPLACE_CASES = [
    ({"osType": "Oracle_64"}, True),
    ({"firmware": "efi"}, True),
    ({"vrde": True}, True),
    ({"autostart": False}, True),
    ({"diskGiB": 20}, True),
    ({"network": {"bridge": "brid0", "ip": "10.0.0.16", "mac": "08:00:27:00:00:16"}}, True),
    ({"image": "http://images.example/centos7.vdi"}, True),
    ({"network": {"bridge": "brid0", "ip": "10.0.0.18"}}, True),
    ({"osFamily": "el7"}, True),
    ({"install": {"location": "https://vault.centos.org/7.9.2009/os/x86_64/", "timezone": "Europe/London"}}, True),
    ({"memoryMiB": 2048}, False),
    ({"vcpus": 4}, False),
    ({"powerState": "paused"}, False),
    ({"allowRestart": True}, False),
    ({"shutdownTimeoutSeconds": 30}, False),
]


def test_only_what_modifyvm_cannot_change_live_forces_a_replace(prod_values):
    """The replace key (the Command's only trigger) changes exactly for what needs a new VM; every
    other change alters the script. Checked on the pure step for each case, and through the program for
    one of each kind."""

    def vm_step(change):
        values = copy.deepcopy(prod_values)
        next(g for g in values["guests"] if g["name"] == GUEST).update(change)
        fleet = load_fleet(values, {"sshPrivateKey"})
        return render_vm_step(fleet.guest(GUEST), fleet)

    base = vm_step({})
    for change, replaced in REPLACE_CASES:
        changed = vm_step(change)
        assert (changed.replace_key != base.replace_key) is replaced, change
        # Every change reaches the host: as an update of the script, or as a new VM.
        assert changed.step.create != base.step.create or replaced, change
    recorded = vm_command(recording("prod")[1])
    assert recorded.inputs["triggers"] == [base.replace_key]
    for change, replaced in (({"memoryMiB": 2048}, False), ({"firmware": "efi"}, True)):
        command = vm_command(program(**change))
        assert (command.inputs["triggers"] != recorded.inputs["triggers"]) is replaced, change


def test_protect_and_retain_disk():
    rec = program(protect=True, retainDisk=True)
    command = vm_command(rec)
    assert command.protect is True
    delete = command.inputs["delete"]
    assert 'VBoxManage closemedium disk "$vf_disk"' in delete and "retained" in delete
    assert "closemedium" not in vm_command(recording("prod")[1]).inputs["delete"]


def test_image_clones_the_disk_and_skips_the_installer():
    rec = program(image="http://images.example/c7.vmdk")
    create = vm_command(rec).inputs["create"]
    assert 'VBoxManage clonemedium disk "$vf_source" "$vf_disk" --format VDI' in create
    assert "VBoxManage unattended install" not in create and "createmedium" not in create
    assert not [r for r in rec.of_type(COMMAND) if r.name == f"{HOST}-{GUEST}-kickstart"]


def test_model_refuses_a_non_disk_image_and_two_sources(prod_values):
    from components.model import FleetConfigError

    for change, words in (
        ({"image": "http://images.example/c7.qcow2"}, ".vdi or .vmdk"),
        ({"image": "http://i.example/a.vdi", "install": {"location": "http://m.example/os/"}}, "not both"),
        ({"firmware": "uefi"}, "firmware"),
    ):
        values = copy.deepcopy(prod_values)
        index = next(i for i, g in enumerate(values["guests"]) if g["name"] == GUEST)
        values["guests"][index].update(change)
        with pytest.raises(FleetConfigError) as err:
            load_fleet(values, {"sshPrivateKey"})
        assert f"guests[{index}]" in str(err.value) and words in str(err.value), str(err.value)


def test_autostart_step_only_where_a_vm_has_autostart(prod_values):
    fleet = load_fleet(prod_values, {"sshPrivateKey"})
    names = [s.name for s in host_steps(fleet.host(HOST), fleet)]
    assert names.index("virtualbox-autostart") == names.index("role-virtualbox") + 1
    step = next(s for s in host_steps(fleet.host(HOST), fleet) if s.name == "virtualbox-autostart")
    (cfg,) = step.files
    assert cfg.path == "/etc/vbox/autostart.cfg" and "default_policy = deny\nroot = {\n    allow = true" in cfg.content
    assert "VBOXAUTOSTART_DB=/etc/vbox/autostart.d" in step.create
    assert "VBoxManage setproperty autostartdbpath /etc/vbox/autostart.d" in step.create
    values = copy.deepcopy(prod_values)
    next(g for g in values["guests"] if g["name"] == GUEST)["autostart"] = False
    fleet = load_fleet(values, {"sshPrivateKey"})
    assert "virtualbox-autostart" not in [s.name for s in host_steps(fleet.host(HOST), fleet)]


def test_rendered_virtualbox_scripts_are_shellcheck_clean(prod_values, tmp_path):
    """L3: every variant of the VM step (image, retainDisk, allowRestart, vrde, each power state),
    the kickstart step and the host's autostart step."""
    shellcheck = require_tool("shellcheck")
    variants = [
        {},
        {"retainDisk": True, "powerState": "paused", "allowRestart": True, "vrde": True},
        {"powerState": "stopped", "image": "http://images.example/c7.vdi", "firmware": "efi", "autostart": False},
    ]
    paths = []
    for n, change in enumerate(variants):
        values = copy.deepcopy(prod_values)
        next(g for g in values["guests"] if g["name"] == GUEST).update(change)
        fleet = load_fleet(values, {"sshPrivateKey"})
        guest = fleet.guest(GUEST)
        steps = [render_vm_step(guest, fleet).step]
        if guest.image is None:
            steps.append(render_kickstart_step(guest, fleet, "pw'\"$x", ("ssh-ed25519 AAAA k",)))
        steps += [s for s in host_steps(fleet.host(HOST), fleet) if s.name == "virtualbox-autostart"]
        for step in steps:
            for action in ("create", "delete"):
                path = tmp_path / f"{n}-{step.name}.{action}.sh"
                path.write_text(getattr(step, action))
                paths.append(str(path))
    proc = subprocess.run(
        [shellcheck, "--severity=style", "--shell=bash", *paths], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("family", ["el7", "el9"])
def test_vm_kickstart_passes_pykickstart(prod_values, family, tmp_path):
    """L3: the kickstart the VM is installed with (SATA disk sda, NIC by MAC, the Guest Additions'
    post-install script), validated by pykickstart as the guest's OS version."""
    validator = ksvalidator()
    values = copy.deepcopy(prod_values)
    next(g for g in values["guests"] if g["name"] == GUEST)["osFamily"] = family
    fleet = load_fleet(values, {"sshPrivateKey"})
    guest = fleet.guest(GUEST)
    step = render_kickstart_step(guest, fleet, "secret", ("ssh-ed25519 AAAAC3Nza k@h",))
    (ks,) = step.files
    assert ks.mode == 0o600 and ks.path == KICKSTART_FILE.format(name=GUEST)
    path = tmp_path / "ks.cfg"
    path.write_text(ks.content)
    version = os_family(family).kickstart_version
    proc = subprocess.run([str(validator), "-v", version, "-e", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = ks.content
    assert f"--device={vm_mac(guest)} " in text and "--ip=10.0.0.16 " in text
    assert "ignoredisk --only-use=sda" in text and "vda" not in text
    assert "vboxpostinstall.sh" in text and "poweroff" in text and "rootpw --iscrypted $6$" in text


# -- the machinereadable parser ----------------------------------------------------------------

# Written from VBoxManage's documented --machinereadable format (VirtualBox 7.0): key="value" per
# line, numbers bare, keys holding '-' quoted, quotes and backslashes in values escaped.
SAMPLE = r"""name="centos7vm1"
Encryption="disabled"
groups="/"
ostype="Red Hat (64-bit)"
UUID="9b0d6a2e-51c5-4f2b-9a7e-2f1c3d4e5f60"
CfgFile="/var/lib/virtfleet/virtualbox/vms/centos7vm1/centos7vm1.vbox"
memory=2048
cpus=2
firmware="BIOS"
VMState="running"
VMStateChangeTime="2026-12-01T05:00:00.000000000"
storagecontrollername0="SATA"
"SATA-0-0"="/var/lib/virtfleet/virtualbox/vms/centos7vm1/centos7vm1.vdi"
"SATA-ImageUUID-0-0"="1f2e3d4c-0000-4000-8000-000000000001"
"IDE-0-0"="emptydrive"
bridgeadapter1="brid0"
macaddress1="080027AB12CD"
nic1="bridged"
description="a \"quoted\" word, a back\\slash and key=value inside"
vrde="off"
autostart-enabled="on"
autostart-delay=0
"""


def vf_mr(info: str, *keys: str) -> list[tuple[int, str]]:
    """(status, value) of ``vf_mr KEY`` for each key, run by bash on ``info``."""
    script = render("steps/_vbox-machinereadable.sh.j2") + 'vf_info=$(cat)\nfor k in "$@"; do\n'
    script += '  if v=$(vf_mr "$k"); then printf "0 %s\\n" "$v"; else printf "1\\n"; fi\ndone\n'
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script, "vf_mr", *keys],
        input=info,
        capture_output=True,
        text=True,
        check=True,
    )
    out = []
    for line in proc.stdout.splitlines():
        status, _, value = line.partition(" ")
        out.append((int(status), value))
    return out


def test_machinereadable_parser_reads_every_form_of_line():
    keys = ("name", "memory", "VMState", "SATA-0-0", "macaddress1", "description", "autostart-enabled",
            "autostart-delay", "ostype", "IDE-0-0", "absent", "bridgeadapter")  # fmt: skip
    assert vf_mr(SAMPLE, *keys) == [
        (0, "centos7vm1"), (0, "2048"), (0, "running"),
        (0, "/var/lib/virtfleet/virtualbox/vms/centos7vm1/centos7vm1.vdi"), (0, "080027AB12CD"),
        (0, 'a "quoted" word, a back\\slash and key=value inside'), (0, "on"), (0, "0"),
        (0, "Red Hat (64-bit)"), (0, "emptydrive"), (1, ""), (1, ""),
    ]  # fmt: skip


def test_machinereadable_parser_matches_whole_keys_only():
    """``memory`` is not ``GuestMemoryBalloon`` and ``name`` not ``storagecontrollername0``: a key
    matches as a whole, first occurrence wins."""
    info = 'storagecontrollername0="SATA"\nGuestMemoryBalloon=0\nname="vm"\nmemory=512\nname="later"\n'
    assert vf_mr(info, "name", "memory", "storagecontrollername0") == [(0, "vm"), (0, "512"), (0, "SATA")]
    assert vf_mr("", "name") == [(1, "")]


def test_a_stack_of_virtualbox_guests_alone_gets_a_root_password(prod_values):
    """The kickstart needs rootPassword: a stack whose only installer guest is a VirtualBox VM still
    gets one (generated), so its kickstart step exists; a VM cloned from an image needs none."""
    from components.stack.secrets import load_secrets

    values = copy.deepcopy(prod_values)
    values["guests"] = [g for g in values["guests"] if g["name"] in (GUEST, "haproxy")]
    values.pop("loadBalancer")
    fleet = load_fleet(values, {"sshPrivateKey"})
    assert load_secrets(fleet).root_password is not None
    only_image = copy.deepcopy(values)
    next(g for g in only_image["guests"] if g["name"] == GUEST)["image"] = "http://images.example/c7.vdi"
    assert load_secrets(load_fleet(only_image, {"sshPrivateKey"})).root_password is None

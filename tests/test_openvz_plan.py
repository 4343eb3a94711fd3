"""OpenvzGuest under the Pulumi mocks (L2) and its rendered scripts under shellcheck (L3).

L2: prod's OpenVZ web server (webserver3, CTID 101 on ovz1) gets its component and steps; the
container waits for its host's steps, the root-password step for the container, and the HAProxy
tier's ``vzctl exec2`` web server step for both. What forces a re-create (CTID, OS template) is the
only thing in the container Command's triggers, which pulumi-command marks replace-on-change
(deleted before it is created again); every other change is an update of the script text.
"""

from __future__ import annotations

import copy
import subprocess

import pytest
from conftest import guest_variant, recording
from support.tools import require_tool

from components.guests.openvz import render_container_step, render_root_password_step
from components.guests.remote_guest import readback, replace_key
from components.model import load_fleet
from components.remote.scripts import STDIN_RUNNER
from plan.mocks import placeholder

COMMAND = "command:remote:Command"
GUEST, HOST = "webserver3", "ovz1"


def program(**changes):
    return guest_variant("prod", GUEST, **changes)


def container_command(rec):
    return rec.named(f"{HOST}-{GUEST}-container", COMMAND)


def test_prod_openvz_web_server_gets_its_component_and_steps():
    fleet, rec = recording("prod")
    component = rec.named(GUEST, "virtfleet:guest:OpenvzGuest")
    steps = {r.name for r in rec.children(component.urn)}
    assert steps == {f"{HOST}-{GUEST}-container", f"{HOST}-{GUEST}-root-password"}
    assert GUEST not in rec.outputs["pendingGuests"]
    assert not [g for g in fleet.guests if g.type == "openvz" and g.name in rec.outputs["pendingGuests"]]
    container = container_command(rec)
    assert container.inputs["triggers"] == [replace_key({"ctid": 101, "ostemplate": "centos-7-x86_64-minimal"})]
    assert "triggers[*]" in container.replace_on_changes and container.delete_before_replace
    assert container.protect is False and container.inputs["logging"] == "stdoutAndStderr"
    # The container waits for every step of its host (role, boot into vzkernel, bridge...).
    host_steps = {r.urn for r in rec.of_type(COMMAND) if r.name.startswith(f"{HOST}-") and "webserver" not in r.name}
    assert host_steps and host_steps <= set(container.dependencies)
    # Until a run reports it, the outputs carry the declared identity and nothing invented.
    assert rec.outputs["guestStatus"][GUEST] == {"ctid": 101, "name": GUEST, "host": HOST, "ip": None, "status": None}


def test_web_server_exec2_step_runs_after_the_container_exists():
    _, rec = recording("prod")
    web = rec.named(f"{HOST}-webserver-{GUEST}", COMMAND)
    assert "vzctl exec2" in web.inputs["create"]
    password = rec.named(f"{HOST}-{GUEST}-root-password", COMMAND)
    assert container_command(rec).urn in web.dependencies and password.urn in web.dependencies
    assert container_command(rec).urn in password.dependencies


def test_root_password_step_is_secret_and_on_stdin():
    _, rec = recording("prod")
    step = rec.named(f"{HOST}-{GUEST}-root-password", COMMAND)
    assert step.inputs["create"] == step.inputs["update"] == STDIN_RUNNER
    assert {"stdin", "delete"} <= step.secret_paths and step.inputs["logging"] == "none"
    assert "chpasswd -e" in step.inputs["stdin"] and placeholder("random-password") not in step.inputs["stdin"]
    # A new password is an update of stdin, never a replace (which would run the old delete after).
    assert step.inputs["triggers"] == [f"{HOST}/{GUEST}-root-password"] and not step.delete_before_replace


@pytest.mark.parametrize(
    ("change", "replaced"),
    [
        ({"ostemplate": "centos-7-x86_64"}, True),
        ({"ctid": 150}, True),
        ({"memoryMiB": 2048}, False),
        ({"swapMiB": 512}, False),
        ({"vcpus": 4}, False),
        ({"diskGiB": 20}, False),
        ({"network": {"bridge": "brid0", "ip": "10.0.0.14"}}, False),
        ({"nameservers": ["10.0.0.53"]}, False),
        ({"autostart": False}, False),
        ({"powerState": "paused"}, False),
    ],
)
def test_only_ctid_and_template_force_a_replace(change, replaced):
    base_rec, rec = recording("prod")[1], program(**change)
    base, changed = container_command(base_rec), container_command(rec)
    assert (changed.inputs["triggers"] != base.inputs["triggers"]) is replaced, change
    assert changed.inputs["create"] != base.inputs["create"], "every change reaches the host as an update"
    # After a re-create, the container's other steps run again in the new container, as updates:
    # a replace of theirs would run their old delete after the new create (pulumi-command#855).
    for name, field in ((f"{HOST}-{GUEST}-root-password", "stdin"), (f"{HOST}-webserver-{GUEST}", "create")):
        if name.endswith("root-password") and "ctid" in change:
            continue  # another CTID is another step name: a new resource
        old, new = base_rec.named(name, COMMAND), rec.named(name, COMMAND)
        assert new.inputs["triggers"] == old.inputs["triggers"] and not new.delete_before_replace, name
        if replaced:
            assert new.inputs[field] != old.inputs[field], f"{name} must run again in the new container"


def test_every_other_step_updates_in_place():
    """A step's triggers are its identity, never its digest: a change of its script is an update
    (the create script again), not a replace whose old delete would undo the new create."""
    _, rec = recording("prod")
    for command in rec.of_type(COMMAND):
        if command.name in (f"{HOST}-{GUEST}-container", "vbox1-centos7vm1-vm") or command.name.endswith("-domain"):
            continue  # remote guests' lifecycle steps: replace keys (the Xen domains: test_xen_plan)
        if command.name.endswith("-power"):
            continue  # a KVM guest's power step runs again for a new domain (test_kvm_plan)
        step = next(r for r in rec.resources if r.urn == command.parent)
        assert command.inputs["triggers"] == [f"{step.inputs['machine']}/{step.inputs['step']}"], command.name
        assert command.inputs["update"] == command.inputs["create"], command.name


def test_protect_and_retain_disk():
    rec = program(protect=True, retainDisk=True)
    command = container_command(rec)
    assert command.protect is True
    assert "vzctl unregister" in command.inputs["delete"] and "vzctl destroy" not in command.inputs["delete"]
    assert "vzctl destroy" in container_command(recording("prod")[1]).inputs["delete"]


def test_readback_takes_the_last_json_object_line():
    out = 'unchanged: x\n{"ctid":1}\nnot json {\n{"ctid":101,"status":"paused"}\nvirtfleet: h/s (create): unchanged\n'
    assert readback(out) == {"ctid": 101, "status": "paused"}
    assert readback("") is None and readback(None) is None and readback("[1]\n{broken") is None


@pytest.mark.real
def test_rendered_openvz_scripts_are_shellcheck_clean(prod_values, tmp_path):
    """L3: every variant of the container step (retainDisk, no nameservers, each power state) and
    the root-password step."""
    shellcheck = require_tool("shellcheck")
    variants = [{}, {"retainDisk": True, "powerState": "paused"}, {"powerState": "stopped", "nameservers": []}]
    paths = []
    for n, change in enumerate(variants):
        values = copy.deepcopy(prod_values)
        next(g for g in values["guests"] if g["name"] == GUEST).update(change)
        values["hosts"][2]["bridges"][0]["dns"] = [] if change.get("nameservers") == [] else ["10.0.0.1"]
        fleet = load_fleet(values, {"sshPrivateKey"})
        guest = fleet.guest(GUEST)
        steps = [render_container_step(guest, fleet).step, render_root_password_step(guest, "pw'\"$x")]
        for step in steps:
            for action in ("create", "delete"):
                path = tmp_path / f"{n}-{step.name}.{action}.sh"
                path.write_text(getattr(step, action))
                paths.append(str(path))
    proc = subprocess.run(
        [shellcheck, "--severity=style", "--shell=bash", *paths], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "vf_nameservers=''" in (tmp_path / f"2-{GUEST}-container.create.sh").read_text()

"""L4: prod's OpenVZ container (webserver3 on ovz1), its whole lifecycle run for real over SSH.

The exact ``create``/``delete`` strings the program records for the container's Command (and the
secret root-password step's stdin) run through a real sshd (``LoopbackSshd``), as pulumi-command
sends them. OpenVZ needs its own kernel, so ``vzctl`` and ``vzpkg`` are the stateful fakes of
``tests/fakes`` (vzctl(8)'s syntax, config file, status line and exit codes; they refuse what the
real tools refuse, and ``vzctl`` refuses ``--userpasswd`` outright); ``chpasswd``, ``awk``,
``sha256sum`` and bash are the real ones, run inside the container's own mount namespace.
Variants of the stack (memory, power state, retainDisk) are the same program run on an edited
copy of Pulumi.prod.yaml, so each step is what ``pulumi up`` would run after that edit.
"""

from __future__ import annotations

import copy
import json
from functools import cache

import pytest
from support.drift_check import drift, drifted
from support.el_repos import role_repos_command
from support.sshd import LoopbackSshd
from support.step_run import RecordedStep, create, ok, run, second_run_changes_nothing
from support.tools import require_root, require_tool

import plan.mocks
from components.guests.kvm_password import root_password_hash
from components.guests.remote_guest import readback
from plan.mocks import placeholder
from plan.run import StackConfig, load_stack, run_program

pytestmark = pytest.mark.real
GUEST, HOST, CTID = "webserver3", "ovz1", "101"
STATE = "/var/lib/virtfleet-fakes"
ROOT = f"{STATE}/vz/root/{CTID}"  # the container's root (a real host: /vz/private/101 mounted on /vz/root/101)
CONF = f"/etc/vz/conf/{CTID}.conf"
PASSWORD = placeholder("random-password")  # what the mocks give the generated rootPassword


Step = RecordedStep


def program(**changes) -> dict[str, Step]:
    """Run the program on prod with webserver3's config changed: its two steps, by short name."""
    return _program(json.dumps(changes, sort_keys=True))


@cache
def _program(changes_json: str) -> dict[str, Step]:
    changes = json.loads(changes_json)
    config, _ = load_stack("prod")
    values = copy.deepcopy(config.values)
    (guest,) = [g for g in values["guests"] if g["name"] == GUEST]
    if "bridgeDns" in changes:  # the host's bridge resolvers, which containers default to
        (host,) = [h for h in values["hosts"] if h["name"] == HOST]
        host["bridges"][0]["dns"] = changes.pop("bridgeDns")
    guest.update(changes)
    rec = run_program(StackConfig(config.name, values, set(config.secret_keys), list(config.placeholders)))
    steps = {}
    for short in ("container", "root-password"):
        c = rec.named(f"{HOST}-{GUEST}-{short}", "command:remote:Command")
        steps[short] = Step.of(c, HOST)
    return steps


@pytest.fixture(scope="module")
def base():
    return program()


def container(sshd: LoopbackSshd) -> dict:
    """The fake's own record of the container (what a real host keeps in its config and kernel)."""
    return json.loads(ok(sshd, f"cat {STATE}/vz.json"))["containers"][CTID]


def openvz_host(sshd: LoopbackSshd) -> None:
    """A prepared ovz1: EL7, vzctl installed and vz running (what its role and boot steps leave)."""
    sshd.upload("CentOS Linux release 7.9.2009 (Core)\n", "/etc/redhat-release")
    ok(sshd, role_repos_command("openvz", "el7"))
    ok(sshd, "yum -y install vzctl >/dev/null && systemctl enable --now vz >/dev/null 2>&1")


def require_lab() -> None:
    require_root()
    require_tool("sshd")
    require_tool("chpasswd")


def test_container_create_converges_and_reads_back_what_the_host_holds(base):
    """Create: the template's cache, the container with every setting, running; the last JSON line
    is the container as vzctl reports it, and a second run changes nothing (the fakes' state and
    the container's files byte for byte)."""
    require_lab()
    step = base["container"]
    with LoopbackSshd() as sshd:
        openvz_host(sshd)
        first = create(sshd, step)
        assert any(f"container {CTID} created from centos-7-x86_64-minimal" in c for c in first.changes), str(first)
        ct = container(sshd)
        assert (ct["running"], ct["suspended"]) == (True, False)
        assert ct["hostname"] == "webserver3.packt.co.uk" and ct["ip"] == "10.0.0.13"
        assert (ct["physpages"], ct["swappages"], ct["cpus"]) == (1024 * 256, 0, 2)
        assert ct["diskspace_kib"] == 10 * 1024**2 and ct["onboot"] == "yes" and ct["nameserver"] == "10.0.0.1"
        assert ok(sshd, f"cat {ROOT}/etc/resolv.conf") == "nameserver 10.0.0.1\n"
        state = readback("\n".join(first.out))
        assert state == {
            "ctid": 101, "name": GUEST, "host": HOST, "status": "running", "ip": ["10.0.0.13"],
            "hostname": "webserver3.packt.co.uk", "ostemplate": "centos-7-x86_64-minimal",
            "memoryMiB": 1024, "swapMiB": 0, "cpus": 2, "diskGiB": 10, "onboot": True, "nameservers": ["10.0.0.1"],
        }  # fmt: skip
        snapshot = f"sha256sum {STATE}/vz.json {CONF}; find {ROOT} -printf '%p %m %s %T@\\n' | sort"
        second_run_changes_nothing(sshd, snapshot, lambda: create(sshd, step, "unchanged"), state, "the container")


def test_outputs_are_the_read_back_line(base, monkeypatch):
    """The component's outputs (stack output guestStatus) are parsed from the step's stdout: the
    program run again with the Command answering what the host printed exports exactly that."""
    require_lab()
    with LoopbackSshd() as sshd:
        openvz_host(sshd)
        out = create(sshd, base["container"]).out
        ok(sshd, f"vzctl set {CTID} --ipadd 10.0.0.99 --save >/dev/null")  # drift: an address added by hand
        out = create(sshd, base["container"]).out
    state = readback("\n".join(out))
    assert state["ip"] == ["10.0.0.13"], "the create put the declared address set back"
    computed = {**plan.mocks._COMPUTED, "command:remote:Command": {"stdout": "\n".join(out), "stderr": ""}}
    monkeypatch.setattr(plan.mocks, "_COMPUTED", computed)
    config, _ = load_stack("prod")
    exported = run_program(config).outputs["guestStatus"][GUEST]
    assert exported == {**{k: state[k] for k in ("ctid", "name", "host", "status")}, "ip": state["ip"][0]}
    assert exported["status"] == "running" and exported["ip"] == "10.0.0.13"


def test_read_back_reports_the_host_not_the_stack():
    """With no nameservers declared (and none on the bridge) the step leaves the container's
    alone: set by hand, they are what the read-back reports (an echo of the stack would say none)."""
    require_lab()
    step = program(nameservers=[], bridgeDns=[])["container"]
    with LoopbackSshd() as sshd:
        openvz_host(sshd)
        first = create(sshd, step)
        assert readback("\n".join(first.out))["nameservers"] == []
        ok(sshd, f"vzctl set {CTID} --nameserver 192.0.2.53 --save >/dev/null")
        again = create(sshd, step, "unchanged")
        assert readback("\n".join(again.out))["nameservers"] == ["192.0.2.53"]
        assert container(sshd)["nameserver"] == "192.0.2.53"


def test_memory_change_is_set_live_and_recreates_nothing(base):
    """memoryMiB 1024 -> 2048: the same triggers (no replace), a new script (an update) that runs
    one ``vzctl set --ram 2048M --save`` on the running container; a file written inside it
    survives, so nothing was re-created."""
    require_lab()
    bigger = program(memoryMiB=2048)["container"]
    assert bigger.triggers == base["container"].triggers, "memory must not force a replace"
    assert bigger.create != base["container"].create
    with LoopbackSshd() as sshd:
        openvz_host(sshd)
        create(sshd, base["container"])
        ok(sshd, f"vzctl exec2 {CTID} 'echo kept > /root/witness'")
        changed = create(sshd, bigger)
        assert changed.changes == [f"changed: container {CTID}: vzctl set --ram 2048M --save"], str(changed)
        ct = container(sshd)
        assert ct["physpages"] == 2048 * 256 and ct["running"], ct
        assert readback("\n".join(changed.out))["memoryMiB"] == 2048
        assert ok(sshd, f"vzctl exec2 {CTID} cat /root/witness") == "kept\n"
        assert f'PHYSPAGES="0:{2048 * 256}"' in ok(sshd, f"cat {CONF}")
        create(sshd, bigger, "unchanged")


def test_power_states_are_reached_and_reported(base):
    """running -> stopped -> paused -> running -> paused -> stopped: each declared state is what
    vzctl status says afterwards and what the read-back reports; each repeated run is unchanged."""
    require_lab()
    steps = {state: program(powerState=state)["container"] for state in ("stopped", "paused")}
    steps["running"] = base["container"]
    status_line = {
        "running": f"CTID {CTID} exist mounted running",
        "stopped": f"CTID {CTID} exist unmounted down",
        "paused": f"CTID {CTID} exist unmounted down suspended",
    }
    with LoopbackSshd() as sshd:
        openvz_host(sshd)
        create(sshd, steps["running"])
        for state in ("stopped", "paused", "running", "paused", "stopped"):
            result = create(sshd, steps[state])
            assert readback("\n".join(result.out))["status"] == state, str(result)
            assert ok(sshd, f"vzctl status {CTID}").strip() == status_line[state]
            again = create(sshd, steps[state], "unchanged")
            assert readback("\n".join(again.out))["status"] == state


def test_root_password_never_in_argv_or_logs(base):
    """The secret step sets root's SHA-512 hash in the container's /etc/shadow (real chpasswd -e,
    fed on stdin); neither the password nor its hash is in any process's command line while vzctl
    ran (the fake logs every /proc/*/cmdline), in sshd's log, in the step's output or the fakes'
    state. A stopped container is not started again once the password is set."""
    require_lab()
    step = base["root-password"]
    want = root_password_hash(GUEST, PASSWORD)
    assert step.stdin and want in step.stdin and PASSWORD not in step.stdin
    assert want not in step.create + step.delete
    with LoopbackSshd() as sshd:
        openvz_host(sshd)
        create(sshd, base["container"])
        first = create(sshd, step)
        shadow = ok(sshd, f"vzctl exec2 {CTID} cat /etc/shadow")
        assert shadow.startswith(f"root:{want}:"), shadow
        second = create(sshd, step, "unchanged")
        stopped = program(powerState="stopped")["container"]
        create(sshd, stopped)
        jobs_before = ok(sshd, f"sha256sum {STATE}/vz.json")
        third = create(sshd, step, "unchanged")
        assert ok(sshd, f"sha256sum {STATE}/vz.json") == jobs_before, "a stopped container was started"
        cmdlines = ok(sshd, "cat /var/log/virtfleet-fakes/cmdlines.log")
        assert "vzctl exec2 101 chpasswd -e" in cmdlines, "the fake saw the chpasswd call"
        everything = "\n".join(
            [cmdlines, sshd.log(), ok(sshd, f"cat {STATE}/*.json {CONF}"), *first.out, *second.out, *third.out]
        )
        everything += first.err + second.err + third.err
        for secret in (PASSWORD, want, want.split("$")[-1]):
            assert secret not in everything
        delete = run(sshd, step.delete, step.stdin)
        assert delete.code == 0 and delete.last == step.report("delete", "changed"), str(delete)
        assert sshd.run(f"test -e /var/lib/virtfleet/openvz/{CTID}/root-password.sha256").returncode == 1


def test_delete_removes_container_and_private_area_then_is_a_no_op(base):
    require_lab()
    step = base["container"]
    with LoopbackSshd() as sshd:
        openvz_host(sshd)
        create(sshd, step)
        ok(sshd, f"test -d {ROOT} && test -f {CONF}")
        first = run(sshd, step.delete)
        assert first.code == 0 and first.last == step.report("delete", "changed"), str(first)
        assert f"changed: container {CTID} destroyed" in first.out
        gone = sshd.run(f"test -e {ROOT} || test -e {CONF}; echo $?; vzctl status {CTID}", timeout=60).stdout
        assert gone == f"1\nCTID {CTID} deleted unmounted down\n", gone
        assert CTID not in json.loads(ok(sshd, f"cat {STATE}/vz.json"))["containers"]
        second = run(sshd, step.delete)
        assert second.code == 0 and second.last == step.report("delete", "unchanged"), str(second)


def test_delete_of_a_paused_container_and_retain_disk(base):
    """A suspended container is resumed and stopped before it goes; retainDisk unregisters it and
    keeps its private area, and a later create says how to register it again instead of
    destroying it."""
    require_lab()
    paused = program(powerState="paused", retainDisk=True)["container"]
    assert paused.triggers == base["container"].triggers
    with LoopbackSshd() as sshd:
        openvz_host(sshd)
        create(sshd, paused)
        first = run(sshd, paused.delete)
        assert first.code == 0 and first.last == paused.report("delete", "changed"), str(first)
        assert ok(sshd, f"vzctl status {CTID}").split()[2] == "deleted"
        ok(sshd, f"test -d {ROOT}/etc")  # the private area is kept
        assert CTID in json.loads(ok(sshd, f"cat {STATE}/vz.json"))["retained"]
        again = run(sshd, paused.delete)
        assert again.code == 0 and again.last == paused.report("delete", "unchanged"), str(again)
        refused = run(sshd, paused.create)
        assert refused.code == 1 and f"vzctl register /vz/private/{CTID} {CTID}" in refused.err, str(refused)
        ok(sshd, f"test -d {ROOT}/etc")


def test_template_change_forces_a_replace_and_a_foreign_container_is_refused(base):
    """ostemplate is not changeable on a container: a new one changes the Command's triggers, which
    pulumi-command marks replace-on-change, deleted before it is created again (same CTID). Run by
    hand against the old container, the new create refuses instead of touching it."""
    require_lab()
    other = program(ostemplate="centos-7-x86_64")["container"]
    assert other.triggers != base["container"].triggers
    assert "triggers[*]" in other.replace_on_changes and other.delete_before_replace
    with LoopbackSshd() as sshd:
        openvz_host(sshd)
        create(sshd, base["container"])
        refused = run(sshd, other.create)
        assert refused.code == 1 and "exists with OS template 'centos-7-x86_64-minimal'" in refused.err, str(refused)
        not_ours = run(sshd, other.delete)
        assert not_ours.code == 1 and "not removing" in not_ours.err, str(not_ours)
        password = base["root-password"]
        create(sshd, password)
        # The replace: the old delete, then the new create; then the password step's update.
        assert run(sshd, base["container"].delete).code == 0
        replaced = create(sshd, other)
        assert readback("\n".join(replaced.out))["ostemplate"] == "centos-7-x86_64"
        assert container(sshd)["ostemplate"] == "centos-7-x86_64"
        assert ok(sshd, f"vzctl exec2 {CTID} cat /etc/shadow").startswith("root:!!:"), "a fresh container"
        new_password = program(ostemplate="centos-7-x86_64")["root-password"]
        assert new_password.stdin != password.stdin
        create(sshd, new_password)
        want = root_password_hash(GUEST, PASSWORD)
        assert ok(sshd, f"vzctl exec2 {CTID} cat /etc/shadow").startswith(f"root:{want}:")


def test_drift_names_a_container_stopped_by_hand(base):
    """`make drift`'s check of the container step after `vzctl stop`: exactly that difference, the
    container still stopped after the check; the step's create starts it and the check is in sync."""
    require_lab()
    checks = {"container": base["container"]}
    with LoopbackSshd() as sshd:
        openvz_host(sshd)
        create(sshd, base["container"])
        assert drifted(drift(sshd, checks, HOST)) == {}
        ok(sshd, f"vzctl stop {CTID}")
        found = drifted(drift(sshd, checks, HOST))
        assert found == {"container": [f"start OpenVZ container {CTID} (it is stopped)"]}, found
        assert container(sshd)["running"] is False
        create(sshd, base["container"])
        assert drifted(drift(sshd, checks, HOST)) == {}

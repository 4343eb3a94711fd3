"""L1/L3: ``make drift``'s parts that need no machine: the check command, the session script and
its parsing (run by the real bash), the reading of the engine's JSON, the report and exit codes."""

from __future__ import annotations

import json
import subprocess

import pytest

from components.remote.scripts import STDIN_RUNNER, as_check_command, as_command, render_step, unwrap_command
from drift.__main__ import as_json, table
from drift.check import DRIFT, ERROR, IN_SYNC, NOT_CHECKED, UNREACHABLE, Report, Row, step_row
from drift.engine import _plain, refresh_preview
from drift.remote import RUNNER, bundle, known_hosts_for, parse_session, ssh_argv, why_unreachable
from drift.steps import Check, Target, checks_of
from plan.run import load_stack, run_program

TARGET = Target("10.0.0.2", 22, "root", "ssh-ed25519 AAAAkey")


def check(step="s", script="", files=None, secret=False) -> Check:
    return Check("m", step, f"urn::m-{step}", TARGET, script, files or {}, secret, secret)


def test_check_command_adds_check_to_each_form_of_create_command():
    command = as_command("echo hi\n")
    assert as_check_command(command) == command + " --check"
    assert as_check_command(command, "/tmp/a b") == command + " --check '/tmp/a b'"
    assert as_check_command(as_command("x\n", stdin=True)).endswith(" virtfleet-step --check </dev/null")
    assert as_check_command(STDIN_RUNNER) == STDIN_RUNNER + " --check"
    with pytest.raises(ValueError, match="virtfleet-step"):
        as_check_command("rm -rf /tmp/x")


def test_a_delete_script_refuses_check_mode_before_doing_anything(tmp_path):
    step = render_step("h1", "sysctl", "sysctl", sysctls=[("net.ipv4.ip_forward", "1")], conf="/etc/x.conf")
    done = subprocess.run(["bash", "-c", step.delete, "virtfleet-step", "--check"], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "virtfleet: h1/sysctl: a delete script has no check mode\n"


def run_bundle(items, tmp) -> dict:
    """``bundle``'s script run as the session runs it (RUNNER, the script on stdin), TMPDIR=tmp."""
    done = subprocess.run(["bash", "-c", RUNNER], input=bundle(items), capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp)})  # fmt: skip
    return parse_session(done.stdout)


def test_session_script_unpacks_each_steps_files_and_runs_its_check_in_order(tmp_path):
    """Each step's files land in its own staging directory ($2 of its script), its script runs with
    --check, a failing step does not stop the next, and every temporary file is gone afterwards."""
    reader = 'echo "args: $1"; cat "$2/etc/haproxy/haproxy.cfg"; echo "would: x (y)"; '
    reader += 'echo "virtfleet: m/a (check): drift: 1"'
    items = [
        (0, check("a", reader, {"/etc/haproxy/haproxy.cfg": "global\n  log 'x' \"$y\"\n"}), reader),
        (1, check("b", "exit 3"), "echo partial; exit 3"),
        (2, check("c", ""), 'read -r line || echo "stdin is empty"; echo "$2" > /dev/null; ls "$2" | wc -l'),
    ]
    steps = run_bundle(items, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert steps[0].code == 0 and steps[0].lines == [
        "args: --check", "global", "  log 'x' \"$y\"", "would: x (y)", "virtfleet: m/a (check): drift: 1"
    ]  # fmt: skip
    assert (steps[1].code, steps[1].lines) == (3, ["partial"])
    assert (steps[2].code, steps[2].lines) == (0, ["stdin is empty", "0"])


def test_a_step_row_says_in_sync_drift_or_why_not_and_withholds_secret_output():
    ok = ["unchanged: x", "virtfleet: m/s (check): in sync"]
    assert step_row(check(), 0, ok, False) == Row("m", "s", IN_SYNC)
    lines = ["would: start haproxy (it is inactive)", "would: reload haproxy (x)", "virtfleet: m/s (check): drift: 2"]
    assert step_row(check(), 0, lines, False) == Row(
        "m", "s", DRIFT, ("start haproxy (it is inactive)", "reload haproxy (x)")
    )
    failed = step_row(check(), 1, ["a", "virtfleet: m/s (check) failed at line 3: cat /x (exit 1)"], False)
    assert failed.status == ERROR and failed.lines[-1].startswith("virtfleet: m/s (check) failed")
    secret = step_row(check(secret=True), 1, ["password=hunter2"], True)
    assert secret.status == ERROR and "hunter2" not in repr(secret)


def test_exit_codes_follow_terraform_detailed_exitcode():
    def report(*statuses):
        return Report("s", [Row("m", str(i), s) for i, s in enumerate(statuses)])

    assert report(IN_SYNC, NOT_CHECKED).exit_code == 0
    assert report(IN_SYNC, DRIFT).exit_code == 2
    assert report(DRIFT, UNREACHABLE).exit_code == 1
    assert report(DRIFT, ERROR).exit_code == 1


def test_the_table_shows_each_row_and_the_lines_of_what_is_not_in_sync():
    r = Report("prod", [
        Row("kvm1", "firewall", DRIFT, ("open port 80/tcp at runtime (firewalld does not allow it)",)),
        Row("kvm1", "sysctl", IN_SYNC),
        Row("xen1", "(14 steps)", UNREACHABLE, ("root@10.0.0.3:22: Connection refused",)),
    ], seconds=1.25, steps_checked=2)  # fmt: skip
    text = table(r).splitlines()
    assert text[0].split() == ["MACHINE", "STEP", "OR", "RESOURCE", "RESULT"]
    assert text[1].split() == ["kvm1", "firewall", "DRIFT", "(1)"]
    assert text[2].strip() == "open port 80/tcp at runtime (firewalld does not allow it)"
    assert text[3].split() == ["kvm1", "sysctl", "in", "sync"]
    assert text[5].strip() == "root@10.0.0.3:22: Connection refused"
    assert "2 steps checked in 1.2 s: 1 in sync, 1 drift, 1 unreachable, 0 error, 0 not checked" in table(r)
    assert as_json(r)["exitCode"] == 1 and as_json(r)["rows"][0]["lines"] == [r.rows[0].lines[0]]


# pulumi refresh --preview-only --json of the dev lab after `docker rm -f web3` (engine v3.259.0,
# pulumi-docker 5.2.0), cut to one step of each kind.
URN = "urn:pulumi:lab::virtfleet::virtfleet:"
REFRESH = {
    "steps": [
        {"op": "refresh", "urn": f"{URN}guest:KvmGuest$libvirt:index/domain:Domain::web1",
         "oldState": {"type": "libvirt:index/domain:Domain", "outputs": {"name": "web1", "memory": 1024}},
         "newState": {"type": "libvirt:index/domain:Domain", "outputs": {"name": "web1", "memory": 1024}}},
        {"op": "delete", "urn": f"{URN}guest:DockerGuest$docker:index/container:Container::web3",
         "oldState": {"type": "docker:index/container:Container", "outputs": {"name": "web3"}}, "detailedDiff": None},
        {"op": "refresh", "urn": f"{URN}guest:DockerGuest$docker:index/container:Container::backup",
         "oldState": {"type": "docker:index/container:Container", "outputs": {"memory": 256, "name": "backup"}},
         "newState": {"type": "docker:index/container:Container", "outputs": {"memory": 512, "name": "backup"}}},
        {"op": "delete", "urn": f"{URN}remote:RemoteStep$command:remote:Command::devbox-x",
         "oldState": {"type": "command:remote:Command", "outputs": {}}},
    ],
    "changeSummary": {"delete": 2, "same": 2},
}  # fmt: skip


def test_refresh_preview_names_deleted_and_changed_provider_resources(tmp_path):
    fake = tmp_path / "pulumi"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/argv\ncat <<'EOF'\n{json.dumps(REFRESH)}\nEOF\n")
    fake.chmod(0o755)
    found = refresh_preview([str(fake)], "lab")
    assert (tmp_path / "argv").read_text().split() == [
        "refresh", "--preview-only", "--json", "--non-interactive", "--stack", "lab"
    ]  # fmt: skip
    assert [(d.name, d.what) for d in found] == [("web3", "deleted"), ("backup", "changed: memory")]


def test_deployed_scripts_are_read_from_the_export_form_of_secrets():
    script = "#!/bin/bash\necho hi\n"
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "plaintext": json.dumps(script)}
    assert _plain(secret) == script and _plain("x") == "x"
    assert unwrap_command(as_command(script)) == script
    assert unwrap_command(STDIN_RUNNER) is None


def test_unreachable_causes_are_told_apart():
    changed = "@@@@@@@@\n@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\nHost key verification failed."
    assert "does not match the pinned one" in why_unreachable(changed)
    unknown = (
        "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\n"
        "Host key verification failed."
    )
    assert "not known" in why_unreachable(unknown)
    assert why_unreachable("ssh: connect to host 10.0.0.3 port 22: Connection refused\n") == (
        "connect to host 10.0.0.3 port 22: Connection refused"
    )


def test_ssh_pins_the_keys_and_never_puts_a_script_in_argv(tmp_path):
    jump = Target("bastion", 2200, "ops", "ssh-ed25519 AAAAjump")
    target = Target("10.0.0.2", 22, "root", "ssh-ed25519 AAAAhost", jump)
    argv = ssh_argv(target, tmp_path / "kh", tmp_path / "id", 10)
    assert argv[-2:] == ["--", RUNNER] and argv[-3] == "root@10.0.0.2"
    assert "StrictHostKeyChecking=yes" in argv and f"UserKnownHostsFile={tmp_path / 'kh'}" in argv
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert "-W %h:%p ops@bastion" in proxy and "-p 2200" in proxy and "StrictHostKeyChecking=yes" in proxy
    assert known_hosts_for([target], None).splitlines() == [
        "10.0.0.2 ssh-ed25519 AAAAhost", "[bastion]:2200 ssh-ed25519 AAAAjump"
    ]  # fmt: skip


def test_every_step_of_prod_has_a_check_and_the_secret_ones_need_the_state():
    config, _ = load_stack("prod")
    rec = run_program(config)
    checks = checks_of(rec)
    steps = rec.of_type("virtfleet:remote:RemoteStep")
    assert len(steps) == len(rec.of_type("command:remote:Command"))
    drains = {s.inputs["step"] for s in steps if not s.inputs["drift"]}
    assert drains == {f"drain-{name}" for name in ("webserver1", "webserver2", "webserver3", "backupwebserver")}
    assert {(c.machine, c.step) for c in checks} == {(s.inputs["machine"], s.inputs["step"]) for s in steps} - {
        (s.inputs["machine"], s.inputs["step"]) for s in steps if not s.inputs["drift"]
    }
    planned = {c.step for c in checks if c.planned}
    assert planned == {s.inputs["step"] for s in steps if s.inputs["secret"]}
    assert {"console", "haproxy-config", "webserver3-root-password"} <= planned
    uploads = {(r.inputs["remotePath"]) for r in rec.of_type("command:remote:CopyToRemote")}
    staged = {f"/var/lib/virtfleet/staging/{c.machine}/{c.step}{p}" for c in checks for p in c.files}
    assert staged == uploads
    assert all(c.target.host.startswith("10.0.0.") and c.target.port == 22 for c in checks)

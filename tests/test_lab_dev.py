"""L5: the dev topology through the real engine, the real provider plugins and the lab (``lab/``).

The lab is ``make lab``'s: an operator namespace at the stack's gateway where ``pulumi`` runs, the
host devbox at 10.10.0.2 as a throwaway view with the EL fakes first on PATH, a real libvirtd +
QEMU and a real dockerd inside it, and stand-ins for the two KVM guests the program logs in to
(no guest OS boots here: sshd views at 10.10.0.11/.12 serving their page with busybox httpd).
The tests run in file order, one cycle: first preview, up from empty, no-change previews, refresh,
every web server changed and two guests recreated (rolled, under load), a guest added (with a fault
half-way) and removed, protection, the secrets in the state, destroy. Each reads the end state from
the real systems (virsh, docker, the fakes' state, HTTP through the real HAProxy), not only what the
engine says.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.lab_run import (
    DAEMONS,
    FAKES_STATE,
    began,
    command_outputs,
    differences,
    edit_stack,
    host_snapshot,
    lab_for,
    operations,
    preview_steps,
    require_lab,
    secret_values,
    started_commands,
)
from support.lab_run import timed as timed_into

from components.guests.kvm_seed import guest_mac

pytestmark = pytest.mark.real
require_lab()

HOST = "devbox"
KVM_GUESTS = ("web1", "web2")
DOCKER_GUESTS = {"web3": "10.10.0.13", "backup": "10.10.0.20"}
FRONTEND = "http://10.10.0.2/"
TIMES: dict[str, tuple[float, int]] = {}  # what the closing note reports: (seconds, resources)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from lab_for("dev", tmp_path_factory.mktemp("lab-dev"))


timed = functools.partial(timed_into, TIMES)  # timed(name, lab, *pulumi args, check=True)


def guest_entry(values: dict, name: str) -> dict:
    return next(g for g in values["guests"] if g["name"] == name)


def snapshot(lab) -> dict:
    """What the stack changes on devbox (its real libvirtd and dockerd, and the fakes' state)."""
    return host_snapshot(lab, HOST, DAEMONS)


BEFORE: dict = {}


def test_the_first_preview_of_a_fresh_stack_succeeds(lab):
    """Before any up: the libvirt provider connects while it is configured, so the trust files it
    reads must exist already (the program writes them); the port-less URI must reach libvirt."""
    BEFORE.update(snapshot(lab))
    done = timed("first preview", lab, "preview", "--json", "--stack", "lab")
    steps = preview_steps(done.stdout, by_urn=True)
    assert steps and set(steps.values()) == {"create"}, steps
    TIMES["first preview"] = (TIMES["first preview"][0], len(steps))
    trust = lab.dir / "operator" / "virtfleet" / "lab" / HOST
    assert (trust / "known_hosts").read_text() == f"10.10.0.2 {lab.views[HOST].host_public_key}\n"
    assert (trust / "id").stat().st_mode & 0o777 == 0o600


def test_the_key_set_the_documented_way_works_with_the_system_ssh(lab):
    """`pulumi config set --secret virtfleet:sshPrivateKey < key` (the lab sets it so) drops the key's
    final newline; the program writes it back with it, and OpenSSH (the Docker provider's client)
    logs in with the file (without it: "Load key ...: error in libcrypto", issue 30)."""
    stored = lab.pulumi("config", "get", "--stack", "lab", "virtfleet:sshPrivateKey").stdout
    assert not stored.endswith("\n\n") and stored.rstrip("\n") == lab.operator_key.read_text().rstrip("\n")
    trust = lab.dir / "operator" / "virtfleet" / "lab" / HOST
    assert (trust / "id").read_text() == lab.operator_key.read_text()
    trusted = "~/.virtfleet/lab/devbox"  # as the Docker provider's ssh options name them
    login = lab.operator_argv(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", f"{trusted}/id",
         "-o", f"UserKnownHostsFile={trusted}/known_hosts", "-o", "StrictHostKeyChecking=yes", "root@10.10.0.2", "true"]
    )  # fmt: skip
    done = subprocess.run(login, capture_output=True, text=True, timeout=30, env=lab.operator_env())
    assert done.returncode == 0, done.stderr


def test_up_from_empty_deploys_what_the_stack_says(lab):
    created = operations(timed("up from empty", lab, "up", "--yes", "--json", "--stack", "lab").stdout, by_urn=True)
    TIMES["up from empty"] = (TIMES["up from empty"][0], len(created))
    assert set(created.values()) == {"create"}
    # KVM guests: running domains on the bridge with their MAC and their seed disk.
    for name in KVM_GUESTS:
        info = lab.ssh(HOST, f"virsh domstate {name}; virsh domiflist {name}; virsh domblklist {name}").stdout
        assert info.startswith("running\n"), info
        mac = guest_mac(next(g for g in lab_fleet(lab).guests if g.name == name))
        assert re.search(rf"^\s*vnet\d+\s+bridge\s+br0\s+virtio\s+{mac.lower()}\s*$", info, re.M), info
        # Its disk as a volume of the default pool, its cloud-init seed as a CD-ROM.
        assert re.search(rf"^\s*vda\s+{name}\.qcow2$", info, re.M), info
        assert re.search(rf"^\s*hda\s+/var/lib/libvirt/images/{name}-seed\.iso$", info, re.M), info
    # Docker guests: running containers at their LAN address, serving their page to the operator.
    for name, address in DOCKER_GUESTS.items():
        inspect = json.loads(lab.ssh(HOST, f"docker inspect {name}").stdout)[0]
        assert inspect["State"]["Running"] is True
        assert inspect["NetworkSettings"]["Networks"]["br0"]["IPAddress"] == address
        page = lab.http_get(f"http://{address}/")
        assert f"<h1>{name}</h1>" in page.stdout and page.stdout.endswith("\n200"), page
    # The fakes' state is what the steps promise.
    state = snapshot(lab)["fakes"]
    installed = set(state[f"{FAKES_STATE}/rpmdb.json"]["packages"])
    assert {"qemu-kvm", "libvirt", "docker-ce", "haproxy", "policycoreutils-python-utils"} <= installed
    units = state[f"{FAKES_STATE}/systemd.json"]["units"]
    for unit in ("libvirtd", "docker", "haproxy", "rsyslog"):
        assert units[f"{unit}.service"]["enabled"] and units[f"{unit}.service"]["active"], unit
    pools = lab.ssh(HOST, "virsh pool-info default").stdout
    assert re.search(r"^State:\s+running$", pools, re.M) and re.search(r"^Autostart:\s+yes$", pools, re.M)
    # The HAProxy frontend, run for real by the lab with the configuration the steps installed.
    lab.start_services()
    served = {re.search(r"<h1>(\w+)</h1>", lab.http_get(FRONTEND).stdout).group(1) for _ in range(12)}
    assert served == {"web1", "web2", "web3"}, served


def lab_fleet(lab):
    from lab.stack import read_values, source_fleet

    return source_fleet(read_values(lab.stack_file))


def test_no_change_preview_after_up_and_after_a_second_up(lab):
    timed("no-change preview", lab, "preview", "--expect-no-changes", "--stack", "lab")
    second = lab.pulumi("up", "--yes", "--json", "--stack", "lab").stdout
    assert operations(second) == {}, "a second up changes nothing"
    lab.pulumi("preview", "--expect-no-changes", "--stack", "lab")


def test_refresh_right_after_up_reports_no_drift(lab):
    lab.pulumi("refresh", "--yes", "--expect-no-changes", "--stack", "lab")
    lab.pulumi("preview", "--expect-no-changes", "--stack", "lab")


def drift_report(lab, tmp_path) -> tuple[int, dict]:
    """``lab/drift`` (``python -m drift`` as the operator: its key, pinned host keys, the engine)."""
    out = tmp_path / "drift.json"
    done = lab.drift("--json", str(out))
    report = json.loads(out.read_text())
    assert done.returncode == report["exitCode"], done.stdout + done.stderr
    return done.returncode, report


def test_drift_names_a_domain_destroyed_and_a_container_removed_by_hand(lab, tmp_path):
    """Right after up, every step's check and the engine's read-only refresh are in sync (exit 0),
    the secret steps checked against the state's scripts. Then by hand, as an operator might:
    `virsh destroy web2` (the real libvirtd) and `docker rm -f web3` (the real dockerd). The check
    names exactly those (web2's power step, the container's refresh; what follows from them: web3's
    balancer server down, read by the ready step) and exits 2; it changed nothing (web2 still shut
    off, no web3 container). `pulumi up --refresh` brings the container back and `virsh start` the
    domain (a step whose inputs did not change does not run again); the check is in sync again."""
    code, report = drift_report(lab, tmp_path)
    assert code == 0 and {r["status"] for r in report["rows"]} == {"in sync"}, [
        r for r in report["rows"] if r["status"] != "in sync"
    ]
    steps = len(lab.pulumi("stack", "export", "--stack", "lab").stdout.split('"command:remote:Command"')) - 1
    assert report["stepsChecked"] == steps - 4  # every step but the four drains (a roll's action)

    lab.ssh(HOST, "virsh destroy web2 && docker rm -f web3 >/dev/null")
    code, report = drift_report(lab, tmp_path)
    found = {(r["machine"], r["item"]): r["lines"] for r in report["rows"] if r["status"] != "in sync"}
    assert code == 2, report["rows"]
    assert found.pop((HOST, "web2-power")) == ["start libvirt domain web2 (it is shut off)"], found
    assert found.pop(("(engine)", "docker:index/container:Container web3")) == ["deleted"], found
    assert set(found) <= {(HOST, "ready-web3")}, found  # haproxy's checks may not have marked web3 DOWN yet
    assert lab.ssh(HOST, "virsh domstate web2").stdout.strip() == "shut off"
    assert lab.ssh(HOST, "docker ps -aq --filter name=^web3$").stdout.strip() == ""

    lab.pulumi("up", "--yes", "--refresh", "--skip-preview", "--stack", "lab")
    lab.ssh(HOST, "virsh start web2 >/dev/null")
    code, report = drift_report(lab, tmp_path)
    assert code == 0, [r for r in report["rows"] if r["status"] != "in sync"]


def under_load(lab, change):
    """``change()`` while the operator keeps requesting the site (bounded); the statuses it saw."""
    statuses: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set() and len(statuses) < 2000:
            statuses.append(lab.http_get(FRONTEND, timeout=5).stdout.rsplit("\n", 1)[-1])

    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(client)
        try:
            done = change()
        finally:
            stop.set()
            load.result(timeout=30)
    return done, statuses


def assert_rolled_without_a_failed_request(lab, servers, statuses: list[str]) -> None:
    """No request failed, each server's drain and ready steps report what haproxy's runtime API did,
    and nothing is left to change."""
    assert len(statuses) > 20 and set(statuses) == {"200"}, Counter(statuses)
    outputs = command_outputs(lab)
    for server in servers:
        assert f"changed: {server} drained and in maintenance on {HOST}" in outputs[f"{HOST}-drain-{server}"]
        assert f"changed: {server} back in rotation on {HOST} (UP)" in outputs[f"{HOST}-ready-{server}"]
    lab.pulumi("preview", "--expect-no-changes", "--stack", "lab")


def test_a_change_to_every_web_server_rolls_one_server_at_a_time_under_load(lab):
    """virtfleet's own web server scripts changed (an upgrade: a line added to both templates), so every
    web server's step runs again: the engine runs each between its drain and ready steps on devbox's
    haproxy (the real one the lab runs), one server after the other, while the operator keeps
    requesting the site (bounded): no request fails, and each drain and ready step reports what
    haproxy's runtime API did."""
    lab.start_services()
    for name in ("webserver-httpd.create.sh.j2", "webserver-docker.create.sh.j2"):
        template = lab.project / "templates" / "steps" / name
        template.write_text(template.read_text() + "# changed by tests/test_lab_dev.py: every web server rolls\n")
    up, statuses = under_load(
        lab, lambda: timed("rolled change", lab, "up", "--yes", "--json", "--stack", "lab").stdout
    )
    servers = ["web1", "web2", "web3", "backup"]
    webs = {"web1": "web1-webserver-httpd", "web2": "web2-webserver-httpd"} | {
        s: f"{HOST}-webserver-{s}" for s in ("web3", "backup")
    }
    started = [name for name in started_commands(up) if "-drain-" in name or "-ready-" in name or "webserver" in name]
    assert started == [n for s in servers for n in (f"{HOST}-drain-{s}", webs[s], f"{HOST}-ready-{s}")], started
    TIMES["rolled change"] = (TIMES["rolled change"][0], len(operations(up)))
    assert_rolled_without_a_failed_request(lab, servers, statuses)


def test_guests_recreated_by_a_change_roll_one_at_a_time_under_load(lab):
    """web1's memory and web3's environment: pulumi-libvirt 0.5.4 cannot change a domain's memory in
    place (ForceNew), so web1's domain is defined again on the same disk (its power step runs again for
    the new domain); pulumi-docker recreates a container for a new environment (its memory it would
    change in place). Each is a web server of the tier: its recreation happens between its drain and
    ready steps on devbox's haproxy, web1 first, then web3, its own step run again after it (nothing
    else changes), and no request of the operator's fails. web3's container serves the site for real
    here (web1 is a stand-in)."""
    lab.start_services()

    def grow(values):
        guest_entry(values, "web1").update(memoryMiB=1536)
        guest_entry(values, "web3").update(env={"VIRTFLEET_ROLLED": "1"})

    web3_before = json.loads(lab.ssh(HOST, "docker inspect web3").stdout)[0]["Id"]
    edit_stack(lab, grow)
    planned = preview_steps(lab.pulumi("preview", "--json", "--stack", "lab").stdout)
    roll = {
        "web1": ["web1", f"{HOST}-web1-power", "web1-webserver-httpd"],
        "web3": ["web3", f"{HOST}-webserver-web3"],
    }
    expected = {"web1": "replace", f"{HOST}-web1-power": "replace", "web3": "replace"}
    expected |= {n: "update" for n in ("web1-webserver-httpd", f"{HOST}-webserver-web3")}
    expected |= {f"{HOST}-{step}-{s}": "update" for s in roll for step in ("drain", "ready")}
    # The servers' page files are copied again too (their triggers are their step's digest).
    pages = {k: v for k, v in planned.items() if "-webserver-" in k and "-file-" in k}
    assert pages and set(pages.values()) == {"replace"}, planned
    assert all(k.startswith(("web1-webserver-httpd-file-", f"{HOST}-webserver-web3-file-")) for k in pages), pages
    assert {k: v for k, v in planned.items() if k not in pages} == expected, planned
    up, statuses = under_load(
        lab, lambda: timed("guests recreated", lab, "up", "--yes", "--json", "--stack", "lab").stdout
    )
    assert operations(up) == planned
    TIMES["guests recreated"] = (TIMES["guests recreated"][0], len(planned))
    # Every operation on a server's guest and step begins after its drain and before its ready, and the
    # next server's drain after that ready (web1's power step, delete-before-replace, goes first).
    order = [n for n in began(up) if n in expected]
    phases = [phase for s in roll for phase in ([f"{HOST}-drain-{s}"], roll[s], [f"{HOST}-ready-{s}"])]
    assert [next(i for i, names in enumerate(phases) if n in names) for n in order] == sorted(
        next(i for i, names in enumerate(phases) if n in names) for n in order
    ), order
    assert set(order) == set(expected), order
    info = lab.ssh(HOST, "virsh domstate web1; virsh dominfo web1").stdout
    assert info.startswith("running\n") and re.search(r"^Max memory:\s+1572864 KiB$", info, re.M), info
    inspect = json.loads(lab.ssh(HOST, "docker inspect web3").stdout)[0]
    assert inspect["State"]["Running"] is True and inspect["Id"] != web3_before
    assert "VIRTFLEET_ROLLED=1" in inspect["Config"]["Env"], inspect["Config"]["Env"]
    assert_rolled_without_a_failed_request(lab, roll, statuses)


def test_a_step_that_fails_half_way_names_host_step_and_what_to_do_then_converges(lab):
    """A fourth web server (a Docker guest) is added while the host's semanage fails (a fault in the
    fake): its page step stops with the frame's message; without the fault the next up converges."""
    web4 = {"name": "web4", "type": "docker", "host": HOST, "image": "httpd:2.4", "memoryMiB": 256,
            "network": {"bridge": "br0", "ip": "10.10.0.14"}}  # fmt: skip

    def add(values):
        values["guests"].append(web4)
        values["loadBalancer"]["backends"].append("web4")

    edit_stack(lab, add)
    fault = {"fail": {"semanage fcontext": "ValueError: Could not open policy store: permission denied"}}
    lab.ssh(HOST, f"printf '%s' {shlex.quote(json.dumps(fault))} > {FAKES_STATE}/faults.json")
    failed = lab.pulumi("up", "--yes", "--stack", "lab", check=False)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "virtfleet: devbox/webserver-web4 (create) failed at line" in output, output[-3000:]
    assert "fix the cause and run pulumi up again" in output
    lab.ssh(HOST, f"rm {FAKES_STATE}/faults.json")
    converged = operations(lab.pulumi("up", "--yes", "--json", "--stack", "lab").stdout)
    assert converged.get("devbox-webserver-web4") == "create", converged
    lab.pulumi("preview", "--expect-no-changes", "--stack", "lab")
    lab.start_services()
    served = {re.search(r"<h1>(\w+)</h1>", lab.http_get(FRONTEND).stdout).group(1) for _ in range(16)}
    assert served == {"web1", "web2", "web3", "web4"}, served


def test_a_guest_removed_takes_only_its_resources_and_the_steps_that_name_it(lab):
    def remove(values):
        values["guests"] = [g for g in values["guests"] if g["name"] != "web4"]
        values["loadBalancer"]["backends"].remove("web4")

    edit_stack(lab, remove)
    output = lab.pulumi("up", "--yes", "--json", "--stack", "lab").stdout
    done = operations(output)
    assert done == preview_steps(output), "up did what its preview showed"
    deleted = {name for name, op in done.items() if op == "delete"}
    # web4 (its component and its container), its page step with its upload, the record of its files,
    # and its drain and ready steps on the balancer.
    page = "devbox-webserver-web4-file-var-lib-virtfleet-docker-web4-htdocs-index.html"
    roll = {"devbox-drain-web4", "devbox-ready-web4"}
    assert deleted == {"web4", "devbox-webserver-web4", page, "web4-webserver-files", *roll}, deleted
    # Steps whose content names web4: /etc/hosts of the host and the balancer's configuration.
    updated = {name for name, op in done.items() if op == "update"}
    assert updated == {"devbox-hosts-file", "devbox-haproxy-config"}, updated
    assert "web4" not in lab.ssh(HOST, "docker ps -a --format '{{.Names}}'").stdout


def test_a_protected_guest_stops_destroy_with_pulumis_message(lab):
    edit_stack(lab, lambda v: guest_entry(v, "web1").update(protect=True))
    lab.pulumi("up", "--yes", "--stack", "lab")
    refused = lab.pulumi("destroy", "--yes", "--stack", "lab", check=False)
    assert refused.returncode != 0
    assert "web1" in refused.stdout + refused.stderr
    assert "protected" in refused.stdout + refused.stderr
    assert lab.ssh(HOST, "virsh domstate web1").stdout.startswith("running"), "nothing of web1 was deleted"
    edit_stack(lab, lambda v: guest_entry(v, "web1").pop("protect"))
    lab.pulumi("up", "--yes", "--stack", "lab")


def test_no_secret_is_in_clear_in_the_state(lab):
    secrets, stored = secret_values(lab, "lab")
    key_lines = [line for line in lab.operator_key.read_text().splitlines()[1:-1] if len(line) >= 20]
    stats = json.loads(lab.pulumi("stack", "output", "--json", "--show-secrets", "--stack", "lab").stdout)
    assert stats["statsPassword"] in secrets and len(secrets) >= 5, secrets
    for secret in (*secrets, *key_lines):
        assert secret not in stored
    assert stored.count('"ciphertext"') >= len(secrets)
    assert not any(line in lab.stack_file.read_text() for line in key_lines), "the stack file holds ciphertext"


def test_destroy_leaves_the_host_as_it_was_and_the_trust_files_gone(lab):
    deleted = operations(timed("destroy", lab, "destroy", "--yes", "--json", "--stack", "lab").stdout, by_urn=True)
    TIMES["destroy"] = (TIMES["destroy"][0], len(deleted))
    after = snapshot(lab)
    # What stays on purpose (docs/lab.md, "What destroy leaves"): libvirt's default pool, host infrastructure,
    # and the host's name (a host without one is worse off than with the stack's).
    assert after["volumes"] == [] and BEFORE["volumes"] == []
    assert re.search(r"^State:\s+running$", lab.ssh(HOST, "virsh pool-info default").stdout, re.M)
    assert after["hostname"] == "devbox.dev.virtfleet.internal" != BEFORE["hostname"]
    for key in ("domains", "networks", "containers", "docker networks", "files", "addresses", "config", "selinux"):
        assert after[key] == BEFORE[key], key
    assert after["fakes"] == BEFORE["fakes"], differences(BEFORE["fakes"], after["fakes"])
    assert not (lab.dir / "operator" / "virtfleet" / "lab").exists(), "the trust files and their directory go"
    print("\nL5 dev cycle:", {k: f"{s:.1f} s, {n} resources" for k, (s, n) in TIMES.items()})

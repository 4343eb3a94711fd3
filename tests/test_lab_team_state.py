"""L5: team state on the lab's stack - the dev topology through the real engine and provider plugins,
its state in PostgreSQL (engine/backend-db.sh, what `make backend-db` runs), real guests on the lab's
libvirtd and dockerd.

The server runs in the lab operator's network namespace, on its own 127.0.0.1, where the operator's
CLI reaches it as a team's would reach theirs (TLS verify-full, the state role's password in a pgpass
file). Half-way is a known point, not a race: a remote step caught with the fakes' ``hold`` fault
(``semanage fcontext`` of a Docker web server's page step waits for a gate file), or the host's
dockerd frozen with SIGSTOP once the docker role is in place:

- two `up`s at once: the second is refused with the lock message naming the first, the first
  completes; the lab then holds each domain, volume, container and network exactly once;
- an `up` killed with SIGKILL while the host's dockerd is frozen (creates in flight), then docs/team-state.md
  "Working as a team"'s recovery: `cancel`, each pending create adopted when its object exists on
  the host (engine/adopt-pending.sh) and forgotten otherwise (`refresh --clear-pending-creates`),
  `up`; then the same end state, nothing the stack does not know, and no change left to make;
- a create the engine never recorded (the worst case of a kill, written into the stored state):
  adopted, the very same container kept.

The figures the closing note quotes (what the kill left pending, what recovery found) are printed.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from support.lab_run import DAEMONS, host_snapshot, lab_for, operations, require_lab
from support.statedb import LOCKED, StateDb, kill_tree, process_alive
from support.tools import missing

from lab.stack import read_values, source_fleet
from plan.run import ROOT

pytestmark = pytest.mark.real
require_lab()

HOST = "devbox"
FAKES = "/var/lib/virtfleet-fakes"
GATE = f"{FAKES}/gate"
HELD = "semanage fcontext"  # a Docker web server's page step, half-way through the guests
# The provider resources a guest is made of, and the host object each one is (its ID as the provider
# reads it back: what `--import-pending-creates` needs).
OBJECTS = {
    "libvirt:index/domain:Domain": ("domains", "virsh domuuid {name}"),
    "libvirt:index/volume:Volume": ("volumes", "virsh vol-key --pool {pool} {name}"),
    "libvirt:index/network:Network": ("networks", "virsh net-uuid {name}"),
    "docker:index/container:Container": ("containers", "docker inspect --format '{{{{.Id}}}}' {name}"),
    "docker:index/network:Network": ("docker networks", "docker network inspect --format '{{{{.Id}}}}' {name}"),
}
BUILT_IN = {"docker networks": {"bridge", "host", "none"}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from lab_for("dev", tmp_path_factory.mktemp("lab-team"))


@pytest.fixture(scope="module")
def db(lab):
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        missing("PostgreSQL is not installed (apt-get install postgresql)")
    server = StateDb(netns=lab.operator_ns)
    try:
        yield server.start()
    finally:
        server.close()
    assert not server.dir.exists()


class Team:
    """The lab's operator with the stack in PostgreSQL instead of the lab's file backend."""

    def __init__(self, lab, db: StateDb):
        self.lab, self.db = lab, db
        self.env = {"PULUMI_BACKEND_URL": db.url, "PGPASSFILE": str(db.passfile)}

    def pulumi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.lab.pulumi(*args, env=self.env, check=check)

    def popen(self, *args: str) -> subprocess.Popen:
        """An update in the background (engine/pulumi execs the CLI: the pid is the CLI's)."""
        argv = self.lab.operator_argv([str(ROOT / "engine" / "pulumi"), *args])
        return subprocess.Popen(
            argv,
            cwd=self.lab.project,
            env={**self.lab.operator_env(), **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        """A command as the operator, with the stack's backend."""
        done = subprocess.run(
            self.lab.operator_argv(list(argv)),
            cwd=self.lab.project,
            env={**self.lab.operator_env(), **self.env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def export(self) -> dict:
        return json.loads(self.pulumi("stack", "export", "--stack", "lab").stdout)["deployment"]

    def locks(self) -> list[str]:
        return [k for k in self.db.rows() if "/.pulumi/locks/" in k]

    def hold(self) -> None:
        """The next ``semanage fcontext`` on the host waits for the gate."""
        fault = json.dumps({"hold": {HELD: GATE}})
        self.lab.ssh(HOST, f"mkdir -p {FAKES}; rm -f {GATE} {GATE}.held; printf '%s' '{fault}' > {FAKES}/faults.json")

    def wait_held(self, proc: subprocess.Popen, limit: float = 180) -> None:
        deadline = time.monotonic() + limit
        while self.lab.ssh(HOST, f"test -e {GATE}.held", check=False).returncode != 0:
            if proc.poll() is not None:
                pytest.fail(f"the update ended before {HELD!r} was reached:\n{proc.stdout.read()[-3000:]}")
            assert time.monotonic() < deadline, f"{HELD!r} not reached within {limit}s"
            time.sleep(0.5)

    def release(self) -> None:
        self.lab.ssh(HOST, f"touch {GATE}; rm -f {FAKES}/faults.json")


@pytest.fixture(scope="module")
def team(lab, db):
    team = Team(lab, db)
    # The stack file (its salt and the encrypted key) is the lab's: the same passphrase opens it.
    team.pulumi("stack", "init", "lab")
    yield team
    team.release()
    team.pulumi("cancel", "--yes", "--stack", "lab", check=False)
    done = team.pulumi("destroy", "--yes", "--stack", "lab", check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr


def on_host(lab) -> dict[str, list[str]]:
    """Each kind of object on the host, by name, built-in ones left out (duplicates kept)."""
    got = host_snapshot(lab, HOST, DAEMONS)
    return {kind: sorted(n for n in got[kind] if n not in BUILT_IN.get(kind, ())) for kind in set(DAEMONS)}


def in_state(deployment: dict) -> dict[str, list[str]]:
    """The same kinds as the state knows them: one name per provider resource."""
    known: dict[str, list[str]] = {kind: [] for kind in DAEMONS}
    for resource in deployment["resources"]:
        if resource["type"] in OBJECTS:
            known[OBJECTS[resource["type"]][0]].append(resource["outputs"]["name"])
    return {kind: sorted(names) for kind, names in known.items()}


def step_volumes(lab) -> set[str]:
    """Files the stack's steps put in the default pool, which libvirt lists as volumes: each KVM
    guest's seed ISO (seed-iso step) and the shared base images (base-image steps, named by
    ``base_file_name``). The steps that wrote them know them; no libvirt Volume does."""
    fleet = source_fleet(read_values(lab.stack_file))
    seeds = {f"{g.name}-seed.iso" for g in fleet.guests if g.type == "kvm"}
    listed = set(on_host(lab)["volumes"])
    assert seeds <= listed, f"one seed ISO per KVM guest: {sorted(seeds - listed)} missing"
    return seeds | {name for name in listed if name.startswith("virtfleet-base-")}


def assert_each_object_once(team: Team) -> dict[str, list[str]]:
    deployment = team.export()
    assert not deployment.get("pending_operations"), deployment.get("pending_operations")
    state, host = in_state(deployment), on_host(team.lab)
    for kind in DAEMONS:
        assert len(set(state[kind])) == len(state[kind]), f"{kind}: the state holds one twice: {state[kind]}"
        extra = set(host[kind]) - set(state[kind])
        if kind == "volumes":
            extra -= step_volumes(team.lab)
        assert set(state[kind]) <= set(host[kind]), f"{kind}: the state knows {state[kind]}, the host has {host[kind]}"
        assert not extra, f"{kind}: on the host and not in the state: {sorted(extra)}"
    assert state["domains"] and state["containers"] and state["volumes"], state
    return state


def test_two_ups_at_once_one_runs_the_other_is_refused_and_each_object_exists_once(team):
    team.hold()
    first = team.popen("up", "--yes", "--skip-preview", "--stack", "lab")
    try:
        team.wait_held(first)  # the first update holds the lock and is half-way through the guests
        assert len(team.locks()) == 1, team.locks()
        second = team.pulumi("up", "--yes", "--skip-preview", "--stack", "lab", check=False)
        assert second.returncode != 0
        assert LOCKED.search(second.stderr) and LOCKED.search(second.stderr).group(1) == "1", second.stderr
        assert f"(pid {first.pid})" in second.stderr, "the lock names the holder: the first CLI"
        team.release()
        assert first.wait(timeout=300) == 0, first.stdout.read()[-3000:]
    finally:
        if first.poll() is None:
            kill_tree(first)
    assert team.locks() == []
    team.pulumi("preview", "--expect-no-changes", "--stack", "lab")
    state = assert_each_object_once(team)
    history = json.loads(team.pulumi("stack", "history", "--json", "--stack", "lab").stdout)
    assert [h["kind"] for h in history] == ["update"], "the refused up left no update behind"
    print(f"\nteam state, two ups at once: one update, {sum(map(len, state.values()))} host objects, each once")


def pending_recovery(team: Team, pending: list[dict]) -> tuple[list[str], list[str]]:
    """docs/team-state.md's rule for the pending creates: adopt each whose object exists on the host (its ID as
    the provider reads it back), all in one engine/adopt-pending.sh, forget the rest
    (``refresh --clear-pending-creates``). Returns (adopted, forgotten) resource names."""
    adopted, forgotten, pairs = [], [], []
    for op in pending:
        resource = op["resource"]
        assert op["type"] == "creating", op
        kind = OBJECTS.get(resource["type"])
        object_id = None
        if kind is not None:
            inputs = resource["inputs"]
            probe = kind[1].format(name=inputs["name"], pool=inputs.get("pool", "default"))
            done = team.lab.ssh(HOST, probe, check=False)
            object_id = done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None
        name = resource["urn"].rsplit("::", 1)[-1]
        if object_id is None:
            forgotten.append(name)
        else:
            pairs += [resource["urn"], object_id]
            adopted.append(name)
    if pairs:
        team.run(str(ROOT / "engine" / "adopt-pending.sh"), "lab", *pairs)
    team.pulumi("refresh", "--yes", "--skip-preview", "--clear-pending-creates", "--stack", "lab")
    return adopted, forgotten


def wait_state(team: Team, proc: subprocess.Popen, reached, what: str, limit: float = 120) -> dict:
    """Poll the stored state (the engine checkpoints every step it starts and ends) until
    ``reached(deployment)``."""
    deadline = time.monotonic() + limit
    while True:
        deployment = team.export()
        if reached(deployment):
            return deployment
        if proc.poll() is not None:
            pytest.fail(f"the update ended before {what}:\n{proc.stdout.read()[-3000:]}")
        pending = [op["resource"]["urn"].rsplit("::", 1)[-1] for op in deployment.get("pending_operations") or []]
        assert time.monotonic() < deadline, f"not {what} within {limit}s; pending: {pending}"
        time.sleep(0.5)


def docker_role_done(deployment: dict) -> bool:
    return any(r["urn"].endswith("Command::devbox-role-docker") for r in deployment.get("resources") or [])


def docker_create_pending(deployment: dict) -> bool:
    return any(op["resource"]["type"].startswith("docker:") for op in deployment.get("pending_operations") or [])


def test_an_up_killed_half_way_recovers_as_documented_to_each_object_once(team):
    """The host's dockerd is frozen (SIGSTOP, in the host's own PID namespace) once the docker role is
    in place, so the Docker provider's first create waits inside dockerd while libvirt's go on; the
    CLI and its plugins are killed then, and dockerd thawed: whatever it had been asked, it now does,
    unbeknown to the state. Recovery must find that."""
    team.pulumi("destroy", "--yes", "--skip-preview", "--stack", "lab")
    assert on_host(team.lab)["domains"] == [] and on_host(team.lab)["containers"] == []
    proc = team.popen("up", "--yes", "--skip-preview", "--stack", "lab")
    try:
        # Once the host's docker role has checked that dockerd answers, dockerd stops answering.
        wait_state(team, proc, docker_role_done, "the docker role is done")
        team.lab.ssh(HOST, "pkill -STOP -x dockerd")
        wait_state(team, proc, docker_create_pending, "a Docker create is in flight")
    finally:
        killed = kill_tree(proc)
        team.lab.ssh(HOST, "pkill -CONT -x dockerd")
    assert len(killed) >= 3, killed  # the language host and the provider plugins (at least)
    assert not [pid for pid in killed if process_alive(pid)]
    time.sleep(3)  # dockerd serves what was queued for it

    again = team.pulumi("up", "--yes", "--skip-preview", "--stack", "lab", check=False)
    assert again.returncode != 0 and LOCKED.search(again.stderr), again.stdout[-2000:] + again.stderr
    pending = team.export().get("pending_operations") or []
    assert [op for op in pending if op["resource"]["type"].startswith("docker:")], pending
    before = in_state(team.export())

    team.pulumi("cancel", "--yes", "--stack", "lab")
    assert team.locks() == []
    adopted, forgotten = pending_recovery(team, pending)
    assert not team.export().get("pending_operations")
    team.pulumi("up", "--yes", "--skip-preview", "--stack", "lab")
    team.pulumi("preview", "--expect-no-changes", "--stack", "lab")
    after = assert_each_object_once(team)
    types = sorted(op["resource"]["type"].rsplit(":", 1)[-1] for op in pending)
    print(
        f"\nteam state, up killed half-way: {len(killed)} processes killed; pending {len(pending)} ({types}); "
        f"adopted {adopted}, forgotten {forgotten}; "
        f"in state before recovery {sum(map(len, before.values()))} host objects, after {sum(map(len, after.values()))}"
    )


def test_a_create_the_engine_never_recorded_is_adopted_not_duplicated(team, tmp_path):
    """The kill's worst case made exact: the provider made the object, the engine died before
    recording it, so nothing after it was made either. Written into the state as it would be - a
    container back from the resources to a pending create, the steps that wait for it gone (remote
    steps: running them again is what they are for) - through `stack export`/`stack import`;
    recovery must adopt it: the same container afterwards (its ID unchanged), no second one, the
    steps run again, nothing left to change."""
    deployment = team.export()
    resources = deployment["resources"]

    def waiting_for(urn: str) -> set[str]:
        """Everything that depends on ``urn`` or is a child of what does."""
        after, grew = {urn}, True
        while grew:
            found = {r["urn"] for r in resources if after & {*r.get("dependencies", []), r.get("parent")}}
            grew = not found <= after
            after |= found
        return after

    # The last web server's container in the roll: only steps wait for it (the roll chains each web
    # server's guest after the server before it is back, so another container waits for the others).
    containers = [r for r in resources if r["type"] == "docker:index/container:Container"]
    objects = {r["urn"] for r in resources if r["type"] in OBJECTS}
    last = [c for c in containers if not (waiting_for(c["urn"]) - {c["urn"]}) & objects]
    assert last, "some container has only steps waiting for it"
    container = last[0]
    after = waiting_for(container["urn"])
    dropped = [r for r in resources if r["urn"] in after - {container["urn"]}]
    assert dropped, "steps wait for it"
    pending = {"resource": {k: v for k, v in container.items() if k not in ("id", "outputs")}, "type": "creating"}

    def killed(checkpoint: dict) -> dict:
        latest = checkpoint["checkpoint"]["latest"]
        latest["resources"] = [r for r in latest["resources"] if r["urn"] not in after]
        latest["pending_operations"] = [pending]
        return checkpoint

    # `stack import` drops pending operations: the state is written where the engine keeps it.
    team.db.rewrite("/.pulumi/stacks/virtfleet/lab.json", killed)
    assert [op["resource"]["urn"] for op in team.export()["pending_operations"]] == [container["urn"]]

    adopted, forgotten = pending_recovery(team, [pending])
    name = container["urn"].rsplit("::", 1)[-1]
    assert adopted == [name] and forgotten == []
    up = team.pulumi("up", "--yes", "--skip-preview", "--json", "--stack", "lab")
    touched = operations(up.stdout)
    assert name not in touched, f"the adopted container is kept as it is: {touched}"
    assert set(touched.values()) == {"create"}, touched
    team.pulumi("preview", "--expect-no-changes", "--stack", "lab")
    again = next(r for r in team.export()["resources"] if r["urn"] == container["urn"])
    assert again["id"] == container["id"], "the very container the provider had made"
    assert_each_object_once(team)
    print(f"\nteam state, an unrecorded create: {name} adopted; the {len(dropped)} steps after it ran again")

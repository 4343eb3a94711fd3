"""L4: a change that restarts every web server, applied the way the engine runs the program's steps
(issue 28), under load through the real tier, rolled and not.

The plan is prod's tier with one balancer node, over plain HTTP (the roll does not depend on either),
recorded by the program: its RemoteSteps and their dependencies are what the engine gets. The lab
(tests/support/netlab) runs Debian's haproxy with the rendered haproxy.cfg at 10.0.0.10, rsyslogd with
the rendered snippet (haproxy's own log), and real nginx web servers at the stack's addresses. A
scheduler runs every step as soon as the steps it depends on are done, in parallel otherwise, as the
engine does: a drain or ready step is its recorded script, run for real on the balancer (socat to
haproxy's admin socket); a web server's step is what it does to the server when it restarts httpd:
the server stops, and comes back RESTART_S later. Without the roll (``rollingChanges: false``) every
server restarts at once and clients see it; with it none does. A server that never comes back stops
the roll at its ready step, the others serving. Bounded: about 50 s in all.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from support import haproxy_chaos as chaos
from support.netlab import NetLab, new_prefix, wait_until
from support.tools import require_tool

from components.lb.balancer_files import BACKEND_NAME, frontend_url, render_haproxy_cfg, render_rsyslog_conf
from components.lb.roll import ready_timeout_s
from components.model import load_fleet
from plan.run import StackConfig, load_stack, run_program

pytestmark = pytest.mark.real

STEP = "virtfleet:remote:RemoteStep"
PASSWORD = "roll-test"
RESTART_S = 1.0  # how long a restarted web server is away
# How long the client loads the tier in each case (the change starts 2 s in): all at once takes ~1 s, a
# roll of four servers ~6 s (each ~1.5 s: checks rise 2 x 500 ms after it is back), a stuck one adds
# its ready step's wait.
LOAD_S = {"all at once": 6.0, "rolled": 14.0, "stuck": 22.0}
SLOWEST_MS = 2000  # the bound for a request during a rolled change


def plan(rolling: bool):
    """(fleet, recording) of prod with one balancer node over HTTP, the roll on or off."""
    config, _ = load_stack("prod")
    values = copy.deepcopy(config.values)
    lb = values["loadBalancer"]
    for key in ("nodes", "virtualAddress", "vrrp"):
        del lb[key]
    lb |= {"node": "haproxy", "https": {"enabled": False}, "rollingChanges": rolling}
    lb["frontend"]["address"] = lb["stats"]["bind"]["address"] = "10.0.0.10"
    variant = StackConfig("prod", values, set(config.secret_keys), list(config.placeholders))
    return load_fleet(values, set(config.secret_keys)), run_program(variant)


@dataclass
class Step:
    name: str  # the RemoteStep's resource name
    kind: str  # drain | ready | web
    server: str
    script: str
    after: set[str] = field(default_factory=set)


def roll_steps(recording, fleet) -> dict[str, Step]:
    """The tier's drain, web server and ready steps with the dependencies among them, through any
    resource between (the engine waits for those too; here they are done)."""
    lb = fleet.load_balancer
    servers = {*lb.backends, *lb.backups}
    by_urn = {r.urn: r for r in recording.resources}
    steps: dict[str, Step] = {}
    for record in recording.of_type(STEP):
        step = record.inputs["step"]
        kind, _, server = step.partition("-")
        if kind in ("drain", "ready") and server in servers:
            steps[record.urn] = Step(record.name, kind, server, record.inputs["createScript"])
        elif step == "webserver-httpd" and record.inputs["machine"] in servers:
            steps[record.urn] = Step(record.name, "web", record.inputs["machine"], "")
        elif kind == "webserver" and server in servers:  # a docker or openvz guest's, on its host
            steps[record.urn] = Step(record.name, "web", server, "")

    def step_of(urn: str) -> str | None:
        """The roll step a resource is, or is a child of (a dependency on a component is recorded as
        one on its children, the Commands)."""
        while urn in by_urn:
            if urn in steps:
                return urn
            urn = by_urn[urn].parent
        return None

    def reach(urn: str, seen: set[str]) -> set[str]:
        found: set[str] = set()
        for dep in by_urn[urn].dependencies if urn in by_urn else ():
            if dep in seen:
                continue
            seen.add(dep)
            owner = step_of(dep)
            found |= {owner} if owner is not None else reach(dep, seen)
        return found

    for urn, step in steps.items():
        step.after = {steps[d].name for d in reach(urn, set())}
    return {s.name: s for s in steps.values()}


class Roll:
    """Runs the steps as the engine would: each once every step it depends on succeeded, others in
    parallel; a failed step's dependents never run."""

    def __init__(self, steps: dict[str, Step], tier, *, never_back: str | None = None) -> None:
        self.steps, self.tier, self.never_back = steps, tier, never_back
        self.done: dict[str, threading.Event] = {name: threading.Event() for name in steps}
        self.failed: dict[str, str] = {}
        self.ran: list[tuple[float, str]] = []
        self.outputs: dict[str, str] = {}
        self.finished: dict[str, float] = {}
        self.lock = threading.Lock()

    def _run(self, step: Step) -> None:
        for name in step.after:
            self.done[name].wait()
        if any(name in self.failed or name not in self.outputs for name in step.after):
            self.failed.setdefault(step.name, "not run: a step it waits for failed")
            self.done[step.name].set()
            return
        with self.lock:
            self.ran.append((time.monotonic(), step.name))
        try:
            if step.kind == "web":
                web = self.tier.web[step.server]
                web.stop_http()
                time.sleep(RESTART_S)
                if step.server != self.never_back:
                    web.start_http()
                self.outputs[step.name] = "restarted"
            else:
                done = self.tier.lb.run(["bash", "-c", step.script], check=False, timeout=120)
                if done.returncode != 0:
                    self.failed[step.name] = done.stderr
                else:
                    self.outputs[step.name] = done.stdout
        finally:
            self.finished[step.name] = time.monotonic()
            self.done[step.name].set()

    def run(self) -> None:
        with ThreadPoolExecutor(len(self.steps)) as pool:
            list(pool.map(self._run, self.steps.values()))


class Tier:
    def __init__(self, lab, fleet):
        lb = fleet.load_balancer
        self.lb = lab.machines[lb.primary]
        self.client = lab.machines["client"]
        self.web = {name: lab.machines[name] for name in (*lb.backends, *lb.backups)}
        self.under_test = chaos.TierUnderTest(
            self.lb, self.client, self.web, lb.backends, lb.backups, frontend_url(lb, fleet)
        )

    def states(self) -> dict[str, str]:
        return {name: row["status"] for name, row in chaos.stat_rows(self.lb, BACKEND_NAME).items()}

    def all_up(self) -> bool:
        return set(self.states().values()) == {"UP"}


@pytest.fixture(scope="module")
def tier():
    for tool in ("haproxy", "nginx", "rsyslogd", "socat"):  # socat: the drain and ready scripts' client
        require_tool(tool)
    fleet, _ = plan(True)
    lb = fleet.load_balancer
    cfg = render_haproxy_cfg(lb, fleet, stats_password=PASSWORD)
    with NetLab(new_prefix(), "10.0.0.0/24") as lab:
        for name in (*lb.backends, *lb.backups):
            lab.add_machine(name, [f"{fleet.machine_address(name)}/24"]).serve_http(port=lb.backend_port, name=name)
        lab.add_machine("client", ["10.0.0.50/24"])
        node = lab.add_machine(lb.primary, ["10.0.0.10/24"])
        node.run_rsyslog(render_rsyslog_conf(lb))
        node.run_haproxy(cfg)
        t = Tier(lab, fleet)
        assert wait_until(t.all_up, 10, 0.2), t.states()
        yield t


def under_load(tier, roll: Roll, seconds: float) -> chaos.LoadResult:
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(chaos.run_load, tier.under_test, seconds, 8, SLOWEST_MS)
        time.sleep(2)
        roll.run()
        return load.result(timeout=seconds + 60)


def state_changes(tier, since: int) -> list[tuple[str, str]]:
    """(server, what) from haproxy's own log: its state and admin-state change lines, in order."""
    lines = tier.lb.read_log().splitlines()[since:]
    pattern = re.compile(rf"Server {BACKEND_NAME}/(\S+) (?:is |was |enters? |remains? )?(.*?)\.? ?(?:Reason|$)")
    return [(m.group(1), m.group(2)) for line in lines if (m := pattern.search(line))]


def test_the_plan_chains_each_server_between_a_drain_and_a_ready_step():
    fleet, rec = plan(True)
    lb = fleet.load_balancer
    steps = roll_steps(rec, fleet)
    order = [*lb.backends, *lb.backups]
    for i, server in enumerate(order):
        drain, ready = f"haproxy-drain-{server}", f"haproxy-ready-{server}"
        (web,) = [s.name for s in steps.values() if s.kind == "web" and s.server == server]
        assert steps[web].after == {drain}, steps[web]
        assert steps[ready].after == {web}
        assert steps[drain].after == ({f"haproxy-ready-{order[i - 1]}"} if i else set()), steps[drain]
    unrolled = roll_steps(plan(False)[1], fleet)
    assert {s.kind for s in unrolled.values()} == {"web"} and not any(s.after for s in unrolled.values())


def test_every_server_restarted_at_once_fails_requests(tier):
    """rollingChanges: false, as before: every web server (the backup too) goes at once."""
    fleet, rec = plan(False)
    roll = Roll(roll_steps(rec, fleet), tier)
    result = under_load(tier, roll, LOAD_S["all at once"])
    assert len(roll.ran) == 4 and max(t for t, _ in roll.ran) - min(t for t, _ in roll.ran) < 0.5, roll.ran
    assert result.failures > 0, result
    assert wait_until(tier.all_up, 10, 0.2), tier.states()
    took = max(roll.finished.values()) - min(t for t, _ in roll.ran)
    print(f"\nall at once: {result.failures} of {result.requests} failed {result.errors}, slowest "
          f"{result.latency_max_ms:.0f} ms; the change took {took:.1f} s")  # fmt: skip


def test_a_rolled_restart_of_every_server_loses_no_request(tier):
    fleet, rec = plan(True)
    steps = roll_steps(rec, fleet)
    roll = Roll(steps, tier)
    since = len(tier.lb.read_log().splitlines())
    result = under_load(tier, roll, LOAD_S["rolled"])
    assert not roll.failed, roll.failed
    assert result.failures == 0 and result.latency_max_ms < SLOWEST_MS, result
    assert tier.all_up(), tier.states()
    # One server at a time, in the tier's order: DRAIN, then MAINT, then UP, before the next starts.
    lb = fleet.load_balancer
    order = [*lb.backends, *lb.backups]
    web = {s.server: s.name for s in steps.values() if s.kind == "web"}
    ran = [name for _, name in sorted(roll.ran)]
    assert ran == [n for s in order for n in (f"haproxy-drain-{s}", web[s], f"haproxy-ready-{s}")], ran
    for server in order:
        assert "drained and in maintenance" in roll.outputs[f"haproxy-drain-{server}"]
        assert "back in rotation" in roll.outputs[f"haproxy-ready-{server}"]
    # haproxy's own log: each server DRAIN, then MAINT, then back, and only then the next one.
    changes = state_changes(tier, since)
    kinds = ("drain state", "going DOWN for maintenance", "UP/READY (leaving forced maintenance)")
    assert [(s, next((k for k in kinds if what.startswith(k)), what)) for s, what in changes] == [
        (s, k) for s in order for k in kinds
    ], changes
    took = max(roll.finished.values()) - min(t for t, _ in roll.ran)
    print(f"\nrolled: {result.failures} of {result.requests} failed, slowest {result.latency_max_ms:.0f} ms, the roll "
          f"took {took:.1f} s; haproxy's log: {changes}")  # fmt: skip


def test_a_server_that_does_not_come_back_stops_the_roll_the_rest_serving(tier):
    fleet, rec = plan(True)
    lb = fleet.load_balancer
    stuck = lb.backends[1]
    roll = Roll(roll_steps(rec, fleet), tier, never_back=stuck)
    t0 = time.monotonic()
    result = under_load(tier, roll, LOAD_S["stuck"])
    assert result.failures == 0, result
    assert (
        f"{stuck} is not UP on haproxy's haproxy after {ready_timeout_s(lb)} s" in roll.failed[f"haproxy-ready-{stuck}"]
    )
    later = [*lb.backends[2:], *lb.backups]
    assert all(roll.failed[f"haproxy-drain-{s}"].startswith("not run") for s in later), roll.failed
    states = tier.states()
    assert states[stuck] != "UP" and all(states[s] == "UP" for s in (lb.backends[0], *later)), states
    assert time.monotonic() - t0 < LOAD_S["stuck"] + 30
    tier.web[stuck].start_http()
    assert wait_until(tier.all_up, 10, 0.2), tier.states()

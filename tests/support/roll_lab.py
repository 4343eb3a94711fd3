"""A change to every web server of prod's tier, applied the way the engine runs the program's steps,
through the real tier in the test suite's network lab (tests/support/netlab): the L4 roll test
(tests/test_rolling_change_lab.py) and the benchmark (benchmarks/rolling_change.py) share it.

The plan is prod's tier with one balancer node, over plain HTTP (the roll does not depend on either),
recorded by the program: its RemoteSteps and their dependencies are what the engine gets. The lab runs
Debian's haproxy with the rendered haproxy.cfg at 10.0.0.10, rsyslogd with the rendered snippet
(haproxy's own log), and real nginx web servers at the stack's addresses. ``Roll`` runs every step as
soon as the steps it depends on are done, in parallel otherwise, as the engine does: a drain or ready
step is its recorded script, run for real on the balancer (socat to haproxy's admin socket); a web
server's step is what it does to the server when it restarts httpd: the server stops, and comes back
RESTART_S later.
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from components.lb.balancer_files import BACKEND_NAME, frontend_url, render_haproxy_cfg, render_rsyslog_conf
from components.model import load_fleet
from plan.run import StackConfig, load_stack, run_program
from support import haproxy_chaos as chaos
from support.netlab import NetLab, new_prefix, wait_until

STEP = "virtfleet:remote:RemoteStep"
PASSWORD = "roll-test"
RESTART_S = 1.0  # how long a restarted web server is away
SLOWEST_MS = 2000  # the bound for a request during a rolled change
TOOLS = ("haproxy", "nginx", "rsyslogd", "socat")  # socat: the drain and ready scripts' client


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


@contextlib.contextmanager
def open_tier() -> Iterator[Tier]:
    """The lab: prod's web servers, the client and the balancer, every server UP."""
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
        if not wait_until(t.all_up, 10, 0.2):
            raise RuntimeError(f"the tier's servers are not all UP: {t.states()}")
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

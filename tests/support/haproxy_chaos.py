"""Failure scenarios for the HAProxy tier in the network lab, shared by the lab test and the benchmark.

Each scenario runs real wrk from the lab's client against the balancer, breaks web servers the way
production breaks them, and returns what a client saw (failed requests, requests slower than a
threshold, the slowest) and what the balancer did, from its stats socket polled every 50 ms
(seconds until the faulty servers were out of rotation, until the backup served):

- ``all_actives_killed``: every active server SIGKILLed at once (master and workers);
- ``server_hangs``: one server SIGSTOPped: it accepts connections (the kernel's backlog) and never
  answers, as a hung application does;
- ``health_path_fails``: one server's health path answers 503 while every other path answers;
- ``client_floods``: one client (its own machine) opens more connections than the balancer holds and
  keeps them idle, while another client runs its load.

The scenarios leave the fault in place; the caller repairs it (``start_http``, ``pause_http(False)``,
``fail_health(False)``). Every wait is bounded; traffic stays inside the lab.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .netlab import Machine, wait_until
from .netlab_http import WrkResult, wrk_slow_script

SLOW_MS = 2000  # the "slower than 2 s"
POLL_S = 0.05
# A request slower than wrk's --timeout is a failed one. wrk counts it only at its timeout check
# (every 2 s) while the request is still pending, and forgets whatever is pending when it stops; so
# a scenario's load runs until a request stuck since the fault is past the timeout at one check.
WRK_TIMEOUT_S = 5
WRK_TIMEOUT_CHECK_S = 2


@dataclass(frozen=True)
class TierUnderTest:
    """The lab's machines as a scenario needs them."""

    lb: Machine
    client: Machine
    web: dict[str, Machine]
    actives: tuple[str, ...]
    backups: tuple[str, ...]
    url: str


@dataclass
class ChaosResult:
    scenario: str
    load: WrkResult
    out_of_rotation_s: float | None = None  # None: not out of rotation within the run (or not asked)
    backup_serves_s: float | None = None
    detail: dict = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.load.failures

    @property
    def slow(self) -> int:
        return self.load.slow or 0


def stat_rows(lb: Machine, backend: str = "webservers") -> dict[str, dict[str, str]]:
    text = lb.haproxy_command("show stat").lstrip("# ")
    return {row["svname"]: row for row in csv.DictReader(io.StringIO(text)) if row["pxname"] == backend}


def frontend_session_limit(lb: Machine, frontend: str = "www") -> int:
    text = lb.haproxy_command("show stat").lstrip("# ")
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["pxname"] == frontend and r["svname"] == "FRONTEND")
    return int(row["slim"])


class StatsWatch:
    """Polls the balancer's backend stats in a thread; answers "when did this first hold?"."""

    def __init__(self, lb: Machine) -> None:
        self.lb = lb
        self.samples: list[tuple[float, dict[str, dict[str, str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):  # haproxy restarting: the next poll comes 50 ms later
                self.samples.append((time.monotonic(), stat_rows(self.lb)))
            self._stop.wait(POLL_S)

    def __enter__(self) -> StatsWatch:
        self._thread.start()
        wait_until(lambda: self.samples, 5)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def before(self, t0: float) -> dict[str, dict[str, str]]:
        return [rows for t, rows in self.samples if t <= t0][-1]

    def first(self, holds, t0: float) -> float | None:
        """Seconds from ``t0`` until the first sample for which ``holds(rows)`` is true."""
        return next((t - t0 for t, rows in self.samples if t >= t0 and holds(rows)), None)


def _down(*names: str):
    return lambda rows: all(rows[n]["status"].split()[0] == "DOWN" for n in names)


def _served_more(name: str, base: dict[str, dict[str, str]]):
    return lambda rows: int(rows[name]["stot"] or 0) > int(base[name]["stot"] or 0)


def run_load(
    t: TierUnderTest, duration_s: int, connections: int, slow_ms: int = SLOW_MS, timeout_s: int = WRK_TIMEOUT_S
) -> WrkResult:
    script = t.client.workdir / f"slow-{slow_ms}.lua"
    script.write_text(wrk_slow_script(slow_ms))
    return t.client.wrk(t.url, duration_s, connections, 1, ["--timeout", f"{timeout_s}s", "-s", str(script)])


def _under_load(t: TierUnderTest, fault, duration_s: int, fault_at_s: float, connections: int, slow_ms: int):
    """Start the load, apply ``fault()`` after ``fault_at_s``; return (wrk result, watch, fault time)."""
    duration_s = max(duration_s, math.ceil(fault_at_s) + WRK_TIMEOUT_S + WRK_TIMEOUT_CHECK_S)
    with StatsWatch(t.lb) as watch, ThreadPoolExecutor(1) as pool:
        load = pool.submit(run_load, t, duration_s, connections, slow_ms)
        time.sleep(fault_at_s)
        t0 = time.monotonic()
        fault()
        result = load.result(timeout=duration_s + 30)
    return result, watch, t0


def all_actives_killed(
    t: TierUnderTest, duration_s: int = 6, fault_at_s: float = 2, connections: int = 16
) -> ChaosResult:
    def kill_all() -> None:
        for name in t.actives:  # the signals first, so that the servers die at once
            t.web[name].signal_http(signal.SIGKILL)
        for name in t.actives:
            t.web[name].stop_http(kill=True)

    result, watch, t0 = _under_load(t, kill_all, duration_s, fault_at_s, connections, SLOW_MS)
    base = watch.before(t0)
    backup_s = min((s for b in t.backups if (s := watch.first(_served_more(b, base), t0)) is not None), default=None)
    return ChaosResult("all actives killed", result, watch.first(_down(*t.actives), t0), backup_s)


def server_hangs(
    t: TierUnderTest, victim: str, duration_s: int = 6, fault_at_s: float = 2, connections: int = 16
) -> ChaosResult:
    result, watch, t0 = _under_load(t, t.web[victim].pause_http, duration_s, fault_at_s, connections, SLOW_MS)
    return ChaosResult(f"{victim} hangs", result, watch.first(_down(victim), t0))


def health_path_fails(
    t: TierUnderTest, victim: str, duration_s: int = 6, fault_at_s: float = 2, connections: int = 16
) -> ChaosResult:
    """Also counts the client requests that reached the victim after it was out of rotation (its
    access log: a client's request carries X-Forwarded-For, the balancer's checks do not)."""
    machine = t.web[victim]
    marks: dict[str, int] = {}

    def fail() -> None:
        machine.fail_health()

    def mark_when_down() -> None:
        if wait_until(lambda: _down(victim)(stat_rows(t.lb)), duration_s, POLL_S):
            time.sleep(0.2)  # requests already sent to it may still land; later ones may not
            marks["log"] = len(machine.http_access_log().splitlines())

    with ThreadPoolExecutor(1) as marker:
        result, watch, t0 = _under_load(
            t, lambda: (fail(), marker.submit(mark_when_down)), duration_s, fault_at_s, connections, SLOW_MS
        )
    after = machine.http_access_log().splitlines()[marks["log"] :] if "log" in marks else []
    client_ip = t.client.ip
    reached = sum(1 for line in after if f'xff="{client_ip}"' in line)
    return ChaosResult(
        f"{victim}'s health path fails",
        result,
        watch.first(_down(victim), t0),
        detail={"requests_after_down": reached, "lines_after_down": len(after), "marked": "log" in marks},
    )


# The flooding client: opens `count` connections without sending anything, keeps them `hold_s`
# seconds, and reports (JSON lines) how many the balancer kept open at `report_at_s` and at the end.
_FLOODER = r"""
import json, resource, select, socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
hold_s, report_at_s = float(sys.argv[4]), float(sys.argv[5])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
start = time.monotonic()
socks = []
poller = select.poll()
for _ in range(count):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    socks.append(s)
    poller.register(s, select.POLLOUT)
deadline = start + 3
pending = len(socks)
while pending and time.monotonic() < deadline:
    pending -= len(poller.poll(100))
def still_open():
    n = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b"":
                n += 1
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n
print(json.dumps({"opened": count}), flush=True)
time.sleep(max(0.0, start + report_at_s - time.monotonic()))
print(json.dumps({"held": still_open()}), flush=True)
time.sleep(max(0.0, start + hold_s - time.monotonic()))
print(json.dumps({"held_end": still_open()}), flush=True)
"""


def client_floods(
    t: TierUnderTest, flooder: Machine, extra: int = 200, duration_s: int = 4, connections: int = 8, slow_ms: int = 1000
) -> ChaosResult:
    """``flooder`` opens the frontend's whole session limit plus ``extra`` connections and holds them
    idle; meanwhile the client runs its load, in which a request slower than ``slow_ms`` fails.
    ``detail`` says how many of the flooder's connections the balancer kept (``held``, measured
    while the load ran)."""
    count = frontend_session_limit(t.lb) + extra
    url = urlsplit(t.url)
    host, port = url.hostname or "", str(url.port or 80)
    hold_s = duration_s + 6
    proc = flooder.popen(
        [sys.executable, "-c", _FLOODER, host, port, str(count), str(hold_s), str(4 + duration_s / 2)], label="flooder"
    )
    try:
        if not wait_until(lambda: '"opened"' in flooder.log_of(proc) or proc.poll() is not None, 10, 0.1):
            raise RuntimeError(f"the flooder did not open its connections: {flooder.log_of(proc)}")
        time.sleep(3)  # let its connections land in the balancer (accepted or refused)
        # wrk's timeout at the slow threshold: a request stuck since it started counts as failed at
        # the first timeout check (2 s), instead of vanishing unfinished when wrk stops.
        result = run_load(t, duration_s, connections, slow_ms, timeout_s=max(1, slow_ms // 1000))
        proc.wait(timeout=hold_s + 10)
    finally:
        flooder.stop(proc, kill=True)
    report: dict = {}
    for line in flooder.log_of(proc).splitlines():
        if line.startswith("{"):
            report |= json.loads(line)
    return ChaosResult("one client floods", result, detail={"opened": count, **report})

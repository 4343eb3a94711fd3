"""Failure scenarios for the HAProxy tier in the network lab, shared by the lab test and the benchmark.

Each scenario loads the balancer from the lab's client, breaks web servers the way production breaks
them, and returns what the client saw (failed requests, requests slower than a threshold, the
slowest) and what the balancer did, from its stats socket polled every 50 ms (seconds until the
faulty servers were out of rotation, until the backup served).

The load is ``_CLIENT`` below, not wrk: wrk counts a request only once answered, so a request still
waiting when wrk stops (one sent to a hung server, or one a flooded balancer never accepted) simply
vanishes from its figures. ``_CLIENT`` runs N keep-alive connections in threads, each finishing its
last request (bounded by its 5 s timeout) before reporting, so every request sent is answered,
failed or timed out. Scenarios:

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
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .netlab import Machine, wait_until

SLOW_MS = 2000  # the "slower than 2 s"
POLL_S = 0.05
TIMEOUT_S = 5  # a request not answered in 5 s has failed
DEFAULT_PORT = {"http": 80, "https": 443}

# N connections, each a thread sending GETs one after another over keep-alive for `duration`
# seconds; the last request of each is waited for (socket timeout), so none is left uncounted.
_CLIENT = r"""
import http.client, json, ssl, sys, threading, time
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
connections, duration, timeout_s, slow_s = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
cafile = sys.argv[8] if len(sys.argv) > 8 else ""  # https: verify the balancer against this PEM
context = ssl.create_default_context(cafile=cafile) if cafile else None
def connect():
    if context is None:
        return http.client.HTTPConnection(host, port, timeout=timeout_s)
    return http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)
lock = threading.Lock()
total = {"requests": 0, "failures": 0, "slow": 0, "max_s": 0.0, "errors": {}, "stale": 0}
end = time.monotonic() + duration
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
def get(conn):
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response
def worker():
    conn, used, mine = None, 0, {"requests": 0, "failures": 0, "slow": 0, "max_s": 0.0, "errors": {}, "stale": 0}
    while time.monotonic() < end:
        start, error = time.monotonic(), None
        try:
            if conn is None:
                conn, used = connect(), 0
            try:
                response = get(conn)
            except STALE:
                if not used:
                    raise
                # A kept-alive connection closed before any byte of the answer: like browsers, curl
                # and urllib3, send the GET again once on a new connection (RFC 9112, 9.3.1).
                mine["stale"] += 1
                conn.close()
                conn, used = connect(), 0
                response = get(conn)
            used += 1
            if not 200 <= response.status < 400:
                error = str(response.status)
            if response.will_close:
                conn.close()
                conn = None
        except Exception as exc:
            error = type(exc).__name__
            if conn is not None:
                conn.close()
            conn = None
        took = time.monotonic() - start
        mine["requests"] += 1
        mine["max_s"] = max(mine["max_s"], took)
        mine["slow"] += took > slow_s
        if error:
            mine["failures"] += 1
            mine["errors"][error] = mine["errors"].get(error, 0) + 1
    with lock:
        for key in ("requests", "failures", "slow", "stale"):
            total[key] += mine[key]
        total["max_s"] = max(total["max_s"], mine["max_s"])
        for key, n in mine["errors"].items():
            total["errors"][key] = total["errors"].get(key, 0) + n
threads = [threading.Thread(target=worker) for _ in range(connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(total))
"""


@dataclass(frozen=True)
class LoadResult:
    """What the client saw: every request it sent, answered (2xx/3xx) or failed (an error, another
    status, or no answer in TIMEOUT_S), and how many took longer than ``slow_ms``. A GET sent on a
    kept-alive connection that the balancer closed before answering is sent again once on a new
    connection, as every browser does; ``stale_retries`` counts those (their time includes both)."""

    requests: int
    failures: int
    slow: int
    slow_ms: int
    latency_max_ms: float
    errors: dict
    stale_retries: int  # requests sent again after a kept-alive connection closed before answering
    raw: str


@dataclass(frozen=True)
class TierUnderTest:
    """The lab's machines as a scenario needs them."""

    lb: Machine
    client: Machine
    web: dict[str, Machine]
    actives: tuple[str, ...]
    backups: tuple[str, ...]
    url: str
    cafile: str | None = None  # for an https:// url: the PEM the client verifies the balancer with


@dataclass
class ChaosResult:
    scenario: str
    load: LoadResult
    out_of_rotation_s: float | None = None  # None: not out of rotation within the run (or not asked)
    backup_serves_s: float | None = None
    detail: dict = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.load.failures

    @property
    def slow(self) -> int:
        return self.load.slow


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


def run_load(t: TierUnderTest, duration_s: float, connections: int, slow_ms: int = SLOW_MS) -> LoadResult:
    """Load the balancer from the client for ``duration_s`` (then up to TIMEOUT_S for the last requests)."""
    url = urlsplit(t.url)
    if url.scheme == "https" and not t.cafile:
        raise ValueError(f"{t.url}: an https load needs the certificate to verify (cafile)")
    argv = [sys.executable, "-c", _CLIENT, url.hostname or "", str(url.port or DEFAULT_PORT[url.scheme])]
    argv += [url.path or "/", str(connections), str(duration_s), str(TIMEOUT_S), str(slow_ms / 1000)]
    argv += [t.cafile] if url.scheme == "https" else []
    out = t.client.run(argv, timeout=duration_s + TIMEOUT_S + 20).stdout
    total = json.loads(out.strip().splitlines()[-1])
    return LoadResult(
        total["requests"],
        total["failures"],
        total["slow"],
        slow_ms,
        total["max_s"] * 1000,
        total["errors"],
        total["stale"],
        out,
    )


def _under_load(t: TierUnderTest, fault, duration_s: float, fault_at_s: float, connections: int, slow_ms: int):
    """Start the load, apply ``fault()`` after ``fault_at_s``; return (load result, watch, fault time)."""
    with StatsWatch(t.lb) as watch, ThreadPoolExecutor(1) as pool:
        load = pool.submit(run_load, t, duration_s, connections, slow_ms)
        time.sleep(fault_at_s)
        t0 = time.monotonic()
        fault()
        result = load.result(timeout=duration_s + TIMEOUT_S + 30)
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
    idle; meanwhile the client runs its load (``slow`` counts its requests slower than ``slow_ms``).
    ``detail`` says how many of the flooder's connections the balancer kept (``held``, measured
    while the load ran)."""
    count = frontend_session_limit(t.lb) + extra
    url = urlsplit(t.url)
    host, port = url.hostname or "", str(url.port or DEFAULT_PORT[url.scheme])
    hold_s = duration_s + 6
    proc = flooder.popen(
        [sys.executable, "-c", _FLOODER, host, port, str(count), str(hold_s), str(4 + duration_s / 2)], label="flooder"
    )
    try:
        if not wait_until(lambda: '"opened"' in flooder.log_of(proc) or proc.poll() is not None, 10, 0.1):
            raise RuntimeError(f"the flooder did not open its connections: {flooder.log_of(proc)}")
        time.sleep(3)  # let its connections land in the balancer (accepted or refused)
        result = run_load(t, duration_s, connections, slow_ms)
        proc.wait(timeout=hold_s + 10)
    finally:
        flooder.stop(proc, kill=True)
    report: dict = {}
    for line in flooder.log_of(proc).splitlines():
        if line.startswith("{"):
            report |= json.loads(line)
    return ChaosResult("one client floods", result, detail={"opened": count, **report})


def balancer_addresses(fleet, name: str) -> list[str]:
    """A lab machine's addresses for the tier machine ``name``: its own, and on the first balancer node
    of a pair the virtual address as well (keepalived's master holds it; the pair lab moves it)."""
    lb = fleet.load_balancer
    own = [f"{fleet.machine_address(name)}/24"]
    return [*own, f"{lb.virtual_address}/24"] if lb.pair and name == lb.primary else own

"""The balancer pair in the network lab: two HAProxy nodes sharing a virtual address through keepalived.

Builds on ``netlab`` (namespaces at the stack's own addresses, the web servers) and ``haproxy_chaos``
(the client's load). What a pair needs beyond the one-balancer lab:

- Each node's interface is named ``lan0``, as on a KVM/Xen guest and in the rendered keepalived.conf,
  and the node's namespace gets the product's sysctl file (``ip_nonlocal_bind``: the backup's haproxy
  binds the virtual address it does not hold).
- keepalived runs from the root network namespace with ``-s <node's namespace>`` (it enters it
  itself, on its own): ``vrrp_track_process`` listens to the kernel's process events, whose netlink
  connector exists only in the initial network namespace; keepalived opens it before it enters the
  node's namespace. Started inside the namespace (``ip netns exec``) it logs "Failed to set/clear
  process event listen - errno 111" and keeps the instance in FAULT for good. (A real node runs
  keepalived in its own initial namespace, where this never arises.)
- Both nodes' haproxy live in one PID namespace, where ``track_process`` would see either node's
  "haproxy": each node's runs under a name of its own (``exec`` through a symlink, so its comm is the
  link's name, unique to the lab), and its keepalived.conf is rendered with ``haproxy_process=`` that
  name. Nothing else in the rendered files is changed.
- keepalived refuses scripts below a directory others may write (``enable_script_security``), so the
  notify scripts live in a root-owned 0755 directory under /run (not the lab's temp dir in /tmp),
  removed at the end. There is no journald here: the notify script's ``logger -u`` writes to a unix
  datagram socket that ``SyslogReader`` serves, one per node, into a file the test reads.

Measuring: ``measure`` runs the tier lab's load (``haproxy_chaos.run_load``: keep-alive connections,
every request accounted for) and, alongside, a probe that starts a fresh request every 20 ms and
records when each one ended, from which the outage window comes (the longest time with no
successful answer). Every wait is bounded; every process is tracked by the lab and stopped with it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from components.lb.vrrp_files import (
    INSTANCE,
    NodeLink,
    links,
    render_keepalived_conf,
    render_notify_script,
    render_sysctl_conf,
)

from . import haproxy_chaos as chaos
from .netlab import Machine, NetLab, wait_until
from .tools import missing, require_tool

START_TIMEOUT_S = 8.0
SLOW_MS = 500
PROBE_EVERY_S = 0.02
STATE = re.compile(rf"\({re.escape(INSTANCE)}\) Entering (MASTER|BACKUP|FAULT) STATE")
_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | {
    "LC_ALL": "C",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}


def require_pair_tools() -> dict[str, str]:
    """The real tools the pair lab runs; skip (fail under REQUIRE_REAL_TOOLS=1) naming a missing one.
    arping must be iputils' (the notify script relies on its ``-D`` exit status), not Habets'."""
    tools = {name: require_tool(name) for name in ("keepalived", "haproxy", "nginx", "nft", "arping", "logger")}
    version = subprocess.run([tools["arping"], "-V"], capture_output=True, text=True, timeout=5)
    if "iputils" not in version.stdout + version.stderr:
        missing("arping is not iputils' (apt-get install iputils-arping): the notify script needs its -D")
    return tools


class SyslogReader:
    """A unix datagram socket standing in for /dev/log: every datagram becomes a line of ``out``."""

    def __init__(self, path: Path, out: Path) -> None:
        self.path, self.out = path, out
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with open(self.out, "a", encoding="utf-8") as out:
            while not self._stop.is_set():
                try:
                    data = self._sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                out.write(data.decode(errors="replace").rstrip("\n") + "\n")
                out.flush()

    def lines(self) -> list[str]:
        return self.out.read_text(errors="replace").splitlines() if self.out.exists() else []

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> str | None:
        """The first line (from line ``after`` on) matching regex ``pattern``, waiting up to ``timeout``."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.lines()[after:] if re.search(pattern, line)]
            return bool(found)

        return found[0] if wait_until(seen, timeout) else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass
class Node:
    """One balancer node: its lab machine, its link as the product computes it, what runs on it."""

    machine: Machine
    link: NodeLink
    comm: str  # the process name its haproxy runs under, which its keepalived tracks
    conf: Path  # its rendered keepalived.conf
    syslog: SyslogReader
    haproxy: subprocess.Popen | None = None
    keepalived: subprocess.Popen | None = None
    keepalived_log: Path | None = None
    starts: int = 0
    mac: str | None = None

    @property
    def name(self) -> str:
        return self.link.name

    @property
    def namespace(self) -> str:
        return self.machine.namespace


@dataclass
class Window:
    """What the 20 ms probe saw: failures, and the longest time without a successful answer."""

    probes: int
    failed: int
    errors: dict
    gap_ms: float  # longest time between two successful answers (or from the start/until the end)
    gap_from: float | None  # monotonic time the longest gap began (the last answer before it)
    first_failure_to_success_ms: float | None  # from the start of the first failed probe to the next answer
    baseline_gap_ms: float  # the median time between answers: the probe's own resolution
    slowest_ms: float  # the slowest answered probe (a SYN sent to a node that gave the address up waits ~1 s)
    slow: int  # probes answered after more than SLOW_MS
    failed_at: list[float] = field(default_factory=list)  # monotonic start times of the failed probes


@dataclass
class Measured:
    """One fault under load: the load's figures, the probe's window, who held the address."""

    fault: str
    requests: int
    failed: int
    errors: dict
    stale_retries: int
    latency_max_ms: float
    window: Window
    holders_before: list[str]
    holders_after: list[str]
    client_arp_before: str | None
    client_arp_after: str | None
    detail: dict = field(default_factory=dict)

    def figures(self) -> dict:
        out = asdict(self)
        out["window_ms"] = round(self.window.gap_ms)
        return out


# A fresh connection per probe, one probe started every `interval` s (each in its own thread, so a
# probe waiting on a lost SYN does not delay the next); prints [start, end, ok, error] per probe.
_PROBE = r"""
import http.client, json, ssl, sys, threading, time
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
duration, interval, timeout_s, cafile = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
context = ssl.create_default_context(cafile=cafile) if cafile else None
results, lock = [], threading.Lock()
def probe():
    start, ok, error, conn = time.monotonic(), False, None, None
    try:
        if context is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        else:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        ok = 200 <= response.status < 400
        error = None if ok else str(response.status)
    except Exception as exc:
        error = type(exc).__name__
    finally:
        if conn is not None:
            conn.close()
    with lock:
        results.append([start, time.monotonic(), ok, error])
threads, begin = [], time.monotonic()
tick = begin
while tick < begin + duration:
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    threads.append(thread)
    tick += interval
    time.sleep(max(0.0, tick - time.monotonic()))
for thread in threads:
    thread.join(timeout_s + 1)
print(json.dumps({"begin": begin, "end": time.monotonic(), "probes": results}))
"""


def window_of(report: dict) -> Window:
    probes = sorted(report["probes"], key=lambda p: p[1])
    answers = [end for _, end, ok, _ in probes if ok]
    marks = [report["begin"], *answers, report["end"]]
    gaps = [(b - a, a) for a, b in itertools.pairwise(marks)]
    longest, since = max(gaps) if gaps else (0.0, None)
    inner = sorted(b - a for a, b in itertools.pairwise(answers)) or [0.0]
    errors: dict[str, int] = {}
    for *_, ok, error in probes:
        if not ok:
            errors[error] = errors.get(error, 0) + 1
    failures = sorted(start for start, _, ok, _ in probes if not ok)
    recovered = None
    if failures:
        after = [end for end in answers if end > failures[0]]
        recovered = (after[0] - failures[0]) * 1000 if after else None
    return Window(
        probes=len(probes),
        failed=len(failures),
        errors=errors,
        gap_ms=longest * 1000,
        gap_from=since,
        first_failure_to_success_ms=recovered,
        baseline_gap_ms=inner[len(inner) // 2] * 1000,
        slowest_ms=max((end - start for start, end, ok, _ in probes if ok), default=0.0) * 1000,
        slow=sum(1 for start, end, ok, _ in probes if ok and end - start > SLOW_MS / 1000),
        failed_at=failures,
    )


class BalancerPair:
    """Both nodes of the pair in a NetLab, running the product's rendered files; see the module doc."""

    def __init__(self, lab: NetLab, lb, fleet, haproxy_cfg: str, certificate, client: Machine, url: str) -> None:
        self.tools = require_pair_tools()
        self.lab, self.lb, self.fleet = lab, lb, fleet
        self.haproxy_cfg, self.client, self.url = haproxy_cfg, client, url
        self.vip = str(lb.virtual_address)
        # keepalived's script security: root-owned, 0755 up to /; not in the lab's dir in /tmp.
        self.script_dir = Path(f"/run/virtfleet-vrrp-lab-{os.getpid()}-{lab.prefix}")
        self.script_dir.mkdir(mode=0o755)
        os.chmod(self.script_dir, 0o755)
        self.nodes: dict[str, Node] = {}
        try:
            for index, link in enumerate(links(lb, fleet), start=1):
                self.nodes[link.name] = self._add_node(link, index, certificate)
        except BaseException:
            self.close()
            raise

    def _add_node(self, link: NodeLink, index: int, certificate) -> Node:
        machine = self.lab.add_machine(link.name, [f"{link.address}/{link.network.prefixlen}"])
        ns = machine.namespace
        # The guest's NIC is lan0 (the rendered config names it); the lab's is eth0 until renamed.
        self.lab.ip("-n", ns, "link", "set", "eth0", "down")
        self.lab.ip("-n", ns, "link", "set", "eth0", "name", link.interface)
        self.lab.ip("-n", ns, "link", "set", link.interface, "up")
        sysctl = self.script_dir / f"sysctl-{link.name}.conf"
        sysctl.write_text(render_sysctl_conf())
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-p", str(sysctl)], check=True, timeout=10)
        machine.write_file(certificate.path, certificate.content, certificate.mode)
        # Unique to this lab (a concurrent run's haproxy must not count), at most 15 characters (comm).
        comm = f"hap-{self.lab.prefix.rsplit('-', 1)[-1]}-{index}"
        link_dir = machine.path("/run/vrrp-lab-bin")
        link_dir.mkdir(parents=True, exist_ok=True)
        (link_dir / comm).symlink_to(self.tools["haproxy"])
        node_dir = self.script_dir / link.name
        node_dir.mkdir(mode=0o755)
        log_socket = node_dir / "log.sock"
        notify = node_dir / "notify"
        notify.write_text(render_notify_script(self.lb, self.fleet, link.name, syslog_socket=str(log_socket)))
        notify.chmod(0o755)
        conf = machine.workdir / "keepalived.conf"
        conf.write_text(
            render_keepalived_conf(self.lb, self.fleet, link.name, notify_script=str(notify), haproxy_process=comm)
        )
        syslog = SyslogReader(log_socket, machine.workdir / "logs" / "syslog-notify.log")
        return Node(machine, link, comm, conf, syslog)

    # -- haproxy ---------------------------------------------------------------------------------

    def start_haproxy(self, node: Node) -> subprocess.Popen:
        """``Machine.run_haproxy`` (``haproxy -c``, then master-worker, waited for until it listens)
        under the node's own process name."""
        node.haproxy = node.machine.run_haproxy(self.haproxy_cfg, binary=f"/run/vrrp-lab-bin/{node.comm}")
        return node.haproxy

    def haproxy_running(self, node: Node) -> bool:
        return node.haproxy is not None and node.haproxy.poll() is None

    def kill_haproxy(self, node: Node) -> None:
        """SIGKILL haproxy's master and worker at once: a crash."""
        if node.haproxy is not None:
            node.machine.stop(node.haproxy, kill=True)

    # -- keepalived --------------------------------------------------------------------------------

    def config_test(self, node: Node, conf: Path | None = None) -> subprocess.CompletedProcess:
        """``keepalived -t`` on a config (default: the node's), inside the node's namespace."""
        argv = ["ip", "netns", "exec", node.namespace, self.tools["keepalived"], "-t", "-f", str(conf or node.conf)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, env=_ENV)

    def start_keepalived(self, node: Node) -> subprocess.Popen:
        node.starts += 1
        run = node.machine.workdir / f"keepalived-{node.starts}"
        run.mkdir()
        node.keepalived_log = node.machine.workdir / "logs" / f"keepalived-{node.starts}.log"
        argv = [self.tools["keepalived"], "-n", "-l", "-D", "-G", "-s", node.namespace, "--vrrp"]
        argv += ["-f", str(node.conf), "-p", str(run / "keepalived.pid"), "-r", str(run / "vrrp.pid")]
        with open(node.keepalived_log, "ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=_ENV
            )
        node.keepalived = self.lab.track(proc)
        return proc

    def stop_keepalived(self, node: Node, kill: bool = False) -> None:
        """SIGTERM (keepalived gives the address up), or SIGKILL to parent and VRRP child: a crash."""
        if node.keepalived is not None:
            node.machine.stop(node.keepalived, kill=kill, grace=5)

    def keepalived_log(self, node: Node) -> str:
        return node.keepalived_log.read_text(errors="replace") if node.keepalived_log else ""

    def states(self, node: Node) -> list[str]:
        """The instance's states in this keepalived's log, in order."""
        return STATE.findall(self.keepalived_log(node))

    def state(self, node: Node) -> str | None:
        states = self.states(node)
        return states[-1] if states else None

    def await_state(self, node: Node, state: str, timeout: float = START_TIMEOUT_S) -> None:
        if not wait_until(lambda: self.state(node) == state, timeout):
            raise AssertionError(
                f"{node.name}: keepalived not {state} after {timeout}s:\n{self.keepalived_log(node)[-3000:]}"
            )

    # -- the network -------------------------------------------------------------------------------

    def holds_vip(self, node: Node) -> bool:
        out = self.lab.ip("-n", node.namespace, "-4", "-o", "addr", "show", "dev", node.link.interface)
        return f" {self.vip}/" in out

    def holders(self) -> list[str]:
        return [name for name, node in self.nodes.items() if self.holds_vip(node)]

    def await_holders(self, wanted: list[str], timeout: float = 5.0) -> bool:
        return wait_until(lambda: self.holders() == wanted, timeout)

    def mac(self, node: Node) -> str:
        if node.mac is None:
            out = self.lab.ip("-n", node.namespace, "-o", "link", "show", "dev", node.link.interface)
            node.mac = re.search(r"link/ether (\S+)", out).group(1)
        return node.mac

    def client_arp(self) -> str | None:
        """The node the client's ARP entry for the address points to (its MAC if no node's)."""
        out = self.lab.ip("-n", self.client.namespace, "neigh", "show", self.vip)
        match = re.search(r"lladdr (\S+)", out)
        if not match:
            return None
        return next((name for name, node in self.nodes.items() if self.mac(node) == match.group(1)), match.group(1))

    def block_vrrp(self, node: Node) -> None:
        """Drop VRRP (IP protocol 112) in and out of ``node``: the two nodes no longer hear each other."""
        rules = (
            "table inet vrrplab {\n"
            "  chain in { type filter hook input priority 0; ip protocol vrrp drop; }\n"
            "  chain out { type filter hook output priority 0; ip protocol vrrp drop; }\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", node.namespace, "nft", "-f", "-"], input=rules, text=True, check=True, timeout=10
        )

    def unblock_vrrp(self, node: Node) -> None:
        subprocess.run(
            ["ip", "netns", "exec", node.namespace, "nft", "delete", "table", "inet", "vrrplab"],
            capture_output=True,
            timeout=10,
        )

    def set_link(self, node: Node, up: bool) -> None:
        self.lab.ip("-n", node.namespace, "link", "set", node.link.interface, "up" if up else "down")

    # -- the whole pair ----------------------------------------------------------------------------

    def quiesce(self) -> None:
        """No keepalived, no address, no block; lan0 up and haproxy running on both nodes."""
        for node in self.nodes.values():
            self.stop_keepalived(node)
        for node in self.nodes.values():
            self.unblock_vrrp(node)
            self.set_link(node, True)
            if self.holds_vip(node):  # a killed keepalived leaves the address behind
                prefix = f"{self.vip}/{node.link.network.prefixlen}"
                self.lab.ip("-n", node.namespace, "addr", "del", prefix, "dev", node.link.interface)
            if not self.haproxy_running(node):
                self.start_haproxy(node)
        self.lab.ip("-n", self.client.namespace, "neigh", "flush", "to", self.vip)

    def reset(self, master: str) -> None:
        """Both nodes healthy, ``master`` holding the address, the other its backup (nopreempt: the
        node whose keepalived comes up first takes over, so it is started first and awaited)."""
        self.quiesce()
        first = self.nodes[master]
        other = next(n for n in self.nodes.values() if n is not first)
        self.start_keepalived(first)
        self.await_state(first, "MASTER")
        self.start_keepalived(other)
        self.await_state(other, "BACKUP")
        if not self.await_holders([master]):
            raise AssertionError(f"after the reset the address is on {self.holders()}, not {master}")
        if not wait_until(lambda: self.client.http_get(self.url, timeout=1).status == 200, 10, 0.2):
            raise AssertionError(f"the client gets no answer from {self.url} after the reset")

    def syslog_marks(self) -> dict[str, int]:
        return {name: len(node.syslog.lines()) for name, node in self.nodes.items()}

    def measure(
        self, fault: str, action, *, duration_s: float = 6.0, fault_at_s: float = 2.0, connections: int = 8
    ) -> Measured:
        """Load the address and probe it every 20 ms for ``duration_s``; ``action()`` at ``fault_at_s``.

        Meanwhile the address's holders and the client's ARP entry are sampled every 50 ms; each
        change goes into ``timeline`` as [ms after the fault, holders, the node the client's ARP names].
        """
        holders_before, arp_before = self.holders(), self.client_arp()
        logs = {name: (node.keepalived_log, len(self.keepalived_log(node))) for name, node in self.nodes.items()}
        # run_load needs only the client and the URL of the tier it loads.
        target = chaos.TierUnderTest(self.client, self.client, {}, (), (), self.url, cafile=self.client.ca_file)
        url = urlsplit(self.url)
        probe = [sys.executable, "-c", _PROBE, url.hostname or "", str(url.port or chaos.DEFAULT_PORT[url.scheme])]
        probe += [url.path or "/", str(duration_s), str(PROBE_EVERY_S), "2"]
        probe += [self.client.ca_file or "" if url.scheme == "https" else ""]
        samples: list[tuple[float, list[str], str | None]] = []
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.05):
                holders, arp = self.holders(), self.client_arp()
                samples.append((time.monotonic(), holders, arp))  # seen by then (each sample takes ~10 ms)

        with ThreadPoolExecutor(3) as pool:
            load = pool.submit(chaos.run_load, target, duration_s, connections)
            probed = pool.submit(self.client.run, probe, timeout=duration_s + 20)
            watcher = pool.submit(watch)
            time.sleep(fault_at_s)
            t0 = time.monotonic()
            action()
            result = load.result(timeout=duration_s + 40)
            report = json.loads(probed.result(timeout=duration_s + 40).stdout.strip().splitlines()[-1])
            done.set()
            watcher.result(timeout=10)
        window = window_of(report)
        timeline, last = [], None
        for moment, holders, arp in samples:
            if (holders, arp) != last:
                timeline.append([round((moment - t0) * 1000), holders, arp])
                last = (holders, arp)
        detail = {
            "gap_began_ms_after_fault": _after(window.gap_from, t0),
            "probe_failures_ms_after_fault": [_after(t, t0) for t in window.failed_at],
            "timeline": timeline,
            "keepalived": {name: keepalived_events(path, since) for name, (path, since) in logs.items()},
        }
        return Measured(
            fault,
            result.requests,
            result.failures,
            result.errors,
            result.stale_retries,
            round(result.latency_max_ms, 1),
            window,
            holders_before,
            self.holders(),
            arp_before,
            self.client_arp(),
            detail,
        )

    def close(self) -> None:
        for node in self.nodes.values():
            node.syslog.close()
        shutil.rmtree(self.script_dir, ignore_errors=True)


# The lines of a keepalived log that tell what the instance did (not the per-advert noise).
EVENTS = (
    "Entering",
    "VIPs",
    "received",
    "Received",
    "Receive advertisement timeout",
    "election",
    "sent 0 priority",
    "Quorum",
    "Sending/queueing gratuitous ARPs",
    "Netlink reports",
)


def keepalived_events(log: Path | None, since: int = 0) -> list[str]:
    """The instance's events in a keepalived log from character ``since`` on, without timestamps."""
    text = log.read_text(errors="replace")[since:] if log is not None and log.exists() else ""
    return [line.split(": ", 1)[-1] for line in text.splitlines() if any(event in line for event in EVENTS)]


def _after(moment: float | None, t0: float) -> float | None:
    return None if moment is None else round((moment - t0) * 1000, 1)


def pair_lab(lab: NetLab, lb, fleet, haproxy_cfg: str, certificate, client: Machine, url: str):
    """A context manager around ``BalancerPair``: its notify directory and log readers go with it."""
    return contextlib.closing(BalancerPair(lab, lb, fleet, haproxy_cfg, certificate, client, url))

"""Benchmark: the generated haproxy.cfg against direct-to-backend, the seed's settings and a tuned reference.

One run, in the test suite's network lab (tests/support/netlab): the prod stack's addresses in
namespaces, real nginx web servers at 10.0.0.11-13 (+ backup 10.0.0.20), Debian's haproxy at
10.0.0.10 holding the pair's address 10.0.0.30, wrk from 10.0.0.50, and a real rsyslogd on the
balancer writing every request's log line to /var/log/haproxy.log in every variant:

- generated: the prod stack's haproxy.cfg and rsyslog snippet, unchanged (test password): log
  lines through haproxy's ring, forwarded to rsyslog over TCP on loopback (logTransport: tcp);
- generated-udp: the same stack with logTransport: udp (one datagram per request, as the seed);
- seed: the chapter's frontend/backend, translated only as far as HAProxy 2.x requires (reqadd
  becomes http-request set-header X-Forwarded-Proto http), with the seed's logging: haproxy's
  ``log 127.0.0.1 local2 info`` and the seed's rsyslog lines ($ModLoad imudp, $UDPServerRun 514,
  local2.* /var/log/haproxy.log);
- tuned: the issue's keep-alive reference, i.e. the seed's settings plus its listed changes.

seed and tuned share the generated-udp config's global and defaults sections (its log line is the
seed's), so they differ from it only in frontend/backend and in the rsyslog rule.

seed and tuned keep the timeouts the generated config had before its failure handling
(REFERENCE_TIMEOUTS_MS: connect 5 s, server and queue 30 s), so tuned is the reference it was.

Throughput is printed as ratios (best of ROUNDS runs per variant, interleaved so drift hits all
alike), then the failover figure: failed requests while one of three servers is SIGKILLed under
load, then the chaos table (tests/support/haproxy_chaos.py, one run each, generated and tuned side
by side): every active server SIGKILLed at once, one server hung (SIGSTOP: accepts, never answers),
one server's health path failing (both configs then check /health), and one client holding more
connections than the balancer's limit while another runs the load. Per run: requests sent, failed
(not answered with 2xx/3xx within 5 s), slower than 2 s (1 s for the flood's other client), seconds
until the faulty server was out of rotation and until the backup served. The chaos load is the
accounting client of haproxy_chaos, not wrk: wrk drops a request still unanswered when it stops.
Run as root: `make bench`. Nothing
leaves the lab's namespaces; every run is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support import haproxy_chaos as chaos  # noqa: E402
from support.netlab import NetLab, new_prefix, wait_until  # noqa: E402
from support.netlab_services import HAPROXY_LOG  # noqa: E402

from components.lb.balancer_files import render_haproxy_cfg, render_rsyslog_conf  # noqa: E402
from plan.run import load_stack  # noqa: E402

DURATION_S = 5
CONNECTIONS = 50
THREADS = 2
ROUNDS = 5
FAILOVER_S = 10
FAILOVER_CONNECTIONS = 16
KILL_AFTER_S = 3

SEED_FRONTEND = """\
frontend www
    bind {frontend}
    http-request set-header X-Forwarded-Proto http
    default_backend webservers
"""
SEED_BACKEND = """
backend webservers
    balance roundrobin
    option httpchk
    option httpclose
    option forwardfor
    cookie LB insert
{servers}"""
TUNED_FRONTEND = SEED_FRONTEND
TUNED_BACKEND = """
backend webservers
    balance roundrobin
    option httpchk
    option forwardfor
    option http-keep-alive
    http-reuse safe
    retries 3
    option redispatch
    retry-on all-retryable-errors
    default-server check inter 1s fall 2 rise 2
    cookie LB insert indirect nocache
{servers}"""


# The generated config's timeouts before its failure handling: what seed and tuned keep.
REFERENCE_TIMEOUTS_MS = {
    "connect": 5000,
    "client": 30000,
    "server": 30000,
    "http-request": 10000,
    "http-keep-alive": 10000,
    "queue": 30000,
}
CHAOS_S = 8
CHAOS_AT_S = 2


def with_reference_timeouts(head: str) -> str:
    return re.sub(
        r"^(\s*timeout ([a-z-]+)) \d+ms$",
        lambda m: (
            f"{m.group(1)} {REFERENCE_TIMEOUTS_MS[m.group(2)]}ms" if m.group(2) in REFERENCE_TIMEOUTS_MS else m[0]
        ),
        head,
        flags=re.M,
    )


# The seed's rsyslog lines (its rsyslog.conf edits and its /etc/rsyslog.d/haproxy.conf).
SEED_RSYSLOG = "$ModLoad imudp\n$UDPServerRun 514\nlocal2.* /var/log/haproxy.log\n"
VARIANTS = ("direct", "seed", "tuned", "generated-udp", "generated")


def variants(fleet) -> dict[str, tuple[str, str]]:
    """Each haproxy variant's (haproxy.cfg, rsyslog config)."""
    lb = fleet.load_balancer
    udp = lb.model_copy(update={"log_transport": "udp"})
    generated = render_haproxy_cfg(lb, fleet, stats_password="bench")
    generated_udp = render_haproxy_cfg(udp, fleet, stats_password="bench")
    head = with_reference_timeouts(generated_udp[: generated_udp.index("\nfrontend ")] + "\n\n")
    frontend = f"{lb.frontend.address}:{lb.frontend.port}"
    active = [(n, fleet.machine_address(n)) for n in lb.backends]
    backup = [(n, fleet.machine_address(n)) for n in lb.backups]
    port = lb.backend_port
    seed_servers = "".join(f"    server {n} {a}:{port} cookie {n} check\n" for n, a in active)
    seed_servers += "".join(f"    server {n} {a}:{port} check backup\n" for n, a in backup)
    tuned_servers = "".join(f"    server {n} {a}:{port} cookie {n}\n" for n, a in active)
    tuned_servers += "".join(f"    server {n} {a}:{port} backup\n" for n, a in backup)
    tuned = head + TUNED_FRONTEND.format(frontend=frontend) + TUNED_BACKEND.format(servers=tuned_servers)
    health = lb.model_copy(update={"health_check": lb.health_check.model_copy(update={"path": "/health"})})
    return {
        # the health-path scenario: both configs check /health instead of /
        "generated-health": (render_haproxy_cfg(health, fleet, stats_password="bench"), render_rsyslog_conf(lb)),
        "tuned-health": (tuned.replace("option httpchk\n", "option httpchk GET /health\n"), SEED_RSYSLOG),
        "generated": (generated, render_rsyslog_conf(lb)),
        "generated-udp": (generated_udp, render_rsyslog_conf(udp)),
        "seed": (
            head + SEED_FRONTEND.format(frontend=frontend) + SEED_BACKEND.format(servers=seed_servers),
            SEED_RSYSLOG,
        ),
        "tuned": (tuned, SEED_RSYSLOG),
    }


def server_states(lb_machine) -> dict[str, str]:
    lines = lb_machine.haproxy_command("show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {r["svname"]: r["status"].split()[0] for r in rows if r["pxname"] == "webservers"}


class Balancer:
    """The lab's balancer machine, running one variant at a time."""

    def __init__(self, machine, actives) -> None:
        self.machine, self.actives, self.rsyslog = machine, actives, None

    def start(self, variant: tuple[str, str]) -> None:
        """Its rsyslogd (restarted, log file emptied), then haproxy, until every active server is UP."""
        cfg, rsyslog_conf = variant
        self.machine.stop_haproxy()
        if self.rsyslog is not None:
            self.machine.stop(self.rsyslog)
        self.machine.path(HAPROXY_LOG).unlink(missing_ok=True)
        self.rsyslog = self.machine.run_rsyslog(rsyslog_conf)
        self.machine.run_haproxy(cfg)
        up = lambda: all(server_states(self.machine).get(n) == "UP" for n in self.actives)  # noqa: E731
        if not wait_until(up, 10, 0.2):
            raise SystemExit(f"haproxy never reported every active server UP: {server_states(self.machine)}")


def failover(client, victim, url: str) -> tuple[int, int]:
    """(failed, total) requests of a wrk run during which ``victim``'s web server is SIGKILLed."""
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(client.wrk, url, FAILOVER_S, FAILOVER_CONNECTIONS)
        time.sleep(KILL_AFTER_S)
        victim.stop_http(kill=True)
        result = load.result(timeout=FAILOVER_S + 30)
    victim.start_http()
    return result.failures, result.requests


def chaos_runs(balancer, configs, t: chaos.TierUnderTest, flooder) -> list[tuple[str, chaos.ChaosResult]]:
    """Every scenario on generated and tuned, each from a fresh start, each fault repaired after it."""
    runs = []
    victim = t.actives[1]
    for variant in ("generated", "tuned"):
        balancer.start(configs[variant])
        try:
            runs.append((variant, chaos.all_actives_killed(t, CHAOS_S, CHAOS_AT_S)))
        finally:
            for name in t.actives:
                t.web[name].start_http()
        balancer.start(configs[variant])
        try:
            runs.append((variant, chaos.server_hangs(t, victim, CHAOS_S, CHAOS_AT_S)))
        finally:
            t.web[victim].pause_http(False)
        balancer.start(configs[f"{variant}-health"])
        try:
            runs.append((variant, chaos.health_path_fails(t, victim, CHAOS_S, CHAOS_AT_S)))
        finally:
            t.web[victim].fail_health(False)
        balancer.start(configs[variant])
        runs.append((variant, chaos.client_floods(t, flooder, duration_s=4)))
    return runs


def print_chaos(runs) -> None:
    print(
        f"chaos: 16 keep-alive connections (the flood's other client: 8), fault {CHAOS_AT_S} s into a "
        f"{CHAOS_S} s run, one run each; seconds from the fault"
    )
    print(
        f"  {'scenario':<30} {'config':<10} {'requests':>9} {'failed':>7} {'slow':>6} {'out of rotation':>16} "
        f"{'backup serves':>14}"
    )

    def secs(value):
        return "-" if value is None else f"{value:.2f} s"

    for variant, run in sorted(runs, key=lambda r: (r[1].scenario, r[0])):
        slow = f"{run.slow}" + ("*" if run.load.slow_ms != chaos.SLOW_MS else "")
        print(
            f"  {run.scenario:<30} {variant:<10} {run.load.requests:>9} {run.failed:>7} {slow:>6} "
            f"{secs(run.out_of_rotation_s):>16} {secs(run.backup_serves_s):>14}"
        )
    print(
        "  failed: an error, a status other than 2xx/3xx, or no answer in 5 s; slow: took more than 2 s "
        "(* 1 s); '-': not within the run, or not applicable"
    )
    for variant, run in runs:
        if run.detail or run.load.errors:
            print(
                f"  {variant} / {run.scenario}: {run.detail | ({'errors': run.load.errors} if run.load.errors else {})}"
            )


def main() -> int:
    missing = [
        t
        for t in ("haproxy", "nginx", "wrk", "rsyslogd", "curl", "ip")
        if not shutil.which(t) and not os.access(f"/usr/sbin/{t}", os.X_OK)
    ]
    if os.geteuid() != 0 or missing:
        print(f"benchmark needs root and {', '.join(missing) or 'its tools'}", file=sys.stderr)
        return 2
    _, fleet = load_stack("prod")
    lb = fleet.load_balancer
    configs = variants(fleet)
    url = f"http://{lb.frontend.address}:{lb.frontend.port}/"
    rates: dict[str, float] = {}
    started = time.monotonic()
    with NetLab(new_prefix(), "10.0.0.0/24") as lab:
        for name in (*lb.backends, *lb.backups, lb.primary):
            lab.add_machine(name, chaos.balancer_addresses(fleet, name))
        client = lab.add_machine("client", ["10.0.0.50/24"])
        flooder = lab.add_machine("flooder", ["10.0.0.51/24"])
        for name in (*lb.backends, *lb.backups):
            lab.machines[name].serve_http(port=lb.backend_port, name=name)
        balancer = Balancer(lab.machines[lb.primary], lb.backends)
        direct_url = f"http://{fleet.machine_address(lb.backends[0])}:{lb.backend_port}/"
        for _ in range(ROUNDS):
            for variant in VARIANTS:
                if variant == "direct":
                    result = client.wrk(direct_url, DURATION_S, CONNECTIONS, THREADS)
                else:
                    balancer.start(configs[variant])
                    result = client.wrk(url, DURATION_S, CONNECTIONS, THREADS)
                if result.failures:
                    print(f"  note: {variant}: {result.failures} failed requests", file=sys.stderr)
                rates[variant] = max(rates.get(variant, 0.0), result.requests_per_sec)
        victim = lab.machines[lb.backends[1]]
        failures = {}
        for variant in ("seed", "tuned", "generated"):
            balancer.start(configs[variant])
            failures[variant] = failover(client, victim, url)
        web = {name: lab.machines[name] for name in (*lb.backends, *lb.backups)}
        under_test = chaos.TierUnderTest(balancer.machine, client, web, lb.backends, lb.backups, url)
        runs = chaos_runs(balancer, configs, under_test, flooder)
    elapsed = time.monotonic() - started

    print(
        f"HAProxy tier benchmark: {os.cpu_count()} cores, wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION_S}s, "
        f"best of {ROUNDS} interleaved rounds, prod addresses in netlab ({elapsed:.0f} s)"
    )
    print(f"  {'variant':<13} {'req/s':>10} {'vs direct':>10}")
    for variant in VARIANTS:
        print(f"  {variant:<13} {rates[variant]:>10.0f} {rates[variant] / rates['direct']:>9.2f}x")
    vs_seed = rates["generated"] / rates["seed"]
    vs_tuned = rates["generated"] / rates["tuned"]
    print(f"  generated / seed  = {vs_seed:.2f}x (target >= 3.00x: {'met' if vs_seed >= 3 else 'NOT met'})")
    print(f"  generated / tuned = {vs_tuned:.2f}x (target >= 1.00x: {'met' if vs_tuned >= 1 else 'NOT met'})")
    print(
        f"  generated-udp / tuned = {rates['generated-udp'] / rates['tuned']:.2f}x, generated / generated-udp = "
        f"{rates['generated'] / rates['generated-udp']:.2f}x (the log transport's share)"
    )
    print(
        f"failover: one of {len(lb.backends)} servers SIGKILLed {KILL_AFTER_S} s into a {FAILOVER_S} s run, "
        f"wrk -c{FAILOVER_CONNECTIONS}"
    )
    for variant, (failed, total) in failures.items():
        print(f"  {variant:<10} {failed:>6} failed of {total} requests")
    print_chaos(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

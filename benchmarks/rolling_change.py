"""Benchmark: what a change that restarts every web server does to traffic, with and without the roll
(issue 28), in one run under the same load.

The lab and the scheduler are the L4 roll test's (tests/support/roll_lab.py): prod's tier with one
balancer node in the test suite's network lab, real nginx web servers at the stack's addresses,
Debian's haproxy with the rendered haproxy.cfg, the program's recorded drain and ready scripts run
for real on the balancer, each web server's step a restart that keeps it away RESTART_S. Each change
runs under the same load (the accounting client of haproxy_chaos, CONNECTIONS keep-alive connections,
LOAD_S seconds, the change starting 2 s in), ROUNDS times, interleaved: all at once
(``rollingChanges: false``), then rolled. Per change: requests sent, failed (not answered with
2xx/3xx within 5 s), the slowest request, and how long the change took from its first step's start
to its last step's end; then what the roll costs as a ratio of the two. Run as root: `make bench`.
Nothing leaves the lab's namespaces; every run is bounded.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.netlab import wait_until  # noqa: E402
from support.roll_lab import RESTART_S, TOOLS, Roll, open_tier, plan, roll_steps, under_load  # noqa: E402

LOAD_S = 14.0  # a roll of prod's four servers takes ~6 s; all at once ~1 s
ROUNDS = 2
CHANGES = {"all at once": False, "rolled": True}


def change(tier, rolling: bool):
    """One change under load: (the client's LoadResult, seconds the change took)."""
    fleet, recording = plan(rolling)
    roll = Roll(roll_steps(recording, fleet), tier)
    result = under_load(tier, roll, LOAD_S)
    if roll.failed:
        raise RuntimeError(f"a step of the change failed: {roll.failed}")
    if not wait_until(tier.all_up, 10, 0.2):
        raise RuntimeError(f"the servers did not all come back: {tier.states()}")
    return result, max(roll.finished.values()) - min(t for t, _ in roll.ran)


def main() -> int:
    missing = [t for t in TOOLS if not shutil.which(t) and not os.access(f"/usr/sbin/{t}", os.X_OK)]
    if os.geteuid() != 0 or missing:
        print(f"benchmark needs root and {', '.join(missing) or 'its tools'}", file=sys.stderr)
        return 2
    runs: dict[str, list] = {name: [] for name in CHANGES}
    started = time.monotonic()
    with open_tier() as tier:
        for _ in range(ROUNDS):
            for name, rolling in CHANGES.items():
                runs[name].append(change(tier, rolling))
    elapsed = time.monotonic() - started
    print(
        f"Rolling change benchmark: {os.cpu_count()} cores, every web server of prod restarted (each away "
        f"{RESTART_S:.0f} s), {LOAD_S:.0f} s of load per change, {ROUNDS} interleaved rounds ({elapsed:.0f} s)"
    )
    print(f"  {'change':<12} {'requests':>9} {'failed':>7} {'slowest':>9} {'took':>7}")
    took: dict[str, float] = {}
    for name, results in runs.items():
        for result, seconds in results:
            print(
                f"  {name:<12} {result.requests:>9} {result.failures:>7} "
                f"{result.latency_max_ms / 1000:>8.2f}s {seconds:>6.1f}s"
            )
        took[name] = sum(s for _, s in results) / len(results)
    failed = {name: sum(r.failures for r, _ in results) for name, results in runs.items()}
    sent = {name: sum(r.requests for r, _ in results) for name, results in runs.items()}
    print(
        f"  the roll takes {took['rolled'] / took['all at once']:.1f}x as long as all at once "
        f"(+{took['rolled'] - took['all at once']:.1f} s on average) and fails {failed['rolled']} of "
        f"{sent['rolled']} requests against {failed['all at once']} of {sent['all at once']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""L4: a change that restarts every web server, applied the way the engine runs the program's steps
(issue 28), under load through the real tier, rolled and not (the lab and the scheduler:
tests/support/roll_lab.py). Without the roll (``rollingChanges: false``) every server restarts at once
and clients see it; with it none does. A server that never comes back stops the roll at its ready step,
the others serving. Bounded: about 50 s in all.
"""

from __future__ import annotations

import time

import pytest
from support.netlab import wait_until
from support.roll_lab import (
    SLOWEST_MS,
    TOOLS,
    Roll,
    open_tier,
    plan,
    roll_steps,
    state_changes,
    under_load,
)
from support.tools import require_tool

from components.lb.roll import ready_timeout_s

pytestmark = pytest.mark.real

# How long the client loads the tier in each case (the change starts 2 s in): all at once takes ~1 s, a
# roll of four servers ~6 s (each ~1.5 s: checks rise 2 x 500 ms after it is back), a stuck one adds
# its ready step's wait.
LOAD_S = {"all at once": 6.0, "rolled": 11.0, "stuck": 18.0}


@pytest.fixture(scope="module")
def tier():
    for tool in TOOLS:
        require_tool(tool)
    with open_tier() as t:
        yield t


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

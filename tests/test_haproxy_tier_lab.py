"""L4: the prod stack's HAProxy tier for real, with the stack's own addresses, inside network namespaces.

Debian's haproxy runs the prod stack's rendered haproxy.cfg unchanged (rendered by the same pure
function the component uses, with a test password full of metacharacters instead of the secret),
rsyslogd runs the rendered snippet unchanged, and real nginx web servers (tests/support/netlab)
stand in for the guests' httpd at 10.0.0.11-13; the backup, the Docker guest backupwebserver, is a
real container at 10.0.0.20 in a real dockerd on its host docker1 (tests/support/dockerd.py: the
image built from busybox-static, the container created from the component's own arguments, the
page the tier writes). The client is 10.0.0.50. Nothing leaves the lab's namespaces. Bounded:
about 40 s in all, no timing assertions.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.dockerd import docker_web_server
from support.netlab import NetLab, new_prefix, wait_until

from components.haproxy_config import render_haproxy_cfg, render_rsyslog_conf
from plan.run import load_stack

pytestmark = pytest.mark.real

PASSWORD = "t3st pa'ss\"$w#rd\\"
ACTIVE = ("webserver1", "webserver2", "webserver3")
BACKUP = "backupwebserver"
STATE_TIMEOUT_S = 8.0  # checks every 1 s, fall 2 / rise 2: a state change shows within ~3 s
TITLE = re.compile(r"<title>([^<]+)</title>")


def served_by(response) -> str | None:
    """The lab nginx's X-Served-By, or the name in the page of a guest serving the tier's own page."""
    if response.served_by:
        return response.served_by
    match = TITLE.search(response.body)
    return match.group(1) if match else None


class Tier:
    def __init__(self, lab, fleet):
        self.lab = lab
        self.fleet = fleet
        self.lb_model = fleet.load_balancer
        self.rsyslog = None  # the rsyslogd process on the balancer, set by the fixture
        self.frontend = "http://10.0.0.10/"
        self.stats = f"http://10.0.0.10:{self.lb_model.stats_bind.port}{self.lb_model.stats.uri}"
        self.lb = lab.machines["haproxy"]
        self.client = lab.machines["client"]
        self.web = {name: lab.machines[name] for name in ACTIVE}

    def stat_rows(self) -> list[dict[str, str]]:
        text = self.lb.haproxy_command("show stat").lstrip("# ")
        return [row for row in csv.DictReader(io.StringIO(text)) if row["pxname"] == "webservers"]

    def states(self) -> dict[str, str]:
        return {row["svname"]: row["status"].split()[0] for row in self.stat_rows()}

    def await_states(self, wanted: dict[str, str]) -> None:
        ok = wait_until(lambda: all(self.states().get(k) == v for k, v in wanted.items()), STATE_TIMEOUT_S, 0.2)
        assert ok, f"wanted {wanted}, haproxy reports {self.states()}"


@pytest.fixture(scope="module")
def tier():
    _, fleet = load_stack("prod")
    lb = fleet.load_balancer
    cfg = render_haproxy_cfg(lb, fleet, stats_password=PASSWORD)
    assert lb.backups == (BACKUP,) and fleet.guest(BACKUP).type == "docker"
    with NetLab(new_prefix(), "10.0.0.0/24") as lab:
        for name in (*lb.backends, lb.node):
            lab.add_machine(name, [f"{fleet.machine_address(name)}/24"])
        lab.add_machine("client", ["10.0.0.50/24"])
        for name in lb.backends:
            lab.machines[name].serve_http(port=lb.backend_port, name=name)
        with docker_web_server(lab, fleet, BACKUP) as (dockerd, container_id, _page):
            node = lab.machines[lb.node]
            rsyslog = node.run_rsyslog(render_rsyslog_conf(lb))
            node.run_haproxy(cfg)
            t = Tier(lab, fleet)
            t.rsyslog = rsyslog
            t.backup_container = dockerd.client.containers.get(container_id)
            t.await_states({name: "UP" for name in (*ACTIVE, BACKUP)})
            yield t


def test_the_lab_runs_the_prod_stacks_addresses(tier):
    assert [tier.web[n].ip for n in ACTIVE] == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    assert tier.lb.ip == "10.0.0.10"
    tier.backup_container.reload()
    networks = tier.backup_container.attrs["NetworkSettings"]["Networks"]
    assert [n["IPAddress"] for n in networks.values()] == ["10.0.0.20"], "the backup is the real container"


def test_requests_spread_round_robin(tier):
    responses = [tier.client.http_get(tier.frontend) for _ in range(9)]
    assert [r.status for r in responses] == [200] * 9, responses
    assert Counter(r.served_by for r in responses) == {name: 3 for name in ACTIVE}
    # Round robin: three consecutive requests hit three different servers.
    assert len({r.served_by for r in responses[:3]}) == 3


def test_the_sticky_cookie_pins_a_client(tier, tmp_path):
    jar = tmp_path / "cookies"
    first = tier.client.http_get(tier.frontend, cookie_jar=jar)
    cookie = tier.lb_model.sticky_cookie
    assert first.cookies.get(cookie) == first.served_by in ACTIVE
    again = [tier.client.http_get(tier.frontend, cookie_jar=jar) for _ in range(6)]
    assert {r.served_by for r in again} == {first.served_by}
    # nocache + indirect: the server never sees the cookie, the client is not told it again.
    assert all(cookie not in r.cookies for r in again)


def test_the_backend_sees_forwarded_for_and_proto(tier):
    plain = tier.client.http_get(tier.frontend)
    assert plain.headers["x-seen-xff"] == "10.0.0.50"
    assert plain.headers["x-seen-xfp"] == "http"
    spoofed = tier.client.http_get(tier.frontend, headers={"X-Forwarded-For": "203.0.113.9"})
    assert spoofed.headers["x-seen-xff"] == "10.0.0.50", "a client-supplied X-Forwarded-For must not pass"


def test_the_stats_page_needs_the_credentials(tier):
    anonymous = tier.client.http_get(tier.stats)
    assert anonymous.status == 401
    assert 'realm="HAProxy Statistics"' in anonymous.headers["www-authenticate"]
    wrong = tier.client.http_get(tier.stats, auth=(tier.lb_model.stats.user, "wrong"))
    assert wrong.status == 401
    good = tier.client.http_get(tier.stats, auth=(tier.lb_model.stats.user, PASSWORD))
    assert good.status == 200
    assert "Statistics Report" in good.body and "webserver1" in good.body
    version = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, timeout=10).stdout.split()[2]
    assert version not in good.body, "stats hide-version"


def test_requests_are_logged_through_rsyslog(tier):
    assert tier.client.http_get(tier.frontend).status == 200
    line = tier.lb.wait_for_log(r"www webservers/webserver\d ")
    assert "GET / HTTP/1.1" in line


def logged_lines(tier) -> int:
    return tier.lb.read_log().count("\n")


def test_every_request_under_load_is_logged(tier):
    """The log path loses no line at full load: the ring forwards every line to rsyslog.

    wrk counts the responses it completed; the few requests still in flight when it stops are
    answered and logged too, hence at most one more line per connection.
    """
    connections = 16
    # Count from a marker that reached the log: the lines of earlier tests' requests come through
    # the same ordered connection before it, so none of them is taken for a line of this load.
    marker = f"before-load-{time.monotonic_ns()}"
    assert tier.client.http_get(tier.frontend + marker).status == 200
    tier.lb.wait_for_log(marker)
    before = logged_lines(tier)
    result = tier.client.wrk(tier.frontend, 3, connections)
    assert result.failures == 0 and result.requests > 1000, result.raw
    # rsyslog flushes its file buffer every second; wait (bounded) for the last lines.
    wait_until(lambda: logged_lines(tier) - before >= result.requests, 10, 0.2)
    time.sleep(1.5)  # and for any line beyond that, which would show a duplicate
    logged = logged_lines(tier) - before
    assert result.requests <= logged <= result.requests + connections, (logged, result.requests)


def test_rsyslog_going_away_costs_no_request_and_logging_resumes(tier):
    """Logging is off the request path: rsyslog stopped under load fails nothing, and once it is
    back haproxy's ring reconnects by itself and new requests reach the log again."""
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(tier.client.wrk, tier.frontend, 5, 16)
        time.sleep(1.5)
        tier.lb.stop(tier.rsyslog)
        time.sleep(1.5)
        tier.rsyslog = tier.lb.run_rsyslog(render_rsyslog_conf(tier.lb_model))
        result = load.result(timeout=30)
    assert result.failures == 0 and result.requests > 1000, result.raw
    marker = f"after-rsyslog-restart-{time.monotonic_ns()}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the ring's forwarder retries its connection on its own
        assert tier.client.http_get(tier.frontend + marker).status == 200
        if marker in tier.lb.read_log():
            break
        time.sleep(0.5)
    assert marker in tier.lb.read_log(), tier.lb.read_log()[-1000:]


def test_killing_an_active_server_under_load_fails_no_request(tier):
    victim = tier.web["webserver2"]
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(tier.client.wrk, tier.frontend, 6, 16)
        time.sleep(2)
        victim.stop_http(kill=True)
        result = load.result(timeout=30)
    try:
        tier.await_states({"webserver2": "DOWN"})
        retried = sum(int(row["wretr"] or 0) + int(row["wredis"] or 0) for row in tier.stat_rows())
    finally:
        victim.start_http()
    assert result.requests > 1000, result.raw
    assert result.failures == 0, result.raw
    assert retried > 0, "the kill must have hit requests, which haproxy retried elsewhere"
    tier.await_states({name: "UP" for name in ACTIVE})


def test_a_client_pinned_to_the_killed_server_fails_no_request_and_moves_at_once(tier):
    """Every request carries the cookie of webserver2, which is SIGKILLed under load. With
    ``option redispatch 1`` the first retry of a request already goes to another server; with the
    plain ``option redispatch`` it would retry the dead server until its last attempt, so the
    victim's retries would outnumber the requests switched away from it."""
    name, victim = "webserver2", tier.web["webserver2"]

    def counters() -> tuple[int, int]:
        row = next(r for r in tier.stat_rows() if r["svname"] == name)
        return int(row["wretr"] or 0), int(row["wredis"] or 0)

    retries_before, moved_before = counters()
    pinned = ["-H", f"Cookie: {tier.lb_model.sticky_cookie}={name}"]
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(tier.client.wrk, tier.frontend, 6, 16, 1, pinned)
        time.sleep(2)
        victim.stop_http(kill=True)
        result = load.result(timeout=30)
    try:
        tier.await_states({name: "DOWN"})
        retries_after, moved_after = counters()
        retries, moved = retries_after - retries_before, moved_after - moved_before
    finally:
        victim.start_http()
    assert result.requests > 1000 and result.failures == 0, result.raw
    assert moved > 0, "the kill must have hit pinned requests, which haproxy moved elsewhere"
    assert retries <= moved, f"{retries} retries for {moved} requests moved: retried on the dead server first"
    tier.await_states({n: "UP" for n in ACTIVE})


def test_the_backup_serves_only_while_every_active_server_is_down(tier):
    for name in ACTIVE:
        tier.web[name].stop_http()
    try:
        tier.await_states({name: "DOWN" for name in ACTIVE})
        during = [tier.client.http_get(tier.frontend) for _ in range(4)]
        assert [(r.status, served_by(r)) for r in during] == [(200, BACKUP)] * 4, during
        # The container's own page, the one the tier renders for it, through the balancer.
        assert f"a docker guest on {tier.fleet.guest(BACKUP).host}" in during[0].body
    finally:
        for name in ACTIVE:
            tier.web[name].start_http()
    tier.await_states({name: "UP" for name in ACTIVE})
    # Haproxy's weighted round robin may finish its current round before a server that came back
    # gets a turn, so ask until every active server has answered (bounded), never the backup.
    served: Counter = Counter()
    for _ in range(30):
        served[tier.client.http_get(tier.frontend).served_by] += 1
        if set(served) >= set(ACTIVE):
            break
    assert set(served) == set(ACTIVE) and BACKUP not in served, served


def test_the_seeds_udp_transport_logs_too(tier):
    """loadBalancer.logTransport: udp renders the seed's wiring (a datagram per request); both the
    haproxy.cfg and the rsyslog snippet of that choice run unchanged and a request reaches the log."""
    lb = tier.lb_model.model_copy(update={"log_transport": "udp"})
    cfg = render_haproxy_cfg(lb, tier.fleet, stats_password=PASSWORD)
    assert "ring@" not in cfg and "log 127.0.0.1:514 local2 info" in cfg
    tier.lb.stop(tier.rsyslog)
    tier.lb.stop_haproxy()
    try:
        tier.rsyslog = tier.lb.run_rsyslog(render_rsyslog_conf(lb))
        tier.lb.run_haproxy(cfg)
        tier.await_states({name: "UP" for name in ACTIVE})
        marker = f"over-udp-{time.monotonic_ns()}"
        assert tier.client.http_get(tier.frontend + marker).status == 200
        assert marker in tier.lb.wait_for_log(marker)
    finally:
        tier.lb.stop(tier.rsyslog)
        tier.lb.stop_haproxy()
        tier.rsyslog = tier.lb.run_rsyslog(render_rsyslog_conf(tier.lb_model))
        tier.lb.run_haproxy(render_haproxy_cfg(tier.lb_model, tier.fleet, stats_password=PASSWORD))

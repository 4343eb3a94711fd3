"""L3/L4: the prod stack's balancer pair for real (issue 29): two HAProxy nodes sharing 10.0.0.30 by
keepalived (VRRPv3, unicast), inside network namespaces at the stack's own addresses.

Debian's keepalived 2.2.7 runs each node's rendered keepalived.conf and notify script, and Debian's
haproxy the rendered haproxy.cfg with the frontend's certificate (a real one for the virtual address,
standing in for pulumi-tls's), on both nodes, haproxy (10.0.0.10, priority 254) and haproxy2
(10.0.0.9, 250), each with its NIC named lan0 and the product's sysctl file applied. Real nginx web
servers stand in for webserver1-3 (10.0.0.11-13) and the backup (10.0.0.20); the client is 10.0.0.50.
What the lab changes, and why, is in tests/support/vrrp_lab.py: keepalived enters the node's namespace
itself (``-s``) so that its process tracking works, each node's haproxy runs under a name of its own
(rendered as ``haproxy_process=``), the notify script logs to a socket the test reads.

Each fault runs under load through https://10.0.0.30/ (the tier lab's keep-alive load, every request
accounted for) with a fresh request probing every 20 ms, whose longest time without an answer is the
outage window. The figures go to build/pair-lab-figures.json and are printed. Bounded: about a
minute in all; nothing leaves the lab's namespaces.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from support.haproxy_check import certificate_pem
from support.netlab import NetLab, new_prefix
from support.vrrp_lab import Measured, pair_lab, require_pair_tools

from components.lb.balancer_files import frontend_url
from components.lb.tier import render_config_step
from components.lb.vrrp_files import INSTANCE, LOG_TAG, render_notify_script
from components.model.lb import VRRP_PRIORITIES
from plan.run import ROOT, load_stack

pytestmark = pytest.mark.real

PASSWORD = "t3st pa'ss\"$w#rd\\"
FIRST, SECOND = "haproxy", "haproxy2"
HIGH, LOW = VRRP_PRIORITIES
WINDOW_BOUND_MS = 1500
CONNECTIONS = 8  # the load's keep-alive connections
# How a request dies when the node under its connection goes: reset, refused (the address still on a
# node whose haproxy is gone), closed, or no answer within the load's 5 s (in flight when the link went).
ABRUPT = {"ConnectionResetError", "ConnectionRefusedError", "RemoteDisconnected", "BrokenPipeError", "SSLEOFError"}
FIGURES = ROOT / "build" / "pair-lab-figures.json"
_figures: dict[str, dict] = {}


def record(measured: Measured, *, again: bool = False) -> Measured:
    """Keep a fault's figures in build/pair-lab-figures.json (every run rewrites it) and print them
    (not ``again``, when only its detail grew)."""
    _figures[measured.fault] = measured.figures()
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(_figures, indent=2) + "\n")
    if again:
        return measured
    w = measured.window
    print(
        f"\n{measured.fault}: {measured.failed} of {measured.requests} requests failed {measured.errors or ''}"
        f" ({measured.stale_retries} resent after a kept-alive connection closed); probe: {w.failed} of"
        f" {w.probes} failed {w.errors or ''}, window {w.gap_ms:.0f} ms (probe resolution {w.baseline_gap_ms:.0f} ms),"
        f" slowest probe {w.slowest_ms:.0f} ms, slowest request {measured.latency_max_ms:.0f} ms;"
        f" address on {measured.holders_before} -> {measured.holders_after}, client ARP"
        f" {measured.client_arp_before} -> {measured.client_arp_after}"
    )
    return measured


@pytest.fixture(scope="module")
def pair():
    require_pair_tools()
    _, fleet = load_stack("prod")
    lb = fleet.load_balancer
    assert lb.nodes == (FIRST, SECOND) and str(lb.virtual_address) == "10.0.0.30", "prod's pair"
    pem = certificate_pem(f"{lb.primary}.{fleet.domain}", str(lb.virtual_address))
    cfg, certificate = render_config_step(lb, fleet, stats_password=PASSWORD, certificate_pem=pem).files
    with NetLab(new_prefix(), "10.0.0.0/24") as lab:
        for name in (*lb.backends, *lb.backups):
            lab.add_machine(name, [f"{fleet.machine_address(name)}/24"]).serve_http(port=lb.backend_port, name=name)
        client = lab.add_machine("client", ["10.0.0.50/24"])
        client.ca_file = str(client.workdir / "balancer-ca.pem")
        (client.workdir / "balancer-ca.pem").write_text(pem)
        with pair_lab(lab, lb, fleet, cfg.content, certificate, client, frontend_url(lb, fleet)) as p:
            for node in p.nodes.values():
                p.start_haproxy(node)
            yield p


def measure(pair, fault: str, action) -> Measured:
    return pair.measure(fault, action, duration_s=4, fault_at_s=1.5, connections=CONNECTIONS)


def notify_lines(pair, name: str, since: int = 0) -> list[str]:
    return pair.nodes[name].syslog.lines()[since:]


def test_keepalived_accepts_both_rendered_configs_and_refuses_one_naming_another_interface(pair):
    """L3: ``keepalived -t`` in each node's namespace (which has lan0) passes the rendered config,
    and fails the same config with the interface renamed (what a node whose NIC is not lan0 gets)."""
    for node in pair.nodes.values():
        checked = pair.config_test(node)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"interface {node.link.interface}\n" in node.conf.read_text()
    node = pair.nodes[FIRST]
    broken = node.machine.workdir / "keepalived-eth0.conf"
    broken.write_text(node.conf.read_text().replace("lan0", "eth0"))
    checked = pair.config_test(node, broken)
    assert checked.returncode != 0 and "interface eth0" in checked.stderr, checked.stderr


def test_the_first_keepalived_up_takes_the_address_the_other_stays_backup(pair):
    """As a deploy starts them (the first node's step, then the second's, a moment later): the first
    node's backup timer expires first, it takes the address, the other hears it and stays backup.
    (Priorities decide only between nodes starting within (254 - 250) / 256 x 200 ms = 3 ms of each
    other; the next test starts them the other way round.)"""
    pair.quiesce()
    marks = pair.syslog_marks()
    first = pair.start_keepalived(pair.nodes[FIRST])
    time.sleep(0.05)
    pair.start_keepalived(pair.nodes[SECOND])
    assert first.poll() is None
    pair.await_state(pair.nodes[FIRST], "MASTER")
    pair.await_state(pair.nodes[SECOND], "BACKUP")
    time.sleep(0.5)  # one more second's adverts: nothing changes
    assert pair.holders() == [FIRST]
    assert pair.states(pair.nodes[SECOND]) == ["BACKUP"], pair.keepalived_log(pair.nodes[SECOND])
    assert pair.client.http_get(pair.url).status == 200
    assert pair.client_arp() == FIRST
    master = pair.nodes[FIRST].syslog.wait_for(
        rf"{LOG_TAG}: {INSTANCE} on {FIRST} is MASTER \(priority {HIGH}\)", 5, marks[FIRST]
    )
    assert master and master.startswith("<29>"), notify_lines(pair, FIRST, marks[FIRST])  # daemon.notice
    assert pair.nodes[SECOND].syslog.wait_for(f"on {SECOND} is BACKUP", 5, marks[SECOND])


# -- faults under load: each from a fresh pair with a known master ------------------------------------


def assert_moved(pair, measured: Measured, old: str, new: str, old_state: str) -> None:
    assert measured.holders_before == [old], measured
    assert pair.state(pair.nodes[new]) == "MASTER", pair.keepalived_log(pair.nodes[new])[-2000:]
    assert pair.state(pair.nodes[old]) == old_state, pair.keepalived_log(pair.nodes[old])[-2000:]
    assert new in measured.holders_after, measured
    assert measured.client_arp_after == new, measured
    assert measured.requests > 1000, measured
    assert measured.window.gap_ms < WINDOW_BOUND_MS, measured


def assert_failures_only_at_the_fault(measured: Measured, kinds: set[str], at_most: int) -> None:
    """The requests that failed died with the fault (their kinds), few, and the probe saw failures
    only between the fault and the end of the window: nothing fails once the address has moved."""
    assert set(measured.errors) <= kinds and measured.failed <= at_most, measured
    late = [
        t for t in measured.detail["probe_failures_ms_after_fault"] if not -100 <= t <= measured.window.gap_ms + 100
    ]
    assert not late, measured


def test_a_node_that_starts_beside_a_master_stays_backup_whatever_its_priority(pair):
    """nopreempt: priorities decide only between nodes starting together (within the difference of
    their backup timers, (254 - 250) / 256 x 200 ms = 3 ms); haproxy (254), started while haproxy2
    (250) is master, stays backup."""
    pair.reset(SECOND)  # haproxy2's keepalived first, awaited as master, then haproxy's
    time.sleep(1)
    assert pair.holders() == [SECOND] and pair.states(pair.nodes[FIRST]) == ["BACKUP"]
    assert pair.client_arp() == SECOND


def test_haproxy_killed_on_the_master_moves_the_address(pair):
    """SIGKILL to haproxy (master and worker) on the master: keepalived hears of the last one's exit
    from the kernel, goes to FAULT, sends priority 0 and gives the address up; the backup takes
    over after its skew time ((256 - 250) / 256 x 200 ms = 5 ms; with priority 100 it was 122 ms and
    the window 135-161 ms).

    Some requests fail, all at that instant: the crash resets the connections haproxy held, and
    the clients' reconnections that reach the node before keepalived has given the address up are
    refused (their number depends on how fast clients reconnect). The new connections sent before
    the backup answers for the address are not refused but unanswered, and wait for the SYN's
    retransmission (~1 s). A sanity bound of 2 % of the requests catches an address that stays."""
    pair.reset(FIRST)
    marks = pair.syslog_marks()
    measured = record(measure(pair, "haproxy killed on the master", lambda: pair.kill_haproxy(pair.nodes[FIRST])))
    assert_moved(pair, measured, FIRST, SECOND, "FAULT")
    assert measured.holders_after == [SECOND], "FAULT gives the address up"
    assert "Quorum lost for tracked process haproxy" in pair.keepalived_log(pair.nodes[FIRST])
    assert pair.nodes[SECOND].syslog.wait_for(f"on {SECOND} is MASTER", 5, marks[SECOND])
    assert pair.nodes[FIRST].syslog.wait_for(f"on {FIRST} is FAULT", 5, marks[FIRST])
    assert not [line for line in notify_lines(pair, SECOND, marks[SECOND]) if "split brain" in line]
    # How many: as many reconnections as the clients make in those ms (0 to 93 of ~12,000 in our runs).
    assert_failures_only_at_the_fault(measured, ABRUPT, measured.requests // 50)


def test_haproxy_back_on_the_old_master_leaves_the_address_where_it_is(pair):
    """nopreempt: the old master (priority 254) comes back as backup; the address does not move a
    second time, so its return costs no request."""
    pair.reset(FIRST)
    first, second = pair.nodes[FIRST], pair.nodes[SECOND]
    pair.kill_haproxy(first)
    pair.await_state(second, "MASTER")
    assert pair.await_holders([SECOND])
    measured = record(measure(pair, "haproxy restarted on the old master", lambda: pair.start_haproxy(first)))
    assert pair.states(first)[-2:] == ["FAULT", "BACKUP"], pair.keepalived_log(first)[-2000:]
    assert pair.state(second) == "MASTER"
    assert measured.holders_before == measured.holders_after == [SECOND], measured
    assert measured.client_arp_after == SECOND, measured
    assert measured.requests > 1000, measured
    assert measured.failed == 0 and measured.window.failed == 0, measured


def test_keepalived_killed_on_the_master_moves_the_address_and_the_new_master_reports_the_leftover(pair):
    """SIGKILL to keepalived (parent and VRRP child) on the master, haproxy2 (the master after the
    faults above): it cannot give the address up, so both nodes hold it. The backup takes over after
    three missed adverts; its notify script finds the dead node still answering for the address.
    keepalived started again on haproxy2 removes the leftover address and stays backup."""
    pair.reset(SECOND)
    first, second = pair.nodes[FIRST], pair.nodes[SECOND]
    marks = pair.syslog_marks()
    measured = record(measure(pair, "keepalived killed on the master", lambda: pair.stop_keepalived(second, kill=True)))
    assert_moved(pair, measured, SECOND, FIRST, "MASTER")  # its log ends where it was killed
    assert measured.holders_after == [FIRST, SECOND], "the killed keepalived leaves its address behind"
    split = first.syslog.wait_for("split brain", 5, marks[FIRST])
    assert split and split.startswith("<27>"), notify_lines(pair, FIRST, marks[FIRST])  # daemon.err
    assert pair.mac(second) in split.lower(), split
    measured.detail["notify"] = split
    record(measured, again=True)
    pair.start_keepalived(second)
    pair.await_state(second, "BACKUP")
    assert pair.await_holders([FIRST]), pair.holders()
    assert "removing VIPs" in pair.keepalived_log(second)


def test_the_masters_link_down_moves_the_address(pair):
    """lan0 down on the master: it goes to FAULT and can tell no one; the backup takes over after
    three missed adverts and its skew time (3 x 200 + 5 ms)."""
    pair.reset(FIRST)
    first = pair.nodes[FIRST]
    try:
        measured = record(measure(pair, "lan0 down on the master", lambda: pair.set_link(first, False)))
        assert_moved(pair, measured, FIRST, SECOND, "FAULT")
        # A request the old master had received when its link went never gets an answer, and nothing
        # tells its client (which has nothing left to send): it waits for its timeout (5 s here).
        assert_failures_only_at_the_fault(measured, ABRUPT | {"TimeoutError"}, CONNECTIONS)
    finally:
        pair.set_link(first, True)
    pair.await_state(first, "BACKUP")
    assert pair.holders() == [SECOND], "back up, nopreempt: the address stays"


def test_vrrp_cut_between_the_nodes_makes_two_masters_and_the_notify_script_says_so(pair):
    """nftables in haproxy2's namespace drops VRRP in and out: each node stops hearing the other,
    haproxy2 takes over after three missed adverts while haproxy stays master, and haproxy2's
    notify script finds haproxy still answering ARP for the address. Unblocked, haproxy2 hears the
    higher priority and steps back, and haproxy's gratuitous ARPs bring the client back to it."""
    pair.reset(FIRST)
    first, second = pair.nodes[FIRST], pair.nodes[SECOND]
    marks = pair.syslog_marks()
    try:
        split = record(measure(pair, "VRRP blocked between the nodes", lambda: pair.block_vrrp(second)))
        assert pair.state(first) == pair.state(second) == "MASTER"
        assert split.holders_after == [FIRST, SECOND], split
        line = second.syslog.wait_for("split brain", 5, marks[SECOND])
        assert line and line.startswith("<27>") and pair.mac(first) in line.lower(), notify_lines(pair, SECOND)
        assert "while haproxy2 is MASTER" in line and "protocol 112 blocked" in line, line
        assert not [x for x in notify_lines(pair, FIRST, marks[FIRST]) if "split brain" in x]
        split.detail["notify"] = line
        record(split, again=True)
        joined = record(measure(pair, "VRRP unblocked", lambda: pair.unblock_vrrp(second)))
    finally:
        pair.unblock_vrrp(second)
    assert pair.state(second) == "BACKUP" and pair.state(first) == "MASTER"
    assert joined.holders_after == [FIRST] and joined.client_arp_after == FIRST, joined
    events = joined.detail["keepalived"]
    assert any(f"higher priority {HIGH}, ours {LOW}" in x for x in events[SECOND]), events
    # haproxy may never hear haproxy2 as master (haproxy2 steps down at haproxy's first advert): its
    # gratuitous ARP every second (garp_master_refresh) is what brings the client back. Without it the
    # client stayed on haproxy2's MAC, which no longer held the address: 195 of 300 probes failed.
    assert sum("Sending/queueing gratuitous ARPs" in x for x in events[FIRST]) >= 2, events
    # Each flip of the client's ARP entry resets its kept-alive connections (resent once, as browsers
    # do); a request on a connection too new to be resent fails.
    for measured in (split, joined):
        assert set(measured.errors) <= ABRUPT and measured.failed <= CONNECTIONS, measured


def test_a_probe_that_cannot_run_is_no_split_brain(pair):
    """The notify script as keepalived calls it on becoming master, where arping cannot probe (a
    namespace without lan0: arping exits 2): it logs that the probe failed, at warning, never a split."""
    node = pair.nodes[SECOND]
    mark = len(node.syslog.lines())
    notify = node.conf.with_name("notify-elsewhere")
    notify.write_text(render_notify_script(pair.lb, pair.fleet, SECOND, syslog_socket=str(node.syslog.path)))
    notify.chmod(0o755)
    argv = ["ip", "netns", "exec", pair.client.namespace, str(notify), "INSTANCE", INSTANCE, "MASTER", str(LOW)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    line = node.syslog.wait_for("could not probe 10.0.0.30 for another holder", 5, mark)
    assert line and line.startswith("<28>") and "arping exit 2" in line, node.syslog.lines()[mark:]  # daemon.warning
    assert not [x for x in node.syslog.lines()[mark:] if "split brain" in x]

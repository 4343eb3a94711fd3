"""L1/L3: the HAProxy tier's failure-handling keys (issue 18): validated with their key paths, rendered
into haproxy.cfg as HAProxy spells them, and accepted by the real ``haproxy -c``.

What these settings do under real failures is the lab's business (tests/test_haproxy_tier_lab.py);
here: every key reaches the config, a bad value is refused naming its key, and the defaults keep the
promises the lab test measures (a server that stops answering is out within 2 s).
"""

from __future__ import annotations

import re

import pytest
from support.haproxy_check import haproxy_check

from components.lb.balancer_files import out_of_rotation_bound_ms, render_haproxy_cfg, retries
from components.model import FleetConfigError, load_fleet
from plan.run import load_stack


def lb_with(fleet, **updates):
    lb = fleet.load_balancer
    nested = {
        "health_check": lb.health_check.model_copy(update=updates.pop("health_check", {})),
        "client_limits": lb.client_limits.model_copy(update=updates.pop("client_limits", {})),
    }
    return lb.model_copy(update=nested | updates)


def backend(cfg: str) -> str:
    return cfg[cfg.index("backend webservers") : cfg.index("\nlisten stats")]


def frontend(cfg: str) -> str:
    return cfg[cfg.index("frontend www") : cfg.index("backend webservers")]


def test_the_defaults_render_passive_checks_check_timeout_and_short_timeouts():
    _, fleet = load_stack("dev")  # dev sets none of the new keys: the model's defaults
    cfg = render_haproxy_cfg(fleet.load_balancer, fleet, stats_password="x")
    assert "    timeout check 500ms\n" in backend(cfg)
    assert "default-server check inter 500ms fastinter 200ms fall 2 rise 2\n" in backend(cfg)
    # Passive checks on the active servers only: the backup is the last server left, and one refused
    # connection while it takes over must not take it out (found with prod's real Docker backup).
    lb = fleet.load_balancer
    for name in lb.backends:
        assert re.search(
            rf"^    server {name} \S+ cookie {name} observe layer4 error-limit 1 on-error mark-down$", cfg, re.M
        ), name
    for name in lb.backups:
        assert re.search(rf"^    server {name} \S+ backup$", cfg, re.M), name
    for line in ("timeout connect 500ms", "timeout server 1500ms", "timeout queue 1500ms", "timeout client 30000ms"):
        assert f"    {line}\n" in cfg
    # Three actives: a broken idle connection and a refused one on each, then the backup.
    assert "    retries 7\n" in backend(cfg)
    assert "http-request disable-l7-retry if !METH_GET" in backend(cfg), "a POST is never replayed"
    assert "stick-table" not in cfg and "track-sc0" not in cfg, "dev: no per-client limits"


def test_prod_limits_each_clients_connections_but_not_its_request_rate():
    _, fleet = load_stack("prod")
    lb = fleet.load_balancer
    cfg = render_haproxy_cfg(lb, fleet, stats_password="x")
    front = frontend(cfg)
    assert "stick-table type ip size 100000 expire 30000ms store conn_cur\n" in front
    assert "tcp-request connection track-sc0 src\n" in front
    assert "tcp-request connection reject if { sc_conn_cur(0) gt 100 }\n" in front
    assert "deny_status 429" not in front
    # tcp-request rules before any http-request rule (HAProxy runs them first whatever the order,
    # and warns when they are written after).
    assert front.index("tcp-request") < front.index("http-request")


def test_every_key_reaches_the_config():
    _, fleet = load_stack("prod")
    lb = lb_with(
        fleet,
        health_check={"timeout_ms": 250, "fast_interval_ms": 100, "observe": "layer7", "error_limit": 3},
        client_limits={"connections": 20, "requests": 500, "period_ms": 5000, "table_size": 1000},
    )
    lb = lb.model_copy(update={"health_check": lb.health_check.model_copy(update={"on_error": "sudden-death"})})
    cfg = render_haproxy_cfg(lb, fleet, stats_password="x")
    assert "timeout check 250ms" in cfg
    assert "fastinter 100ms fall 2 rise 2\n" in cfg
    assert " cookie webserver1 observe layer7 error-limit 3 on-error sudden-death\n" in cfg
    assert "stick-table type ip size 1000 expire 30000ms store conn_cur,http_req_rate(5000ms)\n" in cfg
    assert "reject if { sc_conn_cur(0) gt 20 }\n" in cfg
    assert "http-request deny deny_status 429 if { sc_http_req_rate(0) gt 500 }\n" in cfg
    assert retries(lb) == 3 * (3 + 1) + 1
    none = lb_with(fleet, health_check={"observe": "none"}, client_limits={"enabled": False})
    cfg = render_haproxy_cfg(none, fleet, stats_password="x")
    assert " observe " not in cfg and "error-limit" not in cfg and "stick-table" not in cfg
    assert retries(none) == 7


def test_a_table_expires_no_sooner_than_its_rate_window():
    _, fleet = load_stack("prod")
    lb = lb_with(fleet, client_limits={"requests": 10, "period_ms": 60000})
    assert "expire 60000ms store conn_cur,http_req_rate(60000ms)" in render_haproxy_cfg(lb, fleet, stats_password="x")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_checks_take_a_silent_server_out_within_2s(stack):
    _, fleet = load_stack(stack)
    assert out_of_rotation_bound_ms(fleet.load_balancer) <= 2000


def test_the_bound_counts_the_connect_timeout_that_caps_a_check():
    _, fleet = load_stack("prod")
    lb = lb_with(fleet, health_check={"interval_ms": 1000, "timeout_ms": 1000, "fast_interval_ms": 200})
    assert out_of_rotation_bound_ms(lb) == 1000 + 200 + 2 * 500  # timeout connect 500 ms caps each check
    slow = lb.model_copy(update={"timeouts_ms": {"connect": 2000}})
    assert out_of_rotation_bound_ms(slow) == 1000 + 200 + 2 * 1000


@pytest.mark.real
def test_haproxy_accepts_every_variant(tmp_path):
    _, fleet = load_stack("prod")
    variants = [
        lb_with(fleet),
        lb_with(fleet, health_check={"observe": "layer7", "on_error": "fail-check"}, client_limits={"requests": 9}),
        lb_with(fleet, health_check={"observe": "none"}, client_limits={"enabled": False}),
    ]
    for i, lb in enumerate(variants):
        cfg = render_haproxy_cfg(lb, fleet, stats_password="x")
        result = haproxy_check(tmp_path / str(i), cfg)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr


def _lb(values: dict) -> dict:
    return values["loadBalancer"]


@pytest.mark.parametrize(
    ("key", "value", "path", "word"),
    [
        ("healthCheck", {"intervalMs": 500, "timeoutMs": 800}, "healthCheck.timeoutMs", "exceed its interval"),
        ("healthCheck", {"timeoutMs": 0}, "healthCheck.timeoutMs", "greater than or equal"),
        ("healthCheck", {"fastIntervalMs": 5}, "healthCheck.fastIntervalMs", "greater than or equal"),
        ("healthCheck", {"observe": "layer9"}, "healthCheck.observe", "layer4"),
        ("healthCheck", {"errorLimit": 0}, "healthCheck.errorLimit", "greater than or equal"),
        ("healthCheck", {"onError": "reboot"}, "healthCheck.onError", "mark-down"),
        ("clientLimits", {"enabled": True, "connections": 0}, "clientLimits.connections", "greater than or equal"),
        ("clientLimits", {"requests": -5}, "clientLimits.requests", "greater than or equal"),
        ("clientLimits", {"periodMs": 10}, "clientLimits.periodMs", "greater than or equal"),
        ("clientLimits", {"tableSize": "lots"}, "clientLimits.tableSize", "integer"),
        ("clientLimits", {"conections": 5}, "clientLimits.conections", "unknown key"),
    ],
)
def test_a_bad_failure_handling_value_names_its_key(prod_values, key, value, path, word):
    _lb(prod_values)[key] = value
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(prod_values, {"sshPrivateKey"})
    full = f"virtfleet:loadBalancer.{path}"
    matching = [p for p in caught.value.problems if p.path == full]
    assert matching, f"expected a problem at {full}, got:\n{caught.value}"
    assert any(word.lower() in p.message.lower() for p in matching), str(caught.value)

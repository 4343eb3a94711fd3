"""L2/L3: the HAProxy tier as every stack plans it, each artifact checked by its real tool.

L2: what the program registers (the tier, its steps, their order, secrecy, outputs). L3: ``haproxy -c``
on every stack's rendered haproxy.cfg (and an HTTPS variant with a real certificate),
``rsyslogd -N1`` on the syslog snippet, ``shellcheck`` on every script the tier renders.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydantic
import pytest
from conftest import edited_fleet
from support.haproxy_check import certificate_pem, haproxy_check
from support.tools import require_tool

from components.lb.balancer_files import (
    MAXCONN,
    RETRIES,
    frontend_url,
    haproxy_quote,
    out_of_rotation_bound_ms,
    render_haproxy_cfg,
    render_rsyslog_conf,
    render_tmpfiles_conf,
    retries,
    stats_url,
)
from components.lb.tier import render_config_step, render_install_step
from components.lb.web_servers import guest_definition, web_server_step, web_server_steps
from components.remote.scripts import STDIN_RUNNER
from plan.mocks import SECRET_MARK, placeholder
from plan.run import load_stack
from plan.write import machine_files

TIER = "virtfleet:lb:HaproxyTier"
STEP = "virtfleet:remote:RemoteStep"
NASTY_PASSWORD = "pa ss'w\"o$rd#1\\"


@pytest.fixture
def planned(recorded):
    fleet, rec = recorded
    return fleet, rec, machine_files(rec)


def tier_scripts(files: dict[str, str]) -> dict[str, str]:
    """Every script the tier renders in a stack: its steps, and the inner script of OpenVZ guests."""
    return {
        path: text
        for path, text in files.items()
        if ("/steps/haproxy-" in path or "/steps/webserver-" in path or path.endswith("/webserver-httpd.sh"))
    }


def https_variant(fleet):
    lb = fleet.load_balancer
    return lb.model_copy(update={"https": lb.https.model_copy(update={"enabled": True})})


# -- L2 ---------------------------------------------------------------------------------------------


def test_one_tier_whose_config_step_runs_after_the_install_step(planned):
    fleet, rec, _ = planned
    (tier,) = rec.of_type(TIER)
    node = fleet.load_balancer.primary
    install = rec.named(f"{node}-haproxy-install", STEP)
    config = rec.named(f"{node}-haproxy-config", STEP)
    assert install.parent == config.parent == tier.urn
    # Depending on a component means on its children; a component's children register only
    # after it did, so the config step's command waits for the install step's command.
    (install_command,) = [c for c in rec.children(install.urn) if c.type == "command:remote:Command"]
    assert install_command.urn in config.dependencies


def test_config_step_is_secret_and_its_text_masked(planned):
    fleet, rec, _ = planned
    config = rec.named(f"{fleet.load_balancer.primary}-haproxy-config", STEP)
    assert config.inputs["secret"] is True
    masked = config.masked_inputs()
    assert masked["createScript"] == SECRET_MARK
    # Its files as the policy pack sees them, known at preview: the password and the certificate masked.
    cfg = masked["files"]["/etc/haproxy/haproxy.cfg"]
    assert placeholder("random-password") not in str(masked["files"])
    if fleet.load_balancer.stats.enabled:
        assert f"stats auth '{fleet.load_balancer.stats.user}:(secret)'\n" in cfg
    assert set(masked["files"].values()) - {cfg} <= {"(secret)\n"}
    (command,) = [c for c in rec.children(config.urn) if c.type == "command:remote:Command"]
    masked = command.masked_inputs()
    assert masked["stdin"] == masked["delete"] == SECRET_MARK
    # The script (stats password, TLS key) travels on stdin; no process's argv ever holds it.
    assert command.inputs["create"] == command.inputs["update"] == STDIN_RUNNER
    assert placeholder("random-password") in command.inputs["stdin"]
    assert placeholder("random-password") not in command.inputs["create"] + command.inputs["delete"]
    assert command.inputs["logging"] == "none"


def test_planned_config_is_the_pure_render(planned):
    """The plan writes the node's haproxy.cfg, and it is exactly what tests and the benchmark run."""
    fleet, _, files = planned
    lb = fleet.load_balancer
    expected = render_haproxy_cfg(lb, fleet, stats_password="(secret)")  # the plan shows no password
    assert files[f"{lb.primary}/etc/haproxy/haproxy.cfg"] == expected
    assert files[f"{lb.primary}/etc/rsyslog.d/haproxy.conf"] == render_rsyslog_conf(lb)


def test_every_web_server_gets_its_named_page(planned):
    fleet, _, files = planned
    lb = fleet.load_balancer
    for name in (*lb.backends, *lb.backups):
        guest = fleet.guest(name)
        docroot = "/usr/local/apache2/htdocs" if guest.type == "docker" else "/var/www/html"
        page = files[f"{name}{docroot}/index.html"]
        assert f"<h1>{name}</h1>" in page
        runs_on = name if guest.type in ("kvm", "xen", "virtualbox") else guest.host
        step_name = "webserver-httpd" if runs_on == name else f"webserver-{name}"
        assert f"{runs_on}/steps/{step_name}.create.sh" in files


def descendants(rec, urn: str) -> list:
    found = rec.children(urn)
    return found + [d for child in found for d in descendants(rec, child.urn)]


def test_web_server_steps_wait_for_their_guest_component_when_it_exists(planned):
    fleet, rec, _ = planned
    guests = {r.name: r.urn for r in rec.resources if r.type.startswith("virtfleet:guest:")}
    waited = 0
    for web in web_server_steps(fleet.load_balancer, fleet):
        step = rec.named(f"{web.runs_on}-{web.step.name}", STEP)
        if web.guest.name in guests:
            # Every resource of the guest (its remote guests' Commands sit one component deeper).
            children = {r.urn for r in descendants(rec, guests[web.guest.name]) if r.custom}
            assert children and children <= set(step.dependencies), web.guest.name
            waited += 1
    assert waited or not guests


# What takes a web server's guest down when the guest changes (a replace or a restart), per guest type.
RECREATED = {
    "kvm": ["libvirt:index/volume:Volume", "libvirt:index/domain:Domain"],  # its disk, then the domain
    "docker": ["docker:index/container:Container"],
    "xen": ["command:remote:Command"],  # the remote guests' lifecycle steps
    "openvz": ["command:remote:Command"],
    "virtualbox": ["command:remote:Command"],
}


def test_a_web_servers_guest_changes_between_its_drains_and_its_ready_steps(planned):
    """The roll covers the guest itself: the resource that would take it down waits for the server's
    drain step on every balancer node (and nothing else of the guest does), and the ready steps wait
    for the server's step, which waits for every resource of the guest."""
    fleet, rec, _ = planned
    lb = fleet.load_balancer
    guests = {r.name: r.urn for r in rec.resources if r.type.startswith("virtfleet:guest:")}
    seen = set()
    for web in web_server_steps(lb, fleet):
        if web.guest.name not in guests:
            continue
        drains = {c.urn for n in lb.nodes for c in descendants(rec, rec.named(f"{n}-drain-{web.guest.name}", STEP).urn)}
        assert drains, web.guest.name
        gated = [r for r in descendants(rec, guests[web.guest.name]) if r.custom and drains & set(r.dependencies)]
        assert [r.type for r in gated] == RECREATED[web.guest.type], (web.guest.name, [r.name for r in gated])
        assert all(drains <= set(r.dependencies) for r in gated)
        step = {c.urn for c in descendants(rec, rec.named(f"{web.runs_on}-{web.step.name}", STEP).urn) if c.custom}
        for node in lb.nodes:
            assert step and step <= set(rec.named(f"{node}-ready-{web.guest.name}", STEP).dependencies)
        seen.add(web.guest.type)
    assert seen == {g.type for g in fleet.guests if g.name in guests and g.name in (*lb.backends, *lb.backups)}


def test_outputs_name_the_frontend_and_stats(planned):
    fleet, rec, _ = planned
    lb = fleet.load_balancer
    scheme = "https" if lb.https.enabled else "http"  # staging and prod serve HTTPS, dev plain HTTP
    assert rec.outputs["frontendUrl"] == f"{scheme}://{lb.frontend.address}/"
    assert rec.outputs["statsUrl"].startswith(f"{scheme}://")
    assert rec.outputs["statsUrl"].endswith(f":{lb.stats_bind.port}{lb.stats.uri}")
    # The credentials are secret outputs (the recording masks secrets).
    assert rec.outputs["statsUser"] == rec.outputs["statsPassword"] == SECRET_MARK


# -- L3 ---------------------------------------------------------------------------------------------


@pytest.mark.real
def test_haproxy_accepts_every_stacks_config(planned, tmp_path):
    fleet, _, files = planned
    result = haproxy_check(tmp_path, files[f"{fleet.load_balancer.primary}/etc/haproxy/haproxy.cfg"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout + result.stderr


@pytest.mark.real
def test_haproxy_accepts_a_password_with_every_metacharacter(tmp_path):
    _, fleet = load_stack("prod")
    result = haproxy_check(tmp_path, render_haproxy_cfg(fleet.load_balancer, fleet, stats_password=NASTY_PASSWORD))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.real
def test_haproxy_accepts_the_https_config_with_a_real_certificate(tmp_path):
    """HTTPS as the config step checks it: the step's own certificate file under a rewritten crt-base."""
    _, fleet = load_stack("prod")
    lb = https_variant(fleet)
    step = render_config_step(lb, fleet, stats_password="x", certificate_pem=certificate_pem())
    cfg = step.files[0].content
    assert "bind 10.0.0.30:443 ssl crt frontend.pem" in cfg
    assert "http-request redirect scheme https code 301 unless { ssl_fc }" in cfg
    assert step.files[1].path == "/etc/haproxy/certs/frontend.pem" and step.files[1].mode == 0o600
    result = haproxy_check(tmp_path, cfg, certificates={"frontend.pem": step.files[1].content})
    assert result.returncode == 0, result.stdout + result.stderr
    # The check is real: a certificate file that is not a PEM is refused.
    broken = haproxy_check(tmp_path / "broken", cfg, certificates={"frontend.pem": "not a certificate\n"})
    assert broken.returncode != 0


@pytest.mark.real
@pytest.mark.parametrize(("transport", "port"), [("tcp", 601), ("udp", 514)])
def test_rsyslog_accepts_the_snippet(tmp_path, transport, port):
    rsyslogd = require_tool("rsyslogd")
    _, fleet = load_stack("prod")
    lb = fleet.load_balancer.model_copy(update={"log_transport": transport})
    snippet = render_rsyslog_conf(lb)
    assert f'input(type="im{transport}" address="127.0.0.1" port="{port}"' in snippet
    (tmp_path / "spool").mkdir()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f'global(workDirectory="{tmp_path / "spool"}")\n{snippet}')
    result = subprocess.run([rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()


@pytest.mark.real
def test_haproxy_accepts_the_udp_logging_config(tmp_path):
    _, fleet = load_stack("prod")
    lb = fleet.load_balancer.model_copy(update={"log_transport": "udp"})
    cfg = render_haproxy_cfg(lb, fleet, stats_password="x")
    assert "\nring " not in cfg
    result = haproxy_check(tmp_path, cfg)
    assert result.returncode == 0 and "[WARNING]" not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.real
def test_shellcheck_passes_every_tier_script(planned, tmp_path):
    shellcheck = require_tool("shellcheck")
    fleet, _, files = planned
    scripts = tier_scripts(files)
    https = https_variant(fleet)
    scripts["https/haproxy-config.create.sh"] = render_config_step(
        https, fleet, stats_password="x", certificate_pem="PEM"
    ).create
    scripts["https/haproxy-install.create.sh"] = render_install_step(https, fleet).create
    assert any("haproxy-config.create" in p for p in scripts) and any("webserver-" in p for p in scripts)
    paths = []
    for i, (name, text) in enumerate(sorted(scripts.items())):
        path = tmp_path / f"{i}-{Path(name).name}"
        path.write_text(text)
        paths.append(str(path))
    result = subprocess.run([shellcheck, "-s", "bash", *paths], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout


def test_a_loopback_stats_page_opens_no_firewall_port():
    """dev binds its stats page to 127.0.0.1: nothing outside the node needs 8404 open."""
    _, fleet = load_stack("dev")
    lb = fleet.load_balancer
    assert lb.stats_bind.address.is_loopback
    step = render_install_step(lb, fleet)
    assert f"vf_ports=({lb.frontend.port}/tcp)" in step.create, step.create
    assert f"{lb.stats_bind.port}/tcp" not in step.create + step.delete


def test_with_https_the_stats_page_is_https_too():
    """Basic auth over plain HTTP would show the stats password to the network."""
    _, fleet = load_stack("prod")
    lb = https_variant(fleet)
    cfg = render_haproxy_cfg(lb, fleet, stats_password="x")
    assert f"bind {lb.stats_bind.address}:{lb.stats_bind.port} ssl crt frontend.pem\n" in cfg
    assert stats_url(lb, fleet).startswith(f"https://{lb.stats_bind.address}:{lb.stats_bind.port}/")


# -- L1: the tier's URLs and its out-of-rotation bound, computed by hand ------------------------------


def prod_with_lb(**changes):
    """prod's tier over plain HTTP, then ``changes`` (prod itself serves HTTPS: the "prod" case)."""

    def edit(values):
        values["loadBalancer"]["https"] = {"enabled": False}
        values["loadBalancer"].update(changes)

    return edited_fleet("prod", edit)


@pytest.mark.parametrize(
    ("changes", "frontend", "stats"),
    [
        ({}, "http://10.0.0.30/", "http://10.0.0.30:8404/stats"),
        ({"https": {"enabled": True}}, "https://10.0.0.30/", "https://10.0.0.30:8404/stats"),
        ({"frontend": {"address": "10.0.0.30", "port": 8080}}, "http://10.0.0.30:8080/", "http://10.0.0.30:8404/stats"),
        ({"https": {"enabled": True}}, "https://10.0.0.30/", "https://10.0.0.30:8404/stats"),
        ({"https": {"enabled": True, "port": 8443}, "stats": {"bind": {"address": "0.0.0.0", "port": 9000},
                                                             "uri": "/haproxy"}},
         "https://10.0.0.30:8443/", "https://10.0.0.30:9000/haproxy"),
        ({"frontend": {"address": "0.0.0.0", "port": 443}, "stats": {"enabled": False}}, "http://10.0.0.30:443/", None),
        ({"frontend": {"address": "0.0.0.0", "port": 80}, "https": {"enabled": True}, "stats": {"enabled": False}},
         "https://10.0.0.30/", None),
        ({"frontend": {"address": "127.0.0.1", "port": 8080}, "stats": {"bind": {"address": "127.0.0.1", "port": 80}},
          "nodes": ["haproxy"], "virtualAddress": None, "vrrp": None},  # one node
         "http://127.0.0.1:8080/", "http://127.0.0.1/stats"),
    ],
    ids=["plain-http", "prod", "frontend-port", "https", "https-port-stats-any", "any-address-no-stats",
         "https-any-address", "loopback"],
)  # fmt: skip
def test_frontend_and_stats_urls(changes, frontend, stats):
    """Default ports are left out, others shown; 0.0.0.0 is reached at the node's own address."""
    fleet = prod_with_lb(**changes)
    lb = fleet.load_balancer
    assert frontend_url(lb, fleet) == frontend
    assert stats_url(lb, fleet) == stats


@pytest.mark.parametrize(
    ("check", "timeouts", "bound"),
    [
        ({"intervalMs": 2000, "fall": 3, "fastIntervalMs": 500, "timeoutMs": 1000}, {"connect": 5000}, 6000),
        ({"intervalMs": 2000, "fall": 3, "fastIntervalMs": 500, "timeoutMs": 1000}, {"connect": 300}, 3900),
        ({"intervalMs": 100, "fall": 1, "fastIntervalMs": 50, "timeoutMs": 100}, {}, 200),
        ({"intervalMs": 400, "fall": 2, "fastIntervalMs": 100, "timeoutMs": 400}, {"connect": 1000}, 1300),
    ],
    ids=["check-timeout", "connect-caps", "fall-1", "interval-caps"],
)
def test_out_of_rotation_bound_is_interval_plus_fastinters_plus_capped_timeouts(check, timeouts, bound):
    """intervalMs + (fall - 1) x fastIntervalMs + fall x min(timeoutMs, connect timeout, intervalMs)."""
    lb = prod_with_lb(healthCheck={"path": "/", **check}, timeoutsMs=timeouts).load_balancer
    assert out_of_rotation_bound_ms(lb) == bound


def test_haproxy_quote_single_quotes_and_refuses_control_characters():
    assert haproxy_quote("it's a pass") == "'it'\\''s a pass'"
    assert haproxy_quote("") == "''"
    for bad in ("a\nb", "tab\there", "nul\x00", "del\x7f", "esc\x1b"):
        with pytest.raises(ValueError, match=r"^an haproxy.cfg value cannot hold control characters \(newline, tab"):
            haproxy_quote(bad)
    assert haproxy_quote("é ü ß") == "'é ü ß'"  # not a control character


def test_rendered_cfg_carries_the_nodes_name_auth_realm_limits_and_log_ring():
    fleet = prod_with_lb()
    lb = fleet.load_balancer
    cfg = render_haproxy_cfg(lb, fleet, stats_password="s3cret'x")
    assert cfg.startswith("# /etc/haproxy/haproxy.cfg on haproxy and haproxy2, rendered by virtfleet")
    assert "    stats realm 'HAProxy Statistics'\n    stats auth 'haproxy:s3cret'\\''x'\n" in cfg
    assert f"    maxconn {MAXCONN}\n" in cfg and MAXCONN == 4096
    assert "hdr Host haproxy.packt.co.uk\n" in cfg
    assert "    log ring@rsyslog local2 info\n" in cfg and "\nring rsyslog\n" in cfg
    udp = prod_with_lb(logTransport="udp")
    udp_cfg = render_haproxy_cfg(udp.load_balancer, udp, stats_password="x")
    assert "ring@" not in udp_cfg and "\nring " not in udp_cfg
    off = prod_with_lb(stats={"enabled": False})
    off_cfg = render_haproxy_cfg(off.load_balancer, off, stats_password=None)
    assert "stats auth" not in off_cfg and ":8404" not in off_cfg
    with pytest.raises(ValueError, match=r"^the stats page is enabled, so it needs a password$"):
        render_haproxy_cfg(lb, fleet, stats_password=None)
    assert "/var/log/haproxy.log" in render_rsyslog_conf(lb)


def test_tmpfiles_recreates_the_admin_socket_directory():
    assert render_tmpfiles_conf().splitlines()[-1] == "d /run/haproxy 0755 root root -"


def test_retries_reach_a_backup_past_every_dead_active_server():
    """backends x (errorLimit + 1, or 2 without observe) + 1, at least RETRIES."""
    lb = prod_with_lb().load_balancer
    assert retries(lb) == max(RETRIES, 3 * (lb.health_check.error_limit + 1) + 1)
    unobserved = prod_with_lb(healthCheck={"path": "/", "observe": "none", "errorLimit": 5}).load_balancer
    assert retries(unobserved) == max(RETRIES, 3 * 2 + 1)  # errorLimit counts only with observe
    many = prod_with_lb(healthCheck={"path": "/", "observe": "layer4", "errorLimit": 5}).load_balancer
    assert retries(many) == 3 * 6 + 1 > RETRIES


def test_a_guests_definition_reruns_its_web_server_step_and_protect_does_not(recorded):
    fleet, _ = recorded
    lb = fleet.load_balancer
    for web in web_server_steps(lb, fleet):
        guest = web.guest
        grown = guest.model_copy(update={"memory_mib": guest.memory_mib + 64})
        protected = guest.model_copy(update={"protect": not getattr(guest, "protect", False)})
        assert web_server_step(grown, lb, fleet).step.digest != web.step.digest, guest.name
        assert web_server_step(protected, lb, fleet).step.digest == web.step.digest, guest.name
        # A later virtfleet's new field, at its default, is the same definition: nothing rolls for it.
        later = pydantic.create_model(f"Later{type(guest).__name__}", __base__=type(guest), future=(int, 0))
        upgraded = later(**guest.model_dump(by_alias=True))
        assert guest_definition(upgraded) == guest_definition(guest), guest.name
        assert guest_definition(upgraded.model_copy(update={"future": 1})) != guest_definition(guest)

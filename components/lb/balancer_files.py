"""The HAProxy tier's files, rendered (pure): haproxy.cfg, the rsyslog snippet, URLs.

Every default of the tier sits here, in one documented place; the component (``tier``)
only wires the rendered text into remote steps, and the tests and the benchmark call the same
functions, so what they run is byte for byte what a stack deploys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..model import Fleet, LoadBalancer
from ..model.lb import Endpoint
from ..render import render

CONFIG_PATH = "/etc/haproxy/haproxy.cfg"
CERT_DIR = "/etc/haproxy/certs"
CERT_FILE = "frontend.pem"  # certificate chain + key, PEM, as haproxy's `crt` wants it
RSYSLOG_PATH = "/etc/rsyslog.d/haproxy.conf"
LOG_PATH = "/var/log/haproxy.log"
# The seed's syslog wiring: haproxy logs as local2 to rsyslog on the balancer's own loopback
# (LoadBalancer.log_transport: tcp through haproxy's log ring by default, or udp as the seed). The
# seed's port is 514/udp; over TCP it is 601 (IANA's syslog-conn), because EL's SELinux policy
# lets rsyslog bind 601/tcp (syslogd_port_t) while 514/tcp belongs to rsh.
SYSLOG_ADDRESS = "127.0.0.1"
SYSLOG_PORTS = {"udp": 514, "tcp": 601}
SYSLOG_FACILITY = "local2"
LOG_RING = "rsyslog"
LOG_RING_SIZE = 1024 * 1024  # bytes: about 4,000 lines, a few seconds at full load
LOG_MAXLEN = 1024  # haproxy's own default line length for syslog targets
# /run is a tmpfs: a tmpfiles.d entry recreates the stats socket's directory at every boot.
ADMIN_SOCKET = "/run/haproxy/admin.sock"
BACKEND_NAME = "webservers"  # the backend holding the web servers (the roll's drain/ready steps name it)
TMPFILES_PATH = "/etc/tmpfiles.d/virtfleet-haproxy.conf"
# httpd on the balancer node gives these ports up to haproxy (the seed: Listen 80 -> 8080).
HTTPD_MOVES = {80: 8080, 443: 8443}

# Timeouts in milliseconds; LoadBalancer.timeouts_ms overrides any of them (camelCase keys).
# The tier serves a static page from servers on the balancer's own network: a server that has not
# accepted a connection in 1 s or answered in 1.5 s is broken, and the request is retried on another
# server (GET/HEAD) instead of waiting (benchmarks/haproxy_tier.py, chaos table: with 30 s, requests
# to a hung server waited 30 s). A stack that puts slower pages behind the tier raises `server`.
# `connect` also bounds every health check (HAProxy 2.6 ends a check at min(timeout connect, inter)
# even with `timeout check` shorter, as measured in the lab), so it is no longer than a check may take.
DEFAULT_TIMEOUTS_MS = {
    "connect": 500,
    "client": 30000,
    "server": 1500,
    "httpRequest": 10000,
    "httpKeepAlive": 10000,
    "queue": 1500,
}
_TIMEOUT_KEYWORDS = {
    "connect": "connect",
    "client": "client",
    "server": "server",
    "httpRequest": "http-request",
    "httpKeepAlive": "http-keep-alive",
    "queue": "queue",
}
# Failover: a request whose server dies under it is retried up to 3 times, each retry on another
# server (``option redispatch 1``: also for a client pinned by the cookie), on every retryable error:
# refused/reset connections, empty or junk responses, 5xx. Only GET/HEAD are replayed after the
# request reached a server; any other method is retried only when its connection failed.
RETRIES = 3
RETRY_ON = "all-retryable-errors"
# Needs about 2 x maxconn file descriptors; 4096 fits common hard limits (here: 20000).
MAXCONN = 4096


@dataclass(frozen=True)
class Server:
    name: str
    address: str
    port: int
    backup: bool


def haproxy_quote(value: str) -> str:
    """One HAProxy 2.x config word holding ``value`` literally (strong quotes, `'` spliced in).

    HAProxy >= 2.0 reads '...' without any expansion ($VAR, \\x) and joins adjacent quoted parts,
    so `'it'\\''s'` is the word it's. Control characters cannot be represented on one line.
    """
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError("an haproxy.cfg value cannot hold control characters (newline, tab, ...)")
    return "'" + value.replace("'", "'\\''") + "'"


def servers(lb: LoadBalancer, fleet: Fleet) -> list[Server]:
    """Active web servers in config order, then the backups."""
    return [
        Server(name, fleet.machine_address(name), lb.backend_port, backup)
        for names, backup in ((lb.backends, False), (lb.backups, True))
        for name in names
    ]


def _bind(endpoint: Endpoint, port: int | None = None) -> str:
    return f"{endpoint.address}:{port or endpoint.port}"


def retries(lb: LoadBalancer) -> int:
    """At least RETRIES, and enough that one request can find every active server dead and still reach
    a backup: on each server an idle connection that broke (not counted by observe layer4), then
    error-limit refused ones until it is marked down (healthCheck.observe), then one more for the
    backup. In the lab, ``len(backends) + 1`` still failed about one request in 40,000."""
    per_server = lb.health_check.error_limit + 1 if lb.health_check.observe != "none" else 2
    return max(RETRIES, len(lb.backends) * per_server + 1)


def out_of_rotation_bound_ms(lb: LoadBalancer) -> int:
    """The longest the active checks take to mark down a server that stops answering: the next check
    (at most an interval away), then fall - 1 more at fastinter, each ending at its timeout, which
    HAProxy caps at the connect timeout and the interval."""
    check = lb.health_check
    timeout = min(check.timeout_ms, dict(timeouts(lb))["connect"], check.interval_ms)
    return check.interval_ms + (check.fall - 1) * check.fast_interval_ms + check.fall * timeout


def timeouts(lb: LoadBalancer) -> list[tuple[str, int]]:
    merged = DEFAULT_TIMEOUTS_MS | dict(lb.timeouts_ms)
    return [(_TIMEOUT_KEYWORDS[key], merged[key]) for key in DEFAULT_TIMEOUTS_MS]


def render_haproxy_cfg(lb: LoadBalancer, fleet: Fleet, *, stats_password: str | None) -> str:
    """The whole haproxy.cfg for the tier (HAProxy 2.4 and newer: EL9's 2.4/2.8, Debian 12's 2.6).

    ``stats_password`` is the secret's value (None when the stats page is off); the text returned
    is therefore a secret too.
    """
    if lb.stats.enabled and not stats_password:
        raise ValueError("the stats page is enabled, so it needs a password")
    check = lb.health_check
    return render(
        "haproxy.cfg.j2",
        lb=lb,
        node=" and ".join(lb.nodes),
        check_host=f"{lb.primary}.{fleet.domain}",
        frontend_bind=_bind(lb.frontend),
        https_bind=_bind(lb.frontend, lb.https.port) if lb.https.enabled else None,
        stats_bind=_bind(lb.stats_bind) if lb.stats.enabled else None,
        stats_auth=haproxy_quote(f"{lb.stats.user}:{stats_password}") if lb.stats.enabled else None,
        stats_realm=haproxy_quote(lb.stats.realm),
        check=check,
        servers=servers(lb, fleet),
        timeouts=timeouts(lb),
        retries=retries(lb),
        limits=lb.client_limits,
        retry_on=RETRY_ON,
        maxconn=MAXCONN,
        cert_dir=CERT_DIR,
        cert_file=CERT_FILE,
        admin_socket=ADMIN_SOCKET,
        backend=BACKEND_NAME,
        syslog=f"{SYSLOG_ADDRESS}:{SYSLOG_PORTS[lb.log_transport]}",
        facility=SYSLOG_FACILITY,
        log_ring=LOG_RING if lb.log_transport == "tcp" else None,
        log_ring_size=LOG_RING_SIZE,
        log_maxlen=LOG_MAXLEN,
    )


def render_rsyslog_conf(lb: LoadBalancer) -> str:
    """/etc/rsyslog.d/haproxy.conf: 601/tcp or 514/udp on loopback only, local2 -> /var/log/haproxy.log."""
    return render(
        "rsyslog.d-haproxy.conf.j2",
        transport=lb.log_transport,
        address=SYSLOG_ADDRESS,
        port=SYSLOG_PORTS[lb.log_transport],
        facility=SYSLOG_FACILITY,
        log_path=LOG_PATH,
    )


def render_tmpfiles_conf() -> str:
    return render("tmpfiles.d-virtfleet-haproxy.conf.j2", directory=ADMIN_SOCKET.rsplit("/", 1)[0])


def _binds(lb: LoadBalancer) -> list[tuple[Endpoint, int]]:
    binds = [(lb.frontend, lb.frontend.port)]
    if lb.https.enabled:
        binds.append((lb.frontend, lb.https.port))
    if lb.stats.enabled:
        binds.append((lb.stats_bind, lb.stats_bind.port))
    return binds


def balancer_ports(lb: LoadBalancer) -> list[int]:
    """TCP ports haproxy binds on the node (httpd gives up any of them it listens on)."""
    return [port for _, port in _binds(lb)]


def firewall_ports(lb: LoadBalancer) -> list[int]:
    """The ports of ``balancer_ports`` that others reach: a bind on loopback needs no open port."""
    return [port for endpoint, port in _binds(lb) if not endpoint.address.is_loopback]


def _url(scheme: str, endpoint: Endpoint, port: int, fleet: Fleet, lb: LoadBalancer, path: str = "/") -> str:
    # 0.0.0.0 binds every address: a client reaches one node by its own address, a pair by the shared one.
    if not endpoint.address.is_unspecified:
        host = str(endpoint.address)
    else:
        host = str(lb.virtual_address) if lb.pair else fleet.machine_address(lb.primary)
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}{'' if port == default else f':{port}'}{path}"


def frontend_url(lb: LoadBalancer, fleet: Fleet) -> str:
    if lb.https.enabled:
        return _url("https", lb.frontend, lb.https.port, fleet, lb)
    return _url("http", lb.frontend, lb.frontend.port, fleet, lb)


def stats_url(lb: LoadBalancer, fleet: Fleet) -> str | None:
    if not lb.stats.enabled:
        return None
    # With HTTPS on, the stats page is HTTPS too: its Basic-auth password never crosses the wire in clear.
    scheme = "https" if lb.https.enabled else "http"
    return _url(scheme, lb.stats_bind, lb.stats_bind.port, fleet, lb, lb.stats.uri)

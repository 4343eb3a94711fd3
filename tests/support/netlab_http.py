"""The HTTP side of the network lab: the nginx config a lab web server runs, and the parsing of what
``curl`` and ``wrk`` print.

Everything here is pure text in, text out, so ``netlab.py`` stays about namespaces and processes, and
so the parsers can be read (and fixed) next to the formats they parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Response headers through which a lab web server reports what reached it. A proxy in front can
# rewrite the request in ways a client never sees; echoing the headers back is the cheapest way for a
# test to look at the backend's side of the wire without reading the backend's access log.
SEEN_XFF_HEADER = "x-seen-xff"
SEEN_XFP_HEADER = "x-seen-xfp"
SERVED_BY_HEADER = "x-served-by"


def nginx_conf(*, machine: str, port: int, workdir: str) -> str:
    """The whole nginx.conf of one lab web server.

    Every path nginx would otherwise take from its compiled-in defaults (pid, logs, the five temp
    directories) points into ``workdir``: two servers on one host must not share a pid file, and the
    host's own /var/lib/nginx and /run/nginx.pid must stay untouched. ``daemon off`` keeps nginx as
    the child we started, so the lab can stop it by process group. ``user root`` because the workers
    would otherwise run as nobody and could not enter the lab's 0700 temp directory (request bodies
    are buffered there). ``/health`` answers 503 while the file ``workdir/health-fail`` exists (a
    failing health path while every other path answers). Keepalive stays on, as on a real backend,
    so a proxy in front may reuse connections and a killed server breaks them mid-stream like a
    real crash does.
    """
    return f"""\
daemon off;
master_process on;
worker_processes 1;
user root root;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    log_format lab '$remote_addr "$request" $status '
                   'xff="$http_x_forwarded_for" xfp="$http_x_forwarded_proto"';
    access_log {workdir}/access.log lab;
    client_body_temp_path {workdir}/temp/body;
    proxy_temp_path {workdir}/temp/proxy;
    fastcgi_temp_path {workdir}/temp/fastcgi;
    uwsgi_temp_path {workdir}/temp/uwsgi;
    scgi_temp_path {workdir}/temp/scgi;
    keepalive_timeout 65s;
    keepalive_requests 100000;
    default_type text/plain;

    server {{
        listen {port} default_server;
        server_name _;
        add_header X-Served-By {machine} always;
        add_header X-Seen-XFF $http_x_forwarded_for always;
        add_header X-Seen-XFP $http_x_forwarded_proto always;

        location = /health {{
            if (-f {workdir}/health-fail) {{
                return 503 "failing\\n";
            }}
            return 200 "ok\\n";
        }}
        location / {{
            return 200 "served-by: {machine}\\n";
        }}
    }}
}}
"""


@dataclass(frozen=True)
class HttpResponse:
    """One request's outcome as a test wants to assert on it.

    ``status`` is 0 when no HTTP response came back at all (refused, reset, timed out); ``error``
    then holds curl's own message, so a failing assertion that prints the response says why.
    Header names are lower-case; a repeated header's values are joined with ", " (Set-Cookie's are
    in ``cookies`` instead, since joining them would be ambiguous).
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    cookies: dict[str, str] = field(default_factory=dict)
    error: str = ""

    @property
    def served_by(self) -> str | None:
        """The lab web server that answered (its ``X-Served-By``), None if the answer came from elsewhere."""
        return self.headers.get(SERVED_BY_HEADER)


def parse_curl_output(raw: bytes) -> HttpResponse:
    """Split ``curl -i`` output into the final response's status, headers and body.

    Informational blocks (``100 Continue``) are skipped: the response a test cares about is the
    last header block, and the body is everything after it.
    """
    rest = raw
    while True:
        head, sep, body = rest.partition(b"\r\n\r\n")
        if not sep:
            return HttpResponse(status=0, error=f"no HTTP header block in curl output: {raw[:200]!r}")
        lines = head.decode("iso-8859-1").split("\r\n")
        match = re.match(r"HTTP/\S+\s+(\d{3})", lines[0])
        if not match:
            return HttpResponse(status=0, error=f"bad status line: {lines[0]!r}")
        status = int(match.group(1))
        if 100 <= status < 200:
            rest = body
            continue
        break
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "set-cookie":
            cookie_name, _, cookie_value = value.split(";", 1)[0].partition("=")
            cookies[cookie_name.strip()] = cookie_value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return HttpResponse(status, headers, body.decode("utf-8", "replace"), cookies)


@dataclass(frozen=True)
class WrkResult:
    """What one ``wrk`` run reports.

    wrk counts two kinds of failure and nothing else: responses whose status is not 2xx/3xx, and
    socket errors (connect, read, write, timeout). Both are kept apart because they mean different
    things behind a load balancer: a 502/503 is the proxy answering for a dead backend, a read error
    is a connection the proxy itself dropped. ``failures`` adds them up for the common assertion.
    """

    requests: int
    duration_s: float
    requests_per_sec: float
    non_2xx_3xx: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeout_errors: int
    latency_avg_ms: float | None
    latency_max_ms: float | None
    raw: str

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeout_errors

    @property
    def failures(self) -> int:
        return self.non_2xx_3xx + self.socket_errors


_DURATION_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _to_ms(text: str) -> float | None:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(match.group(1)) * _DURATION_TO_MS[match.group(2)] if match else None


def parse_wrk_output(raw: str) -> WrkResult:
    """Read wrk 4.x's plain-text summary; raise ValueError if it is not one (wrk has no JSON output)."""
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", raw, re.M)
    rate = re.search(r"^Requests/sec:\s*([\d.]+)", raw, re.M)
    if not total or not rate:
        raise ValueError(f"not a wrk summary:\n{raw}")
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", raw)
    connect, read, write, timeout = (int(n) for n in sockets.groups()) if sockets else (0, 0, 0, 0)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", raw)
    latency = re.search(r"^\s*Latency\s+(\S+)\s+\S+\s+(\S+)", raw, re.M)
    duration_ms = _to_ms(total.group(2) + total.group(3)) or 0.0
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=duration_ms / 1000.0,
        requests_per_sec=float(rate.group(1)),
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeout_errors=timeout,
        latency_avg_ms=_to_ms(latency.group(1)) if latency else None,
        latency_max_ms=_to_ms(latency.group(2)) if latency else None,
        raw=raw,
    )

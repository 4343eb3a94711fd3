"""What runs on a lab machine: a real web server (nginx), HAProxy, rsyslogd, and the real clients
that exercise them (curl, wrk).

These are methods of ``netlab.Machine`` (through ``ServicesMixin``); they live here to keep
``netlab.py`` about namespaces and processes. Every daemon is started in the foreground under the
lab's process tracking, checked by its own tool first where it has one (``nginx -t``,
``haproxy -c``, ``rsyslogd -N1``) so a bad config fails with the tool's words, and waited for
(bounded) until it listens, so a test's first request never races the daemon's start.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .netlab_http import HttpResponse, WrkResult, nginx_conf, parse_curl_output, parse_wrk_output
from .tools import require_tool

START_TIMEOUT_S = 5.0
HAPROXY_ADMIN_SOCKET = "/run/haproxy/admin.sock"
HAPROXY_LOG = "/var/log/haproxy.log"


class NetLabError(RuntimeError):
    """Something in the lab itself failed (not the system under test); the message carries the output."""


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout`` seconds passed; every lab wait is bounded."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def haproxy_bind_ports(cfg_text: str) -> set[int]:
    """TCP ports the config binds (``bind 10.0.0.10:80``, ``bind :443 ssl …``, ``bind ipv4@*:8404``).

    Unix and abstract sockets are left out: the lab waits for these ports, and those have none.
    """
    ports: set[int] = set()
    for spec in re.findall(r"^\s*bind\s+(\S+)", cfg_text, re.M):
        for item in spec.split(","):
            family, _, address = item.rpartition("@")
            if family not in ("", "ipv4", "ipv6", "tcp", "tcp4", "tcp6") or ":" not in address:
                continue
            port = address.rsplit(":", 1)[1].split("-")[0]
            if port.isdigit():
                ports.add(int(port))
    return ports


def rsyslog_ports(conf: str) -> set[tuple[str, int]]:
    """(proto, port) an rsyslog config listens on: ``input(type="imudp"|"imtcp" … port="N")`` or the
    legacy ``$UDPServerRun N`` / ``$InputTCPServerRun N``. Comment lines are skipped."""
    conf = re.sub(r"^\s*#.*$", "", conf, flags=re.M)
    found = {(kind, int(port)) for kind, port in re.findall(r'input\(\s*type="im(udp|tcp)"[^)]*?port="(\d+)"', conf)}
    found |= {("udp", int(port)) for port in re.findall(r"^\$UDPServerRun\s+(\d+)", conf, re.M)}
    found |= {("tcp", int(port)) for port in re.findall(r"^\$InputTCPServerRun\s+(\d+)", conf, re.M)}
    return found


class ServicesMixin:
    """Daemons and clients on a machine; needs ``run``, ``popen``, ``stop``, ``path``, ``listening``."""

    _http: subprocess.Popen | None = None
    _http_start: tuple[list[str], int] | None = None
    _haproxy: subprocess.Popen | None = None
    ca_file: str | None = None  # a PEM file curl trusts for https:// URLs (the lab's own certificate)

    # -- web server ---------------------------------------------------------------------------

    def serve_http(self, port: int = 80, name: str | None = None) -> subprocess.Popen:
        """Start nginx on ``port`` answering ``/`` with ``served-by: <name>`` and ``/health`` with 200.

        Responses carry ``X-Served-By`` and echo the request's X-Forwarded-For/-Proto as
        ``X-Seen-XFF``/``X-Seen-XFP`` (see ``netlab_http.nginx_conf``). One web server per machine,
        as in the stack; ``stop_http``/``start_http`` take it down and bring it back.
        """
        if self._http is not None and self._http.poll() is None:
            raise NetLabError(f"{self.name} already serves HTTP")
        nginx = require_tool("nginx")
        workdir = self.workdir / f"nginx-{port}"
        (workdir / "temp").mkdir(parents=True, exist_ok=True)
        conf = workdir / "nginx.conf"
        conf.write_text(nginx_conf(machine=name or self.name, port=port, workdir=str(workdir)))
        # -e: nginx opens its compiled-in error log before reading the config; keep that in the lab.
        argv = [nginx, "-e", str(workdir / "error.log"), "-p", str(workdir), "-c", str(conf)]
        self.run([*argv, "-t", "-q"])
        self._http_start = (argv, port)
        return self.start_http()

    def start_http(self) -> subprocess.Popen:
        """(Re)start the web server set up by ``serve_http`` and wait until ``/health`` answers 200."""
        if self._http_start is None:
            raise NetLabError(f"{self.name}: serve_http() first")
        argv, port = self._http_start
        proc = self._http = self.popen(argv, label=f"nginx-{port}")
        url = f"http://127.0.0.1:{port}/health"
        self._await_start(proc, lambda: self.http_get(url, timeout=1).status == 200, f"nginx on :{port}")
        return proc

    def stop_http(self, kill: bool = False) -> None:
        """Stop the web server: SIGTERM, or with ``kill=True`` SIGKILL to master and worker (a crash)."""
        if self._http is not None:
            self.stop(self._http, kill=kill)

    def signal_http(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the web server's master and workers, and return at once."""
        if self._http is not None:
            os.killpg(self._http.pid, sig)

    def pause_http(self, paused: bool = True) -> None:
        """SIGSTOP (or SIGCONT) the web server's master and worker: a hung application. The kernel
        still completes connections into the listen backlog, but nothing ever answers them."""
        self.signal_http(signal.SIGSTOP if paused else signal.SIGCONT)

    def fail_health(self, failing: bool = True, port: int = 80) -> None:
        """Make ``/health`` answer 503 (or 200 again) while every other path keeps answering 200."""
        flag = self.workdir / f"nginx-{port}" / "health-fail"
        if failing:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def http_access_log(self, port: int = 80) -> str:
        """The web server's access log: ``addr "request" status xff="…" xfp="…"`` per request."""
        log = self.workdir / f"nginx-{port}" / "access.log"
        return log.read_text() if log.exists() else ""

    # -- haproxy -------------------------------------------------------------------------------

    def run_haproxy(self, cfg_text: str, binary: str | None = None) -> subprocess.Popen:
        """Check ``cfg_text`` with ``haproxy -c`` and run it unchanged as master-worker in the foreground.

        The config is never edited; the machine is made to fit it instead. Its ``pidfile`` and
        ``stats socket`` land in this machine's private /run (``path()`` finds them), their
        directories and the ``chroot`` directory are created if missing (the chroot one on the host:
        it is only entered, never written). ``user``/``group`` need Debian's haproxy user, which the
        package creates. ``log 127.0.0.1:514`` goes to this machine's own loopback, where
        ``run_rsyslog`` can receive it. ``binary``: haproxy under another path (its process name).
        """
        haproxy = binary or require_tool("haproxy")
        for directory in re.findall(r"^\s*chroot\s+(\S+)", cfg_text, re.M):
            self.path(directory).mkdir(parents=True, exist_ok=True)
        for file in re.findall(r"^\s*(?:pidfile|stats\s+socket)\s+(/\S+)", cfg_text, re.M):
            self.path(file).parent.mkdir(parents=True, exist_ok=True)
        workdir = self.workdir / "haproxy"
        workdir.mkdir(exist_ok=True)
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(cfg_text)
        check = self.run([haproxy, "-c", "-f", str(cfg)], check=False)
        if check.returncode != 0:
            raise NetLabError(f"haproxy -c rejected the config:\n{check.stdout}{check.stderr}")
        proc = self._haproxy = self.popen([haproxy, "-W", "-db", "-f", str(cfg)], label="haproxy")
        ports = haproxy_bind_ports(cfg_text)
        self._await_start(proc, lambda: ports <= self.listening(), f"haproxy (ports {sorted(ports)})")
        return proc

    def stop_haproxy(self, kill: bool = False) -> None:
        if self._haproxy is not None:
            self.stop(self._haproxy, kill=kill)

    def haproxy_command(self, command: str, socket_path: str = HAPROXY_ADMIN_SOCKET) -> str:
        """Send one runtime-API command (``show stat``, ``disable server web/web1``); return the answer.

        The socket is a file in this machine's private /run; a Unix socket is reached by path, not
        through the network, so the test process connects to it directly.
        """
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(self.path(socket_path)))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    # -- rsyslog -------------------------------------------------------------------------------

    def run_rsyslog(self, conf_snippet: str) -> subprocess.Popen:
        """Run a real rsyslogd whose whole config is ``conf_snippet`` (plus a private work directory).

        The snippet is used unchanged: a rule writing /var/log/haproxy.log writes this machine's
        private /var/log, which ``read_log``/``wait_for_log`` read.
        """
        rsyslogd = require_tool("rsyslogd")
        workdir = self.workdir / "rsyslog"
        (workdir / "spool").mkdir(parents=True, exist_ok=True)
        conf = workdir / "rsyslog.conf"
        conf.write_text(f'global(workDirectory="{workdir / "spool"}")\n{conf_snippet}\n')
        check = self.run([rsyslogd, "-N1", "-f", str(conf)], check=False)
        if check.returncode != 0:
            raise NetLabError(f"rsyslogd -N1 rejected the config:\n{check.stdout}{check.stderr}")
        argv = [rsyslogd, "-n", "-f", str(conf), "-i", str(workdir / "rsyslogd.pid")]
        proc = self.popen(argv, label="rsyslogd")
        ports = rsyslog_ports(conf_snippet)
        self._await_start(
            proc,
            lambda: all(port in self.listening(proto) for proto, port in ports),
            f"rsyslogd ({', '.join(f'{port}/{proto}' for proto, port in sorted(ports))})",
        )
        return proc

    def read_log(self, path: str = HAPROXY_LOG) -> str:
        """A log file as this machine sees it at ``path``; empty if nothing was logged yet."""
        real = self.path(path)
        return real.read_text(errors="replace") if real.exists() else ""

    def wait_for_log(self, pattern: str, path: str = HAPROXY_LOG, timeout: float = 5.0) -> str:
        """Wait (bounded) until a line matching regex ``pattern`` is in the log; return that line."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.read_log(path).splitlines() if re.search(pattern, line)]
            return bool(found)

        if not wait_until(seen, timeout):
            raise NetLabError(
                f"{self.name}: no line matching {pattern!r} in {path} after {timeout}s:\n{self.read_log(path)[-2000:]}"
            )
        return found[0]

    # -- clients -------------------------------------------------------------------------------

    def http_get(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        cookie_jar: str | os.PathLike | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float = 2,
        extra_args: Sequence[str] = (),
    ) -> HttpResponse:
        """GET ``url`` with curl from this machine; never raises for an HTTP-level failure.

        A refused or timed-out request comes back as ``status=0`` with curl's message in
        ``error``, because "the LB did not answer" is a result tests assert on. ``cookie_jar`` is a
        file curl reads cookies from and writes them back to (persisting a session across calls,
        as a browser would); the cookies this response set are in ``cookies`` either way.
        ``extra_args`` go to curl as they are (``["-k"]`` for a self-signed certificate,
        ``["-X", "HEAD"]``).
        """
        argv = [
            require_tool("curl"),
            "-sS",
            "-i",
            "--noproxy",
            "*",
            "--max-time",
            str(timeout),
            "--connect-timeout",
            str(timeout),
        ]
        for name, value in (headers or {}).items():
            argv += ["-H", f"{name}: {value}"]
        if auth is not None:
            argv += ["-u", f"{auth[0]}:{auth[1]}"]
        if cookie_jar is not None:
            argv += ["-b", str(cookie_jar), "-c", str(cookie_jar)]
        if self.ca_file is not None and url.startswith("https://"):
            argv += ["--cacert", self.ca_file]
        result = self.run([*argv, *extra_args, url], check=False, timeout=timeout + 5, text=False)
        response = parse_curl_output(result.stdout) if result.stdout else HttpResponse(status=0)
        if result.returncode != 0:
            error = result.stderr.decode(errors="replace").strip()
            response = HttpResponse(response.status, response.headers, response.body, response.cookies, error)
        return response

    def wrk(
        self, url: str, duration_s: int, connections: int, threads: int = 1, extra_args: Sequence[str] = ()
    ) -> WrkResult:
        """Load ``url`` with real wrk from this machine for ``duration_s`` seconds; parse its summary.

        wrk's own request timeout stays at its 2 s default unless ``extra_args`` says otherwise;
        the process itself is bounded at ``duration_s + 15`` seconds.
        """
        argv = [
            require_tool("wrk"),
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{int(duration_s)}s",
            *extra_args,
            url,
        ]
        result = self.run(argv, check=False, timeout=duration_s + 15)
        if result.returncode != 0:
            raise NetLabError(f"wrk exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return parse_wrk_output(result.stdout)

    # -- shared --------------------------------------------------------------------------------

    def _await_start(self, proc: subprocess.Popen, ready: Callable[[], bool], what: str) -> None:
        if wait_until(lambda: proc.poll() is not None or ready(), START_TIMEOUT_S) and proc.poll() is None:
            return
        exited = proc.poll()
        self.stop(proc, kill=True)
        state = f"exited {exited}" if exited is not None else f"not ready after {START_TIMEOUT_S}s"
        raise NetLabError(f"{self.name}: {what} {state}; its output:\n{self.log_of(proc)}")

    # Provided by netlab.Machine; declared for readers and type checkers.
    name: str
    workdir: Path
    run: Callable[..., subprocess.CompletedProcess]
    popen: Callable[..., subprocess.Popen]
    stop: Callable[..., None]
    path: Callable[..., Path]
    listening: Callable[..., set[int]]
    log_of: Callable[[subprocess.Popen], str]

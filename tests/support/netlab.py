"""A throwaway lab of machines in network namespaces, for running the HAProxy tier for real.

Why namespaces: the stack's own addresses (10.0.0.10 for the LB, 10.0.0.11-13 for the web servers)
can be used as they are, without touching the host's network, and without a VM. Each machine is a
namespace with one veth into a bridge; the bridge lives in a "switch" namespace of its own, so the
host's root namespace only ever sees the namespaces being created and deleted. The lab has no route
out: whatever a test sends can only reach the lab's machines (or their own 127.0.0.0/8).

Each machine also has a private view of the filesystem for the processes it runs: /run, /var/log
and /etc/haproxy (a copy of the host's) are bind-mounted from the lab's temp dir (in a mount
namespace of their own), so a generated haproxy.cfg with ``pidfile /run/haproxy.pid``,
``stats socket /run/haproxy/admin.sock`` or ``crt /etc/haproxy/certs/site.pem``, or an rsyslog rule
writing /var/log/haproxy.log, runs unchanged without clobbering the host's files or another
machine's. ``Machine.path()`` tells where such a file really is; ``Machine.write_file()`` puts one.

Cleanup is the point of the design: the lab tracks every namespace it created and every process it
started (each in its own process group, so a daemon's workers go with it), and removes them all on
exit, also when the body raised. Should the test process itself be killed (SIGKILL, a CI timeout)
before it can clean up, a small watchdog it leaves behind does the same: it is told each
namespace as it is created and, once the test process is gone, kills what runs inside them,
deletes them and the temp dir.

    with NetLab(new_prefix(), "10.0.0.0/24") as lab:
        web1 = lab.add_machine("web1", ["10.0.0.11/24"])
        web1.serve_http()
        client = lab.add_machine("client", ["10.0.0.50/24"])
        assert client.http_get("http://10.0.0.11/").served_by == "web1"
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lab.net import kill_in

from .netlab_services import NetLabError, ServicesMixin, wait_until
from .tools import require_root, require_tool

__all__ = ["PRIVATE_DIRS", "SEEDED_PRIVATE_DIRS", "Machine", "NetLab", "NetLabError", "new_prefix", "wait_until"]

# Directories each machine gets its own copy of (see the module docstring): empty ones, and ones
# seeded with the host's content so packaged files a config names (/etc/haproxy/errors/503.http)
# are still there, while files a test adds (a TLS certificate) never reach the host.
PRIVATE_DIRS = ("/run", "/var/log")
SEEDED_PRIVATE_DIRS = ("/etc/haproxy",)

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_MAX_PREFIX = 11  # "<prefix>-br" and "<prefix>-<n>" must fit the kernel's 15-character ifname limit

# Proxy variables would make curl send lab requests somewhere else; the lab must never do that.
_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | {"LC_ALL": "C"}


def new_prefix() -> str:
    """A prefix unique enough that labs of concurrent test runs never share a namespace name."""
    return f"vfl-{secrets.token_hex(3)}"


# The watchdog reads namespace names on stdin until EOF, which comes when the lab closes normally
# (then there is nothing left to do) or when the test process dies, whatever killed it.
_WATCHDOG = r"""
namespaces=""
while read -r ns; do namespaces="$namespaces $ns"; done
for ns in $namespaces; do
    [ -e "/run/netns/$ns" ] || continue
    for _ in 1 2 3; do  # a dying master may still fork; three rounds settle it
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        sleep 0.1
    done
    ip netns del "$ns" 2>/dev/null
done
rm -rf -- "$1"
"""


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


class NetLab:
    """A bridge in its own namespace plus the machines plugged into it; a context manager.

    ``prefix`` names everything the lab creates (namespaces ``<prefix>-<machine>``, interfaces
    ``<prefix>-<n>``), so a leftover is recognisable and concurrent labs never collide. ``subnet`` is
    the lab's one L2 network; machine addresses must lie inside it, which catches a typo that
    would otherwise show up as an unexplained timeout.
    """

    def __init__(self, prefix: str | None = None, subnet: str = "10.0.0.0/24") -> None:
        self.prefix = prefix or new_prefix()
        if not _NAME.match(self.prefix) or len(self.prefix) > _MAX_PREFIX:
            raise ValueError(f"prefix {self.prefix!r}: want [a-z][a-z0-9-]*, at most {_MAX_PREFIX} chars")
        self.subnet = ipaddress.ip_network(subnet)
        self.switch_ns = f"{self.prefix}-switch"
        self.bridge = f"{self.prefix}-br"
        self.machines: dict[str, Machine] = {}
        self.namespaces: list[str] = []
        self.tmp = Path()
        self._procs: list[subprocess.Popen] = []
        self._watchdog: subprocess.Popen | None = None
        self._entered = False

    def __enter__(self) -> NetLab:
        require_root()
        for tool in ("ip", "unshare", "mount", "ss"):
            require_tool(tool)
        self._entered = True
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        # Own session: a Ctrl-C to the test's process group must not take the safety net down first.
        self._watchdog = subprocess.Popen(
            ["sh", "-c", _WATCHDOG, "sh", str(self.tmp)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        try:
            self._add_namespace(self.switch_ns)
            self.ip("-n", self.switch_ns, "link", "add", self.bridge, "type", "bridge")
            self.ip("-n", self.switch_ns, "link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        problems = self.close()
        if problems and exc_type is None:
            raise NetLabError("lab cleanup incomplete:\n" + "\n".join(problems))

    def add_machine(self, name: str, addresses: Sequence[str]) -> Machine:
        """Create namespace ``<prefix>-<name>`` with lo up and ``eth0`` on the lab bridge.

        An address without a prefix length gets the subnet's. The veth is created from inside the
        switch namespace with its peer born in the machine's, so it never appears in the root one.
        """
        if not self._entered:
            raise NetLabError("use the lab as a context manager before adding machines")
        if not _NAME.match(name) or name in self.machines or name == "switch":
            raise ValueError(f"machine name {name!r}: want a new [a-z][a-z0-9-]* other than 'switch'")
        interfaces = [self._interface(a) for a in addresses]
        namespace = f"{self.prefix}-{name}"
        port = f"{self.prefix}-{len(self.machines)}"
        self._add_namespace(namespace)
        self.ip("-n", self.switch_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        self.ip("-n", self.switch_ns, "link", "set", port, "master", self.bridge, "up")
        self.ip("-n", namespace, "link", "set", "lo", "up")
        for interface in interfaces:
            self.ip("-n", namespace, "addr", "add", str(interface), "dev", "eth0")
        self.ip("-n", namespace, "link", "set", "eth0", "up")
        machine = Machine(self, name, namespace, interfaces, self.tmp / name)
        self.machines[name] = machine
        return machine

    def ip(self, *args: str) -> str:
        """Run ``ip`` (from the root namespace, which ``-n`` redirects); raise with its output."""
        result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, env=_ENV)
        if result.returncode != 0:
            raise NetLabError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def track(self, proc: subprocess.Popen) -> subprocess.Popen:
        self._procs.append(proc)
        return proc

    @property
    def processes(self) -> list[subprocess.Popen]:
        """Every process started on a lab machine and not yet cleaned up (running or not)."""
        return list(self._procs)

    def close(self, grace: float = 3.0) -> list[str]:
        """Stop every process, delete every namespace, remove the temp dir; return what failed.

        Safe to call twice. Processes get SIGTERM, then SIGKILL after ``grace`` seconds; anything
        still inside a lab namespace afterwards (a child that left its process group) is killed via
        ``ip netns pids`` before the namespace goes, since a namespace with a live process outlives
        its name.
        """
        problems: list[str] = []
        procs, self._procs = self._procs, []
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)  # the group may outlive its leader (nginx workers)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                problems.append(f"pid {proc.pid} survived SIGKILL")
        for namespace in reversed(self.namespaces):
            problems += self._empty_and_delete(namespace)
        self.namespaces = []
        if self.tmp != Path() and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self._watchdog is not None:
            self._watchdog.stdin.close()  # EOF: it re-checks (finding nothing) and exits
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                problems.append("watchdog did not exit")
            self._watchdog = None
        return problems

    def _empty_and_delete(self, namespace: str) -> list[str]:
        kill_in(namespace)
        result = subprocess.run(["ip", "netns", "del", namespace], capture_output=True, text=True, timeout=10)
        return [f"ip netns del {namespace}: {result.stderr.strip()}"] if result.returncode else []

    def _add_namespace(self, namespace: str) -> None:
        assert self._watchdog is not None and self._watchdog.stdin is not None
        self._watchdog.stdin.write(namespace + "\n")  # before it exists: no window where it is unknown
        self._watchdog.stdin.flush()
        self.ip("netns", "add", namespace)
        self.namespaces.append(namespace)

    def _interface(self, address: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        if "/" not in address:
            address = f"{address}/{self.subnet.prefixlen}"
        interface = ipaddress.ip_interface(address)
        if interface.ip not in self.subnet:
            raise ValueError(f"address {address} is outside the lab subnet {self.subnet}")
        return interface


class Machine(ServicesMixin):
    """One machine of the lab: a network namespace plus private /run, /var/log and /etc/haproxy.

    ``run``/``popen`` start commands as if on that machine. The daemons a test needs (nginx, haproxy,
    rsyslogd) and the clients that exercise them (curl, wrk) are in ``ServicesMixin`` (netlab_services.py).
    """

    def __init__(self, lab: NetLab, name: str, namespace: str, interfaces: list, workdir: Path) -> None:
        self.lab = lab
        self.name = name
        self.namespace = namespace
        self.interfaces = interfaces
        self.workdir = workdir
        seeded = [d for d in SEEDED_PRIVATE_DIRS if Path(d).is_dir()]  # a bind needs its mount point
        self._private = {d: workdir / d.strip("/").replace("/", "-") for d in (*PRIVATE_DIRS, *seeded)}
        for directory in seeded:
            shutil.copytree(directory, self._private[directory], symlinks=True)
        for directory in (*self._private.values(), workdir / "logs"):
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def ip(self) -> str:
        """The machine's first address, without prefix length (what a URL or a config wants)."""
        return str(self.interfaces[0].ip)

    def __repr__(self) -> str:
        return f"Machine({self.name!r}, {self.namespace!r}, {[str(i) for i in self.interfaces]})"

    def path(self, path: str | os.PathLike) -> Path:
        """Where a file that processes on this machine see at ``path`` really is on the host."""
        path = Path(path)
        for private, real in self._private.items():
            if path == Path(private) or Path(private) in path.parents:
                return real / path.relative_to(private)
        return path

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> Path:
        """Put a file where this machine's processes see it at ``path`` (a certificate, an error page).

        Only paths inside the machine's private directories are accepted: a test must never write
        into the host's own /etc by accident.
        """
        real = self.path(path)
        if real == Path(path):
            raise NetLabError(f"{path} is not in a private directory of {self.name}: {sorted(self._private)}")
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(content.encode() if isinstance(content, str) else content)
        real.chmod(mode)
        return real

    def command(
        self, argv: Sequence[str], *, binds: dict[str, os.PathLike] | None = None, host_sys: bool = False
    ) -> list[str]:
        """``argv`` wrapped to run inside this machine: its namespace, then its private mounts.

        ``ip netns exec`` already gives the command a mount namespace of its own (slave to the host),
        and ``unshare --mount`` makes sure the bind mounts below never propagate back to the host.
        Every step execs, so the returned process is ``argv`` itself. ``binds`` (mount point ->
        real directory) replaces the machine's private directories; ``host_sys`` enters the
        namespace with ``nsenter --net`` instead, which keeps the host's /sys with its cgroup
        hierarchies (``ip netns exec`` remounts /sys; dockerd needs them).
        """
        binds = self._private if binds is None else binds
        mounts = " && ".join(f'mount -n --bind "${i + 1}" {d}' for i, d in enumerate(binds))
        script = f'{mounts} && shift {len(binds)} && exec "$@"'
        enter = (
            ["nsenter", f"--net=/run/netns/{self.namespace}", "--"]
            if host_sys
            else ["ip", "netns", "exec", self.namespace]
        )
        return [
            *enter,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            *map(str, binds.values()),
            *map(str, argv),
        ]

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 10.0, **kw
    ) -> subprocess.CompletedProcess:
        """Run a short command on this machine and wait (bounded) for it; output captured as text."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("env", _ENV)
        result = subprocess.run(self.command(argv), timeout=timeout, **kw)
        if check and result.returncode != 0:
            raise NetLabError(
                f"{self.name}: {' '.join(map(str, argv))} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def popen(self, argv: Sequence[str], *, label: str | None = None, **kw) -> subprocess.Popen:
        """Start a long-running command on this machine, tracked so the lab's cleanup stops it.

        It gets its own process group (so stopping it reaches its workers too), and by default its
        stdout and stderr go to ``workdir/logs/<label>.log``, where ``log_of`` finds them when it
        fails to start.
        """
        label = label or Path(str(argv[0])).name
        log = self.workdir / "logs" / f"{label}.log"
        with open(log, "ab") as out:
            kw.setdefault("stdout", out)
            kw.setdefault("stderr", subprocess.STDOUT)
            kw.setdefault("env", _ENV)
            kw.setdefault("stdin", subprocess.DEVNULL)
            proc = subprocess.Popen(self.command(argv), start_new_session=True, **kw)
        proc.label = label  # type: ignore[attr-defined]
        return self.lab.track(proc)

    def log_of(self, proc: subprocess.Popen) -> str:
        log = self.workdir / "logs" / f"{getattr(proc, 'label', 'unknown')}.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def stop(self, proc: subprocess.Popen, *, kill: bool = False, grace: float = 3.0) -> None:
        """Stop a process started by ``popen`` and all its group: SIGTERM, or SIGKILL for a crash."""
        _signal_group(proc, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=2)
        _signal_group(proc, signal.SIGKILL)  # workers that outlived a killed master

    def listening(self, proto: str = "tcp") -> set[int]:
        """Ports with a listening (tcp) or bound (udp) socket in this machine's namespace."""
        flag = {"tcp": "-Hltn", "udp": "-Hlun"}[proto]
        out = self.run(["ss", flag]).stdout
        return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}

"""A real sshd on 127.0.0.1 whose sessions act on a throwaway view of this machine's filesystem.

Remote steps are shell scripts that pulumi-command's ``remote.Command`` hands to the remote login
shell (exactly like ``ssh host -- "$script"``) and files that ``remote.CopyToRemote`` uploads over
SFTP. ``LoopbackSshd`` lets a test do the same for real, as root, without changing this machine:

- sshd runs inside ``unshare --mount --pid --uts`` where overlayfs covers /etc, /var, /boot, /usr,
  /srv, /opt, /root, /home and /tmp (lower = the real directory, upper = a tmpfs that dies with
  the namespace) and ``/run`` is a fresh tmpfs. A script that writes ``/etc/sysconfig/...``, ``/var/lib/...`` or
  ``/boot/...`` really writes, but only into the throwaway view.
- It gets a fresh ed25519 host key and client key per instance (never committed); the client pins
  the host key (``StrictHostKeyChecking=yes``) like a stack that pins its hosts' keys.
- ``PATH`` in every session starts with ``tests/fakes/bin`` (stateful fakes of the EL tools that
  cannot run here, see ``tests/fakes/README.md``), set with sshd's ``SetEnv``. The view's
  ``/root/.bashrc`` is an EL default one, because this machine's own (pyenv, cargo) would prepend
  to ``PATH`` in every ``bash -c`` session, as Debian's bash sources it for sshd sessions.
- Killing the ``unshare`` process kills the whole PID namespace (``--kill-child``), so nothing a
  script started outlives the instance and the overlays vanish with the mount namespace; that
  also happens when the Python process dies unexpectedly (``setpriv --pdeathsig``).
- ``run`` is one SSH session per command, as pulumi-command does; ``run_each`` runs several
  probes in one session when a test only needs their results.
- ``netns=`` runs the whole sshd inside ``ip netns exec NETNS`` (the test creates the namespace);
  ``run``/``upload`` then reach its 127.0.0.1 through ``ip netns exec`` as well.
"""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from support.check_mode import checked_create
from support.tools import require_root, require_tool

FAKES_BIN = Path(__file__).resolve().parent.parent / "fakes" / "bin"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Written into the fresh /run of the view; the fakes refuse to run where it is missing.
THROWAWAY_MARKER = "/run/virtfleet-throwaway-view"
# /tmp must stay last: once it is overlaid, later paths under the instance's tmp dir would resolve
# into the overlay instead of the tmpfs holding the layers.
OVERLAID_DIRS = ("/etc", "/var", "/boot", "/usr", "/srv", "/opt", "/root", "/home", "/tmp")
EL_ROOT_BASHRC = """\
# .bashrc

# User specific aliases and functions

alias rm='rm -i'
alias cp='cp -i'
alias mv='mv -i'

# Source global definitions
if [ -f /etc/bashrc ]; then
\t. /etc/bashrc
fi
"""
SSHD_CONFIG = """\
ListenAddress {host}
Port {port}
HostKey "{dir}/host_ed25519"
AuthorizedKeysFile "{dir}/authorized_keys"
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
PermitUserEnvironment no
PidFile none
MaxStartups 64:30:128
MaxSessions 64
Subsystem sftp internal-sftp
SetEnv "PATH={path}"
"""


class RemoteCommandError(subprocess.CalledProcessError):
    """A remote command failed; the message carries its output, which pytest then shows."""

    def __str__(self) -> str:
        return (
            f"remote command exited {self.returncode}: {self.cmd!r}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


class LoopbackSshd:
    """sshd on 127.0.0.1 (optionally inside a network namespace) over a throwaway filesystem view.

    Use as a context manager (``with LoopbackSshd() as sshd: sshd.run("...")``) or through
    ``loopback_sshd_fixture``. Arguments:

    - ``netns``: name of an existing network namespace to run sshd in; ``lo`` is brought up there.
    - ``extra_path``: directories put in front of ``PATH`` in every session (before the fakes).
    - ``fakes``: put ``tests/fakes/bin`` on ``PATH`` (default); ``False`` for the real tools only.
    - ``startup_timeout``: seconds to wait for sshd to accept a session.
    """

    host = "127.0.0.1"
    user = "root"

    def __init__(
        self,
        *,
        netns: str | None = None,
        extra_path: Sequence[str | os.PathLike[str]] = (),
        fakes: bool = True,
        startup_timeout: float = 15.0,
        check_steps: bool = True,
    ) -> None:
        self.netns = netns
        self.path = ":".join([*map(str, extra_path), *([str(FAKES_BIN)] if fakes else []), SYSTEM_PATH])
        self.startup_timeout = startup_timeout
        self.check_steps = check_steps
        self.port = 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._last_probe = "(none)"

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LoopbackSshd:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> LoopbackSshd:
        require_root()
        for tool in ("sshd", "ssh", "sftp", "ssh-keygen", "unshare", "setpriv"):
            require_tool(tool)
        if self.netns is not None:
            require_tool("ip")
        self._dir = Path(tempfile.mkdtemp(prefix="vfh-sshd-"))
        try:
            self._make_keys()
            for _attempt in range(3):  # another process may grab the free port before sshd binds it
                self.port = _free_port() if self.netns is None else 22
                self._write_config()
                if self._launch():
                    return self
                if "Address already in use" not in self.log():
                    break
            log_tail = "\n".join(self.log().splitlines()[-30:])
            raise RuntimeError(
                f"sshd did not accept a session on {self.host}:{self.port} within {self.startup_timeout} s\n"
                f"--- last ssh probe ---\n{self._last_probe}\n--- sshd log (tail) ---\n{log_tail}"
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._kill()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _kill(self) -> None:
        if self._proc is None:
            return
        children = _children(self._proc.pid)
        if self._proc.poll() is None:
            # SIGKILL to unshare fires --kill-child: PID 1 of the namespace (sshd) dies, and with it
            # every process in the namespace; the mount namespace and its overlays go with them.
            self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(timeout=10)
        self._proc = None
        # unshare is gone before its child is: the child's death signal, and the kernel killing the
        # namespace's other processes, follow. Namespace PID 1 exits only once they are all reaped.
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.02)

    # -- public view -----------------------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("LoopbackSshd is not started")
        return self._dir

    @property
    def client_key(self) -> Path:
        """Path of the client's private key (OpenSSH format, mode 0600)."""
        return self.workdir / "client_ed25519"

    @property
    def private_key(self) -> str:
        """The client's private key text, as a stack would put it into ``ConnectionArgs``."""
        return self.client_key.read_text()

    @property
    def host_public_key(self) -> str:
        """The host key line to pin, ``ssh-ed25519 AAAA...`` (no comment)."""
        return " ".join((self.workdir / "host_ed25519.pub").read_text().split()[:2])

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    def connection(self) -> dict[str, object]:
        """Keyword arguments for ``pulumi_command.remote.ConnectionArgs`` reaching this sshd."""
        return {"host": self.host, "port": self.port, "user": self.user, "private_key": self.private_key}

    def log(self) -> str:
        """What sshd wrote to stderr (``-e``) so far."""
        try:
            return (self.workdir / "sshd.log").read_text(errors="replace")
        except (FileNotFoundError, RuntimeError):
            return ""

    def ssh_argv(self, known_hosts: Path | None = None) -> list[str]:
        """The real ``ssh`` invocation up to and including the destination; append ``--`` and a command."""
        return [
            *self._netns_prefix(),
            "ssh",
            *self._client_options(known_hosts),
            "-p",
            str(self.port),
            f"{self.user}@{self.host}",
        ]

    # -- remote actions --------------------------------------------------------------------------

    def run(
        self,
        cmd: str,
        *,
        check: bool = False,
        timeout: float = 60,
        input: str | None = None,
        known_hosts: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the remote login shell, passed as ONE argument as pulumi-command does.

        A create step's command first runs in check mode (``support/check_mode.py``) unless the
        instance was made with ``check_steps=False``."""
        if self.check_steps:
            checked = checked_create(cmd, input, lambda c, i: self._session(c, 2 * timeout, i, known_hosts))
            if checked is not None:
                if check and checked.returncode != 0:
                    raise RemoteCommandError(checked.returncode, cmd, checked.stdout, checked.stderr)
                return checked
        proc = self._session(cmd, timeout, input, known_hosts)
        if check and proc.returncode != 0:
            raise RemoteCommandError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def _session(
        self, cmd: str, timeout: float, input: str | None, known_hosts: Path | None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.ssh_argv(known_hosts), "--", cmd],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )

    def run_each(self, commands: Sequence[str], *, timeout: float = 120) -> list[subprocess.CompletedProcess[str]]:
        """Run several commands one after another in ONE session (one SSH handshake instead of one
        each), each as its own ``bash -c``; returns one result per command, like ``run``."""
        lines = ["vfh_out=$(mktemp) vfh_err=$(mktemp)"]
        for cmd in commands:
            lines.append(
                f'bash -c {shlex.quote(cmd)} </dev/null >"$vfh_out" 2>"$vfh_err"; '
                'printf \'%s:%s:%s\\n\' "$?" "$(base64 -w0 "$vfh_out")" "$(base64 -w0 "$vfh_err")"'
            )
        lines.append('rm -f "$vfh_out" "$vfh_err"')
        proc = self.run("\n".join(lines), check=True, timeout=timeout)
        results = []
        for cmd, line in zip(commands, proc.stdout.splitlines(), strict=True):
            code, out, err = line.split(":")
            decoded = (base64.b64decode(part).decode(errors="replace") for part in (out, err))
            results.append(subprocess.CompletedProcess(cmd, int(code), *decoded))
        return results

    def upload(self, content: str | bytes, remote_path: str, mode: int = 0o644) -> None:
        """Write ``content`` to ``remote_path`` over real SFTP, creating parent directories first."""
        data = content.encode() if isinstance(content, str) else content
        parent = os.path.dirname(remote_path) or "."
        self.run(f"mkdir -p -- {shlex.quote(parent)}", check=True)
        with tempfile.NamedTemporaryFile(dir=self.workdir, delete=False) as local:
            local.write(data)
        local_path = Path(local.name)
        try:
            local_path.chmod(mode)
            # `put -p` carries the local file's mode over exactly (no remote umask applied).
            batch = f"put -p {_sftp_quote(str(local_path))} {_sftp_quote(remote_path)}\n"
            proc = subprocess.run(
                [
                    *self._netns_prefix(),
                    "sftp",
                    "-q",
                    "-b",
                    "-",
                    *self._client_options(None),
                    "-P",
                    str(self.port),
                    f"{self.user}@{self.host}",
                ],
                input=batch,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            local_path.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise RemoteCommandError(proc.returncode, batch.strip(), proc.stdout, proc.stderr)

    def read(self, path: str) -> str:
        """The text of ``path`` as the sessions see it (the throwaway view)."""
        return self.run(f"cat -- {shlex.quote(path)}", check=True).stdout

    def exists(self, path: str) -> bool:
        return self.run(f"test -e {shlex.quote(path)}").returncode == 0

    # -- internals -------------------------------------------------------------------------------

    def _netns_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns is not None else []

    def _client_options(self, known_hosts: Path | None) -> list[str]:
        options = {
            "BatchMode": "yes",
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": str(known_hosts or self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "CheckHostIP": "no",
            "UpdateHostKeys": "no",
            "IdentitiesOnly": "yes",
            "IdentityFile": str(self.client_key),
            "ControlMaster": "no",
            # What Go's x/crypto/ssh (pulumi-command) negotiates; half the handshake time of sntrup761.
            "KexAlgorithms": "curve25519-sha256,curve25519-sha256@libssh.org",
            "ConnectTimeout": "10",
            "LogLevel": "ERROR",
        }
        # -F /dev/null: the invoking user's ~/.ssh/config must not change what the test proves.
        return ["-F", "/dev/null", *(arg for key, value in options.items() for arg in ("-o", f"{key}={value}"))]

    def _make_keys(self) -> None:
        for name in ("host_ed25519", "client_ed25519"):
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"virtfleet-test-{name}",
                    "-f",
                    str(self.workdir / name),
                ],
                check=True,
                capture_output=True,
            )
        (self.workdir / "authorized_keys").write_text((self.workdir / "client_ed25519.pub").read_text())

    def _write_config(self) -> None:
        d = self.workdir
        (d / "sshd_config").write_text(SSHD_CONFIG.format(host=self.host, port=self.port, dir=d, path=self.path))
        # ssh writes and looks up port 22 as the bare address, any other port as [address]:port.
        pattern = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        self.known_hosts.write_text(f"{pattern} {self.host_public_key}\n")
        layers = d / "layers"
        layers.mkdir(exist_ok=True)
        lines = [
            "set -eu",
            f"mount -t tmpfs -o mode=0700 vfh-layers {shlex.quote(str(layers))}",
            # /run: fresh; the layers are bound at /run/vfh-layers (support/check_mode.py reads what
            # the view changed there), before /tmp's overlay hides their path.
            "mount -t tmpfs -o mode=0755 vfh-run /run",
            "mkdir -p -m 0700 /run/vfh-layers",
            f"mount --bind {shlex.quote(str(layers))} /run/vfh-layers",
        ]
        if self.netns is not None:
            lines.append("ip link set lo up")
        for directory in OVERLAID_DIRS:
            if not os.path.isdir(directory):
                continue
            layer = layers / directory.strip("/").replace("/", "_")
            upper, work = shlex.quote(str(layer / "upper")), shlex.quote(str(layer / "work"))
            lines += [
                f"mkdir -p {upper} {work}",
                # The overlay's root takes the upper dir's owner and mode: keep /root 0700, /tmp 1777.
                f"chmod --reference={directory} {upper} && chown --reference={directory} {upper}",
                f"mount -t overlay -o lowerdir={directory},upperdir={upper},workdir={work} vfh-overlay {directory}",
            ]
        lines += [
            "mkdir -p -m 0755 /run/sshd",
            f": > {THROWAWAY_MARKER}",
            f"printf '%s' {shlex.quote(EL_ROOT_BASHRC)} > /root/.bashrc",
            f"exec /usr/sbin/sshd -D -e -f {shlex.quote(str(d / 'sshd_config'))}",
        ]
        (d / "namespace-setup.sh").write_text("\n".join(lines) + "\n")

    def _launch(self) -> bool:
        """Start sshd; True once a real session ran ``true``, False if sshd died first."""
        self._kill()
        log = (self.workdir / "sshd.log").open("wb")
        # setpriv --pdeathsig: unshare (and so the namespace) dies with the thread that started it,
        # even if pytest itself is killed; start it from a thread that outlives it (fixtures do).
        argv = [
            *self._netns_prefix(), "setpriv", "--pdeathsig", "KILL",
            "unshare", "--mount", "--propagation", "private", "--uts",
            "--pid", "--fork", "--kill-child", "--mount-proc",
            "/bin/sh", str(self.workdir / "namespace-setup.sh"),
        ]  # fmt: skip
        with log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if "Server listening on" in self.log():
                probe = self.run("true", timeout=10)
                if probe.returncode == 0:
                    return True
                self._last_probe = f"exit {probe.returncode}: {probe.stderr.strip()}"
                if self._proc.poll() is not None:
                    return False
            time.sleep(0.05)
        return False


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a parent that may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sftp_quote(path: str) -> str:
    """Quote one argument of an sftp batch line (sftp splits on spaces, honours "..." and \\)."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def loopback_sshd_fixture(scope: str = "module", **options: object):
    """A pytest fixture yielding a started ``LoopbackSshd(**options)``; assign it in a test module.

    ``sshd = loopback_sshd_fixture()`` gives each module one throwaway host; use
    ``scope="function"`` when a test needs a pristine view.
    """

    @pytest.fixture(scope=scope)
    def _loopback_sshd() -> Iterator[LoopbackSshd]:
        with LoopbackSshd(**options) as sshd:  # type: ignore[arg-type]
            yield sshd

    return _loopback_sshd

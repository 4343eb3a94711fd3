"""A private PostgreSQL state backend and a provider-free Pulumi project, for tests/test_state_postgres.py
and benchmarks/state_backend.py.

StateDb runs engine/backend-db.sh (what `make backend-db` runs) in a fresh directory under /tmp on a free
port of 127.0.0.1, and stops it and removes the directory on close(): nothing is left behind.
StateProject is a copy of tests/support/state_program run through engine/pulumi (the real CLI that
`make engine` built) with its own HOME, passphrase file and PULUMI_BACKEND_URL.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from support.pulumi_sdk import pinned_python_sdk_module

ROOT = Path(__file__).resolve().parents[2]
BACKEND_DB = ROOT / "engine" / "backend-db.sh"
WRAPPER = ROOT / "engine" / "pulumi"
PROGRAM = Path(__file__).resolve().parent / "state_program"
PASSPHRASE = "correct horse battery staple"
LOCKED = re.compile(r"the stack is currently locked by (\d+) lock\(s\)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pgbin() -> Path:
    return sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))[-1]


class StateDb:
    """engine/backend-db.sh's cluster in its own directory and port."""

    def __init__(self, netns: str | None = None) -> None:
        """``netns``: run the server in that network namespace (a lab operator's), listening on its
        own 127.0.0.1, where that operator's CLI reaches it; the admin tools use its Unix socket."""
        self.netns = netns
        self.dir = Path(tempfile.mkdtemp(prefix="vf-statedb-"))
        self.dir.chmod(0o711)  # the cluster's owner (postgres) must reach its data directory
        self.port = free_port()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "BACKEND_DB_DIR": str(self.dir),
            "BACKEND_DB_PORT": str(self.port),
        }
        self.url = ""
        self.passfile = Path()

    def script(self, *args: str) -> subprocess.CompletedProcess:
        inside = ["nsenter", f"--net=/run/netns/{self.netns}", "--"] if self.netns else []
        return subprocess.run(
            [*inside, "bash", BACKEND_DB, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def start(self) -> StateDb:
        done = self.script("up")
        assert done.returncode == 0, done.stdout + done.stderr
        exports = dict(re.findall(r"^export (\w+)='([^']*)'$", done.stdout, re.M))
        self.url, self.passfile = exports["PULUMI_BACKEND_URL"], Path(exports["PGPASSFILE"])
        return self

    def close(self) -> None:
        self.script("down")
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, tool: str) -> list[str]:
        """argv of a PostgreSQL client tool (psql, pg_dump, pg_restore) as the cluster's superuser over its
        Unix socket (peer authentication, as engine/backend-db.sh's pg_hba.conf allows)."""
        return [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(pgbin() / tool),
            "-h",
            str(self.dir / "run"),
            "-p",
            str(self.port),
        ]

    def admin(self, tool: str, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*self.client(tool), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def sql(self, query: str) -> list[list[str]]:
        out = self.admin("psql", "-X", "-A", "-t", "-F", "\t", "-d", "pulumi_state", "-c", query).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def rows(self) -> dict[str, str]:
        """Every row of the state table: key -> updated_at (what "touches nothing" compares)."""
        return dict(self.sql("SELECT key, updated_at FROM pulumi_state ORDER BY key"))

    def blob(self, key_suffix: str) -> tuple[str, bytes]:
        """The raw JSON of the row whose key ends with key_suffix, and the bytes it stores (base64 inside)."""
        ((raw,),) = self.sql(f"SELECT data FROM pulumi_state WHERE key LIKE '%{key_suffix}'")
        return raw, base64.b64decode(json.loads(raw)["data"])

    def rewrite(self, key_suffix: str, edit) -> None:
        """Replace the JSON document stored in the row whose key ends with key_suffix by
        ``edit(document)`` (what a CLI killed at that moment would have left there)."""
        raw, stored = self.blob(key_suffix)
        row = json.loads(raw)
        row["data"] = base64.b64encode(json.dumps(edit(json.loads(stored))).encode()).decode()
        update = f"UPDATE pulumi_state SET data = '{json.dumps(row)}' WHERE key LIKE '%{key_suffix}';\n"
        self.admin("psql", "-X", "-q", "-d", "pulumi_state", "-v", "ON_ERROR_STOP=1", stdin=update)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc): the CLI starts each plugin (language host, provider)
    in a process group of its own, so killing the CLI's group does not reach them."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def running_in(directory: Path) -> dict[int, str]:
    """Processes whose working directory is ``directory`` or below (a project's CLI and plugins): pid ->
    command line."""
    found = {}
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if Path(os.readlink(cwd)).is_relative_to(directory):
                command = (cwd.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if command:  # empty: a process exiting right now (a zombie has no command line)
                    found[int(cwd.parent.name)] = command
        except OSError:
            continue
    return found


def kill_tree(proc: subprocess.Popen, settle: float = 10) -> list[int]:
    """SIGKILL the CLI and every process it had started (an operator's machine dying mid-update);
    returns their pids. The tree is first frozen with SIGSTOP until no new process appears below the
    CLI (a plugin forking while we look would otherwise escape), and SIGKILL is asynchronous: it
    waits, at most ``settle`` seconds, until each is gone or a zombie, so callers see the end state."""
    below: list[int] = []
    for _ in range(20):  # bounded: a stopped tree cannot grow, so this settles in two or three passes
        found = [pid for pid in descendants(proc.pid) if pid not in below]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        below += found
    proc.kill()
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline and any(process_alive(pid) for pid in below):
        time.sleep(0.05)
    return below


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has exited; its parent has yet to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def dynamic_provider_script() -> Path:
    """The Python SDK's pulumi-resource-pulumi-python (a shell script running `python -m pulumi.dynamic`),
    from the SDK version requirements.txt pins (the one the language host's executor comes from)."""
    return pinned_python_sdk_module() / "python" / "dist" / "pulumi-resource-pulumi-python"


class StateProject:
    """tests/support/state_program with its own HOME and passphrase, run through engine/pulumi."""

    def __init__(self, path: Path, backend_url: str, passfile: Path | None = None) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROGRAM / "__main__.py", path / "__main__.py")
        (path / "Pulumi.yaml").write_text(
            f"name: statetest\nruntime:\n  name: python\n  options:\n    virtualenv: {ROOT / '.venv'}\n"
        )
        bindir = path / "bin"
        bindir.mkdir()
        provider = bindir / "pulumi-resource-pulumi-python"
        shutil.copy2(dynamic_provider_script(), provider)
        provider.chmod(0o755)
        passphrase = path / "passphrase"
        passphrase.write_text(PASSPHRASE + "\n")
        passphrase.chmod(0o600)
        self.env = {
            "PATH": f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(path),
            "PULUMI_BACKEND_URL": backend_url,
            "PULUMI_CONFIG_PASSPHRASE_FILE": str(passphrase),
        }
        if passfile is not None:
            self.env["PGPASSFILE"] = str(passfile)

    def argv(self, *args: str) -> list[str]:
        return [str(WRAPPER), *args]

    def pulumi(self, *args: str, stdin: str | None = None, check: bool = True, env: dict | None = None):
        done = subprocess.run(
            self.argv(*args),
            cwd=self.path,
            env={**self.env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def popen(self, *args: str) -> subprocess.Popen:
        """A command in the background (kill_tree stops it and every plugin it started)."""
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.path,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def new_stack(self, name: str, token: str, **config: str) -> None:
        self.pulumi("stack", "init", name)
        self.pulumi("config", "set", "--secret", "--stack", name, "token", stdin=token)
        for key, value in config.items():
            self.pulumi("config", "set", "--stack", name, key, value)

    def export(self, stack: str) -> dict:
        return json.loads(self.pulumi("stack", "export", "--stack", stack).stdout)

    def outputs(self, stack: str) -> dict:
        return json.loads(self.pulumi("stack", "output", "--json", "--show-secrets", "--stack", stack).stdout)

    def history(self, stack: str) -> list[dict]:
        return json.loads(self.pulumi("stack", "history", "--json", "--stack", stack).stdout)

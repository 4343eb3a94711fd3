"""Running a machine's checks over SSH: one session per machine, its steps one after another.

The session's command line is fixed; the checks travel on stdin (a script may hold secrets: never
in argv, where every local user reads it). Each step runs in its own subshell with stdin from
/dev/null, its files unpacked into a private temporary directory that is its check's staging
directory (``--check DIR``), removed when the session ends.
"""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from components.remote.scripts import STDIN_RUNNER

from .steps import Check, Target

# The steps' own stdin runner (the script on stdin, never in argv), named for ps.
RUNNER = STDIN_RUNNER.removesuffix(" virtfleet-step") + " virtfleet-drift"
_MARK = "@@virtfleet-drift@@"
_END = re.compile(rf"^{_MARK} (\d+) exit (\d+)$")


@dataclass(frozen=True)
class StepOutcome:
    index: int
    code: int
    lines: list[str]


@dataclass(frozen=True)
class MachineOutcome:
    """What one session found: each step's outcome, or why the machine could not be checked."""

    steps: dict[int, StepOutcome]
    unreachable: str | None = None
    error: str | None = None


def _b64(text: str) -> str:
    return base64.encodebytes(text.encode()).decode()


def bundle(checks: list[tuple[int, Check, str]]) -> str:
    """The session's script: for each (index, check, script to run) its files, its check, its exit."""
    out = [
        "set +e",
        "vf_root=$(mktemp -d) || exit 1",
        "trap 'rm -rf \"$vf_root\"' EXIT",
        'vf_unpack() { mkdir -p "$(dirname "$1")" && base64 -d > "$1"; }',
    ]
    for index, check, script in checks:
        staging = f"$vf_root/{index}"
        out.append(f'mkdir -p "{staging}"')
        for path, content in sorted(check.files.items()):
            rel = PurePosixPath(path).relative_to("/")
            out.append(f"vf_unpack \"{staging}\"/{shlex.quote(str(rel))} <<'B64'\n{_b64(content)}B64")
        out.append(f"vf_s=$(base64 -d <<'B64'\n{_b64(script)}B64\n)")
        out.append(f"echo {_MARK} {index} begin")
        out.append(f'( set -- --check "{staging}"; eval "$vf_s" ) </dev/null 2>&1')
        out.append(f"echo {_MARK} {index} exit $?")
    return "\n".join(out) + "\n"


def _options(target: Target, known_hosts: Path, identity: Path | None, timeout: int) -> list[str]:
    argv = [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", f"ConnectTimeout={timeout}",
        "-o", "ServerAliveInterval=15", "-o", "LogLevel=ERROR", "-p", str(target.port),
    ]  # fmt: skip
    if identity is not None:
        argv += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    return argv


def ssh_argv(target: Target, known_hosts: Path, identity: Path | None, timeout: int) -> list[str]:
    """ssh to ``target`` (through its jump host, verified the same way) running RUNNER."""
    argv = _options(target, known_hosts, identity, timeout)
    if target.jump is not None:
        jump = [
            *_options(target.jump, known_hosts, identity, timeout),
            "-W",
            "%h:%p",
            f"{target.jump.user}@{target.jump.host}",
        ]
        argv += ["-o", "ProxyCommand=" + shlex.join(jump)]
    return [*argv, f"{target.user}@{target.host}", "--", RUNNER]


def known_hosts_for(targets: list[Target], extra: Path | None) -> str:
    """known_hosts lines: each target's (and jump host's) pinned key, then ``extra``'s lines (the
    operator's own file, for hosts the stack does not pin)."""
    lines = []
    for t in targets:
        for each in (t, t.jump):
            if each is not None and each.host_key:
                pattern = each.host if each.port == 22 else f"[{each.host}]:{each.port}"
                lines.append(f"{pattern} {each.host_key}")
    if extra is not None and extra.is_file():
        lines += extra.read_text().splitlines()
    return "\n".join(dict.fromkeys(lines)) + "\n"


def why_unreachable(stderr: str) -> str:
    text = stderr.strip()
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
        if "No ED25519 host key is known" in text or "No RSA host key is known" in text or "is not known" in text:
            return "its host key is not known: pin it in the stack (hosts[].hostKey) or add it to known_hosts"
        return "its host key does not match the pinned one (Host key verification failed)"
    last = text.splitlines()[-1] if text else "ssh exited 255"
    return last.removeprefix("ssh: ")


def parse_session(stdout: str) -> dict[int, StepOutcome]:
    """Each step's output and exit status from a session running ``bundle``'s script."""
    steps: dict[int, StepOutcome] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(f"{_MARK} ") and line.endswith(" begin"):
            current = []
            continue
        end = _END.match(line)
        if end:
            index = int(end.group(1))
            steps[index] = StepOutcome(index, int(end.group(2)), current or [])
            current = None
        elif current is not None:
            current.append(line)
    return steps


def run_machine(
    target: Target, checks: list[tuple[int, Check, str]], *, known_hosts: Path, identity: Path | None,
    connect_timeout: int, timeout: float, prefix: tuple[str, ...] = (),
) -> MachineOutcome:  # fmt: skip
    """Run ``checks`` on ``target`` in one session; bounded by ``timeout`` seconds. ``prefix``: a
    command that ssh runs under (``ip netns exec NS``: a machine inside a network namespace)."""
    try:
        done = subprocess.run(
            [*prefix, *ssh_argv(target, known_hosts, identity, connect_timeout)],
            input=bundle(checks), capture_output=True, text=True, errors="replace", timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return MachineOutcome({}, error=f"the checks did not finish within {timeout:.0f} s")
    steps = parse_session(done.stdout)
    if not steps and done.returncode == 255:
        return MachineOutcome({}, unreachable=why_unreachable(done.stderr))
    if len(steps) < len(checks):
        tail = "\n".join(done.stderr.strip().splitlines()[-3:])
        return MachineOutcome(
            steps,
            error=f"the session ended after {len(steps)} of {len(checks)} checks"
            f" (exit {done.returncode}) {tail}".strip(),
        )
    return MachineOutcome(steps)


def temporary_known_hosts(text: str) -> Path:
    with tempfile.NamedTemporaryFile("w", prefix="virtfleet-drift-known-hosts-", delete=False) as handle:
        handle.write(text)
    return Path(handle.name)

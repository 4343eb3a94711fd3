"""Every create step a test runs over ``LoopbackSshd`` is first run in check mode (``make drift``).

``LoopbackSshd.run`` hands each create command here (``checked_create``). In one SSH session it
snapshots the view (``SNAPSHOT``), runs the step's check (``as_check_command``: the same script and
stdin with ``--check``), snapshots again, then runs the create itself. The test fails unless

- the check is read-only: the two snapshots are byte-identical (every file the view's overlays and
  /run hold, modes and owners, the fakes' state, links, addresses and the kernel values our steps set);
- the check agrees with the create: "in sync" exactly when the create then reports "unchanged", a
  "would: WHAT (WHY)" line per difference otherwise, and it fails only where the create fails too.

So every step, in every starting state the L4 tests produce, proves its check mode.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable

from components.remote.scripts import STDIN_RUNNER, as_check_command

_CREATE = re.compile(r"^# virtfleet step (\S+) \(create\) on (\S+);", re.M)
_MARK = "@@virtfleet-check-mode@@"
# /run/vfh-layers: the upper layers of the view's overlays (LoopbackSshd binds them there), so this
# lists what the view changed against the real machine. The vzctl fake's cmdline log is the test's
# audit trail of every call (a real vzctl writes none), not the machine's state; __pycache__ is
# Python's cache of the fakes' own modules (a checkout under /tmp is inside the view's overlay).
# The fakes seed a minimal EL install at their first call in a view (fakelib.ensure_minimal_install):
# the machine as it was before any step, not something a check may be blamed for.
SEED = "if command -v rpm >/dev/null; then rpm -q bash >/dev/null 2>&1 || true; fi"
SNAPSHOT = r"""
# Files of 64 MiB and more (a guest's sparse disk) by size and mtime: hashing them would take minutes.
vf_snap() {
  local root=$1; shift
  (cd "$root" && find . "$@" -printf '%p %y %m %U:%G %s %l\n' | LC_ALL=C sort \
    && find . "$@" -type f -size -65536k -print0 | LC_ALL=C sort -z | xargs -0r sha256sum \
    && find . "$@" -type f -size +65535k -printf '%p %T@\n' | LC_ALL=C sort)
}
vf_snap /run/vfh-layers \( -path './*/work' -o -path ./var/upper/log/virtfleet-fakes/cmdlines.log \
  -o -name __pycache__ \) -prune -o
vf_snap /run \( -path ./vfh-layers -o -path ./sshd \) -prune -o
ip -o link show | sed 's/ qlen [0-9]*//'
ip -o addr show | sed -E 's/ (tentative|(valid|preferred)_lft [^ ]+)//g'  # IPv6 DAD ends on its own
sysctl net.ipv4.ip_forward net.ipv4.ip_nonlocal_bind net.ipv4.conf.all.rp_filter \
  net.ipv4.conf.default.proxy_arp net.ipv4.conf.default.send_redirects 2>/dev/null || true
""".strip()


def last_word(lines: list[str], step: str) -> str:
    """What a frame's last line says after ``virtfleet: <machine>/<step> (<action>): ``."""
    for line in reversed(lines):
        if line.startswith("virtfleet: ") and f"/{step} (" in line:
            return line.split("): ", 1)[1] if "): " in line else ""
    return ""


def checked_create(
    command: str, stdin: str | None, session: Callable[[str, str | None], subprocess.CompletedProcess[str]]
) -> subprocess.CompletedProcess[str] | None:
    """Run ``command`` (a create step's, as pulumi-command sends it) after its check; None when
    ``command`` is not a create step's (the caller runs it plainly)."""
    # A secret step's stdin carries its create script to every action (pulumi-command sends one
    # stdin): only the fixed STDIN_RUNNER command line runs it; its delete is in the command text.
    found = _CREATE.search(stdin if stdin is not None and command == STDIN_RUNNER else command)
    if found is None or not command.rstrip().endswith(("virtfleet-step", "virtfleet-step </dev/null")):
        return None
    step = found.group(1)
    # One session (a handshake less per create): the session's stdin (a secret step's script) is
    # read once and fed to both; the snapshots' own errors are not the create's.
    feed = '<<<"$vf_in"' if stdin is not None else "</dev/null"
    probe = "\n".join([
        "vf_in=$(cat; echo .); vf_in=${vf_in%.}" if stdin is not None else ":",
        f"{{\n{SEED}\n{SNAPSHOT}\n}} 2>/dev/null",
        f"echo {_MARK}",
        f"{as_check_command(command)} {feed} 2>&1",
        f'echo "{_MARK} $?"',
        f"{{\n{SNAPSHOT}\n}} 2>/dev/null",
        f"echo {_MARK}",
        f"{command} {feed}",
    ])  # fmt: skip
    session_done = session(f"/bin/bash -c {shlex.quote(probe)}", stdin)
    parts = session_done.stdout.split(f"{_MARK}")
    assert len(parts) == 4, (
        f"the check session broke off (exit {session_done.returncode}):\n{session_done.stdout}\n{session_done.stderr}"
    )
    before, check_out, after, create_out = parts
    code_line, _, after = after.partition("\n")
    code = int(code_line.strip() or 1)
    check_lines = check_out.strip().splitlines()
    report = f"--- check (exit {code}) ---\n{check_out}"
    assert before == after, f"the check of {step} changed the machine:\n{_diff(before, after)}\n{report}"
    created = subprocess.CompletedProcess(
        session_done.args, session_done.returncode, create_out.removeprefix("\n"), session_done.stderr
    )
    create_lines = created.stdout.strip().splitlines()
    if code != 0:
        assert created.returncode != 0, f"the check of {step} failed where its create succeeds:\n{report}"
        return created
    word = last_word(check_lines, step)
    would = [line for line in check_lines if line.startswith("would: ")]
    assert word == ("in sync" if not would else f"drift: {len(would)}"), report
    assert all(re.fullmatch(r"would: .+ \(.*\)", line) for line in would), report
    if created.returncode == 0:
        done = last_word(create_lines, step)
        assert (done == "unchanged") == (word == "in sync"), (
            f"the check of {step} says {word!r}, its create then {done!r}\n{report}\n--- create ---\n{created.stdout}"
        )
    return created


def _diff(before: str, after: str) -> str:
    import difflib

    return "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), "before", "after", lineterm=""))

"""``make drift``'s checks of recorded steps, run against a ``LoopbackSshd`` as the module runs them
(``drift.remote.run_machine``: one SSH session, the host key pinned, the steps in order)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from components.remote.scripts import STAGING, unwrap_command
from drift.check import IN_SYNC, Row, step_row
from drift.remote import known_hosts_for, run_machine
from drift.steps import Check, Target

from .sshd import LoopbackSshd


def drift(sshd: LoopbackSshd, steps: dict, machine: str | None = None, uploads: dict | None = None) -> dict[str, Row]:
    """step name -> its row, for ``steps`` (name -> a RecordedStep or a Command's inputs dict);
    ``uploads``: step name -> [(staging path, text)] of its CopyToRemote siblings (the check gets
    them as the module sends them, in its own staging directory)."""
    target = Target(sshd.host, sshd.port, "root", sshd.host_public_key)
    items = []
    for index, (name, step) in enumerate(steps.items()):
        inputs = step if isinstance(step, dict) else {"create": step.create, "stdin": step.stdin}
        script = inputs.get("stdin") or unwrap_command(inputs["create"])
        assert script, name
        host = machine or getattr(step, "machine", "m")
        staging = f"{STAGING}/{host}/{name}"
        files = {path.removeprefix(staging): text for path, text in (uploads or {}).get(name, ())}
        check = Check(host, name, name, target, script, files, bool(inputs.get("stdin")), False)
        items.append((index, check, script))
    with tempfile.NamedTemporaryFile("w", suffix="-known-hosts") as known:
        known.write(known_hosts_for([target], None))  # the key pinned, as the module pins a stack's
        known.flush()
        prefix = ("ip", "netns", "exec", sshd.netns) if sshd.netns else ()
        outcome = run_machine(
            target, items, known_hosts=Path(known.name), identity=sshd.client_key,
            connect_timeout=10, timeout=300, prefix=prefix,
        )  # fmt: skip
    assert outcome.unreachable is None and outcome.error is None, outcome
    return {check.step: step_row(check, outcome.steps[i].code, outcome.steps[i].lines, False) for i, check, _ in items}


def drifted(rows: dict[str, Row]) -> dict[str, list[str]]:
    """The rows not in sync: step -> its lines (a failed check shows up here too, with its output)."""
    return {name: list(row.lines) for name, row in rows.items() if row.status != IN_SYNC}

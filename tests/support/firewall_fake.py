"""Checks shared by the tests of the firewall-cmd fake (tests/fakes/firewall_cmd.py)."""

from __future__ import annotations

import shlex

from .sshd import LoopbackSshd


def assert_rich_rule_refused(machine: LoopbackSshd, rule: str, code: int, message: str) -> None:
    """``rule`` added at runtime and permanently: each refused with firewalld's exit ``code`` and
    ``Error: message``, and nothing stored in either layer."""
    runtime, permanent, listed = machine.run_each([
        f"firewall-cmd --add-rich-rule={shlex.quote(rule)}",
        f"firewall-cmd --permanent --add-rich-rule={shlex.quote(rule)}",
        "firewall-cmd --list-rich-rules; firewall-cmd --permanent --list-rich-rules",
    ])  # fmt: skip
    assert (runtime.returncode, runtime.stdout, runtime.stderr) == (code, "", f"Error: {message}\n")
    assert (permanent.returncode, permanent.stderr) == (code, f"Error: {message}\n")
    assert listed.stdout == "\n\n"  # nothing stored

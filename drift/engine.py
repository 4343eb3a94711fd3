"""What the engine knows: a read-only refresh of the provider resources, and the deployed scripts.

Both need the Pulumi CLI, the stack's state (its backend and passphrase in the environment, as for
any ``pulumi`` command) and, for the refresh, the provider plugins. Nothing here writes the state:
``refresh --preview-only`` shows what a refresh would record without recording it, and
``stack export`` only reads.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from components.remote.scripts import unwrap_command

# Provider resources a refresh reads back from the machine (pulumi-command's read returns its own
# state, so its resources never drift there: the step checks cover them).
PROVIDERS = ("libvirt:", "docker:")


@dataclass(frozen=True)
class ResourceDrift:
    urn: str
    type: str
    name: str
    what: str  # "deleted" (gone from the machine) or "changed: <properties>"


class EngineUnavailable(Exception):
    """The engine could not answer; the message says why (shown as the provider resources' row)."""


def _run(pulumi: list[str], args: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(
            [*pulumi, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise EngineUnavailable(f"{pulumi[0]} is not installed (make engine)") from None
    except subprocess.TimeoutExpired:
        raise EngineUnavailable(f"pulumi {args[0]} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
        raise EngineUnavailable(f"pulumi {' '.join(args[:2])} exited {done.returncode}: {tail}")
    return done.stdout


def refresh_preview(pulumi: list[str], stack: str, timeout: float = 600) -> list[ResourceDrift]:
    """The provider resources whose machine state differs from the stack's state."""
    out = _run(pulumi, ["refresh", "--preview-only", "--json", "--non-interactive", "--stack", stack], timeout)
    document = json.loads(out)
    found = []
    for step in document.get("steps") or []:
        old = step.get("oldState") or {}
        new = step.get("newState") or {}
        type_ = old.get("type") or new.get("type") or ""
        if not type_.startswith(PROVIDERS):
            continue
        op = step.get("op")
        urn = step.get("urn") or old.get("urn") or ""
        name = urn.rsplit("::", 1)[-1]
        keys = _changed_keys(old, new)
        if op in ("delete", "read-discard", "discard") or (op == "refresh" and not new):
            found.append(ResourceDrift(urn, type_, name, "deleted"))
        elif op in ("update", "refresh") and step.get("diffReasons"):
            found.append(ResourceDrift(urn, type_, name, "changed: " + ", ".join(step["diffReasons"])))
        elif op == "update" or (op == "refresh" and keys):
            found.append(ResourceDrift(urn, type_, name, "changed: " + (", ".join(keys) or "its properties")))
    return found


def _changed_keys(old_state: dict, new_state: dict) -> list[str]:
    """The outputs whose values differ between two states."""
    old, new = old_state.get("outputs") or {}, new_state.get("outputs") or {}
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def deployed_scripts(pulumi: list[str], stack: str, timeout: float = 120) -> dict[str, str]:
    """Command name -> the create script of every remote step as the last deploy ran it (the secret
    ones included: read from the stack's state with --show-secrets, never printed). Names, not URNs:
    a URN spells the parents' types, which the plan's mocks leave out."""
    document = json.loads(_run(pulumi, ["stack", "export", "--show-secrets", "--stack", stack], timeout))
    scripts = {}
    for resource in (document.get("deployment") or {}).get("resources") or []:
        if resource.get("type") != "command:remote:Command":
            continue
        inputs = resource.get("inputs") or {}
        stdin = _plain(inputs.get("stdin"))
        script = stdin if stdin else unwrap_command(_plain(inputs.get("create")) or "")
        if script:
            scripts[resource["urn"].rsplit("::", 1)[-1]] = script
    return scripts


def _plain(value):
    """A value of ``stack export --show-secrets``: secrets are {sig, "plaintext": JSON text}."""
    if isinstance(value, dict) and "plaintext" in value:
        return json.loads(value["plaintext"])
    return value

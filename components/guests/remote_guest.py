"""The remote guest lifecycle shared by guest types without a Pulumi provider (OpenVZ; Xen and
VirtualBox next): the guest is one remote step on its host, tracked in the stack's state.

The pattern (README, "How it is built"):

- **create = update**: one idempotent script (``templates/steps/<type>-<thing>.create.sh.j2``,
  including ``_remote-guest.sh.j2``) that creates the guest when absent, compares every setting the
  tool can change live with what the host reports and changes only what differs, reaches the
  declared power state, and last prints **one JSON line**: the guest as the host sees it (id,
  status, addresses, resources). ``readback`` parses it; the component's outputs come from it, so
  they say what the host did, not what the stack asked for.
- **replace fields**: what the tool cannot change on a live guest (an OpenVZ container's CTID and
  OS template, say) is digested into ``replace_key``, the only value in the Command's ``triggers``;
  pulumi-command marks ``triggers[*]`` replace-on-change, so ``pulumi preview`` shows a replace,
  and the old guest is deleted before the new one is created (it may take the same id). Every other
  change alters only the script text: an update, which re-runs the create script.
- **delete**: self-contained (it runs with the inputs of the last create), stops the guest and
  removes it, or keeps its disk when ``retainDisk`` says so; nothing left is success (a second
  delete says ``unchanged``). ``protect`` makes Pulumi refuse the delete.
- secrets (a root password) go in a step of their own, secret: script on stdin, no logging.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command

from ..remote.scripts import RenderedStep
from ..remote.step import RemoteStep
from ..render import digest


@dataclass(frozen=True)
class GuestLifecycle:
    """A guest's rendered lifecycle step and the fields that force a re-create (name -> value)."""

    step: RenderedStep
    replace_fields: Mapping[str, Any]

    @property
    def replace_key(self) -> str:
        return replace_key(self.replace_fields)


def replace_key(fields: Mapping[str, Any]) -> str:
    """``field=value`` pairs, sorted, plus their digest: readable in a preview's diff, stable."""
    pairs = ",".join(f"{k}={fields[k]}" for k in sorted(fields))
    return f"{pairs};{digest(pairs)}"


def readback(stdout: str | None) -> dict[str, Any] | None:
    """The guest as its host reported it: the last stdout line that is a JSON object, else None
    (a preview, or the plan's mocks, have no stdout)."""
    for line in reversed((stdout or "").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def lifecycle_step(
    lifecycle: GuestLifecycle,
    *,
    connection: command.remote.ConnectionArgs,
    protect: bool,
    opts: pulumi.ResourceOptions,
) -> tuple[RemoteStep, pulumi.Output[dict[str, Any] | None]]:
    """The guest's RemoteStep on its host and its read-back (an Output of the parsed JSON line)."""
    step = lifecycle.step
    remote = RemoteStep(
        step,
        machine=step.machine,
        name=step.name,
        connection=connection,
        replace_key=lifecycle.replace_key,
        protect=protect,
        opts=opts,
    )
    return remote, remote.stdout.apply(readback)


def field_of(state: pulumi.Output[dict[str, Any] | None], key: str, default: Any = None) -> pulumi.Output[Any]:
    """One read-back field as an Output (``default`` when there is no read-back yet)."""
    return state.apply(lambda s: s.get(key, default) if s else default)

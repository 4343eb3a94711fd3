"""The checks of a stack: each remote step's create script, its files and its machine's SSH target."""

from __future__ import annotations

from dataclasses import dataclass

from components.remote.scripts import STAGING
from plan.mocks import PULLED_IMAGE_ID, placeholder, planned_private_key, planned_tls
from plan.run import Recording

# Values the plan's mocks give where a provider or the stack's secrets decide: a step whose script
# holds one renders otherwise when deployed, so the plan's text cannot be compared with the machine.
_PLANNED = (placeholder("x").removesuffix("x"), *planned_tls(), planned_private_key(), "AAAAPLANPLACEHOLDER",
            "AAAAPlannedPublicHalf", PULLED_IMAGE_ID)  # fmt: skip


@dataclass(frozen=True)
class Target:
    """Where a machine's steps run: ``user@host:port``, the pinned host key, the jump host."""

    host: str
    port: int
    user: str
    host_key: str | None
    jump: Target | None = None

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Check:
    machine: str
    step: str
    urn: str  # the step's Command (its state holds the deployed script)
    target: Target
    script: str  # the create script, as the plan renders it
    files: dict[str, str]  # path on the machine -> content: the files a deploy uploads (CopyToRemote)
    secret: bool  # the script embeds files that may hold secrets
    planned: bool  # the script depends on a value only a deploy knows (a secret, a generated key)


def _target(connection: dict) -> Target:
    proxy = connection.get("proxy")
    return Target(
        connection["host"], int(connection.get("port") or 22), connection.get("user") or "root",
        connection.get("hostKey"), _target(proxy) if proxy else None,
    )  # fmt: skip


def checks_of(recording: Recording) -> list[Check]:
    """Every remote step with a create script, in the order the program made them (each machine's
    steps in the order a deploy runs them)."""
    steps = {r.urn: r for r in recording.of_type("virtfleet:remote:RemoteStep")}
    uploads: dict[str, dict[str, str]] = {}  # a step's urn -> its uploaded files, path on the machine -> text
    for copy in recording.of_type("command:remote:CopyToRemote"):
        step = steps.get(copy.parent)
        if step is not None:
            prefix = f"{STAGING}/{step.inputs['machine']}/{step.inputs['step']}"
            path = copy.inputs["remotePath"].removeprefix(prefix)
            uploads.setdefault(copy.parent, {})[path] = copy.inputs["source"]["text"]
    found = []
    for command in recording.of_type("command:remote:Command"):
        step = steps.get(command.parent)
        if step is None or step.inputs.get("drift") is False:  # a roll's drain: an action, no state
            continue
        script = step.inputs["createScript"]
        files = step.inputs.get("files") or {}
        text = script + "".join(files.values())
        found.append(Check(
            machine=step.inputs["machine"], step=step.inputs["step"], urn=command.urn,
            target=_target(command.inputs["connection"]), script=script,
            files=uploads.get(step.urn, {}), secret=bool(step.inputs["secret"]),
            planned=bool(step.inputs["secret"]) or any(value in text for value in _PLANNED),
        ))  # fmt: skip
    return found

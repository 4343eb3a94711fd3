"""Run the program for one stack under the recording mocks; no Pulumi CLI, credentials or hosts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import settings

from components.model import Fleet, FleetConfigError, load_fleet
from components.model.fleet import uses_agent

from .mocks import SECRET_MARK, PlanMocks, RecordingMonitor, ResourceRecord, placeholder

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "virtfleet"


@dataclass
class StackConfig:
    name: str
    values: dict[str, Any]  # key without namespace -> parsed value (secrets: placeholders)
    secret_keys: set[str]
    placeholders: list[str] = field(default_factory=list)  # secrets the file does not hold
    other_keys: dict[str, Any] = field(default_factory=dict)  # full keys of other namespaces

    def pulumi_config(self) -> dict[str, str]:
        """As the Pulumi CLI hands config to a program: ``ns:key`` -> string (objects as JSON)."""
        ours = {f"{NAMESPACE}:{k}": v for k, v in self.values.items()}
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in (self.other_keys | ours).items()}


def read_stack_file(path: Path, stack: str) -> StackConfig:
    """Read ``Pulumi.<stack>.yaml``; ``secure:`` values and the missing SSH key become placeholders."""
    document = yaml.safe_load(path.read_text()) or {}
    values: dict[str, Any] = {}
    secret: set[str] = set()
    others: dict[str, Any] = {}
    for full_key, value in (document.get("config") or {}).items():
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            others[full_key] = value
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[key], secret = placeholder(key), secret | {key}
        else:
            values[key] = value
    config = StackConfig(stack, values, secret, other_keys=others)
    if "sshPrivateKey" not in values and not uses_agent(values):
        # The key is set per user with `pulumi config set --secret`; the plan never has it.
        values["sshPrivateKey"] = placeholder("sshPrivateKey")
        secret.add("sshPrivateKey")
        config.placeholders.append("sshPrivateKey")
    return config


def load_stack(stack: str, path: Path | None = None) -> tuple[StackConfig, Fleet]:
    """Read and validate a stack; raises FleetConfigError with every problem."""
    config = read_stack_file(path or ROOT / f"Pulumi.{stack}.yaml", stack)
    return config, load_fleet(config.values, config.secret_keys, config.other_keys)


def router_id_clashes_with_committed(stack: str, fleet: Fleet, root: Path = ROOT) -> list[str]:
    """The VRRP router id a balancer pair shares with another committed stack's pair on an overlapping
    network (their keepalived instances would take each other's adverts). Stacks that do not validate
    are left to their own `make plan`."""
    from components.model.balancer_pair import router_id_clashes

    fleets = {stack: fleet}
    for path in sorted(root.glob("Pulumi.*.yaml")):
        other = path.name.split(".")[1]
        if other != stack:
            try:
                fleets[other] = load_stack(other, path)[1]
            except FleetConfigError:
                continue
    found = []
    for first, second, why in router_id_clashes(fleets):
        if stack in (first, second):
            found.append(why if stack == second else why.replace(f"stack {first}'s", f"stack {second}'s"))
    return found


@dataclass
class Recording:
    stack: str
    resources: list[ResourceRecord]
    outputs: dict[str, Any]
    warnings: list[str]

    def of_type(self, type_: str) -> list[ResourceRecord]:
        return [r for r in self.resources if r.type == type_]

    def by_urn(self) -> dict[str, ResourceRecord]:
        return {r.urn: r for r in self.resources}

    def children(self, urn: str) -> list[ResourceRecord]:
        return [r for r in self.resources if r.parent == urn]

    def named(self, name: str, type_: str | None = None) -> ResourceRecord:
        found = [r for r in self.resources if r.name == name and (type_ is None or r.type == type_)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r} of type {type_}")
        return found[0]


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_program(
    config: StackConfig, extra: Callable[[], None] | None = None, operator_home: str | None = None
) -> Recording:
    """Run components.program for ``config`` under the recording mocks and return what it registered.

    ``extra`` (tests) registers more resources in the same run, as code outside the model would.
    ``operator_home`` (tests): where the program writes the providers' trust files, as a real run
    does in the home of the machine running it; the plan writes none.
    """
    from components.program import build
    from components.stack.config import load_stack_fleet
    from components.stack.secrets import load_secrets

    handler = _ListHandler()
    logger = logging.getLogger(f"virtfleet.plan.{config.name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    settings.ROOT.set(None)  # a fresh stack per run, so several stacks can run in one process
    mocks = PlanMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(
        mocks, project="virtfleet", stack=config.name, preview=False, logger=logger, monitor=monitor
    )
    pulumi.runtime.set_all_config(config.pulumi_config(), sorted(f"{NAMESPACE}:{k}" for k in config.secret_keys))
    resolved: dict[str, Any] = {}

    async def collect(outputs: dict[str, Any]) -> None:
        for key, value in outputs.items():
            output = pulumi.Output.from_input(value)
            plain = await output.future()
            resolved[key] = SECRET_MARK if await output.is_secret() else plain

    @pulumi.runtime.test
    def program():
        fleet = load_stack_fleet()
        outputs = build(fleet, load_secrets(fleet), operator_home=operator_home)
        if extra is not None:
            extra()
        return pulumi.Output.from_input(asyncio.ensure_future(collect(outputs)))

    program()
    return Recording(config.name, monitor.records, resolved, handler.messages)

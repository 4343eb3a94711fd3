"""The policy pack (policy/) run offline over a Recording: the adapter, not a second copy of the rules.

Each recorded resource becomes the argument objects the Pulumi engine hands a CrossGuard policy
(``ResourceValidationArgs`` per resource, ``StackValidationArgs`` with ``PolicyResource``s for the
stack), with the same read-only, unknown-checking props proxy, and each policy gets the enforcement
level and properties the stack's policy config file gives it (``policy/config/<stack>.json``, the
file ``make preview`` passes with ``--policy-pack-config``), resolved as the engine does: the
policy's own entry, else ``all``, else the policy's default. A policy that raises is reported as a
failure of that policy at its level; the other policies still run.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from .mocks import ResourceRecord
from .run import ROOT, Recording

POLICY_DIR = ROOT / "policy"
if str(POLICY_DIR) not in sys.path:  # the pack imports its rules as the engine runs it: from its own folder
    sys.path.insert(0, str(POLICY_DIR))

from virtfleet_policies import PACK_NAME, POLICIES, SECURITY  # noqa: E402, F401 (SECURITY: for tests)

LEVELS = {level.value: level for level in EnforcementLevel}


@dataclass(frozen=True)
class Finding:
    policy: str
    level: str  # advisory | mandatory (disabled policies report nothing)
    resource: str | None  # URN; None for the stack as a whole
    name: str | None
    type: str | None
    message: str


def config_path(stack: str) -> Path:
    return POLICY_DIR / "config" / f"{stack}.json"


def read_config(path: Path | None) -> dict[str, Any]:
    """A ``--policy-pack-config`` file (JSON); none (no file for the stack) means every policy's default."""
    if path is None or not path.is_file():
        return {}
    document = json.loads(path.read_text())
    known = {p.name for p in POLICIES} | {"all"}
    unknown = sorted(set(document) - known)
    if unknown:
        raise ValueError(f"{path}: no policy named {', '.join(unknown)} in pack {PACK_NAME}")
    return document


def _split(entry: Any) -> tuple[str | None, dict[str, Any]]:
    if entry is None:
        return None, {}
    if isinstance(entry, str):
        return entry, {}
    rest = {k: v for k, v in entry.items() if k != "enforcementLevel"}
    return entry.get("enforcementLevel"), rest


def resolve(policy: Policy, config: dict[str, Any]) -> tuple[EnforcementLevel, dict[str, Any]]:
    """(level, properties) of one policy under a config file: its entry, then ``all``, then its default."""
    own_level, properties = _split(config.get(policy.name))
    all_level, _ = _split(config.get("all"))
    name = own_level or all_level
    level = LEVELS[name] if name else (policy.enforcement_level or EnforcementLevel.ADVISORY)
    if level is EnforcementLevel.REMEDIATE:
        level = EnforcementLevel.MANDATORY  # as the engine reports a violation that remediation left
    schema = policy.config_schema.properties if policy.config_schema else {}
    defaults = {k: v["default"] for k, v in schema.items() if isinstance(v, dict) and "default" in v}
    return level, {**defaults, **properties}


def _provider_urn(reference: str) -> str:
    """A provider reference is ``<urn>::<id>``; the URN is everything before the last ``::``."""
    return reference.rsplit("::", 1)[0] if reference else ""


def _options(record: ResourceRecord) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        record.protect,
        [],
        record.delete_before_replace,
        [],
        PolicyCustomTimeouts(0, 0, 0),
        [],
        record.parent or None,
    )


class Adapter:
    """The recording as the engine would present it to the pack's policies."""

    def __init__(self, recording: Recording):
        self.recording = recording
        self.by_urn = recording.by_urn()

    def props(self, record: ResourceRecord, *, state: bool = False):
        """What a policy reads as the resource's properties: its inputs, as the engine gives a resource
        policy at registration; with ``state``, what the engine holds when a stack policy runs, which
        for a component that registered outputs is those outputs (they replace its inputs)."""
        values = record.outputs if state and not record.custom and record.outputs is not None else record.inputs
        return unknown_checking_proxy(json.loads(json.dumps(values, default=str)))

    def provider(self, record: ResourceRecord) -> PolicyProviderResource | None:
        provider = self.by_urn.get(_provider_urn(record.provider))
        if provider is None:
            return None
        return PolicyProviderResource(provider.type, self.props(provider), provider.urn, provider.name)

    def resource_args(self, record: ResourceRecord, config: dict[str, Any]) -> ResourceValidationArgs:
        return ResourceValidationArgs(
            record.type,
            self.props(record),
            record.urn,
            record.name,
            _options(record),
            self.provider(record),
            config,
        )

    def stack_args(self, config: dict[str, Any]) -> StackValidationArgs:
        resources = {
            r.urn: PolicyResource(
                r.type, self.props(r, state=True), r.urn, r.name, _options(r), self.provider(r), None, [], {}
            )
            for r in self.recording.resources
        }
        for record in self.recording.resources:
            resource = resources[record.urn]
            resource.parent = resources.get(record.parent)
            resource.dependencies = [resources[d] for d in record.dependencies if d in resources]
        return StackValidationArgs(list(resources.values()), config)


def _run(call) -> None:
    result = call()
    if inspect.isawaitable(result):
        asyncio.run(_awaited(result))


async def _awaited(result) -> None:
    await result


def evaluate(recording: Recording, config: dict[str, Any], policies: list[Policy] | None = None) -> list[Finding]:
    """Every violation the pack reports for ``recording`` under ``config`` (a policy config document)."""
    adapter = Adapter(recording)
    findings: list[Finding] = []
    for policy in POLICIES if policies is None else policies:
        level, properties = resolve(policy, config)
        if level is not EnforcementLevel.DISABLED:
            findings += _evaluate_policy(policy, level, properties, adapter)
    return findings


def _evaluate_policy(
    policy: Policy, level: EnforcementLevel, properties: dict[str, Any], adapter: Adapter
) -> list[Finding]:
    findings: list[Finding] = []

    def finding(message: str, urn: str | None) -> Finding:
        record = adapter.by_urn.get(urn or "")
        return Finding(
            policy.name,
            level.value,
            urn,
            record.name if record else None,
            record.type if record else None,
            message,
        )

    def guarded(call, record: ResourceRecord | None) -> None:
        urn = record.urn if record else None
        try:
            _run(call)
        except UnknownValueError as err:  # the engine reports these as advisory diagnostics
            findings.append(replace(finding(str(err), urn), level=EnforcementLevel.ADVISORY.value))
        except Exception as err:  # a bug in one policy must not hide the others, nor stop the plan
            where = f" on {record.type} {record.name}" if record else ""
            findings.append(finding(f"policy {policy.name} failed{where}: {type(err).__name__}: {err}", urn))

    if isinstance(policy, ResourceValidationPolicy):
        for record in adapter.recording.resources:
            args = adapter.resource_args(record, properties)

            def report(message: str, urn: str | None = None, *, default: str = record.urn) -> None:
                findings.append(finding(message, urn or default))

            guarded(lambda args=args, report=report: policy.validate(args, report), record)
    elif isinstance(policy, StackValidationPolicy):
        args = adapter.stack_args(properties)
        guarded(lambda: policy.validate(args, lambda message, urn=None: findings.append(finding(message, urn))), None)
    return findings


def policy_document(stack: str, config_file: Path | None, findings: list[Finding]) -> dict[str, Any]:
    return {
        "stack": stack,
        "pack": PACK_NAME,
        "config": str(config_file.relative_to(ROOT)) if config_file and config_file.is_relative_to(ROOT) else None,
        "violations": [asdict(f) for f in findings],
    }


def write_policy(target: Path, document: dict[str, Any]) -> Path:
    path = target / "policy.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path


def summary_lines(findings: list[Finding], shown_per_policy: int = 2) -> list[str]:
    """Counts per level and policy; every mandatory violation, and the first few advisory ones of each policy."""
    mandatory = [f for f in findings if f.level == "mandatory"]
    advisory = [f for f in findings if f.level == "advisory"]
    lines = [f"policy pack {PACK_NAME}: {len(mandatory)} mandatory, {len(advisory)} advisory violation(s)"]
    for level, group in (("mandatory", mandatory), ("advisory", advisory)):
        for policy in dict.fromkeys(f.policy for f in group):
            of_policy = [f for f in group if f.policy == policy]
            lines.append(f"  {level} {policy}: {len(of_policy)}")
            shown = of_policy if level == "mandatory" else of_policy[:shown_per_policy]
            lines += [f"    {f.message}" for f in shown]
            if len(shown) < len(of_policy):
                lines.append(f"    ... and {len(of_policy) - len(shown)} more like it (policy.json)")
    return lines

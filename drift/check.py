"""One drift check of a stack: validate, render, run every check, read the provider resources."""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from plan.run import ROOT, load_stack, run_program

from . import engine
from .remote import MachineOutcome, known_hosts_for, run_machine, temporary_known_hosts
from .steps import Check, checks_of

IN_SYNC, DRIFT, UNREACHABLE, ERROR, NOT_CHECKED = "in sync", "drift", "unreachable", "error", "not checked"


@dataclass(frozen=True)
class Row:
    machine: str
    item: str  # a step's name, or a provider resource's type and name
    status: str
    lines: tuple[str, ...] = ()  # drift: the would lines; otherwise why


@dataclass
class Report:
    stack: str
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    steps_checked: int = 0

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.status == status)

    @property
    def exit_code(self) -> int:
        """As ``terraform plan -detailed-exitcode``: 1 when something could not be checked (an error,
        an unreachable machine), else 2 when anything drifted, else 0."""
        if self.count(ERROR) or self.count(UNREACHABLE):
            return 1
        return 2 if self.count(DRIFT) else 0


@dataclass(frozen=True)
class Options:
    stack_file: Path | None = None
    identity: Path | None = None
    known_hosts: Path | None = None  # the operator's file, for hosts the stack does not pin
    pulumi: list[str] | None = None  # None: engine/pulumi, else `pulumi` on PATH; [] : no engine
    jobs: int = 8
    connect_timeout: int = 10
    timeout: float = 600.0


def default_pulumi() -> list[str]:
    built = ROOT / "engine" / "pulumi"
    if built.is_file() and os.access(built, os.X_OK):
        return [str(built)]
    found = shutil.which("pulumi")
    return [found] if found else []


def step_row(check: Check, code: int, lines: list[str], deployed: bool) -> Row:
    """A step's row from its check's output (a failed check of a step holding secrets shows no output)."""
    last = next((line for line in reversed(lines) if line.startswith("virtfleet: ")), "")
    would = tuple(line.removeprefix("would: ") for line in lines if line.startswith("would: "))
    note = (
        ("checked against the script of the last deploy (it holds a secret the plan does not have)",)
        if deployed
        else ()
    )
    if code == 0 and last.endswith(": in sync"):
        return Row(check.machine, check.step, IN_SYNC, note)
    if code == 0 and ": drift: " in last:
        return Row(check.machine, check.step, DRIFT, would + note)
    if check.secret or check.planned:
        return Row(
            check.machine,
            check.step,
            ERROR,
            (f"the check failed (exit {code}); its output is withheld: the step holds secrets",),
        )
    return Row(check.machine, check.step, ERROR, (f"the check failed (exit {code}):", *lines[-5:]))


def check_stack(stack: str, options: Options = Options(), say=print) -> Report:
    """Every step of ``stack`` checked on its machine, and its provider resources refreshed
    read-only. Raises FleetConfigError for an invalid stack (nothing is contacted then)."""
    started = time.monotonic()
    config, _fleet = load_stack(stack, options.stack_file)
    checks = checks_of(run_program(config))
    pulumi = default_pulumi() if options.pulumi is None else options.pulumi
    report = Report(stack)

    deployed: dict[str, str] = {}
    state_problem = None
    if any(c.planned for c in checks):
        if not pulumi:
            state_problem = "no Pulumi CLI (make engine) to read the stack's state"
        else:
            try:
                deployed = engine.deployed_scripts(pulumi, stack)
            except engine.EngineUnavailable as err:
                state_problem = str(err)

    per_target: dict[str, list[tuple[int, Check, str]]] = defaultdict(list)
    targets = {}
    for index, check in enumerate(checks):
        script = check.script
        if check.planned:
            script = deployed.get(check.urn.rsplit("::", 1)[-1])
            if script is None:
                why = state_problem or "the stack's state has no such step: it was never deployed"
                report.rows.append(Row(check.machine, check.step, NOT_CHECKED, (
                    f"its script holds a secret the plan does not have, and the stack's state could not be read: {why}",
                )))  # fmt: skip
                continue
        key = f"{check.target}{'+' + str(check.target.jump) if check.target.jump else ''}"
        per_target[key].append((index, check, script))
        targets[key] = check.target

    known_hosts = temporary_known_hosts(known_hosts_for(list(targets.values()), options.known_hosts))
    say(f"drift {stack}: {sum(map(len, per_target.values()))} steps on {len(per_target)} machines"
        f" ({options.jobs} at a time)")  # fmt: skip
    try:
        with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            futures = {
                key: pool.submit(
                    run_machine,
                    targets[key],
                    items,
                    known_hosts=known_hosts,
                    identity=options.identity,
                    connect_timeout=options.connect_timeout,
                    timeout=options.timeout,
                )
                for key, items in per_target.items()
            }
            outcomes: dict[str, MachineOutcome] = {key: f.result() for key, f in futures.items()}
    finally:
        known_hosts.unlink(missing_ok=True)

    for key, items in per_target.items():
        outcome = outcomes[key]
        machines = sorted({c.machine for _, c, _ in items})
        if outcome.unreachable is not None:
            for machine in machines:
                count = sum(1 for _, c, _ in items if c.machine == machine)
                report.rows.append(
                    Row(machine, f"({count} steps)", UNREACHABLE, (f"{targets[key]}: {outcome.unreachable}",))
                )
            continue
        for index, check, _script in items:
            step = outcome.steps.get(index)
            if step is None:
                report.rows.append(Row(check.machine, check.step, ERROR, (outcome.error or "not run",)))
                continue
            report.steps_checked += 1
            report.rows.append(step_row(check, step.code, step.lines, check.planned))

    if not pulumi:
        report.rows.append(Row("(engine)", "provider resources", NOT_CHECKED, ("no Pulumi CLI: make engine",)))
    else:
        try:
            drifted = engine.refresh_preview(pulumi, stack)
        except engine.EngineUnavailable as err:
            report.rows.append(Row("(engine)", "provider resources", NOT_CHECKED, (str(err),)))
        else:
            for d in drifted:
                report.rows.append(Row("(engine)", f"{d.type} {d.name}", DRIFT, (d.what,)))
            if not drifted:
                report.rows.append(Row("(engine)", "provider resources", IN_SYNC, ("pulumi refresh --preview-only",)))
    report.rows.sort(key=lambda r: (r.machine == "(engine)", r.machine))
    report.seconds = time.monotonic() - started
    return report

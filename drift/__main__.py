"""python -m drift STACK: check every machine of a stack against what the stack says (read-only).

Exit status as ``terraform plan -detailed-exitcode``: 0 in sync, 2 drift, 1 error (an invalid
stack, a machine that could not be checked). Writes build/<stack>/drift.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from components.model import FleetConfigError
from plan.run import ROOT

from .check import DRIFT, IN_SYNC, NOT_CHECKED, Options, Report, check_stack

_MARKS = {IN_SYNC: "in sync", DRIFT: "DRIFT", NOT_CHECKED: "not checked"}


def table(report: Report) -> str:
    """The report as a person reads it: machine, step or resource, result; the lines under it."""
    width_m = max([len("MACHINE"), *(len(r.machine) for r in report.rows)])
    width_i = max([len("STEP OR RESOURCE"), *(len(r.item) for r in report.rows)])
    out = [f"{'MACHINE':<{width_m}}  {'STEP OR RESOURCE':<{width_i}}  RESULT"]
    for row in report.rows:
        result = _MARKS.get(row.status, row.status.upper())
        if row.status in (DRIFT,):
            result += f" ({len(row.lines)})" if row.machine != "(engine)" else ""
        out.append(f"{row.machine:<{width_m}}  {row.item:<{width_i}}  {result}")
        if row.status != IN_SYNC:
            out += [f"{'':<{width_m}}    {line}" for line in row.lines]
    drifted = report.count(DRIFT)
    out.append(
        f"\n{report.steps_checked} steps checked in {report.seconds:.1f} s: "
        + ", ".join(f"{report.count(s)} {s}" for s in (IN_SYNC, DRIFT, "unreachable", "error", NOT_CHECKED))
        + (f"\n{drifted} drifted." if drifted else "")
    )
    return "\n".join(out)


def as_json(report: Report) -> dict:
    return {
        "stack": report.stack,
        "checkedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(report.seconds, 2),
        "stepsChecked": report.steps_checked,
        "exitCode": report.exit_code,
        "rows": [
            {"machine": r.machine, "item": r.item, "status": r.status, "lines": list(r.lines)} for r in report.rows
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drift", description=__doc__.splitlines()[0])
    parser.add_argument("stack", nargs="?", default="dev", help="the stack (Pulumi.<stack>.yaml)")
    parser.add_argument("--stack-file", type=Path, help="another file than Pulumi.<stack>.yaml")
    parser.add_argument("--identity", type=Path, help="the SSH private key (default: ssh's own, or its agent)")
    parser.add_argument("--known-hosts", type=Path, default=Path("~/.ssh/known_hosts").expanduser(),
                        help="host keys for machines the stack does not pin (default ~/.ssh/known_hosts)")  # fmt: skip
    parser.add_argument("--pulumi", help="the Pulumi CLI command (default engine/pulumi, else pulumi on PATH)")
    parser.add_argument("--no-engine", action="store_true", help="check the steps only")
    parser.add_argument("--jobs", type=int, default=8, help="machines checked at once (default 8)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per machine (default 600)")
    parser.add_argument("--json", type=Path, help="where to write the report (default build/<stack>/drift.json)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.timeout <= 0:
        parser.error("--jobs and --timeout must be positive")
    options = Options(
        stack_file=args.stack_file, identity=args.identity, known_hosts=args.known_hosts,
        pulumi=[] if args.no_engine else (shlex.split(args.pulumi) if args.pulumi else None),
        jobs=args.jobs, timeout=args.timeout,
    )  # fmt: skip
    try:
        report = check_stack(args.stack, options, say=lambda text: print(text, file=sys.stderr))
    except FleetConfigError as err:
        print(f"drift: stack {args.stack} is invalid; nothing was checked:\n{err}", file=sys.stderr)
        return 1
    except FileNotFoundError as err:
        print(f"drift: {err}", file=sys.stderr)
        return 1
    print(table(report))
    path = args.json or ROOT / "build" / args.stack / "drift.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(as_json(report), indent=2) + "\n")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())

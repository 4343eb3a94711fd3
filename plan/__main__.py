"""``python -m plan --stack dev``: show and render everything a stack would deploy, offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.model import FleetConfigError

from .policy import config_path, evaluate, policy_document, read_config, summary_lines, write_policy
from .run import ROOT, load_stack, router_id_clashes_with_committed, run_program
from .topology import write_topology
from .write import machine_files, tree_lines, type_counts, write_build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make plan", description=__doc__)
    parser.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default dev)")
    parser.add_argument("--file", type=Path, help="another stack file to read instead (same format)")
    parser.add_argument("--build", type=Path, default=ROOT / "build", help="output folder (default build/)")
    parser.add_argument(
        "--policy-config", type=Path, help="policy pack config to apply (default policy/config/<stack>.json)"
    )
    args = parser.parse_args(argv)

    path = args.file or ROOT / f"Pulumi.{args.stack}.yaml"
    if not path.is_file():
        print(f"make plan: no stack file {path}", file=sys.stderr)
        return 2
    try:
        config, fleet = load_stack(args.stack, path)
    except FleetConfigError as err:
        print(
            f"make plan: stack {args.stack} ({path.name}) is invalid; nothing was written.\n{err}",
            file=sys.stderr,
        )
        return 1
    clashes = router_id_clashes_with_committed(args.stack, fleet)
    if clashes:
        lines = "\n".join(f"  - {clash}" for clash in clashes)
        print(f"make plan: stack {args.stack} ({path.name}) is invalid; nothing was written.\n{lines}", file=sys.stderr)
        return 1
    recording = run_program(config)

    print(f"virtfleet plan for stack {args.stack} ({path.name})")
    print()
    for line in tree_lines(recording):
        print(f"  {line}")
    print()
    print("resources per type:")
    for type_, count in type_counts(recording):
        print(f"  {count:4d}  {type_}")
    print(f"  {len(recording.resources):4d}  in all")
    if config.placeholders:
        print(f"\nsecrets not in {path.name}, planned with placeholders: {', '.join(config.placeholders)}")
    for warning in recording.warnings:
        print(f"warning: {warning}")
    target = write_build(recording, args.build)
    print(f"\nwrote {target / 'plan.json'} and {len(machine_files(recording))} rendered files under {target}/")
    written = write_topology(fleet, target)
    print(f"wrote the topology: {', '.join(str(target / name) for name in written)}")
    if "topology.svg" not in written:
        print("note: Graphviz's dot is not installed (apt-get install graphviz), so no topology.svg")
    return check_policies(recording, target, args.policy_config or config_path(args.stack))


def check_policies(recording, target: Path, config_file: Path) -> int:
    """The policy pack over the recording: policy.json, a summary, 1 on a mandatory violation."""
    findings = evaluate(recording, read_config(config_file))
    written = write_policy(target, policy_document(recording.stack, config_file, findings))
    print()
    for line in summary_lines(findings):
        print(line)
    print(f"wrote {written} (levels from {config_file.name if config_file.is_file() else 'the policies defaults'})")
    if any(f.level == "mandatory" for f in findings):
        print(f"make plan: stack {recording.stack} violates mandatory policies (above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Turn a Recording into what ``make plan`` shows and writes under ``build/<stack>/``."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path, PurePosixPath

from .run import Recording

STEP_TYPE = "virtfleet:remote:RemoteStep"
FILES_TYPE = "virtfleet:render:RenderedFiles"


def tree_lines(recording: Recording) -> list[str]:
    """The resource tree, component -> children, with type and name."""
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for record in recording.children(parent):
            lines.append(f"{'    ' * depth}{record.type}  {record.name}")
            walk(record.urn, depth + 1)

    roots = {r.urn for r in recording.resources}
    for record in recording.resources:
        if record.parent not in roots:
            lines.append(f"{record.type}  {record.name}")
            walk(record.urn, 1)
    return lines


def type_counts(recording: Recording) -> list[tuple[str, int]]:
    return sorted(Counter(r.type for r in recording.resources).items())


def plan_document(recording: Recording) -> dict:
    return {
        "stack": recording.stack,
        "resources": [
            {
                "urn": r.urn,
                "type": r.type,
                "name": r.name,
                "parent": r.parent or None,
                "custom": r.custom,
                "provider": r.provider or None,
                "dependencies": r.dependencies,
                "protect": r.protect,
                "retainOnDelete": r.retain_on_delete,
                "inputs": r.masked_inputs(),
            }
            for r in recording.resources
        ],
        "outputs": recording.outputs,
        "warnings": recording.warnings,
    }


def machine_files(recording: Recording) -> dict[str, str]:
    """Relative path under build/<stack>/ -> content, for every rendered file and step script."""
    out: dict[str, str] = {}
    for record in recording.resources:
        machine = record.inputs.get("machine")
        if record.type not in (STEP_TYPE, FILES_TYPE) or not machine:
            continue
        for path, content in (record.inputs.get("files") or {}).items():
            out[_under(machine, path)] = content
        if record.type == STEP_TYPE:
            step = record.inputs["step"]
            out[f"{machine}/steps/{step}.create.sh"] = record.inputs["createScript"]
            out[f"{machine}/steps/{step}.delete.sh"] = record.inputs["deleteScript"]
    return out


def _under(machine: str, path: str) -> str:
    p = PurePosixPath(path)
    if not p.is_absolute() or ".." in p.parts:
        raise ValueError(f"refusing to write {path!r} for {machine}: not an absolute path")
    return f"{machine}{path}"


def write_build(recording: Recording, build_root: Path) -> Path:
    target = build_root / recording.stack
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    document = plan_document(recording)
    (target / "plan.json").write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    for relative, content in machine_files(recording).items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        if "/steps/" in relative:
            path.chmod(0o755)
    return target

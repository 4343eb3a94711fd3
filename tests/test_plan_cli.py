"""The offline plan as users run it: `python -m plan` (what `make plan STACK=...` calls)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import yaml
from support.tools import real_tools_required

from plan.run import ROOT


def run_plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plan", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_plan_writes_tree_json_and_files(tmp_path):
    result = run_plan("--stack", "staging", "--build", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "virtfleet:host:HypervisorHost  stg-kvm1" in result.stdout
    assert "resources per type:" in result.stdout
    document = json.loads((tmp_path / "staging" / "plan.json").read_text())
    types = {r["type"] for r in document["resources"]}
    assert "command:remote:Command" in types
    for r in document["resources"]:
        assert {"type", "name", "parent", "dependencies", "inputs"} <= set(r)
    assert (tmp_path / "staging" / "stg-kvm1" / "steps" / "hosts-file.create.sh").is_file()
    # the topology, drawn from the same validated model (its content: test_topology.py)
    dot = (tmp_path / "staging" / "topology.dot").read_text()
    assert dot.startswith("// virtfleet topology of staging.virtfleet.internal") and "guest_web3" in dot
    assert "```mermaid" in (tmp_path / "staging" / "topology.md").read_text()
    if shutil.which("dot") or real_tools_required():
        assert "<svg" in (tmp_path / "staging" / "topology.svg").read_text()
        assert "topology.svg" in result.stdout
    else:
        assert "Graphviz's dot is not installed" in result.stdout


def test_invalid_stack_exits_non_zero_names_the_key_and_writes_nothing(tmp_path):
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    document["config"]["virtfleet:guests"][1]["network"]["ip"] = "192.168.7.7"
    stack_file = tmp_path / "Pulumi.broken.yaml"
    stack_file.write_text(yaml.safe_dump(document))
    build = tmp_path / "build"
    result = run_plan("--stack", "broken", "--file", str(stack_file), "--build", str(build))
    assert result.returncode == 1
    assert "virtfleet:guests[1].network.ip" in result.stderr
    assert "192.168.7.7" in result.stderr
    assert not build.exists()


def test_unknown_stack_is_a_clear_error(tmp_path):
    result = run_plan("--stack", "nope", "--build", str(tmp_path))
    assert result.returncode == 2 and "Pulumi.nope.yaml" in result.stderr

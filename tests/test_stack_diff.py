"""`make diff FROM=... TO=...` (plan/diff.py): two stacks' models compared by key path.

The expected differences are read off the two committed stack files themselves, not copied here,
so the test follows the files as they change.
"""

from __future__ import annotations

import copy
import re
import subprocess

import pytest
import yaml
from conftest import stack_values

from plan.diff import feature_gaps, main, model_changes, report
from plan.run import ROOT, load_stack


def make_diff(a: str, b: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-s", "diff", f"FROM={a}", f"TO={b}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def sections(text: str) -> dict[str, list[str]]:
    """'title:' lines followed by indented entries -> {title: [entry, ...]}."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = out.setdefault(line[:-1], [])
        elif line.startswith("  ") and current is not None:
            current.append(line.strip())
    return out


def entry_keys(lines: list[str]) -> set[str]:
    return {re.split(r"[: ]\s", line, maxsplit=1)[0].rstrip(":") for line in lines}


def test_make_diff_staging_prod_lists_what_the_files_say():
    result = make_diff("staging", "prod")
    assert result.returncode == 0, result.stderr
    found = sections(result.stdout)
    a, b = stack_values("staging"), stack_values("prod")
    for kind in ("hosts", "guests"):
        names_a, names_b = {x["name"] for x in a[kind]}, {x["name"] for x in b[kind]}
        for name in names_a - names_b:
            assert f"virtfleet:{kind}[{name}]" in entry_keys(found["only in staging"]), name
        for name in names_b - names_a:
            assert f"virtfleet:{kind}[{name}]" in entry_keys(found["only in prod"]), name
        for name in names_a & names_b:  # both have it: never listed whole
            assert f"virtfleet:{kind}[{name}]" not in entry_keys(found["only in staging"] + found["only in prod"])
    changed = found["changed"]
    assert f"virtfleet:domain: {a['domain']} -> {b['domain']}" in changed
    both = {g["name"] for g in a["guests"]} & {g["name"] for g in b["guests"]}
    for name in both:
        ga = next(g for g in a["guests"] if g["name"] == name)
        gb = next(g for g in b["guests"] if g["name"] == name)
        if ga["network"]["ip"] != gb["network"]["ip"]:
            assert f"virtfleet:guests[{name}].network.ip: {ga['network']['ip']} -> {gb['network']['ip']}" in changed
        if gb.get("protect") and not ga.get("protect"):
            assert f"virtfleet:guests[{name}].protect: false -> true" in changed
    fa, fb = a["loadBalancer"]["healthCheck"], b["loadBalancer"]["healthCheck"]
    for key in fa.keys() & fb.keys():
        if fa[key] != fb[key]:
            assert f"virtfleet:loadBalancer.healthCheck.{key}: {fa[key]} -> {fb[key]}" in changed
    gaps = {line.split(":")[0]: line for line in found["what one has and the other lacks"]}
    types_b_only = sorted({g["type"] for g in b["guests"]} - {g["type"] for g in a["guests"]})
    roles_b_only = sorted({r for h in b["hosts"] for r in h["roles"]} - {r for h in a["hosts"] for r in h["roles"]})
    assert types_b_only and gaps["guest types"].endswith(f"only prod: {', '.join(types_b_only)}")
    assert roles_b_only and gaps["host roles"].endswith(f"only prod: {', '.join(roles_b_only)}")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_a_stack_against_itself_has_no_difference(stack, capsys):
    assert main([stack, stack]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"stack diff: {stack} -> {stack}", "no difference: the two stacks' models are the same"]


def test_make_diff_of_a_stack_and_itself():
    result = make_diff("dev", "dev")
    assert result.returncode == 0 and "no difference" in result.stdout, result.stdout + result.stderr


def fleet_from(values: dict, tmp_path, name: str):
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": {f"virtfleet:{k}": v for k, v in values.items()}}))
    return load_stack(name, path)[1]


def test_order_and_spelled_out_defaults_are_no_difference(tmp_path):
    values = stack_values("prod")
    other = copy.deepcopy(values)
    other["guests"].reverse()
    other["hosts"].reverse()
    other["hosts"][0]["firewall"] = True  # the default, written out
    other["loadBalancer"]["balance"] = "roundrobin"
    assert model_changes(fleet_from(values, tmp_path, "a"), fleet_from(other, tmp_path, "b")) == []


def test_one_change_is_one_line_by_name(tmp_path):
    values = stack_values("prod")
    other = copy.deepcopy(values)
    next(g for g in other["guests"] if g["name"] == "webserver3")["memoryMiB"] = 2048
    other["loadBalancer"]["https"] = {"enabled": False}  # prod serves HTTPS
    a, b = fleet_from(values, tmp_path, "a"), fleet_from(other, tmp_path, "b")
    assert [(c.path, c.before, c.after) for c in model_changes(a, b)] == [
        ("guests[webserver3].memoryMiB", 1024, 2048),
        ("loadBalancer.https.enabled", True, False),
    ]
    assert feature_gaps(a, b) == {"tier features": (["https", "https redirect"], [])}
    lines = report("a", a, "b", b)
    assert "  virtfleet:guests[webserver3].memoryMiB: 1024 -> 2048" in lines
    assert "  tier features: only a: https, https redirect; only b: -" in lines


def test_a_stack_without_balancer_lacks_the_tier(tmp_path):
    values = stack_values("dev")
    other = {k: v for k, v in copy.deepcopy(values).items() if k != "loadBalancer"}
    a, b = fleet_from(values, tmp_path, "a"), fleet_from(other, tmp_path, "b")
    lines = report("a", a, "b", b)
    assert "  virtfleet:loadBalancer  (" in "\n".join(lines)
    only_a, only_b = feature_gaps(a, b)["tier features"]
    assert {"load balancer", "stats page", "sticky sessions", "backup servers"} <= set(only_a) and only_b == []


def test_an_invalid_stack_is_refused_with_its_key(tmp_path, capsys, monkeypatch):
    values = stack_values("staging")
    values["guests"][0]["network"]["ip"] = "192.168.9.9"
    (tmp_path / "Pulumi.broken.yaml").write_text(
        yaml.safe_dump({"config": {f"virtfleet:{k}": v for k, v in values.items()}})
    )
    monkeypatch.setattr("plan.diff.ROOT", tmp_path)
    (tmp_path / "Pulumi.staging.yaml").write_text((ROOT / "Pulumi.staging.yaml").read_text())
    assert main(["staging", "broken"]) == 1
    assert "virtfleet:guests[0].network.ip" in capsys.readouterr().err
    assert main(["staging", "nope"]) == 2

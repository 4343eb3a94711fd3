"""L1: every rule of the model is reached by a case of the malformed-stack corpus.

A rule is a statement of ``components/model/`` that reports a problem: a ``raise`` (pydantic turns a
validator's ValueError into a problem at its key) or a statement building a ``Problem``. The corpus
(tests/test_model_errors.py) is run under coverage.py; a rule statement that no case executes is a
rule nobody has seen fire, so deleting it would pass the corpus. The test names each such statement.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import coverage
import pytest
from conftest import stack_values
from test_model_errors import CASES, one_balancer

from components.model import FleetConfigError, load_fleet
from plan.run import ROOT

MODEL = ROOT / "components" / "model"


def rule_lines(path: Path) -> dict[int, str]:
    """First line -> source of each statement of ``path`` that reports a problem."""
    source = path.read_text()
    tree = ast.parse(source)
    found: dict[int, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt) or isinstance(node, ast.FunctionDef | ast.ClassDef | ast.If | ast.For):
            continue
        if isinstance(node, ast.Try | ast.With | ast.While):
            continue
        reports = isinstance(node, ast.Raise) or any(
            isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Problem"
            for call in ast.walk(node)
        )
        if reports:
            found[node.lineno] = ast.get_source_segment(source, node).splitlines()[0].strip()
    return found


def test_rule_lines_finds_raises_and_problems():
    """The finder itself: it sees the rules it must (a finder that sees nothing would pass below)."""
    lines = rule_lines(MODEL / "rules.py")
    assert sum("Problem(" in text for text in lines.values()) >= 10
    assert any(text.startswith("raise ") for text in rule_lines(MODEL / "common.py").values())
    # the generic pydantic-error converter is found too (it is reached by every type error)
    assert any("Problem(key_path(*loc)" in text for text in rule_lines(MODEL / "errors.py").values())


def test_every_rule_of_the_model_fires_in_the_corpus():
    prod = one_balancer(copy.deepcopy(stack_values("prod")))  # as the corpus runs (its pair cases restore the pair)
    cov = coverage.Coverage(data_file=None, include=[str(MODEL / "*.py")], branch=False)
    cov.start()
    try:
        for _, mutate, _, _ in CASES:
            values = copy.deepcopy(prod)
            mutate(values)
            with pytest.raises(FleetConfigError):
                load_fleet(values, {"sshPrivateKey"})
        # the rules outside the values: a misspelled namespace among the stack's other keys, and
        # the SSH key not stored as a secret (tests/test_model.py has their own cases)
        for secrets, others, path in (
            ({"sshPrivateKey"}, ["virtfeet:domain"], "virtfeet:domain"),
            (set(), [], "virtfleet:sshPrivateKey"),
        ):
            with pytest.raises(FleetConfigError) as caught:
                load_fleet(copy.deepcopy(prod), secrets, others)
            assert caught.value.paths() == [path]
    finally:
        cov.stop()
    unreached = []
    for path in sorted(MODEL.glob("*.py")):
        _, statements, _, missing, _ = cov.analysis2(str(path))
        for line, text in rule_lines(path).items():
            if line in statements and line in missing:
                unreached.append(f"{path.relative_to(ROOT)}:{line}: {text}")
    assert not unreached, "rules no corpus case reaches (add a case to tests/test_model_errors.py):\n" + "\n".join(
        unreached
    )

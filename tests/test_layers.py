"""Imports flow one way: model -> render -> remote steps -> stack inputs -> hosts | tier -> guests -> program.

The contracts live in pyproject.toml ([tool.importlinter]); import-linter checks them on the tree, and
on a copy with one import that goes upwards, which must break the layers and name that import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'policy'}"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_upwards_breaks_the_layers(tmp_path):
    tree = tmp_path / "tree"
    for name in ("components", "plan", "lab", "policy"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "venv"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    # The remote-step machinery reaching up into the tier: the kind of shortcut the layers forbid.
    scripts = tree / "components" / "remote" / "scripts.py"
    scripts.write_text(scripts.read_text() + "\nfrom ..lb import tier as _tier  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "components.remote.scripts -> components.lb.tier" in result.stdout

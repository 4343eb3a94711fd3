"""Real-tool gating shared by every test that needs a tool from outside Python.

A missing tool skips the test with the reason, except under ``REQUIRE_REAL_TOOLS=1`` (set by
``.ci/run``), where it fails: CI must prove the real thing, never skip past it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def real_tools_required() -> bool:
    return os.environ.get("REQUIRE_REAL_TOOLS") == "1"


def missing(reason: str) -> None:
    """Skip (locally) or fail (in CI) because something real is not available."""
    if real_tools_required():
        pytest.fail(f"REQUIRE_REAL_TOOLS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Return the absolute path of executable ``name`` or skip/fail with the reason."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        missing(f"the real tool {name!r} is not installed")
    return path


def require_root() -> None:
    if os.geteuid() != 0:
        missing("this test needs root (network namespaces, mount namespaces, sshd)")


def ksvalidator() -> str:
    """pykickstart's ksvalidator: the one beside the running interpreter (the project's venv, also in
    mutmut's copy of the tree), else one on PATH; skip/fail with the reason when there is none."""
    beside = Path(sys.executable).parent / "ksvalidator"
    return str(beside) if beside.exists() else require_tool("ksvalidator")

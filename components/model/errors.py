"""Validation problems, each tied to the config key path a user types."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

NAMESPACE = "virtfleet"


def key_path(*parts: str | int) -> str:
    """``key_path("guests", 2, "network", "ip")`` -> ``virtfleet:guests[2].network.ip``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return f"{NAMESPACE}:{text}"


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    value: Any = None

    def __str__(self) -> str:
        shown = "" if self.value is None else f" (got {self.value!r})"
        return f"{self.path}: {self.message}{shown}"


class FleetConfigError(ValueError):
    """Every problem found in one stack's configuration, reported together."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the stack configuration has {len(self.problems)} problem(s):\n{lines}")

    def paths(self) -> list[str]:
        return [p.path for p in self.problems]


def pydantic_problems(prefix: Sequence[str | int], errors: Iterable[dict]) -> list[Problem]:
    """Turn pydantic's errors into Problems whose path is the camelCase key the user wrote."""
    problems = []
    for err in errors:
        loc = [*prefix, *(p for p in err["loc"] if p != "__root__")]
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against the configuration reference in README.md"
        value = err.get("input") if err["type"] not in {"missing", "extra_forbidden"} else None
        if isinstance(value, dict | list):
            value = None
        problems.append(Problem(key_path(*loc), message, value))
    return problems

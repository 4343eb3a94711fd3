"""Fixtures shared across the suite: stack configs and one program run per stack."""

from __future__ import annotations

import copy

import pytest
import yaml

from plan.run import ROOT

STACKS = ("dev", "staging", "prod")


def stack_values(stack: str) -> dict:
    """The ``virtfleet:`` values of a committed stack file, keys without the namespace."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return {k.split(":", 1)[1]: v for k, v in document["config"].items() if k.startswith("virtfleet:")}


@pytest.fixture
def prod_values() -> dict:
    return copy.deepcopy(stack_values("prod"))

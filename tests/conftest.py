"""Fixtures shared across the suite: stack configs and one program run per stack."""

from __future__ import annotations

import copy
from functools import cache

import pytest
import yaml

from components.model import load_fleet
from plan.run import ROOT, StackConfig, load_stack, run_program

STACKS = ("dev", "staging", "prod")


def stack_values(stack: str) -> dict:
    """The ``virtfleet:`` values of a committed stack file, keys without the namespace."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return {k.split(":", 1)[1]: v for k, v in document["config"].items() if k.startswith("virtfleet:")}


@pytest.fixture
def prod_values() -> dict:
    return copy.deepcopy(stack_values("prod"))


@cache
def recording(stack: str):
    """(fleet, Recording) of a committed stack under the recording mocks, run once per test session."""
    config, fleet = load_stack(stack)
    return fleet, run_program(config)


def guest_variant(stack: str, guest: str, **changes):
    """The Recording of a committed stack with one guest's config changed (``changes`` in config
    keys): what ``pulumi up`` would run after that edit."""
    config, _ = load_stack(stack)
    values = copy.deepcopy(config.values)
    next(g for g in values["guests"] if g["name"] == guest).update(changes)
    return run_program(StackConfig(stack, values, set(config.secret_keys), list(config.placeholders)))


@pytest.fixture(params=STACKS)
def recorded(request):
    return recording(request.param)


def edited_fleet(stack: str, edit) -> object:
    """The validated Fleet of a committed stack after ``edit(values)`` changed a copy of its
    ``virtfleet:`` values in place (config keys, as a user would edit the stack file)."""
    config, _ = load_stack(stack)
    values = copy.deepcopy(config.values)
    edit(values)
    return load_fleet(values, set(config.secret_keys), config.other_keys)

"""Reads the ``virtfleet:*`` stack configuration out of the Pulumi runtime (the only place that does)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from ..model import SECRET_KEYS, Fleet, load_fleet

NAMESPACE = "virtfleet"


def _parse(value: Any) -> Any:
    """Pulumi hands object and list values over as JSON text; scalars stay strings."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def raw_config() -> tuple[dict[str, Any], set[str], list[str]]:
    """All ``virtfleet:`` keys of the stack, parsed, which of them are secrets, and the other keys."""
    values: dict[str, Any] = {}
    secret: set[str] = set()
    others: list[str] = []
    for full_key, value in runtime_config.CONFIG.get().items():
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            others.append(full_key)
            continue
        values[key] = value if key in SECRET_KEYS else _parse(value)
        if runtime_config.is_config_secret(full_key):
            secret.add(key)
    return values, secret, others


def load_stack_fleet() -> Fleet:
    values, secret, others = raw_config()
    return load_fleet(values, secret, others)


def secret_config(key: str) -> pulumi.Output[str] | None:
    return pulumi.Config(NAMESPACE).get_secret(key)

"""Reads the ``virtfleet:*`` stack configuration out of the Pulumi runtime (the only place that does)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from .model import MODEL_KEYS, SECRET_KEYS, Fleet, load_fleet

NAMESPACE = "virtfleet"


def _parse(value: Any) -> Any:
    """Pulumi hands object and list values over as JSON text; scalars stay strings."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def raw_config() -> tuple[dict[str, Any], set[str]]:
    """All ``virtfleet:`` keys of the stack, parsed, and which of them are secrets."""
    values: dict[str, Any] = {}
    secret: set[str] = set()
    for full_key, value in runtime_config.CONFIG.get().items():
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        values[key] = value if key in SECRET_KEYS else _parse(value)
        if runtime_config.is_config_secret(full_key):
            secret.add(key)
    return values, secret


def load_stack_fleet() -> Fleet:
    values, secret = raw_config()
    return load_fleet({k: v for k, v in values.items() if k in MODEL_KEYS or k in SECRET_KEYS}, secret)


def secret_config(key: str) -> pulumi.Output[str] | None:
    return pulumi.Config(NAMESPACE).get_secret(key)

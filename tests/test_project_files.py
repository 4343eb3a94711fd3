"""The Pulumi project and stack files follow Pulumi's own rules (checked here without the CLI)."""

from __future__ import annotations

import yaml
from conftest import STACKS

from components.model import MODEL_KEYS, SECRET_KEYS
from plan.run import ROOT

SIMPLE_TYPES = {"string", "integer", "boolean", "array"}


def test_project_declares_python_with_its_virtualenv():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "virtfleet"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}


def test_config_declarations_fit_pulumis_project_schema():
    """Pulumi's project.json: a declaration needs a type among string/integer/boolean/array (arrays need
    items) and allows only type, items, description, secret and default."""
    config = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    for key, declaration in config.items():
        assert set(declaration) <= {"type", "items", "description", "secret", "default"}, key
        assert declaration["type"] in SIMPLE_TYPES, key
        if declaration["type"] == "array":
            assert declaration["items"]["type"] in SIMPLE_TYPES, key
        assert declaration.get("description"), key
    # No secret is declared: ours are optional, and the CLI requires a declared secret and refuses a
    # default for one ("must be encrypted as it's secret"; tests/test_engine.py runs the real CLI).
    # Structured keys and secrets are documented in docs/reference.md instead.
    assert not any(d.get("secret") for d in config.values())
    assert set(config) <= set(MODEL_KEYS)


def test_stack_files_hold_no_secret_in_plain_text():
    for stack in STACKS:
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        for key in SECRET_KEYS:
            value = config.get(f"virtfleet:{key}")
            assert value is None or (isinstance(value, dict) and set(value) == {"secure"}), (stack, key)
        text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
        assert "PRIVATE KEY" not in text and "password:" not in text.lower()

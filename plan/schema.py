"""A JSON Schema for ``Pulumi.<stack>.yaml``, generated from the model so it cannot drift.

The file is Pulumi's stack settings: ``config:`` maps ``virtfleet:<key>`` to a value. The schema
describes that shape: the model's keys (``virtfleet:hosts`` ... ``virtfleet:loadBalancer``, each
with the model's own types, descriptions and defaults), secrets only as ``{secure: ...}``, guests by
their ``type`` (each type's own keys), other namespaces' keys left alone, and any other
``virtfleet:`` key refused. Editors read it through the stack files' first line
(``# yaml-language-server: $schema=./schema/stack.schema.json``) to complete and check as you type.
It checks each value's shape; the rules across keys (unique addresses, capacity, references) stay
the model's, which ``make plan`` applies.

``python -m plan.schema --write`` (``make schema``) regenerates ``schema/stack.schema.json``;
``python -m plan.schema --check FILE...`` validates stack files against it, naming each key.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic.json_schema import models_json_schema

from components.model import GUEST_TYPES
from components.model.errors import NAMESPACE, key_path
from components.model.fleet import MODEL_KEYS, SECRET_KEYS, Fleet

from .run import ROOT

SCHEMA_PATH = ROOT / "schema" / "stack.schema.json"
SCHEMA_COMMENT = "# yaml-language-server: $schema=./schema/stack.schema.json"
REF_TEMPLATE = "#/$defs/{model}"


def _strip_titles(node: Any) -> Any:
    """Drop pydantic's generated titles ("Cputhreads"): editors show them instead of the description."""
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _guest_schema() -> dict:
    """Any guest: ``type`` picks the guest type's own schema (if/then, so errors name the key)."""
    return {
        "type": "object",
        "description": "a guest; its type decides which keys it takes",
        "required": ["type"],
        "properties": {"type": {"enum": list(GUEST_TYPES), "description": "the guest type"}},
        "allOf": [
            {
                "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                "then": {"$ref": REF_TEMPLATE.format(model=model.__name__)},
            }
            for kind, model in GUEST_TYPES.items()
        ],
    }


def stack_schema() -> dict:
    models = [Fleet, *GUEST_TYPES.values()]
    _, top = models_json_schema([(m, "validation") for m in models], by_alias=True, ref_template=REF_TEMPLATE)
    defs = top["$defs"]
    fleet = defs.pop("Fleet")["properties"]
    defs.pop("Guest", None)  # only the concrete types are used
    properties: dict[str, Any] = {}
    for key in MODEL_KEYS:
        if key == "guests":  # the model's field is the base Guest; a stack file holds every type
            fleet[key]["items"] = _guest_schema()
        properties[f"{NAMESPACE}:{key}"] = fleet[key]
    for key, meaning in SECRET_KEYS.items():
        properties[f"{NAMESPACE}:{key}"] = {
            "description": f"{meaning}; secret: `pulumi config set --secret {NAMESPACE}:{key}`",
            "type": "object",
            "properties": {"secure": {"type": "string", "description": "the value, encrypted by Pulumi"}},
            "required": ["secure"],
            "additionalProperties": False,
        }
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "virtfleet stack file (Pulumi.<stack>.yaml)",
        "description": "Pulumi stack settings for the virtfleet project; generated from components/model "
        "by `make schema`. Shapes only: cross-key rules are checked by the model (make plan).",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "description": "the stack's configuration: virtfleet:<key> as in docs/reference.md",
                "properties": properties,
                # Keys of other namespaces (a provider's, pulumi:tags) are Pulumi's business.
                "patternProperties": {f"^(?!{NAMESPACE}:)[^:]+:.+$": {}},
                "additionalProperties": False,
                "required": [f"{NAMESPACE}:hosts"],
            },
            "secretsprovider": {"type": "string"},
            "encryptedkey": {"type": "string"},
            "encryptionsalt": {"type": "string"},
            "environment": {},
        },
        "required": ["config"],
        "additionalProperties": False,
        "$defs": dict(sorted(defs.items())),
    }
    return _strip_titles(schema)


def schema_text() -> str:
    return json.dumps(stack_schema(), indent=2, sort_keys=False) + "\n"


def _key(path: Iterable[Any]) -> str:
    """jsonschema's path to the key a user edits: config/virtfleet:guests/0/vcpus -> virtfleet:guests[0].vcpus."""
    parts = list(path)
    if len(parts) >= 2 and parts[0] == "config" and str(parts[1]).startswith(f"{NAMESPACE}:"):
        return key_path(parts[1].split(":", 1)[1], *parts[2:])
    return ".".join(str(p) for p in parts) or "(the file)"


def schema_problems(document: Any, schema: dict | None = None) -> list[str]:
    """Every place the document breaks the schema, as ``<key>: <what is wrong>``, in file order."""
    schema = schema or json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]):
        if error.validator == "additionalProperties" and list(error.absolute_path) == ["config"]:
            known = error.schema["properties"]
            names = ", ".join(k.split(":", 1)[1] for k in known)
            unknown = [k for k in error.instance if k.startswith(f"{NAMESPACE}:") and k not in known]
            problems += [f"{k}: unknown key; virtfleet's keys are {names}" for k in unknown]
        else:
            problems += [f"{_key(leaf.absolute_path)}: {leaf.message}" for leaf in _leaves(error)]
    return problems


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """An optional value's anyOf [its schema, null] fails as a whole; what failed inside is the useful part."""
    if not error.context:
        return [error]
    branches = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
    return [leaf for branch in branches for leaf in _leaves(branch)] or [error]


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        SCHEMA_PATH.parent.mkdir(exist_ok=True)
        SCHEMA_PATH.write_text(schema_text())
        print(f"wrote {SCHEMA_PATH.relative_to(ROOT)}")
        return 0
    if len(argv) >= 2 and argv[0] == "--check":
        status = 0
        for name in argv[1:]:
            problems = schema_problems(yaml.safe_load(Path(name).read_text()))
            print(f"{name}: {f'{len(problems)} problem(s)' if problems else 'valid'}")
            for problem in problems:
                print(f"  - {problem}")
            status |= bool(problems)
        return status
    print("usage: python -m plan.schema --write | --check Pulumi.<stack>.yaml ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

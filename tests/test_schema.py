"""The JSON Schema of stack files (schema/stack.schema.json, plan/schema.py), checked with ``jsonschema``.

It is generated from the model, so it must equal what the model generates now; it accepts the
committed stacks and refuses what the model refuses key by key, naming the same key.
"""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import yaml
from conftest import STACKS

from components.model import FleetConfigError
from plan.run import ROOT, load_stack
from plan.schema import SCHEMA_COMMENT, SCHEMA_PATH, schema_problems, schema_text


def document(stack: str) -> dict:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())


def committed_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def test_committed_schema_is_what_the_model_generates():
    assert SCHEMA_PATH.read_text() == schema_text(), "schema/stack.schema.json drifted: run `make schema`"


def test_schema_is_a_valid_draft_2020_12_schema():
    schema = committed_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stacks_validate(stack):
    jsonschema.validate(document(stack), committed_schema(), cls=jsonschema.Draft202012Validator)
    assert schema_problems(document(stack)) == []


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_name_the_schema_for_editors(stack):
    first = (ROOT / f"Pulumi.{stack}.yaml").read_text().splitlines()[0]
    assert first == SCHEMA_COMMENT
    assert (ROOT / first.split("$schema=", 1)[1]).resolve() == SCHEMA_PATH


def test_descriptions_and_defaults_come_from_the_model():
    schema = committed_schema()
    host = schema["$defs"]["Host"]["properties"]
    assert host["osFamily"] == {
        "default": "el9",
        "description": "el7: yum + network-scripts; el9: dnf + NetworkManager",
        "enum": ["el7", "el9"],
        "type": "string",
    }
    from components.model.lb import HealthCheck

    default_interval = HealthCheck().interval_ms
    assert schema["$defs"]["LoadBalancer"]["properties"]["healthCheck"]["default"]["intervalMs"] == default_interval
    config = schema["properties"]["config"]["properties"]
    assert config["virtfleet:hosts"]["description"] == "the hypervisor hosts"
    assert "pulumi config set --secret virtfleet:statsPassword" in config["virtfleet:statsPassword"]["description"]


def _model_paths(doc: dict, folder) -> list[str]:
    """The key paths the model reports for the same document (what `make plan` would print)."""
    path = folder / "Pulumi.broken.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        load_stack("broken", path)
    except FleetConfigError as err:
        return err.paths()
    return []


def _guest(doc: dict, name: str) -> dict:
    return next(g for g in doc["config"]["virtfleet:guests"] if g["name"] == name)


def _rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


# (what is broken, how, the key the message must name, the word that must be in it)
CASES = [
    (
        "misspelled guest key",
        lambda d: _rename(_guest(d, "webserver1"), "memoryMiB", "memoryMib"),
        "virtfleet:guests[1]",
        "memoryMib",
    ),
    (
        "misspelled host key",
        lambda d: _rename(d["config"]["virtfleet:hosts"][2], "osFamily", "osFamly"),
        "virtfleet:hosts[2]",
        "osFamly",
    ),
    (
        "misspelled stack key",
        lambda d: _rename(d["config"], "virtfleet:loadBalancer", "virtfleet:loadBalancr"),
        "virtfleet:loadBalancr",
        "unknown key",
    ),
    (
        "another type's key on a guest",
        lambda d: _guest(d, "backupwebserver").update(cpuMode="host-model"),
        "virtfleet:guests[7]",
        "cpuMode",
    ),
    (
        "wrong type of a count",
        lambda d: d["config"]["virtfleet:hosts"][0]["capacity"].update(cpuThreads="sixteen"),
        "virtfleet:hosts[0].capacity.cpuThreads",
        "'sixteen' is not of type 'integer'",
    ),
    (
        "wrong type of a port",
        lambda d: d["config"]["virtfleet:loadBalancer"]["frontend"].update(port="http"),
        "virtfleet:loadBalancer.frontend.port",
        "'http' is not of type 'integer'",
    ),
    (
        "list where a mapping belongs",
        lambda d: _guest(d, "webserver3").update(network=["brid0", "10.0.0.13"]),
        "virtfleet:guests[5].network",
        "is not of type 'object'",
    ),
    (
        "a value outside its choices",
        lambda d: _guest(d, "webserver2").update(mode="paravirt"),
        "virtfleet:guests[3].mode",
        "'paravirt' is not one of",
    ),
]


@pytest.mark.parametrize(("what", "mutate", "key", "word"), CASES, ids=[c[0] for c in CASES])
def test_schema_refuses_and_names_the_key(what, mutate, key, word, tmp_path):
    doc = copy.deepcopy(document("prod"))
    mutate(doc)
    problems = schema_problems(doc)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}") and word in problems[0], problems
    # the raw validator agrees, and so does the model, on where the problem is
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, committed_schema(), cls=jsonschema.Draft202012Validator)
    assert any(path.startswith(key) for path in _model_paths(doc, tmp_path)), what


def test_secrets_are_accepted_only_encrypted():
    doc = copy.deepcopy(document("prod"))
    doc["config"]["virtfleet:statsPassword"] = {"secure": "v1:abc"}
    assert schema_problems(doc) == []
    doc["config"]["virtfleet:statsPassword"] = "hunter2"
    assert [p.split(":")[:2] for p in schema_problems(doc)] == [["virtfleet", "statsPassword"]]


def test_other_namespaces_are_left_to_pulumi():
    doc = copy.deepcopy(document("dev"))
    doc["config"]["libvirt:uri"] = "qemu:///system"
    assert schema_problems(doc) == []

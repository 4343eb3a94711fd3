"""L2: the whole program for each stack under the recording mocks (the same run as `make plan`)."""

from __future__ import annotations

import json

import yaml

from plan.mocks import SECRET_MARK
from plan.run import ROOT, StackConfig, read_stack_file, run_program
from plan.write import machine_files, plan_document


def test_one_hypervisor_host_per_host(recorded):
    fleet, rec = recorded
    hosts = rec.of_type("virtfleet:host:HypervisorHost")
    assert sorted(r.name for r in hosts) == sorted(h.name for h in fleet.hosts)


def test_every_resource_is_parented_to_a_component(recorded):
    """Only the generated secrets and components sit at the top; everything else has a parent."""
    _, rec = recorded
    urns = {r.urn for r in rec.resources}
    for record in rec.resources:
        if record.custom and not record.type.startswith("random:"):
            assert record.parent in urns, f"{record.type} {record.name} has no component parent"


def test_providers_are_explicit_per_host(recorded):
    fleet, rec = recorded
    for record in rec.resources:
        package = record.type.split(":")[0]
        if record.custom and package in {"libvirt", "docker"}:
            assert record.provider, f"{record.type} {record.name} uses a default provider"
            provider_name = record.provider.split("::")[3]
            host = provider_name.rsplit("-", 1)[0]
            assert host in {h.name for h in fleet.hosts}


def test_no_dependency_crosses_hosts(recorded):
    """A step on one host never waits for another host's steps (hosts deploy in parallel)."""
    _, rec = recorded
    by_urn = rec.by_urn()

    def host_of(urn: str) -> str | None:
        while urn in by_urn:
            record = by_urn[urn]
            if record.type == "virtfleet:host:HypervisorHost":
                return record.name
            urn = record.parent
        return None

    for record in rec.resources:
        mine = host_of(record.urn)
        if mine is None:
            continue
        for dep in record.dependencies:
            theirs = host_of(dep)
            assert theirs in (None, mine), f"{record.name} on {mine} depends on {dep} of {theirs}"


def test_secrets_are_masked_in_plan_json(recorded):
    _, rec = recorded
    text = json.dumps(plan_document(rec), default=str)
    assert "PLAN-PLACEHOLDER" not in text
    commands = rec.of_type("command:remote:Command")
    assert commands and all(c.masked_inputs()["connection"] == SECRET_MARK for c in commands)


def test_step_scripts_are_written_per_machine(recorded):
    fleet, rec = recorded
    files = machine_files(rec)
    for host in fleet.hosts:
        assert f"{host.name}/steps/hosts-file.create.sh" in files
        assert f"{host.name}/steps/hosts-file.delete.sh" in files


def test_reordering_the_stack_replaces_nothing(tmp_path):
    """Resource names come from names in the stack, never list positions."""
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    cfg = document["config"]
    cfg["virtfleet:guests"] = list(reversed(cfg["virtfleet:guests"]))
    cfg["virtfleet:hosts"] = list(reversed(cfg["virtfleet:hosts"]))
    path = tmp_path / "Pulumi.reordered.yaml"
    path.write_text(yaml.safe_dump(document))
    original = run_program(read_stack_file(ROOT / "Pulumi.prod.yaml", "prod"))
    reordered = run_program(read_stack_file(path, "prod"))
    assert {r.urn for r in original.resources} == {r.urn for r in reordered.resources}
    inputs = {r.urn: r.inputs for r in original.resources}
    changed = [r.urn for r in reordered.resources if r.inputs != inputs[r.urn]]
    # /etc/hosts lists machines in stack order; everything else must be identical.
    assert all("hosts-file" in urn for urn in changed), changed


def test_secure_values_are_secrets_and_missing_key_is_a_placeholder(tmp_path):
    document = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())
    document["config"]["virtfleet:statsPassword"] = {"secure": "v1:AAAA"}
    path = tmp_path / "Pulumi.s.yaml"
    path.write_text(yaml.safe_dump(document))
    config: StackConfig = read_stack_file(path, "s")
    assert config.secret_keys == {"statsPassword", "sshPrivateKey"}
    assert config.placeholders == ["sshPrivateKey"]
    rec = run_program(config)
    # A configured password means nothing is generated for it.
    assert not [r for r in rec.of_type("random:index/randomPassword:RandomPassword") if r.name == "stats-password"]

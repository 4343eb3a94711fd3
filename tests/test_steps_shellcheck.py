"""L3: shellcheck on every script the hosts' steps render, for all three stacks."""

from __future__ import annotations

import subprocess

import pytest
from conftest import STACKS
from support.tools import require_tool

from plan.run import ROOT, load_stack, run_program
from plan.write import machine_files


@pytest.mark.real
@pytest.mark.parametrize("stack", STACKS)
def test_host_step_scripts_are_shellcheck_clean(stack, tmp_path):
    shellcheck = require_tool("shellcheck")
    config, fleet = load_stack(stack)
    files = machine_files(run_program(config))
    hosts = {h.name for h in fleet.hosts}
    scripts = [rel for rel in files if "/steps/" in rel and rel.split("/")[0] in hosts]
    # every host has at least its preflight, selinux, hostname, hosts-file and bridge steps
    assert len(scripts) >= 10 * len(hosts)
    paths = []
    for rel in scripts:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[rel])
        paths.append(str(path))
    proc = subprocess.run(
        [shellcheck, "--severity=style", "--shell=bash", *paths], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.real
def test_the_projects_own_shell_scripts_are_shellcheck_clean():
    """The engine wrappers, the lab's entry points and CI: what runs on the operator's machine."""
    shellcheck = require_tool("shellcheck")
    scripts = [*sorted((ROOT / "engine").glob("*.sh")), ROOT / "engine" / "pulumi", ROOT / ".ci" / "run"]
    scripts += [ROOT / "lab" / "pulumi", ROOT / "lab" / "shell"]
    proc = subprocess.run(
        [shellcheck, "--severity=style", "--shell=bash", *map(str, scripts)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

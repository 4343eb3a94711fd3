"""L1: the rendering environment and the remote-step frame."""

from __future__ import annotations

import subprocess

import jinja2
import pytest

from components.remote.scripts import RemoteFile, as_command, render_step
from components.render import digest, render, shquote


def test_shquote_survives_metacharacters():
    nasty = "a b'c\"$(reboot);`id`"
    out = subprocess.run(["bash", "-c", f"printf %s {shquote(nasty)}"], capture_output=True, text=True, check=True)
    assert out.stdout == nasty
    assert shquote(["x y", "z"]) == "'x y' z"


def test_undefined_values_fail_at_render_time():
    with pytest.raises(jinja2.UndefinedError):
        render("steps/hosts-file.create.sh.j2")


def test_digest_is_stable_and_sensitive():
    assert digest("a", "b") == digest("a", "b")
    assert digest("a", "b") != digest("ab")


def test_remote_files_refuse_relative_and_traversal_paths():
    with pytest.raises(ValueError):
        RemoteFile("etc/x", "y")
    with pytest.raises(ValueError):
        RemoteFile("/etc/../root/x", "y")


def test_command_wrapper_runs_the_exact_script(tmp_path):
    step = render_step("m1", "hosts-file", "hosts-file", entries=[("10.0.0.2", "m1", "m1.example")])
    assert step.create.startswith("#!/bin/bash\n") and "set -Eeuo pipefail" in step.create
    wrapped = as_command('echo "it\'s $((1+1))"\n')
    out = subprocess.run(["bash", "-c", wrapped], capture_output=True, text=True, check=True)
    assert out.stdout == "it's 2\n"
    with pytest.raises(ValueError):
        as_command("echo\nVIRTFLEET_STEP\n")


def test_step_digest_changes_with_content():
    a = render_step("m1", "hosts-file", "hosts-file", entries=[("10.0.0.2", "m1", "m1.example")])
    b = render_step("m1", "hosts-file", "hosts-file", entries=[("10.0.0.3", "m1", "m1.example")])
    assert a.digest != b.digest and a.create != b.create


def test_docs_configuration_reference_is_current():
    from plan.reference import docs_block, reference

    assert docs_block() == reference(), "run: .venv/bin/python -m plan.reference --write"


def test_yamlquote_round_trips_through_yaml_where_json_escapes_do_not():
    """cloud-init reads its seed with PyYAML: a JSON surrogate pair would come back as two characters."""
    import json

    import yaml

    from components.render import yamlquote

    tricky = ["a\U0001f600b", "\\\U0001f600", "\\ud83d\\ude00", "\u2028\x85\x00", 'q": x\n- y', "%end"]
    assert yaml.safe_load(json.dumps(tricky)) != tricky  # the bug the filter exists for
    assert yaml.safe_load(yamlquote(tricky)) == tricky
    assert yamlquote(["plain", 1]) == json.dumps(["plain", 1])  # identical output for everyday values


def test_an_embedded_file_cannot_end_its_heredoc():
    """A secret step embeds its files as quoted heredocs ending at VIRTFLEET_FILE_<n>: a file holding
    that line would end it early and run what follows as commands, so it is refused."""
    evil = RemoteFile("/etc/x.pem", "-----BEGIN CERTIFICATE-----\nVIRTFLEET_FILE_1\necho pwned\n")
    with pytest.raises(ValueError, match="holds the line VIRTFLEET_FILE_1"):
        render_step("m1", "hosts-file", "hosts-file", files=[evil], secret=True, entries=[])
    # the same text as another file's delimiter is harmless, and renders
    render_step("m1", "hosts-file", "hosts-file", files=[RemoteFile("/a", "x\n"), evil], secret=True, entries=[])

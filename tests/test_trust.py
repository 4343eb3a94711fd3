"""L1/L2: the trust files the libvirt and Docker providers read on the machine running Pulumi.

pulumi-libvirt 0.5.4 connects while it is configured, already in the first preview, and reads its
known_hosts and key files then: the program writes them itself before the providers are configured
(the first real preview failed without them, issue 23), with the very bytes the trust Command
writes at up and removes at destroy.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from components.hosts.trust import host_trust, write_trust_files
from plan.mocks import planned_private_key
from plan.run import load_stack, run_program

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"


def dev_with_key():
    config, _ = load_stack("dev")
    config.values["hosts"][0]["hostKey"] = HOST_KEY
    _, fleet = load_stack("dev")
    return config, fleet.model_copy(update={"hosts": (fleet.hosts[0].model_copy(update={"host_key": HOST_KEY}),)})


def run_script(script: str, home: Path, stdin: str | None = None) -> None:
    subprocess.run(
        ["bash", "-c", script], input=stdin, text=True, check=True, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}
    )


def tree(home: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(home)): (stat.S_IMODE(p.stat().st_mode), p.read_bytes() if p.is_file() else b"")
        for p in sorted(home.rglob("*"))
    }


def test_the_program_writes_what_the_command_writes(tmp_path):
    _config, fleet = dev_with_key()
    trust = host_trust(fleet, fleet.hosts[0], "dev")
    key = planned_private_key()
    by_program, by_command = tmp_path / "program", tmp_path / "command"
    by_program.mkdir()
    by_command.mkdir()
    written = write_trust_files(trust, key, str(by_program))
    run_script(trust.write_script(), by_command, stdin=key)
    assert tree(by_program) == tree(by_command)
    assert written == str(by_program / ".virtfleet" / "dev" / "devbox")
    assert (by_program / ".virtfleet/dev/devbox/known_hosts").read_text() == f"10.10.0.2 {HOST_KEY}\n"
    # Every level it makes is private, the files are 0600, and the key ends in its newline.
    assert {mode for mode, _ in tree(by_program).values()} == {0o700, 0o600}
    assert (by_program / ".virtfleet/dev/devbox/id").read_text() == key and key.endswith("\n")
    # destroy's script removes the files, then the host's and the stack's directories once empty.
    run_script(trust.delete_script(), by_program)
    assert tree(by_program) == {".virtfleet": (0o700, b"")}


def test_the_program_writes_them_where_the_providers_look(tmp_path):
    """Under the mocks with an operator home (a real run's ~): the files exist with the stack's key and
    pinned host key where the libvirt URI names them (that they exist before the provider connects,
    the real engine shows: tests/test_lab_dev.py's first preview)."""
    config, _ = dev_with_key()
    rec = run_program(config, operator_home=str(tmp_path))
    directory = tmp_path / ".virtfleet" / "dev" / "devbox"
    assert (directory / "known_hosts").read_text() == f"10.10.0.2 {HOST_KEY}\n"
    assert (directory / "id").read_text() == planned_private_key()
    query = parse_qs(urlsplit(rec.named("devbox-libvirt", "pulumi:providers:libvirt").inputs["uri"]).query)
    assert query["knownhosts"] == ["${HOME}/.virtfleet/dev/devbox/known_hosts"]
    assert query["keyfile"] == ["${HOME}/.virtfleet/dev/devbox/id"]
    # The plan (no operator home) writes nothing anywhere.
    home = Path(os.environ.get("HOME", "/root"))
    before = (home / ".virtfleet" / "dev").exists()
    run_program(config)
    assert (home / ".virtfleet" / "dev").exists() == before

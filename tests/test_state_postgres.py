"""Team state (issue 20): stacks kept in PostgreSQL through the real CLI's DIY backend (`postgres://`).

The server is a real PostgreSQL (Debian's packages) that each module run creates with
engine/backend-db.sh (what `make backend-db` runs: TLS with verify-full, a least-privilege role, the
password in a pgpass file) in a temporary directory on a free port of 127.0.0.1, and stops and removes
at the end. The engine is the real CLI and Python language host that `make engine` built.

A provider-free program (tests/support/state_program: components, stack outputs, a config secret and a
secret output, and one resource of the Python SDK's dynamic provider whose create can be held
half-way), so these run without provider plugins and in seconds: the backend's part - locking,
pending operations, recovery, backup - which does not depend on what the resources are. The same
on the lab's stack with real guests: tests/test_lab_team_state.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.statedb import LOCKED, StateDb, StateProject, free_port, kill_tree, pgbin, process_alive, running_in
from support.tools import missing, require_root, require_tool

from plan.run import ROOT

pytestmark = pytest.mark.real

TOKEN = "tok-3f9a-Very-Secret-Value"


@pytest.fixture(scope="module")
def db():
    if not (ROOT / ".engine" / "bin" / "pulumi").exists():
        missing("the engine is not built (run 'make engine')")
    require_root()
    require_tool("go")
    require_tool("openssl")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        missing("PostgreSQL is not installed (apt-get install postgresql)")
    server = StateDb()
    try:
        yield server.start()
    finally:
        server.close()
    assert not server.dir.exists()
    left = subprocess.run(["pgrep", "-f", f"{server.dir}/data"], capture_output=True, text=True)
    assert left.returncode == 1 and left.stdout == "", "a postgres of the test is still running"


@pytest.fixture
def project(db, tmp_path):
    project = StateProject(tmp_path / "project", db.url, db.passfile)
    yield project
    # Nothing of the test's commands keeps running (the CLI and its plugins run in the project).
    assert running_in(project.path) == {}


def wait_for(path: Path, proc: subprocess.Popen, limit: float = 90) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the update ended before {path.name} appeared:\n{proc.stdout.read()}")
        assert time.monotonic() < deadline, f"{path} did not appear within {limit}s"
        time.sleep(0.1)


def normalized(exported: dict) -> dict:
    """stack export without what differs between two backends or two runs of the same history: times,
    the manifest, the secrets provider's salt, ciphertexts (random nonces) and the order of resources."""

    def walk(value):
        if isinstance(value, dict):
            if "ciphertext" in value:
                return "<secret>"
            return {k: walk(v) for k, v in value.items() if k not in ("created", "modified", "time", "magic")}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    deployment = dict(exported["deployment"])
    deployment.pop("manifest")
    deployment.pop("secrets_providers")
    # Components register concurrently: their order in the state is not part of the history.
    deployment["resources"] = sorted(deployment.get("resources") or [], key=lambda r: r["urn"])
    return {"version": exported["version"], "deployment": walk(deployment)}


def test_a_stack_lives_in_postgres_like_in_the_file_backend_and_its_row_holds_no_secret(db, project, tmp_path):
    """Created, updated and destroyed through PostgreSQL; the same history through the file backend
    exports the same deployment; the rows hold the state (base64 JSON) with the secret encrypted; a
    teammate with the passphrase reads the secret, one without cannot; the stack moves to a file
    backend and back with export/import (docs/team-state.md, "Working as a team")."""
    stack = "life"
    project.new_stack(stack, TOKEN)
    project.pulumi("up", "--yes", "--skip-preview", "--stack", stack)
    project.pulumi("config", "set", "--stack", stack, "boxes", "3")
    project.pulumi("up", "--yes", "--skip-preview", "--stack", stack)
    in_postgres = project.export(stack)

    files = tmp_path / "file-state"
    files.mkdir()
    local = {"PULUMI_BACKEND_URL": f"file://{files}"}
    project.pulumi("stack", "init", stack, env=local)  # same stack file: same encryption salt and config
    project.pulumi("config", "set", "--stack", stack, "boxes", "2", env=local)
    project.pulumi("up", "--yes", "--skip-preview", "--stack", stack, env=local)
    project.pulumi("config", "set", "--stack", stack, "boxes", "3", env=local)
    project.pulumi("up", "--yes", "--skip-preview", "--stack", stack, env=local)
    in_files = json.loads(project.pulumi("stack", "export", "--stack", stack, env=local).stdout)
    assert normalized(in_postgres) == normalized(in_files)
    types = [r["type"] for r in in_postgres["deployment"]["resources"]]
    assert types.count("statetest:index:Box") == 3 and types.count("statetest:index:Lid") == 3

    outputs = project.outputs(stack)
    assert outputs == {
        "count": 3,
        "names": ["box-0", "box-1", "box-2"],
        "token": TOKEN,
        "greeting": f"hello {TOKEN}",
    }
    raw, state = db.blob(f"/.pulumi/stacks/statetest/{stack}.json")
    assert TOKEN not in raw and TOKEN not in state.decode()
    checkpoint = json.loads(state)["checkpoint"]["latest"]
    stack_outputs = checkpoint["resources"][0]["outputs"]
    assert set(stack_outputs["token"]) >= {"ciphertext"} and set(stack_outputs["greeting"]) >= {"ciphertext"}
    history_rows = [k for k in db.rows() if f"/.pulumi/history/statetest/{stack}/" in k]
    assert len([k for k in history_rows if k.endswith(".history.json")]) == 2
    for key in history_rows:
        assert TOKEN not in db.blob(key.split("/", 1)[1])[1].decode()

    # A teammate: the passphrase decrypts, another does not (and nothing is printed in clear).
    wrong = project.path / "wrong"
    wrong.write_text("not the passphrase\n")
    refused = project.pulumi(
        "stack",
        "output",
        "--show-secrets",
        "--stack",
        stack,
        check=False,
        env={"PULUMI_CONFIG_PASSPHRASE_FILE": str(wrong)},
    )
    assert refused.returncode != 0 and "incorrect passphrase" in refused.stderr
    assert TOKEN not in refused.stdout + refused.stderr

    # Out to a local folder and back in (docs/team-state.md): export, init, import.
    exported = project.path / "life.json"
    project.pulumi("stack", "export", "--stack", stack, "--file", str(exported))
    moved = tmp_path / "moved-state"
    moved.mkdir()
    away = {"PULUMI_BACKEND_URL": f"file://{moved}"}
    project.pulumi("stack", "init", stack, env=away)
    project.pulumi("stack", "import", "--stack", stack, "--file", str(exported), env=away)
    assert normalized(json.loads(project.pulumi("stack", "export", "--stack", stack, env=away).stdout)) == normalized(
        in_postgres
    )

    project.pulumi("destroy", "--yes", "--skip-preview", "--stack", stack)
    assert project.export(stack)["deployment"].get("resources") in (None, [])
    assert [h["kind"] for h in project.history(stack)] == ["destroy", "update", "update"]
    project.pulumi("stack", "rm", "--yes", "--stack", stack)
    assert not [k for k in db.rows() if k.endswith(f"/.pulumi/stacks/statetest/{stack}.json")]

    # And a local stack moved into PostgreSQL: the file backend's copy of the same history.
    project.pulumi("stack", "export", "--stack", stack, "--file", str(exported), env=local)
    project.pulumi("stack", "init", stack)
    project.pulumi("stack", "import", "--stack", stack, "--file", str(exported))
    assert normalized(project.export(stack)) == normalized(in_files)
    assert project.outputs(stack) == outputs


def test_two_ups_at_once_one_runs_the_other_is_refused_with_the_lock_message(db, project):
    stack = "race"
    marker, gate = project.path / "started", project.path / "gate"
    project.new_stack(stack, TOKEN, marker=str(marker), gate=str(gate))
    first = project.popen("up", "--yes", "--skip-preview", "--stack", stack)
    try:
        wait_for(marker, first)  # the first update holds the lock and is half-way
        locks = [k for k in db.rows() if f"/.pulumi/locks/organization/statetest/{stack}/" in k]
        assert len(locks) == 1
        second = project.pulumi("up", "--yes", "--skip-preview", "--stack", stack, check=False)
        assert second.returncode != 0
        assert LOCKED.search(second.stderr), second.stdout + second.stderr
        assert LOCKED.search(second.stderr).group(1) == "1"
        assert f"(pid {first.pid})" in second.stderr  # the holder: the first CLI (engine/pulumi execs it)
        gate.write_text("open\n")
        assert first.wait(timeout=120) == 0, first.stdout.read()
    finally:
        if first.poll() is None:
            kill_tree(first)
    assert not [k for k in db.rows() if "/.pulumi/locks/" in k]
    project.pulumi("preview", "--expect-no-changes", "--stack", stack)
    resources = project.export(stack)["deployment"]["resources"]
    gated = [r for r in resources if r["type"] == "pulumi-python:dynamic:Resource"]
    assert len(gated) == 1 and gated[0]["id"] == "gated-slow"
    assert [h["kind"] for h in project.history(stack)] == ["update"]


def test_an_up_killed_half_way_is_reported_and_the_documented_recovery_converges(db, project):
    """SIGKILL of the CLI, then of its language host and provider (each in a process group of its own),
    mid-create, as when the operator's machine dies: the lock stays and the create is
    a pending operation in the exported state. Recovery as docs/team-state.md says: `pulumi
    cancel`, `pulumi refresh --clear-pending-creates` (the create never finished), `pulumi up`."""
    stack = "killed"
    marker, gate = project.path / "started", project.path / "gate"
    project.new_stack(stack, TOKEN, marker=str(marker), gate=str(gate))
    proc = project.popen("up", "--yes", "--skip-preview", "--stack", stack)
    try:
        wait_for(marker, proc)
    finally:
        killed = kill_tree(proc)
    assert len(killed) >= 2  # the language host and the dynamic provider (at least)
    assert not [pid for pid in killed if process_alive(pid)]

    again = project.pulumi("up", "--yes", "--skip-preview", "--stack", stack, check=False)
    assert again.returncode != 0 and LOCKED.search(again.stderr), again.stdout + again.stderr
    pending = project.export(stack)["deployment"]["pending_operations"]
    assert [(p["type"], p["resource"]["type"]) for p in pending] == [("creating", "pulumi-python:dynamic:Resource")]

    project.pulumi("cancel", "--yes", "--stack", stack)
    assert not [k for k in db.rows() if "/.pulumi/locks/" in k]
    # Adopting what is not a pending create (a typo in the URN) changes nothing and says why.
    rows = db.rows()
    adopt = subprocess.run(
        [ROOT / "engine" / "adopt-pending.sh", stack, "urn:pulumi:killed::statetest::no:such:Thing::x", "id-1"],
        cwd=project.path, env=project.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert adopt.returncode == 1 and "is not a pending create of stack killed; nothing was changed" in adopt.stderr
    assert db.rows() == rows
    project.pulumi("refresh", "--yes", "--skip-preview", "--clear-pending-creates", "--stack", stack)
    assert not project.export(stack)["deployment"].get("pending_operations")
    gate.write_text("open\n")
    project.pulumi("up", "--yes", "--skip-preview", "--stack", stack)
    deployment = project.export(stack)["deployment"]
    assert not deployment.get("pending_operations")
    assert [r["type"] for r in deployment["resources"]].count("pulumi-python:dynamic:Resource") == 1
    assert project.outputs(stack)["gated"] == "gated-slow"


def test_backup_and_restore_of_the_state_table_brings_history_and_outputs_back(db, project, tmp_path):
    stack = "backup"
    project.new_stack(stack, TOKEN)
    project.pulumi("up", "--yes", "--skip-preview", "--stack", stack)
    history, outputs = project.history(stack), project.outputs(stack)
    rows = db.rows()

    dump = tmp_path / "state.dump"
    with dump.open("wb") as out:  # docs/team-state.md: pg_dump by the administrator, the state table only
        subprocess.run(
            [*db.client("pg_dump"), "-Fc", "-t", "pulumi_state", "pulumi_state"],
            stdout=out,
            check=True,
            timeout=60,
        )
    db.admin("psql", "-X", "-d", "pulumi_state", "-c", "DROP TABLE pulumi_state")
    lost = project.pulumi("stack", "ls", check=False)
    # The role may not create the table again: the loss is reported, not papered over.
    assert lost.returncode != 0 and "failed to create table pulumi_state" in lost.stderr, lost.stderr

    restore = subprocess.run(
        [*db.client("pg_restore"), "-d", "pulumi_state"],
        stdin=dump.open("rb"),
        capture_output=True,
        timeout=60,
    )
    assert restore.returncode == 0, restore.stderr
    assert db.rows() == rows
    assert project.history(stack) == history
    assert project.outputs(stack) == outputs
    project.pulumi("config", "set", "--stack", stack, "boxes", "1")
    project.pulumi("up", "--yes", "--skip-preview", "--stack", stack)  # the restored grants let the role write again
    assert project.outputs(stack)["count"] == 1


@pytest.mark.parametrize("case", ["wrong password", "unreachable server", "missing database"])
def test_bad_connection_input_is_a_clear_error_that_touches_nothing(db, project, tmp_path, case):
    url, env = db.url, {}
    password = db.passfile.read_text().strip().rsplit(":", 1)[1]
    if case == "wrong password":
        bad = tmp_path / "pgpass"
        bad.write_text(db.passfile.read_text().replace(password, "not-the-password"))
        bad.chmod(0o600)
        env["PGPASSFILE"] = str(bad)
        expected = 'password authentication failed for user "pulumi"'
    elif case == "unreachable server":
        url = url.replace(f":{db.port}/", f":{free_port()}/")
        expected = "connection refused"
    else:
        url = url.replace("/pulumi_state?", "/nosuchdb?")
        expected = 'database "nosuchdb"'
    env["PULUMI_BACKEND_URL"] = url
    before = db.rows()
    for argv in (("stack", "ls"), ("stack", "init", "bad"), ("up", "--yes", "--skip-preview", "--stack", "bad")):
        done = project.pulumi(*argv, check=False, env=env)
        output = done.stdout + done.stderr
        assert done.returncode != 0
        assert "failed to ping PostgreSQL" in output and expected in output, output
        assert password not in output
        # The CLI (v3.274.1) sometimes exits on this error with its Python language host still running
        # (seen once in a few runs, on `up`); nothing else may be left, and that one is stopped here.
        for pid, command in running_in(project.path).items():
            assert "pulumi-language-python" in command, command
            os.kill(pid, signal.SIGKILL)
    assert db.rows() == before
    assert not (project.path / "Pulumi.bad.yaml").exists()


def test_the_state_role_is_least_privilege_tls_only_and_its_password_is_nowhere_in_clear(db):
    """engine/backend-db.sh's role, connecting as the CLI does (TLS verify-full, password from PGPASSFILE):
    it reads and writes rows of the state table and nothing else; without TLS, or to another database,
    it is not let in; the password is in the 0600 pgpass file only (not in the server's log)."""

    def as_role(sql: str, **conninfo: str) -> subprocess.CompletedProcess:
        params = {
            "host": "127.0.0.1",
            "port": str(db.port),
            "dbname": "pulumi_state",
            "user": "pulumi",
            "sslmode": "verify-full",
            "sslrootcert": str(db.dir / "root.crt"),
            **conninfo,
        }
        dsn = " ".join(f"{k}={v}" for k, v in params.items())
        return subprocess.run(
            [str(pgbin() / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql],
            env={"PATH": "/usr/bin:/bin", "PGPASSFILE": str(db.passfile)},
            capture_output=True,
            text=True,
            timeout=30,
        )

    ok = as_role(
        "INSERT INTO pulumi_state (key, data) VALUES ('probe', '{}'); DELETE FROM pulumi_state WHERE key = 'probe'"
    )
    assert ok.returncode == 0, ok.stderr
    assert as_role("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").stdout.strip() == "t"
    for sql, error in (
        ("CREATE TABLE other (x int)", "permission denied for schema public"),
        ("DROP TABLE pulumi_state", "must be owner of table pulumi_state"),
        ("ALTER TABLE pulumi_state ADD COLUMN x int", "must be owner of table pulumi_state"),
        ("TRUNCATE pulumi_state", "permission denied for table pulumi_state"),
    ):
        refused = as_role(sql)
        assert refused.returncode != 0 and error in refused.stderr, (sql, refused.stderr)
    plain = as_role("SELECT 1", sslmode="disable")
    assert plain.returncode != 0 and "no encryption" in plain.stderr, plain.stderr
    other = as_role("SELECT 1", dbname="postgres")
    assert other.returncode != 0 and 'database "postgres"' in other.stderr, other.stderr
    assert db.passfile.stat().st_mode & 0o777 == 0o600
    password = db.passfile.read_text().strip().rsplit(":", 1)[1]
    logs = "".join(p.read_text(errors="replace") for p in (db.dir / "log").iterdir())
    assert "connection authorized: user=pulumi database=pulumi_state" in logs and password not in logs
    assert password not in " ".join(db.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'pulumi'")[0])

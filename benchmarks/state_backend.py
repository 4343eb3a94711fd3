"""Benchmark: the same `pulumi up` with its state in the local file backend and in PostgreSQL.

One run of each, as a ratio: the real CLI that `make engine` built, the provider-free program of the
state tests (tests/support/state_program; virtfleet's own program cannot get past its first provider
plugin on this machine) with BOXES components (each with a child: 2*BOXES+1 resources, every one a
checkpoint write), created from an empty stack. PostgreSQL is engine/backend-db.sh's cluster (TLS,
verify-full, the least-privilege role) in a temporary directory on 127.0.0.1, stopped and removed at
the end. Run as root: `make bench`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.statedb import StateDb, StateProject  # noqa: E402

BOXES = 30


def timed_up(project: StateProject, env: dict) -> float:
    project.pulumi("stack", "init", "bench", env=env)
    project.pulumi("config", "set", "--secret", "--stack", "bench", "token", stdin="bench-token", env=env)
    project.pulumi("config", "set", "--stack", "bench", "boxes", str(BOXES), env=env)
    start = time.monotonic()
    project.pulumi("up", "--yes", "--skip-preview", "--stack", "bench", env=env)
    return time.monotonic() - start


def main() -> None:
    db = StateDb().start()
    try:
        with tempfile.TemporaryDirectory(prefix="vf-bench-state-") as tmp:
            project = StateProject(Path(tmp) / "project", db.url, db.passfile)
            files = Path(tmp) / "file-state"
            files.mkdir()
            file_s = timed_up(project, {"PULUMI_BACKEND_URL": f"file://{files}"})
            (project.path / "Pulumi.bench.yaml").unlink()
            pg_s = timed_up(project, {})
    finally:
        db.close()
    print(f"pulumi up, {2 * BOXES + 1} resources created, one run each:")
    print(f"  file backend  {file_s:6.2f} s")
    print(f"  PostgreSQL    {pg_s:6.2f} s  (TLS, 127.0.0.1)")
    print(f"  ratio PostgreSQL / file: {pg_s / file_s:.2f}")


if __name__ == "__main__":
    main()

"""Benchmark: `pulumi up` of the dev topology in the lab, against the engine's floor and on both
state backends.

One run each, as ratios, in one lab (``make lab``'s, in a temporary directory):

- the dev stack's `up` from empty with its state in the local file backend (twice: the first run
  also warms the host's caches - base image, Docker images - so the second is the one compared),
  and with its state in PostgreSQL (engine/backend-db.sh's server in the operator's namespace, TLS
  verify-full, as a team runs it), each destroyed afterwards;
- a bare Pulumi Python program that registers the same number of ``command.remote.Command``
  resources (each runs ``true``) against the same lab host over the same SSH connection settings:
  what any Pulumi program pays for that many resources over SSH; the rest is virtfleet's
  (rendering, QEMU, dockerd, the steps' work).

Needs root, the engine, PostgreSQL and the provider plugins (`make plugins`). Run: `make bench`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.lab_run import lab_for, missing_plugins  # noqa: E402
from support.statedb import StateDb  # noqa: E402

BARE_PROGRAM = '''\
"""N command.remote.Command resources running `true` on one host: the engine's floor."""
import pulumi
import pulumi_command as command

config = pulumi.Config()
connection = command.remote.ConnectionArgs(
    host=config.require("host"), user="root", host_key=config.require("hostKey"),
    private_key=config.require_secret("key"), dial_error_limit=20, per_dial_timeout=30,
)
for n in range(config.require_int("count")):
    command.remote.Command(f"step-{n}", connection=connection, create="true")
'''


def timed(lab, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    lab.pulumi(*args, cwd=cwd, env=env)
    return time.monotonic() - start


def up_and_destroy(lab, env: dict[str, str] | None = None) -> float:
    seconds = timed(lab, "up", "--yes", "--skip-preview", "--stack", "lab", env=env)
    lab.pulumi("destroy", "--yes", "--skip-preview", "--stack", "lab", env=env)
    return seconds


def main() -> int:
    missing = missing_plugins()
    if missing:
        print(f"lab_up: provider plugins missing (make plugins): {', '.join(missing)}")
        return 1
    with tempfile.TemporaryDirectory(prefix="vf-bench-lab-") as tmp:
        labs = lab_for("dev", Path(tmp))
        lab = next(labs)
        try:
            first_s = up_and_destroy(lab)
            dev_s = timed(lab, "up", "--yes", "--skip-preview", "--stack", "lab")
            count = len(json.loads(lab.pulumi("stack", "export", "--stack", "lab").stdout)["deployment"]["resources"])
            count -= 1  # the stack itself
            lab.pulumi("destroy", "--yes", "--skip-preview", "--stack", "lab")
            db = StateDb(netns=lab.operator_ns).start()
            try:
                team = {"PULUMI_BACKEND_URL": db.url, "PGPASSFILE": str(db.passfile)}
                lab.pulumi("stack", "init", "lab", env=team)
                postgres_s = up_and_destroy(lab, team)
                lab.pulumi("stack", "rm", "--yes", "--stack", "lab", env=team)
            finally:
                db.close()
            bare = Path(tmp) / "bare"
            bare.mkdir()
            (bare / "Pulumi.yaml").write_text("name: bare\nruntime:\n  name: python\n")
            (bare / "__main__.py").write_text(BARE_PROGRAM)
            (bare / ".venv").symlink_to(ROOT / ".venv")
            lab.pulumi("stack", "init", "bare", cwd=bare)
            host = lab.topology.machines[0]
            settings = {
                "host": host.addresses[0].split("/")[0],
                "hostKey": lab.views[host.name].host_public_key,
                "count": str(count),
            }
            for key, value in settings.items():
                lab.pulumi("config", "set", "--stack", "bare", key, value, cwd=bare)
            lab.pulumi(
                "config", "set", "--secret", "--stack", "bare", "key", stdin=lab.operator_key.read_text(), cwd=bare
            )
            bare_s = timed(lab, "up", "--yes", "--skip-preview", "--stack", "bare", cwd=bare)
            lab.pulumi("destroy", "--yes", "--stack", "bare", cwd=bare)
        finally:
            next(labs, None)
    print(f"pulumi up in the lab, {count} resources created, one run each:")
    print(f"  dev topology, file state (first, caches cold) {first_s:6.2f} s")
    print(f"  dev topology, file state                      {dev_s:6.2f} s")
    print(f"  dev topology, PostgreSQL state                {postgres_s:6.2f} s")
    print(f"  bare program, {count} remote Commands           {bare_s:6.2f} s")
    print(f"  ratio PostgreSQL / file: {postgres_s / dev_s:.2f}")
    print(f"  ratio dev / bare: {dev_s / bare_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

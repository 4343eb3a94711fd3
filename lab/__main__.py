"""``python -m lab up|down|status|pulumi`` (``make lab`` / ``make lab-down``; docs/lab.md).

[--stack dev] up     build the lab of Pulumi.<stack>.yaml (once), `pulumi up`, start the balancer
[--stack dev] down   `pulumi destroy`, then every namespace, process, cgroup and file of the lab
[--stack dev] status what runs
[--stack dev] pulumi -- ARGS   the project's engine/pulumi as the lab's operator
[--stack dev] shell -- MACHINE COMMAND   a command on a lab machine over SSH ("operator": in its namespace)
"""

from __future__ import annotations

import argparse
import json
import sys

from .core import Lab, LabError
from .stack import IMAGE_PORT


def _lab(source: str) -> Lab:
    return Lab(source)


def up(lab: Lab) -> int:
    lab.create()
    lab.say(f"[5/5] pulumi up --stack {lab.stack} (the real engine and provider plugins; progress below)")
    done = lab.pulumi("up", "--yes", "--stack", lab.stack, "--suppress-progress", check=False, stream=True)
    if done.returncode != 0:
        lab.say(f"lab {lab.stack}: pulumi up failed (above); the lab stays up to look at it. "
                f"Fix, then `make lab` again; `make lab-down` removes it.")  # fmt: skip
        return done.returncode
    node = lab.start_services()
    outputs = json.loads(lab.pulumi("stack", "output", "--json", "--stack", lab.stack).stdout or "{}")
    lab.say("\nStack outputs (secrets hidden):")
    for key, value in outputs.items():
        lab.say(f"  {key}: {json.dumps(value)}")
    ip = lab.topology.operator_ip
    lab.say(
        f"""
The lab runs {lab.source}'s topology for real: libvirtd/QEMU and dockerd where the stack has them,
the EL tools as stateful fakes (tests/fakes/README.md); no guest OS boots here, so each guest the
program logs in to is a stand-in (an sshd view at its address). Images come from {ip}:{IMAGE_PORT}.
{"HAProxy runs for real on " + node + "." if node else ""}

Try next:
  lab/pulumi preview --expect-no-changes         # the operator's pulumi (namespace {lab.operator_ns})
  lab/pulumi stack output frontendUrl
  lab/shell {lab.topology.machines[0].name} virsh list --all         # a command on a lab machine, over SSH
  lab/shell operator curl -s {outputs.get("frontendUrl", "http://" + ip)}
  make lab-down                                   # destroy and remove everything
"""
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev", help="the committed stack the lab deploys (dev, prod)")
    parser.add_argument("action", choices=("up", "down", "status", "pulumi", "shell", "drift"))
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    lab = _lab(args.stack)
    try:
        if args.action == "up":
            return up(lab)
        if args.action == "down":
            problems = lab.teardown()
            for problem in problems:
                print(f"lab-down: {problem}", file=sys.stderr)
            print(f"lab {lab.stack}: removed" + (" (with the problems above)" if problems else ""))
            return 1 if problems else 0
        if not lab.running():
            print(f"lab {lab.stack} is not running: `make lab STACK={args.stack}` starts it", file=sys.stderr)
            return 1
        rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        if args.action == "status":
            for name, view in lab.views.items():
                print(f"{name}: view pid {view.init_pid()}")
            return 0
        if args.action == "pulumi":
            return lab.pulumi(*rest, check=False, stream=True).returncode
        if args.action == "drift":
            return lab.drift(*rest, check=False, stream=True).returncode
        machine, *command = rest
        if machine == "operator":
            import subprocess

            return subprocess.run(
                ["nsenter", f"--net=/run/netns/{lab.operator_ns}", "--", *command], check=False
            ).returncode
        done = lab.ssh(machine, " ".join(command), check=False)
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        return done.returncode
    except LabError as err:
        print(f"lab: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

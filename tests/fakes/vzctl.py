#!/usr/bin/env -S python3 -S
"""Fake ``vzctl`` (OpenVZ): containers that exist, run and execute commands in their own files.

``create CTID --ostemplate T [--config C] [--hostname H] [--ipadd IP] [--name N]``, ``start``,
``stop [--fast]``, ``restart``, ``status``, ``exec``/``exec2 CTID command [arg ...]``,
``destroy``/``delete``. Syntax, output and exit codes follow vzctl(8): ``status`` prints
``CTID 101 exist mounted running`` (or ``deleted unmounted down``) and exits 0; 20 bad syntax,
8 the command run by ``exec`` failed (``exec2`` returns the command's own status), 14 no
container config, 31 not running, 32 already running, 44 private area exists, 29 no OS template,
91 unknown OS template; 5 when the OpenVZ kernel part is not there (vz.service not active in the
fake systemd), as on a host that did not boot the vzkernel.

A container is an entry in ``vz.json`` plus ``/etc/vz/conf/CTID.conf`` and a root directory in
the fakes' state, ``/var/lib/virtfleet-fakes/vz/root/CTID`` (a real host mounts
/vz/private/CTID on /vz/root/CTID; /vz lies outside the throwaway view's overlays). ``create``
seeds it from the template: ``/etc/redhat-release`` (EL7 or EL9 for the fakes inside), the
hostname, empty /var, /tmp, /run. ``start`` gives it a fresh /run (with the view's marker, so the
fakes run inside it); ``stop`` empties /run.

``exec``/``exec2`` join the arguments with spaces and run ``bash -c`` on them (``-`` alone: bash
reads the commands from stdin), as vzctl does, with vzctl's environment (HOME=/, TERM=linux and
a PATH that starts with these fakes) inside the container's context: own mount, UTS and PID
namespaces where the container's /etc, /var, /boot, /root, /home, /srv, /opt, /tmp and /run lie
over the view's. So steps and fakes run inside see and change the container's files and its own
fake state (packages, units, firewall), never the host's. /usr (with bash, coreutils, Python) is
the host's, where a real container has the template's.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import fakelib

FAKES_BIN = Path(__file__).resolve().parent / "bin"
ROOTS = fakelib.STATE_DIR / "vz" / "root"
CONF_DIR = Path("/etc/vz/conf")
CONTAINER_DIRS = ("etc", "boot", "root", "home", "srv", "opt", "tmp", "run", "var")  # var last: ROOTS is in it
TEMPLATES = {
    "centos-7-x86_64": "CentOS Linux release 7.9.2009 (Core)\n",
    "centos-7-x86_64-minimal": "CentOS Linux release 7.9.2009 (Core)\n",
    "almalinux-8-x86_64": "AlmaLinux release 8.9 (Midnight Oncilla)\n",
    "almalinux-9-x86_64": "AlmaLinux release 9.3 (Shamrock Pampas Cat)\n",
    "centos-9-stream-x86_64": "CentOS Stream release 9\n",
}
# The container's /tmp, /root, /home... hide the host's, and with them this repository wherever it
# was cloned: its fakes are bind-mounted at EXEC_FAKES first, a directory no container shadows.
EXEC_FAKES = "/mnt"
EXEC_PATH = f"{EXEC_FAKES}/bin:/bin:/sbin:/usr/bin:/usr/sbin"
CREATE_OPTIONS = {"--ostemplate", "--config", "--hostname", "--ipadd", "--name", "--private", "--root", "--layout"}
STARTSTOP_OPTIONS = {"start": {"--wait", "--force"}, "stop": {"--fast"}, "restart": {"--wait", "--force", "--fast"}}
ACTIONS = {"create", "start", "stop", "restart", "status", "exec", "exec2", "destroy", "delete"}
# Runs inside the new namespaces: the container's directories over the view's, then its command.
ENTER = """\
set -e
root=$1 name=$2 mode=$3 command=$4
mount --bind "$7" "$8"
for d in $5; do [ -d "/$d" ] && mount --bind "$root/$d" "/$d"; done
hostname "$name"
cd /
set +e
if [ "$command" = "- " ]; then
  env -i HOME=/ TERM=linux PATH="$6" /bin/bash
else
  env -i HOME=/ TERM=linux PATH="$6" /bin/bash -c "$command"
fi
rc=$?
if [ "$mode" = exec ] && [ "$rc" != 0 ]; then exit 8; fi
exit "$rc"
"""


def main(prog: str, argv: list[str]) -> int:
    while argv and argv[0] in ("--quiet", "--verbose", "--skiplock"):
        argv = argv[1:]
    if argv[:1] == ["--version"]:
        print("vzctl version 7.0.217")
        return 0
    if not argv:
        fakelib.fail("Usage: vzctl [options] <command> <ctid> [parameters]", 20)
    action, rest = argv[0], argv[1:]
    if action not in ACTIONS:
        fakelib.fail(f"Bad command: {action}", 20)
    if not rest:
        fakelib.fail("CT ID is not given", 21)
    if not re.fullmatch(r"\d+", rest[0]) or int(rest[0]) <= 100:
        fakelib.fail(f"Bad CT ID {rest[0]}" if not rest[0].isdigit() else "CT ID <= 100 is reserved", 21)
    ctid, args = rest[0], rest[1:]
    if not fakelib.unit_active("vz"):
        fakelib.fail(
            "Unable to open /dev/vzctl: No such file or directory\n"
            "Please check that vzdev kernel module is loaded and you have sufficient permissions to access the file.",
            5,
        )
    state = fakelib.load("vz", {"containers": {}})
    ct = state["containers"].get(ctid)
    if action not in ("create", "status") and ct is None:
        fakelib.fail("Container config file does not exist", 14)
    if action == "create":
        code = create(state, ctid, args)
    elif action == "status":
        running = bool(ct and ct["running"])
        print(f"CTID {ctid} {'exist' if ct else 'deleted'} {'mounted running' if running else 'unmounted down'}")
        return 0
    elif action in ("exec", "exec2"):
        if not args:
            fakelib.fail("No command line given for exec", 20)
        if not ct["running"]:
            fakelib.fail("Container is not running", 31)
        enter(ctid, ct, action, args)
    else:
        allowed = STARTSTOP_OPTIONS.get(action, set())
        for arg in args:
            if arg not in allowed:
                fakelib.fail(f"Invalid option '{arg}'" if arg.startswith("-") else f"Invalid options: {arg}", 20)
        code = {"start": start, "stop": stop, "restart": restart, "destroy": destroy, "delete": destroy}[action](
            state, ctid, ct
        )
    fakelib.save("vz", state)
    return code


def create(state: dict, ctid: str, args: list[str]) -> int:
    options = {}
    while args:
        option, _, value = args[0].partition("=")
        if option not in CREATE_OPTIONS:
            fakelib.fail(f"{sys.argv[0]}: unrecognized option '{args[0]}'", 20)
        if not value:
            if len(args) < 2:
                fakelib.fail(f"{sys.argv[0]}: option '{option}' requires an argument", 20)
            value, args = args[1], args[1:]
        options[option.lstrip("-")] = value
        args = args[1:]
    if ctid in state["containers"]:
        fakelib.fail(
            f"Private area already exists in /vz/private/{ctid}\nCreation of container private area failed", 44
        )
    template = options.get("ostemplate")
    if template is None:
        fakelib.fail("Error: required --ostemplate parameter is not given", 29)
    if template not in TEMPLATES:
        fakelib.fail(f"Cached OS template {template} not found\nCreation of container private area failed", 91)
    root = ROOTS / ctid
    for directory in CONTAINER_DIRS:
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "root").chmod(0o700)
    fakelib.write_file(root / "etc/redhat-release", TEMPLATES[template])
    hostname = options.get("hostname", "localhost.localdomain")
    fakelib.write_file(root / "etc/hostname", hostname + "\n")
    state["containers"][ctid] = {
        "ostemplate": template, "hostname": hostname, "ip": options.get("ipadd", ""),
        "name": options.get("name", ""), "running": False,
    }  # fmt: skip
    write_conf(ctid, state["containers"][ctid])
    print(f"Creating container private area ({template})\nPerforming postcreate actions")
    print(f"CT configuration saved to {CONF_DIR}/{ctid}.conf\nContainer private area was created")
    return 0


def write_conf(ctid: str, ct: dict) -> None:
    fakelib.write_file(
        CONF_DIR / f"{ctid}.conf",
        f'OSTEMPLATE="{ct["ostemplate"]}"\nVE_ROOT="/vz/root/$VEID"\nVE_PRIVATE="/vz/private/$VEID"\n'
        f'HOSTNAME="{ct["hostname"]}"\nIP_ADDRESS="{ct["ip"]}"\nNAME="{ct["name"]}"\n',
    )


def fresh_run(ctid: str) -> None:
    run = ROOTS / ctid / "run"
    shutil.rmtree(run, ignore_errors=True)
    (run / "lock").mkdir(parents=True)
    (run / fakelib.THROWAWAY_MARKER.name).touch()


def start(state: dict, ctid: str, ct: dict) -> int:
    if ct["running"]:
        fakelib.fail("Container is already running", 32)
    fresh_run(ctid)
    ct["running"] = True
    print("Starting container...\nContainer is mounted")
    if ct["ip"]:
        print(f"Adding IP address(es): {ct['ip']}")
    print(f"Setting CPU units: 1000\nSet hostname: {ct['hostname']}\nContainer start in progress...")
    return 0


def stop(state: dict, ctid: str, ct: dict) -> int:
    if not ct["running"]:
        fakelib.err("Unable to stop: container is not running")
        return 0
    shutil.rmtree(ROOTS / ctid / "run", ignore_errors=True)
    (ROOTS / ctid / "run").mkdir()
    ct["running"] = False
    print("Stopping container ...\nContainer was stopped\nContainer is unmounted")
    return 0


def restart(state: dict, ctid: str, ct: dict) -> int:
    print("Restarting container")
    if ct["running"]:
        stop(state, ctid, ct)
    return start(state, ctid, ct)


def destroy(state: dict, ctid: str, ct: dict) -> int:
    if ct["running"]:
        fakelib.fail("Container is currently running. Stop it first.", 32)
    shutil.rmtree(ROOTS / ctid, ignore_errors=True)
    (CONF_DIR / f"{ctid}.conf").rename(CONF_DIR / f"{ctid}.conf.destroyed")
    del state["containers"][ctid]
    print("Destroying container private area: /vz/private/" + ctid + "\nContainer private area was destroyed")
    return 0


def enter(ctid: str, ct: dict, action: str, args: list[str]) -> None:
    """Replace this process by the command in the container (the fakes' lock closes with exec)."""
    command = "".join(f"{a} " if a else "'' " for a in args)
    sys.stdout.flush()
    argv = [
        "unshare", "--mount", "--propagation", "private", "--uts", "--pid", "--fork", "--kill-child",
        "--mount-proc", "/bin/sh", "-c", ENTER, "vzctl-exec", str(ROOTS / ctid), ct["hostname"], action,
        command, " ".join(CONTAINER_DIRS), EXEC_PATH, str(FAKES_BIN.parent), EXEC_FAKES,
    ]  # fmt: skip
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    fakelib.run(main)

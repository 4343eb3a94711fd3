#!/usr/bin/env -S python3 -S
"""Fake ``vzctl`` (OpenVZ): containers that exist, run and execute commands in their own files.

``create CTID --ostemplate T [--config C] [--hostname H] [--ipadd IP] [--name N]``, ``set CTID
[--hostname H] [--ipadd IP[/M]]... [--ipdel IP|all]... [--nameserver IP]... [--ram N[KMG]]
[--swap N[KMG]] [--cpus N] [--diskspace N[KMGT][:N[KMGT]]] [--onboot yes|no] [--save]``,
``start``, ``stop [--fast]``, ``restart``, ``suspend``, ``resume``, ``status``,
``exec``/``exec2 CTID command [arg ...]``, ``destroy``/``delete``, ``unregister``. Syntax, output
and exit codes follow vzctl(8): ``status`` prints ``CTID 101 exist mounted running`` (or
``exist unmounted down``, ``exist unmounted down suspended``, ``deleted unmounted down``) and exits
0; 20 bad syntax (an unknown option, a bad size or yes/no), 8 the command run by ``exec`` failed
(``exec2`` returns the command's own status), 14 no container config, 31 not running, 32 already
running (or running where it must be stopped: destroy, unregister), 44 private area exists (also a
retained, unregistered one), 29 no OS template, 91 OS template not cached (``vzpkg create cache``
makes it), 16/17 suspend/resume refused; 5 when the OpenVZ kernel part is not there (vz.service not
active in the fake systemd), as on a host that did not boot the vzkernel.

``set`` without ``--save`` changes only a running container (and says the change is not saved);
with ``--save`` the config file is rewritten, and a running container gets the change live
(memory, swap, CPUs, disk quota, addresses, hostname, nameservers: all live on VSwap/ploop).
``--userpasswd`` is refused: virtfleet never puts a password on a command line, and a fake that
accepted one would hide a regression. Every invocation appends the command lines of every process
in the view (``/proc/*/cmdline``) to ``/var/log/virtfleet-fakes/cmdlines.log``, so a test can prove a
secret never sat in any process's argv while vzctl ran.

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
import subprocess
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
# A log, not state: where a snapshot of "what a step changed" does not look.
CMDLINES_LOG = Path("/var/log/virtfleet-fakes/cmdlines.log")
# OS templates with a cache on a fresh host (vzpkg.py: ``vzpkg create cache`` adds the others).
DEFAULT_CACHES = ("centos-7-x86_64", "centos-7-x86_64-minimal")
EXEC_PATH = f"{EXEC_FAKES}/bin:/bin:/sbin:/usr/bin:/usr/sbin"
CREATE_OPTIONS = {"--ostemplate", "--config", "--hostname", "--ipadd", "--name", "--private", "--root", "--layout"}
SET_OPTIONS = {
    "--hostname", "--ipadd", "--ipdel", "--nameserver", "--ram", "--swap", "--cpus", "--diskspace", "--onboot",
}  # fmt: skip
STARTSTOP_OPTIONS = {
    "start": {"--wait", "--force"}, "stop": {"--fast"}, "restart": {"--wait", "--force", "--fast"},
    "suspend": set(), "resume": set(), "destroy": set(), "delete": set(), "unregister": set(),
}  # fmt: skip
ACTIONS = {
    "create", "set", "start", "stop", "restart", "suspend", "resume", "status", "exec", "exec2",
    "destroy", "delete", "unregister",
}  # fmt: skip
PAGE_KIB = 4
SIZE = re.compile(r"^(\d+)([KMGTP]?)$", re.IGNORECASE)
UNIT_KIB = {"": None, "K": 1, "M": 1024, "G": 1024**2, "T": 1024**3, "P": 1024**4}
# What a fresh container holds that the steps read or write: the template's accounts.
TEMPLATE_FILES = {
    "etc/passwd": ("root:x:0:0:root:/root:/bin/bash\n", 0o644),
    "etc/group": ("root:x:0:\n", 0o644),
    "etc/shadow": ("root:!!:19000:0:99999:7:::\n", 0o000),
    "etc/gshadow": ("root:::\n", 0o000),
}
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
    record_cmdlines(query=action == "status")
    state = fakelib.load("vz", {"containers": {}})
    state.setdefault("caches", list(DEFAULT_CACHES))
    state.setdefault("retained", {})
    ct = state["containers"].get(ctid)
    if action not in ("create", "status") and ct is None:
        fakelib.fail("Container config file does not exist", 14)
    if action == "create":
        code = create(state, ctid, args)
    elif action == "set":
        code = set_(state, ctid, ct, args)
    elif action == "status":
        running = bool(ct and ct["running"])
        suspended = " suspended" if ct and ct.get("suspended") else ""
        power = "mounted running" if running else "unmounted down"
        print(f"CTID {ctid} {'exist' if ct else 'deleted'} {power}{suspended}")
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
        code = {
            "start": start, "stop": stop, "restart": restart, "destroy": destroy, "delete": destroy,
            "suspend": suspend, "resume": resume, "unregister": unregister,
        }[action](state, ctid, ct)  # fmt: skip
    fakelib.save("vz", state)
    return code


def parse_options(args: list[str], allowed: set[str], flags: set[str] = frozenset()) -> list[tuple[str, str]]:
    """``--opt value`` / ``--opt=value`` pairs (and bare ``flags``) in order, as vzctl's getopt
    takes them; an unknown option or a missing value exits 20."""
    pairs = []
    while args:
        option, _, value = args[0].partition("=")
        if option in flags:
            pairs.append((option, ""))
            args = args[1:]
            continue
        if option == "--userpasswd":
            fakelib.fail("vzctl fake: --userpasswd puts a password on the command line; virtfleet must not use it", 20)
        if option not in allowed:
            fakelib.fail(f"{sys.argv[0]}: unrecognized option '{args[0]}'", 20)
        if not value:
            if len(args) < 2:
                fakelib.fail(f"{sys.argv[0]}: option '{option}' requires an argument", 20)
            value, args = args[1], args[1:]
        pairs.append((option, value))
        args = args[1:]
    return pairs


def create(state: dict, ctid: str, args: list[str]) -> int:
    options = {option.lstrip("-"): value for option, value in parse_options(args, CREATE_OPTIONS)}
    if ctid in state["containers"] or (ROOTS / ctid).exists():
        fakelib.fail(
            f"Private area already exists in /vz/private/{ctid}\nCreation of container private area failed", 44
        )
    template = options.get("ostemplate")
    if template is None:
        fakelib.fail("Error: required --ostemplate parameter is not given", 29)
    if template not in state["caches"]:
        fakelib.fail(f"Cached OS template {template} not found\nCreation of container private area failed", 91)
    root = ROOTS / ctid
    for directory in CONTAINER_DIRS:
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "root").chmod(0o700)
    fakelib.write_file(root / "etc/redhat-release", TEMPLATES[template])
    hostname = options.get("hostname", "localhost.localdomain")
    fakelib.write_file(root / "etc/hostname", hostname + "\n")
    for rel, (text, mode) in TEMPLATE_FILES.items():
        fakelib.write_file(root / rel, text, mode)
    state["containers"][ctid] = {
        "ostemplate": template, "hostname": hostname, "ip": options.get("ipadd", ""),
        "name": options.get("name", ""), "running": False, "suspended": False,
        # vzctl's basic sample config (ve-basic.conf-sample): 512M RAM, 1G swap, 10G disk, all CPUs
        "physpages": 512 * 256, "swappages": 1024 * 256, "diskspace_kib": 10 * 1024**2, "cpus": 0,
        "onboot": "no", "nameserver": "",
    }  # fmt: skip
    write_conf(ctid, state["containers"][ctid])
    print(f"Creating container private area ({template})\nPerforming postcreate actions")
    print(f"CT configuration saved to {CONF_DIR}/{ctid}.conf\nContainer private area was created")
    return 0


def write_conf(ctid: str, ct: dict) -> None:
    """The container's config as vzctl writes it (the parameter names of ctid.conf(5))."""
    cpus = f'CPUS="{ct["cpus"]}"\n' if ct.get("cpus") else ""
    fakelib.write_file(
        CONF_DIR / f"{ctid}.conf",
        f'ONBOOT="{ct.get("onboot", "no")}"\n'
        f'PHYSPAGES="0:{ct.get("physpages", 0)}"\nSWAPPAGES="0:{ct.get("swappages", 0)}"\n'
        f'DISKSPACE="{ct.get("diskspace_kib", 0)}:{ct.get("diskspace_kib", 0)}"\n{cpus}'
        f'OSTEMPLATE="{ct["ostemplate"]}"\nVE_ROOT="/vz/root/$VEID"\nVE_PRIVATE="/vz/private/$VEID"\n'
        f'HOSTNAME="{ct["hostname"]}"\nIP_ADDRESS="{ct["ip"]}"\nNAMESERVER="{ct.get("nameserver", "")}"\n'
        f'NAME="{ct["name"]}"\n',
    )


def record_cmdlines(query: bool = False) -> None:
    """Append every process's command line in this view (this PID namespace) to cmdlines.log.
    A ``query`` (status) starts no log: a check-mode run before any vzctl call must change nothing."""
    if query and not CMDLINES_LOG.parent.is_dir():
        return
    lines = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if argv:
                lines.append(f"{proc.name} " + argv.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace"))
    CMDLINES_LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(CMDLINES_LOG, "a") as log:
        log.write("".join(f"{line}\n" for line in lines))


def parse_size_kib(option: str, value: str, default_unit: str) -> int:
    """vzctl's size syntax: a number with an optional K/M/G/T/P suffix (bytes without one for
    --ram/--swap, KiB for --diskspace); anything else is refused as vzctl does."""
    match = SIZE.match(value)
    if not match:
        fakelib.fail(f"Invalid value for {option}={value}", 20)
    number, unit = int(match.group(1)), match.group(2).upper()
    if unit == "":
        return number // 1024 if default_unit == "B" else number
    return number * UNIT_KIB[unit]


def set_(state: dict, ctid: str, ct: dict, args: list[str]) -> int:
    save, changes, ipadd, ipdel, nameservers = False, {}, [], [], []
    for option, value in parse_options(args, SET_OPTIONS, flags={"--save"}):
        if option == "--save":
            save = True
        elif option == "--ipadd":
            if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?", value):
                fakelib.fail(f"Bad parameter for --ipadd: {value}", 20)
            ipadd.append(value.split("/")[0])
        elif option == "--ipdel":
            ipdel.append(value)
        elif option == "--nameserver":
            if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", value):
                fakelib.fail(f"Bad parameter for --nameserver: {value}", 20)
            nameservers.append(value)
        elif option == "--hostname":
            changes["hostname"] = value
        elif option == "--onboot":
            if value not in ("yes", "no"):
                fakelib.fail(f"Bad parameter for --onboot: {value}", 20)
            changes["onboot"] = value
        elif option == "--cpus":
            if not value.isdigit() or int(value) < 1:
                fakelib.fail(f"Bad parameter for --cpus: {value}", 20)
            changes["cpus"] = int(value)
        elif option in ("--ram", "--swap"):
            changes["physpages" if option == "--ram" else "swappages"] = parse_size_kib(option, value, "B") // PAGE_KIB
        elif option == "--diskspace":
            soft, _, hard = value.partition(":")
            kib = parse_size_kib(option, soft, "K")
            if hard and parse_size_kib(option, hard, "K") < kib:
                fakelib.fail("Invalid value for --diskspace: soft limit exceeds hard limit", 20)
            changes["diskspace_kib"] = kib
    if not (changes or ipadd or ipdel or nameservers or save):
        fakelib.fail("Nothing to set", 20)
    if not save and not ct["running"]:
        fakelib.fail("Unable to apply new parameters: container is not running", 31)
    ips = ct["ip"].split()
    if "all" in ipdel:
        ips = []
    ips = [ip for ip in ips if ip not in ipdel]
    ips += [ip for ip in ipadd if ip not in ips]
    changes["ip"] = " ".join(ips)
    if nameservers:
        changes["nameserver"] = " ".join(nameservers)
    ct.update(changes)
    root = ROOTS / ctid
    if "hostname" in changes:
        fakelib.write_file(root / "etc/hostname", changes["hostname"] + "\n")
        print(f"Set hostname: {changes['hostname']}")
    if nameservers:
        fakelib.write_file(root / "etc/resolv.conf", "".join(f"nameserver {n}\n" for n in nameservers))
        print("File resolv.conf was modified")
    if ct["running"]:
        if ipadd or ipdel:
            print(f"Adding IP address(es): {changes['ip']}" if ipadd else "Deleting IP address(es)")
        if "physpages" in changes or "swappages" in changes:
            print("Setting memory parameters")
        if "cpus" in changes:
            print(f"Setting CPUs: {changes['cpus']}")
    if save:
        write_conf(ctid, ct)
        print(f"CT configuration saved to {CONF_DIR}/{ctid}.conf")
    else:
        print("WARNING: Settings were not saved and will be reset to original values on next start (use --save flag)")
    return 0


def fresh_run(ctid: str) -> None:
    run = ROOTS / ctid / "run"
    shutil.rmtree(run, ignore_errors=True)
    (run / "lock").mkdir(parents=True)
    (run / fakelib.THROWAWAY_MARKER.name).touch()


def start(state: dict, ctid: str, ct: dict) -> int:
    if ct["running"]:
        fakelib.fail("Container is already running", 32)
    if ct.get("suspended"):
        return resume(state, ctid, ct)  # vzctl start restores a suspended container from its dump
    fresh_run(ctid)
    ct["running"] = True
    boot(ctid, ct)
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


def suspend(state: dict, ctid: str, ct: dict) -> int:
    """Checkpoint the container to its dump file and stop it (vzctl suspend = chkpnt)."""
    if not ct["running"]:
        fakelib.fail("Unable to suspend container: container is not running", 16)
    ct["running"], ct["suspended"] = False, True
    print(f"Setting up checkpoint...\nCheckpointing completed successfully\nDump file: /vz/dump/Dump.{ctid}")
    print("Container is unmounted")
    return 0


def resume(state: dict, ctid: str, ct: dict) -> int:
    if not ct.get("suspended"):
        fakelib.fail(f"Unable to resume container: dump file /vz/dump/Dump.{ctid} not found", 17)
    ct["running"], ct["suspended"] = True, False
    print("Restoring container ...\nContainer is mounted\nContainer was restored")
    return 0


def unregister(state: dict, ctid: str, ct: dict) -> int:
    """Forget the container but keep its private area (and so its CTID: create refuses it)."""
    if ct["running"] or ct.get("suspended"):
        fakelib.fail("Container is running: stop it first", 32)
    (CONF_DIR / f"{ctid}.conf").unlink()
    state["retained"][ctid] = state["containers"].pop(ctid)
    print(f"Container {ctid} was unregistered")
    return 0


def restart(state: dict, ctid: str, ct: dict) -> int:
    print("Restarting container")
    if ct["running"]:
        stop(state, ctid, ct)
    return start(state, ctid, ct)


def destroy(state: dict, ctid: str, ct: dict) -> int:
    if ct["running"] or ct.get("suspended"):
        fakelib.fail("Container is currently running. Stop it first.", 32)
    shutil.rmtree(ROOTS / ctid, ignore_errors=True)
    (CONF_DIR / f"{ctid}.conf").rename(CONF_DIR / f"{ctid}.conf.destroyed")
    del state["containers"][ctid]
    print("Destroying container private area: /vz/private/" + ctid + "\nContainer private area was destroyed")
    return 0


def enter_argv(ctid: str, ct: dict, action: str, command: str) -> list[str]:
    return [
        "unshare", "--mount", "--propagation", "private", "--uts", "--pid", "--fork", "--kill-child",
        "--mount-proc", "/bin/sh", "-c", ENTER, "vzctl-exec", str(ROOTS / ctid), ct["hostname"], action,
        command, " ".join(CONTAINER_DIRS), EXEC_PATH, str(FAKES_BIN.parent), EXEC_FAKES,
    ]  # fmt: skip


def enter(ctid: str, ct: dict, action: str, args: list[str]) -> None:
    """Replace this process by the command in the container (the fakes' lock closes with exec)."""
    command = "".join(f"{a} " if a else "'' " for a in args)
    sys.stdout.flush()
    argv = enter_argv(ctid, ct, action, command)
    os.execvp(argv[0], argv)


def boot(ctid: str, ct: dict) -> None:
    """The container's boot: the fakes inside seed its minimal EL install now (as the view's first
    fake call does for the host), so that later a step's first query inside it writes no state (a
    check-mode run must change nothing)."""
    seed = "rpm -q bash >/dev/null 2>&1 || true"
    subprocess.run(
        enter_argv(ctid, ct, "exec2", seed), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False
    )


if __name__ == "__main__":
    fakelib.run(main)

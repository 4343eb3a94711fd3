#!/usr/bin/env -S python3 -S
"""Fake ``virsh`` for guest power state and storage pools: both live in the fakes' state, per connection URI.

``[-c|--connect URI] domstate [--reason]|suspend|resume|start|shutdown|destroy|dominfo|autostart
[--disable]|list [--all] [--name]|dumpxml [--inactive]|define FILE.xml|undefine``, and the pool
commands the kvm role and the base-image step use: ``pool-info``, ``pool-define-as NAME dir --target
DIR``, ``pool-build``, ``pool-start`` (a dir pool needs its directory), ``pool-autostart [--disable]``,
``pool-refresh`` (needs a running pool), ``pool-list [--all]``, ``pool-destroy``, ``pool-undefine``,
with libvirt 9's messages and exit codes (taken from the real virsh).
``define`` is how a test puts a guest in place. State rules are the QEMU driver's
(qemu_driver.c): suspending a paused guest is a silent success, resuming a running one fails
("domain is already running"), shutdown needs a running guest. A shutdown completes at once
(the guest obeys ACPI instantly) unless a test lists the domain under ``ignore_acpi`` in
``fakelib.faults``: then ``shutdown`` reports success and the guest keeps running, as a guest
without an ACPI daemon does. Needs libvirtd/virtqemud active (``systemctl`` fake).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import fakelib

COMMAND_OPTIONS = {
    "domstate": {"--reason"}, "suspend": set(), "resume": set(), "start": {"--autodestroy", "--paused"},
    "shutdown": {"--mode"}, "destroy": {"--graceful"}, "dominfo": set(), "autostart": {"--disable"},
    "list": {"--all", "--name", "--inactive", "--uuid"}, "define": set(),
    "undefine": {"--nvram", "--remove-all-storage", "--managed-save"},
    "dumpxml": {"--inactive", "--security-info", "--migratable"},
}  # fmt: skip
POOL_OPTIONS = {
    "pool-info": set(), "pool-define-as": {"--target"}, "pool-build": set(), "pool-start": set(),
    "pool-autostart": {"--disable"}, "pool-refresh": set(), "pool-list": {"--all", "--inactive", "--name"},
    "pool-destroy": set(), "pool-undefine": set(),
}  # fmt: skip
COMMAND_OPTIONS.update(POOL_OPTIONS)
NEEDS_DOMAIN = set(COMMAND_OPTIONS) - {"list", "define"} - set(POOL_OPTIONS)
INVALID = "Requested operation is not valid"
KIB = {
    "b": 1 / 1024,
    "bytes": 1 / 1024,
    "k": 1,
    "kib": 1,
    "kb": 1,
    "m": 1024,
    "mib": 1024,
    "mb": 1024,
    "g": 1024**2,
    "gib": 1024**2,
    "gb": 1024**2,
}


def settled(state: dict) -> str:
    """The state as a query leaves it: without the empty per-connection maps a lookup adds."""
    return json.dumps(
        {
            k: ({uri: v for uri, v in value.items() if v} if k in ("domains", "pools") else value)
            for k, value in state.items()
        },
        sort_keys=True,
    )


def main(prog: str, argv: list[str]) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a closed pipe kills virsh, as it does the real one
    uri = os.environ.get("LIBVIRT_DEFAULT_URI", "qemu:///system")
    while argv and argv[0].startswith("-"):
        option, _, value = argv[0].partition("=")
        if option not in ("-c", "--connect", "-q", "--quiet"):
            fakelib.fail(f"virsh: unrecognized option '{argv[0]}'")
        if option in ("-c", "--connect"):
            if not value:
                argv, value = argv[1:], argv[1] if len(argv) > 1 else ""
            uri = value
        argv = argv[1:]
    if not argv:
        fakelib.fail("error: fake virsh has no interactive shell; give a command")
    command, rest = argv[0], argv[1:]
    if command not in COMMAND_OPTIONS:
        fakelib.fail(f"error: unknown command: '{command}'")
    options = {a for a in rest if a.startswith("-")}
    for option in options - COMMAND_OPTIONS[command]:
        fakelib.fail(f"error: command '{command}' doesn't support option {option}")
    args = [a for a in rest if not a.startswith("-")]
    target = None
    if "--target" in rest:  # the one option that takes a value
        at = rest.index("--target")
        target = rest[at + 1] if at + 1 < len(rest) else fakelib.fail("error: option '--target' requires an argument")
        args.remove(target)
    if not uri.startswith("test://") and not (fakelib.unit_active("libvirtd") or fakelib.unit_active("virtqemud")):
        fakelib.fail(
            "error: failed to connect to the hypervisor\nerror: Failed to connect socket to "
            "'/var/run/libvirt/libvirt-sock': No such file or directory"
        )
    state = fakelib.load("libvirt", {"domains": {}, "next_id": 1})
    loaded = settled(state)
    domains = state["domains"].setdefault(uri, {})
    if command in NEEDS_DOMAIN and not args:
        fakelib.fail(f"error: command '{command}' requires <domain> option")
    if command in POOL_OPTIONS:
        try:
            code = pool_command(state.setdefault("pools", {}).setdefault(uri, {}), command, args, options, target)
        except fakelib.Exit:
            fakelib.save("libvirt", state)  # a refused refresh is counted (faults "pool_busy")
            raise
    elif command == "list":
        code = list_domains(domains, options)
    elif command == "define":
        code = define(domains, args)
    else:
        code = domain_command(state, domains, command, lookup(domains, args[0]), options)
    if settled(state) != loaded:  # a query (domstate, dominfo, dumpxml, list…) writes no state file
        fakelib.save("libvirt", state)
    # virsh ends each command's output with an empty line, written on its own after the answer: a
    # reader that has gone by then (`virsh domstate D | head -n 1`) kills it with SIGPIPE (exit 141).
    sys.stdout.flush()
    time.sleep(0.02)
    print()
    return code


def lookup(domains: dict, ref: str) -> str:
    for name, dom in domains.items():
        if ref in (name, dom["uuid"], str(dom.get("id"))):
            return name
    fakelib.fail(f"error: failed to get domain '{ref}'")


def said(name: str, what: str) -> None:
    print(f"Domain {name} {what}" if fakelib.dist() == "el7" else f"Domain '{name}' {what}")


def refuse(action: str, name: str, why: str) -> None:
    fakelib.fail(f"error: Failed to {action} domain '{name}'\nerror: {INVALID}: {why}")


def domain_command(state: dict, domains: dict, command: str, name: str, options: set[str]) -> int:
    dom = domains[name]
    running, paused = dom["state"] == "running", dom["state"] == "paused"
    if command == "domstate":
        print(f"{dom['state']} ({dom['reason']})" if "--reason" in options else dom["state"])
    elif command == "dumpxml":
        print(dom["xml"].rstrip("\n"))
    elif command == "dominfo":
        print_dominfo(name, dom)
    elif command == "suspend":
        if not (running or paused):
            refuse("suspend", name, "domain is not running")
        dom["state"], dom["reason"] = "paused", "user"
        said(name, "suspended")
    elif command == "resume":
        if running:
            refuse("resume", name, "domain is already running")
        if not paused:
            refuse("resume", name, "domain is not running")
        dom["state"], dom["reason"] = "running", "unpaused"
        said(name, "resumed")
    elif command == "start":
        if running or paused:
            refuse("start", name, "domain is already active")
        dom["state"], dom["id"] = ("paused" if "--paused" in options else "running"), state["next_id"]
        dom["reason"] = "user" if "--paused" in options else "booted"
        state["next_id"] += 1
        said(name, "started")
    elif command in ("shutdown", "destroy"):
        if not (running or (paused and command == "destroy")):
            refuse(command, name, "domain is not running")
        if command == "shutdown" and name in fakelib.faults().get("ignore_acpi", ()):
            said(name, "is being shutdown")  # the ACPI event is sent; the guest keeps running
            return 0
        dom["state"], dom["id"], dom["reason"] = "shut off", None, command + ("" if command == "shutdown" else "ed")
        said(name, "is being shutdown" if command == "shutdown" else "destroyed")
        if not dom["persistent"]:
            del domains[name]
    elif command == "autostart":
        dom["autostart"] = "--disable" not in options
        said(name, "marked as autostarted" if dom["autostart"] else "unmarked as autostarted")
    elif command == "undefine":
        if running or paused:
            dom["persistent"] = False  # stays as a transient domain until it stops
        else:
            del domains[name]
        said(name, "has been undefined")
    return 0


def pool_command(pools: dict, command: str, args: list[str], options: set[str], target: str | None) -> int:
    if command == "pool-list":
        return list_pools(pools, options)
    if not args:
        fakelib.fail(f"error: command '{command}' requires <pool> option")
    name = args[0]
    if command == "pool-define-as":
        if len(args) < 2:
            fakelib.fail("error: command 'pool-define-as' requires <type> option")
        if args[1] != "dir":
            fakelib.fail(
                f"error: Failed to define pool {name}\n"
                "error: unsupported configuration: fake virsh knows dir pools only"
            )
        if name in pools:
            fakelib.fail(
                f"error: Failed to define pool {name}\n"
                f"error: operation failed: pool '{name}' already exists with uuid {pools[name]['uuid']}"
            )
        pools[name] = {"uuid": str(uuid.uuid4()), "state": "inactive", "autostart": False, "target": target or ""}
        print(f"Pool {name} defined")
        return 0
    if name not in pools:
        fakelib.fail(
            f"error: failed to get pool '{name}'\n"
            f"error: Storage pool not found: no storage pool with matching name '{name}'"
        )
    pool = pools[name]
    running = pool["state"] == "running"
    if command == "pool-info":
        rows = [("Name", name), ("UUID", pool["uuid"]), ("State", pool["state"]), ("Persistent", "yes"),
                ("Autostart", "yes" if pool["autostart"] else "no")]  # fmt: skip
        if running:
            rows += [("Capacity", "11.77 GiB"), ("Allocation", "156.00 KiB"), ("Available", "11.77 GiB")]
        for key, value in rows:
            print(f"{key + ':':<16}{value}")
    elif command == "pool-build":
        if running:
            fakelib.fail(
                f"error: Failed to build pool {name}\nerror: {INVALID}: storage pool '{name}' is already active"
            )
        Path(pool["target"]).mkdir(mode=0o711, parents=True, exist_ok=True)
        print(f"Pool {name} built")
    elif command == "pool-start":
        if running:
            fakelib.fail(
                f"error: Failed to start pool {name}\nerror: {INVALID}: storage pool '{name}' is already active"
            )
        if not Path(pool["target"]).is_dir():
            fakelib.fail(
                f"error: Failed to start pool {name}\n"
                f"error: cannot open directory '{pool['target']}': No such file or directory"
            )
        pool["state"] = "running"
        print(f"Pool {name} started")
    elif command == "pool-autostart":
        pool["autostart"] = "--disable" not in options
        print(f"Pool {name} {'marked as autostarted' if pool['autostart'] else 'unmarked as autostarted'}")
    elif command == "pool-refresh":
        if not running:
            fakelib.fail(f"error: Failed to refresh pool {name}\nerror: {INVALID}: storage pool '{name}' is not active")
        # faults.json "pool_busy": N refuses the next N refreshes, as libvirt does while it makes or
        # deletes a volume in the pool (counted in the pool's state).
        if pool.get("busy_refused", 0) < fakelib.faults().get("pool_busy", 0):
            pool["busy_refused"] = pool.get("busy_refused", 0) + 1
            fakelib.fail(
                f"error: Failed to refresh pool {name}\n"
                f"error: internal error: pool '{name}' has asynchronous jobs running."
            )
        print(f"Pool {name} refreshed")
    elif command == "pool-destroy":
        if not running:
            fakelib.fail(f"error: Failed to destroy pool {name}\nerror: {INVALID}: storage pool '{name}' is not active")
        pool["state"] = "inactive"
        print(f"Pool {name} destroyed")
    elif command == "pool-undefine":
        if running:
            fakelib.fail(
                f"error: Failed to undefine pool {name}\nerror: {INVALID}: storage pool '{name}' is still active"
            )
        del pools[name]
        print(f"Pool {name} has been undefined")
    return 0


def list_pools(pools: dict, options: set[str]) -> int:
    shown = sorted(
        (n, p) for n, p in pools.items() if "--all" in options or ("--inactive" in options) == (p["state"] != "running")
    )
    if "--name" in options:
        for name, _ in shown:
            print(name)
        return 0
    rows = [
        (n, "active" if p["state"] == "running" else "inactive", "yes" if p["autostart"] else "no") for n, p in shown
    ]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(("Name", "State", "Autostart"))]
    header = " " + "   ".join(h.ljust(w) for h, w in zip(("Name", "State", "Autostart"), widths, strict=True))
    print(header.rstrip() + "\n" + "-" * (len(header) + 2))
    for row in rows:
        print((" " + "   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))).rstrip())
    return 0


def print_dominfo(name: str, dom: dict) -> None:
    rows = [
        ("Id", dom["id"] if dom["id"] is not None else "-"),
        ("Name", name),
        ("UUID", dom["uuid"]),
        ("OS Type", "hvm"),
        ("State", dom["state"]),
        ("CPU(s)", dom["vcpus"]),
        ("Max memory", f"{dom['memory_kib']} KiB"),
        ("Used memory", f"{dom['memory_kib']} KiB"),
        ("Persistent", "yes" if dom["persistent"] else "no"),
        ("Autostart", "enable" if dom["autostart"] else "disable"),
        ("Managed save", "no"),
        ("Security model", "selinux"),
        ("Security DOI", "0"),
    ]
    for key, value in rows:
        print(f"{key + ':':<16}{value}")


def list_domains(domains: dict, options: set[str]) -> int:
    shown = [
        (n, d)
        for n, d in domains.items()
        if "--all" in options or ("--inactive" in options) == (d["state"] == "shut off")
    ]
    shown.sort(key=lambda nd: (nd[1]["id"] is None, nd[1]["id"] or 0, nd[0]))
    if "--name" in options or "--uuid" in options:
        for name, dom in shown:
            print(name if "--name" in options else dom["uuid"])
        return 0
    rows = [(str(d["id"]) if d["id"] is not None else "-", n, d["state"]) for n, d in shown]
    if fakelib.dist() == "el7":
        print(f" {'Id':<5} {'Name':<30} State\n" + "-" * 52)
        for row in rows:
            print(f" {row[0]:<5} {row[1]:<30} {row[2]}")
        return 0
    widths = [max([len(h), *(len(r[n]) for r in rows)]) for n, h in enumerate(("Id", "Name", "State"))]
    header = " " + "   ".join(h.ljust(w) for h, w in zip(("Id", "Name", "State"), widths, strict=True))
    print(header.rstrip() + "\n" + "-" * (len(header) + 1))
    for row in rows:
        print((" " + "   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))).rstrip())
    return 0


def define(domains: dict, args: list[str]) -> int:
    if not args:
        fakelib.fail("error: command 'define' requires <file> option")
    path = Path(args[0])
    if not path.exists():
        fakelib.fail(
            f"error: Failed to read file '{path}' to define domain\n"
            f"error: Failed to open file '{path}': No such file or directory"
        )
    try:
        root = ET.fromstring(path.read_text())
    except ET.ParseError as exc:
        fakelib.fail(f"error: Failed to define domain from {path}\nerror: (domain_definition):{exc}")
    name = root.findtext("name")
    if root.tag != "domain" or not name:
        fakelib.fail(f"error: Failed to define domain from {path}\nerror: XML error: missing domain name information")
    memory = root.find("memory")
    unit = (memory.get("unit", "KiB") if memory is not None else "KiB").lower()
    kib = int(int(memory.text or 0) * KIB.get(unit, 1)) if memory is not None else 1048576
    old = domains.get(name, {"state": "shut off", "reason": "unknown", "id": None, "autostart": False})
    domains[name] = {
        **old,
        "uuid": root.findtext("uuid") or old.get("uuid") or str(uuid.uuid4()),
        "vcpus": int(root.findtext("vcpu") or 1),
        "memory_kib": kib,
        "persistent": True,
        "xml": path.read_text(),
    }
    print(f"Domain {name} defined from {path}" if fakelib.dist() == "el7" else f"Domain '{name}' defined from {path}")
    return 0


if __name__ == "__main__":
    fakelib.run(main)

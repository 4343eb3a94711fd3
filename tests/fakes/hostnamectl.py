#!/usr/bin/env -S python3 -S
"""Fake ``hostnamectl``: static hostname in /etc/hostname, transient one set for real in the
view's own UTS namespace (so ``hostname`` agrees), pretty name in /etc/machine-info.

``set-hostname NAME``, ``status`` (default), ``hostname`` (EL9 only, systemd >= 249), and the
``--static`` / ``--transient`` / ``--pretty`` selectors. Unlike systemd, a name that is not a
valid hostname is rejected instead of being turned into a pretty name plus a cleaned static one.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import fakelib

HOSTNAME_FILE = Path("/etc/hostname")
MACHINE_INFO = Path("/etc/machine-info")
SELECTORS = {"--static", "--transient", "--pretty"}


def valid(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return len(name) <= 64 and all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", x) for x in labels)


def static_name() -> str:
    return HOSTNAME_FILE.read_text().strip() if HOSTNAME_FILE.exists() else ""


def pretty_name() -> str:
    text = MACHINE_INFO.read_text() if MACHINE_INFO.exists() else ""
    match = re.search(r'^PRETTY_HOSTNAME="?(.*?)"?$', text, re.M)
    return match[1] if match else ""


def main(prog: str, argv: list[str]) -> int:
    selectors = {a for a in argv if a.startswith("-")}
    for option in selectors - SELECTORS:
        fakelib.fail(f"hostnamectl: unrecognized option '{option}'")
    words = [a for a in argv if not a.startswith("-")] or ["status"]
    verb, args = words[0], words[1:]
    el7 = fakelib.dist() == "el7"
    if verb == "set-hostname":
        if len(args) != 1:
            fakelib.fail("Too many arguments." if args else "Too few arguments.")
        return set_hostname(args[0], selectors)
    if verb == "hostname" and not el7 and not args:
        print(static_name() or socket.gethostname())
        return 0
    if verb != "status" or args:
        fakelib.fail(f"Unknown operation '{verb}'." if el7 else f"Unknown command verb '{verb}'.")
    if selectors:
        for selector in sorted(selectors):
            print({"--static": static_name(), "--transient": socket.gethostname(), "--pretty": pretty_name()}[selector])
        return 0
    print(f"   Static hostname: {static_name() or '(unset)'}")
    if pretty_name():
        print(f"   Pretty hostname: {pretty_name()}")
    if socket.gethostname() != static_name():
        print(f"Transient hostname: {socket.gethostname()}")
    print(
        "         Icon name: computer-vm\n           Chassis: vm\n"
        f"  Operating System: {'CentOS Linux 7 (Core)' if el7 else 'CentOS Stream 9'}\n      Architecture: x86-64"
    )
    return 0


def set_hostname(name: str, selectors: set[str]) -> int:
    """No selector: static and transient become NAME and the pretty name is cleared (systemd)."""
    which = selectors or {"--static", "--transient"}
    if not valid(name) and which != {"--pretty"}:
        fakelib.fail(f"Could not set static hostname: Invalid static hostname '{name}'")
    if "--static" in which:
        fakelib.write_file(HOSTNAME_FILE, name + "\n")
    if "--transient" in which:
        socket.sethostname(name)
    if "--pretty" in which or (not selectors and MACHINE_INFO.exists()):
        lines = [
            x
            for x in (MACHINE_INFO.read_text().splitlines() if MACHINE_INFO.exists() else [])
            if not x.startswith("PRETTY_HOSTNAME=")
        ]
        pretty = [f'PRETTY_HOSTNAME="{name}"'] if "--pretty" in which else []
        fakelib.write_file(MACHINE_INFO, "".join(f"{x}\n" for x in [*lines, *pretty]))
    return 0


if __name__ == "__main__":
    fakelib.run(main)

#!/usr/bin/env -S python3 -S
"""Fake ``getenforce``, ``setenforce``, ``selinuxenabled`` (libselinux-utils) and ``getsebool``,
``setsebool [-P]`` (policycoreutils).

The running mode is read from /etc/selinux/config's ``SELINUX=`` at the first call of any fake
(the "boot" of the view, ``fakelib.ensure_booted``) and kept in state afterwards: editing the
config later changes nothing until a reboot (``systemctl reboot``), as on a real host;
``setenforce`` changes only the running mode. Booleans: ``setsebool`` changes the running value,
``-P`` the persistent one as well.
"""

from __future__ import annotations

import fakelib

USAGE = "usage:  setenforce [ Enforcing | Permissive | 1 | 0 ]"
BOOLEAN_DEFAULTS = {
    "haproxy_connect_any": False,
    "httpd_can_network_connect": False,
    "httpd_can_network_relay": False,
    "nis_enabled": False,
    "virt_use_nfs": False,
    "virt_use_samba": False,
    "virt_sandbox_use_all_caps": True,
    "container_manage_cgroup": False,
    "domain_can_mmap_files": False,
    "xen_use_nfs": False,
}
TRUTH = {"1": True, "on": True, "true": True, "0": False, "off": False, "false": False}


def running_mode() -> str:
    """The mode the view booted with (``fakelib.ensure_booted``), as ``setenforce`` left it."""
    return fakelib.load("selinux", {"mode": "Disabled"})["mode"]


def main(prog: str, argv: list[str]) -> int:
    mode = running_mode()
    if prog == "selinuxenabled":
        return 1 if mode == "Disabled" else 0
    if prog in ("getsebool", "setsebool"):
        if mode == "Disabled":
            fakelib.fail(f"{prog}:  SELinux is disabled" + ("." if prog == "setsebool" else ""))
        return (getsebool if prog == "getsebool" else setsebool)(argv)
    if prog == "getenforce":
        if argv:
            fakelib.fail("usage:  getenforce")
        print(mode)
        return 0
    if len(argv) != 1:
        fakelib.fail(USAGE)
    wanted = {"1": "Enforcing", "enforcing": "Enforcing", "0": "Permissive", "permissive": "Permissive"}
    if argv[0].lower() not in wanted:
        fakelib.fail(USAGE)
    if mode == "Disabled":
        fakelib.fail("setenforce: SELinux is disabled")
    fakelib.save("selinux", {"mode": wanted[argv[0].lower()]})
    return 0


def booleans() -> dict:
    defaults = dict(BOOLEAN_DEFAULTS)
    return fakelib.load("sebool", {"persistent": defaults, "runtime": dict(defaults)})


def getsebool(argv: list[str]) -> int:
    runtime = booleans()["runtime"]
    names = sorted(runtime) if argv == ["-a"] else argv
    if not names or any(a.startswith("-") for a in names):
        fakelib.fail("usage:  getsebool -a or getsebool boolean...")
    for name in names:
        if name not in runtime:
            fakelib.fail(f"Error getting active value for {name}")
        print(f"{name} --> {'on' if runtime[name] else 'off'}")
    return 0


def setsebool(argv: list[str]) -> int:
    persistent = "-P" in argv
    args = [a for a in argv if a not in ("-P", "-N", "-V")]
    pairs = [a.split("=", 1) for a in args] if all("=" in a for a in args) else [args] if len(args) == 2 else []
    if not pairs or any(a.startswith("-") for a in args):
        fakelib.fail("usage:  setsebool [ -NPV ] boolean value | bool1=val1 bool2=val2...")
    state = booleans()
    for name, value in pairs:
        if name not in state["runtime"]:
            fakelib.fail("Could not change active booleans: Invalid boolean")
        if value.lower() not in TRUTH:
            fakelib.fail(f"setsebool: illegal value {value} for boolean {name}")
        state["runtime"][name] = TRUTH[value.lower()]
        if persistent:
            state["persistent"][name] = TRUTH[value.lower()]
    fakelib.save("sebool", state)
    return 0


if __name__ == "__main__":
    fakelib.run(main)

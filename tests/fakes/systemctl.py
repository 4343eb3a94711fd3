#!/usr/bin/env -S python3 -S
"""Fake ``systemctl``: unit enablement and run state, kept in the fakes' state, nothing runs.

A unit is known when an installed package ships it (see ``fakelib.PACKAGE_UNITS``) or its unit
file exists under /etc/systemd/system, /run/systemd/system or (added after the view started)
/usr/lib/systemd/system. Messages and exit codes follow systemd 252 (EL9) and 219 (EL7).

Every job that starts, stops, restarts or reloads a unit is appended to ``jobs`` in the state (what
the journal would show), so a test can tell a reload from no reload.

``reboot`` (and ``poweroff``) reboot the *model*: every runtime state is derived again from the
persistent configuration, as a boot would, while the view's sshd and its sessions stay up.

A test can make a unit fail (``fakelib.faults``): ``fail_start`` units fail their start job as
systemd does (exit 1, "Job for U failed because the control process exited with error code."),
``die_after_start`` units start (exit 0) and are ``failed`` right after, as a Type=simple service
whose process exits at once.
"""

from __future__ import annotations

import configparser
import shutil
from pathlib import Path

import fakelib

FLAGS = {
    "--now",
    "-q",
    "--quiet",
    "--no-pager",
    "--no-block",
    "-l",
    "--full",
    "--system",
    "--no-reload",
    "--no-ask-password",
    "--plain",
    "--no-legend",
}
UNIT_VERBS = {
    "enable",
    "disable",
    "start",
    "stop",
    "restart",
    "reload",
    "try-restart",
    "reload-or-restart",
    "is-active",
    "is-enabled",
    "status",
    "mask",
    "unmask",
}
QUERY_VERBS = {"is-active", "is-enabled", "status"}
PLAIN_VERBS = {"daemon-reload", "daemon-reexec", "reset-failed", "list-units", "list-unit-files"}
# What the view itself needs in /run (vfh-layers: its overlays' upper layers, bound there).
KEEP_IN_RUN = {"sshd", "vfh-layers", fakelib.THROWAWAY_MARKER.name}


def main(prog: str, argv: list[str]) -> int:
    flags = {a for a in argv if a.startswith("-")}
    for flag in flags - FLAGS:
        if flag.startswith("--"):
            fakelib.fail(f"systemctl: unrecognized option '{flag}'")
        fakelib.fail(f"systemctl: invalid option -- '{flag[1:2]}'")
    words = [a for a in argv if not a.startswith("-")]
    verb, units = (words[0], [fakelib.unit_name(u) for u in words[1:]]) if words else ("list-units", [])
    el7 = fakelib.dist() == "el7"
    if verb in PLAIN_VERBS:
        return 0
    if verb in ("reboot", "poweroff"):
        reboot()
        return 0
    if verb not in UNIT_VERBS:
        fakelib.fail(f"Unknown operation '{verb}'." if el7 else f"Unknown command verb '{verb}'.")
    if not units:
        fakelib.fail("Too few arguments.")
    state = fakelib.load("systemd", {"units": {}})
    quiet = bool(flags & {"-q", "--quiet"})
    handler = VERBS.get(verb, change_run_state)
    code = handler(state, verb, units, now="--now" in flags, quiet=quiet, el7=el7)
    if verb not in QUERY_VERBS:  # a query writes no state (a check-mode run must change nothing)
        fakelib.save("systemd", state)
    return code


def unit_state(state: dict, unit: str) -> dict:
    return state["units"].setdefault(unit, {"enabled": False, "active": False, "masked": False})


def wants_link(unit: str) -> str:
    target = "sockets.target" if unit.endswith(".socket") else "multi-user.target"
    return f"/etc/systemd/system/{target}.wants/{unit}"


def enable(state: dict, verb: str, units: list[str], *, now: bool, quiet: bool, el7: bool) -> int:
    for unit in units:
        if not fakelib.unit_known(unit):
            fakelib.fail(
                "Failed to execute operation: No such file or directory"
                if el7
                else f"Failed to {verb} unit: Unit file {unit} does not exist."
            )
    for unit in units:
        s = unit_state(state, unit)
        if verb == "enable" and s["masked"]:
            fakelib.fail(f"Failed to enable unit: Unit file /etc/systemd/system/{unit} is masked.")
        if s["enabled"] != (verb == "enable") and not quiet:
            report_symlink(verb == "enable", wants_link(unit), f"/usr/lib/systemd/system/{unit}", el7=el7)
        s["enabled"] = verb == "enable"
    if now:
        return change_run_state(state, "start" if verb == "enable" else "stop", units, now=False, quiet=quiet, el7=el7)
    return 0


def report_symlink(created: bool, link: str, target: str, *, el7: bool) -> None:
    """What systemctl prints when enable/disable/mask/unmask changes a symlink (EL7 and EL9 wording)."""
    if created:
        fakelib.err(f"Created symlink from {link} to {target}." if el7 else f"Created symlink {link} → {target}.")
    else:
        fakelib.err(f"Removed symlink {link}." if el7 else f'Removed "{link}".')


def mask(state: dict, verb: str, units: list[str], *, now: bool, quiet: bool, el7: bool) -> int:
    for unit in units:
        s = unit_state(state, unit)
        path = f"/etc/systemd/system/{unit}"
        if s["masked"] != (verb == "mask") and not quiet:
            report_symlink(verb == "mask", path, "/dev/null", el7=el7)
        s["masked"] = verb == "mask"
        if now and verb == "mask":
            s["active"] = False
    return 0


def change_run_state(state: dict, verb: str, units: list[str], *, now: bool, quiet: bool, el7: bool) -> int:
    for unit in units:
        if not fakelib.unit_known(unit):
            if verb == "stop":
                fakelib.fail(f"Failed to stop {unit}: Unit {unit} not loaded.", 5)
            if verb == "try-restart":
                continue
            fakelib.fail(
                f"Failed to {verb} {unit}: Unit not found."
                if el7
                else f"Failed to {verb} {unit}: Unit {unit} not found.",
                5,
            )
        s = unit_state(state, unit)
        if s["masked"] and verb not in ("stop", "try-restart"):
            fakelib.fail(f"Failed to {verb} {unit}: Unit {unit} is masked.")
        if verb == "reload" and unit.endswith((".socket", ".target")):  # units without ExecReload
            fakelib.fail(f"Failed to reload {unit}: Job type reload is not applicable for unit {unit}.")
        if verb == "reload" and not s["active"]:
            fakelib.fail(f"Job for {unit} invalid." if el7 else f"{unit} is not active, cannot reload.")
        if verb == "try-restart" and not s["active"]:
            continue
        if verb not in ("start", "stop") or s["active"] != (verb == "start"):
            record_job(state, verb, unit)
        s["active"] = verb != "stop"
        s.pop("failed", None)
        injected = fakelib.faults()
        if verb in ("start", "restart", "reload-or-restart") and unit in injected.get("fail_start", ()):
            s["active"], s["failed"] = False, True
            fakelib.save("systemd", state)  # what enable (of enable --now) did stays done
            fakelib.fail(
                f"Job for {unit} failed because the control process exited with error code.\n"
                f'See "systemctl status {unit}" and "journalctl -xe{"" if el7 else "u " + unit}" for details.'
            )
        if verb != "stop" and unit in injected.get("die_after_start", ()):
            s["active"], s["failed"] = False, True  # Type=simple: the start job succeeds, the process exits
    return 0


def record_job(state: dict, verb: str, unit: str) -> None:
    """What the journal would show: every job that changed or restarted a unit, in order
    (``start`` of a running or ``stop`` of a stopped unit is no job). Tests read ``jobs``."""
    state.setdefault("jobs", []).append({"verb": verb, "unit": unit})


def is_active(state: dict, verb: str, units: list[str], *, now: bool, quiet: bool, el7: bool) -> int:
    active = [bool(state["units"].get(u, {}).get("active")) for u in units]
    failed = [bool(state["units"].get(u, {}).get("failed")) for u in units]
    if not quiet:
        print("\n".join("active" if a else "failed" if f else "inactive" for a, f in zip(active, failed, strict=True)))
    return 0 if any(active) else 3


def is_enabled(state: dict, verb: str, units: list[str], *, now: bool, quiet: bool, el7: bool) -> int:
    code = 1
    for unit in units:
        if not fakelib.unit_known(unit) and not state["units"].get(unit, {}).get("masked"):
            fakelib.fail(f"Failed to get unit file state for {unit}: No such file or directory")
        s = unit_state(state, unit)
        word = "masked" if s["masked"] else "enabled" if s["enabled"] else "disabled"
        if not quiet:
            print(word)
        code = 0 if word == "enabled" else code
    return code


def status(state: dict, verb: str, units: list[str], *, now: bool, quiet: bool, el7: bool) -> int:
    code = 0
    for unit in units:
        if not fakelib.unit_known(unit):
            fakelib.err(f"Unit {unit} could not be found.")
            code = 4
            continue
        s = unit_state(state, unit)
        enabled = "masked" if s["masked"] else "enabled" if s["enabled"] else "disabled"
        running = "listening" if unit.endswith(".socket") else "running"
        active = f"active ({running}) since Tue 2025-11-25 11:40:00 UTC; 1min ago" if s["active"] else "inactive (dead)"
        dot = "●" if s["active"] else "○"
        print(
            f"{dot} {unit}\n     Loaded: loaded (/usr/lib/systemd/system/{unit}; {enabled}; "
            f"{'vendor preset' if el7 else 'preset'}: disabled)\n     Active: {active}"
        )
        code = code or (0 if s["active"] else 3)
    return code


def reboot() -> None:
    """Runtime state after a boot: SELinux mode from its config, enabled units running, autoconnect
    profiles up, autostart guests running, the default boot entry booted, /run emptied."""
    (fakelib.STATE_DIR / "selinux.json").unlink(missing_ok=True)
    booleans = fakelib.load("sebool", None)
    if booleans:
        fakelib.save("sebool", {**booleans, "runtime": dict(booleans["persistent"])})
    systemd = fakelib.load("systemd", {"units": {}})
    for unit, s in systemd["units"].items():
        s["active"] = s["enabled"] and not s["masked"] and fakelib.unit_known(unit)
    fakelib.save("systemd", systemd)
    active = {}
    for path in sorted(Path("/etc/NetworkManager/system-connections").glob("*.nmconnection")):
        profile = configparser.ConfigParser(interpolation=None)
        profile.read(path)
        if profile.get("connection", "autoconnect", fallback="true") != "false":
            active[profile.get("connection", "uuid")] = len(active) + 1
    fakelib.save("nm", {"active": active, "next_path": len(active) + 1})
    libvirt = fakelib.load("libvirt", {"domains": {}, "next_id": 1})
    for domains in libvirt["domains"].values():
        for name in [n for n, d in domains.items() if not d["persistent"]]:
            del domains[name]
        for dom in domains.values():
            dom["state"], dom["reason"], dom["id"] = "shut off", "unknown", None
            if dom["autostart"]:
                dom["state"], dom["reason"], dom["id"] = "running", "booted", libvirt["next_id"]
                libvirt["next_id"] += 1
    fakelib.save("libvirt", libvirt)
    boot = fakelib.load("grubby", {"entries": [], "default": 0})
    booted = boot["entries"][boot["default"]] if boot["entries"] else {}
    boots = fakelib.load("boot", {"boots": 0})["boots"] + 1
    fakelib.save("boot", {"boots": boots, "booted_kernel": booted.get("kernel"), "booted_title": booted.get("title")})
    for entry in Path("/run").iterdir():
        if entry.name in KEEP_IN_RUN:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


VERBS = {
    "enable": enable,
    "disable": enable,
    "mask": mask,
    "unmask": mask,
    "is-active": is_active,
    "is-enabled": is_enabled,
    "status": status,
}

if __name__ == "__main__":
    fakelib.run(main)

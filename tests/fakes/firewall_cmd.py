#!/usr/bin/env -S python3 -S
"""Fake ``firewall-cmd`` (firewalld 0.6 on EL7, 1.x on EL9): ports and services per zone.

Runtime and permanent configuration are separate sets; ``--reload`` copies permanent over runtime
and ``--runtime-to-permanent`` the other way. Needs firewalld.service active (``systemctl``
fake), else "FirewallD is not running" (252). Error names and exit codes are firewalld's
(``errors.py``): ALREADY_ENABLED/NOT_ENABLED are warnings (exit 0), INVALID_PORT 102,
INVALID_PROTOCOL 103, INVALID_SERVICE 101, INVALID_ZONE 112, mixed errors UNKNOWN_ERROR 254.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import fakelib

CODES = {
    "ALREADY_ENABLED": 0,
    "NOT_ENABLED": 0,
    "INVALID_SERVICE": 101,
    "INVALID_PORT": 102,
    "INVALID_PROTOCOL": 103,
    "INVALID_ZONE": 112,
    "NOT_RUNNING": 252,
    "UNKNOWN_ERROR": 254,
}
ZONES = ("block", "dmz", "drop", "external", "home", "internal", "nm-shared", "public", "trusted", "work")
SERVICES = {
    "cockpit",
    "dhcp",
    "dhcpv6-client",
    "dns",
    "docker-registry",
    "docker-swarm",
    "ftp",
    "high-availability",
    "http",
    "https",
    "imap",
    "imaps",
    "kerberos",
    "kube-apiserver",
    "ldap",
    "ldaps",
    "libvirt",
    "libvirt-tls",
    "mdns",
    "mountd",
    "mysql",
    "nfs",
    "ntp",
    "openvpn",
    "pop3",
    "postgresql",
    "prometheus",
    "redis",
    "rpc-bind",
    "samba",
    "smtp",
    "snmp",
    "ssh",
    "syslog",
    "tftp",
    "vnc-server",
    "zabbix-agent",
}
ACTIONS = ("--add-port", "--remove-port", "--query-port", "--add-service", "--remove-service", "--query-service")
SWITCHES = (
    "--state",
    "--reload",
    "--complete-reload",
    "--permanent",
    "--list-ports",
    "--list-services",
    "--list-all",
    "--get-default-zone",
    "--get-zones",
    "--runtime-to-permanent",
    "-q",
    "--quiet",
)


class FirewallError(Exception):
    def __init__(self, name: str, msg: str) -> None:
        super().__init__(f"{name}: {msg}")
        self.code = CODES[name]


def main(prog: str, argv: list[str]) -> int:
    switches, actions, zone = set(), [], None
    i = 0
    while i < len(argv):
        option, has_value, value = argv[i].partition("=")
        if option in ACTIONS or option == "--zone":
            if not has_value:
                if i + 1 >= len(argv):
                    fakelib.fail(
                        f"usage: see firewall-cmd man page\nfirewall-cmd: error: argument {option}: "
                        "expected one argument",
                        2,
                    )
                i, value = i + 1, argv[i + 1]
            if option == "--zone":
                zone = value
            else:
                actions.append((option, value))
        elif argv[i] in SWITCHES:
            switches.add(argv[i])
        else:
            fakelib.fail(f"usage: see firewall-cmd man page\nfirewall-cmd: error: unrecognized arguments: {argv[i]}", 2)
        i += 1
    running = fakelib.unit_active("firewalld")
    if "--state" in switches:
        print("running" if running else "not running")
        return 0 if running else 252
    if not running:
        fakelib.fail("FirewallD is not running", 252)
    state = fakelib.load("firewalld", {})
    zone = zone or state["default_zone"]
    if zone not in ZONES:
        fakelib.fail(f"Error: INVALID_ZONE: {zone}", 112)
    quiet = bool(switches & {"-q", "--quiet"})
    code = run_switches(state, switches, zone, quiet)
    if actions:
        code = run_actions(state, actions, zone, "--permanent" in switches, quiet)
    fakelib.save("firewalld", state)
    return code


def run_switches(state: dict, switches: set[str], zone: str, quiet: bool) -> int:
    layer = state["permanent" if "--permanent" in switches else "runtime"].setdefault(zone, empty_zone())
    if switches & {"--reload", "--complete-reload"}:
        state["runtime"] = copy.deepcopy(state["permanent"])
    if "--runtime-to-permanent" in switches:
        state["permanent"] = copy.deepcopy(state["runtime"])
    if switches & {"--reload", "--complete-reload", "--runtime-to-permanent"} and not quiet:
        print("success")
    if "--get-default-zone" in switches:
        print(state["default_zone"])
    if "--get-zones" in switches:
        print(" ".join(ZONES))
    if "--list-ports" in switches:
        print(" ".join(layer["ports"]))
    if "--list-services" in switches:
        print(" ".join(sorted(layer["services"])))
    if "--list-all" in switches:
        print(
            f"{zone}{' (active)' if zone == state['default_zone'] else ''}\n  target: default\n"
            f"  icmp-block-inversion: no\n  interfaces: \n  sources: \n"
            f"  services: {' '.join(sorted(layer['services']))}\n  ports: {' '.join(layer['ports'])}\n"
            "  protocols: \n  masquerade: no\n  forward-ports: \n  source-ports: \n  icmp-blocks: \n"
            "  rich rules: "
        )
    return 0


def empty_zone() -> dict:
    return {"ports": [], "services": []}


def parse_port(value: str) -> str:
    """``80/tcp`` or ``8000-8010/udp`` -> ``80/tcp``; firewall-cmd's own checks and messages."""
    try:
        port, proto = value.split("/")
    except ValueError:
        raise FirewallError(
            "INVALID_PORT", "bad port (most likely missing protocol), correct syntax is portid[-portid]/protocol"
        ) from None
    bounds = port.split("-")
    if not (1 <= len(bounds) <= 2 and all(re.fullmatch(r"\d+", b) and 0 < int(b) <= 65535 for b in bounds)):
        raise FirewallError("INVALID_PORT", port)
    if proto not in ("tcp", "udp", "sctp", "dccp"):
        raise FirewallError("INVALID_PROTOCOL", f"'{proto}' not in {{'tcp'|'udp'|'sctp'|'dccp'}}")
    return f"{port}/{proto}"


def check_service(name: str) -> str:
    custom = Path(f"/etc/firewalld/services/{name}.xml")
    if name not in SERVICES and not custom.exists():
        detail = name if fakelib.dist() == "el7" else f"'{name}' not among existing services"
        raise FirewallError("INVALID_SERVICE", detail)
    return name


def apply(layer: dict, option: str, item: str, zone: str, permanent: bool) -> bool | None:
    """Do one action; a query returns its answer. Raises the daemon's FirewallError."""
    kind = "ports" if option.endswith("-port") else "services"
    shown = item.replace("/", ":")
    if permanent:
        shown = shown if kind == "services" or fakelib.dist() == "el7" else f"'{shown}'"
    present = item in layer[kind]
    if option.startswith("--query"):
        return present
    adding = option.startswith("--add")
    if present == adding:
        name = "ALREADY_ENABLED" if adding else "NOT_ENABLED"
        where = "" if permanent else f" {'already in' if adding else 'not in'} '{zone}'"
        raise FirewallError(name, f"'{shown}'{where}" if not permanent else shown)
    if adding:
        layer[kind].append(item)
    else:
        layer[kind].remove(item)
    return None


def run_actions(state: dict, actions: list[tuple[str, str]], zone: str, permanent: bool, quiet: bool) -> int:
    """firewall-cmd's __cmd_sequence: one item fails hard, several items turn errors into warnings."""
    layer = state["permanent" if permanent else "runtime"].setdefault(zone, empty_zone())
    many, codes, answers = len(actions) > 1, [], []
    for option, value in actions:
        try:
            item = parse_port(value) if option.endswith("-port") else check_service(value)
            answer = apply(layer, option, item, zone, permanent)
        except FirewallError as exc:
            if exc.code and not many:
                fakelib.fail(f"Error: {exc}", exc.code)
            fakelib.err(f"Warning: {exc}")
            codes.append(exc.code)
            continue
        if answer is not None:
            answers.append((value, answer))
    if answers:
        for value, answer in answers if not quiet else []:
            print(f"{value}: {'yes' if answer else 'no'}" if many else ("yes" if answer else "no"))
        return 0 if many or answers[0][1] else 1
    if not quiet and (len(codes) < len(actions) or 0 in codes):
        print("success")
        return 0
    if len(set(codes)) == 1:
        return codes[0]
    return CODES["UNKNOWN_ERROR"] if codes else 0


if __name__ == "__main__":
    fakelib.run(main)

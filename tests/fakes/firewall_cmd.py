#!/usr/bin/env -S python3 -S
"""Fake ``firewall-cmd`` (firewalld 0.6.3 on EL7, 1.3 on EL9): ports, services and rich rules per zone.

Runtime and permanent configuration are separate sets; ``--reload`` copies permanent over runtime
and ``--runtime-to-permanent`` the other way. Needs firewalld.service active (``systemctl``
fake), else "FirewallD is not running" (252). Error names and exit codes are firewalld's
(``errors.py``): ALREADY_ENABLED/NOT_ENABLED are warnings (exit 0), INVALID_SERVICE 101,
INVALID_PORT 102, INVALID_PROTOCOL 103, INVALID_ADDR 105, INVALID_ZONE 112, INVALID_RULE 122,
MISSING_FAMILY 207, mixed errors UNKNOWN_ERROR 254.

Rich rules are parsed as firewalld's ``core/rich.py`` parses them (its lexer, element stack,
messages and ``check()``) for the part of the rich language the fake models: ``rule
[family=ipv4|ipv6] [source [not] address=ADDR[/MASK]] [service name=N | port port=P
protocol=tcp|udp|sctp|dccp | protocol value=PROTO] accept|reject|drop`` (PROTO: a number 0-255 or
an /etc/protocols name, as ``functions.checkProtocol``). A rule is stored and compared in
firewalld's normalized form (``str(Rich_Rule)``); any other element or attribute of the language
is refused.
"""

from __future__ import annotations

import copy
import re
import shlex
import socket
from pathlib import Path

import fakelib

CODES = {
    "ALREADY_ENABLED": 0,
    "NOT_ENABLED": 0,
    "INVALID_SERVICE": 101,
    "INVALID_PORT": 102,
    "INVALID_PROTOCOL": 103,
    "INVALID_ADDR": 105,
    "INVALID_ZONE": 112,
    "INVALID_RULE": 122,
    "MISSING_FAMILY": 207,
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
RICH_ACTIONS = ("--add-rich-rule", "--remove-rich-rule", "--query-rich-rule")
ACTIONS = (
    "--add-port",
    "--remove-port",
    "--query-port",
    "--add-service",
    "--remove-service",
    "--query-service",
    *RICH_ACTIONS,
)
SWITCHES = (
    "--state",
    "--reload",
    "--complete-reload",
    "--permanent",
    "--list-ports",
    "--list-services",
    "--list-rich-rules",
    "--list-all",
    "--get-default-zone",
    "--get-zones",
    "--runtime-to-permanent",
    "-q",
    "--quiet",
)


class FirewallError(Exception):
    """firewalld's error: ``NAME: msg`` (just ``NAME`` without a message), exit status CODES[NAME]."""

    def __init__(self, name: str, msg: str | None = None) -> None:
        super().__init__(name if msg is None else f"{name}: {msg}")
        self.code = CODES[name]


class PythonError(FirewallError):
    """A plain Python exception inside firewalld (its rich-rule parser has a few): firewall-cmd
    shows the exception's text alone and exits UNKNOWN_ERROR."""

    def __init__(self, msg: str) -> None:
        Exception.__init__(self, msg)
        self.code = CODES["UNKNOWN_ERROR"]


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
    options = sorted({option for option, _ in actions})
    if len(options) > 1 and set(options) & set(RICH_ACTIONS):
        fakelib.fail(  # real firewall-cmd runs the first its elif chain tests and silently ignores the others
            f"firewall-cmd (fake): {' and '.join(options)} in one call: firewall-cmd would run only one of them",
            2,
        )
    quiet = bool(switches & {"-q", "--quiet"})
    code = run_switches(state, switches, zone, quiet)
    if actions:
        code = run_actions(state, actions, zone, "--permanent" in switches, quiet)
    fakelib.save("firewalld", canonical(state))
    return code


def canonical(state: dict) -> dict:
    """The state as firewalld keeps a zone: services a set (stored sorted, as they are listed), no rich
    rules where none are left; so equal configurations are equal state files, however they came about."""
    for layer in ("permanent", "runtime"):
        for zone in state.get(layer, {}).values():
            zone["services"] = sorted(zone["services"])
            if not zone.get("rich_rules", True):
                del zone["rich_rules"]
    return state


def run_switches(state: dict, switches: set[str], zone: str, quiet: bool) -> int:
    layer = state["permanent" if "--permanent" in switches else "runtime"].setdefault(zone, empty_zone())
    if switches & {"--reload", "--complete-reload"}:
        try:
            reload(state)
        except FirewallError as exc:
            fakelib.fail(f"Error: {exc}", exc.code)
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
    rules = layer.get("rich_rules", [])  # a zone saved before rich rules were modelled has none
    if "--list-rich-rules" in switches:
        print("\n".join(rules))
    if "--list-all" in switches:
        # 0.6.3 always starts the rules on a new line; 1.x only when there are any (sorted by
        # priority, which the fake's rules do not have: the order they were added)
        shown = "\n\t" + "\n\t".join(rules) if rules or fakelib.dist() == "el7" else ""
        print(
            f"{zone}{' (active)' if zone == state['default_zone'] else ''}\n  target: default\n"
            f"  icmp-block-inversion: no\n  interfaces: \n  sources: \n"
            f"  services: {' '.join(sorted(layer['services']))}\n  ports: {' '.join(layer['ports'])}\n"
            "  protocols: \n  masquerade: no\n  forward-ports: \n  source-ports: \n  icmp-blocks: \n"
            f"  rich rules: {shown}"
        )
    return 0


def reload(state: dict) -> None:
    """``--reload``: the permanent configuration becomes the runtime one. Applying a permanent rich
    rule whose service does not exist fails it (firewalld checks that only when it applies a rule),
    and then the fake changes nothing."""
    for zone in state["permanent"].values():
        for rule in zone.get("rich_rules", []):
            service = parse_rich_rule(rule)[1]
            if service is not None and not service_exists(service):
                raise FirewallError("INVALID_SERVICE", service)
    state["runtime"] = copy.deepcopy(state["permanent"])


def post_reload() -> None:
    """A package scriptlet's ``firewall-cmd --reload --quiet || true`` (``fakelib.POST_FIREWALL_RELOAD``)."""
    state = fakelib.load("firewalld", {})
    try:
        reload(state)
    except FirewallError:
        return
    fakelib.save("firewalld", canonical(state))


def empty_zone() -> dict:
    return {"ports": [], "services": [], "rich_rules": []}


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


def service_exists(name: str) -> bool:
    return name in SERVICES or Path(f"/etc/firewalld/services/{name}.xml").exists()


def check_service(name: str) -> str:
    if not service_exists(name):
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


def apply_rich_rule(layer: dict, option: str, value: str, zone: str, permanent: bool) -> bool | None:
    """One rich-rule action, as firewalld does it: the permanent ones on the client's copy of the
    zone's settings (parsed and checked, the service's existence is not), the runtime ones in the
    daemon (which checks the service when it applies an added rule). A query returns its answer."""
    rule, service = parse_rich_rule(value)
    rules = layer.setdefault("rich_rules", [])
    present = rule in rules
    if option == "--query-rich-rule":
        return present
    adding = option == "--add-rich-rule"
    if present == adding:
        name = "ALREADY_ENABLED" if adding else "NOT_ENABLED"
        raise FirewallError(name, rule if permanent else f"'{rule}' {'already in' if adding else 'not in'} '{zone}'")
    if adding and not permanent and service is not None and not service_exists(service):
        raise FirewallError("INVALID_SERVICE", service)
    if adding:
        rules.append(rule)
    else:
        rules.remove(rule)
    return None


def run_actions(state: dict, actions: list[tuple[str, str]], zone: str, permanent: bool, quiet: bool) -> int:
    """firewall-cmd's __cmd_sequence: one item fails hard, several items turn errors into warnings."""
    layer = state["permanent" if permanent else "runtime"].setdefault(zone, empty_zone())
    many, codes, answers = len(actions) > 1, [], []
    for option, value in actions:
        try:
            if option in RICH_ACTIONS:
                answer = apply_rich_rule(layer, option, value, zone, permanent)
                value = f"'{value}'"  # how a query of several rules names each one
            else:
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


# -- rich rules: firewalld's core/rich.py (0.6.3 on EL7, 1.3 on EL9), the part the fake models ------

_ELEMENTS = {
    "rule", "source", "destination", "protocol", "service", "port", "icmp-block", "icmp-type", "masquerade",
    "forward-port", "source-port", "log", "audit", "accept", "drop", "reject", "mark", "limit", "not", "NOT", "EOL",
}  # fmt: skip
_ATTRIBUTES = {
    "family", "address", "mac", "ipset", "invert", "value", "port", "protocol", "to-port", "to-addr", "name",
    "prefix", "level", "type", "set",
}  # fmt: skip
_EL9_ELEMENTS, _EL9_ATTRIBUTES = {"nflog", "tcp-mss-clamp"}, {"priority", "group", "queue-size"}
MODELLED_ELEMENTS = {"rule", "source", "not", "NOT", "service", "port", "protocol", "accept", "reject", "drop", "EOL"}
MODELLED_ATTRIBUTES = {"family", "address", "invert", "name", "port", "protocol", "value"}
# EL's /etc/protocols (the setup package: IANA's list, name, number, alias), the few lines a rule
# here may name; consulted only when this machine's own /etc/protocols lacks the name.
EL_PROTOCOLS = {
    "ip": 0, "IP": 0, "icmp": 1, "ICMP": 1, "igmp": 2, "IGMP": 2, "tcp": 6, "TCP": 6, "udp": 17, "UDP": 17,
    "gre": 47, "GRE": 47, "esp": 50, "ESP": 50, "ah": 51, "AH": 51, "ipv6-icmp": 58, "IPv6-ICMP": 58,
    "vrrp": 112, "VRRP": 112, "sctp": 132, "SCTP": 132,
}  # fmt: skip
ACTIONS_OF_RULES = ("accept", "reject", "drop")


def not_modelled(what: str) -> FirewallError:
    return FirewallError(
        "INVALID_RULE", f"'{what}' is valid in firewalld's rich language, but the fake does not model it"
    )


def rich_tokens(text: str) -> list[tuple[str | None, str | None, str | None]]:
    """Rich_Rule._lexer: shell words; ``a=b`` is an attribute, anything else an element; then EOL."""
    if fakelib.dist() == "el9":  # 1.x strips C0 and C1 control characters first (stripNonPrintableCharacters)
        text = "".join(c for c in text if 31 < ord(c) < 127 or ord(c) >= 160)
    try:
        words = shlex.split(text)
    except ValueError as exc:  # "No closing quotation": not a FirewallError
        raise PythonError(str(exc)) from None
    tokens: list[tuple[str | None, str | None, str | None]] = []
    for word in words:
        if "=" in word:
            attr = word.split("=")
            if len(attr) != 2 or not attr[0] or not attr[1]:
                raise FirewallError("INVALID_RULE", f"internal error in _lexer(): {word}")
            tokens.append((None, attr[0], attr[1]))
        else:
            tokens.append((word, None, None))
    return [*tokens, ("EOL", None, None)]


def parse_rich_rule(text: str) -> tuple[str, str | None]:
    """(the rule in firewalld's normalized form, the service it names or None), after firewalld's
    parse and ``check()``; FirewallError (or PythonError) with firewalld's messages otherwise."""
    if not text:
        raise FirewallError("INVALID_RULE", "empty rule")
    tokens = rich_tokens(text)
    if tokens[0][0] == "EOL":
        raise FirewallError("INVALID_RULE", "empty rule")
    el9 = fakelib.dist() == "el9"
    elements, attributes = (
        (_ELEMENTS | _EL9_ELEMENTS, _ATTRIBUTES | _EL9_ATTRIBUTES) if el9 else (_ELEMENTS, _ATTRIBUTES)
    )
    # element: ("service", name), ("port", port, protocol) or ("protocol", value)
    family = source = element = action = None
    attrs: dict[str, object] = {}
    stack: list[str] = []  # the elements the parser is in
    index = 0
    while not (tokens[index][0] == "EOL" and stack == ["rule"]):
        word, name, value = tokens[index]
        if name:
            if name not in attributes:
                raise FirewallError("INVALID_RULE", f"bad attribute '{name}'")
            if name not in MODELLED_ATTRIBUTES:
                raise not_modelled(name)
        else:
            if word not in elements:
                raise FirewallError("INVALID_RULE", f"unknown element {word}")
            if word not in MODELLED_ELEMENTS:
                raise not_modelled(word)
            if word == "source" and source:
                raise FirewallError("INVALID_RULE", "more than one 'source' element")
            if word in ("service", "port", "protocol") and element:
                raise FirewallError(
                    "INVALID_RULE",
                    f"more than one element. There cannot be both '{word}' and '{element_text(element)}' in one rule.",
                )
            if word in ACTIONS_OF_RULES and action:
                raise FirewallError(
                    "INVALID_RULE",
                    f"more than one 'action' element. There cannot be both '{word}' and '{action}' in one rule.",
                )
        inside = stack[-1] if stack else ""
        if inside == "":
            if not word and name:
                if name == "family":
                    raise FirewallError("INVALID_RULE", "'family' outside of rule. Use 'rule family=...'.")
                raise FirewallError(
                    "INVALID_RULE", f"'{name}' outside of any element. Use 'rule <element> {name}= ...'."
                )
            if word != "rule":
                raise FirewallError("INVALID_RULE", f"'{word}' outside of rule. Use 'rule ... {word} ...'.")
            stack.append("rule")
        elif inside == "rule":
            if name == "family":
                if value not in ("ipv4", "ipv6"):
                    raise FirewallError(
                        "INVALID_RULE", f"'family' attribute cannot have '{value}' value. Use 'ipv4' or 'ipv6' instead."
                    )
                family = value
            elif name == "protocol":
                raise FirewallError(
                    "INVALID_RULE",
                    "wrong 'protocol' usage. Use either 'rule protocol value=...' or  "  # two spaces, as firewalld
                    "'rule [forward-]port protocol=...'.",
                )
            elif name:
                raise FirewallError(
                    "INVALID_RULE", f"attribute '{name}' outside of any element. Use 'rule <element> {name}= ...'."
                )
            else:
                stack.append(word)
        elif inside == "source":
            if name in ("address", "invert"):
                attrs[name] = value
            elif word in ("not", "NOT"):
                attrs["invert"] = True
            else:
                if attrs.get("address") is None:
                    raise FirewallError("INVALID_RULE", "no address, mac and ipset")
                source = (attrs["address"], bool(attrs.get("invert")))  # any invert= value inverts, as in firewalld
                stack.pop()
                attrs.clear()
                index -= 1  # the token goes back to the input
        elif inside == "protocol":
            if name != "value":
                raise FirewallError("INVALID_RULE", "invalid 'protocol' element")
            element = ("protocol", value)
            stack.pop()
        elif inside == "service":
            if name != "name":
                raise FirewallError("INVALID_RULE", "invalid 'service' element")
            element = ("service", value)
            stack.pop()
        elif inside == "port":
            if name in ("port", "protocol"):
                attrs[name] = value
            else:
                element = ("port", attrs.get("port"), attrs.get("protocol"))
                stack.pop()
                attrs.clear()
                index -= 1
        elif inside in ACTIONS_OF_RULES:
            action = inside
            stack.pop()
            index -= 1
        index += 1
        if index == len(tokens):  # an element the parser never leaves ("rule rule", "rule not ..."): firewalld's
            raise PythonError("list index out of range")  # loop runs off its token list
    check_rule(family, source, element, action)
    parts = ["rule", f'family="{family}"' if family else "", source_text(source), element_text(element), action or ""]
    return " ".join(p for p in parts if p), element[1] if element and element[0] == "service" else None


def check_rule(family: str | None, source: tuple | None, element: tuple | None, action: str | None) -> None:
    """Rich_Rule.check() for the modelled elements, in its order."""
    if family is None and source is not None:
        raise FirewallError("MISSING_FAMILY")
    if element is None:
        if action is None:
            raise FirewallError("INVALID_RULE", "no element, no action")
        if source is None:
            raise FirewallError("INVALID_RULE", "no element, no source, no destination")
    if action is None:
        raise FirewallError("INVALID_RULE", "no action, no log, no audit")
    if source is not None and not check_address(family, source[0]):
        raise FirewallError("INVALID_ADDR", source[0])
    if element is not None and element[0] == "port":
        port, protocol = element[1], element[2]
        if port is None:  # firewalld's getPortRange(None)
            raise PythonError("'NoneType' object has no attribute 'isdigit'")
        if not re.fullmatch(r"[0-9]+(-[0-9]+)?", port):  # firewalld also takes /etc/services names
            raise not_modelled(f"port={port}")
        if any(int(bound) > 65535 for bound in port.split("-")):
            raise FirewallError("INVALID_PORT", port)
        if protocol not in ("tcp", "udp", "sctp", "dccp"):
            # (firewalld: FirewallError(INVALID_PROTOCOL, None) prints the code alone)
            raise FirewallError("INVALID_PROTOCOL", None if protocol is None else str(protocol))
    elif element is not None and element[0] == "protocol" and not check_protocol(element[1]):
        raise FirewallError("INVALID_PROTOCOL", element[1])


def check_protocol(value: str) -> bool:
    """functions.checkProtocol: ``int(value)`` in 0-255, else a name ``socket.getprotobyname`` knows
    (this machine's /etc/protocols, then EL's lines in EL_PROTOCOLS). firewalld 0.6.3 runs on
    Python 2, whose ``int`` takes no ``_`` between digits ("1_2"); 1.x's Python 3 does."""
    try:
        if "_" in value and fakelib.dist() == "el7":
            raise ValueError(value)
        number = int(value)
    except ValueError:
        try:
            socket.getprotobyname(value)
        except (OSError, UnicodeError):
            return value in EL_PROTOCOLS
        return True
    return 0 <= number <= 255


def check_address(family: str | None, address: str) -> bool:
    """functions.check_address: an address with an optional prefix length (IPv4 also a dotted
    mask), host bits allowed ("10.0.0.5/24" stays as written)."""
    addr, slash, mask = address.partition("/")
    if slash and (not addr or not mask):
        return False
    af = socket.AF_INET if family == "ipv4" else socket.AF_INET6
    if family == "ipv6" and fakelib.dist() == "el9":
        addr = addr.strip("[]")  # 1.x: normalizeIP6
    try:
        socket.inet_pton(af, addr)
        if mask and family == "ipv4" and "." in mask:
            socket.inet_pton(af, mask)
            return True
    except OSError:
        return False
    if not mask:
        return True
    try:
        return 0 <= int(mask) <= (32 if family == "ipv4" else 128)
    except ValueError:
        return False


def source_text(source: tuple | None) -> str:
    return "" if source is None else f'source{" NOT" if source[1] else ""} address="{source[0]}"'


def element_text(element: tuple | None) -> str:
    if element is None:
        return ""
    if element[0] == "service":
        return f'service name="{element[1]}"'
    if element[0] == "protocol":
        return f'protocol value="{element[1]}"'
    return f'port port="{element[1]}" protocol="{element[2]}"'


if __name__ == "__main__":
    fakelib.run(main)

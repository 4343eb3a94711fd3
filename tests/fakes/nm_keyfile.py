"""NetworkManager connection profiles as keyfiles, the way ``nmcli`` reads and writes them: nmcli
property names and values (``ipv4.addresses``, ``bridge.stp yes``) on one side, keyfile sections
and keys (``[ipv4] address1=``, ``[bridge] stp=true``) on the other. Used by the ``nmcli`` fake.
"""

from __future__ import annotations

import configparser
import io
import ipaddress
from pathlib import Path

import fakelib

PROFILE_DIR = Path("/etc/NetworkManager/system-connections")
ALIASES = {
    "type": "connection.type",
    "ifname": "connection.interface-name",
    "con-name": "connection.id",
    "autoconnect": "connection.autoconnect",
    "master": "connection.master",
    "controller": "connection.master",
    "slave-type": "connection.slave-type",
    "port-type": "connection.slave-type",
    "ip4": "ipv4.addresses",
    "gw4": "ipv4.gateway",
    "ip6": "ipv6.addresses",
    "gw6": "ipv6.gateway",
}
PROPERTIES = {
    "connection": ["id", "uuid", "type", "interface-name", "autoconnect", "master", "slave-type", "zone"],
    "ipv4": ["method", "dns", "dns-search", "addresses", "gateway", "never-default"],
    "ipv6": ["method", "dns", "addresses", "gateway"],
    "bridge": ["stp", "forward-delay", "priority", "mac-address"],
    "ethernet": ["mac-address", "mtu"],
}
BOOLEANS = {"connection.autoconnect", "bridge.stp", "ipv4.never-default"}
LISTS = {"ipv4.addresses", "ipv4.dns", "ipv4.dns-search", "ipv6.addresses", "ipv6.dns"}
TYPES = {
    "bridge": "bridge",
    "ethernet": "802-3-ethernet",
    "802-3-ethernet": "802-3-ethernet",
    "bridge-slave": "802-3-ethernet",
}


def profiles() -> list[tuple[Path, configparser.ConfigParser]]:
    found = []
    for path in sorted(PROFILE_DIR.glob("*.nmconnection")):
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(path)
        found.append((path, parser))
    return found


def find(name: str) -> list[tuple[Path, configparser.ConfigParser]]:
    return [(p, c) for p, c in profiles() if name in (c.get("connection", "id"), c.get("connection", "uuid"))]


def get(conf: configparser.ConfigParser, prop: str) -> str:
    """A property as nmcli prints it, read from the keyfile."""
    setting, key = prop.split(".", 1)
    section = "ethernet" if setting == "802-3-ethernet" else setting
    if prop in ("ipv4.addresses", "ipv6.addresses"):
        items = conf.items(section) if conf.has_section(section) else []
        return ", ".join(v for k, v in items if k.startswith("address"))
    value = conf.get(section, key, fallback="")
    if prop in BOOLEANS:
        default = "yes" if prop == "connection.autoconnect" else "no"
        return {"true": "yes", "false": "no"}.get(value, default)
    if prop in LISTS:
        return ",".join(v for v in value.split(";") if v)
    if prop == "connection.type":
        return TYPES.get(value, value)
    return value


def set_prop(conf: configparser.ConfigParser, prop: str, value: str, how: str = "") -> None:
    """Write one nmcli property into the keyfile; ``how`` is '+' (append) or '-' (remove) for lists."""
    setting, key = prop.split(".", 1)
    section = "ethernet" if setting in ("802-3-ethernet", "ethernet") else setting
    if not conf.has_section(section):
        conf.add_section(section)
    if prop in BOOLEANS:
        if value.lower() not in ("yes", "no", "true", "false", "on", "off", "1", "0"):
            fakelib.fail(f"Error: failed to modify {prop}: '{value}' is not valid; use [true, false, yes, no].", 2)
        value = "true" if value.lower() in ("yes", "true", "on", "1") else "false"
    if prop in LISTS:
        new = [v.strip() for v in value.replace(",", " ").split() if v.strip()]
        family = ipaddress.IPv4Interface if setting == "ipv4" else ipaddress.IPv6Interface
        for item in new if key in ("addresses", "dns") else []:
            try:
                family(item)
            except ValueError:
                fakelib.fail(f"Error: failed to modify {prop}: invalid IP address: Invalid IP address '{item}'.", 2)
        old = [v for v in get(conf, prop).replace(",", " ").split() if v]
        if how == "+":
            items = old + [v for v in new if v not in old]
        else:
            items = [v for v in old if v not in new] if how == "-" else new
        if key == "addresses":
            for option in [k for k, _ in conf.items(section) if k.startswith("address")]:
                conf.remove_option(section, option)
            for n, item in enumerate(items, 1):
                conf.set(section, f"address{n}", item)
            return
        value = "".join(f"{v};" for v in items)
    if prop == "connection.type":
        value = "ethernet" if value in ("802-3-ethernet", "bridge-slave") else value
    conf.set(section, key, value)


def parse_properties(args: list[str]) -> list[tuple[str, str, str]]:
    if len(args) % 2:
        fakelib.fail(f"Error: value for '{args[-1]}' is missing.", 2)
    parsed = []
    for name, value in zip(args[::2], args[1::2], strict=True):
        how = name[0] if name[:1] in "+-" else ""
        prop = ALIASES.get(name.lstrip("+-"), name.lstrip("+-"))
        setting, _, key = prop.partition(".")
        setting = "ethernet" if setting == "802-3-ethernet" else setting
        if setting not in PROPERTIES:
            fakelib.fail(
                f"Error: invalid or not allowed setting '{setting}': '{setting}' not among [{', '.join(PROPERTIES)}].",
                2,
            )
        if key not in PROPERTIES[setting]:
            fakelib.fail(f"Error: invalid property '{key}': '{key}' not among [{', '.join(PROPERTIES[setting])}].", 2)
        parsed.append((f"{setting}.{key}", value, how))
    return parsed


def write(path: Path, conf: configparser.ConfigParser) -> None:
    text = io.StringIO()
    conf.write(text, space_around_delimiters=False)
    fakelib.write_file(path, text.getvalue(), mode=0o600)


def verify(conf: configparser.ConfigParser) -> str | None:
    for family in ("ipv4", "ipv6"):
        if get(conf, f"{family}.method") == "manual" and not get(conf, f"{family}.addresses"):
            return f"{family}.addresses: this property cannot be empty for 'method=manual'"
    return None

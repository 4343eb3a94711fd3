#!/usr/bin/env -S python3 -S
"""Fake ``nmcli`` (NetworkManager 1.4x, EL9), ``connection`` object only: profiles are real keyfiles
in /etc/NetworkManager/system-connections/NAME.nmconnection; activation is recorded in state and
never touches an interface.

``connection show [--active] [NAME]``, ``add type bridge|ethernet|bridge-slave ...``,
``modify NAME [+|-]prop value ...``, ``up``, ``down``, ``delete``, ``reload``; global ``-t``,
``-f FIELDS``, ``-g FIELDS``. Needs NetworkManager.service active, else exit 8. Exit codes:
2 bad input, 10 unknown connection (nmcli's NMC_RESULT_*).
"""

from __future__ import annotations

import configparser
import uuid

import fakelib
from nm_keyfile import PROFILE_DIR, PROPERTIES, TYPES, find, get, parse_properties, profiles, set_prop, verify, write


def main(prog: str, argv: list[str]) -> int:
    opts, i = {}, 0
    while i < len(argv) and argv[i].startswith("-"):
        flag = argv[i]
        if flag in ("-t", "--terse", "-p", "--pretty"):
            opts[flag.lstrip("-")[0]] = True
        elif flag in (
            "-f",
            "--fields",
            "-g",
            "--get-values",
            "-m",
            "--mode",
            "-e",
            "--escape",
            "-w",
            "--wait",
            "-c",
            "--colors",
        ):
            if i + 1 >= len(argv):
                fakelib.fail(f"Error: missing argument for '{flag}' option.", 2)
            opts[flag.lstrip("-")[0]] = argv[i + 1]
            i += 1
        else:
            fakelib.fail(f"Error: Option '{flag}' is unknown, try 'nmcli -help'.", 2)
        i += 1
    words = argv[i:]
    if not words or not "connection".startswith(words[0]):
        what = words[0] if words else ""
        fakelib.fail(f"Error: fake nmcli models only the 'connection' object, not {what!r}.", 2)
    if not fakelib.unit_active("NetworkManager"):
        fakelib.fail("Error: NetworkManager is not running.", 8)
    verbs = ["show", "add", "modify", "up", "down", "delete", "reload"]
    verb = next((v for v in verbs if words[1:] and v.startswith(words[1])), None) if len(words) > 1 else "show"
    if verb is None:
        fakelib.fail(f"Error: 'connection' command '{words[1]}' is not valid.", 2)
    handler = {
        "show": show,
        "add": add,
        "modify": modify,
        "up": up,
        "down": down,
        "delete": delete,
        "reload": lambda opts, args: 0,
    }[verb]
    return handler(opts, words[2:])


def unknown(name: str, code: int = 10) -> None:
    fakelib.fail(f"Error: unknown connection '{name}'.", code)


# -- verbs ---------------------------------------------------------------------------------------


def add(opts: dict, args: list[str]) -> int:
    props = parse_properties(args)
    given = {p: v for p, v, _ in props}
    if "connection.type" not in given:
        fakelib.fail("Error: 'type' argument is required.", 2)
    kind = given["connection.type"]
    if kind not in TYPES:
        fakelib.fail(f"Error: invalid connection type; '{kind}' not among [bridge, ethernet, bridge-slave].", 2)
    if kind == "bridge-slave" and "connection.master" not in given:
        fakelib.fail("Error: 'master' argument is required.", 2)
    ifname = given.get("connection.interface-name", "")
    name = given.get("connection.id") or (f"{kind}-{ifname}" if ifname else kind)
    conf = configparser.ConfigParser(interpolation=None)
    conf.optionxform = str  # type: ignore[assignment,method-assign]
    conf.read_dict({"connection": {"id": name, "uuid": str(uuid.uuid4())}})
    if "connection.master" in given and "connection.slave-type" not in given:
        conf.set("connection", "slave-type", "bridge")  # the only kind of master modelled here
    for prop, value, how in props:
        if prop != "connection.id":
            set_prop(conf, prop, value, how)
    if kind == "bridge":
        set_prop(conf, "ipv4.method", given.get("ipv4.method", "auto"))
        set_prop(conf, "ipv6.method", given.get("ipv6.method", "auto"))
    problem = verify(conf)
    if problem:
        fakelib.fail(f"Error: Failed to add '{name}' connection: {problem}", 1)
    path = PROFILE_DIR / f"{name}.nmconnection"
    n = 0
    while path.exists():  # NetworkManager allows several profiles with one name
        n += 1
        path = PROFILE_DIR / f"{name}-{n}.nmconnection"
    write(path, conf)
    print(f"Connection '{name}' ({conf.get('connection', 'uuid')}) successfully added.")
    return 0


def modify(opts: dict, args: list[str]) -> int:
    if not args:
        fakelib.fail("Error: No connection specified.", 2)
    matches = find(args[0])
    if not matches:
        unknown(args[0])
    path, conf = matches[0]
    for prop, value, how in parse_properties(args[1:]):
        set_prop(conf, prop, value, how)
    problem = verify(conf)
    if problem:
        fakelib.fail(f"Error: Failed to modify connection '{args[0]}': {problem}", 1)
    write(path, conf)
    return 0


def active_state() -> dict:
    return fakelib.load("nm", {"active": {}, "next_path": 1})


def up(opts: dict, args: list[str]) -> int:
    matches = find(args[0]) if args else []
    if not matches:
        unknown(args[0] if args else "")
    state = active_state()
    conf = matches[0][1]
    master = get(conf, "connection.master")
    for _, other in profiles():  # a port brings its bridge up with it, found by name, UUID or ifname
        if master and master in (
            other.get("connection", "id"),
            other.get("connection", "uuid"),
            get(other, "connection.interface-name"),
        ):
            activate(state, other)
    number = activate(state, conf)
    fakelib.save("nm", state)
    print(
        "Connection successfully activated (D-Bus active path: "
        f"/org/freedesktop/NetworkManager/ActiveConnection/{number})"
    )
    return 0


def activate(state: dict, conf: configparser.ConfigParser) -> int:
    key = conf.get("connection", "uuid")
    if key not in state["active"]:
        state["active"][key] = state["next_path"]
        state["next_path"] += 1
    return state["active"][key]


def down(opts: dict, args: list[str]) -> int:
    state = active_state()
    name = args[0] if args else ""
    matches = [c for _, c in find(name) if c.get("connection", "uuid") in state["active"]]
    if not matches:
        fakelib.fail(f"Error: '{name}' is not an active connection.\nError: no active connection provided.", 10)
    for conf in matches:
        number = state["active"].pop(conf.get("connection", "uuid"))
        print(
            f"Connection '{name}' successfully deactivated (D-Bus active path: "
            f"/org/freedesktop/NetworkManager/ActiveConnection/{number})"
        )
    fakelib.save("nm", state)
    return 0


def delete(opts: dict, args: list[str]) -> int:
    name = args[0] if args else ""
    matches = find(name)
    if not matches:
        fakelib.fail(f"Error: unknown connection '{name}'.\nError: cannot delete unknown connection(s): '{name}'.", 10)
    state = active_state()
    for path, conf in matches:
        state["active"].pop(conf.get("connection", "uuid"), None)
        path.unlink()
        print(f"Connection '{conf.get('connection', 'id')}' ({conf.get('connection', 'uuid')}) successfully deleted.")
    fakelib.save("nm", state)
    return 0


def show(opts: dict, args: list[str]) -> int:
    active_only = "--active" in args
    args = [a for a in args if a != "--active"]
    state = active_state()
    terse, fields = "t" in opts or "g" in opts, opts.get("g") or opts.get("f")
    if args:
        matches = find(args[0])
        if not matches:
            fakelib.fail(f"Error: {args[0]} - no such connection profile.", 10)
        conf = matches[0][1]
        props = [
            f"{'802-3-ethernet' if s == 'ethernet' else s}.{k}"
            for s in PROPERTIES
            for k in PROPERTIES[s]
            if conf.has_section(s) or s in ("connection", "ipv4", "ipv6")
        ]
        wanted = fields.split(",") if fields else props
        for prop in wanted:
            value = get(conf, prop) if prop in props else ""
            escaped = value.replace(":", "\\:")
            if "g" in opts:
                print(escaped)
            elif terse:
                print(f"{prop}:{escaped}")
            else:
                print(f"{prop + ':':<40}{value or '--'}")
        return 0
    columns = (fields or "NAME,UUID,TYPE,DEVICE").split(",")
    rows = []
    for _, conf in profiles():
        is_active = conf.get("connection", "uuid") in state["active"]
        if active_only and not is_active:
            continue
        kind = get(conf, "connection.type")
        values = {
            "NAME": conf.get("connection", "id"),
            "UUID": conf.get("connection", "uuid"),
            "TYPE": kind if terse else {"802-3-ethernet": "ethernet"}.get(kind, kind),
            "DEVICE": get(conf, "connection.interface-name") if is_active else "" if terse else "--",
            "ACTIVE": "yes" if is_active else "no",
        }
        rows.append([values.get(c, "") for c in columns])
    if terse:
        for row in rows:
            print(":".join(v.replace(":", "\\:") for v in row))
        return 0
    widths = [max([len(c), *(len(r[n]) for r in rows)]) + 2 for n, c in enumerate(columns)]
    for row in [columns, *rows]:
        print("".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    fakelib.run(main)

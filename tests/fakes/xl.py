#!/usr/bin/env -S python3 -S
"""Fake ``xl`` (the Xen toolstack): domains created from xl.cfg files, listed, paused, resized.

``create [-q] [-n] [-p] CFG``, ``list [-l] [NAME...]``, ``pause``/``unpause NAME``,
``shutdown [-w] NAME``, ``destroy NAME``, ``mem-set NAME MEM[bkmgt]``, ``vcpu-set NAME N``. Syntax,
output and exit codes follow xl(1) of Xen 4.12 (Xen4CentOS): every failure exits 1 (xl's
EXIT_FAILURE) with libxl's message on stderr; ``list`` prints xl's table (``Name ID Mem VCPUs
State Time(s)``, Domain-0 first; a state ``r-----``/``-b----`` running, ``--p---`` paused) and ``NAME
is an invalid domain identifier (rc=-6)`` for an unknown domain; ``list -l`` prints a JSON array of
``{"domid": N, "config": <libxl_domain_config>}`` (``c_info``, ``b_info`` with ``max_memkb``,
``target_memkb``, ``max_vcpus``, ``avail_vcpus``, ``disks``, ``nics``, ``on_*``); ``create -n`` (dry
run) prints that object for the file with ``"domid": null`` and creates nothing.

No xl.cfg parser can be installed here (``xl create -n`` needs libxl, which needs a running Xen),
so this one implements xl.cfg(5)'s syntax strictly and refuses what xl refuses, plus keys we never
write: ``KEY = VALUE`` lines (``#`` comments, an optional ``;``), VALUE a double- or
single-quoted string, a whole number, or a ``[ ... ]`` list of strings over several lines (a
trailing comma allowed). Known keys and their checks: ``name`` (required; letters, digits and
``._-``), ``type`` pv|pvh|hvm (required: we never rely on the ``builder`` default), ``memory`` and
``maxmem`` (MiB, maxmem >= memory), ``vcpus`` <= ``maxvcpus``, ``vif`` (``key=value`` specs:
``mac`` six hex octets with a unicast first octet, ``bridge``, ``model``, ``type``, ``vifname``,
``script``, ``ip``), ``disk`` (xl-disk-configuration(5): ``format`` raw|qcow|qcow2|vhd|qed,
``vdev`` xvdX/hdX/sdX, ``access`` ro|r|rw|w, ``devtype=cdrom`` only for hvm, ``target`` last and
required; two disks may not share a vdev), ``on_poweroff``/``on_reboot``/``on_crash`` (xl's actions),
``bootloader``/``kernel``/``ramdisk``/``extra``/``cmdline`` for pv/pvh only, ``boot``, ``serial``,
``vnc``/``vnclisten``/``vncunused``/``spice``/``spicehost``/``spiceport``/
``spicedisable_ticketing`` for hvm only (a listen address must be an IPv4 address; spice needs
spiceport and either spicedisable_ticketing or a password). An unknown key, a repeated key or a
bad value: ``Failed to parse config: …``, exit 1.

``create`` (not ``-n``) also checks what libxl would: no domain of that name exists, every disk
target exists (``… failed to create domain``), the kernel/ramdisk exist. ``-p`` leaves it paused.
A domain booted with ``inst.ks=`` in ``extra`` runs the installer: it powers itself off (and,
``on_poweroff = "destroy"``, is gone) at the next ``xl`` call. ``shutdown`` of a paused domain does
nothing (the guest cannot see the request): with ``-w`` it waits, as xl does, until killed.
``mem-set`` above maxmem and ``vcpu-set`` above maxvcpus are refused. xl needs a booted Xen:
``xencommons.service`` active in the fake systemd, else exit 1 as in a plain kernel.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import fakelib

TYPES = {"pv", "pvh", "hvm"}
ACTIONS = {"destroy", "restart", "rename-restart", "preserve", "coredump-destroy", "coredump-restart", "soft-reset"}
STRING_KEYS = {
    "name", "type", "vif", "disk", "on_poweroff", "on_reboot", "on_crash", "bootloader", "kernel", "ramdisk",
    "extra", "cmdline", "boot", "serial", "vnclisten", "spicehost", "uuid",
}  # fmt: skip
NUMBER_KEYS = {
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "vnc",
    "vncunused",
    "spice",
    "spiceport",
    "spicedisable_ticketing",
}
LIST_KEYS = {"vif", "disk"}
PV_ONLY = {"bootloader", "kernel", "ramdisk", "extra", "cmdline"}
HVM_ONLY = {
    "boot",
    "serial",
    "vnc",
    "vnclisten",
    "vncunused",
    "spice",
    "spicehost",
    "spiceport",
    "spicedisable_ticketing",
}
DISK_KEYS = {"format", "vdev", "access", "devtype", "target", "backendtype", "script"}
VIF_KEYS = {"mac", "bridge", "model", "type", "vifname", "script", "ip"}
VDEV = re.compile(r"^(xvd[a-z]+|hd[a-z]|sd[a-z])$")
MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$")
UNITS_KIB = {"b": 1 / 1024, "k": 1, "m": 1024, "g": 1024**2, "t": 1024**3}
USAGE = "Usage: xl [-vfNtT] <subcommand> [args]"
DOM0_MIB = 2048
CREATE_USAGE = "Usage: xl [-v] create <ConfigFile> [options] [vars]"


class ParseError(Exception):
    pass


def tokens(text: str):
    """xl.cfg's lexer: strings, numbers, names, '=', '[', ']', ',', ';', newlines."""
    pattern = re.compile(
        r'(?P<ws>[ \t\r]+)|(?P<comment>#[^\n]*)|(?P<nl>\n)|"(?P<dq>[^"\n]*)"|\'(?P<sq>[^\'\n]*)\''
        r"|(?P<num>0x[0-9a-fA-F]+|\d+)(?![\w.])|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[=\[\],;])"
    )
    pos, line = 0, 1
    while pos < len(text):
        m = pattern.match(text, pos)
        if not m:
            raise ParseError(f"config parsing error near line {line}: syntax error, unexpected {text[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "nl":
            line += 1
            yield ("nl", None, line - 1)
        elif kind in ("dq", "sq"):
            yield ("str", m.group(kind), line)
        elif kind == "num":
            yield ("num", int(m.group(kind), 0), line)
        elif kind in ("name", "punct"):
            yield (kind, m.group(kind), line)
    yield ("nl", None, line)


def parse_cfg(text: str) -> dict:
    items: dict = {}
    toks = list(tokens(text))
    i = 0
    while i < len(toks):
        kind, value, line = toks[i]
        if kind == "nl" or (kind == "punct" and value == ";"):
            i += 1
            continue
        if kind != "name":
            raise ParseError(f"config parsing error near line {line}: syntax error, unexpected {value!r}")
        key = value
        if i + 2 >= len(toks) or toks[i + 1][:2] != ("punct", "="):
            raise ParseError(f"config parsing error near line {line}: expected '=' after {key}")
        i += 2
        kind, value, line = toks[i]
        if kind in ("str", "num"):
            parsed, i = value, i + 1
        elif (kind, value) == ("punct", "["):
            parsed, i = [], i + 1
            expect_item = True
            while True:
                kind, value, line = toks[i]
                if kind == "nl":
                    i += 1
                elif (kind, value) == ("punct", "]"):
                    i += 1
                    break
                elif kind == "str" and expect_item:
                    parsed.append(value)
                    expect_item, i = False, i + 1
                elif (kind, value) == ("punct", ",") and not expect_item:
                    expect_item, i = True, i + 1
                else:
                    raise ParseError(f"config parsing error near line {line}: syntax error in the list of {key}")
        else:
            raise ParseError(f"config parsing error near line {line}: syntax error, unexpected {value!r}")
        if toks[i][0] != "nl" and toks[i][:2] != ("punct", ";"):
            raise ParseError(f"config parsing error near line {line}: syntax error after {key}")
        if key in items:
            raise ParseError(f"config parsing error near line {line}: {key} given twice")
        items[key] = parsed
    return items


def check(items: dict) -> dict:
    """xl.cfg(5)'s rules over the parsed items; the domain's libxl config (as list -l shows it)."""
    for key, value in items.items():
        if key not in STRING_KEYS | NUMBER_KEYS:
            raise ParseError(f"unknown config key '{key}'")
        if key in LIST_KEYS and not isinstance(value, list):
            raise ParseError(f"{key} must be a list")
        if key in NUMBER_KEYS and not isinstance(value, int):
            raise ParseError(f"{key} must be a number, not {value!r}")
        if key in STRING_KEYS - LIST_KEYS and not isinstance(value, str):
            raise ParseError(f"{key} must be a string")
    for required in ("name", "type", "memory"):
        if required not in items:
            raise ParseError(f"{required} is required")
    name, kind = items["name"], items["type"]
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name.isdigit():
        raise ParseError(f"invalid domain name '{name}'")
    if kind not in TYPES:
        raise ParseError(f"Invalid domain type {kind}.")
    wrong = set(items) & (PV_ONLY if kind == "hvm" else HVM_ONLY)
    if wrong:
        raise ParseError(f"{', '.join(sorted(wrong))} not valid for type {kind}")
    memory, maxmem = items["memory"], items.get("maxmem", items["memory"])
    if memory < 1 or maxmem < memory:
        raise ParseError(f"maxmem ({maxmem}) must be at least memory ({memory})")
    vcpus, maxvcpus = items.get("vcpus", 1), items.get("maxvcpus", items.get("vcpus", 1))
    if vcpus < 1 or maxvcpus < vcpus:
        raise ParseError(f"maxvcpus ({maxvcpus}) must be at least vcpus ({vcpus})")
    for action in ("on_poweroff", "on_reboot", "on_crash"):
        if action in items and items[action] not in ACTIONS:
            raise ParseError(f'Unknown {action} action "{items[action]}" specified')
    for listen in ("vnclisten", "spicehost"):
        if listen in items and not IPV4.match(items[listen]):
            raise ParseError(f"{listen} must be an IPv4 address: {items[listen]}")
    if items.get("spice") and ("spiceport" not in items or not items.get("spicedisable_ticketing")):
        raise ParseError("spice needs spiceport and spicedisable_ticketing (or spicepasswd)")
    if "boot" in items and not re.fullmatch(r"[acdn]+", items["boot"]):
        raise ParseError(f"Invalid boot device order {items['boot']}")
    disks = [parse_disk(spec, kind) for spec in items.get("disk", [])]
    vdevs = [d["vdev"] for d in disks]
    if len(set(vdevs)) != len(vdevs):
        raise ParseError("two disks with the same vdev")
    nics = [dict(parse_vif(spec), devid=i) for i, spec in enumerate(items.get("vif", []))]
    b_info = {
        "max_vcpus": maxvcpus, "avail_vcpus": list(range(vcpus)), "max_memkb": maxmem * 1024,
        "target_memkb": memory * 1024, f"type.{kind}": {
            k: items[k] for k in sorted(set(items) & (PV_ONLY | HVM_ONLY))
        },
    }  # fmt: skip
    return {
        "c_info": {"type": kind, "name": name},
        "b_info": b_info,
        "disks": disks,
        "nics": nics,
        "on_poweroff": items.get("on_poweroff", "destroy"),
        "on_reboot": items.get("on_reboot", "restart"),
        "on_crash": items.get("on_crash", "destroy"),
    }


def parse_disk(spec: str, kind: str) -> dict:
    fields: dict = {}
    parts = [p.strip() for p in spec.split(",")]
    for n, part in enumerate(parts):
        key, sep, value = part.partition("=")
        if not sep or key not in DISK_KEYS:
            raise ParseError(f"unknown or positional disk parameter '{part}' in '{spec}'")
        if key == "target":
            value = ",".join(parts[n:]).partition("=")[2]  # target takes the rest of the spec
            fields[key] = value
            break
        if key in fields:
            raise ParseError(f"disk parameter {key} given twice in '{spec}'")
        fields[key] = value
    if not fields.get("target"):
        raise ParseError(f"no target in disk spec '{spec}'")
    if fields.get("format", "raw") not in {"raw", "qcow", "qcow2", "vhd", "qed"}:
        raise ParseError(f"invalid format '{fields['format']}' in disk spec")
    if not VDEV.match(fields.get("vdev", "")):
        raise ParseError(f"invalid or missing vdev in disk spec '{spec}'")
    if fields.get("access", "rw") not in {"ro", "r", "rw", "w"}:
        raise ParseError(f"invalid access '{fields['access']}' in disk spec")
    if "devtype" in fields and (fields["devtype"] != "cdrom" or kind != "hvm"):
        raise ParseError(f"devtype={fields['devtype']} is only valid as cdrom on hvm domains")
    return {
        "pdev_path": fields["target"], "vdev": fields["vdev"], "format": fields.get("format", "raw"),
        "readwrite": int(fields.get("access", "rw") in ("rw", "w")), "is_cdrom": int("devtype" in fields),
    }  # fmt: skip


def parse_vif(spec: str) -> dict:
    nic: dict = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep or key not in VIF_KEYS:
            raise ParseError(f"unknown vif parameter '{part}'")
        nic[key] = value
    mac = nic.get("mac")
    if mac is not None and (not MAC.match(mac) or int(mac[:2], 16) & 1):
        raise ParseError(f"invalid mac address: {mac}")
    return nic


def load_cfg(path: str) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        fakelib.fail(f"Failed to read config file: {path}: {exc.strerror}", 1)
    try:
        return check(parse_cfg(text))
    except ParseError as exc:
        fakelib.fail(f"Failed to parse config: {exc}", 1)


def domain(state: dict, name: str) -> dict:
    if name not in state["domains"]:
        fakelib.fail(f"{name} is an invalid domain identifier (rc=-6)", 1)
    return state["domains"][name]


def settle(state: dict) -> None:
    """A domain that runs the installer has finished it: its kickstart powers it off."""
    for name, dom in list(state["domains"].items()):
        if dom.get("installing") and not dom["paused"]:
            del state["domains"][name]


def create(state: dict, args: list[str]) -> int:
    dry = paused = False
    files = []
    for arg in args:
        if arg == "-n":
            dry = True
        elif arg == "-p":
            paused = True
        elif arg in ("-q", "--quiet"):
            pass
        elif arg.startswith("-"):
            fakelib.fail(
                f"xl create: invalid option -- '{arg.lstrip('-')}'\n{CREATE_USAGE}",
                1,
            )
        else:
            files.append(arg)
    if len(files) != 1:
        fakelib.fail(CREATE_USAGE, 1)
    fakelib.err(f"Parsing config from {files[0]}")
    config = load_cfg(files[0])
    if dry:
        print(json.dumps({"domid": None, "config": config}, indent=4))
        return 0
    name = config["c_info"]["name"]
    if name in state["domains"]:
        fakelib.fail(
            f"libxl: error: libxl_create.c:683:libxl__domain_make: Domain {name}:domain with name {name} "
            "already exists",
            1,
        )
    extra = config["b_info"][f"type.{config['c_info']['type']}"]
    needed = [d["pdev_path"] for d in config["disks"]] + [extra[k] for k in ("kernel", "ramdisk") if k in extra]
    domid = state["next_domid"]
    for path in needed:
        if not Path(path).exists():
            fakelib.fail(
                f"libxl: error: libxl_device.c:397:libxl__device_disk_set_backend: {path}: "
                "No such file or directory\n"
                f"libxl: error: libxl_create.c:1296:domcreate_launch_dm: Domain {domid}:unable to add disk devices\n"
                f"libxl: error: libxl_domain.c:1034:destroy_domid_done: Domain {domid}:Non-existant domain",
                1,
            )
    state["next_domid"] += 1
    state["domains"][name] = {
        "domid": domid, "config": config, "paused": paused, "installing": " inst.ks=" in f" {extra.get('extra', '')}",
        "cfg": str(Path(files[0]).resolve()), "started": time.time(),
    }  # fmt: skip
    return 0


def list_(state: dict, args: list[str]) -> int:
    long = "-l" in args or "--long" in args
    names = [a for a in args if not a.startswith("-")]
    unknown = [a for a in args if a.startswith("-") and a not in ("-l", "--long")]
    if unknown:
        fakelib.fail(f"xl list: invalid option -- '{unknown[0].lstrip('-')}'", 1)
    for name in names:
        domain(state, name)
    chosen = names or sorted(state["domains"], key=lambda n: state["domains"][n]["domid"])
    if long:
        print(
            json.dumps(
                [{"domid": state["domains"][n]["domid"], "config": state["domains"][n]["config"]} for n in chosen],
                indent=4,
            )
        )
        return 0
    print(f"{'Name':<40}{'ID':>5}{'Mem':>6}{'VCPUs':>6}\tState\tTime(s)")
    if not names:
        print(f"{'Domain-0':<40}{0:>5}{DOM0_MIB:>6}{2:>6}     r-----      12.3")
    for n in chosen:
        dom = state["domains"][n]
        b = dom["config"]["b_info"]
        flags = "--p---" if dom["paused"] else "-b----"
        print(f"{n:<40}{dom['domid']:>5}{b['target_memkb'] // 1024:>6}{len(b['avail_vcpus']):>6}     {flags}       0.4")
    return 0


def parse_mem_kib(value: str) -> int:
    m = re.fullmatch(r"(\d+)([bkmgtBKMGT]?)", value)
    if not m:
        fakelib.fail(f"Invalid memory size: {value}", 1)
    return int(int(m.group(1)) * UNITS_KIB[(m.group(2) or "k").lower()])


def main(prog: str, argv: list[str]) -> int:
    if not fakelib.unit_active("xencommons"):
        fakelib.fail(
            "xencall: error: Could not obtain handle on privileged command interface: No such file or directory\n"
            "libxl: error: libxl.c:102:libxl_ctx_alloc: cannot open libxc handle: No such file or directory\n"
            "cannot init xl context",
            1,
        )
    if not argv:
        fakelib.fail(USAGE, 1)
    state = fakelib.load("xl", {"domains": {}, "next_domid": 1})
    loaded = json.dumps(state, sort_keys=True)  # a query (list, create -n) writes no state file
    settle(state)
    command, args = argv[0], argv[1:]
    try:
        if command == "create":
            return create(state, args)
        if command == "list":
            return list_(state, args)
        if command in ("pause", "unpause", "destroy", "shutdown", "mem-set", "vcpu-set"):
            wait = "-w" in args and command == "shutdown"
            rest = [a for a in args if a != "-w" or command != "shutdown"]
            want = 3 if command in ("mem-set", "vcpu-set") else 2
            if len(rest) != want - 1 or any(a.startswith("-") for a in rest[:1]):
                fakelib.fail(f"Usage: xl {command} <Domain>{' <arg>' if want == 3 else ''}", 1)
            dom = domain(state, rest[0])
            return act(state, command, rest[0], dom, rest[1:], wait)
        fakelib.fail(f"xl: unknown subcommand '{command}'\n{USAGE}", 1)
    finally:
        if json.dumps(state, sort_keys=True) != loaded:
            fakelib.save("xl", state)


def act(state: dict, command: str, name: str, dom: dict, args: list[str], wait: bool) -> int:
    b = dom["config"]["b_info"]
    if command == "pause":
        dom["paused"] = True
    elif command == "unpause":
        dom["paused"] = False
    elif command == "destroy":
        del state["domains"][name]
    elif command == "shutdown":
        if dom["paused"]:
            if wait:  # the guest never sees the request; xl waits until interrupted
                fakelib.save("xl", state)
                print(f"Shutting down domain {dom['domid']}\nWaiting for 1 domains")
                sys.stdout.flush()
                time.sleep(3600)
            return 0
        print(f"Shutting down domain {dom['domid']}")
        if wait:
            print("Waiting for 1 domains\nDomain {} has been shut down, reason code 0".format(dom["domid"]))
        del state["domains"][name]  # on_poweroff = "destroy"
    elif command == "mem-set":
        kib = parse_mem_kib(args[0])
        if kib > b["max_memkb"]:
            fakelib.fail(
                "libxl: error: libxl_mem.c:286:libxl_set_memory_target: "
                "memory_dynamic_max must be less than or equal to memory_static_max",
                1,
            )
        b["target_memkb"] = kib
    elif command == "vcpu-set":
        if not args[0].isdigit() or int(args[0]) < 1:
            fakelib.fail(f"Invalid NUMBER: {args[0]}", 1)
        n = int(args[0])
        if n > b["max_vcpus"]:
            fakelib.fail(f"You cannot set vcpus greater than max_vcpus ({b['max_vcpus']}) in the config", 1)
        b["avail_vcpus"] = list(range(n))
    return 0


if __name__ == "__main__":
    fakelib.run(main)

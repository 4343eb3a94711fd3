#!/usr/bin/env -S python3 -S
"""Fake ``rpm``: queries of the fake package database that ``yum``/``dnf`` write, key imports.

``-q PKG...`` (exit status = number of packages not installed, like rpm), ``-qa``, ``--quiet``,
``--qf/--queryformat`` with %{NAME} %{VERSION} %{RELEASE} %{ARCH}, ``-e PKG``, ``--import KEY``
(``gpg-pubkey-*`` then shows up in ``-qa``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import fakelib


def main(prog: str, argv: list[str]) -> int:
    mode, quiet, fmt, names = None, False, None, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-q", "--query", "-qa", "-e", "--erase", "--import"):
            mode = {"-qa": "-qa", "--query": "-q", "--erase": "-e"}.get(arg, arg)
        elif arg in ("-a", "--all") and mode == "-q":
            mode = "-qa"
        elif arg == "--quiet":
            quiet = True
        elif arg in ("--qf", "--queryformat") or arg.startswith(("--qf=", "--queryformat=")):
            if "=" in arg:
                fmt = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                i, fmt = i + 1, argv[i + 1]
            else:
                fakelib.fail(f"rpm: option '{arg}' requires an argument")
        elif arg.startswith("-"):
            fakelib.fail(f"rpm: {arg}: unknown option")
        else:
            names.append(arg)
        i += 1
    if mode is None:
        fakelib.fail("rpm: no operation specified" if names else "")
    db = fakelib.load("rpmdb", {})
    if mode == "--import":
        return import_keys(db, names)
    if mode == "-e":
        return erase(db, names)
    records = packages(db)
    if mode == "-qa":
        for name in sorted(records):
            if not names or any(re.fullmatch(n.replace("*", ".*"), name) for n in names):
                show(name, records[name], fmt, quiet)
        return 0
    if not names:
        fakelib.fail("rpm: no arguments given for query")
    missing = 0
    for name in names:
        hits = [n for n in records if name in spellings(n, records[n])]
        if not hits:
            missing += 1
            if not quiet:
                print(f"package {name} is not installed")
        for hit in hits:
            show(hit, records[hit], fmt, quiet)
    return min(missing, 255)


def packages(db: dict) -> dict[str, dict]:
    records = dict(db["packages"])
    for key in db["gpg_keys"]:  # rpm presents imported keys as packages named gpg-pubkey
        digest = hashlib.sha1(key.encode()).hexdigest()
        records[f"gpg-pubkey-{digest[:8]}"] = {"version": digest[:8], "release": digest[8:16], "arch": "(none)"}
    return records


def spellings(name: str, rec: dict) -> set[str]:
    """The ways ``rpm -q`` accepts to name an installed package."""
    version = f"{name}-{rec['version']}"
    return {name, version, f"{version}-{rec['release']}", fakelib.nevra(name, rec)}


def show(name: str, rec: dict, fmt: str | None, quiet: bool) -> None:
    if quiet:
        return
    if fmt is None:
        print(fakelib.nevra(name, rec).removesuffix(".(none)"))
        return
    values = {"NAME": name, "VERSION": rec["version"], "RELEASE": rec["release"], "ARCH": rec["arch"]}
    text = re.sub(r"%\{(\w+)\}", lambda m: values.get(m[1].upper(), "(none)"), fmt)
    print(text.replace("\\n", "\n").replace("\\t", "\t"), end="")


def erase(db: dict, names: list[str]) -> int:
    missing = [n for n in names if n not in db["packages"]]
    for name in missing:
        fakelib.err(f"error: package {name} is not installed")
    if missing:
        return len(missing)
    for name in names:
        fakelib.remove_payload(name, db["packages"].pop(name))
    fakelib.save("rpmdb", db)
    return 0


def import_keys(db: dict, keys: list[str]) -> int:
    failed = 0
    for key in keys:
        if "://" not in key and not Path(key).exists():
            fakelib.err(f"error: {key}: import read failed(2).")
            failed += 1
        elif key not in db["gpg_keys"]:
            db["gpg_keys"].append(key)
    fakelib.save("rpmdb", db)
    return 1 if failed else 0


if __name__ == "__main__":
    fakelib.run(main)

#!/usr/bin/env -S python3 -S
"""Fake ``vzpkg`` (Virtuozzo 7 template tool): which OS templates have a cache, and making one.

``vzpkg list -O [TEMPLATE]`` prints each installed OS template, one a line: its name, then the
date its cache was made (``2024-01-01 00:00:00``) when it has one; exit 0 (an unknown TEMPLATE:
"OS template T not found", exit 1). ``vzpkg create cache TEMPLATE``: makes the cache (the
template's packages fetched from its repositories), after which ``vzctl create --ostemplate``
accepts it; an existing cache is left alone ("Cache ... already exists", exit 0, as vzpkg does
without ``--update``); an OS template that is not installed: exit 1. State shared with
``vzctl.py`` (``vz.json``: ``caches``). Other subcommands are refused (exit 1, usage).
"""

from __future__ import annotations

import fakelib
from vzctl import DEFAULT_CACHES, TEMPLATES

USAGE = "Usage: vzpkg list -O [<ostemplate>] | vzpkg create cache <ostemplate>"
CACHE_DATE = "2024-01-01 00:00:00"


def main(prog: str, argv: list[str]) -> int:
    if not fakelib.unit_active("vz"):
        fakelib.fail("vzpkg: Unable to open /dev/vzctl: No such file or directory", 1)
    state = fakelib.load("vz", {"containers": {}})
    caches = state.setdefault("caches", list(DEFAULT_CACHES))
    if argv[:2] == ["list", "-O"] and len(argv) <= 3:
        wanted = argv[2:]
        if wanted and wanted[0] not in TEMPLATES:
            fakelib.fail(f"OS template {wanted[0]} not found", 1)
        for name in wanted or sorted(TEMPLATES):
            print(f"{name:<40}{CACHE_DATE if name in caches else ''}".rstrip())
        return 0
    if argv[:2] == ["create", "cache"] and len(argv) == 3:
        name = argv[2]
        if name not in TEMPLATES:
            fakelib.fail(f"OS template {name} not found: install its EZ template package first", 1)
        if name in caches:
            print(f"Cache of {name} already exists")
            return 0
        caches.append(name)
        fakelib.save("vz", state)
        print(f"Creating cache for {name} OS template\nCache of {name} OS template was created")
        return 0
    fakelib.fail(USAGE, 1)


if __name__ == "__main__":
    fakelib.run(main)

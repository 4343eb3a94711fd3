#!/usr/bin/env -S python3 -S
"""Fake ``chcon`` (coreutils): SELinux labels written where SELinux keeps them, the
``security.selinux`` extended attribute, so Debian's real ``stat -c %C`` and ``ls -Z`` read them.

``chcon [-R] [-h] [-v] {-t TYPE | -u USER | -r ROLE | -l RANGE}... FILE...`` and
``chcon [-R] CONTEXT FILE...``. This machine runs no SELinux, so nothing labels a new file: a
file without a label starts from the one EL's policy would give it by path (``DEFAULT_TYPES``,
``default_t`` otherwise; ``selabel.py``), as every file on an EL host has one. With SELinux disabled (fake
``selinuxenabled``) a partial change of an unlabelled file fails as on EL: "can't apply partial
context to unlabeled file" (exit 1). Missing files: "cannot access ...: No such file or
directory" (exit 1, the other files are still done).
"""

from __future__ import annotations

import os
from pathlib import Path

import fakelib
import selinux
from selabel import current, policy_label, walk, write

SHORT = {"-t": "type", "-u": "user", "-r": "role", "-l": "range"}
LONG = {"--type": "type", "--user": "user", "--role": "role", "--range": "range"}
USAGE = "Try 'chcon --help' for more information."


def main(prog: str, argv: list[str]) -> int:
    recursive, verbose, parts, words = False, False, {}, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        option, _, value = arg.partition("=")
        if arg in SHORT or option in LONG:
            key = SHORT.get(arg) or LONG[option]
            if not value:
                if i + 1 >= len(argv):
                    fakelib.fail(f"chcon: option requires an argument -- '{arg.lstrip('-')[:1]}'\n{USAGE}")
                i, value = i + 1, argv[i + 1]
            parts[key] = value
        elif arg in ("-R", "--recursive"):
            recursive = True
        elif arg in ("-v", "--verbose"):
            verbose = True
        elif arg in ("-h", "--no-dereference", "-H", "-L", "-P"):
            pass
        elif arg.startswith("--"):
            fakelib.fail(f"chcon: unrecognized option '{arg}'\n{USAGE}")
        elif arg.startswith("-") and arg != "-":
            fakelib.fail(f"chcon: invalid option -- '{arg[1]}'\n{USAGE}")
        else:
            words.append(arg)
        i += 1
    full = None
    if not parts:
        if not words:
            fakelib.fail(f"chcon: missing operand\n{USAGE}")
        full, words = words[0], words[1:]
        if full.count(":") < 3:
            fakelib.fail(f"chcon: invalid context: '{full}'")
    if not words:
        fakelib.fail(f"chcon: missing operand after '{full or ''}'\n{USAGE}")
    enabled = selinux.running_mode() != "Disabled"
    code = 0
    for name in words:
        if not os.path.lexists(name):
            fakelib.err(f"chcon: cannot access '{name}': No such file or directory")
            code = 1
            continue
        for path in walk(Path(name)) if recursive else [Path(name)]:
            code = relabel(path, full, parts, enabled=enabled, verbose=verbose) or code
    return code


def relabel(path: Path, full: str | None, parts: dict, *, enabled: bool, verbose: bool) -> int:
    label = current(path)
    if full is None:
        if label is None and not enabled:
            fakelib.err(f"chcon: can't apply partial context to unlabeled file '{path}'")
            return 1
        user, role, type_, level = (label or policy_label(path)).split(":", 3)
        new = ":".join(
            [parts.get("user", user), parts.get("role", role), parts.get("type", type_), parts.get("range", level)]
        )
    else:
        new = full
    write(path, new)
    if verbose:
        print(f"changing security context of '{path}'")
    return 0


if __name__ == "__main__":
    fakelib.run(main)

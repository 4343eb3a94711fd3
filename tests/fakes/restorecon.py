#!/usr/bin/env -S python3 -S
"""Fake ``restorecon`` (policycoreutils): set files' labels to what the file-context rules say.

``restorecon [-R|-r] [-F] [-n] [-v] [-i] [-p] [-e DIR] PATH...``. The wanted label is
``selabel.wanted_label``: the local rules of the fake ``semanage fcontext`` (last added match
wins), otherwise the policy default the fake ``chcon`` starts from. As libselinux's
selinux_restorecon does:

- without ``-F`` only the type changes (user, role and range stay), and a file whose type is
  customizable (``container_file_t``, …) is left alone ("not reset as customized by admin to …"
  with ``-v``); ``-F`` sets the whole context, customizable or not (what a full relabel does);
- ``-v`` prints "Relabeled PATH from OLD to NEW" (``-n``: "Would relabel …", nothing written);
- a missing path: "restorecon: lstat(PATH) failed: No such file or directory", exit 255 after the
  other paths (``-i``: ignored);
- with SELinux disabled it exits 0 at once, changing nothing ("allows unconditional execution by
  scripts").

A file without a label attribute counts as carrying its policy label (``selabel.policy_label``);
when that is already the wanted one the fake writes it without a message, so that ``stat -c %C``
reads it (on EL every file has a label, so there is nothing to report).
"""

from __future__ import annotations

import os
from pathlib import Path

import fakelib
import selabel
import selinux

USAGE = (
    "usage:  restorecon [-iIDFmnprRv0x] [-e excludedir] pathname...\n"
    "usage:  restorecon [-iIDFmnprRv0x] [-e excludedir] -f filename"
)


def main(prog: str, argv: list[str]) -> int:
    if selinux.running_mode() == "Disabled":
        return 0
    flags, excludes, paths = set(), [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and len(arg) > 1:
            for pos, letter in enumerate(arg[1:], 1):
                if letter == "e":
                    value = arg[pos + 1 :] or (argv[i + 1] if i + 1 < len(argv) else None)
                    if value is None:
                        fakelib.fail(f"restorecon: option requires an argument -- 'e'\n{USAGE}", 255)
                    i += 0 if arg[pos + 1 :] else 1
                    excludes.append(os.path.abspath(value))
                    break
                if letter not in "RrFnvip":
                    fakelib.fail(f"restorecon: invalid option -- '{letter}'\n{USAGE}", 255)
                flags.add(letter)
        else:
            paths.append(arg)
        i += 1
    if not paths:
        fakelib.fail(USAGE, 255)
    if {"v", "p"} <= flags:
        fakelib.fail(f"Progress and Verbose mutually exclusive\n{USAGE}", 255)
    errors = False
    for name in paths:
        if not os.path.lexists(name):
            if "i" not in flags:
                fakelib.err(f"restorecon: lstat({name}) failed: No such file or directory")
                errors = True
            continue
        top = Path(os.path.realpath(os.path.dirname(os.path.abspath(name))), os.path.basename(name.rstrip("/")))
        for path in selabel.walk(top) if flags & {"R", "r"} else [top]:
            if not any(str(path) == e or str(path).startswith(e + "/") for e in excludes):
                restore(path, flags)
    return 255 if errors else 0


def restore(path: Path, flags: set[str]) -> None:
    new, old = selabel.wanted_label(path), selabel.current(path)
    if old is None:  # no attribute: the file carries its policy label (see the module docstring)
        old = selabel.policy_label(path)
        if old == new:
            if "n" not in flags:
                selabel.write(path, new)
            return
    if old == new:
        return
    if "F" not in flags:
        user, role, type_, level = old.split(":", 3)
        if type_ in selabel.CUSTOMIZABLE_TYPES:
            if "v" in flags:
                print(f"{path} not reset as customized by admin to {old}")
            return
        wanted_type = new.split(":")[2]
        if wanted_type == type_:
            return
        new = ":".join([user, role, wanted_type, level])
    if "n" not in flags:
        selabel.write(path, new)
    if "v" in flags:
        print(f"{'Would relabel' if 'n' in flags else 'Relabeled'} {path} from {old} to {new}")


if __name__ == "__main__":
    fakelib.run(main)

#!/usr/bin/env -S python3 -S
"""Fake ``grubby`` (EL7's C grubby, EL9's BLS grubby): boot entries kept in the fakes' state.

``--default-kernel``, ``--default-index``, ``--info=ALL|DEFAULT|PATH``, ``--set-default=PATH``,
``--set-default-index=N``, ``--update-kernel=ALL|DEFAULT|PATH --args=.. --remove-args=..``,
``--add-kernel=PATH --title=T [--initrd=P] [--args=..] [--copy-default] [--make-default]``,
``--remove-kernel=PATH|ALL|TITLE=title``, ``--add-multiboot=/boot/xen.gz --mbargs=..`` (EL7 Xen dom0 entries:
the hypervisor is recorded with the entry, ``--default-kernel`` stays the Linux kernel).
Kernel packages that ``yum``/``dnf`` install add their entry and become the default
(UPDATEDEFAULT=yes), as on a real host. Error texts are close, not verbatim.
"""

from __future__ import annotations

from pathlib import Path

import fakelib

VALUED = {
    "--info",
    "--set-default",
    "--set-default-index",
    "--update-kernel",
    "--args",
    "--remove-args",
    "--add-kernel",
    "--title",
    "--initrd",
    "--remove-kernel",
    "--add-multiboot",
    "--mbargs",
}
FLAGS = {"--default-kernel", "--default-index", "--default-title", "--copy-default", "--make-default"}
MACHINE_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def main(prog: str, argv: list[str]) -> int:
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        option, has_value, value = argv[i].partition("=")
        if option in VALUED:
            if not has_value:
                if i + 1 >= len(argv):
                    fakelib.fail(f"grubby: option '{option}' requires an argument")
                i, value = i + 1, argv[i + 1]
            opts[option] = value
        elif argv[i] in FLAGS:
            opts[argv[i]] = ""
        else:
            fakelib.fail(
                f"grubby: bad argument {argv[i]}: unknown option"
                if el7()
                else f"grubby: unrecognized option '{argv[i]}'"
            )
        i += 1
    boot = fakelib.load("grubby", {"entries": [], "default": 0})
    entries = boot["entries"]
    if "--add-kernel" in opts:
        add_kernel(opts)
        boot = fakelib.load("grubby", boot)
    elif "--remove-kernel" in opts:
        doomed = set(indexes(boot, opts["--remove-kernel"]))
        default = entries[boot["default"]]["kernel"] if entries else None
        boot["entries"] = [e for n, e in enumerate(entries) if n not in doomed]
        kernels = [e["kernel"] for e in boot["entries"]]
        boot["default"] = kernels.index(default) if default in kernels else 0
    elif "--update-kernel" in opts:
        for n in indexes(boot, opts["--update-kernel"]):
            entries[n]["args"] = edit_args(entries[n]["args"], opts.get("--args", ""), opts.get("--remove-args", ""))
    elif "--set-default" in opts or "--set-default-index" in opts:
        wanted = opts.get("--set-default") or opts["--set-default-index"]
        boot["default"] = indexes(boot, wanted, by_index="--set-default-index" in opts)[0]
        if not el7():
            entry = entries[boot["default"]]
            print(
                f"The default is /boot/loader/entries/{entry_id(entry)}.conf with index {boot['default']} "
                f"and kernel {entry['kernel']}"
            )
    elif "--info" in opts:
        for n in indexes(boot, opts["--info"]):
            print_info(n, entries[n])
    elif "--default-kernel" in opts:
        print(entries[boot["default"]]["kernel"])
    elif "--default-index" in opts:
        print(boot["default"])
    elif "--default-title" in opts:
        print(entries[boot["default"]]["title"])
    else:
        fakelib.fail("grubby: no action specified")
    fakelib.save("grubby", boot)
    return 0


def el7() -> bool:
    return fakelib.dist() == "el7"


def bad_param(param: str) -> None:
    fakelib.fail("grubby: kernel not found" if el7() else f"The param {param} is incorrect")


def indexes(boot: dict, param: str, *, by_index: bool = False) -> list[int]:
    entries = boot["entries"]
    if param == "ALL":
        return list(range(len(entries)))
    if param == "DEFAULT":
        return [boot["default"]]
    if param.startswith("TITLE="):  # grubby's title selector: the entries with exactly that title
        hits = [n for n, e in enumerate(entries) if e.get("title") == param.removeprefix("TITLE=")]
        if hits:
            return hits
        bad_param(param)
    if by_index or param.isdigit():
        if param.isdigit() and int(param) < len(entries):
            return [int(param)]
    else:
        hits = [n for n, e in enumerate(entries) if e["kernel"] == param]
        if hits:
            return hits
    bad_param(param)
    return []


def edit_args(args: str, add: str, remove: str) -> str:
    words = args.split()
    for word in remove.split():
        words = [w for w in words if w.split("=", 1)[0] != word.split("=", 1)[0]]
    for word in add.split():
        key = word.split("=", 1)[0]
        hits = [n for n, w in enumerate(words) if w.split("=", 1)[0] == key]
        if hits:
            words[hits[0]] = word
        else:
            words.append(word)
    return " ".join(words)


def add_kernel(opts: dict[str, str]) -> None:
    kernel = opts["--add-kernel"]
    if not Path(kernel).exists():
        bad_param(kernel)
    if "--title" not in opts:
        fakelib.fail(
            "grubby: kernel title must be specified"
            if el7()
            else "The --title parameter is required when adding a kernel"
        )
    boot = fakelib.load("grubby", {"entries": [], "default": 0})
    default = boot["entries"][boot["default"]] if boot["entries"] else {"args": ""}
    args = opts.get("--args", "")
    if "--copy-default" in opts:
        args = edit_args(default["args"], args, "")
    multiboot = opts.get("--add-multiboot")
    if multiboot is not None and not Path(multiboot).exists():
        bad_param(multiboot)
    fakelib.add_boot_entry(
        kernel,
        opts.get("--initrd", ""),
        make_default="--make-default" in opts,
        title=opts["--title"],
        args=args,
        multiboot=multiboot,
        mbargs=opts.get("--mbargs"),
        dedupe=False,
    )


def entry_id(entry: dict) -> str:
    return f"{MACHINE_ID}-{Path(entry['kernel']).name.removeprefix('vmlinuz-')}"


def print_info(index: int, entry: dict) -> None:
    if el7():
        print(f'index={index}\nkernel={entry["kernel"]}\nargs="{entry["args"]}"\nroot={entry["root"]}')
        if entry["initrd"]:
            print(f"initrd={entry['initrd']}")
        print(f"title={entry['title']}")
        return
    print(f'index={index}\nkernel="{entry["kernel"]}"\nargs="{entry["args"]}"\nroot="{entry["root"]}"')
    if entry["initrd"]:
        print(f'initrd="{entry["initrd"]}"')
    print(f'title="{entry["title"]}"\nid="{entry_id(entry)}"')


if __name__ == "__main__":
    fakelib.run(main)

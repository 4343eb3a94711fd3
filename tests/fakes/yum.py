#!/usr/bin/env -S python3 -S
"""Fake ``yum`` (EL7, yum 3) and ``dnf`` (EL9, dnf 4): one package engine, two dialects.

Subcommands: install, remove/erase, list [installed|available|all], makecache, clean,
groupinstall / group(s) install, localinstall, update/upgrade, config-manager (dnf only).
A package installs only from an enabled repository that provides it (``catalogue.py``: the
distribution's repositories plus the .repo files in /etc/yum.repos.d); an unknown package fails
as dnf/yum do, and so does every command that loads metadata while a configured repository is
unknown to the catalogue. Installs are recorded in the fake rpm database that ``rpm`` reads.
"""

from __future__ import annotations

import fnmatch
import io
import re
import sys
from pathlib import Path

import catalogue
import fakelib
from dnf_config_manager import config_manager

ASSUMEYES = {"-y", "--assumeyes"}
QUIET = {"-q", "--quiet"}
FLAGS = (
    ASSUMEYES
    | QUIET
    | {
        "--nogpgcheck",
        "-C",
        "--cacheonly",
        "--best",
        "--nobest",
        "--allowerasing",
        "--skip-broken",
        "--refresh",
        "-v",
        "--verbose",
        "--noplugins",
    }
)
VALUED = {
    "--enablerepo",
    "--disablerepo",
    "--setopt",
    "-e",
    "-d",
    "--disableplugin",
    "--enableplugin",
    "--releasever",
    "--exclude",
    "-x",
    "--repo",
    "--repoid",
}
COMMANDS = {
    "install",
    "remove",
    "erase",
    "list",
    "makecache",
    "clean",
    "groupinstall",
    "group",
    "groups",
    "localinstall",
    "update",
    "upgrade",
    "config-manager",
}


def main(prog: str, argv: list[str]) -> int:
    dnf = prog == "dnf"
    opts, words, i = set(), [], 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg in FLAGS:
            opts.add(arg)
        elif name in VALUED:
            i += 0 if "=" in arg else 1
        elif arg.startswith("-") and not (words and words[0] == "config-manager"):
            fakelib.err(f"usage: {prog} [options] COMMAND" if dnf else "Usage: yum [options] COMMAND")
            what = f"unrecognized arguments: {arg}" if dnf else f"no such option: {name}"
            fakelib.fail(f"Command line error: {what}")
        else:
            words.append(arg)
        i += 1
    if not words or words[0] not in COMMANDS or (words[0] == "config-manager" and not dnf):
        command = words[0] if words else ""
        hint = f"\nIt could be a DNF plugin command, try: \"dnf install 'dnf-command({command})'\"" if dnf else ""
        fakelib.fail(f"No such command: {command}. Please use /usr/bin/{prog} --help{hint}")
    quiet, yes = bool(opts & QUIET), bool(opts & ASSUMEYES)
    if not quiet:
        print("Last metadata expiration check: 0:12:34 ago." if dnf else "Loaded plugins: fastestmirror")
    command, args = words[0], words[1:]
    if command in ("group", "groups"):
        if args[:1] != ["install"]:
            fakelib.fail(f"Error: fake {prog} models only '{command} install'")
        command, args = "groupinstall", args[1:]
    handler = {
        "install": install,
        "localinstall": install,
        "update": update,
        "upgrade": update,
        "remove": remove,
        "erase": remove,
        "list": list_packages,
        "makecache": makecache,
        "clean": clean,
        "groupinstall": groupinstall,
        "config-manager": config_manager,
    }[command]
    if quiet and handler is not list_packages:  # -q: only errors (stderr) and query results remain
        sys.stdout = io.StringIO()
    try:
        return handler(dnf, args, yes)
    finally:
        sys.stdout = sys.__stdout__


def split_spec(spec: str) -> tuple[str, str | None, str | None]:
    """-> (name, version, release). An rpm file or URL is NAME-VERSION-RELEASE.ARCH.rpm; any other
    spec is taken as a package name (``centos-release-xen-412`` and ``VirtualBox-7.0`` are names)."""
    base = re.sub(r"\.(x86_64|noarch|i686)$", "", spec.rsplit("/", 1)[-1].removesuffix(".rpm"))
    if spec.endswith(".rpm") and base.count("-") >= 2:
        name, version, release = base.rsplit("-", 2)
        return name, version, release
    return base, None, None


def confirm(dnf: bool, yes: bool) -> None:
    if yes:
        return
    print("Is this ok [y/N]: " if dnf else "Is this ok [y/d/N]: ", end="", flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        print()
        fakelib.fail(
            "Operation aborted."
            if dnf
            else "Exiting on user command\n"
            "Your transaction was saved, rerun it with:\n yum load-transaction /tmp/yum_save_tx.yumtx"
        )


def install(dnf: bool, specs: list[str], yes: bool) -> int:
    if not specs:
        fakelib.fail("Error: Need to pass a list of pkgs to install")
    db = fakelib.load("rpmdb", {})
    repos = load_repos(dnf)
    wanted, missing, origin = {}, [], {}
    for spec in specs:
        local = spec.endswith(".rpm") and "://" not in spec
        name, version, release = split_spec(spec)
        if "://" in spec and spec not in catalogue.RPM_URLS:
            fakelib.fail(
                f"Curl error (22): HTTP response code said error for {spec} [The requested URL returned error: 404]\n"
                "Error: Failed to download packages"
                if dnf
                else f"Cannot open: {spec}. Skipping.\nError: Nothing to do"
            )
        if local or "://" in spec:
            origin[name] = "@commandline" if dnf else "/" + spec.rsplit("/", 1)[-1]
        else:
            origin[name] = next((r for r, packages in repos.items() if name in packages), None)
        if (local and not Path(spec).exists()) or origin[name] is None:
            missing.append(spec)
        elif name in db["packages"]:
            nevra = fakelib.nevra(name, db["packages"][name])
            print(
                f"Package {nevra} is already installed."
                if dnf
                else f"Package {nevra} already installed and latest version"
            )
        else:
            wanted[name] = fakelib.package_record(name, version, release)
    for spec in missing:
        fakelib.err(f"No match for argument: {spec}" if dnf else f"No package {spec} available.")
    if dnf and missing:
        fakelib.fail("Error: Unable to find a match: " + " ".join(missing))
    if not wanted:
        return nothing_to_do(dnf, error=bool(missing))
    print("Dependencies resolved." if dnf else "Resolving Dependencies\n--> Finished Dependency Resolution")
    print("\nInstalling:")
    for name, rec in wanted.items():
        print(f" {name:<28} {rec['arch']:<8} {rec['version']}-{rec['release']:<24} {origin[name]}")
    print(f"\nTransaction Summary\nInstall  {len(wanted)} Package{'s' if len(wanted) > 1 else ''}\n")
    confirm(dnf, yes)
    for name, rec in wanted.items():
        db["packages"][name] = rec
        fakelib.install_payload(name, rec)
    fakelib.save("rpmdb", db)
    print("\nInstalled:")
    for name, rec in wanted.items():
        evr = f"{rec['version']}-{rec['release']}"
        print(f"  {fakelib.nevra(name, rec)}" if dnf else f"  {name}.{rec['arch']} 0:{evr}")
    print("\nComplete!")
    return 0


def load_repos(dnf: bool) -> dict[str, set[str]]:
    """The enabled repositories and their packages; a repository the catalogue does not know fails
    as an unreachable one does (yum 3: "Cannot retrieve repository metadata", dnf 4: "Failed to
    download metadata")."""
    try:
        return catalogue.enabled_repos(fakelib.dist())
    except catalogue.RepoError as exc:
        if dnf:
            fakelib.fail(
                f"Errors during downloading metadata for repository '{exc.repo_id}':\n"
                f"  - Curl error (6): Couldn't resolve host name for {exc.source}/repodata/repomd.xml\n"
                f"Error: Failed to download metadata for repo '{exc.repo_id}': Cannot download repomd.xml: "
                "Cannot download repodata/repomd.xml: All mirrors were tried"
            )
        fakelib.fail(
            f"\n\n One of the configured repositories failed ({exc.repo_id}),\n and yum doesn't have enough "
            f"cached data to continue.\n\nfailure: repodata/repomd.xml from {exc.repo_id}: [Errno 256] No more "
            f"mirrors to try.\n{exc.source}/repodata/repomd.xml: [Errno 14] HTTP Error 404 - Not Found"
        )


def nothing_to_do(dnf: bool, *, error: bool = False) -> int:
    if dnf:
        print("Dependencies resolved.\nNothing to do.\nComplete!")
        return 0
    if error:
        fakelib.fail("Error: Nothing to do")
    print("Nothing to do")
    return 0


def update(dnf: bool, specs: list[str], yes: bool) -> int:
    load_repos(dnf)
    db = fakelib.load("rpmdb", {})
    for spec in specs:
        if split_spec(spec)[0] not in db["packages"]:
            fakelib.err(f"No match for argument: {spec}" if dnf else f"Package(s) {spec} available, but not installed.")
    if dnf:
        return nothing_to_do(dnf)
    print("No packages marked for update")
    return 0


def remove(dnf: bool, names: list[str], yes: bool) -> int:
    if not names:
        fakelib.fail("Error: Need to pass a list of pkgs to remove")
    db = fakelib.load("rpmdb", {})
    doomed = []
    for spec in names:
        matches = [n for n in db["packages"] if fnmatch.fnmatchcase(n, split_spec(spec)[0])]
        if not matches:
            print(f"No match for argument: {spec}" if dnf else f"No Match for argument: {spec}")
        doomed += [m for m in matches if m not in doomed]
    if not doomed:
        print("No packages marked for removal." if dnf else "No Packages marked for removal")
        return nothing_to_do(dnf) if dnf else 0
    print("Dependencies resolved.\n\nRemoving:" if dnf else "Resolving Dependencies\n\nRemoving:")
    for name in doomed:
        print(f" {name:<28} {fakelib.nevra(name, db['packages'][name])}")
    confirm(dnf, yes)
    print("\nRemoved:")
    for name in doomed:
        rec = db["packages"].pop(name)
        fakelib.remove_payload(name, rec)
        print(f"  {fakelib.nevra(name, rec)}" if dnf else f"  {name}.{rec['arch']} 0:{rec['version']}-{rec['release']}")
    fakelib.save("rpmdb", db)
    print("\nComplete!")
    return 0


def list_packages(dnf: bool, args: list[str], yes: bool) -> int:
    scope = args[0] if args and args[0] in ("installed", "available", "all") else "all"
    patterns = args[1:] if args and args[0] == scope else args
    db = fakelib.load("rpmdb", {})
    shown = [n for n in sorted(db["packages"]) if not patterns or any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    repos = load_repos(dnf)
    known = set().union(*repos.values())
    available = [p for p in patterns if "*" not in p and p in known and split_spec(p)[0] not in db["packages"]]
    rows_installed = shown if scope in ("installed", "all") else []
    rows_available = available if scope in ("available", "all") else []
    if not rows_installed and not rows_available:
        fakelib.fail("Error: No matching Packages to list")
    if rows_installed:
        print("Installed Packages")
        for name in rows_installed:
            rec = db["packages"][name]
            print(f"{name + '.' + rec['arch']:<40} {rec['version'] + '-' + rec['release']:<28} @anaconda")
    if rows_available:
        print("Available Packages")
        for name in rows_available:
            rec = fakelib.package_record(name)
            print(f"{name + '.' + rec['arch']:<40} {rec['version'] + '-' + rec['release']:<28} base")
    return 0


def makecache(dnf: bool, args: list[str], yes: bool) -> int:
    load_repos(dnf)
    print("Metadata cache created." if dnf else "Metadata Cache Created")
    return 0


def clean(dnf: bool, args: list[str], yes: bool) -> int:
    kinds = {"all", "metadata", "packages", "dbcache", "expire-cache", "headers"}
    if not args or any(a not in kinds for a in args):
        fakelib.fail(
            f"Error: invalid clean argument: {' '.join(args)!r}"
            if dnf
            else "Error: clean requires an option: headers, packages, metadata, dbcache, plugins, "
            "expire-cache, rpmdb, all"
        )
    print("24 files removed" if dnf else "Cleaning repos: base extras updates\nCleaning up list of fastest mirrors")
    return 0


def groupinstall(dnf: bool, groups: list[str], yes: bool) -> int:
    if not groups:
        fakelib.fail(
            "Error: Need to pass a list of groups to install"
            if dnf
            else "Error: Need to pass a list of groups to groupinstall"
        )
    db = fakelib.load("rpmdb", {})
    unknown = [g for g in groups if g.lstrip("@").startswith("does-not-exist")]
    if unknown:
        for g in unknown:
            fakelib.err(f"Module or Group '{g}' is not available." if dnf else f"Warning: group {g} does not exist.")
        fakelib.fail("Error: Nothing to do." if dnf else "Error: Nothing to do")
    new = [g for g in groups if g.lstrip("@") not in db["groups"]]
    if not new:
        # yum 3 returns 1 here (a known idempotence trap); dnf returns 0 since RhBug:1232815.
        if dnf:
            for g in groups:
                print(f"Group '{g.lstrip('@')}' is already installed.")
            return nothing_to_do(dnf)
        for g in groups:
            print(f"Warning: Group {g.lstrip('@')} does not have any packages to install.")
        print("Maybe run: yum groups mark install (see man yum)")
        fakelib.fail("No packages in any requested group available to install or update")
    confirm(dnf, yes)
    db["groups"] += [g.lstrip("@") for g in new]
    fakelib.save("rpmdb", db)
    print("\nComplete!")
    return 0


if __name__ == "__main__":
    fakelib.run(main)

"""``dnf config-manager`` (dnf-plugins-core) as the ``dnf`` fake runs it: ``--add-repo URL|FILE``
writes a .repo file into /etc/yum.repos.d, ``--set-enabled``/``--set-disabled REPO`` flip
``enabled=`` of a repo section. There is no network here: a remote ``.repo`` URL is stood in for by
one repo section named after the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import fakelib


def config_manager(dnf: bool, args: list[str], yes: bool) -> int:
    repo_dir = Path("/etc/yum.repos.d")
    i = 0
    while i < len(args):
        option, _, value = args[i].partition("=")
        if option in ("--add-repo", "--set-enabled", "--set-disabled") and not value:
            if i + 1 >= len(args):
                fakelib.fail(
                    f"usage: dnf config-manager [options] [repo ...]\n"
                    f"dnf config-manager: error: argument {option}: expected one argument"
                )
            i, value = i + 1, args[i + 1]
        if option == "--add-repo":
            add_repo(repo_dir, value)
        elif option in ("--set-enabled", "--set-disabled"):
            set_enabled(repo_dir, value, option == "--set-enabled")
        else:
            fakelib.fail(
                f"usage: dnf config-manager [options] [repo ...]\nCommand line error: unrecognized arguments: {args[i]}"
            )
        i += 1
    return 0


def add_repo(repo_dir: Path, url: str) -> None:
    print(f"Adding repo from: {url}")
    local = Path(url.removeprefix("file://"))
    if url.endswith(".repo"):
        if "://" not in url or url.startswith("file://"):
            if not local.exists():
                fakelib.fail(f"Error: Configuration of repo failed: Cannot download '{url}': file not found")
            fakelib.write_file(repo_dir / local.name, local.read_text())
            return
        # No network here: stand in for the downloaded file with one repo named after it.
        stem = url.rsplit("/", 1)[-1].removesuffix(".repo")
        text = f"[{stem}]\nname={stem}\nbaseurl={url.rsplit('/', 1)[0]}/$releasever/$basearch/\nenabled=1\ngpgcheck=1\n"
        fakelib.write_file(repo_dir / f"{stem}.repo", text)
        return
    repo_id = re.sub(r"[^\w.-]", "_", url.split("://", 1)[-1])
    fakelib.write_file(
        repo_dir / f"{repo_id}.repo",
        f"[{repo_id}]\nname=created by dnf config-manager from {url}\nbaseurl={url}\nenabled=1\n",
    )


def set_enabled(repo_dir: Path, repo_id: str, enabled: bool) -> None:
    for path in sorted(repo_dir.glob("*.repo")):
        text = path.read_text()
        section = re.search(rf"^\[{re.escape(repo_id)}\]\n(?:(?!\[).*\n?)*", text, re.M)
        if section:
            body = re.sub(r"^enabled=.*\n?", "", section[0], flags=re.M).rstrip("\n")
            path.write_text(text.replace(section[0], f"{body}\nenabled={int(enabled)}\n"))
            return
    fakelib.fail(f"Error: No matching repo to modify: {repo_id}.")

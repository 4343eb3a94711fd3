"""L5 helpers: a lab (``lab.core.Lab``) for a test module, and what the engine says it did.

The lab needs the provider plugins of the SDK pins in the plugin cache (``make plugins``): they
cannot be downloaded here and no test tries. Without them the L5 tests skip, naming each missing
plugin, also under ``REQUIRE_REAL_TOOLS=1`` (DEVELOPERS.md: a machine without plugins skips them).
Everything else the lab needs (root, the engine, libvirtd, QEMU, dockerd, nginx, sshd) is a real
tool: missing, it fails in CI like any other.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.core import Lab
from plan.run import ROOT

from .tools import require_root, require_tool

PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "requirements.txt", "components", "templates")
LAB_TOOLS = ("ip", "nsenter", "unshare", "sshd", "ssh", "ssh-keygen", "libvirtd", "virtlogd", "virsh",
             "qemu-system-x86_64", "qemu-img", "dockerd", "docker", "nginx", "haproxy", "curl", "busybox",
             "bash-static", "genisoimage")  # fmt: skip


def missing_plugins() -> list[str]:
    """``NAME VERSION`` of each provider plugin the SDK pins want and the plugin cache lacks."""
    wanted = subprocess.run(
        ["bash", str(ROOT / "engine" / "plugins.sh"), "--list"], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    home = Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi"))
    missing = []
    for line in filter(None, wanted):
        name, version = line.split()
        if not os.access(home / "plugins" / f"resource-{name}-v{version}" / f"pulumi-resource-{name}", os.X_OK):
            missing.append(f"{name} {version}")
    return missing


def require_lab() -> None:
    """Skip naming each missing plugin (never a failure); fail in CI for any other missing tool."""
    missing = missing_plugins()
    if missing:
        pytest.skip(
            "provider plugins missing from the plugin cache (make plugins): " + ", ".join(missing),
            allow_module_level=True,
        )
    require_root()
    if not (ROOT / ".engine" / "bin" / "pulumi").exists():
        from .tools import missing as missing_tool

        missing_tool("the engine is not built (make engine)")
    for tool in LAB_TOOLS:
        require_tool(tool)
    if not Path("/dev/kvm").exists():
        from .tools import missing as missing_tool

        missing_tool("/dev/kvm is missing: QEMU cannot run the lab's KVM guests")


def project_copy(directory: Path, *stacks: str) -> Path:
    """The program and the committed stacks ``stacks`` in ``directory``, as a checkout would hold them."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in (*PROJECT_FILES, *(f"Pulumi.{s}.yaml" for s in stacks)):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, directory / name)
    (directory / ".venv").symlink_to(ROOT / ".venv")
    return directory


def lab_for(source: str, directory: Path) -> Iterator[Lab]:
    """A fresh lab of committed stack ``source`` in ``directory``, torn down afterwards (also when a
    test failed: what it leaves is named, and a leftover fails the module)."""
    project = project_copy(directory / "project", source)
    lab = Lab(
        source,
        stack="lab",
        prefix=f"vft{secrets.token_hex(3)}",
        directory=directory / "lab",
        project=project,
        progress=lambda _message: None,
    )
    try:
        lab.create()
        yield lab
    finally:
        problems = lab.teardown(destroy=False)
        assert not problems, problems
        assert not lab.leftovers(), lab.leftovers()


def json_objects(text: str) -> list[dict]:
    """The JSON documents of a ``--json`` output, in order: ``pulumi up --json`` prints its preview's
    document, then one engine event per line."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return objects
        found, at = decoder.raw_decode(text, at)
        objects.append(found)


def _op(op: str) -> str:
    return "replace" if op in ("create-replacement", "delete-replaced", "replace") else op


def operations(up_json: str, *, by_urn: bool = False) -> dict[str, str]:
    """``{resource name: op}`` of every resource the engine touched in ``pulumi up --json`` (events,
    ops other than same/read/refresh); the steps of a replace count as one ``replace``. A component
    and its child of the same name are one entry; ``by_urn`` keys by URN (to count resources)."""
    done: dict[str, str] = {}
    for event in json_objects(up_json):
        meta = (event.get("resourcePreEvent") or {}).get("metadata")
        if meta and meta.get("op") not in ("same", "read", "refresh"):
            done[meta["urn"] if by_urn else meta["urn"].rsplit("::", 1)[-1]] = _op(meta["op"])
    return done


def preview_steps(preview_json: str, *, by_urn: bool = False) -> dict[str, str]:
    """``{resource name: op}`` of the steps other than ``same`` that ``pulumi preview --json`` (or the
    first document of ``pulumi up --json``) plans; ``by_urn`` as for ``operations``."""
    document = json_objects(preview_json)[0]
    return {
        (step["urn"] if by_urn else step["urn"].rsplit("::", 1)[-1]): _op(step["op"])
        for step in document.get("steps") or []
        if step["op"] not in ("same", "read")
    }

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
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

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


def timed(times: dict[str, tuple[float, int]], name: str, lab, *args: str, check: bool = True):
    """``lab.pulumi(*args)``, its wall time recorded as ``times[name]`` (seconds, resources: 0 until the
    test counts them) for the figures an L5 cycle reports."""
    start = time.monotonic()
    done = lab.pulumi(*args, check=check)
    times[name] = (time.monotonic() - start, 0)
    return done


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


def began(up_json: str, type_: str | None = None) -> list[str]:
    """The name of each resource (of ``type_``, or any) at every operation ``pulumi up --json`` began
    on it other than same/read/refresh, in order (a replace begins twice: its create and its delete)."""
    return [
        meta["urn"].rsplit("::", 1)[-1]
        for event in json_objects(up_json)
        if (meta := (event.get("resourcePreEvent") or {}).get("metadata"))
        and meta.get("op") not in ("same", "read", "refresh")
        and (type_ is None or meta.get("type") == type_)
    ]


def started_commands(up_json: str) -> list[str]:
    """The names of the Commands ``pulumi up --json`` started (create, update or replace), in order."""
    return list(dict.fromkeys(began(up_json, "command:remote:Command")))


def command_outputs(lab, stack: str = "lab") -> dict[str, str]:
    """Each Command's last stdout, from the stack's state: what its script printed."""
    state = json.loads(lab.pulumi("stack", "export", "--stack", stack).stdout)
    return {
        r["urn"].rsplit("::", 1)[-1]: str((r.get("outputs") or {}).get("stdout", ""))
        for r in state["deployment"].get("resources") or []
        if r["type"] == "command:remote:Command"
    }


def preview_steps(preview_json: str, *, by_urn: bool = False) -> dict[str, str]:
    """``{resource name: op}`` of the steps other than ``same`` that ``pulumi preview --json`` (or the
    first document of ``pulumi up --json``) plans; ``by_urn`` as for ``operations``."""
    document = json_objects(preview_json)[0]
    return {
        (step["urn"] if by_urn else step["urn"].rsplit("::", 1)[-1]): _op(step["op"])
        for step in document.get("steps") or []
        if step["op"] not in ("same", "read")
    }


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value in a checkpoint
SECRET_LEAF = re.compile(r"privateKey|password|passphrase|secret|token|pem|stdin", re.I)  # not hostKey


def secret_values(lab, stack: str) -> tuple[list[str], str]:
    """Every secret the stack's state holds, in clear (``stack export --show-secrets``), and the
    state as it is stored (``stack export``): each should be there as ciphertext only. A secret is a
    string secret, or in a secret object the strings under keys that name secret material (a
    connection's ``privateKey``, say; its host and user are not secrets of their own)."""
    stored = lab.pulumi("stack", "export", "--stack", stack).stdout
    shown = json.loads(lab.pulumi("stack", "export", "--show-secrets", "--stack", stack).stdout)
    found: set[str] = set()

    def leaves(value, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                leaves(v, k)
        elif isinstance(value, list):
            for v in value:
                leaves(v, key)
        elif isinstance(value, str) and len(value) >= 8 and SECRET_LEAF.search(key):
            found.add(value)

    def walk(value) -> None:
        if isinstance(value, dict):
            if value.get(SECRET_SIG) and "plaintext" in value:
                plain = json.loads(value["plaintext"])
                if isinstance(plain, str) and len(plain) >= 8:
                    found.add(plain)
                else:
                    leaves(plain)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(shown)
    return sorted(found), stored


FAKES_STATE = "/var/lib/virtfleet-fakes"
# Made by the first SELinux call with every default in it: compared as the tools show it instead.
SELINUX_STATE = ("selinux.json", "sebool.json", "fcontext.json")
HOST_PROBE = (
    f'for f in {FAKES_STATE}/*.json; do echo "$f"; cat "$f"; echo; done; echo ---;'
    " ls /etc/NetworkManager/system-connections /etc/sysctl.d /etc/yum.repos.d 2>/dev/null; echo ---;"
    " ip -br addr; echo ---; cat /etc/selinux/config /etc/hosts 2>/dev/null; echo ---; cat /etc/hostname; echo ---;"
    " getenforce; getsebool -a; semanage fcontext -l -C -n"
)
# What a host's real daemons (and the fakes of the CLIs that manage guests) hold, per kind of host.
DAEMONS = {
    "domains": "virsh list --all --name 2>&1 | sort",
    "volumes": "virsh vol-list default 2>/dev/null | awk 'NR>2 {print $1}' | sort",
    "networks": "virsh net-list --all --name 2>&1 | sort",
    "containers": "docker ps -a --format '{{.Names}}' 2>&1 | sort",
    "docker networks": "docker network ls --format '{{.Name}}' 2>&1 | sort",
}


def host_snapshot(lab, host: str, probes: dict[str, str]) -> dict:
    """What a stack changes on ``host``: ``probes`` (name -> command) and the fakes' state, files,
    addresses, config and SELinux as the tools show them. Any fake seeds the minimal EL install first."""
    commands = [*probes.values(), HOST_PROBE]
    out = lab.ssh(host, "rpm -q rpm >/dev/null; " + "; echo ---; ".join(commands), timeout=120).stdout
    parts = out.split("---\n")
    got = {name: parts[i].split() for i, name in enumerate(probes)}
    fakes_at = len(probes)
    state = {}
    for path, text in re.findall(r"^(/var/lib/virtfleet-fakes/\S+\.json)\n(.*?)(?=^/var/lib/virtfleet-fakes/|\Z)",
                                 parts[fakes_at], flags=re.M | re.S):  # fmt: skip
        if path.rsplit("/", 1)[1] in SELINUX_STATE:
            continue
        data = json.loads(text)
        if path.endswith("systemd.json"):
            data.pop("jobs", None)  # the journal of every job: history, not state
        if isinstance(data, dict):  # counters (xl's next domid) are history too
            data = {k: v for k, v in data.items() if not k.startswith("next_")}
            if not _filled(data):
                continue  # a fake's state with nothing in it (no domain left, no database path) is no state
        state[path] = data
    got.update(
        fakes=state,
        files=parts[fakes_at + 1],
        addresses=parts[fakes_at + 2],
        config=parts[fakes_at + 3],
        hostname=parts[fakes_at + 4].strip(),
        selinux=parts[fakes_at + 5],
    )
    return got


def _filled(value) -> bool:
    """Whether a JSON-like value holds anything but empty lists, empty strings, nulls and dicts of
    those (False and 0 are values: a unit disabled is state)."""
    if isinstance(value, dict):
        return any(_filled(v) for v in value.values())
    return value not in ("", None, [])


def differences(before, after, path: str = "") -> list[str]:
    """Where two JSON-like values differ, as ``path: before -> after`` lines."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [d for k in sorted(set(before) | set(after), key=str)
                for d in differences(before.get(k, "<absent>"), after.get(k, "<absent>"), f"{path}/{k}")]  # fmt: skip
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


def edit_stack(lab, edit) -> None:
    """``edit(values)`` on the lab's stack file (its ``virtfleet:`` values, as config keys), written back."""
    document = yaml.safe_load(lab.stack_file.read_text())
    values = {k.split(":", 1)[1]: v for k, v in document["config"].items() if k.startswith("virtfleet:")}
    edit(values)
    for key, value in values.items():
        document["config"][f"virtfleet:{key}"] = value
    lab.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))

"""The real Pulumi CLI and Python language host that `make engine` builds from their Go modules run the
program, with no provider plugin (an empty plugin home).

The lab's tests (tests/test_lab_*.py) take it through the real provider plugins; these prove what
the engine does before a provider, which the SDK mocks cannot: the CLI accepts Pulumi.yaml and the committed
stack files, the language host runs the program with the stack's config as the engine hands it over,
the model's errors reach the user with their key paths and nothing is registered, secrets are kept
as ciphertext, and nothing is downloaded (every run is inside a network namespace with no route out).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support.pulumi_sdk import pinned_python_sdk_module
from support.tools import missing, require_root, require_tool

from plan.run import ROOT

pytestmark = pytest.mark.real

ENGINE = ROOT / ".engine"
WRAPPER = ROOT / "engine" / "pulumi"
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "requirements.txt", "components", "templates")
MISSING_PLUGIN = re.compile(r"no resource plugin 'pulumi-resource-(\w+)' found")
CANCELLATION_ERRORS = ("Program failed with an unhandled exception:", "Resource monitor has terminated, shutting down")
CANCELLATION = re.compile(r"^KeyboardInterrupt\b|context canceled|StatusCode\.CANCELLED")


def exception_endings(output: str) -> list[str | None]:
    """The last line of each Python traceback in a CLI's output (the exception), or None for one cut off
    where its process died. An exception Python ignored (one a coroutine or a callback raised while
    the interpreter shut down) is not the program's, and is left out. A traceback's lines share the
    prefix its first line has (the progress view's resource column, the diagnostics' indent); its
    frames are indented below that prefix."""
    lines = output.splitlines()
    endings: list[str | None] = []
    for at, line in enumerate(lines):
        if "Traceback (most recent call last):" not in line or (at and "Exception ignored in:" in lines[at - 1]):
            continue
        prefix = line[: line.index("Traceback")]
        ending = None
        for following in lines[at + 1 :]:
            if not following.strip():
                continue
            if not following.startswith(prefix):
                break
            rest = following[len(prefix) :]
            if not rest.startswith((" ", "Traceback", "During handling", "The above exception")):
                ending = rest
                break
        endings.append(ending)
    return endings


def test_exception_endings_reads_each_traceback_to_its_exception():
    output = """  pulumi:pulumi:Stack s  Traceback (most recent call last):
  pulumi:pulumi:Stack s    File "x.py", line 1, in <module>
  pulumi:providers:tls p  1 error
    Traceback (most recent call last):
      File "a.py", line 2, in f
        g()

    During handling of the above exception, another exception occurred:

    Traceback (most recent call last):
      File "b.py", line 3, in g
    ValueError: virtfleet:guests[0].host
  pulumi:pulumi:Stack s  Exception ignored in: <coroutine object run_in_stack at 0x7fe05822c450>
  pulumi:pulumi:Stack s  Traceback (most recent call last):
  pulumi:pulumi:Stack s    File "stack.py", line 254, in run_in_stack
  pulumi:pulumi:Stack s  RuntimeError: no running event loop
"""
    endings = exception_endings(output)
    assert endings == [None, "ValueError: virtfleet:guests[0].host", "ValueError: virtfleet:guests[0].host"]
    assert not CANCELLATION.search(endings[1])
    assert CANCELLATION.search("KeyboardInterrupt: ")


def pinned(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", go_mod.read_text(), re.M)
    assert match, f"{go_mod} does not require {module}"
    return match.group(1)


@pytest.fixture(scope="module")
def engine() -> Path:
    if not (ENGINE / "bin" / "pulumi").exists():
        missing("the engine is not built (run 'make engine')")
    require_root()
    require_tool("unshare")
    require_tool("ssh-keygen")
    return ENGINE


class Project:
    """A copy of the program with its own state backend and passphrase, run through engine/pulumi with
    no network but loopback (the engine's plugins talk gRPC over 127.0.0.1)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        for name in PROJECT_FILES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, path / name)
        (path / "state").mkdir()
        passphrase = path / "passphrase"
        passphrase.write_text("correct horse battery staple\n")
        passphrase.chmod(0o600)
        self.env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(path),
            "PULUMI_BACKEND_URL": f"file://{path / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE_FILE": str(passphrase),
        }

    def pulumi(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', str(WRAPPER), *args]
        done = subprocess.run(
            argv, cwd=self.path, env=self.env, input=stdin, capture_output=True, text=True, timeout=300
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def stack(self, name: str, values: dict) -> Path:
        """Pulumi.<name>.yaml with ``values`` (keys without the namespace), created in the backend."""
        stack_file = self.path / f"Pulumi.{name}.yaml"
        stack_file.write_text(yaml.safe_dump({"config": {f"virtfleet:{k}": v for k, v in values.items()}}))
        self.pulumi("stack", "init", name)
        return stack_file


@pytest.fixture
def project(engine, tmp_path) -> Project:
    return Project(tmp_path)


def committed(stack: str) -> dict:
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k.split(":", 1)[1]: v for k, v in config.items()}


def build_info(binary: Path) -> str:
    return subprocess.run(["go", "version", "-m", binary], capture_output=True, text=True, check=True).stdout


def test_built_versions_are_the_pins(engine):
    require_tool("go")
    cli = pinned(ROOT / "engine" / "cli" / "go.mod", "github.com/pulumi/pulumi/pkg/v3")
    assert subprocess.run([WRAPPER, "version"], capture_output=True, text=True, check=True).stdout.strip() == cli
    assert re.search(rf"\t(mod|dep)\tgithub.com/pulumi/pulumi/pkg/v3\t{cli}\t", build_info(engine / "bin" / "pulumi"))
    host_sdk = pinned(ROOT / "engine" / "language-python" / "go.mod", "github.com/pulumi/pulumi/sdk/v3")
    host = build_info(engine / "bin" / "pulumi-language-python")
    assert re.search(rf"\t(mod|dep)\tgithub.com/pulumi/pulumi/sdk/v3\t{host_sdk}\t", host)
    # The host refuses to run programs unless its executor lies beside its real path; the executor is
    # the one of the Python SDK the program imports (requirements.txt's pin).
    executor = engine / "bin" / "pulumi-language-python-exec"
    assert executor.parent == (engine / "bin" / "pulumi-language-python").resolve().parent
    source = pinned_python_sdk_module() / "python" / "cmd" / "pulumi-language-python-exec"
    assert executor.read_bytes() == source.read_bytes()


def test_plugins_live_in_the_users_plugin_home_outside_the_clone(project, tmp_path):
    """engine/pulumi uses $PULUMI_HOME, else ~/.pulumi, as every Pulumi CLI does: a plugin installed once
    serves every checkout on the machine (here a stand-in binary, in the project's own HOME)."""
    assert json.loads(project.pulumi("plugin", "ls", "--json").stdout.strip() or "[]") in ([], None)
    stand_in = tmp_path / "pulumi-resource-standin"
    stand_in.write_text("#!/bin/sh\nexit 1\n")
    stand_in.chmod(0o755)
    project.pulumi("plugin", "install", "resource", "standin", "1.0.0", "--file", str(stand_in))
    installed = project.path / ".pulumi" / "plugins" / "resource-standin-v1.0.0" / "pulumi-resource-standin"
    assert installed.read_bytes() == stand_in.read_bytes()
    assert not (ENGINE / "home").exists(), "no plugin home inside the clone"


def test_a_broken_stack_is_refused_with_the_models_key_paths_and_registers_nothing(project, prod_values):
    prod_values["guests"][0]["host"] = "nosuchhost"
    prod_values["guests"][1]["network"]["ip"] = "10.20.99.300"
    project.stack("broken", prod_values)
    done = project.pulumi("up", "--yes", "--stack", "broken", check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "virtfleet:guests[0].host" in output and "nosuchhost" in output
    assert "virtfleet:guests[1].network.ip" in output
    assert not MISSING_PLUGIN.search(output), "the program got past the model"
    exported = json.loads(project.pulumi("stack", "export", "--stack", "broken").stdout)
    types = [r["type"] for r in exported["deployment"].get("resources") or []]
    assert set(types) <= {"pulumi:pulumi:Stack"}, types


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_committed_stacks_pass_the_real_clis_checks_and_run_up_to_the_providers(project, stack, tmp_path):
    """The CLI validates Pulumi.yaml's declarations against each stack file (a secret declared with a
    default was refused here), the program runs with the engine's config and registers its
    resources; the preview then stops at the first provider plugin, which this machine cannot build."""
    stack_file = project.stack(stack, committed(stack))
    values = committed(stack)
    key = None
    if not values.get("ssh", {}).get("useAgent"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "id"], check=True)
        key = (tmp_path / "id").read_text()
        project.pulumi("config", "set", "--secret", "--stack", stack, "virtfleet:sshPrivateKey", stdin=key)
        assert "PRIVATE KEY" not in stack_file.read_text()
        assert "secure:" in stack_file.read_text()
    done = project.pulumi("preview", "--stack", stack, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "validating stack config" not in output
    # Every error is a missing provider plugin; the engine then cancels the program, which reports the
    # cancellation in forms that race with its own shutdown: an unhandled exception, a resource monitor
    # that went away, tracebacks ending in KeyboardInterrupt or an invoke's "context canceled" (staging's
    # pulumi-tls getPublicKey), or cut off where the process died. None is the program's own exception.
    errors = re.findall(r"error: (.*)", output)
    assert errors and MISSING_PLUGIN.search(errors[0]), output
    assert all(MISSING_PLUGIN.search(e) or e in CANCELLATION_ERRORS for e in errors), output
    assert set(MISSING_PLUGIN.findall(output)) <= {"random", "tls", "command", "libvirt", "docker"}
    assert all(ending is None or CANCELLATION.search(ending) for ending in exception_endings(output)), output
    if key:
        body = "".join(key.splitlines()[1:-1])
        assert body[:40] not in output.replace("\n", "")


def test_secrets_round_trip_through_the_passphrase_provider_as_ciphertext(project):
    stack_file = project.stack("secrets", committed("dev"))
    password = "s3cret-Stats-Passw0rd"
    project.pulumi("config", "set", "--secret", "--stack", "secrets", "virtfleet:statsPassword", password)
    text = stack_file.read_text()
    assert password not in text
    document = yaml.safe_load(text)
    assert set(document["config"]["virtfleet:statsPassword"]) == {"secure"}
    assert "encryptionsalt" in document
    shown = project.pulumi("config", "get", "--stack", "secrets", "virtfleet:statsPassword").stdout.strip()
    assert shown == password
    listed = project.pulumi("config", "--stack", "secrets").stdout
    assert password not in listed and "[secret]" in listed
    # A wrong passphrase cannot read it back.
    (project.path / "passphrase").write_text("another passphrase\n")
    wrong = project.pulumi("config", "get", "--stack", "secrets", "virtfleet:statsPassword", check=False)
    assert wrong.returncode != 0 and password not in wrong.stdout + wrong.stderr


def test_make_preview_names_each_missing_provider_plugin_and_stops(engine, tmp_path):
    """engine/preview.sh asks engine/plugins.sh, which derives the plugins from the installed Python SDKs
    (their pulumi-plugin.json), and stops before touching a stack when one is missing from the plugin
    cache (here an empty HOME), naming each with the command that installs a binary one has."""
    wanted = set()
    for path in (ROOT / ".venv" / "lib").glob("python3*/site-packages/pulumi_*/pulumi-plugin.json"):
        plugin = json.loads(path.read_text())
        if plugin.get("resource"):
            wanted.add(f"{plugin['name']} {plugin['version'].lstrip('v')}")
    assert {w.split()[0] for w in wanted} == {"command", "libvirt", "docker", "random", "tls"}
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        ["unshare", "--net", "bash", ROOT / "engine" / "preview.sh", "dev"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 1
    line = next(x for x in done.stderr.splitlines() if "missing from" in x)
    assert line.split(f"{tmp_path}/.pulumi/plugins: ", 1)[1].split(", ") == sorted(wanted)
    for plugin in wanted:
        name, version = plugin.split()
        assert (
            f"engine/pulumi plugin install resource {name} {version} --file /path/to/pulumi-resource-{name}"
            in done.stderr
        )
    assert done.stdout == ""  # stopped before `stack select` or `preview`
    assert not (tmp_path / ".pulumi" / "plugins").exists(), "nothing was downloaded or installed"

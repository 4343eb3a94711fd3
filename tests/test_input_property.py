"""L1+L3 property: whatever free text the model accepts lands only where it belongs.

For every field whose value reaches a rendered kickstart, cloud-config or step script, random
strings (biased towards what ends a section, a document, a line or a here-document) are put into
the prod stack. Where ``load_fleet`` refuses them, nothing is rendered (the corpus in
test_model_errors covers the messages). Where it accepts them, the rendered files are parsed by
their real tools, in process where the tool is a library:

- kickstart: pykickstart's parser (errors fatal), RHEL7 and RHEL9 handlers; the parsed package
  lists, time zone and %post bodies must be exactly the configured values, with no extra section;
- cloud-config: YAML, then cloud-init's own JSON schema (the file cloud-init ships, checked with
  jsonschema as ``cloud-init schema`` does); packages, runcmd and keys must come back unchanged;
- scripts: ``bash -n`` and shellcheck on every host step script and every %post body.
"""

from __future__ import annotations

import copy
import json
import string
import subprocess
from functools import cache
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml
from conftest import stack_values
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from support.tools import require_tool

from components.guests.kvm_seed import render_kickstart, render_user_data
from components.hosts.host_steps import host_steps
from components.model import FleetConfigError, load_fleet
from components.model.common import _time_zones
from components.osfamily import os_family

PROD = stack_values("prod")
KEY_BODY = "AAAAC3NzaC1lZDI1NTE5AAAAIAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"  # a real ed25519 key
CLOUD_SCHEMA = Path("/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json")

# Pieces that end a kickstart section, a YAML value, a shell word or a here-document.
NASTY = [
    "\n", "\r", "\t", "\x00", " ", "%end", "%post", "%packages", "'", '"', "`", "$(", ")", ";", "&&", "|",
    "#", ": ", "- ", "{", "}", "[", "]", ",", "VIRTFLEET_KEYS", "VIRTFLEET_FILE", "\\", "@", "^", "-",
    ".", "+", "_", "/", "*", "é", "--", "=",
]  # fmt: skip
WORD = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=6)
TEXT = st.lists(st.one_of(st.sampled_from(NASTY), WORD), min_size=1, max_size=8).map("".join)
# Near-valid values (what the field's grammar allows, with its edge characters) four times in five,
# so that most examples are accepted and reach the renderers; random TEXT the third time. No lone
# surrogate (Cs): a stack's values reach the program as UTF-8 (the CLI's Go strings), which cannot hold
# one (Hypothesis drew U+D800 in CI, and the test's own pipe to bash could not encode it).
ONE_LINE = st.lists(
    st.one_of(
        st.sampled_from([n for n in NASTY if n.isprintable()]), WORD, st.characters(exclude_categories=["Cc", "Cs"])
    ),
    min_size=1,
    max_size=10,
).map("".join)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?"


def _mostly(near: st.SearchStrategy) -> st.SearchStrategy:
    """``near`` four times in five, random TEXT the fifth (one_of alone would weigh them evenly)."""
    return st.integers(0, 4).flatmap(lambda i: TEXT if i == 0 else near)


PACKAGE = _mostly(st.from_regex(r"\A-?(?:@\^?)?[A-Za-z0-9_+][A-Za-z0-9._+-]{0,12}\Z"))
ZONE = _mostly(st.sampled_from(sorted(_time_zones())[::20]))
FREE = _mostly(ONE_LINE)
DNS = _mostly(st.from_regex(rf"\A{_LABEL}(?:\.{_LABEL}){{0,3}}\Z"))
# No explain phase: it re-runs a failing example hundreds of times to annotate it (minutes).
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
EXAMPLES = settings(max_examples=60, deadline=None, phases=PHASES, suppress_health_check=[HealthCheck.too_slow])


def _load(*mutations) -> object | None:
    values = copy.deepcopy(PROD)
    for mutate in mutations:
        mutate(values)
    try:
        return load_fleet(values, {"sshPrivateKey"})
    except FleetConfigError:
        return None


def _accepted(*mutations) -> tuple[object, list[bool]]:
    """The fleet with every mutation the model accepts on its own (and which those were): the fields
    are independent, so most examples render something even when one value is refused."""
    kept = [_load(m) is not None for m in mutations]
    event(f"values accepted: {sum(kept)} of {len(kept)}")  # --hypothesis-show-statistics
    fleet = _load(*(m for m, ok in zip(mutations, kept, strict=True) if ok))
    assert fleet is not None, "values accepted one by one must be accepted together"
    return fleet, kept


def _run(argv: list, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], input=stdin, capture_output=True, text=True, timeout=60)


def _shell_clean(scripts: dict[str, str], tmp: Path) -> None:
    """bash -n and shellcheck (style) on every script; the failure names the script."""
    shellcheck = require_tool("shellcheck")
    tmp.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in scripts.items():
        proc = _run(["bash", "-n"], stdin=text)
        assert proc.returncode == 0, (name, proc.stderr, text)
        path = tmp / name.replace("/", "_")
        path.write_text(text)
        paths.append(path)
    proc = _run([shellcheck, "--severity=style", "--shell=bash", *paths])
    assert proc.returncode == 0, proc.stdout


def _parse_kickstart(text: str, version: str):
    from pykickstart.parser import KickstartParser
    from pykickstart.version import makeVersion

    handler = makeVersion(version)
    KickstartParser(handler, errorsAreFatal=True, missingIncludeIsFatal=True).readKickstartFromString(text)
    return handler


def _expected_packages(lines: list[str]) -> dict[str, set[str] | str | None]:
    out: dict = {"packages": set(), "groups": set(), "excluded": set(), "excluded_groups": set(), "env": None}
    for line in lines:
        excluded, name = line.startswith("-"), line.removeprefix("-")
        if name.startswith("@^") and not excluded:
            out["env"] = name[2:]
        elif name.startswith("@"):
            out["excluded_groups" if excluded else "groups"].add(name.lstrip("@^"))
        else:
            out["excluded" if excluded else "packages"].add(name)
    return out


@cache
def _cloud_schema() -> dict:
    require_tool("cloud-init")
    if not CLOUD_SCHEMA.exists():
        pytest.skip(f"cloud-init's schema is not at {CLOUD_SCHEMA}")
    return json.loads(CLOUD_SCHEMA.read_text())


@pytest.mark.real
@EXAMPLES
@given(
    packages=st.lists(PACKAGE, min_size=1, max_size=3), zone=ZONE, comment=FREE, family=st.sampled_from(["el7", "el9"])
)
def test_kickstart_holds_accepted_values_only_where_they_belong(packages, zone, comment, family, tmp_path_factory):
    key = f"ssh-ed25519 {KEY_BODY} {comment}"
    install = lambda v: next(g for g in v["guests"] if g["name"] == "centos7guest")["install"]  # noqa: E731
    fleet, _ = _accepted(
        lambda v: install(v).update(packages=packages),
        lambda v: install(v).update(timezone=zone),
        lambda v: v["ssh"].update(authorizedKeys=[key]),
    )
    guest = fleet.guest("centos7guest").model_copy(update={"os_family": family})
    family_data = os_family(family)
    bridge = fleet.host("kvm1").bridge("brid0")
    text = render_kickstart(guest, fleet, bridge, family_data, "$6$salt$hash", login_keys=())
    handler = _parse_kickstart(text, family_data.kickstart_version)

    assert handler.timezone.timezone == guest.install.timezone
    want = _expected_packages(list(guest.install.packages))
    got = handler.packages
    assert set(got.packageList) == want["packages"]
    assert {g.name for g in got.groupList} == want["groups"]
    assert set(got.excludedList) == want["excluded"]
    assert {g.name for g in got.excludedGroupList} == want["excluded_groups"]
    assert got.environment == want["env"]
    # one %post (the keys) or none and nothing else: no section was opened or closed by a value
    keys = fleet.ssh.authorized_keys
    assert [s.type for s in handler.scripts] == ([1] if keys else [])
    if keys:
        body = handler.scripts[0].script.splitlines()
        start = body.index("cat >> /root/.ssh/authorized_keys <<'VIRTFLEET_KEYS'")
        assert body[start + 1 : start + 2 + len(keys)] == [*keys, "VIRTFLEET_KEYS"]
        _shell_clean({"post.sh": "#!/bin/bash\n" + handler.scripts[0].script}, tmp_path_factory.mktemp("ks"))


@pytest.mark.real
@EXAMPLES
@given(packages=st.lists(PACKAGE, max_size=3), runcmd=st.lists(FREE, max_size=3), comment=FREE)
def test_cloud_config_holds_accepted_values_only_where_they_belong(packages, runcmd, comment):
    import jsonschema

    schema = _cloud_schema()
    key = f"ssh-ed25519 {KEY_BODY} {comment}"
    web1 = lambda v: next(g for g in v["guests"] if g["name"] == "webserver1")  # noqa: E731
    fleet, _ = _accepted(
        lambda v: web1(v).update(packages=packages),
        lambda v: web1(v).update(runcmd=runcmd),
        lambda v: v["ssh"].update(authorizedKeys=[key]),
    )
    guest = fleet.guest("webserver1")
    packages, runcmd = list(guest.packages), list(guest.runcmd)
    baseline = yaml.safe_load(render_user_data(guest.model_copy(update={"packages": (), "runcmd": ()}), fleet))
    text = render_user_data(guest, fleet)
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    jsonschema.Draft4Validator(schema).validate(data)
    assert set(data) == set(baseline) | ({"packages"} if packages else set()) | ({"runcmd"} if runcmd else set())
    assert data["packages"] == list(dict.fromkeys([*packages, *baseline.get("packages", [])]))
    assert data.get("runcmd", [])[: len(runcmd)] == runcmd
    assert data["runcmd"][len(runcmd) :] == baseline["runcmd"]
    assert data.get("ssh_authorized_keys", []) == list(fleet.ssh.authorized_keys)
    assert {k: v for k, v in data.items() if k not in ("packages", "runcmd", "ssh_authorized_keys")} == {
        k: v for k, v in baseline.items() if k not in ("packages", "runcmd", "ssh_authorized_keys")
    }


@pytest.mark.real
@settings(max_examples=25, deadline=None, phases=PHASES, suppress_health_check=[HealthCheck.too_slow])
@given(domain=DNS, address=DNS)
def test_host_scripts_hold_accepted_names_only_where_they_belong(domain, address, tmp_path_factory):
    fleet, _ = _accepted(
        lambda v: v.update(domain=domain),
        lambda v: next(h for h in v["hosts"] if h["name"] == "kvm1").update(address=address),
    )
    host = fleet.host("kvm1")
    steps = {s.name: s for s in host_steps(host, fleet)}
    scripts = {f"{n}.{kind}.sh": getattr(s, kind) for n, s in steps.items() for kind in ("create", "delete")}
    # the domain reaches the hostname and hosts-file steps (the address only /etc/hosts, as a name):
    # their scripts parse and are shellcheck-clean; the other steps are rendered without either
    named = {k: v for k, v in scripts.items() if k.split(".")[0] in ("hostname", "hosts-file")}
    assert not [k for k, v in scripts.items() if k not in named and f"kvm1.{fleet.domain}" in v]
    _shell_clean(named, tmp_path_factory.mktemp("steps"))
    assert f"kvm1.{fleet.domain}" in steps["hostname"].create
    # the /etc/hosts block: exactly one line per machine, an IPv4 address first (a host reached by
    # DNS name is listed by its bridge address), then its FQDN and name
    lines = steps["hosts-file"].create.splitlines()
    block = lines[lines.index("# BEGIN virtfleet") + 1 : lines.index("# END virtfleet")]
    names = [h.name for h in fleet.hosts] + [g.name for g in fleet.guests]
    assert [line.split("  ")[1:] for line in block] == [[f"{n}.{fleet.domain}", n] for n in names]
    assert all(IPv4Address(line.split("  ")[0]) for line in block)

"""L5: the policy pack through the real engine (`pulumi preview --policy-pack`), on the lab's dev
stack and on a variant that violates every policy, compared verdict by verdict with `make plan`'s
(same policy, same resource, same level, same message), in the very first preview of each: no
policy may be left saying "can't run policy … during preview".

Needs, besides the lab's plugins, a Python language host that runs policy packs (the one `make
engine` builds predates them): engine/language-host.sh finds one in the plugin cache. Without it
the tests skip and say so, as for a missing provider plugin.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml
from support.lab_run import lab_for, require_lab
from support.policy_variant import OUTSIDE_MAIN, register_outside, violating

from lab.stack import read_values
from plan.mocks import placeholder
from plan.policy import POLICIES, config_path, evaluate, read_config
from plan.run import ROOT, StackConfig, run_program
from policy.virtfleet_policies import PACK_NAME

pytestmark = pytest.mark.real
require_lab()
if not subprocess.run(["bash", ROOT / "engine" / "language-host.sh"], capture_output=True, text=True).stdout.strip():
    pytest.skip(
        "no Python language host that runs policy packs in the plugin cache (engine/language-host.sh; the "
        "v3.68.0 one `make engine` builds predates them)",
        allow_module_level=True,
    )

STREAM = {"PULUMI_ENABLE_STREAMING_JSON_PREVIEW": "true"}
CONFIG = config_path("dev")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    for lab in lab_for("dev", tmp_path_factory.mktemp("lab-policy")):
        shutil.copytree(ROOT / "policy", lab.project / "policy", ignore=shutil.ignore_patterns("__pycache__", "venv"))
        # The pack's own virtualenv (PulumiPolicy.yaml: venv) is the project's, which holds pulumi-policy:
        # nothing to install, nothing to download.
        (lab.project / "policy" / "venv").symlink_to(ROOT / ".venv")
        yield lab


def engine_verdicts(lab) -> set[tuple]:
    """(policy, resource name, level, message) of every policy event of a real preview with the pack."""
    done = lab.pulumi(
        "preview", "--json", "--stack", "lab", "--policy-pack", str(lab.project / "policy"),
        "--policy-pack-config", str(CONFIG), env=STREAM, check=False,
    )  # fmt: skip
    verdicts = set()
    for line in done.stdout.splitlines():
        event = json.loads(line).get("policyEvent") if '"policyEvent"' in line else None
        if event is None:
            continue
        assert event["policyPackName"] == PACK_NAME
        # The engine puts the policy's description first, then the violation's own message.
        message = event["message"].split("\n", 1)[1].strip()
        name = event["resourceUrn"].rsplit("::", 1)[-1] if event.get("resourceUrn") else None
        verdicts.add((event["policyName"], name, event["enforcementLevel"], message))
    assert verdicts, done.stdout[-3000:] + done.stderr
    return verdicts


def plan_verdicts(values: dict, extra=None) -> set[tuple]:
    config = StackConfig("lab", {**values, "sshPrivateKey": placeholder("sshPrivateKey")}, {"sshPrivateKey"})
    findings = evaluate(run_program(config, extra=extra), read_config(CONFIG))
    return {(f.policy, f.name, f.level, f.message) for f in findings}


def test_the_real_engine_judges_the_lab_stack_as_make_plan_does_at_its_first_preview(lab):
    engine = engine_verdicts(lab)
    assert not [v for v in engine if "can't run policy" in v[3]], "every policy reaches a verdict at preview"
    assert engine == plan_verdicts(read_values(lab.stack_file))


def test_every_policy_violated_once_the_same_verdicts_from_both(lab):
    values = violating(read_values(lab.stack_file))
    document = yaml.safe_load(lab.stack_file.read_text())
    document["config"].update({f"virtfleet:{k}": v for k, v in values.items()})
    lab.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    (lab.project / "__main__.py").write_text(OUTSIDE_MAIN.format(tests=str(ROOT / "tests")))
    engine = engine_verdicts(lab)
    plan = plan_verdicts(values, extra=register_outside)
    assert not [v for v in engine if "can't run policy" in v[3]]
    assert engine == plan, {"only the engine": sorted(engine - plan), "only make plan": sorted(plan - engine)}
    assert {v[0] for v in engine} == {p.name for p in POLICIES}, "one violation of each policy at least"

"""L4: prod's ``haproxy-vrrp`` step (issue 29) executed for real over SSH, as pulumi-command sends it.

The recorded create/delete of haproxy2's step run through a real sshd inside a network namespace the test
makes (the step sets ``net.ipv4.ip_nonlocal_bind``, which is per namespace: the real sysctl, never this
machine's own value). The EL tools are the stateful fakes of ``tests/fakes`` (dnf/rpm, systemctl,
firewall-cmd with firewalld's rich-rule parser, restorecon applying EL9's label for
/usr/libexec/keepalived); keepalived itself runs for real in tests/test_balancer_pair_lab.py.
"""

from __future__ import annotations

import copy
import json
import subprocess
import uuid

import pytest
from support.sshd import LoopbackSshd
from support.step_run import run
from support.tools import require_root, require_tool
from test_haproxy_remote import JOBS, converge, el_machine, jobs, ok, probe, recorded, undo, upload

from components.lb.vrrp_files import KEEPALIVED_CONF, NOTIFY_SCRIPT, SYSCTL_CONF
from plan.run import StackConfig, load_stack, run_program

pytestmark = pytest.mark.real
NODE = "haproxy2"
RULE = 'rule family="ipv4" source address="{peer}" protocol value="vrrp" accept'
STATE = {
    "package": "rpm -q keepalived",
    "unit": "systemctl is-enabled keepalived; systemctl is-active keepalived",
    "sysctl": "sysctl -n net.ipv4.ip_nonlocal_bind",
    "rules": "firewall-cmd --permanent --list-rich-rules; firewall-cmd --list-rich-rules",
    "files": f"stat -c '%n %a %C' {KEEPALIVED_CONF} {NOTIFY_SCRIPT} {SYSCTL_CONF}",
}


@pytest.fixture(scope="module")
def prod():
    return run_program(load_stack("prod")[0])


@pytest.fixture
def node():
    """An sshd view in a namespace of its own, as a fresh EL9 node with firewalld running."""
    require_root()
    for tool in ("sshd", "sysctl", "ip"):
        require_tool(tool)
    namespace = f"vfpair-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        with LoopbackSshd(netns=namespace) as sshd:
            el_machine(sshd, "el9")
            ok(sshd, "systemctl enable --now firewalld >/dev/null 2>&1")
            yield sshd
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def state(sshd) -> dict[str, str]:
    return {name: out for name, (_, out) in probe(sshd, **STATE).items()}


def test_create_installs_keepalived_admits_vrrp_from_the_peer_only_and_delete_puts_the_node_back(prod, node):
    rec = prod
    step = recorded(rec, NODE, "haproxy-vrrp")
    before = state(node)
    assert before["sysctl"] == "0\n" and before["package"] == "package keepalived is not installed\n", before
    upload(node, step)
    converge(node, step)
    after = state(node)
    assert after["package"].startswith("keepalived-")
    assert after["unit"] == "enabled\nactive\n" and after["sysctl"] == "1\n"
    assert after["rules"] == f"{RULE.format(peer='10.0.0.10')}\n" * 2, after["rules"]
    conf, notify, sysctl = after["files"].splitlines()
    assert conf.startswith(f"{KEEPALIVED_CONF} 640 ") and sysctl.startswith(f"{SYSCTL_CONF} 644 "), after["files"]
    assert notify == f"{NOTIFY_SCRIPT} 755 system_u:object_r:keepalived_unconfined_script_exec_t:s0"
    for path, text in step.installed().items():
        assert node.read(path) == text
    assert ("start", "keepalived.service") in jobs(ok(node, JOBS))
    undo(node, step)
    gone = state(node)
    assert gone["package"] == before["package"] and gone["sysctl"] == "0\n" and gone["rules"] == before["rules"], gone
    assert gone["unit"] == before["unit"], gone  # no unit file left: the package went with the step's record
    assert ok(node, f"ls {KEEPALIVED_CONF} {NOTIFY_SCRIPT} {SYSCTL_CONF} 2>/dev/null; true") == ""


def test_a_new_peer_swaps_the_rule_and_reloads_keepalived_and_the_nodes_own_config_returns(prod, node):
    """The node had a keepalived.conf of its own: the step keeps it for the delete. A change of the pair
    (haproxy2's peer is now docker1) replaces the rule, rewrites the file and reloads, not restarts."""
    rec = prod
    step = recorded(rec, NODE, "haproxy-vrrp")
    own = "# the node's own keepalived.conf\nglobal_defs {\n}\n"
    ok(node, "dnf -y -q install keepalived >/dev/null")
    node.upload(own, KEEPALIVED_CONF)
    upload(node, step)
    first = run(node, step.create, step.stdin)
    assert first.code == 0 and first.last == step.report("create", "changed"), str(first)
    assert "changed: installed keepalived" not in first.out  # it was there: the delete keeps it

    config = load_stack("prod")[0]
    values = copy.deepcopy(config.values)
    values["loadBalancer"] |= {"nodes": ["docker1", "haproxy2"], "backups": []}  # haproxy2's peer: docker1
    variant = StackConfig("prod", values, set(config.secret_keys), list(config.placeholders))
    changed = recorded(run_program(variant), NODE, "haproxy-vrrp")
    upload(node, changed)
    again = run(node, changed.create, changed.stdin)
    assert again.code == 0, str(again)
    assert f"changed: removed: {RULE.format(peer='10.0.0.10')} (permanent)" in again.out, str(again)
    assert f"changed: {RULE.format(peer='10.0.0.6')} (runtime)" in again.out, str(again)
    assert "changed: keepalived reloaded" in again.out
    assert jobs(ok(node, JOBS))[-1] == ("reload", "keepalived.service")
    assert state(node)["rules"] == f"{RULE.format(peer='10.0.0.6')}\n" * 2
    done = run(node, changed.delete, changed.stdin)
    assert done.code == 0, str(done)
    assert node.read(KEEPALIVED_CONF) == own
    assert state(node)["package"].startswith("keepalived-"), "the node's own package stays"


def test_create_refuses_without_firewalld_and_changes_nothing(prod, node):
    rec = prod
    step = recorded(rec, NODE, "haproxy-vrrp")
    ok(node, "systemctl stop firewalld")
    before = state(node)
    upload(node, step)
    result = run(node, step.create, step.stdin)
    assert result.code == 1
    assert "firewalld is not running, and VRRP from haproxy only is enforced by its rules" in result.err
    assert state(node) == before
    assert json.loads(ok(node, JOBS)).get("jobs", [])[-1]["verb"] == "stop"

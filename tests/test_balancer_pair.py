"""Two balancer nodes sharing a virtual address (issue 29): L1 model rules and rendering, L2 the program.

The failover itself runs for real in tests/test_balancer_pair_lab.py (namespaces, haproxy, keepalived);
the vrrp step over SSH with the EL fakes in tests/test_balancer_pair_remote.py.
"""

from __future__ import annotations

import pytest
from conftest import edited_fleet, recording

from components.lb.vrrp_files import (
    KEEPALIVED_CONF,
    NOTIFY_SCRIPT,
    SYSCTL_CONF,
    render_keepalived_conf,
    render_notify_script,
)
from components.model import FleetConfigError
from components.model.balancer_pair import router_id_clashes
from plan.diff import features, model_changes
from plan.run import load_stack, router_id_clashes_with_committed
from plan.topology import dot_source, mermaid

LB = "virtfleet:loadBalancer"
STEP = "virtfleet:remote:RemoteStep"
COMMAND = "command:remote:Command"


def pair_errors(edit) -> dict[str, str]:
    """path -> message of every problem prod's values have after ``edit(loadBalancer, values)``."""

    def change(values):
        edit(values["loadBalancer"], values)

    with pytest.raises(FleetConfigError) as err:
        edited_fleet("prod", change)
    return {p.path: p.message for p in err.value.problems}


def one_node(lb: dict) -> None:
    lb["nodes"] = ["haproxy"]
    del lb["virtualAddress"], lb["vrrp"]
    lb["frontend"]["address"] = "10.0.0.10"
    lb["stats"]["bind"]["address"] = "10.0.0.10"


def _guest(values: dict, name: str) -> dict:
    return next(g for g in values["guests"] if g["name"] == name)


# -- L1: the model -----------------------------------------------------------------------------------


def test_one_node_is_todays_tier_and_node_is_still_accepted():
    dev = load_stack("dev")[1].load_balancer
    assert (dev.node, dev.nodes, dev.primary, dev.pair) == ("devbox", ("devbox",), "devbox", False)
    fleet = edited_fleet("prod", lambda v: one_node(v["loadBalancer"]))
    assert fleet.load_balancer.nodes == ("haproxy",) and not fleet.load_balancer.pair


def test_a_host_can_be_a_node_on_its_bridge():
    def edit(values):
        values["loadBalancer"]["nodes"] = ["haproxy", "docker1"]
        values["loadBalancer"]["backups"] = []

    fleet = edited_fleet("prod", edit)
    conf = render_keepalived_conf(fleet.load_balancer, fleet, "docker1")
    assert "    interface brid0\n" in conf and "    unicast_src_ip 10.0.0.6\n" in conf
    assert "        10.0.0.30/24 dev brid0\n" in conf and "    priority 250\n" in conf


def test_router_ids_clash_only_on_overlapping_networks():
    prod = load_stack("prod")[1]
    assert router_id_clashes({"prod": prod, "copy": prod}) == [
        (
            "copy",
            "prod",
            LB + ".vrrp.routerId 30 is stack copy's too, on an overlapping network (10.0.0.0/24 "
            "and 10.0.0.0/24): give each pair its own router id",
        )
    ]
    other_id = edited_fleet("prod", lambda v: v["loadBalancer"].update(vrrp={"routerId": 31}))
    assert router_id_clashes({"prod": prod, "copy": other_id}) == []
    assert router_id_clashes({"prod": prod, "dev": load_stack("dev")[1]}) == []  # dev has one node
    assert router_id_clashes_with_committed("prod", prod) == []


def test_make_plan_refuses_a_router_id_another_committed_stack_uses(tmp_path):
    """staging as a pair on prod's network with prod's router id: make plan stops before writing."""
    (tmp_path / "Pulumi.prod.yaml").write_text(load_stack_text("prod"))
    (tmp_path / "Pulumi.copy.yaml").write_text(load_stack_text("prod"))
    fleet = load_stack("prod")[1]
    clashes = router_id_clashes_with_committed("prod", fleet, tmp_path)
    assert clashes == [
        LB + ".vrrp.routerId 30 is stack copy's too, on an overlapping network (10.0.0.0/24 and "
        "10.0.0.0/24): give each pair its own router id"
    ]


def load_stack_text(stack: str) -> str:
    from plan.run import ROOT

    return (ROOT / f"Pulumi.{stack}.yaml").read_text()


# -- L1: what each node's keepalived reads -----------------------------------------------------------


def test_each_node_gets_its_own_side_of_the_pair():
    fleet = load_stack("prod")[1]
    lb = fleet.load_balancer
    first, second = (render_keepalived_conf(lb, fleet, n) for n in ("haproxy", "haproxy2"))
    for conf, own, peer, priority in ((first, "10.0.0.10", "10.0.0.9", 254), (second, "10.0.0.9", "10.0.0.10", 250)):
        assert f"    unicast_src_ip {own}\n    unicast_peer {{\n        {peer}\n    }}\n" in conf
        assert f"    priority {priority}\n" in conf
        assert "    state BACKUP\n" in conf and "    nopreempt\n" in conf  # decided: no second move on return
        assert "    virtual_router_id 30\n    priority" in conf and "    advert_int 0.2\n" in conf
        assert "    vrrp_version 3\n" in conf and "authentication" not in conf
        assert "    garp_master_refresh 1\n" in conf  # a split that heals leaves no client on the old MAC
        assert f'    notify "{NOTIFY_SCRIPT}"\n' in conf
        assert "vrrp_track_process haproxy {\n    process haproxy\n    quorum 1\n}" in conf
    faster = edited_fleet("prod", lambda v: v["loadBalancer"].update(vrrp={"routerId": 30, "advertIntervalMs": 1050}))
    assert "    advert_int 1.05\n" in render_keepalived_conf(faster.load_balancer, faster, "haproxy")


def test_the_notify_script_names_both_sides_and_logs_to_the_socket_asked():
    fleet = load_stack("prod")[1]
    script = render_notify_script(fleet.load_balancer, fleet, "haproxy2")
    assert "arping -D -c 2 -w 2 -I lan0 10.0.0.30" in script
    assert "VRRP from haproxy (10.0.0.10) does not reach haproxy2" in script
    assert "  logger -t virtfleet-vrrp" in script
    lab = render_notify_script(fleet.load_balancer, fleet, "haproxy2", syslog_socket="/run/x y/log")
    assert "  logger --socket-errors=on -u '/run/x y/log' -t virtfleet-vrrp" in lab


# -- L2: the program ---------------------------------------------------------------------------------


def _command(rec, step):
    (command,) = [c for c in rec.children(step.urn) if c.type == COMMAND]
    return command


def test_each_node_installs_then_runs_vrrp_then_gets_the_same_config():
    fleet, rec = recording("prod")
    configs = {}
    for node in ("haproxy", "haproxy2"):
        install, vrrp, config = (
            rec.named(f"{node}-{s}", STEP) for s in ("haproxy-install", "haproxy-vrrp", "haproxy-config")
        )
        assert _command(rec, install).urn in vrrp.dependencies
        assert {_command(rec, install).urn, _command(rec, vrrp).urn} <= set(config.dependencies)
        assert vrrp.inputs["machine"] == node and not vrrp.inputs.get("secret")
        files = vrrp.inputs["files"]
        assert set(files) == {KEEPALIVED_CONF, NOTIFY_SCRIPT, SYSCTL_CONF}
        assert files[KEEPALIVED_CONF] == render_keepalived_conf(fleet.load_balancer, fleet, node)
        assert files[SYSCTL_CONF].endswith("net.ipv4.ip_nonlocal_bind = 1\n")
        peer = "10.0.0.9" if node == "haproxy" else "10.0.0.10"
        create = vrrp.inputs["createScript"]
        assert f'rule family="ipv4" source address="{peer}" protocol value="vrrp" accept' in create
        configs[node] = config.inputs["files"]
    assert configs["haproxy"] == configs["haproxy2"]
    (tier,) = rec.of_type("virtfleet:lb:HaproxyTier")
    assert tier.outputs["nodes"] == ["haproxy", "haproxy2"] and tier.outputs["virtualAddress"] == "10.0.0.30"
    assert tier.outputs["frontendUrl"] == "https://10.0.0.30/"


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_one_node_stacks_have_no_vrrp(stack):
    fleet, rec = recording(stack)
    assert [r.name for r in rec.of_type(STEP) if r.inputs.get("step") == "haproxy-vrrp"] == []
    (tier,) = rec.of_type("virtfleet:lb:HaproxyTier")
    assert tier.outputs["nodes"] == [fleet.load_balancer.node] and tier.outputs.get("virtualAddress") is None


# -- what a person sees: the topology and make diff ----------------------------------------------------


def test_the_topology_draws_the_pair_and_its_address():
    prod, dev = load_stack("prod")[1], load_stack("dev")[1]
    drawing = mermaid(prod)
    assert "HAProxy pair (keepalived)<br/>frontend 10.0.0.30:80<br/>VIP 10.0.0.30 (VRRP id 30)" in drawing, drawing
    assert drawing.count("tier -. runs on, VRRP master first .->") == 1
    assert drawing.count("tier -. runs on, VRRP backup .->") == 1
    dot = dot_source(prod)
    assert "VIP 10.0.0.30 (VRRP id 30)" in dot and 'label="runs on (VRRP backup)"' in dot, dot
    assert "VIP" not in mermaid(dev) and mermaid(dev).count("tier -. runs on .->") == 1


def test_make_diff_names_the_pair_as_a_feature():
    prod, staging = load_stack("prod")[1], load_stack("staging")[1]
    assert "balancer pair (VRRP virtual address)" in features(prod)["tier features"]
    assert "balancer pair (VRRP virtual address)" not in features(staging)["tier features"]
    # node: haproxy and nodes: [haproxy, haproxy2] compare as nodes, not as two unrelated keys
    changes = {c.path: (c.before, c.after) for c in model_changes(staging, prod)}
    assert changes["loadBalancer.nodes"] == (["haproxy"], ["haproxy", "haproxy2"]), changes
    assert "loadBalancer.node" not in changes and changes["loadBalancer.virtualAddress"] == (None, "10.0.0.30")

"""The topology drawings (plan/topology.py): SVG from Graphviz's real ``dot``, DOT source and Mermaid.

Every host, guest and backend of each committed stack must be in the SVG (as a text line of its
own) and in the Mermaid text; pending guests are the program's own ``pending_guests``, drawn
dashed and labelled pending. SVG tests need the real ``dot`` (Debian's graphviz; `real` marker).
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml
from conftest import STACKS, stack_values
from graphviz.quoting import quote
from support.tools import missing, require_tool

import components.guests
from components.program import pending_guests
from plan.run import ROOT, load_stack
from plan.topology import DOCS_SVG, _dot_label, _mermaid_text, docs_svg, dot_source, mermaid, render_svg

SVG = "{http://www.w3.org/2000/svg}"


def fleet_of(stack: str):
    return load_stack(stack)[1]


def svg_of(fleet) -> ET.Element:
    require_tool("dot")
    root = ET.fromstring(render_svg(dot_source(fleet)))
    assert root.tag == f"{SVG}svg"
    return root


def svg_nodes(root: ET.Element) -> dict[str, ET.Element]:
    """Graphviz gives every node and edge a <g> whose <title> is its DOT id (edges: 'a->b')."""
    return {g.find(f"{SVG}title").text: g for g in root.iter(f"{SVG}g") if g.get("class") in ("node", "edge")}


def texts(element: ET.Element) -> list[str]:
    return [t.text for t in element.iter(f"{SVG}text")]


def mermaid_nodes(text: str) -> dict[str, list[str]]:
    """Mermaid node id -> its label's lines (<br/> separated), for every node statement."""
    return {m.group(1): m.group(2).split("<br/>") for m in re.finditer(r'^\s*(\w+)(?:\[/?|\{\{)"([^"]*)"', text, re.M)}


@pytest.mark.real
@pytest.mark.parametrize("stack", STACKS)
def test_svg_shows_every_host_guest_bridge_and_backend(stack):
    fleet = fleet_of(stack)
    root = svg_of(fleet)
    nodes = svg_nodes(root)
    for host in fleet.hosts:
        lines = texts(nodes[f"host_{host.name}"])
        assert lines == [host.name, f"{host.address} · {host.os_family}", f"roles: {', '.join(host.roles)}"]
        for bridge in host.bridges:
            assert texts(nodes[f"bridge_{host.name}_{bridge.name}"])[0] == bridge.name
    for guest in fleet.guests:
        lines = texts(nodes[f"guest_{guest.name}"])
        assert lines[:2] == [guest.name, f"{guest.type} · {guest.network.ip}"]
        # drawn inside its host's cluster, hanging off its bridge
        assert f"bridge_{guest.host}_{guest.network.bridge}->guest_{guest.name}" in nodes
    lb = fleet.load_balancer
    tier = texts(nodes["tier"])
    assert f"frontend {lb.frontend.address}:{lb.frontend.port}" in tier
    assert f"stats {lb.stats_bind.address}:{lb.stats_bind.port}{lb.stats.uri}" in tier
    for name, label in [*((b, "backend") for b in lb.backends), *((b, "backup") for b in lb.backups)]:
        assert texts(nodes[f"tier->guest_{name}"]) == [label], name
    # every name is a text line of its own, so a reader (or a search) finds it
    all_text = texts(root)
    for name in [*(h.name for h in fleet.hosts), *(g.name for g in fleet.guests)]:
        assert name in all_text


@pytest.mark.parametrize("stack", STACKS)
def test_mermaid_shows_every_host_guest_and_backend(stack):
    fleet = fleet_of(stack)
    text = mermaid(fleet)
    assert "```mermaid\nflowchart LR\n" in text and text.endswith("```\n")
    nodes = mermaid_nodes(text)
    by_name = {lines[0]: node_id for node_id, lines in nodes.items()}
    for host in fleet.hosts:
        assert nodes[by_name[host.name]][1] == f"{host.address} · {host.os_family}"
    for guest in fleet.guests:
        assert nodes[by_name[guest.name]][1] == f"{guest.type} · {guest.network.ip}"
        assert re.search(rf"^\s*\w+ --- {by_name[guest.name]}$", text, re.M), guest.name
    lb = fleet.load_balancer
    for name in lb.backends:
        assert f"tier -->|backend| {by_name[name]}\n" in text
    for name in lb.backups:
        assert f"tier -.->|backup| {by_name[name]}\n" in text
    assert f"frontend {lb.frontend.address}:{lb.frontend.port}" in nodes["tier"]


MERMAID_CHECK = ROOT / "tests" / "mermaid"


def mermaid_parsed(text: str, tmp_path) -> dict:
    """What Mermaid's own parser (the npm package, under Node.js) reads from the Markdown file."""
    node = require_tool("node")
    if not (MERMAID_CHECK / "node_modules" / "mermaid").is_dir():
        missing("Mermaid's parser is not installed: npm ci --prefix tests/mermaid")
    path = tmp_path / "topology.md"
    path.write_text(text)
    result = subprocess.run(
        [node, str(MERMAID_CHECK / "parse.mjs"), str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"Mermaid does not parse it: {result.stderr}"
    return json.loads(result.stdout)


@pytest.mark.real
@pytest.mark.parametrize("stack", STACKS)
def test_mermaid_parses_with_mermaids_own_parser(stack, tmp_path):
    fleet = fleet_of(stack)
    parsed = mermaid_parsed(mermaid(fleet), tmp_path)
    assert parsed["type"] == "flowchart-v2"
    by_name = {v["text"].split("<br>")[0]: (node_id, v) for node_id, v in parsed["vertices"].items()}
    pending = set(pending_guests(fleet))
    for host in fleet.hosts:
        node_id, _ = by_name[host.name]
        subgraph = next(s for s in parsed["subgraphs"] if s["title"] == f"host {host.name}")
        guests = {by_name[g.name][0] for g in fleet.guests_on(host.name)}
        assert {node_id, *guests} <= set(subgraph["nodes"])
    for guest in fleet.guests:
        _, vertex = by_name[guest.name]
        assert vertex["text"].split("<br>")[1] == f"{guest.type} · {guest.network.ip}"
        assert guest.type in vertex["classes"]
        assert ("pending" in vertex["classes"]) == (guest.name in pending), guest.name
    lb = fleet.load_balancer
    edges = {(e["start"], e["end"]): e for e in parsed["edges"]}
    for name in lb.backends:
        assert edges[("tier", by_name[name][0])]["text"] == "backend"
    for name in lb.backups:
        edge = edges[("tier", by_name[name][0])]
        assert edge["text"] == "backup" and edge["stroke"] == "dotted"
    assert f"stats {lb.stats_bind.address}:{lb.stats_bind.port}{lb.stats.uri}" in parsed["vertices"]["tier"]["text"]


@pytest.mark.real
def test_mermaid_parser_refuses_a_broken_diagram(tmp_path):
    """The check above can fail: a dangling edge is a parse error."""
    broken = mermaid(fleet_of("dev")).replace("\n```\n", "\n  tier -->\n```\n")
    with pytest.raises(AssertionError, match="Mermaid does not parse it"):
        mermaid_parsed(broken, tmp_path)


def _shown_pending(fleet) -> tuple[set[str], set[str]]:
    """(guests the SVG draws pending, guests the Mermaid text draws pending)."""
    nodes = svg_nodes(svg_of(fleet))
    in_svg = set()
    for guest in fleet.guests:
        node = nodes[f"guest_{guest.name}"]
        dashed = node.find(f"{SVG}polygon").get("stroke-dasharray") is not None
        labelled = "pending" in texts(node)[-1]
        assert dashed == labelled, guest.name
        in_svg |= {guest.name} if labelled else set()
    text = mermaid(fleet)
    ids = {lines[0]: node_id for node_id, lines in mermaid_nodes(text).items()}
    classed = re.search(r"^\s*class ([\w,]+) pending$", text, re.M)
    in_class = set(classed.group(1).split(",")) if classed else set()
    in_mermaid = {g.name for g in fleet.guests if ids[g.name] in in_class}
    assert in_mermaid == {g.name for g in fleet.guests if "pending" in mermaid_nodes(text)[ids[g.name]][-1]}
    return in_svg, in_mermaid


@pytest.mark.real
def test_pending_guests_are_drawn_pending_and_no_others(monkeypatch):
    fleet = fleet_of("prod")
    in_svg, in_mermaid = _shown_pending(fleet)
    assert in_svg == in_mermaid == set(pending_guests(fleet)) == set()  # every guest type is deployed
    # A type without its component: its guests (only those) are drawn pending.
    monkeypatch.delitem(components.guests.GUEST_COMPONENTS, "virtualbox")
    in_svg, in_mermaid = _shown_pending(fleet)
    assert in_svg == in_mermaid == set(pending_guests(fleet)) == {"centos7vm1"}


@pytest.mark.real
def test_pending_follows_the_programs_list_of_deployable_types(monkeypatch):
    """No copy of the type list: take KVM's component away and the KVM guests turn pending."""
    fleet = fleet_of("prod")
    monkeypatch.delitem(components.guests.GUEST_COMPONENTS, "kvm")
    in_svg, in_mermaid = _shown_pending(fleet)
    kvm = {g.name for g in fleet.guests if g.type == "kvm"}
    assert kvm and kvm <= in_svg and in_svg == in_mermaid == set(pending_guests(fleet))


@pytest.mark.real
def test_protected_guests_are_labelled_and_drawn_thick():
    fleet = fleet_of("prod")
    nodes = svg_nodes(svg_of(fleet))
    for guest in fleet.guests:
        node = nodes[f"guest_{guest.name}"]
        protected = getattr(guest, "protect", False)
        assert ("protected" in texts(node)[-1]) == protected, guest.name
        assert (node.find(f"{SVG}polygon").get("stroke-width") == "2.5") == protected, guest.name


@pytest.mark.real
def test_labels_survive_quotes_and_backslashes_through_the_real_renderer():
    require_tool("dot")
    tricky = 'a"b\\c <d> #e'
    source = f"digraph g {{ n [label={quote(_dot_label([tricky, 'second']))}] }}"
    root = ET.fromstring(render_svg(source))
    assert texts(root) == [tricky, "second"]
    assert _mermaid_text([tricky]) == '"a#quot;b\\c #lt;d#gt; #35;e"'


def test_dot_source_is_stable():
    fleet = fleet_of("prod")
    assert dot_source(fleet) == dot_source(fleet_of("prod"))
    assert mermaid(fleet) == mermaid(fleet_of("prod"))


_VERSION = re.compile(r"<!-- Generated by graphviz version ([^\n]*)")


@pytest.mark.real
def test_committed_docs_diagram_is_current():
    """docs/topology-dev.svg is what `make diagram` writes now. Byte for byte when this machine's
    Graphviz is the one that drew it (as in CI); else every node, edge and label must match."""
    require_tool("dot")
    committed, fresh = DOCS_SVG.read_text(), docs_svg()
    hint = "docs/topology-dev.svg is stale: run `make diagram` and commit it"
    if _VERSION.search(committed).group(1) == _VERSION.search(fresh).group(1):
        assert committed == fresh, hint
    else:

        def content(svg: str) -> list[tuple[str, list[str]]]:
            return [(title, texts(g)) for title, g in svg_nodes(ET.fromstring(svg)).items()]

        assert content(committed) == content(fresh), hint


def test_a_guest_without_address_hangs_off_its_host(tmp_path):
    values = stack_values("dev")
    values["guests"].append({"name": "cache", "type": "docker", "host": "devbox", "image": "redis:7"})
    path = tmp_path / "Pulumi.extra.yaml"
    path.write_text(yaml.safe_dump({"config": {f"virtfleet:{k}": v for k, v in values.items()}}))
    fleet = load_stack("extra", path)[1]
    assert '\tguest_cache [label="cache\\ndocker · no address' in dot_source(fleet)
    assert "\t\thost_devbox -> guest_cache [" in dot_source(fleet)
    nodes = mermaid_nodes(mermaid(fleet))
    cache = next(node_id for node_id, lines in nodes.items() if lines[0] == "cache")
    assert nodes[cache][1] == "docker · no address"
    assert f"    h0 --- {cache}\n" in mermaid(fleet)

"""The stack drawn from its validated ``Fleet``: Graphviz DOT (rendered to SVG by ``dot``) and Mermaid.

Both drawings come from one list of facts (``facts``), so they cannot disagree with each other,
and the facts come from the model, so they cannot disagree with the stack. Which guests are
pending (declared, not deployable yet) is the program's own answer, ``pending_guests``.

``python -m plan.topology --write-docs`` regenerates the dev stack's diagram under ``docs/``
(``make diagram``); a test fails when the committed one is not current.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import graphviz

from components.model import Fleet
from components.program import pending_guests

from .run import ROOT, load_stack

# Fill colours per guest type (Graphviz and Mermaid alike); a type without one is drawn grey.
TYPE_COLOURS = {
    "kvm": "#cfe2ff",
    "xen": "#ffe5b4",
    "openvz": "#d1f2d8",
    "virtualbox": "#e8d5f5",
    "docker": "#c7eef0",
}
OTHER_COLOUR = "#e0e0e0"
DOCS_STACK = "dev"
DOCS_SVG = ROOT / "docs" / f"topology-{DOCS_STACK}.svg"


@dataclass(frozen=True)
class GuestFact:
    name: str
    type: str
    host: str
    address: str | None
    bridge: str | None
    states: tuple[str, ...]  # pending, protected, retains disk, paused/stopped


@dataclass(frozen=True)
class HostFact:
    name: str
    address: str
    os_family: str
    roles: tuple[str, ...]
    bridges: tuple[tuple[str, str, str], ...]  # (name, address/prefix, interface)
    guests: tuple[GuestFact, ...]


@dataclass(frozen=True)
class TierFact:
    nodes: tuple[str, ...]
    virtual: str | None  # a pair's shared address and VRRP router id
    frontend: str
    https: str | None
    stats: str | None
    backends: tuple[str, ...]
    backups: tuple[str, ...]


@dataclass(frozen=True)
class Facts:
    domain: str
    hosts: tuple[HostFact, ...]
    tier: TierFact | None
    types: tuple[str, ...] = field(default=())  # guest types present, in a stable order


def guest_states(guest, pending: set[str]) -> tuple[str, ...]:
    states = []
    if guest.name in pending:
        states.append("pending")
    if getattr(guest, "protect", False):
        states.append("protected")
    if getattr(guest, "retain_disk", False):
        states.append("retains disk")
    if guest.power_state != "running":
        states.append(guest.power_state)
    return tuple(states)


def facts(fleet: Fleet) -> Facts:
    """What the drawings show, read off the validated model."""
    pending = set(pending_guests(fleet))
    hosts = tuple(
        HostFact(
            name=host.name,
            address=host.address,
            os_family=host.os_family,
            roles=tuple(str(r) for r in host.roles),
            bridges=tuple((b.name, str(b.address), b.interface) for b in host.bridges),
            guests=tuple(
                GuestFact(
                    name=g.name,
                    type=g.type,
                    host=g.host,
                    address=str(g.network.ip) if g.network else None,
                    bridge=g.network.bridge if g.network else None,
                    states=guest_states(g, pending),
                )
                for g in fleet.guests_on(host.name)
            ),
        )
        for host in fleet.hosts
    )
    tier = None
    if (lb := fleet.load_balancer) is not None:
        tier = TierFact(
            nodes=lb.nodes,
            virtual=f"VIP {lb.virtual_address} (VRRP id {lb.vrrp.router_id})" if lb.pair else None,
            frontend=f"{lb.frontend.address}:{lb.frontend.port}",
            https=f"{lb.frontend.address}:{lb.https.port}" if lb.https.enabled else None,
            stats=f"{lb.stats_bind.address}:{lb.stats_bind.port}{lb.stats.uri}" if lb.stats.enabled else None,
            backends=lb.backends,
            backups=lb.backups,
        )
    order = [*TYPE_COLOURS, *sorted({g.type for g in fleet.guests} - TYPE_COLOURS.keys())]
    types = tuple(t for t in order if any(g.type == t for g in fleet.guests))
    return Facts(fleet.domain, hosts, tier, types)


def _colour(kind: str) -> str:
    return TYPE_COLOURS.get(kind, OTHER_COLOUR)


def _host_lines(host: HostFact) -> list[str]:
    return [host.name, f"{host.address} · {host.os_family}", f"roles: {', '.join(host.roles)}"]


def _guest_lines(guest: GuestFact) -> list[str]:
    lines = [guest.name, f"{guest.type} · {guest.address or 'no address'}"]
    if guest.states:
        lines.append(", ".join(guest.states))
    return lines


def _tier_lines(tier: TierFact) -> list[str]:
    lines = ["HAProxy" if len(tier.nodes) == 1 else "HAProxy pair (keepalived)", f"frontend {tier.frontend}"]
    if tier.virtual:
        lines.append(tier.virtual)
    if tier.https:
        lines.append(f"https {tier.https}")
    lines.append(f"stats {tier.stats}" if tier.stats else "stats off")
    return lines


def _dot_label(lines: list[str]) -> str:
    # The graphviz package quotes the label; a backslash would start a DOT escape, so double it.
    return "\\n".join(line.replace("\\", "\\\\") for line in lines)


def dot_graph(fleet: Fleet) -> graphviz.Digraph:
    f = facts(fleet)
    dot = graphviz.Digraph("virtfleet", comment=f"virtfleet topology of {f.domain}")
    dot.attr(rankdir="LR", fontname="Helvetica", fontsize="11", label=f.domain, labelloc="t")
    dot.attr("node", fontname="Helvetica", fontsize="10", style="filled", shape="box")
    dot.attr("edge", fontname="Helvetica", fontsize="9")
    for host in f.hosts:
        with dot.subgraph(name=f"cluster_host_{host.name}") as box:
            box.attr(label=f"host {host.name}", style="rounded", color="#555555")
            host_id = f"host_{host.name}"
            box.node(host_id, _dot_label(_host_lines(host)), shape="box3d", fillcolor="#f5f5f5")
            for name, address, interface in host.bridges:
                bridge_id = f"bridge_{host.name}_{name}"
                label = _dot_label([name, f"{address} via {interface}"])
                box.node(bridge_id, label, shape="hexagon", fillcolor="white")
                box.edge(host_id, bridge_id, arrowhead="none")
            for guest in host.guests:
                pending = "pending" in guest.states
                box.node(
                    f"guest_{guest.name}",
                    _dot_label(_guest_lines(guest)),
                    fillcolor=_colour(guest.type),
                    style="filled,dashed" if pending else "filled",
                    penwidth="2.5" if "protected" in guest.states else "1",
                )
                anchor = f"bridge_{host.name}_{guest.bridge}" if guest.bridge else host_id
                box.edge(anchor, f"guest_{guest.name}", arrowhead="none", color="#888888")
    if f.tier is not None:
        tier = f.tier
        dot.node("tier", _dot_label(_tier_lines(tier)), shape="component", fillcolor="#fff3b0")
        for i, node in enumerate(tier.nodes):
            node_id = f"host_{node}" if any(h.name == node for h in f.hosts) else f"guest_{node}"
            label = "runs on" if len(tier.nodes) == 1 else ("runs on (VRRP master first)", "runs on (VRRP backup)")[i]
            dot.edge("tier", node_id, label=label, style="dotted", arrowhead="odot")
        for name in tier.backends:
            dot.edge("tier", f"guest_{name}", label="backend", color="#1f6feb")
        for name in tier.backups:
            dot.edge("tier", f"guest_{name}", label="backup", style="dashed", color="#9a6700")
    with dot.subgraph(name="cluster_legend") as legend:
        legend.attr(label="guest types", style="dotted")
        for kind in f.types:
            legend.node(f"legend_{kind}", kind, fillcolor=_colour(kind), shape="box")
    return dot


def dot_source(fleet: Fleet) -> str:
    return dot_graph(fleet).source


def render_svg(source: str) -> str:
    """SVG from DOT text through Graphviz's own ``dot`` (raises graphviz.ExecutableNotFound without it)."""
    return graphviz.Source(source).pipe(format="svg", encoding="utf-8")


def _mermaid_text(lines: list[str]) -> str:
    # Inside "..." Mermaid takes entity codes: '#' starts one, so it goes first.
    escaped = [
        line.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") for line in lines
    ]
    return '"' + "<br/>".join(escaped) + '"'


def mermaid(fleet: Fleet) -> str:
    """A Mermaid flowchart (renders on code-hosting pages) of the same facts, in a Markdown file."""
    f = facts(fleet)
    ids: dict[str, str] = {}  # Mermaid ids are plain words: number everything
    out = ["flowchart LR"]
    classes: dict[str, list[str]] = {}
    for h, host in enumerate(f.hosts):
        host_id = ids[f"host {host.name}"] = f"h{h}"
        out.append(f'  subgraph host{h}["host {host.name}"]')
        out.append(f"    {host_id}[{_mermaid_text(_host_lines(host))}]")
        for b, (name, address, interface) in enumerate(host.bridges):
            bridge_id = ids[f"bridge {host.name} {name}"] = f"h{h}b{b}"
            out.append(f"    {bridge_id}{{{{{_mermaid_text([name, f'{address} via {interface}'])}}}}}")
            out.append(f"    {host_id} --- {bridge_id}")
        for guest in host.guests:
            guest_id = ids[f"guest {guest.name}"] = f"g{sum(k.startswith('guest ') for k in ids)}"
            out.append(f"    {guest_id}[{_mermaid_text(_guest_lines(guest))}]")
            anchor = ids[f"bridge {host.name} {guest.bridge}"] if guest.bridge else host_id
            out.append(f"    {anchor} --- {guest_id}")
            classes.setdefault(guest.type, []).append(guest_id)
            for state in ("pending", "protected"):
                if state in guest.states:
                    classes.setdefault(state, []).append(guest_id)
        out.append("  end")
    if f.tier is not None:
        tier = f.tier
        out.append(f"  tier[/{_mermaid_text(_tier_lines(tier))}/]")
        for i, name in enumerate(tier.nodes):
            node = ids.get(f"host {name}") or ids[f"guest {name}"]
            label = "runs on" if len(tier.nodes) == 1 else ("runs on, VRRP master first", "runs on, VRRP backup")[i]
            out.append(f"  tier -. {label} .-> {node}")
        out += [f"  tier -->|backend| {ids[f'guest {name}']}" for name in tier.backends]
        out += [f"  tier -.->|backup| {ids[f'guest {name}']}" for name in tier.backups]
        classes["tier"] = ["tier"]
    styles = {kind: f"fill:{_colour(kind)},stroke:#555" for kind in f.types}
    styles |= {"pending": "stroke-dasharray:5 5", "protected": "stroke-width:3px", "tier": "fill:#fff3b0"}
    for name, style in styles.items():
        if name in classes:
            out.append(f"  classDef {name} {style}")
            out.append(f"  class {','.join(classes[name])} {name}")
    legend = ", ".join(f"{kind} ({_colour(kind)})" for kind in f.types) or "none"
    return (
        f"# Topology of {f.domain}\n\n"
        "Generated by `make plan` from the validated stack; dashed: pending (declared, not deployed yet), "
        f"thick border: protected.\n\nGuest types: {legend}.\n\n```mermaid\n" + "\n".join(out) + "\n```\n"
    )


def write_topology(fleet: Fleet, target: Path) -> list[str]:
    """Write topology.dot, topology.md and, when Graphviz's dot is installed, topology.svg; return their names."""
    source = dot_source(fleet)
    (target / "topology.dot").write_text(source)
    (target / "topology.md").write_text(mermaid(fleet))
    try:
        (target / "topology.svg").write_text(render_svg(source))
    except graphviz.ExecutableNotFound:
        return ["topology.dot", "topology.md"]
    return ["topology.svg", "topology.dot", "topology.md"]


def docs_svg() -> str:
    """The dev stack's diagram as committed under docs/."""
    _config, fleet = load_stack(DOCS_STACK)
    return render_svg(dot_source(fleet))


def main(argv: list[str]) -> int:
    if argv != ["--write-docs"]:
        print("usage: python -m plan.topology --write-docs   (regenerates docs/topology-dev.svg)", file=sys.stderr)
        return 2
    DOCS_SVG.parent.mkdir(exist_ok=True)
    DOCS_SVG.write_text(docs_svg())
    print(f"wrote {DOCS_SVG.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

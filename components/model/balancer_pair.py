"""Two balancer nodes sharing a virtual address through VRRP: where each node meets the frontend's network.

A node of the pair is a host (its bridge on that network) or a KVM or Xen guest (its one NIC, which
virtfleet names ``lan0`` in both; kvm_seed.NIC): the interface keepalived moves the address on must be
known when the files are rendered. The rules here check what keepalived needs: the virtual address on
the nodes' common network and free, the nodes distinct, the VRRP settings present.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from .errors import Problem, key_path
from .guests import Guest, KvmGuest, XenGuest
from .hosts import Host
from .lb import VRRP_PRIORITIES, LoadBalancer

GUEST_NIC = "lan0"  # components.guests.kvm_seed.NIC: cloud-init's set-name and dracut's ifname=
PAIR_GUEST_TYPES = (KvmGuest, XenGuest)


@dataclass(frozen=True)
class NodeLink:
    """One balancer node on the frontend's network: keepalived's interface, the node's own address."""

    name: str
    interface: str
    address: IPv4Address
    network: IPv4Network
    priority: int


def node_link(name: str, hosts: dict[str, Host], guests: dict[str, Guest], near: IPv4Address) -> NodeLink | str:
    """The node's link on the network holding ``near`` (the virtual address), or why it has none."""
    if name in hosts:
        for bridge in hosts[name].bridges:
            if near in bridge.address.network:
                return NodeLink(name, bridge.name, bridge.address.ip, bridge.address.network, 0)
        return f"host {name} has no bridge on the network of {near}"
    guest = guests[name]
    if not isinstance(guest, PAIR_GUEST_TYPES):
        return (
            f"a {guest.type} guest cannot be one of two balancer nodes: keepalived needs the node's interface "
            f"name, which virtfleet knows for hosts (their bridge) and kvm/xen guests ({GUEST_NIC})"
        )
    host = hosts.get(guest.host)
    bridge = host.bridge(guest.network.bridge) if host is not None and guest.network is not None else None
    if bridge is None:  # the guest's own rules report the missing host or bridge
        return f"guest {name}'s bridge is unknown"
    if near not in bridge.address.network:
        return f"guest {name} is on {bridge.address.network}, not on the network of {near}"
    return NodeLink(name, GUEST_NIC, guest.network.ip, bridge.address.network, 0)


def pair_links(lb: LoadBalancer, hosts: dict[str, Host], guests: dict[str, Guest]) -> list[NodeLink]:
    """Both nodes' links, in ``nodes`` order, with their VRRP priorities (for a validated stack)."""
    links = []
    for name, priority in zip(lb.nodes, VRRP_PRIORITIES, strict=True):
        link = node_link(name, hosts, guests, lb.virtual_address)
        assert isinstance(link, NodeLink), link  # load_fleet refused the stack otherwise
        links.append(NodeLink(link.name, link.interface, link.address, link.network, priority))
    return links


def pair_rules(lb: LoadBalancer, by_host: dict[str, Host], by_guest: dict[str, Guest]) -> list[Problem]:
    """The pair's own rules (the nodes' existence and family are load_balancer_rules')."""
    if not lb.pair:
        return [
            Problem(key_path("loadBalancer", key), "only with two nodes: one balancer has no address to share")
            for key, value in (("virtualAddress", lb.virtual_address), ("vrrp", lb.vrrp))
            if value is not None
        ]
    problems = [
        Problem(key_path("loadBalancer", key), f"is required with two nodes: {why}")
        for key, value, why in (
            ("virtualAddress", lb.virtual_address, "the address clients use, which moves between them"),
            ("vrrp", lb.vrrp, "at least {routerId: 1-255}, unique on their network"),
        )
        if value is None
    ]
    if lb.nodes[0] == lb.nodes[1]:
        problems.append(
            Problem(key_path("loadBalancer", "nodes", 1), "is nodes[0] again: two distinct nodes", lb.nodes[1])
        )
    vip = lb.virtual_address
    known = [n for n in lb.nodes if n in by_host or n in by_guest]
    if vip is None or len(known) != 2 or problems:
        return problems
    links = []
    for i, name in enumerate(lb.nodes):
        link = node_link(name, by_host, by_guest, vip)
        if isinstance(link, str):
            problems.append(Problem(key_path("loadBalancer", "nodes", i), link, name))
        else:
            links.append(link)
    if problems:
        return problems
    path = key_path("loadBalancer", "virtualAddress")
    network = links[0].network
    if links[1].network != network:
        problems.append(
            Problem(path, f"the nodes are on {links[0].network} and {links[1].network}: one network", str(vip))
        )
    elif vip in (network.network_address, network.broadcast_address):
        problems.append(Problem(path, f"is the network's or the broadcast address of {network}", str(vip)))
    else:
        owner = _taken(vip, by_host, by_guest)
        if owner:
            problems.append(Problem(path, f"is already {owner}: the virtual address must be free", str(vip)))
    frontend = lb.frontend.address
    if not frontend.is_unspecified and frontend != vip:
        problems.append(
            Problem(
                key_path("loadBalancer", "frontend", "address"),
                f"must be the virtual address ({vip}) or 0.0.0.0: both nodes bind the same configuration, "
                "and clients reach the pair at the virtual address",
                str(frontend),
            )
        )
    return problems


def _taken(address: IPv4Address, by_host: dict[str, Host], by_guest: dict[str, Guest]) -> str | None:
    for host in by_host.values():
        if str(address) == host.address:
            return f"host {host.name}'s address"
        for bridge in host.bridges:
            if address == bridge.address.ip:
                return f"host {host.name}'s address on {bridge.name}"
            if address == bridge.gateway:
                return f"the gateway of host {host.name}'s {bridge.name}"
    for guest in by_guest.values():
        if guest.network is not None and guest.network.ip == address:
            return f"guest {guest.name}'s address"
    return None


def router_id_clashes(pairs: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Stacks whose balancer pairs share a network and a VRRP router id: their keepalived instances would
    take each other's adverts. ``pairs``: stack name -> its validated Fleet; (stack, stack, why) each."""
    seen: list[tuple[str, IPv4Network, int]] = []
    clashes: list[tuple[str, str, str]] = []
    for stack, fleet in sorted(pairs.items()):
        lb = fleet.load_balancer
        if lb is None or not lb.pair:
            continue
        network = pair_links(lb, {h.name: h for h in fleet.hosts}, {g.name: g for g in fleet.guests})[0].network
        for other, other_network, router_id in seen:
            if router_id == lb.vrrp.router_id and network.overlaps(other_network):
                clashes.append(
                    (
                        other,
                        stack,
                        f"{key_path('loadBalancer', 'vrrp', 'routerId')} {router_id} is stack {other}'s too, on "
                        f"an overlapping network ({other_network} and {network}): give each pair its own router id",
                    )
                )
        seen.append((stack, network, lb.vrrp.router_id))
    return clashes

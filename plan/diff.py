"""``python -m plan.diff staging prod`` (``make diff FROM=staging TO=prod``): two stacks' models compared.

Both stacks are validated first, then compared as the model sees them (defaults filled in, so a
value written out and the same value left to its default are no difference). Hosts, guests and
bridges are matched by name, so a reordered list is no difference either; paths read
``virtfleet:guests[web1].memoryMiB``. A summary follows: which guest types, host roles and tier
features one stack has and the other lacks. Exit 0 when both stacks are valid, whatever differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from components.model import Fleet, FleetConfigError
from components.model.errors import NAMESPACE

from .run import ROOT, load_stack


@dataclass(frozen=True)
class Change:
    path: str
    before: Any  # MISSING when only in the second stack
    after: Any  # MISSING when only in the first


MISSING = object()


def model_tree(fleet: Fleet) -> dict[str, Any]:
    """The model as plain data with camelCase keys, as a stack file spells them."""
    # serialize_as_any: guests are dumped as their own type (KvmGuest's protect...), not as the base Guest.
    tree = fleet.model_dump(mode="json", by_alias=True, serialize_as_any=True)
    if fleet.load_balancer is not None:  # `node: a` and `nodes: [a]` are one balancer: compare the nodes
        tree["loadBalancer"].pop("node")
        tree["loadBalancer"]["nodes"] = list(fleet.load_balancer.nodes)
    return tree


def _named_lists(a: Any, b: Any) -> bool:
    """Both lists, not both empty, and every entry of either a mapping with a name."""
    if not (isinstance(a, list) and isinstance(b, list)) or not (a or b):
        return False
    return all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in [*a, *b])


def compare(a: Any, b: Any, path: str) -> Iterator[Change]:
    """Changes from a to b; named lists (hosts, guests, bridges) are matched by name."""
    if a is None and isinstance(b, dict):  # an optional section set only in b (loadBalancer, jumpHost)
        yield Change(path, MISSING, b)
    elif b is None and isinstance(a, dict):
        yield Change(path, a, MISSING)
    elif isinstance(a, dict) and isinstance(b, dict):
        yield from _compare_entries(a, b, lambda key: f"{path}.{key}" if path else key)
    elif _named_lists(a, b):
        by_a, by_b = {i["name"]: i for i in a}, {i["name"]: i for i in b}
        yield from _compare_entries(by_a, by_b, lambda name: f"{path}[{name}]")
    elif a != b:
        yield Change(path, a, b)


def _compare_entries(a: dict, b: dict, path_of: Callable[[str], str]) -> Iterator[Change]:
    for key in [*a, *(k for k in b if k not in a)]:
        if key not in a:
            yield Change(path_of(key), MISSING, b[key])
        elif key not in b:
            yield Change(path_of(key), a[key], MISSING)
        else:
            yield from compare(a[key], b[key], path_of(key))


def model_changes(a: Fleet, b: Fleet) -> list[Change]:
    tree_a, tree_b = model_tree(a), model_tree(b)
    return list(compare(tree_a, tree_b, ""))


def features(fleet: Fleet) -> dict[str, set[str]]:
    """What a stack uses, by kind: what a reviewer checks before promoting a change."""
    lb = fleet.load_balancer
    tier: set[str] = set()
    if lb is not None:
        for node in lb.nodes:
            tier.add(f"balancer on {'a host' if any(h.name == node for h in fleet.hosts) else 'a guest'}")
        tier |= {"load balancer", f"balance {lb.balance}", f"logs over {lb.log_transport}"}
        tier |= {"balancer pair (VRRP virtual address)"} if lb.pair else set()
        tier |= {"https"} if lb.https.enabled else set()
        tier |= {"https redirect"} if lb.https.enabled and lb.https.redirect else set()
        tier |= {"stats page"} if lb.stats.enabled else set()
        tier |= {"sticky sessions"} if lb.sticky_cookie else set()
        tier |= {"backup servers"} if lb.backups else set()
        tier |= {"timeout overrides"} if lb.timeouts_ms else set()
    guests: set[str] = set()
    for guest in fleet.guests:
        guests |= {"protected guests"} if getattr(guest, "protect", False) else set()
        guests |= {"retained disks"} if getattr(guest, "retain_disk", False) else set()
        guests |= {"kickstart installer"} if getattr(guest, "install", None) is not None else set()
        guests |= {f"{guest.power_state} guests"} if guest.power_state != "running" else set()
    access = {"ssh agent" if fleet.ssh.use_agent else "ssh key"}
    access |= {"jump host"} if fleet.ssh.jump_host else set()
    access |= {"pinned host keys"} if any(h.host_key for h in fleet.hosts) else set()
    return {
        "guest types": {g.type for g in fleet.guests},
        "host roles": {str(r) for h in fleet.hosts for r in h.roles},
        "host OS families": {h.os_family for h in fleet.hosts},
        "tier features": tier,
        "guest features": guests,
        "access": access,
    }


def feature_gaps(a: Fleet, b: Fleet) -> dict[str, tuple[list[str], list[str]]]:
    """Per kind: (only in a, only in b), for the kinds where the two differ."""
    fa, fb = features(a), features(b)
    return {kind: (sorted(fa[kind] - fb[kind]), sorted(fb[kind] - fa[kind])) for kind in fa if fa[kind] != fb[kind]}


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if not isinstance(value, str) else value


def _summary(value: Any) -> str:
    """A short description of a whole host, guest or bridge that exists on one side only."""
    if isinstance(value, dict) and "name" in value:
        facts = [f"{k} {_show(value[k])}" for k in ("type", "host", "address") if value.get(k) is not None]
        if value.get("roles"):
            facts.append(f"roles {', '.join(value['roles'])}")
        if value.get("network"):
            facts.append(f"ip {value['network']['ip']} on {value['network']['bridge']}")
        return ", ".join(facts)
    return _show(value)


def report(name_a: str, a: Fleet, name_b: str, b: Fleet) -> list[str]:
    changes = model_changes(a, b)
    gaps = feature_gaps(a, b)
    lines = [f"stack diff: {name_a} -> {name_b}"]
    if not changes and not gaps:
        return [*lines, "no difference: the two stacks' models are the same"]
    for title, chosen in (
        (f"only in {name_a}", [c for c in changes if c.after is MISSING]),
        (f"only in {name_b}", [c for c in changes if c.before is MISSING]),
        ("changed", [c for c in changes if MISSING not in (c.before, c.after)]),
    ):
        if not chosen:
            continue
        lines += ["", f"{title}:"]
        for change in chosen:
            key = f"{NAMESPACE}:{change.path}"
            if change.before is MISSING:
                lines.append(f"  {key}  ({_summary(change.after)})")
            elif change.after is MISSING:
                lines.append(f"  {key}  ({_summary(change.before)})")
            else:
                lines.append(f"  {key}: {_show(change.before)} -> {_show(change.after)}")
    if gaps:
        lines += ["", "what one has and the other lacks:"]
        for kind, (only_a, only_b) in gaps.items():
            shown_a, shown_b = ", ".join(only_a) or "-", ", ".join(only_b) or "-"
            lines.append(f"  {kind}: only {name_a}: {shown_a}; only {name_b}: {shown_b}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make diff", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack_from", metavar="FROM", help="stack name (reads Pulumi.<FROM>.yaml)")
    parser.add_argument("stack_to", metavar="TO", help="stack name (reads Pulumi.<TO>.yaml)")
    args = parser.parse_args(argv)
    fleets = []
    for stack in (args.stack_from, args.stack_to):
        path = ROOT / f"Pulumi.{stack}.yaml"
        if not path.is_file():
            print(f"make diff: no stack file {path}", file=sys.stderr)
            return 2
        try:
            fleets.append(load_stack(stack, path)[1])
        except FleetConfigError as err:
            print(f"make diff: stack {stack} ({path.name}) is invalid.\n{err}", file=sys.stderr)
            return 1
    print("\n".join(report(args.stack_from, fleets[0], args.stack_to, fleets[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

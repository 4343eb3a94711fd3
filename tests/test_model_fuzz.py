"""L1: random configurations only ever raise the model's own error type, with a path on every problem."""

from __future__ import annotations

import copy
import ipaddress

from conftest import stack_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.model import FleetConfigError, load_fleet

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
KEYS = st.sampled_from(["domain", "ssh", "hosts", "guests", "loadBalancer", "statsPassword", "sshPrivateKey", "x"])
PROD = stack_values("prod")


def _check(config: dict, secret_keys: set[str]) -> None:
    try:
        load_fleet(config, secret_keys)
    except FleetConfigError as err:
        assert err.problems
        assert all(p.path.startswith("virtfleet:") and p.message for p in err.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, JSON, max_size=6), st.sets(KEYS, max_size=3))
def test_arbitrary_config_raises_only_fleet_errors(config, secret_keys):
    _check(config, secret_keys)


def _leaves(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    yield path


LEAVES = list(_leaves(PROD))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(LEAVES), JSON), min_size=1, max_size=4))
def test_mutated_prod_raises_only_fleet_errors(mutations):
    """Replace random parts of a valid stack with random values: near-valid configs reach the rules."""
    config = copy.deepcopy(PROD)
    for path, value in mutations:
        if not path:
            continue
        target = config
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced the parent
    _check(config, {"sshPrivateKey"})


# Oracles: random changes whose right answer the test computes itself, from the stack it changed. A
# dropped or loosened rule fails these (the tests above only check the form of the errors raised).
def _load(config: dict) -> list:
    """The problems of ``config`` ([] when it loads)."""
    try:
        load_fleet(config, {"sshPrivateKey"})
    except FleetConfigError as err:
        return err.problems
    return []


def _index(values: dict, kind: str, name: str) -> int:
    return next(i for i, entry in enumerate(values[kind]) if entry["name"] == name)


SUBNET = ipaddress.ip_network("10.0.0.0/24")  # prod's LAN, where the addresses are drawn
# guests whose address nothing else refers to (the balancer nodes' are each other's VRRP peers)
MOVABLE = [g["name"] for g in PROD["guests"] if g.get("network") and g["name"] not in PROD["loadBalancer"]["nodes"]]
VIRTUAL = ipaddress.ip_address(PROD["loadBalancer"]["virtualAddress"])  # the pair's: free, but not for a guest


# every address some rule is about, so each rule's edge is drawn, not only hoped for
SPECIAL = sorted(
    {SUBNET.network_address, SUBNET.broadcast_address, SUBNET.network_address - 1, SUBNET.broadcast_address + 1}
    | {ipaddress.ip_interface(b["address"]).ip for h in PROD["hosts"] for b in h["bridges"]}
    | {ipaddress.ip_address(b["gateway"]) for h in PROD["hosts"] for b in h["bridges"]}
    | {ipaddress.ip_address(g["network"]["ip"]) for g in PROD["guests"] if g.get("network")}
    | {VIRTUAL}
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(MOVABLE),
    st.sampled_from(SPECIAL) | st.integers(int(SUBNET[0]) - 4, int(SUBNET[-1]) + 4).map(ipaddress.ip_address),
)
def test_a_guest_address_is_accepted_exactly_when_it_is_free_in_its_subnet(name, ip):
    config = copy.deepcopy(PROD)
    entry = config["guests"][_index(config, "guests", name)]
    entry["network"]["ip"] = str(ip)
    host = next(h for h in config["hosts"] if h["name"] == entry["host"])
    bridge = ipaddress.ip_interface(host["bridges"][0]["address"])
    gateway = ipaddress.ip_address(host["bridges"][0]["gateway"])
    taken = {ipaddress.ip_address(g["network"]["ip"]) for g in config["guests"] if g.get("network") and g is not entry}
    taken |= {ipaddress.ip_interface(b["address"]).ip for h in config["hosts"] for b in h["bridges"]}
    problems = _load(config)
    path = f"virtfleet:guests[{_index(config, 'guests', name)}].network.ip"
    subnet = bridge.network  # the guest's own host's bridge (the oracle does not assume prod's LAN)
    if ip not in subnet:
        expected = "is outside bridge"
    elif ip in (subnet.network_address, subnet.broadcast_address):
        expected = "network address" if ip == subnet.network_address else "broadcast address"
    elif ip == bridge.ip:
        expected = "own address"
    elif ip == gateway:
        expected = "gateway"
    elif ip in taken:
        expected = "is already used"
    elif ip == VIRTUAL:  # reported at the pair's address, the key that takes it from the guest
        assert [(p.path, p.message) for p in problems] == [
            (
                "virtfleet:loadBalancer.virtualAddress",
                f"is already guest {name}'s address: the virtual address must be free",
            )
        ]
        return
    else:
        assert problems == [], problems
        return
    assert problems, f"{ip} for {name} was accepted; expected a problem saying {expected!r}"
    said = [p for p in problems if expected in p.message]
    # a duplicate is reported at the later of the two entries, which may be the other one
    assert said and (expected == "is already used" or said[0].path == path), problems


KVM_GUESTS = [g["name"] for g in PROD["guests"] if g["type"] == "kvm"]


def _near(data, edge: float, low: int, high: int) -> int:
    """A value at one of ``edge``'s sides (where a > turned >= shows) or anywhere in [low, high]."""
    sides = sorted({min(max(int(edge) + d, low), high) for d in (-1, 0, 1, 2)})
    return data.draw(st.sampled_from(sides) | st.integers(low, high))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KVM_GUESTS), st.data())
def test_capacity_is_refused_exactly_when_a_host_is_overcommitted(name, data):
    config = copy.deepcopy(PROD)
    entry = config["guests"][_index(config, "guests", name)]
    h = _index(config, "hosts", entry["host"])
    capacity = config["hosts"][h]["capacity"]
    others = [g for g in config["guests"] if g["host"] == entry["host"] and g is not entry]
    memory_limit = capacity["memoryMiB"] * capacity.get("memoryOvercommit", 1.0)
    vcpu_limit = capacity["cpuThreads"] * capacity.get("cpuOvercommit", 4.0)
    memory_edge = memory_limit - sum(g.get("memoryMiB", 1024) for g in others)
    vcpu_edge = vcpu_limit - sum(g.get("vcpus", 1) for g in others)
    vcpus = data.draw(st.sampled_from([capacity["cpuThreads"], capacity["cpuThreads"] + 1]) | st.just(None))
    entry.update(
        memoryMiB=_near(data, memory_edge, 16, int(memory_limit * 2)),
        vcpus=vcpus or _near(data, vcpu_edge, 1, int(vcpu_limit * 2)),
    )
    vcpus = entry["vcpus"]
    placed = [*others, entry]
    problems = {p.path: p.message for p in _load(config)}
    expected = set()
    if sum(g.get("memoryMiB", 1024) for g in placed) > memory_limit:
        expected.add(f"virtfleet:hosts[{h}].capacity.memoryMiB")
    if sum(g.get("vcpus", 1) for g in placed) > vcpu_limit:
        expected.add(f"virtfleet:hosts[{h}].capacity.cpuThreads")
    if vcpus > capacity["cpuThreads"]:
        expected.add(f"virtfleet:guests[{_index(config, 'guests', name)}].vcpus")
    assert set(problems) == expected, problems


ENTRIES = [("hosts", h["name"]) for h in PROD["hosts"]] + [("guests", g["name"]) for g in PROD["guests"]]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ENTRIES), st.sampled_from(ENTRIES))
def test_a_name_used_twice_is_reported_at_its_second_use(first, second):
    """Hosts and guests share one namespace (both become /etc/hosts entries and DNS names)."""
    if first == second:
        return
    config = copy.deepcopy(PROD)
    name = config[first[0]][_index(config, *first)]["name"]
    config[second[0]][_index(config, *second)]["name"] = name
    order = [(kind, i) for kind in ("hosts", "guests") for i in range(len(config[kind]))]
    places = [(first[0], _index(PROD, *first)), (second[0], _index(PROD, *second))]
    later = max(places, key=order.index)
    said = [p for p in _load(config) if p.path == f"virtfleet:{later[0]}[{later[1]}].name"]
    assert said and "is already used" in said[0].message


PORTS = st.fixed_dictionaries(
    {
        "hostPort": st.sampled_from([22, 80, 8080]),
        "containerPort": st.just(80),
        "protocol": st.sampled_from(["tcp", "udp"]),
        "hostIp": st.sampled_from(["127.0.0.1", "0.0.0.0", "10.0.0.6"]),
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PORTS, min_size=1, max_size=3))
def test_published_ports_collide_exactly_when_protocol_port_and_address_overlap(ports):
    """Docker's published ports on one host, and the SSH port virtfleet manages the host through
    (22/tcp on every address): a collision is the same protocol and port on overlapping addresses."""
    config = copy.deepcopy(PROD)
    g = _index(config, "guests", "backupwebserver")
    config["guests"][g]["ports"] = ports
    binds = [("tcp", 22, "0.0.0.0")] + [(p["protocol"], p["hostPort"], p["hostIp"]) for p in ports]
    expected = set()
    for n, (protocol, port, address) in enumerate(binds[1:], start=1):
        for first_protocol, first_port, first_address in binds[:n]:
            overlap = "0.0.0.0" in (address, first_address) or address == first_address
            if (protocol, port) == (first_protocol, first_port) and overlap:
                expected.add(f"virtfleet:guests[{g}].ports[{n - 1}].hostPort")
    assert {p.path for p in _load(config)} == expected

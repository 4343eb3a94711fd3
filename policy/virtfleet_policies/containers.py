"""Docker containers (pulumi_docker.Container inputs): no privilege, no host namespaces, admin ports on loopback."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from .common import CONTAINER_TYPE, as_list, is_loopback, label

# SSH, the Docker API (plain and TLS), VNC/SPICE, HAProxy's stats, Cockpit, libvirt's TCP listener.
DEFAULT_ADMIN_PORTS = [22, 2375, 2376, 5900, 5901, 8404, 9090, 16509]
DANGEROUS_CAPABILITIES = {"ALL", "SYS_ADMIN", "CAP_SYS_ADMIN", "NET_ADMIN", "CAP_NET_ADMIN", "SYS_MODULE"}


def _privileged(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CONTAINER_TYPE:
        return
    who = label(args.resource_type, args.name)
    if args.props.get("privileged"):
        report(
            f"{who}: privileged is true: the container gets every capability and the host's devices, "
            "so a break-out is root on the host. Drop privileged; add the one capability it needs."
        )
    capabilities = args.props.get("capabilities") or {}
    added = {str(c).upper() for c in as_list(capabilities.get("adds"))}
    if added & DANGEROUS_CAPABILITIES:
        report(
            f"{who}: capabilities.adds holds {', '.join(sorted(added & DANGEROUS_CAPABILITIES))}, "
            "which is as good as privileged. Remove it."
        )


container_not_privileged = ResourceValidationPolicy(
    name="container-not-privileged",
    description="A Docker container is not privileged and adds no capability that amounts to it (ALL, SYS_ADMIN, ...).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_privileged,
)


def _host_namespaces(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CONTAINER_TYPE:
        return
    for field, what in (("networkMode", "network"), ("pidMode", "process"), ("ipcMode", "IPC")):
        if args.props.get(field) == "host":
            report(
                f"{label(args.resource_type, args.name)}: {field} is 'host': the container shares the "
                f"host's {what} namespace. Attach it to the host's bridge network instead (guests[].network)."
            )


container_no_host_namespaces = ResourceValidationPolicy(
    name="container-no-host-namespaces",
    description="A Docker container does not use the host's network, PID or IPC namespace.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_host_namespaces,
)


def _admin_ports(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CONTAINER_TYPE:
        return
    admin = {int(p) for p in args.get_config().get("adminPorts", DEFAULT_ADMIN_PORTS)}
    for index, port in enumerate(as_list(args.props.get("ports"))):
        internal, external = port.get("internal"), port.get("external")
        # Numbers reach a policy as the engine's JSON numbers (floats): compare and show them as ints.
        internal = int(internal) if internal is not None else None
        external = int(external) if external is not None else None
        if not {p for p in (internal, external) if p is not None} & admin:
            continue
        ip = port.get("ip") or "0.0.0.0"
        if not is_loopback(ip):
            report(
                f"{label(args.resource_type, args.name)}: ports[{index}] publishes admin port "
                f"{internal}->{external or 'random'} on ip {ip}. Set ports[{index}].ip to 127.0.0.1 "
                "and reach it over SSH."
            )


container_admin_ports_loopback = ResourceValidationPolicy(
    name="container-admin-ports-loopback",
    description="A Docker container publishes admin ports (SSH, Docker API, consoles, stats; config adminPorts) "
    "on loopback only.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(
        properties={"adminPorts": {"type": "array", "items": {"type": "integer"}, "default": DEFAULT_ADMIN_PORTS}}
    ),
    validate=_admin_ports,
)

POLICIES = [container_not_privileged, container_no_host_namespaces, container_admin_ports_loopback]

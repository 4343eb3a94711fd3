"""The estate as a whole: host capacity, a resilient balancer tier, pinned images, protected guests."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from .common import (
    CONTAINER_TYPE,
    DOMAIN_TYPE,
    FILES_TYPE,
    HOST_TYPE,
    REMOTE_IMAGE_TYPE,
    STEP_TYPE,
    TIER_TYPE,
    VOLUME_TYPE,
    haproxy_configs,
    label,
)

GUEST_TYPES = (DOMAIN_TYPE, CONTAINER_TYPE)


def _provider_address(props: Mapping) -> str | None:
    """The machine a libvirt (``uri``) or Docker (``host``) provider talks to."""
    for key in ("uri", "host"):
        value = props.get(key)
        if isinstance(value, str) and "://" in value:
            return urlsplit(value).hostname
    return None


def _host_of(resource: PolicyResource, by_urn: Mapping[str, PolicyResource], hosts: list[PolicyResource]):
    """The HypervisorHost a guest runs on: its provider's parent, else the host at its provider's address."""
    if resource.provider is None:
        return None
    provider = by_urn.get(resource.provider.urn)
    parent = provider.parent if provider is not None else None
    if parent is not None and parent.resource_type == HOST_TYPE:
        return parent
    address = _provider_address(resource.provider.props)
    return next((h for h in hosts if address is not None and h.props.get("address") == address), None)


def _demand(resource: PolicyResource) -> tuple[float, float]:
    """(vCPUs, MiB) a guest claims: a libvirt domain's vcpu/memory, a container's cpus/memory."""
    props = resource.props
    if resource.resource_type == DOMAIN_TYPE:
        return float(props.get("vcpu") or 1), float(props.get("memory") or 512)  # the provider's defaults
    return float(props.get("cpus") or 0), float(props.get("memory") or 0)  # unlimited claims nothing fixed


def _capacity(args: StackValidationArgs, report: ReportViolation) -> None:
    by_urn = {r.urn: r for r in args.resources}
    hosts = [r for r in args.resources if r.resource_type == HOST_TYPE]
    load: dict[str, list[PolicyResource]] = {}
    for resource in args.resources:
        if resource.resource_type in GUEST_TYPES:
            host = _host_of(resource, by_urn, hosts)
            if host is not None:
                load.setdefault(host.urn, []).append(resource)
    for host in hosts:
        guests = load.get(host.urn, [])
        capacity = host.props.get("capacity") or {}
        if not guests or not capacity:
            continue
        vcpus = sum(_demand(g)[0] for g in guests)
        memory = sum(_demand(g)[1] for g in guests)
        cpu_limit = float(capacity.get("cpuThreads", 0)) * float(capacity.get("cpuOvercommit", 1))
        mem_limit = float(capacity.get("memoryMiB", 0)) * float(capacity.get("memoryOvercommit", 1))
        names = ", ".join(sorted(g.name for g in guests))
        for what, used, limit, unit, knob in (
            ("vCPUs", vcpus, cpu_limit, "", "cpuThreads/cpuOvercommit"),
            ("memory", memory, mem_limit, " MiB", "memoryMiB/memoryOvercommit"),
        ):
            if used > limit:
                report(
                    f"host {host.name}: its guests ({names}) claim {used:g}{unit} {what}, more than "
                    f"capacity x overcommit = {limit:g}{unit}. Move or shrink a guest, or raise "
                    f"hosts[].capacity {knob}.",
                    host.urn,
                )


host_capacity = StackValidationPolicy(
    name="host-capacity",
    description="The vCPUs and memory of all guests on one host (libvirt domains, Docker containers, whoever "
    "made them) fit the host's capacity x overcommit.",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=_capacity,
)


def _balancer(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (STEP_TYPE, FILES_TYPE):
        return
    for path, sections in haproxy_configs(args.props):
        defaults = [s for s in sections if s.kind == "defaults"]
        default_check = any("check" in t for s in defaults for t in s.directives("default-server"))
        for section in sections:
            servers = section.directives("server")
            if section.kind not in ("backend", "listen") or not servers:
                continue
            where = f"{label(args.resource_type, args.name)}: files[{path!r}] {section.kind} {section.name}"
            checked = default_check or any("check" in t for t in section.directives("default-server"))
            for tokens in servers:
                name = tokens[1] if len(tokens) > 1 else "?"
                if "no-check" in tokens or not (checked or "check" in tokens):
                    report(
                        f"{where}: server {name} has no health check, so traffic keeps going to it when it "
                        "is down. Add 'check' (loadBalancer.healthCheck renders it for every server)."
                    )
            if not any("backup" in tokens for tokens in servers):
                report(
                    f"{where}: no backup server, so the site is down when every backend is. "
                    "Name one in loadBalancer.backups."
                )


balancer_checked_with_backup = ResourceValidationPolicy(
    name="balancer-checked-with-backup",
    description="Every HAProxy backend server has a health check and every backend has a backup server.",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=_balancer,
)


def _redundant(args: StackValidationArgs, report: ReportViolation) -> None:
    for tier in (r for r in args.resources if r.resource_type == TIER_TYPE):
        nodes = tier.props.get("nodes") or []
        if len(nodes) < 2:
            report(
                f"the HAProxy tier runs on one node ({', '.join(map(str, nodes)) or '?'}): when it is down or "
                "rebooting, the whole site is. List two in loadBalancer.nodes and give them loadBalancer."
                "virtualAddress and vrrp.routerId (keepalived moves the address to the live one).",
                tier.urn,
            )


tier_redundant = StackValidationPolicy(
    name="tier-redundant",
    description="The HAProxy tier has two balancer nodes sharing a virtual address (VRRP), not one.",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=_redundant,
)


def _image_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    who = label(args.resource_type, args.name)
    if args.resource_type == VOLUME_TYPE:
        source = args.props.get("source")
        if isinstance(source, str) and urlsplit(source).scheme in ("http", "https", "ftp"):
            report(
                f"{who}: source {source} is downloaded by libvirt with no checksum, so whatever the "
                "server returns boots. Download and verify it first (sha256) and point source at the "
                "verified file, or use a dated, immutable image URL you have checked."
            )
    elif args.resource_type == STEP_TYPE and isinstance(args.props.get("download"), Mapping):
        download = args.props["download"]
        url = download.get("url")
        if download.get("kind") == "image" and not download.get("sha256"):
            report(
                f"{who}: downloads {url} with no sha256 to check, so whatever the server returns boots. "
                "Set guests[].image.sha256 (the host verifies it before any guest uses the file)."
            )
        elif download.get("kind") == "installer" and urlsplit(str(url)).scheme != "https":
            report(
                f"{who}: downloads the installer's {url} over plain {urlsplit(str(url)).scheme or 'HTTP'}, "
                "with neither TLS nor a checksum. Use an https install tree (guests[].install.location)."
            )
    elif args.resource_type in (REMOTE_IMAGE_TYPE, CONTAINER_TYPE):
        field = "name" if args.resource_type == REMOTE_IMAGE_TYPE else "image"
        image = args.props.get(field)
        if isinstance(image, str) and "@sha256:" not in image and not image.startswith("sha256:"):
            report(
                f"{who}: {field} {image!r} is a tag, which the registry can move. Pin the digest: "
                f"{image.split('@')[0]}@sha256:<digest> (docker buildx imagetools inspect {image})."
            )


images_pinned = ResourceValidationPolicy(
    name="images-pinned",
    description="Cloud images (the hosts' shared downloads, libvirt volume source URLs) and container images "
    "are pinned by checksum/digest; installer trees come over https.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_image_pinned,
)


def _protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in GUEST_TYPES and not args.opts.protect:
        report(
            f"{label(args.resource_type, args.name)}: protect is off, so a `pulumi up` that drops it "
            "from the stack, or a `pulumi destroy`, deletes the guest. Set guests[].protect: true."
        )


guests_protected = ResourceValidationPolicy(
    name="guests-protected",
    description="Guests (libvirt domains, Docker containers) are protected from deletion.",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=_protected,
)

POLICIES = [host_capacity, balancer_checked_with_backup, tier_redundant, images_pinned, guests_protected]

"""Who can reach what: pinned SSH host keys, loopback-only consoles, a protected stats page, SELinux,
web consoles open to the stack's own networks only."""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import parse_qs, urlsplit

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from .common import (
    COMMAND_TYPES,
    DOCKER_PROVIDER,
    DOMAIN_TYPE,
    FILES_TYPE,
    HOST_TYPE,
    LIBVIRT_PROVIDER,
    STEP_TYPE,
    as_list,
    bind_host,
    haproxy_configs,
    is_loopback,
    is_public_bind,
    label,
    registered_files,
)


def _ssh_host_key(args: ResourceValidationArgs, report: ReportViolation) -> None:
    who = label(args.resource_type, args.name)
    if args.resource_type in COMMAND_TYPES:
        connection = args.props.get("connection") or {}
        host = connection.get("host", "?")
        if not connection.get("hostKey"):
            report(
                f"{who}: connection.hostKey is empty, so SSH to {host} accepts whatever key answers. "
                f"Pin it: hosts[].hostKey = `ssh-keyscan -t ed25519 {host}` (a guest's key, made at its "
                "first boot, cannot be pinned in the stack yet)."
            )
        proxy = connection.get("proxy")
        if proxy and not proxy.get("hostKey"):
            report(
                f"{who}: connection.proxy.hostKey is empty for the jump host {proxy.get('host', '?')}. "
                "Pin it in the stack: ssh.jumpHost.hostKey."
            )
    elif args.resource_type == LIBVIRT_PROVIDER:
        uri = args.props.get("uri") or ""
        parts = urlsplit(uri)
        if "+ssh" not in parts.scheme:
            return
        query = parse_qs(parts.query)
        if query.get("no_verify") == ["1"] or query.get("known_hosts_verify") == ["ignore"]:
            report(f"{who}: uri turns host key checking off (no_verify / known_hosts_verify=ignore). Remove it.")
        elif "knownhosts" not in query:
            report(
                f"{who}: uri names no knownhosts= file, so libvirt trusts the user's ~/.ssh/known_hosts "
                f"for {parts.hostname}, not a key the stack pins. Set hosts[].hostKey (ssh-keyscan -t ed25519)."
            )
    elif args.resource_type == DOCKER_PROVIDER:
        host = args.props.get("host") or ""
        if not host.startswith("ssh://"):
            return
        opts = args.props.get("sshOpts") or []
        if isinstance(opts, str):  # provider inputs travel as strings: a JSON list
            opts = json.loads(opts)
        text = " ".join(opts)
        if "StrictHostKeyChecking=yes" not in text or "UserKnownHostsFile=/dev/null" in text:
            report(
                f"{who}: sshOpts lack StrictHostKeyChecking=yes with a pinned known_hosts file, so ssh to "
                f"{host} accepts a new key. Set hosts[].hostKey (ssh-keyscan -t ed25519)."
            )


ssh_host_key_pinned = ResourceValidationPolicy(
    name="ssh-host-key-pinned",
    description="Every SSH connection (pulumi-command, libvirt qemu+ssh, Docker ssh://) verifies a host key "
    "pinned in the stack (hosts[].hostKey, ssh.jumpHost.hostKey).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_ssh_host_key,
)


def _graphics(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != DOMAIN_TYPE:
        return
    for index, graphics in enumerate(as_list(args.props.get("graphics"))):
        kind = graphics.get("type", "?")
        listen_type = graphics.get("listenType") or "address"
        address = graphics.get("listenAddress")
        where = f"{label(args.resource_type, args.name)}: graphics"
        if listen_type == "none":
            continue
        if listen_type != "address":
            report(
                f"{where}.listenType is {listen_type!r}: the {kind} console listens on a host network. "
                "Use listenType 'address' with listenAddress 127.0.0.1 and reach it through an SSH tunnel."
            )
        elif not is_loopback(address):
            shown = "unset (qemu.conf's vnc_listen/spice_listen decides)" if address is None else repr(address)
            report(
                f"{where}.listenAddress is {shown}: the {kind} console of the guest, with no password, "
                f"is open to whoever reaches it (graphics #{index}). Set it to 127.0.0.1; use "
                f"`ssh -L 5900:127.0.0.1:5900 host` to reach it."
            )


graphics_loopback_only = ResourceValidationPolicy(
    name="graphics-loopback-only",
    description="A libvirt domain's SPICE/VNC console listens on loopback only (graphics.listenAddress 127.0.0.1).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_graphics,
)


def _stats_page(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (STEP_TYPE, FILES_TYPE):
        return
    for path, sections in haproxy_configs(args.props):
        for section in sections:
            if not (section.directives("stats", "enable") or section.directives("stats", "uri")):
                continue
            where = f"{label(args.resource_type, args.name)}: files[{path!r}] {section.kind} {section.name}"
            auth = section.directives("stats", "auth")
            if not any(len(tokens) > 2 and tokens[2].partition(":")[2] for tokens in auth):
                report(
                    f"{where}: the stats page has no 'stats auth user:password', so anyone who reaches it "
                    "sees every server and can read the estate. Keep loadBalancer.stats with its password "
                    "(virtfleet:statsPassword, or generated)."
                )
            for tokens in section.directives("bind"):
                address = tokens[1] if len(tokens) > 1 else ""
                if is_public_bind(bind_host(address)) and "ssl" not in tokens:
                    report(
                        f"{where}: 'bind {address}' is public and has no 'ssl': the stats password "
                        "crosses the network in clear text. Bind loadBalancer.stats.bind to a LAN or "
                        "loopback address, or serve it over TLS."
                    )


stats_page_protected = ResourceValidationPolicy(
    name="stats-page-protected",
    description="An HAProxy stats page asks for credentials and is never on a public bind without TLS.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_stats_page,
)


def _selinux(args: ResourceValidationArgs, report: ReportViolation) -> None:
    who = label(args.resource_type, args.name)
    if args.resource_type == HOST_TYPE and args.props.get("selinux") == "disabled":
        report(
            f"{who}: selinux is 'disabled', which also drops every file label (turning it back on "
            "needs a full relabel). Use hosts[].selinux: permissive if a guest type needs it, else enforcing."
        )
    if args.resource_type in (STEP_TYPE, FILES_TYPE):
        for path, text in registered_files(args.props):
            if path.startswith("/etc/selinux/config") and any(
                line.strip().replace(" ", "") == "SELINUX=disabled" for line in text.splitlines()
            ):
                report(f"{who}: files[{path!r}] sets SELINUX=disabled. Use permissive or enforcing.")


selinux_not_disabled = ResourceValidationPolicy(
    name="selinux-not-disabled",
    description="No host runs with SELinux disabled (the host's selinux input, or an /etc/selinux/config it writes).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_selinux,
)


def _tier_https(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (STEP_TYPE, FILES_TYPE):
        return
    for path, sections in haproxy_configs(args.props):
        for section in sections:
            if section.kind not in ("frontend", "listen"):
                continue
            stats = bool(section.directives("stats", "enable") or section.directives("stats", "uri"))
            redirects = any(
                tokens[:4] == ["http-request", "redirect", "scheme", "https"]
                for tokens in section.directives("http-request")
            )
            where = f"{label(args.resource_type, args.name)}: files[{path!r}] {section.kind} {section.name}"
            for tokens in section.directives("bind"):
                address = tokens[1] if len(tokens) > 1 else ""
                if "ssl" in tokens or is_loopback(bind_host(address)):
                    continue
                if stats:
                    report(
                        f"{where}: the stats page is served over plain HTTP on 'bind {address}': its password "
                        "and the estate's servers cross the network in clear. Set loadBalancer.https.enabled: "
                        "true (the stats page is then HTTPS only), or bind it to 127.0.0.1."
                    )
                elif not redirects:
                    report(
                        f"{where}: 'bind {address}' serves the site over plain HTTP. Set "
                        "loadBalancer.https.enabled: true (plain HTTP then only redirects to HTTPS)."
                    )


tier_https_only = ResourceValidationPolicy(
    name="tier-https-only",
    description="The HAProxy tier serves its site and its stats page over HTTPS: a plain-HTTP bind off loopback "
    "only redirects to HTTPS, and the stats page has none.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_tier_https,
)

CONSOLE_CERT_DIR = "/etc/cockpit/ws-certs.d/"


def _console(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == HOST_TYPE and args.props.get("console"):
        managed = [ipaddress.ip_network(n) for n in as_list(args.props.get("managementNetworks"))]
        shown = ", ".join(str(n) for n in managed) or "none"
        for j, value in enumerate(as_list(args.props["console"].get("allowFrom"))):
            network = ipaddress.ip_network(value, strict=False)
            if not any(network.subnet_of(m) for m in managed if m.version == network.version):
                report(
                    f"host {args.name}: console.allowFrom[{j}] = {value} reaches beyond the stack's management "
                    f"networks ({shown}): the console is the widest door into a hypervisor. Narrow "
                    "hosts[].console.allowFrom to the administrators' networks."
                )
    elif args.resource_type == STEP_TYPE and args.props.get("step") == "console":
        paths = [path for path, _ in registered_files(args.props)]
        if not any(p.startswith(CONSOLE_CERT_DIR) and p.endswith(".cert") for p in paths):
            report(
                f"{label(args.resource_type, args.name)}: the console has no certificate of the stack's under "
                f"{CONSOLE_CERT_DIR} (cockpit would make a self-signed one nobody can verify). Keep the step's "
                "certificate: virtfleet:consoleCertificate, or the one generated per host."
            )


console_restricted = ResourceValidationPolicy(
    name="console-restricted",
    description="A host's web console (Cockpit) is reachable only from the stack's management networks "
    "(hosts[].console.allowFrom within the stack's hosts' addresses and bridge subnets) and serves a "
    "certificate the stack controls.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_console,
)

POLICIES = [
    ssh_host_key_pinned,
    graphics_loopback_only,
    stats_page_protected,
    selinux_not_disabled,
    tier_https_only,
    console_restricted,
]

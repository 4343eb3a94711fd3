"""``HaproxyTier``: the seed's high-availability tier, web servers and the balancer in front of them.

What it builds, from the stack's ``loadBalancer``:

- per web server (backends and backups), the step that gives the guest httpd and a page naming it
  (``web_servers``), wired to the guest's component when that type has one, and rendered all the
  same when it does not yet (the step then simply waits for the guest to answer on SSH);
- on the balancer's node: ``haproxy-install`` (packages, loopback syslog, httpd off the balancer's
  ports, SELinux, firewall), then ``haproxy-config`` (haproxy.cfg and the certificate, checked with
  ``haproxy -c`` before they replace anything, then a reload). The config step is secret: it
  carries the stats password (and the TLS key).

The rendered text comes from ``balancer_files``/``web_servers`` (pure), which tests and the
benchmark call directly.
"""

from __future__ import annotations

import pulumi
import pulumi_tls as tls

from ..model import DockerGuest, Fleet, LoadBalancer
from ..osfamily import os_family
from ..remote.connection import connection_for
from ..remote.recorded_files import RenderedFiles
from ..remote.scripts import RemoteFile, RenderedStep, render_step
from ..remote.step import RemoteStep
from ..stack.secrets import Secrets
from .balancer_files import (
    CERT_DIR,
    CERT_FILE,
    CONFIG_PATH,
    HTTPD_MOVES,
    RSYSLOG_PATH,
    TMPFILES_PATH,
    balancer_ports,
    firewall_ports,
    frontend_url,
    render_haproxy_cfg,
    render_rsyslog_conf,
    render_tmpfiles_conf,
    stats_url,
)
from .roll import RollGates, render_drain_step, render_ready_step
from .vrrp_files import (
    KEEPALIVED_CONF,
    NOTIFY_SCRIPT,
    SYSCTL_CONF,
    SYSCTLS,
    own_and_peer,
    render_keepalived_conf,
    render_notify_script,
    render_sysctl_conf,
    vrrp_rich_rule,
)
from .web_servers import WebServerStep, web_server_steps


def node_os_family(node: str, fleet: Fleet) -> str:
    host = next((h for h in fleet.hosts if h.name == node), None)
    return host.os_family if host is not None else fleet.guest(node).os_family


def render_install_step(lb: LoadBalancer, fleet: Fleet, node: str | None = None) -> RenderedStep:
    """``haproxy-install`` on a node (default: the first; pure, no secret in it)."""
    node = node or lb.primary
    ports = set(balancer_ports(lb))
    return render_step(
        node,
        "haproxy-install",
        "haproxy-install",
        files=[RemoteFile(RSYSLOG_PATH, render_rsyslog_conf(lb)), RemoteFile(TMPFILES_PATH, render_tmpfiles_conf())],
        lock=True,  # the package manager, firewall and SELinux policy
        install_files=False,  # the script installs them: the snippet only once rsyslogd -N1 accepts it
        package_manager=os_family(node_os_family(node, fleet)).package_manager,
        socket_dir="/run/haproxy",
        record="/var/lib/virtfleet/installed/haproxy-install",
        sebool_record="/var/lib/virtfleet/haproxy-install.haproxy_connect_any",
        tmpfiles=TMPFILES_PATH,
        rsyslog_conf=RSYSLOG_PATH,
        httpd_moves=sorted((old, new) for old, new in HTTPD_MOVES.items() if old in ports),
        firewall_ports=[f"{p}/tcp" for p in sorted(set(firewall_ports(lb)))],
    )


def render_config_step(
    lb: LoadBalancer,
    fleet: Fleet,
    node: str | None = None,
    *,
    stats_password: str | None,
    certificate_pem: str | None,
) -> RenderedStep:
    """``haproxy-config`` on a node (default: the first; pure). Its text holds the stats password: keep
    it secret. Both nodes of a pair get the same files.

    The files travel inside the script as candidates and are installed only after ``haproxy -c``
    accepted them (``install_files=False``).
    """
    files = [RemoteFile(CONFIG_PATH, render_haproxy_cfg(lb, fleet, stats_password=stats_password), 0o600)]
    if lb.https.enabled:
        if not certificate_pem:
            raise ValueError("HTTPS is enabled, so the frontend needs a certificate")
        files.append(RemoteFile(f"{CERT_DIR}/{CERT_FILE}", certificate_pem, 0o600))
    return render_step(
        node or lb.primary,
        "haproxy-config",
        "haproxy-config",
        files=files,
        secret=True,
        install_files=False,  # installed by the script, after haproxy -c accepts them
        has_cert=lb.https.enabled,
        cert_file=CERT_FILE,
    )


def render_vrrp_step(lb: LoadBalancer, fleet: Fleet, node: str) -> RenderedStep:
    """``haproxy-vrrp`` on a node of a pair (pure): keepalived, its files, VRRP from the peer only."""
    own, peer = own_and_peer(lb, fleet, node)
    return render_step(
        node,
        "haproxy-vrrp",
        "haproxy-vrrp",
        files=[
            RemoteFile(KEEPALIVED_CONF, render_keepalived_conf(lb, fleet, node), 0o640),
            RemoteFile(NOTIFY_SCRIPT, render_notify_script(lb, fleet, node), 0o755),
            RemoteFile(SYSCTL_CONF, render_sysctl_conf(), 0o644),
        ],
        lock=True,  # the package manager, sysctl, firewalld
        install_files=False,  # the script installs them, recording what the node had
        package_manager=os_family(node_os_family(node, fleet)).package_manager,
        record_dir="/var/lib/virtfleet/haproxy-vrrp",
        conf=KEEPALIVED_CONF,
        notify=NOTIFY_SCRIPT,
        sysctl_conf=SYSCTL_CONF,
        sysctls=list(SYSCTLS),
        rich_rules=[vrrp_rich_rule(peer)],
        peer=peer.name,
        virtual_address=str(lb.virtual_address),
        interface=own.interface,
    )


MASKED = "(secret)"  # stands for the stats password and the certificate in what the policy pack sees


class HaproxyTier(pulumi.ComponentResource):
    """Type ``virtfleet:lb:HaproxyTier``.

    Outputs: ``frontend_url``, ``stats_url``, ``stats_user`` and ``stats_password`` (secret) and
    ``haproxy_cfg`` (secret: the rendered configuration). ``docker_htdocs``: each Docker web
    server's page directory on its host, the one its DockerGuest container mounts read-only
    (both from ``web_servers.DOCKER_HTDOCS``).
    """

    def __init__(
        self,
        lb: LoadBalancer,
        *,
        fleet: Fleet,
        hosts: dict,
        guests: dict,
        secrets: Secrets,
        gates: RollGates | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("virtfleet:lb:HaproxyTier", "haproxy-tier", None, opts)
        self.web_servers: dict[str, RemoteStep] = {}
        self.docker_htdocs: dict[str, str] = {}
        password = secrets.stats_password if lb.stats.enabled else None
        certificate = self._certificate(lb, fleet, secrets) if lb.https.enabled else None
        secret_values = pulumi.Output.all(password, certificate)
        # What the policy pack judges at preview: the same files with the secrets masked.
        public = render_config_step(
            lb,
            fleet,
            stats_password=MASKED if password is not None else None,
            certificate_pem=MASKED if certificate is not None else None,
        )
        self.config_steps: dict[str, RemoteStep] = {}
        self._connections: dict[str, object] = {}
        for node in lb.nodes:
            connection, ready = self._node_access(node, fleet, hosts, guests, secrets)
            self._connections[node] = connection
            install = RemoteStep(
                render_install_step(lb, fleet, node),
                machine=node,
                name="haproxy-install",
                connection=connection,
                opts=pulumi.ResourceOptions(parent=self, depends_on=ready),
            )
            before_config: list[pulumi.Resource] = [install]
            if lb.pair:
                # keepalived and ip_nonlocal_bind first: haproxy binds the shared address on both nodes.
                before_config.append(
                    RemoteStep(
                        render_vrrp_step(lb, fleet, node),
                        machine=node,
                        name="haproxy-vrrp",
                        connection=connection,
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[install]),
                    )
                )
            # The same files on every node of a pair.
            step = secret_values.apply(
                lambda values, node=node: render_config_step(
                    lb, fleet, node, stats_password=values[0], certificate_pem=values[1]
                )
            )
            if node == lb.primary:
                self.haproxy_cfg = pulumi.Output.secret(step.apply(lambda s: s.files[0].content))
            self.config_steps[node] = RemoteStep(
                step,
                machine=node,
                name="haproxy-config",
                connection=connection,
                public_files={f.path: f.content for f in public.files},
                opts=pulumi.ResourceOptions(parent=self, depends_on=before_config),
            )
        self._roll(lb, fleet, hosts, guests, secrets, gates)
        self.frontend_url = pulumi.Output.from_input(frontend_url(lb, fleet))
        self.stats_url = pulumi.Output.from_input(stats_url(lb, fleet))
        # The credentials are both secret outputs, the user name too (the "credentials").
        self.stats_user = pulumi.Output.secret(lb.stats.user) if lb.stats.enabled else pulumi.Output.from_input(None)
        self.stats_password = pulumi.Output.secret(password) if password is not None else None
        self.register_outputs(
            {
                "frontendUrl": self.frontend_url,
                "statsUrl": self.stats_url,
                "statsUser": self.stats_user,
                "statsPassword": self.stats_password,
                "haproxyCfg": self.haproxy_cfg,
                # The policy pack reads these (tier-redundant): the balancer nodes and their shared address.
                "nodes": list(lb.nodes),
                "virtualAddress": str(lb.virtual_address) if lb.pair else None,
            }
        )

    def _roll(
        self, lb: LoadBalancer, fleet: Fleet, hosts: dict, guests: dict, secrets: Secrets, gates: RollGates | None
    ) -> None:
        """The web servers' steps, one after the other between a drain and a ready step on every
        balancer node (``roll``), after the balancer's configuration; or all at once. Each server's
        guest (built before the tier) waits for its drains through ``gates``."""
        after: list[pulumi.Resource] = list(self.config_steps.values())
        for web in web_server_steps(lb, fleet):
            name = web.guest.name
            if not lb.rolling_changes:
                self.web_servers[name] = self._web_server(web, fleet, hosts, guests, secrets, after=[])
                continue
            drains = [
                self._balancer_step(render_drain_step(lb, fleet, n, web), n, after, drift=False) for n in lb.nodes
            ]
            if gates is not None:
                gates.open(name, drains)
            self.web_servers[name] = self._web_server(web, fleet, hosts, guests, secrets, after=drains)
            ready = [render_ready_step(lb, fleet, n, web) for n in lb.nodes]
            after = [self._balancer_step(r, n, [self.web_servers[name]]) for r, n in zip(ready, lb.nodes, strict=True)]

    def _balancer_step(
        self, rendered: RenderedStep, node: str, after: list[pulumi.Resource], *, drift: bool = True
    ) -> RemoteStep:
        return RemoteStep(
            rendered,
            machine=node,
            name=rendered.name,
            connection=self._connections[node],
            drift=drift,
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )

    def _web_server(
        self,
        web: WebServerStep,
        fleet: Fleet,
        hosts: dict,
        guests: dict,
        secrets: Secrets,
        *,
        after: list[pulumi.Resource],
    ) -> RemoteStep:
        guest = web.guest
        depends_on: list[pulumi.Resource] = [guests[guest.name]] if guest.name in guests else []
        depends_on += after
        if web.over_ssh_to_guest:
            connection = connection_for(fleet, fleet.machine_address(guest.name), 22, None, secrets.ssh)
        else:
            host = hosts[guest.host]
            connection = host.connection
            depends_on += host.ready
            # The files reach the guest through its host (vzctl exec, a bind mount): record them
            # under the guest's own name so the plan shows what the guest serves.
            RenderedFiles(
                f"{guest.name}-webserver-files",
                machine=guest.name,
                files={f.path: f.content for f in web.files},
                opts=pulumi.ResourceOptions(parent=self),
            )
        if isinstance(guest, DockerGuest):
            self.docker_htdocs[guest.name] = web.step.files[0].path.rsplit("/", 1)[0]
            if not guest.image.split("/")[-1].startswith("httpd"):
                pulumi.log.warn(
                    f"web server {guest.name}: image {guest.image} is not an httpd image; "
                    f"the tier's page is laid out for httpd's htdocs",
                    resource=self,
                )
        return RemoteStep(
            web.step,
            machine=web.runs_on,
            name=web.step.name,
            connection=connection,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

    def _node_access(self, node: str, fleet: Fleet, hosts: dict, guests: dict, secrets: Secrets):
        """SSH to a balancer node and what must exist first: a host's ready steps or the guest."""
        if node in hosts:
            return hosts[node].connection, list(hosts[node].ready)
        guest = fleet.guest(node)
        if isinstance(guest, DockerGuest):
            pulumi.log.warn(
                f"balancer node {guest.name} is a docker guest; the tier reaches it over SSH, "
                "which an httpd/haproxy image does not run",
                resource=self,
            )
        connection = connection_for(fleet, fleet.machine_address(guest.name), 22, None, secrets.ssh)
        return connection, [guests[guest.name]] if guest.name in guests else []

    def _certificate(self, lb: LoadBalancer, fleet: Fleet, secrets: Secrets) -> pulumi.Output[str]:
        """PEM chain + key: ``virtfleet:tlsCertificate``, or a self-signed one from pulumi-tls."""
        if secrets.tls_certificate is not None:
            return secrets.tls_certificate
        name = lb.https.common_name or f"{lb.primary}.{fleet.domain}"
        child = pulumi.ResourceOptions(parent=self)
        key = tls.PrivateKey("haproxy-frontend-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        cert = tls.SelfSignedCert(
            "haproxy-frontend-cert",
            private_key_pem=key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(common_name=name),
            dns_names=[name],
            ip_addresses=[str(a) for a in (lb.frontend.address, lb.virtual_address) if a and not a.is_unspecified][:1],
            validity_period_hours=24 * 365,
            early_renewal_hours=24 * 30,
            allowed_uses=["key_encipherment", "digital_signature", "server_auth"],
            opts=child,
        )
        return pulumi.Output.secret(pulumi.Output.concat(cert.cert_pem, key.private_key_pem))

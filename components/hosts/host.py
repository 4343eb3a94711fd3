"""``HypervisorHost``: one host of the stack, prepared for its roles by remote steps."""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_command as command
import pulumi_docker as docker
import pulumi_libvirt as libvirt
import pulumi_tls as tls

from ..model import Fleet, Host, Role
from ..remote.connection import connection_for
from ..remote.step import RemoteStep
from ..stack.secrets import Secrets
from .bridge_network import BridgeNetwork
from .console import console_url, public_console_files, render_console_step
from .host_steps import host_steps, hosts_entries
from .trust import host_trust, write_trust_files

__all__ = ["HypervisorHost", "host_props", "hosts_entries"]


def host_props(host: Host, fleet: Fleet) -> dict:
    """The component's inputs as Pulumi records them (camelCase, like the stack file). With a console,
    its settings and ``managementNetworks``: the stack's hosts' addresses and bridge subnets, which the
    policy pack holds ``console.allowFrom`` to (console-restricted)."""
    props = {
        "address": host.address,
        "roles": [role.value for role in host.roles],
        "selinux": host.selinux,
        "capacity": host.capacity.model_dump(mode="json", by_alias=True),
    }
    if host.console is not None:
        props["console"] = host.console.model_dump(mode="json", by_alias=True, exclude_none=True)
        props["managementNetworks"] = management_networks(fleet)
    return props


def management_networks(fleet: Fleet) -> list[str]:
    networks = [ipaddress.ip_network(f"{h.management_ip()}/32") for h in fleet.hosts if h.management_ip()]
    networks += [b.address.network for h in fleet.hosts for b in h.bridges]
    # Collapsed (an address inside a bridge's subnet adds nothing) and sorted: host order changes nothing.
    return [str(n) for n in ipaddress.collapse_addresses(networks)]


class HypervisorHost(pulumi.ComponentResource):
    """Type ``virtfleet:host:HypervisorHost``.

    Guests use: ``connection`` (SSH to the host), ``ready`` (resources a guest must wait for),
    ``libvirt_provider`` / ``docker_provider`` (None unless the host has that role),
    ``libvirt_networks`` and ``docker_networks`` (bridge name -> network).
    """

    def __init__(
        self,
        host: Host,
        *,
        fleet: Fleet,
        secrets: Secrets,
        operator_home: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``operator_home``: the home directory of the machine running the program, where the trust
        files the libvirt and Docker providers read are written before they are configured (None
        under the plan's mocks, which write nothing there)."""
        # Its props are what the policy pack (policy/) judges a host by: capacity and SELinux mode,
        # and the address that ties resources made outside the model (their provider) to the host.
        super().__init__("virtfleet:host:HypervisorHost", host.name, host_props(host, fleet), opts)
        self.host = host
        self.connection = connection_for(fleet, host.address, host.port, host.host_key, secrets.ssh)
        if host.host_key is None:
            pulumi.log.warn(
                f"host {host.name}: no hostKey pinned; SSH will trust whatever key {host.address} presents. "
                f"Pin it: ssh-keyscan -t ed25519 {host.address}",
                resource=self,
            )
        # Steps run one after another: each may rely on what the previous one set up (packages
        # need the repositories, the reboot comes last). Only this host's steps are chained.
        bridges = {f"bridge-{b.name}": b for b in host.bridges}
        previous: list[pulumi.Resource] = []
        self.steps: dict[str, pulumi.Resource] = {}
        self.bridges: dict[str, BridgeNetwork] = {}
        for step in host_steps(host, fleet):
            step_opts = pulumi.ResourceOptions(parent=self, depends_on=previous)
            if step.name in bridges:
                bridge = bridges[step.name]
                resource = BridgeNetwork(
                    host, bridge, step=step, connection=self.connection, after=previous, opts=step_opts
                )
                self.bridges[bridge.name] = resource
                # Chain on the step itself: the component later also holds networks that wait for
                # the whole host, so depending on the component would be a cycle.
                resource = resource.step
            else:
                resource = RemoteStep(
                    step, machine=host.name, name=step.name, connection=self.connection, opts=step_opts
                )
            self.steps[step.name] = resource
            previous = [resource]
        # Guests wait for every step, not only the last: a RemoteStep's Command does not (yet)
        # inherit the component's depends_on, so the chain alone does not order the Commands.
        self.ready: list[pulumi.Resource] = list(self.steps.values())
        # The console (Cockpit) last: its step carries the private key, so it is secret.
        self.console_url: str | None = None
        if host.console is not None and host.has_role(Role.CONSOLE):
            self.console_url = console_url(host)
            self.steps["console"] = self._console(host, fleet, secrets, after=previous)

        trust = host_trust(fleet, host, pulumi.get_stack())
        needs_trust = host.has_role(Role.KVM) or host.has_role(Role.DOCKER)
        trust_files = None
        if needs_trust:
            trust_files = command.local.Command(
                f"{host.name}-ssh-trust",
                create=trust.write_script(),
                update=trust.write_script(),
                delete=trust.delete_script(),
                stdin=secrets.ssh.private_key if trust.use_keyfile else None,
                logging=command.local.Logging.NONE,
                opts=pulumi.ResourceOptions(parent=self),
            )
        provider_opts = pulumi.ResourceOptions(parent=self, depends_on=[trust_files] if trust_files else [])
        # The providers' settings wait until this machine has the trust files they read: pulumi-libvirt
        # connects while it is configured, in the very first preview too.
        written = pulumi.Output.from_input(None)
        if needs_trust and operator_home is not None:
            key = secrets.ssh.private_key if trust.use_keyfile else None
            written = pulumi.Output.all(key).apply(lambda args: write_trust_files(trust, args[0], operator_home))

        def after_trust(value):
            return pulumi.Output.unsecret(written.apply(lambda _: value))

        self.libvirt_provider: libvirt.Provider | None = None
        self.docker_provider: docker.Provider | None = None
        if host.has_role(Role.KVM):
            self.libvirt_provider = libvirt.Provider(
                f"{host.name}-libvirt", uri=after_trust(trust.libvirt_uri(fleet, host)), opts=provider_opts
            )
        if host.has_role(Role.DOCKER):
            self.docker_provider = docker.Provider(
                f"{host.name}-docker",
                host=after_trust(f"ssh://{fleet.ssh.user}@{host.address}:{host.port}"),
                ssh_opts=trust.docker_ssh_opts(fleet),
                opts=provider_opts,
            )
        self.libvirt_networks: dict[str, libvirt.Network] = {}
        self.docker_networks: dict[str, docker.Network] = {}
        for bridge in self.bridges.values():
            bridge.attach(
                fleet,
                libvirt_provider=self.libvirt_provider,
                docker_provider=self.docker_provider,
                depends_on=self.ready,
            )
            if bridge.libvirt_network is not None:
                self.libvirt_networks[bridge.bridge.name] = bridge.libvirt_network
            if bridge.docker_network is not None:
                self.docker_networks[bridge.bridge.name] = bridge.docker_network
        # Its outputs replace its inputs in the engine's state, where stack policies (host-capacity)
        # read them: the same props again.
        self.register_outputs(host_props(host, fleet))

    def _console(self, host: Host, fleet: Fleet, secrets: Secrets, *, after: list) -> RemoteStep:
        stack = pulumi.get_stack()
        certificate = secrets.console_certificate or self._console_certificate(host, fleet)
        step = pulumi.Output.secret(certificate).apply(
            lambda pem: render_console_step(host, fleet, stack, certificate_pem=pem)
        )
        # What the policy pack judges at preview: the files, with the certificate and key masked.
        public = public_console_files(host, fleet, stack)
        return RemoteStep(
            step,
            machine=host.name,
            name="console",
            connection=self.connection,
            public_files=public,
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )

    def _console_certificate(self, host: Host, fleet: Fleet) -> pulumi.Output[str]:
        """A self-signed certificate for the names users reach the console by (pulumi-tls)."""
        child = pulumi.ResourceOptions(parent=self)
        fqdn = f"{host.name}.{fleet.domain}"
        # The names of console_origins: a DNS address, the FQDN; the management IP (the address, or its bridge's).
        ip = str(host.management_ip())
        # EL7's cockpit 195 loads keys with the GnuTLS of 2017: RSA there, P-256 on EL9.
        algorithm = {"algorithm": "RSA", "rsa_bits": 3072} if host.os_family == "el7" else {
            "algorithm": "ECDSA", "ecdsa_curve": "P256"}  # fmt: skip
        key = tls.PrivateKey(f"{host.name}-console-key", **algorithm, opts=child)
        cert = tls.SelfSignedCert(
            f"{host.name}-console-cert",
            private_key_pem=key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(common_name=fqdn),
            dns_names=[*([host.address] if host.address != ip else []), fqdn],
            ip_addresses=[ip],
            validity_period_hours=24 * 365,
            early_renewal_hours=24 * 30,
            allowed_uses=["key_encipherment", "digital_signature", "server_auth"],
            opts=child,
        )
        return pulumi.Output.secret(pulumi.Output.concat(cert.cert_pem, key.private_key_pem))

"""``DockerGuest``: one container through pulumi-docker on its host's ``ssh://`` provider (the
seed's ``docker pull`` / ``docker run`` as resources).

- the image: one ``RemoteImage`` per host and image reference (``docker_images.py``), pulled once,
  a digest pin (``httpd:2.4@sha256:…``) pulled as written, ``keep_locally`` so that removing one
  container never deletes an image another one runs;
- the container: ``container_args`` (pure) says every argument it gets, from the model alone, so
  the L4 tests create their container in a real dockerd from the very same dictionary.

An image's needs (document root, port, writable paths, capabilities) come from ``IMAGE_PROFILES``;
an image without a profile runs with Docker's defaults minus ``UNPROFILED_DROPS`` and a writable root.
``powerState: paused`` is refused by the model (see ``model.guests.DockerGuest``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from ..lb.web_servers import DOCKER_CONTAINER_HTDOCS, DOCKER_HTDOCS
from ..model import DockerGuest as DockerGuestModel
from ..model import Fleet
from .context import GuestContext
from .docker_images import image_repository

LOG_OPTS = {"max-size": "10m", "max-file": "3"}  # json-file logs: at most 30 MB per container
HEALTH_TIMING = {"interval": "10s", "timeout": "3s", "start_period": "10s", "retries": 3}
UNPROFILED_DROPS = ("NET_RAW", "MKNOD", "AUDIT_WRITE")  # rarely needed, often abused
WRITABLE_TMPFS = "rw,noexec,nosuid,size=16m"


@dataclass(frozen=True)
class ImageProfile:
    """What a known image needs to run with a read-only root and only the capabilities it uses."""

    docroot: str  # where the tier's page directory is mounted (read-only)
    port: int  # where it serves inside the container
    tmpfs: tuple[str, ...]  # the paths it writes at run time
    capabilities: tuple[str, ...]  # everything else is dropped


IMAGE_PROFILES = {
    # The official httpd image: the master binds :80 as root, switches its children to `daemon`
    # (SETUID/SETGID), signals them (KILL) and hands them its lock files (CHOWN); it writes only
    # its pid file and cgid socket under logs/ (its log lines go to stdout/stderr).
    "httpd": ImageProfile(
        docroot=DOCKER_CONTAINER_HTDOCS,
        port=80,
        tmpfs=("/usr/local/apache2/logs", "/tmp"),
        capabilities=("CHOWN", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID"),
    ),
}


def image_profile(image: str) -> ImageProfile | None:
    return IMAGE_PROFILES.get(image_repository(image))


def health_check_command(path: str, port: int, status: int) -> list[str]:
    """The page over HTTP from inside the container, with bash builtins only (/dev/tcp): the httpd
    image has bash but neither curl nor wget."""
    request = f"GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n"
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} && printf {shlex.quote(request)} >&3"
        f' && read -r _ code _ <&3 && [ "$code" = {status} ]'
    )
    return ["CMD", "bash", "-c", script]


def provider_cpus(vcpus: int) -> str:
    """``cpus`` in the form pulumi-docker reads it back, so a deployed container shows no diff.

    The provider (kreuzwerker/terraform-provider-docker, bundled by pulumi-docker 5) stores the
    container's NanoCPUs as ``nanoInt64ToDecimalString`` prints them: the value with nine decimals,
    then "N.0" when that string holds exactly nine zeros, else trailing zeros trimmed (so 10 CPUs
    read back as "10."). ``cpus`` is ForceNew: any other spelling ("1" for "1.0") is a perpetual
    diff that replaces the container on every ``up``.
    """
    text = f"{vcpus}.{'0' * 9}"
    return f"{vcpus}.0" if text.count("0") == 9 else text.rstrip("0")


def capability_names(names) -> list[str]:
    """Capabilities as dockerd reports them (``CAP_CHOWN``; ``ALL`` as is): pulumi-docker reads them
    back from the container, and ``capabilities`` is ForceNew, so ``CHOWN`` is a replacement at the
    first ``up`` after a refresh."""
    return [n if n == "ALL" or n.startswith("CAP_") else f"CAP_{n}" for n in names]


def is_web_server(guest: DockerGuestModel, fleet: Fleet) -> bool:
    lb = fleet.load_balancer
    return lb is not None and guest.name in (*lb.backends, *lb.backups)


def container_args(guest: DockerGuestModel, fleet: Fleet) -> dict[str, Any]:
    """Every argument of the guest's ``docker.Container`` except ``image`` (the pulled image's id),
    as plain values with the provider's snake_case names. Pure."""
    profile = image_profile(guest.image)
    running = guest.power_state == "running"
    args: dict[str, Any] = {
        "name": guest.name,
        "hostname": guest.name,
        "domainname": fleet.domain,
        "restart": guest.restart,
        "start": running,
        "must_run": running,
        "memory": guest.memory_mib,  # the provider takes MB
        "memory_swap": guest.memory_mib,  # equal to memory: no swap on top
        "cpus": provider_cpus(guest.vcpus),
        "envs": [f"{key}={value}" for key, value in sorted(guest.env.items())],
        "log_driver": "json-file",
        "log_opts": dict(LOG_OPTS),
        "privileged": False,
        "security_opts": ["no-new-privileges:true"],
        "labels": [{"label": "virtfleet.guest", "value": guest.name}],
    }
    if guest.command is not None:
        args["command"] = list(guest.command)
    if guest.ports:
        args["ports"] = [
            {"internal": p.container_port, "external": p.host_port, "ip": str(p.host_ip), "protocol": p.protocol}
            for p in guest.ports
        ]
    if guest.network is not None:
        # The host's Docker network on its LAN bridge (hosts.bridge_network) carries the bridge's
        # name; it is the container's only network. network_mode stays the provider's default
        # ("bridge"): pulumi-docker creates the container there, disconnects it and connects it to
        # each networks_advanced entry with its address. Naming the LAN network as network_mode too
        # attaches it at create with an automatic address, and dockerd then ignores the connect
        # that carries ipv4_address: the container answers at the wrong address.
        args["networks_advanced"] = [{"name": guest.network.bridge, "ipv4_address": str(guest.network.ip)}]
    if profile is not None:
        args["read_only"] = True
        args["tmpfs"] = {path: WRITABLE_TMPFS for path in profile.tmpfs}
        args["capabilities"] = {"drops": ["ALL"], "adds": capability_names(profile.capabilities)}
    else:
        args["read_only"] = False
        args["capabilities"] = {"drops": capability_names(UNPROFILED_DROPS)}
    if is_web_server(guest, fleet):
        lb = fleet.load_balancer
        args["volumes"] = [
            {
                "host_path": DOCKER_HTDOCS.format(guest=guest.name),
                "container_path": profile.docroot if profile else DOCKER_CONTAINER_HTDOCS,
                "read_only": True,
            }
        ]
        port = profile.port if profile else lb.backend_port
        check = health_check_command(lb.health_check.path, port, lb.health_check.expect_status)
        args["healthcheck"] = {"tests": check, **HEALTH_TIMING}
    return args


class DockerGuest(pulumi.ComponentResource):
    """Type ``virtfleet:guest:DockerGuest``. Outputs: ``name``, ``host``, ``ip``, ``image_digest``,
    ``container_id``."""

    def __init__(self, guest: DockerGuestModel, *, context: GuestContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__("virtfleet:guest:DockerGuest", guest.name, None, opts)
        host = context.host
        if host.docker_provider is None:
            raise ValueError(f"guest {guest.name}: host {host.host.name} has no docker role (no docker provider)")
        image = context.docker_images.image(host, guest.image)
        depends_on: list = [image, *host.ready, *context.roll_after]
        if guest.network is not None:
            depends_on.append(host.docker_networks[guest.network.bridge])
        self.container = docker.Container(
            guest.name,
            # The reference the stack gives (known at preview, so the policy pack judges it then), not the
            # pulled image's id: pulumi-docker reads back the reference a container was created with
            # (``Config.Image``), so this is no diff; the pull comes first (depends_on).
            image=guest.image,
            **container_args(guest, context.fleet),
            opts=pulumi.ResourceOptions(
                parent=self, provider=host.docker_provider, depends_on=depends_on, protect=guest.protect
            ),
        )
        self.name = pulumi.Output.from_input(guest.name)
        self.host = pulumi.Output.from_input(guest.host)
        self.ip = pulumi.Output.from_input(str(guest.network.ip) if guest.network else None)
        self.image_digest = image.repo_digest
        self.container_id = self.container.id
        self.register_outputs(
            {
                "name": self.name,
                "host": self.host,
                "ip": self.ip,
                "imageDigest": self.image_digest,
                "containerId": self.container_id,
            }
        )

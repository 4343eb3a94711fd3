"""The tier's web servers, rendered (pure): per guest type, the step that gives a guest httpd and its page.

How httpd reaches a guest depends on what its type allows:

- kvm: at first boot from the guest's own seed (``first_boot``: cloud-init user-data, or the
  kickstart on the installer path), so it serves without anyone logging in; then the same SSH
  step as below keeps it converged (it finds everything in place, and re-runs when the page
  changes: a seed only acts once);
- xen, virtualbox: over SSH to the guest's own address (``webserver-httpd``);
- openvz: on the OpenVZ host, ``vzctl exec2 <ctid>`` runs that same step inside the container;
- docker: the guest runs an httpd image; its page goes to a directory on the Docker host that the
  guest's container mounts as its htdocs (``DOCKER_HTDOCS``), so the tier renders only the page.

``files`` of each ``WebServerStep`` are what end up inside the guest (for the offline plan and the
tests); ``step`` is what runs where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from ..model import DockerGuest, Fleet, Guest, LoadBalancer, OpenvzGuest
from ..osfamily import os_family
from ..remote.scripts import RemoteFile, RenderedStep, render_step
from ..render import digest, render

DOCROOT = "/var/www/html"
DOCKER_HTDOCS = "/var/lib/virtfleet/docker/{guest}/htdocs"  # on the Docker host
DOCKER_CONTAINER_HTDOCS = "/usr/local/apache2/htdocs"  # the official httpd image's document root
OPENVZ_INNER = "/var/lib/virtfleet/openvz/{ctid}/webserver-httpd.sh"  # on the OpenVZ host
SEED_FIREWALL_PORTS = (80, 443)
SSH_TYPES = ("kvm", "xen", "virtualbox")


@dataclass(frozen=True)
class WebServerStep:
    guest: Guest
    runs_on: str  # the machine the step's script runs on: the guest, or its host
    over_ssh_to_guest: bool  # True: connect to the guest's address; False: to its host
    step: RenderedStep
    files: tuple[RemoteFile, ...]  # what the guest serves, at its path inside the guest


def page_files(guest: Guest, lb: LoadBalancer, fleet: Fleet, docroot: str) -> tuple[RemoteFile, ...]:
    """The page naming the guest, plus a health page when the check asks for another path."""
    page = render(
        "index.html.j2",
        name=guest.name,
        fqdn=f"{guest.name}.{fleet.domain}",
        address=fleet.machine_address(guest.name),
        guest_type=guest.type,
        host=guest.host,
    )
    files = [RemoteFile(f"{docroot}/index.html", page)]
    check_path = lb.health_check.path.split("?", 1)[0]
    if check_path not in ("/", "/index.html"):
        target = f"{docroot}{check_path}" + ("index.html" if check_path.endswith("/") else "")
        if ".." not in PurePosixPath(target).parts:
            files.append(RemoteFile(target, "ok\n"))
    return tuple(files)


def _web_ports(lb: LoadBalancer) -> list[int]:
    return sorted({*SEED_FIREWALL_PORTS, lb.backend_port})


@dataclass(frozen=True)
class FirstBoot:
    """What a KVM web server gets from its own seed: packages, files, the ports to open, and shell
    commands run once the packages and files are in place (cloud-init runcmd, kickstart %post)."""

    packages: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    ports: tuple[int, ...]
    commands: tuple[str, ...]


def first_boot(guest: Guest, fleet: Fleet) -> FirstBoot | None:
    """The tier's part of a KVM guest's seed, or None when the guest is none of its web servers.

    Enabling httpd is the seed's own business (``systemctl enable --now`` in cloud-init,
    ``services --enabled`` in a kickstart, where nothing may start yet)."""
    lb = fleet.load_balancer
    if lb is None or guest.type != "kvm" or guest.name not in (*lb.backends, *lb.backups):
        return None
    listen = f"sed -i -E 's/^Listen [0-9]+$/Listen {lb.backend_port}/' /etc/httpd/conf/httpd.conf"
    return FirstBoot(
        packages=(os_family(guest.os_family).httpd_package,),
        files=page_files(guest, lb, fleet, DOCROOT),
        ports=tuple(_web_ports(lb)),
        # Files written before the package carry /var's SELinux label: relabel the docroot.
        commands=(*([listen] if lb.backend_port != 80 else []), f"restorecon -R {DOCROOT}"),
    )


def guest_definition(guest: Guest) -> str:
    """The guest's definition as the stack gives it, digested, but for ``protect`` (Pulumi's alone: it
    never touches the guest) and the fields at their defaults (a later virtfleet with a new field
    changes no digest). A web server's step carries it, so the step runs again after any change that
    may recreate or restart the guest (between the server's drain and ready steps when the tier rolls:
    ``roll``)."""
    return digest(guest.model_dump_json(by_alias=True, exclude={"protect"}, exclude_defaults=True))


def _httpd_step(guest: Guest, lb: LoadBalancer, fleet: Fleet, *, embed: bool) -> RenderedStep:
    family = os_family(guest.os_family)
    ports = _web_ports(lb)
    return render_step(
        guest.name,
        "webserver-httpd",
        "webserver-httpd",
        files=page_files(guest, lb, fleet, DOCROOT),
        lock=True,  # the package manager
        secret=embed,  # embeds the files in the script (not secret: for vzctl exec)
        install_files=False,  # installed by the script after the package, which labels the docroot
        package=family.httpd_package,
        package_manager=family.package_manager,
        port=lb.backend_port,
        firewall_ports=[f"{p}/tcp" for p in ports],
        guest_definition=guest_definition(guest),
    )


def _over_ssh(guest: Guest, lb: LoadBalancer, fleet: Fleet) -> WebServerStep:
    step = _httpd_step(guest, lb, fleet, embed=False)
    return WebServerStep(guest, guest.name, True, step, step.files)


def _openvz(guest: OpenvzGuest, lb: LoadBalancer, fleet: Fleet) -> WebServerStep:
    inner = _httpd_step(guest, lb, fleet, embed=True)
    inner_path = OPENVZ_INNER.format(ctid=guest.ctid)
    step = render_step(
        guest.host,
        f"webserver-{guest.name}",
        "webserver-openvz",
        files=[RemoteFile(inner_path, inner.create, 0o700)],
        guest=guest.name,
        ctid=guest.ctid,
        # A re-created container (new OS template) changes this step: it runs again inside it.
        ostemplate=guest.ostemplate,
        inner_path=inner_path,
        inner_delete=inner.delete,
    )
    return WebServerStep(guest, guest.host, False, step, inner.files)


def _docker(guest: DockerGuest, lb: LoadBalancer, fleet: Fleet) -> WebServerStep:
    htdocs = DOCKER_HTDOCS.format(guest=guest.name)
    # Every docker guest's htdocs sit under one root that a single SELinux file-context rule
    # labels container_file_t (a path without regex characters: the spec needs no escaping).
    root = DOCKER_HTDOCS.partition("/{guest}/")[0]
    step = render_step(
        guest.host,
        f"webserver-{guest.name}",
        "webserver-docker",
        files=page_files(guest, lb, fleet, htdocs),
        # The host's SELinux policy store is shared: the engine runs two docker guests' steps on one
        # host at once, and both would add (or delete) the same file-context rule; the second
        # `semanage fcontext -a` fails "already defined". The host lock makes them take turns.
        lock=True,
        guest=guest.name,
        htdocs=htdocs,
        guest_dir=str(PurePosixPath(htdocs).parent),
        fcontext_root=root,
        fcontext_spec=f"{root}(/.*)?",
        container_htdocs=DOCKER_CONTAINER_HTDOCS,
        guest_definition=guest_definition(guest),
    )
    return WebServerStep(guest, guest.host, False, step, page_files(guest, lb, fleet, DOCKER_CONTAINER_HTDOCS))


def web_server_step(guest: Guest, lb: LoadBalancer, fleet: Fleet) -> WebServerStep:
    """The step that makes ``guest`` one of the tier's web servers, the way its type allows."""
    if isinstance(guest, OpenvzGuest):
        return _openvz(guest, lb, fleet)
    if isinstance(guest, DockerGuest):
        return _docker(guest, lb, fleet)
    if guest.type in SSH_TYPES:
        return _over_ssh(guest, lb, fleet)
    raise ValueError(f"guest {guest.name}: the HAProxy tier has no web server step for {guest.type} guests")


def web_server_steps(lb: LoadBalancer, fleet: Fleet) -> list[WebServerStep]:
    return [web_server_step(fleet.guest(name), lb, fleet) for name in (*lb.backends, *lb.backups)]

"""A real dockerd (Debian's docker.io) inside a lab machine, and the container arguments the
DockerGuest component gives pulumi-docker, handed to it through the Engine API.

How dockerd runs in the lab (see /work/shared/ENGINE-NOTES.md): entered with ``nsenter --net``
into the machine's namespace plus ``unshare --mount`` — not ``ip netns exec``, which remounts /sys
and hides the cgroup hierarchies ("Devices cgroup isn't mounted"). Everything it keeps lives in
the lab's temp dir: its own --data-root, --exec-root, socket, pidfile and (its own containerd)
state; --iptables=false leaves the host's netfilter alone and its docker0 is the machine's own; the
containers' cgroups sit under a parent named after the lab, removed by ``stop``. In its private
mount namespace, /run is the machine's private /run and /var/lib is the machine's ``host_root``
/var/lib, so a bind mount the component asks for (``/var/lib/virtfleet/docker/<guest>/htdocs``)
is used as written and resolves inside the lab.

``create_container`` maps ``container_args`` (the provider's argument names) onto the Engine API
call that the provider makes; an argument it does not know fails the test, so a new argument in
the component cannot go untested by accident.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from lab.images import web_image_tar

from .netlab import Machine, NetLabError, wait_until
from .tools import require_tool

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _import_docker():
    try:
        import docker
    except ImportError:  # requirements-dev.txt installs it; a bare interpreter may not have it
        from .tools import missing

        missing("the docker Python package (requirements-dev.txt) is not installed")
    return docker


class LabDockerd:
    """dockerd on ``machine``; ``start``/``stop`` (also a restart: stop, then start again)."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.dockerd = require_tool("dockerd")
        require_tool("nsenter")
        self.root = machine.workdir / "dockerd"
        self.host_root = machine.workdir / "host-root"  # where the machine's /var/lib really is
        self.socket = self.root / "docker.sock"
        self.cgroup_parent = f"{machine.namespace}-docker"
        self.proc: subprocess.Popen | None = None
        self.client = None
        for directory in (self.root / "data", self.root / "exec", self.host_root / "var" / "lib"):
            directory.mkdir(parents=True, exist_ok=True)

    def host_path(self, path: str) -> Path:
        """Where a file dockerd and its containers see at ``path`` (under /var/lib) really is."""
        if not path.startswith("/var/lib/"):
            raise NetLabError(f"{path}: only /var/lib of the lab's docker host is private")
        return self.host_root / path.lstrip("/")

    def write_host_file(self, path: str, content: str) -> Path:
        real = self.host_path(path)
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_text(content)
        return real

    def start(self) -> None:
        binds = {"/run": self.machine.path("/run"), "/var/lib": self.host_root / "var" / "lib"}
        dockerd = [
            self.dockerd,
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--host=unix://{self.socket}",
            f"--pidfile={self.root / 'docker.pid'}",
            "--iptables=false",
            "--ip-masq=false",
            f"--cgroup-parent={self.cgroup_parent}",
            "--log-level=warn",
        ]
        argv = self.machine.command(dockerd, binds=binds, host_sys=True)
        log = self.machine.workdir / "logs" / "dockerd.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.proc.label = "dockerd"  # type: ignore[attr-defined]
        self.machine.lab.track(self.proc)
        docker = _import_docker()

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise NetLabError(f"dockerd exited {self.proc.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(Exception):  # version="auto" asks the daemon at once
                self.client = docker.DockerClient(base_url=f"unix://{self.socket}", version="auto", timeout=30)
                return self.client.ping()
            return False

        if not wait_until(answers, START_TIMEOUT_S, 0.2):
            raise NetLabError(f"dockerd did not answer within {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")

    def stop(self, *, remove_containers: bool = True) -> None:
        """SIGTERM dockerd, which stops its containers (no live-restore) and its containerd; with
        ``remove_containers`` (the final stop) every container goes first and the cgroup parent after."""
        if self.proc is None:
            return
        if remove_containers and self.client is not None:
            with contextlib.suppress(Exception):
                for container in self.client.containers.list(all=True):
                    container.remove(force=True)
        if self.client is not None:
            self.client.close()
            self.client = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None
        if remove_containers:
            self.remove_cgroups()

    def remove_cgroups(self) -> None:
        """The (now empty) cgroup parent dockerd made in every hierarchy."""
        for parent in CGROUP_ROOT.glob(f"*/{self.cgroup_parent}"):
            for directory in sorted(parent.rglob("*"), reverse=True):
                if directory.is_dir():
                    with contextlib.suppress(OSError):
                        directory.rmdir()
            with contextlib.suppress(OSError):
                parent.rmdir()

    def leftover_cgroups(self) -> list[Path]:
        return sorted(CGROUP_ROOT.glob(f"*/{self.cgroup_parent}"))

    # -- images and containers ---------------------------------------------------------------

    def import_web_image(self, reference: str, *, docroot: str, port: int, extra_dirs: tuple[str, ...] = ()) -> str:
        """A tiny web server image tagged ``reference`` (a digest pin is dropped: an imported image has
        none), the lab's (``lab.images.web_image_tar``: busybox httpd serving ``docroot`` on ``port``,
        bash for the health check). Returns the image id."""
        require_tool("busybox")
        require_tool("bash-static")
        local = reference.split("@", 1)[0]
        repository, _, tag = local.partition(":")
        changes = ["ENV PATH=/bin", f'CMD ["busybox", "httpd", "-f", "-p", "{port}", "-h", "{docroot}"]']
        self.client.api.import_image_from_data(
            web_image_tar(docroot, extra_dirs), repository=repository, tag=tag or "latest", changes=changes
        )
        return self.client.images.get(local).id

    def create_network(self, args: dict[str, Any]) -> str:
        """``docker_network_args`` through the Engine API, as pulumi-docker's Network does."""
        from docker.types import IPAMConfig, IPAMPool

        args = dict(args)

        pools = [IPAMPool(subnet=c["subnet"], gateway=c["gateway"]) for c in args.pop("ipam_configs")]
        network = self.client.networks.create(
            args.pop("name"),
            driver=args.pop("driver"),
            options=args.pop("options"),
            ipam=IPAMConfig(pool_configs=pools),
        )
        if args:
            raise AssertionError(f"network arguments the lab does not map yet: {sorted(args)}")
        return network.id

    def create_container(self, image: str, args: dict[str, Any]) -> str:
        """``container_args`` through the Engine API, as pulumi-docker's Container does; started
        when ``start`` says so. Returns the container id."""
        return create_container(self.client, image, args)


def _duration_ns(text: str) -> int:
    units = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * units[unit]
    raise AssertionError(f"duration {text!r}: want <n>ms|s|m|h")


def create_container(client, image: str, args: dict[str, Any]) -> str:
    """Map the provider's Container arguments onto the Engine API (what the provider sends)."""
    args = dict(args)
    api = client.api
    mib = 1024 * 1024
    start = args.pop("start")
    must_run = args.pop("must_run")
    if must_run and not start:
        raise AssertionError("must_run without start: the provider would fail on its first refresh")
    capabilities = args.pop("capabilities", {})
    ports = args.pop("ports", [])
    networks = args.pop("networks_advanced", [])
    volumes = args.pop("volumes", [])
    health = args.pop("healthcheck", None)
    host_config = api.create_host_config(
        restart_policy={"Name": args.pop("restart")},
        mem_limit=args.pop("memory") * mib,
        memswap_limit=args.pop("memory_swap") * mib,
        nano_cpus=int(float(args.pop("cpus")) * 10**9),
        log_config={"Type": args.pop("log_driver"), "Config": args.pop("log_opts")},
        privileged=args.pop("privileged"),
        security_opt=args.pop("security_opts"),
        read_only=args.pop("read_only"),
        tmpfs=args.pop("tmpfs", None),
        cap_drop=capabilities.pop("drops", None),
        cap_add=capabilities.pop("adds", None),
        binds=[f"{v['host_path']}:{v['container_path']}:{'ro' if v['read_only'] else 'rw'}" for v in volumes],
        port_bindings={f"{p['internal']}/{p['protocol']}": (p["ip"], p["external"]) for p in ports},
        network_mode=args.pop("network_mode", "bridge"),  # the provider's default
    )
    if capabilities:
        raise AssertionError(f"capabilities the lab does not map yet: {sorted(capabilities)}")
    healthcheck = None
    if health is not None:
        healthcheck = {
            "test": health["tests"],
            "interval": _duration_ns(health["interval"]),
            "timeout": _duration_ns(health["timeout"]),
            "start_period": _duration_ns(health["start_period"]),
            "retries": health["retries"],
        }
    created = api.create_container(
        image,
        name=args.pop("name"),
        hostname=args.pop("hostname"),
        domainname=args.pop("domainname"),
        environment=args.pop("envs"),
        command=args.pop("command", None),
        labels={label["label"]: label["value"] for label in args.pop("labels")},
        ports=[(p["internal"], p["protocol"]) for p in ports] or None,
        healthcheck=healthcheck,
        host_config=host_config,
    )
    if args:
        api.remove_container(created["Id"], force=True)
        raise AssertionError(f"container arguments the lab does not map yet: {sorted(args)}")
    # As the provider does (resourceDockerContainerCreate): networks_advanced after the create, each
    # connected with its address once the container has left the default bridge network.
    if networks:
        try:
            api.disconnect_container_from_network(created["Id"], "bridge")
        except Exception as err:  # the provider ignores exactly this one
            if "is not connected to the network bridge" not in str(err):
                raise
        for n in networks:
            api.connect_container_to_network(created["Id"], n["name"], ipv4_address=n["ipv4_address"])
    if start:
        api.start(created["Id"])
    return created["Id"]


def wait_healthy(client, container_id: str, timeout: float) -> str:
    """Poll (bounded) until the container's health check reports healthy; return the last status."""
    status = {"value": ""}

    def healthy() -> bool:
        state = client.api.inspect_container(container_id)["State"]
        status["value"] = state.get("Health", {}).get("Status", "")
        return status["value"] == "healthy"

    wait_until(healthy, timeout, 0.5)
    return status["value"]


def add_docker_host(lab, host) -> Machine:
    """A lab machine for the fleet's ``host`` as the bridge step leaves it: eth0 a port of the host's
    bridge, the bridge holding the host's address."""
    (bridge,) = host.bridges
    machine = lab.add_machine(host.name, [])
    ns = machine.namespace
    lab.ip("-n", ns, "link", "add", bridge.name, "type", "bridge")
    lab.ip("-n", ns, "link", "set", "eth0", "master", bridge.name)
    lab.ip("-n", ns, "addr", "add", str(bridge.address), "dev", bridge.name)
    lab.ip("-n", ns, "link", "set", bridge.name, "up")
    return machine


@contextlib.contextmanager
def docker_web_server(lab, fleet, guest_name: str):
    """The fleet's Docker web server ``guest_name`` for real in ``lab``: its host as a lab machine
    with dockerd, the image built locally and tagged as the guest's image, the tier's page where
    the tier's step writes it, network and container from the components' own arguments.

    Yields ``(dockerd, container_id, page_text)``; stops dockerd (containers removed) on exit."""
    from components.guests.docker import container_args, image_profile
    from components.hosts.bridge_network import docker_network_args
    from components.lb.web_servers import web_server_step

    guest = fleet.guest(guest_name)
    host = next(h for h in fleet.hosts if h.name == guest.host)
    profile = image_profile(guest.image)
    if profile is None:
        raise AssertionError(f"{guest.image}: the lab builds web images for profiled images only")
    dockerd = LabDockerd(add_docker_host(lab, host))
    try:
        dockerd.start()
        step = web_server_step(guest, fleet.load_balancer, fleet).step
        (page,) = [f for f in step.files if f.path.endswith("/index.html")]
        dockerd.write_host_file(page.path, page.content)
        image = dockerd.import_web_image(guest.image, docroot=profile.docroot, port=profile.port,
                                         extra_dirs=profile.tmpfs)  # fmt: skip
        dockerd.create_network(docker_network_args(host.bridge(guest.network.bridge)))
        yield dockerd, dockerd.create_container(image, container_args(guest, fleet)), page.content
    finally:
        dockerd.stop()
    if dockerd.leftover_cgroups():
        raise NetLabError(f"cgroups left behind: {dockerd.leftover_cgroups()}")

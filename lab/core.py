"""``Lab``: a committed stack deployed for real on this machine (``make lab`` / ``make lab-down``).

One lab = one directory (``.lab/<stack>/`` by default: keys, views, logs, the Pulumi state and
passphrase, ``lab.json``) and the namespaces named after its prefix. ``create`` builds the
machines, ``pulumi`` runs the project's ``engine/pulumi`` as the operator, ``teardown`` removes
everything; all of them work from ``lab.json`` alone, so a later process (``make lab-down``) can
finish what an earlier one (``make lab``) started, and each is safe to run twice.

The operator is a namespace of its own at the stack's gateway address: ``pulumi`` runs there
(the engine talks to its plugins over that namespace's loopback), with the operator's
``~/.virtfleet`` and ``~/.ssh`` bound to the lab's directory: OpenSSH expands ``~`` from the
password database, so the files the program writes for the providers land in the lab, and nobody's
own SSH configuration changes what the lab proves. It also serves the lab's images (nginx, HTTP
``Range`` as any real image server) with their sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from . import net
from .images import import_web_image, make_cloud_image, make_install_tree, push_to_registry
from .stack import IMAGE_PORT, Topology, lab_values, read_values, source_fleet, topology, write_stack_file
from .view import HostView, ViewSpec

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSPHRASE = "virtfleet lab passphrase (not a secret of anything but this lab)\n"
NGINX_CONF = """\
daemon off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    types {{ application/octet-stream qcow2 img iso; }}
    server {{
        listen {address}:{port};
        root {root};
        autoindex on;
    }}
}}
"""


REGISTRY_PORT = 5000
REGISTRY_CONF = """\
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: {address}:{port}
"""


class LabError(RuntimeError):
    pass


def _exited(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie its parent has not reaped yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


def _say(message: str) -> None:
    print(message, flush=True)


class Lab:
    """A lab of stack ``source`` (a committed ``Pulumi.<source>.yaml``), deployed as stack ``stack``."""

    def __init__(
        self,
        source: str = "dev",
        *,
        stack: str | None = None,
        prefix: str | None = None,
        directory: Path | None = None,
        project: Path = ROOT,
        progress: Callable[[str], None] = _say,
    ) -> None:
        self.source = source
        self.stack = stack or ("lab" if source == "dev" else f"lab-{source}")
        self.prefix = prefix or ("vflab" if source == "dev" else f"vflab{source[:5]}")
        self.dir = (directory or ROOT / ".lab" / self.stack).resolve()
        self.project = project
        self.say = progress
        self.topology: Topology | None = None
        self.views: dict[str, HostView] = {}
        self.registry: str | None = None  # host:port of the lab's registry, when a Docker image is pinned
        self._load()

    # -- paths and names -----------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.dir / "lab.json"

    @property
    def operator_ns(self) -> str:
        return f"{self.prefix}-op"

    @property
    def operator_key(self) -> Path:
        return self.dir / "operator" / "id_ed25519"

    @property
    def cgroup(self) -> str:
        return f"virtfleet-{self.prefix}"

    @property
    def stack_file(self) -> Path:
        return self.project / f"Pulumi.{self.stack}.yaml"

    def _load(self) -> None:
        if not self.state_file.exists():
            return
        saved = json.loads(self.state_file.read_text())
        self.prefix = saved["prefix"]
        self.registry = saved.get("registry")
        self.project = Path(saved["project"])
        values = read_values(self.project / f"Pulumi.{saved['source']}.yaml")
        self.topology = topology(source_fleet(values))
        for name, pid in saved["views"].items():  # (machines that only serve a page have no view)
            machine = next(m for m in self.topology.machines if m.name == name)
            view = HostView(self._spec(machine), self.dir / "machines" / name, self.cgroup)
            view.pid = pid
            self.views[name] = view

    def _save(self, nginx_pid: int) -> None:
        self.state_file.write_text(
            json.dumps(
                {
                    "source": self.source,
                    "stack": self.stack,
                    "prefix": self.prefix,
                    "project": str(self.project),
                    "views": {name: view.pid for name, view in self.views.items()},
                    "nginx": nginx_pid,
                    "registry": self.registry,
                },
                indent=2,
            )
        )

    def _spec(self, machine) -> ViewSpec:
        key = (self.operator_key.with_suffix(".pub")).read_text() if self.operator_key.exists() else ""
        return ViewSpec(
            name=machine.name,
            namespace=f"{self.prefix}-{machine.name}",
            os_family=machine.os_family,
            libvirt=machine.libvirt,
            docker=machine.docker,
            cpu_virt=machine.cpu_virt,
            web_root=machine.web_root,
            authorized_keys=(key,) if key else (),
            xen=machine.xen,
            vz_kernel=machine.vz_kernel,
            registry=self.registry if machine.docker else None,
        )

    # -- state ---------------------------------------------------------------------------------

    def running(self) -> bool:
        """Every view of the lab is alive (a reboot or a kill leaves lab.json behind, not the lab)."""
        return bool(self.views) and all(v.init_pid() is not None for v in self.views.values())

    def leftovers(self) -> list[str]:
        return net.lab_namespaces(self.prefix)

    # -- building ------------------------------------------------------------------------------

    def create(self) -> None:
        """Machines, views, image server, images and the stack; a lab already running is kept."""
        if self.running():
            self.say(f"lab {self.stack}: already running (prefix {self.prefix}); reusing it")
            return
        if self.state_file.exists() or self.leftovers():
            self.say(f"lab {self.stack}: leftovers of an earlier lab found; removing them first")
            self.teardown(destroy=False)
        self.dir.mkdir(parents=True, exist_ok=True)
        values = read_values(self.project / f"Pulumi.{self.source}.yaml")
        self.topology = topo = topology(source_fleet(values))
        (self.dir / "operator" / "virtfleet").mkdir(parents=True, exist_ok=True)
        (self.dir / "operator" / "ssh").mkdir(parents=True, exist_ok=True)
        if not self.operator_key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "virtfleet-lab-operator",
                 "-f", str(self.operator_key)], check=True,
            )  # fmt: skip
        self.say(f"[1/5] network: switch and {len(topo.machines) + 1} machines ({self.prefix}-*)")
        net.create_switch(self.prefix)
        net.add_machine(self.prefix, 0, "op", [topo.operator])
        for index, machine in enumerate(topo.machines, start=1):
            net.add_machine(self.prefix, index, machine.name, list(machine.addresses), machine.interface)
        if any("@sha256:" in ref for host in topo.machines for ref in self._docker_images(values, host.name)):
            self.registry = f"{topo.operator_ip}:{REGISTRY_PORT}"
        self.say("[2/5] machines: sshd views with the EL fakes; real libvirtd/dockerd where the stack has them")
        for machine in topo.machines:
            if machine.serves_from:
                host, _ = machine.serves_from
                self.say(f"      {machine.name} {machine.addresses[0]}: serves its page from {host}'s container root")
                continue
            view = HostView(self._spec(machine), self.dir / "machines" / machine.name, self.cgroup)
            view.prepare()
            view.start()
            self.views[machine.name] = view
            what = [w for w, on in (("libvirtd+QEMU", machine.libvirt), ("dockerd", machine.docker)) if on]
            kind = "stand-in guest (no OS boots here)" if machine.stand_in else "host"
            self.say(f"      {machine.name} {machine.addresses[0]}: {kind}" + (f", {', '.join(what)}" if what else ""))
        self._known_hosts()
        self.say(f"[3/5] images: generated cloud image and install tree, served on {topo.operator_ip}:{IMAGE_PORT}")
        www = self.dir / "www"
        image = make_cloud_image(www)
        make_install_tree(www)
        nginx_pid = self._start_image_server(www)
        if self.registry:
            self._start_registry()
        pinned: dict[str, str] = {}
        for machine in topo.machines:
            if machine.docker:
                for reference in self._docker_images(values, machine.name):
                    local = reference.split("@", 1)[0]
                    import_web_image(self.views[machine.name], local)
                    if "@" in reference:
                        pinned[reference] = push_to_registry(self.views[machine.name], local, self.registry)
                    self.say(f"      {machine.name}: image {pinned.get(reference, local)} (busybox httpd, built here)")
        self._save(nginx_pid)
        self.say(f"[4/5] stack {self.stack}: {self.stack_file.name} from Pulumi.{self.source}.yaml")
        self._write_stack(values, image, pinned)

    def _docker_images(self, values: dict, host: str) -> list[str]:
        return sorted(
            {g["image"] for g in values.get("guests") or [] if g.get("type") == "docker" and g["host"] == host}
        )

    def _known_hosts(self) -> None:
        lines = []
        for machine in self.topology.machines:
            if machine.serves_from:
                continue
            for address in machine.addresses:
                lines.append(f"{address.split('/')[0]} {self.views[machine.name].host_public_key}\n")
        (self.dir / "known_hosts").write_text("".join(lines))

    def _start_image_server(self, www: Path) -> int:
        directory = self.dir / "nginx"
        (directory / "tmp").mkdir(parents=True, exist_ok=True)
        conf = directory / "nginx.conf"
        conf.write_text(NGINX_CONF.format(d=directory, address=self.topology.operator_ip, port=IMAGE_PORT, root=www))
        argv = ["nginx", "-c", str(conf), "-p", str(directory)]
        url = f"http://{self.topology.operator_ip}:{IMAGE_PORT}/"
        return self._serve(argv, directory / "stdout.log", url, "image server", errors=directory / "error.log")

    def _start_registry(self) -> None:
        """Debian's docker-registry (the Distribution registry) on the operator's address, plain HTTP."""
        directory = self.dir / "registry"
        (directory / "data").mkdir(parents=True, exist_ok=True)
        conf = directory / "config.yml"
        address = self.topology.operator_ip
        conf.write_text(REGISTRY_CONF.format(root=directory / "data", address=address, port=REGISTRY_PORT))
        self._serve(["docker-registry", "serve", str(conf)], directory / "registry.log", f"http://{self.registry}/v2/",
                    "registry")  # fmt: skip

    def _serve(self, argv: list[str], log_path: Path, url: str, what: str, *, errors: Path | None = None) -> int:
        """Start ``argv`` in the operator's namespace and wait (10 s at most) until ``url`` answers there;
        its pid. ``errors``: the log to quote when it exits (default: ``log_path``)."""
        enter = ["nsenter", f"--net=/run/netns/{self.operator_ns}", "--"]
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        with log:
            proc = subprocess.Popen([*enter, *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)  # fmt: skip
        probe = [*enter, "curl", "-fsS", "-o", "/dev/null", url]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(f"the lab's {what} exited {proc.returncode}: {(errors or log_path).read_text()[-2000:]}")
            if subprocess.run(probe, capture_output=True, timeout=10).returncode == 0:
                return proc.pid
            time.sleep(0.1)
        raise LabError(f"the lab's {what} did not answer within 10 s")

    def _write_stack(self, values: dict, image: Path, pinned: dict[str, str]) -> None:
        ip = self.topology.operator_ip
        hosts = [m for m in self.topology.machines if not m.stand_in and not m.serves_from]
        lab = lab_values(
            values,
            host_keys={m.name: self.views[m.name].host_public_key for m in hosts},
            image_url=f"http://{ip}:{IMAGE_PORT}/{image.name}",
            image_sha256=hashlib.sha256(image.read_bytes()).hexdigest(),
            install_url=f"http://{ip}:{IMAGE_PORT}/install/",
            docker_images=pinned,
        )
        write_stack_file(
            self.stack_file,
            lab,
            f"lab stack: Pulumi.{self.source}.yaml as `make lab` deploys it on this machine (generated; git-ignored)",
        )
        passphrase = self.dir / "passphrase"
        passphrase.write_text(PASSPHRASE)
        passphrase.chmod(0o600)
        (self.dir / "state").mkdir(exist_ok=True)
        if self.pulumi("stack", "ls", "--json", check=False).stdout.find(f'"name": "{self.stack}"') < 0:
            self.pulumi("stack", "init", self.stack)
        # The key as docs/engine.md says to set it (from a file, on stdin).
        self.pulumi(
            "config", "set", "--secret", "--stack", self.stack, "virtfleet:sshPrivateKey",
            stdin=self.operator_key.read_text(),
        )  # fmt: skip

    # -- running pulumi as the operator --------------------------------------------------------

    def operator_env(self) -> dict[str, str]:
        home = pwd.getpwuid(os.getuid()).pw_dir
        return {
            "PATH": SYSTEM_PATH,
            "HOME": home,
            "LC_ALL": "C.UTF-8",
            "PULUMI_HOME": os.environ.get("PULUMI_HOME", f"{home}/.pulumi"),
            "PULUMI_BACKEND_URL": f"file://{self.dir / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE_FILE": str(self.dir / "passphrase"),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
        }

    def operator_argv(self, argv: list[str]) -> list[str]:
        """``argv`` as the operator: its namespace, its ~/.virtfleet and ~/.ssh bound to the lab's."""
        home = pwd.getpwuid(os.getuid()).pw_dir
        for mount_point in (".virtfleet", ".ssh"):
            Path(home, mount_point).mkdir(mode=0o700, exist_ok=True)
        script = 'mount --bind "$1" "$3/.virtfleet" && mount --bind "$2" "$3/.ssh" && shift 3 && exec "$@"'
        return [
            "nsenter", f"--net=/run/netns/{self.operator_ns}", "--",
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", script, "sh",
            str(self.dir / "operator" / "virtfleet"), str(self.dir / "operator" / "ssh"), home,
            *argv,
        ]  # fmt: skip

    def pulumi(
        self,
        *args: str,
        check: bool = True,
        stdin: str | None = None,
        timeout: float = 1200,
        stream: bool = False,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """The project's engine/pulumi as the operator, in the project (or ``cwd``, another project),
        with ``env`` added to the operator's environment."""
        argv = self.operator_argv([str(ROOT / "engine" / "pulumi"), *args])
        done = subprocess.run(
            argv,
            cwd=cwd or self.project,
            env={**self.operator_env(), **(env or {})},
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=not stream,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise LabError(f"pulumi {' '.join(args)} exited {done.returncode}:\n{readable(done.stdout)}{done.stderr}")
        return done

    def drift(
        self, *args: str, check: bool = True, stream: bool = False, timeout: float = 900
    ) -> subprocess.CompletedProcess:
        """``python -m drift`` of the lab's stack as the operator: its namespace, key, host keys and
        engine (``args``: more options, e.g. ``--json PATH``)."""
        argv = self.operator_argv([
            str(ROOT / ".venv" / "bin" / "python"), "-m", "drift", self.stack, "--stack-file", str(self.stack_file),
            "--identity", str(self.operator_key), "--known-hosts", str(self.dir / "known_hosts"),
            "--pulumi", str(ROOT / "engine" / "pulumi"), *args,
        ])  # fmt: skip
        done = subprocess.run(
            argv, cwd=self.project, env={**self.operator_env(), "PYTHONPATH": str(ROOT)},
            capture_output=not stream, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check and done.returncode not in (0, 2):
            raise LabError(f"drift exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def ssh(
        self, machine: str, command: str, *, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """``command`` on a machine of the lab, over SSH from the operator (as a person would)."""
        address = next(m for m in self.topology.machines if m.name == machine).addresses[0].split("/")[0]
        argv = [
            "nsenter", f"--net=/run/netns/{self.operator_ns}", "--",
            "ssh", "-F", "/dev/null", "-i", str(self.operator_key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.dir / 'known_hosts'}",
            "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", f"root@{address}", "--", command,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise LabError(f"{machine}: {command!r} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    # -- what runs for real after up -----------------------------------------------------------

    def start_services(self) -> str | None:
        """What the fakes' systemctl only records, run for real after an up: Debian's haproxy on the
        tier's node, with the configuration the stack's steps installed there, and each OpenVZ web
        server's page at the container's address (busybox httpd, from the container's root on its
        host: the vzctl fake gives containers no network). Returns the balancer's node."""
        for machine in self.topology.machines:
            if machine.serves_from:
                self._serve_container_page(machine)
        values = read_values(self.stack_file)
        lb = values.get("loadBalancer")
        if not lb:
            return None
        nodes = lb.get("nodes") or [lb["node"]]
        for node in nodes:
            # (the configuration names its own pidfile, /run/haproxy.pid; -sf hands over a running one)
            self.ssh(
                node,
                "set -e; mkdir -p /run/haproxy; haproxy -c -q -f /etc/haproxy/haproxy.cfg; "
                'if [ -s /run/haproxy.pid ] && kill -0 "$(cat /run/haproxy.pid)" 2>/dev/null; then '
                'haproxy -D -f /etc/haproxy/haproxy.cfg -sf "$(cat /run/haproxy.pid)"; '
                "else haproxy -D -f /etc/haproxy/haproxy.cfg; fi",
            )
        if len(nodes) == 2:
            self._start_keepalived(nodes, str(lb["virtualAddress"]))
        return nodes[0]

    def _start_keepalived(self, nodes: list[str], virtual_address: str) -> None:
        """Debian's keepalived on both nodes of a pair, with the keepalived.conf the step installed: the
        primary's first, until it holds the virtual address, then its peer's, until the pair has settled
        with exactly one holder (10 s at most each). Both start as BACKUP with nopreempt, so started
        together either may take the address first (a few ms of start-up decide); one after the other,
        the primary holds it, as the tests expect. keepalived enters the node's network namespace itself
        (``-s``) after opening the kernel's process-event channel, which only the initial network
        namespace has (a real EL node is there); it runs outside the node's view, so it counts every
        haproxy of the lab (the L4 pair lab gives each node's haproxy a name of its own and measures the
        failover) and finds no notify script (the view holds it)."""
        for node in nodes:  # those of an earlier start first: a survivor would keep the address
            pid_file = self.dir / "keepalived" / node / "keepalived.pid"
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                pid = int(pid_file.read_text())  # (a pid file left by a keepalived that died: nothing to stop)
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and not _exited(pid):
                    time.sleep(0.05)
        for started, node in enumerate(nodes, 1):
            namespace = f"{self.prefix}-{node}"
            run = self.dir / "keepalived" / node
            run.mkdir(parents=True, exist_ok=True)
            conf = self.views[node].root_path("/etc/keepalived/keepalived.conf")
            argv = ["keepalived", "--namespace", namespace, "--dont-fork", "--log-console", "--log-detail",
                    "--no-syslog", "-f", str(conf), "-p", str(run / "keepalived.pid"),
                    "-r", str(run / "vrrp.pid")]  # fmt: skip
            with open(run / "keepalived.log", "ab") as log:
                subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                holders = [n for n in nodes[:started] if f" {virtual_address}/" in self._addresses(n)]
                if holders == nodes[:1]:
                    break
                time.sleep(0.1)
            else:
                logs = "\n".join((self.dir / "keepalived" / n / "keepalived.log").read_text()[-1500:] for n in nodes)
                raise LabError(f"{nodes[0]} does not hold {virtual_address} alone within 10 s:\n{logs}")

    def _addresses(self, node: str) -> str:
        namespace = f"{self.prefix}-{node}"
        return subprocess.run(
            ["ip", "-n", namespace, "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=10
        ).stdout

    def _serve_container_page(self, machine) -> None:
        host, path = machine.serves_from
        root = self.views[host].root_path(path)
        if not root.is_dir():
            raise LabError(f"{machine.name}: {path} is not in {host}'s view: was the container made?")
        namespace = f"{self.prefix}-{machine.name}"
        net.kill_in(namespace)  # a page server of an earlier run
        subprocess.run(
            ["nsenter", f"--net=/run/netns/{namespace}", "--", "busybox", "httpd", "-p", "80", "-h", str(root)],
            check=True, capture_output=True, timeout=10, start_new_session=True,
        )  # fmt: skip

    def http_get(self, url: str, timeout: float = 10) -> subprocess.CompletedProcess:
        """curl from the operator's namespace (the lab's only client)."""
        argv = ["nsenter", f"--net=/run/netns/{self.operator_ns}", "--", "curl", "-sS", "-k", "--max-time",
                str(timeout), "-w", "\n%{http_code}", url]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5)

    # -- tearing down --------------------------------------------------------------------------

    def teardown(self, *, destroy: bool = True) -> list[str]:
        """``pulumi destroy`` (when asked and the lab runs), then every process, namespace, cgroup,
        the stack and the lab's directory; returns what could not be removed."""
        problems: list[str] = []
        if destroy and self.running() and (self.dir / "state").exists():
            listed = self.pulumi("stack", "ls", "--json", check=False).stdout
            if f'"name": "{self.stack}"' in listed:
                self.say(f"lab {self.stack}: pulumi destroy (protected guests unprotected first)")
                self.pulumi("state", "unprotect", "--all", "--yes", "--stack", self.stack, check=False)
                done = self.pulumi("destroy", "--yes", "--stack", self.stack, check=False)
                if done.returncode != 0:
                    problems.append(
                        f"pulumi destroy failed (the machines go anyway):\n{done.stdout[-3000:]}{done.stderr}"
                    )
        for view in self.views.values():
            view.stop()
        for namespace in reversed(self.leftovers()):
            problems += net.delete_namespace(namespace)
        problems += remove_cgroup(self.cgroup)
        if self.stack_file.exists():
            self.stack_file.unlink()
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        self.views = {}
        return problems


def readable(output: str) -> str:
    """``--json`` output cut down to what a person reads when it failed (its error and warning
    diagnostics), anything else as it is."""
    if '"diagnosticEvent"' not in output:
        return output
    lines = []
    for line in output.splitlines():
        if '"diagnosticEvent"' in line:
            event = json.loads(line)["diagnosticEvent"]
            if event.get("severity") in ("error", "warning", "info#err"):
                lines.append(f"{event.get('urn', '').rsplit('::', 1)[-1]}: {event['message'].rstrip()}")
    return "\n".join(lines) + "\n"


def remove_cgroup(name: str, timeout: float = 20) -> list[str]:
    """The lab's cgroup (and what libvirtd and dockerd made below it) in every hierarchy, once empty."""
    deadline = time.monotonic() + timeout
    left: list[Path] = []
    while True:
        left = []
        for top in Path("/sys/fs/cgroup").glob(f"*/{name}"):
            for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                _empty_and_remove(directory)
            _empty_and_remove(top)
            if top.exists():
                left.append(top)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    return [f"cgroup {p} still has processes" for p in left]


def _empty_and_remove(directory: Path) -> None:
    with contextlib.suppress(OSError):
        for pid in (directory / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(OSError):
        directory.rmdir()

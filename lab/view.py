"""A machine of the lab: a network namespace plus a throwaway view of this machine's filesystem in
which a real sshd (and, on hypervisor hosts, a real libvirtd and dockerd) runs.

The view is ``tests/support/sshd.py``'s design made to outlive the process that starts it, so that
``make lab`` can leave a deployed stack behind for a person to look at:

- ``nsenter --net`` into the machine's namespace (not ``ip netns exec``, which remounts /sys and
  hides the cgroup hierarchies dockerd and libvirtd need), then ``unshare --mount --uts --pid
  --fork --kill-child --mount-proc``: a fresh sysfs of the namespace with the host's cgroup
  hierarchies bound back in, overlays (upper: a tmpfs) over /etc, /var, /boot, /usr, /srv, /opt,
  /root, /home and /tmp, a fresh /run with the fakes' marker. Nothing a step does reaches this
  machine; everything goes when the view's PID 1 dies (``--kill-child``: QEMU, containers and all).
- The whole view runs in a cgroup of the lab's own in every hierarchy, so the cgroups libvirtd and
  dockerd create for their guests sit below it and ``remove_cgroup`` finds them all.
- ``PATH`` starts with the EL fakes (``tests/fakes``), except the CLIs of daemons that run for real
  here: ``virsh`` on a libvirt host (the real one talks to the real libvirtd), ``docker`` on a
  Docker host (the Docker provider runs ``docker system dial-stdio`` over SSH).
- /proc/cpuinfo shows ``vmx`` where the stack's roles need hardware virtualization: this VM hides
  the flag although /dev/kvm works (the preflight step checks it). QEMU runs as root
  (``qemu.conf``), because /dev/kvm here is root-only.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

OVERLAID_DIRS = ("/etc", "/var", "/boot", "/usr", "/srv", "/opt", "/root", "/home", "/tmp")
THROWAWAY_MARKER = "/run/virtfleet-throwaway-view"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FAKES = Path(__file__).resolve().parent.parent / "tests" / "fakes"
EL_RELEASE = {
    "el7": "CentOS Linux release 7.9.2009 (Core)\n",
    "el9": "CentOS Stream release 9\n",
}
EL_ROOT_BASHRC = """\
# .bashrc

# Source global definitions
if [ -f /etc/bashrc ]; then
\t. /etc/bashrc
fi
"""
SSHD_CONFIG = """\
ListenAddress 0.0.0.0
Port 22
HostKey "{dir}/host_ed25519"
AuthorizedKeysFile "{dir}/authorized_keys"
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
PidFile none
MaxStartups 64:30:128
MaxSessions 64
Subsystem sftp internal-sftp
SetEnv "PATH={path}"
"""
# libvirtd in the view: QEMU as root (this machine's /dev/kvm is root-only), no security driver (no
# SELinux/AppArmor labelling here), no default NAT network (the stack's bridges are the networks).
QEMU_CONF = 'user = "root"\ngroup = "root"\nsecurity_driver = "none"\n'


# An OpenVZ 7 host's kernel release for `uname -r` (the role's running check), everything else from
# the real uname: the lab's stand-in for a vzkernel this VM cannot boot.
UNAME_VZ = """#!/bin/sh
# virtfleet lab: this machine runs no OpenVZ kernel; `uname -r` shows one (lab/view.py)
if [ "$*" = "-r" ]; then echo 3.10.0-1160.90.1.vz7.200.5; exit 0; fi
exec /usr/bin/uname "$@"
"""


class ViewError(RuntimeError):
    pass


@dataclass
class ViewSpec:
    """What one machine of the lab runs and shows."""

    name: str
    namespace: str
    os_family: str = "el9"
    libvirt: bool = False  # real virtlogd + libvirtd (+ QEMU); virsh is the real one
    docker: bool = False  # real dockerd; docker is the real CLI
    cpu_virt: bool = False  # /proc/cpuinfo shows vmx
    web_root: str | None = None  # a stand-in guest serves this directory on :80 (busybox httpd)
    authorized_keys: tuple[str, ...] = ()
    fakes_hidden: tuple[str, ...] = field(default=())
    xen: bool = False  # shows /sys/hypervisor/type "xen" (a dom0), which this VM is not
    vz_kernel: bool = False  # `uname -r` shows an OpenVZ 7 kernel, which this VM does not run
    registry: str | None = None  # host:port of the lab's registry, plain HTTP (dockerd --insecure-registry)


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    return subprocess.run(argv, **kw)


class HostView:
    """One machine's view; its files live in ``directory`` (keys, config, logs, dockerd's data)."""

    def __init__(self, spec: ViewSpec, directory: Path, cgroup: str) -> None:
        self.spec = spec
        self.dir = directory
        self.cgroup = cgroup
        self.pid: int | None = None  # the `nsenter` process; the view's PID 1 is below it

    # -- files ---------------------------------------------------------------------------------

    @property
    def host_public_key(self) -> str:
        return " ".join((self.dir / "host_ed25519.pub").read_text().split()[:2])

    def prepare(self) -> None:
        """Keys, sshd_config, the fakes' PATH and the setup script (no process yet)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for sub in ("logs", "docker", "fakes-bin"):
            (self.dir / sub).mkdir(exist_ok=True)
        key = self.dir / "host_ed25519"
        if not key.exists():
            comment = f"virtfleet-lab-{self.spec.name}"
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], check=True)
        (self.dir / "authorized_keys").write_text("".join(f"{k.strip()}\n" for k in self.spec.authorized_keys))
        hidden = set(self.spec.fakes_hidden)
        if self.spec.libvirt:
            hidden.add("virsh")
        if self.spec.docker:
            hidden.add("docker")
        fakes_bin = self.dir / "fakes-bin"
        for link in fakes_bin.iterdir():
            link.unlink()
        for fake in sorted((FAKES / "bin").iterdir()):
            if fake.name not in hidden:
                (fakes_bin / fake.name).symlink_to(fake.resolve())
        if self.spec.vz_kernel:
            (fakes_bin / "uname").write_text(UNAME_VZ)
            (fakes_bin / "uname").chmod(0o755)
        path = f"{fakes_bin}:{SYSTEM_PATH}"
        (self.dir / "sshd_config").write_text(SSHD_CONFIG.format(dir=self.dir, path=path))
        if self.spec.cpu_virt:
            flags = Path("/proc/cpuinfo").read_text()
            if " vmx" not in flags and " svm" not in flags:
                flags = "".join(
                    line.rstrip("\n") + " vmx\n" if line.startswith("flags") else line
                    for line in flags.splitlines(keepends=True)
                )
            (self.dir / "cpuinfo").write_text(flags)
        (self.dir / "setup.sh").write_text(self._setup_script())

    def _setup_script(self) -> str:
        d = shlex.quote(str(self.dir))
        cg = shlex.quote(self.cgroup)
        lines = [
            "set -eu",
            # The lab's cgroup in every hierarchy: guests of libvirtd and dockerd land below it.
            f'for h in /sys/fs/cgroup/*/; do mkdir -p "$h"{cg} && echo $$ > "$h"{cg}/cgroup.procs || true; done',
            # Files of the lab that must stay on the real filesystem, opened before /tmp, /var, ...
            # are overlaid (the lab's directory may be under one of them).
            f"exec 3<{d}/docker 4>>{d}/logs/daemons.log",
            f"mkdir -p {d}/layers && mount -t tmpfs -o mode=0700 vfl-layers {d}/layers",
            # sysfs of this network namespace (the bridge step reads /sys/class/net), cgroups kept.
            f"mkdir -p {d}/layers/cgroup && mount --rbind /sys/fs/cgroup {d}/layers/cgroup",
            *(self._xen_sysfs(d) if self.spec.xen else ["mount -t sysfs sysfs /sys"]),
            f"mount --rbind {d}/layers/cgroup /sys/fs/cgroup",
        ]
        if self.spec.cpu_virt:
            lines.append(f"mount --bind {d}/cpuinfo /proc/cpuinfo")
        for directory in OVERLAID_DIRS:
            if not os.path.isdir(directory):
                continue
            layer = f"{d}/layers/{directory.strip('/')}"
            lines += [
                f"mkdir -p {layer}/upper {layer}/work",
                f"chmod --reference={directory} {layer}/upper && chown --reference={directory} {layer}/upper",
                f"mount -t overlay -o lowerdir={directory},upperdir={layer}/upper,workdir={layer}/work "
                f"vfl-overlay {directory}",
            ]
        lines += [
            "mount -t tmpfs -o mode=0755 vfl-run /run",
            "mkdir -p -m 0755 /run/sshd /run/lock",
            f": > {THROWAWAY_MARKER}",
            f"printf '%s' {shlex.quote(EL_ROOT_BASHRC)} > /root/.bashrc",
            f"printf '%s' {shlex.quote(EL_RELEASE[self.spec.os_family])} > /etc/redhat-release",
            f"hostname {shlex.quote(self.spec.name)}",
        ]
        if self.spec.libvirt:
            lines += [
                f"printf '%s' {shlex.quote(QEMU_CONF)} >> /etc/libvirt/qemu.conf",
                "rm -f /etc/libvirt/qemu/networks/autostart/default.xml",
                "rm -f /etc/libvirt/qemu/networks/default.xml",
                "mkdir -p /var/lib/libvirt/images /var/log/libvirt /var/cache/libvirt",
                "virtlogd -d",
                "libvirtd -d",
            ]
        if self.spec.docker:
            registry = f"--insecure-registry={self.spec.registry} " if self.spec.registry else ""
            lines += [
                "mkdir -p /var/lib/docker && mount --no-canonicalize --bind /proc/self/fd/3 /var/lib/docker",
                f"dockerd --data-root=/var/lib/docker --exec-root=/run/docker-exec --host=unix:///run/docker.sock "
                f"--pidfile=/run/docker.pid --iptables=false --ip-masq=false {registry}"
                f"--cgroup-parent={cg}-docker --log-level=warn >&4 2>&4 &",
            ]
        if self.spec.web_root:
            root = shlex.quote(self.spec.web_root)
            lines.append(f"mkdir -p {root} && busybox httpd -p 80 -h {root}")
        lines += [
            "exec 3<&- 4>&-",
            f"exec /usr/sbin/sshd -D -e -f {d}/sshd_config",
        ]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _xen_sysfs(d: str) -> list[str]:
        """/sys as a tmpfs holding this namespace's sysfs entries plus hypervisor/type = xen: sysfs
        itself has no /sys/hypervisor on a machine that is not a Xen guest or dom0."""
        return [
            f"mkdir -p {d}/layers/sysfs && mount -t sysfs sysfs {d}/layers/sysfs",
            "mount -t tmpfs -o mode=0755 vfl-sys /sys",
            f'for e in {d}/layers/sysfs/*; do mkdir -p "/sys/${{e##*/}}" && mount --rbind "$e" "/sys/${{e##*/}}"; done',
            "mkdir -p /sys/hypervisor && printf 'xen\\n' > /sys/hypervisor/type",
        ]

    # -- process -------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.dir / "logs" / "view.log", "ab")  # noqa: SIM115 - handed to the child
        argv = [
            "nsenter", f"--net=/run/netns/{self.spec.namespace}", "--",
            "unshare", "--mount", "--propagation", "private", "--uts", "--pid", "--fork", "--kill-child",
            "--mount-proc", "/bin/sh", str(self.dir / "setup.sh"),
        ]  # fmt: skip
        with log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self.pid = proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ViewError(f"{self.spec.name}: the view exited {proc.returncode}:\n{self.log_tail()}")
            if "Server listening on" in self.log_tail(4000):
                return
            time.sleep(0.05)
        raise ViewError(f"{self.spec.name}: sshd did not start within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for name in ("view.log", "daemons.log"):
            with contextlib.suppress(OSError):
                text += (self.dir / "logs" / name).read_text(errors="replace")[-chars:]
        return text

    def init_pid(self) -> int | None:
        """PID (in this machine's PID namespace) of the view's PID 1: the child of ``unshare`` (``nsenter``
        entering only a network namespace execs it in place)."""
        if self.pid is None:
            return None
        children = _children(self.pid)
        return children[0] if children else None

    def root_path(self, path: str) -> Path:
        """``path`` as the view sees it, reachable from this machine (through /proc/PID/root)."""
        pid = self.init_pid()
        if pid is None:
            raise ViewError(f"{self.spec.name}: the view is not running")
        return Path(f"/proc/{pid}/root") / path.lstrip("/")

    def stop(self) -> None:
        """SIGKILL the view: its PID 1 dies and takes every process of it (guests too)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.pid = None


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []

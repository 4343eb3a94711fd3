"""L4: every host step of prod (and dev's kvm+docker box) executed for real over SSH.

The exact ``create``/``delete`` strings of the Command resources run through a real sshd
(``LoopbackSshd``) inside a network namespace this test creates, holding the stack's own address:
``eth0`` (a veth end) carries e.g. 10.0.0.2/24 and its peer namespace is the gateway 10.0.0.1.
So sysctl and bridge steps change a real kernel (in the namespace); the package manager,
systemd, SELinux, firewalld, hostnamectl, grubby and nmcli are the stateful fakes of
``tests/fakes`` (Xen, OpenVZ and VirtualBox kernels cannot run here; ``docker`` answers only while
the fake systemd runs docker.service).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.sshd import LoopbackSshd
from support.tools import require_root, require_tool

from components.hosts.host_steps import host_steps
from plan.run import load_stack, run_program

pytestmark = pytest.mark.real
RELEASES = {"el7": "CentOS Linux release 7.9.2009 (Core)\n", "el9": "CentOS Stream release 9\n"}
CPU_VIRT = subprocess.run(["grep", "-Ewq", "vmx|svm", "/proc/cpuinfo"], check=False).returncode == 0


@pytest.fixture(scope="module")
def stacks():
    out = {}
    for name in ("prod", "dev"):
        config, fleet = load_stack(name)
        out[name] = (fleet, run_program(config))
    return out


class HostLab:
    """Namespaces <p>h (the host: eth0) and <p>g (its gateway: gw0) joined by a veth pair."""

    def __init__(self, bridge):
        self.ns, self.gw = f"vfh{secrets.token_hex(3)}h", None
        self.gw = self.ns[:-1] + "g"
        self.bridge = bridge

    def ip(self, *args: str, ns: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(["ip", "-n", ns or self.ns, *args], capture_output=True, text=True, check=False)
        if check and proc.returncode:
            raise AssertionError(f"ip {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def __enter__(self):
        b = self.bridge
        for ns in (self.ns, self.gw):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            self.ip("link", "set", "lo", "up", ns=ns)
        self.ip("link", "add", b.interface, "type", "veth", "peer", "name", "gw0", "netns", self.gw)
        self.ip("addr", "add", str(b.address), "dev", b.interface)
        self.ip("link", "set", b.interface, "up")
        self.ip("addr", "add", f"{b.gateway}/{b.address.network.prefixlen}", "dev", "gw0", ns=self.gw)
        self.ip("link", "set", "gw0", "up", ns=self.gw)
        self.ip("route", "add", "default", "via", str(b.gateway))
        return self

    def __exit__(self, *exc):
        for ns in (self.ns, self.gw):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def step_commands(rec, host: str) -> dict[str, tuple[dict, list[tuple[str, str]]]]:
    """step -> (Command inputs, [(remotePath, text)] of its CopyToRemote siblings)."""
    out = {}
    for cmd in rec.of_type("command:remote:Command"):
        if not cmd.name.startswith(f"{host}-"):
            continue
        uploads = [
            (r.inputs["remotePath"], r.inputs["source"]["text"])
            for r in rec.of_type("command:remote:CopyToRemote")
            if r.parent == cmd.parent
        ]
        out[cmd.name.removeprefix(f"{host}-")] = (cmd.inputs, uploads)
    return out


def run(sshd, command: str):
    proc = sshd.run(command, timeout=120)
    return proc.returncode, proc.stdout.strip().splitlines(), proc.stderr


def expected_failure(host, step: str) -> str | None:
    if step == "preflight" and not CPU_VIRT and any(r in ("kvm", "virtualbox") for r in host.roles):
        return "neither vmx nor svm"
    if step.startswith("boot-") and not host.allow_reboot:
        return f"{host.name} must reboot into"
    return None


CASES = [
    ("prod", "kvm1"),
    ("prod", "xen1"),
    ("prod", "ovz1"),
    ("prod", "vbox1"),
    ("prod", "docker1"),
    ("dev", "devbox"),
]


def test_host_steps_converge_and_undo_over_ssh(stacks):
    """All six hosts at once (each in its own namespaces and view): the fakes are mostly waiting
    on Python start-up, so running hosts side by side keeps the suite fast."""
    require_root()
    require_tool("ping")
    with ThreadPoolExecutor(len(CASES)) as pool:
        futures = {host: pool.submit(converge_and_undo, *stacks[stack], host) for stack, host in CASES}
    failures = {host: f.exception() for host, f in futures.items() if f.exception() is not None}
    assert not failures, "\n\n".join(f"{host}: {exc!r}" for host, exc in failures.items())


def converge_and_undo(fleet, rec, host_name: str) -> None:
    host = fleet.host(host_name)
    order = [s.name for s in host_steps(host, fleet)]
    commands = step_commands(rec, host_name)
    with HostLab(host.bridges[0]) as lab, LoopbackSshd(netns=lab.ns) as sshd:
        sshd.upload(RELEASES[host.os_family], "/etc/redhat-release")
        for step in order:
            inputs, uploads = commands[step]
            for path, text in uploads:
                sshd.upload(text, path)
            first, second = run(sshd, inputs["create"]), run(sshd, inputs["create"])
            failure = expected_failure(host, step)
            if failure:
                assert first[0] == second[0] == 1 and failure in first[2] and failure in second[2], (step, first)
                continue
            assert first[0] == 0, (step, first)
            assert second[0] == 0 and second[1][-1] == f"virtfleet: {host_name}/{step} (create): unchanged", (
                step,
                second,
            )
        b = host.bridges[0]
        assert f"inet {b.address} " in lab.ip("-o", "-4", "addr", "show", "dev", b.name)
        assert f"master {b.name}" in lab.ip("-o", "link", "show", "dev", b.interface)
        assert f"inet {b.address} " not in lab.ip("-o", "-4", "addr", "show", "dev", b.interface)
        assert sshd.run("sysctl -n net.ipv4.ip_forward").stdout.strip() == ("0" if "sysctl" not in order else "1")
        for step in reversed(order):
            first, second = run(sshd, commands[step][0]["delete"]), run(sshd, commands[step][0]["delete"])
            assert first[0] == 0, (step, first)
            assert second[0] == 0 and second[1][-1] == f"virtfleet: {host_name}/{step} (delete): unchanged", (
                step,
                second,
            )
        assert f"inet {b.address} " in lab.ip("-o", "-4", "addr", "show", "dev", b.interface)
        assert not lab.ip("link", "show", "dev", b.name, check=False)


def test_parallel_locked_steps_serialize(stacks):
    """Eight host-wide steps started at once on one host all succeed, one at a time."""
    require_root()
    require_tool("ping")
    fleet, rec = stacks["prod"]
    host = fleet.host("docker1")
    commands = step_commands(rec, "docker1")
    locked = [s.name for s in host_steps(host, fleet) if s.lock]
    batch = (locked * 8)[:8]
    with HostLab(host.bridges[0]) as lab, LoopbackSshd(netns=lab.ns) as sshd:
        sshd.upload(RELEASES[host.os_family], "/etc/redhat-release")
        for step in set(batch):
            for path, text in commands[step][1]:
                sshd.upload(text, path)
        # Each script logs when it holds the lock; overlapping holds would interleave the marks.
        marked = [commands[s][0]["create"].replace(
            "\nvf_mark_changed() {", '\necho "$(date +%s.%N) start" >> /run/lock/vf-trace\n'
            'trap \'echo "$(date +%s.%N) end" >> /run/lock/vf-trace\' EXIT\nvf_mark_changed() {', 1)
            for s in batch]  # fmt: skip
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda c: sshd.run(c, timeout=300), marked))
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
        trace = [line.split()[1] for line in sshd.read("/run/lock/vf-trace").splitlines()]
        assert trace == ["start", "end"] * 8, trace
        assert time.monotonic() - started < 120


def test_bridge_move_rolls_back_when_the_gateway_stops_answering(stacks):
    """nftables in the host's namespace drops pings leaving through the bridge: the gateway
    answers before the move and not after it, so the step must put the address back on eth0."""
    require_root()
    require_tool("ping")
    nft = require_tool("nft")
    fleet, rec = stacks["prod"]
    host = fleet.host("kvm1")
    inputs, uploads = step_commands(rec, "kvm1")["bridge-brid0"]
    b = host.bridges[0]
    with HostLab(b) as lab, LoopbackSshd(netns=lab.ns) as sshd:
        sshd.upload(RELEASES[host.os_family], "/etc/redhat-release")
        for path, text in uploads:
            sshd.upload(text, path)
        rules = (
            f"add table inet vf\nadd chain inet vf out {{ type filter hook output priority 0; }}\n"
            f'add rule inet vf out oifname "{b.name}" icmp type echo-request drop\n'
        )
        subprocess.run(["ip", "netns", "exec", lab.ns, nft, "-f", "-"], input=rules, text=True, check=True)
        code, out, err = run(sshd, inputs["create"])
        assert code == 1 and "rolled back" in err and "rolling back" in "\n".join(out), (out, err)
        assert f"inet {b.address} " in lab.ip("-o", "-4", "addr", "show", "dev", b.interface)
        assert not lab.ip("link", "show", "dev", b.name, check=False)
        assert f"via {b.gateway} dev {b.interface}" in lab.ip("-4", "route", "show", "default")
        subprocess.run(["ip", "netns", "exec", lab.ns, nft, "delete", "table", "inet", "vf"], check=True)
        code, out, err = run(sshd, inputs["create"])
        assert code == 0 and out[-1] == "virtfleet: kvm1/bridge-brid0 (create): changed", (out, err)

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

import copy
import json
import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.sshd import LoopbackSshd
from support.tools import require_root, require_tool

from components.hosts.host_steps import host_steps
from components.hosts.roles import DOCKER_REPO, host_sysctls, role_setup
from components.model import DockerGuest, Role
from lab.view import EL_RELEASE
from plan.run import StackConfig, load_stack, run_program

pytestmark = pytest.mark.real


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


def set_cpu_flags(sshd, vt: bool) -> None:
    """The view's /proc/cpuinfo shows VT flags or not, as the test chooses (not as this machine has
    them): a bind mount inside the view's own mount namespace."""
    flags = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge" + (" vmx" if vt else "") + " sse sse2 ht"
    sshd.upload(f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n\n", "/run/vf-cpuinfo")
    sshd.run("mount --bind /run/vf-cpuinfo /proc/cpuinfo", check=True)


def expected_failure(host, step: str) -> str | None:
    if step.startswith("boot-") and not host.allow_reboot:
        return f"{host.name} must reboot into"
    return None


# What a host looks like, read from the fakes' state and the view's real files.
PROBES = {
    "packages": "rpm -qa --qf '%{NAME}\\n' | sort",
    "units": "cat /var/lib/virtfleet-fakes/systemd.json",
    "ports": "firewall-cmd --permanent --list-ports; firewall-cmd --list-ports",
    "services": "firewall-cmd --permanent --list-services; firewall-cmd --list-services",
    "selinux": "sed -n 's/^SELINUX=//p' /etc/selinux/config",
    "hostname": "hostnamectl --static",
    "hosts": "cat /etc/hosts",
    "repos": 'for f in /etc/yum.repos.d/*.repo; do [ -e "$f" ] && printf \'== %s\\n\' "$f" && cat "$f"; done; true',
    "boot": "grubby --default-kernel; grubby --default-title",
    # every entry: delete must not leave one behind (a dom0 entry would boot a removed xen.gz)
    "boot entries": "grubby --info=ALL | grep '^title='",
    "sysctl_conf": "grep -v '^#' /etc/sysctl.d/90-virtfleet.conf 2>/dev/null || true",
    "vz_conf": "grep -v '^$' /etc/vz/vz.conf 2>/dev/null || true",
    "records": "ls /var/lib/virtfleet/installed 2>/dev/null || true",
    "vbox": "VBoxManage list systemproperties 2>/dev/null | grep '^Autostart Database' || true",
}


def host_state(sshd, sysctls=()) -> dict:
    probes = {**PROBES, **{f"sysctl {k}": f"sysctl -n {k}" for k, _ in sysctls}}
    results = sshd.run_each(list(probes.values()))
    failed = [(name, r.stderr) for name, r in zip(probes, results, strict=True) if r.returncode]
    assert not failed, failed
    state = {name: r.stdout for name, r in zip(probes, results, strict=True)}
    units = json.loads(state["units"])["units"]
    state["units"] = {u: (s["enabled"], s["active"]) for u, s in units.items() if s["enabled"] or s["active"]}
    state["packages"] = set(state["packages"].split())
    return state


def promised_state(host, fleet, before: dict) -> dict:
    """What the steps promise, from the model and the role table (not from the rendered scripts)."""
    want = {
        "selinux": f"{host.selinux}\n",
        "hostname": f"{host.name}.{fleet.domain}\n",
        "sysctl_conf": "".join(f"{k} = {v}\n" for k, v in host_sysctls(host.roles, host.os_family)),
    }
    ports = {
        f"{p.host_port}/{p.protocol}"
        for g in fleet.guests_on(host.name)
        if isinstance(g, DockerGuest)
        for p in g.ports
        if not p.host_ip.is_loopback
    }
    lb = fleet.load_balancer
    if lb is not None and host.name in lb.nodes:  # the balancer's own ports, on the node itself
        ports |= {f"{lb.frontend.port}/tcp"} | ({f"{lb.https.port}/tcp"} if lb.https.enabled else set())
        ports |= {f"{lb.stats_bind.port}/tcp"} if lb.stats.enabled and not lb.stats_bind.address.is_loopback else set()
    ports = sorted(ports, key=lambda p: int(p.split("/")[0]))
    if host.firewall:
        want["ports"] = (" ".join(ports) + "\n") * 2
    packages, units, repos, config = set(), {}, [], []
    for role in host.roles:
        setup = role_setup(role, host.os_family)
        packages |= {spec.split("=")[0] for spec in (*setup.repo_packages, *setup.packages_for(host.roles))}
        for service in setup.services:
            unit = service if "." in service else f"{service}.service"
            units[unit] = (True, setup.kernel is None)  # a new kernel's services start after the reboot
        repos += [(f"/etc/yum.repos.d/{name}", text) for name, text in setup.repo_files]
        config += [(path, f"{key}={value}") for path, key, value in setup.config_lines]
    want["records"] = "".join(f"role-{r}\n" for r in sorted(map(str, host.roles)))
    return {"want": want, "packages": packages, "units": units, "repos": repos, "config": config}


def check_created(sshd, host, fleet, before: dict) -> None:
    promised = promised_state(host, fleet, before)
    sysctls = host_sysctls(host.roles, host.os_family)
    now = host_state(sshd, sysctls)
    for key, value in promised["want"].items():
        assert now[key] == value, (host.name, key, now[key], value)
    assert promised["packages"] <= now["packages"], promised["packages"] - now["packages"]
    for unit, (enabled, active) in promised["units"].items():
        assert now["units"].get(unit) == (enabled, active), (host.name, unit, now["units"].get(unit))
    for path, text in promised["repos"]:
        assert sshd.read(path) == text, path
    for path, line in promised["config"]:
        assert line in sshd.read(path).splitlines(), (path, line)
    for key, value in sysctls:
        assert now[f"sysctl {key}"] == f"{value}\n", key
    for role in host.roles:
        ours = set(sshd.read(f"/var/lib/virtfleet/installed/role-{role}").split())
        assert ours == (now["packages"] - before["packages"]) & promised_names(host, role), (role, ours)
    entries = {(fleet.machine_address(n), f"{n}.{fleet.domain}", n) for n in fleet_names(fleet)}
    block = now["hosts"].split("# BEGIN virtfleet\n")[1].split("# END virtfleet\n")[0]
    assert {tuple(line.split()) for line in block.splitlines()} == entries
    assert now["hosts"].startswith(before["hosts"])
    kernel, title = now["boot"].splitlines()
    if Role.XEN in host.roles:
        assert title == f"virtfleet Xen dom0 on {host.name}", now["boot"]
    elif Role.OPENVZ in host.roles:
        assert "vz7" in kernel, now["boot"]
    else:
        assert now["boot"] == before["boot"]
    assert "ssh" in now["services"].split()


def promised_names(host, role) -> set[str]:
    setup = role_setup(role, host.os_family)
    return {spec.split("=")[0] for spec in (*setup.repo_packages, *setup.packages_for(host.roles))}


def fleet_names(fleet) -> list[str]:
    return [h.name for h in fleet.hosts] + [g.name for g in fleet.guests]


def check_undone(sshd, host, fleet, before: dict) -> None:
    """Delete returns the host to its state before create, except what stays by design: the
    hostname, the SELinux mode and the running sysctl values (see the delete scripts)."""
    now = host_state(sshd)
    kept = {"hostname", "selinux"}
    for key in PROBES:
        if key not in kept:
            assert now[key] == before[key], (host.name, key, before[key], now[key])
    assert now["hostname"] == f"{host.name}.{fleet.domain}\n" and now["selinux"] == f"{host.selinux}\n"


def first_create_report(host, step: str) -> str:
    """``changed`` unless the step found the host as it wants it: preflight only checks, the fakes'
    host starts enforcing, and a firewall without ports to open keeps the zone's ssh."""
    if step == "preflight" or (step == "selinux" and host.selinux == "enforcing"):
        return "unchanged"
    return "changed"


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
    """Create every step twice (first ``changed``, then ``unchanged``), compare the host with what
    the model promises, delete every step twice, compare the host with its state before create."""
    host = fleet.host(host_name)
    order = [s.name for s in host_steps(host, fleet)]
    commands = step_commands(rec, host_name)
    with HostLab(host.bridges[0]) as lab, LoopbackSshd(netns=lab.ns) as sshd:
        sshd.upload(EL_RELEASE[host.os_family], "/etc/redhat-release")
        set_cpu_flags(sshd, vt=True)
        before = host_state(sshd)
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
            report = first_create_report(host, step)
            if step == "firewall" and not promised_state(host, fleet, before)["want"]["ports"].strip():
                report = "unchanged"
            assert first[1][-1] == f"virtfleet: {host_name}/{step} (create): {report}", (step, first)
            assert second[0] == 0 and second[1][-1] == f"virtfleet: {host_name}/{step} (create): unchanged", (
                step,
                second,
            )
        check_created(sshd, host, fleet, before)
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
        check_undone(sshd, host, fleet, before)
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
    # No check before each create (check_steps): the eight run side by side, so one's snapshots would
    # see the others' changes, and the marks below are writes a check may not make.
    with HostLab(host.bridges[0]) as lab, LoopbackSshd(netns=lab.ns, check_steps=False) as sshd:
        sshd.upload(EL_RELEASE[host.os_family], "/etc/redhat-release")
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
        sshd.upload(EL_RELEASE[host.os_family], "/etc/redhat-release")
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


@pytest.mark.parametrize("vt", [True, False])
def test_preflight_follows_the_cpu_flags_the_host_shows(stacks, vt):
    """VT flags present or absent as the test sets them: a VirtualBox host passes with them and
    fails without them, naming the role; a Docker host needs none and passes either way."""
    require_root()
    _fleet, rec = stacks["prod"]
    with LoopbackSshd() as sshd:
        sshd.upload(EL_RELEASE["el9"], "/etc/redhat-release")
        set_cpu_flags(sshd, vt=vt)
        vbox = run(sshd, step_commands(rec, "vbox1")["preflight"][0]["create"])
        docker = run(sshd, step_commands(rec, "docker1")["preflight"][0]["create"])
        el7 = run(sshd, step_commands(rec, "xen1")["preflight"][0]["create"])
    assert docker[0] == 0 and docker[1][-1] == "virtfleet: docker1/preflight (create): unchanged", docker
    if vt:
        assert vbox[0] == 0 and vbox[1][-1] == "virtfleet: vbox1/preflight (create): unchanged", vbox
    else:
        assert vbox[0] == 1 and "neither vmx nor svm" in vbox[2] and "role(s) virtualbox need" in vbox[2], vbox
    # The wrong OS family is reported with what the host says.
    assert el7[0] == 1 and "the stack says osFamily el7, but the host reports: CentOS Stream release 9" in el7[2]


def test_reboot_into_xen_when_allowed_then_converged(stacks):
    """allowReboot: true (a test variant of prod): the boot step schedules one reboot (a second run
    says it is already scheduled), the reboot boots the dom0 entry, and once the host runs Xen
    (/sys/hypervisor/type says so) the boot and role steps find nothing to do."""
    require_root()
    config, _ = load_stack("prod")
    values = copy.deepcopy(config.values)
    next(h for h in values["hosts"] if h["name"] == "xen1")["allowReboot"] = True
    rec = run_program(StackConfig("prod-reboot", values, set(config.secret_keys), list(config.placeholders)))
    commands = step_commands(rec, "xen1")
    with LoopbackSshd() as sshd:
        sshd.upload(EL_RELEASE["el7"], "/etc/redhat-release")
        for step in ("role-xen", "boot-xen"):
            for path, text in commands[step][1]:
                sshd.upload(text, path)
            code, out, err = run(sshd, commands[step][0]["create"])
            assert code == 0, (step, out, err)
        assert "changed: rebooting xen1 into Xen in 5 s" in out and sshd.exists("/run/virtfleet/reboot-scheduled")
        code, out, err = run(sshd, commands["boot-xen"][0]["create"])
        assert code == 0 and "unchanged: reboot into Xen already scheduled" in out, out
        assert out[-1] == "virtfleet: xen1/boot-xen (create): unchanged", out
        boot = {}
        for _ in range(60):  # the detached reboot fires after 5 s
            boot = json.loads(sshd.read("/var/lib/virtfleet-fakes/boot.json") or "{}") if sshd.exists(
                "/var/lib/virtfleet-fakes/boot.json") else {}  # fmt: skip
            if boot.get("boots"):
                break
            time.sleep(0.5)
        assert boot.get("booted_title") == "virtfleet Xen dom0 on xen1", boot
        sshd.run("mount -t tmpfs vf-sys /sys && mkdir /sys/hypervisor && echo xen > /sys/hypervisor/type", check=True)
        for step in ("role-xen", "boot-xen"):
            code, out, err = run(sshd, commands[step][0]["create"])
            assert code == 0 and out[-1] == f"virtfleet: xen1/{step} (create): unchanged", (step, out, err)
        assert "runs Xen" in "\n".join(out)
        active = sshd.run("systemctl is-active xencommons xendomains xenconsoled").stdout.split()
        assert active == ["active"] * 3, active


def run_with_faults(sshd, command: str, faults: dict):
    sshd.upload(json.dumps(faults), "/var/lib/virtfleet-fakes/faults.json")
    try:
        return run(sshd, command)
    finally:
        sshd.run("rm -f /var/lib/virtfleet-fakes/faults.json", check=True)


def test_a_command_failing_mid_step_stops_the_step(stacks):
    """dnf fails in the middle of role-docker (injected through the fake, after the frame put the
    repository file in place): the step exits non-zero, names the command and its line, installs
    no package and records none, leaves no temporary file behind and no partial file; the next
    run, with dnf working again, converges and reports ``changed``."""
    require_root()
    _fleet, rec = stacks["prod"]
    inputs, uploads = step_commands(rec, "docker1")["role-docker"]
    script = inputs["create"]
    with LoopbackSshd() as sshd:
        sshd.upload(EL_RELEASE["el9"], "/etc/redhat-release")
        for path, text in uploads:
            sshd.upload(text, path)
        before = host_state(sshd)
        sshd.run("touch /run/vf-mark", check=True)
        error = "Error: Transaction test error:\n  file /usr/bin/dockerd conflicts with file from package moby-engine"
        code, out, err = run_with_faults(sshd, script, {"fail": {"dnf install": error}})
        assert code == 1 and error in err, (out, err)
        reported = [line for line in err.splitlines() if "failed at line" in line]
        assert len(reported) == 1 and reported[0].startswith("virtfleet: docker1/role-docker (create) failed at line")
        assert ": dnf -y -q install " in reported[0] and "(exit 1)" in reported[0], reported
        line = int(reported[0].split("failed at line ")[1].split(":")[0])
        body = script.split("\n", 1)[1].splitlines()  # the command text's first line is the bash -c wrapper
        assert "dnf -y -q install" in body[line - 1], (line, body[line - 1])
        assert out[-1] != "virtfleet: docker1/role-docker (create): changed"
        now = host_state(sshd)
        assert now["packages"] == before["packages"] and now["units"] == before["units"]
        assert sshd.read("/var/lib/virtfleet/installed/role-docker") == ""
        assert sshd.read("/etc/yum.repos.d/docker-ce.repo") == DOCKER_REPO  # whole, or the step had not got there
        # no mktemp leftovers in the view (its /tmp also shows this machine's, which others change)
        assert sshd.run("find /tmp/ -maxdepth 1 -name 'tmp.*' -newer /run/vf-mark", check=True).stdout == ""
        code, out, err = run(sshd, script)
        assert code == 0 and out[-1] == "virtfleet: docker1/role-docker (create): changed", (out, err)
        assert {"docker-ce", "containerd.io"} <= host_state(sshd)["packages"]


@pytest.mark.parametrize("fault", ["fail_start", "die_after_start"])
def test_a_service_that_does_not_come_up_fails_the_role(stacks, fault):
    """docker.service fails its start job, or starts and dies at once: role-docker must not report
    success. A failed start job stops the step at systemctl with systemd's message; a service that
    dies is caught by the role's own check ("docker version"), which names the role and the check."""
    require_root()
    _fleet, rec = stacks["prod"]
    inputs, uploads = step_commands(rec, "docker1")["role-docker"]
    with LoopbackSshd() as sshd:
        sshd.upload(EL_RELEASE["el9"], "/etc/redhat-release")
        for path, text in uploads:
            sshd.upload(text, path)
        code, out, err = run_with_faults(sshd, inputs["create"], {fault: ["docker.service"]})
        assert code == 1, (out, err)
        if fault == "fail_start":
            assert "Job for docker.service failed because the control process exited with error code." in err
            assert "failed at line" in err and "systemctl enable --now --quiet docker" in err, err
        else:
            assert (
                "virtfleet: docker1: role docker is installed but does not answer: "
                "docker version --format {{.Server.Version}} failed" in err
            ), err
        assert sshd.run("systemctl is-active docker").stdout.strip() == "failed"
        code, out, err = run(sshd, inputs["create"])
        assert code == 0 and out[-1] == "virtfleet: docker1/role-docker (create): changed", (out, err)


def test_firewall_opens_the_tiers_non_default_ports(stacks):
    """A test variant of dev (not a committed stack): the balancer on devbox listens on 8081, HTTPS
    on 8443 and the stats page on the node's address at 9001. The firewall step opens exactly
    those (permanent and runtime) besides ssh, and its delete closes them again."""
    require_root()
    config, _ = load_stack("dev")
    values = copy.deepcopy(config.values)
    values["loadBalancer"]["frontend"]["port"] = 8081
    values["loadBalancer"]["https"] = {"enabled": True, "port": 8443}
    values["loadBalancer"]["stats"] = {"bind": {"address": "10.10.0.2", "port": 9001}}
    rec = run_program(StackConfig("dev-ports", values, set(config.secret_keys), list(config.placeholders)))
    inputs, _ = step_commands(rec, "devbox")["firewall"]
    with LoopbackSshd() as sshd:
        before = host_state(sshd)
        code, out, err = run(sshd, inputs["create"])
        assert code == 0 and out[-1] == "virtfleet: devbox/firewall (create): changed", (out, err)
        assert host_state(sshd)["ports"] == "8081/tcp 8443/tcp 9001/tcp\n" * 2
        code, out, err = run(sshd, inputs["delete"])
        assert code == 0 and host_state(sshd)["ports"] == before["ports"], (out, err)

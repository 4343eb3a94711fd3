"""L4: ``make drift`` against real sshds: each kind of hand change a host step owns is named, the
machine is left as it was, unreachable and impostor hosts are reported while the others are checked.

The host is dev's devbox in network namespaces this test creates (``HostLab``: eth0 with the stack's
10.10.0.2/24, a gateway namespace), over a real sshd; sysctl and the bridge are a real kernel's (the
namespace's), the package manager, systemd, firewalld and nmcli the stateful EL fakes of
``tests/fakes`` (an EL host cannot run here). Every create and check below also passes the
read-only proof of ``support/check_mode.py`` (hooked into ``LoopbackSshd.run``).
"""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from support.drift_check import drift, drifted
from support.sshd import LoopbackSshd
from support.tools import require_root, require_tool
from test_hosts_remote import HostLab, set_cpu_flags, step_commands

from components.hosts.host_steps import host_steps
from drift.__main__ import main as drift_main
from drift.check import DRIFT, ERROR, IN_SYNC, NOT_CHECKED, UNREACHABLE
from lab.view import EL_RELEASE
from plan.run import load_stack, run_program

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def dev():
    config, fleet = load_stack("dev")
    return fleet, run_program(config)


def deploy(sshd, commands: dict, order: list[str]) -> None:
    for step in order:
        inputs, uploads = commands[step]
        for path, text in uploads:
            sshd.upload(text, path)
        done = sshd.run(inputs["create"], timeout=120)
        assert done.returncode == 0, (step, done.stdout, done.stderr)


def test_each_hand_change_of_a_host_is_named_and_up_puts_it_back(dev):
    """devbox deployed, then changed by hand six ways its steps own: a package removed, a service
    stopped, a sysctl value changed, a firewall port removed, a config file edited, the bridge's port
    detached. The check names exactly those differences (each in its step, every other step in sync)
    and changes nothing; the steps' create again (`pulumi up`) puts them back, and the check is in
    sync again."""
    require_root()
    require_tool("ping")
    fleet, rec = dev
    host = fleet.host("devbox")
    order = [s.name for s in host_steps(host, fleet)]
    commands = step_commands(rec, "devbox")
    creates = {step: commands[step][0] for step in order}
    uploads = {step: commands[step][1] for step in order}
    with HostLab(host.bridges[0]) as lab, LoopbackSshd(netns=lab.ns) as sshd:
        sshd.upload(EL_RELEASE[host.os_family], "/etc/redhat-release")
        set_cpu_flags(sshd, vt=True)
        deploy(sshd, commands, order)
        assert drifted(drift(sshd, creates, "devbox", uploads)) == {}

        sshd.run(
            "rpm -e genisoimage && systemctl stop libvirtd && sysctl -q -w net.ipv4.ip_forward=0"
            " && firewall-cmd --quiet --remove-port=80/tcp"
            " && echo 'vm.swappiness = 10' >> /etc/sysctl.d/90-virtfleet.conf",
            check=True,
        )
        lab.ip("link", "set", "eth0", "nomaster")
        found = drifted(drift(sshd, creates, "devbox", uploads))
        assert found == {
            "sysctl": [
                "write /etc/sysctl.d/90-virtfleet.conf (content differs: -vm.swappiness = 10)",
                "set net.ipv4.ip_forward to 1 (it is 0)",
            ],
            "firewall": ["open port 80/tcp at runtime (firewalld does not allow it)"],
            "bridge-br0": ["move 10.10.0.2/24 from eth0 to bridge br0 (eth0 is not a port of br0)"],
            "role-kvm": [
                "install genisoimage (not installed)",
                "enable and start service libvirtd (it is enabled, inactive)",
            ],
        }, found
        assert "master br0" not in lab.ip("-o", "link", "show", "dev", "eth0")  # the check left it detached

        deploy(sshd, commands, order)
        assert drifted(drift(sshd, creates, "devbox", uploads)) == {}
        assert "master br0" in lab.ip("-o", "link", "show", "dev", "eth0")


def small_stack(tmp_path, hosts: list[dict]) -> str:
    """A stack file of hosts without bridges or guests (their steps: preflight to firewall)."""
    config, _ = load_stack("dev")
    values = copy.deepcopy(config.values)
    values["hosts"] = hosts
    values["guests"] = []
    values.pop("loadBalancer", None)
    document = {"config": {f"virtfleet:{k}": v for k, v in values.items() if k != "sshPrivateKey"}}
    path = tmp_path / "Pulumi.drifttest.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_unreachable_and_impostor_hosts_are_reported_and_the_others_checked(tmp_path, capsys):
    """Three hosts: ok1 answers with its pinned key, impostor answers with another key than the one
    the stack pins, gone has no sshd at all. ok1's steps are checked (a fresh EL box: its hostname and
    more drift); the other two are reported unreachable with their cause; exit 1 (not all could be
    checked), and build/<stack>/drift.json says the same."""
    require_root()
    with LoopbackSshd() as ok1, LoopbackSshd() as impostor, LoopbackSshd() as other:
        ok1.upload(EL_RELEASE["el9"], "/etc/redhat-release")
        impostor.host = "127.0.0.2"
        impostor.stop()
        impostor.start()  # now on 127.0.0.2, with a new key of its own; the stack pins other's key
        (impostor.workdir / "authorized_keys").write_text((ok1.workdir / "authorized_keys").read_text())
        capacity = {"cpuThreads": 4, "memoryMiB": 8192, "diskGiB": 100}
        hosts = [
            {"name": "ok1", "address": "127.0.0.1", "port": ok1.port, "hostKey": ok1.host_public_key,
             "roles": ["docker"], "capacity": capacity},
            {"name": "impostor", "address": "127.0.0.2", "port": impostor.port, "hostKey": other.host_public_key,
             "roles": ["docker"], "capacity": capacity},
            {"name": "gone", "address": "127.0.0.3", "port": other.port, "roles": ["docker"], "capacity": capacity,
             "hostKey": other.host_public_key},
        ]  # fmt: skip
        stack_file = small_stack(tmp_path, hosts)
        out = tmp_path / "drift.json"
        code = drift_main([
            "drifttest", "--stack-file", stack_file, "--identity", str(ok1.client_key), "--known-hosts",
            str(tmp_path / "none"), "--no-engine", "--json", str(out), "--timeout", "120",
        ])  # fmt: skip
        printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert code == 1 == report["exitCode"], printed
    rows = {(r["machine"], r["status"]): r for r in report["rows"]}
    assert "does not match the pinned one" in rows["impostor", UNREACHABLE]["lines"][0], printed
    assert "Connection refused" in rows["gone", UNREACHABLE]["lines"][0], printed
    ok_rows = [r for r in report["rows"] if r["machine"] == "ok1"]
    assert {r["status"] for r in ok_rows} <= {IN_SYNC, DRIFT} and len(ok_rows) >= 6, printed
    hostname = next(r for r in ok_rows if r["item"] == "hostname")
    assert hostname["status"] == DRIFT and hostname["lines"][0].startswith("set the hostname to ok1."), printed
    assert rows["(engine)", NOT_CHECKED]["lines"] == ["no Pulumi CLI: make engine"]
    assert ERROR not in {r["status"] for r in report["rows"]}
    assert "impostor" in printed and "UNREACHABLE" in printed and "DRIFT" in printed


def test_an_invalid_stack_is_refused_before_any_machine_is_contacted(tmp_path, capsys):
    stack_file = small_stack(tmp_path, [{"name": "bad name", "address": "127.0.0.1", "roles": ["docker"],
                                         "capacity": {"cpuThreads": 1, "memoryMiB": 1024, "diskGiB": 1}}])  # fmt: skip
    assert drift_main(["drifttest", "--stack-file", stack_file, "--no-engine", "--json", str(tmp_path / "d.json")]) == 1
    err = capsys.readouterr().err
    assert "virtfleet:hosts[0].name" in err and "nothing was checked" in err
    assert not (tmp_path / "d.json").exists()

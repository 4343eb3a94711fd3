"""L1: the model accepts the committed stacks and applies its documented defaults and rules."""

from __future__ import annotations

import subprocess

import pytest
from conftest import STACKS, stack_values

from components.model import (
    DockerGuest,
    FleetConfigError,
    KvmGuest,
    OpenvzGuest,
    Role,
    load_fleet,
)
from plan.run import load_stack

SSH_KEY = {"sshPrivateKey"}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDznE2vP5E1VGkWPq6IZLgUXfCirQLkT9T9JbET23ha3"  # a real public key


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stacks_are_valid(stack):
    fleet = load_fleet(stack_values(stack), SSH_KEY)
    assert fleet.hosts, stack
    assert fleet.load_balancer is not None


def test_prod_is_the_seed_topology():
    fleet = load_fleet(stack_values("prod"), SSH_KEY)
    roles = {role for host in fleet.hosts for role in host.roles}
    assert roles == set(Role)
    assert {g.type for g in fleet.guests} == {"kvm", "xen", "openvz", "virtualbox", "docker"}
    lb = fleet.load_balancer
    assert fleet.machine_address(lb.primary) == "10.0.0.10"
    assert [fleet.machine_address(b) for b in lb.backends] == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    assert [fleet.machine_address(b) for b in lb.backups] == ["10.0.0.20"]


def test_defaults_are_applied():
    _config, fleet = load_stack("dev")  # with the plan's stand-in for the key each user sets
    host = fleet.hosts[0]
    assert host.selinux == "enforcing" and host.allow_reboot is False and host.port == 22
    assert host.capacity.cpu_overcommit == 4.0 and host.capacity.memory_overcommit == 1.0
    web1 = fleet.guest("web1")
    assert isinstance(web1, KvmGuest)
    assert (web1.autostart, web1.power_state, web1.graphics, web1.cpu_mode) == (
        True,
        "running",
        "spice",
        "host-passthrough",
    )
    assert web1.image is None and web1.install is None  # the os family's cloud image
    web3 = fleet.guest("web3")
    assert isinstance(web3, DockerGuest) and web3.disk_gib == 0 and web3.restart == "unless-stopped"
    lb = fleet.load_balancer
    assert (lb.balance, lb.sticky_cookie, lb.backend_port) == ("roundrobin", "lb", 80)
    assert (lb.health_check.path, lb.health_check.fall, lb.health_check.rise) == ("/", 2, 2)
    assert lb.stats_bind.port == 8404


def test_fleet_is_immutable():
    _config, fleet = load_stack("dev")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is an implementation detail
        fleet.hosts[0].name = "other"
    assert isinstance(fleet.hosts, tuple) and isinstance(fleet.guests, tuple)


def test_reordering_the_stack_changes_nothing_but_order():
    values = stack_values("prod")
    reordered = dict(values, guests=list(reversed(values["guests"])), hosts=list(reversed(values["hosts"])))
    a, b = load_fleet(values, SSH_KEY), load_fleet(reordered, SSH_KEY)
    assert {g.name: g for g in a.guests} == {g.name: g for g in b.guests}


def test_openvz_guest_keeps_its_ctid():
    fleet = load_fleet(stack_values("prod"), SSH_KEY)
    ct = fleet.guest("webserver3")
    assert isinstance(ct, OpenvzGuest) and ct.ctid == 101 and ct.ostemplate == "centos-7-x86_64-minimal"


def test_every_problem_is_reported_at_once(prod_values):
    prod_values["guests"][0]["network"]["ip"] = "10.9.9.9"
    prod_values["guests"][1]["host"] = "nowhere"
    prod_values["hosts"][0]["roles"] = ["kvm", "xen"]
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(prod_values, SSH_KEY)
    paths = caught.value.paths()
    assert "virtfleet:guests[0].network.ip" in paths
    assert "virtfleet:guests[1].host" in paths
    assert "virtfleet:hosts[0].roles" in paths


def test_missing_ssh_key_is_named_unless_agent(prod_values):
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(prod_values, set())
    assert caught.value.paths() == ["virtfleet:sshPrivateKey"]
    prod_values["ssh"]["useAgent"] = True
    # The agent's key cannot be put on the guests the program logs in to: they must be listed.
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(prod_values, set())
    assert caught.value.paths() == ["virtfleet:ssh.authorizedKeys"]
    assert "haproxy, webserver1, webserver2" in str(caught.value) and "haproxy2" in str(caught.value)
    prod_values["ssh"]["authorizedKeys"] = [KEY]
    load_fleet(prod_values, set())


def test_a_private_key_is_parsed_and_never_quoted(prod_values, tmp_path):
    """sshPrivateKey is checked where it lands (OpenSSH, the providers): a real unencrypted key, with
    or without the final newline `pulumi config set` drops; the message never shows the key."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "id"], check=True)
    key = (tmp_path / "id").read_text()
    assert load_fleet({**prod_values, "sshPrivateKey": key.rstrip("\n")}, SSH_KEY)
    broken = key.replace(key.splitlines()[2], key.splitlines()[2][::-1])
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass phrase", "-f", tmp_path / "locked"], check=True)
    for bad, why in (
        ("not a key at all", "is not a private key file's text"),
        (broken, "does not parse as a private key"),
        ((tmp_path / "locked").read_text(), "is encrypted with a passphrase"),
    ):
        with pytest.raises(FleetConfigError) as caught:
            load_fleet({**prod_values, "sshPrivateKey": bad}, SSH_KEY)
        assert caught.value.paths() == ["virtfleet:sshPrivateKey"] and why in str(caught.value), str(caught.value)
        assert bad.splitlines()[1 if len(bad.splitlines()) > 1 else 0][:20] not in str(caught.value)

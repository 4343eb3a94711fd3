"""KvmGuest under the Pulumi mocks (L2): providers, units, dependencies, sharing, consoles, power."""

from __future__ import annotations

import copy

import pytest
from conftest import STACKS, recording

from components.guests.kvm_seed import KICKSTART_ON_SEED, guest_mac
from components.model import KvmGuest as KvmGuestModel
from components.model import load_fleet
from plan.run import StackConfig, load_stack, run_program

DOMAIN = "libvirt:index/domain:Domain"
VOLUME = "libvirt:index/volume:Volume"
SEED = "libvirt:index/cloudInitDisk:CloudInitDisk"
STEP = "virtfleet:remote:RemoteStep"


@pytest.fixture
def runs():
    return {stack: recording(stack) for stack in STACKS}


@pytest.fixture(scope="module")
def paused_run():
    """A TEST copy of dev with web2 paused (the committed stack file is left alone)."""
    config, _ = load_stack("dev")
    values = copy.deepcopy(config.values)
    guest = next(g for g in values["guests"] if g["name"] == "web2")
    guest["powerState"] = "paused"
    test_config = StackConfig("dev-paused", values, set(config.secret_keys), list(config.placeholders))
    return load_fleet(values, test_config.secret_keys), run_program(test_config)


def kvm_guests(fleet):
    return [g for g in fleet.guests if isinstance(g, KvmGuestModel)]


def test_every_kvm_guest_has_disk_seed_and_domain(runs):
    for stack, (fleet, rec) in runs.items():
        assert kvm_guests(fleet), stack
        for guest in kvm_guests(fleet):
            component = rec.named(guest.name, "virtfleet:guest:KvmGuest")
            kinds = sorted(r.type for r in rec.children(component.urn))
            assert kinds.count(DOMAIN) == 1 and kinds.count(VOLUME) == 1 and kinds.count(SEED) == 1, (stack, kinds)


def test_libvirt_resources_use_their_own_hosts_provider(runs):
    for fleet, rec in runs.values():
        for guest in kvm_guests(fleet):
            provider = rec.named(f"{guest.host}-libvirt", "pulumi:providers:libvirt")
            for record in rec.children(rec.named(guest.name, "virtfleet:guest:KvmGuest").urn):
                if record.type.startswith("libvirt:"):
                    assert record.provider.startswith(provider.urn + "::"), (guest.name, record.name)


def test_memory_is_given_in_mib_and_vcpus_match(runs):
    for fleet, rec in runs.values():
        for guest in kvm_guests(fleet):
            domain = rec.named(guest.name, DOMAIN)
            assert domain.inputs["memory"] == guest.memory_mib  # the provider's unit is MiB
            assert domain.inputs["vcpu"] == guest.vcpus
            disk = rec.named(f"{guest.name}-disk", VOLUME)
            assert disk.inputs["size"] == guest.disk_gib * 1024**3  # volumes take bytes


def test_domain_depends_on_bridge_network_and_its_volumes(runs):
    for fleet, rec in runs.values():
        for guest in kvm_guests(fleet):
            domain = rec.named(guest.name, DOMAIN)
            network = rec.named(f"{guest.host}-net-{guest.network.bridge}", "libvirt:index/network:Network")
            disk = rec.named(f"{guest.name}-disk", VOLUME)
            seed = rec.named(f"{guest.name}-ks" if guest.uses_installer else f"{guest.name}-seed", SEED)
            for needed in (network, disk, seed):
                assert needed.urn in domain.dependencies, (guest.name, needed.name)
            [nic] = domain.inputs["networkInterfaces"]
            assert nic["networkId"] == f"{network.name}-id"
            assert nic["mac"] == guest_mac(guest)
            assert domain.inputs["disks"] == [{"volumeId": f"{disk.name}-id"}]
            assert domain.inputs["cloudinit"] == f"{seed.name}-id"


def test_graphics_never_listen_beyond_loopback(runs):
    domains = [r for _, rec in runs.values() for r in rec.of_type(DOMAIN)]
    assert domains
    for domain in domains:
        graphics = domain.inputs.get("graphics")
        if graphics is not None:
            assert graphics["listenType"] == "address", domain.name
            assert graphics["listenAddress"] == "127.0.0.1", domain.name
        assert all(c.get("sourceHost", "127.0.0.1") == "127.0.0.1" for c in domain.inputs["consoles"])


@pytest.mark.parametrize(("stack", "pair"), [("dev", ("web1", "web2")), ("prod", ("haproxy", "webserver1"))])
def test_guests_on_one_host_and_image_share_one_base_volume(runs, stack, pair):
    _fleet, rec = runs[stack]
    bases = {rec.named(f"{name}-disk", VOLUME).inputs["baseVolumeId"] for name in pair}
    assert len(bases) == 1
    [base_id] = bases
    base = rec.named(base_id.removesuffix("-id"), VOLUME)
    assert base.inputs["source"].endswith(".qcow2")
    same_source = [r for r in rec.of_type(VOLUME) if r.inputs.get("source") == base.inputs["source"]]
    assert same_source == [base]  # downloaded once per host


def test_protect_and_retained_disk_follow_config(runs):
    fleet, rec = runs["prod"]
    for guest in kvm_guests(fleet):
        assert rec.named(guest.name, DOMAIN).protect is guest.protect
        assert rec.named(f"{guest.name}-disk", VOLUME).retain_on_delete is guest.retain_disk
    assert rec.named("webserver1", DOMAIN).protect and rec.named("webserver1-disk", VOLUME).retain_on_delete


def test_installer_guest_boots_install_tree_with_kickstart_on_seed(runs):
    _fleet, rec = runs["prod"]
    domain = rec.named("centos7guest", DOMAIN)
    args = {k: v for arg in domain.inputs["cmdlines"] for k, v in arg.items()}
    assert args["inst.ks"] == KICKSTART_ON_SEED
    assert args["inst.repo"] == "https://vault.centos.org/7.9.2009/os/x86_64/"
    assert args["ip"].startswith("10.0.0.17::10.0.0.1:255.255.255.0:")
    kernel = rec.named(domain.inputs["kernel"].removesuffix("-id"), VOLUME)
    assert kernel.inputs["source"].endswith("/images/pxeboot/vmlinuz")
    seed = rec.named("centos7guest-ks", SEED)
    assert "userData" in seed.secret_paths  # carries the root password hash
    assert seed.inputs["userData"].lstrip().startswith("# virtfleet guest centos7guest: kickstart")
    # The installer path owns its power state through the step (after install it redefines the domain).
    assert rec.named("kvm1-centos7guest-power", STEP).inputs["machine"] == "kvm1"


def test_paused_guest_gets_a_power_step_after_its_domain(paused_run):
    _fleet, rec = paused_run
    step = rec.named("devbox-web2-power", STEP)
    assert "virsh suspend" in step.inputs["createScript"]
    assert rec.named("web2", DOMAIN).urn in step.dependencies
    assert rec.named("web2", DOMAIN).inputs["running"] is True
    assert not [r for r in rec.of_type(STEP) if r.name == "devbox-web1-power"]


def test_stopped_guest_is_declared_not_running():
    config, _ = load_stack("dev")
    values = copy.deepcopy(config.values)
    values["guests"][0]["powerState"] = "stopped"
    rec = run_program(StackConfig("dev-stopped", values, set(config.secret_keys), list(config.placeholders)))
    assert rec.named(values["guests"][0]["name"], DOMAIN).inputs["running"] is False


def test_the_stacks_login_key_is_authorized_on_guests(runs):
    """Key-based stacks authorize the public half of sshPrivateKey; agent stacks warn instead."""
    from plan.write import machine_files

    _fleet, rec = runs["prod"]
    files = machine_files(rec)
    planned_key = "ssh-ed25519 AAAAPlannedPublicHalfOfSshPrivateKey plan"
    assert planned_key in files["webserver1/cidata/user-data"]
    assert planned_key in files["centos7guest/root/original-ks.cfg"]
    _fleet, dev = runs["dev"]
    assert any("nobody can log in over SSH" in w for w in dev.warnings)
    assert not any("nobody can log in" in w for w in rec.warnings)

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
            assert kinds.count(DOMAIN) == 1 and kinds.count(VOLUME) == 1, (stack, kinds)
            assert "libvirt:index/cloudInitDisk:CloudInitDisk" not in kinds, "the host builds the seed ISO"
            assert rec.named(f"{guest.host}-{guest.name}-seed", STEP).parent == component.urn


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
            seed = rec.named(f"{guest.host}-{guest.name}-seed", "command:remote:Command")
            for needed in (network, disk, seed):
                assert needed.urn in domain.dependencies, (guest.name, needed.name)
            # By the bridge's name, the form the provider reads a running domain's NIC back in.
            assert domain.inputs["networkInterfaces"] == [{"bridge": guest.network.bridge, "mac": guest_mac(guest)}]
            # Its disk, and the seed ISO the host built, by path (the provider makes a .iso a CD-ROM).
            iso = f"/var/lib/libvirt/images/{guest.name}-seed.iso"
            assert domain.inputs["disks"] == [{"volumeId": f"{disk.name}-id"}, {"file": iso}]
            assert "cloudinit" not in domain.inputs


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
def test_guests_on_one_host_and_image_share_one_verified_download(runs, stack, pair):
    """The base image is the host's own download into the default pool, checked against image.sha256
    before any disk is made on it (not a libvirt volume with source=URL: unverified, Range-only)."""
    fleet, rec = runs[stack]
    disks = [rec.named(f"{name}-disk", VOLUME) for name in pair]
    assert {(d.inputs["baseVolumeName"], d.inputs["baseVolumePool"]) for d in disks} == {
        (disks[0].inputs["baseVolumeName"], "default")
    }
    assert not [r for r in rec.of_type(VOLUME) if "source" in r.inputs], "libvirt downloads nothing"
    volume = disks[0].inputs["baseVolumeName"]
    guest = fleet.guest(pair[0])
    [download] = [
        r for r in rec.of_type(STEP)
        if r.inputs.get("download") and r.inputs["machine"] == guest.host and volume in r.inputs["createScript"]
    ]  # fmt: skip
    url = str(guest.image.url) if guest.image else "https://cloud.centos.org/centos/9-stream/x86_64/images/"
    assert download.inputs["download"]["url"].startswith(url)
    assert download.inputs["download"]["sha256"] == (guest.image.sha256 or "" if guest.image else "")
    assert f"vf_path=/var/lib/libvirt/images/{volume}\n" in download.inputs["createScript"]
    assert "\nvf_pool_refresh default\n" in download.inputs["createScript"]
    for disk in disks:  # each disk waits for the download's command
        assert rec.named(download.name, "command:remote:Command").urn in disk.dependencies


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
    # Kernel and initrd are the host's downloads from the install tree, booted by path.
    assert domain.inputs["kernel"].startswith("/var/lib/libvirt/images/virtfleet-base-vmlinuz-")
    assert domain.inputs["initrd"].startswith("/var/lib/libvirt/images/virtfleet-base-initrd-img-")
    kernel = next(r for r in rec.of_type(STEP) if r.inputs.get("download", {}).get("url", "").endswith("/vmlinuz"))
    assert kernel.inputs["download"] == {
        "url": "https://vault.centos.org/7.9.2009/os/x86_64/images/pxeboot/vmlinuz",
        "sha256": "",
        "kind": "installer",
    }
    assert f"vf_path={domain.inputs['kernel']}\n" in kernel.inputs["createScript"]
    seed = rec.named("kvm1-centos7guest-seed", STEP)
    assert seed.inputs["secret"] is True  # its script embeds the kickstart: root's password hash
    [kickstart] = [text for path, text in seed.inputs["files"].items() if path.endswith("/seed/user-data")]
    assert kickstart.lstrip().startswith("# virtfleet guest centos7guest: kickstart")
    assert "vf_iso=/var/lib/libvirt/images/centos7guest-seed.iso\n" in seed.inputs["createScript"]
    # The installer path owns its power state through the step (after install it redefines the domain).
    assert rec.named("kvm1-centos7guest-power", STEP).inputs["machine"] == "kvm1"


def test_every_guest_is_defined_and_then_powered_by_its_step(paused_run):
    """The provider only defines the domain; the power step starts (or pauses) it, and runs again for a
    new domain (its trigger is the domain's id), so a failed start leaves a domain the stack knows."""
    _fleet, rec = paused_run
    for name, target in (("web1", "running"), ("web2", "paused")):
        step = rec.named(f"devbox-{name}-power", STEP)
        domain = rec.named(name, DOMAIN)
        assert f"vf_target={target}\n" in step.inputs["createScript"]
        assert domain.urn in step.dependencies
        assert domain.inputs["running"] is False and domain.ignore_changes == ["running"]
        command = rec.named(f"devbox-{name}-power", "command:remote:Command")
        assert command.inputs["triggers"] == [f"{name}-id"] and command.delete_before_replace


def test_stopped_guest_is_declared_not_running():
    config, _ = load_stack("dev")
    values = copy.deepcopy(config.values)
    values["guests"][0]["powerState"] = "stopped"
    rec = run_program(StackConfig("dev-stopped", values, set(config.secret_keys), list(config.placeholders)))
    assert rec.named(values["guests"][0]["name"], DOMAIN).inputs["running"] is False
    assert "vf_target=stopped\n" in rec.named("devbox-web1-power", STEP).inputs["createScript"]


def test_the_stacks_login_key_is_authorized_on_guests(runs):
    """Key-based stacks authorize the public half of sshPrivateKey; agent stacks warn instead."""
    from plan.write import machine_files

    _fleet, rec = runs["prod"]
    files = machine_files(rec)
    planned_key = "ssh-ed25519 AAAAPlannedPublicHalfOfSshPrivateKey plan"
    assert planned_key in files["webserver1/cidata/user-data"]
    assert planned_key in files["centos7guest/root/original-ks.cfg"]
    assert not any("nobody can log in" in w for w in rec.warnings)
    # With the agent and no authorizedKeys, guests nobody logs in to (no tier here) only warn; the
    # model refuses it where the program itself must log in (test_model).
    config, _ = load_stack("dev")
    values = {k: v for k, v in copy.deepcopy(config.values).items() if k not in ("loadBalancer", "sshPrivateKey")}
    values["ssh"] = {"user": "root", "useAgent": True}
    agent = run_program(StackConfig("dev-agent", values, set()))
    assert sum("nobody can log in over SSH" in w for w in agent.warnings) == 2  # web1, web2

"""Every file a Xen guest is born with, checked by the strictest tool available here (L3).

- xl.cfg: ``xl create -n`` needs libxl and a running Xen, and no other xl.cfg parser is packaged
  for this machine, so the config goes through the xl fake's parser (``tests/fakes/xl.py``), which
  implements xl.cfg(5)'s syntax strictly and refuses unknown keys and bad values; the tests below
  prove it refuses them.
- user-data: ``cloud-init schema --config-file``; the kickstart (installer path): pykickstart's
  ksvalidator for the guest's OS family (RHEL7 / RHEL9).
- every step script of the variants the stacks do not hold (hvm with VNC or SPICE, the installer
  path, retainDisk): shellcheck (prod's own scripts are in test_steps_shellcheck).
"""

from __future__ import annotations

import hashlib
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import edited_fleet
from support.tools import ksvalidator, require_tool

from components.guests.xen_config import (
    base_image_path,
    domain_replace_fields,
    installer,
    render_base_image_step,
    render_domain_step,
    render_seed_step,
    render_xl_cfg,
    seed_files,
    spice_port,
    xen_mac,
)
from components.model import FleetConfigError
from components.osfamily import os_family


def _load_xl_fake():
    """The xl fake's module (its strict xl.cfg parser), imported with tests/fakes on sys.path only
    while it loads: left there, tests/fakes/docker.py (the docker CLI fake) shadows the Docker SDK
    for every later test (the lab's dockerd then "did not answer")."""
    fakes = str(Path(__file__).resolve().parent / "fakes")
    sys.path.insert(0, fakes)
    try:
        return importlib.import_module("xl")
    finally:
        sys.path.remove(fakes)


xl_fake = _load_xl_fake()

INSTALL = {"location": "https://vault.centos.org/7.9.2009/os/x86_64/", "packages": ["@core", "httpd"]}
VARIANTS = {
    "prod": {},
    "hvm-vnc": {"mode": "hvm"},
    "hvm-spice": {"mode": "hvm", "graphics": "spice"},
    # (prod's webserver2 boots a pinned cloud image: the installer path has none)
    "installer": {"mode": "pv", "osFamily": "el7", "install": INSTALL, "image": None, "retainDisk": True},
}


def _guests(values: dict, *names: str) -> list[dict]:
    return [g for g in values["guests"] if g["name"] in names]


def fleet_with(**changes):
    """prod with webserver2's keys changed."""
    return edited_fleet("prod", lambda values: _guests(values, "webserver2")[0].update(changes))


@pytest.fixture(scope="module")
def variants():
    return {name: fleet_with(**changes) for name, changes in VARIANTS.items()}


def parse(text: str) -> dict:
    return xl_fake.check(xl_fake.parse_cfg(text))


def test_every_xl_cfg_parses_strictly(variants):
    for name, fleet in variants.items():
        for guest in (g for g in fleet.guests if g.type == "xen"):
            config = parse(render_xl_cfg(guest, fleet))
            assert config["c_info"] == {"type": guest.mode, "name": guest.name}, name
            b = config["b_info"]
            assert (b["target_memkb"], b["max_memkb"]) == (guest.memory_mib * 1024, guest.maxmem_mib * 1024)
            assert (len(b["avail_vcpus"]), b["max_vcpus"]) == (guest.vcpus, guest.maxvcpus)
            assert [n["bridge"] for n in config["nics"]] == [guest.network.bridge]
            assert config["disks"][0]["vdev"] == "xvda"
            assert (config["on_reboot"], config["on_crash"]) == (guest.on_reboot, guest.on_crash)
            extra = b[f"type.{guest.mode}"]
            if guest.mode == "hvm":
                listen = extra.get("vnclisten") or extra.get("spicehost")
                assert listen == "127.0.0.1", (name, extra)
            elif not guest.uses_installer:
                assert extra == {"bootloader": "pygrub"}
            if guest.uses_installer:
                install = parse(render_xl_cfg(guest, fleet, install=True))["b_info"]["type.pv"]
                assert "inst.ks=hd:LABEL=cidata:/user-data" in install["extra"]
                assert install["kernel"].startswith("/var/lib/xen/images/virtfleet-base-vmlinuz-")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t + 'bogus = "1"\n', "unknown config key 'bogus'"),
        (lambda t: t.replace("mac=00:16:3e", "mac=01:16:3e"), "invalid mac address"),
        (lambda t: t.replace("memory = 2048", "memory = 8192"), "maxmem (4096) must be at least memory (8192)"),
        (lambda t: t.replace("vcpus = 2", "vcpus = 9"), "maxvcpus (4) must be at least vcpus (9)"),
        (lambda t: t.replace("memory = 2048", 'memory = "2048"'), "memory must be a number"),
        (lambda t: t + 'vnc = 1\nvnclisten = "127.0.0.1"\n', "not valid for type pvh"),
        (lambda t: t.replace("vdev=xvdb,access=ro,", "vdev=xvdb,access=ro,devtype=cdrom,"), "devtype=cdrom"),
        (lambda t: t.replace('on_crash = "restart"', 'on_crash = "explode"'), "Unknown on_crash action"),
        (lambda t: t + 'name = "again"\n', "name given twice"),
        (lambda t: t.replace(",target=/var/lib/xen/images/webserver2.img", ""), "no target"),
        (lambda t: t.replace('type = "pvh"', 'type = "pvm"'), "Invalid domain type pvm"),
        (lambda t: t.replace("vdev=xvdb", "vdev=xvda"), "same vdev"),
        (lambda t: t.replace('name = "webserver2"', "name = webserver2"), "syntax error"),
    ],
)
def test_the_parser_refuses_what_xl_refuses(variants, edit, message):
    fleet = variants["prod"]
    text = render_xl_cfg(fleet.guest("webserver2"), fleet)
    parse(text)
    with pytest.raises(xl_fake.ParseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(edit(text))


def test_seed_files_pass_their_real_tools(variants, tmp_path: Path):
    """Cloud-image path: user-data through cloud-init's schema; installer path: the kickstart (the
    KVM guests' renderer) through pykickstart for the guest's family."""
    cloud_init = require_tool("cloud-init")
    validator = ksvalidator()
    keys = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVmYWtla2V5Zm9ydGVzdHNvbmx5ZmFrZWtleWZha2Vr test",)
    for name, fleet in variants.items():
        guest = fleet.guest("webserver2")
        step = render_seed_step(guest, fleet, keys, "$6$salt$hash")
        files = {f.path.rsplit("/", 1)[1]: f.content for f in step.files}
        path = tmp_path / f"{name}.user-data"
        path.write_text(files["user-data"])
        if guest.uses_installer:
            assert set(files) == {"user-data"}
            family = os_family(guest.os_family)
            proc = subprocess.run(
                [validator, "-v", family.kickstart_version, path], capture_output=True, text=True, timeout=60
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "network  --bootproto=static" in files["user-data"] or "--bootproto=static" in files["user-data"]
        else:
            assert set(files) == {"user-data", "meta-data", "network-config"}
            proc = subprocess.run(
                [cloud_init, "schema", "--config-file", path], capture_output=True, text=True, timeout=60
            )
            assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout + proc.stderr
            assert "00:16:3e:" in files["network-config"]


def test_variant_scripts_are_shellcheck_clean(variants, tmp_path: Path):
    shellcheck = require_tool("shellcheck")
    paths = []
    for name, fleet in variants.items():
        guest = fleet.guest("webserver2")
        steps = [render_domain_step(guest, fleet).step, render_seed_step(guest, fleet, (), "$6$x$y")]
        for step in steps:
            for action in ("create", "delete"):
                path = tmp_path / f"{name}-{step.name}.{action}.sh"
                path.write_text(getattr(step, action))
                paths.append(str(path))
    proc = subprocess.run([shellcheck, "--severity=style", "--shell=bash", *paths], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"install": INSTALL, "image": None}, "install", "mode: pv"),
        ({"graphics": "vnc"}, "graphics", "needs mode: hvm"),
        ({"maxMemoryMiB": 1024}, "maxMemoryMiB", "below memoryMiB"),
        ({"maxVcpus": 1}, "maxVcpus", "below vcpus"),
        ({"mode": "hvm2"}, "mode", "pvh"),
    ],
)
def test_bad_xen_settings_are_refused_naming_the_guest(changes, key, message):
    with pytest.raises(FleetConfigError) as err:
        fleet_with(**changes)
    text = str(err.value)
    assert "virtfleet:guests[" in text and message in text, text


def test_base_image_step_downloads_one_url_per_host_into_the_images_dir():
    url, digest = "https://images.example/el9.qcow2", "ab" * 32
    name, path = base_image_path("xen1", url, ".qcow2")
    assert path.startswith("/var/lib/xen/images/") and path.endswith(".qcow2") and "xen1" not in name
    step = render_base_image_step("xen1", url, digest)
    assert (step.machine, step.name) == ("xen1", name)
    assert f"vf_url={url}\nvf_path={path}\nvf_sha256={digest}\n" in step.create
    unpinned = render_base_image_step("xen1", url, None)
    assert f"vf_path={path}\nvf_sha256=''\n" in unpinned.create
    kernel = render_base_image_step("xen1", "https://tree.example/images/pxeboot/vmlinuz", None, "")
    assert base_image_path("xen1", "https://tree.example/images/pxeboot/vmlinuz", "")[1] in kernel.create
    assert not base_image_path("xen1", "https://tree.example/images/pxeboot/vmlinuz", "")[1].endswith(".qcow2")


def test_seed_step_holds_the_seed_files_readable_by_root_only(variants):
    keys = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVmYWtla2V5Zm9ydGVzdHNvbmx5ZmFrZWtleWZha2Vr test",)
    for name, fleet in variants.items():
        guest = fleet.guest("webserver2")
        expected = seed_files(guest, fleet, keys, "$6$salt$hash")
        step = render_seed_step(guest, fleet, keys, "$6$salt$hash")
        assert step.secret and step.machine == "xen1"
        assert {f.path: (f.content, f.mode) for f in step.files} == {
            f"/var/lib/virtfleet/xen/webserver2/seed/{n}": (text, 0o600) for n, text in expected.items()
        }, name
        if guest.uses_installer:
            assert set(expected) == {"user-data"} and "rootpw --iscrypted $6$salt$hash" in expected["user-data"]
            assert keys[0] in expected["user-data"]
            with pytest.raises(ValueError, match="guest webserver2: the kickstart needs root's password hash"):
                seed_files(guest, fleet, keys, None)
        else:
            assert set(expected) == {"user-data", "meta-data", "network-config"}
            assert keys[0] in expected["user-data"]
            assert xen_mac(guest) in expected["network-config"]
            # a new instance-id whenever user-data or network-config change (cloud-init applies it again)
            seed = hashlib.sha256(f"{expected['user-data']}\0{expected['network-config']}".encode()).hexdigest()
            assert f"{guest.name}-{seed[:12]}" in expected["meta-data"]


# The dated image prod pins (with its sha256) for its Xen guests.
EL9_CLOUD = (
    "https://cloud.centos.org/centos/9-stream/x86_64/images/CentOS-Stream-GenericCloud-x86_64-9-20250812.1.x86_64.qcow2"
)


def test_replace_fields_are_what_xl_cannot_change_live(variants):
    """Written out by hand from prod's stack: a change of any of these is a new domain."""
    fleet = variants["prod"]
    web, mail = fleet.guest("webserver2"), fleet.guest("mailserver")
    assert domain_replace_fields(web) == {
        "type": "pvh", "maxmem": 4096, "maxvcpus": 4, "mac": xen_mac(web), "bridge": "brid0", "disk": 20,
        "source": EL9_CLOUD, "on_reboot": "restart", "on_crash": "restart", "graphics": "none",
    }  # fmt: skip
    assert domain_replace_fields(mail) == {
        "type": "pv", "maxmem": 256, "maxvcpus": 1, "mac": xen_mac(mail), "bridge": "brid0", "disk": 8,
        "source": EL9_CLOUD, "on_reboot": "destroy", "on_crash": "destroy", "graphics": "none",
    }  # fmt: skip
    assert xen_mac(web) != xen_mac(mail)
    installer = variants["installer"].guest("webserver2")
    assert domain_replace_fields(installer)["source"] == INSTALL["location"]
    assert domain_replace_fields(variants["hvm-spice"].guest("webserver2"))["graphics"] == "spice"


def test_domain_step_carries_the_guests_settings(variants):
    for name, fleet in variants.items():
        guest = fleet.guest("webserver2")
        lifecycle = render_domain_step(guest, fleet)
        step = lifecycle.step
        assert lifecycle.replace_fields == domain_replace_fields(guest)
        assert (step.machine, step.name, step.secret) == ("xen1", "webserver2-domain", True)
        assert (
            "vf_name=webserver2\nvf_cfg=/etc/xen/webserver2.cfg\nvf_disk=/var/lib/xen/images/webserver2.img\n"
            "vf_seed=/var/lib/xen/images/webserver2-seed.iso\nvf_auto=/etc/xen/auto/webserver2.cfg\n"
            "vf_state_dir=/var/lib/virtfleet/xen/webserver2\nvf_memory=2048\nvf_vcpus=2\nvf_target=running\n"
            "vf_shutdown_timeout=120\n"
        ) in step.create, name
        assert f'[ "$(vf_info type)" != {guest.mode} ]' in step.create
        assert '"$vf_name" xen1 "${vf_now/absent/stopped}"' in step.create  # the read-back's host
        files = {f.path: f.content for f in step.files}
        assert files["/etc/xen/webserver2.cfg"] == render_xl_cfg(guest, fleet)
        assert (
            "timeout 120 xl shutdown -w" in step.delete and "vf_remove_file /etc/xen/auto/webserver2.cfg" in step.delete
        )
        header = f"# /etc/xen/webserver2.cfg: virtfleet Xen guest webserver2 ({guest.os_family}, "
        source = f"installer {INSTALL['location']}" if guest.uses_installer else f"cloud image {EL9_CLOUD}"
        assert files["/etc/xen/webserver2.cfg"].startswith(f"{header}{source}), for xl create.\n")
        assert "target=/var/lib/xen/images/webserver2-seed.iso" in files["/etc/xen/webserver2.cfg"]
        assert 'ln -sfn "$vf_cfg" "$vf_auto"' in step.create  # autostart: true in prod
        if guest.uses_installer:
            boot = installer(guest, fleet)
            assert f'for vf_need in "$vf_seed" {boot.kernel} {boot.initrd}; do' in step.create
            assert files["/var/lib/virtfleet/xen/webserver2/install.cfg"] == render_xl_cfg(guest, fleet, install=True)
            assert 'qemu-img create -q -f raw "$vf_disk.part" 20G' in step.create and "-ge 3600 ]" in step.create
            disk = "vf_remove_file /var/lib/xen/images/webserver2.img\n"
            assert "kept (retainDisk)" in step.delete and disk not in step.delete
        else:
            assert set(files) == {"/etc/xen/webserver2.cfg"}
            base = base_image_path("xen1", EL9_CLOUD, ".qcow2")[1]
            assert f'for vf_need in "$vf_seed" {base}; do' in step.create
            assert f'qemu-img convert -O raw {base} "$vf_disk.part"' in step.create
            assert 'qemu-img resize -q -f raw "$vf_disk.part" 20G' in step.create
            assert "vf_remove_file /var/lib/xen/images/webserver2.img\n" in step.delete


def test_installer_boots_the_trees_pv_kernel_with_a_static_address_and_the_seeds_kickstart(variants):
    fleet = variants["installer"]
    guest = fleet.guest("webserver2")
    boot = installer(guest, fleet)
    tree = INSTALL["location"]
    assert boot.extra == (
        f"inst.repo={tree} inst.ks=hd:LABEL=cidata:/user-data inst.text ifname=lan0:{xen_mac(guest)} "
        "ip=10.0.0.12::10.0.0.1:255.255.255.0:webserver2.packt.co.uk:lan0:none nameserver=10.0.0.1 console=hvc0"
    )
    assert boot.kernel == base_image_path("xen1", f"{tree}images/pxeboot/vmlinuz", "")[1]
    assert boot.initrd == base_image_path("xen1", f"{tree}images/pxeboot/initrd.img", "")[1]
    assert boot.kernel != boot.initrd and boot.kernel.startswith("/var/lib/xen/images/")

    def without_gateway(values):
        next(h for h in values["hosts"] if h["name"] == "xen1")["bridges"][0].pop("gateway")
        _guests(values, "webserver2")[0].update(VARIANTS["installer"])

    no_gateway = edited_fleet("prod", without_gateway)
    assert (
        " ip=10.0.0.12:::255.255.255.0:webserver2.packt.co.uk:lan0:none "
        in installer(no_gateway.guest("webserver2"), no_gateway).extra
    )


def test_base_images_are_named_by_host_url_and_suffix():
    """One file per URL on a host: the name keeps the URL's file name readable, a hash of the whole URL
    keeps two trees' equal file names apart."""
    kernel = "https://a.example/7/images/pxeboot/vmlinuz"
    tag = hashlib.sha256(kernel.encode()).hexdigest()[:10]
    assert base_image_path("xen1", kernel, "") == (
        f"xen-base-vmlinuz-{tag}",
        f"/var/lib/xen/images/virtfleet-base-vmlinuz-{tag}",
    )
    other_tree = base_image_path("xen1", "https://b.example/9/images/pxeboot/vmlinuz", "")[1]
    assert other_tree != base_image_path("xen1", kernel, "")[1]
    assert base_image_path("xen2", kernel, "")[1] == base_image_path("xen1", kernel, "")[1]
    named_base = base_image_path("xen1", "https://a.example/base-image.qcow2", ".qcow2")[0]
    assert named_base.startswith("xen-base-base-image-")  # only the prefix is renamed, not the file's own "base-"
    tag = hashlib.sha256(b"https://a.example/el9.qcow2").hexdigest()[:10]
    assert base_image_path("xen1", "https://a.example/el9.qcow2", ".qcow2") == (
        f"xen-base-el9-qcow2-{tag}",
        f"/var/lib/xen/images/virtfleet-base-el9-qcow2-{tag}.qcow2",
    )


def test_spice_ports_follow_the_guests_order_on_their_host():
    spice = {"mode": "hvm", "graphics": "spice"}
    fleet = edited_fleet("prod", lambda values: [g.update(spice) for g in _guests(values, "webserver2", "mailserver")])
    assert [spice_port(fleet.guest(n), fleet) for n in ("webserver2", "mailserver")] == [5910, 5911]
    assert "spiceport = 5911\n" in render_xl_cfg(fleet.guest("mailserver"), fleet)
    vnc = fleet_with(mode="hvm")
    assert spice_port(vnc.guest("webserver2"), vnc) == 5910  # not a SPICE guest: the base, unused
    # only SPICE guests count: webserver2 (listed first, VNC) leaves mailserver the first SPICE port
    alone = edited_fleet("prod", lambda values: _guests(values, "mailserver")[0].update(spice))
    assert spice_port(alone.guest("mailserver"), alone) == 5910


def test_domain_without_autostart_has_no_link_and_an_explicit_image_is_its_source():
    fleet = fleet_with(autostart=False, image={"url": "https://images.example/el9-custom.qcow2"})
    guest = fleet.guest("webserver2")
    step = render_domain_step(guest, fleet).step
    assert "ln -sfn" not in step.create and 'vf_remove_file "$vf_auto"' in step.create
    assert domain_replace_fields(guest)["source"] == "https://images.example/el9-custom.qcow2"
    base = base_image_path("xen1", "https://images.example/el9-custom.qcow2", ".qcow2")[1]
    assert f'for vf_need in "$vf_seed" {base}; do' in step.create


def test_seed_step_names_its_guest_iso_and_directory(variants):
    fleet = variants["prod"]
    step = render_seed_step(fleet.guest("webserver2"), fleet, (), "$6$x$y")
    assert "# Guest webserver2's NoCloud seed: the files above" in step.create
    assert "virsh pool-refresh" not in step.create, "a Xen host's seed is no libvirt volume"
    assert "vf_iso=/var/lib/xen/images/webserver2-seed.iso\nvf_seed_dir=/var/lib/virtfleet/xen/webserver2/seed\n" in (
        step.create
    )

"""Every file a KVM guest is born with, checked by its real tool (L3).

- user-data: ``cloud-init schema --config-file`` (cloud-init's own cloud-config schema).
- network-config: this cloud-init (22.4) has no ``--schema-type network-config`` and ships no
  network-config JSON schema, so it is checked by cloud-init's own v2 parser and renderers:
  ``cloud-init devel net-convert -k yaml`` must accept it and render the guest's address,
  gateway, DNS and MAC for the guest's OS (EL7: sysconfig ifcfg; EL9: NetworkManager keyfile).
- kickstart: pykickstart's ksvalidator, with the guest OS family's version (el7 RHEL7, el9 RHEL9).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.tools import ksvalidator, require_tool

from components.guests.kvm_seed import KICKSTART_PATH, SEED_PATHS, guest_mac
from components.model import KvmGuest as KvmGuestModel
from components.osfamily import os_family
from plan.run import load_stack, run_program
from plan.write import machine_files


@pytest.fixture(scope="module")
def rendered():
    """(stack, guest, {name: text}) for every KVM guest of every stack; one program run per stack."""
    out = []
    for stack in ("dev", "staging", "prod"):
        config, fleet = load_stack(stack)
        files = machine_files(run_program(config))
        for guest in fleet.guests:
            if isinstance(guest, KvmGuestModel):
                paths = {"ks.cfg": KICKSTART_PATH} if guest.uses_installer else SEED_PATHS
                out.append((fleet, guest, {name: files[f"{guest.name}{path}"] for name, path in paths.items()}))
    assert any(g.uses_installer for _, g, _ in out) and any(not g.uses_installer for _, g, _ in out)
    return out


def _run(argv: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, **kwargs)


def test_user_data_passes_cloud_inits_schema(rendered, tmp_path: Path):
    cloud_init = require_tool("cloud-init")
    for _fleet, guest, files in rendered:
        if guest.uses_installer:
            continue
        path = tmp_path / f"{guest.name}.user-data"
        path.write_text(files["user-data"])
        proc = _run([cloud_init, "schema", "--config-file", path])
        assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, (guest.name, proc.stdout + proc.stderr)


def test_schema_check_rejects_a_broken_user_data(tmp_path: Path):
    """The check above can fail: cloud-init refuses a wrong type for a known key."""
    cloud_init = require_tool("cloud-init")
    path = tmp_path / "bad"
    path.write_text("#cloud-config\nssh_pwauth: [not, a, boolean]\npackages: 7\n")
    assert _run([cloud_init, "schema", "--config-file", path]).returncode != 0


def test_network_config_is_v2_that_cloud_init_renders_for_the_guest_os(rendered, tmp_path: Path):
    cloud_init = require_tool("cloud-init")
    for fleet, guest, files in rendered:
        if guest.uses_installer:
            continue
        assert files["network-config"].count("version: 2") == 1
        source = tmp_path / f"{guest.name}.network-config"
        source.write_text(files["network-config"])
        out = tmp_path / guest.name
        kind = "sysconfig" if os_family(guest.os_family).network_backend == "network-scripts" else "network-manager"
        proc = _run(
            [cloud_init, "devel", "net-convert", "-p", source, "-k", "yaml", "-D", "centos", "-O", kind, "-d", out]
        )
        assert proc.returncode == 0, (guest.name, proc.stderr[-2000:])
        text = "\n".join(p.read_text() for p in out.rglob("*") if p.is_file()).lower()
        bridge = fleet.host(guest.host).bridge(guest.network.bridge)
        prefix = bridge.address.network.prefixlen
        expected = [guest_mac(guest)] + [str(d) for d in bridge.dns] + [str(bridge.gateway)]
        expected.append(f"{guest.network.ip}/{prefix}" if kind == "network-manager" else f"IPADDR={guest.network.ip}")
        for value in expected:
            assert value in text, (guest.name, value, text)


def test_kickstart_passes_pykickstart_for_the_guest_os_version(rendered, tmp_path: Path):
    validator = ksvalidator()
    checked = 0
    for _fleet, guest, files in rendered:
        if not guest.uses_installer:
            continue
        path = tmp_path / f"{guest.name}.ks.cfg"
        path.write_text(files["ks.cfg"])
        version = os_family(guest.os_family).kickstart_version
        proc = _run([validator, "-v", version, "-e", path])
        assert proc.returncode == 0, (guest.name, version, proc.stdout + proc.stderr)
        assert f"--ip={guest.network.ip}" in files["ks.cfg"] and "rootpw --iscrypted $6$" in files["ks.cfg"]
        checked += 1
    assert checked


def _ksvalidate(text: str, version: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """pykickstart's ksvalidator on ``text`` as kickstart ``version`` (RHEL7, RHEL9)."""
    path = tmp_path / "ks.cfg"
    path.write_text(text)
    return _run([ksvalidator(), "-v", version, "-e", path])


@pytest.mark.parametrize("version", ["RHEL7", "RHEL9"])
def test_kickstart_template_validates_for_both_families(version, tmp_path: Path):
    """The committed stacks install only el7; render an el9 one too and validate it as RHEL9."""
    from components.guests.kvm_seed import render_kickstart

    _config, fleet = load_stack("prod")
    guest = fleet.guest("centos7guest")
    family = "el7" if version == "RHEL7" else "el9"
    guest = guest.model_copy(update={"os_family": family})
    text = render_kickstart(guest, fleet, fleet.host("kvm1").bridge("brid0"), os_family(family), "$6$salt$hash")
    proc = _ksvalidate(text, version, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # and the validator does refuse a broken one
    assert _ksvalidate(text.replace("%end", "", 1), version, tmp_path).returncode != 0


def test_power_step_scripts_pass_shellcheck(tmp_path: Path):
    shellcheck = require_tool("shellcheck")
    config, _fleet = load_stack("prod")
    files = machine_files(run_program(config))
    scripts = {k: v for k, v in files.items() if "/steps/" in k and "-power." in k}
    assert scripts
    for name, text in scripts.items():
        path = tmp_path / name.replace("/", "_")
        path.write_text(text)
        proc = _run([shellcheck, "-s", "bash", "-S", "warning", path])
        assert proc.returncode == 0, (name, proc.stdout)


@pytest.mark.parametrize("version", ["RHEL7", "RHEL9"])
def test_a_web_servers_kickstart_installs_httpd_its_page_and_ports(version, tmp_path: Path):
    """On the installer path a web server of the HAProxy tier gets httpd, its page and the seed's
    ports from the kickstart itself; pykickstart accepts it and shellcheck the %post that writes it."""
    from components.guests.kvm_seed import render_kickstart
    from components.lb.web_servers import DOCROOT, page_files

    _config, fleet = load_stack("prod")
    family = "el7" if version == "RHEL7" else "el9"
    installer = fleet.guest("centos7guest").install
    guest = fleet.guest("webserver1").model_copy(update={"install": installer, "os_family": family})
    assert guest.uses_installer
    text = render_kickstart(guest, fleet, fleet.host("kvm1").bridge("brid0"), os_family(family), "$6$salt$hash")
    proc = _ksvalidate(text, version, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "firewall --enabled --service=ssh --port=80:tcp,443:tcp\n" in text
    assert "services --enabled=sshd,httpd\n" in text
    assert "\nhttpd\n%end" in text, "httpd in %packages"
    (page,) = page_files(guest, fleet.load_balancer, fleet, DOCROOT)
    assert f"cat > {page.path} <<'VIRTFLEET_FILE'\n{page.content}VIRTFLEET_FILE\n" in text
    web_post = text.rsplit("%post --erroronfail\n", 1)[1].split("%end", 1)[0]
    (tmp_path / "post.sh").write_text("#!/bin/bash\n" + web_post)
    shellcheck = _run([require_tool("shellcheck"), "-s", "bash", "-S", "warning", tmp_path / "post.sh"])
    assert shellcheck.returncode == 0, shellcheck.stdout


def test_a_web_servers_user_data_installs_httpd_its_page_and_ports():
    """A cloud-image web server gets httpd, the tier's own page and its ports at first boot (the
    schema test above checks the whole user-data with cloud-init's own schema)."""
    import yaml

    from components.guests.kvm_seed import render_user_data
    from components.lb.web_servers import DOCROOT, page_files

    _config, fleet = load_stack("prod")
    guest = fleet.guest("webserver1")
    data = yaml.safe_load(render_user_data(guest, fleet))
    (page,) = page_files(guest, fleet.load_balancer, fleet, DOCROOT)
    assert data["write_files"] == [{"path": page.path, "permissions": "0644", "content": page.content}]
    assert "httpd" in data["packages"]
    assert data["runcmd"][:2] == [f"restorecon -R {DOCROOT}", "systemctl enable --now httpd"]
    assert "--add-port=80/tcp --add-port=443/tcp" in data["runcmd"][2]
    # A guest that is no web server gets none of it.
    other = yaml.safe_load(render_user_data(fleet.guest("haproxy"), fleet))
    assert "write_files" not in other and "httpd" not in (other.get("packages") or [])

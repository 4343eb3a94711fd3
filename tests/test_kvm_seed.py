"""Pure parts of KVM guests (L1/L3): MAC derivation, the root password hash, user-data variants."""

from __future__ import annotations

import hashlib
import re
import subprocess

import pytest
from support.tools import require_tool

from components.guests.kvm_images import base_image_names
from components.guests.kvm_password import root_password_hash, salt_for, sha512_crypt
from components.guests.kvm_seed import guest_mac, render_user_data
from components.model import KvmGuest


def kvm(name: str, **extra) -> KvmGuest:
    return KvmGuest.model_validate(
        {"name": name, "type": "kvm", "host": "h", "network": {"bridge": "br0", "ip": "10.0.0.9"}, **extra}
    )


def test_derived_mac_is_stable_local_unicast_kvm_prefix_and_distinct():
    macs = {guest_mac(kvm(f"guest{i}")) for i in range(200)}
    assert len(macs) == 200
    assert guest_mac(kvm("web1")) == guest_mac(kvm("web1", vcpus=4))  # depends on the name only
    assert all(re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", m) for m in macs)


def test_configured_mac_wins():
    guest = kvm("web1", network={"bridge": "br0", "ip": "10.0.0.9", "mac": "52:54:00:AA:00:11"})
    assert guest_mac(guest) == "52:54:00:aa:00:11"


@pytest.mark.parametrize("password", ["secret", "pässwörd with spaces", "x" * 90])
def test_sha512_crypt_matches_openssl(password):
    openssl = require_tool("openssl")
    salt = salt_for("centos7guest")
    expected = subprocess.run(
        [openssl, "passwd", "-6", "-salt", salt, "-stdin"], input=password, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert sha512_crypt(password, salt) == expected


def test_root_hash_is_deterministic_per_guest_and_salted_by_name():
    assert root_password_hash("a", "pw") == root_password_hash("a", "pw")
    assert root_password_hash("a", "pw") != root_password_hash("b", "pw")
    assert root_password_hash("a", "pw").startswith(f"$6${salt_for('a')}$")


def test_base_image_names_come_from_the_url_not_positions():
    url = "https://cloud.centos.org/x/CentOS-7-x86_64-GenericCloud.qcow2"
    tag = hashlib.sha256(url.encode()).hexdigest()[:10]
    step, volume = base_image_names(url, ".qcow2")
    assert step == f"kvm-base-centos-7-x86-64-genericcloud-qcow2-{tag}"
    assert volume == f"virtfleet-base-centos-7-x86-64-genericcloud-qcow2-{tag}.qcow2"
    assert base_image_names(url + "?v2", ".qcow2")[0] != step
    kernel = "https://tree.example/images/pxeboot/vmlinuz"
    assert (
        base_image_names(kernel, "")[1] == f"virtfleet-base-vmlinuz-{hashlib.sha256(kernel.encode()).hexdigest()[:10]}"
    )


def test_user_data_for_a_non_root_admin_with_keys_packages_and_runcmd_passes_schema(tmp_path):
    from plan.run import load_stack

    cloud_init = require_tool("cloud-init")
    _config, fleet = load_stack("dev")
    fleet = fleet.model_copy(
        update={
            "ssh": fleet.ssh.model_copy(
                update={"user": "admin", "authorized_keys": ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE test@x",)}
            )
        }
    )
    guest = kvm("web1", packages=["httpd", "php"], runcmd=["systemctl enable --now httpd", "echo 'a: b' > /x"])
    text = render_user_data(guest, fleet)
    path = tmp_path / "user-data"
    path.write_text(text)
    proc = subprocess.run([cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import yaml

    data = yaml.safe_load(text)
    assert data["users"][1]["name"] == "admin" and data["disable_root"] is True
    assert data["runcmd"][1] == "echo 'a: b' > /x" and data["packages"] == ["httpd", "php"]

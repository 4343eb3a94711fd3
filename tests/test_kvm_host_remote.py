"""L4: what a KVM host's steps give its guests, run for real over SSH against the EL fakes: the
storage pool of the kvm role, the verified download of a base image into that pool, and the seed
ISO the host builds. (libvirt's own behaviour with them, a real libvirtd and QEMU, is the lab's:
tests/test_lab_dev.py.)

``virsh`` is the fake (tests/fakes/virsh.py: libvirt 9's pool commands, messages and exit codes,
taken from the real virsh); ``curl`` (from a loopback HTTP server), ``sha256sum`` and
``genisoimage`` are the real tools. Each step is the exact Command the program records for prod's
kvm1 with webserver1's image served from 127.0.0.1.
"""

from __future__ import annotations

import copy
import json

import pytest
from support.el_repos import role_repos_command
from support.images import image_server_fixture
from support.sshd import LoopbackSshd
from support.step_run import RecordedStep, create, ok, run
from support.tools import require_root, require_tool

from plan.run import StackConfig, load_stack, run_program

pytestmark = pytest.mark.real

HOST = "kvm1"
COMMAND = "command:remote:Command"
POOL_DIR = "/var/lib/libvirt/images"
FAULTS = "/var/lib/virtfleet-fakes/faults.json"
image_server = image_server_fixture("kvm-images")


def steps(image: dict) -> dict[str, RecordedStep]:
    """kvm1's kvm role step, the download of webserver1's image and webserver1's seed step."""
    config, _ = load_stack("prod")
    values = copy.deepcopy(config.values)
    next(g for g in values["guests"] if g["name"] == "webserver1")["image"] = image
    rec = run_program(StackConfig(config.name, values, set(config.secret_keys), list(config.placeholders)))
    [base] = [c for c in rec.of_type(COMMAND) if c.name.startswith(f"{HOST}-kvm-base-cloud-qcow2-")]
    return {
        "role": RecordedStep.of(rec.named(f"{HOST}-role-kvm", COMMAND), HOST),
        "base": RecordedStep.of(base, HOST),
        "seed": RecordedStep.of(rec.named(f"{HOST}-webserver1-seed", COMMAND), HOST),
    }


@pytest.fixture
def kvm_host():
    """A fresh EL9 view with the kvm role's repositories."""
    require_root()
    for tool in ("sshd", "genisoimage", "isoinfo", "curl"):
        require_tool(tool)
    with LoopbackSshd() as sshd:
        sshd.upload("CentOS Stream release 9\n", "/etc/redhat-release")
        ok(sshd, role_repos_command("kvm", "el9"))
        yield sshd


def pool(sshd: LoopbackSshd) -> dict:
    return json.loads(ok(sshd, "cat /var/lib/virtfleet-fakes/libvirt.json"))["pools"]["qemu:///system"]


def test_the_kvm_role_makes_the_default_pool_and_keeps_it_when_the_role_goes(kvm_host, image_server):
    role = steps(image_server)["role"]
    first = create(kvm_host, role)
    assert "changed: storage pool default defined (/var/lib/libvirt/images)" in first.out
    assert (
        "changed: storage pool default started" in first.out
        and "changed: storage pool default autostarted" in first.out
    )
    assert pool(kvm_host)["default"] | {"uuid": ""} == {
        "uuid": "", "state": "running", "autostart": True, "target": POOL_DIR
    }  # fmt: skip
    info = ok(kvm_host, "virsh pool-info default")
    assert "State:          running\n" in info and "Autostart:      yes\n" in info
    again = create(kvm_host, role, "unchanged")
    assert "unchanged: storage pool default running, autostarted" in again.out
    # A pool stopped by hand (or by a reboot without autostart) is started again; nothing else changes.
    ok(kvm_host, "virsh pool-destroy default")
    restarted = create(kvm_host, role)
    assert restarted.changes == ["changed: storage pool default started"], str(restarted)
    # The role's delete keeps the pool: host infrastructure (retained disks live there).
    assert run(kvm_host, role.delete).code == 0
    assert pool(kvm_host)["default"]["state"] == "running"


def test_a_base_image_is_verified_before_it_is_a_volume_of_the_pool(kvm_host, image_server):
    found = steps(image_server)
    create(kvm_host, found["role"])
    base = found["base"]
    path = next(line.split("=", 1)[1] for line in base.create.splitlines() if line.startswith("vf_path="))
    assert path.startswith(f"{POOL_DIR}/virtfleet-base-cloud-qcow2-")
    # The pool is busy twice (libvirt refuses a refresh while it makes another guest's disk): retried.
    kvm_host.upload(json.dumps({"pool_busy": 2}), FAULTS)
    done = create(kvm_host, base)
    assert f"changed: {path} downloaded from {image_server['url']}" in done.out
    assert pool(kvm_host)["default"]["busy_refused"] == 2
    assert ok(kvm_host, f"sha256sum {path}").split()[0] == image_server["sha256"]
    ok(kvm_host, f"rm {FAULTS}")
    create(kvm_host, base, "unchanged")
    # A file that does not match the stack's sha256 (a swapped image) is never put in place.
    ok(kvm_host, f"rm {path}")
    wrong = steps({**image_server, "sha256": "0" * 64})["base"]
    refused = run(kvm_host, wrong.create)
    assert refused.code == 1
    assert f"does not have the sha256 the stack gives ({'0' * 64}); not using it" in refused.err
    assert ok(kvm_host, f"ls -A {POOL_DIR}") == "", "neither the file nor its partial download stays"
    # A pool that stays busy stops the step with what to do.
    kvm_host.upload(json.dumps({"pool_busy": 100}), FAULTS)
    busy = run(kvm_host, base.create)
    assert (
        busy.code == 1 and "libvirt pool default stayed busy for 10 s" in busy.err and "run pulumi up again" in busy.err
    )
    ok(kvm_host, f"rm {FAULTS}")
    assert kvm_host.exists(path), "the verified download stays; the next up refreshes the pool"
    create(kvm_host, base, "unchanged")
    # Delete removes the download (Pulumi deletes it after the disks on it).
    assert run(kvm_host, base.delete).code == 0 and not kvm_host.exists(path)


def test_the_seed_iso_is_built_by_the_host_with_the_cidata_label(kvm_host, image_server):
    seed = steps(image_server)["seed"]
    assert seed.stdin is not None and "user-data" in seed.stdin, "a secret step: its files on stdin"
    create(kvm_host, seed)
    iso = f"{POOL_DIR}/webserver1-seed.iso"
    assert "Volume id: cidata" in ok(kvm_host, f"isoinfo -d -i {iso}")
    user_data = ok(kvm_host, f"isoinfo -R -i {iso} -x /user-data")
    assert user_data.startswith("#cloud-config\n") and "webserver1" in user_data
    assert "52:54:00:00:00:11" in ok(kvm_host, f"isoinfo -R -i {iso} -x /network-config")
    assert ok(kvm_host, f"stat -c %a {iso}").strip() == "600"
    create(kvm_host, seed, "unchanged")
    assert run(kvm_host, seed.delete, seed.stdin).code == 0 and not kvm_host.exists(iso)

"""L4: prod's Xen web server (webserver2 on xen1), its whole lifecycle run for real over SSH.

The exact ``create``/``delete`` strings (and the secret seed step's stdin) the program records for
the guest's three Commands (the host's shared image download, the seed ISO, the domain) run
through a real sshd (``LoopbackSshd``), as pulumi-command sends them. Xen needs its own
hypervisor, so ``xl`` is the stateful fake of ``tests/fakes/xl.py`` (xl(1)'s syntax, table and JSON
output, exit 1 on every failure, a strict xl.cfg(5) parser that refuses unknown keys and bad
values, the disks checked at create); ``curl`` (from a loopback HTTP server), ``qemu-img``,
``genisoimage``, ``python3`` and bash are the real ones. Variants of the stack (memory, type,
power state, autostart, retainDisk) are the same program run on an edited copy of Pulumi.prod.yaml,
with the image served from 127.0.0.1, so each step is what ``pulumi up`` would run after that edit.
"""

from __future__ import annotations

import copy
import functools
import json

import pytest
from support.drift_check import drift, drifted
from support.el_repos import role_repos_command
from support.images import image_server_fixture
from support.sshd import LoopbackSshd
from support.step_run import RecordedStep, Result, create, ok, run, second_run_changes_nothing
from support.tools import require_root, require_tool

from components.guests.remote_guest import readback
from plan.run import StackConfig, load_stack, run_program

pytestmark = pytest.mark.real
GUEST, HOST = "webserver2", "xen1"
CFG, AUTO = f"/etc/xen/{GUEST}.cfg", f"/etc/xen/auto/{GUEST}.cfg"
DISK, SEED = f"/var/lib/xen/images/{GUEST}.img", f"/var/lib/xen/images/{GUEST}-seed.iso"
STATE = "/var/lib/virtfleet-fakes/xl.json"
COMMAND = "command:remote:Command"


Step = RecordedStep


image_server = image_server_fixture("xen-images")


def program(image: dict, **changes) -> dict[str, Step]:
    """webserver2's steps (base, seed, domain) by short name, for prod with its config changed."""
    return _program(json.dumps({"image": image, **changes}, sort_keys=True))


def installer_steps(image: dict) -> dict[str, Step]:
    """webserver2 on the seed's path: mode pv, EL7, the install tree served next to the image."""
    tree = image["url"].rsplit("/", 1)[0] + "/el7/"
    changes = {"mode": "pv", "osFamily": "el7", "install": {"location": tree}, "image": None}
    return _program(json.dumps(changes, sort_keys=True))


@functools.cache
def _program(changes_json: str) -> dict[str, Step]:
    changes = json.loads(changes_json)
    config, _ = load_stack("prod")
    values = copy.deepcopy(config.values)
    (guest,) = [g for g in values["guests"] if g["name"] == GUEST]
    guest.update(changes)
    rec = run_program(StackConfig(config.name, values, set(config.secret_keys), list(config.placeholders)))
    steps = {}
    base = [c for c in rec.of_type(COMMAND) if c.name.startswith(f"{HOST}-xen-base-")]
    wanted = {
        "seed": rec.named(f"{HOST}-{GUEST}-seed", COMMAND),
        "domain": rec.named(f"{HOST}-{GUEST}-domain", COMMAND),
    }
    if "install" in changes:
        wanted["base"] = next(c for c in base if "vmlinuz" in c.name)
        wanted["initrd"] = next(c for c in base if "initrd" in c.name)
    else:
        assert len(base) == 2, [c.name for c in base]  # mailserver keeps the default image
        wanted["base"] = next(c for c in base if "cloud-qcow2" in c.name)
    for short, c in wanted.items():
        steps[short] = Step.of(c, HOST)
    return steps


def xen_host(sshd: LoopbackSshd) -> None:
    """A prepared xen1: EL7, xen-runtime installed and xencommons running (its role and boot steps)."""
    sshd.upload("CentOS Linux release 7.9.2009 (Core)\n", "/etc/redhat-release")
    ok(sshd, role_repos_command("xen", "el7"))
    ok(sshd, "yum -y install xen-runtime >/dev/null && systemctl enable --now xencommons >/dev/null 2>&1")


def up(sshd: LoopbackSshd, steps: dict[str, Step], word: str = "changed") -> Result:
    """What pulumi up runs on a fresh host: the download, the seed, then the domain."""
    for short in ("base", "initrd", "seed"):
        if short not in steps:
            continue
        run_result = run(sshd, steps[short].create, steps[short].stdin)
        assert run_result.code == 0, str(run_result)
    return create(sshd, steps["domain"], word)


def domains(sshd: LoopbackSshd) -> dict:
    return json.loads(ok(sshd, f"cat {STATE}"))["domains"]


def require_lab() -> None:
    require_root()
    require_tool("sshd")
    require_tool("qemu-img")
    require_tool("genisoimage")


def test_create_converges_and_reads_back_what_xl_reports(image_server):
    """Create: the image downloaded and verified, the seed ISO (label cidata, the KVM renderers'
    files), the raw disk grown to diskGiB, the xl.cfg, the running domain, the autostart link; the
    last line is the domain as xl list -l reports it. A second run changes nothing."""
    require_lab()
    steps = program(image_server)
    with LoopbackSshd() as sshd:
        xen_host(sshd)
        first = up(sshd, steps)
        assert f"changed: {GUEST} created" in first.out, str(first)
        dom = domains(sshd)[GUEST]
        assert not dom["paused"] and dom["config"]["c_info"] == {"type": "pvh", "name": GUEST}
        assert dom["config"]["b_info"]["target_memkb"] == 2048 * 1024
        assert ok(sshd, f"qemu-img info --output=json {DISK}").count('"virtual-size": 21474836480') == 1
        assert "Volume id: cidata" in ok(sshd, f"isoinfo -d -i {SEED}")
        user_data = ok(sshd, f"isoinfo -R -i {SEED} -x /user-data")
        assert user_data.startswith("#cloud-config") and f'hostname: "{GUEST}"' in user_data
        assert "00:16:3e:" in ok(sshd, f"isoinfo -R -i {SEED} -x /network-config")
        assert ok(sshd, f"readlink {AUTO}").strip() == CFG
        state = readback("\n".join(first.out))
        assert state == {
            "name": GUEST, "host": HOST, "status": "running", "domid": dom["domid"], "type": "pvh",
            "memoryMiB": 2048, "maxMemoryMiB": 4096, "vcpus": 2, "maxVcpus": 4, "mac": state["mac"],
            "bridge": "brid0", "disk": DISK, "onReboot": "restart", "onCrash": "restart", "autostart": True,
        }  # fmt: skip
        assert state["mac"].startswith("00:16:3e:")
        snapshot = f"sha256sum {STATE} {CFG} {SEED}; stat -c '%n %s %Y' {DISK}; ls -l /etc/xen/auto"

        def again():
            for short in ("base", "seed"):
                result = create(sshd, steps[short], "unchanged")
                assert not result.changes, str(result)
            return create(sshd, steps["domain"], "unchanged")

        second_run_changes_nothing(sshd, snapshot, again, state, "the domain, its files")


def test_memory_and_vcpus_change_live_only(image_server):
    """memoryMiB 2048 -> 3072 and vcpus 2 -> 3 (under prod's maxMemoryMiB/maxVcpus): the same triggers (no
    replace), an update that runs xl mem-set / vcpu-set on the running domain (same domid)."""
    require_lab()
    base = program(image_server)  # prod: maxMemoryMiB 4096, maxVcpus 4
    smaller = program(image_server, memoryMiB=3072, vcpus=3)
    assert smaller["domain"].triggers == base["domain"].triggers, "memory/vcpus must not force a replace"
    assert smaller["domain"].create != base["domain"].create
    with LoopbackSshd() as sshd:
        xen_host(sshd)
        up(sshd, base)
        domid = domains(sshd)[GUEST]["domid"]
        changed = create(sshd, smaller["domain"])
        assert changed.changes == [
            f"changed: {CFG}", f"changed: {GUEST}: xl mem-set 3072m", f"changed: {GUEST}: xl vcpu-set 3",
        ], str(changed)  # fmt: skip
        dom = domains(sshd)[GUEST]
        assert dom["domid"] == domid and dom["config"]["b_info"]["target_memkb"] == 3072 * 1024
        assert dom["config"]["b_info"]["avail_vcpus"] == [0, 1, 2]
        state = readback("\n".join(changed.out))
        assert (state["memoryMiB"], state["vcpus"], state["maxMemoryMiB"]) == (3072, 3, 4096)
        assert "memory = 3072" in ok(sshd, f"cat {CFG}")
        create(sshd, smaller["domain"], "unchanged")


def test_type_change_is_a_replace_and_the_old_domain_goes_first(image_server):
    """mode pvh -> hvm changes the domain Command's triggers (pulumi-command: replace, delete
    before create); the old delete then the new create leave one hvm domain with a VNC display on
    127.0.0.1 only."""
    require_lab()
    base, hvm = program(image_server), program(image_server, mode="hvm")
    assert hvm["domain"].triggers != base["domain"].triggers
    assert "triggers[*]" in hvm["domain"].replace_on_changes
    with LoopbackSshd() as sshd:
        xen_host(sshd)
        up(sshd, base)
        cfg = ok(sshd, f"cat {CFG}")
        refused = run(sshd, hvm["domain"].create)  # run by hand against the old domain: refused
        assert refused.code == 1 and f"domain {GUEST} runs as type pvh, not hvm" in refused.err, str(refused)
        assert ok(sshd, f"cat {CFG}") == cfg, "a refused create left the config alone"
        assert run(sshd, base["domain"].delete).code == 0
        create(sshd, hvm["domain"])
        dom = domains(sshd)[GUEST]
        assert dom["config"]["c_info"]["type"] == "hvm"
        assert dom["config"]["b_info"]["type.hvm"]["vnclisten"] == "127.0.0.1"


def test_power_states_are_reached_and_reported(image_server):
    """running -> paused -> stopped -> running -> stopped -> paused: each declared state is what xl
    list shows afterwards and what the read-back reports; each repeated run is unchanged."""
    require_lab()
    steps = {s: program(image_server, powerState=s) for s in ("paused", "stopped")}
    steps["running"] = program(image_server)
    flags = {"running": "-b----", "paused": "--p---"}
    with LoopbackSshd() as sshd:
        xen_host(sshd)
        up(sshd, steps["running"])
        for state in ("paused", "stopped", "running", "stopped", "paused"):
            result = create(sshd, steps[state]["domain"])
            back = readback("\n".join(result.out))
            assert back["status"] == state, str(result)
            listed = sshd.run(f"xl list {GUEST}", timeout=60)
            if state == "stopped":
                assert listed.returncode == 1 and "invalid domain identifier" in listed.stderr
                assert back["domid"] is None and back["memoryMiB"] == 2048  # from xl create -n of the config
            else:
                assert listed.stdout.splitlines()[1].split()[4] == flags[state]
            again = create(sshd, steps[state]["domain"], "unchanged")
            assert readback("\n".join(again.out))["status"] == state


def test_autostart_link_exactly_when_autostart(image_server):
    require_lab()
    on, off = program(image_server), program(image_server, autostart=False)
    assert on["domain"].triggers == off["domain"].triggers
    with LoopbackSshd() as sshd:
        xen_host(sshd)
        up(sshd, off)
        assert sshd.run(f"test -L {AUTO}").returncode == 1
        assert readback("\n".join(create(sshd, off["domain"], "unchanged").out))["autostart"] is False
        changed = create(sshd, on["domain"])
        assert changed.changes == [f"changed: {AUTO} -> {CFG}"], str(changed)  # autostart is no xl.cfg key
        assert ok(sshd, f"readlink {AUTO}").strip() == CFG
        assert readback("\n".join(changed.out))["autostart"] is True
        gone = create(sshd, off["domain"])
        assert f"changed: removed {AUTO}" in gone.changes
        assert sshd.run(f"test -e {AUTO} || test -L {AUTO}").returncode == 1


def test_delete_leaves_nothing_and_is_repeatable(image_server):
    """The domain's delete (a paused domain is unpaused, shut down), then the seed's, then the shared
    download's: no domain, no config, link, disk, ISO or image; a second delete says unchanged."""
    require_lab()
    steps = program(image_server, powerState="paused")
    with LoopbackSshd() as sshd:
        xen_host(sshd)
        up(sshd, steps)
        for short in ("domain", "seed", "base"):
            first = run(sshd, steps[short].delete, steps[short].stdin)
            assert first.code == 0 and first.last == steps[short].report("delete", "changed"), str(first)
        assert domains(sshd) == {}
        left = ok(sshd, "find /etc/xen /var/lib/xen/images /var/lib/virtfleet/xen -mindepth 1 2>/dev/null || true")
        assert left.split() == ["/etc/xen/auto"], left
        for short in ("domain", "seed", "base"):
            again = run(sshd, steps[short].delete, steps[short].stdin)
            assert again.code == 0 and again.last == steps[short].report("delete", "unchanged"), str(again)


def test_retain_disk_keeps_the_image_and_a_new_create_boots_it(image_server):
    require_lab()
    steps = program(image_server, retainDisk=True)
    with LoopbackSshd() as sshd:
        xen_host(sshd)
        up(sshd, steps)
        ok(sshd, f"printf witness | dd of={DISK} conv=notrunc status=none")
        assert run(sshd, steps["domain"].delete).code == 0
        assert domains(sshd) == {} and sshd.run(f"test -e {CFG}").returncode == 1
        again = create(sshd, steps["domain"])
        assert f"unchanged: disk {DISK}" in again.out, str(again)
        assert ok(sshd, f"head -c 7 {DISK}") == "witness"


def test_installer_path_installs_then_boots_from_disk(image_server):
    """The seed's path: the install tree's PV kernel and initrd downloaded, the kickstart (with root's
    hash, never in argv: the seed step runs from stdin) on the seed ISO, the domain created from
    the installer config, waited for until its kickstart powers it off (the fake's installer does
    so at once), then created from the disk config (pygrub); a second run installs nothing."""
    require_lab()
    steps = installer_steps(image_server)
    with LoopbackSshd() as sshd:
        xen_host(sshd)
        first = up(sshd, steps)
        assert any(c.startswith(f"changed: {GUEST} installing from /var/lib/xen/images/virtfleet-base-vmlinuz-")
                   for c in first.changes), str(first)  # fmt: skip
        assert f"changed: {GUEST} installed; it boots from its disk from now on" in first.changes
        assert f"changed: {GUEST} created" in first.changes
        dom = domains(sshd)[GUEST]
        assert dom["config"]["c_info"]["type"] == "pv"
        assert dom["config"]["b_info"]["type.pv"] == {"bootloader": "pygrub"}
        kickstart = ok(sshd, f"isoinfo -R -i {SEED} -x /user-data")
        assert kickstart.startswith("#") and "rootpw --iscrypted" in kickstart and "poweroff" in kickstart
        second = create(sshd, steps["domain"], "unchanged")
        assert not second.changes, str(second)
        delete = run(sshd, steps["domain"].delete)
        assert delete.code == 0 and sshd.run(f"test -e /var/lib/virtfleet/xen/{GUEST}/installed").returncode == 1


def test_drift_names_a_domain_destroyed_by_hand(image_server):
    """`make drift`'s check of the domain step after `xl destroy`: exactly that difference, nothing
    changed by the check (the domain is still gone); the step's create brings it back and the check
    is in sync again."""
    require_lab()
    steps = program(image_server)
    checks = {"domain": steps["domain"]}
    with LoopbackSshd() as sshd:
        xen_host(sshd)
        up(sshd, steps)
        assert drifted(drift(sshd, checks, HOST)) == {}
        ok(sshd, f"xl destroy {GUEST}")
        found = drifted(drift(sshd, checks, HOST))
        assert found == {"domain": [f"start Xen domain {GUEST} (it is stopped)"]}, found
        assert GUEST not in domains(sshd)
        create(sshd, steps["domain"])
        assert drifted(drift(sshd, checks, HOST)) == {}

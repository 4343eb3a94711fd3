"""XenGuest under the Pulumi mocks (L2).

prod's Xen guests (webserver2, a web server of the HAProxy tier, mailserver and haproxy2, the balancer
pair's second node, all on xen1) get
their component and steps: one shared image download on the host, a seed step and a domain step
per guest. The domain waits for its host's steps, its seed and the download; the tier's web server
step on webserver2 waits for the domain. What xl cannot change on a live domain is the only thing
in the domain Command's triggers (replace, deleted before it is created again); memory and vCPUs
and the power state are updates.
"""

from __future__ import annotations

import copy

import pytest
from conftest import recording

from components.guests.remote_guest import replace_key
from components.guests.xen_config import domain_replace_fields
from components.remote.scripts import STDIN_RUNNER
from plan.run import StackConfig, load_stack, run_program

COMMAND = "command:remote:Command"
GUEST, HOST = "webserver2", "xen1"


def program(**changes):
    config, _ = load_stack("prod")
    values = copy.deepcopy(config.values)
    next(g for g in values["guests"] if g["name"] == GUEST).update(changes)
    return run_program(StackConfig("prod", values, set(config.secret_keys), list(config.placeholders)))


def domain_command(rec, guest=GUEST):
    return rec.named(f"{HOST}-{guest}-domain", COMMAND)


def test_prod_xen_guests_get_their_components_and_steps():
    fleet, rec = recording("prod")
    xen = [g for g in fleet.guests if g.type == "xen"]
    assert {g.name for g in xen} == {"webserver2", "mailserver", "haproxy2"}
    for guest in xen:
        component = rec.named(guest.name, "virtfleet:guest:XenGuest")
        steps = {r.name for r in rec.children(component.urn)}
        assert steps == {f"{HOST}-{guest.name}-seed", f"{HOST}-{guest.name}-domain"}
        assert guest.name not in rec.outputs["pendingGuests"]
        domain = domain_command(rec, guest.name)
        assert domain.inputs["triggers"] == [replace_key(domain_replace_fields(guest))]
        assert "triggers[*]" in domain.replace_on_changes and domain.delete_before_replace
        assert domain.protect is guest.protect and domain.inputs["logging"] == "stdoutAndStderr"
        assert domain.inputs["update"] == domain.inputs["create"]
    # One download for the three guests (same host, same image), parented to the host.
    downloads = [c for c in rec.of_type(COMMAND) if c.name.startswith(f"{HOST}-xen-base-")]
    assert len(downloads) == 1
    # Every step that prepares the host; its console (Cockpit) is none of the guests' business.
    host_steps = {r.urn for r in rec.of_type(COMMAND) if r.name.startswith(f"{HOST}-") and "xen-base" not in r.name
                  and not any(g.name in r.name for g in xen) and r.name != f"{HOST}-console"}  # fmt: skip
    domain = domain_command(rec)
    seed = rec.named(f"{HOST}-{GUEST}-seed", COMMAND)
    assert host_steps and host_steps <= set(domain.dependencies)
    assert seed.urn in domain.dependencies and downloads[0].urn in domain.dependencies
    # Until a run reports it, the outputs carry the declared identity and nothing invented.
    status = rec.outputs["guestStatus"][GUEST]
    assert status["name"] == GUEST and status["host"] == HOST and status["ip"] == "10.0.0.12"
    assert status["mac"].startswith("00:16:3e:") and status["domid"] is None and status["status"] is None


def test_seed_step_is_secret_and_on_stdin():
    """The seed's text depends on the stack's login key (an Output): built as a secret step, its
    script on stdin and not logged; it carries the KVM renderers' cloud-init files."""
    _, rec = recording("prod")
    seed = rec.named(f"{HOST}-{GUEST}-seed", COMMAND)
    assert seed.inputs["create"] == STDIN_RUNNER and seed.inputs["logging"] == "none"
    assert {"stdin", "delete"} <= seed.secret_paths
    assert "#cloud-config" in seed.inputs["stdin"] and "genisoimage" in seed.inputs["stdin"]
    assert seed.inputs["triggers"] == [f"{HOST}/{GUEST}-seed"] and not seed.delete_before_replace


def test_web_server_step_runs_after_the_domain():
    """The HAProxy tier's web server step on webserver2 (over SSH to the guest) waits for the domain."""
    _, rec = recording("prod")
    web = rec.named(f"{GUEST}-webserver-httpd", COMMAND)
    assert domain_command(rec).urn in web.dependencies
    assert rec.named(f"{HOST}-{GUEST}-seed", COMMAND).urn in web.dependencies


@pytest.mark.parametrize(
    ("change", "replaced"),
    [
        ({"mode": "hvm"}, True),
        ({"diskGiB": 30}, True),
        ({"maxMemoryMiB": 8192}, True),
        ({"network": {"bridge": "brid0", "ip": "10.0.0.12", "mac": "00:16:3e:00:00:12"}}, True),
        ({"memoryMiB": 3072}, False),
        ({"vcpus": 4}, False),
        ({"powerState": "paused"}, False),
    ],
)
def test_only_what_xl_cannot_change_live_forces_a_replace(change, replaced):
    base, changed = domain_command(recording("prod")[1]), domain_command(program(**change))
    assert (changed.inputs["triggers"] != base.inputs["triggers"]) is replaced, change
    assert changed.inputs["create"] != base.inputs["create"], "every change reaches the host as an update"


def test_memory_beyond_the_ceiling_is_a_replace():
    """Without maxMemoryMiB the ceiling is memoryMiB itself: raising memory then needs a new domain."""
    config, _ = load_stack("prod")
    values = copy.deepcopy(config.values)
    guest = next(g for g in values["guests"] if g["name"] == GUEST)
    del guest["maxMemoryMiB"]
    base = run_program(StackConfig("prod", values, set(config.secret_keys), list(config.placeholders)))
    guest["memoryMiB"] = 3072
    more = run_program(StackConfig("prod", values, set(config.secret_keys), list(config.placeholders)))
    assert domain_command(more).inputs["triggers"] != domain_command(base).inputs["triggers"]

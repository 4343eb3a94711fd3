"""The ``kvm-power`` step, every target from every state, run for real over ssh (L4).

A real sshd on 127.0.0.1 (``LoopbackSshd``) runs the exact command text pulumi-command would send.
libvirt/QEMU guests cannot be started in this test's throwaway view, so ``virsh`` there is the
stateful fake in ``tests/fakes/bin`` (QEMU driver rules: suspending a paused guest is a silent
success, resuming a running one fails). The step comes from the program itself: a TEST copy of
the dev stack with web2 set to ``powerState: paused`` (and, for the other targets, an installer
guest: only then does the step own the power state). The fake can be told a guest ignores ACPI
(``faults.json``), so the shutdown timeout path runs.
"""

from __future__ import annotations

import copy
import json
import shlex

import pytest
from support.sshd import loopback_sshd_fixture

from components.guests import kvm
from components.remote.scripts import as_command
from plan.run import StackConfig, load_stack, run_program

pytestmark = pytest.mark.real

sshd = loopback_sshd_fixture()

DOMAIN_XML = """<domain type='kvm'>
  <name>web2</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>1</vcpu>
</domain>
"""


@pytest.fixture(scope="module")
def power_step():
    config, _ = load_stack("dev")
    values = copy.deepcopy(config.values)
    next(g for g in values["guests"] if g["name"] == "web2")["powerState"] = "paused"
    rec = run_program(StackConfig("dev-paused", values, set(config.secret_keys), list(config.placeholders)))
    step = rec.named("devbox-web2-power", "virtfleet:remote:RemoteStep")
    return step.inputs["createScript"], step.inputs["deleteScript"]


def domstate(sshd) -> str:
    return sshd.run("virsh domstate web2", check=True).stdout.strip()


def test_undefined_domain_fails_with_a_hint(sshd, power_step):
    create, _ = power_step
    sshd.run("yum -y -q install libvirt && systemctl start libvirtd", check=True)
    proc = sshd.run(as_command(create))
    assert proc.returncode != 0
    assert "web2 is not defined on this host" in proc.stderr


def test_paused_step_suspends_once_and_delete_resumes(sshd, power_step):
    create, delete = power_step
    sshd.run("yum -y -q install libvirt && systemctl start libvirtd", check=True)
    sshd.upload(DOMAIN_XML, "/tmp/web2.xml")
    sshd.run("virsh define /tmp/web2.xml && virsh start web2", check=True)
    assert domstate(sshd) == "running"

    first = sshd.run(as_command(create), check=True)
    assert first.stdout.rstrip().endswith("changed") and "suspended" in first.stdout, first.stdout
    assert domstate(sshd) == "paused"

    second = sshd.run(as_command(create), check=True)
    assert second.stdout.rstrip().endswith(": unchanged"), second.stdout
    assert domstate(sshd) == "paused"

    undo = sshd.run(as_command(delete), check=True)
    assert "resumed" in undo.stdout and domstate(sshd) == "running"
    again = sshd.run(as_command(delete), check=True)
    assert again.stdout.rstrip().endswith(": unchanged")

    # From shut off, the step starts the guest and then suspends it.
    sshd.run("virsh destroy web2", check=True)
    sshd.run(as_command(create), check=True)
    assert domstate(sshd) == "paused"


# -- every power target from every state (the step as the program renders it) ------------------

TARGET_STATE = {"running": "running", "paused": "paused", "stopped": "shut off"}
INSTALLED_XML = DOMAIN_XML
INSTALLER_XML = DOMAIN_XML.replace(
    "</domain>", "  <os>\n    <kernel>/var/lib/libvirt/boot/web2-vmlinuz</kernel>\n  </os>\n</domain>"
)


@pytest.fixture(scope="module")
def power_steps():
    """target -> (create, delete) of web2's power step. ``running``/``stopped`` need an installer
    guest (otherwise the libvirt provider owns the power state and there is no step); the ACPI
    and install waits are cut to a few seconds so the timeout paths run in a test."""
    config, _ = load_stack("dev")
    out = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kvm, "SHUTDOWN_TIMEOUT_S", 3)
        patch.setattr(kvm, "INSTALL_TIMEOUT_S", 0)
        for target in TARGET_STATE:
            values = copy.deepcopy(config.values)
            web2 = next(g for g in values["guests"] if g["name"] == "web2")
            web2["powerState"] = target
            if target != "paused":
                web2["install"] = {"location": "https://vault.centos.org/7.9.2009/os/x86_64/", "packages": ["httpd"]}
                web2["osFamily"] = "el7"
            rec = run_program(StackConfig(f"dev-{target}", values, set(config.secret_keys), list(config.placeholders)))
            step = rec.named("devbox-web2-power", "virtfleet:remote:RemoteStep")
            out[target] = (step.inputs["createScript"], step.inputs["deleteScript"])
    return out


def put_domain(sshd, state: str, xml: str = INSTALLED_XML, faults: dict | None = None) -> None:
    """web2 defined afresh and brought to ``state`` with virsh itself (one SSH session);
    ``faults`` for the fakes."""
    then = {"running": "virsh start web2", "paused": "virsh start web2 && virsh suspend web2", "shut off": "true"}
    script = f"""set -e
printf %s {shlex.quote(json.dumps(faults or {}))} > /var/lib/virtfleet-fakes/faults.json
printf %s {shlex.quote(xml)} > /tmp/web2.xml
rpm -q --quiet libvirt || yum -y -q install libvirt
systemctl start libvirtd
virsh destroy web2 >/dev/null 2>&1 || true
virsh undefine web2 >/dev/null 2>&1 || true
virsh define /tmp/web2.xml >/dev/null
{{ {then[state]}; }} >/dev/null
virsh domstate web2
"""
    assert sshd.run(script, check=True).stdout.strip() == state


@pytest.mark.parametrize("start", ["running", "paused", "shut off"])
@pytest.mark.parametrize("target", list(TARGET_STATE))
def test_each_power_target_from_each_state(sshd, power_steps, target, start):
    """The step reaches its target from each state, says ``changed`` only when it acted, and a
    second run changes nothing."""
    create, _ = power_steps[target]
    put_domain(sshd, start)
    first = sshd.run(as_command(create), check=True)
    assert domstate(sshd) == TARGET_STATE[target], first.stdout
    acted = start != TARGET_STATE[target]
    assert first.stdout.rstrip().endswith(": changed" if acted else ": unchanged"), first.stdout
    second = sshd.run(as_command(create), check=True)
    assert second.stdout.rstrip().endswith(": unchanged") and domstate(sshd) == TARGET_STATE[target]


def test_a_guest_that_ignores_acpi_is_powered_off_after_the_timeout(sshd, power_steps):
    create, _ = power_steps["stopped"]
    put_domain(sshd, "running", faults={"ignore_acpi": ["web2"]})
    proc = sshd.run(as_command(create), check=True)
    assert domstate(sshd) == "shut off" and "web2 shut down" in proc.stdout
    assert sshd.run("virsh domstate --reason web2", check=True).stdout.strip() == "shut off (destroyed)"


def test_a_guest_that_obeys_acpi_is_not_destroyed(sshd, power_steps):
    create, _ = power_steps["stopped"]
    put_domain(sshd, "running")
    sshd.run(as_command(create), check=True)
    assert sshd.run("virsh domstate --reason web2", check=True).stdout.strip() == "shut off (shutdown)"


def test_installer_guest_boots_its_disk_once_installed(sshd, power_steps):
    """Shut off after the kickstart's poweroff: the installer kernel leaves the definition and the
    guest starts from its disk; still installing past the timeout: the step fails and says so."""
    create, _ = power_steps["running"]
    put_domain(sshd, "shut off", xml=INSTALLER_XML)
    done = sshd.run(as_command(create), check=True)
    assert "installed; now boots from its disk" in done.stdout and domstate(sshd) == "running"
    assert "<kernel>" not in sshd.run("virsh dumpxml --inactive web2", check=True).stdout

    put_domain(sshd, "running", xml=INSTALLER_XML)
    stuck = sshd.run(as_command(create))
    assert stuck.returncode == 1 and "web2 still installing after 0 s" in stuck.stderr, stuck.stderr
    assert "<kernel>" in sshd.run("virsh dumpxml --inactive web2", check=True).stdout

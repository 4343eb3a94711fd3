"""The ``kvm-power`` step for a paused guest, run for real over ssh (L4).

A real sshd on 127.0.0.1 (``LoopbackSshd``) runs the exact command text pulumi-command would send.
libvirt/QEMU guests cannot be started in this test's throwaway view, so ``virsh`` there is the
stateful fake in ``tests/fakes/bin`` (QEMU driver rules: suspending a paused guest is a silent
success, resuming a running one fails). The step comes from the program itself: a TEST copy of
the dev stack with web2 set to ``powerState: paused``.
"""

from __future__ import annotations

import copy

import pytest
from support.sshd import loopback_sshd_fixture

from components.steps import as_command
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

"""A variant of the lab's dev stack that violates every policy of the pack, for comparing the real
engine's verdicts (``pulumi preview --policy-pack``) with ``make plan``'s, one by one.

Most policies can be violated by the stack's own keys (``violating``); the ones the model never lets
a stack break (loopback consoles, safe containers, host capacity, unverified libvirt downloads) are
violated by resources registered beside the program (``register_outside``), as an operator's other
code in the same project would: ``make plan`` runs it as ``extra``, the real engine as part of the
project's ``__main__.py`` (``OUTSIDE_MAIN``). Every input is known before anything is created, so
each verdict is reached at preview.
"""

from __future__ import annotations

import copy
from typing import Any

OUTSIDE_MAIN = """\
\"\"\"virtfleet's program, then resources an operator's own code adds beside it (a policy test).\"\"\"
import sys

sys.path.insert(0, {tests!r})
from components.program import main  # noqa: E402
from support.policy_variant import register_outside  # noqa: E402

main()
register_outside()
"""


def violating(values: dict[str, Any]) -> dict[str, Any]:
    """The lab's dev values with the stack's own keys breaking what they can: SELinux disabled, no
    backup server, the stats page on every address over plain HTTP, a console open to every address."""
    values = copy.deepcopy(values)
    values["hosts"][0]["selinux"] = "disabled"
    values["hosts"][0]["roles"] = [*values["hosts"][0]["roles"], "console"]
    values["hosts"][0]["console"] = {"allowFrom": ["0.0.0.0/0"]}
    lb = values["loadBalancer"]
    lb["backups"] = []
    lb["stats"] = {"bind": {"address": "0.0.0.0", "port": 8404}}
    return values


def register_outside() -> None:
    """Resources on devbox (10.10.0.2) beside the program, each breaking one policy the model guards."""
    import pulumi
    import pulumi_docker as docker
    import pulumi_libvirt as libvirt

    trust = f"${{HOME}}/.virtfleet/{pulumi.get_stack()}/devbox"
    kvm = libvirt.Provider(
        "outside-devbox-libvirt",
        uri=f"qemu+ssh://root@10.10.0.2/system?sshauth=privkey&keyfile={trust}/id&knownhosts={trust}/known_hosts",
    )
    ssh = trust.replace("${HOME}", "~")
    dock = docker.Provider(
        "outside-devbox-docker",
        host="ssh://root@10.10.0.2:22",
        ssh_opts=["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                  "-o", f"UserKnownHostsFile={ssh}/known_hosts", "-o", "IdentitiesOnly=yes", "-i", f"{ssh}/id"],
    )  # fmt: skip
    on_kvm = pulumi.ResourceOptions(provider=kvm)
    on_docker = pulumi.ResourceOptions(provider=dock)
    graphics = libvirt.DomainGraphicsArgs(type="vnc", listen_type="address", listen_address="0.0.0.0")
    # devbox offers 8192 MiB (overcommit 1.0); the stack's guests take 2560 of it.
    libvirt.Domain("outside-vm", memory=6000, vcpu=1, graphics=graphics, opts=on_kvm)
    libvirt.Volume("outside-image", source="http://mirror.example/base.qcow2", pool="default", opts=on_kvm)
    docker.Container("outside-privileged", image="httpd:2.4", privileged=True, opts=on_docker)
    docker.Container("outside-hostnet", image="httpd:2.4", network_mode="host", pid_mode="host", opts=on_docker)
    docker.Container(
        "outside-admin",
        image="httpd:2.4",
        ports=[docker.ContainerPortArgs(internal=22, external=2222)],
        opts=on_docker,
    )

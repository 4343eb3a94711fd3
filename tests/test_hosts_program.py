"""L2: HypervisorHost under the recording mocks, for every stack (one program run per stack)."""

from __future__ import annotations

import copy
import json
from itertools import pairwise
from urllib.parse import parse_qs, urlsplit

from components.hosts.host_steps import host_steps
from components.hosts.roles import host_sysctls, role_setup
from components.model import Role
from plan.run import load_stack, run_program

HOST = "virtfleet:host:HypervisorHost"
STEP = "virtfleet:remote:RemoteStep"
# a real key (the model parses it)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"


def _host_steps(rec, host: str) -> dict[str, object]:
    """RemoteSteps under the host component (directly or inside its BridgeNetworks), without the
    downloads its Xen and KVM guests share (``xen-base-…``, ``kvm-base-…``: parented to the host,
    made by the guests)."""
    host_urn = rec.named(host, HOST).urn
    inside = {host_urn} | {r.urn for r in rec.children(host_urn) if r.type == "virtfleet:host:BridgeNetwork"}
    return {
        r.inputs["step"]: r
        for r in rec.of_type(STEP)
        if r.parent in inside and not r.inputs["step"].startswith(("xen-base-", "kvm-base-"))
    }


def expected_steps(host, fleet) -> set[str]:
    steps = {"preflight", "selinux", "hostname", "hosts-file"}
    steps |= {"sysctl"} if host_sysctls(host.roles, host.os_family) else set()
    steps |= {"firewall"} if host.firewall else set()
    steps |= {f"bridge-{b.name}" for b in host.bridges} | {f"role-{r}" for r in host.roles}
    steps |= {f"boot-{r}" for r in host.roles if role_setup(r, host.os_family).kernel}
    # the virtualbox role's autostart part, where a VM of the host starts with it
    if any(g.type == "virtualbox" and g.autostart for g in fleet.guests_on(host.name)):
        steps.add("virtualbox-autostart")
    # the console role's own step (Cockpit's settings, certificate and firewall), after the others
    if host.console is not None:
        steps.add("console")
    return steps


def test_each_host_has_exactly_the_steps_its_roles_need(recorded):
    fleet, rec = recorded
    assert sorted(r.name for r in rec.of_type(HOST)) == sorted(h.name for h in fleet.hosts)
    for host in fleet.hosts:
        assert set(_host_steps(rec, host.name)) == expected_steps(host, fleet), host.name


def test_role_steps_follow_the_table():
    """xen/openvz boot steps exist only for kernel roles; kvm/virtualbox check CPU flags."""
    _, fleet = load_stack("prod")
    by_name = {h.name: h for h in fleet.hosts}
    names = {h: [s.name for s in host_steps(by_name[h], fleet)] for h in by_name}
    assert names["xen1"][-1] == "boot-xen" and names["ovz1"][-1] == "boot-openvz"
    assert not any(n.startswith("boot-") for n in names["kvm1"] + names["docker1"] + names["vbox1"])
    preflight = {h: next(s for s in host_steps(by_name[h], fleet) if s.name == "preflight") for h in by_name}
    assert "vmx|svm" in preflight["kvm1"].create and "vmx|svm" in preflight["vbox1"].create
    assert "vmx|svm" not in preflight["docker1"].create


def test_providers_are_wired_to_their_host(recorded):
    fleet, rec = recorded
    for host in fleet.hosts:
        providers = {r.type: r for r in rec.resources if r.type.startswith("pulumi:providers:")
                     and r.name.startswith(f"{host.name}-")}  # fmt: skip
        assert ("pulumi:providers:libvirt" in providers) == host.has_role(Role.KVM)
        assert ("pulumi:providers:docker" in providers) == host.has_role(Role.DOCKER)
        for provider in providers.values():
            trust = rec.named(f"{host.name}-ssh-trust", "command:local:Command")
            assert trust.urn in provider.dependencies
        for net in rec.of_type("libvirt:index/network:Network"):
            if net.name.startswith(f"{host.name}-"):
                assert net.provider.startswith(providers["pulumi:providers:libvirt"].urn)
                assert net.inputs["mode"] == "bridge"


def test_secrets_stay_secret(recorded):
    fleet, rec = recorded
    for record in rec.resources:
        if record.type == "command:remote:Command" and not fleet.ssh.use_agent:
            assert record.secret_paths & {"connection", "connection.privateKey"}, record.name
        if record.type == "command:local:Command" and not fleet.ssh.use_agent:
            assert "stdin" in record.secret_paths
            assert "PLAN-PLACEHOLDER" not in record.inputs["create"]


def test_no_host_step_depends_on_another_host(recorded):
    fleet, rec = recorded
    owner = {}
    for host in fleet.hosts:
        root = rec.named(host.name, HOST).urn
        for record in rec.resources:
            urn, parents = record.urn, rec.by_urn()
            while urn in parents and urn != root:
                urn = parents[urn].parent
            if urn == root:
                owner[record.urn] = host.name
    for urn, host in owner.items():
        for dep in rec.by_urn()[urn].dependencies:
            assert owner.get(dep, host) == host, f"{urn} depends on {dep}"


def test_steps_chain_in_order_on_the_component(recorded):
    """Each step component waits for the previous step's Command (the SDK expands a component
    dependency into its children)."""
    fleet, rec = recorded
    commands = {r.name: r.urn for r in rec.of_type("command:remote:Command")}
    for host in fleet.hosts:
        order = [s.name for s in host_steps(host, fleet)]
        steps = _host_steps(rec, host.name)
        for before, after in pairwise(order):
            assert commands[f"{host.name}-{before}"] in steps[after].dependencies, (host.name, before, after)


def test_step_commands_run_in_order():
    """The engine orders Commands, not components: each step's Command must wait for the earlier ones."""
    config, _ = load_stack("staging")
    rec = run_program(config)
    cmd = {r.name: r for r in rec.of_type("command:remote:Command")}
    assert cmd["stg-kvm1-preflight"].urn in _transitive(rec, cmd["stg-kvm1-role-kvm"].urn)


def _transitive(rec, urn: str) -> set[str]:
    seen, todo, by = set(), [urn], rec.by_urn()
    while todo:
        for dep in by[todo.pop()].dependencies:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_pinned_host_keys_reach_libvirt_and_docker():
    """With hostKey pinned, qemu+ssh names a known_hosts file and Docker's ssh is strict."""
    config, _ = load_stack("dev")
    config = copy.deepcopy(config)
    config.values["hosts"][0]["hostKey"] = KEY
    rec = run_program(config)
    libvirt = rec.named("devbox-libvirt", "pulumi:providers:libvirt")
    query = parse_qs(urlsplit(libvirt.inputs["uri"]).query)
    assert query["knownhosts"] == ["${HOME}/.virtfleet/dev/devbox/known_hosts"]
    assert query["sshauth"] == ["privkey"] and query["keyfile"] == ["${HOME}/.virtfleet/dev/devbox/id"]
    assert "no_verify" not in query and "known_hosts_verify" not in query
    # No port in the URI: pulumi-libvirt 0.5.4 would read "10.10.0.2:22" as the host's name.
    assert libvirt.inputs["uri"].startswith("qemu+ssh://root@10.10.0.2/system?")
    opts = json.loads(rec.named("devbox-docker", "pulumi:providers:docker").inputs["sshOpts"])
    assert "StrictHostKeyChecking=yes" in opts
    assert f"10.10.0.2 {KEY}" in rec.named("devbox-ssh-trust", "command:local:Command").inputs["create"]
    assert not any("no hostKey pinned" in w for w in rec.warnings)

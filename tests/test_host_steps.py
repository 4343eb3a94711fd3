"""L1: what host_steps and the role table render for a host, with independent expectations.

Fast (no program run, no SSH): the tests that ``make mutate`` runs for every mutant of
``components/hosts/host_steps.py`` and ``components/hosts/roles.py``. The L4 tests
(test_hosts_remote.py) run the same steps for real.
"""

from __future__ import annotations

import copy

import pytest

from components.hosts.host_steps import firewall_ports, host_steps, hosts_entries
from components.hosts.roles import host_sysctls, role_setup
from components.model import Role, load_fleet
from plan.run import load_stack


def dev_variant(**lb) -> object:
    config, _ = load_stack("dev")
    values = copy.deepcopy(config.values)
    values["loadBalancer"].update(lb)
    backup = next(g for g in values["guests"] if g["name"] == "backup")
    backup["ports"] = [
        {"hostPort": 8080, "containerPort": 80},  # loopback by default: not opened
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIp": "10.10.0.2"},
    ]
    return load_fleet(values, set(config.secret_keys))


def steps_of(fleet, host: str) -> dict:
    return {s.name: s for s in host_steps(fleet.host(host), fleet)}


def test_firewall_opens_the_tiers_ports_and_published_ones_only():
    fleet = dev_variant(
        frontend={"address": "10.10.0.2", "port": 8081},
        https={"enabled": True, "port": 8443},
        stats={"bind": {"address": "10.10.0.2", "port": 9001}},
    )
    assert firewall_ports(fleet.host("devbox"), fleet) == ["5353/udp", "8081/tcp", "8443/tcp", "9001/tcp"]
    plain = dev_variant()  # stats on loopback, no HTTPS
    assert firewall_ports(plain.host("devbox"), plain) == ["80/tcp", "5353/udp"]
    firewall = steps_of(plain, "devbox")["firewall"]
    assert "--add-port=80/tcp" in firewall.create and "--add-port=5353/udp" in firewall.create
    assert "--add-service=ssh" in firewall.create and "--remove-port=5353/udp" in firewall.delete
    _, prod = load_stack("prod")
    assert firewall_ports(prod.host("kvm1"), prod) == []  # the balancer is a guest there


def test_hosts_file_lists_every_machine_with_its_fqdn():
    _, fleet = load_stack("prod")
    entries = hosts_entries(fleet)
    assert ("10.0.0.3", "xen1", "xen1.packt.co.uk") in entries
    assert ("10.0.0.20", "backupwebserver", "backupwebserver.packt.co.uk") in entries
    assert len(entries) == len(fleet.hosts) + len(fleet.guests)
    block = steps_of(fleet, "kvm1")["hosts-file"].create
    assert "10.0.0.13  webserver3.packt.co.uk  webserver3\n" in block


def test_steps_in_order_with_the_host_lock_where_the_host_is_shared():
    _, fleet = load_stack("prod")
    steps = host_steps(fleet.host("xen1"), fleet)
    assert [s.name for s in steps] == [
        "preflight", "selinux", "sysctl", "hostname", "hosts-file", "firewall", "bridge-brid0", "role-xen", "boot-xen",
    ]  # fmt: skip
    assert {s.name for s in steps if s.lock} == {"sysctl", "bridge-brid0", "role-xen", "boot-xen"}
    by_name = {s.name: s for s in steps}
    assert "vf_want=xen1.packt.co.uk\n" in by_name["hostname"].create
    assert "vf_want=permissive" in by_name["selinux"].create
    assert "dom0_mem=2048M,max:2048M dom0_max_vcpus=2" in by_name["boot-xen"].create
    assert "allowReboot: true for xen1" in by_name["boot-xen"].create  # allowReboot is false on xen1


def test_preflight_checks_the_family_cpu_flags_and_disk_each_host_needs():
    _, fleet = load_stack("prod")
    xen = steps_of(fleet, "xen1")["preflight"].create
    kvm = steps_of(fleet, "kvm1")["preflight"].create
    assert "'release 7([. ]|$)'" in xen and "'release 9([. ]|$)'" in kvm
    assert "df -Pk /boot" in xen and "df -Pk /boot" not in kvm and "df -Pk /var" in kvm
    assert "-lt 2097152" in kvm and "-lt 1048576" in xen
    assert "role(s) kvm need hardware virtualization" in kvm and "vmx|svm" not in xen


def test_sysctl_file_holds_what_the_roles_need():
    _, fleet = load_stack("prod")
    sysctl = steps_of(fleet, "ovz1")["sysctl"]
    (conf,) = sysctl.files
    assert conf.path == "/etc/sysctl.d/90-virtfleet.conf"
    assert conf.content.splitlines()[0] == "# virtfleet: what roles openvz need"
    assert "net.ipv4.conf.all.send_redirects = 0\n" in conf.content
    assert "net.ipv4.ip_forward = 1\n" in conf.content and len(conf.content.splitlines()) == 8
    _, dev = load_stack("dev")
    assert steps_of(dev, "devbox")["sysctl"].files[0].content.splitlines()[1:] == ["net.ipv4.ip_forward = 1"]


def test_host_sysctls_merge_first_value_wins_and_sorted():
    merged = host_sysctls([Role.OPENVZ, Role.KVM], "el7")
    assert merged == sorted(merged) and len(merged) == 7
    assert ("net.ipv4.ip_forward", "1") in merged
    assert host_sysctls([Role.VIRTUALBOX], "el9") == []


def test_role_step_installs_from_the_table():
    _, fleet = load_stack("prod")
    ovz = steps_of(fleet, "ovz1")["role-openvz"]
    assert "yum -y -q install" in ovz.create and "/var/lib/virtfleet/installed/role-openvz" in ovz.create
    assert "virtuozzo-release=https://download.openvz.org/" in ovz.create  # NAME=URL kept
    assert "vzkernel=vzkernel" in ovz.create and "NEIGHBOUR_DEVS=all" in ovz.create
    vbox = steps_of(fleet, "vbox1")["role-virtualbox"]
    assert "dnf -y -q install" in vbox.create and "epel-release=epel-release" in vbox.create
    assert [f.path for f in vbox.files] == ["/etc/yum.repos.d/virtualbox.repo"]
    assert "systemctl is-active --quiet vboxdrv" in vbox.create
    assert "vf_remove_file /etc/yum.repos.d/virtualbox.repo" in vbox.delete


def test_role_setup_refuses_el7_only_roles_on_el9_and_forces_cpu_checks():
    with pytest.raises(ValueError, match=r"role xen has no packages for el9: .* set osFamily: el7"):
        role_setup(Role.XEN, "el9")
    assert role_setup(Role.KVM, "el9").needs_cpu_virt and role_setup(Role.VIRTUALBOX, "el7").needs_cpu_virt
    assert not role_setup(Role.DOCKER, "el9").needs_cpu_virt


def test_bridge_step_renders_the_family_backend():
    _, fleet = load_stack("prod")
    el7 = steps_of(fleet, "xen1")["bridge-brid0"]
    el9 = steps_of(fleet, "kvm1")["bridge-brid0"]
    assert {f.path for f in el7.files} == {
        "/etc/sysconfig/network-scripts/ifcfg-brid0", "/etc/sysconfig/network-scripts/ifcfg-eth0"}  # fmt: skip
    assert all(f.path.startswith("/etc/NetworkManager/system-connections/") for f in el9.files)
    assert "10.0.0.1" in el7.create and "10.0.0.3/24" in el7.create


def test_bridge_step_probes_the_gateway_else_the_first_dns_server():
    """The rollback probe: the gateway; without one, the first DNS server; STP and the family's
    reload command reach the script."""
    config, _ = load_stack("prod")
    values = copy.deepcopy(config.values)
    xen = next(h for h in values["hosts"] if h["name"] == "xen1")
    xen["bridges"][0] = {"name": "brid0", "interface": "eth0", "address": "10.0.0.3/24"}
    xen["bridges"][0]["dns"] = ["10.0.0.9", "10.0.0.8"]
    fleet = load_fleet(values, set(config.secret_keys))
    no_gateway = steps_of(fleet, "xen1")["bridge-brid0"].create
    assert "10.0.0.9" in no_gateway and "10.0.0.8" not in no_gateway and "10.0.0.1" not in no_gateway
    _, prod = load_stack("prod")
    el7 = steps_of(prod, "xen1")["bridge-brid0"]
    el9 = steps_of(prod, "kvm1")["bridge-brid0"]
    assert el7.create != el9.create
    assert "nmcli" in el9.create and "nmcli" not in el7.create


def test_role_scripts_name_their_role_family_and_kernel():
    _, fleet = load_stack("prod")
    xen = steps_of(fleet, "xen1")["role-xen"].create
    assert "# Role xen on el7:" in xen and "starts after the reboot into Xen" in xen
    vbox = steps_of(fleet, "vbox1")["role-virtualbox"].create
    assert "role virtualbox is installed but does not answer: systemctl is-active --quiet vboxdrv failed" in vbox
    assert "reboot" not in vbox
    ovz = steps_of(fleet, "ovz1")["role-openvz"].create
    url = "https://download.openvz.org/virtuozzo/releases/7.0/x86_64/os/Packages/v/virtuozzo-release-7.0.0-10.vz7.x86_64.rpm"
    assert f"vf_ensure_packages virtuozzo-release={url}\n" in ovz
    assert "vf_ensure_packages vzkernel=vzkernel prlctl=prlctl " in ovz


def test_sysctl_file_is_exactly_the_merged_lines():
    _, fleet = load_stack("prod")
    (conf,) = steps_of(fleet, "kvm1")["sysctl"].files
    assert conf.content == "# virtfleet: what roles kvm need\nnet.ipv4.ip_forward = 1\n"

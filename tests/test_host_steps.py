"""L1: what host_steps and the role table render for a host, with independent expectations.

Fast (no program run, no SSH): the tests that ``make mutate`` runs for every mutant of
``components/hosts/host_steps.py`` and ``components/hosts/roles.py``. The L4 tests
(test_hosts_remote.py) run the same steps for real.
"""

from __future__ import annotations

import shlex

import pytest
from conftest import edited_fleet

from components.hosts.host_steps import firewall_ports, host_steps, hosts_entries
from components.hosts.roles import host_sysctls, role_setup
from components.model import Role
from plan.run import load_stack


def dev_variant(**lb) -> object:
    def edit(values):
        values["loadBalancer"].update(lb)
        next(g for g in values["guests"] if g["name"] == "backup")["ports"] = [
            {"hostPort": 8080, "containerPort": 80},  # loopback by default: not opened
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIp": "10.10.0.2"},
        ]

    return edited_fleet("dev", edit)


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
        "preflight", "selinux", "sysctl", "hostname", "hosts-file", "firewall", "bridge-brid0", "role-xen",
        "role-console", "boot-xen",
    ]  # fmt: skip
    assert {s.name for s in steps if s.lock} == {"sysctl", "bridge-brid0", "role-xen", "role-console", "boot-xen"}
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
    """The rollback probe: the gateway; without one, the first DNS server; the family's reload
    command reaches the script."""
    fleet = _prod_with(
        xen1={
            "bridges": [
                {"name": "brid0", "interface": "eth0", "address": "10.0.0.3/24", "dns": ["10.0.0.9", "10.0.0.8"]}
            ]
        }
    )
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


def test_every_step_runs_as_its_own_host():
    """The frame names the machine in every report line and stages files under its own directory."""
    for stack in ("dev", "prod"):
        _, fleet = load_stack(stack)
        for host in fleet.hosts:
            for step in host_steps(host, fleet):
                assert step.machine == host.name
                # A create names its mode, create or check (_frame.sh.j2's check mode).
                mode = '" ($([ "$vf_check" = 1 ] && echo check || echo create))"'
                create = f"vf_step={shlex.quote(f'{host.name}/{step.name}')}{mode}\n"
                assert create in step.create, (host.name, step.name)
                assert f"vf_step='{host.name}/{step.name} (delete)'\n" in step.delete, (host.name, step.name)


def _prod_with(**changes) -> object:
    """prod with some of its hosts' keys replaced: {host name: {key: value}}."""

    def edit(values):
        for name, keys in changes.items():
            next(h for h in values["hosts"] if h["name"] == name).update(keys)

    return edited_fleet("prod", edit)


def test_hosts_file_lists_a_host_reached_by_dns_name_by_its_first_bridge_or_not_at_all():
    fleet = _prod_with(
        kvm1={"address": "kvm1.lab.example", "bridges": [
            {"name": "brid0", "interface": "eth0", "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
            {"name": "brid1", "interface": "eth1", "address": "10.9.0.2/24"},
        ]},
    )  # fmt: skip
    entries = {name: address for address, name, _ in hosts_entries(fleet)}
    assert entries["kvm1"] == "10.0.0.2"

    def add_spare(values):
        values["hosts"].append({"name": "spare", "address": "spare.lab.example", "roles": ["docker"],
                                "capacity": {"cpuThreads": 2, "memoryMiB": 2048, "diskGiB": 20}})  # fmt: skip
        # a container without an address of its own is reached through its host: not listed either
        values["guests"].append({"name": "cache", "type": "docker", "host": "spare", "image": "redis:7"})

    spare = edited_fleet("prod", add_spare)
    assert not {"spare", "cache"} & {name for _, name, _ in hosts_entries(spare)}
    assert len(hosts_entries(spare)) == len(hosts_entries(fleet))
    assert entries["xen1"] == "10.0.0.3"  # an IP address is listed as it is


def test_bridge_step_names_the_bridge_its_port_its_gateway_and_backend():
    _, prod = load_stack("prod")
    el9 = steps_of(prod, "kvm1")["bridge-brid0"].create
    el7 = steps_of(prod, "xen1")["bridge-brid0"].create
    for script in (el9, el7):
        assert "vf_bridge=brid0\nvf_port=eth0\n" in script and "vf_gateway=10.0.0.1\nvf_probe=10.0.0.1\n" in script
    assert "# Persistence: NetworkManager files" in el9 and "# Persistence: network-scripts files" in el7

    def files(fleet, host):
        return "".join(f.content for f in steps_of(fleet, host)["bridge-brid0"].files)

    assert "STP=no\n" in files(prod, "xen1") and "stp=false\n" in files(prod, "kvm1")
    stp = {"name": "brid0", "interface": "eth0", "stp": True}
    spanning = _prod_with(xen1={"bridges": [{**stp, "address": "10.0.0.3/24"}]},
                          kvm1={"bridges": [{**stp, "address": "10.0.0.2/24"}]})  # fmt: skip
    assert "STP=yes\n" in files(spanning, "xen1") and "stp=true\n" in files(spanning, "kvm1")
    # the live bridge too, and the probe waits out STP's listening and learning (2 x 15 s)
    live = steps_of(spanning, "xen1")["bridge-brid0"].create
    assert "type bridge stp_state 1 " in live and "! vf_answers 40;" in live
    assert "type bridge stp_state 0 " in el7 and "! vf_answers 5;" in el7
    lone = _prod_with(xen1={"bridges": [{"name": "brid0", "interface": "ens3", "address": "10.0.0.3/24"}]})
    script = steps_of(lone, "xen1")["bridge-brid0"].create
    assert "vf_bridge=brid0\nvf_port=ens3\n" in script and "vf_gateway=''\nvf_probe=''\n" in script


def test_virtualbox_autostart_step_when_a_vm_starts_with_the_host():
    _, prod = load_stack("prod")
    steps = host_steps(prod.host("vbox1"), prod)
    assert [s.name for s in steps][-2:] == ["role-virtualbox", "virtualbox-autostart"]
    step = steps[-1]
    assert step.lock
    (config,) = step.files
    assert config.path == "/etc/vbox/autostart.cfg"
    assert config.content == (
        "# virtfleet: VMs of these users with modifyvm --autostart-enabled on start with the host\n"
        "default_policy = deny\nroot = {\n    allow = true\n    startup_delay = 0\n}\n"
    )
    for line in ("VBOXAUTOSTART_DB=/etc/vbox/autostart.d", "VBOXAUTOSTART_CONFIG=/etc/vbox/autostart.cfg"):
        assert line in step.create
    assert "/etc/default/virtualbox" in step.create and "vboxautostart-service" in step.create
    assert "setproperty autostartdbpath /etc/vbox/autostart.d" in step.create
    assert "vboxautostart-service" in step.delete and "vf_remove_file /etc/vbox/autostart.cfg\n" in step.delete

    no_autostart = edited_fleet(
        "prod", lambda values: next(g for g in values["guests"] if g["name"] == "centos7vm1").update(autostart=False)
    )
    assert "virtualbox-autostart" not in steps_of(no_autostart, "vbox1")
    assert all("virtualbox-autostart" not in steps_of(prod, h.name) for h in prod.hosts if h.name != "vbox1")


def test_boot_step_follows_allow_reboot_and_names_its_role():
    _, prod = load_stack("prod")
    held = steps_of(prod, "xen1")["boot-xen"]
    allowed = steps_of(_prod_with(xen1={"allowReboot": True}), "xen1")["boot-xen"]
    assert "allowReboot: true for xen1" in held.create and "allowReboot: true" not in allowed.create
    scheduled = "nohup setsid sh -c 'sleep 5; systemctl reboot'"
    assert scheduled in allowed.create and scheduled not in held.create
    assert "go with step role-xen." in held.delete


def test_preflight_names_the_family_the_stack_says():
    _, prod = load_stack("prod")
    assert "the stack says osFamily el7, but" in steps_of(prod, "xen1")["preflight"].create
    assert "the stack says osFamily el9, but" in steps_of(prod, "kvm1")["preflight"].create


def test_sysctl_file_of_several_roles_and_lines_is_exact():
    _, dev = load_stack("dev")
    (conf,) = steps_of(dev, "devbox")["sysctl"].files
    assert conf.content == "# virtfleet: what roles kvm, docker need\nnet.ipv4.ip_forward = 1\n"
    _, prod = load_stack("prod")
    sysctl = steps_of(prod, "ovz1")["sysctl"]
    assert "vf_remove_file /etc/sysctl.d/90-virtfleet.conf\n" in sysctl.delete
    (conf,) = sysctl.files
    lines = conf.content.splitlines(keepends=True)
    assert lines[0] == "# virtfleet: what roles openvz need\n"
    assert lines[1:] == [f"{k} = {v}\n" for k, v in host_sysctls([Role.OPENVZ], "el7")]

"""The fakes behind the console role (Cockpit), proven before its steps rely on them.

The console step installs ``cockpit``/``cockpit-ws`` (``yum``/``dnf``), runs ``cockpit.socket``
(``systemctl``), relies on what cockpit-ws's rpm ships per family (its PAM file, EL9's
disallowed-users, its groups, ``ws-certs.d``), relabels the certificate (``restorecon``: ``cert_t``)
and opens 9090 with firewalld rich rules (``firewall-cmd``). Each test drives the fakes directly in
a fresh throwaway view (``LoopbackSshd``) and checks the end state the way the real tools show it.
"""

from __future__ import annotations

import json
import shlex

import pytest
from support.firewall_fake import assert_rich_rule_refused
from support.sshd import LoopbackSshd, loopback_sshd_fixture

pytestmark = pytest.mark.real

sshd = loopback_sshd_fixture(scope="function")  # a pristine EL host per test

EL7_RELEASE = "CentOS Linux release 7.9.2009 (Core)\n"
RULE = 'rule family="ipv4" source address="10.0.0.0/24" service name="cockpit" accept'
# The same rule as a user may write it: single quotes, no quotes, other spacing.
RULE_RESPELLED = "rule  family='ipv4' source   address=10.0.0.0/24 service name=cockpit accept"
OTHER_RULE = 'rule family="ipv4" source address="192.168.7.0/24" service name="cockpit" accept'
LISTFILE = (
    "auth       required     pam_listfile.so item=user sense=deny file=/etc/cockpit/disallowed-users onerr=succeed"
)
CERT = "/etc/cockpit/ws-certs.d/50-virtfleet.cert"


def q(text: str) -> str:
    return shlex.quote(text)


def ok(host: LoopbackSshd, cmd: str) -> str:
    return host.run(cmd, check=True).stdout


# -- firewall-cmd: rich rules ------------------------------------------------------------------


def test_rich_rule_permanent_reaches_runtime_only_at_reload(sshd: LoopbackSshd) -> None:
    add, runtime_before, permanent_respelled, reload, runtime_after, listed, perm_listed = sshd.run_each([
        f"firewall-cmd --permanent --add-rich-rule={q(RULE)}",
        f"firewall-cmd --query-rich-rule={q(RULE)}",
        f"firewall-cmd --permanent --query-rich-rule {q(RULE_RESPELLED)}",  # the two-argument form
        "firewall-cmd --reload",
        f"firewall-cmd --zone=public --query-rich-rule={q(RULE_RESPELLED)}",
        "firewall-cmd --list-rich-rules",
        "firewall-cmd --permanent --zone=public --list-rich-rules",
    ])  # fmt: skip
    assert (add.returncode, add.stdout, add.stderr) == (0, "success\n", "")
    assert (runtime_before.returncode, runtime_before.stdout) == (1, "no\n")
    assert (permanent_respelled.returncode, permanent_respelled.stdout) == (0, "yes\n")
    assert (reload.returncode, reload.stdout) == (0, "success\n")
    assert (runtime_after.returncode, runtime_after.stdout) == (0, "yes\n")
    assert listed.stdout == perm_listed.stdout == f"{RULE}\n"  # firewalld's normalized form


def test_rich_rule_runtime_add_remove_and_warnings(sshd: LoopbackSshd) -> None:
    add, again, perm_add, perm_again, absent, perm_absent, listed, remove, gone, quiet = sshd.run_each([
        f"firewall-cmd --add-rich-rule={q(RULE_RESPELLED)}",
        f"firewall-cmd --add-rich-rule={q(RULE)}",
        f"firewall-cmd --permanent --add-rich-rule={q(RULE)}",
        f"firewall-cmd --permanent --add-rich-rule={q(RULE_RESPELLED)}",
        f"firewall-cmd --remove-rich-rule={q(OTHER_RULE)}",
        f"firewall-cmd --permanent --remove-rich-rule={q(OTHER_RULE)}",
        "firewall-cmd --list-rich-rules",
        f"firewall-cmd --remove-rich-rule={q(RULE)}",
        f"firewall-cmd --query-rich-rule={q(RULE)}; firewall-cmd --permanent --query-rich-rule={q(RULE)}",
        f"firewall-cmd -q --query-rich-rule={q(RULE)}",
    ])  # fmt: skip
    assert (add.returncode, add.stdout) == (0, "success\n")
    # firewalld's daemon (runtime) and client (permanent) word the warnings differently
    assert (again.returncode, again.stderr) == (0, f"Warning: ALREADY_ENABLED: '{RULE}' already in 'public'\n")
    assert (perm_add.returncode, perm_add.stdout) == (0, "success\n")
    assert (perm_again.returncode, perm_again.stderr) == (0, f"Warning: ALREADY_ENABLED: {RULE}\n")
    assert (absent.returncode, absent.stderr) == (0, f"Warning: NOT_ENABLED: '{OTHER_RULE}' not in 'public'\n")
    assert (perm_absent.returncode, perm_absent.stderr) == (0, f"Warning: NOT_ENABLED: {OTHER_RULE}\n")
    assert listed.stdout == f"{RULE}\n"  # stored once, normalized
    assert (remove.returncode, remove.stdout) == (0, "success\n")
    assert gone.stdout == "no\nyes\n"  # removed at runtime only
    assert (quiet.returncode, quiet.stdout) == (1, "")


@pytest.mark.parametrize(
    ("rule", "code", "message"),
    [
        ('rule family="ipv4" source address="10.0.0.0/24" service name="cockpit" frobnicate', 122,
         "INVALID_RULE: unknown element frobnicate"),
        ('rule family="ipv4" service name="cockpit"', 122, "INVALID_RULE: no action, no log, no audit"),
        ('rule family="ipv5" service name="cockpit" accept', 122,
         "INVALID_RULE: 'family' attribute cannot have 'ipv5' value. Use 'ipv4' or 'ipv6' instead."),
        ('family="ipv4" rule service name="cockpit" accept', 122,
         "INVALID_RULE: 'family' outside of rule. Use 'rule family=...'."),
        ('rule service naem="cockpit" accept', 122, "INVALID_RULE: bad attribute 'naem'"),
        ('rule service name="cockpit" accept drop', 122,
         "INVALID_RULE: more than one 'action' element. There cannot be both 'drop' and 'accept' in one rule."),
        ('rule source address="10.0.0.0/24" service name="cockpit" accept', 207, "MISSING_FAMILY"),
        ('rule family="ipv4" source address="10.0.0.256/24" service name="cockpit" accept', 105,
         "INVALID_ADDR: 10.0.0.256/24"),
        ('rule family="ipv4" source address="10.0.0.0/33" service name="cockpit" accept', 105,
         "INVALID_ADDR: 10.0.0.0/33"),
        ('rule family="ipv6" source address="10.0.0.0/24" service name="cockpit" accept', 105,
         "INVALID_ADDR: 10.0.0.0/24"),
        ('rule port port="99999" protocol="tcp" accept', 102, "INVALID_PORT: 99999"),
        ('rule port port="9090" protocol="icmp" accept', 103, "INVALID_PROTOCOL: icmp"),
        ('rule family="ipv4" source address="10.0.0.0/24 service name="cockpit" accept', 254, "No closing quotation"),
    ],
)  # fmt: skip
def test_rich_rule_errors_are_firewalld_s(sshd: LoopbackSshd, rule: str, code: int, message: str) -> None:
    assert_rich_rule_refused(sshd, rule, code, message)


def test_host_bits_and_ipv6_addresses_are_kept_as_written(sshd: LoopbackSshd) -> None:
    host_bits = 'rule family="ipv4" source not address="10.0.0.5/24" port port="9090" protocol="tcp" reject'
    ipv6 = "rule family=ipv6 source address=fd00:1::/64 service name=cockpit drop"
    add, listed = sshd.run_each([
        f"firewall-cmd --add-rich-rule={q(host_bits)} && firewall-cmd --add-rich-rule={q(ipv6)}",
        "firewall-cmd --list-rich-rules",
    ])  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert listed.stdout == (
        'rule family="ipv4" source NOT address="10.0.0.5/24" port port="9090" protocol="tcp" reject\n'
        'rule family="ipv6" source address="fd00:1::/64" service name="cockpit" drop\n'
    )


def test_unknown_service_fails_at_runtime_and_at_the_reload_of_a_permanent_rule(sshd: LoopbackSshd) -> None:
    nope = 'rule family="ipv4" source address="10.0.0.0/24" service name="nope" accept'
    runtime, permanent, reload, runtime_rules, custom = sshd.run_each([
        f"firewall-cmd --add-rich-rule={q(nope)}",
        f"firewall-cmd --add-rich-rule={q(RULE)} && firewall-cmd --permanent --add-rich-rule={q(nope)}",
        "firewall-cmd --reload",
        "firewall-cmd --list-rich-rules",
        "mkdir -p /etc/firewalld/services && echo '<service/>' > /etc/firewalld/services/nope.xml"
        f" && firewall-cmd --add-rich-rule={q(nope)}",
    ])  # fmt: skip
    assert (runtime.returncode, runtime.stderr) == (101, "Error: INVALID_SERVICE: nope\n")
    assert permanent.returncode == 0  # firewalld checks the service only where it applies the rule
    assert (reload.returncode, reload.stderr) == (101, "Error: INVALID_SERVICE: nope\n")
    assert runtime_rules.stdout == f"{RULE}\n"  # the failed reload left the runtime set alone
    assert custom.returncode == 0, custom.stderr  # a service of the admin's own counts


def test_list_all_shows_rich_rules_as_each_firewalld_does(sshd: LoopbackSshd) -> None:
    el9_empty, el9_rules = sshd.run_each([
        "firewall-cmd --list-all",
        f"firewall-cmd --add-rich-rule={q(RULE)} && firewall-cmd --add-rich-rule={q(OTHER_RULE)}"
        " && firewall-cmd --list-all",
    ])  # fmt: skip
    assert el9_empty.stdout.endswith("  icmp-blocks: \n  rich rules: \n")
    assert el9_rules.stdout.endswith(f"  rich rules: \n\t{RULE}\n\t{OTHER_RULE}\n")  # in the order added
    assert "  services: cockpit dhcpv6-client ssh\n" in el9_empty.stdout  # EL9's public zone opens cockpit


def test_el7_list_all_always_starts_rich_rules_on_a_new_line(sshd: LoopbackSshd) -> None:
    sshd.upload(EL7_RELEASE, "/etc/redhat-release")
    empty, services = sshd.run_each(["firewall-cmd --list-all", "firewall-cmd --list-services"])
    assert empty.stdout.endswith("  rich rules: \n\t\n")  # firewalld 0.6's print_zone_info
    assert services.stdout == "dhcpv6-client ssh\n"  # EL7's public zone has no cockpit


def test_a_zone_saved_without_rich_rules_still_loads(sshd: LoopbackSshd) -> None:
    ok(sshd, "firewall-cmd --state")  # the fakes seed the host first
    legacy = {"default_zone": "public", "runtime": {"public": {"ports": ["80/tcp"], "services": ["ssh"]}},
              "permanent": {"public": {"ports": [], "services": ["ssh"]}}}  # fmt: skip
    sshd.upload(json.dumps(legacy), "/var/lib/virtfleet-fakes/firewalld.json")
    listed, query, perm_add, reload, rules, ports = sshd.run_each([
        "firewall-cmd --list-all", f"firewall-cmd --query-rich-rule={q(RULE)}",
        f"firewall-cmd --permanent --add-rich-rule={q(RULE)}", "firewall-cmd --reload",
        "firewall-cmd --list-rich-rules", "firewall-cmd --list-ports",
    ])  # fmt: skip
    assert listed.returncode == 0 and "  ports: 80/tcp\n" in listed.stdout
    assert listed.stdout.endswith("  rich rules: \n")
    assert (query.returncode, query.stdout) == (1, "no\n")
    assert perm_add.returncode == 0 and reload.returncode == 0
    assert rules.stdout == f"{RULE}\n"
    assert ports.stdout == "\n"  # --reload replaced the runtime set, rich rules included


def test_rich_rule_actions_do_not_mix_with_other_actions(sshd: LoopbackSshd) -> None:
    mixed, both, listed = sshd.run_each([
        f"firewall-cmd --add-service=http --add-rich-rule={q(RULE)}",
        f"firewall-cmd --add-rich-rule={q(RULE)} --remove-rich-rule={q(OTHER_RULE)}",
        "firewall-cmd --list-rich-rules; firewall-cmd --list-services",
    ])  # fmt: skip
    assert mixed.returncode == 2 and "--add-rich-rule and --add-service in one call" in mixed.stderr
    assert both.returncode == 2
    assert listed.stdout == "\ncockpit dhcpv6-client ssh\n"  # neither call changed anything


def test_several_rich_rules_in_one_call_are_a_sequence(sshd: LoopbackSshd) -> None:
    bad = 'rule family="ipv4" source address="10.0.0.0/24" service name="cockpit"'
    add, query = sshd.run_each([
        f"firewall-cmd --add-rich-rule={q(RULE)} --add-rich-rule={q(bad)}",
        f"firewall-cmd --query-rich-rule={q(RULE)} --query-rich-rule={q(OTHER_RULE)}",
    ])  # fmt: skip
    assert (add.returncode, add.stdout) == (0, "success\n")  # one of two worked: warnings, not an error
    assert add.stderr == "Warning: INVALID_RULE: no action, no log, no audit\n"
    assert (query.returncode, query.stdout) == (0, f"'{RULE}': yes\n'{OTHER_RULE}': no\n")


# -- cockpit's packages, units, groups and files -------------------------------------------------


def test_cockpit_on_el9_baseos_and_appstream_with_listfile_and_disallowed_users(sshd: LoopbackSshd) -> None:
    results = sshd.run_each([
        "dnf install -y cockpit cockpit-ws", "dnf install -y cockpit-machines",
        "getent group cockpit-ws cockpit-wsinstance | cut -d: -f1",
        "cat /etc/pam.d/cockpit", "cat /etc/cockpit/disallowed-users", "stat -c %F /etc/cockpit/ws-certs.d",
        "rpm -q cockpit cockpit-ws cockpit-machines cockpit-bridge",
    ])  # fmt: skip
    install, machines, groups, pam, disallowed, certs_dir, rpm = results
    assert install.returncode == 0 and " baseos" in install.stdout and "appstream" not in install.stdout
    assert machines.returncode == 0 and " appstream" in machines.stdout
    assert groups.stdout == "cockpit-ws\ncockpit-wsinstance\n"
    lines = pam.stdout.splitlines()
    assert lines[0] == "#%PAM-1.0" and LISTFILE in lines
    assert max(i for i, line in enumerate(lines) if line.startswith("auth")) == lines.index(LISTFILE)
    assert "account    include      password-auth" in lines and "session    include      postlogin" in lines
    assert disallowed.stdout == "# List of users which are not allowed to login to Cockpit\nroot\n"
    assert certs_dir.stdout == "directory\n"
    assert rpm.returncode == 1 and rpm.stdout.endswith("package cockpit-bridge is not installed\n")  # no deps


def test_cockpit_on_el7_extras_without_listfile(sshd: LoopbackSshd) -> None:
    sshd.upload(EL7_RELEASE, "/etc/redhat-release")
    install, groups, pam, disallowed, certs_dir = sshd.run_each([
        "yum install -y cockpit cockpit-ws cockpit-system cockpit-machines",
        "getent group cockpit-ws cockpit-wsinstance | cut -d: -f1",
        "cat /etc/pam.d/cockpit", "test -e /etc/cockpit/disallowed-users", "stat -c %F /etc/cockpit/ws-certs.d",
    ])  # fmt: skip
    assert install.returncode == 0 and install.stdout.count(" extras") == 4
    assert groups.stdout == "cockpit-ws\n"  # cockpit 195 has no ws instances
    lines = pam.stdout.splitlines()
    assert "pam_listfile" not in pam.stdout
    assert lines[:3] == ["#%PAM-1.0", "auth\t   required\tpam_sepermit.so", "auth       substack     password-auth"]
    assert "account    include      password-auth" in lines
    assert disallowed.returncode == 1
    assert certs_dir.stdout == "directory\n"


@pytest.mark.parametrize("family", ["el7", "el9"])
def test_cockpit_socket_enable_restart_disable(sshd: LoopbackSshd, family: str) -> None:
    if family == "el7":
        sshd.upload(EL7_RELEASE, "/etc/redhat-release")
    pm = "yum" if family == "el7" else "dnf"
    results = sshd.run_each([
        "systemctl enable --now cockpit.socket",
        f"{pm} install -y -q cockpit-ws && systemctl enable --now cockpit.socket",
        "systemctl is-enabled --quiet cockpit.socket && systemctl is-active --quiet cockpit.socket",
        "systemctl daemon-reload && systemctl restart cockpit.socket",
        "systemctl is-active cockpit.service", "systemctl status cockpit.socket", "systemctl reload cockpit.socket",
        "systemctl disable --now cockpit.socket", "systemctl is-enabled cockpit.socket; systemctl is-active cockpit",
        "cat /var/lib/virtfleet-fakes/systemd.json",
    ])  # fmt: skip
    missing, enable, running, restart, service, status, reload, disable, disabled, state = results
    assert missing.returncode == 1  # no cockpit-ws yet: no unit file
    link, target = "/etc/systemd/system/sockets.target.wants/cockpit.socket", "/usr/lib/systemd/system/cockpit.socket"
    assert enable.returncode == 0
    assert enable.stderr == (
        f"Created symlink from {link} to {target}.\n" if family == "el7" else f"Created symlink {link} → {target}.\n"
    )
    assert running.returncode == 0
    assert restart.returncode == 0
    assert (service.returncode, service.stdout) == (3, "inactive\n")  # socket-activated: nothing connected yet
    assert status.returncode == 0 and "Active: active (listening)" in status.stdout
    assert (reload.returncode, reload.stderr) == (
        1,
        "Failed to reload cockpit.socket: Job type reload is not applicable for unit cockpit.socket.\n",
    )
    assert disable.returncode == 0 and link in disable.stderr
    assert disabled.stdout == "disabled\ninactive\n"
    jobs = [(j["verb"], j["unit"]) for j in json.loads(state.stdout)["jobs"]]
    assert jobs == [("start", "cockpit.socket"), ("restart", "cockpit.socket"), ("stop", "cockpit.socket")]


def test_erase_keeps_a_changed_pam_file_and_the_groups(sshd: LoopbackSshd) -> None:
    change = (
        "sed -i 's/^auth       substack/auth       requisite    pam_succeed_if.so uid >= 1000\\n&/' /etc/pam.d/cockpit"
    )
    results = sshd.run_each([
        f"dnf install -y -q cockpit-ws && {change} && echo admin >> /etc/cockpit/disallowed-users"
        f" && echo cert > {CERT} && systemctl enable --now cockpit.socket",
        "dnf remove -y cockpit-ws",
        "grep -c pam_succeed_if /etc/pam.d/cockpit.rpmsave; test -e /etc/pam.d/cockpit",
        "ls -A /etc/cockpit /etc/cockpit/ws-certs.d", "getent group cockpit-ws cockpit-wsinstance | cut -d: -f1",
        "systemctl is-active cockpit.socket",
    ])  # fmt: skip
    setup, remove, saved, left, groups, socket = results
    assert setup.returncode == 0, setup.stderr
    assert remove.returncode == 0
    assert remove.stderr == "warning: /etc/pam.d/cockpit saved as /etc/pam.d/cockpit.rpmsave\n"
    assert (saved.returncode, saved.stdout) == (1, "1\n")  # the admin's line is in .rpmsave, the file is gone
    # disallowed-users is a %ghost: removed, changed or not; the directories stay while they hold a file
    assert left.stdout == "/etc/cockpit:\nws-certs.d\n\n/etc/cockpit/ws-certs.d:\n50-virtfleet.cert\n"
    assert groups.stdout == "cockpit-ws\ncockpit-wsinstance\n"  # rpm never removes users or groups
    assert socket.returncode == 3


def test_the_first_install_writes_disallowed_users_over_what_is_there(sshd: LoopbackSshd) -> None:
    ok(sshd, "rpm -q bash")  # the fakes seed the host first
    install, disallowed = sshd.run_each([
        "mkdir -p /etc/cockpit && echo admin > /etc/cockpit/disallowed-users && dnf install -y -q cockpit-ws",
        "cat /etc/cockpit/disallowed-users; ls /etc/cockpit",
    ])  # fmt: skip
    assert (install.returncode, install.stderr) == (0, "")  # a %ghost file %post writes: no .rpmnew
    assert (
        disallowed.stdout
        == "# List of users which are not allowed to login to Cockpit\nroot\ndisallowed-users\nws-certs.d\n"
    )


def test_erase_of_an_unchanged_install_leaves_nothing(sshd: LoopbackSshd) -> None:
    sshd.upload(EL7_RELEASE, "/etc/redhat-release")
    erase, left, reinstall = sshd.run_each([
        "yum install -y -q cockpit-ws && rpm -e cockpit-ws",
        "ls -A /etc/pam.d | grep cockpit; ls -d /etc/cockpit/ws-certs.d",
        "yum install -y -q cockpit-ws && grep -c pam_sepermit /etc/pam.d/cockpit",
    ])  # fmt: skip
    assert (erase.returncode, erase.stderr) == (0, "")
    assert left.stdout == "" and "No such file or directory" in left.stderr
    assert reinstall.stdout == "1\n"


def test_installing_cockpit_ws_reloads_firewalld(sshd: LoopbackSshd) -> None:
    add, install, query, permanent = sshd.run_each([
        f"firewall-cmd --add-port=8080/tcp && firewall-cmd --add-rich-rule={q(RULE)}",
        "dnf install -y -q cockpit-ws",
        f"firewall-cmd --query-port=8080/tcp; firewall-cmd --query-rich-rule={q(RULE)}",
        "firewall-cmd --permanent --query-service=cockpit",
    ])  # fmt: skip
    assert add.returncode == 0 and install.returncode == 0
    assert query.stdout == "no\nno\n"  # %post: firewall-cmd --reload: runtime-only changes are gone
    assert permanent.returncode == 0


# -- SELinux: the certificate directory is cert_t ---------------------------------------------------


def test_restorecon_labels_the_certificate_cert_t(sshd: LoopbackSshd) -> None:
    results = sshd.run_each([
        f"dnf install -y -q cockpit-ws && echo cert > {CERT} && chcon -t etc_t {CERT}",
        "restorecon -R -v /etc/cockpit/ws-certs.d", f"stat -c %C {CERT}", f"ls -Z {CERT}",
        "restorecon -R -v /etc/cockpit/ws-certs.d",
        "mkdir -p /etc/pki/tls/certs && echo ca > /etc/pki/tls/certs/ca.pem && restorecon -R /etc/pki /etc/cockpit"
        " && stat -c %C /etc/pki/tls/certs/ca.pem /etc/cockpit",
        "semanage fcontext -l | grep -F -e ws-certs -e /etc/pki",
    ])  # fmt: skip
    setup, relabel, label, listing, again, pki, rules = results
    assert setup.returncode == 0, setup.stderr
    assert relabel.stdout == f"Relabeled {CERT} from system_u:object_r:etc_t:s0 to system_u:object_r:cert_t:s0\n"
    assert label.stdout == "system_u:object_r:cert_t:s0\n"
    assert listing.stdout.startswith("system_u:object_r:cert_t:s0 ")
    assert again.stdout == ""
    assert pki.stdout == "system_u:object_r:cert_t:s0\nsystem_u:object_r:etc_t:s0\n"
    specs = [r"/etc/cockpit/ws-certs\.d(/.*)?", "/etc/pki(/.*)?"]  # as EL's file_contexts writes them
    assert rules.stdout.splitlines() == [f"{spec:<50} {'all files':<18} system_u:object_r:cert_t:s0 " for spec in specs]

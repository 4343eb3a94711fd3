"""The fakes behind a keepalived (VRRP) pair, proven before its steps rely on them.

A VRRP step lets the peer's advertisements in with a firewalld rich rule of the ``protocol``
element (``rule family="ipv4" source address="PEER" protocol value="vrrp" accept``, IP protocol 112)
and relabels its notify script under ``/usr/libexec/keepalived`` (``restorecon``:
``keepalived_unconfined_script_exec_t``). Each test drives the fakes directly in a fresh throwaway
view (``LoopbackSshd``), on EL7 (firewalld 0.6.3) and EL9 (firewalld 1.3), and checks the end state
the way the real tools show it.
"""

from __future__ import annotations

import json
import shlex

import pytest
from support.firewall_fake import assert_rich_rule_refused
from support.sshd import LoopbackSshd, loopback_sshd_fixture

from lab.view import EL_RELEASE

pytestmark = pytest.mark.real

sshd = loopback_sshd_fixture(scope="function")  # a pristine EL host per test

EL7_RELEASE = EL_RELEASE["el7"]
RULE = 'rule family="ipv4" source address="10.0.0.9" protocol value="vrrp" accept'
# The same rule as a user may write it: no quotes, single quotes, other spacing.
RULE_RESPELLED = "rule family=ipv4  source address='10.0.0.9'   protocol value=vrrp accept"
SCRIPT = "/usr/libexec/keepalived/x"
KEEPALIVED_LABEL = "system_u:object_r:keepalived_unconfined_script_exec_t:s0"


def q(text: str) -> str:
    return shlex.quote(text)


@pytest.fixture(params=["el7", "el9"])
def host(request: pytest.FixtureRequest, sshd: LoopbackSshd) -> LoopbackSshd:
    """The throwaway view as an EL7 or an EL9 host (the fakes read the dialect from redhat-release)."""
    if request.param == "el7":
        sshd.upload(EL7_RELEASE, "/etc/redhat-release")
    return sshd


# -- firewall-cmd: the protocol element --------------------------------------------------------------


def test_vrrp_rule_permanent_then_runtime_survives_reload_and_is_removed(host: LoopbackSshd) -> None:
    results = host.run_each([
        f"firewall-cmd --permanent --add-rich-rule={q(RULE_RESPELLED)}",
        f"firewall-cmd --query-rich-rule={q(RULE)}",
        f"firewall-cmd --add-rich-rule {q(RULE)}",  # the two-argument form
        f"firewall-cmd --add-rich-rule={q(RULE_RESPELLED)}",
        f"firewall-cmd --query-rich-rule={q(RULE_RESPELLED)}; firewall-cmd --permanent --query-rich-rule={q(RULE)}",
        "firewall-cmd --list-rich-rules; firewall-cmd --permanent --zone=public --list-rich-rules",
        "firewall-cmd --list-all",
        "cat /var/lib/virtfleet-fakes/firewalld.json",
        "firewall-cmd --reload",
        f"firewall-cmd --list-rich-rules; firewall-cmd --query-rich-rule={q(RULE)}",
        f"firewall-cmd --remove-rich-rule={q(RULE_RESPELLED)}",
        f"firewall-cmd --permanent --remove-rich-rule={q(RULE)}",
        f"firewall-cmd --query-rich-rule={q(RULE)}; firewall-cmd --permanent --query-rich-rule={q(RULE)}",
        "firewall-cmd --reload && firewall-cmd --list-rich-rules && firewall-cmd --permanent --list-rich-rules",
    ])  # fmt: skip
    perm_add, runtime_before, add, again, queried, listed, list_all, state, reload, reloaded = results[:10]
    remove, perm_remove, gone, gone_after_reload = results[10:]
    assert (perm_add.returncode, perm_add.stdout, perm_add.stderr) == (0, "success\n", "")
    assert (runtime_before.returncode, runtime_before.stdout) == (1, "no\n")  # permanent only, until a reload
    assert (add.returncode, add.stdout, add.stderr) == (0, "success\n", "")
    assert (again.returncode, again.stderr) == (0, f"Warning: ALREADY_ENABLED: '{RULE}' already in 'public'\n")
    assert (queried.returncode, queried.stdout) == (0, "yes\nyes\n")
    assert listed.stdout == f"{RULE}\n{RULE}\n"  # firewalld's normalized form, stored once per layer
    assert list_all.stdout.endswith(f"  rich rules: \n\t{RULE}\n")
    for layer in ("runtime", "permanent"):
        assert json.loads(state.stdout)[layer]["public"]["rich_rules"] == [RULE]
    assert (reload.returncode, reload.stdout) == (0, "success\n")
    assert (reloaded.returncode, reloaded.stdout) == (0, f"{RULE}\nyes\n")
    assert (remove.returncode, remove.stdout, remove.stderr) == (0, "success\n", "")
    assert (perm_remove.returncode, perm_remove.stdout, perm_remove.stderr) == (0, "success\n", "")
    assert gone.stdout == "no\nno\n"
    assert (gone_after_reload.returncode, gone_after_reload.stdout) == (0, "success\n\n\n")  # both layers empty


def test_a_protocol_number_is_kept_as_written(host: LoopbackSshd) -> None:
    by_number = 'rule family="ipv4" source address="10.0.0.9" protocol value="112" accept'
    add, query, listed = host.run_each([
        "firewall-cmd --add-rich-rule='rule family=ipv4 source address=10.0.0.9 protocol value=112 accept'",
        f"firewall-cmd --query-rich-rule={q(RULE)}",
        "firewall-cmd --list-rich-rules",
    ])  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert (query.returncode, query.stdout) == (1, "no\n")  # firewalld compares the strings, 112 is not vrrp
    assert listed.stdout == f"{by_number}\n"


@pytest.mark.parametrize(
    ("rule", "code", "message"),
    [
        ('rule family="ipv4" source address="10.0.0.9" protocol value="nope" accept', 103,
         "INVALID_PROTOCOL: nope"),
        ('rule family="ipv4" source address="10.0.0.9" protocol value="256" accept', 103, "INVALID_PROTOCOL: 256"),
        ('rule family="ipv4" source address="10.0.0.9" protocol value="vrrp" port port="112" protocol="tcp" accept',
         122, "INVALID_RULE: more than one element. There cannot be both 'port' and 'protocol value=\"vrrp\"' in "
         "one rule."),
        ('rule family="ipv4" port port="112" protocol="tcp" protocol value="vrrp" accept', 122,
         "INVALID_RULE: more than one element. There cannot be both 'protocol' and "
         "'port port=\"112\" protocol=\"tcp\"' in one rule."),
        ('rule family="ipv4" protocol value="vrrp" service name="ssh" accept', 122,
         "INVALID_RULE: more than one element. There cannot be both 'service' and 'protocol value=\"vrrp\"' in "
         "one rule."),
        ('rule family="ipv4" protocol name="vrrp" accept', 122, "INVALID_RULE: invalid 'protocol' element"),
        ('rule family="ipv4" protocol value="vrrp"', 122, "INVALID_RULE: no action, no log, no audit"),
        ('rule family="ipv4" protocol="vrrp" accept', 122,
         "INVALID_RULE: wrong 'protocol' usage. Use either 'rule protocol value=...' or  "
         "'rule [forward-]port protocol=...'."),
    ],
)  # fmt: skip
def test_protocol_errors_are_firewalld_s(host: LoopbackSshd, rule: str, code: int, message: str) -> None:
    assert_rich_rule_refused(host, rule, code, message)


def test_a_number_with_underscores_is_python_3_s_int_only(sshd: LoopbackSshd) -> None:
    rule = "rule protocol value=1_2 accept"  # int("1_2") == 12 on Python 3 (firewalld 1.x), an error on Python 2
    el9 = sshd.run(f"firewall-cmd --add-rich-rule={q(rule)} && firewall-cmd --list-rich-rules")
    sshd.upload(EL7_RELEASE, "/etc/redhat-release")
    el7 = sshd.run(f"firewall-cmd --permanent --add-rich-rule={q(rule)}")
    assert (el9.returncode, el9.stdout) == (0, 'success\nrule protocol value="1_2" accept\n')
    assert (el7.returncode, el7.stderr) == (103, "Error: INVALID_PROTOCOL: 1_2\n")


def test_vrrp_is_known_even_where_this_machine_s_protocols_file_lacks_it(sshd: LoopbackSshd) -> None:
    cut, add, unknown = sshd.run_each([
        "sed -i '/^vrrp[[:space:]]/d' /etc/protocols && ! grep -qw vrrp /etc/protocols",  # the view's copy only
        f"firewall-cmd --add-rich-rule={q(RULE)}",
        "firewall-cmd --add-rich-rule='rule protocol value=vrrp-ish accept'",
    ])  # fmt: skip
    assert cut.returncode == 0, cut.stderr
    assert (add.returncode, add.stdout) == (0, "success\n")  # EL's /etc/protocols has vrrp 112
    assert (unknown.returncode, unknown.stderr) == (103, "Error: INVALID_PROTOCOL: vrrp-ish\n")


# -- SELinux: keepalived's scripts -------------------------------------------------------------------


def test_restorecon_labels_keepalived_scripts(host: LoopbackSshd) -> None:
    results = host.run_each([
        f"mkdir -p /usr/libexec/keepalived && printf '#!/bin/sh\\n' > {SCRIPT} && chmod 755 {SCRIPT}"
        f" && chcon -t bin_t {SCRIPT} && mkdir -p /usr/libexec/keepalivedx",
        f"restorecon -v {SCRIPT}",
        f"stat -c %C {SCRIPT}",
        "restorecon -R -v /usr/libexec/keepalived /usr/libexec/keepalivedx",
        "stat -c %C /usr/libexec/keepalived /usr/libexec/keepalivedx",
        "semanage fcontext -l | grep -F keepalived",
    ])  # fmt: skip
    setup, relabel, label, again, dirs, rules = results
    assert setup.returncode == 0, setup.stderr
    assert relabel.stdout == f"Relabeled {SCRIPT} from system_u:object_r:bin_t:s0 to {KEEPALIVED_LABEL}\n"
    assert label.stdout == f"{KEEPALIVED_LABEL}\n"
    assert (again.returncode, again.stdout) == (0, "")
    directory, sibling = dirs.stdout.splitlines()
    assert directory == KEEPALIVED_LABEL  # the tree's top too: keepalived.fc's (/.*)? is optional
    assert sibling != KEEPALIVED_LABEL  # a name that only starts the same is not in the tree
    spec = "/usr/libexec/keepalived(/.*)?"
    assert rules.stdout == f"{spec:<50} {'all files':<18} {KEEPALIVED_LABEL} \n"

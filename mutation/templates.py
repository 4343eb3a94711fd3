"""Template mutation testing: plausible one-line bugs put into a copy of templates/, one at a time.

Each mutant is (template, the line as it is, the line as a plausible bug, the tests that must
fail). The tree is copied once to a temporary directory (the checkout is never touched); each
mutant is applied to the copy, the named tests run there (``pytest -x``: the first failure kills
the mutant), and the line is put back. A mutant whose line is not found is reported as
``not applicable`` (the template changed; update the list). Prints every mutant's outcome, the
survivors and the score.

    python -m mutation.templates [--root DIR] [--only N,M] [--timeout S]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The tests that must catch a mutant, by node id (the timing-bounded tests of the same files are left
# out: on a loaded machine they could "kill" a mutant for the wrong reason). A node id the tree
# does not have is skipped; a mutant left with no test at all survives.
HOSTS = "tests/test_hosts_remote.py::test_host_steps_converge_and_undo_over_ssh"
PREFLIGHT = "tests/test_hosts_remote.py::test_preflight_follows_the_cpu_flags_the_host_shows"
REBOOT = "tests/test_hosts_remote.py::test_reboot_into_xen_when_allowed_then_converged"
SERVICE = "tests/test_hosts_remote.py::test_a_service_that_does_not_come_up_fails_the_role"
MID_STEP = "tests/test_hosts_remote.py::test_a_command_failing_mid_step_stops_the_step"
POWER = "tests/test_kvm_power_step.py"
OPENVZ = "tests/test_openvz_guest_remote.py"
XEN = "tests/test_xen_guest_remote.py"
VBOX = "tests/test_virtualbox_guest_remote.py"
DRIFT_HOST = "tests/test_drift_remote.py::test_each_hand_change_of_a_host_is_named_and_up_puts_it_back"
HAPROXY_CONFIG = "tests/test_haproxy_remote.py::test_haproxy_config_is_checked_installed_started_and_reloaded"
CONSOLE = "tests/test_console.py::test_the_console_is_installed_locked_and_undone"
CONSOLE_CHECKS = "tests/test_console.py::test_a_foreign_certificate_is_refused_and_allow_from_changes_follow"
ROLL_LAB = "tests/test_rolling_change_lab.py"
ROLLED = f"{ROLL_LAB}::test_a_rolled_restart_of_every_server_loses_no_request"
ROLL_STUCK = f"{ROLL_LAB}::test_a_server_that_does_not_come_back_stops_the_roll_the_rest_serving"
PAIR_REMOTE = "tests/test_balancer_pair_remote.py"
PAIR = f"{PAIR_REMOTE}::test_create_installs_keepalived_admits_vrrp_from_the_peer_only_and_delete_puts_the_node_back"
PAIR_CHANGE = f"{PAIR_REMOTE}::test_a_new_peer_swaps_the_rule_and_reloads_keepalived_and_the_nodes_own_config_returns"
IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "mutants", ".engine", ".pulumi-state", "__pycache__")


@dataclass(frozen=True)
class Mutant:
    template: str  # under templates/steps/
    line: str  # the exact text of the line (without its indentation), as committed
    bug: str  # what it becomes; "" deletes the line
    tests: tuple[str, ...]
    why: str  # the bug it stands for


MUTANTS = (
    # The web console (Cockpit, issue 26).
    Mutant("console.create.sh.j2", "chown root:{{ group | shquote }} {{ key_path | shquote }}", "", (CONSOLE,),
           "the key file stays root:root, which el7's cockpit-ws cannot read"),
    Mutant("console.create.sh.j2", "firewall-cmd --quiet {{ layer }} --remove-service={{ service | shquote }}", "",
           (CONSOLE,), "EL9's cockpit service stays open to everyone"),
    Mutant("_rich-rules.create.sh.j2", "firewall-cmd --quiet {{ layer }} --add-rich-rule={{ rule | shquote }}", "",
           (CONSOLE, PAIR), "the allowed networks (the VRRP peer) are never let in"),
    Mutant("console.create.sh.j2", "printf 'root\\n' >> {{ disallowed_users | shquote }}", "", (CONSOLE,),
           "root may log in to the console on el7"),
    Mutant("console.create.sh.j2", 'if [ "$vf_cert_pub" != "$vf_key_pub" ]; then', "if false; then",
           (CONSOLE_CHECKS,), "a certificate that is not its key's is installed"),
    Mutant("_rich-rules.create.sh.j2", "firewall-cmd --quiet {{ layer }} --remove-rich-rule=\"$vf_rule\"", "",
           (CONSOLE_CHECKS, PAIR_CHANGE), "networks dropped from allowFrom (a former VRRP peer) keep their way in"),
    # The rolling change (issue 28).
    Mutant("backend-drain.create.sh.j2", 'vf_cli "set server {{ backend }}/$vf_server state maint" >/dev/null', "",
           (ROLLED,), "a drained server is changed while haproxy may still send it sticky clients"),
    Mutant("backend-ready.create.sh.j2", 'vf_cli "set server {{ backend }}/$vf_server state ready" >/dev/null', "",
           (ROLLED,), "a rolled server stays in maintenance for good"),
    Mutant("backend-ready.create.sh.j2", 'until [ "$vf_now" = UP ]; do', "until true; do", (ROLL_STUCK,),
           "the next server goes down before this one is back: a dead server does not stop the roll"),
    # The balancer pair's VRRP (issue 29).
    Mutant("haproxy-vrrp.create.sh.j2", "sysctl -q -w {{ (key ~ \"=\" ~ value) | shquote }}", "", (PAIR,),
           "the backup's haproxy cannot bind the virtual address until a reboot"),
    Mutant("haproxy-vrrp.create.sh.j2", "systemctl reload keepalived", "systemctl restart keepalived", (PAIR_CHANGE,),
           "a configuration change hands the address to the peer and back"),
    Mutant("haproxy-vrrp.delete.sh.j2", "cp -p \"$vf_records/keepalived.conf.orig\" {{ conf | shquote }}", "",
           (PAIR_CHANGE,), "delete leaves the node without the keepalived.conf it had"),
    Mutant("haproxy-vrrp.delete.sh.j2", "sysctl -q -w \"{{ key }}=$(cat \"$vf_records/sysctl.{{ key }}\")\"", "",
           (PAIR,), "delete leaves ip_nonlocal_bind on"),
    Mutant("console.delete.sh.j2", "firewall-cmd --quiet {{ layer }} --add-service={{ service | shquote }}", "",
           (CONSOLE,), "delete does not give EL9's default zone its cockpit service back"),
    Mutant("console.delete.sh.j2", 'rm -rf "$vf_records"', "", (CONSOLE,), "delete leaves its records behind"),
    Mutant("_frame.sh.j2", "set -Eeuo pipefail", "set -euo pipefail", (HOSTS, MID_STEP),
           "the ERR trap does not report a command failing inside a function"),
    Mutant("_frame.sh.j2", 'elif [ "$vf_changed" = 1 ]; then echo "virtfleet: $vf_step: changed"; '
           'else echo "virtfleet: $vf_step: unchanged"; fi',
           'else echo "virtfleet: $vf_step: unchanged"; fi', (HOSTS,), "every run reports unchanged"),
    # Check mode (make drift): a check that acts, or that hides what it would do.
    Mutant("_frame.sh.j2", 'if [ "$vf_check" = 0 ]; then return 0; fi', "return 0", (HOSTS, DRIFT_HOST),
           "a check changes the machine instead of reporting what it would change"),
    Mutant("_frame.sh.j2", 'vf_drift=$((vf_drift + 1))', "", (HOSTS, DRIFT_HOST),
           "a check prints what it would do but says in sync"),
    Mutant("_frame.sh.j2", 'exec 9>/run/lock/virtfleet.lock', 'exec 9</run/lock/virtfleet.lock', (HOSTS,),
           "a step no longer creates the host lock file it waits on"),
    Mutant("role.create.sh.j2", 'printf \'%s\\n\' "${missing[@]}" >> "$vf_record"', "", (HOSTS,),
           "packages installed but not recorded: delete leaves them behind"),
    Mutant("role.create.sh.j2", '{{ pm }} -y -q install "${sources[@]}"', '{{ pm }} -y -q install "${missing[@]}"',
           (HOSTS,), "installs by name where the role gives a URL"),
    Mutant("role.create.sh.j2", "systemctl enable --now --quiet {{ service | shquote }}",
           "systemctl enable --quiet {{ service | shquote }}", (HOSTS,), "services enabled but not started"),
    Mutant("role.create.sh.j2", "exit 1", "true", (HOSTS, SERVICE), "the role's own check never fails the step"),
    Mutant("role.delete.sh.j2", '{{ pm }} -y -q remove "${vf_present[@]}"', "", (HOSTS,),
           "delete leaves the role's packages installed"),
    Mutant("role.delete.sh.j2", "vf_remove_file {{ f.path | shquote }}", "", (HOSTS,),
           "delete leaves the role's repository files"),
    Mutant("firewall.create.sh.j2", "firewall-cmd --quiet --permanent --add-port={{ port | shquote }}",
           "firewall-cmd --quiet --add-port={{ port | shquote }}", (HOSTS,), "ports open until the next reload only"),
    Mutant("firewall.delete.sh.j2", "firewall-cmd --quiet --permanent --remove-port={{ port | shquote }}", "",
           (HOSTS,), "delete leaves the permanent ports open"),
    Mutant("selinux.create.sh.j2", 'sed -i "s/^SELINUX=.*/SELINUX=$vf_want/" "$vf_conf"',
           'sed -i "s/^SELINUX=.*/SELINUX=enforcing/" "$vf_conf"', (HOSTS,), "the configured mode is ignored"),
    Mutant("hostname.create.sh.j2", 'hostnamectl set-hostname "$vf_want"', 'hostnamectl set-hostname "${vf_want%%.*}"',
           (HOSTS,), "the short name instead of the FQDN"),
    Mutant("hosts-file.create.sh.j2", "{{ address }}  {{ fqdn }}  {{ short }}", "{{ address }}  {{ fqdn }}",
           (HOSTS,), "/etc/hosts without the short names"),
    Mutant("hosts-file.delete.sh.j2", "sed -i '/^# BEGIN virtfleet$/,/^# END virtfleet$/d' /etc/hosts", "",
           (HOSTS,), "delete leaves the /etc/hosts block"),
    Mutant("sysctl.create.sh.j2", "sysctl -q -w {{ (key ~ \"=\" ~ value) | shquote }}", "", (HOSTS,),
           "the persisted value is not applied live"),
    Mutant("preflight.create.sh.j2", "if ! grep -Ewq 'vmx|svm' /proc/cpuinfo; then",
           "if ! grep -Ewq 'vmx|svm' /proc/cpuinfo 2>/dev/null && false; then", (HOSTS, PREFLIGHT),
           "missing VT flags never reported"),
    Mutant("preflight.create.sh.j2", 'if [ "$vf_free_kib" -lt {{ gib * 1024 * 1024 }} ]; then',
           'if [ "$vf_free_kib" -gt {{ gib * 1024 * 1024 }} ]; then', (HOSTS,), "the disk check is inverted"),
    Mutant("boot.create.sh.j2", ": > /run/virtfleet/reboot-scheduled", "", (HOSTS, REBOOT),
           "every run schedules another reboot"),
    Mutant("boot.delete.sh.j2", 'grubby --set-default-index="$vf_index"', "", (HOSTS,),
           "delete leaves the new kernel as the default boot entry"),
    Mutant("_boot-xen.sh.j2", "--add-multiboot=/boot/xen.gz --mbargs={{ dom0_args | shquote }} --make-default",
           "--add-multiboot=/boot/xen.gz --mbargs={{ dom0_args | shquote }}", (HOSTS,),
           "the dom0 entry is added but not made the default"),
    Mutant("kvm-power.create.sh.j2", 'virsh resume "$vf_domain" >/dev/null; vf_mark_changed "$vf_domain resumed"',
           'virsh start "$vf_domain" >/dev/null; vf_mark_changed "$vf_domain resumed"', (POWER,),
           "a paused guest is started instead of resumed"),
    Mutant("kvm-power.create.sh.j2", '[ "$(vf_state)" = "shut off" ] || virsh destroy "$vf_domain" >/dev/null', "",
           (POWER,), "a guest that ignores ACPI is left running"),
    Mutant("kvm-power.create.sh.j2", 'virsh start "$vf_domain" >/dev/null && virsh suspend "$vf_domain" >/dev/null',
           'virsh start "$vf_domain" >/dev/null', (POWER,), "paused target from shut off ends running"),
    Mutant("kvm-power.create.sh.j2", 'virsh define "$vf_xml" >/dev/null', "", (POWER,),
           "an installed guest keeps booting the installer"),
    Mutant("kvm-power.delete.sh.j2", """if [ "${vf_now%%$'\\n'*}" = "paused" ]; then""",
           """if [ "${vf_now%%$'\\n'*}" = "running" ]; then""", (POWER,), "delete resumes nothing"),
    # Guests and the balancer (the remote guest lifecycle, issues 12-14, and the HAProxy tier).
    Mutant("openvz-container.create.sh.j2",
           '[ "$vf_have" = "$vf_onboot" ] || vf_differs "set onboot of OpenVZ container $vf_ctid to $vf_onboot" '
           '"it is ${vf_have:-unset}" --onboot "$vf_onboot"', "", (OPENVZ,),
           "the container's onboot setting is never applied"),
    Mutant("openvz-container.delete.sh.j2", 'vzctl destroy "$vf_ctid"', "", (OPENVZ,),
           "delete leaves the container and its private area"),
    Mutant("xen-domain.create.sh.j2", 'xl mem-set "$vf_name" "${vf_memory}m"', "", (XEN,),
           "a memory change is reported but not made live"),
    Mutant("xen-domain.create.sh.j2", 'ln -sfn "$vf_cfg" "$vf_auto"', "", (XEN,),
           "autostart never links the domain into /etc/xen/auto"),
    Mutant("virtualbox-vm.create.sh.j2", 'VBoxManage modifyvm "$vf_vm" "${vf_set[@]}"', "", (VBOX,),
           "a memory/CPU change is reported but not made"),
    Mutant("virtualbox-vm.create.sh.j2",
           "--nic1 bridged --bridgeadapter1 {{ bridge | shquote }} --macaddress1 {{ mac | shquote }} \\",
           "--nic1 nat \\", (VBOX,), "the VM on VirtualBox's NAT instead of the host's bridge"),
    Mutant("haproxy-config.create.sh.j2", "systemctl reload haproxy", "systemctl restart haproxy",
           (HAPROXY_CONFIG,), "a config change restarts the balancer (dropping connections) instead of reloading"),
    Mutant("haproxy-config.create.sh.j2",
           'elif [ "$vf_files_changed" = 1 ] && vf_act "reload haproxy" "its configuration changed"; then',
           "elif false; then",
           (HAPROXY_CONFIG,), "a changed config is installed but the running balancer never reloads"),
)  # fmt: skip


def existing(tree: Path, tests: tuple[str, ...]) -> list[str]:
    """The node ids (or files) of ``tests`` that ``tree`` has."""
    found = []
    for test in tests:
        path, _, name = test.partition("::")
        if (tree / path).exists() and (not name or f"def {name}(" in (tree / path).read_text()):
            found.append(test)
    return found


def apply(path: Path, mutant: Mutant) -> str | None:
    """Mutate the first line whose stripped text is ``mutant.line``; the original text, or None."""
    original = path.read_text()
    lines = original.splitlines(keepends=True)
    for n, line in enumerate(lines):
        if line.strip() == mutant.line:
            indent = line[: len(line) - len(line.lstrip())]
            lines[n] = f"{indent}{mutant.bug}\n" if mutant.bug else ""
            path.write_text("".join(lines))
            return original
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--only", help="comma-separated mutant numbers (1-based)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant")
    args = parser.parse_args(argv)
    chosen = [int(n) for n in args.only.split(",")] if args.only else range(1, len(MUTANTS) + 1)
    outcome: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="vf-mutate-") as tmp:
        copy = Path(tmp) / "tree"
        shutil.copytree(args.root, copy, ignore=IGNORE, symlinks=True)
        suites = sorted({t for n in chosen for t in existing(copy, MUTANTS[n - 1].tests)})
        baseline = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *suites],
            cwd=copy, capture_output=True, text=True, timeout=args.timeout, check=False,
        )  # fmt: skip
        if baseline.returncode != 0:
            print(baseline.stdout[-3000:], baseline.stderr[-2000:])
            print(f"the unmutated tree fails {' '.join(suites)}: no mutant can be judged")
            return 1
        print(f"unmutated tree: {' '.join(suites)} pass", flush=True)
        for n in chosen:
            mutant = MUTANTS[n - 1]
            path = copy / "templates" / "steps" / mutant.template
            tests = existing(copy, mutant.tests)
            original = apply(path, mutant)
            if original is None:
                outcome[n] = "not applicable"
            elif not tests:
                path.write_text(original)
                outcome[n] = "survived (no test of this tree is meant to catch it)"
            else:
                started = time.monotonic()
                try:
                    proc = subprocess.run(
                        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                        cwd=copy, capture_output=True, text=True, timeout=args.timeout, check=False,
                    )  # fmt: skip
                    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED ")]
                    outcome[n] = f"killed by {failed[0][7:110]}" if proc.returncode == 1 and failed else (
                        "survived" if proc.returncode == 0 else f"error (pytest exit {proc.returncode})")  # fmt: skip
                except subprocess.TimeoutExpired:
                    outcome[n] = "killed (timeout)"
                finally:
                    path.write_text(original)
                outcome[n] += f" in {time.monotonic() - started:.0f} s"
            print(f"{n:>2} {mutant.template}: {mutant.why}: {outcome[n]}", flush=True)
    applied = {n: o for n, o in outcome.items() if not o.startswith("not applicable")}
    killed = [n for n, o in applied.items() if o.startswith("killed")]
    survivors = [n for n, o in applied.items() if o.startswith("survived")]
    print("\nsurvivors:" if survivors else "\nsurvivors: none")
    for n in survivors:
        m = MUTANTS[n - 1]
        print(f"  {n} {m.template}: {m.line!r} -> {m.bug!r} ({m.why})")
    score = 100 * len(killed) / len(applied) if applied else 0.0
    print(f"template mutation score: {len(killed)}/{len(applied)} killed ({score:.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

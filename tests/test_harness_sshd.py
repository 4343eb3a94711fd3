"""The loopback sshd harness and the EL tool fakes, proven before any remote step relies on them.

If these pass, a failing step test is about the step's script, not about the harness: commands
arrive as one string in the remote login shell, writes land in a throwaway view and never on this
machine, uploads are real SFTP, the host key is really pinned, and the fakes (``tests/fakes``:
yum/dnf, rpm, systemctl, SELinux tools, firewall-cmd, hostnamectl, grubby, nmcli, virsh — stand-ins
because EL7/EL9 hosts cannot run here) keep state and answer with the real tools' exit codes.
"""

from __future__ import annotations

import os
import secrets
import shlex
import socket
import subprocess
from pathlib import Path

import pytest
from support.el_repos import role_repos_command
from support.sshd import FAKES_BIN, LoopbackSshd, loopback_sshd_fixture
from support.tools import require_tool

pytestmark = pytest.mark.real

# A pristine view per test: a start costs ~0.3 s and no test sees another's state.
sshd = loopback_sshd_fixture(scope="function")


def ok(host: LoopbackSshd, cmd: str) -> str:
    """stdout of a command that must succeed."""
    return host.run(cmd, check=True).stdout


# -- the harness ---------------------------------------------------------------------------------


def test_command_arrives_as_one_string_with_the_fakes_first_on_path(sshd: LoopbackSshd) -> None:
    out = ok(sshd, """printf '%s|' "a b" 'c;d' $((6 * 7)); echo; echo "$PATH"; command -v yum; id -u""")
    quoted, path, yum, uid = out.splitlines()
    assert quoted == "a b|c;d|42|"
    assert path.split(":")[0] == str(FAKES_BIN)
    assert path.endswith(":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    assert yum == f"{FAKES_BIN}/yum"
    assert uid == "0"


def test_writes_land_in_the_throwaway_view_only(sshd: LoopbackSshd) -> None:
    token = secrets.token_hex(8)
    paths = [
        "/etc/virtfleet-probe",
        "/var/lib/virtfleet-probe/state",
        "/boot/virtfleet-probe",
        "/root/probe",
        "/usr/local/virtfleet-probe",
        "/tmp/virtfleet-probe",
        "/run/virtfleet-probe",
    ]
    ok(sshd, " && ".join(f"mkdir -p $(dirname {p}) && echo {token} > {p}" for p in paths))
    assert sshd.read(paths[0]) == f"{token}\n"
    assert [r.stdout for r in sshd.run_each([f"cat {p}" for p in paths])] == [f"{token}\n"] * len(paths)
    for path in paths:
        assert not os.path.exists(path), f"{path} reached the real machine"
    assert sshd.exists("/run/virtfleet-throwaway-view")
    assert not os.path.exists("/run/virtfleet-throwaway-view")
    assert ok(sshd, "stat -c %a /root /tmp").split() == ["700", "1777"]


def test_upload_is_sftp_with_parents_and_mode(sshd: LoopbackSshd) -> None:
    sshd.upload(b"KEY=value\n", "/etc/virtfleet/a dir/probe.conf", mode=0o600)
    sshd.upload("#!/bin/sh\necho ran\n", "/usr/local/sbin/vf-probe", mode=0o755)
    assert sshd.read("/etc/virtfleet/a dir/probe.conf") == "KEY=value\n"
    assert ok(sshd, "stat -c %a '/etc/virtfleet/a dir/probe.conf' /usr/local/sbin/vf-probe").split() == ["600", "755"]
    assert ok(sshd, "vf-probe") == "ran\n"
    assert "internal-sftp" in (sshd.workdir / "sshd_config").read_text()
    assert not os.path.exists("/etc/virtfleet/a dir/probe.conf")


def test_host_key_is_pinned(sshd: LoopbackSshd, tmp_path: Path) -> None:
    assert sshd.host_public_key.startswith("ssh-ed25519 AAAA")
    assert sshd.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert sshd.connection()["port"] == sshd.port
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other_key = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"[{sshd.host}]:{sshd.port} {other_key}\n")
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    for known_hosts in (wrong, empty):
        proc = sshd.run("true", known_hosts=known_hosts)
        assert proc.returncode == 255
        assert "Host key verification failed" in proc.stderr
    assert sshd.run("true").returncode == 0


def test_startup_failure_reports_sshd_stderr() -> None:
    class BrokenConfig(LoopbackSshd):
        def _write_config(self) -> None:
            super()._write_config()
            with (self.workdir / "sshd_config").open("a") as config:
                config.write("NoSuchOption yes\n")

    broken = BrokenConfig(startup_timeout=5)
    with pytest.raises(RuntimeError, match="NoSuchOption"):
        broken.start()
    assert broken._dir is None  # the tmp dir with the keys is gone


def test_stop_leaves_no_process_behind() -> None:
    marker = f"vfh-leftover-{secrets.token_hex(6)}"
    with LoopbackSshd() as host:
        ok(host, f"setsid bash -c 'exec -a {marker} sleep 300' </dev/null >/dev/null 2>&1 &")
        assert marker in ok(host, "ps -eo args")
    leftovers = [p for p in Path("/proc").glob("[0-9]*/cmdline") if marker.encode() in _read(p)]
    assert leftovers == []


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended while we looked
        return b""


def test_network_namespace_mode() -> None:
    require_tool("ip")
    netns = f"vfh-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        with LoopbackSshd(netns=netns) as host:
            assert host.port == 22
            links = ok(host, "ip -o link show").splitlines()
            assert len(links) == 1 and ": lo:" in links[0] and "UP" in links[0]
            assert ok(host, "readlink /proc/self/ns/net").strip() != os.readlink("/proc/self/ns/net")
            host.upload("in the namespace\n", "/etc/virtfleet/netns-probe")
            assert host.read("/etc/virtfleet/netns-probe") == "in the namespace\n"
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)


def test_fakes_refuse_to_run_outside_the_view() -> None:
    proc = subprocess.run([str(FAKES_BIN / "yum"), "install", "-y", "httpd"], capture_output=True, text=True)
    assert proc.returncode == 126
    assert "refuses to run outside a LoopbackSshd throwaway view" in proc.stderr
    assert not Path("/var/lib/virtfleet-fakes").exists()


# -- the fakes (several probes per session via run_each: one SSH handshake, same fakes) ---------


def test_yum_and_dnf_install_once_then_say_nothing_to_do(sshd: LoopbackSshd) -> None:
    first, second, query, dnf, dnf_missing, yum_missing, no_yes, not_installed = sshd.run_each([
        "yum install -y httpd", "yum install -y httpd", "rpm -q httpd", "dnf install -y httpd",
        "dnf install -y does-not-exist-tool", "yum install -y does-not-exist-tool", "yum install haproxy",
        "rpm -q haproxy",
    ])  # fmt: skip
    assert first.returncode == 0 and "Complete!" in first.stdout
    assert second.returncode == 0
    assert "already installed and latest version" in second.stdout and "Nothing to do" in second.stdout
    assert query.returncode == 0 and query.stdout.startswith("httpd-")
    assert dnf.returncode == 0 and "Nothing to do." in dnf.stdout
    assert dnf_missing.returncode == 1
    assert "Error: Unable to find a match: does-not-exist-tool" in dnf_missing.stderr
    assert yum_missing.returncode == 1 and "No package does-not-exist-tool available." in yum_missing.stderr
    assert no_yes.returncode == 1 and "Is this ok" in no_yes.stdout  # no -y, no terminal: aborted
    assert not_installed.returncode == 1


def test_kernel_packages_bring_boot_files_and_a_default_entry(sshd: LoopbackSshd) -> None:
    # Their repositories exist for EL7 only: the packages install as on an EL7 host.
    el7 = "echo 'CentOS Linux release 7.9.2009 (Core)' > /etc/redhat-release"
    repos = f"{role_repos_command('openvz', 'el7')} && {role_repos_command('xen', 'el7')}"
    install, vz, default, xen, bad = sshd.run_each([
        f"{el7} && {repos} && yum install -y -q vzkernel xen; vf=$?; rm /etc/redhat-release; exit $vf",
        "find /boot -maxdepth 1 -name 'vmlinuz-*vz7*'", "grubby --default-kernel",
        "readlink /boot/xen.gz", "grubby --set-default=/boot/vmlinuz-nope",
    ])  # fmt: skip
    assert install.returncode == 0 and install.stdout == ""  # -q
    assert vz.stdout.startswith("/boot/vmlinuz-3.10.0-")
    assert default.stdout == vz.stdout
    assert xen.stdout.startswith("xen-4.")
    assert bad.returncode == 1 and "is incorrect" in bad.stderr


def test_rpm_exit_status_counts_missing_packages(sshd: LoopbackSshd) -> None:
    one, two, quiet, bad_option = sshd.run_each(
        ["rpm -q openssh-server nope-a", "rpm -q nope-a nope-b", "rpm -q --quiet openssh-server", "rpm --frobnicate"]
    )
    assert one.returncode == 1 and "package nope-a is not installed" in one.stdout
    assert two.returncode == 2
    assert (quiet.returncode, quiet.stdout) == (0, "")
    assert bad_option.returncode == 1


def test_systemctl_units_and_exit_codes(sshd: LoopbackSshd) -> None:
    unknown, status_unknown, base, enable, enabled, stop, inactive, status_inactive, mask, masked, verb = (
        sshd.run_each([
            "systemctl start httpd", "systemctl status httpd", "systemctl is-active sshd firewalld",
            "yum install -y -q httpd && systemctl enable --now httpd",
            "systemctl is-active httpd; systemctl is-enabled httpd",
            "systemctl stop httpd", "systemctl is-active httpd", "systemctl status httpd", "systemctl mask httpd",
            "systemctl start httpd", "systemctl frobnicate httpd",
        ])
    )  # fmt: skip
    assert unknown.returncode == 5
    assert unknown.stderr == "Failed to start httpd.service: Unit httpd.service not found.\n"
    assert status_unknown.returncode == 4
    assert base.stdout == "active\nactive\n"
    assert enable.returncode == 0 and "Created symlink" in enable.stderr
    assert enabled.stdout == "active\nenabled\n"
    assert stop.returncode == 0
    assert (inactive.returncode, inactive.stdout) == (3, "inactive\n")
    assert status_inactive.returncode == 3
    assert mask.returncode == 0
    assert masked.returncode == 1 and "masked" in masked.stderr
    assert verb.returncode == 1


def test_firewall_cmd_runtime_permanent_and_errors(sshd: LoopbackSshd) -> None:
    query, add, again, yes, permanent, reload, ports, invalid, stop, stopped = sshd.run_each([
        "firewall-cmd --query-port=80/tcp", "firewall-cmd --add-port=80/tcp", "firewall-cmd --add-port=80/tcp",
        "firewall-cmd --query-port=80/tcp", "firewall-cmd --permanent --query-port=80/tcp",
        "firewall-cmd --permanent --add-port=443/tcp && firewall-cmd --reload", "firewall-cmd --list-ports",
        "firewall-cmd --add-port=99999/tcp", "systemctl stop firewalld", "firewall-cmd --state",
    ])  # fmt: skip
    assert (query.returncode, query.stdout) == (1, "no\n")
    assert (add.returncode, add.stdout) == (0, "success\n")
    assert (again.returncode, again.stdout) == (0, "success\n")
    assert again.stderr == "Warning: ALREADY_ENABLED: '80:tcp' already in 'public'\n"
    assert (yes.returncode, yes.stdout) == (0, "yes\n")
    assert permanent.returncode == 1  # runtime and permanent are separate
    assert reload.returncode == 0
    assert ports.stdout == "443/tcp\n"  # --reload dropped the runtime-only 80/tcp
    assert (invalid.returncode, invalid.stderr) == (102, "Error: INVALID_PORT: 99999\n")
    assert stop.returncode == 0
    assert (stopped.returncode, stopped.stdout) == (252, "not running\n")


def test_selinux_mode_follows_config_only_at_boot(sshd: LoopbackSshd) -> None:
    results = sshd.run_each([
        "getenforce", "setenforce 0 && getenforce",
        "sed -i 's/^SELINUX=.*/SELINUX=disabled/' /etc/selinux/config && getenforce",
        "systemctl reboot && getenforce", "setenforce 1", "selinuxenabled",
    ])  # fmt: skip
    boot, permissive, edited, rebooted, refused, enabled = results
    assert boot.stdout == "Enforcing\n"  # the preseeded /etc/selinux/config
    assert permissive.stdout == "Permissive\n"
    assert edited.stdout == "Permissive\n"  # the config counts at the next boot only
    assert rebooted.stdout == "Disabled\n"
    assert (refused.returncode, refused.stderr) == (1, "setenforce: SELinux is disabled\n")
    assert enabled.returncode == 1


def test_selinux_disabled_from_the_first_boot(sshd: LoopbackSshd) -> None:
    sshd.upload("SELINUX=disabled\nSELINUXTYPE=targeted\n", "/etc/selinux/config")
    mode, refused = sshd.run_each(["getenforce", "setenforce 0"])
    assert mode.stdout == "Disabled\n"
    assert refused.returncode == 1


def test_hostnamectl_changes_only_the_view(sshd: LoopbackSshd) -> None:
    real_hostname = socket.gethostname()
    real_file = Path("/etc/hostname").read_text() if Path("/etc/hostname").exists() else None
    changed, names, invalid = sshd.run_each([
        "hostnamectl set-hostname kvm01.example.com", "hostnamectl --static; hostname; cat /etc/hostname",
        "hostnamectl set-hostname 'not valid'",
    ])  # fmt: skip
    assert changed.returncode == 0
    assert names.stdout == "kvm01.example.com\n" * 3
    assert invalid.returncode == 1
    assert socket.gethostname() == real_hostname
    assert (Path("/etc/hostname").read_text() if Path("/etc/hostname").exists() else None) == real_file


def test_grubby_multiboot_entry_becomes_default(sshd: LoopbackSshd) -> None:
    """The Xen boot step's own grubby calls: a dom0 entry for the default kernel, made default."""
    script = f"""set -euo pipefail
echo 'CentOS Linux release 7.9.2009 (Core)' > /etc/redhat-release  # Xen's repository is EL7's
{role_repos_command("xen", "el7")}
yum install -y -q xen
rm /etc/redhat-release
k=$(grubby --default-kernel)
i=$(grubby --info="$k" | sed -n 's/^initrd="\\{{0,1\\}}\\([^"]*\\)"\\{{0,1\\}}$/\\1/p' | head -n 1)
grubby --add-kernel="$k" --initrd="$i" --copy-default --title="Xen dom0" \\
  --add-multiboot=/boot/xen.gz --mbargs="dom0_mem=2048M" --make-default
echo "$k"; echo "$i"
"""
    setup, default, bad = sshd.run_each([script, "grubby --default-title; grubby --default-kernel", "grubby --bogus"])
    kernel, initrd = setup.stdout.split()
    assert initrd.startswith("/boot/initramfs-")
    assert default.stdout == f"Xen dom0\n{kernel}\n"
    assert bad.returncode == 1


def test_nmcli_bridge_profiles(sshd: LoopbackSshd) -> None:
    listed = "nmcli -t -f NAME,TYPE,DEVICE connection show"
    absent, add, port, keyfile, before, up, after, address, delete, again, invalid, leftover = sshd.run_each([
        "nmcli connection show br0",
        "nmcli connection add type bridge ifname br0 con-name br0 ipv4.method manual ipv4.addresses 192.168.10.2/24"
        " ipv4.gateway 192.168.10.1 ipv4.dns 192.168.10.1 bridge.stp no",
        "nmcli connection add type bridge-slave ifname eth0 master br0",
        "cat /etc/NetworkManager/system-connections/br0.nmconnection", listed,
        "nmcli connection up bridge-slave-eth0", listed, "nmcli -g ipv4.addresses connection show br0",
        "nmcli connection delete br0", "nmcli connection delete br0",
        "nmcli connection add type bridge ifname br1 ipv4.method manual",
        "test -e /etc/NetworkManager/system-connections/bridge-br1.nmconnection",
    ])  # fmt: skip
    assert (absent.returncode, absent.stderr) == (10, "Error: br0 - no such connection profile.\n")
    assert add.returncode == 0 and port.returncode == 0
    assert "address1=192.168.10.2/24" in keyfile.stdout and "type=bridge" in keyfile.stdout
    assert before.stdout == "br0:bridge:\nbridge-slave-eth0:802-3-ethernet:\n"
    assert up.returncode == 0
    assert after.stdout == "br0:bridge:br0\nbridge-slave-eth0:802-3-ethernet:eth0\n"  # the port brings its bridge
    assert address.stdout == "192.168.10.2/24\n"
    assert delete.returncode == 0 and again.returncode == 10
    assert invalid.returncode != 0 and "cannot be empty for 'method=manual'" in invalid.stderr
    assert leftover.returncode == 1


DOMAIN_XML = "<domain type='kvm'><name>web1</name><memory unit='MiB'>1024</memory><vcpu>1</vcpu></domain>\n"


def test_virsh_power_states_follow_the_qemu_driver(sshd: LoopbackSshd) -> None:
    """Suspending a paused guest succeeds silently in libvirt's QEMU driver (qemuDomainSuspend only
    stops CPUs that run); resuming a running guest is what fails."""
    sshd.upload(DOMAIN_XML, "/root/web1.xml")
    results = sshd.run_each([
        "virsh list --all",
        "yum install -y -q libvirt && systemctl enable --now libvirtd && virsh define /root/web1.xml",
        "virsh domstate web1", "virsh suspend web1", "virsh start web1", "virsh suspend web1", "virsh suspend web1",
        "virsh domstate web1", "virsh resume web1", "virsh resume web1", "virsh domstate nope",
    ])  # fmt: skip
    no_daemon, define, off, suspend_off, start, suspend, suspend_again, paused, resume, resume_again, missing = results
    assert no_daemon.returncode == 1 and "failed to connect to the hypervisor" in no_daemon.stderr
    assert define.stdout == "Domain 'web1' defined from /root/web1.xml\n\n"
    assert off.stdout == "shut off\n\n"
    assert suspend_off.returncode == 1
    assert suspend_off.stderr == (
        "error: Failed to suspend domain 'web1'\nerror: Requested operation is not valid: domain is not running\n"
    )
    assert start.stdout == "Domain 'web1' started\n\n"
    assert (suspend.returncode, suspend_again.returncode) == (0, 0)
    assert suspend_again.stdout == "Domain 'web1' suspended\n\n"
    assert paused.stdout == "paused\n\n"
    assert resume.stdout == "Domain 'web1' resumed\n\n"
    assert resume_again.returncode == 1 and "domain is already running" in resume_again.stderr
    assert (missing.returncode, missing.stderr) == (1, "error: failed to get domain 'nope'\n")


def test_docker_answers_only_while_its_engine_runs(sshd: LoopbackSshd) -> None:
    down, install, up, unknown = sshd.run_each([
        "docker version --format '{{.Server.Version}}'",
        f"{role_repos_command('docker', 'el9')} && dnf install -y -q docker-ce && systemctl enable --now docker",
        "docker version --format '{{.Server.Version}}'",
        "docker run hello-world",
    ])  # fmt: skip
    assert down.returncode == 1 and "Cannot connect to the Docker daemon" in down.stderr
    assert install.returncode == 0, install.stderr
    assert (up.returncode, up.stdout) == (0, "26.1.3\n")
    assert unknown.returncode == 1 and "is not a docker command" in unknown.stderr


def test_packages_come_only_from_enabled_repositories(sshd: LoopbackSshd) -> None:
    """As dnf: a package no enabled repository provides is "No match"; a repository the catalogue
    does not know (a misspelt baseurl) breaks metadata loading; a release package enables its
    repository (and takes it away on removal); an unknown rpm URL is a 404."""
    typo = "[docker-ce-stable]\nbaseurl=https://download.docker.com/linux/centos/$releasever/$basearch/stabel\n"
    no_repo, bad_repo, fixed, epel, dkms, gone, url = sshd.run_each([
        "dnf -y install docker-ce",
        f"mkdir -p /etc/yum.repos.d && printf %s {shlex.quote(typo)} > /etc/yum.repos.d/docker-ce.repo"
        " && dnf -y install docker-ce",
        f"{role_repos_command('docker', 'el9')} && dnf -y -q install docker-ce && rpm -q --qf '%{{NAME}}\\n' docker-ce",
        "dnf -y -q install epel-release && grep -c '^\\[epel\\]' /etc/yum.repos.d/epel.repo",
        "dnf -y -q install dkms && dnf -y -q remove epel-release && ls /etc/yum.repos.d",
        "dnf -y install nginx",
        "dnf -y install https://example.org/nope-1.0-1.el9.x86_64.rpm",
    ])  # fmt: skip
    assert no_repo.returncode == 1 and "Error: Unable to find a match: docker-ce" in no_repo.stderr
    assert bad_repo.returncode == 1
    assert "Failed to download metadata for repo 'docker-ce-stable'" in bad_repo.stderr, bad_repo.stderr
    assert (fixed.returncode, fixed.stdout) == (0, "docker-ce\n"), fixed.stderr
    assert (epel.returncode, epel.stdout) == (0, "1\n"), epel.stderr
    assert dkms.returncode == 0 and dkms.stdout == "docker-ce.repo\n", dkms
    assert gone.returncode == 1 and "No match for argument: nginx" in gone.stderr
    assert url.returncode == 1 and "Curl error (22)" in url.stderr

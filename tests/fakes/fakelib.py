"""Plumbing shared by the EL tool fakes in ``bin/``: state files, the throwaway-view guard, the
package database (what ``yum``/``dnf``/``rpm`` record and which units and boot files a package
brings) and the EL7/EL9 dialect switch.

State lives in JSON files under ``/var/lib/virtfleet-fakes/``; every fake holds one exclusive lock
for its whole run, so parallel remote steps see consistent state. The fakes only ever run inside a
``LoopbackSshd`` view (``tests/support/sshd.py``): they refuse to run where its marker is missing,
so they can never write this machine's real ``/etc`` or ``/boot``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import catalogue

STATE_DIR = Path("/var/lib/virtfleet-fakes")
THROWAWAY_MARKER = Path("/run/virtfleet-throwaway-view")
VENDOR_UNIT_DIR = Path("/usr/lib/systemd/system")
ADMIN_UNIT_DIRS = (Path("/etc/systemd/system"), Path("/run/systemd/system"))
BASE_UNITS = ("firewalld", "NetworkManager", "rsyslog", "sshd", "chronyd")


class Exit(Exception):
    """End the fake with ``code``, printing ``message`` to stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code, self.message = code, message


def fail(message: str, code: int = 1) -> NoReturn:
    raise Exit(code, message)


def err(message: str) -> None:
    print(message, file=sys.stderr)


def run(main: Callable[[str, list[str]], int]) -> NoReturn:
    """Entry point of every fake: guard, lock, seed a minimal EL install, call ``main(prog, args)``."""
    prog = Path(sys.argv[0]).name
    if not THROWAWAY_MARKER.exists():
        err(
            f"{prog}: virtfleet fake refuses to run outside a LoopbackSshd throwaway view "
            f"({THROWAWAY_MARKER} is missing)"
        )
        sys.exit(126)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    injected_hold(prog, sys.argv[1:])  # outside the lock: the host's other commands go on meanwhile
    with open(STATE_DIR / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            ensure_minimal_install()
            ensure_booted()
            injected_failure(prog, sys.argv[1:])
            code = main(prog, sys.argv[1:])
        except Exit as exc:
            sys.stdout.flush()
            if exc.message:
                err(exc.message)
            code = exc.code
    sys.stdout.flush()
    sys.exit(code)


# -- faults a test injects ----------------------------------------------------------------------
# ``faults.json`` in the state dir (a test uploads it): {"fail": {"PROG WORD": "stderr text"},
# "fail_start": [units whose start job fails], "die_after_start": [units that start, then die],
# "ignore_acpi": [libvirt domains that ignore "virsh shutdown"], "hold": {"PROG WORD": "GATE"}}.


def faults() -> dict:
    return load("faults", {})


def injected_failure(prog: str, argv: list[str]) -> None:
    """Fail ``PROG WORD`` (WORD: the first argument that is not an option) with the text the test
    chose and exit status 1, before the fake changes anything: a command that breaks mid-step."""
    word = next((a for a in argv if not a.startswith("-")), "")
    message = faults().get("fail", {}).get(f"{prog} {word}".strip())
    if message is not None:
        fail(message)


HOLD_LIMIT_S = 600


def injected_hold(prog: str, argv: list[str]) -> None:
    """Hold ``PROG WORD`` before it changes anything until the file GATE exists (a command that takes
    its time, half-way through a step): ``GATE.held`` appears when it starts waiting. Bounded: after
    HOLD_LIMIT_S it fails instead."""
    word = next((a for a in argv if not a.startswith("-")), "")
    gate = faults().get("hold", {}).get(f"{prog} {word}".strip())
    if gate is None:
        return
    Path(f"{gate}.held").write_text(f"{os.getpid()}\n")
    for _ in range(HOLD_LIMIT_S * 10):
        if Path(gate).exists():
            return
        time.sleep(0.1)
    err(f"{prog} {word}: held for {HOLD_LIMIT_S}s and the gate {gate} never opened")
    sys.exit(1)


def load(name: str, default: Any) -> Any:
    path = STATE_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else default


def save(name: str, data: Any) -> None:
    tmp = STATE_DIR / f".{name}.json.tmp"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, STATE_DIR / f"{name}.json")


def dist() -> str:
    """``el7`` or ``el9``: from the view's /etc/redhat-release (a test uploads one), else ``el9``."""
    release = Path("/etc/redhat-release")
    if release.exists() and re.search(r"release 7\b|release 7\.", release.read_text()):
        return "el7"
    return "el9"


def write_file(path: str | Path, text: str, mode: int = 0o644) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


# -- package database -------------------------------------------------------------------------

PACKAGE_UNITS = {
    "openssh-server": ["sshd.service"], "chrony": ["chronyd.service"],
    "firewalld": ["firewalld.service"], "NetworkManager": ["NetworkManager.service"],
    "rsyslog": ["rsyslog.service"], "cronie": ["crond.service"], "tuned": ["tuned.service"],
    "libvirt": ["libvirtd.service"], "libvirt-daemon": ["libvirtd.service"],
    "libvirt-daemon-kvm": ["libvirtd.service"], "qemu-guest-agent": ["qemu-guest-agent.service"],
    "docker-ce": ["docker.service", "docker.socket"], "docker": ["docker.service"],
    "containerd.io": ["containerd.service"], "haproxy": ["haproxy.service"],
    "httpd": ["httpd.service"], "nginx": ["nginx.service"], "keepalived": ["keepalived.service"],
    "network-scripts": ["network.service"], "vzctl": ["vz.service"],
    "prl-disp-service": ["prl-disp.service"], "cockpit-ws": ["cockpit.socket", "cockpit.service"],
    "xen": ["xencommons.service", "xendomains.service", "xenconsoled.service"],
    "xen-runtime": ["xencommons.service", "xendomains.service", "xenconsoled.service"],
}  # fmt: skip
VIRTUALBOX_UNITS = ["vboxdrv.service", "vboxautostart-service.service", "vboxweb-service.service"]
BASE_KERNEL = {"el7": ("3.10.0", "1160.el7"), "el9": ("5.14.0", "362.8.1.el9_3")}
# name -> (version, release, vmlinuz file name template); {v}/{r} are filled per install.
KERNEL_IMAGES = {
    "kernel": (None, None, "vmlinuz-{v}-{r}.x86_64"),
    "kernel-core": (None, None, "vmlinuz-{v}-{r}.x86_64"),
    "kernel-ml": ("6.6.8", "1.{dist}.elrepo", "vmlinuz-{v}-{r}.x86_64"),
    "kernel-lt": ("5.4.265", "1.{dist}.elrepo", "vmlinuz-{v}-{r}.x86_64"),
    "vzkernel": ("3.10.0", "1160.80.1.vz7.191.4", "vmlinuz-{v}-{r}"),
    "kernel-xen": ("2.6.18", "419.el5", "vmlinuz-{v}-{r}xen"),
}
XEN_HYPERVISORS = {"xen", "xen-hypervisor"}
BASE_PACKAGES = {
    "el7": ["bash", "coreutils", "systemd", "rpm", "yum", "kernel", "grubby", "firewalld",
            "NetworkManager", "rsyslog", "openssh-server", "chrony", "initscripts", "util-linux",
            "iproute", "selinux-policy-targeted", "policycoreutils"],
    "el9": ["bash", "coreutils", "systemd", "rpm", "dnf", "kernel", "kernel-core", "grubby",
            "firewalld", "NetworkManager", "rsyslog", "openssh-server", "chrony", "util-linux",
            "iproute", "selinux-policy-targeted", "policycoreutils"],
}  # fmt: skip


# Files a package ships besides units and boot files, as %config(noreplace): installing over an
# existing different file leaves it and writes FILE.rpmnew; removing a file the admin changed
# keeps it as FILE.rpmsave (rpm's own rules). A path ending in "/" is a directory it owns (made at
# install, removed at erase when empty). A ``Ghost`` text is a %ghost file a scriptlet writes.
# A key NAME holds what the package ships on every family, a key (NAME, FAMILY) what it ships on
# that family only (``package_files``).
EL_HTTPD_CONF = """\
# /etc/httpd/conf/httpd.conf as EL's httpd package ships it, trimmed to its directives.
ServerRoot "/etc/httpd"
Listen 80
Include conf.modules.d/*.conf
User apache
Group apache
ServerAdmin root@localhost
<Directory />
    AllowOverride none
    Require all denied
</Directory>
DocumentRoot "/var/www/html"
<Directory "/var/www/html">
    Options Indexes FollowSymLinks
    AllowOverride None
    Require all granted
</Directory>
<IfModule dir_module>
    DirectoryIndex index.html
</IfModule>
ErrorLog "logs/error_log"
LogLevel warn
AddDefaultCharset UTF-8
EnableSendfile on
IncludeOptional conf.d/*.conf
"""


class Ghost(str):
    """The text of a %ghost file that the package's %post writes at its (first) install, over
    whatever is there, and that rpm removes at erase whether or not the admin changed it."""


# /etc/pam.d/cockpit as cockpit-ws ships it, trimmed of its comments: cockpit 195 (CentOS 7 extras)
# has no pam_listfile line; cockpit 280-313 (EL 9.2-9.4) checks /etc/cockpit/disallowed-users as
# the last auth line (cockpit 314+, EL 9.5+, moved it to "account required").
_COCKPIT_PAM_AUTH = """\
#%PAM-1.0
auth{sepermit}pam_sepermit.so
auth       substack     password-auth
auth       include      postlogin
auth       optional     pam_ssh_add.so
"""
COCKPIT_PAM_LISTFILE = (
    "auth       required     pam_listfile.so item=user sense=deny file=/etc/cockpit/disallowed-users onerr=succeed"
)
_COCKPIT_PAM_REST = """\
account    required     pam_nologin.so
account    include      password-auth
password   include      password-auth
session    required     pam_selinux.so close
session    required     pam_loginuid.so
session    required     pam_selinux.so open env_params
session    optional     pam_keyinit.so force revoke
session    optional     pam_ssh_add.so
session    include      password-auth
session    include      postlogin
"""
EL7_COCKPIT_PAM = _COCKPIT_PAM_AUTH.format(sepermit="\t   required\t") + _COCKPIT_PAM_REST
EL9_COCKPIT_PAM = (
    _COCKPIT_PAM_AUTH.format(sepermit="       required     ") + COCKPIT_PAM_LISTFILE + "\n" + _COCKPIT_PAM_REST
)
PACKAGE_FILES = {
    "httpd": {"/etc/httpd/conf/httpd.conf": EL_HTTPD_CONF, "/var/www/html/": None, "/var/www/cgi-bin/": None},
    # Release packages ship the .repo file of the repository they enable (catalogue.py).
    **{name: dict([catalogue.release_repo_file(name)]) for name in catalogue.RELEASE_PACKAGES},
    "cockpit-ws": {"/etc/cockpit/ws-certs.d/": None},
    ("cockpit-ws", "el7"): {"/etc/pam.d/cockpit": EL7_COCKPIT_PAM},
    # cockpit 280+: %post writes disallowed-users (root in it on EL9: disallow_root) at the first install.
    ("cockpit-ws", "el9"): {
        "/etc/cockpit/": None,
        "/etc/pam.d/cockpit": EL9_COCKPIT_PAM,
        "/etc/cockpit/disallowed-users": Ghost("# List of users which are not allowed to login to Cockpit\nroot\n"),
    },
}


# System groups a package's %pre adds (keys as in PACKAGE_FILES; ``VirtualBox`` stands for every
# ``VirtualBox-*``). %pre also adds users of the same names; the fakes add none.
PACKAGE_GROUPS = {
    "VirtualBox": ("vboxusers",),
    "cockpit-ws": ("cockpit-ws",),
    ("cockpit-ws", "el9"): ("cockpit-wsinstance",),  # cockpit 200+: per-connection ws instances
}
# Packages whose %post runs ``firewall-cmd --reload --quiet || true`` (cockpit-ws: "firewalld only
# partially picks up changes to its services files without this"): runtime becomes permanent.
POST_FIREWALL_RELOAD = {"cockpit-ws"}


def package_files(name: str, family: str) -> dict[str, str | None]:
    """What package ``name`` ships on ``family`` (PACKAGE_FILES): every family's, then the family's own."""
    return {**PACKAGE_FILES.get(name, {}), **PACKAGE_FILES.get((name, family), {})}


def package_groups(name: str, family: str) -> tuple[str, ...]:
    """The system groups package ``name``'s %pre adds on ``family`` (PACKAGE_GROUPS)."""
    key = "VirtualBox" if name.startswith("VirtualBox-") else name
    return (*PACKAGE_GROUPS.get(key, ()), *PACKAGE_GROUPS.get((key, family), ()))


def units_of(package: str) -> list[str]:
    if package.startswith("VirtualBox-"):
        return VIRTUALBOX_UNITS
    return PACKAGE_UNITS.get(package, [])


def package_record(name: str, version: str | None = None, release: str | None = None) -> dict:
    """What the fake rpm database stores for a package: version, release, arch."""
    d = dist()
    default_v, default_r = "1.0", f"1.{d}"
    if name in ("kernel", "kernel-core"):
        default_v, default_r = BASE_KERNEL[d]
    elif name in KERNEL_IMAGES:
        default_v, default_r = KERNEL_IMAGES[name][0], KERNEL_IMAGES[name][1].format(dist=d)
    elif name in XEN_HYPERVISORS:
        default_v, default_r = "4.12.4", "1.el7"
    return {"version": version or default_v, "release": release or default_r, "arch": "x86_64"}


def nevra(name: str, rec: dict) -> str:
    return f"{name}-{rec['version']}-{rec['release']}.{rec['arch']}"


def boot_files(name: str, rec: dict) -> list[str]:
    """Files under /boot that the package owns (kernel images, initramfs, the Xen hypervisor)."""
    if name in KERNEL_IMAGES:
        image = KERNEL_IMAGES[name][2].format(v=rec["version"], r=rec["release"])
        return [f"/boot/{image}", f"/boot/initramfs-{image.removeprefix('vmlinuz-')}.img"]
    if name in XEN_HYPERVISORS:
        return [f"/boot/xen-{rec['version']}.gz", "/boot/xen.gz"]
    return []


def install_payload(name: str, rec: dict) -> None:
    """What installing the package does besides the rpm database: its groups, files, boot files and
    boot entries, and a %post firewalld reload."""
    family = dist()
    for group in package_groups(name, family):
        # %pre: groupadd -r (the view's /etc/group, an overlay)
        if subprocess.run(["getent", "group", group], capture_output=True, check=False).returncode != 0:
            subprocess.run(["groupadd", "-r", group], check=True)
    for path, text in package_files(name, family).items():
        if text is None:
            Path(path).mkdir(parents=True, exist_ok=True)
        elif isinstance(text, Ghost) or not Path(path).exists():
            write_file(path, text)
        elif Path(path).read_text() != text:
            write_file(f"{path}.rpmnew", text)
            err(f"warning: {path} created as {path}.rpmnew")
    files = boot_files(name, rec)
    for path in files:
        if path == "/boot/xen.gz":
            Path(path).unlink(missing_ok=True)
            Path(path).symlink_to(Path(files[0]).name)
        elif not Path(path).exists():
            write_file(path, f"virtfleet fake payload of {nevra(name, rec)}\n")
    if name in KERNEL_IMAGES:  # new-kernel-pkg/kernel-install: new entry, default (UPDATEDEFAULT=yes)
        add_boot_entry(files[0], files[1], make_default=True)
    if name in POST_FIREWALL_RELOAD and unit_active("firewalld"):
        import firewall_cmd  # here, not at the top: firewall_cmd imports fakelib

        firewall_cmd.post_reload()


def remove_payload(name: str, rec: dict) -> None:
    files = package_files(name, dist())
    for path, text in files.items():
        p = Path(path)
        if text is None:
            continue
        if p.exists() and p.read_text() != text and not isinstance(text, Ghost):
            p.rename(f"{path}.rpmsave")
            err(f"warning: {path} saved as {path}.rpmsave")
        else:
            p.unlink(missing_ok=True)
    for path in sorted((p for p, text in files.items() if text is None), key=len, reverse=True):
        p = Path(path)  # its own directories last, deepest first, each only when empty (rpm's rule)
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    files = boot_files(name, rec)
    for path in files:
        Path(path).unlink(missing_ok=True)
    if name in KERNEL_IMAGES:
        boot = load("grubby", {"entries": [], "default": 0})
        default_kernel = boot["entries"][boot["default"]]["kernel"] if boot["entries"] else None
        boot["entries"] = [e for e in boot["entries"] if e["kernel"] != files[0]]
        kernels = [e["kernel"] for e in boot["entries"]]
        boot["default"] = kernels.index(default_kernel) if default_kernel in kernels else 0
        save("grubby", boot)
    systemd = load("systemd", {"units": {}})
    for unit in units_of(name):  # %preun of packaged services: systemctl --no-reload disable --now
        systemd["units"].pop(unit, None)
    save("systemd", systemd)


def add_boot_entry(
    kernel: str,
    initrd: str,
    *,
    make_default: bool,
    title: str | None = None,
    args: str | None = None,
    multiboot: str | None = None,
    mbargs: str | None = None,
    dedupe: bool = True,
) -> None:
    """Insert a boot entry at index 0 (where grubby and kernel-install put new ones)."""
    boot = load("grubby", {"entries": [], "default": 0})
    if dedupe and any(e["kernel"] == kernel for e in boot["entries"]):
        return
    template = boot["entries"][boot["default"]] if boot["entries"] else _base_entry()
    version = Path(kernel).name.removeprefix("vmlinuz-")
    entry = {
        "kernel": kernel, "initrd": initrd, "root": template["root"],
        "args": template["args"] if args is None else args,
        "title": title or _title(version),
    }  # fmt: skip
    if multiboot:
        entry.update(multiboot=multiboot, mbargs=mbargs or "")
    boot["entries"].insert(0, entry)
    boot["default"] = 0 if make_default else boot["default"] + 1
    save("grubby", boot)


def _title(version: str) -> str:
    return f"CentOS Linux ({version}) 7 (Core)" if dist() == "el7" else f"CentOS Stream ({version}) 9"


def _base_entry() -> dict:
    if dist() == "el7":
        return {
            "root": "/dev/mapper/centos-root",
            "args": "ro crashkernel=auto rd.lvm.lv=centos/root rd.lvm.lv=centos/swap rhgb quiet LANG=en_US.UTF-8",
        }
    return {
        "root": "/dev/mapper/cs-root",
        "args": "ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/cs-swap "
        "rd.lvm.lv=cs/root rd.lvm.lv=cs/swap",
    }


# -- the minimal EL install every view starts from ----------------------------------------------

# What this machine's own packages may have put in the view's /etc (its lower layer) that a minimal
# EL install does not have: Debian's cockpit-ws (its PAM file, /etc/cockpit, its users and groups).
# The seed removes them, so that only the fake EL packages bring them, with EL's contents.
NOT_IN_A_MINIMAL_INSTALL = ("/etc/cockpit", "/etc/pam.d/cockpit")
ACCOUNTS_NOT_IN_A_MINIMAL_INSTALL = ("cockpit-ws", "cockpit-wsinstance")


def remove_this_machines_traces() -> None:
    for path in map(Path, NOT_IN_A_MINIMAL_INSTALL):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for account in ACCOUNTS_NOT_IN_A_MINIMAL_INSTALL:  # the view's /etc/passwd and /etc/group (an overlay)
        for database, delete in (("passwd", "userdel"), ("group", "groupdel")):
            if subprocess.run(["getent", database, account], capture_output=True, check=False).returncode == 0:
                subprocess.run([delete, account], capture_output=True, check=True)


def ensure_minimal_install() -> None:
    """Seed, once per view: base packages (with a kernel in /boot and its boot entry), the base
    services enabled and running, firewalld's default zone, SELinux config, and the directories
    those packages own (yum's repository and NetworkManager's profile directories); what this
    machine's own packages put in /etc that such an install lacks is removed."""
    if (STATE_DIR / "rpmdb.json").exists():
        return
    remove_this_machines_traces()
    d = dist()
    packages = {name: package_record(name) for name in BASE_PACKAGES[d]}
    save("rpmdb", {"packages": packages, "groups": [], "gpg_keys": []})
    vendor = sorted(p.name for p in VENDOR_UNIT_DIR.glob("*")) if VENDOR_UNIT_DIR.is_dir() else []
    units = {f"{u}.service": {"enabled": True, "active": True, "masked": False} for u in BASE_UNITS}
    save("systemd", {"units": units, "preexisting_vendor_units": vendor})
    kernel = boot_files("kernel", packages["kernel"])
    for path in kernel:
        if not Path(path).exists():
            write_file(path, "virtfleet fake payload of the installed kernel\n")
    add_boot_entry(kernel[0], kernel[1], make_default=True)
    services = ["dhcpv6-client", "ssh"] if d == "el7" else ["cockpit", "dhcpv6-client", "ssh"]
    zone = {"ports": [], "services": services}
    save("firewalld", {"default_zone": "public", "runtime": {"public": zone}, "permanent": {"public": zone}})
    for directory in ("/etc/yum.repos.d", "/etc/NetworkManager/system-connections"):
        Path(directory).mkdir(parents=True, exist_ok=True)
    selinux = Path("/etc/selinux/config")
    if not selinux.exists():
        write_file(
            selinux,
            "# This file controls the state of SELinux on the system.\nSELINUX=enforcing\nSELINUXTYPE=targeted\n",
        )


SELINUX_MODES = {"enforcing": "Enforcing", "permissive": "Permissive", "disabled": "Disabled"}


def ensure_booted() -> None:
    """The view's boot, at the first fake call (again after ``systemctl reboot``): SELinux's running
    mode is read from /etc/selinux/config now and kept. Done here rather than by the first
    ``getenforce``, so a query never writes state (a check-mode run must change nothing)."""
    if (STATE_DIR / "selinux.json").exists():
        return
    config = Path("/etc/selinux/config")
    match = re.search(r"^\s*SELINUX\s*=\s*(\w+)", config.read_text() if config.exists() else "", re.M)
    save("selinux", {"mode": SELINUX_MODES.get(match[1].lower(), "Disabled") if match else "Disabled"})


def installed() -> dict[str, dict]:
    return load("rpmdb", {"packages": {}})["packages"]


def unit_name(name: str) -> str:
    return name if re.search(r"\.(service|socket|target|timer|mount|path|slice)$", name) else f"{name}.service"


def unit_known(unit: str) -> bool:
    """Known = a package that ships it is installed, or an admin/new vendor unit file exists.

    Vendor unit files that this Debian machine already had are not EL units and do not count."""
    if any(unit in units_of(pkg) for pkg in installed()):
        return True
    if any((d / unit).exists() for d in ADMIN_UNIT_DIRS):
        return True
    preexisting = load("systemd", {}).get("preexisting_vendor_units", [])
    return (VENDOR_UNIT_DIR / unit).exists() and unit not in preexisting


def unit_active(unit: str) -> bool:
    return load("systemd", {"units": {}})["units"].get(unit_name(unit), {}).get("active", False)

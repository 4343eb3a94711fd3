"""Which repository provides which package, per OS family: what the ``yum``/``dnf`` fake may install.

A real EL host installs a package only from a repository it has enabled. The distribution's own
repositories are always there; every other one comes from a ``.repo`` file under
``/etc/yum.repos.d`` that a role adds (Docker's, Oracle's VirtualBox) or that a "release" package
drops when it is installed (``epel-release``, ``centos-release-xen``, ``virtuozzo-release``). A
repository section whose id or ``baseurl``/``metalink``/``mirrorlist`` is not listed here fails
the way an unreachable repository fails dnf/yum; a package no enabled repository lists is
"No match"/"No package available". The lists are small: the packages the project's roles, steps
and tests use, not the distributions' full contents.
"""

from __future__ import annotations

import configparser
from pathlib import Path

REPO_DIR = Path("/etc/yum.repos.d")

_EL_COMMON = {
    "bash", "coreutils", "systemd", "rpm", "kernel", "kernel-headers", "kernel-devel", "grubby",
    "firewalld", "NetworkManager", "rsyslog", "openssh-server", "chrony", "util-linux", "iproute",
    "selinux-policy-targeted", "policycoreutils", "cronie", "tuned", "qemu-kvm", "libvirt",
    "libvirt-client", "libvirt-daemon", "libvirt-daemon-kvm", "virt-install", "qemu-guest-agent",
    "gcc", "make", "perl", "elfutils-libelf-devel", "httpd", "mod_ssl", "haproxy", "keepalived", "socat",
}  # fmt: skip
# Repositories every host of the family has enabled (no .repo file in the fakes' view): id -> packages.
# Cockpit (the web console): CentOS 7 ships cockpit 195 in extras; EL9 has the base packages in
# BaseOS and the optional pages (cockpit-machines) in AppStream.
_COCKPIT_BASE = {"cockpit", "cockpit-ws", "cockpit-bridge", "cockpit-system"}
BASE_REPOS = {
    "el7": {
        "base": _EL_COMMON
        | {"yum", "initscripts", "qemu-img", "bridge-utils", "policycoreutils-python", "genisoimage"},
        "updates": set(),
        "extras": {"epel-release", "centos-release-xen", *_COCKPIT_BASE, "cockpit-machines"},
    },
    "el9": {
        "baseos": _EL_COMMON | {"dnf", "kernel-core"} | _COCKPIT_BASE,
        "appstream": {"policycoreutils-python-utils", "genisoimage", "cockpit-machines"},
        "extras-common": {"epel-release"},
    },
}
# Repositories a role or a release package adds: id -> (source as written in the .repo file, packages).
ADDED_REPOS = {
    "docker-ce-stable": (
        "https://download.docker.com/linux/centos/$releasever/$basearch/stable",
        {"docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin", "docker-compose-plugin"},
    ),
    "virtualbox": (
        "https://download.virtualbox.org/virtualbox/rpm/el/$releasever/$basearch",
        {"VirtualBox-7.0", "VirtualBox-7.1", "VirtualBox-6.1"},
    ),
    "epel": (
        "https://mirrors.fedoraproject.org/metalink?repo=epel-$releasever&arch=$basearch",
        {"dkms", "nginx", "wrk"},
    ),
    "centos-virt-xen": (
        "http://mirror.centos.org/centos/$releasever/virt/$basearch/xen",
        {"xen", "xen-runtime", "xen-hypervisor", "xen-libs", "libvirt-daemon-xen"},
    ),
    "virtuozzo-os": (
        "https://download.openvz.org/virtuozzo/releases/7.0/x86_64/os/",
        {"vzkernel", "prlctl", "prl-disp-service", "vzctl", "vzpkg", "ploop"},
    ),
}
# Release packages: the .repo file each one ships (rpm payload), enabling one ADDED_REPOS entry.
RELEASE_PACKAGES = {
    "epel-release": ("epel.repo", "epel"),
    "centos-release-xen": ("CentOS-Xen.repo", "centos-virt-xen"),
    "virtuozzo-release": ("virtuozzo.repo", "virtuozzo-os"),
}
# Package files reachable by URL (yum/dnf install URL): the rest answer 404.
RPM_URLS = {
    "https://download.openvz.org/virtuozzo/releases/7.0/x86_64/os/Packages/v/virtuozzo-release-7.0.0-10.vz7.x86_64.rpm",
}


def release_repo_file(package: str) -> tuple[str, str] | None:
    """(path, text) of the .repo file a release package ships, or None."""
    if package not in RELEASE_PACKAGES:
        return None
    file_name, repo_id = RELEASE_PACKAGES[package]
    source = ADDED_REPOS[repo_id][0]
    key = "metalink" if "metalink" in source else "baseurl"
    return str(REPO_DIR / file_name), f"[{repo_id}]\nname={repo_id}\n{key}={source}\nenabled=1\ngpgcheck=1\n"


class RepoError(Exception):
    """A configured repository that dnf/yum cannot load (unknown id or source)."""

    def __init__(self, repo_id: str, source: str) -> None:
        super().__init__(repo_id)
        self.repo_id, self.source = repo_id, source


def enabled_repos(family: str) -> dict[str, set[str]]:
    """id -> packages of every enabled repository; RepoError for one the catalogue does not know."""
    repos = {repo_id: set(packages) for repo_id, packages in BASE_REPOS[family].items()}
    for path in sorted(REPO_DIR.glob("*.repo")) if REPO_DIR.is_dir() else []:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(path.read_text(), source=str(path))
        except configparser.Error as exc:
            raise RepoError(path.name, f"unparsable {path}: {exc}") from None
        for repo_id in parser.sections():
            section = parser[repo_id]
            if section.get("enabled", "1").strip() in ("0", "false", "no"):
                continue
            source = next((section[k].strip() for k in ("baseurl", "metalink", "mirrorlist") if k in section), "")
            known = ADDED_REPOS.get(repo_id)
            if known is None or known[0] != source:
                raise RepoError(repo_id, source)
            repos[repo_id] = set(known[1])
    return repos


def provider(family: str, name: str) -> str | None:
    """The enabled repository that provides package ``name`` (RepoError as ``enabled_repos``)."""
    for repo_id, packages in enabled_repos(family).items():
        if name in packages:
            return repo_id
    return None

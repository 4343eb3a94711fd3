"""What each role puts on a host, per OS family: the ONE table that step templates read.

The seed prepares CentOS 7 by hand for each technology; this table is that chapter as data.
Templates never branch on a role or family name: they loop over these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import ROLES_NEEDING_CPU_VIRT, Role

DOCKER_REPO = """\
[docker-ce-stable]
name=Docker CE Stable - $basearch
baseurl=https://download.docker.com/linux/centos/$releasever/$basearch/stable
enabled=1
gpgcheck=1
gpgkey=https://download.docker.com/linux/centos/gpg
"""

# The seed's repository file (VirtualBox 5.0 era); Oracle still serves el/$releasever.
VIRTUALBOX_REPO = """\
[virtualbox]
name=Oracle Linux / RHEL / CentOS-$releasever / $basearch - VirtualBox
baseurl=https://download.virtualbox.org/virtualbox/rpm/el/$releasever/$basearch
enabled=1
gpgcheck=1
repo_gpgcheck=1
gpgkey=https://www.virtualbox.org/download/oracle_vbox_2016.asc
"""

# VirtualBox's autostart service (vboxautostart-service, shipped with the VirtualBox package) starts
# the VMs whose owners autostart.cfg allows and that have modifyvm --autostart-enabled on; it reads
# these two keys from /etc/default/virtualbox. Set up when a VM on the host has autostart.
VBOX_DEFAULTS = "/etc/default/virtualbox"
VBOX_AUTOSTART_CONFIG = "/etc/vbox/autostart.cfg"
VBOX_AUTOSTART_DB = "/etc/vbox/autostart.d"
VBOX_AUTOSTART_SERVICE = "vboxautostart-service"

# The seed's OpenVZ hardware-node set. kernel.sysrq is left out on purpose: it is a console
# convenience, not something containers need, and (unlike these keys) it is not per network
# namespace, so it is not ours to change on a shared host.
OPENVZ_SYSCTLS = (
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.default.forwarding", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv4.conf.default.proxy_arp", "0"),
    ("net.ipv4.conf.all.rp_filter", "1"),
    ("net.ipv4.conf.default.send_redirects", "1"),
    ("net.ipv4.conf.all.send_redirects", "0"),
)
FORWARDING = (("net.ipv4.ip_forward", "1"),)  # the seed's 99-ipforward.conf for KVM bridging
# virt-install / virt-manager create this pool on first use; a fresh EL host has none, and every
# libvirt volume of the KVM guests (pulumi-libvirt's pool "default") needs it.
LIBVIRT_POOLS = (("default", "/var/lib/libvirt/images"),)


@dataclass(frozen=True)
class Kernel:
    """A role that boots its own kernel: how to make it the default and how to see it running."""

    name: str  # what the user reads: "Xen", "the OpenVZ vzkernel"
    running_check: str  # shell test that is true once the host runs it (trusted table text)
    boot_entry: str  # boot-<role> template part that makes it the default boot entry


@dataclass(frozen=True)
class RoleSetup:
    repo_files: tuple[tuple[str, str], ...] = ()  # (path under /etc/yum.repos.d, content)
    repo_packages: tuple[str, ...] = ()  # packages that add a repository (NAME=URL for an rpm URL)
    packages: tuple[str, ...] = ()
    services: tuple[str, ...] = ()  # enabled and started
    config_lines: tuple[tuple[str, str, str], ...] = ()  # (file, KEY, value) as KEY=value
    verify: tuple[tuple[str, ...], ...] = ()  # argv that must succeed once the role works
    sysctls: tuple[tuple[str, str], ...] = ()
    kernel: Kernel | None = None
    needs_cpu_virt: bool = False
    # libvirt storage pools (name, directory) the role's guests need, defined, started and autostarted.
    # Host infrastructure: kept when the role or a stack's guests go (retained disks live there).
    storage_pools: tuple[tuple[str, str], ...] = ()
    # (other role, packages): installed as well when the host also has that role (cockpit-machines
    # is the console's page for libvirt guests, so it comes with the kvm role).
    companions: tuple[tuple[Role, tuple[str, ...]], ...] = ()

    def packages_for(self, roles) -> tuple[str, ...]:
        """The role's packages on a host with ``roles``: its own, then its companions' for those roles."""
        extra = tuple(p for role, packages in self.companions if role in roles for p in packages)
        return self.packages + extra


XEN = Kernel("Xen", '[ "$(cat /sys/hypervisor/type 2>/dev/null)" = xen ]', "xen")
VZKERNEL = Kernel("the OpenVZ vzkernel", 'uname -r | grep -q "vz7"', "vzkernel")

_TABLE: dict[tuple[Role, str], RoleSetup] = {
    (Role.KVM, "el7"): RoleSetup(
        # genisoimage: the host builds each guest's seed ISO (kvm_seed.render_seed_iso_step).
        packages=("qemu-kvm", "qemu-img", "libvirt", "libvirt-client", "virt-install", "bridge-utils", "genisoimage"),
        services=("libvirtd",), sysctls=FORWARDING,
        verify=(("systemctl", "is-active", "--quiet", "libvirtd"),), storage_pools=LIBVIRT_POOLS,
    ),
    (Role.KVM, "el9"): RoleSetup(
        packages=("qemu-kvm", "libvirt", "libvirt-client", "virt-install", "genisoimage"),
        services=("libvirtd",), sysctls=FORWARDING,
        verify=(("systemctl", "is-active", "--quiet", "libvirtd"),), storage_pools=LIBVIRT_POOLS,
    ),
    (Role.XEN, "el7"): RoleSetup(
        repo_packages=("centos-release-xen",),
        packages=("xen", "xen-runtime", "libvirt", "libvirt-daemon-xen", "bridge-utils", "genisoimage"),
        services=("xencommons", "xendomains", "xenconsoled"),
        sysctls=FORWARDING, kernel=XEN,
    ),
    (Role.OPENVZ, "el7"): RoleSetup(
        repo_packages=(
            "virtuozzo-release=https://download.openvz.org/virtuozzo/releases/7.0/x86_64/os/Packages/v/"
            "virtuozzo-release-7.0.0-10.vz7.x86_64.rpm",
        ),
        packages=("vzkernel", "prlctl", "prl-disp-service", "vzctl", "vzpkg", "ploop"),
        services=("vz", "prl-disp"),
        config_lines=(("/etc/vz/vz.conf", "NEIGHBOUR_DEVS", "all"),),
        sysctls=OPENVZ_SYSCTLS, kernel=VZKERNEL,
    ),
    (Role.VIRTUALBOX, "el7"): RoleSetup(
        repo_files=(("virtualbox.repo", VIRTUALBOX_REPO),), repo_packages=("epel-release",),
        packages=("gcc", "make", "perl", "kernel-headers", "kernel-devel", "elfutils-libelf-devel",
                  "dkms", "VirtualBox-7.0"),
        services=("vboxdrv",), needs_cpu_virt=True,
        verify=(("systemctl", "is-active", "--quiet", "vboxdrv"),),
    ),
    (Role.VIRTUALBOX, "el9"): RoleSetup(
        repo_files=(("virtualbox.repo", VIRTUALBOX_REPO),), repo_packages=("epel-release",),
        packages=("gcc", "make", "perl", "kernel-headers", "kernel-devel", "elfutils-libelf-devel",
                  "dkms", "VirtualBox-7.0"),
        services=("vboxdrv",), needs_cpu_virt=True,
        verify=(("systemctl", "is-active", "--quiet", "vboxdrv"),),
    ),
    # semanage (policycoreutils-python*): the HAProxy tier's docker web pages get a file-context rule.
    (Role.DOCKER, "el7"): RoleSetup(
        repo_files=(("docker-ce.repo", DOCKER_REPO),),
        packages=("docker-ce", "docker-ce-cli", "containerd.io", "policycoreutils-python"),
        services=("docker",), sysctls=FORWARDING,
        verify=(("docker", "version", "--format", "{{.Server.Version}}"),),
    ),
    (Role.DOCKER, "el9"): RoleSetup(
        repo_files=(("docker-ce.repo", DOCKER_REPO),),
        packages=("docker-ce", "docker-ce-cli", "containerd.io", "policycoreutils-python-utils"),
        services=("docker",), sysctls=FORWARDING,
        verify=(("docker", "version", "--format", "{{.Server.Version}}"),),
    ),
    # Cockpit (the web console, from the distribution's own repositories: el7 extras, el9 BaseOS and
    # AppStream): packages only. The console step (hosts/console.py) locks it down first (the socket on
    # the management address, cockpit.conf, the certificate, 9090 for allowFrom only), then enables
    # cockpit.socket: nothing listens with the package's defaults, not even while a later step fails.
    **{
        (Role.CONSOLE, family): RoleSetup(
            packages=("cockpit", "cockpit-ws"),
            companions=((Role.KVM, ("cockpit-machines",)),),
        )
        for family in ("el7", "el9")
    },
}  # fmt: skip


def role_setup(role: Role, family: str) -> RoleSetup:
    """The setup of ``role`` on ``family``; a clear error where the technology has no packages."""
    try:
        setup = _TABLE[(role, family)]
    except KeyError:
        raise ValueError(
            f"role {role} has no packages for {family}: Xen4CentOS and Virtuozzo/OpenVZ 7 exist for "
            f"el7 only; set osFamily: el7 for this host"
        ) from None
    if role in ROLES_NEEDING_CPU_VIRT and not setup.needs_cpu_virt:
        return RoleSetup(**{**setup.__dict__, "needs_cpu_virt": True})
    return setup


def host_sysctls(roles, family: str) -> list[tuple[str, str]]:
    """Every sysctl the host's roles need, merged in table order (first value wins)."""
    merged: dict[str, str] = {}
    for role in roles:
        for key, value in role_setup(role, family).sysctls:
            merged.setdefault(key, value)
    return sorted(merged.items())

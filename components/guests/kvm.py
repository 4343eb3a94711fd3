"""``KvmGuest``: one KVM guest through pulumi-libvirt (the seed's ``virt-install`` as resources).

Two ways to give it an OS, chosen by config:

- **cloud image** (default): a qcow2 overlay on the host's shared, verified base image
  (``kvm_images.KvmBaseImages``) plus a cloud-init seed ISO the host builds (user-data,
  meta-data, network-config v2 with the static address; ``kvm_seed.render_seed_iso_step``);
- **installer** (``install:``, the seed's path): a blank disk, the install tree's
  ``images/pxeboot/vmlinuz`` + ``initrd.img`` as direct-boot kernel, and the kickstart carried
  on the seed ISO, read with ``inst.ks=hd:LABEL=cidata:/user-data``.

The ``kvm-power`` remote step brings the domain to its ``powerState`` (``virsh start``, ``suspend``,
``shutdown``) and, for the installer, switches it from the installer kernel to its disk.
"""

from __future__ import annotations

import pulumi
import pulumi_libvirt as libvirt

from ..model import KvmGuest as KvmGuestModel
from ..osfamily import os_family
from ..remote.recorded_files import RenderedFiles
from ..remote.scripts import render_step
from ..remote.step import RemoteStep
from .context import GuestContext
from .kvm_images import POOL, POOL_DIR
from .kvm_password import root_password_hash
from .kvm_seed import (
    INSTALL_INITRD,
    INSTALL_KERNEL,
    KICKSTART_PATH,
    SEED_PATHS,
    guest_mac,
    install_tree_file,
    installer_cmdline,
    render_kickstart,
    render_meta_data,
    render_network_config,
    render_seed_iso_step,
    render_user_data,
)

GIB = 1024**3
GRAPHICS_LISTEN = "127.0.0.1"  # SPICE/VNC never listen beyond the host: reach them with ssh -L
INSTALL_TIMEOUT_S = 3600
SHUTDOWN_TIMEOUT_S = 120  # ACPI shutdown (the seed's "virsh shutdown") before "virsh destroy"


class KvmGuest(pulumi.ComponentResource):
    """Type ``virtfleet:guest:KvmGuest``. Outputs: ``name``, ``host``, ``ip``, ``mac``, ``console``."""

    def __init__(self, guest: KvmGuestModel, *, context: GuestContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__("virtfleet:guest:KvmGuest", guest.name, None, opts)
        host = context.host
        fleet = context.fleet
        if host.libvirt_provider is None:
            raise ValueError(f"guest {guest.name}: host {host.host.name} has no kvm role (no libvirt provider)")
        bridge = host.host.bridge(guest.network.bridge)
        network = host.libvirt_networks[guest.network.bridge]
        family = os_family(guest.os_family)
        mac = guest_mac(guest)
        on_host = pulumi.ResourceOptions(parent=self, provider=host.libvirt_provider, depends_on=host.ready)
        images = context.kvm_images

        # The stack's login key (public half of sshPrivateKey) plus ssh.authorizedKeys.
        login_key = context.secrets.login_public_key
        login_keys = (login_key.apply(lambda k: (k,)) if login_key is not None
                      else pulumi.Output.from_input(()))  # fmt: skip
        if login_key is None and not fleet.ssh.authorized_keys:
            pulumi.log.warn(
                f"guest {guest.name}: ssh.useAgent is set and ssh.authorizedKeys is empty; nobody can log in over SSH",
                resource=self,
            )

        boot: dict = {}
        base = None
        if not guest.uses_installer:
            # Downloaded by the host and checked against image.sha256 before any disk is made on it.
            url = str(guest.image.url) if guest.image and guest.image.url else family.cloud_image
            base = images.image(host, url, guest.image.sha256 if guest.image else None)
        # The guest's own disk: empty for the installer, a qcow2 overlay on the shared base image otherwise.
        disk = libvirt.Volume(
            f"{guest.name}-disk",
            name=f"{guest.name}.qcow2",
            pool=POOL,
            format="qcow2",
            size=guest.disk_gib * GIB,
            base_volume_name=base.volume if base is not None else None,
            base_volume_pool=POOL if base is not None else None,
            opts=pulumi.ResourceOptions.merge(
                on_host,
                pulumi.ResourceOptions(
                    retain_on_delete=guest.retain_disk,
                    # (a new disk means a new domain: a web server's waits for its drain too)
                    depends_on=[*host.ready, *([base.step] if base else []), *context.roll_after],
                ),
            ),
        )
        state = f"/var/lib/virtfleet/kvm/{guest.name}"  # the seed's sources on the host
        seed_iso = f"{POOL_DIR}/{guest.name}-seed.iso"
        if guest.uses_installer:
            kickstart = pulumi.Output.all(context.secrets.root_password, login_keys).apply(
                lambda args: render_kickstart(
                    guest, fleet, bridge, family, root_password_hash(guest.name, args[0]), args[1]
                )
            )
            seed_files = kickstart.apply(lambda text: {"user-data": text})
            files = {KICKSTART_PATH: kickstart}
            kernel = images.image(host, install_tree_file(guest, INSTALL_KERNEL), None, suffix="", kind="installer")
            initrd = images.image(host, install_tree_file(guest, INSTALL_INITRD), None, suffix="", kind="installer")
            boot = {"kernel": kernel.path, "initrd": initrd.path, "cmdlines": installer_cmdline(guest, fleet, bridge)}
            boot_deps = [kernel.step, initrd.step]
        else:
            user_data = login_keys.apply(lambda keys: render_user_data(guest, fleet, keys))
            network_config = render_network_config(guest, bridge, fleet)
            meta_data = user_data.apply(lambda text: render_meta_data(guest, text, network_config))
            seed_files = pulumi.Output.all(user_data, meta_data).apply(
                lambda t: {"user-data": t[0], "meta-data": t[1], "network-config": network_config}
            )
            files = {
                SEED_PATHS["user-data"]: user_data,
                SEED_PATHS["meta-data"]: meta_data,
                SEED_PATHS["network-config"]: network_config,
            }
            boot_deps = [base.step]
        seed = RemoteStep(
            seed_files.apply(lambda f: render_seed_iso_step(host.host.name, guest.name, f, state, seed_iso, pool=POOL)),
            machine=host.host.name,
            name=f"{guest.name}-seed",
            connection=host.connection,
            opts=pulumi.ResourceOptions(parent=self, depends_on=host.ready),
        )
        RenderedFiles(
            f"{guest.name}-provisioning", machine=guest.name, files=files, opts=pulumi.ResourceOptions(parent=self)
        )

        # The power step owns the power state: the domain is only defined here (an installer guest
        # also boots its installer at once) and the step starts, pauses or stops it. A domain whose
        # start fails is then still recorded in the stack and the step's error names the cause;
        # pulumi-libvirt 0.5.4 starting it itself leaves a failed start defined on the host but
        # unknown to the stack ("domain already exists" at the next up).
        ignored = ["running"]
        if guest.uses_installer:
            ignored += ["kernel", "initrd", "cmdlines"]
        graphics = None
        if guest.graphics != "none":
            graphics = libvirt.DomainGraphicsArgs(
                type=guest.graphics, listen_type="address", listen_address=GRAPHICS_LISTEN, autoport=True
            )
        self.domain = libvirt.Domain(
            guest.name,
            name=guest.name,
            description=f"virtfleet guest {guest.name} ({guest.os_family}, {family.os_variant})",
            vcpu=guest.vcpus,
            memory=guest.memory_mib,  # the provider takes MiB
            cpu=libvirt.DomainCpuArgs(mode=guest.cpu_mode),
            # The seed ISO by path: the provider makes a .iso file the guest's CD-ROM.
            disks=[libvirt.DomainDiskArgs(volume_id=disk.id), libvirt.DomainDiskArgs(file=seed_iso)],
            # On the host's bridge by name: libvirt reports a running domain's NIC on a bridge-mode
            # network as type "bridge", and the provider reads it back as ``bridge``, so attaching by
            # ``network_id`` is a diff on every preview (and an update on every up).
            network_interfaces=[libvirt.DomainNetworkInterfaceArgs(bridge=bridge.name, mac=mac)],
            consoles=[libvirt.DomainConsoleArgs(type="pty", target_type="serial", target_port="0")],
            graphics=graphics,
            autostart=guest.autostart,
            running=guest.uses_installer,
            **boot,
            opts=pulumi.ResourceOptions.merge(
                on_host,
                pulumi.ResourceOptions(
                    depends_on=[network, disk, seed, *boot_deps, *context.roll_after],
                    protect=guest.protect,
                    ignore_changes=ignored,
                ),
            ),
        )

        step_name = f"{guest.name}-power"
        RemoteStep(
            render_step(
                host.host.name,
                step_name,
                "kvm-power",
                domain=guest.name,
                power_state=guest.power_state,
                installer=guest.uses_installer,
                install_timeout=INSTALL_TIMEOUT_S,
                shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            ),
            machine=host.host.name,
            name=step_name,
            connection=host.connection,
            # A new domain (a replace: new memory, say) is a new UUID: the step runs again for it.
            replace_key=self.domain.id,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.domain]),
        )

        target = f"qemu+ssh://{fleet.ssh.user}@{host.host.address}/system"
        self.name = pulumi.Output.from_input(guest.name)
        self.host = pulumi.Output.from_input(guest.host)
        self.ip = pulumi.Output.from_input(str(guest.network.ip))
        self.mac = pulumi.Output.from_input(mac)
        display = f"virsh -c {target} domdisplay {guest.name}"
        self.console = pulumi.Output.from_input(
            {
                "serial": f"virsh -c {target} console {guest.name}",
                "graphics": "none" if graphics is None else f"{guest.graphics} on {GRAPHICS_LISTEN}: {display}",
            }
        )
        self.register_outputs(
            {"name": self.name, "host": self.host, "ip": self.ip, "mac": self.mac, "console": self.console}
        )

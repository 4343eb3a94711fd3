"""``KvmGuest``: one KVM guest through pulumi-libvirt (the seed's ``virt-install`` as resources).

Two ways to give it an OS, chosen by config:

- **cloud image** (default): a qcow2 overlay on the host's shared base image
  (``kvm_images.KvmBaseImages``) plus a cloud-init seed ISO (user-data, meta-data,
  network-config v2 with the static address);
- **installer** (``install:``, the seed's path): a blank disk, the install tree's
  ``images/pxeboot/vmlinuz`` + ``initrd.img`` as direct-boot kernel, and the kickstart carried
  on the seed ISO, read with ``inst.ks=hd:LABEL=cidata:/user-data``.

The domain runs or not per ``powerState``; ``paused`` (``virsh suspend``) and the installer's
switch from installer kernel to disk boot are done by the ``kvm-power`` remote step.
"""

from __future__ import annotations

import pulumi
import pulumi_libvirt as libvirt

from ..artifacts import RenderedFiles
from ..model import KvmGuest as KvmGuestModel
from ..osfamily import os_family
from ..remote_step import RemoteStep
from ..steps import render_step
from .context import GuestContext
from .kvm_images import POOL
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

        disk_opts = pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(retain_on_delete=guest.retain_disk))
        boot: dict = {}
        base = None
        if not guest.uses_installer:
            url = str(guest.image.url) if guest.image and guest.image.url else family.cloud_image
            base = images.volume(host, url)
        # The guest's own disk: empty for the installer, a qcow2 overlay on the shared base image otherwise.
        disk = libvirt.Volume(
            f"{guest.name}-disk",
            name=f"{guest.name}.qcow2",
            pool=POOL,
            format="qcow2",
            size=guest.disk_gib * GIB,
            base_volume_id=base.id if base is not None else None,
            opts=disk_opts,
        )
        if guest.uses_installer:
            kickstart = pulumi.Output.all(context.secrets.root_password, login_keys).apply(
                lambda args: render_kickstart(
                    guest, fleet, bridge, family, root_password_hash(guest.name, args[0]), args[1]
                )
            )
            seed = libvirt.CloudInitDisk(
                f"{guest.name}-ks", name=f"{guest.name}-ks.iso", pool=POOL, user_data=kickstart, opts=on_host
            )
            files = {KICKSTART_PATH: kickstart}
            kernel = images.volume(host, install_tree_file(guest, INSTALL_KERNEL), fmt="raw")
            initrd = images.volume(host, install_tree_file(guest, INSTALL_INITRD), fmt="raw")
            boot = {"kernel": kernel.id, "initrd": initrd.id, "cmdlines": installer_cmdline(guest, fleet, bridge)}
            boot_deps = [kernel, initrd]
        else:
            user_data = login_keys.apply(lambda keys: render_user_data(guest, fleet, keys))
            network_config = render_network_config(guest, bridge, fleet)
            meta_data = user_data.apply(lambda text: render_meta_data(guest, text, network_config))
            seed = libvirt.CloudInitDisk(
                f"{guest.name}-seed",
                name=f"{guest.name}-seed.iso",
                pool=POOL,
                user_data=user_data,
                meta_data=meta_data,
                network_config=network_config,
                opts=on_host,
            )
            files = {
                SEED_PATHS["user-data"]: user_data,
                SEED_PATHS["meta-data"]: meta_data,
                SEED_PATHS["network-config"]: network_config,
            }
            boot_deps = [base]
        RenderedFiles(
            f"{guest.name}-provisioning", machine=guest.name, files=files, opts=pulumi.ResourceOptions(parent=self)
        )

        # The power step owns the power state when it exists (paused, or installer guests whose
        # domain is redefined after installation): Pulumi must not fight it over these fields.
        step_owns_power = guest.power_state == "paused" or guest.uses_installer
        ignored = ["running"] if step_owns_power else []
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
            disks=[libvirt.DomainDiskArgs(volume_id=disk.id)],
            cloudinit=seed.id,
            network_interfaces=[
                libvirt.DomainNetworkInterfaceArgs(network_id=network.id, mac=mac, hostname=guest.name)
            ],
            consoles=[libvirt.DomainConsoleArgs(type="pty", target_type="serial", target_port="0")],
            graphics=graphics,
            autostart=guest.autostart,
            running=guest.uses_installer or guest.power_state != "stopped",
            **boot,
            opts=pulumi.ResourceOptions.merge(
                on_host,
                pulumi.ResourceOptions(
                    depends_on=[network, disk, seed, *boot_deps],
                    protect=guest.protect,
                    ignore_changes=ignored,
                ),
            ),
        )

        if step_owns_power:
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
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.domain]),
            )

        target = f"qemu+ssh://{fleet.ssh.user}@{host.host.address}:{host.host.port}/system"
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

"""``XenGuest``: a Xen domain on its host with the xl toolstack, a remote guest lifecycle
(``remote_guest``): the seed's ``virt-install --paravirt`` and ``xm`` become xl.cfg + ``xl``.

Steps on the Xen host, in order (each a RemoteStep; the files are listed in ``xen_config``):

1. ``xen-base-…`` (host-wide, once per host and URL): the cloud image, or the install tree's PV
   kernel and initrd, downloaded and verified (``xen_images.XenBaseImages``);
2. ``<guest>-seed``: the NoCloud seed ISO, from the KVM guests' own renderers (user-data,
   meta-data, network-config; or the kickstart as user-data on the installer path). Its text
   depends on the stack's login key (an Output), so it is built as a secret step: script on
   stdin, not logged (the kickstart holds root's password hash anyway);
3. ``<guest>-domain``: the lifecycle (create = update, one JSON read-back line, replace fields in
   the triggers, a self-contained delete).
"""

from __future__ import annotations

import pulumi

from ..model import XenGuest as XenGuestModel
from ..remote.step import RemoteStep
from .context import GuestContext
from .kvm_password import root_password_hash
from .kvm_seed import INSTALL_INITRD, INSTALL_KERNEL, install_tree_file
from .remote_guest import field_of, lifecycle_step
from .xen_config import image_url, render_domain_step, render_seed_step, xen_mac


class XenGuest(pulumi.ComponentResource):
    """Type ``virtfleet:guest:XenGuest``. Outputs, read back from ``xl list -l`` on the host:
    ``name``, ``host``, ``ip``, ``mac``, ``domid`` (None while stopped), ``status``
    (running | paused | stopped), ``console`` (commands for the serial console and display) and
    ``state`` (the whole read-back line)."""

    def __init__(self, guest: XenGuestModel, *, context: GuestContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__("virtfleet:guest:XenGuest", guest.name, None, opts)
        host = context.host
        fleet = context.fleet
        if "xen" not in host.host.roles:
            raise ValueError(f"guest {guest.name}: host {host.host.name} has no xen role")
        images = context.xen_images
        if guest.uses_installer:
            downloads = [
                images.step(host, install_tree_file(guest, path), None, "", "installer")
                for path in (INSTALL_KERNEL, INSTALL_INITRD)
            ]
        else:
            sha = guest.image.sha256 if guest.image else None
            downloads = [images.step(host, image_url(guest), sha, ".qcow2")]

        login_key = context.secrets.login_public_key
        login_keys = login_key.apply(lambda k: (k,)) if login_key is not None else pulumi.Output.from_input(())
        if guest.uses_installer:
            root = context.secrets.root_password
            if root is None:
                raise ValueError(f"guest {guest.name}: the installer path needs a root password (rootPassword)")
            seed_step = pulumi.Output.all(login_keys, root).apply(
                lambda a: render_seed_step(guest, fleet, a[0], root_password_hash(guest.name, a[1]))
            )
        else:
            seed_step = login_keys.apply(lambda keys: render_seed_step(guest, fleet, keys, None))
        self.seed = RemoteStep(
            seed_step,
            machine=guest.host,
            name=f"{guest.name}-seed",
            connection=host.connection,
            opts=pulumi.ResourceOptions(parent=self, depends_on=host.ready),
        )
        lifecycle = render_domain_step(guest, fleet)
        self.domain, state = lifecycle_step(
            lifecycle,
            connection=host.connection,
            protect=guest.protect,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*host.ready, self.seed, *downloads, *context.roll_after]
            ),
        )
        target = f"{fleet.ssh.user}@{host.host.address}"
        port = "" if host.host.port == 22 else f" -p {host.host.port}"
        serial = "xl console -t serial" if guest.mode == "hvm" else "xl console"
        display = (
            "none"
            if guest.display == "none"
            else f"{guest.display} on 127.0.0.1 of {guest.host}: ssh{port} -L <port>:127.0.0.1:<port> {target}"
            f" (the port: ssh{port} {target} xl list -l {guest.name})"
        )
        self.state = state
        self.name = field_of(state, "name", guest.name)
        self.host = field_of(state, "host", guest.host)
        self.ip = pulumi.Output.from_input(str(guest.network.ip))  # the seed's static address
        self.mac = field_of(state, "mac", xen_mac(guest))
        self.domid = field_of(state, "domid")
        self.status = field_of(state, "status")
        self.console = pulumi.Output.from_input(
            {"serial": f"ssh -t{port} {target} {serial} {guest.name}", "graphics": display}
        )
        self.readback_outputs = {
            "name": self.name, "host": self.host, "ip": self.ip, "mac": self.mac, "domid": self.domid,
            "status": self.status,
        }  # fmt: skip
        self.register_outputs({**self.readback_outputs, "console": self.console})

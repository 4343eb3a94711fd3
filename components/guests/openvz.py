"""``OpenvzGuest``: an OpenVZ / Virtuozzo 7 container on its host, a remote guest lifecycle
(``remote_guest``) driven by ``vzctl``.

Why vzctl and not prlctl: the seed's commands are vzctl's (``vzctl create 101 --ostemplate``,
``vzctl set 101 --onboot yes --ipadd … --hostname … --nameserver … --save``); vzctl addresses a
container by the numeric CTID the stack declares; its ``set --save`` changes everything we manage
live and in the config in one call; its config file (``/etc/vz/conf/CTID.conf``) is the read-back;
and the HAProxy tier already enters containers with ``vzctl exec2``. prlctl has no command we need
that vzctl lacks (``vzctl suspend``/``resume`` are ``prlctl suspend``/``resume``), so one tool it is.

Networking is **venet** (``--ipadd``, as in the seed): the host routes the container's /32 and
answers ARP for it on the bridge's LAN (the openvz role's ``NEIGHBOUR_DEVS=all`` and proxy-ARP
sysctls); the container needs no MAC, no bridge port and no network config of its own. veth would
put a second L2 device per container on brid0 and need ifcfg files inside each template.

The root password (``rootPassword``, generated when unset) is set by a secret step of its own:
``chpasswd -e`` inside the container with the SHA-512 crypt hash on stdin, never in argv.
"""

from __future__ import annotations

import pulumi

from ..model import Fleet
from ..model import OpenvzGuest as OpenvzGuestModel
from ..remote.scripts import RenderedStep, render_step
from ..remote.step import RemoteStep
from .context import GuestContext
from .kvm_password import root_password_hash
from .remote_guest import GuestLifecycle, field_of, lifecycle_step, replace_key

ROOT_PASSWORD_MARKER = "/var/lib/virtfleet/openvz/{ctid}/root-password.sha256"  # on the host


def container_nameservers(guest: OpenvzGuestModel, fleet: Fleet) -> list[str]:
    """The guest's nameservers, else its bridge's resolvers (as for every guest)."""
    if guest.nameservers:
        return [str(n) for n in guest.nameservers]
    return [str(d) for d in fleet.host(guest.host).bridge(guest.network.bridge).dns]


def render_container_step(guest: OpenvzGuestModel, fleet: Fleet) -> GuestLifecycle:
    """The container's lifecycle step on its host (pure). CTID and OS template force a re-create;
    everything else is changed live by ``vzctl set --save``."""
    step = render_step(
        guest.host,
        f"{guest.name}-container",
        "openvz-container",
        guest=guest.name,
        host=guest.host,
        ctid=guest.ctid,
        ostemplate=guest.ostemplate,
        hostname=f"{guest.name}.{fleet.domain}",
        ip=str(guest.network.ip),
        nameservers=container_nameservers(guest, fleet),
        memory_mib=guest.memory_mib,
        swap_mib=guest.swap_mib,
        cpus=guest.vcpus,
        disk_gib=guest.disk_gib,
        onboot="yes" if guest.autostart else "no",
        power_state=guest.power_state,
        retain_disk=guest.retain_disk,
        password_marker=ROOT_PASSWORD_MARKER.format(ctid=guest.ctid),
    )
    return GuestLifecycle(step, container_replace_fields(guest))


def container_replace_fields(guest: OpenvzGuestModel) -> dict:
    """What vzctl cannot change on an existing container: a new value means a new container."""
    return {"ctid": guest.ctid, "ostemplate": guest.ostemplate}


def render_root_password_step(guest: OpenvzGuestModel, password: str) -> RenderedStep:
    """The secret step that sets root's password inside the container (pure). It names the
    container's replace fields, so a re-created container gets its password set again."""
    return render_step(
        guest.host,
        f"{guest.name}-root-password",
        "openvz-root-password",
        secret=True,
        guest=guest.name,
        ctid=guest.ctid,
        marker=ROOT_PASSWORD_MARKER.format(ctid=guest.ctid),
        container=replace_key(container_replace_fields(guest)),
        root_hash=root_password_hash(guest.name, password),
    )


class OpenvzGuest(pulumi.ComponentResource):
    """Type ``virtfleet:guest:OpenvzGuest``. Outputs, read back from the host: ``ctid``, ``name``,
    ``host``, ``ip`` (the container's address), ``status`` (running | paused | stopped) and
    ``state`` (the whole read-back line)."""

    def __init__(self, guest: OpenvzGuestModel, *, context: GuestContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__("virtfleet:guest:OpenvzGuest", guest.name, None, opts)
        host = context.host
        if "openvz" not in host.host.roles:
            raise ValueError(f"guest {guest.name}: host {host.host.name} has no openvz role")
        lifecycle = render_container_step(guest, context.fleet)
        self.container, state = lifecycle_step(
            lifecycle,
            connection=host.connection,
            protect=guest.protect,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*host.ready, *context.roll_after]),
        )
        password = context.secrets.root_password
        if password is not None:
            name = f"{guest.name}-root-password"
            RemoteStep(
                password.apply(lambda p: render_root_password_step(guest, p)),
                machine=guest.host,
                name=name,
                connection=host.connection,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.container]),
            )
        self.state = state
        self.ctid = field_of(state, "ctid", guest.ctid)
        self.name = field_of(state, "name", guest.name)
        self.host = field_of(state, "host", guest.host)
        # The container's address (venet: the one --ipadd gave it), like every guest's ``ip``.
        self.ip = field_of(state, "ip").apply(lambda ips: ips[0] if ips else None)
        self.status = field_of(state, "status")
        # The program exports these per remote guest (stack output guestStatus).
        self.readback_outputs = {
            "ctid": self.ctid, "name": self.name, "host": self.host, "ip": self.ip, "status": self.status,
        }  # fmt: skip
        self.register_outputs(self.readback_outputs)

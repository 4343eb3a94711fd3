"""The program: model in, components out. ``__main__.py`` and the offline plan both call ``build``."""

from __future__ import annotations

import os

import pulumi

from .guests import GUEST_COMPONENTS, GuestContext
from .guests.docker_images import DockerImages
from .guests.kvm_images import KvmBaseImages
from .guests.xen_images import XenBaseImages
from .hosts import HypervisorHost
from .lb.roll import RollGates
from .lb.tier import HaproxyTier
from .model import Fleet, FleetConfigError
from .model.rules import image_warnings
from .stack.config import load_stack_fleet
from .stack.secrets import Secrets, load_secrets


def pending_guests(fleet: Fleet) -> list[str]:
    """Guests whose type has no component yet: declared and validated, not deployed."""
    return [g.name for g in fleet.guests if g.type not in GUEST_COMPONENTS]


def build(fleet: Fleet, secrets: Secrets, *, operator_home: str | None = None) -> dict[str, pulumi.Output]:
    """Create every component of the stack; return the stack outputs. ``operator_home``: where the
    providers' trust files go on the machine running the program (None: nowhere, as in the plan)."""
    for warning in image_warnings(fleet):
        pulumi.log.warn(warning)
    hosts = {h.name: HypervisorHost(h, fleet=fleet, secrets=secrets, operator_home=operator_home) for h in fleet.hosts}
    guests = {}
    kvm_images = KvmBaseImages()  # shared by every KVM guest of this run
    docker_images = DockerImages()  # shared by every Docker guest of this run
    xen_images = XenBaseImages()  # shared by every Xen guest of this run
    gates = RollGates(fleet.load_balancer)  # a rolled web server's guest waits for its drain
    for guest in fleet.guests:
        component = GUEST_COMPONENTS.get(guest.type)
        if component is None:
            pulumi.log.warn(f"guest {guest.name}: {guest.type} guests are not deployable yet; skipped")
            continue
        context = GuestContext(
            fleet, hosts[guest.host], secrets, kvm_images, docker_images, xen_images, tuple(gates.after(guest.name))
        )
        guests[guest.name] = component(guest, context=context)
    outputs: dict[str, pulumi.Output] = {
        "hosts": pulumi.Output.from_input({name: h.host.address for name, h in hosts.items()}),
        "guests": pulumi.Output.from_input(
            {
                g.name: {"type": g.type, "host": g.host, "ip": str(g.network.ip) if g.network else None}
                for g in fleet.guests
            }
        ),
        "pendingGuests": pulumi.Output.from_input(pending_guests(fleet)),
        # Remote guests (guests/remote_guest.py): what their hosts reported at the last run.
        "guestStatus": pulumi.Output.from_input(
            {name: g.readback_outputs for name, g in guests.items() if hasattr(g, "readback_outputs")}
        ),
    }
    consoles = {name: h.console_url for name, h in hosts.items() if h.console_url}
    if consoles:
        outputs["consoleUrls"] = pulumi.Output.from_input(consoles)
    if fleet.load_balancer:
        tier = HaproxyTier(fleet.load_balancer, fleet=fleet, hosts=hosts, guests=guests, secrets=secrets, gates=gates)
        outputs.update(
            frontendUrl=tier.frontend_url,
            statsUrl=tier.stats_url,
            statsUser=tier.stats_user,
            statsPassword=pulumi.Output.secret(tier.stats_password),
        )
    gates.check_opened()
    return outputs


def main() -> None:
    try:
        fleet = load_stack_fleet()
    except FleetConfigError as err:
        # RunError: Pulumi prints the message alone, no traceback; nothing has been registered.
        raise pulumi.RunError(str(err)) from None
    # OpenSSH finds ~ in the password database, libvirt's client in $HOME: the same on a sane machine.
    for key, value in build(fleet, load_secrets(fleet), operator_home=os.path.expanduser("~")).items():
        pulumi.export(key, value)

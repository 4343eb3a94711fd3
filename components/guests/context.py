"""What every guest component receives besides its own model object."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..hosts import HypervisorHost
from ..model import Fleet
from ..stack.secrets import Secrets
from .docker_images import DockerImages
from .kvm_images import KvmBaseImages
from .xen_images import XenBaseImages


@dataclass(frozen=True)
class GuestContext:
    fleet: Fleet
    host: HypervisorHost  # the host component the guest runs on (providers, connection, ready)
    secrets: Secrets
    # Volumes shared by the KVM guests of one run (one base image per host and URL).
    kvm_images: KvmBaseImages = field(default_factory=KvmBaseImages)
    # Images shared by the Docker guests of one run (one pull per host and image reference).
    docker_images: DockerImages = field(default_factory=DockerImages)
    # Downloads shared by the Xen guests of one run (one per host and URL).
    xen_images: XenBaseImages = field(default_factory=XenBaseImages)
    # A web server's when the tier rolls (lb.roll.RollGates): what the resource that would take the guest
    # down when it changes (domain, container, lifecycle step) waits for, its drain steps.
    roll_after: tuple = ()

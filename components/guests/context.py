"""What every guest component receives besides its own model object."""

from __future__ import annotations

from dataclasses import dataclass

from ..hosts import HypervisorHost
from ..model import Fleet
from ..secrets import Secrets


@dataclass(frozen=True)
class GuestContext:
    fleet: Fleet
    host: HypervisorHost  # the host component the guest runs on (providers, connection, ready)
    secrets: Secrets

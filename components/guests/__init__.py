"""Guest components, one file per guest type; ``GUEST_COMPONENTS`` maps a model type to its component.

Every guest component is built as ``Component(guest, context=GuestContext(...), opts=...)`` and
exposes ``name``, ``host`` and ``ip`` outputs.
"""

from __future__ import annotations

from .context import GuestContext
from .docker import DockerGuest
from .kvm import KvmGuest
from .openvz import OpenvzGuest
from .virtualbox import VirtualboxGuest
from .xen import XenGuest

# type key (as in the model's GUEST_TYPES) -> component class. A type missing here is declared
# in the model but not deployable yet: the program warns and the plan lists it as pending.
GUEST_COMPONENTS: dict[str, type] = {
    "kvm": KvmGuest,
    "docker": DockerGuest,
    "openvz": OpenvzGuest,
    "virtualbox": VirtualboxGuest,
    "xen": XenGuest,
}

__all__ = ["GUEST_COMPONENTS", "DockerGuest", "GuestContext", "KvmGuest", "OpenvzGuest", "VirtualboxGuest", "XenGuest"]

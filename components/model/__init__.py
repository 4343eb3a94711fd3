"""The stack's configuration as one immutable, validated ``Fleet`` (pure: no Pulumi import)."""

from .errors import FleetConfigError, Problem, key_path
from .fleet import MODEL_KEYS, SECRET_KEYS, Fleet, load_fleet
from .guests import GUEST_TYPES, DockerGuest, Guest, KvmGuest, OpenvzGuest, VirtualboxGuest, XenGuest
from .hosts import (
    CONSOLE_PORT,
    ROLE_CONFLICTS,
    ROLES_NEEDING_CPU_VIRT,
    ROLES_NEEDING_REBOOT,
    Bridge,
    Console,
    Host,
    Role,
)
from .lb import LoadBalancer

__all__ = [
    "CONSOLE_PORT",
    "GUEST_TYPES",
    "MODEL_KEYS",
    "ROLES_NEEDING_CPU_VIRT",
    "ROLES_NEEDING_REBOOT",
    "ROLE_CONFLICTS",
    "SECRET_KEYS",
    "Bridge",
    "Console",
    "DockerGuest",
    "Fleet",
    "FleetConfigError",
    "Guest",
    "Host",
    "KvmGuest",
    "LoadBalancer",
    "OpenvzGuest",
    "Problem",
    "Role",
    "VirtualboxGuest",
    "XenGuest",
    "key_path",
    "load_fleet",
]

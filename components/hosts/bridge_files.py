"""The persisted half of a host bridge: ifcfg files (el7, as in the seed) or NetworkManager keyfiles
(el9). They are read at boot; the live change is the bridge step's job (``bridge.create.sh.j2``).
"""

from __future__ import annotations

from ..model import Bridge
from ..remote.scripts import RemoteFile
from ..render import render

IFCFG_DIR = "/etc/sysconfig/network-scripts"
NM_DIR = "/etc/NetworkManager/system-connections"


def ifcfg_files(bridge: Bridge) -> tuple[RemoteFile, ...]:
    """ifcfg-<bridge> with the static address, ifcfg-<interface> enslaved to it (BRIDGE=)."""
    return (
        RemoteFile(f"{IFCFG_DIR}/ifcfg-{bridge.name}", render("ifcfg-bridge.j2", bridge=bridge)),
        RemoteFile(f"{IFCFG_DIR}/ifcfg-{bridge.interface}", render("ifcfg-port.j2", bridge=bridge)),
    )


def keyfiles(bridge: Bridge) -> tuple[RemoteFile, ...]:
    """NetworkManager keyfiles: the bridge with the static address and the interface as its port.

    autoconnect-priority 10 makes these win over the interface's original profile at boot.
    """
    return (
        RemoteFile(f"{NM_DIR}/virtfleet-{bridge.name}.nmconnection",
                   render("bridge.nmconnection.j2", bridge=bridge), 0o600),
        RemoteFile(f"{NM_DIR}/virtfleet-{bridge.name}-port-{bridge.interface}.nmconnection",
                   render("bridge-port.nmconnection.j2", bridge=bridge), 0o600),
    )  # fmt: skip


# network backend (components.osfamily) -> (files, command that makes the backend re-read them)
PERSISTENCE = {
    "network-scripts": (ifcfg_files, None),
    "NetworkManager": (keyfiles, "nmcli connection reload"),
}

"""The persisted half of a host bridge: ifcfg files (el7, as in the seed) or NetworkManager keyfiles
(el9). They are read at boot; the live change is the bridge step's job (``bridge.create.sh.j2``).

Built here rather than in ``templates/`` because every value is already validated by the model
(interface names, IPv4 addresses) and each file is a handful of KEY=value lines.
"""

from __future__ import annotations

from ..model import Bridge
from ..steps import RemoteFile

IFCFG_DIR = "/etc/sysconfig/network-scripts"
NM_DIR = "/etc/NetworkManager/system-connections"


def _lines(pairs: list[tuple[str, object]]) -> str:
    return "".join(f"{key}={value}\n" for key, value in pairs)


def ifcfg_files(bridge: Bridge) -> tuple[RemoteFile, ...]:
    """ifcfg-<bridge> with the static address, ifcfg-<interface> enslaved to it (BRIDGE=)."""
    header = "# virtfleet: bridge {name} (hosts[].bridges); edits are overwritten by pulumi up\n"
    bridge_pairs: list[tuple[str, object]] = [
        ("DEVICE", bridge.name), ("TYPE", "Bridge"), ("ONBOOT", "yes"), ("BOOTPROTO", "static"),
        ("NM_CONTROLLED", "no"), ("IPADDR", bridge.address.ip), ("PREFIX", bridge.address.network.prefixlen),
        ("STP", "yes" if bridge.stp else "no"), ("DELAY", 0),
    ]  # fmt: skip
    if bridge.gateway is not None:
        bridge_pairs.append(("GATEWAY", bridge.gateway))
    bridge_pairs += [(f"DNS{i}", dns) for i, dns in enumerate(bridge.dns, start=1)]
    port_pairs: list[tuple[str, object]] = [
        ("DEVICE", bridge.interface), ("TYPE", "Ethernet"), ("ONBOOT", "yes"), ("BOOTPROTO", "none"),
        ("NM_CONTROLLED", "no"), ("IPV6INIT", "no"), ("BRIDGE", bridge.name),
    ]  # fmt: skip
    head = header.format(name=bridge.name)
    return (
        RemoteFile(f"{IFCFG_DIR}/ifcfg-{bridge.name}", head + _lines(bridge_pairs)),
        RemoteFile(f"{IFCFG_DIR}/ifcfg-{bridge.interface}", head + _lines(port_pairs)),
    )


def keyfiles(bridge: Bridge) -> tuple[RemoteFile, ...]:
    """NetworkManager keyfiles: the bridge with the static address and the interface as its port.

    autoconnect-priority 10 makes these win over the interface's original profile at boot.
    """
    ipv4 = [("method", "manual"), ("address1", bridge.address)]
    if bridge.gateway is not None:
        ipv4[1] = ("address1", f"{bridge.address},{bridge.gateway}")
    if bridge.dns:
        ipv4.append(("dns", "".join(f"{d};" for d in bridge.dns)))
    bridge_text = (
        "[connection]\n" + _lines([("id", f"virtfleet-{bridge.name}"), ("type", "bridge"),
                                   ("interface-name", bridge.name), ("autoconnect-priority", 10)])
        + "\n[bridge]\n" + _lines([("stp", "true" if bridge.stp else "false")])
        + "\n[ipv4]\n" + _lines(ipv4)
        + "\n[ipv6]\n" + _lines([("method", "disabled")])
    )  # fmt: skip
    port_text = "[connection]\n" + _lines(
        [("id", f"virtfleet-{bridge.name}-port-{bridge.interface}"), ("type", "ethernet"),
         ("interface-name", bridge.interface), ("master", bridge.name), ("slave-type", "bridge"),
         ("autoconnect-priority", 10)]
    )  # fmt: skip
    return (
        RemoteFile(f"{NM_DIR}/virtfleet-{bridge.name}.nmconnection", bridge_text, 0o600),
        RemoteFile(f"{NM_DIR}/virtfleet-{bridge.name}-port-{bridge.interface}.nmconnection", port_text, 0o600),
    )


# network backend (components.osfamily) -> (files, command that makes the backend re-read them)
PERSISTENCE = {
    "network-scripts": (ifcfg_files, None),
    "NetworkManager": (keyfiles, "nmcli connection reload"),
}

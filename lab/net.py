"""The lab's one L2 network: a bridge in a "switch" namespace and a namespace per machine.

Every name starts with the lab's prefix (namespaces ``<prefix>-<machine>``, the switch's ports
``<prefix>-<n>``), so a leftover is recognisable and two labs never share anything. The root
namespace only ever sees namespaces being created and deleted: each veth is made inside the switch
namespace with its peer born in the machine's. There is no route out: the lab's machines reach
each other and their own loopback, nothing else.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import time

NAME = re.compile(r"^[a-z][a-z0-9-]*$")
MAX_PREFIX = 11  # "<prefix>-<n>" must fit the kernel's 15-character interface names


class NetError(RuntimeError):
    pass


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise NetError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def namespace_exists(namespace: str) -> bool:
    return os.path.exists(f"/run/netns/{namespace}")


def switch_namespace(prefix: str) -> str:
    return f"{prefix}-sw"


def create_switch(prefix: str) -> str:
    if not NAME.match(prefix) or len(prefix) > MAX_PREFIX:
        raise NetError(f"lab prefix {prefix!r}: want [a-z][a-z0-9-]*, at most {MAX_PREFIX} characters")
    namespace = switch_namespace(prefix)
    ip("netns", "add", namespace)
    ip("-n", namespace, "link", "add", "sw0", "type", "bridge")
    ip("-n", namespace, "link", "set", "sw0", "up")
    return namespace


def add_machine(prefix: str, index: int, name: str, addresses: list[str], interface: str = "eth0") -> str:
    """Namespace ``<prefix>-<name>`` with lo up and ``interface`` (holding ``addresses``) on the switch."""
    namespace = f"{prefix}-{name}"
    port = f"{prefix}-{index}"
    for address in addresses:
        ipaddress.ip_interface(address)  # a typo fails here, not as a timeout later
    ip("netns", "add", namespace)
    ip(
        "-n",
        switch_namespace(prefix),
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        interface,
        "netns",
        namespace,
    )
    ip("-n", switch_namespace(prefix), "link", "set", port, "master", "sw0", "up")
    ip("-n", namespace, "link", "set", "lo", "up")
    for address in addresses:
        ip("-n", namespace, "addr", "add", address, "dev", interface)
    ip("-n", namespace, "link", "set", interface, "up")
    return namespace


def kill_in(namespace: str) -> None:
    """Kill every process of the namespace (bounded)."""
    for _ in range(50):
        pids = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=10
        ).stdout.split()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.1)


def delete_namespace(namespace: str) -> list[str]:
    """Kill what runs in it, then delete it; returns what failed."""
    if not namespace_exists(namespace):
        return []
    kill_in(namespace)
    done = subprocess.run(["ip", "netns", "del", namespace], capture_output=True, text=True, timeout=10)
    return [f"ip netns del {namespace}: {done.stderr.strip()}"] if done.returncode else []


def lab_namespaces(prefix: str) -> list[str]:
    """Every namespace of the lab that exists now (also those a crashed run left behind)."""
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(f"{prefix}-"))

"""Small readers shared by the policies: addresses, resource labels, registered files, haproxy.cfg.

Everything here reads props as the Pulumi engine hands them to a policy (a read-only Mapping with
secrets unwrapped), so only Mapping/Sequence access is used, never dict or list methods.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HOST_TYPE = "virtfleet:host:HypervisorHost"
TIER_TYPE = "virtfleet:lb:HaproxyTier"
STEP_TYPE = "virtfleet:remote:RemoteStep"
FILES_TYPE = "virtfleet:render:RenderedFiles"
DOMAIN_TYPE = "libvirt:index/domain:Domain"
VOLUME_TYPE = "libvirt:index/volume:Volume"
CONTAINER_TYPE = "docker:index/container:Container"
REMOTE_IMAGE_TYPE = "docker:index/remoteImage:RemoteImage"
LIBVIRT_PROVIDER = "pulumi:providers:libvirt"
DOCKER_PROVIDER = "pulumi:providers:docker"
COMMAND_TYPES = ("command:remote:Command", "command:remote:CopyToRemote")

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
WILDCARDS = {"", "*", "0.0.0.0", "::", "[::]"}


def label(resource_type: str, name: str) -> str:
    """How a message names a resource: its short type and its name (``Domain web1``)."""
    return f"{resource_type.rsplit(':', 1)[-1]} {name}"


def is_loopback(host: Any) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; False for wildcards, LAN or public addresses."""
    if not isinstance(host, str):
        return False
    host = host.strip().strip("[]").split("/", 1)[0]
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_public_bind(host: str) -> bool:
    """A bind any network can reach: a wildcard, a global address, or a name that is not loopback."""
    host = host.strip().strip("[]")
    if host in WILDCARDS:
        return True
    if host.lower() in LOOPBACK_NAMES:
        return False
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        return True  # a DNS name: where it resolves is not ours to know, so it may be public


def as_list(value: Any) -> list:
    """A Sequence prop as a list (a single object counts as one); None as empty."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return [value]


def registered_files(props: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(path, text) of the files a RemoteStep or RenderedFiles registers."""
    files = props.get("files")
    if isinstance(files, Mapping):
        for path in files:
            text = files[path]
            if isinstance(text, str):
                yield path, text


@dataclass
class CfgSection:
    """One section of an haproxy.cfg: ``kind`` (frontend, backend, listen, ...), name, lines as tokens."""

    kind: str
    name: str
    lines: list[list[str]] = field(default_factory=list)

    def directives(self, *head: str) -> list[list[str]]:
        return [tokens for tokens in self.lines if tokens[: len(head)] == list(head)]


SECTION_KINDS = {"global", "defaults", "frontend", "backend", "listen", "ring", "peers", "resolvers", "mailers"}


def _tokens(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote: haproxy would refuse it too; read it plainly
        return line.split("#", 1)[0].split()


def parse_haproxy_cfg(text: str) -> list[CfgSection]:
    """Sections of an haproxy.cfg in order; lines before the first section are ignored."""
    sections: list[CfgSection] = []
    for raw in text.splitlines():
        tokens = _tokens(raw)
        if not tokens:
            continue
        if tokens[0] in SECTION_KINDS:
            sections.append(CfgSection(tokens[0], tokens[1] if len(tokens) > 1 else ""))
        elif sections:
            sections[-1].lines.append(tokens)
    return sections


def haproxy_configs(props: Mapping[str, Any]) -> Iterator[tuple[str, list[CfgSection]]]:
    """(path, sections) of every haproxy.cfg a resource registers."""
    for path, text in registered_files(props):
        if path.endswith("/haproxy.cfg"):
            yield path, parse_haproxy_cfg(text)


def bind_host(address: str) -> str:
    """The host part of an haproxy ``bind`` address (``10.0.0.10:8404``, ``[::]:80``, ``:80``)."""
    if address.startswith("["):
        return address[1 : address.find("]")]
    if address.count(":") > 1:  # a bare IPv6 address with a port after the last colon
        return address.rsplit(":", 1)[0]
    return address.rsplit(":", 1)[0] if ":" in address else address

"""Types shared by hosts, guests and the load-balancer tier.

Names end up in shell scripts, file paths, libvirt domain names and DNS, so the type itself
refuses anything that is not a DNS label: no metacharacters, no slashes, no path traversal.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel


class Frozen(BaseModel):
    """Base of every config object: immutable, camelCase keys, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


Name = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$"),
    Field(description="lowercase DNS label: a-z, 0-9 and '-', starting with a letter, at most 63"),
]

# Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no '/' or whitespace.
InterfaceName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$")]

Port = Annotated[int, Field(ge=1, le=65535)]


def _check_mac(value: str) -> str:
    if not re.fullmatch(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}", value.lower()):
        raise ValueError("a MAC address is six hex pairs separated by ':', e.g. 52:54:00:12:34:56")
    if int(value[:2], 16) & 1:
        raise ValueError("a multicast MAC cannot be a guest's address; the first octet must be even")
    return value.lower()


MacAddress = Annotated[str, AfterValidator(_check_mac)]

_HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)


def _check_host_key(value: str) -> str:
    parts = value.split()
    if len(parts) < 2 or parts[0] not in _HOST_KEY_TYPES or not re.fullmatch(r"[A-Za-z0-9+/]+=*", parts[1]):
        raise ValueError(
            "a host key is '<type> <base64>' as printed by `ssh-keyscan <host>` or found in "
            f"/etc/ssh/ssh_host_*_key.pub; type one of {', '.join(_HOST_KEY_TYPES)}"
        )
    return f"{parts[0]} {parts[1]}"


HostKey = Annotated[str, AfterValidator(_check_host_key)]

# Package names, docker images, URLs and similar values are quoted wherever they are used,
# but we still refuse control characters so nothing can break a line in a rendered file.
SafeText = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$", min_length=1)]

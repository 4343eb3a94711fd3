"""Types shared by hosts, guests and the load-balancer tier.

Names end up in shell scripts, file paths, libvirt domain names and DNS, so the type itself
refuses anything that is not a DNS label: no metacharacters, no slashes, no path traversal.
"""

from __future__ import annotations

import re
from functools import cache
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, StringConstraints
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
    if value == "00:00:00:00:00:00":
        raise ValueError("the all-zero MAC is reserved (no NIC may use it)")
    return value.lower()


MacAddress = Annotated[
    str,
    AfterValidator(_check_mac),
    Field(description="six hex pairs with ':' (52:54:00:12:34:56); unicast (first octet even), not all-zero"),
]

_HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)


def _parse_public_key(value: str, what: str) -> tuple[str, str, str]:
    """``(type, base64 body, comment)`` of an OpenSSH public key, parsed for real by ``cryptography``:
    the body must decode to a key whose embedded type is the one the line names."""
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key  # only when keys are set

    if _PRIVATE_LABEL in value:
        raise ValueError(f"this is a private key; {what} takes the public half (the .pub file), never the secret")
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError(f"{what} is one line: no newlines or control characters")
    parts = value.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in _HOST_KEY_TYPES:
        raise ValueError(
            f"{what} is '<type> <base64> [comment]' as in a .pub file or `ssh-keyscan` output; "
            f"type one of {', '.join(_HOST_KEY_TYPES)} (no options before it)"
        )
    try:
        load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{what}: the base64 body is not a {parts[0]} key ({err}); copy the whole line again"
        ) from None
    return parts[0], parts[1], parts[2] if len(parts) > 2 else ""


# A key file's armour line, "-" x 5, BEGIN, its label, "-" x 5; a private key's label ends in _PRIVATE_LABEL
# (RSA, EC, OPENSSH, or none for PKCS#8).
_ARMOUR = re.compile(r"^-{5}BEGIN ([A-Z0-9 ]+)-{5}$", re.M)
_PRIVATE_LABEL = "PRIVATE KEY"


def private_key_problem(value: str) -> str | None:
    """Why ``value`` is not an SSH private key every consumer accepts, or None. Never quotes the key.

    OpenSSH's own armour and PEM (PKCS#1/PKCS#8) keys are parsed for real
    by ``cryptography``, unencrypted: pulumi-command, libvirt's SSH client and OpenSSH all read it
    with no one to type a passphrase. Trailing newlines do not matter here (``normalized_private_key``)."""
    from cryptography.exceptions import UnsupportedAlgorithm  # only when a key is set
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_ssh_private_key

    text = normalized_private_key(value)
    label = _ARMOUR.search(text)
    if label is None or not label.group(1).endswith(_PRIVATE_LABEL):
        return "is not a private key file's text (an OpenSSH or PEM private key, as ssh-keygen writes it)"
    data = text.encode()
    loader = load_ssh_private_key if label.group(1) == f"OPENSSH {_PRIVATE_LABEL}" else load_pem_private_key
    try:
        loader(data, password=None)
    except TypeError:
        return "is encrypted with a passphrase; virtfleet's SSH clients cannot ask for it: use an unencrypted key"
    except (ValueError, UnsupportedAlgorithm) as err:
        return f"does not parse as a private key ({type(err).__name__}); set the whole file again"
    return None


def normalized_private_key(value: str) -> str:
    """The key as a file holds it: line breaks as LF, ending in exactly one newline. ``pulumi config set``
    drops the final newline of a value read from stdin, and OpenSSH refuses a key file without it
    (``Load key ...: error in libcrypto``)."""
    return value.replace("\r\n", "\n").strip() + "\n"


def _check_host_key(value: str) -> str:
    kind, body, _comment = _parse_public_key(
        value, "a host key (from `ssh-keyscan <host>` or /etc/ssh/ssh_host_*_key.pub)"
    )
    return f"{kind} {body}"


HostKey = Annotated[
    str,
    AfterValidator(_check_host_key),
    Field(description="'<type> <base64>' from `ssh-keyscan -t ed25519 <address>`, parsed as a real key"),
]


def _check_public_key(value: str) -> str:
    kind, body, comment = _parse_public_key(value, "an authorized key")
    return f"{kind} {body} {comment}".rstrip()


PublicKey = Annotated[
    str,
    AfterValidator(_check_public_key),
    Field(
        description="OpenSSH public key '<type> <base64> [comment]' (ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp*), "
        "parsed as a real key; no options, no newlines; a private key is refused"
    ),
]


def _check_dns_name(value: str) -> str:
    """RFC 1123 host/domain name: dot-separated labels of a-z, 0-9 and '-', none empty or edged by '-'."""
    if not value or len(value) > 253:
        raise ValueError("a DNS name has 1 to 253 characters")
    if value.startswith("-"):
        raise ValueError("must not start with '-' (it would read as a command-line option)")
    labels = value.lower().split(".")
    if any(label == "" for label in labels):
        raise ValueError("has an empty label (a leading, trailing or doubled '.')")
    for label in labels:
        if len(label) > 63 or not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", label):
            raise ValueError(
                f"label {label!r} is not RFC 1123: a-z, 0-9 and '-', at most 63, not starting or ending with '-'"
            )
    return value.lower()


DnsName = Annotated[
    str,
    AfterValidator(_check_dns_name),
    Field(description="DNS name (RFC 1123): labels of a-z, 0-9, '-' joined by '.', e.g. example.internal"),
]


def _check_host_address(value: str) -> str:
    if "@" in value:
        raise ValueError("an address only: put the login user in ssh.user, not user@host")
    if value.startswith("-"):
        raise ValueError("must not start with '-' (it would read as an ssh option)")
    try:
        return str(IPv4Address(value))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", value):
        raise ValueError("is not a valid IPv4 address") from None
    if ":" in value:
        raise ValueError("an address only: put the SSH port in the port key, not host:port (IPv6 is not supported)")
    return _check_dns_name(value)


HostAddress = Annotated[
    str,
    AfterValidator(_check_host_address),
    Field(description="IPv4 address or DNS name (RFC 1123); no user@, no :port, no leading '-'"),
]


@cache
def _time_zones() -> frozenset[str]:
    from zoneinfo import available_timezones  # the tzdata package when the system has no zoneinfo

    return frozenset(available_timezones())


def _check_timezone(value: str) -> str:
    if value not in _time_zones():
        raise ValueError("is not a time zone of the tz database; use a name such as UTC or Europe/London")
    return value


TimeZone = Annotated[
    str, AfterValidator(_check_timezone), Field(description="a tz database zone: UTC, Europe/London, Asia/Shanghai")
]

# RPM names: what rpm allows in a package name (letters, digits and ._+-), not starting with '-' so it
# never reads as an option to dnf/yum (cloud-init passes packages to them) or as a kickstart exclusion.
_RPM = r"[A-Za-z0-9_+][A-Za-z0-9._+-]*"
RpmPackage = Annotated[
    str,
    StringConstraints(pattern=rf"^(?:{_RPM}|@\^?{_RPM})$", max_length=200),
    Field(description="an RPM package name (httpd) or a group id with '@' (@core, @^minimal-environment)"),
]
KickstartPackage = Annotated[
    str,
    StringConstraints(pattern=rf"^(?:-?@?{_RPM}|@\^{_RPM})$", max_length=200),
    Field(description="a %packages line: package name, @group id, @^environment id, or -name / -@group to exclude"),
]

EnvName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=255),
    Field(description="environment variable name: letters, digits and '_', not starting with a digit"),
]


def _check_plain_url(value):
    text = str(value)
    if not re.fullmatch(r"[A-Za-z0-9._~:/?#@%+=,&-]+", text):
        raise ValueError(
            "the URL may hold only letters, digits and ._~:/?#@%+=,&- (it lands in a kickstart line and "
            "a kernel command line); percent-encode anything else"
        )
    return value


PlainUrl = Annotated[
    HttpUrl,
    AfterValidator(_check_plain_url),
    Field(description="http(s) URL of letters, digits and ._~:/?#@%+=,&- (percent-encode the rest)"),
]

# Package names, docker images, URLs and similar values are quoted wherever they are used,
# but we still refuse control characters so nothing can break a line in a rendered file.
SafeText = Annotated[
    str,
    StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$", min_length=1),
    Field(description="one line of text: no newlines or control characters"),
]


def _check_cidr(value: str) -> str:
    text = str(value)
    try:
        return str(IPv4Network(text))  # normalized: a bare address becomes ADDRESS/32
    except ValueError:
        pass
    try:
        network = IPv4Network(text, strict=False)
    except ValueError:
        raise ValueError("is not an IPv4 network in CIDR form, such as 10.0.0.0/24") from None
    raise ValueError(f"has host bits set: the network is {network}")


Cidr = Annotated[
    str,
    AfterValidator(_check_cidr),
    Field(description="IPv4 network, CIDR, without host bits: 10.0.0.0/24 (a single address: 10.0.0.5/32)"),
]

# One line for an INI-style value (cockpit.conf's LoginTitle, a GLib key file): printable text, no
# control characters, no backslash (the key file's escape character), no blank at either end (the
# key file trims it), at most 100 characters.
_TITLE_CHAR = r"[^\x00-\x1f\x7f\\]"
_TITLE_EDGE = r"[^\x00-\x20\x7f\\]"
ConsoleTitle = Annotated[
    str,
    StringConstraints(pattern=rf"^{_TITLE_EDGE}(?:{_TITLE_CHAR}{{0,98}}{_TITLE_EDGE})?$"),
    Field(
        description="one line of 1 to 100 printable characters: no control characters or backslash, "
        "no blank at either end"
    ),
]

"""The validated stack: ``load_fleet(config) -> Fleet``, or ``FleetConfigError`` listing every problem."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from difflib import get_close_matches
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError

from .common import DnsName, Frozen, private_key_problem
from .errors import NAMESPACE, FleetConfigError, Problem, key_path, pydantic_problems
from .guests import GUEST_TYPES, Guest
from .hosts import Host, SshAccess
from .lb import LoadBalancer

# Secrets are never part of the model: components receive them as Pulumi secret Outputs.
# The model only checks they are stored as secrets (never in plain text) and present when needed.
SECRET_KEYS = {
    "sshPrivateKey": "the SSH private key virtfleet logs in with (unless ssh.useAgent is true)",
    "statsPassword": "the HAProxy stats password (generated with pulumi-random when absent)",
    "rootPassword": "the root password of kickstart-installed guests and OpenVZ containers (generated when absent)",
    "tlsCertificate": "PEM certificate and key for the HTTPS frontend (self-signed when absent)",
    "consoleCertificate": "PEM certificate and key for every host's console (Cockpit; one per host, self-signed "
    "for its names, when absent)",
}
MODEL_KEYS = ("domain", "ssh", "hosts", "guests", "loadBalancer")


class Fleet(Frozen):
    domain: DnsName = Field("virtfleet.internal", description="DNS domain of every machine of the stack (RFC 1123)")
    ssh: SshAccess = Field(SshAccess(), description="how virtfleet logs in to the hosts over SSH")
    hosts: tuple[Host, ...] = Field(min_length=1, description="the hypervisor hosts")
    guests: tuple[Guest, ...] = Field((), description="the guests of every type, each on one host")
    load_balancer: LoadBalancer | None = Field(None, description="the HAProxy tier in front of web server guests")

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def guests_on(self, host: str) -> tuple[Guest, ...]:
        return tuple(g for g in self.guests if g.host == host)

    def guest(self, name: str) -> Guest:
        return next(g for g in self.guests if g.name == name)

    def machine_address(self, name: str) -> str:
        """The address that reaches a host or guest by name (for SSH, /etc/hosts, backends)."""
        for host in self.hosts:
            if host.name == name:
                return host.address
        guest = self.guest(name)
        if guest.network is None:
            return self.host(guest.host).address
        return str(guest.network.ip)


def _parse_one(model: type[Frozen], raw: Any, path: tuple, problems: list[Problem]):
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        problems.extend(pydantic_problems(path, err.errors()))
        return None


def _parse_list(raw: Any, key: str, parse_item, problems: list[Problem]) -> list[tuple[int, Any]]:
    """Parse each entry on its own, so one bad entry does not hide the others' problems."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(Problem(key_path(key), "must be a list", type(raw).__name__))
        return []
    return [(i, item) for i, entry in enumerate(raw) if (item := parse_item(entry, i)) is not None]


def _failed_names(raw: Any, parsed: list[tuple[int, Any]]) -> set[str]:
    """Names of list entries that did not parse (their own problems are reported already)."""
    if not isinstance(raw, list):
        return set()
    good = {i for i, _ in parsed}
    return {
        e["name"] for i, e in enumerate(raw) if i not in good and isinstance(e, dict) and isinstance(e.get("name"), str)
    }


def _parse_guest(raw: Any, index: int, problems: list[Problem]) -> Guest | None:
    if not isinstance(raw, dict):
        problems.append(Problem(key_path("guests", index), "each guest is a mapping of keys"))
        return None
    kind = raw.get("type")
    model = GUEST_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        problems.append(Problem(key_path("guests", index, "type"), f"must be one of {', '.join(GUEST_TYPES)}", kind))
        return None
    return _parse_one(model, raw, ("guests", index), problems)


# Config namespaces of the providers the program uses: their keys are theirs to read.
PROVIDER_NAMESPACES = frozenset({"pulumi", "libvirt", "docker", "command", "random", "tls"})


def foreign_key_problems(full_keys: Iterable[str]) -> list[Problem]:
    """Keys under a namespace that is neither ours nor a provider's, but close to ``virtfleet``: a typo
    that would otherwise be ignored silently (and a default used instead)."""
    problems = []
    for full_key in full_keys:
        namespace, _, key = full_key.partition(":")
        if namespace == NAMESPACE or namespace in PROVIDER_NAMESPACES:
            continue
        if namespace.lower() == NAMESPACE or get_close_matches(namespace.lower(), [NAMESPACE], cutoff=0.75):
            problems.append(
                Problem(
                    full_key,
                    f"namespace {namespace!r} looks like a misspelling of {NAMESPACE!r}; this key is ignored "
                    f"as written: rename it to {NAMESPACE}:{key}",
                )
            )
    return problems


def uses_agent(config: Mapping[str, Any]) -> bool:
    """``ssh.useAgent`` as the model reads it ("false" is false); False when ``ssh`` is invalid
    (``load_fleet`` reports why)."""
    try:
        return SshAccess.model_validate(config.get("ssh") or {}).use_agent
    except ValidationError:
        return False


def load_fleet(
    config: Mapping[str, Any],
    secret_keys: frozenset[str] | set[str] = frozenset(),
    other_keys: Iterable[str] = (),
) -> Fleet:
    """Validate one stack's ``virtfleet:*`` config (keys without the namespace, values parsed).

    ``secret_keys`` names the keys the stack stores as secrets; ``other_keys`` are the stack's
    full keys outside the ``virtfleet`` namespace (checked for a misspelled namespace). Every
    problem found is reported at once; nothing is returned unless the whole configuration is valid.
    """
    from .rules import Invalid, cross_check  # rules import Fleet's parts; keep the import graph one-way

    # Pulumi.yaml gives optional keys empty defaults ("" and {}): those mean "not set".
    config = {k: v for k, v in config.items() if v not in ("", {}, None)}
    problems: list[Problem] = foreign_key_problems(other_keys)
    for key in config:
        if key not in MODEL_KEYS and key not in SECRET_KEYS:
            known = ", ".join([*MODEL_KEYS, *SECRET_KEYS])
            problems.append(Problem(key_path(key), f"unknown key; virtfleet's keys are {known}"))
    for key in SECRET_KEYS:
        if key in config and key not in secret_keys:
            problems.append(Problem(key_path(key), f"is stored in plain text; run `pulumi config set --secret {key}`"))

    parts: dict[str, Any] = {}
    if config.get("domain") is not None:
        domain = config["domain"]
        try:
            parts["domain"] = TypeAdapter(DnsName).validate_python(domain, strict=True)
        except ValidationError as err:
            why = err.errors()[0]["msg"].removeprefix("Value error, ")
            problems.append(
                Problem(key_path("domain"), f"must be a DNS domain such as example.internal: {why}", domain)
            )
    if config.get("ssh") is not None:
        parts["ssh"] = _parse_one(SshAccess, config["ssh"], ("ssh",), problems)
    parts["hosts"] = _parse_list(
        config.get("hosts"), "hosts", lambda raw, i: _parse_one(Host, raw, ("hosts", i), problems), problems
    )
    if not config.get("hosts"):
        problems.append(Problem(key_path("hosts"), "at least one host is required"))
    parts["guests"] = _parse_list(
        config.get("guests"), "guests", lambda raw, i: _parse_guest(raw, i, problems), problems
    )
    if config.get("loadBalancer") is not None:
        parts["load_balancer"] = _parse_one(LoadBalancer, config["loadBalancer"], ("loadBalancer",), problems)

    if isinstance(config.get("sshPrivateKey"), str) and (why := private_key_problem(config["sshPrivateKey"])):
        problems.append(Problem(key_path("sshPrivateKey"), why))
    if not uses_agent(config) and "sshPrivateKey" not in secret_keys:
        problems.append(
            Problem(
                key_path("sshPrivateKey"),
                "is required unless ssh.useAgent is true: "
                "`pulumi config set --secret virtfleet:sshPrivateKey < ~/.ssh/id_ed25519`",
            )
        )

    # Cross-field rules run on whatever did parse, so one run shows every problem; a reference to an
    # entry that failed on its own says so once instead of "no such host".
    invalid = Invalid(
        _failed_names(config.get("hosts"), parts["hosts"]), _failed_names(config.get("guests"), parts["guests"])
    )
    problems.extend(cross_check(parts, invalid))
    if problems:
        raise FleetConfigError(problems)
    parts["hosts"] = tuple(host for _, host in parts["hosts"])
    parts["guests"] = tuple(guest for _, guest in parts["guests"])
    return Fleet.model_validate({k: v for k, v in parts.items() if v is not None})

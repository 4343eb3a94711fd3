"""The configuration reference in docs/reference.md, generated from the model so it cannot drift.

``python -m plan.reference`` prints it; ``python -m plan.reference --write`` replaces the block
between the markers in docs/reference.md; a test fails when the two differ.
"""

from __future__ import annotations

import sys
import types
import typing
from enum import Enum
from ipaddress import IPv4Address, IPv4Interface

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from components.model import GUEST_TYPES
from components.model.fleet import SECRET_KEYS, Fleet
from components.model.guests import CloudImage, Guest, GuestNetwork, Installer, PortMapping
from components.model.hosts import Bridge, Capacity, Console, Host, JumpHost, SshAccess
from components.model.lb import ClientLimits, Endpoint, HealthCheck, Https, LoadBalancer, Stats

from .run import ROOT

BEGIN, END = "<!-- BEGIN CONFIG REFERENCE -->", "<!-- END CONFIG REFERENCE -->"
PAGE = ROOT / "docs" / "reference.md"
SECTIONS: list[tuple[str, type[BaseModel], set[str]]] = [
    ("`virtfleet:domain`, `virtfleet:ssh`", Fleet, {"hosts", "guests", "load_balancer", "ssh"}),
    ("`ssh`", SshAccess, set()),
    ("`ssh.jumpHost`", JumpHost, set()),
    ("`hosts[]`", Host, set()),
    ("`hosts[].capacity`", Capacity, set()),
    ("`hosts[].bridges[]`", Bridge, set()),
    ("`hosts[].console` (the console role)", Console, set()),
    ("`guests[]` (every type)", Guest, set()),
    ("`guests[].network`", GuestNetwork, set()),
    *[(f"`guests[]` with `type: {t}`", cls, set(Guest.model_fields)) for t, cls in GUEST_TYPES.items()],
    ("`guests[].image` (kvm)", CloudImage, set()),
    ("`guests[].install` (kvm)", Installer, set()),
    ("`guests[].ports[]` (docker)", PortMapping, set()),
    ("`loadBalancer`", LoadBalancer, set()),
    ("`loadBalancer.frontend`, `loadBalancer.stats.bind`", Endpoint, set()),
    ("`loadBalancer.https`", Https, set()),
    ("`loadBalancer.healthCheck`", HealthCheck, set()),
    ("`loadBalancer.stats`", Stats, set()),
    ("`loadBalancer.clientLimits`", ClientLimits, set()),
]


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args) + " (optional)"
    if origin is tuple:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "map"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _forms(hint) -> list[str]:
    """The accepted form of a type, from the model's own types: their descriptions and bounds."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(hint)
        found: list[str] = []
        for extra in extras:
            if isinstance(extra, FieldInfo):
                if extra.description:
                    return [extra.description]
                found += _bounds(extra.metadata)
            elif getattr(extra, "pattern", None):
                found.append(f"matches `{extra.pattern}`")
        return found or _forms(base)
    if origin is dict:
        key, value = typing.get_args(hint)
        keys, values = "; ".join(_forms(key)), "; ".join(_forms(value))
        return [f"{keys} to {values}" if keys else f"each value {values}"] if values else []
    if origin in (typing.Union, types.UnionType, tuple):
        return [form for arg in typing.get_args(hint) for form in _forms(arg) if arg is not Ellipsis]
    return [_PLAIN_FORMS[hint]] if hint in _PLAIN_FORMS else []


_PLAIN_FORMS = {
    IPv4Address: "dotted IPv4 address (10.0.0.5)",
    IPv4Interface: "IPv4 address with its prefix, CIDR (10.0.0.2/24)",
}


def _bounds(metadata) -> list[str]:
    low = next((m.ge for m in metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in metadata if hasattr(m, "le")), None)
    pattern = next((m.pattern for m in metadata if getattr(m, "pattern", None)), None)
    found = []
    if low is not None or high is not None:
        found.append(f"{'' if low is None else low}..{'' if high is None else high}")
    if pattern:
        found.append(f"matches `{pattern}`")
    return found


def _accepts(model: type[BaseModel], name: str, field) -> str:
    forms = _forms(typing.get_type_hints(model, include_extras=True)[name]) or _bounds(field.metadata)
    forms = [f for f in dict.fromkeys(forms) if f not in (field.description or "")]
    return "; ".join(forms).replace("|", "\\|")


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.default_factory() if field.default_factory else field.default
    if isinstance(value, BaseModel | tuple | dict) and not value:
        return "empty"
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{value}`" if value is not None else "none"


def reference() -> str:
    lines = [BEGIN, ""]
    for title, model, skip in SECTIONS:
        lines += [
            f"## {title}",
            "",
            "| key | type | default | meaning | accepted form |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, field in model.model_fields.items():
            if name in skip:
                continue
            key = field.alias or name
            meaning = field.description or ""
            accepts = _accepts(model, name, field)
            lines.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {meaning} | {accepts} |")
        lines.append("")
    lines += [
        "## Secrets (set with `pulumi config set --secret virtfleet:<key>`)",
        "",
        "| key | meaning |",
        "| --- | --- |",
    ]
    lines += [f"| `{key}` | {meaning} |" for key, meaning in SECRET_KEYS.items()]
    lines += ["", END]
    return "\n".join(lines)


def docs_block() -> str:
    text = PAGE.read_text()
    return text[text.index(BEGIN) : text.index(END) + len(END)]


def main() -> int:
    generated = reference()
    if "--write" in sys.argv:
        PAGE.write_text(PAGE.read_text().replace(docs_block(), generated))
    else:
        print(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())

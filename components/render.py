"""Pure rendering: one Jinja2 environment for every file and script virtfleet produces.

A template is named after the file it produces (``haproxy.cfg.j2``, ``ifcfg-bridge.j2``);
step scripts are ``<step>.sh.j2``. StrictUndefined turns a missing value into an error at render
time, and ``shquote`` is the only way a value enters a shell script.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def shquote(value: Any) -> str:
    """Quote one value for POSIX sh; lists become space-separated quoted words."""
    if isinstance(value, list | tuple):
        return " ".join(shlex.quote(str(v)) for v in value)
    return shlex.quote(str(value))


# a JSON surrogate-pair escape, not itself escaped (an even run of backslashes before it)
_SURROGATE_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def yamlquote(value: Any) -> str:
    """``value`` as a YAML flow value in JSON syntax (double-quoted strings, escapes for every control
    and non-ASCII character), which YAML reads verbatim, with one difference from JSON: a character
    beyond U+FFFF is written ``\\UXXXXXXXX``, as YAML reads a JSON surrogate pair as two characters."""

    def astral(match: re.Match) -> str:
        high, low = int(match[2], 16), int(match[3], 16)
        return match[1] + f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    return _SURROGATE_PAIR.sub(astral, json.dumps(value, sort_keys=True))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["shquote"] = shquote
    env.filters["tojson"] = lambda v: json.dumps(v, sort_keys=True)
    env.filters["yamlquote"] = yamlquote
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context``; raises on any undefined value."""
    return environment().get_template(template).render(**context)


def digest(*parts: str | bytes) -> str:
    """A stable short hash of rendered content (the triggers of a remote step)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:16]

"""Pure rendering: one Jinja2 environment for every file and script virtfleet produces.

A template is named after the file it produces (``haproxy.cfg.j2``, ``ifcfg-bridge.j2``);
step scripts are ``<step>.sh.j2``. StrictUndefined turns a missing value into an error at render
time, and ``shquote`` is the only way a value enters a shell script.
"""

from __future__ import annotations

import hashlib
import json
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

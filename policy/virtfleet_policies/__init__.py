"""The virtfleet policy pack's policies, importable without starting the pack's gRPC server.

``policy/__main__.py`` serves them to the Pulumi engine (``--policy-pack policy``); ``make plan``
runs the same functions over its recording (``plan/policy.py``).
"""

from __future__ import annotations

from . import access, containers, estate

PACK_NAME = "virtfleet"
POLICIES = [*access.POLICIES, *containers.POLICIES, *estate.POLICIES]
# Rules about who can reach or run what: mandatory in staging as well as prod (policy/config/).
SECURITY = {p.name for p in access.POLICIES + containers.POLICIES} | {estate.images_pinned.name}

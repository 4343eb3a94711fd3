"""A record of files that reach a machine by a route other than a remote step.

Cloud-init seeds and kickstart files travel inside libvirt resources; ``RenderedFiles`` names the
machine and path each one ends at, so the offline plan can write them out and tests can check
them with their real tools. It creates no resource of its own.
"""

from __future__ import annotations

import pulumi


class RenderedFiles(pulumi.ComponentResource):
    """Type ``virtfleet:render:RenderedFiles``: ``files`` maps absolute path -> content (or Output)."""

    def __init__(self, name: str, *, machine: str, files: dict, opts: pulumi.ResourceOptions | None = None):
        super().__init__("virtfleet:render:RenderedFiles", name, {"machine": machine, "files": files}, opts)
        self.register_outputs({})

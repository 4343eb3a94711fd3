"""Downloads shared by the Xen guests of one host (a cloud image, an install tree's PV kernel and
initrd): one host step per (host, URL), like the KVM guests' base volumes (``kvm_images``)."""

from __future__ import annotations

import pulumi

from ..remote.step import RemoteStep
from .xen_config import render_base_image_step


class XenBaseImages:
    """Registry of the host-wide download steps: ``step(host_component, url, sha256)`` makes each once,
    parented to the host (deleting the guest that asked first must not delete another's base)."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, str], RemoteStep] = {}

    def step(self, host, url: str, sha256: str | None, suffix: str, kind: str = "image") -> RemoteStep:
        key = (host.host.name, url)
        if key not in self._steps:
            rendered = render_base_image_step(host.host.name, url, sha256, suffix)
            self._steps[key] = RemoteStep(
                rendered,
                machine=host.host.name,
                name=rendered.name,
                connection=host.connection,
                download={"url": url, "sha256": sha256 or "", "kind": kind},
                opts=pulumi.ResourceOptions(parent=host, depends_on=host.ready),
            )
        return self._steps[key]

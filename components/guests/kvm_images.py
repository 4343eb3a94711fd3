"""Downloads shared by the KVM guests of one host (cloud images, installer kernels), verified first.

Each (host, source URL) is one host step (``base_image.render_base_image_step``) that downloads
the file into libvirt's ``default`` pool directory with the host's own ``curl``, checks the
stack's sha256 before renaming it into place, and refreshes the pool: the file is then the volume
every guest's disk is a qcow2 overlay on (``base_volume_name``), or the kernel an installer boots.

Why not a ``libvirt.Volume`` with ``source=URL``: pulumi-libvirt 0.5.4 downloads it with no
checksum (whatever the server returns boots) and refuses servers that ignore HTTP ``Range``.
The registry is an explicit object, one per stack run, handed to each KvmGuest; step names come
from a hash of the URL, never from list positions or guest order, so adding or removing a guest
never renames (and so never replaces) a shared download.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from ..hosts.roles import LIBVIRT_POOLS
from ..remote.step import RemoteStep
from .base_image import base_file_name, render_base_image_step

POOL, POOL_DIR = LIBVIRT_POOLS[0]


@dataclass(frozen=True)
class BaseImage:
    step: RemoteStep  # the download; a guest's resources depend on it
    volume: str  # its volume name in POOL
    path: str  # its path on the host (a kernel's or initrd's <kernel>/<initrd>)


def base_image_names(url: str, suffix: str) -> tuple[str, str]:
    """(step name, file/volume name) of the shared download of ``url`` on a host."""
    file_name = base_file_name(url, suffix)
    return "kvm-" + file_name.removeprefix("virtfleet-").removesuffix(suffix), file_name


class KvmBaseImages:
    """Registry of the host-wide download steps: ``image(host_component, url, sha256)`` makes each once."""

    def __init__(self) -> None:
        self._images: dict[tuple[str, str], BaseImage] = {}

    def image(self, host, url: str, sha256: str | None, *, suffix: str = ".qcow2", kind: str = "image") -> BaseImage:
        """The shared download of ``url`` on ``host`` (a HypervisorHost), made on first use.

        It is parented to the host, not to a guest: deleting the guest that happened to ask
        first must not delete a file other guests' disks are backed by.
        """
        key = (host.host.name, url)
        if key not in self._images:
            name, file_name = base_image_names(url, suffix)
            path = f"{POOL_DIR}/{file_name}"
            rendered = render_base_image_step(host.host.name, name, url, sha256, path, pool=POOL)
            step = RemoteStep(
                rendered,
                machine=host.host.name,
                name=name,
                connection=host.connection,
                download={"url": url, "sha256": sha256 or "", "kind": kind},
                opts=pulumi.ResourceOptions(parent=host, depends_on=host.ready),
            )
            self._images[key] = BaseImage(step, file_name, path)
        return self._images[key]

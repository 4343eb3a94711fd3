"""Downloads shared by the guests of one host (a cloud image, an install tree's kernel and initrd):
one host step per (host, URL), verified against the stack's sha256 before any guest uses it.

Xen guests read the file from ``/var/lib/xen/images``; KVM guests' disks are qcow2 overlays on it
as a volume of libvirt's ``default`` pool (the step refreshes the pool so libvirt lists it).
The download is the host's own (``curl``), like the seed's, so an image travels once, straight to
the host that needs it, and only a file whose sha256 matches is ever renamed into place.
"""

from __future__ import annotations

import hashlib
import re

from ..remote.scripts import RenderedStep, render_step


def base_file_name(url: str, suffix: str) -> str:
    """``virtfleet-base-<stem>-<hash of the URL><suffix>``: readable, and two trees' equal file names apart."""
    tag = hashlib.sha256(url.encode()).hexdigest()[:10]
    stem = re.sub(r"[^a-z0-9]+", "-", url.rstrip("/").rsplit("/", 1)[-1].lower())[:40].strip("-")
    return f"virtfleet-base-{stem}-{tag}{suffix}"


def render_base_image_step(
    host: str, name: str, url: str, sha256: str | None, path: str, *, pool: str | None = None
) -> RenderedStep:
    """The host step that downloads ``url`` to ``path`` once (verified when a sha256 is given);
    with ``pool``, libvirt's pool of that name is refreshed so the file is one of its volumes."""
    return render_step(host, name, "base-image", url=url, sha256=sha256 or "", path=path, pool=pool or "")

"""Downloaded-once volumes shared by the KVM guests of one host (cloud images, installer kernels).

A base image is one ``libvirt.Volume`` per (host, source URL); every guest's disk is a qcow2
overlay on it (``base_volume_id``), so two guests on one host and image download it once.
The registry is an explicit object, one per stack run, handed to each KvmGuest; resource names
come from the host name and a hash of the URL, never from list positions or guest order, so
adding or removing a guest never renames (and so never replaces) a shared volume.
"""

from __future__ import annotations

import hashlib
import re

import pulumi
import pulumi_libvirt as libvirt

POOL = "default"


def base_volume_name(host: str, url: str, suffix: str) -> tuple[str, str]:
    """(Pulumi resource name, libvirt volume name) of the shared volume of ``url`` on ``host``."""
    tag = hashlib.sha256(url.encode()).hexdigest()[:10]
    # The file name keeps the plan readable; the hash keeps equal file names of two trees apart.
    stem = re.sub(r"[^a-z0-9]+", "-", url.rstrip("/").rsplit("/", 1)[-1].lower())[:40].strip("-")
    return f"{host}-base-{stem}-{tag}", f"virtfleet-base-{stem}-{tag}{suffix}"


class KvmBaseImages:
    """Registry of shared volumes: ``volume(host_component, url)`` creates each one once."""

    def __init__(self) -> None:
        self._volumes: dict[tuple[str, str], libvirt.Volume] = {}

    def volume(self, host, url: str, *, fmt: str = "qcow2") -> libvirt.Volume:
        """The shared volume of ``url`` on ``host`` (a HypervisorHost), created on first use.

        It is parented to the host, not to a guest: deleting the guest that happened to ask
        first must not delete a volume other guests' disks are backed by.
        """
        key = (host.host.name, url)
        if key not in self._volumes:
            resource_name, volume_name = base_volume_name(host.host.name, url, f".{fmt}")
            self._volumes[key] = libvirt.Volume(
                resource_name,
                name=volume_name,
                pool=POOL,
                source=url,
                format=fmt,
                opts=pulumi.ResourceOptions(parent=host, provider=host.libvirt_provider, depends_on=host.ready),
            )
        return self._volumes[key]

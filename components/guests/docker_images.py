"""Images shared by the Docker guests of one host: one ``docker.RemoteImage`` per (host, reference).

Pulled once however many containers run it; ``keep_locally`` so that removing a container (or the
last one of an image) never deletes an image from the host's store under another container. A
digest pin in the reference (``httpd:2.4@sha256:…``) is pulled as written. Resource names come from
the host and a hash of the reference, never from guest order, as for ``kvm_images``.
"""

from __future__ import annotations

import hashlib
import re

import pulumi
import pulumi_docker as docker


def image_repository(image: str) -> str:
    """``registry:5000/library/httpd:2.4@sha256:…`` -> ``httpd``: the profile key."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def image_resource_name(host: str, image: str) -> str:
    tag = hashlib.sha256(image.encode()).hexdigest()[:10]
    stem = re.sub(r"[^a-z0-9]+", "-", image_repository(image))[:30].strip("-")
    return f"{host}-image-{stem}-{tag}"


class DockerImages:
    """Registry of pulled images, one per stack run: ``image(host_component, reference)``."""

    def __init__(self) -> None:
        self._images: dict[tuple[str, str], docker.RemoteImage] = {}

    def image(self, host, reference: str) -> docker.RemoteImage:
        """Parented to the host: removing the guest that asked first must not remove it."""
        key = (host.host.name, reference)
        if key not in self._images:
            self._images[key] = docker.RemoteImage(
                image_resource_name(host.host.name, reference),
                name=reference,
                keep_locally=True,
                opts=pulumi.ResourceOptions(parent=host, provider=host.docker_provider, depends_on=host.ready),
            )
        return self._images[key]

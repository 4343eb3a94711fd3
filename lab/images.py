"""What the lab's guests boot and run, made on this machine (nothing is downloaded).

- a cloud image: a blank qcow2 made by ``qemu-img`` (QEMU runs it; no OS boots from it, which is
  why the guests the program logs in to have stand-ins, see ``stack.py``);
- an install tree: ``images/pxeboot/vmlinuz`` and ``initrd.img`` as the seed's installer path asks;
- a web server image for Docker hosts, tagged as the stack names it (``httpd:2.4``): Debian's
  busybox-static (``busybox httpd``) and bash-static as ``bash`` (the health check uses bash's
  /dev/tcp, as in the official httpd image), with the official image's document root.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from components.guests.docker import image_profile
from components.haproxy_web import DOCKER_CONTAINER_HTDOCS

CLOUD_IMAGE = "lab-cloud.qcow2"
CLOUD_IMAGE_SIZE = "2G"


def make_cloud_image(www: Path) -> Path:
    www.mkdir(parents=True, exist_ok=True)
    image = www / CLOUD_IMAGE
    if not image.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), CLOUD_IMAGE_SIZE], check=True)
    return image


def make_install_tree(www: Path) -> Path:
    """An install tree's boot files: this machine's own kernel and initrd where it has them (QEMU
    boots them as an installer would boot), else files that only stand for them."""
    pxeboot = www / "install" / "images" / "pxeboot"
    pxeboot.mkdir(parents=True, exist_ok=True)
    kernels = sorted(Path("/boot").glob("vmlinuz-*"))
    for name, pattern in (("vmlinuz", "vmlinuz-*"), ("initrd.img", "initrd.img-*")):
        found = sorted(Path("/boot").glob(pattern))
        target = pxeboot / name
        if found and kernels:
            shutil.copyfile(found[-1], target)
        elif not target.exists():
            target.write_bytes(b"virtfleet lab stand-in for " + name.encode() + b"\n")
    return pxeboot


def _docker_client(view, timeout: float = 30.0):
    import docker

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            socket = view.root_path("/run/docker.sock")
            if socket.exists():
                client = docker.DockerClient(base_url=f"unix://{socket}", version="auto", timeout=60)
                if client.ping():
                    return client
        last = view.log_tail()
        time.sleep(0.2)
    raise RuntimeError(f"{view.spec.name}: dockerd did not answer within {timeout} s:\n{last}")


def web_image_tar(docroot: str, extra_dirs: tuple[str, ...] = ()) -> bytes:
    """The image's file system: busybox and bash (static), and the directories it serves from."""
    busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
    bash = Path(shutil.which("bash-static") or "/bin/bash-static").resolve()
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        tar.add(busybox, "bin/busybox")
        tar.add(bash, "bin/bash")
        directories = {"tmp"}
        for directory in (docroot, *extra_dirs):
            parts = Path(directory.strip("/")).parts
            directories.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        for directory in sorted(directories):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
    return data.getvalue()


def import_web_image(view, reference: str) -> str:
    """Import the web image into the view's dockerd as ``reference``; returns its id."""
    profile = image_profile(reference)
    docroot = profile.docroot if profile else DOCKER_CONTAINER_HTDOCS
    port = profile.port if profile else 80
    extra = profile.tmpfs if profile else ()
    client = _docker_client(view)
    try:
        repository, _, tag = reference.partition(":")
        client.api.import_image_from_data(
            web_image_tar(docroot, extra),
            repository=repository,
            tag=tag or "latest",
            changes=["ENV PATH=/bin", f'CMD ["busybox", "httpd", "-f", "-p", "{port}", "-h", "{docroot}"]'],
        )
        return client.images.get(reference).id
    finally:
        client.close()

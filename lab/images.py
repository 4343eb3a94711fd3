"""What the lab's guests boot and run, made on this machine (nothing is downloaded).

- a cloud image: a blank qcow2 made by ``qemu-img`` (QEMU runs it; no OS boots from it, which is
  why the guests the program logs in to have stand-ins, see ``stack.py``);
- an install tree: ``images/pxeboot/vmlinuz`` and ``initrd.img`` as the seed's installer path asks
  (an installer that powers off at once), ``images/boot.iso`` for VirtualBox;
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
from components.lb.web_servers import DOCKER_CONTAINER_HTDOCS

CLOUD_IMAGE = "lab-cloud.qcow2"
CLOUD_IMAGE_SIZE = "2G"


def make_cloud_image(www: Path) -> Path:
    www.mkdir(parents=True, exist_ok=True)
    image = www / CLOUD_IMAGE
    if not image.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), CLOUD_IMAGE_SIZE], check=True)
    return image


# An installer that finishes at once: a multiboot kernel (QEMU boots one directly, as it boots an
# install tree's vmlinuz) that powers the machine off through the ACPI PM1a control port of QEMU's
# PIIX4, as Anaconda powers off at the end of a kickstart. No OS is installed; the KVM guest's power
# step then sees the install done, drops the installer kernel and boots the (blank) disk.
POWEROFF_KERNEL = """\
.section .multiboot
.align 4
.long 0x1BADB002
.long 0x0
.long -(0x1BADB002)
.section .text
.global _start
_start:
    mov $0x604, %dx
    mov $0x2000, %ax
    out %ax, %dx
halt:
    hlt
    jmp halt
"""


def make_install_tree(www: Path) -> Path:
    """An install tree: ``images/pxeboot/vmlinuz`` (the powering-off multiboot kernel above, built here
    with binutils), ``initrd.img`` and ``images/boot.iso`` (VirtualBox's; the VBoxManage fake only
    checks it exists)."""
    pxeboot = www / "install" / "images" / "pxeboot"
    pxeboot.mkdir(parents=True, exist_ok=True)
    kernel = pxeboot / "vmlinuz"
    if not kernel.exists():
        source, obj = pxeboot.parent / "poweroff.S", pxeboot.parent / "poweroff.o"
        source.write_text(POWEROFF_KERNEL)
        subprocess.run(["as", "--32", "-o", str(obj), str(source)], check=True)
        subprocess.run(["ld", "-m", "elf_i386", "-Ttext", "0x100000", "-o", str(kernel), str(obj)], check=True)
        source.unlink()
        obj.unlink()
    (pxeboot / "initrd.img").write_bytes(b"virtfleet lab: the installer's initrd (unused by the lab's kernel)\n")
    (pxeboot.parent / "boot.iso").write_bytes(b"virtfleet lab: an install tree's boot.iso\n")
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


def push_to_registry(view, reference: str, registry: str) -> str:
    """Tag the view's image ``reference`` into the lab's registry, push it, and return the pinned
    reference ``registry/repository:tag@sha256:…`` that pulls it back."""
    client = _docker_client(view)
    try:
        repository, _, tag = reference.partition("@")[0].partition(":")
        target = f"{registry}/{repository.rsplit('/', 1)[-1]}"
        client.images.get(reference.partition("@")[0]).tag(target, tag or "latest")
        digest = None
        for line in client.images.push(target, tag=tag or "latest", stream=True, decode=True):
            if "error" in line:
                raise RuntimeError(f"pushing {target}:{tag} to the lab's registry: {line['error']}")
            digest = (line.get("aux") or {}).get("Digest", digest)
        if not digest:
            raise RuntimeError(f"the lab's registry gave no digest for {target}:{tag}")
        return f"{target}:{tag or 'latest'}@{digest}"
    finally:
        client.close()

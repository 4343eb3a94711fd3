"""A small qcow2 "cloud image" and an install tree served over HTTP on 127.0.0.1, for the L4 tests
of the hosts' shared downloads (the Xen and the KVM guests' base images)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import subprocess
import threading

import pytest

from .tools import require_tool


def image_server_fixture(name: str):
    """A module fixture yielding ``{"url", "sha256"}`` of ``cloud.qcow2`` on an ephemeral port; the
    install tree is beside it (``http://127.0.0.1:PORT/el7/``: images/pxeboot/vmlinuz, initrd.img)."""

    @pytest.fixture(scope="module")
    def _image_server(tmp_path_factory):
        require_tool("qemu-img")
        root = tmp_path_factory.mktemp(name)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(root / "cloud.qcow2"), "64M"], check=True)
        (root / "el7/images/pxeboot").mkdir(parents=True)  # an install tree's kernel and initrd
        (root / "el7/images/pxeboot/vmlinuz").write_bytes(b"\x7fELF kernel\n")
        (root / "el7/images/pxeboot/initrd.img").write_bytes(b"initrd\n")
        handler = functools.partial(_QuietHandler, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        sha = hashlib.sha256((root / "cloud.qcow2").read_bytes()).hexdigest()
        yield {"url": f"http://127.0.0.1:{server.server_address[1]}/cloud.qcow2", "sha256": sha}
        server.shutdown()

    return _image_server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request lines on the test's stderr
        pass

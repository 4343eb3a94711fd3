"""``haproxy -c`` on a rendered config as the config step runs it on the balancer.

An HTTPS config names ``crt-base /etc/haproxy/certs``; the step checks its candidate against the
candidate certificate by rewriting that line (templates/steps/haproxy-config.create.sh.j2). Here the
same: a real self-signed certificate (key and chain in one PEM, as the step writes it) under a
temporary crt-base, so HAProxy loads it the way it does on the node.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import re
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.tools import require_tool

CRT_BASE = re.compile(r"^    crt-base .*$", re.MULTILINE)


@functools.cache
def certificate_pem(common_name: str = "haproxy.virtfleet.test", address: str | None = None) -> str:
    """A one-day self-signed P-256 certificate for ``common_name`` (and ``address``, when given, as an
    IP subject name) and its key, concatenated as HAProxy reads them; a client trusts it with the
    same file as its CA (only the certificate part is read as one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    names: list[x509.GeneralName] = [x509.DNSName(common_name)]
    if address is not None:
        names.append(x509.IPAddress(ipaddress.ip_address(address)))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode() + key_pem.decode()


def haproxy_check(
    tmp_path: Path, text: str, *, certificates: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``haproxy -c`` on ``text``. A config with a ``crt-base`` gets it pointed at a directory
    holding ``certificates`` (file name -> PEM; by default every ``crt NAME`` the config binds, with
    one self-signed certificate)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if CRT_BASE.search(text):
        certs = tmp_path / "certs"
        certs.mkdir(exist_ok=True)
        if certificates is None:
            certificates = {name: certificate_pem() for name in re.findall(r" ssl crt (\S+)", text)}
        for name, pem in certificates.items():
            (certs / name).write_text(pem)
        text = CRT_BASE.sub(f"    crt-base {certs}", text)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    return subprocess.run([require_tool("haproxy"), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)

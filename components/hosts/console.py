"""The console role's step (pure): Cockpit, locked the way a hypervisor's widest door must be.

``cockpit.socket`` (from the role's packages) is bound to the host's management address by a
systemd drop-in; ``/etc/cockpit/cockpit.conf`` names host and stack on the login page, sets the idle
timeout and the origins users reach; root may not log in (``disallowed-users``, enforced by
pam_listfile in cockpit's PAM stack); the stack's certificate and key go under
``/etc/cockpit/ws-certs.d`` (``root:cockpit-ws``, ``cert_t``); firewalld lets ``console.allowFrom``
reach 9090 through one rich rule per network and takes the ``cockpit`` service out of the default
zone (EL9 opens it to everyone out of the box). The step carries the private key: it is secret.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..model import CONSOLE_PORT, Fleet, Host
from ..osfamily import os_family
from ..remote.scripts import RemoteFile, RenderedStep, render_step
from ..render import render

COCKPIT_CONF = "/etc/cockpit/cockpit.conf"
DISALLOWED_USERS = "/etc/cockpit/disallowed-users"
PAM_FILE = "/etc/pam.d/cockpit"
# What the step adds where no pam_listfile line checks disallowed-users (EL7's cockpit 195, EL 9.0-9.1):
# the form cockpit 314+ ships, in the account stack, which Kerberos (GSSAPI) logins pass as well.
PAM_LISTFILE = (
    "account    required     pam_listfile.so item=user sense=deny file=/etc/cockpit/disallowed-users onerr=succeed"
)
# Any pam_listfile line that checks disallowed-users counts (cockpit 280-313 ship it as an auth line).
PAM_LISTFILE_PATTERN = (
    r"^(auth|account)[[:space:]]+[a-z]+[[:space:]]+pam_listfile\.so .*file=/etc/cockpit/disallowed-users"
)
SOCKET_DROPIN = "/etc/systemd/system/cockpit.socket.d/50-virtfleet-listen.conf"
CERT_DIR = "/etc/cockpit/ws-certs.d"
CERT_NAME = "50-virtfleet"  # sorts after cockpit's own 0-self-signed.cert, so cockpit uses it
RECORD_DIR = "/var/lib/virtfleet/console"
FIREWALL_SERVICE = "cockpit"  # firewalld's service definition: 9090/tcp
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)


def console_title(host: Host, stack: str) -> str:
    assert host.console is not None
    return host.console.title or f"{host.name} (stack {stack})"


def console_origins(host: Host, fleet: Fleet) -> list[str]:
    """The URLs users reach the console by (cockpit.conf ``Origins``): address, FQDN, management IP."""
    names = [host.address, f"{host.name}.{fleet.domain}", str(host.management_ip())]
    return [f"https://{name}:{CONSOLE_PORT}" for name in dict.fromkeys(names)]


def console_url(host: Host) -> str:
    return f"https://{host.address}:{CONSOLE_PORT}/"


def split_pem(pem: str) -> tuple[str, str]:
    """(certificate chain, private key) of a PEM bundle, each parsed and written out again by
    ``cryptography``: the chain as CERTIFICATE blocks, the key as unencrypted PKCS#8 (``PRIVATE KEY``,
    the one form both EL7's cockpit 195 and EL9's read; pulumi-tls gives an ECDSA key as ``EC PRIVATE
    KEY``). Only what the parser made of it reaches the host, so nothing but base64 travels in the script.
    """
    certs, keys, others = [], [], []
    for block in _PEM_BLOCK.finditer(pem):
        kind, text = block.group(1), block.group(0).encode()
        try:
            if kind == "CERTIFICATE":
                certs.append(x509.load_pem_x509_certificate(text).public_bytes(serialization.Encoding.PEM).decode())
            elif kind.endswith("PRIVATE KEY"):
                key = serialization.load_pem_private_key(text, password=None)
                keys.append(
                    key.private_bytes(
                        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    ).decode()
                )
            else:
                others.append(kind)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"the console certificate's {kind} block cannot be read ({err}); it must be unencrypted PEM"
            ) from None
    if others or not certs or len(keys) != 1:
        raise ValueError(
            "the console certificate must be PEM: one or more CERTIFICATE blocks and exactly one unencrypted "
            f"private key (found {len(certs)} certificate(s), {len(keys)} key(s), other blocks: {others or 'none'})"
        )
    return "".join(certs), keys[0]


def render_cockpit_conf(host: Host, fleet: Fleet, stack: str) -> str:
    assert host.console is not None
    return render(
        "cockpit.conf.j2",
        host=host.name,
        stack=stack,
        title=console_title(host, stack),
        origins=console_origins(host, fleet),
        idle_timeout=host.console.idle_timeout_minutes,
    )


def render_socket_dropin(host: Host) -> str:
    return render("cockpit-listen.conf.j2", address=str(host.management_ip()), port=CONSOLE_PORT)


MASKED = "(secret)"  # stands for the certificate and key in what the policy pack sees


def console_files(host: Host, fleet: Fleet, stack: str, chain: str, key: str) -> list[RemoteFile]:
    """cockpit.conf, the socket drop-in, then the certificate (and on el9 its key file) last."""
    cert = f"{CERT_DIR}/{CERT_NAME}.cert"
    cert_files = (
        [RemoteFile(cert, chain, 0o644), RemoteFile(f"{CERT_DIR}/{CERT_NAME}.key", key, 0o640)]
        if os_family(host.os_family).cockpit_key_file
        else [RemoteFile(cert, chain + key, 0o640)]
    )
    return [
        RemoteFile(COCKPIT_CONF, render_cockpit_conf(host, fleet, stack), 0o644),
        RemoteFile(SOCKET_DROPIN, render_socket_dropin(host), 0o644),
        *cert_files,
    ]


def public_console_files(host: Host, fleet: Fleet, stack: str) -> dict[str, str]:
    """The step's files with the certificate and key masked: known at preview, no secret in them."""
    return {
        f.path: MASKED if f.path.startswith(f"{CERT_DIR}/") else f.content
        for f in console_files(host, fleet, stack, MASKED, MASKED)
    }


def render_console_step(host: Host, fleet: Fleet, stack: str, *, certificate_pem: str) -> RenderedStep:
    """``console`` on ``host`` (pure). ``certificate_pem``: the chain and the unencrypted key."""
    assert host.console is not None
    chain, key = split_pem(certificate_pem)
    files = console_files(host, fleet, stack, chain, key)
    return render_step(
        host.name,
        "console",
        "console",
        files=files,
        secret=True,  # the private key travels in the script
        install_files=False,  # checked first: the key must match the certificate
        lock=True,  # firewalld and systemd, shared with the host's other steps
        key_path=files[-1].path,
        group="cockpit-ws",
        disallowed_users=DISALLOWED_USERS,
        pam_file=PAM_FILE,
        pam_line=PAM_LISTFILE,
        pam_pattern=PAM_LISTFILE_PATTERN,
        record_dir=RECORD_DIR,
        conf=COCKPIT_CONF,
        service=FIREWALL_SERVICE,
        rich_rules=[
            f'rule family="ipv4" source address="{net}" service name="{FIREWALL_SERVICE}" accept'
            for net in host.console.allow_from
        ],
        cert_dir=CERT_DIR,
        dropin=SOCKET_DROPIN,
        dropin_dir=SOCKET_DROPIN.rsplit("/", 1)[0],
    )

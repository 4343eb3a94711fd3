"""One recording mock, shared by ``make plan`` and the tests.

The monitor records what the Pulumi engine would receive for each resource (type, name, parent,
dependencies, provider, options and inputs); the mocks answer like providers would, with
placeholders where a provider computes a value. Placeholders stand in for secrets: the plan never
sees a real one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

SECRET_MARK = "[secret]"
PULLED_IMAGE_ID = "(known after the pull)"


def placeholder(what: str) -> str:
    if what == "sshPrivateKey":
        return planned_private_key()
    return f"PLAN-PLACEHOLDER-{what}"


@cache
def planned_private_key() -> str:
    """What the plan logs in with when the stack holds no key: a real key (the model checks that
    sshPrivateKey parses), made from a fixed seed so every plan is the same, and known to be none of
    anyone's (its secret half is 32 zero bytes)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


@cache
def planned_tls() -> tuple[str, str]:
    """(key PEM, certificate PEM) the plan gives pulumi-tls's key and self-signed certificate: real
    ones, so ``haproxy -c`` loads the planned config as it loads the deployed one, and the same in
    every plan (private scalar 1, fixed dates, RFC 6979 signature). Known to be no one's key."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from cryptography.x509.oid import NameOID

    key = ec.derive_private_key(1, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "virtfleet plan placeholder")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC))
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return key_pem, cert.public_bytes(Encoding.PEM).decode()


@dataclass
class ResourceRecord:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    provider: str
    dependencies: list[str]
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    inputs: dict[str, Any]  # secrets unwrapped: placeholders only, never real values
    secret_paths: set[str] = field(default_factory=set)
    replace_on_changes: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    # A component's register_outputs: what the engine holds as its properties from then on (a stack
    # policy sees these, not the inputs). None: it registered none.
    outputs: dict[str, Any] | None = None

    def masked_inputs(self) -> dict[str, Any]:
        return _mask(self.inputs, self.secret_paths, "")


def _mask(value: Any, secret_paths: set[str], path: str) -> Any:
    if path in secret_paths:
        return SECRET_MARK
    if isinstance(value, dict):
        return {k: _mask(v, secret_paths, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, secret_paths, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _unwrap(value: Any, path: str, secrets: set[str]) -> Any:
    """Plain Python values from deserialized inputs, noting where the secrets were."""
    if rpc.is_rpc_secret(value):
        secrets.add(path)
        return _unwrap(rpc.unwrap_rpc_secret(value), path, secrets)
    if isinstance(value, pulumi.StringAsset):
        return {"asset": "string", "text": value.text}
    if isinstance(value, pulumi.Asset | pulumi.Archive):
        return {"asset": type(value).__name__}
    if isinstance(value, pulumi.Resource):
        return {"resource": type(value).__name__}
    if isinstance(value, dict):
        return {k: _unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.records: list[ResourceRecord] = []

    def RegisterResource(self, request):
        if request.type != "pulumi:pulumi:Stack":
            secrets: set[str] = set()
            inputs = _unwrap(rpc.deserialize_properties(request.object), "", secrets)
            self.records.append(
                ResourceRecord(
                    urn=self.make_urn(request.parent, request.type, request.name),
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=request.custom,
                    provider=request.provider,
                    dependencies=sorted(set(request.dependencies)),
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    inputs=inputs,
                    secret_paths=secrets,
                    replace_on_changes=list(request.replaceOnChanges),
                    ignore_changes=list(request.ignoreChanges),
                )
            )
        return super().RegisterResource(request)

    def RegisterResourceOutputs(self, request):
        record = next((r for r in self.records if r.urn == request.urn), None)
        if record is not None:
            record.outputs = _unwrap(rpc.deserialize_properties(request.outputs), "", set())
        return super().RegisterResourceOutputs(request)


# Values providers compute, per resource type, so programs that read them keep working.
_COMPUTED: dict[str, dict[str, Any]] = {
    "random:index/randomPassword:RandomPassword": {"result": placeholder("random-password")},
    "tls:index/privateKey:PrivateKey": {
        "privateKeyPem": planned_tls()[0],
        "publicKeyOpenssh": "ssh-ed25519 AAAAPLANPLACEHOLDER",
    },
    "tls:index/selfSignedCert:SelfSignedCert": {"certPem": planned_tls()[1]},
    "command:remote:Command": {"stdout": "", "stderr": ""},
    # Not placeholder(): those stand for secrets; an image's id is only unknown until the pull.
    "docker:index/remoteImage:RemoteImage": {"imageId": PULLED_IMAGE_ID, "repoDigest": PULLED_IMAGE_ID},
}


# What data sources (invokes) return, per token.
_INVOKED: dict[str, dict[str, Any]] = {
    # A public key is no secret: the plan shows where the stack's login key goes, marked as planned.
    "tls:index/getPublicKey:getPublicKey": {
        "publicKeyOpenssh": "ssh-ed25519 AAAAPlannedPublicHalfOfSshPrivateKey plan",
    },
}


class PlanMocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        outputs.update(_COMPUTED.get(args.typ, {}))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return _INVOKED.get(args.token, {})

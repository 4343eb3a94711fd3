"""The policy pack as the engine runs it: policy/__main__.py serving the Analyzer gRPC protocol.

The Pulumi CLI starts the pack and calls GetAnalyzerInfo, Configure, Analyze (per resource) and
AnalyzeStack over gRPC. The real CLI cannot run it here (no provider plugins, and the language host
that can be built predates the RunPlugin call Python packs need), so this test plays the CLI's part
with the same protobuf messages: it starts the pack, sends it every resource of a recorded run and
checks that the pack's verdicts equal make plan's offline adapter's, policy by policy and resource by
resource. Talks to the pack on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2 as proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from test_policy import ALL_MANDATORY, run

from plan.mocks import ResourceRecord
from plan.policy import POLICIES, POLICY_DIR, _provider_urn, evaluate, resolve

LEVEL = {"advisory": proto.ADVISORY, "mandatory": proto.MANDATORY, "disabled": proto.DISABLED}
LEVEL_NAME = {v: k for k, v in LEVEL.items()}


@pytest.fixture(scope="module")
def analyzer():
    process = subprocess.Popen(
        [sys.executable, "__main__.py"],
        cwd=POLICY_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if selector.select(timeout=1):
                chunk = os.read(process.stdout.fileno(), 64)
                if not chunk:
                    break
                line += chunk
        assert line.strip().isdigit(), (
            f"the pack printed no port: {line!r} {process.stderr.read1() if process.poll() is not None else ''}"
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{int(line)}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=10)


def _struct(value: dict) -> struct_pb2.Struct:
    return json_format.ParseDict(value, struct_pb2.Struct())


def _options(record: ResourceRecord) -> proto.AnalyzerResourceOptions:
    return proto.AnalyzerResourceOptions(protect=record.protect, parent=record.parent)


def _provider(record: ResourceRecord, by_urn: dict) -> proto.AnalyzerProviderResource | None:
    provider = by_urn.get(_provider_urn(record.provider))
    if provider is None:
        return None
    return proto.AnalyzerProviderResource(
        type=provider.type, properties=_struct(provider.inputs), urn=provider.urn, name=provider.name
    )


def _fields(record: ResourceRecord, by_urn: dict) -> dict:
    """What an AnalyzeRequest and an AnalyzerResource both carry about a resource."""
    return {
        "type": record.type,
        "properties": _struct(record.inputs),
        "urn": record.urn,
        "name": record.name,
        "options": _options(record),
        "provider": _provider(record, by_urn),
    }


def _verdicts(diagnostics, descriptions: dict[str, str], urn: str = "") -> set[tuple[str, str, str, str]]:
    """(policy, level, urn, message); a resource policy's violation without a URN is the resource's own."""
    out = set()
    for d in diagnostics:
        message = d.message.removeprefix(descriptions[d.policyName] + "\n")
        out.add((d.policyName, LEVEL_NAME[d.enforcementLevel], d.urn or urn, message))
    return out


def test_the_pack_serves_every_policy_with_its_default_level(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "virtfleet"
    served = {p.name: LEVEL_NAME[p.enforcementLevel] for p in info.policies}
    assert served == {p.name: p.enforcement_level.value for p in POLICIES}


def test_the_pack_and_the_offline_adapter_agree_on_a_stack_with_violations(analyzer):
    recording = run("violating")
    config = ALL_MANDATORY
    analyzer.Configure(
        proto.ConfigureAnalyzerRequest(
            policyConfig={
                p.name: proto.PolicyConfig(enforcementLevel=LEVEL[level.value], properties=_struct(props))
                for p in POLICIES
                for level, props in [resolve(p, config)]
            }
        )
    )
    descriptions = {p.name: p.description for p in POLICIES}
    by_urn = recording.by_urn()
    served: set = set()
    for record in recording.resources:
        response = analyzer.Analyze(proto.AnalyzeRequest(**_fields(record, by_urn)))
        served |= _verdicts(response.diagnostics, descriptions, record.urn)
    # At the stack's end the engine holds a component's registered outputs as its properties.
    resources = [
        proto.AnalyzerResource(
            **(_fields(r, by_urn) | ({"properties": _struct(r.outputs)} if r.outputs is not None else {})),
            parent=r.parent,
            dependencies=r.dependencies,
        )
        for r in recording.resources
    ]
    stack = analyzer.AnalyzeStack(proto.AnalyzeStackRequest(resources=resources))
    served |= _verdicts(stack.diagnostics, descriptions)

    offline = {(f.policy, f.level, f.resource or "", f.message) for f in evaluate(recording, config)}
    assert len(offline) > 40 and {v[0] for v in offline} == {p.name for p in POLICIES}
    assert served == offline

"""A provider-free Pulumi program for the state-backend tests (tests/test_state_postgres.py) and
benchmarks/state_backend.py.

virtfleet itself cannot get past its first provider plugin on this machine (none can be built here),
so the PostgreSQL backend is exercised with this program instead of the lab's stack: component
resources (``boxes`` of them, each with a child), stack outputs, a config secret and a secret output
derived from it, and optionally one resource of a Python dynamic provider (the SDK's own
pulumi-resource-pulumi-python, which needs no Go build) whose create is slow: it writes ``marker``
when it starts, then waits until the file ``gate`` exists (bounded), so that a test can hold an
update half-way, run a second one against it, or SIGKILL it with an operation pending.
"""

from __future__ import annotations

import time
from pathlib import Path

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

GATE_LIMIT_S = 120


class Box(pulumi.ComponentResource):
    def __init__(self, name: str, size: int, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("statetest:index:Box", name, None, opts)
        self.lid = Lid(f"{name}-lid", opts=pulumi.ResourceOptions(parent=self))
        self.size = size
        self.register_outputs({"size": size})


class Lid(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("statetest:index:Lid", name, None, opts)
        self.register_outputs({})


class GatedProvider(ResourceProvider):
    def create(self, props):
        Path(props["marker"]).write_text("started\n")
        deadline = time.monotonic() + GATE_LIMIT_S
        while not Path(props["gate"]).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"gate {props['gate']} did not open within {GATE_LIMIT_S}s")
            time.sleep(0.1)
        return CreateResult(id_="gated-" + props["label"], outs=props)


class Gated(Resource):
    def __init__(self, name: str, label: str, marker: str, gate: str) -> None:
        super().__init__(GatedProvider(), name, {"label": label, "marker": marker, "gate": gate})


config = pulumi.Config()
boxes = [Box(f"box-{i}", i) for i in range(config.get_int("boxes") or 2)]
token = config.require_secret("token")
pulumi.export("count", len(boxes))
pulumi.export("names", [f"box-{i}" for i in range(len(boxes))])
pulumi.export("token", token)
pulumi.export("greeting", token.apply(lambda t: f"hello {t}"))
if config.get("gate"):
    gated = Gated("gated", "slow", config.require("marker"), config.require("gate"))
    pulumi.export("gated", gated.id)

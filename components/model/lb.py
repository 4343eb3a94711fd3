"""The HAProxy tier: a balancer node, web servers by guest name, checks, cookie and stats."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from .common import DnsName, Frozen, Name, Port


class Endpoint(Frozen):
    address: IPv4Address = Field(description="an address of the node, or 0.0.0.0 for all")
    port: Port


class Https(Frozen):
    enabled: bool = False
    port: Port = 443
    redirect: bool = Field(True, description="answer plain HTTP with a redirect to HTTPS")
    # The certificate itself is the secret virtfleet:tlsCertificate (PEM, cert + key);
    # without it a self-signed one is generated with pulumi-tls.
    common_name: DnsName | None = Field(None, description="the self-signed certificate's name (RFC 1123)")


class HealthCheck(Frozen):
    path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~/%?&=+-]*$")] = "/"
    interval_ms: int = Field(500, ge=100, le=600000, alias="intervalMs")
    fall: int = Field(2, ge=1, le=100)
    rise: int = Field(2, ge=1, le=100)
    expect_status: int = Field(200, ge=100, le=599)
    # Failure handling (issue 18): a check has a timeout of its own, a server changing state is
    # checked faster, and live traffic marks a server down before the checks notice.
    timeout_ms: int = Field(
        500,
        ge=10,
        le=60000,
        description="how long a check waits for the server's answer (haproxy's `timeout check`), at most "
        "intervalMs; HAProxy (2.6, measured) also ends a check at timeoutsMs.connect, so the smaller one "
        "counts. A server that accepts but never answers is out after about intervalMs + fall timeouts",
    )
    fast_interval_ms: int = Field(
        200,
        ge=10,
        le=600000,
        description="check interval while a server is changing state (haproxy's `fastinter`): after one "
        "failed check the next comes this soon",
    )
    observe: Literal["none", "layer4", "layer7"] = Field(
        "layer4",
        description="passive health check on live traffic: layer4 counts failed connections to the server, "
        "layer7 also 5xx answers and response timeouts (then a client who finds a URL that fails can take "
        "servers out), none only the active checks",
    )
    error_limit: int = Field(
        1,
        ge=1,
        le=100,
        description="consecutive errors observed on live traffic before onError applies; 1: a refused "
        "connection is enough (nothing listens there)",
    )
    on_error: Literal["fastinter", "fail-check", "sudden-death", "mark-down"] = Field(
        "mark-down",
        description="what errorLimit observed errors do: mark-down takes the server out at once (checks bring "
        "it back after rise successes); sudden-death leaves one check; fail-check counts as one failed "
        "check; fastinter only checks faster",
    )

    @field_validator("timeout_ms")
    @classmethod
    def _timeout_within_interval(cls, value: int, info: ValidationInfo) -> int:
        interval = info.data.get("interval_ms")
        if interval is not None and value > interval:
            raise ValueError(f"a check's timeout ({value} ms) cannot exceed its interval ({interval} ms)")
        return value


class Stats(Frozen):
    enabled: bool = True
    bind: Endpoint | None = Field(None, description="default: the frontend address, port 8404")
    uri: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~/-]*$")] = "/stats"
    user: Name = "haproxy"
    realm: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 ._-]+$")] = "HAProxy Statistics"
    # The password is the secret virtfleet:statsPassword, or generated (pulumi-random).


class ClientLimits(Frozen):
    """Per-client limits in the frontend, kept in a stick table keyed by the client's address."""

    enabled: bool = Field(False, description="track each client address and apply the limits below")
    connections: int = Field(
        100,
        ge=1,
        le=100000,
        description="connections one client address may hold at once; a connection beyond it is closed "
        "as soon as it is accepted, so one client cannot take the balancer's connection slots",
    )
    requests: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="HTTP requests one client address may send per periodMs; beyond it the answer is 429 "
        "without reaching a server; none: no request-rate limit",
    )
    period_ms: int = Field(10000, ge=1000, le=3_600_000, description="the window of the request rate")
    table_size: int = Field(
        100000, ge=100, le=10_000_000, description="client addresses tracked at once (about 50 bytes each)"
    )


# VRRP (keepalived) between two balancer nodes. VRRPv3 (RFC 5798): sub-second advertisements, and no
# authentication in the protocol (RFC 5798 dropped it; keepalived ignores an authentication block with
# vrrp_version 3), so the adverts go unicast between the two nodes and each node's firewall admits
# VRRP from its peer's address only.
# nodes[0], nodes[1]: started together, the first node wins the first election; otherwise the first
# keepalived up holds the address (nopreempt). A backup that sees the master give up (priority 0) waits
# its skew, (256 - priority) / 256 of an interval, before it takes over: high priorities make that ~1%
# (4.7 ms at 200 ms; 100 would wait 122 ms, measured in the lab).
VRRP_PRIORITIES = (254, 250)


class Vrrp(Frozen):
    router_id: int = Field(
        ge=1,
        le=255,
        description="the VRRP virtual router id (1-255); unique on the frontend's network, across every stack "
        "that shares that network (make plan checks the committed stacks)",
    )
    advert_interval_ms: int = Field(
        200,
        ge=10,
        le=40950,
        multiple_of=10,
        description="VRRPv3 advertisement interval (10 ms steps). The backup takes over after 3 intervals "
        "without an advert plus its skew ((256-100)/256 of an interval): 200 ms gives about 0.72 s",
    )


class LoadBalancer(Frozen):
    node: Name | None = Field(None, description="the host or guest that runs HAProxy (one node; or nodes)")
    nodes_: tuple[Name, ...] = Field(
        (),
        alias="nodes",
        max_length=2,
        description="one or two hosts or guests that run HAProxy; two share virtualAddress through VRRP "
        "(keepalived), the first is the master at the first election",
    )
    virtual_address: IPv4Address | None = Field(
        None, description="with two nodes: the address that moves between them (on their common network)"
    )
    vrrp: Vrrp | None = Field(None, description="with two nodes: the VRRP instance the pair runs")
    frontend: Endpoint
    https: Https = Https()
    backends: tuple[Name, ...] = Field(min_length=1, description="guest names of the web servers")
    backups: tuple[Name, ...] = Field((), description="guest names used only when every backend is down")
    backend_port: Port = 80
    balance: Literal["roundrobin", "leastconn", "source", "first", "static-rr"] = "roundrobin"
    health_check: HealthCheck = HealthCheck()
    sticky_cookie: Name | None = Field("lb", description="cookie name for sticky sessions; null for none")
    stats: Stats = Stats()
    log_transport: Literal["tcp", "udp"] = Field(
        "tcp",
        description="how haproxy hands its log (local2) to rsyslog on the node's loopback: tcp, port 601 "
        "(an in-memory ring forwarded over one connection, off the request path) or udp, port 514 (the "
        "seed's wiring: one datagram per request)",
    )
    timeouts_ms: dict[
        Literal["connect", "client", "server", "httpRequest", "httpKeepAlive", "queue"],
        Annotated[int, Field(ge=1, le=86_400_000)],
    ] = Field(default_factory=dict, description="overrides of the tier's timeout defaults, 1 ms to 24 h each")

    rolling_changes: bool = Field(
        True,
        description="change the web servers one at a time: each taken out of rotation on the balancer "
        "(drained, then maintenance) before its step runs or its guest is recreated, and back once haproxy "
        "reports it UP (a first deploy creates them one after the other too); false: all at once",
    )
    client_limits: ClientLimits = Field(
        ClientLimits(), description="per-client connection and request-rate limits (off unless enabled)"
    )

    @model_validator(mode="after")
    def _one_way_to_name_nodes(self) -> LoadBalancer:
        if self.node is not None and self.nodes_:
            raise ValueError("give node (one balancer) or nodes (one or two), not both")
        if self.node is None and not self.nodes_:
            raise ValueError("nodes (or node) is required: the host or guest that runs HAProxy")
        return self

    @property
    def nodes(self) -> tuple[str, ...]:
        """The balancer nodes: ``nodes``, or the single ``node``."""
        return self.nodes_ or (self.node,)  # type: ignore[return-value]

    @property
    def primary(self) -> str:
        """The first node: the only one, or the pair's first master."""
        return self.nodes[0]

    @property
    def pair(self) -> bool:
        return len(self.nodes) == 2

    def node_key(self, index: int) -> tuple[str | int, ...]:
        """The key path parts a user wrote for node ``index`` (``node`` or ``nodes[i]``)."""
        return ("loadBalancer", "node") if self.node is not None else ("loadBalancer", "nodes", index)

    @property
    def stats_bind(self) -> Endpoint:
        return self.stats.bind or Endpoint(address=self.frontend.address, port=8404)

"""The HAProxy tier: a balancer node, web servers by guest name, checks, cookie and stats."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

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
    interval_ms: int = Field(1000, ge=100, le=600000, alias="intervalMs")
    fall: int = Field(2, ge=1, le=100)
    rise: int = Field(2, ge=1, le=100)
    expect_status: int = Field(200, ge=100, le=599)


class Stats(Frozen):
    enabled: bool = True
    bind: Endpoint | None = Field(None, description="default: the frontend address, port 8404")
    uri: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~/-]*$")] = "/stats"
    user: Name = "haproxy"
    realm: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 ._-]+$")] = "HAProxy Statistics"
    # The password is the secret virtfleet:statsPassword, or generated (pulumi-random).


class LoadBalancer(Frozen):
    node: Name = Field(description="the host or guest that runs HAProxy")
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

    @property
    def stats_bind(self) -> Endpoint:
        return self.stats.bind or Endpoint(address=self.frontend.address, port=8404)

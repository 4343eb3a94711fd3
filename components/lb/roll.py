"""A rolling change of the tier's web servers (pure): each server's step runs between a drain and a
ready step on the balancer, one server after the other.

For each web server, in the tier's order (backends, then backups), the program chains
``drain-<server>`` (on every balancer node) -> the server's own step -> ``ready-<server>`` (on every
node) -> the next server's drain, as dependencies the engine honours (a preview lists them in that
order). Both balancer steps carry the server step's digest, so they run exactly when it does:

- drain: haproxy's runtime API on the node's admin socket (local to the node, never on the network):
  ``set server webservers/<server> state drain`` (no new requests; sticky clients too go elsewhere),
  then, once it holds no session or after ``DRAIN_TIMEOUT_S``, ``state maint``. An active server is
  never taken out while every other active one is out: the step waits for one to return (bounded)
  and stops the roll otherwise, naming them.
- ready: ``state ready`` (when the drain took it out: a server in maintenance by hand stays so, and
  the drain leaves it alone too), then waits (``READY_TIMEOUT_S``) until haproxy's checks report it UP; a
  server that does not come back stops the roll there with an error naming it, the servers not yet
  changed still in rotation (it stays ready: it rejoins once its checks pass).

A web server's guest is part of the roll too: the resource that would take it down when it changes
(the KVM domain, the Docker container, the Xen domain's, OpenVZ container's or VirtualBox VM's
lifecycle step) waits for the server's drain steps (``RollGates``: the guests are built before the
tier, so the dependency is a deferred output the tier resolves), and the ready steps come after it.
The server's step carries the guest's definition (``web_servers.guest_definition``), so it, and with
it the drain and ready steps, run again whenever the guest may be recreated or restarted: the replace
of the domain or the container happens between drain and the server's step, which (over SSH) waits
for a recreated VM to boot.

On a first deploy the server is not in haproxy yet or is coming up: drain finds nothing to do and ready
waits for its first passing checks. So a first deploy creates the web servers one after the other too,
each once the one before it is UP (as a StatefulSet's OrderedReady); ``loadBalancer.rollingChanges:
false`` leaves the steps and guests unchained (all at once).
"""

from __future__ import annotations

import pulumi

from ..model import Fleet, LoadBalancer
from ..remote.scripts import RenderedStep, render_step
from ..render import digest
from .balancer_files import ADMIN_SOCKET, BACKEND_NAME
from .web_servers import WebServerStep

DRAIN_TIMEOUT_S = 30  # the longest a running request may keep a server from maintenance
WAIT_OTHERS_S = 60  # how long a drain waits for another active server to return
# What the roll took out (a file per server, on the balancer's tmpfs): its ready step puts back only those,
# and a server someone put in maintenance by hand stays there.
ROLL_MARKS = "/run/virtfleet-roll"


def ready_timeout_s(lb: LoadBalancer) -> int:
    """How long ready waits for UP: the server's own step has finished (its service runs: after a
    guest's change that step ran again, over SSH once a recreated VM has booted), so only haproxy's
    checks remain, rise x intervalMs; ten times that, and at least 10 s."""
    check = lb.health_check
    return max(10, -(-10 * check.rise * check.interval_ms // 1000))


class RollGates:
    """What each web server's guest waits for when the tier rolls: its drain step on every balancer
    node. The guests are built before the tier, so each is a deferred output (``after``) that the tier
    resolves (``open``) once it has made the drain steps; ``check_opened`` refuses a program that left
    one unresolved (its guest would wait forever)."""

    def __init__(self, lb: LoadBalancer | None) -> None:
        self._gates: dict[str, list[tuple[pulumi.Output, object]]] = {}
        if lb is not None and lb.rolling_changes:
            for name in (*lb.backends, *lb.backups):
                self._gates[name] = [pulumi.deferred_output() for _ in lb.nodes]
        self._opened: set[str] = set()

    def after(self, guest: str) -> list[pulumi.Output]:
        """The dependencies of ``guest``'s recreatable resource (none when it is no rolled web server)."""
        return [output for output, _ in self._gates.get(guest, [])]

    def open(self, guest: str, drains: list[pulumi.Resource]) -> None:
        for (_, resolve), drain in zip(self._gates[guest], drains, strict=True):
            resolve(pulumi.Output.from_input(drain))
        self._opened.add(guest)

    def check_opened(self) -> None:
        left = sorted(set(self._gates) - self._opened)
        if left:
            raise RuntimeError(f"the roll's gates of {', '.join(left)} were never opened: they would wait forever")


def _context(lb: LoadBalancer, web: WebServerStep) -> dict:
    return {
        "server": web.guest.name,
        "backend": BACKEND_NAME,
        "socket": ADMIN_SOCKET,
        "backup": web.guest.name in lb.backups,
        "marks": ROLL_MARKS,
        # The server step's digest and scripts: the balancer's steps run again exactly when the server's
        # Command does (its scripts are its inputs too: a new version of a template changes them).
        "server_step": f"{web.runs_on}/{web.step.name} {web.step.digest} {digest(web.step.create, web.step.delete)}",
    }


def render_drain_step(lb: LoadBalancer, fleet: Fleet, node: str, web: WebServerStep) -> RenderedStep:
    """``drain-<server>`` on balancer node ``node``."""
    return render_step(
        node,
        f"drain-{web.guest.name}",
        "backend-drain",
        drain_timeout=DRAIN_TIMEOUT_S,
        wait_others=WAIT_OTHERS_S,
        **_context(lb, web),
    )


def render_ready_step(lb: LoadBalancer, fleet: Fleet, node: str, web: WebServerStep) -> RenderedStep:
    """``ready-<server>`` on balancer node ``node``."""
    return render_step(
        node, f"ready-{web.guest.name}", "backend-ready", ready_timeout=ready_timeout_s(lb), **_context(lb, web)
    )

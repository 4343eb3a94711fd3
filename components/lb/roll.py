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

On a first deploy the server is not in haproxy yet or is coming up: drain finds nothing to do and ready
waits for its first passing checks. ``loadBalancer.rollingChanges: false`` leaves the steps
unchained (all at once), as before.
"""

from __future__ import annotations

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
    """How long ready waits for UP: the server's own step has finished (its service runs), so only
    haproxy's checks remain, rise x intervalMs; ten times that, and at least 10 s."""
    check = lb.health_check
    return max(10, -(-10 * check.rise * check.interval_ms // 1000))


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

"""The balancer pair's VRRP files, rendered (pure): keepalived.conf per node and its notify script.

Two HAProxy nodes share ``loadBalancer.virtualAddress``: keepalived (EL9's 2.2) runs one VRRPv3 instance
on each, adverts go unicast to the peer (a network that drops multicast still carries them), and the
address follows the node whose haproxy is alive. Decisions, each with its reason:

- VRRPv3 with a 200 ms default advert interval (``vrrp.advertIntervalMs``): the backup takes over after
  3 missed adverts plus its skew, about 0.72 s. VRRPv3 carries no authentication (RFC 5798 dropped it;
  keepalived ignores an authentication block with version 3), so the firewall admits VRRP from the
  peer's address only (``vrrp_rich_rule``).
- ``nopreempt`` on both (state BACKUP): a node that comes back (haproxy restarted, a reboot) stays
  backup, so a recovery never moves the address a second time. Started together, the first node wins
  the first election by its higher priority; otherwise the first keepalived up keeps the address.
  Priorities 254/250: a backup waits (256 - priority)/256 of an interval once the master gives up.
- haproxy is tracked as a process (``vrrp_track_process``: the kernel's process events, no polling):
  when no haproxy process is left the instance goes to FAULT at once and gives the address up, where a
  ``vrrp_script`` would poll once a second at best. A reload keeps the master process, so it never
  counts as a death; a restart does, and moves the address.
- The notify script logs every state change to syslog (``virtfleet-vrrp``) and, on becoming master,
  probes the address with ARP duplicate detection: an answer means another node still holds it (VRRP
  between the nodes is cut while both live, or the peer's keepalived died without releasing it); a
  probe that could not run is logged as such, never as a split.
- Tracking by process name also counts a passing ``haproxy -c`` (the unit's ExecStartPre and reload
  checks): on a node whose haproxy is down the instance shows BACKUP for the check's milliseconds. It
  is kept: matching the unit's command line instead would leave the pair in FAULT for good the day
  that line differs.
"""

from __future__ import annotations

from ..model import Fleet, LoadBalancer
from ..model.balancer_pair import NodeLink, pair_links
from ..render import render

KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
# EL's policy labels /usr/libexec/keepalived(/.*)? keepalived_unconfined_script_exec_t: keepalived may
# run what is there (arping needs a raw socket), with no policy module of ours.
NOTIFY_SCRIPT = "/usr/libexec/keepalived/virtfleet-vrrp-notify"
SYSCTL_CONF = "/etc/sysctl.d/90-virtfleet-balancer.conf"
# The backup node binds the virtual address it does not hold yet (haproxy starts before it moves).
SYSCTLS = (("net.ipv4.ip_nonlocal_bind", "1"),)
INSTANCE = "virtfleet_haproxy"
LOG_TAG = "virtfleet-vrrp"
HAPROXY_PROCESS = "haproxy"  # the process name (comm) keepalived tracks; EL's unit runs /usr/sbin/haproxy


def links(lb: LoadBalancer, fleet: Fleet) -> list[NodeLink]:
    return pair_links(lb, {h.name: h for h in fleet.hosts}, {g.name: g for g in fleet.guests})


def own_and_peer(lb: LoadBalancer, fleet: Fleet, node: str) -> tuple[NodeLink, NodeLink]:
    first, second = links(lb, fleet)
    return (first, second) if node == first.name else (second, first)


def render_keepalived_conf(
    lb: LoadBalancer,
    fleet: Fleet,
    node: str,
    *,
    notify_script: str = NOTIFY_SCRIPT,
    haproxy_process: str = HAPROXY_PROCESS,
) -> str:
    """/etc/keepalived/keepalived.conf on ``node``, one of the pair (the lab passes its own paths)."""
    own, peer = own_and_peer(lb, fleet, node)
    interval = lb.vrrp.advert_interval_ms
    return render(
        "keepalived.conf.j2",
        node=node,
        peer=peer,
        own=own,
        instance=INSTANCE,
        router_id=lb.vrrp.router_id,
        advert_int=f"{interval // 1000}.{interval % 1000:03d}".rstrip("0").rstrip("."),
        virtual_address=f"{lb.virtual_address}/{own.network.prefixlen}",
        notify_script=notify_script,
        haproxy_process=haproxy_process,
    )


def render_notify_script(lb: LoadBalancer, fleet: Fleet, node: str, *, syslog_socket: str | None = None) -> str:
    """The notify script on ``node``; ``syslog_socket``: logger's socket when not /dev/log (the lab)."""
    own, peer = own_and_peer(lb, fleet, node)
    return render(
        "virtfleet-vrrp-notify.sh.j2",
        node=node,
        own=own,
        peer=peer,
        instance=INSTANCE,
        virtual_address=str(lb.virtual_address),
        tag=LOG_TAG,
        syslog_socket=syslog_socket,
    )


def render_sysctl_conf() -> str:
    lines = "".join(f"{key} = {value}\n" for key, value in SYSCTLS)
    return f"# virtfleet: the balancer pair binds its virtual address on either node\n{lines}"


def vrrp_rich_rule(peer: NodeLink) -> str:
    """The firewalld rich rule that admits VRRP (IP protocol 112) from the peer only."""
    return f'rule family="ipv4" source address="{peer.address}" protocol value="vrrp" accept'

"""The Service data plane's reference evaluator: which endpoints can this packet reach, and why.

Given one node's :class:`~kubewire.dataplane.proxy.model.ProxySnapshot` and the first packet of a
connection, :func:`evaluate` answers what upstream kube-proxy's nftables rules on that node do with
it: DNAT to one of a set of candidate endpoints (with or without masquerading), reject, drop, or pass
untouched.  It is written from upstream's behaviour, independently of kubewire's rule compiler, so
that it can serve as that compiler's test oracle, and it explains each step for ``kubewire trace``.

The stages follow the order the kernel applies upstream's rules in:

1. **Firewall** (before DNAT): a LoadBalancer IP with ``loadBalancerSourceRanges`` drops new
   connections from other sources.  When a range holds the node's primary address (the first of
   ``node.addresses``) the LoadBalancer IPs themselves are allowed as sources too, since the node
   reaching its own VIP uses the VIP as source.  NodePorts and externalIPs are not firewalled.
2. **Service dispatch** on (destination, protocol, port): ClusterIPs (internal traffic, subject to
   ``internalTrafficPolicy``), externalIPs and LoadBalancer IPs (external traffic, subject to
   ``externalTrafficPolicy``), then NodePorts on the node's own addresses (``node.addresses``: the
   nftables proxier's default ``--nodeport-addresses primary``; not loopback, and not any other
   local address).
3. **Endpoint checks**: a service with no usable endpoints anywhere rejects (connection refused);
   a Local policy with no endpoint on this node drops.  Traffic to a ClusterIP on a port or protocol
   the Service does not define is rejected, as upstream's ``cluster-ips`` check does, and traffic to
   any other address of the service CIDRs (``node.service_cidrs``: an unallocated ClusterIP) is
   dropped.

Masquerading (SNAT to the node) follows upstream: external traffic under the Cluster policy always;
internal traffic whose source is outside the cluster's pod CIDRs (``node.pod_cidrs``; with none
known, upstream cannot tell and does not masquerade); under ``externalTrafficPolicy: Local``,
traffic from pods (by source CIDR) short-circuits to the Cluster endpoints unmasqueraded and traffic
from the node itself to the Cluster endpoints masqueraded, while only traffic from outside is held
to this node's endpoints with its source preserved.  Hairpin traffic (a pod reaching itself through
its Service) is masqueraded: :attr:`Verdict.hairpin` names the candidates that are the source, and
:attr:`Verdict.masquerade` is true only when SNAT happens whichever candidate is picked.

Session affinity does not change the candidate set (it only makes a returning client keep its
previous pick); the reasons say so.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kubewire.dataplane.proxy.endpoints import (
    PREFER_SAME_NODE,
    Selection,
    categorize,
    topology_mode,
)
from kubewire.dataplane.proxy.model import Endpoint, NodeContext, ProxySnapshot, ServicePort

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ORIGINS = ("pod", "node", "external")
PROTOCOLS = ("TCP", "UDP", "SCTP")

CLUSTER_IP = "ClusterIP"
EXTERNAL_IP = "externalIP"
LOAD_BALANCER = "LoadBalancer IP"
NODE_PORT = "NodePort"


@dataclass(frozen=True)
class Packet:
    """The first packet of a connection, as it reaches the node's proxy rules."""

    src: str
    dst: str
    protocol: str  # TCP, UDP or SCTP
    dport: int
    origin: str  # "pod" (from a local pod), "node" (the node itself, hostNetwork), "external" (fabric)


@dataclass(frozen=True)
class Verdict:
    """What the node's proxy rules do with a packet, and why."""

    action: str  # "dnat" | "reject" | "drop" | "pass" (not a service address)
    endpoints: tuple[Endpoint, ...] = ()  # the candidates the packet may be sent to (dnat only)
    masquerade: bool = False  # SNAT to the node, whichever candidate is picked
    service: str = ""  # the ServicePort key matched, "" if none
    reasons: tuple[str, ...] = ()  # human explanations, in the order the rules apply
    hairpin: tuple[Endpoint, ...] = ()  # candidates that are the packet's own source (SNAT if picked)

    def masquerades_to(self, endpoint: Endpoint) -> bool:
        """Whether the packet is SNATed to the node when DNATed to ``endpoint``."""
        return self.masquerade or endpoint in self.hairpin


def _addr(text: str) -> IPAddress:
    return ipaddress.ip_address(text.strip())


def _hostport(ip: IPAddress | str, port: int) -> str:
    text = str(ip)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def _contains(address: IPAddress, texts: tuple[str, ...]) -> bool:
    for text in texts:
        try:
            if _addr(text) == address:
                return True
        except ValueError:
            continue
    return False


def _in_cidrs(address: IPAddress, cidrs: tuple[str, ...]) -> bool:
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            continue
        if network.version == address.version and address in network:
            return True
    return False


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _list(endpoints: tuple[Endpoint, ...]) -> str:
    return ", ".join(_hostport(e.ip, e.port) for e in endpoints)


def _match(snapshot: ProxySnapshot, dst: IPAddress, protocol: str, dport: int) -> tuple[ServicePort, str] | None:
    """The service port and kind of address ``dst:dport/protocol`` hits, service IPs before NodePorts."""
    for sp in snapshot.services:
        if sp.protocol.upper() != protocol or sp.port != dport:
            continue
        if _contains(dst, sp.cluster_ips):
            return sp, CLUSTER_IP
        if _contains(dst, sp.external_ips):
            return sp, EXTERNAL_IP
        if _contains(dst, sp.load_balancer_ips):
            return sp, LOAD_BALANCER
    if _contains(dst, snapshot.node.addresses):
        for sp in snapshot.services:
            if sp.node_port and sp.node_port == dport and sp.protocol.upper() == protocol:
                return sp, NODE_PORT
    return None


def _firewall_allows(sp: ServicePort, src: IPAddress, node: NodeContext) -> bool:
    if _in_cidrs(src, sp.source_ranges):
        return True
    primary = node.addresses[:1]
    node_allowed = bool(primary) and any(_in_cidrs(_addr(a), sp.source_ranges) for a in primary)
    return node_allowed and _contains(src, sp.load_balancer_ips)


def _describe_selection(
    sp: ServicePort, node: NodeContext, candidates: tuple[Endpoint, ...], from_cluster_list: bool
) -> list[str]:
    """Why these candidates: topology hints honoured, or the serving-terminating fallback."""
    reasons: list[str] = []
    if candidates and not any(e.ready for e in candidates):
        where = " anywhere" if from_cluster_list else f" on node {node.name}"
        reasons.append(f"no ready endpoints{where}: using {_plural(len(candidates), 'serving-terminating endpoint')}")
    elif from_cluster_list:
        mode = topology_mode(sp, node)
        if mode:
            ready = sum(1 for e in sp.endpoints if e.ready)
            target = f"node {node.name}" if mode == PREFER_SAME_NODE else f"zone {node.zone}"
            reasons.append(
                f"topology hints ({mode}): {len(candidates)} of {_plural(ready, 'ready endpoint')} hinted for {target}"
            )
    return reasons


def _internal(
    sp: ServicePort, sel: Selection, node: NodeContext, src: IPAddress, reasons: list[str]
) -> tuple[str, tuple[Endpoint, ...], bool, bool]:
    """ClusterIP traffic: (action, candidates, masquerade, from the Cluster list)."""
    if sp.internal_policy_local:
        if not sel.local:
            reasons.append(f"internalTrafficPolicy Local: no endpoints on node {node.name}: drop")
            return "drop", (), False, False
        reasons.append(f"internalTrafficPolicy Local: {_plural(len(sel.local), 'local endpoint')}")
        candidates, from_cluster = sel.local, False
    else:
        reasons.append(f"internalTrafficPolicy Cluster: {_plural(len(sel.cluster), 'endpoint')}")
        candidates, from_cluster = sel.cluster, True
    masquerade = False
    if not node.pod_cidrs:
        reasons.append("no cluster CIDR known: ClusterIP traffic is not masqueraded")
    elif not _in_cidrs(src, node.pod_cidrs):
        reasons.append(f"source {src} is outside the cluster CIDR ({', '.join(node.pod_cidrs)}): masquerade")
        masquerade = True
    return "dnat", candidates, masquerade, from_cluster


def _external(
    sp: ServicePort, sel: Selection, node: NodeContext, src: IPAddress, origin: str, reasons: list[str]
) -> tuple[str, tuple[Endpoint, ...], bool, bool]:
    """NodePort, externalIP and LoadBalancer traffic: (action, candidates, masquerade, from the Cluster list)."""
    if not sp.external_policy_local:
        reasons.append(
            f"externalTrafficPolicy Cluster: {_plural(len(sel.cluster), 'endpoint')}; "
            "masquerade (SNAT to the node), since the endpoint may be on another node"
        )
        return "dnat", sel.cluster, True, True
    if node.pod_cidrs and _in_cidrs(src, node.pod_cidrs):
        reasons.append(
            f"externalTrafficPolicy Local does not apply to pod traffic (source {src} is in the cluster CIDR): "
            f"short-circuit to the {_plural(len(sel.cluster), 'Cluster endpoint')}, source preserved"
        )
        return "dnat", sel.cluster, False, True
    if origin == "node":
        reasons.append(
            "externalTrafficPolicy Local does not apply to traffic from the node itself: "
            f"short-circuit to the {_plural(len(sel.cluster), 'Cluster endpoint')}, masquerade"
        )
        return "dnat", sel.cluster, True, True
    if not sel.local:
        reasons.append(f"externalTrafficPolicy Local: no endpoints on node {node.name}: drop")
        return "drop", (), False, False
    reasons.append(
        f"externalTrafficPolicy Local: {_plural(len(sel.local), 'local endpoint')}, client source {src} preserved"
    )
    return "dnat", sel.local, False, False


def _check(packet: Packet) -> str:
    if packet.origin not in ORIGINS:
        raise ValueError(f"packet origin must be one of {', '.join(ORIGINS)}, not {packet.origin!r}")
    protocol = packet.protocol.upper()
    if protocol not in PROTOCOLS:
        raise ValueError(f"packet protocol must be one of {', '.join(PROTOCOLS)}, not {packet.protocol!r}")
    if not 0 < packet.dport < 65536:
        raise ValueError(f"packet destination port {packet.dport} is out of range")
    return protocol


def evaluate(snapshot: ProxySnapshot, packet: Packet) -> Verdict:
    """What ``snapshot``'s node does with the first packet of ``packet``'s connection, and why."""
    protocol = _check(packet)
    src, dst = _addr(packet.src), _addr(packet.dst)
    node = snapshot.node
    target = f"{_hostport(dst, packet.dport)}/{protocol}"
    if dst.version != snapshot.family:
        return Verdict("pass", reasons=(f"{target} is not IPv{snapshot.family}: not this proxy's family: pass",))

    matched = _match(snapshot, dst, protocol, packet.dport)
    if matched is None:
        owner = next((sp for sp in snapshot.services if _contains(dst, sp.cluster_ips)), None)
        if owner is not None:
            reason = (
                f"{dst} is ClusterIP of {owner.namespace}/{owner.name}, which has no port "
                f"{packet.dport}/{protocol}: reject (connection refused)"
            )
            return Verdict("reject", reasons=(reason,))
        if _in_cidrs(dst, node.service_cidrs):
            reason = f"{dst} is in the service CIDR but no Service has it: drop (unallocated ClusterIP)"
            return Verdict("drop", reasons=(reason,))
        return Verdict("pass", reasons=(f"{target} is not a service address: pass",))

    sp, kind = matched
    reasons: list[str] = []
    if kind == NODE_PORT:
        reasons.append(f"{target} is NodePort {sp.node_port} of {sp.key} (on node {node.name}'s address)")
    else:
        article = "" if kind == CLUSTER_IP else "an " if kind == EXTERNAL_IP else "a "
        reasons.append(f"{target} is {article}{kind} of {sp.key}")

    if kind == LOAD_BALANCER and sp.source_ranges:
        if not _firewall_allows(sp, src, node):
            reasons.append(
                f"source {src} not in loadBalancerSourceRanges: drop (allowed: {', '.join(sp.source_ranges)})"
            )
            return Verdict("drop", service=sp.key, reasons=tuple(reasons))
        reasons.append(f"source {src} allowed by loadBalancerSourceRanges")

    sel = categorize(sp, node)
    if not sel.has_any:
        if sp.endpoints:
            reasons.append(
                f"no endpoints: none of {_plural(len(sp.endpoints), 'endpoint')} is ready or serving-terminating: "
                "reject (connection refused)"
            )
        else:
            reasons.append("no endpoints: reject (connection refused)")
        return Verdict("reject", service=sp.key, reasons=tuple(reasons))

    if kind == CLUSTER_IP:
        action, candidates, masquerade, from_cluster = _internal(sp, sel, node, src, reasons)
    else:
        action, candidates, masquerade, from_cluster = _external(sp, sel, node, src, packet.origin, reasons)
    if action != "dnat":
        return Verdict(action, service=sp.key, reasons=tuple(reasons))

    reasons.extend(_describe_selection(sp, node, candidates, from_cluster))
    hairpin = tuple(e for e in candidates if _contains(src, (e.ip,)))
    if hairpin:
        if len(hairpin) == len(candidates):
            reasons.append(f"hairpin: the source {src} is the only candidate: masquerade so replies come back")
            masquerade = True
        else:
            reasons.append(f"hairpin: if {src} itself is picked, the packet is masqueraded so replies come back")
    if sp.affinity_timeout:
        reasons.append(
            f"sessionAffinity ClientIP ({sp.affinity_timeout}s): a client returning within the timeout keeps "
            "its previous endpoint; the candidates are unchanged"
        )
    reasons.append(f"DNAT to one of {len(candidates)}: {_list(candidates)}")
    return Verdict("dnat", candidates, masquerade, sp.key, tuple(reasons), hairpin)

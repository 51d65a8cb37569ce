"""Which endpoints of a service port this node's proxy sends traffic to: upstream's endpoint selection.

This owns kube-proxy's ``CategorizeEndpoints`` rules, so that the rule compilers and the reference
evaluator agree on one answer.  For one service port on one node it yields the endpoints used for
traffic under the Cluster policy, those used under the Local policy, their union (the endpoints the
node needs DNAT targets for) and whether the service has usable endpoints anywhere at all (which
decides between rejecting and dropping traffic that finds no endpoint here).

The rules, as upstream applies them:

- *Usable* means ready.  When a list would be empty, serving-and-terminating endpoints are used
  instead, decided separately for the Cluster list and for the Local list.
- Topology applies to the Cluster list only, and only to ready endpoints.  Hints are honoured when
  every ready endpoint carries them and at least one is meant for this node: node hints
  (``forNodes``, upstream's PreferSameNode) first, then zone hints (``forZones``, PreferSameZone,
  which ``trafficDistribution: PreferClose`` and ``topology-mode: Auto`` produce).  Since
  Kubernetes 1.31 kube-proxy reads hints whenever they are present, whatever the Service's
  annotation or ``trafficDistribution`` say (KEP-4444): the EndpointSlice controller decides
  whether hints exist, the proxy only decides whether they are complete.  Otherwise every ready
  endpoint is used.
- A port needs the Cluster list unless its internal policy is Local and it is not externally
  reachable (external traffic from pods and the node itself short-circuits to the Cluster list even
  under ``externalTrafficPolicy: Local``); it needs the Local list when either policy is Local.
- An endpoint is local when its ``nodeName`` is this node's (never when either name is empty).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubewire.dataplane.proxy.model import Endpoint, NodeContext, ServicePort

PREFER_SAME_NODE = "PreferSameNode"
PREFER_SAME_ZONE = "PreferSameZone"


@dataclass(frozen=True)
class Selection:
    """The endpoints of one service port as this node's proxy uses them (each sorted by ip, port)."""

    cluster: tuple[Endpoint, ...]  # used for traffic subject to the Cluster policy
    local: tuple[Endpoint, ...]  # used for traffic subject to the Local policy (this node's endpoints)
    reachable: tuple[Endpoint, ...]  # union of the two (upstream allReachableEndpoints)
    has_any: bool  # the service has endpoints at all (upstream hasAnyEndpoints): decides reject vs drop


def is_local(endpoint: Endpoint, node: NodeContext) -> bool:
    """Whether ``endpoint`` runs on ``node`` (an empty name on either side never matches)."""
    return bool(endpoint.node) and endpoint.node == node.name


def uses_cluster_endpoints(sp: ServicePort) -> bool:
    """Whether any traffic to ``sp`` is sent to the Cluster list (upstream UsesClusterEndpoints)."""
    return not sp.internal_policy_local or sp.externally_reachable


def uses_local_endpoints(sp: ServicePort) -> bool:
    """Whether any traffic to ``sp`` is sent to the Local list (upstream UsesLocalEndpoints)."""
    return sp.internal_policy_local or (sp.external_policy_local and sp.externally_reachable)


def topology_mode(sp: ServicePort, node: NodeContext) -> str:
    """``PreferSameNode``, ``PreferSameZone`` or ``""`` (no topology): which hints the Cluster list honours."""
    ready = [e for e in sp.endpoints if e.ready]
    if not ready:
        return ""
    if all(e.hint_nodes for e in ready) and any(node.name in e.hint_nodes for e in ready):
        return PREFER_SAME_NODE
    if all(e.hint_zones for e in ready) and any(node.zone in e.hint_zones for e in ready):
        return PREFER_SAME_ZONE
    return ""


def _available(endpoint: Endpoint, mode: str, node: NodeContext) -> bool:
    if mode == PREFER_SAME_NODE:
        return node.name in endpoint.hint_nodes
    if mode == PREFER_SAME_ZONE:
        return node.zone in endpoint.hint_zones
    return True


def _sorted(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    return tuple(sorted(endpoints, key=lambda e: (e.ip, e.port)))


def _serving_terminating(endpoint: Endpoint) -> bool:
    return endpoint.serving and endpoint.terminating


def categorize(sp: ServicePort, node: NodeContext) -> Selection:
    """Upstream's CategorizeEndpoints for ``sp`` on ``node``."""
    endpoints = _sorted(sp.endpoints)
    if not endpoints:
        return Selection((), (), (), False)

    cluster: tuple[Endpoint, ...] = ()
    has_any = False
    if uses_cluster_endpoints(sp):
        mode = topology_mode(sp, node)
        cluster = tuple(e for e in endpoints if e.ready and _available(e, mode, node))
        if not cluster:
            # No ready endpoint anywhere (a topology mode is only chosen when one is hinted here).
            cluster = tuple(e for e in endpoints if _serving_terminating(e))
        has_any = bool(cluster)

    if not uses_local_endpoints(sp):
        return Selection(cluster, (), cluster, has_any)

    has_any = has_any or any(e.ready or _serving_terminating(e) for e in endpoints)
    mine = [e for e in endpoints if is_local(e, node)]
    local = tuple(e for e in mine if e.ready) or tuple(e for e in mine if _serving_terminating(e))

    if not uses_cluster_endpoints(sp):
        return Selection((), local, local, has_any)
    union = {(e.ip, e.port): e for e in (*cluster, *local)}
    return Selection(cluster, local, _sorted(union.values()), has_any)

"""The proxy snapshot: what one node's kube-proxy knows, as immutable values.

Built from Service and EndpointSlice wire objects for one node and one address family, keyed by
upstream's ServicePortName (``namespace/name:port``).  Everything the rule compilers and the
reference evaluator need is here, resolved once: the endpoint port of each service port (slices
carry ports by name), endpoint conditions, node and zone, hints, the traffic policies, session
affinity, the addresses a Service answers on (ClusterIPs, externalIPs, LoadBalancer ingress IPs,
NodePorts on the node's addresses).  Headless and ExternalName Services have no rules and are left
out, as upstream does.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kubewire.api.discovery import ServiceKey, change_signature, object_key, slices_by_service

Obj = dict[str, Any]
TOPOLOGY_MODE_ANNOTATION = "service.kubernetes.io/topology-mode"
TOPOLOGY_HINTS_ANNOTATION = "service.kubernetes.io/topology-aware-hints"  # the older spelling


class Endpoint(NamedTuple):
    """One endpoint of one service port (address and the port it serves that service port on).

    A named tuple rather than a frozen dataclass: a full sync at 10,000 Services builds 100,000 of
    them, and a tuple is built several times faster (immutable, ordered and hashable all the same)."""

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node: str = ""
    zone: str = ""
    hint_zones: tuple[str, ...] = ()
    hint_nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service, in one address family, with its endpoints."""

    namespace: str
    name: str
    port_name: str
    protocol: str  # TCP, UDP or SCTP
    port: int
    cluster_ips: tuple[str, ...] = ()
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    source_ranges: tuple[str, ...] = ()
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0
    affinity_timeout: int = 0  # seconds of ClientIP affinity; 0: none
    traffic_distribution: str = ""
    topology_auto: bool = False
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def key(self) -> str:
        """Upstream's ServicePortName string: ``namespace/name:port`` (``namespace/name`` unnamed)."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def externally_reachable(self) -> bool:
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)


@dataclass(frozen=True)
class NodeContext:
    """The node a snapshot is for."""

    name: str
    zone: str = ""
    addresses: tuple[str, ...] = ()  # this family's node addresses (NodePorts answer on them)
    pod_cidrs: tuple[str, ...] = ()  # the cluster's pod CIDRs of this family (masquerade decisions)
    service_cidrs: tuple[str, ...] = ()  # this family's service CIDRs: unallocated addresses are dropped


@dataclass(frozen=True)
class ProxySnapshot:
    """Everything one node's proxy programs for one family, sorted by service port key."""

    family: int  # 4 or 6
    node: NodeContext
    services: tuple[ServicePort, ...] = field(default=())

    def by_key(self) -> dict[str, ServicePort]:
        return {s.key: s for s in self.services}


def family_of(address: str) -> int:
    """4 or 6 for an address the API server validated: an IPv6 address always holds a colon and an
    IPv4 one never does (parsing with ``ipaddress`` cost a second per full sync at 10,000 Services)."""
    return 6 if ":" in address else 4


def _service_ips(spec: Mapping[str, Any], family: int) -> tuple[str, ...]:
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return tuple(ip for ip in ips if ip and ip != "None" and family_of(ip) == family)


def _endpoints_for(port_name: str, slices: Iterable[Obj], family: int) -> tuple[Endpoint, ...]:
    """The endpoints serving ``port_name``, from every slice of the Service in this family.

    Written for speed (a full sync at 10,000 Services reads 100,000 endpoints here): positional
    tuples, and the optional fields looked at only when present."""
    seen: dict[tuple[str, int], Endpoint] = {}
    want = "IPv4" if family == 4 else "IPv6"
    for sl in slices:
        if sl.get("addressType") != want:
            continue
        port = next((p for p in sl.get("ports") or () if (p.get("name") or "") == port_name), None)
        number = int(port.get("port") or 0) if port is not None else 0
        if not number:
            continue
        for ep in sl.get("endpoints") or ():
            addresses = ep.get("addresses")
            if not addresses:
                continue
            ip = str(addresses[0])  # upstream uses the first address
            if (ip, number) in seen:
                continue
            cond = ep.get("conditions") or _EMPTY
            hints = ep.get("hints")
            zones: tuple[str, ...] = ()
            nodes: tuple[str, ...] = ()
            if hints:
                zones = tuple(str(z.get("name")) for z in hints.get("forZones") or ())
                nodes = tuple(str(n.get("name")) for n in hints.get("forNodes") or ())
            seen[(ip, number)] = Endpoint(
                ip,
                number,
                cond.get("ready") is not False,  # nil means ready, as upstream reads it
                cond.get("serving") is not False,  # kube-proxy also reads nil serving as true
                bool(cond.get("terminating")),
                str(ep.get("nodeName") or ""),
                str(ep.get("zone") or ""),
                zones,
                nodes,
            )
    return tuple(sorted(seen.values()))


_EMPTY: Mapping[str, Any] = {}


def service_ports(service: Obj, slices: Iterable[Obj], family: int) -> list[ServicePort]:
    """The ServicePorts of one Service in ``family`` (none for headless or ExternalName)."""
    meta, spec, status = service.get("metadata") or {}, service.get("spec") or {}, service.get("status") or {}
    if spec.get("type") == "ExternalName":
        return []
    cluster_ips = _service_ips(spec, family)
    if not cluster_ips:
        return []  # headless, or not of this family
    slices = list(slices)
    annotations = meta.get("annotations") or {}
    topology = str(annotations.get(TOPOLOGY_MODE_ANNOTATION) or annotations.get(TOPOLOGY_HINTS_ANNOTATION) or "")
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = int(cfg.get("timeoutSeconds") or 10800)
    lb_ips = tuple(
        str(i["ip"])
        for i in (status.get("loadBalancer") or {}).get("ingress") or []
        # ipMode Proxy: the load balancer proxies to the nodes itself, so kube-proxy programs no VIP
        if i.get("ip") and i.get("ipMode") in (None, "VIP") and family_of(str(i["ip"])) == family
    )
    external = tuple(ip for ip in spec.get("externalIPs") or [] if family_of(ip) == family)
    ranges = tuple(
        r.strip()
        for r in spec.get("loadBalancerSourceRanges") or []
        if r.strip() and ipaddress.ip_network(r.strip(), strict=False).version == family
    )
    out = []
    for p in spec.get("ports") or []:
        name = str(p.get("name") or "")
        out.append(
            ServicePort(
                namespace=str(meta.get("namespace", "")),
                name=str(meta.get("name", "")),
                port_name=name,
                protocol=str(p.get("protocol") or "TCP"),
                port=int(p["port"]),
                cluster_ips=cluster_ips,
                node_port=int(p.get("nodePort") or 0),
                external_ips=external,
                load_balancer_ips=lb_ips if spec.get("type") == "LoadBalancer" else (),
                source_ranges=ranges if spec.get("type") == "LoadBalancer" else (),
                external_policy_local=spec.get("externalTrafficPolicy") == "Local",
                internal_policy_local=spec.get("internalTrafficPolicy") == "Local",
                health_check_node_port=int(spec.get("healthCheckNodePort") or 0),
                affinity_timeout=affinity,
                traffic_distribution=str(spec.get("trafficDistribution") or ""),
                topology_auto=topology.lower() == "auto",
                endpoints=_endpoints_for(name, slices, family),
            )
        )
    return out


def build_snapshot(services: Iterable[Obj], slices: Iterable[Obj], node: NodeContext, family: int) -> ProxySnapshot:
    """The snapshot for ``node`` and ``family`` from every Service and EndpointSlice."""
    by_service = slices_by_service(slices)
    ports: list[ServicePort] = []
    for svc in services:
        ports.extend(service_ports(svc, by_service.get(object_key(svc), []), family))
    ports.sort(key=lambda s: s.key + "/" + s.protocol)
    return ProxySnapshot(family, node, tuple(ports))


def _sort_key(sp: ServicePort) -> str:
    return sp.key + "/" + sp.protocol


class SnapshotCache:
    """Builds successive snapshots for one family, reusing the ServicePorts of every Service whose
    object and EndpointSlices did not change (by resourceVersion), and naming the ones that did.

    Two ways in: :meth:`build` reads every Service and EndpointSlice (a pass of cheap comparisons:
    the first sync, and whenever the caller has no change record); :meth:`update` is told which
    Services may have changed (the caller's watch handlers record them, design principle 3) and
    costs only those, so a one-Service change at 10,000 Services does not walk the other 9,999.
    The sorted order is kept as a list spliced at the changed positions.  Both return the snapshot
    and the ``namespace/name`` of every Service whose ports were rebuilt or dropped;
    :attr:`previous` holds those Services' ports as they were before (for the conntrack clean-up).
    """

    def __init__(self, family: int) -> None:
        self.family = family
        self._cache: dict[ServiceKey, tuple[tuple[str, ...], list[ServicePort]]] = {}
        self._order: list[str] = []  # every cached port's sort key, sorted
        self._ports: list[ServicePort] = []  # the ports, aligned with _order
        self.previous: dict[str, list[ServicePort]] = {}

    def _refresh(self, key: ServiceKey, service: Obj | None, slices: list[Obj]) -> list[ServicePort] | None:
        """Bring one Service's entry up to date; its old ports when it changed, else None."""
        cached = self._cache.get(key)
        if service is None:
            if cached is None:
                return None
            del self._cache[key]
            return cached[1]
        signature = change_signature(service, slices)
        if cached is not None and cached[0] == signature:
            return None
        self._cache[key] = (signature, service_ports(service, slices, self.family))
        return cached[1] if cached is not None else []

    def ports(self, key: ServiceKey) -> list[ServicePort]:
        """One Service's ports as of the last snapshot."""
        cached = self._cache.get(key)
        return cached[1] if cached is not None else []

    def _snapshot(self, node: NodeContext) -> ProxySnapshot:
        return ProxySnapshot(self.family, node, tuple(self._ports))

    def build(
        self, services: Iterable[Obj], slices: Iterable[Obj], node: NodeContext
    ) -> tuple[ProxySnapshot, set[str]]:
        """The snapshot from every Service and EndpointSlice, and the Services that changed."""
        by_service = slices_by_service(slices)
        present = {object_key(svc): svc for svc in services}
        self.previous = {}
        for key in [*present, *(k for k in self._cache if k not in present)]:
            old = self._refresh(key, present.get(key), by_service.get(key, []))
            if old is not None:
                self.previous[f"{key[0]}/{key[1]}"] = old
        ports = sorted((sp for _, sps in self._cache.values() for sp in sps), key=_sort_key)
        self._ports = ports
        self._order = [_sort_key(sp) for sp in ports]
        return self._snapshot(node), set(self.previous)

    def update(
        self,
        keys: Iterable[ServiceKey],
        service_of: Callable[[ServiceKey], Obj | None],
        slices_of: Callable[[ServiceKey], list[Obj]],
        node: NodeContext,
    ) -> tuple[ProxySnapshot, set[str]]:
        """The snapshot after the Services ``keys`` (and only they) may have changed: each is read
        again through ``service_of`` (None when it is gone) and ``slices_of``."""
        self.previous = {}
        for key in keys:
            old = self._refresh(key, service_of(key), slices_of(key))
            if old is None:
                continue
            self.previous[f"{key[0]}/{key[1]}"] = old
            for sp in old:
                i = bisect.bisect_left(self._order, _sort_key(sp))
                while self._ports[i] is not sp:  # equal sort keys (a repeated port key) sit together
                    i += 1
                del self._order[i], self._ports[i]
            cached = self._cache.get(key)
            for sp in cached[1] if cached is not None else []:
                sort_key = _sort_key(sp)
                i = bisect.bisect_right(self._order, sort_key)
                self._order.insert(i, sort_key)
                self._ports.insert(i, sp)
        return self._snapshot(node), set(self.previous)

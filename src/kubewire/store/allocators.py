"""Service ClusterIP and NodePort allocation, run as a store admission step.

Upstream the kube-apiserver's Service REST storage owns this (``pkg/registry/core/service/storage``
``alloc.go`` with the ``ipallocator`` and ``portallocator`` bitmaps): on create and update it
defaults ``ipFamilyPolicy``/``ipFamilies``, allocates one cluster IP per family (random, or the
one asked for), node ports for NodePort/LoadBalancer Services and a ``healthCheckNodePort`` for
LoadBalancers with ``externalTrafficPolicy: Local``, and releases them when the Service no longer
needs them or is gone.  :class:`Allocators` does the same inside kubewire's :class:`Store`: its
:meth:`Allocators.admit` runs after validation, just before the write, and its removal hook runs
once a Service is really gone.  Errors carry upstream's field paths and sentences.

No leaks, no double allocation: what the allocator holds is, per Service key, exactly what
:func:`Allocators.holdings_of` reads from the stored Service.  It is rebuilt from the store on
:meth:`Allocators.install` (so a restart is safe), and every admitted key is marked unconfirmed
until the next admission, which first re-reads those keys from the store: a write that failed
after this step (a later admission step, a conflict, a disk error) gives its values back before
anything else can be allocated.  :meth:`Allocators.repair` recomputes everything, like upstream's
repair controllers.  ``dry_run`` fills the object (so a dry-run shows the IPs and ports a real
request would get) and keeps nothing.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubewire.api.fields import FieldError, Path, invalid, invalid_value
from kubewire.api.netvalid import ip_family, parse_ip, unmapped
from kubewire.api.registry import Kind, Obj
from kubewire.api.service import (
    CLUSTER_IP_NONE,
    EXTERNAL_NAME,
    LOAD_BALANCER,
    NODE_PORT,
    SERVICE,
    cluster_ips,
    is_headless,
    needs_health_check,
    ports_of,
    spec_of,
    type_of,
    validate_cluster_ips,
)
from kubewire.errors import InternalError, StatusError
from kubewire.store.informer import key_of
from kubewire.store.store import Store

SINGLE_STACK, PREFER_DUAL_STACK, REQUIRE_DUAL_STACK = "SingleStack", "PreferDualStack", "RequireDualStack"
IPV4, IPV6 = "IPv4", "IPv6"
PORTS = "ports"  # the pool name of the node-port range
# Upstream ipallocator keeps a bitmap, so an IPv6 range is capped at 2^16 addresses.
MAX_IPV6_RANGE = 65536
# Upstream ``calculateRangeOffset``: min(max(16, size/16), 256) addresses of a service CIDR (and
# min(max(16, size/32), 128) ports of the node-port range) are a lower band that dynamic
# allocation only uses once the upper band is full, leaving it for static requests (KEP-3070).
IP_OFFSET_MIN, IP_OFFSET_MAX, IP_OFFSET_STEP = 16, 256, 16
PORT_OFFSET_MIN, PORT_OFFSET_MAX, PORT_OFFSET_STEP = 16, 128, 32

Holding = tuple[str, int]  # (pool name, index within the pool)


# ---------------------------------------------------------------------------------- errors


class AllocationError(Exception):
    """Why one value could not be allocated (upstream's allocator error strings)."""


class NotInRange(AllocationError):
    pass


class AlreadyAllocated(AllocationError):
    pass


class RangeIsFull(AllocationError):
    def __init__(self) -> None:
        super().__init__("range is full")


# ---------------------------------------------------------------------------------- pools


def range_offset(size: int, low: int, high: int, step: int) -> int:
    """Upstream ``calculateRangeOffset``: the size of the band reserved for static allocation."""
    if size <= low:
        return 0
    return max(low, min(size // step, high))


@dataclass
class Pool:
    """One contiguous range of allocatable values (a service CIDR or the node-port range),
    indexed 0..size-1 from ``base``; ``owners`` maps an index to the Service key holding it."""

    name: str
    label: str  # the range as upstream prints it: "10.96.0.0/16" or "30000-32767"
    base: int
    size: int
    offset: int
    owners: dict[int, str] = field(default_factory=dict)
    family: str = ""

    def index(self, value: Any) -> int | None:
        """The index of ``value`` (an IP string or a port number), or None when out of range."""
        if self.name == PORTS:
            number = value if isinstance(value, int) and not isinstance(value, bool) else None
        else:
            ip = parse_ip(value)
            number = int(unmapped(ip)) if ip is not None and ip_family(value) == self.family else None
        if number is None or not self.base <= number < self.base + self.size:
            return None
        return number - self.base

    def value(self, index: int) -> Any:
        number = self.base + index
        if self.name == PORTS:
            return number
        return str(ipaddress.IPv4Address(number) if self.family == IPV4 else ipaddress.IPv6Address(number))

    def out_of_range(self) -> str:
        if self.name == PORTS:
            return f"provided port is not in the valid range. The range of valid ports is {self.label}"
        return f"provided IP is not in the valid range. The range of valid IPs is {self.label}"

    def already(self) -> str:
        return "provided port is already allocated" if self.name == PORTS else "provided IP is already allocated"

    def next_free(self, rng: random.Random, taken: set[int]) -> int:
        """Upstream's random scan with offset: a random start in the upper band, then the lower band."""
        busy = self.owners.keys() | taken
        for lo, hi in ((self.offset, self.size), (0, self.offset)):
            span = hi - lo
            if span <= 0:
                continue
            start = rng.randrange(span)
            for i in range(span):
                at = lo + (start + i) % span
                if at not in busy:
                    return at
        raise RangeIsFull()


def ip_pool(cidr: str) -> Pool:
    """Upstream ``ipallocator.New``: never the network address, never the IPv4 broadcast."""
    net = ipaddress.ip_network(cidr, strict=False)
    size = net.num_addresses
    offset = range_offset(size, IP_OFFSET_MIN, IP_OFFSET_MAX, IP_OFFSET_STEP)
    if net.version == 6:
        size = min(size, MAX_IPV6_RANGE)
    else:
        size -= 1  # the broadcast address
    size = max(0, size - 1)  # the network address
    family = IPV4 if net.version == 4 else IPV6
    return Pool(family, str(net), int(net.network_address) + 1, size, offset, family=family)


def port_pool(low: int, high: int) -> Pool:
    size = high - low + 1
    offset = range_offset(size, PORT_OFFSET_MIN, PORT_OFFSET_MAX, PORT_OFFSET_STEP)
    return Pool(PORTS, f"{low}-{high}", low, size, offset)


# ---------------------------------------------------------------------------------- helpers


def _families(obj: Mapping[str, Any]) -> list[Any]:
    return list(spec_of(obj).get("ipFamilies") or [])


def _node_port_numbers(obj: Mapping[str, Any]) -> list[int]:
    return [p["nodePort"] for p in ports_of(obj) if isinstance(p.get("nodePort"), int) and p["nodePort"]]


def _has_node_ports(obj: Mapping[str, Any]) -> bool:
    return type_of(obj) in (NODE_PORT, LOAD_BALANCER)


def _should_allocate_node_ports(obj: Mapping[str, Any]) -> bool:
    """Upstream ``shouldAllocateNodePorts``: LoadBalancers may opt out of new node ports."""
    if type_of(obj) == NODE_PORT:
        return True
    return type_of(obj) == LOAD_BALANCER and spec_of(obj).get("allocateLoadBalancerNodePorts") is not False


def _matching_prefer_dual_stack(new: Obj, old: Obj | None) -> bool:
    """Upstream ``isMatchingPreferDualStackClusterIPFields``: a PreferDualStack Service is never
    upgraded or downgraded just because the cluster's dual-stackness changed."""
    if old is None or spec_of(new).get("ipFamilyPolicy") is None or type_of(old) != type_of(new):
        return False
    if type_of(new) not in ("ClusterIP", NODE_PORT, LOAD_BALANCER):
        return False
    if spec_of(new).get("ipFamilyPolicy") != PREFER_DUAL_STACK:
        return False
    if spec_of(old).get("ipFamilyPolicy") not in (None, PREFER_DUAL_STACK):
        return False
    return cluster_ips(old) == cluster_ips(new) and _families(old) == _families(new)


def _reduced(new: list[Any], old: list[Any]) -> bool:
    return bool(new) and len(new) < len(old)


# ---------------------------------------------------------------------------------- one admission


class _Operation:
    """The values one admission takes; nothing is recorded until the caller commits."""

    def __init__(self, allocators: Allocators, key: str) -> None:
        self.alloc = allocators
        self.key = key
        self.taken: dict[str, set[int]] = {}

    def take(self, pool: Pool, value: Any) -> None:
        """Reserve a requested value (raises NotInRange / AlreadyAllocated)."""
        index = pool.index(value)
        if index is None:
            raise NotInRange(pool.out_of_range())
        taken = self.taken.setdefault(pool.name, set())
        if index in taken or index in pool.owners:
            raise AlreadyAllocated(pool.already())
        taken.add(index)

    def take_next(self, pool: Pool) -> Any:
        taken = self.taken.setdefault(pool.name, set())
        index = pool.next_free(self.alloc.rng, taken)
        taken.add(index)
        return pool.value(index)


# ---------------------------------------------------------------------------------- allocators


class Allocators:
    """Service cluster IPs (per family) and node ports, kept consistent with the store."""

    def __init__(
        self,
        service_cidrs: list[str],
        node_port_range: tuple[int, int] = (30000, 32767),
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= len(service_cidrs) <= 2:
            raise ValueError("one service CIDR, or two of different families, are supported")
        pools = [ip_pool(c) for c in service_cidrs]
        if len({p.family for p in pools}) != len(pools):
            raise ValueError("dual-stack service CIDRs must be of different IP families")
        self.ip_pools: dict[str, Pool] = {p.family: p for p in pools}
        self.default_family = pools[0].family
        self.ports = port_pool(*node_port_range)
        self.rng = rng or random.Random()
        self._held: dict[str, set[Holding]] = {}
        self._unconfirmed: set[str] = set()
        self._store: Store | None = None

    # ------------------------------------------------------------------ wiring

    def install(self, store: Store) -> None:
        """Rebuild from every stored Service, then hook into the store's writes and removals."""
        self._store = store
        self.repair(store)
        store.admission.append(self.admit)
        store.removal_hooks.append(self.on_removed)

    def repair(self, store: Store) -> None:
        """Recompute everything from the stored Services (upstream's repair controllers).  When two
        stored Services claim one value, the older keeps it."""
        service_kind = store.registry.by_kind("", "v1", "Service")
        assert service_kind is not None
        for pool in self._pools():
            pool.owners.clear()
        self._held.clear()
        self._unconfirmed.clear()
        services = sorted(
            store.iter_objects(service_kind),
            key=lambda o: (str(o["metadata"].get("creationTimestamp", "")), key_of(o)),
        )
        for svc in services:
            self._set_holdings(key_of(svc), self.holdings_of(svc))

    def _pools(self) -> list[Pool]:
        return [*self.ip_pools.values(), self.ports]

    def _pool(self, name: str) -> Pool:
        return self.ports if name == PORTS else self.ip_pools[name]

    # ------------------------------------------------------------------ what is held

    def holdings_of(self, svc: Mapping[str, Any]) -> set[Holding]:
        """The values a stored Service holds: its cluster IPs inside a configured range (not for
        ExternalName or headless), its node ports (NodePort/LoadBalancer) and its
        healthCheckNodePort (LoadBalancer with externalTrafficPolicy Local)."""
        held: set[Holding] = set()
        if type_of(svc) != EXTERNAL_NAME and not is_headless(svc):
            for ip in cluster_ips(svc):
                pool = self.ip_pools.get(ip_family(ip))
                index = pool.index(ip) if pool is not None else None
                if pool is not None and index is not None:
                    held.add((pool.name, index))
        numbers = _node_port_numbers(svc) if _has_node_ports(svc) else []
        if needs_health_check(svc) and isinstance(spec_of(svc).get("healthCheckNodePort"), int):
            numbers.append(spec_of(svc)["healthCheckNodePort"])
        for number in numbers:
            index = self.ports.index(number)
            if index is not None:
                held.add((PORTS, index))
        return held

    def in_use(self) -> dict[str, set[Any]]:
        """Every allocated value by pool name (``IPv4``, ``IPv6``, ``ports``), settled first."""
        self._settle()
        return {pool.name: {pool.value(i) for i in pool.owners} for pool in self._pools()}

    def owner_of(self, pool_name: str, value: Any) -> str | None:
        """The ``namespace/name`` of the Service holding ``value``, if any."""
        self._settle()
        pool = self._pool(pool_name)
        index = pool.index(value)
        return pool.owners.get(index) if index is not None else None

    def _set_holdings(self, key: str, holdings: Iterable[Holding]) -> None:
        """Make ``key`` hold exactly ``holdings`` (values another key holds stay with it)."""
        wanted = {h for h in holdings if self._pool(h[0]).owners.get(h[1], key) == key}
        for name, index in self._held.get(key, set()) - wanted:
            pool = self._pool(name)
            if pool.owners.get(index) == key:
                del pool.owners[index]
        for name, index in wanted:
            self._pool(name).owners[index] = key
        if wanted:
            self._held[key] = wanted
        else:
            self._held.pop(key, None)

    def _settle(self) -> None:
        """Re-read the Services admitted since last time: a write that failed after admission
        gives back what it took, one that succeeded keeps it."""
        if self._store is None or not self._unconfirmed:
            return
        kind = self._store.registry.by_kind("", "v1", "Service")
        assert kind is not None
        for key in sorted(self._unconfirmed):
            ns, _, name = key.partition("/")
            try:
                stored: Obj | None = self._store.get(kind, ns, name)
            except StatusError:
                stored = None
            self._set_holdings(key, self.holdings_of(stored) if stored is not None else set())
        self._unconfirmed.clear()

    # ------------------------------------------------------------------ store hooks

    def on_removed(self, kind: Kind, obj: Obj) -> None:
        """Removal hook: a Service really gone releases everything it held."""
        if kind is SERVICE:
            key = key_of(obj)
            self._set_holdings(key, set())
            self._unconfirmed.discard(key)

    def admit(self, op: str, kind: Kind, new: Obj, old: Obj | None, dry_run: bool) -> None:
        """Admission step: default IP families, allocate what ``new`` needs (in place)."""
        if kind is not SERVICE:
            return
        self._settle()
        old = old if op == "UPDATE" else None
        if old is not None and new.get("spec") == old.get("spec"):
            return  # a status or metadata write: upstream's status REST allocates nothing either
        name = str(new.get("metadata", {}).get("name", ""))
        operation = _Operation(self, key_of(new))
        self._init_ip_families(new, old, name)
        self._allocate_cluster_ips(operation, new, old, name)
        self._allocate_node_ports(operation, new, old, name)
        self._allocate_health_check(operation, new, old)
        if not dry_run:
            self._set_holdings(operation.key, self.holdings_of(new))
            self._unconfirmed.add(operation.key)

    # ------------------------------------------------------------------ IP families

    def _init_ip_families(self, new: Obj, old: Obj | None, name: str) -> None:
        """Upstream ``initIPFamilyFields``: default ipFamilyPolicy and ipFamilies, check them
        against the cluster's configuration."""
        spec = new.setdefault("spec", {})
        if type_of(new) == EXTERNAL_NAME or _matching_prefer_dual_stack(new, old):
            return
        self._default_policy(spec, old)
        errs = validate_cluster_ips(new)
        if errs:
            raise invalid("Service", name, errs)
        errs = self._policy_errors(spec, old)
        errs.extend(self._infer_families_from_ips(spec))
        if errs:
            raise invalid("Service", name, errs)
        if spec.get("clusterIP") == CLUSTER_IP_NONE and not spec.get("selector"):
            self._headless_selectorless_families(spec)
            return
        errs = self._configured_errors(spec)
        if errs:
            raise invalid("Service", name, errs)
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = [self.default_family]
        if spec["ipFamilyPolicy"] != SINGLE_STACK and len(spec["ipFamilies"]) == 1 and len(self.ip_pools) == 2:
            spec["ipFamilies"].append(IPV6 if spec["ipFamilies"][0] == IPV4 else IPV4)

    @staticmethod
    def _default_policy(spec: dict[str, Any], old: Obj | None) -> None:
        if spec.get("ipFamilyPolicy") is not None:
            return
        old_policy = spec_of(old).get("ipFamilyPolicy") if old is not None else None
        if old_policy is not None:
            spec["ipFamilyPolicy"] = old_policy
        elif spec.get("clusterIP") == CLUSTER_IP_NONE and not spec.get("selector"):
            spec["ipFamilyPolicy"] = REQUIRE_DUAL_STACK  # headless + selectorless defaults to dual
        else:
            spec["ipFamilyPolicy"] = SINGLE_STACK

    @staticmethod
    def _policy_errors(spec: dict[str, Any], old: Obj | None) -> list[FieldError]:
        policy, path = spec["ipFamilyPolicy"], Path("spec").child("ipFamilyPolicy")
        errs: list[FieldError] = []
        ips, families = list(spec.get("clusterIPs") or []), list(spec.get("ipFamilies") or [])
        if old is not None:
            old_ips, old_families = cluster_ips(old), _families(old)
            if policy == SINGLE_STACK:
                # Setting SingleStack with otherwise unchanged fields is clear intent to downgrade.
                if ips == old_ips and len(ips) > 1:
                    spec["clusterIPs"] = ips = ips[:1]
                if families == old_families and len(families) > 1:
                    spec["ipFamilies"] = families = families[:1]
            else:
                if _reduced(ips, old_ips):
                    msg = "must be 'SingleStack' to release the secondary cluster IP"
                    errs.append(invalid_value(path, policy, msg))
                if _reduced(families, old_families):
                    msg = "must be 'SingleStack' to release the secondary IP family"
                    errs.append(invalid_value(path, policy, msg))
        if policy == SINGLE_STACK:
            if len(ips) == 2:
                msg = "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"
                errs.append(invalid_value(path, policy, msg))
            if len(families) == 2:
                msg = "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"
                errs.append(invalid_value(path, policy, msg))
        return errs

    def _infer_families_from_ips(self, spec: dict[str, Any]) -> list[FieldError]:
        """ipFamilies[i] follows clusterIPs[i] when not given (requested IPs set the order)."""
        errs: list[FieldError] = []
        ips = list(spec.get("clusterIPs") or [])
        families = list(spec.get("ipFamilies") or [])
        for i, ip in enumerate(ips):
            if ip == CLUSTER_IP_NONE:
                break
            family = ip_family(ip)
            if i < len(families):
                continue
            if family not in self.ip_pools:
                path = Path("spec").child("clusterIPs").index(i)
                errs.append(invalid_value(path, ips, f"{family} is not configured on this cluster"))
            else:
                families.append(family)
        if families:
            spec["ipFamilies"] = families
        return errs

    def _headless_selectorless_families(self, spec: dict[str, Any]) -> None:
        """Headless Services without a selector may name families the cluster lacks, as upstream."""
        families = list(spec.get("ipFamilies") or []) or [self.default_family]
        if len(families) < 2 and spec["ipFamilyPolicy"] != SINGLE_STACK:
            families.append(IPV6 if families[0] == IPV4 else IPV4)
        spec["ipFamilies"] = families

    def _configured_errors(self, spec: dict[str, Any]) -> list[FieldError]:
        errs: list[FieldError] = []
        if spec["ipFamilyPolicy"] == REQUIRE_DUAL_STACK and len(self.ip_pools) < 2:
            path = Path("spec").child("ipFamilyPolicy")
            errs.append(
                invalid_value(path, spec["ipFamilyPolicy"], "this cluster is not configured for dual-stack services")
            )
        for i, family in enumerate(spec.get("ipFamilies") or []):
            if family not in self.ip_pools:
                path = Path("spec").child("ipFamilies").index(i)
                errs.append(invalid_value(path, family, "not configured on this cluster"))
        return errs

    # ------------------------------------------------------------------ cluster IPs

    def _allocate_cluster_ips(self, op: _Operation, new: Obj, old: Obj | None, name: str) -> None:
        """Upstream ``allocClusterIPs``/``updateClusterIPs``: all on create (or from
        ExternalName), the secondary on upgrade; a downgrade or a type change to ExternalName
        releases (the holdings of the written object no longer include them)."""
        if type_of(new) == EXTERNAL_NAME or is_headless(new):
            return
        spec = new["spec"]
        families = _families(new)
        if old is None or type_of(old) == EXTERNAL_NAME:
            wanted = range(len(families))
        elif _matching_prefer_dual_stack(new, old) or is_headless(old):
            return
        elif len(_families(old)) == 1 and len(families) == 2:
            wanted = range(1, 2)
        else:
            return
        ips: list[Any] = list(spec.get("clusterIPs") or [])
        while len(ips) < len(families):
            ips.append("")  # a marker: allocate any
        spec["clusterIPs"] = ips
        for i in wanted:
            ips[i] = self._allocate_ip(op, self.ip_pools[families[i]], ips, ips[i], name)
        spec["clusterIP"] = ips[0]

    @staticmethod
    def _allocate_ip(op: _Operation, pool: Pool, ips: list[Any], requested: Any, name: str) -> Any:
        if not requested:
            try:
                return op.take_next(pool)
            except RangeIsFull as err:
                raise InternalError(f"failed to allocate a serviceIP: {err}") from err
        try:
            op.take(pool, requested)
        except AllocationError as err:
            msg = f"failed to allocate IP {requested}: {err}"
            raise invalid("Service", name, [invalid_value(Path("spec").child("clusterIPs"), list(ips), msg)]) from err
        return requested

    # ------------------------------------------------------------------ node ports

    def _allocate_node_ports(self, op: _Operation, new: Obj, old: Obj | None, name: str) -> None:
        if not _has_node_ports(new):
            return  # a change to ClusterIP/ExternalName releases through the holdings
        ports = [p for p in (new["spec"].get("ports") or []) if isinstance(p, dict)]
        if old is None:
            self._create_node_ports(op, ports, _should_allocate_node_ports(new), name)
        else:
            kept = set(_node_port_numbers(old)) if _has_node_ports(old) else set()
            self._update_node_ports(op, ports, _should_allocate_node_ports(new), kept, name)

    def _create_node_ports(self, op: _Operation, ports: list[dict[str, Any]], allocate: bool, name: str) -> None:
        """Upstream ``initNodePorts``: ports sharing a port number (53/TCP and 53/UDP) share one
        node port; a requested node port is honoured."""
        by_port: dict[Any, int] = {}
        for i, port in enumerate(ports):
            if not port.get("nodePort") and not allocate:
                continue  # LoadBalancer without node ports: only explicit requests are allocated
            shared = by_port.get(port.get("port"))
            if shared is None:
                requested = next(
                    (p["nodePort"] for p in ports if p.get("port") == port.get("port") and p.get("nodePort")), 0
                )
                port["nodePort"] = self._take_node_port(op, requested, i, name)
                by_port[port.get("port")] = port["nodePort"]
            elif not port.get("nodePort"):
                port["nodePort"] = shared
            elif port["nodePort"] != shared:
                self._take_node_port(op, port["nodePort"], i, name)

    def _update_node_ports(
        self, op: _Operation, ports: list[dict[str, Any]], allocate: bool, kept: set[int], name: str
    ) -> None:
        """Upstream ``updateNodePorts``: node ports the old object held are kept; one number given
        to several ports (TCP and UDP) is allocated once."""
        taken: set[int] = set()
        for i, port in enumerate(ports):
            number = port.get("nodePort")
            if not number and not allocate:
                continue
            if not number:
                port["nodePort"] = self._take_node_port(op, 0, i, name)
            elif number not in kept and number not in taken:
                self._take_node_port(op, number, i, name)
                taken.add(number)

    def _take_node_port(self, op: _Operation, requested: Any, i: int, name: str) -> Any:
        if not requested:
            try:
                return op.take_next(self.ports)
            except RangeIsFull as err:
                raise InternalError(f"failed to allocate a nodePort: {err}") from err
        try:
            op.take(self.ports, requested)
        except AllocationError as err:
            path = Path("spec").child("ports").index(i).child("nodePort")
            raise invalid("Service", name, [invalid_value(path, requested, str(err))]) from err
        return requested

    # ------------------------------------------------------------------ health check node port

    def _allocate_health_check(self, op: _Operation, new: Obj, old: Obj | None) -> None:
        """Upstream ``allocHealthCheckNodePort``/``updateHealthCheckNodePort``: allocated when a
        Service starts needing one, released (through the holdings) when it stops."""
        if not needs_health_check(new) or (old is not None and needs_health_check(old)):
            return
        spec = new["spec"]
        requested = spec.get("healthCheckNodePort")
        if requested:
            try:
                op.take(self.ports, requested)
            except AllocationError as err:
                raise InternalError(f"failed to allocate requested HealthCheck NodePort {requested}: {err}") from err
            return
        try:
            spec["healthCheckNodePort"] = op.take_next(self.ports)
        except RangeIsFull as err:
            raise InternalError(f"failed to allocate a HealthCheck NodePort 0: {err}") from err

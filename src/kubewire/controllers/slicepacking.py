"""EndpointSlice packing: how desired endpoints are spread over slices with the fewest writes.

This is the pure core of the EndpointSlice controller, after upstream's
``staging/src/k8s.io/endpointslice`` reconciler: endpoints are grouped by their port list; within a
group, existing slices keep the endpoints they already hold (updated in place when they changed),
leftover endpoints fill slices that are being written anyway, then one unchanged slice that can
take all of them, and only then new slices; emptied slices are deleted, creates are turned into
updates of slices that would be deleted, and one empty placeholder slice is kept per address type
when there are no endpoints.  Topology hints (``trafficDistribution`` and the ``topology-mode:
Auto`` CPU-proportional allocation) are applied afterwards, as upstream does.

Everything here is a function of wire-form dicts: no informers, no clock, no I/O.  Output is
deterministic (endpoints sorted by address within a slice, ties broken by name) so re-planning an
unchanged world yields no writes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Obj = dict[str, Any]
EndpointKey = tuple[tuple[str, ...], str, str, str]
PortKey = tuple[tuple[str, str, int, str], ...]

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_HEADLESS = "service.kubernetes.io/headless"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
ANNOTATION_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
RESERVED_LABELS = frozenset({LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS})

# Upstream topologycache ``overloadThreshold``: no endpoint should take more than 20% above its
# zone's fair share of traffic.
OVERLOAD_THRESHOLD = 0.2

# Upstream topologycache event messages (reason TopologyAwareHintsDisabled / Enabled).
NO_ZONE_SPECIFIED = "One or more endpoints do not have a zone specified"
NO_ALLOCATED_HINTS_FOR_ZONES = "No hints allocated for zones"
TOPOLOGY_AWARE_HINTS_ENABLED = "Topology Aware Hints has been enabled"
INSUFFICIENT_NODE_INFO = "Insufficient Node information: allocatable CPU or zone not specified on one or more nodes"
NODES_READY_IN_ONE_ZONE_ONLY = "Nodes only ready in one zone"
INSUFFICIENT_NUMBER_OF_ENDPOINTS = "Insufficient number of endpoints"
MIN_ALLOCATION_EXCEEDS_OVERLOAD_THRESHOLD = (
    "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold"
)


# ---------------------------------------------------------------------------------- identities


def endpoint_key(ep: Mapping[str, Any]) -> EndpointKey:
    """Upstream ``hashEndpoint``: an endpoint is the same endpoint while its addresses, hostname
    and target (namespace/name) stay; anything else changing is an in-place update."""
    ref = ep.get("targetRef") or {}
    return (
        tuple(str(a) for a in ep.get("addresses") or []),
        str(ep.get("hostname") or ""),
        str(ref.get("namespace") or ""),
        str(ref.get("name") or ""),
    )


def port_key(ports: Iterable[Mapping[str, Any]]) -> PortKey:
    """Upstream ``NewPortMapKey``: the order-insensitive identity of a slice's port list."""
    return tuple(
        sorted(
            (
                str(p.get("name") or ""),
                str(p.get("protocol") or "TCP"),
                int(p.get("port") or 0),
                str(p.get("appProtocol") or ""),
            )
            for p in ports
        )
    )


def equal_beyond_hash(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Upstream ``EndpointsEqualBeyondHash``: the same endpoint with the same conditions, node,
    zone and target.  Hints are not compared: they are (re)computed after packing."""
    strip = ("hints",)
    return {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}


def sort_endpoints(endpoints: list[Obj]) -> list[Obj]:
    return sorted(endpoints, key=endpoint_key)


def endpoint_ready(ep: Mapping[str, Any]) -> bool:
    return (ep.get("conditions") or {}).get("ready") is True


def endpoints_of(slice_: Mapping[str, Any]) -> list[Obj]:
    return list(slice_.get("endpoints") or [])


def name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


# ---------------------------------------------------------------------------------- packing


@dataclass
class SliceChanges:
    """Slices to write for one Service and address type.  ``update`` holds full objects carrying
    the resourceVersion they were read at; ``unchanged`` are the existing slices left alone."""

    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)
    unchanged: list[Obj] = field(default_factory=list)

    def writes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)


@dataclass(frozen=True)
class SliceTemplate:
    """What every slice of one Service carries: how to make a new one and the labels it must have."""

    new_slice: Callable[[list[Obj]], Obj]  # ports -> an empty, unnamed slice (generateName)
    labels: Callable[[Mapping[str, Any]], tuple[dict[str, str], bool]]  # existing slice -> (labels, changed)
    max_endpoints: int


def _fill(slice_: Obj, pending: list[Obj], max_endpoints: int) -> None:
    room = max_endpoints - len(slice_["endpoints"])
    if room > 0:
        slice_["endpoints"].extend(pending[:room])
        del pending[:room]


def _slice_to_fill(candidates: list[Obj], count: int, max_endpoints: int) -> Obj | None:
    """Upstream ``getSliceToFill``: the unchanged slice that ends closest to full after taking all
    ``count`` endpoints, or None when none has room for all of them."""
    if count > max_endpoints:
        return None
    fitting = [s for s in candidates if len(endpoints_of(s)) + count <= max_endpoints]
    if not fitting:
        return None
    return min(fitting, key=lambda s: (-len(endpoints_of(s)), name_of(s)))


def pack_port_group(
    existing: list[Obj], desired: Mapping[EndpointKey, Obj], ports: list[Obj], template: SliceTemplate
) -> SliceChanges:
    """Upstream ``reconcileByPortMapping`` for one port list (see the module docstring)."""
    wanted = dict(desired)
    changes = SliceChanges()
    to_update: dict[str, Obj] = {}
    unchanged: dict[str, Obj] = {}
    # 1. keep endpoints where they are; drop the unwanted; note changed ones.
    for slice_ in sorted(existing, key=name_of):
        kept: list[Obj] = []
        changed = False
        for ep in endpoints_of(slice_):
            got = wanted.pop(endpoint_key(ep), None)
            if got is not None:
                kept.append(got)
                changed = changed or not equal_beyond_hash(got, ep)
        labels, labels_changed = template.labels(slice_)
        if changed or len(kept) != len(endpoints_of(slice_)):
            if not kept:
                changes.delete.append(slice_)
                continue
            copy_ = copy.deepcopy(slice_)
            copy_["endpoints"] = kept
            copy_["metadata"]["labels"] = labels
            to_update[name_of(slice_)] = copy_
        elif labels_changed:
            copy_ = copy.deepcopy(slice_)
            copy_["metadata"]["labels"] = labels
            to_update[name_of(slice_)] = copy_
        else:
            unchanged[name_of(slice_)] = slice_
    pending = sort_endpoints(list(wanted.values()))
    # 2. top up the slices being written anyway, fullest first.
    for slice_ in sorted(to_update.values(), key=lambda s: (-len(s["endpoints"]), name_of(s))):
        _fill(slice_, pending, template.max_endpoints)
    # 3. one unchanged slice that can take them all, else new slices.
    while pending:
        target = None
        if len(pending) < template.max_endpoints and unchanged:
            target = _slice_to_fill(list(unchanged.values()), len(pending), template.max_endpoints)
        if target is None:
            fresh = template.new_slice(ports)
            _fill(fresh, pending, template.max_endpoints)
            changes.create.append(fresh)
            continue
        filled = copy.deepcopy(target)
        filled["endpoints"] = endpoints_of(filled)
        _fill(filled, pending, template.max_endpoints)
        del unchanged[name_of(target)]
        to_update[name_of(target)] = filled
    changes.update = [to_update[n] for n in sorted(to_update)]
    changes.unchanged = [unchanged[n] for n in sorted(unchanged)]
    return changes


def _is_placeholder(slice_: Mapping[str, Any], placeholder: Mapping[str, Any]) -> bool:
    """Upstream ``placeholderSliceCompare``: namespace, labels, owner, address type, no ports, no endpoints."""
    meta, pmeta = slice_.get("metadata") or {}, placeholder["metadata"]
    return (
        meta.get("namespace") == pmeta.get("namespace")
        and (meta.get("labels") or {}) == pmeta.get("labels")
        and (meta.get("ownerReferences") or []) == pmeta.get("ownerReferences")
        and slice_.get("addressType") == placeholder.get("addressType")
        and not slice_.get("ports")
        and not slice_.get("endpoints")
    )


def pack_address_type(
    existing: list[Obj],
    foreign: list[Obj],
    desired: Mapping[PortKey, tuple[list[Obj], dict[EndpointKey, Obj]]],
    template: SliceTemplate,
) -> SliceChanges:
    """Upstream ``reconcileByAddressType`` minus hints: ``existing`` are this Service's slices of
    the address type, ``foreign`` the managed ones owned by another incarnation (deleted)."""
    by_ports: dict[PortKey, list[Obj]] = {}
    for slice_ in existing:
        by_ports.setdefault(port_key(slice_.get("ports") or []), []).append(slice_)
    total = SliceChanges(delete=list(foreign))
    for key in sorted(desired):
        ports, endpoints = desired[key]
        part = pack_port_group(by_ports.get(key, []), endpoints, ports, template)
        total.create += part.create
        total.update += part.update
        total.delete += part.delete
        total.unchanged += part.unchanged
    for key in sorted(set(by_ports) - set(desired)):
        total.delete += sorted(by_ports[key], key=name_of)
    if len(existing) + len(foreign) == len(total.delete) and not total.create:
        placeholder = template.new_slice([])
        if len(total.delete) == 1 and _is_placeholder(total.delete[0], placeholder):
            total.unchanged.append(total.delete.pop())
        else:
            total.create.append(placeholder)
    return total


def recycle(changes: SliceChanges, owned: Callable[[Mapping[str, Any]], bool]) -> None:
    """Upstream ``finalize``: rather than create one slice and delete another, update the one that
    would be deleted (when this Service owns it) into the new one."""
    keep: list[Obj] = []
    for doomed in changes.delete:
        if changes.create and owned(doomed):
            fresh = changes.create.pop()
            meta = doomed["metadata"]
            fresh["metadata"] = {
                **fresh["metadata"],
                "name": meta["name"],
                "resourceVersion": meta.get("resourceVersion", ""),
                "annotations": dict(meta.get("annotations") or {}),
            }
            fresh["metadata"].pop("generateName", None)
            changes.update.append(fresh)
        else:
            keep.append(doomed)
    changes.delete = keep


# ---------------------------------------------------------------------------------- hints


def _set_hints(ep: Obj, zone: str | None, node: str | None = None) -> None:
    hints: Obj = {}
    if zone:
        hints["forZones"] = [{"name": zone}]
    if node:
        hints["forNodes"] = [{"name": node}]
    if hints:
        ep["hints"] = hints
    else:
        ep.pop("hints", None)


def _promote(changes: SliceChanges, needs_update: Callable[[Obj], bool]) -> None:
    """Move unchanged slices that need new hints into the update list (as copies)."""
    still: list[Obj] = []
    for slice_ in changes.unchanged:
        if needs_update(slice_):
            changes.update.append(copy.deepcopy(slice_))
        else:
            still.append(slice_)
    changes.unchanged = still


def _has_hints(slice_: Obj) -> bool:
    return any(ep.get("hints") for ep in endpoints_of(slice_))


def remove_hints(changes: SliceChanges) -> None:
    """Upstream ``RemoveHintsFromSlices`` / trafficdist's default heuristic: no hints anywhere."""
    _promote(changes, _has_hints)
    for slice_ in changes.create + changes.update:
        for ep in slice_["endpoints"]:
            ep.pop("hints", None)


def prefer_close_hints(changes: SliceChanges, same_node: bool) -> None:
    """Upstream trafficdist ``preferCloseHeuristic``: every ready endpoint hinted for its own zone
    (and, for PreferSameNode, its node); not-ready endpoints are left as they are."""

    def wanted(ep: Obj) -> Obj | None:
        hints: Obj = {}
        if ep.get("zone"):
            hints["forZones"] = [{"name": ep["zone"]}]
        if same_node and ep.get("nodeName"):
            hints["forNodes"] = [{"name": ep["nodeName"]}]
        return hints or None

    def needs_update(slice_: Obj) -> bool:
        return any(endpoint_ready(ep) and (ep.get("hints") or None) != wanted(ep) for ep in endpoints_of(slice_))

    _promote(changes, needs_update)
    for slice_ in changes.create + changes.update:
        for ep in slice_["endpoints"]:
            if endpoint_ready(ep):
                _set_hints(ep, ep.get("zone"), ep.get("nodeName") if same_node else None)


@dataclass(frozen=True)
class Allocation:
    minimum: int
    maximum: int


def zone_cpu_ratios(
    nodes: Iterable[Mapping[str, Any]], parse_cpu: Callable[[Any], Decimal | None]
) -> dict[str, float] | None:
    """Upstream topologycache ``SetNodes``: each zone's share of allocatable CPU over ready,
    non-control-plane nodes; None when any such node lacks a zone or CPU, or fewer than two zones."""
    by_zone: dict[str, Decimal] = {}
    for node in nodes:
        labels = (node.get("metadata") or {}).get("labels") or {}
        if "node-role.kubernetes.io/control-plane" in labels or "node-role.kubernetes.io/master" in labels:
            continue
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (node.get("status") or {}).get("conditions") or []
        )
        if not ready:
            continue
        cpu = parse_cpu(((node.get("status") or {}).get("allocatable") or {}).get("cpu", "0")) or Decimal(0)
        zone = labels.get("topology.kubernetes.io/zone", "")
        if not zone or cpu <= 0:
            return None
        by_zone[zone] = by_zone.get(zone, Decimal(0)) + cpu
    total = sum(by_zone.values(), Decimal(0))
    if total <= 0 or len(by_zone) < 2:
        return None
    return {zone: float(cpu / total) for zone, cpu in by_zone.items()}


def allocations(ratios: dict[str, float] | None, ready: int) -> tuple[dict[str, Allocation], str]:
    """Upstream ``getAllocations``: per-zone minimum and maximum endpoint counts, or the reason
    (event message) why hints cannot be allocated."""
    if ratios is None:
        return {}, INSUFFICIENT_NODE_INFO
    if len(ratios) < 2:
        return {}, NODES_READY_IN_ONE_ZONE_ONLY
    if len(ratios) > ready:
        return {}, f"{INSUFFICIENT_NUMBER_OF_ENDPOINTS} ({ready} endpoints, {len(ratios)} zones)"
    minimums: dict[str, int] = {}
    for zone in sorted(ratios):
        desired = ratios[zone] * ready
        minimums[zone] = math.ceil(desired * (1 / (1 + OVERLOAD_THRESHOLD)))
        if sum(minimums.values()) > ready:
            return {}, f"{MIN_ALLOCATION_EXCEEDS_OVERLOAD_THRESHOLD} ({ready} endpoints, {len(ratios)} zones)"
    spare = ready - sum(minimums.values())
    return {z: Allocation(m, m + spare) for z, m in minimums.items()}, ""


def _kept_hints(slice_: Obj, allocated: dict[str, int], allocs: dict[str, Allocation]) -> dict[str, int] | None:
    """Upstream ``getHintsByZone``: the hints an unchanged slice contributes, or None when any
    ready endpoint's hint is missing, multiple, unknown or over its zone's maximum."""
    counts: dict[str, int] = {}
    for ep in endpoints_of(slice_):
        if not endpoint_ready(ep):
            continue
        zones = (ep.get("hints") or {}).get("forZones") or []
        if len(zones) != 1 or zones[0].get("name") not in allocs:
            return None
        zone = zones[0]["name"]
        counts[zone] = counts.get(zone, 0) + 1
    for zone, n in counts.items():
        if allocated.get(zone, 0) + n > allocs[zone].maximum:
            return None
    return counts


def topology_hints(changes: SliceChanges, ratios: dict[str, float] | None) -> tuple[str, str]:
    """Upstream topologycache ``AddHints`` for ``topology-mode: Auto``.  Returns an event
    ``(reason, message)`` (empty when none): hints disabled, or enabled when no existing slice
    carried hints before (kubewire's stateless stand-in for upstream's per-Service memory)."""
    had_hints = any(_has_hints(s) for s in changes.unchanged + changes.update)
    ready = sum(
        endpoint_ready(ep) for s in changes.create + changes.update + changes.unchanged for ep in endpoints_of(s)
    )
    allocs, problem = allocations(ratios, ready)
    if problem:
        remove_hints(changes)
        return "TopologyAwareHintsDisabled", problem
    allocated: dict[str, int] = {}
    still: list[Obj] = []
    for slice_ in changes.unchanged:
        kept = _kept_hints(slice_, allocated, allocs)
        if kept is None:
            changes.update.append(copy.deepcopy(slice_))
            continue
        still.append(slice_)
        for zone, n in kept.items():
            allocated[zone] = allocated.get(zone, 0) + n
    changes.unchanged = still
    writable = changes.create + changes.update
    for slice_ in writable:
        for ep in slice_["endpoints"]:
            if not endpoint_ready(ep):
                ep.pop("hints", None)
                continue
            if not ep.get("zone"):
                remove_hints(changes)
                return "TopologyAwareHintsDisabled", NO_ZONE_SPECIFIED
            allocated[ep["zone"]] = allocated.get(ep["zone"], 0) + 1
            _set_hints(ep, ep["zone"])
    _redistribute(writable, allocs, allocated)
    if not allocated:
        remove_hints(changes)
        return "TopologyAwareHintsDisabled", NO_ALLOCATED_HINTS_FOR_ZONES
    if not had_hints and writable:
        return "TopologyAwareHintsEnabled", TOPOLOGY_AWARE_HINTS_ENABLED
    return "", ""


def _redistribute(slices: list[Obj], allocs: dict[str, Allocation], allocated: dict[str, int]) -> None:
    """Upstream ``getGivingAndReceivingZones`` + ``redistributeHints``: zones over their maximum
    hand endpoints (by hint) to zones under their minimum."""
    giving = {z: allocated.get(z, 0) - a.maximum for z, a in allocs.items() if allocated.get(z, 0) > a.maximum}
    receiving = {z: a.minimum - allocated.get(z, 0) for z, a in allocs.items() if allocated.get(z, 0) < a.minimum}
    for slice_ in slices:
        for ep in slice_["endpoints"]:
            if not giving or not receiving:
                return
            zone = ep.get("zone")
            if not endpoint_ready(ep) or not zone or giving.get(zone, 0) <= 0:
                continue
            to = min(receiving)
            _set_hints(ep, to)
            for table, z in ((giving, zone), (receiving, to)):
                table[z] -= 1
                if table[z] == 0:
                    del table[z]
            allocated[to] = allocated.get(to, 0) + 1
            allocated[zone] -= 1

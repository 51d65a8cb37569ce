"""The EndpointSlice controller: a Service's selected pods published as EndpointSlices.

Upstream's ``pkg/controller/endpointslice`` with the ``staging/src/k8s.io/endpointslice``
reconciler, keyed by Service ``namespace/name``.  For a Service with a selector (not
ExternalName), each address family in ``spec.ipFamilies`` gets its own slices (``addressType``
IPv4/IPv6) holding one endpoint per selected, non-terminal pod with an IP of that family:
conditions ready/serving/terminating as ``podToEndpoint``, hostname when the pod's subdomain is the
Service, nodeName, zone (from the Node), targetRef; ports resolved per pod (named targetPorts
looked up in the pod's containers, so pods resolving differently land in different slices).  The
packing with minimal churn and the topology hints live in :mod:`kubewire.controllers.slicepacking`.

Slices the controller does not manage (no ``endpointslice.kubernetes.io/managed-by:
endpointslice-controller.k8s.io``) are never touched.  A deleted Service's slices go with it by
garbage collection (ownerReference); when a Service loses its selector its managed slices are
deleted (a kubewire choice: upstream leaves them stale).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from kubewire.api import core, discovery
from kubewire.api import pod as podapi
from kubewire.api import service as svcapi
from kubewire.api.meta import parse_time
from kubewire.api.registry import Kind
from kubewire.controllers import indexes
from kubewire.controllers import slicepacking as sp
from kubewire.controllers.podutil import is_pod_ready, is_pod_terminal, is_terminating
from kubewire.controllers.runtime import (
    Caches,
    Create,
    Delete,
    Plan,
    RecordEvent,
    Update,
    owner_reference,
    split_key,
)
from kubewire.store.informer import key_of

Obj = dict[str, Any]

DEFAULT_MAX_ENDPOINTS_PER_SLICE = 100  # upstream --max-endpoints-per-slice default
ZONE_LABEL = "topology.kubernetes.io/zone"
SERVICE_SELECTOR_INDEX = "endpointslice/selector"
POD_LABEL_INDEX = "endpointslice/pod-label"
SLICE_NODE_INDEX = "nodeName"
SLICE_SERVICE_INDEX = "service"
_HINTS_AUTO = ("Auto", "auto")  # upstream hintsEnabled()
_CLOSE_DISTRIBUTIONS = ("PreferClose", "PreferSameZone", "PreferSameNode")


# ---------------------------------------------------------------------------------- reading objects


def selector_of(service: Mapping[str, Any]) -> dict[str, str]:
    return dict(svcapi.spec_of(service).get("selector") or {})


def selects(selector: Mapping[str, str], obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _label_terms(obj: Mapping[str, Any]) -> list[str]:
    """Index values for a pod: ``namespace/key=value`` per label, so a Service's pods are found
    by one equality term of its selector rather than by scanning the namespace."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace", "")
    return [f"{ns}/{k}={v}" for k, v in (meta.get("labels") or {}).items()]


def _selector_terms(service: Mapping[str, Any]) -> list[str]:
    """Index values for a Service: ``namespace/key=value`` per selector term (see _label_terms)."""
    ns = (service.get("metadata") or {}).get("namespace", "")
    return [f"{ns}/{k}={v}" for k, v in selector_of(service).items()]


def selected_pods(caches: Caches, namespace: str, selector: Mapping[str, str]) -> list[Obj]:
    """The pods a Service selects, sorted by key (through the label index when it is there)."""
    if not selector:
        return []
    informer = caches.informer(podapi.POD)
    if informer.has_index(POD_LABEL_INDEX):
        candidates = min(
            (informer.by_index(POD_LABEL_INDEX, f"{namespace}/{k}={v}") for k, v in selector.items()), key=len
        )
    else:
        candidates = caches.list(podapi.POD, namespace)
    return sorted((p for p in candidates if selects(selector, p)), key=key_of)


def is_managed(slice_: Mapping[str, Any]) -> bool:
    return ((slice_.get("metadata") or {}).get("labels") or {}).get(sp.LABEL_MANAGED_BY) == sp.CONTROLLER_NAME


def owned_by(slice_: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    uid = service["metadata"].get("uid")
    return any(ref.get("uid") == uid for ref in (slice_.get("metadata") or {}).get("ownerReferences") or [])


def address_types(service: Mapping[str, Any]) -> list[str]:
    """Upstream ``getAddressTypesForService``: the Service's families, else its ClusterIP's, else IPv4."""
    spec = svcapi.spec_of(service)
    families = [f for f in spec.get("ipFamilies") or [] if f in ("IPv4", "IPv6")]
    if families:
        return families
    for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
        try:
            return ["IPv6" if ipaddress.ip_address(str(ip)).version == 6 else "IPv4"]
        except ValueError:
            continue
    return ["IPv4"]


def pod_addresses(pod: Mapping[str, Any], address_type: str) -> list[str]:
    """Upstream ``getEndpointAddresses``: the pod's IPs of the slice's family."""
    status = pod.get("status") or {}
    ips = [str(p.get("ip")) for p in status.get("podIPs") or [] if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    out = []
    for ip in ips:
        try:
            version = ipaddress.ip_address(ip).version
        except ValueError:
            continue
        if (version == 6) == (address_type == "IPv6"):
            out.append(ip)
    return out


def should_be_in_endpoints(pod: Mapping[str, Any]) -> bool:
    """Upstream ``ShouldPodBeInEndpoints(pod, includeTerminating=true)``: not terminal, has an IP."""
    status = pod.get("status") or {}
    return not is_pod_terminal(pod) and bool(status.get("podIP") or status.get("podIPs"))


def find_port(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> int | None:
    """Upstream ``findPort``: a numeric targetPort as is; a named one looked up by name and protocol
    in the pod's containers (and sidecar init containers); None when it does not resolve."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    name, protocol = str(target), service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    for container in list(spec.get("containers") or []) + sidecars:
        for port in container.get("ports") or []:
            if port.get("name") == name and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def endpoint_ports(service: Mapping[str, Any], pod: Mapping[str, Any]) -> list[Obj]:
    """Upstream ``getEndpointPorts``: the Service's ports as this pod serves them."""
    ports = []
    for sport in svcapi.ports_of(service):
        number = find_port(pod, sport)
        if number is None:
            continue
        port: Obj = {"name": sport.get("name") or "", "port": number, "protocol": sport.get("protocol") or "TCP"}
        if sport.get("appProtocol"):
            port["appProtocol"] = sport["appProtocol"]
        ports.append(port)
    return ports


def pod_endpoint(
    pod: Mapping[str, Any], node: Mapping[str, Any] | None, service: Mapping[str, Any], address_type: str
) -> Obj:
    """Upstream ``podToEndpoint``."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    serving = is_pod_ready(pod)
    terminating = is_terminating(pod)
    ready = bool(svcapi.spec_of(service).get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: Obj = {
        "addresses": pod_addresses(pod, address_type),
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": {
            "kind": "Pod",
            "namespace": meta.get("namespace", ""),
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
        },
    }
    if spec.get("nodeName"):
        ep["nodeName"] = spec["nodeName"]
    zone = (((node or {}).get("metadata") or {}).get("labels") or {}).get(ZONE_LABEL)
    if zone:
        ep["zone"] = zone
    smeta = service.get("metadata") or {}
    if (
        spec.get("hostname")
        and spec.get("subdomain") == smeta.get("name")
        and meta.get("namespace") == smeta.get("namespace")
    ):
        ep["hostname"] = spec["hostname"]
    return ep


def slice_labels(service: Mapping[str, Any], existing: Mapping[str, Any] | None = None) -> tuple[dict[str, str], bool]:
    """Upstream ``setEndpointSliceLabels``: the Service's labels (reserved keys excluded) plus the
    service-name, managed-by and (headless Services) headless labels; ``changed`` when the
    existing slice's labels differ."""
    labels = {
        k: v for k, v in ((service.get("metadata") or {}).get("labels") or {}).items() if k not in sp.RESERVED_LABELS
    }
    if svcapi.is_headless(service) or svcapi.spec_of(service).get("clusterIP") == svcapi.CLUSTER_IP_NONE:
        labels[sp.LABEL_HEADLESS] = ""
    labels[sp.LABEL_SERVICE_NAME] = service["metadata"]["name"]
    labels[sp.LABEL_MANAGED_BY] = sp.CONTROLLER_NAME
    current = ((existing or {}).get("metadata") or {}).get("labels") or {}
    return labels, existing is not None and current != labels


def trigger_time(service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> str:
    """The ``last-change-trigger-time`` annotation: the latest of the Service's creation and its
    pods' Ready transitions.  Upstream keeps per-Service memory to report the earliest unsynced
    change; kubewire's reconcile is stateless, so it reports the latest known change instead."""
    best: tuple[datetime, str] | None = None
    stamps = [(service.get("metadata") or {}).get("creationTimestamp")]
    for pod in pods:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready":
                stamps.append(cond.get("lastTransitionTime"))
    for raw in stamps:
        when = parse_time(raw) if isinstance(raw, str) else None
        if when is not None and (best is None or when > best[0]):
            best = (when, str(raw))
    return best[1] if best else ""


def hints_mode(service: Mapping[str, Any]) -> str:
    """ "auto" (topology annotation), a trafficDistribution value, or "" (no hints)."""
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(svcapi.TOPOLOGY_MODE_ANNOTATION, annotations.get(svcapi.TOPOLOGY_HINTS_ANNOTATION))
    if value in _HINTS_AUTO:
        return "auto"
    distribution = svcapi.spec_of(service).get("trafficDistribution")
    return str(distribution) if distribution in _CLOSE_DISTRIBUTIONS else ""


# ---------------------------------------------------------------------------------- the controller


class EndpointSliceController:
    """Keeps every selector Service's managed EndpointSlices equal to its selected pods."""

    name = "endpointslice"

    def __init__(self, max_endpoints_per_slice: int = DEFAULT_MAX_ENDPOINTS_PER_SLICE) -> None:
        if max_endpoints_per_slice < 1:
            raise ValueError("max_endpoints_per_slice must be positive")
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self._caches: Caches | None = None
        self._zones: dict[str, str | None] = {}  # node -> zone label last seen by the node mapper

    # -- wiring ---------------------------------------------------------------------------------

    def bind(self, caches: Caches) -> None:
        """Give the event mappers read access to the informers (pods and nodes map to Services
        through indexes).  Reconcile binds too, so no mapper runs unbound after the first reconcile;
        before it every existing Service is already queued by its own ADDED event."""
        self._caches = caches

    def watches(self) -> Mapping[Kind, Callable[[Obj], Iterable[str]]]:
        return {
            svcapi.SERVICE: lambda obj: [key_of(obj)],
            podapi.POD: self._services_for_pod,
            core.NODE: self._services_for_node,
            discovery.ENDPOINT_SLICE: _service_for_slice,
        }

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[Obj], list[str]]]]:
        return {
            svcapi.SERVICE: {SERVICE_SELECTOR_INDEX: _selector_terms},
            podapi.POD: {
                indexes.NODE_NAME: indexes.node_name,
                POD_LABEL_INDEX: _label_terms,
            },
            discovery.ENDPOINT_SLICE: {
                SLICE_NODE_INDEX: _slice_nodes,
                SLICE_SERVICE_INDEX: lambda o: list(_service_for_slice(o)),
            },
        }

    def _services_for_pod(self, pod: Obj) -> list[str]:
        if self._caches is None:
            return []
        # candidates share at least one label term with the pod; each is then checked in full
        keys = {
            key_of(s)
            for term in _label_terms(pod)
            for s in self._caches.by_index(svcapi.SERVICE, SERVICE_SELECTOR_INDEX, term)
            if selects(selector_of(s), pod)
        }
        return sorted(keys)

    def _services_for_node(self, node: Obj) -> list[str]:
        """A node that appears or changes zone matters to the Services of the pods on it (they
        were skipped while it was unknown, or their endpoints carry its zone); heartbeats and
        other status updates do not."""
        if self._caches is None:
            return []
        meta = node.get("metadata") or {}
        name = meta.get("name", "")
        zone = (meta.get("labels") or {}).get(ZONE_LABEL)
        if name in self._zones and self._zones[name] == zone:
            return []
        self._zones[name] = zone
        keys = {
            k for pod in self._caches.by_index(podapi.POD, indexes.NODE_NAME, name) for k in self._services_for_pod(pod)
        }
        slices = self._caches.by_index(discovery.ENDPOINT_SLICE, SLICE_NODE_INDEX, name)
        keys.update(k for s in slices for k in _service_for_slice(s))
        return sorted(keys)

    # -- reconcile -------------------------------------------------------------------------------

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan:
        self.bind(caches)
        ns, name = split_key(key)
        service = caches.get(svcapi.SERVICE, ns, name)
        slices = [s for s in caches.by_index(discovery.ENDPOINT_SLICE, SLICE_SERVICE_INDEX, key) if is_managed(s)]
        slices = [s for s in slices if not is_terminating(s)]  # upstream dropEndpointSlicesPendingDeletion
        plan = Plan()
        if service is None:
            return plan  # the garbage collector removes the slices with their owner
        if svcapi.type_of(service) == svcapi.EXTERNAL_NAME or not selector_of(service):
            plan.extend(
                Delete(discovery.ENDPOINT_SLICE, ns, sp.name_of(s), uid=s["metadata"].get("uid", ""))
                for s in slices
                if owned_by(s, service)
            )
            return plan
        pods = selected_pods(caches, ns, selector_of(service))
        trigger = trigger_time(service, pods)
        families = address_types(service)
        missing_node = False
        for address_type in families:
            existing = [s for s in slices if s.get("addressType") == address_type]
            changes, event, skipped = self._plan_family(service, address_type, pods, existing, caches)
            missing_node = missing_node or skipped
            if changes.writes() and event[0]:
                kind = "Normal" if event[0] == "TopologyAwareHintsEnabled" else "Warning"
                plan.add(RecordEvent(service, kind, event[0], f"{event[1]}, addressType: {address_type}"))
            plan.extend(self._actions(service, changes, trigger))
        for slice_ in slices:
            if slice_.get("addressType") not in families:
                plan.add(
                    Delete(discovery.ENDPOINT_SLICE, ns, sp.name_of(slice_), uid=slice_["metadata"].get("uid", ""))
                )
        if missing_node:
            # upstream returns an error from syncService: the key is retried with backoff
            plan.error = f"skipping pods of Service {key}: their Node was not found"
        return plan

    def _desired(
        self, service: Obj, address_type: str, pods: list[Obj], caches: Caches
    ) -> tuple[dict[sp.PortKey, tuple[list[Obj], dict[sp.EndpointKey, Obj]]], bool]:
        desired: dict[sp.PortKey, tuple[list[Obj], dict[sp.EndpointKey, Obj]]] = {}
        publish_not_ready = bool(svcapi.spec_of(service).get("publishNotReadyAddresses"))
        skipped = False
        for pod in pods:
            if not should_be_in_endpoints(pod):
                continue
            ports = endpoint_ports(service, pod)
            group = desired.setdefault(sp.port_key(ports), (ports, {}))
            node_name = (pod.get("spec") or {}).get("nodeName", "")
            node = caches.get(core.NODE, "", node_name) if node_name else None
            if node is None and not publish_not_ready:
                skipped = True  # upstream: skip the pod and retry the Service later
                continue
            ep = pod_endpoint(pod, node, service, address_type)
            if ep["addresses"]:
                group[1][sp.endpoint_key(ep)] = ep
        return desired, skipped

    def _plan_family(
        self, service: Obj, address_type: str, pods: list[Obj], existing: list[Obj], caches: Caches
    ) -> tuple[sp.SliceChanges, tuple[str, str], bool]:
        desired, skipped = self._desired(service, address_type, pods, caches)
        template = sp.SliceTemplate(
            new_slice=lambda ports: self._new_slice(service, address_type, ports),
            labels=lambda s: slice_labels(service, s),
            max_endpoints=self.max_endpoints_per_slice,
        )
        own = [s for s in existing if owned_by(s, service)]
        foreign = [s for s in existing if not owned_by(s, service)]
        changes = sp.pack_address_type(own, foreign, desired, template)
        event = ("", "")
        mode = hints_mode(service)
        if mode == "auto":
            ratios = sp.zone_cpu_ratios(caches.list(core.NODE), podapi.parse_quantity)
            event = sp.topology_hints(changes, ratios)
        elif mode:
            sp.prefer_close_hints(changes, same_node=mode == "PreferSameNode")
        else:
            sp.remove_hints(changes)
        sp.recycle(changes, lambda s: owned_by(s, service))
        return changes, event, skipped

    def _new_slice(self, service: Obj, address_type: str, ports: list[Obj]) -> Obj:
        """Upstream ``newEndpointSlice``."""
        meta = service["metadata"]
        labels, _ = slice_labels(service)
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": f"{meta['name']}-",
                "namespace": meta.get("namespace", ""),
                "labels": labels,
                "ownerReferences": [owner_reference(service)],
            },
            "addressType": address_type,
            "ports": [dict(p) for p in ports],
            "endpoints": [],
        }

    def _actions(self, service: Obj, changes: sp.SliceChanges, trigger: str) -> list[Create | Update | Delete]:
        ns = service["metadata"].get("namespace", "")
        actions: list[Create | Update | Delete] = []
        creating = service["metadata"].get("deletionTimestamp") is None  # upstream: no creates while the Service goes
        for slice_ in changes.create if creating else []:
            actions.append(Create(discovery.ENDPOINT_SLICE, _finish(slice_, trigger)))
        for slice_ in sorted(changes.update, key=sp.name_of):
            actions.append(Update(discovery.ENDPOINT_SLICE, _finish(slice_, trigger)))
        for slice_ in sorted(changes.delete, key=sp.name_of):
            actions.append(
                Delete(discovery.ENDPOINT_SLICE, ns, sp.name_of(slice_), uid=slice_["metadata"].get("uid", ""))
            )
        return actions


def _finish(slice_: Obj, trigger: str) -> Obj:
    """Sorted endpoints and upstream ``addTriggerTimeAnnotation`` (set, or cleared when unknown)."""
    slice_["endpoints"] = sp.sort_endpoints(list(slice_.get("endpoints") or []))
    annotations = dict(slice_["metadata"].get("annotations") or {})
    if trigger:
        annotations[sp.ANNOTATION_TRIGGER_TIME] = trigger
    else:
        annotations.pop(sp.ANNOTATION_TRIGGER_TIME, None)
    if annotations:
        slice_["metadata"]["annotations"] = annotations
    else:
        slice_["metadata"].pop("annotations", None)
    return slice_


def _service_for_slice(slice_: Obj) -> list[str]:
    """Managed slices map to their Service through the service-name label."""
    meta = slice_.get("metadata") or {}
    service = (meta.get("labels") or {}).get(sp.LABEL_SERVICE_NAME)
    if not service or not is_managed(slice_):
        return []
    return [f"{meta.get('namespace', '')}/{service}"]


def _slice_nodes(slice_: Obj) -> list[str]:
    return sorted({str(ep["nodeName"]) for ep in slice_.get("endpoints") or [] if ep.get("nodeName")})

"""The EndpointSlice controller: desired slices from Services and pods, minimal churn, hints."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from kubewire.api import core, discovery
from kubewire.api import pod as podapi
from kubewire.api import service as svcapi
from kubewire.api.registry import Kind
from kubewire.client.local import LocalClient
from kubewire.controllers.endpointslice import EndpointSliceController
from kubewire.controllers.runtime import Caches, Create, Delete, Manager, Plan, RecordEvent, Update
from kubewire.store.informer import Informer, ListWatch, WatchEvent
from kubewire.store.store import Store

Obj = dict[str, Any]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SLICE = discovery.ENDPOINT_SLICE
MANAGED = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}


# ---------------------------------------------------------------------------------- a tiny world


class World:
    """Hand-built informer state for one controller, and a fake writer that applies plans."""

    def __init__(self, controller: EndpointSliceController | None = None) -> None:
        self.controller = controller or EndpointSliceController()
        self.informers: dict[str, Informer] = {}
        for kind in (svcapi.SERVICE, podapi.POD, core.NODE, SLICE):
            self.informers[kind.resource_key] = Informer(cast(ListWatch, None), kind)
        for kind, indexes in self.controller.indexers().items():
            for name, fn in indexes.items():
                self.informers[kind.resource_key].add_indexer(name, fn)
        self.caches = Caches(self.informers)
        self.controller.bind(self.caches)
        self._rv = itertools.count(1)
        self._names = itertools.count(1)

    def put(self, kind: Kind, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            meta["name"] = f"{meta['generateName']}{next(self._names):05d}"
            meta.pop("generateName", None)
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta["resourceVersion"] = str(next(self._rv))
        self.informers[kind.resource_key].apply_event(WatchEvent("MODIFIED", obj))
        return obj

    def remove(self, kind: Kind, ns: str, name: str) -> None:
        obj = self.caches.get(kind, ns, name)
        assert obj is not None
        self.informers[kind.resource_key].apply_event(WatchEvent("DELETED", obj))

    def reconcile(self, key: str = "default/web") -> Plan:
        return self.controller.reconcile(key, self.caches, NOW)

    def apply(self, plan: Plan) -> None:
        for action in plan.actions:
            if isinstance(action, Create):
                self.put(action.kind, action.obj)
            elif isinstance(action, Update):
                live = self.caches.get(
                    action.kind, action.obj["metadata"].get("namespace", ""), action.obj["metadata"]["name"]
                )
                assert live is not None
                rv = action.obj["metadata"].get("resourceVersion")
                assert not rv or rv == live["metadata"]["resourceVersion"], "stale update"
                self.put(action.kind, action.obj)
            elif isinstance(action, Delete):
                self.remove(action.kind, action.namespace, action.name)

    def converge(self, key: str = "default/web") -> Plan:
        plan = self.reconcile(key)
        self.apply(plan)
        again = self.reconcile(key)
        assert not again, f"second reconcile not empty: {again}"
        return plan

    def slices(self, address_type: str = "") -> list[Obj]:
        out = [s for s in self.caches.list(SLICE) if not address_type or s["addressType"] == address_type]
        return sorted(out, key=lambda s: s["metadata"]["name"])


def service(name: str = "web", **spec: Any) -> Obj:
    body: Obj = {
        "selector": {"app": name},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        "clusterIP": "10.96.0.20",
        "clusterIPs": ["10.96.0.20"],
        "ipFamilies": ["IPv4"],
        "type": "ClusterIP",
    }
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"svc-{name}",
            "labels": {"team": "a"},
            "creationTimestamp": "2025-12-31T00:00:00Z",
        },
        "spec": body,
    }


def pod(
    name: str,
    ip: str | list[str],
    ready: bool = True,
    node: str = "n1",
    labels: dict[str, str] | None = None,
    ports: list[Obj] | None = None,
    **extra: Any,
) -> Obj:
    ips = [ip] if isinstance(ip, str) else ip
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": labels or {"app": "web"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]},
        "status": {
            "phase": "Running",
            "podIP": ips[0],
            "podIPs": [{"ip": i} for i in ips],
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
        },
    }
    obj["spec"].update(extra.pop("spec", {}))
    obj["metadata"].update(extra.pop("metadata", {}))
    obj["status"].update(extra.pop("status", {}))
    return obj


def node(name: str, zone: str = "", cpu: str = "4", ready: bool = True, labels: dict[str, str] | None = None) -> Obj:
    all_labels = dict(labels or {})
    if zone:
        all_labels["topology.kubernetes.io/zone"] = zone
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "status": {
            "allocatable": {"cpu": cpu},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def world_with(svc: Obj, pods: list[Obj], nodes: list[Obj] | None = None, **kw: Any) -> World:
    w = World(EndpointSliceController(**kw))
    for n in nodes if nodes is not None else [node("n1", zone="z1")]:
        w.put(core.NODE, n)
    w.put(svcapi.SERVICE, svc)
    for p in pods:
        w.put(podapi.POD, p)
    return w


def many_pods(count: int, start: int = 0) -> list[Obj]:
    return [pod(f"p{i:04d}", f"10.244.{i // 250}.{i % 250 + 1}") for i in range(start, start + count)]


def kinds(plan: Plan) -> list[str]:
    return [type(a).__name__ for a in plan.actions]


def addresses(slice_: Obj) -> list[str]:
    return [a for ep in slice_["endpoints"] for a in ep["addresses"]]


# ---------------------------------------------------------------------------------- shape of slices


def test_single_stack_slice_carries_upstream_metadata_and_endpoints() -> None:
    w = world_with(service(), [pod("b", "10.244.0.3"), pod("a", "10.244.0.2"), pod("c", "10.244.0.4", ready=False)])
    plan = w.converge()
    assert kinds(plan) == ["Create"]
    (s,) = w.slices()
    meta = s["metadata"]
    assert meta["name"].startswith("web-")
    assert meta["labels"] == {
        "team": "a",
        "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": "svc-web",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["annotations"] == {"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"}
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert addresses(s) == ["10.244.0.2", "10.244.0.3", "10.244.0.4"]
    first = s["endpoints"][0]
    assert first == {
        "addresses": ["10.244.0.2"],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"},
        "nodeName": "n1",
        "zone": "z1",
    }
    assert s["endpoints"][2]["conditions"] == {"ready": False, "serving": False, "terminating": False}


def test_dual_stack_service_gets_one_slice_per_family() -> None:
    svc = service(ipFamilies=["IPv4", "IPv6"], clusterIPs=["10.96.0.20", "fd00:10:96::20"])
    w = world_with(svc, [pod("a", ["10.244.0.2", "fd00:10:244::2"]), pod("b", "10.244.0.3")])
    w.converge()
    (v4,) = w.slices("IPv4")
    (v6,) = w.slices("IPv6")
    assert addresses(v4) == ["10.244.0.2", "10.244.0.3"]
    assert addresses(v6) == ["fd00:10:244::2"]


def test_single_stack_ipv6_ignores_ipv4_pod_addresses() -> None:
    svc = service(ipFamilies=["IPv6"], clusterIPs=["fd00:10:96::20"], clusterIP="fd00:10:96::20")
    w = world_with(svc, [pod("a", ["10.244.0.2", "fd00:10:244::2"])])
    w.converge()
    assert [s["addressType"] for s in w.slices()] == ["IPv6"]
    assert addresses(w.slices()[0]) == ["fd00:10:244::2"]


def test_terminal_and_ipless_pods_are_left_out_terminating_ones_kept() -> None:
    gone = {"deletionTimestamp": "2026-01-01T00:00:00Z"}
    pods = [
        pod("done", "10.244.0.9", status={"phase": "Succeeded"}),
        pod("failed", "10.244.0.8", status={"phase": "Failed"}),
        pod("noip", "10.244.0.7", status={"podIP": "", "podIPs": []}),
        pod("other", "10.244.0.6", labels={"app": "db"}),
        pod("term-ready", "10.244.0.2", metadata=gone),
        pod("term-unready", "10.244.0.3", ready=False, metadata=gone),
    ]
    w = world_with(service(), pods)
    w.converge()
    (s,) = w.slices()
    by_name = {ep["targetRef"]["name"]: ep["conditions"] for ep in s["endpoints"]}
    assert by_name == {
        "term-ready": {"ready": False, "serving": True, "terminating": True},
        "term-unready": {"ready": False, "serving": False, "terminating": True},
    }


def test_publish_not_ready_addresses_makes_every_endpoint_ready() -> None:
    w = world_with(service(publishNotReadyAddresses=True), [pod("a", "10.244.0.2", ready=False)])
    w.converge()
    assert w.slices()[0]["endpoints"][0]["conditions"] == {"ready": True, "serving": False, "terminating": False}


def test_named_target_ports_resolving_differently_split_slices() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP", "appProtocol": "http"}])
    pods = [
        pod("a", "10.244.0.2", ports=[{"name": "web", "containerPort": 8080, "protocol": "TCP"}]),
        pod("b", "10.244.0.3", ports=[{"name": "web", "containerPort": 9090, "protocol": "TCP"}]),
        pod("c", "10.244.0.4", ports=[{"name": "web", "containerPort": 8080, "protocol": "UDP"}]),
    ]
    w = world_with(svc, pods)
    w.converge()
    groups = {tuple(p["port"] for p in s["ports"]): addresses(s) for s in w.slices()}
    assert groups == {(8080,): ["10.244.0.2"], (9090,): ["10.244.0.3"], (): ["10.244.0.4"]}
    ported = next(s for s in w.slices() if s["ports"])
    assert ported["ports"][0] == {"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}


def test_hostname_is_set_only_when_the_pod_subdomain_is_the_service() -> None:
    pods = [
        pod("a", "10.244.0.2", spec={"hostname": "a-host", "subdomain": "web"}),
        pod("b", "10.244.0.3", spec={"hostname": "b-host", "subdomain": "other"}),
    ]
    w = world_with(service(clusterIP="None", clusterIPs=["None"]), pods)
    w.converge()
    (s,) = w.slices()
    assert [ep.get("hostname") for ep in s["endpoints"]] == ["a-host", None]
    assert s["metadata"]["labels"]["service.kubernetes.io/headless"] == ""


def test_pods_on_unknown_nodes_are_skipped_and_retried() -> None:
    w = world_with(service(), [pod("a", "10.244.0.2", node="ghost"), pod("b", "10.244.0.3")])
    plan = w.reconcile()
    assert plan.error and plan.requeue_after is None  # retried with backoff, as an upstream sync error
    created = [a.obj for a in plan.actions if isinstance(a, Create)]
    assert [addresses(s) for s in created] == [["10.244.0.3"]]


# ---------------------------------------------------------------------------------- packing and churn


def test_more_endpoints_than_fit_make_several_slices() -> None:
    w = world_with(service(), many_pods(250))
    plan = w.converge()
    assert kinds(plan) == ["Create"] * 3
    assert sorted(len(s["endpoints"]) for s in w.slices()) == [50, 100, 100]


def test_max_endpoints_per_slice_is_configurable() -> None:
    w = world_with(service(), many_pods(5), max_endpoints_per_slice=2)
    w.converge()
    assert sorted(len(s["endpoints"]) for s in w.slices()) == [1, 2, 2]


def test_adding_one_pod_to_250_endpoints_touches_exactly_one_slice() -> None:
    w = world_with(service(), many_pods(250))
    w.converge()
    before = {s["metadata"]["name"]: len(s["endpoints"]) for s in w.slices()}
    w.put(podapi.POD, pod("new", "10.244.9.9"))
    plan = w.converge()
    assert kinds(plan) == ["Update"]
    (update,) = plan.actions
    assert isinstance(update, Update)
    assert before[update.obj["metadata"]["name"]] == 50
    assert len(update.obj["endpoints"]) == 51


def test_readiness_flip_updates_only_the_slice_holding_the_pod() -> None:
    w = world_with(service(), many_pods(250))
    w.converge()
    holder = next(s for s in w.slices() if "10.244.0.5" in addresses(s))
    w.put(podapi.POD, many_pods(1, start=4)[0] | {"status": pod("x", "10.244.0.5", ready=False)["status"]})
    plan = w.converge()
    assert kinds(plan) == ["Update"]
    (update,) = plan.actions
    assert isinstance(update, Update)
    assert update.obj["metadata"]["name"] == holder["metadata"]["name"]
    assert update.obj["metadata"]["resourceVersion"] == holder["metadata"]["resourceVersion"]
    flipped = next(ep for ep in update.obj["endpoints"] if ep["addresses"] == ["10.244.0.5"])
    assert flipped["conditions"]["ready"] is False


def test_removing_a_pod_updates_its_slice_and_empty_slices_are_deleted() -> None:
    w = world_with(service(), many_pods(3), max_endpoints_per_slice=2)
    w.converge()
    lonely = next(s for s in w.slices() if len(s["endpoints"]) == 1)
    w.remove(podapi.POD, "default", lonely["endpoints"][0]["targetRef"]["name"])
    plan = w.converge()
    assert [(type(a).__name__, getattr(a, "name", "")) for a in plan.actions] == [
        ("Delete", lonely["metadata"]["name"])
    ]


def test_service_without_endpoints_keeps_one_placeholder_slice() -> None:
    w = world_with(service(), [])
    plan = w.converge()
    assert kinds(plan) == ["Create"]
    (s,) = w.slices()
    assert s["endpoints"] == [] and s["ports"] == []


def test_losing_all_endpoints_recycles_a_slice_into_the_placeholder() -> None:
    w = world_with(service(), [pod("a", "10.244.0.2")])
    w.converge()
    (before,) = w.slices()
    w.remove(podapi.POD, "default", "a")
    plan = w.converge()
    assert kinds(plan) == ["Update"]
    (after,) = w.slices()
    assert after["metadata"]["name"] == before["metadata"]["name"]
    assert after["endpoints"] == [] and after["ports"] == []


def test_service_label_changes_are_copied_to_slices() -> None:
    svc = service()
    w = world_with(svc, [pod("a", "10.244.0.2")])
    w.converge()
    svc["metadata"]["labels"] = {"team": "b"}
    w.put(svcapi.SERVICE, svc)
    plan = w.converge()
    assert kinds(plan) == ["Update"]
    assert w.slices()[0]["metadata"]["labels"]["team"] == "b"


# ---------------------------------------------------------------------------------- ownership


def test_selectorless_services_leave_user_slices_alone() -> None:
    svc = service()
    del svc["spec"]["selector"]
    w = world_with(svc, [pod("a", "10.244.0.2")])
    w.put(
        SLICE,
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-manual", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["192.0.2.1"]}],
        },
    )
    assert not w.reconcile()


def test_removing_the_selector_deletes_managed_slices_only() -> None:
    svc = service()
    w = world_with(svc, [pod("a", "10.244.0.2")])
    w.converge()
    (managed,) = w.slices()
    w.put(
        SLICE,
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-manual", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
        },
    )
    del svc["spec"]["selector"]
    w.put(svcapi.SERVICE, svc)
    plan = w.converge()
    assert [(type(a).__name__, getattr(a, "name", "")) for a in plan.actions] == [
        ("Delete", managed["metadata"]["name"])
    ]
    assert [s["metadata"]["name"] for s in w.slices()] == ["web-manual"]


def test_slices_of_a_previous_incarnation_are_replaced() -> None:
    w = world_with(service(), [pod("a", "10.244.0.2")])
    w.put(
        SLICE,
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-old",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web", **MANAGED},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "old", "controller": True}
                ],
            },
            "addressType": "IPv4",
            "endpoints": [],
        },
    )
    plan = w.converge()
    assert sorted(kinds(plan)) == ["Create", "Delete"]


def test_dropping_a_family_deletes_its_slices() -> None:
    svc = service(ipFamilies=["IPv4", "IPv6"], clusterIPs=["10.96.0.20", "fd00:10:96::20"])
    w = world_with(svc, [pod("a", ["10.244.0.2", "fd00:10:244::2"])])
    w.converge()
    (v6,) = w.slices("IPv6")
    svc["spec"]["ipFamilies"] = ["IPv4"]
    w.put(svcapi.SERVICE, svc)
    plan = w.converge()
    assert [(type(a).__name__, getattr(a, "name", "")) for a in plan.actions] == [("Delete", v6["metadata"]["name"])]


# ---------------------------------------------------------------------------------- hints


def test_prefer_close_hints_each_ready_endpoint_for_its_zone() -> None:
    nodes = [node("n1", zone="z1"), node("n2", zone="z2")]
    pods = [pod("a", "10.244.0.2"), pod("b", "10.244.1.2", node="n2"), pod("c", "10.244.1.3", node="n2", ready=False)]
    w = world_with(service(trafficDistribution="PreferClose"), pods, nodes)
    w.converge()
    hints = {ep["targetRef"]["name"]: ep.get("hints") for ep in w.slices()[0]["endpoints"]}
    assert hints == {"a": {"forZones": [{"name": "z1"}]}, "b": {"forZones": [{"name": "z2"}]}, "c": None}


def test_dropping_traffic_distribution_removes_hints() -> None:
    svc = service(trafficDistribution="PreferClose")
    w = world_with(svc, [pod("a", "10.244.0.2")])
    w.converge()
    del svc["spec"]["trafficDistribution"]
    w.put(svcapi.SERVICE, svc)
    plan = w.converge()
    assert kinds(plan) == ["Update"]
    assert "hints" not in w.slices()[0]["endpoints"][0]


def auto(svc: Obj) -> Obj:
    svc["metadata"]["annotations"] = {"service.kubernetes.io/topology-mode": "Auto"}
    return svc


def test_topology_auto_allocates_hints_by_zone_cpu() -> None:
    nodes = [
        node("n1", zone="z1", cpu="2"),
        node("n2", zone="z2", cpu="2"),
        node("cp", labels={"node-role.kubernetes.io/control-plane": ""}),
    ]
    # three endpoints in z1, one in z2: z2's minimum is ceil(2 / 1.2) = 2, so one z1 endpoint is
    # hinted to z2 (upstream's redistribution).
    pods = [pod(f"a{i}", f"10.244.0.{i + 2}") for i in range(3)] + [pod("b", "10.244.1.2", node="n2")]
    w = world_with(auto(service()), pods, nodes)
    plan = w.converge()
    zones = sorted(ep["hints"]["forZones"][0]["name"] for ep in w.slices()[0]["endpoints"])
    assert zones == ["z1", "z1", "z2", "z2"]
    events = [a for a in plan.actions if isinstance(a, RecordEvent)]
    assert [(e.type, e.reason, e.message) for e in events] == [
        ("Normal", "TopologyAwareHintsEnabled", "Topology Aware Hints has been enabled, addressType: IPv4")
    ]


def test_topology_auto_without_enough_endpoints_records_why_hints_are_off() -> None:
    nodes = [node("n1", zone="z1"), node("n2", zone="z2")]
    w = world_with(auto(service()), [pod("a", "10.244.0.2")], nodes)
    plan = w.converge()
    events = [(a.reason, a.message) for a in plan.actions if isinstance(a, RecordEvent)]
    assert events == [
        ("TopologyAwareHintsDisabled", "Insufficient number of endpoints (1 endpoints, 2 zones), addressType: IPv4")
    ]
    assert "hints" not in w.slices()[0]["endpoints"][0]


def test_topology_auto_with_zoneless_nodes_reports_insufficient_node_info() -> None:
    w = world_with(auto(service()), [pod("a", "10.244.0.2"), pod("b", "10.244.0.3")], [node("n1")])
    plan = w.converge()
    (event,) = [a for a in plan.actions if isinstance(a, RecordEvent)]
    assert event.message == (
        "Insufficient Node information: allocatable CPU or zone not specified on one or more nodes, addressType: IPv4"
    )


# ---------------------------------------------------------------------------------- event mapping


def test_pods_and_nodes_map_to_the_services_that_use_them() -> None:
    w = world_with(service(), [pod("a", "10.244.0.2")])
    w.put(svcapi.SERVICE, service("db"))
    w.converge()
    watches = w.controller.watches()
    assert list(watches[podapi.POD](pod("x", "10.244.0.9"))) == ["default/web"]
    assert list(watches[podapi.POD](pod("x", "10.244.0.9", labels={"app": "db"}))) == ["default/db"]
    assert list(watches[core.NODE](node("n1"))) == ["default/web"]
    assert list(watches[SLICE](w.slices()[0])) == ["default/web"]


# ---------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("families", [["IPv4"], ["IPv4", "IPv6"]])
async def test_manager_publishes_slices_over_a_real_store(store: Store, families: list[str]) -> None:
    client = LocalClient(store)
    manager = Manager(client, store.registry, [EndpointSliceController()])
    await manager.start()
    try:
        await client.create(core.NODE, node("n1", zone="z1"))
        ips = {"IPv4": "10.96.0.30", "IPv6": "fd00:10:96::30"}
        svc = service()
        svc["metadata"] = {"name": "web", "namespace": "default", "labels": {"team": "a"}}
        svc["spec"].update(
            ipFamilies=families,
            clusterIP=ips[families[0]],
            clusterIPs=[ips[f] for f in families],
            ipFamilyPolicy="PreferDualStack" if len(families) > 1 else "SingleStack",
        )
        await client.create(svcapi.SERVICE, svc)
        for name, v4, v6 in (("a", "10.244.0.2", "fd00:10:244::2"), ("b", "10.244.0.3", "fd00:10:244::3")):
            body = pod(name, [v4, v6])
            status = body.pop("status")
            del body["metadata"]["uid"]
            body["spec"]["containers"][0]["image"] = "nginx"
            created = await client.create(podapi.POD, body)
            created["status"] = status
            await client.update(podapi.POD, created, subresource="status")
        await manager.wait_idle()
        slices = sorted(store.list_objects(SLICE), key=lambda s: s["addressType"])
        assert [s["addressType"] for s in slices] == families
        for s in slices:
            assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
            assert [ep["targetRef"]["name"] for ep in s["endpoints"]] == ["a", "b"]
            assert all(ep["conditions"]["ready"] for ep in s["endpoints"])
            assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        await client.delete(podapi.POD, "a", "default", grace_period=0)
        await manager.wait_idle()
        for s in store.list_objects(SLICE):
            assert [ep["targetRef"]["name"] for ep in s["endpoints"]] == ["b"]
        assert manager.errors() == {"endpointslice": {}}
    finally:
        await manager.stop()

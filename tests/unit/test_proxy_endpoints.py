"""Upstream's endpoint selection (``categorize``) and the snapshot it reads (``build_snapshot``).

Every case builds wire-form Services and EndpointSlices and goes through ``build_snapshot``, so the
snapshot's parsing is exercised along the way.  The helpers here are shared with
``test_proxy_evaluate``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubewire.dataplane.proxy.endpoints import Selection, categorize, topology_mode
from kubewire.dataplane.proxy.model import NodeContext, ProxySnapshot, ServicePort, build_snapshot

Obj = dict[str, Any]
NODE = NodeContext(name="node-a", zone="zone-a", addresses=("172.18.0.2",), pod_cidrs=("10.244.0.0/16",))
ZONES = {"node-a": "zone-a", "node-b": "zone-b", "node-c": "zone-a"}


def service(
    name: str = "web",
    *,
    ns: str = "default",
    annotations: dict[str, str] | None = None,
    lb_ingress: tuple[str | Obj, ...] = (),
    **spec: Any,
) -> Obj:
    """A wire-form Service: ClusterIP 10.96.0.20, port ``http`` 80/TCP, unless ``spec`` says otherwise."""
    full: Obj = {
        "type": "ClusterIP",
        "clusterIP": "10.96.0.20",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
    }
    full.update(spec)
    ingress = [{"ip": i} if isinstance(i, str) else i for i in lb_ingress]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": full,
        "status": {"loadBalancer": {"ingress": ingress}},
    }


def ep(
    ip: str,
    node: str = "node-a",
    *,
    ready: bool = True,
    serving: bool | None = None,
    terminating: bool = False,
    zones: tuple[str, ...] | None = None,
    nodes: tuple[str, ...] = (),
) -> Obj:
    """A wire-form endpoint with every condition set, as the EndpointSlice controller writes them."""
    out: Obj = {
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": ready if serving is None else serving, "terminating": terminating},
    }
    if node:
        out["nodeName"] = node
        out["zone"] = ZONES.get(node, "zone-x")
    hints: Obj = {}
    if zones:
        hints["forZones"] = [{"name": z} for z in zones]
    if nodes:
        hints["forNodes"] = [{"name": n} for n in nodes]
    if hints:
        out["hints"] = hints
    return out


def eslice(
    endpoints: list[Obj],
    *,
    svc: str = "web",
    ns: str = "default",
    name: str | None = None,
    ports: tuple[tuple[str, int], ...] = (("http", 8080),),
    family: int = 4,
    protocol: str = "TCP",
) -> Obj:
    """A wire-form EndpointSlice of Service ``svc``."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{svc}-{family}",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4" if family == 4 else "IPv6",
        "ports": [{"name": n, "port": p, "protocol": protocol} for n, p in ports],
        "endpoints": endpoints,
    }


def snapshot(services: list[Obj], slices: list[Obj], node: NodeContext = NODE, family: int = 4) -> ProxySnapshot:
    return build_snapshot(services, slices, node, family)


def port_of(svc: Obj, endpoints: list[Obj], node: NodeContext = NODE) -> ServicePort:
    """The only ServicePort of ``svc`` with ``endpoints``."""
    (sp,) = snapshot([svc], [eslice(endpoints)], node).services
    return sp


def ips(endpoints: tuple[Any, ...]) -> list[str]:
    return [e.ip for e in endpoints]


def select(svc: Obj, endpoints: list[Obj], node: NodeContext = NODE) -> Selection:
    return categorize(port_of(svc, endpoints, node), node)


NODEPORT = {"type": "NodePort", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}
A1, A2, B1, C1 = "10.244.0.5", "10.244.0.6", "10.244.1.5", "10.244.2.5"


# --- categorize: readiness -------------------------------------------------------------------


def test_no_endpoints_means_nothing_and_no_endpoints_anywhere() -> None:
    assert select(service(), []) == Selection((), (), (), False)


def test_ready_endpoints_are_used_for_cluster_policy() -> None:
    sel = select(service(), [ep(B1, "node-b"), ep(A1)])
    assert ips(sel.cluster) == [A1, B1]
    assert sel.local == ()
    assert sel.reachable == sel.cluster
    assert sel.has_any


def test_ready_endpoints_are_preferred_to_terminating_ones() -> None:
    sel = select(service(), [ep(A1), ep(B1, "node-b", ready=False, serving=True, terminating=True)])
    assert ips(sel.cluster) == [A1]


def test_serving_terminating_endpoints_are_the_fallback_when_none_is_ready() -> None:
    sel = select(
        service(),
        [
            ep(A1, ready=False, serving=True, terminating=True),
            ep(B1, "node-b", ready=False, serving=False, terminating=True),
            ep(C1, "node-c", ready=False),
        ],
    )
    assert ips(sel.cluster) == [A1]
    assert sel.has_any


def test_endpoints_neither_ready_nor_serving_terminating_count_as_none() -> None:
    sel = select(service(), [ep(A1, ready=False), ep(B1, "node-b", ready=False, serving=False, terminating=True)])
    assert sel == Selection((), (), (), False)


def test_not_ready_serving_but_not_terminating_is_not_a_fallback() -> None:
    sel = select(service(), [ep(A1, ready=False, serving=True, terminating=False)])
    assert not sel.has_any


# --- categorize: traffic policies ------------------------------------------------------------


def test_internal_local_uses_only_this_nodes_endpoints_and_no_cluster_list() -> None:
    sel = select(service(internalTrafficPolicy="Local"), [ep(A1), ep(B1, "node-b")])
    assert sel.cluster == ()
    assert ips(sel.local) == [A1]
    assert sel.reachable == sel.local
    assert sel.has_any


def test_internal_local_without_local_endpoints_still_has_endpoints_elsewhere() -> None:
    sel = select(service(internalTrafficPolicy="Local"), [ep(B1, "node-b")])
    assert sel.local == () and sel.reachable == ()
    assert sel.has_any


def test_local_list_falls_back_to_local_serving_terminating_independently() -> None:
    sel = select(
        service(**NODEPORT, externalTrafficPolicy="Local"),
        [ep(A1, ready=False, serving=True, terminating=True), ep(B1, "node-b")],
    )
    assert ips(sel.cluster) == [B1]
    assert ips(sel.local) == [A1]
    assert ips(sel.reachable) == [A1, B1]


def test_local_list_prefers_local_ready_endpoints() -> None:
    sel = select(
        service(internalTrafficPolicy="Local"),
        [ep(A1), ep(A2, ready=False, serving=True, terminating=True)],
    )
    assert ips(sel.local) == [A1]


def test_external_local_needs_both_lists() -> None:
    sel = select(service(**NODEPORT, externalTrafficPolicy="Local"), [ep(A1), ep(B1, "node-b")])
    assert ips(sel.cluster) == [A1, B1]
    assert ips(sel.local) == [A1]
    assert ips(sel.reachable) == [A1, B1]


def test_external_local_on_an_unreachable_port_does_not_use_local_endpoints() -> None:
    # Without a NodePort, externalIP or LoadBalancer IP the external policy has nothing to apply to.
    sel = select(service(externalTrafficPolicy="Local"), [ep(A1), ep(B1, "node-b")])
    assert sel.local == ()
    assert ips(sel.cluster) == [A1, B1]


def test_internal_local_but_externally_reachable_keeps_the_cluster_list() -> None:
    sel = select(service(**NODEPORT, internalTrafficPolicy="Local"), [ep(A1), ep(B1, "node-b")])
    assert ips(sel.cluster) == [A1, B1]
    assert ips(sel.local) == [A1]


def test_an_endpoint_without_node_name_is_never_local() -> None:
    nameless = NodeContext(name="", zone="zone-a")
    sel = select(service(internalTrafficPolicy="Local"), [ep(A1, node="")], node=nameless)
    assert sel.local == ()
    assert sel.has_any


def test_endpoints_come_out_sorted_by_ip_and_port() -> None:
    sel = select(service(), [ep("10.244.3.1", "node-b"), ep("10.244.1.1", "node-c"), ep("10.244.2.1")])
    assert ips(sel.cluster) == ["10.244.1.1", "10.244.2.1", "10.244.3.1"]


# --- categorize: topology --------------------------------------------------------------------


def test_zone_hints_for_this_zone_restrict_the_cluster_list() -> None:
    endpoints = [ep(A1, zones=("zone-a",)), ep(B1, "node-b", zones=("zone-b",)), ep(C1, "node-c", zones=("zone-a",))]
    sp = port_of(service(trafficDistribution="PreferClose"), endpoints)
    assert topology_mode(sp, NODE) == "PreferSameZone"
    assert ips(categorize(sp, NODE).cluster) == [A1, C1]


def test_zone_hints_are_ignored_when_one_ready_endpoint_lacks_them() -> None:
    endpoints = [ep(A1, zones=("zone-a",)), ep(B1, "node-b")]
    assert ips(select(service(trafficDistribution="PreferClose"), endpoints).cluster) == [A1, B1]


def test_zone_hints_are_ignored_when_none_is_for_this_zone() -> None:
    endpoints = [ep(A1, zones=("zone-b",)), ep(B1, "node-b", zones=("zone-b",))]
    assert ips(select(service(trafficDistribution="PreferClose"), endpoints).cluster) == [A1, B1]


def test_zone_hints_are_ignored_when_the_node_has_no_zone() -> None:
    zoneless = NodeContext(name="node-a")
    endpoints = [ep(A1, zones=("zone-a",)), ep(B1, "node-b", zones=("zone-b",))]
    assert ips(select(service(trafficDistribution="PreferClose"), endpoints, node=zoneless).cluster) == [A1, B1]


def test_only_ready_endpoints_need_hints() -> None:
    endpoints = [ep(A1, zones=("zone-a",)), ep(B1, "node-b", zones=("zone-b",)), ep(C1, "node-c", ready=False)]
    assert ips(select(service(trafficDistribution="PreferClose"), endpoints).cluster) == [A1]


def test_hints_from_the_topology_mode_annotation_are_honoured() -> None:
    endpoints = [ep(A1, zones=("zone-a",)), ep(B1, "node-b", zones=("zone-b",))]
    svc = service(annotations={"service.kubernetes.io/topology-mode": "Auto"})
    assert port_of(svc, endpoints).topology_auto
    assert ips(select(svc, endpoints).cluster) == [A1]


def test_hints_are_honoured_whatever_the_service_says() -> None:
    # Since 1.31 kube-proxy reads hints whenever they are complete (KEP-4444); the EndpointSlice
    # controller decides whether they exist.
    endpoints = [ep(A1, zones=("zone-a",)), ep(B1, "node-b", zones=("zone-b",))]
    assert ips(select(service(), endpoints).cluster) == [A1]


def test_node_hints_for_this_node_win_over_zone_hints() -> None:
    endpoints = [
        ep(A1, zones=("zone-a",), nodes=("node-a",)),
        ep(C1, "node-c", zones=("zone-a",), nodes=("node-c",)),
        ep(B1, "node-b", zones=("zone-b",), nodes=("node-b",)),
    ]
    sp = port_of(service(trafficDistribution="PreferSameNode"), endpoints)
    assert topology_mode(sp, NODE) == "PreferSameNode"
    assert ips(categorize(sp, NODE).cluster) == [A1]


def test_node_hints_not_for_this_node_fall_back_to_zone_hints() -> None:
    endpoints = [
        ep(C1, "node-c", zones=("zone-a",), nodes=("node-c",)),
        ep(B1, "node-b", zones=("zone-b",), nodes=("node-b",)),
    ]
    sp = port_of(service(trafficDistribution="PreferSameNode"), endpoints)
    assert topology_mode(sp, NODE) == "PreferSameZone"
    assert ips(categorize(sp, NODE).cluster) == [C1]


def test_topology_does_not_apply_to_the_terminating_fallback() -> None:
    endpoints = [
        ep(A1, ready=False, serving=True, terminating=True, zones=("zone-a",)),
        ep(B1, "node-b", ready=False, serving=True, terminating=True, zones=("zone-b",)),
    ]
    assert ips(select(service(), endpoints).cluster) == [A1, B1]


def test_topology_does_not_apply_to_the_local_list_but_reachable_keeps_both() -> None:
    endpoints = [ep(A1, zones=("zone-b",)), ep(B1, "node-b", zones=("zone-a",))]
    sel = select(service(**NODEPORT, externalTrafficPolicy="Local"), endpoints)
    assert ips(sel.cluster) == [B1]
    assert ips(sel.local) == [A1]
    assert ips(sel.reachable) == [A1, B1]


# --- build_snapshot --------------------------------------------------------------------------


def test_port_names_resolve_across_slices() -> None:
    svc = service(
        ports=[
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "metrics", "port": 9100, "protocol": "TCP"},
        ]
    )
    slices = [
        eslice([ep(A1)], name="web-1", ports=(("http", 8080), ("metrics", 9090))),
        eslice([ep(B1, "node-b")], name="web-2", ports=(("http", 8081),)),
    ]
    by_key = snapshot([svc], slices).by_key()
    assert sorted(by_key) == ["default/web:http", "default/web:metrics"]
    assert [(e.ip, e.port) for e in by_key["default/web:http"].endpoints] == [(A1, 8080), (B1, 8081)]
    assert [(e.ip, e.port) for e in by_key["default/web:metrics"].endpoints] == [(A1, 9090)]


def test_unnamed_port_key_is_namespace_and_name() -> None:
    svc = service(ports=[{"port": 53, "protocol": "UDP"}])
    (sp,) = snapshot([svc], [eslice([ep(A1)], ports=(("", 5353),), protocol="UDP")]).services
    assert sp.key == "default/web"
    assert sp.protocol == "UDP"
    assert [(e.ip, e.port) for e in sp.endpoints] == [(A1, 5353)]


def test_family_filtering_of_addresses_and_slices() -> None:
    svc = service(
        type="LoadBalancer",
        clusterIPs=["10.96.0.20", "fd00:10:96::20"],
        externalIPs=["172.18.100.1", "fc00:f853:ccd:e793::100"],
        loadBalancerSourceRanges=["10.0.0.0/8", " fc00::/7 "],
        ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
        lb_ingress=("172.18.255.200", "fc00:f853:ccd:e793::200"),
    )
    slices = [eslice([ep(A1)]), eslice([ep("fd00:10:244::5")], family=6)]
    node6 = NodeContext(name="node-a", addresses=("fc00:f853:ccd:e793::2",))
    (v4,) = snapshot([svc], slices).services
    (v6,) = snapshot([svc], slices, node6, family=6).services
    assert (v4.cluster_ips, v4.external_ips, v4.load_balancer_ips) == (
        ("10.96.0.20",),
        ("172.18.100.1",),
        ("172.18.255.200",),
    )
    assert v4.source_ranges == ("10.0.0.0/8",) and v6.source_ranges == ("fc00::/7",)
    assert ips(v4.endpoints) == [A1]
    assert v6.cluster_ips == ("fd00:10:96::20",)
    assert ips(v6.endpoints) == ["fd00:10:244::5"]


def test_single_stack_service_is_absent_from_the_other_family() -> None:
    assert snapshot([service()], [eslice([ep(A1)])], family=6).services == ()


def test_headless_and_external_name_services_are_skipped() -> None:
    headless = service("db", clusterIP="None")
    external = service("ext", type="ExternalName", externalName="example.com", clusterIP="")
    slices = [eslice([ep(A1)], svc="db"), eslice([ep(A1)], svc="ext")]
    assert snapshot([headless, external], slices).services == ()


def test_slices_of_other_services_or_unlabelled_are_ignored() -> None:
    stray = eslice([ep(C1)], svc="other")
    unlabelled = eslice([ep(B1)], name="loose")
    unlabelled["metadata"]["labels"] = {}
    (sp,) = snapshot([service()], [eslice([ep(A1)]), stray, unlabelled]).services
    assert ips(sp.endpoints) == [A1]


def test_conditions_default_as_kube_proxy_reads_them() -> None:
    bare = {"addresses": [A1], "nodeName": "node-a"}
    terminating = {"addresses": [B1], "conditions": {"ready": False, "terminating": True}}
    (sp,) = snapshot([service()], [eslice([bare, terminating])]).services
    first, second = sp.endpoints
    assert (first.ready, first.serving, first.terminating) == (True, True, False)
    # kube-proxy reads a missing serving condition as true, so this one is a usable fallback.
    assert (second.ready, second.serving, second.terminating) == (False, True, True)
    assert ips(categorize(sp, NODE).cluster) == [A1]


def test_load_balancer_ips_need_type_load_balancer_and_vip_mode() -> None:
    lb = service(
        type="LoadBalancer",
        ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
        lb_ingress=("172.18.255.200", {"ip": "172.18.255.201", "ipMode": "Proxy"}, {"hostname": "lb.example"}),
    )
    (sp,) = snapshot([lb], []).services
    assert sp.load_balancer_ips == ("172.18.255.200",)
    (plain,) = snapshot([service(lb_ingress=("172.18.255.200",))], []).services
    assert plain.load_balancer_ips == ()


def test_session_affinity_timeout_defaults_to_three_hours() -> None:
    (sp,) = snapshot([service(sessionAffinity="ClientIP")], []).services
    assert sp.affinity_timeout == 10800
    (sp,) = snapshot(
        [service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})], []
    ).services
    assert sp.affinity_timeout == 60


def test_duplicate_endpoints_across_slices_are_kept_once() -> None:
    (sp,) = snapshot([service()], [eslice([ep(A1)], name="one"), eslice([ep(A1)], name="two")]).services
    assert ips(sp.endpoints) == [A1]


# --- properties ------------------------------------------------------------------------------


@st.composite
def service_ports(draw: st.DrawFn) -> ServicePort:
    """A service port with random endpoints (conditions, nodes, hints) and traffic policies."""
    hints = draw(st.sampled_from(["none", "zones", "nodes", "partial"]))
    endpoints = []
    for i in range(draw(st.integers(0, 6))):
        node = draw(st.sampled_from(["node-a", "node-b", "node-c", ""]))
        zone = ZONES.get(node, "")
        hinted = hints != "none" and (hints != "partial" or draw(st.booleans()))
        endpoints.append(
            ep(
                f"10.244.{i}.{draw(st.integers(1, 3))}",
                node,
                ready=draw(st.booleans()),
                serving=draw(st.booleans()),
                terminating=draw(st.booleans()),
                zones=(draw(st.sampled_from([zone or "zone-b", "zone-b"])),) if hinted else None,
                nodes=(node or "node-b",) if hinted and hints == "nodes" else (),
            )
        )
    spec: Obj = {}
    if draw(st.booleans()):
        spec.update(NODEPORT)
    if draw(st.booleans()):
        spec["internalTrafficPolicy"] = "Local"
    if spec and draw(st.booleans()):
        spec["externalTrafficPolicy"] = "Local"
    return port_of(service(**spec), endpoints)


@settings(max_examples=300, deadline=None)
@given(service_ports())
def test_selection_properties(sp: ServicePort) -> None:
    sel = categorize(sp, NODE)
    every = set(sp.endpoints)
    assert set(sel.cluster) <= every and set(sel.local) <= every
    assert set(sel.reachable) == set(sel.cluster) | set(sel.local)
    assert all(e.node == NODE.name for e in sel.local)
    # A terminating endpoint is used only when no ready one is available to that list.
    if any(e.ready for e in sp.endpoints):
        assert all(e.ready for e in sel.cluster)
    if any(e.ready and e.node == NODE.name for e in sp.endpoints):
        assert all(e.ready for e in sel.local)
    assert all(e.ready or (e.serving and e.terminating) for e in sel.reachable)
    assert sel.has_any == any(e.ready or (e.serving and e.terminating) for e in sp.endpoints)
    for chosen in (sel.cluster, sel.local, sel.reachable):
        assert list(chosen) == sorted(chosen, key=lambda e: (e.ip, e.port))


@pytest.mark.parametrize("policy", ["Cluster", "Local"])
def test_has_any_does_not_depend_on_where_endpoints_run(policy: str) -> None:
    sel = select(service(**NODEPORT, externalTrafficPolicy=policy), [ep(B1, "node-b")])
    assert sel.has_any
    assert ips(sel.cluster) == [B1]

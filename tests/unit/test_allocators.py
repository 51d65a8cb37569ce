"""Service ClusterIP / NodePort allocation as store admission: upstream's allocator behaviour."""

from __future__ import annotations

import ipaddress
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubewire.api.registry import Kind, Obj, default_registry
from kubewire.errors import Invalid, StatusError
from kubewire.store.allocators import PORTS, Allocators
from kubewire.store.store import Store
from tests.conftest import kind

SVC = kind("services")
V4, V6 = "10.96.0.0/16", "fd00:10:96::/112"


def svc(name: str, **spec: Any) -> Obj:
    spec.setdefault("ports", [{"port": 80}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def install(store: Store, cidrs: list[str] | None = None, seed: int = 0, **kw: Any) -> Allocators:
    alloc = Allocators(cidrs or [V4], rng=random.Random(seed), **kw)
    alloc.install(store)
    return alloc


def update(store: Store, name: str, **changes: Any) -> Obj:
    obj = store.get(SVC, "default", name)
    for key, value in changes.items():
        if value is None:
            obj["spec"].pop(key, None)
        else:
            obj["spec"][key] = value
    return store.update(SVC, obj)


def error_of(fn: Any) -> StatusError:
    with pytest.raises(StatusError) as info:
        fn()
    return info.value


@pytest.fixture
def alloc(store: Store) -> Allocators:
    return install(store)


# ---------------------------------------------------------------------------------- cluster IPs


def test_cluster_ip_is_allocated_in_range_and_recorded(store: Store, alloc: Allocators) -> None:
    spec = store.create(SVC, svc("web"))["spec"]
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    ip = ipaddress.ip_address(spec["clusterIP"])
    assert ip in ipaddress.ip_network(V4) and ip != ipaddress.ip_address("10.96.0.0")
    assert store.get(SVC, "default", "web")["spec"]["clusterIP"] == spec["clusterIP"]
    assert alloc.in_use()["IPv4"] == {spec["clusterIP"]}
    assert alloc.owner_of("IPv4", spec["clusterIP"]) == "default/web"


def test_requested_ip_is_honoured_and_conflicts_use_upstream_wording(store: Store, alloc: Allocators) -> None:
    assert store.create(SVC, svc("dns", clusterIP="10.96.0.10"))["spec"]["clusterIPs"] == ["10.96.0.10"]
    err = error_of(lambda: store.create(SVC, svc("other", clusterIP="10.96.0.10")))
    assert isinstance(err, Invalid) and err.code == 422
    assert err.message == (
        'Service "other" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.10"}: '
        "failed to allocate IP 10.96.0.10: provided IP is already allocated"
    )
    assert err.causes[0].field == "spec.clusterIPs"
    err = error_of(lambda: store.create(SVC, svc("far", clusterIP="10.97.0.5")))
    assert err.message.endswith(
        "failed to allocate IP 10.97.0.5: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/16"
    )
    # neither the network address nor (IPv4) the broadcast address is allocatable
    for edge in ("10.96.0.0", "10.96.255.255"):
        assert "not in the valid range" in error_of(lambda e=edge: store.create(SVC, svc("edge", clusterIP=e))).message


def test_dynamic_allocation_prefers_the_upper_band_then_fills_the_range(store: Store) -> None:
    alloc = install(store, ["10.96.0.0/24"])  # 254 usable; upstream reserves the first 16 for static use
    lower = {f"10.96.0.{i}" for i in range(1, 17)}
    for i in range(254 - 16):
        assert store.create(SVC, svc(f"s{i}"))["spec"]["clusterIP"] not in lower
    for i in range(16):  # the upper band is full: dynamic allocation falls back to the lower band
        assert store.create(SVC, svc(f"t{i}"))["spec"]["clusterIP"] in lower
    assert len(alloc.in_use()["IPv4"]) == 254
    err = error_of(lambda: store.create(SVC, svc("full")))
    assert (err.code, err.message) == (500, "Internal error occurred: failed to allocate a serviceIP: range is full")


def test_headless_gets_families_and_external_name_gets_nothing(store: Store, alloc: Allocators) -> None:
    headless = store.create(SVC, svc("h", clusterIP="None", selector={"app": "x"}))["spec"]
    assert (headless["clusterIPs"], headless["ipFamilyPolicy"], headless["ipFamilies"]) == (
        ["None"],
        "SingleStack",
        ["IPv4"],
    )
    selectorless = store.create(SVC, svc("hs", clusterIP="None"))["spec"]
    assert selectorless["ipFamilyPolicy"] == "RequireDualStack"  # upstream special case
    assert selectorless["ipFamilies"] == ["IPv4", "IPv6"]  # allowed even on a single-stack cluster
    name = store.create(SVC, svc("ext", type="ExternalName", externalName="example.com"))["spec"]
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} & name.keys()
    assert alloc.in_use() == {"IPv4": set(), PORTS: set()}


# ---------------------------------------------------------------------------------- dual-stack


def test_dual_stack_policies(store: Store) -> None:
    alloc = install(store, [V4, V6])
    single = store.create(SVC, svc("single"))["spec"]
    assert single["ipFamilies"] == ["IPv4"] and len(single["clusterIPs"]) == 1
    prefer = store.create(SVC, svc("prefer", ipFamilyPolicy="PreferDualStack"))["spec"]
    assert prefer["ipFamilies"] == ["IPv4", "IPv6"]
    assert [ipaddress.ip_address(ip).version for ip in prefer["clusterIPs"]] == [4, 6]
    # a requested IPv6 address makes IPv6 the primary family
    v6first = store.create(SVC, svc("v6", ipFamilyPolicy="RequireDualStack", clusterIP="fd00:10:96::a"))["spec"]
    assert v6first["ipFamilies"] == ["IPv6", "IPv4"] and v6first["clusterIPs"][0] == "fd00:10:96::a"
    fam = store.create(SVC, svc("fam", ipFamilies=["IPv6"]))["spec"]
    assert fam["ipFamilies"] == ["IPv6"] and ipaddress.ip_address(fam["clusterIP"]).version == 6
    assert len(alloc.in_use()["IPv6"]) == 3 and len(alloc.in_use()["IPv4"]) == 3


def test_dual_stack_requests_on_a_single_stack_cluster_are_refused(store: Store, alloc: Allocators) -> None:
    err = error_of(lambda: store.create(SVC, svc("r", ipFamilyPolicy="RequireDualStack")))
    assert err.message == (
        'Service "r" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": '
        "this cluster is not configured for dual-stack services"
    )
    err = error_of(lambda: store.create(SVC, svc("f", ipFamilies=["IPv6"])))
    assert err.message.endswith('spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster')
    err = error_of(lambda: store.create(SVC, svc("i", clusterIP="fd00:10:96::1")))
    assert err.message.endswith(
        'spec.clusterIPs[0]: Invalid value: []string{"fd00:10:96::1"}: IPv6 is not configured on this cluster'
    )
    prefer = store.create(SVC, svc("p", ipFamilyPolicy="PreferDualStack"))["spec"]
    assert prefer["ipFamilies"] == ["IPv4"] and len(prefer["clusterIPs"]) == 1
    assert alloc.in_use()["IPv4"] == {prefer["clusterIP"]}


def test_upgrade_allocates_and_downgrade_releases_the_secondary(store: Store) -> None:
    alloc = install(store, [V4, V6])
    primary = store.create(SVC, svc("web"))["spec"]["clusterIP"]
    up = update(store, "web", ipFamilyPolicy="RequireDualStack")["spec"]
    assert up["clusterIPs"][0] == primary and up["ipFamilies"] == ["IPv4", "IPv6"]
    secondary = up["clusterIPs"][1]
    assert alloc.owner_of("IPv6", secondary) == "default/web"
    down = update(store, "web", ipFamilyPolicy="SingleStack")["spec"]
    assert (down["clusterIPs"], down["ipFamilies"]) == ([primary], ["IPv4"])
    assert alloc.in_use()["IPv6"] == set()
    assert store.create(SVC, svc("takes", clusterIP=secondary, ipFamilies=["IPv6"]))["spec"]["clusterIP"] == secondary


def test_type_changes_release_and_reallocate_ips(store: Store, alloc: Allocators) -> None:
    ip = store.create(SVC, svc("web"))["spec"]["clusterIP"]
    obj = store.get(SVC, "default", "web")
    obj["spec"] = {"type": "ExternalName", "externalName": "example.com", "ports": obj["spec"]["ports"]}
    assert "clusterIP" not in store.update(SVC, obj)["spec"]
    assert alloc.in_use()["IPv4"] == set()
    store.create(SVC, svc("reuse", clusterIP=ip))
    obj = store.get(SVC, "default", "web")
    obj["spec"] = {"type": "ClusterIP", "ports": obj["spec"]["ports"]}
    back = store.update(SVC, obj)["spec"]
    assert back["clusterIP"] not in ("", ip) and back["ipFamilies"] == ["IPv4"]
    assert alloc.in_use()["IPv4"] == {ip, back["clusterIP"]}


# ---------------------------------------------------------------------------------- node ports


def test_node_ports_random_requested_and_conflicting(store: Store, alloc: Allocators) -> None:
    spec = store.create(SVC, svc("np", type="NodePort"))["spec"]
    port = spec["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    asked = store.create(SVC, svc("asked", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))["spec"]
    assert asked["ports"][0]["nodePort"] == 30080
    err = error_of(lambda: store.create(SVC, svc("dup", type="NodePort", ports=[{"port": 81, "nodePort": 30080}])))
    assert err.message == (
        'Service "dup" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated'
    )
    err = error_of(lambda: store.create(SVC, svc("low", type="NodePort", ports=[{"port": 81, "nodePort": 8080}])))
    assert err.message.endswith(
        "spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"
    )
    assert alloc.in_use()[PORTS] == {port, 30080}


def test_one_service_may_use_a_node_port_for_tcp_and_udp(store: Store, alloc: Allocators) -> None:
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
    spec = store.create(SVC, svc("dns", type="NodePort", ports=ports))["spec"]
    assert spec["ports"][0]["nodePort"] == spec["ports"][1]["nodePort"]
    same = [dict(p, nodePort=30053) for p in ports]
    spec = store.create(SVC, svc("dns2", type="NodePort", ports=same))["spec"]
    assert [p["nodePort"] for p in spec["ports"]] == [30053, 30053]
    assert len(alloc.in_use()[PORTS]) == 2


def test_load_balancer_may_skip_node_ports(store: Store, alloc: Allocators) -> None:
    spec = store.create(SVC, svc("lb", type="LoadBalancer", allocateLoadBalancerNodePorts=False))["spec"]
    assert "nodePort" not in spec["ports"][0]
    asked = [{"port": 80, "nodePort": 31000}]
    spec = store.create(SVC, svc("lb2", type="LoadBalancer", allocateLoadBalancerNodePorts=False, ports=asked))
    assert spec["spec"]["ports"][0]["nodePort"] == 31000  # explicit requests are still honoured
    assert alloc.in_use()[PORTS] == {31000}


def test_node_ports_released_on_type_change_port_removal_and_deletion(store: Store, alloc: Allocators) -> None:
    ports = [{"name": "a", "port": 80}, {"name": "b", "port": 81}]
    spec = store.create(SVC, svc("np", type="NodePort", ports=ports))["spec"]
    first, _ = (p["nodePort"] for p in spec["ports"])
    update(store, "np", ports=[spec["ports"][0]])
    assert alloc.in_use()[PORTS] == {first}
    update(store, "np", type="ClusterIP", externalTrafficPolicy=None)
    assert alloc.in_use()[PORTS] == set()
    assert "nodePort" not in store.get(SVC, "default", "np")["spec"]["ports"][0]
    again = update(store, "np", type="NodePort")["spec"]["ports"][0]["nodePort"]
    assert alloc.in_use()[PORTS] == {again}
    store.delete(SVC, "default", "np")
    assert alloc.in_use() == {"IPv4": set(), PORTS: set()}
    assert store.create(SVC, svc("reuse", type="NodePort", ports=[{"port": 80, "nodePort": again}]))


def test_health_check_node_port(store: Store, alloc: Allocators) -> None:
    spec = store.create(SVC, svc("lb", type="LoadBalancer", externalTrafficPolicy="Local"))["spec"]
    hc = spec["healthCheckNodePort"]
    assert 30000 <= hc <= 32767 and hc != spec["ports"][0]["nodePort"]
    assert alloc.owner_of(PORTS, hc) == "default/lb"
    asked = svc("lb2", type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=31111)
    assert store.create(SVC, asked)["spec"]["healthCheckNodePort"] == 31111
    taken = svc("lb3", type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=31111)
    err = error_of(lambda: store.create(SVC, taken))
    assert (err.code, err.message) == (
        500,
        "Internal error occurred: failed to allocate requested HealthCheck NodePort 31111: "
        "provided port is already allocated",
    )
    assert "healthCheckNodePort" not in update(store, "lb", externalTrafficPolicy="Cluster")["spec"]
    assert alloc.owner_of(PORTS, hc) is None
    assert update(store, "lb", externalTrafficPolicy="Local")["spec"]["healthCheckNodePort"] > 0


# ---------------------------------------------------------------------------------- dry-run, failures, restart


def test_dry_run_fills_the_object_but_keeps_nothing(store: Store, alloc: Allocators) -> None:
    shown = store.create(SVC, svc("np", type="NodePort", clusterIP="10.96.0.50"), dry_run=True)["spec"]
    assert shown["clusterIPs"] == ["10.96.0.50"] and shown["ports"][0]["nodePort"] > 0
    assert alloc.in_use() == {"IPv4": set(), PORTS: set()}
    store.create(SVC, svc("np", type="NodePort", clusterIP="10.96.0.50"))
    err = error_of(lambda: store.create(SVC, svc("clash", clusterIP="10.96.0.50"), dry_run=True))
    assert "provided IP is already allocated" in err.message
    before = alloc.in_use()
    store.update(SVC, dict(store.get(SVC, "default", "np"), spec=svc("np", type="ClusterIP")["spec"]), dry_run=True)
    assert alloc.in_use() == before


def test_a_write_failing_after_admission_leaks_nothing(store: Store, alloc: Allocators) -> None:
    def refuse(op: str, kind: Kind, new: Obj, old: Obj | None, dry_run: bool) -> None:
        if kind.kind == "Service":
            raise Invalid("Service", new["metadata"]["name"], [])

    store.admission.append(refuse)
    with pytest.raises(Invalid):
        store.create(SVC, svc("web", type="NodePort", clusterIP="10.96.0.7", ports=[{"port": 80, "nodePort": 30007}]))
    assert alloc.in_use() == {"IPv4": set(), PORTS: set()}
    store.admission.remove(refuse)
    store.create(SVC, svc("web", type="NodePort", clusterIP="10.96.0.7", ports=[{"port": 80, "nodePort": 30007}]))
    assert alloc.in_use() == {"IPv4": {"10.96.0.7"}, PORTS: {30007}}


def test_repair_adopts_services_stored_before_allocation(store: Store) -> None:
    store.create(SVC, svc("old", clusterIP="10.96.0.9"))
    store.create(SVC, svc("twin", clusterIP="10.96.0.9"))  # no allocator yet: a double allocation
    alloc = install(store)
    assert alloc.owner_of("IPv4", "10.96.0.9") == "default/old"  # the older keeps it
    store.delete(SVC, "default", "twin")
    assert alloc.owner_of("IPv4", "10.96.0.9") == "default/old"
    alloc._held.clear()  # simulate drift, then repair from the store
    for pool in alloc.ip_pools.values():
        pool.owners.clear()
    alloc.repair(store)
    assert alloc.in_use()["IPv4"] == {"10.96.0.9"}


def test_restart_rebuilds_from_the_stored_services(tmp_path: Path) -> None:
    first = Store(default_registry(), tmp_path / "db")
    install(first, [V4, V6])
    a = first.create(SVC, svc("a", type="NodePort", ipFamilyPolicy="PreferDualStack"))["spec"]
    b = first.create(SVC, svc("b", type="LoadBalancer", externalTrafficPolicy="Local"))["spec"]
    first.close()
    second = Store(default_registry(), tmp_path / "db")
    alloc = install(second, [V4, V6], seed=0)  # the same seed would pick the same values again
    assert alloc.in_use() == {
        "IPv4": {a["clusterIPs"][0], b["clusterIP"]},
        "IPv6": {a["clusterIPs"][1]},
        PORTS: {a["ports"][0]["nodePort"], b["ports"][0]["nodePort"], b["healthCheckNodePort"]},
    }
    fresh = second.create(SVC, svc("c", type="NodePort", ipFamilyPolicy="PreferDualStack"))["spec"]
    assert not set(fresh["clusterIPs"]) & set(a["clusterIPs"] + b["clusterIPs"])
    err = error_of(lambda: second.create(SVC, svc("d", clusterIP=b["clusterIP"])))
    assert "provided IP is already allocated" in err.message
    second.delete(SVC, "default", "b")
    assert second.create(SVC, svc("d", clusterIP=b["clusterIP"]))["spec"]["clusterIP"] == b["clusterIP"]
    second.close()


def test_status_writes_allocate_nothing_even_after_the_cluster_lost_a_family(tmp_path: Path) -> None:
    first = Store(default_registry(), tmp_path / "db")
    install(first, [V4, V6])
    ips = first.create(SVC, svc("lb", type="LoadBalancer", ipFamilyPolicy="RequireDualStack"))["spec"]["clusterIPs"]
    first.close()
    second = Store(default_registry(), tmp_path / "db")
    alloc = install(second, [V4])  # restarted single-stack: the IPv6 address is simply not tracked
    assert alloc.in_use() == {
        "IPv4": {ips[0]},
        PORTS: {second.get(SVC, "default", "lb")["spec"]["ports"][0]["nodePort"]},
    }
    obj = second.get(SVC, "default", "lb")
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "172.18.255.200", "ipMode": "VIP"}]}}
    assert second.update(SVC, obj, subresource="status")["spec"]["clusterIPs"] == ips
    second.close()


# ---------------------------------------------------------------------------------- property


OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("create"),
            st.integers(0, 2),
            st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "Headless"]),
            st.sampled_from([None, "10.96.0.1", "10.96.0.2"]),
            st.sampled_from([None, 30000, 30001]),
            st.booleans(),
        ),
        st.tuples(st.just("retype"), st.integers(0, 2), st.sampled_from(["ClusterIP", "NodePort", "ExternalName"])),
        st.tuples(st.just("local"), st.integers(0, 2), st.booleans()),
        st.tuples(st.just("delete"), st.integers(0, 2)),
        st.tuples(st.just("restart")),
        st.tuples(st.just("poison")),
    ),
    max_size=25,
)


def _make(name: str, type_: str, ip: str | None, node_port: int | None, dual: bool) -> Obj:
    spec: dict[str, Any] = {"type": type_, "ports": [{"port": 80}]}
    if type_ == "ExternalName":
        spec["externalName"] = "example.com"
    elif type_ == "Headless":
        spec.update(type="ClusterIP", clusterIP="None")
    else:
        if ip:
            spec["clusterIP"] = ip
        if dual:
            spec["ipFamilyPolicy"] = "PreferDualStack"
    if node_port and type_ in ("NodePort", "LoadBalancer"):
        spec["ports"][0]["nodePort"] = node_port
    return svc(name, **spec)


def _retype(obj: Obj, type_: str, local: bool | None) -> Obj:
    spec = obj["spec"]
    if local is not None:
        if spec.get("type") != "LoadBalancer":
            return obj
        spec["externalTrafficPolicy"] = "Local" if local else "Cluster"
        return obj
    ports = spec.get("ports") or [{"port": 80}]
    if type_ == "ExternalName":
        obj["spec"] = {"type": type_, "externalName": "example.com", "ports": ports}
    elif spec.get("type") == "ExternalName":
        obj["spec"] = {"type": type_, "ports": ports}
    else:
        spec["type"] = type_
        spec.pop("externalTrafficPolicy", None)
    return obj


def _check(store: Store, alloc: Allocators) -> None:
    seen: dict[tuple[str, int], str] = {}
    expected: set[tuple[str, int]] = set()
    for obj in store.iter_objects(SVC):
        key = f"default/{obj['metadata']['name']}"
        for holding in alloc.holdings_of(obj):
            assert holding not in seen, f"{holding} held by {seen.get(holding)} and {key}"
            seen[holding] = key
            expected.add(holding)
    actual = {(name, alloc._pool(name).index(v)) for name, values in alloc.in_use().items() for v in values}
    assert actual == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_no_double_allocation_under_any_sequence(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "db"
        store = Store(default_registry(), path)

        def make(s: Store) -> Allocators:  # a tiny node-port range makes collisions likely
            return install(s, [V4, V6], seed=len(ops), node_port_range=(30000, 30009))

        alloc = make(store)
        poisoned: list[bool] = []

        def refuse_once(op: str, kind: Kind, new: Obj, old: Obj | None, dry_run: bool) -> None:
            if kind.kind == "Service" and poisoned:  # a later admission step failing the write
                poisoned.clear()
                raise Invalid("Service", new["metadata"]["name"], [])

        store.admission.append(refuse_once)
        for op in ops:
            name = f"s{op[1]}" if len(op) > 1 else ""
            try:
                if op[0] == "create":
                    store.create(SVC, _make(name, *op[2:]))
                elif op[0] == "retype":
                    store.update(SVC, _retype(store.get(SVC, "default", name), op[2], None))
                elif op[0] == "local":
                    store.update(SVC, _retype(store.get(SVC, "default", name), "", op[2]))
                elif op[0] == "delete":
                    store.delete(SVC, "default", name)
                elif op[0] == "poison":
                    poisoned.append(True)
                else:
                    store.close()
                    store = Store(default_registry(), path)
                    alloc = make(store)
                    store.admission.append(refuse_once)
            except StatusError:
                pass
            _check(store, alloc)
        store.close()

"""The snapshot cache reuses unchanged Services' ports and names the ones that changed."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kubewire.dataplane.proxy.model import NodeContext, SnapshotCache, build_snapshot

NODE = NodeContext("n1", "zone-a", ("172.18.0.2",), ("10.244.0.0/16",))


def svc(name: str, rv: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "default", "name": name, "resourceVersion": rv},
        "spec": {"clusterIPs": [ip], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }


def eps(name: str, rv: str, *ips: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "default",
            "name": f"{name}-abc",
            "resourceVersion": rv,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
    }


def test_unchanged_services_keep_their_port_objects_and_changes_are_named() -> None:
    cache = SnapshotCache(4)
    services = [svc("a", "1", "10.96.0.1"), svc("b", "2", "10.96.0.2")]
    slices = [eps("a", "3", "10.244.0.5"), eps("b", "4", "10.244.1.5")]
    first, changed = cache.build(services, slices, NODE)
    assert changed == {"default/a", "default/b"}
    assert first == build_snapshot(services, slices, NODE, 4)

    again, changed = cache.build(services, slices, NODE)
    assert changed == set()
    assert all(x is y for x, y in zip(first.services, again.services, strict=True))

    slices[1] = eps("b", "9", "10.244.1.5", "10.244.2.5")
    third, changed = cache.build(services, slices, NODE)
    assert changed == {"default/b"}
    assert third.services[0] is first.services[0]
    assert len(third.by_key()["default/b:http"].endpoints) == 2

    fourth, changed = cache.build(services[:1], slices, NODE)
    assert changed == {"default/b"} and [s.name for s in fourth.services] == ["a"]


def test_update_reads_only_the_named_services_and_keeps_the_order() -> None:
    cache = SnapshotCache(4)
    services = {n: svc(n, "1", f"10.96.0.{i + 1}") for i, n in enumerate("acegi")}
    slices = {n: eps(n, "2", f"10.244.0.{i + 1}") for i, n in enumerate("acegi")}
    cache.build(services.values(), slices.values(), NODE)
    reads: list[tuple[str, str]] = []

    def service_of(key: tuple[str, str]) -> dict[str, Any] | None:
        reads.append(key)
        return services.get(key[1])

    services["d"] = svc("d", "3", "10.96.0.9")  # new, sorts in the middle
    slices["g"] = eps("g", "4", "10.244.9.9", "10.244.9.8")
    del services["a"]
    snap, changed = cache.update(
        [("default", "d"), ("default", "g"), ("default", "a")],
        service_of,
        lambda key: [slices[key[1]]] if key[1] in slices else [],
        NODE,
    )
    assert sorted(reads) == [("default", "a"), ("default", "d"), ("default", "g")]
    assert changed == {"default/a", "default/d", "default/g"}
    assert snap == build_snapshot(services.values(), slices.values(), NODE, 4)
    assert [sp.key for sp in cache.previous["default/g"]] == ["default/g:http"]
    assert cache.previous["default/d"] == []


@st.composite
def _histories(draw: st.DrawFn) -> list[list[tuple[str, str, int]]]:
    """Rounds of changes: (what, name, value) with what in service / endpoints / delete / relabel."""
    names = st.sampled_from(["a", "b", "c", "d", "e"])
    step = st.tuples(st.sampled_from(["service", "endpoints", "delete", "ports"]), names, st.integers(0, 3))
    return draw(st.lists(st.lists(step, max_size=4), min_size=1, max_size=6))


@settings(max_examples=150, deadline=None)
@given(_histories())
def test_incremental_updates_equal_a_fresh_build(history: list[list[tuple[str, str, int]]]) -> None:
    services: dict[str, dict[str, Any]] = {}
    slices: dict[str, dict[str, Any]] = {}
    cache = SnapshotCache(4)
    cache.build([], [], NODE)
    rv = 0
    for round_ in history:
        touched: set[tuple[str, str]] = set()
        for what, name, value in round_:
            rv += 1
            touched.add(("default", name))
            if what == "service":
                services[name] = svc(name, str(rv), f"10.96.{value}.{ord(name)}")
            elif what == "ports" and name in services:
                services[name] = svc(name, str(rv), services[name]["spec"]["clusterIPs"][0])
                services[name]["spec"]["ports"] += [{"name": f"p{i}", "port": 90 + i} for i in range(value)]
            elif what == "endpoints":
                slices[name] = eps(name, str(rv), *(f"10.244.{value}.{i}" for i in range(value)))
            else:
                services.pop(name, None)
        snap, _ = cache.update(
            touched,
            lambda key: services.get(key[1]),
            lambda key: [slices[key[1]]] if key[1] in slices else [],
            NODE,
        )
        assert snap == build_snapshot(services.values(), slices.values(), NODE, 4)
        assert snap == SnapshotCache(4).build(services.values(), slices.values(), NODE)[0]

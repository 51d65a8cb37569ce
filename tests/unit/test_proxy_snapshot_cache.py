"""The snapshot cache reuses unchanged Services' ports and names the ones that changed."""

from __future__ import annotations

from typing import Any

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

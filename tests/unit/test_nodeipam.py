"""Node IPAM (range allocator): one pod CIDR per cluster CIDR for every Node, never twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from kubewire.api.core import NODE
from kubewire.api.registry import Obj
from kubewire.client.local import LocalClient
from kubewire.controllers.nodeipam import NodeIPAMController
from kubewire.controllers.runtime import Caches, Manager, Patch, Plan, RecordEvent
from kubewire.store.informer import Informer, ListWatch, WatchEvent
from kubewire.store.store import Store
from tests.conftest import kind

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EVENT = kind("events")


def node(name: str, *cidrs: str) -> Obj:
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "1"},
        "spec": {},
    }
    if cidrs:
        obj["spec"] = {"podCIDR": cidrs[0], "podCIDRs": list(cidrs)}
    return obj


class World:
    """A hand-built Node informer cache."""

    def __init__(self, *nodes: Obj) -> None:
        self.informer = Informer(cast(ListWatch, None), NODE)
        self.caches = Caches({NODE.resource_key: self.informer})
        for n in nodes:
            self.put(n)

    def put(self, obj: Obj) -> None:
        self.informer.apply_event(WatchEvent("ADDED", obj))

    def drop(self, name: str) -> None:
        self.informer.apply_event(WatchEvent("DELETED", node(name)))

    def apply(self, plan: Plan) -> None:
        """What the writer would do, made visible in the cache."""
        for action in plan.actions:
            if isinstance(action, Patch):
                obj = self.informer.get(action.name)
                assert obj is not None
                rv = str(int(obj["metadata"].get("resourceVersion", "1")) + 1)
                meta = {**obj["metadata"], "resourceVersion": rv}
                self.put({**obj, "metadata": meta, "spec": {**obj.get("spec", {}), **action.body["spec"]}})


def cidrs_of(plan: Plan) -> list[str]:
    patches = [a for a in plan.actions if isinstance(a, Patch)]
    assert len(patches) == 1, plan
    assert patches[0].body["spec"]["podCIDR"] == patches[0].body["spec"]["podCIDRs"][0]
    return cast(list[str], patches[0].body["spec"]["podCIDRs"])


def test_a_node_without_pod_cidrs_gets_the_first_free_subnet() -> None:
    world = World(node("a"))
    plan = NodeIPAMController(["10.244.0.0/16"]).reconcile("a", world.caches, NOW)
    patch = plan.actions[0]
    assert isinstance(patch, Patch) and (patch.kind, patch.namespace, patch.name) == (NODE, "", "a")
    assert patch.body == {"spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}}


def test_held_subnets_are_skipped_and_nodes_with_cidrs_are_left_alone() -> None:
    world = World(node("a", "10.244.0.0/24"), node("b", "10.244.1.0/24"), node("c"))
    ctrl = NodeIPAMController(["10.244.0.0/16"])
    assert not ctrl.reconcile("a", world.caches, NOW)
    assert cidrs_of(ctrl.reconcile("c", world.caches, NOW)) == ["10.244.2.0/24"]
    assert not ctrl.reconcile("gone", world.caches, NOW)


def test_back_to_back_nodes_on_a_stale_cache_get_distinct_subnets() -> None:
    world = World(node("a"), node("b"))
    ctrl = NodeIPAMController(["10.244.0.0/16"])
    first = cidrs_of(ctrl.reconcile("a", world.caches, NOW))
    second = cidrs_of(ctrl.reconcile("b", world.caches, NOW))
    assert first != second
    # a retry (the patch failed, the key came back) proposes the same subnet again
    assert cidrs_of(ctrl.reconcile("a", world.caches, NOW)) == first
    assert ctrl.pending == {"a": first, "b": second}


def test_pending_goes_once_the_cache_shows_the_patch_or_the_node_is_gone() -> None:
    world = World(node("a"), node("b"))
    ctrl = NodeIPAMController(["10.244.0.0/16"])
    plan_a = ctrl.reconcile("a", world.caches, NOW)
    ctrl.reconcile("b", world.caches, NOW)
    world.apply(plan_a)
    world.drop("b")
    world.put(node("c"))
    cidrs_of(ctrl.reconcile("c", world.caches, NOW))
    assert set(ctrl.pending) == {"c"}


def test_exhausted_range_records_cidr_not_available_and_freed_subnets_are_reused() -> None:
    world = World(node("a"), node("b"), node("c"))
    ctrl = NodeIPAMController(["10.244.0.0/24"], [25])  # room for two nodes
    assert cidrs_of(ctrl.reconcile("a", world.caches, NOW)) == ["10.244.0.0/25"]
    assert cidrs_of(ctrl.reconcile("b", world.caches, NOW)) == ["10.244.0.128/25"]
    plan = ctrl.reconcile("c", world.caches, NOW)
    events = [a for a in plan.actions if isinstance(a, RecordEvent)]
    assert len(events) == len(plan.actions)
    assert [(e.type, e.reason, e.message, e.involved["metadata"]["name"]) for e in events] == [
        ("Normal", "CIDRNotAvailable", "Node c status is now: CIDRNotAvailable", "c")
    ]
    assert "c" not in ctrl.pending
    world.drop("a")
    assert cidrs_of(ctrl.reconcile("c", world.caches, NOW)) == ["10.244.0.0/25"]


def test_dual_stack_gives_one_subnet_per_family_in_cluster_cidr_order() -> None:
    world = World(node("a", "10.244.0.0/24", "fd00:10:244::/64"), node("b"))
    ctrl = NodeIPAMController(["10.244.0.0/16", "fd00:10:244::/56"])
    assert cidrs_of(ctrl.reconcile("b", world.caches, NOW)) == ["10.244.1.0/24", "fd00:10:244:1::/64"]
    v6first = NodeIPAMController(["fd00:10:244::/56", "10.244.0.0/16"], [64, 24])
    assert cidrs_of(v6first.reconcile("b", World(node("b")).caches, NOW)) == ["fd00:10:244::/64", "10.244.0.0/24"]


def test_subnets_overlapping_the_service_cidr_are_never_handed_out() -> None:
    world = World(node("a"))
    ctrl = NodeIPAMController(["10.0.0.0/16"], service_cidrs=["10.0.0.0/23"])
    assert cidrs_of(ctrl.reconcile("a", world.caches, NOW)) == ["10.0.2.0/24"]


def test_a_restarted_controller_rebuilds_from_the_cache() -> None:
    world = World(node("a", "10.244.0.0/24"), node("b", "10.244.1.0/24"), node("c"))
    assert cidrs_of(NodeIPAMController(["10.244.0.0/16"]).reconcile("c", world.caches, NOW)) == ["10.244.2.0/24"]


@pytest.mark.parametrize(
    ("cidrs", "masks"),
    [
        (["10.244.0.0/16"], [8]),
        (["fd00::/40"], [64]),  # upstream: no more than 2^16 subnets per IPv6 range
        (["10.0.0.0/16", "10.1.0.0/16"], None),
        (["10.0.0.0/16"], [24, 64]),
    ],
)
def test_invalid_configurations_are_refused(cidrs: list[str], masks: list[int] | None) -> None:
    with pytest.raises(ValueError):
        NodeIPAMController(cidrs, masks)


async def test_manager_assigns_distinct_cidrs_through_the_store(store: Store) -> None:
    client = LocalClient(store)
    manager = Manager(client, store.registry, [NodeIPAMController(["10.244.0.0/16", "fd00:10:244::/56"])])
    await manager.start()
    try:
        for name in ("n1", "n2", "n3"):
            await client.create(NODE, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        await manager.wait_idle()
        specs: list[dict[str, Any]] = [store.get(NODE, "", n)["spec"] for n in ("n1", "n2", "n3")]
        assigned = [tuple(s["podCIDRs"]) for s in specs]
        assert len(set(assigned)) == 3 and all(len(c) == 2 for c in assigned)
        assert all(s["podCIDR"] == s["podCIDRs"][0] for s in specs)
        assert manager.errors() == {"nodeipam": {}}
        assert store.list_objects(EVENT) == []
    finally:
        await manager.stop()

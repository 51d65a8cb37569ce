"""The scheduler from hand-built informer state, and end to end over a Store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kubewire.client.local import LocalClient
from kubewire.controllers.runtime import Bind, Caches, Controller, Manager, Patch, RecordEvent
from kubewire.controllers.scheduler import Scheduler, fit_error
from kubewire.store.informer import Informer, WatchEvent
from kubewire.store.store import Store
from tests.conftest import kind

POD = kind("pods")
NODE = kind("nodes")
EVENT = kind("events")
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
Obj = dict[str, Any]


def caches_for(controller: Controller, objects: Iterable[Obj]) -> Caches:
    """Informer caches filled by hand, with the controller's indexes."""
    informers: dict[str, Informer] = {}
    for k in controller.watches():
        informers[k.resource_key] = Informer(None, k)  # type: ignore[arg-type]
    for k, indexes in controller.indexers().items():
        informer = informers.setdefault(k.resource_key, Informer(None, k))  # type: ignore[arg-type]
        for name, fn in indexes.items():
            informer.add_indexer(name, fn)
    by_kind = {(k.api_version, k.kind): i for i in informers.values() for k in [i.kind]}
    for obj in objects:
        by_kind[(obj["apiVersion"], obj["kind"])].apply_event(WatchEvent("ADDED", obj))
    return Caches(informers)


def node(name: str, ready: str | None = "True", labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    status: Obj = {}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {}},
        "spec": spec,
        "status": status,
    }


def pod(name: str, node_name: str = "", owner: str = "", **spec: Any) -> Obj:
    meta: Obj = {"name": name, "namespace": "default", "uid": f"uid-{name}"}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}
        ]
    body: Obj = {"containers": [{"name": "c", "image": "nginx"}], **spec}
    if node_name:
        body["nodeName"] = node_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body, "status": {"phase": "Pending"}}


def binds(plan_actions: list[Any]) -> list[str]:
    return [a.node for a in plan_actions if isinstance(a, Bind)]


def test_binds_to_the_node_with_fewest_pods_of_the_same_owner() -> None:
    objs = [
        node("a"),
        node("b"),
        node("c"),
        pod("rs-1", "a", owner="rs"),
        pod("rs-2", "b", owner="rs"),
        pod("x-1", "c"),
        pod("x-2", "c"),
        pod("new", owner="rs"),
    ]
    s = Scheduler()
    plan = s.reconcile("default/new", caches_for(s, objs), NOW)
    assert binds(plan.actions) == ["c"]  # c has more pods, but none of this ReplicaSet
    bind = plan.actions[0]
    assert isinstance(bind, Bind) and (bind.namespace, bind.name, bind.uid) == ("default", "new", "uid-new")
    event = plan.actions[1]
    assert isinstance(event, RecordEvent)
    assert (event.type, event.reason, event.message) == (
        "Normal",
        "Scheduled",
        "Successfully assigned default/new to c",
    )


def test_ties_break_on_total_pods_then_name() -> None:
    s = Scheduler()
    objs = [node("b"), node("a"), node("c"), pod("p1", "a"), pod("new")]
    assert binds(s.reconcile("default/new", caches_for(s, objs), NOW).actions) == ["b"]
    finished = pod("done", "b")
    finished["status"]["phase"] = "Succeeded"  # finished pods hold no room
    objs = [node("a"), node("b"), pod("p1", "a"), finished, pod("new")]
    assert binds(s.reconcile("default/new", caches_for(s, objs), NOW).actions) == ["b"]


def test_leaves_bound_foreign_and_missing_pods_alone() -> None:
    s = Scheduler()
    objs = [node("a"), pod("bound", "a"), pod("other", schedulerName="my-scheduler")]
    c = caches_for(s, objs)
    assert not s.reconcile("default/bound", c, NOW)
    assert not s.reconcile("default/other", c, NOW)
    assert not s.reconcile("default/missing", c, NOW)
    mine = Scheduler("my-scheduler")
    assert binds(mine.reconcile("default/other", caches_for(mine, objs), NOW).actions) == ["a"]


def test_unschedulable_pod_gets_condition_and_event_in_upstream_words() -> None:
    not_ready = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
    objs = [
        node("a", labels={"disk": "hdd"}),
        node("b", ready="False", taints=[not_ready]),
        node("c", ready="False"),  # no taint yet: treated as carrying it
        pod("new", nodeSelector={"disk": "ssd"}),
    ]
    s = Scheduler()
    plan = s.reconcile("default/new", caches_for(s, objs), NOW)
    expected = (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "2 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )
    patch, event = plan.actions
    assert isinstance(patch, Patch) and patch.subresource == "status" and patch.patch_type == "strategic"
    cond = patch.body["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == (
        "PodScheduled",
        "False",
        "Unschedulable",
        expected,
    )
    assert isinstance(event, RecordEvent)
    assert (event.type, event.reason, event.message) == ("Warning", "FailedScheduling", expected)
    assert plan.requeue_after == 300.0
    # Already saying so: nothing is written again.
    objs[-1]["status"]["conditions"] = [cond]
    again = s.reconcile("default/new", caches_for(s, objs), NOW)
    assert again.actions == [] and again.requeue_after == 300.0


def test_no_nodes_message() -> None:
    s = Scheduler()
    plan = s.reconcile("default/new", caches_for(s, [pod("new")]), NOW)
    assert isinstance(plan.actions[1], RecordEvent)
    assert plan.actions[1].message == "no nodes available to schedule pods"


def test_tolerations_and_unschedulable_nodes() -> None:
    s = Scheduler()
    gpu = {"key": "gpu", "value": "yes", "effect": "NoSchedule"}
    objs = [node("a", unschedulable=True), node("b", taints=[gpu]), pod("new")]
    plan = s.reconcile("default/new", caches_for(s, objs), NOW)
    assert plan.actions[1].message.startswith(  # type: ignore[union-attr]
        "0/2 nodes are available: 1 node(s) had untolerated taint {gpu: yes}, 1 node(s) were unschedulable."
    )
    tolerant = pod(
        "tolerant", tolerations=[{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]
    )
    assert binds(s.reconcile("default/tolerant", caches_for(s, [*objs, tolerant]), NOW).actions) == ["b"]
    anything = pod("anything", tolerations=[{"operator": "Exists"}])
    plan = s.reconcile("default/anything", caches_for(s, [*objs, anything]), NOW)
    assert binds(plan.actions) == ["a"]  # tolerating everything includes node.kubernetes.io/unschedulable


def test_required_node_affinity_operators_and_match_fields() -> None:
    s = Scheduler()
    nodes = [node("a", labels={"zone": "z1", "cores": "4"}), node("b", labels={"zone": "z2", "cores": "16"}), node("c")]

    def place(*terms: Obj) -> list[str]:
        affinity = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}
        }
        c = caches_for(s, [*nodes, pod("p", affinity=affinity)])
        return binds(s.reconcile("default/p", c, NOW).actions)

    assert place({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}) == ["c"]
    assert place({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}) == ["b"]
    assert place({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["8"]}]}) == ["a"]
    assert place({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}) == ["c"]
    assert place({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["z1", "z2"]}]}) == ["c"]
    assert place(
        {
            "matchExpressions": [
                {"key": "zone", "operator": "Exists"},
                {"key": "zone", "operator": "In", "values": ["z2"]},
            ]
        }
    ) == ["b"]
    # Terms are ORed: the first matches nothing, the second matches a.
    assert place(
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z9"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]},
    ) == ["a"]
    assert place({}) == []  # an empty term matches no node


def test_pod_count_and_host_port_limits() -> None:
    s = Scheduler()
    full = node("a")
    full["status"]["allocatable"] = {"pods": "1"}
    web = pod("web", "b", containers=[{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}])
    new = pod("new", containers=[{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}])
    objs = [full, node("b"), pod("p1", "a"), web, new]
    plan = s.reconcile("default/new", caches_for(s, objs), NOW)
    assert plan.actions[1].message == (  # type: ignore[union-attr]
        "0/2 nodes are available: 1 Too many pods, 1 node(s) didn't have free ports for the requested pod ports. "
        "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    )


def test_fit_error_mixes_preemption_verdicts() -> None:
    message = fit_error(3, {"a": "Too many pods", "b": "node(s) were unschedulable", "c": "node(s) were unschedulable"})
    assert message == (
        "0/3 nodes are available: 1 Too many pods, 2 node(s) were unschedulable. preemption: 0/3 nodes are "
        "available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    )


def test_node_events_requeue_pending_pods() -> None:
    s = Scheduler()
    c = caches_for(s, [node("a", ready="False"), pod("p1"), pod("p2"), pod("bound", "a")])
    watches = s.watches()
    assert list(watches[NODE](node("a"))) == []  # before the first reconcile: pods enqueue themselves
    s.reconcile("default/p1", c, NOW)
    assert sorted(watches[NODE](node("a"))) == ["default/p1", "default/p2"]
    assert list(watches[POD](pod("p1"))) == ["default/p1"]
    assert list(watches[POD](pod("bound", "a"))) == []
    leaving = pod("bound", "a")
    leaving["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    assert sorted(watches[POD](leaving)) == ["default/p1", "default/p2"]  # its room is being freed


async def test_manager_binds_and_spreads_pending_pods(store: Store) -> None:
    client = LocalClient(store)
    manager = Manager(client, store.registry, [Scheduler()], component="default-scheduler")
    for name in ("n1", "n2", "n3"):
        created = store.create(NODE, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        created["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        store.update(NODE, created, subresource="status")
    store.create(NODE, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n4"}})  # never ready
    await manager.start()
    try:
        for i in range(6):
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"p{i}", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            }
            await client.create(POD, body)
        await manager.wait_idle()
        pods = store.list_objects(POD)
        placement = sorted(p["spec"].get("nodeName", "") for p in pods)
        assert placement == ["n1", "n1", "n2", "n2", "n3", "n3"]
        assert all(
            c["status"] == "True" for p in pods for c in p["status"]["conditions"] if c["type"] == "PodScheduled"
        )
        reasons = [e["reason"] for e in store.list_objects(EVENT)]
        assert reasons.count("Scheduled") == 6
        # A pod that fits nowhere stays Pending with the reason; a node becoming ready lets it in.
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "picky", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeSelector": {"pool": "late"}},
        }
        await client.create(POD, body)
        await manager.wait_idle()
        picky = store.get(POD, "default", "picky")
        assert "nodeName" not in picky["spec"]
        cond = next(c for c in picky["status"]["conditions"] if c["type"] == "PodScheduled")
        assert cond["reason"] == "Unschedulable" and cond["message"].startswith("0/4 nodes are available:")
        n4 = store.get(NODE, "", "n4")
        n4["metadata"]["labels"] = {"pool": "late"}
        n4 = store.update(NODE, n4)
        n4["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        store.update(NODE, n4, subresource="status")
        await manager.wait_idle()
        assert store.get(POD, "default", "picky")["spec"]["nodeName"] == "n4"
        assert manager.errors() == {"scheduler": {}}
    finally:
        await manager.stop()

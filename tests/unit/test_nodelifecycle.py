"""Node lifecycle and taint eviction from hand-built informer state with an injected clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kubewire.api.meta import now_rfc3339
from kubewire.client.local import LocalClient
from kubewire.controllers import taints as tt
from kubewire.controllers.nodelifecycle import NodeLifecycleController
from kubewire.controllers.runtime import Delete, Manager, Patch, Plan, RecordEvent
from kubewire.errors import Invalid
from kubewire.store import podadmission
from kubewire.store.store import Store
from tests.conftest import kind
from tests.unit.test_scheduler import NOW, caches_for

POD = kind("pods")
NODE = kind("nodes")
LEASE = kind("leases")
EVENT = kind("events")
Obj = dict[str, Any]
DEFAULT_TOLERATIONS = [
    {"key": tt.TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": tt.TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]


def ts(seconds_ago: float) -> str:
    return now_rfc3339(NOW - timedelta(seconds=seconds_ago))


def node(heartbeat_ago: float = 0, ready: str = "True", taints: list[Obj] | None = None, **spec: Any) -> Obj:
    conds = [
        {"type": t, "status": s, "lastHeartbeatTime": ts(heartbeat_ago), "lastTransitionTime": ts(3600)}
        for t, s in (("MemoryPressure", "False"), ("DiskPressure", "False"), ("PIDPressure", "False"), ("Ready", ready))
    ]
    if taints:
        spec["taints"] = taints
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "uid": "uid-n1", "resourceVersion": "7", "creationTimestamp": ts(7200)},
        "spec": spec,
        "status": {"conditions": conds},
    }


def lease(renewed_ago: float) -> Obj:
    renew = (NOW - timedelta(seconds=renewed_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": renew},
    }


def pod(name: str, ready: bool = True, tolerations: list[Obj] | None = None, created_ago: float = 3600) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp": ts(created_ago)},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}], "tolerations": tolerations or []},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ts(1800)}],
        },
    }


def run(*objs: Obj, grace: float = 50.0) -> Plan:
    c = NodeLifecycleController(grace_period=grace)
    return c.reconcile("n1", caches_for(c, objs), NOW)


def of(plan: Plan, kind_: type) -> list[Any]:
    return [a for a in plan.actions if isinstance(a, kind_)]


def node_patches(plan: Plan) -> tuple[Patch | None, Patch | None]:
    spec = [p for p in of(plan, Patch) if p.kind is NODE and not p.subresource]
    status = [p for p in of(plan, Patch) if p.kind is NODE and p.subresource == "status"]
    return (spec[0] if spec else None), (status[0] if status else None)


def test_healthy_node_sets_a_timer_for_the_grace_period() -> None:
    plan = run(node(heartbeat_ago=60), lease(renewed_ago=10))  # the lease is the fresher heartbeat
    assert plan.actions == []
    assert plan.requeue_after is not None and abs(plan.requeue_after - 40.0) < 0.01


def test_heartbeats_stop_conditions_go_unknown_and_node_is_tainted_unreachable() -> None:
    plan = run(node(heartbeat_ago=61), lease(renewed_ago=51))
    spec, status = node_patches(plan)
    assert status is not None and status.patch_type == "strategic"
    conds = {c["type"]: c for c in status.body["status"]["conditions"]}
    assert set(conds) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    for cond in conds.values():
        assert (cond["status"], cond["reason"], cond["message"]) == (
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        )
        assert cond["lastTransitionTime"] == now_rfc3339(NOW) and cond["lastHeartbeatTime"] == ts(61)
    assert spec is not None and spec.body["metadata"]["resourceVersion"] == "7"
    assert spec.body["spec"]["taints"] == [
        {"key": tt.TAINT_UNREACHABLE, "effect": "NoSchedule"},
        {"key": tt.TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": now_rfc3339(NOW)},
    ]
    events = of(plan, RecordEvent)
    assert [(e.involved["kind"], e.type, e.reason, e.message) for e in events] == [
        ("Node", "Normal", "NodeNotReady", "Node n1 status is now: NodeNotReady")
    ]
    assert plan.requeue_after is None


def test_just_inside_the_grace_period_nothing_happens() -> None:
    plan = run(node(heartbeat_ago=50))
    assert plan.actions == [] and plan.requeue_after is not None and plan.requeue_after < 0.01


def test_kubelet_reporting_not_ready_gives_not_ready_taints() -> None:
    plan = run(node(ready="False"))
    spec, status = node_patches(plan)
    assert status is None  # the kubelet is posting: its conditions stand
    assert spec is not None
    assert [(t["key"], t["effect"]) for t in spec.body["spec"]["taints"]] == [
        (tt.TAINT_NOT_READY, "NoSchedule"),
        (tt.TAINT_NOT_READY, "NoExecute"),
    ]


def test_recovery_removes_only_the_controllers_taints() -> None:
    own = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    unreachable = [
        {"key": tt.TAINT_UNREACHABLE, "effect": "NoSchedule"},
        {"key": tt.TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": ts(100)},
    ]
    plan = run(node(taints=[own, *unreachable]), lease(1))
    spec, _ = node_patches(plan)
    assert spec is not None and spec.body["spec"]["taints"] == [own]
    assert of(plan, RecordEvent) == []
    plan = run(node(taints=unreachable))
    spec, _ = node_patches(plan)
    assert spec is not None and spec.body["spec"]["taints"] is None  # the field is removed


def test_cordoned_and_pressured_nodes_get_no_schedule_taints() -> None:
    n = node(unschedulable=True)
    n["status"]["conditions"][1]["status"] = "True"  # DiskPressure
    spec, _ = node_patches(run(n))
    assert spec is not None
    assert [t["key"] for t in spec.body["spec"]["taints"]] == [tt.TAINT_DISK_PRESSURE, tt.TAINT_UNSCHEDULABLE]


def test_node_never_posting_gets_never_updated_conditions() -> None:
    n = node()
    n["status"] = {}
    plan = run(n)
    _, status = node_patches(plan)
    assert status is not None
    reasons = {c["type"]: (c["status"], c["reason"], c["message"]) for c in status.body["status"]["conditions"]}
    assert reasons["Ready"] == ("Unknown", "NodeStatusNeverUpdated", "Kubelet never posted node status.")


def test_pods_of_an_unreachable_node_are_marked_not_ready() -> None:
    plan = run(node(heartbeat_ago=120), pod("a"), pod("b", ready=False))
    pod_patches = [p for p in of(plan, Patch) if p.kind is POD]
    assert [p.name for p in pod_patches] == ["a"]
    cond = pod_patches[0].body["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["lastTransitionTime"]) == ("Ready", "False", now_rfc3339(NOW))
    assert pod_patches[0].subresource == "status"
    pod_events = [(e.type, e.reason, e.message) for e in of(plan, RecordEvent) if e.involved["kind"] == "Pod"]
    assert pod_events == [("Warning", "NodeNotReady", "Node is not ready")]


def test_a_pod_made_ready_after_the_node_went_not_ready_is_left_alone() -> None:
    n = node(ready="False")
    n["status"]["conditions"][3]["lastTransitionTime"] = ts(3600)
    n["spec"]["taints"] = [
        {"key": tt.TAINT_NOT_READY, "effect": "NoSchedule"},
        {"key": tt.TAINT_NOT_READY, "effect": "NoExecute", "timeAdded": ts(3600)},
    ]
    p = pod("late", tolerations=[{"operator": "Exists"}])  # Ready since 1800s ago, node not ready since 3600s
    assert run(n, p).actions == []


def test_untolerated_no_execute_taint_evicts_at_once() -> None:
    taints = [
        {"key": tt.TAINT_UNREACHABLE, "effect": "NoSchedule"},
        {"key": tt.TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": ts(1)},
    ]
    plan = run(node(heartbeat_ago=120, taints=taints), pod("bare", ready=False))
    deletes = of(plan, Delete)
    assert [(d.namespace, d.name, d.uid) for d in deletes] == [("default", "bare", "uid-bare")]
    events = [(e.type, e.reason, e.message) for e in of(plan, RecordEvent) if e.reason == "TaintManagerEviction"]
    assert events == [("Normal", "TaintManagerEviction", "Marking for deletion Pod default/bare")]
    target = next(p for p in of(plan, Patch) if p.kind is POD).body["status"]["conditions"][0]
    assert (target["type"], target["reason"]) == ("DisruptionTarget", "DeletionByTaintManager")


def test_default_tolerations_evict_after_300_seconds() -> None:
    taints = [{"key": tt.TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": ts(100)}]
    n = node(heartbeat_ago=200, taints=taints)
    n["status"]["conditions"] = [{**c, "status": "Unknown"} for c in n["status"]["conditions"]]
    plan = run(n, pod("web", ready=False, tolerations=DEFAULT_TOLERATIONS))
    assert of(plan, Delete) == []
    assert plan.requeue_after is not None and abs(plan.requeue_after - 200.0) < 0.01
    taints[0]["timeAdded"] = ts(300)
    plan = run(n, pod("web", ready=False, tolerations=DEFAULT_TOLERATIONS))
    assert [d.name for d in of(plan, Delete)] == ["web"]
    # Tolerated forever (no tolerationSeconds): never evicted; terminating pods are not deleted twice.
    forever = [{"key": tt.TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]
    going = pod("going", ready=False)
    going["metadata"]["deletionTimestamp"] = ts(0)
    assert of(run(n, pod("ds", ready=False, tolerations=forever), going), Delete) == []


def test_no_execute_taint_on_a_ready_node_still_evicts() -> None:
    taints = [{"key": "maintenance", "effect": "NoExecute", "timeAdded": ts(5)}]
    plan = run(node(taints=taints), pod("a"), pod("b", tolerations=[{"key": "maintenance", "operator": "Exists"}]))
    assert [d.name for d in of(plan, Delete)] == ["a"]
    assert [p for p in of(plan, Patch) if p.kind is NODE] == []


def test_watches_map_leases_and_pods_to_their_node() -> None:
    w = NodeLifecycleController().watches()
    assert list(w[LEASE](lease(0))) == ["n1"]
    other = {**lease(0), "metadata": {"name": "leader", "namespace": "kube-system"}}
    assert list(w[LEASE](other)) == []
    assert list(w[POD](pod("a"))) == ["n1"]


def poke(store: Store, value: str) -> None:
    """Touch the node so the controller looks again now (the test's clock jumps; the Manager's
    timers run on the event loop's clock)."""
    n1 = store.get(NODE, "", "n1")
    n1["metadata"]["labels"] = {"poke": value}
    store.update(NODE, n1)


async def test_manager_marks_node_unknown_and_evicts_after_the_toleration(store: Store) -> None:
    """End to end over a Store with a controllable clock: heartbeat stops, the node goes Unknown and
    is tainted, its pods go not ready, and after 300s they are evicted."""
    clock = [NOW]
    store.clock = lambda: clock[0]
    podadmission.install(store)
    client = LocalClient(store)
    created = store.create(NODE, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    created["status"] = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": now_rfc3339(NOW),
                "lastTransitionTime": now_rfc3339(NOW),
            }
        ]
    }
    store.update(NODE, created, subresource="status")
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }
    store.create(POD, body)
    store.bind("default", "web", "n1")
    live = store.get(POD, "default", "web")
    live["status"]["conditions"].append({"type": "Ready", "status": "True", "lastTransitionTime": now_rfc3339(NOW)})
    store.update(POD, live, subresource="status")

    manager = Manager(client, store.registry, [NodeLifecycleController()], clock=lambda: clock[0])
    await manager.start()
    try:
        await manager.wait_idle()
        assert "taints" not in store.get(NODE, "", "n1").get("spec", {})
        clock[0] = NOW + timedelta(seconds=51)
        poke(store, "1")
        await manager.wait_idle()
        n1 = store.get(NODE, "", "n1")
        assert [t["key"] for t in n1["spec"]["taints"]] == [tt.TAINT_UNREACHABLE, tt.TAINT_UNREACHABLE]
        assert n1["status"]["conditions"][0]["status"] == "Unknown"
        web = store.get(POD, "default", "web")
        assert next(c for c in web["status"]["conditions"] if c["type"] == "Ready")["status"] == "False"
        clock[0] = NOW + timedelta(seconds=51 + 301)
        poke(store, "2")
        await manager.wait_idle()
        web = store.get(POD, "default", "web")
        assert web["metadata"].get("deletionTimestamp")  # graceful deletion of a bound pod started
        reasons = {e["reason"] for e in store.list_objects(EVENT)}
        assert {"NodeNotReady", "TaintManagerEviction"} <= reasons
        assert manager.errors() == {"node-lifecycle": {}}
    finally:
        await manager.stop()


def test_lease_kind_validation(store: Store) -> None:
    created = store.create(LEASE, lease(0))
    assert created["spec"]["renewTime"].endswith("Z") and "." in created["spec"]["renewTime"]  # MicroTime kept
    bad = lease(0)
    bad["metadata"]["name"] = "n2"
    bad["spec"]["leaseDurationSeconds"] = 0
    with pytest.raises(Invalid) as err:
        store.create(LEASE, bad)
    assert "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0" in err.value.message

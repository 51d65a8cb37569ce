"""The DaemonSet controller: node eligibility, one pod per node, rollouts and status.

Unit tests drive ``reconcile`` over hand-built caches with the in-memory ``World`` of the
StatefulSet tests (it applies plans to a dict of objects); the last test runs the real Manager.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kubewire.api.apps import CONTROLLER_REVISION, DAEMONSET
from kubewire.api.core import NODE
from kubewire.api.meta import clone, now_rfc3339
from kubewire.api.pod import POD
from kubewire.client.local import LocalClient
from kubewire.controllers.daemonset import DaemonSetController, daemon_tolerations, should_run, target_node
from kubewire.controllers.history import POD_REVISION_LABEL
from kubewire.controllers.runtime import Create, Manager, Plan
from kubewire.store.store import Store
from tests.conftest import kind
from tests.unit.test_statefulset import T0, World, deleted

Obj = dict[str, Any]
KEY = "default/agent"


def node(name: str, labels: dict[str, str] | None = None, taints: list[Obj] | None = None) -> Obj:
    obj: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}, "spec": {}}
    if taints:
        obj["spec"]["taints"] = taints
    return obj


def daemonset(**spec: Any) -> Obj:
    template_spec = spec.pop("template_spec", {})
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "agent:1"}], **template_spec},
            },
            **spec,
        },
    }


def world(ds: Obj | None = None, nodes: tuple[str, ...] = ("n1", "n2")) -> World:
    w = World(DaemonSetController(), [DAEMONSET, POD, CONTROLLER_REVISION, NODE])
    for name in nodes:
        w.add(NODE, node(name))
    w.add(DAEMONSET, ds or daemonset())
    return w


def placement(w: World) -> dict[str, list[str]]:
    """Node -> images of its daemon pods."""
    out: dict[str, list[str]] = {}
    for pod in w.all(POD):
        out.setdefault(target_node(pod), []).append(pod["spec"]["containers"][0]["image"])
    return {k: sorted(v) for k, v in sorted(out.items())}


def pod_on(w: World, node_name: str) -> str:
    [name] = [str(p["metadata"]["name"]) for p in w.all(POD) if target_node(p) == node_name]
    return name


def ready_all(w: World) -> None:
    w.ready(*w.names(POD))


def status(w: World) -> Obj:
    return dict(w.get(DAEMONSET, "agent")["status"])


def set_image(w: World, image: str) -> None:
    ds = clone(w.get(DAEMONSET, "agent"))
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = image
    ds["metadata"]["generation"] += 1
    w.touch(DAEMONSET, ds)


def creates(plan: Plan) -> list[str]:
    return [target_node(a.obj) for a in plan.actions if isinstance(a, Create) and a.kind is POD]


# ------------------------------------------------------------------------------------------ tests


def test_one_pod_per_node_with_node_name_affinity_labels_and_tolerations() -> None:
    w = world()
    plan = w.step(KEY)
    assert sorted(creates(plan)) == ["n1", "n2"]
    pod = w.get(POD, pod_on(w, "n1"))
    assert pod["metadata"]["name"].startswith("agent-") and len(pod["metadata"]["name"]) == len("agent-") + 5
    assert "nodeName" not in pod["spec"]  # the scheduler binds it
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
    }
    labels = pod["metadata"]["labels"]
    assert labels["app"] == "agent" and labels["pod-template-generation"] == "1"
    [revision] = w.all(CONTROLLER_REVISION)
    assert revision["metadata"]["name"] == f"agent-{labels[POD_REVISION_LABEL]}"
    assert revision["metadata"]["labels"][POD_REVISION_LABEL] == labels[POD_REVISION_LABEL]
    keys = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") not in keys
    assert all("tolerationSeconds" not in t for t in pod["spec"]["tolerations"])
    created = pod["metadata"]["name"]
    assert ("Normal", "SuccessfulCreate", f"Created pod: {created}") in w.events


def test_host_network_pods_tolerate_network_unavailable() -> None:
    keys = {t["key"] for t in daemon_tolerations({"hostNetwork": True})}
    assert "node.kubernetes.io/network-unavailable" in keys


def test_node_selector_affinity_and_taints_decide_eligibility() -> None:
    ds = daemonset(
        template_spec={
            "nodeSelector": {"role": "edge"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                        ]
                    }
                }
            },
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "edge", "effect": "NoSchedule"}],
        }
    )
    edge = {"role": "edge", "zone": "a"}
    assert should_run(ds, node("n", edge)) == (True, True)
    assert should_run(ds, node("n", {"role": "edge", "zone": "b"})) == (False, False)
    assert should_run(ds, node("n", {"zone": "a"})) == (False, False)
    tolerated = [{"key": "dedicated", "value": "edge", "effect": "NoSchedule"}]
    assert should_run(ds, node("n", edge, tolerated)) == (True, True)
    no_schedule = [{"key": "gpu", "value": "x", "effect": "NoSchedule"}]
    assert should_run(ds, node("n", edge, no_schedule)) == (False, True)  # an existing pod may stay
    no_execute = [{"key": "gpu", "value": "x", "effect": "NoExecute"}]
    assert should_run(ds, node("n", edge, no_execute)) == (False, False)
    # the daemon tolerations are added automatically
    cordoned = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    not_ready = [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]
    assert should_run(ds, node("n", edge, cordoned + not_ready)) == (True, True)


def test_nodes_added_and_removed_and_labels_changed() -> None:
    w = world(daemonset(template_spec={"nodeSelector": {"role": "edge"}}), nodes=())
    w.add(NODE, node("n1", {"role": "edge"}))
    w.add(NODE, node("n2"))
    w.settle(KEY)
    assert placement(w) == {"n1": ["agent:1"]}
    w.add(NODE, node("n3", {"role": "edge"}))
    w.settle(KEY)
    assert placement(w) == {"n1": ["agent:1"], "n3": ["agent:1"]}
    relabelled = clone(w.get(NODE, "n1", ""))
    relabelled["metadata"]["labels"] = {}
    w.touch(NODE, relabelled)
    victim = pod_on(w, "n1")
    assert deleted(w.step(KEY)) == [victim]
    assert ("Normal", "SuccessfulDelete", f"Deleted pod: {victim}") in w.events
    w.objects.pop((NODE, "", "n3"))
    w.settle(KEY)
    assert placement(w) == {}
    st = status(w)
    assert st["desiredNumberScheduled"] == 0 and st["currentNumberScheduled"] == 0


def test_duplicates_keep_the_oldest_and_failed_pods_are_replaced_after_backoff() -> None:
    w = world(nodes=("n1",))
    w.settle(KEY)
    first = pod_on(w, "n1")
    w.now += timedelta(seconds=5)
    extra = clone(w.get(POD, first))
    extra["metadata"] = {**extra["metadata"], "name": "agent-dupe1", "uid": "dupe"}
    extra["metadata"].pop("creationTimestamp")
    w.add(POD, extra)
    assert deleted(w.step(KEY)) == ["agent-dupe1"]
    w.fail(first)
    w.now += timedelta(seconds=5)
    plan = w.step(KEY)
    assert deleted(plan) == [first]
    message = f"Found failed daemon pod default/{first} on node n1, will try to kill it"
    assert ("Warning", "FailedDaemonPod", message) in w.events
    assert creates(w.step(KEY)) == ["n1"]
    # a pod that fails straight away waits out the backoff before it is replaced
    again = pod_on(w, "n1")
    w.fail(again)
    plan = w.step(KEY)
    assert deleted(plan) == [] and plan.requeue_after == 1.0
    w.now += timedelta(seconds=1)
    assert deleted(w.step(KEY)) == [again]


def test_status_counts_and_idempotence() -> None:
    w = world(nodes=("n1", "n2", "n3"))
    w.settle(KEY)
    w.ready(pod_on(w, "n1"), pod_on(w, "n2"))
    w.settle(KEY)
    st = status(w)
    assert st == {
        "observedGeneration": 1,
        "desiredNumberScheduled": 3,
        "currentNumberScheduled": 3,
        "numberMisscheduled": 0,
        "numberReady": 2,
        "numberAvailable": 2,
        "updatedNumberScheduled": 3,
        "numberUnavailable": 1,
    }
    assert not w.reconcile(KEY)


def test_rolling_update_respects_max_unavailable() -> None:
    ds = daemonset(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}})
    w = world(ds, nodes=("n1", "n2", "n3", "n4"))
    w.settle(KEY)
    ready_all(w)
    w.settle(KEY)
    set_image(w, "agent:2")
    assert len(deleted(w.step(KEY))) == 2  # two old pods at a time
    w.step(KEY)  # replacements created
    assert deleted(w.step(KEY)) == []  # the new ones are not available yet
    ready_all(w)
    assert len(deleted(w.step(KEY))) == 2
    w.step(KEY)
    ready_all(w)
    w.settle(KEY)
    assert placement(w) == {n: ["agent:2"] for n in ("n1", "n2", "n3", "n4")}
    st = status(w)
    assert st["updatedNumberScheduled"] == st["numberAvailable"] == 4 and st["observedGeneration"] == 2


def test_rolling_update_with_max_surge_starts_the_new_pod_first() -> None:
    ds = daemonset(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    w = world(ds, nodes=("n1", "n2"))
    w.settle(KEY)
    ready_all(w)
    w.settle(KEY)
    set_image(w, "agent:2")
    w.step(KEY)
    assert placement(w) == {"n1": ["agent:1", "agent:2"], "n2": ["agent:1"]}
    w.settle(KEY)  # the surge pod is not ready: no more surging, nothing deleted
    assert placement(w) == {"n1": ["agent:1", "agent:2"], "n2": ["agent:1"]}
    ready_all(w)
    w.settle(KEY)
    assert placement(w) == {"n1": ["agent:2"], "n2": ["agent:1", "agent:2"]}
    ready_all(w)
    w.settle(KEY)
    assert placement(w) == {"n1": ["agent:2"], "n2": ["agent:2"]}


def test_on_delete_keeps_old_pods() -> None:
    w = world(daemonset(updateStrategy={"type": "OnDelete"}), nodes=("n1", "n2"))
    w.settle(KEY)
    set_image(w, "agent:2")
    w.settle(KEY)
    assert placement(w) == {"n1": ["agent:1"], "n2": ["agent:1"]}
    w.objects.pop((POD, "default", pod_on(w, "n2")))
    w.settle(KEY)
    assert placement(w) == {"n1": ["agent:1"], "n2": ["agent:2"]}
    assert status(w)["updatedNumberScheduled"] == 1


async def test_manager_runs_a_daemonset_end_to_end(store: Store) -> None:
    client = LocalClient(store)
    controller = DaemonSetController()
    manager = Manager(client, store.registry, [controller])
    await manager.start()
    try:
        await client.create(NODE, node("n1"))
        await client.create(DAEMONSET, daemonset())
        await manager.wait_idle()
        await client.create(NODE, node("n2"))  # a node event fans out to the DaemonSet
        await manager.wait_idle()
        pods = store.list_objects(POD)
        assert sorted(target_node(p) for p in pods) == ["n1", "n2"]
        for pod in pods:
            pod = clone(pod)
            pod["status"] = {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now_rfc3339(T0)}],
            }
            await client.update(POD, pod, subresource="status")
        await manager.wait_idle()
        st = store.get(DAEMONSET, "default", "agent")["status"]
        assert st["numberAvailable"] == st["desiredNumberScheduled"] == st["updatedNumberScheduled"] == 2
        messages = sorted(e["message"] for e in store.list_objects(kind("events")))
        assert messages == sorted(f"Created pod: {p['metadata']['name']}" for p in pods)
        assert manager.errors() == {"daemonset": {}}
    finally:
        await manager.stop()

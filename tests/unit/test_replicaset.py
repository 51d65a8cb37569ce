"""The ReplicaSet controller: slow-start creates, ranked deletes, claiming, status and Events.

State is built in a real Store (so defaulting, generateName-free naming, status subresource and
merge patches behave as in the cluster); each reconcile reads informer caches filled from it, and
:class:`Sim` writes plans through the real Writer.  Time is the injected clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubewire.api.meta import now_rfc3339
from kubewire.api.registry import Kind, default_registry
from kubewire.client.local import LocalClient
from kubewire.controllers.replicaset import ReplicaSetController, pods_to_delete
from kubewire.controllers.runtime import Caches, Controller, Create, Delete, Patch, Plan, RecordEvent, Update, Writer
from kubewire.store.informer import Informer, WatchEvent
from kubewire.store.store import Store
from tests.conftest import kind

POD = kind("pods")
RS = kind("replicasets")
DEPLOY = kind("deployments")
EVENT = kind("events")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
Obj = dict[str, Any]


def template(labels: dict[str, str], image: str = "nginx:1") -> Obj:
    return {"metadata": {"labels": dict(labels)}, "spec": {"containers": [{"name": "c", "image": image}]}}


def replicaset(name: str, replicas: int, labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)}, "template": template(labels), **spec},
    }


def bare_pod(name: str, labels: dict[str, str], **extra: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels, **extra},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
    }


def ready_status(since: datetime, restarts: int = 0) -> Obj:
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now_rfc3339(since)}],
        "containerStatuses": [{"name": "c", "restartCount": restarts, "ready": True}],
    }


class Sim:
    """A store, the real Writer, a clock, and a toy kubelet: enough cluster to run controllers."""

    def __init__(self, controllers: Iterable[Controller]) -> None:
        self.now = T0
        self.controllers = list(controllers)
        self.store = Store(default_registry(), None, clock=lambda: self.now)
        self.client = LocalClient(self.store)
        self.writer = Writer(self.client, self.store.registry, "test", lambda: self.now)

    def close(self) -> None:
        self.store.close()

    def caches(self) -> Caches:
        informers: dict[str, Informer] = {}
        for controller in self.controllers:
            kinds: list[Kind] = [*controller.watches(), *controller.indexers()]
            for k in kinds:
                informers.setdefault(k.resource_key, Informer(self.client, k))
            for k, indexes in controller.indexers().items():
                for name, fn in indexes.items():
                    informers[k.resource_key].add_indexer(name, fn)
        for informer in informers.values():
            for obj in self.store.list_objects(informer.kind):
                informer.apply_event(WatchEvent("ADDED", obj))
        return Caches(informers)

    def create(self, k: Kind, obj: Obj) -> Obj:
        return self.store.create(k, obj)

    def get(self, k: Kind, name: str) -> Obj:
        return self.store.get(k, "default", name)

    def objects(self, k: Kind) -> list[Obj]:
        return self.store.list_objects(k)

    def set_status(self, k: Kind, name: str, status: Obj) -> None:
        obj = self.get(k, name)
        self.store.update(k, {**obj, "status": status}, subresource="status")

    def reconcile(self, controller: Controller, key: str) -> Plan:
        return controller.reconcile(key, self.caches(), self.now)

    async def write(self, plan: Plan) -> None:
        result = await self.writer.write(plan)
        failures = result[0] if isinstance(result, tuple) else result  # the runtime may report writes too
        assert failures == [], failures

    async def step(self, controller: Controller, key: str) -> Plan:
        plan = self.reconcile(controller, key)
        await self.write(plan)
        return plan

    def events(self, reason: str = "") -> list[str]:
        events = sorted(self.objects(EVENT), key=lambda e: int(e["metadata"]["resourceVersion"]))
        return [e["message"] for e in events if not reason or e["reason"] == reason]

    def kubelet(self) -> bool:
        """Bind, start and ready every pending pod; finish terminating pods.  Returns whether it
        changed anything."""
        changed = False
        for pod in self.objects(POD):
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                self.store.delete(POD, "default", meta["name"], grace_period=0)
                changed = True
                continue
            if not pod["spec"].get("nodeName"):
                self.store.bind("default", meta["name"], "node-1")
                changed = True
            if (pod.get("status") or {}).get("phase") != "Running":
                self.set_status(POD, meta["name"], ready_status(self.now))
                changed = True
        return changed


def kinds_of(plan: Plan) -> list[str]:
    return [type(a).__name__ for a in plan.actions]


# ------------------------------------------------------------------------------------------ tests


async def test_creates_pods_in_slow_start_batches_with_events() -> None:
    rsc = ReplicaSetController()
    sim = Sim([rsc])
    try:
        sim.create(RS, replicaset("web", 10))
        batches = []
        for _ in range(6):
            plan = await sim.step(rsc, "default/web")
            batches.append(sum(isinstance(a, Create) for a in plan.actions))
        assert batches == [1, 2, 4, 3, 0, 0]
        pods = sim.objects(POD)
        assert len(pods) == 10
        for pod in pods:
            name = pod["metadata"]["name"]
            assert name.startswith("web-") and len(name) == len("web-") + 5
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
            assert pod["metadata"]["labels"] == {"app": "web"}
        assert sorted(sim.events("SuccessfulCreate")) == sorted(f"Created pod: {p['metadata']['name']}" for p in pods)
        status = sim.get(RS, "web")["status"]
        assert status == {"replicas": 10, "fullyLabeledReplicas": 10, "observedGeneration": 1}
    finally:
        sim.close()


async def test_second_reconcile_of_unchanged_state_is_empty() -> None:
    rsc = ReplicaSetController()
    sim = Sim([rsc])
    try:
        sim.create(RS, replicaset("web", 2))
        for _ in range(3):
            await sim.step(rsc, "default/web")
        sim.kubelet()
        await sim.step(rsc, "default/web")
        plan = sim.reconcile(rsc, "default/web")
        assert plan.actions == [] and plan.requeue_after is None
        assert sim.get(RS, "web")["status"]["readyReplicas"] == 2
    finally:
        sim.close()


def test_scale_down_victims_follow_upstream_ranking() -> None:
    def pod(name: str, **kw: Any) -> Obj:
        p = bare_pod(name, {"app": "web"}, creationTimestamp=kw.pop("created", now_rfc3339(T0)))
        p["spec"].update(kw.pop("spec", {}))
        p["status"] = kw.pop("status", {})
        return p

    now = T0 + timedelta(hours=1)
    running = {"phase": "Running"}
    pods = [
        pod("ready-old", spec={"nodeName": "n1"}, status=ready_status(T0)),
        pod("ready-new", spec={"nodeName": "n2"}, status=ready_status(T0), created=now_rfc3339(now)),
        pod("restarts", spec={"nodeName": "n3"}, status=ready_status(T0, restarts=5)),
        pod("running-not-ready", spec={"nodeName": "n4"}, status=running),
        pod("pending-assigned", spec={"nodeName": "n5"}, status={"phase": "Pending"}),
        pod("unassigned", status={"phase": "Pending"}),
    ]
    order = [p["metadata"]["name"] for p in pods_to_delete(pods, pods, len(pods), now)]
    assert order == ["unassigned", "pending-assigned", "running-not-ready", "restarts", "ready-new", "ready-old"]
    # a node doubled up with pods of the same set gives its pods first
    doubled = [
        pod("a", spec={"nodeName": "n1"}, status=ready_status(T0)),
        pod("b", spec={"nodeName": "n2"}, status=ready_status(T0)),
    ]
    doubled.append(pod("c", spec={"nodeName": "n2"}, status=ready_status(T0)))
    assert {p["metadata"]["name"] for p in pods_to_delete(doubled, doubled, 1, now)} <= {"b", "c"}


async def test_scale_down_deletes_surplus_and_records_events() -> None:
    rsc = ReplicaSetController()
    sim = Sim([rsc])
    try:
        sim.create(RS, replicaset("web", 3))
        for _ in range(3):
            await sim.step(rsc, "default/web")
        rs = sim.get(RS, "web")
        sim.store.update(RS, {**rs, "spec": {**rs["spec"], "replicas": 1}})
        plan = await sim.step(rsc, "default/web")
        deletes = [a for a in plan.actions if isinstance(a, Delete)]
        assert len(deletes) == 2 and all(d.uid for d in deletes)
        assert sorted(sim.events("SuccessfulDelete")) == sorted(f"Deleted pod: {d.name}" for d in deletes)
        assert len(sim.objects(POD)) == 1
        assert sim.get(RS, "web")["status"]["replicas"] == 1
        assert sim.get(RS, "web")["status"]["observedGeneration"] == 2
    finally:
        sim.close()


async def test_adopts_matching_orphans_and_releases_pods_that_stop_matching() -> None:
    rsc = ReplicaSetController()
    sim = Sim([rsc])
    try:
        sim.create(POD, bare_pod("orphan", {"app": "web"}))
        sim.create(POD, bare_pod("stranger", {"app": "other"}))
        rs = sim.create(RS, replicaset("web", 1))
        plan = await sim.step(rsc, "default/web")
        assert kinds_of(plan) == ["Patch", "Update"]  # adopt, then status; no create
        orphan = sim.get(POD, "orphan")
        assert orphan["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        assert "ownerReferences" not in sim.get(POD, "stranger")["metadata"]
        # relabel the pod: released, and a replacement is created
        sim.store.update(POD, {**orphan, "metadata": {**orphan["metadata"], "labels": {"app": "moved"}}})
        plan = await sim.step(rsc, "default/web")
        patch = next(a for a in plan.actions if isinstance(a, Patch))
        assert patch.name == "orphan" and patch.body == {"metadata": {"ownerReferences": None}}
        assert not sim.get(POD, "orphan")["metadata"].get("ownerReferences")
        assert sum(isinstance(a, Create) for a in plan.actions) == 1
    finally:
        sim.close()


async def test_orphan_pod_key_adopts_into_the_oldest_matching_replicaset() -> None:
    rsc = ReplicaSetController()
    sim = Sim([rsc])
    try:
        rs = sim.create(RS, replicaset("web", 0))
        sim.now += timedelta(seconds=5)
        sim.create(RS, replicaset("web2", 0, {"app": "web"}))
        sim.create(POD, bare_pod("loose", {"app": "web"}))
        keys = list(rsc.watches()[POD](sim.get(POD, "loose")))
        assert keys == ["default/pod:loose"]
        await sim.step(rsc, keys[0])
        owner = sim.get(POD, "loose")["metadata"]["ownerReferences"][0]
        assert (owner["name"], owner["uid"], owner["controller"]) == ("web", rs["metadata"]["uid"], True)
        # now owned: the pod maps to its ReplicaSet, and the orphan key is a no-op
        assert list(rsc.watches()[POD](sim.get(POD, "loose"))) == ["default/web"]
        assert sim.reconcile(rsc, keys[0]).actions == []
    finally:
        sim.close()


async def test_available_replicas_wait_for_min_ready_seconds() -> None:
    rsc = ReplicaSetController()
    sim = Sim([rsc])
    try:
        sim.create(RS, replicaset("web", 2, minReadySeconds=10))
        for _ in range(2):
            await sim.step(rsc, "default/web")
        sim.kubelet()
        sim.now += timedelta(seconds=3)
        plan = await sim.step(rsc, "default/web")
        status = sim.get(RS, "web")["status"]
        assert status["readyReplicas"] == 2 and "availableReplicas" not in status
        assert plan.requeue_after == 7
        sim.now += timedelta(seconds=7)
        plan = await sim.step(rsc, "default/web")
        assert sim.get(RS, "web")["status"]["availableReplicas"] == 2
        assert plan.requeue_after is None
    finally:
        sim.close()


async def test_fully_labeled_counts_pods_with_all_template_labels() -> None:
    rsc = ReplicaSetController()
    sim = Sim([rsc])
    try:
        rs = replicaset("web", 2)
        rs["spec"]["template"]["metadata"]["labels"]["tier"] = "front"
        sim.create(RS, rs)
        sim.create(POD, bare_pod("partial", {"app": "web"}))
        await sim.step(rsc, "default/web")
        await sim.step(rsc, "default/web")
        status = sim.get(RS, "web")["status"]
        assert status["replicas"] == 2 and status["fullyLabeledReplicas"] == 1
    finally:
        sim.close()


async def test_replicaset_being_deleted_does_nothing() -> None:
    rsc = ReplicaSetController()
    sim = Sim([rsc])
    try:
        rs = replicaset("web", 2)
        rs["metadata"]["finalizers"] = ["example.com/hold"]
        sim.create(RS, rs)
        sim.store.delete(RS, "default", "web")
        assert sim.get(RS, "web")["metadata"]["deletionTimestamp"]
        assert sim.reconcile(rsc, "default/web").actions == []
        assert sim.reconcile(rsc, "default/missing").actions == []
    finally:
        sim.close()


def test_plan_actions_are_the_runtime_types() -> None:
    # the status write goes through the status subresource
    rsc = ReplicaSetController()
    sim = Sim([rsc])
    try:
        sim.create(RS, replicaset("web", 0))
        plan = sim.reconcile(rsc, "default/web")
        assert [type(a) for a in plan.actions] == [Update]
        update = plan.actions[0]
        assert isinstance(update, Update) and update.subresource == "status"
        assert update.obj["status"] == {"replicas": 0, "observedGeneration": 1}
        assert not any(isinstance(a, RecordEvent) for a in plan.actions)
    finally:
        sim.close()

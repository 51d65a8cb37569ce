"""The StatefulSet controller: ordinal pods, ordered start/stop, revisions and rolling updates.

Unit tests drive ``reconcile`` over hand-built informer caches with a tiny in-memory world that
applies plans (``World``); the last test runs the controller in the real Manager over a Store.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubewire.api.apps import CONTROLLER_REVISION, STATEFULSET
from kubewire.api.meta import clone, now_rfc3339
from kubewire.api.pod import POD
from kubewire.api.registry import Kind
from kubewire.client.local import LocalClient
from kubewire.controllers.history import POD_REVISION_LABEL, REVISION_HASH_LABEL, template_of
from kubewire.controllers.runtime import (
    Caches,
    Controller,
    Create,
    Delete,
    Manager,
    Patch,
    Plan,
    RecordEvent,
    Update,
)
from kubewire.controllers.statefulset import StatefulSetController
from kubewire.store.informer import Informer, WatchEvent
from kubewire.store.store import Store
from tests.conftest import kind

Obj = dict[str, Any]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def merge(target: Obj, patch: Obj) -> Obj:
    """RFC 7386 JSON merge patch."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = clone(value)
    return out


class World:
    """Objects by kind, a plan applier, and informer caches built from them."""

    def __init__(self, controller: Controller, kinds: Iterable[Kind]) -> None:
        self.controller = controller
        self.kinds = list(kinds)
        self.objects: dict[tuple[Kind, str, str], Obj] = {}
        self.events: list[tuple[str, str, str]] = []
        self.now = T0
        self._ids = itertools.count(1)

    def add(self, kind_: Kind, obj: Obj) -> Obj:
        obj = clone(obj)
        kind_.default(obj)
        meta = obj.setdefault("metadata", {})
        n = next(self._ids)
        meta.setdefault("namespace", "default" if kind_.namespaced else "")
        meta.setdefault("uid", f"uid-{n}")
        meta.setdefault("creationTimestamp", now_rfc3339(self.now))
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(n)
        if kind_ is POD:
            obj.setdefault("status", {"phase": "Pending"})
        self.objects[(kind_, meta["namespace"], meta["name"])] = obj
        return obj

    def get(self, kind_: Kind, name: str, ns: str = "default") -> Obj:
        return self.objects[(kind_, ns, name)]

    def all(self, kind_: Kind) -> list[Obj]:
        return sorted((o for (k, _, _), o in self.objects.items() if k is kind_), key=lambda o: o["metadata"]["name"])

    def names(self, kind_: Kind) -> list[str]:
        return [o["metadata"]["name"] for o in self.all(kind_)]

    def touch(self, kind_: Kind, obj: Obj) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._ids))
        self.objects[(kind_, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj

    def caches(self) -> Caches:
        informers: dict[str, Informer] = {}
        for kind_ in self.kinds:
            informer = Informer(None, kind_)  # type: ignore[arg-type]  # filled by hand, never run
            for name, fn in self.controller.indexers().get(kind_, {}).items():
                informer.add_indexer(name, fn)
            for obj in self.all(kind_):
                informer.apply_event(WatchEvent("ADDED", clone(obj)))
            informers[kind_.resource_key] = informer
        return Caches(informers)

    def reconcile(self, key: str = "default/web") -> Plan:
        return self.controller.reconcile(key, self.caches(), self.now)

    def apply(self, plan: Plan) -> None:
        for action in plan.actions:
            if isinstance(action, Create):
                assert (action.kind, action.obj["metadata"]["namespace"], action.obj["metadata"]["name"]) not in (
                    self.objects
                ), action.obj["metadata"]["name"]
                self.add(action.kind, action.obj)
            elif isinstance(action, Patch):
                current = self.get(action.kind, action.name, action.namespace)
                self.touch(action.kind, merge(current, action.body))
            elif isinstance(action, Update):
                self.touch(action.kind, clone(action.obj))
            elif isinstance(action, Delete):
                self.objects.pop((action.kind, action.namespace, action.name), None)
            elif isinstance(action, RecordEvent):
                self.events.append((action.type, action.reason, action.message))

    def step(self, key: str = "default/web") -> Plan:
        plan = self.reconcile(key)
        self.apply(plan)
        return plan

    def settle(self, key: str = "default/web", limit: int = 50) -> None:
        for _ in range(limit):
            if not self.step(key).actions:
                return
        raise AssertionError("did not settle")

    def ready(self, *names: str, phase: str = "Running") -> None:
        """What a kubelet would report: the pods run and are Ready since ``now``."""
        for name in names:
            pod = clone(self.get(POD, name))
            pod["status"] = {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now_rfc3339(self.now)}],
            }
            self.touch(POD, pod)

    def fail(self, name: str) -> None:
        pod = clone(self.get(POD, name))
        pod["status"] = {"phase": "Failed"}
        self.touch(POD, pod)

    def terminating(self, name: str) -> None:
        pod = clone(self.get(POD, name))
        pod["metadata"]["deletionTimestamp"] = now_rfc3339(self.now)
        self.touch(POD, pod)


def statefulset(replicas: int = 3, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
            },
            **spec,
        },
    }


def world(sts: Obj | None = None) -> World:
    w = World(StatefulSetController(), [STATEFULSET, POD, CONTROLLER_REVISION])
    w.add(STATEFULSET, sts or statefulset())
    return w


def set_image(w: World, image: str, **spec: Any) -> None:
    sts = clone(w.get(STATEFULSET, "web"))
    sts["spec"]["template"]["spec"]["containers"][0]["image"] = image
    sts["spec"].update(spec)
    sts["metadata"]["generation"] += 1
    w.touch(STATEFULSET, sts)


def created(plan: Plan) -> list[str]:
    return [a.obj["metadata"]["name"] for a in plan.actions if isinstance(a, Create) and a.kind is POD]


def deleted(plan: Plan) -> list[str]:
    return [a.name for a in plan.actions if isinstance(a, Delete) and a.kind is POD]


def status(w: World) -> Obj:
    return dict(w.get(STATEFULSET, "web")["status"])


def image_of(w: World, pod: str) -> str:
    return str(w.get(POD, pod)["spec"]["containers"][0]["image"])


# ------------------------------------------------------------------------------------------ tests


def test_ordered_ready_creates_one_pod_at_a_time_after_the_previous_is_ready() -> None:
    w = world()
    assert created(w.step()) == ["web-0"]
    assert created(w.step()) == []  # web-0 is Pending: OrderedReady blocks
    w.ready("web-0")
    assert created(w.step()) == ["web-1"]
    w.ready("web-1")
    assert created(w.step()) == ["web-2"]
    w.ready("web-2")
    w.settle()
    assert ("Normal", "SuccessfulCreate", "create Pod web-0 in StatefulSet web successful") in w.events
    st = status(w)
    assert st["replicas"] == st["readyReplicas"] == st["availableReplicas"] == 3
    assert st["currentReplicas"] == st["updatedReplicas"] == 3
    assert st["currentRevision"] == st["updateRevision"]
    assert st["observedGeneration"] == 1 and st["collisionCount"] == 0
    assert not w.reconcile()  # idempotent: nothing to do, no requeue


def test_pod_identity_labels_hostname_and_subdomain() -> None:
    w = world(statefulset(replicas=1, ordinals={"start": 5}))
    w.settle()
    pod = w.get(POD, "web-5")
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-5"
    assert labels["apps.kubernetes.io/pod-index"] == "5"
    assert labels["app"] == "web"
    assert labels[POD_REVISION_LABEL] == status(w)["updateRevision"]
    assert pod["spec"]["hostname"] == "web-5" and pod["spec"]["subdomain"] == "nginx"
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "StatefulSet" and ref["controller"] is True


def test_min_ready_seconds_gates_the_next_ordinal_and_requeues() -> None:
    w = world(statefulset(replicas=2, minReadySeconds=10))
    w.step()
    w.ready("web-0")
    plan = w.step()
    assert created(plan) == [] and plan.requeue_after == 10
    w.now += timedelta(seconds=10)
    assert created(w.step()) == ["web-1"]


def test_ordered_scale_down_from_the_highest_ordinal_one_at_a_time() -> None:
    w = world()
    for name in ("web-0", "web-1", "web-2"):
        w.step()
        w.ready(name)
    w.settle()
    sts = clone(w.get(STATEFULSET, "web"))
    sts["spec"]["replicas"] = 1
    w.touch(STATEFULSET, sts)
    w.terminating("web-0")  # an unhealthy lower ordinal blocks scale down
    assert deleted(w.step()) == []
    w.ready("web-0")
    w.get(POD, "web-0")["metadata"].pop("deletionTimestamp")
    assert deleted(w.step()) == ["web-2"]
    assert deleted(w.step()) == ["web-1"]
    assert ("Normal", "SuccessfulDelete", "delete Pod web-2 in StatefulSet web successful") in w.events
    w.settle()
    assert w.names(POD) == ["web-0"] and status(w)["replicas"] == 1


def test_parallel_creates_and_deletes_all_at_once() -> None:
    w = world(statefulset(replicas=3, podManagementPolicy="Parallel"))
    assert created(w.step()) == ["web-0", "web-1", "web-2"]
    sts = clone(w.get(STATEFULSET, "web"))
    sts["spec"]["replicas"] = 0
    w.touch(STATEFULSET, sts)
    assert sorted(deleted(w.step())) == ["web-0", "web-1", "web-2"]


def test_failed_pod_is_deleted_and_recreated() -> None:
    w = world(statefulset(replicas=1))
    w.step()
    w.fail("web-0")
    plan = w.step()
    assert deleted(plan) == ["web-0"]
    assert ("Warning", "RecreatingFailedPod", "StatefulSet default/web is recreating failed Pod web-0") in w.events
    assert created(w.step()) == ["web-0"]


def test_revisions_are_recorded_numbered_and_pruned() -> None:
    w = world(statefulset(replicas=1, revisionHistoryLimit=1))
    w.step()
    w.ready("web-0")
    w.settle()
    [rev1] = w.all(CONTROLLER_REVISION)
    assert rev1["revision"] == 1
    assert rev1["metadata"]["name"] == status(w)["currentRevision"]
    assert rev1["metadata"]["name"].startswith("web-")
    assert rev1["metadata"]["labels"][REVISION_HASH_LABEL] == rev1["metadata"]["name"].removeprefix("web-")
    assert rev1["data"]["spec"]["template"]["$patch"] == "replace"
    assert template_of(rev1) == w.get(STATEFULSET, "web")["spec"]["template"]
    for n, image in enumerate(("nginx:2", "nginx:3"), start=2):
        set_image(w, image)
        for _ in range(5):
            w.settle()
            w.ready("web-0")
        assert image_of(w, "web-0") == image
        assert max(r["revision"] for r in w.all(CONTROLLER_REVISION)) == n
    revisions = w.all(CONTROLLER_REVISION)  # current (= update) plus one historic revision
    assert sorted(r["revision"] for r in revisions) == [2, 3]
    # rolling back to nginx:2 reuses its revision under the next number
    set_image(w, "nginx:2")
    w.settle()
    numbers = {
        r["data"]["spec"]["template"]["spec"]["containers"][0]["image"]: r["revision"]
        for r in w.all(CONTROLLER_REVISION)
    }
    assert numbers["nginx:2"] == 4


def test_rolling_update_goes_down_from_the_highest_ordinal_and_honours_the_partition() -> None:
    w = world(statefulset(replicas=3, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}))
    for name in ("web-0", "web-1", "web-2"):
        w.step()
        w.ready(name)
    w.settle()
    old = status(w)["currentRevision"]
    set_image(w, "nginx:2")
    assert deleted(w.step()) == ["web-2"]
    assert created(w.step()) == ["web-2"]
    assert deleted(w.step()) == []  # web-2 not ready yet: wait
    w.ready("web-2")
    assert deleted(w.step()) == ["web-1"]
    w.step()
    w.ready("web-1")
    w.settle()
    assert [image_of(w, p) for p in ("web-0", "web-1", "web-2")] == ["nginx:1", "nginx:2", "nginx:2"]
    st = status(w)
    assert st["currentRevision"] == old != st["updateRevision"]
    assert st["updatedReplicas"] == 2 and st["currentReplicas"] == 1
    # a recreated pod below the partition keeps the current revision's template
    w.objects.pop((POD, "default", "web-0"))
    w.step()
    assert image_of(w, "web-0") == "nginx:1"
    # dropping the partition finishes the rollout and the update revision becomes current
    set_image(w, "nginx:2", updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    w.ready("web-0")
    for _ in range(3):
        w.settle()
        w.ready("web-0")
    st = status(w)
    assert st["currentRevision"] == st["updateRevision"] and st["currentReplicas"] == 3


def test_on_delete_only_uses_the_new_template_for_recreated_pods() -> None:
    w = world(statefulset(replicas=2, updateStrategy={"type": "OnDelete"}))
    for name in ("web-0", "web-1"):
        w.step()
        w.ready(name)
    w.settle()
    set_image(w, "nginx:2")
    w.settle()
    assert [image_of(w, p) for p in ("web-0", "web-1")] == ["nginx:1", "nginx:1"]
    w.objects.pop((POD, "default", "web-1"))
    w.settle()
    assert image_of(w, "web-1") == "nginx:2"
    assert status(w)["updatedReplicas"] == 1


async def test_manager_runs_a_statefulset_end_to_end(store: Store) -> None:
    client = LocalClient(store)
    manager = Manager(client, store.registry, [StatefulSetController()])
    await manager.start()
    events = kind("events")
    try:
        await client.create(STATEFULSET, statefulset(replicas=2))
        for name in ("web-0", "web-1"):
            await manager.wait_idle()
            pod = await client.get(POD, name, "default")
            pod["status"] = {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now_rfc3339(T0)}],
            }
            await client.update(POD, pod, subresource="status")
        await manager.wait_idle()
        sts = store.get(STATEFULSET, "default", "web")
        assert sts["status"]["readyReplicas"] == 2 and sts["status"]["observedGeneration"] == 1
        assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
        assert len(store.list_objects(CONTROLLER_REVISION)) == 1
        reasons = sorted(e["message"] for e in store.list_objects(events))
        assert reasons == [
            "create Pod web-0 in StatefulSet web successful",
            "create Pod web-1 in StatefulSet web successful",
        ]
        assert manager.errors() == {"statefulset": {}}
    finally:
        await manager.stop()


def test_controller_revision_kind_requires_data_keeps_it_immutable_and_prints_its_controller() -> None:
    rev = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": "web-abc",
            "namespace": "default",
            "creationTimestamp": now_rfc3339(T0),
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u1", "controller": True}
            ],
        },
        "data": {"spec": {}},
        "revision": 2,
    }
    assert CONTROLLER_REVISION.validate(rev, None) == []
    missing = {k: v for k, v in rev.items() if k != "data"}
    assert [e.field for e in CONTROLLER_REVISION.validate(missing, None)] == ["data"]
    changed = {**rev, "data": {"spec": {"x": 1}}}
    assert [(e.field, e.detail) for e in CONTROLLER_REVISION.validate(changed, rev)] == [("data", "field is immutable")]
    assert [c.name for c in CONTROLLER_REVISION.columns] == ["Name", "Controller", "Revision", "Age"]
    assert CONTROLLER_REVISION.row is not None
    assert CONTROLLER_REVISION.row(rev, T0 + timedelta(minutes=3)) == ["web-abc", "statefulset.apps/web", 2, "3m"]

"""The Deployment controller: new ReplicaSets, rollouts, revisions, history, conditions, Events.

Most tests run the Deployment and ReplicaSet controllers together over the simulator of
``test_replicaset`` (a real Store, the real Writer, a toy kubelet that binds and readies pods),
checking the rolling-update bounds after every write.  One test runs the real Manager.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from kubewire.client.local import LocalClient
from kubewire.controllers import deployment_util as du
from kubewire.controllers.deployment import DeploymentController
from kubewire.controllers.podutil import compute_hash, is_pod_active, is_pod_available, status_condition
from kubewire.controllers.replicaset import ReplicaSetController
from kubewire.controllers.runtime import Manager
from kubewire.store.store import Store
from tests.conftest import kind
from tests.unit.test_replicaset import POD, RS, Sim, replicaset, template

DEPLOY = kind("deployments")
Obj = dict[str, Any]


def deployment(name: str = "web", replicas: int = 3, image: str = "nginx:1", **spec: Any) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": template(labels, image),
            **spec,
        },
    }


def rolling(surge: int | str, unavailable: int | str) -> Obj:
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


class Cluster(Sim):
    """The simulator running both workload controllers."""

    def __init__(self) -> None:
        self.dc, self.rsc = DeploymentController(), ReplicaSetController()
        super().__init__([self.dc, self.rsc])

    def active_pods(self) -> list[Obj]:
        return [p for p in self.objects(POD) if is_pod_active(p)]

    def available_pods(self, min_ready: int = 0) -> int:
        return sum(1 for p in self.active_pods() if is_pod_available(p, min_ready, self.now))

    def rss(self) -> dict[str, Obj]:
        return {rs["metadata"]["name"]: rs for rs in self.objects(RS)}

    def edit(self, name: str, change: Callable[[Obj], None]) -> None:
        d = self.get(DEPLOY, name)
        change(d)
        self.store.update(DEPLOY, d)

    async def converge(self, check: Callable[[], None] = lambda: None, rounds: int = 60) -> int:
        """Reconcile every Deployment and ReplicaSet, then let the kubelet act, until nothing
        changes; ``check`` runs after every write.  Returns the number of rounds."""
        for n in range(rounds):
            wrote = False
            for controller, k in ((self.dc, DEPLOY), (self.rsc, RS)):
                for obj in self.objects(k):
                    plan = self.reconcile(controller, f"default/{obj['metadata']['name']}")
                    if plan.actions:
                        await self.write(plan)
                        wrote = True
                        check()
            self.now += timedelta(seconds=1)
            if self.kubelet():
                wrote = True
                check()
            if not wrote:
                return n
        raise AssertionError("did not converge")


@pytest.fixture
async def cluster() -> Any:
    c = Cluster()
    yield c
    c.close()


def set_image(image: str) -> Callable[[Obj], None]:
    def change(d: Obj) -> None:
        d["spec"]["template"]["spec"]["containers"][0]["image"] = image

    return change


def hash_of(d: Obj) -> str:
    return compute_hash(d["spec"]["template"], d.get("status", {}).get("collisionCount"))


# ------------------------------------------------------------------------------ pure helpers


def test_int_or_percent_rounds_surge_up_and_unavailable_down() -> None:
    d = deployment(replicas=10, strategy=rolling("25%", "25%"))
    assert du.fenceposts(d) == (3, 2)
    assert du.fenceposts(deployment(replicas=1, strategy=rolling("25%", "25%"))) == (1, 0)
    assert du.fenceposts(deployment(replicas=3, strategy=rolling(0, "10%"))) == (0, 1)  # both 0: one unavailable
    assert du.max_unavailable(deployment(replicas=2, strategy=rolling(1, 5))) == 2
    assert du.max_surge(deployment(strategy={"type": "Recreate"})) == 0


# ------------------------------------------------------------------------------ tests


async def test_new_deployment_creates_one_replicaset_and_completes(cluster: Cluster) -> None:
    d = cluster.create(DEPLOY, deployment(replicas=3))
    await cluster.converge()
    h = hash_of(d)
    rss = cluster.rss()
    assert list(rss) == [f"web-{h}"]
    rs = rss[f"web-{h}"]
    assert rs["metadata"]["labels"] == {"app": "web", "pod-template-hash": h}
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
    assert rs["metadata"]["annotations"] == {
        du.REVISION: "1",
        du.DESIRED_REPLICAS: "3",
        du.MAX_REPLICAS: "4",
    }
    assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    pods = cluster.active_pods()
    assert len(pods) == 3 and all(p["metadata"]["name"].startswith(f"web-{h}-") for p in pods)
    d = cluster.get(DEPLOY, "web")
    assert d["metadata"]["annotations"][du.REVISION] == "1"
    status = d["status"]
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "observedGeneration": 1,
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
    }
    conds = {c["type"]: c for c in status["conditions"]}
    assert (conds["Available"]["reason"], conds["Available"]["message"]) == (
        "MinimumReplicasAvailable",
        "Deployment has minimum availability.",
    )
    assert (conds["Progressing"]["reason"], conds["Progressing"]["message"]) == (
        "NewReplicaSetAvailable",
        f'ReplicaSet "web-{h}" has successfully progressed.',
    )
    assert cluster.events("ScalingReplicaSet") == [f"Scaled up replica set web-{h} from 0 to 3"]
    # idempotent: nothing left to do
    plan = cluster.reconcile(cluster.dc, "default/web")
    assert plan.actions == [] and plan.requeue_after is None


@pytest.mark.parametrize(
    ("replicas", "strategy"),
    [(10, rolling(3, 2)), (10, rolling("25%", "25%")), (4, rolling(0, 1)), (5, rolling(2, 0)), (1, rolling(1, 0))],
)
async def test_rolling_update_stays_within_surge_and_unavailability(
    cluster: Cluster, replicas: int, strategy: Obj
) -> None:
    cluster.create(DEPLOY, deployment(replicas=replicas, strategy=strategy))
    await cluster.converge()
    d = cluster.get(DEPLOY, "web")
    surge, unavailable = du.fenceposts(d)
    old_rs = next(iter(cluster.rss()))

    def check() -> None:
        assert len(cluster.active_pods()) <= replicas + surge
        assert cluster.available_pods() >= replicas - unavailable

    cluster.edit("web", set_image("nginx:2"))
    await cluster.converge(check)
    d = cluster.get(DEPLOY, "web")
    new_rs = f"web-{hash_of(d)}"
    rss = cluster.rss()
    assert rss[new_rs]["spec"]["replicas"] == replicas and rss[old_rs]["spec"]["replicas"] == 0
    assert rss[new_rs]["metadata"]["annotations"][du.REVISION] == "2"
    assert rss[old_rs]["metadata"]["annotations"][du.REVISION] == "1"
    assert d["metadata"]["annotations"][du.REVISION] == "2"
    pods = cluster.active_pods()
    assert len(pods) == replicas and all(p["spec"]["containers"][0]["image"] == "nginx:2" for p in pods)
    assert d["status"]["updatedReplicas"] == d["status"]["availableReplicas"] == replicas
    assert status_condition(d["status"], "Progressing")["reason"] == "NewReplicaSetAvailable"  # type: ignore[index]
    messages = cluster.events("ScalingReplicaSet")
    assert messages[0] == f"Scaled up replica set {old_rs} from 0 to {replicas}"
    assert any(m.startswith(f"Scaled down replica set {old_rs} from ") and m.endswith(" to 0") for m in messages)
    assert cluster.reconcile(cluster.dc, "default/web").actions == []


async def test_recreate_removes_old_pods_before_creating_new_ones(cluster: Cluster) -> None:
    cluster.create(DEPLOY, deployment(replicas=3, strategy={"type": "Recreate"}))
    await cluster.converge()
    old_rs = next(iter(cluster.rss()))
    cluster.edit("web", set_image("nginx:2"))
    d = cluster.get(DEPLOY, "web")
    new_rs = f"web-{hash_of(d)}"

    def check() -> None:
        old_pods = [p for p in cluster.objects(POD) if p["metadata"]["name"].startswith(old_rs)]
        if new_rs in cluster.rss():
            assert old_pods == []  # not even terminating ones

    await cluster.converge(check)
    rss = cluster.rss()
    assert rss[old_rs]["spec"]["replicas"] == 0 and rss[new_rs]["spec"]["replicas"] == 3
    assert cluster.events("ScalingReplicaSet")[-2:] == [
        f"Scaled down replica set {old_rs} from 3 to 0",
        f"Scaled up replica set {new_rs} from 0 to 3",
    ]


async def test_rollback_reuses_the_old_replicaset_with_a_new_revision(cluster: Cluster) -> None:
    cluster.create(DEPLOY, deployment(replicas=2))
    await cluster.converge()
    first = next(iter(cluster.rss()))
    cluster.edit("web", set_image("nginx:2"))
    await cluster.converge()
    cluster.edit("web", set_image("nginx:1"))
    await cluster.converge()
    rss = cluster.rss()
    assert len(rss) == 2
    ann = rss[first]["metadata"]["annotations"]
    assert (ann[du.REVISION], ann[du.REVISION_HISTORY]) == ("3", "1")
    assert rss[first]["spec"]["replicas"] == 2
    assert cluster.get(DEPLOY, "web")["metadata"]["annotations"][du.REVISION] == "3"


async def test_revision_history_limit_deletes_oldest_idle_replicasets(cluster: Cluster) -> None:
    cluster.create(DEPLOY, deployment(replicas=1, revisionHistoryLimit=1))
    for image in ("nginx:2", "nginx:3", "nginx:4"):
        await cluster.converge()
        cluster.edit("web", set_image(image))
    await cluster.converge()
    revisions = sorted(int(rs["metadata"]["annotations"][du.REVISION]) for rs in cluster.rss().values())
    assert revisions == [3, 4]


async def test_progress_deadline_exceeded_when_pods_never_become_ready(cluster: Cluster) -> None:
    cluster.create(DEPLOY, deployment(replicas=2, progressDeadlineSeconds=30))
    for _ in range(4):  # no kubelet: pods stay Pending
        for controller, k in ((cluster.dc, DEPLOY), (cluster.rsc, RS)):
            for obj in cluster.objects(k):
                await cluster.step(controller, f"default/{obj['metadata']['name']}")
    d = cluster.get(DEPLOY, "web")
    h = hash_of(d)
    progressing = status_condition(d["status"], "Progressing")
    assert progressing is not None
    # created, then progressing as the ReplicaSet reported its (unready) pods
    assert (progressing["reason"], progressing["message"]) == (
        "ReplicaSetUpdated",
        f'ReplicaSet "web-{h}" is progressing.',
    )
    available = status_condition(d["status"], "Available")
    assert available is not None and available["reason"] == "MinimumReplicasUnavailable"
    assert available["message"] == "Deployment does not have minimum availability."
    plan = cluster.reconcile(cluster.dc, "default/web")
    assert plan.actions == [] and plan.requeue_after == 31
    cluster.now += timedelta(seconds=31)
    await cluster.step(cluster.dc, "default/web")
    progressing = status_condition(cluster.get(DEPLOY, "web")["status"], "Progressing")
    assert progressing is not None
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "False",
        "ProgressDeadlineExceeded",
        f'ReplicaSet "web-{h}" has timed out progressing.',
    )


async def test_paused_deployment_scales_but_does_not_roll_out(cluster: Cluster) -> None:
    cluster.create(DEPLOY, deployment(replicas=2))
    await cluster.converge()
    only = next(iter(cluster.rss()))

    def pause_and_change(d: Obj) -> None:
        d["spec"]["paused"] = True
        d["spec"]["replicas"] = 4
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"

    cluster.edit("web", pause_and_change)
    await cluster.converge()
    rss = cluster.rss()
    assert list(rss) == [only] and rss[only]["spec"]["replicas"] == 4
    progressing = status_condition(cluster.get(DEPLOY, "web")["status"], "Progressing")
    assert progressing is not None
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "Unknown",
        "DeploymentPaused",
        "Deployment is paused",
    )
    cluster.edit("web", lambda d: d["spec"].update(paused=False))
    await cluster.converge()
    assert len(cluster.rss()) == 2
    status = cluster.get(DEPLOY, "web")["status"]
    assert status["updatedReplicas"] == status["availableReplicas"] == 4


async def test_hash_collision_bumps_collision_count(cluster: Cluster) -> None:
    d = deployment(replicas=1)
    h = compute_hash(cluster.store.create(DEPLOY, d)["spec"]["template"])
    squatter = replicaset(f"web-{h}", 0, {"app": "other"})
    cluster.create(RS, squatter)
    await cluster.converge()
    d = cluster.get(DEPLOY, "web")
    assert d["status"]["collisionCount"] == 1
    names = set(cluster.rss())
    assert f"web-{hash_of(d)}" in names and len(names) == 2


async def test_scaling_mid_rollout_is_proportional(cluster: Cluster) -> None:
    cluster.create(DEPLOY, deployment(replicas=10, strategy=rolling(3, 2)))
    await cluster.converge()
    old_rs = next(iter(cluster.rss()))
    cluster.edit("web", set_image("nginx:2"))
    # one round of the deployment controller only: new RS at 3 (surge), old scaled to 8
    for _ in range(2):
        await cluster.step(cluster.dc, "default/web")
        for name in list(cluster.rss()):
            await cluster.step(cluster.rsc, f"default/{name}")
    rss = cluster.rss()
    new_rs = next(n for n in rss if n != old_rs)
    sizes = (rss[old_rs]["spec"]["replicas"], rss[new_rs]["spec"]["replicas"])
    assert sum(sizes) == 13
    cluster.edit("web", lambda d: d["spec"].update(replicas=20))
    await cluster.step(cluster.dc, "default/web")
    rss = cluster.rss()
    scaled = (rss[old_rs]["spec"]["replicas"], rss[new_rs]["spec"]["replicas"])
    assert sum(scaled) == 20 + 3  # the new size plus maxSurge
    assert scaled[0] > sizes[0] and scaled[1] > sizes[1]
    assert all(rs["metadata"]["annotations"][du.DESIRED_REPLICAS] == "20" for rs in rss.values())
    await cluster.converge()
    assert cluster.get(DEPLOY, "web")["status"]["availableReplicas"] == 20


async def test_manager_end_to_end(store: Store) -> None:
    client = LocalClient(store)
    manager = Manager(client, store.registry, [DeploymentController(), ReplicaSetController()])
    await manager.start()
    try:
        d = await client.create(DEPLOY, deployment("web", replicas=3))
        await manager.wait_idle()
        h = hash_of(d)
        assert [rs["metadata"]["name"] for rs in store.list_objects(RS)] == [f"web-{h}"]
        pods = store.list_objects(POD)
        assert len(pods) == 3
        for pod in pods:
            name = pod["metadata"]["name"]
            assert name.startswith(f"web-{h}-") and len(name) == len(f"web-{h}-") + 5
            stamp = pod["metadata"]["creationTimestamp"]
            status = {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": stamp}],
            }
            await client.update(POD, {**pod, "status": status}, subresource="status")
        await manager.wait_idle()
        status = store.get(DEPLOY, "default", "web")["status"]
        assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (3, 3, 3)
        assert status_condition(status, "Progressing")["reason"] == "NewReplicaSetAvailable"  # type: ignore[index]
        assert all(not errs for errs in manager.errors().values())
    finally:
        await manager.stop()


async def test_adopts_a_matching_orphan_replicaset_and_maps_its_pods(cluster: Cluster) -> None:
    d = deployment(replicas=2)
    h = compute_hash(cluster.create(DEPLOY, d)["spec"]["template"])
    orphan = replicaset(f"web-{h}", 2, {"app": "web", "pod-template-hash": h})
    orphan["metadata"]["labels"] = {"app": "web", "pod-template-hash": h}  # what the selector matches
    cluster.create(RS, orphan)
    await cluster.converge()
    rss = cluster.rss()
    assert list(rss) == [f"web-{h}"]  # adopted as the new ReplicaSet: no second one
    assert rss[f"web-{h}"]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    pod = cluster.active_pods()[0]
    assert list(cluster.dc.watches()[POD](pod)) == ["default/web"]


async def test_deployment_being_deleted_only_updates_status(cluster: Cluster) -> None:
    d = deployment(replicas=2)
    d["metadata"]["finalizers"] = ["example.com/hold"]
    cluster.create(DEPLOY, d)
    await cluster.converge()
    cluster.store.delete(DEPLOY, "default", "web")
    cluster.edit("web", lambda d: d["spec"].update(replicas=5))
    plan = cluster.reconcile(cluster.dc, "default/web")
    assert [type(a).__name__ for a in plan.actions] == ["Update"]  # observedGeneration only
    assert all(rs["spec"]["replicas"] == 2 for rs in cluster.rss().values())


def test_pod_events_reach_the_deployment_through_the_replicaset_owner() -> None:
    from kubewire.controllers.runtime import Caches
    from kubewire.store.informer import Informer, WatchEvent

    informers: dict[str, Informer] = {}
    rs_informer = Informer(None, RS)  # type: ignore[arg-type]  # filled by hand, never run
    adopted = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "legacy",  # not <deployment>-<hash>: found only through its owner reference
            "namespace": "default",
            "uid": "rs-1",
            "resourceVersion": "1",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-1", "controller": True}
            ],
        },
    }
    rs_informer.apply_event(WatchEvent("ADDED", adopted))
    informers[RS.resource_key] = rs_informer
    controller = DeploymentController()
    pod = {
        "metadata": {
            "name": "legacy-abcde",
            "namespace": "default",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "legacy", "uid": "rs-1", "controller": True}
            ],
        }
    }
    mapper = controller.watches()[POD]
    assert list(mapper(pod)) == []  # unbound, the name rule cannot place it
    controller.bind(Caches(informers))
    assert list(mapper(pod)) == ["default/web"]

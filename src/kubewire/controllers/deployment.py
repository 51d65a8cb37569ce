"""The Deployment controller: Deployments roll out through ReplicaSets, as upstream's does.

Upstream ``pkg/controller/deployment``: claim the ReplicaSets the selector matches, find or create
the new ReplicaSet (``<deployment>-<pod-template-hash>``, revision annotations, hash collisions
bump ``status.collisionCount``), then either resize proportionally (a scaling event, or a paused
Deployment), or roll out with the RollingUpdate strategy (maxSurge / maxUnavailable counted on
available replicas) or Recreate (old pods gone before the new ReplicaSet scales up).  Old
ReplicaSets beyond ``revisionHistoryLimit`` are deleted once the rollout completes; status and the
Available / Progressing conditions carry upstream's reasons and messages, so ``kubectl rollout
status`` finishes.

This module claims the ReplicaSets and picks the path (status only, scale, RollingUpdate,
Recreate) as upstream's ``syncDeployment`` does; the steps themselves, run on working copies whose
net effect becomes the plan, live in :mod:`kubewire.controllers.deployment_rollout`.

Pods map to their Deployment through their ReplicaSet's controller reference, read from the
caches the Manager binds (upstream ``getDeploymentForPod``); unbound, by name: a ReplicaSet this
controller made is named ``<deployment>-<hash>`` and its pods carry ``pod-template-hash: <hash>``.
Recreate needs these events to know when the old pods are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from kubewire.api.apps import DEPLOYMENT, REPLICASET
from kubewire.api.meta import clone
from kubewire.api.pod import POD
from kubewire.api.registry import Kind
from kubewire.controllers import deployment_util as du
from kubewire.controllers import indexes
from kubewire.controllers.deployment_rollout import (
    SyncState,
    calculate_status,
    cleanup,
    rollout_recreate,
    rollout_rolling,
    scale,
    stuck_requeue,
)
from kubewire.controllers.podutil import controller_ref, is_terminating, status_condition
from kubewire.controllers.replicaset import (
    claim,
    selects,
    spec_replicas,
)
from kubewire.controllers.runtime import (
    Caches,
    Plan,
    RecordEvent,
    Update,
    controller_owner_key,
    own_key,
    split_key,
)

Obj = dict[str, Any]

ORPHAN_RS_INDEX = "deployment/rs-orphans"  # replicasets without a controller, by namespace


def _pod_keys(pod: Obj) -> Iterable[str]:
    """A pod of ReplicaSet ``<d>-<hash>`` labelled ``pod-template-hash: <hash>`` maps to ``<d>``."""
    ref = controller_ref(pod)
    meta = pod.get("metadata") or {}
    hash_ = (meta.get("labels") or {}).get(du.HASH_LABEL)
    if not ref or ref.get("kind") != "ReplicaSet" or not hash_:
        return []
    rs_name = str(ref.get("name", ""))
    if not rs_name.endswith(f"-{hash_}"):
        return []
    return [f"{meta.get('namespace', '')}/{rs_name[: -len(hash_) - 1]}"]


class DeploymentController:
    """Upstream's deployment-controller as a pure reconciler (see the module docstring)."""

    name = "deployment-controller"

    def __init__(self) -> None:
        self._caches: Caches | None = None

    def bind(self, caches: Caches) -> None:
        self._caches = caches

    def _deployment_of_pod(self, pod: Obj) -> Iterable[str]:
        if self._caches is None:
            return _pod_keys(pod)
        ref = controller_ref(pod)
        if not ref or ref.get("kind") != "ReplicaSet":
            return []
        ns = (pod.get("metadata") or {}).get("namespace", "")
        rs = self._caches.get(REPLICASET, ns, str(ref.get("name", "")))
        return controller_owner_key("Deployment")(rs) if rs is not None else _pod_keys(pod)

    def watches(self) -> Mapping[Kind, Callable[[Obj], Iterable[str]]]:
        return {DEPLOYMENT: own_key, REPLICASET: controller_owner_key("Deployment"), POD: self._deployment_of_pod}

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[Obj], list[str]]]]:
        return {
            REPLICASET: {indexes.CONTROLLER_UID: indexes.controller_uid, indexes.ORPHANS: indexes.orphan_namespace},
            POD: {indexes.CONTROLLER_UID: indexes.controller_uid},
        }

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan:
        ns, name = split_key(key)
        d = caches.get(DEPLOYMENT, ns, name)
        if d is None:
            return Plan()
        plan = Plan()
        selector = (d.get("spec") or {}).get("selector") or {}
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            return self._selecting_all(d, plan)
        uid = d["metadata"].get("uid", "")
        owned = caches.by_index(REPLICASET, indexes.CONTROLLER_UID, uid)
        orphans = caches.by_index(REPLICASET, indexes.ORPHANS, ns)
        rss = claim(REPLICASET, d, owned, orphans, plan, lambda rs: selects(d, rs))
        s = SyncState(d, now, [clone(rs) for rs in rss], clone(d.get("status") or {}), plan)
        if is_terminating(d):
            s.sync_revision(caches, create=False)
            self._sync_status(s)
            return s.finish()
        self._check_paused(s)
        spec = d.get("spec") or {}
        if spec.get("paused") or self._is_scaling_event(s, caches):
            self._sync(s, caches)
        elif du.is_rolling(d):
            rollout_rolling(s, caches)
        else:
            rollout_recreate(s, caches)
        s.plan.requeue_after = stuck_requeue(s) if not s.collided else None
        return s.finish()

    @staticmethod
    def _selecting_all(d: Obj, plan: Plan) -> Plan:
        """Upstream refuses an empty selector: a Warning, and only observedGeneration moves."""
        plan.add(
            RecordEvent(
                d, "Warning", "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required."
            )
        )
        status = clone(d.get("status") or {})
        generation = int(d["metadata"].get("generation") or 0)
        if int(status.get("observedGeneration") or 0) < generation:
            status["observedGeneration"] = generation
            plan.add(Update(DEPLOYMENT, {**d, "status": status}, subresource="status"))
        return plan

    @staticmethod
    def _check_paused(s: SyncState) -> None:
        """Upstream ``checkPausedConditions``: Progressing Unknown while paused, and on resume."""
        if du.progress_deadline(s.d) is None:
            return
        cond = status_condition(s.status, du.PROGRESSING)
        if cond is not None and cond.get("reason") == du.TIMED_OUT_REASON:
            return
        paused_cond = cond is not None and cond.get("reason") == du.PAUSED_REASON
        paused = bool((s.d.get("spec") or {}).get("paused"))
        if paused and not paused_cond:
            new = du.new_condition(du.PROGRESSING, "Unknown", du.PAUSED_REASON, "Deployment is paused", s.now)
            du.set_condition(s.status, new)
        elif not paused and paused_cond:
            new = du.new_condition(du.PROGRESSING, "Unknown", du.RESUMED_REASON, "Deployment is resumed", s.now)
            du.set_condition(s.status, new)

    @staticmethod
    def _is_scaling_event(s: SyncState, caches: Caches) -> bool:
        """Upstream ``isScalingEvent``: an active ReplicaSet was sized for another replica count."""
        s.sync_revision(caches, create=False)
        desired = str(spec_replicas(s.d))
        for rs in du.active(s.all_rss()):
            annotated = du.annotations_of(rs).get(du.DESIRED_REPLICAS)
            if annotated is not None and annotated != desired:
                return True
        return False

    @staticmethod
    def _sync(s: SyncState, caches: Caches) -> None:
        """Upstream ``sync``: resize (proportionally mid-rollout), clean up when paused, status."""
        s.sync_revision(caches, create=False)
        scale(s)
        if (s.d.get("spec") or {}).get("paused"):
            cleanup(s)
        DeploymentController._sync_status(s)

    @staticmethod
    def _sync_status(s: SyncState) -> None:
        """Upstream ``syncDeploymentStatus``: counts and the Available condition only."""
        s.status = calculate_status(s)

"""Deployment rollouts: the steps upstream's deployment controller takes, on working copies.

Upstream ``pkg/controller/deployment`` (``sync.go``, ``rolling.go``, ``recreate.go``,
``progress.go``) writes and re-reads the Deployment and its ReplicaSets at each step.  Here one
reconcile runs the same steps on working copies held by :class:`SyncState` and turns their net
effect into a plan: the new ReplicaSet's Create, one merge Patch per changed ReplicaSet, deletions
of old revisions, the Deployment status (status subresource) and its revision annotation, and the
``ScalingReplicaSet`` Events.  :mod:`kubewire.controllers.deployment` decides which steps run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubewire.api.apps import DEPLOYMENT, REPLICASET
from kubewire.api.meta import clone
from kubewire.api.pod import POD
from kubewire.controllers import deployment_util as du
from kubewire.controllers import indexes
from kubewire.controllers.podutil import compute_hash, is_terminating, status_condition
from kubewire.controllers.replicaset import spec_replicas, status_int
from kubewire.controllers.runtime import (
    Action,
    Caches,
    Create,
    Delete,
    Patch,
    Plan,
    RecordEvent,
    Update,
    owner_reference,
)

Obj = dict[str, Any]


@dataclass
class SyncState:
    """One reconcile's working state: the Deployment's status and the ReplicaSets as upstream's
    sync steps leave them, plus the writes and Events that got them there."""

    d: Obj
    now: datetime
    rss: list[Obj]  # working copies of the claimed ReplicaSets (the new one appended if created)
    status: Obj
    plan: Plan
    created: Obj | None = None
    new_rs: Obj | None = None
    revision_annotation: str | None = None
    collided: bool = False
    synced: bool = False
    dirty: dict[str, Obj] = field(default_factory=dict)  # RS name -> merge patch body
    events: list[RecordEvent] = field(default_factory=list)
    deletes: list[Action] = field(default_factory=list)

    @property
    def old_rss(self) -> list[Obj]:
        return [rs for rs in self.rss if rs is not self.new_rs]

    def all_rss(self) -> list[Obj]:
        return self.old_rss + ([self.new_rs] if self.new_rs is not None else [])

    # ------------------------------------------------------------------ writes

    def _patch_rs(self, rs: Obj, body: Obj) -> None:
        if rs is self.created:
            return  # the Create carries the final object
        patch = self.dirty.setdefault(rs["metadata"]["name"], {})
        for part, values in body.items():
            patch.setdefault(part, {}).update(values)

    def scale(self, rs: Obj, new_scale: int) -> bool:
        """Upstream ``scaleReplicaSet``: set replicas and the replica annotations; an Event when the
        size changes.  Returns whether the size changed."""
        desired = spec_replicas(self.d)
        max_replicas = desired + du.max_surge(self.d)
        old_scale = spec_replicas(rs)
        size_changed = old_scale != new_scale
        if not size_changed and not du.replicas_annotations_need_update(rs, desired, max_replicas):
            return False
        rs.setdefault("spec", {})["replicas"] = new_scale
        du.set_replicas_annotations(rs, desired, max_replicas)
        self._patch_rs(
            rs,
            {
                "metadata": {"annotations": {du.DESIRED_REPLICAS: str(desired), du.MAX_REPLICAS: str(max_replicas)}},
                "spec": {"replicas": new_scale},
            },
        )
        if size_changed:
            op = "up" if old_scale < new_scale else "down"
            name = rs["metadata"]["name"]
            self.events.append(
                RecordEvent(
                    self.d,
                    "Normal",
                    "ScalingReplicaSet",
                    f"Scaled {op} replica set {name} from {old_scale} to {new_scale}",
                )
            )
        return size_changed

    # ------------------------------------------------------------------ the new replica set

    def sync_revision(self, caches: Caches, create: bool) -> None:
        """Upstream ``getAllReplicaSetsAndSyncRevision`` / ``getNewReplicaSet``."""
        if not self.synced:
            self.synced = True
            self.new_rs = self._find_new()
            if self.new_rs is not None:
                self._sync_existing(self.new_rs)
        if self.new_rs is None and create and not self.collided:
            self._create_new(caches)

    def _find_new(self) -> Obj | None:
        template = (self.d.get("spec") or {}).get("template") or {}
        for rs in sorted(self.rss, key=du.by_creation):
            if du.equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template):
                return rs
        return None

    def _new_revision(self) -> int:
        return max((du.revision(rs) for rs in self.old_rss), default=0) + 1

    def _sync_existing(self, rs: Obj) -> None:
        before = clone(rs["metadata"].get("annotations") or {})
        changed = du.new_rs_annotations(self.d, rs, self._new_revision(), exists=True)
        min_ready = int((self.d.get("spec") or {}).get("minReadySeconds") or 0)
        if int((rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
            rs["spec"]["minReadySeconds"] = min_ready
            self._patch_rs(rs, {"spec": {"minReadySeconds": min_ready}})
        if changed:
            after = rs["metadata"]["annotations"]
            self._patch_rs(rs, {"metadata": {"annotations": {k: v for k, v in after.items() if before.get(k) != v}}})
        self.revision_annotation = du.annotations_of(rs).get(du.REVISION, "")
        if du.progress_deadline(self.d) is not None and status_condition(self.status, du.PROGRESSING) is None:
            msg = f'Found new replica set "{rs["metadata"]["name"]}"'
            du.set_condition(
                self.status, du.new_condition(du.PROGRESSING, "True", du.FOUND_NEW_RS_REASON, msg, self.now)
            )

    def _create_new(self, caches: Caches) -> None:
        d, meta = self.d, self.d["metadata"]
        spec = d.get("spec") or {}
        hash_ = compute_hash(spec.get("template") or {}, self.status.get("collisionCount"))
        name = f"{meta['name']}-{hash_}"
        existing = caches.get(REPLICASET, meta.get("namespace", ""), name)
        if existing is not None:
            # Upstream: an RS of that name that is not ours (or has another template) is a hash
            # collision; bump collisionCount so the next sync hashes to a fresh name.
            self.status["collisionCount"] = int(self.status.get("collisionCount") or 0) + 1
            self.collided = True
            return
        rs = self._new_object(name, hash_)
        self.rss.append(rs)
        self.new_rs = self.created = rs
        replicas = du.new_rs_new_replicas(d, self.all_rss(), rs)
        rs["spec"]["replicas"] = replicas
        if replicas > 0:
            self.events.append(
                RecordEvent(d, "Normal", "ScalingReplicaSet", f"Scaled up replica set {name} from 0 to {replicas}")
            )
        self.revision_annotation = du.annotations_of(rs)[du.REVISION]
        if du.progress_deadline(d) is not None:
            msg = f'Created new replica set "{name}"'
            du.set_condition(self.status, du.new_condition(du.PROGRESSING, "True", du.NEW_RS_REASON, msg, self.now))

    def _new_object(self, name: str, hash_: str) -> Obj:
        spec = self.d.get("spec") or {}
        template = clone(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[du.HASH_LABEL] = hash_
        selector = clone(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[du.HASH_LABEL] = hash_
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": self.d["metadata"].get("namespace", ""),
                "labels": dict(template["metadata"]["labels"]),
                "ownerReferences": [owner_reference(self.d)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        du.new_rs_annotations(self.d, rs, self._new_revision(), exists=False)
        return rs

    # ------------------------------------------------------------------ the plan

    def finish(self) -> Plan:
        """Turn the working state into actions: RS writes, status, revision annotation, Events."""
        plan, d = self.plan, self.d
        if self.created is not None:
            plan.add(Create(REPLICASET, self.created))
        ns = d["metadata"].get("namespace", "")
        for name, body in self.dirty.items():
            plan.add(Patch(REPLICASET, ns, name, body))
        plan.extend(self.deletes)
        status = du.compact_status(self.status)
        if status != (d.get("status") or {}):
            plan.add(Update(DEPLOYMENT, {**d, "status": status}, subresource="status"))
        current = du.annotations_of(d).get(du.REVISION)
        if self.revision_annotation and self.revision_annotation != current:
            body = {"metadata": {"annotations": {du.REVISION: self.revision_annotation}}}
            plan.add(Patch(DEPLOYMENT, ns, d["metadata"]["name"], body))
        plan.extend(self.events)
        return plan


# --------------------------------------------------------------------------- scaling


def scale(s: SyncState) -> None:
    """Upstream ``scale``: one active ReplicaSet takes the whole size; a saturated new ReplicaSet
    retires the old ones; otherwise a RollingUpdate spreads the difference proportionally."""
    d, new_rs = s.d, s.new_rs
    desired = spec_replicas(d)
    target = _active_or_latest(s)
    if target is not None:
        if spec_replicas(target) != desired:
            s.scale(target, desired)
        return
    if new_rs is not None and _saturated(d, new_rs):
        for rs in du.active(s.old_rss):
            s.scale(rs, 0)
        return
    if du.is_rolling(d):
        _scale_proportionally(s)


def _active_or_latest(s: SyncState) -> Obj | None:
    """Upstream ``FindActiveOrLatest``."""
    olds = sorted(s.old_rss, key=du.by_creation, reverse=True)
    actives = du.active(olds + ([s.new_rs] if s.new_rs is not None else []))
    if len(actives) == 1:
        return actives[0]
    if not actives:
        return s.new_rs if s.new_rs is not None else (olds[0] if olds else None)
    return None


def _saturated(d: Obj, rs: Obj) -> bool:
    """Upstream ``IsSaturated``: the new ReplicaSet is sized for, and runs, every replica."""
    desired = spec_replicas(d)
    return (
        spec_replicas(rs) == desired
        and du.annotations_of(rs).get(du.DESIRED_REPLICAS) == str(desired)
        and status_int(rs, "availableReplicas") == desired
    )


def _scale_proportionally(s: SyncState) -> None:
    d = s.d
    rss = du.active(s.all_rss())
    allowed = spec_replicas(d) + du.max_surge(d) if spec_replicas(d) > 0 else 0
    to_add = allowed - du.total_replicas(rss)
    if to_add > 0:  # ReplicaSetsBySizeNewer: larger first, then newer first
        rss.sort(key=lambda rs: (-spec_replicas(rs), du.by_creation(rs)))
        rss = _stable_newer(rss)
    elif to_add < 0:  # ReplicaSetsBySizeOlder: larger first, then older first
        rss.sort(key=lambda rs: (-spec_replicas(rs), du.by_creation(rs)))
    sizes: dict[str, int] = {}
    added = 0
    for rs in rss:
        share = du.proportion(rs, d, to_add, added) if to_add else 0
        sizes[rs["metadata"]["name"]] = spec_replicas(rs) + share
        added += share
    if to_add and rss:
        first = rss[0]["metadata"]["name"]
        sizes[first] = max(sizes[first] + to_add - added, 0)
    for rs in rss:
        s.scale(rs, sizes[rs["metadata"]["name"]])


def _stable_newer(rss: list[Obj]) -> list[Obj]:
    """Within equal sizes, newest first."""
    groups: dict[int, list[Obj]] = {}
    for rs in rss:
        groups.setdefault(spec_replicas(rs), []).append(rs)
    out: list[Obj] = []
    for size in sorted(groups, reverse=True):
        out.extend(reversed(groups[size]))
    return out


# --------------------------------------------------------------------------- strategies


def rollout_rolling(s: SyncState, caches: Caches) -> None:
    """Upstream ``rolloutRolling``: scale the new ReplicaSet up within maxSurge, else the old ones
    down within maxUnavailable; clean up history once complete."""
    s.sync_revision(caches, create=True)
    if s.new_rs is None:  # a hash collision: only the collisionCount goes out this time
        return
    if not _reconcile_new(s) and not _reconcile_old(s) and du.deployment_complete(s.d, s.d.get("status") or {}):
        cleanup(s)
    sync_rollout_status(s)


def _reconcile_new(s: SyncState) -> bool:
    new_rs, desired = s.new_rs, spec_replicas(s.d)
    assert new_rs is not None
    if spec_replicas(new_rs) == desired:
        return False
    if spec_replicas(new_rs) > desired:
        return s.scale(new_rs, desired)
    return s.scale(new_rs, du.new_rs_new_replicas(s.d, s.all_rss(), new_rs))


def _reconcile_old(s: SyncState) -> bool:
    """Upstream ``reconcileOldReplicaSets``."""
    new_rs, d = s.new_rs, s.d
    assert new_rs is not None
    olds = du.active(s.old_rss)
    if du.total_replicas(olds) == 0:
        return False
    min_available = spec_replicas(d) - du.max_unavailable(d)
    new_unavailable = spec_replicas(new_rs) - status_int(new_rs, "availableReplicas")
    max_scaled_down = du.total_replicas(s.all_rss()) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return False
    cleaned = _cleanup_unhealthy(s, olds, max_scaled_down)
    scaled = _scale_down_old(s, olds, min_available)
    return cleaned + scaled > 0


def _cleanup_unhealthy(s: SyncState, olds: list[Obj], max_cleanup: int) -> int:
    """Upstream ``cleanupUnhealthyReplicas``: first drop old replicas that are not available."""
    total = 0
    for rs in sorted(olds, key=du.by_creation):
        if total >= max_cleanup:
            break
        replicas, available = spec_replicas(rs), status_int(rs, "availableReplicas")
        if replicas == 0 or replicas == available:
            continue
        count = min(max_cleanup - total, replicas - available)
        s.scale(rs, replicas - count)
        total += count
    return total


def _scale_down_old(s: SyncState, olds: list[Obj], min_available: int) -> int:
    """Upstream ``scaleDownOldReplicaSetsForRollingUpdate``: keep minAvailable available pods."""
    available = du.total_status(s.all_rss(), "availableReplicas")
    if available <= min_available:
        return 0
    budget = available - min_available
    total = 0
    for rs in sorted(olds, key=du.by_creation):
        if total >= budget:
            break
        if spec_replicas(rs) == 0:
            continue
        count = min(spec_replicas(rs), budget - total)
        s.scale(rs, spec_replicas(rs) - count)
        total += count
    return total


def rollout_recreate(s: SyncState, caches: Caches) -> None:
    """Upstream ``rolloutRecreate``: old ReplicaSets to zero, wait for their pods to go, then the
    new ReplicaSet at full size."""
    s.sync_revision(caches, create=False)
    scaled_down = False
    for rs in du.active(s.old_rss):
        scaled_down = s.scale(rs, 0) or scaled_down
    if scaled_down or _old_pods_running(s, caches):
        sync_rollout_status(s)
        return
    s.sync_revision(caches, create=True)
    if s.new_rs is None:
        return
    if spec_replicas(s.new_rs) != spec_replicas(s.d):
        s.scale(s.new_rs, spec_replicas(s.d))
    if du.deployment_complete(s.d, s.d.get("status") or {}):
        cleanup(s)
    sync_rollout_status(s)


def _old_pods_running(s: SyncState, caches: Caches) -> bool:
    """Upstream ``oldPodsRunning``: any old pod not Succeeded/Failed, terminating ones included."""
    if du.total_status(s.old_rss, "replicas") > 0:
        return True
    for rs in s.old_rss:
        for pod in caches.by_index(POD, indexes.CONTROLLER_UID, rs["metadata"].get("uid", "")):
            if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                return True
    return False


def cleanup(s: SyncState) -> None:
    """Upstream ``cleanupDeployment``: delete the oldest revisions beyond revisionHistoryLimit,
    skipping any that still have (or may have) replicas."""
    limit = (s.d.get("spec") or {}).get("revisionHistoryLimit")
    if limit is None:
        return
    cleanable = [rs for rs in s.old_rss if not is_terminating(rs)]
    diff = len(cleanable) - int(limit)
    if diff <= 0:
        return
    cleanable.sort(key=lambda rs: (du.revision(rs), du.by_creation(rs)))
    for rs in cleanable[:diff]:
        meta = rs["metadata"]
        busy = status_int(rs, "replicas") != 0 or spec_replicas(rs) != 0
        if busy or int(meta.get("generation") or 0) > status_int(rs, "observedGeneration"):
            continue
        s.deletes.append(Delete(REPLICASET, meta.get("namespace", ""), meta["name"], uid=meta.get("uid", "")))


# --------------------------------------------------------------------------- status


def calculate_status(s: SyncState) -> Obj:
    """Upstream ``calculateStatus``: counts from the ReplicaSets, the Available condition."""
    d, all_rss = s.d, s.all_rss()
    available = du.total_status(all_rss, "availableReplicas")
    status: Obj = clone(s.status)
    status.update(
        {
            "observedGeneration": int(d["metadata"].get("generation") or 0),
            "replicas": du.total_status(all_rss, "replicas"),
            "updatedReplicas": status_int(s.new_rs, "replicas") if s.new_rs is not None else 0,
            "readyReplicas": du.total_status(all_rss, "readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": max(du.total_replicas(all_rss) - available, 0),
        }
    )
    if available >= spec_replicas(d) - du.max_unavailable(d):
        cond = du.new_condition(
            du.AVAILABLE, "True", du.MIN_AVAILABLE_REASON, "Deployment has minimum availability.", s.now
        )
    else:
        msg = "Deployment does not have minimum availability."
        cond = du.new_condition(du.AVAILABLE, "False", du.MIN_UNAVAILABLE_REASON, msg, s.now)
    du.set_condition(status, cond)
    return status


def sync_rollout_status(s: SyncState) -> None:
    """Upstream ``syncRolloutStatus``: counts plus the Progressing condition's story."""
    d = s.d
    new_status = calculate_status(s)
    deadline = du.progress_deadline(d)
    if deadline is None:
        du.remove_condition(new_status, du.PROGRESSING)
    current = status_condition(s.status, du.PROGRESSING)
    complete = (
        new_status.get("replicas") == new_status.get("updatedReplicas")
        and current is not None
        and current.get("reason") == du.NEW_RS_AVAILABLE_REASON
    )
    rs_name = s.new_rs["metadata"]["name"] if s.new_rs is not None else None
    if deadline is not None and not complete:
        if du.deployment_complete(d, new_status):
            msg = (
                f'ReplicaSet "{rs_name}" has successfully progressed.'
                if rs_name
                else "Deployment has successfully progressed."
            )
            cond = du.new_condition(du.PROGRESSING, "True", du.NEW_RS_AVAILABLE_REASON, msg, s.now)
            du.set_condition(new_status, cond)
        elif du.deployment_progressing(s.status, new_status):
            msg = f'ReplicaSet "{rs_name}" is progressing.' if rs_name else "Deployment is progressing."
            cond = du.new_condition(du.PROGRESSING, "True", du.RS_UPDATED_REASON, msg, s.now)
            if current is not None and current.get("status") == "True":
                cond["lastTransitionTime"] = current.get("lastTransitionTime")
            du.remove_condition(new_status, du.PROGRESSING)
            du.set_condition(new_status, cond)
        elif du.deployment_timed_out(d, new_status, s.now):
            msg = (
                f'ReplicaSet "{rs_name}" has timed out progressing.'
                if rs_name
                else f'Deployment "{d["metadata"]["name"]}" has timed out progressing.'
            )
            cond = du.new_condition(du.PROGRESSING, "False", du.TIMED_OUT_REASON, msg, s.now)
            du.set_condition(new_status, cond)
    s.status = new_status


def stuck_requeue(s: SyncState) -> float | None:
    """Upstream ``requeueStuckDeployment``: look again when the progress deadline would pass."""
    deadline = du.progress_deadline(s.d)
    cond = status_condition(s.status, du.PROGRESSING)
    if deadline is None or cond is None or du.deployment_complete(s.d, s.status):
        return None
    if cond.get("reason") in (du.TIMED_OUT_REASON, du.PAUSED_REASON) or cond.get("status") != "True":
        return None
    since = du.condition_time(cond, "lastUpdateTime")
    if since is None:
        return None
    after = (since - s.now).total_seconds() + deadline
    return max(after, 0.0) + 1.0

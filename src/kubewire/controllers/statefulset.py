"""The StatefulSet controller: stable, ordered pods ``<set>-<ordinal>`` and their rollout.

Follows upstream ``pkg/controller/statefulset`` (``defaultStatefulSetControl.UpdateStatefulSet``):

* pods are named ``<set>-<ordinal>`` for ordinals ``[start, start + replicas)``, with
  ``hostname`` = pod name, ``subdomain`` = ``serviceName`` and the identity labels
  ``statefulset.kubernetes.io/pod-name`` and ``apps.kubernetes.io/pod-index``;
* ``OrderedReady`` (the default) creates one pod at a time, each only once every lower ordinal is
  Running, Ready and available, and removes condemned pods from the highest ordinal down, one at a
  time, only while the others are healthy; ``Parallel`` creates and deletes all at once;
* failed (or succeeded) pods are deleted and recreated;
* template history lives in ControllerRevisions (:mod:`kubewire.controllers.history`); pods carry
  ``controller-revision-hash: <revision name>``; ``RollingUpdate`` deletes, from the highest
  ordinal down to ``partition``, one pod of an old revision at a time after the previous
  replacement is healthy; ``OnDelete`` only uses the new revision for pods it (re)creates;
* status: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
  currentRevision, updateRevision, collisionCount, observedGeneration — counted from the pods the
  informers show, so a second reconcile of unchanged state is an empty plan.

``volumeClaimTemplates`` are ignored: kubewire has no PersistentVolumeClaims.  Orphaned pods are
not adopted, and ``rollingUpdate.maxUnavailable`` (an alpha feature upstream) is not honoured.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubewire.api.apps import CONTROLLER_REVISION, STATEFULSET
from kubewire.api.pod import POD
from kubewire.api.registry import Kind
from kubewire.controllers import history, indexes
from kubewire.controllers.podutil import (
    available_in,
    is_pod_available,
    is_pod_ready,
    is_terminating,
    pod_from_template,
    pod_phase,
)
from kubewire.controllers.runtime import (
    Action,
    Caches,
    Create,
    Delete,
    Patch,
    Plan,
    RecordEvent,
    controller_owner_key,
    own_key,
    split_key,
)

Obj = dict[str, Any]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"  # upstream apps.StatefulSetPodNameLabel
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"  # upstream apps.PodIndexLabel (on by default since 1.28)
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")  # upstream statefulPodRegex


def parent_and_ordinal(pod: Mapping[str, Any]) -> tuple[str, int]:
    """Upstream ``getParentNameAndOrdinal``: (set name, ordinal), or ("", -1) when unparsable."""
    match = _ORDINAL.match(str((pod.get("metadata") or {}).get("name", "")))
    if match is None:
        return "", -1
    return match.group(1), int(match.group(2))


def is_running_and_ready(pod: Mapping[str, Any]) -> bool:
    return pod_phase(pod) == "Running" and is_pod_ready(pod)


def is_running_and_available(pod: Mapping[str, Any], min_ready: int, now: datetime) -> bool:
    return pod_phase(pod) == "Running" and is_pod_available(pod, min_ready, now)


def is_healthy(pod: Mapping[str, Any]) -> bool:
    return is_running_and_ready(pod) and not is_terminating(pod)


def pod_revision(pod: Mapping[str, Any]) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(history.POD_REVISION_LABEL, ""))


def _event(sts: Obj, verb: str, pod_name: str) -> RecordEvent:
    """Upstream ``recordPodEvent``: "create Pod web-0 in StatefulSet web successful"."""
    message = f"{verb.lower()} Pod {pod_name} in StatefulSet {sts['metadata']['name']} successful"
    return RecordEvent(sts, "Normal", f"Successful{verb}", message)


@dataclass
class _Sync:
    """One reconcile's working state."""

    sts: Obj
    now: datetime
    current: Obj
    update: Obj
    plan: Plan = field(default_factory=Plan)

    @property
    def spec(self) -> Obj:
        return dict(self.sts.get("spec") or {})

    @property
    def start(self) -> int:
        return int((self.spec.get("ordinals") or {}).get("start") or 0)

    @property
    def monotonic(self) -> bool:
        return self.spec.get("podManagementPolicy") != "Parallel"

    @property
    def min_ready(self) -> int:
        return int(self.spec.get("minReadySeconds") or 0)

    def add(self, action: Action) -> None:
        self.plan.add(action)


class StatefulSetController:
    """Reconciles StatefulSets into ordinal pods and ControllerRevisions; see the module docstring."""

    name = "statefulset"

    def watches(self) -> Mapping[Kind, Callable[[Obj], Iterable[str]]]:
        owner = controller_owner_key("StatefulSet")
        return {STATEFULSET: own_key, POD: owner, CONTROLLER_REVISION: owner}

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[Obj], list[str]]]]:
        by_uid = {indexes.CONTROLLER_UID: indexes.controller_uid}
        return {POD: by_uid, CONTROLLER_REVISION: by_uid}

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan:
        ns, name = split_key(key)
        sts = caches.get(STATEFULSET, ns, name)
        if sts is None:
            return Plan()  # owned pods and revisions go with the garbage collector
        uid = sts["metadata"].get("uid", "")
        pods = caches.by_index(POD, indexes.CONTROLLER_UID, uid)
        revisions = history.sort_revisions(caches.by_index(CONTROLLER_REVISION, indexes.CONTROLLER_UID, uid))
        existing = {r["metadata"]["name"]: r for r in caches.list(CONTROLLER_REVISION, ns)}
        status = dict(sts.get("status") or {})
        resolution = history.resolve(
            sts, revisions, existing, int(status.get("collisionCount") or 0), history.REVISION_HASH_LABEL
        )
        update = resolution.revision
        current = next((r for r in revisions if r["metadata"]["name"] == status.get("currentRevision")), update)
        sync = _Sync(sts, now, current, update)
        sync.plan.extend(resolution.actions)
        if not (sts.get("metadata") or {}).get("deletionTimestamp"):
            _manage(sync, pods)
        new_status = _status(sync, pods, resolution.collision_count)
        if any(status.get(k) != v for k, v in new_status.items()):
            sync.add(Patch(STATEFULSET, ns, name, {"status": new_status}, subresource="status"))
        live = {current["metadata"]["name"], update["metadata"]["name"], *(pod_revision(p) for p in pods)}
        limit = int(sync.spec.get("revisionHistoryLimit", 10))  # upstream default 10
        sync.plan.extend(history.prune([*revisions, *([] if update in revisions else [update])], live, limit))
        return sync.plan


# ---------------------------------------------------------------------------------- pods


def new_pod(sts: Obj, template: Mapping[str, Any], ordinal: int, revision: str) -> Obj:
    """Upstream ``newStatefulSetPod`` + ``setPodRevision``."""
    name = f"{sts['metadata']['name']}-{ordinal}"
    pod = pod_from_template(sts, template, name=name)
    labels = pod["metadata"]["labels"]
    labels[POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(ordinal)
    labels[history.POD_REVISION_LABEL] = revision
    pod["spec"]["hostname"] = name
    service = (sts.get("spec") or {}).get("serviceName")
    if service:
        pod["spec"]["subdomain"] = service
    return pod


def _versioned_pod(sync: _Sync, ordinal: int) -> Obj:
    """Upstream ``newVersionedStatefulSetPod``: ordinals below the partition keep the current revision."""
    strategy = sync.spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        below = (
            ordinal < sync.start + int((sync.sts.get("status") or {}).get("currentReplicas") or 0)
            if rolling is None
            else ordinal < sync.start + int(rolling.get("partition") or 0)
        )
        if below:
            return new_pod(sync.sts, history.template_of(sync.current), ordinal, sync.current["metadata"]["name"])
    template = (sync.sts.get("spec") or {}).get("template") or {}
    return new_pod(sync.sts, template, ordinal, sync.update["metadata"]["name"])


def _split(sync: _Sync, pods: list[Obj]) -> tuple[dict[int, Obj], list[Obj]]:
    """Pods in the ordinal range by ordinal, and the condemned rest (ascending ordinal)."""
    replicas = int(sync.spec.get("replicas", 1))
    in_range: dict[int, Obj] = {}
    condemned: list[tuple[int, Obj]] = []
    for pod in pods:
        parent, ordinal = parent_and_ordinal(pod)
        if parent != sync.sts["metadata"]["name"] or ordinal < 0:
            continue  # upstream ignores pods whose ordinal cannot be parsed
        if sync.start <= ordinal < sync.start + replicas:
            in_range[ordinal] = pod
        else:
            condemned.append((ordinal, pod))
    return in_range, [p for _, p in sorted(condemned, key=lambda c: c[0])]


def _delete(sync: _Sync, pod: Obj) -> None:
    meta = pod["metadata"]
    sync.add(Delete(POD, meta.get("namespace", ""), meta["name"], uid=meta.get("uid", "")))
    sync.add(_event(sync.sts, "Delete", meta["name"]))


def _manage(sync: _Sync, pods: list[Obj]) -> None:
    """Replicas first, then condemned pods, then the rolling update; stops where upstream blocks."""
    in_range, condemned = _split(sync, pods)
    replicas = int(sync.spec.get("replicas", 1))
    first_unhealthy = _first_unhealthy(sync, in_range, condemned, replicas)
    for ordinal in range(sync.start, sync.start + replicas):
        if _process_replica(sync, ordinal, in_range.get(ordinal)) and sync.monotonic:
            return
    for pod in reversed(condemned):
        if _process_condemned(sync, pod, first_unhealthy) and sync.monotonic:
            return
    _rolling_update(sync, in_range, replicas)


def _first_unhealthy(sync: _Sync, in_range: dict[int, Obj], condemned: list[Obj], replicas: int) -> str:
    for ordinal in range(sync.start, sync.start + replicas):
        pod = in_range.get(ordinal)
        if pod is None or not is_healthy(pod):
            return f"{sync.sts['metadata']['name']}-{ordinal}"
    for pod in condemned:
        if not is_healthy(pod):
            return str(pod["metadata"]["name"])
    return ""


def _process_replica(sync: _Sync, ordinal: int, pod: Obj | None) -> bool:
    """Upstream ``processReplica``; True when a monotonic set must stop here."""
    if pod is None:
        created = _versioned_pod(sync, ordinal)
        sync.add(Create(POD, created))
        sync.add(_event(sync.sts, "Create", created["metadata"]["name"]))
        return True
    name = pod["metadata"]["name"]
    phase = pod_phase(pod)
    if phase in ("Failed", "Succeeded") and not is_terminating(pod):
        ref = f"{sync.sts['metadata'].get('namespace', '')}/{sync.sts['metadata']['name']}"
        if phase == "Failed":
            message = f"StatefulSet {ref} is recreating failed Pod {name}"
            sync.add(RecordEvent(sync.sts, "Warning", "RecreatingFailedPod", message))
        else:
            message = f"StatefulSet {ref} is recreating terminated Pod {name}"
            sync.add(RecordEvent(sync.sts, "Normal", "RecreatingTerminatedPod", message))
        _delete(sync, pod)
        return True
    if is_terminating(pod) or not is_running_and_ready(pod):
        return True
    if not is_running_and_available(pod, sync.min_ready, sync.now):
        sync.plan.requeue_within(available_in(pod, sync.min_ready, sync.now) or float(sync.min_ready))
        return True
    _fix_identity(sync, pod, ordinal)
    return False


def _fix_identity(sync: _Sync, pod: Obj, ordinal: int) -> None:
    """Upstream ``identityMatches`` / ``updateIdentity``: restore the identity labels."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    want = {POD_NAME_LABEL: pod["metadata"]["name"], POD_INDEX_LABEL: str(ordinal)}
    if any(labels.get(k) != v for k, v in want.items()):
        meta = pod["metadata"]
        sync.add(Patch(POD, meta.get("namespace", ""), meta["name"], {"metadata": {"labels": want}}))


def _process_condemned(sync: _Sync, pod: Obj, first_unhealthy: str) -> bool:
    """Upstream ``processCondemned``; True when a monotonic set must stop here."""
    if is_terminating(pod):
        return True
    blocks = sync.monotonic and pod["metadata"]["name"] != first_unhealthy
    if blocks and not is_running_and_ready(pod):
        return True
    if blocks and not is_running_and_available(pod, sync.min_ready, sync.now):
        sync.plan.requeue_within(available_in(pod, sync.min_ready, sync.now) or float(sync.min_ready))
        return True
    _delete(sync, pod)
    return True


def _rolling_update(sync: _Sync, in_range: dict[int, Obj], replicas: int) -> None:
    """Delete the highest-ordinal pod of an old revision at or above the partition, one at a time."""
    strategy = sync.spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return
    partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
    update_name = sync.update["metadata"]["name"]
    for ordinal in range(sync.start + replicas - 1, sync.start + partition - 1, -1):
        pod = in_range.get(ordinal)
        if pod is None:
            return
        if pod_revision(pod) != update_name and not is_terminating(pod):
            _delete(sync, pod)
            return
        if not is_healthy(pod):
            return


# ---------------------------------------------------------------------------------- status


def _status(sync: _Sync, pods: list[Obj], collision_count: int) -> Obj:
    """Upstream ``computeReplicaStatus`` + ``completeRollingUpdate``, over the observed pods."""
    counts = {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "currentReplicas": 0, "updatedReplicas": 0}
    current_name, update_name = sync.current["metadata"]["name"], sync.update["metadata"]["name"]
    for pod in pods:
        if pod_phase(pod):  # upstream isCreated
            counts["replicas"] += 1
        if is_running_and_ready(pod):
            counts["readyReplicas"] += 1
            if is_running_and_available(pod, sync.min_ready, sync.now):
                counts["availableReplicas"] += 1
        if pod_phase(pod) and not is_terminating(pod):
            revision = pod_revision(pod)
            counts["currentReplicas"] += revision == current_name
            counts["updatedReplicas"] += revision == update_name
    rolling = (sync.spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
    if rolling and counts["updatedReplicas"] == counts["replicas"] == counts["readyReplicas"]:
        counts["currentReplicas"] = counts["updatedReplicas"]
        current_name = update_name
    return {
        "observedGeneration": (sync.sts.get("metadata") or {}).get("generation", 0),
        **counts,
        "currentRevision": current_name,
        "updateRevision": update_name,
        "collisionCount": collision_count,
    }

"""The ReplicaSet controller: keep ``spec.replicas`` active pods per ReplicaSet, and its status.

Upstream ``pkg/controller/replicaset``: claim pods (adopt matching orphans, release owned pods whose
labels stopped matching), create the missing pods in slow-start batches, delete the surplus
choosing victims by upstream's ranking (``ActivePodsWithRanks``), and report replicas,
fullyLabeledReplicas, readyReplicas, availableReplicas and observedGeneration through the status
subresource.  Upstream records ``SuccessfulCreate``/``SuccessfulDelete`` Events with the pod name
after the write; a plan cannot know a generated name, so the controller names pods itself
(``<rs>-<5 random chars>``, exactly what ``generateName`` would give) and an ``AlreadyExists``
just requeues the key.

A pod without a controller cannot be mapped to its ReplicaSet without reading the caches, so the
pod handler maps an orphan to the key ``<ns>/pod:<name>``; reconciling that key adopts the orphan
into the oldest matching ReplicaSet, whose own key then counts it (names never contain ``:``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from kubewire.api.apps import REPLICASET
from kubewire.api.meta import clone, parse_time, selector_from_object
from kubewire.api.pod import POD
from kubewire.api.registry import Kind
from kubewire.controllers import indexes
from kubewire.controllers.podutil import (
    available_in,
    controller_ref,
    generate_name_prefix,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    is_terminating,
    pod_from_template,
    pod_ready_since,
)
from kubewire.controllers.runtime import (
    Caches,
    Create,
    Delete,
    Patch,
    Plan,
    RecordEvent,
    Update,
    controller_owner_key,
    own_key,
    owner_reference,
    random_suffix,
    split_key,
)

Obj = dict[str, Any]

# Upstream ``BurstReplicas``: at most this many creates or deletes per sync.
BURST_REPLICAS = 500
# Upstream ``SlowStartInitialBatchSize``: the first batch of creates, doubling after each success.
SLOW_START_INITIAL_BATCH = 1
# Upstream annotation that makes a pod cheaper (lower) or dearer to delete on scale-down.
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

ORPHAN_KEY = "pod:"

# Upstream podPhaseToOrdinal: pending pods go first, running pods last.
_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def _pod_keys(pod: Obj) -> Iterable[str]:
    meta = pod.get("metadata") or {}
    if controller_ref(pod) is None:
        return [f"{meta.get('namespace', '')}/{ORPHAN_KEY}{meta.get('name', '')}"]
    return controller_owner_key("ReplicaSet")(pod)


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def spec_replicas(obj: Mapping[str, Any]) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_int(obj: Mapping[str, Any], field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def creation_time(obj: Mapping[str, Any]) -> datetime | None:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp"))


def selects(owner: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    """Whether ``owner``'s label selector matches ``obj``; an empty selector matches nothing here
    (upstream refuses to let an empty selector claim anything)."""
    raw = (owner.get("spec") or {}).get("selector")
    if not raw or (not raw.get("matchLabels") and not raw.get("matchExpressions")):
        return False
    return selector_from_object(raw).matches(labels_of(obj))


# --------------------------------------------------------------------------- claiming


def adopt_patch(kind: Kind, owner: Obj, obj: Obj) -> Patch:
    """Add ``owner`` as controller of ``obj`` (upstream ``AdoptPod``/``AdoptReplicaSet``)."""
    meta = obj["metadata"]
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner["metadata"]["uid"]]
    refs.append(owner_reference(owner))
    return Patch(kind, meta.get("namespace", ""), meta["name"], {"metadata": {"ownerReferences": refs}})


def release_patch(kind: Kind, owner: Obj, obj: Obj) -> Patch:
    """Drop ``owner``'s reference from ``obj`` (upstream ``ReleasePod``/``ReleaseReplicaSet``)."""
    meta = obj["metadata"]
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner["metadata"]["uid"]]
    return Patch(kind, meta.get("namespace", ""), meta["name"], {"metadata": {"ownerReferences": refs or None}})


def claim(
    kind: Kind, owner: Obj, owned: list[Obj], orphans: list[Obj], plan: Plan, match: Callable[[Obj], bool]
) -> list[Obj]:
    """Upstream ``ClaimObject``: the objects ``owner`` controls after adopting matching orphans and
    releasing owned objects that no longer match; the adopt/release patches go into ``plan``."""
    deleting = is_terminating(owner)
    claimed: list[Obj] = []
    for obj in owned:
        if match(obj):
            claimed.append(obj)
        elif not deleting:
            plan.add(release_patch(kind, owner, obj))
    if not deleting:
        for obj in orphans:
            if not is_terminating(obj) and match(obj):
                plan.add(adopt_patch(kind, owner, obj))
                claimed.append(obj)
    return claimed


# --------------------------------------------------------------------------- victims


def _log_rank(moment: datetime | None, now: datetime) -> int:
    """Upstream LogarithmicScaleDown: durations compare by the integer part of their log2."""
    if moment is None:
        return -1
    seconds = (now - moment).total_seconds()
    return int(math.log2(seconds)) if seconds >= 1 else -1


def _restarts(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((int(s.get("restartCount") or 0) for s in statuses), default=0)


def _deletion_cost(pod: Obj) -> int:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(POD_DELETION_COST, "0")
    try:
        return int(raw)
    except ValueError:
        return 0


def deletion_rank(pod: Obj, doubled_up: int, now: datetime) -> tuple[Any, ...]:
    """Sort key of upstream ``ActivePodsWithRanks``: smaller is deleted first.  Unassigned before
    assigned, Pending < Unknown < Running, not ready before ready, lower deletion cost first, more
    pods on the same node first, more recently ready first, more restarts first, newer first."""
    ready = is_pod_ready(pod)
    phase = (pod.get("status") or {}).get("phase", "")
    return (
        bool((pod.get("spec") or {}).get("nodeName")),
        _PHASE_ORDINAL.get(phase, -1),
        ready,
        _deletion_cost(pod),
        -doubled_up,
        _log_rank(pod_ready_since(pod), now) if ready else 0,
        -_restarts(pod),
        _log_rank(creation_time(pod), now),
        pod["metadata"].get("name", ""),
    )


def pods_to_delete(pods: list[Obj], related: list[Obj], count: int, now: datetime) -> list[Obj]:
    """The ``count`` pods to remove; ``related`` (pods of sibling ReplicaSets included) decide how
    doubled-up a node is, as upstream's ``getPodsRankedByRelatedPodsOnSameNode``."""
    per_node: dict[str, int] = {}
    for pod in related:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and is_pod_active(pod):
            per_node[node] = per_node.get(node, 0) + 1

    def key(pod: Obj) -> tuple[Any, ...]:
        node = (pod.get("spec") or {}).get("nodeName")
        return deletion_rank(pod, per_node.get(node, 0) if node else 0, now)

    return sorted(pods, key=key)[:count]


# --------------------------------------------------------------------------- status


def _fully_labeled(pod: Obj, template_labels: Mapping[str, str]) -> bool:
    labels = labels_of(pod)
    return all(labels.get(k) == v for k, v in template_labels.items())


def replicaset_status(rs: Obj, pods: list[Obj], now: datetime) -> Obj:
    """Upstream ``calculateStatus`` with the API's omitempty rules (``replicas`` is always sent);
    fields kubewire does not manage are kept."""
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    status: Obj = clone(rs.get("status") or {})
    counts = {
        "replicas": len(pods),
        "fullyLabeledReplicas": sum(1 for p in pods if _fully_labeled(p, template_labels)),
        "readyReplicas": sum(1 for p in pods if is_pod_ready(p)),
        "availableReplicas": sum(1 for p in pods if is_pod_available(p, min_ready, now)),
        "observedGeneration": int(rs["metadata"].get("generation") or 0),
    }
    for field, value in counts.items():
        if value or field == "replicas":
            status[field] = value
        else:
            status.pop(field, None)
    return status


def next_available(rs: Obj, pods: list[Obj], now: datetime) -> float | None:
    """Seconds until the next ready pod counts as available (minReadySeconds), if any."""
    min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    waits = [w for w in (available_in(p, min_ready, now) for p in pods) if w is not None]
    return min(waits) if waits else None


# --------------------------------------------------------------------------- controller


class ReplicaSetController:
    """Upstream's replicaset-controller as a pure reconciler (see the module docstring)."""

    name = "replicaset-controller"

    def watches(self) -> Mapping[Kind, Callable[[Obj], Iterable[str]]]:
        return {REPLICASET: own_key, POD: _pod_keys}

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[Obj], list[str]]]]:
        return {
            POD: {indexes.CONTROLLER_UID: indexes.controller_uid, indexes.ORPHANS: indexes.orphan_namespace},
            REPLICASET: {indexes.CONTROLLER_UID: indexes.controller_uid},
        }

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan:
        ns, name = split_key(key)
        if name.startswith(ORPHAN_KEY):
            return self._adopt_orphan(caches, ns, name[len(ORPHAN_KEY) :])
        rs = caches.get(REPLICASET, ns, name)
        if rs is None or is_terminating(rs):
            return Plan()
        plan = Plan()
        uid = rs["metadata"].get("uid", "")
        owned = [p for p in caches.by_index(POD, indexes.CONTROLLER_UID, uid) if is_pod_active(p)]
        orphans = [p for p in caches.by_index(POD, indexes.ORPHANS, ns) if is_pod_active(p)]
        pods = claim(POD, rs, owned, orphans, plan, lambda p: selects(rs, p))
        victims = self._manage_replicas(rs, pods, self._related_pods(caches, rs), plan, now)
        # Upstream counts the victims until their deletion shows up; counting the plan's outcome
        # keeps a Deployment from reading availability that is already on its way out.
        pods = [p for p in pods if p["metadata"].get("uid") not in victims]
        status = replicaset_status(rs, pods, now)
        if status != (rs.get("status") or {}):
            plan.add(Update(REPLICASET, {**rs, "status": status}, subresource="status"))
        plan.requeue_after = next_available(rs, pods, now)
        return plan

    @staticmethod
    def _related_pods(caches: Caches, rs: Obj) -> list[Obj]:
        """Active pods of this ReplicaSet and of its siblings (same controller owner)."""
        owner = controller_ref(rs)
        siblings = caches.by_index(REPLICASET, indexes.CONTROLLER_UID, str(owner.get("uid"))) if owner else [rs]
        pods: list[Obj] = []
        for sibling in siblings:
            pods.extend(caches.by_index(POD, indexes.CONTROLLER_UID, sibling["metadata"].get("uid", "")))
        return pods

    @staticmethod
    def _manage_replicas(rs: Obj, pods: list[Obj], related: list[Obj], plan: Plan, now: datetime) -> set[str]:
        """Upstream ``manageReplicas``: one slow-start batch of creates (the batch doubles as the
        pods show up: 1, 2, 4, …) or the ranked deletes, at most ``BURST_REPLICAS`` either way.
        Returns the uids of the pods it deletes."""
        diff = len(pods) - spec_replicas(rs)
        meta = rs["metadata"]
        victims: set[str] = set()
        if diff < 0:
            batch = min(-diff, BURST_REPLICAS, max(SLOW_START_INITIAL_BATCH, len(pods) + 1))
            template = (rs.get("spec") or {}).get("template") or {}
            prefix = generate_name_prefix(f"{meta['name']}-")
            for _ in range(batch):
                pod_name = prefix + random_suffix()
                plan.add(Create(POD, pod_from_template(rs, template, name=pod_name)))
                plan.add(RecordEvent(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod_name}"))
        elif diff > 0:
            for pod in pods_to_delete(pods, related, min(diff, BURST_REPLICAS), now):
                pmeta = pod["metadata"]
                plan.add(Delete(POD, pmeta.get("namespace", ""), pmeta["name"], uid=pmeta.get("uid", "")))
                plan.add(RecordEvent(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {pmeta['name']}"))
                victims.add(pmeta.get("uid", ""))
        return victims

    @staticmethod
    def _adopt_orphan(caches: Caches, ns: str, pod_name: str) -> Plan:
        """An orphan pod: adopt it into the oldest live ReplicaSet whose selector matches it."""
        pod = caches.get(POD, ns, pod_name)
        plan = Plan()
        if pod is None or controller_ref(pod) is not None or not is_pod_active(pod):
            return plan
        candidates = [rs for rs in caches.list(REPLICASET, ns) if not is_terminating(rs) and selects(rs, pod)]
        if candidates:
            oldest = min(
                candidates, key=lambda rs: (rs["metadata"].get("creationTimestamp", ""), rs["metadata"]["name"])
            )
            plan.add(adopt_patch(POD, oldest, pod))
        return plan

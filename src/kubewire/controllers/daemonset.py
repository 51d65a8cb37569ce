"""The DaemonSet controller: one daemon pod on every eligible node, and its rollout.

Follows upstream ``pkg/controller/daemon`` (``syncDaemonSet``, ``manage``, ``rollingUpdate``):

* a node is eligible when it matches the template's ``nodeSelector`` and required node affinity
  and the pod — with the tolerations the controller adds itself (``AddOrUpdateDaemonPodTolerations``)
  — tolerates its NoSchedule/NoExecute taints; a pod may keep running on a node whose only
  untolerated taints are NoSchedule (``NodeShouldRunDaemonPod``);
* pods are created per node with a generated name ``<ds>-<5 random>``, the labels
  ``controller-revision-hash`` and ``pod-template-generation``, and a required node affinity
  holding the single ``metadata.name`` matchFields term; binding is left to the scheduler, as
  upstream (``ReplaceDaemonSetPodNodeNameNodeAffinity``); pods map to nodes by ``spec.nodeName``
  or, before binding, by that term (``GetTargetNodeName``);
* pods on nodes no longer eligible (or gone) are deleted; of several pods on one node the oldest
  is kept; failed pods are deleted (with a ``FailedDaemonPod`` event) and recreated;
* ``RollingUpdate`` replaces old pods within ``maxUnavailable`` (default 1), or surges new pods
  first within ``maxSurge``; ``OnDelete`` only uses the new template for pods it (re)creates;
* template history lives in ControllerRevisions (:mod:`kubewire.controllers.history`); status
  counts are computed from the nodes and pods the informers show, so a reconcile of unchanged
  state is an empty plan.

Deviation: upstream backs off recreating a failed pod per node exponentially (1 s doubling to
15 min) in controller memory; a pure reconcile has no memory across pod incarnations, so kubewire
waits a fixed 1 s after the failed pod's creation before replacing it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubewire.api.apps import CONTROLLER_REVISION, DAEMONSET
from kubewire.api.core import NODE
from kubewire.api.meta import clone, parse_time
from kubewire.api.pod import POD
from kubewire.api.registry import Kind
from kubewire.controllers import history, indexes
from kubewire.controllers import taints as taints_
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
    random_suffix,
    split_key,
)
from kubewire.store.informer import key_of

Obj = dict[str, Any]

TEMPLATE_GENERATION_LABEL = "pod-template-generation"  # upstream extensions.DaemonSetTemplateGenerationKey
# The annotation apps/v1 carries the internal spec.templateGeneration in (upstream DeprecatedTemplateGeneration).
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
NODE_NAME_FIELD = "metadata.name"  # upstream metav1.ObjectNameField
FAILED_POD_BACKOFF = 1.0  # seconds; upstream failedPodsBackoff's initial delay
_SCHEDULE_EFFECTS = ("NoSchedule", "NoExecute")

# Upstream AddOrUpdateDaemonPodTolerations: daemons survive node conditions that evict or repel others.
_DAEMON_TOLERATIONS: tuple[tuple[str, str], ...] = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
_HOST_NETWORK_TOLERATION = ("node.kubernetes.io/network-unavailable", "NoSchedule")


# ---------------------------------------------------------------------------------- eligibility


def daemon_tolerations(pod_spec: Mapping[str, Any]) -> list[Obj]:
    """The template's tolerations plus the daemon ones (upstream ``AddOrUpdateTolerationInPodSpec``:
    an identical toleration is replaced, any other kept)."""
    tolerations = [dict(t) for t in pod_spec.get("tolerations") or []]
    wanted = list(_DAEMON_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        wanted.append(_HOST_NETWORK_TOLERATION)
    for key, effect in wanted:
        toleration = {"key": key, "operator": "Exists", "effect": effect}
        same = [i for i, t in enumerate(tolerations) if _same_toleration(t, toleration)]
        if same:
            tolerations[same[0]] = toleration
        else:
            tolerations.append(toleration)
    return tolerations


def _same_toleration(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all((a.get(k) or "") == (b.get(k) or "") for k in ("key", "operator", "value", "effect"))


def untolerated_taint(taints: Iterable[Mapping[str, Any]], tolerations: list[Obj], effects: tuple[str, ...]) -> bool:
    """Upstream ``FindMatchingUntoleratedTaint`` restricted to ``effects``."""
    return taints_.first_untolerated(taints, tolerations, effects) is not None


def node_affinity_matches(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """``nodeSelector`` and required node affinity (upstream ``GetRequiredNodeAffinity(pod).Match``)."""
    return taints_.matches_node({"spec": pod_spec}, node)


def should_run(ds: Obj, node: Mapping[str, Any]) -> tuple[bool, bool]:
    """Upstream ``NodeShouldRunDaemonPod``: (should run, should continue running)."""
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    name = (node.get("metadata") or {}).get("name", "")
    if spec.get("nodeName") and spec["nodeName"] != name:
        return False, False
    if not node_affinity_matches(spec, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tolerations = daemon_tolerations(spec)
    if untolerated_taint(taints, tolerations, _SCHEDULE_EFFECTS):
        return False, not untolerated_taint(taints, tolerations, ("NoExecute",))
    return True, True


def target_node(pod: Mapping[str, Any]) -> str:
    """Upstream ``GetTargetNodeName``: the bound node, else the ``metadata.name`` affinity term."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for expr in term.get("matchFields") or []:
            values = expr.get("values") or []
            if expr.get("key") == NODE_NAME_FIELD and expr.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return ""


def node_name_affinity(affinity: Mapping[str, Any] | None, node: str) -> Obj:
    """Upstream ``ReplaceDaemonSetPodNodeNameNodeAffinity``: the required terms become one
    ``metadata.name In [node]`` matchFields term; everything else in the affinity is kept."""
    out = clone(dict(affinity or {}))
    node_affinity = out.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    required["nodeSelectorTerms"] = [{"matchFields": [{"key": NODE_NAME_FIELD, "operator": "In", "values": [node]}]}]
    return out


# ---------------------------------------------------------------------------------- helpers


def template_generation(ds: Mapping[str, Any]) -> str:
    """The template generation upstream keeps in an annotation; kubewire's store does not set
    it, so ``metadata.generation`` stands in."""
    meta = ds.get("metadata") or {}
    value = (meta.get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)
    return str(value) if value else str(meta.get("generation", ""))


def is_updated(pod: Mapping[str, Any], hash_: str, generation: str) -> bool:
    """Upstream ``IsPodUpdated``: the revision hash or the template generation matches."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return (bool(hash_) and labels.get(history.POD_REVISION_LABEL) == hash_) or (
        bool(generation) and labels.get(TEMPLATE_GENERATION_LABEL) == generation
    )


def _order(pod: Mapping[str, Any]) -> tuple[bool, str, str]:
    """Upstream ``podByCreationTimestampAndPhase``: bound pods first, then oldest, then by name."""
    meta = pod.get("metadata") or {}
    return (not (pod.get("spec") or {}).get("nodeName"), meta.get("creationTimestamp") or "", meta.get("name", ""))


def scaled(value: Any, total: int) -> int:
    """Upstream ``GetScaledValueFromIntOrPercent`` rounding up."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return math.ceil(int(value[:-1]) * total / 100)
    return 0


@dataclass
class _Sync:
    ds: Obj
    now: datetime
    hash: str
    nodes: dict[str, Obj]
    by_node: dict[str, list[Obj]]
    plan: Plan = field(default_factory=Plan)

    @property
    def spec(self) -> Obj:
        return dict(self.ds.get("spec") or {})

    @property
    def min_ready(self) -> int:
        return int(self.spec.get("minReadySeconds") or 0)

    @property
    def rolling(self) -> Obj:
        strategy = self.spec.get("updateStrategy") or {}
        return (
            dict(strategy.get("rollingUpdate") or {})
            if strategy.get("type", "RollingUpdate") == "RollingUpdate"
            else {}
        )

    @property
    def surge_allowed(self) -> bool:
        """Upstream ``AllowsSurge``: RollingUpdate with a non-zero maxSurge."""
        return scaled(self.rolling.get("maxSurge", 0), 1) != 0

    def add(self, action: Action) -> None:
        self.plan.add(action)


# ---------------------------------------------------------------------------------- controller


class DaemonSetController:
    """Reconciles DaemonSets into per-node pods and ControllerRevisions; see the module docstring."""

    name = "daemonset"

    def __init__(self) -> None:
        self._caches: Caches | None = None

    def bind(self, caches: Caches) -> None:
        """A node event concerns every DaemonSet, which only the caches list."""
        self._caches = caches

    def _all_daemonsets(self, _node: Obj) -> Iterable[str]:
        # any node change may change every DaemonSet's placement
        return [] if self._caches is None else sorted(key_of(ds) for ds in self._caches.list(DAEMONSET))

    def watches(self) -> Mapping[Kind, Callable[[Obj], Iterable[str]]]:
        owner = controller_owner_key("DaemonSet")
        return {DAEMONSET: own_key, POD: owner, CONTROLLER_REVISION: owner, NODE: self._all_daemonsets}

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[Obj], list[str]]]]:
        by_uid = {indexes.CONTROLLER_UID: indexes.controller_uid}
        return {POD: by_uid, CONTROLLER_REVISION: by_uid}

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan:
        ns, name = split_key(key)
        ds = caches.get(DAEMONSET, ns, name)
        if ds is None:
            return Plan()  # owned pods and revisions go with the garbage collector
        uid = ds["metadata"].get("uid", "")
        pods = caches.by_index(POD, indexes.CONTROLLER_UID, uid)
        revisions = history.sort_revisions(caches.by_index(CONTROLLER_REVISION, indexes.CONTROLLER_UID, uid))
        existing = {r["metadata"]["name"]: r for r in caches.list(CONTROLLER_REVISION, ns)}
        status = dict(ds.get("status") or {})
        collisions = int(status.get("collisionCount") or 0)
        resolution = history.resolve(ds, revisions, existing, collisions, history.POD_REVISION_LABEL)
        nodes = {n["metadata"]["name"]: n for n in caches.list(NODE)}
        by_node: dict[str, list[Obj]] = {}
        for pod in pods:
            by_node.setdefault(target_node(pod), []).append(pod)
        sync = _Sync(ds, now, resolution.hash, nodes, by_node)
        sync.plan.extend(resolution.actions)
        if not (ds.get("metadata") or {}).get("deletionTimestamp"):
            before = len(sync.plan.actions)
            _manage(sync)
            strategy = (sync.spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
            if len(sync.plan.actions) == before and strategy == "RollingUpdate":
                _rolling_update(sync)  # upstream waits for manage's writes (expectations) first
        new_status = _status(sync, resolution.collision_count if resolution.collision_count else None)
        if any(status.get(k) != v for k, v in new_status.items()):
            sync.add(Patch(DAEMONSET, ns, name, {"status": new_status}, subresource="status"))
        live_hashes = {(p["metadata"].get("labels") or {}).get(history.POD_REVISION_LABEL) for p in pods}
        live = {resolution.revision["metadata"]["name"]} | {
            r["metadata"]["name"]
            for r in revisions
            if (r["metadata"].get("labels") or {}).get(history.POD_REVISION_LABEL) in live_hashes
        }
        limit = int(sync.spec.get("revisionHistoryLimit", 10))  # upstream default 10
        sync.plan.extend(history.prune(revisions, live, limit))
        return sync.plan


# ---------------------------------------------------------------------------------- manage


def new_pod(ds: Obj, node: str, hash_: str) -> Obj:
    """Upstream ``CreatePodTemplate`` + ``ReplaceDaemonSetPodNodeNameNodeAffinity``, named by us."""
    template = (ds.get("spec") or {}).get("template") or {}
    name = f"{ds['metadata']['name'][:57]}-{random_suffix()}"  # 63-char label limit minus "-xxxxx"
    pod = pod_from_template(ds, template, name=name)
    labels = pod["metadata"]["labels"]
    labels[history.POD_REVISION_LABEL] = hash_
    generation = template_generation(ds)
    if generation:
        labels[TEMPLATE_GENERATION_LABEL] = generation
    spec = pod["spec"]
    spec["tolerations"] = daemon_tolerations(spec)
    spec["affinity"] = node_name_affinity(spec.get("affinity"), node)
    return pod


def _create(sync: _Sync, node: str) -> None:
    pod = new_pod(sync.ds, node, sync.hash)
    sync.add(Create(POD, pod))
    sync.add(RecordEvent(sync.ds, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}"))


def _delete(sync: _Sync, pod: Obj) -> None:
    meta = pod["metadata"]
    sync.add(Delete(POD, meta.get("namespace", ""), meta["name"], uid=meta.get("uid", "")))
    sync.add(RecordEvent(sync.ds, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}"))


def _manage(sync: _Sync) -> None:
    """Upstream ``manage``: create where missing, delete where not wanted or surplus."""
    for name in sorted(sync.nodes):
        _pods_should_be_on_node(sync, sync.nodes[name], sync.by_node.get(name, []))
    for name, pods in sorted(sync.by_node.items()):
        if name not in sync.nodes:  # the node is gone (upstream leaves bound ones to the pod GC)
            for pod in pods:
                if not is_terminating(pod):
                    _delete(sync, pod)


def _pods_should_be_on_node(sync: _Sync, node: Obj, pods: list[Obj]) -> None:
    run, keep = should_run(sync.ds, node)
    name = node["metadata"]["name"]
    if run and not pods:
        _create(sync, name)
        return
    if not keep:
        for pod in pods:
            if not is_terminating(pod):
                _delete(sync, pod)
        return
    running = [p for p in pods if not is_terminating(p) and not _handle_finished(sync, p, name)]
    if not sync.surge_allowed:
        for pod in sorted(running, key=_order)[1:]:
            _delete(sync, pod)
        return
    if not running:
        if run and not [p for p in pods if not is_terminating(p)]:
            _create(sync, name)
        return
    _prune_surge(sync, running)


def _handle_finished(sync: _Sync, pod: Obj, node: str) -> bool:
    """Failed and succeeded pods are deleted (failed ones after the backoff); True when finished."""
    phase = pod_phase(pod)
    if phase == "Succeeded":
        _delete(sync, pod)
        return True
    if phase != "Failed":
        return False
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
    if created is not None:
        wait = (created + timedelta(seconds=FAILED_POD_BACKOFF) - sync.now).total_seconds()
        if wait > 0:
            sync.plan.requeue_within(wait)
            return True
    meta = pod["metadata"]
    message = f"Found failed daemon pod {meta.get('namespace', '')}/{meta['name']} on node {node}, will try to kill it"
    sync.add(RecordEvent(sync.ds, "Warning", "FailedDaemonPod", message))
    _delete(sync, pod)
    return True


def _prune_surge(sync: _Sync, running: list[Obj]) -> None:
    """With surge, keep the oldest new and the oldest old pod; the old one goes once the new is available."""
    oldest_new: Obj | None = None
    oldest_old: Obj | None = None
    for pod in sorted(running, key=_order):
        is_new = (pod["metadata"].get("labels") or {}).get(history.POD_REVISION_LABEL) == sync.hash
        if is_new and oldest_new is None:
            oldest_new = pod
        elif not is_new and oldest_old is None:
            oldest_old = pod
        else:
            _delete(sync, pod)
    if oldest_new is None or oldest_old is None:
        return
    if not is_pod_ready(oldest_old) or is_pod_available(oldest_new, sync.min_ready, sync.now):
        _delete(sync, oldest_old)


# ---------------------------------------------------------------------------------- rolling update


def _node_pods(sync: _Sync) -> dict[str, list[Obj]]:
    """Pods by node, plus an empty entry for every node that should run one (``updatedDesiredNodeCounts``)."""
    out = {name: list(pods) for name, pods in sync.by_node.items()}
    for name, node in sync.nodes.items():
        if should_run(sync.ds, node)[0]:
            out.setdefault(name, [])
    return out


def _desired(sync: _Sync) -> int:
    return sum(1 for node in sync.nodes.values() if should_run(sync.ds, node)[0])


def _updated_and_old(sync: _Sync, pods: list[Obj]) -> tuple[Obj | None, Obj | None, bool]:
    """Upstream ``findUpdatedPodsOnNode``: (new, old, ok); not ok with two of either kind."""
    generation = template_generation(sync.ds)
    new: Obj | None = None
    old: Obj | None = None
    for pod in pods:
        if is_terminating(pod):
            continue
        if is_updated(pod, sync.hash, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def _rolling_update(sync: _Sync) -> None:
    desired = _desired(sync)
    max_surge = scaled(sync.rolling.get("maxSurge", 0), desired)
    max_unavailable = scaled(sync.rolling.get("maxUnavailable", 1), desired)
    if max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1  # upstream's guard against a stuck rollout
    if max_surge == 0:
        _replace_within_unavailable(sync, max_unavailable)
    else:
        _surge(sync, max_surge)


def _available(sync: _Sync, pod: Obj) -> bool:
    if is_pod_available(pod, sync.min_ready, sync.now):
        return True
    wait = available_in(pod, sync.min_ready, sync.now)
    if wait is not None:
        sync.plan.requeue_within(wait)
    return False


def _replace_within_unavailable(sync: _Sync, max_unavailable: int) -> None:
    unavailable = 0
    replace: list[Obj] = []
    candidates: list[Obj] = []
    for _name, pods in sorted(_node_pods(sync).items()):
        new, old, ok = _updated_and_old(sync, pods)
        if not ok or (new is None) == (old is None):
            unavailable += 1  # the manage loop owns this node for now
        elif new is not None:
            unavailable += not _available(sync, new)
        elif old is not None:
            if not is_pod_available(old, sync.min_ready, sync.now):
                replace.append(old)
            elif unavailable < max_unavailable:
                candidates.append(old)
    room = min(max(max_unavailable - unavailable, 0), len(candidates))
    for pod in replace + candidates[:room]:
        _delete(sync, pod)


def _surge(sync: _Sync, max_surge: int) -> None:
    surging = 0
    create: list[str] = []
    candidates: list[str] = []
    for name, pods in sorted(_node_pods(sync).items()):
        new, old, ok = _updated_and_old(sync, pods)
        if not ok or old is None:
            continue
        if new is None:
            eligible = name in sync.nodes and should_run(sync.ds, sync.nodes[name])[0]
            if not eligible:
                _delete(sync, old)  # out of date and no longer wanted here: no replacement
            elif not is_pod_available(old, sync.min_ready, sync.now):
                create.append(name)  # replacing an unavailable pod costs no surge
            else:
                candidates.append(name)
        elif not _available(sync, new):
            surging += 1
        else:
            _delete(sync, old)
    room = min(max(max_surge - surging, 0), len(candidates))
    for name in create + candidates[:room]:
        _create(sync, name)


# ---------------------------------------------------------------------------------- status


def _status(sync: _Sync, collision_count: int | None) -> Obj:
    """Upstream ``updateDaemonSetStatus``: counted per node from the oldest daemon pod there."""
    counts = dict.fromkeys(
        (
            "desiredNumberScheduled",
            "currentNumberScheduled",
            "numberMisscheduled",
            "numberReady",
            "numberAvailable",
            "updatedNumberScheduled",
        ),
        0,
    )
    generation = template_generation(sync.ds)
    for name, node in sorted(sync.nodes.items()):
        run, _ = should_run(sync.ds, node)
        pods = sorted(sync.by_node.get(name, []), key=_order)
        if not run:
            counts["numberMisscheduled"] += bool(pods)
            continue
        counts["desiredNumberScheduled"] += 1
        if not pods:
            continue
        counts["currentNumberScheduled"] += 1
        pod = pods[0]
        if is_pod_ready(pod):
            counts["numberReady"] += 1
            if _available(sync, pod):
                counts["numberAvailable"] += 1
        counts["updatedNumberScheduled"] += is_updated(pod, sync.hash, generation)
    out: Obj = {
        "observedGeneration": (sync.ds.get("metadata") or {}).get("generation", 0),
        **counts,
        "numberUnavailable": counts["desiredNumberScheduled"] - counts["numberAvailable"],
    }
    if collision_count is not None:
        out["collisionCount"] = collision_count
    return out

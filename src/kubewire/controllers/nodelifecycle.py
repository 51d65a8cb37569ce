"""Node lifecycle: node health from heartbeats, condition taints, and taint-based eviction.

Upstream splits this between ``pkg/controller/nodelifecycle`` and ``pkg/controller/tainteviction``;
here one reconcile per node does both, from the node, its ``kube-node-lease`` Lease and the pods
bound to it:

* **health** — the last heartbeat is the later of the Lease's ``renewTime`` and the Ready
  condition's ``lastHeartbeatTime``.  Once it is older than the grace period every node condition
  goes ``Unknown`` (``NodeStatusUnknown``, "Kubelet stopped posting node status.";
  ``NodeStatusNeverUpdated`` for a condition the kubelet never posted) and a ``NodeNotReady``
  Event is recorded.  A timer (``requeue_after``) fires when the grace period runs out, so no
  further event is needed.
* **taints** — Ready False gives ``node.kubernetes.io/not-ready`` and Ready Unknown
  ``node.kubernetes.io/unreachable``, each NoSchedule and NoExecute (``timeAdded`` on the latter);
  pressure conditions and ``spec.unschedulable`` give their NoSchedule taints; Ready True removes
  them.  Taints the controller does not own are left alone.
* **pods** — when the node is not ready its pods that were ready get Ready False (upstream
  ``MarkPodsNotReady``, with its ``NodeNotReady`` Event) so they leave the endpoints.
* **eviction** — a pod that does not tolerate a NoExecute taint of the node is deleted at once;
  one tolerating it for ``tolerationSeconds`` is deleted that long after the taint was added
  (a ``TaintManagerEviction`` Event and the ``DisruptionTarget`` condition first, as upstream).

Not modelled: zone disruption modes and eviction rate limits (``--node-eviction-rate``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from kubewire.api.coordination import LEASE, NODE_LEASE_NAMESPACE
from kubewire.api.core import NODE
from kubewire.api.meta import now_rfc3339, parse_time
from kubewire.api.pod import POD
from kubewire.api.registry import Kind
from kubewire.controllers import indexes
from kubewire.controllers import taints as tt
from kubewire.controllers.podutil import condition, is_pod_ready, is_pod_terminal, is_terminating
from kubewire.controllers.runtime import Action, Caches, Delete, Patch, Plan, RecordEvent, own_key

Obj = dict[str, Any]

# Upstream ``--node-monitor-grace-period``: 40s until v1.31, 50s since v1.32 (it must exceed the
# kubelet's lease duration, 40s, by enough to allow a late renewal).
DEFAULT_GRACE_PERIOD = 50.0
# The timer fires this long after the grace period ends: upstream's test is strictly "after".
TIMER_SLACK = 0.001

# The node conditions the controller flips to Unknown (upstream ``nodeConditionTypes`` minus the
# ones it never touches), in the order upstream reports them.
CONDITION_TYPES = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
STOPPED = ("NodeStatusUnknown", "Kubelet stopped posting node status.")
NEVER = ("NodeStatusNeverUpdated", "Kubelet never posted node status.")

# Upstream ``nodeConditionToTaintKeyStatusMap``: condition (type, status) -> NoSchedule taint key.
_CONDITION_TAINTS: dict[tuple[str, str], str] = {
    ("Ready", "False"): tt.TAINT_NOT_READY,
    ("Ready", "Unknown"): tt.TAINT_UNREACHABLE,
    ("MemoryPressure", "True"): tt.TAINT_MEMORY_PRESSURE,
    ("DiskPressure", "True"): tt.TAINT_DISK_PRESSURE,
    ("PIDPressure", "True"): tt.TAINT_PID_PRESSURE,
    ("NetworkUnavailable", "True"): tt.TAINT_NETWORK_UNAVAILABLE,
}
# Ready False / Unknown also get a NoExecute taint (upstream ``doNoExecuteTaintingPass``).
_NO_EXECUTE = {"False": tt.TAINT_NOT_READY, "Unknown": tt.TAINT_UNREACHABLE}
_MANAGED_KEYS = frozenset({*_CONDITION_TAINTS.values(), tt.TAINT_UNSCHEDULABLE})
_READINESS_KEYS = frozenset({tt.TAINT_NOT_READY, tt.TAINT_UNREACHABLE})


def micro_time(value: Any) -> datetime | None:
    """A MicroTime (``2026-01-02T03:04:05.123456Z``) or Time, as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return parse_time(value)


def last_heartbeat(node: Mapping[str, Any], lease: Mapping[str, Any] | None) -> datetime | None:
    """The later of the Lease renewal and the Ready condition's heartbeat."""
    ready = condition(node, "Ready")
    times = [
        micro_time(((lease or {}).get("spec") or {}).get("renewTime")),
        parse_time((ready or {}).get("lastHeartbeatTime")),
    ]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _lease_node(lease: Obj) -> list[str]:
    meta = lease.get("metadata") or {}
    return [str(meta.get("name", ""))] if meta.get("namespace") == NODE_LEASE_NAMESPACE else []


def stale_conditions(node: Mapping[str, Any], now: datetime) -> list[Obj]:
    """The conditions to write once the kubelet stopped posting: each of ``CONDITION_TYPES`` not
    already Unknown, with upstream's reason and message (heartbeat times kept)."""
    stamp = now_rfc3339(now)
    created = (node.get("metadata") or {}).get("creationTimestamp")
    out: list[Obj] = []
    for type_ in CONDITION_TYPES:
        current = condition(node, type_)
        if current is None:
            reason, message = NEVER
            out.append(
                {
                    "type": type_,
                    "status": "Unknown",
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": created,
                    "lastTransitionTime": stamp,
                }
            )
        elif current.get("status") != "Unknown":
            reason, message = STOPPED
            out.append(
                {**current, "status": "Unknown", "reason": reason, "message": message, "lastTransitionTime": stamp}
            )
    return out


def desired_taints(node: Mapping[str, Any], ready_status: str | None, now: datetime) -> list[Obj]:
    """The node's taints with the controller-owned ones made to match its conditions."""
    statuses: dict[str, str] = {}
    for cond in (node.get("status") or {}).get("conditions") or []:
        statuses[str(cond.get("type"))] = str(cond.get("status"))
    if ready_status is not None:
        statuses["Ready"] = ready_status
    wanted: list[Obj] = []
    for (type_, status), key in _CONDITION_TAINTS.items():
        if statuses.get(type_) == status:
            wanted.append({"key": key, "effect": tt.NO_SCHEDULE})
    if ready_status in _NO_EXECUTE:
        wanted.append({"key": _NO_EXECUTE[ready_status], "effect": tt.NO_EXECUTE, "timeAdded": now_rfc3339(now)})
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append({"key": tt.TAINT_UNSCHEDULABLE, "effect": tt.NO_SCHEDULE})
    managed = set(_MANAGED_KEYS)
    if ready_status is None:
        managed -= _READINESS_KEYS  # no Ready condition yet: leave the kubelet's registration taint
    current = tt.node_taints(node)
    kept = [t for t in current if t.get("key") not in managed or any(tt.same_taint(t, w) for w in wanted)]
    added = [w for w in wanted if not any(tt.same_taint(w, t) for t in current)]
    return kept + added


class NodeLifecycleController:
    """The node lifecycle and taint-eviction controller; see the module docstring."""

    name = "node-lifecycle"

    def __init__(self, grace_period: float = DEFAULT_GRACE_PERIOD) -> None:
        self.grace_period = grace_period

    def watches(self) -> Mapping[Kind, Callable[[Obj], Iterable[str]]]:
        return {NODE: own_key, LEASE: _lease_node, POD: indexes.node_name}

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[Obj], list[str]]]]:
        return {POD: {indexes.NODE_NAME: indexes.node_name}}

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan:
        plan = Plan()
        node = caches.get(NODE, "", key)
        if node is None:
            return plan
        lease = caches.get(LEASE, NODE_LEASE_NAMESPACE, key)
        ready = condition(node, "Ready")
        since = last_heartbeat(node, lease) or micro_time((node.get("metadata") or {}).get("creationTimestamp"))
        deadline = since + timedelta(seconds=self.grace_period) if since is not None else None
        stale = deadline is not None and now > deadline
        ready_status = "Unknown" if stale else (ready.get("status") if ready else None)
        ready_since = parse_time(ready.get("lastTransitionTime")) if ready else None
        plan.extend(self._taints(node, ready_status, now))  # first: its patch carries the resourceVersion
        if stale:
            changed = stale_conditions(node, now)
            if changed:
                plan.add(Patch(NODE, "", key, {"status": {"conditions": changed}}, "strategic", "status"))
                if any(c["type"] == "Ready" for c in changed):
                    ready_since = now
        pods = [p for p in caches.by_index(POD, indexes.NODE_NAME, key) if not is_pod_terminal(p)]
        if ready_status in ("False", "Unknown"):
            plan.extend(_mark_pods_not_ready(pods, ready_since, now))
        evictions, wait = _evictions(tt.node_taints(node), pods, now)
        plan.extend(evictions)
        for timer in (wait, self._until(deadline, now, stale)):
            if timer is not None:
                plan.requeue_within(timer)
        return plan

    @staticmethod
    def _until(deadline: datetime | None, now: datetime, stale: bool) -> float | None:
        if deadline is None or stale:
            return None
        return (deadline - now).total_seconds() + TIMER_SLACK

    @staticmethod
    def _taints(node: Obj, ready_status: str | None, now: datetime) -> list[Action]:
        current = tt.node_taints(node)
        wanted = desired_taints(node, ready_status, now)
        if wanted == current:
            return []
        meta = node["metadata"]
        # The resourceVersion makes the merge patch conditional, so a concurrent taint edit
        # (kubectl taint) is never overwritten: the Conflict requeues the node.
        body = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": {"taints": wanted or None}}
        actions: list[Action] = [Patch(NODE, "", meta["name"], body)]
        had = any(t.get("key") in _READINESS_KEYS and t.get("effect") == tt.NO_EXECUTE for t in current)
        has = any(t.get("key") in _READINESS_KEYS and t.get("effect") == tt.NO_EXECUTE for t in wanted)
        if has and not had:
            name = meta["name"]
            actions.append(RecordEvent(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady"))
        return actions


def _mark_pods_not_ready(pods: list[Obj], node_not_ready_since: datetime | None, now: datetime) -> list[Action]:
    """Upstream ``MarkPodsNotReady``: pods still Ready on a node that is not get Ready False.  A pod
    that turned Ready after the node went not ready was set so by a live kubelet: left alone."""
    actions: list[Action] = []
    for pod in pods:
        if not is_pod_ready(pod):
            continue
        pod_since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
        if node_not_ready_since is not None and pod_since is not None and pod_since > node_not_ready_since:
            continue
        meta = pod["metadata"]
        cond = {"type": "Ready", "status": "False", "lastTransitionTime": now_rfc3339(now)}
        actions.append(
            Patch(POD, meta["namespace"], meta["name"], {"status": {"conditions": [cond]}}, "strategic", "status")
        )
        actions.append(RecordEvent(pod, "Warning", "NodeNotReady", "Node is not ready"))
    return actions


def _evictions(taints: list[Obj], pods: list[Obj], now: datetime) -> tuple[list[Action], float | None]:
    """Taint eviction: the deletions due now, and the seconds until the next one falls due."""
    actions: list[Action] = []
    wait: float | None = None
    added = tt.earliest_time_added(taints) or now
    for pod in pods:
        if is_terminating(pod):
            continue
        verdict = tt.no_execute_verdict(taints, tt.pod_tolerations(pod))
        if verdict.keep:
            continue
        if verdict.seconds is not None:
            created = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
            start = max(added, created) if created is not None else added
            left = (start + timedelta(seconds=verdict.seconds) - now).total_seconds()
            if left > 0:
                wait = left if wait is None else min(wait, left)
                continue
        actions.extend(_evict(pod, now))
    return actions, wait


def _evict(pod: Obj, now: datetime) -> list[Action]:
    meta = pod["metadata"]
    ns, name = meta["namespace"], meta["name"]
    target = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": now_rfc3339(now),
    }
    return [
        RecordEvent(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}"),
        Patch(POD, ns, name, {"status": {"conditions": [target]}}, "strategic", "status"),
        Delete(POD, ns, name, uid=str(meta.get("uid", ""))),
    ]

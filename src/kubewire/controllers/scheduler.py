"""The scheduler: binds pending pods to nodes (kube-scheduler's default profile, simplified).

One pod per key.  A pod that names our ``schedulerName`` and has no ``spec.nodeName`` goes
through upstream's filters in upstream's order — NodeUnschedulable, TaintToleration (a node whose
Ready condition is not True counts as carrying the not-ready/unreachable NoSchedule taint the
node lifecycle controller gives it), NodeAffinity (``nodeSelector`` and required node affinity,
including ``matchFields`` on ``metadata.name`` as the DaemonSet controller pins pods), NodePorts
(hostPort conflicts) and NodeResourcesFit (only the ``pods`` count) — and the feasible nodes are
scored to spread: fewest pods of the same controller, then fewest pods, then name.  The pod is
bound through ``pods/binding`` with a ``Scheduled`` Event.  A pod that fits nowhere keeps its
place: ``PodScheduled`` False/``Unschedulable`` and a ``FailedScheduling`` Event in upstream's
words (``0/3 nodes are available: ...``), written only when the message changes.

Node changes, and the removal of bound pods, make room: they requeue every pending pod, which the
``pending`` index of the pod informer lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubewire.api.core import NODE
from kubewire.api.meta import now_rfc3339
from kubewire.api.pod import POD
from kubewire.api.registry import Kind
from kubewire.controllers import taints as tt
from kubewire.controllers.podutil import condition, controller_ref, is_pod_terminal, is_terminating
from kubewire.controllers.runtime import Bind, Caches, Patch, Plan, RecordEvent, split_key
from kubewire.store.informer import key_of

Obj = dict[str, Any]

DEFAULT_SCHEDULER = "default-scheduler"
INDEX_PENDING = "scheduler/pending"  # pending pod -> its schedulerName
INDEX_NODE = "scheduler/nodeName"  # bound pod -> its node
# Upstream ``podMaxInUnschedulablePodsDuration``: an unschedulable pod is retried at least this
# often even when no event suggests it might now fit.
UNSCHEDULABLE_RETRY_SECONDS = 300.0

# Filter failure reasons, verbatim from the upstream plugins.
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"
NO_NODES = "no nodes available to schedule pods"
# Reasons preemption could resolve (upstream: status Unschedulable, not ...AndUnresolvable).
_RESOLVABLE = frozenset({REASON_PORTS, REASON_TOO_MANY_PODS})


def scheduler_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER)


def is_pending(pod: Mapping[str, Any]) -> bool:
    """Waiting for a node: unbound, alive and not held back by scheduling gates."""
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and not spec.get("schedulingGates")
        and not is_terminating(pod)
        and not is_pod_terminal(pod)
    )


def _pending_index(pod: Obj) -> list[str]:
    return [scheduler_name(pod)] if is_pending(pod) else []


def _node_index(pod: Obj) -> list[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    # Upstream's scheduler cache ignores finished pods: they hold no capacity.
    return [str(node)] if node and not is_pod_terminal(pod) else []


# ---------------------------------------------------------------------------------- filters


def _readiness_taint(node: Mapping[str, Any]) -> Obj | None:
    """The NoSchedule taint the node lifecycle controller gives a node whose Ready condition is
    not True, when the node does not carry it yet."""
    ready = condition(node, "Ready")
    status = ready.get("status") if ready else None
    if status == "True":
        return None
    key = tt.TAINT_UNREACHABLE if status == "Unknown" else tt.TAINT_NOT_READY
    taint = {"key": key, "effect": tt.NO_SCHEDULE}
    if any(tt.same_taint(taint, t) for t in tt.node_taints(node)):
        return None
    return taint


def _host_ports(pod: Mapping[str, Any]) -> set[tuple[str, str, int]]:
    ports: set[tuple[str, str, int]] = set()
    spec = pod.get("spec") or {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for port in container.get("ports") or []:
            host_port = port.get("hostPort")
            if isinstance(host_port, int) and host_port > 0:
                ports.add((port.get("protocol") or "TCP", port.get("hostIP") or "0.0.0.0", host_port))
    return ports


def _ports_conflict(wanted: set[tuple[str, str, int]], used: set[tuple[str, str, int]]) -> bool:
    """Upstream NodePorts: same protocol and port, and the host IPs overlap (0.0.0.0 overlaps all)."""
    return any(
        proto == uproto and port == uport and (ip == uip or "0.0.0.0" in (ip, uip))
        for proto, ip, port in wanted
        for uproto, uip, uport in used
    )


def _pod_limit(node: Mapping[str, Any]) -> int | None:
    value = ((node.get("status") or {}).get("allocatable") or {}).get("pods")
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None


def filter_node(pod: Mapping[str, Any], node: Mapping[str, Any], node_pods: list[Obj]) -> str | None:
    """Why ``pod`` cannot go to ``node`` (the first failing filter's reason), or None if it fits."""
    tolerations = tt.pod_tolerations(pod)
    if (node.get("spec") or {}).get("unschedulable"):
        unschedulable = {"key": tt.TAINT_UNSCHEDULABLE, "effect": tt.NO_SCHEDULE}
        if not tt.tolerated(tolerations, unschedulable):
            return REASON_UNSCHEDULABLE
    node_taints = tt.node_taints(node)
    synthetic = _readiness_taint(node)
    if synthetic is not None:
        node_taints = [*node_taints, synthetic]
    taint = tt.first_untolerated(node_taints, tolerations, (tt.NO_SCHEDULE, tt.NO_EXECUTE))
    if taint is not None:
        return f"node(s) had untolerated taint {tt.taint_text(taint)}"
    if not tt.matches_node(pod, node):
        return REASON_AFFINITY
    wanted = _host_ports(pod)
    if wanted:
        used = set().union(*(_host_ports(p) for p in node_pods)) if node_pods else set()
        if _ports_conflict(wanted, used):
            return REASON_PORTS
    limit = _pod_limit(node)
    if limit is not None and len(node_pods) + 1 > limit:
        return REASON_TOO_MANY_PODS
    return None


def fit_error(total: int, reasons: Mapping[str, str]) -> str:
    """Upstream ``FitError.Error()`` plus the default preemption plugin's message: a histogram of
    reasons sorted as strings, then why preemption cannot help (no pod has a lower priority)."""
    counts: dict[str, int] = {}
    for reason in reasons.values():
        counts[reason] = counts.get(reason, 0) + 1
    histogram = sorted(f"{n} {reason}" for reason, n in counts.items())
    message = f"0/{total} nodes are available:"
    if histogram:
        message += f" {', '.join(histogram)}."
    preemption: dict[str, int] = {}
    for reason in reasons.values():
        verdict = (
            "No preemption victims found for incoming pod."
            if reason in _RESOLVABLE
            else "Preemption is not helpful for scheduling."
        )
        preemption[verdict] = preemption.get(verdict, 0) + 1
    parts = sorted(f"{n} {verdict[:-1]}" for verdict, n in preemption.items())
    return f"{message} preemption: 0/{total} nodes are available: {', '.join(parts)}."


# ---------------------------------------------------------------------------------- scheduler


@dataclass(frozen=True)
class _Candidate:
    same_owner: int
    pods: int
    name: str


class Scheduler:
    """The scheduler as a controller; see the module docstring."""

    name = "scheduler"

    def __init__(self, scheduler_name: str = DEFAULT_SCHEDULER) -> None:
        self.scheduler_name = scheduler_name
        self._caches: Caches | None = None

    def bind(self, caches: Caches) -> None:
        """The Node handler needs the pending pods, which only the caches know (the Manager calls
        this before any event; a reconcile also binds, for callers without a Manager)."""
        self._caches = caches

    def _pending_keys(self) -> list[str]:
        if self._caches is None:
            return []  # unbound: every pod is enqueued by its own ADDED event anyway
        return [key_of(p) for p in self._caches.by_index(POD, INDEX_PENDING, self.scheduler_name)]

    def _pod_keys(self, pod: Obj) -> Iterable[str]:
        if is_pending(pod):
            return [key_of(pod)] if scheduler_name(pod) == self.scheduler_name else []
        # A bound pod ending or being deleted frees room on its node.  (Binding events are not
        # worth a requeue of every pending pod; a forced deletion, which carries no
        # deletionTimestamp, is caught by node events or the periodic retry.)
        if is_terminating(pod) or is_pod_terminal(pod):
            return self._pending_keys()
        return []

    def _node_keys(self, node: Obj) -> Iterable[str]:
        return self._pending_keys()

    def watches(self) -> Mapping[Kind, Callable[[Obj], Iterable[str]]]:
        return {POD: self._pod_keys, NODE: self._node_keys}

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[Obj], list[str]]]]:
        return {POD: {INDEX_PENDING: _pending_index, INDEX_NODE: _node_index}}

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan:
        self._caches = caches
        ns, name = split_key(key)
        pod = caches.get(POD, ns, name)
        plan = Plan()
        if pod is None or not is_pending(pod) or scheduler_name(pod) != self.scheduler_name:
            return plan
        nodes = sorted(caches.list(NODE), key=lambda n: str(n["metadata"]["name"]))
        reasons: dict[str, str] = {}
        feasible: list[_Candidate] = []
        owner = controller_ref(pod)
        owner_uid = owner.get("uid") if owner else None
        for node in nodes:
            node_name = str(node["metadata"]["name"])
            node_pods = caches.by_index(POD, INDEX_NODE, node_name)
            reason = filter_node(pod, node, node_pods)
            if reason is not None:
                reasons[node_name] = reason
                continue
            same = sum(1 for p in node_pods if owner_uid and (controller_ref(p) or {}).get("uid") == owner_uid)
            feasible.append(_Candidate(same, len(node_pods), node_name))
        if feasible:
            best = min(feasible, key=lambda c: (c.same_owner, c.pods, c.name))
            uid = str(pod["metadata"].get("uid", ""))
            plan.add(Bind(POD, ns, name, best.name, uid))
            plan.add(RecordEvent(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {best.name}"))
            return plan
        message = fit_error(len(nodes), reasons) if nodes else NO_NODES
        plan.extend(_unschedulable(pod, message, now))
        plan.requeue_after = UNSCHEDULABLE_RETRY_SECONDS
        return plan


def _unschedulable(pod: Obj, message: str, now: datetime) -> list[Patch | RecordEvent]:
    """The PodScheduled condition and the FailedScheduling Event, unless the pod already says so."""
    current = condition(pod, "PodScheduled")
    if (
        current is not None
        and current.get("status") == "False"
        and current.get("reason") == "Unschedulable"
        and current.get("message") == message
    ):
        return []
    transition = current.get("lastTransitionTime") if current and current.get("status") == "False" else None
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "lastProbeTime": None,
        "lastTransitionTime": transition or now_rfc3339(now),
        "reason": "Unschedulable",
        "message": message,
    }
    meta = pod["metadata"]
    body = {"status": {"conditions": [cond]}}
    return [
        Patch(POD, meta.get("namespace", ""), meta["name"], body, "strategic", "status"),
        RecordEvent(pod, "Warning", "FailedScheduling", message),
    ]

"""Taints, tolerations and node selection: the matching rules the scheduler and the node
lifecycle controller share.

Upstream spreads these over ``k8s.io/api/core/v1`` helpers (``Toleration.ToleratesTaint``),
``component-helpers/scheduling/corev1`` (``FindMatchingUntoleratedTaint``, the node selector
and affinity matchers) and the taint-eviction controller (``getMinTolerationTime``).  Keeping
one copy means "tolerated" and "matches the node" mean the same thing when a pod is placed and
when it is evicted.  Pure functions over wire-form dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubewire.api.meta import parse_time

Obj = dict[str, Any]

# Well-known taint keys (upstream ``k8s.io/api/core/v1/well_known_taints.go``).
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
TAINT_DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
TAINT_PID_PRESSURE = "node.kubernetes.io/pid-pressure"
TAINT_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"

NO_SCHEDULE = "NoSchedule"
PREFER_NO_SCHEDULE = "PreferNoSchedule"
NO_EXECUTE = "NoExecute"


def _dicts(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def node_taints(node: Mapping[str, Any]) -> list[Obj]:
    return _dicts((node.get("spec") or {}).get("taints"))


def pod_tolerations(pod: Mapping[str, Any]) -> list[Obj]:
    return _dicts((pod.get("spec") or {}).get("tolerations"))


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Upstream ``Toleration.ToleratesTaint``: the effect matches (an empty effect matches all),
    and either the keys are equal with an equal value (operator ``Equal``, the default) or the
    operator is ``Exists`` (an empty key with ``Exists`` tolerates every taint)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerated(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def first_untolerated(
    taints: Iterable[Mapping[str, Any]], tolerations: Sequence[Mapping[str, Any]], effects: Iterable[str]
) -> Mapping[str, Any] | None:
    """Upstream ``FindMatchingUntoleratedTaint``: the first taint (in node order) with one of
    ``effects`` that no toleration tolerates."""
    wanted = set(effects)
    for taint in taints:
        if taint.get("effect") in wanted and not tolerated(tolerations, taint):
            return taint
    return None


def taint_text(taint: Mapping[str, Any]) -> str:
    """How the scheduler names a taint in its messages: ``{key: value}``."""
    return f"{{{taint.get('key', '')}: {taint.get('value') or ''}}}"


def same_taint(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Upstream ``Taint.MatchTaint``: taints are identified by key and effect."""
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


# ---------------------------------------------------------------------------------- eviction


@dataclass(frozen=True)
class NoExecuteVerdict:
    """What the taint-eviction controller does with a pod: nothing (``keep``), delete now, or
    delete ``seconds`` after the taints appeared."""

    keep: bool
    seconds: int | None = None  # None with keep=False: delete at once


def no_execute_verdict(
    taints: Iterable[Mapping[str, Any]], tolerations: Sequence[Mapping[str, Any]]
) -> NoExecuteVerdict:
    """Upstream taint eviction (``processPodOnNode`` + ``getMinTolerationTime``): without NoExecute
    taints the pod stays; an untolerated one deletes it at once; otherwise the smallest
    ``tolerationSeconds`` among the tolerations used decides (none: tolerated forever; zero or
    less: at once)."""
    no_exec = [t for t in taints if t.get("effect") == NO_EXECUTE]
    if not no_exec:
        return NoExecuteVerdict(keep=True)
    used: list[Mapping[str, Any]] = []
    for taint in no_exec:
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            return NoExecuteVerdict(keep=False)
        used.extend(matching)
    seconds: int | None = None
    for toleration in used:
        value = toleration.get("tolerationSeconds")
        if isinstance(value, int) and not isinstance(value, bool):
            if value <= 0:
                return NoExecuteVerdict(keep=False)
            seconds = value if seconds is None else min(seconds, value)
    if seconds is None:
        return NoExecuteVerdict(keep=True)
    return NoExecuteVerdict(keep=False, seconds=seconds)


def earliest_time_added(taints: Iterable[Mapping[str, Any]], effect: str = NO_EXECUTE) -> datetime | None:
    times = [parse_time(t.get("timeAdded")) for t in taints if t.get("effect") == effect]
    known = [t for t in times if t is not None]
    return min(known) if known else None


# ---------------------------------------------------------------------------------- node selection


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def match_requirement(req: Mapping[str, Any], value: str | None) -> bool:
    """One ``NodeSelectorRequirement`` against a label (or field) value; ``None`` = absent.
    Upstream: ``Gt``/``Lt`` compare integers and need exactly one value."""
    op = req.get("operator")
    values = [str(v) for v in req.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        have, bound = _int(value), _int(values[0])
        if have is None or bound is None:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def _node_fields(node: Mapping[str, Any]) -> dict[str, str]:
    # Upstream supports exactly one field in matchFields: metadata.name.
    return {"metadata.name": str((node.get("metadata") or {}).get("name", ""))}


def match_term(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """A ``NodeSelectorTerm``: all its requirements hold; a term with none matches nothing."""
    exprs = _dicts(term.get("matchExpressions"))
    fields = _dicts(term.get("matchFields"))
    if not exprs and not fields:
        return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    node_fields = _node_fields(node)
    return all(match_requirement(r, labels.get(r.get("key", ""))) for r in exprs) and all(
        match_requirement(r, node_fields.get(r.get("key", ""))) for r in fields
    )


def required_affinity_terms(pod: Mapping[str, Any]) -> list[Obj] | None:
    """The pod's required node-affinity terms, or None when it has no such constraint."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not isinstance(required, dict):
        return None
    return _dicts(required.get("nodeSelectorTerms"))


def matches_node(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Upstream ``NodeAffinity`` filter: ``spec.nodeSelector`` (every label equal) and the
    required node-affinity terms (any term matches)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    terms = required_affinity_terms(pod)
    if terms is None:
        return True
    return any(match_term(term, node) for term in terms)

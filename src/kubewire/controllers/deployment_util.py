"""Pure helpers of the Deployment controller: annotations, revisions, conditions and replica math.

Upstream keeps these in ``pkg/controller/deployment/util``; they are split from
``deployment.py`` so the rollout logic there reads as upstream's sync functions do.  Every name,
annotation, condition reason and message here is upstream's, verbatim.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kubewire.api.meta import clone, now_rfc3339, parse_time
from kubewire.controllers.podutil import status_condition
from kubewire.controllers.replicaset import creation_time, spec_replicas, status_int

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
# Deployment annotations upstream never copies onto its ReplicaSets (``skipCopyAnnotation``).
SKIP_COPY = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
# progressDeadlineSeconds of MaxInt32 means "no deadline" (upstream ``HasProgressDeadline``).
NO_DEADLINE = 2**31 - 1

PROGRESSING = "Progressing"
AVAILABLE = "Available"
REPLICA_FAILURE = "ReplicaFailure"
# Condition reasons, as upstream's deployment util defines them.
NEW_RS_REASON = "NewReplicaSetCreated"
FOUND_NEW_RS_REASON = "FoundNewReplicaSet"
RS_UPDATED_REASON = "ReplicaSetUpdated"
NEW_RS_AVAILABLE_REASON = "NewReplicaSetAvailable"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
PAUSED_REASON = "DeploymentPaused"
RESUMED_REASON = "DeploymentResumed"
MIN_AVAILABLE_REASON = "MinimumReplicasAvailable"
MIN_UNAVAILABLE_REASON = "MinimumReplicasUnavailable"


# --------------------------------------------------------------------------- spec reading


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def revision(rs: Mapping[str, Any]) -> int:
    try:
        return int(annotations_of(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """Upstream ``GetScaledValueFromIntOrPercent``: a percent of ``total``, rounded up or down."""
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value or 0)


def is_rolling(d: Mapping[str, Any]) -> bool:
    strategy = ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate")
    return bool(strategy == "RollingUpdate")


def fenceposts(d: Mapping[str, Any]) -> tuple[int, int]:
    """Upstream ``ResolveFenceposts``: (maxSurge rounded up, maxUnavailable rounded down); both 0
    would deadlock a rollout, so maxUnavailable becomes 1."""
    rolling = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = spec_replicas(d)
    surge = int_or_percent(rolling.get("maxSurge", "25%"), desired, True)
    unavailable = int_or_percent(rolling.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Mapping[str, Any]) -> int:
    return fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Mapping[str, Any]) -> int:
    if not is_rolling(d) or spec_replicas(d) == 0:
        return 0
    return min(fenceposts(d)[1], spec_replicas(d))


def progress_deadline(d: Mapping[str, Any]) -> int | None:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return None if value is None or int(value) == NO_DEADLINE else int(value)


def template_without_hash(template: Mapping[str, Any]) -> Obj:
    copy: Obj = clone(dict(template))
    labels = (copy.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
        if not labels:
            copy["metadata"].pop("labels")
    if "metadata" in copy and not copy["metadata"]:
        copy.pop("metadata")
    return copy


def equal_ignore_hash(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Upstream ``EqualIgnoreHash``: templates equal apart from the pod-template-hash label."""
    return template_without_hash(a) == template_without_hash(b)


# --------------------------------------------------------------------------- replica sets


def total_replicas(rss: Iterable[Obj]) -> int:
    return sum(spec_replicas(rs) for rs in rss)


def total_status(rss: Iterable[Obj], field: str) -> int:
    return sum(status_int(rs, field) for rs in rss)


def active(rss: Iterable[Obj]) -> list[Obj]:
    return [rs for rs in rss if spec_replicas(rs) > 0]


def by_creation(rs: Obj) -> tuple[str, str]:
    """Upstream ``ReplicaSetsByCreationTimestamp``: oldest first, then by name."""
    created = creation_time(rs)
    return (created.isoformat() if created else "", rs["metadata"]["name"])


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = annotations_of(rs)
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> None:
    ann = rs["metadata"].setdefault("annotations", {})
    ann[DESIRED_REPLICAS] = str(desired)
    ann[MAX_REPLICAS] = str(max_replicas)


def new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """Upstream ``SetNewReplicaSetAnnotations``: copy the Deployment's annotations, move the
    revision forward (remembering the old one in revision-history on a rollback), and give a
    ReplicaSet about to be created its replica annotations.  Returns whether anything changed."""
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in annotations_of(d).items():
        if key not in SKIP_COPY and ann.get(key) != value:
            ann[key] = value
            changed = True
    old = ann.get(REVISION, "")
    if revision(rs) < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old:
            history = ann.get(REVISION_HISTORY, "")
            ann[REVISION_HISTORY] = f"{history},{old}" if history else old
    if not exists:
        replicas = spec_replicas(d)
        set_replicas_annotations(rs, replicas, replicas + max_surge(d))
        changed = True
    return changed


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
    """Upstream ``NewRSNewReplicas``: how far the new ReplicaSet may scale up now."""
    desired = spec_replicas(d)
    if not is_rolling(d):
        return desired
    current = total_replicas(all_rss)
    max_total = desired + max_surge(d)
    if current >= max_total:
        return spec_replicas(new_rs)
    scale_up = min(max_total - current, desired - spec_replicas(new_rs))
    return spec_replicas(new_rs) + scale_up


def rs_fraction(rs: Obj, d: Obj) -> int:
    """Upstream ``getReplicaSetFraction``: this ReplicaSet's share of a resize, proportional to
    its size within the deployment size it was last scaled for (its max-replicas annotation)."""
    if spec_replicas(d) == 0:
        return -spec_replicas(rs)
    deployment_replicas = spec_replicas(d) + max_surge(d)
    try:
        annotated = int(annotations_of(rs)[MAX_REPLICAS])
    except (KeyError, ValueError):
        annotated = status_int(d, "replicas")
    if annotated == 0:
        return 0
    new_size = spec_replicas(rs) * deployment_replicas / annotated
    rounded = math.floor(abs(new_size) + 0.5) * (1 if new_size >= 0 else -1)  # Go's math.Round
    return int(rounded) - spec_replicas(rs)


def proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    """Upstream ``GetProportion``."""
    if spec_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = rs_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# --------------------------------------------------------------------------- conditions


def new_condition(type_: str, status: str, reason: str, message: str, now: datetime) -> Obj:
    stamp = now_rfc3339(now)
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def remove_condition(status: Obj, type_: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def set_condition(status: Obj, cond: Obj) -> None:
    """Upstream ``SetDeploymentCondition``: same status and reason is no change; same status keeps
    the transition time; the condition moves to the end of the list."""
    current = status_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def condition_time(cond: Mapping[str, Any], field: str) -> datetime | None:
    return parse_time(cond.get(field))


# --------------------------------------------------------------------------- progress


def deployment_complete(d: Obj, status: Mapping[str, Any]) -> bool:
    """Upstream ``DeploymentComplete``: every replica updated and available, generation observed."""
    desired = spec_replicas(d)
    return (
        int(status.get("updatedReplicas") or 0) == desired
        and int(status.get("replicas") or 0) == desired
        and int(status.get("availableReplicas") or 0) == desired
        and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0)
    )


def deployment_progressing(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Upstream ``DeploymentProgressing``: more updated, ready or available pods, or fewer old ones."""

    def get(status: Mapping[str, Any], field: str) -> int:
        return int(status.get(field) or 0)

    old_old = get(old, "replicas") - get(old, "updatedReplicas")
    new_old = get(new, "replicas") - get(new, "updatedReplicas")
    return (
        get(new, "updatedReplicas") > get(old, "updatedReplicas")
        or new_old < old_old
        or get(new, "readyReplicas") > get(old, "readyReplicas")
        or get(new, "availableReplicas") > get(old, "availableReplicas")
    )


def deployment_timed_out(d: Obj, status: Mapping[str, Any], now: datetime) -> bool:
    """Upstream ``DeploymentTimedOut``: no progress for progressDeadlineSeconds since the
    Progressing condition was last updated."""
    deadline = progress_deadline(d)
    cond = status_condition(status, PROGRESSING)
    if deadline is None or cond is None or cond.get("reason") == NEW_RS_AVAILABLE_REASON:
        return False
    if cond.get("reason") == TIMED_OUT_REASON:
        return True
    since = condition_time(cond, "lastUpdateTime")
    return since is not None and (now - since).total_seconds() > deadline


def compact_status(status: Obj) -> Obj:
    """Drop zero counters, as the API's ``omitempty`` does for DeploymentStatus."""
    counters = (
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    )
    return {k: v for k, v in status.items() if not (k in counters and not v)}

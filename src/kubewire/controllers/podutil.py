"""Pod helpers every workload controller shares: pods from templates, pod states, template hashes.

Upstream spreads these over ``pkg/controller`` (``GetPodFromTemplate``, ``IsPodActive``,
``ComputeHash``) and ``pkg/api/v1/pod`` (``IsPodReady``, ``IsPodAvailable``); the workload
controllers (ReplicaSet, Deployment, StatefulSet, DaemonSet) and the EndpointSlice controller
read pods through these so that "ready", "available" and "active" mean one thing everywhere.
Pure functions over wire-form dicts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson

from kubewire.api.meta import clone, parse_time
from kubewire.controllers.runtime import owner_reference

Obj = dict[str, Any]

# Upstream's ``rand.SafeEncodeString`` alphabet: no vowels, no confusable digits.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_GENERATED_NAME = 63 - 5  # room for the 5-character random suffix (upstream maxGeneratedNameLength)


def pod_from_template(owner: Obj, template: Mapping[str, Any], generate_name: str = "", name: str = "") -> Obj:
    """A new Pod from ``owner``'s pod template: labels, annotations and spec copied, the owner as
    controller.  Either ``name`` or ``generate_name`` (upstream uses ``<owner>-``)."""
    tmeta = template.get("metadata") or {}
    meta: Obj = {
        "namespace": owner["metadata"].get("namespace", ""),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [owner_reference(owner)],
    }
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name_prefix(generate_name or owner["metadata"]["name"] + "-")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": clone(template.get("spec") or {})}


def generate_name_prefix(prefix: str) -> str:
    """Trim a generateName prefix so the generated name stays a valid label (upstream behaviour)."""
    return prefix[:_MAX_GENERATED_NAME]


def status_condition(status: Mapping[str, Any], type_: str) -> Obj | None:
    """A copy of the condition of ``type_`` in a status, if present."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def condition(obj: Mapping[str, Any], type_: str) -> Obj | None:
    """A copy of the object's status condition of ``type_``, if present."""
    return status_condition(obj.get("status") or {}, type_)


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def is_pod_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least ``minReadySeconds`` (upstream ``IsPodAvailable``)."""
    cond = condition(pod, "Ready")
    if cond is None or cond.get("status") != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time(cond.get("lastTransitionTime"))
    return since is not None and since + timedelta(seconds=min_ready_seconds) <= now


def available_in(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> float | None:
    """Seconds until a ready pod becomes available (None when it is not ready or already is)."""
    cond = condition(pod, "Ready")
    if cond is None or cond.get("status") != "True" or min_ready_seconds <= 0:
        return None
    since = parse_time(cond.get("lastTransitionTime"))
    if since is None:
        return None
    left = (since + timedelta(seconds=min_ready_seconds) - now).total_seconds()
    return left if left > 0 else None


def is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def pod_phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def is_pod_terminal(pod: Mapping[str, Any]) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def is_pod_active(pod: Mapping[str, Any]) -> bool:
    """Not finished and not being deleted (upstream ``IsPodActive``)."""
    return not is_pod_terminal(pod) and not is_terminating(pod)


def is_controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = (owner.get("metadata") or {}).get("uid")
    return any(
        ref.get("controller") and ref.get("uid") == uid
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def controller_ref(obj: Mapping[str, Any]) -> Obj | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def safe_encode(text: str) -> str:
    """Upstream ``rand.SafeEncodeString``: each character mapped onto the safe alphabet."""
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in text)


def compute_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """The ``pod-template-hash`` of a template: a 32-bit hash of its canonical form (plus the
    collision count), rendered as upstream renders it (decimal digits, safe-encoded), so names
    look like ``web-7c5ddbdf54``.  Upstream hashes Go's struct dump; kubewire hashes canonical
    JSON, so the values differ from a real cluster's but are stable for equal templates."""
    raw = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count:
        raw += str(collision_count).encode()
    value = int.from_bytes(hashlib.blake2s(raw, digest_size=4).digest(), "big")
    return safe_encode(str(value))


def pod_ready_since(pod: Mapping[str, Any]) -> datetime | None:
    cond = condition(pod, "Ready")
    if cond is None or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime"))

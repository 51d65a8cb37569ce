"""The ``coordination.k8s.io/v1`` API group: Lease.

Kubelets prove they are alive by renewing ``kube-node-lease/<node>`` Leases (upstream's
NodeLease heartbeat, cheaper than rewriting the whole Node status); the node lifecycle
controller reads ``spec.renewTime`` to decide when a node stopped posting.  Leader election
uses the same kind.  Pure data: defaulting (none), validation in upstream's wording, Table row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubewire.api import meta
from kubewire.api.core import AGE_COLUMN, NAME_COLUMN, as_dict, as_str, column, is_int
from kubewire.api.fields import FieldError, Path, invalid_value
from kubewire.api.registry import Kind, Obj

# The namespace kubelets keep their heartbeat Leases in (upstream ``v1.NamespaceNodeLease``).
NODE_LEASE_NAMESPACE = "kube-node-lease"


def validate_lease(obj: Obj, old: Obj | None) -> list[FieldError]:
    """Upstream ``ValidateLease``: object meta, a positive duration, non-negative transitions."""
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    spec = as_dict(obj.get("spec"))
    path = Path("spec")
    duration = spec.get("leaseDurationSeconds")
    if is_int(duration) and duration <= 0:
        errs.append(invalid_value(path.child("leaseDurationSeconds"), duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if is_int(transitions) and transitions < 0:
        errs.append(invalid_value(path.child("leaseTransitions"), transitions, "must be greater than or equal to 0"))
    return errs


def lease_row(obj: Obj, now: datetime) -> list[Any]:
    holder = as_str(as_dict(obj.get("spec")).get("holderIdentity"))
    return [meta.name_of(obj), holder, meta.age(obj, now)]


LEASE = Kind(
    group="coordination.k8s.io",
    version="v1",
    kind="Lease",
    plural="leases",
    namespaced=True,
    validate=validate_lease,
    columns=(NAME_COLUMN, column("Holder"), AGE_COLUMN),
    row=lease_row,
    tracks_generation=False,
)

KINDS: list[Kind] = [LEASE]

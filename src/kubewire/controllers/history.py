"""ControllerRevision bookkeeping shared by the StatefulSet and DaemonSet controllers.

Upstream keeps a workload's template history as ControllerRevisions
(``pkg/controller/history``): each revision is named ``<owner>-<hash>``, carries a monotonically
increasing ``revision`` number and, in ``data``, the patch that turns the owner back into that
revision — ``{"spec": {"template": {..., "$patch": "replace"}}}`` (upstream ``getPatch``).
kubewire stores exactly that shape, so ``kubectl rollout history`` and ``undo`` read it as
upstream's.  This module owns choosing the update revision (reusing an equal one, bumping its
number on a roll back, probing past hash collisions), reading a template back out of a revision,
and pruning history beyond ``revisionHistoryLimit``.  Pure functions over wire-form dicts that
return plan actions; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubewire.api.apps import CONTROLLER_REVISION
from kubewire.api.meta import clone
from kubewire.controllers.podutil import compute_hash, is_controlled_by
from kubewire.controllers.runtime import Action, Create, Delete, Patch, owner_reference

Obj = dict[str, Any]

# Upstream ``history.ControllerRevisionHashLabel``: the StatefulSet's revisions carry their hash here.
REVISION_HASH_LABEL = "controller.kubernetes.io/hash"
# Upstream ``apps.ControllerRevisionHashLabelKey`` (= ``DefaultDaemonSetUniqueLabelKey``): on pods
# (both kinds) and on a DaemonSet's revisions.
POD_REVISION_LABEL = "controller-revision-hash"
# Upstream ``ControllerRevisionName`` truncates the owner name so ``<prefix>-<hash>`` stays a
# valid DNS subdomain (253 characters minus room for the hash).
_MAX_PREFIX = 223


def revision_name(prefix: str, hash_: str) -> str:
    return f"{prefix[:_MAX_PREFIX]}-{hash_}"


def revision_data(template: Mapping[str, Any]) -> Obj:
    """Upstream ``getPatch``: the owner's template as a strategic-merge replace patch."""
    return {"spec": {"template": {**clone(dict(template)), "$patch": "replace"}}}


def template_of(revision: Mapping[str, Any]) -> Obj:
    """The pod template a revision records (the inverse of :func:`revision_data`)."""
    data = (revision.get("data") or {}).get("spec") or {}
    template = clone(dict(data.get("template") or {}))
    template.pop("$patch", None)
    return template


def revision_number(revision: Mapping[str, Any]) -> int:
    value = revision.get("revision")
    return value if isinstance(value, int) else 0


def sort_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    """Oldest first: by revision number, then creation time and name (upstream ``SortControllerRevisions``)."""
    return sorted(
        revisions,
        key=lambda r: (
            revision_number(r),
            (r.get("metadata") or {}).get("creationTimestamp") or "",
            (r.get("metadata") or {}).get("name", ""),
        ),
    )


def new_revision(owner: Obj, template: Mapping[str, Any], number: int, hash_: str, hash_label: str) -> Obj:
    """Upstream ``NewControllerRevision``: template labels plus the hash label, the owner's
    annotations, the owner as controller."""
    meta = owner["metadata"]
    tlabels = dict(((template.get("metadata") or {}).get("labels")) or {})
    rmeta: Obj = {
        "name": revision_name(meta["name"], hash_),
        "namespace": meta.get("namespace", ""),
        "labels": {**tlabels, hash_label: hash_},
        "ownerReferences": [owner_reference(owner)],
    }
    if meta.get("annotations"):
        rmeta["annotations"] = dict(meta["annotations"])
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": rmeta,
        "data": revision_data(template),
        "revision": number,
    }


@dataclass
class Resolution:
    """The update revision for an owner's current template, and what to write to get it."""

    revision: Obj
    hash: str
    collision_count: int
    actions: list[Action] = field(default_factory=list)


def resolve(
    owner: Obj,
    revisions: list[Obj],
    existing_by_name: Mapping[str, Obj],
    collision_count: int,
    hash_label: str,
) -> Resolution:
    """Find or make the revision matching ``owner``'s template (upstream ``getStatefulSetRevisions``
    / DaemonSet ``constructHistory``).

    ``revisions`` are the owner's, oldest first; ``existing_by_name`` every revision in the
    namespace (to detect a name taken by different data, which bumps ``collisionCount``)."""
    template = (owner.get("spec") or {}).get("template") or {}
    data = revision_data(template)
    next_number = (revision_number(revisions[-1]) if revisions else 0) + 1
    equal = [r for r in revisions if r.get("data") == data]
    if equal:
        chosen = equal[-1]
        hash_ = ((chosen.get("metadata") or {}).get("labels") or {}).get(hash_label) or _suffix(chosen, owner)
        if chosen is revisions[-1]:
            return Resolution(chosen, hash_, collision_count)
        # A roll back to an older template: reuse its revision under the next number.
        bumped = {**chosen, "revision": next_number}
        meta = chosen["metadata"]
        patch = Patch(CONTROLLER_REVISION, meta.get("namespace", ""), meta["name"], {"revision": next_number})
        return Resolution(bumped, hash_, collision_count, [patch])
    while True:
        hash_ = compute_hash(template, collision_count)
        taken = existing_by_name.get(revision_name(owner["metadata"]["name"], hash_))
        if taken is None:
            created = new_revision(owner, template, next_number, hash_, hash_label)
            return Resolution(created, hash_, collision_count, [Create(CONTROLLER_REVISION, created)])
        if taken.get("data") == data and is_controlled_by(taken, owner):
            return Resolution(taken, hash_, collision_count)
        collision_count += 1  # upstream: the name is taken by different data, probe the next hash


def _suffix(revision: Obj, owner: Obj) -> str:
    name = str(revision["metadata"]["name"])
    prefix = owner["metadata"]["name"][:_MAX_PREFIX] + "-"
    return name[len(prefix) :] if name.startswith(prefix) else name


def prune(revisions: list[Obj], live: set[str], limit: int) -> list[Action]:
    """Delete the oldest revisions not in ``live`` (names) beyond ``limit`` historic ones
    (upstream StatefulSet ``truncateHistory`` / DaemonSet ``cleanupHistory``)."""
    history = [r for r in revisions if r["metadata"]["name"] not in live]
    excess = len(history) - max(limit, 0)
    actions: list[Action] = []
    for r in history[: max(excess, 0)]:
        meta = r["metadata"]
        actions.append(Delete(CONTROLLER_REVISION, meta.get("namespace", ""), meta["name"], uid=meta.get("uid", "")))
    return actions

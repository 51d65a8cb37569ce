"""API-server semantics over an in-memory object map made durable by :mod:`.backend`.

The store owns what etcd plus the generic registry own upstream: uid, the cluster-wide
resourceVersion, generation, creationTimestamp, optimistic concurrency (Conflict), defaulting and
validation on every write, the status subresource, graceful deletion with finalizers, owner
references with background/foreground/orphan garbage collection, namespace termination, and the
change stream that watches read (with resume from any retained revision and ``410 Gone``).

It is synchronous and single-threaded by design: every call runs to completion on the event
loop thread, so no write ever interleaves with another and no locks are needed.  Watchers get
events through bounded asyncio queues filled synchronously as each write commits.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from kubewire.api.fields import invalid
from kubewire.api.meta import now_rfc3339
from kubewire.api.registry import Kind, Obj, Registry
from kubewire.api.selection import Selection
from kubewire.errors import AlreadyExists, BadRequest, Conflict, Forbidden, Gone, NotFound, StatusError
from kubewire.store.backend import Backend, Change

Clock = Callable[[], datetime]
# An admission step: (operation "CREATE"/"UPDATE", kind, new object, old object, dry_run) ->
# mutate new in place or raise a StatusError.  Allocators (service IPs, node ports) plug in here;
# they must not keep anything when dry_run is true.  Steps run after validation, just before the
# write, so a refusal by an earlier check never reaches them.
Admission = Callable[[str, Kind, Obj, "Obj | None", bool], None]
# Called once an object is really gone from the store (after finalizers and cascades): where
# allocators release what the object held.
RemovalHook = Callable[[Kind, Obj], None]

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MEMORY_HISTORY = 20_000
WATCH_QUEUE_LIMIT = 200_000
FINALIZER_FOREGROUND = "foregroundDeletion"
FINALIZER_ORPHAN = "orphan"
FINALIZER_NAMESPACE = "kubernetes"
_SERVER_META = (
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads(raw: bytes) -> Any:
    return orjson.loads(raw)


# The metadata fields the store itself consults; everything else stays in the wire bytes only.
_KEPT_META = (
    "name",
    "namespace",
    "uid",
    "labels",
    "ownerReferences",
    "finalizers",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "resourceVersion",
)


def trim_meta(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    return {k: meta[k] for k in _KEPT_META if k in meta}


class Entry:
    """A stored object: its wire bytes, plus the metadata the store indexes on.

    Full objects are parsed on demand; keeping only bytes and trimmed metadata in memory costs a
    fraction of keeping every object parsed (see docs/design/0001-store-sqlite-wal.md).
    """

    __slots__ = ("meta", "raw")

    def __init__(self, raw: bytes, meta: Obj) -> None:
        self.raw = raw
        self.meta = meta

    @property
    def obj(self) -> Obj:
        """A freshly parsed copy of the object."""
        return loads(self.raw)  # type: ignore[no-any-return]


class Event:
    """One committed change as watchers see it (objects parsed on demand, never cached)."""

    __slots__ = ("meta", "prev_meta", "prev_raw", "raw", "resource", "rv", "type")

    def __init__(
        self,
        type_: str,
        rv: int,
        resource: str,
        raw: bytes,
        meta: Obj,
        prev_raw: bytes | None = None,
        prev_meta: Obj | None = None,
    ) -> None:
        self.type = type_
        self.rv = rv
        self.resource = resource
        self.raw = raw
        self.meta = meta
        self.prev_raw = prev_raw
        self.prev_meta = prev_meta

    @property
    def obj(self) -> Obj:
        return loads(self.raw)  # type: ignore[no-any-return]

    @property
    def prev(self) -> Obj | None:
        return loads(self.prev_raw) if self.prev_raw is not None else None

    def retyped(self, type_: str) -> Event:
        return Event(type_, self.rv, self.resource, self.raw, self.meta)


@dataclass(eq=False)
class Watcher:
    """A live subscription; the API server drains ``queue`` (None marks the end)."""

    kind: Kind
    selection: Selection
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def offer(self, ev: Event) -> None:
        """Filter one event, turning selection changes into ADDED/DELETED as upstream does."""
        if self.closed:
            return
        sel, kind = self.selection, self.kind
        now = sel.matches_lazy(ev.meta, lambda: ev.obj, kind)
        if ev.type == "MODIFIED" and ev.prev_meta is not None and not sel.trivial():
            was = sel.matches_lazy(ev.prev_meta, lambda: ev.prev or {}, kind)
            if now and not was:
                ev = ev.retyped("ADDED")
            elif was and not now:
                ev = ev.retyped("DELETED")
            elif not now:
                return
        elif not now:
            return
        if self.queue.qsize() >= WATCH_QUEUE_LIMIT:
            self.close()
            return
        self.queue.put_nowait(ev)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """All objects of one cluster; see the module docstring for what it guarantees."""

    def __init__(
        self,
        registry: Registry,
        path: Path | None = None,
        clock: Clock = _utcnow,
        durability: str = "normal",
        history_limit: int = 100_000,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.backend = Backend(path, durability=durability, history_limit=history_limit)
        self.admission: list[Admission] = []
        self.removal_hooks: list[RemovalHook] = []
        self._objects: dict[str, dict[tuple[str, str], Entry]] = {k.resource_key: {} for k in registry.kinds}
        self._by_uid: dict[str, tuple[str, str, str]] = {}
        self._ns_count: dict[str, int] = {}
        self._dependents: dict[str, set[tuple[str, str, str]]] = {}
        self._recent: deque[Event] = deque(maxlen=MEMORY_HISTORY)
        self._watchers: dict[str, set[Watcher]] = {}
        self._pending_gc: deque[tuple[str, str]] = deque()  # (op, uid)
        self._draining = False
        self._load()
        self.rv = self.backend.current_rv()
        self._ensure_system_namespaces()

    # ------------------------------------------------------------------ loading

    def _load(self) -> None:
        for resource, raw in self.backend.load():
            bucket = self._objects.get(resource)
            if bucket is None:
                continue  # a kind this version no longer serves: keep it on disk, untouched
            raw = bytes(raw)
            meta = trim_meta(loads(raw))
            key = (meta.get("namespace", ""), meta["name"])
            bucket[key] = Entry(raw, meta)
            self._index(resource, meta)
            if key[0]:
                self._ns_count[key[0]] = self._ns_count.get(key[0], 0) + 1
        # Work a crash interrupted: deletions in progress resume.
        for bucket in self._objects.values():
            for entry in list(bucket.values()):
                if entry.meta.get("deletionTimestamp"):
                    self._pending_gc.append(("finalize", entry.meta["uid"]))

    def _ensure_system_namespaces(self) -> None:
        ns_kind = self.registry.by_kind("", "v1", "Namespace")
        if ns_kind is None:
            return
        for name in SYSTEM_NAMESPACES:
            if ("", name) not in self._objects[ns_kind.resource_key]:
                self.create(ns_kind, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self._drain()

    def close(self) -> None:
        for watchers in self._watchers.values():
            for w in list(watchers):
                w.close()
        self.backend.close()

    # ------------------------------------------------------------------ indexes

    def _index(self, resource: str, meta: Obj) -> None:
        ident = (resource, meta.get("namespace", ""), meta["name"])
        self._by_uid[meta["uid"]] = ident
        for ref in meta.get("ownerReferences") or []:
            self._dependents.setdefault(ref.get("uid", ""), set()).add(ident)

    def _unindex(self, resource: str, meta: Obj) -> None:
        ident = (resource, meta.get("namespace", ""), meta["name"])
        if self._by_uid.get(meta["uid"]) == ident:
            del self._by_uid[meta["uid"]]
        for ref in meta.get("ownerReferences") or []:
            deps = self._dependents.get(ref.get("uid", ""))
            if deps is not None:
                deps.discard(ident)
                if not deps:
                    del self._dependents[ref.get("uid", "")]

    # ------------------------------------------------------------------ reads

    def _bucket(self, kind: Kind) -> dict[tuple[str, str], Entry]:
        return self._objects[kind.resource_key]

    def _entry(self, kind: Kind, namespace: str, name: str) -> Entry:
        entry = self._bucket(kind).get((namespace if kind.namespaced else "", name))
        if entry is None:
            raise NotFound(kind.plural, name, kind.group)
        return entry

    def get(self, kind: Kind, namespace: str, name: str) -> Obj:
        """A private copy of the object."""
        return self._entry(kind, namespace, name).obj

    def get_raw(self, kind: Kind, namespace: str, name: str) -> bytes:
        return self._entry(kind, namespace, name).raw

    def exists_uid(self, uid: str) -> bool:
        return uid in self._by_uid

    def list_raw(
        self,
        kind: Kind,
        selection: Selection,
        limit: int = 0,
        after: tuple[str, str] | None = None,
    ) -> tuple[list[bytes], int, tuple[str, str] | None]:
        """Matching objects' wire bytes in (namespace, name) order, the list's resourceVersion,
        and the key to continue after when ``limit`` cut the list short."""
        bucket = self._bucket(kind)
        keys = sorted(bucket)
        if selection.namespace and kind.namespaced:
            keys = [k for k in keys if k[0] == selection.namespace]
        if after is not None:
            import bisect

            keys = keys[bisect.bisect_right(keys, after) :]
        out: list[bytes] = []
        trivial = selection.trivial()
        last: tuple[str, str] | None = None
        for key in keys:
            entry = bucket[key]
            if trivial or selection.matches_lazy(entry.meta, lambda e=entry: e.obj, kind):  # type: ignore[misc]
                if limit and len(out) >= limit:
                    return out, self.rv, last
                out.append(entry.raw)
                last = key
        return out, self.rv, None

    def iter_objects(self, kind: Kind) -> Iterator[Obj]:
        """Every stored object of a kind, parsed (for start-up rebuilds such as allocators)."""
        for entry in list(self._bucket(kind).values()):
            yield entry.obj

    def list_objects(self, kind: Kind, selection: Selection | None = None) -> list[Obj]:
        items, _, _ = self.list_raw(kind, selection or Selection())
        return [loads(r) for r in items]

    # ------------------------------------------------------------------ writes

    def _now(self) -> str:
        return now_rfc3339(self.clock())

    def _commit(self, kind: Kind, type_: str, obj: Obj, prev: Entry | None) -> Obj:
        """Assign the next resourceVersion, persist, update memory and notify watchers."""
        self.rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.rv)
        raw = dumps(obj)
        ns, name = meta.get("namespace", ""), meta["name"]
        self.backend.commit(
            [Change(type_, kind.resource_key, ns, name, self.rv, raw, prev.raw if prev is not None else None)]
        )
        bucket = self._bucket(kind)
        meta_view = trim_meta(obj)
        if prev is not None:
            self._unindex(kind.resource_key, prev.meta)
        if type_ == "DELETED":
            bucket.pop((ns, name), None)
            if ns:
                self._ns_count[ns] = self._ns_count.get(ns, 1) - 1
        else:
            if type_ == "ADDED" and ns:
                self._ns_count[ns] = self._ns_count.get(ns, 0) + 1
            bucket[(ns, name)] = Entry(raw, meta_view)
            self._index(kind.resource_key, meta_view)
        ev = Event(
            type_, self.rv, kind.resource_key, raw, meta_view, prev.raw if prev else None, prev.meta if prev else None
        )
        self._recent.append(ev)
        for w in list(self._watchers.get(kind.resource_key, ())):
            w.offer(ev)
        return obj

    def _admit(self, op: str, kind: Kind, new: Obj, old: Obj | None, dry_run: bool) -> None:
        for step in self.admission:
            step(op, kind, new, old, dry_run)

    def _check_namespace(self, kind: Kind, obj: Obj) -> None:
        if not kind.namespaced:
            return
        ns = obj["metadata"].get("namespace", "")
        ns_kind = self.registry.by_kind("", "v1", "Namespace")
        if not ns or ns_kind is None:
            return
        entry = self._bucket(ns_kind).get(("", ns))
        if entry is None:
            raise NotFound("namespaces", ns)
        if entry.meta.get("deletionTimestamp"):
            raise Forbidden(
                kind.plural,
                obj["metadata"].get("name", ""),
                f"unable to create new content in namespace {ns} because it is being terminated",
                kind.group,
            )

    def create(self, kind: Kind, obj: Obj, dry_run: bool = False) -> Obj:
        """Create ``obj`` (caller's dict is not kept); returns the stored object."""
        obj = loads(dumps(obj))
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise BadRequest("metadata must be an object")
        if not kind.namespaced:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(kind, meta)
        for key in _SERVER_META:
            meta.pop(key, None)
        if "status" in kind.subresources:
            obj["status"] = loads(dumps(dict(kind.initial_status))) if kind.initial_status else {}
        kind.default(obj)
        errors = kind.validate(obj, None)
        if errors:
            raise invalid(kind.kind, meta.get("name", ""), errors, kind.group)
        self._check_namespace(kind, obj)
        ident: tuple[str, str] = (meta.get("namespace", "") if kind.namespaced else "", meta["name"])
        if ident in self._bucket(kind):
            raise AlreadyExists(kind.plural, meta["name"], kind.group)
        self._admit("CREATE", kind, obj, None, dry_run)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = self._now()
        if kind.tracks_generation:
            meta["generation"] = 1
        if dry_run:
            meta["resourceVersion"] = ""
            return obj
        stored = self._commit(kind, "ADDED", obj, None)
        self._drain()
        return loads(dumps(stored))  # type: ignore[no-any-return]

    def _generate_name(self, kind: Kind, meta: Obj) -> str:
        alphabet = "bcdfghjklmnpqrstvwxz2456789"  # upstream's utilrand alphabet
        base = str(meta["generateName"])[: 63 - 5]
        for _ in range(10):
            name = base + "".join(secrets.choice(alphabet) for _ in range(5))
            if (meta.get("namespace", ""), name) not in self._bucket(kind):
                return name
        raise AlreadyExists(kind.plural, base, kind.group)

    def update(self, kind: Kind, obj: Obj, subresource: str = "", dry_run: bool = False) -> Obj:
        """Replace an object (PUT).  A given resourceVersion must match (else Conflict)."""
        obj = loads(dumps(obj))
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            raise BadRequest("name is required")
        ns = meta.get("namespace", "") if kind.namespaced else ""
        entry = self._entry(kind, ns, meta["name"])
        old = entry.obj
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise Conflict(
                kind.plural,
                meta["name"],
                "the object has been modified; please apply your changes to the latest version and try again",
                kind.group,
            )
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        new = self._merge_for_update(kind, old, obj, subresource)
        if not subresource:
            kind.default(new)
            if kind.prepare_update is not None:
                kind.prepare_update(new, old)
        errors = kind.validate(new, old)
        if errors:
            raise invalid(kind.kind, meta["name"], errors, kind.group)
        self._admit("UPDATE", kind, new, old, dry_run)
        if dry_run:
            return new
        return self._write_update(kind, entry, new, old)

    def _merge_for_update(self, kind: Kind, old: Obj, obj: Obj, subresource: str) -> Obj:
        old_meta = old["metadata"]
        if subresource == "status":
            merged: Obj = loads(dumps(old))
            merged["status"] = obj.get("status", {})
            return merged
        new = obj
        meta = new["metadata"]
        for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["namespace"] = old_meta.get("namespace", "")
        if not kind.namespaced:
            meta.pop("namespace", None)
        if "status" in kind.subresources:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if old_meta.get("deletionTimestamp"):
            # Upstream: no new finalizers once deletion started, only removals.
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise Forbidden(
                    kind.plural,
                    meta["name"],
                    "no new finalizers can be added if the object is being deleted",
                    kind.group,
                )
        if kind.tracks_generation and _spec_part(new) != _spec_part(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        return new

    def _write_update(self, kind: Kind, entry: Entry, new: Obj, old: Obj) -> Obj:
        new["metadata"]["resourceVersion"] = entry.meta["resourceVersion"]
        if new == old:
            return old  # a no-op write (key order aside): no new revision, as upstream
        stored = self._commit(kind, "MODIFIED", new, entry)
        if stored["metadata"].get("deletionTimestamp"):
            self._pending_gc.append(("finalize", stored["metadata"]["uid"]))
        self._drain()
        return loads(dumps(stored))  # type: ignore[no-any-return]

    def bind(
        self,
        namespace: str,
        name: str,
        node_name: str,
        uid: str = "",
        annotations: dict[str, str] | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """The ``pods/binding`` subresource (upstream ``BindingREST``): set ``spec.nodeName`` — which
        a plain update may not change — and the ``PodScheduled`` condition True; returns the pod.
        Conflict when the pod is bound, being deleted, gated, or another incarnation (``uid``)."""
        kind = self.registry.by_kind("", "v1", "Pod")
        if kind is None:
            raise NotFound("pods", name)
        entry = self._entry(kind, namespace, name)
        old = entry.obj
        meta, spec = old["metadata"], old.get("spec") or {}
        if uid and uid != meta["uid"]:
            raise Conflict(
                kind.plural, name, f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta['uid']}"
            )
        refusal = ""
        if meta.get("deletionTimestamp"):
            refusal = f"pod {name} is being deleted, cannot be assigned to a host"
        elif spec.get("nodeName"):
            refusal = f'pod {name} is already assigned to node "{spec["nodeName"]}"'
        elif spec.get("schedulingGates"):
            refusal = f"pod {name} has non-empty .spec.schedulingGates"
        if refusal:
            raise Conflict("pods/binding", name, refusal)
        new: Obj = loads(entry.raw)
        new.setdefault("spec", {})["nodeName"] = node_name
        if annotations:
            new["metadata"].setdefault("annotations", {}).update(annotations)
        _set_pod_condition(new, {"type": "PodScheduled", "status": "True"}, self._now())
        if dry_run:
            return new
        return self._write_update(kind, entry, new, old)

    def delete(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        grace_period: int | None = None,
        propagation: str | None = None,
        preconditions: dict[str, str] | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Delete (or start deleting) an object.  Returns (object, removed_now)."""
        ns = namespace if kind.namespaced else ""
        entry = self._entry(kind, ns, name)
        obj = loads(entry.raw)
        meta = obj["metadata"]
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise Conflict(
                kind.plural,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}",
                kind.group,
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise Conflict(
                kind.plural,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {meta['resourceVersion']}",
                kind.group,
            )
        if dry_run:
            return obj, False
        finalizers = list(meta.get("finalizers") or [])
        if propagation is None:
            propagation = "Background"
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise BadRequest(
                f'propagationPolicy: Unsupported value: "{propagation}": supported values: "Foreground", "Background", "Orphan"'
            )
        if propagation == "Foreground" and FINALIZER_FOREGROUND not in finalizers:
            finalizers.append(FINALIZER_FOREGROUND)
        if propagation == "Orphan" and FINALIZER_ORPHAN not in finalizers:
            finalizers.append(FINALIZER_ORPHAN)
        graceful = self._grace_seconds(kind, obj, grace_period)
        if kind.kind == "Namespace" and kind.group == "":
            status = obj.setdefault("status", {})
            status["phase"] = "Terminating"
            spec_fin = obj.setdefault("spec", {}).setdefault("finalizers", [])
            if not meta.get("deletionTimestamp") and FINALIZER_NAMESPACE not in spec_fin:
                spec_fin.append(FINALIZER_NAMESPACE)
        has_spec_finalizers = bool((obj.get("spec") or {}).get("finalizers")) and kind.kind == "Namespace"
        if not finalizers and graceful == 0 and not has_spec_finalizers:
            self._remove(kind, entry)
            self._drain()
            return obj, True
        if meta.get("deletionTimestamp"):
            # Already deleting: a shorter grace period may still be applied, as upstream.
            current = int(meta.get("deletionGracePeriodSeconds") or 0)
            if graceful < current:
                meta["deletionGracePeriodSeconds"] = graceful
                meta["deletionTimestamp"] = now_rfc3339(self.clock() + timedelta(seconds=graceful))
                meta["finalizers"] = finalizers
                obj = self._commit(kind, "MODIFIED", obj, entry)
            self._pending_gc.append(("finalize", meta["uid"]))
            self._drain()
            return loads(dumps(obj)), False
        meta["deletionTimestamp"] = now_rfc3339(self.clock() + timedelta(seconds=graceful))
        meta["deletionGracePeriodSeconds"] = graceful
        if finalizers:
            meta["finalizers"] = finalizers
        stored = self._commit(kind, "MODIFIED", obj, entry)
        self._pending_gc.append(("finalize", meta["uid"]))
        self._drain()
        return loads(dumps(stored)), False

    def _grace_seconds(self, kind: Kind, obj: Obj, requested: int | None) -> int:
        """Only pods bound to a node wait for their kubelet; everything else goes at once."""
        if kind.kind != "Pod" or kind.group != "":
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is None:
            requested = int(spec.get("terminationGracePeriodSeconds", 30))
        return max(0, requested)

    def _remove(self, kind: Kind, entry: Entry) -> None:
        obj = loads(entry.raw)
        self._commit(kind, "DELETED", obj, entry)
        for hook in self.removal_hooks:
            hook(kind, obj)
        self._pending_gc.append(("removed", obj["metadata"]["uid"]))
        for ref in obj["metadata"].get("ownerReferences") or []:
            # an owner waiting in foreground deletion may now be free
            self._pending_gc.append(("finalize", ref.get("uid", "")))
        if kind.namespaced:
            self._pending_gc.append(("ns-check", obj["metadata"].get("namespace", "")))

    # ------------------------------------------------------------------ garbage collection

    def _drain(self) -> None:
        """Run the cascade work queued by writes until nothing is left (iterative, not recursive)."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._pending_gc:
                op, arg = self._pending_gc.popleft()
                try:
                    if op == "removed":
                        self._on_owner_removed(arg)
                    elif op == "finalize":
                        self._finalize(arg)
                    elif op == "ns-check":
                        self._namespace_check(arg)
                except StatusError:
                    continue  # the object moved on meanwhile; the next event re-queues work
        finally:
            self._draining = False

    def _lookup_uid(self, uid: str) -> tuple[Kind, Entry] | None:
        ident = self._by_uid.get(uid)
        if ident is None:
            return None
        kind = self.registry.by_key(ident[0])
        if kind is None:
            return None
        entry = self._bucket(kind).get((ident[1], ident[2]))
        return (kind, entry) if entry is not None else None

    def _dependents_of(self, uid: str) -> list[tuple[Kind, Entry]]:
        out = []
        for resource, ns, name in sorted(self._dependents.get(uid, ())):
            kind = self.registry.by_key(resource)
            entry = self._bucket(kind).get((ns, name)) if kind else None
            if kind is not None and entry is not None:
                out.append((kind, entry))
        return out

    def _on_owner_removed(self, uid: str) -> None:
        """Background cascade: dependents left with no live owner are deleted."""
        for kind, entry in self._dependents_of(uid):
            meta = entry.meta
            refs = meta.get("ownerReferences") or []
            if any(r.get("uid") != uid and r.get("uid") in self._by_uid for r in refs):
                continue
            if not meta.get("deletionTimestamp"):
                self.delete(kind, meta.get("namespace", ""), meta["name"], propagation="Background")

    def _finalize(self, uid: str) -> None:
        """Advance an object in deletion: run the GC finalizers, remove it once none remain."""
        found = self._lookup_uid(uid)
        if found is None:
            return
        kind, entry = found
        meta = entry.meta
        if not meta.get("deletionTimestamp"):
            return
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER_ORPHAN in finalizers:
            for dkind, dentry in self._dependents_of(uid):
                dep = loads(dentry.raw)
                dep["metadata"]["ownerReferences"] = [
                    r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid
                ] or None
                if dep["metadata"]["ownerReferences"] is None:
                    del dep["metadata"]["ownerReferences"]
                self._commit(dkind, "MODIFIED", dep, dentry)
            finalizers.remove(FINALIZER_ORPHAN)
            entry = self._set_finalizers(kind, entry, finalizers)
        if FINALIZER_FOREGROUND in finalizers:
            deps = self._dependents_of(uid)
            for dkind, dentry in deps:
                dmeta = dentry.meta
                if not dmeta.get("deletionTimestamp"):
                    self.delete(dkind, dmeta.get("namespace", ""), dmeta["name"], propagation="Foreground")
            if self._dependents_of(uid):
                return
            finalizers.remove(FINALIZER_FOREGROUND)
            entry = self._set_finalizers(kind, entry, finalizers)
        if kind.kind == "Namespace" and kind.group == "":
            self._sweep_namespace(meta["name"])
            self._namespace_check(meta["name"])
            return
        if finalizers:
            return
        if int(meta.get("deletionGracePeriodSeconds") or 0) > 0:
            return  # a kubelet finishes graceful pod deletion with a zero-grace delete
        self._remove(kind, entry)

    def _set_finalizers(self, kind: Kind, entry: Entry, finalizers: list[str]) -> Entry:
        obj = loads(entry.raw)
        if finalizers:
            obj["metadata"]["finalizers"] = finalizers
        else:
            obj["metadata"].pop("finalizers", None)
        self._commit(kind, "MODIFIED", obj, entry)
        return self._bucket(kind)[(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])]

    def _sweep_namespace(self, ns: str) -> None:
        """The namespace controller's sweep: delete everything in a terminating namespace once."""
        for kind in self.registry.kinds:
            if not kind.namespaced:
                continue
            for (ons, name), oentry in list(self._bucket(kind).items()):
                if ons == ns and not oentry.meta.get("deletionTimestamp"):
                    self.delete(kind, ns, name)

    def _namespace_check(self, ns: str) -> None:
        """Let a terminating namespace go once it is empty (its ``kubernetes`` finalizer done)."""
        ns_kind = self.registry.by_kind("", "v1", "Namespace")
        if ns_kind is None or not ns or self._ns_count.get(ns, 0) > 0:
            return
        entry = self._bucket(ns_kind).get(("", ns))
        if entry is None or not entry.meta.get("deletionTimestamp"):
            return
        obj = loads(entry.raw)
        spec_fin = [f for f in (obj.get("spec") or {}).get("finalizers") or [] if f != FINALIZER_NAMESPACE]
        if (obj.get("spec") or {}).get("finalizers"):
            obj["spec"]["finalizers"] = spec_fin
            if not spec_fin:
                del obj["spec"]["finalizers"]
            self._commit(ns_kind, "MODIFIED", obj, entry)
            entry = self._bucket(ns_kind)[("", ns)]
        if spec_fin or entry.meta.get("finalizers"):
            return
        self._remove(ns_kind, entry)

    def finish_pending(self) -> None:
        """Run any cascade work left over (used after start-up recovery)."""
        self._drain()

    # ------------------------------------------------------------------ watch

    def watch(self, kind: Kind, selection: Selection, since: int | None) -> tuple[Watcher, list[Event]]:
        """Subscribe; returns the watcher and the backlog of events after ``since``.

        ``since=None`` means "from now" (the caller lists first); a revision older than the
        retained history raises Gone, exactly like a compacted etcd.
        """
        backlog: list[Event] = []
        if since is not None and since < self.rv:
            backlog = self._history_after(kind, since)
        watcher = Watcher(kind, selection)
        self._watchers.setdefault(kind.resource_key, set()).add(watcher)
        return watcher, backlog

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.get(watcher.kind.resource_key, set()).discard(watcher)
        watcher.closed = True

    def _history_after(self, kind: Kind, since: int) -> list[Event]:
        if self._recent and since >= self._recent[0].rv - 1:
            return [e for e in self._recent if e.rv > since and e.resource == kind.resource_key]
        if since < self.backend.oldest_history_rv():
            raise Gone(f"too old resource version: {since} ({self.backend.oldest_history_rv() + 1})")
        out = []
        for rv, type_, resource, data, prev in self.backend.history_since(since):
            if resource != kind.resource_key:
                continue
            raw = bytes(data)
            prev_raw = bytes(prev) if prev else None
            out.append(
                Event(
                    type_,
                    rv,
                    resource,
                    raw,
                    trim_meta(loads(raw)),
                    prev_raw,
                    trim_meta(loads(prev_raw)) if prev_raw else None,
                )
            )
        return out

    def snapshot_events(self, kind: Kind, selection: Selection) -> list[Event]:
        """Synthetic ADDED events for the current state (watch without resourceVersion)."""
        items, _, _ = self.list_raw(kind, selection)
        out = []
        for raw in items:
            meta = trim_meta(loads(raw))
            out.append(Event("ADDED", int(meta["resourceVersion"]), kind.resource_key, raw, meta))
        return out


def _set_pod_condition(pod: Obj, condition: Obj, now: str) -> None:
    """Upstream ``UpdatePodCondition``: replace the condition of that type, keeping its
    lastTransitionTime when the status does not change."""
    conditions = pod.setdefault("status", {}).setdefault("conditions", [])
    for i, cond in enumerate(conditions):
        if cond.get("type") == condition["type"]:
            same = cond.get("status") == condition["status"]
            transition = cond.get("lastTransitionTime") if same else now
            conditions[i] = {**condition, "lastProbeTime": None, "lastTransitionTime": transition}
            return
    conditions.append({**condition, "lastProbeTime": None, "lastTransitionTime": now})


def _spec_part(obj: Obj) -> bytes:
    return dumps({k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")})

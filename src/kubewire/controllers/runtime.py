"""The controller runtime: shared informers, work queues, plans and the thin writer.

A controller declares which kinds it watches and how an event maps to work keys; its
``reconcile(key, caches)`` is pure — it reads informer caches and returns a :class:`Plan` (objects
to create, update, patch or delete, and Events to record).  :class:`Manager` runs every controller
over shared informers with a de-duplicating, rate-limited queue, writes each plan through the
client seam, and requeues a key with backoff when any action fails (errors are collected, never
stop other keys).  The same controllers run in-process or against a real cluster over HTTP.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kubewire.api.meta import now_rfc3339
from kubewire.api.registry import Kind, Registry
from kubewire.client import Client
from kubewire.errors import AlreadyExists, Conflict, NotFound, StatusError
from kubewire.store.informer import Handlers, Informer, key_of
from kubewire.store.workqueue import WorkQueue

log = logging.getLogger("kubewire.controllers")
Obj = dict[str, Any]


# ---------------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Create:
    kind: Kind
    obj: Obj


@dataclass(frozen=True)
class Update:
    """Replace the object (with its resourceVersion: a Conflict requeues the key)."""

    kind: Kind
    obj: Obj
    subresource: str = ""  # "status" for status writes


@dataclass(frozen=True)
class Patch:
    kind: Kind
    namespace: str
    name: str
    body: Obj
    patch_type: str = "merge"
    subresource: str = ""


@dataclass(frozen=True)
class Delete:
    kind: Kind
    namespace: str
    name: str
    propagation: str | None = None
    grace_period: int | None = None
    uid: str = ""  # when set, only this incarnation is deleted


@dataclass(frozen=True)
class RecordEvent:
    """A core/v1 Event about ``involved`` (type Normal/Warning, upstream reason and message)."""

    involved: Obj
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Bind:
    """Assign a pod to a node through the ``pods/binding`` subresource (the scheduler's write);
    ``uid`` guards against binding a newer pod of the same name.  ``kind`` is the Pod kind."""

    kind: Kind
    namespace: str
    name: str
    node: str
    uid: str = ""


Action = Create | Update | Patch | Delete | RecordEvent | Bind


@dataclass
class Plan:
    """What one reconcile wants written; empty means the world already matches."""

    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None  # reconcile this key again later (e.g. a timer)
    # The reconcile could only do part of its job (upstream returns an error from sync): the
    # actions are still written, then the key is retried with backoff and the error reported.
    error: str = ""

    def add(self, action: Action) -> None:
        self.actions.append(action)

    def requeue_within(self, seconds: float) -> None:
        """Reconcile again no later than ``seconds`` from now (the earliest of several timers)."""
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds

    def extend(self, actions: Iterable[Action]) -> None:
        self.actions.extend(actions)

    def __bool__(self) -> bool:
        return bool(self.actions) or self.requeue_after is not None or bool(self.error)


# ---------------------------------------------------------------------------------- caches

NAMESPACE_INDEX = "namespace"  # every namespaced informer keeps it, so listing one namespace is cheap


def _namespace_of(obj: Obj) -> list[str]:
    return [str((obj.get("metadata") or {}).get("namespace", ""))]


class Caches:
    """Read access to the shared informers, by kind; what a reconcile sees of the cluster."""

    def __init__(self, informers: Mapping[str, Informer]) -> None:
        self._informers = informers

    def informer(self, kind: Kind) -> Informer:
        return self._informers[kind.resource_key]

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        key = f"{namespace}/{name}" if kind.namespaced and namespace else name
        return self.informer(kind).get(key)

    def list(self, kind: Kind, namespace: str = "") -> list[Obj]:
        informer = self.informer(kind)
        if not namespace:
            return informer.list()
        if informer.has_index(NAMESPACE_INDEX):
            return informer.by_index(NAMESPACE_INDEX, namespace)
        return [o for o in informer.list() if (o.get("metadata") or {}).get("namespace", "") == namespace]

    def by_index(self, kind: Kind, index: str, value: str) -> builtins.list[Obj]:
        return self.informer(kind).by_index(index, value)


# ---------------------------------------------------------------------------------- controllers


class Controller(Protocol):
    """A reconciler; see the module docstring.  A controller may also define ``bind(caches)``:
    the Manager calls it once, before any event, for mappers that must look up related objects
    (a pod's Services, say) to turn an event into keys."""

    name: str

    def watches(self) -> Mapping[Kind, Callable[[Obj], Iterable[str]]]:
        """Kinds to inform, and for each how an object (old or new) maps to work keys."""
        ...

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[Obj], list[str]]]]:
        """Informer indexes the controller needs, by kind and index name."""
        ...

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan: ...


def own_key(obj: Obj) -> Iterable[str]:
    """The common mapping: an object's own ``namespace/name`` key."""
    return [key_of(obj)]


def controller_owner_key(owner_kind: str) -> Callable[[Obj], Iterable[str]]:
    """Map an owned object to its controller owner's key (``ns/name``) when the owner is of ``owner_kind``."""

    def keys(obj: Obj) -> Iterable[str]:
        meta = obj.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == owner_kind:
                ns = meta.get("namespace", "")
                return [f"{ns}/{ref.get('name', '')}" if ns else str(ref.get("name", ""))]
        return []

    return keys


def split_key(key: str) -> tuple[str, str]:
    ns, _, name = key.rpartition("/")
    return ns, name


def owner_reference(owner: Obj, block: bool = True) -> Obj:
    """The controller ownerReference a child of ``owner`` carries."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": block,
    }


def random_suffix(n: int = 5) -> str:
    """Upstream's ``utilrand.String``: consonants and digits that spell no words."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(n))


# ---------------------------------------------------------------------------------- writer


@dataclass(frozen=True)
class Written:
    """One write the Writer made: enough to tell when an informer's cache shows it."""

    kind: Kind
    key: str
    uid: str
    resource_version: str
    deleted: bool = False

    @classmethod
    def of(cls, kind: Kind, obj: Obj, deleted: bool = False) -> Written:
        meta = obj.get("metadata") or {}
        return cls(kind, key_of(obj), str(meta.get("uid", "")), str(meta.get("resourceVersion", "")), deleted)

    def seen_by(self, informer: Informer) -> bool:
        """Whether the cache reflects this write: a deletion once the object is gone, terminating
        or replaced; anything else once the cache holds this revision or a later one."""
        cached = informer.get(self.key)
        if self.deleted:
            if cached is None:
                return True
            meta = cached.get("metadata") or {}
            return bool(meta.get("deletionTimestamp")) or meta.get("uid") != self.uid
        target = _revision_of(self.resource_version)
        if _revision_of(informer.resource_version) >= target:
            return True  # the stream is past this write (the object may already be gone again)
        return cached is not None and _revision(cached) >= target


def _revision_of(rv: str) -> int:
    # Revisions are opaque to clients, but kubewire's and etcd's are increasing integers.
    try:
        return int(rv)
    except ValueError:
        return 0


def _revision(obj: Obj) -> int:
    return _revision_of(str((obj.get("metadata") or {}).get("resourceVersion", "")))


class Writer:
    """Carries out plans through a client; the only place controllers' writes happen."""

    def __init__(self, client: Client, registry: Registry, component: str, clock: Callable[[], datetime]) -> None:
        self.client = client
        self.component = component
        self.clock = clock
        event_kind = registry.by_kind("", "v1", "Event")
        assert event_kind is not None
        self.event_kind = event_kind

    async def write(self, plan: Plan) -> tuple[list[StatusError], list[Written]]:
        """Run every action; returns the failures (one failing action does not stop the rest) and
        what was written, so the caller can wait for its caches to show it."""
        errors: list[StatusError] = []
        written: list[Written] = []
        for action in plan.actions:
            try:
                done = await self._one(action)
            except (AlreadyExists, NotFound) as err:
                if isinstance(action, Delete) and isinstance(err, NotFound):
                    continue  # already gone: the goal is met
                errors.append(err)
            except StatusError as err:
                errors.append(err)
            else:
                if done is not None:
                    written.append(done)
        return errors, written

    async def _one(self, action: Action) -> Written | None:
        c = self.client
        if isinstance(action, Create):
            return Written.of(action.kind, await c.create(action.kind, action.obj, field_manager=self.component))
        if isinstance(action, Update):
            obj = await c.update(action.kind, action.obj, subresource=action.subresource, field_manager=self.component)
            return Written.of(action.kind, obj)
        if isinstance(action, Patch):
            obj = await c.patch(
                action.kind,
                action.name,
                action.body,
                action.namespace,
                action.patch_type,
                self.component,
                action.subresource,
            )
            return Written.of(action.kind, obj)
        if isinstance(action, Delete):
            if action.uid:
                live = await c.get(action.kind, action.name, action.namespace)
                if live["metadata"].get("uid") != action.uid:
                    return None
            obj = await c.delete(action.kind, action.name, action.namespace, action.propagation, action.grace_period)
            return Written.of(action.kind, obj, deleted=True)
        if isinstance(action, Bind):
            return Written.of(action.kind, await c.bind(action.namespace, action.name, action.node, action.uid))
        await self._record(action)
        return None

    async def _record(self, ev: RecordEvent) -> None:
        event = event_object(ev, self.component, now_rfc3339(self.clock()))
        await self.client.create(self.event_kind, event, field_manager=self.component)


def event_object(ev: RecordEvent, component: str, now: str) -> Obj:
    """The core/v1 Event a component posts about ``ev.involved`` (as client-go's recorder shapes it)."""
    meta = ev.involved.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": meta.get("namespace") or "default"},
        "involvedObject": {
            "apiVersion": ev.involved.get("apiVersion", ""),
            "kind": ev.involved.get("kind", ""),
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "reason": ev.reason,
        "message": ev.message,
        "type": ev.type,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


# ---------------------------------------------------------------------------------- manager


@dataclass
class _Running:
    controller: Controller
    queue: WorkQueue
    errors: dict[str, str] = field(default_factory=dict)


class Manager:
    """Runs controllers over shared informers until cancelled."""

    def __init__(
        self,
        client: Client,
        registry: Registry,
        controllers: list[Controller],
        component: str = "kube-controller-manager",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        workers: int = 1,
        observe_timeout: float = 5.0,
    ) -> None:
        self.client = client
        self.observe_timeout = observe_timeout
        self.registry = registry
        self.clock = clock
        self.workers = workers
        self.writer = Writer(client, registry, component, clock)
        self.informers: dict[str, Informer] = {}
        self.caches = Caches(self.informers)
        self._running = [_Running(c, WorkQueue()) for c in controllers]
        self._tasks: list[asyncio.Task[None]] = []
        for run in self._running:
            bind = getattr(run.controller, "bind", None)
            if callable(bind):  # mappers that look up related objects (a pod's Services) read the caches
                bind(self.caches)
            for kind, mapper in run.controller.watches().items():
                informer = self._informer(kind)
                informer.add_handlers(self._handlers(run, mapper))
            for kind, indexes in run.controller.indexers().items():
                informer = self._informer(kind)
                for name, fn in indexes.items():
                    informer.add_indexer(name, fn)

    def _informer(self, kind: Kind) -> Informer:
        if kind.resource_key not in self.informers:
            informer = Informer(self.client, kind)
            if kind.namespaced:
                informer.add_indexer(NAMESPACE_INDEX, _namespace_of)
            self.informers[kind.resource_key] = informer
        return self.informers[kind.resource_key]

    @staticmethod
    def _handlers(run: _Running, mapper: Callable[[Obj], Iterable[str]]) -> Handlers:
        def enqueue(obj: Obj) -> None:
            for key in mapper(obj):
                run.queue.add(key)

        def on_update(old: Obj, new: Obj) -> None:
            keys = set(mapper(old)) | set(mapper(new))
            for key in sorted(keys):
                run.queue.add(key)

        return Handlers(on_add=enqueue, on_update=on_update, on_delete=enqueue)

    def errors(self) -> dict[str, dict[str, str]]:
        """The last failure per key, per controller (cleared when the key next succeeds)."""
        return {run.controller.name: dict(run.errors) for run in self._running}

    async def start(self) -> None:
        """Start informers, wait for their first sync, then start the workers."""
        for informer in self.informers.values():
            self._tasks.append(asyncio.create_task(informer.run()))
        await asyncio.gather(*(i.synced.wait() for i in self.informers.values()))
        for run in self._running:
            for _ in range(self.workers):
                self._tasks.append(asyncio.create_task(self._worker(run)))

    async def stop(self) -> None:
        for run in self._running:
            run.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _worker(self, run: _Running) -> None:
        while True:
            key = await run.queue.get()
            if key is None:
                return
            try:
                await self._process(run, key)
            finally:
                run.queue.done(key)

    async def _process(self, run: _Running, key: str) -> None:
        name = run.controller.name
        try:
            plan = run.controller.reconcile(key, self.caches, self.clock())
        except Exception as exc:  # a bug in one reconcile must not stop the controller
            log.exception("%s: reconcile of %s failed", name, key)
            run.errors[key] = f"reconcile: {exc}"
            run.queue.add_rate_limited(key)
            return
        failures, written = await self.writer.write(plan)
        await self._observe(written)
        if failures:
            conflict_only = all(isinstance(f, Conflict) for f in failures)
            level = logging.DEBUG if conflict_only else logging.WARNING
            log.log(level, "%s: %s: %d action(s) failed: %s", name, key, len(failures), failures[0])
            run.errors[key] = str(failures[0])
            run.queue.add_rate_limited(key)
            return
        if plan.error:
            log.debug("%s: %s: %s", name, key, plan.error)
            run.errors[key] = plan.error
            run.queue.add_rate_limited(key)
            return
        run.errors.pop(key, None)
        run.queue.forget(key)
        if plan.requeue_after is not None:
            run.queue.add_after(key, plan.requeue_after)

    async def _observe(self, written: list[Written]) -> None:
        """Wait (bounded) until the informers show this key's writes, so the next reconcile of the
        key does not act on a cache from before them (upstream's "expectations", in general)."""
        for w in written:
            informer = self.informers.get(w.kind.resource_key)
            if informer is not None and not await informer.wait_until(w.seen_by, self.observe_timeout):
                log.debug("cache of %s did not show %s within %.1fs", w.kind.resource_key, w.key, self.observe_timeout)

    async def wait_idle(self, timeout: float = 10.0, quiet: float = 0.02, horizon: float = 1.0) -> None:
        """Wait until no queue has work for ``quiet`` seconds in a row (events in flight from the
        informers land within that window); retries and timers due later than ``horizon``
        seconds do not count as work.  Tests and benchmarks synchronise on this."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        idle_since: float | None = None
        while True:
            now = loop.time()
            if any(r.queue.busy(horizon) for r in self._running):
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= quiet:
                return
            if now > end:
                raise TimeoutError("controllers did not settle")
            await asyncio.sleep(0.002)

"""Informers: a list+watch cache of one kind with indexes and change handlers.

Like client-go's shared informer: list once (the cache is replaced and ``synced`` set), then
watch from the list's resourceVersion, resuming from the last seen revision (bookmarks included)
after a dropped stream and re-listing after ``410 Gone``.  The source is anything with the
client seam's ``list``/``watch`` shape, so the same informer runs in-process or over HTTP.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kubewire.api.registry import Kind
from kubewire.errors import Gone, StatusError

log = logging.getLogger("kubewire.informer")
Obj = dict[str, Any]
IndexFn = Callable[[Obj], list[str]]


@dataclass(frozen=True)
class WatchEvent:
    """ADDED, MODIFIED, DELETED or BOOKMARK, with the object as sent."""

    type: str
    object: Obj


class ListWatch(Protocol):
    """The part of the client seam an informer needs."""

    async def list(
        self, kind: Kind, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> tuple[builtins.list[Obj], str]: ...

    def watch(
        self,
        kind: Kind,
        namespace: str = "",
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> AsyncIterator[WatchEvent]: ...


def key_of(obj: Obj) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects), as client-go's MetaNamespaceKeyFunc."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace", "")
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


@dataclass
class Handlers:
    on_add: Callable[[Obj], None] | None = None
    on_update: Callable[[Obj, Obj], None] | None = None
    on_delete: Callable[[Obj], None] | None = None


class Informer:
    """A cache of one kind kept current by list+watch."""

    def __init__(
        self,
        source: ListWatch,
        kind: Kind,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        retry_delay: float = 1.0,
    ) -> None:
        self.source = source
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.retry_delay = retry_delay
        self.cache: dict[str, Obj] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self._indexers: dict[str, IndexFn] = {}
        self._indexes: dict[str, dict[str, set[str]]] = {}
        self._handlers: builtins.list[Handlers] = []
        self._changed = asyncio.Event()  # replaced after every applied change; see wait_until

    # ------------------------------------------------------------------ reads

    def get(self, key: str) -> Obj | None:
        return self.cache.get(key)

    def list(self) -> list[Obj]:
        return list(self.cache.values())

    def add_indexer(self, name: str, fn: IndexFn) -> None:
        self._indexers[name] = fn
        index: dict[str, set[str]] = {}
        for key, obj in self.cache.items():
            for value in fn(obj):
                index.setdefault(value, set()).add(key)
        self._indexes[name] = index

    def has_index(self, name: str) -> bool:
        return name in self._indexers

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        return [self.cache[k] for k in sorted(self._indexes.get(name, {}).get(value, ())) if k in self.cache]

    def add_handlers(self, handlers: Handlers) -> None:
        self._handlers.append(handlers)

    # ------------------------------------------------------------------ cache maintenance

    def _index_add(self, key: str, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            for value in fn(obj):
                self._indexes[name].setdefault(value, set()).add(key)

    def _index_remove(self, key: str, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            for value in fn(obj):
                bucket = self._indexes[name].get(value)
                if bucket is not None:
                    bucket.discard(key)
                    if not bucket:
                        del self._indexes[name][value]

    def _upsert(self, obj: Obj) -> None:
        key = key_of(obj)
        old = self.cache.get(key)
        if old is not None:
            if old.get("metadata", {}).get("resourceVersion") == obj.get("metadata", {}).get("resourceVersion"):
                return
            self._index_remove(key, old)
        self.cache[key] = obj
        self._index_add(key, obj)
        for h in self._handlers:
            if old is None and h.on_add:
                h.on_add(obj)
            elif old is not None and h.on_update:
                h.on_update(old, obj)

    def _remove(self, obj: Obj) -> None:
        key = key_of(obj)
        old = self.cache.pop(key, None)
        if old is None:
            return
        self._index_remove(key, old)
        for h in self._handlers:
            if h.on_delete:
                h.on_delete(obj)

    def _replace(self, items: builtins.list[Obj]) -> None:
        fresh = {key_of(o) for o in items}
        for key in [k for k in self.cache if k not in fresh]:
            self._remove(self.cache[key])
        for obj in items:
            self._upsert(obj)

    def apply_event(self, ev: WatchEvent) -> None:
        rv = (ev.object.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = str(rv)
        if ev.type in ("ADDED", "MODIFIED"):
            self._upsert(ev.object)
        elif ev.type == "DELETED":
            self._remove(ev.object)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, done: Callable[[Informer], bool], timeout: float) -> bool:
        """Wait until ``done(self)`` holds (checked after every change the cache applies), at most
        ``timeout`` seconds; returns whether it came true.  Controllers use it to read their own
        writes before reconciling the same key again."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not done(self):
            left = end - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    # ------------------------------------------------------------------ the loop

    async def relist(self) -> None:
        items, rv = await self.source.list(self.kind, self.namespace, self.label_selector, self.field_selector)
        self._replace(items)
        self.resource_version = rv
        self.synced.set()
        self._notify()

    async def run(self) -> None:
        """List, then watch forever (until cancelled), recovering from every failure."""
        while True:
            try:
                if not self.synced.is_set() or not self.resource_version:
                    await self.relist()
                async for ev in self.source.watch(
                    self.kind, self.namespace, self.resource_version, self.label_selector, self.field_selector
                ):
                    self.apply_event(ev)
            except Gone:
                self.resource_version = ""
                continue
            except asyncio.CancelledError:
                raise
            except (StatusError, OSError, Exception) as e:  # a broken stream must never end the informer
                log.warning("watch of %s failed: %s; retrying", self.kind.resource_key, e)
                await asyncio.sleep(self.retry_delay)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Informer]:
        """Run in the background for the duration of the block, synced on entry."""
        task = asyncio.create_task(self.run())
        try:
            await self.synced.wait()
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

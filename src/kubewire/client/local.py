"""The in-process client: the :class:`~kubewire.client.Client` seam straight onto a Store.

Used by components that run inside the control-plane process; it goes through the same patch,
apply and managed-fields logic as the HTTP server so the two paths cannot drift.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from typing import Any

import orjson

from kubewire.api import patch as patching
from kubewire.api.meta import now_rfc3339
from kubewire.api.registry import Kind
from kubewire.api.selection import Selection
from kubewire.client import Obj, WatchEvent
from kubewire.errors import NotFound
from kubewire.store.store import Store

_PATCH_CONTENT = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


class LocalClient:
    """A Client over an in-process :class:`Store`."""

    def __init__(self, store: Store, field_manager: str = "kubewire") -> None:
        self.store = store
        self.field_manager = field_manager

    def _now(self) -> str:
        return now_rfc3339(self.store.clock())

    async def get(self, kind: Kind, name: str, namespace: str = "") -> Obj:
        return self.store.get(kind, namespace, name)

    async def list(
        self, kind: Kind, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> tuple[builtins.list[Obj], str]:
        sel = Selection.parse(kind, namespace, label_selector, field_selector)
        items, rv, _ = self.store.list_raw(kind, sel)
        return [orjson.loads(r) for r in items], str(rv)

    async def create(self, kind: Kind, obj: Obj, field_manager: str = "") -> Obj:
        obj = patching.track_update(None, obj, field_manager or self.field_manager, kind, self._now())
        return self.store.create(kind, obj)

    async def update(self, kind: Kind, obj: Obj, subresource: str = "", field_manager: str = "") -> Obj:
        if subresource != "status":
            meta = obj.get("metadata") or {}
            old = self.store.get(kind, meta.get("namespace", ""), meta.get("name", ""))
            obj = patching.track_update(old, obj, field_manager or self.field_manager, kind, self._now())
        return self.store.update(kind, obj, subresource=subresource)

    async def patch(
        self,
        kind: Kind,
        name: str,
        body: Obj | builtins.list[Any],
        namespace: str = "",
        patch_type: str = "merge",
        field_manager: str = "",
        subresource: str = "",
    ) -> Obj:
        old = self.store.get(kind, namespace, name)
        new = patching.apply_patch(old, orjson.dumps(body), _PATCH_CONTENT[patch_type], kind)
        if subresource != "status":
            new = patching.track_update(old, new, field_manager or self.field_manager, kind, self._now())
        return self.store.update(kind, new, subresource=subresource)

    async def apply(self, kind: Kind, obj: Obj, field_manager: str, force: bool = False) -> Obj:
        meta = obj.get("metadata") or {}
        try:
            live: Obj | None = self.store.get(kind, meta.get("namespace", ""), meta.get("name", ""))
        except NotFound:
            live = None
        merged = patching.apply(live, obj, field_manager, kind, force, self._now())
        if live is None:
            return self.store.create(kind, merged)
        return self.store.update(kind, merged)

    async def delete(
        self,
        kind: Kind,
        name: str,
        namespace: str = "",
        propagation: str | None = None,
        grace_period: int | None = None,
    ) -> Obj:
        obj, _ = self.store.delete(kind, namespace, name, grace_period=grace_period, propagation=propagation)
        return obj

    async def bind(self, namespace: str, name: str, node: str, uid: str = "") -> Obj:
        return self.store.bind(namespace, name, node, uid)

    async def watch(
        self,
        kind: Kind,
        namespace: str = "",
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> AsyncIterator[WatchEvent]:
        sel = Selection.parse(kind, namespace, label_selector, field_selector)
        since = int(resource_version) if resource_version not in ("", "0") else None
        watcher, backlog = self.store.watch(kind, sel, since)
        if since is None:
            backlog = self.store.snapshot_events(kind, sel)
        try:
            last = since or 0
            for ev in backlog:
                last = max(last, ev.rv)
                yield WatchEvent(ev.type, orjson.loads(ev.raw))
            while True:
                item = await watcher.queue.get()
                if item is None:
                    return
                if item.rv <= last:
                    continue
                last = item.rv
                yield WatchEvent(item.type, orjson.loads(item.raw))
        finally:
            self.store.unwatch(watcher)

    async def close(self) -> None:
        return None

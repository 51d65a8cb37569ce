"""The client seam: the one interface every controller, agent and the CLI use to reach an API.

Two implementations: :class:`~kubewire.client.local.LocalClient` over an in-process store, and
:class:`~kubewire.client.http.HttpClient` over HTTP to any Kubernetes API server (kubewire's
own or a real cluster's, through lightkube).  Objects cross the seam as wire-form dicts, so
fields kubewire does not model survive.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from typing import Any, Protocol

from kubewire.api.registry import Kind
from kubewire.store.informer import WatchEvent

Obj = dict[str, Any]
__all__ = ["Client", "Obj", "WatchEvent"]


class Client(Protocol):
    """What a component may do against an API server."""

    async def get(self, kind: Kind, name: str, namespace: str = "") -> Obj: ...

    async def list(
        self, kind: Kind, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> tuple[builtins.list[Obj], str]:
        """Objects and the list's resourceVersion."""
        ...

    async def create(self, kind: Kind, obj: Obj, field_manager: str = "") -> Obj: ...

    async def update(self, kind: Kind, obj: Obj, subresource: str = "", field_manager: str = "") -> Obj: ...

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
        """``patch_type``: json, merge or strategic."""
        ...

    async def apply(self, kind: Kind, obj: Obj, field_manager: str, force: bool = False) -> Obj:
        """Server-side apply."""
        ...

    async def delete(
        self,
        kind: Kind,
        name: str,
        namespace: str = "",
        propagation: str | None = None,
        grace_period: int | None = None,
    ) -> Obj: ...

    async def bind(self, namespace: str, name: str, node: str, uid: str = "") -> Obj:
        """Bind a pod to a node (``POST pods/{name}/binding``); returns the bound pod."""
        ...

    def watch(
        self,
        kind: Kind,
        namespace: str = "",
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version``; with none, ADDED for every current object first.
        Raises :class:`~kubewire.errors.Gone` when the version is too old."""
        ...

    async def close(self) -> None: ...

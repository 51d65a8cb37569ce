"""The HTTP client: the :class:`~kubewire.client.Client` seam over any Kubernetes API server.

lightkube supplies what is hard to get right for real clusters — kubeconfig parsing, contexts,
client certificates, exec credential plugins, in-cluster config — and the authenticated httpx
transport built from them.  On top of that transport this module speaks the REST paths directly,
keeping objects as plain dicts (no model classes), with string selectors, Tables and raw watch
streams available to the CLI.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson

from kubewire.api.registry import Kind
from kubewire.client import Obj, WatchEvent
from kubewire.errors import StatusError

_PATCH_CONTENT = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def resource_path(kind: Kind, namespace: str = "", name: str = "", subresource: str = "") -> str:
    """``/apis/apps/v1/namespaces/default/deployments/web/scale`` and friends."""
    base = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    if kind.namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{kind.plural}"
    if name:
        base += f"/{name}"
    if subresource:
        base += f"/{subresource}"
    return base


def _raise_for_status(resp: httpx.Response, body: bytes) -> None:
    if resp.status_code < 400:
        return
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        raise StatusError.from_status(status)
    raise StatusError(resp.status_code, "Unknown", body.decode(errors="replace")[:500] or resp.reason_phrase)


class HttpClient:
    """A Client talking HTTP; build it with :meth:`from_kubeconfig`."""

    def __init__(self, http: httpx.AsyncClient, field_manager: str = "kubewire") -> None:
        self.http = http
        self.field_manager = field_manager

    @classmethod
    def from_kubeconfig(
        cls, path: Path | None = None, context: str | None = None, field_manager: str = "kubewire"
    ) -> HttpClient:
        # lightkube is imported here, not at the top: agents reach the API over the Unix socket
        # and should not pay its import time (about 80 ms) at every start.
        from lightkube.config.client_adapter import AsyncClient as _adapter_client
        from lightkube.config.client_adapter import ConnectionParams
        from lightkube.config.kubeconfig import KubeConfig

        config = KubeConfig.from_file(path) if path is not None else KubeConfig.from_env()
        single = config.get(context_name=context)
        if single is None:
            raise ValueError("the kubeconfig has no usable context")
        params = ConnectionParams(timeout=httpx.Timeout(30.0, read=None), trust_env=False)
        return cls(_adapter_client(single, params), field_manager)

    @classmethod
    def from_socket(cls, path: Path, field_manager: str = "kubewire") -> HttpClient:
        """Over kubewire's Unix socket (node agents and other in-cluster components on this machine)."""
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        http = httpx.AsyncClient(
            transport=transport, base_url="http://kubewire", timeout=httpx.Timeout(30.0, read=None), trust_env=False
        )
        return cls(http, field_manager)

    async def request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        content = None
        if body is not None:
            content = body if isinstance(body, bytes) else orjson.dumps(body)
        resp = await self.http.request(
            method,
            path,
            params={k: v for k, v in (params or {}).items() if v not in ("", None)},
            content=content,
            headers={"Content-Type": content_type, "Accept": accept},
        )
        data = resp.content
        _raise_for_status(resp, data)
        return orjson.loads(data) if data else None

    async def get(self, kind: Kind, name: str, namespace: str = "") -> Obj:
        result: Obj = await self.request("GET", resource_path(kind, namespace, name))
        return result

    async def table(
        self, kind: Kind, namespace: str = "", name: str = "", label_selector: str = "", field_selector: str = ""
    ) -> Obj:
        """A server-side Table, as ``kubectl get`` receives it."""
        params = {"labelSelector": label_selector, "fieldSelector": field_selector}
        result: Obj = await self.request(
            "GET", resource_path(kind, namespace, name), params=params, accept=TABLE_ACCEPT
        )
        return result

    async def list(
        self, kind: Kind, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> tuple[builtins.list[Obj], str]:
        items: builtins.list[Obj] = []
        token = ""
        rv = ""
        while True:
            params = {
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
                "limit": "500",
                "continue": token,
            }
            page = await self.request("GET", resource_path(kind, namespace), params=params)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            rv = rv or meta.get("resourceVersion", "")
            token = meta.get("continue", "")
            if not token:
                return items, rv

    def _params(self, field_manager: str) -> dict[str, str]:
        return {"fieldManager": field_manager or self.field_manager}

    async def create(self, kind: Kind, obj: Obj, field_manager: str = "") -> Obj:
        ns = (obj.get("metadata") or {}).get("namespace", "") or ("default" if kind.namespaced else "")
        result: Obj = await self.request("POST", resource_path(kind, ns), params=self._params(field_manager), body=obj)
        return result

    async def update(self, kind: Kind, obj: Obj, subresource: str = "", field_manager: str = "") -> Obj:
        meta = obj.get("metadata") or {}
        path = resource_path(kind, meta.get("namespace", ""), meta.get("name", ""), subresource)
        result: Obj = await self.request("PUT", path, params=self._params(field_manager), body=obj)
        return result

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
        path = resource_path(kind, namespace, name, subresource)
        result: Obj = await self.request(
            "PATCH", path, params=self._params(field_manager), body=body, content_type=_PATCH_CONTENT[patch_type]
        )
        return result

    async def apply(self, kind: Kind, obj: Obj, field_manager: str, force: bool = False) -> Obj:
        meta = obj.get("metadata") or {}
        path = resource_path(kind, meta.get("namespace", ""), meta.get("name", ""))
        params = {"fieldManager": field_manager, "force": "true" if force else ""}
        result: Obj = await self.request(
            "PATCH", path, params=params, body=json.dumps(obj).encode(), content_type="application/apply-patch+yaml"
        )
        return result

    async def delete(
        self,
        kind: Kind,
        name: str,
        namespace: str = "",
        propagation: str | None = None,
        grace_period: int | None = None,
    ) -> Obj:
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation:
            opts["propagationPolicy"] = propagation
        if grace_period is not None:
            opts["gracePeriodSeconds"] = grace_period
        result: Obj = await self.request("DELETE", resource_path(kind, namespace, name), body=opts)
        return result

    async def bind(self, namespace: str, name: str, node: str, uid: str = "") -> Obj:
        """POST a ``Binding`` (the server answers with a Status), then read the bound pod back so
        callers can tell when their caches show it."""
        meta: Obj = {"name": name, "namespace": namespace}
        if uid:
            meta["uid"] = uid
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": meta,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        pods = f"/api/v1/namespaces/{namespace}/pods/{name}"
        await self.request("POST", f"{pods}/binding", body=binding)
        result: Obj = await self.request("GET", pods)
        return result

    async def watch(
        self,
        kind: Kind,
        namespace: str = "",
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> AsyncIterator[WatchEvent]:
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
        }
        async with self.http.stream(
            "GET", resource_path(kind, namespace), params={k: v for k, v in params.items() if v}
        ) as resp:
            if resp.status_code >= 400:
                _raise_for_status(resp, await resp.aread())
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                event = orjson.loads(line)
                if event.get("type") == "ERROR":
                    raise StatusError.from_status(event.get("object") or {})
                yield WatchEvent(event["type"], event["object"])

    async def close(self) -> None:
        await self.http.aclose()

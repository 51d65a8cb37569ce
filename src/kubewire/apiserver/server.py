"""The Kubernetes-compatible HTTP API server (aiohttp) in front of a :class:`Store`.

It owns the wire protocol only: URL routing (``/api/v1/namespaces/{ns}/{plural}/{name}/{sub}``),
bearer-token authentication, content negotiation (JSON, Tables for ``kubectl get``), the four
patch content types, server-side apply, watch streams with bookmarks, the ``scale`` and
``status`` subresources, ``pods/log`` (proxied to the node's kubelet socket, as upstream proxies to
port 10250), discovery and OpenAPI stubs.  Object semantics live in the store;
printing and patch logic in the api layer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import yaml
from aiohttp import web

from kubewire.api import patch as patching
from kubewire.api import protobuf
from kubewire.api.fields import FieldError, forbidden, go_quote, invalid, invalid_value
from kubewire.api.meta import now_rfc3339, selector_string
from kubewire.api.pod import validate_binding
from kubewire.api.registry import Kind, Obj, Registry
from kubewire.api.selection import Selection
from kubewire.apiserver import discovery, tables
from kubewire.errors import (
    BadRequest,
    Gone,
    InternalError,
    MethodNotSupported,
    NotFound,
    StatusError,
    Unauthorized,
    UnsupportedMediaType,
)
from kubewire.store.store import Event, Store

log = logging.getLogger("kubewire.apiserver")

JSON = "application/json"
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
# Upstream sends a bookmark roughly once a minute; a shorter default keeps resumes cheap.
BOOKMARK_INTERVAL = 10.0
DEFAULT_WATCH_TIMEOUT = 1800

# Node name -> the Unix socket its kubelet serves ``/containerLogs`` on (None: no kubelet known).
KubeletSockets = Callable[[str], Path | None]
# How often a quiet ``logs -f`` relay checks whether its client is still there.
LOG_DISCONNECT_CHECK = 1.0
# Upstream's kubelet query parameters for PodLogOptions, in the order LogLocation adds them.
_LOG_BOOLS = ("follow", "previous", "timestamps")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON)


def _error(err: StatusError) -> web.Response:
    return _json(err.to_status(), status=err.code)


@dataclass(frozen=True)
class Target:
    """A parsed resource URL."""

    kind: Kind
    namespace: str
    name: str
    subresource: str


def _is_table_request(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "as=Table" in accept


class APIServer:
    """Routes HTTP requests onto the store; one per cluster control plane."""

    def __init__(self, store: Store, token: str, kubelet_socket: KubeletSockets | None = None) -> None:
        self.store = store
        self.registry: Registry = store.registry
        self.token = token
        self.kubelet_socket = kubelet_socket
        self.server_address = "127.0.0.1:6443"
        self.app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._pods = self.registry.by_kind("", "v1", "Pod")
        self._closing = asyncio.Event()

    # ------------------------------------------------------------------ plumbing

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            if not self._authorized(request):
                raise Unauthorized()
            return await handler(request)
        except StatusError as err:
            return _error(err)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug must not take the server down: answer 500 and log it
            log.exception("internal error serving %s %s", request.method, request.path)
            return _error(InternalError(str(exc)))

    def _authorized(self, request: web.Request) -> bool:
        if request.transport is not None and request.transport.get_extra_info("peername") in ("", None):
            return True  # the Unix socket: only local processes that can open the state dir
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[7:].strip(), self.token)

    def close(self) -> None:
        self._closing.set()

    # ------------------------------------------------------------------ routing

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return _json(
                {"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version", "/openapi/v2"]}
            )
        head = parts[0]
        if head in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if head == "version":
            return _json(discovery.version_info())
        if head == "openapi":
            return self._openapi(parts)
        if head == "api":
            if len(parts) == 1:
                return _json(discovery.api_versions(self.server_address))
            if len(parts) == 2:
                return self._resource_list("", parts[1])
            return await self._resource(request, "", parts[1], parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return _json(discovery.api_group_list(self.registry))
            if len(parts) == 2:
                doc = discovery.api_group(self.registry, parts[1])
                if doc is None:
                    raise NotFound("", request.path)
                return _json(doc)
            if len(parts) == 3:
                return self._resource_list(parts[1], parts[2])
            return await self._resource(request, parts[1], parts[2], parts[3:])
        raise _not_found_path()

    def _openapi(self, parts: list[str]) -> web.StreamResponse:
        if parts[1:] == ["v2"]:
            # An empty OpenAPI v2 document (a valid, empty protobuf message): kubectl's
            # client-side validation then finds no schema and defers to the server's.
            return web.Response(body=b"", content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        if parts[1:2] == ["v3"]:
            # OpenAPI v3 (what kubectl explain reads): the index, or one group-version's document.
            # Imported here: the lightkube models it reads load only once someone asks.
            from kubewire.apiserver import openapi

            documents = openapi.openapi_v3(self.registry)
            body = documents.index() if len(parts) == 2 else documents.document("/".join(parts[2:]))
            if body is not None:
                return web.Response(body=body, content_type=JSON)
        raise _not_found_path()

    def _resource_list(self, group: str, version: str) -> web.Response:
        doc = discovery.resource_list(self.registry, group, version)
        if doc is None:
            raise _not_found_path()
        return _json(doc)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace = ""
        if len(rest) >= 2 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            if len(rest) == 2:
                kind = self._kind(group, version, "namespaces")
                return Target(kind, "", rest[1], "")
            namespace, rest = rest[1], rest[2:]
        kind = self._kind(group, version, rest[0])
        if namespace and not kind.namespaced:
            raise _not_found_path()
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3:
            raise _not_found_path()
        special = (sub == "finalize" and kind.plural == "namespaces") or (sub == "binding" and kind is self._pods)
        if sub and sub not in kind.subresources and not special:
            raise _not_found_path()
        return Target(kind, namespace, name, sub)

    def _kind(self, group: str, version: str, plural: str) -> Kind:
        kind = self.registry.by_resource(group, version, plural)
        if kind is None:
            raise _not_found_path()
        return kind

    async def _resource(self, request: web.Request, group: str, version: str, rest: list[str]) -> web.StreamResponse:
        target = self._target(group, version, rest)
        method = request.method
        q = request.query
        if not target.name:
            if method == "GET":
                if q.get("watch") in ("true", "1"):
                    return await self._watch(request, target)
                return self._list(request, target)
            if method == "POST":
                return await self._create(request, target)
            if method == "DELETE":
                return await self._delete_collection(request, target)
            raise MethodNotSupported(target.kind.plural, method)
        if target.subresource == "scale":
            return await self._scale(request, target)
        if target.subresource == "log":
            return await self._log(request, target)
        if target.subresource == "binding":
            return await self._bind(request, target)
        if method == "GET":
            return self._get(request, target)
        if method == "PUT":
            return await self._update(request, target)
        if method == "PATCH":
            return await self._patch(request, target)
        if method == "DELETE" and not target.subresource:
            return await self._delete(request, target)
        raise MethodNotSupported(target.kind.plural, method)

    # ------------------------------------------------------------------ reads

    def _respond_object(self, request: web.Request, kind: Kind, obj: Obj, status: int = 200) -> web.Response:
        if _is_table_request(request):
            now = self.store.clock()
            return _json(
                tables.table(kind, [obj], now, request.query.get("includeObject", "PartialObjectMetadata")), status
            )
        return _json(obj, status)

    def _get(self, request: web.Request, t: Target) -> web.Response:
        if _is_table_request(request):
            return self._respond_object(request, t.kind, self.store.get(t.kind, t.namespace, t.name))
        raw = self.store.get_raw(t.kind, t.namespace, t.name)
        if t.subresource in ("", "status"):
            return web.Response(body=raw, content_type=JSON)
        return _json(orjson.loads(raw))

    def _selection(self, request: web.Request, t: Target) -> Selection:
        q = request.query
        return Selection.parse(t.kind, t.namespace, q.get("labelSelector", ""), q.get("fieldSelector", ""))

    def _list(self, request: web.Request, t: Target) -> web.Response:
        q = request.query
        selection = self._selection(request, t)
        limit = _int_param(q, "limit", 0)
        after = _decode_continue(q.get("continue", ""))
        items, rv, last = self.store.list_raw(t.kind, selection, limit=limit, after=after)
        token = _encode_continue(last, rv) if last is not None else ""
        if _is_table_request(request):
            objs = [orjson.loads(r) for r in items]
            return _json(
                tables.table(
                    t.kind, objs, self.store.clock(), q.get("includeObject", "PartialObjectMetadata"), str(rv), token
                )
            )
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
        head = orjson.dumps({"kind": t.kind.list_kind, "apiVersion": t.kind.api_version, "metadata": meta})
        body = head[:-1] + b',"items":[' + b",".join(items) + b"]}"
        return web.Response(body=body, content_type=JSON)

    # ------------------------------------------------------------------ watch

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        selection = self._selection(request, t)
        rv_param = q.get("resourceVersion", "")
        since = int(rv_param) if rv_param not in ("", "0") else None
        try:
            watcher, backlog = self.store.watch(t.kind, selection, since)
        except Gone as err:
            # Upstream answers 200 and reports the expired revision as an ERROR event.
            response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
            await response.prepare(request)
            await response.write(orjson.dumps({"type": "ERROR", "object": err.to_status()}) + b"\n")
            await response.write_eof()
            return response
        if since is None:
            backlog = self.store.snapshot_events(t.kind, selection)
        send_initial_end = q.get("sendInitialEvents") == "true"
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        timeout = _int_param(q, "timeoutSeconds", DEFAULT_WATCH_TIMEOUT)
        as_table = _is_table_request(request)
        include = q.get("includeObject", "PartialObjectMetadata")
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Transfer-Encoding": "chunked"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        first = [True]

        def encode(ev: Event) -> bytes:
            if as_table:
                obj = tables.table(t.kind, [ev.obj], self.store.clock(), include, headers=first[0])
                first[0] = False
                return orjson.dumps({"type": ev.type, "object": obj}) + b"\n"
            return b'{"type":"' + ev.type.encode() + b'","object":' + ev.raw + b"}\n"

        def bookmark(rv: int, initial_end: bool = False) -> bytes:
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            obj = {"kind": t.kind.kind, "apiVersion": t.kind.api_version, "metadata": meta}
            return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

        last_rv = since or 0
        try:
            if backlog:
                await response.write(b"".join(encode(ev) for ev in backlog))
                last_rv = max(last_rv, backlog[-1].rv)
            if send_initial_end and bookmarks:
                await response.write(bookmark(max(last_rv, self.store.rv), initial_end=True))
            while not self._closing.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    ev = await asyncio.wait_for(watcher.queue.get(), timeout=min(remaining, BOOKMARK_INTERVAL))
                except TimeoutError:
                    if bookmarks:
                        await response.write(bookmark(self.store.rv))
                    continue
                if ev is None:
                    break
                chunk = [encode(ev)]
                while not watcher.queue.empty() and len(chunk) < 512:
                    nxt = watcher.queue.get_nowait()
                    if nxt is None:
                        watcher.closed = True
                        break
                    if nxt.rv > last_rv:
                        chunk.append(encode(nxt))
                if ev.rv <= last_rv and len(chunk) == 1:
                    continue  # already sent in the backlog
                last_rv = ev.rv
                await response.write(b"".join(chunk))
                if watcher.closed:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unwatch(watcher)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    # ------------------------------------------------------------------ writes

    async def _body(self, request: web.Request) -> Obj:
        ctype = request.content_type
        raw = await request.read()
        if ctype == protobuf.CONTENT_TYPE:
            # kubectl's typed clients (create namespace, create deployment, ...) send protobuf.
            data: Any = protobuf.decode(raw)
        else:
            data = decode_document(raw, yaml_allowed=ctype == "application/yaml")
        if not isinstance(data, dict):
            raise BadRequest("the body of the request must be a JSON object")
        return data

    def _check_type(self, kind: Kind, obj: Obj) -> None:
        api_version, kind_name = obj.get("apiVersion"), obj.get("kind")
        if api_version and api_version != kind.api_version:
            raise BadRequest(
                f"the API version in the data ({api_version}) does not match the expected API version ({kind.api_version})"
            )
        if kind_name and kind_name != kind.kind:
            raise BadRequest(f"the kind in the data ({kind_name}) does not match the expected kind ({kind.kind})")

    def _manager(self, request: web.Request, default: str) -> str:
        manager = request.query.get("fieldManager", "")
        if manager:
            return manager
        agent = request.headers.get("User-Agent", "")
        return agent.split("/")[0] if agent else default

    def _now(self) -> str:
        return now_rfc3339(self.store.clock())

    async def _create(self, request: web.Request, t: Target) -> web.Response:
        obj = await self._body(request)
        self._check_type(t.kind, obj)
        meta = obj.setdefault("metadata", {})
        if t.kind.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != t.namespace:
                raise BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = t.namespace
        obj = patching.track_update(None, obj, self._manager(request, "unknown"), t.kind, self._now())
        created = self.store.create(t.kind, obj, dry_run=_dry_run(request))
        return self._respond_object(request, t.kind, created, status=201)

    async def _update(self, request: web.Request, t: Target) -> web.Response:
        obj = await self._body(request)
        self._check_type(t.kind, obj)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != t.name:
            raise BadRequest("the name of the object does not match the name on the URL")
        meta["name"] = t.name
        if t.kind.namespaced:
            meta["namespace"] = t.namespace
        old = self.store.get(t.kind, t.namespace, t.name)
        if t.subresource != "status":
            obj = patching.track_update(old, obj, self._manager(request, "unknown"), t.kind, self._now())
        updated = self.store.update(t.kind, obj, subresource=t.subresource, dry_run=_dry_run(request))
        return self._respond_object(request, t.kind, updated)

    async def _patch(self, request: web.Request, t: Target) -> web.Response:
        ctype = request.content_type
        if ctype not in PATCH_TYPES:
            raise UnsupportedMediaType(", ".join(PATCH_TYPES))
        body = await request.read()
        if ctype == "application/apply-patch+yaml":
            return await self._server_side_apply(request, t, body)
        if ctype == "application/strategic-merge-patch+json" and not patching.supports_strategic(t.kind):
            raise UnsupportedMediaType(", ".join(p for p in PATCH_TYPES if "strategic" not in p))
        old = self.store.get(t.kind, t.namespace, t.name)
        new = patching.apply_patch(old, body, ctype, t.kind)
        self._check_type(t.kind, new)
        new.setdefault("metadata", {})["name"] = t.name
        if t.kind.namespaced:
            new["metadata"]["namespace"] = t.namespace
        if t.subresource != "status":
            new = patching.track_update(old, new, self._manager(request, "unknown"), t.kind, self._now())
        updated = self.store.update(t.kind, new, subresource=t.subresource, dry_run=_dry_run(request))
        return self._respond_object(request, t.kind, updated)

    async def _server_side_apply(self, request: web.Request, t: Target, body: bytes) -> web.Response:
        applied = decode_document(body, yaml_allowed=True)
        if not isinstance(applied, dict):
            raise BadRequest("the body of the request must be an object")
        self._check_type(t.kind, applied)
        manager = request.query.get("fieldManager", "")
        if not manager:
            raise BadRequest("PATCH, application/apply-patch+yaml requests must supply a fieldManager")
        force = request.query.get("force") in ("true", "1")
        meta = applied.setdefault("metadata", {})
        meta.setdefault("name", t.name)
        if t.kind.namespaced:
            meta.setdefault("namespace", t.namespace)
        try:
            live: Obj | None = self.store.get(t.kind, t.namespace, t.name)
        except NotFound:
            live = None
        merged = patching.apply(live, applied, manager, t.kind, force, self._now())
        if live is None:
            created = self.store.create(t.kind, merged, dry_run=_dry_run(request))
            return self._respond_object(request, t.kind, created, status=201)
        updated = self.store.update(t.kind, merged, subresource=t.subresource, dry_run=_dry_run(request))
        return self._respond_object(request, t.kind, updated)

    async def _delete(self, request: web.Request, t: Target) -> web.Response:
        opts = await self._delete_options(request)
        obj, removed = self.store.delete(
            t.kind,
            t.namespace,
            t.name,
            grace_period=opts.get("gracePeriodSeconds"),
            propagation=opts.get("propagationPolicy"),
            preconditions=opts.get("preconditions"),
            dry_run=_dry_run(request),
        )
        if removed and t.kind.plural not in ("pods",):
            return _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": t.name,
                        "group": t.kind.group,
                        "kind": t.kind.plural,
                        "uid": obj["metadata"]["uid"],
                    },
                }
            )
        return _json(obj)

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        raw = await request.read()
        if raw.strip():
            body = (
                protobuf.decode(raw)
                if request.content_type == protobuf.CONTENT_TYPE
                else decode_document(raw, yaml_allowed=False)
            )
            if isinstance(body, dict):
                opts.update(body)
        q = request.query
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q and "propagationPolicy" not in opts:
            opts["propagationPolicy"] = "Orphan" if q["orphanDependents"] == "true" else "Background"
        if opts.get("orphanDependents") is not None and "propagationPolicy" not in opts:
            opts["propagationPolicy"] = "Orphan" if opts["orphanDependents"] else "Background"
        return opts

    async def _delete_collection(self, request: web.Request, t: Target) -> web.Response:
        opts = await self._delete_options(request)
        selection = self._selection(request, t)
        deleted = []
        for obj in self.store.list_objects(t.kind, selection):
            meta = obj["metadata"]
            with contextlib.suppress(NotFound):
                gone, _ = self.store.delete(
                    t.kind,
                    meta.get("namespace", ""),
                    meta["name"],
                    grace_period=opts.get("gracePeriodSeconds"),
                    propagation=opts.get("propagationPolicy"),
                )
                deleted.append(gone)
        return _json(
            {
                "kind": t.kind.list_kind,
                "apiVersion": t.kind.api_version,
                "metadata": {"resourceVersion": str(self.store.rv)},
                "items": deleted,
            }
        )

    # ------------------------------------------------------------------ subresources

    def _scale_of(self, t: Target, obj: Obj) -> Obj:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        selector = spec.get("selector") or {}
        sel_text = selector_string(selector)
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: v
                for k, v in obj["metadata"].items()
                if k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": int(spec.get("replicas", 0))},
            "status": {
                "replicas": int(status.get("replicas", 0)),
                "selector": "" if sel_text == "<none>" else sel_text,
            },
        }

    async def _scale(self, request: web.Request, t: Target) -> web.Response:
        obj = self.store.get(t.kind, t.namespace, t.name)
        scale = self._scale_of(t, obj)
        if request.method == "GET":
            return _json(scale)
        if request.method == "PUT":
            new_scale = await self._body(request)
        elif request.method == "PATCH":
            ctype = request.content_type
            if ctype not in PATCH_TYPES[:3]:
                raise UnsupportedMediaType(", ".join(PATCH_TYPES[:3]))
            new_scale = (
                patching.merge_patch(scale, orjson.loads(await request.read()))
                if "json-patch" not in ctype
                else patching.json_patch(scale, orjson.loads(await request.read()))
            )
        else:
            raise MethodNotSupported("scale", request.method)
        replicas = (new_scale.get("spec") or {}).get("replicas", 0)
        obj["spec"]["replicas"] = replicas
        rv = (new_scale.get("metadata") or {}).get("resourceVersion")
        if rv:
            obj["metadata"]["resourceVersion"] = rv
        updated = self.store.update(t.kind, obj)
        return _json(self._scale_of(t, updated))

    async def _bind(self, request: web.Request, t: Target) -> web.Response:
        """``POST pods/{name}/binding`` (upstream ``BindingREST.Create``): answers a Status Success."""
        if request.method != "POST":
            raise MethodNotSupported("pods/binding", request.method)
        binding = await self._body(request)
        meta = binding.get("metadata") or {}
        if meta.get("namespace") and meta["namespace"] != t.namespace:
            raise BadRequest("the namespace of the provided object does not match the namespace sent on the request")
        if meta.get("name") != t.name:
            raise BadRequest("name in URL does not match name in Binding object")
        errors = validate_binding(binding)
        if errors:
            raise invalid("Binding", t.name, errors)
        target = binding["target"]
        self.store.bind(
            t.namespace,
            t.name,
            str(target["name"]),
            uid=str(meta.get("uid") or ""),
            annotations=meta.get("annotations") or None,
            dry_run=_dry_run(request),
        )
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)

    async def _log(self, request: web.Request, t: Target) -> web.StreamResponse:
        """``GET pods/{name}/log``: upstream's ``LogREST`` — check, then proxy to the node's kubelet.

        The options are validated and the container chosen here (``LogLocation``); the rest (which
        run, whether it has logs yet) is the kubelet's to say, and its refusals pass through with
        their status.  The body is streamed chunk by chunk, so ``kubectl logs -f`` follows.
        """
        if request.method != "GET":
            raise MethodNotSupported("pods/log", request.method)
        params = _log_params(request.query, t.name)
        pod = self.store.get(t.kind, t.namespace, t.name)
        spec = pod.get("spec") or {}
        regular = [str(c.get("name", "")) for c in spec.get("containers") or []]
        every = [
            str(c.get("name", ""))
            for key in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(key) or []
        ]
        container = request.query.get("container", "")
        if not container:
            if len(regular) == 1:
                container = regular[0]
            elif not regular:
                raise BadRequest(f"a container name must be specified for pod {t.name}")
            else:
                raise BadRequest(
                    f"a container name must be specified for pod {t.name}, choose one of: [{' '.join(every)}]"
                )
        elif container not in every:
            raise BadRequest(f"container {container} is not valid for pod {t.name}")
        node = str(spec.get("nodeName") or "")
        if not node:
            raise BadRequest(
                f"container {go_quote(container)} in pod {go_quote(t.name)} is waiting to start: ContainerCreating"
            )
        path = f"/containerLogs/{t.namespace}/{t.name}/{container}"
        url = f"http://{node}{path}" + (f"?{urlencode(params)}" if params else "")
        sock = self.kubelet_socket(node) if self.kubelet_socket is not None else None
        if sock is None:
            raise StatusError(500, "", f'Get "{url}": dial unix: node "{node}" has no kubelet serving logs')
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock)), timeout=timeout) as session:
            try:
                upstream = await session.get(f"http://{node}{path}", params=params)
            except aiohttp.ClientConnectorError as e:
                why = (e.os_error.strerror or str(e.os_error)).lower()
                raise StatusError(500, "", f'Get "{url}": dial unix {sock}: connect: {why}') from e
            except aiohttp.ClientError as e:
                raise StatusError(500, "", f'Get "{url}": {e}') from e
            async with upstream:
                if upstream.status >= 300:
                    return await _kubelet_error(upstream)
                return await self._relay(request, upstream)

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        """Copy the kubelet's body to the client as it arrives; stop when either end goes away."""
        response = web.StreamResponse(status=200)
        response.content_type = "text/plain"
        await response.prepare(request)
        pending: asyncio.Task[bytes] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(upstream.content.readany())
                done, _ = await asyncio.wait({pending}, timeout=LOG_DISCONNECT_CHECK)
                if not done:
                    if self._closing.is_set() or request.transport is None or request.transport.is_closing():
                        return response  # the client left (or we are stopping): drop the kubelet stream
                    continue
                try:
                    chunk = pending.result()
                except aiohttp.ClientError as e:  # the kubelet went away mid-stream: end the body there
                    log.info("log stream from kubelet ended early: %s", e)
                    chunk = b""
                pending = None
                if not chunk:
                    break
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client left
        finally:
            if pending is not None:
                pending.cancel()
        return response

    # ------------------------------------------------------------------ serving

    async def serve(
        self, host: str, port: int, unix_path: str | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> web.AppRunner:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        if unix_path:
            await web.UnixSite(runner, unix_path).start()
        self.server_address = f"{host}:{port}"
        return runner


class _JSONishLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: timestamps stay strings (no datetime objects)."""


_JSONishLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def decode_document(raw: bytes, yaml_allowed: bool) -> Any:
    """A request body as JSON (fast path) or, where allowed, YAML."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        if not yaml_allowed:
            raise BadRequest(f"the body of the request was in an unknown format: {e}") from e
    try:
        return yaml.load(raw, Loader=_JSONishLoader)
    except yaml.YAMLError as e:
        raise BadRequest(f"error decoding YAML: {e}") from e


def _not_found_path() -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource")


def _int_param(q: Any, key: str, default: int) -> int:
    try:
        return int(q.get(key, default))
    except ValueError as e:
        raise BadRequest(f"invalid {key}: {q.get(key)}") from e


def _dry_run(request: web.Request) -> bool:
    return request.query.get("dryRun", "") == "All"


def _encode_continue(key: tuple[str, str], rv: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(key)})).decode()


def _decode_continue(token: str) -> tuple[str, str] | None:
    if not token:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        ns, name = data["start"]
        return (str(ns), str(name))
    except (ValueError, KeyError, TypeError) as e:
        raise BadRequest(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        ) from e


def utcnow() -> datetime:
    return datetime.now(UTC)


_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _log_params(q: Any, name: str) -> dict[str, str]:
    """Decode and validate (``ValidatePodLogOptions``) a log request's options into the kubelet's query."""
    params: dict[str, str] = {}
    for key in _LOG_BOOLS:
        value = q.get(key, "")
        if value in _GO_TRUE:
            params[key] = "true"
        elif value not in (*_GO_FALSE, ""):
            raise BadRequest(f'strconv.ParseBool: parsing "{value}": invalid syntax')
    numbers: dict[str, int] = {}
    for key in ("sinceSeconds", "tailLines", "limitBytes"):
        value = q.get(key, "")
        if value == "":
            continue
        try:
            numbers[key] = int(value)
        except ValueError:
            raise BadRequest(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None
    since_time = q.get("sinceTime", "")
    if since_time:
        try:
            moment = datetime.fromisoformat(since_time)
        except ValueError:
            raise BadRequest(f'parsing time "{since_time}" as "2006-01-02T15:04:05Z07:00": cannot parse') from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        since_time = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    errors: list[FieldError] = []
    if numbers.get("tailLines", 0) < 0:
        errors.append(invalid_value("tailLines", numbers["tailLines"], "must be greater than or equal to 0"))
    if numbers.get("limitBytes", 1) < 1:
        errors.append(invalid_value("limitBytes", numbers["limitBytes"], "must be greater than 0"))
    if "sinceSeconds" in numbers and since_time:
        errors.append(forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    elif numbers.get("sinceSeconds", 1) < 1:
        errors.append(invalid_value("sinceSeconds", numbers["sinceSeconds"], "must be greater than 0"))
    if errors:
        raise invalid("PodLogOptions", name, errors)
    if "sinceSeconds" in numbers:
        params["sinceSeconds"] = str(numbers["sinceSeconds"])
    if since_time:
        params["sinceTime"] = since_time
    for key in ("tailLines", "limitBytes"):
        if key in numbers:
            params[key] = str(numbers[key])
    return params


_STATUS_REASONS = {400: "BadRequest", 404: "NotFound", 422: "Invalid", 500: "InternalError", 503: "ServiceUnavailable"}


async def _kubelet_error(upstream: aiohttp.ClientResponse) -> web.Response:
    """A kubelet refusal, passed on with its status (a Status body verbatim, plain text wrapped in one)."""
    body = await upstream.content.read(50_000)  # upstream's maxReadLength for proxied error bodies
    with contextlib.suppress(orjson.JSONDecodeError):
        status = orjson.loads(body)
        if isinstance(status, dict) and status.get("kind") == "Status":
            return _json(status, upstream.status)
    message = body.decode("utf-8", "replace").strip() or f"the kubelet answered {upstream.status}"
    return _error(StatusError(upstream.status, _STATUS_REASONS.get(upstream.status, ""), message))

"""The Gateway API kinds (``gateway.networking.k8s.io``), served as their CRDs would be.

Upstream these are CustomResourceDefinitions, so a real API server treats them differently from
built-in types, and this module reproduces that: structural defaults from the CRD schemas
(``kubebuilder:default``), OpenAPI schema checks worded as kube-openapi words them
(``spec.listeners[0].port in body should be greater than or equal to 1``), the
``x-kubernetes-validations`` CEL rules users commonly hit with the CRDs' own messages and the
CRD error shape (``spec.listeners: Invalid value: "array": Listener name must be unique within
the Gateway``), CEL being skipped with upstream's note when a schema error blocks it, the
status the CRDs default on creation, and the ``additionalPrinterColumns`` rows.  Rule texts
follow the standard channel of the current ``apis/v1`` markers.  Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubewire.api import meta
from kubewire.api.core import as_dict, as_dicts, as_list
from kubewire.api.fields import (
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    TOO_MANY,
    TYPE_INVALID,
    FieldError,
    Path,
    invalid_value,
    not_supported,
    required,
    too_long,
    too_many,
)
from kubewire.api.registry import Column, Kind, Obj

GROUP = "gateway.networking.k8s.io"
CATEGORIES = ("gateway-api",)

# Patterns exactly as the CRD schemas carry them (they appear verbatim in error messages).
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
PRECISE_HOSTNAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
GROUP_PATTERN = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
KIND_PATTERN = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SECTION_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONTROLLER_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$"
PROTOCOL = r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$"
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$"
ADDRESS_TYPE = (
    r"^Hostname|IPAddress|NamedAddress|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$"
)

PATH_MATCH_TYPES = ("Exact", "PathPrefix", "RegularExpression")
VALUE_MATCH_TYPES = ("Exact", "RegularExpression")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
HTTP_FILTER_TYPES = (
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "ExtensionRef",
    "CORS",
)
GRPC_FILTER_TYPES = ("ResponseHeaderModifier", "RequestHeaderModifier", "RequestMirror", "ExtensionRef")
# filter.type -> the member that must be set for it (and only for it).
FILTER_FIELDS = (
    ("cors", "CORS"),
    ("requestHeaderModifier", "RequestHeaderModifier"),
    ("responseHeaderModifier", "ResponseHeaderModifier"),
    ("requestMirror", "RequestMirror"),
    ("requestRedirect", "RequestRedirect"),
    ("urlRewrite", "URLRewrite"),
    ("extensionRef", "ExtensionRef"),
)
FROM_NAMESPACES = ("All", "Selector", "Same")
TLS_MODES = ("Terminate", "Passthrough")
PATH_MODIFIER_TYPES = ("ReplaceFullPath", "ReplacePrefixMatch")

CEL_NOT_CHECKED = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"
_BLOCKING = (NOT_SUPPORTED, REQUIRED, TOO_LONG, TOO_MANY, TYPE_INVALID)
_NO_VALUE = object()


def json_type(value: Any) -> str:
    """The OpenAPI type name of a decoded JSON value (how CRD errors name the bad type)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class Check:
    """Collects a CRD's schema errors and CEL errors in the order the API server reports them.

    Schema (OpenAPI) errors come first; CEL rules only run when no schema error blocks them,
    otherwise upstream appends one ``<nil>`` error saying rules were not checked.
    """

    def __init__(self, prior: Iterable[FieldError] = ()) -> None:
        self.schema: list[FieldError] = list(prior)
        self.cel: list[FieldError] = []

    def result(self) -> list[FieldError]:
        if any(e.type in _BLOCKING for e in self.schema):
            return [*self.schema, invalid_value("<nil>", None, CEL_NOT_CHECKED)]
        return [*self.schema, *self.cel]

    # -- schema primitives --

    def typed(self, value: Any, path: Path, expected: str) -> bool:
        actual = json_type(value)
        ok = actual == expected or (expected == "number" and actual == "integer")
        if not ok:
            detail = f'{path} in body must be of type {expected}: "{actual}"'
            self.schema.append(FieldError(TYPE_INVALID, str(path), actual, detail))
        return ok

    def _fetch(self, parent: Mapping[str, Any], key: str, path: Path, need: bool) -> Any:
        value = parent.get(key)
        if value is None and need:
            self.schema.append(required(path.child(key)))
        return _NO_VALUE if value is None else value

    def string(
        self,
        parent: Mapping[str, Any],
        key: str,
        path: Path,
        *,
        need: bool = False,
        min_len: int = 0,
        max_len: int = 0,
        pattern: str = "",
        enum: Sequence[str] = (),
    ) -> str | None:
        value = self._fetch(parent, key, path, need)
        where = path.child(key)
        if value is _NO_VALUE or not self.typed(value, where, "string"):
            return None
        text = str(value)
        if enum and text not in enum:
            self.schema.append(not_supported(where, text, enum))
        if max_len and len(text) > max_len:
            self.schema.append(too_long(where, max_len))
        if len(text) < min_len:
            self.schema.append(invalid_value(where, text, f"{where} in body should be at least {min_len} chars long"))
        if pattern and not re.search(pattern, text):
            self.schema.append(invalid_value(where, text, f"{where} in body should match '{pattern}'"))
        return text

    def integer(
        self,
        parent: Mapping[str, Any],
        key: str,
        path: Path,
        *,
        need: bool = False,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int | None:
        value = self._fetch(parent, key, path, need)
        where = path.child(key)
        if value is _NO_VALUE or not self.typed(value, where, "integer"):
            return None
        number = int(value)
        if lo is not None and number < lo:
            self.schema.append(invalid_value(where, number, f"{where} in body should be greater than or equal to {lo}"))
        if hi is not None and number > hi:
            self.schema.append(invalid_value(where, number, f"{where} in body should be less than or equal to {hi}"))
        return number

    def obj(self, parent: Mapping[str, Any], key: str, path: Path, *, need: bool = False) -> dict[str, Any] | None:
        value = self._fetch(parent, key, path, need)
        if value is _NO_VALUE or not self.typed(value, path.child(key), "object"):
            return None
        return as_dict(value)

    def items(
        self,
        parent: Mapping[str, Any],
        key: str,
        path: Path,
        *,
        need: bool = False,
        min_items: int = 0,
        max_items: int = 0,
    ) -> list[dict[str, Any]] | None:
        """A list of objects; ``None`` when absent or not a list."""
        value = self._fetch(parent, key, path, need)
        where = path.child(key)
        if value is _NO_VALUE or not self.typed(value, where, "array"):
            return None
        if max_items and len(value) > max_items:
            self.schema.append(too_many(where, len(value), max_items))
        if len(value) < min_items:
            self.schema.append(
                invalid_value(where, len(value), f"{where} in body should have at least {min_items} items")
            )
        out = []
        for i, item in enumerate(value):
            if self.typed(item, where.index(i), "object"):
                out.append(as_dict(item))
            else:
                out.append({})
        return out

    def rule(self, path: Path, kind: str, ok: bool | str, message: str) -> None:
        """One CEL rule: ``ok`` True passes; a string is a runtime error (``no such key: x``)."""
        if ok is True:
            return
        text = message if ok is False else f"{ok} evaluating rule: {message}"
        self.cel.append(invalid_value(path, kind, text))


def _exists_one(items: Iterable[Any], pred: Callable[[Any], bool]) -> bool:
    return sum(1 for x in items if pred(x)) == 1


def _unique_by(items: Sequence[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> bool:
    """CEL ``self.all(a, self.exists_one(b, key(a) == key(b)))``."""
    keys = [key(x) for x in items]
    return all(keys.count(k) == 1 for k in keys)


# --- defaulting --------------------------------------------------------------------------------


def _default_parent_refs(spec: dict[str, Any]) -> None:
    for ref in as_dicts(spec.get("parentRefs")):
        ref.setdefault("group", GROUP)
        ref.setdefault("kind", "Gateway")


def _default_backend_ref(ref: dict[str, Any], weighted: bool = True) -> None:
    ref.setdefault("group", "")
    ref.setdefault("kind", "Service")
    if weighted:
        ref.setdefault("weight", 1)


def _default_filters(filters: Any) -> None:
    for f in as_dicts(filters):
        mirror = f.get("requestMirror")
        if isinstance(mirror, dict):
            backend = mirror.get("backendRef")
            if isinstance(backend, dict):
                _default_backend_ref(backend, weighted=False)
            fraction = mirror.get("fraction")
            if isinstance(fraction, dict):
                fraction.setdefault("denominator", 100)
        redirect = f.get("requestRedirect")
        if isinstance(redirect, dict):
            redirect.setdefault("statusCode", 302)


def _default_backend_refs(refs: Any) -> None:
    for ref in as_dicts(refs):
        _default_backend_ref(ref)
        _default_filters(ref.get("filters"))


def _default_path_match() -> dict[str, Any]:
    return {"type": "PathPrefix", "value": "/"}


def default_http_route(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _default_parent_refs(spec)
    if "rules" not in spec:
        spec["rules"] = [{"matches": [{"path": _default_path_match()}]}]
    for rule in as_dicts(spec.get("rules")):
        if "matches" not in rule:
            rule["matches"] = [{"path": _default_path_match()}]
        for match in as_dicts(rule.get("matches")):
            _default_http_match(match)
        _default_filters(rule.get("filters"))
        _default_backend_refs(rule.get("backendRefs"))


def _default_http_match(match: dict[str, Any]) -> None:
    path = match.setdefault("path", _default_path_match())
    if isinstance(path, dict):
        path.setdefault("type", "PathPrefix")
        path.setdefault("value", "/")
    for key in ("headers", "queryParams"):
        for item in as_dicts(match.get(key)):
            item.setdefault("type", "Exact")


def default_grpc_route(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _default_parent_refs(spec)
    for rule in as_dicts(spec.get("rules")):
        for match in as_dicts(rule.get("matches")):
            method = match.get("method")
            if isinstance(method, dict):
                method.setdefault("type", "Exact")
            for header in as_dicts(match.get("headers")):
                header.setdefault("type", "Exact")
        _default_filters(rule.get("filters"))
        _default_backend_refs(rule.get("backendRefs"))


def default_l4_route(obj: Obj) -> None:
    """TLSRoute, TCPRoute and UDPRoute: parent and backend reference defaults."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _default_parent_refs(spec)
    for rule in as_dicts(spec.get("rules")):
        _default_backend_refs(rule.get("backendRefs"))


def default_gateway(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    for listener in as_dicts(spec.get("listeners")):
        _default_listener(listener)
    for address in as_dicts(spec.get("addresses")):
        address.setdefault("type", "IPAddress")
    allowed = spec.get("allowedListeners")
    if isinstance(allowed, dict):
        namespaces = allowed.setdefault("namespaces", {"from": "None"})
        if isinstance(namespaces, dict):
            namespaces.setdefault("from", "None")


def _default_listener(listener: dict[str, Any]) -> None:
    allowed = listener.setdefault("allowedRoutes", {"namespaces": {"from": "Same"}})
    if isinstance(allowed, dict):
        namespaces = allowed.setdefault("namespaces", {"from": "Same"})
        if isinstance(namespaces, dict):
            namespaces.setdefault("from", "Same")
        for kind in as_dicts(allowed.get("kinds")):
            kind.setdefault("group", GROUP)
    tls = listener.get("tls")
    if isinstance(tls, dict):
        tls.setdefault("mode", "Terminate")
        for ref in as_dicts(tls.get("certificateRefs")):
            ref.setdefault("group", "")
            ref.setdefault("kind", "Secret")


# --- shared schema pieces ----------------------------------------------------------------------


def _object_ref_fields(c: Check, ref: dict[str, Any], path: Path) -> None:
    c.string(ref, "group", path, max_len=253, pattern=GROUP_PATTERN)
    c.string(ref, "kind", path, min_len=1, max_len=63, pattern=KIND_PATTERN)
    c.string(ref, "name", path, need=True, min_len=1, max_len=253)
    c.string(ref, "namespace", path, min_len=1, max_len=63, pattern=NAMESPACE_PATTERN)


def _parent_refs(c: Check, spec: dict[str, Any], path: Path) -> None:
    refs = c.items(spec, "parentRefs", path, max_items=32)
    if refs is None:
        return
    for i, ref in enumerate(refs):
        where = path.child("parentRefs").index(i)
        _object_ref_fields(c, ref, where)
        c.string(ref, "sectionName", where, min_len=1, max_len=253, pattern=SECTION_NAME)
        c.integer(ref, "port", where, lo=1, hi=65535)
    where = path.child("parentRefs")
    c.rule(where, "array", _section_names_consistent(refs), _SECTION_SPECIFIED)
    c.rule(where, "array", _section_names_unique(refs), _SECTION_UNIQUE)


_SECTION_SPECIFIED = "sectionName must be specified when parentRefs includes 2 or more references to the same parent"
_SECTION_UNIQUE = "sectionName must be unique when parentRefs includes 2 or more references to the same parent"


def _same_parent(a: dict[str, Any], b: dict[str, Any]) -> bool:
    same = all(a.get(k) == b.get(k) for k in ("group", "kind", "name"))
    return same and (a.get("namespace") or "") == (b.get("namespace") or "")


def _section_names_consistent(refs: list[dict[str, Any]]) -> bool:
    return all(
        bool(a.get("sectionName")) == bool(b.get("sectionName")) for a in refs for b in refs if _same_parent(a, b)
    )


def _section_names_unique(refs: list[dict[str, Any]]) -> bool:
    def key(ref: dict[str, Any]) -> tuple[Any, ...]:
        parent = tuple(ref.get(k) for k in ("group", "kind", "name"))
        return (*parent, ref.get("namespace") or "", ref.get("sectionName") or "")

    return _unique_by(refs, key)


def _hostnames(c: Check, spec: dict[str, Any], path: Path) -> None:
    value = spec.get("hostnames")
    if value is None or not c.typed(value, path.child("hostnames"), "array"):
        return
    where = path.child("hostnames")
    if len(value) > 16:
        c.schema.append(too_many(where, len(value), 16))
    for i, host in enumerate(value):
        _hostname(c, host, where.index(i))


def _hostname(c: Check, host: Any, where: Path) -> None:
    if not c.typed(host, where, "string"):
        return
    text = str(host)
    if len(text) > 253:
        c.schema.append(too_long(where, 253))
    if not text:
        c.schema.append(invalid_value(where, text, f"{where} in body should be at least 1 chars long"))
    if not re.search(HOSTNAME, text):
        c.schema.append(invalid_value(where, text, f"{where} in body should match '{HOSTNAME}'"))


def _backend_ref(c: Check, ref: dict[str, Any], path: Path, weighted: bool = True) -> None:
    _object_ref_fields(c, ref, path)
    c.integer(ref, "port", path, lo=1, hi=65535)
    if weighted:
        c.integer(ref, "weight", path, lo=0, hi=1000000)
    is_service = (ref.get("group") or "") == "" and ref.get("kind", "Service") == "Service"
    c.rule(path, "object", not is_service or ref.get("port") is not None, "Must have port for Service reference")


def _backend_refs(c: Check, parent: dict[str, Any], path: Path, *, min_items: int = 0) -> list[dict[str, Any]]:
    refs = c.items(parent, "backendRefs", path, min_items=min_items, max_items=16) or []
    for i, ref in enumerate(refs):
        _backend_ref(c, ref, path.child("backendRefs").index(i))
    return refs


def _common_route(c: Check, spec: dict[str, Any], path: Path, hostnames: bool = True) -> None:
    _parent_refs(c, spec, path)
    if hostnames:
        _hostnames(c, spec, path)


def _rules_cel(c: Check, rules: list[dict[str, Any]], path: Path) -> None:
    def named_once(rule: dict[str, Any]) -> bool:
        return "name" not in rule or _exists_one(rules, lambda r: "name" in r and r["name"] == rule["name"])

    c.rule(path, "array", all(named_once(r) for r in rules), "Rule name must be unique within the route")
    total = sum(len(as_list(r.get("matches"))) for r in rules[:16])
    c.rule(
        path,
        "array",
        total <= 128,
        "While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules "
        "in a route must be less than 128",
    )


def _header_matches(c: Check, match: dict[str, Any], key: str, path: Path, value_max: int) -> None:
    for i, item in enumerate(c.items(match, key, path, max_items=16) or []):
        where = path.child(key).index(i)
        c.string(item, "name", where, need=True, min_len=1, max_len=256, pattern=HEADER_NAME)
        c.string(item, "value", where, need=True, min_len=1, max_len=value_max)
        c.string(item, "type", where, enum=VALUE_MATCH_TYPES)


# --- Gateway and GatewayClass ------------------------------------------------------------------


def validate_gateway_class(obj: Obj, old: Obj | None) -> list[FieldError]:
    c = Check(meta.validate_object_meta(obj, False, meta.is_dns1123_subdomain, old))
    spec = c.obj(obj, "spec", Path(), need=True)
    if spec is None:
        return c.result()
    path = Path("spec")
    name = c.string(spec, "controllerName", path, need=True, min_len=1, max_len=253, pattern=CONTROLLER_NAME)
    c.string(spec, "description", path, max_len=64)
    params = c.obj(spec, "parametersRef", path)
    if params is not None:
        where = path.child("parametersRef")
        c.string(params, "group", where, need=True, max_len=253, pattern=GROUP_PATTERN)
        c.string(params, "kind", where, need=True, min_len=1, max_len=63, pattern=KIND_PATTERN)
        c.string(params, "name", where, need=True, min_len=1, max_len=253)
        c.string(params, "namespace", where, min_len=1, max_len=63, pattern=NAMESPACE_PATTERN)
    old_name = as_dict((old or {}).get("spec")).get("controllerName")
    if old is not None and name is not None and old_name is not None:
        c.rule(path.child("controllerName"), "string", name == old_name, "Value is immutable")
    return c.result()


def validate_gateway(obj: Obj, old: Obj | None) -> list[FieldError]:
    c = Check(meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old))
    spec = c.obj(obj, "spec", Path(), need=True)
    if spec is not None:
        _gateway_spec(c, spec, Path("spec"))
    return c.result()


def _gateway_spec(c: Check, spec: dict[str, Any], path: Path) -> None:
    c.string(spec, "gatewayClassName", path, need=True, min_len=1, max_len=253)
    listeners = c.items(spec, "listeners", path, need=True, min_items=1, max_items=64)
    for i, listener in enumerate(listeners or []):
        _listener(c, listener, path.child("listeners").index(i))
    if listeners:
        _listeners_cel(c, listeners, path.child("listeners"))
    addresses = c.items(spec, "addresses", path, max_items=16)
    for i, address in enumerate(addresses or []):
        where = path.child("addresses").index(i)
        c.string(address, "type", where, min_len=1, max_len=253, pattern=ADDRESS_TYPE)
        c.string(address, "value", where, max_len=253)
    if addresses:
        _addresses_cel(c, addresses, path.child("addresses"))


def _listener(c: Check, listener: dict[str, Any], path: Path) -> None:
    c.string(listener, "name", path, need=True, min_len=1, max_len=253, pattern=SECTION_NAME)
    if listener.get("hostname") is not None:
        _hostname(c, listener["hostname"], path.child("hostname"))
    c.integer(listener, "port", path, need=True, lo=1, hi=65535)
    c.string(listener, "protocol", path, need=True, min_len=1, max_len=255, pattern=PROTOCOL)
    tls = c.obj(listener, "tls", path)
    if tls is not None:
        _listener_tls(c, tls, path.child("tls"))
    allowed = c.obj(listener, "allowedRoutes", path)
    if allowed is not None:
        _allowed_routes(c, allowed, path.child("allowedRoutes"))


def _listener_tls(c: Check, tls: dict[str, Any], path: Path) -> None:
    mode = c.string(tls, "mode", path, enum=TLS_MODES)
    refs = c.items(tls, "certificateRefs", path, max_items=64)
    for i, ref in enumerate(refs or []):
        _object_ref_fields(c, ref, path.child("certificateRefs").index(i))
    c.rule(path, "object", _terminate_has_certificates(tls, mode), _TERMINATE_NEEDS_CERTS)


_TERMINATE_NEEDS_CERTS = "certificateRefs or options must be specified when mode is Terminate"


def _terminate_has_certificates(tls: dict[str, Any], mode: str | None) -> bool | str:
    """``size(self.certificateRefs) > 0 || size(self.options) > 0`` with CEL's missing-key errors."""
    if mode != "Terminate":
        return True
    refs, options = tls.get("certificateRefs"), tls.get("options")
    if refs:
        return True
    if options is not None:
        return len(options) > 0 if refs is not None else (len(options) > 0 or "no such key: certificateRefs")
    return "no such key: certificateRefs" if refs is None else "no such key: options"


def _allowed_routes(c: Check, allowed: dict[str, Any], path: Path) -> None:
    namespaces = c.obj(allowed, "namespaces", path)
    if namespaces is not None:
        c.string(namespaces, "from", path.child("namespaces"), enum=FROM_NAMESPACES)
    for i, kind in enumerate(c.items(allowed, "kinds", path, max_items=8) or []):
        where = path.child("kinds").index(i)
        c.string(kind, "group", where, max_len=253, pattern=GROUP_PATTERN)
        c.string(kind, "kind", where, need=True, min_len=1, max_len=63, pattern=KIND_PATTERN)


def _protocol_is(listener: dict[str, Any], *names: str) -> bool:
    return str(listener.get("protocol") or "").upper() in names


def _listeners_cel(c: Check, listeners: list[dict[str, Any]], path: Path) -> None:
    def tls_mode(listener: dict[str, Any]) -> str:
        return str(as_dict(listener.get("tls")).get("mode") or "")

    def key(listener: dict[str, Any]) -> tuple[Any, ...]:
        return (listener.get("port"), listener.get("protocol"), listener.get("hostname"))

    rules = (
        (
            not any(_protocol_is(x, "HTTP", "TCP", "UDP") and "tls" in x for x in listeners),
            "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
        ),
        (
            all(tls_mode(x) in ("", "Terminate") for x in listeners if _protocol_is(x, "HTTPS") and "tls" in x),
            "tls mode must be Terminate for protocol HTTPS",
        ),
        (all(tls_mode(x) for x in listeners if _protocol_is(x, "TLS")), "tls mode must be set for protocol TLS"),
        (
            not any(_protocol_is(x, "TCP", "UDP") and x.get("hostname") for x in listeners),
            "hostname must not be specified for protocols ['TCP', 'UDP']",
        ),
        (
            _unique_by(listeners, lambda x: x.get("name")),
            "Listener name must be unique within the Gateway",
        ),
        (
            _unique_by(listeners, key),
            "Combination of port, protocol and hostname must be unique for each listener",
        ),
    )
    for ok, message in rules:
        c.rule(path, "array", ok, message)


def _addresses_cel(c: Check, addresses: list[dict[str, Any]], path: Path) -> None:
    for kind, message in (
        ("IPAddress", "IPAddress values must be unique"),
        ("Hostname", "Hostname values must be unique"),
    ):
        values = [a.get("value") for a in addresses if a.get("type") == kind and a.get("value") is not None]
        c.rule(path, "array", len(values) == len(set(values)), message)


# --- HTTPRoute ---------------------------------------------------------------------------------


def validate_http_route(obj: Obj, old: Obj | None) -> list[FieldError]:
    c = Check(meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old))
    spec = c.obj(obj, "spec", Path(), need=True)
    if spec is None:
        return c.result()
    path = Path("spec")
    _common_route(c, spec, path)
    rules = c.items(spec, "rules", path, min_items=1, max_items=16)
    for i, rule in enumerate(rules or []):
        _http_rule(c, rule, path.child("rules").index(i))
    if rules:
        _rules_cel(c, rules, path.child("rules"))
    return c.result()


def _http_rule(c: Check, rule: dict[str, Any], path: Path) -> None:
    c.string(rule, "name", path, min_len=1, max_len=253, pattern=SECTION_NAME)
    matches = c.items(rule, "matches", path, max_items=64) or []
    for i, match in enumerate(matches):
        _http_match(c, match, path.child("matches").index(i))
    filters = _filters(c, rule, path, HTTP_FILTER_TYPES)
    refs = _backend_refs(c, rule, path)
    for i, ref in enumerate(refs):
        _filters(c, ref, path.child("backendRefs").index(i), HTTP_FILTER_TYPES)
    _http_rule_cel(c, rule, matches, filters, refs, path)


def _http_match(c: Check, match: dict[str, Any], path: Path) -> None:
    path_match = c.obj(match, "path", path)
    if path_match is not None:
        where = path.child("path")
        kind = c.string(path_match, "type", where, enum=PATH_MATCH_TYPES)
        value = c.string(path_match, "value", where, max_len=1024)
        _path_match_cel(c, kind or "PathPrefix", value if value is not None else "/", where)
    _header_matches(c, match, "headers", path, 4096)
    _header_matches(c, match, "queryParams", path, 1024)
    c.string(match, "method", path, enum=HTTP_METHODS)


_PATH_CHARS = r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$"
_STRICT = "when type one of ['Exact', 'PathPrefix']"


def _path_match_cel(c: Check, kind: str, value: str, path: Path) -> None:
    strict = kind in ("Exact", "PathPrefix")
    checks = [
        (value.startswith("/"), f"value must be an absolute path and start with '/' {_STRICT}"),
        *(
            (seq not in value, f"must not contain '{seq}' {_STRICT}")
            for seq in ("//", "/./", "/../", "%2f", "%2F", "#")
        ),
        *((not value.endswith(end), f"must not end with '{end}' {_STRICT}") for end in ("/..", "/.")),
    ]
    for ok, message in checks:
        c.rule(path, "object", ok or not strict, message)
    c.rule(path, "object", kind in PATH_MATCH_TYPES, "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']")
    c.rule(
        path,
        "object",
        not strict or re.search(_PATH_CHARS, value) is not None,
        f"must only contain valid characters (matching {_PATH_CHARS}) for types ['Exact', 'PathPrefix']",
    )


def _filters(c: Check, parent: dict[str, Any], path: Path, types: Sequence[str]) -> list[dict[str, Any]]:
    filters = c.items(parent, "filters", path, max_items=16) or []
    where = path.child("filters")
    for i, f in enumerate(filters):
        _filter(c, f, where.index(i), types)
    if not filters:
        return filters
    kinds = [f.get("type") for f in filters]
    if "RequestRedirect" in types:
        c.rule(
            where,
            "array",
            not ("RequestRedirect" in kinds and "URLRewrite" in kinds),
            "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both",
        )
    for kind in ("CORS", "RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"):
        if kind in types:
            c.rule(where, "array", kinds.count(kind) <= 1, f"{kind} filter cannot be repeated")
    return filters


def _filter(c: Check, f: dict[str, Any], path: Path, types: Sequence[str]) -> None:
    kind = c.string(f, "type", path, need=True, enum=types)
    for member, member_type in FILTER_FIELDS:
        if member_type not in types:
            continue
        present = f.get(member) is not None
        c.rule(
            path,
            "object",
            not (present and kind != member_type),
            f"filter.{member} must be nil if the filter.type is not {member_type}",
        )
        c.rule(
            path,
            "object",
            not (not present and kind == member_type),
            f"filter.{member} must be specified for {member_type} filter.type",
        )
    mirror = c.obj(f, "requestMirror", path)
    if mirror is not None:
        _request_mirror(c, mirror, path.child("requestMirror"))
    redirect = c.obj(f, "requestRedirect", path)
    if redirect is not None:
        _request_redirect(c, redirect, path.child("requestRedirect"))
    rewrite = c.obj(f, "urlRewrite", path)
    if rewrite is not None:
        c.string(rewrite, "hostname", path.child("urlRewrite"), min_len=1, max_len=253, pattern=PRECISE_HOSTNAME)
        _path_modifier(c, rewrite, path.child("urlRewrite"))


def _request_mirror(c: Check, mirror: dict[str, Any], path: Path) -> None:
    backend = c.obj(mirror, "backendRef", path, need=True)
    if backend is not None:
        _backend_ref(c, backend, path.child("backendRef"), weighted=False)
    c.integer(mirror, "percent", path, lo=0, hi=100)
    c.rule(
        path,
        "object",
        not ("percent" in mirror and "fraction" in mirror),
        "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter",
    )


def _request_redirect(c: Check, redirect: dict[str, Any], path: Path) -> None:
    c.string(redirect, "scheme", path, enum=("http", "https"))
    c.string(redirect, "hostname", path, min_len=1, max_len=253, pattern=PRECISE_HOSTNAME)
    c.integer(redirect, "port", path, lo=1, hi=65535)
    code = redirect.get("statusCode")
    if code is not None and code not in (301, 302):
        c.schema.append(not_supported(path.child("statusCode"), code, ("301", "302")))
    _path_modifier(c, redirect, path)


def _path_modifier(c: Check, parent: dict[str, Any], path: Path) -> None:
    modifier = c.obj(parent, "path", path)
    if modifier is None:
        return
    where = path.child("path")
    kind = c.string(modifier, "type", where, need=True, enum=PATH_MODIFIER_TYPES)
    c.string(modifier, "replaceFullPath", where, max_len=1024)
    c.string(modifier, "replacePrefixMatch", where, max_len=1024)
    for member, member_type in (("replaceFullPath", "ReplaceFullPath"), ("replacePrefixMatch", "ReplacePrefixMatch")):
        present = member in modifier
        c.rule(
            where,
            "object",
            kind != member_type or present,
            f"{member} must be specified when type is set to '{member_type}'",
        )
        c.rule(
            where, "object", not present or kind == member_type, f"type must be '{member_type}' when {member} is set"
        )


def _prefix_filters(ref: dict[str, Any], member: str) -> int:
    return sum(1 for f in as_dicts(ref.get("filters")) if _replace_prefix(f, member))


def _replace_prefix(f: dict[str, Any], member: str) -> bool:
    modifier = as_dict(as_dict(f.get(member)).get("path"))
    return modifier.get("type") == "ReplacePrefixMatch" and "replacePrefixMatch" in modifier


def _http_rule_cel(
    c: Check,
    rule: dict[str, Any],
    matches: list[dict[str, Any]],
    filters: list[dict[str, Any]],
    refs: list[dict[str, Any]],
    path: Path,
) -> None:
    c.rule(
        path,
        "object",
        not refs or all("requestRedirect" not in f for f in filters),
        "RequestRedirect filter must not be used together with backendRefs",
    )
    single_prefix = len(matches) == 1 and as_dict(matches[0].get("path")).get("type") == "PathPrefix"
    for member, name in (("requestRedirect", "RequestRedirect"), ("urlRewrite", "URLRewrite")):
        on_rule = sum(1 for f in filters if _replace_prefix(f, member)) == 1
        c.rule(
            path,
            "object",
            not on_rule or single_prefix,
            f"When using {name} filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
        )
    for member, name, lead in (("requestRedirect", "RequestRedirect", "when"), ("urlRewrite", "URLRewrite", "When")):
        on_backend = sum(1 for b in refs if _prefix_filters(b, member) == 1) == 1
        c.rule(
            path,
            "object",
            not on_backend or single_prefix,
            f"Within backendRefs, {lead} using {name} filter with path.replacePrefixMatch, exactly one PathPrefix match "
            "must be specified",
        )


# --- GRPCRoute ---------------------------------------------------------------------------------

_GRPC_SERVICE = r"^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$"
_GRPC_METHOD = r"^[A-Za-z_][A-Za-z_0-9]*$"


def validate_grpc_route(obj: Obj, old: Obj | None) -> list[FieldError]:
    c = Check(meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old))
    spec = c.obj(obj, "spec", Path(), need=True)
    if spec is None:
        return c.result()
    path = Path("spec")
    _common_route(c, spec, path)
    rules = c.items(spec, "rules", path, max_items=16)
    for i, rule in enumerate(rules or []):
        _grpc_rule(c, rule, path.child("rules").index(i))
    if rules:
        _rules_cel(c, rules, path.child("rules"))
    return c.result()


def _grpc_rule(c: Check, rule: dict[str, Any], path: Path) -> None:
    c.string(rule, "name", path, min_len=1, max_len=253, pattern=SECTION_NAME)
    for i, match in enumerate(c.items(rule, "matches", path, max_items=64) or []):
        where = path.child("matches").index(i)
        method = c.obj(match, "method", where)
        if method is not None:
            _grpc_method(c, method, where.child("method"))
        _header_matches(c, match, "headers", where, 4096)
    _filters(c, rule, path, GRPC_FILTER_TYPES)
    for i, ref in enumerate(_backend_refs(c, rule, path)):
        _filters(c, ref, path.child("backendRefs").index(i), GRPC_FILTER_TYPES)


def _grpc_method(c: Check, method: dict[str, Any], path: Path) -> None:
    kind = c.string(method, "type", path, enum=VALUE_MATCH_TYPES)
    service = c.string(method, "service", path, max_len=1024)
    name = c.string(method, "method", path, max_len=1024)
    exact = kind in (None, "Exact")
    c.rule(
        path,
        "object",
        kind is None or service is not None or name is not None,
        "One or both of 'service' or 'method' must be specified",
    )
    c.rule(
        path,
        "object",
        not (exact and service is not None)
        or re.search(r"(?i)^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$", service or "") is not None,
        f"service must only contain valid characters (matching {_GRPC_SERVICE})",
    )
    c.rule(
        path,
        "object",
        not (exact and name is not None) or re.search(_GRPC_METHOD, name or "") is not None,
        f"method must only contain valid characters (matching {_GRPC_METHOD})",
    )


# --- TLSRoute / TCPRoute / UDPRoute and ReferenceGrant -----------------------------------------


def _l4_validator(hostnames: bool) -> Callable[[Obj, Obj | None], list[FieldError]]:
    def validate(obj: Obj, old: Obj | None) -> list[FieldError]:
        c = Check(meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old))
        spec = c.obj(obj, "spec", Path(), need=True)
        if spec is None:
            return c.result()
        path = Path("spec")
        _common_route(c, spec, path, hostnames)
        rules = c.items(spec, "rules", path, need=True, min_items=1, max_items=16)
        for i, rule in enumerate(rules or []):
            where = path.child("rules").index(i)
            c.string(rule, "name", where, min_len=1, max_len=253, pattern=SECTION_NAME)
            _backend_refs(c, rule, where, min_items=1)
        return c.result()

    return validate


def validate_reference_grant(obj: Obj, old: Obj | None) -> list[FieldError]:
    c = Check(meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old))
    spec = c.obj(obj, "spec", Path())
    if spec is None:
        return c.result()
    path = Path("spec")
    for i, item in enumerate(c.items(spec, "from", path, need=True, min_items=1, max_items=16) or []):
        where = path.child("from").index(i)
        c.string(item, "group", where, need=True, max_len=253, pattern=GROUP_PATTERN)
        c.string(item, "kind", where, need=True, min_len=1, max_len=63, pattern=KIND_PATTERN)
        c.string(item, "namespace", where, need=True, min_len=1, max_len=63, pattern=NAMESPACE_PATTERN)
    for i, item in enumerate(c.items(spec, "to", path, need=True, min_items=1, max_items=16) or []):
        where = path.child("to").index(i)
        c.string(item, "group", where, need=True, max_len=253, pattern=GROUP_PATTERN)
        c.string(item, "kind", where, need=True, min_len=1, max_len=63, pattern=KIND_PATTERN)
        c.string(item, "name", where, min_len=1, max_len=253)
    return c.result()


# --- tables (additionalPrinterColumns) ---------------------------------------------------------


def jsonpath_text(value: Any) -> str | None:
    """A ``type: string`` printer column cell: scalars as text, lists and maps as compact JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def condition_status(obj: Mapping[str, Any], kind: str) -> str | None:
    """``.status.conditions[?(@.type=="<kind>")].status`` (the first match)."""
    for cond in as_dicts(as_dict(obj.get("status")).get("conditions")):
        if cond.get("type") == kind:
            return jsonpath_text(cond.get("status"))
    return None


_NAME = Column("Name", "string", "name", "Name must be unique within a namespace.")
_AGE = Column("Age", "date")

GATEWAY_CLASS_COLUMNS = (_NAME, Column("Controller"), Column("Accepted"), _AGE, Column("Description", priority=1))
GATEWAY_COLUMNS = (_NAME, Column("Class"), Column("Address"), Column("Programmed"), _AGE)
ROUTE_COLUMNS = (_NAME, Column("Hostnames"), _AGE)
AGE_ONLY_COLUMNS = (_NAME, _AGE)


def gateway_class_row(obj: Obj, now: datetime) -> list[Any]:
    spec = as_dict(obj.get("spec"))
    return [
        meta.name_of(obj),
        jsonpath_text(spec.get("controllerName")),
        condition_status(obj, "Accepted"),
        meta.age(obj, now),
        jsonpath_text(spec.get("description")),
    ]


def gateway_row(obj: Obj, now: datetime) -> list[Any]:
    addresses = as_dicts(as_dict(obj.get("status")).get("addresses"))
    first = next((a["value"] for a in addresses if "value" in a), None)
    return [
        meta.name_of(obj),
        jsonpath_text(as_dict(obj.get("spec")).get("gatewayClassName")),
        jsonpath_text(first),
        condition_status(obj, "Programmed"),
        meta.age(obj, now),
    ]


def route_row(obj: Obj, now: datetime) -> list[Any]:
    return [meta.name_of(obj), jsonpath_text(as_dict(obj.get("spec")).get("hostnames")), meta.age(obj, now)]


def age_row(obj: Obj, now: datetime) -> list[Any]:
    return [meta.name_of(obj), meta.age(obj, now)]


def _pending(kind: str, reason: str = "Pending") -> dict[str, Any]:
    return {
        "type": kind,
        "status": "Unknown",
        "reason": reason,
        "message": "Waiting for controller",
        "lastTransitionTime": "1970-01-01T00:00:00Z",
    }


GATEWAY_CLASS = Kind(
    group=GROUP,
    version="v1",
    kind="GatewayClass",
    plural="gatewayclasses",
    namespaced=False,
    short_names=("gc",),
    categories=CATEGORIES,
    subresources=frozenset({"status"}),
    validate=validate_gateway_class,
    columns=GATEWAY_CLASS_COLUMNS,
    row=gateway_class_row,
    initial_status={"conditions": [_pending("Accepted", "Waiting")]},
)

GATEWAY = Kind(
    group=GROUP,
    version="v1",
    kind="Gateway",
    plural="gateways",
    namespaced=True,
    short_names=("gtw",),
    categories=CATEGORIES,
    subresources=frozenset({"status"}),
    default=default_gateway,
    validate=validate_gateway,
    columns=GATEWAY_COLUMNS,
    row=gateway_row,
    initial_status={"conditions": [_pending("Accepted"), _pending("Programmed")]},
)

HTTP_ROUTE = Kind(
    group=GROUP,
    version="v1",
    kind="HTTPRoute",
    plural="httproutes",
    namespaced=True,
    categories=CATEGORIES,
    subresources=frozenset({"status"}),
    default=default_http_route,
    validate=validate_http_route,
    columns=ROUTE_COLUMNS,
    row=route_row,
)

GRPC_ROUTE = Kind(
    group=GROUP,
    version="v1",
    kind="GRPCRoute",
    plural="grpcroutes",
    namespaced=True,
    categories=CATEGORIES,
    subresources=frozenset({"status"}),
    default=default_grpc_route,
    validate=validate_grpc_route,
    columns=ROUTE_COLUMNS,
    row=route_row,
)

REFERENCE_GRANT = Kind(
    group=GROUP,
    version="v1beta1",
    kind="ReferenceGrant",
    plural="referencegrants",
    namespaced=True,
    short_names=("refgrant",),
    categories=CATEGORIES,
    validate=validate_reference_grant,
    columns=AGE_ONLY_COLUMNS,
    row=age_row,
)


def _l4_kind(kind: str, plural: str, hostnames: bool) -> Kind:
    return Kind(
        group=GROUP,
        version="v1alpha2",
        kind=kind,
        plural=plural,
        namespaced=True,
        categories=CATEGORIES,
        subresources=frozenset({"status"}),
        default=default_l4_route,
        validate=_l4_validator(hostnames),
        columns=AGE_ONLY_COLUMNS,
        row=age_row,
    )


TLS_ROUTE = _l4_kind("TLSRoute", "tlsroutes", hostnames=True)
TCP_ROUTE = _l4_kind("TCPRoute", "tcproutes", hostnames=False)
UDP_ROUTE = _l4_kind("UDPRoute", "udproutes", hostnames=False)

KINDS: list[Kind] = [GATEWAY_CLASS, GATEWAY, HTTP_ROUTE, GRPC_ROUTE, REFERENCE_GRANT, TLS_ROUTE, TCP_ROUTE, UDP_ROUTE]

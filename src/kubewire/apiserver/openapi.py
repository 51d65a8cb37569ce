"""OpenAPI v3 documents for every served group-version: what ``kubectl explain`` reads.

kube-apiserver publishes ``GET /openapi/v3`` (an index: one ``serverRelativeURL`` per
group-version, carrying a content hash) and ``GET /openapi/v3/<api/v1 | apis/group/version>``
(an OpenAPI 3.0 document).  kubectl's explain finds the kind through the
``x-kubernetes-group-version-kind`` of the resource's path operations, then the component
schema carrying the same GVK, and follows ``$ref``/``allOf``/``items`` down the field path.
This module owns building those documents, lazily and once per registry:

* Built-in kinds (core, apps, discovery, networking, autoscaling ``Scale``) are derived at
  runtime from the ``lightkube.models`` classes: their fields and annotations give the shape,
  their docstrings the descriptions; component names are upstream's definition names
  (``io.k8s.api.core.v1.Service``).
* Gateway API and MetalLB kinds are CRDs upstream, so they are published as a CRD is: one
  inline structural schema per kind.  There is no installed schema source for them, so the
  shape follows the fields ``kubewire.api.gateway``/``metallb`` default and validate, with short
  descriptions of our own.  kubewire keeps fields it does not model, so those objects say
  ``x-kubernetes-preserve-unknown-fields``.

Two deliberate omissions keep kubectl's other readers of these documents on their current
paths: no operation declares the ``fieldValidation`` query parameter (kubewire keeps unknown
fields rather than rejecting them, so kubectl must not rely on server-side validation), and
PATCH request bodies do not list ``application/strategic-merge-patch+json`` (the models carry
no patch strategies, so ``kubectl apply`` keeps computing strategic merge patches from its
compiled-in types, or a JSON merge patch for the CRD-like kinds).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import importlib
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
from lightkube.models import autoscaling_v1, core_v1, meta_v1

from kubewire.api.registry import Kind, Registry

Schema = dict[str, Any]

OPENAPI_VERSION = "3.0.0"
COMPONENTS = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"
# lightkube.models module -> the upstream definition-name prefix of its types.
_PACKAGES = {"meta_v1": META, "util_intstr": "io.k8s.apimachinery.pkg.util.intstr"}
_PACKAGES |= {"resource": "io.k8s.apimachinery.pkg.api.resource", "runtime": "io.k8s.apimachinery.pkg.runtime"}
# API group -> the lightkube.models module prefix of its built-in types.
_BUILTIN_GROUPS = {"": "core", "apps": "apps", "discovery.k8s.io": "discovery", "networking.k8s.io": "networking"}
# Untyped ``dict`` fields whose values are resource quantities (everything else maps to strings).
_QUANTITY_MAPS = frozenset(
    {"limits", "requests", "capacity", "allocatable", "overhead", "hard", "used", "allocatedResources"}
    | {"default", "defaultRequest", "max", "min", "maxLimitRequestRatio"}
)
_SCALARS: dict[str, Schema] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
}
_PRESERVE: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
# Types lightkube models as plain aliases: their upstream schema and a description of our own.
_ALIASES: dict[str, Schema] = {
    "IntOrString": {
        "description": "A value that is either an integer or a string, such as a port number or a port name.",
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    },
    "Quantity": {
        "description": "A fixed-point number with an optional suffix, such as 100m, 1.5 or 2Gi.",
        "anyOf": [{"type": "number"}, {"type": "string"}],
    },
    "Time": {"description": "A timestamp in RFC 3339 form.", "type": "string", "format": "date-time"},
    "MicroTime": {
        "description": "A timestamp in RFC 3339 form with microseconds.",
        "type": "string",
        "format": "date-time",
    },
}


# ------------------------------------------------------------------ lightkube model introspection


@dataclass(frozen=True)
class _Field:
    name: str  # the Python attribute (``except_``)
    json: str  # the wire name (``except``)
    annotation: str
    required: bool


def _is_model(obj: Any) -> bool:
    return inspect.isclass(obj) and (dataclasses.is_dataclass(obj) or issubclass(obj, msgspec.Struct))


def _model_fields(cls: type) -> list[_Field]:
    """The fields of a lightkube model (msgspec Struct in current releases, dataclass before)."""
    annotations = inspect.get_annotations(cls)
    if dataclasses.is_dataclass(cls):
        return [
            _Field(
                f.name,
                f.metadata.get("json", f.name),
                str(annotations[f.name]),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        ]
    return [_Field(f.name, f.encode_name, str(annotations[f.name]), f.required) for f in msgspec.structs.fields(cls)]


_PARAM = re.compile(r"^\* \*\*(?P<name>\w+)\*\* ``[^`]*`` -(?P<text>.*)$")


def _one_line(lines: Iterable[str]) -> str:
    return " ".join(" ".join(lines).split())


@functools.cache
def _docs(cls: type) -> tuple[str, dict[str, str]]:
    """A model's description and its fields' descriptions, read from its docstring."""
    text = inspect.cleandoc(cls.__doc__ or "")
    head, _, params = text.partition("**parameters**")
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in params.splitlines():
        match = _PARAM.match(line)
        if match:
            current = fields.setdefault(match["name"], [match["text"]])
        elif current is not None:
            current.append(line)
    return _one_line(head.splitlines()), {name: _one_line(lines) for name, lines in fields.items()}


def _definition_name(module: str, name: str) -> str:
    short = module.rpartition(".")[2]
    if short in _PACKAGES:
        return f"{_PACKAGES[short]}.{name}"
    group, _, version = short.rpartition("_")
    return f"io.k8s.api.{group}.{version}.{name}"


def _split_args(text: str) -> list[str]:
    """``"str, List[int]"`` -> ``["str", "List[int]"]`` (commas at nesting depth 0 only)."""
    out, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return out


def _with_description(schema: Schema, description: str) -> Schema:
    """Attach a description; a ``$ref`` is wrapped in ``allOf`` (siblings of ``$ref`` are ignored)."""
    if not description:
        return schema
    if "$ref" in schema:
        return {"allOf": [schema], "description": description}
    return {**schema, "description": description}


def _ref(name: str) -> Schema:
    return {"$ref": COMPONENTS + name}


class Components:
    """The ``components.schemas`` of one document, filled on demand as types are referenced."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def model(self, cls: type) -> Schema:
        """A ``$ref`` to a lightkube model's schema, adding it (and what it references) first."""
        name = _definition_name(cls.__module__, cls.__name__)
        if name not in self.schemas:
            self.schemas[name] = {}  # reserved first: models refer to themselves (JSONSchemaProps)
            self.schemas[name] = self._model_schema(cls)
        return _ref(name)

    def field(self, cls: type, name: str, schema: Schema) -> Schema:
        """``schema`` described as field ``name`` of model ``cls`` describes it."""
        return _with_description(schema, _docs(cls)[1].get(name, ""))

    def _model_schema(self, cls: type) -> Schema:
        description, field_docs = _docs(cls)
        properties: Schema = {}
        required: list[str] = []
        module = importlib.import_module(cls.__module__)
        for f in _model_fields(cls):
            schema = self._annotation(f.annotation, module, f.json)
            properties[f.json] = _with_description(schema, field_docs.get(f.name, ""))
            if f.required:
                required.append(f.json)
        out: Schema = {"type": "object", "description": description, "properties": properties}
        if required:
            out["required"] = required
        return out

    def _annotation(self, text: str, module: types.ModuleType, field: str) -> Schema:
        match = re.fullmatch(r"(\w+)\[(.*)\]", text.strip())
        if match:
            outer, inner = match.groups()
            if outer == "Optional":
                return self._annotation(inner, module, field)
            if outer == "List":
                return {"type": "array", "items": self._annotation(inner, module, field)}
            return self._dict(_split_args(inner)[-1], module, field)
        if text in _SCALARS:
            return dict(_SCALARS[text])
        if text in ("dict", "Dict"):
            return self._untyped_map(field)
        owner, _, name = text.rpartition(".")
        if owner:
            module = importlib.import_module(f"lightkube.models.{owner}")
        return self._named(getattr(module, name), module, name)

    def _dict(self, value: str, module: types.ModuleType, field: str) -> Schema:
        return {"type": "object", "additionalProperties": self._annotation(value, module, field)}

    def _untyped_map(self, field: str) -> Schema:
        if field in _QUANTITY_MAPS:
            return {"type": "object", "additionalProperties": self._alias("resource", "Quantity", str)}
        return {"type": "object", "additionalProperties": {"type": "string"}}

    def _named(self, target: Any, module: types.ModuleType, name: str) -> Schema:
        if _is_model(target):
            return self.model(target)
        return self._alias(module.__name__, name, target)

    def _alias(self, module: str, name: str, target: Any) -> Schema:
        """A type lightkube declares as an alias (``IntOrString = Union[int, str]``)."""
        definition = _definition_name(module, name)
        if definition not in self.schemas:
            self.schemas[definition] = _ALIASES.get(name) or _alias_fallback(target)
        return _ref(definition)


def _alias_fallback(target: Any) -> Schema:
    """Schema of an alias without a known upstream shape, from what it aliases."""
    if target is datetime.datetime:
        return dict(_SCALARS["datetime"])
    if target is str:
        return dict(_SCALARS["str"])
    if target is dict or typing.get_origin(target) is dict:
        return {**_PRESERVE, "description": "Free-form JSON."}
    return {"description": "Any JSON value.", "x-kubernetes-preserve-unknown-fields": True}


def _gvk(group: str, version: str, kind: str) -> list[dict[str, str]]:
    return [{"group": group, "version": version, "kind": kind}]


def _builtin_model(kind: Kind, name: str) -> type | None:
    prefix = _BUILTIN_GROUPS.get(kind.group)
    if prefix is None:
        return None
    try:
        module = importlib.import_module(f"lightkube.models.{prefix}_{kind.version}")
    except ImportError:
        return None
    target = getattr(module, name, None)
    return target if _is_model(target) else None


# ------------------------------------------------------------------ CRD-like kinds (our own words)


def _str(description: str = "", **extra: Any) -> Schema:
    return _with_description({"type": "string", **extra}, description)


def _int(description: str = "", **extra: Any) -> Schema:
    return _with_description({"type": "integer", "format": "int32", **extra}, description)


def _bool(description: str = "") -> Schema:
    return _with_description({"type": "boolean"}, description)


def _list(description: str, items: Schema) -> Schema:
    return _with_description({"type": "array", "items": items}, description)


def _strings(description: str) -> Schema:
    return _list(description, {"type": "string"})


def _obj(description: str, properties: Schema, required: Iterable[str] = ()) -> Schema:
    """A nested object; unknown fields are kept (kubewire models only the fields listed)."""
    out: Schema = {"type": "object", "properties": properties, "x-kubernetes-preserve-unknown-fields": True}
    if required:
        out["required"] = list(required)
    return _with_description(out, description)


def _ref_to(c: Components, model: type, description: str) -> Schema:
    return _with_description(c.model(model), description)


def _conditions(c: Components, description: str) -> Schema:
    return _list(description, c.model(meta_v1.Condition))


def _selectors(c: Components, description: str) -> Schema:
    return _list(description, c.model(meta_v1.LabelSelector))


def _object_ref(what: str, *, namespace: bool = True) -> Schema:
    props = {
        "group": _str(f"API group of the {what}; empty for the core group."),
        "kind": _str(f"Kind of the {what}."),
        "name": _str(f"Name of the {what}."),
    }
    if namespace:
        props["namespace"] = _str(f"Namespace of the {what}; defaults to the namespace of this object.")
    return _obj(f"A reference to the {what}.", props, ["name"])


def _parent_ref() -> Schema:
    ref = _object_ref("parent resource (usually a Gateway)")
    ref["properties"] |= {
        "sectionName": _str("Name of a section of the parent, such as a Gateway listener name."),
        "port": _int("Port of the parent to attach to."),
    }
    return ref


def _backend_ref(*, weighted: bool = True, filters: Schema | None = None) -> Schema:
    ref = _object_ref("backend (a Service unless group and kind say otherwise)")
    ref["properties"]["port"] = _int("Destination port; required when the backend is a Service.")
    if weighted:
        ref["properties"]["weight"] = _int("Relative share of traffic sent to this backend.")
    if filters is not None:
        ref["properties"]["filters"] = filters
    return ref


def _header_match(what: str, types_: Iterable[str]) -> Schema:
    props = {
        "type": _str("How value is compared.", enum=list(types_)),
        "name": _str(f"Name of the {what}."),
        "value": _str(f"Value of the {what} to match."),
    }
    return _list(f"{what.capitalize()} conditions; all must match.", _obj("", props, ["name", "value"]))


def _header_modifier(direction: str) -> Schema:
    pair = _obj("", {"name": _str("Header name."), "value": _str("Header value.")}, ["name", "value"])
    props = {
        "set": _list("Headers to set, replacing existing values.", pair),
        "add": _list("Headers to add to existing values.", pair),
        "remove": _strings("Names of headers to remove."),
    }
    return _obj(f"Changes to the {direction} headers.", props)


def _path_modifier() -> Schema:
    props = {
        "type": _str("Which kind of replacement.", enum=["ReplaceFullPath", "ReplacePrefixMatch"]),
        "replaceFullPath": _str("The path that replaces the whole request path."),
        "replacePrefixMatch": _str("The value that replaces the matched path prefix."),
    }
    return _obj("How the request path is rewritten.", props, ["type"])


def _filters(filter_types: Iterable[str], http: bool) -> Schema:
    mirror = {
        "backendRef": _backend_ref(weighted=False),
        "percent": _int("Percentage of requests to mirror."),
        "fraction": _obj(
            "Fraction of requests to mirror.",
            {"numerator": _int("Numerator."), "denominator": _int("Denominator.")},
            ["numerator"],
        ),
    }
    props: Schema = {
        "type": _str("Which filter this is; exactly the matching member must be set.", enum=list(filter_types)),
        "requestHeaderModifier": _header_modifier("request"),
        "responseHeaderModifier": _header_modifier("response"),
        "requestMirror": _obj("Sends a copy of requests to another backend.", mirror, ["backendRef"]),
        "extensionRef": _object_ref("implementation-specific filter resource", namespace=False),
    }
    if http:
        props |= _http_only_filters()
    return _list("Filters applied to requests matching this rule.", _obj("", props, ["type"]))


def _http_only_filters() -> Schema:
    redirect = {
        "scheme": _str("Scheme of the redirect location.", enum=["http", "https"]),
        "hostname": _str("Hostname of the redirect location."),
        "path": _path_modifier(),
        "port": _int("Port of the redirect location."),
        "statusCode": _int("HTTP status code of the redirect.", enum=[301, 302]),
    }
    rewrite = {"hostname": _str("Hostname sent to the backend."), "path": _path_modifier()}
    return {
        "requestRedirect": _obj("Answers with a redirect instead of forwarding.", redirect),
        "urlRewrite": _obj("Rewrites the request before forwarding it.", rewrite),
        "cors": _obj("Cross-origin resource sharing settings.", {}),
    }


def _route_spec(rules: Schema, *, hostnames: bool = True, required: Iterable[str] = ()) -> Schema:
    props: Schema = {"parentRefs": _list("The resources (usually Gateways) this route attaches to.", _parent_ref())}
    if hostnames:
        props["hostnames"] = _strings("Hostnames this route answers for; empty means all.")
    props["rules"] = rules
    return _obj("Desired state of the route.", props, required)


def _route_status(c: Components) -> Schema:
    parent = {
        "parentRef": _parent_ref(),
        "controllerName": _str("The controller that wrote this entry."),
        "conditions": _conditions(c, "Whether the route is accepted by and attached to this parent."),
    }
    return _obj(
        "Observed state of the route.",
        {"parents": _list("Status per parent.", _obj("", parent, ["parentRef", "controllerName"]))},
    )


_HTTP_FILTERS = (
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "ExtensionRef",
    "CORS",
)
_GRPC_FILTERS = ("ResponseHeaderModifier", "RequestHeaderModifier", "RequestMirror", "ExtensionRef")


def _http_route(c: Components) -> tuple[str, Schema, Schema]:
    path = {
        "type": _str("How the path is compared.", enum=["Exact", "PathPrefix", "RegularExpression"]),
        "value": _str("The path to match."),
    }
    match = {
        "path": _obj("Request path condition (defaults to prefix /).", path),
        "headers": _header_match("header", ["Exact", "RegularExpression"]),
        "queryParams": _header_match("query parameter", ["Exact", "RegularExpression"]),
        "method": _str("HTTP method to match.", enum=["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS"]),
    }
    filters = _filters(_HTTP_FILTERS, http=True)
    rule = {
        "name": _str("Name of the rule."),
        "matches": _list("Conditions for requests to use this rule; any one may match.", _obj("", match)),
        "filters": filters,
        "backendRefs": _list("Where matching requests are sent.", _backend_ref(filters=filters)),
        "timeouts": _obj(
            "Timeouts for requests.",
            {"request": _str("Whole-request timeout."), "backendRequest": _str("Per-backend-request timeout.")},
        ),
    }
    spec = _route_spec(_list("Rules that route HTTP requests to backends.", _obj("", rule)))
    return "Routes HTTP requests from a Gateway listener to backends.", spec, _route_status(c)


def _grpc_route(c: Components) -> tuple[str, Schema, Schema]:
    method = {
        "type": _str("How service and method are compared.", enum=["Exact", "RegularExpression"]),
        "service": _str("The gRPC service to match."),
        "method": _str("The gRPC method to match."),
    }
    match = {
        "method": _obj("gRPC method condition.", method),
        "headers": _header_match("header", ["Exact", "RegularExpression"]),
    }
    filters = _filters(_GRPC_FILTERS, http=False)
    rule = {
        "name": _str("Name of the rule."),
        "matches": _list("Conditions for requests to use this rule; any one may match.", _obj("", match)),
        "filters": filters,
        "backendRefs": _list("Where matching requests are sent.", _backend_ref(filters=filters)),
    }
    spec = _route_spec(_list("Rules that route gRPC requests to backends.", _obj("", rule)))
    return "Routes gRPC requests from a Gateway listener to backends.", spec, _route_status(c)


def _l4_route(protocol: str, *, hostnames: bool) -> Callable[[Components], tuple[str, Schema, Schema]]:
    def build(c: Components) -> tuple[str, Schema, Schema]:
        rule = {
            "name": _str("Name of the rule."),
            "backendRefs": _list("Where connections are sent.", _backend_ref()),
        }
        rules = _list(f"Rules that route {protocol} traffic to backends.", _obj("", rule, ["backendRefs"]))
        spec = _route_spec(rules, hostnames=hostnames, required=["rules"])
        return f"Routes {protocol} traffic from a Gateway listener to backends.", spec, _route_status(c)

    return build


def _listener(c: Components) -> Schema:
    tls = {
        "mode": _str("Whether TLS is terminated at the Gateway or passed through.", enum=["Terminate", "Passthrough"]),
        "certificateRefs": _list("Certificates (Secrets) used to terminate TLS.", _object_ref("certificate")),
        "options": _with_description(
            {"type": "object", "additionalProperties": {"type": "string"}}, "Implementation-specific TLS options."
        ),
    }
    namespaces = {
        "from": _str("Which namespaces routes may attach from.", enum=["All", "Selector", "Same"]),
        "selector": _ref_to(c, meta_v1.LabelSelector, "Namespaces, by label, when from is Selector."),
    }
    allowed = {
        "namespaces": _obj("Namespaces routes may attach from.", namespaces),
        "kinds": _list(
            "Route kinds that may attach.", _obj("", {"group": _str("Route group."), "kind": _str("Route kind.")})
        ),
    }
    props = {
        "name": _str("Name of the listener, unique within the Gateway."),
        "hostname": _str("Hostname the listener answers for; empty means all."),
        "port": _int("Network port the listener accepts connections on."),
        "protocol": _str("Protocol the listener speaks (HTTP, HTTPS, TLS, TCP, UDP…)."),
        "tls": _obj("TLS settings of the listener.", tls),
        "allowedRoutes": _obj("Which routes may attach to this listener.", allowed),
    }
    return _obj("", props, ["name", "port", "protocol"])


def _gateway(c: Components) -> tuple[str, Schema, Schema]:
    address = {"type": _str("Type of the address (IPAddress, Hostname…)."), "value": _str("The address.")}
    spec = {
        "gatewayClassName": _str("Name of the GatewayClass this Gateway belongs to."),
        "listeners": _list("Logical endpoints the Gateway accepts traffic on.", _listener(c)),
        "addresses": _list("Addresses requested for the Gateway.", _obj("", address)),
    }
    listener_status = {
        "name": _str("Name of the listener."),
        "supportedKinds": _list("Route kinds the listener supports.", _obj("", {"group": _str(), "kind": _str()})),
        "attachedRoutes": _int("Number of routes attached to the listener."),
        "conditions": _conditions(c, "Observed state of the listener."),
    }
    status = {
        "addresses": _list("Addresses assigned to the Gateway.", _obj("", address)),
        "conditions": _conditions(c, "Observed state of the Gateway (Accepted, Programmed)."),
        "listeners": _list("Status per listener.", _obj("", listener_status)),
    }
    return (
        "A load balancer or proxy that accepts traffic on listeners for routes to use.",
        _obj("Desired state of the Gateway.", spec, ["gatewayClassName", "listeners"]),
        _obj("Observed state of the Gateway.", status),
    )


def _gateway_class(c: Components) -> tuple[str, Schema, Schema]:
    params = _object_ref("controller-specific configuration resource")
    params["required"] = ["group", "kind", "name"]
    spec = {
        "controllerName": _str("Name of the controller that manages Gateways of this class."),
        "description": _str("Human-readable description of the class."),
        "parametersRef": params,
    }
    status = {
        "conditions": _conditions(c, "Observed state of the class (Accepted)."),
        "supportedFeatures": _list("Features the controller supports.", _obj("", {"name": _str("Feature name.")})),
    }
    return (
        "A class of Gateways, implemented by one controller.",
        _obj("Desired state of the class.", spec, ["controllerName"]),
        _obj("Observed state of the class.", status),
    )


def _reference_grant(c: Components) -> tuple[str, Schema, Schema]:
    source = {"group": _str("Group of the referring kind."), "kind": _str(), "namespace": _str()}
    target = {"group": _str("Group of the referenced kind."), "kind": _str(), "name": _str("Name; empty means any.")}
    spec = {
        "from": _list("Objects in other namespaces that may refer here.", _obj("", source, list(source))),
        "to": _list("Objects in this namespace that may be referred to.", _obj("", target, ["group", "kind"])),
    }
    return (
        "Allows references from objects in other namespaces to objects in this namespace.",
        _obj("Which references are allowed.", spec, ["from", "to"]),
        {},
    )


def _ip_address_pool(c: Components) -> tuple[str, Schema, Schema]:
    allocation = {
        "priority": _int("Priority of this pool among pools that match a Service."),
        "namespaces": _strings("Namespaces whose Services may use this pool."),
        "namespaceSelectors": _selectors(c, "Namespaces, by label, whose Services may use this pool."),
        "serviceSelectors": _selectors(c, "Services, by label, that may use this pool."),
    }
    spec = {
        "addresses": _strings("CIDRs or first-last IP ranges the pool hands out."),
        "autoAssign": _bool("Whether addresses are assigned automatically (defaults to true)."),
        "avoidBuggyIPs": _bool("Whether .0 and .255 addresses are skipped."),
        "serviceAllocation": _obj("Which Services the pool serves.", allocation),
    }
    return (
        "A pool of addresses for Services of type LoadBalancer.",
        _obj("Desired state of the pool.", spec, ["addresses"]),
        _obj("Observed state of the pool.", {}),
    )


def _advertisement(bgp: bool) -> Callable[[Components], tuple[str, Schema, Schema]]:
    def build(c: Components) -> tuple[str, Schema, Schema]:
        spec = {
            "ipAddressPools": _strings("Names of the pools to announce; empty means all."),
            "ipAddressPoolSelectors": _selectors(c, "Pools to announce, by label."),
            "nodeSelectors": _selectors(c, "Nodes that announce; empty means all."),
        }
        if bgp:
            spec |= {
                "aggregationLength": _int("Prefix length IPv4 routes are aggregated to (defaults to 32)."),
                "aggregationLengthV6": _int("Prefix length IPv6 routes are aggregated to (defaults to 128)."),
                "localPref": _int("BGP LOCAL_PREF attribute of the announcements."),
                "communities": _strings("BGP communities attached to the announcements."),
                "peers": _strings("Names of the BGPPeers to announce to; empty means all."),
            }
            what = "Announces pool addresses to BGP peers."
        else:
            spec["interfaces"] = _strings("Interfaces to announce from; empty means all.")
            what = "Announces pool addresses on the local network with ARP or NDP."
        return what, _obj("Which addresses are announced, and where.", spec), _obj("Observed state.", {})

    return build


def _bgp_peer(c: Components) -> tuple[str, Schema, Schema]:
    secret = {"name": _str("Secret name."), "namespace": _str("Secret namespace.")}
    spec = {
        "myASN": _int("Local AS number.", format="int64"),
        "peerASN": _int("AS number of the peer.", format="int64"),
        "dynamicASN": _str("Detect the peer's ASN instead of setting peerASN.", enum=["internal", "external"]),
        "peerAddress": _str("Address of the peer."),
        "peerPort": _int("Port of the peer (defaults to 179)."),
        "sourceAddress": _str("Source address of the session."),
        "routerID": _str("BGP router ID to advertise."),
        "interface": _str("Interface for an unnumbered session (instead of peerAddress)."),
        "holdTime": _str("Requested BGP hold time."),
        "keepaliveTime": _str("Requested BGP keepalive time."),
        "connectTime": _str("Time between connection attempts."),
        "password": _str("Session password."),
        "passwordSecret": _obj("Secret holding the session password.", secret),
        "bfdProfile": _str("Name of the BFD profile for the session."),
        "enableGracefulRestart": _bool("Whether BGP graceful restart is enabled; cannot change later."),
        "ebgpMultiHop": _bool("Whether the peer is multiple hops away."),
        "nodeSelectors": _selectors(c, "Nodes that connect to this peer; empty means all."),
        "vrf": _str("VRF to establish the session from."),
        "disableMP": _bool("Whether multiprotocol BGP is disabled."),
        "dualStackAddressFamily": _bool("Whether both address families are announced over one session."),
    }
    return (
        "A BGP router that speakers peer with.",
        _obj("Session parameters.", spec, ["myASN"]),
        _obj("Observed state.", {}),
    )


CrdBuilder = Callable[[Components], tuple[str, Schema, Schema]]
_CRD_LIKE: dict[tuple[str, str], CrdBuilder] = {
    ("gateway.networking.k8s.io", "GatewayClass"): _gateway_class,
    ("gateway.networking.k8s.io", "Gateway"): _gateway,
    ("gateway.networking.k8s.io", "HTTPRoute"): _http_route,
    ("gateway.networking.k8s.io", "GRPCRoute"): _grpc_route,
    ("gateway.networking.k8s.io", "ReferenceGrant"): _reference_grant,
    ("gateway.networking.k8s.io", "TLSRoute"): _l4_route("TLS", hostnames=True),
    ("gateway.networking.k8s.io", "TCPRoute"): _l4_route("TCP", hostnames=False),
    ("gateway.networking.k8s.io", "UDPRoute"): _l4_route("UDP", hostnames=False),
    ("metallb.io", "IPAddressPool"): _ip_address_pool,
    ("metallb.io", "L2Advertisement"): _advertisement(bgp=False),
    ("metallb.io", "BGPAdvertisement"): _advertisement(bgp=True),
    ("metallb.io", "BGPPeer"): _bgp_peer,
}


# Kinds whose validation requires ``spec`` (the others accept an object without one).
_SPEC_REQUIRED = frozenset(
    {"GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute", "IPAddressPool"}
)


def crd_definition_name(group: str, version: str, kind: str) -> str:
    """Upstream's name for a CRD's schema: the group reversed (``io.metallb.v1beta1.BGPPeer``)."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _type_meta(c: Components) -> Schema:
    """``apiVersion`` and ``kind``, described as the built-in models describe them."""
    return {
        "apiVersion": c.field(core_v1.Service, "apiVersion", {"type": "string"}),
        "kind": c.field(core_v1.Service, "kind", {"type": "string"}),
    }


def _crd_like_kind(c: Components, kind: Kind, builder: CrdBuilder | None) -> Schema:
    if builder is None:
        description, spec, status = f"A {kind.kind} object.", dict(_PRESERVE), dict(_PRESERVE)
    else:
        description, spec, status = builder(c)
    props = _type_meta(c)
    props["metadata"] = c.field(core_v1.Service, "metadata", c.model(meta_v1.ObjectMeta))
    props["spec"] = spec
    if status:
        props["status"] = status
    out: Schema = {"type": "object", "description": description, "properties": props}
    if kind.kind in _SPEC_REQUIRED:
        out["required"] = ["spec"]
    return out


def _crd_like_list(c: Components, kind: Kind, item: str) -> Schema:
    props = _type_meta(c)
    props["items"] = _list(f"The {kind.kind} objects.", _ref(item))
    props["metadata"] = c.field(core_v1.ServiceList, "metadata", c.model(meta_v1.ListMeta))
    return {
        "type": "object",
        "description": f"A list of {kind.kind} objects.",
        "properties": props,
        "required": ["items"],
    }


# ------------------------------------------------------------------ kinds -> components


def _add_kind(c: Components, kind: Kind) -> tuple[str, str]:
    """Add the schemas of a kind and its list; return their definition names."""
    model, list_model = _builtin_model(kind, kind.kind), _builtin_model(kind, kind.list_kind)
    if model is not None and list_model is not None:
        name, list_name = _definition(c, model), _definition(c, list_model)
    else:
        name = crd_definition_name(kind.group, kind.version, kind.kind)
        list_name = name + "List"
        c.schemas[name] = _crd_like_kind(c, kind, _CRD_LIKE.get((kind.group, kind.kind)))
        c.schemas[list_name] = _crd_like_list(c, kind, name)
    c.schemas[name]["x-kubernetes-group-version-kind"] = _gvk(kind.group, kind.version, kind.kind)
    c.schemas[list_name]["x-kubernetes-group-version-kind"] = _gvk(kind.group, kind.version, kind.list_kind)
    return name, list_name


def _definition(c: Components, model: type) -> str:
    """Add a model's schema; return its definition name."""
    return str(c.model(model)["$ref"]).removeprefix(COMPONENTS)


def _add_scale(c: Components) -> str:
    name = _definition(c, autoscaling_v1.Scale)
    c.schemas[name]["x-kubernetes-group-version-kind"] = _gvk("autoscaling", "v1", "Scale")
    return name


# ------------------------------------------------------------------ paths and operations

_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml")


def _content(definition: str) -> Schema:
    return {"application/json": {"schema": _ref(definition)}}


@dataclass(frozen=True)
class _Target:
    """What a path serves: the schema of its objects, their GVK, and a name for operation ids."""

    definition: str
    gvk: dict[str, str]
    label: str


def _operation(action: str, target: _Target) -> Schema:
    op: Schema = {
        "description": f"{action} {target.label}",
        "operationId": action + target.label.replace(" ", ""),
        "responses": {"200": {"description": "OK", "content": _content(target.definition)}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": target.gvk,
    }
    if action in ("post", "put"):
        op["requestBody"] = {"content": _content(target.definition), "required": True}
    if action == "patch":
        # No strategic-merge-patch here: kubectl then computes apply patches from its own types.
        op["requestBody"] = {"content": {t: {"schema": {"type": "object"}} for t in _PATCH_TYPES}, "required": True}
    return op


def _path_item(target: _Target, actions: dict[str, str], params: Iterable[str]) -> Schema:
    """``actions``: HTTP method -> Kubernetes action (``get`` -> ``list`` on a collection)."""
    item: Schema = {method: _operation(action, target) for method, action in actions.items()}
    item["parameters"] = [
        {"name": n, "in": "path", "required": True, "description": f"{n} of the object", "schema": {"type": "string"}}
        for n in params
    ]
    return item


_ITEM = {"get": "get", "put": "put", "patch": "patch", "delete": "delete"}
_SUBRESOURCE = {"get": "get", "put": "put", "patch": "patch"}


def _kind_paths(kind: Kind, name: str, list_name: str, scale: str | None) -> dict[str, Schema]:
    prefix = f"/{_gv_path(kind.group, kind.version)}"
    scope = ["namespace"] if kind.namespaced else []
    base = f"{prefix}/namespaces/{{namespace}}/{kind.plural}" if kind.namespaced else f"{prefix}/{kind.plural}"
    gvk = _gvk(kind.group, kind.version, kind.kind)[0]
    one, many = _Target(name, gvk, kind.kind), _Target(list_name, gvk, kind.list_kind)
    paths = {
        base: _path_item(many, {"get": "list"}, scope) | {"post": _operation("post", one)},
        f"{base}/{{name}}": _path_item(one, _ITEM, [*scope, "name"]),
    }
    if kind.namespaced:
        all_namespaces = _Target(list_name, gvk, f"{kind.list_kind} AllNamespaces")
        paths[f"{prefix}/{kind.plural}"] = _path_item(all_namespaces, {"get": "list"}, [])
    if "status" in kind.subresources:
        status = _Target(name, gvk, f"{kind.kind} Status")
        paths[f"{base}/{{name}}/status"] = _path_item(status, _SUBRESOURCE, [*scope, "name"])
    if scale is not None:
        target = _Target(scale, _gvk("autoscaling", "v1", "Scale")[0], f"{kind.kind} Scale")
        paths[f"{base}/{{name}}/scale"] = _path_item(target, _SUBRESOURCE, [*scope, "name"])
    return paths


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def build_document(kinds: Iterable[Kind], title_version: str = "v1.32.0") -> Schema:
    """The OpenAPI 3.0 document of one group-version's kinds."""
    c = Components()
    paths: dict[str, Schema] = {}
    for kind in kinds:
        name, list_name = _add_kind(c, kind)
        scale = _add_scale(c) if "scale" in kind.subresources else None
        paths |= _kind_paths(kind, name, list_name, scale)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Kubernetes", "version": title_version},
        "paths": paths,
        "components": {"schemas": c.schemas},
    }


class OpenAPIV3:
    """The ``/openapi/v3`` index and per-group-version documents of a registry, built lazily."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._built: dict[str, bytes] | None = None

    def _documents(self) -> dict[str, bytes]:
        if self._built is None:
            by_gv: dict[str, list[Kind]] = {}
            for kind in self.registry.kinds:
                by_gv.setdefault(_gv_path(kind.group, kind.version), []).append(kind)
            self._built = {gv: orjson.dumps(build_document(kinds)) for gv, kinds in by_gv.items()}
        return self._built

    def index(self) -> bytes:
        """``{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}, …}}``."""
        paths = {
            gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={hashlib.sha512(body).hexdigest().upper()}"}
            for gv, body in self._documents().items()
        }
        return orjson.dumps({"paths": paths})

    def document(self, gv_path: str) -> bytes | None:
        """The JSON document of ``api/v1`` or ``apis/<group>/<version>``; None if not served."""
        return self._documents().get(gv_path.strip("/"))


@functools.cache
def openapi_v3(registry: Registry) -> OpenAPIV3:
    """The (process-wide, lazily built) OpenAPI v3 documents of ``registry``."""
    return OpenAPIV3(registry)

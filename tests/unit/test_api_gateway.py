"""Gateway API kinds: CRD defaults, schema and CEL messages in the CRD error shape, printer rows."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from kubewire.api import gateway
from kubewire.api.fields import FieldError
from kubewire.api.registry import Kind

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CREATED = (NOW - timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
NOT_CHECKED = (
    "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)

# From the Gateway API docs (guides/getting-started/simple-gateway and http-routing).
GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: prod-web
spec:
  gatewayClassName: example
  listeners:
  - protocol: HTTP
    port: 80
    name: prod-web-gw
    allowedRoutes:
      namespaces:
        from: Same
"""

HTTP_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: foo
spec:
  parentRefs:
  - name: prod-web
  rules:
  - backendRefs:
    - name: foo-svc
      port: 8080
"""

HOSTNAME_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: foo-route
spec:
  parentRefs:
  - name: example-gateway
  hostnames:
  - "foo.example.com"
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /login
    backendRefs:
    - name: foo-svc
      port: 8080
"""

GATEWAY_CLASS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: example-class
spec:
  controllerName: example.com/gateway-controller
"""


def load(text: str, namespace: str | None = "default") -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(text)
    if namespace:
        obj["metadata"]["namespace"] = namespace
    obj["metadata"]["creationTimestamp"] = CREATED
    return obj


def messages(errs: list[FieldError]) -> list[str]:
    return [str(e) for e in errs]


def check(kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    kind.default(obj)
    return messages(kind.validate(obj, old))


def gateway_with(*listeners: dict[str, Any]) -> dict[str, Any]:
    obj = load(GATEWAY)
    obj["spec"]["listeners"] = list(listeners)
    return obj


def listener(name: str, protocol: str = "HTTP", port: int = 80, **rest: Any) -> dict[str, Any]:
    return {"name": name, "protocol": protocol, "port": port, **rest}


def test_kinds_and_versions() -> None:
    by_kind = {k.kind: k for k in gateway.KINDS}
    assert {k: v.version for k, v in by_kind.items()} == {
        "GatewayClass": "v1",
        "Gateway": "v1",
        "HTTPRoute": "v1",
        "GRPCRoute": "v1",
        "ReferenceGrant": "v1beta1",
        "TLSRoute": "v1alpha2",
        "TCPRoute": "v1alpha2",
        "UDPRoute": "v1alpha2",
    }
    assert by_kind["GatewayClass"].namespaced is False and by_kind["GatewayClass"].short_names == ("gc",)
    assert by_kind["Gateway"].short_names == ("gtw",)
    assert by_kind["ReferenceGrant"].short_names == ("refgrant",)
    assert by_kind["ReferenceGrant"].subresources == frozenset()
    assert all(k.subresources == {"status"} for k in gateway.KINDS if k.kind != "ReferenceGrant")
    assert all(not k.merge_keys and k.categories == ("gateway-api",) for k in gateway.KINDS)


def test_getting_started_gateway_and_route_are_valid() -> None:
    gw, route = load(GATEWAY), load(HTTP_ROUTE)
    assert check(gateway.GATEWAY, gw) == []
    assert check(gateway.HTTP_ROUTE, route) == []
    assert check(gateway.HTTP_ROUTE, load(HOSTNAME_ROUTE)) == []


def test_http_route_defaults() -> None:
    route = load(HTTP_ROUTE)
    gateway.HTTP_ROUTE.default(route)
    assert route["spec"]["parentRefs"] == [
        {"name": "prod-web", "group": "gateway.networking.k8s.io", "kind": "Gateway"}
    ]
    rule = route["spec"]["rules"][0]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [{"name": "foo-svc", "port": 8080, "group": "", "kind": "Service", "weight": 1}]

    bare = load(HTTP_ROUTE)
    del bare["spec"]["rules"]
    bare["spec"]["futureField"] = "kept"
    gateway.HTTP_ROUTE.default(bare)
    assert bare["spec"]["rules"] == [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]
    assert bare["spec"]["futureField"] == "kept"

    partial = load(HOSTNAME_ROUTE)
    partial["spec"]["rules"][0]["matches"] = [
        {
            "path": {"value": "/x"},
            "headers": [{"name": "v", "value": "1"}],
            "queryParams": [{"name": "q", "value": "2"}],
        }
    ]
    gateway.HTTP_ROUTE.default(partial)
    match = partial["spec"]["rules"][0]["matches"][0]
    assert match["path"] == {"type": "PathPrefix", "value": "/x"}
    assert match["headers"][0]["type"] == "Exact" and match["queryParams"][0]["type"] == "Exact"


def test_gateway_defaults_allowed_routes_and_tls_mode() -> None:
    gw = gateway_with(listener("http"), listener("https", "HTTPS", 443, tls={"certificateRefs": [{"name": "cert"}]}))
    gateway.GATEWAY.default(gw)
    first, second = gw["spec"]["listeners"]
    assert first["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    assert second["tls"] == {"mode": "Terminate", "certificateRefs": [{"name": "cert", "group": "", "kind": "Secret"}]}
    assert gateway.GATEWAY.initial_status is not None
    assert [c["type"] for c in gateway.GATEWAY.initial_status["conditions"]] == ["Accepted", "Programmed"]


def test_listener_rules_in_crd_error_shape() -> None:
    assert check(gateway.GATEWAY, gateway_with(listener("a"), listener("a", port=8080))) == [
        'spec.listeners: Invalid value: "array": Listener name must be unique within the Gateway'
    ]
    assert check(gateway.GATEWAY, gateway_with(listener("a"), listener("b"))) == [
        'spec.listeners: Invalid value: "array": Combination of port, protocol and hostname must be unique for each listener'
    ]
    assert check(gateway.GATEWAY, gateway_with(listener("tcp", "TCP", 9000, hostname="foo.example.com"))) == [
        "spec.listeners: Invalid value: \"array\": hostname must not be specified for protocols ['TCP', 'UDP']"
    ]
    assert check(gateway.GATEWAY, gateway_with(listener("h", tls={"certificateRefs": [{"name": "c"}]}))) == [
        "spec.listeners: Invalid value: \"array\": tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"
    ]
    passthrough = listener("https", "HTTPS", 443, tls={"mode": "Passthrough"})
    assert check(gateway.GATEWAY, gateway_with(passthrough)) == [
        'spec.listeners: Invalid value: "array": tls mode must be Terminate for protocol HTTPS'
    ]
    assert check(gateway.GATEWAY, gateway_with(listener("tls", "TLS", 443))) == [
        'spec.listeners: Invalid value: "array": tls mode must be set for protocol TLS'
    ]


def test_terminate_without_certificates_reports_cel_missing_key() -> None:
    got = check(gateway.GATEWAY, gateway_with(listener("https", "HTTPS", 443, tls={})))
    assert got == [
        'spec.listeners[0].tls: Invalid value: "object": no such key: certificateRefs evaluating rule: '
        "certificateRefs or options must be specified when mode is Terminate"
    ]
    empty = listener("https", "HTTPS", 443, tls={"certificateRefs": [], "options": {}})
    assert check(gateway.GATEWAY, gateway_with(empty)) == [
        'spec.listeners[0].tls: Invalid value: "object": certificateRefs or options must be specified when mode is Terminate'
    ]
    # The current CRDs accept an HTTPS listener with no tls block (certificates from elsewhere).
    assert check(gateway.GATEWAY, gateway_with(listener("https", "HTTPS", 443))) == []


def test_schema_errors_block_cel() -> None:
    obj = gateway_with(listener("a", port=0), listener("a", port=70000))
    del obj["spec"]["gatewayClassName"]
    del obj["spec"]["listeners"][1]["protocol"]
    assert check(gateway.GATEWAY, obj) == [
        "spec.gatewayClassName: Required value",
        "spec.listeners[0].port: Invalid value: 0: spec.listeners[0].port in body should be greater than or equal to 1",
        "spec.listeners[1].port: Invalid value: 70000: spec.listeners[1].port in body should be less than or equal to 65535",
        "spec.listeners[1].protocol: Required value",
        NOT_CHECKED,
    ]
    assert check(gateway.GATEWAY, {"metadata": {"name": "x", "namespace": "d"}}) == [
        "spec: Required value",
        NOT_CHECKED,
    ]


def test_non_blocking_schema_errors_still_run_cel() -> None:
    obj = gateway_with(listener("a", port=0), listener("a"))
    assert check(gateway.GATEWAY, obj) == [
        "spec.listeners[0].port: Invalid value: 0: spec.listeners[0].port in body should be greater than or equal to 1",
        'spec.listeners: Invalid value: "array": Listener name must be unique within the Gateway',
    ]


def test_http_route_path_must_be_absolute() -> None:
    route = load(HOSTNAME_ROUTE)
    route["spec"]["rules"][0]["matches"][0]["path"]["value"] = "login"
    assert check(gateway.HTTP_ROUTE, route) == [
        "spec.rules[0].matches[0].path: Invalid value: \"object\": value must be an absolute path and start with '/' "
        "when type one of ['Exact', 'PathPrefix']"
    ]
    route["spec"]["rules"][0]["matches"][0]["path"] = {"type": "RegularExpression", "value": "login.*"}
    assert check(gateway.HTTP_ROUTE, route) == []
    route["spec"]["rules"][0]["matches"][0]["path"] = {"type": "Prefix", "value": "/"}
    assert check(gateway.HTTP_ROUTE, route) == [
        'spec.rules[0].matches[0].path.type: Unsupported value: "Prefix": supported values: "Exact", "PathPrefix", '
        '"RegularExpression"',
        NOT_CHECKED,
    ]


def test_http_route_backend_needs_port_and_limits() -> None:
    route = load(HTTP_ROUTE)
    del route["spec"]["rules"][0]["backendRefs"][0]["port"]
    assert check(gateway.HTTP_ROUTE, route) == [
        'spec.rules[0].backendRefs[0]: Invalid value: "object": Must have port for Service reference'
    ]
    route = load(HTTP_ROUTE)
    route["spec"]["rules"] = [{"backendRefs": [{"name": "s", "port": 80}]} for _ in range(17)]
    assert check(gateway.HTTP_ROUTE, route) == ["spec.rules: Too many: 17: must have at most 16 items", NOT_CHECKED]
    route = load(HTTP_ROUTE)
    route["spec"]["rules"][0]["matches"] = [{"path": {"value": f"/{i}"}} for i in range(65)]
    assert check(gateway.HTTP_ROUTE, route)[0] == "spec.rules[0].matches: Too many: 65: must have at most 64 items"
    route = load(HTTP_ROUTE)
    route["spec"]["rules"] = [{"matches": [{"path": {"value": f"/{i}"}} for i in range(60)]} for _ in range(3)]
    assert check(gateway.HTTP_ROUTE, route) == [
        'spec.rules: Invalid value: "array": While 16 rules and 64 matches per rule are allowed, the total number of '
        "matches across all rules in a route must be less than 128"
    ]
    route = load(HTTP_ROUTE)
    route["spec"]["parentRefs"] = [{"name": f"gw{i}"} for i in range(33)]
    assert check(gateway.HTTP_ROUTE, route)[0] == "spec.parentRefs: Too many: 33: must have at most 32 items"


def test_http_route_filters() -> None:
    route = load(HTTP_ROUTE)
    rule = route["spec"]["rules"][0]
    rule["filters"] = [
        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}},
        {"type": "URLRewrite", "urlRewrite": {"hostname": "example.com"}},
    ]
    del rule["backendRefs"]
    assert check(gateway.HTTP_ROUTE, route) == [
        'spec.rules[0].filters: Invalid value: "array": May specify either httpRouteFilterRequestRedirect or '
        "httpRouteFilterRequestRewrite, but not both"
    ]
    assert rule["filters"][0]["requestRedirect"]["statusCode"] == 302
    route = load(HTTP_ROUTE)
    route["spec"]["rules"][0]["filters"] = [{"type": "RequestHeaderModifier"}]
    assert check(gateway.HTTP_ROUTE, route) == [
        'spec.rules[0].filters[0]: Invalid value: "object": filter.requestHeaderModifier must be specified for '
        "RequestHeaderModifier filter.type"
    ]
    route = load(HTTP_ROUTE)
    route["spec"]["rules"][0]["filters"] = [{"type": "RequestRedirect", "requestRedirect": {"port": 443}}]
    assert check(gateway.HTTP_ROUTE, route) == [
        'spec.rules[0]: Invalid value: "object": RequestRedirect filter must not be used together with backendRefs'
    ]


def test_http_route_hostnames_and_parent_refs() -> None:
    route = load(HOSTNAME_ROUTE)
    route["spec"]["hostnames"] = ["Foo.example.com"]
    pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    assert check(gateway.HTTP_ROUTE, route) == [
        f"spec.hostnames[0]: Invalid value: \"Foo.example.com\": spec.hostnames[0] in body should match '{pattern}'"
    ]
    route = load(HOSTNAME_ROUTE)
    route["spec"]["parentRefs"] = [{"name": "gw"}, {"name": "gw", "sectionName": "https"}]
    assert check(gateway.HTTP_ROUTE, route) == [
        'spec.parentRefs: Invalid value: "array": sectionName must be specified when parentRefs includes 2 or more '
        "references to the same parent"
    ]


def test_gateway_class_validation_row_and_status() -> None:
    gc = load(GATEWAY_CLASS, namespace=None)
    assert check(gateway.GATEWAY_CLASS, gc) == []
    moved = copy.deepcopy(gc)
    moved["spec"]["controllerName"] = "example.com/other"
    assert check(gateway.GATEWAY_CLASS, moved, old=gc) == [
        'spec.controllerName: Invalid value: "string": Value is immutable'
    ]
    gc["status"] = dict(gateway.GATEWAY_CLASS.initial_status or {})
    gc["spec"]["description"] = "An example"
    assert gateway.gateway_class_row(gc, NOW) == [
        "example-class",
        "example.com/gateway-controller",
        "Unknown",
        "40s",
        "An example",
    ]
    cols = gateway.GATEWAY_CLASS.columns
    assert [(c.name, c.priority) for c in cols] == [
        ("Name", 0),
        ("Controller", 0),
        ("Accepted", 0),
        ("Age", 0),
        ("Description", 1),
    ]


def test_gateway_and_route_rows() -> None:
    gw = load(GATEWAY)
    assert gateway.gateway_row(gw, NOW) == ["prod-web", "example", None, None, "40s"]
    gw["status"] = {
        "addresses": [{"type": "IPAddress", "value": "172.18.0.200"}, {"type": "IPAddress", "value": "fd00::1"}],
        "conditions": [{"type": "Accepted", "status": "True"}, {"type": "Programmed", "status": "True"}],
    }
    assert gateway.gateway_row(gw, NOW) == ["prod-web", "example", "172.18.0.200", "True", "40s"]
    assert [c.name for c in gateway.GATEWAY.columns] == ["Name", "Class", "Address", "Programmed", "Age"]
    assert gateway.route_row(load(HOSTNAME_ROUTE), NOW) == ["foo-route", '["foo.example.com"]', "40s"]
    assert gateway.route_row(load(HTTP_ROUTE), NOW) == ["foo", None, "40s"]


def test_grpc_route() -> None:
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "grpc", "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"method": {"service": "com.example.User", "method": "Login"}}],
                    "backendRefs": [{"name": "s", "port": 50051}],
                }
            ],
        },
    }
    assert check(gateway.GRPC_ROUTE, route) == []
    assert route["spec"]["rules"][0]["matches"][0]["method"]["type"] == "Exact"
    route["spec"]["rules"][0]["matches"][0]["method"] = {"service": "/com.example.User/Login"}
    assert check(gateway.GRPC_ROUTE, route) == [
        'spec.rules[0].matches[0].method: Invalid value: "object": service must only contain valid characters '
        r"(matching ^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$)"
    ]
    route["spec"]["rules"][0]["matches"][0]["method"] = {}
    assert check(gateway.GRPC_ROUTE, route) == [
        "spec.rules[0].matches[0].method: Invalid value: \"object\": One or both of 'service' or 'method' must be specified"
    ]


def test_reference_grant_and_l4_routes() -> None:
    grant = {
        "metadata": {"name": "g", "namespace": "default"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]},
    }
    assert check(gateway.REFERENCE_GRANT, grant) == [
        "spec.from[0].namespace: Required value",
        "spec.to: Required value",
        NOT_CHECKED,
    ]
    tcp = {"metadata": {"name": "t", "namespace": "default"}, "spec": {"parentRefs": [{"name": "gw"}]}}
    assert check(gateway.TCP_ROUTE, tcp) == ["spec.rules: Required value", NOT_CHECKED]
    tcp["spec"]["rules"] = [{"backendRefs": [{"name": "s", "port": 9000}]}]
    assert check(gateway.TCP_ROUTE, tcp) == []
    assert tcp["spec"]["rules"][0]["backendRefs"][0]["weight"] == 1
    assert gateway.age_row(load(GATEWAY), NOW) == ["prod-web", "40s"]

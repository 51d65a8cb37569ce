"""The OpenAPI v3 documents: every served kind findable the way kubectl explain finds it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubewire.api.registry import Kind, default_registry
from kubewire.apiserver.openapi import COMPONENTS, openapi_v3
from tests.conftest import REPO

Doc = dict[str, Any]
KINDS = default_registry().kinds


def gv_path(kind: Kind) -> str:
    return f"apis/{kind.group}/{kind.version}" if kind.group else f"api/{kind.version}"


def document(path: str) -> Doc:
    body = openapi_v3(default_registry()).document(path)
    assert body is not None, path
    doc: Doc = json.loads(body)
    return doc


def schema_for(kind: Kind, kind_name: str | None = None) -> tuple[str, Doc]:
    """The component carrying the GVK, as explain's template looks it up."""
    gvk = {"group": kind.group, "version": kind.version, "kind": kind_name or kind.kind}
    schemas = document(gv_path(kind))["components"]["schemas"]
    found = [(name, s) for name, s in schemas.items() if gvk in s.get("x-kubernetes-group-version-kind", [])]
    assert len(found) == 1, (gvk, [n for n, _ in found])
    return found[0]


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_index_lists_every_served_group_version_with_the_hash_of_its_document() -> None:
    docs = openapi_v3(default_registry())
    index = json.loads(docs.index())["paths"]
    assert set(index) == {gv_path(k) for k in KINDS}
    for gv, entry in index.items():
        body = docs.document(gv)
        assert body is not None
        expected = hashlib.sha512(body).hexdigest().upper()
        assert entry["serverRelativeURL"] == f"/openapi/v3/{gv}?hash={expected}"
    assert docs.document("apis/nope/v1") is None


def test_documents_are_built_once() -> None:
    first = openapi_v3(default_registry())
    assert openapi_v3(default_registry()) is first
    assert first.document("api/v1") is first.document("api/v1")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: f"{k.group or 'core'}/{k.version}/{k.kind}")
def test_every_kind_has_a_schema_found_through_its_path_operations(kind: Kind) -> None:
    doc = document(gv_path(kind))
    prefix = f"/{gv_path(kind)}/namespaces/{{namespace}}" if kind.namespaced else f"/{gv_path(kind)}"
    item = doc["paths"][f"{prefix}/{kind.plural}/{{name}}"]
    gvk = {"group": kind.group, "version": kind.version, "kind": kind.kind}
    assert item["get"]["x-kubernetes-group-version-kind"] == gvk
    assert item["patch"]["x-kubernetes-group-version-kind"] == gvk
    name, schema = schema_for(kind)
    assert schema["description"] and set(schema["properties"]) >= {"apiVersion", "kind", "metadata"}
    meta = schema["properties"]["metadata"]
    assert meta["allOf"] == [{"$ref": COMPONENTS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    list_name, listing = schema_for(kind, kind.list_kind)
    assert list_name == name + "List"
    assert listing["properties"]["items"]["items"] == {"$ref": COMPONENTS + name}


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("services", "io.k8s.api.core.v1.Service"),
        ("deployments", "io.k8s.api.apps.v1.Deployment"),
        ("endpointslices", "io.k8s.api.discovery.v1.EndpointSlice"),
        ("networkpolicies", "io.k8s.api.networking.v1.NetworkPolicy"),
        ("httproutes", "io.k8s.networking.gateway.v1.HTTPRoute"),
        ("referencegrants", "io.k8s.networking.gateway.v1beta1.ReferenceGrant"),
        ("ipaddresspools", "io.metallb.v1beta1.IPAddressPool"),
        ("bgppeers", "io.metallb.v1beta2.BGPPeer"),
    ],
)
def test_components_use_upstream_definition_names(kind: str, name: str) -> None:
    k = default_registry().lookup(kind)
    assert k is not None
    assert schema_for(k)[0] == name


@pytest.mark.parametrize("gv", sorted({gv_path(k) for k in KINDS}))
def test_every_ref_resolves_and_no_operation_offers_field_validation(gv: str) -> None:
    doc = document(gv)
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith(COMPONENTS) and ref.removeprefix(COMPONENTS) in schemas, ref
    for item in doc["paths"].values():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert all(p["name"] != "fieldValidation" for p in op.get("parameters", []))
            if method == "patch":
                assert "application/strategic-merge-patch+json" not in op["requestBody"]["content"]


def test_scale_subresource_serves_autoscaling_v1_scale() -> None:
    doc = document("apis/apps/v1")
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["put"]["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    schema = doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"]
    assert schema["x-kubernetes-group-version-kind"] == [{"group": "autoscaling", "version": "v1", "kind": "Scale"}]


def test_built_in_fields_carry_types_descriptions_and_required() -> None:
    schemas = document("api/v1")["components"]["schemas"]
    port = schemas["io.k8s.api.core.v1.ServicePort"]
    assert port["required"] == ["port"] and port["description"]
    assert port["properties"]["port"]["type"] == "integer" and port["properties"]["port"]["description"]
    assert port["properties"]["targetPort"]["allOf"] == [
        {"$ref": COMPONENTS + "io.k8s.apimachinery.pkg.util.intstr.IntOrString"}
    ]
    ports = schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]
    assert ports["type"] == "array" and ports["items"] == {"$ref": COMPONENTS + "io.k8s.api.core.v1.ServicePort"}
    limits = schemas["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"] == {"$ref": COMPONENTS + "io.k8s.apimachinery.pkg.api.resource.Quantity"}
    labels = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["labels"]
    assert labels["additionalProperties"] == {"type": "string"}
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["x-kubernetes-int-or-string"] is True
    assert schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"] == {
        "description": "A timestamp in RFC 3339 form.",
        "type": "string",
        "format": "date-time",
    }


def test_wire_names_replace_python_names() -> None:
    schemas = document("apis/networking.k8s.io/v1")["components"]["schemas"]
    assert "except" in schemas["io.k8s.api.networking.v1.IPBlock"]["properties"]
    assert "from" in schemas["io.k8s.api.networking.v1.NetworkPolicyIngressRule"]["properties"]


# ------------------------------------------------------------------ the examples fit the schemas


class Checker:
    """A small structural validator: enough to show the schemas accept real manifests."""

    def __init__(self, schemas: Doc) -> None:
        self.schemas = schemas

    def check(self, value: Any, schema: Doc, path: str) -> list[str]:
        if "$ref" in schema:
            return self.check(value, self.schemas[schema["$ref"].removeprefix(COMPONENTS)], path)
        errors = [e for sub in schema.get("allOf", []) for e in self.check(value, sub, path)]
        if "anyOf" in schema and all(self.check(value, sub, path) for sub in schema["anyOf"]):
            errors.append(f"{path}: matches no alternative")
        return errors + self._typed(value, schema, path)

    def _typed(self, value: Any, schema: Doc, path: str) -> list[str]:
        expected = schema.get("type")
        python = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float)}
        if expected == "boolean":
            return [] if isinstance(value, bool) else [f"{path}: want boolean"]
        if expected in python and (isinstance(value, bool) or not isinstance(value, python[expected])):
            return [f"{path}: want {expected}, got {value!r}"]
        if expected == "array":
            return [e for i, v in enumerate(value) for e in self.check(v, schema.get("items", {}), f"{path}[{i}]")]
        if expected == "object":
            return self._object(value, schema, path)
        return []

    def _object(self, value: Doc, schema: Doc, path: str) -> list[str]:
        errors = [f"{path}.{k}: required" for k in schema.get("required", []) if k not in value]
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                errors += self.check(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                errors += self.check(item, extra, f"{path}.{key}")
            elif props and not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}.{key}: unknown field")
        return errors


@pytest.mark.parametrize("manifest", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_manifests_fit_the_schemas(manifest: Any) -> None:
    for obj in yaml.safe_load_all(manifest.read_text()):
        if not obj:
            continue
        kind = default_registry().by_api_version(obj["apiVersion"], obj["kind"])
        assert kind is not None
        _, schema = schema_for(kind)
        checker = Checker(document(gv_path(kind))["components"]["schemas"])
        assert checker.check(obj, schema, obj["kind"]) == []


def test_checker_notices_a_wrong_type() -> None:
    kind = default_registry().lookup("svc")
    assert kind is not None
    checker = Checker(document("api/v1")["components"]["schemas"])
    bad = {"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": "eighty", "targetPort": 8080}]}}
    assert checker.check(bad, schema_for(kind)[1], "Service") == [
        "Service.spec.ports[0].port: want integer, got 'eighty'"
    ]

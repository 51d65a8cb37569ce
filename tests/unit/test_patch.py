"""JSON patch, JSON merge patch and strategic merge patch against upstream's behaviour."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubewire.api import patch as p
from kubewire.api.registry import Kind
from kubewire.errors import BadRequest, StatusError, UnsupportedMediaType

DEPLOYMENT = Kind(
    group="apps",
    version="v1",
    kind="Deployment",
    plural="deployments",
    namespaced=True,
    merge_keys={
        "spec.template.spec.containers": "name",
        "spec.template.spec.containers.ports": "containerPort",
        "spec.template.spec.containers.env": "name",
        "spec.template.spec.volumes": "name",
    },
    retain_keys=frozenset({"spec.strategy"}),
)
POD = Kind(
    group="",
    version="v1",
    kind="Pod",
    plural="pods",
    namespaced=True,
    merge_keys={"spec.containers": "name", "spec.containers.ports": "containerPort"},
)
HTTPROUTE = Kind(
    group="gateway.networking.k8s.io", version="v1", kind="HTTPRoute", plural="httproutes", namespaced=True
)


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "finalizers": ["a", "b"],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "ports": [
                                {"containerPort": 80, "protocol": "TCP"},
                                {"containerPort": 443, "protocol": "TCP"},
                            ],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        },
                        {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]},
                    ]
                },
            },
        },
        "status": {"conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]},
    }


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


# ---------------------------------------------------------------------------- JSON patch


def test_json_patch_applies_operations_in_order() -> None:
    obj = deployment()
    out = p.json_patch(
        obj,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
            {"op": "remove", "path": "/spec/template/spec/containers/1"},
            {"op": "test", "path": "/spec/replicas", "value": 5},
        ],
    )
    assert out["spec"]["replicas"] == 5
    assert out["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert [c["name"] for c in containers(out)] == ["web"]
    assert obj == deployment(), "input must not be mutated"


def test_json_patch_failed_test_is_upstream_422() -> None:
    with pytest.raises(StatusError) as e:
        p.json_patch(deployment(), [{"op": "test", "path": "/spec/replicas", "value": 9}])
    assert e.value.code == 422
    assert e.value.reason == "Invalid"
    assert e.value.message == "the server rejected our request due to an error in our request"
    assert e.value.causes[0].reason == "UnexpectedServerResponse"
    assert e.value.causes[0].message == "testing value /spec/replicas failed: test failed"


@pytest.mark.parametrize(
    ("op", "detail"),
    [
        (
            {"op": "remove", "path": "/spec/nope"},
            'remove operation does not apply: doc is missing path: "/spec/nope": missing value',
        ),
        (
            {"op": "replace", "path": "/x/y", "value": 1},
            "replace operation does not apply: doc is missing key: /x/y: missing value",
        ),
        ({"op": "frobnicate", "path": "/x"}, "Unexpected kind: frobnicate"),
    ],
)
def test_json_patch_operation_that_does_not_apply(op: dict[str, Any], detail: str) -> None:
    with pytest.raises(StatusError) as e:
        p.json_patch(deployment(), [op])
    assert e.value.code == 422
    assert e.value.causes[0].message == detail


def test_json_patch_body_must_be_a_list() -> None:
    with pytest.raises(BadRequest, match=r"cannot unmarshal object into Go value of type jsonpatch\.Patch"):
        p.json_patch(deployment(), {"op": "add"})


# ---------------------------------------------------------------------------- merge patch


def test_merge_patch_merges_objects_replaces_lists_and_null_deletes() -> None:
    obj = deployment()
    out = p.merge_patch(
        obj,
        {
            "metadata": {"labels": {"app": None, "new": "x"}},
            "spec": {"template": {"spec": {"containers": [{"name": "only"}]}}},
        },
    )
    assert out["metadata"]["labels"] == {"new": "x"}
    assert containers(out) == [{"name": "only"}]
    assert obj == deployment()


def test_merge_patch_drops_nulls_inside_new_objects() -> None:
    assert p.merge_patch({}, {"a": {"b": None, "c": 1}}) == {"a": {"c": 1}}


def test_merge_patch_rejects_non_object() -> None:
    with pytest.raises(BadRequest):
        p.merge_patch({}, [1])


json_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text("abc", max_size=2), children, max_size=3),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text("abcd", max_size=2), json_values, max_size=4)


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    return value


def _merge_diff(a: Any, b: Any) -> Any:
    """The RFC 7386 patch turning object ``a`` into object ``b``."""
    out: dict[str, Any] = {k: None for k in a if k not in b}
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            sub = _merge_diff(a[k], v)
            if sub:
                out[k] = sub
        elif k not in a or a[k] != v or type(a[k]) is not type(v):
            out[k] = v
    return out


_CHEAP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_CHEAP
@given(json_objects.map(_strip_nulls), json_objects.map(_strip_nulls))
def test_merge_patch_of_diff_reproduces_target(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert p.merge_patch(a, _merge_diff(a, b)) == b


@_CHEAP
@given(json_objects.map(_strip_nulls), json_objects)
def test_strategic_without_directives_or_merge_lists_equals_merge_patch(
    obj: dict[str, Any], patch: dict[str, Any]
) -> None:
    kind = Kind(group="", version="v1", kind="ConfigMap", plural="configmaps", namespaced=True)
    assert p.strategic_merge_patch(obj, patch, kind) == p.merge_patch(obj, patch)


# ---------------------------------------------------------------------------- strategic merge


def test_kubectl_client_side_apply_patch_for_a_deployment() -> None:
    """The patch kubectl 1.32 computes for: replicas 2->3, web image bump, port 443 dropped."""
    kubectl_patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"new": true}\n'}},
        "spec": {
            "replicas": 3,
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                    "containers": [
                        {
                            "$setElementOrder/ports": [{"containerPort": 80}],
                            "image": "nginx:1.26",
                            "name": "web",
                            "ports": [{"$patch": "delete", "containerPort": 443}],
                        }
                    ],
                }
            },
        },
    }
    obj = deployment()
    out = p.strategic_merge_patch(obj, kubectl_patch, DEPLOYMENT)
    expected = deployment()
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = '{"new": true}\n'
    expected["spec"]["replicas"] = 3
    web = containers(expected)[0]
    web["image"] = "nginx:1.26"
    web["ports"] = [{"containerPort": 80, "protocol": "TCP"}]
    assert out == expected
    assert obj == deployment()


def test_set_element_order_reorders_and_adds() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "new"}, {"name": "web"}],
                    "containers": [{"name": "new", "image": "redis"}],
                }
            }
        }
    }
    out = p.strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert [c["name"] for c in containers(out)] == ["sidecar", "new", "web"]
    assert containers(out)[1] == {"name": "new", "image": "redis"}


def test_merge_list_without_order_appends_new_items_after_live_ones() -> None:
    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "new", "image": "redis"}, {"name": "web", "image": "x"}]}}
        }
    }
    out = p.strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    # Upstream: patch items keep patch order, live-only items are interleaved by live order.
    assert [c["name"] for c in containers(out)] == ["new", "web", "sidecar"]
    assert containers(out)[1]["image"] == "x"


def test_unkeyed_list_is_replaced() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "args": ["true"]}]}}}}
    out = p.strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert containers(out)[1]["args"] == ["true"]
    assert containers(out)[1]["image"] == "busybox"


def test_patch_delete_and_replace_in_lists() -> None:
    delete = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    assert [c["name"] for c in containers(p.strategic_merge_patch(deployment(), delete, DEPLOYMENT))] == ["web"]
    replace = {"spec": {"template": {"spec": {"containers": [{"name": "solo", "image": "x"}, {"$patch": "replace"}]}}}}
    assert containers(p.strategic_merge_patch(deployment(), replace, DEPLOYMENT)) == [{"name": "solo", "image": "x"}]


def test_patch_directives_in_maps() -> None:
    out = p.strategic_merge_patch(
        deployment(), {"metadata": {"labels": {"$patch": "replace", "only": "me"}}}, DEPLOYMENT
    )
    assert out["metadata"]["labels"] == {"only": "me"}
    out = p.strategic_merge_patch(deployment(), {"spec": {"strategy": {"$patch": "delete"}}}, DEPLOYMENT)
    assert out["spec"]["strategy"] == {}


def test_retain_keys_clears_other_fields() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = p.strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_must_cover_the_patch() -> None:
    with pytest.raises(BadRequest, match="invalid patch format of retainKeys"):
        p.strategic_merge_patch(
            deployment(), {"spec": {"strategy": {"$retainKeys": ["x"], "type": "Recreate"}}}, DEPLOYMENT
        )


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list() -> None:
    out = p.strategic_merge_patch(deployment(), {"metadata": {"finalizers": ["c", "a"]}}, DEPLOYMENT)
    assert out["metadata"]["finalizers"] == ["c", "a", "b"]
    out = p.strategic_merge_patch(
        deployment(),
        {
            "metadata": {
                "$setElementOrder/finalizers": ["b", "c"],
                "$deleteFromPrimitiveList/finalizers": ["a"],
                "finalizers": ["c"],
            }
        },
        DEPLOYMENT,
    )
    assert out["metadata"]["finalizers"] == ["b", "c"]


def test_status_conditions_merge_by_type() -> None:
    out = p.strategic_merge_patch(
        deployment(), {"status": {"conditions": [{"type": "Available", "status": "False"}]}}, DEPLOYMENT
    )
    assert out["status"]["conditions"] == [
        {"type": "Available", "status": "False"},
        {"type": "Progressing", "status": "True"},
    ]


def test_owner_references_merge_by_uid() -> None:
    obj = {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}
    out = p.strategic_merge_patch(obj, {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}, POD)
    assert [o["uid"] for o in out["metadata"]["ownerReferences"]] == ["2", "1"]


def test_null_deletes_and_unmatched_null_is_ignored() -> None:
    out = p.strategic_merge_patch(deployment(), {"metadata": {"labels": {"app": None, "gone": None}}}, DEPLOYMENT)
    assert out["metadata"]["labels"] == {}


def test_new_subtrees_lose_directives_and_nulls() -> None:
    out = p.strategic_merge_patch({}, {"spec": {"containers": [{"name": "a", "x": None}]}}, POD)
    assert out == {"spec": {"containers": [{"name": "a"}]}}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"metadata": {"labels": {"$patch": "frob"}}}, "unknown patch type: frob in map: map[$patch:frob]"),
        ({"metadata": {"$bogus": 1}}, "unknown patch directive"),
        (
            {"spec": {"template": {"spec": {"containers": [{"$patch": "merge", "name": "x"}]}}}},
            "merging lists cannot yet be specified",
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
            "does not contain declared merge key: name",
        ),
        ({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, "invalid patch format of primitive list"),
        ({"metadata": {"$setElementOrder/finalizers": "a"}}, "invalid patch format of setElementOrder list"),
        ({"metadata": {"$retainKeys": "a"}}, "invalid patch format of retainKeys"),
    ],
)
def test_bad_directives_are_bad_requests(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        p.strategic_merge_patch(deployment(), patch, DEPLOYMENT)


def test_set_element_order_must_match_patch_order() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                    "containers": [{"name": "sidecar", "image": "a"}, {"name": "web", "image": "b"}],
                }
            }
        }
    }
    with pytest.raises(BadRequest, match=r"doesn't match \$setElementOrder list"):
        p.strategic_merge_patch(deployment(), patch, DEPLOYMENT)


def test_lists_of_lists_are_rejected_with_422() -> None:
    kind = Kind(
        group="", version="v1", kind="X", plural="xs", namespaced=True, merge_primitive_lists=frozenset({"spec.l"})
    )
    with pytest.raises(StatusError) as e:
        p.strategic_merge_patch({"spec": {"l": [[1]]}}, {"spec": {"l": [[2]]}}, kind)
    assert e.value.code == 422


# ---------------------------------------------------------------------------- dispatch


def test_dispatch_by_content_type() -> None:
    obj = deployment()
    body = json.dumps({"spec": {"replicas": 7}}).encode()
    for ctype in (p.MERGE_PATCH, p.STRATEGIC_MERGE_PATCH):
        assert p.apply_patch(obj, body, ctype, DEPLOYMENT)["spec"]["replicas"] == 7
    ops = json.dumps([{"op": "replace", "path": "/spec/replicas", "value": 8}]).encode()
    assert p.apply_patch(obj, ops, p.JSON_PATCH, DEPLOYMENT)["spec"]["replicas"] == 8
    assert obj == deployment()


def test_dispatch_rejects_undecodable_body() -> None:
    with pytest.raises(BadRequest):
        p.apply_patch({}, b"{nope", p.MERGE_PATCH, DEPLOYMENT)


def test_strategic_merge_on_crd_like_kinds_is_415_like_upstream() -> None:
    assert p.supports_strategic(DEPLOYMENT) and p.supports_strategic(POD)
    assert not p.supports_strategic(HTTPROUTE)
    with pytest.raises(UnsupportedMediaType) as e:
        p.apply_patch({}, b"{}", p.STRATEGIC_MERGE_PATCH, HTTPROUTE)
    assert e.value.code == 415
    assert e.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )
    # Merge patch still works there.
    assert p.apply_patch({"spec": {"a": 1}}, b'{"spec":{"b":2}}', p.MERGE_PATCH, HTTPROUTE) == {
        "spec": {"a": 1, "b": 2}
    }


def test_strategic_merge_does_not_mutate_inputs() -> None:
    obj, patch = deployment(), {"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "delete"}]}}}}
    before = copy.deepcopy(patch)
    p.strategic_merge_patch(obj, patch, DEPLOYMENT)
    assert obj == deployment() and patch == before

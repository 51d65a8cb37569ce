"""Server-side apply and managedFields tracking, against structured-merge-diff's behaviour."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubewire.api import apply as ssa
from kubewire.api import patch as patching
from kubewire.api.registry import Kind
from kubewire.errors import BadRequest, Conflict

DEPLOYMENT = Kind(
    group="apps",
    version="v1",
    kind="Deployment",
    plural="deployments",
    namespaced=True,
    subresources=frozenset({"status", "scale"}),
    merge_keys={
        "spec.template.spec.containers": "name",
        "spec.template.spec.containers.ports": "containerPort",
        "spec.template.spec.containers.env": "name",
    },
)
T0, T1, T2 = "2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z", "2025-01-01T00:02:00Z"


def config(replicas: int = 2, image: str = "nginx:1.25", labels: dict[str, str] | None = None) -> dict[str, Any]:
    """What ``kubectl apply --server-side`` sends for a small Deployment manifest."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels if labels is not None else {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]},
            },
        },
    }


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What the store would add on create: server-owned metadata."""
    out = copy.deepcopy(obj)
    out["metadata"].update({"uid": "u-1", "resourceVersion": "1", "generation": 1, "creationTimestamp": T0})
    return out


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def test_apply_create_records_upstream_fields_v1() -> None:
    out = patching.apply(None, config(), "kubectl", DEPLOYMENT, False, T0)
    assert out["spec"]["replicas"] == 2
    [entry] = out["metadata"]["managedFields"]
    assert {k: v for k, v in entry.items() if k != "fieldsV1"} == {
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
    }
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"web"}': {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
                        }
                    }
                },
            },
        },
    }


def test_reapply_prunes_what_the_applier_dropped() -> None:
    first = stored(
        patching.apply(None, config(labels={"app": "web", "tier": "front"}), "kubectl", DEPLOYMENT, False, T0)
    )
    cfg = config(labels={"app": "web"})
    cfg["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    second = patching.apply(first, cfg, "kubectl", DEPLOYMENT, False, T1)
    assert second["metadata"]["labels"] == {"app": "web"}
    assert [c["name"] for c in second["spec"]["template"]["spec"]["containers"]] == ["web", "sidecar"]
    third = patching.apply(second, config(labels={"app": "web"}), "kubectl", DEPLOYMENT, False, T2)
    assert [c["name"] for c in third["spec"]["template"]["spec"]["containers"]] == ["web"]
    assert third["metadata"]["uid"] == "u-1", "server-owned metadata survives apply"


def test_prune_keeps_fields_another_manager_owns() -> None:
    live = stored(
        patching.apply(None, config(labels={"app": "web", "tier": "front"}), "kubectl", DEPLOYMENT, False, T0)
    )
    # Another manager sets the same label value: shared ownership, no conflict.
    other = patching.apply(
        live, {**config(), "metadata": {"name": "web", "labels": {"tier": "front"}}}, "other", DEPLOYMENT, False, T1
    )
    out = patching.apply(other, config(labels={"app": "web"}), "kubectl", DEPLOYMENT, False, T2)
    assert out["metadata"]["labels"] == {"app": "web", "tier": "front"}


def test_conflict_with_client_side_apply_manager_matches_upstream() -> None:
    created = stored(patching.track_update(None, config(), "kubectl-client-side-apply", DEPLOYMENT, T0))
    with pytest.raises(Conflict) as e:
        patching.apply(created, config(replicas=5), "kubectl", DEPLOYMENT, False, T1)
    err = e.value
    assert err.code == 409 and err.reason == "Conflict"
    assert (
        err.message
        == 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas'
    )
    assert [(c.reason, c.message, c.field) for c in err.causes] == [
        ("FieldManagerConflict", 'conflict with "kubectl-client-side-apply" using apps/v1', ".spec.replicas")
    ]
    assert err.to_status()["details"]["causes"][0]["field"] == ".spec.replicas"


def test_applying_the_same_values_as_another_manager_shares_ownership() -> None:
    created = stored(patching.track_update(None, config(), "kubectl-client-side-apply", DEPLOYMENT, T0))
    out = patching.apply(created, config(), "kubectl", DEPLOYMENT, False, T1)
    found = entries(out)
    assert set(found) == {("kubectl", "Apply"), ("kubectl-client-side-apply", "Update")}
    assert "f:replicas" in found[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" in found[("kubectl-client-side-apply", "Update")]["fieldsV1"]["f:spec"]
    # Apply entries sort before Update entries, as upstream encodes them.
    assert [e["operation"] for e in out["metadata"]["managedFields"]] == ["Apply", "Update"]


def test_multiple_conflicts_are_grouped_by_manager() -> None:
    created = stored(patching.track_update(None, config(), "kubectl-client-side-apply", DEPLOYMENT, T0))
    edited = patching.track_update(created, config(image="nginx:1.26"), "kubectl-edit", DEPLOYMENT, T1)
    with pytest.raises(Conflict) as e:
        patching.apply(edited, config(replicas=3, image="nginx:2"), "kubectl", DEPLOYMENT, False, T2)
    assert e.value.message == (
        "Apply failed with 2 conflicts: "
        'conflicts with "kubectl-client-side-apply" using apps/v1:\n'
        "- .spec.replicas\n"
        'conflicts with "kubectl-edit" using apps/v1:\n'
        '- .spec.template.spec.containers[name="web"].image'
    )
    assert [c.field for c in e.value.causes] == [".spec.replicas", '.spec.template.spec.containers[name="web"].image']


def test_conflict_between_appliers_names_the_apply_manager_without_version() -> None:
    live = stored(patching.apply(None, config(), "alice", DEPLOYMENT, False, T0))
    with pytest.raises(Conflict, match=r'^Apply failed with 1 conflict: conflict with "alice": \.spec\.replicas$'):
        patching.apply(live, config(replicas=9), "bob", DEPLOYMENT, False, T1)


def test_force_moves_ownership_to_the_applier() -> None:
    created = stored(patching.track_update(None, config(), "kubectl-client-side-apply", DEPLOYMENT, T0))
    out = patching.apply(created, config(replicas=5), "kubectl", DEPLOYMENT, True, T1)
    assert out["spec"]["replicas"] == 5
    found = entries(out)
    assert "f:replicas" in found[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in found[("kubectl-client-side-apply", "Update")]["fieldsV1"]["f:spec"]


def test_track_update_moves_changed_fields_to_the_writer() -> None:
    live = stored(patching.apply(None, config(), "kubectl", DEPLOYMENT, False, T0))
    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    edited["metadata"]["annotations"] = {"note": "x"}
    out = patching.track_update(live, edited, "kubectl-edit", DEPLOYMENT, T1)
    found = entries(out)
    assert found[("kubectl-edit", "Update")]["time"] == T1
    assert found[("kubectl-edit", "Update")]["fieldsV1"] == {
        "f:metadata": {"f:annotations": {".": {}, "f:note": {}}},
        "f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}}},
    }
    web = found[("kubectl", "Apply")]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert "f:image" not in web and "f:name" in web
    assert found[("kubectl", "Apply")]["time"] == T0
    # Now the applier re-applying its old image conflicts with kubectl-edit.
    with pytest.raises(Conflict, match="kubectl-edit"):
        patching.apply(out, config(image="nginx:1.25"), "kubectl", DEPLOYMENT, False, T2)


def test_track_update_noop_adds_no_entry_and_never_tracks_server_fields() -> None:
    live = stored(patching.apply(None, config(), "kubectl", DEPLOYMENT, False, T0))
    bumped = copy.deepcopy(live)
    bumped["metadata"]["resourceVersion"] = "2"
    bumped["metadata"]["generation"] = 2
    bumped["status"] = {"replicas": 2}
    out = patching.track_update(live, bumped, "kube-controller-manager", DEPLOYMENT, T1)
    assert set(entries(out)) == {("kubectl", "Apply")}


def test_track_update_honours_managed_fields_sent_by_the_client() -> None:
    live = stored(patching.apply(None, config(), "kubectl", DEPLOYMENT, False, T0))
    cleared = copy.deepcopy(live)
    cleared["metadata"]["managedFields"] = [{}]
    assert "managedFields" not in patching.track_update(live, cleared, "kubectl-edit", DEPLOYMENT, T1)["metadata"]
    omitted = copy.deepcopy(live)
    del omitted["metadata"]["managedFields"]
    kept = patching.track_update(live, omitted, "kubectl-edit", DEPLOYMENT, T1)
    assert kept["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_create_via_update_marks_new_maps_with_dot() -> None:
    out = patching.track_update(None, config(), "kubectl-create", DEPLOYMENT, T0)
    fields = entries(out)[("kubectl-create", "Update")]["fieldsV1"]
    assert fields["f:metadata"]["f:labels"] == {".": {}, "f:app": {}}
    assert "f:name" not in fields["f:metadata"] and "f:apiVersion" not in fields


def test_reapply_identical_config_is_a_noop_keeping_time() -> None:
    live = stored(patching.apply(None, config(), "kubectl", DEPLOYMENT, False, T0))
    again = patching.apply(live, config(), "kubectl", DEPLOYMENT, False, T1)
    assert again == live


def test_status_is_neither_applied_nor_tracked_for_status_subresource_kinds() -> None:
    live = stored(patching.apply(None, config(), "kubectl", DEPLOYMENT, False, T0))
    live["status"] = {"replicas": 1}
    out = patching.apply(live, {**config(), "status": {"replicas": 7}}, "kubectl", DEPLOYMENT, False, T1)
    assert out["status"] == {"replicas": 1}
    assert "f:status" not in entries(out)[("kubectl", "Apply")]["fieldsV1"]


def test_applied_config_must_not_carry_managed_fields() -> None:
    cfg = config()
    cfg["metadata"]["managedFields"] = [{"manager": "x"}]
    with pytest.raises(BadRequest, match=r"metadata\.managedFields must be nil"):
        patching.apply(None, cfg, "kubectl", DEPLOYMENT, False, T0)


def test_associative_list_items_need_their_key() -> None:
    cfg = config()
    cfg["spec"]["template"]["spec"]["containers"] = [{"image": "x"}]
    with pytest.raises(BadRequest, match='omits key field "name"'):
        patching.apply(None, cfg, "kubectl", DEPLOYMENT, False, T0)


def test_merge_keeps_live_only_list_items_in_place() -> None:
    live = stored(config())
    live["spec"]["template"]["spec"]["containers"] = [{"name": "a"}, {"name": "web", "image": "old"}, {"name": "z"}]
    out = patching.apply(live, config(), "kubectl", DEPLOYMENT, False, T0)
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["a", "web", "z"]
    assert containers[1]["image"] == "nginx:1.25"


def test_atomic_selector_is_replaced_whole() -> None:
    live = stored(config())
    live["spec"]["selector"] = {"matchLabels": {"app": "web", "old": "x"}}
    out = patching.apply(live, config(), "kubectl", DEPLOYMENT, True, T0)
    assert out["spec"]["selector"] == {"matchLabels": {"app": "web"}}


def test_path_string_formats() -> None:
    path = ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:name")
    assert ssa.path_string(path) == '.spec.ports[port=80,protocol="TCP"].name'
    assert ssa.path_string(("f:metadata", "f:finalizers", 'v:"a"')) == '.metadata.finalizers[="a"]'


label_maps = st.dictionaries(st.sampled_from(["app", "tier", "env"]), st.sampled_from(["a", "b"]), max_size=3)
images = st.sampled_from(["nginx:1", "nginx:2"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_maps, st.integers(1, 3), images)
def test_fields_v1_round_trips(labels: dict[str, str], replicas: int, image: str) -> None:
    fields = ssa.field_set(config(replicas, image, labels), DEPLOYMENT)
    assert ssa.decode_fields(ssa.encode_fields(fields)) == fields


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_maps, label_maps, st.integers(1, 3), images)
def test_reapply_converges_to_the_applied_labels(
    first: dict[str, str], second: dict[str, str], replicas: int, image: str
) -> None:
    """A sole applier's object ends up with exactly the labels it last applied."""
    live = stored(patching.apply(None, config(labels=first), "kubectl", DEPLOYMENT, False, T0))
    out = patching.apply(live, config(replicas, image, second), "kubectl", DEPLOYMENT, False, T1)
    assert out["metadata"].get("labels", {}) == second
    assert out["spec"]["replicas"] == replicas

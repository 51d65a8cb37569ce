"""Store semantics: resourceVersions, concurrency, subresources, deletion, GC, watch, durability."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubewire.api.registry import default_registry
from kubewire.api.selection import Selection
from kubewire.errors import AlreadyExists, Conflict, Forbidden, Gone, Invalid, NotFound
from kubewire.store.store import Store
from tests.conftest import kind

CM = kind("configmaps")
NS = kind("namespaces")
DEPLOY = kind("deployments")
RS = kind("replicasets")
POD = kind("pods")


def cm(name: str, ns: str = "default", **labels: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "data": {"k": "v"},
    }


def deployment(name: str = "web") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }


def owned(obj: dict, owner: dict, block: bool = False) -> dict:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    if block:
        ref["blockOwnerDeletion"] = True
    obj["metadata"]["ownerReferences"] = [ref]
    return obj


def test_create_assigns_server_fields_and_rejects_duplicates(store: Store) -> None:
    obj = store.create(CM, cm("a"))
    meta = obj["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and int(meta["resourceVersion"]) == store.rv
    with pytest.raises(AlreadyExists) as e:
        store.create(CM, cm("a"))
    assert str(e.value) == 'configmaps "a" already exists'


def test_create_in_missing_namespace_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as e:
        store.create(CM, cm("a", ns="nope"))
    assert str(e.value) == 'namespaces "nope" not found'


def test_generate_name(store: Store) -> None:
    obj = cm("")
    obj["metadata"] = {"generateName": "web-", "namespace": "default"}
    created = store.create(CM, obj)
    assert created["metadata"]["name"].startswith("web-") and len(created["metadata"]["name"]) == 9


def test_stale_update_conflicts_and_noop_keeps_revision(store: Store) -> None:
    first = store.create(CM, cm("a"))
    first["data"] = {"k": "2"}
    second = store.update(CM, first)
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    first["data"] = {"k": "3"}
    with pytest.raises(Conflict) as e:
        store.update(CM, first)
    assert "the object has been modified; please apply your changes to the latest version and try again" in str(e.value)
    again = store.update(CM, second)
    assert again["metadata"]["resourceVersion"] == second["metadata"]["resourceVersion"]


def test_generation_tracks_spec_not_metadata_or_status(store: Store) -> None:
    d = store.create(DEPLOY, deployment())
    assert d["metadata"]["generation"] == 1
    d["metadata"]["labels"] = {"x": "y"}
    d = store.update(DEPLOY, d)
    assert d["metadata"]["generation"] == 1
    d["spec"]["replicas"] = 3
    d = store.update(DEPLOY, d)
    assert d["metadata"]["generation"] == 2
    d["status"] = {"replicas": 3}
    d = store.update(DEPLOY, d, subresource="status")
    assert d["metadata"]["generation"] == 2 and d["status"] == {"replicas": 3}


def test_status_subresource_separation(store: Store) -> None:
    d = store.create(DEPLOY, {**deployment(), "status": {"replicas": 9}})
    assert d["status"] == {}  # status is not settable on create
    d["status"] = {"replicas": 1}
    d["spec"]["replicas"] = 5
    d = store.update(DEPLOY, d, subresource="status")
    assert d["status"] == {"replicas": 1} and d["spec"]["replicas"] == 1  # spec ignored on status writes
    d["status"] = {"replicas": 7}
    d = store.update(DEPLOY, d)
    assert d["status"] == {"replicas": 1}  # status ignored on main-resource writes


def test_validation_errors_change_nothing(store: Store) -> None:
    bad = cm("Bad_Name")
    rv = store.rv
    with pytest.raises(Invalid) as e:
        store.create(CM, bad)
    assert 'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"' in str(e.value)
    assert store.rv == rv


def test_label_and_field_selectors(store: Store) -> None:
    store.create(CM, cm("a", app="web"))
    store.create(CM, cm("b", app="db"))
    store.create(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    store.create(CM, cm("c", ns="other", app="web"))
    names = lambda sel: [o["metadata"]["name"] for o in store.list_objects(CM, sel)]  # noqa: E731
    assert names(Selection.parse(CM, "", "app=web")) == ["a", "c"]
    assert names(Selection.parse(CM, "default", "app in (web,db)")) == ["a", "b"]
    assert names(Selection.parse(CM, "", "", "metadata.name=b")) == ["b"]
    assert names(Selection.parse(CM, "", "app!=web", "metadata.namespace=default")) == ["b"]


def test_list_pagination(store: Store) -> None:
    for i in range(7):
        store.create(CM, cm(f"c{i}"))
    items, _, last = store.list_raw(CM, Selection("default"), limit=3)
    assert len(items) == 3 and last == ("default", "c2")
    items, _, last = store.list_raw(CM, Selection("default"), limit=3, after=last)
    assert len(items) == 3
    items, _, last = store.list_raw(CM, Selection("default"), limit=3, after=last)
    assert len(items) == 1 and last is None


def test_finalizers_hold_deletion_until_removed(store: Store) -> None:
    obj = cm("a")
    obj["metadata"]["finalizers"] = ["example.com/hold"]
    store.create(CM, obj)
    held, removed = store.delete(CM, "default", "a")
    assert not removed and held["metadata"]["deletionTimestamp"]
    held["metadata"]["finalizers"] = ["example.com/hold", "example.com/more"]
    with pytest.raises(Forbidden):
        store.update(CM, held)
    held["metadata"]["finalizers"] = []
    store.update(CM, held)
    with pytest.raises(NotFound):
        store.get(CM, "default", "a")


def _chain(store: Store) -> tuple[dict, dict, dict]:
    d = store.create(DEPLOY, deployment())
    rs = store.create(
        RS,
        owned(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {"name": "web-1", "namespace": "default"},
                "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                    },
                },
            },
            d,
            block=True,
        ),
    )
    pod = store.create(
        POD,
        owned(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web-1-abcde", "namespace": "default", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
            rs,
            block=True,
        ),
    )
    return d, rs, pod


def test_background_cascade(store: Store) -> None:
    _chain(store)
    store.delete(DEPLOY, "default", "web")
    assert store.list_objects(RS) == [] and store.list_objects(POD) == []


def test_foreground_cascade_deletes_dependents_first(store: Store) -> None:
    _, _, _ = _chain(store)
    watcher, _ = store.watch(DEPLOY, Selection(), None)
    store.delete(DEPLOY, "default", "web", propagation="Foreground")
    assert store.list_objects(RS) == [] and store.list_objects(POD) == []
    with pytest.raises(NotFound):
        store.get(DEPLOY, "default", "web")
    types = []
    while not watcher.queue.empty():
        ev = watcher.queue.get_nowait()
        assert ev is not None
        types.append((ev.type, ev.obj["metadata"].get("finalizers")))
    assert types[0] == ("MODIFIED", ["foregroundDeletion"]) and types[-1][0] == "DELETED"


def test_orphan_keeps_dependents_and_strips_references(store: Store) -> None:
    _chain(store)
    store.delete(DEPLOY, "default", "web", propagation="Orphan")
    rs = store.get(RS, "default", "web-1")
    assert "ownerReferences" not in rs["metadata"]
    assert len(store.list_objects(POD)) == 1


def test_namespace_deletion_empties_it(store: Store) -> None:
    store.create(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
    store.create(CM, cm("a", ns="demo"))
    store.create(CM, cm("keep"))
    store.delete(NS, "", "demo")
    assert [o["metadata"]["name"] for o in store.list_objects(CM)] == ["keep"]
    with pytest.raises(NotFound):
        store.get(NS, "", "demo")


def test_terminating_namespace_refuses_new_content(store: Store) -> None:
    store.create(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
    obj = cm("held", ns="demo")
    obj["metadata"]["finalizers"] = ["example.com/hold"]
    store.create(CM, obj)
    store.delete(NS, "", "demo")
    assert store.get(NS, "", "demo")["status"]["phase"] == "Terminating"
    with pytest.raises(Forbidden) as e:
        store.create(CM, cm("new", ns="demo"))
    assert "unable to create new content in namespace demo because it is being terminated" in str(e.value)
    held = store.get(CM, "demo", "held")
    held["metadata"]["finalizers"] = []
    store.update(CM, held)
    with pytest.raises(NotFound):
        store.get(NS, "", "demo")


def test_watch_replays_from_revision_and_synthesizes_selection_changes(store: Store) -> None:
    start = store.rv
    a = store.create(CM, cm("a", app="web"))
    a["metadata"]["labels"] = {"app": "db"}
    store.update(CM, a)
    _, backlog = store.watch(CM, Selection(), start)
    assert [e.type for e in backlog] == ["ADDED", "MODIFIED"]
    watcher, _ = store.watch(CM, Selection.parse(CM, "", "app=db"), None)
    b = store.get(CM, "default", "a")
    b["metadata"]["labels"] = {"app": "web"}
    store.update(CM, b)
    ev = watcher.queue.get_nowait()
    assert ev is not None and ev.type == "DELETED"  # left the selection


def test_watch_from_compacted_revision_is_gone(tmp_path: Path) -> None:
    s = Store(default_registry(), tmp_path / "db", history_limit=10)
    for i in range(1200):
        s.create(CM, cm(f"c{i}"))
    s.close()
    s = Store(default_registry(), tmp_path / "db", history_limit=10)
    with pytest.raises(Gone) as e:
        s.watch(CM, Selection(), 5)
    assert "too old resource version: 5" in str(e.value)
    _, backlog = s.watch(CM, Selection(), s.rv - 3)
    assert len(backlog) == 3
    s.close()


def test_everything_survives_reopen(tmp_path: Path) -> None:
    s = Store(default_registry(), tmp_path / "db")
    s.create(CM, cm("a"))
    _chain(s)
    rv = s.rv
    s.close()
    s = Store(default_registry(), tmp_path / "db")
    assert s.rv == rv
    assert s.get(CM, "default", "a")["data"] == {"k": "v"}
    _, backlog = s.watch(CM, Selection(), rv - 4)  # history resumes across restarts
    assert backlog == [] or all(e.rv > rv - 4 for e in backlog)
    s.delete(DEPLOY, "default", "web")  # the owner index is rebuilt: the cascade still works
    assert s.list_objects(POD) == []
    s.close()


def test_update_with_reordered_keys_is_a_no_op(store: Store) -> None:
    created = store.create(CM, cm("a"))
    reordered = {k: created[k] for k in reversed(list(created))}
    assert store.update(CM, reordered)["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

"""Property tests: whatever the sequence of writes, the watch stream and a restart agree with list."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubewire.api.registry import default_registry
from kubewire.api.selection import Selection
from kubewire.errors import StatusError
from kubewire.store.store import Store
from tests.conftest import kind

CM = kind("configmaps")
NAMES = st.sampled_from(["a", "b", "c", "d"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), NAMES, st.integers(0, 3)),
        st.tuples(st.just("update"), NAMES, st.integers(0, 3)),
        st.tuples(st.just("delete"), NAMES, st.just(0)),
        st.tuples(st.just("finalize"), NAMES, st.just(0)),
    ),
    max_size=40,
)


def _apply(store: Store, op: str, name: str, value: int) -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": {"v": str(value)}},
    }
    try:
        if op == "create":
            if value == 0:
                obj["metadata"]["finalizers"] = ["example.com/hold"]
            store.create(CM, obj)
        elif op == "update":
            live = store.get(CM, "default", name)
            live["metadata"]["labels"] = {"v": str(value)}
            store.update(CM, live)
        elif op == "delete":
            store.delete(CM, "default", name)
        else:
            live = store.get(CM, "default", name)
            live["metadata"].pop("finalizers", None)
            store.update(CM, live)
    except StatusError:
        pass  # NotFound, AlreadyExists, Forbidden: the store refused, nothing changed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, watch_from=st.integers(0, 40))
def test_replaying_the_watch_stream_rebuilds_the_list(ops: list[tuple[str, str, int]], watch_from: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(default_registry(), Path(tmp) / "db")
        base = store.rv
        for i, (op, name, value) in enumerate(ops):
            if i == watch_from:
                snapshot = {o["metadata"]["name"]: o for o in store.list_objects(CM)}
                snapshot_rv = store.rv
            _apply(store, op, name, value)
        if watch_from >= len(ops):
            snapshot, snapshot_rv = {o["metadata"]["name"]: o for o in store.list_objects(CM)}, store.rv
        _, events = store.watch(CM, Selection(), snapshot_rv)
        state = dict(snapshot)
        for ev in events:
            if ev.type == "DELETED":
                state.pop(ev.obj["metadata"]["name"], None)
            else:
                state[ev.obj["metadata"]["name"]] = ev.obj
        final = {o["metadata"]["name"]: o for o in store.list_objects(CM)}
        assert state == final
        assert all(int(o["metadata"]["resourceVersion"]) > base for o in final.values())
        store.close()
        reopened = Store(default_registry(), Path(tmp) / "db")
        assert {o["metadata"]["name"]: o for o in reopened.list_objects(CM)} == final
        assert reopened.rv == store.rv
        reopened.close()

"""The controller runtime: informers feed keys, reconciles return plans, the writer applies them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from kubewire.api.registry import Kind
from kubewire.client.local import LocalClient
from kubewire.controllers.runtime import Caches, Create, Delete, Manager, Plan, RecordEvent, own_key, split_key
from kubewire.store.store import Store
from tests.conftest import kind

CM = kind("configmaps")
SECRET = kind("secrets")
EVENT = kind("events")


class Mirror:
    """A toy controller: every ConfigMap gets a Secret of the same name; orphans are removed."""

    name = "mirror"

    def watches(self) -> Mapping[Kind, Callable[[dict], Iterable[str]]]:
        return {CM: own_key, SECRET: own_key}

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[dict], list[str]]]]:
        return {}

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan:
        ns, name = split_key(key)
        cm, secret = caches.get(CM, ns, name), caches.get(SECRET, ns, name)
        plan = Plan()
        if cm is not None and secret is None:
            plan.add(
                Create(SECRET, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}})
            )
            plan.add(RecordEvent(cm, "Normal", "Mirrored", f"created secret {name}"))
        if cm is None and secret is not None:
            plan.add(Delete(SECRET, ns, name))
        return plan


async def test_manager_runs_a_reconciler_to_convergence(store: Store) -> None:
    client = LocalClient(store)
    manager = Manager(client, store.registry, [Mirror()])
    await manager.start()
    try:
        await client.create(
            CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}}
        )
        await manager.wait_idle()
        assert store.get(SECRET, "default", "a")["metadata"]["name"] == "a"
        events = store.list_objects(EVENT)
        assert [(e["reason"], e["involvedObject"]["name"]) for e in events] == [("Mirrored", "a")]
        await client.delete(CM, "a", "default")
        await manager.wait_idle()
        assert store.list_objects(SECRET) == []
        assert manager.errors() == {"mirror": {}}
    finally:
        await manager.stop()


class Replicas:
    """Keeps ``data.count`` Secrets labelled for each ConfigMap, named by generateName: without
    read-your-writes a second reconcile on a stale cache would create duplicates."""

    name = "replicas"

    def watches(self) -> Mapping[Kind, Callable[[dict], Iterable[str]]]:
        def owner(obj: dict) -> Iterable[str]:
            labels = obj["metadata"].get("labels") or {}
            return [f"{obj['metadata']['namespace']}/{labels['owner']}"] if "owner" in labels else []

        return {CM: own_key, SECRET: owner}

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[dict], list[str]]]]:
        return {SECRET: {"owner": lambda o: [(o["metadata"].get("labels") or {}).get("owner", "")]}}

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan:
        ns, name = split_key(key)
        cm = caches.get(CM, ns, name)
        want = int((cm or {}).get("data", {}).get("count", "0"))
        have = caches.by_index(SECRET, "owner", name)
        plan = Plan()
        for _ in range(want - len(have)):
            meta = {"generateName": f"{name}-", "namespace": ns, "labels": {"owner": name}}
            plan.add(Create(SECRET, {"apiVersion": "v1", "kind": "Secret", "metadata": meta}))
        for extra in have[want:] if want < len(have) else []:
            plan.add(Delete(SECRET, ns, extra["metadata"]["name"], uid=extra["metadata"]["uid"]))
        return plan


async def test_a_key_is_reconciled_again_only_once_its_writes_are_visible(store: Store) -> None:
    client = LocalClient(store)
    manager = Manager(client, store.registry, [Replicas()])
    await manager.start()
    try:
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}}
        cm["data"] = {"count": "5"}
        await client.create(CM, cm)
        await manager.wait_idle()
        # every create triggers an event for the same key; each reconcile saw the earlier creates
        assert len(store.list_objects(SECRET)) == 5
        live = await client.get(CM, "a", "default")
        live["data"] = {"count": "2"}
        await client.update(CM, live)
        await manager.wait_idle()
        assert len(store.list_objects(SECRET)) == 2
    finally:
        await manager.stop()


class Flaky:
    """Fails to reconcile one key (a bug) and writes an invalid object for another."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def watches(self) -> Mapping[Kind, Callable[[dict], Iterable[str]]]:
        return {CM: own_key}

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[dict], list[str]]]]:
        return {}

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan:
        self.calls[key] = self.calls.get(key, 0) + 1
        ns, name = split_key(key)
        if name == "boom":
            raise RuntimeError("bug")
        meta = {"name": name.upper() if name == "invalid" else name, "namespace": ns}
        return Plan([Create(SECRET, {"apiVersion": "v1", "kind": "Secret", "metadata": meta})])


async def test_failures_are_collected_per_key_and_retried_without_stopping_others(store: Store) -> None:
    client = LocalClient(store)
    flaky = Flaky()
    manager = Manager(client, store.registry, [flaky])
    await manager.start()
    try:
        for name in ("boom", "invalid", "good"):
            meta = {"name": name, "namespace": "default"}
            await client.create(CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta})
        await manager.wait_idle(quiet=0.1)
        assert store.get(SECRET, "default", "good")["metadata"]["name"] == "good"
        errors = manager.errors()["flaky"]
        assert errors["default/boom"] == "reconcile: bug"
        assert "metadata.name" in errors["default/invalid"]
        assert "default/good" not in errors
        await manager.wait_idle(quiet=0.1)
        assert flaky.calls["default/boom"] >= 2  # requeued with backoff, not dropped
    finally:
        await manager.stop()


def test_a_write_counts_as_seen_once_the_cache_or_the_stream_is_past_it(store: Store) -> None:
    from kubewire.controllers.runtime import Written
    from kubewire.store.informer import Informer, WatchEvent

    informer = Informer(LocalClient(store), CM)
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "d", "uid": "u1"}}
    obj["metadata"]["resourceVersion"] = "5"
    created = Written.of(CM, obj)
    assert not created.seen_by(informer)
    informer.apply_event(WatchEvent("ADDED", obj))
    assert created.seen_by(informer)
    later = Written.of(CM, {**obj, "metadata": {**obj["metadata"], "resourceVersion": "9"}})
    assert not later.seen_by(informer)
    gone = {**obj, "metadata": {**obj["metadata"], "resourceVersion": "10"}}
    informer.apply_event(WatchEvent("DELETED", gone))
    assert later.seen_by(informer)  # created and deleted again before the cache caught up
    deleted = Written.of(CM, obj, deleted=True)
    assert deleted.seen_by(informer)

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

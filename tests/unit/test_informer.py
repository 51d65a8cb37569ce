"""Informers over the in-process client: initial sync, events, indexes, relist after Gone."""

from __future__ import annotations

import asyncio

from kubewire.client.local import LocalClient
from kubewire.store.informer import Handlers, Informer
from kubewire.store.store import Store
from tests.conftest import kind

CM = kind("configmaps")


def cm(name: str, app: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
    }


async def _until(predicate, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.001)


async def test_informer_syncs_follows_and_indexes(store: Store) -> None:
    client = LocalClient(store)
    await client.create(CM, cm("a", "web"))
    informer = Informer(client, CM)
    informer.add_indexer("app", lambda o: [o["metadata"].get("labels", {}).get("app", "")])
    seen: list[str] = []
    informer.add_handlers(
        Handlers(
            on_add=lambda o: seen.append("add " + o["metadata"]["name"]),
            on_delete=lambda o: seen.append("del " + o["metadata"]["name"]),
        )
    )
    async with informer.running():
        assert informer.get("default/a") is not None
        await client.create(CM, cm("b", "web"))
        await client.delete(CM, "a", "default")
        await _until(lambda: "del a" in seen)
        assert [o["metadata"]["name"] for o in informer.by_index("app", "web")] == ["b"]
    assert seen == ["add a", "add b", "del a"]

"""The client seam over HTTP (informers against the real server), authentication and the Unix socket."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp

from kubewire.client.http import HttpClient
from kubewire.store.informer import Handlers, Informer
from tests.conftest import Cluster, kind

CM = kind("configmaps")


async def _informer_roundtrip(cluster: Cluster) -> list[str]:
    client = HttpClient.from_kubeconfig(cluster.kubeconfig)
    events: list[str] = []
    informer = Informer(client, CM, namespace="default", label_selector="seam=yes")
    informer.add_handlers(
        Handlers(
            on_add=lambda o: events.append("add " + o["metadata"]["name"]),
            on_update=lambda old, new: events.append("update " + new["metadata"]["name"]),
            on_delete=lambda o: events.append("delete " + o["metadata"]["name"]),
        )
    )
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "seam", "namespace": "default", "labels": {"seam": "yes"}},
    }
    try:
        await client.create(CM, body)
        async with informer.running():
            assert informer.get("default/seam") is not None
            await client.patch(CM, "seam", {"data": {"x": "1"}}, namespace="default")
            await client.delete(CM, "seam", namespace="default")
            while "delete seam" not in events:
                await asyncio.sleep(0.01)
    finally:
        await client.close()
    return events


def test_informer_over_http(cluster: Cluster) -> None:
    events = asyncio.run(asyncio.wait_for(_informer_roundtrip(cluster), timeout=30))
    assert events == ["add seam", "update seam", "delete seam"]


async def _requests(cluster: Cluster) -> tuple[int, int, int]:
    state = cluster.state_dir / cluster.name
    port = int((state / "port").read_text())
    tls = ssl.create_default_context(cafile=str(state / "ca.crt"))
    url = f"https://127.0.0.1:{port}/api/v1/namespaces"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, ssl=tls) as resp:
            anonymous = resp.status
        async with http.get(url, ssl=tls, headers={"Authorization": "Bearer wrong"}) as resp:
            wrong = resp.status
    unix = aiohttp.UnixConnector(path=str(state / "apiserver.sock"))
    async with (
        aiohttp.ClientSession(connector=unix) as session,
        session.get("http://localhost/api/v1/namespaces") as resp,
    ):
        local = resp.status
    return anonymous, wrong, local


def test_token_required_on_tcp_not_on_the_unix_socket(cluster: Cluster) -> None:
    anonymous, wrong, local = asyncio.run(_requests(cluster))
    assert (anonymous, wrong, local) == (401, 401, 200)

"""The pods/binding subresource (store, LocalClient, HTTP API server) and default tolerations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2 as httpx
import pytest
from aiohttp.test_utils import TestServer

from kubewire.apiserver.server import APIServer
from kubewire.client.http import HttpClient
from kubewire.client.local import LocalClient
from kubewire.errors import Conflict, Invalid, NotFound, StatusError
from kubewire.store import podadmission
from kubewire.store.store import Store
from tests.conftest import kind

POD = kind("pods")


def pod(name: str = "web", **spec: object) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec},
    }


def scheduled(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "PodScheduled")


def test_bind_sets_node_name_and_pod_scheduled(store: Store) -> None:
    created = store.create(POD, pod())
    bound = store.bind("default", "web", "n1", uid=created["metadata"]["uid"])
    assert bound["spec"]["nodeName"] == "n1"
    assert scheduled(bound)["status"] == "True"
    assert int(bound["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert store.get(POD, "default", "web")["spec"]["nodeName"] == "n1"


def test_bind_replaces_an_unschedulable_condition(store: Store) -> None:
    store.create(POD, pod())
    live = store.get(POD, "default", "web")
    live["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}
    ]
    store.update(POD, live, subresource="status")
    cond = scheduled(store.bind("default", "web", "n1"))
    assert cond["status"] == "True" and "reason" not in cond and "message" not in cond


def test_bind_refusals_use_upstream_wording(store: Store) -> None:
    store.create(POD, pod())
    store.bind("default", "web", "n1")
    with pytest.raises(Conflict) as err:
        store.bind("default", "web", "n2")
    assert (
        err.value.message
        == 'Operation cannot be fulfilled on pods/binding "web": pod web is already assigned to node "n1"'
    )
    with pytest.raises(NotFound):
        store.bind("default", "nope", "n1")
    store.create(POD, pod("other"))
    with pytest.raises(Conflict) as err:
        store.bind("default", "other", "n1", uid="not-the-uid")
    assert "Precondition failed: UID in precondition: not-the-uid" in err.value.message
    gated = pod("gated", schedulingGates=[{"name": "wait"}])
    store.create(POD, gated)
    with pytest.raises(Conflict) as err:
        store.bind("default", "gated", "n1")
    assert err.value.message.endswith("pod gated has non-empty .spec.schedulingGates")


async def test_local_client_bind(store: Store) -> None:
    client = LocalClient(store)
    await client.create(POD, pod())
    bound = await client.bind("default", "web", "n1")
    assert bound["spec"]["nodeName"] == "n1"


@pytest.fixture
async def http_client(store: Store) -> AsyncIterator[HttpClient]:
    server = TestServer(APIServer(store, "token").app)
    await server.start_server()
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers={"Authorization": "Bearer token"})
    try:
        yield HttpClient(http)
    finally:
        await http.aclose()
        await server.close()


async def test_binding_over_http(store: Store, http_client: HttpClient) -> None:
    created = await http_client.create(POD, pod())
    bound = await http_client.bind("default", "web", "n1", uid=created["metadata"]["uid"])
    assert bound["spec"]["nodeName"] == "n1" and scheduled(bound)["status"] == "True"
    with pytest.raises(StatusError) as err:
        await http_client.bind("default", "web", "n2")
    assert err.value.code == 409 and err.value.reason == "Conflict"
    assert err.value.message.endswith('pod web is already assigned to node "n1"')
    with pytest.raises(NotFound):
        await http_client.bind("default", "missing", "n1")


async def test_binding_response_and_validation_over_http(store: Store, http_client: HttpClient) -> None:
    await http_client.create(POD, pod())
    path = "/api/v1/namespaces/default/pods/web/binding"
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"}, "target": {"kind": "Node"}}
    with pytest.raises(Invalid) as err:
        await http_client.request("POST", path, body=body)
    assert "target.name: Required value" in err.value.message
    body["metadata"] = {"name": "other"}
    with pytest.raises(StatusError) as bad:
        await http_client.request("POST", path, body=body)
    assert bad.value.message == "name in URL does not match name in Binding object"
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"}, "target": {"name": "n1"}}
    status = await http_client.request("POST", path, body=body)
    assert status == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
    with pytest.raises(StatusError) as method:
        await http_client.request("GET", path)
    assert method.value.code == 405


# ------------------------------------------------------------------ DefaultTolerationSeconds


def test_default_tolerations_added_on_create(store: Store) -> None:
    podadmission.install(store)
    podadmission.install(store)  # idempotent
    created = store.create(POD, pod())
    assert created["spec"]["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
    ]


def test_default_tolerations_respect_existing_ones(store: Store) -> None:
    podadmission.install(store)
    own = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
    created = store.create(POD, pod("a", tolerations=[own]))
    assert [t["key"] for t in created["spec"]["tolerations"]] == [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    assert created["spec"]["tolerations"][0]["tolerationSeconds"] == 5
    everything = store.create(POD, pod("b", tolerations=[{"operator": "Exists"}]))
    assert everything["spec"]["tolerations"] == [{"operator": "Exists"}]
    no_schedule_only = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}
    c = store.create(POD, pod("c", tolerations=[no_schedule_only]))
    assert len(c["spec"]["tolerations"]) == 3  # a NoSchedule toleration does not cover NoExecute


def test_default_tolerations_not_added_on_update(store: Store) -> None:
    store.create(POD, pod())
    podadmission.install(store)
    live = store.get(POD, "default", "web")
    live["metadata"]["labels"] = {"x": "y"}
    updated = store.update(POD, live)
    assert "tolerations" not in updated["spec"]

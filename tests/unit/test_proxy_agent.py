"""The node's kube-proxy loop over a real in-process API: informers in, kernel transactions out.

No kernel and no root: the Proxy runs against a Store through LocalClient, with the fake nft,
iptables and conntrack seams.  Each test replays the scripts the fake received through the
compiler's interpreter (``nft.state_of``), so "what the kernel would hold" is checked against the full
compile of what the API holds — a partial sync must equal a full one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubewire.agents.nodeconfig import NodeConfig
from kubewire.agents.proxy import Proxy
from kubewire.agents.proxyhttp import HealthCheck
from kubewire.api.discovery import ENDPOINT_SLICE
from kubewire.api.netconfig import ClusterNetwork
from kubewire.api.registry import default_registry
from kubewire.api.service import SERVICE
from kubewire.client.local import LocalClient
from kubewire.dataplane.proxy import nft as compiler
from kubewire.errors import NotFound
from kubewire.host.conntrack import FakeConntrack
from kubewire.host.iptables import FakeIptables
from kubewire.host.nft import FakeNft
from kubewire.store.allocators import Allocators
from kubewire.store.store import Store
from tests.unit.kubelet_fakes import wait_until

Obj = dict[str, Any]
NODE = "kp-worker"
NODE_IP = "172.18.0.2"


class Harness:
    def __init__(self, tmp: Path, mode: str = "nftables") -> None:
        self.store = Store(default_registry(), None)
        network = ClusterNetwork(proxy_mode=mode)
        Allocators(network.service_cidrs, network.node_port_range).install(self.store)  # ClusterIPs, NodePorts
        self.client = LocalClient(self.store)
        self.nft = FakeNft()
        self.conntrack = FakeConntrack()
        self.iptables = FakeIptables()
        config = NodeConfig("kp", NODE, "kw-kp-node-x", (NODE_IP,), (16,), "zone-a", tmp)
        self.proxy = Proxy(self.client, config, network, self.nft, self.conntrack, self.iptables)
        self.checks: list[list[HealthCheck]] = []
        self.tasks: list[asyncio.Task[None]] = []

        async def record(checks: list[HealthCheck]) -> None:  # no listeners in unit tests
            self.checks.append(list(checks))

        self.proxy.http.update = record  # type: ignore[method-assign]

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(inf.run()) for inf in self.proxy.informers()]
        for inf in self.proxy.informers():
            await inf.synced.wait()
        self.proxy.start_watching()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def seen(self, kind_informer: str, name: str, rv: str) -> None:
        """Wait until the informer holds ``name`` at resourceVersion ``rv`` (or its deletion when rv is "")."""
        inf = self.proxy.services if kind_informer == "svc" else self.proxy.slices

        def current() -> bool:
            obj = next((o for o in inf.list() if o["metadata"]["name"] == name), None)
            return obj is None if not rv else obj is not None and obj["metadata"]["resourceVersion"] == rv

        await wait_until(current, 5, f"{kind_informer} {name}@{rv or 'deleted'}")

    async def service(self, name: str, port: int = 80, protocol: str = "TCP", **spec: Any) -> Obj:
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "p", "port": port, "protocol": protocol, "targetPort": 8080}], **spec},
        }
        out = await self.client.create(SERVICE, body)
        await self.seen("svc", name, out["metadata"]["resourceVersion"])
        return out

    async def endpoints(self, svc: str, ips: list[str], protocol: str = "TCP", node: str = NODE) -> Obj:
        body = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-x", "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": "p", "port": 8080, "protocol": protocol}],
            "endpoints": [
                {
                    "addresses": [ip],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "nodeName": node,
                }
                for ip in ips
            ],
        }
        try:
            current = await self.client.get(ENDPOINT_SLICE, f"{svc}-x", "default")
        except NotFound:
            out = await self.client.create(ENDPOINT_SLICE, body)
        else:
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            out = await self.client.update(ENDPOINT_SLICE, body)
        await self.seen("slice", f"{svc}-x", out["metadata"]["resourceVersion"])
        return out

    def kernel(self) -> compiler.NftState:
        """The table the recorded scripts leave, replayed in order (as the kernel would apply them)."""
        state = compiler.NftState()
        for _, script in self.nft.scripts:
            state = compiler.state_of(script, state)
        return state

    def expected(self) -> compiler.NftState:
        return compiler.state_of(self.proxy.snapshot(4)[0])


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


async def test_first_sync_is_full_then_changes_are_element_deltas_equal_to_a_full_load(h: Harness) -> None:
    web = await h.service("web")
    await h.endpoints("web", ["10.244.1.2", "10.244.1.3"])
    await h.proxy.sync(False)
    assert len(h.nft.scripts) == 1 and "delete table ip kubewire-proxy" in h.nft.scripts[0][1]
    assert h.kernel().tables == h.expected().tables
    vip = web["spec"]["clusterIP"]
    assert f"{vip} . tcp . 80" in h.kernel().table().elements["service_ips"]

    await h.endpoints("web", ["10.244.1.2", "10.244.1.4", "10.244.1.5"])
    await h.service("api", port=8443)
    await h.proxy.sync(False)
    delta = h.nft.scripts[-1][1]
    assert "delete table" not in delta and "add element" in delta
    assert h.kernel().tables == h.expected().tables

    await h.proxy.sync(False)  # nothing changed: nothing sent
    assert len(h.nft.scripts) == 2
    assert h.proxy.metrics.sync.count == 3 and h.proxy.metrics.failures == 0


async def test_a_failed_transaction_forces_a_full_sync_next(h: Harness) -> None:
    await h.service("web")
    await h.endpoints("web", ["10.244.1.2"])
    await h.proxy.sync(False)
    await h.endpoints("web", ["10.244.1.3"])
    h.nft.fail_next = "Error: Could not process rule: No such file or directory"
    with pytest.raises(Exception, match="No such file"):
        await h.proxy.sync(False)
    assert h.proxy.metrics.failures == 1
    await h.proxy.sync(False)
    assert "delete table ip kubewire-proxy" in h.nft.scripts[-1][1]  # the whole table again
    assert h.kernel().tables == h.expected().tables


async def test_periodic_resync_repairs_without_replacing_the_table(h: Harness) -> None:
    await h.service("web", sessionAffinity="ClientIP")
    await h.endpoints("web", ["10.244.1.2", "10.244.1.3"])
    await h.proxy.sync(False)
    await h.proxy.sync(True)
    resync = h.nft.scripts[-1][1]
    # Flushes and refills rather than deleting the table, so the affinity map's entries survive.
    assert "delete table" not in resync and "flush" in resync
    assert h.kernel().tables == h.expected().tables


async def test_removed_udp_endpoint_clears_its_conntrack_entries(h: Harness) -> None:
    dns = await h.service("dns", port=53, protocol="UDP")
    await h.endpoints("dns", ["10.244.1.2", "10.244.1.3"], protocol="UDP")
    await h.proxy.sync(False)
    assert h.conntrack.cleared == []
    await h.endpoints("dns", ["10.244.1.3"], protocol="UDP")
    await h.proxy.sync(False)
    assert h.conntrack.cleared == [(dns["spec"]["clusterIP"], 53, "10.244.1.2")]


async def test_udp_service_getting_its_first_endpoint_clears_rejected_flows(h: Harness) -> None:
    dns = await h.service("dns", port=53, protocol="UDP")
    await h.endpoints("dns", [], protocol="UDP")
    await h.proxy.sync(False)
    await h.endpoints("dns", ["10.244.1.2"], protocol="UDP")
    await h.proxy.sync(False)
    assert h.conntrack.cleared == [(dns["spec"]["clusterIP"], 53, "")]


async def test_health_checks_follow_local_endpoints(h: Harness) -> None:
    lb = await h.service("lb", type="LoadBalancer", externalTrafficPolicy="Local")
    port = lb["spec"]["healthCheckNodePort"]
    await h.endpoints("lb", ["10.244.1.2"], node=NODE)
    await h.proxy.sync(False)
    assert h.checks[-1] == [HealthCheck("default", "lb", port, 1)]
    await h.endpoints("lb", ["10.244.2.2"], node="elsewhere")
    await h.proxy.sync(False)
    assert h.checks[-1] == [HealthCheck("default", "lb", port, 0)]
    await h.client.delete(SERVICE, "lb", "default")
    await h.seen("svc", "lb", "")
    await h.proxy.sync(False)
    assert h.checks[-1] == []


async def test_iptables_mode_restores_the_whole_state_every_sync(tmp_path: Path) -> None:
    h = Harness(tmp_path, mode="iptables")
    await h.start()
    try:
        await h.service("web")
        await h.endpoints("web", ["10.244.1.2", "10.244.1.3"])
        await h.proxy.sync(False)
        await h.endpoints("web", ["10.244.1.2"])
        await h.proxy.sync(False)
        assert h.nft.scripts == [] and [f for f, _ in h.iptables.inputs] == [4, 4]
        last = h.iptables.inputs[-1][1]
        assert "KUBE-SERVICES" in last and "10.244.1.2:8080" in last and "10.244.1.3:8080" not in last
    finally:
        await h.stop()


async def test_only_recorded_changes_are_reread_and_a_relabelled_slice_moves(h: Harness) -> None:
    await h.service("a")
    b = await h.service("b")
    await h.endpoints("a", ["10.244.1.2"])
    await h.proxy.sync(False)
    # The slice "a-x" now says it belongs to b: both Services change.
    sl = await h.client.get(ENDPOINT_SLICE, "a-x", "default")
    sl["metadata"]["labels"]["kubernetes.io/service-name"] = "b"
    rv = (await h.client.update(ENDPOINT_SLICE, sl))["metadata"]["resourceVersion"]
    await h.seen("slice", "a-x", rv)
    await h.proxy.sync(False)
    assert h.proxy.caches[4].previous.keys() == {"default/a", "default/b"}
    assert h.kernel().tables == h.expected().tables
    backends = h.kernel().table().elements["backends_tcp"]
    assert backends == {f"{b['spec']['clusterIP']} . 80 . 0": "10.244.1.2 . 8080"}
    # Nothing recorded since: the next sync reads no Service again and sends nothing.
    await h.proxy.sync(False)
    assert h.proxy.caches[4].previous == {}

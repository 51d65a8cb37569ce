"""Property: after any sequence of Service, Pod and Node changes and control-plane restarts, the
EndpointSlices hold exactly what the pods imply, and no Service IP or NodePort is held twice.

The oracle below is written from the upstream rules (which pods belong, the ready / serving /
terminating conditions, named target ports resolved per pod), independently of the controller.
Everything runs for real: a durable Store on disk, the API server's allocators, the controller
manager over the in-process client; a restart closes the store and builds everything again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubewire.api.netconfig import ClusterNetwork
from kubewire.api.registry import default_registry
from kubewire.client.local import LocalClient
from kubewire.controllers.endpointslice import EndpointSliceController
from kubewire.controllers.runtime import Manager
from kubewire.errors import StatusError
from kubewire.store.allocators import Allocators
from kubewire.store.store import Store
from tests.conftest import kind

SVC, POD, SLICE, NODE = kind("services"), kind("pods"), kind("endpointslices"), kind("nodes")
NET = ClusterNetwork(ip_family="dual", service_cidr_v4="10.96.0.0/28", node_port_range=(30000, 30009))
MAX_PER_SLICE = 2  # small, so that several slices per Service are exercised
NS = "default"
Obj = dict[str, Any]

services = st.sampled_from(["s0", "s1", "s2"])
pods = st.sampled_from(["p0", "p1", "p2", "p3", "p4", "p5"])
apps = st.sampled_from(["a", "b"])
ops = st.one_of(
    st.tuples(
        st.just("service"),
        services,
        st.one_of(st.none(), apps),  # None: a Service without a selector
        st.sampled_from(["ClusterIP", "NodePort", "headless"]),
        st.sampled_from(["SingleStack", "PreferDualStack"]),
        st.sampled_from([8080, "http"]),
        st.booleans(),  # publishNotReadyAddresses
        st.one_of(st.none(), st.integers(30000, 30009)),  # a requested nodePort
    ),
    st.tuples(st.just("delete-service"), services),
    st.tuples(st.just("pod"), pods, apps, st.sampled_from([8080, 9090]), st.sampled_from(["n0", "n1"])),
    st.tuples(st.just("ready"), pods, st.booleans()),
    st.tuples(st.just("phase"), pods, st.sampled_from(["Running", "Succeeded"])),
    st.tuples(st.just("delete-pod"), pods, st.booleans()),  # graceful (stays terminating) or at once
    st.tuples(st.just("node"), st.sampled_from(["n0", "n1"]), st.sampled_from(["z1", "z2"])),
    st.tuples(st.just("restart")),
)


class Plane:
    """A store on disk, its allocators and the EndpointSlice controller; restartable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: Store
        self.manager: Manager

    async def start(self) -> None:
        self.store = Store(default_registry(), self.path)
        Allocators(NET.service_cidrs, NET.node_port_range).install(self.store)
        self.client = LocalClient(self.store)
        controller = EndpointSliceController(max_endpoints_per_slice=MAX_PER_SLICE)
        self.manager = Manager(self.client, self.store.registry, [controller])
        await self.manager.start()

    async def stop(self) -> None:
        await self.manager.stop()
        self.store.close()


def _pod_ip(name: str) -> tuple[str, str]:
    n = int(name[1:]) + 10
    return f"10.244.0.{n}", f"fd00:10:244::{n:x}"


async def _apply(plane: Plane, op: tuple[Any, ...]) -> None:
    c = plane.client
    if op[0] == "service":
        _, name, app, type_, policy, target, pna, node_port = op
        port: Obj = {"name": "http", "port": 80, "targetPort": target, "protocol": "TCP"}
        spec: Obj = {"ports": [port], "ipFamilyPolicy": policy, "publishNotReadyAddresses": pna}
        if app is not None:
            spec["selector"] = {"app": app}
        if type_ == "headless":
            spec["clusterIP"] = "None"
        else:
            spec["type"] = type_
            if type_ == "NodePort" and node_port is not None:
                port["nodePort"] = node_port
        obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS}, "spec": spec}
        try:
            live = await c.get(SVC, name, NS)
        except StatusError:
            await c.create(SVC, obj)
            return
        live_spec = live["spec"]
        if ("clusterIP" in spec) != (live_spec.get("clusterIP") == "None"):
            return  # changing headless-ness is forbidden upstream; not what this property is about
        if policy == "SingleStack":
            spec.pop("ipFamilyPolicy")  # a downgrade needs clusterIPs trimmed too; keep the live policy
        live_spec.update({k: v for k, v in spec.items() if k != "clusterIP"})
        if app is None:
            live_spec.pop("selector", None)
        await c.update(SVC, live)
    elif op[0] == "delete-service":
        await c.delete(SVC, op[1], NS)
    elif op[0] == "pod":
        _, name, app, number, node = op
        v4, v6 = _pod_ip(name)
        container = {"name": "c", "image": "echo", "ports": [{"name": "http", "containerPort": number}]}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
            "spec": {"containers": [container], "nodeName": node},
        }
        created = await c.create(POD, pod)
        created["status"] = {"phase": "Running", "podIP": v4, "podIPs": [{"ip": v4}, {"ip": v6}]}
        await c.update(POD, created, subresource="status")
    elif op[0] == "ready":
        live = await c.get(POD, op[1], NS)
        status = live.setdefault("status", {})
        cond = {"type": "Ready", "status": "True" if op[2] else "False"}
        status["conditions"] = [cond]
        await c.update(POD, live, subresource="status")
    elif op[0] == "phase":
        live = await c.get(POD, op[1], NS)
        live.setdefault("status", {})["phase"] = op[2]
        await c.update(POD, live, subresource="status")
    elif op[0] == "delete-pod":
        await c.delete(POD, op[1], NS, grace_period=None if op[2] else 0)
    elif op[0] == "node":
        labels = {"topology.kubernetes.io/zone": op[2]}
        try:
            live = await c.get(NODE, op[1])
            live["metadata"]["labels"] = labels
            await c.update(NODE, live)
        except StatusError:
            await c.create(NODE, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": op[1], "labels": labels}})


def _family(ip: str) -> str:
    return "IPv4" if ipaddress.ip_address(ip).version == 4 else "IPv6"


def _expected(store: Store) -> dict[tuple[str, str], set[tuple[Any, ...]]]:
    """(service, family) -> endpoints (address, ready, serving, terminating, node, zone, ports)."""
    zones = {
        n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get("topology.kubernetes.io/zone")
        for n in store.list_objects(NODE)
    }
    out: dict[tuple[str, str], set[tuple[Any, ...]]] = {}
    for svc in store.list_objects(SVC):
        selector = svc["spec"].get("selector")
        if not selector:
            continue
        name = svc["metadata"]["name"]
        for family in svc["spec"].get("ipFamilies") or []:
            endpoints = out.setdefault((name, family), set())
            for pod in store.list_objects(POD):
                labels = pod["metadata"].get("labels") or {}
                status = pod.get("status") or {}
                if any(labels.get(k) != v for k, v in selector.items()) or status.get("phase") in (
                    "Succeeded",
                    "Failed",
                ):
                    continue
                ips = [p["ip"] for p in status.get("podIPs") or [] if _family(p["ip"]) == family]
                if not ips:
                    continue
                ready_cond = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
                terminating = bool(pod["metadata"].get("deletionTimestamp"))
                pna = bool(svc["spec"].get("publishNotReadyAddresses"))
                node = pod["spec"].get("nodeName")
                if node not in zones and not pna:
                    continue  # upstream skips pods whose Node is unknown (and retries the Service)
                ready = pna or (ready_cond and not terminating)
                serving = ready_cond
                ports = []
                for sp in svc["spec"]["ports"]:
                    target = sp.get("targetPort", sp["port"])
                    if isinstance(target, str):
                        found = [
                            p["containerPort"]
                            for ctr in pod["spec"]["containers"]
                            for p in ctr.get("ports") or []
                            if p.get("name") == target and p.get("protocol", "TCP") == sp.get("protocol", "TCP")
                        ]
                        if not found:
                            continue
                        target = found[0]
                    ports.append((sp.get("name", ""), target, sp.get("protocol", "TCP")))
                endpoints.add((ips[0], ready, serving, terminating, node, zones.get(node), tuple(sorted(ports))))
    return out


def _actual(store: Store) -> dict[tuple[str, str], set[tuple[Any, ...]]]:
    out: dict[tuple[str, str], set[tuple[Any, ...]]] = {}
    seen: Counter[tuple[str, str, str]] = Counter()
    for sl in store.list_objects(SLICE):
        labels = sl["metadata"].get("labels") or {}
        if labels.get("endpointslice.kubernetes.io/managed-by") != "endpointslice-controller.k8s.io":
            continue
        service = labels["kubernetes.io/service-name"]
        assert len(sl.get("endpoints") or []) <= MAX_PER_SLICE
        ports = tuple(
            sorted((p.get("name", ""), p.get("port"), p.get("protocol", "TCP")) for p in sl.get("ports") or [])
        )
        bucket = out.setdefault((service, sl["addressType"]), set())
        for ep in sl.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            address = ep["addresses"][0]
            seen[(service, sl["addressType"], address)] += 1
            bucket.add(
                (
                    address,
                    bool(cond.get("ready")),
                    bool(cond.get("serving")),
                    bool(cond.get("terminating")),
                    ep.get("nodeName"),
                    ep.get("zone"),
                    ports,
                )
            )
    duplicates = [k for k, n in seen.items() if n > 1]
    assert not duplicates, f"endpoints listed in two slices: {duplicates}"
    return out


def _check_allocations(store: Store) -> None:
    ips: Counter[str] = Counter()
    node_ports: Counter[tuple[int, str]] = Counter()
    for svc in store.list_objects(SVC):
        spec = svc["spec"]
        for ip in spec.get("clusterIPs") or []:
            if ip != "None":
                ips[ip] += 1
                net = NET.service_cidr_v4 if _family(ip) == "IPv4" else NET.service_cidr_v6
                assert ipaddress.ip_address(ip) in ipaddress.ip_network(net)
        for p in spec.get("ports") or []:
            if p.get("nodePort"):
                node_ports[(p["nodePort"], p.get("protocol", "TCP"))] += 1
    assert all(n == 1 for n in ips.values()), ips
    assert all(n == 1 for n in node_ports.values()), node_ports


def _check(store: Store) -> None:
    _check_allocations(store)
    expected = {k: v for k, v in _expected(store).items()}
    actual = _actual(store)
    for key in set(expected) | set(actual):
        assert actual.get(key, set()) == expected.get(key, set()), key


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(ops, min_size=1, max_size=25))
def test_slices_match_pods_and_allocations_stay_unique(tmp_path: Path, steps: list[tuple[Any, ...]]) -> None:
    async def scenario(path: Path) -> None:
        plane = Plane(path)
        await plane.start()
        try:
            for op in steps:
                if op[0] == "restart":
                    await plane.manager.wait_idle()
                    _check(plane.store)
                    await plane.stop()
                    await plane.start()
                    continue
                # refused (taken port, missing pod, …): refusals are part of the sequence
                with contextlib.suppress(StatusError):
                    await _apply(plane, op)
            await plane.manager.wait_idle()
            _check(plane.store)
        finally:
            await plane.stop()

    db = tmp_path / f"store-{len(list(tmp_path.iterdir()))}.db"
    asyncio.run(scenario(db))

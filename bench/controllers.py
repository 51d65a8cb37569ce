"""Benchmark the EndpointSlice controller: 1,000 Services × 10 pods, in the control plane's shape.

A durable store on disk with the API server's allocators, and the controller manager's
EndpointSlice controller over the in-process client — exactly how ``kubewire up`` runs them.
Prints:

- initial convergence: time from the first write until every Service has its slices;
- readiness → slice latency, p50/p99: a pod's Ready condition flipped through the API, until a
  watcher on EndpointSlices sees the slice carrying the new condition (one pod at a time);
- restart: the control plane stopped, 10 % of the pods' readiness changed while it is down, then
  store, allocators and controllers started again: time until the slices match again, and how
  many slice writes that took (an idle restart should write nothing).

    .venv/bin/python bench/controllers.py [--services 1000] [--pods-per-service 10] [--flips 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kubewire.api.netconfig import ClusterNetwork
from kubewire.api.registry import default_registry
from kubewire.client.local import LocalClient
from kubewire.controllers.endpointslice import EndpointSliceController
from kubewire.controllers.runtime import Manager
from kubewire.store.allocators import Allocators
from kubewire.store.store import Store

REG = default_registry()
SVC, POD, SLICE, NODE = (REG.lookup(r) for r in ("services", "pods", "endpointslices", "nodes"))
assert SVC is not None and POD is not None and SLICE is not None and NODE is not None
NODES = 3
NET = ClusterNetwork()
Obj = dict[str, Any]


def service(i: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{i}", "namespace": "default"},
        "spec": {"selector": {"app": f"app-{i}"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def pod(i: int, j: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"app-{i}-{j}", "namespace": "default", "labels": {"app": f"app-{i}"}},
        "spec": {
            "nodeName": f"node-{j % NODES}",
            "containers": [{"name": "c", "image": "echo", "ports": [{"name": "http", "containerPort": 8080}]}],
        },
    }


def pod_ip(i: int, j: int) -> str:
    n = i * 16 + j + 1
    return f"10.244.{n // 250}.{n % 250 + 1}"


def ready_status(ip: str, ready: bool) -> Obj:
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }


class Plane:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def start(self) -> float:
        t0 = time.perf_counter()
        self.store = Store(REG, self.path)
        Allocators(NET.service_cidrs, NET.node_port_range).install(self.store)
        self.client = LocalClient(self.store)
        self.manager = Manager(self.client, REG, [EndpointSliceController(NET.max_endpoints_per_slice)])
        await self.manager.start()
        return time.perf_counter() - t0

    async def stop(self) -> None:
        await self.manager.stop()
        self.store.close()

    def slice_writes(self) -> int:
        return self.store.rv


def endpoint_ready(slices: list[Obj], ip: str) -> bool | None:
    for sl in slices:
        for ep in sl.get("endpoints") or []:
            if ip in ep.get("addresses", []):
                return bool((ep.get("conditions") or {}).get("ready"))
    return None


async def set_ready(client: LocalClient, name: str, ip: str, ready: bool) -> None:
    live = await client.get(POD, name, "default")
    live["status"] = ready_status(ip, ready)
    await client.update(POD, live, subresource="status")


async def main(services: int, per: int, flips: int) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        plane = Plane(Path(tmp) / "store.db")
        await plane.start()
        c = plane.client
        for n in range(NODES):
            labels = {"topology.kubernetes.io/zone": f"zone-{n}"}
            await c.create(
                NODE, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{n}", "labels": labels}}
            )
        t0 = time.perf_counter()
        for i in range(services):
            await c.create(SVC, service(i))
            for j in range(per):
                created = await c.create(POD, pod(i, j))
                created["status"] = ready_status(pod_ip(i, j), True)
                await c.update(POD, created, subresource="status")
        t_written = time.perf_counter() - t0
        await plane.manager.wait_idle(timeout=600)
        t_converged = time.perf_counter() - t0
        slices = plane.store.list_objects(SLICE)
        print(f"objects: {services} Services, {services * per} pods -> {len(slices)} EndpointSlices")
        print(f"initial: writes done in {t_written:.2f} s, slices converged at {t_converged:.2f} s")

        # readiness flips, one at a time, timed to the slice watch event
        latencies: list[float] = []
        watch = c.watch(SLICE, "default", str(plane.store.rv))
        ready: dict[tuple[int, int], bool] = {}
        for _ in range(flips):
            i, j = rng.randrange(services), rng.randrange(per)
            want = not ready.get((i, j), True)
            ready[(i, j)] = want
            ip = pod_ip(i, j)
            start = time.perf_counter()
            await set_ready(c, f"app-{i}-{j}", ip, want)
            async for ev in watch:
                if endpoint_ready([ev.object], ip) is want:
                    latencies.append(time.perf_counter() - start)
                    break
        await watch.aclose()  # type: ignore[attr-defined]
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(f"readiness -> slice: p50 {p50:.2f} ms, p99 {p99:.2f} ms over {len(latencies)} flips")

        # idle restart
        await plane.stop()
        start_s = await plane.start()
        rv0 = plane.slice_writes()
        t = time.perf_counter()
        await plane.manager.wait_idle(timeout=600)
        print(
            f"restart (no changes): started in {start_s:.2f} s, converged {time.perf_counter() - t:.2f} s later, "
            f"{plane.slice_writes() - rv0} writes"
        )

        # restart after 10 % of the pods changed readiness while the controllers were down
        await plane.manager.stop()
        changed = rng.sample([(i, j) for i in range(services) for j in range(per)], services * per // 10)
        for i, j in changed:
            want = not ready.get((i, j), True)
            ready[(i, j)] = want
            await set_ready(plane.client, f"app-{i}-{j}", pod_ip(i, j), want)
        plane.store.close()
        t = time.perf_counter()
        await plane.start()
        rv0 = plane.slice_writes()
        await plane.manager.wait_idle(timeout=600)
        total = time.perf_counter() - t
        slices = plane.store.list_objects(SLICE)
        wrong = sum(1 for (i, j), want in ready.items() if endpoint_ready(slices, pod_ip(i, j)) is not want)
        print(
            f"restart after {len(changed)} readiness changes: converged in {total:.2f} s "
            f"({plane.slice_writes() - rv0} slice writes, {wrong} endpoints wrong)"
        )
        await plane.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--pods-per-service", type=int, default=10)
    ap.add_argument("--flips", type=int, default=300)
    args = ap.parse_args()
    asyncio.run(main(args.services, args.pods_per_service, args.flips))

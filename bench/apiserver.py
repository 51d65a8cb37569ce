"""Benchmark the API server over HTTP: 10,000 Services and 10,000 EndpointSlices.

Starts a private cluster with ``kubewire up`` (temporary state directory), writes the objects
with a bounded number of concurrent HTTPS clients, and prints: objects per second, p50/p99 write
latency under that load and for a single client writing one object at a time, the control plane's memory (RSS), how long after the last acknowledged write a watcher
sees the last event, and the time to list all Services (JSON and as kubectl's Table).

    .venv/bin/python bench/apiserver.py [--count 10000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def service(i: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{i}", "namespace": "default", "labels": {"app": f"app-{i % 100}"}},
        "spec": {"selector": {"app": f"app-{i}"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def slice_(i: int) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"svc-{i}-abcde",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": f"svc-{i}"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [f"10.244.{(i * 10 + j) // 250 % 250}.{(i * 10 + j) % 250 + 1}"],
                "conditions": {"ready": True},
                "nodeName": "node-1",
            }
            for j in range(10)
        ],
    }


async def run(count: int, concurrency: int) -> dict[str, float]:
    state = Path(tempfile.mkdtemp(prefix="kubewire-bench-"))
    env = {**os.environ, "KUBEWIRE_STATE_DIR": str(state)}
    kw = [sys.executable, "-m", "kubewire.cli.main", "--name", "bench"]
    subprocess.run([*kw, "up"], env=env, check=True, capture_output=True)
    try:
        cdir = state / "bench"
        base = f"https://127.0.0.1:{(cdir / 'port').read_text().strip()}"
        headers = {
            "Authorization": f"Bearer {(cdir / 'token').read_text().strip()}",
            "Content-Type": "application/json",
        }
        tls = ssl.create_default_context(cafile=str(cdir / "ca.crt"))
        pid = int((cdir / "controlplane.pid").read_text())
        rss_before = rss_mib(pid)
        conn = aiohttp.TCPConnector(ssl=tls, limit=concurrency)
        async with aiohttp.ClientSession(connector=conn, headers=headers) as http:
            last_name = f"svc-{count - 1}-abcde"
            watch_seen = asyncio.get_running_loop().create_future()

            async def watcher() -> None:
                url = f"{base}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?watch=true&resourceVersion=1"
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
                    async for line in resp.content:
                        if last_name.encode() in line:
                            watch_seen.set_result(time.perf_counter())
                            return

            watch_task = asyncio.create_task(watcher())
            latencies: list[float] = []
            queue: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()
            for i in range(count):
                queue.put_nowait((f"{base}/api/v1/namespaces/default/services", service(i)))
            for i in range(count):
                queue.put_nowait((f"{base}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", slice_(i)))

            async def worker() -> None:
                while not queue.empty():
                    url, body = queue.get_nowait()
                    t0 = time.perf_counter()
                    async with http.post(url, data=json.dumps(body)) as resp:
                        await resp.read()
                        if resp.status != 201:
                            raise RuntimeError(f"{resp.status}: {await resp.text()}")
                    latencies.append(time.perf_counter() - t0)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            end = time.perf_counter()
            seen = await asyncio.wait_for(watch_seen, timeout=120)
            watch_task.cancel()
            list_times = []
            for _ in range(3):
                t0 = time.perf_counter()
                async with http.get(f"{base}/api/v1/namespaces/default/services") as resp:
                    data = await resp.read()
                list_times.append(time.perf_counter() - t0)
            assert data.count(b'"kind":"Service"') >= 0
            t0 = time.perf_counter()
            async with http.get(
                f"{base}/api/v1/namespaces/default/services",
                headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
            ) as resp:
                await resp.read()
            table_time = time.perf_counter() - t0
            serial: list[float] = []
            for i in range(500):  # one client, one request at a time: latency without queueing
                body = json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": f"serial-{i}"},
                        "data": {"i": str(i)},
                    }
                )
                t0 = time.perf_counter()
                async with http.post(f"{base}/api/v1/namespaces/default/configmaps", data=body) as resp:
                    await resp.read()
                serial.append(time.perf_counter() - t0)
            serial.sort()
        latencies.sort()
        return {
            "objects": 2 * count,
            "objects_per_second": 2 * count / (end - start),
            "write_p50_ms": statistics.median(latencies) * 1000,
            "write_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "serial_write_p50_ms": statistics.median(serial) * 1000,
            "serial_write_p99_ms": serial[int(len(serial) * 0.99)] * 1000,
            "rss_before_mib": rss_before,
            "rss_after_mib": rss_mib(pid),
            "watch_last_event_after_last_ack_ms": max(0.0, seen - end) * 1000,
            "list_services_json_s": min(list_times),
            "list_services_table_s": table_time,
        }
    finally:
        subprocess.run([*kw, "down"], env=env, check=False, capture_output=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    result = asyncio.run(run(args.count, args.concurrency))
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k.ljust(width)}  {v:.3f}" if isinstance(v, float) else f"{k.ljust(width)}  {v}")


if __name__ == "__main__":
    main()

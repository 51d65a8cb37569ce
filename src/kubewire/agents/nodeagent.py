"""The node agent process: the kubelet of one node, run inside that node's network namespace.

``kubewire up`` starts one per node (``kubewire node-agent NAME``, hidden).  It reaches the API
server over the control plane's Unix socket, so cutting the node's fabric link never cuts its
management path; ``kubewire node stop`` freezes the process instead.  SIGTERM stops it and leaves
the pods' processes running for the next agent to adopt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from pathlib import Path

from kubewire.agents.kubelet.kubelet import Kubelet
from kubewire.agents.nodeconfig import NodeConfig
from kubewire.agents.proxy import Proxy
from kubewire.api.netconfig import ClusterNetwork
from kubewire.client.http import HttpClient
from kubewire.host import process
from kubewire.host.netlink import Iproute
from kubewire.host.nft import default_nft

log = logging.getLogger("kubewire.nodeagent")


API_WAIT = 60.0  # how long an agent waits for its control plane to serve


async def wait_for_api(state_dir: Path, timeout: float = API_WAIT) -> None:
    """Agents start beside the control plane: wait until it says it serves (its ready file)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (state_dir / "ready").exists():
        if loop.time() > deadline:
            raise TimeoutError(f"the control plane in {state_dir} did not become ready in {timeout:.0f}s")
        await asyncio.sleep(0.02)


def enable_forwarding() -> None:
    """The node routes between its pods and its peers.  Only ever called here, in the agent process,
    which ``kubewire up`` started inside the node's namespace: /proc/sys/net is that namespace's."""
    for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
        with contextlib.suppress(OSError), open(path, "w") as f:
            f.write("1")


async def run(state_dir: Path, node: str, lease_interval: float = 10.0) -> None:
    config = NodeConfig.load(state_dir, node)
    if process.current_netns_is(config.netns):
        enable_forwarding()
    else:
        raise RuntimeError(f"the node agent of {node} must run inside {config.netns}")
    await wait_for_api(state_dir)
    network = ClusterNetwork.from_dict(json.loads((state_dir / "network.json").read_text()))
    client = HttpClient.from_socket(state_dir / "apiserver.sock", field_manager="kubelet")
    kubelet = Kubelet(client, config, network, Iproute(), lease_interval=lease_interval)
    proxy = Proxy(client, config, network, default_nft())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    proxy_task = asyncio.create_task(run_proxy(proxy, kubelet.ready))
    try:
        await kubelet.run(stop)
    finally:
        proxy_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await proxy_task
        await client.close()


async def run_proxy(proxy: Proxy, after: asyncio.Event) -> None:
    """The node's kube-proxy beside its kubelet: it starts once the kubelet is ready (registration
    comes first at start-up, as with kind's kube-proxy pods), syncs once its informers are current,
    then on every change."""
    await after.wait()
    tasks = [asyncio.create_task(inf.run()) for inf in proxy.informers()]
    try:
        for inf in proxy.informers():
            await inf.synced.wait()
        proxy.start_watching()
        await proxy.http.start()
        await proxy.runner.loop()
    finally:
        await proxy.http.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def main(state_dir: Path, node: str, settings: dict[str, object]) -> int:
    """The process entry: heartbeats every fifth of the grace period (at most 10 s, the kubelet's)."""
    grace = float(str(settings.get("nodeMonitorGracePeriod") or 50.0))
    asyncio.run(run(state_dir, node, lease_interval=min(10.0, max(0.5, grace / 5))))
    return 0

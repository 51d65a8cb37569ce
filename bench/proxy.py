"""Service proxy benchmark: kubewire's flat nftables layout beside upstream's iptables mode.

For 100, 1,000 and 10,000 Services × 10 endpoints (one ClusterIP port each), in each mode —
``nftables`` (kubewire's compiler) and upstream's iptables mode under both iptables backends,
``iptables-nft-restore`` (Debian's default ``iptables-restore``) and ``iptables-legacy-restore``:

- full sync: compile time (``nft.Compiled(snapshot).full()`` / ``iptables.restore_input(snapshot,
  saved)``) and kernel apply time (libnftables resident in the process, as the node agent applies
  it / ``iptables-restore --noflush``), separately;
- one-Service change (one Service's 10 endpoints replaced): nftables compiles an element delta with
  ``Compiled.update(new, changed={"ns/name"})`` and applies it through the resident libnftables;
  each change is followed by one more applied with a new ``nft -f -`` process, for comparison (the
  agent's fallback when the library does not load); iptables does what
  upstream's full sync does: ``iptables-save``, a full ``restore_input`` and ``iptables-restore``
  (the compiler has no partial sync); the median of ``--changes`` changes, fewer once they took
  ``--change-budget`` seconds.  Every ``nft -f`` / ``iptables-restore`` is bounded by
  ``--apply-timeout`` (iptables-nft needs ~6 s for 1,000 Services here and grows faster than
  linearly, so at 10,000 it is cut off and reported as ``>60``);
- memory: the RSS growth of the process holding the compiled state (the ``Compiled`` object; the
  restore text), rough, and the kernel side as text: ``nft list table`` / ``iptables-save`` bytes;
- first-packet latency: ``socket.connect`` times (SYN to SYN-ACK) of ``--conns`` fresh TCP
  connections from a client namespace to the ClusterIP:80 of one real Service, whose 10 endpoints
  are 10 listening ports of one asyncio process in a pod namespace, DNATed by the node namespace;
  beside it the same straight to one endpoint through the same node, and, before any rule is
  loaded, that direct path through the empty node (the floor).

Topology, per mode and size, all fresh and always deleted (``kw-bench-px-<pid>-…``)::

    client 172.19.0.2/24 ──veth── 172.19.0.1 node 10.244.0.1 ──veth── 10.244.0.2/24 pod

The rules live in the node namespace (ip_forward on); compile and apply run in a worker process
inside it, as a node agent would, so its RSS is clean and its ``nft`` / ``iptables-restore`` act
on that namespace only.  All other Services' endpoints are unroutable dummy addresses: only the
rule count matters.  The measured Service sorts last, so its iptables ``KUBE-SERVICES`` rule is
the last one reached (upstream's order is arbitrary: on average half the scan).  Needs root.

    sudo .venv/bin/python bench/proxy.py [--sizes 100,1000,10000] [--modes nftables,iptables-nft,iptables-legacy]
        [--conns 500] [--changes 3] [--change-budget 20] [--apply-timeout 60] [--timeout 240]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import ipaddress
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _shared
from _shared import Timeout

PREFIX = f"kw-bench-px-{os.getpid()}"
NODE_IP, CLIENT_IP, POD_GW, POD_IP = "172.19.0.1", "172.19.0.2", "10.244.0.1", "10.244.0.2"
POD_CIDR = "10.244.0.0/16"
PORTS = tuple(range(8080, 8090))  # the measured Service's 10 endpoints: ports of one process
CLUSTER_IPS = ipaddress.IPv4Address("10.96.0.1")  # Service i gets CLUSTER_IPS + i
DUMMY_EPS = ipaddress.IPv4Address("10.248.0.0")  # unroutable endpoints of the other Services
CHANGE_EPS = ipaddress.IPv4Address("10.252.0.0")  # the changed Service's new endpoints
TARGET = ("zz-bench", "target")  # sorts after every bench/svc-NNNNN
# mode -> (row label, topology tag, iptables-save, iptables-restore); nftables uses nft.
MODES = {
    "nftables": ("nftables", "nft", "", ""),
    "iptables-nft": ("ipt-nft", "iptn", "iptables-nft-save", "iptables-nft-restore"),
    "iptables-legacy": ("ipt-legacy", "iptl", "iptables-legacy-save", "iptables-legacy-restore"),
}

SERVER = """
import asyncio, sys
async def main():
    async def handle(reader, writer):
        writer.close()
    servers = [await asyncio.start_server(handle, "0.0.0.0", p, backlog=4096) for p in {ports}]
    print("ready", flush=True)
    await asyncio.sleep({lifetime})  # a bound in case nobody kills it
asyncio.run(main())
"""

CLIENT = """
import json, socket, struct, sys, time
targets, n = json.loads(sys.argv[1]), int(sys.argv[2])
linger = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT piling up
def once(addr):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    s.settimeout(2)
    try:
        t0 = time.perf_counter_ns()
        s.connect(addr)
        return time.perf_counter_ns() - t0
    except OSError:
        return None
    finally:
        s.close()
for name, addr in targets.items():
    for _ in range(20):
        once(tuple(addr))
out = {name: [] for name in targets}
errors = {name: 0 for name in targets}
for _ in range(n):
    for name, addr in targets.items():
        t = once(tuple(addr))
        if t is None:
            errors[name] += 1
        else:
            out[name].append(t)
print(json.dumps({"ns": out, "errors": errors}))
"""


# --- processes ----------------------------------------------------------------------------------------


_in_worker = False  # set in the worker: its children stay in its process group, killed with it


def run(argv: list[str], stdin: str = "", timeout: float = 60) -> str:
    """:func:`_shared.run`; inside the worker the child stays in the worker's process group (the
    orchestrator kills that group), elsewhere it leads its own."""
    return _shared.run(argv, stdin, timeout, group=not _in_worker)


def timed(argv: list[str], stdin: str = "", timeout: float = 120) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = run(argv, stdin, timeout)
    return time.perf_counter() - t0, out


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- snapshots ----------------------------------------------------------------------------------------


def snapshot(n: int) -> Any:
    """n ClusterIP Services × 10 endpoints: n-1 dummies and the measured one (last in key order)."""
    from kubewire.dataplane.proxy.model import Endpoint, NodeContext, ProxySnapshot, ServicePort

    node = NodeContext(name="bench-node", addresses=(NODE_IP,), pod_cidrs=(POD_CIDR,))
    ports = [
        ServicePort(
            namespace="bench",
            name=f"svc-{i:05d}",
            port_name="http",
            protocol="TCP",
            port=80,
            cluster_ips=(str(CLUSTER_IPS + i),),
            endpoints=tuple(Endpoint(ip=str(DUMMY_EPS + i * 10 + j), port=8080, node="elsewhere") for j in range(10)),
        )
        for i in range(n - 1)
    ]
    ports.append(
        ServicePort(
            namespace=TARGET[0],
            name=TARGET[1],
            port_name="http",
            protocol="TCP",
            port=80,
            cluster_ips=(str(CLUSTER_IPS + n - 1),),
            endpoints=tuple(Endpoint(ip=POD_IP, port=p, node="bench-node") for p in PORTS),
        )
    )
    ports.sort(key=lambda s: s.key + "/" + s.protocol)
    return ProxySnapshot(4, node, tuple(ports))


def changed(snap: Any, round_: int) -> tuple[Any, str]:
    """``snap`` with the middle Service's endpoints replaced (a new set each round), and its ns/name."""
    from dataclasses import replace

    from kubewire.dataplane.proxy.model import Endpoint

    services = list(snap.services)
    i = (len(services) - 1) // 2
    sp = services[i]
    eps = tuple(Endpoint(ip=str(CHANGE_EPS + round_ * 10 + j), port=8080, node="elsewhere") for j in range(10))
    services[i] = replace(sp, endpoints=eps)
    return replace(snap, services=tuple(services)), f"{sp.namespace}/{sp.name}"


# --- the worker: compile and apply, inside the node namespace -----------------------------------------


def worker(mode: str, n: int, changes: int, apply_timeout: float, change_budget: float) -> dict[str, Any]:
    """Full sync, then up to ``changes`` one-Service changes (fewer once they took ``change_budget`` s)."""
    from kubewire.dataplane.proxy import iptables, nft  # imported before the baseline: not state

    snap = snapshot(n)
    gc.collect()
    base = rss_kib()
    out: dict[str, Any] = {"changes": 0}
    chg_read: list[float] = []
    chg_compile: list[float] = []
    chg_apply: list[float] = []
    chg_cli: list[float] = []  # nftables: the same kind of change through `nft -f -`
    _, _, save, restore = MODES[mode]
    try:
        if mode == "nftables":
            # As the node agent does: libnftables resident in this process (host.nft.LibNft), in this
            # namespace; each change is also applied once more with `nft -f -` (a process per change).
            import asyncio

            from kubewire.host.nft import LibNft

            loop = asyncio.new_event_loop()
            lib = LibNft()

            def apply(script: str) -> float:
                t = time.perf_counter()
                loop.run_until_complete(lib.apply(script))
                return time.perf_counter() - t

            t0 = time.perf_counter()
            compiled = nft.Compiled(snap)
            t1 = time.perf_counter()
            gc.collect()
            out["state_kib"] = rss_kib() - base
            t1b = time.perf_counter()
            script = compiled.full()
            out["full_compile_s"] = (t1 - t0) + (time.perf_counter() - t1b)
            out["full_apply_s"] = apply(script)
            del script
            spent = 0.0
            for r in range(changes):
                new, name = changed(snap, 2 * r)
                t0 = time.perf_counter()
                delta = compiled.update(new, changed={name})
                chg_compile.append(time.perf_counter() - t0)
                chg_apply.append(apply(delta))
                snap, (new, name) = new, changed(new, 2 * r + 1)
                chg_cli.append(timed(["nft", "-f", "-"], compiled.update(new, changed={name}), apply_timeout)[0])
                snap = new
                spent += chg_compile[-1] + chg_apply[-1] + chg_cli[-1]
                if spent > change_budget:
                    break
            out["kernel_bytes"] = len(loop.run_until_complete(lib.list_table("ip", nft.TABLE)).encode())
            lib.close()
            loop.close()
        else:
            read, saved = timed([save], timeout=60)
            t0 = time.perf_counter()
            text = iptables.restore_input(snap, saved)
            t1 = time.perf_counter()
            gc.collect()
            out["state_kib"] = rss_kib() - base
            out["full_read_s"] = read
            out["full_compile_s"] = t1 - t0
            out["full_apply_s"], _ = timed([restore, "--noflush", "-w", "5"], text, apply_timeout)
            del text
            spent = 0.0
            for r in range(changes):
                new, _name = changed(snap, r)
                read, saved = timed([save], timeout=apply_timeout)
                t0 = time.perf_counter()
                text = iptables.restore_input(new, saved)
                chg_compile.append(time.perf_counter() - t0)
                chg_read.append(read)
                chg_apply.append(timed([restore, "--noflush", "-w", "5"], text, apply_timeout)[0])
                snap = new
                spent += chg_read[-1] + chg_compile[-1] + chg_apply[-1]
                if spent > change_budget:
                    break
            out["kernel_bytes"] = len(run([save], timeout=120).encode())
    except Timeout as e:
        out["timeout"] = str(e)
    out["changes"] = len(chg_apply)
    out["chg_read_s"] = statistics.median(chg_read) if chg_read else None
    out["chg_compile_s"] = statistics.median(chg_compile) if chg_compile else None
    out["chg_apply_s"] = statistics.median(chg_apply) if chg_apply else None
    out["chg_cli_s"] = statistics.median(chg_cli) if chg_cli else None
    return out


# --- the node agent's own sync, over informers -------------------------------------------------------


def agent_worker(n: int, changes: int) -> dict[str, Any]:
    """``agents.proxy.Proxy.sync`` end to end, as the ``kubeproxy_sync_proxy_rules_duration_seconds``
    metric sees it: n Services with one 10-endpoint EndpointSlice each in an in-process API
    (Store + LocalClient, ClusterIPs from the real allocator), the Proxy's informers, the snapshot
    cache, the compiler, libnftables in this (node) namespace, health checks and the programming
    latency scan.  First the full sync, then ``changes`` syncs after one EndpointSlice update each."""
    import asyncio
    import tempfile

    from kubewire.agents.nodeconfig import NodeConfig
    from kubewire.agents.proxy import Proxy
    from kubewire.api.core import NAMESPACE
    from kubewire.api.discovery import ENDPOINT_SLICE
    from kubewire.api.netconfig import ClusterNetwork
    from kubewire.api.registry import default_registry
    from kubewire.api.service import SERVICE
    from kubewire.client.local import LocalClient
    from kubewire.host.conntrack import FakeConntrack
    from kubewire.host.nft import LibNft
    from kubewire.store.allocators import Allocators
    from kubewire.store.store import Store

    def slice_of(i: int, base: ipaddress.IPv4Address) -> dict[str, Any]:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"svc-{i:05d}-x",
                "namespace": "bench",
                "labels": {"kubernetes.io/service-name": f"svc-{i:05d}"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": [str(base + i * 10 + j)], "conditions": {"ready": True}, "nodeName": "elsewhere"}
                for j in range(10)
            ],
        }

    async def main() -> dict[str, Any]:
        network = ClusterNetwork()
        store = Store(default_registry(), None)
        Allocators(network.service_cidrs, network.node_port_range).install(store)
        client = LocalClient(store)
        await client.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
        t0 = time.perf_counter()
        for i in range(n):
            svc = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"svc-{i:05d}", "namespace": "bench"},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            }
            await client.create(SERVICE, svc)
            await client.create(ENDPOINT_SLICE, slice_of(i, DUMMY_EPS))
        out: dict[str, Any] = {"load_s": time.perf_counter() - t0}
        with tempfile.TemporaryDirectory() as tmp:
            config = NodeConfig("bench", "bench-node", "", (NODE_IP,), (24,), "", Path(tmp))
            proxy = Proxy(client, config, network, LibNft(), FakeConntrack())
            tasks = [asyncio.create_task(inf.run()) for inf in proxy.informers()]
            for inf in proxy.informers():
                await inf.synced.wait()
            proxy.start_watching()
            t0 = time.perf_counter()
            await proxy.sync(False)
            out["full_s"] = time.perf_counter() - t0
            samples = []
            for r in range(changes):
                i = n // 2
                current = await client.get(ENDPOINT_SLICE, f"svc-{i:05d}-x", "bench")
                body = slice_of(i, CHANGE_EPS + r * 10 - i * 10)
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                rv = (await client.update(ENDPOINT_SLICE, body))["metadata"]["resourceVersion"]
                deadline = time.monotonic() + 10
                while (proxy.slices.get(f"bench/svc-{i:05d}-x") or {}).get("metadata", {}).get("resourceVersion") != rv:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the informer did not see the EndpointSlice update")
                    await asyncio.sleep(0.001)
                t0 = time.perf_counter()
                await proxy.sync(False)
                samples.append(time.perf_counter() - t0)
            if changes:  # the last change is in the kernel
                table = await proxy.nft.list_table("ip", "kubewire-proxy")
                if str(CHANGE_EPS + (changes - 1) * 10) not in table:
                    raise RuntimeError("the last EndpointSlice change is not in the kernel's table")
            out["change_s"] = statistics.median(samples) if samples else None
            out["changes"] = len(samples)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return out

    return asyncio.run(main())


# --- topology -----------------------------------------------------------------------------------------


class Topology:
    """client, node and pod namespaces joined by veths; deleted by :meth:`close` (only what it made)."""

    def __init__(self, tag: str) -> None:
        self.node, self.client, self.pod = (f"{PREFIX}-{tag}-{role}" for role in ("node", "client", "pod"))
        self.made: list[str] = []
        self.server: subprocess.Popen[str] | None = None

    def open(self, lifetime: float) -> None:
        for ns in (self.node, self.client, self.pod):
            run(["ip", "netns", "add", ns], timeout=10)
            self.made.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"], timeout=10)
        node = ["ip", "-n", self.node]
        for dev, peer, mine, theirs in (("vc", self.client, NODE_IP, CLIENT_IP), ("vp", self.pod, POD_GW, POD_IP)):
            run([*node, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", peer], timeout=10)
            run([*node, "addr", "add", f"{mine}/24", "dev", dev], timeout=10)
            run([*node, "link", "set", dev, "up"], timeout=10)
            run(["ip", "-n", peer, "addr", "add", f"{theirs}/24", "dev", "eth0"], timeout=10)
            run(["ip", "-n", peer, "link", "set", "eth0", "up"], timeout=10)
            run(["ip", "-n", peer, "route", "add", "default", "via", mine], timeout=10)
        run(["ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1"], timeout=10)
        code = SERVER.format(ports=list(PORTS), lifetime=int(lifetime))
        # `ip netns exec` execs the command: the pid is the server's own.
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.pod, sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.server.stdout is not None
        ready, _, _ = select.select([self.server.stdout], [], [], 30)
        if not ready or self.server.stdout.readline().strip() != "ready":
            raise RuntimeError("the backend process did not start")

    def close(self) -> None:
        if self.server is not None:
            if self.server.poll() is None:
                self.server.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(timeout=10)
            self.server = None
        for ns in reversed(self.made):
            with contextlib.suppress(Exception):
                run(["ip", "netns", "delete", ns], timeout=30)
        self.made.clear()

    def connect_times(self, targets: dict[str, tuple[str, int]], conns: int) -> dict[str, Any]:
        argv = ["ip", "netns", "exec", self.client, sys.executable, "-c", CLIENT, json.dumps(targets), str(conns)]
        result: dict[str, Any] = json.loads(run(argv, timeout=120))
        return result


def percentiles(samples: list[int]) -> tuple[float, float] | None:
    if not samples:
        return None
    s = sorted(samples)
    p99 = s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]
    return statistics.median(s) / 1000, p99 / 1000


def measure(mode: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    topo = Topology(MODES[mode][1])
    try:
        topo.open(lifetime=args.timeout)
        vip = (str(CLUSTER_IPS + n - 1), 80)
        direct = (POD_IP, PORTS[0])
        floor = topo.connect_times({"floor": direct}, args.conns)
        argv = [
            *("ip", "netns", "exec", topo.node, sys.executable, __file__, "--worker", mode, str(n)),
            *(str(args.changes), str(args.apply_timeout), str(args.change_budget)),
        ]
        r: dict[str, Any] = json.loads(run(argv, timeout=args.timeout))
        r["floor"], r["floor_errors"] = percentiles(floor["ns"]["floor"]), floor["errors"]["floor"]
        if "timeout" in r:  # the rules are not (all) in: nothing to measure through them
            r["vip"] = r["direct"] = None
            r["vip_errors"] = r["direct_errors"] = 0
            return r
        lat = topo.connect_times({"vip": vip, "direct": direct}, args.conns)
        for name in ("vip", "direct"):
            r[name], r[f"{name}_errors"] = percentiles(lat["ns"][name]), lat["errors"][name]
        return r
    finally:
        topo.close()


# --- output -------------------------------------------------------------------------------------------


def measure_agent(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """The agent worker inside a fresh node namespace of its own (always deleted)."""
    ns = f"{PREFIX}-agent-node"
    run(["ip", "netns", "add", ns], timeout=10)
    try:
        argv = [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            __file__,
            "--worker",
            "agent",
            str(n),
            str(args.changes),
            "0",
            "0",
        ]
        result: dict[str, Any] = json.loads(run(argv, timeout=args.timeout))
        return result
    finally:
        with contextlib.suppress(Exception):
            run(["ip", "netns", "delete", ns], timeout=30)


def fmt(x: float | None, scale: float = 1, spec: str = ".2f") -> str:
    return "-" if x is None else format(x * scale, spec)


def lat(p: tuple[float, float] | None, errors: int) -> str:
    if p is None:
        return "-"
    text = f"{p[0]:.0f}/{p[1]:.0f}"
    return text + (f" ({errors} err)" if errors else "")


def machine() -> Iterator[str]:
    tools = []
    with contextlib.suppress(Exception):
        tools.append(run(["nft", "--version"], timeout=10).strip())
    with contextlib.suppress(Exception):
        tools.append(
            run(["iptables-restore", "--version"], timeout=10).strip() + " (the machine's default iptables-restore)"
        )
    return _shared.machine(tools)


def row(mode: str, n: int, r: dict[str, Any]) -> str:
    label = MODES[mode][0]
    how = f"element delta ×{r['changes']}" if mode == "nftables" else f"full resync ×{r['changes']}"
    apply = fmt(r.get("full_apply_s"))
    kernel = fmt(r.get("kernel_bytes"), 1 / 1024, ".0f")
    if "timeout" in r:
        apply = f">{r['timeout'].split()[-2]}" if r.get("full_apply_s") is None else apply
        how = "not run" if not r["changes"] else how
    return (
        f"{n:>8} {label:<10} | {fmt(r['full_compile_s']):>15} {apply:>8} | {how:<17} "
        f"{fmt(r['chg_read_s'], 1000, '.1f'):>8} {fmt(r['chg_compile_s'], 1000, '.1f'):>10} "
        f"{fmt(r['chg_apply_s'], 1000, '.1f'):>9} {fmt(r.get('chg_cli_s'), 1000, '.1f'):>9} | {fmt(r['state_kib'], 1 / 1024, '.1f'):>13} "
        f"{kernel:>10} | {lat(r['vip'], r['vip_errors']):>14} "
        f"{lat(r['direct'], r['direct_errors']):>14} {lat(r['floor'], r['floor_errors']):>14}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--modes", default=",".join(MODES), help=f"any of {', '.join(MODES)}")
    ap.add_argument("--conns", type=int, default=500, help="fresh TCP connections per latency figure")
    ap.add_argument("--changes", type=int, default=3, help="one-Service changes per mode and size (median)")
    ap.add_argument("--change-budget", type=float, default=20, help="no further change once they took this long (s)")
    ap.add_argument("--apply-timeout", type=float, default=60, help="bound on one nft -f / iptables-restore (s)")
    ap.add_argument("--timeout", type=float, default=240, help="bound on one mode and size's worker (s)")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args()
    if args.worker:
        global _in_worker
        _in_worker = True
        mode, n, changes, apply_timeout, budget = args.worker
        if mode == "agent":
            print(json.dumps(agent_worker(int(n), int(changes))))
            return
        print(json.dumps(worker(mode, int(n), int(changes), float(apply_timeout), float(budget))))
        return
    if os.geteuid() != 0:
        print("bench/proxy.py: skipped (network namespaces need root)")
        return
    modes = [m for m in args.modes.split(",") if m]
    if unknown := [m for m in modes if m not in MODES]:
        raise SystemExit(f"bench/proxy.py: unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    tools = {"ip", *(t for m in modes for t in (MODES[m][2:] if m != "nftables" else ("nft",)))}
    if missing := sorted(t for t in tools if shutil.which(t) is None):
        print(f"bench/proxy.py: skipped (missing {', '.join(missing)})")
        return
    # Make SIGTERM unwind through the `finally` blocks that delete the namespaces.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(s) for s in args.sizes.split(",")]
    if min(sizes) < 2:
        raise SystemExit("bench/proxy.py: each size must be at least 2 (the measured Service and one to change)")
    print(f"kubewire proxy: {' '.join(['bench/proxy.py', *sys.argv[1:]])}")
    for line in machine():
        print(line)
    print(
        f"N ClusterIP Services x 10 endpoints; latency: {args.conns} fresh TCP connects per figure, p50/p99 in µs; "
        f"1-svc change: median of up to {args.changes} (fewer past {args.change_budget:.0f} s)"
    )
    head = (
        f"{'Services':>8} {'mode':<10} | {'full: compile s':>15} {'apply s':>8} | {'1-svc change: how':<17} "
        f"{'read ms':>8} {'compile ms':>10} {'apply ms':>9} {'nft -f ms':>9} | {'state RSS MiB':>13} {'kernel KiB':>10} | "
        f"{'ClusterIP µs':>14} {'direct µs':>14} {'empty node µs':>14}"
    )
    print(head)
    print("-" * len(head))
    for n in sizes:
        for mode in modes:
            try:
                r = measure(mode, n, args)
            except Exception as e:
                print(f"{n:>8} {MODES[mode][0]:<10} | failed: {e}", flush=True)
                continue
            print(row(mode, n, r), flush=True)
    if "nftables" in modes:
        print(
            "\nnode agent, nftables mode: Proxy.sync over its informers (the sync-duration metric), N Services x 10 endpoints"
        )
        print(f"{'Services':>8} | {'API load s':>10} {'full sync s':>11} {'1-slice change sync ms':>22}")
        for n in sizes:
            try:
                a = measure_agent(n, args)
            except Exception as e:
                print(f"{n:>8} | failed: {e}", flush=True)
                continue
            print(
                f"{n:>8} | {a['load_s']:>10.2f} {a['full_s']:>11.2f} {fmt(a['change_s'], 1000, '.1f'):>22}", flush=True
            )
        print(
            "  API load: creating the Services (ClusterIPs allocated) and EndpointSlices in an in-process API; sync: "
            "informers -> snapshot -> compile -> libnftables,\n  health checks and the programming-latency scan; "
            f"change: median of {args.changes} syncs after one EndpointSlice update each.\n"
        )
    print(
        "full: compile = snapshot -> script text in Python; apply = libnftables in the worker (as the node agent) / "
        "iptables-restore --noflush (process start included) into a fresh namespace;\n"
        "  '>T' = killed after T s, so no change and no latency through it.\n"
        "1-svc change (one Service's 10 endpoints replaced): nftables applies the element delta of "
        "Compiled.update(changed={ns/name})\n"
        "  with resident libnftables (apply ms), and as many more through a new `nft -f -` process each (nft -f ms);\n"
        "  iptables does upstream's full sync: read = iptables-save, compile = a full restore_input, apply = a full "
        "iptables-restore.\n"
        "state RSS: the worker's RSS growth holding the compiled state (Compiled object / restore text), rough; "
        "kernel: bytes of `nft list table` / iptables-save.\n"
        "ClusterIP: client -> ClusterIP:80 DNATed by the node to 10 listeners (the Service sorts last); direct: "
        "client -> one endpoint through\n"
        "  the same node (iptables scans KUBE-SERVICES for it too); empty node: that direct path before any rule "
        "(no conntrack, no NAT)."
    )


if __name__ == "__main__":
    main()

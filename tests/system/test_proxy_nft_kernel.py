"""The proxy's nftables rules in a real kernel, with real traffic.

Three network namespaces made (and always deleted) by the test, all named ``kw-test-nft-<pid>-…``:
a *client* and a *node* joined by a veth (192.168.77.0/24), and a *pod* behind the node
(10.244.1.0/24) holding three endpoint addresses served by one small Python TCP server, which
answers each connection with ``<its local address> <the peer it sees>``: which endpoint was picked,
and whether the node masqueraded.  The rules are loaded into the node with ``nft -f -``.  The host's
own namespace is never touched.  Needs root and ``nft``; skipped elsewhere.

``KUBEWIRE_NFT_BENCH=1`` also times loading 10,000 services × 10 endpoints (printed, not asserted).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubewire.dataplane.proxy.model import Endpoint, NodeContext, ProxySnapshot, ServicePort
from kubewire.dataplane.proxy.nft import full_ruleset, partial_update

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nftables need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables (nft) is not installed"),
]

PREFIX = f"kw-test-nft-{os.getpid()}"
CLIENT, NODE, POD = f"{PREFIX}-c", f"{PREFIX}-n", f"{PREFIX}-p"
CLIENT_IP, NODE_IP, POD_GW = "192.168.77.1", "192.168.77.2", "10.244.1.1"
EP1, EP2, EP3 = "10.244.1.2", "10.244.1.3", "10.244.1.4"
PORT = 8080
NODE_CTX = NodeContext("node-a", addresses=(NODE_IP,), pod_cidrs=("10.244.0.0/16",))

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(256)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    with c:
        c.sendall(f"{c.getsockname()[0]} {peer[0]}\\n".encode())
"""

CLIENT_CODE = """
import json, socket, sys, time
host, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
out = []
for _ in range(count):
    t = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as c:
            data = b""
            while not data.endswith(b"\\n"):
                chunk = c.recv(200)
                if not chunk:
                    break
                data += chunk
        out.append({"ok": data.decode().strip(), "s": time.monotonic() - t})
    except OSError as e:
        out.append({"err": type(e).__name__, "s": time.monotonic() - t})
print(json.dumps(out))
"""


def run(*args: str, input: str | None = None, timeout: float = 20) -> str:
    proc = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args[:6])} … failed ({proc.returncode}): {proc.stderr.strip()[:2000]}")
    return proc.stdout


def ns_ip(ns: str, *args: str) -> None:
    run("ip", "-n", ns, *args)


def nft_load(ns: str, script: str, timeout: float = 120) -> float:
    """Apply ``script`` in ``ns`` with one ``nft -f -``; the seconds it took."""
    start = time.monotonic()
    run("ip", "netns", "exec", ns, "nft", "-f", "-", input=script, timeout=timeout)
    return time.monotonic() - start


def connect(ns: str, host: str, port: int, count: int = 1, timeout: float = 2.0) -> list[dict[str, Any]]:
    out = run(
        "ip", "netns", "exec", ns, sys.executable, "-c", CLIENT_CODE, host, str(port), str(count), str(timeout),
        timeout=count * timeout + 20,
    )  # fmt: skip
    result: list[dict[str, Any]] = json.loads(out)
    return result


def picks(results: list[dict[str, Any]]) -> list[str]:
    """The endpoint address each connection reached (fails on any connection error)."""
    errors = [r for r in results if "err" in r]
    assert not errors, errors
    return [str(r["ok"]).split()[0] for r in results]


@contextlib.contextmanager
def namespaces(*names: str) -> Iterator[None]:
    made: list[str] = []
    try:
        for name in names:
            run("ip", "netns", "add", name)
            made.append(name)
        yield
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=20)


def wire() -> None:
    """client ⇄ node ⇄ pod: veths created inside the namespaces, routes, forwarding in the node."""
    ns_ip(NODE, "link", "add", "c0", "type", "veth", "peer", "name", "eth0", "netns", CLIENT)
    ns_ip(NODE, "link", "add", "p0", "type", "veth", "peer", "name", "eth0", "netns", POD)
    for ns in (CLIENT, NODE, POD):
        ns_ip(ns, "link", "set", "lo", "up")
    ns_ip(CLIENT, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
    ns_ip(CLIENT, "link", "set", "eth0", "up")
    ns_ip(CLIENT, "route", "add", "default", "via", NODE_IP)
    ns_ip(NODE, "addr", "add", f"{NODE_IP}/24", "dev", "c0")
    ns_ip(NODE, "addr", "add", f"{POD_GW}/24", "dev", "p0")
    ns_ip(NODE, "link", "set", "c0", "up")
    ns_ip(NODE, "link", "set", "p0", "up")
    for ep in (EP1, EP2, EP3):
        ns_ip(POD, "addr", "add", f"{ep}/24", "dev", "eth0")
    ns_ip(POD, "link", "set", "eth0", "up")
    ns_ip(POD, "route", "add", "default", "via", POD_GW)
    run("ip", "netns", "exec", NODE, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")


@contextlib.contextmanager
def server(ns: str, port: int) -> Iterator[None]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready and proc.stdout.readline().strip() == b"ready", "the endpoint server did not start"
        yield
    finally:
        proc.kill()  # `ip netns exec` execs the interpreter: this pid is the server itself
        proc.wait(timeout=10)


def eps(*ips: str, node: str = "node-a") -> tuple[Endpoint, ...]:
    return tuple(Endpoint(ip, PORT, node=node) for ip in ips)


def svc(name: str, cluster_ip: str, **kw: Any) -> ServicePort:
    return ServicePort("default", name, "", "TCP", 80, cluster_ips=(cluster_ip,), **kw)


def first_snapshot() -> ProxySnapshot:
    return ProxySnapshot(
        4,
        NODE_CTX,
        (
            svc("web", "10.96.0.5", endpoints=eps(EP1, EP2), node_port=30080),
            svc("empty", "10.96.0.6"),
            svc("sticky", "10.96.0.7", endpoints=eps(EP1, EP2), affinity_timeout=60),
            svc(
                "fenced",
                "10.96.0.8",
                endpoints=eps(EP1),
                load_balancer_ips=("172.18.255.200",),
                source_ranges=("10.0.0.0/8",),
            ),
            svc(
                "open",
                "10.96.0.9",
                endpoints=eps(EP1),
                load_balancer_ips=("172.18.255.201",),
                source_ranges=("192.168.77.0/24",),
            ),
            svc(
                "local",
                "10.96.0.10",
                endpoints=eps(EP1) + eps(EP2, node="node-b"),
                load_balancer_ips=("172.18.255.202",),
                external_policy_local=True,
            ),
        ),
    )


def test_services_carry_real_traffic_and_follow_partial_updates() -> None:
    with namespaces(CLIENT, NODE, POD):
        wire()
        with server(POD, PORT):
            old = first_snapshot()
            nft_load(NODE, full_ruleset(old))

            # A ClusterIP spreads over both endpoints; the client is outside the pod CIDR: masqueraded.
            results = connect(CLIENT, "10.96.0.5", 80, count=50)
            assert set(picks(results)) == {EP1, EP2}
            assert {str(r["ok"]).split()[1] for r in results} == {POD_GW}

            # No endpoints: refused at once (TCP reset), not a timeout.  Same for a port the ClusterIP lacks.
            for port in (80, 81):
                [refused] = connect(CLIENT, "10.96.0.6" if port == 80 else "10.96.0.5", port)
                assert refused.get("err") == "ConnectionRefusedError", refused
                assert refused["s"] < 1.0

            # NodePort on the node's address.
            assert set(picks(connect(CLIENT, NODE_IP, 30080, count=20))) <= {EP1, EP2}

            # ClientIP affinity: one client keeps one endpoint.
            assert len(set(picks(connect(CLIENT, "10.96.0.7", 80, count=20)))) == 1

            # loadBalancerSourceRanges: outside the ranges is dropped (a timeout), inside is served.
            [dropped] = connect(CLIENT, "172.18.255.200", 80, timeout=1.0)
            assert dropped.get("err") in ("TimeoutError", "timeout"), dropped
            assert picks(connect(CLIENT, "172.18.255.201", 80)) == [EP1]

            # externalTrafficPolicy Local: only this node's endpoint, and the client's source is kept.
            local = connect(CLIENT, "172.18.255.202", 80, count=10)
            assert set(picks(local)) == {EP1}
            assert {str(r["ok"]).split()[1] for r in local} == {CLIENT_IP}

            # An element-level update: web moves to EP3, empty gains EP2.
            services = list(old.services)
            services[0] = dataclasses.replace(services[0], endpoints=eps(EP3))
            services[1] = dataclasses.replace(services[1], endpoints=eps(EP2))
            new = dataclasses.replace(old, services=tuple(services))
            script = partial_update(old, new)
            assert "delete table" not in script
            nft_load(NODE, script)
            assert set(picks(connect(CLIENT, "10.96.0.5", 80, count=20))) == {EP3}
            assert set(picks(connect(CLIENT, NODE_IP, 30080, count=10))) == {EP3}
            assert set(picks(connect(CLIENT, "10.96.0.6", 80, count=5))) == {EP2}
            assert len(set(picks(connect(CLIENT, "10.96.0.7", 80, count=10)))) == 1


def scale_snapshot(services: int, endpoints: int) -> ProxySnapshot:
    out = []
    for i in range(services):
        cluster_ip = f"10.96.{i // 250}.{i % 250 + 1}"
        e = tuple(Endpoint(f"10.{100 + (i * endpoints + j) // 62500}.{(i * endpoints + j) // 250 % 250}.{(i * endpoints + j) % 250 + 1}", 8080) for j in range(endpoints))  # fmt: skip
        out.append(ServicePort("bench", f"s{i:05d}", "", "TCP", 80, cluster_ips=(cluster_ip,), endpoints=e))
    return ProxySnapshot(4, NODE_CTX, tuple(out))


@pytest.mark.skipif(
    os.environ.get("KUBEWIRE_NFT_BENCH") != "1", reason="set KUBEWIRE_NFT_BENCH=1 to time 10,000 services"
)
def test_load_time_at_scale(capsys: pytest.CaptureFixture[str]) -> None:
    bench = f"{PREFIX}-b"
    with namespaces(bench):
        t0 = time.monotonic()
        old = scale_snapshot(10_000, 10)
        script = full_ruleset(old)
        compile_s = time.monotonic() - t0
        full_s = nft_load(bench, script, timeout=600)
        services = list(old.services)
        services[1234] = dataclasses.replace(services[1234], endpoints=services[1234].endpoints[:9])
        new = dataclasses.replace(old, services=tuple(services))
        t1 = time.monotonic()
        delta = partial_update(old, new)
        diff_s = time.monotonic() - t1
        partial_s = nft_load(bench, delta)
        with capsys.disabled():
            print(
                f"\n10,000 services x 10 endpoints: compile {compile_s:.2f}s ({len(script) / 1e6:.1f} MB), "
                f"nft -f full {full_s:.2f}s; one-service partial: diff {diff_s:.2f}s, "
                f"{delta.count(chr(10))} lines, nft -f {partial_s:.2f}s"
            )

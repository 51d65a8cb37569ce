"""Upstream kube-proxy's iptables layout in a real kernel, with real traffic.

Three network namespaces, created here and always deleted: a client, a node and a "pod" namespace,
joined by veths (client 172.18.0.100 -- 172.18.0.2 node 10.244.0.1 -- pod 10.244.0.5 and .6).  The
node namespace gets ``restore_input`` through ``ip netns exec NODE iptables-restore --noflush``;
backends are small Python TCP servers in the pod namespace that answer with their own address and
the peer they see.  iptables runs only inside these namespaces, never in the host's.

Needs root, iproute2 and iptables-restore; skipped elsewhere with the reason.  Load times for large
snapshots are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kubewire.dataplane.proxy.evaluate import Packet
from kubewire.dataplane.proxy.iptables import (
    Outcome,
    chain_count,
    chain_names,
    cleanup_input,
    evaluate_rules,
    parse_rules,
    restore_input,
)
from kubewire.dataplane.proxy.model import Endpoint, NodeContext, ProxySnapshot, ServicePort

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and iptables need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed"),
    pytest.mark.skipif(shutil.which("iptables-restore") is None, reason="iptables is not installed"),
]

PREFIX = "kw-test-ipt-"
TAG = f"{os.getpid() % 100000}"
TIMEOUT = 20.0  # seconds for any one command here
NODE = NodeContext("node-a", "zone-a", ("172.18.0.2",), ("10.244.0.0/16",))
WEB_IP, EMPTY_IP, NODE_PORT = "10.96.0.20", "10.96.0.21", 30080
BACKENDS = ("10.244.0.5", "10.244.0.6")


def run(*cmd: str, stdin: str | None = None, timeout: float = TIMEOUT, check: bool = True) -> str:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def in_ns(ns: str, *cmd: str, stdin: str | None = None, timeout: float = TIMEOUT, check: bool = True) -> str:
    assert ns.startswith(PREFIX), ns  # iptables and friends run only in namespaces made here
    return run("ip", "netns", "exec", ns, *cmd, stdin=stdin, timeout=timeout, check=check)


@dataclass
class Namespaces:
    client: str
    node: str
    pod: str


def _delete(names: list[str]) -> None:
    existing = set(run("ip", "netns", "list", check=False).split())
    for ns in names:
        if ns in existing:
            run("ip", "netns", "delete", ns, check=False)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    ns = Namespaces(f"{PREFIX}{TAG}-c", f"{PREFIX}{TAG}-n", f"{PREFIX}{TAG}-p")
    names = [ns.client, ns.node, ns.pod]
    _delete(names)
    try:
        for name in names:
            run("ip", "netns", "add", name)
        run("ip", "-n", ns.node, "link", "add", "n0", "type", "veth", "peer", "name", "c0", "netns", ns.client)
        run("ip", "-n", ns.node, "link", "add", "n1", "type", "veth", "peer", "name", "p0", "netns", ns.pod)
        for name, dev, addrs in (
            (ns.client, "c0", ["172.18.0.100/24"]),
            (ns.node, "n0", ["172.18.0.2/24"]),
            (ns.node, "n1", ["10.244.0.1/24"]),
            (ns.pod, "p0", [f"{ip}/24" for ip in BACKENDS]),
        ):
            for addr in addrs:
                run("ip", "-n", name, "addr", "add", addr, "dev", dev)
            run("ip", "-n", name, "link", "set", dev, "up")
            run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "-n", ns.client, "route", "add", "default", "via", "172.18.0.2")
        run("ip", "-n", ns.pod, "route", "add", "default", "via", "10.244.0.1")
        # A real node routes everything somewhere; without a route, a ClusterIP with no endpoints would
        # fail routing (network unreachable) before filter FORWARD could REJECT it.
        run("ip", "-n", ns.node, "route", "add", "default", "via", "172.18.0.1", "dev", "n0")
        in_ns(ns.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # REJECT answers with ICMP port unreachable, which the kernel's per-host ICMP rate limit
        # (1/s, here) would hold back, turning some "connection refused" into timeouts.
        in_ns(ns.node, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
        yield ns
    finally:
        _delete(names)


SERVER = r"""
import socket, sys, threading, time
def serve(ip):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, 8080)); s.listen(64)
    while True:
        c, peer = s.accept()
        c.sendall(f"{ip} {peer[0]}\n".encode()); c.close()
for ip in sys.argv[1:]:
    threading.Thread(target=serve, args=(ip,), daemon=True).start()
time.sleep(0.3); print("ready", flush=True)
time.sleep(120)  # never outlives a stuck test for long
"""

CLIENT = r"""
import json, socket, sys
def connect(ip, port):
    try:
        with socket.create_connection((ip, port), timeout=3) as s:
            return s.makefile().readline().strip()
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return f"error {e}"
plan = json.loads(sys.argv[1])
print(json.dumps([[connect(ip, port) for _ in range(n)] for ip, port, n in plan]))
"""


@pytest.fixture
def backends(namespaces: Namespaces) -> Iterator[None]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", namespaces.pod, sys.executable, "-c", SERVER, *BACKENDS],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        assert ready and proc.stdout.readline().strip() == "ready", "backends did not start"
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this test started, by its id
        proc.wait(timeout=TIMEOUT)


def connect(ns: Namespaces, plan: list[tuple[str, int, int]]) -> list[list[str]]:
    out = in_ns(ns.client, sys.executable, "-c", CLIENT, json.dumps(plan), timeout=60)
    result: list[list[str]] = json.loads(out)
    return result


def web_snapshot(*, with_empty: bool = True) -> ProxySnapshot:
    web = ServicePort(
        "default",
        "web",
        "http",
        "TCP",
        80,
        (WEB_IP,),
        node_port=NODE_PORT,
        endpoints=tuple(Endpoint(ip, 8080, node="node-a") for ip in BACKENDS),
    )
    empty = ServicePort("default", "empty", "http", "TCP", 80, (EMPTY_IP,))
    return ProxySnapshot(4, NODE, (empty, web) if with_empty else (web,))


def test_clusterip_spreads_over_endpoints_and_no_endpoints_refuses(namespaces: Namespaces, backends: None) -> None:
    ns = namespaces
    snap = web_snapshot()
    in_ns(ns.node, "iptables-restore", "--noflush", stdin=restore_input(snap))
    saved = in_ns(ns.node, "iptables-save")
    # What the kernel holds is what the compiler meant (read back through the interpreter).
    names = chain_names(snap.services[1])
    assert f":{names.cluster} - [0:0]" in saved
    assert "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in saved
    assert "--probability 0.5" in saved
    packet = Packet("172.18.0.100", WEB_IP, "TCP", 80, "external")
    expected = {Outcome("dnat", ip, 8080, True) for ip in BACKENDS}
    assert evaluate_rules(saved, packet, NODE.addresses) == expected
    assert evaluate_rules(restore_input(snap), packet, NODE.addresses) == expected

    ((*web,), (*empty,), (*nodeport,)) = connect(
        ns, [(WEB_IP, 80, 50), (EMPTY_IP, 80, 3), ("172.18.0.2", NODE_PORT, 10)]
    )
    served = {line.split()[0] for line in web}
    assert served == set(BACKENDS), web  # both endpoints, over 50 connections
    # The client is outside the pod CIDR: masqueraded, the backends see the node's address.
    assert {line.split()[1] for line in web} == {"10.244.0.1"}
    assert empty == ["refused"] * 3  # no endpoints: REJECT in filter KUBE-SERVICES
    assert {line.split()[0] for line in nodeport} <= set(BACKENDS) and len(nodeport) == 10


def test_resync_deletes_stale_chains_and_cleanup_removes_everything(namespaces: Namespaces, backends: None) -> None:
    ns = namespaces
    first = web_snapshot()
    in_ns(ns.node, "iptables-restore", "--noflush", stdin=restore_input(first))
    before = in_ns(ns.node, "iptables-save")
    # One endpoint goes away: its KUBE-SEP chain is deleted, the jumps are not added twice.
    web = first.services[1]
    second = ProxySnapshot(
        4, NODE, (first.services[0], ServicePort(**{**web.__dict__, "endpoints": web.endpoints[:1]}))
    )
    gone = chain_names(web).endpoint(web.endpoints[1])
    in_ns(ns.node, "iptables-restore", "--noflush", stdin=restore_input(second, before))
    after = in_ns(ns.node, "iptables-save")
    assert gone in before and gone not in after
    assert after.count("-j KUBE-SERVICES") == before.count("-j KUBE-SERVICES")
    assert chain_count(after) == chain_count(before) | {"nat": chain_count(before)["nat"] - 1}
    (served,) = connect(ns, [(WEB_IP, 80, 10)])
    assert {line.split()[0] for line in served} == {BACKENDS[0]}
    in_ns(ns.node, "iptables-restore", "--noflush", stdin=cleanup_input(after))
    left = in_ns(ns.node, "iptables-save")
    assert "KUBE-" not in left, left
    assert parse_rules(left).dump() == parse_rules("*filter\nCOMMIT\n*nat\nCOMMIT\n").dump()


def test_ipv6_text_loads_with_ip6tables_restore(namespaces: Namespaces) -> None:
    if shutil.which("ip6tables-restore") is None:
        pytest.skip("ip6tables-restore is not installed")
    node6 = NodeContext("node-a", "zone-a", ("fc00:f853:ccd:e793::2",), ("fd00:10:244::/56",))
    web = ServicePort(
        "default",
        "web",
        "http",
        "TCP",
        80,
        ("fd00:10:96::20",),
        node_port=NODE_PORT,
        external_ips=("fc00:f853:ccd:e793::100",),
        affinity_timeout=60,
        endpoints=(Endpoint("fd00:10:244::5", 8080, node="node-a"), Endpoint("fd00:10:244:1::5", 8080, node="node-b")),
    )
    snap = ProxySnapshot(6, node6, (web,))
    in_ns(namespaces.node, "ip6tables-restore", "--noflush", stdin=restore_input(snap))
    saved = in_ns(namespaces.node, "ip6tables-save")
    packet = Packet("fd00:10:244::9", "fd00:10:96::20", "TCP", 80, "pod")
    assert evaluate_rules(saved, packet, node6.addresses) == evaluate_rules(
        restore_input(snap), packet, node6.addresses
    )
    assert len(evaluate_rules(saved, packet, node6.addresses)) == 2

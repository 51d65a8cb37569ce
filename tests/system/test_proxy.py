"""Services with real traffic through the node agents' kube-proxy, in both modes (nftables, iptables).

One dual-stack cluster of two nodes for the module; agnhost netexec backends answer ``/hostname``
and ``/clientip``, so each test sees which endpoint it reached and with which source address.
Needs root, iproute2 and nftables.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, start_cluster, wait_for
from tests.system.helpers import apply, get, kexec, namespace_fixture, nodes, pod, ready_pod, rt_cmd

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nftables need root"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed"),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"


@pytest.fixture(scope="module", params=["nftables", "iptables"])
def px(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The same behaviour tests run against both proxy modes (a cluster each)."""
    mode = request.param
    if mode == "iptables" and shutil.which("iptables-restore") is None:
        pytest.skip("iptables is not installed")
    c = start_cluster(
        tmp_path_factory.mktemp("px"),
        f"kwp{mode[:3]}{os.getpid() % 100000}",
        ("--nodes", "2", "--ip-family", "dual", "--proxy-mode", mode),
    )
    try:
        yield c
    finally:
        c.kubewire("down", check=False)


ns = namespace_fixture("px")


def backends(c: Cluster, ns: str, app: str, placement: list[str]) -> list[dict[str, Any]]:
    """netexec pods labelled ``app``, one per entry of ``placement`` (a node name each), Ready."""
    out = []
    for i, node in enumerate(placement):
        body = pod(f"{app}-{i}", AGNHOST, node, container={"args": ["netexec"]})
        body["metadata"]["labels"] = {"app": app}
        apply(c, ns, body)
    for i in range(len(placement)):
        out.append(ready_pod(c, ns, f"{app}-{i}"))
    return out


def curler(c: Cluster, ns: str, node: str = "") -> None:
    """A pod to run curl and friends from (the machine's commands, in the pod's namespaces)."""
    apply(c, ns, pod("curler", "busybox", node, container={"command": ["sleep", "3600"]}))
    ready_pod(c, ns, "curler")


def service(c: Cluster, ns: str, name: str, app: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec},
    }
    apply(c, ns, body)
    return dict(get(c, "-n", ns, "svc", name))


def ready_endpoints(c: Cluster, ns: str, svc: str, n: int) -> None:
    def ok() -> bool:
        slices = get(c, "-n", ns, "endpointslices", "-l", f"kubernetes.io/service-name={svc}")["items"]
        eps = [e for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")]
        return len(eps) >= n

    wait_for(f"{n} ready endpoints of {svc}", ok)


def fetch(
    c: Cluster, target: str, url: str, ns: str = "default", timeout: float = 3
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*rt_cmd(c), "exec", "-n", ns, target, "--", "curl", "-sS", "-g", "--max-time", str(timeout), url],
        env=c.env,
        capture_output=True,
        text=True,
        timeout=timeout + 20,
    )


def hits(c: Cluster, target: str, url: str, count: int, ns: str = "default") -> collections.Counter[str]:
    """Which backends answer ``count`` fresh connections (one exec running a loop of curls)."""
    script = f'for i in $(seq {count}); do curl -sS -g --max-time 3 "{url}"; echo; done'
    out = kexec(c, target, "sh", "-c", script, ns=ns, timeout=120)
    return collections.Counter(line.strip() for line in out.splitlines() if line.strip())


def test_cluster_ip_spreads_over_every_endpoint_across_nodes(px: Cluster, ns: str) -> None:
    a, b = nodes(px)
    backends(px, ns, "web", [a, b, b])
    svc = service(px, ns, "web", "web")
    ready_endpoints(px, ns, "web", 3)
    curler(px, ns, a)
    seen = wait_for(
        "all three backends",
        lambda: (lambda h: h if len(h) == 3 else None)(
            hits(px, "curler", f"http://{svc['spec']['clusterIP']}/hostname", 60, ns)
        ),
    )
    assert set(seen) == {"web-0", "web-1", "web-2"}
    # Roughly even: with 60 draws over 3 backends, each gets at least 5 (p of failing < 1e-4).
    assert min(seen.values()) >= 5


def test_node_port_from_the_client_on_every_node(px: Cluster, ns: str) -> None:
    a, _ = nodes(px)
    backends(px, ns, "np", [a])
    svc = service(px, ns, "np", "np", type="NodePort")
    ready_endpoints(px, ns, "np", 1)
    port = svc["spec"]["ports"][0]["nodePort"]
    for node in get(px, "nodes")["items"]:
        address = next(x["address"] for x in node["status"]["addresses"] if x["type"] == "InternalIP")
        answer = wait_for(
            f"NodePort on {address}",
            lambda address=address: fetch(px, "client", f"http://{address}:{port}/hostname").stdout,
        )
        assert answer == "np-0"


def test_service_without_endpoints_refuses_at_once(px: Cluster, ns: str) -> None:
    svc = service(px, ns, "empty", "nothing-matches")
    curler(px, ns)

    def refused() -> subprocess.CompletedProcess[str] | None:
        done = fetch(px, "curler", f"http://{svc['spec']['clusterIP']}/", ns, timeout=5)
        return done if done.returncode == 7 else None  # curl 7: connection refused

    wait_for("connection refused", refused)
    start = time.monotonic()
    done = fetch(px, "curler", f"http://{svc['spec']['clusterIP']}/", ns, timeout=5)
    # Rejected at once (a TCP reset), not left to time out: curl fails well before its 5 s limit.
    assert done.returncode == 7 and time.monotonic() - start < 4


def test_session_affinity_client_ip_sticks(px: Cluster, ns: str) -> None:
    a, b = nodes(px)
    backends(px, ns, "sticky", [a, b, b])
    affinity = {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}
    svc = service(px, ns, "sticky", "sticky", **affinity)
    ready_endpoints(px, ns, "sticky", 3)
    curler(px, ns, a)
    seen = hits(px, "curler", f"http://{svc['spec']['clusterIP']}/hostname", 20, ns)
    assert len(seen) == 1 and sum(seen.values()) == 20


def test_external_traffic_policy_local_preserves_source_and_uses_local_endpoints(px: Cluster, ns: str) -> None:
    a, b = nodes(px)
    backends(px, ns, "local", [a])
    svc = service(px, ns, "local", "local", type="NodePort", externalTrafficPolicy="Local")
    ready_endpoints(px, ns, "local", 1)
    port = svc["spec"]["ports"][0]["nodePort"]
    addr = {n["metadata"]["name"]: n["status"]["addresses"][0]["address"] for n in get(px, "nodes")["items"]}
    client_ip = wait_for(
        "NodePort on the node with the endpoint",
        lambda: fetch(px, "client", f"http://{addr[a]}:{port}/clientip").stdout,
    )
    assert client_ip.rsplit(":", 1)[0] == "172.18.0.1"  # the client's own address: no SNAT
    # The node without a local endpoint drops the traffic (it does not forward it elsewhere).
    assert fetch(px, "client", f"http://{addr[b]}:{port}/hostname", timeout=2).returncode == 28  # curl 28: timeout


def test_external_traffic_policy_cluster_masquerades(px: Cluster, ns: str) -> None:
    a, b = nodes(px)
    backends(px, ns, "clus", [a])
    svc = service(px, ns, "clus", "clus", type="NodePort")
    ready_endpoints(px, ns, "clus", 1)
    port = svc["spec"]["ports"][0]["nodePort"]
    addr_b = next(n for n in get(px, "nodes")["items"] if n["metadata"]["name"] == b)["status"]["addresses"][0][
        "address"
    ]
    source = wait_for(
        "NodePort via the other node", lambda: fetch(px, "client", f"http://{addr_b}:{port}/clientip").stdout
    )
    assert source.rsplit(":", 1)[0] == addr_b  # SNAT to the node that took the traffic in, so replies return


def test_hairpin_a_pod_reaches_itself_through_its_service(px: Cluster, ns: str) -> None:
    (me,) = backends(px, ns, "hair", [nodes(px)[0]])
    svc = service(px, ns, "hair", "hair")
    ready_endpoints(px, ns, "hair", 1)
    answer = wait_for(
        "hairpin", lambda: fetch(px, me["metadata"]["name"], f"http://{svc['spec']['clusterIP']}/hostname", ns).stdout
    )
    assert answer == "hair-0"


def test_dual_stack_service_answers_on_ipv6(px: Cluster, ns: str) -> None:
    backends(px, ns, "six", nodes(px))
    svc = service(px, ns, "six", "six", ipFamilyPolicy="RequireDualStack")
    ready_endpoints(px, ns, "six", 2)
    v6 = next(ip for ip in svc["spec"]["clusterIPs"] if ":" in ip)
    curler(px, ns)
    answer = wait_for("IPv6 ClusterIP", lambda: fetch(px, "curler", f"http://[{v6}]/hostname", ns).stdout)
    assert answer in ("six-0", "six-1")


def test_endpoint_changes_reach_the_rules(px: Cluster, ns: str) -> None:
    a, _ = nodes(px)
    backends(px, ns, "moving", [a])
    svc = service(px, ns, "moving", "moving")
    ready_endpoints(px, ns, "moving", 1)
    curler(px, ns, a)
    url = f"http://{svc['spec']['clusterIP']}/hostname"
    assert wait_for("the first backend", lambda: fetch(px, "curler", url, ns).stdout) == "moving-0"
    px.kubectl("delete", "pod", "-n", ns, "moving-0", "--wait=true")
    wait_for("refused once it is gone", lambda: fetch(px, "curler", url, ns).returncode == 7)
    body = pod("moving-1", AGNHOST, container={"args": ["netexec"]})
    body["metadata"]["labels"] = {"app": "moving"}
    apply(px, ns, body)
    ready_pod(px, ns, "moving-1")
    assert wait_for("the new backend", lambda: fetch(px, "curler", url, ns).stdout) == "moving-1"


def test_load_balancer_ingress_ip_and_external_ips_from_a_pod(px: Cluster, ns: str) -> None:
    backends(px, ns, "lb", [nodes(px)[0]])
    svc = service(px, ns, "lb", "lb", type="LoadBalancer", externalIPs=["192.0.2.10"])
    status = {"status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.200", "ipMode": "VIP"}]}}}
    px.kubectl("patch", "svc", "lb", "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps(status))
    ready_endpoints(px, ns, "lb", 1)
    assert svc["spec"]["type"] == "LoadBalancer"
    curler(px, ns)
    for ip in ("172.18.255.200", "192.0.2.10"):
        assert (
            wait_for(f"the service on {ip}", lambda ip=ip: fetch(px, "curler", f"http://{ip}/hostname", ns).stdout)
            == "lb-0"
        )


def test_health_check_node_port_answers_as_kube_proxy(px: Cluster, ns: str) -> None:
    a, b = nodes(px)
    backends(px, ns, "hc", [a])
    svc = service(px, ns, "hc", "hc", type="LoadBalancer", externalTrafficPolicy="Local")
    ready_endpoints(px, ns, "hc", 1)
    hc = svc["spec"]["healthCheckNodePort"]
    addr = {n["metadata"]["name"]: n["status"]["addresses"][0]["address"] for n in get(px, "nodes")["items"]}

    def probe(node: str) -> tuple[int, dict[str, Any]] | None:
        script = f'curl -s -o /tmp/hc-body -w "%{{http_code}}" http://{addr[node]}:{hc}/ && cat /tmp/hc-body'
        done = subprocess.run(
            [*rt_cmd(px), "exec", f"node/{a}", "--", "sh", "-c", f"{script}"],
            env=px.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0 or len(done.stdout) < 3:
            return None
        return int(done.stdout[:3]), json.loads(done.stdout[3:])

    code, body = wait_for("the health check on the endpoint's node", lambda: probe(a))
    assert code == 200 and body["localEndpoints"] == 1 and body["service"] == {"namespace": ns, "name": "hc"}
    code, body = wait_for("the health check on the other node", lambda: probe(b))
    assert code == 503 and body["localEndpoints"] == 0


def test_metrics_and_healthz(px: Cluster) -> None:
    a, _ = nodes(px)
    addr = get(px, "node", a)["status"]["addresses"][0]["address"]
    metrics = kexec(px, "client", "curl", "-s", f"http://{addr}:10249/metrics")
    assert "kubeproxy_sync_proxy_rules_duration_seconds_count" in metrics
    assert "kubeproxy_sync_proxy_rules_last_timestamp_seconds" in metrics
    assert "kubeproxy_network_programming_duration_seconds_bucket" in metrics
    healthz = json.loads(kexec(px, "client", "curl", "-s", f"http://{addr}:10256/healthz"))
    assert {"lastUpdated", "currentTime"} <= set(healthz)


UDP_ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 40123))  # one fixed flow, as a long-lived UDP client keeps
s.settimeout(1.0)
s.sendto(b"hostname", (sys.argv[1], 81))
try:
    print(s.recv(100).decode())
except OSError:
    print("timeout")
"""


def test_udp_flows_follow_endpoint_changes(px: Cluster, ns: str) -> None:
    a, b = nodes(px)
    backends(px, ns, "dns", [a, b])
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "dns"},
        "spec": {
            "selector": {"app": "dns"},
            "ports": [{"name": "udp", "port": 81, "targetPort": 8081, "protocol": "UDP"}],
        },
    }
    apply(px, ns, body)
    ready_endpoints(px, ns, "dns", 2)
    ip = get(px, "-n", ns, "svc", "dns")["spec"]["clusterIP"]
    curler(px, ns, a)

    def ask() -> str:
        return kexec(px, "curler", "python3", "-c", UDP_ASK, ip, ns=ns).strip()

    first = wait_for("a UDP answer", lambda: (lambda r: r if r.startswith("dns-") else None)(ask()))
    px.kubectl("delete", "pod", "-n", ns, first, "--wait=true")
    other = "dns-1" if first == "dns-0" else "dns-0"
    # The same flow (same source port) moves to the remaining endpoint at once: its stale conntrack
    # entry was deleted, so it does not wait for the entry to expire.
    assert wait_for("the other endpoint", lambda: ask() == other, timeout=15)


HOLD = """
import socket, sys, os, time
s = socket.create_connection((sys.argv[1], 80), timeout=5)
print("connected", flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.05)
s.sendall(b"GET /hostname HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
print(s.recv(4096).decode().rsplit("\\r\\n", 1)[-1], flush=True)
"""


def test_restarted_proxy_keeps_established_connections(px: Cluster, ns: str, tmp_path: Any) -> None:
    a, _ = nodes(px)
    backends(px, ns, "keep", [a])
    svc = service(px, ns, "keep", "keep")
    ready_endpoints(px, ns, "keep", 1)
    curler(px, ns, a)
    url = f"http://{svc['spec']['clusterIP']}/hostname"
    assert wait_for("the service", lambda: fetch(px, "curler", url, ns).stdout) == "keep-0"
    go = tmp_path / "go"
    holder = subprocess.Popen(
        [*rt_cmd(px), "exec", "-n", ns, "curler", "--", "python3", "-c", HOLD, svc["spec"]["clusterIP"], str(go)],
        env=px.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "connected"
        # Kill every node agent (kube-proxy with it) and start them again: the first sync replaces
        # the whole table, and the established connection must carry on.
        state = px.state_dir / px.name
        for d in (state / "nodes").iterdir():
            os.kill(int((d / "agent.pid").read_text().split()[0]), signal.SIGKILL)
        assert px.kubewire("up", "--timeout", "30").returncode == 0
        wait_for("a fresh sync", lambda: fetch(px, "curler", url, ns).stdout == "keep-0")
        go.write_text("go")
        assert holder.stdout.readline().strip() == "keep-0"
    finally:
        holder.kill()
        holder.wait()

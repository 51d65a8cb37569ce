"""The control loops through the real API server and the real kubectl: allocation, scheduling,
workloads, rollout status and EndpointSlices.

There is no kubelet in these tests (that is the cluster runtime's job), so the test plays it:
it registers Nodes with a fresh heartbeat and writes pod status (IP, Ready) through the status
subresource, as a kubelet does.  Everything else is kubewire's controllers reacting.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any, TypeVar

from tests.conftest import Cluster, needs_kubectl, wait_for

pytestmark = needs_kubectl
T = TypeVar("T")


def get_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def heartbeat(cluster: Cluster, *nodes: str) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for node in nodes:
        cond = {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now}
        body = json.dumps({"status": {"conditions": [cond]}})
        cluster.kubectl("patch", "node", node, "--subresource=status", "--type=merge", "-p", body)


def register_nodes(cluster: Cluster) -> None:
    for i, zone in ((1, "zone-a"), (2, "zone-b")):
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": f"node-{i}", "labels": {"topology.kubernetes.io/zone": zone}},
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(node))
    heartbeat(cluster, "node-1", "node-2")


def play_kubelet(cluster: Cluster, pod: dict[str, Any], ip: str, ready: bool = True) -> None:
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    name = pod["metadata"]["name"]
    cluster.kubectl("patch", "pod", name, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}))


def pods_of(cluster: Cluster, selector: str) -> list[dict[str, Any]]:
    return list(get_json(cluster, "pods", "-l", selector)["items"])


def test_deployment_scheduled_rolled_out_and_in_endpointslices(cluster: Cluster) -> None:
    register_nodes(cluster)
    cluster.kubectl(
        "create",
        "deployment",
        "web",
        "--image=registry.k8s.io/e2e-test-images/agnhost:2.53",
        "--replicas=4",
        "--port=8080",
    )
    cluster.kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")

    def bound() -> list[dict[str, Any]] | None:
        pods = pods_of(cluster, "app=web")
        return pods if len(pods) == 4 and all(p["spec"].get("nodeName") for p in pods) else None

    pods = wait_for("4 web pods bound to nodes", bound)
    rs = get_json(cluster, "rs", "-l", "app=web")["items"]
    assert len(rs) == 1
    rs_name = rs[0]["metadata"]["name"]
    assert re.fullmatch(r"web-[bcdfghjklmnpqrstvwxz2456789]+", rs_name)
    for p in pods:
        assert re.fullmatch(rf"{rs_name}-[bcdfghjklmnpqrstvwxz2456789]{{5}}", p["metadata"]["name"])
        assert p["metadata"]["labels"]["pod-template-hash"] == rs_name.removeprefix("web-")
    assert Counter(p["spec"]["nodeName"] for p in pods) == {"node-1": 2, "node-2": 2}

    heartbeat(cluster, "node-1", "node-2")
    for i, p in enumerate(pods):
        play_kubelet(cluster, p, f"10.244.{1 if p['spec']['nodeName'] == 'node-1' else 2}.{i + 10}")
    status = cluster.kubectl("rollout", "status", "deployment/web", "--timeout=30s")
    assert 'deployment "web" successfully rolled out' in status.stdout

    svc = get_json(cluster, "svc", "web")
    assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in ipaddress.ip_network("10.96.0.0/16")
    assert svc["spec"]["ipFamilies"] == ["IPv4"] and svc["spec"]["ipFamilyPolicy"] == "SingleStack"

    def slice_endpoints() -> list[dict[str, Any]] | None:
        slices = get_json(cluster, "endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
        eps = [ep for s in slices for ep in s.get("endpoints") or []]
        return eps if len(eps) == 4 and all(ep["conditions"]["ready"] for ep in eps) else None

    eps = wait_for("4 ready endpoints", slice_endpoints)
    assert {ep["zone"] for ep in eps} == {"zone-a", "zone-b"}
    slices = get_json(cluster, "endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
    assert slices[0]["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    assert (
        slices[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    )

    # a readiness change reaches the slice
    play_kubelet(cluster, pods[0], _ip_of(cluster, pods[0]), ready=False)

    def not_ready() -> bool:
        slices = get_json(cluster, "endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
        return any(
            ep["targetRef"]["name"] == pods[0]["metadata"]["name"] and not ep["conditions"]["ready"]
            for s in slices
            for ep in s.get("endpoints") or []
        )

    wait_for("the not-ready pod marked in its slice", not_ready)

    describe = cluster.kubectl("describe", "deployment", "web").stdout
    assert "ScalingReplicaSet" in describe and f"Scaled up replica set {rs_name}" in describe


def _ip_of(cluster: Cluster, pod: dict[str, Any]) -> str:
    live = get_json(cluster, "pod", pod["metadata"]["name"])
    return str(live["status"]["podIP"])


def test_requested_cluster_ip_and_node_port_conflicts_are_refused(cluster: Cluster) -> None:
    def svc(name: str, **spec: Any) -> str:
        base = {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": name}}
        return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {**base, **spec}})

    cluster.kubectl("apply", "-f", "-", input=svc("fixed", clusterIP="10.96.100.100"))
    taken = cluster.kubectl("apply", "-f", "-", input=svc("fixed2", clusterIP="10.96.100.100"), check=False)
    assert taken.returncode != 0
    assert "spec.clusterIPs" in taken.stderr and "provided IP is already allocated" in taken.stderr
    outside = cluster.kubectl("apply", "-f", "-", input=svc("fixed3", clusterIP="10.97.0.1"), check=False)
    assert outside.returncode != 0 and "provided IP is not in the valid range" in outside.stderr

    np = {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]}
    cluster.kubectl("apply", "-f", "-", input=svc("np1", **np))
    clash = cluster.kubectl("apply", "-f", "-", input=svc("np2", **np), check=False)
    assert clash.returncode != 0 and "provided port is already allocated" in clash.stderr
    # deleting the holder frees the port
    cluster.kubectl("delete", "svc", "np1")
    cluster.kubectl("apply", "-f", "-", input=svc("np2", **np))
    assert get_json(cluster, "svc", "np2")["spec"]["ports"][0]["nodePort"] == 30080


def test_a_pod_that_fits_nowhere_stays_pending_with_an_event(cluster: Cluster) -> None:
    register_nodes(cluster)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "picky"},
        "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "nginx"}]},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def failed() -> str | None:
        events = get_json(cluster, "events", "--field-selector", "involvedObject.name=picky")["items"]
        return next((e["message"] for e in events if e["reason"] == "FailedScheduling"), None)

    message = wait_for("a FailedScheduling event", failed)
    assert "0/2 nodes are available" in message and "node affinity/selector" in message
    live = get_json(cluster, "pod", "picky")
    assert not live["spec"].get("nodeName")
    cond = next(c for c in live["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable"


def test_statefulset_pods_have_ordinal_names_and_stable_hostnames(cluster: Cluster) -> None:
    register_nodes(cluster)
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 2,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(sts))
    first = wait_for("db-0", lambda: next((p for p in pods_of(cluster, "app=db") if p["spec"].get("nodeName")), None))
    assert first["metadata"]["name"] == "db-0"
    assert first["spec"]["hostname"] == "db-0" and first["spec"]["subdomain"] == "db"
    assert len(pods_of(cluster, "app=db")) == 1  # OrderedReady: db-1 waits for db-0
    play_kubelet(cluster, first, "10.244.1.50")
    second = wait_for(
        "db-1", lambda: next((p for p in pods_of(cluster, "app=db") if p["metadata"]["name"] == "db-1"), None)
    )
    assert second["spec"]["hostname"] == "db-1"

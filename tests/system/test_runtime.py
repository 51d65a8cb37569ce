"""The cluster runtime with real traffic: namespaces as nodes and pods, real processes, kubectl.

One dual-stack cluster of two nodes per module (``kubewire up``), torn down with ``kubewire down``
even when a test fails; each test works in its own Kubernetes namespace and waits on conditions.
Needs root and iproute2; skipped elsewhere with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import Cluster, start_cluster, wait_for
from tests.system.helpers import apply, curl, get, kexec, namespace_fixture, nodes, pod, ready_pod, rt_cmd

ns = namespace_fixture("rt")

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed"),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]
T = TypeVar("T")
NAME = f"kws{os.getpid() % 100000}"


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("rt"),
        NAME,
        ("--nodes", "2", "--zones", "2", "--ip-family", "dual", "--node-monitor-grace-period", "4"),
    )
    try:
        yield c
    finally:
        c.kubewire("down", check=False)


def test_nodes_register_ready_with_addresses_zones_and_pod_cidrs(rt: Cluster) -> None:
    items = wait_for("2 nodes", lambda: (lambda i: i if len(i) == 2 else None)(get(rt, "nodes")["items"]))
    zones = set()
    for node in items:
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
        ips = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert ips[0].startswith("172.18.0.") and ips[1].startswith("fc00:f853:ccd:e793::")
        assert len(node["spec"]["podCIDRs"]) == 2
        zones.add(node["metadata"]["labels"]["topology.kubernetes.io/zone"])
    assert zones == {"zone-a", "zone-b"}


def test_pod_to_pod_same_node_across_nodes_node_to_pod_and_ipv6(rt: Cluster, ns: str) -> None:
    a, b = nodes(rt)
    for name, node in (("srv", a), ("near", a), ("far", b)):
        apply(rt, ns, pod(name, "registry.k8s.io/e2e-test-images/agnhost:2.53", node, container={"args": ["netexec"]}))
    srv = ready_pod(rt, ns, "srv")
    ready_pod(rt, ns, "near")
    ready_pod(rt, ns, "far")
    v4, v6 = (p["ip"] for p in srv["status"]["podIPs"])
    assert srv["status"]["hostIP"].startswith("172.18.0.")
    # Same node, across nodes (the source address arrives unchanged: no NAT), node to pod, IPv6.
    near_ip = get(rt, "-n", ns, "pod", "near")["status"]["podIP"]
    far_ip = get(rt, "-n", ns, "pod", "far")["status"]["podIP"]
    assert curl(rt, "near", f"http://{v4}:8080/clientip", ns).startswith(near_ip + ":")
    assert curl(rt, "far", f"http://{v4}:8080/clientip", ns).startswith(far_ip + ":")
    assert curl(rt, "far", f"http://[{v6}]:8080/hostname", ns) == "srv"
    assert curl(rt, f"node/{b}", f"http://{v4}:8080/hostname") == "srv"
    # Each pod has its own resolv.conf and hosts, as the kubelet writes them.
    resolv = kexec(rt, "far", "cat", "/etc/resolv.conf", ns=ns)
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "nameserver 10.96.0.10" in resolv and "ndots:5" in resolv
    assert "far" in kexec(rt, "far", "cat", "/etc/hosts", ns=ns)


def test_downward_api_env_configmap_and_logs(rt: Cluster, ns: str) -> None:
    rt.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=greeting=hello")
    env = [
        {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
    ]
    script = 'echo "$GREETING from $MY_POD at $MY_IP"; sleep 3600'
    apply(rt, ns, pod("envy", "busybox", container={"command": ["sh", "-c", script], "env": env}))
    p = ready_pod(rt, ns, "envy")
    want = f"hello from envy at {p['status']['podIP']}"
    wait_for("the log line", lambda: want in rt.kubectl("logs", "-n", ns, "envy").stdout)
    assert rt.kubectl("logs", "-n", ns, "envy", "--tail=1").stdout.strip() == want
    # kubewire exec gives a command the container's environment, as kubectl exec does.
    assert kexec(rt, "envy", "sh", "-c", "echo $GREETING $MY_POD", ns=ns).strip() == "hello envy"


def test_crashing_container_restarts_and_serves_again(rt: Cluster, ns: str) -> None:
    apply(rt, ns, pod("crashy", "registry.k8s.io/e2e-test-images/agnhost:2.53", container={"args": ["netexec"]}))
    ready_pod(rt, ns, "crashy")
    # netexec exits at once on /exit, so the request itself may see the connection close.
    subprocess.run(
        [
            *rt_cmd(rt),
            "exec",
            "-n",
            ns,
            "crashy",
            "--",
            "curl",
            "-s",
            "--max-time",
            "5",
            "http://127.0.0.1:8080/exit?code=3",
        ],
        env=rt.env,
        capture_output=True,
        timeout=20,
    )

    def restarted() -> dict[str, Any] | None:
        p = get(rt, "-n", ns, "pod", "crashy")
        st = p["status"]["containerStatuses"][0]
        return p if st["restartCount"] >= 1 and st["ready"] else None

    p = wait_for("a restart", restarted)
    last = p["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"
    assert curl(rt, "crashy", "http://127.0.0.1:8080/hostname", ns) == "crashy"
    previous = rt.kubectl("logs", "-n", ns, "crashy", "--previous", check=False)
    assert previous.returncode == 0, previous.stderr


def test_failing_readiness_probe_leaves_and_rejoins_the_endpointslice(rt: Cluster, ns: str, tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    flag.write_text("ok")
    probe = {"exec": {"command": ["test", "-f", str(flag)]}, "periodSeconds": 1, "failureThreshold": 1}
    apply(
        rt,
        ns,
        pod(
            "probed",
            "registry.k8s.io/e2e-test-images/agnhost:2.53",
            container={"args": ["netexec"], "readinessProbe": probe},
        ),
    )
    rt.kubectl("expose", "pod", "probed", "-n", ns, "--port=80", "--target-port=8080")
    ready_pod(rt, ns, "probed")

    def endpoint_ready() -> bool | None:
        slices = get(rt, "-n", ns, "endpointslices", "-l", "kubernetes.io/service-name=probed")["items"]
        eps = [e for s in slices for e in s.get("endpoints") or []]
        return eps[0]["conditions"]["ready"] if eps else None

    wait_for("ready endpoint", lambda: endpoint_ready() is True)
    flag.unlink()
    wait_for("not-ready endpoint", lambda: endpoint_ready() is False)
    flag.write_text("ok")
    wait_for("ready endpoint again", lambda: endpoint_ready() is True)


def test_graceful_deletion_runs_prestop_then_sigterm(rt: Cluster, ns: str, tmp_path: Path) -> None:
    marker = tmp_path / "prestop"
    hook = {"preStop": {"exec": {"command": ["sh", "-c", f"echo stopped > {marker}"]}}}
    apply(rt, ns, pod("graceful", "busybox", container={"command": ["sleep", "3600"], "lifecycle": hook}))
    ready_pod(rt, ns, "graceful")
    rt.kubectl("delete", "pod", "graceful", "-n", ns, "--timeout=30s")
    assert marker.read_text().strip() == "stopped"


def test_unsupported_image_waits_with_a_clear_reason(rt: Cluster, ns: str) -> None:
    apply(rt, ns, pod("mystery", "example.com/no-such-app:1"))

    def waiting() -> dict[str, Any] | None:
        st = (get(rt, "-n", ns, "pod", "mystery")["status"].get("containerStatuses") or [{}])[0]
        return (
            (st.get("state") or {}).get("waiting")
            if st.get("state", {}).get("waiting", {}).get("reason") == "ErrImageNeverPull"
            else None
        )

    w = wait_for("the waiting reason", waiting)
    assert "example.com/no-such-app:1" in w["message"] and "agnhost" in w["message"]


def test_node_stop_makes_it_not_ready_and_its_pods_leave_endpoints(rt: Cluster, ns: str) -> None:
    a, b = nodes(rt)
    apply(rt, ns, pod("victim", "registry.k8s.io/e2e-test-images/agnhost:2.53", b, container={"args": ["netexec"]}))
    rt.kubectl("expose", "pod", "victim", "-n", ns, "--port=80", "--target-port=8080")
    ready_pod(rt, ns, "victim")
    rt.kubewire("node", "stop", b)
    try:

        def node_ready(want: str) -> bool:
            node = get(rt, "node", b)
            return any(c["type"] == "Ready" and c["status"] == want for c in node["status"]["conditions"])

        wait_for("NotReady", lambda: node_ready("Unknown"), timeout=40)

        def endpoint_ready() -> bool | None:
            slices = get(rt, "-n", ns, "endpointslices", "-l", "kubernetes.io/service-name=victim")["items"]
            eps = [e for s in slices for e in s.get("endpoints") or []]
            return eps[0]["conditions"]["ready"] if eps else None

        wait_for("endpoint not ready", lambda: endpoint_ready() is False)
        # The fabric link is down: the other node cannot reach the pod.
        v4 = get(rt, "-n", ns, "pod", "victim")["status"]["podIP"]
        proc = subprocess.run(
            [*rt_cmd(rt), "exec", f"node/{a}", "--", "curl", "-sS", "--max-time", "1", f"http://{v4}:8080/"],
            env=rt.env,
            capture_output=True,
            timeout=20,
        )
        assert proc.returncode != 0
    finally:
        rt.kubewire("node", "start", b)
    wait_for("Ready again", lambda: node_ready("True"), timeout=40)


def test_kill_9_then_up_adopts_the_running_cluster(rt: Cluster, ns: str, tmp_path: Path) -> None:
    apply(rt, ns, pod("survivor", "registry.k8s.io/e2e-test-images/agnhost:2.53", container={"args": ["netexec"]}))
    trigger = tmp_path / "exit-now"
    waiter = f"while [ ! -f {trigger} ]; do sleep 0.1; done; exit 7"
    apply(rt, ns, pod("waiter", "busybox", container={"command": ["sh", "-c", waiter]}))
    ready_pod(rt, ns, "waiter")
    before = ready_pod(rt, ns, "survivor")
    cid = before["status"]["containerStatuses"][0]["containerID"]
    netns_before = set(os.listdir("/run/netns"))
    state = rt.state_dir / rt.name
    pids = [int((state / "controlplane.pid").read_text())]
    pids += [int((d / "agent.pid").read_text().split()[0]) for d in (state / "nodes").iterdir()]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        wait_for(f"pid {pid} gone", lambda pid=pid: not Path(f"/proc/{pid}").exists() or _reap(pid))
    up = rt.kubewire("up", "--timeout", "30")
    assert up.returncode == 0, up.stderr
    assert set(os.listdir("/run/netns")) == netns_before  # nothing duplicated, nothing lost
    after = ready_pod(rt, ns, "survivor")
    st = after["status"]["containerStatuses"][0]
    assert st["containerID"] == cid and st["restartCount"] == 0
    assert curl(rt, "survivor", "http://127.0.0.1:8080/hostname", ns) == "survivor"
    # A container that ends after the agents were replaced still reports its real exit code.
    trigger.write_text("go")

    def exited() -> dict[str, Any] | None:
        st = get(rt, "-n", ns, "pod", "waiter")["status"]["containerStatuses"][0]
        return st if st["restartCount"] >= 1 else None

    assert wait_for("the waiter's restart", exited)["lastState"]["terminated"]["exitCode"] == 7


def _reap(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return not Path(f"/proc/{pid}/stat").exists() or Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"


def test_down_removes_every_namespace_and_process(tmp_path: Path) -> None:
    c = start_cluster(tmp_path, "kwdown", ("--nodes", "1"))
    state = tmp_path / "kwdown"
    owned = (state / "netns.owned").read_text().split()
    try:
        assert owned and all(Path("/run/netns", n).exists() for n in owned)
        # The DNS add-on's pods start the cluster's zygote: the processes down must end.
        wait_for("the zygote", lambda: (state / "zygote.pid").exists())
        pids = [int((state / "zygote.pid").read_text().split()[0]), int((state / "controlplane.pid").read_text())]
        pids += [int((d / "agent.pid").read_text().split()[0]) for d in (state / "nodes").iterdir()]
    finally:
        c.kubewire("down", check=False)
    assert not any(Path("/run/netns", n).exists() for n in owned)
    assert not state.exists()
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []


def test_liveness_failure_restarts_the_container(rt: Cluster, ns: str, tmp_path: Path) -> None:
    flag = tmp_path / "alive"
    flag.write_text("ok")
    probe = {"exec": {"command": ["test", "-f", str(flag)]}, "periodSeconds": 1, "failureThreshold": 1}
    apply(rt, ns, pod("lively", "busybox", container={"command": ["sleep", "3600"], "livenessProbe": probe}))
    ready_pod(rt, ns, "lively")
    flag.unlink()

    def restarted() -> dict[str, Any] | None:
        st = get(rt, "-n", ns, "pod", "lively")["status"]["containerStatuses"][0]
        return st if st["restartCount"] >= 1 else None

    st = wait_for("a liveness restart", restarted)
    assert st["lastState"]["terminated"]["exitCode"] == 137 or st["lastState"]["terminated"]["signal"] in (9, 15)
    events = rt.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=lively").stdout
    assert "failed liveness probe, will be restarted" in events


def test_host_network_pod_runs_in_its_node_namespace(rt: Cluster, ns: str) -> None:
    a, _ = nodes(rt)
    body = pod("hostnet", "registry.k8s.io/e2e-test-images/agnhost:2.53", a, hostNetwork=True)
    body["spec"]["containers"][0]["args"] = ["netexec", "--http-port=18080"]
    apply(rt, ns, body)
    p = ready_pod(rt, ns, "hostnet")
    node_ip = get(rt, "node", a)["status"]["addresses"][0]["address"]
    assert p["status"]["podIP"] == node_ip == p["status"]["hostIP"]
    assert curl(rt, "client", f"http://{node_ip}:18080/hostname") == a  # hostNetwork: the node's hostname


def netexec_on_each_node(c: Cluster, first: str, second: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two agnhost netexec pods in ``default``, one on each of the cluster's two nodes, Ready."""
    a, b = sorted(n["metadata"]["name"] for n in get(c, "nodes")["items"])
    for name, node in ((first, a), (second, b)):
        body = pod(name, "registry.k8s.io/e2e-test-images/agnhost:2.53", node, container={"args": ["netexec"]})
        c.kubectl("apply", "-f", "-", input=json.dumps(body))
    return ready_pod(c, "default", first), ready_pod(c, "default", second)


def test_vxlan_overlay_cluster_beside_the_routed_one(rt: Cluster, tmp_path: Path) -> None:
    other = start_cluster(tmp_path, "kwvx", ("--nodes", "2", "--pod-network", "vxlan"))
    try:
        one, two = netexec_on_each_node(other, "one", "two")
        b = two["spec"]["nodeName"]
        ip = one["status"]["podIP"]
        assert curl(other, "two", f"http://{ip}:8080/hostname") == "one"
        assert "mtu 1450" in kexec(other, "two", "ip", "link", "show", "eth0")
        assert "kw-vxlan" in kexec(other, f"node/{b}", "ip", "-d", "link", "show", "kw-vxlan")
    finally:
        other.kubewire("down", check=False)
    # The first cluster, with the same addresses inside its own namespaces, was never disturbed.
    assert len(get(rt, "nodes")["items"]) == 2


def test_down_after_a_crash_removes_the_leftovers(tmp_path: Path) -> None:
    c = start_cluster(tmp_path, "kwcrash", ("--nodes", "1"))
    state = tmp_path / "kwcrash"
    c.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(pod("left", "registry.k8s.io/e2e-test-images/agnhost:2.53", container={"args": ["netexec"]})),
    )
    ready_pod(c, "default", "left")
    owned = (state / "netns.owned").read_text().split()
    pids = [int((state / "controlplane.pid").read_text()), int((state / "zygote.pid").read_text().split()[0])]
    pids += [int((d / "agent.pid").read_text().split()[0]) for d in (state / "nodes").iterdir()]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    inodes = {os.stat(f"/run/netns/{n}").st_ino for n in owned}
    c.kubewire("down")
    assert not any(Path("/run/netns", n).exists() for n in owned)
    survivors = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    survivors.append(entry)
    assert survivors == []


def test_down_keep_state_then_up_recreates_sandboxes(tmp_path: Path) -> None:
    c = start_cluster(tmp_path, "kwkeep", ("--nodes", "1"))
    try:
        c.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(
                pod("kept", "registry.k8s.io/e2e-test-images/agnhost:2.53", container={"args": ["netexec"]})
            ),
        )
        ready_pod(c, "default", "kept")
        c.kubewire("down", "--keep-state")
        assert c.kubewire("up", "--timeout", "30").returncode == 0
        after = ready_pod(c, "default", "kept")
        ip = after["status"]["podIP"]
        assert curl(c, "kept", f"http://{ip}:8080/hostname") == "kept"
    finally:
        c.kubewire("down", check=False)


def test_failing_container_goes_into_crash_loop_backoff(rt: Cluster, ns: str) -> None:
    apply(rt, ns, pod("failing", "busybox", container={"command": ["sh", "-c", "echo bye; exit 2"]}))

    def backing_off() -> dict[str, Any] | None:
        st = (get(rt, "-n", ns, "pod", "failing")["status"].get("containerStatuses") or [{}])[0]
        waiting = (st.get("state") or {}).get("waiting") or {}
        return st if waiting.get("reason") == "CrashLoopBackOff" else None

    st = wait_for("CrashLoopBackOff", backing_off)
    assert st["restartCount"] >= 1
    assert st["lastState"]["terminated"]["exitCode"] == 2
    assert "back-off 10s restarting failed container=c pod=failing_" in st["state"]["waiting"]["message"]
    assert rt.kubectl("logs", "-n", ns, "failing", "--previous").stdout.strip() == "bye"


def test_init_containers_run_in_order_before_the_app(rt: Cluster, ns: str, tmp_path: Path) -> None:
    trail = tmp_path / "trail"
    inits = [
        {"name": "first", "image": "busybox", "command": ["sh", "-c", f"echo first >> {trail}"]},
        {"name": "second", "image": "busybox", "command": ["sh", "-c", f"echo second >> {trail}"]},
    ]
    body = pod("inits", "busybox", container={"command": ["sh", "-c", f"echo app >> {trail}; sleep 3600"]})
    body["spec"]["initContainers"] = inits
    apply(rt, ns, body)
    p = ready_pod(rt, ns, "inits")
    wait_for("the app's line", lambda: trail.exists() and trail.read_text().count("\n") == 3)
    assert trail.read_text().split() == ["first", "second", "app"]
    assert [s["state"]["terminated"]["reason"] for s in p["status"]["initContainerStatuses"]] == ["Completed"] * 2


def test_logs_follow_streams_new_output(rt: Cluster, ns: str) -> None:
    script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
    apply(rt, ns, pod("ticker", "busybox", container={"command": ["sh", "-c", script]}))
    ready_pod(rt, ns, "ticker")
    follow = subprocess.Popen(
        ["kubectl", "logs", "-f", "-n", ns, "ticker"], env=rt.env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert follow.stdout is not None
        lines = [follow.stdout.readline().strip() for _ in range(8)]
        assert lines[0].startswith("tick ") and lines[-1].startswith("tick ")
        assert int(lines[-1].split()[1]) > int(lines[0].split()[1])
    finally:
        follow.kill()
        follow.wait()


def test_ipv6_only_cluster(tmp_path: Path) -> None:
    c = start_cluster(tmp_path, "kwsix", ("--nodes", "2", "--ip-family", "ipv6"))
    try:
        one, _ = netexec_on_each_node(c, "six1", "six2")
        ip = one["status"]["podIP"]
        assert ":" in ip and len(one["status"]["podIPs"]) == 1
        assert curl(c, "six2", f"http://[{ip}]:8080/hostname") == "six1"
        assert "nameserver fd00:10:96::a" in kexec(c, "six2", "cat", "/etc/resolv.conf")
    finally:
        c.kubewire("down", check=False)

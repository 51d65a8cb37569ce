"""kubelet-lite end to end without root: a real Store, FakeNetlink, and containers run on this host.

The kubelet runs as a task against an in-process store; node IPAM's part (the pod CIDR) is played
by the test.  Containers are machine commands started by :class:`HostSpawner` outside any
namespace, so only exec probes and hooks are used (they run on the host too): nothing here opens a
socket to a pod address, and no built-in workload server is ever started.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubewire.agents.kubelet import sandbox
from kubewire.api.coordination import LEASE, NODE_LEASE_NAMESPACE
from kubewire.api.core import NODE
from kubewire.api.pod import POD
from kubewire.dataplane import podnet
from kubewire.errors import NotFound
from tests.unit.kubelet_fakes import (
    CLUSTER,
    NODE_IP,
    NODE_NAME,
    NODE_NS,
    POD_CIDR,
    ZONE,
    KubeletHarness,
    condition,
    container_status,
    pid_running,
)

pytestmark = pytest.mark.timeout(60)

BUSYBOX = "busybox:1.36"
SLEEP = ["sleep", "3600"]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[KubeletHarness]:
    state = tmp_path / "state"
    short: str | None = None
    if len(str(state / "nodes" / NODE_NAME / "kubelet.sock")) > 100:  # AF_UNIX path limit
        short = tempfile.mkdtemp(prefix="kwk-")
        state = Path(short)
    harness = KubeletHarness(state)
    await harness.build_node_namespace()
    try:
        yield harness
    finally:
        await harness.close()
        leftovers = [s.pid for s in harness.ledger if s.popen is not None and s.popen.returncode is None]
        if short is not None:
            shutil.rmtree(short, ignore_errors=True)
        assert not leftovers, f"processes left behind: {leftovers}"


def container(name: str = "c", command: list[str] | None = None, **extra: object) -> dict[str, object]:
    return {"name": name, "image": BUSYBOX, "command": command or SLEEP, **extra}


def exec_probe(*argv: str, period: int = 1, failures: int = 1) -> dict[str, object]:
    return {"exec": {"command": list(argv)}, "periodSeconds": period, "failureThreshold": failures}


# ------------------------------------------------------------------------------ 1 registration


async def test_node_registers_ready_with_addresses_zone_capacity_and_a_renewed_lease(h: KubeletHarness) -> None:
    await h.start_kubelet()
    node = h.node_or_none()
    assert node is not None
    status = node["status"]
    assert {"type": "InternalIP", "address": NODE_IP} in status["addresses"]
    assert {"type": "Hostname", "address": NODE_NAME} in status["addresses"]
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == ZONE
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == NODE_NAME
    ready = condition(node, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    assert status["capacity"]["pods"] == "110"
    assert node["spec"]["podCIDRs"] == [POD_CIDR]

    async def lease() -> dict[str, Any] | None:
        with contextlib.suppress(NotFound):
            return await h.client.get(LEASE, NODE_NAME, NODE_LEASE_NAMESPACE)
        return None

    first = await h.wait(lease, what="the node Lease")
    spec = first["spec"]
    assert isinstance(spec, dict)
    assert spec["holderIdentity"] == NODE_NAME and spec["leaseDurationSeconds"] == 40
    owner = first["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Node", NODE_NAME, node["metadata"]["uid"])

    async def renewed() -> str | None:
        current = await lease()
        renew = str((current or {}).get("spec", {}).get("renewTime", ""))
        return renew if renew > str(spec["renewTime"]) else None

    await h.wait(renewed, timeout=5, what="the Lease's renewTime to advance")


# ------------------------------------------------------------------------------ 2 a running pod


async def test_a_bound_pod_runs_ready_with_an_address_from_the_node_cidr(h: KubeletHarness) -> None:
    await h.start_kubelet()
    created = await h.create_pod("web", [container()])
    uid = created["metadata"]["uid"]
    pod = await h.wait(
        lambda: (p := h.pod("web")) and condition(p, "Ready").get("status") == "True" and p, what="web Ready"
    )
    status = pod["status"]
    assert status["phase"] == "Running"
    ip = ipaddress.ip_address(status["podIP"])
    net = ipaddress.ip_network(POD_CIDR)
    assert ip in net and ip not in (net.network_address, net.network_address + 1)
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == NODE_IP and status["hostIPs"] == [{"ip": NODE_IP}]
    for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled"):
        assert condition(pod, kind)["status"] == "True", kind
    st = container_status(pod)
    assert st["containerID"].startswith("kubewire://") and len(st["containerID"]) > len("kubewire://")
    assert "running" in st["state"] and st["ready"] is True and st["restartCount"] == 0 and st["started"] is True
    await h.wait(lambda: {"Created", "Started"} <= set(h.event_reasons(pod)), what="Created and Started events")
    started = next(e for e in h.events(pod) if e["reason"] == "Started")
    assert started["message"] == "Started container c" and started["source"]["host"] == NODE_NAME

    # The sandbox: the pod's namespace, the veth pair, the addresses and routes.
    pod_ns = sandbox.pod_netns(CLUSTER, uid)
    veth = podnet.pod_veth(uid)
    assert pod_ns in await h.netlink.list_netns()
    node_end = h.netlink.link(NODE_NS, veth)
    assert node_end.peer == (pod_ns, "eth0")
    assert f"{status['podIP']}/32" in h.netlink.link(pod_ns, "eth0").addresses
    assert "10.244.0.1/32" in node_end.addresses
    assert f"{status['podIP']}/32" in await h.netlink.routes(NODE_NS)
    assert (h.config.node_dir / "ipam" / status["podIP"]).read_text() == f"{uid}\n"

    # The kubelet asked for the pod's sandbox (the unit-test spawner does not enter it).
    assert h.spawner is not None
    box = h.spawner.boxes[0]
    assert box.netns == pod_ns and box.hostname == "web"
    assert {target for _, target in box.mounts} == {"/etc/resolv.conf", "/etc/hosts", "/etc/hostname"}
    resolv = (h.pod_dir(pod) / "resolv.conf").read_text()
    assert "nameserver 10.96.0.10" in resolv and "search default.svc.cluster.local" in resolv
    pid = h.container_pid(pod, "c")
    assert pid_running(pid)


# ------------------------------------------------------------------------------ 3 restart policy


async def test_restart_policies_crash_loop_failed_and_succeeded(h: KubeletHarness) -> None:
    await h.start_kubelet()
    crash = await h.create_pod("crash", [container(command=["sh", "-c", "exit 3"])], restartPolicy="Always")
    never = await h.create_pod("never", [container(command=["sh", "-c", "exit 3"])], restartPolicy="Never")
    done = await h.create_pod("done", [container(command=["sh", "-c", "exit 0"])], restartPolicy="OnFailure")

    def backing_off() -> dict[str, object] | None:
        st = container_status(h.pod("crash"))
        return st if st.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff" else None

    st = await h.wait(backing_off, what="crash in CrashLoopBackOff")
    uid = crash["metadata"]["uid"]
    assert st["restartCount"] == 1  # the first restart came at once; the second waits 10 s
    assert st["state"] == {
        "waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off 10s restarting failed container=c pod=crash_default({uid})",
        }
    }
    last = st["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (3, "Error")
    assert st["ready"] is False
    pod = h.pod("crash")
    assert pod is not None and pod["status"]["phase"] == "Running"
    await h.wait(lambda: "BackOff" in h.event_reasons(crash), what="a BackOff event")
    backoff = next(e for e in h.events(crash) if e["reason"] == "BackOff")
    assert backoff["message"] == f"Back-off restarting failed container c in pod crash_default({uid})"
    assert "Pulled" in h.event_reasons(crash)  # the restart "found the image present"

    failed = await h.wait(
        lambda: (p := h.pod("never")) and p["status"].get("phase") == "Failed" and p, what="never Failed"
    )
    ready = condition(failed, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodFailed")
    st = container_status(failed)
    assert st["restartCount"] == 0
    assert (st["state"]["terminated"]["exitCode"], st["state"]["terminated"]["reason"]) == (3, "Error")

    succeeded = await h.wait(
        lambda: (p := h.pod("done")) and p["status"].get("phase") == "Succeeded" and p, what="done Succeeded"
    )
    assert condition(succeeded, "Ready")["reason"] == "PodCompleted"
    st = container_status(succeeded)
    assert st["restartCount"] == 0
    assert (st["state"]["terminated"]["exitCode"], st["state"]["terminated"]["reason"]) == (0, "Completed")
    assert never["metadata"]["uid"] != done["metadata"]["uid"]


# ------------------------------------------------------------------------------ 4 readiness


async def test_readiness_exec_probe_drives_ready_both_ways(h: KubeletHarness, tmp_path: Path) -> None:
    flag = tmp_path / "ready-flag"
    await h.start_kubelet()
    await h.create_pod("probed", [container(readinessProbe=exec_probe("test", "-f", str(flag)))])
    assert h.spawner is not None
    spawner = h.spawner

    def ready_is(value: str) -> bool:
        pod = h.pod("probed")
        return (
            pod is not None
            and pod["status"].get("phase") == "Running"
            and condition(pod, "Ready").get("status") == value
        )

    await h.wait(lambda: ["test", "-f", str(flag)] in spawner.execs, what="the readiness probe to run")
    await h.wait(lambda: ready_is("False"), what="probed Running and not Ready")
    pod = h.pod("probed")
    assert condition(pod, "Ready")["reason"] == "ContainersNotReady"
    assert condition(pod, "Ready")["message"] == "containers with unready status: [c]"
    assert container_status(pod)["ready"] is False

    flag.touch()
    await h.wait(lambda: ready_is("True"), timeout=5, what="Ready after the file appears")
    flag.unlink()
    await h.wait(lambda: ready_is("False"), timeout=5, what="not Ready after the file goes")
    assert container_status(h.pod("probed"))["restartCount"] == 0  # readiness never restarts
    flag.touch()
    await h.wait(lambda: ready_is("True"), timeout=5, what="Ready again")


# ------------------------------------------------------------------------------ 5 liveness


async def test_failing_liveness_probe_kills_and_restarts_the_container(h: KubeletHarness, tmp_path: Path) -> None:
    sick = tmp_path / "sick"
    # Healthy until ``sick`` appears; the failing run consumes it, so the restarted container is healthy.
    probe = exec_probe("sh", "-c", f"test ! -f {sick} || {{ rm -f {sick}; echo sick; exit 1; }}")
    await h.start_kubelet()
    created = await h.create_pod("alive", [container(livenessProbe=probe)])
    await h.wait(lambda: condition(h.pod("alive"), "Ready").get("status") == "True", what="alive Ready")
    assert h.spawner is not None
    spawner = h.spawner
    await h.wait(lambda: len(spawner.execs) >= 2, what="two passing liveness probes")
    first = spawner.started[0]
    assert container_status(h.pod("alive"))["restartCount"] == 0

    sick.touch()
    st = await h.wait(
        lambda: (s := container_status(h.pod("alive"))).get("restartCount", 0) == 1 and "running" in s["state"] and s,
        timeout=5,
        what="a restart after the liveness failure",
    )
    last = st["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"], last.get("signal")) == (143, "Error", 15)  # SIGTERM, within the grace
    assert not pid_running(first.pid) and first.popen is not None and first.popen.returncode == -signal.SIGTERM
    assert len(spawner.started) == 2 and h.container_pid(created, "c") == spawner.started[1].pid
    await h.wait(lambda: "Killing" in h.event_reasons(created), what="a Killing event")
    messages = {e["reason"]: e["message"] for e in h.events(created) if e["reason"] in ("Killing", "Unhealthy")}
    assert messages["Killing"] == "Container c failed liveness probe, will be restarted"
    assert messages["Unhealthy"] == "Liveness probe failed: sick\n"


# ------------------------------------------------------------------------------ 6 env


async def test_env_downward_api_and_a_configmap_that_appears_later(h: KubeletHarness, tmp_path: Path) -> None:
    out = tmp_path / "env.out"
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}},
    ]
    script = f'echo "$POD_NAME $POD_IP $FROM_CM" > {out}; echo "hello $POD_NAME"; exec sleep 3600'
    await h.start_kubelet()
    created = await h.create_pod("env-pod", [container(command=["sh", "-c", script], env=env)])

    def waiting() -> dict[str, object] | None:
        st = container_status(h.pod("env-pod"))
        return st.get("state", {}).get("waiting") or None

    state = await h.wait(
        lambda: (w := waiting()) and w.get("reason") == "CreateContainerConfigError" and w,
        what="CreateContainerConfigError",
    )
    assert state["message"] == 'configmap "x" not found'
    pod = h.pod("env-pod")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    await h.wait(lambda: "Failed" in h.event_reasons(created), what="a Failed event")
    failed = next(e for e in h.events(created) if e["reason"] == "Failed")
    assert failed["message"] == 'Error: configmap "x" not found'
    assert h.spawner is not None and h.spawner.started == []

    await h.create_configmap("x", {"k": "from-the-configmap"})
    pod = await h.wait(
        lambda: (p := h.pod("env-pod")) and "running" in container_status(p).get("state", {}) and p,
        timeout=8,
        what="the container to start once the ConfigMap exists",
    )
    ip = pod["status"]["podIP"]
    text = await h.wait(lambda: out.exists() and out.read_text(), what="the container's env output")
    assert text == f"env-pod {ip} from-the-configmap\n"
    log = h.pod_dir(pod) / "c" / "0.log"
    assert await h.wait(lambda: log.exists() and "hello env-pod" in log.read_text(), what="the log file")
    assert container_status(pod)["restartCount"] == 0


# ------------------------------------------------------------------------------ 7 unknown image


async def test_unknown_image_without_command_waits_with_err_image_never_pull(h: KubeletHarness) -> None:
    await h.start_kubelet()
    image = "registry.example/unknown:1.0"
    created = await h.create_pod("mystery", [{"name": "c", "image": image}])
    st = await h.wait(
        lambda: (
            (s := container_status(h.pod("mystery"))).get("state", {}).get("waiting", {}).get("reason")
            == "ErrImageNeverPull"
            and s
        ),
        what="ErrImageNeverPull",
    )
    message = st["state"]["waiting"]["message"]
    assert message.startswith(f'Container image "{image}" is not present with pull policy of Never')
    for supported in ("echo-basic", "agnhost", "http-echo", "nginx", "pause", "busybox"):
        assert supported in message, supported
    pod = h.pod("mystery")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    assert condition(pod, "Ready")["status"] == "False"
    await h.wait(lambda: "Failed" in h.event_reasons(created), what="a Failed event")
    assert h.spawner is not None and h.spawner.started == []


# ------------------------------------------------------------------------------ 8 graceful deletion


async def test_graceful_deletion_runs_pre_stop_then_sigterm_then_removes_everything(
    h: KubeletHarness, tmp_path: Path
) -> None:
    pre_stop, term = tmp_path / "pre-stop", tmp_path / "term"
    script = f'trap "echo term > {term}; exit 0" TERM; while true; do sleep 0.1; done'
    hook = {"exec": {"command": ["sh", "-c", f"test -f {term} || echo before-term > {pre_stop}"]}}
    await h.start_kubelet()
    created = await h.create_pod(
        "graceful",
        [container(command=["sh", "-c", script], lifecycle={"preStop": hook})],
        terminationGracePeriodSeconds=20,
    )
    uid = created["metadata"]["uid"]
    pod = await h.wait(lambda: (p := h.pod("graceful")) and p["status"].get("phase") == "Running" and p)
    ip, pid = pod["status"]["podIP"], h.container_pid(pod, "c")
    pod_dir = h.pod_dir(pod)
    assert (h.config.node_dir / "ipam" / ip).exists() and pod_dir.exists()

    await h.client.delete(POD, "graceful", "default")
    # Well inside the 20 s grace period: the container left on SIGTERM, nobody waited for SIGKILL.
    await h.wait(lambda: h.pod("graceful") is None, timeout=8, what="the pod to be deleted")
    assert pre_stop.read_text() == "before-term\n"
    assert term.read_text() == "term\n"
    assert not pid_running(pid)
    assert sandbox.pod_netns(CLUSTER, uid) not in await h.netlink.list_netns()
    assert podnet.pod_veth(uid) not in h.netlink.namespaces[NODE_NS].links
    assert f"{ip}/32" not in await h.netlink.routes(NODE_NS)
    assert not (h.config.node_dir / "ipam" / ip).exists()
    assert not pod_dir.exists()
    killing = [e for e in h.events(created) if e["reason"] == "Killing"]
    assert [e["message"] for e in killing] == ["Stopping container c"]
    assert sandbox.pod_netns(CLUSTER, uid) not in h.owned_names()


# ------------------------------------------------------------------------------ 9 adoption


async def test_a_new_kubelet_adopts_running_containers_and_restarts_them_when_they_die(h: KubeletHarness) -> None:
    await h.start_kubelet()
    created = await h.create_pod("adopted", [container()])
    uid = created["metadata"]["uid"]
    pod = await h.wait(lambda: (p := h.pod("adopted")) and condition(p, "Ready").get("status") == "True" and p)
    pid = h.container_pid(pod, "c")
    container_id = container_status(pod)["containerID"]
    await h.stop_kubelet()
    assert pid_running(pid)  # an agent stopping leaves its containers running

    kubelet = await h.start_kubelet()
    assert h.spawner is not None
    spawner = h.spawner
    await h.wait(
        lambda: (w := kubelet.workers.get(uid)) is not None and w.last_status is not None,
        what="the new kubelet's worker to sync the pod",
    )
    assert pid_running(pid) and h.container_pid(pod, "c") == pid
    assert spawner.started == []  # no second process
    st = container_status(h.pod("adopted"))
    assert (st["restartCount"], st["containerID"], st["ready"]) == (0, container_id, True)
    assert "running" in st["state"]

    os.kill(pid, signal.SIGKILL)  # ours: started by the test's spawner and not reaped yet
    st = await h.wait(
        lambda: (s := container_status(h.pod("adopted"))).get("restartCount") == 1 and "running" in s["state"] and s,
        what="the new kubelet to restart the killed container",
    )
    assert len(spawner.started) == 1 and spawner.started[0].pid != pid
    assert h.container_pid(pod, "c") == spawner.started[0].pid
    assert st["containerID"] != container_id
    last = st["lastState"]["terminated"]
    # The new agent is not the process's parent, so its exit code is unknowable (as after a crash).
    assert (last["exitCode"], last["reason"]) == (255, "Unknown")


# ------------------------------------------------------------------------------ 10 peer routes


async def test_routes_to_peer_pod_cidrs_follow_nodes(h: KubeletHarness) -> None:
    await h.start_kubelet()
    peer = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "peer"}, "spec": {}}
    await h.client.create(NODE, peer)
    await h.client.patch(
        NODE,
        "peer",
        {"status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.3"}]}},
        subresource="status",
    )
    await h.client.patch(NODE, "peer", {"spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}})

    routes = h.netlink.namespaces[NODE_NS].routes
    line = await h.wait(lambda: routes.get("10.244.1.0/24"), what="the route to the peer's pod CIDR")
    assert line == "route replace 10.244.1.0/24 via 172.18.0.3 dev eth0"
    assert POD_CIDR not in routes  # no route to its own CIDR through the fabric

    await h.client.delete(NODE, "peer")
    await h.wait(lambda: "10.244.1.0/24" not in routes, what="the route to be removed")


# ------------------------------------------------------------------------------ bugs found


async def test_a_deletion_that_arrives_during_a_probe_is_acted_on_when_the_probe_ends(
    h: KubeletHarness, tmp_path: Path
) -> None:
    armed, running = tmp_path / "armed", tmp_path / "probe-running"
    # The liveness probe passes at once until armed; armed, its next run takes 0.5 s.
    slow = f"if [ -f {armed} ]; then touch {running}; sleep 0.5; fi"
    probe = {"exec": {"command": ["sh", "-c", slow]}, "periodSeconds": 4, "timeoutSeconds": 3}
    await h.start_kubelet()
    await h.create_pod("slow-probe", [container(livenessProbe=probe)])
    assert h.spawner is not None
    spawner = h.spawner
    await h.wait(lambda: spawner.execs, what="the first (fast) probe")
    armed.touch()
    await h.wait(running.exists, timeout=6, what="the second (slow) probe to be running")
    await h.client.delete(POD, "slow-probe", "default")  # while the probe runs
    # The probe ends 0.5 s later and the container stops on SIGTERM at once: well within 2.5 s.
    # Today the worker sleeps on until the next probe tick, ~4 s later.
    await h.wait(lambda: h.pod("slow-probe") is None, timeout=2.5, what="the pod to be deleted")

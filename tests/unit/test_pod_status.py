"""Pod status from the kubelet's records: phase, conditions and container statuses, as upstream."""

from __future__ import annotations

from typing import Any

import pytest

from kubewire.agents.kubelet.state import ContainerRecord, PodRecord, Termination
from kubewire.agents.kubelet.status import phase, pod_status

Obj = dict[str, Any]
T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:01:00Z"
NOW = "2026-01-01T00:02:00Z"


def pod(*names: str, policy: str = "Always", inits: tuple[str, ...] = (), status: Obj | None = None) -> Obj:
    spec: Obj = {"restartPolicy": policy, "containers": [{"name": n, "image": f"img-{n}"} for n in names]}
    if inits:
        spec["initContainers"] = [{"name": n, "image": "busybox"} for n in inits]
    obj: Obj = {"metadata": {"name": "p", "namespace": "default", "uid": "uid-1"}, "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


def exited(code: int, reason: str = "") -> Termination:
    return Termination(code, reason or ("Completed" if code == 0 else "Error"), T0, T1)


def running(name: str, ready: bool = True, run_id: str = "r1") -> ContainerRecord:
    return ContainerRecord(name, pid=42, ticks=1, started_at=T0, run_id=run_id, started=True, ready=ready)


def stopped(name: str, code: int) -> ContainerRecord:
    return ContainerRecord(name, run_id="r1", current_exit=exited(code))


def restarting(name: str) -> ContainerRecord:
    """Ran before and now waits in crash-loop backoff."""
    return ContainerRecord(
        name,
        restart_count=1,
        run_id="r1",
        last=exited(1),
        waiting_reason="CrashLoopBackOff",
        waiting_message="back-off 10s restarting failed container",
        backoff_until=1e12,
    )


def record(
    *containers: ContainerRecord, inits: tuple[ContainerRecord, ...] = (), initialized: bool = False
) -> PodRecord:
    return PodRecord(
        "uid-1",
        "default",
        "p",
        netns="kw-t-pod-uid-1",
        pod_ips=["10.244.1.2", "fd00:10:244:1::2"],
        sandbox_ready=True,
        containers={c.name: c for c in containers},
        init_containers={c.name: c for c in inits},
        initialized=initialized,
    )


def cond(status: Obj, kind: str) -> Obj:
    return next(c for c in status["conditions"] if c["type"] == kind)


# ------------------------------------------------------------------------------------ phase


@pytest.mark.parametrize(
    ("policy", "recs", "expected"),
    [
        ("Always", (), "Pending"),  # never ran
        ("Always", (ContainerRecord("a"),), "Pending"),  # waiting (ContainerCreating)
        ("Always", (running("a"), ContainerRecord("b")), "Pending"),  # one still waiting
        ("Always", (running("a"), running("b")), "Running"),
        ("Always", (running("a"), stopped("b", 0)), "Running"),
        ("Always", (restarting("a"), restarting("b")), "Running"),
        ("Always", (stopped("a", 0), stopped("b", 0)), "Running"),  # Always restarts even a success
        ("OnFailure", (stopped("a", 0), stopped("b", 0)), "Succeeded"),
        ("OnFailure", (stopped("a", 0), restarting("b")), "Running"),
        ("OnFailure", (stopped("a", 0), stopped("b", 1)), "Running"),
        ("Never", (stopped("a", 0), stopped("b", 0)), "Succeeded"),
        ("Never", (stopped("a", 0), stopped("b", 2)), "Failed"),
        ("Never", (running("a"), stopped("b", 2)), "Running"),
    ],
)
def test_phase_table(policy: str, recs: tuple[ContainerRecord, ...], expected: str) -> None:
    assert phase(pod("a", "b", policy=policy), record(*recs)) == expected


def test_phase_with_init_containers() -> None:
    p = pod("a", policy="Never", inits=("init",))
    assert phase(p, record(inits=(running("init"),))) == "Pending"
    assert phase(p, record(inits=(stopped("init", 1),))) == "Failed"
    p_always = pod("a", policy="Always", inits=("init",))
    assert phase(p_always, record(inits=(stopped("init", 1),))) == "Pending"  # it will be retried
    assert phase(p, record(running("a"), inits=(stopped("init", 0),), initialized=True)) == "Running"


# ------------------------------------------------------------------------------------ conditions


def test_pending_pod_conditions_and_messages() -> None:
    st = pod_status(pod("a", "b"), record(running("a", ready=False)), ["172.18.0.2"], NOW, T0)
    assert st["phase"] == "Pending"
    ready = cond(st, "Ready")
    assert ready == {
        "type": "Ready",
        "status": "False",
        "lastProbeTime": None,
        "lastTransitionTime": NOW,
        "reason": "ContainersNotReady",
        "message": "containers with unready status: [a b]",
    }
    assert cond(st, "ContainersReady")["message"] == "containers with unready status: [a b]"
    assert cond(st, "Initialized")["status"] == "True" and "reason" not in cond(st, "Initialized")
    assert cond(st, "PodReadyToStartContainers")["status"] == "True"
    assert [c["type"] for c in st["conditions"]] == [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ]


def test_ready_pod_has_true_conditions_without_reason() -> None:
    st = pod_status(pod("a"), record(running("a")), ["172.18.0.2"], NOW, T0)
    for kind in ("ContainersReady", "Ready", "Initialized", "PodScheduled"):
        c = cond(st, kind)
        assert c["status"] == "True" and "reason" not in c and "message" not in c


def test_succeeded_pod_reports_pod_completed() -> None:
    st = pod_status(pod("a", policy="Never"), record(stopped("a", 0)), [], NOW, T0)
    assert st["phase"] == "Succeeded"
    for kind in ("ContainersReady", "Ready"):
        assert cond(st, kind)["status"] == "False"
        assert cond(st, kind)["reason"] == "PodCompleted"
        assert "message" not in cond(st, kind)


def test_failed_pod_reports_pod_failed() -> None:
    st = pod_status(pod("a", policy="Never"), record(stopped("a", 1)), [], NOW, T0)
    assert st["phase"] == "Failed"
    assert cond(st, "ContainersReady")["reason"] == "PodFailed"
    assert cond(st, "Ready")["reason"] == "PodFailed"


def test_init_containers_pending() -> None:
    p = pod("a", "b", inits=("init1", "init2"))
    rec = record(ContainerRecord("a"), inits=(stopped("init1", 0), running("init2")))
    st = pod_status(p, rec, ["172.18.0.2"], NOW, T0)
    assert st["phase"] == "Pending"
    for c in st["containerStatuses"]:
        assert c["state"] == {"waiting": {"reason": "PodInitializing"}}
    init = cond(st, "Initialized")
    assert init["status"] == "False"
    assert init["reason"] == "ContainersNotInitialized"
    assert init["message"] == "containers with incomplete status: [init2]"
    init1, init2 = st["initContainerStatuses"]
    assert init1["ready"] is True and init1["state"]["terminated"]["reason"] == "Completed"
    assert init2["ready"] is False and "running" in init2["state"]


def test_initialized_pod_with_inits_has_plain_true_condition() -> None:
    p = pod("a", inits=("init",))
    st = pod_status(p, record(running("a"), inits=(stopped("init", 0),), initialized=True), [], NOW, T0)
    assert cond(st, "Initialized")["status"] == "True" and "reason" not in cond(st, "Initialized")
    assert st["containerStatuses"][0]["state"] == {"running": {"startedAt": T0}}


def test_failed_init_container_leaves_pod_uninitialized() -> None:
    p = pod("a", policy="Never", inits=("init",))
    st = pod_status(p, record(inits=(stopped("init", 1),)), [], NOW, T0)
    assert st["phase"] == "Failed"
    init = cond(st, "Initialized")
    assert (init["status"], init.get("reason")) == ("False", "ContainersNotInitialized")
    assert init["message"] == "containers with incomplete status: [init]"


def test_transition_time_kept_while_status_unchanged() -> None:
    p = pod("a")
    first = pod_status(p, record(running("a", ready=False)), [], T1, T0)
    p["status"] = first
    second = pod_status(p, record(running("a", ready=False)), [], NOW, T0)
    assert cond(second, "Ready")["lastTransitionTime"] == T1
    p["status"] = second
    third = pod_status(p, record(running("a", ready=True)), [], NOW, T0)
    assert cond(third, "Ready")["lastTransitionTime"] == NOW
    assert cond(third, "Initialized")["lastTransitionTime"] == T1


def test_pod_scheduled_is_kept_from_previous_status() -> None:
    scheduled = {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": T0}
    st = pod_status(pod("a", status={"conditions": [scheduled]}), record(running("a")), [], NOW, T0)
    assert cond(st, "PodScheduled") == scheduled
    fresh = pod_status(pod("a"), record(running("a")), [], NOW, T0)
    assert cond(fresh, "PodScheduled")["lastTransitionTime"] == NOW


def test_sandbox_not_ready() -> None:
    rec = record()
    rec.sandbox_ready = False
    st = pod_status(pod("a"), rec, [], NOW, T0)
    assert cond(st, "PodReadyToStartContainers")["status"] == "False"
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}


# ------------------------------------------------------------------------------------ container statuses


def test_running_container_status() -> None:
    st = pod_status(pod("a"), record(running("a", run_id="abc123")), [], NOW, T0)
    (c,) = st["containerStatuses"]
    assert c == {
        "name": "a",
        "image": "img-a",
        "imageID": "img-a",
        "ready": True,
        "restartCount": 0,
        "started": True,
        "state": {"running": {"startedAt": T0}},
        "lastState": {},
        "containerID": "kubewire://abc123",
    }


def test_waiting_container_with_last_state() -> None:
    st = pod_status(pod("a"), record(restarting("a")), [], NOW, T0)
    (c,) = st["containerStatuses"]
    assert c["state"] == {
        "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}
    }
    assert c["lastState"] == {
        "terminated": {
            "exitCode": 1,
            "reason": "Error",
            "startedAt": T0,
            "finishedAt": T1,
            "containerID": "kubewire://r1",
        }
    }
    assert c["restartCount"] == 1 and c["started"] is False and c["ready"] is False


def test_terminated_container_status() -> None:
    rec = ContainerRecord("a", run_id="r9", current_exit=Termination(137, "Error", T0, T1, "killed", 9))
    st = pod_status(pod("a", policy="Never"), record(rec), [], NOW, T0)
    (c,) = st["containerStatuses"]
    assert c["state"] == {
        "terminated": {
            "exitCode": 137,
            "reason": "Error",
            "startedAt": T0,
            "finishedAt": T1,
            "containerID": "kubewire://r9",
            "message": "killed",
            "signal": 9,
        }
    }
    assert c["containerID"] == "kubewire://r9"


def test_never_started_container_has_no_container_id() -> None:
    st = pod_status(pod("a"), record(), [], NOW, T0)
    assert "containerID" not in st["containerStatuses"][0]


def test_ips_and_host_ips() -> None:
    st = pod_status(pod("a"), record(running("a")), ["172.18.0.2", "fc00::2"], NOW, T0)
    assert st["podIP"] == "10.244.1.2"
    assert st["podIPs"] == [{"ip": "10.244.1.2"}, {"ip": "fd00:10:244:1::2"}]
    assert st["hostIP"] == "172.18.0.2"
    assert st["hostIPs"] == [{"ip": "172.18.0.2"}, {"ip": "fc00::2"}]
    assert st["startTime"] == T0 and st["qosClass"] == "BestEffort"
    assert "initContainerStatuses" not in st
    rec = record(running("a"))
    rec.pod_ips = []
    bare = pod_status(pod("a"), rec, [], NOW, T0)
    assert "podIP" not in bare and "podIPs" not in bare
    assert bare["hostIPs"] == []

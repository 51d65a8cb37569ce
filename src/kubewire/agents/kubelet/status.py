"""Pod status from the kubelet's records: phase, conditions and container statuses, as upstream.

Pure: a :class:`~kubewire.agents.kubelet.state.PodRecord` and the pod spec in, the ``status`` the
kubelet patches out.  The rules follow the kubelet's ``getPhase`` and ``generateAPIPodStatus``:
a pod is Pending while a container has never run, Running while any runs (or restarts), and
Succeeded/Failed once every container has stopped for good under its restart policy.
"""

from __future__ import annotations

from typing import Any

from kubewire.agents.kubelet.state import ContainerRecord, PodRecord

Obj = dict[str, Any]
RUNTIME = "kubewire"


def container_id(uid: str, rec: ContainerRecord) -> str:
    return f"{RUNTIME}://{rec.run_id}" if rec.run_id else ""


def container_status(pod: Obj, spec: Obj, rec: ContainerRecord, init: bool = False) -> Obj:
    cid = container_id(pod["metadata"]["uid"], rec)
    state: Obj
    if rec.running:
        state = {"running": {"startedAt": rec.started_at}}
    elif rec.current_exit is not None and (init or rec.backoff_until == 0.0):
        state = {"terminated": rec.current_exit.to_status(cid)}
    else:
        waiting: Obj = {"reason": rec.waiting_reason}
        if rec.waiting_message:
            waiting["message"] = rec.waiting_message
        state = {"waiting": waiting}
    last: Obj = {}
    if rec.last is not None:
        last = {"terminated": rec.last.to_status(cid)}
    out: Obj = {
        "name": spec["name"],
        "image": spec.get("image", ""),
        "imageID": spec.get("image", ""),
        "ready": rec.ready if not init else bool(rec.current_exit and rec.current_exit.exit_code == 0),
        "restartCount": rec.restart_count,
        "started": rec.running and rec.started,
        "state": state,
        "lastState": last,
    }
    if cid:
        out["containerID"] = cid
    return out


def phase(pod: Obj, record: PodRecord) -> str:
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy", "Always")
    inits = spec.get("initContainers") or []
    if not record.initialized and inits:
        failed = [
            r
            for r in record.init_containers.values()
            if r.current_exit is not None and r.current_exit.exit_code != 0 and policy == "Never"
        ]
        return "Failed" if failed else "Pending"
    waiting = running = stopped = succeeded = 0
    for c in spec.get("containers") or []:
        rec = record.containers.get(c["name"])
        if rec is None:
            waiting += 1
        elif rec.running:
            running += 1
        elif rec.current_exit is not None:
            stopped += 1
            succeeded += rec.current_exit.exit_code == 0
        elif rec.last is not None:
            stopped += 1  # waiting to restart: it ran before
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if policy == "Always":
        return "Running"
    if stopped and stopped == succeeded:
        return "Succeeded"
    if policy == "Never":
        return "Failed"
    return "Running"


def _condition(kind: str, ok: bool, now: str, previous: list[Obj], reason: str = "", message: str = "") -> Obj:
    status = "True" if ok else "False"
    old = next((c for c in previous if c.get("type") == kind), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else now
    cond: Obj = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def pod_status(pod: Obj, record: PodRecord, host_ips: list[str], now: str, start_time: str) -> Obj:
    """The full ``status`` the kubelet reports for ``pod``."""
    spec = pod.get("spec") or {}
    previous = (pod.get("status") or {}).get("conditions") or []
    the_phase = phase(pod, record)
    containers = [
        container_status(pod, c, record.containers.get(c["name"]) or ContainerRecord(c["name"]))
        for c in spec.get("containers") or []
    ]
    init_statuses = [
        container_status(pod, c, record.init_containers.get(c["name"]) or ContainerRecord(c["name"]), init=True)
        for c in spec.get("initContainers") or []
    ]
    if not record.initialized:
        for st in containers:
            if "waiting" in st["state"] and spec.get("initContainers"):
                st["state"] = {"waiting": {"reason": "PodInitializing"}}
    unready = [c["name"] for c in containers if not c["ready"]]
    completed = the_phase in ("Succeeded", "Failed")
    if completed:
        reason, msg = ("PodCompleted" if the_phase == "Succeeded" else "PodFailed"), ""
    else:
        reason = "ContainersNotReady" if unready else ""
        msg = f"containers with unready status: [{' '.join(unready)}]" if unready else ""
    init_pending = [c["name"] for c in init_statuses if not c["ready"]]
    init_ok = record.initialized or not spec.get("initContainers")
    succeeded = the_phase == "Succeeded"
    conditions = [
        _condition("PodReadyToStartContainers", record.sandbox_ready, now, previous),
        _condition(
            "Initialized",
            init_ok or succeeded,
            now,
            previous,
            *(
                ("ContainersNotInitialized", f"containers with incomplete status: [{' '.join(init_pending)}]")
                if not init_ok and not succeeded
                else (("PodCompleted", "") if succeeded and spec.get("initContainers") else ("", ""))
            ),
        ),
        _condition("ContainersReady", not unready and not completed, now, previous, reason, msg),
        _condition("Ready", not unready and not completed, now, previous, reason, msg),
    ]
    scheduled = next((c for c in previous if c.get("type") == "PodScheduled"), None)
    conditions.append(scheduled or _condition("PodScheduled", True, now, previous))
    status: Obj = {
        "phase": the_phase,
        "conditions": conditions,
        "hostIP": host_ips[0] if host_ips else None,
        "hostIPs": [{"ip": ip} for ip in host_ips],
        "startTime": start_time,
        "containerStatuses": containers,
        "qosClass": (pod.get("status") or {}).get("qosClass") or "BestEffort",
    }
    if record.pod_ips:
        status["podIP"] = record.pod_ips[0]
        status["podIPs"] = [{"ip": ip} for ip in record.pod_ips]
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return status

"""What the kubelet knows about each pod it runs, kept on disk so a restarted agent adopts it.

One ``pod.json`` per pod directory (``<node dir>/pods/<namespace>_<name>_<uid>/``): the sandbox (its
network namespace and addresses) and, per container, the process (pid and start time, which
together identify it across pid reuse), restart count, crash-loop backoff, and the last
termination.  Written atomically after every change.  The container log files live beside it,
one per run: ``<container>/<restartCount>.log``, as the kubelet keeps ``/var/log/pods``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


@dataclass
class Termination:
    exit_code: int
    reason: str
    started_at: str
    finished_at: str
    message: str = ""
    signal: int = 0

    def to_status(self, container_id: str) -> Obj:
        out: Obj = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at or None,
            "finishedAt": self.finished_at,
            "containerID": container_id,
        }
        if self.message:
            out["message"] = self.message
        if self.signal:
            out["signal"] = self.signal
        return out


@dataclass
class ContainerRecord:
    """One container's runtime state (regular or init)."""

    name: str
    restart_count: int = 0
    pid: int = 0
    ticks: int = 0
    started_at: str = ""  # RFC 3339, the current run's start
    started_mono: float = 0.0  # wall clock seconds of the current run's start, for backoff reset
    run_id: str = ""  # the containerID suffix of the current (or last) run
    last: Termination | None = None  # the previous run's termination (lastState)
    current_exit: Termination | None = None  # the current run has ended (state.terminated)
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    backoff_until: float = 0.0
    backoff_steps: int = 0
    started: bool = False  # startup probe passed (or none)
    ready: bool = False

    @property
    def running(self) -> bool:
        return self.pid > 0 and self.current_exit is None


@dataclass
class PodRecord:
    uid: str
    namespace: str
    name: str
    netns: str = ""
    pod_ips: list[str] = field(default_factory=list)
    sandbox_ready: bool = False
    containers: dict[str, ContainerRecord] = field(default_factory=dict)
    init_containers: dict[str, ContainerRecord] = field(default_factory=dict)
    initialized: bool = False

    def container(self, name: str, init: bool = False) -> ContainerRecord:
        table = self.init_containers if init else self.containers
        if name not in table:
            table[name] = ContainerRecord(name)
        return table[name]


def pod_dir_name(namespace: str, name: str, uid: str) -> str:
    return f"{namespace}_{name}_{uid}"


def log_path(pod_dir: Path, container: str, restart_count: int) -> Path:
    return pod_dir / container / f"{restart_count}.log"


def save(pod_dir: Path, record: PodRecord) -> None:
    pod_dir.mkdir(parents=True, exist_ok=True)
    tmp = pod_dir / "pod.json.tmp"
    tmp.write_text(json.dumps(asdict(record)))
    os.replace(tmp, pod_dir / "pod.json")


def _container(data: Obj) -> ContainerRecord:
    last = data.pop("last", None)
    current = data.pop("current_exit", None)
    rec = ContainerRecord(**data)
    rec.last = Termination(**last) if last else None
    rec.current_exit = Termination(**current) if current else None
    return rec


def load(pod_dir: Path) -> PodRecord | None:
    try:
        data = json.loads((pod_dir / "pod.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    containers = {k: _container(v) for k, v in data.pop("containers", {}).items()}
    inits = {k: _container(v) for k, v in data.pop("init_containers", {}).items()}
    return PodRecord(**data, containers=containers, init_containers=inits)

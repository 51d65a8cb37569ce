"""A kubelet-lite harness without root: a real Store, FakeNetlink, and a spawner that runs on the host.

:class:`HostSpawner` starts container commands as ordinary children of the test process (it never
enters the pod's sandbox, which only exists in :class:`~kubewire.host.netlink.FakeNetlink`), runs exec
probes and hooks the same way, and never starts the zygote or a built-in workload.  Every process it
starts goes into a shared ledger so :meth:`KubeletHarness.close` can kill exactly those, by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubewire.agents.kubelet.kubelet import Kubelet
from kubewire.agents.kubelet.spawner import DEFAULT_PATH, Spawner, SpawnError
from kubewire.agents.nodeconfig import NodeConfig
from kubewire.api.core import CONFIG_MAP, EVENT, NODE
from kubewire.api.netconfig import ClusterNetwork
from kubewire.api.pod import POD
from kubewire.api.registry import default_registry
from kubewire.client.local import LocalClient
from kubewire.dataplane import podnet
from kubewire.errors import NotFound
from kubewire.host import process
from kubewire.host.netlink import FakeNetlink, apply_all
from kubewire.host.owned import Owned
from kubewire.store import podadmission
from kubewire.store.store import Store

Obj = dict[str, Any]

CLUSTER = "kt"
NODE_NAME = "kt-worker"
NODE_NS = podnet.netns_name(CLUSTER, "node", NODE_NAME)
FABRIC_NS = podnet.netns_name(CLUSTER, "fabric")
NODE_IP = "172.18.0.2"
POD_CIDR = "10.244.0.0/24"
ZONE = "zone-a"
NAMESPACE = "default"


async def wait_until(
    check: Callable[[], object],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.05,
    alive: Callable[[], None] | None = None,
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        if alive is not None:
            alive()
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


class HostSpawner(Spawner):
    """Runs containers, exec probes and hooks on this host, outside any namespace (no root needed)."""

    def __init__(self, state_dir: Path, ledger: list[process.Spawned]) -> None:
        super().__init__(state_dir)
        self.ledger = ledger  # shared by every spawner of a test: what teardown kills
        self.started: list[process.Spawned] = []  # what this spawner started
        self.boxes: list[process.Sandbox] = []  # the sandboxes the kubelet asked for (not entered)
        self.execs: list[list[str]] = []

    async def warm(self) -> None:
        return None  # no zygote: built-in workloads are refused below

    async def start(
        self,
        argv: Sequence[str],
        box: process.Sandbox,
        *,
        env: Mapping[str, str],
        cwd: str | None,
        log_path: Path,
    ) -> process.Spawned:
        if len(argv) >= 3 and argv[1] == "-m" and argv[2].startswith("kubewire.workloads."):
            raise SpawnError("built-in workloads are not run by the unit-test spawner")
        self.boxes.append(box)

        def run() -> process.Spawned:
            spawned = process.start(argv, process.Sandbox(), env=env, cwd=cwd, log_path=log_path)
            self.ledger.append(spawned)
            self.started.append(spawned)
            return spawned

        return await asyncio.get_running_loop().run_in_executor(None, run)

    async def exec_in(self, box: process.Sandbox, argv: Sequence[str], timeout: float) -> tuple[int | None, bytes]:
        if not argv:
            return 126, b"no command"
        self.execs.append(list(argv))

        def run() -> tuple[int | None, bytes]:
            try:
                done = subprocess.run(
                    list(argv),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout,
                    env={"PATH": DEFAULT_PATH},
                )
            except subprocess.TimeoutExpired as e:
                return None, e.output or b""
            except OSError as e:
                return 126, str(e).encode()
            return done.returncode, done.stdout

        return await asyncio.get_running_loop().run_in_executor(None, run)


class KubeletHarness:
    """One node's kubelet over an in-process store and FakeNetlink, with a private state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.store = Store(default_registry(), None)
        podadmission.install(self.store)
        self.client = LocalClient(self.store)
        self.netlink = FakeNetlink()
        self.network = ClusterNetwork()
        self.config = NodeConfig(
            cluster=CLUSTER,
            name=NODE_NAME,
            netns=NODE_NS,
            addresses=(NODE_IP,),
            prefixes=(16,),
            zone=ZONE,
            state_dir=state_dir,
        )
        self.ledger: list[process.Spawned] = []
        self.kubelet: Kubelet | None = None
        self.spawner: HostSpawner | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def build_node_namespace(self) -> None:
        """The node's namespace as ``kubewire up`` leaves it: plugged into the fabric (eth0 + address)."""
        await self.netlink.add_netns(FABRIC_NS)
        await apply_all(self.netlink, podnet.fabric_plan(FABRIC_NS))
        await self.netlink.add_netns(NODE_NS)
        await apply_all(self.netlink, podnet.uplink(FABRIC_NS, NODE_NS, NODE_NAME, [NODE_IP], [16]))

    def check_alive(self) -> None:
        """Fail fast when the kubelet's run() ended with an error."""
        task = self._task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            raise AssertionError(f"the kubelet failed: {task.exception()!r}")

    async def wait(self, check: Callable[[], object], timeout: float = 10.0, what: str = "") -> Any:
        return await wait_until(check, timeout, what or "condition", alive=self.check_alive)

    async def start_kubelet(self, lease_interval: float = 0.2) -> Kubelet:
        assert self._task is None, "a kubelet is running already"
        self.spawner = HostSpawner(self.state_dir, self.ledger)
        kubelet = Kubelet(
            self.client, self.config, self.network, self.netlink, lease_interval=lease_interval, spawner=self.spawner
        )
        self.kubelet = kubelet
        ready = self.config.node_dir / "ready"
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(kubelet.run(self._stop))
        node = await self.wait(lambda: self.node_or_none(), what="the Node to register")
        if not (node.get("spec") or {}).get("podCIDRs"):
            # Node IPAM's part (kube-controller-manager is not running here).
            await self.client.patch(NODE, NODE_NAME, {"spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]}})
        await self.wait(ready.exists, what="the kubelet to be ready")
        return kubelet

    async def stop_kubelet(self) -> None:
        """Stop as ``kubewire`` stops an agent: containers keep running."""
        task, stop = self._task, self._stop
        self._task = self._stop = None
        if task is None or stop is None:
            return
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), 10.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise
        self.kubelet = None

    async def close(self) -> None:
        """Stop the kubelet and kill every process a test started (by pid), whatever happened."""
        try:
            with contextlib.suppress(Exception):
                await self.stop_kubelet()
            if self._task is not None:
                self._task.cancel()
        finally:
            self.kill_leftovers()
            await asyncio.sleep(0)  # let cancelled callbacks run before the store goes
            self.store.close()

    def kill_leftovers(self) -> list[int]:
        """SIGKILL what the test started and still runs; returns those pids."""
        killed: list[int] = []
        for spawned in self.ledger:
            popen = spawned.popen
            if popen is not None and popen.returncode is None and popen.poll() is None:
                # Not reaped yet, so the pid (and its session's process group) is still ours.
                process.kill_group(spawned.pid, signal.SIGKILL)
                killed.append(spawned.pid)
        for spawned in self.ledger:
            if spawned.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spawned.popen.wait(timeout=5)
        # Anything the records name that still runs (identity by pid + start time).
        for pid, ticks in self.recorded_pids():
            if process.alive(pid, ticks):
                process.kill_group(pid, signal.SIGKILL)
                killed.append(pid)
        return killed

    def recorded_pids(self) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        for record in (self.config.node_dir / "pods").glob("*/pod.json"):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(record.read_text())
                for table in ("containers", "init_containers"):
                    for rec in (data.get(table) or {}).values():
                        if rec.get("pid", 0) > 0:
                            found.append((int(rec["pid"]), int(rec.get("ticks", 0))))
        return found

    # ------------------------------------------------------------------ API helpers

    def node_or_none(self, name: str = NODE_NAME) -> Obj | None:
        try:
            return self.store.get(NODE, "", name)
        except NotFound:
            return None

    def pod(self, name: str) -> Obj | None:
        try:
            return self.store.get(POD, NAMESPACE, name)
        except NotFound:
            return None

    async def create_pod(self, name: str, containers: list[Obj], **spec: Any) -> Obj:
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
            "spec": {"nodeName": NODE_NAME, "terminationGracePeriodSeconds": 2, "containers": containers, **spec},
        }
        return await self.client.create(POD, body)

    async def create_configmap(self, name: str, data: dict[str, str]) -> Obj:
        body: Obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "data": data,
        }
        return await self.client.create(CONFIG_MAP, body)

    def events(self, pod: Obj) -> list[Obj]:
        uid = pod["metadata"]["uid"]
        return [
            e
            for e in self.store.list_objects(EVENT)
            if (e.get("involvedObject") or {}).get("uid") == uid and e["metadata"].get("namespace") == NAMESPACE
        ]

    def event_reasons(self, pod: Obj) -> list[str]:
        return [str(e.get("reason")) for e in self.events(pod)]

    def pod_dir(self, pod: Obj) -> Path:
        meta = pod["metadata"]
        return self.config.node_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"

    def record(self, pod: Obj) -> Obj | None:
        try:
            data: Obj = json.loads((self.pod_dir(pod) / "pod.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data

    def owned_names(self) -> list[str]:
        return Owned(self.state_dir / "netns.owned").names()

    def container_pid(self, pod: Obj, container: str) -> int:
        rec = self.record(pod) or {}
        return int(((rec.get("containers") or {}).get(container) or {}).get("pid", 0))


def container_status(pod: Obj | None, name: str = "c") -> Obj:
    for st in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if st.get("name") == name:
            return dict(st)
    return {}


def condition(pod: Obj | None, kind: str) -> Obj:
    for cond in ((pod or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def pid_running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    return pid > 0 and process.start_ticks(pid) is not None

"""The pod worker: one task per pod, driving it from sandbox to containers to termination.

Like the kubelet's ``podWorkers`` + ``SyncPod``: each wake-up (a pod change, a container exit, a
probe or backoff deadline, a 10 s resync) compares the pod spec with the record and does the next
step — create the sandbox, run init containers in order, start or restart containers (immediately
the first time, then 10 s doubling to 300 s: upstream's CrashLoopBackOff), run due probes — then
reports status when it changed.  Deletion runs the graceful path: preStop hooks, SIGTERM, the
grace period, SIGKILL, sandbox teardown, and the final delete with grace 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubewire.agents.kubelet import images, podspec, probes, sandbox
from kubewire.agents.kubelet.sandbox import SandboxError
from kubewire.agents.kubelet.spawner import SpawnError
from kubewire.agents.kubelet.state import ContainerRecord, PodRecord, Termination, log_path, pod_dir_name, save
from kubewire.agents.kubelet.status import pod_status
from kubewire.api.meta import now_rfc3339
from kubewire.errors import StatusError
from kubewire.host import process

if TYPE_CHECKING:
    from kubewire.agents.kubelet.kubelet import Kubelet

log = logging.getLogger("kubewire.kubelet")
Obj = dict[str, Any]

RESYNC = 10.0  # the kubelet's periodic pod sync
BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0  # a container that ran this long starts its backoff over
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONFIG_RETRY = 2.0
FIRST_READY_RETRY = 0.25  # the cadence of pod syncs re-firing a not-yet-ready readiness probe
API_ENV = "KUBEWIRE_APISERVER"  # where a built-in cluster component (the DNS server) finds the API
POD_ENV = "KUBEWIRE_POD"  # and which pod it is (namespace/name): its configMap volumes come through the API


def _now() -> str:
    return now_rfc3339()


class PodWorker:
    """Owns one pod (by uid) for as long as the node runs it."""

    def __init__(self, kubelet: Kubelet, uid: str, record: PodRecord) -> None:
        self.kubelet = kubelet
        self.uid = uid
        self.record = record
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.trackers: dict[tuple[str, str], probes.ProbeTracker] = {}
        self.popens: dict[str, process.Spawned] = {}
        self.watchers: dict[str, int] = {}
        self.exiting: set[int] = set()
        self.last_status: Obj | None = None
        self.start_time = _now()
        self.backoff_reported: set[tuple[str, int]] = set()
        self.been_ready: set[str] = set()  # containers ready at least once since their last start

    @property
    def pod_dir(self) -> Path:
        r = self.record
        return self.kubelet.pods_dir / pod_dir_name(r.namespace, r.name, r.uid)

    def poke(self) -> None:
        self.wake.set()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"pod {self.record.namespace}/{self.record.name}")

    # ------------------------------------------------------------------ main loop

    async def _run(self) -> None:
        try:
            if self.record.netns and self.record.netns not in await self.kubelet.netlink.list_netns():
                # The sandbox is gone (``down --keep-state``, a reboot): make a new one, as the kubelet
                # does when a pod's sandbox dies; its containers then start again.
                self.record.sandbox_ready = False
            for rec in [*self.record.containers.values(), *self.record.init_containers.values()]:
                if rec.running:
                    self._adopt(rec)
            failures = 0
            while True:
                # Cleared before reading the pod: a poke that lands during the awaits below
                # (a deletion mid-probe, an exit mid-spawn) then wakes the next wait at once.
                self.wake.clear()
                pod = self.kubelet.pod_by_uid(self.uid)
                try:
                    if pod is None:
                        await self._terminate(None, grace=0)
                        return
                    if (pod.get("metadata") or {}).get("deletionTimestamp"):
                        await self._terminate(pod, grace=_grace(pod))
                        return
                    deadline = await self._sync(pod)
                    await self._report(pod)
                    failures = 0
                except (StatusError, OSError, SandboxError, SpawnError) as e:
                    # One pod's trouble (the API unreachable for a moment, a kernel refusal) is
                    # retried with backoff; it never stops this worker or any other.
                    failures += 1
                    log.warning("pod %s/%s: %s (retrying)", self.record.namespace, self.record.name, e)
                    deadline = time.time() + min(CONFIG_RETRY * 2 ** (failures - 1), RESYNC)
                timeout = max(0.0, min(deadline, time.time() + RESYNC) - time.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod worker %s/%s failed", self.record.namespace, self.record.name)
        finally:
            self.kubelet.worker_done(self.uid, self)

    async def _sync(self, pod: Obj) -> float:
        """One step towards the spec; returns when the next deadline falls."""
        spec = pod.get("spec") or {}
        deadline = time.time() + RESYNC
        if not self.record.sandbox_ready and not await self._make_sandbox(pod):
            return time.time() + CONFIG_RETRY
        if not self.record.initialized:
            deadline = min(deadline, await self._run_inits(pod))
            if not self.record.initialized:
                return deadline
        terminal = _terminal_policy(pod, self.record)
        for c in spec.get("containers") or []:
            rec = self.record.container(c["name"])
            if not rec.running and not terminal:
                deadline = min(deadline, await self._maybe_start(pod, c, rec))
            if rec.running:
                deadline = min(deadline, await self._probe(pod, c, rec))
        return deadline

    # ------------------------------------------------------------------ sandbox

    async def _make_sandbox(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        k = self.kubelet
        try:
            if spec.get("hostNetwork"):
                self.record.netns = ""
                self.record.pod_ips = list(k.host_ips)
            else:
                ns, ips = await sandbox.create(k.node_network(), k.netlink, self.uid)
                self.record.netns, self.record.pod_ips = ns, ips
        except (sandbox.SandboxError, podspec.SandboxConfigError) as e:
            k.event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
            return False
        self._write_files(pod)
        self.record.sandbox_ready = True
        save(self.pod_dir, self.record)
        return True

    def _write_files(self, pod: Obj) -> None:
        k = self.kubelet
        hostname, _fqdn = podspec.pod_hostname(pod, cluster_domain=k.network.cluster_domain)
        resolv = podspec.resolv_conf(
            pod,
            cluster_dns=k.network.cluster_dns[:1],  # kind and kubeadm give pods the primary family's address
            cluster_domain=k.network.cluster_domain,
            host_resolv_conf=k.host_resolv_conf,
        )
        hosts = podspec.hosts_file(
            pod, pod_ips=self.record.pod_ips, cluster_domain=k.network.cluster_domain, node_hosts_file=k.host_hosts
        )
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        (self.pod_dir / "resolv.conf").write_text(resolv if resolv is not None else k.host_resolv_conf)
        (self.pod_dir / "hosts").write_text(hosts)
        (self.pod_dir / "hostname").write_text(hostname + "\n")

    def _box(self, pod: Obj) -> process.Sandbox:
        hostname, _ = podspec.pod_hostname(pod, cluster_domain=self.kubelet.network.cluster_domain)
        files = ("resolv.conf", "hosts", "hostname")
        mounts = tuple((str(self.pod_dir / f), f"/etc/{f}") for f in files)
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        return process.Sandbox(
            netns=self.record.netns or self.kubelet.config.netns,  # hostNetwork: the node's own
            mounts=mounts,
            # A node has no UTS namespace of its own here: hostNetwork pods see the node's name.
            hostname=self.kubelet.config.name if host_network else hostname,
        )

    # ------------------------------------------------------------------ containers

    async def _run_inits(self, pod: Obj) -> float:
        spec = pod.get("spec") or {}
        policy = spec.get("restartPolicy", "Always")
        for c in spec.get("initContainers") or []:
            rec = self.record.container(c["name"], init=True)
            if rec.current_exit is not None and rec.current_exit.exit_code == 0:
                continue
            if rec.running:
                return time.time() + RESYNC
            if rec.current_exit is not None and policy == "Never":
                return time.time() + RESYNC  # the pod has failed
            return await self._maybe_start(pod, c, rec, init=True)
        self.record.initialized = True
        save(self.pod_dir, self.record)
        self.poke()
        return time.time()

    async def _maybe_start(self, pod: Obj, c: Obj, rec: ContainerRecord, init: bool = False) -> float:
        """Start a container that is not running, honouring restart policy and backoff."""
        policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        now = time.time()
        if rec.current_exit is not None:
            failed = rec.current_exit.exit_code != 0
            if policy == "Never" or (policy == "OnFailure" and not failed) or (init and not failed):
                return now + RESYNC
            # Restart: the run that ended becomes lastState, and the backoff grows.
            if now - rec.started_mono >= BACKOFF_RESET:
                rec.backoff_steps = 0
            delay = 0.0 if rec.backoff_steps == 0 else min(BACKOFF_START * 2 ** (rec.backoff_steps - 1), BACKOFF_MAX)
            rec.backoff_steps += 1
            rec.backoff_until = now + delay
            rec.last = rec.current_exit
            rec.current_exit = None
            rec.ready = False
            if delay:
                rec.waiting_reason = "CrashLoopBackOff"
                rec.waiting_message = (
                    f"back-off {int(delay)}s restarting failed container={c['name']} "
                    f"pod={pod['metadata']['name']}_{pod['metadata']['namespace']}({self.uid})"
                )
            save(self.pod_dir, self.record)
        if rec.backoff_until > now:
            key = (c["name"], rec.backoff_steps)
            if key not in self.backoff_reported:
                self.backoff_reported.add(key)
                self.kubelet.event(
                    pod,
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {c['name']} in pod {_pod_ref(pod)}",
                )
            return rec.backoff_until
        await self._start(pod, c, rec, restart=rec.last is not None)
        return time.time() + (CONFIG_RETRY if not rec.running else RESYNC)

    async def _start(self, pod: Obj, c: Obj, rec: ContainerRecord, restart: bool) -> None:
        k = self.kubelet
        name = c["name"]
        try:
            env_pairs = k.container_env(pod, c, self.record.pod_ips)
        except podspec.ContainerConfigError as e:
            if rec.waiting_message != str(e):
                k.event(pod, "Warning", "Failed", f"Error: {e}")
            rec.waiting_reason, rec.waiting_message = "CreateContainerConfigError", str(e)
            return
        command, args = podspec.expand_args(c, env_pairs)
        program = images.resolve(c.get("image", ""), command, args, sys.executable, shutil.which)
        if isinstance(program, images.Unsupported):
            if rec.waiting_reason != program.reason:
                k.event(pod, "Warning", "Failed", program.message)
            rec.waiting_reason, rec.waiting_message = program.reason, program.message
            return
        hostname, _ = podspec.pod_hostname(pod, cluster_domain=k.network.cluster_domain)
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root", **program.env}
        env.update(env_pairs)
        if program.api:  # kubewire's in-cluster channel to the API for its own components (no token volumes)
            env[API_ENV] = f"unix://{k.config.state_dir / 'apiserver.sock'}"
            meta = pod.get("metadata") or {}
            env[POD_ENV] = f"{meta.get('namespace', '')}/{meta.get('name', '')}"  # to read its own volumes
        _write_private(self.pod_dir / name / "env.json", json.dumps(env))  # what ``kubewire exec`` gives a shell
        argv = list(program.argv)
        count = rec.restart_count + (1 if restart else 0)
        k.event(pod, "Normal", "Pulled", f'Container image "{c.get("image", "")}" already present on machine')
        run_id = uuid.uuid4().hex
        path = log_path(self.pod_dir, name, count)
        started_at = _now()
        try:
            spawned = await k.spawner.start(
                argv, self._box(pod), env=env, cwd=c.get("workingDir") or None, log_path=path
            )
        except (OSError, ValueError, SpawnError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            message = f'failed to create containerd task: exec: "{argv[0] if argv else ""}": {reason}'
            rec.restart_count = count
            rec.run_id = run_id
            rec.started_mono = time.time()
            rec.current_exit = Termination(128, "StartError", "1970-01-01T00:00:00Z", _now(), message)
            k.event(pod, "Warning", "Failed", f"Error: {message}")
            save(self.pod_dir, self.record)
            self.poke()
            return
        rec.restart_count = count
        rec.pid, rec.ticks, rec.run_id = spawned.pid, spawned.start_ticks, run_id
        rec.started_at, rec.started_mono = started_at, time.time()
        rec.current_exit = None
        rec.waiting_reason, rec.waiting_message = "", ""
        rec.backoff_until = 0.0
        rec.ready = False
        rec.started = not c.get("startupProbe")
        self.popens[name] = spawned
        self.been_ready.discard(name)
        for kind in ("liveness", "readiness", "startup"):
            old = self.trackers.get((name, kind))
            if old is not None:
                old.reset()
        save(self.pod_dir, self.record)
        self._watch(rec)
        k.event(pod, "Normal", "Created", f"Created container {name}")
        k.event(pod, "Normal", "Started", f"Started container {name}")

    def _adopt(self, rec: ContainerRecord) -> None:
        """A container started by an earlier agent: keep it if it still runs."""
        if process.alive(rec.pid, rec.ticks):
            self._watch(rec)
        else:
            rec.current_exit = Termination(
                255, "Unknown", rec.started_at, _now(), "the container ended while its node agent was down"
            )
            rec.pid = 0
            save(self.pod_dir, self.record)

    def _watch(self, rec: ContainerRecord) -> None:
        """Learn of the container's exit without a thread: a pidfd becomes readable when it ends."""
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(rec.pid)
        except ProcessLookupError:
            self._exit_task(rec)
            return
        self.watchers[rec.name] = fd

        def ready() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self.watchers.pop(rec.name, None)
            self._exit_task(rec)

        loop.add_reader(fd, ready)

    def _exit_task(self, rec: ContainerRecord) -> None:
        pid = rec.pid
        if pid in self.exiting:
            return
        self.exiting.add(pid)
        task = asyncio.get_running_loop().create_task(self._exited(rec, pid))
        task.add_done_callback(lambda _: self.exiting.discard(pid))

    async def _exited(self, rec: ContainerRecord, pid: int) -> None:
        """Record how the run that had ``pid`` ended (the code from its parent: us or the zygote)."""
        spawned = self.popens.pop(rec.name, None)
        code = await self.kubelet.spawner.exit_status(spawned, pid)
        if rec.pid != pid:
            return  # already recorded (a stop path raced the pidfd)
        if code is None:
            term = Termination(
                255, "Unknown", rec.started_at, _now(), "exit status unknown: an earlier node agent started it"
            )
        elif code < 0:
            term = Termination(128 - code, "Error", rec.started_at, _now(), signal=-code)
        else:
            term = Termination(code, "Completed" if code == 0 else "Error", rec.started_at, _now())
        rec.current_exit = term
        rec.pid = 0
        rec.ready = False
        save(self.pod_dir, self.record)
        self.poke()

    # ------------------------------------------------------------------ probes

    async def _probe(self, pod: Obj, c: Obj, rec: ContainerRecord) -> float:
        """Run the container's due probes (startup gates liveness and readiness, as upstream)."""
        nxt = time.time() + RESYNC
        changed = False
        for kind in ("startup", "liveness", "readiness"):
            spec = c.get(f"{kind}Probe")
            tracker: probes.ProbeTracker | None = None
            if spec:
                tracker = self.trackers.get((c["name"], kind))
                if tracker is None:
                    tracker = self.trackers[(c["name"], kind)] = probes.ProbeTracker(kind, spec)  # type: ignore[arg-type]
                now = time.time()
                if tracker.due(now, rec.started_mono, started=rec.started):
                    ip = self.record.pod_ips[0] if self.record.pod_ips else "127.0.0.1"
                    outcome = await probes.run_probe(spec, ip, c, self._exec_runner(pod), pod=pod)
                    tracker.record(outcome, now)
                    event = probes.probe_event(kind, outcome)  # type: ignore[arg-type]
                    if event is not None:
                        self.kubelet.event(pod, "Warning", *event)
                    if not rec.running:
                        return time.time()
                    if tracker.on_hold:  # liveness or startup gave up: restart the container
                        self.kubelet.event(pod, "Normal", "Killing", probes.restart_message(kind, c["name"]))  # type: ignore[arg-type]
                        await self._stop(pod, c, rec, float(tracker.kill_grace_period(pod)))
                        return time.time()
                nxt = min(nxt, tracker.next_due(time.time(), rec.started_mono))
            if kind == "startup":
                started = probes.container_started(tracker, running=rec.running)
                changed |= started != rec.started
                rec.started = started
            elif kind == "readiness":
                ready = probes.container_ready(tracker, running=rec.running, started=rec.started)
                changed |= ready != rec.ready
                rec.ready = ready
                if tracker is not None and rec.started and not ready and c["name"] not in self.been_ready:
                    # Until its first success after a start, the kubelet re-fires the readiness probe on
                    # every pod sync (the prober manager's manual trigger), not once per period.
                    tracker.trigger()
                    nxt = min(nxt, time.time() + FIRST_READY_RETRY)
                if ready:
                    self.been_ready.add(c["name"])
        if changed:
            save(self.pod_dir, self.record)
        return nxt

    def _exec_runner(self, pod: Obj) -> probes.ExecRunner:
        box = self._box(pod)

        async def run(argv: Sequence[str], timeout: float) -> tuple[int | None, bytes]:
            return await self.kubelet.spawner.exec_in(box, argv, timeout)

        return run

    # ------------------------------------------------------------------ stopping

    async def _stop(self, pod: Obj | None, c: Obj, rec: ContainerRecord, grace: float) -> None:
        """preStop, SIGTERM, wait up to ``grace``, SIGKILL; waits for the exit to be recorded."""
        if not rec.running:
            return
        deadline = time.time() + grace
        hook = ((c.get("lifecycle") or {}).get("preStop")) if pod is not None else None
        if hook and grace > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pre_stop(pod or {}, c, hook), max(0.0, deadline - time.time()))
        if rec.running:
            process.kill_group(rec.pid, signal.SIGTERM)
        while rec.running and time.time() < deadline:
            await self._wait_exit(rec, deadline - time.time())
        if rec.running:
            process.kill_group(rec.pid, signal.SIGKILL)
            await self._wait_exit(rec, 5.0)

    async def _wait_exit(self, rec: ContainerRecord, timeout: float) -> None:
        end = time.time() + max(0.0, timeout)
        while rec.running and time.time() < end:
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), min(0.2, max(0.0, end - time.time())))
            if rec.running and not self.watchers.get(rec.name) and not process.alive(rec.pid, rec.ticks):
                self._exit_task(rec)

    async def _pre_stop(self, pod: Obj, c: Obj, hook: Obj) -> None:
        if "exec" in hook:
            await self.kubelet.spawner.exec_in(self._box(pod), (hook["exec"] or {}).get("command") or [], 3600.0)
        elif "sleep" in hook:
            await asyncio.sleep(float((hook["sleep"] or {}).get("seconds") or 0))
        elif "httpGet" in hook:
            get = hook["httpGet"]
            host = get.get("host") or (self.record.pod_ips[0] if self.record.pod_ips else "127.0.0.1")
            port = probes.resolve_port(get.get("port", 80), c)
            await probes.http_probe(
                (get.get("scheme") or "HTTP"), host, port, get.get("path") or "/", get.get("httpHeaders") or [], 3600.0
            )

    async def _terminate(self, pod: Obj | None, grace: float) -> None:
        """Stop every container within ``grace``, tear the sandbox down, and finish the deletion."""
        spec = (pod or {}).get("spec") or {}
        by_name = {c["name"]: c for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]}
        running = [
            (by_name.get(name, {"name": name}), rec)
            for name, rec in [*self.record.containers.items(), *self.record.init_containers.items()]
            if rec.running
        ]
        if pod is not None:
            for c, _ in running:
                self.kubelet.event(pod, "Normal", "Killing", f"Stopping container {c['name']}")
        await asyncio.gather(*(self._stop(pod, c, rec, grace) for c, rec in running))
        if pod is not None:
            await self._report(pod)
        if self.record.netns:
            await sandbox.teardown(self.kubelet.node_network(), self.kubelet.netlink, self.uid)
        else:
            sandbox.IPAM(self.kubelet.node_network().ipam_dir).release(self.uid)
        shutil.rmtree(self.pod_dir, ignore_errors=True)
        if pod is not None:
            await self.kubelet.finish_delete(pod)

    async def stop_for_shutdown(self) -> None:
        """The agent is stopping: leave containers running (a restarted agent adopts them)."""
        loop = asyncio.get_running_loop()
        for fd in self.watchers.values():
            loop.remove_reader(fd)
            os.close(fd)
        self.watchers.clear()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    # ------------------------------------------------------------------ status

    async def _report(self, pod: Obj) -> None:
        status = pod_status(pod, self.record, self.kubelet.host_ips, _now(), self.start_time)
        if status == self.last_status:
            return
        if self.last_status is not None and _same_but_times(status, self.last_status):
            return
        await self.kubelet.patch_status(pod, status)
        self.last_status = status


def _write_private(path: Path, text: str) -> None:
    """Write a file only root can read (a container's env may hold Secret values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _same_but_times(a: Obj, b: Obj) -> bool:
    def strip(s: Obj) -> Obj:
        return {**s, "conditions": [{**c, "lastTransitionTime": None} for c in s.get("conditions") or []]}

    return strip(a) == strip(b)


def _grace(pod: Obj) -> float:
    meta = pod.get("metadata") or {}
    if meta.get("deletionGracePeriodSeconds") is not None:
        return float(meta["deletionGracePeriodSeconds"])
    return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))


def _pod_ref(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta['name']}_{meta['namespace']}({meta.get('uid', '')})"


def _terminal_policy(pod: Obj, record: PodRecord) -> bool:
    """Whether the pod is done for good (nothing left to start under its restart policy)."""
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    if policy == "Always":
        return False
    recs = [record.containers.get(c["name"]) for c in (pod.get("spec") or {}).get("containers") or []]
    if any(r is None or r.running or r.current_exit is None for r in recs):
        return False
    if policy == "Never":
        return True
    return all(r is not None and r.current_exit is not None and r.current_exit.exit_code == 0 for r in recs)

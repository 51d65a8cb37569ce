"""kubelet-lite: one node's agent — registration, heartbeats, the pod network's routes, pod workers.

It runs as its own process inside the node's network namespace (so probes reach pods exactly as a
node would) and talks to the API server over its Unix socket through the client seam.  It plays
three upstream parts on its node:

- the **kubelet**: registers the Node (addresses, zone label, capacity, Ready), renews its Lease
  in ``kube-node-lease``, runs the pods bound to it through one :class:`PodWorker` each, reports
  their status and Events, serves container logs on ``kubelet.sock``;
- the **CNI daemon** (kindnet's role): keeps routes (or VXLAN entries) to every peer node's pod
  CIDRs as Nodes come and go;
- the **node problem** side of ``kubewire node stop``: a stopped node's agent is frozen (SIGSTOP),
  so its heartbeats stop exactly as if the node had been cut off.

Everything it starts survives it: after ``kill -9`` a new agent reads each pod's record, adopts
still-running containers by pid and start time, and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubewire.agents.kubelet import podspec, sandbox
from kubewire.agents.kubelet.logserver import LogError, LogTarget
from kubewire.agents.kubelet.logserver import serve as serve_logs
from kubewire.agents.kubelet.spawner import Spawner
from kubewire.agents.kubelet.state import PodRecord, load, log_path, pod_dir_name
from kubewire.agents.kubelet.worker import PodWorker
from kubewire.agents.nodeconfig import NodeConfig
from kubewire.api.coordination import LEASE, NODE_LEASE_NAMESPACE
from kubewire.api.core import CONFIG_MAP, EVENT, NODE, SECRET
from kubewire.api.meta import now_rfc3339
from kubewire.api.netconfig import ClusterNetwork
from kubewire.api.pod import POD
from kubewire.api.service import SERVICE
from kubewire.client import Client
from kubewire.controllers.runtime import RecordEvent, event_object
from kubewire.dataplane import podnet
from kubewire.errors import AlreadyExists, NotFound, StatusError
from kubewire.host.netlink import Netlink, NetlinkError, apply_all
from kubewire.host.owned import Owned
from kubewire.store.informer import Handlers, Informer

log = logging.getLogger("kubewire.kubelet")
Obj = dict[str, Any]
KUBELET_VERSION = "v1.32.0-kubewire"
LEASE_DURATION = 40  # the kubelet's nodeLeaseDurationSeconds
STATUS_REPORT = 60.0  # a full node status this often even when nothing changed
ZONE_LABEL = "topology.kubernetes.io/zone"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


class Kubelet:
    """One node's agent."""

    def __init__(
        self,
        client: Client,
        config: NodeConfig,
        network: ClusterNetwork,
        netlink: Netlink,
        lease_interval: float = 10.0,
        spawner: Spawner | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.network = network
        self.netlink = netlink
        self.lease_interval = lease_interval
        self.pods_dir = config.node_dir / "pods"
        self.owned = Owned(config.state_dir / "netns.owned")
        self.pod_kind, self.node_kind, self.event_kind, self.lease_kind = POD, NODE, EVENT, LEASE
        self.pods = Informer(client, POD, field_selector=f"spec.nodeName={config.name}")
        self.nodes = Informer(client, NODE)
        self.configmaps = Informer(client, CONFIG_MAP)
        self.secrets = Informer(client, SECRET)
        self.services = Informer(client, SERVICE)
        self.pods.add_indexer("uid", lambda o: [str((o.get("metadata") or {}).get("uid", ""))])
        self.workers: dict[str, PodWorker] = {}
        self.ready = asyncio.Event()  # set once registered and running pods (other agents wait on it)
        self.spawner = spawner or Spawner(config.state_dir)
        self.host_ips = [a for a in config.addresses if _family(a) in network.families]
        self.host_resolv_conf = _read("/etc/resolv.conf")
        self.host_hosts = _read("/etc/hosts")
        self.routes_dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pod_cidrs: tuple[str, ...] = ()
        self._log_runner: Any = None

    # ------------------------------------------------------------------ wiring

    def node_network(self) -> sandbox.NodeNetwork:
        mtu = podnet.FABRIC_MTU - podnet.VXLAN_OVERHEAD if self.network.pod_network == "vxlan" else podnet.FABRIC_MTU
        return sandbox.NodeNetwork(
            self.config.cluster,
            self.config.name,
            self.config.netns,
            self._pod_cidrs,
            mtu,
            self.config.node_dir / "ipam",
            self.owned,
        )

    def pod_by_uid(self, uid: str) -> Obj | None:
        found = self.pods.by_index("uid", uid)
        return found[0] if found else None

    def worker_done(self, uid: str, worker: PodWorker) -> None:
        if self.workers.get(uid) is worker:
            del self.workers[uid]

    def event(self, pod: Obj, kind: str, reason: str, message: str) -> None:
        ev = event_object(RecordEvent(pod, kind, reason, message), "kubelet", now_rfc3339())
        ev["source"] = {"component": "kubelet", "host": self.config.name}
        ev["reportingInstance"] = self.config.name

        async def post() -> None:
            try:
                await self.client.create(self.event_kind, ev, field_manager="kubelet")
            except (StatusError, OSError) as e:
                log.warning("event %s for %s not recorded: %s", reason, pod["metadata"].get("name"), e)

        asyncio.get_running_loop().create_task(post())

    async def patch_status(self, pod: Obj, status: Obj) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(NotFound):
            await self.client.patch(
                self.pod_kind, meta["name"], {"status": status}, meta["namespace"], "merge", "kubelet", "status"
            )

    async def finish_delete(self, pod: Obj) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(NotFound):
            await self.client.delete(self.pod_kind, meta["name"], meta["namespace"], grace_period=0)

    def container_env(self, pod: Obj, container: Obj, pod_ips: list[str]) -> list[tuple[str, str]]:
        ns = pod["metadata"]["namespace"]

        def by_name(inf: Informer) -> dict[str, Obj]:
            return {o["metadata"]["name"]: o for o in inf.list() if o["metadata"].get("namespace") == ns}

        services = [o for o in self.services.list() if o["metadata"].get("namespace") == ns]
        master = self.services.get("default/kubernetes")
        if master is not None and ns != "default":
            services.append(master)
        return podspec.container_env(
            pod,
            container,
            configmaps=by_name(self.configmaps),
            secrets=by_name(self.secrets),
            services=services,
            host_ips=self.host_ips,
            pod_ips=pod_ips,
            enable_service_links=(pod.get("spec") or {}).get("enableServiceLinks", True) is not False,
        )

    # ------------------------------------------------------------------ node

    def _node_object(self) -> Obj:
        cfg = self.config
        addresses = [{"type": "InternalIP", "address": a} for a in self.host_ips]
        addresses.append({"type": "Hostname", "address": cfg.name})
        labels = {
            "kubernetes.io/hostname": cfg.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                platform.machine(), platform.machine()
            ),
            ZONE_LABEL: cfg.zone,
            **cfg.labels,
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": cfg.name, "labels": labels},
            "spec": {},
            "status": self._node_status(addresses),
        }

    def _node_status(self, addresses: list[Obj] | None = None) -> Obj:
        now = now_rfc3339()
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": _memory(), "pods": "110", "ephemeral-storage": "100Gi"}

        def cond(kind: str, status: str, reason: str, message: str) -> Obj:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }

        status: Obj = {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                cond(
                    "MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"
                ),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": _read("/proc/sys/kernel/random/boot_id").strip(),
                "kernelVersion": platform.release(),
                "osImage": "kubewire",
                "containerRuntimeVersion": "kubewire://0.1.0",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
            },
        }
        if addresses is not None:
            status["addresses"] = addresses
        return status

    async def register(self) -> None:
        """Create the Node, or bring an existing one's labels, addresses and conditions up to date."""
        desired = self._node_object()
        try:
            await self.client.create(self.node_kind, desired, field_manager="kubelet")
        except AlreadyExists:
            await self.client.patch(
                self.node_kind, self.config.name, {"metadata": {"labels": desired["metadata"]["labels"]}}, "", "merge"
            )
        await self.client.patch(
            self.node_kind, self.config.name, {"status": desired["status"]}, "", "merge", "kubelet", "status"
        )

    async def _heartbeats(self) -> None:
        last_status = asyncio.get_running_loop().time()
        while True:
            try:
                await self._renew_lease()
                now = asyncio.get_running_loop().time()
                if now - last_status >= STATUS_REPORT or not self._status_current():
                    await self.client.patch(
                        self.node_kind,
                        self.config.name,
                        {"status": self._node_status()},
                        "",
                        "merge",
                        "kubelet",
                        "status",
                    )
                    last_status = now
            except (StatusError, OSError) as e:
                log.warning("heartbeat failed: %s", e)
            await asyncio.sleep(self.lease_interval)

    def _status_current(self) -> bool:
        """Whether the Node in the API still says what this kubelet would (the node lifecycle
        controller rewrites Ready to Unknown while heartbeats are missing; the kubelet puts it back)."""
        node = self.nodes.get(self.config.name)
        if node is None:
            return False
        conds = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
        ready = conds.get("Ready") or {}
        return ready.get("status") == "True" and ready.get("reason") == "KubeletReady"

    async def _renew_lease(self) -> None:
        now = _micro_now()
        name = self.config.name
        try:
            lease = await self.client.get(self.lease_kind, name, NODE_LEASE_NAMESPACE)
        except NotFound:
            node = self.nodes.get(name) or await self.client.get(self.node_kind, name)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": NODE_LEASE_NAMESPACE,
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
                    ],
                },
                "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": now},
            }
            with contextlib.suppress(AlreadyExists):
                await self.client.create(self.lease_kind, body, field_manager="kubelet")
            return
        lease["spec"] = {**(lease.get("spec") or {}), "holderIdentity": name, "renewTime": now}
        await self.client.update(self.lease_kind, lease, field_manager="kubelet")

    # ------------------------------------------------------------------ pod network routes

    def _peer(self, node: Obj) -> podnet.NodeNet | None:
        meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
        addresses = tuple(a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP")
        cidrs = tuple(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
        if not addresses:
            return None
        name = str(meta.get("name", ""))
        return podnet.NodeNet(name, "", addresses, (), cidrs, self.network.pod_network)

    def _me(self) -> podnet.NodeNet:
        return podnet.NodeNet(
            self.config.name,
            self.config.netns,
            self.config.addresses,
            self.config.prefixes,
            self._pod_cidrs,
            self.network.pod_network,
        )

    async def _routes(self) -> None:
        vxlan_ready = False
        while True:
            await self.routes_dirty.wait()
            self.routes_dirty.clear()
            me = self.nodes.get(self.config.name)
            if me is not None:
                spec = me.get("spec") or {}
                cidrs = tuple(spec.get("podCIDRs") or ())
                if cidrs != self._pod_cidrs:
                    self._pod_cidrs = cidrs
                    vxlan_ready = False
                    for w in self.workers.values():
                        w.poke()
            peers = [p for p in (self._peer(n) for n in self.nodes.list()) if p is not None]
            try:
                if self.network.pod_network == "vxlan" and self._pod_cidrs and not vxlan_ready:
                    with contextlib.suppress(NetlinkError):
                        await apply_all(self.netlink, podnet.vxlan_device_plan(self._me()))
                    vxlan_ready = True
                await apply_all(self.netlink, podnet.peer_routes(self._me(), peers))
                present = [r for r in await self.netlink.routes(self.config.netns) if _in_pod_range(r, self.network)]
                own = set(self._pod_cidrs)
                await apply_all(
                    self.netlink, podnet.stale_peer_routes(self._me(), peers, [r for r in present if r not in own])
                )
            except NetlinkError as e:
                log.warning("pod network routes: %s", e)
                await asyncio.sleep(1.0)
                self.routes_dirty.set()

    # ------------------------------------------------------------------ pods

    def _on_pod(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        worker = self.workers.get(uid)
        if worker is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and not meta.get("deletionTimestamp"):
                record = load(self.pods_dir / pod_dir_name(meta["namespace"], meta["name"], uid))
                if record is None:
                    return  # finished before this agent knew it; nothing to run
            record = load(self.pods_dir / pod_dir_name(meta["namespace"], meta["name"], uid)) or PodRecord(
                uid, meta["namespace"], meta["name"]
            )
            worker = self.workers[uid] = PodWorker(self, uid, record)
            worker.start()
        worker.poke()

    def _on_pod_deleted(self, pod: Obj) -> None:
        """Gone from the API: the worker (if any) stops what still runs; a pod this agent already
        finished (its own final delete) has no worker and no record left, so nothing happens."""
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        worker = self.workers.get(uid)
        if worker is not None:
            worker.poke()
        elif load(self.pods_dir / pod_dir_name(meta.get("namespace", ""), meta.get("name", ""), uid)) is not None:
            self._on_pod(pod)

    def _adopt_orphans(self) -> None:
        """Records of pods the API no longer has: stop what they left running and clean up."""
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.pods_dir):
                record = load(Path(entry.path))
                if record is None or record.uid in self.workers:
                    continue
                worker = self.workers[record.uid] = PodWorker(self, record.uid, record)
                worker.start()

    # ------------------------------------------------------------------ logs

    def locate(self, namespace: str, pod: str, container: str, previous: bool) -> LogTarget:
        obj = self.pods.get(f"{namespace}/{pod}")
        if obj is None:
            raise LogError(404, f'pods "{pod}" not found')
        uid = obj["metadata"]["uid"]
        worker = self.workers.get(uid)
        record = worker.record if worker else load(self.pods_dir / pod_dir_name(namespace, pod, uid))
        rec = None
        if record is not None:
            rec = record.containers.get(container) or record.init_containers.get(container)
        if rec is None or not rec.run_id:
            raise LogError(400, f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating')
        pod_dir = self.pods_dir / pod_dir_name(namespace, pod, uid)
        if previous:
            if rec.last is None or rec.restart_count == 0:
                raise LogError(400, f'previous terminated container "{container}" in pod "{pod}" not found')
            return LogTarget(log_path(pod_dir, container, rec.restart_count - 1), lambda: False)
        count = rec.restart_count
        target_rec = rec
        return LogTarget(
            log_path(pod_dir, container, count),
            lambda: target_rec.running and target_rec.restart_count == count,
        )

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        self.config.node_dir.mkdir(parents=True, exist_ok=True)
        await self.register()
        for inf in (self.nodes, self.configmaps, self.secrets, self.services, self.pods):
            self._tasks.append(asyncio.create_task(inf.run()))
        for inf in (self.nodes, self.configmaps, self.secrets, self.services, self.pods):
            await inf.synced.wait()
        self.nodes.add_handlers(
            Handlers(
                on_add=lambda o: self.routes_dirty.set(),
                on_update=lambda o, n: self.routes_dirty.set(),
                on_delete=lambda o: self.routes_dirty.set(),
            )
        )
        self.routes_dirty.set()
        self._tasks.append(asyncio.create_task(self._routes()))
        self._tasks.append(asyncio.create_task(self._heartbeats()))
        socket_path = self.config.node_dir / "kubelet.sock"
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        self._log_runner = await serve_logs(self, str(socket_path))
        warming = asyncio.create_task(self.spawner.warm())
        # Wait for the pod CIDR before starting pods (node IPAM assigns it after registration).
        await self.nodes.wait_until(
            lambda inf: bool(((inf.get(self.config.name) or {}).get("spec") or {}).get("podCIDRs")), timeout=30.0
        )
        node = self.nodes.get(self.config.name) or {}
        self._pod_cidrs = tuple((node.get("spec") or {}).get("podCIDRs") or ())
        self.pods.add_handlers(
            Handlers(on_add=self._on_pod, on_update=lambda o, n: self._on_pod(n), on_delete=self._on_pod_deleted)
        )
        for pod in self.pods.list():
            self._on_pod(pod)
        self._adopt_orphans()
        self._tasks.append(warming)
        (self.config.node_dir / "ready").write_text(f"{os.getpid()}\n")
        self.ready.set()
        log.info("node %s ready (pod CIDRs %s)", self.config.name, ", ".join(self._pod_cidrs))
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        for worker in list(self.workers.values()):
            await worker.stop_for_shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._log_runner is not None:
            await self._log_runner.cleanup()
        await self.spawner.close()
        with contextlib.suppress(FileNotFoundError):
            (self.config.node_dir / "ready").unlink()


def _family(addr: str) -> str:
    return "IPv6" if ":" in addr else "IPv4"


def _in_pod_range(dest: str, network: ClusterNetwork) -> bool:
    try:
        net = ipaddress.ip_network(dest, strict=False)
    except ValueError:
        return False
    for cidr in (network.pod_cidr_v4, network.pod_cidr_v6):
        outer = ipaddress.ip_network(cidr)
        if net.version == outer.version and net.subnet_of(outer) and net.prefixlen < net.max_prefixlen:  # type: ignore[arg-type]
            return True
    return False


def _memory() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return f"{line.split()[1]}Ki"
    return "0"


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

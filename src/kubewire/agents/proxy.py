"""kube-proxy for one node: Services and EndpointSlices in, kernel rules in the node's namespace out.

Runs inside the node agent process (which lives in the node's namespace, so ``nft`` changes that
namespace and only it).  Informers feed a change tracker — each event records the Service it
concerns (an EndpointSlice's through its ``kubernetes.io/service-name`` label) and asks the
bounded-frequency runner for a sync — and each sync rebuilds only those Services' part of the
node's snapshot per address family (:mod:`kubewire.dataplane.proxy`), then sends the kernel either
the whole table (the first sync, every periodic resync, after any failure) or only the
element-level difference from what was last applied; the compiler guarantees the two agree.  A
one-Service change therefore costs the same at 10 Services as at 10,000 (bar the compiler's one
comparison pass), which ``bench/proxy.py`` measures.  In ``iptables`` mode (per cluster, for comparison
and teaching) every sync is upstream's full ``iptables-restore`` of the KUBE-* chains.  A restart starts with a full sync, which replaces
the table atomically: established connections keep their conntrack entries and carry on.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from kubewire.agents.changes import ServiceChanges
from kubewire.agents.nodeconfig import NodeConfig
from kubewire.agents.proxyhttp import HealthCheck, ProxyHTTP, ProxyMetrics
from kubewire.agents.runner import BoundedFrequencyRunner
from kubewire.api.discovery import ENDPOINT_SLICE, object_key
from kubewire.api.meta import parse_time
from kubewire.api.netconfig import ClusterNetwork
from kubewire.api.service import SERVICE
from kubewire.client import Client
from kubewire.controllers.slicepacking import ANNOTATION_TRIGGER_TIME
from kubewire.dataplane.proxy import iptables as iptables_rules
from kubewire.dataplane.proxy import nft as compiler
from kubewire.dataplane.proxy.endpoints import categorize
from kubewire.dataplane.proxy.model import NodeContext, ProxySnapshot, SnapshotCache, family_of
from kubewire.host.conntrack import Conntrack, ConntrackCli
from kubewire.host.iptables import IptablesCli, IptablesRestore
from kubewire.host.nft import Nft
from kubewire.store.informer import Informer, Obj

log = logging.getLogger("kubewire.proxy")
SYNC_PERIOD = 30.0  # kube-proxy's --sync-period
MIN_SYNC_PERIOD = 0.1  # bursts (a rollout's readiness flips) coalesce into one sync every 100 ms at most


class Proxy:
    """One node's Service proxy (nftables or iptables mode)."""

    def __init__(
        self,
        client: Client,
        config: NodeConfig,
        network: ClusterNetwork,
        nft: Nft,
        conntrack: Conntrack | None = None,
        iptables: IptablesRestore | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.network = network
        self.nft = nft
        self.services = Informer(client, SERVICE)
        self.slices = Informer(client, ENDPOINT_SLICE)
        # The change tracker: per family, the Services to read again at its next snapshot.
        self.changes = ServiceChanges(self.services, self.slices, (4, 6))
        self.applied: dict[int, ProxySnapshot] = {}  # what the kernel holds, per family
        self.compiled: dict[int, compiler.Compiled] = {}  # the nftables state behind it, per family
        self.caches: dict[int, SnapshotCache] = {}
        self.conntrack = conntrack or ConntrackCli()
        self.iptables = iptables or IptablesCli()
        self.mode = network.proxy_mode
        self.metrics = ProxyMetrics(mode=self.mode)
        self.http = ProxyHTTP(self.metrics)
        self.triggers: dict[str, str] = {}  # slice key -> last-change-trigger-time already programmed
        self.changed_slices: set[str] = set()  # since the last sync (the programming-latency metric)
        self.runner = BoundedFrequencyRunner("proxy", self.sync, MIN_SYNC_PERIOD, SYNC_PERIOD)

    def informers(self) -> list[Informer]:
        return [self.services, self.slices]

    def start_watching(self) -> None:
        """Every Service or EndpointSlice change records its Service and asks for a sync (the
        runner coalesces them)."""

        def service_changed() -> None:
            self.metrics.service_changes += 1
            self.runner.run()

        def slice_changed(obj: Obj) -> None:
            self.metrics.endpoint_changes += 1
            namespace, name = object_key(obj)
            self.changed_slices.add(f"{namespace}/{name}")
            self.runner.run()

        self.changes.watch(service_changed, slice_changed)

    def snapshot(self, family: int) -> tuple[ProxySnapshot, set[str]]:
        """This node's snapshot for ``family`` and the Services that changed since the last one."""
        addresses = tuple(a for a in self.config.addresses if family_of(a) == family)
        pods = tuple(c for c in self.network.pod_cidrs if family_of(c.split("/")[0]) == family)
        services = tuple(c for c in self.network.service_cidrs if family_of(c.split("/")[0]) == family)
        node = NodeContext(self.config.name, self.config.zone, addresses, pods, services)
        keys = self.changes.take(family)
        cache = self.caches.get(family)
        if cache is None:  # the first snapshot reads everything
            cache = self.caches[family] = SnapshotCache(family)
            return cache.build(self.services.list(), self.slices.list(), node)
        return cache.update(keys, self.changes.service, self.changes.slices_of, node)

    async def sync(self, periodic: bool) -> None:
        start = time.monotonic()
        checks: dict[int, HealthCheck] = {}
        full = False
        for family in (4 if f == "IPv4" else 6 for f in self.network.families):
            with paused_gc():
                new, changed = self.snapshot(family)
            old = self.applied.pop(family, None)  # forgotten until applied: a failure forces a full sync
            compiled = self.compiled.pop(family, None)
            full = full or periodic or old is None or self.mode == "iptables"
            try:
                if self.mode == "iptables":
                    # Upstream's iptables proxier: the whole KUBE-* state in one iptables-restore,
                    # stale service chains found in what iptables-save shows.
                    saved = await self.iptables.save(family)
                    with paused_gc():
                        text = iptables_rules.restore_input(new, saved)
                    await self.iptables.restore(family, text)
                else:
                    with paused_gc():
                        compiled, script = _transaction(compiled, new, changed, periodic)
                    if script.strip():
                        await self.nft.apply(script)
                    self.compiled[family] = compiled
                    if full or periodic:  # rule counts, as upstream reports them
                        self.metrics.elements = {
                            **self.metrics.elements,
                            **{f"{name}/ipv{family}": n for name, n in compiled.element_counts().items()},
                        }
            except Exception:
                self.metrics.failures += 1
                raise
            self.applied[family] = new
            if old is not None:
                await self._clear_stale_udp(old.node, self.caches[family], new.node)
            for sp in new.services:
                if sp.external_policy_local and sp.health_check_node_port:
                    local = len(categorize(sp, new.node).local)
                    known = checks.get(sp.health_check_node_port)
                    count = max(local, known.local_endpoints) if known else local
                    checks[sp.health_check_node_port] = HealthCheck(
                        sp.namespace, sp.name, sp.health_check_node_port, count
                    )
        await self.http.update(list(checks.values()))
        elapsed = time.monotonic() - start
        self.metrics.sync.observe(elapsed)
        (self.metrics.full_sync if full else self.metrics.partial_sync).observe(elapsed)
        self.metrics.last_sync = time.time()
        self._programming_latency()

    async def _clear_stale_udp(self, old_node: NodeContext, cache: SnapshotCache, node: NodeContext) -> None:
        """kube-proxy's conntrack clean-up: entries NATed to a UDP endpoint that is gone, and entries
        of a UDP Service that had no endpoints and now has some (they were being rejected).  Only
        the Services the last snapshot changed are looked at (``SnapshotCache.previous``)."""
        for name, before in cache.previous.items():
            namespace, _, svc = name.partition("/")
            was_by_key = {sp.key: sp for sp in before}
            for sp in cache.ports((namespace, svc)):
                if sp.protocol != "UDP":
                    continue
                was = was_by_key.get(sp.key)
                now_eps = {e.ip for e in categorize(sp, node).reachable}
                old_eps = {e.ip for e in categorize(was, old_node).reachable} if was is not None else set()
                try:
                    for ip in (*sp.cluster_ips, *sp.external_ips, *sp.load_balancer_ips):
                        if was is not None and not old_eps and now_eps:
                            await self.conntrack.clear_udp(ip, sp.port)
                        for gone in sorted(old_eps - now_eps):
                            await self.conntrack.clear_udp(ip, sp.port, gone)
                except OSError as e:
                    log.warning("conntrack clean-up for %s: %s", sp.key, e)

    def _programming_latency(self) -> None:
        """Upstream's network programming latency: from each EndpointSlice's last-change-trigger-time
        to the sync that put it in the kernel (observed once per trigger, for the slices that changed)."""
        now = datetime.now(UTC)
        changed, self.changed_slices = self.changed_slices, set()
        for key in changed:
            sl = self.slices.get(key)
            if sl is None:
                self.triggers.pop(key, None)
                continue
            trigger = ((sl.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_TRIGGER_TIME)
            if not trigger or self.triggers.get(key) == trigger:
                continue
            self.triggers[key] = trigger
            when = parse_time(trigger)
            if when is not None:
                self.metrics.programming.observe(max(0.0, (now - when).total_seconds()))


def _transaction(
    compiled: compiler.Compiled | None, new: ProxySnapshot, changed: set[str], periodic: bool
) -> tuple[compiler.Compiled, str]:
    """The compiled state for ``new`` and the nft script that moves the kernel to it."""
    if compiled is None:  # start, or after a failure: replace the table outright
        compiled = compiler.Compiled(new)
        return compiled, compiled.full()
    if periodic:  # repair drift, but keep session affinity entries
        fresh = compiler.Compiled(new)
        return fresh, compiler.resync_ruleset(compiled, fresh)
    return compiled, compiled.update(new, changed=changed)  # element-level, as much as changed


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection during a synchronous compile.  A full sync at 10,000 Services
    allocates a few million long-lived objects, and the collector's passes over the growing heap
    cost about a second of it (bench/proxy.py); the compile makes no reference cycles, and the
    collector runs as usual once the step is over."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()

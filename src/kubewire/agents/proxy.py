"""kube-proxy for one node: Services and EndpointSlices in, kernel rules in the node's namespace out.

Runs inside the node agent process (which lives in the node's namespace, so ``nft`` changes that
namespace and only it).  Informers feed a change tracker — each event just asks the
bounded-frequency runner for a sync — and each sync compiles the node's snapshot per address family
(:mod:`kubewire.dataplane.proxy`) and sends the kernel either the whole table (the first sync,
every periodic resync, after any failure) or only the element-level difference from what was last
applied; the compiler guarantees the two agree.  In ``iptables`` mode (per cluster, for comparison
and teaching) every sync is upstream's full ``iptables-restore`` of the KUBE-* chains.  A restart starts with a full sync, which replaces
the table atomically: established connections keep their conntrack entries and carry on.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from kubewire.agents.nodeconfig import NodeConfig
from kubewire.agents.proxyhttp import HealthCheck, ProxyHTTP, ProxyMetrics
from kubewire.agents.runner import BoundedFrequencyRunner
from kubewire.api.discovery import ENDPOINT_SLICE
from kubewire.api.meta import parse_time
from kubewire.api.netconfig import ClusterNetwork
from kubewire.api.service import SERVICE
from kubewire.client import Client
from kubewire.controllers.slicepacking import ANNOTATION_TRIGGER_TIME
from kubewire.dataplane.proxy import iptables as iptables_rules
from kubewire.dataplane.proxy import nft as compiler
from kubewire.dataplane.proxy.endpoints import categorize
from kubewire.dataplane.proxy.model import NodeContext, ProxySnapshot, SnapshotCache
from kubewire.host.conntrack import Conntrack, ConntrackCli
from kubewire.host.iptables import IptablesCli, IptablesRestore
from kubewire.host.nft import Nft
from kubewire.store.informer import Handlers, Informer

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
        self.applied: dict[int, ProxySnapshot] = {}  # what the kernel holds, per family
        self.compiled: dict[int, compiler.Compiled] = {}  # the nftables state behind it, per family
        self.caches: dict[int, SnapshotCache] = {}
        self.conntrack = conntrack or ConntrackCli()
        self.iptables = iptables or IptablesCli()
        self.mode = network.proxy_mode
        self.metrics = ProxyMetrics(mode=self.mode)
        self.http = ProxyHTTP(self.metrics)
        self.triggers: dict[str, str] = {}  # slice key -> last-change-trigger-time already programmed
        self.runner = BoundedFrequencyRunner("proxy", self.sync, MIN_SYNC_PERIOD, SYNC_PERIOD)

    def informers(self) -> list[Informer]:
        return [self.services, self.slices]

    def start_watching(self) -> None:
        """Every Service or EndpointSlice change asks for a sync (the runner coalesces them)."""

        def counting(attr: str) -> Handlers:
            def changed(*_: object) -> None:
                setattr(self.metrics, attr, getattr(self.metrics, attr) + 1)
                self.runner.run()

            return Handlers(on_add=changed, on_update=changed, on_delete=changed)

        self.services.add_handlers(counting("service_changes"))
        self.slices.add_handlers(counting("endpoint_changes"))

    def snapshot(self, family: int) -> tuple[ProxySnapshot, set[str]]:
        """This node's snapshot for ``family`` and the Services that changed since the last one."""
        addresses = tuple(a for a in self.config.addresses if _version(a) == family)
        pods = tuple(c for c in self.network.pod_cidrs if _version(c.split("/")[0]) == family)
        node = NodeContext(self.config.name, self.config.zone, addresses, pods)
        cache = self.caches.setdefault(family, SnapshotCache(family))
        return cache.build(self.services.list(), self.slices.list(), node)

    async def sync(self, periodic: bool) -> None:
        start = time.monotonic()
        checks: dict[int, HealthCheck] = {}
        full = False
        for family in (4 if f == "IPv4" else 6 for f in self.network.families):
            new, changed = self.snapshot(family)
            old = self.applied.pop(family, None)  # forgotten until applied: a failure forces a full sync
            compiled = self.compiled.pop(family, None)
            full = full or periodic or old is None or self.mode == "iptables"
            try:
                if self.mode == "iptables":
                    # Upstream's iptables proxier: the whole KUBE-* state in one iptables-restore,
                    # stale service chains found in what iptables-save shows.
                    saved = await self.iptables.save(family)
                    await self.iptables.restore(family, iptables_rules.restore_input(new, saved))
                else:
                    if compiled is None:  # start, or after a failure: replace the table outright
                        compiled = compiler.Compiled(new)
                        script = compiled.full()
                    elif periodic:  # repair drift, but keep session affinity entries
                        fresh = compiler.Compiled(new)
                        script = compiler.resync_ruleset(compiled, fresh)
                        compiled = fresh
                    else:  # element-level, in time proportional to what changed
                        script = compiled.update(new, changed=changed)
                    if script.strip():
                        await self.nft.apply(script)
                    self.compiled[family] = compiled
                    if full or periodic:  # rule counts, as upstream reports them (cheap enough per resync)
                        table = compiled.table()
                        self.metrics.elements = {
                            **self.metrics.elements,
                            **{f"{name}/ipv{family}": len(els) for name, els in table.elements.items()},
                        }
            except Exception:
                self.metrics.failures += 1
                raise
            self.applied[family] = new
            if old is not None:
                await self._clear_stale_udp(old, new, changed)
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

    async def _clear_stale_udp(self, old: ProxySnapshot, new: ProxySnapshot, changed: set[str]) -> None:
        """kube-proxy's conntrack clean-up: entries NATed to a UDP endpoint that is gone, and entries
        of a UDP Service that had no endpoints and now has some (they were being rejected)."""
        if not changed:
            return
        before = old.by_key()
        for sp in new.services:
            if sp.protocol != "UDP" or f"{sp.namespace}/{sp.name}" not in changed:
                continue
            was = before.get(sp.key)
            now_eps = {e.ip for e in categorize(sp, new.node).reachable}
            old_eps = {e.ip for e in categorize(was, old.node).reachable} if was is not None else set()
            addresses = [*sp.cluster_ips, *sp.external_ips, *sp.load_balancer_ips]
            try:
                for ip in addresses:
                    if was is not None and not old_eps and now_eps:
                        await self.conntrack.clear_udp(ip, sp.port)
                    for gone in sorted(old_eps - now_eps):
                        await self.conntrack.clear_udp(ip, sp.port, gone)
            except OSError as e:
                log.warning("conntrack clean-up for %s: %s", sp.key, e)

    def _programming_latency(self) -> None:
        """Upstream's network programming latency: from each EndpointSlice's last-change-trigger-time
        to the sync that put it in the kernel (observed once per trigger)."""
        now = datetime.now(UTC)
        for sl in self.slices.list():
            meta = sl.get("metadata") or {}
            trigger = (meta.get("annotations") or {}).get(ANNOTATION_TRIGGER_TIME)
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            if not trigger or self.triggers.get(key) == trigger:
                continue
            self.triggers[key] = trigger
            when = parse_time(trigger)
            if when is not None:
                self.metrics.programming.observe(max(0.0, (now - when).total_seconds()))


def _version(address: str) -> int:
    return 6 if ":" in address else 4

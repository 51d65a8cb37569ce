"""kube-proxy for one node: Services and EndpointSlices in, nftables rules in the node's namespace out.

Runs inside the node agent process (which lives in the node's namespace, so ``nft`` changes that
namespace and only it).  Informers feed a change tracker — each event just asks the
bounded-frequency runner for a sync — and each sync compiles the node's snapshot per address family
(:mod:`kubewire.dataplane.proxy`) and sends the kernel either the whole table (the first sync,
every periodic resync, after any failure) or only the element-level difference from what was last
applied; the compiler guarantees the two agree.  A restart starts with a full sync, which replaces
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
from kubewire.dataplane.proxy import nft as compiler
from kubewire.dataplane.proxy.endpoints import categorize
from kubewire.dataplane.proxy.model import NodeContext, ProxySnapshot, build_snapshot
from kubewire.host.conntrack import Conntrack, ConntrackCli
from kubewire.host.nft import Nft
from kubewire.store.informer import Handlers, Informer

log = logging.getLogger("kubewire.proxy")
SYNC_PERIOD = 30.0  # kube-proxy's --sync-period
MIN_SYNC_PERIOD = 0.1  # bursts (a rollout's readiness flips) coalesce into one sync every 100 ms at most


class Proxy:
    """One node's Service proxy (nftables mode)."""

    def __init__(
        self,
        client: Client,
        config: NodeConfig,
        network: ClusterNetwork,
        nft: Nft,
        conntrack: Conntrack | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.network = network
        self.nft = nft
        self.services = Informer(client, SERVICE)
        self.slices = Informer(client, ENDPOINT_SLICE)
        self.applied: dict[int, ProxySnapshot] = {}  # what the kernel holds, per family
        self.conntrack = conntrack or ConntrackCli()
        self.metrics = ProxyMetrics()
        self.http = ProxyHTTP(self.metrics)
        self.triggers: dict[str, str] = {}  # slice key -> last-change-trigger-time already programmed
        self.runner = BoundedFrequencyRunner("proxy", self.sync, MIN_SYNC_PERIOD, SYNC_PERIOD)
        self.node_zone = config.zone

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

    def snapshot(self, family: int) -> ProxySnapshot:
        addresses = tuple(a for a in self.config.addresses if _version(a) == family)
        pods = tuple(c for c in self.network.pod_cidrs if _version(c.split("/")[0]) == family)
        node = NodeContext(self.config.name, self.node_zone, addresses, pods)
        return build_snapshot(self.services.list(), self.slices.list(), node, family)

    async def sync(self, periodic: bool) -> None:
        start = time.monotonic()
        checks: dict[int, HealthCheck] = {}
        full = False
        for family in (4 if f == "IPv4" else 6 for f in self.network.families):
            new = self.snapshot(family)
            old = self.applied.pop(family, None)  # forgotten until applied: a failure forces a full sync
            full = full or periodic or old is None
            script = compiler.full_ruleset(new) if periodic or old is None else compiler.partial_update(old, new)
            try:
                if script.strip():
                    await self.nft.apply(script)
            except Exception:
                self.metrics.failures += 1
                raise
            self.applied[family] = new
            if old is not None:
                await self._clear_stale_udp(old, new)
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

    async def _clear_stale_udp(self, old: ProxySnapshot, new: ProxySnapshot) -> None:
        """kube-proxy's conntrack clean-up: entries NATed to a UDP endpoint that is gone, and entries
        of a UDP Service that had no endpoints and now has some (they were being rejected)."""
        before = old.by_key()
        for sp in new.services:
            if sp.protocol != "UDP":
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

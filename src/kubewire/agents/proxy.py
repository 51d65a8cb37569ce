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
from dataclasses import dataclass, field

from kubewire.agents.nodeconfig import NodeConfig
from kubewire.agents.runner import BoundedFrequencyRunner
from kubewire.api.discovery import ENDPOINT_SLICE
from kubewire.api.netconfig import ClusterNetwork
from kubewire.api.service import SERVICE
from kubewire.client import Client
from kubewire.dataplane.proxy import nft as compiler
from kubewire.dataplane.proxy.model import NodeContext, ProxySnapshot, build_snapshot
from kubewire.host.nft import Nft
from kubewire.store.informer import Handlers, Informer

log = logging.getLogger("kubewire.proxy")
SYNC_PERIOD = 30.0  # kube-proxy's --sync-period
MIN_SYNC_PERIOD = 0.1  # bursts (a rollout's readiness flips) coalesce into one sync every 100 ms at most


@dataclass
class SyncStats:
    """What the metrics endpoint reports (upstream names in ``kubewire.agents.proxy.metrics``)."""

    full_syncs: int = 0
    partial_syncs: int = 0
    failures: int = 0
    last_duration: float = 0.0
    durations: list[float] = field(default_factory=list)


class Proxy:
    """One node's Service proxy (nftables mode)."""

    def __init__(self, client: Client, config: NodeConfig, network: ClusterNetwork, nft: Nft) -> None:
        self.client = client
        self.config = config
        self.network = network
        self.nft = nft
        self.services = Informer(client, SERVICE)
        self.slices = Informer(client, ENDPOINT_SLICE)
        self.applied: dict[int, ProxySnapshot] = {}  # what the kernel holds, per family
        self.stats = SyncStats()
        self.runner = BoundedFrequencyRunner("proxy", self.sync, MIN_SYNC_PERIOD, SYNC_PERIOD)
        self.node_zone = config.zone

    def informers(self) -> list[Informer]:
        return [self.services, self.slices]

    def start_watching(self) -> None:
        """Every Service or EndpointSlice change asks for a sync (the runner coalesces them)."""
        handlers = Handlers(
            on_add=lambda o: self.runner.run(),
            on_update=lambda o, n: self.runner.run(),
            on_delete=lambda o: self.runner.run(),
        )
        self.services.add_handlers(handlers)
        self.slices.add_handlers(handlers)

    def snapshot(self, family: int) -> ProxySnapshot:
        addresses = tuple(a for a in self.config.addresses if _version(a) == family)
        pods = tuple(c for c in self.network.pod_cidrs if _version(c.split("/")[0]) == family)
        node = NodeContext(self.config.name, self.node_zone, addresses, pods)
        return build_snapshot(self.services.list(), self.slices.list(), node, family)

    async def sync(self, periodic: bool) -> None:
        start = time.monotonic()
        for family in (4 if f == "IPv4" else 6 for f in self.network.families):
            new = self.snapshot(family)
            old = self.applied.pop(family, None)  # forgotten until applied: a failure forces a full sync
            full = periodic or old is None
            script = compiler.full_ruleset(new) if full or old is None else compiler.partial_update(old, new)
            try:
                if script.strip():
                    await self.nft.apply(script)
            except Exception:
                self.stats.failures += 1
                raise
            self.applied[family] = new
            if full:
                self.stats.full_syncs += 1
            else:
                self.stats.partial_syncs += 1
        self.stats.last_duration = time.monotonic() - start
        self.stats.durations.append(self.stats.last_duration)
        del self.stats.durations[:-1000]


def _version(address: str) -> int:
    return 6 if ":" in address else 4

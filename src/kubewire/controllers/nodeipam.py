"""Per-node pod CIDRs: kube-controller-manager's node-ipam controller, range allocator.

Upstream (``pkg/controller/nodeipam/ipam/range_allocator.go`` over ``cidrset``) gives every Node
without ``spec.podCIDRs`` one subnet of each cluster CIDR (``--cluster-cidr``, split at
``--node-cidr-mask-size-ipv4/-ipv6``, default /24 and /64), patching ``spec.podCIDR`` and
``spec.podCIDRs``; subnets overlapping the service CIDRs are never handed out; candidates are
tried in order from a rotating cursor; when a range is exhausted the Node gets a Normal Event
``CIDRNotAvailable`` ("Node <name> status is now: CIDRNotAvailable").  Set podCIDRs are
immutable (Node validation), so a Node keeps its subnets until it is deleted.

What is in use is read from the informer cache on every reconcile, so a restart needs no
bookkeeping.  The one piece of memory is :attr:`NodeIPAMController.pending`: subnets proposed
for a Node whose patch the cache does not show yet, so two Nodes reconciled back to back never
get the same subnet; an entry goes once the cache shows the Node's podCIDRs, or the Node is gone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kubewire.api.core import NODE
from kubewire.api.netvalid import parse_network
from kubewire.api.registry import Kind, Obj
from kubewire.controllers.runtime import Caches, Patch, Plan, RecordEvent, own_key

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Upstream defaults of --node-cidr-mask-size-ipv4 / --node-cidr-mask-size-ipv6.
DEFAULT_MASK_SIZES = {4: 24, 6: 64}
# Upstream cidrset refuses an IPv6 cluster CIDR split into more than 2^16 node subnets.
MAX_SUBNET_BITS = 16
CIDR_NOT_AVAILABLE = "CIDRNotAvailable"


@dataclass
class CIDRSet:
    """The node subnets of one cluster CIDR (upstream ``cidrset.CidrSet``), indexed 0..count-1."""

    cluster: Network
    mask: int
    reserved: set[int] = field(default_factory=set)  # overlapping a service CIDR
    next_candidate: int = 0

    @property
    def count(self) -> int:
        return 1 << (self.mask - self.cluster.prefixlen)

    @property
    def step(self) -> int:
        return 1 << (self.cluster.max_prefixlen - self.mask)

    def subnet(self, index: int) -> str:
        first = int(self.cluster.network_address) + index * self.step
        return str(ipaddress.ip_network((first, self.mask)))

    def index_of(self, cidr: str) -> int | None:
        """The index of the subnet ``cidr`` names, or None if it is not one of this set's."""
        net = parse_network(cidr)
        if net is None or net.version != self.cluster.version or net.prefixlen != self.mask:
            return None
        if not net.subnet_of(self.cluster):  # type: ignore[arg-type]
            return None
        return (int(net.network_address) - int(self.cluster.network_address)) // self.step

    def reserve_overlap(self, other: Network) -> None:
        """Upstream ``filterOutServiceRange``: subnets overlapping ``other`` are never handed out."""
        if other.version != self.cluster.version or not self.cluster.overlaps(other):  # type: ignore[arg-type]
            return
        lo = max(int(other.network_address), int(self.cluster.network_address))
        hi = min(int(other.broadcast_address), int(self.cluster.broadcast_address))
        base = int(self.cluster.network_address)
        self.reserved.update(range((lo - base) // self.step, (hi - base) // self.step + 1))

    def next_free(self, used: set[int]) -> int | None:
        """Upstream ``AllocateNext``: the first free subnet from the rotating cursor."""
        for i in range(self.count):
            candidate = (self.next_candidate + i) % self.count
            if candidate not in used and candidate not in self.reserved:
                return candidate
        return None


def _pod_cidrs(node: Obj) -> list[str]:
    return [c for c in (node.get("spec") or {}).get("podCIDRs") or [] if isinstance(c, str)]


def _name(node: Obj) -> str:
    return str((node.get("metadata") or {}).get("name", ""))


class NodeIPAMController:
    """Gives each Node one pod CIDR per cluster CIDR (see the module docstring)."""

    name = "nodeipam"

    def __init__(
        self,
        cluster_cidrs: list[str],
        node_mask_sizes: list[int] | None = None,
        service_cidrs: Sequence[str] = (),
    ) -> None:
        nets = [ipaddress.ip_network(c, strict=False) for c in cluster_cidrs]
        if not 1 <= len(nets) <= 2 or len({n.version for n in nets}) != len(nets):
            raise ValueError("one cluster CIDR, or two of different IP families, are supported")
        masks = node_mask_sizes or [DEFAULT_MASK_SIZES[n.version] for n in nets]
        if len(masks) != len(nets):
            raise ValueError("one node mask size per cluster CIDR")
        self.sets = [self._cidr_set(net, mask) for net, mask in zip(nets, masks, strict=True)]
        for text in service_cidrs:
            service_net = ipaddress.ip_network(text, strict=False)
            for cidr_set in self.sets:
                cidr_set.reserve_overlap(service_net)
        self.pending: dict[str, list[str]] = {}

    @staticmethod
    def _cidr_set(net: Network, mask: int) -> CIDRSet:
        if not net.prefixlen <= mask <= net.max_prefixlen:
            raise ValueError(f"node mask size /{mask} does not fit cluster CIDR {net}")
        if net.version == 6 and mask - net.prefixlen > MAX_SUBNET_BITS:
            raise ValueError("CIDRSet: subnet mask size too big")  # upstream's ErrCIDRSetSubNetTooBig
        return CIDRSet(net, mask)

    # ------------------------------------------------------------------ controller protocol

    def watches(self) -> Mapping[Kind, Callable[[Obj], Iterable[str]]]:
        return {NODE: own_key}

    def indexers(self) -> Mapping[Kind, Mapping[str, Callable[[Obj], list[str]]]]:
        return {}

    def reconcile(self, key: str, caches: Caches, now: datetime) -> Plan:
        nodes = caches.list(NODE)
        self._settle_pending(nodes)
        node = caches.get(NODE, "", key)
        plan = Plan()
        if node is None or _pod_cidrs(node):
            return plan
        cidrs = self.pending.get(key) or self._allocate(key, nodes)
        if cidrs is None:
            message = f"Node {key} status is now: {CIDR_NOT_AVAILABLE}"
            plan.add(RecordEvent(node, "Normal", CIDR_NOT_AVAILABLE, message))
            return plan
        self.pending[key] = cidrs
        plan.add(Patch(NODE, "", key, {"spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}}))
        return plan

    # ------------------------------------------------------------------ allocation

    def _settle_pending(self, nodes: list[Obj]) -> None:
        """Forget proposals the cache now shows (or whose Node is gone)."""
        by_name = {_name(n): n for n in nodes}
        for name in list(self.pending):
            node = by_name.get(name)
            if node is None or _pod_cidrs(node):
                del self.pending[name]

    def _used(self, key: str, nodes: list[Obj]) -> list[set[int]]:
        used: list[set[int]] = [set() for _ in self.sets]
        held = [c for n in nodes for c in _pod_cidrs(n)]
        held += [c for name, cidrs in self.pending.items() if name != key for c in cidrs]
        for cidr in held:
            for i, cidr_set in enumerate(self.sets):
                index = cidr_set.index_of(cidr)
                if index is not None:
                    used[i].add(index)
        return used

    def _allocate(self, key: str, nodes: list[Obj]) -> list[str] | None:
        """One free subnet of each cluster CIDR, or None when any of them is exhausted."""
        used = self._used(key, nodes)
        picks: list[int] = []
        for cidr_set, taken in zip(self.sets, used, strict=True):
            index = cidr_set.next_free(taken)
            if index is None:
                return None
            picks.append(index)
        for cidr_set, index in zip(self.sets, picks, strict=True):
            cidr_set.next_candidate = (index + 1) % cidr_set.count
        return [cidr_set.subnet(index) for cidr_set, index in zip(self.sets, picks, strict=True)]

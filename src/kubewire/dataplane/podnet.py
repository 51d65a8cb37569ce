"""The pod network compiler: what iproute2 must be told to wire the fabric, a node and a pod.

This plays the CNI's role (kindnet's routed mode, flannel's VXLAN mode) as pure functions: a
cluster's layout in, :class:`Batch` es of ``ip``/``bridge`` commands out, one batch per network
namespace.  The host layer runs them; tests read them.  Nothing here touches the kernel.

The shapes, chosen to match what kind users see:

- a *fabric* namespace holds one bridge joining every node and the ``client`` namespace (the
  docker network of kind); nodes are 172.18.0.2, .3, … and the client 172.18.0.1;
- each pod has a veth whose node end carries the pod CIDR's gateway address (``.1``, /32) and a
  host route to the pod, as CNI's ``ptp`` plugin does; the pod holds its address as a /32 (/128)
  with a default route to that gateway, so all traffic, same-node included, is routed by the node;
- *routed* mode: every node routes each peer's pod CIDR via the peer's fabric address (no NAT,
  no encapsulation: the Kubernetes network model at its plainest);
- *vxlan* mode: a ``kw-vxlan`` device per node, peers reached through static FDB and neighbour
  entries derived from names (no flooding, no learning), MTU lowered by the 50-byte header.

Names are predictable and fit the kernel's 15-character interface limit: hashes of the node name or
pod uid, so a restarted agent finds exactly what it made.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

FABRIC_BRIDGE = "kw-br0"
NODE_UPLINK = "eth0"
POD_IFACE = "eth0"
VXLAN_DEVICE = "kw-vxlan"
VXLAN_ID = 1
VXLAN_PORT = 4789  # IANA's VXLAN port, as flannel uses
VXLAN_OVERHEAD = 50  # outer Ethernet + IP + UDP + VXLAN headers (IPv4 underlay)
FABRIC_MTU = 1500
CLIENT_INDEX = -1  # the client takes the fabric's first address (.1): kind's host/gateway seat


@dataclass(frozen=True)
class Batch:
    """Commands for one tool (``ip`` or ``bridge``) run inside one network namespace, in order."""

    netns: str
    lines: tuple[str, ...]
    tool: str = "ip"


def digest(text: str, size: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def netns_name(cluster: str, role: str, name: str = "") -> str:
    """``kw-<cluster>-<role>[-<name>]``: the namespace of the fabric, the client, a node or a pod."""
    return f"kw-{cluster}-{role}" + (f"-{name}" if name else "")


def fabric_port(name: str) -> str:
    """The fabric-side end of a node's (or the client's) uplink veth."""
    return f"kwf-{digest(name)}"


def pod_veth(uid: str) -> str:
    """The node-side end of a pod's veth (``vethXXXXXXXX``, 12 characters)."""
    return f"veth{digest(uid)}"


def vxlan_mac(node: str) -> str:
    """A stable, locally administered MAC for a node's VXLAN device, so peers need no exchange."""
    h = digest(node, 10)
    return "0a:" + ":".join(h[i : i + 2] for i in range(0, 10, 2))


def fabric_address(cidr: str, index: int) -> str:
    """Node ``index`` (0-based) sits at the fabric's ``index + 2``-th address; the client at the first."""
    net = ipaddress.ip_network(cidr)
    return str(net.network_address + (index + 2))


def gateway(pod_cidr: str) -> str:
    """The pod CIDR's first host address: every pod's default gateway on that node."""
    return str(ipaddress.ip_network(pod_cidr).network_address + 1)


def _host_prefix(addr: str) -> int:
    return 32 if ipaddress.ip_address(addr).version == 4 else 128


def _addr_flags(addr: str) -> str:
    # IPv6 duplicate address detection would hold a fresh address "tentative" for a second or two;
    # every address here is allocated without overlap, so skip it.
    return " nodad" if ipaddress.ip_address(addr).version == 6 else ""


@dataclass(frozen=True)
class NodeNet:
    """One node's place in the network: its namespace, fabric addresses and pod CIDRs."""

    name: str
    netns: str
    addresses: tuple[str, ...]  # fabric addresses, IPv4 first when present
    fabric_prefixes: tuple[int, ...]  # prefix length of each fabric address
    pod_cidrs: tuple[str, ...] = ()
    mode: str = "routed"

    @property
    def pod_mtu(self) -> int:
        return FABRIC_MTU - VXLAN_OVERHEAD if self.mode == "vxlan" else FABRIC_MTU


def uplink(
    fabric_netns: str,
    ns: str,
    name: str,
    addresses: Sequence[str],
    prefixes: Sequence[int],
    routes: Sequence[tuple[str, str]] = (),
) -> list[Batch]:
    """Plug the namespace ``ns`` (a node or the client) into the fabric bridge; ``routes`` are
    (destination CIDR, gateway) pairs to add through it."""
    port = fabric_port(name)
    fabric = Batch(
        fabric_netns,
        (
            f"link add {port} mtu {FABRIC_MTU} type veth peer name {NODE_UPLINK} netns {ns} mtu {FABRIC_MTU}",
            f"link set {port} master {FABRIC_BRIDGE} up",
        ),
    )
    lines = ["link set lo up", f"link set {NODE_UPLINK} up"]
    lines += [
        f"addr replace {a}/{p} dev {NODE_UPLINK}{_addr_flags(a)}" for a, p in zip(addresses, prefixes, strict=True)
    ]
    lines += [f"route replace {cidr} via {gateway} dev {NODE_UPLINK}" for cidr, gateway in routes]
    return [fabric, Batch(ns, tuple(lines))]


def fabric_plan(fabric_netns: str) -> list[Batch]:
    """The fabric's bridge (created once per cluster)."""
    return [
        Batch(
            fabric_netns,
            (
                "link set lo up",
                f"link add {FABRIC_BRIDGE} mtu {FABRIC_MTU} type bridge",
                f"link set {FABRIC_BRIDGE} up",
            ),
        )
    ]


def node_link_state(fabric_netns: str, node: str, up: bool) -> Batch:
    """Cut or restore a node's fabric link (``kubewire node stop|start``)."""
    return Batch(fabric_netns, (f"link set {fabric_port(node)} {'up' if up else 'down'}",))


def vxlan_device_plan(node: NodeNet) -> list[Batch]:
    """The node's VXLAN device and its own VTEP addresses (the network address of each pod CIDR)."""
    local = node.addresses[0]
    lines = [
        f"link add {VXLAN_DEVICE} address {vxlan_mac(node.name)} mtu {node.pod_mtu} type vxlan id {VXLAN_ID} "
        f"local {local} dev {NODE_UPLINK} dstport {VXLAN_PORT} nolearning",
        f"link set {VXLAN_DEVICE} up",
    ]
    for cidr in node.pod_cidrs:
        vtep = str(ipaddress.ip_network(cidr).network_address)
        lines.append(f"addr replace {vtep}/{_host_prefix(vtep)} dev {VXLAN_DEVICE}{_addr_flags(vtep)}")
    return [Batch(node.netns, tuple(lines))]


def peer_routes(node: NodeNet, peers: Iterable[NodeNet]) -> list[Batch]:
    """Routes (and, for VXLAN, neighbour and FDB entries) from ``node`` to every peer's pod CIDRs.

    ``replace`` everywhere, so applying the same plan twice is harmless (agents re-apply on every
    Node change and after a restart)."""
    ip_lines: list[str] = []
    fdb_lines: list[str] = []
    for peer in peers:
        if peer.name == node.name:
            continue
        for cidr in peer.pod_cidrs:
            version = ipaddress.ip_network(cidr).version
            underlay = next((a for a in peer.addresses if ipaddress.ip_address(a).version == version), None)
            if node.mode == "vxlan":
                vtep = str(ipaddress.ip_network(cidr).network_address)
                ip_lines.append(f"neigh replace {vtep} lladdr {vxlan_mac(peer.name)} dev {VXLAN_DEVICE} nud permanent")
                ip_lines.append(f"route replace {cidr} via {vtep} dev {VXLAN_DEVICE} onlink")
            elif underlay is not None:
                ip_lines.append(f"route replace {cidr} via {underlay} dev {NODE_UPLINK}")
        if node.mode == "vxlan" and peer.pod_cidrs:
            fdb_lines.append(f"fdb replace {vxlan_mac(peer.name)} dev {VXLAN_DEVICE} dst {peer.addresses[0]}")
    batches = [Batch(node.netns, tuple(ip_lines))] if ip_lines else []
    if fdb_lines:
        batches.append(Batch(node.netns, tuple(fdb_lines), tool="bridge"))
    return batches


def stale_peer_routes(node: NodeNet, wanted: Iterable[NodeNet], present: Iterable[str]) -> list[Batch]:
    """Delete routes to pod CIDRs no peer owns any more (``present``: CIDRs routed now)."""
    keep = {c for p in wanted if p.name != node.name for c in p.pod_cidrs}
    lines = tuple(f"route del {c}" for c in sorted(set(present) - keep))
    return [Batch(node.netns, lines)] if lines else []


@dataclass(frozen=True)
class PodNet:
    """One pod's sandbox network: its namespace, uid-derived veth and addresses."""

    uid: str
    netns: str
    addresses: tuple[str, ...]  # one per pod CIDR of the node, same order
    pod_cidrs: tuple[str, ...]
    mtu: int = FABRIC_MTU
    sysctls: tuple[tuple[str, str], ...] = field(default=())

    @property
    def veth(self) -> str:
        return pod_veth(self.uid)


def pod_plan(node_netns: str, pod: PodNet) -> list[Batch]:
    """Wire a pod: veth pair (node end in the node, ``eth0`` in the pod), gateway, routes.

    The pod namespace must exist already (``ip netns add`` is not a batch command)."""
    veth = pod.veth
    node_lines = [
        f"link add {veth} mtu {pod.mtu} type veth peer name {POD_IFACE} netns {pod.netns} mtu {pod.mtu}",
        f"link set {veth} up",
    ]
    pod_lines = ["link set lo up", f"link set {POD_IFACE} up"]
    for addr, cidr in zip(pod.addresses, pod.pod_cidrs, strict=True):
        gw = gateway(cidr)
        host = _host_prefix(addr)
        node_lines.append(f"addr replace {gw}/{host} dev {veth}{_addr_flags(gw)}")
        node_lines.append(f"route replace {addr}/{host} dev {veth} scope link")
        # A host prefix, not the node's /24: every destination, same-node pods included, then goes
        # through the gateway (the node), which routes it; nothing is ARPed for across veths.
        pod_lines.append(f"addr replace {addr}/{host} dev {POD_IFACE}{_addr_flags(addr)}")
        pod_lines.append(f"route replace default via {gw} dev {POD_IFACE} onlink")
    return [Batch(node_netns, tuple(node_lines)), Batch(pod.netns, tuple(pod_lines))]


def pod_teardown(node_netns: str, uid: str) -> Batch:
    """Deleting the node end removes the pair and the host routes with it."""
    return Batch(node_netns, (f"link del {pod_veth(uid)}",))


class PodCIDRFull(Exception):
    """No address is left in the node's pod CIDR."""


def allocate(cidr: str, used: Iterable[str], hint: int = 0) -> str:
    """The lowest free host address of ``cidr`` at or after ``hint`` (wrapping), skipping the network
    address, the gateway (first host) and, for IPv4, the broadcast address — CNI host-local's rules."""
    net = ipaddress.ip_network(cidr)
    taken = {ipaddress.ip_address(u) for u in used}
    first = 2  # .0 network, .1 gateway
    last = net.num_addresses - (2 if net.version == 4 else 1)
    span = last - first + 1
    if span <= 0:
        raise PodCIDRFull(f"no IP addresses available in range set: {cidr}")
    start = max(0, hint) % span
    for i in range(span):  # lazy: ends at the first free address
        candidate = net.network_address + first + (start + i) % span
        if candidate not in taken:
            return str(candidate)
    raise PodCIDRFull(f"no IP addresses available in range set: {cidr}")

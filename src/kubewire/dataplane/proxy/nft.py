"""The Service rule compiler: one node's proxy snapshot in, an nftables transaction out.

This owns the kernel shape of kube-proxy's job.  Upstream's nftables proxier writes a chain per
service and per endpoint; loading 10,000 services × 10 endpoints that way took 144 s here (see
``design.md``).  This compiler uses a *flat* layout instead: a fixed set of chains whose rules never
mention a Service, and every piece of per-Service data in sets and maps.  The number of chains
depends only on the distinct endpoint counts (and affinity timeouts) in use, never on the number of
Services, so a change to a Service is an element update and a full load stays linear in elements.

Layout (one table per family: ``table ip kubewire-proxy`` / ``table ip6 kubewire-proxy``):

Base chains::

    nat_prerouting   nat    prerouting -100   jump services
    nat_output       nat    output     -100   jump services
    nat_postrouting  nat    postrouting 100   [jump affinity_record;] hairpin mark; jump masquerading
    nat_input        nat    input       100   jump affinity_record   (IPv4 only: see affinity below)
    filter_prerouting           filter prerouting -110   ct state new: jump firewall_check, endpoints_check
    filter_output               filter output     -110   (same, for the node's own traffic)
    filter_prerouting_post_dnat filter prerouting  -90   ct state new jump cluster_ips_check
    filter_output_post_dnat     filter output      -90   ct state new jump cluster_ips_check

Dispatch (``services``): ``daddr . l4proto . dport vmap @service_ips`` (ClusterIPs, externalIPs,
LoadBalancer IPs), then ``daddr @nodeport_ips`` and ``l4proto . dport vmap @service_nodeports``.
NodePorts answer on ``node.addresses`` only (the nftables proxier's default ``--nodeport-addresses
primary``, and what the reference evaluator in ``evaluate`` assumes), never on loopback.

Load balancing: a vmap element is ``goto <kind>_<N>``, where N is the endpoint count.  Each such
chain ends in ``meta l4proto P dnat to daddr . dport . numgen random mod N map @backends_P`` (one
rule per protocol P: the backends maps are per protocol, see ``_BACKENDS``), and the backends maps
hold one element per (address, port, index).  The chain kinds:

- ``svc_N``: ClusterIP traffic (the internal policy's endpoints).  Marks for masquerade when the
  source is outside ``@pod_cidrs`` (only when the node knows its pod CIDRs, as upstream).
- ``ext_N``: externalIP / LoadBalancer IP under ``externalTrafficPolicy: Cluster`` (always masquerade).
- ``extl_N``: the same under ``Local``: traffic from pods (``saddr @pod_cidrs``) and from the node
  itself (``fib saddr type local``, masqueraded) short-circuits through ``vmap @short_ips`` to a
  ``short_M`` chain over the *Cluster* endpoints (``@short_backends_P``); other sources go to the N
  local endpoints, source preserved.  ``extl_0`` ends in ``drop`` (no local endpoint).
- ``np_N`` / ``npl_N`` / ``npshort_N``: the NodePort equivalents, keyed ``dport`` in
  ``@nodeport_backends_P`` / ``@short_nodeport_backends_P`` / ``vmap @short_nodeports``.

No usable endpoint: ``@no_endpoint_services`` (address keys) and ``@no_endpoint_nodeports`` are
consulted before DNAT in the filter chains: ``goto reject_chain`` (TCP reset, otherwise ICMP port
unreachable: connection refused) when the Service has no endpoints anywhere, ``drop`` for
``internalTrafficPolicy: Local`` with none on this node (a node address that is also a service
address on a NodePort's number gets ``return``, since dispatch prefers the service).  Upstream runs
these checks in input/forward; prerouting (a reject there needs Linux ≥ 5.x) makes them independent
of the node's routes to service addresses.  ``@cluster_ips`` rejects traffic still addressed to a
ClusterIP after DNAT (a port the Service does not define).

Firewall (``loadBalancerSourceRanges``): ``@firewall_ips`` lists the LoadBalancer keys that have
ranges; ``daddr . l4proto . dport . saddr != @firewall_allow drop`` (a concatenated interval set;
the LoadBalancer IPs themselves are allowed too when a range holds the node's primary address).

Masquerade: rules set mark bit 0x4000 (upstream's default); ``masquerading`` SNATs marked packets
(``masquerade fully-random``) and clears the bit.  Hairpin (a pod reaching itself through its
Service) is found after DNAT by ``ct status dnat saddr . daddr @hairpin`` (``ep . ep`` per endpoint),
since a flat DNAT cannot know the pick in advance.

Session affinity (ClientIP, IPv4): one dynamic map ``@affinity`` (client . service address .
l4proto . service port → endpoint . port; flags dynamic,timeout; ``AFFINITY_SIZE`` entries).
Load-balancing chains first try ``dnat to … map @affinity`` for keys in ``@affinity_ips`` /
``@affinity_nodeports``.  A pick is recorded after DNAT (nat postrouting / input, first packet of a
connection only, as upstream): ``affinity_record`` looks the *original* destination up in ``vmap
@affinity_ips`` → ``goto affinity_T``, whose rules ``update @affinity { … timeout Ts : daddr .
dport }`` — one chain per distinct ``timeoutSeconds`` value, because nftables takes an element
timeout only from the rule.  ``ct original proto-dst`` needs a protocol in context, hence one rule
per protocol.  A partial update flushes ``@affinity`` whenever an endpoint an entry may point at
stops being a backend of that key (entries cannot be enumerated without reading the kernel); a full
load recreates the table, which forgets affinity too.  IPv6 affinity is *not programmed*: nft 1.0.6
(Debian bookworm) reserves only 16 bytes for each of the key and the data of a map update from the
packet path (larger ones abort nft or silently overlap registers), and an IPv6 client address alone
fills the key.  IPv6 ClientIP services therefore balance every connection.

Transactions: :func:`full_ruleset` is ``add table; delete table; add table; …`` (atomic
replacement); :func:`partial_update` adds the chains newly needed, deletes and adds elements, and
deletes chains no longer used, and equals the full load of the new snapshot (it falls back to the
full script when a chain's rules would change, e.g. the node learns its pod CIDRs; ``""`` when
nothing changes).
:func:`state_of` gives the table contents (declarations, chains, rules, elements) either computed
from a snapshot or by interpreting a script onto a prior state; the interpreter rejects what the
kernel would (missing elements, busy chains, conflicting element values, dangling references).

Gaps, deliberate: upstream's drop of unallocated service-CIDR addresses (the snapshot has no
service CIDR), health-check NodePorts (served by the agent, not rules), ``masqueradeAll``.
Two Services claiming one (address, protocol, port): the first in snapshot order wins, as in the
reference evaluator.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from kubewire.dataplane.proxy.endpoints import categorize
from kubewire.dataplane.proxy.model import Endpoint, ProxySnapshot, ServicePort

TABLE = "kubewire-proxy"
MASQUERADE_MARK = "0x00004000"  # upstream's default --masquerade-bit 14
AFFINITY_SIZE = 1 << 20  # clients × affinity services; nftables' default of 65535 is too small for one map
ELEMENTS_PER_COMMAND = 1000  # elements per `add element` line: keeps each netlink message well-sized
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
REJECT_CHAIN = "reject_chain"
VERDICTS = ("accept", "drop", "continue", "return")


class NftScriptError(ValueError):
    """A script the kernel would refuse (the whole transaction is then left unapplied)."""


@dataclass(frozen=True)
class _Family:
    nft: str  # the nftables family and the address payload protocol: ip / ip6
    addr: str  # the address datatype
    icmp_reject: str  # the non-TCP reject statement
    affinity: bool  # whether ClientIP affinity can be programmed (see the module docstring)


_FAMILIES = {
    4: _Family("ip", "ipv4_addr", "reject with icmp type port-unreachable", True),
    6: _Family("ip6", "ipv6_addr", "reject with icmpv6 type port-unreachable", False),
}


def _family(version: int) -> _Family:
    try:
        return _FAMILIES[version]
    except KeyError:
        raise ValueError(f"address family must be 4 or 6, not {version!r}") from None


# --- the in-memory model of a table ---------------------------------------------------------------


@dataclass
class Table:
    """One table's contents: set/map declarations and elements, chains and their rules."""

    sets: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> ("set"|"map", declaration)
    elements: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> key -> value ("" in sets)
    chains: dict[str, str] = field(default_factory=dict)  # name -> base-chain spec ("" for a regular chain)
    rules: dict[str, list[str]] = field(default_factory=dict)  # chain -> rules in order

    def copy(self) -> Table:
        return Table(
            dict(self.sets),
            {k: dict(v) for k, v in self.elements.items()},
            dict(self.chains),
            {k: list(v) for k, v in self.rules.items()},
        )


@dataclass
class NftState:
    """The tables a sequence of scripts leaves behind, keyed (family, table name)."""

    tables: dict[tuple[str, str], Table] = field(default_factory=dict)

    def copy(self) -> NftState:
        return NftState({k: t.copy() for k, t in self.tables.items()})

    def table(self, family: str = "ip", name: str = TABLE) -> Table:
        return self.tables[(family, name)]


# --- compiling a snapshot -------------------------------------------------------------------------


# The backends maps, per protocol: (map name stem, keyed by address?).  One map per protocol because
# the data half of a `typeof` must name a transport protocol: nft 1.0.6 cannot read `ip daddr . th
# dport` back from the kernel (later rules referencing the map are refused), and `tcp dport` makes
# every rule using the map match TCP only.  So each map says its own protocol and each
# load-balancing chain has one DNAT rule per protocol.
_BACKENDS = {"backends": True, "short_backends": True, "nodeport_backends": False, "short_nodeport_backends": False}


def _declarations(f: _Family) -> dict[str, tuple[str, str]]:
    """Every set and map, fixed per family (data types; nothing here depends on the snapshot)."""
    a, ip = f.addr, f.nft
    key = f"{a} . inet_proto . inet_service"
    port_key = "inet_proto . inet_service"
    out = {
        "nodeport_ips": ("set", f"type {a} ;"),
        "pod_cidrs": ("set", f"type {a} ; flags interval ;"),
        "cluster_ips": ("set", f"type {a} ;"),
        "service_ips": ("map", f"type {key} : verdict ;"),
        "service_nodeports": ("map", f"type {port_key} : verdict ;"),
        "short_ips": ("map", f"type {key} : verdict ;"),
        "short_nodeports": ("map", f"type {port_key} : verdict ;"),
        "no_endpoint_services": ("map", f"type {key} : verdict ;"),
        "no_endpoint_nodeports": ("map", f"type {port_key} : verdict ;"),
    }
    for stem, by_address in _BACKENDS.items():
        prefix = f"{ip} daddr . " if by_address else ""
        for p in PROTOCOLS.values():
            out[f"{stem}_{p}"] = ("map", f"typeof {prefix}th dport . numgen random mod 1 : {ip} daddr . {p} dport ;")
    out |= {
        "firewall_ips": ("set", f"type {key} ;"),
        "firewall_allow": ("set", f"type {key} . {a} ; flags interval ;"),
        "hairpin": ("set", f"type {a} . {a} ;"),
    }
    if f.affinity:
        out |= {
            "affinity_ips": ("map", f"type {key} : verdict ;"),
            "affinity_nodeports": ("map", f"type {port_key} : verdict ;"),
            "affinity": (
                "map",
                f"type {a} . {a} . inet_proto . inet_service : {a} . inet_service ; "
                f"flags dynamic,timeout ; size {AFFINITY_SIZE} ;",
            ),
        }
    return out


_BASE_CHAINS = {
    "nat_prerouting": "type nat hook prerouting priority -100 ; policy accept ;",
    "nat_output": "type nat hook output priority -100 ; policy accept ;",
    "nat_postrouting": "type nat hook postrouting priority 100 ; policy accept ;",
    "nat_input": "type nat hook input priority 100 ; policy accept ;",
    "filter_prerouting": "type filter hook prerouting priority -110 ; policy accept ;",
    "filter_output": "type filter hook output priority -110 ; policy accept ;",
    "filter_prerouting_post_dnat": "type filter hook prerouting priority -90 ; policy accept ;",
    "filter_output_post_dnat": "type filter hook output priority -90 ; policy accept ;",
}


def _fixed_chains(f: _Family) -> dict[str, list[str]]:
    ip = f.nft
    addr_key = f"{ip} daddr . meta l4proto . th dport"
    mark = f"meta mark set meta mark | {MASQUERADE_MARK}"
    chains = {
        "nat_prerouting": ["jump services"],
        "nat_output": ["jump services"],
        "nat_postrouting": [
            f"ct status dnat {ip} saddr . {ip} daddr @hairpin {mark}",
            "jump masquerading",
        ],
        "filter_prerouting": ["ct state new jump firewall_check", "ct state new jump endpoints_check"],
        "filter_output": ["ct state new jump firewall_check", "ct state new jump endpoints_check"],
        "filter_prerouting_post_dnat": ["ct state new jump cluster_ips_check"],
        "filter_output_post_dnat": ["ct state new jump cluster_ips_check"],
        "services": [
            f"{addr_key} vmap @service_ips",
            f"{ip} daddr @nodeport_ips meta l4proto . th dport vmap @service_nodeports",
        ],
        "firewall_check": [f"{addr_key} @firewall_ips {addr_key} . {ip} saddr != @firewall_allow drop"],
        "endpoints_check": [
            f"{addr_key} vmap @no_endpoint_services",
            f"{ip} daddr @nodeport_ips meta l4proto . th dport vmap @no_endpoint_nodeports",
        ],
        "cluster_ips_check": [f"{ip} daddr @cluster_ips goto {REJECT_CHAIN}"],
        REJECT_CHAIN: ["meta l4proto tcp reject with tcp reset", f.icmp_reject],
        "masquerading": [
            f"meta mark & {MASQUERADE_MARK} == 0 return",
            f"meta mark set meta mark ^ {MASQUERADE_MARK}",
            "masquerade fully-random",
        ],
    }
    if f.affinity:
        # `ct original proto-dst` has no type without a protocol in context: one rule per protocol.
        chains["nat_postrouting"].insert(0, "jump affinity_record")
        chains["nat_input"] = ["jump affinity_record"]
        chains["affinity_record"] = [
            f"meta l4proto {p} ct status dnat ct original {ip} daddr . meta l4proto . ct original proto-dst "
            "vmap @affinity_ips"
            for p in PROTOCOLS.values()
        ] + [
            f"meta l4proto {p} ct status dnat ct original {ip} daddr @nodeport_ips "
            "meta l4proto . ct original proto-dst vmap @affinity_nodeports"
            for p in PROTOCOLS.values()
        ]
    return chains


# The load-balancing chain kinds: (address-keyed?, backends map stem, masquerade always?, Local policy?)
_KINDS: dict[str, tuple[bool, str, bool, bool]] = {
    "svc": (True, "backends", False, False),
    "ext": (True, "backends", True, False),
    "extl": (True, "backends", False, True),
    "short": (True, "short_backends", False, False),
    "np": (False, "nodeport_backends", True, False),
    "npl": (False, "nodeport_backends", False, True),
    "npshort": (False, "short_nodeport_backends", False, False),
}


def _lb_rules(f: _Family, pods: bool, kind: str, n: int) -> list[str]:
    """The rules of chain ``<kind>_<n>`` (n endpoints)."""
    by_address, backends, masquerade, local = _KINDS[kind]
    ip = f.nft
    mark = f"meta mark set meta mark | {MASQUERADE_MARK}"
    key = f"{ip} daddr . meta l4proto . th dport" if by_address else "meta l4proto . th dport"
    short = "@short_ips" if by_address else "@short_nodeports"
    rules: list[str] = []
    if kind == "svc" and pods:
        rules.append(f"{ip} saddr != @pod_cidrs {mark}")
    if masquerade:
        rules.append(mark)
    if local:
        if pods:
            rules.append(f"{ip} saddr @pod_cidrs {key} vmap {short}")
        rules.append(f"fib saddr type local {mark}")
        rules.append(f"fib saddr type local {key} vmap {short}")
    if n == 0:
        rules.append("drop")
        return rules
    if f.affinity:
        affinity = "@affinity_ips" if by_address else "@affinity_nodeports"
        rules.append(f"{key} {affinity} dnat {ip} to {ip} saddr . {ip} daddr . meta l4proto . th dport map @affinity")
    lookup = f"{ip} daddr . th dport" if by_address else "th dport"
    rules += [
        f"meta l4proto {p} dnat {ip} to {lookup} . numgen random mod {n} map @{backends}_{p}"
        for p in PROTOCOLS.values()
    ]
    return rules


def _affinity_rules(f: _Family, timeout: int) -> list[str]:
    ip = f.nft
    return [
        f"meta l4proto {p} update @affinity {{ {ip} saddr . ct original {ip} daddr . meta l4proto . "
        f"ct original proto-dst timeout {timeout}s : {ip} daddr . th dport }}"
        for p in PROTOCOLS.values()
    ]


def _addr(text: str) -> str:
    return ipaddress.ip_address(text.strip()).compressed


def _nets(texts: Iterable[str], version: int) -> list[str]:
    nets = [ipaddress.ip_network(t.strip(), strict=False) for t in texts]
    if version == 4:
        v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
        return [str(n) for n in ipaddress.collapse_addresses(v4)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return [str(n) for n in ipaddress.collapse_addresses(v6)]


class _Compiler:
    """Builds one family's :class:`Table` from a snapshot."""

    def __init__(self, snapshot: ProxySnapshot) -> None:
        self.snapshot = snapshot
        self.f = _family(snapshot.family)
        node = snapshot.node
        self.pod_cidrs = _nets(node.pod_cidrs, snapshot.family)
        self.node_addresses = [
            _addr(a) for a in node.addresses if ipaddress.ip_address(a.strip()).version == snapshot.family
        ]
        self.table = Table(sets=_declarations(self.f))
        self.el = self.table.elements
        for name in self.table.sets:
            self.el[name] = {}
        self.lb_chains: set[tuple[str, int]] = set()
        self.timeouts: set[int] = set()
        self.claimed: set[str] = set()  # address keys, first service port wins
        self.claimed_ports: set[str] = set()

    def compile(self) -> Table:
        for a in self.node_addresses:
            self.el["nodeport_ips"][a] = ""
        for c in self.pod_cidrs:
            self.el["pod_cidrs"][c] = ""
        for sp in self.snapshot.services:
            self._service_port(sp)
        self._guard_nodeport_collisions()
        fixed = _fixed_chains(self.f)
        order = list(_KINDS)
        for name, rules in fixed.items():
            self.table.chains[name] = _BASE_CHAINS.get(name, "")
            self.table.rules[name] = rules
        for kind, n in sorted(self.lb_chains, key=lambda kn: (order.index(kn[0]), kn[1])):
            name = f"{kind}_{n}"
            self.table.chains[name] = ""
            self.table.rules[name] = _lb_rules(self.f, bool(self.pod_cidrs), kind, n)
        for t in sorted(self.timeouts):
            name = f"affinity_{t}"
            self.table.chains[name] = ""
            self.table.rules[name] = _affinity_rules(self.f, t)
        return self.table

    def _goto(self, kind: str, n: int) -> str:
        self.lb_chains.add((kind, n))
        return f"goto {kind}_{n}"

    def _fill(self, backends: str, key: str, endpoints: tuple[Endpoint, ...]) -> None:
        """Elements ``<frontend without protocol> . <index>`` of ``<backends>_<protocol>``."""
        m, prefix = self.el[f"{backends}_{_protocol_of(key)}"], _strip_protocol(key)
        for i, ep in enumerate(endpoints):
            ip = _addr(ep.ip)
            m[f"{prefix} . {i}"] = f"{ip} . {ep.port}"
            self.el["hairpin"][f"{ip} . {ip}"] = ""

    def _route(self, sp: ServicePort, key: str, external: bool, by_address: bool) -> None:
        """Entries for one frontend key (``addr . proto . port`` or ``proto . port``)."""
        sel = categorize(sp, self.snapshot.node)
        if by_address:
            services, no_endpoint, short = "service_ips", "no_endpoint_services", "short_ips"
            backends, short_backends, affinity = "backends", "short_backends", "affinity_ips"
            cluster_kind, local_kind, short_kind = "ext", "extl", "short"
        else:
            services, no_endpoint, short = "service_nodeports", "no_endpoint_nodeports", "short_nodeports"
            backends, short_backends, affinity = "nodeport_backends", "short_nodeport_backends", "affinity_nodeports"
            cluster_kind, local_kind, short_kind = "np", "npl", "npshort"
        if not sel.has_any:
            self.el[no_endpoint][key] = f"goto {REJECT_CHAIN}"
            return
        if not external or not sp.external_policy_local:
            if external:
                kind, eps = cluster_kind, sel.cluster
            else:
                kind, eps = "svc", sel.local if sp.internal_policy_local else sel.cluster
            if not eps:  # internalTrafficPolicy Local with no endpoint here
                self.el[no_endpoint][key] = "drop"
                return
            self.el[services][key] = self._goto(kind, len(eps))
            self._fill(backends, key, eps)
        else:
            self.el[services][key] = self._goto(local_kind, len(sel.local))
            self._fill(backends, key, sel.local)
            if sel.cluster:
                self.el[short][key] = self._goto(short_kind, len(sel.cluster))
                self._fill(short_backends, key, sel.cluster)
        if sp.affinity_timeout > 0 and self.f.affinity:
            self.timeouts.add(sp.affinity_timeout)
            self.el[affinity][key] = f"goto affinity_{sp.affinity_timeout}"

    def _service_port(self, sp: ServicePort) -> None:
        proto = PROTOCOLS.get(sp.protocol.upper())
        if proto is None:
            return
        version = self.snapshot.family
        mine = [_addr(ip) for ip in sp.cluster_ips if ipaddress.ip_address(ip.strip()).version == version]
        for ip in mine:
            self.el["cluster_ips"][ip] = ""
        frontends = [(ip, "cluster") for ip in mine]
        for kind, ips in (("external", sp.external_ips), ("lb", sp.load_balancer_ips)):
            frontends += [(_addr(ip), kind) for ip in ips if ipaddress.ip_address(ip.strip()).version == version]
        for ip, kind in frontends:
            key = f"{ip} . {proto} . {sp.port}"
            if key in self.claimed:
                continue
            self.claimed.add(key)
            if kind == "lb" and sp.source_ranges:
                self._firewall(sp, key)
            self._route(sp, key, kind != "cluster", True)
        if sp.node_port:
            key = f"{proto} . {sp.node_port}"
            if key not in self.claimed_ports:
                self.claimed_ports.add(key)
                self._route(sp, key, True, False)

    def _firewall(self, sp: ServicePort, key: str) -> None:
        version = self.snapshot.family
        allowed = list(sp.source_ranges)
        primary = self.node_addresses[:1]
        ranges = [ipaddress.ip_network(r.strip(), strict=False) for r in sp.source_ranges]
        if primary and any(ipaddress.ip_address(primary[0]) in n for n in ranges if n.version == version):
            allowed += list(sp.load_balancer_ips)  # the node reaching its own VIP uses the VIP as source
        self.el["firewall_ips"][key] = ""
        for net in _nets(allowed, version):
            self.el["firewall_allow"][f"{key} . {net}"] = ""

    def _guard_nodeport_collisions(self) -> None:
        """A node address that is also a service address on a NodePort's number: the service wins
        (dispatch tries service addresses first), so the NodePort's no-endpoint verdict must not
        apply there: ``return`` early from ``endpoints_check`` for that key."""
        noep = self.el["no_endpoint_nodeports"]
        for port_key in noep:
            proto, port = port_key.split(" . ")
            for a in self.node_addresses:
                key = f"{a} . {proto} . {port}"
                if key in self.el["service_ips"]:
                    self.el["no_endpoint_services"].setdefault(key, "return")


def _protocol_of(key: str) -> str:
    """The protocol of a frontend key, ``addr . proto . port`` or ``proto . port``."""
    parts = key.split(" . ")
    return parts[-2]


def _strip_protocol(key: str) -> str:
    parts = key.split(" . ")
    return " . ".join(parts[:-2] + parts[-1:])


def _compile(snapshot: ProxySnapshot) -> Table:
    return _Compiler(snapshot).compile()


# --- rendering ----------------------------------------------------------------------------------------


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), ELEMENTS_PER_COMMAND):
        yield items[i : i + ELEMENTS_PER_COMMAND]


def _element_lines(op: str, where: str, table: Table, name: str, keys: Iterable[str], values: bool) -> list[str]:
    kind = table.sets[name][0]
    m = table.elements[name]
    items = [f"{k} : {m[k]}" if kind == "map" and values else k for k in keys]
    return [f"{op} element {where} {name} {{ {', '.join(c)} }}" for c in _chunks(items)]


def _chain_lines(where: str, table: Table, names: Iterable[str]) -> list[str]:
    names = list(names)
    out = []
    for name in names:
        spec = table.chains[name]
        out.append(f"add chain {where} {name}" + (f" {{ {spec} }}" if spec else ""))
    for name in names:
        out += [f"add rule {where} {name} {rule}" for rule in table.rules[name]]
    return out


def _render_full(family: str, table: Table) -> str:
    where = f"{family} {TABLE}"
    lines = [
        f"# kubewire proxy: full ruleset for table {where}",
        f"add table {where}",
        f"delete table {where}",
        f"add table {where}",
    ]
    lines += [f"add {kind} {where} {name} {{ {decl} }}" for name, (kind, decl) in table.sets.items()]
    lines += _chain_lines(where, table, table.chains)
    for name, elements in table.elements.items():
        if elements:
            lines += _element_lines("add", where, table, name, elements, True)
    return "\n".join(lines) + "\n"


def full_ruleset(snapshot: ProxySnapshot) -> str:
    """An ``nft -f`` script that atomically replaces this family's table with ``snapshot``'s rules."""
    return _render_full(_family(snapshot.family).nft, _compile(snapshot))


def _backends_of(table: Table, stem: str, key: str) -> set[str]:
    """The endpoints ``table`` holds for frontend ``key`` in ``<stem>_<protocol>``."""
    m, prefix = table.elements[f"{stem}_{_protocol_of(key)}"], _strip_protocol(key) + " . "
    return {v for k, v in m.items() if k.startswith(prefix)}


def _affinity_stale(old: Table, new: Table) -> bool:
    """Whether some affinity entry may point at an endpoint that is no longer a backend of its key."""
    for guard, stems in (
        ("affinity_ips", ("backends", "short_backends")),
        ("affinity_nodeports", ("nodeport_backends", "short_nodeport_backends")),
    ):
        for key in old.elements.get(guard, {}):
            if key not in new.elements[guard]:
                return True
            if any(not _backends_of(old, s, key) <= _backends_of(new, s, key) for s in stems):
                return True
    return False


def partial_update(old: ProxySnapshot, new: ProxySnapshot) -> str:
    """An element-level transaction turning ``full_ruleset(old)``'s table into ``full_ruleset(new)``'s.

    Returns ``""`` when nothing changes.  Falls back to :func:`full_ruleset` (still one atomic
    transaction) when the family changes or a chain's rules would change.
    """
    if old.family != new.family:
        return full_ruleset(new)
    a, b = _compile(old), _compile(new)
    family = _family(new.family).nft
    where = f"{family} {TABLE}"
    if a.sets != b.sets or any(
        a.chains[c] != b.chains[c] or a.rules[c] != b.rules[c] for c in a.chains.keys() & b.chains.keys()
    ):
        return _render_full(family, b)
    lines: list[str] = []
    lines += _chain_lines(where, b, [c for c in b.chains if c not in a.chains])
    for name in b.sets:
        ea, eb = a.elements[name], b.elements[name]
        gone = [k for k, v in ea.items() if eb.get(k) != v]
        if gone:
            lines += _element_lines("delete", where, a, name, gone, False)
    for name in b.sets:
        ea, eb = a.elements[name], b.elements[name]
        fresh = [k for k, v in eb.items() if ea.get(k) != v]
        if fresh:
            lines += _element_lines("add", where, b, name, fresh, True)
    if _affinity_stale(a, b):
        lines.append(f"flush map {where} affinity")
    lines += [f"delete chain {where} {c}" for c in a.chains if c not in b.chains]
    if not lines:
        return ""
    return "\n".join([f"# kubewire proxy: partial update of table {where}", *lines]) + "\n"


# --- the interpreter ---------------------------------------------------------------------------------

_RE_TABLE = re.compile(r"^(add|delete) table (\S+) (\S+)$")
_RE_SET = re.compile(r"^add (set|map) (\S+) (\S+) (\S+) \{ (.*) \}$")
_RE_CHAIN = re.compile(r"^add chain (\S+) (\S+) (\S+)(?: \{ (.*) \})?$")
_RE_DELCHAIN = re.compile(r"^delete chain (\S+) (\S+) (\S+)$")
_RE_RULE = re.compile(r"^add rule (\S+) (\S+) (\S+) (.+)$")
_RE_ELEMENT = re.compile(r"^(add|delete) element (\S+) (\S+) (\S+) \{ (.*) \}$")
_RE_FLUSH = re.compile(r"^flush (set|map) (\S+) (\S+) (\S+)$")
_RE_TARGET = re.compile(r"\b(?:goto|jump) (\S+)")
_RE_SETREF = re.compile(r"@(\w+)")


def _check_verdict(table: Table, value: str, where: str) -> None:
    if value in VERDICTS:
        return
    m = re.fullmatch(r"(?:goto|jump) (\S+)", value)
    if m is None:
        raise NftScriptError(f"{where}: not a verdict: {value!r}")
    if m.group(1) not in table.chains:
        raise NftScriptError(f"{where}: no such chain {m.group(1)!r}")


def _references(table: Table, chain: str) -> list[str]:
    refs = [c for c, rules in table.rules.items() if any(chain in _RE_TARGET.findall(r) for r in rules)]
    for name, elements in table.elements.items():
        if table.sets[name][0] == "map" and any(v in (f"goto {chain}", f"jump {chain}") for v in elements.values()):
            refs.append(name)
    return refs


def _apply_line(state: NftState, line: str, n: int) -> None:
    where = f"line {n}"

    def table_of(family: str, name: str) -> Table:
        t = state.tables.get((family, name))
        if t is None:
            raise NftScriptError(f"{where}: no such table {family} {name}")
        return t

    if m := _RE_TABLE.match(line):
        op, family, name = m.groups()
        if op == "add":
            state.tables.setdefault((family, name), Table())
        elif state.tables.pop((family, name), None) is None:
            raise NftScriptError(f"{where}: no such table {family} {name}")
    elif m := _RE_SET.match(line):
        kind, family, tname, name, decl = m.groups()
        t = table_of(family, tname)
        if name in t.sets and t.sets[name] != (kind, decl):
            raise NftScriptError(f"{where}: {name} exists with another definition")
        t.sets.setdefault(name, (kind, decl))
        t.elements.setdefault(name, {})
    elif m := _RE_CHAIN.match(line):
        family, tname, name, spec = m.groups()
        t = table_of(family, tname)
        if name in t.chains and t.chains[name] != (spec or ""):
            raise NftScriptError(f"{where}: chain {name} exists with another definition")
        t.chains.setdefault(name, spec or "")
        t.rules.setdefault(name, [])
    elif m := _RE_DELCHAIN.match(line):
        family, tname, name = m.groups()
        t = table_of(family, tname)
        if name not in t.chains:
            raise NftScriptError(f"{where}: no such chain {name}")
        if refs := [r for r in _references(t, name) if r != name]:
            raise NftScriptError(f"{where}: chain {name} is busy (referenced by {', '.join(refs)})")
        del t.chains[name], t.rules[name]
    elif m := _RE_RULE.match(line):
        family, tname, chain, rule = m.groups()
        t = table_of(family, tname)
        if chain not in t.chains:
            raise NftScriptError(f"{where}: no such chain {chain}")
        for target in _RE_TARGET.findall(rule):
            if target not in t.chains:
                raise NftScriptError(f"{where}: no such chain {target}")
        for ref in _RE_SETREF.findall(rule):
            if ref not in t.sets:
                raise NftScriptError(f"{where}: no such set {ref}")
        t.rules[chain].append(rule)
    elif m := _RE_ELEMENT.match(line):
        op, family, tname, name, body = m.groups()
        t = table_of(family, tname)
        if name not in t.sets:
            raise NftScriptError(f"{where}: no such set {name}")
        kind, elements = t.sets[name][0], t.elements[name]
        for item in (i.strip() for i in body.split(",")):
            key, sep, value = item.partition(" : ")
            if op == "delete":
                if key not in elements:
                    raise NftScriptError(f"{where}: no such element {key!r} in {name}")
                del elements[key]
                continue
            if (kind == "map") != bool(sep):
                raise NftScriptError(f"{where}: element {item!r} does not fit {kind} {name}")
            if kind == "map" and t.sets[name][1].endswith(": verdict ;"):
                _check_verdict(t, value, where)
            if key in elements and elements[key] != value:
                raise NftScriptError(f"{where}: element {key!r} exists in {name} with another value")
            elements[key] = value
    elif m := _RE_FLUSH.match(line):
        _kind, family, tname, name = m.groups()
        t = table_of(family, tname)
        if name not in t.sets:
            raise NftScriptError(f"{where}: no such set {name}")
        t.elements[name] = {}
    else:
        raise NftScriptError(f"{where}: not understood: {line!r}")


def state_of(source: str | ProxySnapshot, base: NftState | None = None) -> NftState:
    """The table contents a snapshot compiles to, or that a script leaves when applied onto ``base``.

    A script is applied as one transaction: on any error :class:`NftScriptError` is raised and
    ``base`` is left as it was (it is never modified either way).
    """
    if isinstance(source, ProxySnapshot):
        if base is not None:
            raise ValueError("a snapshot's state does not build on a base state")
        return NftState({(_family(source.family).nft, TABLE): _compile(source)})
    state = base.copy() if base is not None else NftState()
    for n, raw in enumerate(source.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            _apply_line(state, line, n)
    return state

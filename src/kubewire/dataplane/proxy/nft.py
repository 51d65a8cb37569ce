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
ClusterIP after DNAT (a port the Service does not define), and ``@service_cidrs`` then drops what
is addressed to any other address of the service CIDRs (``node.service_cidrs``): an unallocated
ClusterIP, as upstream's "Drop traffic to unallocated ClusterIPs".

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
replacement); a partial update adds the chains newly needed, deletes and adds elements, and
deletes chains no longer used, and equals the full load of the new snapshot (it falls back to the
full script when a chain's rules would change, e.g. the node learns its pod CIDRs; ``""`` when
nothing changes).  The agent keeps one :class:`Compiled` per family — a change tracker keyed by
ServicePort (design principle 3) holding each frontend's elements and reference counts for shared
elements and chains — and calls its ``update(snapshot)``, whose cost follows the ServicePorts that
changed (plus one cheap comparison pass over the snapshot), not the table's size: a few ms at
10,000 Services where recompiling both snapshots took over a second.  :func:`partial_update` is
the stateless form (it compiles the old snapshot in full first).
:func:`state_of` gives the table contents (declarations, chains, rules, elements) either computed
from a snapshot or by interpreting a script onto a prior state; the interpreter rejects what the
kernel would (missing elements, busy chains, conflicting element values, dangling references).

Gaps, deliberate: health-check NodePorts (served by the agent, not rules), ``masqueradeAll``.
Two Services claiming one (address, protocol, port): the first in snapshot order wins, as in the
reference evaluator.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field

from kubewire.dataplane.proxy.endpoints import Selection, categorize
from kubewire.dataplane.proxy.model import Endpoint, NodeContext, ProxySnapshot, ServicePort, family_of

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
        "service_cidrs": ("set", f"type {a} ; flags interval ;"),
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
        "cluster_ips_check": [f"{ip} daddr @cluster_ips goto {REJECT_CHAIN}", f"{ip} daddr @service_cidrs drop"],
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


# An IPv4 address already in canonical form (no leading zeros, which ipaddress refuses anyway): the
# common case, and parsing is most of a full compile's time (one call per endpoint per frontend).
_RE_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


def _addr(text: str) -> str:
    if _RE_IPV4.fullmatch(text):
        return text
    return ipaddress.ip_address(text.strip()).compressed


def _nets(texts: Iterable[str], version: int) -> list[str]:
    nets = [ipaddress.ip_network(t.strip(), strict=False) for t in texts]
    if version == 4:
        v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
        return [str(n) for n in ipaddress.collapse_addresses(v4)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return [str(n) for n in ipaddress.collapse_addresses(v6)]


def _protocol_of(key: str) -> str:
    """The protocol of a frontend key, ``addr . proto . port`` or ``proto . port``."""
    parts = key.split(" . ")
    return parts[-2]


def _strip_protocol(key: str) -> str:
    parts = key.split(" . ")
    return " . ".join(parts[:-2] + parts[-1:])


_KIND_ORDER = {kind: i for i, kind in enumerate(_KINDS)}
_SHARED = ("cluster_ips", "hairpin")  # elements several service ports may need: reference-counted


def _chain_order(name: str) -> tuple[int, int]:
    """Load-balancing chains by kind then endpoint count, then the ``affinity_<T>`` chains by timeout."""
    kind, n = name.rsplit("_", 1)
    return (len(_KINDS) if kind == "affinity" else _KIND_ORDER[kind], int(n))


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


def _render_resync(family: str, old: Table, new: Table) -> str:
    """The periodic full resync that keeps session affinity: instead of replacing the table, flush
    every chain and every set but the dynamic ``affinity`` map (flushed too when an entry may point at
    an endpoint that is gone), then load the whole state again.  ``old`` must be what the kernel holds
    (the last applied state); chains it has that ``new`` does not are deleted."""
    where = f"{family} {TABLE}"
    lines = [f"# kubewire proxy: periodic resync of table {where} (session affinity kept)"]
    lines += [f"add table {where}", f"flush table {where}"]
    lines += [f"add {kind} {where} {name} {{ {decl} }}" for name, (kind, decl) in new.sets.items()]
    stale = _affinity_stale(old, new)
    for name, (kind, _decl) in new.sets.items():
        if name != "affinity" or stale:
            lines.append(f"flush {kind} {where} {name}")
    lines += _chain_lines(where, new, new.chains)
    lines += [f"delete chain {where} {name}" for name in old.chains if name not in new.chains]
    for name, elements in new.elements.items():
        if elements and name != "affinity":
            lines += _element_lines("add", where, new, name, elements, True)
    return "\n".join(lines) + "\n"


def resync_ruleset(old: Compiled, new: Compiled) -> str:
    """:func:`_render_resync` between two compiled states of one family."""
    return _render_resync(new._f.nft, old.table(), new.table())


def _render_partial(where: str, lines: list[str]) -> str:
    if not lines:
        return ""
    return "\n".join([f"# kubewire proxy: partial update of table {where}", *lines]) + "\n"


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


def _diff_tables(family: str, a: Table, b: Table) -> str:
    """The element-level transaction from table ``a`` to table ``b``, comparing every element.

    The slow, general path (linear in the whole table): :class:`Compiled` uses it only when the node
    changes.  Falls back to the full script of ``b`` when a chain's rules or a declaration differ."""
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
    return _render_partial(where, lines)


# --- the incremental compiler -------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Port:
    """One service port as the compiler holds it: its value and the frontends it contends for."""

    sp: ServicePort
    pos: int  # its position in the snapshot (claims: the first contender wins)
    cluster_ips: tuple[str, ...]  # elements of @cluster_ips (whoever owns the frontends)
    frontends: dict[str, str]  # frontend key -> "cluster" | "external" | "lb" | "nodeport" (first occurrence)
    selection: Selection | None = None  # categorize(sp, node), computed when a frontend is first built


@dataclass(slots=True, eq=False)
class _Unit:
    """What one frontend key puts in the table, as the service port owning it made it."""

    owner: str  # the owning service port's identity (see Compiled._ports)
    elements: tuple[tuple[str, str, str], ...]  # (set, key, value); value "" in sets
    chains: tuple[str, ...]  # the lb_<N> / affinity_<T> chains its verdicts name
    affinity: bool  # whether it has an @affinity_ips / @affinity_nodeports entry


class Compiled:
    """One family's compiled table, kept per frontend so that the next snapshot costs only its changes.

    ``Compiled(snapshot)`` compiles the whole snapshot; :meth:`full` is the script that loads it;
    :meth:`update` moves to the next snapshot and returns the element-level transaction from the
    table the previous state compiled to (what the kernel holds after the last applied script) to
    the new one.  Pure: no I/O; ``update`` mutates the object, so a caller that fails to apply the
    script must not use the object again (rebuild it and load :meth:`full`).

    What is kept (design principle 3, a change tracker keyed by service port): each ServicePort's
    value and the frontend keys it contends for, and per frontend key (``addr . proto . port`` or
    ``proto . port``) the elements and chains of the one service port that owns it.  Elements that
    several frontends may need (``@hairpin``, ``@cluster_ips``) and the ``<kind>_<N>`` /
    ``affinity_<T>`` chains are reference-counted: a chain is added when its first user appears and
    deleted when its last goes.

    Cost of :meth:`update`: one pass over the snapshot comparing each ServicePort with the kept one
    (``is`` first, then ``==``; ``changed`` lets the caller skip the deep comparisons), then work
    only for the service ports that differ and the frontends they touch:

    - *claims*: a frontend two service ports share belongs to the first in snapshot order (as a full
      compile and the reference evaluator decide).  Each port keeps its position; the owner of a
      touched frontend is decided again, and when kept ports change their relative order (never
      for snapshots sorted by key, as ``build_snapshot`` makes them) so is every contested
      frontend's, so an owner change — the first claimant removed or added, or the order
      changing — is incremental too;
    - *NodePort collision guard* (``return`` in ``@no_endpoint_services``): recomputed for the node
      addresses × the touched frontend keys only;
    - *affinity*: ``flush map … affinity`` when a touched frontend with an affinity entry loses it or
      loses a backend, as :func:`partial_update` always did.

    Falls back to comparing whole tables (:func:`_diff_tables`; as costly as the old
    :func:`partial_update`) when the node changes (name, zone, addresses, pod CIDRs: they change
    every service's selection, the NodePort addresses, the firewall and possibly the chains' rules,
    in which case the script is the full one); to the full script when the address family changes
    or a previous call raised.
    """

    snapshot: ProxySnapshot  # the snapshot the current state is compiled from
    _broken: bool  # an update or load did not complete: the state is not to be trusted
    _f: _Family
    _node: NodeContext
    _node_addresses: list[str]  # this family's, in order (the first is the primary address)
    _node_address_set: set[str]
    _pods: bool  # whether the node knows its pod CIDRs (the lb chains' rules depend on it)
    _decls: dict[str, tuple[str, str]]
    _el: dict[str, dict[str, str]]  # set -> key -> value: the table's elements
    _refs: dict[str, dict[str, int]]  # shared set -> key -> users
    _chains: dict[str, int]  # lb / affinity chain -> users
    _ports: dict[str, _Port]  # identity (ServicePort.key; `#n` appended to a repeated key) -> port
    _contenders: dict[str, list[str]]  # frontend key -> identities claiming it
    _contested: dict[str, None]  # frontend keys with several contenders (an ordered set)
    _units: dict[str, _Unit]  # frontend key -> what its owner put in the table
    _guards: set[str]  # keys of the NodePort collision guard in @no_endpoint_services
    _log: dict[tuple[str, str], str | None] | None  # during update: (set, key) -> value before it
    _chain_log: dict[str, bool] | None  # during update: chain -> existed before it

    def __init__(self, snapshot: ProxySnapshot) -> None:
        self._load(snapshot)

    # --- public surface

    def full(self) -> str:
        """The ``nft -f`` script that atomically replaces the table with the current state."""
        if self._broken:
            raise RuntimeError("a previous update failed: call update() (it reloads) or build a new Compiled")
        return _render_full(self._f.nft, self._table())

    def table(self) -> Table:
        """The current table contents (a copy)."""
        return self._table().copy()

    def element_counts(self) -> dict[str, int]:
        """Elements per set or map, without copying them (the rules-count metrics)."""
        return {name: len(elements) for name, elements in self._el.items()}

    def update(self, snapshot: ProxySnapshot, changed: Collection[str] | None = None) -> str:
        """Move to ``snapshot``; the transaction from the previous state's table to its table.

        ``""`` when nothing changes.  ``changed``, when given, names the ServicePorts
        (``ServicePort.key``) or Services (``namespace/name``) that may differ from the previous
        snapshot: the others are taken as unchanged without comparing them (an identical object is
        always recognised cheaply; additions and removals are always found).
        """
        if self._broken or snapshot.family != self.snapshot.family:
            self._load(snapshot)
            return self.full()
        if snapshot.node != self.snapshot.node:
            before = self._table()  # keeps the old element dicts: _load builds new ones
            self._load(snapshot)
            return _diff_tables(self._f.nft, before, self._table())
        self._broken = True  # until this update completes
        self._log, self._chain_log = {}, {}
        try:
            seen: set[str] = set()
            removed: list[str] = []
            added: dict[str, tuple[int, ServicePort]] = {}
            kept = self._ports
            last, reordered = -1, False
            for i, sp in enumerate(snapshot.services):
                ident = key = sp.key
                if ident in seen:
                    ident = _unique(ident, seen)
                seen.add(ident)
                port = kept.get(ident)
                if port is None:
                    added[ident] = (i, sp)
                    continue
                if port.pos < last:
                    reordered = True  # kept service ports changed their relative order
                last, port.pos = port.pos, i
                if port.sp is not sp:
                    if (
                        changed is not None
                        and key not in changed
                        and (not sp.port_name or f"{sp.namespace}/{sp.name}" not in changed)
                    ) or port.sp == sp:
                        port.sp = sp  # the same value: later comparisons with this snapshot's objects are cheap
                    else:
                        removed.append(ident)
                        added[ident] = (i, sp)
            if len(kept) - len(removed) > len(seen) - len(added):  # some kept idents are gone
                removed += [ident for ident in kept if ident not in seen]
            flush = self._change(removed, added, reordered)
            script = self._render_update(flush)
        finally:
            self._log = self._chain_log = None
        self.snapshot = snapshot
        self._broken = False
        return script

    # --- state

    def _load(self, snapshot: ProxySnapshot) -> None:
        self._broken = True  # until loaded
        self.snapshot = snapshot
        version = snapshot.family
        self._f = _family(version)
        self._node = snapshot.node
        pod_cidrs = _nets(snapshot.node.pod_cidrs, version)
        self._node_addresses = [
            _addr(a) for a in snapshot.node.addresses if ipaddress.ip_address(a.strip()).version == version
        ]
        self._node_address_set = set(self._node_addresses)
        self._decls = _declarations(self._f)
        self._pods = bool(pod_cidrs)
        self._el = {name: {} for name in self._decls}
        self._refs = {name: {} for name in _SHARED}
        self._chains = {}
        self._ports = {}
        self._contenders = {}
        self._contested = {}
        self._units = {}
        self._guards = set()
        self._log = self._chain_log = None
        for a in self._node_addresses:
            self._el["nodeport_ips"][a] = ""
        for c in pod_cidrs:
            self._el["pod_cidrs"][c] = ""
        for c in _nets(snapshot.node.service_cidrs, version):
            self._el["service_cidrs"][c] = ""
        added: dict[str, tuple[int, ServicePort]] = {}
        for i, sp in enumerate(snapshot.services):
            ident = sp.key
            added[_unique(ident, added) if ident in added else ident] = (i, sp)
        self._change([], added, False)
        self._broken = False

    def _table(self) -> Table:
        """The current contents; the element dicts are the live ones (callers copy)."""
        t = Table(sets=dict(self._decls), elements=self._el)
        for name, rules in _fixed_chains(self._f).items():
            t.chains[name] = _BASE_CHAINS.get(name, "")
            t.rules[name] = rules
        for name in sorted(self._chains, key=_chain_order):
            t.chains[name] = ""
            t.rules[name] = list(self._chain_rules(name))
        return t

    def _chain_rules(self, name: str) -> list[str]:
        kind, n = name.rsplit("_", 1)
        if kind == "affinity":
            return _affinity_rules(self._f, int(n))
        return _lb_rules(self._f, self._pods, kind, int(n))

    def _put(self, name: str, key: str, value: str) -> None:
        refs = self._refs.get(name)
        if refs is not None:
            n = refs.get(key, 0)
            refs[key] = n + 1
            if n:
                return
        m = self._el[name]
        if self._log is not None:
            self._log.setdefault((name, key), m.get(key))
        m[key] = value

    def _remove(self, name: str, key: str) -> None:
        refs = self._refs.get(name)
        if refs is not None:
            n = refs[key] - 1
            if n:
                refs[key] = n
                return
            del refs[key]
        m = self._el[name]
        if self._log is not None:
            self._log.setdefault((name, key), m.get(key))
        del m[key]

    def _use_chain(self, name: str, delta: int) -> None:
        n = self._chains.get(name, 0)
        if self._chain_log is not None:
            self._chain_log.setdefault(name, n > 0)
        if n + delta:
            self._chains[name] = n + delta
        else:
            del self._chains[name]

    def _add_unit(self, unit: _Unit) -> None:
        for name, key, value in unit.elements:
            self._put(name, key, value)
        for chain in unit.chains:
            self._use_chain(chain, 1)

    def _drop_unit(self, unit: _Unit) -> None:
        for name, key, _ in unit.elements:
            self._remove(name, key)
        for chain in unit.chains:
            self._use_chain(chain, -1)

    # --- one change

    def _change(self, removed: list[str], added: dict[str, tuple[int, ServicePort]], reordered: bool) -> bool:
        """Apply removed and added (or replaced: both) service ports; returns whether to flush affinity.

        ``added`` maps identities to (position in the new snapshot, value); the kept ports' positions
        are already the new ones.  ``reordered``: kept ports changed their relative order, so every
        contested frontend's owner is decided again (otherwise only the touched frontends')."""
        fresh = {ident: self._port(sp, pos) for ident, (pos, sp) in added.items()}  # parse before mutating
        touched: dict[str, None] = {}
        for ident in removed:
            port = self._ports.pop(ident)
            for ip in port.cluster_ips:
                self._remove("cluster_ips", ip)
            for key in port.frontends:
                contenders = self._contenders[key]
                contenders.remove(ident)
                if not contenders:
                    del self._contenders[key]
                touched[key] = None
        for ident, port in fresh.items():
            self._ports[ident] = port
            for ip in port.cluster_ips:
                self._put("cluster_ips", ip, "")
            for key in port.frontends:
                self._contenders.setdefault(key, []).append(ident)
                touched[key] = None
        for key in touched:
            if len(self._contenders.get(key, ())) > 1:
                self._contested[key] = None
            else:
                self._contested.pop(key, None)
        # Who owns each touched (or, after a reordering, contested) key now; redo the keys whose
        # owner or owner's value changed.  The first contender in snapshot order wins.
        redo: list[tuple[str, str | None]] = []
        ports = self._ports
        for key in (touched | self._contested) if reordered else touched:
            contenders = self._contenders.get(key, [])
            owner: str | None
            if not contenders:
                owner = None
            elif len(contenders) == 1:
                owner = contenders[0]
            else:
                owner = min(contenders, key=lambda ident: ports[ident].pos)
            unit = self._units.get(key)
            if (unit.owner if unit is not None else None) == owner and owner not in fresh:
                continue
            redo.append((key, owner))
        guards = self._guard_candidates(key for key, _ in redo)
        for key in guards:
            if key in self._guards:
                self._guards.remove(key)
                self._remove("no_endpoint_services", key)
        flush = False
        for key, owner in redo:
            old = self._units.pop(key, None)
            if old is not None:
                self._drop_unit(old)
            new = None
            if owner is not None:
                new = self._unit(owner, key, self._ports[owner])
                self._add_unit(new)
                self._units[key] = new
            flush = flush or _stale(old, new)
        el = self._el
        for key in guards:
            # A node address that is also a service address on a NodePort's number: the service
            # wins (dispatch tries service addresses first), so the NodePort's no-endpoint verdict
            # must not apply there: ``return`` early from ``endpoints_check`` for that key.
            if (
                key in el["service_ips"]
                and key.split(" . ", 1)[1] in el["no_endpoint_nodeports"]
                and key not in el["no_endpoint_services"]
            ):
                self._guards.add(key)
                self._put("no_endpoint_services", key, "return")
        return flush

    def _guard_candidates(self, keys: Iterable[str]) -> dict[str, None]:
        """The collision-guard keys (node address . proto . port) that frontends ``keys`` bear on."""
        out: dict[str, None] = {}
        for key in keys:
            if key.count(" . ") == 1:  # a NodePort: proto . port
                for a in self._node_addresses:
                    out[f"{a} . {key}"] = None
            elif key.split(" . ", 1)[0] in self._node_address_set:
                out[key] = None
        return out

    def _render_update(self, flush: bool) -> str:
        assert self._log is not None and self._chain_log is not None
        where = f"{self._f.nft} {TABLE}"
        fresh_chains = sorted(
            (c for c, was in self._chain_log.items() if not was and c in self._chains), key=_chain_order
        )
        gone_chains = sorted(
            (c for c, was in self._chain_log.items() if was and c not in self._chains), key=_chain_order
        )
        deletes: dict[str, list[str]] = {}
        adds: dict[str, list[str]] = {}
        for (name, key), before in self._log.items():
            after = self._el[name].get(key)
            if before == after:
                continue
            if before is not None:
                deletes.setdefault(name, []).append(key)
            if after is not None:
                adds.setdefault(name, []).append(f"{key} : {after}" if self._decls[name][0] == "map" else key)
        lines = [f"add chain {where} {c}" for c in fresh_chains]
        lines += [f"add rule {where} {c} {rule}" for c in fresh_chains for rule in self._chain_rules(c)]
        for op, items in (("delete", deletes), ("add", adds)):
            for name in self._decls:
                if name in items:
                    lines += [f"{op} element {where} {name} {{ {', '.join(c)} }}" for c in _chunks(items[name])]
        if flush:
            lines.append(f"flush map {where} affinity")
        lines += [f"delete chain {where} {c}" for c in gone_chains]
        return _render_partial(where, lines)

    # --- what one service port / one frontend compiles to

    def _port(self, sp: ServicePort, pos: int) -> _Port:
        proto = PROTOCOLS.get(sp.protocol.upper())
        if proto is None:
            return _Port(sp, pos, (), {})
        version = self.snapshot.family
        mine = tuple(_addr(ip) for ip in sp.cluster_ips if family_of(ip.strip()) == version)
        frontends: dict[str, str] = {}
        for ip in mine:
            frontends.setdefault(f"{ip} . {proto} . {sp.port}", "cluster")
        for kind, ips in (("external", sp.external_ips), ("lb", sp.load_balancer_ips)):
            for text in ips:
                if family_of(text.strip()) == version:
                    frontends.setdefault(f"{_addr(text)} . {proto} . {sp.port}", kind)
        if sp.node_port:
            frontends.setdefault(f"{proto} . {sp.node_port}", "nodeport")
        return _Port(sp, pos, mine, frontends)

    def _unit(self, owner: str, key: str, port: _Port) -> _Unit:
        """Entries for one frontend key (``addr . proto . port`` or ``proto . port``) owned by ``port``."""
        sp, kind = port.sp, port.frontends[key]
        if port.selection is None:
            port.selection = categorize(sp, self._node)
        sel = port.selection
        out: list[tuple[str, str, str]] = []
        chains: list[str] = []
        external, by_address = kind != "cluster", kind != "nodeport"
        if kind == "lb" and sp.source_ranges:
            self._firewall(sp, key, out)
        if by_address:
            services, no_endpoint, short = "service_ips", "no_endpoint_services", "short_ips"
            backends, short_backends, affinity = "backends", "short_backends", "affinity_ips"
            cluster_kind, local_kind, short_kind = "ext", "extl", "short"
        else:
            services, no_endpoint, short = "service_nodeports", "no_endpoint_nodeports", "short_nodeports"
            backends, short_backends, affinity = "nodeport_backends", "short_nodeport_backends", "affinity_nodeports"
            cluster_kind, local_kind, short_kind = "np", "npl", "npshort"

        def goto(chain_kind: str, n: int) -> str:
            chains.append(f"{chain_kind}_{n}")
            return f"goto {chain_kind}_{n}"

        if not sel.has_any:
            out.append((no_endpoint, key, f"goto {REJECT_CHAIN}"))
            return _Unit(owner, tuple(out), (), False)
        if not external or not sp.external_policy_local:
            if external:
                lb_kind, eps = cluster_kind, sel.cluster
            else:
                lb_kind, eps = "svc", sel.local if sp.internal_policy_local else sel.cluster
            if not eps:  # internalTrafficPolicy Local with no endpoint here
                out.append((no_endpoint, key, "drop"))
                return _Unit(owner, tuple(out), (), False)
            out.append((services, key, goto(lb_kind, len(eps))))
            _fill(out, backends, key, eps)
        else:
            out.append((services, key, goto(local_kind, len(sel.local))))
            _fill(out, backends, key, sel.local)
            if sel.cluster:
                out.append((short, key, goto(short_kind, len(sel.cluster))))
                _fill(out, short_backends, key, sel.cluster)
        has_affinity = sp.affinity_timeout > 0 and self._f.affinity
        if has_affinity:
            chains.append(f"affinity_{sp.affinity_timeout}")
            out.append((affinity, key, f"goto affinity_{sp.affinity_timeout}"))
        return _Unit(owner, tuple(out), tuple(chains), has_affinity)

    def _firewall(self, sp: ServicePort, key: str, out: list[tuple[str, str, str]]) -> None:
        version = self.snapshot.family
        allowed = list(sp.source_ranges)
        primary = self._node_addresses[:1]
        ranges = [ipaddress.ip_network(r.strip(), strict=False) for r in sp.source_ranges]
        if primary and any(ipaddress.ip_address(primary[0]) in n for n in ranges if n.version == version):
            allowed += list(sp.load_balancer_ips)  # the node reaching its own VIP uses the VIP as source
        out.append(("firewall_ips", key, ""))
        out += [("firewall_allow", f"{key} . {net}", "") for net in _nets(allowed, version)]


def _unique(ident: str, taken: Collection[str]) -> str:
    """An identity for a second service port with the same key (malformed input; kept apart all the same)."""
    n = 1
    while f"{ident}#{n}" in taken:
        n += 1
    return f"{ident}#{n}"


def _fill(out: list[tuple[str, str, str]], backends: str, key: str, endpoints: tuple[Endpoint, ...]) -> None:
    """Elements ``<frontend without protocol> . <index>`` of ``<backends>_<protocol>``, and @hairpin's."""
    name, prefix = f"{backends}_{_protocol_of(key)}", _strip_protocol(key)
    for i, ep in enumerate(endpoints):
        ip = _addr(ep.ip)
        out.append((name, f"{prefix} . {i}", f"{ip} . {ep.port}"))
        out.append(("hairpin", f"{ip} . {ip}", ""))


def _stale(old: _Unit | None, new: _Unit | None) -> bool:
    """Whether an affinity entry of ``old``'s frontend may point at an endpoint no longer its backend."""
    if old is None or not old.affinity:
        return False
    if new is None or not new.affinity:
        return True
    kept: dict[str, set[str]] = {}
    for name, _, value in new.elements:
        if name.rsplit("_", 1)[0] in _BACKENDS:
            kept.setdefault(name, set()).add(value)
    return any(
        name.rsplit("_", 1)[0] in _BACKENDS and value not in kept.get(name, ()) for name, _, value in old.elements
    )


def _compile(snapshot: ProxySnapshot) -> Table:
    return Compiled(snapshot)._table()


def full_ruleset(snapshot: ProxySnapshot) -> str:
    """An ``nft -f`` script that atomically replaces this family's table with ``snapshot``'s rules."""
    return Compiled(snapshot).full()


def partial_update(old: ProxySnapshot, new: ProxySnapshot) -> str:
    """An element-level transaction turning ``full_ruleset(old)``'s table into ``full_ruleset(new)``'s.

    Returns ``""`` when nothing changes.  Falls back to :func:`full_ruleset` (still one atomic
    transaction) when the family changes or a chain's rules would change.  Compiles ``old`` in
    full: a caller syncing repeatedly should keep a :class:`Compiled` and call its ``update``.
    """
    return Compiled(old).update(new)


# --- the interpreter ---------------------------------------------------------------------------------

_RE_TABLE = re.compile(r"^(add|delete) table (\S+) (\S+)$")
_RE_SET = re.compile(r"^add (set|map) (\S+) (\S+) (\S+) \{ (.*) \}$")
_RE_CHAIN = re.compile(r"^add chain (\S+) (\S+) (\S+)(?: \{ (.*) \})?$")
_RE_DELCHAIN = re.compile(r"^delete chain (\S+) (\S+) (\S+)$")
_RE_RULE = re.compile(r"^add rule (\S+) (\S+) (\S+) (.+)$")
_RE_ELEMENT = re.compile(r"^(add|delete) element (\S+) (\S+) (\S+) \{ (.*) \}$")
_RE_FLUSH = re.compile(r"^flush (set|map) (\S+) (\S+) (\S+)$")
_RE_FLUSH_TABLE = re.compile(r"^flush table (\S+) (\S+)$")
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
    elif m := _RE_FLUSH_TABLE.match(line):
        t = table_of(*m.groups())
        for chain in t.rules:  # the kernel empties every chain and leaves sets and maps alone
            t.rules[chain] = []
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

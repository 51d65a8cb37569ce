"""The Service rule compiler in upstream kube-proxy's ``iptables`` mode, and an interpreter for its rules.

kubewire's own proxy programs nftables with a flat layout (:mod:`kubewire.dataplane.proxy.nft`).
This module exists for comparison and teaching: it compiles the same snapshot into the chains that
``iptables-save`` shows on a real cluster running kube-proxy in iptables mode, chain for chain and
name for name, so that users can read them side by side, load them into a namespace, and see why
the flat layout was chosen (a chain per service port and per endpoint: the chain count grows with
the cluster).

:func:`restore_input` is one full sync, as upstream writes it: the input of
``iptables-restore --noflush`` (``ip6tables-restore`` for an IPv6 snapshot; the text is the same
shape) for the ``filter`` and ``nat`` tables.  Every kube-proxy chain is declared (``:CHAIN - [0:0]``
flushes it under ``--noflush``) and rewritten, in one atomic restore per table.  Two things upstream
learns from the kernel first are parameters here, so the function stays pure: ``saved``, the
``iptables-save`` text of the namespace before the sync, tells which per-service chains have become
stale (they are flushed and deleted with ``-X``, as upstream's full sync does) and which jump rules
from the built-in chains already exist (the missing ones are inserted at the top with ``-I``, where
upstream's ``EnsureRule`` prepends them).  With ``saved`` empty the namespace is assumed fresh.
:func:`cleanup_input` removes everything again (upstream's ``CleanupLeftovers``).

Chains (table: chain, and who jumps there)::

    nat     KUBE-SERVICES            from PREROUTING and OUTPUT: per service address -> SVC/SVL/EXT/FW;
                                     last, per node address -> KUBE-NODEPORTS
    nat     KUBE-NODEPORTS           per NodePort -> KUBE-EXT-<hash>
    nat     KUBE-SVC-<hash>          Cluster-policy endpoints: `-m statistic --mode random
                                     --probability 1/(n-i)` per endpoint, the last unconditional
    nat     KUBE-SVL-<hash>          Local-policy endpoints (this node's), same shape
    nat     KUBE-EXT-<hash>          external destinations: masquerade, or (policy Local) the pod and
                                     node short-circuits to KUBE-SVC, then the policy chain
    nat     KUBE-FW-<hash>           loadBalancerSourceRanges: allowed sources -> KUBE-EXT
    nat     KUBE-SEP-<hash>          one endpoint: hairpin masquerade, (affinity `-m recent --set`), DNAT
    nat     KUBE-MARK-MASQ           sets mark 0x4000 (iptables-save prints `--set-xmark 0x4000/0x4000`)
    nat     KUBE-POSTROUTING         from POSTROUTING: MASQUERADE --random-fully marked packets
    filter  KUBE-SERVICES            from FORWARD and OUTPUT: ClusterIPs with no endpoints (REJECT) or
                                     no local endpoints under internalTrafficPolicy Local (DROP)
    filter  KUBE-EXTERNAL-SERVICES   from INPUT and FORWARD: the same for externalIPs, LoadBalancer IPs
                                     and NodePorts (REJECT, or DROP under externalTrafficPolicy Local)
    filter  KUBE-PROXY-FIREWALL      from INPUT, OUTPUT, FORWARD: drops LoadBalancer traffic KUBE-FW-*
                                     did not accept (it was not DNATed, so it still carries the VIP)
    filter  KUBE-NODEPORTS           from INPUT: accepts healthCheckNodePorts
    filter  KUBE-FORWARD             from FORWARD: drops INVALID, accepts marked and established traffic

Chain names follow upstream: ``KUBE-SVC-`` + the first 16 characters of base32(sha256(
"namespace/name:port" + protocol in lower case)) (``KUBE-SVL-``, ``KUBE-EXT-``, ``KUBE-FW-`` share
the hash), and ``KUBE-SEP-`` hashes the same string followed by the endpoint ``ip:port``.  As
upstream, per-endpoint comments are left out when the snapshot holds more than 1,000 endpoints
("large cluster mode").

Where upstream's iptables mode behaves differently from the reference evaluator (which follows the
nftables proxier), the rules here keep upstream's iptables behaviour, and the tests say so:

- a ClusterIP on a port or protocol the Service does not define is not rejected: the packet
  passes untouched (only the nftables proxier has a cluster-IPs check);
- the node's own traffic (OUTPUT) never traverses KUBE-EXTERNAL-SERVICES, so from the node an
  externalIP, LoadBalancer IP or NodePort without endpoints is not rejected but passes;
- a LoadBalancer with ``loadBalancerSourceRanges`` and no endpoints at all has no firewall chain:
  traffic from a source outside the ranges is rejected (from the node: passes), not dropped.

Gaps, deliberate: ``--masquerade-all``; localhost NodePorts (NodePorts answer on
``node.addresses``, upstream's ``--nodeport-addresses`` set to them, so no ``KUBE-FIREWALL``); the
``KUBE-PROXY-CANARY`` chains (monitoring); partial syncs.  Upstream detects pod traffic by one
cluster CIDR per family, so only the first of ``node.pod_cidrs`` in this family (after collapsing)
is used.

:func:`evaluate_rules` interprets a restore text (or ``iptables-save`` output) for the first packet
of a connection, through the hooks the kernel would run (nat PREROUTING, routing, filter INPUT or
FORWARD, nat POSTROUTING; for the node's own traffic nat OUTPUT, filter OUTPUT, nat POSTROUTING).
A ``statistic`` or ``recent --rcheck`` match may go either way, so the answer is the set of possible
outcomes.  It refuses options it does not model rather than guess.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from kubewire.dataplane.proxy.endpoints import categorize, uses_cluster_endpoints, uses_local_endpoints
from kubewire.dataplane.proxy.evaluate import Packet
from kubewire.dataplane.proxy.model import Endpoint, ProxySnapshot, ServicePort, family_of

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"

SVC_PREFIX, SVL_PREFIX, EXT_PREFIX, FW_PREFIX, SEP_PREFIX = (
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-SEP-",
)
SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, EXT_PREFIX, FW_PREFIX, SEP_PREFIX)
FILTER_CHAINS = (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL)
NAT_CHAINS = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)

MASQUERADE_MARK = "0x4000"  # upstream's default --masquerade-bit 14
HASH_LENGTH = 16  # base32 characters kept: KUBE-SEP- + 16 = 25, within iptables' 28-character chain names
LARGE_CLUSTER_ENDPOINTS = 1000  # upstream drops per-endpoint comments above this many endpoints
PROTOCOLS = ("TCP", "UDP", "SCTP")
NODEPORTS_COMMENT = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"


@dataclass(frozen=True)
class Jump:
    """A rule in a built-in chain that jumps to one of kube-proxy's chains (upstream iptablesJumpChains)."""

    table: str
    chain: str  # the built-in chain holding the rule
    target: str  # the kube-proxy chain
    comment: str
    extra: tuple[str, ...] = ()

    def rule(self) -> str:
        return " ".join([*self.extra, "-m", "comment", "--comment", _q(self.comment), "-j", self.target])


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
# In upstream's order; each is prepended, so the last one of a built-in chain ends up first.
JUMPS = (
    Jump("filter", "INPUT", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", _NEW),
    Jump("filter", "FORWARD", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", _NEW),
    Jump("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
    Jump("filter", "FORWARD", KUBE_SERVICES, "kubernetes service portals", _NEW),
    Jump("filter", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", _NEW),
    Jump("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    Jump("filter", "INPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    Jump("filter", "OUTPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    Jump("filter", "FORWARD", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    Jump("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    Jump("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    Jump("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
)


class RulesError(ValueError):
    """Rules text the interpreter cannot load: what iptables-restore would refuse, or what it does not model."""


# --- names ------------------------------------------------------------------------------------------


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """Upstream's portProtoHash: base32(sha256(name + protocol))[:16]; protocol in lower case."""
    digest = hashlib.sha256((service_port_name + protocol).encode()).digest()
    return base64.b32encode(digest).decode()[:HASH_LENGTH]


def endpoint_string(endpoint: Endpoint) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6), as upstream's endpoint String() and DNAT take it."""
    ip = ipaddress.ip_address(endpoint.ip.strip()).compressed
    return f"[{ip}]:{endpoint.port}" if ":" in ip else f"{ip}:{endpoint.port}"


def endpoint_chain_name(service_port_name: str, protocol: str, endpoint: str) -> str:
    """Upstream's servicePortEndpointChainName: KUBE-SEP- + base32(sha256(name + protocol + ip:port))[:16]."""
    digest = hashlib.sha256((service_port_name + protocol + endpoint).encode()).digest()
    return SEP_PREFIX + base64.b32encode(digest).decode()[:HASH_LENGTH]


@dataclass(frozen=True)
class ChainNames:
    """The per-service-port chains of one service port (each exists only when the port needs it)."""

    key: str  # upstream's ServicePortName string, namespace/name:port
    protocol: str  # lower case, as hashed
    cluster: str  # KUBE-SVC-: Cluster-policy endpoints
    local: str  # KUBE-SVL-: Local-policy endpoints
    external: str  # KUBE-EXT-: external destinations
    firewall: str  # KUBE-FW-: loadBalancerSourceRanges

    def endpoint(self, endpoint: Endpoint) -> str:
        """The KUBE-SEP- chain of ``endpoint`` in this service port."""
        return endpoint_chain_name(self.key, self.protocol, endpoint_string(endpoint))


def chain_names(sp: ServicePort) -> ChainNames:
    """The chain names upstream gives ``sp``."""
    protocol = sp.protocol.lower()
    h = port_proto_hash(sp.key, protocol)
    return ChainNames(sp.key, protocol, SVC_PREFIX + h, SVL_PREFIX + h, EXT_PREFIX + h, FW_PREFIX + h)


def probability(n: int) -> str:
    """The statistic match probability of the rule picking 1 of the ``n`` endpoints left: upstream's "%0.10f"."""
    return f"{1.0 / n:0.10f}"


def is_service_chain(name: str) -> bool:
    """Whether ``name`` is a per-service-port chain (the ones a full sync deletes when stale)."""
    return name.startswith(SERVICE_CHAIN_PREFIXES)


def _q(text: str) -> str:
    """A restore-file word: quoted when it holds a space, as upstream writes its comments."""
    return f'"{text}"' if any(c.isspace() for c in text) else text


# --- iptables-save parsing (what exists before a sync) -------------------------------------------------

_WORD = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')


def _split(line: str) -> list[str]:
    return [quoted if bare == "" else bare for quoted, bare in _WORD.findall(line)]


@dataclass
class _Saved:
    chains: dict[str, list[str]] = field(default_factory=dict)  # table -> chains, in order
    rules: dict[str, list[list[str]]] = field(default_factory=dict)  # table -> "-A CHAIN ..." rules, split


def _parse_saved(text: str) -> _Saved:
    saved = _Saved()
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:]
            saved.chains.setdefault(table, [])
            saved.rules.setdefault(table, [])
        elif line.startswith(":") and table:
            saved.chains[table].append(line[1:].split()[0])
        elif line.startswith("-A ") and table:
            saved.rules[table].append(_split(line))
    return saved


def _jump_exists(saved: _Saved, jump: Jump) -> bool:
    return any(w[1] == jump.chain and _target_of(w) == jump.target for w in saved.rules.get(jump.table, []))


def _target_of(words: list[str]) -> str:
    for i, w in enumerate(words[:-1]):
        if w in ("-j", "--jump", "-g", "--goto"):
            return words[i + 1]
    return ""


# --- compiling ------------------------------------------------------------------------------------------


@dataclass
class _Table:
    chains: list[str]
    rules: list[str] = field(default_factory=list)


class _Compiler:
    """Builds one full sync from a snapshot, following upstream's syncProxyRules."""

    def __init__(self, snapshot: ProxySnapshot, saved: _Saved) -> None:
        if snapshot.family not in (4, 6):
            raise ValueError(f"address family must be 4 or 6, not {snapshot.family!r}")
        self.snap = snapshot
        self.saved = saved
        node = snapshot.node
        self.node_ips = [ipaddress.ip_address(a.strip()) for a in node.addresses if family_of(a) == snapshot.family]
        self.pod_cidr = _first_cidr(node.pod_cidrs, snapshot.family)  # upstream: one cluster CIDR per family
        self.large = sum(len(sp.endpoints) for sp in snapshot.services) > LARGE_CLUSTER_ENDPOINTS
        self.filter = _Table(list(FILTER_CHAINS))
        self.nat = _Table(list(NAT_CHAINS))
        self.active: set[str] = set()

    def _comment(self, text: str) -> str:
        """Upstream's appendServiceCommentLocked: per-endpoint comments, left out in large cluster mode."""
        return "" if self.large else f"-m comment --comment {_q(text)} "

    def compile(self) -> str:
        mark = MASQUERADE_MARK
        nat = self.nat.rules
        nat += [
            f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
            f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
            f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" '
            "-j MASQUERADE --random-fully",
            f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}",
        ]
        for sp in self.snap.services:
            if sp.protocol.upper() in PROTOCOLS:
                self._service_port(sp)
        for chain in self.saved.chains.get("nat", []):
            if is_service_chain(chain) and chain not in self.active:
                self.nat.chains.append(chain)  # the chain line flushes it, so nothing references it any more
                nat.append(f"-X {chain}")
        for ip in self.node_ips:
            nat.append(f"-A {KUBE_SERVICES} -m comment --comment {_q(NODEPORTS_COMMENT)} -d {ip} -j {KUBE_NODEPORTS}")
        self.filter.rules += [
            f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP",
            f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT',
            f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ]
        for jump in JUMPS:
            if not _jump_exists(self.saved, jump):
                table = self.filter if jump.table == "filter" else self.nat
                table.rules.append(f"-I {jump.chain} 1 {jump.rule()}")
        out: list[str] = []
        for name, table in (("filter", self.filter), ("nat", self.nat)):
            out.append(f"*{name}")
            out += [f":{c} - [0:0]" for c in table.chains]
            out += table.rules
            out.append("COMMIT")
        return "\n".join(out) + "\n"

    def _declare(self, chain: str) -> None:
        self.nat.chains.append(chain)
        self.active.add(chain)

    def _service_port(self, sp: ServicePort) -> None:
        node = self.snap.node
        names = chain_names(sp)
        proto, key = names.protocol, sp.key
        sel = categorize(sp, node)
        has_endpoints = sel.has_any
        uses_cluster_chain = bool(sel.cluster) and uses_cluster_endpoints(sp)
        uses_local_chain = bool(sel.local) and uses_local_endpoints(sp)

        internal_chain = names.local if sp.internal_policy_local else names.cluster
        has_internal = has_endpoints and (bool(sel.local) or not sp.internal_policy_local)
        external_policy_chain = names.local if sp.external_policy_local else names.cluster
        has_external = has_endpoints and (bool(sel.local) or not sp.external_policy_local)
        uses_external_chain = has_endpoints and sp.externally_reachable
        lb_ips = [_addr(ip) for ip in sp.load_balancer_ips]
        ranges = [str(ipaddress.ip_network(r.strip(), strict=False)) for r in sp.source_ranges]
        uses_fw = has_endpoints and bool(lb_ips) and bool(ranges)
        lb_chain = names.firewall if uses_fw else names.external

        if not has_endpoints:
            internal_target = external_target = "REJECT"
            internal_why = external_why = f"{key} has no endpoints"
        else:
            internal_target, internal_why = "DROP", f"{key} has no local endpoints"
            external_target, external_why = "DROP", f"{key} has no local endpoints"

        fr, nr = self.filter.rules, self.nat.rules
        match = f"-m {proto} -p {proto}"
        for cip in (_addr(ip) for ip in sp.cluster_ips):
            dst = f"{match} -d {cip} --dport {sp.port}"
            if has_internal:
                nr.append(f'-A {KUBE_SERVICES} -m comment --comment "{key} cluster IP" {dst} -j {internal_chain}')
            else:
                fr.append(f'-A {KUBE_SERVICES} -m comment --comment "{internal_why}" {dst} -j {internal_target}')
        for eip in (_addr(ip) for ip in sp.external_ips):
            dst = f"{match} -d {eip} --dport {sp.port}"
            if has_endpoints:
                nr.append(f'-A {KUBE_SERVICES} -m comment --comment "{key} external IP" {dst} -j {names.external}')
            if not has_external:
                fr.append(
                    f'-A {KUBE_EXTERNAL_SERVICES} -m comment --comment "{external_why}" {dst} -j {external_target}'
                )
        for lb in lb_ips:
            dst = f"{match} -d {lb} --dport {sp.port}"
            if has_endpoints:
                nr.append(f'-A {KUBE_SERVICES} -m comment --comment "{key} loadbalancer IP" {dst} -j {lb_chain}')
            if uses_fw:
                fr.append(
                    f'-A {KUBE_PROXY_FIREWALL} -m comment --comment "{key} traffic not accepted by {names.firewall}" '
                    f"{dst} -j DROP"
                )
        if not has_external:
            for lb in lb_ips:
                fr.append(
                    f'-A {KUBE_EXTERNAL_SERVICES} -m comment --comment "{external_why}" '
                    f"{match} -d {lb} --dport {sp.port} -j {external_target}"
                )
        if sp.node_port:
            if has_endpoints:
                nr.append(
                    f"-A {KUBE_NODEPORTS} -m comment --comment {_q(key)} {match} --dport {sp.node_port} "
                    f"-j {names.external}"
                )
            if not has_external:
                fr.append(
                    f'-A {KUBE_EXTERNAL_SERVICES} -m comment --comment "{external_why}" -m addrtype --dst-type LOCAL '
                    f"{match} --dport {sp.node_port} -j {external_target}"
                )
        if sp.health_check_node_port and sp.external_policy_local:
            fr.append(
                f'-A {KUBE_NODEPORTS} -m comment --comment "{key} health check node port" '
                f"-m tcp -p tcp --dport {sp.health_check_node_port} -j ACCEPT"
            )

        # Internal traffic from outside the pod network is masqueraded: the reply must come back here.
        if has_internal and self.pod_cidr:
            for cip in (_addr(ip) for ip in sp.cluster_ips):
                nr.append(
                    f'-A {internal_chain} -m comment --comment "{key} cluster IP" {match} -d {cip} '
                    f"--dport {sp.port} ! -s {self.pod_cidr} -j {KUBE_MARK_MASQ}"
                )

        if uses_external_chain:
            ext = names.external
            self._declare(ext)
            if not sp.external_policy_local:
                nr.append(
                    f'-A {ext} -m comment --comment "masquerade traffic for {key} external destinations" '
                    f"-j {KUBE_MARK_MASQ}"
                )
            else:
                if self.pod_cidr:
                    nr.append(
                        f'-A {ext} -m comment --comment "pod traffic for {key} external destinations" '
                        f"-s {self.pod_cidr} -j {names.cluster}"
                    )
                nr.append(
                    f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {key} external destinations" '
                    f"-m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}"
                )
                nr.append(
                    f'-A {ext} -m comment --comment "route LOCAL traffic for {key} external destinations" '
                    f"-m addrtype --src-type LOCAL -j {names.cluster}"
                )
            if has_external:
                nr.append(f"-A {ext} -j {external_policy_chain}")

        if uses_fw:
            fw = names.firewall
            self._declare(fw)
            head = f'-A {fw} -m comment --comment "{key} loadbalancer IP"'
            primary = self.node_ips[:1]
            allow_from_node = False
            for r in ranges:
                nr.append(f"{head} -s {r} -j {names.external}")
                net = ipaddress.ip_network(r)
                allow_from_node = allow_from_node or any(ip in net for ip in primary)
            if allow_from_node:  # the node reaching its own VIP uses the VIP as source
                nr += [f"{head} -s {lb} -j {names.external}" for lb in lb_ips]
            nr.append(f'-A {fw} -m comment --comment "other traffic to {key} will be dropped by {KUBE_PROXY_FIREWALL}"')

        if uses_cluster_chain:
            self._declare(names.cluster)
            self._dispatch(sp, names, names.cluster, sel.cluster)
        if uses_local_chain:
            self._declare(names.local)
            self._dispatch(sp, names, names.local, sel.local)

        for ep in sel.reachable:
            sep = names.endpoint(ep)
            self._declare(sep)
            head = f"-A {sep} {self._comment(key)}"
            nr.append(f"{head}-s {_addr(ep.ip)} -j {KUBE_MARK_MASQ}")  # hairpin: a pod reaching itself
            recent = f"-m recent --name {sep} --set " if sp.affinity_timeout else ""
            nr.append(f"{head}{recent}{match} -j DNAT --to-destination {endpoint_string(ep)}")

    def _dispatch(self, sp: ServicePort, names: ChainNames, chain: str, endpoints: tuple[Endpoint, ...]) -> None:
        """Upstream's writeServiceToEndpointRules: affinity checks first, then the random pick."""
        nr = self.nat.rules
        if sp.affinity_timeout:
            for ep in endpoints:
                sep = names.endpoint(ep)
                nr.append(
                    f"-A {chain} {self._comment(f'{sp.key} -> {endpoint_string(ep)}')}-m recent --name {sep} "
                    f"--rcheck --seconds {sp.affinity_timeout} --reap -j {sep}"
                )
        n = len(endpoints)
        for i, ep in enumerate(endpoints):
            pick = f"-m statistic --mode random --probability {probability(n - i)} " if i < n - 1 else ""
            nr.append(f"-A {chain} {self._comment(f'{sp.key} -> {endpoint_string(ep)}')}{pick}-j {names.endpoint(ep)}")


def _first_cidr(cidrs: Iterable[str], version: int) -> str:
    nets = [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs]
    if version == 4:
        v4 = list(ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv4Network)))
        return str(v4[0]) if v4 else ""
    v6 = list(ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv6Network)))
    return str(v6[0]) if v6 else ""


def _addr(text: str) -> str:
    return ipaddress.ip_address(text.strip()).compressed


def restore_input(snapshot: ProxySnapshot, saved: str = "") -> str:
    """One full sync of ``snapshot``: the input of ``iptables-restore --noflush`` (``ip6tables-restore``
    for an IPv6 snapshot) for tables filter and nat.

    ``saved`` is the namespace's ``iptables-save`` output before the sync ("" for a fresh namespace):
    stale per-service chains it lists are deleted, and jump rules it already has are not added again.
    """
    return _Compiler(snapshot, _parse_saved(saved)).compile()


def cleanup_input(saved: str) -> str:
    """Restore input removing everything :func:`restore_input` created, given the ``iptables-save`` text.

    Deletes the jump rules from the built-in chains (as saved), then flushes and deletes every
    kube-proxy chain listed (upstream's CleanupLeftovers).  Returns "" when there is nothing to remove.
    """
    parsed = _parse_saved(saved)
    ours = {"filter": set(FILTER_CHAINS), "nat": set(NAT_CHAINS)}
    out: list[str] = []
    for table in ("filter", "nat"):
        chains = [
            c for c in parsed.chains.get(table, []) if c in ours[table] or (table == "nat" and is_service_chain(c))
        ]
        jumps = [
            w
            for w in parsed.rules.get(table, [])
            if any(j.table == table and j.chain == w[1] and j.target == _target_of(w) for j in JUMPS)
        ]
        if not chains and not jumps:
            continue
        out.append(f"*{table}")
        out += [f":{c} - [0:0]" for c in chains]
        out += ["-D " + " ".join(_q(w) for w in words[1:]) for words in jumps]
        out += [f"-X {c}" for c in chains]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def chain_count(text: str) -> dict[str, int]:
    """How many chains (not built-in ones) each table of a restore or save text declares, less those deleted."""
    parsed = _parse_saved(text)
    deleted: dict[str, set[str]] = {}
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-X "):
            deleted.setdefault(table, set()).add(line.split()[1])
    return {
        t: len([c for c in cs if c not in deleted.get(t, set()) and c not in BUILTIN_CHAINS.get(t, ())])
        for t, cs in parsed.chains.items()
    }


# --- the interpreter ----------------------------------------------------------------------------------------

BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
TARGETS = ("ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "MASQUERADE", "MARK")
_MAX_DEPTH = 64  # jumps nested deeper than this are a loop (iptables itself refuses loops)
_MODULES = ("comment", "tcp", "udp", "sctp", "addrtype", "conntrack", "state", "mark", "statistic", "recent")
_ADDRESS_OPTIONS = {
    "-p": "proto",
    "--protocol": "proto",
    "-s": "src",
    "--source": "src",
    "-d": "dst",
    "--destination": "dst",
}
_MATCH_OPTIONS = {  # option -> number of arguments, for the matches modelled
    "--comment": 1,
    "--dport": 1,
    "--destination-port": 1,
    "--dst-type": 1,
    "--src-type": 1,
    "--ctstate": 1,
    "--state": 1,
    "--mark": 1,
    "--mode": 1,
    "--probability": 1,
    "--name": 1,
    "--seconds": 1,
    "--mask": 1,
    "--rcheck": 0,
    "--update": 0,
    "--set": 0,
    "--reap": 0,
    "--rsource": 0,
}
_TARGET_OPTIONS = {
    "--to-destination": 1,
    "--or-mark": 1,
    "--xor-mark": 1,
    "--and-mark": 1,
    "--set-mark": 1,
    "--set-xmark": 1,
    "--random-fully": 0,
    "--random": 0,
    "--reject-with": 1,
}
_BRANCH = "either"


@dataclass(frozen=True, order=True)
class Outcome:
    """One possible fate of a connection's first packet under a set of rules."""

    action: str  # "dnat" | "reject" | "drop" | "pass"
    ip: str = ""  # DNAT target (dnat only)
    port: int = 0
    masquerade: bool = False  # SNAT to the node on the way out


@dataclass(frozen=True)
class _Match:
    kind: str
    negate: bool
    value: str


@dataclass(frozen=True)
class _Rule:
    matches: tuple[_Match, ...]
    target: str  # "" for none
    goto: bool
    options: tuple[tuple[str, str], ...]  # target options
    words: tuple[str, ...]  # the rule as written, after the chain name


@dataclass
class Ruleset:
    """Tables of chains of parsed rules: what restore texts leave in a namespace (see :func:`parse_rules`)."""

    chains: dict[str, dict[str, list[_Rule]]] = field(default_factory=dict)  # table -> chain -> rules
    policies: dict[tuple[str, str], str] = field(default_factory=dict)

    def table(self, name: str) -> dict[str, list[_Rule]]:
        if name not in self.chains:
            self.chains[name] = {c: [] for c in BUILTIN_CHAINS.get(name, ())}
        return self.chains[name]

    def rules(self, table: str, chain: str) -> list[str]:
        """The rules of one chain, as written (without ``-A CHAIN``)."""
        return [" ".join(_q(w) for w in r.words) for r in self.chains.get(table, {}).get(chain, [])]

    def dump(self) -> dict[str, dict[str, list[str]]]:
        """Every table's chains and their rules, as written."""
        return {t: {c: self.rules(t, c) for c in chains} for t, chains in self.chains.items()}

    def save(self) -> str:
        """The tables in ``iptables-save``'s layout (rules as written here, not as the kernel prints them)."""
        out: list[str] = []
        for t, chains in self.chains.items():
            out.append(f"*{t}")
            for c in chains:
                builtin = c in BUILTIN_CHAINS.get(t, ())
                out.append(f":{c} {self.policies.get((t, c), 'ACCEPT') if builtin else '-'} [0:0]")
            out += [f"-A {c} {rule}" for c in chains for rule in self.rules(t, c)]
            out.append("COMMIT")
        return "\n".join(out) + "\n"


def _parse_rule(words: list[str], where: str) -> _Rule:
    matches: list[_Match] = []
    options: list[tuple[str, str]] = []
    target, goto, negate = "", False, False
    i = 0
    while i < len(words):
        w = words[i]
        if w == "!":
            negate = True
            i += 1
            continue
        arg = words[i + 1] if i + 1 < len(words) else None
        if target:
            n = _TARGET_OPTIONS.get(w)
            if n is None or (n and arg is None):
                raise RulesError(f"{where}: target option {w!r} is not modelled")
            options.append((w, arg if n and arg is not None else ""))
            i += 1 + n
            continue
        if w in ("-j", "--jump", "-g", "--goto"):
            if arg is None:
                raise RulesError(f"{where}: {w} needs a target")
            target, goto = arg, w in ("-g", "--goto")
            i += 2
            continue
        if w in ("-m", "--match"):
            if arg not in _MODULES:
                raise RulesError(f"{where}: match module {arg!r} is not modelled")
            i += 2
            continue
        if w in _ADDRESS_OPTIONS:
            if arg is None:
                raise RulesError(f"{where}: {w} needs a value")
            kind = _ADDRESS_OPTIONS[w]
            if kind != "proto":
                try:
                    _net(arg)
                except ValueError:
                    raise RulesError(f"{where}: {arg!r} is not an address or network") from None
            matches.append(_Match(kind, negate, arg))
        elif w in _MATCH_OPTIONS:
            n = _MATCH_OPTIONS[w]
            if n and arg is None:
                raise RulesError(f"{where}: {w} needs a value")
            value = arg if n and arg is not None else ""
            if w in ("--dport", "--destination-port"):
                if not re.fullmatch(r"\d+(:\d+)?", value):
                    raise RulesError(f"{where}: port {value!r} is not modelled")
                matches.append(_Match("dport", negate, value))
            elif w in ("--dst-type", "--src-type"):
                if value != "LOCAL":
                    raise RulesError(f"{where}: address type {value!r} is not modelled")
                matches.append(_Match("local-" + w[2:5], negate, value))
            elif w in ("--ctstate", "--state"):
                matches.append(_Match("ctstate", negate, value))
            elif w == "--mark":
                matches.append(_Match("mark", negate, value))
            elif w == "--mode":
                if value != "random":
                    raise RulesError(f"{where}: statistic mode {value!r} is not modelled")
                matches.append(_Match("random", negate, value))
            elif w in ("--rcheck", "--update"):
                matches.append(_Match("recent", negate, value))
            # --comment, --probability, --name, --seconds, --mask, --set, --reap, --rsource: no effect
            # on the first packet's fate beyond the either-way matches above.
            i += 1 + n
            negate = False
            continue
        else:
            raise RulesError(f"{where}: option {w!r} is not modelled")
        negate = False
        i += 2
    return _Rule(tuple(matches), target, goto, tuple(options), tuple(words))


def parse_rules(text: str, base: Ruleset | None = None) -> Ruleset:
    """The tables a restore text leaves (under ``--noflush``, onto ``base`` or a fresh namespace).

    Raises :class:`RulesError` for what iptables-restore refuses (a rule in an undeclared chain, a jump
    to a missing chain, deleting a chain still referenced or not empty) and for options not modelled.
    """
    rs = (
        Ruleset({t: {c: list(r) for c, r in cs.items()} for t, cs in base.chains.items()}, dict(base.policies))
        if base
        else Ruleset()
    )
    name = ""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"line {n}"
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            name = line[1:]
            rs.table(name)
            continue
        if not name:
            raise RulesError(f"{where}: no table selected")
        table = rs.table(name)
        if line == "COMMIT":
            _check_targets(table, name)
            name = ""
        elif line.startswith(":"):
            chain, policy = [*line[1:].split(), "-"][:2]
            if chain in BUILTIN_CHAINS.get(name, ()):
                if policy != "-":
                    rs.policies[(name, chain)] = policy
            else:
                table[chain] = []  # declared chains are created, or flushed when they exist
        else:
            words = _split(line)
            op, rest = words[0], words[1:]
            if not rest:
                raise RulesError(f"{where}: {op} needs a chain")
            chain = rest[0]
            if op in ("-N", "--new-chain"):
                table.setdefault(chain, [])
                continue
            if chain not in table:
                raise RulesError(f"{where}: no chain {chain!r} in table {name}")
            if op in ("-A", "--append"):
                table[chain].append(_parse_rule(rest[1:], where))
            elif op in ("-I", "--insert"):
                pos, spec = (int(rest[1]), rest[2:]) if len(rest) > 1 and rest[1].isdigit() else (1, rest[1:])
                table[chain].insert(pos - 1, _parse_rule(spec, where))
            elif op in ("-D", "--delete"):
                idx = next((i for i, r in enumerate(table[chain]) if r.words == tuple(rest[1:])), None)
                if idx is None:
                    raise RulesError(f"{where}: no such rule in {chain}")
                del table[chain][idx]
            elif op in ("-F", "--flush"):
                table[chain] = []
            elif op in ("-X", "--delete-chain"):
                if chain in BUILTIN_CHAINS.get(name, ()):
                    raise RulesError(f"{where}: cannot delete built-in chain {chain}")
                if table[chain]:
                    raise RulesError(f"{where}: chain {chain} is not empty")
                if any(r.target == chain for rules in table.values() for r in rules):
                    raise RulesError(f"{where}: chain {chain} is still referenced")
                del table[chain]
            else:
                raise RulesError(f"{where}: command {op!r} is not modelled")
    if name:
        raise RulesError(f"table {name} has no COMMIT")
    return rs


def _check_targets(table: dict[str, list[_Rule]], name: str) -> None:
    for chain, rules in table.items():
        for r in rules:
            if r.target and r.target not in TARGETS and r.target not in table:
                raise RulesError(f"table {name}: {chain} jumps to missing chain {r.target!r}")


@dataclass(frozen=True)
class _State:
    src: IPAddress
    dst: IPAddress
    proto: str
    dport: int
    mark: int = 0
    dnat: bool = False
    masquerade: bool = False


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text.strip(), strict=False)


def _in(address: IPAddress, text: str) -> bool:
    net = _net(text)
    return net.version == address.version and address in net


def _mark_value(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    return int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF


class _Interpreter:
    def __init__(self, rs: Ruleset, local: tuple[IPAddress, ...]) -> None:
        self.rs = rs
        self.local = local

    def is_local(self, address: IPAddress) -> bool:
        return address.is_loopback or address in self.local

    def _test(self, m: _Match, st: _State) -> bool | str:
        if m.kind in ("random", "recent"):
            return _BRANCH
        if m.kind == "proto":
            hit = m.value.lower() in ("all", st.proto.lower())
        elif m.kind == "src":
            hit = _in(st.src, m.value)
        elif m.kind == "dst":
            hit = _in(st.dst, m.value)
        elif m.kind == "dport":
            lo, _, hi = m.value.partition(":")
            hit = int(lo) <= st.dport <= int(hi or lo)
        elif m.kind == "local-dst":
            hit = self.is_local(st.dst)
        elif m.kind == "local-src":
            hit = self.is_local(st.src)
        elif m.kind == "ctstate":
            states = {"NEW"} | ({"DNAT"} if st.dnat else set())
            hit = bool(states & set(m.value.split(",")))
        elif m.kind == "mark":
            value, mask = _mark_value(m.value)
            hit = st.mark & mask == value
        else:
            raise RulesError(f"match {m.kind!r} is not modelled")
        return hit != m.negate

    def _matches(self, rule: _Rule, st: _State) -> bool | str:
        result: bool | str = True
        for m in rule.matches:
            hit = self._test(m, st)
            if hit is False:
                return False
            if hit == _BRANCH:
                result = _BRANCH
        return result

    def walk(self, table: str, chain: str, start: int, st: _State, depth: int) -> list[tuple[str, _State]]:
        """Run ``chain`` from rule ``start``: (verdict, state) for every way it can go; "return" falls off."""
        if depth > _MAX_DEPTH:
            raise RulesError(f"table {table}: jumps nested deeper than {_MAX_DEPTH} (a loop?)")
        rules = self.rs.chains.get(table, {}).get(chain, [])
        out: list[tuple[str, _State]] = []
        i = start
        while i < len(rules):
            rule = rules[i]
            hit = self._matches(rule, st)
            if hit is False:
                i += 1
                continue
            results = self._apply(table, rule, st, depth)
            if hit is True and len(results) == 1 and results[0][0] == "continue":
                st = results[0][1]
                i += 1
                continue
            for verdict, after in results:
                if verdict == "continue":
                    out += self.walk(table, chain, i + 1, after, depth)
                else:
                    out.append((verdict, after))
            if hit is True:
                return out
            i += 1  # either way: the rule did not match on this branch
        out.append(("return", st))
        return out

    def _apply(self, table: str, rule: _Rule, st: _State, depth: int) -> list[tuple[str, _State]]:
        t, opts = rule.target, dict(rule.options)
        if not t:
            return [("continue", st)]
        if t == "RETURN":
            return [("return", st)]
        if t in ("ACCEPT", "DROP", "REJECT"):
            return [(t.lower(), st)]
        if t == "MARK":
            return [("continue", replace(st, mark=_marked(st.mark, opts)))]
        if t == "DNAT":
            if table != "nat":
                raise RulesError("DNAT outside the nat table")
            ip, port = _destination(opts.get("--to-destination", ""), st.dport)
            return [("accept", replace(st, dst=ip, dport=port, dnat=True))]
        if t == "MASQUERADE":
            return [("accept", replace(st, masquerade=True))]
        results = self.walk(table, t, 0, st, depth + 1)
        if rule.goto:
            return results
        return [("continue" if v == "return" else v, s) for v, s in results]

    def hook(self, table: str, chain: str, st: _State) -> list[tuple[str, _State]]:
        policy = self.rs.policies.get((table, chain), "ACCEPT").lower()
        return [(policy if v == "return" else v, s) for v, s in self.walk(table, chain, 0, st, 0)]


def _marked(mark: int, opts: dict[str, str]) -> int:
    if "--or-mark" in opts:
        return mark | int(opts["--or-mark"], 0)
    if "--xor-mark" in opts:
        return mark ^ int(opts["--xor-mark"], 0)
    if "--and-mark" in opts:
        return mark & int(opts["--and-mark"], 0)
    if "--set-xmark" in opts:
        value, mask = _mark_value(opts["--set-xmark"])
        return (mark & ~mask & 0xFFFFFFFF) ^ value
    if "--set-mark" in opts:
        value, mask = _mark_value(opts["--set-mark"])
        return (mark & ~mask & 0xFFFFFFFF) | value
    raise RulesError("MARK without a mark operation")


def _destination(text: str, dport: int) -> tuple[IPAddress, int]:
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?|([0-9a-fA-F:]+)", text)
    if m is None or not text:
        raise RulesError(f"DNAT destination {text!r} is not understood")
    ip = m.group(1) or m.group(3) or m.group(5)
    port = m.group(2) or m.group(4)
    return ipaddress.ip_address(ip), int(port) if port else dport


def _outcome(verdict: str, st: _State) -> Outcome:
    if verdict in ("drop", "reject"):
        return Outcome(verdict)
    if st.dnat:
        return Outcome("dnat", st.dst.compressed, st.dport, st.masquerade)
    return Outcome("pass", masquerade=st.masquerade)


def evaluate_rules(rules: str | Ruleset, packet: Packet, local_addresses: Iterable[str] = ()) -> frozenset[Outcome]:
    """Every way the rules can treat the first packet of ``packet``'s connection.

    ``local_addresses`` are the node's own addresses (``-m addrtype LOCAL``, and whether a packet
    is delivered locally or forwarded); loopback addresses are always local.  Packets from
    ``origin="node"`` take the output path, others arrive from an interface.
    """
    rs = rules if isinstance(rules, Ruleset) else parse_rules(rules)
    local = tuple(ipaddress.ip_address(a.strip()) for a in local_addresses)
    interp = _Interpreter(rs, local)
    start = _State(
        ipaddress.ip_address(packet.src.strip()),
        ipaddress.ip_address(packet.dst.strip()),
        packet.protocol.lower(),
        packet.dport,
    )
    outcomes: set[Outcome] = set()

    def stage(states: list[_State], table: str, chain: str) -> Iterator[_State]:
        for st in states:
            for verdict, after in interp.hook(table, chain, st):
                if verdict in ("drop", "reject"):
                    outcomes.add(_outcome(verdict, after))
                else:
                    yield after

    if packet.origin == "node":
        states = list(stage([start], "nat", "OUTPUT"))
        states = list(stage(states, "filter", "OUTPUT"))
        for st in stage(states, "nat", "POSTROUTING"):
            outcomes.add(_outcome("accept", st))
        return frozenset(outcomes)
    for st in stage([start], "nat", "PREROUTING"):
        if interp.is_local(st.dst):
            for delivered in stage([st], "filter", "INPUT"):
                outcomes.add(_outcome("accept", delivered))
        else:
            forwarded = list(stage([st], "filter", "FORWARD"))
            for out in stage(forwarded, "nat", "POSTROUTING"):
                outcomes.add(_outcome("accept", out))
    return frozenset(outcomes)

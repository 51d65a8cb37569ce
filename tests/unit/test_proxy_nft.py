"""The flat nftables proxy compiler: generated text, its table model, partial = full, and the oracle.

The golden-ish tests read the generated script for small snapshots.  The properties check, for random
snapshots, that an element-level partial update applied to a full load equals the full load of the
new snapshot (through the module's interpreter, which refuses what the kernel refuses), that so does
every step of a random sequence of snapshots fed to one incremental :class:`Compiled`, and that the
compiled table routes each packet as the reference evaluator (``proxy.evaluate``) says.  A benchmark
(``KUBEWIRE_NFT_BENCH=1``) prints the cost of one update at 10,000 services; nothing asserts speed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubewire.dataplane.proxy import nft as nft_module
from kubewire.dataplane.proxy.evaluate import Packet, evaluate
from kubewire.dataplane.proxy.model import Endpoint, NodeContext, ProxySnapshot, ServicePort
from kubewire.dataplane.proxy.nft import (
    TABLE,
    Compiled,
    NftScriptError,
    NftState,
    Table,
    full_ruleset,
    partial_update,
    state_of,
)

NODE = NodeContext("node-a", zone="z1", addresses=("172.18.0.2",), pod_cidrs=("10.244.0.0/16",))
NODE6 = NodeContext("node-a", zone="z1", addresses=("fc00:f853:ccd:e793::2",), pod_cidrs=("fd00:10:244::/56",))
W = f"ip {TABLE}"


def ep(ip: str, port: int = 8080, node: str = "node-a", **kw: Any) -> Endpoint:
    return Endpoint(ip, port, node=node, **kw)


def sp(name: str, cluster_ip: str = "10.96.0.5", port: int = 80, protocol: str = "TCP", **kw: Any) -> ServicePort:
    return ServicePort("default", name, "", protocol, port, cluster_ips=(cluster_ip,), **kw)


def snap(*services: ServicePort, family: int = 4, node: NodeContext | None = None) -> ProxySnapshot:
    return ProxySnapshot(family, node or (NODE if family == 4 else NODE6), tuple(services))


def table(source: str | ProxySnapshot, family: str = "ip") -> Table:
    return state_of(source).table(family)


# --- golden-ish: the generated text ---------------------------------------------------------------


def test_full_ruleset_replaces_the_table_atomically() -> None:
    lines = full_ruleset(snap()).splitlines()
    assert lines[1:4] == [f"add table {W}", f"delete table {W}", f"add table {W}"]
    assert f"add chain {W} nat_prerouting {{ type nat hook prerouting priority -100 ; policy accept ; }}" in lines
    assert f"add rule {W} services ip daddr . meta l4proto . th dport vmap @service_ips" in lines
    assert f"add rule {W} services ip daddr @nodeport_ips meta l4proto . th dport vmap @service_nodeports" in lines
    assert f"add rule {W} masquerading masquerade fully-random" in lines
    assert f"add element {W} nodeport_ips {{ 172.18.0.2 }}" in lines
    assert f"add element {W} pod_cidrs {{ 10.244.0.0/16 }}" in lines
    assert not [line for line in lines if line.startswith("add chain") and "_1" in line]  # no services, no lb chains


def test_cluster_ip_with_one_endpoint() -> None:
    text = full_ruleset(snap(sp("a", endpoints=(ep("10.244.1.2"),))))
    assert f"add element {W} service_ips {{ 10.96.0.5 . tcp . 80 : goto svc_1 }}" in text
    assert f"add element {W} backends_tcp {{ 10.96.0.5 . 80 . 0 : 10.244.1.2 . 8080 }}" in text
    assert f"add element {W} cluster_ips {{ 10.96.0.5 }}" in text
    assert f"add element {W} hairpin {{ 10.244.1.2 . 10.244.1.2 }}" in text
    t = table(text)
    assert t.rules["svc_1"] == [
        "ip saddr != @pod_cidrs meta mark set meta mark | 0x00004000",
        "ip daddr . meta l4proto . th dport @affinity_ips dnat ip to ip saddr . ip daddr . meta l4proto . th dport map @affinity",
        "meta l4proto tcp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends_tcp",
        "meta l4proto udp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends_udp",
        "meta l4proto sctp dnat ip to ip daddr . th dport . numgen random mod 1 map @backends_sctp",
    ]


def test_cluster_ip_with_three_endpoints_indexes_them_in_order() -> None:
    endpoints = (ep("10.244.1.4"), ep("10.244.1.2", node="node-b"), ep("10.244.2.3", 9090))
    t = table(snap(sp("a", endpoints=endpoints)))
    assert t.elements["service_ips"] == {"10.96.0.5 . tcp . 80": "goto svc_3"}
    assert t.elements["backends_tcp"] == {
        "10.96.0.5 . 80 . 0": "10.244.1.2 . 8080",
        "10.96.0.5 . 80 . 1": "10.244.1.4 . 8080",
        "10.96.0.5 . 80 . 2": "10.244.2.3 . 9090",
    }
    assert "meta l4proto tcp dnat ip to ip daddr . th dport . numgen random mod 3 map @backends_tcp" in t.rules["svc_3"]


def test_no_pod_cidrs_means_no_cluster_ip_masquerade() -> None:
    t = table(snap(sp("a", endpoints=(ep("10.244.1.2"),)), node=NodeContext("node-a", addresses=("172.18.0.2",))))
    assert not [r for r in t.rules["svc_1"] if "pod_cidrs" in r]


def test_node_port() -> None:
    t = table(snap(sp("a", endpoints=(ep("10.244.1.2"), ep("10.244.1.3")), node_port=30080)))
    assert t.elements["service_nodeports"] == {"tcp . 30080": "goto np_2"}
    assert t.elements["nodeport_backends_tcp"] == {"30080 . 0": "10.244.1.2 . 8080", "30080 . 1": "10.244.1.3 . 8080"}
    assert t.rules["np_2"][0] == "meta mark set meta mark | 0x00004000"  # external traffic, Cluster policy
    assert "meta l4proto tcp dnat ip to th dport . numgen random mod 2 map @nodeport_backends_tcp" in t.rules["np_2"]
    assert t.elements["nodeport_ips"] == {"172.18.0.2": ""}


def test_load_balancer_with_source_ranges() -> None:
    lb = sp(
        "a",
        endpoints=(ep("10.244.1.2"),),
        load_balancer_ips=("172.18.255.200",),
        source_ranges=("10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/16"),
    )
    t = table(snap(lb))
    assert t.elements["service_ips"]["172.18.255.200 . tcp . 80"] == "goto ext_1"
    assert t.elements["backends_tcp"]["172.18.255.200 . 80 . 0"] == "10.244.1.2 . 8080"
    assert t.elements["firewall_ips"] == {"172.18.255.200 . tcp . 80": ""}
    assert set(t.elements["firewall_allow"]) == {  # overlapping ranges merged: the kernel refuses overlaps
        "172.18.255.200 . tcp . 80 . 10.0.0.0/8",
        "172.18.255.200 . tcp . 80 . 192.168.0.0/16",
    }
    assert t.rules["firewall_check"] == [
        "ip daddr . meta l4proto . th dport @firewall_ips ip daddr . meta l4proto . th dport . ip saddr != @firewall_allow drop"
    ]
    assert t.rules["ext_1"][0] == "meta mark set meta mark | 0x00004000"
    # A range holding the node's primary address lets the VIP itself in as a source (the node's own traffic).
    node_range = table(snap(dataclasses.replace(lb, source_ranges=("172.18.0.0/16",))))
    assert set(node_range.elements["firewall_allow"]) == {"172.18.255.200 . tcp . 80 . 172.18.0.0/16"}
    node_range = table(snap(dataclasses.replace(lb, source_ranges=("172.18.0.0/24",))))
    assert set(node_range.elements["firewall_allow"]) == {
        "172.18.255.200 . tcp . 80 . 172.18.0.0/24",
        "172.18.255.200 . tcp . 80 . 172.18.255.200/32",
    }


def test_external_traffic_policy_local() -> None:
    local = sp(
        "a",
        endpoints=(ep("10.244.1.2"), ep("10.244.2.2", node="node-b")),
        load_balancer_ips=("172.18.255.200",),
        node_port=30080,
        external_policy_local=True,
    )
    t = table(snap(local))
    assert t.elements["service_ips"] == {
        "10.96.0.5 . tcp . 80": "goto svc_2",
        "172.18.255.200 . tcp . 80": "goto extl_1",
    }
    assert t.elements["backends_tcp"]["172.18.255.200 . 80 . 0"] == "10.244.1.2 . 8080"
    assert "172.18.255.200 . 80 . 1" not in t.elements["backends_tcp"]
    assert t.elements["short_ips"] == {"172.18.255.200 . tcp . 80": "goto short_2"}
    assert len([k for k in t.elements["short_backends_tcp"] if k.startswith("172.18.255.200 ")]) == 2
    assert t.elements["service_nodeports"] == {"tcp . 30080": "goto npl_1"}
    assert t.elements["short_nodeports"] == {"tcp . 30080": "goto npshort_2"}
    assert t.rules["extl_1"][:3] == [
        "ip saddr @pod_cidrs ip daddr . meta l4proto . th dport vmap @short_ips",
        "fib saddr type local meta mark set meta mark | 0x00004000",
        "fib saddr type local ip daddr . meta l4proto . th dport vmap @short_ips",
    ]
    assert not [r for r in t.rules["extl_1"] if r.startswith("meta mark set")]  # the client source is kept
    # No endpoint on this node: external clients are dropped, pods and the node still short-circuit.
    elsewhere = table(snap(dataclasses.replace(local, endpoints=(ep("10.244.2.2", node="node-b"),))))
    assert elsewhere.elements["service_ips"]["172.18.255.200 . tcp . 80"] == "goto extl_0"
    assert elsewhere.rules["extl_0"][-1] == "drop"
    assert elsewhere.elements["short_ips"] == {"172.18.255.200 . tcp . 80": "goto short_1"}
    assert elsewhere.elements["service_nodeports"] == {"tcp . 30080": "goto npl_0"}


def test_no_endpoints_reject_and_local_internal_policy_drops() -> None:
    t = table(
        snap(
            sp("a", node_port=30080),
            sp("b", "10.96.0.6", endpoints=(ep("10.244.2.2", node="node-b"),), internal_policy_local=True),
            sp("c", "10.96.0.7", endpoints=(ep("10.244.2.2", ready=False, serving=False),)),
        )
    )
    assert t.elements["no_endpoint_services"] == {
        "10.96.0.5 . tcp . 80": "goto reject_chain",
        "10.96.0.6 . tcp . 80": "drop",
        "10.96.0.7 . tcp . 80": "goto reject_chain",
    }
    assert t.elements["no_endpoint_nodeports"] == {"tcp . 30080": "goto reject_chain"}
    assert t.elements["service_ips"] == {}
    assert t.rules["reject_chain"] == [
        "meta l4proto tcp reject with tcp reset",
        "reject with icmp type port-unreachable",
    ]
    assert t.rules["filter_prerouting"] == ["ct state new jump firewall_check", "ct state new jump endpoints_check"]
    assert t.rules["cluster_ips_check"] == ["ip daddr @cluster_ips goto reject_chain", "ip daddr @service_cidrs drop"]


def test_session_affinity_chains_per_timeout_not_per_service() -> None:
    t = table(
        snap(
            sp("a", endpoints=(ep("10.244.1.2"),), affinity_timeout=10800, node_port=30080),
            sp("b", "10.96.0.6", endpoints=(ep("10.244.1.2"),), affinity_timeout=10800),
            sp("c", "10.96.0.7", endpoints=(ep("10.244.1.2"),), affinity_timeout=30),
        )
    )
    assert t.elements["affinity_ips"] == {
        "10.96.0.5 . tcp . 80": "goto affinity_10800",
        "10.96.0.6 . tcp . 80": "goto affinity_10800",
        "10.96.0.7 . tcp . 80": "goto affinity_30",
    }
    assert t.elements["affinity_nodeports"] == {"tcp . 30080": "goto affinity_10800"}
    assert sorted(c for c in t.chains if c.startswith("affinity_")) == [
        "affinity_10800",
        "affinity_30",
        "affinity_record",
    ]
    assert t.rules["affinity_30"][0] == (
        "meta l4proto tcp update @affinity { ip saddr . ct original ip daddr . meta l4proto . "
        "ct original proto-dst timeout 30s : ip daddr . th dport }"
    )
    assert t.sets["affinity"][1].endswith("flags dynamic,timeout ; size 1048576 ;")
    assert t.rules["nat_postrouting"][0] == "jump affinity_record"


def test_ipv6() -> None:
    t = table(
        snap(
            sp(
                "a",
                "fd00:10:96:0::5",
                endpoints=(ep("fd00:10:244:1:0::2"),),
                node_port=30080,
                affinity_timeout=60,
            ),
            sp("b", "fd00:10:96::6"),
            family=6,
        ),
        "ip6",
    )
    assert t.elements["service_ips"] == {"fd00:10:96::5 . tcp . 80": "goto svc_1"}
    assert t.elements["backends_tcp"] == {"fd00:10:96::5 . 80 . 0": "fd00:10:244:1::2 . 8080"}
    assert t.elements["nodeport_ips"] == {"fc00:f853:ccd:e793::2": ""}
    assert t.elements["no_endpoint_services"] == {"fd00:10:96::6 . tcp . 80": "goto reject_chain"}
    assert t.rules["reject_chain"][1] == "reject with icmpv6 type port-unreachable"
    assert t.rules["svc_1"][0] == "ip6 saddr != @pod_cidrs meta mark set meta mark | 0x00004000"
    assert t.sets["backends_tcp"] == (
        "map",
        "typeof ip6 daddr . th dport . numgen random mod 1 : ip6 daddr . tcp dport ;",
    )
    # nft 1.0.6 cannot update a map keyed by an IPv6 client from the packet path: no affinity in ip6.
    assert "affinity" not in t.sets
    assert not [c for c in t.chains if c.startswith("affinity")]
    assert full_ruleset(snap(family=6)).splitlines()[1] == f"add table ip6 {TABLE}"


def test_sctp_and_udp() -> None:
    t = table(
        snap(
            sp("a", port=9, protocol="SCTP", endpoints=(ep("10.244.1.2", 9),), node_port=30009),
            sp("a", port=53, protocol="UDP", endpoints=(ep("10.244.1.2", 53),)),
        )
    )
    assert t.elements["service_ips"] == {"10.96.0.5 . sctp . 9": "goto svc_1", "10.96.0.5 . udp . 53": "goto svc_1"}
    assert t.elements["backends_sctp"] == {"10.96.0.5 . 9 . 0": "10.244.1.2 . 9"}
    assert t.elements["backends_udp"] == {"10.96.0.5 . 53 . 0": "10.244.1.2 . 53"}
    assert t.elements["nodeport_backends_sctp"] == {"30009 . 0": "10.244.1.2 . 9"}
    assert "meta l4proto sctp dnat ip to th dport . numgen random mod 1 map @nodeport_backends_sctp" in t.rules["np_1"]


def test_first_service_port_claims_a_shared_address() -> None:
    a = sp("a", endpoints=(ep("10.244.1.2"),), external_ips=("172.18.255.9",))
    b = sp("b", "10.96.0.6", endpoints=(ep("10.244.1.3"),), external_ips=("172.18.255.9",))
    t = table(snap(a, b))
    assert t.elements["backends_tcp"]["172.18.255.9 . 80 . 0"] == "10.244.1.2 . 8080"
    verdict = evaluate(snap(a, b), Packet("192.168.1.1", "172.18.255.9", "TCP", 80, "external"))
    assert [e.ip for e in verdict.endpoints] == ["10.244.1.2"]


def _shape(services: int, endpoints_each: int = 0) -> ProxySnapshot:
    """``services`` service ports cycling through ten shapes (endpoint counts 1–3, or ``endpoints_each``;
    every kind of frontend)."""
    out = []
    for i in range(services):
        n = endpoints_each or i % 3 + 1
        endpoints = tuple(ep(f"10.{244 + i // 60000}.{i // 250 % 250}.{i % 250 + 1}", 8080 + j) for j in range(n))
        kind = i % 10
        out.append(
            sp(
                f"s{i:05d}",
                f"10.96.{i // 250}.{i % 250 + 1}",
                endpoints=endpoints,
                node_port=30000 + i % 2700 if kind in (1, 2, 7) else 0,
                load_balancer_ips=(f"172.19.{i // 250}.{i % 250 + 1}",) if kind in (2, 3, 8) else (),
                source_ranges=("10.0.0.0/8",) if kind == 3 else (),
                external_policy_local=kind in (7, 8),
                affinity_timeout=300 if kind == 4 else 0,
            )
        )
    return snap(*out)


def test_chain_count_does_not_grow_with_services() -> None:
    small, large = table(_shape(30)), table(_shape(3000))
    assert len(large.elements["service_ips"]) > 50 * len(small.elements["service_ips"]) / 2
    assert sorted(small.chains) == sorted(large.chains)
    assert len(small.chains) == len(large.chains) < 60


def test_snapshot_state_equals_interpreted_script() -> None:
    for s in (_shape(40), snap(), snap(sp("a", "fd00::5", endpoints=(ep("fd00::9"),)), family=6)):
        assert state_of(full_ruleset(s)) == state_of(s)


def test_partial_update_is_element_level() -> None:
    old = snap(sp("a", endpoints=(ep("10.244.1.2"), ep("10.244.1.3"))), sp("b", "10.96.0.6"))
    new = snap(sp("a", endpoints=(ep("10.244.1.2"), ep("10.244.1.3"), ep("10.244.1.4"))))
    script = partial_update(old, new)
    lines = script.splitlines()[1:]
    assert lines[0] == f"add chain {W} svc_3"
    assert f"delete element {W} service_ips {{ 10.96.0.5 . tcp . 80 }}" in lines
    assert f"add element {W} service_ips {{ 10.96.0.5 . tcp . 80 : goto svc_3 }}" in lines
    assert f"add element {W} backends_tcp {{ 10.96.0.5 . 80 . 2 : 10.244.1.4 . 8080 }}" in lines
    assert f"delete element {W} no_endpoint_services {{ 10.96.0.6 . tcp . 80 }}" in lines
    assert lines[-1] == f"delete chain {W} svc_2"
    assert not [line for line in lines if "backends_tcp { 10.96.0.5 . 80 . 0" in line]  # unchanged: untouched
    assert "delete table" not in script and "flush" not in script
    assert state_of(script, state_of(full_ruleset(old))) == state_of(new)
    assert partial_update(new, new) == ""


def test_partial_update_falls_back_to_full_when_chain_rules_change() -> None:
    old = snap(sp("a", endpoints=(ep("10.244.1.2"),)), node=NodeContext("node-a", addresses=("172.18.0.2",)))
    new = snap(sp("a", endpoints=(ep("10.244.1.2"),)))  # the node learns its pod CIDRs: svc_1 gains a rule
    script = partial_update(old, new)
    assert f"delete table {W}" in script
    assert state_of(script, state_of(full_ruleset(old))) == state_of(new)


def test_affinity_is_flushed_only_when_an_entry_may_go_stale() -> None:
    one = (ep("10.244.1.2"),)
    two = (ep("10.244.1.2"), ep("10.244.1.3"))
    flush = f"flush map {W} affinity"
    assert flush not in partial_update(
        snap(sp("a", endpoints=one, affinity_timeout=60)), snap(sp("a", endpoints=two, affinity_timeout=60))
    )
    assert flush in partial_update(
        snap(sp("a", endpoints=two, affinity_timeout=60)), snap(sp("a", endpoints=one, affinity_timeout=60))
    )
    assert flush in partial_update(snap(sp("a", endpoints=two, affinity_timeout=60)), snap(sp("a", endpoints=two)))
    assert flush not in partial_update(snap(sp("a", endpoints=two)), snap(sp("a", endpoints=one)))  # fmt: skip


def _check(script: str, state: NftState, new: ProxySnapshot, compiled: Compiled) -> NftState:
    """``script`` (from ``compiled.update(new)``) applied onto ``state``; checks it equals a full load."""
    after = state_of(script, state)
    assert after == state_of(full_ruleset(new))
    assert state_of(compiled.full()) == after
    return after


def test_compiled_update_recompiles_only_the_changed_service_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    base = _shape(300)
    compiled = Compiled(base)
    state = state_of(compiled.full())
    assert state == state_of(base)
    seen: list[str] = []
    real = nft_module.categorize

    def counting(s: ServicePort, node: NodeContext) -> Any:
        seen.append(s.key)
        return real(s, node)

    monkeypatch.setattr(nft_module, "categorize", counting)
    services = list(base.services)
    services[7] = dataclasses.replace(services[7], endpoints=(ep("10.244.77.7"),))
    removed = services.pop(20)
    services.append(sp("zz-new", "10.96.200.1", endpoints=(ep("10.244.77.8"),), node_port=32000))
    new = snap(*services)
    script = compiled.update(new)
    assert sorted(set(seen)) == ["default/s00007", "default/zz-new"]
    state = _check(script, state, new, compiled)
    assert f"10.96.0.{21} . tcp . 80" not in state.table().elements["service_ips"], removed
    # Rebuilt but equal objects are compared, not recompiled; the ``changed`` hint skips even that.
    seen.clear()
    rebuilt = snap(*(dataclasses.replace(s) for s in new.services))
    assert compiled.update(rebuilt) == ""
    assert seen == []
    services = [dataclasses.replace(s) for s in rebuilt.services]
    services[3] = dataclasses.replace(services[3], endpoints=())
    script = compiled.update(snap(*services), changed={"default/s00003"})
    assert seen == ["default/s00003"]
    _check(script, state, snap(*services), compiled)


def test_compiled_update_hands_a_shared_frontend_to_the_next_claimant() -> None:
    a = sp("a", endpoints=(ep("10.244.1.2"),), external_ips=("172.18.255.9",), affinity_timeout=60)
    b = sp("b", "10.96.0.6", endpoints=(ep("10.244.1.3"),), external_ips=("172.18.255.9",))
    compiled = Compiled(snap(a, b))
    state = state_of(compiled.full())
    owner = []
    for step in (snap(b), snap(a, b), snap(b, a), snap(b), snap(a, b)):  # removal, addition, reordering
        script = compiled.update(step)
        assert "delete table" not in script
        state = state_of(script, state)
        assert state == state_of(step)
        owner.append(state.table().elements["backends_tcp"]["172.18.255.9 . 80 . 0"].split(" . ")[0])
    assert owner == ["10.244.1.3", "10.244.1.2", "10.244.1.3", "10.244.1.3", "10.244.1.2"]


def test_compiled_update_keeps_service_ports_sharing_a_key_apart() -> None:
    # Malformed but possible input: one key, several ports (same or different protocols).
    udp = sp("a", port=53, protocol="UDP", endpoints=(ep("10.244.1.2", 53),))
    tcp = sp("a", port=53, endpoints=(ep("10.244.1.2", 53),))
    other = sp("a", port=54, endpoints=(ep("10.244.1.3", 54),))
    compiled = Compiled(snap(udp, tcp, other))
    state = state_of(compiled.full())
    for step in (snap(tcp, other), snap(udp, tcp, other, tcp), snap(other), snap(udp, other), snap()):
        state = _check(compiled.update(step, changed={"default/a"}), state, step, compiled)


def test_compiled_update_node_family_and_failure_fallbacks() -> None:
    one = snap(sp("a", endpoints=(ep("10.244.1.2"),)))
    compiled = Compiled(one)
    state = state_of(compiled.full())
    moved = snap(
        sp("a", endpoints=(ep("10.244.1.2"),)), node=NodeContext("node-a", "z1", ("172.18.0.3",), NODE.pod_cidrs)
    )
    script = compiled.update(moved)  # a node change compares whole tables; the chains stay, so elements only
    assert "delete table" not in script and f"add element {W} nodeport_ips {{ 172.18.0.3 }}" in script
    state = state_of(script, state)
    assert state == state_of(moved)
    v6 = snap(sp("a", "fd00::5", endpoints=(ep("fd00::9"),)), family=6)
    assert compiled.update(v6) == full_ruleset(v6)
    with pytest.raises(ValueError):
        compiled.update(snap(sp("a", "fd00::6"), sp("b", "fd00::7", external_ips=("fd00::zz",)), family=6))
    with pytest.raises(RuntimeError):
        compiled.full()  # a failed update leaves nothing to trust
    assert compiled.update(v6) == full_ruleset(v6)  # and the next update reloads
    assert compiled.update(v6) == ""


def test_interpreter_refuses_what_the_kernel_refuses() -> None:
    base = state_of(full_ruleset(snap(sp("a", endpoints=(ep("10.244.1.2"),)))))
    bad = {
        "missing element": f"delete element {W} service_ips {{ 10.96.0.9 . tcp . 80 }}",
        "busy chain": f"delete chain {W} svc_1",
        "conflicting value": f"add element {W} service_ips {{ 10.96.0.5 . tcp . 80 : drop }}",
        "dangling goto": f"add element {W} service_ips {{ 10.96.0.8 . tcp . 80 : goto svc_7 }}",
        "unknown set": f"add rule {W} services ip daddr @nope drop",
        "no table": f"add element ip6 {TABLE} cluster_ips {{ fd00::1 }}",
    }
    for what, line in bad.items():
        with pytest.raises(NftScriptError):
            state_of(f"{line}\n", base)
        assert base == state_of(full_ruleset(snap(sp("a", endpoints=(ep("10.244.1.2"),))))), what
    assert (
        state_of(f"add element {W} service_ips {{ 10.96.0.5 . tcp . 80 : goto svc_1 }}\n", base) == base
    )  # idempotent add
    with pytest.raises(ValueError):
        state_of(snap(), NftState())


# --- properties ---------------------------------------------------------------------------------------

POOLS = {
    4: {
        "cluster": [f"10.96.0.{i}" for i in range(1, 6)],
        "external": ["172.18.255.200", "172.18.255.201", "172.18.0.2"],  # the last is the node's own address
        "endpoints": [f"10.244.1.{i}" for i in range(2, 8)],
        "ranges": ["10.0.0.0/8", "192.168.77.0/24", "172.18.0.0/16", "172.18.255.200/32"],
        "clients": {"external": "192.168.77.1", "pod": "10.244.9.9", "node": "172.18.0.2"},
    },
    6: {
        "cluster": [f"fd00:10:96::{i}" for i in range(1, 6)],
        "external": ["fc00:f853:ccd:e793::c8", "fc00:f853:ccd:e793::c9", "fc00:f853:ccd:e793::2"],
        "endpoints": [f"fd00:10:244:1::{i}" for i in range(2, 8)],
        "ranges": ["fc00::/7", "2001:db8::/32", "fc00:f853:ccd:e793::/64"],
        "clients": {"external": "2001:db8::1", "pod": "fd00:10:244:9::9", "node": "fc00:f853:ccd:e793::2"},
    },
}
NODES = {
    4: [
        NODE,
        NodeContext("node-a", addresses=("172.18.0.2",)),
        dataclasses.replace(NODE, service_cidrs=("10.96.0.0/28",)),  # 10.96.0.1-5 in it; unallocated ones drop
    ],
    6: [
        NODE6,
        NodeContext("node-a", addresses=("fc00:f853:ccd:e793::2",)),
        dataclasses.replace(NODE6, service_cidrs=("fd00:10:96::/112",)),
    ],
}
PORTS = [80, 443, 30080]  # 30080 is also a NodePort number: service-address/NodePort collisions happen


@st.composite
def endpoint_lists(draw: st.DrawFn, family: int) -> tuple[Endpoint, ...]:
    endpoint = st.builds(
        Endpoint,
        ip=st.sampled_from(POOLS[family]["endpoints"]),
        port=st.sampled_from([8080, 8443]),
        ready=st.booleans(),
        serving=st.booleans(),
        terminating=st.booleans(),
        node=st.sampled_from(["node-a", "node-b", ""]),
    )
    found = draw(st.lists(endpoint, max_size=5, unique_by=lambda e: (e.ip, e.port)))
    return tuple(sorted(found))


@st.composite
def service_port(draw: st.DrawFn, family: int, name: str) -> ServicePort:
    pool = POOLS[family]
    lb = tuple(draw(st.lists(st.sampled_from(pool["external"]), max_size=2, unique=True)))
    return ServicePort(
        "default",
        name,
        "",
        draw(st.sampled_from(["TCP", "UDP", "SCTP"])),
        draw(st.sampled_from(PORTS)),
        cluster_ips=(draw(st.sampled_from(pool["cluster"])),),
        node_port=draw(st.sampled_from([0, 0, 30080, 30081])),
        external_ips=tuple(draw(st.lists(st.sampled_from(pool["external"]), max_size=2, unique=True))),
        load_balancer_ips=lb,
        source_ranges=tuple(draw(st.lists(st.sampled_from(pool["ranges"]), max_size=2, unique=True))) if lb else (),
        external_policy_local=draw(st.booleans()),
        internal_policy_local=draw(st.booleans()),
        affinity_timeout=draw(st.sampled_from([0, 0, 10, 10800])),
        endpoints=draw(endpoint_lists(family)),
    )


@st.composite
def snapshots(draw: st.DrawFn, family: int, names: list[str] | None = None) -> ProxySnapshot:
    chosen = names if names is not None else draw(st.lists(st.sampled_from("abcdefg"), max_size=6, unique=True))
    services = [draw(service_port(family, n)) for n in chosen]
    services.sort(key=lambda s: s.key + "/" + s.protocol)
    return ProxySnapshot(family, draw(st.sampled_from(NODES[family])), tuple(services))


@st.composite
def old_and_new(draw: st.DrawFn) -> tuple[ProxySnapshot, ProxySnapshot]:
    family = draw(st.sampled_from([4, 4, 6]))
    old = draw(snapshots(family))
    services = []
    for s in old.services:  # kept, changed endpoints, or removed
        choice = draw(st.sampled_from(["keep", "endpoints", "remove"]))
        if choice == "keep":
            services.append(s)
        elif choice == "endpoints":
            services.append(dataclasses.replace(s, endpoints=draw(endpoint_lists(family))))
    fresh = draw(st.lists(st.sampled_from([n for n in "hijk"]), max_size=3, unique=True))
    services += draw(snapshots(family, fresh)).services
    services.sort(key=lambda s: s.key + "/" + s.protocol)
    node = old.node if draw(st.integers(0, 9)) else draw(st.sampled_from(NODES[family]))
    return old, ProxySnapshot(family, node, tuple(services))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old_and_new())
def test_partial_update_equals_full_sync(pair: tuple[ProxySnapshot, ProxySnapshot]) -> None:
    old, new = pair
    before = state_of(full_ruleset(old))
    after = state_of(partial_update(old, new), before)
    assert after == state_of(full_ruleset(new)) == state_of(new)
    if old.node == new.node:
        assert "delete table" not in partial_update(old, new)


@st.composite
def snapshot_sequences(draw: st.DrawFn) -> tuple[ProxySnapshot, list[tuple[ProxySnapshot, set[str] | None]]]:
    """A first snapshot, then steps each changing some service ports (same objects kept, equal copies,
    new endpoints, new values, removals, additions), sometimes the order or the node; with each step an
    honest ``changed`` hint (plus noise) or none."""
    family = draw(st.sampled_from([4, 4, 6]))
    first = draw(snapshots(family))
    steps: list[tuple[ProxySnapshot, set[str] | None]] = []
    prev = first
    for _ in range(draw(st.integers(1, 6))):
        services = []
        for s in prev.services:
            choice = draw(st.sampled_from(["keep", "keep", "copy", "endpoints", "replace", "remove"]))
            if choice == "keep":
                services.append(s)
            elif choice == "copy":
                services.append(dataclasses.replace(s))
            elif choice == "endpoints":
                services.append(dataclasses.replace(s, endpoints=draw(endpoint_lists(family))))
            elif choice == "replace":
                services.append(draw(service_port(family, s.name)))
        free = [n for n in "abcdefghijk" if n not in {s.name for s in services}]
        fresh = draw(st.lists(st.sampled_from(free), max_size=3, unique=True)) if free else []
        services += draw(snapshots(family, fresh)).services
        services.sort(key=lambda s: s.key + "/" + s.protocol)
        if not draw(st.integers(0, 5)):
            services = list(draw(st.permutations(services)))  # claims follow the snapshot's order, whatever it is
        node = prev.node if draw(st.integers(0, 9)) else draw(st.sampled_from(NODES[family]))
        new = ProxySnapshot(family, node, tuple(services))
        hint: set[str] | None = None
        if draw(st.booleans()):
            before, after = prev.by_key(), new.by_key()
            hint = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
            hint |= set(draw(st.lists(st.sampled_from([f"default/{n}" for n in "abcdefghijk"]), max_size=2)))
        steps.append((new, hint))
        prev = new
    return first, steps


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshot_sequences())
def test_compiled_updates_equal_full_syncs_at_every_step(
    case: tuple[ProxySnapshot, list[tuple[ProxySnapshot, set[str] | None]]],
) -> None:
    first, steps = case
    compiled = Compiled(first)
    state = state_of(compiled.full())
    assert state == state_of(first)
    prev = first
    family = "ip" if first.family == 4 else "ip6"
    for new, hint in steps:
        script = compiled.update(new, hint)
        before, state = state, state_of(script, state)
        assert state == state_of(full_ruleset(new)) == state_of(new)
        if prev.node == new.node:
            assert "delete table" not in script
        if "delete table" not in script:  # affinity entries are invisible here: check the flush decision
            stale = nft_module._affinity_stale(before.table(family), state.table(family))
            assert ("flush map" in script) == stale
        prev = new
    assert state_of(compiled.full()) == state


# --- the compiled table against the reference evaluator --------------------------------------------


def _in(address: str, nets: dict[str, str]) -> bool:
    a = ipaddress.ip_address(address)
    return any(a in ipaddress.ip_network(n) for n in nets)


def _candidates(t: Table, stem: str, proto: str, prefix: str, n: int) -> set[tuple[str, int]]:
    m = t.elements[f"{stem}_{proto}"]
    out = set()
    for i in range(n):
        ip, port = m[f"{prefix} . {i}"].split(" . ")
        out.add((ip, int(port)))
    return out


def route(t: Table, packet: Packet) -> tuple[str, set[tuple[str, int]], bool]:
    """What the compiled table does with a first packet: (action, candidates, masquerade).

    Follows the hooks in the kernel's order and reads chains by their kind (``<kind>_<N>``), whose
    rules the golden tests above pin down."""
    proto, src, dst = packet.protocol.lower(), packet.src, packet.dst
    key, pkey = f"{dst} . {proto} . {packet.dport}", f"{proto} . {packet.dport}"
    local_dst = dst in t.elements["nodeport_ips"]
    el = t.elements
    # filter, before DNAT: firewall, then endpoint checks
    if key in el["firewall_ips"]:
        allowed = {k.rsplit(" . ", 1)[1]: "" for k in el["firewall_allow"] if k.rsplit(" . ", 1)[0] == key}
        if not _in(src, allowed):
            return "drop", set(), False
    verdict = el["no_endpoint_services"].get(key)
    if verdict is None and local_dst:
        verdict = el["no_endpoint_nodeports"].get(pkey)
    if verdict in ("drop", "goto reject_chain"):
        return "drop" if verdict == "drop" else "reject", set(), False
    # nat: dispatch
    by_address = key in el["service_ips"]
    target = el["service_ips"].get(key) or (el["service_nodeports"].get(pkey) if local_dst else None)
    if target is None:
        if dst in el["cluster_ips"]:
            return "reject", set(), False
        return ("drop" if _in(dst, el["service_cidrs"]) else "pass"), set(), False
    kind, n = target.removeprefix("goto ").rsplit("_", 1)
    prefix = f"{dst} . {packet.dport}" if by_address else str(packet.dport)
    pods = bool(el["pod_cidrs"]) and _in(src, el["pod_cidrs"])
    masquerade = False
    if kind in ("extl", "npl"):
        short = el["short_ips" if by_address else "short_nodeports"].get(key if by_address else pkey)
        if packet.origin == "node":
            masquerade = True
        if short is not None and (pods or packet.origin == "node"):
            stem = "short_backends" if by_address else "short_nodeport_backends"
            m = int(short.rsplit("_", 1)[1])
            return "dnat", _candidates(t, stem, proto, prefix, m), masquerade
        if int(n) == 0:
            return "drop", set(), False
    if kind == "svc":
        masquerade = bool(el["pod_cidrs"]) and not pods
    if kind in ("ext", "np"):
        masquerade = True
    stem = "backends" if by_address else "nodeport_backends"
    return "dnat", _candidates(t, stem, proto, prefix, int(n)), masquerade


@st.composite
def snapshot_and_packets(draw: st.DrawFn) -> tuple[ProxySnapshot, list[Packet]]:
    """A snapshot and first packets, most aimed at one of its frontends (address or NodePort)."""
    family = draw(st.sampled_from([4, 4, 6]))
    s = draw(snapshots(family))
    pool = POOLS[family]
    packets = []
    for _ in range(draw(st.integers(1, 8))):
        origin = draw(st.sampled_from(["external", "pod", "node"]))
        target = draw(st.sampled_from(s.services)) if s.services and draw(st.integers(0, 3)) else None
        if target is None:
            dst = draw(st.sampled_from(pool["cluster"] + pool["external"]))
            protocol, port = draw(st.sampled_from(["TCP", "UDP", "SCTP"])), draw(st.sampled_from([*PORTS, 30081]))
        else:
            protocol = target.protocol
            frontends = [
                (ip, target.port) for ip in target.cluster_ips + target.external_ips + target.load_balancer_ips
            ]
            if target.node_port:
                frontends.append((s.node.addresses[0], target.node_port))
            dst, port = draw(st.sampled_from(frontends))
        packets.append(Packet(pool["clients"][origin], dst, protocol, port, origin))
    return s, packets


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshot_and_packets())
def test_compiled_table_agrees_with_the_reference_evaluator(case: tuple[ProxySnapshot, list[Packet]]) -> None:
    s, packets = case
    t = state_of(s).table("ip" if s.family == 4 else "ip6")
    for packet in packets:
        want = evaluate(s, packet)
        action, candidates, masquerade = route(t, packet)
        assert action == want.action, (packet, want.reasons)
        assert candidates == {(e.ip, e.port) for e in want.endpoints}, (packet, want.reasons)
        if action == "dnat":
            assert masquerade == want.masquerade, (packet, want.reasons)


# --- benchmark (printed, never asserted) ----------------------------------------------------------------


@pytest.mark.skipif(os.environ.get("KUBEWIRE_NFT_BENCH") != "1", reason="a benchmark: set KUBEWIRE_NFT_BENCH=1")
def test_bench_compiled_update_at_10000_services() -> None:
    def timed(what: str, fn: Any) -> Any:
        start = time.perf_counter()
        out = fn()
        print(f"  {what}: {(time.perf_counter() - start) * 1000:.1f} ms")
        return out

    def repeated(what: str, compiled: Compiled, steps: list[tuple[ProxySnapshot, set[str] | None]]) -> None:
        """Each step in turn (they alternate between two states); prints the median and worst time."""
        times = []
        for new, changed in steps:
            start = time.perf_counter()
            script = compiled.update(new, changed)
            times.append((time.perf_counter() - start) * 1000)
            assert "delete table" not in script and 0 < script.count("\n") < 20
        times.sort()
        print(f"  {what}: median {times[len(times) // 2]:.1f} ms, worst {times[-1]:.1f} ms ({len(times)} runs)")

    def with_endpoints(s: ProxySnapshot, i: int, n: int) -> ProxySnapshot:
        services = list(s.services)
        services[i] = dataclasses.replace(services[i], endpoints=services[i].endpoints[:n])
        return snap(*services)

    base = _shape(10_000, endpoints_each=10)
    print(f"\n10,000 service ports × 10 endpoints ({sum(len(s.endpoints) for s in base.services)} endpoints)")
    compiled = timed("Compiled(snapshot) (full compile)", lambda: Compiled(base))
    timed("full() (render the full script)", compiled.full)
    fewer = with_endpoints(base, 5_000, 9)
    repeated(
        "update(): one service's endpoints changed, other ServicePorts the same objects",
        compiled,
        [(fewer, None), (base, None)] * 5,
    )
    added = snap(*base.services, sp("zz-new", "10.96.250.1", endpoints=(ep("10.244.250.1"),)))
    repeated("update(): one Service added, then removed", compiled, [(added, None), (base, None)] * 5)
    rebuilt = [with_endpoints(_shape(10_000, endpoints_each=10), 5_000, n) for n in (9, 10)]
    key = {base.services[5_000].key}
    repeated(
        "update(): every ServicePort rebuilt (equal values, compared deeply), one changed",
        compiled,
        [(rebuilt[0], None), (rebuilt[1], None)] * 3,
    )
    repeated(
        "update(changed={that Service}): every ServicePort rebuilt, one changed",
        compiled,
        [(rebuilt[0], key), (rebuilt[1], key)] * 3,
    )
    timed("partial_update(old, new) (compiles old in full first)", lambda: partial_update(base, fewer))

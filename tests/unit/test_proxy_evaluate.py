"""The Service data plane's reference evaluator, case by case and as properties.

Each case is one Service (built from wire form through ``build_snapshot``), its endpoints, one
packet, and what upstream kube-proxy's nftables rules on node-a do with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubewire.dataplane.proxy.endpoints import categorize
from kubewire.dataplane.proxy.evaluate import Packet, Verdict, evaluate
from kubewire.dataplane.proxy.model import NodeContext
from tests.unit.test_proxy_endpoints import A1, B1, C1, NODE, NODEPORT, ZONES, Obj, ep, eslice, service, snapshot

POD = "10.244.0.9"  # a pod on node-a
REMOTE_POD = "10.244.1.9"  # a pod on node-b, its traffic reaching node-a over the fabric
NODE_IP = "172.18.0.2"
CLIENT = "172.18.0.100"  # outside the cluster (the client namespace)
CIP, EIP, LBIP = "10.96.0.20", "172.18.100.1", "172.18.255.200"
EVERYWHERE = [ep(A1), ep(B1, "node-b"), ep(C1, "node-c")]
ELSEWHERE = [ep(B1, "node-b")]
LB: dict[str, Any] = {
    "type": "LoadBalancer",
    "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
    "lb_ingress": (LBIP,),
}
NP_LOCAL: dict[str, Any] = {**NODEPORT, "externalTrafficPolicy": "Local"}
LB_LOCAL: dict[str, Any] = {**LB, "externalTrafficPolicy": "Local"}


def pkt(dst: str, dport: int = 80, src: str = POD, origin: str = "pod", protocol: str = "TCP") -> Packet:
    return Packet(src=src, dst=dst, protocol=protocol, dport=dport, origin=origin)


def outside(dst: str, dport: int = 80, src: str = CLIENT) -> Packet:
    return pkt(dst, dport, src=src, origin="external")


def from_node(dst: str, dport: int = 80) -> Packet:
    return pkt(dst, dport, src=NODE_IP, origin="node")


@dataclass(frozen=True)
class Case:
    id: str
    svc: dict[str, Any]
    endpoints: list[Obj]
    packet: Packet
    action: str
    ips: list[str] = field(default_factory=list)
    masquerade: bool = False
    reason: str = ""
    node: NodeContext = NODE


def run(svc: dict[str, Any], endpoints: list[Obj], packet: Packet, node: NodeContext = NODE) -> Verdict:
    return evaluate(snapshot([service(**svc)], [eslice(endpoints)], node), packet)


ALL = [A1, B1, C1]
CASES = [
    # ClusterIP: internal traffic
    Case(
        "clusterip-from-pod",
        {},
        EVERYWHERE,
        pkt(CIP),
        "dnat",
        ALL,
        False,
        "10.96.0.20:80/TCP is ClusterIP of default/web:http",
    ),
    Case(
        "clusterip-cluster-policy",
        {},
        EVERYWHERE,
        pkt(CIP),
        "dnat",
        ALL,
        False,
        "internalTrafficPolicy Cluster: 3 endpoints",
    ),
    Case(
        "clusterip-from-node-masquerades", {}, EVERYWHERE, from_node(CIP), "dnat", ALL, True, "outside the cluster CIDR"
    ),
    Case(
        "clusterip-from-outside-masquerades",
        {},
        EVERYWHERE,
        outside(CIP),
        "dnat",
        ALL,
        True,
        "source 172.18.0.100 is outside",
    ),
    Case("clusterip-from-remote-pod-not-masqueraded", {}, EVERYWHERE, outside(CIP, src=REMOTE_POD), "dnat", ALL, False),
    Case(
        "clusterip-unknown-port-rejects",
        {},
        EVERYWHERE,
        pkt(CIP, 81),
        "reject",
        [],
        False,
        "has no port 81/TCP: reject",
    ),
    Case(
        "clusterip-unknown-protocol-rejects",
        {},
        EVERYWHERE,
        pkt(CIP, protocol="UDP"),
        "reject",
        [],
        False,
        "has no port 80/UDP: reject",
    ),
    Case(
        "unknown-address-passes", {}, EVERYWHERE, pkt("10.96.0.99"), "pass", [], False, "is not a service address: pass"
    ),
    Case("pod-address-passes", {}, EVERYWHERE, pkt(A1, 8080), "pass"),
    Case(
        "clusterip-no-endpoints-rejects",
        {},
        [],
        pkt(CIP),
        "reject",
        [],
        False,
        "no endpoints: reject (connection refused)",
    ),
    Case(
        "clusterip-unready-endpoints-reject",
        {},
        [ep(A1, ready=False)],
        pkt(CIP),
        "reject",
        [],
        False,
        "none of 1 endpoint",
    ),
    Case(
        "clusterip-terminating-fallback",
        {},
        [ep(A1, ready=False, serving=True, terminating=True), ep(B1, "node-b", ready=False)],
        pkt(CIP),
        "dnat",
        [A1],
        False,
        "no ready endpoints anywhere: using 1 serving-terminating endpoint",
    ),
    Case(
        "itp-local",
        {"internalTrafficPolicy": "Local"},
        EVERYWHERE,
        pkt(CIP),
        "dnat",
        [A1],
        False,
        "internalTrafficPolicy Local: 1 local endpoint",
    ),
    Case(
        "itp-local-none-here-drops",
        {"internalTrafficPolicy": "Local"},
        ELSEWHERE,
        pkt(CIP),
        "drop",
        [],
        False,
        "internalTrafficPolicy Local: no endpoints on node node-a: drop",
    ),
    Case(
        "itp-local-no-endpoints-rejects",
        {"internalTrafficPolicy": "Local"},
        [],
        pkt(CIP),
        "reject",
        [],
        False,
        "no endpoints",
    ),
    Case(
        "itp-local-terminating-local-fallback",
        {"internalTrafficPolicy": "Local"},
        [ep(A1, ready=False, serving=True, terminating=True), ep(B1, "node-b")],
        pkt(CIP),
        "dnat",
        [A1],
        False,
        "no ready endpoints on node node-a",
    ),
    Case(
        "itp-local-from-node-masquerades",
        {"internalTrafficPolicy": "Local"},
        EVERYWHERE,
        from_node(CIP),
        "dnat",
        [A1],
        True,
    ),
    # NodePort
    Case(
        "nodeport-cluster",
        NODEPORT,
        EVERYWHERE,
        outside(NODE_IP, 30080),
        "dnat",
        ALL,
        True,
        "is NodePort 30080 of default/web:http",
    ),
    Case(
        "nodeport-cluster-masquerade-reason",
        NODEPORT,
        EVERYWHERE,
        outside(NODE_IP, 30080),
        "dnat",
        ALL,
        True,
        "externalTrafficPolicy Cluster",
    ),
    Case("nodeport-from-pod-cluster-masquerades", NODEPORT, EVERYWHERE, pkt(NODE_IP, 30080), "dnat", ALL, True),
    Case("node-address-service-port-passes", NODEPORT, EVERYWHERE, outside(NODE_IP, 80), "pass"),
    Case("nodeport-on-other-address-passes", NODEPORT, EVERYWHERE, outside("172.18.0.3", 30080), "pass"),
    Case(
        "nodeport-wrong-protocol-passes",
        NODEPORT,
        EVERYWHERE,
        Packet(CLIENT, NODE_IP, "UDP", 30080, "external"),
        "pass",
    ),
    Case("nodeport-no-endpoints-rejects", NODEPORT, [], outside(NODE_IP, 30080), "reject", [], False, "no endpoints"),
    Case(
        "nodeport-local",
        NP_LOCAL,
        EVERYWHERE,
        outside(NODE_IP, 30080),
        "dnat",
        [A1],
        False,
        "externalTrafficPolicy Local: 1 local endpoint",
    ),
    Case(
        "nodeport-local-none-here-drops",
        NP_LOCAL,
        ELSEWHERE,
        outside(NODE_IP, 30080),
        "drop",
        [],
        False,
        "externalTrafficPolicy Local: no endpoints on node node-a: drop",
    ),
    Case(
        "nodeport-local-pod-short-circuits",
        NP_LOCAL,
        ELSEWHERE,
        pkt(NODE_IP, 30080),
        "dnat",
        [B1],
        False,
        "short-circuit",
    ),
    Case(
        "nodeport-local-remote-pod-short-circuits",
        NP_LOCAL,
        ELSEWHERE,
        outside(NODE_IP, 30080, src=REMOTE_POD),
        "dnat",
        [B1],
        False,
    ),
    Case(
        "nodeport-local-node-short-circuits-masqueraded",
        NP_LOCAL,
        ELSEWHERE,
        from_node(NODE_IP, 30080),
        "dnat",
        [B1],
        True,
        "from the node itself",
    ),
    Case(
        "nodeport-local-clusterip-unaffected",
        NP_LOCAL,
        ELSEWHERE,
        pkt(CIP),
        "dnat",
        [B1],
        False,
        "internalTrafficPolicy Cluster",
    ),
    Case(
        "nodeport-local-terminating-local",
        NP_LOCAL,
        [ep(A1, ready=False, serving=True, terminating=True), ep(B1, "node-b")],
        outside(NODE_IP, 30080),
        "dnat",
        [A1],
    ),
    # externalIPs
    Case(
        "externalip-cluster",
        {"externalIPs": [EIP]},
        EVERYWHERE,
        outside(EIP),
        "dnat",
        ALL,
        True,
        "172.18.100.1:80/TCP is an externalIP of default/web:http",
    ),
    Case(
        "externalip-local",
        {"externalIPs": [EIP], "externalTrafficPolicy": "Local"},
        EVERYWHERE,
        outside(EIP),
        "dnat",
        [A1],
        False,
    ),
    Case(
        "externalip-local-none-here-drops",
        {"externalIPs": [EIP], "externalTrafficPolicy": "Local"},
        ELSEWHERE,
        outside(EIP),
        "drop",
    ),
    Case("externalip-unknown-port-passes", {"externalIPs": [EIP]}, EVERYWHERE, outside(EIP, 81), "pass"),
    Case("externalip-no-endpoints-rejects", {"externalIPs": [EIP]}, [], outside(EIP), "reject"),
    # LoadBalancer
    Case(
        "lb-cluster",
        LB,
        EVERYWHERE,
        outside(LBIP),
        "dnat",
        ALL,
        True,
        "172.18.255.200:80/TCP is a LoadBalancer IP of default/web:http",
    ),
    Case("lb-local", LB_LOCAL, EVERYWHERE, outside(LBIP), "dnat", [A1], False, "client source 172.18.0.100 preserved"),
    Case("lb-local-none-here-drops", LB_LOCAL, ELSEWHERE, outside(LBIP), "drop"),
    Case("lb-local-pod-short-circuits", LB_LOCAL, ELSEWHERE, pkt(LBIP), "dnat", [B1], False),
    Case("lb-no-endpoints-rejects", LB, [], outside(LBIP), "reject"),
    Case(
        "lb-source-allowed",
        {**LB, "loadBalancerSourceRanges": ["172.18.0.0/24"]},
        EVERYWHERE,
        outside(LBIP),
        "dnat",
        ALL,
        True,
        "allowed by loadBalancerSourceRanges",
    ),
    Case(
        "lb-source-denied-drops",
        {**LB, "loadBalancerSourceRanges": ["10.0.0.0/8"]},
        EVERYWHERE,
        outside(LBIP, src="192.0.2.7"),
        "drop",
        [],
        False,
        "source 192.0.2.7 not in loadBalancerSourceRanges: drop",
    ),
    Case(
        "lb-firewall-before-reject",
        {**LB, "loadBalancerSourceRanges": ["10.0.0.0/8"]},
        [],
        outside(LBIP),
        "drop",
        [],
        False,
        "loadBalancerSourceRanges",
    ),
    Case(
        "lb-firewall-applies-to-pods",
        {**LB, "loadBalancerSourceRanges": ["172.18.0.0/16"]},
        EVERYWHERE,
        pkt(LBIP),
        "drop",
    ),
    Case(
        "lb-firewall-not-on-nodeport",
        {**LB, "loadBalancerSourceRanges": ["10.0.0.0/8"]},
        EVERYWHERE,
        outside(NODE_IP, 30080, src="192.0.2.7"),
        "dnat",
        ALL,
        True,
    ),
    Case(
        "lb-firewall-not-on-externalip",
        {**LB, "externalIPs": [EIP], "loadBalancerSourceRanges": ["10.0.0.0/8"]},
        EVERYWHERE,
        outside(EIP, src="192.0.2.7"),
        "dnat",
        ALL,
        True,
    ),
    Case(
        "lb-firewall-lets-the-node-reach-its-vip",
        {**LB, "loadBalancerSourceRanges": ["172.18.0.0/24"]},
        EVERYWHERE,
        pkt(LBIP, src=LBIP, origin="node"),
        "dnat",
        ALL,
        True,
    ),
    Case(
        "lb-vip-not-allowed-when-node-outside-ranges",
        {**LB, "loadBalancerSourceRanges": ["10.0.0.0/8"]},
        EVERYWHERE,
        pkt(LBIP, src=LBIP, origin="node"),
        "drop",
    ),
    Case(
        "lb-proxy-ip-mode-is-not-programmed",
        {**LB, "lb_ingress": ({"ip": LBIP, "ipMode": "Proxy"},)},
        EVERYWHERE,
        outside(LBIP),
        "pass",
    ),
    # hairpin, affinity, topology
    Case("hairpin-only-candidate-masquerades", {}, [ep(POD)], pkt(CIP), "dnat", [POD], True, "the only candidate"),
    Case(
        "hairpin-one-of-many",
        {},
        [*EVERYWHERE, ep(POD)],
        pkt(CIP),
        "dnat",
        [A1, POD, B1, C1],
        False,
        "if 10.244.0.9 itself is picked",
    ),
    Case(
        "session-affinity-keeps-candidates",
        {"sessionAffinity": "ClientIP"},
        EVERYWHERE,
        pkt(CIP),
        "dnat",
        ALL,
        False,
        "sessionAffinity ClientIP (10800s)",
    ),
    Case(
        "topology-zone-hints",
        {"trafficDistribution": "PreferClose"},
        [ep(A1, zones=("zone-a",)), ep(B1, "node-b", zones=("zone-b",)), ep(C1, "node-c", zones=("zone-a",))],
        pkt(CIP),
        "dnat",
        [A1, C1],
        False,
        "topology hints (PreferSameZone): 2 of 3 ready endpoints hinted for zone zone-a",
    ),
    Case(
        "topology-node-hints",
        {"trafficDistribution": "PreferSameNode"},
        [ep(A1, zones=("zone-a",), nodes=("node-a",)), ep(C1, "node-c", zones=("zone-a",), nodes=("node-c",))],
        pkt(CIP),
        "dnat",
        [A1],
        False,
        "hinted for node node-a",
    ),
    Case(
        "topology-not-applied-to-local-external",
        LB_LOCAL,
        [ep(A1, zones=("zone-b",)), ep(B1, "node-b", zones=("zone-a",))],
        outside(LBIP),
        "dnat",
        [A1],
    ),
    Case(
        "topology-applied-to-short-circuit",
        LB_LOCAL,
        [ep(A1, zones=("zone-b",)), ep(B1, "node-b", zones=("zone-a",))],
        pkt(LBIP),
        "dnat",
        [B1],
    ),
    # node without a known cluster CIDR: upstream cannot tell pods from others
    Case(
        "no-cluster-cidr-no-clusterip-masquerade",
        {},
        EVERYWHERE,
        from_node(CIP),
        "dnat",
        ALL,
        False,
        "no cluster CIDR known",
        NodeContext(name="node-a", zone="zone-a", addresses=(NODE_IP,)),
    ),
    Case(
        "no-cluster-cidr-no-pod-short-circuit",
        NP_LOCAL,
        ELSEWHERE,
        pkt(NODE_IP, 30080),
        "drop",
        [],
        False,
        "",
        NodeContext(name="node-a", zone="zone-a", addresses=(NODE_IP,)),
    ),
    Case("protocol-case-insensitive", {}, EVERYWHERE, pkt(CIP, protocol="tcp"), "dnat", ALL),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_evaluate(case: Case) -> None:
    verdict = run(case.svc, case.endpoints, case.packet, case.node)
    assert verdict.action == case.action, verdict.reasons
    assert [e.ip for e in verdict.endpoints] == case.ips
    assert verdict.masquerade == case.masquerade, verdict.reasons
    if case.reason:
        assert any(case.reason in r for r in verdict.reasons), verdict.reasons
    matched = case.action in ("dnat", "drop") or (case.action == "reject" and "has no port" not in case.reason)
    assert verdict.service == ("default/web:http" if matched else "")


def test_kube_dns_reason_names_the_service_port() -> None:
    svc = service(
        "kube-dns",
        ns="kube-system",
        clusterIP="10.96.0.10",
        ports=[{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
    )
    sl = eslice([ep(A1)], svc="kube-dns", ns="kube-system", ports=(("dns", 53), ("dns-tcp", 53)))
    sl["ports"][0]["protocol"] = "UDP"
    snap = snapshot([svc], [sl])
    udp = evaluate(snap, pkt("10.96.0.10", 53, protocol="UDP"))
    tcp = evaluate(snap, pkt("10.96.0.10", 53))
    assert (udp.service, tcp.service) == ("kube-system/kube-dns:dns", "kube-system/kube-dns:dns-tcp")
    assert udp.reasons[0] == "10.96.0.10:53/UDP is ClusterIP of kube-system/kube-dns:dns"
    assert udp.reasons[-1] == "DNAT to one of 1: 10.244.0.5:53"


def test_the_right_port_of_a_multi_port_service_is_picked() -> None:
    svc = service(
        ports=[{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "https", "port": 443, "protocol": "TCP"}]
    )
    snap = snapshot([svc], [eslice([ep(A1)], ports=(("http", 8080), ("https", 8443)))])
    verdict = evaluate(snap, pkt(CIP, 443))
    assert verdict.service == "default/web:https"
    assert [(e.ip, e.port) for e in verdict.endpoints] == [(A1, 8443)]


def test_hairpin_is_masqueraded_only_towards_the_source_itself() -> None:
    verdict = run({}, [*EVERYWHERE, ep(POD)], pkt(CIP))
    (self_ep,) = verdict.hairpin
    assert self_ep.ip == POD
    assert verdict.masquerades_to(self_ep)
    assert not any(verdict.masquerades_to(e) for e in verdict.endpoints if e.ip != POD)


def test_ipv6_snapshot() -> None:
    svc = service(clusterIPs=["fd00:10:96::20"], ipFamilies=["IPv6"], clusterIP="fd00:10:96::20")
    node6 = NodeContext(name="node-a", addresses=("fc00:f853:ccd:e793::2",), pod_cidrs=("fd00:10:244::/56",))
    snap = snapshot([svc], [eslice([ep("fd00:10:244::5")], family=6)], node6, family=6)
    verdict = evaluate(snap, pkt("fd00:10:96:0::20", src="fd00:10:244::9"))
    assert verdict.action == "dnat" and not verdict.masquerade
    assert verdict.reasons[0] == "[fd00:10:96::20]:80/TCP is ClusterIP of default/web:http"
    assert evaluate(snap, pkt(CIP)).action == "pass"  # an IPv4 packet is the other proxy's business


def test_invalid_packets_are_refused() -> None:
    snap = snapshot([service()], [])
    with pytest.raises(ValueError, match="origin"):
        evaluate(snap, pkt(CIP, origin="router"))
    with pytest.raises(ValueError, match="protocol"):
        evaluate(snap, pkt(CIP, protocol="ICMP"))
    with pytest.raises(ValueError, match="port"):
        evaluate(snap, pkt(CIP, 0))
    with pytest.raises(ValueError):
        evaluate(snap, pkt("not-an-ip"))


# --- properties ------------------------------------------------------------------------------

SOURCES = {"pod": [POD, A1], "node": [NODE_IP], "external": [CLIENT, REMOTE_POD, "192.0.2.7"]}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Obj, list[Obj], Packet]:
    """One Service of any kind and policy, random endpoints, and a packet aimed at one of its addresses."""
    endpoints = []
    hinted = draw(st.booleans())
    for i in range(draw(st.integers(0, 5))):
        node = draw(st.sampled_from(["node-a", "node-b", "node-c"]))
        endpoints.append(
            ep(
                f"10.244.{i}.5" if i else draw(st.sampled_from([A1, POD])),
                node,
                ready=draw(st.booleans()),
                serving=draw(st.booleans()),
                terminating=draw(st.booleans()),
                zones=(draw(st.sampled_from([ZONES[node], "zone-b"])),) if hinted else None,
            )
        )
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "externalIP"]))
    spec: Obj = {}
    if kind == "NodePort":
        spec.update(NODEPORT)
    elif kind == "LoadBalancer":
        spec.update(LB)
        if draw(st.booleans()):
            spec["loadBalancerSourceRanges"] = [draw(st.sampled_from(["172.18.0.0/16", "10.0.0.0/8", "0.0.0.0/0"]))]
    elif kind == "externalIP":
        spec["externalIPs"] = [EIP]
    if draw(st.booleans()):
        spec["internalTrafficPolicy"] = "Local"
    if kind != "ClusterIP" and draw(st.booleans()):
        spec["externalTrafficPolicy"] = "Local"
    if draw(st.booleans()):
        spec["sessionAffinity"] = "ClientIP"
    dst, dport = draw(
        st.sampled_from([(CIP, 80), (CIP, 81), (NODE_IP, 30080), (LBIP, 80), (EIP, 80), ("10.96.0.99", 80)])
    )
    origin = draw(st.sampled_from(sorted(SOURCES)))
    src = draw(st.sampled_from(SOURCES[origin]))
    return spec, endpoints, pkt(dst, dport, src=src, origin=origin)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_evaluate_properties(scenario: tuple[Obj, list[Obj], Packet]) -> None:
    spec, endpoints, packet = scenario
    snap = snapshot([service(**spec)], [eslice(endpoints)])
    verdict = evaluate(snap, packet)
    assert verdict == evaluate(snap, packet)  # deterministic
    assert verdict.action in ("dnat", "reject", "drop", "pass")
    if verdict.action != "dnat":
        assert verdict.endpoints == () and not verdict.masquerade
        return
    (sp,) = snap.services
    assert verdict.service == sp.key
    # DNAT candidates are some of the service's endpoints, and there is at least one.
    assert verdict.endpoints and set(verdict.endpoints) <= set(sp.endpoints)
    assert set(verdict.endpoints) <= set(categorize(sp, NODE).reachable)
    assert set(verdict.hairpin) <= set(verdict.endpoints)
    # Traffic from outside the cluster under externalTrafficPolicy Local only reaches this node's endpoints.
    external_dst = packet.dst != CIP
    from_outside = packet.origin == "external" and not packet.src.startswith("10.244.")
    if sp.external_policy_local and external_dst and from_outside:
        assert all(e.node == NODE.name for e in verdict.endpoints)
        assert not verdict.masquerade
    # With ready endpoints present (here, and so anywhere), terminating ones are never candidates.
    if any(e.ready and e.node == NODE.name for e in sp.endpoints):
        assert all(e.ready for e in verdict.endpoints)
    if any(e.ready for e in sp.endpoints) and not (sp.internal_policy_local or sp.external_policy_local):
        assert all(e.ready for e in verdict.endpoints)


def test_unallocated_cluster_ip_drops_when_the_service_cidr_is_known() -> None:
    node = dataclasses.replace(NODE, service_cidrs=("10.96.0.0/16",))
    unallocated = run({}, EVERYWHERE, pkt("10.96.0.99"), node)
    assert unallocated.action == "drop" and unallocated.service == ""
    assert "unallocated ClusterIP" in unallocated.reasons[-1]
    assert run({}, EVERYWHERE, pkt(CIP, 81), node).action == "reject"  # a real ClusterIP, wrong port
    assert run({}, EVERYWHERE, pkt("10.97.0.1"), node).action == "pass"  # outside the service CIDR

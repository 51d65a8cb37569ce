"""The cluster zone answers the Kubernetes DNS specification as CoreDNS's kubernetes plugin does:
record contents, NXDOMAIN versus NODATA, what is forwarded, and incremental updates."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

import dns.name
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubewire.dataplane.dns import Answer, ClusterZone, DnsSettings, complete_chase
from kubewire.dataplane.dns.records import compile_service, reverse_address

Obj = dict[str, Any]
NOW = 1_700_000_000
SOA = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5"


# --- wire-form fixtures ---------------------------------------------------------------------------


def service(
    name: str,
    namespace: str = "default",
    *,
    ips: tuple[str, ...] = ("10.96.0.20",),
    ports: tuple[tuple[str, int, str], ...] = (("http", 80, "TCP"),),
    kind: str = "ClusterIP",
    external_name: str = "",
    publish_not_ready: bool = False,
    rv: str = "1",
) -> Obj:
    spec: Obj = {"type": kind, "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}
    if kind == "ExternalName":
        spec = {"type": kind, "externalName": external_name}
    else:
        spec["clusterIP"] = ips[0] if ips else ""
        spec["clusterIPs"] = list(ips)
        spec["ipFamilies"] = ["IPv6" if ":" in ip else "IPv4" for ip in ips if ip != "None"]
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": rv, "uid": f"uid-{name}"},
        "spec": spec,
    }


def headless(name: str, namespace: str = "default", **kw: Any) -> Obj:
    return service(name, namespace, ips=("None",), **kw)


def endpoint(ip: str, *, hostname: str = "", ready: bool | None = True, node: str = "node-1") -> Obj:
    ep: Obj = {"addresses": [ip], "nodeName": node, "targetRef": {"kind": "Pod", "name": f"pod-{ip}"}}
    if ready is not None:
        ep["conditions"] = {"ready": ready, "serving": ready, "terminating": False}
    if hostname:
        ep["hostname"] = hostname
    return ep


def endpoint_slice(
    service_name: str,
    *endpoints: Obj,
    namespace: str = "default",
    suffix: str = "abcde",
    family: str = "IPv4",
    ports: tuple[tuple[str, int, str], ...] = (("http", 8080, "TCP"),),
    rv: str = "1",
) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": namespace,
            "name": f"{service_name}-{suffix}",
            "resourceVersion": rv,
            "labels": {"kubernetes.io/service-name": service_name, "endpointslice.kubernetes.io/managed-by": "x"},
        },
        "addressType": family,
        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
        "endpoints": list(endpoints),
    }


def pod(name: str, ip: str, namespace: str = "default", phase: str = "Running") -> Obj:
    return {
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": "1"},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def make_zone(services: Sequence[Obj], slices: Sequence[Obj] = (), **kw: Any) -> ClusterZone:
    zone = ClusterZone(DnsSettings(**kw), clock=lambda: NOW)
    zone.build(services, slices)
    return zone


def ask(zone: ClusterZone, name: str, rdtype: str = "A") -> Answer:
    return zone.lookup(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))


def lines(rrsets: tuple[dns.rrset.RRset, ...]) -> list[str]:
    return [line for rrset in rrsets for line in rrset.to_text().splitlines()]


def nodata(answer: Answer) -> bool:
    return answer.rcode == dns.rcode.NOERROR and not answer.answer and lines(answer.authority) == [SOA]


def nxdomain(answer: Answer) -> bool:
    return answer.rcode == dns.rcode.NXDOMAIN and not answer.answer and lines(answer.authority) == [SOA]


@pytest.fixture
def cluster() -> ClusterZone:
    """A small cluster: a dual-stack ClusterIP Service, an IPv4 one, a headless StatefulSet Service with
    IPv4 and IPv6 slices, a portless headless Service, an ExternalName, and kube-dns."""
    services = [
        service("web", ips=("10.96.0.20", "fd00:10:96::20"), ports=(("http", 80, "TCP"), ("https", 443, "TCP"))),
        service("api", "prod", ips=("10.96.5.1",), ports=(("grpc", 9090, "TCP"), ("", 8080, "TCP"))),
        headless("db", ports=(("pg", 5432, "TCP"), ("metrics", 9187, "UDP"))),
        headless("bare", ports=()),
        service("ext", kind="ExternalName", external_name="www.example.com"),
        service(
            "kube-dns",
            "kube-system",
            ips=("10.96.0.10",),
            ports=(("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")),
        ),
    ]
    slices = [
        endpoint_slice(
            "db",
            endpoint("10.244.1.5", hostname="db-0"),
            endpoint("10.244.2.6", hostname="db-1"),
            endpoint("10.244.3.7"),
            endpoint("10.244.3.8", ready=False),
            ports=(("pg", 15432, "TCP"), ("metrics", 9187, "UDP")),
        ),
        endpoint_slice(
            "db",
            endpoint("fd00:10:244:1::5", hostname="db-0"),
            suffix="v6",
            family="IPv6",
            ports=(("pg", 15432, "TCP"),),
        ),
        endpoint_slice("bare", endpoint("10.244.9.9"), ports=()),
        endpoint_slice("web", endpoint("10.244.1.20"), endpoint("10.244.2.21")),
        endpoint_slice("api", endpoint("10.244.4.4"), namespace="prod"),
    ]
    return make_zone(services, slices)


# --- Services with a ClusterIP --------------------------------------------------------------------


def test_clusterip_a_and_aaaa_answer_every_clusterip_of_the_family(cluster: ClusterZone) -> None:
    a = ask(cluster, "web.default.svc.cluster.local.")
    assert a.rcode == dns.rcode.NOERROR and a.authoritative and not a.forward
    assert lines(a.answer) == ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]
    assert a.authority == () and a.additional == ()
    aaaa = ask(cluster, "web.default.svc.cluster.local.", "AAAA")
    assert lines(aaaa.answer) == ["web.default.svc.cluster.local. 5 IN AAAA fd00:10:96::20"]


def test_aaaa_of_an_ipv4_only_service_is_nodata_and_an_unknown_service_is_nxdomain(cluster: ClusterZone) -> None:
    assert nodata(ask(cluster, "api.prod.svc.cluster.local.", "AAAA"))
    assert nxdomain(ask(cluster, "nope.prod.svc.cluster.local."))
    assert nxdomain(ask(cluster, "nope.prod.svc.cluster.local.", "AAAA"))
    assert nxdomain(ask(cluster, "web.prod.svc.cluster.local."))  # right name, wrong namespace


def test_names_are_matched_without_case_and_answers_echo_the_question(cluster: ClusterZone) -> None:
    a = ask(cluster, "WEB.Default.SVC.Cluster.LOCAL.")
    assert lines(a.answer) == ["WEB.Default.SVC.Cluster.LOCAL. 5 IN A 10.96.0.20"]


def test_apex_svc_pod_and_namespace_names_exist_empty_other_names_do_not(cluster: ClusterZone) -> None:
    for name in ("cluster.local.", "svc.cluster.local.", "pod.cluster.local.", "default.svc.cluster.local."):
        assert nodata(ask(cluster, name)), name
    assert nodata(ask(cluster, "anything.svc.cluster.local."))  # every namespace exists until told otherwise
    for name in (
        "foo.cluster.local.",
        "dns.cluster.local.",
        "a.b.c.web.default.svc.cluster.local.",  # too many labels
        "web.default.xyz.cluster.local.",
        "*.default.svc.cluster.local.",  # CoreDNS dropped wildcards in 1.9.0: '*' is just a label
        "web.*.svc.cluster.local.",
    ):
        assert nxdomain(ask(cluster, name)), name


def test_namespaces_when_known_decide_namespace_names(cluster: ClusterZone) -> None:
    cluster.set_namespaces(["default", "prod", "kube-system"])
    assert nodata(ask(cluster, "prod.svc.cluster.local."))
    assert nxdomain(ask(cluster, "staging.svc.cluster.local."))
    assert nxdomain(ask(cluster, "web.staging.svc.cluster.local."))
    cluster.set_namespaces(["kube-system"])  # a Service in a namespace CoreDNS does not see: NXDOMAIN
    assert nxdomain(ask(cluster, "web.default.svc.cluster.local."))


def test_srv_for_a_named_port_of_a_clusterip_service(cluster: ClusterZone) -> None:
    a = ask(cluster, "_grpc._tcp.api.prod.svc.cluster.local.", "SRV")
    assert lines(a.answer) == ["_grpc._tcp.api.prod.svc.cluster.local. 5 IN SRV 0 100 9090 api.prod.svc.cluster.local."]
    assert lines(a.additional) == ["api.prod.svc.cluster.local. 5 IN A 10.96.5.1"]
    # port and protocol compare without case; the protocol is optional in neither direction
    upper = ask(cluster, "_GRPC._TCP.api.prod.svc.cluster.local.", "SRV")
    assert [r[0].port for r in upper.answer] == [9090]
    assert nxdomain(ask(cluster, "_grpc._udp.api.prod.svc.cluster.local.", "SRV"))
    assert nxdomain(ask(cluster, "_nope._tcp.api.prod.svc.cluster.local.", "SRV"))


def test_srv_weight_is_floor_100_over_the_matches_as_coredns(cluster: ClusterZone) -> None:
    # Dual-stack: one (target, port) per ClusterIP, so two matches weighing 50, one record.
    a = ask(cluster, "_http._tcp.web.default.svc.cluster.local.", "SRV")
    assert lines(a.answer) == [
        "_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 50 80 web.default.svc.cluster.local."
    ]
    assert lines(a.additional) == [
        "web.default.svc.cluster.local. 5 IN A 10.96.0.20",
        "web.default.svc.cluster.local. 5 IN AAAA fd00:10:96::20",
    ]
    # The plain name: every port, the unnamed one included (three matches for kube-dns: 33 each).
    plain = ask(cluster, "kube-dns.kube-system.svc.cluster.local.", "SRV")
    assert lines(plain.answer) == [
        "kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 33 53 kube-dns.kube-system.svc.cluster.local.",
        "kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 33 9153 kube-dns.kube-system.svc.cluster.local.",
    ]
    assert lines(plain.additional) == ["kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10"]
    api = ask(cluster, "api.prod.svc.cluster.local.", "SRV")
    assert sorted(r.port for rrset in api.answer for r in rrset) == [8080, 9090]


def test_a_question_for_an_srv_name_answers_the_addresses(cluster: ClusterZone) -> None:
    a = ask(cluster, "_grpc._tcp.api.prod.svc.cluster.local.")
    assert lines(a.answer) == ["_grpc._tcp.api.prod.svc.cluster.local. 5 IN A 10.96.5.1"]


# --- headless Services ----------------------------------------------------------------------------


def test_headless_a_answers_each_ready_endpoint_of_the_family(cluster: ClusterZone) -> None:
    a = ask(cluster, "db.default.svc.cluster.local.")
    assert lines(a.answer) == [
        "db.default.svc.cluster.local. 5 IN A 10.244.1.5",
        "db.default.svc.cluster.local. 5 IN A 10.244.2.6",
        "db.default.svc.cluster.local. 5 IN A 10.244.3.7",
    ]  # 10.244.3.8 is not ready
    aaaa = ask(cluster, "db.default.svc.cluster.local.", "AAAA")
    assert lines(aaaa.answer) == ["db.default.svc.cluster.local. 5 IN AAAA fd00:10:244:1::5"]


def test_headless_hostnames_and_dashed_addresses_name_endpoints(cluster: ClusterZone) -> None:
    assert lines(ask(cluster, "db-0.db.default.svc.cluster.local.").answer) == [
        "db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5"
    ]
    assert lines(ask(cluster, "db-0.db.default.svc.cluster.local.", "AAAA").answer) == [
        "db-0.db.default.svc.cluster.local. 5 IN AAAA fd00:10:244:1::5"
    ]
    assert lines(ask(cluster, "10-244-3-7.db.default.svc.cluster.local.").answer) == [
        "10-244-3-7.db.default.svc.cluster.local. 5 IN A 10.244.3.7"
    ]
    # an endpoint with a hostname is named by it only
    assert nxdomain(ask(cluster, "10-244-1-5.db.default.svc.cluster.local."))
    assert nxdomain(ask(cluster, "10-244-3-8.db.default.svc.cluster.local."))  # not ready
    assert nxdomain(ask(cluster, "bogus.db.default.svc.cluster.local."))
    # endpoint names answer for ClusterIP Services too (CoreDNS: "endpoint query or headless")
    assert lines(ask(cluster, "10-244-1-20.web.default.svc.cluster.local.").answer) == [
        "10-244-1-20.web.default.svc.cluster.local. 5 IN A 10.244.1.20"
    ]
    # an IPv6 endpoint without hostname: ':' becomes '-'
    v6 = make_zone([headless("h")], [endpoint_slice("h", endpoint("fd00:10:244::7"), family="IPv6")])
    assert lines(ask(v6, "fd00-10-244--7.h.default.svc.cluster.local.", "AAAA").answer) == [
        "fd00-10-244--7.h.default.svc.cluster.local. 5 IN AAAA fd00:10:244::7"
    ]


def test_headless_srv_targets_each_endpoint_with_the_slice_port(cluster: ClusterZone) -> None:
    a = ask(cluster, "_pg._tcp.db.default.svc.cluster.local.", "SRV")
    # four matches (three IPv4 endpoints and one IPv6): weight 25; db-0 has two addresses, one record
    assert lines(a.answer) == [
        "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 25 15432 db-0.db.default.svc.cluster.local.",
        "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 25 15432 db-1.db.default.svc.cluster.local.",
        "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 25 15432 10-244-3-7.db.default.svc.cluster.local.",
    ]
    assert lines(a.additional) == [
        "db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5",
        "db-1.db.default.svc.cluster.local. 5 IN A 10.244.2.6",
        "10-244-3-7.db.default.svc.cluster.local. 5 IN A 10.244.3.7",
        "db-0.db.default.svc.cluster.local. 5 IN AAAA fd00:10:244:1::5",
    ]
    udp = ask(cluster, "_metrics._udp.db.default.svc.cluster.local.", "SRV")
    assert [(r.weight, r.port) for rrset in udp.answer for r in rrset] == [(33, 9187)] * 3


def test_headless_without_ready_endpoints_is_nxdomain_and_publish_not_ready_publishes_all() -> None:
    slices = [endpoint_slice("h", endpoint("10.244.1.1", ready=False), endpoint("10.244.1.2", ready=None))]
    zone = make_zone([headless("h")], slices)
    assert lines(ask(zone, "h.default.svc.cluster.local.").answer) == ["h.default.svc.cluster.local. 5 IN A 10.244.1.2"]
    zone = make_zone([headless("h")], [endpoint_slice("h", endpoint("10.244.1.1", ready=False))])
    assert nxdomain(ask(zone, "h.default.svc.cluster.local."))
    assert nxdomain(ask(zone, "h.default.svc.cluster.local.", "SRV"))
    assert nxdomain(ask(make_zone([headless("h")]), "h.default.svc.cluster.local."))  # no slices at all
    zone = make_zone(
        [headless("h", publish_not_ready=True)], [endpoint_slice("h", endpoint("10.244.1.1", ready=False))]
    )
    assert lines(ask(zone, "h.default.svc.cluster.local.").answer) == ["h.default.svc.cluster.local. 5 IN A 10.244.1.1"]


def test_headless_without_ports_has_addresses_but_no_srv(cluster: ClusterZone) -> None:
    assert lines(ask(cluster, "bare.default.svc.cluster.local.").answer) == [
        "bare.default.svc.cluster.local. 5 IN A 10.244.9.9"
    ]
    assert nodata(ask(cluster, "bare.default.svc.cluster.local.", "SRV"))
    assert nxdomain(ask(cluster, "_http._tcp.bare.default.svc.cluster.local.", "SRV"))


def test_statefulset_pods_are_named_by_hostname_under_their_governing_service() -> None:
    # A StatefulSet "web" with serviceName "nginx": pods web-0 and web-1 get hostname web-N and
    # subdomain nginx; the EndpointSlice controller copies the hostname into each endpoint.
    slices = [
        endpoint_slice(
            "nginx",
            endpoint("10.244.1.10", hostname="web-0"),
            endpoint("10.244.2.11", hostname="web-1"),
            ports=(("web", 80, "TCP"),),
        )
    ]
    zone = make_zone([headless("nginx", ports=(("web", 80, "TCP"),))], slices)
    assert lines(ask(zone, "web-1.nginx.default.svc.cluster.local.").answer) == [
        "web-1.nginx.default.svc.cluster.local. 5 IN A 10.244.2.11"
    ]
    srv = ask(zone, "_web._tcp.nginx.default.svc.cluster.local.", "SRV")
    assert lines(srv.answer) == [
        "_web._tcp.nginx.default.svc.cluster.local. 5 IN SRV 0 50 80 web-0.nginx.default.svc.cluster.local.",
        "_web._tcp.nginx.default.svc.cluster.local. 5 IN SRV 0 50 80 web-1.nginx.default.svc.cluster.local.",
    ]
    ptr = ask(zone, "11.2.244.10.in-addr.arpa.", "PTR")
    assert lines(ptr.answer) == ["11.2.244.10.in-addr.arpa. 5 IN PTR web-1.nginx.default.svc.cluster.local."]


# --- ExternalName -----------------------------------------------------------------------------------


def test_externalname_is_a_cname_chased_by_the_server_for_address_questions(cluster: ClusterZone) -> None:
    a = ask(cluster, "ext.default.svc.cluster.local.")
    assert lines(a.answer) == ["ext.default.svc.cluster.local. 5 IN CNAME www.example.com."]
    assert a.chase is not None and a.chase.target == dns.name.from_text("www.example.com.")
    assert a.chase.qtype == dns.rdatatype.A
    upstream = dns.rrset.from_text("www.example.com.", 300, "IN", "A", "192.0.2.7")
    done = complete_chase(a, [upstream])
    assert done.chase is None and lines(done.answer) == [
        "ext.default.svc.cluster.local. 5 IN CNAME www.example.com.",
        "www.example.com. 300 IN A 192.0.2.7",
    ]
    assert lines(complete_chase(a, []).answer) == ["ext.default.svc.cluster.local. 5 IN CNAME www.example.com."]
    assert nodata(complete_chase(a, None))  # the upstream lookup failed: CoreDNS drops the CNAME
    assert ask(cluster, "ext.default.svc.cluster.local.", "AAAA").chase is not None
    cname = ask(cluster, "ext.default.svc.cluster.local.", "CNAME")
    assert lines(cname.answer) == ["ext.default.svc.cluster.local. 5 IN CNAME www.example.com."] and cname.chase is None


def test_externalname_answers_nothing_for_other_types_and_no_endpoints(cluster: ClusterZone) -> None:
    for rdtype in ("SRV", "MX", "TXT", "ANY", "CAA"):
        assert nodata(ask(cluster, "ext.default.svc.cluster.local.", rdtype)), rdtype
    assert nxdomain(ask(cluster, "x.ext.default.svc.cluster.local."))


def test_externalname_inside_the_zone_is_followed_and_loops_end() -> None:
    services = [
        service("web", ips=("10.96.0.20",)),
        service("alias", kind="ExternalName", external_name="web.default.svc.cluster.local"),
        service("ping", kind="ExternalName", external_name="pong.default.svc.cluster.local"),
        service("pong", kind="ExternalName", external_name="ping.default.svc.cluster.local"),
        service("dangling", kind="ExternalName", external_name="gone.default.svc.cluster.local"),
        service("self", kind="ExternalName", external_name="x.self.default.svc.cluster.local"),
        service("addr", kind="ExternalName", external_name="192.0.2.1"),
    ]
    zone = make_zone(services)
    a = ask(zone, "alias.default.svc.cluster.local.")
    assert a.chase is None and lines(a.answer) == [
        "alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
        "web.default.svc.cluster.local. 5 IN A 10.96.0.20",
    ]
    assert nodata(ask(zone, "ping.default.svc.cluster.local."))
    assert nodata(ask(zone, "dangling.default.svc.cluster.local."))
    assert nodata(ask(zone, "self.default.svc.cluster.local."))
    assert nxdomain(ask(zone, "addr.default.svc.cluster.local."))  # CoreDNS keeps only names


# --- reverse ----------------------------------------------------------------------------------------


def test_ptr_for_clusterips_and_endpoints(cluster: ClusterZone) -> None:
    assert lines(ask(cluster, "20.0.96.10.in-addr.arpa.", "PTR").answer) == [
        "20.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."
    ]
    a = cluster.lookup(dns.reversename.from_address("fd00:10:96::20"), dns.rdatatype.PTR)
    assert [r.target.to_text() for rrset in a.answer for r in rrset] == ["web.default.svc.cluster.local."]
    assert lines(ask(cluster, "6.2.244.10.in-addr.arpa.", "PTR").answer) == [
        "6.2.244.10.in-addr.arpa. 5 IN PTR db-1.db.default.svc.cluster.local."
    ]
    assert lines(ask(cluster, "7.3.244.10.in-addr.arpa.", "PTR").answer) == [
        "7.3.244.10.in-addr.arpa. 5 IN PTR 10-244-3-7.db.default.svc.cluster.local."
    ]
    # a pod backing a ClusterIP Service is named under it, as CoreDNS's endpoint index does
    assert lines(ask(cluster, "20.1.244.10.in-addr.arpa.", "PTR").answer) == [
        "20.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-20.web.default.svc.cluster.local."
    ]


def test_unknown_reverse_names_fall_through_to_the_forwarder(cluster: ClusterZone) -> None:
    for name, rdtype in (
        ("8.8.8.8.in-addr.arpa.", "PTR"),
        ("8.3.244.10.in-addr.arpa.", "PTR"),  # a not-ready endpoint has no PTR
        ("20.0.96.10.in-addr.arpa.", "A"),  # CoreDNS parses reverse names as Services for A: an error
        ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.", "PTR"),
    ):
        answer = ask(cluster, name, rdtype)
        assert answer.forward and answer.answer == (), name
    # NODATA is not a name error: it stays ours
    reverse_soa = "in-addr.arpa. 5 IN SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. 1700000000 7200 1800 86400 5"
    txt = ask(cluster, "20.0.96.10.in-addr.arpa.", "TXT")
    assert not txt.forward and lines(txt.authority) == [reverse_soa]
    strict = make_zone([service("web")], fallthrough_reverse=False)
    unknown = ask(strict, "9.9.9.9.in-addr.arpa.", "PTR")
    assert unknown.rcode == dns.rcode.NXDOMAIN and lines(unknown.authority) == [reverse_soa]


def test_ptr_of_a_forward_name_is_nodata_or_nxdomain(cluster: ClusterZone) -> None:
    assert nodata(ask(cluster, "web.default.svc.cluster.local.", "PTR"))
    assert nxdomain(ask(cluster, "nope.default.svc.cluster.local.", "PTR"))


def test_reverse_address_reads_names_as_coredns() -> None:
    def rev(text: str) -> str | None:
        return reverse_address(dns.name.from_text(text).labels)

    assert rev("4.3.2.1.in-addr.arpa.") == "1.2.3.4"
    assert rev("3.2.1.in-addr.arpa.") is None
    assert rev("04.3.2.1.in-addr.arpa.") is None
    assert rev("b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.") == "2001:db8::567:89ab"
    assert rev("4.0.3.0.2.0.1.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.") == "1.2.3.4"
    assert rev("g.0.ip6.arpa.") is None


# --- the zone's own records -------------------------------------------------------------------------


def test_dns_version_soa_and_ns(cluster: ClusterZone) -> None:
    txt = ask(cluster, "dns-version.cluster.local.", "TXT")
    assert lines(txt.answer) == ['dns-version.cluster.local. 28800 IN TXT "1.1.0"']
    assert nxdomain(ask(cluster, "dns-version.cluster.local."))  # only TXT: CoreDNS parses it as a Service
    assert nodata(ask(cluster, "web.default.svc.cluster.local.", "TXT"))
    assert nodata(ask(cluster, "nope.nowhere.svc.cluster.local.", "TXT"))  # CoreDNS never errors on TXT
    assert lines(ask(cluster, "cluster.local.", "SOA").answer) == [SOA]
    assert nodata(ask(cluster, "web.default.svc.cluster.local.", "SOA"))
    assert nodata(ask(cluster, "nope.default.svc.cluster.local.", "SOA"))  # SOA only looks at the apex
    ns = ask(cluster, "cluster.local.", "NS")
    assert lines(ns.answer) == ["cluster.local. 5 IN NS ns.dns.cluster.local."]
    assert lines(ns.additional) == ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]
    assert lines(ask(cluster, "ns.dns.cluster.local.").answer) == ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]
    assert nodata(ask(cluster, "ns.dns.cluster.local.", "AAAA"))
    assert nodata(ask(cluster, "ns.dns.cluster.local.", "SRV"))
    assert nodata(ask(cluster, "web.default.svc.cluster.local.", "NS"))  # below the apex: the fake A decides
    assert nxdomain(ask(cluster, "nope.default.svc.cluster.local.", "NS"))


def test_ns_can_be_named_after_the_dns_service_with_dual_stack_glue() -> None:
    zone = make_zone(
        [service("kube-dns", "kube-system", ips=("10.96.0.10", "fd00:10:96::a"))],
        dns_ips=("10.96.0.10", "fd00:10:96::a"),
        dns_service=("kube-system", "kube-dns"),
    )
    ns = ask(zone, "cluster.local.", "NS")
    assert lines(ns.answer) == ["cluster.local. 5 IN NS kube-dns.kube-system.svc.cluster.local."]
    assert lines(ns.additional) == [
        "kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10",
        "kube-dns.kube-system.svc.cluster.local. 5 IN AAAA fd00:10:96::a",
    ]
    assert lines(ask(zone, "ns.dns.cluster.local.", "AAAA").answer) == ["ns.dns.cluster.local. 5 IN AAAA fd00:10:96::a"]


def test_zone_transfers_are_refused_and_other_types_follow_the_a_lookup(cluster: ClusterZone) -> None:
    for rdtype in ("AXFR", "IXFR"):
        refused = ask(cluster, "cluster.local.", rdtype)
        assert refused.rcode == dns.rcode.REFUSED and not refused.authoritative and refused.authority == ()
    for rdtype in ("MX", "ANY", "HINFO", "CAA", "HTTPS"):
        assert nodata(ask(cluster, "web.default.svc.cluster.local.", rdtype)), rdtype
        assert nxdomain(ask(cluster, "nope.default.svc.cluster.local.", rdtype)), rdtype


def test_names_outside_the_served_zones_are_forwarded(cluster: ClusterZone) -> None:
    for name in ("example.com.", "local.", "svc.local.", "cluster.local.example.com.", "arpa.", "."):
        answer = ask(cluster, name)
        assert answer.forward and not answer.authoritative, name
    assert cluster.zone_of(dns.name.from_text("x.Cluster.Local.")) == dns.name.from_text("cluster.local.")
    assert cluster.zone_of(dns.name.from_text("example.com.")) is None


def test_ttl_comes_from_settings_and_the_soa_caps_its_own_at_300() -> None:
    zone = make_zone([service("web")], [], ttl=30)
    assert [r.ttl for r in ask(zone, "web.default.svc.cluster.local.").answer] == [30]
    assert lines(ask(zone, "nope.default.svc.cluster.local.").authority) == [
        "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 30"
    ]
    zone = make_zone([service("web")], [], ttl=3600)
    assert lines(ask(zone, "cluster.local.", "SOA").answer) == [
        "cluster.local. 300 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 3600"
    ]
    with pytest.raises(ValueError):
        DnsSettings(ttl=3601)
    with pytest.raises(ValueError):
        DnsSettings(pods="everything")  # type: ignore[arg-type]


def test_before_sync_name_errors_are_servfail() -> None:
    zone = ClusterZone(DnsSettings(), synced=False, clock=lambda: NOW)
    answer = ask(zone, "web.default.svc.cluster.local.")
    assert answer.rcode == dns.rcode.SERVFAIL and lines(answer.authority) == [SOA]
    generation = zone.generation
    zone.synced = True
    assert zone.generation == generation + 1
    assert nxdomain(ask(zone, "web.default.svc.cluster.local."))


# --- pods -------------------------------------------------------------------------------------------


def test_pod_records_by_mode() -> None:
    pods = [pod("a", "10.244.1.5"), pod("b", "fd00:10:244:1::5"), pod("done", "10.244.1.6", phase="Succeeded")]
    disabled = make_zone([])
    disabled.set_pods(pods)
    assert nxdomain(ask(disabled, "10-244-1-5.default.pod.cluster.local."))
    assert nxdomain(ask(disabled, "default.pod.cluster.local."))  # CoreDNS checks the mode first
    assert nodata(ask(disabled, "pod.cluster.local."))

    insecure = make_zone([], pods="insecure")
    assert lines(ask(insecure, "10-244-1-5.default.pod.cluster.local.").answer) == [
        "10-244-1-5.default.pod.cluster.local. 5 IN A 10.244.1.5"
    ]
    assert lines(ask(insecure, "1-2-3-4.anywhere.pod.cluster.local.").answer) == [
        "1-2-3-4.anywhere.pod.cluster.local. 5 IN A 1.2.3.4"
    ]
    assert lines(ask(insecure, "fd00-10-244-1--5.default.pod.cluster.local.", "AAAA").answer) == [
        "fd00-10-244-1--5.default.pod.cluster.local. 5 IN AAAA fd00:10:244:1::5"
    ]
    assert nodata(ask(insecure, "10-244-1-5.default.pod.cluster.local.", "AAAA"))
    assert nodata(ask(insecure, "default.pod.cluster.local."))
    for bad in ("10-244-1", "10-244-1-300", "my-pod-name-x", "010-244-1-5"):
        assert nxdomain(ask(insecure, f"{bad}.default.pod.cluster.local.")), bad
    insecure.set_namespaces(["default"])
    assert nxdomain(ask(insecure, "1-2-3-4.anywhere.pod.cluster.local."))  # the namespace must exist

    verified = make_zone([], pods="verified")
    verified.set_pods(pods)
    assert lines(ask(verified, "10-244-1-5.default.pod.cluster.local.").answer) == [
        "10-244-1-5.default.pod.cluster.local. 5 IN A 10.244.1.5"
    ]
    assert lines(ask(verified, "fd00-10-244-1--5.default.pod.cluster.local.", "AAAA").answer) == [
        "fd00-10-244-1--5.default.pod.cluster.local. 5 IN AAAA fd00:10:244:1::5"
    ]
    assert nxdomain(ask(verified, "10-244-1-5.other.pod.cluster.local."))
    assert nxdomain(ask(verified, "10-244-1-6.default.pod.cluster.local."))  # Succeeded: gone
    assert nxdomain(ask(verified, "10-244-9-9.default.pod.cluster.local."))
    generation = verified.generation
    verified.update_pods([("default", "a")], lambda key: None)
    assert verified.generation == generation + 1
    assert nxdomain(ask(verified, "10-244-1-5.default.pod.cluster.local."))


def test_pod_changes_invalidate_answers_only_in_verified_mode() -> None:
    insecure = make_zone([], pods="insecure")
    generation = insecure.generation
    assert insecure.set_pods([pod("a", "10.244.1.5")])
    assert insecure.generation == generation


# --- incremental updates ----------------------------------------------------------------------------


def test_update_reads_only_named_services_and_bumps_the_generation_on_real_changes() -> None:
    services = {"web": service("web"), "db": headless("db")}
    slices = {"db": [endpoint_slice("db", endpoint("10.244.1.5", hostname="db-0"), rv="1")]}
    zone = make_zone(list(services.values()), [s for v in slices.values() for s in v])
    reads: list[tuple[str, str]] = []

    def service_of(key: tuple[str, str]) -> Obj | None:
        reads.append(key)
        return services.get(key[1])

    def slices_of(key: tuple[str, str]) -> list[Obj]:
        return slices.get(key[1], [])

    generation = zone.generation
    assert zone.update([("default", "db")], service_of, slices_of) == set()  # same resourceVersions
    assert zone.generation == generation and reads == [("default", "db")]
    # a new resourceVersion whose records are the same (a serving-only condition change) is no change
    slices["db"] = [endpoint_slice("db", endpoint("10.244.1.5", hostname="db-0"), rv="2")]
    assert zone.update([("default", "db")], service_of, slices_of) == set()
    assert zone.generation == generation
    slices["db"] = [endpoint_slice("db", endpoint("10.244.1.5", hostname="db-0"), endpoint("10.244.2.6"), rv="3")]
    assert zone.update([("default", "db")], service_of, slices_of) == {("default", "db")}
    assert zone.generation == generation + 1
    assert len(ask(zone, "db.default.svc.cluster.local.").answer[0]) == 2
    del services["web"]
    assert zone.update([("default", "web")], service_of, slices_of) == {("default", "web")}
    assert nxdomain(ask(zone, "web.default.svc.cluster.local."))
    assert ask(zone, "20.0.96.10.in-addr.arpa.", "PTR").forward  # its PTR went with it


def test_serial_is_the_time_of_the_last_change() -> None:
    now = [100.0]
    zone = ClusterZone(DnsSettings(), clock=lambda: now[0])
    assert zone.serial == 100
    now[0] = 250.7
    zone.build([service("web")], [])
    assert zone.serial == 250
    assert "250 7200 1800 86400 5" in lines(ask(zone, "cluster.local.", "SOA").answer)[0]


def test_compile_service_keeps_what_coredns_keeps() -> None:
    records = compile_service(service("web", ports=()), [])
    assert records.kind == "ClusterIP" and records.ports == ((("", "", -1)),)
    legacy = service("old")
    del legacy["spec"]["clusterIPs"]  # an object from before dual-stack: clusterIP alone
    assert compile_service(legacy, []).cluster_ips == ("10.96.0.20",)
    fqdn = endpoint_slice("web", {"addresses": ["example.com"]})
    fqdn["addressType"] = "FQDN"
    assert compile_service(service("web"), [fqdn]).subsets == ()


NAMES = ["a", "b", "c", "d"]


def stamp(obj: Obj) -> Obj:
    """A resourceVersion that changes with the content, as the API server's does."""
    obj["metadata"]["resourceVersion"] = "0"
    obj["metadata"]["resourceVersion"] = str(zlib.crc32(json.dumps(obj, sort_keys=True).encode()))
    return obj


service_strategy = st.builds(
    lambda kind, n, port_name: stamp(
        headless(NAMES[n], ports=((port_name, 80, "TCP"),))
        if kind == "headless"
        else service(NAMES[n], ips=(f"10.96.0.{n + 1}",), ports=((port_name, 80, "TCP"),))
        if kind == "clusterip"
        else service(NAMES[n], kind="ExternalName", external_name=f"{NAMES[n]}.example.com")
    ),
    st.sampled_from(["headless", "clusterip", "external"]),
    st.integers(0, 3),
    st.sampled_from(["http", "web", ""]),
)
slice_strategy = st.builds(
    lambda n, eps: stamp(
        endpoint_slice(
            NAMES[n],
            *[endpoint(f"10.244.{n}.{i}", hostname=h, ready=r) for i, (h, r) in enumerate(eps)],
            ports=(("http", 8080, "TCP"),),
        )
    ),
    st.integers(0, 3),
    st.lists(st.tuples(st.sampled_from(["", "p-0", "p-1"]), st.sampled_from([True, False, None])), max_size=3),
)
state_strategy = st.tuples(
    st.lists(service_strategy, max_size=4).map(lambda svcs: list({s["metadata"]["name"]: s for s in svcs}.values())),
    st.lists(slice_strategy, max_size=4).map(lambda sls: list({s["metadata"]["name"]: s for s in sls}.values())),
)


def _questions() -> list[tuple[str, str]]:
    out = []
    for name in NAMES:
        base = f"{name}.default.svc.cluster.local."
        out += [(base, "A"), (base, "SRV"), (f"_http._tcp.{base}", "SRV"), (f"p-0.{base}", "A"), (base, "CNAME")]
    for n in range(4):
        out.append((f"{n + 1}.0.96.10.in-addr.arpa.", "PTR"))
        out += [(f"{i}.{n}.244.10.in-addr.arpa.", "PTR") for i in range(3)]
    return out


@given(st.lists(state_strategy, min_size=1, max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_incremental_updates_equal_a_fresh_build(states: list[tuple[list[Obj], list[Obj]]]) -> None:
    zone = ClusterZone(DnsSettings(), clock=lambda: NOW)
    previous: set[tuple[str, str]] = set()
    for services, slices in states:
        by_key = {("default", s["metadata"]["name"]): s for s in services}
        grouped: dict[tuple[str, str], list[Obj]] = {}
        for sl in slices:
            grouped.setdefault(("default", sl["metadata"]["labels"]["kubernetes.io/service-name"]), []).append(sl)
        keys = previous | set(by_key) | set(grouped)
        zone.update(sorted(keys), by_key.get, lambda key, g=grouped: g.get(key, []))  # type: ignore[misc]
        previous = set(by_key)
        fresh = make_zone(services, slices)
        assert dict(zone.services()) == dict(fresh.services())
        for name, rdtype in _questions():
            got, want = ask(zone, name, rdtype), ask(fresh, name, rdtype)
            assert (got.rcode, got.forward, lines(got.answer), lines(got.additional)) == (
                want.rcode,
                want.forward,
                lines(want.answer),
                lines(want.additional),
            ), (name, rdtype)

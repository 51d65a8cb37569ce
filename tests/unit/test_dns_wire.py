"""DNS on the wire: strict query reading, rcodes for hostile packets, EDNS and truncation, the response
cache (id and case patched into stored bytes), and a fuzz of :func:`answer`."""

from __future__ import annotations

import os
import struct
import time
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.update
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubewire.dataplane.dns import (
    ClusterZone,
    DnsSettings,
    Query,
    Reject,
    ResponseCache,
    answer,
    complete_chase,
    error_reply,
    parse_query,
    render,
)

Obj = dict[str, Any]
NOW = 1_700_000_000


def service(name: str, *, ips: tuple[str, ...] = ("10.96.0.20",), kind: str = "ClusterIP", target: str = "") -> Obj:
    spec: Obj = {
        "type": kind,
        "clusterIP": ips[0],
        "clusterIPs": list(ips),
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }
    if kind == "ExternalName":
        spec = {"type": kind, "externalName": target}
    return {"metadata": {"namespace": "default", "name": name, "resourceVersion": "1"}, "spec": spec}


def endpoint_slice(name: str, ips: list[str], rv: str = "1") -> Obj:
    return {
        "metadata": {
            "namespace": "default",
            "name": f"{name}-x",
            "resourceVersion": rv,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
    }


@pytest.fixture
def zone() -> ClusterZone:
    z = ClusterZone(DnsSettings(), clock=lambda: NOW)
    many = [f"10.244.{i // 250}.{i % 250 + 1}" for i in range(80)]
    z.build(
        [
            service("web"),
            service("db", ips=("None",)),
            service("big", ips=("None",)),
            service("ext", kind="ExternalName", target="www.example.com"),
        ],
        [endpoint_slice("db", ["10.244.1.5", "10.244.2.6", "10.244.3.7"]), endpoint_slice("big", many)],
    )
    return z


def query(
    name: str,
    rdtype: str = "A",
    *,
    qid: int = 0x1234,
    payload: int | None = None,
    do: bool = False,
    rd: bool = True,
    cd: bool = False,
) -> bytes:
    m = dns.message.make_query(
        name,
        rdtype,
        use_edns=0 if payload is not None else False,
        payload=payload or 1232,
        want_dnssec=do,
        id=qid,
    )
    m.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    return m.to_wire()


def reply(data: bytes) -> dns.message.Message:
    return dns.message.from_wire(data)


def header(data: bytes) -> tuple[int, ...]:
    return struct.unpack_from("!HHHHHH", data)


# --- reading queries --------------------------------------------------------------------------------


def test_parse_query_reads_header_question_and_edns() -> None:
    q = parse_query(query("Web.Default.svc.cluster.local", "AAAA", qid=7, payload=4096, do=True, cd=True))
    assert isinstance(q, Query)
    assert (q.id, q.qtype, q.qclass, q.payload, q.do, q.edns_version) == (7, dns.rdatatype.AAAA, 1, 4096, True, 0)
    assert q.flags & 0x0100 and q.flags & 0x0010
    assert q.name == b"\x03Web\x07Default\x03svc\x07cluster\x05local\x00"
    assert q.qname == dns.name.from_text("web.default.svc.cluster.local.")
    assert q.original_qname.to_text() == "Web.Default.svc.cluster.local."
    plain = parse_query(query("a.b"))
    assert isinstance(plain, Query) and plain.payload == -1 and not plain.do


def test_short_packets_and_responses_are_dropped(zone: ClusterZone) -> None:
    for data in (b"", b"\x12", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00"):
        assert parse_query(data) == Reject(None, -1)
    response = bytearray(query("web.default.svc.cluster.local"))
    response[2] |= 0x80  # QR
    result = answer(zone, bytes(response))
    assert result.response is None and result.rcode == -1 and not result.forward


@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.STATUS, 3, 15])
def test_other_opcodes_are_notimp_and_keep_their_opcode(zone: ClusterZone, opcode: int) -> None:
    data = bytearray(query("cluster.local", "SOA", qid=99))
    data[2] = (data[2] & 0x87) | (opcode << 3)
    result = answer(zone, bytes(data))
    assert result.rcode == dns.rcode.NOTIMP and result.response is not None
    qid, flags, qd, an, ns, ar = header(result.response)
    assert (qid, qd, an, ns, ar) == (99, 0, 0, 0, 0)
    assert flags & 0x8000 and (flags >> 11) & 0xF == opcode and flags & 0xF == dns.rcode.NOTIMP
    assert flags & 0x0100  # the request's RD stays, as miekg/dns answers on the request's header
    update = dns.update.UpdateMessage("cluster.local", id=5)
    assert answer(zone, update.to_wire()).rcode == dns.rcode.NOTIMP


def _raw(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x0100) -> bytes:
    return struct.pack("!HHHHHH", 0xBEEF, flags, qd, an, ns, ar)


QUESTION = b"\x03web\x07default\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01"
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # payload 1232, no options


@pytest.mark.parametrize(
    "data, with_question",
    [
        (_raw(qd=0), False),
        (_raw(qd=2) + QUESTION + QUESTION, False),  # two questions
        (_raw(an=2) + QUESTION, False),
        (_raw(ns=2) + QUESTION, False),
        (_raw(ar=3) + QUESTION, False),
        (_raw() + b"\xc0\x0c\x00\x01\x00\x01", False),  # a compression pointer in the question
        (_raw() + b"\x41" + b"x" * 65 + b"\x00\x00\x01\x00\x01", False),  # an extended label type
        (_raw() + b"\x03web\x07default", False),  # the name runs off the packet
        (_raw() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", False),  # a 257-byte name
        (_raw() + QUESTION[:-4], False),  # no type and class
        (_raw() + QUESTION[:-1], False),
        (_raw(ar=1) + QUESTION, True),  # the OPT it announces is missing
        (_raw(ar=1) + QUESTION + OPT[:-3], True),
        (_raw(ar=2) + QUESTION + OPT + OPT, True),  # two OPT records
        (_raw(ar=1) + QUESTION + OPT[:-2] + b"\x00\x05" + b"\x00\x08\x00\x09abc", True),  # option overruns
        (_raw(an=1) + QUESTION + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x09\x01\x02", True),
    ],
)
def test_malformed_queries_are_formerr(zone: ClusterZone, data: bytes, with_question: bool) -> None:
    result = answer(zone, data)
    assert result.rcode == dns.rcode.FORMERR and result.response is not None
    qid, flags, qd, an, ns, ar = header(result.response)
    assert qid == 0xBEEF and flags & 0x8000 and flags & 0xF == dns.rcode.FORMERR and (flags >> 11) & 0xF == 0
    assert not flags & 0x0400 and flags & 0x0100
    assert (qd, an, ns, ar) == (1 if with_question else 0, 0, 0, 0)
    if with_question:
        assert result.response[12:] == QUESTION
    reply(result.response)  # a well-formed message


def test_records_in_other_sections_are_skipped_when_well_formed(zone: ClusterZone) -> None:
    answer_rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x00\x00\x01"
    result = answer(zone, _raw(an=1, ar=1) + QUESTION + answer_rr + OPT)
    assert result.rcode == dns.rcode.NOERROR and result.response is not None
    assert reply(result.response).answer[0].to_text() == "web.default.svc.cluster.local. 5 IN A 10.96.0.20"


def test_a_header_without_question_is_servfail_as_coredns(zone: ClusterZone) -> None:
    result = answer(zone, _raw(flags=0x0110))
    assert result.rcode == dns.rcode.SERVFAIL and result.response == struct.pack(
        "!HHHHHH", 0xBEEF, 0x8000 | 0x0110 | 2, 0, 0, 0, 0
    )


def test_class_other_than_in_is_refused_with_the_question_and_opt_echoed(zone: ClusterZone) -> None:
    m = dns.message.make_query("version.bind", "TXT", "CH", use_edns=0, payload=4096, want_dnssec=True, id=3)
    result = answer(zone, m.to_wire())
    assert result.rcode == dns.rcode.REFUSED and result.response is not None
    r = reply(result.response)
    assert r.id == 3 and r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA
    assert r.question[0].to_text() == "version.bind. CH TXT"
    assert r.edns == 0 and r.payload == 4096 and r.ednsflags & dns.flags.DO
    plain = answer(zone, dns.message.make_query("x.cluster.local", "A", "ANY", id=4).to_wire())
    assert plain.rcode == dns.rcode.REFUSED and plain.response is not None and reply(plain.response).edns == -1


def test_edns_version_other_than_0_is_badvers(zone: ClusterZone) -> None:
    m = dns.message.make_query("web.default.svc.cluster.local", "A", use_edns=1, id=9)
    result = answer(zone, m.to_wire())
    assert result.rcode == 16 and result.response is not None
    r = reply(result.response)
    assert r.id == 9 and r.rcode() == dns.rcode.BADVERS and r.question == [] and r.edns == 0


# --- replies ----------------------------------------------------------------------------------------


def test_reply_flags_copy_rd_and_cd_set_aa_and_not_ra(zone: ClusterZone) -> None:
    for rd, cd in ((True, False), (False, True), (False, False)):
        result = answer(zone, query("web.default.svc.cluster.local", qid=77, rd=rd, cd=cd))
        assert result.response is not None
        r = reply(result.response)
        assert r.id == 77 and r.flags & dns.flags.QR and r.flags & dns.flags.AA
        assert bool(r.flags & dns.flags.RD) == rd and bool(r.flags & dns.flags.CD) == cd
        assert not r.flags & dns.flags.RA and not r.flags & dns.flags.AD and not r.flags & dns.flags.TC


def test_edns_is_echoed_with_the_requests_payload_and_do_bit(zone: ClusterZone) -> None:
    for payload, do in ((4096, True), (1232, False), (512, False)):
        result = answer(zone, query("web.default.svc.cluster.local", payload=payload, do=do))
        assert result.response is not None
        r = reply(result.response)
        assert r.edns == 0 and r.payload == payload and bool(r.ednsflags & dns.flags.DO) == do and not r.options
    result = answer(zone, query("web.default.svc.cluster.local"))
    assert result.response is not None and reply(result.response).edns == -1


def test_negative_answers_carry_the_soa_in_the_querys_case(zone: ClusterZone) -> None:
    result = answer(zone, query("Nope.Default.SVC.Cluster.Local"))
    assert result.rcode == dns.rcode.NXDOMAIN and result.response is not None
    r = reply(result.response)
    assert r.question[0].name.to_text() == "Nope.Default.SVC.Cluster.Local."
    # the SOA's names are compressed against the question, so they take its case, as CoreDNS's do
    assert r.authority[0].to_text() == (
        "Cluster.Local. 5 IN SOA ns.dns.Cluster.Local. hostmaster.Cluster.Local. 1700000000 7200 1800 86400 5"
    )


def test_udp_replies_are_truncated_record_by_record_and_flagged(zone: ClusterZone) -> None:
    small = answer(zone, query("big.default.svc.cluster.local"))
    assert small.response is not None and len(small.response) <= 512
    r = reply(small.response)
    assert r.flags & dns.flags.TC and 0 < len(r.answer[0]) < 80
    larger = answer(zone, query("big.default.svc.cluster.local", payload=4096))
    assert larger.response is not None and 512 < len(larger.response) <= 4096
    r = reply(larger.response)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 80 and r.payload == 4096
    tiny = answer(zone, query("big.default.svc.cluster.local", payload=100))  # below 512 counts as 512
    assert tiny.response is not None and len(tiny.response) <= 512 and reply(tiny.response).payload == 100
    tcp = answer(zone, query("big.default.svc.cluster.local"), "tcp")
    assert tcp.response is not None
    r = reply(tcp.response)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 80


def test_zone_transfers_are_refused_without_aa(zone: ClusterZone) -> None:
    result = answer(zone, query("cluster.local", "AXFR"), "tcp")
    assert result.rcode == dns.rcode.REFUSED and result.response is not None
    r = reply(result.response)
    assert not r.flags & dns.flags.AA and r.answer == [] and r.authority == []


def test_a_failing_lookup_is_servfail_as_coredns_recovers_from_panics(zone: ClusterZone, monkeypatch: Any) -> None:
    def boom(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(zone, "lookup", boom)
    result = answer(zone, query("Web.default.svc.cluster.local", qid=5, payload=1232), cache=ResponseCache())
    assert result.rcode == dns.rcode.SERVFAIL and result.response is not None
    r = reply(result.response)
    assert r.id == 5 and r.question[0].name.to_text() == "Web.default.svc.cluster.local." and r.payload == 1232
    assert not r.flags & dns.flags.AA


def test_error_reply_is_what_the_server_sends_when_forwarding_fails() -> None:
    q = parse_query(query("www.Example.com", "AAAA", qid=21, payload=4096, do=True))
    assert isinstance(q, Query)
    r = reply(error_reply(q, dns.rcode.SERVFAIL))
    assert (r.id, r.rcode(), r.question[0].to_text()) == (21, dns.rcode.SERVFAIL, "www.Example.com. IN AAAA")
    assert r.flags & dns.flags.RD and not r.flags & dns.flags.AA and r.payload == 4096 and r.ednsflags & dns.flags.DO


# --- forward and chase ------------------------------------------------------------------------------


def test_names_outside_the_zone_are_handed_back_for_forwarding(zone: ClusterZone) -> None:
    cache = ResponseCache()
    first = answer(zone, query("www.example.com"), cache=cache)
    assert first.forward and first.response is None and not first.cached and first.query is not None
    second = answer(zone, query("WWW.example.com", qid=2), cache=cache)
    assert second.forward and second.cached and second.qtype == dns.rdatatype.A


def test_externalname_chase_is_completed_by_the_server(zone: ClusterZone) -> None:
    result = answer(zone, query("Ext.default.svc.cluster.local", qid=11), cache=ResponseCache())
    assert result.response is None and not result.forward
    assert result.answer is not None and result.answer.chase is not None and result.query is not None
    assert result.answer.chase.target.to_text() == "www.example.com."
    upstream = [dns.rrset.from_text("www.example.com.", 60, "IN", "A", "192.0.2.1")]
    r = reply(render(result.query, complete_chase(result.answer, upstream, truncated=False)))
    assert r.id == 11 and r.question[0].name.to_text() == "Ext.default.svc.cluster.local."
    assert [x.to_text() for x in r.answer] == [
        "Ext.default.svc.cluster.local. 5 IN CNAME www.example.com.",
        "www.example.com. 60 IN A 192.0.2.1",
    ]
    failed = reply(render(result.query, complete_chase(result.answer, None)))
    assert failed.rcode() == dns.rcode.NOERROR and failed.answer == [] and len(failed.authority) == 1
    truncated = reply(render(result.query, complete_chase(result.answer, upstream, truncated=True)))
    assert truncated.flags & dns.flags.TC


# --- the cache ----------------------------------------------------------------------------------------


def test_cache_hits_patch_the_id_and_the_name_case(zone: ClusterZone) -> None:
    cache = ResponseCache()
    first = answer(zone, query("web.default.svc.cluster.local", qid=1), cache=cache)
    assert not first.cached and first.rcode == dns.rcode.NOERROR
    data = query("WEB.default.SVC.cluster.local", qid=0xABCD)
    hit = answer(zone, data, cache=cache)
    assert hit.cached and hit.rcode == dns.rcode.NOERROR and hit.qtype == dns.rdatatype.A
    assert hit.response == answer(zone, data).response  # identical to rendering it afresh
    assert hit.response is not None
    r = reply(hit.response)
    assert r.id == 0xABCD and r.answer[0].to_text() == "WEB.default.SVC.cluster.local. 5 IN A 10.96.0.20"
    assert len(cache) == 1


def test_cache_keys_keep_apart_what_changes_the_bytes(zone: ClusterZone) -> None:
    cache = ResponseCache()
    variants = [
        query("web.default.svc.cluster.local"),
        query("web.default.svc.cluster.local", rd=False),
        query("web.default.svc.cluster.local", cd=True),
        query("web.default.svc.cluster.local", payload=1232),
        query("web.default.svc.cluster.local", payload=4096),
        query("web.default.svc.cluster.local", payload=4096, do=True),
        query("web.default.svc.cluster.local", "AAAA"),
    ]
    for data in variants:
        assert answer(zone, data, cache=cache).response == answer(zone, data).response
        assert answer(zone, data, cache=cache).response == answer(zone, data).response
    assert answer(zone, variants[0], "tcp", cache).response == answer(zone, variants[0], "tcp").response
    assert len(cache) == len(variants) + 1


def test_the_cache_is_dropped_when_the_zone_changes(zone: ClusterZone) -> None:
    cache = ResponseCache()
    data = query("db.default.svc.cluster.local")
    assert answer(zone, data, cache=cache).response is not None
    assert answer(zone, data, cache=cache).cached
    zone.update(
        [("default", "db")],
        lambda key: service("db", ips=("None",)),
        lambda key: [endpoint_slice("db", ["10.244.9.9"], rv="2")],
    )
    fresh = answer(zone, data, cache=cache)
    assert not fresh.cached and fresh.response is not None
    assert [r.to_text() for r in reply(fresh.response).answer] == ["db.default.svc.cluster.local. 5 IN A 10.244.9.9"]


def test_the_cache_is_bounded(zone: ClusterZone) -> None:
    cache = ResponseCache(max_entries=10)
    for i in range(50):
        answer(zone, query(f"n{i}.default.svc.cluster.local"), cache=cache)
    assert len(cache) == 10
    assert answer(zone, query("n49.default.svc.cluster.local"), cache=cache).cached
    assert not answer(zone, query("n0.default.svc.cluster.local"), cache=cache).cached


def test_cached_address_answers_rotate_like_coredns_loadbalance(zone: ClusterZone) -> None:
    cache = ResponseCache()
    firsts = []
    for i in range(6):
        result = answer(zone, query("db.default.svc.cluster.local", qid=i), cache=cache)
        assert result.response is not None
        rrset = reply(result.response).answer[0]
        assert sorted(r.to_text() for r in rrset) == ["10.244.1.5", "10.244.2.6", "10.244.3.7"]
        firsts.append(next(iter(rrset)).to_text())
    assert set(firsts[1:4]) == {"10.244.1.5", "10.244.2.6", "10.244.3.7"}


# --- fuzz ---------------------------------------------------------------------------------------------


def _check(zone: ClusterZone, data: bytes, cache: ResponseCache) -> None:
    for transport in ("udp", "tcp"):
        result = answer(zone, data, transport, cache)  # type: ignore[arg-type]
        if result.response is not None:
            assert result.response[:2] == data[:2]
            assert result.response[2] & 0x80  # QR
            reply(result.response)
            if transport == "udp" and result.query is not None:
                assert len(result.response) <= max(512, result.query.payload)


FUZZ_ZONE = ClusterZone(DnsSettings(pods="insecure"), clock=lambda: NOW)
FUZZ_ZONE.build(
    [
        service("web"),
        service("db", ips=("None",)),
        service("ext", kind="ExternalName", target="web.default.svc.cluster.local"),
    ],
    [endpoint_slice("db", ["10.244.1.5", "10.244.2.6"])],
)
FUZZ_CACHE = ResponseCache(max_entries=1000)
SEEDS = [
    query("web.default.svc.cluster.local"),
    query("_http._tcp.web.default.svc.cluster.local", "SRV", payload=1232),
    query("db.default.svc.cluster.local", "A", payload=4096, do=True),
    query("20.0.96.10.in-addr.arpa", "PTR"),
    query("10-244-1-5.default.pod.cluster.local", "A", payload=512),
    query("ext.default.svc.cluster.local", "A"),
    query("cluster.local", "NS", payload=1232),
]


@given(st.binary(max_size=600))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    _check(FUZZ_ZONE, data, FUZZ_CACHE)


@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), max_size=6),
    st.integers(0, 700),
    st.binary(max_size=40),
)
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_queries_never_raise(seed: bytes, flips: list[tuple[int, int]], cut: int, tail: bytes) -> None:
    data = bytearray(seed)
    for at, value in flips:
        if at < len(data):
            data[at] = value
    mutated = bytes(data[: max(cut, 2)]) + tail if cut < len(data) else bytes(data) + tail
    _check(FUZZ_ZONE, mutated, FUZZ_CACHE)


# --- benchmark ----------------------------------------------------------------------------------------


@pytest.mark.skipif(os.environ.get("KUBEWIRE_DNS_BENCH") != "1", reason="a benchmark: set KUBEWIRE_DNS_BENCH=1")
def test_benchmark_cached_answers(zone: ClusterZone) -> None:
    cache = ResponseCache()
    cases = {
        "A, no EDNS": query("web.default.svc.cluster.local"),
        "A, EDNS 1232": query("web.default.svc.cluster.local", payload=1232),
        "headless A x3, EDNS": query("db.default.svc.cluster.local", payload=1232),
        "NXDOMAIN, EDNS": query("nope.default.svc.cluster.local", payload=1232),
        "forward decision": query("www.example.com", payload=1232),
    }
    n = 100_000
    for label, data in cases.items():
        answer(zone, data, cache=cache)
        start = time.perf_counter()
        for _ in range(n):
            answer(zone, data, cache=cache)
        per = (time.perf_counter() - start) / n * 1e6
        print(f"\ncached {label}: {per:.2f} us/answer ({1e6 / per:,.0f} answers/s)")
    misses = [query(f"n{i}.default.svc.cluster.local", payload=1232) for i in range(2000)]
    start = time.perf_counter()
    for data in misses:
        answer(zone, data, cache=cache)
    print(f"\nuncached NXDOMAIN: {(time.perf_counter() - start) / len(misses) * 1e6:.1f} us/answer")
    data = query("web.default.svc.cluster.local", payload=1232)
    start = time.perf_counter()
    for _ in misses:
        answer(zone, data)
    print(f"uncached A: {(time.perf_counter() - start) / len(misses) * 1e6:.1f} us/answer")


def _sections(data: bytes) -> tuple[int, int, list[str]]:
    r = reply(data)
    records = sorted(
        line
        for section in (r.answer, r.authority, r.additional)
        for rrset in section
        for line in rrset.to_text().splitlines()
    )
    return r.id, r.flags, records


@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("ask"), st.sampled_from(["db", "web", "DB", "nope"]), st.sampled_from(["A", "SRV", "TXT"])
            ),
            st.tuples(st.just("set"), st.sampled_from(["db", "web"]), st.lists(st.integers(1, 4), max_size=3)),
        ),
        max_size=25,
    )
)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_cache_never_serves_what_the_zone_no_longer_says(ops: list[tuple[str, str, Any]]) -> None:
    zone = ClusterZone(DnsSettings(), clock=lambda: NOW)
    cache = ResponseCache()
    objects: dict[str, tuple[Obj, list[Obj]]] = {}
    for n, (op, name, arg) in enumerate(ops):
        if op == "set":
            ips = [f"10.244.0.{i}" for i in sorted(set(arg))]
            headless = name == "db"
            objects[name] = (
                service(name, ips=("None",) if headless else (f"10.96.0.{len(ips) + 1}",)),
                [endpoint_slice(name, ips, rv=str(n))],
            )
            objects[name][0]["metadata"]["resourceVersion"] = str(n)
            zone.update([("default", name)], lambda key: objects[key[1]][0], lambda key: objects[key[1]][1])
            continue
        data = query(f"{name}.default.svc.cluster.local", arg, qid=n)
        cached = answer(zone, data, cache=cache)
        fresh = answer(zone, data)
        assert cached.rcode == fresh.rcode
        assert cached.response is not None and fresh.response is not None
        assert _sections(cached.response) == _sections(fresh.response)

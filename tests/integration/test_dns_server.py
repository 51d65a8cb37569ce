"""The DNS server on loopback: real UDP and TCP sockets, a real upstream, the HTTP endpoints.

Everything listens on 127.0.0.1 ports chosen free for the test; the zone is built from wire-form
Services and EndpointSlices (the API watch itself is covered by the system tests).  The upstream
is a small dnspython server in this process, answering ``example.test`` and NXDOMAIN otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import urllib.request
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from kubewire.agents.dns import corefile
from kubewire.agents.dns.server import DnsServer
from kubewire.dataplane.dns import records
from tests.integration.test_workloads import free_port

HOST = "127.0.0.1"
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
    "spec": {
        "clusterIP": "10.96.0.20",
        "clusterIPs": ["10.96.0.20"],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    },
}


class Upstream(asyncio.DatagramProtocol):
    """example.test A 192.0.2.1 (TTL 60); everything else NXDOMAIN with an SOA (TTL 30)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries += 1
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        name = query.question[0].name
        if name.to_text().lower() == "example.test.":
            response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.1"))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(
                dns.rrset.from_text("test.", 30, "IN", "SOA", "ns.test. admin.test. 1 7200 1800 86400 30")
            )
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@dataclasses.dataclass
class Running:
    server: DnsServer
    port: int
    upstream: Upstream
    http: dict[str, int]


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    loop = asyncio.get_running_loop()
    upstream_port = free_port(udp_too=True)
    transport, upstream = await loop.create_datagram_endpoint(Upstream, local_addr=(HOST, upstream_port))
    port = free_port(udp_too=True)
    http = {name: free_port() for name in ("health", "ready", "metrics")}
    text = f""".:{port} {{
        errors
        health {HOST}:{http["health"]}
        ready {HOST}:{http["ready"]}
        kubernetes cluster.local in-addr.arpa ip6.arpa {{
            fallthrough in-addr.arpa ip6.arpa
        }}
        prometheus {HOST}:{http["metrics"]}
        forward . {HOST}:{upstream_port}
        cache 30
    }}"""
    (block,) = corefile.parse(text, env={}).servers
    zone = records.ClusterZone(records.DnsSettings(), synced=False)
    zone.build([SERVICE], [])
    zone.synced = True
    server = DnsServer(block, zone)
    await server.start(HOST)
    server.ready = True
    try:
        yield Running(server, port, upstream, http)
    finally:
        server.close()
        transport.close()


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_cluster_names_over_udp_and_tcp(running: Running) -> None:
    query = dns.message.make_query("WEB.default.svc.cluster.local", "A")
    for ask in (dns.asyncquery.udp, dns.asyncquery.tcp):
        answer = await ask(query, HOST, port=running.port, timeout=5)
        assert answer.rcode() == dns.rcode.NOERROR and answer.flags & dns.flags.AA
        assert [r.to_text() for r in answer.answer[0]] == ["10.96.0.20"]
        assert answer.question[0].name.to_text() == "WEB.default.svc.cluster.local."  # the query's case
    missing = await dns.asyncquery.udp(
        dns.message.make_query("nope.default.svc.cluster.local", "A"), HOST, port=running.port, timeout=5
    )
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.authority[0].rdtype == dns.rdatatype.SOA


async def test_other_names_are_forwarded_and_cached(running: Running) -> None:
    query = dns.message.make_query("example.test", "A")
    first = await dns.asyncquery.udp(query, HOST, port=running.port, timeout=5)
    assert first.rcode() == dns.rcode.NOERROR and first.id == query.id
    assert [r.to_text() for r in first.answer[0]] == ["192.0.2.1"]
    again = dns.message.make_query("example.test", "A")
    second = await dns.asyncquery.udp(again, HOST, port=running.port, timeout=5)
    assert second.id == again.id and [r.to_text() for r in second.answer[0]] == ["192.0.2.1"]
    assert running.upstream.queries == 1  # the second came from the cache
    assert 0 < second.answer[0].ttl <= 30  # capped by `cache 30`
    denied = await dns.asyncquery.udp(dns.message.make_query("missing.test", "A"), HOST, port=running.port, timeout=5)
    assert denied.rcode() == dns.rcode.NXDOMAIN
    status, metrics = await asyncio.to_thread(_get, running.http["metrics"], "/metrics")
    assert status == 200
    hits = f'coredns_cache_hits_total{{server="dns://:{running.port}",type="success",view="",zones="."}} 1'
    assert hits in metrics
    assert "coredns_dns_requests_total{" in metrics and 'type="A"' in metrics
    assert 'coredns_dns_responses_total{plugin="forward",rcode="NXDOMAIN"' in metrics
    assert "coredns_dns_request_duration_seconds_bucket{" in metrics


async def test_no_answer_upstream_is_servfail(running: Running) -> None:
    dead = free_port(udp_too=True)
    running.server.forwarder.servers = [(HOST, dead)]  # type: ignore[union-attr]
    answer = await dns.asyncquery.udp(dns.message.make_query("other.example", "A"), HOST, port=running.port, timeout=8)
    assert answer.rcode() == dns.rcode.SERVFAIL


async def test_health_ready_and_lameduck(running: Running) -> None:
    assert await asyncio.to_thread(_get, running.http["health"], "/health") == (200, "OK")
    assert await asyncio.to_thread(_get, running.http["ready"], "/ready") == (200, "OK")
    running.server.lameduck = True
    status, body = await asyncio.to_thread(_get, running.http["ready"], "/ready")
    assert status == 503 and "kubernetes" in body
    assert (await asyncio.to_thread(_get, running.http["health"], "/health"))[0] == 200  # still alive


async def test_garbage_never_stops_the_server(running: Running) -> None:
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            answers.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(HOST, running.port))
    try:
        for junk in (b"", b"\x01", b"\x12\x34" + b"\xff" * 30, struct.pack("!HHHHHH", 7, 0, 1, 0, 0, 0) + b"\x03abc"):
            transport.sendto(junk)
        good = dns.message.make_query("web.default.svc.cluster.local", "A")
        transport.sendto(good.to_wire())
        while True:
            data = await asyncio.wait_for(answers.get(), 5)
            if data[:2] == struct.pack("!H", good.id):
                break
            assert data[3] & 0x0F == dns.rcode.FORMERR  # what came back for the junk is FORMERR
        assert dns.message.from_wire(data).answer[0][0].to_text() == "10.96.0.20"
    finally:
        transport.close()

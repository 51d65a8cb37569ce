"""The DNS server process: sockets, the API watch, forwarding, health, readiness and metrics.

This is what a ``coredns`` pod runs (``python -m kubewire.agents.dns -conf /etc/coredns/Corefile``)
and what ``kubewire dns`` runs against a real cluster.  It owns the I/O around the pure answer
engine (:mod:`kubewire.dataplane.dns`):

- **Watching**: informers on Services and EndpointSlices (and Pods when the ``kubernetes`` plugin has
  ``pods verified``) feed the zone; each event marks its Service, and the zone is brought up to date
  before the next query is answered, so an API change shows in the very next answer.
- **Serving**: UDP and TCP on the server block's port (53), every address of the namespace.  A query
  for the cluster's zones is answered synchronously on the event loop from the zone (the hot path:
  a cached response with its ID patched); other names go to the forwarder (``forward`` + ``cache``).
  TCP connections carry any number of length-prefixed queries and close after
  :data:`TCP_IDLE` seconds idle, as CoreDNS's server does.
- **Health** ``/health`` (200 ``OK``; on SIGTERM it keeps answering for the ``lameduck`` period
  while the listeners stay open), **readiness** ``/ready`` (200 ``OK`` once the API watch has synced,
  503 naming the plugins not ready), **metrics** ``/metrics`` on the ``prometheus`` address.

A query that raises inside the engine is answered SERVFAIL and counted in
``coredns_panics_total``: one bad packet never stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from kubewire.agents.dns.corefile import Server, listen_address
from kubewire.agents.dns.forward import AnswerCache, Forwarder, servfail, upstreams
from kubewire.agents.dns.metrics import DnsMetrics
from kubewire.agents.httpserve import serve_http
from kubewire.dataplane.dns import records, wire

log = logging.getLogger("kubewire.dns")
TCP_IDLE = 10.0
MAX_UDP_PAYLOAD = 65535


class Engine:
    """The synchronous part: zone + response cache + metrics; no I/O."""

    def __init__(self, zone: records.ClusterZone, metrics: DnsMetrics) -> None:
        self.zone = zone
        self.metrics = metrics
        self.cache = wire.ResponseCache()
        self.before_answer: Callable[[], None] = lambda: None  # brings the zone up to date

    def answer(self, data: bytes, proto: str, family: str) -> wire.Result:
        """The engine's result; replies of its own are counted here, the rest by the caller."""
        start = time.perf_counter()
        self.before_answer()
        try:
            result = wire.answer(self.zone, data, proto, self.cache)  # type: ignore[arg-type]
        except Exception:  # never let one packet end the server
            self.metrics.panics += 1
            log.exception("answering a query")
            return wire.Result(servfail(data) if len(data) >= 12 else None, 0, 2)
        if result.response is not None:
            plugin = "cache" if result.cached else "kubernetes"
            self.metrics.record(".", proto, family, result.qtype, result.rcode, plugin, time.perf_counter() - start)
        return result


class _Udp:
    """One UDP socket read straight from the event loop's selector.

    asyncio's datagram transport reads each packet with ``recvfrom(256 KiB)``: glibc serves that
    allocation with ``mmap``, then ``mremap``/``munmap`` as it shrinks and frees it, three extra
    system calls per query that cost up to half the server's CPU (found with ``strace -c`` under
    dnsperf).  Here every wake-up drains the socket with ``recvfrom_into`` a buffer allocated once,
    and replies go out with a plain ``sendto``; a reply the kernel cannot take at once is dropped,
    as UDP allows (the client retries)."""

    BURST = 256  # packets per wake-up before other tasks get a turn

    def __init__(self, app: DnsServer, sock: socket.socket, family: str) -> None:
        self.app = app
        self.sock = sock
        self.family = family
        self.buffer = bytearray(MAX_UDP_PAYLOAD)
        self.view = memoryview(self.buffer)
        self.loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        answer = self.app.engine.answer
        for _ in range(self.BURST):
            try:
                n, addr = self.sock.recvfrom_into(self.buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. an ICMP error queued on the socket: keep serving
                log.debug("udp receive: %s", e)
                continue
            data = bytes(self.view[:n])
            result = answer(data, "udp", self.family)
            if result.response is not None:
                self.send(result.response, addr)
            elif result.query is not None:
                self.app.spawn(self._later(data, result, addr))

    def send(self, response: bytes, addr: Any) -> None:
        try:
            self.sock.sendto(response, addr)
        except (BlockingIOError, InterruptedError):
            pass  # the send buffer is full: the client retries
        except OSError as e:
            log.debug("udp send to %s: %s", addr, e)

    async def _later(self, data: bytes, result: wire.Result, addr: Any) -> None:
        response = await self.app.resolve(data, result, "udp", self.family)
        if response is not None and self.sock.fileno() >= 0:
            self.send(response, addr)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class DnsServer:
    """One Corefile server block, served until :meth:`close`."""

    def __init__(self, server: Server, zone: records.ClusterZone, metrics: DnsMetrics | None = None) -> None:
        """``metrics`` outlive a reload (CoreDNS's counters are the process's): pass the previous ones."""
        self.server = server
        self.metrics = metrics or DnsMetrics(f"dns://:{server.port}", server.plugins, server.zones)
        self.engine = Engine(zone, self.metrics)
        self.forwarder = make_forwarder(server, self.metrics)
        self.ready = False
        self.lameduck = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closers: list[Callable[[], None]] = []

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resolve(self, data: bytes, result: wire.Result, proto: str, family: str) -> bytes | None:
        """What the engine left to I/O: a name to forward, or an ExternalName target to chase."""
        start = time.perf_counter()
        query = result.query
        assert query is not None
        plugin = "forward"
        if result.forward:
            response = await self._upstream(data, query, proto == "tcp")
        elif result.answer is not None and result.answer.chase is not None:
            chase = result.answer.chase
            rrsets = await self._chase(chase.target, chase.qtype, proto == "tcp")
            final = records.complete_chase(result.answer, rrsets)
            response = wire.render(query, final, proto, 0)  # type: ignore[arg-type]
            plugin = "kubernetes"
        else:
            return None
        rcode = response[3] & 0x0F if len(response) >= 4 else 2
        self.metrics.record(".", proto, family, result.qtype, rcode, plugin, time.perf_counter() - start)
        return response

    async def _upstream(self, data: bytes, query: wire.Query, tcp: bool) -> bytes:
        if self.forwarder is None:  # no `forward`: CoreDNS answers what no plugin handles with SERVFAIL
            return servfail(data)
        key = (query.qname.to_text(), query.qtype, query.qclass, query.do)
        return await self.forwarder.resolve(data, key, tcp)

    async def _chase(self, target: dns.name.Name, qtype: int, tcp: bool) -> list[dns.rrset.RRset]:
        """The target's records: our zone first, then upstream.  A failed lookup gives no records,
        so the answer is the CNAME alone, as CoreDNS's ``upstream.Lookup`` (which never returns an
        error to the kubernetes plugin) makes it."""
        own = self.engine.zone.lookup(target, qtype)
        if not own.forward:
            return list(own.answer) if own.rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) else []
        if self.forwarder is None:
            return []
        request = dns.message.make_query(target, dns.rdatatype.RdataType.make(qtype))
        key = (target.to_text().lower(), qtype, 1, False)
        wire_answer = await self.forwarder.resolve(request.to_wire(), key, tcp)
        try:
            message = dns.message.from_wire(wire_answer)
        except dns.exception.DNSException:
            return []
        return list(message.answer) if message.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) else []

    async def start(self, host: str = "") -> None:
        port = self.server.port
        for family, fam_label, bind in ((socket.AF_INET, "1", host or "0.0.0.0"), (socket.AF_INET6, "2", host or "::")):
            if host and (":" in host) != (family == socket.AF_INET6):
                continue
            try:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                sock.bind((bind, port))
            except OSError as e:
                if family == socket.AF_INET6:  # a namespace without IPv6: IPv4 only
                    log.info("no IPv6 listener: %s", e)
                    continue
                raise
            self._closers.append(_Udp(self, sock, fam_label).close)
            # asyncio sets IPV6_V6ONLY on the IPv6 socket, so both families share the port.
            tcp = await asyncio.start_server(
                functools.partial(self._tcp, family=fam_label), bind, port, family=family, reuse_address=True
            )
            self._closers.append(tcp.close)
        for address, handler in (
            (self.server.health, self._health),
            (self.server.ready, self._ready),
            (self.server.prometheus, self._metrics),
        ):
            if address:
                h, p = listen_address(address)
                srv = await serve_http(h or None, p, handler)
                self._closers.append(srv.close)

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, family: str) -> None:
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                    (size,) = struct.unpack("!H", head)
                    data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                result = self.engine.answer(data, "tcp", family)
                response = result.response
                if response is None and result.query is not None:
                    response = await self.resolve(data, result, "tcp", family)
                if response is None:
                    return  # unanswerable garbage: CoreDNS closes the connection
                writer.write(struct.pack("!H", len(response)) + response)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _health(self, method: str, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if path.split("?")[0] != "/health":
            return 404, [("Content-Type", "text/plain")], b"404 page not found\n"
        return 200, [("Content-Type", "text/plain; charset=utf-8")], b"OK"

    def _ready(self, method: str, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if path.split("?")[0] != "/ready":
            return 404, [("Content-Type", "text/plain")], b"404 page not found\n"
        if self.ready and not self.lameduck:
            return 200, [("Content-Type", "text/plain; charset=utf-8")], b"OK"
        return 503, [("Content-Type", "text/plain; charset=utf-8")], b"kubernetes"

    def _metrics(self, method: str, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if path.split("?")[0] != "/metrics":
            return 404, [("Content-Type", "text/plain")], b"404 page not found\n"
        return 200, [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], self.metrics.render()

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()
        for task in list(self._tasks):
            task.cancel()


def make_forwarder(server: Server, metrics: DnsMetrics) -> Forwarder | None:
    if server.forward is None:
        return None
    cache = AnswerCache(server.cache) if server.cache is not None else None
    return Forwarder(upstreams(server.forward), cache, metrics)

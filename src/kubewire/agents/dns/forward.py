"""Names outside the cluster's zones: CoreDNS's ``forward`` and ``cache`` plugins.

The server hands a query it does not own to :class:`Forwarder`, which asks the configured upstream
servers (``forward . 10.0.0.53 …`` or the nameservers of a resolv.conf path) over the client's own
transport, trying the next upstream when one does not answer within :data:`TIMEOUT`, and answers
SERVFAIL when none does (CoreDNS's ``no healthy upstream`` outcome).  A UDP answer with TC set is
passed back as it is, so the client retries over TCP, which is then forwarded over TCP.

:class:`AnswerCache` is the ``cache`` plugin for those answers: positive answers for their smallest
TTL, NXDOMAIN and NODATA for the SOA minimum (RFC 2308), each capped by the Corefile's ``cache``
TTLs, keyed by (name, type, class, DO bit); a hit is rewritten with the remaining TTL and the
client's message ID.  Cluster answers never go through it: they are recomputed from the API state
on every change, so an API change is never hidden behind a cached answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from kubewire.agents.dns.corefile import Cache, Forward
from kubewire.agents.dns.metrics import DnsMetrics

TIMEOUT = 2.0  # per upstream try; CoreDNS's forward also gives up on an upstream after ~2 s


def upstreams(forward: Forward, read: Callable[[str], str] = lambda p: Path(p).read_text()) -> list[tuple[str, int]]:
    """The (address, port) pairs ``forward`` names; a path is read as a resolv.conf."""
    out: list[tuple[str, int]] = []
    for to in forward.to:
        if to.startswith("/"):
            with contextlib.suppress(OSError):
                for line in read(to).splitlines():
                    words = line.split()
                    if len(words) >= 2 and words[0] == "nameserver":
                        out.append((words[1].split("%", 1)[0], 53))
            continue
        to = to.removeprefix("dns://")
        if to.startswith("["):  # [v6]:port
            host, _, port = to[1:].partition("]")
            out.append((host, int(port.lstrip(":") or 53)))
        elif to.count(":") == 1:
            host, _, port = to.partition(":")
            out.append((host, int(port)))
        else:
            out.append((to, 53))
    return out


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, want: int) -> None:
        self.want = want
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) >= 2 and struct.unpack_from("!H", data)[0] == self.want and not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def _ask_udp(server: tuple[str, int], query: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    qid = random.getrandbits(16)  # our own ID towards the upstream: the client's may collide
    transport, proto = await loop.create_datagram_endpoint(lambda: _Datagram(qid), remote_addr=server)
    try:
        transport.sendto(struct.pack("!H", qid) + query[2:])
        return await asyncio.wait_for(proto.answer, TIMEOUT)
    finally:
        transport.close()


async def _ask_tcp(server: tuple[str, int], query: bytes) -> bytes:
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(*server)
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            await writer.drain()
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(size)
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), TIMEOUT)


class AnswerCache:
    """Forwarded answers by (name, type, class, DO), LRU-bounded, TTLs capped as configured."""

    def __init__(self, settings: Cache, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.entries: OrderedDict[tuple[str, int, int, bool], tuple[float, float, dns.message.Message, bool]] = (
            OrderedDict()
        )

    def get(self, key: tuple[str, int, int, bool], qid: int) -> tuple[bytes, bool] | None:
        """The cached answer re-stamped (remaining TTL, the client's ID) and whether it is a denial."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        stored, expires, message, denial = entry
        cap = int(expires - stored)  # the TTL the entry was cached for (the `cache` plugin's caps applied)
        now = self.clock()
        if now >= expires:
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        age = int(now - stored)
        out = dns.message.Message(id=qid)
        out.flags, out.question = message.flags, message.question
        out.set_rcode(message.rcode())
        for section, source in ((out.answer, message.answer), (out.authority, message.authority)):
            for rrset in source:
                copy = rrset.copy()  # type: ignore[no-untyped-call]
                copy.update_ttl(max(0, min(rrset.ttl, cap) - age))
                section.append(copy)
        out.additional = list(message.additional)
        return out.to_wire(), denial

    def put(self, key: tuple[str, int, int, bool], wire: bytes) -> None:
        try:
            message = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return
        rcode = message.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or message.flags & dns.flags.TC:
            return
        denial = rcode == dns.rcode.NXDOMAIN or not message.answer
        if denial:
            soa = next((r for r in message.authority if r.rdtype == dns.rdatatype.SOA), None)
            if soa is None:
                return
            ttl = min(soa.ttl, soa[0].minimum, self.settings.denial_ttl)
        else:
            ttl = min(min(r.ttl for r in message.answer), self.settings.success_ttl)
        if ttl <= 0:
            return
        now = self.clock()
        self.entries[key] = (now, now + ttl, message, denial)
        self.entries.move_to_end(key)
        while len(self.entries) > self.settings.capacity:
            self.entries.popitem(last=False)


class Forwarder:
    """Ask the upstreams; SERVFAIL when none answers.  Counts into the server's ``metrics``."""

    def __init__(self, servers: list[tuple[str, int]], cache: AnswerCache | None, metrics: DnsMetrics) -> None:
        self.servers = servers
        self.cache = cache
        self.metrics = metrics

    async def resolve(self, query: bytes, key: tuple[str, int, int, bool], tcp: bool) -> bytes:
        qid = struct.unpack_from("!H", query)[0]
        if self.cache is not None:
            hit = self.cache.get(key, qid)
            if hit is not None:
                self.metrics.cache_hits["denial" if hit[1] else "success"] += 1
                return hit[0]
            self.metrics.cache_misses += 1
        for server in self.servers:
            name = f"{server[0]}:{server[1]}"
            self.metrics.forward_requests[name] += 1
            try:
                answer = await (_ask_tcp(server, query) if tcp else _ask_udp(server, query))
            except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error):
                continue
            if self.cache is not None:
                self.cache.put(key, answer)
                capped = self.cache.get(key, qid)  # the first reply is capped too, as CoreDNS's cache writes it
                if capped is not None:
                    return capped[0]
            return struct.pack("!H", qid) + answer[2:]
        return servfail(query)


def servfail(query: bytes) -> bytes:
    """SERVFAIL for ``query`` (its ID, flags RD echoed, question kept when it parses)."""
    try:
        request = dns.message.from_wire(query)
    except dns.exception.DNSException:
        flags = (struct.unpack_from("!H", query, 2)[0] & 0x0100) | 0x8000 | dns.rcode.SERVFAIL
        return query[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)
    response = dns.message.make_response(request)
    response.set_rcode(dns.rcode.SERVFAIL)
    return response.to_wire()

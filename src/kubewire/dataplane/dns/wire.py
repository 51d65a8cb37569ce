"""DNS on the wire: reading queries, rendering answers, and the response cache that is the hot path.

Owns everything between a packet and :meth:`ClusterZone.lookup`: which packets are dropped or
refused and with which rcode, how an answer becomes bytes (EDNS, truncation), and the cache that
makes a repeated question cost a dictionary lookup and a byte splice.  The server in
``kubewire.agents`` owns sockets, forwarding and metrics; it calls :func:`answer` per packet.

Reading (:func:`parse_query`) is done by hand, because it runs for every packet: the header, the one
question and the additional section's OPT record, validated as miekg/dns (the library CoreDNS is built
on) and CoreDNS's server do, with a few stricter choices noted below:

* fewer than 12 bytes, or QR set: dropped (miekg/dns: no reply, "any reply can be used to amplify");
* opcode other than QUERY: NOTIMP (stricter: miekg/dns also lets NOTIFY through, and the kubernetes
  plugin would then answer it as a query);
* question count other than 1, more than 1 answer or authority record or more than 2 additional
  records: FORMERR (miekg/dns's message acceptance);
* a header and nothing else: SERVFAIL without a question (CoreDNS's answer to an empty question);
* a question name with a compression pointer or a label type other than 0, a name over 255 bytes, a
  question without its type and class, a record that overruns the packet, or two OPT records:
  FORMERR (stricter: miekg/dns would follow the pointer, accept a short question and use the last
  OPT; RFC 6891 asks for FORMERR on two);
* class other than IN: REFUSED (CoreDNS without the chaos plugin); EDNS version other than 0: BADVERS.

Rendering (:func:`render`) uses dnspython's renderer.  As CoreDNS: the reply copies RD and CD, sets AA
on the zone's answers and not RA; an EDNS query gets the OPT record back with its own payload size and
DO bit (CoreDNS echoes the request's OPT; options are not echoed here); UDP replies are cut to 512
bytes, or to the advertised payload when larger, record by record in section order, with TC set when
anything was left out (miekg/dns's Truncate); TCP replies are cut at 65,535.  Names are always
compressed (CoreDNS sends small replies uncompressed: the same message in fewer bytes).

The cache (:class:`ResponseCache`) keys a reply by everything that shapes its bytes except the id and
the name's case: lowercase question name, type, RD and CD, EDNS payload and DO, transport.  A reply is
rendered for the lowercase name; a hit copies the query's id and name bytes over it, and every name
compressed against the question takes the query's case with them (DNS 0x20 clients compare the
question only).  The whole cache is dropped when the zone's generation moves.  CoreDNS's default
Corefile shuffles address records (the ``loadbalance`` plugin); a cached answer with several
addresses keeps up to :data:`MAX_ROTATIONS` rotations of them and hands them out in turn.
"""

from __future__ import annotations

import struct
from typing import Literal, NamedTuple

import dns.exception
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.renderer
import dns.rrset

from kubewire.dataplane.dns.records import Answer, ClusterZone

Transport = Literal["udp", "tcp"]

QR, AA, TC, RD, RA, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010
OPCODE_MASK = 0x7800
ECHO_ON_REJECT = TC | RD | RA | AD | CD  # miekg/dns answers FORMERR/NOTIMP on the request's own header
ECHO_ON_REPLY = RD | CD  # miekg/dns's SetReply copies these two from a QUERY
MIN_UDP = 512  # RFC 1035's UDP limit; RFC 6891 reads smaller EDNS payloads as 512
MAX_TCP = 65535  # a TCP message's 2-byte length prefix
MAX_NAME = 255  # RFC 1035 §2.3.4, in wire bytes
MAX_LABEL = 63  # RFC 1035 §2.3.4; length bytes above it are pointers or extended label types
OPT_LEN = 11  # an OPT record without options: root name (1), type, class, TTL, rdlength (10)
MAX_ROTATIONS = 8  # distinct address orders kept per cached answer (loadbalance stand-in)
DO_BIT = 0x8000  # in the OPT TTL's flags half
BADVERS = 16  # RFC 6891's extended rcode: the OPT's high byte carries 16 >> 4 = 1

_HEADER = struct.Struct("!HHHHHH")
_HH = struct.Struct("!HH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, rdlength
_OPT_TYPE = dns.rdatatype.OPT
_IN = dns.rdataclass.IN
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


class Query(NamedTuple):
    """One query as read from the wire."""

    id: int
    flags: int
    name: bytes  # the question name's wire bytes as sent: labels, original case, no pointers
    qtype: int
    qclass: int
    payload: int = -1  # the advertised EDNS UDP payload size; -1 without an OPT record
    do: bool = False  # the EDNS DO bit
    edns_version: int = 0

    @property
    def qname(self) -> dns.name.Name:
        """The question name, lowercase (the form answers are looked up and rendered with)."""
        return dns.name.Name(_labels(self.name.lower()))

    @property
    def original_qname(self) -> dns.name.Name:
        """The question name in the case it was sent."""
        return dns.name.Name(_labels(self.name))


class Reject(NamedTuple):
    """A packet answered (or dropped) without looking at the zone."""

    response: bytes | None  # None: drop, there is nothing safe to answer
    rcode: int  # -1 when dropped
    qtype: int = 0  # the question's type when it could be read


class Result(NamedTuple):
    """What :func:`answer` did with one packet, with what the server needs for metrics.

    ``response`` is the reply to send.  When it is None: ``forward`` asks the server to pass the
    packet upstream; ``answer.chase`` asks it to resolve an ExternalName target and finish with
    :func:`~kubewire.dataplane.dns.records.complete_chase` and :func:`render`; otherwise the packet
    is dropped."""

    response: bytes | None
    qtype: int
    rcode: int  # the reply's rcode; -1 when there is no reply of ours
    cached: bool = False
    forward: bool = False
    query: Query | None = None
    answer: Answer | None = None


DROP = Reject(None, -1)


class _Malformed(Exception):
    pass


def _labels(wire: bytes) -> list[bytes]:
    out: list[bytes] = []
    p = 0
    while True:
        length = wire[p]
        if length == 0:
            out.append(b"")
            return out
        out.append(wire[p + 1 : p + 1 + length])
        p += length + 1


def _header(qid: int, flags: int, qd: int = 0, ar: int = 0) -> bytes:
    return _HEADER.pack(qid, flags, qd, 0, 0, ar)


def _opt(payload: int, ttl: int) -> bytes:
    return b"\x00" + _RR_FIXED.pack(_OPT_TYPE, payload, ttl, 0)


def _skip_name(data: bytes, p: int) -> int:
    """The offset after a name outside the question (pointers allowed, not followed)."""
    while True:
        length = data[p]
        if length == 0:
            return p + 1
        if length >= 0xC0:
            if p + 1 >= len(data):
                raise _Malformed
            return p + 2
        if length > MAX_LABEL:
            raise _Malformed
        p += length + 1


def _reject(qid: int, flags: int, rcode: int, qtype: int = 0, keep_opcode: bool = False) -> Reject:
    bits = QR | (flags & ECHO_ON_REJECT) | (flags & OPCODE_MASK if keep_opcode else 0) | rcode
    return Reject(_header(qid, bits), rcode, qtype)


def parse_query(data: bytes) -> Query | Reject:
    """Read one query; a :class:`Reject` when the packet is dropped or answered without the zone."""
    n = len(data)
    if n < 12:
        return DROP  # no header: no id to answer
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & QR:
        return DROP  # a response: answering it could loop or amplify
    if flags & OPCODE_MASK:
        return _reject(qid, flags, dns.rcode.NOTIMP, keep_opcode=True)
    if qd != 1 or an > 1 or ns > 1 or ar > 2:
        return _reject(qid, flags, dns.rcode.FORMERR)
    if n == 12:  # CoreDNS: an empty question section is SERVFAIL
        return Reject(_header(qid, QR | (flags & ECHO_ON_REPLY) | dns.rcode.SERVFAIL), dns.rcode.SERVFAIL)
    p = 12
    try:
        length = data[p]
        while length:
            if length > MAX_LABEL:
                return _reject(qid, flags, dns.rcode.FORMERR)
            p += length + 1
            length = data[p]
    except IndexError:
        return _reject(qid, flags, dns.rcode.FORMERR)
    end = p + 1
    if end - 12 > MAX_NAME or end + 4 > n:
        return _reject(qid, flags, dns.rcode.FORMERR)
    qtype, qclass = _HH.unpack_from(data, end)
    payload, do, version = -1, False, 0
    if an or ns or ar:
        try:
            p = end + 4
            for i in range(an + ns + ar):
                p = _skip_name(data, p)
                if p + 10 > n:
                    raise _Malformed
                rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, p)
                p += 10
                if p + rdlength > n:
                    raise _Malformed
                if i >= an + ns and rtype == _OPT_TYPE:
                    if payload >= 0:
                        raise _Malformed  # RFC 6891 §6.1.1: more than one OPT is FORMERR
                    payload, version, do = rclass, (ttl >> 16) & 0xFF, bool(ttl & DO_BIT)
                    q, stop = p, p + rdlength
                    while q < stop:  # options: code, length, data
                        if q + 4 > stop:
                            raise _Malformed
                        q += 4 + _HH.unpack_from(data, q)[1]
                    if q != stop:
                        raise _Malformed
                p += rdlength
        except (_Malformed, IndexError):
            # miekg/dns answers FORMERR on the request it managed to read: the question stays.
            bits = QR | (flags & ECHO_ON_REJECT) | dns.rcode.FORMERR
            return Reject(_header(qid, bits, qd=1) + data[12 : end + 4], dns.rcode.FORMERR, qtype)
    return Query(qid, flags, data[12:end], qtype, qclass, payload, do, version)


def error_reply(query: Query, rcode: int) -> bytes:
    """CoreDNS's errorFunc reply: ``rcode`` with the question and the request's OPT echoed, no AA.
    What the server sends when forwarding fails (SERVFAIL), as CoreDNS's forward plugin does."""
    flags = QR | (query.flags & ECHO_ON_REPLY) | (rcode & 0xF)
    question = query.name + _HH.pack(query.qtype, query.qclass)
    if query.payload < 0:
        return _header(query.id, flags, qd=1) + question
    return _header(query.id, flags, qd=1, ar=1) + question + _opt(query.payload, DO_BIT if query.do else 0)


def _badvers(query: Query) -> bytes:
    """CoreDNS's edns.Version: no question, an OPT of version 0 carrying BADVERS (payload 0, as there)."""
    flags = QR | (query.flags & ECHO_ON_REPLY)
    return _header(query.id, flags, ar=1) + _opt(0, (BADVERS >> 4) << 24)


def _rotated(rrsets: tuple[dns.rrset.RRset, ...], k: int) -> tuple[dns.rrset.RRset, ...]:
    out = []
    for rrset in rrsets:
        if rrset.rdtype in _ADDRESS_TYPES and len(rrset) > 1:
            items = list(rrset)
            shift = k % len(items)
            turned = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
            for rd in items[shift:] + items[:shift]:
                turned.add(rd, rrset.ttl)
            rrset = turned
        out.append(rrset)
    return tuple(out)


def _rotations(answer: Answer) -> int:
    longest = max((len(r) for r in answer.answer if r.rdtype in _ADDRESS_TYPES), default=1)
    return max(1, min(longest, MAX_ROTATIONS))


def _add(renderer: dns.renderer.Renderer, section: int, rrset: dns.rrset.RRset) -> bool:
    """Add an RRset, record by record when it does not fit whole; False once something was left out."""
    try:
        renderer.add_rrset(section, rrset, want_shuffle=False)  # type: ignore[no-untyped-call]
        return True
    except dns.exception.TooBig:
        pass
    for rd in rrset:
        single = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
        single.add(rd, rrset.ttl)
        try:
            renderer.add_rrset(section, single, want_shuffle=False)  # type: ignore[no-untyped-call]
        except dns.exception.TooBig:
            return False
    return True


def _render_lower(query: Query, answer: Answer, tcp: bool, rotation: int = 0) -> bytes:
    """The reply for the lowercase question name (the form the cache stores)."""
    if tcp:
        limit = MAX_TCP
    else:
        limit = max(MIN_UDP, query.payload) if query.payload >= 0 else MIN_UDP
    flags = QR | (query.flags & ECHO_ON_REPLY) | (answer.rcode & 0xF)
    if answer.authoritative:
        flags |= AA
    renderer = dns.renderer.Renderer(query.id, flags, limit)  # type: ignore[no-untyped-call]
    renderer.add_question(query.qname, query.qtype, query.qclass)  # type: ignore[no-untyped-call]
    if query.payload >= 0:
        renderer.reserve(OPT_LEN)
    sections = (
        (dns.renderer.ANSWER, _rotated(answer.answer, rotation) if rotation else answer.answer),
        (dns.renderer.AUTHORITY, answer.authority),
        (dns.renderer.ADDITIONAL, answer.additional),
    )
    complete = all(_add(renderer, section, rrset) for section, rrsets in sections for rrset in rrsets)
    if query.payload >= 0:
        renderer.release_reserved()
        renderer.add_edns(0, DO_BIT if query.do else 0, query.payload)  # type: ignore[no-untyped-call]
    if answer.truncated or not complete:
        renderer.flags |= TC
    renderer.write_header()  # type: ignore[no-untyped-call]
    wire: bytes = renderer.get_wire()  # type: ignore[no-untyped-call]
    return wire


def render(query: Query, answer: Answer, transport: Transport = "udp", rotation: int = 0) -> bytes:
    """The reply to ``query`` carrying ``answer`` (not a forward): the server's path for completed
    chases; :func:`answer` uses it for everything else."""
    wire = _render_lower(query, answer, transport == "tcp", rotation)
    return wire[:12] + query.name + wire[12 + len(query.name) :]


_Key = tuple[bytes, int, int, int, bool, bool]


class _Entry(NamedTuple):
    variants: list[tuple[bytes, bytes] | None]  # (header after the id, bytes after the name) per rotation
    rcode: int
    answer: Answer | None  # None: the name is not ours (forward)


class ResponseCache:
    """Rendered replies by question, valid for one generation of the zone.

    Holds at most ``max_entries`` replies, dropping the oldest first: random names (an NXDOMAIN
    flood) cannot grow it without bound.  Forward decisions are cached too, so a name that is not
    ours costs a dictionary lookup the second time."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self.generation = -1
        self._entries: dict[_Key, _Entry] = {}
        self._tick = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def _sync(self, generation: int) -> None:
        if generation != self.generation:
            self._entries.clear()
            self.generation = generation

    def _put(self, key: _Key, entry: _Entry) -> None:
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = entry


def answer(zone: ClusterZone, data: bytes, transport: Transport = "udp", cache: ResponseCache | None = None) -> Result:
    """Answer one packet: never raises on what the network sends."""
    q = parse_query(data)
    if isinstance(q, Reject):
        return Result(q.response, q.qtype, q.rcode)
    if q.qclass != _IN:
        return Result(error_reply(q, dns.rcode.REFUSED), q.qtype, dns.rcode.REFUSED, query=q)
    if q.payload >= 0 and q.edns_version:
        return Result(_badvers(q), q.qtype, BADVERS, query=q)
    try:
        return _answer(zone, q, data, transport == "tcp", cache)
    except Exception:
        # CoreDNS's server recovers from a panic in a plugin with SERVFAIL; so does this.
        return Result(error_reply(q, dns.rcode.SERVFAIL), q.qtype, dns.rcode.SERVFAIL, query=q)


def _answer(zone: ClusterZone, q: Query, data: bytes, tcp: bool, cache: ResponseCache | None) -> Result:
    if cache is None:
        return _miss(zone, q, data, tcp, None, None)
    cache._sync(zone.generation)
    key = (q.name.lower(), q.qtype, q.flags & ECHO_ON_REPLY, q.payload, q.do, tcp)
    entry = cache._entries.get(key)
    if entry is None:
        return _miss(zone, q, data, tcp, cache, key)
    if entry.answer is None:
        return Result(None, q.qtype, -1, True, True, q)
    variants = entry.variants
    i = 0
    if len(variants) > 1:
        i = cache._tick % len(variants)
        cache._tick += 1
    parts = variants[i]
    if parts is None:  # a rotation not handed out yet
        wire = _render_lower(q, entry.answer, tcp, i)
        parts = variants[i] = (wire[2:12], wire[12 + len(q.name) :])
    return Result(b"".join((data[:2], parts[0], q.name, parts[1])), q.qtype, entry.rcode, True)


def _miss(zone: ClusterZone, q: Query, data: bytes, tcp: bool, cache: ResponseCache | None, key: _Key | None) -> Result:
    result = zone.lookup(q.qname, q.qtype)
    if result.forward:
        if cache is not None and key is not None:
            cache._put(key, _Entry([], -1, None))
        return Result(None, q.qtype, -1, False, True, q, result)
    if result.chase is not None:
        return Result(None, q.qtype, result.rcode, False, False, q, result)
    wire = _render_lower(q, result, tcp)
    parts = (wire[2:12], wire[12 + len(q.name) :])
    if cache is not None and key is not None:
        slots: list[tuple[bytes, bytes] | None] = [parts]
        slots.extend([None] * (_rotations(result) - 1))
        cache._put(key, _Entry(slots, result.rcode, result))
    return Result(b"".join((data[:2], parts[0], q.name, parts[1])), q.qtype, result.rcode, False, False, q, result)


__all__ = [
    "DROP",
    "MAX_ROTATIONS",
    "Query",
    "Reject",
    "ResponseCache",
    "Result",
    "answer",
    "error_reply",
    "parse_query",
    "render",
]

"""The DNS server's Prometheus metrics, under CoreDNS's names and labels.

So a CoreDNS dashboard works against kubewire's DNS pods: ``coredns_dns_requests_total`` (server,
zone, view, proto, family, type), ``coredns_dns_responses_total`` (server, zone, view, rcode,
plugin), ``coredns_dns_request_duration_seconds`` (server, zone, view, type; CoreDNS's buckets:
exponential from 0.25 ms, ×2, 16 of them), ``coredns_cache_hits_total`` / ``coredns_cache_misses_total``,
``coredns_forward_requests_total``, ``coredns_build_info`` and ``coredns_plugin_enabled``.  Query
types outside CoreDNS's monitored list are counted as ``other``, as CoreDNS does.

Recording is a few dictionary increments per query (it sits on the hot path); text is built only
when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from kubewire.agents.promtext import Histogram, exponential

VERSION = "1.11.3"
DURATION_BUCKETS = exponential(0.00025, 2, 16)
# CoreDNS's plugin/pkg/dnstest monitored types; anything else is "other".
MONITORED = {
    1: "A",
    28: "AAAA",
    5: "CNAME",
    12: "PTR",
    33: "SRV",
    6: "SOA",
    2: "NS",
    15: "MX",
    16: "TXT",
    255: "ANY",
    43: "DS",
    48: "DNSKEY",
    46: "RRSIG",
    47: "NSEC",
    50: "NSEC3",
    65: "HTTPS",
    64: "SVCB",
    252: "AXFR",
    251: "IXFR",
    99: "SPF",
    35: "NAPTR",
    257: "CAA",
}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def type_name(qtype: int) -> str:
    return MONITORED.get(qtype, "other")


class DnsMetrics:
    """Counters and histograms for one server (``dns://:53``)."""

    def __init__(self, server: str, plugins: Iterable[str], zones: Iterable[str]) -> None:
        self.server = server
        self.plugins = tuple(plugins)
        self.zones = tuple(zones)
        self.requests: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)  # zone, proto, family, type
        self.responses: defaultdict[tuple[str, str, str], int] = defaultdict(int)  # zone, rcode, plugin
        self.durations: dict[tuple[str, str], Histogram] = {}  # zone, type
        self.cache_hits: defaultdict[str, int] = defaultdict(int)  # success | denial
        self.cache_misses = 0
        self.forward_requests: defaultdict[str, int] = defaultdict(int)  # upstream
        self.panics = 0

    def record(self, zone: str, proto: str, family: str, qtype: int, rcode: int, plugin: str, seconds: float) -> None:
        name = MONITORED.get(qtype, "other")
        self.requests[(zone, proto, family, name)] += 1
        self.responses[(zone, RCODES.get(rcode, str(rcode)), plugin)] += 1
        hist = self.durations.get((zone, name))
        if hist is None:
            hist = self.durations[(zone, name)] = Histogram(DURATION_BUCKETS)
        hist.observe(seconds)

    def render(self) -> bytes:
        s = f'server="{self.server}"'
        lines = [
            "# HELP coredns_build_info A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
            "# TYPE coredns_build_info gauge",
            f'coredns_build_info{{goversion="kubewire",revision="kubewire",version="{VERSION}"}} 1',
            "# HELP coredns_plugin_enabled A metric that indicates whether a plugin is enabled on per server and zone basis.",
            "# TYPE coredns_plugin_enabled gauge",
        ]
        lines += [
            f'coredns_plugin_enabled{{name="{p}",{s},view="",zone="{z}"}} 1' for z in self.zones for p in self.plugins
        ]
        lines += [
            "# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.",
            "# TYPE coredns_dns_requests_total counter",
        ]
        lines += [
            f'coredns_dns_requests_total{{family="{f}",proto="{p}",{s},type="{t}",view="",zone="{z}"}} {n}'
            for (z, p, f, t), n in sorted(self.requests.items())
        ]
        lines += [
            "# HELP coredns_dns_responses_total Counter of response status codes.",
            "# TYPE coredns_dns_responses_total counter",
        ]
        lines += [
            f'coredns_dns_responses_total{{plugin="{pl}",rcode="{r}",{s},view="",zone="{z}"}} {n}'
            for (z, r, pl), n in sorted(self.responses.items())
        ]
        first = True
        for (z, t), hist in sorted(self.durations.items()):
            lines += hist.render(
                "coredns_dns_request_duration_seconds",
                "Histogram of the time (in seconds) each request took per zone.",
                f'{s},type="{t}",view="",zone="{z}"',
                header=first,
            )
            first = False
        lines += [
            "# HELP coredns_cache_hits_total The count of cache hits.",
            "# TYPE coredns_cache_hits_total counter",
        ]
        lines += [
            f'coredns_cache_hits_total{{{s},type="{t}",view="",zones="."}} {self.cache_hits[t]}'
            for t in ("denial", "success")
        ]
        lines += [
            "# HELP coredns_cache_misses_total The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
            "# TYPE coredns_cache_misses_total counter",
            f'coredns_cache_misses_total{{{s},view="",zones="."}} {self.cache_misses}',
            "# HELP coredns_forward_requests_total Counter of requests made per upstream.",
            "# TYPE coredns_forward_requests_total counter",
        ]
        lines += [f'coredns_forward_requests_total{{to="{to}"}} {n}' for to, n in sorted(self.forward_requests.items())]
        lines += [
            "# HELP coredns_panics_total A metrics that counts the number of panics.",
            "# TYPE coredns_panics_total counter",
            f"coredns_panics_total {self.panics}",
        ]
        return ("\n".join(lines) + "\n").encode()

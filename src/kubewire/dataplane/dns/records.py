"""The cluster zone: what the Kubernetes DNS specification says exists, answered as CoreDNS answers it.

Owns the records kubewire's DNS server serves and every decision about them.  Services,
EndpointSlices (discovery.k8s.io/v1), Pods and Namespaces arrive as wire-form dicts and are compiled
per Service into :class:`ServiceRecords` (the ClusterIPs, ports and published endpoints CoreDNS's
``kubernetes`` plugin keeps of them), so a change to one Service costs that Service
(:meth:`ClusterZone.update`, the same shape as the proxy's ``SnapshotCache.update``).
:meth:`ClusterZone.lookup` answers one question with an :class:`Answer` (rcode, answer, authority and
additional sections) or says the name is not ours (``forward``).

Behaviour follows CoreDNS (``plugin/kubernetes`` and ``plugin/backend_lookup.go``) with the plugin's
defaults and the stanza of CoreDNS's default Corefile, ``kubernetes cluster.local in-addr.arpa
ip6.arpa { fallthrough in-addr.arpa ip6.arpa }``; the upstream rules that surprise are named where
they are implemented.  In short:

* names parse as ``[endpoint | _port._proto.]service.namespace.svc.zone`` and
  ``pod.namespace.pod.zone``; anything else under the zone is NXDOMAIN, except the apex,
  ``svc.zone``, ``pod.zone`` and an existing ``namespace.svc.zone`` (NODATA);
* A/AAAA: a ClusterIP Service answers all its ClusterIPs of the family; a headless one its published
  endpoints (ready, as CoreDNS filters slices; or all under ``publishNotReadyAddresses``), NXDOMAIN
  when there are none; ``endpoint.service...`` answers the endpoints whose hostname (or dashed
  address) is ``endpoint``, for any Service; ExternalName gives a CNAME, chased inside the zone and
  otherwise handed to the server (:class:`Chase`), as CoreDNS asks its upstream;
* SRV: one per (endpoint or ClusterIP, matching port), target ``service...`` or
  ``hostname.service...``, priority 0 and weight ``floor(100 / n)`` over the n matches (as
  CoreDNS's ``plugin.SRV``), address records for the targets in the additional section;
* PTR: a ClusterIP maps to its Service, else an endpoint address to ``hostname.service...``;
* TXT ``dns-version.zone`` is "1.1.0" with TTL 28800 (CoreDNS's constant, not the zone TTL); other
  TXT questions are NODATA (CoreDNS never looks further for TXT);
* SOA answers only at the apex (elsewhere NODATA); NS at the apex names ``ns.dns.zone`` with glue;
  ``ns.dns.zone`` answers A/AAAA with the DNS Service's addresses; AXFR/IXFR are REFUSED;
* every other type is NODATA or NXDOMAIN by whether an A question for the name would be a name
  error; negative answers carry the zone's SOA;
* a name error in a reverse zone is not ours (``forward``), as the default Corefile's
  ``fallthrough in-addr.arpa ip6.arpa`` passes it on.

Wildcard labels (``*``) are not special: CoreDNS removed wildcard queries in 1.9.0, and ``*`` as a
label matches nothing, so such names are NXDOMAIN.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.rrset

from kubewire.api.discovery import ServiceKey, change_signature, object_key, slices_by_service

Obj = dict[str, Any]
PodsMode = Literal["disabled", "insecure", "verified"]

SCHEMA_VERSION = "1.1.0"  # the DNS specification version CoreDNS reports
SCHEMA_TTL = 28800  # CoreDNS's fixed TTL for dns-version.<zone> TXT, whatever the zone TTL
MAX_TTL = 3600  # CoreDNS's `ttl` option accepts 0..3600 seconds
SOA_TTL_CAP = 300  # CoreDNS's plugin.SOA: the SOA record's TTL is min(zone TTL, 300)
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400  # CoreDNS's plugin.SOA constants
MAX_CNAME_CHAIN = 7  # CoreDNS stops following in-zone CNAMEs after 8 records (previousRecords > 7)
POD_PHASES_GONE = frozenset({"Succeeded", "Failed", "Unknown"})  # CoreDNS's pod watch field selector

_IN = dns.rdataclass.IN
_A, _AAAA = dns.rdatatype.A, dns.rdatatype.AAAA
_POD_LABEL = re.compile(r"[0-9a-f-]+")  # a dashed IPv4 or IPv6 address, lowercase


@dataclass(frozen=True)
class DnsSettings:
    """How the zone is served: CoreDNS's ``kubernetes`` plugin options that matter to answers."""

    zone: str = "cluster.local"
    ttl: int = 5  # CoreDNS's default; kubeadm's Corefile sets 30
    pods: PodsMode = "disabled"  # CoreDNS's default; kubeadm's Corefile sets insecure
    dns_ips: tuple[str, ...] = ("10.96.0.10",)  # the DNS Service's addresses: NS glue, ns.dns.<zone>
    # The Service the server answers behind, as (namespace, name): CoreDNS names its NS record after
    # it (``kube-dns.kube-system.svc.<zone>``) when it finds its own pod among that Service's
    # endpoints; None keeps CoreDNS's fallback name, ``ns.dns.<zone>``.
    dns_service: tuple[str, str] | None = None
    reverse_zones: tuple[str, ...] = ("in-addr.arpa", "ip6.arpa")
    fallthrough_reverse: bool = True  # the default Corefile's `fallthrough in-addr.arpa ip6.arpa`

    def __post_init__(self) -> None:
        if not 0 <= self.ttl <= MAX_TTL:
            raise ValueError(f"ttl must be within 0..{MAX_TTL}, not {self.ttl}")
        if self.pods not in ("disabled", "insecure", "verified"):
            raise ValueError(f"pods must be disabled, insecure or verified, not {self.pods!r}")
        for ip in self.dns_ips:
            ipaddress.ip_address(ip)  # raises ValueError on a bad address
        for z in (self.zone, *self.reverse_zones):
            dns.name.from_text(z)  # raises on a bad name


class Port(NamedTuple):
    """A Service or EndpointSlice port as CoreDNS matches it: name and protocol compare without case."""

    name: str  # lowercase; "" when unnamed
    protocol: str  # lowercase: tcp, udp or sctp
    port: int  # -1: CoreDNS's sentinel for "no ports", so a portless Service still has addresses


NO_PORTS = (Port("", "", -1),)


class Address(NamedTuple):
    """One published endpoint address and the hostname its records live under."""

    ip: str  # canonical text
    hostname: str  # the endpoint's hostname, else the address with '.' or ':' as '-' (lowercase)


class Subset(NamedTuple):
    """One EndpointSlice's published addresses and its ports (CoreDNS's Cartesian product)."""

    addresses: tuple[Address, ...]
    ports: tuple[Port, ...]


class ServiceRecords(NamedTuple):
    """Everything DNS keeps of one Service: what CoreDNS's object.Service and Endpoints keep."""

    namespace: str
    name: str
    kind: Literal["ClusterIP", "Headless", "ExternalName"]
    cluster_ips: tuple[str, ...] = ()  # canonical, this Service's every family (ClusterIP kind)
    external_name: str = ""  # the CNAME target (ExternalName kind; "" when it is an address)
    ports: tuple[Port, ...] = NO_PORTS
    subsets: tuple[Subset, ...] = ()  # published endpoints, by slice name


class Chase(NamedTuple):
    """An ExternalName target outside the zone: the server resolves ``target`` for ``qtype`` the way it
    resolves a client's question (our zones, else upstream) and calls :func:`complete_chase`."""

    target: dns.name.Name
    qtype: int
    on_failure: Answer  # the answer if that resolution fails (CoreDNS then drops the CNAME: NODATA)


@dataclass(frozen=True)
class Answer:
    """One answer: rcode and sections, or ``forward`` (not ours: the server passes the question on)."""

    rcode: int = dns.rcode.NOERROR
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()
    authoritative: bool = True
    forward: bool = False
    chase: Chase | None = None
    truncated: bool = False  # set when a chased upstream answer was truncated


FORWARD = Answer(forward=True, authoritative=False)
REFUSED = Answer(rcode=dns.rcode.REFUSED, authoritative=False)


def complete_chase(answer: Answer, upstream: Sequence[dns.rrset.RRset] | None, truncated: bool = False) -> Answer:
    """The final answer once the server resolved ``answer.chase``: the CNAME chain followed by the
    upstream answer section (``upstream``), or ``on_failure`` when the resolution failed (None).
    An upstream NXDOMAIN is not a failure: CoreDNS then answers the CNAMEs alone."""
    if answer.chase is None:
        return answer
    if upstream is None:
        return answer.chase.on_failure
    return replace(answer, answer=answer.answer + tuple(upstream), chase=None, truncated=answer.truncated or truncated)


# --- compiling wire objects ---------------------------------------------------------------------


def canonical_ip(text: str) -> str | None:
    """The canonical text of an address (as Go's net.IP.String prints it), or None."""
    if not text or "%" in text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)  # Go prints IPv4-mapped IPv6 addresses dotted
    return ip.compressed


def _family(ip: str) -> int:
    return 6 if ":" in ip else 4


def _dashed(ip: str) -> str:
    """CoreDNS's endpointHostname for an address without hostname: '.' or ':' replaced by '-'."""
    return ip.replace(".", "-") if "." in ip else ip.replace(":", "-")


def _ports(raw: Iterable[Mapping[str, Any]] | None) -> tuple[Port, ...]:
    ports = tuple(
        Port(
            str(p.get("name") or "").lower(),
            str(p.get("protocol") or "").lower(),
            int(p["port"]) if p.get("port") is not None else -1,  # CoreDNS: a nil slice port is -1
        )
        for p in raw or []
    )
    return ports or NO_PORTS


def _subset(sl: Mapping[str, Any], publish_not_ready: bool) -> Subset | None:
    if sl.get("addressType") not in ("IPv4", "IPv6"):
        return None  # FQDN slices hold names, not addresses
    addresses: list[Address] = []
    for ep in sl.get("endpoints") or []:
        ready = (ep.get("conditions") or {}).get("ready")
        # CoreDNS publishes ready endpoints (nil reads as ready).  The EndpointSlice controller marks
        # every endpoint ready under publishNotReadyAddresses; honouring the flag here too keeps
        # hand-written slices to the Service's intent.
        if ready is False and not publish_not_ready:
            continue
        hostname = str(ep.get("hostname") or "").lower()
        for raw in ep.get("addresses") or []:
            ip = canonical_ip(str(raw))
            if ip is not None:
                addresses.append(Address(ip, hostname or _dashed(ip)))
    if not addresses:
        return None
    return Subset(tuple(addresses), _ports(sl.get("ports")))


def compile_service(service: Obj, slices: Iterable[Obj]) -> ServiceRecords:
    """What DNS keeps of one Service and its EndpointSlices."""
    meta, spec = service.get("metadata") or {}, service.get("spec") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    if spec.get("type") == "ExternalName":
        target = str(spec.get("externalName") or "")
        # CoreDNS keeps an ExternalName only when it is a name: an address there answers nothing.
        if canonical_ip(target) is not None:
            target = ""
        return ServiceRecords(namespace, name, "ExternalName", external_name=target)
    ips = [str(ip) for ip in spec.get("clusterIPs") or []] or [str(spec.get("clusterIP") or "")]
    ports = _ports(spec.get("ports"))
    publish = bool(spec.get("publishNotReadyAddresses"))
    ordered = sorted(slices, key=lambda s: str((s.get("metadata") or {}).get("name") or ""))
    subsets = tuple(sub for sl in ordered if (sub := _subset(sl, publish)) is not None)
    if ips[0] == "None":  # CoreDNS's Service.Headless: the first ClusterIP is None
        return ServiceRecords(namespace, name, "Headless", ports=ports, subsets=subsets)
    # A ClusterIP Service keeps its endpoints too: endpoint names and PTRs answer for any Service.
    cluster_ips = tuple(ip for raw in ips if (ip := canonical_ip(raw)) is not None)
    return ServiceRecords(namespace, name, "ClusterIP", cluster_ips=cluster_ips, ports=ports, subsets=subsets)


def _pod_entry(pod: Obj | None) -> tuple[str, str] | None:
    """(namespace, status.podIP) of a pod CoreDNS would index, else None.

    CoreDNS indexes the primary podIP only and watches pods outside Succeeded/Failed/Unknown.  It
    ignores a pod's update once it is terminating, so a pod it knew keeps answering until deleted;
    that steady state is what is kept here (terminating pods still answer)."""
    if pod is None:
        return None
    status = pod.get("status") or {}
    ip = str(status.get("podIP") or "")
    if canonical_ip(ip) is None or status.get("phase") in POD_PHASES_GONE:
        return None
    return (str((pod.get("metadata") or {}).get("namespace") or ""), ip)


# --- answering ----------------------------------------------------------------------------------


class _Zone(NamedTuple):
    labels: tuple[bytes, ...]  # lowercase wire labels, ending with the root label b""
    text: tuple[str, ...]  # the same without the root, for building names
    name: dns.name.Name
    reverse: bool


class _Item(NamedTuple):
    """CoreDNS's msg.Service: a host (address or name), a port and the name it lives under."""

    host: str
    port: int
    where: tuple[str, ...]  # labels of the name: SRV target and glue owner (zone included)
    family: int  # 4 or 6 for an address, 0 for a name (a CNAME target)


_RR = tuple[dns.name.Name, int, int, dns.rdata.Rdata]  # owner, type, TTL, rdata


def _name(labels: Sequence[str]) -> dns.name.Name:
    return dns.name.Name([*(label.encode("latin-1") for label in labels), b""])


def _fits(labels: Sequence[str]) -> bool:
    """Whether labels make a name within DNS limits (an endpoint hostname, Service and namespace of
    63 characters each under a long zone do not; such records are left out)."""
    return all(0 < len(label) <= 63 for label in labels) and sum(len(x) + 1 for x in labels) + 1 <= 255


def _address_rdata(ip: str) -> dns.rdata.Rdata:
    if ":" in ip:
        return dns.rdtypes.IN.AAAA.AAAA(_IN, _AAAA, ip)  # type: ignore[no-untyped-call]
    return dns.rdtypes.IN.A.A(_IN, _A, ip)  # type: ignore[no-untyped-call]


def _match_port(want_port: str, port: Port, want_proto: str) -> bool:
    """CoreDNS's matchPortAndProtocol: an empty wanted value matches anything."""
    return (not want_port or want_port == port.name) and (not want_proto or want_proto == port.protocol)


def _strip_underscore(label: str) -> str:
    return label[1:] if label.startswith("_") else label


def _pod_ip(label: str) -> str:
    """CoreDNS's reading of a pod label: three dashes and no '--' is IPv4, else IPv6."""
    if label.count("-") == 3 and "--" not in label:
        return label.replace("-", ".")
    return label.replace("-", ":")


def reverse_address(labels: Sequence[bytes]) -> str | None:
    """The address an ``in-addr.arpa`` / ``ip6.arpa`` name stands for (CoreDNS's
    ExtractAddressFromReverse), canonical, or None.  ``labels`` are lowercase and end with root."""
    if len(labels) >= 4 and labels[-3:] == (b"in-addr", b"arpa", b""):
        octets = labels[:-3]
        if not all(p.isdigit() for p in octets):
            return None  # Go's parser only takes dotted decimal here
        ip = canonical_ip(".".join(p.decode("ascii") for p in reversed(octets)))
        return ip if ip is not None and ":" not in ip else None
    if len(labels) >= 4 and labels[-3:] == (b"ip6", b"arpa", b""):
        parts = [p.decode("latin-1") for p in reversed(labels[:-3])]
        if not all(re.fullmatch(r"[0-9a-f]+", p) for p in parts):
            return None
        groups = ["".join(parts[i : i + 4]) for i in range(0, len(parts) - len(parts) % 4, 4)]
        return canonical_ip(":".join(groups))
    return None


class ClusterZone:
    """The served zones and their records, updated incrementally, answering questions.

    Feed it with :meth:`build` (every Service and EndpointSlice: the first sync) then :meth:`update`
    (the Services that may have changed), pods with :meth:`set_pods` / :meth:`update_pods` and
    namespaces with :meth:`set_namespaces`.  :attr:`generation` grows whenever an answer may have
    changed (response caches compare it); :attr:`serial` is the SOA serial, the time of the last
    change in seconds as CoreDNS keeps it.  Until :attr:`synced` is set, name errors are SERVFAIL
    (CoreDNS: not yet synchronised with the API)."""

    def __init__(
        self,
        settings: DnsSettings | None = None,
        *,
        synced: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or DnsSettings()
        self._clock = clock
        self.generation = 0
        self.serial = int(clock()) & 0xFFFFFFFF
        self._synced = synced
        self._services: dict[ServiceKey, ServiceRecords] = {}
        self._signatures: dict[ServiceKey, tuple[str, ...]] = {}
        self._by_cluster_ip: dict[str, set[ServiceKey]] = {}
        self._by_endpoint_ip: dict[str, set[ServiceKey]] = {}
        self._pods: dict[ServiceKey, tuple[str, str]] = {}
        self._pod_ips: Counter[tuple[str, str]] = Counter()
        self._namespaces: frozenset[str] | None = None
        self._soa_sets: dict[dns.name.Name, tuple[int, tuple[dns.rrset.RRset, ...]]] = {}
        zones = [self.settings.zone, *self.settings.reverse_zones]
        self._zones = [self._make_zone(z, reverse=i > 0) for i, z in enumerate(zones)]
        self._zones.sort(key=lambda z: -len(z.labels))  # longest match first, as plugin.Zones.Matches
        self._cluster = next(z for z in self._zones if not z.reverse)

    @staticmethod
    def _make_zone(text: str, reverse: bool) -> _Zone:
        name = dns.name.from_text(text).canonicalize()
        labels = tuple(name.labels)
        return _Zone(labels, tuple(x.decode("latin-1") for x in labels[:-1]), name, reverse)

    # --- state ---------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced

    @synced.setter
    def synced(self, value: bool) -> None:
        if value != self._synced:
            self._synced = value
            self._changed()

    def _changed(self) -> None:
        self.generation += 1
        self.serial = int(self._clock()) & 0xFFFFFFFF

    def services(self) -> Mapping[ServiceKey, ServiceRecords]:
        """Every Service's records, by (namespace, name) (a read-only view)."""
        return self._services

    def _index(self, key: ServiceKey, records: ServiceRecords, add: bool) -> None:
        ips = {address.ip for sub in records.subsets for address in sub.addresses}
        for index, values in ((self._by_cluster_ip, records.cluster_ips), (self._by_endpoint_ip, ips)):
            for ip in values:
                if add:
                    index.setdefault(ip, set()).add(key)
                else:
                    keys = index.get(ip)
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del index[ip]

    def _refresh(self, key: ServiceKey, service: Obj | None, slices: list[Obj]) -> bool:
        """Bring one Service up to date; True when its records changed."""
        if service is None:
            self._signatures.pop(key, None)
            old = self._services.pop(key, None)
            if old is None:
                return False
            self._index(key, old, add=False)
            return True
        signature = change_signature(service, slices)
        if self._signatures.get(key) == signature:
            return False
        self._signatures[key] = signature
        new = compile_service(service, slices)
        old = self._services.get(key)
        if old == new:
            return False
        if old is not None:
            self._index(key, old, add=False)
        self._services[key] = new
        self._index(key, new, add=True)
        return True

    def build(self, services: Iterable[Obj], slices: Iterable[Obj]) -> set[ServiceKey]:
        """Read every Service and EndpointSlice; the keys of the Services whose records changed."""
        grouped = slices_by_service(slices)
        present = {object_key(svc): svc for svc in services}
        gone = [k for k in self._services if k not in present]
        changed = {k for k in [*present, *gone] if self._refresh(k, present.get(k), grouped.get(k, []))}
        if changed:
            self._changed()
        return changed

    def update(
        self,
        keys: Iterable[ServiceKey],
        service_of: Callable[[ServiceKey], Obj | None],
        slices_of: Callable[[ServiceKey], list[Obj]],
    ) -> set[ServiceKey]:
        """The Services ``keys`` (and only they) may have changed: each is read again through
        ``service_of`` (None when gone) and ``slices_of``.  Returns the keys whose records changed."""
        changed = set()
        for key in keys:
            service = service_of(key)
            if self._refresh(key, service, slices_of(key) if service is not None else []):
                changed.add(key)
        if changed:
            self._changed()
        return changed

    def _pods_changed(self) -> None:
        if self.settings.pods == "verified":  # only verified answers read pods
            self._changed()

    def set_pods(self, pods: Iterable[Obj]) -> bool:
        """Replace every pod; True when pod answers may have changed."""
        entries: dict[ServiceKey, tuple[str, str]] = {}
        for pod in pods:
            entry = _pod_entry(pod)
            if entry is not None:
                meta = pod.get("metadata") or {}
                entries[(str(meta.get("namespace") or ""), str(meta.get("name") or ""))] = entry
        if entries == self._pods:
            return False
        self._pods = entries
        self._pod_ips = Counter(entries.values())
        self._pods_changed()
        return True

    def update_pods(self, keys: Iterable[ServiceKey], pod_of: Callable[[ServiceKey], Obj | None]) -> bool:
        """The pods ``keys`` may have changed (``pod_of`` gives each, None when gone)."""
        changed = False
        for key in keys:
            new, old = _pod_entry(pod_of(key)), self._pods.get(key)
            if new == old:
                continue
            changed = True
            if old is not None:
                self._pod_ips[old] -= 1
                if self._pod_ips[old] <= 0:
                    del self._pod_ips[old]
                del self._pods[key]
            if new is not None:
                self._pods[key] = new
                self._pod_ips[new] += 1
        if changed:
            self._pods_changed()
        return changed

    def set_namespaces(self, names: Iterable[str] | None) -> bool:
        """The namespaces that exist (CoreDNS watches them: ``ns.svc.zone`` is NODATA only for one that
        exists, and names in a missing one are NXDOMAIN).  None, the default, treats every namespace
        as existing."""
        new = None if names is None else frozenset(names)
        if new == self._namespaces:
            return False
        self._namespaces = new
        self._changed()
        return True

    # --- lookup ---------------------------------------------------------------------------------

    def zone_of(self, qname: dns.name.Name) -> dns.name.Name | None:
        """The served zone ``qname`` falls in (longest match), or None when the name is not ours."""
        zone = self._zone_for(tuple(label.lower() for label in qname.labels))
        return zone.name if zone is not None else None

    def _zone_for(self, labels: tuple[bytes, ...]) -> _Zone | None:
        for zone in self._zones:
            if labels[len(labels) - len(zone.labels) :] == zone.labels:
                return zone
        return None

    def lookup(self, qname: dns.name.Name, qtype: int) -> Answer:
        """The answer to ``qname``/``qtype`` (class IN).  Owner names echo ``qname`` as given."""
        if not qname.is_absolute():
            qname = qname.concatenate(dns.name.root)
        labels = tuple(label.lower() for label in qname.labels)
        zone = self._zone_for(labels)
        if zone is None:
            return FORWARD
        rel = tuple(label.decode("latin-1") for label in labels[: len(labels) - len(zone.labels)])
        records: list[_RR] = []
        extra: list[_RR] = []
        error = False
        chase: dns.name.Name | None = None
        if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return REFUSED  # zone transfers are the transfer plugin's, which the default Corefile lacks
        if qtype in (_A, _AAAA):
            records, error, chase = self._address(qname, rel, zone, qtype, ())
        elif qtype == dns.rdatatype.TXT:
            if rel == ("dns-version",):
                txt = dns.rdtypes.ANY.TXT.TXT(_IN, dns.rdatatype.TXT, [SCHEMA_VERSION.encode()])  # type: ignore[no-untyped-call]
                records = [(qname, dns.rdatatype.TXT, SCHEMA_TTL, txt)]
        elif qtype == dns.rdatatype.CNAME:
            records, error = self._cname(qname, rel, zone)
        elif qtype == dns.rdatatype.PTR:
            records, error = self._ptr(qname, labels, rel, zone)
        elif qtype == dns.rdatatype.MX:
            _, error = self._items(rel, zone, qtype)  # Kubernetes has no mail records
        elif qtype == dns.rdatatype.SRV:
            records, extra, error = self._srv(qname, rel, zone)
        elif qtype == dns.rdatatype.SOA:
            records = [self._soa(zone)] if not rel else []
        elif qtype == dns.rdatatype.NS and not rel:
            records, extra = self._ns(qname, zone)
        else:
            # CoreDNS: "do a fake A lookup, so we can distinguish between NODATA and NXDOMAIN"
            _, error, _ = self._address(qname, rel, zone, _A, ())
        if error:
            if zone.reverse and self.settings.fallthrough_reverse:
                return FORWARD
            rcode = dns.rcode.NXDOMAIN if self._synced else dns.rcode.SERVFAIL
            return Answer(rcode, authority=self._negative(zone))
        if not records:
            return Answer(authority=self._negative(zone))
        answer = Answer(answer=_rrsets(records), additional=_rrsets(extra))
        if chase is not None:
            answer = replace(answer, chase=Chase(chase, qtype, Answer(authority=self._negative(zone))))
        return answer

    def _negative(self, zone: _Zone) -> tuple[dns.rrset.RRset, ...]:
        """The authority section of a negative answer (the SOA), built once per generation."""
        cached = self._soa_sets.get(zone.name)
        if cached is None or cached[0] != self.generation:
            cached = self._soa_sets[zone.name] = (self.generation, _rrsets([self._soa(zone)]))
        return cached[1]

    def _soa(self, zone: _Zone) -> _RR:
        ttl = self.settings.ttl
        soa = dns.rdtypes.ANY.SOA.SOA(  # type: ignore[no-untyped-call]
            _IN,
            dns.rdatatype.SOA,
            _name(("ns", "dns", *zone.text)),
            _name(("hostmaster", *zone.text)),
            self.serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            ttl,
        )
        return (zone.name, dns.rdatatype.SOA, min(ttl, SOA_TTL_CAP), soa)

    def _ns_name(self, zone: _Zone) -> dns.name.Name:
        if self.settings.dns_service is not None:
            namespace, name = self.settings.dns_service
            return _name((name, namespace, "svc", *zone.text))
        return _name(("ns", "dns", *zone.text))

    def _ns(self, owner: dns.name.Name, zone: _Zone) -> tuple[list[_RR], list[_RR]]:
        target = self._ns_name(zone)
        ttl = self.settings.ttl
        extra: list[_RR] = [
            (target, _AAAA if ":" in ip else _A, ttl, _address_rdata(ip)) for ip in self.settings.dns_ips
        ]
        if not extra:
            return [], []
        ns = dns.rdtypes.ANY.NS.NS(_IN, dns.rdatatype.NS, target)  # type: ignore[no-untyped-call]
        return [(owner, dns.rdatatype.NS, ttl, ns)], extra

    def _ns_exposed(self, namespace: str) -> bool:
        return self._namespaces is None or namespace in self._namespaces

    def _items(self, rel: tuple[str, ...], zone: _Zone, qtype: int) -> tuple[list[_Item], bool]:
        """CoreDNS's Kubernetes.Services: the items a name holds, and whether it is a name error."""
        if rel == ("ns", "dns"):  # isDefaultNS: the DNS Service's own addresses
            if qtype not in (_A, _AAAA):
                return [], False
            want = 4 if qtype == _A else 6
            ips = [ip for raw in self.settings.dns_ips if (ip := canonical_ip(raw)) and _family(ip) == want]
            return [_Item(ip, 0, (*rel, *zone.text), want) for ip in ips], False
        items, error = self._records(rel, zone)
        if qtype == dns.rdatatype.SRV:
            items = [i for i in items if i.family]  # CoreDNS has no SRV for ExternalName Services
        return items, error

    def _records(self, rel: tuple[str, ...], zone: _Zone) -> tuple[list[_Item], bool]:
        """CoreDNS's parseRequest + Records: parse the name below the zone and find what it holds."""
        n = len(rel)
        if n == 0 or (n == 1 and rel[0] in ("svc", "pod")):
            return [], False  # the apex, svc.<zone> and pod.<zone> exist and hold nothing
        kind = rel[-1]
        if kind not in ("svc", "pod") or n > 5:
            return [], True
        namespace = rel[-2] if n >= 2 else ""
        service = rel[-3] if n >= 3 else ""
        endpoint = rel[0] if n == 4 else ""
        port = _strip_underscore(rel[0]) if n == 5 else ""
        protocol = _strip_underscore(rel[1]) if n == 5 else ""
        if zone.reverse or not self._ns_exposed(namespace):
            return [], True
        if kind == "pod":
            return self._find_pods(namespace, service, zone)
        return self._find_services(namespace, service, endpoint, port, protocol, zone)

    def _find_services(
        self, namespace: str, service: str, endpoint: str, port: str, protocol: str, zone: _Zone
    ) -> tuple[list[_Item], bool]:
        if not service:
            return [], False  # an existing namespace: NODATA
        svc = self._services.get((namespace, service))
        if svc is None:
            return [], True
        where = (svc.name, svc.namespace, "svc", *zone.text)
        if not _fits(where):
            return [], True
        if svc.kind == "ExternalName":
            if endpoint or not svc.external_name:
                return [], True
            return [_Item(svc.external_name, 0, where, 0)], False
        items: list[_Item] = []
        if svc.kind == "Headless" or endpoint:
            for sub in svc.subsets:
                for address in sub.addresses:
                    if endpoint and endpoint != address.hostname:
                        continue
                    host = (address.hostname, *where)
                    if not _fits(host):
                        continue
                    for p in sub.ports:
                        if _match_port(port, p, protocol):
                            items.append(_Item(address.ip, p.port, host, _family(address.ip)))
            return items, not items
        found = False
        for p in svc.ports:
            if _match_port(port, p, protocol):
                found = True
                items.extend(_Item(ip, p.port, where, _family(ip)) for ip in svc.cluster_ips)
        return items, not found

    def _find_pods(self, namespace: str, podname: str, zone: _Zone) -> tuple[list[_Item], bool]:
        mode = self.settings.pods
        if mode == "disabled":
            return [], True
        if not podname:
            return [], False
        ip = _pod_ip(podname)
        where = (podname, namespace, "pod", *zone.text)
        if mode == "insecure":
            canonical = canonical_ip(ip) if _POD_LABEL.fullmatch(podname) else None
            if canonical is None:
                return [], True
            return [_Item(canonical, 0, where, _family(canonical))], False
        count = self._pod_ips.get((namespace, ip), 0)  # verified: a pod with that podIP, there
        return [_Item(ip, 0, where, _family(ip))] * count, count == 0

    def _address(
        self, owner: dns.name.Name, rel: tuple[str, ...], zone: _Zone, qtype: int, chain: tuple[dns.name.Name, ...]
    ) -> tuple[list[_RR], bool, dns.name.Name | None]:
        """CoreDNS's plugin.A / plugin.AAAA: address records, following ExternalName CNAMEs inside the
        zone; a target outside it is returned for the server to chase.  ``chain`` holds the CNAME
        targets already followed."""
        items, error = self._items(rel, zone, qtype)
        if error:
            return [], True, None
        want = 4 if qtype == _A else 6
        ttl = self.settings.ttl
        out: list[_RR] = []
        seen: set[str] = set()
        chase: dns.name.Name | None = None
        for item in items:
            if item.family == 0:
                try:
                    target = dns.name.from_text(item.host)
                except dns.exception.DNSException:
                    continue
                if target.is_subdomain(owner):
                    continue  # x CNAME x (or a name below x) is a loop
                if len(chain) > MAX_CNAME_CHAIN or target in chain:
                    continue
                cname = (owner, dns.rdatatype.CNAME, ttl, dns.rdtypes.ANY.CNAME.CNAME(_IN, dns.rdatatype.CNAME, target))  # type: ignore[no-untyped-call]
                if target.is_subdomain(zone.name):
                    below = tuple(x.lower().decode("latin-1") for x in target.relativize(zone.name).labels)
                    more, failed, deeper = self._address(target, below, zone, qtype, (*chain, target))
                    if not failed and more:
                        out.append(cname)
                        out.extend(more)
                        chase = chase or deeper
                    continue
                out.append(cname)
                chase = target
                continue
            if item.family == want and item.host not in seen:
                seen.add(item.host)
                out.append((owner, qtype, ttl, _address_rdata(item.host)))
        return out, False, chase

    def _cname(self, owner: dns.name.Name, rel: tuple[str, ...], zone: _Zone) -> tuple[list[_RR], bool]:
        items, error = self._items(rel, zone, dns.rdatatype.CNAME)
        if error:
            return [], True
        if items and items[0].family == 0:
            try:
                target = dns.name.from_text(items[0].host)
            except dns.exception.DNSException:
                return [], False
            rd = dns.rdtypes.ANY.CNAME.CNAME(_IN, dns.rdatatype.CNAME, target)  # type: ignore[no-untyped-call]
            return [(owner, dns.rdatatype.CNAME, self.settings.ttl, rd)], False
        return [], False

    def _ptr(
        self, owner: dns.name.Name, labels: tuple[bytes, ...], rel: tuple[str, ...], zone: _Zone
    ) -> tuple[list[_RR], bool]:
        ip = reverse_address(labels)
        if ip is None:
            _, error = self._records(rel, zone)  # CoreDNS's Reverse falls back to Records for the rcode
            return [], error
        targets = self._reverse(ip)
        if not targets:
            return [], True
        ttl = self.settings.ttl
        out: list[_RR] = []
        for target in dict.fromkeys(targets):
            rd = dns.rdtypes.ANY.PTR.PTR(_IN, dns.rdatatype.PTR, target)  # type: ignore[no-untyped-call]
            out.append((owner, dns.rdatatype.PTR, ttl, rd))
        return out, False

    def _reverse(self, ip: str) -> list[dns.name.Name]:
        """CoreDNS's serviceRecordForIP: the Service with that ClusterIP, else every endpoint with that
        address as ``hostname.service.namespace.svc.<cluster zone>``."""
        zone = self._cluster.text
        keys = sorted(self._by_cluster_ip.get(ip, ()))
        if keys:
            namespace, name = keys[0]
            where = (name, namespace, "svc", *zone)
            return [_name(where)] if _fits(where) else []
        out = []
        for key in sorted(self._by_endpoint_ip.get(ip, ())):
            svc = self._services[key]
            for sub in svc.subsets:
                for address in sub.addresses:
                    where = (address.hostname, svc.name, svc.namespace, "svc", *zone)
                    if address.ip == ip and _fits(where):
                        out.append(_name(where))
        return out

    def _srv(self, owner: dns.name.Name, rel: tuple[str, ...], zone: _Zone) -> tuple[list[_RR], list[_RR], bool]:
        """CoreDNS's plugin.SRV: every item weighs 100 at priority 0, so each record's weight is
        floor(100 / items) (at least 1); records repeat per (target, port) only once."""
        items, error = self._items(rel, zone, dns.rdatatype.SRV)
        if error:
            return [], [], True
        if not items:
            return [], [], False
        weight = max(1, math.floor(100.0 / (100 * len(items)) * 100))
        ttl = self.settings.ttl
        records: list[_RR] = []
        extra: list[_RR] = []
        seen: set[tuple[dns.name.Name, int | str]] = set()
        for item in items:
            if item.port == -1:
                continue  # CoreDNS's sentinel for "no ports": addresses but no SRV
            target = _name(item.where)
            if (target, item.port) not in seen:
                seen.add((target, item.port))
                srv = dns.rdtypes.IN.SRV.SRV(_IN, dns.rdatatype.SRV, 0, weight, item.port, target)  # type: ignore[no-untyped-call]
                records.append((owner, dns.rdatatype.SRV, ttl, srv))
            if (target, item.host) not in seen:
                seen.add((target, item.host))
                extra.append((target, _AAAA if item.family == 6 else _A, ttl, _address_rdata(item.host)))
        return records, extra, False


def _rrsets(records: Iterable[_RR]) -> tuple[dns.rrset.RRset, ...]:
    """Records grouped into RRsets by (owner, type), in order of first appearance."""
    sets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    for owner, rdtype, ttl, rdata in records:
        rrset = sets.get((owner, rdtype))
        if rrset is None:
            rrset = sets[(owner, rdtype)] = dns.rrset.RRset(owner, _IN, dns.rdatatype.RdataType.make(rdtype))
        rrset.add(rdata, ttl)
    return tuple(sets.values())


__all__ = [
    "FORWARD",
    "Address",
    "Answer",
    "Chase",
    "ClusterZone",
    "DnsSettings",
    "Port",
    "ServiceRecords",
    "Subset",
    "canonical_ip",
    "compile_service",
    "complete_chase",
    "reverse_address",
]

"""The MetalLB kinds (``metallb.io``): IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer.

kubewire's load-balancer allocator reads these, so they are served the way a cluster with
MetalLB installed serves them: the CRD defaults (``autoAssign: true``, ``peerPort: 179``, …),
the CRD schema checks (shared with the Gateway API module, as both are CRDs), MetalLB's
validating webhook rules for a single object with MetalLB's own sentences (``invalid CIDR
"10.0.0.0/33" in pool "first-pool": ...``), and the CRDs' printer columns.  Checks that need
the other objects in the cluster (overlap between pools, advertisement/pool compatibility)
belong to whoever can see the store; everything here is pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kubewire.api import meta
from kubewire.api.core import as_dict, as_list
from kubewire.api.fields import FieldError, Path, go_quote, invalid_value, required
from kubewire.api.gateway import Check, jsonpath_text
from kubewire.api.netvalid import IP, IPNetwork, parse_ip, parse_network
from kubewire.api.registry import Column, Kind, Obj

GROUP = "metallb.io"
MAX_UINT32 = 4294967295
DYNAMIC_ASN_MODES = ("internal", "external")


def _spec(obj: Obj) -> dict[str, Any]:
    return as_dict(obj.get("spec"))


# --- defaulting --------------------------------------------------------------------------------


def _defaults(**values: Any) -> Callable[[Obj], None]:
    """A defaulter filling top-level ``spec`` fields the CRD schema defaults."""

    def default(obj: Obj) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            for key, value in values.items():
                spec.setdefault(key, value)

    return default


default_ip_address_pool = _defaults(autoAssign=True, avoidBuggyIPs=False)
default_bgp_peer = _defaults(peerPort=179, disableMP=False, dualStackAddressFamily=False)
default_bgp_advertisement = _defaults(aggregationLength=32, aggregationLengthV6=128)


# --- address parsing (MetalLB's ParseCIDR) -----------------------------------------------------


class AddressError(ValueError):
    """An ``addresses`` entry MetalLB cannot parse; the message is MetalLB's."""


def parse_addresses(text: str) -> list[IPNetwork]:
    """A CIDR or an ``a-b`` range, as the prefixes it covers (MetalLB's ``ParseCIDR``)."""
    if "-" not in text:
        net = parse_network(text, sloppy=False)
        if net is None:
            raise AddressError(f"invalid CIDR {go_quote(text)}")
        return [net]
    first, _, last = text.partition("-")
    start, end = _ip(first), _ip(last)
    if start is None:
        raise AddressError(f"invalid IP range {go_quote(text)}: invalid start IP {go_quote(first)}")
    if end is None:
        raise AddressError(f"invalid IP range {go_quote(text)}: invalid end IP {go_quote(last)}")
    if start.version != end.version:
        return []
    if int(start) > int(end):
        raise AddressError(
            f"invalid IP range {go_quote(text)}: start IP {go_quote(str(start))} is after the end IP {go_quote(str(end))}"
        )
    return list(ipaddress.summarize_address_range(start, end))  # type: ignore[type-var]


def _ip(text: str) -> IP | None:
    """MetalLB's ``net.ParseIP(strings.TrimSpace(text))``: Go's strict parser, not the sloppy one."""
    return parse_ip(text.strip(), sloppy=False)


# --- IPAddressPool -----------------------------------------------------------------------------


def validate_ip_address_pool(obj: Obj, old: Obj | None) -> list[FieldError]:
    c = Check(meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old))
    spec = c.obj(obj, "spec", Path(), need=True)
    if spec is None:
        return c.result()
    path = Path("spec")
    addresses = _strings(c, spec, "addresses", path, need=True)
    for key in ("autoAssign", "avoidBuggyIPs"):
        if spec.get(key) is not None:
            c.typed(spec[key], path.child(key), "boolean")
    errs = c.result()
    if errs or addresses is None:
        return errs
    return _pool_webhook(meta.name_of(obj), addresses, path.child("addresses"))


def _strings(c: Check, parent: dict[str, Any], key: str, path: Path, need: bool = False) -> list[str] | None:
    value = parent.get(key)
    where = path.child(key)
    if value is None:
        if need:
            c.schema.append(required(where))
        return None
    if not c.typed(value, where, "array"):
        return None
    return [str(v) for i, v in enumerate(value) if c.typed(v, where.index(i), "string")]


def _pool_webhook(name: str, addresses: list[str], path: Path) -> list[FieldError]:
    """MetalLB's webhook on one pool: the first problem, in MetalLB's words."""
    prefix = f"parsing address pool {name}: "
    if not addresses:
        return [invalid_value(path, addresses, prefix + "pool has no prefixes defined")]
    seen: list[IPNetwork] = []
    for i, text in enumerate(addresses):
        try:
            nets = parse_addresses(text)
        except AddressError as err:
            return [
                invalid_value(
                    path.index(i), text, f"{prefix}invalid CIDR {go_quote(text)} in pool {go_quote(name)}: {err}"
                )
            ]
        for net in nets:
            clash = next((old for old in seen if old.version == net.version and old.overlaps(net)), None)
            if clash is not None:
                message = f"CIDR {go_quote(str(net))} in pool {go_quote(name)} overlaps with already defined CIDR {go_quote(str(clash))}"
                return [invalid_value(path.index(i), text, message)]
            seen.append(net)
    return []


# --- BGPPeer -----------------------------------------------------------------------------------


def validate_bgp_peer(obj: Obj, old: Obj | None) -> list[FieldError]:
    c = Check(meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old))
    spec = c.obj(obj, "spec", Path())
    if spec is None:
        return c.result()
    path = Path("spec")
    c.integer(spec, "myASN", path, need=True, lo=0, hi=MAX_UINT32)
    c.integer(spec, "peerASN", path, lo=0, hi=MAX_UINT32)
    c.string(spec, "dynamicASN", path, enum=DYNAMIC_ASN_MODES)
    c.integer(spec, "peerPort", path, lo=1, hi=16384)
    if old is not None:
        before = bool(_spec(old).get("enableGracefulRestart", False))
        after = bool(spec.get("enableGracefulRestart", False))
        message = "EnableGracefulRestart cannot be changed after creation"
        c.rule(path.child("enableGracefulRestart"), "boolean", before == after, message)
    errs = c.result()
    return errs or _peer_webhook(meta.name_of(obj), meta.namespace_of(obj), spec, path)


def _peer_webhook(name: str, namespace: str, spec: dict[str, Any], path: Path) -> list[FieldError]:
    """MetalLB's ``peerFromCR`` checks: the first problem, prefixed as the webhook reports it."""
    problem = _peer_problem(namespace, name, spec)
    if problem is None:
        return []
    key, message = problem
    return [invalid_value(path.child(key), spec.get(key), f"parsing peer {name} {message}")]


def _peer_problem(namespace: str, name: str, spec: dict[str, Any]) -> tuple[str, str] | None:
    my_asn, asn = spec.get("myASN") or 0, spec.get("peerASN") or 0
    dynamic, address, iface = spec.get("dynamicASN") or "", spec.get("peerAddress") or "", spec.get("interface") or ""
    checks: list[tuple[bool, str, str]] = [
        (my_asn == 0, "myASN", "missing local ASN"),
        (asn == 0 and not dynamic, "peerASN", "missing peer ASN and dynamicASN"),
        (asn != 0 and bool(dynamic), "peerASN", "both peer ASN and dynamicASN specified"),
        (
            asn == my_asn and bool(spec.get("ebgpMultiHop")),
            "ebgpMultiHop",
            "invalid ebgp-multihop parameter set for an ibgp peer",
        ),
        (not address and not iface, "peerAddress", "peer has no Address or Interface specified"),
        (bool(address) and bool(iface), "peerAddress", "peer has both Address and Interface specified"),
        (
            bool(address) and _ip(str(address)) is None,
            "peerAddress",
            f"invalid BGPPeer address {go_quote(str(address))}",
        ),
    ]
    for key, label in (("routerID", "invalid router ID"), ("sourceAddress", "invalid source IP")):
        value = str(spec.get(key) or "")
        checks.append((bool(value) and _ip(value) is None, key, f"{label} {go_quote(value)}"))
    secret = as_dict(spec.get("passwordSecret")).get("name")
    both = f"can not have both password and secret ref set in peer config {go_quote(namespace)}/{go_quote(name)}"
    checks.append((bool(spec.get("password")) and bool(secret), "password", both))
    return next(((key, message) for failed, key, message in checks if failed), None)


# --- advertisements ----------------------------------------------------------------------------


def validate_l2_advertisement(obj: Obj, old: Obj | None) -> list[FieldError]:
    c = Check(meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old))
    spec = c.obj(obj, "spec", Path())
    if spec is not None:
        _selectors(c, spec, Path("spec"))
        _strings(c, spec, "interfaces", Path("spec"))
    return c.result()


def validate_bgp_advertisement(obj: Obj, old: Obj | None) -> list[FieldError]:
    c = Check(meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old))
    spec = c.obj(obj, "spec", Path())
    if spec is None:
        return c.result()
    path = Path("spec")
    _selectors(c, spec, path)
    _strings(c, spec, "peers", path)
    _strings(c, spec, "communities", path)
    v4 = c.integer(spec, "aggregationLength", path, lo=1)
    v6 = c.integer(spec, "aggregationLengthV6", path)
    c.integer(spec, "localPref", path, lo=0, hi=MAX_UINT32)
    errs = c.result()
    return errs or _advertisement_webhook(meta.name_of(obj), spec, v4, v6, path)


def _selectors(c: Check, spec: dict[str, Any], path: Path) -> None:
    _strings(c, spec, "ipAddressPools", path)
    for key in ("ipAddressPoolSelectors", "nodeSelectors", "serviceSelectors"):
        for i, selector in enumerate(c.items(spec, key, path) or []):
            c.schema.extend(meta.validate_label_selector(selector, path.child(key).index(i)))


def _advertisement_webhook(
    name: str, spec: dict[str, Any], v4: int | None, v6: int | None, path: Path
) -> list[FieldError]:
    if as_list(spec.get("serviceSelectors")):
        for key, value, plain in (("aggregationLength", v4, 32), ("aggregationLengthV6", v6, 128)):
            if value is not None and value != plain:
                message = f"serviceSelectors and {key} are mutually exclusive, both cannot be set in {name}"
                return [invalid_value(path.child(key), value, message)]
    if v4 is not None and v4 > 32:
        return [invalid_value(path.child("aggregationLength"), v4, f"invalid aggregation length {v4} for IPv4")]
    if v6 is not None and v6 > 128:
        return [invalid_value(path.child("aggregationLengthV6"), v6, f"invalid aggregation length {v6} for IPv6")]
    return []


# --- tables (CRD additionalPrinterColumns) -----------------------------------------------------

_NAME = Column("Name", "string", "name", "Name must be unique within a namespace.")

IP_ADDRESS_POOL_COLUMNS = (
    _NAME,
    Column("Auto Assign", "boolean"),
    Column("Avoid Buggy IPs", "boolean"),
    Column("Addresses"),
)
BGP_PEER_COLUMNS = (_NAME, Column("Address"), Column("ASN"), Column("BFD Profile"), Column("Multi Hops"))
L2_ADVERTISEMENT_COLUMNS = (
    _NAME,
    Column("IPAddressPools"),
    Column("IPAddressPool Selectors"),
    Column("Interfaces"),
    Column("Node Selectors", priority=10),
)
BGP_ADVERTISEMENT_COLUMNS = (
    _NAME,
    Column("IPAddressPools"),
    Column("IPAddressPool Selectors"),
    Column("Peers"),
    Column("Node Selectors", priority=10),
)


def _bool_cell(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _cells(obj: Obj, *keys: str) -> list[Any]:
    spec = _spec(obj)
    return [meta.name_of(obj), *(jsonpath_text(spec.get(k)) for k in keys)]


def ip_address_pool_row(obj: Obj, now: datetime) -> list[Any]:
    spec = _spec(obj)
    return [
        meta.name_of(obj),
        _bool_cell(spec.get("autoAssign")),
        _bool_cell(spec.get("avoidBuggyIPs")),
        jsonpath_text(spec.get("addresses")),
    ]


def bgp_peer_row(obj: Obj, now: datetime) -> list[Any]:
    return _cells(obj, "peerAddress", "peerASN", "bfdProfile", "ebgpMultiHop")


def l2_advertisement_row(obj: Obj, now: datetime) -> list[Any]:
    return _cells(obj, "ipAddressPools", "ipAddressPoolSelectors", "interfaces", "nodeSelectors")


def bgp_advertisement_row(obj: Obj, now: datetime) -> list[Any]:
    return _cells(obj, "ipAddressPools", "ipAddressPoolSelectors", "peers", "nodeSelectors")


def _kind(kind: str, plural: str, version: str, **rest: Any) -> Kind:
    return Kind(
        group=GROUP,
        version=version,
        kind=kind,
        plural=plural,
        namespaced=True,
        subresources=frozenset({"status"}),
        **rest,
    )


IP_ADDRESS_POOL = _kind(
    "IPAddressPool",
    "ipaddresspools",
    "v1beta1",
    default=default_ip_address_pool,
    validate=validate_ip_address_pool,
    columns=IP_ADDRESS_POOL_COLUMNS,
    row=ip_address_pool_row,
)
L2_ADVERTISEMENT = _kind(
    "L2Advertisement",
    "l2advertisements",
    "v1beta1",
    validate=validate_l2_advertisement,
    columns=L2_ADVERTISEMENT_COLUMNS,
    row=l2_advertisement_row,
)
BGP_ADVERTISEMENT = _kind(
    "BGPAdvertisement",
    "bgpadvertisements",
    "v1beta1",
    default=default_bgp_advertisement,
    validate=validate_bgp_advertisement,
    columns=BGP_ADVERTISEMENT_COLUMNS,
    row=bgp_advertisement_row,
)
BGP_PEER = _kind(
    "BGPPeer",
    "bgppeers",
    "v1beta2",
    default=default_bgp_peer,
    validate=validate_bgp_peer,
    columns=BGP_PEER_COLUMNS,
    row=bgp_peer_row,
)

KINDS: list[Kind] = [IP_ADDRESS_POOL, L2_ADVERTISEMENT, BGP_ADVERTISEMENT, BGP_PEER]

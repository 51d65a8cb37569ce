"""Validation of network values — ports, IP addresses and CIDRs — shared by every API group.

This module owns how kubewire reads and checks a port number, an IANA port name, an IP address
or a CIDR, with upstream's parsing rules and wording: ``k8s.io/utils/net``'s
``ParseIPSloppy``/``ParseCIDRSloppy`` (IPv4 octets may carry leading zeros, no zones, host bits
allowed in a CIDR), ``k8s.io/apimachinery/pkg/util/validation`` (``IsValidPortNum``,
``IsValidPortName``, ``IsValidIP``, ``IsValidCIDR``) and ``pkg/apis/core/validation``
(``ValidatePortNumOrName``, ``ValidateNonSpecialIP``).  Callers that follow Go's strict
``net.ParseIP``/``net.ParseCIDR`` instead (MetalLB's webhooks) pass ``sloppy=False``.
core, Service, EndpointSlice, Pod, networking and MetalLB validation all use these; no API group
keeps a copy of its own.  Pure functions.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any

from kubewire.api.fields import FieldError, Path, invalid_value

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

IP_ERROR = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
CIDR_ERROR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"

# --- ports ----------------------------------------------------------------------------------------

_PORT_NAME_CHARSET = re.compile(r"[-a-z0-9]+")
_PORT_NAME_LETTER = re.compile(r"[a-z]")


def inclusive_range_error(lo: int, hi: int) -> str:
    """Upstream ``InclusiveRangeError``."""
    return f"must be between {lo} and {hi}, inclusive"


def is_valid_port_num(port: Any) -> list[str]:
    """Upstream ``IsValidPortNum``; anything but a JSON integer (bools included) is out of range."""
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return []
    return [inclusive_range_error(1, 65535)]


def is_valid_port_name(name: str) -> list[str]:
    """Upstream ``IsValidPortName`` (an IANA_SVC_NAME); every failed rule is reported."""
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARSET.fullmatch(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER.search(name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def validate_port_num_or_name(value: Any, path: Path) -> list[FieldError]:
    """Upstream ``ValidatePortNumOrName`` for an int-or-string field (non-strings are numbers)."""
    if isinstance(value, str):
        return [invalid_value(path, value, msg) for msg in is_valid_port_name(value)]
    return [invalid_value(path, value, msg) for msg in is_valid_port_num(value)]


# --- IP addresses ---------------------------------------------------------------------------------

_IPV4 = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})")


def parse_ip(value: Any, *, sloppy: bool = True) -> IP | None:
    """Parse like ``netutils.ParseIPSloppy`` (IPv4 octets may have leading zeros), or like Go's
    ``net.ParseIP`` with ``sloppy=False`` (they may not).  Zones (``fe80::1%eth0``) never parse."""
    if not isinstance(value, str) or not value or "%" in value:
        return None
    return _parse_ip_text(value, sloppy)


@functools.lru_cache(maxsize=65536)
def _parse_ip_text(value: str, sloppy: bool) -> IP | None:
    m = _IPV4.fullmatch(value)
    if m:
        if not sloppy and any(len(g) > 1 and g[0] == "0" for g in m.groups()):
            return None
        octets = [int(g) for g in m.groups()]
        return ipaddress.IPv4Address(bytes(octets)) if max(octets) <= 255 else None
    if ":" not in value:
        return None
    try:
        return ipaddress.IPv6Address(value)
    except ValueError:
        return None


def unmapped(ip: IP) -> IP:
    """Go treats IPv4-mapped IPv6 (``::ffff:1.2.3.4``) as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def ip_family(value: Any) -> str:
    """``IPv4``/``IPv6`` for a parsable address, else ``""``."""
    ip = parse_ip(value)
    if ip is None:
        return ""
    return "IPv4" if unmapped(ip).version == 4 else "IPv6"


def validate_ip(path: Path, value: Any) -> list[FieldError]:
    """Upstream ``IsValidIP``."""
    if parse_ip(value) is None:
        return [invalid_value(path, value, IP_ERROR)]
    return []


_V4_LINK_LOCAL_MULTICAST = ipaddress.IPv4Network("224.0.0.0/24")


def _is_link_local_multicast(ip: IP) -> bool:
    if ip.version == 4:
        return ip in _V4_LINK_LOCAL_MULTICAST
    raw = ip.packed
    return raw[0] == 0xFF and raw[1] & 0x0F == 0x02


def validate_non_special_ip(value: Any, path: Path) -> list[FieldError]:
    """Upstream ``ValidateNonSpecialIP``: no unspecified, loopback or link-local addresses."""
    parsed = parse_ip(value)
    if parsed is None:
        return [invalid_value(path, value, "must be a valid IP address")]
    ip = unmapped(parsed)
    errs = []
    if ip.is_unspecified:
        errs.append(invalid_value(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(invalid_value(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        errs.append(invalid_value(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if _is_link_local_multicast(ip):
        errs.append(
            invalid_value(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        )
    return errs


# --- CIDRs ----------------------------------------------------------------------------------------


def parse_cidr(value: Any, *, sloppy: bool = True) -> tuple[IP, int] | None:
    """Parse like ``netutils.ParseCIDRSloppy`` (or Go's ``net.ParseCIDR`` with ``sloppy=False``):
    ``ip/prefix`` with a decimal prefix, host bits allowed."""
    if not isinstance(value, str) or value.count("/") != 1:
        return None
    addr, _, bits = value.partition("/")
    ip = parse_ip(addr, sloppy=sloppy)
    if ip is None or not bits.isdigit() or not bits.isascii():
        return None
    prefix = int(bits)
    return (ip, prefix) if prefix <= ip.max_prefixlen else None


def parse_network(value: Any, *, sloppy: bool = True) -> IPNetwork | None:
    """The network a CIDR names (host bits cleared), as :func:`parse_cidr` accepts it."""
    parsed = parse_cidr(value, sloppy=sloppy)
    if parsed is None:
        return None
    ip, prefix = parsed
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv4Network((ip, prefix), strict=False)
    return ipaddress.IPv6Network((ip, prefix), strict=False)


def validate_cidr(path: Path, value: Any) -> list[FieldError]:
    """Upstream ``IsValidCIDR``."""
    if parse_cidr(value) is None:
        return [invalid_value(path, value, CIDR_ERROR)]
    return []

"""discovery.k8s.io/v1 EndpointSlice: the endpoint lists kube-proxy-style data planes consume.

Defaulting as upstream ``SetDefaults_EndpointPort`` (protocol TCP, name ""), validation as
``pkg/apis/discovery/validation`` (address type, per-type address checks, ports, hints; endpoints
are re-validated on update only when they change, as upstream does), and the
``kubectl get endpointslices`` table.  Pure functions over wire-form dicts; unknown fields are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kubewire.api import meta
from kubewire.api.core import (
    ENDPOINTS_SHOWN,
    as_dict,
    as_int,
    as_list,
    as_str,
    column,
    validate_dns1123_label,
    validate_protocol,
    validate_qualified_name,
)
from kubewire.api.fields import FieldError, Path, duplicate, invalid_value, not_supported, required, too_many
from kubewire.api.netvalid import parse_ip, unmapped, validate_non_special_ip
from kubewire.api.registry import Kind, Obj

ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 20000  # upstream raised this from 100 to 20000 (Kubernetes 1.26)
MAX_TOPOLOGY_LABELS = 16
MAX_ZONE_HINTS = 8
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ServiceKey = tuple[str, str]  # (namespace, name)


def object_key(obj: Obj) -> ServiceKey:
    """(namespace, name) of an object in wire form."""
    m = obj.get("metadata") or {}
    return (str(m.get("namespace") or ""), str(m.get("name") or ""))


def slice_service(slice_: Obj) -> ServiceKey | None:
    """(namespace, name) of the Service an EndpointSlice belongs to, by its ``kubernetes.io/service-name`` label."""
    m = slice_.get("metadata") or {}
    owner = (m.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return (str(m.get("namespace") or ""), str(owner)) if owner else None


def slices_by_service(slices: Iterable[Obj]) -> dict[ServiceKey, list[Obj]]:
    """EndpointSlices grouped by the Service their label names (slices without one left out)."""
    out: dict[ServiceKey, list[Obj]] = {}
    for sl in slices:
        key = slice_service(sl)
        if key is not None:
            out.setdefault(key, []).append(sl)
    return out


def change_signature(obj: Obj, slices: Iterable[Obj]) -> tuple[str, ...]:
    """The resourceVersions of an object and its slices: equal signatures mean nothing changed
    (an object without one counts as new every time)."""

    def rv(o: Obj) -> str:
        return str((o.get("metadata") or {}).get("resourceVersion") or id(o))

    return (rv(obj), *sorted(rv(s) for s in slices))


def default_endpoint_slice(obj: Obj) -> None:
    for port in as_list(obj.get("ports")):
        if isinstance(port, dict):
            if port.get("name") is None:
                port["name"] = ""
            if port.get("protocol") is None:
                port["protocol"] = "TCP"


# --- validation ----------------------------------------------------------------------------------


def _validate_address_type(value: Any) -> list[FieldError]:
    if not value:
        return [required("addressType")]
    if value not in ADDRESS_TYPES:
        return [not_supported("addressType", value, ADDRESS_TYPES)]
    return []


def _validate_fqdn(value: str, path: Path) -> list[FieldError]:
    """Upstream ``IsFullyQualifiedDomainName``."""
    if not value:
        return [required(path)]
    name = value.removesuffix(".")
    problems = meta.is_dns1123_subdomain(name)
    if problems:
        return [invalid_value(path, name, ",".join(problems))]
    if "." not in name:
        return [invalid_value(path, name, "should be a domain with at least two segments separated by dots")]
    for label in name.split("."):
        label_problems = meta.is_dns1123_label(label)
        if label_problems:
            return [invalid_value(path, label, ",".join(label_problems))]
    return []


def _validate_address(address: Any, address_type: Any, path: Path) -> list[FieldError]:
    if address_type == "FQDN":
        return _validate_fqdn(as_str(address), path)
    if address_type not in ("IPv4", "IPv6"):
        return []
    ip = parse_ip(address)
    version = 4 if address_type == "IPv4" else 6
    errs = []
    if ip is None or unmapped(ip).version != version:
        errs.append(invalid_value(path, address, f"must be a valid {address_type} address"))
    return errs + validate_non_special_ip(address, path)


def _validate_hints(hints: Mapping[str, Any], path: Path) -> list[FieldError]:
    zones = as_list(hints.get("forZones"))
    zones_path = path.child("forZones")
    if len(zones) > MAX_ZONE_HINTS:
        return [too_many(zones_path, len(zones), MAX_ZONE_HINTS)]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, zone in enumerate(zones):
        name = as_str(as_dict(zone).get("name"))
        zone_path = zones_path.index(i).child("name")
        if name in seen:
            errs.append(duplicate(zone_path, name))
        seen.add(name)
        errs.extend(invalid_value(zone_path, name, m) for m in meta.is_label_value(name))
    return errs


def _validate_endpoint_extras(endpoint: Mapping[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    node = endpoint.get("nodeName")
    if isinstance(node, str):
        errs.extend(invalid_value(path.child("nodeName"), node, m) for m in meta.is_dns1123_subdomain(node))
    topology = as_dict(endpoint.get("deprecatedTopology"))
    topology_path = path.child("deprecatedTopology")
    if len(topology) > MAX_TOPOLOGY_LABELS:
        errs.append(too_many(topology_path, len(topology), MAX_TOPOLOGY_LABELS))
    errs.extend(meta.validate_labels(endpoint.get("deprecatedTopology"), topology_path))
    hostname = endpoint.get("hostname")
    if isinstance(hostname, str):
        errs.extend(validate_dns1123_label(hostname, path.child("hostname")))
    if isinstance(endpoint.get("hints"), dict):
        errs.extend(_validate_hints(endpoint["hints"], path.child("hints")))
    return errs


def _validate_endpoint(endpoint: Mapping[str, Any], address_type: Any, path: Path) -> list[FieldError]:
    addresses = as_list(endpoint.get("addresses"))
    addresses_path = path.child("addresses")
    errs: list[FieldError] = []
    if not addresses:
        errs.append(required(addresses_path, "must contain at least 1 address"))
    elif len(addresses) > MAX_ADDRESSES:
        errs.append(too_many(addresses_path, len(addresses), MAX_ADDRESSES))
    for i, address in enumerate(addresses):
        errs.extend(_validate_address(address, address_type, addresses_path.index(i)))
    return errs + _validate_endpoint_extras(endpoint, path)


def _validate_endpoints(obj: Obj) -> list[FieldError]:
    endpoints = as_list(obj.get("endpoints"))
    if len(endpoints) > MAX_ENDPOINTS:
        return [too_many("endpoints", len(endpoints), MAX_ENDPOINTS)]
    errs: list[FieldError] = []
    for i, endpoint in enumerate(endpoints):
        errs.extend(_validate_endpoint(as_dict(endpoint), obj.get("addressType"), Path("endpoints").index(i)))
    return errs


def _validate_port(port: Mapping[str, Any], names: set[str], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    name = as_str(port.get("name"))
    if name:
        errs.extend(validate_dns1123_label(name, path.child("name")))
    if name in names:
        errs.append(duplicate(path.child("name"), name))
    names.add(name)
    errs.extend(validate_protocol(port.get("protocol"), path.child("protocol")))
    if isinstance(port.get("appProtocol"), str):
        errs.extend(validate_qualified_name(port["appProtocol"], path.child("appProtocol")))
    return errs


def _validate_ports(obj: Obj) -> list[FieldError]:
    ports = as_list(obj.get("ports"))
    if len(ports) > MAX_PORTS:
        return [too_many("ports", len(ports), MAX_PORTS)]
    names: set[str] = set()
    return [e for i, port in enumerate(ports) for e in _validate_port(as_dict(port), names, Path("ports").index(i))]


def validate_endpoint_slice(obj: Obj, old: Obj | None) -> list[FieldError]:
    """Upstream ``ValidateEndpointSliceCreate``/``ValidateEndpointSliceUpdate``."""
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    errs.extend(_validate_address_type(obj.get("addressType")))
    errs.extend(_validate_ports(obj))
    if old is None or old.get("endpoints") != obj.get("endpoints"):
        errs.extend(_validate_endpoints(obj))
    if old is not None and obj.get("addressType") != old.get("addressType"):
        errs.append(invalid_value("addressType", obj.get("addressType"), "field is immutable"))
    return errs


# --- table -----------------------------------------------------------------------------------------


def _list_with_more(items: list[str], count: int) -> str:
    """Upstream ``listWithMoreString``: three items, ``+ N more...``, ``<unset>`` when empty."""
    text = ",".join(items[:ENDPOINTS_SHOWN])
    if count > ENDPOINTS_SHOWN:
        return f"{text} + {count - ENDPOINTS_SHOWN} more..."
    return text or "<unset>"


def format_ports(obj: Obj) -> str:
    """The PORTS cell: port numbers, the name of a number-less port, or ``*``."""
    items = []
    for port in map(as_dict, as_list(obj.get("ports"))):
        number = as_int(port.get("port"))
        name = port.get("name")
        items.append(str(number) if number is not None else name if isinstance(name, str) else "*")
    return _list_with_more(items, len(items))


def format_endpoints(obj: Obj) -> str:
    """The ENDPOINTS cell: the first three addresses across all endpoints."""
    addresses = [as_str(a) for e in as_list(obj.get("endpoints")) for a in as_list(as_dict(e).get("addresses"))]
    return _list_with_more(addresses, len(addresses))


def endpoint_slice_row(obj: Obj, now: datetime) -> list[Any]:
    return [
        meta.name_of(obj),
        as_str(obj.get("addressType")),
        format_ports(obj),
        format_endpoints(obj),
        meta.age(obj, now),
    ]


ENDPOINT_SLICE = Kind(
    group="discovery.k8s.io",
    version="v1",
    kind="EndpointSlice",
    plural="endpointslices",
    namespaced=True,
    default=default_endpoint_slice,
    validate=validate_endpoint_slice,
    columns=(
        column("Name", fmt="name"),
        column("AddressType"),
        column("Ports"),
        column("Endpoints"),
        column("Age"),
    ),
    row=endpoint_slice_row,
)

KINDS: list[Kind] = [ENDPOINT_SLICE]

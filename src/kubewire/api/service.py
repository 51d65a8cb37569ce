"""core/v1 Service: defaulting, validation, update rules and the ``kubectl get svc`` table.

The Service is the centre of kubewire, so its rules follow upstream closely: defaulting as
``SetDefaults_Service``, validation as ``ValidateService``/``ValidateServiceUpdate``/
``ValidateServiceStatusUpdate`` (same field paths and sentences, including upstream's quirks),
the node-port range check the upstream allocator performs (the range is a module setting,
:data:`node_port_range`, that the server may replace), and the printer of
``pkg/printers/internalversion``.  Allocation of cluster IPs, IP families and node ports is left
to the server and controllers; :func:`prepare_for_update` carries over what they allocated, as
upstream's registry does.  Pure functions over wire-form dicts; unknown fields are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubewire.api import meta
from kubewire.api.core import (
    FIELD_IMMUTABLE,
    GoValue,
    as_dict,
    as_int,
    as_list,
    as_str,
    column,
    validate_dns1123_label,
    validate_protocol,
    validate_qualified_name,
)
from kubewire.api.fields import (
    FieldError,
    Path,
    duplicate,
    forbidden,
    go_quote,
    invalid_value,
    not_supported,
    required,
)
from kubewire.api.netvalid import (
    ip_family,
    is_valid_port_num,
    parse_ip,
    validate_cidr,
    validate_ip,
    validate_non_special_ip,
    validate_port_num_or_name,
)
from kubewire.api.registry import Kind, Obj

CLUSTER_IP, NODE_PORT, LOAD_BALANCER, EXTERNAL_NAME = "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
SESSION_AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILIES = ("IPv4", "IPv6")
IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
LB_IP_MODES = ("Proxy", "VIP")
TRAFFIC_DISTRIBUTIONS = ("PreferClose", "PreferSameZone", "PreferSameNode")
CLUSTER_IP_NONE = "None"
DEFAULT_AFFINITY_TIMEOUT = 10800
MAX_AFFINITY_TIMEOUT = 86400
SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"
TOPOLOGY_MODE_ANNOTATION = "service.kubernetes.io/topology-mode"
TOPOLOGY_HINTS_ANNOTATION = "service.kubernetes.io/topology-aware-hints"


@dataclass(frozen=True)
class PortRange:
    """An inclusive port range such as the node-port range ``30000-32767``."""

    low: int
    high: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


def parse_port_range(text: str) -> PortRange:
    """Parse ``low-high`` or ``base+size`` (the forms ``--service-node-port-range`` accepts)."""
    sep = "-" if "-" in text else "+"
    low_s, _, high_s = text.strip().partition(sep)
    if not (low_s.isdigit() and high_s.isdigit()):
        raise ValueError(f"invalid port range {text!r}")
    low, high = int(low_s), int(high_s)
    if sep == "+":
        high = low + high - 1
    if not 0 < low <= high <= 65535:
        raise ValueError(f"invalid port range {text!r}")
    return PortRange(low, high)


DEFAULT_NODE_PORT_RANGE = PortRange(30000, 32767)
# The node-port range this process validates against; the server may replace it at start-up.
node_port_range: PortRange = DEFAULT_NODE_PORT_RANGE


# --- reading a Service ---------------------------------------------------------------------------


def spec_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    return as_dict(obj.get("spec"))


def type_of(obj: Mapping[str, Any]) -> str:
    return as_str(spec_of(obj).get("type"))


def ports_of(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [as_dict(p) for p in as_list(spec_of(obj).get("ports"))]


def cluster_ips(obj: Mapping[str, Any]) -> list[Any]:
    return as_list(spec_of(obj).get("clusterIPs"))


def is_headless(obj: Mapping[str, Any]) -> bool:
    return cluster_ips(obj) == [CLUSTER_IP_NONE]


def externally_accessible(obj: Mapping[str, Any]) -> bool:
    """Upstream ``ExternallyAccessible``: NodePort, LoadBalancer, or ClusterIP with externalIPs."""
    kind = type_of(obj)
    return kind in (NODE_PORT, LOAD_BALANCER) or (kind == CLUSTER_IP and bool(spec_of(obj).get("externalIPs")))


def needs_health_check(obj: Mapping[str, Any]) -> bool:
    return type_of(obj) == LOAD_BALANCER and spec_of(obj).get("externalTrafficPolicy") == "Local"


def needs_cluster_ip(obj: Mapping[str, Any]) -> bool:
    return type_of(obj) != EXTERNAL_NAME


def needs_node_ports(obj: Mapping[str, Any]) -> bool:
    kind = type_of(obj)
    return kind == NODE_PORT or (
        kind == LOAD_BALANCER and spec_of(obj).get("allocateLoadBalancerNodePorts") is not False
    )


# --- defaulting ----------------------------------------------------------------------------------


def _default_affinity(spec: dict[str, Any]) -> None:
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        config = spec.get("sessionAffinityConfig")
        client = as_dict(config).get("clientIP") if isinstance(config, dict) else None
        if isinstance(client, dict) and client.get("timeoutSeconds") is not None:
            return
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_AFFINITY_TIMEOUT}}


def _default_ports(spec: dict[str, Any]) -> None:
    for port in as_list(spec.get("ports")):
        if not isinstance(port, dict):
            continue
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port", 0)


def _default_lb_status(obj: Obj) -> None:
    """Upstream defaults ``ipMode: VIP`` on LoadBalancer ingress entries that carry an IP."""
    lb = as_dict(as_dict(obj.get("status")).get("loadBalancer"))
    for ingress in as_list(lb.get("ingress")):
        if isinstance(ingress, dict) and ingress.get("ip") and ingress.get("ipMode") is None:
            ingress["ipMode"] = "VIP"


def default_service(obj: Obj) -> None:
    """Upstream ``SetDefaults_Service`` plus the create-time ``clusterIP``→``clusterIPs`` sync."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    _default_affinity(spec)
    if not spec.get("type"):
        spec["type"] = CLUSTER_IP
    _default_ports(spec)
    if externally_accessible(obj) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and spec["type"] in (NODE_PORT, LOAD_BALANCER, CLUSTER_IP):
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == LOAD_BALANCER:
        spec.setdefault("allocateLoadBalancerNodePorts", True)
        _default_lb_status(obj)
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]


# --- validation: ports ---------------------------------------------------------------------------


def _validate_port(port: Mapping[str, Any], require_name: bool, names: set[str], path: Path) -> list[FieldError]:
    """Upstream ``validateServicePort``."""
    errs: list[FieldError] = []
    name = as_str(port.get("name"))
    if require_name and not name:
        errs.append(required(path.child("name")))
    elif name:
        errs.extend(validate_dns1123_label(name, path.child("name")))
        if name in names:
            errs.append(duplicate(path.child("name"), name))
        names.add(name)
    errs.extend(invalid_value(path.child("port"), port.get("port", 0), m) for m in is_valid_port_num(port.get("port")))
    errs.extend(validate_protocol(port.get("protocol"), path.child("protocol")))
    errs.extend(validate_port_num_or_name(port.get("targetPort", 0), path.child("targetPort")))
    if isinstance(port.get("appProtocol"), str):
        errs.extend(validate_qualified_name(port["appProtocol"], path.child("appProtocol")))
    return errs


def _service_port_literal(port: Mapping[str, Any]) -> GoValue:
    """How upstream prints the (protocol, port) key of a duplicate port (Go ``%#v``)."""
    protocol, number = go_quote(as_str(port.get("protocol"))), as_int(port.get("port")) or 0
    return GoValue(
        f'core.ServicePort{{Name:"", Protocol:{protocol}, AppProtocol:(*string)(nil), Port:{number}, '
        'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
    )


def _validate_ports(obj: Obj) -> list[FieldError]:
    ports, path = ports_of(obj), Path("spec").child("ports")
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        errs.extend(_validate_port(port, len(ports) > 1, names, path.index(i)))
    return errs


def _validate_node_port_usage(obj: Obj) -> list[FieldError]:
    """NodePort forbidden on ClusterIP services, duplicate nodePorts and duplicate ports."""
    errs: list[FieldError] = []
    path = Path("spec").child("ports")
    ports = ports_of(obj)
    if type_of(obj) == CLUSTER_IP:
        errs.extend(
            forbidden(path.index(i).child("nodePort"), "may not be used when `type` is 'ClusterIP'")
            for i, p in enumerate(ports)
            if p.get("nodePort")
        )
    seen_node_ports: set[tuple[Any, Any]] = set()
    seen_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        node_key = (port.get("protocol"), port.get("nodePort"))
        if port.get("nodePort"):
            if node_key in seen_node_ports:
                errs.append(duplicate(path.index(i).child("nodePort"), port.get("nodePort")))
            seen_node_ports.add(node_key)
        key = (port.get("protocol"), port.get("port"))
        if key in seen_ports:
            errs.append(duplicate(path.index(i), _service_port_literal(port)))
        seen_ports.add(key)
    return errs


def validate_node_port_range(obj: Obj, port_range: PortRange) -> list[FieldError]:
    """The allocator's check of user-chosen node ports against the configured range."""
    if type_of(obj) not in (NODE_PORT, LOAD_BALANCER):
        return []
    msg = f"provided port is not in the valid range. The range of valid ports is {port_range}"
    path = Path("spec").child("ports")
    return [
        invalid_value(path.index(i).child("nodePort"), p["nodePort"], msg)
        for i, p in enumerate(ports_of(obj))
        if p.get("nodePort") and p["nodePort"] not in port_range
    ]


# --- validation: type-specific fields --------------------------------------------------------------


def _validate_type_specific(obj: Obj) -> list[FieldError]:
    spec, path = spec_of(obj), Path("spec")
    kind = type_of(obj)
    if kind in (LOAD_BALANCER, NODE_PORT) and is_headless(obj):
        msg = f"may not be set to 'None' for {kind} services"
        return [invalid_value(path.child("clusterIPs").index(0), CLUSTER_IP_NONE, msg)]
    if kind != EXTERNAL_NAME:
        return []
    errs: list[FieldError] = []
    for field in ("clusterIPs", "ipFamilies"):
        if as_list(spec.get(field)):
            errs.append(forbidden(path.child(field), "may not be set for ExternalName services"))
    if spec.get("ipFamilyPolicy") is not None:
        errs.append(forbidden(path.child("ipFamilyPolicy"), "may not be set for ExternalName services"))
    cname = as_str(spec.get("externalName")).removesuffix(".")
    if not cname:
        errs.append(required(path.child("externalName")))
    errs.extend(invalid_value(path.child("externalName"), cname, m) for m in meta.is_dns1123_subdomain(cname) if cname)
    return errs


def _validate_type(obj: Obj) -> list[FieldError]:
    kind = spec_of(obj).get("type", "")
    if not kind:
        return [required(Path("spec").child("type"))]
    if kind not in SERVICE_TYPES:
        return [not_supported(Path("spec").child("type"), kind, SERVICE_TYPES)]
    return []


def _validate_affinity(obj: Obj) -> list[FieldError]:
    spec, path = spec_of(obj), Path("spec")
    affinity = spec.get("sessionAffinity", "")
    config_path = path.child("sessionAffinityConfig")
    if not affinity:
        return [required(path.child("sessionAffinity"))]
    if affinity not in SESSION_AFFINITIES:
        return [not_supported(path.child("sessionAffinity"), affinity, SESSION_AFFINITIES)]
    if affinity == "None":
        if spec.get("sessionAffinityConfig") is not None:
            return [forbidden(config_path, "must not be set when session affinity is None")]
        return []
    return _validate_client_ip_config(spec.get("sessionAffinityConfig"), config_path)


def _validate_client_ip_config(config: Any, path: Path) -> list[FieldError]:
    detail = "when session affinity type is ClientIP"
    if not isinstance(config, dict):
        return [required(path, detail)]
    client = config.get("clientIP")
    if not isinstance(client, dict):
        return [required(path.child("clientIP"), detail)]
    timeout = client.get("timeoutSeconds")
    timeout_path = path.child("clientIP", "timeoutSeconds")
    if timeout is None:
        return [required(timeout_path, detail)]
    number = as_int(timeout)
    if number is None or not 0 < number <= MAX_AFFINITY_TIMEOUT:
        return [invalid_value(timeout_path, timeout, f"must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}")]
    return []


def _validate_external_ips(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    path = Path("spec").child("externalIPs")
    for i, ip in enumerate(as_list(spec_of(obj).get("externalIPs"))):
        errs.extend(validate_ip(path.index(i), ip) or validate_non_special_ip(ip, path.index(i)))
    return errs


def _validate_source_ranges(obj: Obj) -> list[FieldError]:
    ranges = as_list(spec_of(obj).get("loadBalancerSourceRanges"))
    annotation = as_dict(meta.meta(obj).get("annotations")).get(SOURCE_RANGES_ANNOTATION)
    lb_only = "may only be used when `type` is 'LoadBalancer'"
    if ranges:
        path = Path("spec").child("LoadBalancerSourceRanges")  # upstream's capitalisation
        errs = [] if type_of(obj) == LOAD_BALANCER else [forbidden(path, lb_only)]
        for i, value in enumerate(ranges):
            errs.extend(validate_cidr(path.index(i), as_str(value).strip()))
        return errs
    if annotation is None:
        return []
    path = Path("metadata").child("annotations").key(SOURCE_RANGES_ANNOTATION)
    errs = [] if type_of(obj) == LOAD_BALANCER else [forbidden(path, lb_only)]
    text = as_str(annotation).strip()
    for value in text.split(",") if text else []:
        errs.extend(validate_cidr(path, value.strip()))
    return errs


def _validate_load_balancer_fields(obj: Obj) -> list[FieldError]:
    spec, path = spec_of(obj), Path("spec")
    lb_only = "may only be used when `type` is 'LoadBalancer'"
    is_lb = type_of(obj) == LOAD_BALANCER
    errs: list[FieldError] = []
    if spec.get("allocateLoadBalancerNodePorts") is not None and not is_lb:
        errs.append(forbidden(path.child("allocateLoadBalancerNodePorts"), lb_only))
    if is_lb and spec.get("allocateLoadBalancerNodePorts") is None:
        errs.append(required("allocateLoadBalancerNodePorts"))  # upstream omits "spec."
    lb_class = spec.get("loadBalancerClass")
    if lb_class is not None:
        if is_lb:
            errs.extend(validate_qualified_name(as_str(lb_class), path.child("loadBalancerClass")))
        else:
            errs.append(forbidden(path.child("loadBalancerClass"), lb_only))
    return errs


def _validate_traffic_policies(obj: Obj) -> list[FieldError]:
    spec, path = spec_of(obj), Path("spec")
    errs: list[FieldError] = []
    etp = spec.get("externalTrafficPolicy", "")
    if not externally_accessible(obj):
        if etp:
            msg = "may only be set for externally-accessible services"
            errs.append(invalid_value(path.child("externalTrafficPolicy"), etp, msg))
    elif not etp:
        errs.append(required(path.child("externalTrafficPolicy")))
    elif etp not in TRAFFIC_POLICIES:
        errs.append(not_supported(path.child("externalTrafficPolicy"), etp, TRAFFIC_POLICIES))
    errs.extend(_validate_health_check_node_port(obj))
    itp = spec.get("internalTrafficPolicy")
    if itp is None and type_of(obj) in (NODE_PORT, LOAD_BALANCER, CLUSTER_IP):
        errs.append(required(path.child("internalTrafficPolicy")))
    elif itp is not None and itp not in TRAFFIC_POLICIES:
        errs.append(not_supported(path.child("internalTrafficPolicy"), itp, TRAFFIC_POLICIES))
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution not in TRAFFIC_DISTRIBUTIONS:
        errs.append(not_supported(path.child("trafficDistribution"), distribution, TRAFFIC_DISTRIBUTIONS))
    return errs


def _validate_health_check_node_port(obj: Obj) -> list[FieldError]:
    """The port itself is allocated by the server, so a missing one is not reported here."""
    value = spec_of(obj).get("healthCheckNodePort")
    path = Path("spec").child("healthCheckNodePort")
    if not needs_health_check(obj):
        msg = "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"
        return [invalid_value(path, value, msg)] if value else []
    if value:
        return [invalid_value(path, value, m) for m in is_valid_port_num(value)]
    return []


def _validate_topology_annotations(obj: Obj) -> list[FieldError]:
    annotations = as_dict(meta.meta(obj).get("annotations"))
    mode, hints = annotations.get(TOPOLOGY_MODE_ANNOTATION), annotations.get(TOPOLOGY_HINTS_ANNOTATION)
    if mode is None or hints is None or mode == hints:
        return []
    path = Path("metadata").child("annotations").key(TOPOLOGY_MODE_ANNOTATION)
    return [invalid_value(path, mode, f"must match annotations[{TOPOLOGY_HINTS_ANNOTATION}] when both are specified")]


# --- validation: cluster IPs and IP families -------------------------------------------------------


def _validate_cluster_ip_sync(spec: Mapping[str, Any], ips: list[Any], path: Path) -> list[FieldError]:
    cluster_ip = spec.get("clusterIP", "")
    if cluster_ip:
        if not ips:
            return [required(path)]
        if ips[0] != cluster_ip:
            return [invalid_value(path, ips, "first value must match `clusterIP`")]
    elif ips:
        return [invalid_value(path, ips, "must be empty when `clusterIP` is not specified")]
    return []


def _validate_families(spec: Mapping[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    path = Path("spec").child("ipFamilies")
    seen: set[Any] = set()
    for i, family in enumerate(as_list(spec.get("ipFamilies"))):
        if family not in IP_FAMILIES:
            errs.append(not_supported(path.index(i), family, IP_FAMILIES))
        if family in seen:
            errs.append(duplicate(path.index(i), family))
        seen.add(family)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        errs.append(not_supported(Path("spec").child("ipFamilyPolicy"), policy, IP_FAMILY_POLICIES))
    return errs


def _cluster_ip_value_errors(ips: list[Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, ip in enumerate(ips):
        if i == 0 and ip == CLUSTER_IP_NONE:
            if len(ips) > 1:
                errs.append(invalid_value(path, ips, "'None' must be the first and only value"))
            continue
        errs.extend(validate_ip(path.index(i), ip))
    return errs


def _family_match_errors(obj: Obj, ips: list[Any], path: Path) -> list[FieldError]:
    families = as_list(spec_of(obj).get("ipFamilies"))
    if is_headless(obj):
        return []
    errs: list[FieldError] = []
    for i, (ip, family) in enumerate(zip(ips, families, strict=False)):
        if family in IP_FAMILIES and ip_family(ip) != family:
            msg = f"expected an {family} value as indicated by `ipFamilies[{i}]`"
            errs.append(invalid_value(path.index(i), ip, msg))
    return errs


def validate_cluster_ips(obj: Obj) -> list[FieldError]:
    """Upstream ``ValidateServiceClusterIPsRelatedFields``."""
    if type_of(obj) == EXTERNAL_NAME:
        return []
    spec, ips, path = spec_of(obj), cluster_ips(obj), Path("spec").child("clusterIPs")
    errs = _validate_cluster_ip_sync(spec, ips, path) + _validate_families(spec)
    value_errs = _cluster_ip_value_errors(ips, path)
    errs.extend(value_errs)
    if len(ips) > 2:
        errs.append(invalid_value(path, ips, "may only hold up to 2 values"))
    if value_errs:
        return errs
    if len(ips) > 1 and {ip_family(ip) for ip in ips} != {"IPv4", "IPv6"}:
        errs.append(invalid_value(path, ips, "may specify no more than one IP for each IP family"))
    return errs + _family_match_errors(obj, ips, path)


# --- validation: updates -------------------------------------------------------------------------


def _validate_cluster_ips_update(old: Obj, new: Obj) -> list[FieldError]:
    """Upstream ``validateUpgradeDowngradeClusterIPs``: the primary IP may not change."""
    if EXTERNAL_NAME in (type_of(old), type_of(new)) or (is_headless(old) and is_headless(new)):
        return []
    old_ips, new_ips = cluster_ips(old), cluster_ips(new)
    path = Path("spec").child("clusterIPs")
    changed = "may not change once set"
    if len(old_ips) == len(new_ips):
        return [invalid_value(path.index(i), new_ips, changed) for i, ip in enumerate(old_ips) if ip != new_ips[i]]
    errs: list[FieldError] = []
    if old_ips and new_ips and old_ips[0] != new_ips[0]:
        errs.append(invalid_value(path.index(0), new_ips, changed))
    if len(old_ips) > len(new_ips):
        if not new_ips:
            errs.append(invalid_value(path.index(0), new_ips, "primary clusterIP can not be unset"))
        if len(new_ips) == 1:
            errs.extend(_single_stack_required(new, "clusterIP"))
    return errs


def _single_stack_required(new: Obj, what: str) -> list[FieldError]:
    policy = spec_of(new).get("ipFamilyPolicy")
    if policy == "SingleStack":
        return []
    msg = f"must be set to 'SingleStack' when releasing the secondary {what}"
    return [invalid_value(Path("spec").child("ipFamilyPolicy"), policy, msg)]


def _validate_families_update(old: Obj, new: Obj) -> list[FieldError]:
    """Upstream ``validateUpgradeDowngradeIPFamilies`` (headless services may change families)."""
    if EXTERNAL_NAME in (type_of(old), type_of(new)) or is_headless(old) or is_headless(new):
        return []
    old_f, new_f = as_list(spec_of(old).get("ipFamilies")), as_list(spec_of(new).get("ipFamilies"))
    path = Path("spec").child("ipFamilies").index(0)
    changed = "may not change once set"
    if len(old_f) == len(new_f):
        return [invalid_value(path, new_f, changed) for i, f in enumerate(old_f) if f != new_f[i]]
    errs: list[FieldError] = []
    if old_f and new_f and old_f[0] != new_f[0]:
        errs.append(invalid_value(path, cluster_ips(new), changed))
    if len(old_f) > len(new_f):
        if not cluster_ips(new):
            errs.append(invalid_value(path, new_f, "primary ipFamily can not be unset"))
        if len(new_f) == 1:
            errs.extend(_single_stack_required(new, "ipFamily"))
    return errs


def _validate_update(new: Obj, old: Obj) -> list[FieldError]:
    errs = _validate_cluster_ips_update(old, new) + _validate_families_update(old, new)
    if type_of(old) == LOAD_BALANCER and type_of(new) == LOAD_BALANCER:
        old_class, new_class = spec_of(old).get("loadBalancerClass"), spec_of(new).get("loadBalancerClass")
        if old_class != new_class:
            errs.append(invalid_value(Path("spec").child("loadBalancerClass"), new_class, "may not change once set"))
    same_port = spec_of(old).get("healthCheckNodePort") == spec_of(new).get("healthCheckNodePort")
    if needs_health_check(old) and needs_health_check(new) and not same_port:
        errs.append(forbidden(Path("spec").child("healthCheckNodePort"), FIELD_IMMUTABLE))
    return errs


# --- validation: status --------------------------------------------------------------------------


def _validate_ingress(ingress: Mapping[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    ip, mode, hostname = ingress.get("ip"), ingress.get("ipMode"), as_str(ingress.get("hostname"))
    if ip:
        errs.extend(validate_ip(path.child("ip"), ip))
    if mode is None and ip:
        errs.append(required(path.child("ipMode"), "must be specified when `ip` is set"))
    elif mode is not None and not ip:
        errs.append(forbidden(path.child("ipMode"), "may not be specified when `ip` is not set"))
    elif mode is not None and mode not in LB_IP_MODES:
        errs.append(not_supported(path.child("ipMode"), mode, LB_IP_MODES))
    if hostname:
        errs.extend(invalid_value(path.child("hostname"), hostname, m) for m in meta.is_dns1123_subdomain(hostname))
        if parse_ip(hostname) is not None:
            errs.append(invalid_value(path.child("hostname"), hostname, "must be a DNS name, not an IP address"))
    return errs


def validate_load_balancer_status(obj: Obj, old: Obj | None) -> list[FieldError]:
    """Upstream ``ValidateLoadBalancerStatus``; the type check applies when the status changes."""
    status = as_dict(obj.get("status"))
    ingress = as_list(as_dict(status.get("loadBalancer")).get("ingress"))
    path = Path("status").child("loadBalancer", "ingress")
    changed = old is not None and status != as_dict(old.get("status"))
    if ingress and type_of(obj) != LOAD_BALANCER and changed:
        return [forbidden(path, "may only be used when `spec.type` is 'LoadBalancer'")]
    return [e for i, item in enumerate(ingress) for e in _validate_ingress(as_dict(item), path.index(i))]


# --- validation: entry point ---------------------------------------------------------------------


def validate_service(obj: Obj, old: Obj | None = None, port_range: PortRange | None = None) -> list[FieldError]:
    """Upstream ``ValidateService`` (+ ``ValidateServiceUpdate`` when ``old`` is given), the
    allocator's node-port range check against ``port_range`` (default :data:`node_port_range`),
    and the status rules."""
    errs = meta.validate_object_meta(obj, True, meta.is_dns1035_label, old)
    if old is not None:
        errs.extend(_validate_update(obj, old))
    errs.extend(_validate_topology_annotations(obj))
    if not ports_of(obj) and not is_headless(obj) and type_of(obj) != EXTERNAL_NAME:
        errs.append(required(Path("spec").child("ports")))
    errs.extend(_validate_type_specific(obj))
    errs.extend(_validate_ports(obj))
    selector = spec_of(obj).get("selector")
    if selector is not None:
        errs.extend(meta.validate_labels(selector, Path("spec").child("selector")))
    errs.extend(_validate_affinity(obj))
    errs.extend(validate_cluster_ips(obj))
    errs.extend(_validate_external_ips(obj))
    errs.extend(_validate_type(obj))
    errs.extend(_validate_node_port_usage(obj))
    errs.extend(_validate_source_ranges(obj))
    errs.extend(_validate_load_balancer_fields(obj))
    errs.extend(_validate_traffic_policies(obj))
    errs.extend(validate_node_port_range(obj, port_range or node_port_range))
    errs.extend(validate_load_balancer_status(obj, old))
    return errs


def _validate(obj: Obj, old: Obj | None) -> list[FieldError]:
    return validate_service(obj, old, node_port_range)


# --- update preparation (upstream registry behaviour) --------------------------------------------


def _patch_allocated_values(new: Obj, old: Obj) -> None:
    """Carry over allocated clusterIPs, nodePorts and healthCheckNodePort a client left out."""
    spec, old_spec = new.setdefault("spec", {}), spec_of(old)
    if needs_cluster_ip(old) and needs_cluster_ip(new):
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not spec.get("clusterIPs") and cluster_ips(old):
            spec["clusterIPs"] = list(cluster_ips(old))
    if needs_node_ports(old) and needs_node_ports(new):
        used = {p.get("nodePort") for p in ports_of(old)} & {p.get("nodePort") for p in ports_of(new)}
        by_name = {as_str(p.get("name")): p.get("nodePort") for p in ports_of(old)}
        for port in as_list(spec.get("ports")):
            if isinstance(port, dict) and not port.get("nodePort"):
                value = by_name.get(as_str(port.get("name")))
                if value and value not in used:
                    port["nodePort"] = value
    keep_hc = needs_health_check(old) and needs_health_check(new) and old_spec.get("healthCheckNodePort")
    if keep_hc and not spec.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]


def _normalize_cluster_ips(new: Obj, old: Obj) -> None:
    """Upstream ``normalizeClusterIPs`` for updates from clients that only know ``clusterIP``."""
    spec, old_spec = new.setdefault("spec", {}), spec_of(old)
    if cluster_ips(old) and not spec.get("clusterIPs") and old_spec.get("clusterIP") == spec.get("clusterIP"):
        spec["clusterIPs"] = list(cluster_ips(old))
    if old_spec.get("clusterIP") != spec.get("clusterIP"):
        same = cluster_ips(old) == as_list(spec.get("clusterIPs"))
        if old_spec.get("clusterIP") and not spec.get("clusterIP") and same:
            spec.pop("clusterIPs", None)
        if spec.get("clusterIP") and same:
            spec["clusterIPs"] = [spec["clusterIP"]]


def _drop_if_same(spec: dict[str, Any], old_spec: Mapping[str, Any], field: str) -> None:
    if spec.get(field) == old_spec.get(field):
        spec.pop(field, None)


def _drop_type_dependent_fields(new: Obj, old: Obj) -> None:
    """Upstream ``dropTypeDependentFields``: clear what the new type no longer uses."""
    spec, old_spec = new.setdefault("spec", {}), spec_of(old)
    if needs_cluster_ip(old) and not needs_cluster_ip(new):
        if spec.get("clusterIPs") == old_spec.get("clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        _drop_if_same(spec, old_spec, "ipFamilies")
        _drop_if_same(spec, old_spec, "ipFamilyPolicy")
    same_node_ports = [p.get("nodePort") for p in ports_of(new)] == [p.get("nodePort") for p in ports_of(old)]
    if needs_node_ports(old) and not needs_node_ports(new) and same_node_ports:
        for port in as_list(spec.get("ports")):
            if isinstance(port, dict):
                port.pop("nodePort", None)
    if needs_health_check(old) and not needs_health_check(new):
        _drop_if_same(spec, old_spec, "healthCheckNodePort")
    if type_of(old) == LOAD_BALANCER and type_of(new) != LOAD_BALANCER:
        if spec.get("allocateLoadBalancerNodePorts") is not None:
            _drop_if_same(spec, old_spec, "allocateLoadBalancerNodePorts")
        _drop_if_same(spec, old_spec, "loadBalancerClass")
    if externally_accessible(old) and not externally_accessible(new):
        _drop_if_same(spec, old_spec, "externalTrafficPolicy")
    if type_of(new) != LOAD_BALANCER and isinstance(new.get("status"), dict):
        new["status"]["loadBalancer"] = {}


def prepare_for_update(new: Obj, old: Obj) -> None:
    """What upstream's Service registry does to an update before validating it (in place)."""
    _patch_allocated_values(new, old)
    _normalize_cluster_ips(new, old)
    _drop_type_dependent_fields(new, old)


# --- table -----------------------------------------------------------------------------------------


def load_balancer_addresses(obj: Obj) -> list[str]:
    """Sorted, de-duplicated ingress IPs (or hostnames), as upstream's status stringer."""
    found = set()
    for ingress in as_list(as_dict(as_dict(obj.get("status")).get("loadBalancer")).get("ingress")):
        ingress = as_dict(ingress)
        value = as_str(ingress.get("ip")) or as_str(ingress.get("hostname"))
        if value:
            found.add(value)
    return sorted(found)


def external_ip(obj: Obj) -> str:
    """The EXTERNAL-IP cell (server-side tables are wide, so nothing is truncated)."""
    kind = type_of(obj)
    external = [as_str(ip) for ip in as_list(spec_of(obj).get("externalIPs"))]
    if kind in (CLUSTER_IP, NODE_PORT):
        return ",".join(external) or "<none>"
    if kind == LOAD_BALANCER:
        return ",".join(load_balancer_addresses(obj) + external) or "<pending>"
    if kind == EXTERNAL_NAME:
        return as_str(spec_of(obj).get("externalName"))
    return "<unknown>"


def port_string(obj: Obj) -> str:
    """The PORT(S) cell: ``80/TCP``, ``80:30080/TCP``, comma-joined, ``<none>`` when empty."""
    pieces = []
    for port in ports_of(obj):
        number, protocol, node_port = port.get("port", 0), as_str(port.get("protocol")), port.get("nodePort")
        pieces.append(f"{number}:{node_port}/{protocol}" if node_port else f"{number}/{protocol}")
    return ",".join(pieces) or "<none>"


def service_row(obj: Obj, now: datetime) -> list[Any]:
    ips = cluster_ips(obj)
    return [
        meta.name_of(obj),
        type_of(obj),
        as_str(ips[0]) if ips else "<none>",
        external_ip(obj),
        port_string(obj),
        meta.age(obj, now),
        meta.format_labels(as_dict(spec_of(obj).get("selector"))),
    ]


SERVICE = Kind(
    group="",
    version="v1",
    kind="Service",
    plural="services",
    namespaced=True,
    short_names=("svc",),
    categories=("all",),
    subresources=frozenset({"status"}),
    default=default_service,
    validate=_validate,
    merge_keys={"spec.ports": "port", "status.conditions": "type"},
    columns=(
        column("Name", fmt="name"),
        column("Type"),
        column("Cluster-IP"),
        column("External-IP"),
        column("Port(s)"),
        column("Age"),
        column("Selector", priority=1),
    ),
    row=service_row,
    prepare_update=prepare_for_update,
    field_selectors={
        "spec.clusterIP": lambda o: as_str(spec_of(o).get("clusterIP")),
        "spec.type": lambda o: type_of(o),
    },
)

KINDS: list[Kind] = [SERVICE]

"""The ``networking.k8s.io/v1`` kinds: Ingress, IngressClass and NetworkPolicy.

This module owns what the API server does to these objects before storing them, as upstream
does it: the v1 defaulters (NetworkPolicy policy types and port protocols, IngressClass
parameter scope), the validation of ``pkg/apis/networking/validation`` with its exact messages
and field paths (so ``kubectl apply`` of a broken manifest prints the sentence a real cluster
prints), and the server-side table rows kubectl shows.  Objects stay wire-form dicts; nothing
is dropped and nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubewire.api import meta
from kubewire.api.core import GoValue, as_dict, as_dicts, as_list, is_int
from kubewire.api.fields import (
    FieldError,
    Path,
    forbidden,
    invalid_value,
    not_supported,
    required,
    too_long,
)
from kubewire.api.netvalid import (
    CIDR_ERROR,
    IPNetwork,
    is_valid_port_name,
    is_valid_port_num,
    parse_ip,
    parse_network,
    validate_ip,
)
from kubewire.api.registry import Column, Kind, Obj

GROUP = "networking.k8s.io"
VERSION = "v1"

PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
POLICY_TYPES = ("Ingress", "Egress")
PROTOCOLS = ("TCP", "UDP", "SCTP")
PARAMETER_SCOPES = ("Cluster", "Namespace")
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
MAX_CONTROLLER_LEN = 250

_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")
_WILDCARD_FMT = "\\*\\." + meta.DNS1123_SUBDOMAIN_FMT
_WILDCARD = re.compile(_WILDCARD_FMT)
_HTTP_PATH_FMT = "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+"
_HTTP_PATH = re.compile(_HTTP_PATH_FMT)


# --- small upstream validators (apimachinery util/validation wording) --------------------------


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Upstream ``RegexError``: the message, examples and the regex it was checked against."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > meta.DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {meta.DNS1123_SUBDOMAIN_MAX} characters")
    if not _WILDCARD.fullmatch(value):
        errs.append(
            regex_error(
                "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
                "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
                "alphanumeric character",
                _WILDCARD_FMT,
                "*.example.com",
            )
        )
    return errs


def is_path_segment_name(name: str) -> list[str]:
    """Upstream ``IsPathSegmentName``: a name usable as one URL path segment."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def _spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    return as_dict(obj.get("spec"))


# --- defaulting --------------------------------------------------------------------------------


def default_network_policy(obj: Obj) -> None:
    """``SetDefaults_NetworkPolicy``/``_NetworkPolicyPort``: policy types and TCP ports."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    for direction in ("ingress", "egress"):
        for rule in as_dicts(spec.get(direction)):
            for port in as_dicts(rule.get("ports")):
                port.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types


def default_ingress_class(obj: Obj) -> None:
    """``SetDefaults_IngressClass``: a parameters reference without a scope is cluster-scoped."""
    params = _spec(obj).get("parameters")
    if isinstance(params, dict) and params.get("scope") is None:
        params["scope"] = "Cluster"


# --- Ingress validation ------------------------------------------------------------------------


def validate_ingress(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    spec = _spec(obj)
    errs.extend(_ingress_spec(spec, Path("spec")))
    errs.extend(_ingress_status(obj, old))
    if old is None:
        errs.extend(_ingress_class_annotation(obj, spec))
    return errs


def _ingress_spec(spec: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    rules = spec.get("rules")
    backend = spec.get("defaultBackend")
    if not rules and backend is None:
        shown = "[]networking.IngressRule{}" if isinstance(rules, list) else "[]networking.IngressRule(nil)"
        errs.append(invalid_value(path, GoValue(shown), "either `defaultBackend` or `rules` must be specified"))
    if backend is not None:
        errs.extend(_ingress_backend(backend, path.child("defaultBackend")))
    for i, rule in enumerate(as_dicts(rules)):
        errs.extend(_ingress_rule(rule, path.child("rules").index(i)))
    for i, tls in enumerate(as_dicts(spec.get("tls"))):
        errs.extend(_ingress_tls(tls, path.child("tls").index(i)))
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        for msg in meta.is_dns1123_subdomain(str(class_name)):
            errs.append(invalid_value(path.child("ingressClassName"), class_name, msg))
    return errs


def _host_errors(host: str, path: Path) -> list[FieldError]:
    if "*" in host:
        return [invalid_value(path, host, m) for m in is_wildcard_dns1123_subdomain(host)]
    return [invalid_value(path, host, m) for m in meta.is_dns1123_subdomain(host)]


def _ingress_rule(rule: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    host = str(rule.get("host") or "")
    if host:
        if parse_ip(host) is not None:
            errs.append(invalid_value(path.child("host"), host, "must be a DNS name, not an IP address"))
        errs.extend(_host_errors(host, path.child("host")))
    http = rule.get("http")
    if isinstance(http, dict):
        paths = as_dicts(http.get("paths"))
        if not paths:
            errs.append(required(path.child("http", "paths")))
        for i, p in enumerate(paths):
            errs.extend(_ingress_path(p, path.child("http", "paths").index(i)))
    return errs


def _ingress_path(item: dict[str, Any], path: Path) -> list[FieldError]:
    path_type = item.get("pathType")
    if path_type is None:
        return [required(path.child("pathType"), "pathType must be specified")]
    value = str(item.get("path") or "")
    errs: list[FieldError] = []
    if path_type in ("Exact", "Prefix"):
        errs.extend(_strict_path(value, path.child("path")))
    elif path_type == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.append(invalid_value(path.child("path"), value, "must be an absolute path"))
    else:
        errs.append(not_supported(path.child("pathType"), path_type, PATH_TYPES))
    errs.extend(_ingress_backend(item.get("backend") or {}, path.child("backend")))
    return errs


def _strict_path(value: str, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    if not value.startswith("/"):
        errs.append(invalid_value(path, value, "must be an absolute path"))
    for seq in _INVALID_PATH_SEQUENCES if value else ():
        if seq in value:
            errs.append(invalid_value(path, value, f"must not contain '{seq}'"))
    for suffix in _INVALID_PATH_SUFFIXES if value else ():
        if value.endswith(suffix):
            errs.append(invalid_value(path, value, f"cannot end with '{suffix}'"))
    return errs


def _ingress_backend(backend: Any, path: Path) -> list[FieldError]:
    backend = backend if isinstance(backend, dict) else {}
    resource, service = backend.get("resource"), backend.get("service")
    if resource is not None and service is not None:
        return [invalid_value(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        return _typed_local_ref(resource if isinstance(resource, dict) else {}, path.child("resource"))
    if service is not None:
        return _service_backend(service if isinstance(service, dict) else {}, path)
    return [invalid_value(path, "", "resource or service backend is required")]


def _service_backend(service: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    name = str(service.get("name") or "")
    if not name:
        errs.append(required(path.child("service", "name")))
    else:
        errs.extend(invalid_value(path.child("service", "name"), name, m) for m in meta.is_dns1035_label(name))
    port = as_dict(service.get("port"))
    port_name, number = str(port.get("name") or ""), port.get("number") or 0
    if port_name and number:
        errs.append(invalid_value(path, "", "cannot set both port name & port number"))
    elif port_name:
        errs.extend(
            invalid_value(path.child("service", "port", "name"), port_name, m) for m in is_valid_port_name(port_name)
        )
    elif number:
        errs.extend(
            invalid_value(path.child("service", "port", "number"), number, m) for m in is_valid_port_num(number)
        )
    else:
        errs.append(required(path, "port name or number is required"))
    return errs


def _typed_local_ref(ref: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    group = ref.get("apiGroup")
    if group is not None:
        errs.extend(invalid_value(path.child("apiGroup"), group, m) for m in meta.is_dns1123_subdomain(str(group)))
    for key in ("kind", "name"):
        value = str(ref.get(key) or "")
        if not value:
            errs.append(required(path.child(key)))
        else:
            errs.extend(invalid_value(path.child(key), value, m) for m in is_path_segment_name(value))
    return errs


def _ingress_tls(tls: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, host in enumerate(as_list(tls.get("hosts"))):
        errs.extend(_host_errors(str(host), path.child("hosts").index(i)))
    secret = str(tls.get("secretName") or "")
    if secret:
        errs.extend(invalid_value(path.child("secretName"), secret, m) for m in meta.is_dns1123_subdomain(secret))
    return errs


def _ingress_status(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateIngressLoadBalancerStatus`` (IPs already stored are not re-checked)."""
    path = Path("status").child("loadBalancer", "ingress")
    existing = {e.get("ip") for e in _lb_entries(old)} if old is not None else set()
    errs: list[FieldError] = []
    for i, entry in enumerate(_lb_entries(obj)):
        ip, hostname = str(entry.get("ip") or ""), str(entry.get("hostname") or "")
        if ip and ip not in existing:
            errs.extend(validate_ip(path.index(i).child("ip"), ip))
        if hostname:
            errs.extend(
                invalid_value(path.index(i).child("hostname"), hostname, m) for m in meta.is_dns1123_subdomain(hostname)
            )
            if parse_ip(hostname) is not None:
                errs.append(
                    invalid_value(path.index(i).child("hostname"), hostname, "must be a DNS name, not an IP address")
                )
    return errs


def _lb_entries(obj: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    status = (obj or {}).get("status")
    lb = status.get("loadBalancer") if isinstance(status, dict) else None
    return as_dicts(lb.get("ingress")) if isinstance(lb, dict) else []


def _ingress_class_annotation(obj: Obj, spec: dict[str, Any]) -> list[FieldError]:
    annotations = meta.meta(obj).get("annotations") or {}
    value = annotations.get(INGRESS_CLASS_ANNOTATION) if isinstance(annotations, dict) else None
    class_name = spec.get("ingressClassName")
    if value is None or class_name is None or value == class_name:
        return []
    path = Path("annotations").child(INGRESS_CLASS_ANNOTATION)
    return [invalid_value(path, value, "must match `ingressClassName` when both are specified")]


# --- IngressClass validation -------------------------------------------------------------------


def validate_ingress_class(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = meta.validate_object_meta(obj, False, meta.is_dns1123_subdomain, old)
    spec, path = _spec(obj), Path("spec")
    if old is not None:
        new_ctl, old_ctl = spec.get("controller", ""), _spec(old).get("controller", "")
        if new_ctl != old_ctl:
            errs.append(invalid_value(path.child("controller"), new_ctl, "field is immutable"))
    errs.extend(_controller(str(spec.get("controller") or ""), path.child("controller")))
    params = spec.get("parameters")
    if isinstance(params, dict):
        errs.extend(_class_parameters(params, path.child("parameters")))
    return errs


def _controller(value: str, path: Path) -> list[FieldError]:
    if not value:
        return [required(path)]
    errs: list[FieldError] = []
    if len(value) > MAX_CONTROLLER_LEN:
        errs.append(too_long(path, MAX_CONTROLLER_LEN))
    return errs + is_domain_prefixed_path(path, value)


def is_domain_prefixed_path(path: Path, value: str) -> list[FieldError]:
    """Upstream ``IsDomainPrefixedPath`` (``acme.io/foo``)."""
    host, sep, rest = value.partition("/")
    if not sep or not host or not rest:
        return [invalid_value(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = [invalid_value(path, host, m) for m in meta.is_dns1123_subdomain(host)]
    if not _HTTP_PATH.fullmatch(rest):
        errs.append(invalid_value(path, rest, regex_error("Invalid path", _HTTP_PATH_FMT)))
    return errs


def _class_parameters(params: dict[str, Any], path: Path) -> list[FieldError]:
    errs = _typed_local_ref(params, path)
    scope = params.get("scope")
    if scope is None:
        return [*errs, required(path.child("scope"))]
    if scope not in PARAMETER_SCOPES:
        return [*errs, not_supported(path.child("scope"), scope, PARAMETER_SCOPES)]
    namespace = params.get("namespace")
    if scope == "Namespace" and namespace is None:
        errs.append(required(path.child("namespace"), "`parameters.scope` is set to 'Namespace'"))
    elif scope == "Namespace":
        errs.extend(invalid_value(path.child("namespace"), namespace, m) for m in meta.is_dns1123_label(str(namespace)))
    if scope == "Cluster" and namespace is not None:
        errs.append(forbidden(path.child("namespace"), "`parameters.scope` is set to 'Cluster'"))
    return errs


# --- NetworkPolicy validation ------------------------------------------------------------------


def validate_network_policy(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    spec, path = _spec(obj), Path("spec")
    errs.extend(meta.validate_label_selector(spec.get("podSelector"), path.child("podSelector")))
    legacy = _existing_cidrs(old)
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(as_dicts(spec.get(direction))):
            rule_path = path.child(direction).index(i)
            for j, port in enumerate(as_dicts(rule.get("ports"))):
                errs.extend(_policy_port(port, rule_path.child("ports").index(j)))
            for j, peer in enumerate(as_dicts(rule.get(peers_key))):
                errs.extend(_policy_peer(peer, rule_path.child(peers_key).index(j), legacy))
    errs.extend(_policy_types(spec.get("policyTypes"), path.child("policyTypes")))
    return errs


def _policy_port(port: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        errs.append(not_supported(path.child("protocol"), protocol, PROTOCOLS))
    number, end = port.get("port"), port.get("endPort")
    if number is None:
        if end is not None:
            errs.append(invalid_value(path.child("endPort"), end, "may not be specified when `port` is not specified"))
    elif is_int(number):
        errs.extend(invalid_value(path.child("port"), number, m) for m in is_valid_port_num(number))
        if end is not None:
            if is_int(end) and end < number:
                errs.append(invalid_value(path.child("endPort"), end, "must be greater than or equal to `port`"))
            errs.extend(invalid_value(path.child("endPort"), end, m) for m in is_valid_port_num(end))
    else:
        if end is not None:
            errs.append(invalid_value(path.child("endPort"), end, "may not be specified when `port` is non-numeric"))
        errs.extend(invalid_value(path.child("port"), number, m) for m in is_valid_port_name(str(number)))
    return errs


def _policy_peer(peer: dict[str, Any], path: Path, legacy: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    count = 0
    for key in ("podSelector", "namespaceSelector"):
        if peer.get(key) is not None:
            count += 1
            errs.extend(meta.validate_label_selector(peer[key], path.child(key)))
    block = peer.get("ipBlock")
    if block is not None:
        count += 1
        errs.extend(_ip_block(block if isinstance(block, dict) else {}, path.child("ipBlock"), legacy))
    if count == 0:
        errs.append(required(path, "must specify a peer"))
    elif count > 1 and block is not None:
        errs.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return errs


def _ip_block(block: dict[str, Any], path: Path, legacy: set[str]) -> list[FieldError]:
    cidr_text = str(block.get("cidr") or "")
    if not cidr_text:
        return [required(path.child("cidr"))]
    cidr = parse_network(cidr_text)
    if cidr is None:
        return [] if cidr_text in legacy else [invalid_value(path.child("cidr"), cidr_text, CIDR_ERROR)]
    errs: list[FieldError] = []
    for i, text in enumerate(as_list(block.get("except"))):
        exc = parse_network(str(text))
        if exc is None:
            if str(text) not in legacy:
                errs.append(invalid_value(path.child("except").index(i), text, CIDR_ERROR))
            continue
        if not _strict_subset(exc, cidr):
            errs.append(invalid_value(path.child("except").index(i), text, "must be a strict subset of `cidr`"))
    return errs


def _strict_subset(inner: IPNetwork, outer: IPNetwork) -> bool:
    if inner.version != outer.version:
        return False
    return inner.network_address in outer and outer.prefixlen < inner.prefixlen


def _existing_cidrs(old: Obj | None) -> set[str]:
    """CIDRs stored before: an update may keep them even if today's rules reject them."""
    if old is None:
        return set()
    found: set[str] = set()
    spec = _spec(old)
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for rule in as_dicts(spec.get(direction)):
            for peer in as_dicts(rule.get(peers_key)):
                block = peer.get("ipBlock")
                if isinstance(block, dict):
                    found.add(str(block.get("cidr") or ""))
                    found.update(str(e) for e in block.get("except") or [])
    return found


def _policy_types(types: Any, path: Path) -> list[FieldError]:
    if not isinstance(types, list):
        return []
    if len(types) > len(POLICY_TYPES):
        shown = "[]networking.PolicyType{" + ", ".join(f'"{t}"' for t in types) + "}"
        return [invalid_value(path, GoValue(shown), "may not specify more than two policyTypes")]
    return [not_supported(path.index(i), t, POLICY_TYPES) for i, t in enumerate(types) if t not in POLICY_TYPES]


# --- tables ------------------------------------------------------------------------------------

_NAME = Column("Name", "string", "name", "Name must be unique within a namespace.")
_AGE = Column(
    "Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created."
)

INGRESS_COLUMNS = (
    _NAME,
    Column(
        "Class", description="The name of the IngressClass resource that should be used for additional configuration"
    ),
    Column("Hosts", description="Hosts that incoming requests are matched against before the ingress rule"),
    Column("Address", description="Address is a list containing ingress points for the load-balancer"),
    Column("Ports", description="Ports of TLS configurations that open"),
    _AGE,
)
INGRESS_CLASS_COLUMNS = (
    _NAME,
    Column("Controller", description="Controller that is responsible for handling this class"),
    Column("Parameters", description="A reference to a resource with additional parameters"),
    _AGE,
)
NETWORK_POLICY_COLUMNS = (
    _NAME,
    Column("Pod-Selector", description="Selects the pods to which this NetworkPolicy object applies."),
    _AGE,
)


def format_hosts(rules: Any) -> str:
    """kubectl's ``formatHosts``: up to three hosts, then ``+ N more...``; ``*`` when none."""
    rule_list = as_dicts(rules)
    shown: list[str] = []
    more = False
    for rule in rule_list:
        if len(shown) == 3:
            more = True
        if not more and rule.get("host"):
            shown.append(str(rule["host"]))
    if not shown:
        return "*"
    text = ",".join(shown)
    return f"{text} + {len(rule_list) - 3} more..." if more else text


def ingress_address(obj: Mapping[str, Any]) -> str:
    """The load-balancer IPs (or hostnames), sorted and de-duplicated, as the wide printer shows."""
    found = {str(e.get("ip") or e.get("hostname") or "") for e in _lb_entries(obj)}
    return ",".join(sorted(found - {""}))


def ingress_row(obj: Obj, now: datetime) -> list[Any]:
    spec = _spec(obj)
    class_name = spec.get("ingressClassName")
    ports = "80, 443" if spec.get("tls") else "80"
    return [
        meta.name_of(obj),
        "<none>" if class_name is None else class_name,
        format_hosts(spec.get("rules")),
        ingress_address(obj),
        ports,
        meta.age(obj, now),
    ]


def ingress_class_row(obj: Obj, now: datetime) -> list[Any]:
    spec = _spec(obj)
    params = spec.get("parameters")
    shown = "<none>"
    if isinstance(params, dict):
        shown = str(params.get("kind") or "")
        if params.get("apiGroup") is not None:
            shown += "." + str(params["apiGroup"])
        shown += "/" + str(params.get("name") or "")
    return [meta.name_of(obj), str(spec.get("controller") or ""), shown, meta.age(obj, now)]


def network_policy_row(obj: Obj, now: datetime) -> list[Any]:
    selector = _spec(obj).get("podSelector")
    return [meta.name_of(obj), meta.format_selector(selector or {}), meta.age(obj, now)]


INGRESS = Kind(
    group=GROUP,
    version=VERSION,
    kind="Ingress",
    plural="ingresses",
    namespaced=True,
    short_names=("ing",),
    subresources=frozenset({"status"}),
    validate=validate_ingress,
    columns=INGRESS_COLUMNS,
    row=ingress_row,
)

INGRESS_CLASS = Kind(
    group=GROUP,
    version=VERSION,
    kind="IngressClass",
    plural="ingressclasses",
    namespaced=False,
    default=default_ingress_class,
    validate=validate_ingress_class,
    columns=INGRESS_CLASS_COLUMNS,
    row=ingress_class_row,
)

NETWORK_POLICY = Kind(
    group=GROUP,
    version=VERSION,
    kind="NetworkPolicy",
    plural="networkpolicies",
    namespaced=True,
    short_names=("netpol",),
    default=default_network_policy,
    validate=validate_network_policy,
    columns=NETWORK_POLICY_COLUMNS,
    row=network_policy_row,
)

KINDS: list[Kind] = [INGRESS, INGRESS_CLASS, NETWORK_POLICY]

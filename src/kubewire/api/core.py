"""The core/v1 kinds other than Pod and Service: Namespace, Node, Secret, ConfigMap, Event,
ServiceAccount and Endpoints.

Each kind's defaulting, validation (worded and pathed as upstream ``pkg/apis/core/validation``),
table columns (as upstream ``pkg/printers/internalversion``) and field selectors live here, next
to the small rules the other API modules share: accessors over wire-form dicts, the
:class:`GoValue` wrapper for values upstream prints with ``%#v``, DNS labels, protocols,
config-map keys, and the base64 check that mirrors Go's decoder error offsets (ports, IP
addresses and CIDRs are checked by :mod:`kubewire.api.netvalid`).  Pure functions over wire-form
dicts; unknown fields are never dropped.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

from kubewire.api import meta
from kubewire.api.fields import (
    FieldError,
    Path,
    duplicate,
    forbidden,
    go_quote,
    invalid_value,
    not_supported,
    required,
    too_long,
)
from kubewire.api.netvalid import (
    is_valid_port_num,
    parse_cidr,
    unmapped,
    validate_cidr,
    validate_ip,
    validate_non_special_ip,
)
from kubewire.api.registry import Column, FieldGetter, Kind, Obj

FIELD_IMMUTABLE = "field is immutable"
IMMUTABLE_WHEN_SET = "field is immutable when `immutable` is set"
MAX_SECRET_SIZE = 1024 * 1024  # upstream core.MaxSecretSize, also the ConfigMap limit
SUPPORTED_PROTOCOLS = ("SCTP", "TCP", "UDP")

# --- small accessors over wire-form dicts -------------------------------------------------------


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty dict (never mutated by callers)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a JSON array, else an empty list."""
    return value if isinstance(value, list) else []


def as_dicts(value: Any) -> list[dict[str, Any]]:
    """The items of a JSON array, each non-object item read as an empty dict."""
    return [as_dict(v) for v in as_list(value)]


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def is_int(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is a JSON integer (bools are not integers here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def as_int(value: Any) -> int | None:
    """A JSON integer (bools are not integers here), else None."""
    return value if is_int(value) else None


@dataclass(frozen=True)
class GoValue:
    """A bad value pre-rendered the way Go's ``%#v`` prints it (maps, structs, int-or-string).

    :func:`kubewire.api.fields.format_value` prints unknown types with ``str()``, so wrapping the
    rendered text keeps it unquoted in the error sentence.
    """

    text: str

    def __str__(self) -> str:
        return self.text


def since(timestamp: Any, now: datetime) -> str:
    """Upstream ``translateTimestampSince``: ``<unknown>`` for a missing time."""
    when = meta.parse_time(timestamp if isinstance(timestamp, str) else None)
    if when is None:
        return "<unknown>"
    return meta.human_duration((now - when).total_seconds())


# --- names, keys, ports ---------------------------------------------------------------------------


_SUBDOMAIN = re.compile(meta.DNS1123_SUBDOMAIN_FMT)


def dns1123_label_errors(value: str) -> list[str]:
    """Upstream ``IsDNS1123Label``, including its ``must not contain dots`` special case."""
    errs = meta.is_dns1123_label(value)
    if errs and not errs[-1].startswith("must be no more") and _SUBDOMAIN.fullmatch(value):
        errs[-1] = "must not contain dots"
    return errs


def validate_dns1123_label(value: str, path: Path) -> list[FieldError]:
    return [invalid_value(path, value, msg) for msg in dns1123_label_errors(value)]


def validate_qualified_name(value: str, path: Path) -> list[FieldError]:
    return [invalid_value(path, value, msg) for msg in meta.is_qualified_name(value)]


def validate_protocol(value: Any, path: Path) -> list[FieldError]:
    if not value:
        return [required(path)]
    if value not in SUPPORTED_PROTOCOLS:
        return [not_supported(path, value, SUPPORTED_PROTOCOLS)]
    return []


def config_key_errors(key: str) -> list[str]:
    """Upstream ``IsConfigMapKey``."""
    errs = []
    if len(key) > meta.DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {meta.DNS1123_SUBDOMAIN_MAX} characters")
    if not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
        errs.append(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
            "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
        )
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


# --- base64 as Go's encoding/json decodes []byte --------------------------------------------------

_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_NEWLINES = (0x0A, 0x0D)


def _skip_newlines(data: bytes, si: int) -> int:
    while si < len(data) and data[si] in _NEWLINES:
        si += 1
    return si


def _padding_error(data: bytes, si: int, j: int) -> int | None:
    """The error offset after a ``=`` read as the ``j``-th character of a quantum."""
    if j < 2:
        return si - 1
    if j == 2:
        si = _skip_newlines(data, si)
        if si == len(data):
            return len(data)
        if data[si] != ord("="):
            return si - 1
        si += 1
    si = _skip_newlines(data, si)
    return si if si < len(data) else None


def base64_error_offset(text: str) -> int | None:
    """The byte offset Go's ``base64.StdEncoding`` reports as corrupt, or None when valid."""
    data = text.encode()
    si = 0
    while True:
        j = 0
        while j < 4:
            if si == len(data):
                return None if j == 0 else si - j
            c = data[si]
            si += 1
            if c in _B64_ALPHABET:
                j += 1
            elif c in _NEWLINES:
                continue
            elif c != ord("="):
                return si - 1
            else:
                return _padding_error(data, si, j)


def decoded_size(text: str) -> int:
    """Length of a valid base64 string once decoded."""
    return len(base64.b64decode(text.replace("\n", "").replace("\r", "")))


def validate_base64_map(values: Mapping[str, Any], path: Path, redact: bool) -> tuple[list[FieldError], int]:
    """Check each value decodes as Go would; return the errors and the total decoded size."""
    errs: list[FieldError] = []
    total = 0
    for key, value in values.items():
        if value is None:
            continue
        shown = "<secret contents redacted>" if redact else value
        if not isinstance(value, str):
            errs.append(invalid_value(path.key(key), shown, "must be a base64-encoded string"))
            continue
        offset = base64_error_offset(value)
        if offset is not None:
            errs.append(invalid_value(path.key(key), shown, f"illegal base64 data at input byte {offset}"))
        else:
            total += decoded_size(value)
    return errs, total


def validate_config_keys(values: Mapping[str, Any], path: Path) -> list[FieldError]:
    return [invalid_value(path.key(k), k, msg) for k in values for msg in config_key_errors(k)]


def validate_immutable(new: Any, old: Any, path: Path) -> list[FieldError]:
    """Upstream ``ValidateImmutableField``."""
    return [] if new == old else [invalid_value(path, new, FIELD_IMMUTABLE)]


def validate_immutable_flag(new: Obj, old: Obj | None, fields: tuple[str, ...]) -> list[FieldError]:
    """The ``immutable: true`` rules shared by Secret and ConfigMap."""
    if old is None or old.get("immutable") is not True:
        return []
    errs = []
    if new.get("immutable") is not True:
        errs.append(forbidden("immutable", IMMUTABLE_WHEN_SET))
    for name in fields:
        if (new.get(name) or {}) != (old.get(name) or {}):
            errs.append(forbidden(name, IMMUTABLE_WHEN_SET))
    return errs


def column(name: str, type_: str = "string", priority: int = 0, fmt: str = "") -> Column:
    return Column(name=name, type=type_, format=fmt, priority=priority)


NAME_COLUMN = column("Name", fmt="name")
AGE_COLUMN = column("Age")


# --- Namespace -------------------------------------------------------------------------------------

FINALIZER_KUBERNETES = "kubernetes"


def default_namespace(obj: Obj) -> None:
    """Upstream adds the ``kubernetes.io/metadata.name`` label; creation adds the finalizer."""
    md = obj.setdefault("metadata", {})
    name = as_str(md.get("name"))
    if name:
        labels = md.get("labels")
        if not isinstance(labels, dict):
            labels = md["labels"] = {}
        labels["kubernetes.io/metadata.name"] = name
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict) and "finalizers" not in spec:
        spec["finalizers"] = [FINALIZER_KUBERNETES]


def _validate_finalizer(value: Any, path: Path) -> list[FieldError]:
    text = as_str(value)
    errs = [invalid_value(path, value, msg) for msg in meta.is_qualified_name(text)]
    if "/" not in text and text != FINALIZER_KUBERNETES:
        errs.append(invalid_value(path, value, "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


def _validate_namespace_phase(obj: Obj, old: Obj | None) -> list[FieldError]:
    """Upstream ``ValidateNamespaceStatusUpdate``, applied when a status write changes it."""
    status = as_dict(obj.get("status"))
    if old is None or status == as_dict(old.get("status")):
        return []
    phase = status.get("phase", "")
    path = Path("status").child("Phase")
    if not meta.meta(obj).get("deletionTimestamp"):
        if phase != "Active":
            return [invalid_value(path, phase, "may only be 'Active' if `deletionTimestamp` is empty")]
    elif phase != "Terminating":
        return [invalid_value(path, phase, "may only be 'Terminating' if `deletionTimestamp` is not empty")]
    return []


def validate_namespace(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = meta.validate_object_meta(obj, False, dns1123_label_errors, old)
    path = Path("spec").child("finalizers")
    for value in as_list(as_dict(obj.get("spec")).get("finalizers")):
        errs.extend(_validate_finalizer(value, path))
    errs.extend(_validate_namespace_phase(obj, old))
    return errs


def namespace_row(obj: Obj, now: datetime) -> list[Any]:
    return [meta.name_of(obj), as_str(as_dict(obj.get("status")).get("phase")), meta.age(obj, now)]


# --- Node ------------------------------------------------------------------------------------------

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_ROLE_PREFIX = "node-role.kubernetes.io/"
_ROLE_LABEL = "kubernetes.io/role"


def default_node(obj: Obj) -> None:
    """Upstream ``SetDefaults_NodeStatus``: allocatable defaults to capacity."""
    status = obj.get("status")
    if isinstance(status, dict) and status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def _taint_literal(taint: Mapping[str, Any]) -> str:
    key, value, effect = (go_quote(as_str(taint.get(k))) for k in ("key", "value", "effect"))
    return f"core.Taint{{Key:{key}, Value:{value}, Effect:{effect}, TimeAdded:(*v1.Time)(nil)}}"


def _validate_taint(taint: Mapping[str, Any], path: Path) -> list[FieldError]:
    errs = [
        invalid_value(path.child("key"), taint.get("key", ""), m)
        for m in meta.is_qualified_name(as_str(taint.get("key")))
    ]
    value = as_str(taint.get("value"))
    problems = meta.is_label_value(value)
    if problems:
        errs.append(invalid_value(path.child("value"), value, ";".join(problems)))
    effect = taint.get("effect", "")
    if not effect:
        errs.append(required(path.child("effect")))
    elif effect not in TAINT_EFFECTS:
        errs.append(not_supported(path.child("effect"), effect, TAINT_EFFECTS))
    return errs


def _validate_taints(taints: list[Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, raw in enumerate(taints):
        taint = as_dict(raw)
        errs.extend(_validate_taint(taint, path.index(i)))
        key = (as_str(taint.get("key")), as_str(taint.get("effect")))
        if key in seen:
            dup = duplicate(path.index(i), GoValue(_taint_literal(taint)))
            errs.append(FieldError(dup.type, dup.field, dup.value, "taints must be unique by key and effect pair"))
        seen.add(key)
    return errs


def _validate_pod_cidrs(cidrs: list[Any]) -> list[FieldError]:
    path = Path("spec").child("podCIDRs")
    errs = [e for i, c in enumerate(cidrs) for e in validate_cidr(path.index(i), c)]
    if len(cidrs) > 1 and not errs:
        families = {unmapped(parsed[0]).version for c in cidrs if (parsed := parse_cidr(c))}
        if len(families) != 2 or len(cidrs) > 2:
            errs.append(invalid_value(path, cidrs, "may specify no more than one CIDR for each IP family"))
        seen: set[str] = set()
        for i, c in enumerate(cidrs):
            if c in seen:
                errs.append(duplicate(path.index(i), c))
            seen.add(c)
    return errs


def _node_address_literal(addr: Mapping[str, Any]) -> GoValue:
    kind, value = go_quote(as_str(addr.get("type"))), go_quote(as_str(addr.get("address")))
    return GoValue(f"core.NodeAddress{{Type:{kind}, Address:{value}}}")


def _validate_node_update(obj: Obj, old: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: list[Any] = []
    for i, addr in enumerate(as_list(as_dict(obj.get("status")).get("addresses"))):
        if addr in seen:
            errs.append(duplicate(Path("status").child("addresses").index(i), _node_address_literal(as_dict(addr))))
        seen.append(addr)
    spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
    old_cidrs = as_list(old_spec.get("podCIDRs"))
    if old_cidrs and old_cidrs != as_list(spec.get("podCIDRs")):
        msg = 'node updates may not change podCIDR except from "" to valid'
        errs.append(forbidden(Path("spec").child("podCIDRs"), msg))
    old_provider = as_str(old_spec.get("providerID"))
    if old_provider and old_provider != spec.get("providerID"):
        msg = 'node updates may not change providerID except from "" to valid'
        errs.append(forbidden(Path("spec").child("providerID"), msg))
    return errs


def validate_node(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = meta.validate_object_meta(obj, False, meta.is_dns1123_subdomain, old)
    spec = as_dict(obj.get("spec"))
    # Upstream reports taints under metadata (ValidateNode passes the metadata path).
    errs.extend(_validate_taints(as_list(spec.get("taints")), Path("metadata").child("taints")))
    errs.extend(_validate_pod_cidrs(as_list(spec.get("podCIDRs"))))
    if old is not None:
        errs.extend(_validate_node_update(obj, old))
    return errs


def node_status(obj: Obj) -> str:
    """``Ready``/``NotReady``/``Unknown``, plus ``SchedulingDisabled`` when cordoned."""
    parts = []
    for cond in as_list(as_dict(obj.get("status")).get("conditions")):
        cond = as_dict(cond)
        if cond.get("type") == "Ready":
            parts = ["Ready" if cond.get("status") == "True" else "NotReady"]
    if not parts:
        parts = ["Unknown"]
    if as_dict(obj.get("spec")).get("unschedulable") is True:
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def node_roles(obj: Obj) -> str:
    roles = set()
    for key, value in as_dict(meta.meta(obj).get("labels")).items():
        if key.startswith(_ROLE_PREFIX) and key[len(_ROLE_PREFIX) :]:
            roles.add(key[len(_ROLE_PREFIX) :])
        elif key == _ROLE_LABEL and value:
            roles.add(str(value))
    return ",".join(sorted(roles)) or "<none>"


def node_address(obj: Obj, kind: str) -> str:
    for addr in as_list(as_dict(obj.get("status")).get("addresses")):
        if as_dict(addr).get("type") == kind:
            return as_str(as_dict(addr).get("address"))
    return "<none>"


def node_row(obj: Obj, now: datetime) -> list[Any]:
    info = as_dict(as_dict(obj.get("status")).get("nodeInfo"))
    wide = [as_str(info.get(k)) or "<unknown>" for k in ("osImage", "kernelVersion", "containerRuntimeVersion")]
    return [
        meta.name_of(obj),
        node_status(obj),
        node_roles(obj),
        meta.age(obj, now),
        as_str(info.get("kubeletVersion")),
        node_address(obj, "InternalIP"),
        node_address(obj, "ExternalIP"),
        *wide,
    ]


# --- Secret ----------------------------------------------------------------------------------------

SECRET_OPAQUE = "Opaque"
SA_TOKEN = "kubernetes.io/service-account-token"


def default_secret(obj: Obj) -> None:
    """Type defaults to Opaque; ``stringData`` is folded into ``data`` (write-only, as upstream)."""
    if not obj.get("type"):
        obj["type"] = SECRET_OPAQUE
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = obj.get("data")
        if not isinstance(data, dict):
            data = obj["data"] = {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def go_json_error(raw: bytes) -> str | None:
    """Roughly what Go's ``json.Unmarshal`` into a map says about ``raw`` (None when fine)."""
    text = raw.decode(errors="replace")
    if not text.strip():
        return "unexpected end of JSON input"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text):
            return "unexpected end of JSON input"
        return f"invalid character {text[exc.pos]!r} looking for beginning of value"
    if not isinstance(value, dict):
        kind = {list: "array", str: "string", bool: "bool"}.get(type(value), "number")
        return f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
    return None


def _decoded(data: Mapping[str, Any], key: str) -> bytes:
    value = data.get(key)
    if not isinstance(value, str) or base64_error_offset(value) is not None:
        return b""
    return base64.b64decode(value.replace("\n", "").replace("\r", ""))


def _require_keys(data: Mapping[str, Any], keys: tuple[str, ...]) -> list[FieldError]:
    return [required(Path("data").key(k)) for k in keys if k not in data]


def _validate_docker_config(data: Mapping[str, Any], key: str) -> list[FieldError]:
    if key not in data:
        return [required(Path("data").key(key))]
    problem = go_json_error(_decoded(data, key))
    return [invalid_value(Path("data").key(key), "<secret contents redacted>", problem)] if problem else []


def _validate_secret_type(obj: Obj, data: Mapping[str, Any]) -> list[FieldError]:
    kind = obj.get("type", "")
    if kind == SA_TOKEN:
        annotations = as_dict(meta.meta(obj).get("annotations"))
        if not annotations.get("kubernetes.io/service-account.name"):
            return [required(Path("metadata").child("annotations").key("kubernetes.io/service-account.name"))]
    elif kind == "kubernetes.io/dockercfg":
        return _validate_docker_config(data, ".dockercfg")
    elif kind == "kubernetes.io/dockerconfigjson":
        return _validate_docker_config(data, ".dockerconfigjson")
    elif kind == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            return _require_keys(data, ("username", "password"))
    elif kind == "kubernetes.io/ssh-auth":
        if not _decoded(data, "ssh-privatekey"):
            return [required(Path("data").key("ssh-privatekey"))]
    elif kind == "kubernetes.io/tls":
        return _require_keys(data, ("tls.crt", "tls.key"))
    return []


def validate_secret(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    if old is not None:
        errs.extend(validate_immutable(obj.get("type"), old.get("type"), Path("type")))
        errs.extend(validate_immutable_flag(obj, old, ("data",)))
    data = as_dict(obj.get("data"))
    errs.extend(validate_config_keys(data, Path("data")))
    b64_errs, size = validate_base64_map(data, Path("data"), redact=True)
    errs.extend(b64_errs)
    if size > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))
    errs.extend(_validate_secret_type(obj, data))
    return errs


def secret_row(obj: Obj, now: datetime) -> list[Any]:
    return [meta.name_of(obj), as_str(obj.get("type")), len(as_dict(obj.get("data"))), meta.age(obj, now)]


# --- ConfigMap -------------------------------------------------------------------------------------


def validate_config_map(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    if old is not None:
        errs.extend(validate_immutable_flag(obj, old, ("data", "binaryData")))
    data, binary = as_dict(obj.get("data")), as_dict(obj.get("binaryData"))
    errs.extend(validate_config_keys(data, Path("data")))
    size = 0
    for key, value in data.items():
        if key in binary:
            errs.append(invalid_value(Path("data").key(key), key, "duplicate of key present in binaryData"))
        size += len(value.encode()) if isinstance(value, str) else 0
    errs.extend(validate_config_keys(binary, Path("binaryData")))
    b64_errs, binary_size = validate_base64_map(binary, Path("binaryData"), redact=False)
    errs.extend(b64_errs)
    if size + binary_size > MAX_SECRET_SIZE:
        errs.append(too_long("", MAX_SECRET_SIZE))
    return errs


def config_map_row(obj: Obj, now: datetime) -> list[Any]:
    count = len(as_dict(obj.get("data"))) + len(as_dict(obj.get("binaryData")))
    return [meta.name_of(obj), count, meta.age(obj, now)]


# --- Event -----------------------------------------------------------------------------------------

EVENT_TEXT_LIMIT = 128  # reportingInstance, action, reason
EVENT_NOTE_LIMIT = 1024


def _event_namespace_errors(obj: Obj, involved: Mapping[str, Any]) -> list[FieldError]:
    ns, involved_ns = meta.namespace_of(obj), as_str(involved.get("namespace"))
    path = Path("involvedObject").child("namespace")
    if not obj.get("eventTime"):
        ok = ns in ("", "default") if not involved_ns else ns == involved_ns
    else:
        ok = bool(involved_ns) or ns in ("default", "kube-system")
    return [] if ok else [invalid_value(path, involved_ns, "does not match event.namespace")]


def _event_length(obj: Obj, field: str, limit: int) -> list[FieldError]:
    if len(as_str(obj.get(field))) > limit:
        return [invalid_value(field, "", f"can have at most {limit} characters")]
    return []


def _new_style_event_errors(obj: Obj) -> list[FieldError]:
    """Events with ``eventTime`` set are held to the events.k8s.io rules."""
    errs: list[FieldError] = []
    controller = as_str(obj.get("reportingComponent"))
    if not controller:
        errs.append(required("reportingComponent"))
    errs.extend(validate_qualified_name(controller, Path("reportingComponent")))
    for field in ("reportingInstance", "action", "reason"):
        if not obj.get(field):
            errs.append(required(field))
        errs.extend(_event_length(obj, field, EVENT_TEXT_LIMIT))
    errs.extend(_event_length(obj, "message", EVENT_NOTE_LIMIT))
    return errs


def validate_event(obj: Obj, old: Obj | None) -> list[FieldError]:
    """Upstream's legacy (core/v1) event validation."""
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    errs.extend(_event_namespace_errors(obj, as_dict(obj.get("involvedObject"))))
    if obj.get("eventTime"):
        errs.extend(_new_style_event_errors(obj))
    return errs


def _event_source(obj: Obj) -> str:
    source = as_dict(obj.get("source"))
    component = as_str(source.get("component")) or as_str(obj.get("reportingComponent"))
    instance = as_str(source.get("host")) or as_str(obj.get("reportingInstance"))
    if not component:
        return "<unknown>"
    return f"{component}, {instance}" if instance else component


def _event_times(obj: Obj, now: datetime) -> tuple[str, str, int]:
    first = since(obj.get("firstTimestamp"), now) if obj.get("firstTimestamp") else since(obj.get("eventTime"), now)
    last = since(obj.get("lastTimestamp"), now) if obj.get("lastTimestamp") else first
    count = as_int(obj.get("count")) or 0
    series = obj.get("series")
    if isinstance(series, dict):
        last = since(series.get("lastObservedTime"), now)
        count = as_int(series.get("count")) or 0
    elif count == 0:
        count = 1
    return last, first, count


def event_object(obj: Obj) -> str:
    """The OBJECT cell: ``pod/web`` (lower-cased kind)."""
    involved = as_dict(obj.get("involvedObject"))
    kind, name = as_str(involved.get("kind")).lower(), as_str(involved.get("name"))
    return f"{kind}/{name}" if name else kind


def event_row(obj: Obj, now: datetime) -> list[Any]:
    last, first, count = _event_times(obj, now)
    involved = as_dict(obj.get("involvedObject"))
    return [
        last,
        as_str(obj.get("type")),
        as_str(obj.get("reason")),
        event_object(obj),
        as_str(involved.get("fieldPath")),
        _event_source(obj),
        as_str(obj.get("message")).strip(),
        first,
        count,
        meta.name_of(obj),
    ]


def _involved(field: str) -> FieldGetter:
    def get(obj: Obj) -> str:
        return str(as_dict(obj.get("involvedObject")).get(field) or "")

    return get


def _event_source_selector(obj: Obj) -> str:
    return as_str(as_dict(obj.get("source")).get("component")) or as_str(obj.get("reportingComponent"))


EVENT_FIELD_SELECTORS: dict[str, FieldGetter] = {
    **{f"involvedObject.{f}": _involved(f) for f in ("kind", "namespace", "name", "uid", "apiVersion")},
    **{f"involvedObject.{f}": _involved(f) for f in ("resourceVersion", "fieldPath")},
    "reason": lambda o: as_str(o.get("reason")),
    "reportingComponent": lambda o: as_str(o.get("reportingComponent")),
    "source": _event_source_selector,
    "type": lambda o: as_str(o.get("type")),
}


# --- ServiceAccount --------------------------------------------------------------------------------


def validate_service_account(obj: Obj, old: Obj | None) -> list[FieldError]:
    return meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)


def service_account_row(obj: Obj, now: datetime) -> list[Any]:
    return [meta.name_of(obj), len(as_list(obj.get("secrets"))), meta.age(obj, now)]


# --- Endpoints -------------------------------------------------------------------------------------

ENDPOINTS_SHOWN = 3


def default_endpoints(obj: Obj) -> None:
    for subset in as_list(obj.get("subsets")):
        for port in as_list(as_dict(subset).get("ports")):
            if isinstance(port, dict) and not port.get("protocol"):
                port["protocol"] = "TCP"


def _validate_endpoint_address(addr: Mapping[str, Any], path: Path) -> list[FieldError]:
    ip = addr.get("ip", "")
    errs = validate_ip(path.child("ip"), ip)
    hostname = as_str(addr.get("hostname"))
    if hostname:
        errs.extend(validate_dns1123_label(hostname, path.child("hostname")))
    node = addr.get("nodeName")
    if isinstance(node, str):
        errs.extend(invalid_value(path.child("nodeName"), node, m) for m in meta.is_dns1123_subdomain(node))
    errs.extend(validate_non_special_ip(ip, path.child("ip")))
    return errs


def _validate_endpoint_port(port: Mapping[str, Any], require_name: bool, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    name = as_str(port.get("name"))
    if require_name and not name:
        errs.append(required(path.child("name")))
    elif name:
        errs.extend(validate_dns1123_label(name, path.child("name")))
    errs.extend(invalid_value(path.child("port"), port.get("port", 0), m) for m in is_valid_port_num(port.get("port")))
    errs.extend(validate_protocol(port.get("protocol"), path.child("protocol")))
    if isinstance(port.get("appProtocol"), str):
        errs.extend(validate_qualified_name(port["appProtocol"], path.child("appProtocol")))
    return errs


def _validate_subset(subset: Mapping[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    addresses, not_ready = as_list(subset.get("addresses")), as_list(subset.get("notReadyAddresses"))
    if not addresses and not not_ready:
        errs.append(required(path, "must specify `addresses` or `notReadyAddresses`"))
    for field, items in (("addresses", addresses), ("notReadyAddresses", not_ready)):
        for i, addr in enumerate(items):
            errs.extend(_validate_endpoint_address(as_dict(addr), path.child(field).index(i)))
    ports = as_list(subset.get("ports"))
    for i, port in enumerate(ports):
        errs.extend(_validate_endpoint_port(as_dict(port), len(ports) > 1, path.child("ports").index(i)))
    return errs


def validate_endpoints(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    for i, subset in enumerate(as_list(obj.get("subsets"))):
        errs.extend(_validate_subset(as_dict(subset), Path("subsets").index(i)))
    return errs


def join_host_port(host: str, port: Any) -> str:
    """Go's ``net.JoinHostPort``: IPv6 hosts are bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_endpoints(obj: Obj) -> str:
    """Upstream ``formatEndpoints``: the first three ``ip:port``, then ``+ N more...``."""
    subsets = as_list(obj.get("subsets"))
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    for subset in map(as_dict, subsets):
        ips = [as_str(as_dict(a).get("ip")) for a in as_list(subset.get("addresses"))]
        ports = [as_dict(p).get("port", 0) for p in as_list(subset.get("ports"))]
        targets = [ips] if not ports else [[join_host_port(ip, p) for ip in ips] for p in ports]
        for group in targets:
            count += len(group)
            shown.extend(group[: max(0, ENDPOINTS_SHOWN - len(shown))])
    text = ",".join(shown)
    return f"{text} + {count - ENDPOINTS_SHOWN} more..." if count > ENDPOINTS_SHOWN else text


def endpoints_row(obj: Obj, now: datetime) -> list[Any]:
    return [meta.name_of(obj), format_endpoints(obj), meta.age(obj, now)]


# --- the kinds -------------------------------------------------------------------------------------

NAMESPACE = Kind(
    group="",
    version="v1",
    kind="Namespace",
    plural="namespaces",
    namespaced=False,
    short_names=("ns",),
    subresources=frozenset({"status"}),
    default=default_namespace,
    validate=validate_namespace,
    columns=(NAME_COLUMN, column("Status"), AGE_COLUMN),
    row=namespace_row,
    field_selectors={"status.phase": lambda o: as_str(as_dict(o.get("status")).get("phase"))},
    tracks_generation=False,
    initial_status={"phase": "Active"},
)

NODE = Kind(
    group="",
    version="v1",
    kind="Node",
    plural="nodes",
    namespaced=False,
    short_names=("no",),
    subresources=frozenset({"status"}),
    default=default_node,
    validate=validate_node,
    merge_keys={"status.conditions": "type", "status.addresses": "type"},
    columns=(
        NAME_COLUMN,
        column("Status"),
        column("Roles"),
        AGE_COLUMN,
        column("Version"),
        column("Internal-IP", priority=1),
        column("External-IP", priority=1),
        column("OS-Image", priority=1),
        column("Kernel-Version", priority=1),
        column("Container-Runtime", priority=1),
    ),
    row=node_row,
    field_selectors={"spec.unschedulable": lambda o: str(as_dict(o.get("spec")).get("unschedulable") is True).lower()},
    tracks_generation=False,
)

SECRET = Kind(
    group="",
    version="v1",
    kind="Secret",
    plural="secrets",
    namespaced=True,
    default=default_secret,
    validate=validate_secret,
    columns=(NAME_COLUMN, column("Type"), column("Data"), AGE_COLUMN),
    row=secret_row,
    field_selectors={"type": lambda o: as_str(o.get("type"))},
    tracks_generation=False,
)

CONFIG_MAP = Kind(
    group="",
    version="v1",
    kind="ConfigMap",
    plural="configmaps",
    namespaced=True,
    short_names=("cm",),
    validate=validate_config_map,
    columns=(NAME_COLUMN, column("Data"), AGE_COLUMN),
    row=config_map_row,
    tracks_generation=False,
)

EVENT = Kind(
    group="",
    version="v1",
    kind="Event",
    plural="events",
    namespaced=True,
    short_names=("ev",),
    validate=validate_event,
    columns=(
        column("Last Seen"),
        column("Type"),
        column("Reason"),
        column("Object"),
        column("Subobject", priority=1),
        column("Source", priority=1),
        column("Message"),
        column("First Seen", priority=1),
        column("Count", priority=1),
        column("Name", priority=1, fmt="name"),
    ),
    row=event_row,
    field_selectors=EVENT_FIELD_SELECTORS,
    tracks_generation=False,
)

SERVICE_ACCOUNT = Kind(
    group="",
    version="v1",
    kind="ServiceAccount",
    plural="serviceaccounts",
    namespaced=True,
    short_names=("sa",),
    validate=validate_service_account,
    merge_keys={"secrets": "name"},
    columns=(NAME_COLUMN, column("Secrets"), AGE_COLUMN),
    row=service_account_row,
    tracks_generation=False,
)

ENDPOINTS = Kind(
    group="",
    version="v1",
    kind="Endpoints",
    plural="endpoints",
    namespaced=True,
    short_names=("ep",),
    default=default_endpoints,
    validate=validate_endpoints,
    columns=(NAME_COLUMN, column("Endpoints"), AGE_COLUMN),
    row=endpoints_row,
    tracks_generation=False,
)

KINDS: list[Kind] = [NAMESPACE, NODE, SECRET, CONFIG_MAP, EVENT, SERVICE_ACCOUNT, ENDPOINTS]

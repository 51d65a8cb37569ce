"""Read Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``) as JSON wire objects.

kubectl's typed clients (``kubectl create namespace|deployment|service|configmap|secret|ingress|...``,
the ``DeleteOptions`` of ``kubectl drain``) send their bodies only as Kubernetes protobuf and never fall
back to JSON.  Everything else in kubewire speaks the JSON wire form, so this module owns the one
translation: :func:`decode` turns such a body into the dict the same object would be as JSON.  It is
pure (bytes in, dict out) and uses only the standard library; the message layouts live in
:mod:`kubewire.api.protoschema`.

The body is the magic ``k8s\\x00`` followed by a ``runtime.Unknown`` message: ``typeMeta`` (field 1:
apiVersion = 1, kind = 2), ``raw`` (field 2: the object's own message), ``contentEncoding`` (3) and
``contentType`` (4).  The result carries ``apiVersion`` and ``kind`` from ``typeMeta`` first.

Which fields appear in the output
---------------------------------
Go's protobuf encoder writes every non-pointer field, zero or not, so a body from kubectl is full of
``""`` and ``0``.  The output keeps what kubectl's Go structs would put in JSON, with one
simplification (each field's rule is the ``emit`` column of the schema, taken from the Go struct tags):

* pointer fields (``replicas``, ``automountServiceAccountToken``, ``propagationPolicy``...) appear
  exactly when the body carries them, even as ``0``, ``false`` or ``""``;
* non-pointer fields without ``omitempty`` (``containers[].name``, ``ports[].containerPort``,
  ``ports[].port``, ``podSelector``...) always appear, zero or not;
* non-pointer ``omitempty`` fields appear only when non-zero.  Here an all-zero nested object counts
  as zero too (Go would write ``"status": {}``, ``"resources": {}``, ``"creationTimestamp": null``,
  ``"targetPort": 0``; we drop them, as a hand-written manifest would);
* lists and maps appear only when non-empty; fields tagged ``json:",inline"`` (``Volume.volumeSource``,
  ``Probe.handler``) are merged into their parent.

Value forms: meta/v1 ``Time`` is an RFC 3339 string in seconds (``"2026-01-02T03:04:05Z"``),
``MicroTime`` the same with six fractional digits, both ``None`` when zero; ``Duration`` is Go's
duration string (``"1m30s"``); ``IntOrString`` a JSON int or string; ``Quantity`` its string;
``RawExtension`` and ``FieldsV1`` the JSON they carry; ``bytes`` (``Secret.data``) base64.

Fields the schema does not know are skipped (protobuf's forward compatibility), but their wire
format is still checked.  Anything that is not a well-formed body of a known kind raises
:class:`~kubewire.errors.BadRequest`, and nothing else.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Mapping
from typing import Any, Final

from kubewire.api.protoschema import ANY_VERSION, MESSAGES, ROOTS, Field, Kind
from kubewire.errors import BadRequest

CONTENT_TYPE: Final = "application/vnd.kubernetes.protobuf"
MAGIC: Final = b"k8s\x00"

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_U64: Final = (1 << 64) - 1
# Go's zero time.Time (0001-01-01T00:00:00Z) in Unix seconds: metav1.Time renders it as null.
_ZERO_TIME_SECONDS: Final = -62135596800
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
# Kinds whose values are messages on the wire (several occurrences of one field merge).
_MESSAGE_KINDS: Final = frozenset(
    {"message", "time", "microtime", "duration", "fieldsv1", "intorstring", "quantity", "rawextension"}
)
_VARINT_KINDS: Final = frozenset({"bool", "int32", "int64"})
# Wire layout of the types with their own JSON form: field number -> wire type.
_SPECIAL_LAYOUT: Final[Mapping[str, Mapping[int, int]]] = {
    "time": {1: _VARINT, 2: _VARINT},  # seconds, nanos
    "microtime": {1: _VARINT, 2: _VARINT},
    "duration": {1: _VARINT},  # nanoseconds
    "intorstring": {1: _VARINT, 2: _VARINT, 3: _LEN},  # type (0 int, 1 string), intVal, strVal
    "quantity": {1: _LEN},  # string
    "fieldsv1": {1: _LEN},  # JSON
    "rawextension": {1: _LEN},  # JSON
}

WireValue = int | bytes
Schema = Mapping[str, Mapping[int, Field]]


def decode(body: bytes) -> dict[str, Any]:
    """Decode one Kubernetes protobuf request body into its JSON wire-form object."""
    if not body.startswith(MAGIC):
        raise BadRequest(f"body is not Kubernetes protobuf: it does not start with the {MAGIC!r} magic")
    type_meta = raw = b""
    content_encoding = content_type = ""
    for number, wire, value in _fields(body[len(MAGIC) :], "runtime.Unknown"):
        if number == 1:
            type_meta += _need_bytes(value, wire, "runtime.Unknown.typeMeta")
        elif number == 2:
            raw = _need_bytes(value, wire, "runtime.Unknown.raw")
        elif number == 3:
            content_encoding = _string(_need_bytes(value, wire, "runtime.Unknown.contentEncoding"))
        elif number == 4:
            content_type = _string(_need_bytes(value, wire, "runtime.Unknown.contentType"))
    api_version = kind = ""
    for number, wire, value in _fields(type_meta, "runtime.TypeMeta"):
        if number == 1:
            api_version = _string(_need_bytes(value, wire, "runtime.TypeMeta.apiVersion"))
        elif number == 2:
            kind = _string(_need_bytes(value, wire, "runtime.TypeMeta.kind"))
    if content_encoding:
        raise BadRequest(f"protobuf body has unsupported contentEncoding {content_encoding!r}")
    if content_type not in ("", CONTENT_TYPE):
        raise BadRequest(f"protobuf body has unsupported contentType {content_type!r}")
    type_name = ROOTS.get((api_version, kind)) or ANY_VERSION.get(kind)
    if type_name is None:
        raise BadRequest(
            f"protobuf bodies of kind {kind!r} in {api_version!r} are not supported; send application/json"
        )
    obj, _ = _message(raw, type_name, MESSAGES)
    return {"apiVersion": api_version, "kind": kind, **obj}


# --- protobuf wire format -------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise BadRequest("malformed protobuf: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise BadRequest("malformed protobuf: varint longer than 10 bytes")


def _fields(buf: bytes, where: str) -> list[tuple[int, int, WireValue]]:
    """Split one message into (field number, wire type, value) triples, in wire order."""
    out: list[tuple[int, int, WireValue]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise BadRequest(f"malformed protobuf in {where}: invalid field number {number}")
        value: WireValue
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            if size > len(buf) - pos:
                raise BadRequest(f"malformed protobuf in {where}: field {number} runs past the end")
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            if width > len(buf) - pos:
                raise BadRequest(f"malformed protobuf in {where}: field {number} runs past the end")
            value, pos = int.from_bytes(buf[pos : pos + width], "little"), pos + width
        else:
            raise BadRequest(f"malformed protobuf in {where}: field {number} has unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _need_bytes(value: WireValue, wire: int, where: str) -> bytes:
    if wire != _LEN or not isinstance(value, bytes):
        raise BadRequest(f"malformed protobuf: {where} should be length-delimited, got wire type {wire}")
    return value


def _need_varint(value: WireValue, wire: int, where: str) -> int:
    if wire != _VARINT or not isinstance(value, int):
        raise BadRequest(f"malformed protobuf: {where} should be a varint, got wire type {wire}")
    return value


def _string(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"malformed protobuf: string field is not UTF-8 ({exc.reason})") from None


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


# --- messages -------------------------------------------------------------------------------------


def _message(buf: bytes, type_name: str, messages: Schema) -> tuple[dict[str, Any], bool]:
    """Render one message as JSON; also say whether it is Go's zero value of its struct."""
    schema = messages[type_name]
    singles: dict[int, WireValue] = {}
    repeats: dict[int, list[WireValue]] = {}
    for number, wire, value in _fields(buf, type_name):
        field = schema.get(number)
        if field is None:
            continue
        where = f"{type_name}.{field.name or number}"
        if field.card == "one":
            if field.kind in _MESSAGE_KINDS:
                # Protobuf merges repeated occurrences of a singular message: concatenating does that.
                previous = singles.get(number, b"")
                assert isinstance(previous, bytes)
                singles[number] = previous + _need_bytes(value, wire, where)
            else:
                singles[number] = _scalar_wire(field.kind, value, wire, where)
        elif field.card == "list" and field.kind in _VARINT_KINDS and wire == _LEN:
            packed = _need_bytes(value, wire, where)
            items = repeats.setdefault(number, [])
            pos = 0
            while pos < len(packed):
                item, pos = _varint(packed, pos)
                items.append(item)
        elif field.card == "list" and field.kind not in _MESSAGE_KINDS:
            repeats.setdefault(number, []).append(_scalar_wire(field.kind, value, wire, where))
        else:
            repeats.setdefault(number, []).append(_need_bytes(value, wire, where))

    out: dict[str, Any] = {}
    zero = True
    for number, field in schema.items():
        where = f"{type_name}.{field.name or number}"
        if field.card == "list":
            if number in repeats:
                out[field.name] = [_value(field, item, messages, where)[0] for item in repeats[number]]
                zero = False
        elif field.card == "map":
            if number in repeats:
                out[field.name] = dict(_map_entry(field, entry, messages, where) for entry in repeats[number])
                zero = False
        elif field.emit == "inline":
            inner, inner_zero = _message(_as_bytes(singles.get(number, b"")), field.ref, messages)
            out.update(inner)
            zero = zero and inner_zero
        else:
            present = number in singles
            value, value_zero = _value(field, singles[number] if present else None, messages, where)
            if field.emit == "present":
                if present:
                    out[field.name] = value
                    zero = False
            elif field.emit == "always" or not value_zero:
                out[field.name] = value
            zero = zero and value_zero
    return out, zero


def _as_bytes(value: WireValue) -> bytes:
    assert isinstance(value, bytes)
    return value


def _scalar_wire(kind: Kind, value: WireValue, wire: int, where: str) -> WireValue:
    """Check a scalar's wire type; keep the raw varint or bytes for :func:`_value`."""
    if kind in _VARINT_KINDS:
        return _need_varint(value, wire, where)
    return _need_bytes(value, wire, where)


def _map_entry(field: Field, entry: WireValue, messages: Schema, where: str) -> tuple[str, Any]:
    key = ""
    value: WireValue | None = None
    for number, wire, item in _fields(_as_bytes(entry), where):
        if number == 1:
            key = _string(_need_bytes(item, wire, f"{where} key"))
        elif number == 2:
            if field.kind in _MESSAGE_KINDS:
                value = (value if isinstance(value, bytes) else b"") + _need_bytes(item, wire, f"{where}[{key}]")
            else:
                value = _scalar_wire(field.kind, item, wire, f"{where}[{key}]")
    return key, _value(field, value, messages, f"{where}[{key}]")[0]


def _value(field: Field, raw: WireValue | None, messages: Schema, where: str) -> tuple[Any, bool]:
    """One value of ``field`` as JSON, and whether it is Go's zero value.  ``None`` means absent."""
    kind = field.kind
    if kind == "bool":
        flag = bool(raw)
        return flag, not flag
    if kind == "int32":
        number = _int32(raw) if isinstance(raw, int) else 0
        return number, number == 0
    if kind == "int64":
        number = _int64(raw) if isinstance(raw, int) else 0
        return number, number == 0
    data = raw if isinstance(raw, bytes) else b""
    if kind == "string":
        text = _string(data)
        return text, not text
    if kind == "bytes":
        return base64.b64encode(data).decode("ascii"), not data
    if kind == "message":
        return _message(data, field.ref, messages)
    return _special(kind, data, where)


def _special(kind: Kind, data: bytes, where: str) -> tuple[Any, bool]:
    """The Kubernetes types with their own JSON form."""
    layout = _SPECIAL_LAYOUT[kind]
    parts: dict[int, WireValue] = {}
    for number, wire, value in _fields(data, where):
        if number not in layout:
            continue
        if layout[number] == _LEN:
            parts[number] = _need_bytes(value, wire, f"{where} field {number}")
        else:
            parts[number] = _need_varint(value, wire, f"{where} field {number}")
    if kind in ("time", "microtime"):
        return _time(kind, parts, data, where)
    if kind == "duration":
        nanos = _int64(_as_int(parts.get(1, 0)))
        return _go_duration(nanos), nanos == 0
    if kind == "intorstring":
        kind_tag = _int64(_as_int(parts.get(1, 0)))
        int_val = _int32(_as_int(parts.get(2, 0)))
        str_val = _string(_as_bytes(parts.get(3, b"")))
        zero = kind_tag == 0 and int_val == 0 and not str_val
        if kind_tag == 0:
            return int_val, zero
        if kind_tag == 1:
            return str_val, zero
        raise BadRequest(f"malformed protobuf: {where} has IntOrString type {kind_tag}")
    if kind == "quantity":
        text = _string(_as_bytes(parts.get(1, b"")))
        return (text or "0"), not text
    # fieldsv1, rawextension: field 1 holds JSON.
    blob = _as_bytes(parts.get(1, b""))
    if not blob:
        return None, True
    try:
        return json.loads(blob), False
    except (ValueError, RecursionError):
        raise BadRequest(f"malformed protobuf: {where} does not hold JSON") from None


def _as_int(value: WireValue) -> int:
    assert isinstance(value, int)
    return value


def _time(kind: Kind, parts: Mapping[int, WireValue], data: bytes, where: str) -> tuple[str | None, bool]:
    seconds = _int64(_as_int(parts.get(1, 0)))
    nanos = _int32(_as_int(parts.get(2, 0)))
    if not data or (seconds == _ZERO_TIME_SECONDS and nanos == 0):
        return None, True
    try:
        moment = _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise BadRequest(f"malformed protobuf: {where} is out of range") from None
    text = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    if kind == "microtime":
        text += f".{moment.microsecond:06d}"
    return text + "Z", False


def _go_duration(nanos: int) -> str:
    """Format nanoseconds as Go's ``time.Duration.String`` does (``"1h2m3.5s"``, ``"1.5ms"``)."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _decimal(nanos, size) + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _decimal(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


__all__ = ["CONTENT_TYPE", "MAGIC", "decode"]

"""Object metadata: name and label rules, label selectors, ObjectMeta validation, table helpers.

These are the rules every API group shares (upstream ``apimachinery/pkg/util/validation`` and
``apimachinery/pkg/apis/meta/v1/validation``), worded as upstream so that error messages match.
Pure functions over wire-form dicts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import orjson

from kubewire.api.fields import (
    FieldError,
    Path,
    forbidden,
    invalid_value,
    not_supported,
    required,
    too_long,
)

_T = TypeVar("_T")

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_MAX = 63
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
TOTAL_ANNOTATION_SIZE = 256 * 1024

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"


def _regex_msg(what: str, fmt: str, examples: Iterable[str], rule: str) -> str:
    ex = ", ".join(f"'{e}'" for e in examples)
    return f"{rule} (e.g. {ex}, regex used for validation is '{fmt}')"


def is_dns1123_label(value: str) -> list[str]:
    """Upstream ``IsDNS1123Label``: a list of problems, empty when fine."""
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _DNS1123_LABEL.fullmatch(value):
        errs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
            f"regex used for validation is '{DNS1123_LABEL_FMT}')"
        )
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', "
            f"regex used for validation is '{DNS1123_SUBDOMAIN_FMT}')"
        )
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1035_LABEL_MAX:
        errs.append(f"must be no more than {DNS1035_LABEL_MAX} characters")
    if not _DNS1035_LABEL.fullmatch(value):
        errs.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
            f"regex used for validation is '{DNS1035_LABEL_FMT}')"
        )
    return errs


def is_qualified_name(value: str) -> list[str]:
    """Upstream ``IsQualifiedName`` (label keys, annotation keys: ``[prefix/]name``)."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
            f"regex used for validation is '{QUALIFIED_NAME_FMT}') with an optional DNS subdomain prefix "
            "and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errs.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    if name and not _QUALIFIED_NAME.fullmatch(name):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            f"validation is '{QUALIFIED_NAME_FMT}')"
        )
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE.fullmatch(value):
        errs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
            f"'12345', regex used for validation is '{LABEL_VALUE_FMT}')"
        )
    return errs


def validate_labels(labels: Any, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    if labels is None:
        return errs
    if not isinstance(labels, Mapping):
        return [invalid_value(path, labels, "must be a map of string to string")]
    for k, v in labels.items():
        for msg in is_qualified_name(str(k)):
            errs.append(invalid_value(path, k, msg))
        if not isinstance(v, str):
            errs.append(invalid_value(path.key(str(k)), v, "must be a string"))
            continue
        for msg in is_label_value(v):
            errs.append(invalid_value(path.key(str(k)), v, msg))
    return errs


def validate_annotations(annotations: Any, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    if annotations is None:
        return errs
    if not isinstance(annotations, Mapping):
        return [invalid_value(path, annotations, "must be a map of string to string")]
    total = 0
    for k, v in annotations.items():
        for msg in is_qualified_name(str(k).lower()):
            errs.append(invalid_value(path, k, msg))
        total += len(str(k)) + len(str(v))
    if total > TOTAL_ANNOTATION_SIZE:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE))
    return errs


NameValidator = Any  # Callable[[str], list[str]]


def validate_object_meta(
    obj: Mapping[str, Any],
    namespaced: bool,
    name_fn: NameValidator = is_dns1123_subdomain,
    old: Mapping[str, Any] | None = None,
) -> list[FieldError]:
    """Upstream ``ValidateObjectMeta`` (+ update immutability when ``old`` is given)."""
    meta = obj.get("metadata") or {}
    path = Path("metadata")
    errs: list[FieldError] = []
    name = meta.get("name", "")
    generate = meta.get("generateName", "")
    if not name:
        if not generate:
            errs.append(required(path.child("name"), "name or generateName is required"))
    else:
        for msg in name_fn(name):
            errs.append(invalid_value(path.child("name"), name, msg))
    ns = meta.get("namespace", "")
    if namespaced:
        if not ns:
            errs.append(required(path.child("namespace")))
        else:
            for msg in is_dns1123_label(ns):
                errs.append(invalid_value(path.child("namespace"), ns, msg))
    elif ns:
        errs.append(forbidden(path.child("namespace"), "not allowed on this type"))
    errs.extend(validate_labels(meta.get("labels"), path.child("labels")))
    errs.extend(validate_annotations(meta.get("annotations"), path.child("annotations")))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        rp = path.child("ownerReferences").index(i)
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errs.append(invalid_value(rp.child(key), ref.get(key, ""), f"{key} must not be empty"))
    controllers = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    if len(controllers) > 1:
        errs.append(
            invalid_value(
                path.child("ownerReferences"),
                meta.get("ownerReferences"),
                "Only one reference can have Controller set to true.",
            )
        )
    for i, f in enumerate(meta.get("finalizers") or []):
        for msg in is_qualified_name(str(f)):
            errs.append(invalid_value(path.child("finalizers").index(i), f, msg))
    if old is not None:
        old_meta = old.get("metadata") or {}
        for key in ("name", "namespace", "uid", "creationTimestamp"):
            if key in meta and key in old_meta and meta[key] != old_meta[key]:
                errs.append(invalid_value(path.child(key), meta[key], "field is immutable"))
    return errs


# --- label selectors -------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One selector requirement: key, operator (In, NotIn, Exists, DoesNotExist, =, !=, gt, lt)."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("In", "=", "=="):
            return present and value in self.values
        if self.op in ("NotIn", "!="):
            return not present or value not in self.values
        if self.op == "Exists":
            return present
        if self.op == "DoesNotExist":
            return not present
        if self.op in ("Gt", "Lt"):
            try:
                lhs, rhs = int(value or ""), int(self.values[0])
            except ValueError:
                return False
            return lhs > rhs if self.op == "Gt" else lhs < rhs
        return False


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements and not self.nothing


EVERYTHING = Selector()
NOTHING = Selector(nothing=True)


class SelectorError(ValueError):
    """A label selector string or object that cannot be parsed."""


_SEL_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|[^\s!=(),]+)")


def parse_selector(text: str) -> Selector:
    """Parse the label-selector query syntax (``app=web,tier in (a,b),!legacy``)."""
    text = text.strip()
    if not text:
        return EVERYTHING
    tokens = [t for t in _SEL_TOKEN.findall(text)]
    reqs: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise SelectorError(f"unable to parse requirement: found end of input in {text!r}")
        t: str = tokens[i]
        i += 1
        return t

    while i < len(tokens):
        t = take()
        if t == "!":
            key = take()
            _check_key(key)
            reqs.append(Requirement(key, "DoesNotExist"))
        else:
            key = t
            _check_key(key)
            if i >= len(tokens) or tokens[i] == ",":
                reqs.append(Requirement(key, "Exists"))
            else:
                op = take()
                if op in ("=", "==", "!="):
                    value = take() if i < len(tokens) and tokens[i] != "," else ""
                    for msg in is_label_value(value):
                        raise SelectorError(f"invalid label value: {value!r}: {msg}")
                    reqs.append(Requirement(key, op, (value,)))
                elif op.lower() in ("in", "notin"):
                    if take() != "(":
                        raise SelectorError(f"found '{tokens[i - 1]}', expected: '('")
                    values: list[str] = []
                    while True:
                        v = take()
                        if v == ")":
                            break
                        if v == ",":
                            continue
                        values.append(v)
                    reqs.append(Requirement(key, "In" if op.lower() == "in" else "NotIn", tuple(sorted(values))))
                elif op in (">", "<"):
                    reqs.append(Requirement(key, "Gt" if op == ">" else "Lt", (take(),)))
                else:
                    raise SelectorError(
                        f"unable to parse requirement: found '{op}', expected: in, notin, =, ==, !=, gt, lt"
                    )
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(f"found '{tokens[i]}', expected: ',' or 'end of string'")
            i += 1
    return Selector(tuple(reqs))


def _check_key(key: str) -> None:
    msgs = is_qualified_name(key)
    if msgs:
        raise SelectorError(f"key: Invalid value: {key!r}: {msgs[0]}")


def selector_from_object(sel: Mapping[str, Any] | None) -> Selector:
    """A ``metav1.LabelSelector`` (matchLabels + matchExpressions). ``None`` selects nothing."""
    if sel is None:
        return NOTHING
    reqs: list[Requirement] = []
    for k, v in sorted((sel.get("matchLabels") or {}).items()):
        reqs.append(Requirement(k, "In", (v,)))
    for e in sel.get("matchExpressions") or []:
        reqs.append(Requirement(e.get("key", ""), e.get("operator", ""), tuple(e.get("values") or ())))
    return Selector(tuple(reqs))


def selector_from_map(labels: Mapping[str, str] | None) -> Selector:
    """A plain map selector (Service.spec.selector, ReplicationController). Empty map: everything."""
    return Selector(tuple(Requirement(k, "In", (v,)) for k, v in sorted((labels or {}).items())))


def validate_label_selector(sel: Any, path: Path) -> list[FieldError]:
    """Upstream ``ValidateLabelSelector``."""
    errs: list[FieldError] = []
    if sel is None:
        return errs
    if not isinstance(sel, Mapping):
        return [invalid_value(path, sel, "must be a label selector object")]
    errs.extend(validate_labels(sel.get("matchLabels"), path.child("matchLabels")))
    for i, e in enumerate(sel.get("matchExpressions") or []):
        ep = path.child("matchExpressions").index(i)
        op = e.get("operator", "")
        values = e.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(ep.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    forbidden(ep.child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
                )
        else:
            errs.append(not_supported(ep.child("operator"), op, ["DoesNotExist", "Exists", "In", "NotIn"]))
        for msg in is_qualified_name(e.get("key", "")):
            errs.append(invalid_value(ep.child("key"), e.get("key", ""), msg))
        for j, v in enumerate(values):
            for msg in is_label_value(str(v)):
                errs.append(invalid_value(ep.child("values").index(j), v, msg))
    return errs


# --- small shared helpers ------------------------------------------------------------------------


def clone(obj: _T) -> _T:
    """A deep copy of a JSON-shaped value (several times faster than ``copy.deepcopy``)."""
    return cast(_T, orjson.loads(orjson.dumps(obj)))


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name", ""))


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("namespace", ""))


def now_rfc3339(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp (``2026-01-02T03:04:05Z``) as an aware datetime, None if unparseable."""
    if not value or not isinstance(value, str):
        return None
    return _parse_time(value[:19])


@functools.lru_cache(maxsize=4096)
def _parse_time(value: str) -> datetime | None:
    # Objects created in the same second share a timestamp, so tables of thousands parse few.
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """kubectl's ``duration.HumanDuration`` (``5s``, ``3m20s``, ``2d3h``, ``4y``)."""
    s = int(seconds)
    if s < 0:
        s = 0
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m{rem}s" if rem else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem = (s % 3600) // 60
        return f"{hours}h{rem}m" if rem else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d{rem}h" if rem else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        rem = days % 365
        return f"{days // 365}y{rem}d" if rem else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


def age(obj: Mapping[str, Any], now: datetime) -> str:
    """The AGE cell: time since creationTimestamp, ``<unknown>`` without one."""
    created = parse_time(meta(obj).get("creationTimestamp"))
    if created is None:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


def format_labels(labels: Mapping[str, str] | None) -> str:
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _requirement_text(key: str, op: str, values: list[str]) -> str:
    if op == "Exists":
        return key
    if op == "DoesNotExist":
        return "!" + key
    joined = values[0] if len(values) == 1 else ",".join(sorted(values))
    if op == "=":
        return f"{key}={joined}"
    return f"{key} {'in' if op == 'In' else 'notin'} ({joined})"


def selector_string(sel: Any) -> str:
    """``LabelSelectorAsSelector(sel).String()``: requirements sorted by key, ``""`` if none."""
    sel = sel if isinstance(sel, Mapping) else {}
    labels = sel.get("matchLabels")
    reqs = [(str(k), "=", [str(v)]) for k, v in (labels.items() if isinstance(labels, Mapping) else ())]
    exprs = sel.get("matchExpressions")
    for e in exprs if isinstance(exprs, list) else ():
        if isinstance(e, Mapping):
            values = e.get("values")
            reqs.append(
                (
                    str(e.get("key", "")),
                    str(e.get("operator", "")),
                    [str(v) for v in values] if isinstance(values, list) else [],
                )
            )
    reqs.sort(key=lambda r: r[0])
    return ",".join(_requirement_text(*r) for r in reqs)


def format_selector(sel: Any) -> str:
    """``metav1.FormatLabelSelector``: the selector string, ``<none>`` when it selects everything."""
    return selector_string(sel) or "<none>"

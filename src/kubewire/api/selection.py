"""What a list or watch selects: namespace, label selector and field selector, as one value.

Field selectors follow upstream: ``=``/``==``/``!=`` terms joined by commas, on
``metadata.name``, ``metadata.namespace`` and the per-kind fields the kind registers.  An
unknown field is rejected with upstream's ``field label not supported`` error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubewire.api.meta import EVERYTHING, Selector, SelectorError, parse_selector
from kubewire.api.registry import Kind
from kubewire.errors import BadRequest


@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negate: bool = False


def parse_field_selector(text: str, kind: Kind) -> tuple[FieldTerm, ...]:
    """Parse ``status.phase=Running,metadata.name!=x``; unknown fields raise BadRequest."""
    terms: list[FieldTerm] = []
    for part in _split_unescaped(text.strip()):
        part = part.strip()
        if not part:
            continue
        op = next((o for o in ("!=", "==", "=") if o in part), "")
        if not op:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{part}'")
        key, _, value = part.partition(op)
        negate = op == "!="
        key = key.strip()
        if key not in ("metadata.name", "metadata.namespace") and key not in kind.field_selectors:
            raise BadRequest(f"field label not supported: {key}")
        terms.append(FieldTerm(key, _unescape(value.strip()), negate))
    return tuple(terms)


def _split_unescaped(text: str) -> list[str]:
    parts, cur, esc = [], [], False
    for ch in text:
        if esc:
            cur.append("\\" + ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    return value.replace("\\,", ",").replace("\\=", "=").replace("\\\\", "\\")


def field_value(obj: Mapping[str, Any], field: str, kind: Kind) -> str:
    meta = obj.get("metadata") or {}
    if field == "metadata.name":
        return str(meta.get("name", ""))
    if field == "metadata.namespace":
        return str(meta.get("namespace", ""))
    return kind.field_selectors[field](dict(obj))


@dataclass(frozen=True)
class Selection:
    """A namespace (``""`` = all), a label selector and field terms."""

    namespace: str = ""
    labels: Selector = EVERYTHING
    fields: tuple[FieldTerm, ...] = ()

    @staticmethod
    def parse(kind: Kind, namespace: str = "", label_selector: str = "", field_selector: str = "") -> Selection:
        try:
            labels = parse_selector(label_selector) if label_selector else EVERYTHING
        except SelectorError as e:
            raise BadRequest(f"unable to parse requirement: {e}") from e
        fields = parse_field_selector(field_selector, kind) if field_selector else ()
        return Selection(namespace, labels, fields)

    def matches(self, obj: Mapping[str, Any], kind: Kind) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace and meta.get("namespace", "") != self.namespace:
            return False
        if not self.labels.empty() and not self.labels.matches(meta.get("labels") or {}):
            return False
        for term in self.fields:
            equal = field_value(obj, term.field, kind) == term.value
            if equal == term.negate:
                return False
        return True

    def matches_lazy(self, meta: Mapping[str, Any], load: Callable[[], Mapping[str, Any]], kind: Kind) -> bool:
        """Like :meth:`matches` from an object's metadata alone, loading the whole object only
        when a field selector needs more than name and namespace."""
        if self.namespace and meta.get("namespace", "") != self.namespace:
            return False
        if not self.labels.empty() and not self.labels.matches(meta.get("labels") or {}):
            return False
        if not self.fields:
            return True
        if all(t.field in ("metadata.name", "metadata.namespace") for t in self.fields):
            return self.matches({"metadata": meta}, kind)
        return self.matches(load(), kind)

    def trivial(self) -> bool:
        return self.labels.empty() and not self.fields

"""Field errors and field paths, worded exactly as Kubernetes' ``field.Error``.

Validators return lists of :class:`FieldError`; :func:`invalid` turns such a list into the
``Invalid`` status error the API server sends, so kubectl prints the upstream sentence
(``The Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 80: ...``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubewire.errors import Cause, Invalid

# Upstream ``field.ErrorType`` strings and their ``metav1.CauseType`` reasons.
REQUIRED = ("Required value", "FieldValueRequired")
INVALID = ("Invalid value", "FieldValueInvalid")
NOT_SUPPORTED = ("Unsupported value", "FieldValueNotSupported")
DUPLICATE = ("Duplicate value", "FieldValueDuplicate")
FORBIDDEN = ("Forbidden", "FieldValueForbidden")
TOO_LONG = ("Too long", "FieldValueTooLong")
TOO_MANY = ("Too many", "FieldValueTooMany")
NOT_FOUND = ("Not found", "FieldValueNotFound")
INTERNAL = ("Internal error", "InternalError")
TYPE_INVALID = ("Invalid value", "FieldValueTypeInvalid")

_NO_VALUE = (REQUIRED, FORBIDDEN, TOO_LONG, INTERNAL)


class Path:
    """A field path such as ``spec.ports[0].nodePort`` built step by step."""

    __slots__ = ("_text",)

    def __init__(self, text: str = "") -> None:
        self._text = text

    def child(self, name: str, *more: str) -> Path:
        text = self._text
        for part in (name, *more):
            text = f"{text}.{part}" if text else part
        return Path(text)

    def index(self, i: int) -> Path:
        return Path(f"{self._text}[{i}]")

    def key(self, k: str) -> Path:
        return Path(f"{self._text}[{k}]")

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Path({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Path) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)


def format_value(value: Any) -> str:
    """Format a bad value the way Go's ``field.Error`` does (strings quoted, numbers bare)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, list):
        return "[]string{" + ", ".join(go_quote(str(v)) for v in value) + "}"
    return str(value)


def go_quote(s: str) -> str:
    """Quote a string as Go's ``%q`` does for printable text."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@dataclass(frozen=True)
class FieldError:
    """One validation failure at one field."""

    type: tuple[str, str]
    field: str
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        """The upstream ``ErrorBody``: ``Invalid value: 80: provided port is ...``."""
        label = self.type[0]
        if self.type in _NO_VALUE:
            s = label
        else:
            s = f"{label}: {format_value(self.value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> Cause:
        return Cause(reason=self.type[1], message=self.body(), field=self.field)


def required(path: Path | str, detail: str = "") -> FieldError:
    return FieldError(REQUIRED, str(path), None, detail)


def invalid_value(path: Path | str, value: Any, detail: str) -> FieldError:
    return FieldError(INVALID, str(path), value, detail)


def not_supported(path: Path | str, value: Any, valid: Iterable[str]) -> FieldError:
    quoted = ", ".join(go_quote(v) for v in valid)
    detail = f"supported values: {quoted}" if quoted else ""
    return FieldError(NOT_SUPPORTED, str(path), value, detail)


def duplicate(path: Path | str, value: Any) -> FieldError:
    return FieldError(DUPLICATE, str(path), value)


def forbidden(path: Path | str, detail: str) -> FieldError:
    return FieldError(FORBIDDEN, str(path), None, detail)


def too_long(path: Path | str, max_length: int) -> FieldError:
    return FieldError(TOO_LONG, str(path), None, f"may not be more than {max_length} bytes")


def too_many(path: Path | str, actual: int, max_items: int) -> FieldError:
    return FieldError(TOO_MANY, str(path), actual, f"must have at most {max_items} items")


def not_found(path: Path | str, value: Any) -> FieldError:
    return FieldError(NOT_FOUND, str(path), value)


def invalid(kind: str, name: str, errors: Iterable[FieldError], group: str = "") -> Invalid:
    """Build the ``Invalid`` status error for a list of field errors."""
    return Invalid(kind, name, [e.cause() for e in errors], group=group)

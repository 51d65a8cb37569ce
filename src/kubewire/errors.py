"""The one error tree of kubewire.

Every failure a user or a client can act on is a :class:`StatusError` carrying the fields of a
Kubernetes ``metav1.Status`` (code, reason, message, details).  The API server turns these into
Status responses verbatim; the CLI maps them to exit codes.  Keeping one tree means a controller
running in-process and one talking HTTP to a real cluster see the same exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One entry of ``status.details.causes``."""

    reason: str
    message: str
    field: str = ""


@dataclass
class StatusError(Exception):
    """An API failure shaped like ``metav1.Status``."""

    code: int
    reason: str
    message: str
    kind: str = ""
    name: str = ""
    group: str = ""
    causes: list[Cause] = field(default_factory=list)
    retry_after: int = 0

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> dict[str, Any]:
        """Render as a ``metav1.Status`` wire object."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [
                {k: v for k, v in (("reason", c.reason), ("message", c.message), ("field", c.field)) if v}
                for c in self.causes
            ]
        if self.retry_after:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            status["details"] = details
        return status

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> StatusError:
        """Rebuild the matching subclass from a ``metav1.Status`` wire object."""
        details = status.get("details") or {}
        causes = [
            Cause(c.get("reason", ""), c.get("message", ""), c.get("field", "")) for c in details.get("causes") or []
        ]
        reason = status.get("reason", "") or "Unknown"
        klass = _BY_REASON.get(reason, StatusError)
        err = StatusError.__new__(klass)
        StatusError.__init__(
            err,
            code=int(status.get("code", 500)),
            reason=reason,
            message=status.get("message", ""),
            kind=details.get("kind", ""),
            name=details.get("name", ""),
            group=details.get("group", ""),
            causes=causes,
            retry_after=int(details.get("retryAfterSeconds", 0) or 0),
        )
        return err


def _qualified(kind_or_resource: str, group: str) -> str:
    return f"{kind_or_resource}.{group}" if group else kind_or_resource


class NotFound(StatusError):
    """404: the named object does not exist (``pods "web" not found``)."""

    def __init__(self, resource: str, name: str, group: str = "") -> None:
        super().__init__(
            404, "NotFound", f'{_qualified(resource, group)} "{name}" not found', kind=resource, name=name, group=group
        )


class AlreadyExists(StatusError):
    """409: create of a name that is taken."""

    def __init__(self, resource: str, name: str, group: str = "") -> None:
        super().__init__(
            409,
            "AlreadyExists",
            f'{_qualified(resource, group)} "{name}" already exists',
            kind=resource,
            name=name,
            group=group,
        )


class Conflict(StatusError):
    """409: optimistic concurrency failure or an apply conflict."""

    def __init__(
        self, resource: str, name: str, detail: str, group: str = "", causes: list[Cause] | None = None
    ) -> None:
        super().__init__(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {detail}',
            kind=resource,
            name=name,
            group=group,
            causes=causes or [],
        )


class Invalid(StatusError):
    """422: the object failed validation; ``causes`` carry the field errors."""

    def __init__(self, kind: str, name: str, causes: list[Cause], group: str = "") -> None:
        parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
        body = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
        super().__init__(
            422,
            "Invalid",
            f'{_qualified(kind, group)} "{name}" is invalid: {body}',
            kind=kind,
            name=name,
            group=group,
            causes=causes,
        )


class BadRequest(StatusError):
    """400: the request itself is malformed."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "BadRequest", message)


class Gone(StatusError):
    """410: a watch or list asked for history that has been compacted."""

    def __init__(self, message: str) -> None:
        super().__init__(410, "Expired", message)


class MethodNotSupported(StatusError):
    """405: the verb is not allowed on this resource."""

    def __init__(self, resource: str, action: str) -> None:
        super().__init__(
            405, "MethodNotAllowed", f"{action} is not supported on resources of kind {resource!r}", kind=resource
        )


class Unauthorized(StatusError):
    """401: no or wrong bearer token."""

    def __init__(self) -> None:
        super().__init__(401, "Unauthorized", "Unauthorized")


class Forbidden(StatusError):
    """403: the operation is refused (for example creating in a terminating namespace)."""

    def __init__(self, resource: str, name: str, detail: str, group: str = "") -> None:
        super().__init__(
            403,
            "Forbidden",
            f'{_qualified(resource, group)} "{name}" is forbidden: {detail}',
            kind=resource,
            name=name,
            group=group,
        )


class UnsupportedMediaType(StatusError):
    """415: a patch or body content type the server does not understand."""

    def __init__(self, content_type: str) -> None:
        super().__init__(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: {content_type}",
        )


class RangeFull(StatusError):
    """An allocator has no free value left (service IPs, node ports, pod CIDRs)."""

    def __init__(self, message: str) -> None:
        super().__init__(422, "Invalid", message)


class InternalError(StatusError):
    """500: an unexpected failure on the server."""

    def __init__(self, message: str) -> None:
        super().__init__(500, "InternalError", f"Internal error occurred: {message}")


_BY_REASON: dict[str, type[StatusError]] = {
    "NotFound": NotFound,
    "AlreadyExists": AlreadyExists,
    "Conflict": Conflict,
    "Invalid": Invalid,
    "BadRequest": BadRequest,
    "Expired": Gone,
    "Gone": Gone,
    "MethodNotAllowed": MethodNotSupported,
    "Unauthorized": Unauthorized,
    "Forbidden": Forbidden,
    "UnsupportedMediaType": UnsupportedMediaType,
    "InternalError": InternalError,
}

"""The catalogue of API kinds kubewire serves, and what the rest of the code needs to know of each.

One :class:`Kind` per resource: its group/version/kind/plural (for discovery and URLs), how to
default and validate it (pure functions over the wire-form dict), the strategic-merge metadata
for ``kubectl apply``/``patch``, the columns of the server-side Table kubectl prints, and the
field selectors upstream supports for it.  The API-group modules (``core``, ``apps``, …) each
export ``KINDS``; :func:`all_kinds` gathers them.  Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubewire.api.fields import FieldError

Obj = dict[str, Any]
Defaulter = Callable[[Obj], None]
Validator = Callable[[Obj, "Obj | None"], list[FieldError]]
RowFn = Callable[[Obj, datetime], list[Any]]
FieldGetter = Callable[[Obj], str]


@dataclass(frozen=True)
class Column:
    """A ``TableColumnDefinition``: name, type (string/integer/date…), priority (1 = wide only)."""

    name: str
    type: str = "string"
    format: str = ""
    description: str = ""
    priority: int = 0


def _no_default(obj: Obj) -> None:
    return None


def _no_validation(obj: Obj, old: Obj | None) -> list[FieldError]:
    return []


@dataclass(frozen=True, eq=False)
class Kind:
    """Everything kubewire knows about one served resource type (one instance per type, so
    identity is equality and kinds can key dicts)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # "status" and/or "scale" (and "log" for pods); a kind with "status" ignores status on
    # create/update of the main resource and ignores spec on status updates, as upstream.
    subresources: frozenset[str] = frozenset()
    # Fills defaults in place, as the upstream defaulters do (never removes fields).
    default: Defaulter = _no_default
    # (new, old) -> field errors; old is None on create.  Includes update immutability rules.
    validate: Validator = _no_validation
    # Strategic merge patch metadata, keyed by the dotted field path from the object root;
    # lists are crossed without any marker, e.g. "spec.template.spec.containers.ports".
    # merge_keys: path of a list of objects with patchStrategy=merge -> its patchMergeKey
    # (the metadata.* and status.conditions entries are common and live in api.patch).
    merge_keys: Mapping[str, str] = field(default_factory=dict)
    # Paths of lists of scalars with patchStrategy=merge (set-like union, e.g. finalizers).
    merge_primitive_lists: frozenset[str] = frozenset()
    # Paths of objects with patchStrategy=retainKeys (e.g. "spec.strategy", volume entries).
    retain_keys: frozenset[str] = frozenset()
    # Table printing: columns and a function producing the row cells (name first).
    columns: tuple[Column, ...] = ()
    row: RowFn | None = None
    # Extra field selectors beyond metadata.name / metadata.namespace.
    field_selectors: Mapping[str, FieldGetter] = field(default_factory=dict)
    # Whether a change of the object (outside metadata/status) bumps metadata.generation.
    tracks_generation: bool = True
    # The status a new object starts with when the kind has a status subresource (upstream
    # PrepareForCreate: Pods start Pending, Namespaces Active); None means an empty status.
    initial_status: Mapping[str, Any] | None = None
    # (new, old) -> None: what upstream's registry does to an update before validation (for
    # example a Service keeps its allocated clusterIPs and nodePorts when the update omits them).
    prepare_update: Callable[[Obj, Obj], None] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def resource_key(self) -> str:
        """``plural.group`` (``services``, ``deployments.apps``): the store's key for the type."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


class Registry:
    """Lookup of kinds by resource, by kind and by any name kubectl might type."""

    def __init__(self, kinds: list[Kind]) -> None:
        self.kinds = list(kinds)
        self._by_resource: dict[tuple[str, str, str], Kind] = {}
        self._by_kind: dict[tuple[str, str, str], Kind] = {}
        for k in kinds:
            self._by_resource[(k.group, k.version, k.plural)] = k
            self._by_kind[(k.group, k.version, k.kind)] = k

    def by_resource(self, group: str, version: str, plural: str) -> Kind | None:
        return self._by_resource.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> Kind | None:
        return self._by_kind.get((group, version, kind))

    def by_api_version(self, api_version: str, kind: str) -> Kind | None:
        group, _, version = api_version.rpartition("/")
        return self._by_kind.get((group, version, kind))

    def by_key(self, resource_key: str) -> Kind | None:
        for k in self.kinds:
            if k.resource_key == resource_key:
                return k
        return None

    def lookup(self, name: str) -> Kind | None:
        """Resolve what a user types (``svc``, ``services``, ``Service``, ``deploy.apps``)."""
        name_l = name.lower()
        base, _, group = name_l.partition(".")
        for k in self.kinds:
            if group and not (k.group == group or k.group.startswith(group + ".")):
                continue
            if base in (k.plural, k.singular) or base in k.short_names:
                return k
        return None

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred (newest stable) first."""
        out: dict[str, list[str]] = {}
        for k in self.kinds:
            versions = out.setdefault(k.group, [])
            if k.version not in versions:
                versions.append(k.version)
        for versions in out.values():
            versions.sort(key=_version_priority)
        return out


def _version_priority(v: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA before beta before alpha, higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0)
    major = int(m.group(1))
    stage = {"": 0, None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)


_REGISTRY: Registry | None = None


def default_registry() -> Registry:
    """The registry of every kind kubewire serves (built once)."""
    global _REGISTRY
    if _REGISTRY is None:
        from kubewire.api import apps, coordination, core, discovery, gateway, metallb, networking, pod, service

        kinds: list[Kind] = []
        for module in (core, pod, service, apps, coordination, discovery, networking, gateway, metallb):
            kinds.extend(module.KINDS)
        _REGISTRY = Registry(kinds)
    return _REGISTRY

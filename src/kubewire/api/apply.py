"""Server-side apply and managedFields bookkeeping, after sigs.k8s.io/structured-merge-diff.

This module owns ``metadata.managedFields``: who set which field.  :func:`apply` merges an
applied configuration into the live object the way ``kubectl apply --server-side`` expects —
maps merge, associative lists merge by key, other lists are atomic — prunes what the applier
applied last time and no longer does (unless another manager owns it), and refuses to change
a field another manager owns unless forced, with upstream's ``Apply failed with N conflict(s)``
error.  :func:`track_update` records what an ordinary create/update/patch changed, as the
apiserver does for every write (operation ``Update``), taking those fields from other managers.

Field sets are plain Python sets of paths; a path is a tuple of fieldsV1 keys
(``f:spec``, ``k:{"name":"web"}``, ``v:"x"``), so encoding to and from the ``FieldsV1`` wire
form is a tree walk.  The schema structured-merge-diff would read from OpenAPI is derived from
the kind's strategic-merge metadata (merge keys -> associative lists, primitive merge lists ->
sets) plus the few places the two disagree (:data:`_EXTRA_LIST_KEYS`, :data:`_ATOMIC_MAPS`).
Every function is pure: inputs are never mutated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubewire.api.fields import go_quote
from kubewire.api.meta import clone
from kubewire.api.patch import merge_keys_of, primitive_merge_lists_of, supports_strategic
from kubewire.api.registry import Kind
from kubewire.errors import BadRequest, Cause, Conflict, StatusError

Obj = dict[str, Any]
Path = tuple[str, ...]
FieldSet = set[Path]

APPLY = "Apply"
UPDATE = "Update"

# Associative lists whose OpenAPI list-map-keys add a defaulted key to the strategic merge key.
_EXTRA_LIST_KEYS: dict[str, tuple[tuple[str, Any], ...]] = {
    "containerPort": (("protocol", "TCP"),),
    "port": (("protocol", "TCP"),),
}
# Field names that are atomic in built-in schemas (LabelSelector is structType=atomic, the
# Service selector mapType=atomic): owned and replaced as a whole.
_ATOMIC_MAPS = frozenset({"selector", "podSelector", "namespaceSelector", "labelSelector"})
# Paths the apiserver never records (stripMetaManager), compared exactly, not recursively.
_STRIPPED: frozenset[Path] = frozenset(
    {("f:apiVersion",), ("f:kind",), ("f:metadata",)}
    | {
        ("f:metadata", f"f:{name}")
        for name in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        )
    }
)
_MISSING: Any = object()


# ---------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class _ListType:
    """How structured-merge-diff treats a list: ``map`` (keyed items), ``set`` or ``atomic``."""

    relation: str
    keys: tuple[tuple[str, Any], ...] = ()


class _Schema:
    """The slice of a kind's schema that merging and field tracking need."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.builtin = supports_strategic(kind)
        self.merge_keys = merge_keys_of(kind)
        self.sets = primitive_merge_lists_of(kind)
        self.ignore_status = "status" in kind.subresources

    def list_type(self, dotted: str) -> _ListType:
        key = self.merge_keys.get(dotted)
        if key is not None:
            extra = _EXTRA_LIST_KEYS.get(key, ()) if self.builtin and dotted.endswith("ports") else ()
            return _ListType("map", ((key, None), *extra))
        if dotted in self.sets:
            return _ListType("set")
        return _ListType("atomic")

    def atomic_map(self, dotted: str) -> bool:
        return self.builtin and dotted.rpartition(".")[2] in _ATOMIC_MAPS

    def element(self, item: Any, lt: _ListType, index: int, strict: bool, dotted: str) -> str:
        """The fieldsV1 key of one list item: ``k:{...}`` for keyed items, ``v:...`` for sets."""
        if lt.relation == "set":
            return "v:" + _json(item)
        if not isinstance(item, dict):
            if strict:
                raise BadRequest(f".{dotted}: element {index}: expected a map in associative list, got {_json(item)}")
            return f"i:{index}"
        fields: Obj = {}
        for name, default in lt.keys:
            if name in item:
                fields[name] = item[name]
            elif default is not None:
                fields[name] = default
            elif strict:
                raise BadRequest(
                    f".{dotted}: element {index}: associative list with keys has an element that omits key field {go_quote(name)} (and doesn't have default value)"
                )
        return "k:" + _json(fields)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _join(dotted: str, key: str) -> str:
    return f"{dotted}.{key}" if dotted else key


# ---------------------------------------------------------------------------- field sets


def field_set(obj: Obj, kind: Kind) -> FieldSet:
    """The fields an applied configuration sets (structured-merge-diff's ``ToFieldSet``)."""
    schema = _Schema(kind)
    out: FieldSet = set()
    _collect(obj, "", (), schema, out)
    return _strip(out, schema)


def _collect(value: Any, dotted: str, path: Path, schema: _Schema, out: FieldSet) -> None:
    if isinstance(value, dict) and not schema.atomic_map(dotted):
        for key, child in value.items():
            child_path = (*path, f"f:{key}")
            _collect(child, _join(dotted, key), child_path, schema, out)
            if child is None or child == {}:
                out.add(child_path)
    elif isinstance(value, list) and schema.list_type(dotted).relation != "atomic":
        lt = schema.list_type(dotted)
        for i, item in enumerate(value):
            item_path = (*path, schema.element(item, lt, i, True, dotted))
            if lt.relation == "map":
                _collect(item, dotted, item_path, schema, out)
            out.add(item_path)
    elif path:
        out.add(path)


def _strip(paths: FieldSet, schema: _Schema) -> FieldSet:
    """Drop what the apiserver never tracks: identity metadata, managedFields, reset status."""
    out = set()
    for p in paths:
        if p in _STRIPPED or p[:2] == ("f:metadata", "f:managedFields"):
            continue
        if schema.ignore_status and p[:1] == ("f:status",):
            continue
        out.add(p)
    return out


@dataclass
class _Comparison:
    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)

    def changed(self) -> FieldSet:
        return self.added | self.modified


def compare(old: Obj, new: Obj, kind: Kind) -> _Comparison:
    """Paths added, modified and removed going from ``old`` to ``new`` (``TypedValue.Compare``)."""
    schema = _Schema(kind)
    result = _Comparison()
    _compare(old, new, "", (), schema, result)
    result.added = _strip(result.added, schema)
    result.modified = _strip(result.modified, schema)
    result.removed = _strip(result.removed, schema)
    return result


def _compare(lhs: Any, rhs: Any, dotted: str, path: Path, schema: _Schema, out: _Comparison) -> None:
    if _both(lhs, rhs, dict) and not schema.atomic_map(dotted):
        left: Obj = {} if lhs is _MISSING else lhs
        right: Obj = {} if rhs is _MISSING else rhs
        for key in {**left, **right}:
            _compare(
                left.get(key, _MISSING), right.get(key, _MISSING), _join(dotted, key), (*path, f"f:{key}"), schema, out
            )
    elif _both(lhs, rhs, list) and schema.list_type(dotted).relation != "atomic":
        left_items = _items_by_element(lhs, dotted, schema)
        right_items = _items_by_element(rhs, dotted, schema)
        for pe in {**left_items, **right_items}:
            _compare(left_items.get(pe, _MISSING), right_items.get(pe, _MISSING), dotted, (*path, pe), schema, out)
    elif lhs is not _MISSING and rhs is not _MISSING and _json(lhs) != _json(rhs):
        out.modified.add(path)
    if path and lhs is _MISSING:
        out.added.add(path)
    elif path and rhs is _MISSING:
        out.removed.add(path)


def _both(lhs: Any, rhs: Any, typ: type) -> bool:
    return (lhs is _MISSING or isinstance(lhs, typ)) and (rhs is _MISSING or isinstance(rhs, typ))


def _items_by_element(items: Any, dotted: str, schema: _Schema) -> dict[str, Any]:
    if items is _MISSING:
        return {}
    lt = schema.list_type(dotted)
    return {schema.element(item, lt, i, False, dotted): item for i, item in enumerate(items)}


def _with_named_parents(paths: Iterable[Path]) -> FieldSet:
    """Add every ``f:`` prefix of each path as a member (``EnsureNamedFieldsAreMembers``)."""
    out = set(paths)
    for p in list(out):
        for i in range(1, len(p)):
            if p[i - 1].startswith("f:"):
                out.add(p[:i])
    return out


# ---------------------------------------------------------------------------- fieldsV1 codec


def decode_fields(fields_v1: Any) -> FieldSet:
    """The member paths of a ``FieldsV1`` tree (``{}`` leaves and ``.``-marked inner nodes)."""
    out: FieldSet = set()
    if isinstance(fields_v1, dict):
        _decode(fields_v1, (), out)
    return out


def _decode(tree: Obj, prefix: Path, out: FieldSet) -> None:
    for key, sub in tree.items():
        if key == ".":
            continue
        path = (*prefix, key)
        if not isinstance(sub, dict) or not sub or "." in sub:
            out.add(path)
        if isinstance(sub, dict):
            _decode(sub, path, out)


def encode_fields(paths: Iterable[Path]) -> Obj:
    """The ``FieldsV1`` tree of a set of member paths, keys in structured-merge-diff order."""
    members = set(paths)
    root: Obj = {}
    for path in members:
        node = root
        for element in path:
            node = node.setdefault(element, {})
    for path in members:
        node = root
        for element in path:
            node = node[element]
        if node:
            node["."] = {}
    return _sorted_tree(root)


def _sorted_tree(tree: Obj) -> Obj:
    return {k: _sorted_tree(tree[k]) for k in sorted(tree, key=_element_order)}


def _element_order(element: str) -> tuple[int, Any]:
    """structured-merge-diff's PathElement order: ``.``, fields, keys, values, indexes."""
    if element == ".":
        return (0, "")
    rank = {"f": 1, "k": 2, "v": 3, "i": 4}.get(element[:1], 5)
    rest = element[2:]
    if rank == 2:
        return (rank, [(k, _value_order(v)) for k, v in json.loads(rest).items()])
    if rank == 3:
        return (rank, _value_order(json.loads(rest)))
    if rank == 4:
        return (rank, int(rest))
    return (rank, rest)


def _value_order(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, _json(value))


def path_string(path: Path) -> str:
    """A path as upstream prints it in conflicts: ``.spec.containers[name="web"].image``."""
    parts = []
    for element in path:
        tag, rest = element[:1], element[2:]
        if tag == "f":
            parts.append("." + rest)
        elif tag == "k":
            parts.append("[" + ",".join(f"{k}={_json(v)}" for k, v in json.loads(rest).items()) + "]")
        elif tag == "v":
            parts.append(f"[={rest}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)


def _iterate(paths: FieldSet) -> list[Path]:
    """Paths in structured-merge-diff's ``Set.Iterate`` order: a level's members before subtrees."""
    tree = encode_fields(paths)
    out: list[Path] = []
    _walk_members(tree, (), paths, out)
    return out


def _walk_members(tree: Obj, prefix: Path, members: FieldSet, out: list[Path]) -> None:
    keys = [k for k in tree if k != "."]
    out.extend((*prefix, k) for k in keys if (*prefix, k) in members)
    for k in keys:
        if tree[k]:
            _walk_members(tree[k], (*prefix, k), members, out)


# ---------------------------------------------------------------------------- managers


@dataclass
class _Entry:
    """One ``metadata.managedFields`` entry."""

    manager: str
    operation: str
    api_version: str
    time: str
    fields: FieldSet
    subresource: str = ""

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What makes two entries the same manager (appliers ignore the API version)."""
        version = "" if self.operation == APPLY else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        """Upstream's ``printManager``: ``"kubectl-edit" using apps/v1``."""
        text = go_quote(self.manager)
        if self.subresource:
            text += f" with subresource {go_quote(self.subresource)}"
        if self.operation == UPDATE:
            text += f" using {self.api_version}"
        return text

    def to_wire(self) -> Obj:
        out: Obj = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = encode_fields(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _decode_entries(managed: Any) -> dict[tuple[str, str, str, str], _Entry]:
    entries: dict[tuple[str, str, str, str], _Entry] = {}
    for raw in managed if isinstance(managed, list) else []:
        if not isinstance(raw, dict):
            continue
        entry = _Entry(
            manager=str(raw.get("manager", "")),
            operation=str(raw.get("operation", UPDATE)),
            api_version=str(raw.get("apiVersion", "")),
            time=str(raw.get("time", "")),
            fields=decode_fields(raw.get("fieldsV1")),
            subresource=str(raw.get("subresource", "")),
        )
        entries[entry.identity] = entry
    return entries


def _encode_entries(entries: Iterable[_Entry]) -> list[Obj]:
    """Non-empty entries, sorted as upstream: Apply before Update, then time, manager, version."""
    kept = [e for e in entries if e.fields]
    kept.sort(key=lambda e: (e.operation, e.time, e.manager, e.api_version, e.subresource))
    return [e.to_wire() for e in kept]


def _set_managed_fields(obj: Obj, entries: Iterable[_Entry]) -> None:
    meta = obj.setdefault("metadata", {})
    encoded = _encode_entries(entries)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)


# ---------------------------------------------------------------------------- update


def track_update(old: Obj | None, new: Obj, manager: str, kind: Kind, now: str) -> Obj:
    """Record a non-apply write: the fields it changed move to ``manager`` (operation Update).

    As upstream, managedFields sent in the request replace the stored ones (``[{}]`` clears
    them); absent or empty, the live object's are kept.  Fields the write changed are taken
    from every other manager; fields it removed are dropped from all of them.
    """
    result = clone(new)
    meta = result.setdefault("metadata", {})
    sent = meta.get("managedFields")
    if sent == [{}]:
        entries = {}
    elif sent:
        entries = _decode_entries(sent)
    else:
        entries = _decode_entries(((old or {}).get("metadata") or {}).get("managedFields"))
    diff = compare(_without_managed(old or {}), _without_managed(result), kind)
    changed = diff.changed()
    for entry in entries.values():
        entry.fields -= changed | diff.removed
    if changed:
        mine = _Entry(manager, UPDATE, kind.api_version, now, set())
        entry = entries.setdefault(mine.identity, mine)
        entry.fields |= changed
        entry.time = now
    _set_managed_fields(result, entries.values())
    return result


def _without_managed(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


# ---------------------------------------------------------------------------- apply


def apply(live: Obj | None, applied: Obj, manager: str, kind: Kind, force: bool, now: str) -> Obj:
    """Server-side apply ``applied`` by ``manager`` onto ``live`` (None when creating).

    Raises the upstream apply :class:`~kubewire.errors.Conflict` when the merge would change a
    field another manager owns and ``force`` is false; with ``force`` those fields change hands.
    """
    if ((applied.get("metadata") or {}).get("managedFields")) is not None:
        raise BadRequest("metadata.managedFields must be nil")
    schema = _Schema(kind)
    current = _without_managed(live or {})
    entries = _decode_entries(((live or {}).get("metadata") or {}).get("managedFields"))
    config = {k: v for k, v in applied.items() if not (schema.ignore_status and k == "status")}
    me = _Entry(manager, APPLY, kind.api_version, now, field_set(config, kind))
    previous = entries.get(me.identity)
    entries[me.identity] = me
    merged: Obj = _merge(current, config, "", schema)
    if previous is not None:
        merged = _prune(merged, previous.fields, entries.values(), schema)
    diff = compare(current, merged, kind)
    _settle_ownership(entries, me, diff, force)
    if previous is not None and previous.fields == me.fields and not (diff.changed() or diff.removed):
        me.time = previous.time
    _set_managed_fields(merged, entries.values())
    return merged


def _settle_ownership(
    entries: dict[tuple[str, str, str, str], _Entry], me: _Entry, diff: _Comparison, force: bool
) -> None:
    """Raise on fields the apply changes under another manager; else (or forced) take them."""
    changed = diff.changed()
    others = [entry for key, entry in entries.items() if key != me.identity]
    conflicts = [(entry, entry.fields & changed) for entry in others if entry.fields & changed]
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for entry in others:
        entry.fields -= changed | diff.removed


def _merge(lhs: Any, rhs: Any, dotted: str, schema: _Schema) -> Any:
    """Merge an applied value into a live one (``TypedValue.Merge``); the applied side wins."""
    if isinstance(lhs, dict) and isinstance(rhs, dict) and not schema.atomic_map(dotted):
        out = dict(lhs)
        for key, value in rhs.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = _merge(out[key], value, _join(dotted, key), schema)
            else:
                out[key] = _merge(_MISSING, value, _join(dotted, key), schema)
        return out
    if isinstance(rhs, list) and schema.list_type(dotted).relation != "atomic":
        return _merge_list(lhs if isinstance(lhs, list) else [], rhs, dotted, schema)
    if isinstance(rhs, dict) and not schema.atomic_map(dotted):
        return _merge({}, rhs, dotted, schema)
    return clone(rhs)


def _merge_list(lhs: list[Any], rhs: list[Any], dotted: str, schema: _Schema) -> list[Any]:
    """Keyed merge: live-only items keep their place, applied items come in applied order."""
    lt = schema.list_type(dotted)
    left = [(schema.element(item, lt, i, False, dotted), item) for i, item in enumerate(lhs)]
    right = [(schema.element(item, lt, i, True, dotted), item) for i, item in enumerate(rhs)]
    right_index = {pe: item for pe, item in right}
    if len(right_index) != len(right):
        raise BadRequest(f".{dotted}: duplicate entries for key in associative list")
    left_index = {pe: item for pe, item in left}
    out: list[Any] = []
    used: set[str] = set()
    li = ri = 0
    while li < len(left) or ri < len(right):
        if li < len(left) and left[li][0] in used:
            li += 1
        elif li < len(left) and left[li][0] not in right_index:
            out.append(clone(left[li][1]))
            li += 1
        else:
            pe, item = right[ri]
            base = left_index.get(pe, _MISSING) if lt.relation == "map" else _MISSING
            out.append(_merge(base, item, dotted, schema))
            used.add(pe)
            ri += 1
    return out


def _prune(merged: Obj, last: FieldSet, entries: Iterable[_Entry], schema: _Schema) -> Obj:
    """Remove what the applier applied last time and dropped now, unless someone owns it."""
    owned: FieldSet = set()
    for entry in entries:
        owned |= entry.fields
    doomed = _with_named_parents(last) - _with_named_parents(owned)
    result = clone(merged)
    for path in sorted(doomed, key=len):
        if not any(path[:i] in doomed for i in range(1, len(path))):
            _remove_path(result, path, "", schema)
    return result


def _remove_path(value: Any, path: Path, dotted: str, schema: _Schema) -> None:
    element, rest = path[0], path[1:]
    if element.startswith("f:") and isinstance(value, dict):
        name = element[2:]
        if name not in value:
            return
        if rest:
            _remove_path(value[name], rest, _join(dotted, name), schema)
        else:
            del value[name]
    elif isinstance(value, list):
        lt = schema.list_type(dotted)
        for i, item in enumerate(value):
            if schema.element(item, lt, i, False, dotted) == element:
                if rest:
                    _remove_path(item, rest, dotted, schema)
                else:
                    del value[i]
                return


def _conflict_error(conflicts: list[tuple[_Entry, FieldSet]]) -> StatusError:
    """Upstream's apply conflict: one line for one conflict, else grouped by manager."""
    conflicts.sort(key=lambda c: (c[0].manager, c[0].operation, c[0].api_version, c[0].subresource))
    flat = [(entry, path) for entry, paths in conflicts for path in _iterate(paths)]
    causes = [
        Cause("FieldManagerConflict", f"conflict with {entry.describe()}", path_string(path)) for entry, path in flat
    ]
    if len(flat) == 1:
        entry, path = flat[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.describe()}: {path_string(path)}"
    else:
        lines: list[str] = []
        for entry, paths in conflicts:
            lines.append(f"conflicts with {entry.describe()}:")
            lines.extend(f"- {path_string(p)}" for p in _iterate(paths))
        message = f"Apply failed with {len(flat)} conflicts: " + "\n".join(lines)
    return ApplyConflict(message, causes)


class ApplyConflict(Conflict):
    """409 Conflict of a server-side apply; its message is upstream's, not the generic one."""

    def __init__(self, message: str, causes: list[Cause]) -> None:
        StatusError.__init__(self, 409, "Conflict", message, causes=causes)


def managers_of(obj: Obj) -> Iterator[tuple[str, str, FieldSet]]:
    """(manager, operation, fields) for each managedFields entry of ``obj``; for callers and tests."""
    for entry in _decode_entries((obj.get("metadata") or {}).get("managedFields")).values():
        yield entry.manager, entry.operation, entry.fields

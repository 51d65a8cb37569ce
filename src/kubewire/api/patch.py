"""The three classic PATCH body types of the Kubernetes API, as pure functions on wire dicts.

This module owns JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes' strategic
merge patch, plus :func:`apply_patch`, which picks one from the request's content type.  Server-side
apply lives in :mod:`kubewire.api.apply`; :func:`apply` and :func:`track_update` are re-exported
here so the API server has one module to call for every write.

Why a hand-written strategic merge: kubectl's client-side ``apply``, ``edit``, ``label`` and
``patch`` all send strategic merge patches full of directives (``$patch``, ``$setElementOrder/``,
``$deleteFromPrimitiveList/``, ``$retainKeys``) computed against upstream's merge metadata, so the
result must match ``k8s.io/apimachinery/pkg/util/strategicpatch`` exactly, list order included.
The merge metadata comes from :class:`~kubewire.api.registry.Kind` (``merge_keys``,
``merge_primitive_lists``) plus the entries every built-in kind shares (:data:`COMMON_MERGE_KEYS`).

Errors are shaped as upstream's: malformed patches are 400 BadRequest, a JSON patch that does not
apply is the 422 "the server rejected our request due to an error in our request" with the
detail in a cause, and strategic merge on a kind without merge metadata (custom-resource-like
groups) is the 415 a CRD answers.  Every function returns a new dict and never mutates its inputs.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch

from kubewire.api.meta import clone
from kubewire.api.registry import Kind
from kubewire.errors import BadRequest, Cause, StatusError, UnsupportedMediaType

Obj = dict[str, Any]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# Groups whose kinds are compiled into the upstream apiserver (so they carry patch tags); the
# others are served like CRDs, which refuse strategic merge.
STRATEGIC_GROUPS = frozenset({"", "apps", "discovery.k8s.io", "networking.k8s.io"})
# What a CRD accepts, in the order upstream lists them in its 415 message.
CRD_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)

# Merge metadata every built-in kind shares (ObjectMeta's tags, and the conditions lists, which
# are ``patchMergeKey=type,patchStrategy=merge`` on every built-in status that has them).
COMMON_MERGE_KEYS: dict[str, str] = {"metadata.ownerReferences": "uid", "status.conditions": "type"}
COMMON_PRIMITIVE_MERGE_LISTS = frozenset({"metadata.finalizers"})

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_MAX_JSON_PATCH_OPS = 10000


def supports_strategic(kind: Kind) -> bool:
    """Whether the kind accepts strategic merge patches (built-in groups do, CRD-like ones don't)."""
    return kind.group in STRATEGIC_GROUPS


def merge_keys_of(kind: Kind) -> dict[str, str]:
    """The kind's list merge keys by dotted path, the shared metadata/status ones included."""
    if not supports_strategic(kind):
        return dict(kind.merge_keys)
    return {**COMMON_MERGE_KEYS, **kind.merge_keys}


def primitive_merge_lists_of(kind: Kind) -> frozenset[str]:
    """Paths of the kind's set-like scalar lists (``patchStrategy=merge`` on a list of strings)."""
    if not supports_strategic(kind):
        return frozenset(kind.merge_primitive_lists)
    return COMMON_PRIMITIVE_MERGE_LISTS | kind.merge_primitive_lists


# ---------------------------------------------------------------------------- dispatch


def apply_patch(obj: Obj, patch_body: bytes, content_type: str, kind: Kind) -> Obj:
    """Apply a PATCH body of one of the three JSON patch content types to ``obj``."""
    if content_type == STRATEGIC_MERGE_PATCH and not supports_strategic(kind):
        raise UnsupportedMediaType(", ".join(CRD_PATCH_TYPES))
    if content_type not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        raise UnsupportedMediaType(", ".join((JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)))
    try:
        body = json.loads(patch_body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"error decoding patch: {e}") from e
    if content_type == JSON_PATCH:
        return json_patch(obj, body)
    if content_type == MERGE_PATCH:
        return merge_patch(obj, body)
    return strategic_merge_patch(obj, body, kind)


def apply(live: Obj | None, applied: Obj, manager: str, kind: Kind, force: bool, now: str) -> Obj:
    """Server-side apply; see :func:`kubewire.api.apply.apply`."""
    from kubewire.api import apply as ssa

    return ssa.apply(live, applied, manager, kind, force, now)


def track_update(old: Obj | None, new: Obj, manager: str, kind: Kind, now: str) -> Obj:
    """Record a create/update/patch in managedFields; see :func:`kubewire.api.apply.track_update`."""
    from kubewire.api import apply as ssa

    return ssa.track_update(old, new, manager, kind, now)


# ---------------------------------------------------------------------------- JSON patch


def rejected(detail: str) -> StatusError:
    """Upstream's ``NewGenericServerResponse(422, ...)``: a fixed message, the detail in a cause."""
    return StatusError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        causes=[Cause("UnexpectedServerResponse", detail)],
    )


def json_patch(obj: Obj, patch_ops: Any) -> Obj:
    """Apply an RFC 6902 JSON patch; a failing operation is a 422 naming the operation's path."""
    ops = _decode_json_patch(patch_ops)
    doc: Any = clone(obj)
    for op in ops:
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except jsonpatch.JsonPatchTestFailed as e:
            raise rejected(f"testing value {op.get('path', '')} failed: test failed") from e
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            raise rejected(_json_patch_failure(op)) from e
    if not isinstance(doc, dict):
        raise BadRequest("json: cannot unmarshal the patched document into an object")
    return doc


def _decode_json_patch(patch_ops: Any) -> list[Obj]:
    if not isinstance(patch_ops, list):
        raise BadRequest(f"json: cannot unmarshal {_json_type(patch_ops)} into Go value of type jsonpatch.Patch")
    if len(patch_ops) > _MAX_JSON_PATCH_OPS:
        raise StatusError(
            413,
            "RequestEntityTooLarge",
            f"Request entity too large: The allowed maximum operations in a JSON patch is {_MAX_JSON_PATCH_OPS}, got {len(patch_ops)}",
        )
    for op in patch_ops:
        if not isinstance(op, dict):
            raise BadRequest(f"json: cannot unmarshal {_json_type(op)} into Go value of type jsonpatch.Operation")
        if op.get("op") not in ("add", "remove", "replace", "move", "copy", "test"):
            raise rejected(f"Unexpected kind: {op.get('op', 'unknown')}")
    return patch_ops


def _json_patch_failure(op: Obj) -> str:
    """The evanphx/json-patch wording of an operation that does not apply."""
    kind, path, source = op.get("op"), op.get("path", ""), op.get("from", "")
    if kind in ("add", "remove"):
        return f'{kind} operation does not apply: doc is missing path: "{path}": missing value'
    if kind == "replace":
        return f"replace operation does not apply: doc is missing key: {path}: missing value"
    return f"{kind} operation does not apply: doc is missing from path: {source}: missing value"


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    return "number"


# ---------------------------------------------------------------------------- merge patch


def merge_patch(obj: Obj, patch: Any) -> Obj:
    """Apply an RFC 7386 JSON merge patch: objects merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        raise BadRequest("Invalid JSON Patch")
    result = clone(obj)
    _merge_into(result, patch)
    return result


def _merge_into(target: Obj, patch: Obj) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            if not isinstance(current, dict):
                current = {}
            _merge_into(current, value)
            target[key] = current
        else:
            target[key] = clone(value)


# ---------------------------------------------------------------------------- strategic merge


def strategic_merge_patch(obj: Obj, patch: Any, kind: Kind) -> Obj:
    """Apply a Kubernetes strategic merge patch using the kind's merge metadata."""
    if not supports_strategic(kind):
        raise UnsupportedMediaType(", ".join(CRD_PATCH_TYPES))
    if not isinstance(patch, dict):
        raise BadRequest(f"json: cannot unmarshal {_json_type(patch)} into Go value of type map[string]interface {{}}")
    merger = _StrategicMerger(merge_keys_of(kind), primitive_merge_lists_of(kind))
    return merger.merge_map(clone(obj), clone(patch), "")


class _StrategicMerger:
    """One strategic merge; methods mutate the (already copied) original and patch they get."""

    def __init__(self, merge_keys: dict[str, str], primitive_lists: frozenset[str]) -> None:
        self.merge_keys = merge_keys
        self.primitive_lists = primitive_lists

    def is_merge_list(self, path: str) -> bool:
        return path in self.merge_keys or path in self.primitive_lists

    # -- maps

    def merge_map(self, original: Obj | None, patch: Obj, path: str) -> Obj:
        if _DIRECTIVE in patch:
            return self._map_directive(patch, path)
        merged: Obj = original if original is not None else {}
        _apply_retain_keys(merged, patch)
        self._apply_set_element_orders(merged, patch, path)
        deletions = {k: patch.pop(k) for k in list(patch) if k.startswith(_DELETE_PRIMITIVE)}
        for key, value in patch.items():
            if key.startswith("$"):
                raise BadRequest(f"unknown patch directive {key!r} in map: {go_format(patch)}")
            self._merge_field(merged, key, value, _join(path, key))
        for key, value in deletions.items():
            _delete_from_primitive_list(merged, key, value)
        return merged

    def _map_directive(self, patch: Obj, path: str) -> Obj:
        directive = patch.pop(_DIRECTIVE)
        if directive == "replace":
            return self.merge_map({}, patch, path)
        if directive == "delete":
            return {}
        patch[_DIRECTIVE] = directive
        raise BadRequest(f"unknown patch type: {go_format(directive)} in map: {go_format(patch)}")

    def _merge_field(self, merged: Obj, key: str, value: Any, path: str) -> None:
        if value is None:
            merged.pop(key, None)
            return
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = self.merge_map(current, value, path)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = self.merge_list(current, value, path)
        else:
            merged[key] = self.fresh(value, path)

    def fresh(self, value: Any, path: str) -> Any:
        """A patch value with nothing to merge into: directives applied, nulls dropped."""
        if isinstance(value, dict):
            return self.merge_map({}, value, path)
        if isinstance(value, list):
            return self.merge_list([], value, path)
        return value

    # -- lists

    def merge_list(self, original: list[Any], patch: list[Any], path: str) -> list[Any]:
        if not self.is_merge_list(path):
            return clone(patch)  # replaced wholesale, items verbatim as upstream
        if not original and not patch:
            return original
        maps = _element_kind(original, patch)
        if not maps:
            merged = _dedupe([*original, *patch])
            return _normalize_order(merged, patch, original, "")
        key = self.merge_keys.get(path)
        if key is None:
            raise BadRequest(f"cannot merge lists without merge key for {path}")
        original, patch = self._special_elements(original, patch, key, path)
        merged = self._merge_by_key(original, patch, key, path)
        return _normalize_order(merged, patch, original, key)

    def _special_elements(
        self, original: list[Any], patch: list[Any], key: str, path: str
    ) -> tuple[list[Any], list[Any]]:
        """Handle ``$patch`` list items: delete by key, replace the whole list."""
        plain: list[Any] = []
        replace = False
        for item in patch:
            if _DIRECTIVE not in item:
                plain.append(item)
                continue
            directive = item[_DIRECTIVE]
            if directive == "delete":
                if key not in item:
                    raise BadRequest(f"map: {go_format(item)} does not contain declared merge key: {key}")
                original = [o for o in original if not _key_matches(o, key, item[key])]
            elif directive == "replace":
                replace = True
            elif directive == "merge":
                raise BadRequest("merging lists cannot yet be specified in the patch")
            else:
                raise BadRequest(f"unknown patch type: {go_format(directive)} in map: {go_format(item)}")
        if replace:
            return [self.fresh(item, path) for item in plain], []
        return original, plain

    def _merge_by_key(self, original: list[Any], patch: list[Any], key: str, path: str) -> list[Any]:
        merged = list(original)
        for item in patch:
            if key not in item:
                raise BadRequest(f"map: {go_format(item)} does not contain declared merge key: {key}")
            index = _find_by_key(merged, key, item[key])
            if index is None:
                merged.append(self.fresh(item, path))
            else:
                merged[index] = self.merge_map(merged[index], item, path)
        return merged

    # -- $setElementOrder

    def _apply_set_element_orders(self, merged: Obj, patch: Obj, path: str) -> None:
        for directive in [k for k in patch if k.startswith(_SET_ORDER)]:
            order = patch.pop(directive)
            field = directive[len(_SET_ORDER) :]
            if not field or not isinstance(order, list):
                raise BadRequest("invalid patch format of setElementOrder list")
            child = _join(path, field)
            key = self.merge_keys.get(child, "")
            in_original, in_patch = field in merged, field in patch
            original_list = _expect_list(merged.get(field, []))
            patch_list = _expect_list(patch.get(field, []))
            _validate_order(patch_list, order, key)
            if in_original and in_patch:
                result = self.merge_list(original_list, patch_list, child)
            elif in_patch:
                result = self.merge_list([], patch_list, child)
            elif in_original:
                result = original_list
            else:
                continue
            if not key and any(isinstance(item, dict) for item in result):
                merged[field] = result
            else:
                merged[field] = _normalize_order(result, order, original_list, key)
            patch.pop(field, None)


# -- strategic merge helpers (pure functions over JSON values)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _same(a: Any, b: Any) -> bool:
    """Go's ``==`` on decoded JSON scalars: equal value and equal type (1 is not true)."""
    return type(a) is type(b) and a == b


def _key_matches(item: Any, key: str, value: Any) -> bool:
    return isinstance(item, dict) and key in item and _same(item[key], value)


def _find_by_key(items: list[Any], key: str, value: Any) -> int | None:
    for i, item in enumerate(items):
        if _key_matches(item, key, value):
            return i
    return None


def _expect_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"invalid patch format: expected a list, got {go_format(value)}")
    return value


def _element_kind(*lists: list[Any]) -> bool:
    """True when the lists hold maps, False for scalars; lists of lists are refused as upstream."""
    kinds = {isinstance(item, dict) for items in lists for item in items}
    if any(isinstance(item, list) for items in lists for item in items):
        raise rejected("lists of lists are not supported")
    if len(kinds) > 1:
        raise BadRequest(f"list element types are not identical: {go_format(list(lists))}")
    return kinds == {True}


def _dedupe(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not any(_same(item, seen) for seen in out):
            out.append(item)
    return out


def _identity(item: Any, key: str) -> Any:
    return item.get(key) if key and isinstance(item, dict) else item


def _index(order: list[Any], item: Any, key: str) -> int:
    wanted = _identity(item, key)
    for i, candidate in enumerate(order):
        if _same(_identity(candidate, key), wanted):
            return i
    return -1


def _sort_by(items: list[Any], order: list[Any], key: str) -> list[Any]:
    """Stable sort by position in ``order``; items missing from it keep their place at the end."""
    positions = [_index(order, item, key) for item in items]
    ranked = sorted(range(len(items)), key=lambda i: (positions[i] < 0, positions[i]))
    return [items[i] for i in ranked]


def _normalize_order(merged: list[Any], patch_order: list[Any], server_order: list[Any], key: str) -> list[Any]:
    """Upstream's ``normalizeElementOrder``: patch items in patch order, server-only items
    in live order, then interleaved by live order where both sides are known."""
    from_patch = [m for m in merged if _index(patch_order, m, key) >= 0]
    server_only = [m for m in merged if _index(patch_order, m, key) < 0]
    left = _sort_by(server_only, server_order, key)
    right = _sort_by(from_patch, patch_order, key)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            out.append(left[i])
            i += 1
        elif i >= len(left):
            out.append(right[j])
            j += 1
        else:
            li, ri = _index(server_order, left[i], key), _index(server_order, right[j], key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _validate_order(patch_list: list[Any], order: list[Any], key: str) -> None:
    """The patch list must be a subsequence of the ``$setElementOrder`` list (deletions aside)."""
    if not order or not patch_list:
        return
    items = [p for p in patch_list if not (isinstance(p, dict) and _DIRECTIVE in p)]
    pi = oi = 0
    while pi < len(items) and oi < len(order):
        for item in (items[pi], order[oi]):
            if key and not (isinstance(item, dict) and key in item):
                raise BadRequest(f"map: {go_format(item)} does not contain declared merge key: {key}")
        if _same(_identity(items[pi], key), _identity(order[oi], key)):
            pi += 1
        oi += 1
    if pi < len(items):
        raise BadRequest(
            f"The order in patch list:\n{go_format(patch_list)}\n doesn't match $setElementOrder list:\n{go_format(order)}\n"
        )


def _apply_retain_keys(merged: Obj, patch: Obj) -> None:
    if _RETAIN_KEYS not in patch:
        return
    keep = patch.pop(_RETAIN_KEYS)
    if not isinstance(keep, list):
        raise BadRequest("invalid patch format of retainKeys")
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_PRIMITIVE, _SET_ORDER)):
            continue
        if key not in keep:
            raise BadRequest("invalid patch format of retainKeys")
    for key in [k for k in merged if k not in keep]:
        del merged[key]


def _delete_from_primitive_list(merged: Obj, directive: str, values: Any) -> None:
    field = directive[len(_DELETE_PRIMITIVE) :]
    if not field or not isinstance(values, list):
        raise BadRequest("invalid patch format of primitive list")
    current = merged.get(field)
    if isinstance(current, list):
        merged[field] = [v for v in current if not any(_same(v, d) for d in values)]


def go_format(value: Any) -> str:
    """Render a decoded JSON value as Go's ``%v`` does (``map[k:v]``, ``[a b]``), for messages."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_format(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    return str(value)

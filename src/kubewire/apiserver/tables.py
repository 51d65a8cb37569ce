"""Server-side printing: objects to ``meta.k8s.io/v1`` Tables, the form ``kubectl get`` asks for.

The columns and cells come from each kind's ``columns``/``row`` in the object model; this module
only wraps them (column definitions, ``PartialObjectMetadata`` or the full object per row, as the
``includeObject`` parameter asks).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubewire.api.meta import age
from kubewire.api.registry import Column, Kind, Obj

_DEFAULT_COLUMNS = (
    Column("Name", "string", "name", "Name must be unique within a namespace."),
    Column("Age", "string", "", "CreationTimestamp"),
)


def columns_of(kind: Kind) -> tuple[Column, ...]:
    return kind.columns or _DEFAULT_COLUMNS


def column_definitions(kind: Kind) -> list[dict[str, Any]]:
    return [
        {"name": c.name, "type": c.type, "format": c.format, "description": c.description, "priority": c.priority}
        for c in columns_of(kind)
    ]


def row_cells(kind: Kind, obj: Obj, now: datetime) -> list[Any]:
    if kind.row is not None and kind.columns:
        return kind.row(obj, now)
    return [obj["metadata"].get("name", ""), age(obj, now)]


def partial_metadata(obj: Obj) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(
    kind: Kind,
    objs: list[Obj],
    now: datetime,
    include_object: str = "PartialObjectMetadata",
    resource_version: str = "",
    continue_token: str = "",
    headers: bool = True,
) -> dict[str, Any]:
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": row_cells(kind, obj, now)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj)
        rows.append(row)
    meta: dict[str, Any] = {}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if continue_token:
        meta["continue"] = continue_token
    out: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    out["columnDefinitions"] = column_definitions(kind) if headers else []
    out["rows"] = rows
    return out

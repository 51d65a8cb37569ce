"""What the CLI prints: kubectl-style tables, YAML/JSON, apply results and error sentences."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from kubewire.api.registry import Kind, default_registry
from kubewire.cli.state import ClusterState
from kubewire.client.http import HttpClient
from kubewire.errors import NotFound, StatusError


def error_message(err: StatusError) -> str:
    """kubectl's ``StandardErrorMessage``: ``Error from server (NotFound): ...``."""
    if err.reason == "Invalid" and (err.kind or err.name):
        body = [f"{c.field}: {c.message}" if c.field else c.message for c in err.causes]
        text = body[0] if len(body) == 1 else "[" + ", ".join(body) + "]"
        return f'The {err.kind} "{err.name}" is invalid: {text}'
    return f"Error from server ({err.reason}): {err.message}"


def _client(state: ClusterState) -> HttpClient:
    return HttpClient.from_kubeconfig(state.kubeconfig_path, field_manager="kubewire")


def read_manifests(paths: list[str]) -> Iterator[dict[str, Any]]:
    """Every object in the given YAML/JSON files, directories (sorted) or stdin; Lists unwrapped."""
    for p in paths:
        if p == "-":
            texts = [sys.stdin.read()]
        else:
            path = Path(p)
            files = (
                sorted(f for f in path.iterdir() if f.suffix in (".yaml", ".yml", ".json")) if path.is_dir() else [path]
            )
            texts = [f.read_text() for f in files]
        for text in texts:
            for doc in yaml.safe_load_all(text):
                if not doc:
                    continue
                if doc.get("kind", "").endswith("List") and "items" in doc:
                    yield from doc["items"]
                else:
                    yield doc


def kind_for(obj: dict[str, Any]) -> Kind:
    kind = default_registry().by_api_version(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    if kind is None:
        raise StatusError(
            400, "BadRequest", f'no matches for kind "{obj.get("kind")}" in version "{obj.get("apiVersion")}"'
        )
    return kind


async def apply_paths(state: ClusterState, paths: list[str], force: bool = False) -> None:
    client = _client(state)
    failed = 0
    try:
        for obj in read_manifests(paths):
            try:
                kind = kind_for(obj)
                meta = obj.setdefault("metadata", {})
                if kind.namespaced:
                    meta.setdefault("namespace", "default")
                try:
                    before: dict[str, Any] | None = await client.get(
                        kind, meta.get("name", ""), meta.get("namespace", "")
                    )
                except NotFound:
                    before = None
                after = await client.apply(kind, obj, "kubewire", force=force)
                verb = (
                    "created"
                    if before is None
                    else (
                        "unchanged"
                        if before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
                        else "configured"
                    )
                )
                print(
                    f"{kind.singular}{'.' + kind.group if kind.group else ''}/{meta.get('name')} serverside-applied ({verb})"
                )
            except StatusError as err:  # one bad object never stops the others
                failed += 1
                print(error_message(err), file=sys.stderr)
    finally:
        await client.close()
    if failed:
        raise SystemExit(1)


async def get(state: ClusterState, resource: str, names: list[str], namespace: str, selector: str, fmt: str) -> str:
    kind = default_registry().lookup(resource)
    if kind is None:
        raise StatusError(404, "NotFound", f'the server doesn\'t have a resource type "{resource}"')
    client = _client(state)
    try:
        if fmt in ("yaml", "json", "name"):
            if names:
                objs = [await client.get(kind, n, namespace) for n in names]
            else:
                objs, _ = await client.list(kind, namespace, selector)
            if fmt == "name":
                return "".join(f"{kind.singular}/{o['metadata']['name']}\n" for o in objs)
            doc: Any = objs[0] if len(names) == 1 else {"apiVersion": "v1", "kind": "List", "items": objs}
            return yaml.safe_dump(doc, sort_keys=False) if fmt == "yaml" else json.dumps(doc, indent=4) + "\n"
        rows: list[list[Any]] = []
        table: dict[str, Any] = {}
        for name in names or [""]:
            table = await client.table(kind, namespace, name, selector)
            rows.extend(r["cells"] for r in table.get("rows") or [])
        if not rows:
            where = f" in {namespace} namespace" if namespace and kind.namespaced else ""
            return f"No resources found{where}.\n"
        return render_table(table.get("columnDefinitions") or [], rows, wide=fmt == "wide")
    finally:
        await client.close()


def render_table(columns: list[dict[str, Any]], rows: list[list[Any]], wide: bool = False) -> str:
    keep = [i for i, c in enumerate(columns) if wide or not c.get("priority")]
    header = [str(columns[i]["name"]).upper() for i in keep]
    body = [[_cell(row[i]) for i in keep] for row in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=False)]
    lines = ["   ".join(v.ljust(w) for v, w in zip(line, widths, strict=False)).rstrip() for line in [header, *body]]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return "true" if value else "false"  # as Go prints booleans
    return str(value)

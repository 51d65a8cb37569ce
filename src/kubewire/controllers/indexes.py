"""Informer indexes that several controllers share, each under one name.

Controllers in one Manager share informers, so an index registered under the same name by two
controllers is computed once.  Owned objects (pods, ReplicaSets, ControllerRevisions) are found
by their controller's uid, objects without a controller by namespace (for adoption), and pods by
the node they are bound to.
"""

from __future__ import annotations

from typing import Any

from kubewire.controllers.podutil import controller_ref

Obj = dict[str, Any]

CONTROLLER_UID = "controller-uid"
ORPHANS = "orphans"
NODE_NAME = "spec.nodeName"


def controller_uid(obj: Obj) -> list[str]:
    """The uid of the object's controller, if it has one."""
    ref = controller_ref(obj)
    return [str(ref.get("uid", ""))] if ref else []


def orphan_namespace(obj: Obj) -> list[str]:
    """The namespace of an object without a controller (a candidate for adoption)."""
    return [] if controller_ref(obj) else [str(obj["metadata"].get("namespace", ""))]


def node_name(pod: Obj) -> list[str]:
    """The node a pod is bound to (unbound pods are not indexed)."""
    node = (pod.get("spec") or {}).get("nodeName")
    return [str(node)] if node else []

"""Pod admission: upstream's ``DefaultTolerationSeconds`` plugin.

Every new Pod that does not already tolerate them gets tolerations for the
``node.kubernetes.io/not-ready`` and ``node.kubernetes.io/unreachable`` NoExecute taints, bounded
to 300 seconds.  That is what makes the node lifecycle controller evict a dead node's pods five
minutes after it goes away, rather than at once (no toleration) or never.  :func:`install`
plugs the step into a :class:`~kubewire.store.store.Store`'s admission chain.
"""

from __future__ import annotations

from typing import Any

from kubewire.api.registry import Kind, Obj
from kubewire.store.store import Store

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
# Upstream ``--default-not-ready-toleration-seconds`` and ``--default-unreachable-toleration-seconds``.
DEFAULT_TOLERATION_SECONDS = 300


def _covers(toleration: Any, key: str) -> bool:
    """Upstream's test: the toleration names the key (or no key) and NoExecute (or no effect)."""
    if not isinstance(toleration, dict):
        return False
    return toleration.get("key", "") in (key, "") and toleration.get("effect", "") in ("NoExecute", "")


def default_tolerations(pod: Obj, seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
    """Append the missing default tolerations to ``pod`` in place."""
    spec = pod.setdefault("spec", {})
    tolerations = spec.get("tolerations")
    if not isinstance(tolerations, list):
        tolerations = []
    added = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for key in (NOT_READY, UNREACHABLE)
        if not any(_covers(t, key) for t in tolerations)
    ]
    if added:
        spec["tolerations"] = [*tolerations, *added]


def admit(op: str, kind: Kind, new: Obj, old: Obj | None, dry_run: bool) -> None:
    if op == "CREATE" and kind.group == "" and kind.kind == "Pod":
        default_tolerations(new)


def install(store: Store) -> None:
    """Add the step to ``store``'s admission chain (once)."""
    if admit not in store.admission:
        store.admission.append(admit)

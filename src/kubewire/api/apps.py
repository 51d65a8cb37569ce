"""apps/v1 workloads: Deployment, ReplicaSet, StatefulSet and DaemonSet, plus ControllerRevision.

This module owns the object model of the four pod-controller kinds: their upstream defaults
(``pkg/apis/apps/v1/defaults.go``), validation with upstream field paths and wording
(``pkg/apis/apps/validation/validation.go`` plus the selector immutability the registry
strategies add), strategic-merge metadata and the ``kubectl get`` columns
(``pkg/printers/internalversion/printers.go``); and of ControllerRevision, the immutable template
snapshot the StatefulSet and DaemonSet controllers keep for rollouts.  Everything about the embedded pod template is
delegated to :mod:`kubewire.api.pod`, so a Deployment's template is defaulted and validated
exactly like a Pod's spec.  Pure functions over wire-form dicts; unknown fields are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from kubewire.api import meta
from kubewire.api.core import FIELD_IMMUTABLE, GoValue, as_dict, as_int, as_list, is_int
from kubewire.api.fields import FieldError, Path, forbidden, invalid_value, not_supported, required
from kubewire.api.pod import (
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    NAME_COLUMN,
    POD_SPEC_MERGE_KEYS,
    POD_SPEC_RETAIN_KEYS,
    container_cells,
    default_pod_spec,
    go_string_map,
    int_or_string,
    nonnegative,
    prefixed,
    prefixed_paths,
    semantic,
    validate_pod_template,
)
from kubewire.api.registry import Column, FieldGetter, Kind, Obj

# --- Go renderings of selector values ----------------------------------------------------------


def _go_strings(values: Any) -> str:
    if values is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(f'"{v}"' for v in as_list(values)) + "}"


def _go_requirement(req: Any) -> str:
    req = as_dict(req)
    return (
        f'v1.LabelSelectorRequirement{{Key:"{req.get("key", "")}", Operator:"{req.get("operator", "")}", '
        f"Values:{_go_strings(req.get('values'))}}}"
    )


def go_label_selector(sel: Any) -> GoValue:
    """``%#v`` of a ``metav1.LabelSelector``, as kubectl shows it in ``field is immutable`` errors."""
    sel = as_dict(sel)
    expressions = sel.get("matchExpressions")
    if expressions is None:
        rendered = "[]v1.LabelSelectorRequirement(nil)"
    else:
        rendered = "[]v1.LabelSelectorRequirement{" + ", ".join(_go_requirement(r) for r in as_list(expressions)) + "}"
    labels = go_string_map(sel.get("matchLabels"))
    return GoValue(f"v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{rendered}}}")


# --- defaulting --------------------------------------------------------------------------------


def _spec(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    return spec


def _child(parent: dict[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        value = parent[name] = {}
    return value


def _default_template(spec: dict[str, Any]) -> None:
    """The generated defaulter applies the pod-spec defaults to ``spec.template.spec``."""
    default_pod_spec(_child(_child(spec, "template"), "spec"))


def default_deployment(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("replicas", 1)
    strategy = _child(spec, "strategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = _child(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(spec)


def default_replicaset(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("replicas", 1)
    _default_template(spec)


def _default_claim_template(claim: dict[str, Any]) -> None:
    """``SetDefaults_PersistentVolumeClaim`` on a ``volumeClaimTemplates`` entry."""
    _child(claim, "spec").setdefault("volumeMode", "Filesystem")
    _child(claim, "status").setdefault("phase", "Pending")


def default_statefulset(obj: Obj) -> None:
    spec = _spec(obj)
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    strategy = _child(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {})
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        strategy["rollingUpdate"].setdefault("partition", 0)
    retention = _child(spec, "persistentVolumeClaimRetentionPolicy")
    retention.setdefault("whenDeleted", "Retain")
    retention.setdefault("whenScaled", "Retain")
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    for claim in as_list(spec.get("volumeClaimTemplates")):
        if isinstance(claim, dict):
            _default_claim_template(claim)
    _default_template(spec)


def default_daemonset(obj: Obj) -> None:
    spec = _spec(obj)
    strategy = _child(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = _child(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _default_template(spec)


# --- validation: selectors and templates -------------------------------------------------------

SELECTOR_MISMATCH = "`selector` does not match template `labels`"


def _template_labels(spec: dict[str, Any]) -> Any:
    return as_dict(as_dict(spec.get("template")).get("metadata")).get("labels")


def _is_empty_selector(sel: Any) -> bool:
    sel = as_dict(sel)
    return not as_dict(sel.get("matchLabels")) and not as_list(sel.get("matchExpressions"))


def _validate_selector(spec: dict[str, Any], path: Path, kind_word: str) -> tuple[list[FieldError], bool]:
    """Selector required, well formed and non-empty; returns (errors, usable for matching)."""
    sel = spec.get("selector")
    if sel is None:
        return [required(path)], True
    errs = meta.validate_label_selector(sel, path)
    usable = not errs
    if _is_empty_selector(sel):
        errs.append(invalid_value(path, go_label_selector(sel), f"empty selector is invalid for {kind_word}"))
    return errs, usable


def _selector_mismatch(spec: dict[str, Any], path: Path, *, skip_empty: bool) -> list[FieldError]:
    """The template-labels check; a missing selector selects nothing, so it never matches."""
    selector = meta.selector_from_object(spec.get("selector"))
    if skip_empty and selector.empty():
        return []
    labels = _template_labels(spec)
    if selector.matches(as_dict(labels)):
        return []
    return [invalid_value(path.child("template", "metadata", "labels"), go_string_map(labels), SELECTOR_MISMATCH)]


def _workload_restart_rules(spec: dict[str, Any], template_spec_path: Path, owner: str) -> list[FieldError]:
    """Pods of controllers must restart Always and may not carry an activeDeadlineSeconds."""
    template_spec = as_dict(as_dict(spec.get("template")).get("spec"))
    errs: list[FieldError] = []
    policy = template_spec.get("restartPolicy", "")
    if policy != "Always":
        errs.append(not_supported(template_spec_path.child("restartPolicy"), policy, ("Always",)))
    if template_spec.get("activeDeadlineSeconds") is not None:
        detail = f"activeDeadlineSeconds in {owner} is not Supported"
        errs.append(forbidden(template_spec_path.child("activeDeadlineSeconds"), detail))
    return errs


def _validate_replica_template(spec: dict[str, Any], path: Path, kind_word: str) -> list[FieldError]:
    """Selector plus upstream ``ValidatePodTemplateSpecForReplicaSet`` (Deployments and ReplicaSets)."""
    errs, usable = _validate_selector(spec, path.child("selector"), kind_word)
    if not usable:
        return [
            *errs,
            invalid_value(path.child("selector"), go_label_selector(spec.get("selector")), "invalid label selector"),
        ]
    errs.extend(_selector_mismatch(spec, path, skip_empty=True))
    template_path = path.child("template")
    errs.extend(validate_pod_template(spec.get("template"), template_path))
    errs.extend(_workload_restart_rules(spec, template_path.child("spec"), "ReplicaSet"))
    return errs


def _selector_immutable(spec: dict[str, Any], old: Obj | None) -> list[FieldError]:
    """The apps/v1 registry strategies forbid changing ``spec.selector`` (ValidateImmutableField)."""
    if old is None:
        return []
    new_sel, old_sel = spec.get("selector"), as_dict(old.get("spec")).get("selector")
    if meta.selector_from_object(new_sel) == meta.selector_from_object(old_sel):
        return []
    return [invalid_value(Path("spec").child("selector"), go_label_selector(new_sel), "field is immutable")]


# --- validation: int-or-percent and strategies -------------------------------------------------

_PERCENT_MSG = (
    "a valid percent string must be a numeric string followed by an ending '%' "
    "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
)


def _percent(value: Any) -> int | None:
    """The number of a ``"25%"`` string; None for anything else."""
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return int(value[:-1])
    return None


def _int_or_percent_value(value: Any) -> int:
    """Upstream ``getIntOrPercentValue`` (invalid strings count as 0)."""
    if is_int(value):
        return value
    return _percent(value) or 0


def validate_positive_int_or_percent(value: Any, path: Path) -> list[FieldError]:
    if isinstance(value, str):
        return [] if _percent(value) is not None else [invalid_value(path, int_or_string(value), _PERCENT_MSG)]
    if is_int(value):
        return nonnegative(value, path)
    if value is None:
        return []
    return [invalid_value(path, int_or_string(value), "must be an integer or percentage (e.g '5%')")]


def not_more_than_100_percent(value: Any, path: Path) -> list[FieldError]:
    pct = _percent(value)
    if pct is None or pct <= 100:
        return []
    return [invalid_value(path, int_or_string(value), "must not be greater than 100%")]


def _go_strategy(struct: str, rolling_type: str, strategy: dict[str, Any]) -> GoValue:
    rolling = "nil" if strategy.get("rollingUpdate") is None else "0xc000000000"
    return GoValue(
        f'apps.{struct}{{Type:"{strategy.get("type", "")}", RollingUpdate:(*apps.{rolling_type})({rolling})}}'
    )


def _validate_rolling_update_deployment(rolling: dict[str, Any], path: Path) -> list[FieldError]:
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs = validate_positive_int_or_percent(unavailable, path.child("maxUnavailable"))
    errs.extend(validate_positive_int_or_percent(surge, path.child("maxSurge")))
    if _int_or_percent_value(unavailable) == 0 and _int_or_percent_value(surge) == 0:
        detail = "may not be 0 when `maxSurge` is 0"
        errs.append(invalid_value(path.child("maxUnavailable"), int_or_string(unavailable), detail))
    errs.extend(not_more_than_100_percent(unavailable, path.child("maxUnavailable")))
    return errs


def validate_deployment_strategy(strategy: Any, path: Path) -> list[FieldError]:
    strategy = as_dict(strategy)
    kind = strategy.get("type")
    if kind == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            detail = "may not be specified when strategy `type` is 'Recreate'"
            return [forbidden(path.child("rollingUpdate"), detail)]
        return []
    if kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            return [required(path.child("rollingUpdate"), "this should be defaulted and never be nil")]
        return _validate_rolling_update_deployment(as_dict(rolling), path.child("rollingUpdate"))
    value = _go_strategy("DeploymentStrategy", "RollingUpdateDeployment", strategy)
    return [not_supported(path, value, ("Recreate", "RollingUpdate"))]


def _validate_rolling_update_daemonset(rolling: dict[str, Any], path: Path) -> list[FieldError]:
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs = validate_positive_int_or_percent(unavailable, path.child("maxUnavailable"))
    errs.extend(validate_positive_int_or_percent(surge, path.child("maxSurge")))
    errs.extend(not_more_than_100_percent(unavailable, path.child("maxUnavailable")))
    errs.extend(not_more_than_100_percent(surge, path.child("maxSurge")))
    has_unavailable, has_surge = _int_or_percent_value(unavailable) != 0, _int_or_percent_value(surge) != 0
    if has_unavailable and has_surge:
        errs.append(
            invalid_value(
                path.child("maxSurge"), int_or_string(surge), "may not be set when maxUnavailable is non-zero"
            )
        )
    elif not has_unavailable and not has_surge:
        errs.append(required(path.child("maxUnavailable"), "cannot be 0 when maxSurge is 0"))
    return errs


def validate_daemonset_strategy(strategy: Any, path: Path) -> list[FieldError]:
    strategy = as_dict(strategy)
    kind = strategy.get("type")
    if kind == "OnDelete":
        return []
    if kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            return [required(path.child("rollingUpdate"))]
        return _validate_rolling_update_daemonset(as_dict(rolling), path.child("rollingUpdate"))
    value = _go_strategy("DaemonSetUpdateStrategy", "RollingUpdateDaemonSet", strategy)
    return [not_supported(path, value, ("RollingUpdate", "OnDelete"))]


def _go_statefulset_rolling(rolling: dict[str, Any]) -> GoValue:
    unavailable = "nil" if rolling.get("maxUnavailable") is None else "0xc000000000"
    partition = rolling.get("partition", 0)
    return GoValue(
        f"apps.RollingUpdateStatefulSetStrategy{{Partition:{partition}, MaxUnavailable:(*intstr.IntOrString)({unavailable})}}"
    )


def _validate_rolling_update_statefulset(rolling: dict[str, Any], path: Path) -> list[FieldError]:
    errs = nonnegative(rolling.get("partition"), path.child("partition"))
    unavailable = rolling.get("maxUnavailable")
    if unavailable is not None:
        errs.extend(validate_positive_int_or_percent(unavailable, path.child("maxUnavailable")))
        if _int_or_percent_value(unavailable) == 0:
            errs.append(invalid_value(path.child("maxUnavailable"), int_or_string(unavailable), "cannot be 0"))
        errs.extend(not_more_than_100_percent(unavailable, path.child("maxUnavailable")))
    return errs


def validate_statefulset_strategy(strategy: Any, path: Path) -> list[FieldError]:
    strategy = as_dict(strategy)
    kind = strategy.get("type") or ""
    rolling = strategy.get("rollingUpdate")
    if not kind:
        return [required(path)]
    if kind == "OnDelete":
        if rolling is None:
            return []
        detail = "only allowed for updateStrategy 'RollingUpdate'"
        return [invalid_value(path.child("rollingUpdate"), _go_statefulset_rolling(as_dict(rolling)), detail)]
    if kind == "RollingUpdate":
        return (
            []
            if rolling is None
            else _validate_rolling_update_statefulset(as_dict(rolling), path.child("rollingUpdate"))
        )
    value = _go_strategy("StatefulSetUpdateStrategy", "RollingUpdateStatefulSetStrategy", strategy)
    return [invalid_value(path, value, "must be 'RollingUpdate' or 'OnDelete'")]


# --- validation: the four kinds ----------------------------------------------------------------


def _counters(spec: dict[str, Any], path: Path, names: tuple[str, ...]) -> list[FieldError]:
    errs: list[FieldError] = []
    for name in names:
        errs.extend(nonnegative(spec.get(name), path.child(name)))
    return errs


def validate_deployment(obj: Obj, old: Obj | None) -> list[FieldError]:
    """Upstream ``ValidateDeployment`` / ``ValidateDeploymentUpdate`` + selector immutability."""
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    spec, path = as_dict(obj.get("spec")), Path("spec")
    errs.extend(nonnegative(spec.get("replicas"), path.child("replicas")))
    errs.extend(_validate_replica_template(spec, path, "deployment"))
    errs.extend(validate_deployment_strategy(spec.get("strategy"), path.child("strategy")))
    errs.extend(_counters(spec, path, ("minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds")))
    deadline = spec.get("progressDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= (spec.get("minReadySeconds") or 0):
        errs.append(
            invalid_value(path.child("progressDeadlineSeconds"), deadline, "must be greater than minReadySeconds")
        )
    return errs + _selector_immutable(spec, old)


def validate_replicaset(obj: Obj, old: Obj | None) -> list[FieldError]:
    """Upstream ``ValidateReplicaSet`` / ``ValidateReplicaSetUpdate`` + selector immutability.

    Upstream really says "invalid for deployment" in the empty-selector message of ReplicaSets.
    """
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    spec, path = as_dict(obj.get("spec")), Path("spec")
    errs.extend(_counters(spec, path, ("replicas", "minReadySeconds")))
    errs.extend(_validate_replica_template(spec, path, "deployment"))
    return errs + _selector_immutable(spec, old)


_RETENTION_POLICIES = ("Retain", "Delete")


def _validate_statefulset_policies(spec: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    policy = spec.get("podManagementPolicy") or ""
    if not policy:
        errs.append(required(path.child("podManagementPolicy")))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(invalid_value(path.child("podManagementPolicy"), policy, "must be 'OrderedReady' or 'Parallel'"))
    errs.extend(validate_statefulset_strategy(spec.get("updateStrategy"), path.child("updateStrategy")))
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    for name in ("whenDeleted", "whenScaled"):
        if retention is not None and as_dict(retention).get(name) not in _RETENTION_POLICIES:
            value = as_dict(retention).get(name, "")
            errs.append(
                not_supported(path.child("persistentVolumeClaimRetentionPolicy", name), value, _RETENTION_POLICIES)
            )
    return errs


def _validate_statefulset_template(spec: dict[str, Any], path: Path) -> list[FieldError]:
    """Upstream ``ValidatePodTemplateSpecForStatefulSet``: labels and annotations only.

    Upstream leaves the pod spec of a StatefulSet template unvalidated (a long-standing TODO),
    so pods with a bad template fail at creation time, not at apply time.
    """
    errs, usable = _validate_selector(spec, path.child("selector"), "statefulset")
    if not usable:
        return [*errs, invalid_value(path.child("selector"), go_label_selector(spec.get("selector")), "")]
    errs.extend(_selector_mismatch(spec, path, skip_empty=True))
    template_meta = as_dict(as_dict(spec.get("template")).get("metadata"))
    errs.extend(meta.validate_labels(template_meta.get("labels"), path.child("template", "labels")))
    errs.extend(meta.validate_annotations(template_meta.get("annotations"), path.child("template", "annotations")))
    return errs


# The fields of a StatefulSet spec that may change after creation.
_STATEFULSET_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)
STATEFULSET_UPDATE_FORBIDDEN = (
    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
)


def _statefulset_spec_update(spec: dict[str, Any], old: Obj) -> list[FieldError]:
    old_spec = as_dict(old.get("spec"))
    frozen_new = {k: v for k, v in spec.items() if k not in _STATEFULSET_MUTABLE}
    frozen_old = {k: v for k, v in old_spec.items() if k not in _STATEFULSET_MUTABLE}
    if semantic(frozen_new) != semantic(frozen_old):
        return [forbidden(Path("spec"), STATEFULSET_UPDATE_FORBIDDEN)]
    return []


def validate_statefulset(obj: Obj, old: Obj | None) -> list[FieldError]:
    """Upstream ``ValidateStatefulSet`` / ``ValidateStatefulSetUpdate`` (names are DNS labels)."""
    name_fn = meta.is_dns1123_label if old is None else meta.is_dns1123_subdomain
    errs = meta.validate_object_meta(obj, True, name_fn, old)
    spec, path = as_dict(obj.get("spec")), Path("spec")
    errs.extend(_validate_statefulset_policies(spec, path))
    errs.extend(_counters(spec, path, ("replicas", "minReadySeconds")))
    start = as_dict(spec.get("ordinals")).get("start")
    errs.extend(nonnegative(start, path.child("ordinals.start")))
    errs.extend(_validate_statefulset_template(spec, path))
    errs.extend(_workload_restart_rules(spec, path.child("template", "spec"), "StatefulSet"))
    if old is not None:
        errs.extend(_statefulset_spec_update(spec, old))
    return errs


def validate_daemonset(obj: Obj, old: Obj | None) -> list[FieldError]:
    """Upstream ``ValidateDaemonSet`` / ``ValidateDaemonSetUpdate`` + selector immutability.

    As upstream, a missing selector is not reported on its own: it selects nothing, so the
    template labels never match it.
    """
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    spec, path = as_dict(obj.get("spec")), Path("spec")
    selector = spec.get("selector")
    selector_errs = meta.validate_label_selector(selector, path.child("selector"))
    errs.extend(selector_errs)
    if not selector_errs:
        errs.extend(_selector_mismatch(spec, path, skip_empty=False))
    if selector is not None and _is_empty_selector(selector):
        errs.append(
            invalid_value(
                path.child("selector"), go_label_selector(selector), "empty selector is invalid for daemonset"
            )
        )
    template_path = path.child("template")
    errs.extend(validate_pod_template(spec.get("template"), template_path))
    errs.extend(_workload_restart_rules(spec, template_path.child("spec"), "DaemonSet"))
    errs.extend(_counters(spec, path, ("minReadySeconds", "templateGeneration")))
    errs.extend(validate_daemonset_strategy(spec.get("updateStrategy"), path.child("updateStrategy")))
    errs.extend(nonnegative(spec.get("revisionHistoryLimit"), path.child("revisionHistoryLimit")))
    return errs + _selector_immutable(spec, old)


def validate_controller_revision(obj: Obj, old: Obj | None) -> list[FieldError]:
    """Upstream ``ValidateControllerRevisionCreate`` / ``ValidateControllerRevisionUpdate``:
    ``data`` is required and can never change; ``revision`` is non-negative."""
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    if obj.get("data") is None:
        errs.append(required(Path("data")))
    errs.extend(nonnegative(obj.get("revision"), Path("revision")))
    if old is not None and obj.get("data") != old.get("data"):
        errs.append(invalid_value(Path("data"), GoValue("runtime.RawExtension{...}"), FIELD_IMMUTABLE))
    return errs


# --- strategic merge metadata ------------------------------------------------------------------

TEMPLATE_SPEC = "spec.template.spec"
_STATUS_CONDITIONS = {"status.conditions": "type"}
WORKLOAD_MERGE_KEYS: dict[str, str] = {**prefixed(TEMPLATE_SPEC, POD_SPEC_MERGE_KEYS), **_STATUS_CONDITIONS}
WORKLOAD_RETAIN_KEYS: frozenset[str] = prefixed_paths(TEMPLATE_SPEC, POD_SPEC_RETAIN_KEYS)


# --- table printing ----------------------------------------------------------------------------


def _int(value: Any) -> int:
    return as_int(value) or 0


def _template_spec(obj: Obj) -> dict[str, Any]:
    return as_dict(as_dict(as_dict(obj.get("spec")).get("template")).get("spec"))


DEPLOYMENT_COLUMNS = (
    NAME_COLUMN,
    Column("Ready", "string", "", "Number of the pod with ready state"),
    Column(
        "Up-to-date",
        "string",
        "",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    Column(
        "Available",
        "string",
        "",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    Column(
        "Selector",
        "string",
        "",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
        1,
    ),
)


def deployment_row(obj: Obj, now: datetime) -> list[Any]:
    """Upstream ``printDeployment`` (with the wide cells)."""
    spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
    names, images = container_cells(_template_spec(obj))
    return [
        meta.name_of(obj),
        f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        meta.age(obj, now),
        names,
        images,
        meta.selector_string(spec.get("selector")),
    ]


REPLICASET_COLUMNS = (
    NAME_COLUMN,
    Column("Desired", "integer", "", "Replicas is the number of desired replicas."),
    Column("Current", "integer", "", "Replicas is the most recently observed number of replicas."),
    Column("Ready", "integer", "", "The number of ready replicas for this replica set."),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    Column("Selector", "string", "", "Selector is a label query over pods that should match the replica count.", 1),
)


def replicaset_row(obj: Obj, now: datetime) -> list[Any]:
    """Upstream ``printReplicaSet`` (with the wide cells)."""
    spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
    names, images = container_cells(_template_spec(obj))
    return [
        meta.name_of(obj),
        _int(spec.get("replicas")),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        meta.age(obj, now),
        names,
        images,
        meta.format_selector(spec.get("selector")),
    ]


STATEFULSET_COLUMNS = (
    NAME_COLUMN,
    Column("Ready", "string", "", "Number of the pod with ready state"),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
)


def statefulset_row(obj: Obj, now: datetime) -> list[Any]:
    """Upstream ``printStatefulSet`` (with the wide cells)."""
    spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
    names, images = container_cells(_template_spec(obj))
    ready = f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}"
    return [meta.name_of(obj), ready, meta.age(obj, now), names, images]


DAEMONSET_COLUMNS = (
    NAME_COLUMN,
    Column("Desired", "integer", "", "The total number of nodes that should be running the daemon pod."),
    Column(
        "Current",
        "integer",
        "",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    Column(
        "Ready",
        "integer",
        "",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    ),
    Column("Up-to-date", "integer", "", "The total number of nodes that are running updated daemon pod"),
    Column(
        "Available",
        "integer",
        "",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
    ),
    Column(
        "Node Selector", "string", "", "NodeSelector is a selector which must be true for the pod to fit on a node."
    ),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    Column("Selector", "string", "", "A label query over pods that are managed by the daemon set.", 1),
)


def daemonset_row(obj: Obj, now: datetime) -> list[Any]:
    """Upstream ``printDaemonSet`` (with the wide cells)."""
    spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
    template_spec = _template_spec(obj)
    names, images = container_cells(template_spec)
    counters = (
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberReady",
        "updatedNumberScheduled",
        "numberAvailable",
    )
    return [
        meta.name_of(obj),
        *(_int(status.get(c)) for c in counters),
        meta.format_labels(as_dict(template_spec.get("nodeSelector"))),
        meta.age(obj, now),
        names,
        images,
        meta.format_selector(spec.get("selector")),
    ]


CONTROLLER_REVISION_COLUMNS = (
    NAME_COLUMN,
    Column("Controller", "string", "", "Controller of the object"),
    Column("Revision", "string", "", "Revision indicates the revision of the state represented by Data."),
    AGE_COLUMN,
)


def controller_revision_row(obj: Obj, now: datetime) -> list[Any]:
    """Upstream ``printControllerRevision``: the controller as ``statefulset.apps/web``."""
    controller = "<none>"
    for ref in as_list(as_dict(obj.get("metadata")).get("ownerReferences")):
        ref = as_dict(ref)
        if ref.get("controller") is True:
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            kind = str(ref.get("kind", "")) + (f".{group}" if group else "")
            controller = f"{kind.lower()}/{ref.get('name', '')}"
            break
    return [meta.name_of(obj), controller, _int(obj.get("revision")), meta.age(obj, now)]


def _status_replicas(obj: Obj) -> str:
    return str(_int(as_dict(obj.get("status")).get("replicas")))


REPLICASET_FIELD_SELECTORS: dict[str, FieldGetter] = {"status.replicas": _status_replicas}


# --- kinds -------------------------------------------------------------------------------------


def _workload(
    kind: str,
    short: str,
    subresources: frozenset[str],
    functions: tuple[Callable[[Obj], None], Callable[[Obj, Obj | None], list[FieldError]]],
    table: tuple[tuple[Column, ...], Callable[[Obj, datetime], list[Any]]],
    retain_extra: frozenset[str] = frozenset(),
    field_selectors: dict[str, FieldGetter] | None = None,
) -> Kind:
    return Kind(
        group="apps",
        version="v1",
        kind=kind,
        plural=kind.lower() + "s",
        namespaced=True,
        short_names=(short,),
        categories=("all",),
        subresources=subresources,
        default=functions[0],
        validate=functions[1],
        merge_keys=WORKLOAD_MERGE_KEYS,
        retain_keys=WORKLOAD_RETAIN_KEYS | retain_extra,
        columns=table[0],
        row=table[1],
        field_selectors=field_selectors or {},
        tracks_generation=True,
    )


_SCALABLE = frozenset({"status", "scale"})

DEPLOYMENT = _workload(
    "Deployment",
    "deploy",
    _SCALABLE,
    (default_deployment, validate_deployment),
    (DEPLOYMENT_COLUMNS, deployment_row),
    retain_extra=frozenset({"spec.strategy"}),
)
REPLICASET = _workload(
    "ReplicaSet",
    "rs",
    _SCALABLE,
    (default_replicaset, validate_replicaset),
    (REPLICASET_COLUMNS, replicaset_row),
    field_selectors=REPLICASET_FIELD_SELECTORS,
)
STATEFULSET = _workload(
    "StatefulSet",
    "sts",
    _SCALABLE,
    (default_statefulset, validate_statefulset),
    (STATEFULSET_COLUMNS, statefulset_row),
)
DAEMONSET = _workload(
    "DaemonSet",
    "ds",
    frozenset({"status"}),
    (default_daemonset, validate_daemonset),
    (DAEMONSET_COLUMNS, daemonset_row),
)

CONTROLLER_REVISION = Kind(
    group="apps",
    version="v1",
    kind="ControllerRevision",
    plural="controllerrevisions",
    namespaced=True,
    validate=validate_controller_revision,
    columns=CONTROLLER_REVISION_COLUMNS,
    row=controller_revision_row,
    tracks_generation=False,
)

# The four pod controllers (they share template defaulting, merge keys and the "all" category).
WORKLOAD_KINDS: list[Kind] = [DEPLOYMENT, REPLICASET, STATEFULSET, DAEMONSET]
KINDS: list[Kind] = [*WORKLOAD_KINDS, CONTROLLER_REVISION]

"""core/v1 Pod: defaulting, validation, strategic-merge metadata and table printing.

This module owns the Pod object model and everything about a *pod spec* that other kinds embed
(Deployments, ReplicaSets, StatefulSets and DaemonSets reuse :func:`default_pod_spec`,
:func:`validate_pod_template` and :data:`POD_SPEC_MERGE_KEYS`).  The rules follow upstream
``pkg/apis/core/v1/defaults.go``, ``pkg/apis/core/validation/validation.go`` and
``pkg/printers/internalversion/printers.go`` so that kubectl users see the same defaults, the same
error sentences and the same ``kubectl get pods`` columns as against a real cluster.  Everything
here is a pure function over wire-form dicts; unknown fields are never dropped.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from kubewire.api import meta
from kubewire.api.core import GoValue, as_dict, as_list, is_int
from kubewire.api.fields import (
    FieldError,
    Path,
    duplicate,
    forbidden,
    invalid_value,
    not_found,
    not_supported,
    required,
)
from kubewire.api.netvalid import (
    inclusive_range_error,
    is_valid_port_name,
    is_valid_port_num,
    validate_port_num_or_name,
)
from kubewire.api.registry import Column, FieldGetter, Kind, Obj

# --- small shared helpers --------------------------------------------------------------------


def go_string_map(value: Any) -> GoValue:
    """``%#v`` of a ``map[string]string``: ``map[string]string{"app":"web"}`` (keys sorted)."""
    if value is None:
        return GoValue("map[string]string(nil)")
    items = ", ".join(f"{json.dumps(str(k))}:{json.dumps(str(v))}" for k, v in sorted(as_dict(value).items()))
    return GoValue("map[string]string{" + items + "}")


def int_or_string(value: Any) -> GoValue:
    """An ``intstr.IntOrString`` as its ``String()`` prints it (``25%``, ``1``)."""
    return GoValue(str(value))


def prefixed(prefix: str, table: Mapping[str, str]) -> dict[str, str]:
    """Re-root a merge-key table (``{"containers": "name"}`` -> ``{"spec.containers": "name"}``)."""
    return {f"{prefix}.{path}": key for path, key in table.items()}


def prefixed_paths(prefix: str, paths: Iterable[str]) -> frozenset[str]:
    """Re-root a set of paths (retainKeys / primitive merge lists)."""
    return frozenset(f"{prefix}.{path}" for path in paths)


def nonnegative(value: Any, path: Path) -> list[FieldError]:
    """Upstream ``ValidateNonnegativeField``."""
    if is_int(value) and value < 0:
        return [invalid_value(path, value, "must be greater than or equal to 0")]
    return []


# --- defaulting --------------------------------------------------------------------------------

DEFAULT_TERMINATION_GRACE_PERIOD = 30
DEFAULT_SCHEDULER = "default-scheduler"
_FILE_MODE_DEFAULT = 420  # 0644
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def image_tag(image: str) -> str:
    """The tag of an image reference; ``latest`` when it has neither tag nor digest."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.split(":", 1)[1]
    return "" if digest else "latest"


def _default_http_get(handler: dict[str, Any]) -> None:
    http = handler.get("httpGet")
    if isinstance(http, dict):
        http.setdefault("path", "/")
        http.setdefault("scheme", "HTTP")


def _default_probe(probe: dict[str, Any]) -> None:
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    _default_http_get(probe)


def _default_field_ref(holder: Any) -> None:
    ref = as_dict(holder).get("fieldRef")
    if isinstance(ref, dict):
        ref.setdefault("apiVersion", "v1")


def default_container(container: dict[str, Any]) -> None:
    """``SetDefaults_Container`` plus the defaulters of its ports, env, probes and hooks."""
    if not container.get("imagePullPolicy"):
        tag = image_tag(str(container.get("image", "")))
        container["imagePullPolicy"] = "Always" if tag == "latest" else "IfNotPresent"
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    for port in as_list(container.get("ports")):
        if isinstance(port, dict) and not port.get("protocol"):
            port["protocol"] = "TCP"
    for env in as_list(container.get("env")):
        _default_field_ref(as_dict(env).get("valueFrom"))
    for name in _PROBES:
        probe = container.get(name)
        if isinstance(probe, dict):
            _default_probe(probe)
    for hook in as_dict(container.get("lifecycle")).values():
        if isinstance(hook, dict):
            _default_http_get(hook)


def _default_items_field_refs(source: dict[str, Any]) -> None:
    for item in as_list(source.get("items")):
        _default_field_ref(item)


def default_volume(volume: dict[str, Any]) -> None:
    """``SetDefaults_Volume`` and the per-source defaulters (file modes, hostPath type)."""
    if not any(k != "name" for k in volume):
        volume["emptyDir"] = {}
    for source_name in ("secret", "configMap", "downwardAPI", "projected"):
        source = volume.get(source_name)
        if isinstance(source, dict):
            source.setdefault("defaultMode", _FILE_MODE_DEFAULT)
    if isinstance(volume.get("downwardAPI"), dict):
        _default_items_field_refs(volume["downwardAPI"])
    for projection in as_list(as_dict(volume.get("projected")).get("sources")):
        if isinstance(as_dict(projection).get("downwardAPI"), dict):
            _default_items_field_refs(projection["downwardAPI"])
    host_path = volume.get("hostPath")
    if isinstance(host_path, dict):
        host_path.setdefault("type", "")


def default_pod_spec(spec: dict[str, Any]) -> None:
    """``SetDefaults_PodSpec`` and the container/volume defaulters, in place (pods and templates)."""
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = DEFAULT_TERMINATION_GRACE_PERIOD
    if not spec.get("schedulerName"):
        spec["schedulerName"] = DEFAULT_SCHEDULER
    for list_name in _CONTAINER_LISTS:
        for container in as_list(spec.get(list_name)):
            if isinstance(container, dict):
                default_container(container)
    for volume in as_list(spec.get("volumes")):
        if isinstance(volume, dict):
            default_volume(volume)


def _default_requests_from_limits(container: dict[str, Any]) -> None:
    resources = container.get("resources")
    if not isinstance(resources, dict) or not isinstance(resources.get("limits"), dict):
        return
    requests = resources.get("requests")
    if not isinstance(requests, dict):
        requests = resources["requests"] = {}
    for name, quantity in resources["limits"].items():
        requests.setdefault(name, quantity)


def _default_host_network_ports(containers: list[Any]) -> None:
    for container in containers:
        for port in as_list(as_dict(container).get("ports")):
            if isinstance(port, dict) and not port.get("hostPort"):
                port["hostPort"] = port.get("containerPort", 0)


def default_pod(obj: Obj) -> None:
    """``SetDefaults_Pod``: the pod-spec defaults plus the ones that only materialize in Pods."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    default_pod_spec(spec)
    for list_name in ("containers", "initContainers"):
        for container in as_list(spec.get(list_name)):
            if isinstance(container, dict):
                _default_requests_from_limits(container)
    if spec.get("hostNetwork"):
        _default_host_network_ports(as_list(spec.get("containers")))
        _default_host_network_ports(as_list(spec.get("initContainers")))
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True


# --- validation: names, ports, env -------------------------------------------------------------


def is_relaxed_env_var_name(name: str) -> list[str]:
    """Upstream ``IsRelaxedEnvVarName`` (the default since relaxed env validation went GA)."""
    if any(ord(ch) > 126 or ord(ch) < 32 or ch == "=" for ch in name):
        return ["a valid environment variable name must consist only of printable ASCII characters other than '='"]
    return []


def _dns_label_errors(value: str, path: Path) -> list[FieldError]:
    return [invalid_value(path, value, msg) for msg in meta.is_dns1123_label(value)]


def _subdomain_errors(value: str, path: Path) -> list[FieldError]:
    return [invalid_value(path, value, msg) for msg in meta.is_dns1123_subdomain(value)]


SUPPORTED_PORT_PROTOCOLS = ("SCTP", "TCP", "UDP")


def validate_container_ports(ports: list[Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        ip = path.index(i)
        name = str(port.get("name") or "")
        if name:
            msgs = is_valid_port_name(name)
            errs.extend(invalid_value(ip.child("name"), name, m) for m in msgs)
            if not msgs and name in names:
                errs.append(duplicate(ip.child("name"), name))
            names.add(name)
        container_port = port.get("containerPort") or 0
        if not container_port:
            errs.append(required(ip.child("containerPort")))
        elif is_int(container_port):
            errs.extend(
                invalid_value(ip.child("containerPort"), container_port, m) for m in is_valid_port_num(container_port)
            )
        host_port = port.get("hostPort") or 0
        if is_int(host_port) and host_port:
            errs.extend(invalid_value(ip.child("hostPort"), host_port, m) for m in is_valid_port_num(host_port))
        protocol = port.get("protocol") or ""
        if not protocol:
            errs.append(required(ip.child("protocol")))
        elif protocol not in SUPPORTED_PORT_PROTOCOLS:
            errs.append(not_supported(ip.child("protocol"), protocol, SUPPORTED_PORT_PROTOCOLS))
    return errs


_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")


def _validate_env_value_from(env: dict[str, Any], path: Path) -> list[FieldError]:
    value_from = env.get("valueFrom")
    if value_from is None:
        return []
    count = sum(1 for s in _ENV_SOURCES if as_dict(value_from).get(s) is not None)
    if count == 0:
        return [
            invalid_value(
                path, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
            )
        ]
    if env.get("value"):
        return [invalid_value(path, "", "may not be specified when `value` is not empty")]
    if count > 1:
        return [invalid_value(path, "", "may not have more than one field specified at a time")]
    return []


def validate_env(env_vars: list[Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, env in enumerate(env_vars):
        env = as_dict(env)
        ip = path.index(i)
        name = str(env.get("name") or "")
        if not name:
            errs.append(required(ip.child("name")))
        else:
            errs.extend(invalid_value(ip.child("name"), name, m) for m in is_relaxed_env_var_name(name))
        errs.extend(_validate_env_value_from(env, ip.child("valueFrom")))
    return errs


# --- validation: resources ---------------------------------------------------------------------

QUANTITY_FORMAT = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY = re.compile(QUANTITY_FORMAT)
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_EXPONENT = re.compile(r"[eE]([-+]?[0-9]+)")
_STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})


def parse_quantity(value: Any) -> Decimal | None:
    """A ``resource.Quantity`` string (``500m``, ``1Gi``, ``2e3``) as a Decimal; None if malformed."""
    text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    match = _QUANTITY.fullmatch(text)
    if not match:
        return None
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        return None
    suffix = match.group(2)
    if suffix in _BINARY:
        return number * (1 << _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    exp = _EXPONENT.fullmatch(suffix)
    return number.scaleb(int(exp.group(1))) if exp else None


def _validate_resource_name(name: str, path: Path) -> list[FieldError]:
    errs = [invalid_value(path, name, m) for m in meta.is_qualified_name(name)]
    if "/" not in name and name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
        errs.append(invalid_value(path, name, "must be a standard resource for containers"))
    return errs


def _validate_quantities(values: dict[str, Any], path: Path) -> tuple[list[FieldError], dict[str, Decimal]]:
    errs: list[FieldError] = []
    parsed: dict[str, Decimal] = {}
    for name, raw in values.items():
        kp = path.key(str(name))
        errs.extend(_validate_resource_name(str(name), kp))
        quantity = parse_quantity(raw)
        if quantity is None:
            errs.append(
                invalid_value(kp, str(raw), f"quantities must match the regular expression '{QUANTITY_FORMAT}'")
            )
            continue
        if quantity < 0:
            errs.append(invalid_value(kp, str(raw), "must be greater than or equal to 0"))
        parsed[str(name)] = quantity
    return errs, parsed


def validate_resources(resources: Any, path: Path) -> list[FieldError]:
    """Upstream ``ValidateContainerResourceRequirements`` (names, quantities, requests <= limits)."""
    resources = as_dict(resources)
    limit_errs, limits = _validate_quantities(as_dict(resources.get("limits")), path.child("limits"))
    req_path = path.child("requests")
    request_errs, requests = _validate_quantities(as_dict(resources.get("requests")), req_path)
    errs = limit_errs + request_errs
    raw_limits = as_dict(resources.get("limits"))
    raw_requests = as_dict(resources.get("requests"))
    for name, request in requests.items():
        if name in limits and request > limits[name]:
            detail = f"must be less than or equal to {name} limit of {raw_limits[name]}"
            errs.append(invalid_value(req_path, str(raw_requests[name]), detail))
    return errs


# --- validation: probes and handlers -----------------------------------------------------------

_SUPPORTED_SCHEMES = ("HTTP", "HTTPS")


def _validate_http_get(http: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    if not http.get("path"):
        errs.append(required(path.child("path")))
    errs.extend(validate_port_num_or_name(http.get("port"), path.child("port")))
    if http.get("scheme", "") not in _SUPPORTED_SCHEMES:
        errs.append(not_supported(path.child("scheme"), http.get("scheme", ""), _SUPPORTED_SCHEMES))
    return errs


def _validate_action(kind: str, action: dict[str, Any], path: Path) -> list[FieldError]:
    if kind == "exec":
        return [] if as_list(action.get("command")) else [required(path.child("command"))]
    if kind == "httpGet":
        return _validate_http_get(action, path)
    if kind in ("tcpSocket", "grpc"):
        return validate_port_num_or_name(action.get("port"), path.child("port"))
    return []


def validate_handler(handler: dict[str, Any], kinds: tuple[str, ...], path: Path) -> list[FieldError]:
    """Upstream ``validateHandler``: exactly one handler type, each well formed."""
    errs: list[FieldError] = []
    seen = 0
    for kind in kinds:
        action = handler.get(kind)
        if action is None:
            continue
        if seen:
            errs.append(forbidden(path.child(kind), "may not specify more than 1 handler type"))
            continue
        seen += 1
        errs.extend(_validate_action(kind, as_dict(action), path.child(kind)))
    if not seen:
        errs.append(required(path, "must specify a handler type"))
    return errs


_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_LIFECYCLE_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")
_PROBE_COUNTERS = ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold")


def validate_probe(probe: Any, name: str, path: Path) -> list[FieldError]:
    """Upstream ``validate{Liveness,Readiness,Startup}Probe``."""
    if probe is None:
        return []
    probe = as_dict(probe)
    errs = validate_handler(probe, _PROBE_HANDLERS, path)
    for counter in _PROBE_COUNTERS:
        errs.extend(nonnegative(probe.get(counter), path.child(counter)))
    if name in ("livenessProbe", "startupProbe") and probe.get("successThreshold", 1) != 1:
        errs.append(invalid_value(path.child("successThreshold"), probe.get("successThreshold"), "must be 1"))
    grace = probe.get("terminationGracePeriodSeconds")
    if grace is not None and name == "readinessProbe":
        errs.append(
            invalid_value(path.child("terminationGracePeriodSeconds"), grace, "must not be set for readinessProbes")
        )
    elif is_int(grace) and grace <= 0:
        errs.append(invalid_value(path.child("terminationGracePeriodSeconds"), grace, "must be greater than 0"))
    return errs


def _validate_lifecycle(lifecycle: Any, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    for hook in ("postStart", "preStop"):
        handler = as_dict(lifecycle).get(hook)
        if handler is not None:
            errs.extend(validate_handler(as_dict(handler), _LIFECYCLE_HANDLERS, path.child(hook)))
    return errs


# --- validation: containers and volumes --------------------------------------------------------

_TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _validate_enum(value: Any, valid: tuple[str, ...], path: Path) -> list[FieldError]:
    """The ``switch`` upstream uses for enums: empty -> Required, unknown -> NotSupported."""
    if not value:
        return [required(path)]
    if value not in valid:
        return [not_supported(path, value, valid)]
    return []


def _validate_volume_mounts(mounts: list[Any], volumes: set[str], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, mount in enumerate(mounts):
        mount = as_dict(mount)
        ip = path.index(i)
        name = str(mount.get("name") or "")
        if not name:
            errs.append(required(ip.child("name")))
        if name not in volumes:
            errs.append(not_found(ip.child("name"), name))
        mount_path = str(mount.get("mountPath") or "")
        if not mount_path:
            errs.append(required(ip.child("mountPath")))
        if mount_path in seen:
            errs.append(invalid_value(ip.child("mountPath"), mount_path, "must be unique"))
        seen.add(mount_path)
    return errs


def _validate_container_common(container: dict[str, Any], volumes: set[str], path: Path) -> list[FieldError]:
    """Upstream ``validateContainerCommon``: what every kind of container must satisfy."""
    errs: list[FieldError] = []
    name = str(container.get("name") or "")
    if not name:
        errs.append(required(path.child("name")))
    else:
        errs.extend(_dns_label_errors(name, path.child("name")))
    if not container.get("image"):
        errs.append(required(path.child("image")))
    errs.extend(
        _validate_enum(
            container.get("terminationMessagePolicy"),
            _TERMINATION_MESSAGE_POLICIES,
            path.child("terminationMessagePolicy"),
        )
    )
    errs.extend(validate_container_ports(as_list(container.get("ports")), path.child("ports")))
    errs.extend(validate_env(as_list(container.get("env")), path.child("env")))
    errs.extend(_validate_volume_mounts(as_list(container.get("volumeMounts")), volumes, path.child("volumeMounts")))
    errs.extend(_validate_enum(container.get("imagePullPolicy"), _PULL_POLICIES, path.child("imagePullPolicy")))
    errs.extend(validate_resources(container.get("resources"), path.child("resources")))
    return errs


def _validate_probes_and_hooks(container: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    if container.get("lifecycle") is not None:
        errs.extend(_validate_lifecycle(container["lifecycle"], path.child("lifecycle")))
    for probe in _PROBES:
        errs.extend(validate_probe(container.get(probe), probe, path.child(probe)))
    return errs


def _host_port_conflicts(containers: list[Any], path: Path) -> list[FieldError]:
    """Upstream ``AccumulateUniqueHostPorts``: ``protocol/hostIP/hostPort`` must be unique."""
    errs: list[FieldError] = []
    seen: set[str] = set()
    for ci, container in enumerate(containers):
        for pi, port in enumerate(as_list(as_dict(container).get("ports"))):
            port = as_dict(port)
            if not port.get("hostPort"):
                continue
            key = f"{port.get('protocol', '')}/{port.get('hostIP', '')}/{port['hostPort']}"
            if key in seen:
                errs.append(duplicate(path.index(ci).child("ports").index(pi).child("hostPort"), key))
            seen.add(key)
    return errs


def validate_containers(containers: list[Any], volumes: set[str], path: Path) -> list[FieldError]:
    """Upstream ``validateContainers`` for the regular containers of a pod spec."""
    if not containers:
        return [required(path)]
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, container in enumerate(containers):
        container = as_dict(container)
        ip = path.index(i)
        errs.extend(_validate_container_common(container, volumes, ip))
        name = container.get("name", "")
        if name in names:
            errs.append(duplicate(ip.child("name"), name))
        names.add(name)
        errs.extend(_validate_probes_and_hooks(container, ip))
        if container.get("restartPolicy") is not None:
            errs.append(forbidden(ip.child("restartPolicy"), "may not be set for non-init containers"))
    errs.extend(_host_port_conflicts(containers, path))
    return errs


_INIT_FORBIDDEN = "may not be set for init containers without restartPolicy=Always"


def _validate_init_only(container: dict[str, Any], path: Path) -> list[FieldError]:
    policy = container.get("restartPolicy")
    errs: list[FieldError] = []
    if policy is not None and policy != "Always":
        errs.append(not_supported(path.child("restartPolicy"), policy, ("Always",)))
    if policy == "Always":
        return errs + _validate_probes_and_hooks(container, path)
    for field_name in ("lifecycle", *_PROBES):
        if container.get(field_name) is not None:
            errs.append(forbidden(path.child(field_name), _INIT_FORBIDDEN))
    return errs


def validate_init_containers(init: list[Any], regular: list[Any], volumes: set[str], path: Path) -> list[FieldError]:
    """Upstream ``validateInitContainers``: names unique across init and regular containers."""
    errs: list[FieldError] = []
    names = {as_dict(c).get("name", "") for c in regular}
    for i, container in enumerate(init):
        container = as_dict(container)
        ip = path.index(i)
        errs.extend(_validate_container_common(container, volumes, ip))
        errs.extend(_validate_init_only(container, ip))
        name = container.get("name", "")
        if name in names:
            errs.append(duplicate(ip.child("name"), name))
        elif name:
            names.add(name)
        errs.extend(_host_port_conflicts([container], path))
    return errs


def validate_volumes(volumes: list[Any], path: Path) -> tuple[list[FieldError], set[str]]:
    """Upstream ``ValidateVolumes`` (names and exactly one source); returns the valid names too."""
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, volume in enumerate(volumes):
        volume = as_dict(volume)
        ip = path.index(i)
        name = str(volume.get("name") or "")
        name_errs = [required(ip.child("name"))] if not name else _dns_label_errors(name, ip.child("name"))
        if name in names:
            name_errs.append(duplicate(ip.child("name"), name))
        sources = [k for k in volume if k != "name" and volume[k] is not None]
        if not sources:
            errs.append(required(ip, "must specify a volume type"))
        errs.extend(forbidden(ip.child(extra), "may not specify more than 1 volume type") for extra in sources[1:])
        errs.extend(name_errs)
        if not name_errs:
            names.add(name)
    return errs, names


# --- validation: pod spec ----------------------------------------------------------------------

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_TOLERATION_OPERATORS = ("Equal", "Exists")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_MAX_INT32 = 2**31 - 1


def _validate_toleration(toleration: dict[str, Any], path: Path) -> list[FieldError]:
    """Upstream ``ValidateTolerations`` for one entry."""
    errs: list[FieldError] = []
    key = str(toleration.get("key") or "")
    operator = toleration.get("operator") or ""
    if key:
        errs.extend(invalid_value(path.child("key"), key, m) for m in meta.is_qualified_name(key))
    elif operator != "Exists":
        detail = 'operator must be Exists when `key` is empty, which means "match all values and all keys"'
        errs.append(invalid_value(path.child("operator"), operator, detail))
    effect = toleration.get("effect") or ""
    if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
        errs.append(
            invalid_value(path.child("effect"), effect, "effect must be 'NoExecute' when `tolerationSeconds` is set")
        )
    value = str(toleration.get("value") or "")
    if operator in ("", "Equal"):
        msgs = meta.is_label_value(value)
        if msgs:
            errs.append(invalid_value(path.child("operator"), value, ";".join(msgs)))
    elif operator == "Exists":
        if value:
            rendered = GoValue(json.dumps(toleration, sort_keys=True))
            errs.append(
                invalid_value(path.child("operator"), rendered, "value must be empty when `operator` is 'Exists'")
            )
    else:
        errs.append(not_supported(path.child("operator"), operator, _TOLERATION_OPERATORS))
    if effect and effect not in _TAINT_EFFECTS:
        errs.append(not_supported(path.child("effect"), effect, _TAINT_EFFECTS))
    return errs


def _validate_host_network_ports(spec: dict[str, Any], path: Path, resource_is_pod: bool) -> list[FieldError]:
    """Upstream ``validatePodHostNetworkDeps``: hostPort must match containerPort on hostNetwork."""
    if not spec.get("hostNetwork"):
        return []
    errs: list[FieldError] = []
    for ci, container in enumerate(as_list(spec.get("containers"))):
        for pi, port in enumerate(as_list(as_dict(container).get("ports"))):
            host, container_port = as_dict(port).get("hostPort") or 0, as_dict(port).get("containerPort") or 0
            if (resource_is_pod or host) and host != container_port:
                p = path.child("containers").index(ci).child("ports").index(pi).child("hostPort")
                errs.append(invalid_value(p, host, "must match `containerPort` when `hostNetwork` is true"))
    return errs


def _validate_dns_config(spec: dict[str, Any], path: Path) -> list[FieldError]:
    if spec.get("dnsPolicy") != "None":
        return []
    config = spec.get("dnsConfig")
    if config is None:
        return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
    if not as_list(as_dict(config).get("nameservers")):
        return [
            required(path.child("nameservers"), "must provide at least one DNS nameserver when `dnsPolicy` is None")
        ]
    return []


def _validate_scheduling_fields(spec: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    for name in ("serviceAccountName", "nodeName", "priorityClassName"):
        if spec.get(name):
            errs.extend(_subdomain_errors(str(spec[name]), path.child(name)))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not is_int(deadline) or not 1 <= deadline <= _MAX_INT32):
        errs.append(invalid_value(path.child("activeDeadlineSeconds"), deadline, inclusive_range_error(1, _MAX_INT32)))
    for name in ("hostname", "subdomain"):
        if spec.get(name):
            errs.extend(_dns_label_errors(str(spec[name]), path.child(name)))
    for i, toleration in enumerate(as_list(spec.get("tolerations"))):
        errs.extend(_validate_toleration(as_dict(toleration), path.child("tolerations").index(i)))
    for i, gate in enumerate(as_list(spec.get("readinessGates"))):
        condition = str(as_dict(gate).get("conditionType", ""))
        gp = path.child("readinessGates").index(i).child("conditionType")
        errs.extend(invalid_value(gp, condition, m) for m in meta.is_qualified_name(condition))
    return errs


def validate_pod_spec(spec: Any, path: Path, *, resource_is_pod: bool = False) -> list[FieldError]:
    """Upstream ``ValidatePodSpec`` (after defaulting): containers, volumes, policies, scheduling."""
    spec = as_dict(spec)
    errs: list[FieldError] = []
    if spec.get("terminationGracePeriodSeconds") is None:
        errs.append(required(path.child("terminationGracePeriodSeconds")))
    volume_errs, volumes = validate_volumes(as_list(spec.get("volumes")), path.child("volumes"))
    errs.extend(volume_errs)
    containers = as_list(spec.get("containers"))
    errs.extend(validate_containers(containers, volumes, path.child("containers")))
    init = as_list(spec.get("initContainers"))
    errs.extend(validate_init_containers(init, containers, volumes, path.child("initContainers")))
    errs.extend(_validate_host_network_ports(spec, path, resource_is_pod))
    errs.extend(_validate_enum(spec.get("restartPolicy"), RESTART_POLICIES, path.child("restartPolicy")))
    errs.extend(_validate_enum(spec.get("dnsPolicy"), DNS_POLICIES, path.child("dnsPolicy")))
    errs.extend(meta.validate_labels(spec.get("nodeSelector"), path.child("nodeSelector")))
    for i, secret in enumerate(as_list(spec.get("imagePullSecrets"))):
        if set(as_dict(secret)) - {"name"}:
            errs.append(
                invalid_value(
                    path.child("imagePullSecrets").index(i), GoValue(json.dumps(secret)), "only name may be set"
                )
            )
    errs.extend(_validate_dns_config(spec, path.child("dnsConfig")))
    errs.extend(_validate_scheduling_fields(spec, path))
    return errs


def validate_pod_template(template: Any, path: Path) -> list[FieldError]:
    """Upstream ``ValidatePodTemplateSpec``: template labels/annotations and the pod spec.

    Note the upstream quirk kept here: template labels are reported at ``<path>.labels``.
    """
    template = as_dict(template)
    template_meta = as_dict(template.get("metadata"))
    errs = meta.validate_labels(template_meta.get("labels"), path.child("labels"))
    errs.extend(meta.validate_annotations(template_meta.get("annotations"), path.child("annotations")))
    spec_path = path.child("spec")
    errs.extend(validate_pod_spec(template.get("spec"), spec_path))
    if as_list(as_dict(template.get("spec")).get("ephemeralContainers")):
        errs.append(
            forbidden(spec_path.child("ephemeralContainers"), "ephemeral containers not allowed in pod template")
        )
    return errs


# --- validation: pod updates -------------------------------------------------------------------

UPDATABLE_POD_SPEC_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)
POD_UPDATE_FORBIDDEN = "pod updates may not change fields other than " + ",".join(UPDATABLE_POD_SPEC_FIELDS)


def semantic(value: Any) -> Any:
    """A value with Go zero values dropped, so ``[]``/``{}``/``""``/absent compare equal as upstream."""
    if isinstance(value, dict):
        pruned = {k: semantic(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, "", [], {}, False, 0)}
    if isinstance(value, list):
        return [semantic(v) for v in value]
    return value


def _validate_container_updates(new: list[Any], old: list[Any], path: Path) -> tuple[list[FieldError], bool]:
    if len(new) != len(old):
        return [forbidden(path, "pod updates may not add or remove containers")], True
    errs: list[FieldError] = []
    for i, container in enumerate(new):
        image = str(as_dict(container).get("image") or "")
        if not image:
            errs.append(required(path.index(i).child("image")))
        elif image.strip() != image:
            errs.append(
                invalid_value(path.index(i).child("image"), image, "must not have leading or trailing whitespace")
            )
    return errs, False


def _validate_deadline_update(new: Any, old: Any, path: Path) -> list[FieldError]:
    if new is None:
        return (
            [] if old is None else [invalid_value(path, None, "must not update from a positive integer to nil value")]
        )
    if not is_int(new) or not 0 <= new <= _MAX_INT32:
        return [invalid_value(path, new, inclusive_range_error(0, _MAX_INT32))]
    if isinstance(old, int) and old < new:
        return [invalid_value(path, new, "must be less than or equal to previous value")]
    return []


def _validate_tolerations_only_added(new: list[Any], old: list[Any], path: Path) -> list[FieldError]:
    def strip(t: Any) -> Any:
        return semantic({k: v for k, v in as_dict(t).items() if k != "tolerationSeconds"})

    remaining = [strip(t) for t in new]
    for toleration in old:
        if strip(toleration) not in remaining:
            return [forbidden(path, "existing toleration can not be modified except its tolerationSeconds")]
    return []


def _spec_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A short, human-readable diff of the top-level pod spec fields that changed."""
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = semantic(old.get(key)), semantic(new.get(key))
        if before != after:
            lines.append(f"- {key}: {json.dumps(before, sort_keys=True)}")
            lines.append(f"+ {key}: {json.dumps(after, sort_keys=True)}")
    return "\n".join(lines)


def _munge_updatable(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A copy of the new spec with every field a user may update reset to its old value."""
    munged = copy.deepcopy(new)
    for list_name in ("containers", "initContainers"):
        for mc, oc in zip(as_list(munged.get(list_name)), as_list(old.get(list_name)), strict=False):
            if isinstance(mc, dict):
                mc["image"] = as_dict(oc).get("image")
    for name in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        munged[name] = old.get(name)
    grace_old, grace_new = old.get("terminationGracePeriodSeconds"), munged.get("terminationGracePeriodSeconds")
    if isinstance(grace_old, int) and grace_old < 0 and grace_new == 1:
        munged["terminationGracePeriodSeconds"] = grace_old
    return munged


def validate_pod_spec_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """Upstream ``ValidatePodUpdate``'s spec rules: only images, deadline, tolerations, grace."""
    path = Path("spec")
    errs: list[FieldError] = []
    for list_name in ("containers", "initContainers"):
        list_errs, stop = _validate_container_updates(
            as_list(new.get(list_name)), as_list(old.get(list_name)), path.child(list_name)
        )
        errs.extend(list_errs)
        if stop:
            return errs
    deadline_errs = _validate_deadline_update(
        new.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds"), path.child("activeDeadlineSeconds")
    )
    if deadline_errs and new.get("activeDeadlineSeconds") is not None:
        return errs + deadline_errs
    errs.extend(deadline_errs)
    errs.extend(
        _validate_tolerations_only_added(
            as_list(new.get("tolerations")), as_list(old.get("tolerations")), path.child("tolerations")
        )
    )
    munged = _munge_updatable(new, old)
    if semantic(munged) != semantic(old):
        errs.append(forbidden(path, POD_UPDATE_FORBIDDEN + "\n" + _spec_diff(old, munged)))
    return errs


def validate_pod(obj: Obj, old: Obj | None) -> list[FieldError]:
    """Upstream ``ValidatePodCreate`` / ``ValidatePodUpdate``."""
    errs = meta.validate_object_meta(obj, True, meta.is_dns1123_subdomain, old)
    spec = as_dict(obj.get("spec"))
    errs.extend(validate_pod_spec(spec, Path("spec"), resource_is_pod=True))
    if old is None:
        if as_list(spec.get("ephemeralContainers")):
            errs.append(forbidden(Path("spec").child("ephemeralContainers"), "cannot be set on create"))
        if spec.get("nodeName") and as_list(spec.get("schedulingGates")):
            errs.append(
                forbidden(Path("spec").child("nodeName"), "cannot be set until all schedulingGates have been cleared")
            )
        return errs
    return errs + validate_pod_spec_update(spec, as_dict(old.get("spec")))


# --- QoS (for the PrepareForCreate that sets status.qosClass) ----------------------------------


def qos_class(spec: Mapping[str, Any]) -> str:
    """Upstream ``GetPodQOS``: ``Guaranteed``, ``Burstable`` or ``BestEffort``."""
    containers = as_list(spec.get("containers")) + as_list(spec.get("initContainers"))
    any_set = False
    guaranteed = True
    for container in containers:
        resources = as_dict(as_dict(container).get("resources"))
        requests, limits = as_dict(resources.get("requests")), as_dict(resources.get("limits"))
        compute = {"cpu", "memory"}
        if any(parse_quantity(v) for k, v in {**requests, **limits}.items() if k in compute):
            any_set = True
        if not compute <= set(limits) or any(
            parse_quantity(requests.get(k, limits[k])) != parse_quantity(limits[k]) for k in compute
        ):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# --- strategic merge metadata ------------------------------------------------------------------

_CONTAINER_MERGE_KEYS = {
    "ports": "containerPort",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
}


def _container_keys(list_name: str) -> dict[str, str]:
    return {list_name: "name", **prefixed(list_name, _CONTAINER_MERGE_KEYS)}


# patchMergeKey tags of core/v1 PodSpec, relative to the spec.  Tolerations, readinessGates,
# envFrom and resizePolicy carry no tags upstream, so they are replaced atomically.
POD_SPEC_MERGE_KEYS: dict[str, str] = {
    **_container_keys("containers"),
    **_container_keys("initContainers"),
    **_container_keys("ephemeralContainers"),
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "schedulingGates": "name",
    "resourceClaims": "name",
}
# patchStrategy=merge,retainKeys entries of PodSpec (relative to the spec).
POD_SPEC_RETAIN_KEYS: frozenset[str] = frozenset({"volumes", "resourceClaims"})

POD_STATUS_MERGE_KEYS: dict[str, str] = {
    "conditions": "type",
    "podIPs": "ip",
    "hostIPs": "ip",
    "resourceClaimStatuses": "name",
}


# --- table printing ----------------------------------------------------------------------------

NAME_COLUMN = Column(
    "Name",
    "string",
    "name",
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically.",
)
AGE_COLUMN = Column(
    "Age",
    "string",
    "",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
)
CONTAINERS_COLUMN = Column("Containers", "string", "", "Names of each container in the template.", 1)
IMAGES_COLUMN = Column("Images", "string", "", "Images referenced by each container in the template.", 1)

POD_COLUMNS = (
    NAME_COLUMN,
    Column("Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", "string", "", "The aggregate status of the containers in this pod."),
    Column(
        "Restarts",
        "string",
        "",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE_COLUMN,
    Column("IP", "string", "", "podIP address allocated to the pod. Routable at least within the cluster.", 1),
    Column("Node", "string", "", "NodeName indicates in which node this pod is scheduled.", 1),
    Column(
        "Nominated Node",
        "string",
        "",
        "nominatedNodeName is set only when this pod preempts other pods on the node.",
        1,
    ),
    Column(
        "Readiness Gates", "string", "", "If specified, all readiness gates will be evaluated for pod readiness.", 1
    ),
)


def container_cells(spec: Mapping[str, Any]) -> tuple[str, str]:
    """Upstream ``layoutContainerCells``: comma-joined container names and images."""
    containers = [as_dict(c) for c in as_list(spec.get("containers"))]
    return ",".join(str(c.get("name", "")) for c in containers), ",".join(str(c.get("image", "")) for c in containers)


@dataclass
class _PodTally:
    """What :func:`pod_row` accumulates while walking the container statuses."""

    reason: str
    restarts: int = 0
    ready: int = 0
    last_restart: datetime | None = None


def _note_restart(tally: _PodTally, status: Mapping[str, Any]) -> None:
    tally.restarts += int(status.get("restartCount") or 0)
    terminated = as_dict(as_dict(status.get("lastState")).get("terminated"))
    finished = meta.parse_time(terminated.get("finishedAt"))
    if finished and (tally.last_restart is None or finished > tally.last_restart):
        tally.last_restart = finished


def _condition_true(status: Mapping[str, Any], kind: str) -> bool:
    return any(
        as_dict(c).get("type") == kind and as_dict(c).get("status") == "True" for c in as_list(status.get("conditions"))
    )


def _terminated_reason(terminated: Mapping[str, Any], prefix: str = "") -> str:
    if terminated.get("reason"):
        return prefix + str(terminated["reason"])
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


def _init_container_reason(status: Mapping[str, Any], index: int, total: int) -> str:
    state = as_dict(status.get("state"))
    terminated, waiting = state.get("terminated"), as_dict(state.get("waiting"))
    if terminated is not None:
        return _terminated_reason(as_dict(terminated), "Init:")
    if waiting.get("reason") and waiting.get("reason") != "PodInitializing":
        return "Init:" + str(waiting["reason"])
    return f"Init:{index}/{total}"


def _walk_init_containers(
    spec: Mapping[str, Any], status: Mapping[str, Any], tally: _PodTally
) -> tuple[bool, _PodTally]:
    """The init-container half of upstream ``printPod``; returns (initializing, sidecar tally)."""
    sidecars = {
        as_dict(c).get("name")
        for c in as_list(spec.get("initContainers"))
        if as_dict(c).get("restartPolicy") == "Always"
    }
    sidecar_tally = _PodTally(reason="")
    total = len(as_list(spec.get("initContainers")))
    for i, raw in enumerate(as_list(status.get("initContainerStatuses"))):
        cs = as_dict(raw)
        _note_restart(tally, cs)
        if cs.get("name") in sidecars:
            _note_restart(sidecar_tally, cs)
        terminated = as_dict(as_dict(cs.get("state")).get("terminated"))
        if "terminated" in as_dict(cs.get("state")) and terminated.get("exitCode", 0) == 0:
            continue
        if cs.get("name") in sidecars and cs.get("started"):
            tally.ready += 1 if cs.get("ready") else 0
            continue
        tally.reason = _init_container_reason(cs, i, total)
        return True, sidecar_tally
    return False, sidecar_tally


def _walk_containers(status: Mapping[str, Any], tally: _PodTally) -> None:
    """The regular-container half of upstream ``printPod`` (walked last to first)."""
    has_running = False
    for raw in reversed(as_list(status.get("containerStatuses"))):
        cs = as_dict(raw)
        _note_restart(tally, cs)
        state = as_dict(cs.get("state"))
        waiting = as_dict(state.get("waiting"))
        if waiting.get("reason"):
            tally.reason = str(waiting["reason"])
        elif state.get("terminated") is not None:
            tally.reason = _terminated_reason(as_dict(state["terminated"]))
        elif cs.get("ready") and state.get("running") is not None:
            has_running = True
            tally.ready += 1
    if tally.reason == "Completed" and has_running:
        tally.reason = "Running" if _condition_true(status, "Ready") else "NotReady"


def _pod_status_text(obj: Obj, tally: _PodTally) -> str:
    status = as_dict(obj.get("status"))
    deleting = meta.meta(obj).get("deletionTimestamp") is not None
    if deleting and status.get("reason") == "NodeLost":
        return "Unknown"
    if deleting and status.get("phase") not in ("Succeeded", "Failed"):
        return "Terminating"
    return tally.reason


def _pod_tally(obj: Obj) -> _PodTally:
    spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
    reason = str(status.get("reason") or status.get("phase") or "")
    for condition in as_list(status.get("conditions")):
        if as_dict(condition).get("type") == "PodScheduled" and as_dict(condition).get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    tally = _PodTally(reason=reason)
    initializing, sidecars = _walk_init_containers(spec, status, tally)
    if not initializing or _condition_true(status, "Initialized"):
        tally.restarts, tally.last_restart = sidecars.restarts, sidecars.last_restart
        _walk_containers(status, tally)
    return tally


def _readiness_gates(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    gates = as_list(spec.get("readinessGates"))
    if not gates:
        return "<none>"
    conditions = {as_dict(c).get("type"): as_dict(c).get("status") for c in as_list(status.get("conditions"))}
    true = sum(1 for g in gates if conditions.get(as_dict(g).get("conditionType")) == "True")
    return f"{true}/{len(gates)}"


def pod_row(obj: Obj, now: datetime) -> list[Any]:
    """Upstream ``printPod`` with the wide cells (the server always sends them)."""
    spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
    tally = _pod_tally(obj)
    total = len(as_list(spec.get("containers"))) + sum(
        1 for c in as_list(spec.get("initContainers")) if as_dict(c).get("restartPolicy") == "Always"
    )
    restarts = str(tally.restarts)
    if tally.restarts and tally.last_restart is not None:
        restarts += f" ({meta.human_duration((now - tally.last_restart).total_seconds())} ago)"
    pod_ips = as_list(status.get("podIPs"))
    ip = str(as_dict(pod_ips[0]).get("ip", "")) if pod_ips else ""
    return [
        meta.name_of(obj),
        f"{tally.ready}/{total}",
        _pod_status_text(obj, tally),
        restarts,
        meta.age(obj, now),
        ip or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        _readiness_gates(spec, status),
    ]


# --- field selectors ---------------------------------------------------------------------------


def _spec_field(name: str) -> FieldGetter:
    def get(obj: Obj) -> str:
        return str(as_dict(obj.get("spec")).get(name) or "")

    return get


def _status_field(name: str) -> FieldGetter:
    def get(obj: Obj) -> str:
        return str(as_dict(obj.get("status")).get(name) or "")

    return get


def _host_network(obj: Obj) -> str:
    return "true" if as_dict(obj.get("spec")).get("hostNetwork") else "false"


def _pod_ip(obj: Obj) -> str:
    status = as_dict(obj.get("status"))
    ips = as_list(status.get("podIPs"))
    return str(as_dict(ips[0]).get("ip", "")) if ips else str(status.get("podIP") or "")


POD_FIELD_SELECTORS: dict[str, FieldGetter] = {
    "spec.nodeName": _spec_field("nodeName"),
    "spec.restartPolicy": _spec_field("restartPolicy"),
    "spec.schedulerName": _spec_field("schedulerName"),
    "spec.serviceAccountName": _spec_field("serviceAccountName"),
    "spec.hostNetwork": _host_network,
    "status.phase": _status_field("phase"),
    "status.podIP": _pod_ip,
    "status.nominatedNodeName": _status_field("nominatedNodeName"),
}


def validate_binding(binding: Obj) -> list[FieldError]:
    """Upstream ``ValidatePodBinding``: the target must be a Node (or name no kind) and be named."""
    target = as_dict(binding.get("target"))
    errs: list[FieldError] = []
    if target.get("kind") and target["kind"] != "Node":
        errs.append(not_supported(Path("target").child("kind"), target["kind"], ["Node", "<empty>"]))
    if not target.get("name"):
        errs.append(required(Path("target").child("name")))
    return errs


POD = Kind(
    group="",
    version="v1",
    kind="Pod",
    plural="pods",
    namespaced=True,
    short_names=("po",),
    categories=("all",),
    subresources=frozenset({"status", "log"}),
    default=default_pod,
    validate=validate_pod,
    merge_keys={**prefixed("spec", POD_SPEC_MERGE_KEYS), **prefixed("status", POD_STATUS_MERGE_KEYS)},
    retain_keys=prefixed_paths("spec", POD_SPEC_RETAIN_KEYS),
    columns=POD_COLUMNS,
    row=pod_row,
    field_selectors=POD_FIELD_SELECTORS,
    tracks_generation=True,
    initial_status={"phase": "Pending"},
)

KINDS: list[Kind] = [POD]

"""core/v1 Namespace, Node, Secret, ConfigMap, Event, ServiceAccount and Endpoints."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from kubewire.api import core
from kubewire.api.registry import Kind

NOW = datetime(2024, 1, 2, tzinfo=UTC)
CREATED = "2024-01-01T19:00:00Z"  # five hours before NOW


def obj(kind: str, name: str, namespace: str | None = "default", **fields: Any) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "creationTimestamp": CREATED}
    if namespace is not None:
        md["namespace"] = namespace
    return {"apiVersion": "v1", "kind": kind, "metadata": md, **fields}


def messages(kind: Kind, o: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [str(e) for e in kind.validate(o, old)]


def row(kind: Kind, o: dict[str, Any]) -> list[Any]:
    assert kind.row is not None
    return kind.row(o, NOW)


def test_kind_table() -> None:
    summary = {k.kind: (k.plural, k.namespaced, k.short_names, k.tracks_generation) for k in core.KINDS}
    assert summary == {
        "Namespace": ("namespaces", False, ("ns",), False),
        "Node": ("nodes", False, ("no",), False),
        "Secret": ("secrets", True, (), False),
        "ConfigMap": ("configmaps", True, ("cm",), False),
        "Event": ("events", True, ("ev",), False),
        "ServiceAccount": ("serviceaccounts", True, ("sa",), False),
        "Endpoints": ("endpoints", True, ("ep",), False),
    }
    assert core.NAMESPACE.subresources == frozenset({"status"}) == core.NODE.subresources
    assert core.NAMESPACE.initial_status == {"phase": "Active"}


# --- Namespace -------------------------------------------------------------------------------------


def test_namespace_defaults() -> None:
    ns = obj("Namespace", "team-a", namespace=None)
    core.NAMESPACE.default(ns)
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert messages(core.NAMESPACE, ns) == []


def test_namespace_name_is_a_dns_label() -> None:
    ns = obj("Namespace", "team.a", namespace=None)
    assert messages(core.NAMESPACE, ns) == ['metadata.name: Invalid value: "team.a": must not contain dots']


def test_namespace_finalizer_names() -> None:
    ns = obj("Namespace", "a", namespace=None, spec={"finalizers": ["foo"]})
    assert messages(core.NAMESPACE, ns) == [
        'spec.finalizers: Invalid value: "foo": name is neither a standard finalizer name nor is it fully qualified'
    ]


def test_namespace_status_phase_rules() -> None:
    old = obj("Namespace", "a", namespace=None, status={"phase": "Active"})
    new = copy.deepcopy(old)
    new["status"]["phase"] = "Terminating"
    assert messages(core.NAMESPACE, new, old) == [
        "status.Phase: Invalid value: \"Terminating\": may only be 'Active' if `deletionTimestamp` is empty"
    ]


def test_namespace_row_and_selector() -> None:
    ns = obj("Namespace", "default", namespace=None, status={"phase": "Active"})
    assert row(core.NAMESPACE, ns) == ["default", "Active", "5h"]
    assert core.NAMESPACE.field_selectors["status.phase"](ns) == "Active"


# --- Node ------------------------------------------------------------------------------------------

NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "kind-control-plane",
        "creationTimestamp": CREATED,
        "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "kind-control-plane"},
    },
    "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
    "status": {
        "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": "kind"}],
        "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
        "nodeInfo": {
            "kubeletVersion": "v1.30.0",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "kernelVersion": "6.1.0-18-amd64",
            "containerRuntimeVersion": "containerd://1.7.15",
        },
    },
}


def test_node_row() -> None:
    assert row(core.NODE, copy.deepcopy(NODE)) == [
        "kind-control-plane",
        "Ready",
        "control-plane",
        "5h",
        "v1.30.0",
        "172.18.0.2",
        "<none>",
        "Debian GNU/Linux 12 (bookworm)",
        "6.1.0-18-amd64",
        "containerd://1.7.15",
    ]


@pytest.mark.parametrize(
    ("conditions", "unschedulable", "expected"),
    [
        ([{"type": "Ready", "status": "False"}], False, "NotReady"),
        ([{"type": "Ready", "status": "Unknown"}], True, "NotReady,SchedulingDisabled"),
        ([], False, "Unknown"),
        ([{"type": "Ready", "status": "True"}], True, "Ready,SchedulingDisabled"),
    ],
)
def test_node_status_cell(conditions: list[Any], unschedulable: bool, expected: str) -> None:
    node = copy.deepcopy(NODE)
    node["status"]["conditions"] = conditions
    node["spec"]["unschedulable"] = unschedulable
    assert core.node_status(node) == expected


def test_node_roles_and_missing_info() -> None:
    node = obj("Node", "n1", namespace=None)
    node["metadata"]["labels"] = {"kubernetes.io/role": "worker", "node-role.kubernetes.io/infra": ""}
    assert row(core.NODE, node)[2] == "infra,worker"
    assert row(core.NODE, obj("Node", "n2", namespace=None))[7:] == ["<unknown>", "<unknown>", "<unknown>"]


def test_node_validation() -> None:
    assert messages(core.NODE, copy.deepcopy(NODE)) == []
    node = copy.deepcopy(NODE)
    node["spec"]["taints"] = [{"key": "dedicated", "value": "gpu", "effect": "NoRun"}]
    assert messages(core.NODE, node) == [
        'metadata.taints[0].effect: Unsupported value: "NoRun": supported values: "NoSchedule", '
        '"PreferNoSchedule", "NoExecute"'
    ]
    new = copy.deepcopy(NODE)
    new["spec"]["podCIDRs"] = ["10.244.1.0/24"]
    assert messages(core.NODE, new, copy.deepcopy(NODE)) == [
        'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid'
    ]


def test_node_defaults_allocatable() -> None:
    node = obj("Node", "n1", namespace=None, status={"capacity": {"cpu": "4"}})
    core.NODE.default(node)
    assert node["status"]["allocatable"] == {"cpu": "4"}


# --- Secret ----------------------------------------------------------------------------------------


def test_secret_defaults_type_and_folds_string_data() -> None:
    secret = obj("Secret", "db", stringData={"password": "s3cr3t"}, data={"user": "YWRtaW4="})
    core.SECRET.default(secret)
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"user": "YWRtaW4=", "password": "czNjcjN0"}
    assert "stringData" not in secret
    assert messages(core.SECRET, secret) == []


def test_secret_data_must_be_base64() -> None:
    secret = obj("Secret", "db", type="Opaque", data={"password": "s3cr3t!"})
    assert messages(core.SECRET, secret) == [
        'data[password]: Invalid value: "<secret contents redacted>": illegal base64 data at input byte 6'
    ]


def test_secret_keys_are_config_keys() -> None:
    secret = obj("Secret", "db", type="Opaque", data={"my key": "YQ=="})
    assert messages(core.SECRET, secret) == [
        "data[my key]: Invalid value: \"my key\": a valid config key must consist of alphanumeric characters, '-', "
        "'_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
    ]


def test_secret_type_rules() -> None:
    tls = obj("Secret", "cert", type="kubernetes.io/tls", data={"tls.crt": "YQ=="})
    assert messages(core.SECRET, tls) == ["data[tls.key]: Required value"]
    token = obj("Secret", "tok", type="kubernetes.io/service-account-token")
    assert messages(core.SECRET, token) == ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
    docker = obj("Secret", "reg", type="kubernetes.io/dockerconfigjson", data={".dockerconfigjson": "e30="})
    assert messages(core.SECRET, docker) == []


def test_secret_immutable() -> None:
    old = obj("Secret", "db", type="Opaque", immutable=True, data={"a": "YQ=="})
    new = copy.deepcopy(old)
    new["data"]["a"] = "Yg=="
    assert messages(core.SECRET, new, old) == ["data: Forbidden: field is immutable when `immutable` is set"]
    new = copy.deepcopy(old)
    new["immutable"] = False
    assert messages(core.SECRET, new, old) == ["immutable: Forbidden: field is immutable when `immutable` is set"]
    new = copy.deepcopy(old)
    new["type"] = "kubernetes.io/basic-auth"
    new["data"] = {"a": "YQ==", "username": "YQ=="}
    assert messages(core.SECRET, new, old)[0] == 'type: Invalid value: "kubernetes.io/basic-auth": field is immutable'


def test_secret_row_and_selector() -> None:
    secret = obj("Secret", "db", type="Opaque", data={"a": "YQ==", "b": "Yg=="})
    assert row(core.SECRET, secret) == ["db", "Opaque", 2, "5h"]
    assert [c.name for c in core.SECRET.columns] == ["Name", "Type", "Data", "Age"]
    assert core.SECRET.field_selectors["type"](secret) == "Opaque"


@pytest.mark.parametrize(
    ("text", "offset"),
    [("YWJj", None), ("YWJjZA==", None), ("YWJj\nZA==", None), ("abc", 0), ("YWJjZA", 4), ("YW=j", 2), ("YQ==YQ==", 4)],
)
def test_base64_offsets_match_go(text: str, offset: int | None) -> None:
    assert core.base64_error_offset(text) == offset


# --- ConfigMap -------------------------------------------------------------------------------------


def test_config_map_rules() -> None:
    cm = obj("ConfigMap", "game-config", data={"game.properties": "enemies=aliens"}, binaryData={"icon": "AAE="})
    assert messages(core.CONFIG_MAP, cm) == []
    assert row(core.CONFIG_MAP, cm) == ["game-config", 2, "5h"]
    cm["binaryData"]["game.properties"] = "AAE="
    assert messages(core.CONFIG_MAP, cm) == [
        'data[game.properties]: Invalid value: "game.properties": duplicate of key present in binaryData'
    ]
    bad = obj("ConfigMap", "c", data={"..": "x"})
    assert messages(core.CONFIG_MAP, bad)[-1] == "data[..]: Invalid value: \"..\": must not be '..'"


def test_config_map_immutable() -> None:
    old = obj("ConfigMap", "c", immutable=True, data={"a": "1"})
    new = copy.deepcopy(old)
    new["data"]["a"] = "2"
    assert messages(core.CONFIG_MAP, new, old) == ["data: Forbidden: field is immutable when `immutable` is set"]


# --- Event -----------------------------------------------------------------------------------------

EVENT = {
    "apiVersion": "v1",
    "kind": "Event",
    "metadata": {"name": "web.17a8c2f1d0e3b4a5", "namespace": "default", "creationTimestamp": CREATED},
    "involvedObject": {
        "kind": "Pod",
        "namespace": "default",
        "name": "web",
        "uid": "1b2c",
        "apiVersion": "v1",
        "resourceVersion": "42",
        "fieldPath": "spec.containers{nginx}",
    },
    "reason": "Pulled",
    "message": 'Successfully pulled image "nginx:1.25"\n',
    "source": {"component": "kubelet", "host": "kind-control-plane"},
    "firstTimestamp": "2024-01-01T23:00:00Z",
    "lastTimestamp": "2024-01-01T23:59:30Z",
    "count": 3,
    "type": "Normal",
}


def test_event_row() -> None:
    assert row(core.EVENT, copy.deepcopy(EVENT)) == [
        "30s",
        "Normal",
        "Pulled",
        "pod/web",
        "spec.containers{nginx}",
        "kubelet, kind-control-plane",
        'Successfully pulled image "nginx:1.25"',
        "60m",
        3,
        "web.17a8c2f1d0e3b4a5",
    ]
    assert [c.name for c in core.EVENT.columns if c.priority == 0] == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Message",
    ]


def test_event_row_new_style() -> None:
    event = copy.deepcopy(EVENT)
    for key in ("firstTimestamp", "lastTimestamp", "count", "source"):
        del event[key]
    event.update(eventTime="2024-01-01T23:59:50.123456Z", reportingComponent="kubewire-proxy")
    cells = row(core.EVENT, event)
    assert (cells[0], cells[5], cells[7], cells[8]) == ("10s", "kubewire-proxy", "10s", 1)


def test_event_field_selectors() -> None:
    sel = core.EVENT.field_selectors
    expected = {
        "involvedObject.kind": "Pod",
        "involvedObject.namespace": "default",
        "involvedObject.name": "web",
        "involvedObject.uid": "1b2c",
        "involvedObject.apiVersion": "v1",
        "involvedObject.resourceVersion": "42",
        "involvedObject.fieldPath": "spec.containers{nginx}",
        "reason": "Pulled",
        "reportingComponent": "",
        "source": "kubelet",
        "type": "Normal",
    }
    assert {k: sel[k](EVENT) for k in expected} == expected


def test_event_validation() -> None:
    assert messages(core.EVENT, copy.deepcopy(EVENT)) == []
    event = copy.deepcopy(EVENT)
    event["involvedObject"]["namespace"] = "other"
    assert messages(core.EVENT, event) == [
        'involvedObject.namespace: Invalid value: "other": does not match event.namespace'
    ]
    event = copy.deepcopy(EVENT)
    event["eventTime"] = "2024-01-01T23:59:50.000000Z"
    assert messages(core.EVENT, event) == [
        "reportingComponent: Required value",
        'reportingComponent: Invalid value: "": name part must be non-empty',
        "reportingInstance: Required value",
        "action: Required value",
    ]


# --- ServiceAccount --------------------------------------------------------------------------------


def test_service_account() -> None:
    sa = obj("ServiceAccount", "default", secrets=[{"name": "default-token"}])
    assert messages(core.SERVICE_ACCOUNT, sa) == []
    assert row(core.SERVICE_ACCOUNT, sa) == ["default", 1, "5h"]
    assert core.SERVICE_ACCOUNT.merge_keys == {"secrets": "name"}


# --- Endpoints -------------------------------------------------------------------------------------


def endpoints(*subsets: dict[str, Any]) -> dict[str, Any]:
    return obj("Endpoints", "web", subsets=list(subsets))


def addresses(*ips: str) -> list[dict[str, str]]:
    return [{"ip": ip} for ip in ips]


def test_endpoints_default_protocol() -> None:
    ep = endpoints({"addresses": addresses("10.0.0.1"), "ports": [{"port": 80}]})
    core.ENDPOINTS.default(ep)
    assert ep["subsets"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]
    assert messages(core.ENDPOINTS, ep) == []


def test_endpoints_cell() -> None:
    ep = endpoints({"addresses": addresses("10.0.0.1", "10.0.0.2"), "ports": [{"port": 80}]})
    assert row(core.ENDPOINTS, ep) == ["web", "10.0.0.1:80,10.0.0.2:80", "5h"]
    ep = endpoints({"addresses": addresses(*(f"10.0.0.{i}" for i in range(1, 6))), "ports": [{"port": 80}]})
    assert core.format_endpoints(ep) == "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
    assert core.format_endpoints(endpoints()) == "<none>"
    headless = endpoints({"addresses": addresses("10.0.0.1", "fd00::1")})
    assert core.format_endpoints(headless) == "10.0.0.1,fd00::1"
    v6 = endpoints({"addresses": addresses("fd00::1"), "ports": [{"port": 443}]})
    assert core.format_endpoints(v6) == "[fd00::1]:443"


def test_endpoints_validation() -> None:
    ep = endpoints({"ports": [{"port": 80, "protocol": "TCP"}]})
    assert messages(core.ENDPOINTS, ep) == [
        "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"
    ]
    ep = endpoints({"addresses": addresses("127.0.0.1"), "ports": [{"port": 80, "protocol": "TCP"}]})
    assert messages(core.ENDPOINTS, ep) == [
        'subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)'
    ]
    two_ports = [{"port": 80, "protocol": "TCP"}, {"name": "https", "port": 443, "protocol": "TCP"}]
    ep = endpoints({"addresses": addresses("10.0.0.1"), "ports": two_ports})
    assert messages(core.ENDPOINTS, ep) == ["subsets[0].ports[0].name: Required value"]

"""discovery.k8s.io/v1 EndpointSlice: defaulting, upstream-worded validation and table rows."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import yaml

from kubewire.api import discovery
from kubewire.api.discovery import ENDPOINT_SLICE

NOW = datetime(2024, 1, 2, tzinfo=UTC)

# The example on the Kubernetes "EndpointSlices" documentation page.
DOC = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: example-abc
  labels:
    kubernetes.io/service-name: example
addressType: IPv4
ports:
  - name: http
    protocol: TCP
    port: 80
endpoints:
  - addresses:
      - "10.1.2.3"
    conditions:
      ready: true
    hostname: pod-1
    nodeName: node-1
    zone: us-west2-a
"""


def load(**fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(DOC)
    obj["metadata"].update(namespace="default", creationTimestamp="2024-01-01T23:59:00Z")
    obj.update(fields)
    ENDPOINT_SLICE.default(obj)
    return obj


def messages(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [str(e) for e in ENDPOINT_SLICE.validate(obj, old)]


def row(obj: dict[str, Any]) -> list[Any]:
    assert ENDPOINT_SLICE.row is not None
    return ENDPOINT_SLICE.row(obj, NOW)


def test_kind_metadata() -> None:
    assert ENDPOINT_SLICE.api_version == "discovery.k8s.io/v1"
    assert (ENDPOINT_SLICE.plural, ENDPOINT_SLICE.namespaced, ENDPOINT_SLICE.short_names) == (
        "endpointslices",
        True,
        (),
    )
    assert [c.name for c in ENDPOINT_SLICE.columns] == ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    assert discovery.KINDS == [ENDPOINT_SLICE]


def test_docs_example_is_valid() -> None:
    assert messages(load()) == []


def test_defaults_port_name_and_protocol_only() -> None:
    obj = load(ports=[{"port": 53}])
    assert obj["ports"] == [{"port": 53, "name": "", "protocol": "TCP"}]
    assert obj["endpoints"][0]["conditions"] == {"ready": True}


def test_address_type_required_supported_and_immutable() -> None:
    assert messages(load(addressType="")) == ["addressType: Required value"]
    assert messages(load(addressType="IP")) == [
        'addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6"'
    ]
    old = load()
    new = copy.deepcopy(old)
    new["addressType"] = "IPv6"
    new["endpoints"][0]["addresses"] = ["fd00::1"]
    assert messages(new, old) == ['addressType: Invalid value: "IPv6": field is immutable']


def test_endpoint_addresses() -> None:
    obj = load(endpoints=[{"addresses": []}])
    assert messages(obj) == ["endpoints[0].addresses: Required value: must contain at least 1 address"]
    obj = load(endpoints=[{"addresses": ["fd00::1"]}])
    assert messages(obj) == ['endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address']
    obj = load(endpoints=[{"addresses": ["169.254.169.254"]}])
    assert messages(obj) == [
        'endpoints[0].addresses[0]: Invalid value: "169.254.169.254": '
        "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
    ]


def test_fqdn_addresses() -> None:
    assert messages(load(addressType="FQDN", endpoints=[{"addresses": ["db.example.com"]}])) == []
    assert messages(load(addressType="FQDN", endpoints=[{"addresses": ["db"]}])) == [
        'endpoints[0].addresses[0]: Invalid value: "db": should be a domain with at least two segments separated by dots'
    ]


def test_too_many_endpoints() -> None:
    obj = load(endpoints=[{"addresses": ["10.0.0.1"]}] * 1001)
    assert messages(obj) == ["endpoints: Too many: 1001: must have at most 1000 items"]


def test_unchanged_endpoints_are_not_revalidated() -> None:
    old = load(endpoints=[{"addresses": ["127.0.0.1"]}])
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["extra"] = "yes"
    assert messages(new, old) == []


def test_ports() -> None:
    obj = load(ports=[{"name": "http", "port": 80}, {"name": "http", "port": 8080}])
    assert messages(obj) == ['ports[1].name: Duplicate value: "http"']
    obj = load(ports=[{"name": "Web", "port": 80, "protocol": "HTTP"}])
    errs = messages(obj)
    assert errs[0].startswith('ports[0].name: Invalid value: "Web": a lowercase RFC 1123 label must consist of')
    assert errs[1] == 'ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'


def test_service_name_label_must_be_a_label_value() -> None:
    obj = load()
    obj["metadata"]["labels"]["kubernetes.io/service-name"] = "bad name"
    error = messages(obj)[0]
    assert error.startswith("metadata.labels") and ': Invalid value: "bad name": a valid label must be' in error


def test_hostname_and_node_name() -> None:
    obj = load()
    obj["endpoints"][0]["hostname"] = "pod.1"
    assert messages(obj) == ['endpoints[0].hostname: Invalid value: "pod.1": must not contain dots']


def test_rows() -> None:
    assert row(load()) == ["example-abc", "IPv4", "80", "10.1.2.3", "60s"]
    many = load(
        ports=[{"port": 80}, {"port": 443}, {"name": "dns"}, {"port": 9090}],
        endpoints=[{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)],
    )
    assert row(many)[2:4] == ["80,443,dns + 1 more...", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."]


def test_rows_unset() -> None:
    empty = load(ports=[], endpoints=[])
    assert row(empty)[2:4] == ["<unset>", "<unset>"]
    nameless = load(ports=[{"protocol": "TCP"}])
    nameless["ports"][0].pop("name")
    assert row(nameless)[2] == "*"

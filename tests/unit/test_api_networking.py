"""Ingress, IngressClass and NetworkPolicy: upstream defaults, messages and kubectl rows."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from kubewire.api import networking
from kubewire.api.fields import FieldError
from kubewire.api.registry import Kind

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CREATED = (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

# From the Kubernetes docs (concepts/services-networking/ingress).
MINIMAL_INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: minimal-ingress
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /
spec:
  ingressClassName: nginx-example
  rules:
  - http:
      paths:
      - path: /testpath
        pathType: Prefix
        backend:
          service:
            name: test
            port:
              number: 80
"""

VIRTUAL_HOST_INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: name-virtual-host-ingress
spec:
  rules:
  - host: foo.bar.com
    http:
      paths:
      - pathType: Prefix
        path: "/"
        backend:
          service:
            name: service1
            port:
              number: 80
  - host: bar.foo.com
    http:
      paths:
      - pathType: Prefix
        path: "/"
        backend:
          service:
            name: service2
            port:
              number: 80
"""

# From the Kubernetes docs (concepts/services-networking/network-policies).
DEFAULT_DENY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
spec:
  podSelector: {}
  policyTypes:
  - Ingress
"""

TEST_NETWORK_POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978
"""


def load(text: str, namespace: str = "default") -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(text)
    obj["metadata"].setdefault("namespace", namespace)
    obj["metadata"]["creationTimestamp"] = CREATED
    return obj


def messages(errs: list[FieldError]) -> list[str]:
    return [str(e) for e in errs]


def check(kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    kind.default(obj)
    return messages(kind.validate(obj, old))


def ingress_with_path(**path: Any) -> dict[str, Any]:
    obj = load(MINIMAL_INGRESS)
    obj["spec"]["rules"][0]["http"]["paths"][0] = path
    return obj


SERVICE = {"service": {"name": "test", "port": {"number": 80}}}
P0 = "spec.rules[0].http.paths[0]"


def test_kinds_are_registered_with_upstream_names() -> None:
    by_kind = {k.kind: k for k in networking.KINDS}
    assert by_kind["Ingress"].plural == "ingresses"
    assert by_kind["Ingress"].short_names == ("ing",)
    assert by_kind["Ingress"].subresources == frozenset({"status"})
    assert by_kind["IngressClass"].namespaced is False
    assert by_kind["NetworkPolicy"].short_names == ("netpol",)
    assert all(k.api_version == "networking.k8s.io/v1" and not k.merge_keys for k in networking.KINDS)


def test_docs_ingresses_are_valid_and_print_like_kubectl() -> None:
    minimal, virtual = load(MINIMAL_INGRESS), load(VIRTUAL_HOST_INGRESS)
    assert check(networking.INGRESS, minimal) == []
    assert check(networking.INGRESS, virtual) == []
    assert networking.ingress_row(minimal, NOW) == ["minimal-ingress", "nginx-example", "*", "", "80", "5m"]
    assert networking.ingress_row(virtual, NOW) == [
        "name-virtual-host-ingress",
        "<none>",
        "foo.bar.com,bar.foo.com",
        "",
        "80",
        "5m",
    ]
    assert [c.name for c in networking.INGRESS.columns] == ["Name", "Class", "Hosts", "Address", "Ports", "Age"]


def test_ingress_row_tls_ports_address_and_many_hosts() -> None:
    obj = load(VIRTUAL_HOST_INGRESS)
    obj["spec"]["tls"] = [{"hosts": ["foo.bar.com"], "secretName": "tls"}]
    obj["spec"]["rules"] += [{"host": f"h{i}.example.com"} for i in range(3)]
    obj["status"] = {
        "loadBalancer": {"ingress": [{"ip": "10.0.0.9"}, {"hostname": "lb.example.com"}, {"ip": "10.0.0.9"}]}
    }
    row = networking.ingress_row(obj, NOW)
    assert row[2] == "foo.bar.com,bar.foo.com,h0.example.com + 2 more..."
    assert row[3] == "10.0.0.9,lb.example.com"
    assert row[4] == "80, 443"


def test_ingress_has_no_defaulting_and_path_type_is_required() -> None:
    obj = ingress_with_path(path="/x", backend=SERVICE)
    before = copy.deepcopy(obj)
    assert check(networking.INGRESS, obj) == [f"{P0}.pathType: Required value: pathType must be specified"]
    assert obj == before


def test_ingress_path_type_and_absolute_path() -> None:
    assert check(networking.INGRESS, ingress_with_path(path="/x", pathType="Regex", backend=SERVICE)) == [
        f'{P0}.pathType: Unsupported value: "Regex": supported values: "Exact", "ImplementationSpecific", "Prefix"'
    ]
    assert check(networking.INGRESS, ingress_with_path(path="x", pathType="Prefix", backend=SERVICE)) == [
        f'{P0}.path: Invalid value: "x": must be an absolute path'
    ]
    assert check(networking.INGRESS, ingress_with_path(path="/a//b/..", pathType="Exact", backend=SERVICE)) == [
        f"{P0}.path: Invalid value: \"/a//b/..\": must not contain '//'",
        f"{P0}.path: Invalid value: \"/a//b/..\": cannot end with '/..'",
    ]
    assert check(networking.INGRESS, ingress_with_path(pathType="ImplementationSpecific", backend=SERVICE)) == []


def test_ingress_backend_rules() -> None:
    both_ports = {"service": {"name": "test", "port": {"number": 80, "name": "http"}}}
    no_port = {"service": {"name": "test", "port": {}}}
    bad_name = {"service": {"name": "Test_svc", "port": {"number": 80}}}
    both = {**SERVICE, "resource": {"kind": "Bucket", "name": "b"}}
    cases = {
        "both ports": (both_ports, [f'{P0}.backend: Invalid value: "": cannot set both port name & port number']),
        "no port": (no_port, [f"{P0}.backend: Required value: port name or number is required"]),
        "both kinds": (both, [f'{P0}.backend: Invalid value: "": cannot set both resource and service backends']),
        "none": ({}, [f'{P0}.backend: Invalid value: "": resource or service backend is required']),
    }
    for name, (backend, want) in cases.items():
        got = check(networking.INGRESS, ingress_with_path(path="/", pathType="Prefix", backend=backend))
        assert got == want, name
    got = check(networking.INGRESS, ingress_with_path(path="/", pathType="Prefix", backend=bad_name))
    assert got == [
        f'{P0}.backend.service.name: Invalid value: "Test_svc": a DNS-1035 label must consist of lower case '
        "alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric "
        "character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
    ]


def test_ingress_needs_rules_or_default_backend() -> None:
    obj = load(MINIMAL_INGRESS)
    del obj["spec"]["rules"]
    assert check(networking.INGRESS, obj) == [
        "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"
    ]
    obj["spec"]["defaultBackend"] = SERVICE
    assert check(networking.INGRESS, obj) == []


def test_ingress_hosts_wildcards_and_tls() -> None:
    obj = load(VIRTUAL_HOST_INGRESS)
    obj["spec"]["rules"][0]["host"] = "*.foo.com"
    assert check(networking.INGRESS, obj) == []
    obj["spec"]["rules"][0]["host"] = "foo.*.com"
    obj["spec"]["rules"][1]["host"] = "10.0.0.1"
    obj["spec"]["tls"] = [{"hosts": ["*.foo.com", "Bad_Host"]}]
    got = check(networking.INGRESS, obj)
    assert got[0] == (
        "spec.rules[0].host: Invalid value: \"foo.*.com\": a wildcard DNS-1123 subdomain must start with '*.', "
        "followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' "
        "and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is "
        "'\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
    assert got[1] == 'spec.rules[1].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address'
    assert len(got) == 3 and got[2].startswith('spec.tls[0].hosts[1]: Invalid value: "Bad_Host": a lowercase RFC 1123')


def test_ingress_class_annotation_must_match_on_create_only() -> None:
    obj = load(MINIMAL_INGRESS)
    obj["metadata"]["annotations"]["kubernetes.io/ingress.class"] = "other"
    want = 'annotations.kubernetes.io/ingress.class: Invalid value: "other": must match `ingressClassName` when both are specified'
    assert check(networking.INGRESS, obj) == [want]
    assert check(networking.INGRESS, obj, old=copy.deepcopy(obj)) == []


def test_ingress_class_defaults_validation_and_row() -> None:
    obj = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "external-lb", "creationTimestamp": CREATED},
        "spec": {
            "controller": "example.com/ingress-controller",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"},
        },
    }
    assert check(networking.INGRESS_CLASS, obj) == []
    assert obj["spec"]["parameters"]["scope"] == "Cluster"
    assert networking.ingress_class_row(obj, NOW) == [
        "external-lb",
        "example.com/ingress-controller",
        "IngressParameters.k8s.example.com/external-lb",
        "5m",
    ]
    changed = copy.deepcopy(obj)
    changed["spec"]["controller"] = "nginx"
    assert check(networking.INGRESS_CLASS, changed, old=obj) == [
        'spec.controller: Invalid value: "nginx": field is immutable',
        'spec.controller: Invalid value: "nginx": must be a domain-prefixed path (such as "acme.io/foo")',
    ]
    namespaced = copy.deepcopy(obj)
    namespaced["spec"]["parameters"]["scope"] = "Namespace"
    assert check(networking.INGRESS_CLASS, namespaced) == [
        "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"
    ]


def test_docs_network_policies_default_and_print() -> None:
    deny, policy = load(DEFAULT_DENY), load(TEST_NETWORK_POLICY)
    assert check(networking.NETWORK_POLICY, deny) == []
    assert check(networking.NETWORK_POLICY, policy) == []
    assert networking.network_policy_row(deny, NOW) == ["default-deny-ingress", "<none>", "5m"]
    assert networking.network_policy_row(policy, NOW) == ["test-network-policy", "role=db", "5m"]
    assert [c.name for c in networking.NETWORK_POLICY.columns] == ["Name", "Pod-Selector", "Age"]


def test_network_policy_defaults_policy_types_and_protocol() -> None:
    obj = load(TEST_NETWORK_POLICY)
    del obj["spec"]["policyTypes"]
    del obj["spec"]["ingress"][0]["ports"][0]["protocol"]
    networking.NETWORK_POLICY.default(obj)
    assert obj["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert obj["spec"]["ingress"][0]["ports"][0] == {"protocol": "TCP", "port": 6379}
    ingress_only = load(DEFAULT_DENY)
    del ingress_only["spec"]["policyTypes"]
    networking.NETWORK_POLICY.default(ingress_only)
    assert ingress_only["spec"]["policyTypes"] == ["Ingress"]


def test_network_policy_peer_and_ip_block_rules() -> None:
    obj = load(TEST_NETWORK_POLICY)
    peers = obj["spec"]["ingress"][0]["from"]
    peers[0]["ipBlock"]["except"] = ["10.0.0.0/8", "172.17.0.0/16"]
    peers[1]["ipBlock"] = {"cidr": "192.168.0.0/33"}
    peers.append({})
    assert check(networking.NETWORK_POLICY, obj) == [
        'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`',
        'spec.ingress[0].from[0].ipBlock.except[1]: Invalid value: "172.17.0.0/16": must be a strict subset of `cidr`',
        'spec.ingress[0].from[1].ipBlock.cidr: Invalid value: "192.168.0.0/33": must be a valid CIDR value, '
        "(e.g. 10.9.8.0/24 or 2001:db8::/64)",
        "spec.ingress[0].from[1]: Forbidden: may not specify both ipBlock and another peer",
        "spec.ingress[0].from[3]: Required value: must specify a peer",
    ]


def test_network_policy_port_rules() -> None:
    obj = load(TEST_NETWORK_POLICY)
    obj["spec"]["egress"][0]["ports"] = [
        {"protocol": "ICMP", "port": 32000, "endPort": 31000},
        {"port": "http", "endPort": 90},
        {"endPort": 90},
        {"port": 0},
    ]
    assert check(networking.NETWORK_POLICY, obj) == [
        'spec.egress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"',
        "spec.egress[0].ports[0].endPort: Invalid value: 31000: must be greater than or equal to `port`",
        "spec.egress[0].ports[1].endPort: Invalid value: 90: may not be specified when `port` is non-numeric",
        "spec.egress[0].ports[2].endPort: Invalid value: 90: may not be specified when `port` is not specified",
        "spec.egress[0].ports[3].port: Invalid value: 0: must be between 1 and 65535, inclusive",
    ]


def test_network_policy_policy_types_and_selector() -> None:
    obj = load(DEFAULT_DENY)
    obj["spec"]["policyTypes"] = ["Ingress", "Sideways"]
    obj["spec"]["podSelector"] = {"matchExpressions": [{"key": "app", "operator": "In"}]}
    assert check(networking.NETWORK_POLICY, obj) == [
        "spec.podSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        'spec.policyTypes[1]: Unsupported value: "Sideways": supported values: "Ingress", "Egress"',
    ]
    obj["spec"]["policyTypes"] = ["Ingress", "Egress", "Ingress"]
    obj["spec"]["podSelector"] = {}
    assert check(networking.NETWORK_POLICY, obj) == [
        'spec.policyTypes: Invalid value: []networking.PolicyType{"Ingress", "Egress", "Ingress"}: '
        "may not specify more than two policyTypes"
    ]


def test_network_policy_update_keeps_stored_invalid_cidrs() -> None:
    old = load(DEFAULT_DENY)
    old["spec"]["ingress"] = [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]
    new = copy.deepcopy(old)
    assert check(networking.NETWORK_POLICY, new, old=old) == []
    assert len(check(networking.NETWORK_POLICY, copy.deepcopy(old))) == 1


def test_unknown_fields_survive_defaulting() -> None:
    obj = load(TEST_NETWORK_POLICY)
    obj["spec"]["futureField"] = {"x": 1}
    obj["spec"]["ingress"][0]["ports"][0]["futurePortField"] = True
    networking.NETWORK_POLICY.default(obj)
    assert obj["spec"]["futureField"] == {"x": 1}
    assert obj["spec"]["ingress"][0]["ports"][0]["futurePortField"] is True

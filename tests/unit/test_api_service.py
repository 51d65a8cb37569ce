"""core/v1 Service: defaulting, upstream-worded validation, update rules and table rows.

Sample manifests are the ones on the Kubernetes "Service" and "StatefulSet" documentation pages.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from kubewire.api import service
from kubewire.api.fields import invalid
from kubewire.api.service import SERVICE, PortRange, parse_port_range, prepare_for_update, validate_service

NOW = datetime(2024, 1, 2, tzinfo=UTC)
CREATED = "2024-01-01T23:55:00Z"  # five minutes before NOW

CLUSTER_IP_DOC = """
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
"""

MULTI_PORT_DOC = """
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: 9376
    - name: https
      protocol: TCP
      port: 443
      targetPort: 9377
"""

NODE_PORT_DOC = """
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  type: NodePort
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - port: 80
      targetPort: 80
      nodePort: 30007
"""

LOAD_BALANCER_DOC = """
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
  clusterIP: 10.0.171.239
  type: LoadBalancer
status:
  loadBalancer:
    ingress:
    - ip: 192.0.2.127
"""

EXTERNAL_NAME_DOC = """
apiVersion: v1
kind: Service
metadata:
  name: my-service
  namespace: prod
spec:
  type: ExternalName
  externalName: my.database.example.com
"""

HEADLESS_DOC = """
apiVersion: v1
kind: Service
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  ports:
  - port: 80
    name: web
  clusterIP: None
  selector:
    app: nginx
"""

EXTERNAL_IPS_DOC = """
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: 49152
  externalIPs:
    - 198.51.100.32
"""


def load(doc: str, **spec: Any) -> dict[str, Any]:
    """A docs manifest as the server sees it: namespaced, timestamped, defaulted."""
    obj: dict[str, Any] = yaml.safe_load(doc)
    obj["metadata"].setdefault("namespace", "default")
    obj["metadata"]["creationTimestamp"] = CREATED
    obj["spec"].update(spec)
    service.default_service(obj)
    return obj


def messages(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [str(e) for e in SERVICE.validate(obj, old)]


def only(obj: dict[str, Any], old: dict[str, Any] | None = None) -> str:
    errs = messages(obj, old)
    assert len(errs) == 1, errs
    return errs[0]


# --- the kind ------------------------------------------------------------------------------------


def test_kind_metadata() -> None:
    assert (SERVICE.group, SERVICE.version, SERVICE.plural, SERVICE.namespaced) == ("", "v1", "services", True)
    assert SERVICE.short_names == ("svc",)
    assert SERVICE.categories == ("all",)
    assert SERVICE.subresources == frozenset({"status"})
    assert SERVICE.merge_keys["spec.ports"] == "port"
    assert [c.name for c in SERVICE.columns] == [
        "Name",
        "Type",
        "Cluster-IP",
        "External-IP",
        "Port(s)",
        "Age",
        "Selector",
    ]
    assert [c.priority for c in SERVICE.columns][-1] == 1
    assert set(SERVICE.field_selectors) == {"spec.clusterIP", "spec.type"}


def test_field_selectors() -> None:
    obj = load(LOAD_BALANCER_DOC)
    assert SERVICE.field_selectors["spec.type"](obj) == "LoadBalancer"
    assert SERVICE.field_selectors["spec.clusterIP"](obj) == "10.0.171.239"


# --- defaulting ----------------------------------------------------------------------------------


def test_defaults_cluster_ip_service() -> None:
    obj = load(CLUSTER_IP_DOC)
    assert obj["spec"] == {
        "selector": {"app.kubernetes.io/name": "MyApp"},
        "ports": [{"protocol": "TCP", "port": 80, "targetPort": 9376}],
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
    }


def test_defaults_protocol_and_target_port() -> None:
    obj = load(HEADLESS_DOC)
    assert obj["spec"]["ports"] == [{"port": 80, "name": "web", "protocol": "TCP", "targetPort": 80}]
    assert obj["spec"]["clusterIPs"] == ["None"]


def test_defaults_node_port_and_load_balancer() -> None:
    node_port = load(NODE_PORT_DOC)
    assert node_port["spec"]["externalTrafficPolicy"] == "Cluster"
    assert "allocateLoadBalancerNodePorts" not in node_port["spec"]
    lb = load(LOAD_BALANCER_DOC)
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster"
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["spec"]["clusterIPs"] == ["10.0.171.239"]
    assert lb["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.127", "ipMode": "VIP"}]


def test_defaults_external_traffic_policy_for_external_ips() -> None:
    assert load(EXTERNAL_IPS_DOC)["spec"]["externalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in load(CLUSTER_IP_DOC)["spec"]


def test_defaults_client_ip_affinity_timeout() -> None:
    obj = load(CLUSTER_IP_DOC, sessionAffinity="ClientIP")
    assert obj["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    kept = load(CLUSTER_IP_DOC, sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    assert kept["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 60}}
    dropped = load(CLUSTER_IP_DOC, sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    assert "sessionAffinityConfig" not in dropped["spec"]


def test_external_name_gets_no_traffic_policy() -> None:
    spec = load(EXTERNAL_NAME_DOC)["spec"]
    assert spec == {"type": "ExternalName", "externalName": "my.database.example.com", "sessionAffinity": "None"}


def test_defaulting_is_idempotent_and_keeps_unknown_fields() -> None:
    obj = load(LOAD_BALANCER_DOC, futureField={"x": 1})
    again = copy.deepcopy(obj)
    service.default_service(again)
    assert again == obj
    assert obj["spec"]["futureField"] == {"x": 1}


# --- validation: the docs manifests are valid ------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        CLUSTER_IP_DOC,
        MULTI_PORT_DOC,
        NODE_PORT_DOC,
        LOAD_BALANCER_DOC,
        EXTERNAL_NAME_DOC,
        HEADLESS_DOC,
        EXTERNAL_IPS_DOC,
    ],
)
def test_docs_manifests_are_valid(doc: str) -> None:
    assert messages(load(doc)) == []


# --- validation: common mistakes, upstream wording -------------------------------------------------


def test_node_port_out_of_range() -> None:
    obj = load(NODE_PORT_DOC)
    obj["spec"]["ports"][0]["nodePort"] = 80
    errs = SERVICE.validate(obj, None)
    expected = (
        "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"
    )
    assert [str(e) for e in errs] == [expected]
    assert str(invalid("Service", "my-service", errs)) == f'Service "my-service" is invalid: {expected}'


def test_node_port_range_is_a_parameter() -> None:
    obj = load(NODE_PORT_DOC)
    narrow = parse_port_range("31000-31999")
    assert narrow == PortRange(31000, 31999)
    assert [str(e) for e in validate_service(obj, None, narrow)] == [
        "spec.ports[0].nodePort: Invalid value: 30007: provided port is not in the valid range. "
        "The range of valid ports is 31000-31999"
    ]
    assert parse_port_range("30000+2768") == service.DEFAULT_NODE_PORT_RANGE
    with pytest.raises(ValueError):
        parse_port_range("70000-80000")


def test_module_node_port_range_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    obj = load(NODE_PORT_DOC)
    monkeypatch.setattr(service, "node_port_range", PortRange(20000, 22767))
    assert "The range of valid ports is 20000-22767" in only(obj)


def test_ports_required() -> None:
    assert only(load(CLUSTER_IP_DOC, ports=[])) == "spec.ports: Required value"


def test_headless_and_external_name_need_no_ports() -> None:
    assert messages(load(HEADLESS_DOC, ports=[])) == []
    assert messages(load(EXTERNAL_NAME_DOC)) == []


def test_port_number_range() -> None:
    obj = load(CLUSTER_IP_DOC, ports=[{"port": 70000, "targetPort": 8080}])
    assert only(obj) == "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"


def test_target_port_name_rules() -> None:
    obj = load(CLUSTER_IP_DOC, ports=[{"port": 80, "targetPort": "http--web"}])
    assert only(obj) == 'spec.ports[0].targetPort: Invalid value: "http--web": must not contain consecutive hyphens'


def test_protocol_supported_values() -> None:
    obj = load(CLUSTER_IP_DOC, ports=[{"port": 80, "protocol": "HTTP"}])
    assert only(obj) == 'spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'


def test_port_names_required_with_several_ports() -> None:
    obj = load(MULTI_PORT_DOC)
    del obj["spec"]["ports"][1]["name"]
    assert only(obj) == "spec.ports[1].name: Required value"


def test_port_name_must_be_a_dns_label() -> None:
    obj = load(MULTI_PORT_DOC)
    obj["spec"]["ports"][0]["name"] = "web.http"
    assert only(obj) == 'spec.ports[0].name: Invalid value: "web.http": must not contain dots'


def test_duplicate_port_names() -> None:
    obj = load(MULTI_PORT_DOC)
    obj["spec"]["ports"][1]["name"] = "http"
    assert only(obj) == 'spec.ports[1].name: Duplicate value: "http"'


def test_duplicate_port_and_protocol() -> None:
    obj = load(MULTI_PORT_DOC)
    obj["spec"]["ports"][1]["port"] = 80
    assert only(obj) == (
        'spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
        'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
    )


def test_same_port_with_another_protocol_is_fine() -> None:
    obj = load(MULTI_PORT_DOC)
    obj["spec"]["ports"][1].update(port=80, protocol="UDP")
    assert messages(obj) == []


def test_duplicate_node_ports() -> None:
    obj = load(NODE_PORT_DOC)
    obj["spec"]["ports"] = [
        {"name": "a", "port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30007},
        {"name": "b", "port": 81, "protocol": "TCP", "targetPort": 81, "nodePort": 30007},
    ]
    assert only(obj) == "spec.ports[1].nodePort: Duplicate value: 30007"


def test_node_port_forbidden_for_cluster_ip() -> None:
    obj = load(CLUSTER_IP_DOC)
    obj["spec"]["ports"][0]["nodePort"] = 30080
    assert only(obj) == "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"


def test_type_supported_values() -> None:
    obj = load(CLUSTER_IP_DOC, type="Public")
    assert only(obj) == (
        'spec.type: Unsupported value: "Public": supported values: "ClusterIP", "ExternalName", "LoadBalancer", '
        '"NodePort"'
    )


def test_external_name_required_and_checked() -> None:
    assert only(load(EXTERNAL_NAME_DOC, externalName="")) == "spec.externalName: Required value"
    bad = only(load(EXTERNAL_NAME_DOC, externalName="My_DB"))
    assert bad.startswith('spec.externalName: Invalid value: "My_DB": a lowercase RFC 1123 subdomain must consist')
    assert messages(load(EXTERNAL_NAME_DOC, externalName="my.database.example.com.")) == []


def test_external_name_may_not_have_cluster_ips() -> None:
    obj = load(EXTERNAL_NAME_DOC, clusterIP="10.0.0.1")
    assert only(obj) == "spec.clusterIPs: Forbidden: may not be set for ExternalName services"


def test_headless_not_allowed_for_node_port() -> None:
    obj = load(NODE_PORT_DOC, clusterIP="None")
    assert only(obj) == "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"


def test_session_affinity_values_and_timeout() -> None:
    obj = load(CLUSTER_IP_DOC, sessionAffinity="Cookie")
    assert only(obj) == 'spec.sessionAffinity: Unsupported value: "Cookie": supported values: "ClientIP", "None"'
    for timeout in (0, 86401):
        config = {"clientIP": {"timeoutSeconds": timeout}}
        obj = load(CLUSTER_IP_DOC, sessionAffinity="ClientIP", sessionAffinityConfig=config)
        assert only(obj) == (
            f"spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: {timeout}: "
            "must be greater than 0 and less than 86400"
        )
    config = {"clientIP": {"timeoutSeconds": 86400}}
    assert messages(load(CLUSTER_IP_DOC, sessionAffinity="ClientIP", sessionAffinityConfig=config)) == []


def test_cluster_ip_must_be_an_ip() -> None:
    obj = load(CLUSTER_IP_DOC, clusterIP="10.0.0.300")
    assert only(obj) == (
        'spec.clusterIPs[0]: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'
    )


def test_cluster_ip_accepts_leading_zeros_like_go() -> None:
    assert messages(load(CLUSTER_IP_DOC, clusterIP="010.000.000.001")) == []


def test_cluster_ips_must_match_cluster_ip() -> None:
    obj = load(CLUSTER_IP_DOC, clusterIP="10.0.0.1", clusterIPs=["10.0.0.2"])
    assert only(obj) == 'spec.clusterIPs: Invalid value: []string{"10.0.0.2"}: first value must match `clusterIP`'


def test_dual_stack_cluster_ips() -> None:
    ok = load(
        CLUSTER_IP_DOC, clusterIP="10.0.0.1", clusterIPs=["10.0.0.1", "fd00::1"], ipFamilyPolicy="RequireDualStack"
    )
    assert messages(ok) == []
    same_family = load(CLUSTER_IP_DOC, clusterIP="10.0.0.1", clusterIPs=["10.0.0.1", "10.0.0.2"])
    assert only(same_family) == (
        'spec.clusterIPs: Invalid value: []string{"10.0.0.1", "10.0.0.2"}: '
        "may specify no more than one IP for each IP family"
    )


def test_ip_family_policy_and_families() -> None:
    obj = load(CLUSTER_IP_DOC, ipFamilyPolicy="DualStack")
    assert only(obj) == (
        'spec.ipFamilyPolicy: Unsupported value: "DualStack": supported values: "PreferDualStack", '
        '"RequireDualStack", "SingleStack"'
    )
    obj = load(CLUSTER_IP_DOC, ipFamilies=["IPv4", "IPv4"])
    assert only(obj) == 'spec.ipFamilies[1]: Duplicate value: "IPv4"'
    obj = load(CLUSTER_IP_DOC, ipFamilies=["IPv5"])
    assert only(obj) == 'spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"'
    obj = load(CLUSTER_IP_DOC, clusterIP="10.0.0.1", ipFamilies=["IPv6"])
    assert (
        only(obj)
        == 'spec.clusterIPs[0]: Invalid value: "10.0.0.1": expected an IPv6 value as indicated by `ipFamilies[0]`'
    )


def test_external_traffic_policy_only_for_external_services() -> None:
    obj = load(CLUSTER_IP_DOC, externalTrafficPolicy="Local")
    assert (
        only(obj)
        == 'spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services'
    )
    obj = load(NODE_PORT_DOC, externalTrafficPolicy="Nearest")
    assert only(obj) == 'spec.externalTrafficPolicy: Unsupported value: "Nearest": supported values: "Cluster", "Local"'


def test_health_check_node_port_rules() -> None:
    obj = load(NODE_PORT_DOC, healthCheckNodePort=30100)
    assert only(obj) == (
        "spec.healthCheckNodePort: Invalid value: 30100: "
        "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"
    )
    assert messages(load(LOAD_BALANCER_DOC, externalTrafficPolicy="Local", healthCheckNodePort=30100)) == []


def test_internal_traffic_policy_values() -> None:
    obj = load(CLUSTER_IP_DOC, internalTrafficPolicy="Node")
    assert only(obj) == 'spec.internalTrafficPolicy: Unsupported value: "Node": supported values: "Cluster", "Local"'


def test_load_balancer_source_ranges() -> None:
    obj = load(LOAD_BALANCER_DOC, loadBalancerSourceRanges=["10.0.0.0/8", "1.2.3.4/33"])
    assert only(obj) == (
        'spec.LoadBalancerSourceRanges[1]: Invalid value: "1.2.3.4/33": '
        "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
    )
    obj = load(CLUSTER_IP_DOC, loadBalancerSourceRanges=["10.0.0.0/8"])
    assert only(obj) == "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"


def test_load_balancer_only_fields() -> None:
    obj = load(NODE_PORT_DOC, allocateLoadBalancerNodePorts=False)
    assert only(obj) == "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"
    obj = load(NODE_PORT_DOC, loadBalancerClass="example.com/lb")
    assert only(obj) == "spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'"
    assert messages(load(LOAD_BALANCER_DOC, loadBalancerClass="example.com/lb")) == []


def test_external_ips_valid_and_not_special() -> None:
    obj = load(EXTERNAL_IPS_DOC, externalIPs=["127.0.0.1"])
    assert (
        only(obj)
        == 'spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)'
    )
    obj = load(EXTERNAL_IPS_DOC, externalIPs=["example.com"])
    assert only(obj) == (
        'spec.externalIPs[0]: Invalid value: "example.com": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'
    )


def test_selector_labels_valid() -> None:
    obj = load(CLUSTER_IP_DOC, selector={"app": "my app"})
    error = only(obj)
    assert error.startswith("spec.selector") and ': Invalid value: "my app": a valid label must be' in error


def test_name_is_a_dns1035_label() -> None:
    obj = load(CLUSTER_IP_DOC)
    obj["metadata"]["name"] = "1-web"
    assert only(obj).startswith('metadata.name: Invalid value: "1-web": a DNS-1035 label must consist of')


def test_namespace_required() -> None:
    obj = load(CLUSTER_IP_DOC)
    obj["metadata"]["namespace"] = ""
    assert only(obj) == "metadata.namespace: Required value"


# --- updates -------------------------------------------------------------------------------------


def allocated(doc: str, **spec: Any) -> dict[str, Any]:
    obj = load(doc, **spec)
    obj["spec"].setdefault("clusterIP", "10.96.0.10")
    obj["spec"].setdefault("clusterIPs", [obj["spec"]["clusterIP"]])
    obj["spec"].setdefault("ipFamilies", ["IPv4"])
    obj["spec"].setdefault("ipFamilyPolicy", "SingleStack")
    return obj


def test_cluster_ip_may_not_change() -> None:
    old = allocated(CLUSTER_IP_DOC)
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.96.0.99"
    prepare_for_update(new, old)
    assert only(new, old) == 'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.99"}: may not change once set'


def test_update_without_cluster_ip_keeps_the_allocated_one() -> None:
    old = allocated(CLUSTER_IP_DOC)
    new = load(CLUSTER_IP_DOC)  # a client re-sending its manifest without clusterIP
    prepare_for_update(new, old)
    assert new["spec"]["clusterIP"] == "10.96.0.10"
    assert messages(new, old) == []


def test_changing_to_external_name_releases_cluster_ip() -> None:
    old = allocated(CLUSTER_IP_DOC)
    new = copy.deepcopy(old)
    new["spec"].update(type="ExternalName", externalName="my.database.example.com")
    service.default_service(new)
    prepare_for_update(new, old)
    assert "clusterIP" not in new["spec"] and "clusterIPs" not in new["spec"] and "ipFamilies" not in new["spec"]
    assert messages(new, old) == []


def test_changing_from_external_name_allows_new_cluster_ip() -> None:
    old = load(EXTERNAL_NAME_DOC)
    new = load(CLUSTER_IP_DOC, clusterIP="10.96.0.20")
    new["metadata"]["namespace"] = "prod"
    prepare_for_update(new, old)
    assert messages(new, old) == []


def test_node_port_to_cluster_ip_drops_node_ports() -> None:
    old = allocated(NODE_PORT_DOC)
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    prepare_for_update(new, old)
    assert "nodePort" not in new["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in new["spec"]
    assert messages(new, old) == []


def test_update_keeps_allocated_node_ports() -> None:
    old = allocated(NODE_PORT_DOC)
    new = copy.deepcopy(old)
    del new["spec"]["ports"][0]["nodePort"]
    prepare_for_update(new, old)
    assert new["spec"]["ports"][0]["nodePort"] == 30007


def test_load_balancer_class_may_not_change() -> None:
    old = allocated(LOAD_BALANCER_DOC, loadBalancerClass="a.example/lb")
    new = copy.deepcopy(old)
    new["spec"]["loadBalancerClass"] = "b.example/lb"
    assert only(new, old) == 'spec.loadBalancerClass: Invalid value: "b.example/lb": may not change once set'


# --- status --------------------------------------------------------------------------------------


def test_status_ingress_ip_must_be_valid() -> None:
    old = allocated(LOAD_BALANCER_DOC)
    new = copy.deepcopy(old)
    new["status"]["loadBalancer"]["ingress"] = [{"ip": "192.0.2.300", "ipMode": "VIP"}]
    assert only(new, old) == (
        'status.loadBalancer.ingress[0].ip: Invalid value: "192.0.2.300": '
        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
    )


def test_status_ingress_needs_ip_mode_and_a_load_balancer() -> None:
    old = allocated(LOAD_BALANCER_DOC)
    new = copy.deepcopy(old)
    new["status"]["loadBalancer"]["ingress"] = [{"ip": "192.0.2.1"}]
    assert only(new, old) == "status.loadBalancer.ingress[0].ipMode: Required value: must be specified when `ip` is set"
    old = allocated(CLUSTER_IP_DOC)
    new = copy.deepcopy(old)
    new["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}}
    assert (
        only(new, old) == "status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"
    )


def test_status_ingress_hostname_not_an_ip() -> None:
    old = allocated(LOAD_BALANCER_DOC)
    new = copy.deepcopy(old)
    new["status"]["loadBalancer"]["ingress"] = [{"hostname": "192.0.2.1"}]
    assert (
        only(new, old)
        == 'status.loadBalancer.ingress[0].hostname: Invalid value: "192.0.2.1": must be a DNS name, not an IP address'
    )


# --- table rows ----------------------------------------------------------------------------------


def row(obj: dict[str, Any]) -> list[Any]:
    assert SERVICE.row is not None
    return SERVICE.row(obj, NOW)


def test_row_cluster_ip() -> None:
    obj = allocated(CLUSTER_IP_DOC)
    assert row(obj) == [
        "my-service",
        "ClusterIP",
        "10.96.0.10",
        "<none>",
        "80/TCP",
        "5m",
        "app.kubernetes.io/name=MyApp",
    ]


def test_row_multi_port() -> None:
    assert row(allocated(MULTI_PORT_DOC))[4] == "80/TCP,443/TCP"


def test_row_node_port() -> None:
    obj = allocated(NODE_PORT_DOC)
    assert row(obj)[:5] == ["my-service", "NodePort", "10.96.0.10", "<none>", "80:30007/TCP"]


def test_row_load_balancer() -> None:
    obj = load(LOAD_BALANCER_DOC)
    obj["spec"]["ports"][0]["nodePort"] = 31234
    assert row(obj)[:5] == ["my-service", "LoadBalancer", "10.0.171.239", "192.0.2.127", "80:31234/TCP"]


def test_row_load_balancer_pending_and_with_external_ips() -> None:
    obj = load(LOAD_BALANCER_DOC)
    del obj["status"]
    assert row(obj)[3] == "<pending>"
    obj["spec"]["externalIPs"] = ["198.51.100.32"]
    assert row(obj)[3] == "198.51.100.32"
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}, {"hostname": "lb.example.com"}]}}
    assert row(obj)[3] == "192.0.2.9,lb.example.com,198.51.100.32"


def test_row_external_name() -> None:
    obj = load(EXTERNAL_NAME_DOC)
    assert row(obj) == ["my-service", "ExternalName", "<none>", "my.database.example.com", "<none>", "5m", "<none>"]


def test_row_headless() -> None:
    assert row(load(HEADLESS_DOC)) == ["nginx", "ClusterIP", "None", "<none>", "80/TCP", "5m", "app=nginx"]


def test_row_external_ips() -> None:
    assert row(allocated(EXTERNAL_IPS_DOC))[3] == "198.51.100.32"

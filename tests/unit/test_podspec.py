"""kubelet-lite's pod spec rules: container environment, $(VAR) expansion, resolv.conf, hostname, /etc/hosts."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubewire.agents.kubelet.podspec import (
    CREATE_CONTAINER_CONFIG_ERROR,
    CREATE_POD_SANDBOX_ERROR,
    ContainerConfigError,
    SandboxConfigError,
    container_env,
    expand,
    expand_args,
    hosts_file,
    kernel_hostname,
    parse_resolv_conf,
    pod_dns_config,
    pod_hostname,
    resolv_conf,
    service_env_vars,
    sort_pod_ips,
)

Obj = dict[str, Any]
DOMAIN = "cluster.local"


def make_pod(name: str = "web", namespace: str = "default", **spec: Any) -> Obj:
    containers = spec.pop("containers", [{"name": "app", "image": "busybox"}])
    meta: Obj = {"name": name, "namespace": namespace, "uid": "1234-abcd"}
    meta.update(spec.pop("meta", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": containers, **spec}}


def service(name: str, ip: str, *ports: Obj, namespace: str = "default") -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": ip, "ports": list(ports) or [{"port": 80, "protocol": "TCP"}]},
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def env_of(container: Obj, pod: Obj | None = None, **kwargs: Any) -> dict[str, str]:
    pod = pod or make_pod(containers=[container])
    return dict(container_env(pod, container, **kwargs))


def config_error(container: Obj, **kwargs: Any) -> str:
    with pytest.raises(ContainerConfigError) as info:
        container_env(make_pod(containers=[container]), container, **kwargs)
    assert info.value.reason == CREATE_CONTAINER_CONFIG_ERROR
    return info.value.message


KUBERNETES = service("kubernetes", "10.96.0.1", {"name": "https", "port": 443, "protocol": "TCP"})
CONFIGMAPS = {"cfg": {"data": {"MODE": "prod", "LEVEL": "3"}}}
SECRETS = {"creds": {"data": {"USER": b64("admin"), "PASS": b64("s3cr$t")}}}


# --- expansion ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "a"),
        ("x-$(A)-y", "x-a-y"),
        ("$(A)$(B)", "ab"),
        ("$(UNDEFINED)", "$(UNDEFINED)"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$a"),
        ("$$", "$"),
        ("$$$$", "$$"),
        ("$(A", "$(A"),
        ("$(A $(B)", "$(A $(B)"),  # the name runs to the first ')': "A $(B" is undefined
        ("$", "$"),
        ("a$", "a$"),
        ("$A", "$A"),
        ("$()", "$()"),
        ("${A}", "${A}"),
        ("", ""),
    ],
)
def test_expand_follows_upstream_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "a", "B": "b"}) == expected


def test_expand_takes_the_first_context_that_defines_a_name() -> None:
    assert expand("$(X)/$(Y)", {"X": "first"}, {"X": "second", "Y": "y"}) == "first/y"


def test_expand_args_expands_command_and_args_against_the_final_env() -> None:
    container = {"command": ["/bin/$(TOOL)", "$$(TOOL)"], "args": ["--port=$(PORT)", "$(MISSING)"]}
    assert expand_args(container, [("TOOL", "srv"), ("PORT", "8080")]) == (
        ["/bin/srv", "$(TOOL)"],
        ["--port=8080", "$(MISSING)"],
    )
    assert expand_args({}, []) == ([], [])


# --- service links -----------------------------------------------------------------------------------


def test_service_env_for_a_single_unnamed_port() -> None:
    assert service_env_vars(service("redis-primary", "10.96.3.4", {"port": 6379})) == [
        ("REDIS_PRIMARY_SERVICE_HOST", "10.96.3.4"),
        ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
        ("REDIS_PRIMARY_PORT", "tcp://10.96.3.4:6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.96.3.4:6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
        ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.96.3.4"),
    ]


def test_service_env_for_a_multi_port_service() -> None:
    svc = service(
        "dns",
        "10.96.0.10",
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        {"name": "metrics", "port": 9153},
    )
    env = dict(service_env_vars(svc))
    assert env["DNS_SERVICE_PORT"] == "53"
    assert env["DNS_SERVICE_PORT_DNS"] == "53"
    assert env["DNS_SERVICE_PORT_DNS_TCP"] == "53"
    assert env["DNS_SERVICE_PORT_METRICS"] == "9153"
    assert env["DNS_PORT"] == "udp://10.96.0.10:53"  # the first port only
    assert env["DNS_PORT_53_UDP"] == "udp://10.96.0.10:53"
    assert env["DNS_PORT_53_UDP_PROTO"] == "udp"
    assert env["DNS_PORT_53_TCP"] == "tcp://10.96.0.10:53"
    assert env["DNS_PORT_9153_TCP_ADDR"] == "10.96.0.10"
    assert len(env) == 2 + 3 + 1 + 3 * 4


def test_service_env_brackets_ipv6_addresses_in_urls_only() -> None:
    env = dict(service_env_vars(service("web", "fd00:10:96::a", {"port": 80})))
    assert env["WEB_PORT"] == "tcp://[fd00:10:96::a]:80"
    assert env["WEB_PORT_80_TCP_ADDR"] == "fd00:10:96::a"
    assert env["WEB_SERVICE_HOST"] == "fd00:10:96::a"


@pytest.mark.parametrize("cluster_ip", ["None", "", None])
def test_headless_and_ipless_services_give_no_env(cluster_ip: str | None) -> None:
    svc = service("headless", "x")
    svc["spec"]["clusterIP"] = cluster_ip
    assert service_env_vars(svc) == []
    assert env_of({"name": "app"}, services=[svc]) == {}


def test_service_links_cover_the_pod_namespace_and_default_kubernetes() -> None:
    services = [KUBERNETES, service("api", "10.96.0.7"), service("other", "10.96.0.8", namespace="elsewhere")]
    env = env_of({"name": "app"}, services=services)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["API_SERVICE_HOST"] == "10.96.0.7"
    assert "OTHER_SERVICE_HOST" not in env


def test_disabled_service_links_keep_only_the_kubernetes_service() -> None:
    services = [KUBERNETES, service("api", "10.96.0.7")]
    pod = make_pod(enableServiceLinks=False)
    env = dict(container_env(pod, pod["spec"]["containers"][0], services=services))
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert not any(k.startswith("API_") for k in env)
    # the keyword overrides the pod's field
    env = env_of({"name": "app"}, services=services, enable_service_links=False)
    assert "API_SERVICE_HOST" not in env


def test_a_namespace_kubernetes_service_replaces_the_default_one_when_links_are_on() -> None:
    own = service("kubernetes", "10.96.9.9", namespace="team")
    pod = make_pod(namespace="team")
    env = dict(container_env(pod, pod["spec"]["containers"][0], services=[KUBERNETES, own]))
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.9.9"
    env = dict(container_env(pod, pod["spec"]["containers"][0], services=[KUBERNETES, own], enable_service_links=False))
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


def test_user_env_wins_over_service_env_and_can_reference_it() -> None:
    container = {
        "name": "app",
        "env": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": "override"},
            {"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
        ],
    }
    env = container_env(make_pod(containers=[container]), container, services=[KUBERNETES])
    names = [k for k, _ in env]
    assert len(names) == len(set(names))
    assert dict(env)["KUBERNETES_SERVICE_HOST"] == "override"
    assert dict(env)["API"] == "https://override:443"
    assert names[:2] == ["KUBERNETES_SERVICE_HOST", "API"]  # defined names first, service vars after


# --- env, envFrom, ConfigMaps and Secrets ------------------------------------------------------------


def test_env_from_configmap_and_secret_with_prefix_and_decoding() -> None:
    container = {
        "name": "app",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "APP_"}, {"secretRef": {"name": "creds"}}],
    }
    assert env_of(container, configmaps=CONFIGMAPS, secrets=SECRETS) == {
        "APP_MODE": "prod",
        "APP_LEVEL": "3",
        "USER": "admin",
        "PASS": "s3cr$t",
    }


def test_env_overrides_env_from_and_later_definitions_win() -> None:
    container = {
        "name": "app",
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "env": [{"name": "MODE", "value": "dev"}, {"name": "X", "value": "1"}, {"name": "X", "value": "2"}],
    }
    env = container_env(make_pod(containers=[container]), container, configmaps=CONFIGMAPS)
    assert env == [("MODE", "dev"), ("LEVEL", "3"), ("X", "2")]


def test_env_values_expand_against_earlier_vars_only() -> None:
    container = {
        "name": "app",
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "env": [
            {"name": "A", "value": "$(MODE)-$(B)"},
            {"name": "B", "value": "b"},
            {"name": "C", "value": "$(A)/$(B)/$$(B)"},
            {"name": "EMPTY"},
        ],
    }
    env = env_of(container, configmaps=CONFIGMAPS)
    assert env["A"] == "prod-$(B)"
    assert env["C"] == "prod-$(B)/b/$(B)"
    assert env["EMPTY"] == ""


def test_value_from_configmap_and_secret_keys() -> None:
    container = {
        "name": "app",
        "env": [
            {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
            {"name": "P", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASS"}}},
            {"name": "NOT_EXPANDED", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASS"}}},
        ],
    }
    env = env_of(container, configmaps=CONFIGMAPS, secrets=SECRETS)
    assert env == {"M": "prod", "P": "s3cr$t", "NOT_EXPANDED": "s3cr$t"}


def test_secret_bytes_that_are_not_utf8_survive() -> None:
    secrets = {"bin": {"data": {"K": base64.b64encode(b"\xff\xfe").decode()}}}
    container = {"name": "app", "envFrom": [{"secretRef": {"name": "bin"}}]}
    assert env_of(container, secrets=secrets)["K"].encode("utf-8", "surrogateescape") == b"\xff\xfe"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"envFrom": [{"configMapRef": {"name": "x"}}]}, 'configmap "x" not found'),
        ({"envFrom": [{"secretRef": {"name": "s"}}]}, 'secret "s" not found'),
        (
            {"env": [{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "y"}}}]},
            'configmap "x" not found',
        ),
        ({"env": [{"name": "V", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}, 'secret "s" not found'),
        (
            {"env": [{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "y"}}}]},
            "couldn't find key y in ConfigMap default/cfg",
        ),
        (
            {"env": [{"name": "V", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]},
            "couldn't find key k in Secret default/creds",
        ),
    ],
)
def test_missing_references_fail_with_upstream_messages(source: Obj, message: str) -> None:
    assert config_error({"name": "app", **source}, configmaps=CONFIGMAPS, secrets=SECRETS) == message


def test_optional_references_are_skipped() -> None:
    container = {
        "name": "app",
        "envFrom": [
            {"configMapRef": {"name": "gone", "optional": True}},
            {"secretRef": {"name": "gone", "optional": True}},
            {"configMapRef": {"name": "cfg"}},
        ],
        "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": True}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nokey", "optional": True}}},
            # an optional miss leaves an earlier definition of the name alone
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nokey", "optional": True}}},
        ],
    }
    assert env_of(container, configmaps=CONFIGMAPS, secrets=SECRETS) == {"MODE": "prod", "LEVEL": "3"}


def test_env_from_skips_names_a_process_cannot_carry() -> None:
    configmaps = {"odd": {"data": {"ok.key-1": "v", "bad=key": "x", "tab\tkey": "y"}}}
    container = {"name": "app", "envFrom": [{"configMapRef": {"name": "odd"}}]}
    assert env_of(container, configmaps=configmaps) == {"ok.key-1": "v"}


# --- downward API: fieldRef -----------------------------------------------------------------------------


FIELD_POD = make_pod(
    meta={
        "labels": {"app": "web", "tier": "front"},
        "annotations": {"note": 'say "hi"\nbye', "example.com/Owner": "me"},
    },
    nodeName="node-a",
    serviceAccountName="builder",
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metadata.name", "web"),
        ("metadata.namespace", "default"),
        ("metadata.uid", "1234-abcd"),
        ("metadata.labels['app']", "web"),
        ("metadata.labels['missing']", ""),
        ("metadata.annotations['example.com/Owner']", "me"),
        ("metadata.labels", 'app="web"\ntier="front"'),
        ("metadata.annotations", 'example.com/Owner="me"\nnote="say \\"hi\\"\\nbye"'),
        ("spec.nodeName", "node-a"),
        ("spec.host", "node-a"),
        ("spec.serviceAccountName", "builder"),
        ("status.hostIP", "172.18.0.2"),
        ("status.hostIPs", "172.18.0.2,fc00:f853:ccd:e793::2"),
        ("status.podIP", "10.244.1.5"),
        ("status.podIPs", "10.244.1.5,fd00:10:244:1::5"),
    ],
)
def test_field_refs(path: str, expected: str) -> None:
    container = {
        "name": "app",
        "env": [{"name": "V", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}],
    }
    env = env_of(
        container,
        FIELD_POD,
        host_ips=["172.18.0.2", "fc00:f853:ccd:e793:0::2"],
        pod_ips=["fd00:10:244:1::5", "10.244.1.5"],
    )
    assert env["V"] == expected


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"fieldPath": "spec.restartPolicy"}, "unsupported fieldPath: spec.restartPolicy"),
        ({"fieldPath": "status.phase"}, "unsupported fieldPath: status.phase"),
        ({"fieldPath": "spec.containers"}, "field label not supported: spec.containers"),
        ({"fieldPath": "metadata.name['x']"}, "field label does not support subscript: metadata.name['x']"),
        ({"apiVersion": "v2", "fieldPath": "metadata.name"}, "unsupported pod version: v2"),
        ({"fieldPath": "status.hostIP"}, "host IP unknown; known addresses: []"),
    ],
)
def test_field_ref_errors(ref: Obj, message: str) -> None:
    container = {"name": "app", "env": [{"name": "V", "valueFrom": {"fieldRef": ref}}]}
    assert config_error(container) == message


def test_field_ref_rejects_invalid_subscript_keys() -> None:
    container = {
        "name": "app",
        "env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['-bad']"}}}],
    }
    assert config_error(container).startswith("invalid key subscript in metadata.labels['-bad']: name part must")


@pytest.mark.parametrize(
    ("pod_ips", "host_ips", "expected"),
    [
        (["fd00::5", "10.0.0.5"], [], ["10.0.0.5", "fd00::5"]),
        (["10.0.0.5", "fd00::5"], ["fc00::2", "172.18.0.2"], ["fd00::5", "10.0.0.5"]),
        (["10.0.0.5", "10.0.0.6", "junk"], ["172.18.0.2"], ["10.0.0.5"]),
        ([], ["172.18.0.2"], []),
    ],
)
def test_pod_ips_follow_the_node_family_preference(
    pod_ips: list[str], host_ips: list[str], expected: list[str]
) -> None:
    assert sort_pod_ips(pod_ips, host_ips) == expected


# --- downward API: resourceFieldRef --------------------------------------------------------------------


RESOURCES = {
    "limits": {"cpu": "1500m", "memory": "100M", "hugepages-2Mi": "4Mi"},
    "requests": {"cpu": "250m", "memory": "64Mi"},
}
ALLOCATABLE = {"cpu": "8", "memory": "16Gi", "ephemeral-storage": "50Gi"}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ({"resource": "limits.cpu"}, "2"),  # 1.5 cores rounded up
        ({"resource": "limits.cpu", "divisor": "1m"}, "1500"),
        ({"resource": "requests.cpu"}, "1"),
        ({"resource": "requests.cpu", "divisor": "1m"}, "250"),
        ({"resource": "requests.cpu", "divisor": "0"}, "1"),  # a zero divisor means 1
        ({"resource": "limits.memory"}, "100000000"),
        ({"resource": "limits.memory", "divisor": "1Mi"}, "96"),  # 95.37 rounded up
        ({"resource": "requests.memory", "divisor": "1Mi"}, "64"),
        ({"resource": "limits.hugepages-2Mi", "divisor": "1Mi"}, "4"),
        ({"resource": "requests.hugepages-2Mi"}, "0"),
        ({"resource": "limits.ephemeral-storage", "divisor": "1Gi"}, "50"),  # unset: node allocatable
        ({"resource": "requests.ephemeral-storage"}, "0"),
    ],
)
def test_resource_field_refs(ref: Obj, expected: str) -> None:
    container = {"name": "app", "resources": RESOURCES, "env": [{"name": "V", "valueFrom": {"resourceFieldRef": ref}}]}
    assert env_of(container, allocatable=ALLOCATABLE)["V"] == expected


def test_unset_or_zero_limits_read_as_node_allocatable() -> None:
    refs = [
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Gi"}}},
    ]
    container = {"name": "app", "resources": {"limits": {"cpu": "0"}}, "env": refs}
    assert env_of(container, allocatable=ALLOCATABLE) == {"CPU": "8", "MEM": "16"}
    assert env_of({"name": "app", "env": refs}, allocatable={}) == {"CPU": "0", "MEM": "0"}


def test_resource_field_ref_by_container_name() -> None:
    other = {"name": "sidecar", "resources": {"limits": {"memory": "32Mi"}}}
    init = {"name": "setup", "resources": {}}
    ref = {
        "name": "V",
        "valueFrom": {"resourceFieldRef": {"containerName": "sidecar", "resource": "limits.memory", "divisor": "1Mi"}},
    }
    init_ref = {"name": "W", "valueFrom": {"resourceFieldRef": {"containerName": "setup", "resource": "limits.cpu"}}}
    app = {"name": "app", "env": [ref, init_ref]}
    pod = make_pod(containers=[app, other], initContainers=[init])
    # init containers found by name keep their unset limits (upstream defaults regular containers only)
    assert dict(container_env(pod, app, allocatable=ALLOCATABLE)) == {"V": "32", "W": "0"}


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"resource": "limits.gpu"}, "unsupported container resource : limits.gpu"),
        ({"resource": "cpu"}, "unsupported container resource : cpu"),
        ({"containerName": "ghost", "resource": "limits.cpu"}, "container ghost not found"),
    ],
)
def test_resource_field_ref_errors(ref: Obj, message: str) -> None:
    container = {"name": "app", "env": [{"name": "V", "valueFrom": {"resourceFieldRef": ref}}]}
    assert config_error(container) == message


# --- resolv.conf ----------------------------------------------------------------------------------------


HOST_RESOLV = """# generated by the node
nameserver 192.168.1.1
nameserver 192.168.1.2
search corp.example. lab.example
options edns0 timeout:2
"""


def dns(
    pod: Obj, cluster_dns: tuple[str, ...] = ("10.96.0.10",), host: str | None = HOST_RESOLV, **kw: Any
) -> str | None:
    return resolv_conf(pod, cluster_dns=cluster_dns, cluster_domain=DOMAIN, host_resolv_conf=host, **kw)


def test_parse_resolv_conf() -> None:
    text = "nameserver 1.1.1.1\n  # comment\nsearch a.example\nsearch b.example. c\noptions ndots:2\nnameserver\nnameserver 8.8.8.8 extra\n"
    assert parse_resolv_conf(text) == (["1.1.1.1", "8.8.8.8"], ["b.example", "c"], ["ndots:2"])


def test_cluster_first_appends_the_node_search_list() -> None:
    assert dns(make_pod(namespace="shop")) == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )


def test_cluster_first_drops_duplicate_search_domains_and_works_without_a_cluster_domain() -> None:
    host = "nameserver 1.1.1.1\nsearch cluster.local other\n"
    assert dns(make_pod(), host=host) == (
        "search default.svc.cluster.local svc.cluster.local cluster.local other\nnameserver 10.96.0.10\noptions ndots:5\n"
    )
    config = pod_dns_config(make_pod(), cluster_dns=["10.96.0.10"], cluster_domain="", host_resolv_conf=host)
    assert config.searches == ("cluster.local", "other")


@pytest.mark.parametrize(
    ("policy", "host_network", "cluster"),
    [
        (None, False, True),
        ("ClusterFirst", False, True),
        ("ClusterFirst", True, False),  # hostNetwork pods fall back to Default
        ("ClusterFirstWithHostNet", True, True),
        ("ClusterFirstWithHostNet", False, True),
        ("Default", False, False),
    ],
)
def test_dns_policy_selects_cluster_or_node_dns(policy: str | None, host_network: bool, cluster: bool) -> None:
    spec: Obj = {"hostNetwork": host_network}
    if policy:
        spec["dnsPolicy"] = policy
    text = dns(make_pod(**spec))
    assert text is not None
    if cluster:
        assert text.startswith("search default.svc.cluster.local ")
        assert "nameserver 10.96.0.10\n" in text
    else:
        assert text == (
            "search corp.example lab.example\nnameserver 192.168.1.1\nnameserver 192.168.1.2\noptions edns0 timeout:2\n"
        )


def test_missing_cluster_dns_falls_back_to_default_with_a_warning() -> None:
    config = pod_dns_config(make_pod(), cluster_dns=[], cluster_domain=DOMAIN, host_resolv_conf=HOST_RESOLV)
    assert config.servers == ("192.168.1.1", "192.168.1.2")
    assert config.warnings == (
        'kubelet does not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" policy. '
        'Falling back to "Default" policy.',
    )


def test_default_policy_without_a_resolver_file_uses_localhost() -> None:
    pod = make_pod(dnsPolicy="Default")
    assert dns(pod, host=None) == "search .\nnameserver 127.0.0.1\n"
    assert dns(pod, host=None, node_ips=["172.18.0.2", "fc00::2"]) == "search .\nnameserver 127.0.0.1\nnameserver ::1\n"


def test_none_policy_uses_only_dns_config() -> None:
    pod = make_pod(
        dnsPolicy="None",
        dnsConfig={
            "nameservers": ["1.1.1.1", "1.1.1.1", "9.9.9.9"],
            "searches": ["a.example", "a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        },
    )
    assert dns(pod) == "search a.example\nnameserver 1.1.1.1\nnameserver 9.9.9.9\noptions ndots:2 edns0\n"
    assert dns(make_pod(dnsPolicy="None")) is None  # an empty config: the runtime copies the node's file


def test_dns_config_merges_into_cluster_first() -> None:
    pod = make_pod(
        dnsConfig={
            "nameservers": ["10.96.0.10", "8.8.8.8"],
            "searches": ["svc.cluster.local", "extra.example"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "single-request-reopen"}],
        }
    )
    assert dns(pod, host="") == (
        "search default.svc.cluster.local svc.cluster.local cluster.local extra.example\n"
        "nameserver 10.96.0.10\nnameserver 8.8.8.8\n"
        "options ndots:1 single-request-reopen\n"
    )


def test_nameservers_are_cut_to_three_with_a_warning() -> None:
    pod = make_pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]})
    config = pod_dns_config(pod, cluster_dns=[], cluster_domain=DOMAIN, host_resolv_conf=None)
    assert config.servers == ("1.1.1.1", "2.2.2.2", "3.3.3.3")
    assert config.warnings == (
        "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: "
        "1.1.1.1 2.2.2.2 3.3.3.3",
    )


@pytest.mark.parametrize(
    ("searches", "kept"),
    [
        ([f"d{i}.example" for i in range(40)], [f"d{i}.example" for i in range(32)]),
        (["ok.example", "x" * 254, "fine.example"], ["ok.example", "fine.example"]),
        ([f"{'a' * 200}{i:02d}.example" for i in range(12)], [f"{'a' * 200}{i:02d}.example" for i in range(9)]),
    ],
)
def test_search_list_limits(searches: list[str], kept: list[str]) -> None:
    pod = make_pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"], "searches": searches})
    config = pod_dns_config(pod, cluster_dns=[], cluster_domain=DOMAIN, host_resolv_conf=None)
    assert list(config.searches) == kept
    assert len(" ".join(config.searches)) <= 2048
    assert config.warnings == (
        "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: "
        + " ".join(kept),
    )


def test_search_list_within_limits_has_no_warning() -> None:
    pod = make_pod(
        dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"], "searches": [f"d{i}.ex" for i in range(32)]}
    )
    config = pod_dns_config(pod, cluster_dns=[], cluster_domain=DOMAIN, host_resolv_conf=None)
    assert len(config.searches) == 32
    assert config.warnings == ()


# --- hostname --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [
        ("web-0", {}, ("web-0", "")),
        ("web-0", {"hostname": "db"}, ("db", "")),
        ("web-0", {"subdomain": "peers"}, ("web-0", "web-0.peers.shop.svc.cluster.local")),
        ("web-0", {"hostname": "db", "subdomain": "peers"}, ("db", "db.peers.shop.svc.cluster.local")),
        ("a" * 70, {}, ("a" * 63, "")),
        ("a" * 61 + "--b", {}, ("a" * 61, "")),  # cut at 63, then trailing '-' trimmed
        ("a" * 62 + ".b.c", {}, ("a" * 62, "")),  # pod names may hold dots
    ],
)
def test_pod_hostname(name: str, spec: Obj, expected: tuple[str, str]) -> None:
    assert pod_hostname(make_pod(name=name, namespace="shop", **spec), cluster_domain=DOMAIN) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"hostname": "Bad_Name"}, 'pod Hostname "Bad_Name" is not a valid DNS label: a lowercase RFC 1123 label'),
        ({"subdomain": "-x"}, 'pod Subdomain "-x" is not a valid DNS label: a lowercase RFC 1123 label'),
    ],
)
def test_invalid_hostname_or_subdomain_fails_the_sandbox(spec: Obj, message: str) -> None:
    with pytest.raises(SandboxConfigError) as info:
        pod_hostname(make_pod(**spec), cluster_domain=DOMAIN)
    assert info.value.reason == CREATE_POD_SANDBOX_ERROR
    assert info.value.message.startswith(message)


def test_kernel_hostname_is_the_fqdn_only_when_asked_and_possible() -> None:
    assert kernel_hostname(make_pod(subdomain="peers"), cluster_domain=DOMAIN) == "web"
    assert kernel_hostname(make_pod(setHostnameAsFQDN=True), cluster_domain=DOMAIN) == "web"
    fqdn_pod = make_pod(subdomain="peers", setHostnameAsFQDN=True)
    assert kernel_hostname(fqdn_pod, cluster_domain=DOMAIN) == "web.peers.default.svc.cluster.local"


def test_kernel_hostname_refuses_an_fqdn_over_64_characters() -> None:
    pod = make_pod(name="w" * 40, subdomain="peers", setHostnameAsFQDN=True)
    fqdn = "w" * 40 + ".peers.default.svc.cluster.local"
    with pytest.raises(SandboxConfigError) as info:
        kernel_hostname(pod, cluster_domain=DOMAIN)
    assert info.value.message == (
        f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long "
        f"(64 characters is the max, {len(fqdn)} characters requested)"
    )


# --- /etc/hosts ------------------------------------------------------------------------------------------


LOCALHOST = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def test_managed_hosts_file() -> None:
    assert hosts_file(make_pod(), pod_ips=["10.244.1.5"], cluster_domain=DOMAIN) == LOCALHOST + "10.244.1.5\tweb\n"


def test_managed_hosts_file_with_subdomain_and_dual_stack() -> None:
    pod = make_pod(hostname="db-0", subdomain="db")
    assert hosts_file(pod, pod_ips=["10.244.1.5", "fd00:10:244:1::5"], cluster_domain=DOMAIN) == LOCALHOST + (
        "10.244.1.5\tdb-0.db.default.svc.cluster.local\tdb-0\n"
        "fd00:10:244:1::5\tdb-0.db.default.svc.cluster.local\tdb-0\n"
    )


def test_hosts_file_host_aliases_section() -> None:
    aliases = [{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]}, {"ip": "10.1.2.3", "hostnames": ["baz"]}]
    assert hosts_file(make_pod(hostAliases=aliases), pod_ips=["10.244.1.5"], cluster_domain=DOMAIN) == LOCALHOST + (
        "10.244.1.5\tweb\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tbaz\n"
    )


def test_host_network_hosts_file_is_the_node_file_plus_aliases() -> None:
    node_hosts = "127.0.0.1 localhost\n172.18.0.2 node-a\n"
    pod = make_pod(hostNetwork=True, hostAliases=[{"ip": "1.2.3.4", "hostnames": ["x"]}])
    assert hosts_file(pod, pod_ips=["172.18.0.2"], cluster_domain=DOMAIN, node_hosts_file=node_hosts) == (
        "# Kubernetes-managed hosts file (host network).\n"
        + node_hosts
        + "\n# Entries added by HostAliases.\n1.2.3.4\tx\n"
    )
    assert hosts_file(make_pod(hostNetwork=True), pod_ips=[], cluster_domain=DOMAIN, node_hosts_file=node_hosts) == (
        "# Kubernetes-managed hosts file (host network).\n" + node_hosts
    )

"""core/v1 Pod: defaults, upstream-worded validation errors, merge keys and table rows."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import yaml

from kubewire.api.fields import Path
from kubewire.api.pod import (
    POD,
    POD_SPEC_MERGE_KEYS,
    default_pod,
    image_tag,
    parse_quantity,
    prefixed,
    qos_class,
    validate_pod_template,
)
from kubewire.api.registry import Registry

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

# The "simple-pod" example of the Kubernetes docs (concepts/workloads/pods).
SIMPLE_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: nginx
  namespace: default
spec:
  containers:
  - name: nginx
    image: nginx:1.14.2
    ports:
    - containerPort: 80
"""


def pod(**spec_overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(SIMPLE_POD)
    obj["spec"].update(spec_overrides)
    return obj


def errors(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    default_pod(obj)
    if old is not None:
        default_pod(old)
    return [str(e) for e in POD.validate(obj, old)]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = obj["spec"]["containers"][0]
    return result


# --- defaulting ----------------------------------------------------------------------------------


def test_pod_defaults_match_upstream() -> None:
    obj = pod()
    default_pod(obj)
    spec = obj["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert container(obj) == {
        "name": "nginx",
        "image": "nginx:1.14.2",
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    assert "status" not in obj


def test_defaulting_keeps_unknown_fields_and_explicit_values() -> None:
    obj = pod(restartPolicy="Never", futureField={"x": 1})
    container(obj)["imagePullPolicy"] = "Never"
    default_pod(obj)
    assert obj["spec"]["restartPolicy"] == "Never"
    assert obj["spec"]["futureField"] == {"x": 1}
    assert container(obj)["imagePullPolicy"] == "Never"


def test_image_pull_policy_follows_the_tag() -> None:
    cases = {
        "nginx": "Always",
        "nginx:latest": "Always",
        "nginx:1.25": "IfNotPresent",
        "localhost:5000/nginx": "Always",
        "localhost:5000/nginx:v1": "IfNotPresent",
        "nginx@sha256:0123": "IfNotPresent",
    }
    for image, policy in cases.items():
        obj = pod()
        container(obj)["image"] = image
        default_pod(obj)
        assert container(obj)["imagePullPolicy"] == policy, image
    assert image_tag("registry.k8s.io/pause") == "latest"


def test_probe_and_http_get_defaults() -> None:
    obj = pod()
    container(obj)["livenessProbe"] = {"httpGet": {"port": 80}}
    container(obj)["readinessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 5}
    default_pod(obj)
    assert container(obj)["livenessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert container(obj)["readinessProbe"]["periodSeconds"] == 5


def test_requests_default_from_limits_and_volume_defaults() -> None:
    obj = pod(
        volumes=[
            {"name": "scratch"},
            {"name": "cfg", "configMap": {"name": "c"}},
            {"name": "h", "hostPath": {"path": "/x"}},
        ]
    )
    container(obj)["resources"] = {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m"}}
    container(obj)["env"] = [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    default_pod(obj)
    assert container(obj)["resources"]["requests"] == {"cpu": "250m", "memory": "128Mi"}
    assert container(obj)["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert obj["spec"]["volumes"] == [
        {"name": "scratch", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}},
        {"name": "h", "hostPath": {"path": "/x", "type": ""}},
    ]


def test_host_network_pods_default_host_ports() -> None:
    obj = pod(hostNetwork=True)
    default_pod(obj)
    assert container(obj)["ports"][0]["hostPort"] == 80
    assert errors(obj) == []


# --- validation ----------------------------------------------------------------------------------


def test_valid_pod_has_no_errors() -> None:
    assert errors(pod()) == []


def test_containers_required() -> None:
    assert errors(pod(containers=[])) == ["spec.containers: Required value"]


def test_container_name_rules_and_duplicates() -> None:
    obj = pod(
        containers=[{"name": "web", "image": "a"}, {"name": "web", "image": "b"}, {"name": "Web_1", "image": "c"}]
    )
    assert errors(obj) == [
        'spec.containers[1].name: Duplicate value: "web"',
        'spec.containers[2].name: Invalid value: "Web_1": a lowercase RFC 1123 label must consist of lower case '
        "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
        "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    ]


def test_image_required() -> None:
    obj = pod()
    del container(obj)["image"]
    assert errors(obj) == ["spec.containers[0].image: Required value"]


def test_container_port_errors() -> None:
    obj = pod()
    container(obj)["ports"] = [
        {"containerPort": 70000, "protocol": "HTTP", "name": "web"},
        {"containerPort": 0, "name": "web"},
        {"containerPort": 81, "name": "Has_Caps"},
        {"containerPort": 82, "name": "a-very-long-port-name"},
        {"containerPort": 83, "name": "1234"},
    ]
    assert errors(obj) == [
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
        'spec.containers[0].ports[1].name: Duplicate value: "web"',
        "spec.containers[0].ports[1].containerPort: Required value",
        'spec.containers[0].ports[2].name: Invalid value: "Has_Caps": must contain only alpha-numeric characters '
        "(a-z, 0-9), and hyphens (-)",
        'spec.containers[0].ports[3].name: Invalid value: "a-very-long-port-name": must be no more than 15 characters',
        'spec.containers[0].ports[4].name: Invalid value: "1234": must contain at least one letter (a-z)',
    ]


def test_env_var_names() -> None:
    obj = pod()
    container(obj)["env"] = [{"name": ""}, {"name": "A=B", "value": "x"}, {"name": "1-ok.since-relaxed"}]
    assert errors(obj) == [
        "spec.containers[0].env[0].name: Required value",
        'spec.containers[0].env[1].name: Invalid value: "A=B": a valid environment variable name must consist only '
        "of printable ASCII characters other than '='",
    ]


def test_restart_and_dns_policy_supported_values() -> None:
    assert errors(pod(restartPolicy="Sometimes", dnsPolicy="Google")) == [
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
        'spec.dnsPolicy: Unsupported value: "Google": supported values: "ClusterFirstWithHostNet", "ClusterFirst", '
        '"Default", "None"',
    ]


def test_resource_quantities() -> None:
    obj = pod()
    container(obj)["resources"] = {"limits": {"cpu": "1", "memory": "lots"}, "requests": {"cpu": "2", "gpu": "1"}}
    assert errors(obj) == [
        'spec.containers[0].resources.limits[memory]: Invalid value: "lots": quantities must match the regular '
        "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        'spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard resource for containers',
        # the request was defaulted from the (bad) limit
        'spec.containers[0].resources.requests[memory]: Invalid value: "lots": quantities must match the regular '
        "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1',
    ]
    assert parse_quantity("500m") == parse_quantity("0.5")
    assert parse_quantity("1Gi") == 1024**3
    assert parse_quantity("1e3") == 1000
    assert parse_quantity("1.5.1") is None


def test_probe_needs_exactly_one_handler() -> None:
    obj = pod()
    container(obj)["livenessProbe"] = {"initialDelaySeconds": 5}
    container(obj)["readinessProbe"] = {"exec": {"command": ["true"]}, "httpGet": {"port": 80}}
    container(obj)["startupProbe"] = {"tcpSocket": {"port": 80}, "successThreshold": 2}
    assert errors(obj) == [
        "spec.containers[0].livenessProbe: Required value: must specify a handler type",
        "spec.containers[0].readinessProbe.httpGet: Forbidden: may not specify more than 1 handler type",
        "spec.containers[0].startupProbe.successThreshold: Invalid value: 2: must be 1",
    ]


def test_volume_mounts_must_name_a_volume() -> None:
    obj = pod(volumes=[{"name": "data", "emptyDir": {}}])
    container(obj)["volumeMounts"] = [{"name": "data", "mountPath": "/d"}, {"name": "www", "mountPath": "/d"}]
    assert errors(obj) == [
        'spec.containers[0].volumeMounts[1].name: Not found: "www"',
        'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/d": must be unique',
    ]


def test_metadata_name_is_a_dns_subdomain() -> None:
    obj = pod()
    obj["metadata"]["name"] = "Web"
    assert errors(obj)[0].startswith('metadata.name: Invalid value: "Web": a lowercase RFC 1123 subdomain')


def test_pod_template_validation_reports_template_paths() -> None:
    template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}
    errs = [str(e) for e in validate_pod_template(template, Path("spec.template"))]
    assert "spec.template.spec.containers: Required value" in errs


# --- updates -------------------------------------------------------------------------------------


def test_image_update_is_allowed() -> None:
    new = pod()
    container(new)["image"] = "nginx:1.25"
    assert errors(new, pod()) == []


def test_other_spec_changes_are_forbidden() -> None:
    new = pod()
    container(new)["ports"][0]["containerPort"] = 8080
    errs = errors(new, pod())
    assert len(errs) == 1
    assert errs[0].startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
        "negative)\n"
    )


def test_adding_a_container_is_forbidden() -> None:
    new = pod()
    new["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    assert errors(new, pod()) == ["spec.containers: Forbidden: pod updates may not add or remove containers"]


def test_tolerations_may_only_be_added() -> None:
    base = [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]
    old = pod(tolerations=copy.deepcopy(base))
    added = pod(tolerations=[*copy.deepcopy(base), {"key": "b", "operator": "Exists"}])
    assert errors(added, copy.deepcopy(old)) == []
    changed = pod(tolerations=[{"key": "a", "operator": "Exists", "effect": "NoExecute"}])
    assert errors(changed, old) == [
        "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
    ]


def test_empty_and_absent_compare_equal_on_update() -> None:
    assert errors(pod(nodeSelector={}, tolerations=[]), pod()) == []


# --- table ---------------------------------------------------------------------------------------


def running_pod() -> dict[str, Any]:
    obj = pod(nodeName="node-1")
    obj["metadata"]["creationTimestamp"] = "2024-05-01T11:00:00Z"
    obj["status"] = {
        "phase": "Running",
        "podIP": "10.244.0.5",
        "podIPs": [{"ip": "10.244.0.5"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": "nginx",
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2024-05-01T11:00:05Z"}},
            }
        ],
    }
    return obj


def test_pod_columns_match_kubectl() -> None:
    assert [c.name for c in POD.columns] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
        "IP",
        "Node",
        "Nominated Node",
        "Readiness Gates",
    ]
    assert [c.priority for c in POD.columns] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert POD.columns[0].format == "name"


def test_running_pod_row() -> None:
    assert POD.row is not None
    assert POD.row(running_pod(), NOW) == [
        "nginx",
        "1/1",
        "Running",
        "0",
        "60m",
        "10.244.0.5",
        "node-1",
        "<none>",
        "<none>",
    ]


def test_crash_looping_pod_shows_waiting_reason_and_last_restart() -> None:
    obj = running_pod()
    obj["status"]["containerStatuses"] = [
        {
            "name": "nginx",
            "ready": False,
            "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:55:00Z"}},
        }
    ]
    assert POD.row is not None
    assert POD.row(obj, NOW)[1:4] == ["0/1", "CrashLoopBackOff", "5 (5m ago)"]


def test_completed_terminating_and_init_rows() -> None:
    assert POD.row is not None
    done = running_pod()
    done["status"]["phase"] = "Succeeded"
    done["status"]["containerStatuses"][0].update(
        ready=False, state={"terminated": {"exitCode": 0, "reason": "Completed"}}
    )
    assert POD.row(done, NOW)[1:3] == ["0/1", "Completed"]

    deleting = running_pod()
    deleting["metadata"]["deletionTimestamp"] = "2024-05-01T11:59:00Z"
    assert POD.row(deleting, NOW)[2] == "Terminating"

    init = pod(initContainers=[{"name": "setup", "image": "busybox"}])
    init["status"] = {
        "phase": "Pending",
        "initContainerStatuses": [{"name": "setup", "state": {"running": {}}}],
        "containerStatuses": [{"name": "nginx", "state": {"waiting": {"reason": "PodInitializing"}}}],
    }
    assert POD.row(init, NOW)[1:3] == ["0/1", "Init:0/1"]


def test_readiness_gates_and_nominated_node_cells() -> None:
    obj = running_pod()
    obj["spec"]["readinessGates"] = [{"conditionType": "example.com/ready"}, {"conditionType": "example.com/lb"}]
    obj["status"]["conditions"].append({"type": "example.com/ready", "status": "True"})
    obj["status"]["nominatedNodeName"] = "node-2"
    assert POD.row is not None
    assert POD.row(obj, NOW)[7:] == ["node-2", "1/2"]


# --- kind metadata -------------------------------------------------------------------------------


def test_field_selectors() -> None:
    obj = running_pod()
    default_pod(obj)
    values = {name: getter(obj) for name, getter in POD.field_selectors.items()}
    assert values == {
        "spec.nodeName": "node-1",
        "spec.restartPolicy": "Always",
        "spec.schedulerName": "default-scheduler",
        "spec.serviceAccountName": "",
        "spec.hostNetwork": "false",
        "status.phase": "Running",
        "status.podIP": "10.244.0.5",
        "status.nominatedNodeName": "",
    }


def test_merge_keys_follow_the_go_struct_tags() -> None:
    assert POD.merge_keys["spec.containers"] == "name"
    assert POD.merge_keys["spec.initContainers"] == "name"
    assert POD.merge_keys["spec.containers.ports"] == "containerPort"
    assert POD.merge_keys["spec.containers.env"] == "name"
    assert POD.merge_keys["spec.containers.volumeMounts"] == "mountPath"
    assert POD.merge_keys["spec.volumes"] == "name"
    assert POD.merge_keys["spec.imagePullSecrets"] == "name"
    assert POD.merge_keys["spec.hostAliases"] == "ip"
    assert POD.merge_keys["status.conditions"] == "type"
    assert "spec.tolerations" not in POD.merge_keys
    assert "spec.volumes" in POD.retain_keys
    assert prefixed("spec.template.spec", POD_SPEC_MERGE_KEYS)["spec.template.spec.containers.env"] == "name"


def test_kind_identity_and_lookup() -> None:
    assert (POD.api_version, POD.plural, POD.short_names, POD.categories) == ("v1", "pods", ("po",), ("all",))
    assert POD.subresources == frozenset({"status", "log"})
    assert POD.tracks_generation
    assert Registry([POD]).lookup("po") is POD


def test_qos_class() -> None:
    assert qos_class({"containers": [{"name": "a"}]}) == "BestEffort"
    guaranteed = {"limits": {"cpu": "1", "memory": "1Gi"}}
    assert qos_class({"containers": [{"name": "a", "resources": guaranteed}]}) == "Guaranteed"
    assert qos_class({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}) == "Burstable"

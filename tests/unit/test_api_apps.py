"""apps/v1 workloads: defaults, upstream-worded validation errors, merge keys and table rows."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import yaml

from kubewire.api.apps import CONTROLLER_REVISION, DAEMONSET, DEPLOYMENT, KINDS, REPLICASET, STATEFULSET, WORKLOAD_KINDS
from kubewire.api.meta import selector_string
from kubewire.api.registry import Kind, Registry

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

# Sample manifests from the Kubernetes docs (Deployments, StatefulSets and DaemonSet pages).
NGINX_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  namespace: default
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
"""

WEB_STATEFULSET = """
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: default
spec:
  selector:
    matchLabels:
      app: nginx
  serviceName: "nginx"
  replicas: 3
  minReadySeconds: 10
  template:
    metadata:
      labels:
        app: nginx
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.24
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ "ReadWriteOnce" ]
      storageClassName: "my-storage-class"
      resources:
        requests:
          storage: 1Gi
"""

FLUENTD_DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: fluentd-elasticsearch
  namespace: kube-system
  labels:
    k8s-app: fluentd-logging
spec:
  selector:
    matchLabels:
      name: fluentd-elasticsearch
  template:
    metadata:
      labels:
        name: fluentd-elasticsearch
    spec:
      tolerations:
      - key: node-role.kubernetes.io/control-plane
        operator: Exists
        effect: NoSchedule
      - key: node-role.kubernetes.io/master
        operator: Exists
        effect: NoSchedule
      containers:
      - name: fluentd-elasticsearch
        image: quay.io/fluentd_elasticsearch/fluentd:v2.5.2
        resources:
          limits:
            memory: 200Mi
          requests:
            cpu: 100m
            memory: 200Mi
        volumeMounts:
        - name: varlog
          mountPath: /var/log
      terminationGracePeriodSeconds: 30
      volumes:
      - name: varlog
        hostPath:
          path: /var/log
"""


def load(manifest: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(manifest)
    return obj


def replicaset() -> dict[str, Any]:
    obj = load(NGINX_DEPLOYMENT)
    obj["kind"] = "ReplicaSet"
    obj["metadata"]["name"] = "nginx-deployment-66b6c48dd5"
    return obj


def errors(kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    kind.default(obj)
    if old is not None:
        kind.default(old)
    return [str(e) for e in kind.validate(obj, old)]


# --- defaulting ----------------------------------------------------------------------------------


def test_deployment_defaults() -> None:
    obj = load(NGINX_DEPLOYMENT)
    del obj["spec"]["replicas"]
    DEPLOYMENT.default(obj)
    spec = obj["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    template_spec = spec["template"]["spec"]
    assert template_spec["restartPolicy"] == "Always"
    assert template_spec["dnsPolicy"] == "ClusterFirst"
    assert template_spec["schedulerName"] == "default-scheduler"
    assert template_spec["terminationGracePeriodSeconds"] == 30
    assert template_spec["securityContext"] == {}
    assert "enableServiceLinks" not in template_spec  # only Pods get it, as upstream
    assert template_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert template_spec["containers"][0]["ports"][0]["protocol"] == "TCP"


def test_recreate_strategy_gets_no_rolling_update() -> None:
    obj = load(NGINX_DEPLOYMENT)
    obj["spec"]["strategy"] = {"type": "Recreate"}
    DEPLOYMENT.default(obj)
    assert obj["spec"]["strategy"] == {"type": "Recreate"}
    assert DEPLOYMENT.validate(obj, None) == []


def test_replicaset_defaults() -> None:
    obj = replicaset()
    del obj["spec"]["replicas"]
    REPLICASET.default(obj)
    assert obj["spec"]["replicas"] == 1
    assert "strategy" not in obj["spec"]


def test_statefulset_defaults() -> None:
    obj = load(WEB_STATEFULSET)
    del obj["spec"]["replicas"]
    STATEFULSET.default(obj)
    spec = obj["spec"]
    assert spec["replicas"] == 1
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 10
    claim = spec["volumeClaimTemplates"][0]
    assert claim["spec"]["volumeMode"] == "Filesystem"
    assert claim["status"] == {"phase": "Pending"}


def test_daemonset_defaults() -> None:
    obj = load(FLUENTD_DAEMONSET)
    DAEMONSET.default(obj)
    assert obj["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert obj["spec"]["revisionHistoryLimit"] == 10
    assert obj["spec"]["template"]["spec"]["volumes"][0]["hostPath"] == {"path": "/var/log", "type": ""}


# --- validation ----------------------------------------------------------------------------------


def test_doc_samples_are_valid() -> None:
    assert errors(DEPLOYMENT, load(NGINX_DEPLOYMENT)) == []
    assert errors(REPLICASET, replicaset()) == []
    assert errors(STATEFULSET, load(WEB_STATEFULSET)) == []
    assert errors(DAEMONSET, load(FLUENTD_DAEMONSET)) == []


def test_selector_must_match_template_labels() -> None:
    obj = load(NGINX_DEPLOYMENT)
    obj["spec"]["template"]["metadata"]["labels"] = {"app": "x", "tier": "web"}
    assert errors(DEPLOYMENT, obj) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"x", "tier":"web"}: '
        "`selector` does not match template `labels`"
    ]


def test_missing_selector_is_required_and_never_matches() -> None:
    obj = load(NGINX_DEPLOYMENT)
    del obj["spec"]["selector"]
    assert errors(DEPLOYMENT, obj) == [
        "spec.selector: Required value",
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"nginx"}: '
        "`selector` does not match template `labels`",
    ]
    sts = load(WEB_STATEFULSET)
    del sts["spec"]["selector"]
    assert errors(STATEFULSET, sts)[0] == "spec.selector: Required value"
    ds = load(FLUENTD_DAEMONSET)
    del ds["spec"]["selector"]
    # Upstream's DaemonSet validation has no Required check: the nil selector just never matches.
    assert errors(DAEMONSET, ds) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"name":"fluentd-elasticsearch"}: '
        "`selector` does not match template `labels`"
    ]


def test_template_without_labels_prints_a_nil_map() -> None:
    obj = replicaset()
    del obj["spec"]["template"]["metadata"]
    assert errors(REPLICASET, obj) == [
        "spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not match template `labels`"
    ]


def test_empty_selector_is_invalid() -> None:
    obj = load(NGINX_DEPLOYMENT)
    obj["spec"]["selector"] = {"matchLabels": {}}
    assert errors(DEPLOYMENT, obj) == [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
    ]


def test_negative_replicas() -> None:
    obj = load(NGINX_DEPLOYMENT)
    obj["spec"]["replicas"] = -1
    assert errors(DEPLOYMENT, obj) == ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]


def test_template_restart_policy_must_be_always() -> None:
    obj = load(NGINX_DEPLOYMENT)
    obj["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert errors(DEPLOYMENT, obj) == [
        'spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"'
    ]
    ds = load(FLUENTD_DAEMONSET)
    ds["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    ds["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 10
    assert errors(DAEMONSET, ds) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
        "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported",
    ]


def test_template_pod_spec_is_validated() -> None:
    obj = load(NGINX_DEPLOYMENT)
    obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 0
    assert errors(DEPLOYMENT, obj) == ["spec.template.spec.containers[0].ports[0].containerPort: Required value"]


def test_strategy_type_supported_values() -> None:
    obj = load(NGINX_DEPLOYMENT)
    obj["spec"]["strategy"] = {"type": "BlueGreen"}
    assert errors(DEPLOYMENT, obj) == [
        'spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:"BlueGreen", '
        'RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: "Recreate", "RollingUpdate"'
    ]


def test_max_surge_and_max_unavailable_not_both_zero() -> None:
    obj = load(NGINX_DEPLOYMENT)
    obj["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}
    assert errors(DEPLOYMENT, obj) == [
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0"
    ]
    obj = load(NGINX_DEPLOYMENT)
    obj["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": "x", "maxUnavailable": "150%"}}
    assert errors(DEPLOYMENT, obj) == [
        "spec.strategy.rollingUpdate.maxSurge: Invalid value: x: a valid percent string must be a numeric string "
        "followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 150%: must not be greater than 100%",
    ]


def test_recreate_with_rolling_update_is_forbidden() -> None:
    obj = load(NGINX_DEPLOYMENT)
    obj["spec"]["strategy"] = {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}
    assert errors(DEPLOYMENT, obj) == [
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
    ]


def test_progress_deadline_must_exceed_min_ready() -> None:
    obj = load(NGINX_DEPLOYMENT)
    obj["spec"]["minReadySeconds"] = 600
    assert errors(DEPLOYMENT, obj) == [
        "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"
    ]


def test_selector_is_immutable() -> None:
    old = load(NGINX_DEPLOYMENT)
    new = load(NGINX_DEPLOYMENT)
    new["spec"]["selector"] = {"matchLabels": {"app": "nginx", "tier": "web"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "web"
    assert errors(DEPLOYMENT, new, old) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"nginx", "tier":"web"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    ]
    scaled = load(NGINX_DEPLOYMENT)
    scaled["spec"]["replicas"] = 5
    assert errors(DEPLOYMENT, scaled, load(NGINX_DEPLOYMENT)) == []


def test_daemonset_rolling_update_rules() -> None:
    obj = load(FLUENTD_DAEMONSET)
    obj["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}
    assert errors(DAEMONSET, obj) == [
        "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
    ]
    obj["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}
    assert errors(DAEMONSET, obj) == [
        "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"
    ]


def test_statefulset_rules() -> None:
    obj = load(WEB_STATEFULSET)
    obj["metadata"]["name"] = "web.v1"
    obj["spec"]["podManagementPolicy"] = "Random"
    obj["spec"]["updateStrategy"] = {"type": "OnDelete", "rollingUpdate": {"partition": 1}}
    errs = errors(STATEFULSET, obj)
    assert errs[0].startswith('metadata.name: Invalid value: "web.v1": a lowercase RFC 1123 label')
    assert errs[1:] == [
        "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'",
        "spec.updateStrategy.rollingUpdate: Invalid value: apps.RollingUpdateStatefulSetStrategy{Partition:1, "
        "MaxUnavailable:(*intstr.IntOrString)(nil)}: only allowed for updateStrategy 'RollingUpdate'",
    ]


def test_statefulset_updates_limited_to_some_fields() -> None:
    old = load(WEB_STATEFULSET)
    scaled = load(WEB_STATEFULSET)
    scaled["spec"]["replicas"] = 5
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.k8s.io/nginx-slim:0.25"
    assert errors(STATEFULSET, scaled, copy.deepcopy(old)) == []
    renamed = load(WEB_STATEFULSET)
    renamed["spec"]["serviceName"] = "other"
    assert errors(STATEFULSET, renamed, old) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
    ]


# --- tables --------------------------------------------------------------------------------------


def with_status(obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"]["creationTimestamp"] = "2024-05-01T11:58:00Z"
    obj["status"] = status
    return obj


def test_deployment_table() -> None:
    assert [c.name for c in DEPLOYMENT.columns] == [
        "Name",
        "Ready",
        "Up-to-date",
        "Available",
        "Age",
        "Containers",
        "Images",
        "Selector",
    ]
    obj = with_status(
        load(NGINX_DEPLOYMENT), {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    )
    assert DEPLOYMENT.row is not None
    assert DEPLOYMENT.row(obj, NOW) == ["nginx-deployment", "2/3", 3, 2, "2m", "nginx", "nginx:1.14.2", "app=nginx"]


def test_replicaset_table() -> None:
    assert [c.name for c in REPLICASET.columns] == [
        "Name",
        "Desired",
        "Current",
        "Ready",
        "Age",
        "Containers",
        "Images",
        "Selector",
    ]
    assert [c.type for c in REPLICASET.columns[1:4]] == ["integer"] * 3
    obj = with_status(replicaset(), {"replicas": 3, "readyReplicas": 1})
    assert REPLICASET.row is not None
    assert REPLICASET.row(obj, NOW) == [
        "nginx-deployment-66b6c48dd5",
        3,
        3,
        1,
        "2m",
        "nginx",
        "nginx:1.14.2",
        "app=nginx",
    ]


def test_statefulset_table() -> None:
    assert [c.name for c in STATEFULSET.columns] == ["Name", "Ready", "Age", "Containers", "Images"]
    obj = with_status(load(WEB_STATEFULSET), {"replicas": 2, "readyReplicas": 2})
    assert STATEFULSET.row is not None
    assert STATEFULSET.row(obj, NOW) == ["web", "2/3", "2m", "nginx", "registry.k8s.io/nginx-slim:0.24"]


def test_daemonset_table() -> None:
    assert [c.name for c in DAEMONSET.columns] == [
        "Name",
        "Desired",
        "Current",
        "Ready",
        "Up-to-date",
        "Available",
        "Node Selector",
        "Age",
        "Containers",
        "Images",
        "Selector",
    ]
    status = {
        "desiredNumberScheduled": 2,
        "currentNumberScheduled": 2,
        "numberReady": 1,
        "updatedNumberScheduled": 2,
        "numberAvailable": 1,
    }
    obj = with_status(load(FLUENTD_DAEMONSET), status)
    assert DAEMONSET.row is not None
    assert DAEMONSET.row(obj, NOW) == [
        "fluentd-elasticsearch",
        2,
        2,
        1,
        2,
        1,
        "<none>",
        "2m",
        "fluentd-elasticsearch",
        "quay.io/fluentd_elasticsearch/fluentd:v2.5.2",
        "name=fluentd-elasticsearch",
    ]
    obj["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    assert DAEMONSET.row(obj, NOW)[6] == "kubernetes.io/os=linux"


def test_selector_string_sorts_requirements_like_labels_selector() -> None:
    sel = {
        "matchLabels": {"tier": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert selector_string(sel) == "env in (dev,prod),!legacy,tier=web"
    assert selector_string({}) == ""


# --- kind metadata -------------------------------------------------------------------------------


def test_kind_metadata() -> None:
    registry = Registry(KINDS)
    assert registry.lookup("deploy") is DEPLOYMENT
    assert registry.lookup("rs") is REPLICASET
    assert registry.lookup("sts") is STATEFULSET
    assert registry.lookup("ds") is DAEMONSET
    assert registry.lookup("controllerrevisions") is CONTROLLER_REVISION
    assert [k.plural for k in WORKLOAD_KINDS] == ["deployments", "replicasets", "statefulsets", "daemonsets"]
    assert all(k.api_version == "apps/v1" and k.categories == ("all",) and k.tracks_generation for k in WORKLOAD_KINDS)
    assert (
        DEPLOYMENT.subresources == REPLICASET.subresources == STATEFULSET.subresources == frozenset({"status", "scale"})
    )
    assert DAEMONSET.subresources == frozenset({"status"})


def test_merge_metadata() -> None:
    for kind in WORKLOAD_KINDS:
        assert kind.merge_keys["spec.template.spec.containers"] == "name"
        assert kind.merge_keys["spec.template.spec.containers.ports"] == "containerPort"
        assert kind.merge_keys["spec.template.spec.volumes"] == "name"
        assert kind.merge_keys["status.conditions"] == "type"
        assert "spec.template.spec.volumes" in kind.retain_keys
    assert "spec.strategy" in DEPLOYMENT.retain_keys
    assert "spec.strategy" not in DAEMONSET.retain_keys


def test_replicaset_field_selector() -> None:
    obj = with_status(replicaset(), {"replicas": 2})
    assert REPLICASET.field_selectors["status.replicas"](obj) == "2"
    assert DEPLOYMENT.field_selectors == {}

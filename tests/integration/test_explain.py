"""``kubectl explain`` (OpenAPI v3) against kubewire, and apply still working once kubectl reads it."""

from __future__ import annotations

import json

from tests.conftest import REPO, Cluster, needs_kubectl

pytestmark = needs_kubectl


def explain(cluster: Cluster, path: str) -> list[list[str]]:
    """The output of ``kubectl explain <path>``, each line split into words."""
    return [line.split() for line in cluster.kubectl("explain", path).stdout.splitlines()]


def test_explain_service_ports(cluster: Cluster) -> None:
    lines = explain(cluster, "svc.spec.ports")
    assert ["KIND:", "Service"] in lines and ["VERSION:", "v1"] in lines
    assert ["FIELD:", "ports", "<[]ServicePort>"] in lines
    assert ["port", "<integer>", "-required-"] in lines
    assert ["targetPort", "<IntOrString>"] in lines
    assert ["protocol", "<string>"] in lines


def test_explain_deployment_strategy(cluster: Cluster) -> None:
    lines = explain(cluster, "deploy.spec.strategy")
    assert ["GROUP:", "apps"] in lines and ["KIND:", "Deployment"] in lines
    assert ["FIELD:", "strategy", "<DeploymentStrategy>"] in lines
    assert ["rollingUpdate", "<RollingUpdateDeployment>"] in lines
    surge = explain(cluster, "deploy.spec.strategy.rollingUpdate.maxSurge")
    assert ["FIELD:", "maxSurge", "<IntOrString>"] in surge


def test_explain_gateway_api_and_metallb(cluster: Cluster) -> None:
    rules = explain(cluster, "httproute.spec.rules")
    assert ["GROUP:", "gateway.networking.k8s.io"] in rules and ["KIND:", "HTTPRoute"] in rules
    assert ["FIELD:", "rules", "<[]Object>"] in rules
    assert ["backendRefs", "<[]Object>"] in rules and ["matches", "<[]Object>"] in rules
    path = explain(cluster, "httproute.spec.rules.matches.path.type")
    assert ["ENUM:"] in path and ["PathPrefix"] in path
    pool = explain(cluster, "ipaddresspool.spec")
    assert ["GROUP:", "metallb.io"] in pool and ["VERSION:", "v1beta1"] in pool
    assert ["addresses", "<[]string>", "-required-"] in pool and ["autoAssign", "<boolean>"] in pool


def test_explain_shared_meta_types(cluster: Cluster) -> None:
    meta = explain(cluster, "gateway.metadata")
    assert ["FIELD:", "metadata", "<ObjectMeta>"] in meta and ["labels", "<map[string]string>"] in meta
    limits = explain(cluster, "pods.spec.containers.resources.limits")
    assert ["FIELD:", "limits", "<map[string]Quantity>"] in limits


def test_every_served_resource_explains(cluster: Cluster) -> None:
    names = cluster.kubectl("api-resources", "-o", "name").stdout.split()
    assert "ipaddresspools.metallb.io" in names
    for name in names:
        out = cluster.kubectl("explain", name).stdout
        assert "DESCRIPTION:" in out and "FIELDS:" in out, name


def test_explain_unknown_field_is_an_error(cluster: Cluster) -> None:
    proc = cluster.kubectl("explain", "svc.spec.nope", check=False)
    assert proc.returncode != 0 and 'field "nope" does not exist' in proc.stderr


def test_apply_examples_still_works(cluster: Cluster) -> None:
    out = cluster.kubectl("apply", "-f", str(REPO / "examples")).stdout
    assert "deployment.apps/echo created" in out and "ipaddresspool.metallb.io/default created" in out
    again = cluster.kubectl("apply", "-f", str(REPO / "examples")).stdout
    assert "deployment.apps/echo unchanged" in again and "service/echo unchanged" in again
    # Client-side validation must not reject what kubewire accepts (it keeps unknown fields).
    cm = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"extra"},"data":{"a":"b"},"extra":1}'
    cluster.kubectl("apply", "-f", "-", input=cm)
    cluster.kubectl("create", "deployment", "made", "--image=nginx")
    assert json.loads(cluster.kubectl("get", "cm", "extra", "-o", "json").stdout)["data"] == {"a": "b"}

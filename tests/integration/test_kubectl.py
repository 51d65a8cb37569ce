"""The real kubectl, unmodified, against kubewire's API server started with ``kubewire up``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, Cluster, needs_kubectl

pytestmark = needs_kubectl
MANIFESTS = Path(__file__).parent / "manifests"


def test_discovery_and_api_resources(cluster: Cluster) -> None:
    out = cluster.kubectl("api-resources").stdout
    for line in ("services", "deployments", "endpointslices", "httproutes", "networkpolicies", "ipaddresspools"):
        assert line in out
    assert "svc" in out and "deploy" in out


def test_apply_examples_and_print_tables(cluster: Cluster) -> None:
    out = cluster.kubectl("apply", "-f", str(REPO / "examples")).stdout
    assert "deployment.apps/echo created" in out and "httproute.gateway.networking.k8s.io/echo created" in out
    svc = cluster.kubectl("get", "svc").stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    row = next(line.split() for line in svc if line.startswith("my-database "))
    assert row[1] == "ExternalName" and row[3] == "my.database.example.com"
    deploy = cluster.kubectl("get", "deploy", "-o", "wide").stdout.splitlines()
    assert deploy[0].split()[:4] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE"]
    gw = cluster.kubectl("get", "gateway,httproute").stdout
    assert "gateway.gateway.networking.k8s.io/gateway" in gw and "httproute.gateway.networking.k8s.io/echo" in gw
    again = cluster.kubectl("apply", "-f", str(REPO / "examples")).stdout
    assert "deployment.apps/echo unchanged" in again


def test_endpointslice_from_the_docs(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(MANIFESTS / "endpointslice.yaml"))
    out = cluster.kubectl("get", "endpointslices").stdout.splitlines()
    assert out[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert any(line.split()[:4] == ["my-service-1", "IPv4", "80", "10.1.2.3"] for line in out)


def test_output_formats(cluster: Cluster) -> None:
    cluster.kubectl("create", "configmap", "fmt", "--from-literal=a=b", check=False)
    cluster.kubectl(
        "apply", "-f", "-", input='{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fmt2"},"data":{"a":"b"}}'
    )
    obj = json.loads(cluster.kubectl("get", "cm", "fmt2", "-o", "json").stdout)
    assert obj["data"] == {"a": "b"} and obj["metadata"]["uid"]
    assert "kind: ConfigMap" in cluster.kubectl("get", "cm", "fmt2", "-o", "yaml").stdout
    assert cluster.kubectl("get", "cm", "fmt2", "-o", "jsonpath={.data.a}").stdout == "b"


def test_label_annotate_patch_scale(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(REPO / "examples" / "10-app.yaml"))
    cluster.kubectl("label", "deploy", "echo", "tier=backend")
    cluster.kubectl("annotate", "deploy", "echo", "owner=team-a")
    cluster.kubectl(
        "patch",
        "deploy",
        "echo",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"echo","image":"nginx:1.27"}]}}}}',
    )
    cluster.kubectl("patch", "deploy", "echo", "--type=merge", "-p", '{"metadata":{"labels":{"merge":"yes"}}}')
    cluster.kubectl(
        "patch", "deploy", "echo", "--type=json", "-p", '[{"op":"replace","path":"/spec/replicas","value":2}]'
    )
    cluster.kubectl("scale", "deploy", "echo", "--replicas=5")
    d = json.loads(cluster.kubectl("get", "deploy", "echo", "-o", "json").stdout)
    assert d["spec"]["replicas"] == 5
    assert d["metadata"]["labels"]["tier"] == "backend" and d["metadata"]["labels"]["merge"] == "yes"
    assert d["metadata"]["annotations"]["owner"] == "team-a"
    containers = d["spec"]["template"]["spec"]["containers"]
    assert (
        len(containers) == 1
        and containers[0]["image"] == "nginx:1.27"
        and containers[0]["ports"][0]["containerPort"] == 3000
    )


def test_server_side_apply_and_conflicts(cluster: Cluster) -> None:
    manifest = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ssa"},"data":{"a":"1"}}'
    cluster.kubectl("apply", "--server-side", "-f", "-", input=manifest)
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=other", "-f", "-", input=manifest.replace('"1"', '"2"'), check=False
    )
    conflict = cluster.kubectl(
        "apply", "--server-side", "--field-manager=other", "-f", "-", input=manifest.replace('"1"', '"3"'), check=False
    )
    assert conflict.returncode != 0 and "conflict" in conflict.stderr.lower()
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=other",
        "-f",
        "-",
        input=manifest.replace('"1"', '"3"'),
    )
    assert cluster.kubectl("get", "cm", "ssa", "-o", "jsonpath={.data.a}").stdout == "3"


def test_invalid_manifest_is_rejected_with_upstream_message(cluster: Cluster) -> None:
    bad = (
        '{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad-np"},'
        '"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":80}]}}'
    )
    proc = cluster.kubectl("apply", "-f", "-", input=bad, check=False)
    assert proc.returncode != 0
    assert (
        'The Service "bad-np" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. '
        "The range of valid ports is 30000-32767" in proc.stderr
    )
    assert cluster.kubectl("get", "svc", "bad-np", check=False).returncode != 0


def test_watch_sees_changes(cluster: Cluster) -> None:
    watch = subprocess.Popen(
        ["kubectl", "get", "cm", "-w", "--output-watch-events"],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        cluster.kubectl(
            "create", "-f", "-", input='{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"watched"}}'
        )
        for _ in range(200):
            line = watch.stdout.readline()
            if "watched" in line:
                assert line.split()[0] == "ADDED"
                break
        else:
            pytest.fail("the watch never reported the new ConfigMap")
    finally:
        watch.kill()
        watch.wait()


def test_describe_edit_and_cascading_delete(cluster: Cluster, tmp_path: Path) -> None:
    cluster.kubectl("apply", "-f", str(REPO / "examples" / "10-app.yaml"))
    desc = cluster.kubectl("describe", "svc", "echo").stdout
    assert "Name:" in desc and "echo" in desc and "Selector:" in desc
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/port: 80$/port: 8080/' \"$1\"\n")
    editor.chmod(0o755)
    env = {**cluster.env, "KUBE_EDITOR": str(editor)}
    subprocess.run(["kubectl", "edit", "svc", "echo"], env=env, check=True, capture_output=True, timeout=60)
    assert cluster.kubectl("get", "svc", "echo", "-o", "jsonpath={.spec.ports[0].port}").stdout == "8080"
    cluster.kubectl("delete", "deploy", "echo", "--cascade=foreground")
    assert cluster.kubectl("get", "deploy", "echo", check=False).returncode != 0


def test_namespaces_and_delete(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input='{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"scratch"}}')
    cluster.kubectl("apply", "-n", "scratch", "-f", str(REPO / "examples" / "10-app.yaml"))
    assert "echo" in cluster.kubectl("get", "deploy", "-n", "scratch").stdout
    cluster.kubectl("delete", "ns", "scratch")
    assert (
        cluster.kubectl("get", "deploy", "-n", "scratch").stderr.strip() == "No resources found in scratch namespace."
    )


def test_kubewire_cli_apply_and_get(cluster: Cluster) -> None:
    out = cluster.kubewire("apply", "-f", str(REPO / "examples" / "20-services.yaml")).stdout
    assert "service/my-lb serverside-applied" in out
    table = cluster.kubewire("get", "svc").stdout.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert cluster.kubewire("status").returncode == 0
    assert cluster.kubewire("kubeconfig").stdout.strip() == str(cluster.kubeconfig)


def test_imperative_create_commands_send_protobuf(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "imperative")
    cluster.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80", "-n", "imperative")
    cluster.kubectl("create", "service", "nodeport", "web", "--tcp=80:8080", "--node-port=30080", "-n", "imperative")
    cluster.kubectl("create", "configmap", "cfg", "--from-literal=a=b", "-n", "imperative")
    cluster.kubectl("create", "secret", "generic", "s", "--from-literal=p=q", "-n", "imperative")
    deploy = json.loads(cluster.kubectl("get", "deploy", "web", "-n", "imperative", "-o", "json").stdout)
    assert (
        deploy["spec"]["replicas"] == 3
        and deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 80
    )
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == "25%"  # defaulted by the server
    svc = json.loads(cluster.kubectl("get", "svc", "web", "-n", "imperative", "-o", "json").stdout)
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == 30080
    assert cluster.kubectl("get", "secret", "s", "-n", "imperative", "-o", "jsonpath={.data.p}").stdout == "cQ=="
    bad = cluster.kubectl(
        "create", "service", "nodeport", "bad", "--tcp=80:8080", "--node-port=80", "-n", "imperative", check=False
    )
    assert "provided port is not in the valid range" in bad.stderr
    cluster.kubectl("delete", "namespace", "imperative")

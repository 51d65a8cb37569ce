"""Shared helpers for the system tests: kubectl and kubewire against a cluster with real nodes."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster


def namespace_fixture(cluster_fixture: str) -> Any:
    """A per-test Kubernetes namespace in the module's cluster (deleted afterwards, even on failure)."""

    @pytest.fixture
    def ns(request: pytest.FixtureRequest) -> Iterator[str]:
        rt: Cluster = request.getfixturevalue(cluster_fixture)
        # A valid, unique namespace per test (parametrized names carry "[…]"; long ones are cut).
        base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")
        digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]
        name = f"{base[:50].strip('-')}-{digest}"
        rt.kubectl("create", "namespace", name)
        try:
            yield name
        finally:
            rt.kubectl("delete", "namespace", name, "--wait=false", check=False)

    return ns


def get(rt: Cluster, *args: str) -> Any:
    return json.loads(rt.kubectl("get", *args, "-o", "json").stdout)


def apply(rt: Cluster, ns: str, manifest: dict[str, Any]) -> None:
    rt.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def pod(name: str, image: str, node: str = "", **spec: Any) -> dict[str, Any]:
    container = {"name": "c", "image": image, **spec.pop("container", {})}
    body: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 2, **spec}
    if node:
        body["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": body}


def ready_pod(rt: Cluster, ns: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
    rt.kubectl("wait", "-n", ns, "--for=condition=Ready", f"pod/{name}", f"--timeout={int(timeout)}s")
    return dict(get(rt, "-n", ns, "pod", name))


def kexec(rt: Cluster, target: str, *cmd: str, ns: str = "default", timeout: float = 20) -> str:
    proc = subprocess.run(
        [*rt_cmd(rt), "exec", "-n", ns, target, "--", *cmd],
        env=rt.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"exec {target} {cmd} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def rt_cmd(rt: Cluster) -> list[str]:
    return [sys.executable, "-m", "kubewire.cli.main", "--name", rt.name]


def nodes(rt: Cluster) -> list[str]:
    return sorted(n["metadata"]["name"] for n in get(rt, "nodes")["items"])


def curl(rt: Cluster, target: str, url: str, ns: str = "default") -> str:
    return kexec(rt, target, "curl", "-sS", "-g", "--max-time", "5", url, ns=ns)


AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
NETEXEC = {"args": ["netexec"]}


def backends(
    c: Cluster,
    ns: str,
    app: str,
    placement: list[str],
    image: str = AGNHOST,
    container: dict[str, Any] | None = None,
    **spec: Any,
) -> list[dict[str, Any]]:
    """Pods ``app-0``, ``app-1`` … labelled ``app``, one per entry of ``placement`` (a node name each),
    Ready: agnhost netexec unless ``image`` and ``container`` say otherwise; ``spec`` goes into each
    pod's spec."""
    for i, node in enumerate(placement):
        body = pod(f"{app}-{i}", image, node, container=container or NETEXEC, **spec)
        body["metadata"]["labels"] = {"app": app}
        apply(c, ns, body)
    return [ready_pod(c, ns, f"{app}-{i}") for i in range(len(placement))]


def service(c: Cluster, ns: str, name: str, app: str, **spec: Any) -> dict[str, Any]:
    """A Service selecting ``app``, port ``http`` 80 -> 8080 unless ``spec`` says otherwise; as stored."""
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec},
    }
    apply(c, ns, body)
    return dict(get(c, "-n", ns, "svc", name))

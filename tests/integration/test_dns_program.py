"""``kubewire dns`` against a running control plane: the API watch, answers that follow it, reload.

The program runs as a child process on 127.0.0.1 ports chosen free for the test, with a Corefile
file of the test's own, against a control-plane-only cluster (no root needed); it is always
stopped, by its pid.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.conftest import Cluster, needs_kubectl, start_cluster, stop_cluster, wait_for
from tests.integration.test_workloads import free_port

pytestmark = needs_kubectl
HOST = "127.0.0.1"


def corefile(port: int, ready: int, ttl: int) -> str:
    return f""".:{port} {{
    ready {HOST}:{ready}
    kubernetes cluster.local {{
        ttl {ttl}
    }}
}}
"""


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path, int, int]]:
    tmp = tmp_path_factory.mktemp("dnsprog")
    cluster = start_cluster(tmp, "kwdnsp")
    port, ready = free_port(udp_too=True), free_port()
    conf = tmp / "Corefile"
    conf.write_text(corefile(port, ready, 5))
    argv = [sys.executable, "-m", "kubewire.cli.main", "--name", cluster.name, "dns", "-conf", str(conf)]
    argv += ["--kubeconfig", str(cluster.kubeconfig), "--listen", HOST, "--lameduck", "0"]
    proc = subprocess.Popen(argv, env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the DNS program to be ready", lambda: _ready(ready) or proc.poll() is not None)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield cluster, conf, port, ready
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stop_cluster(cluster)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def ask(port: int, name: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, "A"), HOST, port=port, timeout=3)


def test_answers_follow_the_api(running: tuple[Cluster, Path, int, int]) -> None:
    cluster, _, port, _ = running
    name = "web.default.svc.cluster.local"
    assert ask(port, name).rcode() == dns.rcode.NXDOMAIN
    cluster.kubectl("create", "service", "clusterip", "web", "--tcp=80")
    ip = json.loads(cluster.kubectl("get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    answer = wait_for("the new Service's A record", lambda: (lambda m: m if m.answer else None)(ask(port, name)))
    assert [r.to_text() for r in answer.answer[0]] == [ip] and answer.answer[0].ttl == 5
    cluster.kubectl("delete", "service", "web")
    wait_for("NXDOMAIN once it is deleted", lambda: ask(port, name).rcode() == dns.rcode.NXDOMAIN)


def test_an_edited_corefile_is_reloaded(running: tuple[Cluster, Path, int, int]) -> None:
    cluster, conf, port, ready = running
    cluster.kubectl("create", "service", "clusterip", "again", "--tcp=80")
    name = "again.default.svc.cluster.local"
    wait_for("the A record", lambda: ask(port, name).answer)
    conf.write_text(corefile(port, ready, 30))
    # The reload serves the same port again with the new TTL (CoreDNS's reload plugin).
    wait_for("answers with the new TTL", lambda: (lambda m: m.answer and m.answer[0].ttl == 30)(_try(port, name)))


def _try(port: int, name: str) -> dns.message.Message:
    try:
        return ask(port, name)
    except (OSError, dns.exception.Timeout):
        return dns.message.Message()

"""Acknowledged writes survive ``kill -9`` of the control plane, and watches resume after it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from kubewire.client.http import HttpClient
from kubewire.errors import StatusError
from tests.conftest import kind, start_cluster, stop_cluster

CM = kind("configmaps")


def _pid(state_dir: Path, name: str) -> int:
    return int((state_dir / name / "controlplane.pid").read_text())


def _wait_dead(pid: int) -> None:
    for _ in range(500):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        asyncio.run(asyncio.sleep(0.01))
    raise AssertionError(f"process {pid} did not die")


def test_kill_minus_nine_loses_no_acknowledged_write(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path, "durable")
    try:
        acknowledged: list[str] = []

        async def write_until_killed() -> str:
            client = HttpClient.from_kubeconfig(cluster.kubeconfig)
            last_rv = ""
            try:
                for i in range(400):
                    if i == 150:
                        os.kill(_pid(tmp_path, "durable"), signal.SIGKILL)
                    name = f"cm-{i}"
                    try:
                        obj = await client.create(
                            CM,
                            {
                                "apiVersion": "v1",
                                "kind": "ConfigMap",
                                "metadata": {"name": name, "namespace": "default"},
                                "data": {"i": str(i)},
                            },
                        )
                    except (StatusError, OSError, Exception):
                        break
                    acknowledged.append(name)
                    if i == 100:
                        last_rv = obj["metadata"]["resourceVersion"]
            finally:
                await client.close()
            return last_rv

        resume_from = asyncio.run(write_until_killed())
        assert len(acknowledged) >= 150
        _wait_dead(_pid(tmp_path, "durable"))
        cluster.kubewire("up", "--no-nodes")

        async def verify() -> None:
            client = HttpClient.from_kubeconfig(cluster.kubeconfig)
            try:
                items, _ = await client.list(CM, "default")
                names = {o["metadata"]["name"] for o in items}
                missing = [n for n in acknowledged if n not in names]
                assert not missing, f"lost acknowledged writes: {missing[:5]}"
                seen = []
                async for ev in client.watch(CM, "default", resource_version=resume_from):
                    seen.append(ev.object["metadata"]["name"])
                    if ev.object["metadata"]["name"] == acknowledged[-1]:
                        break
                assert seen[0] == "cm-101"  # the watch resumed exactly after the revision it had
            finally:
                await client.close()

        asyncio.run(asyncio.wait_for(verify(), timeout=60))
    finally:
        stop_cluster(cluster)


def test_up_is_idempotent_and_clusters_are_independent(tmp_path: Path) -> None:
    a = start_cluster(tmp_path, "alpha")
    b = start_cluster(tmp_path, "beta")
    try:
        pid = _pid(tmp_path, "alpha")
        a.kubewire("up", "--no-nodes")
        assert _pid(tmp_path, "alpha") == pid  # adopted, not restarted
        a.kubectl(
            "create", "-f", "-", input='{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"only-in-alpha"}}'
        )
        assert b.kubectl("get", "cm", "only-in-alpha", check=False).returncode != 0
    finally:
        stop_cluster(a)
        stop_cluster(b)
    assert not (tmp_path / "alpha").exists() and not (tmp_path / "beta").exists()


def test_failed_start_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        state = tmp_path / "broken"
        state.mkdir()
        (state / "port").write_text(f"{blocker.getsockname()[1]}\n")
        from tests.conftest import Cluster

        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["KUBEWIRE_STATE_DIR"] = str(tmp_path)
        c = Cluster("broken", tmp_path, env)
        proc = c.kubewire("up", "--no-nodes", "--timeout", "10", check=False)
        assert proc.returncode != 0
        assert "did not start" in proc.stderr and "address already in use" in proc.stderr.lower()
        assert not (state / "controlplane.pid").exists()
    finally:
        blocker.close()

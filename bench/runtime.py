"""Cluster runtime benchmark: from ``kubewire up`` to N pods Ready, and memory per pod.

For each size (10 and 100 pods on 3 nodes): a fresh cluster in a private state directory, started
with ``kubewire up --nodes 3``; then a Deployment of N echo pods (the Gateway API echo backend,
with a readiness probe, as in the example app) is applied and the clock stops when the Deployment
reports N ready replicas.  Memory per pod is the RSS of every process inside the pods' network
namespaces divided by N; the node agents' RSS is printed separately.  Needs root.

    sudo .venv/bin/python bench/runtime.py [--sizes 10,100]

There is no peer to run beside it here (kind needs Docker); kind's own figure for an empty cluster
is 12–17 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubewire.host import process


def kw(env: dict[str, str], name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubewire.cli.main", "--name", name, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def deployment(n: int) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "bench"},
            "spec": {
                "replicas": n,
                "selector": {"matchLabels": {"app": "bench"}},
                "template": {
                    "metadata": {"labels": {"app": "bench"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "echo",
                                "image": "gcr.io/k8s-staging-gateway-api/echo-basic:v20231214-v1.0.0-140-gf544a46e",
                                "ports": [{"name": "http", "containerPort": 3000}],
                                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                            }
                        ]
                    },
                },
            },
        }
    )


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages (the zygote's preloaded code) split among sharers."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pids_in(netns: list[str]) -> list[int]:
    return process.pids_in_netns({i for i in (process.netns_inode(n) for n in netns) if i is not None})


def run(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        name = f"kwbench{n}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env.update(KUBEWIRE_STATE_DIR=tmp, HOME=tmp, KUBECONFIG=f"{tmp}/{name}/kubeconfig")
        t0 = time.monotonic()
        up = kw(env, name, "up", "--nodes", "3")
        t_up = time.monotonic() - t0
        if up.returncode != 0:
            raise SystemExit(f"kubewire up failed: {up.stderr}")
        try:
            subprocess.run(
                ["kubectl", "apply", "-f", "-"],
                input=deployment(n),
                env=env,
                text=True,
                check=True,
                capture_output=True,
            )
            # One watching kubectl, not a polling loop: kubectl's own start-up would eat the CPU measured.
            subprocess.run(
                ["kubectl", "wait", f"--for=jsonpath={{.status.readyReplicas}}={n}", "deploy/bench", "--timeout=120s"],
                env=env,
                check=True,
                capture_output=True,
            )
            ready = n
            t_ready = time.monotonic() - t0
            owned = (Path(tmp) / name / "netns.owned").read_text().split()
            pod_ns = [x for x in owned if "-pod-" in x]
            pod_pids = pids_in(pod_ns)
            pod_rss = sum(rss_kib(p) for p in pod_pids)
            pod_pss = sum(pss_kib(p) for p in pod_pids)
            agents = [int((d / "agent.pid").read_text().split()[0]) for d in (Path(tmp) / name / "nodes").iterdir()]
            agent_rss = sum(rss_kib(p) for p in agents)
            return {
                "pods": n,
                "ready": ready,
                "up_s": t_up,
                "up_to_all_ready_s": t_ready,
                "rss_per_pod_mib": pod_rss / 1024 / max(1, len(pod_ns)),
                "pss_per_pod_mib": pod_pss / 1024 / max(1, len(pod_ns)),
                "node_agents_rss_mib": agent_rss / 1024,
            }
        finally:
            kw(env, name, "down")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100")
    ap.add_argument("--runs", type=int, default=3, help="fresh clusters per size (the median is reported too)")
    args, _ = ap.parse_known_args()
    if os.geteuid() != 0:
        print("bench/runtime.py: skipped (network namespaces need root)")
        return
    print("kubewire runtime: kubewire up --nodes 3, then a Deployment of N echo pods with readiness probes")
    print(
        f"{'pods':>5} {'run':>4} {'up (s)':>8} {'up→all Ready (s)':>17} {'RSS/pod (MiB)':>14} "
        f"{'PSS/pod (MiB)':>14} {'agents RSS (MiB)':>17}"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        results = []
        for i in range(args.runs):
            r = run(n)
            results.append(r)
            print(
                f"{n:>5} {i + 1:>4} {r['up_s']:>8.2f} {r['up_to_all_ready_s']:>17.2f} "
                f"{r['rss_per_pod_mib']:>14.1f} {r['pss_per_pod_mib']:>14.1f} {r['node_agents_rss_mib']:>17.1f}"
            )
        up = statistics.median(r["up_s"] for r in results)
        ready = statistics.median(r["up_to_all_ready_s"] for r in results)
        print(f"{n:>5} {'med':>4} {up:>8.2f} {ready:>17.2f}")


if __name__ == "__main__":
    main()

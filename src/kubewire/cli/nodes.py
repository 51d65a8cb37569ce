"""The CLI's side of the cluster runtime: bring nodes up and down, exec into namespaces, stop nodes.

``up`` builds the topology (idempotently) and starts a node agent per node; ``down`` stops the
agents, then removes every owned namespace with whatever still runs inside; ``exec`` enters a
pod's, a node's or the client's namespaces and ``exec``s the command, so the terminal and stdin
are the user's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from kubewire.agents import topology
from kubewire.agents.kubelet.sandbox import pod_netns
from kubewire.agents.kubelet.state import pod_dir_name
from kubewire.api.pod import POD
from kubewire.cli.lifecycle import LifecycleError, daemon_env, require_running
from kubewire.cli.state import ClusterState
from kubewire.client.http import HttpClient
from kubewire.errors import StatusError
from kubewire.host import process
from kubewire.host.netlink import Iproute, NetlinkError


def require_root() -> None:
    if os.geteuid() != 0:
        raise LifecycleError(
            "nodes and pods are network namespaces, which need root: run as root, or use --no-nodes for the "
            "control plane alone"
        )


def cluster_topology(state: ClusterState) -> topology.Topology:
    settings = state.settings()
    names = topology.saved(state.dir)
    count = len(names) or int(settings.get("nodes") or 0)
    topo = topology.plan(state.name, state.network(), count, int(settings.get("zones") or 1), state.dir)
    labels = settings.get("nodeLabels") or []
    if labels:
        nodes = tuple(replace(n, labels=dict(labels[i]) if i < len(labels) else {}) for i, n in enumerate(topo.nodes))
        topo = topology.Topology(topo.cluster, topo.network, nodes, topo.state_dir)
    return topo


def start_nodes(state: ClusterState) -> None:
    """Build what is missing of the topology and start the node agents (they wait for the API)."""
    topo = cluster_topology(state)
    try:
        asyncio.run(topology.build(topo, Iproute()))
    except topology.TopologyError as e:
        raise LifecycleError(str(e)) from None
    env = daemon_env(state)
    for node in topo.nodes:
        if not topology.is_stopped(node):
            topology.start_agent(state.name, node, env)


def wait_nodes(state: ClusterState, timeout: float) -> None:
    """Wait until every running node's agent has registered and is ready for pods."""
    topo = cluster_topology(state)
    late = topology.wait_agents([n for n in topo.nodes if not topology.is_stopped(n)], timeout)
    if late:
        tails = []
        for name in late:
            log = topo.node(name).node_dir / "agent.log"
            lines = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else ["(no log)"]
            tails.append(f"--- {name} ---\n" + "\n".join(lines))
        raise LifecycleError("node agents did not become ready:\n" + "\n".join(tails))


def down_nodes(state: ClusterState) -> list[str]:
    if not state.exists():
        return []
    topo = cluster_topology(state)
    for node in topo.nodes:
        topology.stop_agent(node)
    if os.geteuid() != 0:
        return []
    return asyncio.run(topology.destroy(state.dir, Iproute()))


def node_summary(state: ClusterState) -> str:
    """One line per node: its address and whether its agent runs, is stopped, or is down."""
    topo = cluster_topology(state)
    out = []
    for node in topo.nodes:
        if topology.is_stopped(node):
            what = "stopped (kubewire node start " + node.name + ")"
        elif topology.agent_pid(node) is not None:
            what = f"running (agent pid {topology.agent_pid(node)})"
        else:
            what = "agent down ('kubewire up' restarts it)"
        out.append(f"  node {node.name} {node.addresses[0]} {node.zone}: {what}\n")
    return "".join(out)


def proxy_rules(state: ClusterState, node: str = "") -> str:
    """The node's kube-proxy tables, as ``nft list table`` prints them (one per address family)."""
    require_running(state)
    topo = cluster_topology(state)
    try:
        config = topo.node(node) if node else topo.nodes[0]
    except (KeyError, IndexError):
        raise LifecycleError(f'nodes "{node}" not found') from None
    from kubewire.dataplane.proxy.nft import TABLE
    from kubewire.host.nft import NftCli, NftError

    mode = state.network().proxy_mode
    out = [f"# node {config.name} ({config.netns}), kube-proxy mode {mode}\n"]
    if mode == "iptables":
        from kubewire.host.iptables import IptablesCli, IptablesError

        for version in (4, 6):
            try:
                out.append(asyncio.run(IptablesCli().save(version, config.netns)))
            except IptablesError as e:
                out.append(f"# ip{'6' if version == 6 else ''}tables-save: {e}\n")
        return "".join(out)
    for family in ("ip", "ip6"):
        try:
            out.append(asyncio.run(NftCli().list_table(family, TABLE, config.netns)))
        except NftError as e:
            out.append(f"# table {family} {TABLE}: {e}\n")
    return "".join(out)


def node_action(state: ClusterState, name: str, action: str) -> None:
    require_running(state)
    topo = cluster_topology(state)
    try:
        topo.node(name)
    except KeyError:
        raise LifecycleError(
            f"node {name!r} is not a node of cluster {state.name!r} (nodes: {', '.join(n.name for n in topo.nodes)})"
        ) from None
    try:
        asyncio.run(topology.set_node_running(topo, name, action == "start", Iproute()))
    except NetlinkError as e:
        raise LifecycleError(str(e)) from None
    if action == "start" and topology.agent_pid(topo.node(name)) is None:
        topology.start_agent(state.name, topo.node(name), daemon_env(state))


async def _pod(state: ClusterState, namespace: str, name: str) -> dict[str, object]:
    client = HttpClient.from_socket(state.dir / "apiserver.sock")
    try:
        return await client.get(POD, name, namespace)
    finally:
        await client.close()


async def _deployment_pod(state: ClusterState, namespace: str, name: str) -> dict[str, object]:
    """A running pod of the Deployment, as ``kubectl exec deploy/NAME`` picks one."""
    client = HttpClient.from_socket(state.dir / "apiserver.sock")
    try:
        from kubewire.api.apps import DEPLOYMENT  # not in the agents' start-up path

        dep = await client.get(DEPLOYMENT, name, namespace)
        labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods, _ = await client.list(POD, namespace, label_selector=selector)
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        if not running:
            raise LifecycleError(f'no running pod of deployment "{name}"')
        return sorted(running, key=lambda p: str(p["metadata"]["name"]))[0]
    finally:
        await client.close()


def exec_target(
    state: ClusterState, target: str, namespace: str, container: str = ""
) -> tuple[process.Sandbox, dict[str, str] | None]:
    """The namespaces of ``kubewire exec TARGET``, and for a pod the container's environment (as
    ``kubectl exec`` gives it: the image's and the pod spec's variables, the downward API's values)."""
    topo = cluster_topology(state)
    if target == "client":
        return process.Sandbox(netns=topo.client), None
    if target.startswith(("node/", "nodes/")):
        name = target.split("/", 1)[1]
        try:
            return process.Sandbox(netns=topo.node(name).netns, hostname=name), None
        except KeyError:
            raise LifecycleError(f'nodes "{name}" not found') from None
    name = target.split("/", 1)[1] if target.startswith(("pod/", "pods/")) else target
    try:
        if target.startswith(("deploy/", "deployment/", "deployments/")):
            pod = asyncio.run(_deployment_pod(state, namespace, target.split("/", 1)[1]))
            name = pod["metadata"]["name"]  # type: ignore[index]
        else:
            pod = asyncio.run(_pod(state, namespace, name))
    except StatusError as e:
        raise LifecycleError(e.message) from None
    meta: dict[str, str] = pod["metadata"]  # type: ignore[assignment]
    spec: dict[str, object] = pod.get("spec") or {}  # type: ignore[assignment]
    node = str(spec.get("nodeName") or "")
    pod_dir = state.dir / "nodes" / node / "pods" / pod_dir_name(namespace, name, meta["uid"])
    if not node or not (pod_dir / "hosts").exists():
        raise LifecycleError(f'pod "{name}" has no running sandbox yet (phase {(pod.get("status") or {})})')
    mounts = tuple((str(pod_dir / f), f"/etc/{f}") for f in ("resolv.conf", "hosts", "hostname"))
    names = [str(c.get("name")) for c in spec.get("containers") or []]  # type: ignore[attr-defined]
    if container and container not in names:
        raise LifecycleError(f"container {container} is not valid for pod {name}")
    env = _container_env(pod_dir / (container or names[0]) / "env.json") if names else None
    if spec.get("hostNetwork"):
        return process.Sandbox(netns=topo.node(node).netns, mounts=mounts, hostname=node), env
    hostname = (pod_dir / "hostname").read_text().strip()
    return process.Sandbox(netns=pod_netns(state.name, meta["uid"]), mounts=mounts, hostname=hostname), env


def _container_env(path: Path) -> dict[str, str] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {str(k): str(v) for k, v in data.items()}


def exec_into(state: ClusterState, target: str, namespace: str, command: list[str], container: str = "") -> int:
    require_root()
    require_running(state)
    argv = command[1:] if command[:1] == ["--"] else command
    box, env = exec_target(state, target, namespace, container)
    try:
        process.enter(box)
    except OSError as e:
        raise LifecycleError(f"cannot enter {target}: {e}") from None
    argv = argv or ["sh"]
    sys.stdout.flush()
    if env is not None:
        env = {**env, **{k: os.environ[k] for k in ("TERM", "COLUMNS", "LINES") if k in os.environ}}
    try:
        if env is None:
            os.execvp(argv[0], argv)
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        print(f'error: exec: "{argv[0]}": {e.strerror}', file=sys.stderr)
        return 127
    return 0  # not reached


async def wait_examples(state: ClusterState, timeout: float) -> str:
    """Wait (bounded) for the example Deployment's pods to be Ready; says how long it took."""
    client = HttpClient.from_socket(state.dir / "apiserver.sock")
    from kubewire.api.apps import DEPLOYMENT

    kind = DEPLOYMENT
    start = time.monotonic()
    try:
        while time.monotonic() - start < timeout:
            try:
                dep = await client.get(kind, "echo", "default")
            except StatusError:
                dep = {}
            want = int((dep.get("spec") or {}).get("replicas") or 0)
            ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
            if want and ready >= want:
                return f"example app ready: {ready}/{want} echo pods in {time.monotonic() - start:.1f}s"
            await asyncio.sleep(0.1)
        return "example app not ready yet; see 'kubectl get pods'"
    finally:
        await client.close()

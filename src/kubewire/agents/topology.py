"""A cluster's machines: the fabric, the client and the node namespaces, and their agents.

``kubewire up`` asks for N nodes spread over Z zones; this module turns that into names and
addresses (kind's shapes: ``<cluster>-worker``, ``<cluster>-worker2``, …, nodes at 172.18.0.2 and
up, the client at 172.18.0.1), creates what is missing, and starts one node agent per node inside
its namespace.  Creating is idempotent: a namespace that exists is adopted as it is, a live agent
(pid and start time match) is left running.  ``destroy`` is the inverse, driven by the registry of
owned namespaces: it ends every process living in them, then deletes them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kubewire.agents.nodeconfig import NodeConfig
from kubewire.api.netconfig import ClusterNetwork
from kubewire.dataplane import podnet
from kubewire.host import process
from kubewire.host.netlink import Netlink, NetlinkError, apply_all
from kubewire.host.owned import Owned

ZONES = "abcdefghijklmnopqrstuvwxyz"


def node_names(cluster: str, count: int) -> list[str]:
    return [f"{cluster}-worker" + (str(i + 1) if i else "") for i in range(count)]


def zone_name(index: int, zones: int) -> str:
    return f"zone-{ZONES[index % max(1, zones)]}"


@dataclass(frozen=True)
class Topology:
    cluster: str
    network: ClusterNetwork
    nodes: tuple[NodeConfig, ...]
    state_dir: Path

    @property
    def fabric(self) -> str:
        return podnet.netns_name(self.cluster, "fabric")

    @property
    def client(self) -> str:
        return podnet.netns_name(self.cluster, "client")

    def prefixes(self) -> tuple[int, ...]:
        return tuple(ipaddress.ip_network(c).prefixlen for c in self.fabric_cidrs())

    def fabric_cidrs(self) -> tuple[str, ...]:
        return (self.network.fabric_cidr_v4, self.network.fabric_cidr_v6)

    def client_addresses(self) -> tuple[str, ...]:
        return tuple(str(ipaddress.ip_network(c).network_address + 1) for c in self.fabric_cidrs())

    def node_routes(self) -> tuple[tuple[str, str], ...]:
        """A node's routes out of the cluster: the service CIDRs via the client, as a real node's
        default route takes them to its gateway.  Traffic to a Service address that no rule
        rewrote (iptables mode drops it in FORWARD, which needs a route; an unallocated ClusterIP)
        is then forwarded and dropped, not answered "network unreachable" by the node."""
        gateways = {ipaddress.ip_address(a).version: a for a in self.client_addresses()}
        return tuple((cidr, gateways[ipaddress.ip_network(cidr).version]) for cidr in self.network.service_cidrs)

    def node(self, name: str) -> NodeConfig:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def plan(cluster: str, network: ClusterNetwork, nodes: int, zones: int, state_dir: Path) -> Topology:
    """Names and addresses for ``nodes`` nodes; node ``i`` sits at the fabric's ``i + 2``-th address."""
    cidrs = (network.fabric_cidr_v4, network.fabric_cidr_v6)
    prefixes = tuple(ipaddress.ip_network(c).prefixlen for c in cidrs)
    configs = tuple(
        NodeConfig(
            cluster=cluster,
            name=name,
            netns=podnet.netns_name(cluster, "node", name),
            addresses=tuple(podnet.fabric_address(c, i) for c in cidrs),
            prefixes=prefixes,
            zone=zone_name(i, zones),
            state_dir=state_dir,
        )
        for i, name in enumerate(node_names(cluster, nodes))
    )
    return Topology(cluster, network, configs, state_dir)


def saved(state_dir: Path) -> list[str]:
    """The nodes a cluster was made with (``nodes/<name>/node.json``), in creation order."""
    try:
        order = json.loads((state_dir / "nodes.json").read_text())
        return [str(n) for n in order]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


async def build(topo: Topology, netlink: Netlink) -> None:
    """Create the fabric, the client and every node namespace that is missing, wired up."""
    owned = Owned(topo.state_dir / "netns.owned")
    existing = await netlink.list_netns()
    (topo.state_dir / "nodes.json").write_text(json.dumps([n.name for n in topo.nodes]))
    try:
        if topo.fabric not in existing:
            owned.add(topo.fabric)
            await netlink.add_netns(topo.fabric)
            await apply_all(netlink, podnet.fabric_plan(topo.fabric))
        if topo.client not in existing:
            owned.add(topo.client)
            await netlink.add_netns(topo.client)
            await apply_all(
                netlink, podnet.uplink(topo.fabric, topo.client, "client", topo.client_addresses(), topo.prefixes())
            )
        for node in topo.nodes:
            node.node_dir.mkdir(parents=True, exist_ok=True)
            (node.node_dir / "node.json").write_text(json.dumps(node.to_dict()))
            if node.netns in existing:
                continue
            owned.add(node.netns)
            await netlink.add_netns(node.netns)
            uplink = podnet.uplink(
                topo.fabric, node.netns, node.name, node.addresses, node.prefixes, topo.node_routes()
            )
            await apply_all(netlink, uplink)
    except NetlinkError as e:
        raise TopologyError(
            f"could not build the cluster's network ({e}); 'kubewire down' removes what was made"
        ) from e


class TopologyError(Exception):
    """The cluster's namespaces could not be made or found."""


# ---------------------------------------------------------------------------------- agents


def agent_pid_path(node: NodeConfig) -> Path:
    return node.node_dir / "agent.pid"


def agent_pid(node: NodeConfig) -> int | None:
    """The node agent's pid, if that very process (same start time) still runs."""
    return process.recorded_pid(agent_pid_path(node))


def start_agent(cluster: str, node: NodeConfig, env: dict[str, str]) -> int:
    """Start the node's agent inside its namespace (unless it runs already); returns its pid."""
    pid = agent_pid(node)
    if pid is not None:
        return pid
    with contextlib.suppress(FileNotFoundError):
        (node.node_dir / "ready").unlink()
    spawned = process.start(
        [sys.executable, "-m", "kubewire.cli.main", "--name", cluster, "node-agent", node.name],
        process.Sandbox(netns=node.netns),
        env=env,
        log_path=node.node_dir / "agent.log",
    )
    agent_pid_path(node).write_text(f"{spawned.pid} {spawned.start_ticks}\n")
    return spawned.pid


def wait_agents(nodes: list[NodeConfig], timeout: float) -> list[str]:
    """Wait until every agent says it is ready; returns the names that did not."""
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while pending and time.monotonic() < deadline:
        pending = [n for n in pending if not (n.node_dir / "ready").exists() and agent_pid(n) is not None]
        if pending:
            time.sleep(0.05)
    return [n.name for n in nodes if not (n.node_dir / "ready").exists()]


def stop_agent(node: NodeConfig, timeout: float = 10.0) -> None:
    pid = agent_pid(node)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)  # a stopped node's agent is frozen: thaw it so it can exit
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while agent_pid(node) is not None and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if agent_pid(node) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------- stop/start


async def set_node_running(topo: Topology, name: str, running: bool, netlink: Netlink) -> None:
    """``kubewire node stop|start``: cut or restore the node's fabric link and freeze or thaw its agent."""
    node = topo.node(name)
    marker = node.node_dir / "stopped"
    await netlink.apply(podnet.node_link_state(topo.fabric, name, running))
    pid = agent_pid(node)
    if running:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
    else:
        marker.write_text("stopped\n")
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)


def is_stopped(node: NodeConfig) -> bool:
    return (node.node_dir / "stopped").exists()


# ---------------------------------------------------------------------------------- destroy


async def destroy(state_dir: Path, netlink: Netlink, timeout: float = 5.0) -> list[str]:
    """End every process inside the cluster's namespaces, then delete them; returns what was removed."""
    owned = Owned(state_dir / "netns.owned")
    names = owned.names()
    inodes = {i for i in (process.netns_inode(n) for n in names) if i is not None}
    pids = process.pids_in_netns(inodes) if inodes else []
    # The cluster's zygote too, by its pid file (identity checked by start time): it lives in the
    # namespace of the node agent that started it, which may be gone (a node namespace deleted and
    # made again) while the zygote still runs.
    zygote = process.recorded_pid(state_dir / "zygote.pid")
    if zygote is not None and zygote not in pids:
        pids.append(zygote)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if process.start_ticks(p) is not None]
        for p in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p, os.WNOHANG)
        if pids:
            time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    removed = []
    # Pods first, nodes next, the fabric last: each veth goes with the first end deleted.
    for name in sorted(names, key=lambda n: ("-pod-" not in n, "-fabric" in n)):
        await netlink.del_netns(name)
        owned.remove(name)
        removed.append(name)
    return removed

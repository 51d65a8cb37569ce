"""The cluster topology: names, addresses and zones (pure), and build/destroy against FakeNetlink."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kubewire.agents import topology
from kubewire.api.netconfig import ClusterNetwork
from kubewire.dataplane import podnet
from kubewire.host import process
from kubewire.host.netlink import FakeNetlink
from kubewire.host.owned import Owned

CLUSTER = "kwtest"


@pytest.fixture(autouse=True)
def no_real_namespaces_or_signals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """destroy() looks up namespace inodes under /run/netns and signals what runs there: point it at an
    empty directory and make any signal a test failure, so nothing on this machine can be touched."""
    empty = tmp_path / "run-netns"
    empty.mkdir()
    monkeypatch.setattr(process, "NETNS_DIR", empty)

    def no_kill(pid: int, sig: int) -> None:
        raise AssertionError(f"a unit test must not signal pid {pid}")

    monkeypatch.setattr(os, "kill", no_kill)


def topo(tmp_path: Path, nodes: int = 2, zones: int = 1) -> topology.Topology:
    return topology.plan(CLUSTER, ClusterNetwork(), nodes, zones, tmp_path / "state")


# ------------------------------------------------------------------------------------ owned


def test_owned_add_is_idempotent_and_keeps_order(tmp_path: Path) -> None:
    owned = Owned(tmp_path / "sub" / "netns.owned")
    assert owned.names() == []
    for name in ("kw-c-fabric", "kw-c-client", "kw-c-node-a", "kw-c-fabric"):
        owned.add(name)
    assert owned.names() == ["kw-c-fabric", "kw-c-client", "kw-c-node-a"]
    assert (tmp_path / "sub" / "netns.owned").read_text() == "kw-c-fabric\nkw-c-client\nkw-c-node-a\n"


def test_owned_remove(tmp_path: Path) -> None:
    owned = Owned(tmp_path / "netns.owned")
    for name in ("a", "b", "c"):
        owned.add(name)
    owned.remove("b")
    owned.remove("missing")
    assert owned.names() == ["a", "c"]
    assert Owned(tmp_path / "netns.owned").names() == ["a", "c"]  # durable, not cached
    assert not (tmp_path / "netns.tmp").exists()


# ------------------------------------------------------------------------------------ names and plan


def test_node_names_are_kind_style() -> None:
    assert topology.node_names("c", 3) == ["c-worker", "c-worker2", "c-worker3"]
    assert topology.node_names("c", 0) == []


def test_zone_names() -> None:
    assert [topology.zone_name(i, 3) for i in range(5)] == ["zone-a", "zone-b", "zone-c", "zone-a", "zone-b"]
    assert topology.zone_name(7, 1) == "zone-a"
    assert topology.zone_name(4, 0) == "zone-a"  # no zones behaves as one
    assert topology.zone_name(25, 26) == "zone-z"


def test_plan(tmp_path: Path) -> None:
    t = topology.plan(CLUSTER, ClusterNetwork(), 3, 2, tmp_path)
    assert [n.name for n in t.nodes] == ["kwtest-worker", "kwtest-worker2", "kwtest-worker3"]
    assert [n.netns for n in t.nodes] == [
        "kw-kwtest-node-kwtest-worker",
        "kw-kwtest-node-kwtest-worker2",
        "kw-kwtest-node-kwtest-worker3",
    ]
    assert [n.addresses for n in t.nodes] == [
        ("172.18.0.2", "fc00:f853:ccd:e793::2"),
        ("172.18.0.3", "fc00:f853:ccd:e793::3"),
        ("172.18.0.4", "fc00:f853:ccd:e793::4"),
    ]
    assert all(n.prefixes == (16, 64) for n in t.nodes)
    assert [n.zone for n in t.nodes] == ["zone-a", "zone-b", "zone-a"]
    assert t.fabric == "kw-kwtest-fabric" and t.client == "kw-kwtest-client"
    assert t.client_addresses() == ("172.18.0.1", "fc00:f853:ccd:e793::1")
    assert t.prefixes() == (16, 64)
    assert t.node("kwtest-worker2").zone == "zone-b"
    assert t.nodes[0].node_dir == tmp_path / "nodes" / "kwtest-worker"
    with pytest.raises(KeyError):
        t.node("nope")


def test_plan_follows_custom_fabric_cidrs(tmp_path: Path) -> None:
    net = ClusterNetwork(fabric_cidr_v4="192.168.50.0/24", fabric_cidr_v6="fd99::/64")
    t = topology.plan("c", net, 1, 1, tmp_path)
    assert t.nodes[0].addresses == ("192.168.50.2", "fd99::2")
    assert t.client_addresses() == ("192.168.50.1", "fd99::1")
    assert t.prefixes() == (24, 64)


def test_saved(tmp_path: Path) -> None:
    assert topology.saved(tmp_path) == []
    (tmp_path / "nodes.json").write_text("not json")
    assert topology.saved(tmp_path) == []
    (tmp_path / "nodes.json").write_text(json.dumps(["c-worker", "c-worker2"]))
    assert topology.saved(tmp_path) == ["c-worker", "c-worker2"]


# ------------------------------------------------------------------------------------ build / destroy


class RecordingNetlink(FakeNetlink):
    """Checks that every namespace is in the owned registry before it is created."""

    def __init__(self, owned: Owned) -> None:
        super().__init__()
        self.owned = owned
        self.created: list[str] = []

    async def add_netns(self, name: str) -> None:
        assert name in self.owned.names(), f"{name} created before it was recorded"
        self.created.append(name)
        await super().add_netns(name)


async def test_build_creates_and_records_everything(tmp_path: Path) -> None:
    t = topo(tmp_path)
    t.state_dir.mkdir(parents=True)
    nl = RecordingNetlink(Owned(t.state_dir / "netns.owned"))
    await topology.build(t, nl)
    nodes = [n.netns for n in t.nodes]
    assert nl.created == [t.fabric, t.client, *nodes]
    assert await nl.list_netns() == {t.fabric, t.client, *nodes}
    assert Owned(t.state_dir / "netns.owned").names() == [t.fabric, t.client, *nodes]
    assert topology.saved(t.state_dir) == ["kwtest-worker", "kwtest-worker2"]
    for n in t.nodes:
        data = json.loads((n.node_dir / "node.json").read_text())
        assert data["name"] == n.name and data["netns"] == n.netns and data["addresses"] == list(n.addresses)
        eth0 = nl.link(n.netns, "eth0")
        assert eth0.up and eth0.addresses == {f"{n.addresses[0]}/16", f"{n.addresses[1]}/64"}
        assert nl.link(t.fabric, podnet.fabric_port(n.name)).master == "kw-br0"
        # Service addresses no rule rewrote leave through the client, as by a real node's default route.
        assert "10.96.0.0/16" in await nl.routes(n.netns)
        assert any(
            line.startswith("route replace 10.96.0.0/16 via 172.18.0.1 ") for b in nl.applied for line in b.lines
        )
    assert "10.96.0.0/16" not in await nl.routes(t.client)
    assert nl.link(t.client, "eth0").addresses == {"172.18.0.1/16", "fc00:f853:ccd:e793::1/64"}


async def test_build_is_idempotent(tmp_path: Path) -> None:
    t = topo(tmp_path)
    t.state_dir.mkdir(parents=True)
    nl = FakeNetlink()
    await topology.build(t, nl)
    applied, names = list(nl.applied), await nl.list_netns()
    owned = Owned(t.state_dir / "netns.owned").names()
    await topology.build(t, nl)
    assert nl.applied == applied
    assert await nl.list_netns() == names
    assert Owned(t.state_dir / "netns.owned").names() == owned


async def test_build_adds_a_missing_node_only(tmp_path: Path) -> None:
    t = topo(tmp_path)
    t.state_dir.mkdir(parents=True)
    nl = FakeNetlink()
    await topology.build(t, nl)
    await nl.del_netns(t.nodes[1].netns)
    before = len(nl.applied)
    await topology.build(t, nl)
    assert [b.netns for b in nl.applied[before:]] == [t.fabric, t.nodes[1].netns]
    assert t.nodes[1].netns in await nl.list_netns()


async def test_build_adopts_an_existing_namespace_as_it_is(tmp_path: Path) -> None:
    t = topo(tmp_path)
    t.state_dir.mkdir(parents=True)
    nl = FakeNetlink()
    await nl.add_netns(t.nodes[0].netns)
    await topology.build(t, nl)
    assert "eth0" not in nl.namespaces[t.nodes[0].netns].links  # not rewired
    assert nl.link(t.nodes[1].netns, "eth0").up
    assert (t.nodes[0].node_dir / "node.json").exists()


async def test_build_failure_is_a_topology_error(tmp_path: Path) -> None:
    t = topo(tmp_path)
    t.state_dir.mkdir(parents=True)
    nl = FakeNetlink()
    await nl.add_netns(t.fabric)  # adopted, but it has no bridge: plugging the client in fails
    with pytest.raises(topology.TopologyError, match=r"could not build the cluster's network \(Cannot find device"):
        await topology.build(t, nl)
    assert t.client in Owned(t.state_dir / "netns.owned").names()  # recorded, so 'down' removes it


async def test_destroy_removes_everything_recorded(tmp_path: Path) -> None:
    t = topo(tmp_path)
    t.state_dir.mkdir(parents=True)
    nl = FakeNetlink()
    await topology.build(t, nl)
    pod_ns = podnet.netns_name(CLUSTER, "pod", "uid-1")
    Owned(t.state_dir / "netns.owned").add(pod_ns)
    await nl.add_netns(pod_ns)
    await nl.add_netns("kw-other-fabric")  # not ours: must survive
    removed = await topology.destroy(t.state_dir, nl, timeout=0.1)
    assert removed[0] == pod_ns and removed[-1] == t.fabric
    assert set(removed) == {t.fabric, t.client, pod_ns, *(n.netns for n in t.nodes)}
    assert await nl.list_netns() == {"kw-other-fabric"}
    assert Owned(t.state_dir / "netns.owned").names() == []


async def test_destroy_tolerates_recorded_but_missing_namespaces(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Owned(state / "netns.owned").add("kw-kwtest-node-gone")  # recorded, then the crash came before creation
    assert await topology.destroy(state, FakeNetlink(), timeout=0.1) == ["kw-kwtest-node-gone"]
    assert await topology.destroy(state, FakeNetlink(), timeout=0.1) == []

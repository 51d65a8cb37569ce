"""Pod sandboxes: host-local IPAM (one file per address) and create/teardown against FakeNetlink."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubewire.agents.kubelet import sandbox
from kubewire.agents.kubelet.sandbox import IPAM, NodeNetwork, SandboxError
from kubewire.dataplane import podnet
from kubewire.host.netlink import FakeNetlink
from kubewire.host.owned import Owned

V4 = "10.244.1.0/24"
V6 = "fd00:10:244:1::/64"
NODE_NS = "kw-t-node-t-worker"


# ------------------------------------------------------------------------------------ IPAM


def test_allocate_per_family_and_files(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path / "ipam")
    assert ipam.used() == [] and ipam.owned_by("uid-1") == []
    assert ipam.allocate(V4, "uid-1") == "10.244.1.2"
    assert ipam.allocate(V6, "uid-1") == "fd00:10:244:1::2"
    assert ipam.allocate(V4, "uid-2") == "10.244.1.3"
    assert (tmp_path / "ipam" / "10.244.1.2").read_text() == "uid-1\n"
    assert (tmp_path / "ipam" / "fd00_10_244_1__2").read_text() == "uid-1\n"  # ':' is spelled '_'
    assert sorted(ipam.owned_by("uid-1")) == ["10.244.1.2", "fd00:10:244:1::2"]
    assert sorted(ipam.used()) == ["10.244.1.2", "10.244.1.3", "fd00:10:244:1::2"]


def test_same_uid_gets_the_same_address_back(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path)
    first = ipam.allocate(V4, "uid-1")
    ipam.allocate(V4, "uid-2")
    assert ipam.allocate(V4, "uid-1") == first
    assert IPAM(tmp_path).allocate(V4, "uid-1") == first  # a restarted agent too
    assert len(ipam.used()) == 2


def test_release_frees_the_addresses(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path)
    ipam.allocate(V4, "uid-1")
    ipam.allocate(V6, "uid-1")
    ipam.allocate(V4, "uid-2")
    ipam.release("uid-1")
    ipam.release("uid-unknown")
    assert ipam.used() == ["10.244.1.3"]
    assert ipam.allocate(V4, "uid-3") == "10.244.1.2"  # the freed address is handed out again


def test_an_address_taken_by_another_pod_is_skipped(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path)
    (tmp_path / "10.244.1.2").write_text("someone-else\n")
    assert ipam.allocate(V4, "uid-1") == "10.244.1.3"
    assert (tmp_path / "10.244.1.2").read_text() == "someone-else\n"


def test_lost_race_between_scan_and_create_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker creates the file after this one scanned: O_EXCL fails and the next address is taken."""
    ipam = IPAM(tmp_path)
    real_used = IPAM.used
    calls = 0

    def stale_used(self: IPAM) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            (tmp_path / "10.244.1.2").write_text("racer\n")  # appears right after the scan
            return []
        return real_used(self)

    monkeypatch.setattr(IPAM, "used", stale_used)
    assert ipam.allocate(V4, "uid-1") == "10.244.1.3"
    assert (tmp_path / "10.244.1.2").read_text() == "racer\n"
    assert calls == 2


def test_full_range(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path)
    cidr = "10.0.0.0/30"  # one allocatable address: .2
    assert ipam.allocate(cidr, "uid-1") == "10.0.0.2"
    with pytest.raises(podnet.PodCIDRFull, match=r"no IP addresses available in range set: 10\.0\.0\.0/30"):
        ipam.allocate(cidr, "uid-2")


# ------------------------------------------------------------------------------------ create / teardown


async def node_network(tmp_path: Path, cidrs: tuple[str, ...] = (V4, V6)) -> tuple[NodeNetwork, FakeNetlink]:
    nl = FakeNetlink()
    await nl.add_netns(NODE_NS)
    net = NodeNetwork("t", "t-worker", NODE_NS, cidrs, 1500, tmp_path / "ipam", Owned(tmp_path / "netns.owned"))
    return net, nl


async def test_create_wires_the_pod(tmp_path: Path) -> None:
    net, nl = await node_network(tmp_path)
    ns, ips = await sandbox.create(net, nl, "uid-1")
    assert ns == "kw-t-pod-uid-1" == sandbox.pod_netns("t", "uid-1")
    assert ips == ["10.244.1.2", "fd00:10:244:1::2"]
    assert net.owned.names() == [ns]
    assert nl.link(ns, "eth0").addresses == {"10.244.1.2/32", "fd00:10:244:1::2/128"}
    assert nl.link(NODE_NS, podnet.pod_veth("uid-1")).addresses == {"10.244.1.1/32", "fd00:10:244:1::1/128"}
    assert set(await nl.routes(NODE_NS)) == {"10.244.1.2/32", "fd00:10:244:1::2/128"}
    ns2, ips2 = await sandbox.create(net, nl, "uid-2")
    assert ips2 == ["10.244.1.3", "fd00:10:244:1::3"]
    assert net.owned.names() == [ns, ns2]


async def test_teardown_removes_and_releases(tmp_path: Path) -> None:
    net, nl = await node_network(tmp_path)
    ns, _ = await sandbox.create(net, nl, "uid-1")
    await sandbox.teardown(net, nl, "uid-1")
    assert ns not in await nl.list_netns()
    assert podnet.pod_veth("uid-1") not in nl.namespaces[NODE_NS].links
    assert await nl.routes(NODE_NS) == []
    assert net.owned.names() == []
    assert IPAM(net.ipam_dir).used() == []
    await sandbox.teardown(net, nl, "uid-1")  # twice is fine


async def test_teardown_without_release_keeps_addresses(tmp_path: Path) -> None:
    net, nl = await node_network(tmp_path)
    await sandbox.create(net, nl, "uid-1")
    await sandbox.teardown(net, nl, "uid-1", release=False)
    assert sorted(IPAM(net.ipam_dir).owned_by("uid-1")) == ["10.244.1.2", "fd00:10:244:1::2"]


async def test_half_made_sandbox_is_rebuilt(tmp_path: Path) -> None:
    net, nl = await node_network(tmp_path)
    ns = sandbox.pod_netns("t", "uid-1")
    net.owned.add(ns)
    await nl.add_netns(ns)  # a crash left the namespace, unwired
    got_ns, ips = await sandbox.create(net, nl, "uid-1")
    assert got_ns == ns and ips == ["10.244.1.2", "fd00:10:244:1::2"]
    assert nl.link(ns, "eth0").up
    assert net.owned.names() == [ns]
    # and a fully made one (veth present) is rebuilt the same way, keeping its addresses
    again_ns, again_ips = await sandbox.create(net, nl, "uid-1")
    assert (again_ns, again_ips) == (ns, ips)
    assert list(nl.namespaces[NODE_NS].links).count(podnet.pod_veth("uid-1")) == 1


async def test_create_without_pod_cidr(tmp_path: Path) -> None:
    net, nl = await node_network(tmp_path, cidrs=())
    with pytest.raises(SandboxError, match="node t-worker has no pod CIDR yet"):
        await sandbox.create(net, nl, "uid-1")


async def test_create_failure_is_a_cni_like_sandbox_error(tmp_path: Path) -> None:
    net, nl = await node_network(tmp_path)
    await nl.del_netns(NODE_NS)  # the node's namespace is gone
    with pytest.raises(SandboxError, match=r'plugin type="ptp" failed: Cannot open network namespace'):
        await sandbox.create(net, nl, "uid-1")
    assert sandbox.pod_netns("t", "uid-1") in net.owned.names()  # recorded before it was made

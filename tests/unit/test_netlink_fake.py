"""FakeNetlink: the in-memory kernel agents are tested against must reject what the kernel rejects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from kubewire.dataplane import podnet
from kubewire.dataplane.podnet import Batch, PodNet
from kubewire.host.netlink import FakeNetlink, Iproute, NetlinkError, apply_all

FABRIC = "kw-t-fabric"
NODE_A = "kw-t-node-a"
NODE_B = "kw-t-node-b"
POD = "kw-t-pod-uid-1"
CIDR_A = "10.244.0.0/24"
CIDR_B = "10.244.1.0/24"


def nodenet(name: str, ns: str, i: int, cidr: str) -> podnet.NodeNet:
    return podnet.NodeNet(name, ns, (podnet.fabric_address("172.18.0.0/16", i),), (16,), (cidr,))


async def cluster() -> FakeNetlink:
    """A fabric, two routed nodes and one pod on node a, all from podnet's plans."""
    nl = FakeNetlink()
    for ns in (FABRIC, NODE_A, NODE_B, POD):
        await nl.add_netns(ns)
    await apply_all(nl, podnet.fabric_plan(FABRIC))
    a, b = nodenet("a", NODE_A, 0, CIDR_A), nodenet("b", NODE_B, 1, CIDR_B)
    for n in (a, b):
        await apply_all(nl, podnet.uplink(FABRIC, n.netns, n.name, n.addresses, n.fabric_prefixes))
    await apply_all(nl, podnet.peer_routes(a, [a, b]))
    await apply_all(nl, podnet.peer_routes(b, [a, b]))
    await apply_all(nl, podnet.pod_plan(NODE_A, PodNet("uid-1", POD, ("10.244.0.2",), (CIDR_A,))))
    return nl


async def test_podnet_plans_apply_cleanly() -> None:
    nl = await cluster()
    port_a = podnet.fabric_port("a")
    assert nl.link(FABRIC, "kw-br0").kind == "bridge"
    assert nl.link(FABRIC, port_a).master == "kw-br0" and nl.link(FABRIC, port_a).up
    assert nl.link(NODE_A, "eth0").addresses == {"172.18.0.2/16"}
    assert nl.link(NODE_A, "eth0").peer == (FABRIC, port_a)
    veth = podnet.pod_veth("uid-1")
    assert nl.link(NODE_A, veth).addresses == {"10.244.0.1/32"}
    assert nl.link(POD, "eth0").addresses == {"10.244.0.2/32"}
    assert set(await nl.routes(NODE_A)) == {CIDR_B, "10.244.0.2/32"}
    assert await nl.routes(NODE_B) == [CIDR_A]
    assert await nl.routes(POD) == ["default"]
    assert await nl.list_netns() == {FABRIC, NODE_A, NODE_B, POD}
    assert len(nl.applied) == 9


async def test_replaying_replace_plans_is_harmless() -> None:
    nl = await cluster()
    a, b = nodenet("a", NODE_A, 0, CIDR_A), nodenet("b", NODE_B, 1, CIDR_B)
    await apply_all(nl, podnet.peer_routes(a, [a, b]))
    assert set(await nl.routes(NODE_A)) == {CIDR_B, "10.244.0.2/32"}


async def test_vxlan_plans_apply() -> None:
    nl = FakeNetlink()
    await nl.add_netns(FABRIC)
    await nl.add_netns(NODE_A)
    a = podnet.NodeNet("a", NODE_A, ("172.18.0.2",), (16,), (CIDR_A,), "vxlan")
    b = podnet.NodeNet("b", NODE_B, ("172.18.0.3",), (16,), (CIDR_B,), "vxlan")
    await apply_all(nl, podnet.fabric_plan(FABRIC))
    await apply_all(nl, podnet.uplink(FABRIC, NODE_A, "a", a.addresses, a.fabric_prefixes))
    await apply_all(nl, podnet.vxlan_device_plan(a))
    await apply_all(nl, podnet.peer_routes(a, [a, b]))
    ns = nl.namespaces[NODE_A]
    assert ns.fdb == {f"{podnet.vxlan_mac('b')} dev kw-vxlan dst 172.18.0.3"}
    assert len(ns.neighbours) == 1 and CIDR_B in ns.routes
    assert nl.link(NODE_A, "kw-vxlan").addresses == {"10.244.0.0/32"}


async def test_missing_namespace() -> None:
    nl = FakeNetlink()
    with pytest.raises(NetlinkError, match='Cannot open network namespace "kw-t-nope"'):
        await nl.apply(Batch("kw-t-nope", ("link set lo up",)))
    await nl.add_netns(NODE_A)
    with pytest.raises(NetlinkError, match="Cannot open network namespace"):  # the veth's peer namespace
        await nl.apply(Batch(NODE_A, ("link add v0 type veth peer name eth0 netns kw-t-nope",)))
    with pytest.raises(NetlinkError, match="Cannot open network namespace"):
        await nl.routes("kw-t-nope")


async def test_duplicate_namespace() -> None:
    nl = FakeNetlink()
    await nl.add_netns(NODE_A)
    with pytest.raises(NetlinkError, match="File exists"):
        await nl.add_netns(NODE_A)


@pytest.mark.parametrize(
    "line",
    [
        "link set nope up",
        "addr replace 10.0.0.1/32 dev nope",
        "route replace 10.0.0.0/24 dev nope",
        "neigh replace 10.0.0.1 lladdr 0a:00:00:00:00:01 dev nope nud permanent",
        "link del nope",
        "link set lo master nope",
    ],
)
async def test_missing_device(line: str) -> None:
    nl = FakeNetlink()
    await nl.add_netns(NODE_A)
    with pytest.raises(NetlinkError, match='Cannot find device "nope"'):
        await nl.apply(Batch(NODE_A, (line,)))


async def test_missing_device_in_bridge_batch() -> None:
    nl = FakeNetlink()
    await nl.add_netns(NODE_A)
    with pytest.raises(NetlinkError, match='Cannot find device "kw-vxlan"'):
        await nl.apply(Batch(NODE_A, ("fdb replace 0a:00:00:00:00:01 dev kw-vxlan dst 172.18.0.3",), tool="bridge"))


async def test_duplicate_link_both_ends() -> None:
    nl = FakeNetlink()
    await nl.add_netns(NODE_A)
    await nl.add_netns(POD)
    await nl.apply(Batch(NODE_A, ("link add br type bridge",)))
    with pytest.raises(NetlinkError, match="File exists"):
        await nl.apply(Batch(NODE_A, ("link add br type bridge",)))
    await nl.apply(Batch(NODE_A, (f"link add v1 type veth peer name eth0 netns {POD}",)))
    with pytest.raises(NetlinkError, match="File exists"):  # the peer name is taken in the other namespace
        await nl.apply(Batch(NODE_A, (f"link add v2 type veth peer name eth0 netns {POD}",)))
    assert "v2" not in nl.namespaces[NODE_A].links


async def test_route_add_twice_and_del_missing() -> None:
    nl = FakeNetlink()
    await nl.add_netns(NODE_A)
    await nl.apply(Batch(NODE_A, ("route add 10.0.0.0/24 dev lo",)))
    with pytest.raises(NetlinkError, match="File exists"):
        await nl.apply(Batch(NODE_A, ("route add 10.0.0.0/24 dev lo",)))
    await nl.apply(Batch(NODE_A, ("route replace 10.0.0.0/24 dev lo",)))
    await nl.apply(Batch(NODE_A, ("route del 10.0.0.0/24",)))
    with pytest.raises(NetlinkError, match="No such process"):
        await nl.apply(Batch(NODE_A, ("route del 10.0.0.0/24",)))


async def test_unknown_object() -> None:
    nl = FakeNetlink()
    await nl.add_netns(NODE_A)
    with pytest.raises(NetlinkError, match='Object "rule" is unknown'):
        await nl.apply(Batch(NODE_A, ("rule add from all table 100",)))


async def test_failed_batch_is_not_recorded() -> None:
    nl = FakeNetlink()
    await nl.add_netns(NODE_A)
    with pytest.raises(NetlinkError):
        await nl.apply(Batch(NODE_A, ("link set lo up", "link set nope up")))
    assert nl.applied == []


async def test_deleting_a_namespace_removes_veth_peers_and_their_routes() -> None:
    nl = await cluster()
    veth = podnet.pod_veth("uid-1")
    await nl.del_netns(POD)
    assert veth not in nl.namespaces[NODE_A].links
    assert "10.244.0.2/32" not in await nl.routes(NODE_A)
    await nl.del_netns(NODE_B)  # its uplink's fabric end goes too
    assert podnet.fabric_port("b") not in nl.namespaces[FABRIC].links
    assert podnet.fabric_port("a") in nl.namespaces[FABRIC].links
    await nl.del_netns(NODE_B)  # deleting what is gone is not an error
    assert await nl.list_netns() == {FABRIC, NODE_A}


async def test_link_del_removes_the_pair_and_routes_via_it() -> None:
    nl = await cluster()
    veth = podnet.pod_veth("uid-1")
    await nl.apply(podnet.pod_teardown(NODE_A, "uid-1"))
    assert veth not in nl.namespaces[NODE_A].links
    assert "eth0" not in nl.namespaces[POD].links
    assert await nl.routes(NODE_A) == [CIDR_B]
    assert await nl.routes(POD) == []  # the default route went with eth0
    with pytest.raises(NetlinkError, match="Cannot find device"):
        await nl.apply(podnet.pod_teardown(NODE_A, "uid-1"))


@pytest.mark.parametrize("name", ["default", "cni-1234", "kwx", "k-w-1"])
async def test_fake_refuses_foreign_namespaces(name: str) -> None:
    nl = FakeNetlink()
    with pytest.raises(NetlinkError, match="refusing to touch network namespace"):
        await nl.add_netns(name)
    with pytest.raises(NetlinkError, match="refusing to touch network namespace"):
        await nl.apply(Batch(name, ("link set lo up",)))


@pytest.mark.parametrize("name", ["default", "cni-1234", ""])
async def test_iproute_refuses_foreign_namespaces_before_running_anything(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_run(*args: object, **kwargs: object) -> str:
        raise AssertionError("iproute2 must not be run")

    monkeypatch.setattr("kubewire.host.netlink._run", no_run)
    ip = Iproute()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: ip.add_netns(name),
        lambda: ip.del_netns(name),
        lambda: ip.apply(Batch(name, ("link set lo up",))),
        lambda: ip.routes(name),
    ]
    for call in calls:
        with pytest.raises(NetlinkError, match="kubewire only changes its own"):
            await call()


async def test_fake_del_netns_refuses_foreign_namespaces_like_iproute() -> None:
    with pytest.raises(NetlinkError, match="refusing to touch network namespace"):
        await FakeNetlink().del_netns("default")

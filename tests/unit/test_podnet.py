"""The pod network compiler: names, addresses and the iproute2 batches it emits (pure, no kernel)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubewire.dataplane import podnet
from kubewire.dataplane.podnet import Batch, NodeNet, PodCIDRFull, PodNet

FABRIC = "kw-t-fabric"
FABRIC_V4 = "172.18.0.0/16"
FABRIC_V6 = "fc00:f853:ccd:e793::/64"


def node(name: str, i: int, cidrs: tuple[str, ...], mode: str = "routed", dual: bool = True) -> NodeNet:
    addresses = (podnet.fabric_address(FABRIC_V4, i),) + ((podnet.fabric_address(FABRIC_V6, i),) if dual else ())
    prefixes = (16, 64) if dual else (16,)
    return NodeNet(name, podnet.netns_name("t", "node", name), addresses, prefixes, cidrs, mode)


# ------------------------------------------------------------------------------------ names


@pytest.mark.parametrize("key", ["a", "t-worker", "t-worker50", "x" * 300, "9f1c2d3e-aaaa-bbbb-cccc-0123456789ab"])
def test_names_fit_the_interface_limit_and_are_deterministic(key: str) -> None:
    for fn in (podnet.pod_veth, podnet.fabric_port):
        name = fn(key)
        assert len(name) <= 15
        assert name == fn(key)
    assert podnet.pod_veth(key).startswith("veth") and len(podnet.pod_veth(key)) == 12
    assert podnet.fabric_port(key).startswith("kwf-")


def test_names_differ_per_key() -> None:
    assert podnet.pod_veth("uid-1") != podnet.pod_veth("uid-2")
    assert podnet.fabric_port("t-worker") != podnet.fabric_port("t-worker2")
    assert podnet.netns_name("c", "fabric") == "kw-c-fabric"
    assert podnet.netns_name("c", "node", "c-worker") == "kw-c-node-c-worker"


def test_fabric_address_and_gateway() -> None:
    assert podnet.fabric_address(FABRIC_V4, 0) == "172.18.0.2"
    assert podnet.fabric_address(FABRIC_V4, 3) == "172.18.0.5"
    assert podnet.fabric_address(FABRIC_V6, 1) == "fc00:f853:ccd:e793::3"
    assert podnet.gateway("10.244.1.0/24") == "10.244.1.1"
    assert podnet.gateway("fd00:10:244:1::/64") == "fd00:10:244:1::1"


# ------------------------------------------------------------------------------------ plans


def test_fabric_plan_makes_the_bridge() -> None:
    assert podnet.fabric_plan(FABRIC) == [
        Batch(FABRIC, ("link set lo up", "link add kw-br0 mtu 1500 type bridge", "link set kw-br0 up"))
    ]


def test_uplink_ipv4_only() -> None:
    port = podnet.fabric_port("t-worker")
    fabric, ns = podnet.uplink(FABRIC, "kw-t-node-w", "t-worker", ["172.18.0.2"], [16])
    assert fabric == Batch(
        FABRIC,
        (
            f"link add {port} mtu 1500 type veth peer name eth0 netns kw-t-node-w mtu 1500",
            f"link set {port} master kw-br0 up",
        ),
    )
    assert ns == Batch("kw-t-node-w", ("link set lo up", "link set eth0 up", "addr replace 172.18.0.2/16 dev eth0"))


def test_uplink_dual_stack_marks_ipv6_nodad() -> None:
    _, ns = podnet.uplink(FABRIC, "kw-t-client", "client", ["172.18.0.1", "fc00::1"], [16, 64])
    assert ns.lines[2:] == ("addr replace 172.18.0.1/16 dev eth0", "addr replace fc00::1/64 dev eth0 nodad")


def test_uplink_needs_a_prefix_per_address() -> None:
    with pytest.raises(ValueError):
        podnet.uplink(FABRIC, "kw-t-node-w", "w", ["172.18.0.2", "fc00::2"], [16])


def test_pod_plan_ipv4() -> None:
    pod = PodNet("uid-1", "kw-t-pod-uid-1", ("10.244.1.2",), ("10.244.1.0/24",))
    veth = pod.veth
    node_batch, pod_batch = podnet.pod_plan("kw-t-node-w", pod)
    assert node_batch == Batch(
        "kw-t-node-w",
        (
            f"link add {veth} mtu 1500 type veth peer name eth0 netns kw-t-pod-uid-1 mtu 1500",
            f"link set {veth} up",
            f"addr replace 10.244.1.1/32 dev {veth}",
            f"route replace 10.244.1.2/32 dev {veth} scope link",
        ),
    )
    assert pod_batch == Batch(
        "kw-t-pod-uid-1",
        (
            "link set lo up",
            "link set eth0 up",
            "addr replace 10.244.1.2/32 dev eth0",
            "route replace default via 10.244.1.1 dev eth0 onlink",
        ),
    )


def test_pod_plan_dual_stack_uses_host_prefixes_and_nodad() -> None:
    pod = PodNet(
        "uid-2", "kw-t-pod-uid-2", ("10.244.1.3", "fd00:10:244:1::3"), ("10.244.1.0/24", "fd00:10:244:1::/64"), mtu=1450
    )
    node_batch, pod_batch = podnet.pod_plan("kw-t-node-w", pod)
    assert "mtu 1450 type veth" in node_batch.lines[0] and node_batch.lines[0].endswith("mtu 1450")
    assert f"addr replace fd00:10:244:1::1/128 dev {pod.veth} nodad" in node_batch.lines
    assert f"route replace fd00:10:244:1::3/128 dev {pod.veth} scope link" in node_batch.lines
    assert pod_batch.lines[2:] == (
        "addr replace 10.244.1.3/32 dev eth0",
        "route replace default via 10.244.1.1 dev eth0 onlink",
        "addr replace fd00:10:244:1::3/128 dev eth0 nodad",
        "route replace default via fd00:10:244:1::1 dev eth0 onlink",
    )


def test_pod_teardown_deletes_the_node_end() -> None:
    assert podnet.pod_teardown("kw-t-node-w", "uid-1") == Batch(
        "kw-t-node-w", (f"link del {podnet.pod_veth('uid-1')}",)
    )


def test_peer_routes_routed_mode_per_family_and_not_to_itself() -> None:
    a = node("a", 0, ("10.244.0.0/24", "fd00:10:244::/64"))
    b = node("b", 1, ("10.244.1.0/24", "fd00:10:244:1::/64"))
    c = node("c", 2, ("10.244.2.0/24",))
    batches = podnet.peer_routes(a, [a, b, c])
    assert batches == [
        Batch(
            a.netns,
            (
                "route replace 10.244.1.0/24 via 172.18.0.3 dev eth0",
                "route replace fd00:10:244:1::/64 via fc00:f853:ccd:e793::3 dev eth0",
                "route replace 10.244.2.0/24 via 172.18.0.4 dev eth0",
            ),
        )
    ]
    assert podnet.peer_routes(a, [a]) == []


def test_peer_routes_routed_skips_a_family_the_peer_has_no_address_for() -> None:
    a = node("a", 0, ("10.244.0.0/24",))
    b = node("b", 1, ("10.244.1.0/24", "fd00:10:244:1::/64"), dual=False)
    assert podnet.peer_routes(a, [b]) == [Batch(a.netns, ("route replace 10.244.1.0/24 via 172.18.0.3 dev eth0",))]


def test_peer_routes_vxlan_mode() -> None:
    a = node("a", 0, ("10.244.0.0/24",), mode="vxlan")
    b = node("b", 1, ("10.244.1.0/24", "fd00:10:244:1::/64"), mode="vxlan")
    empty = node("e", 2, (), mode="vxlan")
    mac = podnet.vxlan_mac("b")
    ip_batch, fdb_batch = podnet.peer_routes(a, [a, b, empty])
    assert ip_batch == Batch(
        a.netns,
        (
            f"neigh replace 10.244.1.0 lladdr {mac} dev kw-vxlan nud permanent",
            "route replace 10.244.1.0/24 via 10.244.1.0 dev kw-vxlan onlink",
            f"neigh replace fd00:10:244:1:: lladdr {mac} dev kw-vxlan nud permanent",
            "route replace fd00:10:244:1::/64 via fd00:10:244:1:: dev kw-vxlan onlink",
        ),
    )
    assert fdb_batch == Batch(a.netns, (f"fdb replace {mac} dev kw-vxlan dst 172.18.0.3",), tool="bridge")
    assert a.pod_mtu == 1450 and b.pod_mtu == 1450 and node("r", 0, ()).pod_mtu == 1500


def test_vxlan_mac_is_stable_and_locally_administered() -> None:
    mac = podnet.vxlan_mac("t-worker")
    assert mac == podnet.vxlan_mac("t-worker") != podnet.vxlan_mac("t-worker2")
    octets = mac.split(":")
    assert len(octets) == 6 and int(octets[0], 16) & 0b10 and not int(octets[0], 16) & 0b1


def test_stale_peer_routes() -> None:
    a = node("a", 0, ("10.244.0.0/24",))
    b = node("b", 1, ("10.244.1.0/24",))
    present = ["10.244.1.0/24", "10.244.2.0/24", "10.244.9.0/24"]
    assert podnet.stale_peer_routes(a, [a, b], present) == [
        Batch(a.netns, ("route del 10.244.2.0/24", "route del 10.244.9.0/24"))
    ]
    assert podnet.stale_peer_routes(a, [a, b], ["10.244.1.0/24"]) == []


# ------------------------------------------------------------------------------------ allocate


def test_allocate_skips_network_and_gateway() -> None:
    assert podnet.allocate("10.244.1.0/24", []) == "10.244.1.2"
    assert podnet.allocate("10.244.1.0/24", ["10.244.1.2", "10.244.1.3"]) == "10.244.1.4"


def test_allocate_never_hands_out_broadcast_and_raises_when_full() -> None:
    cidr = "10.0.0.0/29"  # hosts .2 to .6 are allocatable
    used = [f"10.0.0.{i}" for i in range(2, 6)]
    assert podnet.allocate(cidr, used) == "10.0.0.6"
    with pytest.raises(PodCIDRFull, match=r"^no IP addresses available in range set: 10\.0\.0\.0/29$"):
        podnet.allocate(cidr, [*used, "10.0.0.6"])
    with pytest.raises(PodCIDRFull, match=r"10\.0\.0\.0/31"):
        podnet.allocate("10.0.0.0/31", [])


def test_allocate_hint_wraps() -> None:
    cidr = "10.0.0.0/29"
    assert podnet.allocate(cidr, [], hint=4) == "10.0.0.6"
    assert podnet.allocate(cidr, [], hint=5) == "10.0.0.2"
    assert podnet.allocate(cidr, ["10.0.0.6"], hint=4) == "10.0.0.2"
    assert podnet.allocate(cidr, [], hint=-3) == "10.0.0.2"


def test_allocate_ipv6_has_no_broadcast() -> None:
    assert podnet.allocate("fd00:10:244:1::/64", []) == "fd00:10:244:1::2"
    assert podnet.allocate("fd00::/126", ["fd00::2"]) == "fd00::3"  # the last address is a host in IPv6
    with pytest.raises(PodCIDRFull):
        podnet.allocate("fd00::/126", ["fd00::2", "fd00::3"])


@settings(max_examples=150, deadline=None)
@given(
    cidr=st.sampled_from(["10.1.2.0/28", "10.1.2.0/29", "10.1.2.0/30", "192.168.4.0/27", "fd00::/124", "fd00::/126"]),
    data=st.data(),
)
def test_allocate_property(cidr: str, data: st.DataObject) -> None:
    net = ipaddress.ip_network(cidr)
    hosts = [str(a) for a in net]
    used = data.draw(st.lists(st.sampled_from(hosts), unique=True), label="used")
    hint = data.draw(st.integers(min_value=-5, max_value=100), label="hint")
    forbidden = {net.network_address, net.network_address + 1}
    if net.version == 4:
        forbidden.add(net.broadcast_address)
    free = {ipaddress.ip_address(h) for h in hosts} - forbidden - {ipaddress.ip_address(u) for u in used}
    if not free:
        with pytest.raises(PodCIDRFull):
            podnet.allocate(cidr, used, hint)
        return
    got = ipaddress.ip_address(podnet.allocate(cidr, used, hint))
    assert got in net
    assert got not in forbidden
    assert str(got) not in used
    assert got in free

"""Pod sandboxes: the pause container's and the CNI plugin's work for one pod.

A sandbox is a network namespace wired by :mod:`kubewire.dataplane.podnet` (veth to the node,
addresses from the node's pod CIDRs, default route), plus the files every container of the pod
sees over ``/etc``: ``resolv.conf`` per dnsPolicy, the kubelet-managed ``hosts`` and ``hostname``.
Addresses come from a host-local IPAM directory per node (one file per address, created with
``O_EXCL``, as CNI's host-local plugin does), so two pods can never share an address even across
agent restarts.  hostNetwork pods get no sandbox network: they run in the node's namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from kubewire.dataplane import podnet
from kubewire.host.netlink import Netlink, NetlinkError, apply_all
from kubewire.host.owned import Owned


class SandboxError(Exception):
    """The sandbox could not be created; the message is shown in the pod's events."""


@dataclass(frozen=True)
class NodeNetwork:
    """What the sandbox code needs to know about its node."""

    cluster: str
    node: str
    netns: str
    pod_cidrs: tuple[str, ...]
    mtu: int
    ipam_dir: Path
    owned: Owned


def pod_netns(cluster: str, uid: str) -> str:
    return podnet.netns_name(cluster, "pod", uid)


class IPAM:
    """host-local IPAM: ``<dir>/<ip>`` holds the owning pod uid."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def owned_by(self, uid: str) -> list[str]:
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.dir):
                with contextlib.suppress(OSError):
                    if Path(entry.path).read_text().strip() == uid:
                        found.append(entry.name.replace("_", ":"))
        return found

    def used(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return [e.name.replace("_", ":") for e in os.scandir(self.dir)]
        return []

    def allocate(self, cidr: str, uid: str) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        version = ipaddress.ip_network(cidr).version
        mine = [ip for ip in self.owned_by(uid) if ipaddress.ip_address(ip).version == version]
        if mine:
            return mine[0]
        for _ in range(64):
            ip = podnet.allocate(cidr, self.used())
            try:
                fd = os.open(self.dir / ip.replace(":", "_"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue  # another worker took it between the scan and the create
            with os.fdopen(fd, "w") as f:
                f.write(uid + "\n")
            return ip
        raise SandboxError(f"failed to allocate an address in {cidr}")

    def release(self, uid: str) -> None:
        for ip in self.owned_by(uid):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / ip.replace(":", "_")).unlink()


async def create(net: NodeNetwork, netlink: Netlink, uid: str) -> tuple[str, list[str]]:
    """Create (or find) the pod's namespace and network; returns (netns, pod IPs)."""
    if not net.pod_cidrs:
        raise SandboxError(f"node {net.node} has no pod CIDR yet")
    ipam = IPAM(net.ipam_dir)
    ips = [ipam.allocate(cidr, uid) for cidr in net.pod_cidrs]
    ns = pod_netns(net.cluster, uid)
    plan = podnet.PodNet(uid, ns, tuple(ips), net.pod_cidrs, net.mtu)
    try:
        if ns in await netlink.list_netns():
            # A sandbox left half-made by a crash: start it again from scratch.
            await teardown(net, netlink, uid, release=False)
        net.owned.add(ns)
        await netlink.add_netns(ns)
        await apply_all(netlink, podnet.pod_plan(net.netns, plan))
    except NetlinkError as e:
        raise SandboxError(f'failed to set up sandbox container network for pod: plugin type="ptp" failed: {e}') from e
    return ns, ips


async def teardown(net: NodeNetwork, netlink: Netlink, uid: str, release: bool = True) -> None:
    """Remove the pod's veth and namespace (and, with ``release``, give its addresses back)."""
    ns = pod_netns(net.cluster, uid)
    with contextlib.suppress(NetlinkError):
        await netlink.apply(podnet.pod_teardown(net.netns, uid))
    await netlink.del_netns(ns)
    net.owned.remove(ns)
    if release:
        IPAM(net.ipam_dir).release(uid)

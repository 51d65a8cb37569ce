"""Network namespaces, links, addresses and routes: the :class:`Netlink` seam.

:class:`Iproute` drives the kernel through iproute2 (``ip netns``, ``ip -n NS -batch -``, ``bridge
-n NS -batch -``): one process per batch, so wiring a pod costs three short-lived processes and the
commands are exactly what a person would type to reproduce it.  :class:`FakeNetlink` keeps the same
state in memory and rejects what the kernel rejects for the commands kubewire issues (a missing
namespace or device, a duplicate link), so agents can be tested without root.

Nothing here ever runs in the host's own namespace: every batch names its namespace, and
:meth:`Iproute.apply` refuses one that does not start with ``kw-``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kubewire.dataplane.podnet import Batch
from kubewire.host.command import run_tool

NETNS_DIR = Path("/run/netns")
OWNED_PREFIX = "kw-"


class NetlinkError(Exception):
    """iproute2 (or the fake) refused a command; the message is the tool's own."""


class Netlink(Protocol):
    async def list_netns(self) -> set[str]: ...

    async def add_netns(self, name: str) -> None: ...

    async def del_netns(self, name: str) -> None: ...

    async def apply(self, batch: Batch) -> None: ...

    async def routes(self, netns: str) -> list[str]:
        """Destinations of the routes in ``netns``'s main table (``ip route show``'s first words)."""
        ...


async def _run(argv: list[str], stdin: bytes = b"") -> str:
    return await run_tool(argv, stdin, NetlinkError, prefix=True)


def check_owned(netns: str) -> None:
    if not netns.startswith(OWNED_PREFIX):
        raise NetlinkError(f"refusing to touch network namespace {netns!r}: kubewire only changes its own (kw-…)")


class Iproute:
    """The real thing: iproute2 against the kernel."""

    async def list_netns(self) -> set[str]:
        try:
            return set(os.listdir(NETNS_DIR))
        except FileNotFoundError:
            return set()

    async def add_netns(self, name: str) -> None:
        check_owned(name)
        await _run(["ip", "netns", "add", name])

    async def del_netns(self, name: str) -> None:
        check_owned(name)
        if (NETNS_DIR / name).exists():
            await _run(["ip", "netns", "delete", name])

    async def apply(self, batch: Batch) -> None:
        check_owned(batch.netns)
        if not batch.lines:
            return
        await _run([batch.tool, "-n", batch.netns, "-batch", "-"], ("\n".join(batch.lines) + "\n").encode())

    async def routes(self, netns: str) -> list[str]:
        check_owned(netns)
        out = await _run(["ip", "-n", netns, "route", "show"])
        out6 = await _run(["ip", "-n", netns, "-6", "route", "show"])
        return [line.split()[0] for line in (out + out6).splitlines() if line.strip()]


@dataclass
class _Link:
    name: str
    kind: str
    up: bool = False
    master: str = ""
    peer: tuple[str, str] | None = None  # (netns, name)
    addresses: set[str] = field(default_factory=set)


@dataclass
class _Namespace:
    links: dict[str, _Link] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)  # destination -> line
    neighbours: set[str] = field(default_factory=set)
    fdb: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.links.setdefault("lo", _Link("lo", "loopback"))


class FakeNetlink:
    """In-memory namespaces, links, addresses and routes, interpreting the commands kubewire issues."""

    def __init__(self) -> None:
        self.namespaces: dict[str, _Namespace] = {}
        self.applied: list[Batch] = []

    async def list_netns(self) -> set[str]:
        return set(self.namespaces)

    async def add_netns(self, name: str) -> None:
        check_owned(name)
        if name in self.namespaces:
            raise NetlinkError(f'ip netns add {name}: Cannot create namespace file "/run/netns/{name}": File exists')
        self.namespaces[name] = _Namespace()

    async def del_netns(self, name: str) -> None:
        check_owned(name)
        ns = self.namespaces.pop(name, None)
        if ns is None:
            return
        for link in ns.links.values():  # a namespace's veths die with it, and so do their peers
            if link.peer is not None:
                self._drop(*link.peer)

    def _drop(self, netns: str, name: str) -> None:
        ns = self.namespaces.get(netns)
        if ns is not None and ns.links.pop(name, None) is not None:
            for dest, line in list(ns.routes.items()):
                if f" dev {name}" in line:
                    del ns.routes[dest]

    async def routes(self, netns: str) -> list[str]:
        check_owned(netns)
        return list(self._ns(netns).routes)

    def _ns(self, name: str) -> _Namespace:
        try:
            return self.namespaces[name]
        except KeyError:
            raise NetlinkError(f'Cannot open network namespace "{name}": No such file or directory') from None

    def link(self, netns: str, name: str) -> _Link:
        ns = self._ns(netns)
        if name not in ns.links:
            raise NetlinkError(f'Cannot find device "{name}"')
        return ns.links[name]

    async def apply(self, batch: Batch) -> None:
        check_owned(batch.netns)
        ns = self._ns(batch.netns)
        for line in batch.lines:
            self._exec(batch.netns, ns, batch.tool, line.split())
        self.applied.append(batch)

    def _exec(self, netns: str, ns: _Namespace, tool: str, w: list[str]) -> None:
        if tool == "bridge":
            self.link(netns, _after(w, "dev"))
            ns.fdb.add(" ".join(w[2:]))
            return
        obj, verb = w[0], w[1]
        if obj == "link" and verb == "add":
            name = w[2]
            if name in ns.links:
                raise NetlinkError("RTNETLINK answers: File exists")
            kind = _after(w, "type")
            link = _Link(name, kind)
            if kind == "veth":
                peer_ns_name = _after(w, "netns", netns)
                peer_name = _after(w, "name")
                peer_ns = self._ns(peer_ns_name)
                if peer_name in peer_ns.links:
                    raise NetlinkError("RTNETLINK answers: File exists")
                link.peer = (peer_ns_name, peer_name)
                peer_ns.links[peer_name] = _Link(peer_name, "veth", peer=(netns, name))
            ns.links[name] = link
        elif obj == "link" and verb == "set":
            link = self.link(netns, w[2])
            if "master" in w:
                self.link(netns, _after(w, "master"))
                link.master = _after(w, "master")
            if "up" in w[3:]:
                link.up = True
            if "down" in w[3:]:
                link.up = False
        elif obj == "link" and verb == "del":
            link = self.link(netns, w[2])
            self._drop(netns, w[2])
            if link.peer is not None:
                self._drop(*link.peer)
        elif obj == "addr":
            self.link(netns, _after(w, "dev")).addresses.add(w[2])
        elif obj == "route" and verb in ("add", "replace"):
            if "dev" in w:
                self.link(netns, _after(w, "dev"))
            if verb == "add" and w[2] in ns.routes:
                raise NetlinkError("RTNETLINK answers: File exists")
            ns.routes[w[2]] = " ".join(w)
        elif obj == "route" and verb == "del":
            if w[2] not in ns.routes:
                raise NetlinkError("RTNETLINK answers: No such process")
            del ns.routes[w[2]]
        elif obj == "neigh":
            self.link(netns, _after(w, "dev"))
            ns.neighbours.add(" ".join(w[2:]))
        else:
            raise NetlinkError(f'Object "{obj}" is unknown, try "ip help".')


def _after(words: list[str], key: str, default: str | None = None) -> str:
    try:
        return words[words.index(key) + 1]
    except (ValueError, IndexError):
        if default is not None:
            return default
        raise NetlinkError(f"missing {key!r} in {' '.join(words)!r}") from None


async def apply_all(netlink: Netlink, batches: Iterable[Batch]) -> None:
    for batch in batches:
        await netlink.apply(batch)

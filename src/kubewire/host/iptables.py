"""iptables-restore: the :class:`IptablesRestore` seam for kube-proxy's iptables mode.

``iptables-restore --noflush`` (``ip6tables-restore`` for IPv6) applies a whole input atomically
per table, in the caller's namespace (the node agents live in their node's).  The fake records
inputs for tests.
"""

from __future__ import annotations

from typing import Protocol

from kubewire.host.command import run_tool
from kubewire.host.netlink import NETNS_DIR, NetlinkError, check_owned


class IptablesError(Exception):
    """iptables-restore refused the input; the message is its own (with the line number)."""


class IptablesRestore(Protocol):
    async def restore(self, family: int, text: str) -> None: ...

    async def save(self, family: int, netns: str = "") -> str: ...


async def _run(argv: list[str], stdin: bytes = b"") -> str:
    return await run_tool(argv, stdin, IptablesError)


class IptablesCli:
    async def restore(self, family: int, text: str) -> None:
        tool = "iptables-restore" if family == 4 else "ip6tables-restore"
        await _run([tool, "--noflush", "-w", "5"], text.encode())

    async def save(self, family: int, netns: str = "") -> str:
        tool = "iptables-save" if family == 4 else "ip6tables-save"
        if not netns:
            return await _run([tool])
        try:
            check_owned(netns)
        except NetlinkError as e:
            raise IptablesError(str(e)) from None
        return await _run(["nsenter", f"--net={NETNS_DIR / netns}", "--", tool])


class FakeIptables:
    def __init__(self) -> None:
        self.inputs: list[tuple[int, str]] = []

    async def restore(self, family: int, text: str) -> None:
        self.inputs.append((family, text))

    async def save(self, family: int, netns: str = "") -> str:
        return "\n".join(t for f, t in self.inputs if f == family)

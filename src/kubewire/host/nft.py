"""nftables transactions: the :class:`Nft` seam.

:class:`NftCli` hands a whole script to ``nft -f -`` (one netlink transaction: it applies entirely
or not at all), inside a named network namespace through ``nsenter --net`` (``nft`` has no
namespace flag), or in the caller's own namespace when none is given (the node agents live in
their node's).  :class:`FakeNft` records the scripts for tests of the agents that drive it.

Like the netlink seam it refuses any namespace kubewire does not own.
"""

from __future__ import annotations

from typing import Protocol

from kubewire.host.command import run_tool
from kubewire.host.netlink import NETNS_DIR, NetlinkError, check_owned


class NftError(Exception):
    """``nft`` refused a script; the message is its own (with the offending line)."""


class Nft(Protocol):
    async def apply(self, script: str, netns: str = "") -> None: ...

    async def list_table(self, family: str, table: str, netns: str = "") -> str: ...


def _argv(netns: str, *args: str) -> list[str]:
    if not netns:
        return ["nft", *args]
    try:
        check_owned(netns)
    except NetlinkError as e:
        raise NftError(str(e)) from None
    return ["nsenter", f"--net={NETNS_DIR / netns}", "--", "nft", *args]


async def _run(argv: list[str], stdin: bytes = b"") -> str:
    return await run_tool(argv, stdin, NftError)


class NftCli:
    """The real thing."""

    async def apply(self, script: str, netns: str = "") -> None:
        await _run(_argv(netns, "-f", "-"), script.encode())

    async def list_table(self, family: str, table: str, netns: str = "") -> str:
        return await _run(_argv(netns, "list", "table", family, table))


class FakeNft:
    """Records every script per namespace; ``fail_next`` makes the next apply fail like nft would."""

    def __init__(self) -> None:
        self.scripts: list[tuple[str, str]] = []
        self.fail_next: str = ""

    async def apply(self, script: str, netns: str = "") -> None:
        if netns:
            try:
                check_owned(netns)
            except NetlinkError as e:
                raise NftError(str(e)) from None
        if self.fail_next:
            message, self.fail_next = self.fail_next, ""
            raise NftError(message)
        self.scripts.append((netns, script))

    async def list_table(self, family: str, table: str, netns: str = "") -> str:
        return "\n".join(s for ns, s in self.scripts if ns == netns)

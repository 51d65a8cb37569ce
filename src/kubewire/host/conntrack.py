"""Connection-tracking clean-up, as kube-proxy does after UDP endpoint changes.

A UDP "connection" is only a conntrack entry: when an endpoint goes away, clients keep being
NATed to it until their entry expires, unless it is deleted.  Likewise a UDP Service that had no
endpoints leaves entries for the rejected packets.  This runs ``conntrack -D`` (conntrack-tools)
in the caller's namespace — the node agents live in their node's — and treats "no entries
matched" as success.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Conntrack(Protocol):
    async def clear_udp(self, service_ip: str, port: int, endpoint_ip: str = "") -> None:
        """Delete UDP entries to ``service_ip:port`` (only those NATed to ``endpoint_ip`` if given)."""
        ...


class ConntrackCli:
    async def clear_udp(self, service_ip: str, port: int, endpoint_ip: str = "") -> None:
        family = "ipv6" if ":" in service_ip else "ipv4"
        argv = ["conntrack", "-D", "-f", family, "-p", "udp", "--orig-dst", service_ip, "--orig-port-dst", str(port)]
        if endpoint_ip:
            argv += ["--dst-nat", endpoint_ip]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        # conntrack exits 1 with "0 flow entries have been deleted" when nothing matched.
        if proc.returncode not in (0, 1) and b"0 flow entries" not in err:
            raise OSError(f"conntrack: {err.decode(errors='replace').strip()}")


class FakeConntrack:
    def __init__(self) -> None:
        self.cleared: list[tuple[str, int, str]] = []

    async def clear_udp(self, service_ip: str, port: int, endpoint_ip: str = "") -> None:
        self.cleared.append((service_ip, port, endpoint_ip))

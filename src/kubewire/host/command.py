"""Running one of the kernel tools kubewire drives (ip, bridge, nft, iptables-restore, …).

One place for the subprocess plumbing every host seam needs: stdin in, stdout back, and on a
non-zero exit the tool's own stderr raised as the seam's error type.
"""

from __future__ import annotations

import asyncio


async def run_tool(argv: list[str], stdin: bytes = b"", error: type[Exception] = OSError, prefix: bool = False) -> str:
    """Run ``argv``; raise ``error`` with the tool's stderr (prefixed by the command line if ``prefix``)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate(stdin)
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip() or f"{argv[0]} exited {proc.returncode}"
        raise error(f"{' '.join(argv)}: {message}" if prefix else message)
    return out.decode()

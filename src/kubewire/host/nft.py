"""nftables transactions: the :class:`Nft` seam.

Every implementation takes a whole script as one netlink transaction (it applies entirely or not
at all), in a named network namespace or, when none is given, the caller's own (the node agents
live in their node's).

- :class:`LibNft` keeps libnftables (the library ``nft`` itself is built on, Debian's
  ``libnftables1``) resident in the process: one worker thread and one ``nft_ctx`` per namespace,
  the thread joined to it with ``setns`` (a network namespace is per thread).  No process start per
  transaction and the context keeps its cache of the table's declarations between commands
  (re-read only when the kernel's ruleset generation moves), so a one-Service change at 10,000
  Services applies in under a millisecond where ``nft -f -`` took over 20 ms.  ctypes releases the
  GIL for the call, so a long full load does not stall the agent's event loop.
- :class:`NftCli` hands the script to ``nft -f -`` (through ``nsenter --net`` for a named
  namespace: ``nft`` has no namespace flag): the fallback when the library cannot be loaded, and
  what ``kubewire proxy rules`` uses to list a table once.
- :class:`FakeNft` records the scripts for tests of the agents that drive it.

:func:`default_nft` picks the library when it loads.

Like the netlink seam it refuses any namespace kubewire does not own.
"""

from __future__ import annotations

import asyncio
import ctypes
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from kubewire.host.command import run_tool
from kubewire.host.netlink import NETNS_DIR, NetlinkError, check_owned
from kubewire.host.process import setns

LIBRARY = "libnftables.so.1"


class NftError(Exception):
    """``nft`` refused a script; the message is its own (with the offending line)."""


class Nft(Protocol):
    async def apply(self, script: str, netns: str = "") -> None: ...

    async def list_table(self, family: str, table: str, netns: str = "") -> str: ...


def _check_owned(netns: str) -> None:
    """Refuse a namespace kubewire does not own, as an :class:`NftError`."""
    try:
        check_owned(netns)
    except NetlinkError as e:
        raise NftError(str(e)) from None


def _argv(netns: str, *args: str) -> list[str]:
    if not netns:
        return ["nft", *args]
    _check_owned(netns)
    return ["nsenter", f"--net={NETNS_DIR / netns}", "--", "nft", *args]


async def _run(argv: list[str], stdin: bytes = b"") -> str:
    return await run_tool(argv, stdin, NftError)


class NftCli:
    """The real thing."""

    async def apply(self, script: str, netns: str = "") -> None:
        await _run(_argv(netns, "-f", "-"), script.encode())

    async def list_table(self, family: str, table: str, netns: str = "") -> str:
        return await _run(_argv(netns, "list", "table", family, table))


class _Library:
    """The four libnftables calls kubewire needs, typed for ctypes."""

    def __init__(self, name: str = LIBRARY) -> None:
        lib = ctypes.CDLL(name)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        for buffered in (lib.nft_ctx_buffer_output, lib.nft_ctx_buffer_error):
            buffered.argtypes = [ctypes.c_void_p]
        for getter in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            getter.argtypes = [ctypes.c_void_p]
            getter.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib


class _Context:
    """One ``nft_ctx``, used only from the worker thread that made it (inside its namespace)."""

    def __init__(self, library: _Library) -> None:
        self.lib = library.lib
        self.ctx = self.lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
        if not self.ctx:
            raise NftError("libnftables: nft_ctx_new failed")
        self.lib.nft_ctx_buffer_output(self.ctx)
        self.lib.nft_ctx_buffer_error(self.ctx)

    def run(self, script: str) -> str:
        rc = self.lib.nft_run_cmd_from_buffer(self.ctx, script.encode())
        # Both buffers are reset by the next run, so read them now.
        out = (self.lib.nft_ctx_get_output_buffer(self.ctx) or b"").decode(errors="replace")
        err = (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode(errors="replace").strip()
        if rc != 0:
            raise NftError(err or f"libnftables: command failed ({rc})")
        return out

    def free(self) -> None:
        self.lib.nft_ctx_free(self.ctx)


class LibNft:
    """libnftables in process: a worker thread and a context per namespace, kept until :meth:`close`."""

    def __init__(self, library: str = LIBRARY) -> None:
        self._library = _Library(library)  # raises OSError when the library is missing
        self._workers: dict[str, tuple[ThreadPoolExecutor, _Context]] = {}

    def _worker(self, netns: str) -> tuple[ThreadPoolExecutor, _Context]:
        if netns not in self._workers:
            if netns:
                _check_owned(netns)
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"nft-{netns or 'own'}")
            try:
                context = pool.submit(self._open, netns).result()
            except BaseException:
                pool.shutdown(wait=False)
                raise
            self._workers[netns] = (pool, context)
        return self._workers[netns]

    def _open(self, netns: str) -> _Context:
        if netns:
            try:
                setns(netns)  # this worker thread only
            except OSError as e:
                raise NftError(f"cannot enter network namespace {netns}: {e}") from None
        return _Context(self._library)

    async def _run(self, script: str, netns: str) -> str:
        pool, context = self._worker(netns)
        return await asyncio.get_running_loop().run_in_executor(pool, context.run, script)

    async def apply(self, script: str, netns: str = "") -> None:
        await self._run(script, netns)

    async def list_table(self, family: str, table: str, netns: str = "") -> str:
        return await self._run(f"list table {family} {table}", netns)

    def close(self) -> None:
        for pool, context in self._workers.values():
            pool.submit(context.free).result()
            pool.shutdown()
        self._workers.clear()


def default_nft() -> Nft:
    """libnftables when it loads, else the ``nft`` command."""
    try:
        return LibNft()
    except OSError:
        return NftCli()


class FakeNft:
    """Records every script per namespace; ``fail_next`` makes the next apply fail like nft would."""

    def __init__(self) -> None:
        self.scripts: list[tuple[str, str]] = []
        self.fail_next: str = ""

    async def apply(self, script: str, netns: str = "") -> None:
        if netns:
            _check_owned(netns)
        if self.fail_next:
            message, self.fail_next = self.fail_next, ""
            raise NftError(message)
        self.scripts.append((netns, script))

    async def list_table(self, family: str, table: str, netns: str = "") -> str:
        return "\n".join(s for ns, s in self.scripts if ns == netns)

"""How the kubelet starts container processes: forked by the node's zygote, or spawned directly.

Built-in workloads (Python programs) are forked by :mod:`~kubewire.agents.kubelet.zygote`, which
this module starts on demand (one per cluster, like a container runtime shared by the nodes: each
child enters its own pod's namespaces; in a session of its own so it outlives the agents) and
talks to over its Unix socket.  Machine commands (busybox, curl, any
image with an explicit command) are forked by it too and ``exec``-ed, so every container has the
zygote as its parent.  The kubelet gets a pid and start time, learns of the exit through a pidfd,
and asks :meth:`Spawner.exit_status` for the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubewire.host import process

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ZYGOTE_START = 10.0  # seconds to wait for a new zygote's socket


class SpawnError(Exception):
    """The process could not be started; the message says why."""


class Spawner:
    """One node's process starter (owns the zygote connection)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.socket_path = state_dir / "zygote.sock"
        self.pid_path = state_dir / "zygote.pid"
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    def _zygote_alive(self) -> bool:
        return process.recorded_pid(self.pid_path) is not None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._conn is not None and not self._conn[1].is_closing():
            return self._conn
        if not self._zygote_alive():
            await asyncio.get_running_loop().run_in_executor(None, self._start_zygote)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ZYGOTE_START
        while True:
            try:
                self._conn = await asyncio.open_unix_connection(str(self.socket_path))
                return self._conn
            except (FileNotFoundError, ConnectionRefusedError):
                if loop.time() > deadline:
                    raise SpawnError("the workload zygote did not start; see zygote.log") from None
                await asyncio.sleep(0.01)

    def _start_zygote(self) -> None:
        """Start the cluster's zygote unless another node's agent just did (a lock file decides)."""
        with open(self.state_dir / "zygote.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._zygote_alive():
                return
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            spawned = process.start(
                [sys.executable, "-m", "kubewire.agents.kubelet.zygote", str(self.socket_path)],
                process.Sandbox(),
                env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                log_path=self.state_dir / "zygote.log",
            )
            self.pid_path.write_text(f"{spawned.pid} {spawned.start_ticks}\n")

    async def warm(self) -> None:
        """Start (or reach) the zygote ahead of the first pod."""
        async with self._lock:
            await self._connect()

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            for attempt in (1, 2):
                reader, writer = await self._connect()
                try:
                    writer.write(json.dumps(request).encode() + b"\n")
                    await writer.drain()
                    line = await reader.readline()
                    if line:
                        reply: dict[str, Any] = json.loads(line)
                        return reply
                except (ConnectionError, OSError):
                    pass
                self._conn = None  # the zygote went away: start (or reach) it again once
                if attempt == 2:
                    break
            raise SpawnError("lost the connection to the workload zygote")

    async def start(
        self,
        argv: Sequence[str],
        box: process.Sandbox,
        *,
        env: Mapping[str, str],
        cwd: str | None,
        log_path: Path,
    ) -> process.Spawned:
        """Start ``argv`` through the zygote: built-ins (``python -m kubewire.workloads.X``) are forked
        pre-warmed, anything else is forked and ``exec``-ed.  Raises ``OSError`` with the reason when
        the program cannot start (missing executable, bad working directory, namespace gone)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        request: dict[str, Any] = {
            "op": "spawn",
            "env": dict(env),
            "cwd": cwd or "",
            "log": str(log_path),
            "netns": box.netns,
            "mounts": [list(m) for m in box.mounts],
            "hostname": box.hostname,
        }
        if (
            len(argv) >= 3
            and argv[0] == sys.executable
            and argv[1] == "-m"
            and argv[2].startswith("kubewire.workloads.")
        ):
            request.update(module=argv[2], args=list(argv[3:]))
        else:
            request["exec"] = list(argv)
        reply = await self._call(request)
        if "error" in reply:
            raise OSError(int(reply.get("errno") or 0), str(reply["error"]))
        return process.Spawned(int(reply["pid"]), int(reply["ticks"]))

    async def exit_status(self, spawned: process.Spawned | None, pid: int) -> int | None:
        """The return code of an ended process (negative for a signal), or None if unknowable."""
        if spawned is not None and spawned.popen is not None and spawned.pid == pid:
            return await asyncio.get_running_loop().run_in_executor(None, spawned.popen.wait)
        if not self._zygote_alive():
            return None
        try:
            reply = await self._call({"op": "status", "pid": pid})
        except SpawnError:
            return None
        status = reply.get("status")
        return int(status) if status is not None else None

    async def exec_in(self, box: process.Sandbox, argv: Sequence[str], timeout: float) -> tuple[int | None, bytes]:
        """Run a command inside a pod's namespaces (exec probes and hooks); None exit code on timeout."""
        if not argv:
            return 126, b"no command"
        loop = asyncio.get_running_loop()

        def run() -> tuple[int | None, bytes]:
            try:
                done = subprocess.run(
                    list(argv),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout,
                    preexec_fn=lambda: process.enter(box),
                    env={"PATH": DEFAULT_PATH},
                )
            except subprocess.TimeoutExpired as e:
                return None, e.output or b""
            except OSError as e:
                return 126, str(e).encode()
            return done.returncode, done.stdout

        return await loop.run_in_executor(None, run)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None

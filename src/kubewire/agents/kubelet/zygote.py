"""The workload zygote: one pre-warmed process per node that forks built-in workloads.

Every built-in image (echo, agnhost, nginx, http-echo, pause) is a Python program; started the
usual way each one pays ~70 ms of CPU importing asyncio and its HTTP stack, which on a 2-core
machine is most of the cost of starting a hundred pods.  The zygote imports all of that once and
forks a child per container (Android's zygote, or multiprocessing's forkserver): the child enters
the pod's namespaces, points stdout/stderr at the container's log, and runs the workload's
``main`` — a real process with its own pid, namespaces and lifetime, started in about a
millisecond and sharing the imported code copy-on-write.

The zygote is its children's parent, so it reaps them and remembers each exit status; the kubelet
asks for a status when its pidfd says the process ended.  It runs in its own session and
outlives the kubelet: an agent restarted after ``kill -9`` reconnects and still learns the exit
codes of the containers it adopted.

Machine commands (busybox, curl, an image's explicit command) are started the same way, the
child ``exec``-ing the command after entering the namespaces: every container, built-in or not,
has the zygote as its parent, so its exit code is known whatever happened to the agents.

Protocol: JSON lines over a Unix socket.  ``{"op": "spawn", "module", "args" | "exec", "env",
"cwd", "log", "netns", "mounts", "hostname"}`` → ``{"pid", "ticks"}`` or ``{"errno", "error"}``;
``{"op": "status", "pid"}`` → ``{"status": <returncode, negative for a signal> | null}``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any

WORKLOADS = (
    "kubewire.workloads.echo",
    "kubewire.workloads.agnhost",
    "kubewire.workloads.httpecho",
    "kubewire.workloads.nginx",
    "kubewire.workloads.pause",
)
STATUS_MEMORY = 4096  # exit statuses kept for kubelets that ask late (after a restart)


def _preload() -> None:
    import asyncio  # noqa: F401 - with ssl: a forked child may serve TLS

    for name in WORKLOADS:
        importlib.import_module(name)
    import kubewire.workloads._http  # noqa: F401


def _setup(request: dict[str, Any], report: int) -> None:
    """Become the container: own session, the pod's namespaces, its log as stdout/stderr, its env."""
    os.setsid()
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    from kubewire.host.process import Sandbox, enter

    enter(
        Sandbox(
            netns=request.get("netns") or "",
            mounts=tuple((str(a), str(b)) for a, b in request.get("mounts") or ()),
            hostname=request.get("hostname") or "",
        )
    )
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    # Nothing of the zygote's (its socket, its clients, its epoll) leaks into a container.
    os.closerange(3, report)
    os.closerange(report + 1, 65536)
    if request.get("cwd"):
        os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request.get("env") or {})


def _child(request: dict[str, Any], report: int) -> None:
    """In the forked child: set up, then exec the command or run the built-in; never returns.

    A failure before the program runs is written to ``report`` (close-on-exec), which the zygote
    reads to answer the spawn request with the reason, as ``subprocess`` does."""
    code = 1
    try:
        _setup(request, report)
        if request.get("exec"):
            argv = [str(a) for a in request["exec"]]
            os.execvpe(argv[0], argv, dict(os.environ))
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own descriptors
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        import random

        random.seed()
        module = importlib.import_module(request["module"])
        os.close(report)  # started: nothing more to report
        report = -1
        args = list(request.get("args") or [])
        sys.argv = [request["module"], *args]
        main = module.main
        result = main(args) if main.__code__.co_argcount else main()
        code = int(result or 0)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except OSError as e:
        if report >= 0:
            with contextlib.suppress(OSError):
                os.write(report, json.dumps({"errno": e.errno or 0, "error": e.strerror or str(e)}).encode())
        code = 127
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class Zygote:
    """The server loop: accept spawn and status requests, reap children."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sel = selectors.DefaultSelector()
        self.statuses: OrderedDict[int, int] = OrderedDict()
        self.children: set[int] = set()
        self.buffers: dict[socket.socket, bytes] = {}
        self.running = True

    def serve(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        self.listener = listener
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.wake = (wake_r, wake_w)
        self.sel.register(listener, selectors.EVENT_READ, "accept")
        self.sel.register(wake_r, selectors.EVENT_READ, "signal")
        while self.running:
            for key, _ in self.sel.select(timeout=5.0):
                if key.data == "accept":
                    conn, _ = listener.accept()
                    self.buffers[conn] = b""
                    self.sel.register(conn, selectors.EVENT_READ, "client")
                elif key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]
            self._reap()
            if not self.path.parent.is_dir():
                # The cluster's state directory is gone (`kubewire down` finished): nobody can reach
                # this zygote any more, so it must not outlive the cluster, however it escaped the sweep.
                self.running = False
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _stop(self, *_: Any) -> None:
        self.running = False

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._record(pid, status)

    def _record(self, pid: int, status: int) -> None:
        self.children.discard(pid)
        self.statuses[pid] = os.waitstatus_to_exitcode(status)
        while len(self.statuses) > STATUS_MEMORY:
            self.statuses.popitem(last=False)

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(conn)
            self.buffers.pop(conn, None)
            conn.close()
            return
        buf = self.buffers[conn] + data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            reply = self._handle(json.loads(line), conn)
            conn.sendall(json.dumps(reply).encode() + b"\n")
        self.buffers[conn] = buf

    def _handle(self, request: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            pid = int(request["pid"])
            self._reap()
            if pid in self.children:
                with contextlib.suppress(ChildProcessError):
                    _, status = os.waitpid(pid, 0)  # its pidfd said it ended: this returns at once
                    self._record(pid, status)
            return {"status": self.statuses.get(pid)}
        if op == "spawn":
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                _child(request, write_end)
            os.close(write_end)
            with os.fdopen(read_end, "rb") as r:
                failure = r.read()  # EOF once the child execs (close-on-exec) or starts its workload
            self.children.add(pid)
            if failure:
                with contextlib.suppress(ChildProcessError):
                    _, status = os.waitpid(pid, 0)
                    self._record(pid, status)
                reply: dict[str, Any] = json.loads(failure)
                return reply
            return {"pid": pid, "ticks": _ticks(pid)}
        return {"error": f"unknown op {op!r}"}


def _ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def main() -> int:
    path = Path(sys.argv[1])
    _preload()
    Zygote(path).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

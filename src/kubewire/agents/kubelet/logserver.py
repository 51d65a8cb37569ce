"""The kubelet's log endpoint: ``GET /containerLogs/{namespace}/{pod}/{container}`` on a Unix socket.

The API server answers ``pods/{name}/log`` the way upstream does, by proxying to the kubelet of the
pod's node; this module is that kubelet end.  It owns reading one run's log file and shaping it per
``PodLogOptions``: ``follow``, ``previous``, ``tailLines`` (and the legacy ``tail``), ``limitBytes``,
``sinceSeconds``/``sinceTime``.  *Which* file holds a container's current or previous run is the
kubelet's knowledge (its pod records), so it is asked of an injected :class:`LogLocator`, which also
raises the kubelet's own refusals (``previous terminated container "c" in pod "p" not found``, …) as
:class:`LogError`; :class:`LogError` has constructors for those sentences, worded as upstream's
``validateContainerLogStatus`` and ``getContainerLogs``.

What cannot be honoured exactly, because a container's stdout and stderr go straight to a file of raw
bytes (no CRI log format, hence no per-line timestamps or stream tags):

* ``timestamps`` is accepted and ignored: there is no time to prefix lines with.
* ``sinceSeconds``/``sinceTime`` are approximated by the file's mtime: when the file was last written
  before the cut-off, none of its existing content is sent (a follow still streams what is written
  from now on); otherwise all of it is (subject to ``tailLines``).
* ``stream`` other than ``All`` is refused: stdout and stderr are interleaved in one file.

Follow polls the file (every :data:`POLL_INTERVAL` seconds) and ends once the run stops writing
(``LogTarget.running()`` turns false) and the file is drained, or when the client goes away.
Errors are ``metav1.Status`` JSON bodies carrying the status code, so the API server can pass them on.
Access control is the socket's: whoever can open the node's state directory may read its logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from aiohttp import web

log = logging.getLogger("kubewire.kubelet.logs")

POLL_INTERVAL = 0.1
CHUNK = 64 * 1024

_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    422: "Invalid",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class LogError(Exception):
    """A refusal to serve logs: the HTTP status code and the sentence the user sees."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": _REASONS.get(self.code, ""),
            "code": self.code,
        }

    # Upstream's wording (pkg/kubelet/server/server.go getContainerLogs and
    # pkg/kubelet/kubelet_pods.go validateContainerLogStatus).

    @classmethod
    def pod_not_found(cls, pod: str) -> LogError:
        return cls(404, f'pod "{pod}" does not exist')

    @classmethod
    def container_not_found(cls, container: str, pod: str) -> LogError:
        return cls(404, f'container "{container}" not found in pod "{pod}"')

    @classmethod
    def not_available(cls, container: str, pod: str) -> LogError:
        return cls(400, f'container "{container}" in pod "{pod}" is not available')

    @classmethod
    def no_previous(cls, container: str, pod: str) -> LogError:
        return cls(400, f'previous terminated container "{container}" in pod "{pod}" not found')

    @classmethod
    def waiting(cls, container: str, pod: str, reason: str = "ContainerCreating") -> LogError:
        return cls(400, f'container "{container}" in pod "{pod}" is waiting to start: {reason}')

    @classmethod
    def terminated(cls, container: str, pod: str) -> LogError:
        return cls(400, f'container "{container}" in pod "{pod}" is terminated')


@dataclass(frozen=True)
class LogTarget:
    """One run's log file, and whether that run is still writing it."""

    path: Path
    running: Callable[[], bool]


class LogLocator(Protocol):
    """The kubelet's answer to "which file holds this container's (previous) run?"; raises :class:`LogError`."""

    def locate(self, namespace: str, pod: str, container: str, previous: bool) -> LogTarget: ...


@dataclass(frozen=True)
class LogOptions:
    """The ``PodLogOptions`` the kubelet acts on, decoded from the query."""

    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since: float | None = None  # epoch seconds: content older than this is not wanted


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _bool(query: Any, key: str) -> bool:
    value = query.get(key)
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise LogError(400, f'Unable to decode query: {key}: strconv.ParseBool: parsing "{value}": invalid syntax')


def _int(query: Any, key: str) -> int | None:
    value = query.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise LogError(
            400, f'Unable to decode query: {key}: strconv.ParseInt: parsing "{value}": invalid syntax'
        ) from None


def parse_options(query: Any, now: float) -> LogOptions:
    """Decode and validate (as ``ValidatePodLogOptions``) the query of a ``containerLogs`` request."""
    tail = query.get("tail")  # the kubelet's backwards-compatible spelling of tailLines
    if tail is not None and "tailLines" not in query:
        query = {**query, "tailLines": "" if tail == "all" else tail}
    tail_lines = _int(query, "tailLines")
    limit_bytes = _int(query, "limitBytes")
    since_seconds = _int(query, "sinceSeconds")
    since_time = query.get("sinceTime") or None
    problems = []
    if tail_lines is not None and tail_lines < 0:
        problems.append(f"tailLines: Invalid value: {tail_lines}: must be greater than or equal to 0")
    if limit_bytes is not None and limit_bytes < 1:
        problems.append(f"limitBytes: Invalid value: {limit_bytes}: must be greater than 0")
    if since_seconds is not None and since_time is not None:
        problems.append("Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified")
    elif since_seconds is not None and since_seconds < 1:
        problems.append(f"sinceSeconds: Invalid value: {since_seconds}: must be greater than 0")
    if problems:
        raise LogError(422, "Invalid request: " + ", ".join(problems))
    stream = query.get("stream") or "All"
    if stream != "All":
        raise LogError(400, f"stream {stream} cannot be served: this kubelet keeps stdout and stderr in one file")
    since: float | None = None
    if since_seconds is not None:
        since = now - since_seconds
    elif since_time is not None:
        try:
            since = datetime.fromisoformat(since_time).timestamp()
        except ValueError:
            raise LogError(400, f'Unable to decode query: sinceTime: parsing time "{since_time}"') from None
    return LogOptions(
        follow=_bool(query, "follow"),
        previous=_bool(query, "previous"),
        tail_lines=tail_lines,
        limit_bytes=limit_bytes,
        since=since,
    )


def tail_offset(f: IO[bytes], size: int, lines: int) -> int:
    """The offset where the last ``lines`` lines of the first ``size`` bytes begin (an unfinished last line counts)."""
    if lines <= 0:
        return size
    end = size
    if size:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            end = size - 1  # the final newline ends the last line; it does not start another
    count = 0
    pos = end
    while pos > 0:
        start = max(0, pos - CHUNK)
        f.seek(start)
        block = f.read(pos - start)
        idx = len(block)
        while (idx := block.rfind(b"\n", 0, idx)) >= 0:
            count += 1
            if count == lines:
                return start + idx + 1
        pos = start
    return 0


def _open(path: Path) -> IO[bytes] | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


def _start_offset(f: IO[bytes], opts: LogOptions) -> int:
    """Where to start sending: skip what ``since`` excludes, then keep the last ``tailLines`` lines."""
    info = os.fstat(f.fileno())
    size = info.st_size
    if opts.since is not None and info.st_mtime < opts.since:
        return size
    if opts.tail_lines is not None:
        return tail_offset(f, size, opts.tail_lines)
    return 0


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _stream(request: web.Request, resp: web.StreamResponse, target: LogTarget, opts: LogOptions) -> None:
    remaining = opts.limit_bytes
    f = _open(target.path)
    try:
        if f is not None:
            f.seek(_start_offset(f, opts))
        draining = False
        while True:
            if f is None:
                f = _open(target.path)  # the run has not opened its log yet
            chunk = f.read(CHUNK if remaining is None else min(CHUNK, remaining)) if f is not None else b""
            if chunk:
                await resp.write(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
                    if remaining <= 0:
                        return
                continue
            if not opts.follow or draining or _gone(request):
                return
            if not target.running():
                draining = True  # one more read: what the run wrote before it ended
                continue
            await asyncio.sleep(POLL_INTERVAL)
    finally:
        if f is not None:
            f.close()


def _status(err: LogError) -> web.Response:
    return web.Response(body=orjson.dumps(err.to_status()), status=err.code, content_type="application/json")


class LogServer:
    """The aiohttp application serving ``/containerLogs`` from a :class:`LogLocator`."""

    def __init__(self, locator: LogLocator, clock: Callable[[], float] = time.time) -> None:
        self.locator = locator
        self.clock = clock
        self.app = web.Application()
        self.app.router.add_route("*", "/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        self.app.router.add_route("*", "/{tail:.*}", self._not_found)

    async def _not_found(self, request: web.Request) -> web.Response:
        return _status(LogError(404, "the server could not find the requested resource"))

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return _status(LogError(405, f"{request.method} is not supported on containerLogs"))
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        try:
            opts = parse_options(request.query, self.clock())
            target = self.locator.locate(ns, pod, container, opts.previous)
        except LogError as err:
            return _status(err)
        resp = web.StreamResponse(status=200)
        resp.content_type = "text/plain"
        resp.enable_chunked_encoding()
        await resp.prepare(request)  # headers now, so a follower knows at once that the stream is open
        with contextlib.suppress(ConnectionResetError):
            await _stream(request, resp, target, opts)
            await resp.write_eof()
        return resp


async def serve(locator: LogLocator, socket_path: Path | str) -> web.AppRunner:
    """Serve the log endpoint on ``socket_path`` (a stale socket left by a dead agent is replaced)."""
    path = Path(socket_path)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    runner = web.AppRunner(LogServer(locator).app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    log.info("serving container logs on %s", path)
    return runner

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
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import orjson

log = logging.getLogger("kubewire.kubelet.logs")

POLL_INTERVAL = 0.1
CHUNK = 64 * 1024
SHUTDOWN_TIMEOUT = 1.0  # how long cleanup() waits for answers in progress before cutting them

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


def _status_body(err: LogError) -> bytes:
    return orjson.dumps(err.to_status())


def _reason(code: int) -> bytes:
    try:
        return HTTPStatus(code).phrase.encode("ascii")
    except ValueError:
        return b""


def _split_target(target: str) -> tuple[str, str]:
    """The path and query of a request target, as aiohttp splits it (``#fragment`` dropped)."""
    if not target.startswith("/"):  # absolute-form (``http://host/path?q``)
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    target = target.partition("#")[0]
    path, _, query = target.partition("?")
    return path, query


def _query(raw: str) -> dict[str, str]:
    """The query as aiohttp's ``request.query`` reads it: the first value of each key, blanks kept."""
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        query.setdefault(key, value)
    return query


class _Body:
    """The chunked body of one 200 response: what :func:`_stream` writes to, and whether to stop."""

    def __init__(self, conn: h11.Connection, writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
        self._conn = conn
        self._writer = writer
        self._stop = stop

    def gone(self) -> bool:
        """The client went away (or the server is shutting down): a follow ends here."""
        return self._stop.is_set() or self._writer.is_closing()

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionResetError("the client went away")
        self._writer.write(self._conn.send(h11.Data(data=data)) or b"")
        await self._writer.drain()

    async def pause(self, seconds: float) -> None:
        """Sleep between polls, waking early when the stream has to end."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()


async def _stream(body: _Body, target: LogTarget, opts: LogOptions) -> None:
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
                await body.write(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
                    if remaining <= 0:
                        return
                continue
            if not opts.follow or draining or body.gone():
                return
            if not target.running():
                draining = True  # one more read: what the run wrote before it ended
                continue
            await body.pause(POLL_INTERVAL)
    finally:
        if f is not None:
            f.close()


class _Connection:
    """One client connection: HTTP/1.1 (keep-alive included) over a stream pair, spoken through h11."""

    def __init__(self, server: LogServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER)
        self.busy = False  # answering a request (idle connections are simply closed on shutdown)
        self.stop = asyncio.Event()  # set when the client goes away or the server shuts down

    async def run(self) -> None:
        while not self.server.closing:
            request = await self._next_request()
            if request is None:
                return
            self.busy = True
            try:
                await self._answer(request)
            finally:
                self.busy = False
            if self.server.closing or self.writer.is_closing():
                return
            if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                return
            self.conn.start_next_cycle()

    async def _next_request(self) -> h11.Request | None:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    err = LogError(exc.error_status_hint, f"bad request: {exc}")
                    self._send_error(err, head_only=False, close=True)
                    with contextlib.suppress(ConnectionError):
                        await self.writer.drain()
                return None
            if isinstance(event, h11.Request):
                return event
            if event is h11.NEED_DATA:
                try:
                    data = await self.reader.read(CHUNK)
                except ConnectionError:
                    return None
                self.conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            # Data / EndOfMessage of a request we already answered cannot come here: keep reading.

    def _request_complete(self) -> bool:
        """Consume what has arrived of the request's body; whether all of it has (else the connection closes)."""
        while self.conn.their_state is h11.SEND_BODY:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                return False
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return False
        return self.conn.their_state is h11.DONE

    def _send_error(self, err: LogError, head_only: bool, close: bool) -> None:
        body = _status_body(err)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if close:
            headers.append(("Connection", "close"))
        data = self.conn.send(h11.Response(status_code=err.code, headers=headers, reason=_reason(err.code))) or b""
        if not head_only:
            data += self.conn.send(h11.Data(data=body)) or b""
        data += self.conn.send(h11.EndOfMessage()) or b""
        if not self.writer.is_closing():
            self.writer.write(data)

    async def _answer(self, request: h11.Request) -> None:
        close = not self._request_complete()
        method = request.method.decode("ascii", "replace")
        head_only = method == "HEAD"
        try:
            path, raw_query = _split_target(request.target.decode("ascii", "replace"))
            segments = [unquote(s) for s in path.split("/")]  # split first: an escaped "/" stays in its segment
            if len(segments) != 5 or segments[:2] != ["", "containerLogs"] or not all(segments[2:]):
                raise LogError(404, "the server could not find the requested resource")
            if method != "GET":
                raise LogError(405, f"{method} is not supported on containerLogs")
            ns, pod, container = segments[2:]
            opts = parse_options(_query(raw_query), self.server.clock())
            target = self.server.locator.locate(ns, pod, container, opts.previous)
        except LogError as err:
            self._send_error(err, head_only, close)
            await self._drain()
            return
        except Exception:
            log.exception("serving %s %s", method, request.target)
            self._send_error(LogError(500, "Internal Server Error"), head_only, close=True)
            await self._drain()
            return
        headers = [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")]
        if close:
            headers.append(("Connection", "close"))
        # Headers now, so a follower knows at once that the stream is open.
        self.writer.write(self.conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK")) or b"")
        if not await self._drain():
            return
        watcher = asyncio.create_task(self._watch())
        try:
            await _stream(_Body(self.conn, self.writer, self.stop), target, opts)
            if not self.writer.is_closing():
                self.writer.write(self.conn.send(h11.EndOfMessage()) or b"")
                await self.writer.drain()
        except ConnectionError:
            pass  # the client left
        except Exception:
            log.exception("streaming %s", target.path)
            self.writer.close()  # the body cannot be finished properly: cut it
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _drain(self) -> bool:
        try:
            await self.writer.drain()
        except ConnectionError:
            return False
        return True

    async def _watch(self) -> None:
        """While a body streams, read ahead so that a client going away is noticed (as aiohttp does).

        What arrives meanwhile (a pipelined request) is kept for h11, up to :data:`CHUNK` bytes; a
        client that closes its end has gone away, so the connection is closed and the stream ends.
        """
        received = 0
        while received <= CHUNK:
            try:
                data = await self.reader.read(CHUNK)
            except ConnectionError:
                data = b""
            if not data:
                self.writer.close()
                self.stop.set()
                return
            received += len(data)
            self.conn.receive_data(data)


class LogServer:
    """The ``/containerLogs`` endpoint over a Unix socket; :meth:`cleanup` stops it.

    Plain asyncio streams and h11 rather than aiohttp: importing aiohttp would cost every node agent
    start about a tenth of a second.
    """

    def __init__(self, locator: LogLocator, clock: Callable[[], float] = time.time) -> None:
        self.locator = locator
        self.clock = clock
        self.closing = False
        self._server: asyncio.Server | None = None
        self._connections: dict[_Connection, asyncio.Task[Any]] = {}

    async def start(self, path: Path) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self, reader, writer)
        task = asyncio.current_task()
        if task is not None:
            self._connections[connection] = task
        try:
            await connection.run()
        except Exception:
            log.exception("log connection failed")
        finally:
            self._connections.pop(connection, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def cleanup(self) -> None:
        """Stop accepting, end the open streams and close every connection.

        A follow ends at once with its body properly terminated; other answers in progress get
        :data:`SHUTDOWN_TIMEOUT` seconds to finish before their connections are cut.  Connections are
        closed rather than their tasks cancelled (asyncio would log each cancelled handler).
        """
        self.closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.stop.set()
            if not connection.busy:
                connection.writer.close()  # waiting for a request that will not be answered
        tasks = set(self._connections.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT)
            if pending:
                for connection, task in list(self._connections.items()):
                    if task in pending:
                        connection.writer.transport.abort()
                _, pending = await asyncio.wait(pending, timeout=SHUTDOWN_TIMEOUT)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


async def serve(locator: LogLocator, socket_path: Path | str) -> LogServer:
    """Serve the log endpoint on ``socket_path`` (a stale socket left by a dead agent is replaced).

    The returned server's ``await cleanup()`` stops it.
    """
    path = Path(socket_path)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    server = LogServer(locator)
    await server.start(path)
    log.info("serving container logs on %s", path)
    return server

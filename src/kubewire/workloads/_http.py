"""The HTTP server every built-in workload shares: HTTP/1.1 (h11), HTTP/2 (h2), WebSocket (wsproto), TLS.

A workload supplies one coroutine, ``handler(Request) -> Response``, and a ``Listener`` saying which
protocols its port speaks; this module owns the byte-level work: parsing, keep-alive, ``Expect:
100-continue``, cleartext HTTP/2 by prior knowledge or by ``Upgrade: h2c``, HTTP/2 over TLS chosen by
ALPN, the WebSocket opening handshake and framing, and the TLS facts upstream echo servers report
(version, SNI, ALPN, cipher suite, peer certificates).

Responses look like Go's ``net/http`` ones (a ``Date`` header, an explicit ``Content-Length``,
``text/plain; charset=utf-8`` when the handler names no type), because the programs served here
stand in for Go binaries and their clients compare what they get.

Memory matters more than speed (a hundred pods each run one of these), so h2, wsproto and ssl are
imported only when a connection first needs them, and request bodies are capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import h11

from kubewire.workloads import _runtime

if TYPE_CHECKING:
    import ssl

    import h2.connection

# Bodies beyond this are refused (413): echo servers keep the whole request in memory.
MAX_BODY = 16 * 1024 * 1024
# Largest request head h11 accepts (Go's DefaultMaxHeaderBytes is 1 MB; 64 KiB is plenty here).
MAX_HEAD = 64 * 1024
READ_SIZE = 65536
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Headers that describe one HTTP/1.1 hop and are illegal in HTTP/2 (RFC 9113 section 8.2.2).
_HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"})
# OpenSSL's TLS 1.2 suite names -> the IANA names Go's tls.CipherSuiteName reports (TLS 1.3 names agree).
_GO_CIPHER_NAMES = {
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-AES128-SHA": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "ECDHE-RSA-AES256-SHA": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "ECDHE-ECDSA-AES128-SHA": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "ECDHE-ECDSA-AES256-SHA": "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "AES128-GCM-SHA256": "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "AES256-GCM-SHA384": "TLS_RSA_WITH_AES_256_GCM_SHA384",
}
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class TLSInfo:
    """What a Go server's ``tls.ConnectionState`` tells a handler, in Go's spelling."""

    version: str
    server_name: str
    negotiated_protocol: str
    cipher_suite: str
    peer_certificates: tuple[str, ...]


@dataclass
class Request:
    """One request, whichever protocol carried it. ``headers`` keep arrival order, names lowercased."""

    method: str
    target: str
    proto: str
    headers: list[tuple[str, str]]
    host: str
    body: bytes
    remote: str
    local_port: int
    tls: TLSInfo | None = None
    stream_id: int = 0

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str) -> str:
        """The first value of header ``name`` (case-insensitive), or ""."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), "")

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def form_value(self, name: str) -> str:
        """Go's ``Request.FormValue``: a urlencoded POST/PUT/PATCH body first, then the query string."""
        if self.method in ("POST", "PUT", "PATCH") and self.header("content-type").startswith(
            "application/x-www-form-urlencoded"
        ):
            for key, value in parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True):
                if key == name:
                    return value
        for key, value in parse_qsl(self.query, keep_blank_values=True):
            if key == name:
                return value
        return ""

    def query_has(self, name: str) -> bool:
        return any(key == name for key, _ in parse_qsl(self.query, keep_blank_values=True))

    def go_headers(self) -> dict[str, list[str]]:
        """The request headers as Go's ``http.Request.Header`` holds them: canonical names, Host left out."""
        out: dict[str, list[str]] = {}
        for name, value in self.headers:
            if name == "host" or name.startswith(":"):
                continue
            out.setdefault(canonical_header(name), []).append(value)
        return out


WebSocketHandler = Callable[["WebSocket"], Awaitable[None]]


@dataclass
class Response:
    """What a handler answers. ``websocket`` accepts a WebSocket upgrade and runs the given coroutine;
    ``abort`` resets the connection (RST) instead of answering; ``trailers`` are sent on HTTP/2 only."""

    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] | None = None
    websocket: WebSocketHandler | None = None
    abort: bool = False
    close: bool = False


Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Listener:
    """One listening port: its handler and the protocols it speaks (HTTP/1.1 always, unless ``h1`` is False)."""

    port: int
    handler: Handler
    tls: ssl.SSLContext | None = None
    h2_prior_knowledge: bool = False
    h2_upgrade: bool = False
    h1: bool = True
    host: str | None = None


def canonical_header(name: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey``: ``x-forwarded-for`` -> ``X-Forwarded-For``."""
    if not name or any(c in name for c in " \t\r\n:") or not name.isascii():
        return name
    out = []
    upper = True
    for c in name:
        out.append(c.upper() if upper else c.lower())
        upper = c == "-"
    return "".join(out)


def http_date(now: float | None = None) -> str:
    """An IMF-fixdate (``Mon, 02 Jan 2006 15:04:05 GMT``) without importing email.utils."""
    t = time.gmtime(now)
    return (
        f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def status_text(code: int) -> str:
    """Go's ``http.StatusText`` (Python's phrases match it for every registered code)."""
    from http import HTTPStatus

    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def text(body: str, status: int = 200, *headers: tuple[str, str]) -> Response:
    """A plain-text response, as Go's ``fmt.Fprint(w, ...)`` produces one."""
    return Response(status, body.encode(), [("Content-Type", "text/plain; charset=utf-8"), *headers])


def go_error(message: str, status: int) -> Response:
    """Go's ``http.Error``: the message plus a newline, marked nosniff."""
    return Response(
        status,
        (message + "\n").encode(),
        [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")],
    )


def go_remote(peer: Any) -> str:
    """``ip:port`` the way Go's ``RemoteAddr`` prints it (``[::1]:5000`` for IPv6)."""
    if not isinstance(peer, tuple) or len(peer) < 2:
        return str(peer or "")
    host = str(peer[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"


def tls_context(
    cert_file: str, key_file: str, *, client_ca: str = "", alpn: Iterable[str] = ("h2", "http/1.1")
) -> ssl.SSLContext:
    """A server context like Go's ``ListenAndServeTLS``: TLS 1.2+, ALPN h2 then http/1.1, SNI recorded.

    With ``client_ca``, client certificates are verified against it when offered but not required
    (Go's ``tls.VerifyClientCertIfGiven``).
    """
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    protocols = list(alpn)
    if protocols:
        ctx.set_alpn_protocols(protocols)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.sni_callback = _remember_sni
    return ctx


def _remember_sni(sslobj: Any, server_name: str | None, _ctx: Any) -> None:
    with contextlib.suppress(AttributeError):  # an object without __dict__: the name goes unreported
        sslobj.kubewire_sni = server_name or ""


def tls_info(sslobj: Any) -> TLSInfo:
    """The TLS facts of an established connection, named as Go names them."""
    import ssl

    cipher = sslobj.cipher()
    name = cipher[0] if cipher else ""
    peer = sslobj.getpeercert(binary_form=True)
    return TLSInfo(
        version=sslobj.version() or "",
        server_name=getattr(sslobj, "kubewire_sni", ""),
        negotiated_protocol=sslobj.selected_alpn_protocol() or "",
        cipher_suite=_GO_CIPHER_NAMES.get(name, name),
        peer_certificates=(ssl.DER_cert_to_PEM_cert(peer),) if peer else (),
    )


async def serve(listener: Listener) -> asyncio.Server:
    """Start listening (all addresses unless ``listener.host`` or ``KUBEWIRE_BIND_HOST`` say otherwise)."""
    host = listener.host or _runtime.bind_host()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Connection(listener, reader, writer).run()

    return await asyncio.start_server(
        on_connection, host=host, port=listener.port, ssl=listener.tls, reuse_address=True, limit=READ_SIZE
    )


def quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Keep peers that vanish mid-handshake (TLS probes, port scans) out of the pod's log."""
    exc = context.get("exception")
    if isinstance(exc, ConnectionError | OSError | asyncio.CancelledError):
        return
    if "SSL" in str(context.get("message", "")) or type(exc).__name__.startswith("SSL"):
        return
    loop.default_exception_handler(context)


def reset_connection(writer: asyncio.StreamWriter) -> None:
    """Reset a connection: SO_LINGER 0 then close sends RST, as Go's ``SetLinger(0)`` + ``Close`` do."""
    import socket
    import struct

    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def udp_socket(port: int, host: str | None = None) -> Any:
    """A bound UDP socket like Go's ``ListenUDP("udp", ":port")``: dual-stack ``[::]``, else ``0.0.0.0``.

    ``host`` (or ``KUBEWIRE_BIND_HOST``) binds one address instead.
    """
    import socket

    host = host or _runtime.bind_host()
    if host:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return sock
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", port))
        return sock
    except OSError:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        return sock


async def serve_udp(port: int, answer: Callable[[bytes, str], bytes | None], host: str | None = None) -> Any:
    """Answer each datagram on ``port`` with ``answer(payload, "ip:port")`` (None sends nothing)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _UdpAnswer(answer), sock=udp_socket(port, host))
    return transport


class _UdpAnswer(asyncio.DatagramProtocol):
    def __init__(self, answer: Callable[[bytes, str], bytes | None]) -> None:
        self.answer = answer
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # a DatagramTransport in all but name (selector transports skip the base)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = self.answer(data, go_remote(addr))
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class _Connection:
    """One accepted connection, from protocol detection to close."""

    def __init__(self, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.listener = listener
        self.reader = reader
        self.writer = writer
        self.remote = go_remote(writer.get_extra_info("peername"))
        sockname = writer.get_extra_info("sockname")
        self.local_port = int(sockname[1]) if isinstance(sockname, tuple) else 0
        sslobj = writer.get_extra_info("ssl_object")
        self.tls = tls_info(sslobj) if sslobj is not None else None

    async def run(self) -> None:
        try:
            if self.tls is not None and self.tls.negotiated_protocol == "h2":
                await _H2Connection(self, b"").run()
                return
            initial = b""
            if self.tls is None:
                initial = await self._sniff_preface()
                if initial.startswith(H2_PREFACE):
                    if self.listener.h2_prior_knowledge:
                        await _H2Connection(self, initial).run()
                    else:
                        await self._write(_raw_response(505, "unsupported protocol version"))
                    return
            if self.listener.h1:
                await self._serve_h1(initial)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            await self.close()

    async def call_handler(self, request: Request) -> Response:
        """Run the handler; a bug in it costs that request a 500, not the process (Go recovers handler panics too)."""
        try:
            return await self.listener.handler(request)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as err:
            _runtime.log(f"http: panic serving {request.remote}: {type(err).__name__}: {err}")
            return go_error("Internal Server Error", 500)

    async def _sniff_preface(self) -> bytes:
        """Read until the bytes either are, or cannot become, the HTTP/2 connection preface."""
        data = b""
        while len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
            chunk = await self.reader.read(READ_SIZE)
            if not chunk:
                break
            data += chunk
        return data

    async def _write(self, data: bytes) -> None:
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def close(self) -> None:
        if self.writer.is_closing():
            return
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    def abort(self) -> None:
        reset_connection(self.writer)

    async def _next_event(self, conn: h11.Connection) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.reader.read(READ_SIZE)
            conn.receive_data(data)

    async def _serve_h1(self, initial: bytes) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        if initial:  # (receive_data(b"") would mean end of stream)
            conn.receive_data(initial)
        while True:
            try:
                event = await self._next_event(conn)
                if not isinstance(event, h11.Request):
                    return
                body = bytearray()
                if conn.they_are_waiting_for_100_continue:
                    await self._write(
                        conn.send(h11.InformationalResponse(status_code=100, headers=[], reason="Continue")) or b""
                    )
                while True:
                    part = await self._next_event(conn)
                    if isinstance(part, h11.Data):
                        body += part.data
                        if len(body) > MAX_BODY:
                            await self._send_h1(conn, "GET", go_error("http: request body too large", 413))
                            return
                    elif isinstance(part, h11.EndOfMessage):
                        break
                    else:
                        return
            except h11.RemoteProtocolError as err:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = err.error_status_hint
                    await self._write(_raw_response(status, status_text(status)))
                return
            request = self._h1_request(event, bytes(body))
            upgrade = request.header("upgrade").lower()
            settings = request.header_values("http2-settings")
            if self.listener.h2_upgrade and upgrade == "h2c" and len(settings) == 1:
                await self._upgrade_h2c(conn, request, settings[0])
                return
            response = await self.call_handler(request)
            if response.abort:
                self.abort()
                return
            if response.websocket is not None:
                await self._accept_websocket(conn, request, response)
                return
            await self._send_h1(conn, request.method, response)
            if conn.our_state is h11.MUST_CLOSE or response.close:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    def _h1_request(self, event: h11.Request, body: bytes) -> Request:
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers.raw_items()]
        host = next((v for k, v in headers if k == "host"), "")
        return Request(
            method=event.method.decode("ascii"),
            target=event.target.decode("latin-1"),
            proto=f"HTTP/{event.http_version.decode('ascii')}",
            headers=headers,
            host=host,
            body=body,
            remote=self.remote,
            local_port=self.local_port,
            tls=self.tls,
        )

    async def _send_h1(self, conn: h11.Connection, method: str, response: Response) -> None:
        headers = _final_headers(response)
        if response.close:
            headers.append(("Connection", "close"))
        data = conn.send(
            h11.Response(status_code=response.status, headers=headers, reason=status_text(response.status))
        )
        out = bytearray(data or b"")
        if response.body and method != "HEAD" and response.status not in (204, 304) and response.status >= 200:
            out += conn.send(h11.Data(data=response.body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await self._write(bytes(out))

    async def _upgrade_h2c(self, conn: h11.Connection, request: Request, settings: str) -> None:
        """RFC 7540 section 3.2: answer 101, then serve the upgrading request as HTTP/2 stream 1."""
        data = conn.send(
            h11.InformationalResponse(
                status_code=101, headers=[("Connection", "Upgrade"), ("Upgrade", "h2c")], reason="Switching Protocols"
            )
        )
        await self._write(data or b"")
        trailing, _closed = conn.trailing_data
        h2conn = _H2Connection(self, bytes(trailing), upgrade=(settings, request))
        await h2conn.run()

    async def _accept_websocket(self, conn: h11.Connection, request: Request, response: Response) -> None:
        key = request.header("sec-websocket-key")
        connection_tokens = {t.strip().lower() for t in request.header("connection").split(",")}
        if (
            request.method != "GET"
            or request.header("upgrade").lower() != "websocket"
            or "upgrade" not in connection_tokens
            or not key
        ):
            await self._send_h1(conn, request.method, go_error("Bad Request", 400))
            return
        if request.header("sec-websocket-version") != "13":
            await self._send_h1(conn, request.method, Response(400, b"", [("Sec-WebSocket-Version", "13")], close=True))
            return
        from wsproto.utilities import generate_accept_token

        accept = generate_accept_token(key.encode("latin-1")).decode("ascii")
        data = conn.send(
            h11.InformationalResponse(
                status_code=101,
                headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)],
                reason="Switching Protocols",
            )
        )
        await self._write(data or b"")
        trailing, _closed = conn.trailing_data
        ws = WebSocket(self, bytes(trailing))
        assert response.websocket is not None
        try:
            await response.websocket(ws)
        finally:
            await ws.close()


class WebSocket:
    """An accepted WebSocket (RFC 6455, no extensions): receive whole messages, send, close."""

    def __init__(self, connection: _Connection, trailing: bytes) -> None:
        from wsproto.connection import Connection, ConnectionType

        self._conn = connection
        self._ws = Connection(ConnectionType.SERVER, trailing_data=trailing)
        self._closed = False

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the peer closed (the close handshake is answered here)."""
        from wsproto.connection import ConnectionState
        from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
        from wsproto.frame_protocol import ParseFailed

        text_parts: list[str] = []
        byte_parts: list[bytes] = []
        while not self._closed:
            try:
                events = list(self._ws.events())
            except ParseFailed:
                self._closed = True
                return None
            for event in events:
                if isinstance(event, TextMessage):
                    text_parts.append(event.data)
                    if event.message_finished:
                        return "".join(text_parts)
                elif isinstance(event, BytesMessage):
                    byte_parts.append(bytes(event.data))
                    if event.message_finished:
                        return b"".join(byte_parts)
                elif isinstance(event, Ping):
                    await self._conn._write(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if self._ws.state is ConnectionState.REMOTE_CLOSING:
                        await self._conn._write(self._ws.send(event.response()))
                    self._closed = True
                    return None
            data = await self._conn.reader.read(READ_SIZE)
            if not data:
                self._closed = True
                return None
            self._ws.receive_data(data)
        return None

    async def send(self, message: str | bytes) -> None:
        from wsproto.events import BytesMessage, TextMessage

        event = TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
        await self._conn._write(self._ws.send(event))

    async def close(self, code: int = 1000) -> None:
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection

        if self._ws.state is ConnectionState.OPEN:
            with contextlib.suppress(ConnectionError, OSError):
                await self._conn._write(self._ws.send(CloseConnection(code=code)))
        self._closed = True


class _H2Connection:
    """HTTP/2 server side of one connection (h2 does the framing; this drives streams and flow control)."""

    def __init__(self, connection: _Connection, initial: bytes, upgrade: tuple[str, Request] | None = None) -> None:
        import h2.config
        import h2.connection

        self.c = connection
        self.initial = initial
        self.upgrade = upgrade
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2: h2.connection.H2Connection = h2.connection.H2Connection(config=config)
        self.streams: dict[int, tuple[list[tuple[bytes, bytes]], bytearray]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.window_open = asyncio.Event()
        self.done = False

    async def flush(self) -> None:
        await self.c._write(self.h2.data_to_send())

    async def run(self) -> None:
        import h2.events
        import h2.exceptions

        if self.upgrade is not None:
            settings, request = self.upgrade
            padded = settings.strip() + "=" * (-len(settings.strip()) % 4)
            self.h2.initiate_upgrade_connection(settings_header=padded.encode("ascii"))
            await self.flush()
            self._spawn(1, request)
        else:
            self.h2.initiate_connection()
            await self.flush()
        data = self.initial
        try:
            while not self.done:
                if data:
                    try:
                        events = self.h2.receive_data(data)
                    except h2.exceptions.ProtocolError:
                        await self.flush()
                        return
                    for event in events:
                        self._on_event(event, h2.events)
                    await self.flush()
                if self.done:
                    break
                data = await self.c.reader.read(READ_SIZE)
                if not data:
                    break
        finally:
            self.done = True
            self.window_open.set()
            for task in list(self.tasks):
                task.cancel()

    def _on_event(self, event: Any, events: Any) -> None:
        if isinstance(event, events.RequestReceived):
            self.streams[event.stream_id] = (list(event.headers), bytearray())
            if event.stream_ended is not None:
                self._finish(event.stream_id)
        elif isinstance(event, events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream[1].extend(event.data)
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if event.stream_ended is not None:
                self._finish(event.stream_id)
        elif isinstance(event, events.StreamEnded):
            self._finish(event.stream_id)
        elif isinstance(event, events.StreamReset):
            self.streams.pop(event.stream_id, None)
            self.window_open.set()
        elif isinstance(event, events.WindowUpdated | events.RemoteSettingsChanged):
            self.window_open.set()
        elif isinstance(event, events.ConnectionTerminated):
            self.done = True

    def _finish(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        raw_headers, body = stream
        pseudo: dict[str, str] = {}
        headers: list[tuple[str, str]] = []
        for k, v in raw_headers:
            name, value = k.decode("latin-1"), v.decode("latin-1")
            if name.startswith(":"):
                pseudo[name] = value
            else:
                headers.append((name, value))
        authority = pseudo.get(":authority") or next((v for k, v in headers if k == "host"), "")
        request = Request(
            method=pseudo.get(":method", ""),
            target=pseudo.get(":path", ""),
            proto="HTTP/2.0",
            headers=headers,
            host=authority,
            body=bytes(body),
            remote=self.c.remote,
            local_port=self.c.local_port,
            tls=self.c.tls,
            stream_id=stream_id,
        )
        self._spawn(stream_id, request)

    def _spawn(self, stream_id: int, request: Request) -> None:
        task = asyncio.get_running_loop().create_task(self._respond(stream_id, request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _respond(self, stream_id: int, request: Request) -> None:
        import h2.exceptions

        response = await self.c.call_handler(request)
        try:
            if response.abort:
                self.h2.reset_stream(stream_id)
                await self.flush()
                return
            headers = [(b":status", str(response.status).encode())]
            headers += [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in _final_headers(response)
                if k.lower() not in _HOP_HEADERS
            ]
            body = response.body if request.method != "HEAD" else b""
            trailers = response.trailers
            self.h2.send_headers(stream_id, headers, end_stream=not body and not trailers)
            await self.flush()
            view = memoryview(body)
            while view:
                window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
                if window <= 0:
                    self.window_open.clear()
                    await self.window_open.wait()
                    if self.done:
                        return
                    continue
                chunk, view = view[:window], view[window:]
                self.h2.send_data(stream_id, bytes(chunk), end_stream=not view and not trailers)
                await self.flush()
            if trailers:
                self.h2.send_headers(
                    stream_id, [(k.lower().encode(), v.encode()) for k, v in trailers], end_stream=True
                )
                await self.flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, ConnectionError):
            return


def _final_headers(response: Response) -> list[tuple[str, str]]:
    """The handler's headers plus what Go's server adds: Date, Content-Length and a default Content-Type."""
    headers = list(response.headers)
    names = {k.lower() for k, _ in headers}
    if "date" not in names:
        headers.append(("Date", http_date()))
    if response.status >= 200 and response.status not in (204, 304):
        if "content-length" not in names and response.trailers is None:
            headers.append(("Content-Length", str(len(response.body))))
        if response.body and "content-type" not in names:
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
    return headers


def _raw_response(status: int, message: str) -> bytes:
    """The fixed reply Go's server writes when it cannot parse a request at all (then it closes)."""
    reason = status_text(status)
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
        f"{status} {reason}: {message}"
    ).encode("latin-1")


async def serve_forever(listeners: list[Listener], stop: asyncio.Event) -> None:
    """Start every listener, then wait for ``stop``; listening sockets are closed on the way out."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(quiet_exception_handler)
    servers = [await serve(listener) for listener in listeners]
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()


async def http_get(host: str, port: int, target: str, *, timeout: float) -> tuple[int, bytes]:
    """A plain HTTP/1.1 GET (what Go's default client sends), returning status and body.

    Raises OSError (connect failures), TimeoutError, or h11.ProtocolError (a garbled answer).
    """

    async def fetch() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            conn = h11.Connection(h11.CLIENT)
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            head = conn.send(
                h11.Request(
                    method="GET", target=target, headers=[("Host", authority), ("User-Agent", "Go-http-client/1.1")]
                )
            )
            writer.write((head or b"") + (conn.send(h11.EndOfMessage()) or b""))
            await writer.drain()
            status = 0
            body = bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(READ_SIZE))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return status, bytes(body)
        finally:
            writer.close()

    return await asyncio.wait_for(fetch(), timeout)

"""Echo backends: Gateway API's ``echo-basic``, the Ingress conformance ``echoserver``, and the tutorial ``echoserver``.

``python -m kubewire.workloads.echo [--mode basic|ingress|tutorial] [--port N]``

basic (default) behaves as ``gateway-api/echo-basic`` (kubernetes-sigs/gateway-api-conformance-images),
configured, like it, by environment only:

- HTTP on ``HTTP_PORT`` (3000): ``/health`` (``OK``), ``/status/NNN`` (that status, empty body),
  ``/retry/?uuid=&succeedAfter=[&responseCode=][&delayRetry=]`` (fails, by RST or by
  ``responseCode``, until ``succeedAfter`` attempts for that uuid were made), ``/ws`` (WebSocket
  echo; an ``Origin`` header is required, as golang.org/x/net/websocket requires it), and every
  other path the JSON echo: ``path`` (the request-target), ``host``, ``method``, ``proto``,
  ``headers`` (Go's canonical names -> values), ``httpPort``, ``namespace`` (``NAMESPACE``),
  ``ingress`` (``INGRESS_NAME``), ``service`` (``SERVICE_NAME``), ``pod`` (``POD_NAME``) and, over
  TLS, ``tls`` (version, peerCertificates, serverName, negotiatedProtocol, cipherSuite).
  ``?delay=<go duration>`` delays the answer; ``X-Echo-Set-Header: Name:value,...`` sets response
  headers. The JSON is indented with one space and HTML-escaped, as Go's ``json.MarshalIndent``.
- h2c on ``H2C_PORT`` (3001): HTTP/2 by prior knowledge, or HTTP/1.1 with ``Upgrade: h2c``
  (upgraded here as golang.org/x/net/http2/h2c did; the upgrading request reports ``HTTP/1.1``);
  anything else is ``400 Expected h2c request``.
- HTTPS on ``HTTPS_PORT`` (8443) when ``TLS_SERVER_CERT`` and ``TLS_SERVER_PRIVKEY`` name files, with
  ALPN h2/http1.1; ``TLS_CLIENT_CACERTS`` verifies client certificates when offered.
- ``GRPC_ECHO_SERVER`` set: the gRPC echo service (``GrpcEcho/Echo``, ``EchoTwo``; ``EchoThree``
  is unimplemented) on ``HTTP_PORT`` (h2c) and, with ``TLS_SERVER_CERT``/``TLS_SERVER_PRIV_KEY``,
  on ``HTTPS_PORT``. Server reflection is not offered.
- ``TCP_ECHO_SERVER`` set: the line protocol of echo-basic's tcpserver on ``TCP_PORT`` (3000) and,
  with ``TLS_SERVER_CERT``/``TLS_SERVER_PRIV_KEY``, TLS on ``TLS_PORT`` (8443): a welcome line,
  then ``TEST`` -> JSON assertions, ``IS_TLS`` -> true/false, ``PING`` -> PONG; ``TCP_MODE=RESET``
  resets every connection.
- ``UDP_ECHO_SERVER`` set: every datagram on ``UDP_PORT`` (8080) is answered with
  ``{"request": <payload>, namespace, ingress, service, pod}``.

ingress behaves as ``ingressconformance/echoserver`` (kubernetes-sigs/ingress-controller-conformance):
HTTP/1.1 on ``PORT`` (3000), ``/health``, and the JSON echo with ``path, host, method, proto,
headers, namespace, ingress, service, pod``.

tutorial behaves as ``registry.k8s.io/echoserver`` (the minikube tutorial image): HTTP on 8080, a
plain-text dump of the request (``Hostname:``, ``Pod Information:``, ``Request Information:``,
``Request Headers:``, ``Request Body:``). Pod information comes from ``NODE_NAME``, ``POD_NAME``,
``POD_NAMESPACE`` and ``POD_IP``.

``--port`` (a kubewire addition) overrides the main port of any mode. SIGTERM or SIGINT exit 0 at
once (the Go programs do not catch them; exiting cleanly keeps pod teardown quiet).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from kubewire.workloads import _protowire, _runtime

if TYPE_CHECKING:
    from kubewire.workloads._http import Listener, Request, Response, TLSInfo, WebSocket

GRPC_SERVICE = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho"
TCP_WELCOME = "Gateway API Test TCP Server\n"
# Go's json encoder escapes these even inside strings (HTML safety, JavaScript line separators).
_GO_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_JSON_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")
_STATUS_RE = re.compile(r"^/status/(\d\d\d)$")
# Reserved gRPC headers grpc-go keeps out of a handler's metadata (internal/transport isReservedHeader).
_GRPC_RESERVED = frozenset(
    {
        "te",
        "grpc-timeout",
        "grpc-encoding",
        "grpc-message",
        "grpc-status",
        "grpc-message-type",
        "grpc-status-details-bin",
    }
)


def go_json(value: Any, *, indent: bool) -> str:
    """JSON as Go's encoding/json writes it (MarshalIndent with a one-space indent, or Marshal)."""
    if indent:
        out = json.dumps(value, ensure_ascii=False, indent=1)
    else:
        out = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _GO_JSON_ESCAPE_RE.sub(lambda m: _GO_JSON_ESCAPES[m.group(0)], out)


def _go_string(value: str) -> str:
    """A header value as Go's JSON encoder sees its bytes: valid UTF-8 kept, invalid bytes -> U+FFFD."""
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value


class Context:
    """The pod context every echo answer carries (from the downward-API environment variables)."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.namespace = environ.get("NAMESPACE", "")
        self.ingress = environ.get("INGRESS_NAME", "")
        self.service = environ.get("SERVICE_NAME", "")
        self.pod = environ.get("POD_NAME", "")

    def fields(self) -> dict[str, str]:
        return {"namespace": self.namespace, "ingress": self.ingress, "service": self.service, "pod": self.pod}


def tls_assertions(info: TLSInfo) -> dict[str, Any]:
    """echo-basic's ``tls`` block (Go struct order; omitempty fields left out when empty)."""
    out: dict[str, Any] = {"version": info.version}
    if info.peer_certificates:
        out["peerCertificates"] = list(info.peer_certificates)
    out["serverName"] = info.server_name
    if info.negotiated_protocol:
        out["negotiatedProtocol"] = info.negotiated_protocol
    out["cipherSuite"] = info.cipher_suite
    return out


def _clean_path(path: str) -> str:
    """Go's ``path.Clean`` for a URL path, keeping a trailing slash as ServeMux does."""
    parts: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    cleaned = "/" + "/".join(parts)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


class BasicEcho:
    """echo-basic's HTTP handlers: the mux on the HTTP and HTTPS ports, and the h2c port's handler."""

    def __init__(self, environ: dict[str, str], http_port: str, *, ingress_mode: bool = False) -> None:
        self.context = Context(environ)
        self.http_port = http_port
        self.ingress_mode = ingress_mode
        self.attempts: dict[str, int] = {}

    def assertions(self, request: Request) -> dict[str, Any]:
        headers = {k: [_go_string(v) for v in vs] for k, vs in sorted(request.go_headers().items())}
        out: dict[str, Any] = {
            "path": _go_string(request.target),
            "host": request.host,
            "method": request.method,
            "proto": request.proto,
            "headers": headers,
        }
        if not self.ingress_mode:
            out["httpPort"] = self.http_port
        out.update(self.context.fields())
        if request.tls is not None and not self.ingress_mode:
            out["tls"] = tls_assertions(request.tls)
        return out

    async def mux(self, request: Request) -> Response:
        """The ServeMux of port 3000/8443, behind echo-basic's ``preserveSlashes`` wrapper."""
        from kubewire.workloads import _http

        path = unquote(request.path).replace("//", "/")
        cleaned = _clean_path(path)
        if cleaned != path:
            return self._redirect(request, cleaned)
        if path == "/health":
            return _http.Response(200, b"OK")
        if self.ingress_mode:
            return await self.echo(request)
        if path in ("/status", "/retry"):
            return self._redirect(request, path + "/")
        if path.startswith("/status/"):
            match = _STATUS_RE.match(request.target)
            status = int(match.group(1)) if match else 400
            return _http.Response(status if status >= 200 else 400)
        if path.startswith("/retry/"):
            return await self.retry(request)
        if path == "/ws":
            return self.websocket(request)
        return await self.echo(request)

    async def h2c(self, request: Request) -> Response:
        """The h2c port: HTTP/2 requests (or h2c upgrades) only."""
        from kubewire.workloads import _http

        if request.proto != "HTTP/2.0" and request.header("upgrade") != "h2c":
            return _http.text("Expected h2c request", 400)
        return await self.echo(request)

    def _redirect(self, request: Request, location: str) -> Response:
        from kubewire.workloads import _http

        if request.query:
            location += "?" + request.query
        body = f'<a href="{location}">Moved Permanently</a>.\n\n'.encode() if request.method in ("GET", "HEAD") else b""
        headers = [("Location", location)]
        if body:
            headers.append(("Content-Type", "text/html; charset=utf-8"))
        return _http.Response(301, body, headers)

    async def echo(self, request: Request) -> Response:
        from kubewire.workloads import _http

        _runtime.log(f"Echoing back request made to {request.target} to client ({request.remote})")
        delay = request.form_value("delay")
        if delay:
            try:
                await _sleep(_runtime.parse_duration(delay))
            except ValueError as err:
                return self.error(str(err), 500)
        body = go_json(self.assertions(request), indent=True).encode()
        headers: list[tuple[str, str]] = []
        if not self.ingress_mode:
            headers = _echo_set_headers(request.header_values("x-echo-set-header"))
        headers += [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff")]
        return _http.Response(200, body, headers)

    def error(self, message: str, status: int) -> Response:
        from kubewire.workloads import _http

        body = go_json({"message": message}, indent=False).encode()
        headers = [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff")]
        return _http.Response(status, body, headers)

    async def retry(self, request: Request) -> Response:
        """A flaky backend for Gateway retry tests: fail until ``succeedAfter`` attempts per uuid."""
        from kubewire.workloads import _http

        query = dict(_query_pairs(request.query))
        uuid = query.get("uuid", "")
        if not uuid:
            return _http.text("uuid is required", 400)
        try:
            succeed_after = int(query.get("succeedAfter", ""))
        except ValueError:
            return _http.text("succeedAfter is required", 400)
        response_code: int | None
        try:
            response_code = int(query.get("responseCode", ""))
        except ValueError:
            response_code = None
        if self.attempts.get(uuid, 0) < succeed_after:
            self.attempts[uuid] = self.attempts.get(uuid, 0) + 1
            delay = request.form_value("delayRetry")
            if delay:
                try:
                    await _sleep(_runtime.parse_duration(delay))
                except ValueError as err:
                    return self.error(str(err), 500)
            if response_code is None:
                return _http.Response(abort=True)
            return _http.Response(response_code)
        return await self.echo(request)

    def websocket(self, request: Request) -> Response:
        from kubewire.workloads import _http

        if not request.header("origin"):
            return _http.Response(403, close=True)
        _runtime.log(f"established websocket connection {request.remote}")
        return _http.Response(101, websocket=_ws_echo)


async def _ws_echo(ws: WebSocket) -> None:
    """Echo every message back until the peer closes (echo-basic copies frames back the same way)."""
    while (message := await ws.receive()) is not None:
        await ws.send(message)


async def _sleep(seconds: float) -> None:
    import asyncio

    if seconds > 0:
        await asyncio.sleep(seconds)


def _query_pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return list(reversed(parse_qsl(query, keep_blank_values=True)))


def _echo_set_headers(values: list[str]) -> list[tuple[str, str]]:
    """``X-Echo-Set-Header: A:1,B:2`` -> response headers, repeated names joined with commas."""
    out: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            name, _, val = item.strip().partition(":")
            if not name:
                continue
            out[name] = f"{out[name]},{val.strip()}" if name in out else val.strip()
    return list(out.items())


# --- gRPC ---------------------------------------------------------------------------------------


def _pb_field(number: int, payload: bytes, *, keep_empty: bool = False) -> bytes:
    """A length-delimited protobuf field; proto3 leaves empty strings out, set messages stay in."""
    if not payload and not keep_empty:
        return b""
    return _protowire.varint(number << 3 | 2) + _protowire.varint(len(payload)) + payload


def _pb_str(number: int, value: str) -> bytes:
    return _pb_field(number, value.encode())


class GrpcEcho:
    """The gRPC echo service of echo-basic, over h2 with the protobuf encoded by hand."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.context = Context(environ)

    def assertions(self, method: str, request: Request) -> bytes:
        header_fields = b""
        metadata: list[tuple[str, str]] = [(":authority", request.host)] if request.host else []
        metadata += [(k, v) for k, v in request.headers if k not in _GRPC_RESERVED and k != "host"]
        for key, value in metadata:
            header_fields += _pb_field(2, _pb_str(1, key) + _pb_str(2, value), keep_empty=True)
        ctx = self.context
        context = _pb_str(1, ctx.namespace) + _pb_str(2, ctx.ingress) + _pb_str(3, ctx.service) + _pb_str(4, ctx.pod)
        body = _pb_str(1, f"/{GRPC_SERVICE}/{method}") + header_fields + _pb_str(3, request.host)
        body += _pb_field(4, context, keep_empty=True)
        if request.tls is not None:
            info = request.tls
            tls = _pb_str(1, info.version) + _pb_str(2, info.negotiated_protocol) + _pb_str(3, info.server_name)
            tls += _pb_str(4, info.cipher_suite) + b"".join(_pb_str(5, c) for c in info.peer_certificates)
            body += _pb_field(5, tls, keep_empty=True)
        return _pb_field(1, body, keep_empty=True)

    async def handle(self, request: Request) -> Response:
        from kubewire.workloads import _http

        grpc_headers = [("Content-Type", "application/grpc")]
        if request.proto != "HTTP/2.0" or not request.header("content-type").startswith("application/grpc"):
            return _http.Response(415, b"invalid gRPC request content-type", close=True)
        service, _, method = request.path.lstrip("/").partition("/")
        if service != GRPC_SERVICE:
            return _http.Response(200, b"", grpc_headers, trailers=_grpc_status(12, f"unknown service {service}"))
        if method not in ("Echo", "EchoTwo"):
            message = (
                f"method {method} not implemented"
                if method == "EchoThree"
                else f"unknown method {method} for service {service}"
            )
            return _http.Response(200, b"", grpc_headers, trailers=_grpc_status(12, message))
        kind = "TLS" if request.tls is not None else "plaintext"
        _runtime.log(f"Received over {kind}: {method}")
        encoded = self.assertions(method, request)
        frame = b"\x00" + len(encoded).to_bytes(4, "big") + encoded
        return _http.Response(200, frame, grpc_headers, trailers=_grpc_status(0, ""))


def _grpc_status(code: int, message: str) -> list[tuple[str, str]]:
    from urllib.parse import quote

    trailers = [("grpc-status", str(code))]
    if message:
        trailers.append(("grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")))
    return trailers


# --- TCP and UDP (echo-basic's tcpserver and udpechoserver) -------------------------------------


class TcpEcho:
    """echo-basic's TCP server: a welcome line, then TEST / IS_TLS / PING commands, one per line."""

    def __init__(self, environ: dict[str, str], tcp_port: str, tls_port: str) -> None:
        self.context = Context(environ)
        self.tcp_port = tcp_port
        self.tls_port = tls_port
        self.reset = environ.get("TCP_MODE", "") == "RESET"

    def payload(self, info: TLSInfo | None) -> str:
        out: dict[str, Any] = {**self.context.fields(), "tcpport": self.tcp_port}
        if self.tls_port:
            out["tlsport"] = self.tls_port
        out["isTLS"] = info is not None
        if info is not None:
            tls: dict[str, Any] = {"version": info.version.replace("TLSv", "TLS "), "serverName": info.server_name}
            if info.negotiated_protocol:
                tls["negotiatedProtocol"] = info.negotiated_protocol
            tls["cipherSuite"] = info.cipher_suite
            out["tls"] = tls
        return go_json(out, indent=False)

    async def handle(self, reader: Any, writer: Any) -> None:
        from kubewire.workloads import _http

        try:
            if self.reset:
                _http.reset_connection(writer)
                return
            sslobj = writer.get_extra_info("ssl_object")
            info = _http.tls_info(sslobj) if sslobj is not None else None
            writer.write(TCP_WELCOME.encode())
            await writer.drain()
            payload = self.payload(info)
            while line := await reader.readline():
                command = line.rstrip(b"\n").rstrip(b"\r")
                if command == b"TEST":
                    writer.write(payload.encode() + b"\n")
                elif command == b"IS_TLS":
                    writer.write(b"true\n" if info is not None else b"false\n")
                elif command == b"PING":
                    writer.write(b"PONG\n")
                await writer.drain()
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()


def udp_echo(context: Context, data: bytes, remote: str) -> bytes:
    """echo-basic's UDP echo: JSON with the request payload (first 1024 bytes) and the pod context."""
    payload = data[:1024].decode("utf-8", "replace")
    _runtime.log(f"Received UDP {payload} from {remote}")
    return go_json({"request": payload, **context.fields()}, indent=False).encode()


# --- the tutorial echoserver ---------------------------------------------------------------------


def tutorial_dump(request: Request, environ: dict[str, str], port: int) -> str:
    """The text ``registry.k8s.io/echoserver`` (nginx + lua) prints for a request."""
    if environ.get("POD_NAME"):
        pod = (
            f"\tnode name:\t{environ.get('NODE_NAME', '')}\n\tpod name:\t{environ.get('POD_NAME', '')}\n"
            f"\tpod namespace:\t{environ.get('POD_NAMESPACE', '')}\n\tpod IP:\t{environ.get('POD_IP', '')}"
        )
    else:
        pod = "\t-no pod information available-"
    host = request.host.rsplit(":", 1)[0] if request.host.count(":") == 1 else request.host
    client = request.remote.rsplit(":", 1)[0].strip("[]")
    scheme = "https" if request.tls is not None else "http"
    grouped: dict[str, list[str]] = {}
    for name, value in request.headers:
        grouped.setdefault(name, []).append(value)
    headers = "".join(f"\t{name}={', '.join(grouped[name])}\n" for name in sorted(grouped))
    body = request.body.decode("utf-8", "replace") if request.body else "\t-no body in request-"
    return (
        f"\n\nHostname: {_runtime.hostname()}\n\nPod Information:\n{pod}\n\nServer values:\n"
        f"\tserver_version=nginx: 1.13.3 - lua: 10008\n\nRequest Information:\n\tclient_address={client}\n"
        f"\tmethod={request.method}\n\treal path={request.target}\n\tquery={request.query}\n"
        f"\trequest_version={request.proto.removeprefix('HTTP/')}\n\trequest_scheme={scheme}\n"
        f"\trequest_uri={scheme}://{host or 'localhost'}:{port}{request.target}\n\n"
        f"Request Headers:\n{headers}\nRequest Body:\n{body}\n\n"
    )


# --- start-up ------------------------------------------------------------------------------------


def _own_flags(argv: Sequence[str]) -> dict[str, _runtime.FlagValue]:
    """``--mode`` and ``--port``; other arguments are ignored, as the upstream programs ignore them."""
    ours: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg.startswith("-") and arg.lstrip("-").partition("=")[0] in ("mode", "port"):
            ours.append(arg)
            if "=" not in arg and i < len(argv):
                ours.append(argv[i])
                i += 1
    values, _ = _runtime.parse_flags(ours, {"mode": "basic", "port": 0})
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        flags = _own_flags(args)
    except _runtime.FlagError as err:
        print(err, file=sys.stderr)
        return 2
    mode = str(flags["mode"])
    if mode not in ("basic", "ingress", "tutorial"):
        print(f"unknown --mode {mode!r} (basic, ingress, tutorial)", file=sys.stderr)
        return 2
    environ = dict(os.environ)
    port_override = int(flags["port"])
    tls = mode == "basic" and bool(
        environ.get("TLS_SERVER_CERT") and (environ.get("TLS_SERVER_PRIVKEY") or environ.get("TLS_SERVER_PRIV_KEY"))
    )
    _runtime.import_asyncio(tls=tls)
    import asyncio

    try:
        return asyncio.run(_serve(mode, environ, port_override))
    except OSError as err:
        print(f"panic: Failed to start listening: {err}", file=sys.stderr)
        return 2


async def _serve(mode: str, environ: dict[str, str], port_override: int) -> int:
    import asyncio

    from kubewire.workloads import _http

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.set_exception_handler(_http.quiet_exception_handler)

    def port(name: str, default: int) -> int:
        return port_override or int(environ.get(name) or default)

    listeners: list[Listener] = []
    if mode == "tutorial":
        main_port = port_override or 8080

        async def tutorial(request: Request) -> Response:
            dump = tutorial_dump(request, environ, main_port)
            return _http.Response(200, dump.encode(), [("Server", "echoserver"), ("Content-Type", "text/plain")])

        listeners.append(_http.Listener(main_port, tutorial))
        _runtime.log(f"Starting server, listening on port {main_port}")
    elif mode == "ingress":
        main_port = port("PORT", 3000)
        ingress = BasicEcho(environ, str(main_port), ingress_mode=True)
        listeners.append(_http.Listener(main_port, ingress.mux))
        _runtime.log(f"Starting server, listening on port {main_port}")
    elif environ.get("GRPC_ECHO_SERVER"):
        grpc = GrpcEcho(environ)
        http_port = port("HTTP_PORT", 3000)
        listeners.append(_http.Listener(http_port, grpc.handle, h2_prior_knowledge=True, h1=False))
        _runtime.log(f"plaintext server listening at [::]:{http_port}")
        cert, key = environ.get("TLS_SERVER_CERT", ""), environ.get("TLS_SERVER_PRIV_KEY", "")
        if cert and key:
            https_port = int(environ.get("HTTPS_PORT") or 8443)
            ctx = _http.tls_context(cert, key, alpn=("h2",))
            listeners.append(_http.Listener(https_port, grpc.handle, tls=ctx, h1=False))
            _runtime.log(f"secure server listening at [::]:{https_port}")
    elif environ.get("TCP_ECHO_SERVER"):
        return await _serve_tcp(environ, port_override, stop)
    elif environ.get("UDP_ECHO_SERVER"):
        udp_port = port("UDP_PORT", 8080)
        context = Context(environ)
        transport = await _http.serve_udp(udp_port, lambda data, remote: udp_echo(context, data, remote))
        _runtime.log(f"UDP server listening on :{udp_port}")
        try:
            await stop.wait()
        finally:
            transport.close()
        return 0
    else:
        http_port = port("HTTP_PORT", 3000)
        echo = BasicEcho(environ, str(http_port))
        listeners.append(_http.Listener(http_port, echo.mux))
        _runtime.log(f"Starting server, listening on port {http_port} (http)")
        h2c_port = int(environ.get("H2C_PORT") or 3001)
        listeners.append(_http.Listener(h2c_port, echo.h2c, h2_prior_knowledge=True, h2_upgrade=True))
        _runtime.log(f"Starting server, listening on port {h2c_port} (h2c)")
        cert, key = environ.get("TLS_SERVER_CERT", ""), environ.get("TLS_SERVER_PRIVKEY", "")
        if cert and key:
            https_port = int(environ.get("HTTPS_PORT") or 8443)
            ctx = _http.tls_context(cert, key, client_ca=environ.get("TLS_CLIENT_CACERTS", ""))
            listeners.append(_http.Listener(https_port, echo.mux, tls=ctx))
            _runtime.log(f"Starting server, listening on port {https_port} (https)")
    await _http.serve_forever(listeners, stop)
    return 0


async def _serve_tcp(environ: dict[str, str], port_override: int, stop: Any) -> int:
    import asyncio

    from kubewire.workloads import _http

    tcp_port = str(port_override or environ.get("TCP_PORT") or 3000)
    tls_port = environ.get("TLS_PORT") or "8443"
    server = TcpEcho(environ, tcp_port, tls_port)
    host = _runtime.bind_host()
    servers = [await asyncio.start_server(server.handle, host=host, port=int(tcp_port), reuse_address=True)]
    _runtime.log(f"Starting server (tcp) protocol=tcp port={tcp_port}")
    cert, key = environ.get("TLS_SERVER_CERT", ""), environ.get("TLS_SERVER_PRIV_KEY", "")
    if cert and key:
        ctx = _http.tls_context(cert, key, alpn=())
        servers.append(await asyncio.start_server(server.handle, host=host, port=int(tls_port), ssl=ctx))
        _runtime.log(f"Starting server (tcp) protocol=tls port={tls_port}")
    try:
        await stop.wait()
    finally:
        for s in servers:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

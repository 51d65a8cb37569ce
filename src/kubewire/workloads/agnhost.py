"""agnhost, the Kubernetes e2e test image (``registry.k8s.io/e2e-test-images/agnhost``): the networking subcommands.

``python -m kubewire.workloads.agnhost <subcommand> [flags]`` (the image's entrypoint is ``/agnhost``,
its default command ``pause``). Flags are spelled as upstream (pflag: ``--http-port=8080`` or
``--http-port 8080``); klog's global flags (``--v=2`` ...) are accepted and ignored.

- ``netexec``: HTTP on ``--http-port`` (8080; HTTPS with ``--tls-cert-file``/``--tls-private-key-file``)
  serving ``/`` (``NOW: <time>``), ``/clientip``, ``/header[?key=]``, ``/dial?host=&port=&request=
  &protocol=http|udp&tries=``, ``/echo?msg=[&code=]``, ``/exit?code=&timeout=&wait=``, ``/healthz``,
  ``/readyz`` (503 once SIGTERM arrived), ``/hostname``, ``/hostName``, ``/redirect?location=&code=``,
  ``/shell?cmd=`` (``/bin/sh -c``), ``/shutdown``; ``--http-override`` answers every request as that
  path. UDP on ``--udp-port`` (8081; -1 disables; ``--udp-listen-addresses``) answers ``hostname``,
  ``echo <msg>`` and ``clientip`` (lower-cased, as upstream). SIGTERM: exit 0 after
  ``--delay-shutdown`` seconds. ``/upload`` and SCTP are not offered.
- ``serve-hostname``: the hostname over HTTP (default), or raw ``--tcp`` / ``--udp`` (which need
  ``--http=false``), on ``--port`` (9376); ``--close`` adds ``Connection: close``. On SIGTERM it keeps
  serving for 60 s ("Awaiting pod deletion"), then exits 0 -- as upstream, so endpoint draining can
  be watched.
- ``porter``: for each ``SERVE_PORT_<n>``/``SERVE_TCP_PORT_<n>`` serve that value over HTTP on port n,
  ``SERVE_UDP_PORT_<n>`` over UDP, ``SERVE_TLS_PORT_<n>`` over HTTPS (``CERT_FILE``/``KEY_FILE``,
  default ``localhost.crt``/``localhost.key``); ``--json-response`` answers ``{"Method","Body"}``.
- ``connect host:port [--timeout 5s] [--protocol tcp|udp] [--udp-data hostname]``: exit 0 when the
  connection works, else exit 1 with ``TIMEOUT``, ``REFUSED``, ``DNS: ...``, ``UNKNOWN: ...`` or
  ``OTHER: ...`` on stderr.
- ``pause``: prints ``Paused`` and waits; SIGINT exits 1 and SIGTERM exits 2 (upstream's codes).
- ``liveness``: ``/healthz`` is 200 for 10 s then 500, ``/started``, ``/redirect?loc=`` on 8080
  (``--port`` is a kubewire addition).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from kubewire.workloads import _runtime

if TYPE_CHECKING:
    from kubewire.workloads._http import Request, Response

SUBCOMMANDS = ("connect", "liveness", "netexec", "pause", "porter", "serve-hostname")
# klog's flags are registered on agnhost's root command, so every subcommand accepts them.
_KLOG_FLAGS: dict[str, _runtime.FlagValue] = {
    "v": "0",
    "vmodule": "",
    "logtostderr": True,
    "alsologtostderr": False,
    "log_dir": "",
    "log_file": "",
    "log_file_max_size": "",
    "stderrthreshold": "",
    "add_dir_header": False,
    "skip_headers": False,
    "skip_log_headers": False,
    "one_output": False,
    "log_backtrace_at": "",
}
_STARTED = time.monotonic()


def _go_now() -> str:
    """``time.Now().String()`` as Go prints it in a UTC container, monotonic reading included."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))
    nanos = f"{int(now % 1 * 1e9):09d}".rstrip("0")
    fraction = f".{nanos}" if nanos else ""
    return f"{stamp}{fraction} +0000 UTC m=+{time.monotonic() - _STARTED:.9f}"


def _cobra_error(message: str, subcommand: str) -> int:
    sys.stderr.write(f"Error: {message}\nRun 'app {subcommand} --help' for usage.\n")
    return 1


def _cobra_flags(
    argv: Sequence[str], spec: dict[str, _runtime.FlagValue], subcommand: str
) -> tuple[dict[str, _runtime.FlagValue], int]:
    """Parse a subcommand taking no positional arguments; on error, print cobra's text and say exit 1."""
    try:
        flags, positional = _runtime.parse_flags(argv, spec)
    except _runtime.FlagError as err:
        return {}, _cobra_error(str(err).replace("flag provided but not defined: -", "unknown flag: --"), subcommand)
    if positional:
        return {}, _cobra_error(f'unknown command "{positional[0]}" for "app {subcommand}"', subcommand)
    return flags, 0


# --- netexec -------------------------------------------------------------------------------------


class Netexec:
    """The netexec HTTP handlers and UDP commands."""

    def __init__(self, flags: dict[str, _runtime.FlagValue]) -> None:
        self.flags = flags
        self.udp_ready = False
        self.terminating = False
        self.in_flight = 0

    async def handle(self, request: Request) -> Response:
        from kubewire.workloads import _http

        override = str(self.flags["http-override"])
        if override:
            request = _http.Request(
                "GET", override, request.proto, request.headers, request.host, b"", request.remote, request.local_port
            )
        self.in_flight += 1
        try:
            return await self.route(request)
        finally:
            self.in_flight -= 1

    async def route(self, request: Request) -> Response:
        from kubewire.workloads import _http

        path = request.path
        if path in ("/hostname", "/hostName"):
            _runtime.go_log(f"GET {path}")
            return _http.text(_runtime.hostname())
        if path == "/clientip":
            _runtime.go_log("GET /clientip")
            return _http.text(request.remote)
        if path == "/echo":
            return self.echo(request)
        if path == "/header":
            return self.header(request)
        if path == "/healthz":
            _runtime.go_log("GET /healthz")
            return _http.Response(200 if self.udp_ready else 412)
        if path == "/readyz":
            _runtime.go_log("GET /readyz")
            if self.terminating:
                return _http.text("shutting down", 503)
            return _http.text("ok") if self.udp_ready else _http.Response(412)
        if path == "/dial":
            return await self.dial(request)
        if path == "/shell":
            return await self.shell(request)
        if path == "/exit":
            return await self.exit(request)
        if path == "/shutdown":
            _runtime.go_log("GET /shutdown")
            _exit(0)
        if path == "/redirect":
            return self.redirect(request)
        if path == "/upload":
            _runtime.go_log("GET /upload")
            return _http.text(json.dumps({"error": "Unable to upload file."}, separators=(",", ":")))
        _runtime.go_log("GET /")
        return _http.text(f"NOW: {_go_now()}")

    def echo(self, request: Request) -> Response:
        from kubewire.workloads import _http

        msg, code = request.form_value("msg"), request.form_value("code")
        _runtime.go_log(f"GET /echo?msg={msg}&code={code}")
        if code:
            try:
                return _http.text(msg, int(code))
            except ValueError:
                return _http.text(f"argument 'code' must be an integer or empty, got {json.dumps(code)}\n")
        return _http.text(msg)

    def header(self, request: Request) -> Response:
        from kubewire.workloads import _http

        key = request.form_value("key")
        if key:
            _runtime.go_log(f"GET /header?key={key}")
            return _http.text(request.header(key))
        _runtime.go_log("GET /header")
        headers = dict(sorted(request.go_headers().items()))
        return _http.text(json.dumps(headers, separators=(",", ":"), ensure_ascii=False))

    def redirect(self, request: Request) -> Response:
        from kubewire.workloads import _http

        location, code = request.form_value("location"), request.form_value("code")
        _runtime.go_log(f"{request.method} /redirect?msg={location}&code={code}")
        status = 302
        if code:
            try:
                status = int(code)
            except ValueError:
                return _http.text(f"argument 'code' must be an integer or empty, got {json.dumps(code)}\n")
        body = b""
        headers = [("Location", location)]
        if request.method in ("GET", "HEAD"):
            body = f'<a href="{location}">{_http.status_text(status)}</a>.\n\n'.encode()
            headers.append(("Content-Type", "text/html; charset=utf-8"))
        return _http.Response(status, body, headers)

    async def dial(self, request: Request) -> Response:
        import asyncio
        import socket

        from kubewire.workloads import _http

        query = dict(reversed(_pairs(request.query)))
        host, port = query.get("host", ""), query.get("port", "")
        req, protocol, tries_text = query.get("request", ""), query.get("protocol", ""), query.get("tries", "")
        _runtime.go_log(f"GET /dial?host={host}&protocol={protocol}&port={port}&request={req}&tries={tries_text}")
        tries = 1
        if tries_text:
            try:
                tries = int(tries_text)
            except ValueError:
                return _http.go_error(
                    f'tries parameter is invalid. strconv.Atoi: parsing "{tries_text}": invalid syntax', 400
                )
        if not req:
            return _http.go_error("request parameter not specified. <nil>", 400)
        protocol = protocol.lower()
        if protocol not in ("", "http", "udp"):
            return _http.go_error(f"unsupported protocol. {protocol}", 400)
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            port_number = int(port) if port else 0
            infos = await asyncio.get_running_loop().getaddrinfo(
                host or None, port_number, type=socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
            )
            address = str(infos[0][4][0])
        except (ValueError, OSError) as err:
            network = "udp" if protocol == "udp" else "tcp"
            return _http.go_error(f"host and/or port param are invalid. lookup {network} {hostport}: {err}", 400)
        responses: list[str] = []
        errors: list[str] = []
        response = ""
        for _ in range(tries):
            if protocol == "udp":
                response, err_text = await _dial_udp(address, port_number, req)
            else:
                response, err_text = await _dial_http(address, port_number, req)
            if err_text:
                errors.append(err_text)
            else:
                responses.append(response)
        output: dict[str, list[str]] = {}
        if response:
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        return _http.text(json.dumps(dict(sorted(output.items())), separators=(",", ":"), ensure_ascii=False))

    async def shell(self, request: Request) -> Response:
        import asyncio

        from kubewire.workloads import _http

        cmd = request.form_value("shellCommand") or request.form_value("cmd")
        _runtime.go_log(f"GET /shell?cmd={cmd}")
        output: dict[str, str] = {}
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            out, _ = await proc.communicate()
            if out:
                output["output"] = out.decode("utf-8", "replace")
            if proc.returncode:
                if proc.returncode < 0:
                    output["error"] = f"signal: {signal.Signals(-proc.returncode).name.lower()}"
                else:
                    output["error"] = f"exit status {proc.returncode}"
        except OSError as err:
            output["error"] = f"fork/exec /bin/sh: {err.strerror.lower() if err.strerror else err}"
        return _http.text(json.dumps(dict(sorted(output.items())), separators=(",", ":"), ensure_ascii=False))

    async def exit(self, request: Request) -> Response:
        import asyncio

        from kubewire.workloads import _http

        wait_text, timeout_text, code_text = (request.form_value(k) for k in ("wait", "timeout", "code"))
        _runtime.go_log(f"GET /exit?code={code_text}&timeout={timeout_text}&wait={wait_text}")
        try:
            timeout = _runtime.parse_duration(timeout_text) if timeout_text else 0.0
        except ValueError:
            return _http.text(
                f"argument 'timeout' must be a valid golang duration or empty, got {json.dumps(timeout_text)}\n"
            )
        try:
            wait = _runtime.parse_duration(wait_text) if wait_text else 0.0
        except ValueError:
            return _http.text(
                f"argument 'wait' must be a valid golang duration or empty, got {json.dumps(wait_text)}\n"
            )
        try:
            code = int(code_text) if code_text else 0
        except ValueError:
            return _http.text(f"argument 'code' must be an integer [0-127] or empty, got {json.dumps(code_text)}\n")
        _runtime.go_log(
            f"Will begin shutdown in {_runtime.format_duration(wait)}, allowing {_runtime.format_duration(timeout)} "
            f"for connections to close, then will exit with {code}"
        )
        if wait > 0:
            await asyncio.sleep(wait)
        if timeout == 0:
            _exit(code)
        asyncio.get_running_loop().create_task(self._graceful_exit(code, timeout))
        return _http.Response(200)

    async def _graceful_exit(self, code: int, timeout: float) -> None:
        import asyncio

        deadline = time.monotonic() + timeout
        await asyncio.sleep(0.05)  # let the /exit answer reach its client first
        while self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        _runtime.go_log(
            f"Graceful shutdown completed with: {'<nil>' if self.in_flight == 0 else 'context deadline exceeded'}"
        )
        _exit(code)

    def udp_answer(self, data: bytes, remote: str) -> bytes | None:
        text = data.decode("utf-8", "replace").strip().lower()
        if text == "hostname":
            _runtime.go_log("Sending udp hostName response")
            return _runtime.hostname().encode()
        if text.startswith("echo "):
            reply = text.split(" ", 1)[1]
            _runtime.go_log(f"Echoing {reply} to UDP client {remote}")
            return reply.encode()
        if text == "clientip":
            _runtime.go_log(f"Sending clientip back to UDP client {remote}")
            return remote.encode()
        if text:
            _runtime.go_log(f"Unknown UDP command received from {remote}: {text}")
        return None


def _pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query, keep_blank_values=True)


def _reason(err: OSError) -> str:
    """An OSError the way Go words a syscall error (``connection refused``)."""
    return (os.strerror(err.errno) if err.errno else str(err)).lower()


def _exit(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _dial_http(address: str, port: int, request: str) -> tuple[str, str]:
    from kubewire.workloads import _http

    hostport = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    url = f"http://{hostport}/{request}"
    try:
        _status, body = await _http.http_get(address, port, f"/{request}", timeout=5.0)
        return body.decode("utf-8", "replace"), ""
    except TimeoutError:
        return "", f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except OSError as err:
        return "", f'Get "{url}": dial tcp {hostport}: connect: {_reason(err)}'
    except Exception as err:  # a garbled answer (h11.ProtocolError and friends)
        return "", f'Get "{url}": {err}'


async def _dial_udp(address: str, port: int, request: str) -> tuple[str, str]:
    import asyncio
    import socket

    hostport = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        try:
            await loop.sock_connect(sock, (address, port))
        except OSError as err:
            return "", f"udp dial failed. err:dial udp {hostport}: {_reason(err)}"
        local = sock.getsockname()
        local_text = f"[{local[0]}]:{local[1]}" if family == socket.AF_INET6 else f"{local[0]}:{local[1]}"
        try:
            await loop.sock_sendall(sock, request.encode())
        except OSError as err:
            return "", f"udp connection write failed. err:write udp {local_text}->{hostport}: {err.strerror}"
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5.0)
        except TimeoutError:
            return "", f"reading from udp connection failed. err:'read udp {local_text}->{hostport}: i/o timeout'"
        except OSError as err:
            reason = _reason(err)
            return "", f"reading from udp connection failed. err:'read udp {local_text}->{hostport}: {reason}'"
        if not data:
            return "", "reading from udp connection failed. err:'<nil>'"
        return data.decode("utf-8", "replace"), ""
    finally:
        sock.close()


def netexec(argv: Sequence[str]) -> int:
    spec: dict[str, _runtime.FlagValue] = {
        "http-port": 8080,
        "udp-port": 8081,
        "sctp-port": -1,
        "tls-cert-file": "",
        "tls-private-key-file": "",
        "http-override": "",
        "udp-listen-addresses": "",
        "delay-shutdown": 0,
        **_KLOG_FLAGS,
    }
    flags, failed = _cobra_flags(argv, spec, "netexec")
    if failed:
        return failed
    tls = bool(flags["tls-cert-file"])
    _runtime.import_asyncio(tls=tls)
    import asyncio

    return asyncio.run(_netexec(Netexec(flags)))


async def _netexec(server: Netexec) -> int:
    import asyncio

    from kubewire.workloads import _http

    flags = server.flags
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_http.quiet_exception_handler)
    stop = asyncio.Event()

    def on_term() -> None:
        server.terminating = True
        delay = int(flags["delay-shutdown"])
        if delay > 0:
            _runtime.go_log(f"Sleeping {delay} seconds before terminating...")
            loop.call_later(delay, stop.set)
        else:
            stop.set()

    loop.add_signal_handler(signal.SIGTERM, on_term)
    udp_transports = []
    udp_port = int(flags["udp-port"])
    if udp_port != -1:
        listen = str(flags["udp-listen-addresses"])
        addresses: list[str | None] = [*sorted({a.strip() for a in listen.split(",") if a.strip()})] or [None]
        for address in addresses:
            udp_transports.append(await _http.serve_udp(udp_port, server.udp_answer, host=address))
            _runtime.go_log(f"Started UDP server on port {address or ''} {udp_port}")
        server.udp_ready = True
    if int(flags["sctp-port"]) != -1:
        _runtime.go_log("SCTP is not supported by kubewire's netexec; --sctp-port ignored")
    ctx = None
    if flags["tls-cert-file"]:
        key = str(flags["tls-private-key-file"]) or str(flags["tls-cert-file"])
        ctx = _http.tls_context(str(flags["tls-cert-file"]), key)
    http_port = int(flags["http-port"])
    _runtime.go_log(f"Started HTTP server on port {http_port}")
    try:
        await _http.serve_forever([_http.Listener(http_port, server.handle, tls=ctx)], stop)
    finally:
        for transport in udp_transports:
            transport.close()
    return 0


# --- serve-hostname ------------------------------------------------------------------------------


def serve_hostname(argv: Sequence[str]) -> int:
    spec: dict[str, _runtime.FlagValue] = {
        "tcp": False,
        "udp": False,
        "http": True,
        "close": False,
        "port": 9376,
        **_KLOG_FLAGS,
    }
    flags, failed = _cobra_flags(argv, spec, "serve-hostname")
    if failed:
        return failed
    if flags["http"] and (flags["tcp"] or flags["udp"]):
        _runtime.go_log("Can't server TCP/UDP mode and HTTP mode at the same time")
        return 1
    _runtime.import_asyncio(tls=False)
    import asyncio

    return asyncio.run(_serve_hostname(flags))


async def _serve_hostname(flags: dict[str, _runtime.FlagValue]) -> int:
    import asyncio

    from kubewire.workloads import _http

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_http.quiet_exception_handler)
    name = _runtime.hostname()
    port = int(flags["port"])
    closers: list[Callable[[], None]] = []

    if flags["tcp"]:

        async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            _runtime.go_log(f"TCP request from {_http.go_remote(writer.get_extra_info('peername'))}")
            try:
                writer.write(name.encode())
                await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        tcp = await asyncio.start_server(on_tcp, host=_runtime.bind_host(), port=port, reuse_address=True)
        closers.append(tcp.close)
    if flags["udp"]:

        def on_udp(_data: bytes, remote: str) -> bytes:
            _runtime.go_log(f"UDP request from {remote}")
            return name.encode()

        closers.append((await _http.serve_udp(port, on_udp)).close)
    if flags["http"]:
        close = bool(flags["close"])

        async def on_http(request: Request) -> Response:
            _runtime.go_log(f"HTTP request from {request.remote}")
            return _http.Response(200, name.encode(), close=close)

        closers.append((await _http.serve(_http.Listener(port, on_http))).close)
    _runtime.go_log(f"Serving on port {port}.")
    term = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, term.set)
    await term.wait()
    _runtime.go_log("Shutting down after receiving signal: terminated.")
    _runtime.go_log("Awaiting pod deletion.")
    await asyncio.sleep(60)
    for close_server in closers:
        close_server()
    return 0


# --- porter --------------------------------------------------------------------------------------


def porter(argv: Sequence[str]) -> int:
    try:
        flags, positional = _runtime.parse_flags(argv, {"json-response": False, **_KLOG_FLAGS})
    except _runtime.FlagError as err:
        return _cobra_error(str(err).replace("flag provided but not defined: -", "unknown flag: --"), "porter")
    if positional:
        return _cobra_error(f'unknown command "{positional[0]}" for "app porter"', "porter")
    tls = any(k.startswith("SERVE_TLS_PORT_") for k in os.environ)
    _runtime.import_asyncio(tls=tls)
    import asyncio

    return asyncio.run(_porter(bool(flags["json-response"]), dict(os.environ)))


async def _porter(json_response: bool, environ: dict[str, str]) -> int:
    import asyncio

    from kubewire.workloads import _http

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_http.quiet_exception_handler)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def http_handler(value: str) -> _http.Handler:
        async def handle(request: Request) -> Response:
            if json_response:
                body = json.dumps({"Method": request.method, "Body": value}, separators=(",", ":"), ensure_ascii=False)
                return _http.Response(200, body.encode(), [("Content-Type", "application/json")])
            return _http.text(value)

        return handle

    closers: list[Callable[[], None]] = []
    prefixes = ("SERVE_PORT_", "SERVE_TCP_PORT_", "SERVE_UDP_PORT_", "SERVE_TLS_PORT_", "SERVE_SCTP_PORT_")
    for key, value in environ.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            continue
        port_text = key[len(prefix) :]
        try:
            port = int(port_text)
            if prefix == "SERVE_UDP_PORT_":
                closers.append((await _http.serve_udp(port, _constant_answer(value.encode()))).close)
                _runtime.go_log(f"Started UDP server on port {port_text}")
            elif prefix == "SERVE_TLS_PORT_":
                cert = environ.get("CERT_FILE") or "localhost.crt"
                key_file = environ.get("KEY_FILE") or "localhost.key"
                ctx = _http.tls_context(cert, key_file)
                closers.append((await _http.serve(_http.Listener(port, http_handler(value), tls=ctx))).close)
            elif prefix == "SERVE_SCTP_PORT_":
                _runtime.go_log(f"SCTP is not supported by kubewire's porter; {key} ignored")
            else:
                closers.append((await _http.serve(_http.Listener(port, http_handler(value)))).close)
        except (OSError, ValueError) as err:
            _runtime.go_log(f"server on port {port_text!r} failed: {err}")
    await stop.wait()
    for close in closers:
        close()
    return 0


def _constant_answer(reply: bytes) -> Callable[[bytes, str], bytes]:
    def answer(_data: bytes, _remote: str) -> bytes:
        return reply

    return answer


# --- connect -------------------------------------------------------------------------------------


def connect(argv: Sequence[str]) -> int:
    """Try one connection; the first word on stderr says what failed (tests match on it)."""
    import socket

    spec: dict[str, _runtime.FlagValue] = {
        "timeout": "0s",
        "protocol": "tcp",
        "udp-data": "hostname",
        "sctp-data": "hostname",
        **_KLOG_FLAGS,
    }
    try:
        flags, positional = _runtime.parse_flags(argv, spec)
        timeout = _runtime.parse_duration(str(flags["timeout"]))
    except (_runtime.FlagError, ValueError) as err:
        message = str(err).replace("flag provided but not defined: -", "unknown flag: --")
        return _cobra_error(message, "connect")
    if len(positional) != 1:
        return _cobra_error(f"accepts 1 arg(s), received {len(positional)}", "connect")
    dest = positional[0]
    protocol = str(flags["protocol"])
    if protocol not in ("", "tcp", "udp"):
        sys.stderr.write(f"Unsupported protocol\n{protocol}" if protocol != "sctp" else "Unsupported protocol\nsctp")
        return 1
    host, sep, port_text = dest.rpartition(":")
    if not sep or (":" in host and not (host.startswith("[") and host.endswith("]"))):
        reason = "missing port in address" if not sep else "too many colons in address"
        sys.stderr.write(f"UNKNOWN: address {dest}: {reason}\n")
        return 1
    host = host.strip("[]")
    sock_type = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    network = "udp" if protocol == "udp" else "tcp"
    try:
        infos = socket.getaddrinfo(host or None, port_text or "0", type=sock_type)
    except (socket.gaierror, UnicodeError) as err:
        sys.stderr.write(f"DNS: lookup {host}: {_gai_reason(err)}\n")
        return 1
    family, _, proto, _, address = infos[0]
    sock = socket.socket(family, sock_type, proto)
    try:
        if timeout > 0:
            sock.settimeout(timeout)
        if protocol == "udp":
            return _connect_udp(sock, address, dest, str(flags["udp-data"]))
        try:
            sock.connect(address)
        except TimeoutError:
            sys.stderr.write("TIMEOUT\n")
            return 1
        except ConnectionRefusedError:
            sys.stderr.write("REFUSED\n")
            return 1
        except OSError as err:
            sys.stderr.write(f"OTHER: dial {network} {dest}: connect: {_reason(err)}\n")
            return 1
        return 0
    finally:
        sock.close()


def _gai_reason(err: BaseException) -> str:
    import socket

    if isinstance(err, socket.gaierror) and err.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
        return "no such host"
    return str(err)


def _connect_udp(sock: Any, address: Any, dest: str, data: str) -> int:
    try:
        sock.connect(address)
    except OSError as err:
        sys.stderr.write(f"OTHER: dial udp {dest}: {_reason(err)}\n")
        return 1
    try:
        sock.send(f"{data}\n".encode())
        received = sock.recv(1024)
    except TimeoutError as err:
        sys.stderr.write(f"TIMEOUT: read udp {dest}: i/o timeout ({err})\n")
        return 1
    except ConnectionRefusedError:
        sys.stderr.write(f"REFUSED: read udp {dest}: recvfrom: connection refused\n")
        return 1
    except OSError as err:
        sys.stderr.write(f"UNKNOWN: {_reason(err)}\n")
        return 1
    if not received:
        sys.stderr.write("OTHER: No data received from the server. Cannot guarantee the server received the request.\n")
        return 1
    return 0


# --- pause ---------------------------------------------------------------------------------------


def pause(argv: Sequence[str]) -> NoReturn:
    _runtime.log("Paused")
    _runtime.exit_on_signals(1, signal.SIGINT)
    _runtime.exit_on_signals(2, signal.SIGTERM)
    while True:
        signal.pause()


# --- liveness ------------------------------------------------------------------------------------


def liveness(argv: Sequence[str]) -> int:
    try:
        flags, _ = _runtime.parse_flags(argv, {"port": 8080, **_KLOG_FLAGS})
    except _runtime.FlagError as err:
        return _cobra_error(str(err).replace("flag provided but not defined: -", "unknown flag: --"), "liveness")
    _runtime.import_asyncio(tls=False)
    import asyncio

    return asyncio.run(_liveness(int(flags["port"])))


async def _liveness(port: int) -> int:
    import asyncio
    from urllib.parse import unquote

    from kubewire.workloads import _http

    started = time.monotonic()

    async def handle(request: Request) -> Response:
        elapsed = time.monotonic() - started
        if request.path == "/started":
            return _http.text(_runtime.format_duration(elapsed))
        if request.path == "/healthz":
            if elapsed > 10:
                return _http.text(f"error: {elapsed}", 500)
            return _http.text("ok")
        if request.path == "/redirect":
            loc = unquote(dict(reversed(_pairs(request.query))).get("loc", ""))
            return _http.Response(302, f'<a href="{loc}">Found</a>.\n\n'.encode(), [("Location", loc)])
        return _http.go_error("404 page not found", 404)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await _http.serve_forever([_http.Listener(port, handle)], stop)
    return 0


# --- entry point ---------------------------------------------------------------------------------

_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "connect": connect,
    "liveness": liveness,
    "netexec": netexec,
    "pause": pause,
    "porter": porter,
    "serve-hostname": serve_hostname,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(
            "Usage:\n  app [command]\n\nAvailable Commands (kubewire built-in):\n"
            + "".join(f"  {name}\n" for name in SUBCOMMANDS)
        )
        return 0
    while args and args[0].startswith("-") and args[0] not in ("-h", "--help"):
        # klog's persistent flags may come before the subcommand (``--v=2 netexec``).
        name = args[0].lstrip("-").partition("=")[0]
        takes_value = name in _KLOG_FLAGS and not isinstance(_KLOG_FLAGS[name], bool) and "=" not in args[0]
        args = args[2:] if takes_value else args[1:]
    if not args:
        return main(["--help"])
    command = _COMMANDS.get(args[0])
    if command is None:
        sys.stderr.write(f'Error: unknown command "{args[0]}" for "app"\nRun \'app --help\' for usage.\n')
        return 1
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())

"""The built-in workloads as real processes on 127.0.0.1: HTTP/1.1, h2c, TLS, WebSocket, gRPC, TCP and UDP."""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import wsproto
import wsproto.events

HOST = "127.0.0.1"
HOSTNAME = socket.gethostname()


def free_port(*, udp_too: bool = False) -> int:
    """A port free on 127.0.0.1 (for TCP, and for UDP too when asked)."""
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if not udp_too:
            return port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((HOST, port))
            except OSError:
                continue
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.01)
    raise AssertionError(f"nothing listening on {port} after {deadline}s")


class Procs:
    """Starts workload processes and kills exactly those, by pid, at the end of the test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "KUBEWIRE_BIND_HOST": HOST,
            **(env or {}),
        }
        log = (self.tmp / f"{module}-{len(self.started)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", f"kubewire.workloads.{module}", *args],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.started.append(proc)
        return proc

    def serve(self, module: str, *args: str, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = self.start(module, *args, env=env)
        wait_port(port, proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.kill_all()


def http(
    port: int, raw: bytes, *, tls: ssl.SSLContext | None = None, sni: str = "localhost"
) -> tuple[int, dict[str, str], bytes]:
    """Send one raw HTTP/1.1 request (Connection: close) and parse the answer."""
    sock: socket.socket = socket.create_connection((HOST, port), timeout=5)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=sni)
    with sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def get(
    port: int, target: str = "/", *extra: str, method: str = "GET", body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: close", *extra]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return http(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def udp(port: int, payload: bytes, timeout: float = 5) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, (HOST, port))
        return s.recvfrom(65536)[0]


def wait_handler(proc: subprocess.Popen[bytes], signum: int, deadline: float = 10.0) -> None:
    """Wait until ``proc`` catches ``signum`` (its SigCgt mask in /proc), so a signal cannot kill it early."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert proc.poll() is None, f"process exited with {proc.returncode}"
        with open(f"/proc/{proc.pid}/status") as status:
            caught = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
        if caught & (1 << (signum - 1)):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {proc.pid} never installed a handler for signal {signum}")


def stop(proc: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = 5) -> int:
    wait_handler(proc, signum)
    proc.send_signal(signum)
    return proc.wait(timeout=timeout)


# --- HTTP/2 client helpers -----------------------------------------------------------------------


def h2_exchange(
    sock: socket.socket,
    conn: h2.connection.H2Connection,
    stream_id: int,
    *,
    request: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    initial: bytes = b"",
) -> tuple[dict[str, str], bytes, dict[str, str]]:
    """Send (optionally) a request on ``stream_id`` and read its response headers, body and trailers."""
    if request is not None:
        conn.send_headers(stream_id, request, end_stream=not body)
        if body:
            conn.send_data(stream_id, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    headers: dict[str, str] = {}
    trailers: dict[str, str] = {}
    data = b""
    pending = initial
    while True:
        if not pending:
            pending = sock.recv(65536)
            assert pending, "connection closed before the stream ended"
        events = conn.receive_data(pending)
        pending = b""
        for event in events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == stream_id:
                trailers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                data += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                sock.sendall(conn.data_to_send())
                return headers, data, trailers
        sock.sendall(conn.data_to_send())


def h2_client(sock: socket.socket) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return conn


def h2_get(port: int, path: str, *, tls: ssl.SSLContext | None = None) -> tuple[dict[str, str], bytes]:
    sock: socket.socket = socket.create_connection((HOST, port), timeout=5)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname="localhost")
        assert isinstance(sock, ssl.SSLSocket) and sock.selected_alpn_protocol() == "h2"
    with sock:
        conn = h2_client(sock)
        request = [
            (":method", "GET"),
            (":path", path),
            (":scheme", "https" if tls else "http"),
            (":authority", "echo.example"),
        ]
        headers, body, _ = h2_exchange(sock, conn, 1, request=request)
    return headers, body


# --- TLS material ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    crt, pem = directory / "tls.crt", directory / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(crt), str(pem)


def client_tls(cert: str, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cert)
    ctx.set_alpn_protocols(alpn)
    return ctx


# --- echo-basic --------------------------------------------------------------------------------------


@pytest.fixture
def echo_basic(procs: Procs, cert_files: tuple[str, str]) -> dict[str, int]:
    ports = {"http": free_port(), "h2c": free_port(), "https": free_port()}
    env = {
        "HTTP_PORT": str(ports["http"]),
        "H2C_PORT": str(ports["h2c"]),
        "HTTPS_PORT": str(ports["https"]),
        "TLS_SERVER_CERT": cert_files[0],
        "TLS_SERVER_PRIVKEY": cert_files[1],
        "POD_NAME": "infra-backend-v1-abc",
        "NAMESPACE": "gateway-conformance-infra",
    }
    proc = procs.start("echo", env=env)
    for port in ports.values():
        wait_port(port, proc)
    return ports


def test_echo_basic_http1(echo_basic: dict[str, int]) -> None:
    port = echo_basic["http"]
    status, headers, body = get(port, "/some/path?x=<1>", "X-Forwarded-For: 10.0.0.1", "x-custom: a", "X-Custom: b")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    assert b"\\u003c1\\u003e" in body  # Go's HTML-safe JSON escaping
    echoed = json.loads(body)
    assert echoed["path"] == "/some/path?x=<1>"
    assert echoed["host"] == f"{HOST}:{port}"
    assert echoed["method"] == "GET"
    assert echoed["proto"] == "HTTP/1.1"
    assert echoed["headers"]["X-Forwarded-For"] == ["10.0.0.1"]
    assert echoed["headers"]["X-Custom"] == ["a", "b"]
    assert "Host" not in echoed["headers"]
    assert echoed["httpPort"] == str(port)
    assert echoed["pod"] == "infra-backend-v1-abc"
    assert echoed["namespace"] == "gateway-conformance-infra"
    assert echoed["ingress"] == "" and echoed["service"] == ""
    assert "tls" not in echoed
    assert list(echoed) == [
        "path",
        "host",
        "method",
        "proto",
        "headers",
        "httpPort",
        "namespace",
        "ingress",
        "service",
        "pod",
    ]


def test_echo_basic_endpoints(echo_basic: dict[str, int]) -> None:
    port = echo_basic["http"]
    assert get(port, "/health")[::2] == (200, b"OK")
    assert get(port, "/status/418")[0] == 418
    assert get(port, "/status/abc")[0] == 400
    status, headers, _ = get(port, "/status")
    assert (status, headers["location"]) == (301, "/status/")
    status, headers, _ = get(port, "/", "X-Echo-Set-Header: X-Foo: one, X-Bar:two")
    assert (status, headers["x-foo"], headers["x-bar"]) == (200, "one", "two")
    status, _, body = get(port, "/?delay=soon")
    assert status == 500 and json.loads(body) == {"message": 'time: invalid duration "soon"'}
    assert get(port, "/?delay=10ms")[0] == 200
    # /retry: two failures by HTTP status, then the echo.
    codes = [get(port, "/retry/?uuid=u1&succeedAfter=2&responseCode=503")[0] for _ in range(3)]
    assert codes == [503, 503, 200]
    # ... and by connection reset when no responseCode is given.
    with pytest.raises(ConnectionResetError):
        get(port, "/retry/?uuid=u2&succeedAfter=1")
    assert get(port, "/retry/?uuid=u2&succeedAfter=1")[0] == 200


def test_echo_basic_h2c_prior_knowledge(echo_basic: dict[str, int]) -> None:
    headers, body = h2_get(echo_basic["h2c"], "/grpc-ish")
    assert headers[":status"] == "200"
    echoed = json.loads(body)
    assert (echoed["proto"], echoed["path"], echoed["host"]) == ("HTTP/2.0", "/grpc-ish", "echo.example")
    # The h2c port refuses plain HTTP/1.1, as echo-basic does.
    status, _, body = get(echo_basic["h2c"], "/")
    assert (status, body) == (400, b"Expected h2c request")


def test_echo_basic_h2c_upgrade(echo_basic: dict[str, int]) -> None:
    port = echo_basic["h2c"]
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    settings = conn.initiate_upgrade_connection()
    assert settings is not None
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(
            f"GET /upgraded HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            f"Upgrade: h2c\r\nHTTP2-Settings: {settings.decode()}\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"upgrade: h2c" in head.lower()
        headers, body, _ = h2_exchange(sock, conn, 1, initial=rest)
    assert headers[":status"] == "200"
    echoed = json.loads(body)
    assert echoed["path"] == "/upgraded"
    assert echoed["headers"]["Upgrade"] == ["h2c"]


def test_echo_basic_websocket(echo_basic: dict[str, int]) -> None:
    port = echo_basic["http"]
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(
            ws.send(
                wsproto.events.Request(
                    host=f"{HOST}:{port}", target="/ws", extra_headers=[(b"origin", b"http://localhost/")]
                )
            )
        )
        received: list[Any] = []

        def pump() -> None:
            ws.receive_data(sock.recv(65536))
            received.extend(ws.events())

        while not any(isinstance(e, wsproto.events.AcceptConnection) for e in received):
            pump()
        sock.sendall(ws.send(wsproto.events.TextMessage(data="hello, gateway")))
        sock.sendall(ws.send(wsproto.events.BytesMessage(data=b"\x00\x01")))
        while sum(isinstance(e, wsproto.events.Message) for e in received) < 2:
            pump()
        messages = [e.data for e in received if isinstance(e, wsproto.events.Message)]
        assert messages == ["hello, gateway", b"\x00\x01"]
        sock.sendall(ws.send(wsproto.events.CloseConnection(code=1000)))
        while not any(isinstance(e, wsproto.events.CloseConnection) for e in received):
            pump()
    # golang.org/x/net/websocket refuses a handshake without Origin.
    status, _, _ = get(
        port,
        "/ws",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    assert status == 403


def test_echo_basic_tls(echo_basic: dict[str, int], cert_files: tuple[str, str]) -> None:
    port = echo_basic["https"]
    raw = f"GET /tls HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode()
    status, _, body = http(port, raw, tls=client_tls(cert_files[0], ["http/1.1"]), sni="localhost")
    assert status == 200
    echoed = json.loads(body)
    tls = echoed["tls"]
    assert tls["version"] in ("TLSv1.3", "TLSv1.2")
    assert tls["serverName"] == "localhost"
    assert tls["negotiatedProtocol"] == "http/1.1"
    assert tls["cipherSuite"].startswith("TLS_")
    assert "peerCertificates" not in tls
    assert list(tls) == ["version", "serverName", "negotiatedProtocol", "cipherSuite"]
    # ALPN h2 gives HTTP/2 over TLS.
    headers, body = h2_get(port, "/over-h2", tls=client_tls(cert_files[0], ["h2", "http/1.1"]))
    echoed = json.loads(body)
    assert (headers[":status"], echoed["proto"], echoed["tls"]["negotiatedProtocol"]) == ("200", "HTTP/2.0", "h2")


def test_echo_ingress_and_tutorial_modes(procs: Procs) -> None:
    port = free_port()
    procs.serve(
        "echo",
        "--mode=ingress",
        port=port,
        env={"PORT": str(port), "INGRESS_NAME": "ing", "SERVICE_NAME": "svc", "NAMESPACE": "n"},
    )
    echoed = json.loads(get(port, "/p")[2])
    assert list(echoed) == ["path", "host", "method", "proto", "headers", "namespace", "ingress", "service", "pod"]
    assert (echoed["ingress"], echoed["service"], echoed["namespace"]) == ("ing", "svc", "n")
    assert get(port, "/health")[2] == b"OK"

    port = free_port()
    procs.serve("echo", "--mode", "tutorial", "--port", str(port), port=port)
    status, headers, body = get(port, "/hello?a=1", method="POST", body=b"payload")
    assert status == 200 and headers["server"] == "echoserver"
    dump = body.decode()
    assert f"Hostname: {HOSTNAME}" in dump
    assert "\t-no pod information available-" in dump
    assert "\tmethod=POST\n" in dump and "\tquery=a=1\n" in dump
    assert f"\trequest_uri=http://{HOST}:{port}/hello?a=1\n" in dump
    assert "Request Body:\npayload" in dump


def test_echo_grpc(procs: Procs) -> None:
    port = free_port()
    procs.serve("echo", port=port, env={"GRPC_ECHO_SERVER": "1", "HTTP_PORT": str(port), "POD_NAME": "grpc-pod"})
    service = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho"
    with socket.create_connection((HOST, port), timeout=5) as sock:
        conn = h2_client(sock)

        def call(stream_id: int, method: str) -> tuple[dict[str, str], bytes, dict[str, str]]:
            request = [
                (":method", "POST"),
                (":path", f"/{service}/{method}"),
                (":scheme", "http"),
                (":authority", "grpc.example"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
            return h2_exchange(sock, conn, stream_id, request=request, body=b"\x00\x00\x00\x00\x00")

        headers, body, trailers = call(1, "Echo")
        assert headers["content-type"] == "application/grpc" and trailers["grpc-status"] == "0"
        assert body[0] == 0 and int.from_bytes(body[1:5], "big") == len(body) - 5
        assert f"/{service}/Echo".encode() in body and b"grpc-pod" in body and b"grpc.example" in body
        _, _, trailers = call(3, "EchoThree")
        assert trailers["grpc-status"] == "12"


def test_echo_tcp_and_udp_modes(procs: Procs) -> None:
    port = free_port()
    procs.serve("echo", port=port, env={"TCP_ECHO_SERVER": "1", "TCP_PORT": str(port), "POD_NAME": "tcp-pod"})
    with socket.create_connection((HOST, port), timeout=5) as sock:
        reader = sock.makefile("rb")
        assert reader.readline() == b"Gateway API Test TCP Server\n"
        sock.sendall(b"PING\nIS_TLS\nTEST\n")
        assert reader.readline() == b"PONG\n"
        assert reader.readline() == b"false\n"
        payload = json.loads(reader.readline())
    assert payload == {
        "namespace": "",
        "ingress": "",
        "service": "",
        "pod": "tcp-pod",
        "tcpport": str(port),
        "tlsport": "8443",
        "isTLS": False,
    }

    port = free_port(udp_too=True)
    proc = procs.start("echo", env={"UDP_ECHO_SERVER": "1", "UDP_PORT": str(port), "POD_NAME": "udp-pod"})
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = json.loads(udp(port, b"hi there", timeout=0.2))
            break
        except (TimeoutError, ConnectionRefusedError):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
    assert answer == {"request": "hi there", "namespace": "", "ingress": "", "service": "", "pod": "udp-pod"}
    assert stop(proc) == 0


# --- agnhost -----------------------------------------------------------------------------------------


def test_agnhost_netexec(procs: Procs) -> None:
    http_port, udp_port = free_port(), free_port(udp_too=True)
    proc = procs.serve(
        "agnhost",
        "netexec",
        f"--http-port={http_port}",
        "--udp-port",
        str(udp_port),
        "--delay-shutdown=1",
        port=http_port,
    )
    assert get(http_port, "/hostname")[2] == HOSTNAME.encode()
    assert get(http_port, "/hostName")[2] == HOSTNAME.encode()
    assert get(http_port, "/echo?msg=hello")[::2] == (200, b"hello")
    assert get(http_port, "/echo?msg=teapot&code=418")[::2] == (418, b"teapot")
    assert get(http_port, "/clientip")[2].decode().startswith(f"{HOST}:")
    assert get(http_port, "/header?key=X-Test", "X-Test: yes")[2] == b"yes"
    assert get(http_port, "/healthz")[0] == 200
    assert get(http_port, "/readyz")[::2] == (200, b"ok")
    assert get(http_port, "/")[2].startswith(b"NOW: ")
    shell = json.loads(get(http_port, "/shell?cmd=echo%20hi%3B%20exit%203")[2])
    assert shell == {"output": "hi\n", "error": "exit status 3"}
    dial = json.loads(get(http_port, f"/dial?host={HOST}&port={http_port}&request=hostname&tries=2")[2])
    assert dial == {"responses": [HOSTNAME, HOSTNAME]}
    dial = json.loads(get(http_port, f"/dial?host={HOST}&port={udp_port}&request=echo%20Hi&protocol=udp")[2])
    assert dial == {"responses": ["hi"]}
    refused = free_port()
    dial = json.loads(get(http_port, f"/dial?host={HOST}&port={refused}&request=hostname")[2])
    assert "responses" not in dial and "connection refused" in dial["errors"][0]
    assert get(http_port, "/dial?host=x&port=1")[0] == 400
    # UDP commands (lower-cased, as upstream).
    assert udp(udp_port, b"hostname") == HOSTNAME.encode()
    assert udp(udp_port, b"echo Hello") == b"hello"
    assert udp(udp_port, b"clientip").decode().startswith(f"{HOST}:")
    # SIGTERM: readiness fails at once, the server keeps answering for --delay-shutdown, then exits 0.
    wait_handler(proc, signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while get(http_port, "/readyz")[0] != 503:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert get(http_port, "/healthz")[0] == 200
    assert proc.wait(timeout=5) == 0


def test_agnhost_netexec_exit_code(procs: Procs) -> None:
    port = free_port()
    proc = procs.serve("agnhost", "netexec", "--http-port", str(port), "--udp-port=-1", port=port)
    assert get(port, "/healthz")[0] == 412  # upstream: not healthy without a UDP server
    assert get(port, "/exit?code=3&timeout=1s")[0] == 200
    assert proc.wait(timeout=5) == 3
    port = free_port()
    proc = procs.serve("agnhost", "netexec", "--http-port", str(port), "--udp-port=-1", port=port)
    with pytest.raises((ConnectionError, IndexError)):
        get(port, "/exit?code=4")
    assert proc.wait(timeout=5) == 4


def test_agnhost_serve_hostname(procs: Procs) -> None:
    port = free_port(udp_too=True)
    proc = procs.serve("agnhost", "serve-hostname", "--tcp", "--udp", "--http=false", f"--port={port}", port=port)
    with socket.create_connection((HOST, port), timeout=5) as sock:
        assert sock.makefile("rb").read() == HOSTNAME.encode()
    assert udp(port, b"x") == HOSTNAME.encode()
    # Upstream keeps serving after SIGTERM ("Awaiting pod deletion").
    wait_handler(proc, signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    assert proc.poll() is None
    assert udp(port, b"x") == HOSTNAME.encode()

    port = free_port()
    procs.serve("agnhost", "serve-hostname", "--port", str(port), port=port)
    assert get(port, "/anything")[::2] == (200, HOSTNAME.encode())
    bad = procs.start("agnhost", "serve-hostname", "--tcp")
    assert bad.wait(timeout=5) == 1


def test_agnhost_porter(procs: Procs) -> None:
    tcp_port, udp_port = free_port(), free_port(udp_too=True)
    env = {f"SERVE_PORT_{tcp_port}": "foo", f"SERVE_UDP_PORT_{udp_port}": "bar"}
    proc = procs.serve("agnhost", "porter", port=tcp_port, env=env)
    assert get(tcp_port, "/any/path")[::2] == (200, b"foo")
    assert udp(udp_port, b"?") == b"bar"
    assert stop(proc) == 0
    port = free_port()
    procs.serve("agnhost", "porter", "--json-response", port=port, env={f"SERVE_TCP_PORT_{port}": "baz"})
    assert json.loads(get(port, "/", method="PUT")[2]) == {"Method": "PUT", "Body": "baz"}


def test_agnhost_connect(procs: Procs) -> None:
    port = free_port()
    procs.serve("agnhost", "netexec", f"--http-port={port}", "--udp-port=-1", port=port)
    ok = subprocess.run(
        [sys.executable, "-m", "kubewire.workloads.agnhost", "connect", f"{HOST}:{port}", "--timeout", "5s"],
        capture_output=True,
        timeout=10,
    )
    assert (ok.returncode, ok.stderr) == (0, b"")
    refused = subprocess.run(
        [sys.executable, "-m", "kubewire.workloads.agnhost", "connect", f"{HOST}:{free_port()}", "--timeout=5s"],
        capture_output=True,
        timeout=10,
    )
    assert (refused.returncode, refused.stderr) == (1, b"REFUSED\n")
    bad = subprocess.run(
        [sys.executable, "-m", "kubewire.workloads.agnhost", "connect", "no-port"], capture_output=True, timeout=10
    )
    assert bad.returncode == 1 and bad.stderr.startswith(b"UNKNOWN: ")
    usage = subprocess.run(
        [sys.executable, "-m", "kubewire.workloads.agnhost", "connect"], capture_output=True, timeout=10
    )
    assert usage.returncode == 1 and b"accepts 1 arg(s), received 0" in usage.stderr


def test_agnhost_pause_and_pause(procs: Procs) -> None:
    agnhost = procs.start("agnhost", "pause")
    pause = procs.start("pause")
    assert stop(agnhost) == 2  # agnhost pause exits 2 on SIGTERM, as upstream
    wait_handler(pause, signal.SIGINT)
    assert pause.poll() is None
    assert stop(pause) == 0


# --- http-echo and nginx -----------------------------------------------------------------------------


def test_http_echo(procs: Procs) -> None:
    port = free_port()
    proc = procs.serve("httpecho", "-text=hello world", f"-listen=:{port}", "-status-code", "201", port=port)
    status, headers, body = get(port, "/whatever")
    assert (status, body, headers["x-app-name"]) == (201, b"hello world\n", "http-echo")
    assert get(port, "/health")[::2] == (200, b'{"status":"ok"}\n')
    assert stop(proc) == 2  # upstream: "it was an interrupt, so don't exit cleanly"
    port = free_port()
    procs.serve("httpecho", f"--listen=127.0.0.1:{port}", port=port, env={"ECHO_TEXT": "from env"})
    assert get(port)[2] == b"from env\n"
    missing = procs.start("httpecho")
    assert missing.wait(timeout=5) == 127


def test_nginx(procs: Procs) -> None:
    port = free_port()
    proc = procs.serve("nginx", "--port", str(port), port=port)
    status, headers, body = get(port, "/")
    assert status == 200 and headers["server"].startswith("nginx/")
    assert b"<title>Welcome to nginx!</title>" in body and len(body) == int(headers["content-length"]) == 615
    assert get(port, "/index.html")[2] == body
    status, headers, body = get(port, "/missing")
    assert status == 404 and b"<center><h1>404 Not Found</h1></center>" in body
    assert get(port, "/", method="POST")[0] == 405
    status, headers, body = get(port, "/", method="HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", "615")
    assert stop(proc) == 0
    port = free_port()
    procs.serve("nginx", port=port, env={"NGINX_PORT": str(port)})
    assert get(port)[0] == 200


def test_base64_settings_unpadded_upgrade_is_accepted(echo_basic: dict[str, int]) -> None:
    """curl sends HTTP2-Settings without base64 padding; the upgrade must still work."""
    port = echo_basic["h2c"]
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    settings = conn.initiate_upgrade_connection()
    assert settings is not None
    unpadded = base64.urlsafe_b64encode(base64.urlsafe_b64decode(settings)).rstrip(b"=").decode()
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(
            f"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            f"HTTP2-Settings: {unpadded}\r\n\r\n".encode()
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 101 ")

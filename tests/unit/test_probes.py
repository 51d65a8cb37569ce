"""Container probes: the worker state machine as tables and properties, the runners against real loopback servers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from kubewire.agents.kubelet import probes
from kubewire.agents.kubelet.probes import ProbeOutcome, ProbeTracker

# ----------------------------------------------------------------------------------------------
# The state machine
# ----------------------------------------------------------------------------------------------


def test_defaults_are_upstreams() -> None:
    spec = probes.ProbeSpec.parse({"httpGet": {"port": 80}})
    assert (spec.period, spec.timeout, spec.success_threshold, spec.failure_threshold, spec.initial_delay) == (
        10,
        1,
        1,
        3,
        0,
    )
    assert spec.termination_grace_period is None
    spec = probes.ProbeSpec.parse({"periodSeconds": 0, "timeoutSeconds": 5, "terminationGracePeriodSeconds": 7})
    assert (spec.period, spec.timeout, spec.termination_grace_period) == (10, 5, 7)


@pytest.mark.parametrize(
    ("kind", "initial"), [("readiness", "failure"), ("liveness", "success"), ("startup", "unknown")]
)
def test_initial_results(kind: probes.ProbeKind, initial: str) -> None:
    assert ProbeTracker(kind, {}).result == initial


@pytest.mark.parametrize(
    ("kind", "thresholds", "outcomes", "results"),
    [
        # readiness: success needs 2 in a row, failure 3 in a row; a break restarts the run
        ("readiness", (2, 3), "s s f f s f f f", "failure success success success success success success failure"),
        ("readiness", (1, 1), "s f s", "success failure success"),
        # a warning (unfollowed redirect) counts as a success
        ("readiness", (2, 1), "w s", "failure success"),
        # an errored run (e) is thrown away: it neither counts nor breaks a run
        ("readiness", (3, 3), "s e s e s", "failure failure failure failure success"),
        ("liveness", (1, 3), "f f s f f f", "success success success success success failure"),
        ("startup", (1, 2), "f s", "unknown success"),
        ("startup", (1, 2), "f f", "unknown failure"),
    ],
)
def test_thresholds(kind: probes.ProbeKind, thresholds: tuple[int, int], outcomes: str, results: str) -> None:
    success, failure = thresholds
    tracker = ProbeTracker(kind, {"successThreshold": success, "failureThreshold": failure})
    seen = [tracker.record(_outcome(code)) for code in outcomes.split()]
    assert seen == results.split()


def _outcome(code: str) -> ProbeOutcome:
    return {
        "s": ProbeOutcome("success"),
        "w": ProbeOutcome("warning", "Probe terminated redirects, Response body: "),
        "f": ProbeOutcome("failure", "HTTP probe failed with statuscode: 500"),
        "e": ProbeOutcome("unknown", "", 'port "http" not found'),
    }[code]


@pytest.mark.parametrize("kind", ["liveness", "startup"])
def test_liveness_and_startup_failure_holds_until_reset(kind: probes.ProbeKind) -> None:
    tracker = ProbeTracker(kind, {"failureThreshold": 2, "periodSeconds": 1}, anchor=0)
    started = kind == "liveness"
    assert tracker.due(0, 0, started=started)
    assert tracker.record("failure", 0) == probes.INITIAL_RESULT[kind]
    assert tracker.due(1, 0, started=started)
    assert tracker.record("failure", 1) == "failure"
    assert tracker.on_hold and tracker.changed_at == 1
    assert not tracker.due(2, 0, started=started)  # the kubelet restarts the container meanwhile
    tracker.reset()
    assert tracker.result == probes.INITIAL_RESULT[kind] and not tracker.on_hold
    assert tracker.due(3, 2.5, started=started)
    # The run was reset at the flip: one more failure does not flip again.
    assert tracker.record("failure") == probes.INITIAL_RESULT[kind]


def test_readiness_failure_does_not_hold() -> None:
    tracker = ProbeTracker("readiness", {"failureThreshold": 1, "periodSeconds": 1}, anchor=0)
    tracker.record("success")
    assert tracker.record("failure") == "failure"
    assert not tracker.on_hold
    assert tracker.due(1, 0)


@pytest.mark.parametrize(("kind", "started"), list(probes.RUNS_WHEN))
def test_started_gating(kind: probes.ProbeKind, started: bool) -> None:
    # Startup runs only before the container has started; readiness and liveness only after.
    tracker = ProbeTracker(kind, {}, anchor=0)
    assert tracker.due(0, 0, started=started) is probes.RUNS_WHEN[(kind, started)]
    assert probes.RUNS_WHEN[(kind, started)] is (started is (kind != "startup"))


def test_ticks_and_initial_delay() -> None:
    # Upstream probes on the ticks of a periodSeconds ticker that starts with the worker, so a
    # 15 s initial delay with a 10 s period means the first probe at the 20 s tick.
    tracker = ProbeTracker("readiness", {"initialDelaySeconds": 15}, anchor=100)
    ran = _simulate(tracker, running_since=100, until=150)
    assert ran == [120, 130, 140, 150]


def test_initial_delay_truncates_like_go() -> None:
    tracker = ProbeTracker("liveness", {"initialDelaySeconds": 3, "periodSeconds": 1}, anchor=0)
    assert not tracker.due(2.99, 0)  # int(2.99) < 3
    assert tracker.due(3.0, 0)


def test_next_due_skips_ticks_inside_initial_delay() -> None:
    tracker = ProbeTracker("liveness", {"initialDelaySeconds": 25}, anchor=0)
    assert tracker.due(0, 0) is False
    assert tracker.next_due(0.5) == 10
    assert tracker.next_due(0.5, running_since=0) == 30


def test_first_due_anchors_the_ticker() -> None:
    tracker = ProbeTracker("liveness", {"periodSeconds": 5})
    assert tracker.next_due(42.0) == 42.0
    assert tracker.due(42.0, 40.0)
    assert tracker.next_due(42.1) == 47.0
    assert not tracker.due(46.9, 40.0)
    assert tracker.due(47.0, 40.0)


def test_slow_probe_catches_up_once_then_realigns() -> None:
    # Go's ticker keeps one missed tick: a probe that took 2.5 periods is followed by one immediate
    # probe and then by the next aligned tick.
    tracker = ProbeTracker("liveness", {"periodSeconds": 10}, anchor=0)
    assert tracker.due(0, 0)
    assert tracker.next_due(25) == 25
    assert tracker.due(25, 0)
    assert tracker.next_due(25.1) == 30


def test_manual_trigger() -> None:
    tracker = ProbeTracker("readiness", {"periodSeconds": 10}, anchor=0)
    assert tracker.due(0, 0)
    assert not tracker.due(3, 0)
    tracker.trigger()
    assert tracker.next_due(3) == 3
    assert tracker.due(3, 0)
    assert not tracker.due(4, 0)  # a trigger is consumed once
    assert tracker.due(10, 0)


def test_not_running_publishes_failure() -> None:
    tracker = ProbeTracker("readiness", {"successThreshold": 1, "periodSeconds": 1}, anchor=0)
    tracker.record("success")
    assert not tracker.due(1, None)
    assert tracker.result == "failure"


@pytest.mark.parametrize(("kind", "stops"), [("liveness", True), ("startup", True), ("readiness", False)])
def test_pod_deletion_quiets_liveness_and_startup(kind: probes.ProbeKind, stops: bool) -> None:
    tracker = ProbeTracker(kind, {"periodSeconds": 1}, anchor=0)
    started = kind != "startup"
    assert tracker.due(0, 0, started=started, deleting=True) is not stops
    if stops:
        assert tracker.result == "success"
        assert tracker.next_due(1) == float("inf")
        assert not tracker.due(5, 0, started=started)


@pytest.mark.parametrize(
    ("kind", "probe_grace", "pod", "expected"),
    [
        ("liveness", 5, {"spec": {"terminationGracePeriodSeconds": 30}}, 5),
        ("startup", 7, {"spec": {"terminationGracePeriodSeconds": 30}}, 7),
        ("liveness", None, {"spec": {"terminationGracePeriodSeconds": 30}}, 30),
        ("readiness", 5, {"spec": {"terminationGracePeriodSeconds": 30}}, 30),
        ("liveness", 5, {"metadata": {"deletionGracePeriodSeconds": 12}, "spec": {}}, 12),
        ("liveness", 0, {"spec": {"terminationGracePeriodSeconds": 30}}, 2),
        ("liveness", 5, {"spec": {}}, 2),
    ],
)
def test_kill_grace_period(kind: probes.ProbeKind, probe_grace: int | None, pod: dict[str, Any], expected: int) -> None:
    probe = {} if probe_grace is None else {"terminationGracePeriodSeconds": probe_grace}
    assert ProbeTracker(kind, probe).kill_grace_period(pod) == expected


def test_started_and_ready() -> None:
    startup = ProbeTracker("startup", {})
    readiness = ProbeTracker("readiness", {})
    assert probes.container_started(None, running=True)
    assert not probes.container_started(None, running=False)
    assert not probes.container_started(startup, running=True)
    startup.record("success")
    assert probes.container_started(startup, running=True)
    assert probes.container_ready(None, running=True, started=True)
    assert not probes.container_ready(None, running=True, started=False)
    assert not probes.container_ready(readiness, running=True, started=True)
    readiness.record("success")
    assert probes.container_ready(readiness, running=True, started=True)


def test_event_wording() -> None:
    assert probes.probe_event("liveness", ProbeOutcome("success", "ok")) is None
    assert probes.probe_event("readiness", ProbeOutcome("failure", "HTTP probe failed with statuscode: 500")) == (
        "Unhealthy",
        "Readiness probe failed: HTTP probe failed with statuscode: 500",
    )
    assert probes.probe_event("liveness", ProbeOutcome("warning", "Probe terminated redirects, Response body: x")) == (
        "ProbeWarning",
        "Liveness probe warning: Probe terminated redirects, Response body: x",
    )
    assert probes.probe_event("startup", ProbeOutcome("unknown", "", 'port "http" not found')) == (
        "Unhealthy",
        'Startup probe errored and resulted in unknown state: port "http" not found',
    )
    assert probes.restart_message("liveness", "web") == "Container web failed liveness probe, will be restarted"


def _simulate(tracker: ProbeTracker, *, running_since: float, until: float) -> list[float]:
    """Drive the tracker as the kubelet would; return the times at which probes ran."""
    ran: list[float] = []
    now = 0.0 if tracker.anchor is None else tracker.anchor
    while now <= until:
        running = running_since if now >= running_since else None
        if tracker.due(now, running):
            ran.append(now)
            tracker.record("success", now)
        now = tracker.next_due(now + 1e-9, running)
    return ran


_CODES = st.sampled_from("swfe")


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["readiness", "liveness", "startup"]),
    success=st.integers(1, 4),
    failure=st.integers(1, 4),
    codes=st.lists(_CODES, max_size=30),
)
def test_result_flips_only_after_a_full_run(
    kind: probes.ProbeKind, success: int, failure: int, codes: list[str]
) -> None:
    tracker = ProbeTracker(kind, {"successThreshold": success, "failureThreshold": failure})
    counted: list[str] = []  # what upstream's worker counted, errors dropped
    previous = tracker.result
    for code in codes:
        if tracker.on_hold:
            tracker.reset()
            previous = tracker.result
        result = tracker.record(_outcome(code))
        if code != "e":
            counted.append("failure" if code == "f" else "success")
        if result != previous:
            threshold = failure if result == "failure" else success
            assert counted[-threshold:] == [result] * threshold
        if code == "e":
            assert result == previous
        assert tracker.on_hold is (kind != "readiness" and result == "failure")
        previous = result


@settings(max_examples=100, deadline=None)
@given(
    period=st.integers(1, 30),
    delay=st.integers(0, 100),
    anchor=st.floats(0, 1000, allow_nan=False),
    lag=st.floats(0, 50, allow_nan=False),
)
def test_probes_run_on_ticks_and_never_inside_the_initial_delay(
    period: int, delay: int, anchor: float, lag: float
) -> None:
    tracker = ProbeTracker("liveness", {"periodSeconds": period, "initialDelaySeconds": delay}, anchor=anchor)
    running_since = anchor + lag
    ran = _simulate(tracker, running_since=running_since, until=anchor + lag + delay + 5 * period)
    assert ran, "probes ran"
    for t in ran:
        assert int(t - running_since + 1e-6) >= delay
        ticks = (t - anchor) / period
        assert abs(ticks - round(ticks)) < 1e-6
    gaps = [b - a for a, b in itertools.pairwise(ran)]
    assert all(abs(g - period) < 1e-6 for g in gaps)
    # The first probe is on the first tick at which the delay is over.
    first = ran[0]
    before = anchor + (round((first - anchor) / period) - 1) * period
    assert before < running_since or int(before - running_since + 1e-6) < delay


# ----------------------------------------------------------------------------------------------
# Ports, commands, wording helpers
# ----------------------------------------------------------------------------------------------

CONTAINER: dict[str, Any] = {
    "name": "web",
    "ports": [{"name": "http", "containerPort": 8080}, {"name": "zero", "containerPort": 0}],
    "env": [{"name": "WHO", "value": "world"}, {"name": "SECRET", "valueFrom": {"secretKeyRef": {}}}],
}


def test_resolve_port() -> None:
    assert probes.resolve_port(8081, CONTAINER) == 8081
    assert probes.resolve_port("http", CONTAINER) == 8080
    with pytest.raises(probes.ProbeError, match=r'^port "metrics" not found$'):
        probes.resolve_port("metrics", CONTAINER)
    with pytest.raises(probes.ProbeError, match=r'^port "8080" not found$'):  # no numeric fallback upstream
        probes.resolve_port("8080", CONTAINER)
    with pytest.raises(probes.ProbeError, match=r"^invalid port number: 0$"):
        probes.resolve_port("zero", CONTAINER)
    with pytest.raises(probes.ProbeError, match=r"^invalid port number: 70000$"):
        probes.resolve_port(70000, CONTAINER)


@pytest.mark.parametrize(
    ("arg", "expanded"),
    [
        ("echo $(WHO)", "echo world"),
        ("$(SECRET)x", "x"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(WHO)", "$(WHO)"),
        ("a$b $", "a$b $"),
        ("$(WHO", "$(WHO"),
    ],
)
def test_expand_command(arg: str, expanded: str) -> None:
    assert probes.expand_command([arg], CONTAINER["env"]) == [expanded]


def test_go_wording_helpers() -> None:
    assert probes.go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'
    assert [probes.go_duration(s) for s in (1, 0.5, 90, 3600, 1.25, 0)] == [
        "1s",
        "500ms",
        "1m30s",
        "1h0m0s",
        "1.25s",
        "0s",
    ]
    assert probes.join_host_port("fd00::1", 80) == "[fd00::1]:80"
    assert probes.format_url("HTTP", "10.244.1.5", 8080, "healthz?x=1") == "http://10.244.1.5:8080/healthz?x=1"
    assert probes.format_url("https", "::1", 443, "") == "https://[::1]:443"
    assert probes.canonical_header("x-custom-header") == "X-Custom-Header"
    assert probes.grpc_timeout(1) == "1000000u"
    assert probes.grpc_timeout(0.0000005) == "500n"


def test_probe_headers() -> None:
    headers, host = probes.probe_headers([])
    assert headers == {"User-Agent": ["kube-probe/1.32"], "Accept": ["*/*"]} and host == ""
    headers, host = probes.probe_headers(
        [{"name": "accept", "value": ""}, {"name": "user-agent", "value": "me"}, {"name": "host", "value": "x.test"}]
    )
    assert "Accept" not in headers and headers["User-Agent"] == ["me"] and host == "x.test"


def test_health_protobuf() -> None:
    assert probes.encode_health_request("") == b""
    assert probes.encode_health_request("svc") == b"\x0a\x03svc"
    assert probes.decode_health_response(b"") == 0
    assert probes.decode_health_response(b"\x08\x01") == 1
    # unknown fields of every wire type are skipped
    assert probes.decode_health_response(b"\x12\x02hi\x19" + bytes(8) + b"\x25" + bytes(4) + b"\x08\x02") == 2
    with pytest.raises(ValueError):
        probes.decode_health_response(b"\x08")


# ----------------------------------------------------------------------------------------------
# httpGet against real servers
# ----------------------------------------------------------------------------------------------


class HttpServer:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.seen: list[dict[str, Any]] = []
        self.port = 0
        self.host = ""


def _app(server: HttpServer) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        server.hits[path] = server.hits.get(path, 0) + 1
        server.seen.append({"path": path, "headers": list(request.raw_headers)})
        if path == "/ok":
            return web.Response(text="all good")
        if path == "/fail":
            return web.Response(status=500, text="secret details")
        if path == "/redirect":
            return web.Response(status=302, headers={"Location": "/ok"})
        if path == "/loop":
            return web.Response(status=302, headers={"Location": "/loop"})
        if path == "/away":
            return web.Response(status=302, headers={"Location": f"http://localhost:{server.port}/ok"}, text="moved")
        if path == "/notmodified":
            return web.Response(status=304)
        if path == "/big":
            return web.Response(body=b"a" * (probes.MAX_BODY + 100))
        if path == "/slow":
            await asyncio.sleep(3)
            return web.Response(text="late")
        if path == "/slowbody":
            response = web.StreamResponse(headers={"Content-Length": "100"})
            await response.prepare(request)
            await response.write(b"partial")
            await asyncio.sleep(3)
            return response
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    return app


@contextlib.asynccontextmanager
async def _serve(host: str, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[HttpServer]:
    server = HttpServer()
    runner = web.AppRunner(_app(server), handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
    await site.start()
    server.host = host
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    async with _serve("127.0.0.1") as s:
        yield s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_http_success_and_request_headers(server: HttpServer) -> None:
    out = await probes.http_probe("HTTP", "127.0.0.1", server.port, "/ok", [{"name": "x-trace", "value": "1"}], 2)
    assert out == ProbeOutcome("success", "all good")
    headers = [(k.decode(), v.decode()) for k, v in server.seen[-1]["headers"]]
    assert headers == [
        ("Host", f"127.0.0.1:{server.port}"),
        ("User-Agent", "kube-probe/1.32"),
        ("Accept", "*/*"),
        ("X-Trace", "1"),
        ("Connection", "close"),
    ]


async def test_http_failure_status_hides_the_body(server: HttpServer) -> None:
    out = await probes.http_probe("HTTP", "127.0.0.1", server.port, "/fail", [], 2)
    assert out == ProbeOutcome("failure", "HTTP probe failed with statuscode: 500")


async def test_http_same_host_redirect_is_followed_with_host_and_referer(server: HttpServer) -> None:
    out = await probes.http_probe(
        "HTTP", "127.0.0.1", server.port, "/redirect", [{"name": "Host", "value": "h.test"}], 2
    )
    assert out == ProbeOutcome("success", "all good")
    final = dict((k.decode(), v.decode()) for k, v in server.seen[-1]["headers"])
    assert final["Host"] == "h.test"  # a custom Host survives a relative redirect
    assert final["Referer"] == f"http://127.0.0.1:{server.port}/redirect"


async def test_http_redirect_to_another_host_is_a_warning(server: HttpServer) -> None:
    out = await probes.http_probe("HTTP", "127.0.0.1", server.port, "/away", [], 2)
    assert out == ProbeOutcome("warning", "Probe terminated redirects, Response body: moved")
    assert "/ok" not in server.hits
    out = await probes.http_probe("HTTP", "127.0.0.1", server.port, "/notmodified", [], 2)
    assert out == ProbeOutcome("warning", "Probe terminated redirects, Response body: ")


async def test_http_stops_after_ten_redirects(server: HttpServer) -> None:
    out = await probes.http_probe("HTTP", "127.0.0.1", server.port, "/loop", [], 2)
    assert out == ProbeOutcome("failure", 'Get "/loop": stopped after 10 redirects')
    assert server.hits["/loop"] == 10


async def test_http_body_is_truncated(server: HttpServer) -> None:
    out = await probes.http_probe("HTTP", "127.0.0.1", server.port, "/big", [], 2)
    assert out.result == "success" and out.output == "a" * probes.MAX_BODY


async def test_http_refused() -> None:
    port = _free_port()
    out = await probes.http_probe("HTTP", "127.0.0.1", port, "/healthz", [], 1)
    assert out == ProbeOutcome(
        "failure", f'Get "http://127.0.0.1:{port}/healthz": dial tcp 127.0.0.1:{port}: connect: connection refused'
    )


async def test_http_timeouts(server: HttpServer) -> None:
    slow, slowbody = await asyncio.gather(
        probes.http_probe("HTTP", "127.0.0.1", server.port, "/slow", [], 0.3),
        probes.http_probe("HTTP", "127.0.0.1", server.port, "/slowbody", [], 0.3),
    )
    assert slow == ProbeOutcome(
        "failure",
        f'Get "http://127.0.0.1:{server.port}/slow": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)",
    )
    # Upstream returns a body-read error as the probe's error: the run is thrown away.
    assert slowbody == ProbeOutcome(
        "failure", "", "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
    )


async def test_http_ipv6() -> None:
    async with _serve("::1") as s:
        out = await probes.http_probe("HTTP", "::1", s.port, "/ok", [], 2)
        assert out == ProbeOutcome("success", "all good")
        host = dict((k.decode(), v.decode()) for k, v in s.seen[-1]["headers"])["Host"]
        assert host == f"[::1]:{s.port}"
    port = _free_port()
    out = await probes.http_probe("HTTP", "::1", port, "/", [], 1)
    assert out.output == f'Get "http://[::1]:{port}/": dial tcp [::1]:{port}: connect: connection refused'


async def test_https_without_verification(tmp_path: Path) -> None:
    from kubewire.apiserver.pki import make_serving_pair

    pair = make_serving_pair("probes")
    (tmp_path / "cert.pem").write_bytes(pair.cert)
    (tmp_path / "key.pem").write_bytes(pair.key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    async with _serve("127.0.0.1", ctx) as s:
        out = await probes.http_probe("HTTPS", "127.0.0.1", s.port, "/ok", [], 2)
        assert out == ProbeOutcome("success", "all good")
    async with _serve("127.0.0.1") as plain:
        out = await probes.http_probe("HTTPS", "127.0.0.1", plain.port, "/ok", [], 2)
        assert out == ProbeOutcome(
            "failure", f'Get "https://127.0.0.1:{plain.port}/ok": http: server gave HTTP response to HTTPS client'
        )


async def test_http_server_closing_without_answer() -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.close()

    srv = await asyncio.start_server(close, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        out = await probes.http_probe("HTTP", "127.0.0.1", port, "/", [], 2)
        assert out == ProbeOutcome("failure", f'Get "http://127.0.0.1:{port}/": EOF')
    finally:
        srv.close()
        await srv.wait_closed()


# ----------------------------------------------------------------------------------------------
# tcpSocket
# ----------------------------------------------------------------------------------------------


async def test_tcp(server: HttpServer) -> None:
    assert await probes.tcp_probe("127.0.0.1", server.port, 1) == ProbeOutcome("success", "")
    port = _free_port()
    assert await probes.tcp_probe("127.0.0.1", port, 1) == ProbeOutcome(
        "failure", f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    )


async def test_tcp_dial_timeout() -> None:
    # A listener whose accept queue is full drops further SYNs: the dial hangs until the timeout.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        await asyncio.sleep(0.05)
        out = await probes.tcp_probe("127.0.0.1", port, 0.3)
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert out == ProbeOutcome("failure", f"dial tcp 127.0.0.1:{port}: i/o timeout")


# ----------------------------------------------------------------------------------------------
# exec
# ----------------------------------------------------------------------------------------------


async def _subprocess(argv: Sequence[str], timeout: float) -> tuple[int | None, bytes]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, b""
    return proc.returncode, out


async def test_exec_real_processes() -> None:
    assert await probes.exec_probe(_subprocess, ["sh", "-c", "exit 1"], 2) == ProbeOutcome("failure", "")
    assert await probes.exec_probe(_subprocess, ["sh", "-c", "echo ok"], 2) == ProbeOutcome("success", "ok\n")
    out = await probes.exec_probe(_subprocess, ["sh", "-c", "echo bad >&2; exit 3"], 2)
    assert out == ProbeOutcome("failure", "bad\n")
    out = await probes.exec_probe(_subprocess, ["sleep", "5"], 0.2)
    assert out == ProbeOutcome("failure", 'command "sleep 5" timed out')


async def test_exec_output_is_truncated_and_errors_are_unknown() -> None:
    async def chatty(argv: Sequence[str], timeout: float) -> tuple[int | None, bytes]:
        return 1, b"x" * (probes.MAX_EXEC_OUTPUT + 5)

    async def broken(argv: Sequence[str], timeout: float) -> tuple[int | None, bytes]:
        raise OSError("no such container")

    assert await probes.exec_probe(chatty, ["x"], 1) == ProbeOutcome("failure", "x" * probes.MAX_EXEC_OUTPUT)
    assert await probes.exec_probe(broken, ["x"], 1) == ProbeOutcome("unknown", "", "no such container")


# ----------------------------------------------------------------------------------------------
# grpc, against a small h2 health server
# ----------------------------------------------------------------------------------------------


class GrpcHealthServer:
    """grpc.health.v1.Health/Check over h2c: statuses by service; 'slow' stalls, others are unknown."""

    def __init__(self, statuses: dict[str, int], *, implemented: bool = True) -> None:
        self.statuses = statuses
        self.implemented = implemented
        self.requests: list[dict[str, str]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> GrpcHealthServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        bodies: dict[int, bytes] = {}
        headers: dict[int, dict[str, str]] = {}
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers[event.stream_id] = {str(k): str(v) for k, v in event.headers or []}
                        self.requests.append(headers[event.stream_id])
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] = bodies.get(event.stream_id, b"") + (event.data or b"")
                        conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        await self._respond(
                            conn, event.stream_id, headers[event.stream_id], bodies.get(event.stream_id, b"")
                        )
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _respond(
        self, conn: h2.connection.H2Connection, stream: int, headers: dict[str, str], body: bytes
    ) -> None:
        base = [(":status", "200"), ("content-type", "application/grpc")]
        if not self.implemented or headers[":path"] != probes.HEALTH_CHECK_PATH:
            trailers = [("grpc-status", "12"), ("grpc-message", "unknown service grpc.health.v1.Health")]
            conn.send_headers(stream, base + trailers, end_stream=True)
            return
        (length,) = struct.unpack(">I", body[1:5])
        request = body[5 : 5 + length]
        service = request[2:].decode() if request else ""
        if service == "slow":
            await asyncio.sleep(3)
        if service not in self.statuses:
            conn.send_headers(
                stream, [*base, ("grpc-status", "5"), ("grpc-message", "unknown%20service")], end_stream=True
            )
            return
        conn.send_headers(stream, base)
        conn.send_data(stream, probes.grpc_frame(b"\x08" + bytes([self.statuses[service]])))
        conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)


async def test_grpc_health() -> None:
    async with GrpcHealthServer({"": 1, "db": 2, "odd": 7}) as srv:
        assert await probes.grpc_probe("127.0.0.1", srv.port, "", 2) == ProbeOutcome("success", "service healthy")
        assert await probes.grpc_probe("127.0.0.1", srv.port, "db", 2) == ProbeOutcome(
            "failure", 'service unhealthy (responded with "NOT_SERVING")'
        )
        assert await probes.grpc_probe("127.0.0.1", srv.port, "odd", 2) == ProbeOutcome(
            "failure", 'service unhealthy (responded with "7")'
        )
        assert await probes.grpc_probe("127.0.0.1", srv.port, "nope", 2) == ProbeOutcome(
            "failure", "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
        )
        request = srv.requests[0]
        assert request[":path"] == "/grpc.health.v1.Health/Check"
        assert request["user-agent"].startswith("kube-probe/1.32 ")
        assert request["te"] == "trailers" and request["grpc-timeout"].endswith("u")


async def test_grpc_unimplemented_and_timeouts() -> None:
    async with GrpcHealthServer({}, implemented=False) as srv:
        out = await probes.grpc_probe("127.0.0.1", srv.port, "", 2)
        assert out == ProbeOutcome(
            "failure",
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): "
            "unknown service grpc.health.v1.Health",
        )
    async with GrpcHealthServer({"slow": 1}) as srv:
        out = await probes.grpc_probe("127.0.0.1", srv.port, "slow", 0.3)
        assert out == ProbeOutcome("failure", "timeout: health rpc did not complete within 300ms")
    port = _free_port()
    out = await probes.grpc_probe("127.0.0.1", port, "", 0.3)
    assert out == ProbeOutcome(
        "failure", f'timeout: failed to connect service "127.0.0.1:{port}" within 300ms: context deadline exceeded'
    )


async def test_grpc_against_http1_server_never_connects(server: HttpServer) -> None:
    out = await probes.grpc_probe("127.0.0.1", server.port, "", 0.3)
    assert out.output.startswith("timeout: failed to connect service")


# ----------------------------------------------------------------------------------------------
# run_probe: dispatch, defaults, retries
# ----------------------------------------------------------------------------------------------


async def test_run_probe_dispatch(server: HttpServer) -> None:
    container = {**CONTAINER, "ports": [{"name": "http", "containerPort": server.port}]}
    calls: list[list[str]] = []

    async def run(argv: Sequence[str], timeout: float) -> tuple[int | None, bytes]:
        calls.append(list(argv))
        assert timeout == 4
        return 0, b"fine"

    named: dict[str, Any] = {"httpGet": {"port": "http", "path": "/ok"}}
    assert await probes.run_probe(named, "127.0.0.1", container, run) == ProbeOutcome("success", "all good")
    other_host: dict[str, Any] = {"httpGet": {"port": server.port, "path": "/ok", "host": "127.0.0.1"}}
    assert (await probes.run_probe(other_host, "192.0.2.1", container, run)).result == "success"
    tcp_probe = {"tcpSocket": {"port": server.port}}
    assert await probes.run_probe(tcp_probe, "127.0.0.1", container, run) == ProbeOutcome("success")
    exec_probe = {"exec": {"command": ["sh", "-c", "echo $(WHO)"]}, "timeoutSeconds": 4}
    assert await probes.run_probe(exec_probe, "127.0.0.1", container, run) == ProbeOutcome("success", "fine")
    assert calls == [["sh", "-c", "echo world"]]
    async with GrpcHealthServer({"": 1}) as srv:
        grpc_probe = {"grpc": {"port": srv.port}}
        assert await probes.run_probe(grpc_probe, "127.0.0.1", container, run) == ProbeOutcome(
            "success", "service healthy"
        )


async def test_run_probe_retries_errors_three_times() -> None:
    attempts = 0

    async def broken(argv: Sequence[str], timeout: float) -> tuple[int | None, bytes]:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("runtime is down")

    out = await probes.run_probe({"exec": {"command": ["true"]}}, "127.0.0.1", CONTAINER, broken)
    assert out == ProbeOutcome("unknown", "", "runtime is down") and attempts == 3
    out = await probes.run_probe({"httpGet": {"port": "metrics"}}, "127.0.0.1", CONTAINER, broken)
    assert out == ProbeOutcome("unknown", "", 'port "metrics" not found')
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}}
    out = await probes.run_probe({"periodSeconds": 3}, "127.0.0.1", CONTAINER, broken, pod=pod)
    assert out == ProbeOutcome("unknown", "", "missing probe handler for p_ns(u1):web")
    # an errored run leaves the tracker untouched
    tracker = ProbeTracker("readiness", {})
    assert tracker.record(out) == "failure"

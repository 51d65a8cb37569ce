"""``kubectl logs`` end to end in one process: the kubelet's ``/containerLogs`` server over real files,
and the API server's ``pods/log`` proxying to it (options, container checks, streaming, errors)."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubewire.agents.kubelet import logserver
from kubewire.agents.kubelet.logserver import LogError, LogTarget, tail_offset
from kubewire.apiserver import server as apiserver
from kubewire.apiserver.server import APIServer
from kubewire.store.store import Store
from tests.conftest import kind

POD = kind("pods")
WAIT = 10.0


@dataclass
class Run:
    path: Path
    alive: bool = False

    def running(self) -> bool:
        return self.alive


@dataclass
class FakeLocator:
    """Runs by (namespace, pod, container, previous); records what it was asked."""

    runs: dict[tuple[str, str, str, bool], Run] = field(default_factory=dict)
    asked: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def locate(self, namespace: str, pod: str, container: str, previous: bool) -> LogTarget:
        self.asked.append((namespace, pod, container, previous))
        if (namespace, pod) != ("default", "p"):
            raise LogError.pod_not_found(pod)
        run = self.runs.get((namespace, pod, container, previous))
        if run is None:
            if previous:
                raise LogError.no_previous(container, pod)
            raise LogError.container_not_found(container, pod)
        return LogTarget(run.path, run.running)


@dataclass
class Kubelet:
    locator: FakeLocator
    socket: Path
    dir: Path

    def run(self, container: str, content: bytes, previous: bool = False, alive: bool = False) -> Run:
        path = self.dir / container / ("0.log" if previous else "1.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        run = Run(path, alive)
        self.locator.runs["default", "p", container, previous] = run
        return run


@pytest.fixture
async def kubelet(tmp_path: Path) -> AsyncIterator[Kubelet]:
    locator = FakeLocator()
    sock = tmp_path / "kubelet.sock"
    runner = await logserver.serve(locator, sock)
    try:
        yield Kubelet(locator, sock, tmp_path)
    finally:
        await runner.cleanup()


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logserver, "POLL_INTERVAL", 0.01)
    monkeypatch.setattr(apiserver, "LOG_DISCONNECT_CHECK", 0.02)


def unix_session(sock: Path) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock)))


async def get(sock: Path, path: str, **query: str) -> tuple[int, bytes, str]:
    async with unix_session(sock) as session, session.get(f"http://kubelet{path}", params=query) as resp:
        return resp.status, await resp.read(), resp.content_type


async def read_until(stream: aiohttp.StreamReader, expected: bytes, got: bytearray) -> None:
    """Read into ``got`` until it ends with ``expected`` content (bounded)."""

    async def loop() -> None:
        while not got.endswith(expected):
            chunk = await stream.readany()
            assert chunk, f"stream ended early with {bytes(got)!r}"
            got.extend(chunk)

    await asyncio.wait_for(loop(), WAIT)


async def wait_for(cond: Callable[[], bool]) -> None:
    async def loop() -> None:
        while not cond():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), WAIT)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


LOGS = "/containerLogs/default/p/c"

# ------------------------------------------------------------------ the kubelet's endpoint


async def test_full_read_and_options(kubelet: Kubelet) -> None:
    kubelet.run("c", b"one\ntwo\nthree\n")
    assert await get(kubelet.socket, LOGS) == (200, b"one\ntwo\nthree\n", "text/plain")
    assert (await get(kubelet.socket, LOGS, tailLines="2"))[1] == b"two\nthree\n"
    assert (await get(kubelet.socket, LOGS, tailLines="0"))[1] == b""
    assert (await get(kubelet.socket, LOGS, tailLines="10"))[1] == b"one\ntwo\nthree\n"
    assert (await get(kubelet.socket, LOGS, tail="1"))[1] == b"three\n"
    assert (await get(kubelet.socket, LOGS, tail="all"))[1] == b"one\ntwo\nthree\n"
    assert (await get(kubelet.socket, LOGS, limitBytes="5"))[1] == b"one\nt"
    assert (await get(kubelet.socket, LOGS, tailLines="2", limitBytes="5"))[1] == b"two\nt"
    assert (await get(kubelet.socket, LOGS, timestamps="true"))[1] == b"one\ntwo\nthree\n"  # ignored
    assert kubelet.locator.asked[0] == ("default", "p", "c", False)


async def test_previous_is_routed_to_the_locator(kubelet: Kubelet) -> None:
    kubelet.run("c", b"current\n")
    kubelet.run("c", b"crashed\n", previous=True)
    assert (await get(kubelet.socket, LOGS, previous="true"))[1] == b"crashed\n"
    assert (await get(kubelet.socket, LOGS, previous="false"))[1] == b"current\n"
    assert kubelet.locator.asked[-2:] == [("default", "p", "c", True), ("default", "p", "c", False)]


async def test_since_is_approximated_by_the_file_mtime(kubelet: Kubelet) -> None:
    run = kubelet.run("c", b"old\n")
    hour_ago = time.time() - 3600
    os.utime(run.path, (hour_ago, hour_ago))
    assert (await get(kubelet.socket, LOGS, sinceSeconds="60"))[1] == b""
    assert (await get(kubelet.socket, LOGS, sinceSeconds="7200"))[1] == b"old\n"
    assert (await get(kubelet.socket, LOGS, sinceTime="2000-01-01T00:00:00Z"))[1] == b"old\n"


def test_tail_offset_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logserver, "CHUNK", 3)
    for data, n, want in [
        (b"a\nbb\nccc\n", 1, b"ccc\n"),
        (b"a\nbb\nccc\n", 2, b"bb\nccc\n"),
        (b"a\nbb\nccc", 1, b"ccc"),  # an unfinished last line is a line
        (b"a\nbb\nccc", 3, b"a\nbb\nccc"),
        (b"\n\n\n", 2, b"\n\n"),
        (b"", 5, b""),
    ]:
        f = io.BytesIO(data)
        assert data[tail_offset(f, len(data), n) :] == want, (data, n)


async def test_errors_are_status_bodies(kubelet: Kubelet) -> None:
    kubelet.run("c", b"x\n")
    cases = [
        ("/containerLogs/default/nope/c", {}, 404, 'pod "nope" does not exist'),
        ("/containerLogs/default/p/other", {}, 404, 'container "other" not found in pod "p"'),
        (LOGS, {"previous": "true"}, 400, 'previous terminated container "c" in pod "p" not found'),
        (LOGS, {"tailLines": "-1"}, 422, "tailLines: Invalid value: -1: must be greater than or equal to 0"),
        (LOGS, {"limitBytes": "0"}, 422, "limitBytes: Invalid value: 0: must be greater than 0"),
        (LOGS, {"follow": "maybe"}, 400, 'parsing "maybe": invalid syntax'),
        (LOGS, {"tailLines": "x"}, 400, 'parsing "x": invalid syntax'),
        (LOGS, {"stream": "Stdout"}, 400, "stdout and stderr in one file"),
        ("/elsewhere", {}, 404, "the server could not find the requested resource"),
    ]
    for path, query, code, message in cases:
        async with unix_session(kubelet.socket) as session, session.get(f"http://k{path}", params=query) as resp:
            body = await resp.json()
        assert resp.status == code, (path, query)
        assert body["kind"] == "Status" and body["code"] == code and body["status"] == "Failure"
        assert message in body["message"], (body, message)


async def test_follow_streams_appends_until_the_run_ends(kubelet: Kubelet, fast_poll: None) -> None:
    run = kubelet.run("c", b"first\n", alive=True)
    async with (
        unix_session(kubelet.socket) as session,
        session.get(f"http://k{LOGS}", params={"follow": "true"}) as resp,
    ):
        assert resp.status == 200
        got = bytearray()
        await read_until(resp.content, b"first\n", got)
        append(run.path, b"second\n")
        await read_until(resp.content, b"second\n", got)
        append(run.path, b"last words\n")  # written before the run ended: still delivered
        run.alive = False
        await read_until(resp.content, b"last words\n", got)
        assert await asyncio.wait_for(resp.content.read(), WAIT) == b""  # the stream ends
    assert bytes(got) == b"first\nsecond\nlast words\n"


async def test_follow_with_limit_and_tail(kubelet: Kubelet, fast_poll: None) -> None:
    run = kubelet.run("c", b"a\nb\n", alive=True)
    async with (
        unix_session(kubelet.socket) as session,
        session.get(f"http://k{LOGS}", params={"follow": "1", "tailLines": "1", "limitBytes": "6"}) as resp,
    ):
        got = bytearray()
        await read_until(resp.content, b"b\n", got)
        append(run.path, b"cdefgh\n")
        assert await asyncio.wait_for(resp.content.read(), WAIT) == b"cdef"  # ends at the byte limit
    assert bytes(got) == b"b\n"


async def test_follow_waits_for_the_file_to_appear(kubelet: Kubelet, fast_poll: None) -> None:
    run = Run(kubelet.dir / "late" / "0.log", alive=True)
    kubelet.locator.runs["default", "p", "late", False] = run
    async with (
        unix_session(kubelet.socket) as session,
        session.get("http://k/containerLogs/default/p/late", params={"follow": "true"}) as resp,
    ):
        assert resp.status == 200
        run.path.parent.mkdir()
        run.path.write_bytes(b"hello\n")
        got = bytearray()
        await read_until(resp.content, b"hello\n", got)
        run.alive = False
        assert await asyncio.wait_for(resp.content.read(), WAIT) == b""


async def test_serve_replaces_a_stale_socket(tmp_path: Path) -> None:
    sock = tmp_path / "k.sock"
    first = await logserver.serve(FakeLocator(), sock)
    await first.cleanup()  # leaves the socket file behind, as a killed agent would
    second = await logserver.serve(FakeLocator(), sock)
    try:
        assert (await get(sock, "/containerLogs/default/x/c"))[0] == 404
    finally:
        await second.cleanup()


def test_importing_the_log_server_does_not_import_aiohttp() -> None:
    """Node agents start fast: the kubelet side stays off aiohttp (~0.1 s to import)."""
    code = "import sys, kubewire.agents.kubelet.logserver; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ the API server's pods/log


def pod(name: str = "p", containers: tuple[str, ...] = ("c",), init: tuple[str, ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
    if init:
        spec["initContainers"] = [{"name": c, "image": "busybox"} for c in init]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


@dataclass
class Api:
    http: aiohttp.ClientSession
    url: str

    def log(self, name: str = "p", **query: str) -> Any:
        return self.http.get(f"{self.url}/api/v1/namespaces/default/pods/{name}/log", params=query)


@pytest.fixture
async def api(store: Store, kubelet: Kubelet, tmp_path: Path) -> AsyncIterator[Api]:
    """The API server as ``kubewire up`` serves it (a plain runner: handlers are not cancelled on disconnect)."""
    sockets = {"n1": kubelet.socket, "gone": tmp_path / "missing.sock"}
    runner = await APIServer(store, "token", kubelet_socket=sockets.get).serve("127.0.0.1", 0)
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession(headers={"Authorization": "Bearer token"})
    try:
        yield Api(session, f"http://127.0.0.1:{port}")
    finally:
        await session.close()
        await runner.cleanup()


async def status_of(resp: aiohttp.ClientResponse) -> tuple[int, str, str]:
    body = await resp.json()
    assert body["kind"] == "Status"
    return resp.status, body.get("reason", ""), body["message"]


async def test_api_log_follow_streams_from_the_kubelet(
    store: Store, kubelet: Kubelet, api: Api, fast_poll: None
) -> None:
    store.create(POD, pod())
    store.bind("default", "p", "n1")
    run = kubelet.run("c", b"booting\n", alive=True)
    async with api.log(follow="true", container="c") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        got = bytearray()
        await read_until(resp.content, b"booting\n", got)
        append(run.path, b"serving\n")
        await read_until(resp.content, b"serving\n", got)
        run.alive = False
        assert await asyncio.wait_for(resp.content.read(), WAIT) == b""
    assert kubelet.locator.asked[-1] == ("default", "p", "c", False)


async def test_api_log_options_are_forwarded(store: Store, kubelet: Kubelet, api: Api) -> None:
    store.create(POD, pod())
    store.bind("default", "p", "n1")
    kubelet.run("c", b"1\n2\n3\n")
    kubelet.run("c", b"before the crash\n", previous=True)
    async with api.log(tailLines="1") as resp:  # the only container is the default
        assert await resp.read() == b"3\n"
    async with api.log(limitBytes="3") as resp:
        assert await resp.read() == b"1\n2"
    async with api.log(previous="true", timestamps="true") as resp:
        assert await resp.read() == b"before the crash\n"


async def test_api_log_refusals(store: Store, kubelet: Kubelet, api: Api) -> None:
    store.create(POD, pod())
    async with api.log(container="c") as resp:
        assert await status_of(resp) == (
            400,
            "BadRequest",
            'container "c" in pod "p" is waiting to start: ContainerCreating',
        )
    async with api.log(container="nope") as resp:
        assert await status_of(resp) == (400, "BadRequest", "container nope is not valid for pod p")
    store.create(POD, pod("two", ("a", "b"), init=("setup",)))
    async with api.log("two") as resp:
        assert await status_of(resp) == (
            400,
            "BadRequest",
            "a container name must be specified for pod two, choose one of: [setup a b]",
        )
    async with api.log("missing") as resp:
        assert (await status_of(resp))[:2] == (404, "NotFound")
    async with api.log(tailLines="-2") as resp:
        code, reason, message = await status_of(resp)
        assert (code, reason) == (422, "Invalid")
        assert (
            message == 'PodLogOptions "p" is invalid: tailLines: Invalid value: -2: must be greater than or equal to 0'
        )


async def test_api_log_passes_kubelet_errors_through(store: Store, kubelet: Kubelet, api: Api) -> None:
    store.create(POD, pod())
    store.bind("default", "p", "n1")
    kubelet.run("c", b"x\n")
    async with api.log(previous="true") as resp:
        assert await status_of(resp) == (400, "BadRequest", 'previous terminated container "c" in pod "p" not found')


async def test_api_log_without_a_reachable_kubelet(store: Store, api: Api) -> None:
    store.create(POD, pod("p"))
    store.bind("default", "p", "elsewhere")
    async with api.log() as resp:
        code, _, message = await status_of(resp)
    assert code == 500
    assert (
        message
        == 'Get "http://elsewhere/containerLogs/default/p/c": dial unix: node "elsewhere" has no kubelet serving logs'
    )
    store.create(POD, pod("q"))
    store.bind("default", "q", "gone")
    async with api.log("q", follow="true") as resp:
        code, _, message = await status_of(resp)
    assert code == 500
    assert message.startswith('Get "http://gone/containerLogs/default/q/c?follow=true": dial unix ')
    assert message.endswith("missing.sock: connect: no such file or directory")


async def test_api_log_client_disconnect_ends_the_kubelet_stream(
    store: Store, kubelet: Kubelet, api: Api, fast_poll: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create(POD, pod())
    store.bind("default", "p", "n1")
    run = kubelet.run("c", b"tick\n", alive=True)
    ended = asyncio.Event()
    original = logserver._stream

    async def watched(*args: Any) -> None:
        try:
            await original(*args)
        finally:
            ended.set()

    monkeypatch.setattr(logserver, "_stream", watched)
    async with api.log(follow="true") as resp:
        got = bytearray()
        await read_until(resp.content, b"tick\n", got)
        resp.close()  # kubectl's ^C
    await asyncio.wait_for(ended.wait(), WAIT)
    assert run.alive  # the run goes on; only the stream ended


def test_controlplane_kubelet_socket(tmp_path: Path) -> None:
    from kubewire.apiserver.controlplane import ControlPlaneSettings

    settings = ControlPlaneSettings(tmp_path, "127.0.0.1", 0, "t")
    assert settings.kubelet_socket("n1") is None
    sock = tmp_path / "nodes" / "n1" / "kubelet.sock"
    sock.parent.mkdir(parents=True)
    sock.touch()
    assert settings.kubelet_socket("n1") == sock
    assert settings.kubelet_socket("..") is None

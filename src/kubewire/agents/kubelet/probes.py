"""Container probes as the kubelet runs them: when a probe is due, what it counts, and the probe itself.

Two halves, kept apart so the timing rules are testable without a network:

* ``ProbeTracker`` is one upstream prober *worker* (``pkg/kubelet/prober/worker.go``) as a pure state
  machine over an injected clock: a ticker of ``periodSeconds`` anchored at the worker's start (upstream
  probes on ticks, so ``initialDelaySeconds`` is effectively rounded up to the next tick), the
  initial-delay, started-gating and on-hold rules, and the consecutive-result thresholds.  It does no
  I/O; the kubelet asks it whether a probe is due, runs the probe, and records the outcome.
* The runners (``http_probe``, ``tcp_probe``, ``exec_probe``, ``grpc_probe``, dispatched by
  ``run_probe``) do the real I/O and return upstream's ``probe.Result`` together with the output text
  that upstream puts in the ``Unhealthy`` / ``ProbeWarning`` Event, worded as Go's ``net/http``,
  ``net`` and grpc-go word their errors, so ``kubectl describe pod`` reads as on a real cluster.

Upstream results, and what the worker counts (``COUNTED``): ``success`` and ``warning`` (an HTTP 3xx
that was not followed) count as success, ``failure`` as failure.  A probe that *errored*
(``ProbeOutcome.error`` set: a named port that does not exist, a missing handler, an exec the
runtime could not run, an HTTP body that could not be read; its result is ``unknown``, or
``failure`` for the body) is retried up to three times within one run and, if it still errors,
thrown away: it changes neither the result nor the run of equal results.

The HTTP prober speaks HTTP/1.1 through h11 (not aiohttp) because upstream's behaviour is about the
exact request (``Host``, ``User-Agent: kube-probe/1.32``, ``Accept: */*``, ``Connection: close``, no
``Accept-Encoding``), redirect policy (same-host redirects followed, at most 10 requests; a redirect
to another host is not followed and is a warning) and error text, all of which are easier to own
than to coax out of a client library.  The gRPC prober is the ``grpc.health.v1.Health/Check`` unary
call over cleartext HTTP/2 (h2), with the request and response protobufs and the 5-byte gRPC
framing written by hand: the messages have one field each.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import ipaddress
import math
import os
import socket
import ssl
import struct
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h11

from kubewire.workloads._protowire import varint

Obj = dict[str, Any]

ProbeKind = Literal["liveness", "readiness", "startup"]
# Upstream ``pkg/probe.Result``: what one probe run found.
ProbeResult = Literal["success", "warning", "failure", "unknown"]
# Upstream ``prober/results.Result``: what the kubelet acts on (readiness, restart, started).
Health = Literal["success", "failure", "unknown"]
# ``ExecRunner(argv, timeout)`` runs argv in the container's namespaces and returns the exit code
# (``None`` when it was killed for exceeding ``timeout``) and stdout followed by stderr.
ExecRunner = Callable[[Sequence[str], float], Awaitable[tuple[int | None, bytes]]]

# The Kubernetes minor we present as (``component-base/version``), in ``kube-probe/<major>.<minor>``.
KUBE_VERSION: Final = "1.32"
USER_AGENT: Final = f"kube-probe/{KUBE_VERSION}"
# grpc-go appends its own product token to the dial option's user agent; 1.65.0 is what 1.32 vendors.
GRPC_USER_AGENT: Final = f"{USER_AGENT} grpc-go/1.65.0"

# Upstream API defaults for a Probe (``SetDefaults_Probe``); 0 means "unset" for all four.
DEFAULT_PERIOD: Final = 10
DEFAULT_TIMEOUT: Final = 1
DEFAULT_SUCCESS_THRESHOLD: Final = 1
DEFAULT_FAILURE_THRESHOLD: Final = 3
# ``prober.maxProbeRetries``: attempts within one run while the probe *errors*.
MAX_PROBE_RETRIES: Final = 3
# ``pkg/probe/http`` reads at most 10 KiB of a response body; ``pkg/probe/exec`` keeps 10 KiB of output.
MAX_BODY: Final = 10 * 1024
MAX_EXEC_OUTPUT: Final = 10 * 1024
# Go's http.Client default redirect policy, kept by upstream's checker: give up at the 10th request.
MAX_REDIRECT_REQUESTS: Final = 10
# ``kuberuntime.minimumGracePeriodInSeconds``: a killed container always gets at least this long.
MIN_GRACE_PERIOD: Final = 2
# ``probe.ProbeDialer``: SO_LINGER on, 1 s, on every probe socket.
_LINGER: Final = struct.pack("ii", 1, 1)

# --------------------------------------------------------------------------------------------------
# The state machine (worker.go)
# --------------------------------------------------------------------------------------------------

# The result a worker publishes for a new container, before any probe ran (``worker.initialValue``):
# not ready until proven ready; alive until proven dead; not yet known to have started.
INITIAL_RESULT: Final[Mapping[ProbeKind, Health]] = {
    "readiness": "failure",
    "liveness": "success",
    "startup": "unknown",
}

# Which probes run, by (kind, container started): the startup probe only until the container has
# started, the others only after (readiness and liveness never run while a startup probe is pending).
RUNS_WHEN: Final[Mapping[tuple[ProbeKind, bool], bool]] = {
    ("startup", False): True,
    ("startup", True): False,
    ("liveness", False): False,
    ("liveness", True): True,
    ("readiness", False): False,
    ("readiness", True): True,
}

# What one run counts as (``prober.probe`` then ``worker.doProbe``): a warning is a success; an
# ``unknown`` is always an errored run (upstream's and these runners return it only with an error),
# which upstream throws away (None: neither the result nor the run of equal results changes).
COUNTED: Final[Mapping[ProbeResult, Health | None]] = {
    "success": "success",
    "warning": "success",
    "failure": "failure",
    "unknown": None,
}

# A clock reading within this fraction of a period of a tick counts as that tick: ``next_due`` returns
# ``anchor + k * period``, which float rounding may put a hair before the k-th tick.
_TICK_SLACK: Final = 1e-6
_CLOCK_SLACK: Final = 1e-6  # seconds, for the same reason, in the initialDelaySeconds comparison

PROBE_TYPE_NAMES: Final[Mapping[ProbeKind, str]] = {
    "liveness": "Liveness",
    "readiness": "Readiness",
    "startup": "Startup",
}


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe run: upstream's result, the text shown in Events, and the error if it errored."""

    result: ProbeResult
    output: str = ""
    error: str | None = None


@dataclass(frozen=True)
class ProbeSpec:
    """A probe's timing fields with upstream's defaults applied."""

    period: int = DEFAULT_PERIOD
    timeout: int = DEFAULT_TIMEOUT
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    initial_delay: int = 0
    termination_grace_period: int | None = None

    @classmethod
    def parse(cls, probe: Obj) -> ProbeSpec:
        def positive(key: str, default: int) -> int:
            value = probe.get(key)
            return int(value) if value else default

        tgps = probe.get("terminationGracePeriodSeconds")
        return cls(
            period=positive("periodSeconds", DEFAULT_PERIOD),
            timeout=positive("timeoutSeconds", DEFAULT_TIMEOUT),
            success_threshold=positive("successThreshold", DEFAULT_SUCCESS_THRESHOLD),
            failure_threshold=positive("failureThreshold", DEFAULT_FAILURE_THRESHOLD),
            initial_delay=int(probe.get("initialDelaySeconds") or 0),
            termination_grace_period=None if tgps is None else int(tgps),
        )


class ProbeTracker:
    """One container's liveness, readiness or startup probe worker, minus the I/O.

    The kubelet loop for one tracker::

        while True:
            now = clock()
            if tracker.due(now, running_since, started=started):
                outcome = await run_probe(...)           # the run starts at ``now``
                result = tracker.record(outcome, now)    # pass the outcome, not outcome.result
                if tracker.on_hold: ...                  # liveness/startup failed: kill, restart, reset()
            await sleep_until(tracker.next_due(clock(), running_since))

    ``due`` consumes the ticks that have elapsed (a worker wakes on each tick and probes or skips),
    so a probe that ran long is followed at once by one catch-up probe and then by the next aligned
    tick, like Go's ticker.  ``trigger()`` is upstream's manual trigger: the prober manager fires the
    readiness probe whenever it sees a started container that is not yet ready.
    """

    def __init__(self, kind: ProbeKind, probe: Obj, *, anchor: float | None = None) -> None:
        self.kind: ProbeKind = kind
        self.spec = ProbeSpec.parse(probe)
        self.anchor = anchor  # the worker's start (tick 0); set by the first ``due`` when None
        self.result: Health = INITIAL_RESULT[kind]
        self.changed_at: float | None = None  # when ``result`` last flipped (``record``'s ``now``)
        self._last: Health | None = None  # upstream lastResult
        self._run = 0  # upstream resultRun: how many times in a row ``_last`` was seen
        self._on_hold = False  # after a liveness/startup failure, until a new container
        self._stopped = False  # pod deleting (liveness/startup): the worker exits
        self._next_tick = 0  # index of the first tick not yet consumed
        self._triggered = False

    # -- when ------------------------------------------------------------------------------------

    def next_due(self, now: float, running_since: float | None = None) -> float:
        """When to call ``due`` next: the next unconsumed tick, or ``now`` if it passed or a trigger is pending.

        Given ``running_since``, ticks that would fall inside ``initialDelaySeconds`` are skipped
        (upstream wakes on them and does nothing).
        """
        if self._stopped:
            return math.inf
        if self.anchor is None or self._triggered:
            return now
        period = self.spec.period
        tick = self.anchor + self._next_tick * period
        if running_since is not None and not self._delay_over(tick, running_since):
            # Start a tick early of the closed form and step, so the answer agrees with ``due`` exactly.
            ready_at = running_since + self.spec.initial_delay
            index = max(self._next_tick, math.floor((ready_at - self.anchor) / period) - 1)
            while not self._delay_over(self.anchor + index * period, running_since):
                index += 1
            tick = self.anchor + index * period
        return max(now, tick)

    def trigger(self) -> None:
        """Ask for a run at the next ``due`` (upstream ``manualTriggerCh``, which holds one request)."""
        self._triggered = True

    def due(
        self,
        now: float,
        running_since: float | None,
        *,
        started: bool = True,
        deleting: bool = False,
    ) -> bool:
        """Consume elapsed ticks; True when the probe must run now (the run starts at ``now``).

        ``running_since``: when the current container started running, ``None`` if it is not
        running (then the result becomes ``failure``, as upstream's worker sets it).  ``started``:
        whether the container counts as started (``container_started``).  ``deleting``: the pod
        has a deletionTimestamp; liveness and startup then publish success and stop for good.
        """
        if self._stopped:
            return False
        if self.anchor is None:
            self.anchor = now
        elapsed = math.floor((now - self.anchor) / self.spec.period + _TICK_SLACK)
        if elapsed >= self._next_tick:
            self._next_tick = elapsed + 1
        elif not self._triggered:
            return False
        self._triggered = False
        if self._on_hold:
            return False
        if running_since is None:
            self.result = "failure"
            return False
        if deleting and self.kind != "readiness":
            self.result = "success"
            self._stopped = True
            return False
        if not self._delay_over(now, running_since):
            return False
        return RUNS_WHEN[(self.kind, started)]

    def _delay_over(self, now: float, running_since: float) -> bool:
        # Go truncates the elapsed seconds to an integer; the slack absorbs float rounding of ticks.
        return int(now - running_since + _CLOCK_SLACK) >= self.spec.initial_delay

    # -- what ------------------------------------------------------------------------------------

    def record(self, outcome: ProbeOutcome | ProbeResult, now: float | None = None) -> Health:
        """Count one run's outcome and return the published result.

        The result flips only after successThreshold / failureThreshold equal outcomes in a row.
        When a liveness or startup probe flips to ``failure`` the tracker goes ``on_hold``: the
        kubelet kills the container (``kill_grace_period``) and calls ``reset()`` for the new one.
        An errored outcome is discarded.  ``now`` (optional) stamps ``changed_at`` on a flip.
        """
        if isinstance(outcome, ProbeOutcome):
            counted = None if outcome.error is not None else COUNTED[outcome.result]
        else:
            counted = COUNTED[outcome]
        if counted is None:
            return self.result
        if counted == self._last:
            self._run += 1
        else:
            self._last, self._run = counted, 1
        threshold = self.spec.failure_threshold if counted == "failure" else self.spec.success_threshold
        if self._run < threshold:
            return self.result
        if counted != self.result:
            self.result = counted
            self.changed_at = now
        if self.kind != "readiness" and counted == "failure":
            # Probing pauses until the kubelet reports a new container (``reset``).
            self._on_hold = True
            self._run = 0
        return self.result

    def reset(self) -> None:
        """A new container (first start or restart): publish the initial result and resume probing.

        As upstream, the run of equal results and the ticker carry over; only the published
        result and the hold are reset.
        """
        self.result = INITIAL_RESULT[self.kind]
        self._on_hold = False

    @property
    def on_hold(self) -> bool:
        """A liveness/startup failure reached its threshold: restart the container, then ``reset()``."""
        return self._on_hold

    def kill_grace_period(self, pod: Obj) -> int:
        """Seconds of grace when this probe's failure kills the container (``setTerminationGracePeriod``).

        A pod already being deleted uses its deletion grace period; otherwise a liveness or startup
        probe's own ``terminationGracePeriodSeconds`` overrides the pod's.  Never less than 2 s.
        """
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        grace = MIN_GRACE_PERIOD
        if meta.get("deletionGracePeriodSeconds") is not None:
            grace = int(meta["deletionGracePeriodSeconds"])
        elif spec.get("terminationGracePeriodSeconds") is not None:
            grace = int(spec["terminationGracePeriodSeconds"])
            if self.kind != "readiness" and self.spec.termination_grace_period is not None:
                grace = self.spec.termination_grace_period
        return max(grace, MIN_GRACE_PERIOD)


def container_started(startup: ProbeTracker | None, *, running: bool) -> bool:
    """``ContainerStatus.started``: running and, if there is a startup probe, it succeeded."""
    if not running:
        return False
    return startup is None or startup.result == "success"


def container_ready(readiness: ProbeTracker | None, *, running: bool, started: bool) -> bool:
    """``ContainerStatus.ready``: started, running and (if probed) the readiness result is success.

    When this is False for a started, running container with a readiness probe, upstream fires the
    readiness probe at once: call ``readiness.trigger()``.
    """
    if not (running and started):
        return False
    return readiness is None or readiness.result == "success"


def probe_event(kind: ProbeKind, outcome: ProbeOutcome) -> tuple[str, str] | None:
    """The Warning Event (reason, message) upstream records for one run; None for a plain success."""
    name = PROBE_TYPE_NAMES[kind]
    if outcome.error is not None:
        return "Unhealthy", f"{name} probe errored and resulted in {outcome.result} state: {outcome.error}"
    if outcome.result == "warning":
        return "ProbeWarning", f"{name} probe warning: {outcome.output}"
    if outcome.result == "failure":
        return "Unhealthy", f"{name} probe failed: {outcome.output}"
    return None


def restart_message(kind: ProbeKind, container_name: str, *, restarting: bool = True) -> str:
    """The ``Killing`` Event message when a liveness/startup failure kills a container."""
    message = f"Container {container_name} failed {kind} probe"
    return f"{message}, will be restarted" if restarting else message


# --------------------------------------------------------------------------------------------------
# Go-compatible wording
# --------------------------------------------------------------------------------------------------


def go_quote(text: str) -> str:
    """Go's ``%q`` / ``strconv.Quote`` for a string."""
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in named:
            out.append(named[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` (``1s``, ``500ms``, ``1m30s``)."""
    ns = round(seconds * 1e9)
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)

    def frac(value: int, unit: int) -> str:
        whole, rest = divmod(value, unit)
        if not rest:
            return str(whole)
        digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}"

    if ns == 0:
        return "0s"
    if ns < 1000:
        text = f"{ns}ns"
    elif ns < 1_000_000:
        text = frac(ns, 1000) + "µs"
    elif ns < 1_000_000_000:
        text = frac(ns, 1_000_000) + "ms"
    else:
        minutes, rest = divmod(ns, 60_000_000_000)
        text = frac(rest, 1_000_000_000) + "s"
        if minutes:
            hours, minutes = divmod(minutes, 60)
            text = f"{minutes}m{text}"
            if hours:
                text = f"{hours}h{text}"
    return sign + text


def join_host_port(host: str, port: int) -> str:
    """``net.JoinHostPort``: IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _errno_text(exc: OSError) -> str:
    # Go's syscall.Errno strings are the C library's, starting lower-case.
    if exc.errno is None:
        return str(exc)
    text = os.strerror(exc.errno)
    return text[:1].lower() + text[1:]


def _sockname(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return join_host_port(str(addr[0]), int(addr[1]))
    return str(addr)


class _DialError(Exception):
    """A connection could not be opened; the text is Go's ``net.OpError`` wording."""


async def _dial(host: str, port: int) -> socket.socket:
    """Open a TCP connection as ``probe.ProbeDialer`` does (SO_LINGER 1 s); errors worded as Go's dialer."""
    loop = asyncio.get_running_loop()
    addr = join_host_port(host, port)
    try:
        version = ipaddress.ip_address(host).version
        targets: list[tuple[int, tuple[Any, ...]]] = [
            (socket.AF_INET6 if version == 6 else socket.AF_INET, (host, port))
        ]
    except ValueError:
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise _DialError(f"dial tcp: lookup {host}: no such host") from None
        targets = [(info[0], info[4]) for info in infos]
    first: OSError | None = None
    for family, sockaddr in targets:
        sock = socket.socket(socket.AddressFamily(family), socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER)
            await loop.sock_connect(sock, sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            first = first or exc
        except BaseException:
            sock.close()
            raise
    assert first is not None
    raise _DialError(f"dial tcp {addr}: connect: {_errno_text(first)}")


# --------------------------------------------------------------------------------------------------
# Ports and dispatch (prober.go, pkg/probe/util.go)
# --------------------------------------------------------------------------------------------------


class ProbeError(Exception):
    """A probe that cannot be run as specified (upstream returns it as the probe's error)."""


def resolve_port(port: int | str, container: Obj) -> int:
    """``probe.ResolveContainerPort``: a number, or the containerPort of the container port so named."""
    if isinstance(port, str):
        for p in container.get("ports") or []:
            if p.get("name") == port:
                number = int(p.get("containerPort") or 0)
                break
        else:
            raise ProbeError(f"port {go_quote(port)} not found")
    else:
        number = int(port)
    if 0 < number < 65536:
        return number
    raise ProbeError(f"invalid port number: {number}")


def expand_command(command: Sequence[str], env: Sequence[Obj]) -> list[str]:
    """``ExpandContainerCommandOnlyStatic``: ``$(VAR)`` from the container's env, ``$$`` escapes ``$``.

    Every env entry is in the mapping with its literal ``value`` ("" for ``valueFrom`` ones); an
    undefined ``$(VAR)`` and an unterminated ``$(`` are left as written.
    """
    mapping = {str(e.get("name")): str(e.get("value") or "") for e in env}
    return [_expand(arg, mapping) for arg in command]


def _expand(text: str, mapping: Mapping[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                out.append(mapping.get(name, f"$({name})"))
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


async def run_probe(
    probe: Obj,
    pod_ip: str,
    container: Obj,
    run_exec: ExecRunner,
    *,
    pod: Obj | None = None,
) -> ProbeOutcome:
    """Run one probe as upstream's prober does: up to three attempts while it errors.

    Handlers are tried in upstream's order (exec, httpGet, tcpSocket, grpc); the host is the pod IP
    unless httpGet.host / tcpSocket.host says otherwise (grpc always probes the pod IP).
    """
    outcome = ProbeOutcome("unknown")
    for _ in range(MAX_PROBE_RETRIES):
        outcome = await _run_once(probe, pod_ip, container, run_exec, pod)
        if outcome.error is None:
            return outcome
    return outcome


async def _run_once(probe: Obj, pod_ip: str, container: Obj, run_exec: ExecRunner, pod: Obj | None) -> ProbeOutcome:
    timeout = float(ProbeSpec.parse(probe).timeout)
    try:
        if (action := probe.get("exec")) is not None:
            argv = expand_command(action.get("command") or [], container.get("env") or [])
            return await exec_probe(run_exec, argv, timeout)
        if (action := probe.get("httpGet")) is not None:
            port = resolve_port(action.get("port", 0), container)
            return await http_probe(
                str(action.get("scheme") or "HTTP"),
                str(action.get("host") or pod_ip),
                port,
                str(action.get("path") or ""),
                action.get("httpHeaders") or [],
                timeout,
            )
        if (action := probe.get("tcpSocket")) is not None:
            port = resolve_port(action.get("port", 0), container)
            return await tcp_probe(str(action.get("host") or pod_ip), port, timeout)
        if (action := probe.get("grpc")) is not None:
            return await grpc_probe(pod_ip, int(action.get("port") or 0), str(action.get("service") or ""), timeout)
    except ProbeError as exc:
        return ProbeOutcome("unknown", "", str(exc))
    meta = (pod or {}).get("metadata") or {}
    where = f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"
    return ProbeOutcome("unknown", "", f"missing probe handler for {where}:{container.get('name', '')}")


# --------------------------------------------------------------------------------------------------
# tcpSocket and exec (pkg/probe/tcp, pkg/probe/exec)
# --------------------------------------------------------------------------------------------------


async def tcp_probe(host: str, port: int, timeout: float) -> ProbeOutcome:
    """Success when a TCP connection opens within ``timeout``; the dial error otherwise."""
    try:
        async with asyncio.timeout(timeout):
            sock = await _dial(host, port)
    except TimeoutError:
        return ProbeOutcome("failure", f"dial tcp {join_host_port(host, port)}: i/o timeout")
    except _DialError as exc:
        return ProbeOutcome("failure", str(exc))
    sock.close()
    return ProbeOutcome("success")


async def exec_probe(run: ExecRunner, argv: Sequence[str], timeout: float) -> ProbeOutcome:
    """Exit 0 is success, anything else failure; the output (10 KiB at most) is the message."""
    try:
        code, data = await run(argv, timeout)
    except Exception as exc:  # the runtime could not run it: upstream's Unknown with the error
        return ProbeOutcome("unknown", "", str(exc) or type(exc).__name__)
    if code is None:
        # The runtime's TimeoutError text, which upstream uses as the output (the data is empty).
        return ProbeOutcome("failure", f"command {go_quote(' '.join(argv))} timed out")
    output = data[:MAX_EXEC_OUTPUT].decode("utf-8", "replace")
    return ProbeOutcome("success" if code == 0 else "failure", output)


# --------------------------------------------------------------------------------------------------
# httpGet (pkg/probe/http)
# --------------------------------------------------------------------------------------------------

_REDIRECT_CODES: Final = frozenset({301, 302, 303, 307, 308})
_PATH_SAFE: Final = "/:@!$&'()*+,;=~%"
_TOKEN: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Go writes these itself, not from the header map.
_WRITTEN_APART: Final = frozenset({"Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer"})


def canonical_header(name: str) -> str:
    """``textproto.CanonicalMIMEHeaderKey``: ``x-custom-header`` becomes ``X-Custom-Header``."""
    if not name or any(ch not in _TOKEN for ch in name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def probe_headers(http_headers: Sequence[Obj]) -> tuple[dict[str, list[str]], str]:
    """The probe's header map (``newProbeRequest``) and its Host override ("" for none).

    User-Agent defaults to ``kube-probe/1.32`` and Accept to ``*/*``; an Accept set to "" is removed.
    """
    headers: dict[str, list[str]] = {}
    for h in http_headers:
        headers.setdefault(canonical_header(str(h.get("name", ""))), []).append(str(h.get("value", "")))
    headers.setdefault("User-Agent", [USER_AGENT])
    if "Accept" not in headers:
        headers["Accept"] = ["*/*"]
    elif headers["Accept"][0] == "":
        del headers["Accept"]
    return headers, headers.get("Host", [""])[0]


def format_url(scheme: str, host: str, port: int, path: str) -> str:
    """The probe URL as Go's ``url.URL.String`` prints it (upstream ``formatURL``)."""
    parts = urllib.parse.urlsplit(path)
    p = parts.path
    if p and not p.startswith("/"):
        p = "/" + p
    url = f"{scheme.lower()}://{join_host_port(host, port)}{urllib.parse.quote(p, safe=_PATH_SAFE)}"
    if parts.query:
        url += "?" + parts.query
    if parts.fragment:
        url += "#" + parts.fragment
    return url


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # Go's URL.Hostname(): no brackets, case kept
    port: int
    hostport: str  # Go's URL.Host
    request_target: str


class _Failed(Exception):
    """The request failed; the text follows ``Get "<url>": ``."""


def _split(url: str) -> _Target:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _Failed(f"unsupported protocol scheme {go_quote(scheme)}")
    netloc = parts.netloc.rpartition("@")[2]
    port_text = ""
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif ":" in netloc:
        host, _, port_text = netloc.rpartition(":")
    else:
        host = netloc
    default = 443 if scheme == "https" else 80
    try:
        port = int(port_text) if port_text else default
    except ValueError:
        raise _Failed(f"invalid port {go_quote(':' + port_text)} after host") from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return _Target(scheme, host, port, netloc, target)


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # upstream: InsecureSkipVerify
    return ctx


def _tls_text(exc: ssl.SSLError) -> str:
    if exc.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        return "http: server gave HTTP response to HTTPS client"
    if isinstance(exc, ssl.SSLEOFError):
        return "EOF"
    return f"remote error: tls: {(exc.reason or str(exc)).lower().replace('_', ' ')}"


@dataclass
class _HttpState:
    url: str
    hostport: str
    phase: Literal["dial", "tls", "headers", "body"] = "dial"
    requests: int = 0
    first_host: str = ""


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key == name:
                return value
        return ""


async def http_probe(
    scheme: str,
    host: str,
    port: int,
    path: str,
    headers: Sequence[Obj],
    timeout: float,
) -> ProbeOutcome:
    """GET the URL; 200 <= status < 400 succeeds (a 3xx that was not followed is a warning).

    ``headers`` are the probe's ``httpHeaders`` ({name, value}); a ``Host`` entry sets the Host
    header.  TLS certificates are not verified.  The whole exchange, redirects and body included,
    shares one ``timeout``, as Go's ``http.Client.Timeout``.
    """
    url = format_url(scheme, host, port, path)
    fields, host_override = probe_headers(headers)
    state = _HttpState(url=url, hostport=join_host_port(host, port))
    try:
        async with asyncio.timeout(timeout):
            return await _http_get(state, fields, host_override)
    except TimeoutError:
        if state.phase == "body":
            return ProbeOutcome(
                "failure", "", "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
            )
        detail = f"dial tcp {state.hostport}: i/o timeout" if state.phase == "dial" else "context deadline exceeded"
        return ProbeOutcome(
            "failure", f"Get {go_quote(state.url)}: {detail} (Client.Timeout exceeded while awaiting headers)"
        )
    except _Failed as exc:
        return ProbeOutcome("failure", f"Get {go_quote(state.url)}: {exc}")
    except _BodyError as exc:
        return ProbeOutcome("failure", "", str(exc))


async def _http_get(state: _HttpState, fields: dict[str, list[str]], host_override: str) -> ProbeOutcome:
    host_header = host_override
    referer = ""
    state.first_host = _split(state.url).host
    while True:
        target = _split(state.url)
        state.hostport, state.phase = target.hostport, "dial"
        try:
            sock = await _dial(target.host, target.port)
        except _DialError as exc:
            raise _Failed(str(exc)) from None
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            if target.scheme == "https":
                state.phase = "tls"
                sni = None if _is_ip(target.host) else target.host
                try:
                    await writer.start_tls(_tls_context(), server_hostname=sni)
                except ssl.SSLError as exc:
                    raise _Failed(_tls_text(exc)) from None
                except OSError as exc:
                    raise _Failed(_io_error_text(exc, writer)) from None
            state.phase = "headers"
            conn = h11.Connection(h11.CLIENT)
            request = _request_headers(target, fields, host_header, referer)
            try:
                data = conn.send(h11.Request(method="GET", target=target.request_target, headers=request))
            except h11.LocalProtocolError as exc:
                raise _Failed(f"net/http: invalid header: {exc}") from None
            try:
                writer.write((data or b"") + (conn.send(h11.EndOfMessage()) or b""))
                await writer.drain()
                response = await _read_head(conn, reader)
            except OSError as exc:
                raise _Failed(_io_error_text(exc, writer)) from None
            state.requests += 1
            location = response.header("location") if response.status in _REDIRECT_CODES else ""
            if location:
                next_url = urllib.parse.urljoin(state.url, location)
                if _split(next_url).host == state.first_host:
                    if state.requests >= MAX_REDIRECT_REQUESTS:
                        return ProbeOutcome(
                            "failure", f"Get {go_quote(location)}: stopped after {MAX_REDIRECT_REQUESTS} redirects"
                        )
                    # Go keeps a custom Host only across relative redirects.
                    relative = not urllib.parse.urlsplit(location).netloc
                    if not (relative and host_header and host_header != target.hostport):
                        host_header = ""
                    referer = "" if (target.scheme, _split(next_url).scheme) == ("https", "http") else state.url
                    state.url = next_url
                    continue
                # Redirect to another host: not followed (``http.ErrUseLastResponse``).
            state.phase = "body"
            body = await _read_body(conn, reader, writer)
            return _classify(response.status, body)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _request_headers(
    target: _Target, fields: dict[str, list[str]], host_header: str, referer: str
) -> list[tuple[str, str]]:
    # Go's order: Host, User-Agent, the header map sorted by name, then the transport's Connection.
    out = [("Host", host_header or target.hostport)]
    if user_agent := fields["User-Agent"][0]:
        out.append(("User-Agent", user_agent))
    others = {k: v for k, v in fields.items() if k not in _WRITTEN_APART}
    if referer and "Referer" not in others:
        others["Referer"] = [referer]
    for name in sorted(others):
        out.extend((name, " ".join(value.replace("\r", " ").replace("\n", " ").split())) for value in others[name])
    if not any(k == "Connection" and "close" in v for k, vs in others.items() for v in vs):
        out.append(("Connection", "close"))  # DisableKeepAlives
    return out


async def _read_head(conn: h11.Connection, reader: asyncio.StreamReader) -> _Response:
    received = False
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            if not received:
                raise _Failed("EOF") from None
            raise _Failed("net/http: HTTP/1.x transport connection broken: malformed HTTP response") from None
        if event is h11.NEED_DATA:
            chunk = await reader.read(65536)
            received = received or bool(chunk)
            conn.receive_data(chunk)
            continue
        if isinstance(event, h11.Response):
            return _Response(
                event.status_code,
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
            )
        if isinstance(event, h11.ConnectionClosed):
            raise _Failed("EOF")
        # InformationalResponse (1xx): wait for the final response.


async def _read_body(conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    body = bytearray()
    while len(body) < MAX_BODY:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            raise _BodyError("unexpected EOF") from None
        if event is h11.NEED_DATA:
            try:
                conn.receive_data(await reader.read(65536))
            except OSError as exc:
                raise _BodyError(_io_error_text(exc, writer)) from None
            continue
        if isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    return bytes(body[:MAX_BODY])  # more than that is silently truncated, as upstream


class _BodyError(Exception):
    """Reading the body failed: upstream returns this as the probe's error, with a failure result."""


def _io_error_text(exc: OSError, writer: asyncio.StreamWriter) -> str:
    local = _sockname(writer.get_extra_info("sockname"))
    remote = _sockname(writer.get_extra_info("peername"))
    return f"read tcp {local}->{remote}: read: {_errno_text(exc)}"


def _classify(status: int, body: bytes) -> ProbeOutcome:
    text = body.decode("utf-8", "replace")
    if 200 <= status < 400:
        if status >= 300:
            return ProbeOutcome("warning", f"Probe terminated redirects, Response body: {text}")
        return ProbeOutcome("success", text)
    # Upstream keeps the body out of the user-facing message (kubernetes#99425).
    return ProbeOutcome("failure", f"HTTP probe failed with statuscode: {status}")


# --------------------------------------------------------------------------------------------------
# grpc (pkg/probe/grpc): grpc.health.v1.Health/Check over h2c
# --------------------------------------------------------------------------------------------------

HEALTH_CHECK_PATH: Final = "/grpc.health.v1.Health/Check"
# grpc.health.v1.HealthCheckResponse.ServingStatus
SERVING_STATUS: Final[Mapping[int, str]] = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
SERVING: Final = 1
GRPC_CODES: Final[tuple[str, ...]] = (
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
)
_UNIMPLEMENTED: Final = 12
_DEADLINE_EXCEEDED: Final = 4
# grpc-go's mapping of a non-200 HTTP status to a gRPC code (``HTTPStatusConvTab``); Unknown otherwise.
_HTTP_TO_GRPC: Final[Mapping[int, int]] = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}
# grpc-go's mapping of RST_STREAM error codes to gRPC codes (``http2ErrConvTab``); Internal otherwise.
_RST_TO_GRPC: Final[Mapping[int, int]] = {3: 8, 7: 14, 8: 1, 11: 8, 12: 7}
# grpc-go's reconnect backoff (base 1 s, x1.6, capped at 120 s); jitter left out.
_BACKOFF_BASE: Final = 1.0
_BACKOFF_FACTOR: Final = 1.6
_BACKOFF_MAX: Final = 120.0


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("proto: truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def encode_health_request(service: str) -> bytes:
    """``HealthCheckRequest{service}``: field 1, length-delimited; empty when the service is ""."""
    raw = service.encode()
    return b"\x0a" + varint(len(raw)) + raw if raw else b""


def decode_health_response(payload: bytes) -> int:
    """The ``status`` (field 1, varint, int32) of a ``HealthCheckResponse``; 0 when absent."""
    status, pos = 0, 0
    while pos < len(payload):
        key, pos = _read_varint(payload, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(payload, pos)
            if number == 1:
                value &= 0xFFFFFFFF
                status = value - (1 << 32) if value >= 1 << 31 else value
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _read_varint(payload, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"proto: cannot parse reserved wire type {wire}")
        if pos > len(payload):
            raise ValueError("proto: unexpected end of message")
    return status


def grpc_frame(message: bytes) -> bytes:
    """The gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def grpc_timeout(seconds: float) -> str:
    """grpc-go's ``grpc-timeout`` value: the finest unit whose count fits in 8 digits, rounded up."""
    ns = math.ceil(seconds * 1e9)
    if ns <= 0:
        return "0n"
    for unit, size in (("n", 1), ("u", 1000), ("m", 10**6), ("S", 10**9), ("M", 60 * 10**9), ("H", 3600 * 10**9)):
        count = -(-ns // size)
        if count <= 99_999_999:
            return f"{count}{unit}"
    return f"{-(-ns // (3600 * 10**9))}H"


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def __str__(self) -> str:
        name = GRPC_CODES[self.code] if 0 <= self.code < len(GRPC_CODES) else f"Code({self.code})"
        return f"rpc error: code = {name} desc = {self.message}"


@dataclass
class _H2:
    conn: h2.connection.H2Connection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def flush(self) -> None:
        if data := self.conn.data_to_send():
            self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


async def grpc_probe(host: str, port: int, service: str, timeout: float) -> ProbeOutcome:
    """Call ``grpc.health.v1.Health/Check``; success when the service answers SERVING.

    As grpc-go's blocking dial, a refused or non-HTTP/2 endpoint is retried with backoff until the
    deadline, so it fails with the connect *timeout* message after ``timeout``.
    """
    addr = join_host_port(host, port)
    limit = go_duration(timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            channel = await _grpc_connect(host, port)
    except TimeoutError:
        return ProbeOutcome(
            "failure", f"timeout: failed to connect service {go_quote(addr)} within {limit}: context deadline exceeded"
        )
    try:
        async with asyncio.timeout_at(deadline):
            status = await _health_check(channel, addr, service, deadline - loop.time())
    except TimeoutError:
        return ProbeOutcome("failure", f"timeout: health rpc did not complete within {limit}")
    except _RpcError as exc:
        if exc.code == _UNIMPLEMENTED:
            return ProbeOutcome(
                "failure",
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): "
                + exc.message,
            )
        if exc.code == _DEADLINE_EXCEEDED:
            return ProbeOutcome("failure", f"timeout: health rpc did not complete within {limit}")
        return ProbeOutcome("failure", f"error: health rpc probe failed: {exc}")
    finally:
        channel.close()
        with contextlib.suppress(Exception):
            await channel.writer.wait_closed()
    if status != SERVING:
        return ProbeOutcome(
            "failure", f"service unhealthy (responded with {go_quote(SERVING_STATUS.get(status, str(status)))})"
        )
    return ProbeOutcome("success", "service healthy")


async def _grpc_connect(host: str, port: int) -> _H2:
    """Connect until the server's HTTP/2 SETTINGS arrive (grpc-go's READY), retrying with backoff."""
    backoff = _BACKOFF_BASE
    while True:
        writer: asyncio.StreamWriter | None = None
        try:
            sock = await _dial(host, port)
            reader, writer = await asyncio.open_connection(sock=sock)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
            channel = _H2(conn, reader, writer)
            conn.initiate_connection()
            channel.flush()
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("EOF before the server preface")
                events = conn.receive_data(data)
                channel.flush()
                if any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events):
                    await writer.drain()
                    return channel
        except (_DialError, OSError, h2.exceptions.ProtocolError):
            if writer is not None:
                writer.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * _BACKOFF_FACTOR, _BACKOFF_MAX)
        except BaseException:
            if writer is not None:
                writer.close()
            raise


async def _health_check(channel: _H2, authority: str, service: str, remaining: float) -> int:
    conn = channel.conn
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", HEALTH_CHECK_PATH),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("user-agent", GRPC_USER_AGENT),
            ("te", "trailers"),
            ("grpc-timeout", grpc_timeout(remaining)),
        ],
    )
    conn.send_data(stream, grpc_frame(encode_health_request(service)), end_stream=True)
    channel.flush()
    await channel.writer.drain()

    headers: dict[str, str] = {}
    trailers: dict[str, str] = {}
    body = bytearray()
    ended = False
    while not ended:
        try:
            data = await channel.reader.read(65536)
        except OSError as exc:
            raise _RpcError(14, f"error reading from server: {_errno_text(exc)}") from None
        if not data:
            raise _RpcError(14, "error reading from server: EOF")
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            raise _RpcError(13, f"connection error: {exc}") from None
        for event in events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                headers = {str(k): str(v) for k, v in event.headers or []}
            elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == stream:
                trailers = {str(k): str(v) for k, v in event.headers or []}
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                body += event.data or b""
                conn.acknowledge_received_data(event.flow_controlled_length or 0, stream)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                ended = True
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                code = int(event.error_code or 0)
                name = _h2_error_name(code)
                raise _RpcError(_RST_TO_GRPC.get(code, 13), f"stream terminated by RST_STREAM with error code: {name}")
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise _RpcError(14, "error reading from server: EOF")
        channel.flush()
    return _health_status(headers, trailers, bytes(body))


def _h2_error_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return str(code)


def _health_status(headers: Mapping[str, str], trailers: Mapping[str, str], body: bytes) -> int:
    http_status = int(headers.get(":status", "0") or 0)
    if http_status != 200:
        try:
            phrase = http.HTTPStatus(http_status).phrase
        except ValueError:
            phrase = ""
        raise _RpcError(
            _HTTP_TO_GRPC.get(http_status, 2),
            f"unexpected HTTP status code received from server: {http_status} ({phrase})",
        )
    content_type = headers.get("content-type", "")
    if not content_type.startswith("application/grpc"):
        raise _RpcError(2, f"transport: received unexpected content-type {go_quote(content_type)}")
    # A trailers-only response carries grpc-status in its only HEADERS frame.
    final = trailers or headers
    if "grpc-status" not in final:
        raise _RpcError(13, "server closed the stream without sending trailers")
    code = int(final["grpc-status"])
    if code != 0:
        raise _RpcError(code, urllib.parse.unquote(final.get("grpc-message", "")))
    if len(body) < 5:
        raise _RpcError(13, "unexpected EOF")
    (length,) = struct.unpack(">I", body[1:5])
    if body[0] != 0 or len(body) < 5 + length:
        raise _RpcError(13, "grpc: failed to unmarshal the received message")
    try:
        return decode_health_response(body[5 : 5 + length])
    except ValueError as exc:
        raise _RpcError(13, f"grpc: failed to unmarshal the received message: {exc}") from None

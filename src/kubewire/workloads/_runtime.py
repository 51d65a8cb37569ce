"""Process plumbing shared by the built-in workloads: flags, Go durations, signals, logging, addresses.

The programs here stand in for Go binaries (agnhost, echo-basic, http-echo), so their command lines
are parsed the way Go's ``flag`` and spf13/pflag parse them (``-name value``, ``--name=value``,
bare booleans), and their durations the way ``time.ParseDuration`` reads them. Nothing here imports
asyncio: ``pause`` uses this module too and must stay as small as a process can be.

``import_asyncio(tls=False)`` exists for memory: asyncio imports ``ssl`` (OpenSSL's tables cost about
1.3 MB of private memory and 4 MB of RSS per process) even when no listener uses TLS. A hundred
pods run at once, so programs that know at start-up that they serve no TLS import asyncio with
``ssl`` hidden, and TLS stays available to programs that ask for it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from types import FrameType

# Every listener binds all addresses (Go's ":port") unless this is set; tests bind 127.0.0.1 only.
BIND_ENV = "KUBEWIRE_BIND_HOST"

FlagValue = bool | int | str


class FlagError(Exception):
    """A command line that Go's flag package (or pflag) would reject; the message is Go's wording."""


def parse_flags(
    argv: Sequence[str], spec: Mapping[str, FlagValue], *, interspersed: bool = True
) -> tuple[dict[str, FlagValue], list[str]]:
    """Parse ``argv`` against ``spec`` (flag name -> default, whose type gives the flag's type).

    Accepts ``-name``/``--name``, ``=value`` or a separate value, bare booleans (``--tcp``,
    ``--http=false``) and ``--`` to end flags. ``interspersed`` (pflag) lets flags follow positional
    arguments; Go's ``flag`` package stops at the first positional argument.
    """
    values: dict[str, FlagValue] = dict(spec)
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            if not interspersed:
                positional.extend(argv[i:])
                break
            continue
        name, eq, raw = arg.lstrip("-").partition("=")
        if name not in spec:
            raise FlagError(f"flag provided but not defined: -{name}")
        default = spec[name]
        if isinstance(default, bool):
            if not eq:
                values[name] = True
                continue
            if raw.lower() not in _BOOLS:
                raise FlagError(f'invalid boolean value "{raw}" for -{name}: parse error')
            values[name] = _BOOLS[raw.lower()]
            continue
        if not eq:
            if i >= len(argv):
                raise FlagError(f"flag needs an argument: -{name}")
            raw = argv[i]
            i += 1
        if isinstance(default, int):
            try:
                values[name] = int(raw, 0)
            except ValueError:
                raise FlagError(f'invalid value "{raw}" for flag -{name}: parse error') from None
        else:
            values[name] = raw
    return values, positional


_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (``1.5s``, ``300ms``, ``1h2m``); ValueError worded as Go's."""
    body = text[1:] if text[:1] in "+-" else text
    sign = -1.0 if text.startswith("-") else 1.0
    if body == "0":
        return 0.0
    if re.fullmatch(r"\d+\.?\d*|\.\d+", body):
        raise ValueError(f'time: missing unit in duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None:
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def format_duration(seconds: float) -> str:
    """A duration the way Go prints one (``1.5s``, ``0s``, ``2m0s``), for log lines."""
    if seconds == 0:
        return "0s"
    if abs(seconds) < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if abs(ms) >= 1 else f"{seconds * 1e6:g}µs"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{secs:g}s"
    if hours or minutes:
        out = f"{int(minutes)}m" + out
    if hours:
        out = f"{int(hours)}h" + out
    return out


def bind_host() -> str | None:
    """The address listeners bind: every address (None) unless ``KUBEWIRE_BIND_HOST`` says otherwise."""
    return os.environ.get(BIND_ENV) or None


def hostname() -> str:
    """The pod's hostname: pods run in their own UTS namespace, so this is the pod name."""
    return socket.gethostname()


def log(line: str) -> None:
    """One line to stdout, flushed at once so ``kubectl logs`` shows it while the pod runs."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def go_log(line: str) -> None:
    """A line with Go's ``log`` package prefix (``2006/01/02 15:04:05 ``), written to stderr as Go does."""
    import time

    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    sys.stderr.write(f"{stamp} {line}\n")
    sys.stderr.flush()


def on_signals(handler: Callable[[int], None], *signums: int) -> None:
    """Call ``handler(signum)`` for each of ``signums`` (synchronously, from the main thread)."""

    def _handle(signum: int, _frame: FrameType | None) -> None:
        handler(signum)

    for signum in signums:
        signal.signal(signum, _handle)


def exit_on_signals(code: int, *signums: int) -> None:
    """Exit with ``code`` at once when any of ``signums`` arrives (finally blocks are skipped on purpose)."""
    on_signals(lambda _signum: os._exit(code), *signums)


def import_asyncio(*, tls: bool) -> None:
    """Import asyncio, hiding ``ssl`` from it unless ``tls`` is needed (see the module docstring).

    Call this before importing ``_http`` (or asyncio); afterwards ``import asyncio`` is a cache hit.
    """
    if tls or "asyncio" in sys.modules or "ssl" in sys.modules:
        import asyncio

        return
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]

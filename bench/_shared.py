"""What the benchmarks share: bounded subprocesses that take their children with them, and the
machine line every report starts with.  Not a benchmark itself (``./dev bench`` skips ``_*.py``)."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


class Timeout(RuntimeError):
    """A command did not finish within its bound (it and its process group were killed)."""


def run(
    argv: list[str],
    stdin: str = "",
    timeout: float = 60,
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    group: bool = True,
) -> str:
    """Run ``argv`` bounded by ``timeout``; on expiry, or when this process is interrupted, kill what
    it started: its process group (``group``: the child leads its own, so what it started goes with
    it), or the child alone.  Returns stdout (stderr appended when ``check`` is off); a non-zero exit
    raises when ``check`` is on."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=group,
    )

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        proc.communicate()

    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill()
        raise Timeout(f"{' '.join(argv[:8])}: did not finish in {timeout:.0f} s") from None
    except BaseException:
        kill()
        raise
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:8])}: exit {proc.returncode}: {(err or out).strip()[-2000:]}")
    return out if check else out + err


def machine(tools: list[str]) -> Iterator[str]:
    """The machine line, then one per tool line given, then the load average."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    yield f"machine: {os.cpu_count()} cores{' (' + model + ')' if model else ''}, Linux {platform.release()}"
    for tool in tools:
        yield f"  {tool}"
    with contextlib.suppress(OSError):
        load = Path("/proc/loadavg").read_text().split()[:3]
        yield f"  load average before the run: {' '.join(load)} (other work on the machine skews every figure)"

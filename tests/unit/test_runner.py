"""The bounded-frequency runner: coalescing, minimum interval, periodic resync, retry after failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from kubewire.agents.runner import BoundedFrequencyRunner


class Recorder:
    def __init__(self, fail_times: int = 0) -> None:
        self.calls: list[tuple[float, bool]] = []
        self.fail_times = fail_times
        self.changed = asyncio.Event()

    async def __call__(self, periodic: bool) -> None:
        self.calls.append((asyncio.get_running_loop().time(), periodic))
        self.changed.set()
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("kernel said no")

    async def wait_calls(self, n: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.calls) < n:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def running(runner: BoundedFrequencyRunner) -> AsyncIterator[None]:
    task = asyncio.create_task(runner.loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def clock() -> float:
    return asyncio.get_running_loop().time()


async def test_first_sync_is_immediate_and_requests_coalesce() -> None:
    rec = Recorder()
    runner = BoundedFrequencyRunner("t", rec, min_interval=0.2, max_interval=60, clock=clock)
    async with running(runner):
        await rec.wait_calls(1)
        for _ in range(10):
            runner.run()
        await rec.wait_calls(2)
        await asyncio.sleep(0.3)  # bounded: proves no third sync follows the burst
    assert len(rec.calls) == 2
    assert rec.calls[1][0] - rec.calls[0][0] >= 0.2 - 1e-3
    assert [p for _, p in rec.calls] == [False, False]


async def test_periodic_resync_when_nothing_asks() -> None:
    rec = Recorder()
    runner = BoundedFrequencyRunner("t", rec, min_interval=0.0, max_interval=0.1, clock=clock)
    async with running(runner):
        await rec.wait_calls(3)
    assert rec.calls[1][1] is True and rec.calls[2][1] is True


async def test_failed_sync_is_retried_after_the_retry_interval() -> None:
    rec = Recorder(fail_times=1)
    runner = BoundedFrequencyRunner("t", rec, min_interval=0.0, max_interval=60, retry_interval=0.1, clock=clock)
    async with running(runner):
        await rec.wait_calls(2)
    assert runner.failures == 1 and runner.runs == 1
    assert rec.calls[1][0] - rec.calls[0][0] >= 0.1 - 1e-3


def test_intervals_are_validated() -> None:
    with pytest.raises(ValueError):
        BoundedFrequencyRunner("t", Recorder(), min_interval=2, max_interval=1)

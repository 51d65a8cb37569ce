"""A de-duplicating, rate-limited work queue of keys, as client-go's workqueue.

A key queued many times before a worker takes it is processed once; a key being processed is
never handed to a second worker, and if it is queued meanwhile it comes back once the first
worker is done.  Failed keys come back after a per-key exponential backoff (``add_rate_limited``)
until ``forget`` resets it.  Time comes from the event loop, so tests can drive it.
"""

from __future__ import annotations

import asyncio
from collections import deque


class WorkQueue:
    """Keys to reconcile; ``get`` waits for one, ``done`` releases it."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._waiters: asyncio.Condition | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._shutdown = False

    def _cond(self) -> asyncio.Condition:
        if self._waiters is None:
            self._waiters = asyncio.Condition()
        return self._waiters

    def __len__(self) -> int:
        return len(self._queue)

    def busy(self, horizon: float | None = None) -> bool:
        """Anything queued, being processed, or waiting on a timer (only timers due within
        ``horizon`` seconds count when it is given: a retry in ten minutes is not work now)."""
        if self._queue or self._processing:
            return True
        if horizon is None:
            return bool(self._timers)
        limit = asyncio.get_running_loop().time() + horizon
        return any(t.when() <= limit for t in self._timers.values())

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._notify()

    def _notify(self) -> None:
        cond = self._cond()

        async def wake() -> None:
            async with cond:
                cond.notify()

        asyncio.get_running_loop().create_task(wake())

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        old = self._timers.pop(key, None)
        when = loop.time() + delay
        if old is not None and old.when() <= when:
            self._timers[key] = old
            return
        if old is not None:
            old.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: str) -> None:
        """Re-queue after ``base * 2^failures`` (capped), counting a failure."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(self.base_delay * (2**n), self.max_delay))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str | None:
        """The next key, or None once shut down and drained."""
        cond = self._cond()
        async with cond:
            while not self._queue and not self._shutdown:
                await cond.wait()
            if not self._queue:
                return None
            key = self._queue.popleft()
            self._processing.add(key)
            self._dirty.discard(key)
            return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._notify()

    def shutdown(self) -> None:
        self._shutdown = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        cond = self._cond()

        async def wake_all() -> None:
            async with cond:
                cond.notify_all()

        asyncio.get_running_loop().create_task(wake_all())

"""A bounded-frequency runner: how a data-plane agent turns a stream of changes into syncs.

Like client-go's ``BoundedFrequencyRunner`` (what kube-proxy syncs its rules with): ``run()`` asks
for a sync; syncs happen no more often than ``min_interval`` (changes arriving meanwhile are
coalesced into the next one), at least every ``max_interval`` (the periodic resync that repairs
drift), and a failed sync is retried after ``retry_interval``.  The sync function gets whether this
run is periodic, so it can choose a full sync.  The clock and the sleep are injected for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("kubewire.runner")

SyncFn = Callable[[bool], Awaitable[None]]


class BoundedFrequencyRunner:
    def __init__(
        self,
        name: str,
        sync: SyncFn,
        min_interval: float,
        max_interval: float,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval < 0 or max_interval <= 0 or min_interval > max_interval:
            raise ValueError(f"{name}: need 0 <= min_interval <= max_interval, max_interval > 0")
        self.name = name
        self.sync = sync
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.retry_interval = retry_interval
        self.clock = clock
        self._wanted = asyncio.Event()
        self._last_run = float("-inf")
        self._retry_at: float | None = None
        self.runs = 0
        self.failures = 0

    def run(self) -> None:
        """Ask for a sync as soon as the minimum interval allows."""
        self._wanted.set()

    def _next_due(self) -> float:
        periodic = self._last_run + self.max_interval
        return min(periodic, self._retry_at) if self._retry_at is not None else periodic

    async def loop(self) -> None:
        """Sync forever (until cancelled); the first sync happens at once."""
        self._wanted.set()
        while True:
            now = self.clock()
            timeout = max(0.0, self._next_due() - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), timeout)
            requested = self._wanted.is_set()
            # Hold back until min_interval has passed since the last sync; requests meanwhile merge.
            wait = self._last_run + self.min_interval - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wanted.clear()
            periodic = not requested and self._retry_at is None
            self._last_run = self.clock()
            self._retry_at = None
            try:
                await self.sync(periodic)
                self.runs += 1
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a failed sync must never end the loop
                self.failures += 1
                self._retry_at = self.clock() + self.retry_interval
                log.warning("%s: sync failed (%s); retrying in %.1fs", self.name, e, self.retry_interval)

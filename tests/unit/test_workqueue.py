"""The work queue: de-duplication, no concurrent processing of one key, backoff."""

from __future__ import annotations

import asyncio

from kubewire.store.workqueue import WorkQueue


async def test_duplicates_collapse_and_order_is_kept() -> None:
    q = WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        q.add(key)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_key_added_while_processing_returns_after_done() -> None:
    q = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")
    assert len(q) == 0  # not handed to a second worker while the first holds it
    assert key is not None
    q.done(key)
    assert await asyncio.wait_for(q.get(), 1) == "a"


async def test_rate_limited_backoff_grows_and_forget_resets() -> None:
    q = WorkQueue(base_delay=0.01)
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    assert q.failures("a") == 2
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.forget("a")
    assert q.failures("a") == 0


async def test_shutdown_releases_waiters() -> None:
    q = WorkQueue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    assert await asyncio.wait_for(waiter, 1) is None

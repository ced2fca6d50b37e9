"""The sync loops' pacing: a sync when marked dirty or each period, never closer than the
minimum period, none once stopped."""
from __future__ import annotations

import asyncio
import time

from pyk8s.client.syncloop import SyncPacer, wait_any


def test_pacer_dirty_period_minimum_and_stop() -> None:
    async def run() -> None:
        dirty, stop = asyncio.Event(), asyncio.Event()
        pacer = SyncPacer(dirty, period=0.3, min_period=0.1)
        dirty.set()
        assert await pacer.next(stop) and not dirty.is_set()   # dirty: a sync
        dirty.set()
        t1 = time.monotonic()
        assert await pacer.next(stop)
        assert time.monotonic() - t1 >= 0.09            # but not before the minimum period
        t2 = time.monotonic()
        assert await pacer.next(stop)
        assert time.monotonic() - t2 >= 0.29            # nothing changed: the period
        asyncio.get_running_loop().call_later(0.05, stop.set)
        assert not await pacer.next(stop)

    asyncio.run(run())


def test_wait_any_returns_on_the_first_event_or_the_timeout() -> None:
    async def run() -> None:
        a, b = asyncio.Event(), asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, b.set)
        t0 = time.monotonic()
        await wait_any(a, b, timeout=5)
        assert time.monotonic() - t0 < 1 and b.is_set()
        await wait_any(a, timeout=0.05)
        assert not a.is_set()

    asyncio.run(run())

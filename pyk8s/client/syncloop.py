"""The wait of a component's sync loop (the proxy, network policy, the pod network
overlay): until something changed, or it is time for a periodic sync, or the component
stops — and never two syncs closer than a minimum period (upstream's BoundedFrequencyRunner
in kube-proxy)."""
from __future__ import annotations

import asyncio
import time


async def wait_any(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Until one of `events` is set, or `timeout` seconds."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class SyncPacer:
    """`await pacer.next(stop)` returns False once `stop` is set, else True when a sync is
    due: `dirty` was set (and is cleared now) or `period` passed, at least `min_period`
    after the previous sync."""

    def __init__(self, dirty: asyncio.Event, period: float, min_period: float = 0.0) -> None:
        self.dirty, self.period, self.min_period = dirty, period, min_period
        self._last = 0.0

    async def next(self, stop: asyncio.Event) -> bool:
        await wait_any(self.dirty, stop, timeout=self.period)
        if stop.is_set():
            return False
        wait = self.min_period - (time.monotonic() - self._last)
        if wait > 0:
            await asyncio.sleep(wait)
        self.dirty.clear()
        self._last = time.monotonic()
        return True

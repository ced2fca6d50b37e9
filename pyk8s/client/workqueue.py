"""Work queues and rate limiters, after client-go's `util/workqueue` and `util/flowcontrol`.

- `WorkQueue` — the rate-limiting queue every controller feeds from its event handlers:
  deduplicating (a key waiting once is queued once), never handing one key to two workers
  at once (a key added while it is processed is handed out again after `done`), delayed
  adds (`add_after`, the earliest deadline wins), and `add_rate_limited` through a
  `RateLimiter`.
- `default_controller_rate_limiter()` — upstream's `DefaultControllerRateLimiter`: the
  larger of a per-item exponential backoff (5 ms doubling to 1000 s) and an overall token
  bucket (10 qps, burst 100) shared by every item.
- `TokenBucket` — `rate.Limiter`-style reservations; the REST client throttles its
  requests (QPS / burst) with one.
- `run_workers(queue, sync, n)` — the standard `processNextWorkItem` loop: a key whose
  `sync` raises is re-queued rate-limited, a key that succeeds is forgotten.

Everything here runs on one asyncio loop and is not thread-safe.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Awaitable, Callable, Generic, Hashable, Protocol, TypeVar

log = logging.getLogger("pyk8s.client.workqueue")

K = TypeVar("K", bound=Hashable)
Clock = Callable[[], float]


class ShutDown(Exception):
    """The queue was shut down."""


# -- rate limiters ------------------------------------------------------------------------------
class TokenBucket:
    """A token bucket of `qps` tokens per second holding at most `burst` (golang.org/x/time/
    rate.Limiter). `qps <= 0` means unlimited."""

    def __init__(self, qps: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.qps = float(qps)
        self.burst = max(1, int(burst))
        self.clock = clock
        self._tokens = float(self.burst)
        self._last = clock()

    @property
    def unlimited(self) -> bool:
        return self.qps <= 0

    def _advance(self) -> None:
        now = self.clock()
        if now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now

    def reserve(self) -> float:
        """Take a token now, possibly on credit: the seconds until it is really available."""
        if self.unlimited:
            return 0.0
        self._advance()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def try_accept(self) -> bool:
        """Take a token if one is available now (flowcontrol's `TryAccept`)."""
        if self.unlimited:
            return True
        self._advance()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def acquire(self) -> None:
        """Wait for a token (flowcontrol's `Wait`)."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


class RateLimiter(Protocol[K]):
    """How long an item waits before it is queued again (client-go's `TypedRateLimiter`)."""

    def when(self, item: K) -> float: ...

    def forget(self, item: K) -> None: ...

    def num_requeues(self, item: K) -> int: ...


class ItemExponentialFailureRateLimiter(Generic[K]):
    """`base * 2**failures`, capped at `max_delay`, per item until `forget`."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[K, int] = {}

    def when(self, item: K) -> float:
        n = self._failures.get(item, 0)
        self._failures[item] = n + 1
        if n > 62:  # 2**n would overflow upstream's int64; the cap applies long before
            return self.max_delay
        return min(self.base_delay * (2 ** n), self.max_delay)

    def forget(self, item: K) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: K) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter(Generic[K]):
    """One token bucket for all items: a burst of re-queues is spread out at `qps`."""

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock = time.monotonic
                 ) -> None:
        self.bucket = TokenBucket(qps, burst, clock)

    def when(self, item: K) -> float:
        return self.bucket.reserve()

    def forget(self, item: K) -> None:
        pass

    def num_requeues(self, item: K) -> int:
        return 0


class MaxOfRateLimiter(Generic[K]):
    """The longest wait any of `limiters` asks for."""

    def __init__(self, *limiters: RateLimiter[K]) -> None:
        self.limiters = limiters

    def when(self, item: K) -> float:
        return max(lim.when(item) for lim in self.limiters)

    def forget(self, item: K) -> None:
        for lim in self.limiters:
            lim.forget(item)

    def num_requeues(self, item: K) -> int:
        return max(lim.num_requeues(item) for lim in self.limiters)


def default_controller_rate_limiter(clock: Clock = time.monotonic) -> MaxOfRateLimiter[K]:
    """Upstream's `DefaultControllerRateLimiter`: per-item 5 ms → 1000 s exponential
    backoff, and an overall bucket of 10 qps with a burst of 100."""
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0),
                            BucketRateLimiter(10.0, 100, clock))


# -- the queue ----------------------------------------------------------------------------------
class WorkQueue(Generic[K]):
    """Deduplicating, delaying, rate-limited queue of keys (client-go's
    `TypedRateLimitingInterface`).

    Usage by a worker: `key = await q.get()`, then `sync(key)`, then `q.forget(key)` on
    success or `q.add_rate_limited(key)` on failure, and always `q.done(key)`."""

    def __init__(self, name: str = "", rate_limiter: RateLimiter[K] | None = None) -> None:
        self.name = name
        self.rate_limiter: RateLimiter[K] = rate_limiter or default_controller_rate_limiter()
        self._queue: collections.deque[K] = collections.deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiting: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shutdown = False

    def __len__(self) -> int:
        """Keys ready to be handed out (not those processing or waiting for a delay)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutdown

    def processing(self) -> int:
        return len(self._processing)

    def waiting(self) -> int:
        """Keys waiting for their `add_after` delay."""
        return len(self._waiting)

    def add(self, key: K) -> None:
        """Queue `key` unless it is already waiting."""
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # handed out again by done()
        self._queue.append(key)
        self._wake()

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` in `delay` seconds; a key already waiting keeps the earlier deadline."""
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        prev = self._waiting.get(key)
        if prev is not None:
            if prev[0] <= deadline:
                return
            prev[1].cancel()

        def fire() -> None:
            self._waiting.pop(key, None)
            self.add(key)
        self._waiting[key] = (deadline, loop.call_at(deadline, fire))

    def add_rate_limited(self, key: K) -> None:
        """Queue `key` when the rate limiter says it may go again."""
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        """Done retrying `key`: reset its backoff."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.num_requeues(key)

    async def get(self) -> K:
        """The next key; the caller must call `done(key)` when finished with it.
        Raises `ShutDown` once the queue is shut down."""
        while not self._queue:
            if self._shutdown:
                raise ShutDown(self.name)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut in self._waiters:
                    self._waiters.remove(fut)
                elif self._queue:
                    self._wake()  # pass the wake-up we were given on
                raise
        if self._shutdown:
            raise ShutDown(self.name)
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._shutdown:
            self._queue.append(key)
            self._wake()

    def shutdown(self) -> None:
        """Stop handing out keys; `get` raises `ShutDown` in every waiting worker."""
        self._shutdown = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                if not self._shutdown:
                    return


# -- workers ------------------------------------------------------------------------------------
async def process_items(queue: WorkQueue[K], sync: Callable[[K], Awaitable[object]], *,
                        name: str = "") -> None:
    """One worker: take keys from `queue` and `sync` them until the queue shuts down.
    A failing key is re-queued with `add_rate_limited`; a succeeding one is forgotten."""
    label = name or queue.name
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        try:
            await sync(key)
        except asyncio.CancelledError:
            queue.done(key)
            raise
        except Exception as e:
            log.info("%s: error syncing %r (retry %d): %s", label, key,
                     queue.num_requeues(key) + 1, e or type(e).__name__,
                     exc_info=log.isEnabledFor(logging.DEBUG))
            queue.add_rate_limited(key)
        else:
            queue.forget(key)
        queue.done(key)


async def run_workers(queue: WorkQueue[K], sync: Callable[[K], Awaitable[object]],
                      workers: int, *, name: str = "") -> None:
    """`workers` concurrent `process_items` loops; returns when the queue shuts down, and
    shuts it down when cancelled."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(process_items(queue, sync, name=name),
                              name=f"{name or queue.name}-worker-{i}") for i in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        queue.shutdown()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["WorkQueue", "ShutDown", "RateLimiter", "TokenBucket",
           "ItemExponentialFailureRateLimiter", "BucketRateLimiter", "MaxOfRateLimiter",
           "default_controller_rate_limiter", "process_items", "run_workers"]

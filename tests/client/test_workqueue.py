"""The work queue and rate limiters (pure parts, no server)."""
from __future__ import annotations

import asyncio

import pytest

from pyk8s.client.workqueue import (BucketRateLimiter, ItemExponentialFailureRateLimiter,
                                    ShutDown, TokenBucket, WorkQueue,
                                    default_controller_rate_limiter, run_workers)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_item_exponential_backoff_5ms_to_1000s() -> None:
    rl: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter()
    delays = [rl.when("a") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1000.0 and max(delays) == 1000.0
    assert rl.num_requeues("a") == 20 and rl.when("b") == 0.005
    rl.forget("a")
    assert rl.num_requeues("a") == 0 and rl.when("a") == 0.005
    for _ in range(200):  # no overflow far beyond the cap
        assert rl.when("c") <= 1000.0


def test_token_bucket_burst_then_qps() -> None:
    clock = Clock()
    tb = TokenBucket(10, 3, clock)
    assert [tb.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert tb.reserve() == pytest.approx(0.1)
    assert tb.reserve() == pytest.approx(0.2)  # reservations queue up
    clock.t += 1.0
    assert tb.try_accept()
    unlimited = TokenBucket(0, 1, clock)
    assert all(unlimited.reserve() == 0.0 for _ in range(1000))


def test_default_controller_rate_limiter_is_max_of_both() -> None:
    clock = Clock()
    rl = default_controller_rate_limiter(clock)
    # Burst of 100 items: per-item backoff wins (5 ms)…
    assert [rl.when(i) for i in range(100)] == [0.005] * 100
    # …then the overall bucket (10 qps) spreads the rest out.
    assert rl.when(100) == pytest.approx(0.1)
    assert rl.when(101) == pytest.approx(0.2)
    b: BucketRateLimiter[str] = BucketRateLimiter(10, 100, clock)
    assert b.num_requeues("x") == 0


async def test_dedup_and_processing_semantics() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    k = await q.get()
    assert k == "a"
    q.add("a")  # added while processing: not handed to another worker…
    assert len(q) == 1 and await q.get() == "b"
    assert len(q) == 0
    q.done("a")  # …but handed out again after done
    assert len(q) == 1 and await q.get() == "a"
    q.done("a")
    q.done("b")
    assert len(q) == 0


async def test_add_after_keeps_earliest_deadline() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add_after("a", 10.0)
    q.add_after("a", 0.02)
    q.add_after("a", 5.0)
    assert q.waiting() == 1
    got = await asyncio.wait_for(q.get(), 1.0)
    assert got == "a" and q.waiting() == 0


async def test_add_rate_limited_and_forget() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    assert q.num_requeues("a") == 2
    assert await asyncio.wait_for(q.get(), 1.0) == "a"
    q.forget("a")
    assert q.num_requeues("a") == 0
    q.done("a")


async def test_shutdown_wakes_all_getters() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.add_after("late", 10.0)
    q.shutdown()
    results = await asyncio.gather(*getters, return_exceptions=True)
    assert all(isinstance(r, ShutDown) for r in results)
    q.add("x")
    assert len(q) == 0


async def test_run_workers_requeues_failures_and_forgets_successes() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    calls: list[str] = []
    done = asyncio.Event()

    async def sync(key: str) -> None:
        calls.append(key)
        if key == "bad" and calls.count("bad") < 3:
            raise RuntimeError("boom")
        if calls.count("bad") >= 3 and "good" in calls:
            done.set()

    q.add("bad")
    q.add("good")
    task = asyncio.create_task(run_workers(q, sync, 2, name="t"))
    await asyncio.wait_for(done.wait(), 2.0)
    assert calls.count("bad") == 3 and calls.count("good") == 1
    assert q.num_requeues("bad") == 0  # forgotten after success
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert q.shutting_down

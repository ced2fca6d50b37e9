"""The scheduling queue: activeQ (a heap by priority, then arrival), backoffQ (pods waiting
out their backoff: 1 s doubling to 10 s) and unschedulablePods (moved back on cluster
events that may make them schedulable, or after 5 minutes), as upstream's
PriorityQueue."""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Callable

from pyk8s.scheduler.framework import PodInfo

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
UNSCHEDULABLE_MAX_STAY = 300.0


class SchedulingQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 max_unschedulable_stay: float = UNSCHEDULABLE_MAX_STAY) -> None:
        self.clock = clock
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_stay = max_unschedulable_stay
        self._seq = itertools.count()
        self.active: dict[str, PodInfo] = {}
        self._active_heap: list[tuple[int, float, int, str]] = []
        self._active_entry: dict[str, int] = {}
        self.backoff: dict[str, PodInfo] = {}
        self._backoff_heap: list[tuple[float, int, str]] = []
        self.unschedulable: dict[str, PodInfo] = {}
        self._unsched_since: dict[str, float] = {}
        self.in_flight: dict[str, PodInfo] = {}
        self.nominated: dict[str, tuple[str, PodInfo]] = {}  # pod key → (node, pod)
        self._by_node: dict[str, list[PodInfo]] | None = None
        self.scheduling_cycle = 0
        self.move_request_cycle = -1
        self._wake = asyncio.Event()
        self.closed = False

    def __len__(self) -> int:
        return len(self.active) + len(self.backoff) + len(self.unschedulable)

    # -- internal -------------------------------------------------------------------------
    def _push_active(self, p: PodInfo) -> None:
        seq = next(self._seq)
        self.active[p.key] = p
        self._active_entry[p.key] = seq
        heapq.heappush(self._active_heap, (-p.priority, p.timestamp, seq, p.key))
        self._wake.set()

    def _push_backoff(self, p: PodInfo) -> None:
        seq = next(self._seq)
        self.backoff[p.key] = p
        self._active_entry[p.key] = seq
        heapq.heappush(self._backoff_heap, (self._backoff_expiry(p), seq, p.key))

    def _backoff_expiry(self, p: PodInfo) -> float:
        d = self.initial_backoff * (2 ** max(0, p.attempts - 1)) if p.attempts else 0.0
        return p.timestamp + min(d, self.max_backoff)

    def _remove_everywhere(self, key: str) -> PodInfo | None:
        p = self.active.pop(key, None) or self.backoff.pop(key, None) or \
            self.unschedulable.pop(key, None)
        self._unsched_since.pop(key, None)
        self._active_entry.pop(key, None)
        return p

    # -- events from the informer ---------------------------------------------------------
    def add(self, p: PodInfo) -> None:
        """A new pending pod."""
        self._remove_everywhere(p.key)
        if p.key in self.in_flight:
            self.in_flight[p.key] = p
            return
        p.timestamp = self.clock()
        if not p.initial_attempt:
            p.initial_attempt = p.timestamp
        self._push_active(p)

    def update(self, p: PodInfo) -> None:
        """A pending pod changed: a pod waiting as unschedulable is tried again."""
        old = self.active.get(p.key) or self.backoff.get(p.key) or self.unschedulable.get(p.key)
        if old is None:
            if p.key in self.in_flight:
                return
            self.add(p)
            return
        p.attempts, p.initial_attempt = old.attempts, old.initial_attempt
        p.timestamp = old.timestamp
        if p.key in self.active:
            self.active[p.key] = p
            # the heap entry keeps its place; the dict holds the newest object
            return
        self._remove_everywhere(p.key)
        if self.clock() < self._backoff_expiry(p):
            self._push_backoff(p)
        else:
            self._push_active(p)

    def delete(self, key: str) -> None:
        """The pod is gone, or bound."""
        self._remove_everywhere(key)
        self.in_flight.pop(key, None)
        if self.nominated.pop(key, None) is not None:
            self._by_node = None

    # -- nominated pods (preemptors waiting for their victims to go) ----------------------
    def nominate(self, p: PodInfo, node: str) -> None:
        self.nominated[p.key] = (node, p)
        self._by_node = None

    def clear_nomination(self, key: str) -> None:
        if self.nominated.pop(key, None) is not None:
            self._by_node = None

    def nominated_by_node(self) -> dict[str, list[PodInfo]]:
        if not self.nominated:
            return {}
        if self._by_node is None:
            d: dict[str, list[PodInfo]] = {}
            for node, p in self.nominated.values():
                d.setdefault(node, []).append(p)
            self._by_node = d
        return self._by_node

    def move_all_to_active_or_backoff(self, event: str = "") -> None:
        """A cluster event (node added or changed, pod deleted…) may make unschedulable
        pods fit: move them all (upstream filters by each plugin's events; moving all is
        the conservative superset)."""
        self.move_request_cycle = self.scheduling_cycle
        if not self.unschedulable:
            return
        now = self.clock()
        for key, p in list(self.unschedulable.items()):
            del self.unschedulable[key]
            self._unsched_since.pop(key, None)
            if now < self._backoff_expiry(p):
                self._push_backoff(p)
            else:
                self._push_active(p)

    # -- the scheduler's side -------------------------------------------------------------
    def flush(self) -> None:
        """Backoff pods whose time is up → active; unschedulable pods waiting too long →
        active or backoff."""
        now = self.clock()
        h = self._backoff_heap
        while h and h[0][0] <= now:
            _, seq, key = heapq.heappop(h)
            if self._active_entry.get(key) != seq or key not in self.backoff:
                continue
            p = self.backoff.pop(key)
            self._push_active(p)
        if self.unschedulable:
            stale = [k for k, t in self._unsched_since.items() if now - t >= self.max_stay]
            for k in stale:
                p = self.unschedulable.pop(k)
                del self._unsched_since[k]
                self._push_active(p)

    def next_backoff_expiry(self) -> float | None:
        return self._backoff_heap[0][0] if self._backoff_heap else None

    def pop_nowait(self) -> PodInfo | None:
        h = self._active_heap
        while h:
            _, _, seq, key = heapq.heappop(h)
            if self._active_entry.get(key) != seq or key not in self.active:
                continue
            p = self.active.pop(key)
            del self._active_entry[key]
            p.attempts += 1
            self.scheduling_cycle += 1
            self.in_flight[key] = p
            return p
        return None

    async def pop(self) -> PodInfo:
        while True:
            self.flush()
            p = self.pop_nowait()
            if p is not None:
                return p
            if self.closed:
                raise asyncio.CancelledError
            self._wake.clear()
            nxt = self.next_backoff_expiry()
            timeout = 1.0 if nxt is None else max(0.0, min(1.0, nxt - self.clock()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def done(self, key: str) -> None:
        """The pod's cycle ended (bound or assumed and binding)."""
        self.in_flight.pop(key, None)

    def add_unschedulable(self, p: PodInfo, cycle: int) -> None:
        """A pod that failed: to unschedulablePods, or to backoffQ if a move request came
        while it was being scheduled (the event may have made it fit)."""
        newest = self.in_flight.pop(p.key, None)
        if newest is None:
            return  # deleted while in flight
        newest.attempts, newest.initial_attempt = p.attempts, p.initial_attempt
        newest.unschedulable_plugins = p.unschedulable_plugins
        p = newest
        if p.key in self.active or p.key in self.backoff or p.key in self.unschedulable:
            return
        p.timestamp = self.clock()
        if self.move_request_cycle >= cycle:
            self._push_backoff(p)
        else:
            self.unschedulable[p.key] = p
            self._unsched_since[p.key] = p.timestamp

    def add_backoff(self, p: PodInfo) -> None:
        """A pod whose bind failed or that hit an error: retry after its backoff."""
        newest = self.in_flight.pop(p.key, None)
        if newest is None:
            return  # deleted while in flight
        newest.attempts, newest.initial_attempt = p.attempts, p.initial_attempt
        p = newest
        if p.key in self.active or p.key in self.backoff or p.key in self.unschedulable:
            return
        p.timestamp = self.clock()
        self._push_backoff(p)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

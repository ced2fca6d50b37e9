"""In-memory storage, plus the in-process watch fan-out shared with the SQLite backend.

`MemoryStorage` keeps the current state in a dict (with a sorted key list for prefix
listing) and a bounded event history for watch replay. Nothing survives a restart; it is
for tests and `--storage memory`.

`WatchHub` / `WatchStream` implement watch for any backend that (a) publishes its events
on the event loop in revision order right after they become durable and (b) can fetch
history (events with revision > R under a prefix, oldest first). The stream subscribes to
live events *before* replaying history and drops live events it has already replayed, so
there is no gap and no duplicate between the two.
"""
from __future__ import annotations

import asyncio
import bisect
import collections
import inspect
from typing import Awaitable, Callable

from .interface import (Event, KeyExists, KeyNotFound, KeyValue, RevisionCompacted,
                        RevisionConflict, Storage, StorageError, StorageUnavailable,
                        UpdateFn)

# Events a watcher may have queued before it is cut off as too slow.
DEFAULT_WATCH_QUEUE = 10_000
# Events fetched per history read while a watch replays.
HISTORY_CHUNK = 1_000

# fetch(prefix, after_revision, limit) -> up to `limit` events under prefix, revision > after,
# oldest first. Fewer than `limit` means the history is exhausted (for now).
HistoryFetch = Callable[[str, int, int], Awaitable[list[Event]]]


class WatcherTooSlow(StorageError):
    """A watcher's queue overflowed; its stream ends and the caller must re-list."""

    def __init__(self, prefix: str) -> None:
        super().__init__(prefix, f"watcher on {prefix!r} too slow: event queue overflowed")


class _Subscriber:
    """One watcher's bounded queue of live events (loop thread only)."""

    __slots__ = ("prefix", "maxlen", "events", "error", "closed", "_waiter")

    def __init__(self, prefix: str, maxlen: int) -> None:
        self.prefix = prefix
        self.maxlen = maxlen
        self.events: collections.deque[Event] = collections.deque()
        self.error: StorageError | None = None
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def push(self, event: Event) -> bool:
        """Queue an event; False if the queue overflowed (the subscriber is then failed)."""
        if len(self.events) >= self.maxlen:
            self.fail(WatcherTooSlow(self.prefix))
            return False
        self.events.append(event)
        self._wake()
        return True

    def fail(self, error: StorageError | None) -> None:
        """End the subscription: with `error` raised to the reader, or cleanly if None."""
        self.events.clear()
        self.error = error
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> Event | None:
        """The next live event; None once closed cleanly; raises the failure error."""
        while not self.events:
            if self.error is not None:
                raise self.error
            if self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.events.popleft()


class WatchHub:
    """Fans events out to subscribers by key prefix. Loop thread only."""

    def __init__(self, queue_size: int = DEFAULT_WATCH_QUEUE) -> None:
        self.queue_size = queue_size
        self._subs: set[_Subscriber] = set()

    def subscribe(self, prefix: str) -> _Subscriber:
        sub = _Subscriber(prefix, self.queue_size)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        self._subs.discard(sub)

    def publish(self, events: list[Event]) -> None:
        """Deliver `events` (in revision order) to every subscriber whose prefix matches."""
        if not self._subs or not events:
            return
        for sub in list(self._subs):
            for ev in events:
                if ev.key.startswith(sub.prefix) and not sub.push(ev):
                    self._subs.discard(sub)
                    break

    def close(self) -> None:
        """End every stream cleanly (storage closing)."""
        for sub in self._subs:
            sub.fail(None)
        self._subs.clear()

    def __len__(self) -> int:
        return len(self._subs)


class WatchStream:
    """Async iterator over history (revision > from_revision) then live events.

    The live subscription is registered at construction (not at first iteration), so
    nothing published after `watch()` returned is missed even if iteration starts later.
    Unsubscribes on `aclose()`, on error, on storage close, or when garbage-collected.
    """

    def __init__(self, hub: WatchHub, prefix: str, from_revision: int, *,
                 fetch: HistoryFetch, compacted: Callable[[], int]) -> None:
        self._hub = hub
        self._prefix = prefix
        self._sub = hub.subscribe(prefix)
        self._fetch = fetch
        self._compacted = compacted
        self._replaying = True
        self._last = from_revision
        self._requested = from_revision
        self._buffer: collections.deque[Event] = collections.deque()
        self._exhausted = False
        self._done = False

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        try:
            if self._replaying:
                ev = await self._next_replayed()
                if ev is not None:
                    return ev
            while True:
                ev = await self._sub.next()
                if ev is None:
                    raise StopAsyncIteration
                if ev.revision > self._last:
                    self._last = ev.revision
                    return ev
        except (StorageError, StopAsyncIteration):
            self._close()
            raise

    async def _next_replayed(self) -> Event | None:
        """The next history event, or None once history is exhausted."""
        while not self._buffer:
            if self._exhausted:
                self._replaying = False
                return None
            after = self._last
            self._check_compacted(after)
            events = await self._fetch(self._prefix, after, HISTORY_CHUNK)
            # A compaction may have raced with the read: rows above `after` could be gone.
            self._check_compacted(after)
            self._buffer.extend(events)
            self._exhausted = len(events) < HISTORY_CHUNK
        ev = self._buffer.popleft()
        self._last = ev.revision
        return ev

    def _check_compacted(self, after: int) -> None:
        compacted = self._compacted()
        if after < compacted:
            raise RevisionCompacted(self._prefix, self._requested, compacted)

    def _close(self) -> None:
        if not self._done:
            self._done = True
            self._hub.unsubscribe(self._sub)
            self._buffer.clear()

    async def aclose(self) -> None:
        """Stop watching."""
        self._close()

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:  # interpreter shutdown
            pass


async def call_update_fn(fn: UpdateFn, current: KeyValue) -> bytes | None:
    """Call a guaranteed_update fn on the loop, awaiting it if it returns an awaitable."""
    result = fn(current)
    if inspect.isawaitable(result):
        result = await result
    return result  # type: ignore[return-value]


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound).

    Python's str order and SQLite's BINARY collation on UTF-8 both follow code points.
    """
    for i in range(len(prefix) - 1, -1, -1):
        c = ord(prefix[i])
        if c < 0x10FFFF:
            return prefix[:i] + chr(c + 1)
    return None


class MemoryStorage(Storage):
    """Dict-backed storage with a bounded history (older events are auto-compacted)."""

    def __init__(self, history_size: int = 100_000,
                 watch_queue_size: int = DEFAULT_WATCH_QUEUE) -> None:
        self._kv: dict[str, KeyValue] = {}
        self._keys: list[str] = []  # sorted
        self._rev = 0
        self._compacted = 0
        self._history: list[Event] = []  # revision order, all revisions > _compacted
        self._history_size = history_size
        self._hub = WatchHub(watch_queue_size)
        self._closed = False

    # -- writes ---------------------------------------------------------------------------
    def _record(self, ev: Event) -> None:
        self._rev = ev.revision
        self._history.append(ev)
        if len(self._history) > self._history_size + self._history_size // 4 + 1:
            drop = len(self._history) - self._history_size
            self._compacted = max(self._compacted, self._history[drop - 1].revision)
            del self._history[:drop]
        self._hub.publish([ev])

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailable("", "storage closed")

    @staticmethod
    def _check_value(key: str, value: object) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"{key}: value must be bytes, not {type(value).__name__}")

    async def create(self, key: str, value: bytes) -> KeyValue:
        self._check_open()
        self._check_value(key, value)
        if key in self._kv:
            raise KeyExists(key)
        rev = self._rev + 1
        kv = KeyValue(key, value, rev, rev)
        self._kv[key] = kv
        bisect.insort(self._keys, key)
        self._record(Event("PUT", key, value, rev, None, rev))
        return kv

    async def guaranteed_update(self, key: str, fn: UpdateFn,
                                expected_revision: int | None = None) -> KeyValue:
        while True:
            self._check_open()
            cur = self._kv.get(key)
            if cur is None:
                raise KeyNotFound(key)
            if expected_revision is not None and cur.mod_revision != expected_revision:
                raise RevisionConflict(key, f"expected revision {expected_revision}, "
                                            f"current {cur.mod_revision}")
            new = await call_update_fn(fn, cur)
            if new is None:
                return cur
            self._check_value(key, new)
            if self._kv.get(key) is not cur:  # changed while fn awaited
                if expected_revision is not None:
                    if key not in self._kv:
                        raise KeyNotFound(key)
                    raise RevisionConflict(key, "changed during update")
                continue
            rev = self._rev + 1
            kv = KeyValue(key, new, rev, cur.create_revision)
            self._kv[key] = kv
            self._record(Event("PUT", key, new, rev, cur.value, cur.create_revision))
            return kv

    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        self._check_open()
        cur = self._kv.get(key)
        if cur is None:
            raise KeyNotFound(key)
        if expected_revision is not None and cur.mod_revision != expected_revision:
            raise RevisionConflict(key, f"expected revision {expected_revision}, "
                                        f"current {cur.mod_revision}")
        del self._kv[key]
        del self._keys[bisect.bisect_left(self._keys, key)]
        rev = self._rev + 1
        self._record(Event("DELETE", key, cur.value, rev, cur.value, cur.create_revision))
        return KeyValue(key, cur.value, rev, cur.create_revision)

    # -- reads ----------------------------------------------------------------------------
    async def get(self, key: str) -> KeyValue:
        self._check_open()
        kv = self._kv.get(key)
        if kv is None:
            raise KeyNotFound(key)
        return kv

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        self._check_open()
        lo = bisect.bisect_left(self._keys, prefix)
        end = prefix_end(prefix)
        hi = len(self._keys) if end is None else bisect.bisect_left(self._keys, end, lo)
        return [self._kv[k] for k in self._keys[lo:hi]], self._rev

    async def current_revision(self) -> int:
        return self._rev

    async def compacted_revision(self) -> int:
        return self._compacted

    # -- watch / compaction ---------------------------------------------------------------
    def watch(self, prefix: str, from_revision: int) -> WatchStream:
        """See `Storage.watch`. Live only: `watch(prefix, await current_revision())`."""
        self._check_open()
        return WatchStream(self._hub, prefix, from_revision, fetch=self._fetch_history,
                           compacted=lambda: self._compacted)

    async def _fetch_history(self, prefix: str, after: int, limit: int) -> list[Event]:
        i = bisect.bisect_right(self._history, after, key=lambda e: e.revision)
        out: list[Event] = []
        for j in range(i, len(self._history)):
            ev = self._history[j]
            if ev.key.startswith(prefix):
                out.append(ev)
                if len(out) >= limit:
                    break
        return out

    async def compact(self, revision: int) -> None:
        revision = min(revision, self._rev)
        if revision <= self._compacted:
            return
        i = bisect.bisect_right(self._history, revision, key=lambda e: e.revision)
        del self._history[:i]
        self._compacted = revision

    async def close(self) -> None:
        self._closed = True
        self._hub.close()

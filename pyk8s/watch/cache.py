"""The watch cache: every object in memory, fed by one storage watch, like upstream's cacher.

One storage watch on `/registry/` feeds per-resource `ResourceCache`s (routed by key prefix).
Each keeps the current objects and a sliding window of recent events, so LIST and WATCH are
served from memory: a watch resumes from any resourceVersion inside the window (older ones
get 410 Expired), a list at an exact resourceVersion rolls the window back.
`processed_rev` is the newest storage revision applied; consistent reads wait for it to
reach the storage's current revision.
Keys under `/registry/` that are not API objects (Service allocations under
`/registry/ranges/`, API server leases under `/registry/masterleases/`) must hold JSON
objects too; they land in resource caches of their own that no API list or watch reads.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import orjson

from pyk8s.storage.interface import Event, RevisionCompacted, Storage, UnreadableValues

log = logging.getLogger(__name__)

Obj = dict[str, Any]

ROOT = "/registry/"


def decode(value: bytes, revision: int) -> Obj:
    """Stored bytes → object with `metadata.resourceVersion` set from the revision."""
    obj = orjson.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def resource_prefix(key: str) -> str:
    """`/registry/pods/ns/x` → `/registry/pods/`; `/registry/g.io/things/ns/x` → two levels."""
    parts = key.split("/", 4)
    if len(parts) > 3 and "." in parts[2]:
        return f"/{parts[1]}/{parts[2]}/{parts[3]}/"
    return f"/{parts[1]}/{parts[2]}/"


class TooOld(Exception):
    """The requested resourceVersion is older than the event window."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class TooLarge(Exception):
    """The requested resourceVersion is newer than the cache reached in time."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"Too large resource version: {requested}, current: {current}")
        self.requested = requested
        self.current = current


@dataclass(eq=False)
class CacheEvent:
    type: str  # ADDED | MODIFIED | DELETED
    key: str
    obj: Obj
    prev: Obj | None
    rv: int
    _json: bytes | None = None

    def obj_json(self) -> bytes:
        if self._json is None:
            self._json = orjson.dumps(self.obj)
        return self._json


WatchFilter = Callable[[Obj], bool]


@dataclass(eq=False)
class Watcher:
    """One client watch: a bounded queue of (type, obj, json-or-None) tuples."""

    prefix: str
    matches: WatchFilter
    queue: asyncio.Queue[tuple[str, Obj, CacheEvent | None]]
    closed_reason: str | None = None
    initial_count: int = 0  # how many queued items are the initial state (sendInitialEvents)
    _on_close: Callable[["Watcher"], None] | None = field(default=None, repr=False)

    def offer(self, ev: CacheEvent) -> None:
        if self.closed_reason is not None:
            return
        new_ok = self.matches(ev.obj)
        old_ok = ev.prev is not None and self.matches(ev.prev)
        if ev.type == "ADDED":
            item = ("ADDED", ev.obj, ev) if new_ok else None
        elif ev.type == "DELETED":
            item = ("DELETED", ev.obj, ev) if new_ok or old_ok else None
        elif new_ok and old_ok:
            item = ("MODIFIED", ev.obj, ev)
        elif new_ok:
            item = ("ADDED", ev.obj, ev)
        elif old_ok:
            # The object left the selection: a DELETED carrying the new state, as upstream.
            item = ("DELETED", ev.obj, ev)
        else:
            item = None
        if item is None:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.close("watcher queue overflowed")

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            if self._on_close:
                self._on_close(self)
            # Wake the consumer.
            try:
                self.queue.put_nowait(("CLOSED", {}, None))
            except asyncio.QueueFull:
                pass


class ResourceCache:
    """Objects and recent events of one resource prefix."""

    def __init__(self, prefix: str, window_start: int, window_size: int) -> None:
        self.prefix = prefix
        self.objects: dict[str, Obj] = {}
        self.events: collections.deque[CacheEvent] = collections.deque()
        self.window_size = window_size
        # Every event of this resource with rv > window_start is in `events`.
        self.window_start = window_start
        self.watchers: set[Watcher] = set()
        # The revision of the last event applied: in-server indexes built from `objects`
        # (the RBAC authorizer's) compare it to know when to rebuild.
        self.rev = 0

    def apply(self, ev: CacheEvent) -> None:
        self.rev = ev.rv
        if ev.type == "DELETED":
            self.objects.pop(ev.key, None)
        else:
            self.objects[ev.key] = ev.obj
        self.events.append(ev)
        while len(self.events) > self.window_size:
            self.window_start = self.events.popleft().rv
        for w in list(self.watchers):
            if w.prefix and not ev.key.startswith(w.prefix):
                continue
            w.offer(ev)

    def items(self, prefix: str) -> list[Obj]:
        keys = sorted(k for k in self.objects if k.startswith(prefix))
        return [self.objects[k] for k in keys]

    def items_at(self, prefix: str, rv: int, current: int) -> list[tuple[str, Obj]]:
        """The objects as they were at revision `rv` (rolled back through the window)."""
        if rv < self.window_start:
            raise TooOld(rv, self.window_start)
        state = {k: v for k, v in self.objects.items() if k.startswith(prefix)}
        for ev in reversed(self.events):
            if ev.rv <= rv:
                break
            if not ev.key.startswith(prefix):
                continue
            if ev.type == "ADDED":
                state.pop(ev.key, None)
            elif ev.prev is not None:  # MODIFIED or DELETED → the state before the event
                state[ev.key] = ev.prev
        return sorted(state.items())

    def events_since(self, rv: int) -> Iterator[CacheEvent]:
        if rv < self.window_start:
            raise TooOld(rv, self.window_start)
        # Events are in rv order; skip the old ones from the left.
        for ev in self.events:
            if ev.rv > rv:
                yield ev


class WatchCache:
    """All resources' caches over one storage, kept current by one storage watch."""

    def __init__(self, storage: Storage, window_size: int = 5000) -> None:
        self.storage = storage
        self.window_size = window_size
        self.resources: dict[str, ResourceCache] = {}
        self.processed_rev = 0
        self._start_rev = 0
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self._ready = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self._load()
        self._task = asyncio.create_task(self._run(), name="watch-cache")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self.close_watchers("server shutting down")

    def close_watchers(self, reason: str) -> None:
        for rc in self.resources.values():
            for w in list(rc.watchers):
                w.close(reason)

    async def _load(self) -> None:
        try:
            kvs, rev = await self.storage.list(ROOT)
        except UnreadableValues as e:  # e.g. encrypted with a key this server lacks
            for key, why in e.errors.items():
                log.error("watch cache: skipping %s: %s", key, why)
            kvs, rev = e.readable, e.revision
        self.resources = {}
        self.processed_rev = rev
        self._start_rev = rev
        for kv in kvs:
            try:
                obj = decode(kv.value, kv.mod_revision)
            except orjson.JSONDecodeError as err:
                log.error("watch cache: skipping %s: not a JSON object: %s", kv.key, err)
                continue
            self.resource(resource_prefix(kv.key)).objects[kv.key] = obj
        self._ready.set()

    async def _run(self) -> None:
        while True:
            try:
                async for ev in self.storage.watch_with_progress(ROOT, self.processed_rev):
                    if ev.type == "PROGRESS":  # nothing under ROOT up to ev.revision
                        if ev.revision > self.processed_rev:
                            self.processed_rev = ev.revision
                            await self._notify()
                        continue
                    self._apply(ev)
                    await self._notify()
            except asyncio.CancelledError:
                raise
            except RevisionCompacted:
                log.warning("watch cache fell behind compaction; reloading")
                try:
                    await self._reload()
                except Exception:  # storage unreachable meanwhile (etcd): try again
                    log.exception("watch cache reload failed; retrying")
                    await asyncio.sleep(0.5)
            except Exception:  # storage hiccup: resume from where we were
                log.exception("watch cache storage watch failed; retrying")
                await asyncio.sleep(0.5)

    async def _reload(self) -> None:
        self.close_watchers("watch cache reloaded")
        await self._load()

    def resource(self, prefix: str) -> ResourceCache:
        rc = self.resources.get(prefix)
        if rc is None:
            rc = ResourceCache(prefix, self._start_rev, self.window_size)
            self.resources[prefix] = rc
        return rc

    def _apply(self, sev: Event) -> None:
        rc = self.resource(resource_prefix(sev.key))
        prev = rc.objects.get(sev.key)
        try:
            obj = decode(sev.value, sev.revision)
        except orjson.JSONDecodeError as err:
            log.error("watch cache: skipping the %s of %s at revision %d: not a JSON object: "
                      "%s", sev.type, sev.key, sev.revision, err)
            self.processed_rev = sev.revision
            return
        if sev.type == "DELETE":
            ev = CacheEvent("DELETED", sev.key, obj, prev, sev.revision)
        else:
            ev = CacheEvent("ADDED" if prev is None else "MODIFIED", sev.key, obj, prev,
                            sev.revision)
        rc.apply(ev)
        self.processed_rev = sev.revision

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    # -- reads ------------------------------------------------------------------------------
    async def wait_for(self, rv: int, timeout: float = 3.0) -> None:
        """Wait until every event up to `rv` is applied; TooLarge after `timeout`."""
        if self.processed_rev >= rv:
            return
        try:
            async with asyncio.timeout(timeout):
                async with self._progress:
                    await self._progress.wait_for(lambda: self.processed_rev >= rv)
        except TimeoutError:
            raise TooLarge(rv, self.processed_rev) from None

    async def consistent_rev(self) -> int:
        """Wait for the cache to catch up with storage (a consistent read from cache)."""
        rev = await self.storage.current_revision()
        await self.wait_for(rev)
        return self.processed_rev

    def watch(self, resource_prefix_: str, key_prefix: str, from_rv: int,
              matches: WatchFilter, initial: list[Obj] | None = None,
              queue_size: int = 10000) -> Watcher:
        """Register a watcher for keys under `key_prefix` after revision `from_rv`.

        Replays window events (TooOld if from_rv is before the window), or, when `initial`
        is given, queues those objects as ADDED first. Synchronous: no event can slip in
        between the replay and the registration.
        """
        rc = self.resource(resource_prefix_)
        w = Watcher(prefix=key_prefix, matches=matches,
                    queue=asyncio.Queue(maxsize=queue_size))
        w._on_close = lambda x: rc.watchers.discard(x)
        backlog: list[tuple[str, Obj, CacheEvent | None]] = []
        if initial is not None:
            backlog = [("ADDED", o, None) for o in initial if matches(o)]
            w.initial_count = len(backlog)
        else:
            for ev in rc.events_since(from_rv):
                if key_prefix and not ev.key.startswith(key_prefix):
                    continue
                backlog.append(("PENDING", {}, ev))
        if len(backlog) >= queue_size:
            w.queue = asyncio.Queue(maxsize=len(backlog) + queue_size)
        for item in backlog:
            if item[0] == "PENDING":
                assert item[2] is not None
                w.offer(item[2])
            else:
                w.queue.put_nowait(item)
        rc.watchers.add(w)
        return w

"""Controllers: components that reach the API server only over HTTP (`pyk8s.client`).

This module holds the plumbing they share, after client-go's:

- `WorkQueue` — a deduplicating, rate-limited queue of keys (`util/workqueue`): a key is
  never handed to two workers at once, and a key added while it is processed is handed out
  again after `done`.
- `Reflector` — list, then watch from the list's resourceVersion, forever (`tools/cache`);
  relists on 410 Expired and on errors, and turns what it sees into add/update/delete calls
  on a handler, with a local store of the last object per key.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import random
from typing import Any, Callable, Generic, Hashable, Protocol, TypeVar

from pyk8s.client.rest import Expired, RESTClient

log = logging.getLogger("pyk8s.controllers")

Obj = dict[str, Any]
K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down."""


class WorkQueue(Generic[K]):
    """Deduplicating work queue with per-key exponential backoff."""

    def __init__(self, name: str = "", base_delay: float = 0.005, max_delay: float = 60.0) -> None:
        self.name = name
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: collections.deque[K] = collections.deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shutdown = False

    def __len__(self) -> int:
        return len(self._queue)

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
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self.add(key)
        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def add_rate_limited(self, key: K) -> None:
        """Queue `key` after its backoff (doubling per failure until `forget`)."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(self.base_delay * (2 ** n), self.max_delay))

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        """The next key; the caller must call `done(key)` when finished with it."""
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
        self._shutdown = True
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        self._wake()

    def _wake(self) -> None:
        if self._shutdown:
            while self._waiters:
                fut = self._waiters.popleft()
                if not fut.done():
                    fut.set_result(None)
            return
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return


class EventHandler(Protocol):
    """What a `Reflector` tells about the objects it sees."""

    def on_add(self, obj: Obj) -> None: ...

    def on_update(self, old: Obj, new: Obj) -> None: ...

    def on_delete(self, obj: Obj) -> None: ...


def object_key(obj: Obj) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKey)."""
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{ns}/{md.get('name')}" if ns else str(md.get("name"))


def metadata_only(obj: Obj) -> Obj:
    """A transform keeping apiVersion, kind and metadata (what a metadata informer sees)."""
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": obj.get("metadata") or {}}


class Reflector:
    """Keeps `store` in step with the objects under `path` by list + watch."""

    def __init__(self, client: RESTClient, path: str, handler: EventHandler, *,
                 transform: Callable[[Obj], Obj] | None = None, name: str = "",
                 page_size: int = 500, min_watch_timeout: int = 300) -> None:
        self.client = client
        self.path = path
        self.handler = handler
        self.transform = transform or (lambda o: o)
        self.name = name or path
        self.page_size = page_size
        self.min_watch_timeout = min_watch_timeout
        self.store: dict[str, Obj] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""

    async def run(self) -> None:
        """List and watch until cancelled."""
        backoff = 0.2
        while True:
            try:
                await self._list()
                self.synced.set()
                backoff = 0.2
                while True:
                    await self._watch()
            except Expired:
                log.debug("%s: resourceVersion expired, relisting", self.name)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as e:  # connection refused, server errors: back off, relist
                log.info("%s: list/watch failed (%s); retrying in %.1fs", self.name,
                         e or type(e).__name__, backoff)
                await asyncio.sleep(backoff * (1 + random.random() * 0.2))
                backoff = min(backoff * 2, 30.0)

    async def _list(self) -> None:
        items: list[Obj] = []
        cont = ""
        while True:
            params: dict[str, Any] = {"limit": self.page_size}
            if cont:
                params["continue"] = cont
            page = await self.client.list(self.path, params)
            items.extend(page.get("items") or [])
            md = page.get("metadata") or {}
            cont = md.get("continue") or ""
            if not cont:
                rv = str(md.get("resourceVersion") or "")
                break
        self._replace([self.transform(o) for o in items])
        self.resource_version = rv

    def _replace(self, items: list[Obj]) -> None:
        new = {object_key(o): o for o in items}
        old = self.store
        self.store = new
        for key, obj in old.items():
            if key not in new:
                self.handler.on_delete(obj)
        for key, obj in new.items():
            prev = old.get(key)
            if prev is None:
                self.handler.on_add(obj)
            elif _rv(prev) != _rv(obj):
                self.handler.on_update(prev, obj)

    async def _watch(self) -> None:
        timeout = random.randint(self.min_watch_timeout, 2 * self.min_watch_timeout)
        async for ev in self.client.watch(self.path, self.resource_version,
                                          timeout_seconds=timeout):
            type_, obj = ev.get("type"), ev.get("object") or {}
            rv = _rv(obj)
            if type_ == "BOOKMARK":
                if rv:
                    self.resource_version = rv
                continue
            obj = self.transform(obj)
            key = object_key(obj)
            if type_ in ("ADDED", "MODIFIED"):
                prev = self.store.get(key)
                self.store[key] = obj
                if prev is None:
                    self.handler.on_add(obj)
                else:
                    self.handler.on_update(prev, obj)
            elif type_ == "DELETED":
                self.store.pop(key, None)
                self.handler.on_delete(obj)
            if rv:
                self.resource_version = rv


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


__all__ = ["WorkQueue", "ShutDown", "EventHandler", "Reflector", "object_key", "metadata_only"]

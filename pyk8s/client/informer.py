"""Informers: a local, indexed cache of one resource kept current by list + watch.

After client-go's `tools/cache`:

- `Store` — objects keyed `namespace/name` (`name` when cluster-scoped) with indexes
  (`by_index`). Built-in index functions: by namespace, by owner uid, by controller uid,
  by label `key=value`.
- `SharedInformer` — lists (paginated), then watches from the list's resourceVersion with
  `allowWatchBookmarks`; resumes a watch that ends from the last resourceVersion seen
  (events and bookmarks both advance it); relists on 410 Expired; backs off on errors.
  Calls its event handlers' `on_add(obj)`, `on_update(old, new)` and `on_delete(obj)`
  (always with the last object known, also for deletions a relist discovers); optionally
  re-delivers every object as `on_update(obj, obj)` each `resync_period`. `has_synced()`
  turns true once the first list has been delivered.
- `SharedInformerFactory` — one informer per resource, shared by every controller of a
  process (`factory.informer("", "v1", "pods")`, or `factory.pods()`).

Objects in the store are shared with every handler and must never be mutated: deep-copy
before changing (`copy.deepcopy`). Handlers run synchronously in the informer's task and
must not block: they only enqueue keys.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol

import aiohttp

from pyk8s.api.selectors import LabelSelector
from pyk8s.client.rest import Expired, RESTClient, resource_path

log = logging.getLogger("pyk8s.client.informer")

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]

NAMESPACE_INDEX = "namespace"
OWNER_UID_INDEX = "owner-uid"
CONTROLLER_UID_INDEX = "controller-uid"
LABEL_INDEX = "label"


# -- keys and index functions -------------------------------------------------------------------
def object_key(obj: Obj) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKey)."""
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{ns}/{md.get('name')}" if ns else str(md.get("name"))


def split_key(key: str) -> tuple[str, str]:
    """`(namespace, name)` of a store key (namespace "" for cluster-scoped objects)."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else ("", ns)


def index_by_namespace(obj: Obj) -> list[str]:
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


def index_by_owner_uid(obj: Obj) -> list[str]:
    return [str(r.get("uid")) for r in (obj.get("metadata") or {}).get("ownerReferences") or []
            if r.get("uid")]


def controller_ref(obj: Obj) -> Obj | None:
    """The ownerReference with `controller: true`, if any (metav1.GetControllerOf)."""
    for r in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if r.get("controller") is True:
            return r
    return None


def index_by_controller_uid(obj: Obj) -> list[str]:
    ref = controller_ref(obj)
    return [str(ref["uid"])] if ref and ref.get("uid") else []


def index_by_label(obj: Obj) -> list[str]:
    return [f"{k}={v}" for k, v in ((obj.get("metadata") or {}).get("labels") or {}).items()]


BUILTIN_INDEXERS: dict[str, IndexFunc] = {
    NAMESPACE_INDEX: index_by_namespace,
    OWNER_UID_INDEX: index_by_owner_uid,
    CONTROLLER_UID_INDEX: index_by_controller_uid,
    LABEL_INDEX: index_by_label,
}


def metadata_only(obj: Obj) -> Obj:
    """A transform keeping apiVersion, kind and metadata (what a metadata informer sees)."""
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": obj.get("metadata") or {}}


def resource_version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


# -- the store ----------------------------------------------------------------------------------
class Store:
    """Objects by key, with indexes (client-go's `Indexer` over a `ThreadSafeStore`)."""

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        self._indices: dict[str, dict[str, set[str]]] = {n: {} for n in self._indexers}

    # -- reads ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def get_by_name(self, namespace: str | None, name: str) -> Obj | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> list[Obj]:
        return list(self._items.values())

    def keys(self) -> list[str]:
        return list(self._items)

    def index_keys(self, index: str, value: str) -> list[str]:
        if index not in self._indices:
            raise KeyError(f"index {index!r} does not exist")
        return list(self._indices[index].get(value, ()))

    def by_index(self, index: str, value: str) -> list[Obj]:
        """Objects whose index function yields `value` for `index`."""
        return [self._items[k] for k in self.index_keys(index, value)]

    def index_values(self, index: str) -> list[str]:
        return [v for v, keys in self._indices.get(index, {}).items() if keys]

    def list_namespace(self, namespace: str) -> list[Obj]:
        """Objects in `namespace` (all of them for ""), through the namespace index if any."""
        if not namespace:
            return self.list()
        if NAMESPACE_INDEX in self._indices:
            return self.by_index(NAMESPACE_INDEX, namespace)
        return [o for o in self._items.values()
                if (o.get("metadata") or {}).get("namespace") == namespace]

    def select(self, namespace: str, selector: LabelSelector) -> list[Obj]:
        """Objects in `namespace` ("" for all) whose labels `selector` matches."""
        if selector.selects_nothing:
            return []
        return [o for o in self.list_namespace(namespace)
                if selector.matches((o.get("metadata") or {}).get("labels"))]

    # -- writes ---------------------------------------------------------------------------
    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        """Add index functions (existing names must map to the same function)."""
        for name, fn in indexers.items():
            if name in self._indexers:
                if self._indexers[name] is not fn:
                    raise ValueError(f"indexer {name!r} already exists")
                continue
            self._indexers[name] = fn
            idx: dict[str, set[str]] = {}
            for key, obj in self._items.items():
                for v in fn(obj):
                    idx.setdefault(v, set()).add(key)
            self._indices[name] = idx

    def add(self, obj: Obj) -> Obj | None:
        """Add or replace; returns the previous object under the key."""
        key = object_key(obj)
        prev = self._items.get(key)
        self._items[key] = obj
        self._update_indices(key, prev, obj)
        return prev

    update = add

    def delete(self, key: str) -> Obj | None:
        prev = self._items.pop(key, None)
        if prev is not None:
            self._update_indices(key, prev, None)
        return prev

    def replace(self, items: Iterable[Obj]) -> tuple[list[Obj], list[tuple[Obj, Obj]], list[Obj]]:
        """Make the store hold exactly `items`: returns (added, updated (old, new), deleted);
        an unchanged resourceVersion is not an update."""
        new = {object_key(o): o for o in items}
        added: list[Obj] = []
        updated: list[tuple[Obj, Obj]] = []
        deleted: list[Obj] = []
        for key in list(self._items):
            if key not in new:
                deleted.append(self.delete(key))  # type: ignore[arg-type]
        for key, obj in new.items():
            prev = self.add(obj)
            if prev is None:
                added.append(obj)
            elif resource_version(prev) != resource_version(obj) or not resource_version(obj):
                updated.append((prev, obj))
        return added, updated, deleted

    def _update_indices(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for name, fn in self._indexers.items():
            idx = self._indices[name]
            old_vals = set(fn(old)) if old is not None else set()
            new_vals = set(fn(new)) if new is not None else set()
            if old_vals == new_vals:
                continue
            for v in old_vals - new_vals:
                keys = idx.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del idx[v]
            for v in new_vals - old_vals:
                idx.setdefault(v, set()).add(key)


# -- handlers -----------------------------------------------------------------------------------
class EventHandler(Protocol):
    """What an informer tells about the objects it sees (client-go's ResourceEventHandler)."""

    def on_add(self, obj: Obj) -> None: ...

    def on_update(self, old: Obj, new: Obj) -> None: ...

    def on_delete(self, obj: Obj) -> None: ...


@dataclass
class EventHandlerFuncs:
    """An `EventHandler` from functions; missing ones do nothing."""
    on_add_fn: Callable[[Obj], None] | None = None
    on_update_fn: Callable[[Obj, Obj], None] | None = None
    on_delete_fn: Callable[[Obj], None] | None = None

    def on_add(self, obj: Obj) -> None:
        if self.on_add_fn:
            self.on_add_fn(obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        if self.on_update_fn:
            self.on_update_fn(old, new)

    def on_delete(self, obj: Obj) -> None:
        if self.on_delete_fn:
            self.on_delete_fn(obj)


def handler_funcs(on_add: Callable[[Obj], None] | None = None,
                  on_update: Callable[[Obj, Obj], None] | None = None,
                  on_delete: Callable[[Obj], None] | None = None) -> EventHandlerFuncs:
    return EventHandlerFuncs(on_add, on_update, on_delete)


# -- the informer -------------------------------------------------------------------------------
class SharedInformer:
    """A `Store` of the objects under `path`, kept current by list + watch."""

    def __init__(self, client: RESTClient, path: str, *,
                 params: Mapping[str, str] | None = None,
                 indexers: Mapping[str, IndexFunc] | None = None,
                 transform: Callable[[Obj], Obj] | None = None,
                 resync_period: float = 0.0, name: str = "", page_size: int = 500,
                 min_watch_timeout: int = 300) -> None:
        """`params`: extra list/watch query parameters (labelSelector, fieldSelector);
        `indexers` default to the namespace index."""
        self.client = client
        self.path = path
        self.params = dict(params or {})
        self.transform = transform
        self.resync_period = resync_period
        self.name = name or path
        self.page_size = page_size
        self.min_watch_timeout = min_watch_timeout
        self.store = Store({NAMESPACE_INDEX: index_by_namespace} if indexers is None
                           else indexers)
        self.resource_version = ""
        self.synced = asyncio.Event()
        self._handlers: list[EventHandler] = []
        self._task: asyncio.Task[None] | None = None
        self._relists = 0

    # -- handlers -------------------------------------------------------------------------
    def add_event_handler(self, handler: EventHandler) -> None:
        """Register `handler`; if the informer has synced already, it is told of every
        object in the store now (`on_add`)."""
        self._handlers.append(handler)
        if self.synced.is_set():
            for obj in self.store.list():
                self._call(handler.on_add, obj)

    def remove_event_handler(self, handler: EventHandler) -> None:
        self._handlers = [h for h in self._handlers if h is not handler]

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        self.store.add_indexers(indexers)

    def _call(self, fn: Callable[..., None], *args: Obj) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s: event handler failed", self.name)

    def _dispatch_add(self, obj: Obj) -> None:
        for h in self._handlers:
            self._call(h.on_add, obj)

    def _dispatch_update(self, old: Obj, new: Obj) -> None:
        for h in self._handlers:
            self._call(h.on_update, old, new)

    def _dispatch_delete(self, obj: Obj) -> None:
        for h in self._handlers:
            self._call(h.on_delete, obj)

    # -- state ----------------------------------------------------------------------------
    def has_synced(self) -> bool:
        return self.synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self.synced.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    @property
    def relists(self) -> int:
        """Lists done so far (the first one included)."""
        return self._relists

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Run in a task of the current loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name=f"informer {self.name}")
        return self._task

    @property
    def started(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self) -> None:
        """List and watch until cancelled."""
        resync: asyncio.Task[None] | None = None
        if self.resync_period > 0:
            resync = asyncio.get_running_loop().create_task(
                self._resync_loop(), name=f"informer {self.name} resync")
        try:
            await self._list_and_watch()
        finally:
            if resync is not None:
                resync.cancel()
                await asyncio.gather(resync, return_exceptions=True)

    async def _list_and_watch(self) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                    if not self.synced.is_set():
                        self.synced.set()
                        log.debug("%s: synced (%d objects)", self.name, len(self.store))
                await self._watch()
                backoff = 0.2  # the watch ended normally (server timeout): watch again
            except Expired:
                log.info("%s: resourceVersion %s expired, relisting", self.name,
                         self.resource_version)
                need_list = True
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as e:
                # The stream was cut: resume the watch from the last resourceVersion.
                log.debug("%s: watch interrupted (%s); resuming", self.name, e)
                await asyncio.sleep(backoff * (1 + random.random() * 0.2))
                backoff = min(backoff * 2, 30.0)
            except Exception as e:  # connection refused, server errors: back off
                log.info("%s: %s failed (%s); retrying in %.1fs", self.name,
                         "list" if need_list else "watch", e or type(e).__name__, backoff)
                await asyncio.sleep(backoff * (1 + random.random() * 0.2))
                backoff = min(backoff * 2, 30.0)

    async def _list(self) -> None:
        items: list[Obj] = []
        cont = ""
        while True:
            params: dict[str, Any] = {**self.params, "limit": self.page_size}
            if cont:
                params["continue"] = cont
            try:
                page = await self.client.list(self.path, params)
            except Expired:
                if not cont:
                    raise
                cont = ""  # the continue token expired: start the list again
                items = []
                continue
            page_items = page.get("items") or []
            kind = str(page.get("kind") or "").removesuffix("List")
            api_version = page.get("apiVersion")
            for o in page_items:  # list items may lack them; watch events carry them
                if "kind" not in o and kind:
                    o["kind"] = kind
                if "apiVersion" not in o and api_version:
                    o["apiVersion"] = api_version
            items.extend(page_items)
            md = page.get("metadata") or {}
            cont = md.get("continue") or ""
            if not cont:
                rv = str(md.get("resourceVersion") or "")
                break
        if self.transform is not None:
            items = [self.transform(o) for o in items]
        added, updated, deleted = self.store.replace(items)
        self.resource_version = rv
        self._relists += 1
        for obj in deleted:
            self._dispatch_delete(obj)
        for obj in added:
            self._dispatch_add(obj)
        for old, new in updated:
            self._dispatch_update(old, new)

    async def _watch(self) -> None:
        timeout = random.randint(self.min_watch_timeout, 2 * self.min_watch_timeout)
        async for ev in self.client.watch(self.path, self.resource_version,
                                          params=self.params, timeout_seconds=timeout):
            type_, obj = ev.get("type"), ev.get("object") or {}
            rv = resource_version(obj)
            if type_ == "BOOKMARK":
                if rv:
                    self.resource_version = rv
                continue
            if self.transform is not None:
                obj = self.transform(obj)
            if type_ in ("ADDED", "MODIFIED"):
                prev = self.store.add(obj)
                if prev is None:
                    self._dispatch_add(obj)
                else:
                    self._dispatch_update(prev, obj)
            elif type_ == "DELETED":
                if self.store.delete(object_key(obj)) is not None:
                    self._dispatch_delete(obj)
            if rv:
                self.resource_version = rv

    async def _resync_loop(self) -> None:
        await self.synced.wait()
        while True:
            await asyncio.sleep(self.resync_period)
            for obj in self.store.list():
                self._dispatch_update(obj, obj)


# -- the factory --------------------------------------------------------------------------------
class SharedInformerFactory:
    """One informer per (group, version, resource, namespace, selectors) for a process."""

    def __init__(self, client: RESTClient, *, resync_period: float = 0.0,
                 namespace: str | None = None) -> None:
        self.client = client
        self.resync_period = resync_period
        self.namespace = namespace
        self._informers: dict[tuple[Any, ...], SharedInformer] = {}
        self._started = False

    def informer(self, group: str, version: str, resource: str, *,
                 indexers: Mapping[str, IndexFunc] | None = None,
                 namespaced: bool = True, label_selector: str = "",
                 field_selector: str = "", resync_period: float | None = None
                 ) -> SharedInformer:
        """The shared informer of a resource; `indexers` are added to it (namespace is
        always there). Informers asked for after `start` are started at once."""
        ns = self.namespace if namespaced else None
        key = (group, version, resource, ns, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            params = {}
            if label_selector:
                params["labelSelector"] = label_selector
            if field_selector:
                params["fieldSelector"] = field_selector
            inf = SharedInformer(
                self.client, resource_path(group, version, resource, ns), params=params,
                resync_period=self.resync_period if resync_period is None else resync_period,
                name=f"{resource}.{group or 'core'}/{version} informer")
            self._informers[key] = inf
            if self._started:
                inf.start()
        if indexers:
            inf.add_indexers(indexers)
        return inf

    # Shorthands for what the controllers share.
    def pods(self, **kw: Any) -> SharedInformer:
        return self.informer("", "v1", "pods", **kw)

    def nodes(self, **kw: Any) -> SharedInformer:
        return self.informer("", "v1", "nodes", namespaced=False, **kw)

    def namespaces(self, **kw: Any) -> SharedInformer:
        return self.informer("", "v1", "namespaces", namespaced=False, **kw)

    def service_accounts(self, **kw: Any) -> SharedInformer:
        return self.informer("", "v1", "serviceaccounts", **kw)

    def config_maps(self, **kw: Any) -> SharedInformer:
        return self.informer("", "v1", "configmaps", **kw)

    def services(self, **kw: Any) -> SharedInformer:
        return self.informer("", "v1", "services", **kw)

    def endpoints(self, **kw: Any) -> SharedInformer:
        return self.informer("", "v1", "endpoints", **kw)

    def endpoint_slices(self, **kw: Any) -> SharedInformer:
        return self.informer("discovery.k8s.io", "v1", "endpointslices", **kw)

    def replication_controllers(self, **kw: Any) -> SharedInformer:
        return self.informer("", "v1", "replicationcontrollers", **kw)

    def replica_sets(self, **kw: Any) -> SharedInformer:
        return self.informer("apps", "v1", "replicasets", **kw)

    def deployments(self, **kw: Any) -> SharedInformer:
        return self.informer("apps", "v1", "deployments", **kw)

    @property
    def informers(self) -> list[SharedInformer]:
        return list(self._informers.values())

    def start(self) -> None:
        """Start every informer not running yet (idempotent, like upstream's Start)."""
        self._started = True
        for inf in self._informers.values():
            if not inf.started:
                inf.start()

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:
        """True once every informer has synced (False on timeout)."""
        try:
            await asyncio.wait_for(
                asyncio.gather(*(i.synced.wait() for i in self._informers.values())), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
        self._started = False


async def wait_for_cache_sync(*informers: SharedInformer, timeout: float | None = None) -> bool:
    """True once all `informers` have synced (client-go's WaitForCacheSync)."""
    try:
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in informers)), timeout)
    except asyncio.TimeoutError:
        return False
    return True


__all__ = ["Store", "SharedInformer", "SharedInformerFactory", "EventHandler",
           "EventHandlerFuncs", "handler_funcs", "object_key", "split_key", "controller_ref",
           "metadata_only", "resource_version", "wait_for_cache_sync", "NAMESPACE_INDEX",
           "OWNER_UID_INDEX", "CONTROLLER_UID_INDEX", "LABEL_INDEX", "BUILTIN_INDEXERS",
           "index_by_namespace", "index_by_owner_uid", "index_by_controller_uid",
           "index_by_label"]

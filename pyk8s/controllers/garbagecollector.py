"""The garbage collector: cascading deletion through ownerReferences.

After upstream's `pkg/controller/garbagecollector`. A `GraphBuilder` lists and watches
every deletable resource (one `SharedInformer` per resource, metadata only) and keeps the
graph of owners and dependents by uid; what changes in the graph enqueues uids on two
queues, and workers act on them over the REST API:

- `attemptToDelete`: an object whose owners are all gone is deleted (Background, or the
  policy its own finalizers ask for); an object whose owner waits for its dependents
  (`foregroundDeletion`) is deleted too (Foreground if it has dependents itself); an owner
  deleting its dependents loses `foregroundDeletion` once no dependent with
  `blockOwnerDeletion: true` remains.
- `attemptToOrphan`: an owner with the `orphan` finalizer is removed from its dependents'
  ownerReferences, then the finalizer is removed.

An owner is "gone" only after a GET by name shows it absent or with another uid.
"""
from __future__ import annotations

import asyncio
import collections
import enum
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, NoReturn

from pyk8s.client.rest import (APIResource, Conflict, NotFound, RESTClient,
                               server_preferred_resources)
from pyk8s.client.informer import SharedInformer, metadata_only
from pyk8s.client.workqueue import ShutDown, WorkQueue
from pyk8s.verbosity import V

log = logging.getLogger("pyk8s.controllers.garbagecollector")

Obj = dict[str, Any]
OwnerRefsChange = Callable[[list[Obj]], list[Obj]]

FINALIZER_ORPHAN_DEPENDENTS = "orphan"
FINALIZER_DELETE_DEPENDENTS = "foregroundDeletion"

# Upstream's default: events are never owners worth tracking (and are many).
DEFAULT_IGNORED_RESOURCES: frozenset[tuple[str, str]] = frozenset({
    ("", "events"), ("events.k8s.io", "events")})

_UPDATE_MAX_RETRIES = 5


# -- the graph --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectReference:
    """An object's coordinates as an ownerReference names them, plus its namespace."""
    api_version: str
    kind: str
    name: str
    uid: str
    namespace: str = ""

    @classmethod
    def of_owner(cls, ref: Obj, namespace: str) -> "ObjectReference":
        return cls(str(ref.get("apiVersion") or ""), str(ref.get("kind") or ""),
                   str(ref.get("name") or ""), str(ref.get("uid") or ""), namespace)

    def coordinates(self) -> tuple[str, str, str, str]:
        return self.api_version, self.kind, self.name, self.uid

    def __str__(self) -> str:
        return (f"[{self.api_version}/{self.kind}, namespace: {self.namespace}, "
                f"name: {self.name}, uid: {self.uid}]")


@dataclass(eq=False)
class Node:
    """One object in the graph; `virtual` until observed (known only as someone's owner)."""
    identity: ObjectReference
    owners: list[Obj] = field(default_factory=list)
    dependents: set["Node"] = field(default_factory=set)
    virtual: bool = False
    being_deleted: bool = False
    deleting_dependents: bool = False

    @property
    def uid(self) -> str:
        return self.identity.uid

    def blocking_dependents(self) -> list["Node"]:
        """Dependents whose reference to this node has `blockOwnerDeletion: true`."""
        return [d for d in self.dependents
                if any(r.get("uid") == self.uid and r.get("blockOwnerDeletion") is True
                       for r in d.owners)]


def _owner_ref_matches(ref: Obj, identity: ObjectReference) -> bool:
    return ObjectReference.of_owner(ref, "").coordinates() == identity.coordinates()


def references_diffs(old: list[Obj], new: list[Obj]
                     ) -> tuple[list[Obj], list[Obj], list[tuple[Obj, Obj]]]:
    """(added, removed, changed) ownerReferences, matched by uid."""
    old_by_uid = {r.get("uid"): r for r in old}
    added: list[Obj] = []
    changed: list[tuple[Obj, Obj]] = []
    for ref in new:
        prev = old_by_uid.pop(ref.get("uid"), None)
        if prev is None:
            added.append(ref)
        elif prev != ref:
            changed.append((prev, ref))
    return added, list(old_by_uid.values()), changed


def partition_dependents(dependents: Iterable[Node], owner: ObjectReference
                         ) -> tuple[list[Node], list[Node]]:
    """Dependents whose reference to `owner.uid` matches its coordinates, and those whose
    does not (a dependent may be in both)."""
    matching: list[Node] = []
    nonmatching: list[Node] = []
    for dep in dependents:
        match = mismatch = False
        if owner.namespace and owner.namespace != dep.identity.namespace:
            mismatch = True
        else:
            for ref in dep.owners:
                if ref.get("uid") == owner.uid:
                    if _owner_ref_matches(ref, owner):
                        match = True
                    else:
                        mismatch = True
        if match:
            matching.append(dep)
        if mismatch:
            nonmatching.append(dep)
    return matching, nonmatching


def _sort_key(r: ObjectReference) -> tuple[str, ...]:
    return r.kind, r.api_version, r.namespace, r.name, r.uid


def alternate_owner_identity(deps: list[Node], absent: ObjectReference
                             ) -> ObjectReference | None:
    """Another identity `deps` know the absent owner's uid by (upstream's
    `getAlternateOwnerIdentity`): the first after `absent` in sort order, else the first."""
    seen: set[ObjectReference] = set()
    for dep in deps:
        for ref in dep.owners:
            if ref.get("uid") != absent.uid:
                continue
            cand = ObjectReference.of_owner(ref, dep.identity.namespace)
            if cand == absent or (not absent.namespace and
                                  cand.coordinates() == absent.coordinates()):
                continue
            seen.add(cand)
    if not seen:
        return None
    ordered = sorted(seen, key=_sort_key)
    for cand in ordered:
        if _sort_key(cand) > _sort_key(absent):
            return cand
    return ordered[0]


class AbsentOwnerCache:
    """A bounded LRU of owners known not to exist."""

    def __init__(self, size: int = 500) -> None:
        self.size = size
        self._items: collections.OrderedDict[ObjectReference, None] = collections.OrderedDict()

    def add(self, ref: ObjectReference) -> None:
        self._items[ref] = None
        self._items.move_to_end(ref)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def has(self, ref: ObjectReference) -> bool:
        if ref in self._items:
            self._items.move_to_end(ref)
            return True
        return False


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _being_deleted(md: Obj | None) -> bool:
    return bool(md and md.get("deletionTimestamp"))


def _has_finalizer(md: Obj | None, finalizer: str) -> bool:
    return bool(md) and finalizer in (md.get("finalizers") or [])  # type: ignore[union-attr]


def deletion_starts_with_finalizer(old: Obj | None, new: Obj, finalizer: str) -> bool:
    """The object (metadata) is now being deleted with `finalizer`, and was not before."""
    if not _being_deleted(new) or not _has_finalizer(new, finalizer):
        return False
    return old is None or not _being_deleted(old) or not _has_finalizer(old, finalizer)


class _Monitor:
    """One resource's informer (metadata only), feeding the graph builder."""

    def __init__(self, builder: "GraphBuilder", resource: APIResource) -> None:
        self.builder = builder
        self.resource = resource
        self.informer = SharedInformer(builder.client, resource.path(),
                                       transform=metadata_only, indexers={},
                                       name=f"gc monitor {resource.group_resource}")
        self.informer.add_event_handler(self)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = self.informer.start()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def on_add(self, obj: Obj) -> None:
        self.builder.process_graph_changes("add", self.resource, _md(obj), None)

    def on_update(self, old: Obj, new: Obj) -> None:
        if _md(old).get("uid") != _md(new).get("uid"):  # deleted and re-created between lists
            self.builder.process_graph_changes("delete", self.resource, _md(old), None)
            self.builder.process_graph_changes("add", self.resource, _md(new), None)
        else:
            self.builder.process_graph_changes("update", self.resource, _md(new), _md(old))

    def on_delete(self, obj: Obj) -> None:
        self.builder.process_graph_changes("delete", self.resource, _md(obj), None)


class GraphBuilder:
    """Monitors resources and keeps `uid_to_node` current; enqueues what may need work.

    Graph changes run synchronously in the event loop (no awaits), so each is atomic."""

    def __init__(self, client: RESTClient, attempt_to_delete: WorkQueue[str],
                 attempt_to_orphan: WorkQueue[str], absent_owner_cache: AbsentOwnerCache) -> None:
        self.client = client
        self.attempt_to_delete = attempt_to_delete
        self.attempt_to_orphan = attempt_to_orphan
        self.absent_owner_cache = absent_owner_cache
        self.uid_to_node: dict[str, Node] = {}
        self.monitors: dict[tuple[str, str, str], _Monitor] = {}

    # -- monitors -------------------------------------------------------------------------
    def sync_monitors(self, resources: Iterable[APIResource]) -> bool:
        """Monitor exactly `resources`; True when monitors were added or removed."""
        want = {(r.group, r.version, r.resource): r for r in resources}
        changed = False
        for key in list(self.monitors):
            if key not in want:
                self.monitors.pop(key).stop()
                changed = True
        for key, res in want.items():
            if key not in self.monitors:
                m = _Monitor(self, res)
                self.monitors[key] = m
                m.start()
                changed = True
        return changed

    async def wait_for_sync(self) -> None:
        for m in list(self.monitors.values()):
            await m.informer.synced.wait()

    async def stop(self) -> None:
        tasks = [m.task for m in self.monitors.values() if m.task is not None]
        for m in self.monitors.values():
            m.stop()
        self.monitors.clear()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- graph changes --------------------------------------------------------------------
    def process_graph_changes(self, event_type: str, resource: APIResource, md: Obj,
                              old_md: Obj | None) -> None:
        """Apply one observed add/update/delete (upstream's `processGraphChanges`)."""
        uid = str(md.get("uid") or "")
        if not uid:
            return
        identity = ObjectReference(resource.api_version, resource.kind, str(md.get("name")),
                                   uid, str(md.get("namespace") or ""))
        existing = self.uid_to_node.get(uid)
        if existing is not None and existing.virtual:
            # Observed at last: the informer's identity replaces the guessed one.
            if existing.identity != identity:
                _, invalid = partition_dependents(existing.dependents, identity)
                for dep in invalid:
                    if identity.namespace and dep.identity.namespace != identity.namespace:
                        log.warning("%s references owner %s in another namespace",
                                    dep.identity, identity)
                    self.attempt_to_delete.add(dep.uid)
                existing.identity = identity
            existing.virtual = False
        owners = list(md.get("ownerReferences") or [])
        if event_type in ("add", "update") and existing is None:
            node = Node(identity, owners=owners, being_deleted=_being_deleted(md),
                        deleting_dependents=_being_deleted(md) and
                        _has_finalizer(md, FINALIZER_DELETE_DEPENDENTS))
            self._insert_node(node)
            self._process_transitions(old_md, md, node)
        elif event_type in ("add", "update"):
            assert existing is not None
            if (existing.identity.api_version, existing.identity.kind) != \
                    (identity.api_version, identity.kind):
                existing.identity = replace(existing.identity, api_version=identity.api_version,
                                            kind=identity.kind)
            added, removed, changed = references_diffs(existing.owners, owners)
            if added or removed or changed:
                self._add_unblocked_owners_to_delete_queue(removed, changed)
                existing.owners = owners
                self._add_dependent_to_owners(existing, added)
                self._remove_dependent_from_owners(existing, removed)
            if _being_deleted(md):
                existing.being_deleted = True
            self._process_transitions(old_md, md, existing)
        elif event_type == "delete" and existing is not None:
            self._remove_and_enqueue(existing, identity)

    def enqueue_virtual_delete_event(self, identity: ObjectReference) -> None:
        """A GET showed `identity` absent: drop it from the graph (upstream's virtual
        delete event), unless dependents know its uid by other coordinates."""
        existing = self.uid_to_node.get(identity.uid)
        if existing is None:
            return
        remove = True
        if existing.virtual:
            matching, nonmatching = partition_dependents(existing.dependents, identity)
            if nonmatching:
                remove = False
                if matching:
                    self.absent_owner_cache.add(identity)
                    for dep in matching:
                        self.attempt_to_delete.add(dep.uid)
                if existing.identity == identity:
                    alt = alternate_owner_identity(nonmatching, identity)
                    if alt is not None:
                        existing.identity = alt
                        self.attempt_to_delete.add_rate_limited(existing.uid)
        elif existing.identity != identity:
            remove = False
            matching, _ = partition_dependents(existing.dependents, identity)
            if matching:
                self.absent_owner_cache.add(identity)
                for dep in matching:
                    self.attempt_to_delete.add(dep.uid)
        if remove:
            self._remove_and_enqueue(existing, identity)

    def _remove_and_enqueue(self, node: Node, identity: ObjectReference) -> None:
        self._remove_node(node)
        if node.dependents:
            self.absent_owner_cache.add(identity)
        for dep in node.dependents:
            self.attempt_to_delete.add(dep.uid)
        for ref in node.owners:
            owner = self.uid_to_node.get(str(ref.get("uid")))
            if owner is not None and owner.deleting_dependents:
                # Let the owner check whether all its blocking dependents are gone.
                self.attempt_to_delete.add(owner.uid)

    def _insert_node(self, node: Node) -> None:
        self.uid_to_node[node.uid] = node
        self._add_dependent_to_owners(node, node.owners)

    def _remove_node(self, node: Node) -> None:
        if self.uid_to_node.get(node.uid) is node:
            del self.uid_to_node[node.uid]
        self._remove_dependent_from_owners(node, node.owners)

    def _add_dependent_to_owners(self, node: Node, owners: list[Obj]) -> None:
        potentially_invalid = False
        for ref in owners:
            uid = str(ref.get("uid") or "")
            owner = self.uid_to_node.get(uid)
            if owner is None:
                # A virtual node: workers GET it and drop it if it does not exist.
                owner = Node(ObjectReference.of_owner(ref, node.identity.namespace), virtual=True)
                self.uid_to_node[uid] = owner
                owner.dependents.add(node)
                self.attempt_to_delete.add(uid)
                continue
            owner.dependents.add(node)
            if potentially_invalid:
                continue
            owner_namespaced = bool(owner.identity.namespace)
            if owner_namespaced and owner.identity.namespace != node.identity.namespace:
                if not owner.virtual:
                    log.warning("%s references owner %s in another namespace",
                                node.identity, owner.identity)
                potentially_invalid = True
            elif not _owner_ref_matches(ref, owner.identity):
                potentially_invalid = True
            elif not owner_namespaced and owner.virtual and \
                    owner.identity.namespace != node.identity.namespace:
                potentially_invalid = True
        if potentially_invalid:
            self.attempt_to_delete.add(node.uid)

    def _remove_dependent_from_owners(self, node: Node, owners: list[Obj]) -> None:
        for ref in owners:
            owner = self.uid_to_node.get(str(ref.get("uid") or ""))
            if owner is not None:
                owner.dependents.discard(node)

    def _add_unblocked_owners_to_delete_queue(self, removed: list[Obj],
                                              changed: list[tuple[Obj, Obj]]) -> None:
        """A blocking reference went away: the owner may be able to finish deleting."""
        for ref in removed:
            if ref.get("blockOwnerDeletion") is True:
                owner = self.uid_to_node.get(str(ref.get("uid")))
                if owner is not None:
                    self.attempt_to_delete.add(owner.uid)
        for old, new in changed:
            if old.get("blockOwnerDeletion") is True and new.get("blockOwnerDeletion") is not True:
                owner = self.uid_to_node.get(str(new.get("uid")))
                if owner is not None:
                    self.attempt_to_delete.add(owner.uid)

    def _process_transitions(self, old_md: Obj | None, md: Obj, node: Node) -> None:
        if deletion_starts_with_finalizer(old_md, md, FINALIZER_ORPHAN_DEPENDENTS):
            self.attempt_to_orphan.add(node.uid)
            return
        if deletion_starts_with_finalizer(old_md, md, FINALIZER_DELETE_DEPENDENTS):
            node.deleting_dependents = True
            for dep in node.dependents:
                self.attempt_to_delete.add(dep.uid)
            self.attempt_to_delete.add(node.uid)


# -- the collector ----------------------------------------------------------------------------
class _EnqueuedVirtualDeleteEvent(Exception):
    """The item turned out to be absent; the graph dropped it; nothing to retry."""


class _NamespacedOwnerOfClusterScopedObject(Exception):
    """A cluster-scoped object names a namespaced owner: retrying will not help."""


class RESTMappingError(Exception):
    """An ownerReference's apiVersion/kind is not served (yet): retry later."""


class _Action(enum.Enum):
    FORGET = 1
    REQUEUE = 2


class GarbageCollector:
    """Runs the graph builder and the attemptToDelete / attemptToOrphan workers."""

    def __init__(self, client: RESTClient, *, workers: int = 5, resync_period: float = 30.0,
                 sync_timeout: float = 30.0,
                 ignored_resources: frozenset[tuple[str, str]] = DEFAULT_IGNORED_RESOURCES
                 ) -> None:
        self.client = client
        self.workers = workers
        self.resync_period = resync_period
        self.sync_timeout = sync_timeout
        self.ignored_resources = ignored_resources
        self.attempt_to_delete: WorkQueue[str] = WorkQueue("garbage_collector_attempt_to_delete")
        self.attempt_to_orphan: WorkQueue[str] = WorkQueue("garbage_collector_attempt_to_orphan")
        self.absent_owner_cache = AbsentOwnerCache()
        self.graph = GraphBuilder(client, self.attempt_to_delete, self.attempt_to_orphan,
                                  self.absent_owner_cache)
        self._by_gvk: dict[tuple[str, str, str], APIResource] = {}
        self._by_gk: dict[tuple[str, str], APIResource] = {}
        self._workers_may_run = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        """Discover, monitor, wait for the graph, then work until cancelled."""
        tasks: list[asyncio.Task[None]] = []
        try:
            backoff = 0.5
            while True:
                try:
                    await self.resync()
                    break
                except Exception as e:  # server not up yet, transient errors
                    log.info("garbage collector: discovery failed (%s); retrying", e)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
            log.info("garbage collector: synced, monitoring %d resources",
                     len(self.graph.monitors))
            loop = asyncio.get_running_loop()
            for i in range(self.workers):
                tasks.append(loop.create_task(self._run_attempt_to_delete_worker(),
                                              name=f"gc-attempt-to-delete-{i}"))
                tasks.append(loop.create_task(self._run_attempt_to_orphan_worker(),
                                              name=f"gc-attempt-to-orphan-{i}"))
            while True:
                await asyncio.sleep(self.resync_period)
                try:
                    await self.resync()
                except Exception as e:
                    log.info("garbage collector: resync failed: %s", e)
        finally:
            self.attempt_to_delete.shutdown()
            self.attempt_to_orphan.shutdown()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.graph.stop()

    async def resync(self) -> None:
        """Rediscover resources; monitor new ones (workers pause until they have synced)."""
        resources = await server_preferred_resources(self.client)
        self._by_gvk = {(r.group, r.version, r.kind): r for r in resources}
        self._by_gk = {}
        for r in resources:
            self._by_gk.setdefault((r.group, r.kind), r)
        deletable = [r for r in resources if r.supports("delete", "list", "watch")
                     and (r.group, r.resource) not in self.ignored_resources]
        if self.graph.sync_monitors(deletable) or not self._workers_may_run.is_set():
            self._workers_may_run.clear()
            try:
                await asyncio.wait_for(self.graph.wait_for_sync(), self.sync_timeout)
            except asyncio.TimeoutError:
                log.warning("garbage collector: timed out waiting for monitors to sync")
            finally:
                self._workers_may_run.set()

    # -- REST helpers ---------------------------------------------------------------------
    def api_resource(self, api_version: str, kind: str) -> APIResource:
        group, _, version = api_version.rpartition("/")
        res = self._by_gvk.get((group, version, kind)) or self._by_gk.get((group, kind))
        if res is None:
            raise RESTMappingError(f"unable to get REST mapping for {api_version}/{kind}")
        return res

    def _path(self, ref: ObjectReference) -> str:
        res = self.api_resource(ref.api_version, ref.kind)
        return res.path(ref.namespace if res.namespaced else None, ref.name)

    async def get_object(self, ref: ObjectReference) -> Obj:
        return await self.client.get(self._path(ref))

    async def delete_object(self, item: ObjectReference, resource_version: str,
                            owners_at_rv: list[Obj], policy: str) -> None:
        """Delete with uid and resourceVersion preconditions; on a conflict where the
        ownerReferences did not change, retry without the resourceVersion one."""
        path = self._path(item)
        pre: Obj = {"uid": item.uid}
        if resource_version:
            pre["resourceVersion"] = resource_version
        try:
            await self.client.delete(path, {"preconditions": pre, "propagationPolicy": policy})
        except Conflict:
            if not resource_version:
                raise
            try:
                live = await self.client.get(path)
            except NotFound:
                return
            lmd = _md(live)
            if lmd.get("uid") == item.uid and lmd.get("resourceVersion") != resource_version \
                    and list(lmd.get("ownerReferences") or []) == owners_at_rv:
                await self.client.delete(path, {"preconditions": {"uid": item.uid},
                                                "propagationPolicy": policy})
            else:
                raise

    async def _patch_owner_references(self, item: ObjectReference,
                                      change: OwnerRefsChange) -> None:
        """JSON merge patch of the whole ownerReferences list, guarded by resourceVersion
        (upstream's `deleteOwnerRefJSONMergePatch` / `unblockOwnerReferencesJSONMergePatch`)."""
        path = self._path(item)
        for _ in range(_UPDATE_MAX_RETRIES):
            obj = await self.client.get(path)
            md = _md(obj)
            if md.get("uid") != item.uid:
                raise NotFound(404, "NotFound", f"{item} not found (uid changed)")
            refs = list(md.get("ownerReferences") or [])
            new_refs = change(refs)
            if new_refs == refs:
                return
            patch = {"metadata": {"resourceVersion": md.get("resourceVersion"),
                                  "ownerReferences": new_refs or None}}
            try:
                await self.client.patch(path, patch, "merge")
                return
            except Conflict:
                continue
        raise Conflict(409, "Conflict", f"updateMaxRetries({_UPDATE_MAX_RETRIES}) has been "
                                        f"reached for {item}; will retry later")

    async def remove_owner_references(self, item: ObjectReference, owner_uids: set[str]) -> None:
        await self._patch_owner_references(
            item, lambda refs: [r for r in refs if r.get("uid") not in owner_uids])

    async def unblock_owner_references(self, item: ObjectReference) -> None:
        def unblock(refs: list[Obj]) -> list[Obj]:
            return [{**r, "blockOwnerDeletion": False} if r.get("blockOwnerDeletion") else r
                    for r in refs]
        await self._patch_owner_references(item, unblock)

    async def remove_finalizer(self, owner: Node, finalizer: str) -> None:
        """Drop `finalizer` from the owner (merge patch guarded by resourceVersion)."""
        path = self._path(owner.identity)
        for _ in range(_UPDATE_MAX_RETRIES):
            try:
                obj = await self.client.get(path)
            except NotFound:
                return
            md = _md(obj)
            if md.get("uid") != owner.uid:
                return
            finalizers = list(md.get("finalizers") or [])
            if finalizer not in finalizers:
                return
            remaining = [f for f in finalizers if f != finalizer]
            patch = {"metadata": {"resourceVersion": md.get("resourceVersion"),
                                  "finalizers": remaining or None}}
            try:
                await self.client.patch(path, patch, "merge")
                log.info("garbage collector: removed %s finalizer from %s", finalizer,
                         owner.identity)
                return
            except NotFound:
                return
            except Conflict:
                continue
        raise Conflict(409, "Conflict", f"updateMaxRetries({_UPDATE_MAX_RETRIES}) has been "
                                        f"reached for owner {owner.identity}; will retry later")

    # -- attemptToDelete ------------------------------------------------------------------
    async def _run_attempt_to_delete_worker(self) -> None:
        while True:
            try:
                uid = await self.attempt_to_delete.get()
            except ShutDown:
                return
            try:
                await self._workers_may_run.wait()
                action = await self._attempt_to_delete_worker(uid)
            finally:
                self.attempt_to_delete.done(uid)
            if action is _Action.REQUEUE:
                self.attempt_to_delete.add_rate_limited(uid)
            else:
                self.attempt_to_delete.forget(uid)

    async def _attempt_to_delete_worker(self, uid: str) -> _Action:
        node = self.graph.uid_to_node.get(uid)
        if node is None:
            return _Action.FORGET
        try:
            await self.attempt_to_delete_item(node)
        except (_EnqueuedVirtualDeleteEvent, _NamespacedOwnerOfClusterScopedObject):
            return _Action.FORGET
        except asyncio.CancelledError:
            raise
        except RESTMappingError as e:
            log.debug("garbage collector: %s: %s", node.identity, e)
            return _Action.REQUEUE
        except Exception as e:
            log.info("garbage collector: error syncing item %s: %s", node.identity, e)
            return _Action.REQUEUE
        current = self.graph.uid_to_node.get(uid)
        if current is not None and current.virtual:
            # Not observed by a monitor yet: look again later (upstream issue 56121).
            return _Action.REQUEUE
        return _Action.FORGET

    def _virtual_delete(self, identity: ObjectReference) -> NoReturn:
        self.graph.enqueue_virtual_delete_event(identity)
        raise _EnqueuedVirtualDeleteEvent()

    async def attempt_to_delete_item(self, item: Node) -> None:
        """Delete `item` if all its owners are gone or wait for their dependents' deletion
        (upstream's `attemptToDeleteItem`)."""
        if item.being_deleted and not item.deleting_dependents:
            return  # a one-way trip: its deletion event will come
        try:
            latest = await self.get_object(item.identity)
        except NotFound:
            self._virtual_delete(item.identity)
        lmd = _md(latest)
        if lmd.get("uid") != item.uid:
            self._virtual_delete(item.identity)
        if item.deleting_dependents:
            await self.process_deleting_dependents_item(item)
            return
        refs = list(lmd.get("ownerReferences") or [])
        if not refs:
            return
        solid, dangling, waiting = await self.classify_references(item, refs)
        rv = str(lmd.get("resourceVersion") or "")
        if solid:
            if not dangling and not waiting:
                return
            # Waiting references must go, or those owners would wait for us forever.
            uids = {str(r.get("uid")) for r in dangling + waiting}
            log.info("garbage collector: removing dangling/waiting references %s from %s",
                     sorted(uids), item.identity)
            await self.remove_owner_references(item.identity, uids)
        elif waiting and item.dependents:
            if any(dep.deleting_dependents for dep in item.dependents):
                # A possible cycle: stop blocking the owners, then delete in foreground.
                await self.unblock_owner_references(item.identity)
            log.log(V(2), "garbage collector: deleting %s (Foreground: an owner waits for "
                    "its dependents and it has dependents)", item.identity)
            await self._delete(item, rv, refs, "Foreground")
        else:
            if _has_finalizer(lmd, FINALIZER_ORPHAN_DEPENDENTS):
                policy = "Orphan"
            elif _has_finalizer(lmd, FINALIZER_DELETE_DEPENDENTS):
                policy = "Foreground"
            else:
                policy = "Background"
            log.log(V(2), "garbage collector: deleting %s (propagationPolicy %s)",
                    item.identity, policy)  # upstream: "Deleting item", V(2)
            await self._delete(item, rv, refs, policy)

    async def _delete(self, item: Node, rv: str, refs: list[Obj], policy: str) -> None:
        try:
            await self.delete_object(item.identity, rv, refs, policy)
        except NotFound:
            self._virtual_delete(item.identity)

    async def process_deleting_dependents_item(self, item: Node) -> None:
        """An owner in foreground deletion: done when no blocking dependent remains."""
        blocking = item.blocking_dependents()
        if not blocking:
            await self.remove_finalizer(item, FINALIZER_DELETE_DEPENDENTS)
            return
        for dep in blocking:
            if not dep.deleting_dependents:
                self.attempt_to_delete.add(dep.uid)

    async def is_dangling(self, ref: Obj, item: Node) -> tuple[bool, Obj | None]:
        """Whether the owner `ref` names is absent, by GET by name and uid comparison."""
        coords = ObjectReference.of_owner(ref, "")
        if self.absent_owner_cache.has(coords):
            return True, None
        key = replace(coords, namespace=item.identity.namespace)
        if self.absent_owner_cache.has(key):
            return True, None
        res = self.api_resource(coords.api_version, coords.kind)
        if not res.namespaced:
            key = coords
        if not item.identity.namespace and res.namespaced:
            log.info("garbage collector: %s is cluster-scoped but refers to a namespaced "
                     "owner %s", item.identity, coords)
            raise _NamespacedOwnerOfClusterScopedObject()
        try:
            owner = await self.client.get(res.path(item.identity.namespace or None, coords.name))
        except NotFound:
            self.absent_owner_cache.add(key)
            return True, None
        if _md(owner).get("uid") != coords.uid:
            self.absent_owner_cache.add(key)
            return True, None
        return False, owner

    async def classify_references(self, item: Node, refs: list[Obj]
                                  ) -> tuple[list[Obj], list[Obj], list[Obj]]:
        """(solid, dangling, waitingForDependentsDeletion) owner references."""
        solid: list[Obj] = []
        dangling: list[Obj] = []
        waiting: list[Obj] = []
        for ref in refs:
            is_dangling, owner = await self.is_dangling(ref, item)
            if is_dangling:
                dangling.append(ref)
            elif owner is not None and _being_deleted(_md(owner)) and \
                    _has_finalizer(_md(owner), FINALIZER_DELETE_DEPENDENTS):
                waiting.append(ref)
            else:
                solid.append(ref)
        return solid, dangling, waiting

    # -- attemptToOrphan ------------------------------------------------------------------
    async def _run_attempt_to_orphan_worker(self) -> None:
        while True:
            try:
                uid = await self.attempt_to_orphan.get()
            except ShutDown:
                return
            try:
                await self._workers_may_run.wait()
                action = await self._attempt_to_orphan_worker(uid)
            finally:
                self.attempt_to_orphan.done(uid)
            if action is _Action.REQUEUE:
                self.attempt_to_orphan.add_rate_limited(uid)
            else:
                self.attempt_to_orphan.forget(uid)

    async def _attempt_to_orphan_worker(self, uid: str) -> _Action:
        owner = self.graph.uid_to_node.get(uid)
        if owner is None:
            return _Action.FORGET
        try:
            await self.orphan_dependents(owner.identity, list(owner.dependents))
            await self.remove_finalizer(owner, FINALIZER_ORPHAN_DEPENDENTS)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.info("garbage collector: orphaning dependents of %s failed: %s",
                     owner.identity, e)
            return _Action.REQUEUE
        return _Action.FORGET

    async def orphan_dependents(self, owner: ObjectReference, dependents: list[Node]) -> None:
        """Remove `owner` from every dependent's ownerReferences."""
        async def orphan(dep: Node) -> None:
            try:
                await self.remove_owner_references(dep.identity, {owner.uid})
            except NotFound:
                pass

        results = await asyncio.gather(*(orphan(d) for d in dependents), return_exceptions=True)
        errs = [r for r in results if isinstance(r, BaseException)]
        if errs:
            raise RuntimeError(f"failed to orphan dependents of owner {owner}, got errors: "
                               + "; ".join(str(e) for e in errs))


__all__ = ["GarbageCollector", "GraphBuilder", "Node", "ObjectReference", "AbsentOwnerCache",
           "FINALIZER_ORPHAN_DEPENDENTS", "FINALIZER_DELETE_DEPENDENTS"]

"""The namespace controller: empties terminating namespaces, then finalizes them.

After upstream's `pkg/controller/namespace`. A namespace being deleted keeps
`spec.finalizers: ["kubernetes"]`; this controller deletes every namespaced resource's
objects in it (deletecollection, or list + delete, with Background propagation), reports
progress in the namespace's status conditions, waits until nothing is left (objects held
by finalizers stay until others remove them), and then removes `kubernetes` through
`PUT /api/v1/namespaces/{name}/finalize`. The API server deletes the namespace once
`spec.finalizers` and `metadata.finalizers` are both empty.
"""
from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from pyk8s.client.rest import (APIResource, ApiError, Conflict, NotFound, RESTClient,
                               server_preferred_resources)
from pyk8s.client.informer import SharedInformer, SharedInformerFactory
from pyk8s.client.workqueue import ShutDown, WorkQueue

log = logging.getLogger("pyk8s.controllers.namespace")

Obj = dict[str, Any]

FINALIZER_KUBERNETES = "kubernetes"

# Condition types, in upstream's order, with their "all is well" reason and message.
NAMESPACE_DELETION_DISCOVERY_FAILURE = "NamespaceDeletionDiscoveryFailure"
NAMESPACE_DELETION_GV_PARSING_FAILURE = "NamespaceDeletionGroupVersionParsingFailure"
NAMESPACE_DELETION_CONTENT_FAILURE = "NamespaceDeletionContentFailure"
NAMESPACE_CONTENT_REMAINING = "NamespaceContentRemaining"
NAMESPACE_FINALIZERS_REMAINING = "NamespaceFinalizersRemaining"

CONDITION_TYPES = (NAMESPACE_DELETION_DISCOVERY_FAILURE, NAMESPACE_DELETION_GV_PARSING_FAILURE,
                   NAMESPACE_DELETION_CONTENT_FAILURE, NAMESPACE_CONTENT_REMAINING,
                   NAMESPACE_FINALIZERS_REMAINING)
OK_REASONS = {
    NAMESPACE_DELETION_DISCOVERY_FAILURE: "ResourcesDiscovered",
    NAMESPACE_DELETION_GV_PARSING_FAILURE: "ParsedGroupVersions",
    NAMESPACE_DELETION_CONTENT_FAILURE: "ContentDeleted",
    NAMESPACE_CONTENT_REMAINING: "ContentRemoved",
    NAMESPACE_FINALIZERS_REMAINING: "ContentHasNoFinalizers",
}
OK_MESSAGES = {
    NAMESPACE_DELETION_DISCOVERY_FAILURE: "All resources successfully discovered",
    NAMESPACE_DELETION_GV_PARSING_FAILURE: "All legacy kube types successfully parsed",
    NAMESPACE_DELETION_CONTENT_FAILURE:
        "All content successfully deleted, may be waiting on finalization",
    NAMESPACE_CONTENT_REMAINING: "All content successfully removed",
    NAMESPACE_FINALIZERS_REMAINING: "All content-preserving finalizers finished",
}

# Seconds to allow for finalizers when objects holding them remain (upstream's default).
FINALIZER_ESTIMATE_SECONDS = 15


class ResourcesRemainingError(Exception):
    """Some content remains; look again in about `estimate` seconds."""

    def __init__(self, estimate: int) -> None:
        super().__init__(f"some content remains in the namespace, estimate {estimate} seconds "
                         "before it is removed")
        self.estimate = estimate


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@dataclass
class GVRDeletionMetadata:
    """What deleting one resource's objects left behind."""
    finalizer_estimate_seconds: int = 0
    num_remaining: int = 0
    finalizers_to_num_remaining: dict[str, int] = field(default_factory=dict)


@dataclass
class NamespaceConditionUpdater:
    """Collects failures during one pass and folds them into the namespace's conditions."""
    new_conditions: list[Obj] = field(default_factory=list)
    delete_content_errors: list[str] = field(default_factory=list)

    def process_discover_resources_err(self, err: Exception) -> None:
        self._set(NAMESPACE_DELETION_DISCOVERY_FAILURE, "DiscoveryFailed",
                  f"Discovery failed for some groups, 1 failing: {err}")

    def process_delete_content_err(self, err: Exception) -> None:
        self.delete_content_errors.append(str(err))
        self._set(NAMESPACE_DELETION_CONTENT_FAILURE, "ContentDeletionFailed",
                  f"Failed to delete all resource types, {len(self.delete_content_errors)} "
                  f"remaining: {', '.join(self.delete_content_errors)}")

    def process_content_totals(self, gvr_to_num_remaining: dict[str, int],
                               finalizers_to_num_remaining: dict[str, int]) -> None:
        if gvr_to_num_remaining:
            parts = sorted(f"{gr} has {n} resource instances"
                           for gr, n in gvr_to_num_remaining.items())
            self._set(NAMESPACE_CONTENT_REMAINING, "SomeResourcesRemain",
                      f"Some resources are remaining: {', '.join(parts)}")
        if finalizers_to_num_remaining:
            parts = sorted(f"{f} in {n} resource instances"
                           for f, n in finalizers_to_num_remaining.items())
            self._set(NAMESPACE_FINALIZERS_REMAINING, "SomeFinalizersRemain",
                      f"Some content in the namespace has finalizers remaining: "
                      f"{', '.join(parts)}")

    def _set(self, type_: str, reason: str, message: str) -> None:
        self.new_conditions = [c for c in self.new_conditions if c["type"] != type_]
        self.new_conditions.append({"type": type_, "status": "True", "reason": reason,
                                    "message": message})

    def update(self, ns: Obj) -> bool:
        """Set every condition type on `ns` (the "ok" variant where nothing failed),
        touching lastTransitionTime only on change. True when the conditions changed."""
        status = ns.setdefault("status", {})
        conditions: list[Obj] = list(status.get("conditions") or [])
        before = copy.deepcopy(conditions)
        for type_ in CONDITION_TYPES:
            new = next((c for c in self.new_conditions if c["type"] == type_), None)
            if new is None:
                new = {"type": type_, "status": "False", "reason": OK_REASONS[type_],
                       "message": OK_MESSAGES[type_]}
            new = {**new, "lastTransitionTime": _now()}
            idx = next((i for i, c in enumerate(conditions) if c.get("type") == type_), None)
            if idx is None:
                conditions.append(new)
                continue
            old = conditions[idx]
            if (old.get("status"), old.get("reason"), old.get("message")) == \
                    (new["status"], new["reason"], new["message"]):
                continue
            conditions[idx] = new
        status["conditions"] = conditions
        return conditions != before


class NamespacedResourcesDeleter:
    """Deletes everything in a namespace, then removes the finalizer token from it
    (upstream's `namespacedResourcesDeleter`)."""

    def __init__(self, client: RESTClient, finalizer_token: str = FINALIZER_KUBERNETES) -> None:
        self.client = client
        self.finalizer_token = finalizer_token
        self._not_supported: set[tuple[str, str, str, str]] = set()  # (op, g, v, resource)

    async def delete(self, name: str) -> None:
        """One pass. Raises `ResourcesRemainingError` while content remains."""
        ns_path = f"/api/v1/namespaces/{name}"
        try:
            ns = await self.client.get(ns_path)
        except NotFound:
            return
        if not ns["metadata"].get("deletionTimestamp"):
            return
        try:
            ns = await self._retry_on_conflict(ns, self._update_namespace_status)
        except NotFound:
            return
        if not ns["metadata"].get("deletionTimestamp"):
            return
        if self.finalizer_token not in ((ns.get("spec") or {}).get("finalizers") or []):
            return  # finalized by us already; others hold it
        estimate = await self.delete_all_content(ns)
        if estimate > 0:
            raise ResourcesRemainingError(estimate)
        try:
            await self._retry_on_conflict(ns, self._finalize_namespace)
        except NotFound:
            return
        log.info("namespace controller: finalized namespace %s", name)

    async def _retry_on_conflict(self, ns: Obj, fn: Callable[[Obj], Awaitable[Obj]]) -> Obj:
        latest = ns
        while True:
            try:
                return await fn(latest)
            except Conflict:
                prev_uid = latest["metadata"].get("uid")
                latest = await self.client.get(f"/api/v1/namespaces/{ns['metadata']['name']}")
                if latest["metadata"].get("uid") != prev_uid:
                    raise RuntimeError("namespace uid has changed across retries") from None

    async def _update_namespace_status(self, ns: Obj) -> Obj:
        if not ns["metadata"].get("deletionTimestamp") or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return ns
        new = copy.deepcopy(ns)
        new.setdefault("status", {})["phase"] = "Terminating"
        return await self.client.update(f"/api/v1/namespaces/{ns['metadata']['name']}/status",
                                        new)

    async def _finalize_namespace(self, ns: Obj) -> Obj:
        new = copy.deepcopy(ns)
        spec = new.setdefault("spec", {})
        spec["finalizers"] = sorted({f for f in spec.get("finalizers") or []
                                     if f != self.finalizer_token})
        try:
            return await self.client.update(
                f"/api/v1/namespaces/{ns['metadata']['name']}/finalize", new)
        except NotFound:
            return new  # removed already

    async def delete_all_content(self, ns: Obj) -> int:
        """Delete every namespaced resource's objects in `ns`; update the conditions.
        Returns seconds to wait for what remains (0: empty). Raises on failures."""
        name = ns["metadata"]["name"]
        deleted_at = _parse_time(ns["metadata"]["deletionTimestamp"])
        updater = NamespaceConditionUpdater()
        errors: list[Exception] = []
        resources: list[APIResource] = []
        try:
            resources = [r for r in await server_preferred_resources(self.client)
                         if r.namespaced and r.supports("delete")]
        except Exception as e:  # partial discovery is not fatal upstream; ours is all-or-nothing
            errors.append(e)
            updater.process_discover_resources_err(e)
        results = await asyncio.gather(
            *(self._delete_all_content_for_resource(r, name, deleted_at) for r in resources),
            return_exceptions=True)
        estimate = 0
        gvr_remaining: dict[str, int] = {}
        finalizers_remaining: dict[str, int] = {}
        for res, result in zip(resources, results):
            if isinstance(result, _GVRError):
                meta = result.metadata
                errors.append(result.error)
                updater.process_delete_content_err(result.error)
            elif isinstance(result, Exception):
                meta = GVRDeletionMetadata()
                errors.append(result)
                updater.process_delete_content_err(result)
            elif isinstance(result, BaseException):  # cancelled
                raise result
            else:
                meta = result
            estimate = max(estimate, meta.finalizer_estimate_seconds)
            if meta.num_remaining > 0:
                gvr_remaining[res.group_resource] = meta.num_remaining
                for f, n in meta.finalizers_to_num_remaining.items():
                    if n:
                        finalizers_remaining[f] = finalizers_remaining.get(f, 0) + n
        updater.process_content_totals(gvr_remaining, finalizers_remaining)
        # Always reconcile the conditions: "it worked" must replace an earlier "it didn't".
        if updater.update(ns):
            try:
                updated = await self.client.update(f"/api/v1/namespaces/{name}/status", ns)
                ns["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]
            except ApiError as e:
                log.info("namespace controller: couldn't update status conditions of %s: %s",
                         name, e)
        if errors:
            raise RuntimeError("; ".join(str(e) for e in errors))
        return estimate

    async def _delete_all_content_for_resource(self, res: APIResource, namespace: str,
                                               deleted_at: datetime) -> GVRDeletionMetadata:
        try:
            estimate = await self._estimate_graceful_termination(res, namespace, deleted_at)
            if not await self._delete_collection(res, namespace):
                await self._delete_each_item(res, namespace)
            items = await self._list_collection(res, namespace)
        except ApiError as e:
            raise _GVRError(e, GVRDeletionMetadata()) from None
        if items is None:
            return GVRDeletionMetadata(finalizer_estimate_seconds=estimate)
        finalizers: dict[str, int] = {}
        for item in items:
            for f in item.get("metadata", {}).get("finalizers") or []:
                finalizers[f] = finalizers.get(f, 0) + 1
        if not items:
            return GVRDeletionMetadata(finalizer_estimate_seconds=estimate)
        if estimate:
            return GVRDeletionMetadata(estimate, len(items), finalizers)
        if finalizers:
            return GVRDeletionMetadata(FINALIZER_ESTIMATE_SECONDS, len(items), finalizers)
        meta = GVRDeletionMetadata(estimate, len(items))
        raise _GVRError(RuntimeError(f"unexpected items still remain in namespace: {namespace} "
                                     f"for gvr: {res.group}/{res.version}, "
                                     f"Resource={res.resource}"), meta)

    async def _estimate_graceful_termination(self, res: APIResource, namespace: str,
                                             deleted_at: datetime) -> int:
        """Pods may take their grace period to go; other kinds go at once."""
        if (res.group, res.resource) != ("", "pods"):
            return 0
        pods = await self.client.list(res.path(namespace))
        estimate = 0
        for pod in pods.get("items") or []:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
            if isinstance(grace, int) and grace > estimate:
                estimate = grace
        elapsed = (datetime.now(timezone.utc) - deleted_at).total_seconds()
        return 0 if elapsed >= estimate else estimate

    async def _delete_collection(self, res: APIResource, namespace: str) -> bool:
        key = ("deletecollection", res.group, res.version, res.resource)
        if not res.supports("deletecollection") or key in self._not_supported:
            return False
        try:
            await self.client.delete(res.path(namespace),
                                     {"propagationPolicy": "Background"})
        except ApiError as e:
            if e.code in (404, 405):
                self._not_supported.add(key)
                return False
            raise
        return True

    async def _list_collection(self, res: APIResource, namespace: str) -> list[Obj] | None:
        key = ("list", res.group, res.version, res.resource)
        if not res.supports("list") or key in self._not_supported:
            return None
        try:
            return list((await self.client.list(res.path(namespace))).get("items") or [])
        except ApiError as e:
            if e.code in (404, 405):
                self._not_supported.add(key)
                return None
            raise

    async def _delete_each_item(self, res: APIResource, namespace: str) -> None:
        items = await self._list_collection(res, namespace)
        for item in items or []:
            md = item.get("metadata") or {}
            try:
                await self.client.delete(res.path(namespace, md.get("name")),
                                         {"propagationPolicy": "Background"})
            except NotFound:
                pass


class _GVRError(Exception):
    """A resource's deletion failed: the error, and what is known of the remains."""

    def __init__(self, error: Exception, metadata: GVRDeletionMetadata) -> None:
        super().__init__(str(error))
        self.error = error
        self.metadata = metadata


class NamespaceController:
    """Watches namespaces; works on those being deleted."""

    def __init__(self, client: RESTClient, *, workers: int = 2,
                 deletion_grace_period: float = 1.0, max_requeue_delay: float = 2.0,
                 factory: SharedInformerFactory | None = None) -> None:
        """`deletion_grace_period`: wait after a deletion is seen before the first pass (upstream
        waits 5s for other API servers' admission to notice; one server needs less).
        `max_requeue_delay`: cap on upstream's estimate/2+1 seconds between passes while
        content remains, so namespaces go soon after the last finalizer does."""
        self.client = client
        self.workers = workers
        self.deletion_grace_period = deletion_grace_period
        self.max_requeue_delay = max_requeue_delay
        self.deleter = NamespacedResourcesDeleter(client)
        self.queue: WorkQueue[str] = WorkQueue("namespace")
        self.informer: SharedInformer = factory.namespaces() if factory is not None else \
            SharedInformer(client, "/api/v1/namespaces", name="namespace controller")
        self.informer.add_event_handler(self)
        self._owns_informer = factory is None

    # -- events ---------------------------------------------------------------------------
    def _enqueue(self, obj: Obj) -> None:
        md = obj.get("metadata") or {}
        if md.get("deletionTimestamp"):
            self.queue.add_after(str(md.get("name")), self.deletion_grace_period)

    def on_add(self, obj: Obj) -> None:
        self._enqueue(obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        self._enqueue(new)

    def on_delete(self, obj: Obj) -> None:
        pass

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        if self._owns_informer:  # a factory's informers are started by the factory
            tasks.append(self.informer.start())
        try:
            await self.informer.synced.wait()
            log.info("namespace controller: synced")
            tasks += [loop.create_task(self._worker(), name=f"namespace-worker-{i}")
                      for i in range(self.workers)]
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            try:
                name = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.deleter.delete(name)
            except ResourcesRemainingError as e:
                self.queue.add_after(name, min(e.estimate / 2 + 1, self.max_requeue_delay))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("namespace controller: deletion of namespace %s failed: %s", name, e)
                self.queue.add_rate_limited(name)
            else:
                self.queue.forget(name)
            finally:
                self.queue.done(name)


__all__ = ["NamespaceController", "NamespacedResourcesDeleter", "ResourcesRemainingError",
           "NamespaceConditionUpdater", "FINALIZER_KUBERNETES"]

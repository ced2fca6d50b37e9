"""The resource quota controller: keeps each ResourceQuota's `status.hard` (= spec.hard)
and `status.used` current (upstream's `pkg/controller/resourcequota`).

Quotas are synced when they change, when an object they may count is updated or deleted
in their namespace (replenishment: admission charges creations at once, the controller
gives usage back), and every `resync_period` seconds (counts of kinds without an informer
here, missed charges)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from pyk8s.api import quota
from pyk8s.api.catalogue import BUILTIN
from pyk8s.client.informer import SharedInformer, SharedInformerFactory, handler_funcs
from pyk8s.client.rest import ApiError, Conflict, NotFound, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers

log = logging.getLogger("pyk8s.controllers.resourcequota")

Obj = dict[str, Any]

# Kinds whose objects the controller watches (upstream's replenishment for core kinds).
WATCHED = (("", "pods"), ("", "services"), ("", "configmaps"), ("", "secrets"),
           ("", "replicationcontrollers"), ("", "persistentvolumeclaims"))


class ResourceQuotaController:
    def __init__(self, client: Any, factory: SharedInformerFactory, *, workers: int = 5,
                 resync_period: float = 10.0) -> None:
        self.client = client
        self.workers = workers
        self.resync_period = resync_period
        self.queue: WorkQueue[str] = WorkQueue("resourcequota")
        self.factory = factory
        self.quotas = factory.informer("", "v1", "resourcequotas")
        self.informers: dict[tuple[str, str], SharedInformer] = {
            gr: factory.informer(gr[0], "v1", gr[1]) for gr in WATCHED}
        self._quota_handler = handler_funcs(
            on_add=self._enqueue_quota, on_update=self._quota_updated)
        self.quotas.add_event_handler(self._quota_handler)
        self._handlers: list[tuple[SharedInformer, Any]] = []
        for inf in self.informers.values():
            self._watch(inf)

    def _watch(self, inf: SharedInformer) -> None:
        h = handler_funcs(on_update=self._object_updated, on_delete=self._object_deleted)
        inf.add_event_handler(h)
        self._handlers.append((inf, h))

    # -- events ------------------------------------------------------------------------------
    def _enqueue_quota(self, q: Obj) -> None:
        md = q.get("metadata") or {}
        self.queue.add(f"{md.get('namespace')}/{md.get('name')}")

    def _quota_updated(self, old: Obj, new: Obj) -> None:
        """Only spec changes (or a status not yet matching it) need a recount: admission
        keeps `used` current for creations, and a recount racing a creation that was
        charged but not stored yet would give the charge back too early."""
        hard = (new.get("spec") or {}).get("hard") or {}
        if (old.get("spec") or {}) != (new.get("spec") or {}) or \
                (new.get("status") or {}).get("hard") != hard or \
                set((new.get("status") or {}).get("used") or {}) != set(hard):
            self._enqueue_quota(new)

    def _enqueue_namespace(self, namespace: str | None) -> None:
        if not namespace:
            return
        for q in self.quotas.store.list_namespace(namespace):
            self._enqueue_quota(q)

    def _object_updated(self, old: Obj, new: Obj) -> None:
        if quota.usage("", "pods", old) != quota.usage("", "pods", new) or \
                (old.get("spec") != new.get("spec")):
            self._enqueue_namespace((new.get("metadata") or {}).get("namespace"))

    def _object_deleted(self, obj: Obj) -> None:
        self._enqueue_namespace((obj.get("metadata") or {}).get("namespace"))

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            for q in self.quotas.store.list():
                self._enqueue_quota(q)

    # -- run -------------------------------------------------------------------------------
    async def run(self) -> None:
        resync = asyncio.get_running_loop().create_task(self._resync())
        try:
            await asyncio.gather(self.quotas.synced.wait(),
                                 *(i.synced.wait() for i in self.informers.values()))
            log.info("resource quota controller: synced")
            await run_workers(self.queue, self.sync, self.workers, name="resourcequota")
        finally:
            resync.cancel()
            self.queue.shutdown()
            self.quotas.remove_event_handler(self._quota_handler)
            for inf, h in self._handlers:
                inf.remove_event_handler(h)

    async def _objects(self, namespace: str, group: str, plural: str) -> list[Obj] | None:
        """The namespace's objects of a kind (None: they cannot be listed now)."""
        inf = self.informers.get((group, plural))
        if inf is not None and inf.has_synced():
            return inf.store.list_namespace(namespace)
        info = next((r for r in BUILTIN if r.group == group and r.plural == plural
                     and r.namespaced), None)
        out: list[Obj] = []
        try:
            if info is not None:
                version = info.version
            elif group:  # custom resources: the group's preferred version
                version = ((await self.client.get(f"/apis/{group}")).get(
                    "preferredVersion") or {}).get("version") or ""
            else:
                return None
            if inf is None and version:
                # an informer from now on (deletes replenish at once, as upstream's quota
                # monitors); until it has synced, the API answers
                inf = self.factory.informer(group, version, plural)
                self.informers[(group, plural)] = inf
                self._watch(inf)
            res = await self.client.list(resource_path(group, version, plural, namespace))
            out.extend(res.get("items") or [])
        except ApiError as e:
            log.debug("resource quota: cannot list %s.%s: %s", plural, group, e)
            return None
        return out

    async def sync(self, key: str) -> None:
        q = self.quotas.store.get(key)
        if q is None:
            return
        namespace = q["metadata"]["namespace"]
        hard = dict((q.get("spec") or {}).get("hard") or {})
        kinds: dict[tuple[str, str], list[Obj]] = {}
        unknown: set[tuple[str, str]] = set()
        for name in hard:
            gr = quota.resource_for(name)
            if gr is not None and gr not in kinds and gr not in unknown:
                objs = await self._objects(namespace, *gr)
                if objs is None:
                    unknown.add(gr)
                else:
                    kinds[gr] = objs
        used = quota.compute_used(q, kinds)
        status = q.get("status") or {}
        old_used = status.get("used") or {}
        for name in hard:  # kinds that could not be listed keep what admission charged
            if quota.resource_for(name) in unknown and name in old_used:
                used[name] = old_used[name]
        if status.get("hard") == hard and status.get("used") == used:
            return
        new = {**q, "status": {**status, "hard": hard, "used": used}}
        path = resource_path("", "v1", "resourcequotas", namespace, q["metadata"]["name"])
        try:
            await self.client.update(path + "/status", new)
        except (Conflict, NotFound):
            self.queue.add_after(key, 0.05)  # the informer brings the fresh quota


__all__ = ["ResourceQuotaController"]

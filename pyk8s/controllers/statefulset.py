"""The StatefulSet controller (upstream's `pkg/controller/statefulset/stateful_set.go`).

Level-triggered: handlers on StatefulSets and pods only enqueue `namespace/name` keys
(a pod turning Ready re-enqueues its set after `minReadySeconds`); `sync(key)`:

1. adopts the orphan ControllerRevisions matching the selector;
2. claims the pods: those matching the selector whose name is `<set>-<ordinal>` (adopted
   when orphaned, released when they stop matching);
3. hands them to `StatefulSetControl.update` (statefulset_control.py: ordered / parallel
   creation and deletion, claims, rolling updates, revisions, status);
4. re-enqueues the set after `minReadySeconds` while not every replica is available.

No expectations: pods have fixed names, so a create the informer has not yet seen fails
with AlreadyExists and the key is retried with backoff.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from pyk8s.api.selectors import LabelSelector, label_selector_from_dict
from pyk8s.client.events import EventRecorder
from pyk8s.client.informer import (EventHandlerFuncs, SharedInformerFactory, controller_ref,
                                   object_key)
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.controllers import statefulset_util as su
from pyk8s.controllers.controller_utils import (ControllerRefManager, DependentEventHandlers,
                                                controllers_selecting,
                                                recheck_deletion_timestamp,
                                                resolve_controller_ref)
from pyk8s.controllers.history import History, owned_revisions
from pyk8s.controllers.statefulset_control import (StatefulPodControl, StatefulSetControl,
                                                   sts_path)

log = logging.getLogger("pyk8s.controllers.statefulset")

Obj = dict[str, Any]

COMPONENT = "statefulset-controller"


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _selector(s: Obj) -> LabelSelector:
    return label_selector_from_dict(_spec(s).get("selector"))


class StatefulSetController:
    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: EventRecorder,
                 *, workers: int = 5) -> None:
        self.client = client
        self.recorder = recorder
        self.workers = workers
        self.queue: WorkQueue[str] = WorkQueue("statefulset")
        self.set_informer = factory.informer("apps", "v1", "statefulsets")
        self.pod_informer = factory.pods()
        self.pvc_informer = factory.informer("", "v1", "persistentvolumeclaims")
        self.revision_informer = factory.informer("apps", "v1", "controllerrevisions")
        self.history = History(client)
        self.pod_control = StatefulPodControl(client, recorder, self.pvc_informer)
        self.control = StatefulSetControl(client, self.pod_control, recorder,
                                          self.revision_informer)
        # No expectations, and a pod being deleted is not special on update (upstream).
        pod_events = DependentEventHandlers(
            self.resolve_controller_ref, self.sets_for_pod, self.enqueue,
            update_deleting=False, enqueue_after=self.enqueue_after)
        self.add_pod = pod_events.on_add
        self.update_pod = pod_events.on_update
        self.delete_pod = pod_events.on_delete
        self._handlers: list[tuple[Any, Any]] = [
            (self.set_informer, EventHandlerFuncs(self.add_set, self.update_set, self.enqueue)),
            (self.pod_informer, pod_events),
        ]
        for inf, h in self._handlers:
            inf.add_event_handler(h)

    async def run(self) -> None:
        try:
            await asyncio.gather(self.set_informer.synced.wait(),
                                 self.pod_informer.synced.wait(),
                                 self.pvc_informer.synced.wait(),
                                 self.revision_informer.synced.wait())
            log.info("%s: synced", COMPONENT)
            await run_workers(self.queue, self.sync, self.workers, name=COMPONENT)
        finally:
            self.queue.shutdown()
            for inf, h in self._handlers:
                inf.remove_event_handler(h)

    # -- event handlers -------------------------------------------------------------------
    def enqueue(self, s: Obj) -> None:
        self.queue.add(object_key(s))

    def enqueue_after(self, s: Obj, delay: float) -> None:
        self.queue.add_after(object_key(s), delay)

    def add_set(self, s: Obj) -> None:
        self.enqueue(s)

    def update_set(self, old: Obj, cur: Obj) -> None:
        self.enqueue(cur)

    def resolve_controller_ref(self, namespace: str, ref: Obj) -> Obj | None:
        return resolve_controller_ref(self.set_informer.store, namespace, ref, su.KIND)

    def sets_for_pod(self, pod: Obj) -> list[Obj]:
        return controllers_selecting(self.set_informer.store, pod, _selector)

    # -- sync -----------------------------------------------------------------------------
    def list_revisions(self, s: Obj) -> list[Obj]:
        ns = str(_md(s).get("namespace") or "")
        return owned_revisions(self.revision_informer.store.list_namespace(ns), s,
                               _selector(s))

    def _can_adopt(self, s: Obj) -> Callable[[], Any]:
        ns, name, uid = (str(_md(s).get("namespace") or ""), str(_md(s).get("name")),
                         str(_md(s).get("uid")))

        async def fresh() -> Obj:
            return await self.client.get(sts_path(ns, name))
        return recheck_deletion_timestamp(fresh, uid)

    async def adopt_orphan_revisions(self, s: Obj) -> list[Obj]:
        revisions = self.list_revisions(s)
        orphans = [r for r in revisions if controller_ref(r) is None]
        if not orphans:
            return revisions
        try:
            await self._can_adopt(s)()
        except Exception as e:
            raise RuntimeError(f"can't adopt ControllerRevisions: {e}") from e
        adopted = {str(_md(r).get("uid")): await self.history.adopt(s, su.API_VERSION, su.KIND,
                                                                    r) for r in orphans}
        return [adopted.get(str(_md(r).get("uid")), r) for r in revisions]

    async def pods_for_set(self, s: Obj, selector: LabelSelector) -> list[Obj]:
        ns = str(_md(s).get("namespace") or "")
        manager = ControllerRefManager(self.client, s, su.API_VERSION, su.KIND, selector,
                                       self._can_adopt(s))
        return await manager.claim(self.pod_informer.store.list_namespace(ns),
                                   lambda p: selector.matches(_md(p).get("labels"))
                                   and su.is_member_of(s, p))

    async def sync(self, key: str) -> None:
        s = self.set_informer.store.get(key)
        if s is None:
            log.debug("%s: %s has been deleted", COMPONENT, key)
            return
        try:
            selector = _selector(s)
        except ValueError as e:
            log.info("%s: %s has an invalid selector: %s", COMPONENT, key, e)
            return
        revisions = await self.adopt_orphan_revisions(s)
        pods = await self.pods_for_set(s, selector)
        status = await self.control.update(s, pods, revisions)
        min_ready = int(_spec(s).get("minReadySeconds") or 0)
        if min_ready > 0 and int(status.get("availableReplicas") or 0) != su.replicas(s):
            self.queue.add_after(key, float(min_ready))


__all__ = ["StatefulSetController"]

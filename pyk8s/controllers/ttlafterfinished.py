"""The TTL-after-finished controller (upstream's `pkg/controller/ttlafterfinished`).

A Job with `spec.ttlSecondsAfterFinished` that has finished (a True Complete or Failed
condition) is deleted once `lastTransitionTime` of that condition + the TTL has passed:
the key is requeued for the time left, and before deleting the Job is read again from the
API server and checked once more (the TTL may have changed). The delete is a cascading
Foreground one with a uid precondition, as upstream. Jobs being deleted are ignored.
Time comes from `clock` (injectable).
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, Callable

from pyk8s.api.meta import parse_time
from pyk8s.client.informer import EventHandlerFuncs, SharedInformerFactory, object_key, split_key
from pyk8s.client.rest import NotFound
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.controllers import job_util as ju
from pyk8s.controllers.job import job_path, utcnow

log = logging.getLogger("pyk8s.controllers.ttlafterfinished")

Obj = dict[str, Any]
COMPONENT = "ttl-after-finished-controller"


def needs_cleanup(job: Obj) -> bool:
    return (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None and \
        ju.is_finished(job)


def expire_time(job: Obj) -> datetime | None:
    """finish time + TTL, or None when the Job needs no cleanup (or has no finish time)."""
    if not needs_cleanup(job):
        return None
    cond = ju.finished_condition(job)
    finished = parse_time((cond or {}).get("lastTransitionTime"))
    if finished is None:
        return None
    return finished + timedelta(seconds=int(job["spec"]["ttlSecondsAfterFinished"]))


class TTLAfterFinishedController:
    """See the module docstring."""

    def __init__(self, client: Any, factory: SharedInformerFactory, *, workers: int = 5,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.workers = workers
        self.clock = clock
        self.queue: WorkQueue[str] = WorkQueue("ttl_jobs_to_delete")
        self.job_informer = factory.informer("batch", "v1", "jobs")
        self._handler = EventHandlerFuncs(self.add_job, lambda _o, n: self.add_job(n), None)
        self.job_informer.add_event_handler(self._handler)

    async def run(self) -> None:
        try:
            await self.job_informer.synced.wait()
            log.info("%s: synced", COMPONENT)
            await run_workers(self.queue, self.sync, self.workers, name=COMPONENT)
        finally:
            self.queue.shutdown()
            self.job_informer.remove_event_handler(self._handler)

    def add_job(self, job: Obj) -> None:
        if not (job.get("metadata") or {}).get("deletionTimestamp") and needs_cleanup(job):
            self.queue.add(object_key(job))

    def _time_left(self, key: str, job: Obj) -> float | None:
        """Seconds left before `job` expires (requeued then), 0 when expired, None when it
        needs no cleanup."""
        if (job.get("metadata") or {}).get("deletionTimestamp"):
            return None
        at = expire_time(job)
        if at is None:
            return None
        left = (at - self.clock()).total_seconds()
        if left > 0:
            self.queue.add_after(key, left)
            return left
        return 0.0

    async def sync(self, key: str) -> None:
        job = self.job_informer.store.get(key)
        if job is None or self._time_left(key, job) != 0.0:
            return
        ns, name = split_key(key)
        try:
            fresh = await self.client.get(job_path(ns, name))
        except NotFound:
            return
        if self._time_left(key, fresh) != 0.0:
            return
        log.info("%s: cleaning up Job %s", COMPONENT, key)
        try:
            await self.client.delete(job_path(ns, name), {
                "kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground",
                "preconditions": {"uid": fresh["metadata"]["uid"]}})
        except NotFound:
            pass


__all__ = ["TTLAfterFinishedController", "expire_time", "needs_cleanup"]

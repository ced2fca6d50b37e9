"""The CronJob controller (upstream's `pkg/controller/cronjob/cronjob_controllerv2.go`).

`sync(key)` for one CronJob, its Jobs being those whose controller reference names it:
1. history: finished Jobs beyond successfulJobsHistoryLimit / failedJobsHistoryLimit are
   deleted oldest first (by startTime), Background propagation (SuccessfulDelete);
2. status.active: finished Jobs leave it (SawCompletedJob), Jobs gone from the API server
   too (MissingJob); an unfinished Job not in it is reported (UnexpectedJob); the latest
   completionTime of a Complete Job becomes lastSuccessfulTime;
3. unless being deleted, suspended, or with an unknown time zone / unparseable schedule
   (UnknownTimeZone / UnparseableSchedule / InvalidSchedule warnings): the most recent
   unmet schedule time (TooManyMissedTimes warning past 100) starts a Job named
   `<cronjob>-<minutes since the epoch>` unless it is older than startingDeadlineSeconds
   (MissSchedule), already processed, or concurrencyPolicy Forbid sees an active Job
   (JobAlreadyActive); Replace deletes the active Jobs first. SuccessfulCreate, then the
   Job joins status.active and lastScheduleTime is set;
4. status is written once if anything changed, and the key is requeued for the next
   activation (+100 ms).

Time comes from `clock` (injectable: tests drive it, `clock_offset` shifts it).
"""
from __future__ import annotations

import asyncio
import copy
import logging
from datetime import datetime
from typing import Any, Callable

from pyk8s.api.meta import parse_time
from pyk8s.client.events import NORMAL, WARNING, EventRecorder
from pyk8s.client.informer import (CONTROLLER_UID_INDEX, EventHandlerFuncs,
                                   SharedInformerFactory, controller_ref,
                                   index_by_controller_uid, object_key, split_key)
from pyk8s.client.rest import AlreadyExists, ApiError, NotFound, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.controllers import cronjob_util as cu
from pyk8s.controllers import job_util as ju
from pyk8s.controllers.controller_utils import NAMESPACE_TERMINATING_CAUSE
from pyk8s.controllers.job import job_path, utcnow

log = logging.getLogger("pyk8s.controllers.cronjob")

Obj = dict[str, Any]
COMPONENT = "cronjob-controller"


def cronjob_path(namespace: str, name: str | None = None, sub: str | None = None) -> str:
    return resource_path("batch", "v1", "cronjobs", namespace, name, sub)


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def job_ref(job: Obj) -> Obj:
    """The ObjectReference status.active holds."""
    md = _md(job)
    return {"kind": "Job", "namespace": md.get("namespace"), "name": md.get("name"),
            "uid": md.get("uid"), "apiVersion": "batch/v1",
            "resourceVersion": md.get("resourceVersion")}


def _start_time_key(job: Obj) -> tuple[int, float, str]:
    """Oldest first; Jobs without startTime last, then by name (upstream's byJobStartTime)."""
    t = parse_time((job.get("status") or {}).get("startTime"))
    return (1, 0.0, str(_md(job).get("name"))) if t is None else \
        (0, t.timestamp(), str(_md(job).get("name")))


class CronJobController:
    """See the module docstring."""

    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: EventRecorder,
                 *, workers: int = 5, clock: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.recorder = recorder
        self.workers = workers
        self.clock = clock
        self.queue: WorkQueue[str] = WorkQueue("cronjob")
        self.cj_informer = factory.informer("batch", "v1", "cronjobs")
        self.job_informer = factory.informer("batch", "v1", "jobs",
                                             indexers={CONTROLLER_UID_INDEX:
                                                       index_by_controller_uid})
        self._cj_handler = EventHandlerFuncs(self.enqueue, lambda _o, n: self.enqueue(n), None)
        self._job_handler = EventHandlerFuncs(self.job_changed, self.update_job,
                                              self.job_changed)
        self.cj_informer.add_event_handler(self._cj_handler)
        self.job_informer.add_event_handler(self._job_handler)

    async def run(self) -> None:
        try:
            await asyncio.gather(self.cj_informer.synced.wait(),
                                 self.job_informer.synced.wait())
            log.info("%s: synced", COMPONENT)
            await run_workers(self.queue, self.sync, self.workers, name=COMPONENT)
        finally:
            self.queue.shutdown()
            self.cj_informer.remove_event_handler(self._cj_handler)
            self.job_informer.remove_event_handler(self._job_handler)

    # -- handlers -------------------------------------------------------------------------
    def enqueue(self, cj: Obj) -> None:
        self.queue.add(object_key(cj))

    def _owner(self, job: Obj, ref: Obj | None = None) -> Obj | None:
        ref = ref if ref is not None else controller_ref(job)
        if ref is None or ref.get("kind") != "CronJob":
            return None
        cj = self.cj_informer.store.get_by_name(_md(job).get("namespace"), str(ref.get("name")))
        if cj is None or _md(cj).get("uid") != ref.get("uid"):
            return None
        return cj

    def job_changed(self, job: Obj) -> None:
        cj = self._owner(job)
        if cj is not None:
            self.enqueue(cj)

    def update_job(self, old: Obj, cur: Obj) -> None:
        if controller_ref(old) != controller_ref(cur):
            self.job_changed(old)
        self.job_changed(cur)

    # -- sync -----------------------------------------------------------------------------
    def jobs_of(self, cj: Obj) -> list[Obj]:
        uid = str(_md(cj).get("uid"))
        return [j for j in self.job_informer.store.by_index(CONTROLLER_UID_INDEX, uid)
                if (controller_ref(j) or {}).get("kind") == "CronJob"
                and (controller_ref(j) or {}).get("name") == _md(cj).get("name")]

    async def sync(self, key: str) -> None:
        cached = self.cj_informer.store.get(key)
        if cached is None:
            return
        cj = copy.deepcopy(cached)
        jobs = self.jobs_of(cj)
        changed = await self.cleanup_finished_jobs(cj, jobs)
        requeue, changed_sync, err = await self.sync_cronjob(cj, jobs)
        if changed or changed_sync:
            await self.client.update(cronjob_path(_md(cj).get("namespace") or "",
                                                  str(_md(cj).get("name")), "status"), cj)
        if requeue is not None:
            self.queue.add_after(key, requeue)
            return
        if err is not None:
            raise err

    async def cleanup_finished_jobs(self, cj: Obj, jobs: list[Obj]) -> bool:
        spec = cj.get("spec") or {}
        ok_limit, failed_limit = spec.get("successfulJobsHistoryLimit"), \
            spec.get("failedJobsHistoryLimit")
        if ok_limit is None and failed_limit is None:
            return False
        succeeded = [j for j in jobs if ju.is_succeeded(j)]
        failed = [j for j in jobs if ju.is_finished(j) and not ju.is_succeeded(j)]
        changed = False
        for group, limit in ((succeeded, ok_limit), (failed, failed_limit)):
            if limit is None or len(group) <= int(limit):
                continue
            group.sort(key=_start_time_key)
            for job in group[:len(group) - int(limit)]:
                if await self.delete_job(cj, job):
                    changed = True
        return changed

    async def delete_job(self, cj: Obj, job: Obj) -> bool:
        md = _md(job)
        try:
            await self.client.delete(job_path(md.get("namespace") or "", str(md.get("name"))),
                                     {"kind": "DeleteOptions", "apiVersion": "v1",
                                      "propagationPolicy": "Background"})
        except ApiError as e:
            self.recorder.event(cj, WARNING, "FailedDelete", f"Deleted job: {e.message}")
            return False
        self._remove_active(cj, str(md.get("uid")))
        self.recorder.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {md.get('name')}")
        return True

    @staticmethod
    def _active(cj: Obj) -> list[Obj]:
        return list((cj.get("status") or {}).get("active") or [])

    @staticmethod
    def _set_active(cj: Obj, refs: list[Obj]) -> None:
        status = cj.setdefault("status", {})
        if refs:
            status["active"] = refs
        else:
            status.pop("active", None)

    def _remove_active(self, cj: Obj, uid: str) -> None:
        self._set_active(cj, [r for r in self._active(cj) if r.get("uid") != uid])

    async def reconcile_active(self, cj: Obj, jobs: list[Obj]) -> bool:
        """Step 2 of the module docstring."""
        changed = False
        children = set()
        status = cj.setdefault("status", {})
        for job in jobs:
            uid = str(_md(job).get("uid"))
            children.add(uid)
            found = any(r.get("uid") == uid for r in self._active(cj))
            if not found and not ju.is_finished(job):
                self.recorder.event(cj, WARNING, "UnexpectedJob", "Saw a job that the "
                                    f"controller did not create or forgot: {_md(job).get('name')}")
            elif found and ju.is_finished(job):
                cond = ju.finished_condition(job) or {}
                self._remove_active(cj, uid)
                self.recorder.event(cj, NORMAL, "SawCompletedJob", f"Saw completed job: "
                                    f"{_md(job).get('name')}, condition: {cond.get('type')}")
                changed = True
            elif ju.is_succeeded(job):
                done = (job.get("status") or {}).get("completionTime")
                last = status.get("lastSuccessfulTime")
                if done and (last is None or parse_time(done) > parse_time(last)):  # type: ignore[operator]
                    status["lastSuccessfulTime"] = done
                    changed = True
        for ref in self._active(cj):
            if ref.get("uid") in children:
                continue
            try:
                await self.client.get(job_path(str(ref.get("namespace")), str(ref.get("name"))))
            except NotFound:
                self.recorder.event(cj, NORMAL, "MissingJob",
                                    f"Active job went missing: {ref.get('name')}")
                self._remove_active(cj, str(ref.get("uid")))
                changed = True
        return changed

    async def sync_cronjob(self, cj: Obj, jobs: list[Obj]
                           ) -> tuple[float | None, bool, Exception | None]:
        """(requeue after, status changed, error): steps 2 and 3 of the module docstring."""
        now = self.clock()
        changed = await self.reconcile_active(cj, jobs)
        spec = cj.get("spec") or {}
        if _md(cj).get("deletionTimestamp"):
            return None, changed, None
        tz = spec.get("timeZone")
        if tz is not None:
            try:
                cu.load_zone(str(tz))
            except ValueError as e:
                self.recorder.event(cj, WARNING, "UnknownTimeZone",
                                    f'invalid timeZone: "{tz}": {e}')
                return None, changed, None
        if spec.get("suspend") is True:
            return None, changed, None
        schedule_text = cu.format_schedule(cj)
        if tz is not None and "TZ" in str(spec.get("schedule") or ""):
            self.recorder.event(cj, WARNING, "UnsupportedSchedule",
                                f'CRON_TZ or TZ used in schedule "{spec.get("schedule")}" is '
                                "not officially supported, see https://kubernetes.io/docs/"
                                "concepts/workloads/controllers/cron-jobs/ for more details")
        try:
            sched = cu.parse_schedule(schedule_text)
        except ValueError as e:
            self.recorder.event(cj, WARNING, "UnparseableSchedule",
                                f'unparseable schedule: "{spec.get("schedule")}" : {e}')
            return None, changed, None
        try:
            missed = cu.most_recent_schedule_time(cj, now, sched, True)
        except ValueError as e:
            self.recorder.event(cj, WARNING, "InvalidSchedule",
                                f"invalid schedule: {spec.get('schedule')} : {e}")
            return None, changed, None
        scheduled = missed.most_recent
        if scheduled is None or scheduled > now:
            return cu.next_schedule_delay(cj, now, sched), changed, None
        if missed.count > cu.TOO_MANY_MISSED:
            self.recorder.event(cj, WARNING, "TooManyMissedTimes",
                                f"too many missed start times: {missed.count}. Set or decrease "
                                ".spec.startingDeadlineSeconds or check clock skew")
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and (scheduled.timestamp() + int(deadline)) < now.timestamp():
            self.recorder.event(cj, WARNING, "MissSchedule",
                                "Missed scheduled time to start a job: "
                                f"{scheduled.strftime('%a, %d %b %Y %H:%M:%S +0000')}")
            return cu.next_schedule_delay(cj, now, sched), changed, None
        name = cu.job_name(cj, scheduled)
        last = parse_time((cj.get("status") or {}).get("lastScheduleTime"))
        if any(r.get("name") == name for r in self._active(cj)) or last == scheduled:
            return cu.next_schedule_delay(cj, now, sched), changed, None
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and self._active(cj):
            self.recorder.event(cj, NORMAL, "JobAlreadyActive", "Not starting job because "
                                "prior execution is running and concurrency policy is Forbid")
            return cu.next_schedule_delay(cj, now, sched), changed, None
        if policy == "Replace":
            for ref in self._active(cj):
                try:
                    job = await self.client.get(job_path(str(ref.get("namespace")),
                                                         str(ref.get("name"))))
                except ApiError as e:
                    self.recorder.event(cj, WARNING, "FailedGet", f"Get job: {e.message}")
                    return None, changed, e
                if not await self.delete_job(cj, job):
                    return None, changed, RuntimeError(
                        f"could not replace job {ref.get('namespace')}/{ref.get('name')}")
                changed = True
        created, err = await self.create_job(cj, scheduled)
        if created is None:
            return None, changed, err
        self._set_active(cj, [*self._active(cj), job_ref(created)])
        cj.setdefault("status", {})["lastScheduleTime"] = cu.go_rfc3339(scheduled)
        return cu.next_schedule_delay(cj, now, sched), True, None

    async def create_job(self, cj: Obj, scheduled: datetime) -> tuple[Obj | None, Exception | None]:
        """Create the Job for `scheduled` (None when there is nothing to add to active)."""
        ns = _md(cj).get("namespace") or ""
        req = cu.job_from_template(cj, scheduled)
        try:
            created: Obj = await self.client.create(job_path(ns), req)
        except AlreadyExists:
            job: Obj = await self.client.get(job_path(ns, req["metadata"]["name"]))
            ref = controller_ref(job)
            if ref is None or ref.get("uid") != _md(cj).get("uid"):
                return None, None
            if any(r.get("uid") == _md(job).get("uid") for r in self._active(cj)):
                return None, None
            log.info("%s: job %s already exists", COMPONENT, _md(job).get("name"))
            return job, None
        except ApiError as e:
            if not e.has_cause(NAMESPACE_TERMINATING_CAUSE):
                self.recorder.event(cj, WARNING, "FailedCreate", f"Error creating job: {e.message}")
            return None, e
        self.recorder.event(cj, NORMAL, "SuccessfulCreate", f"Created job {_md(created).get('name')}")
        return created, None


__all__ = ["CronJobController", "job_ref", "cronjob_path", "split_key"]

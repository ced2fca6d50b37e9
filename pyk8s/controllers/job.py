"""The Job controller (upstream's `pkg/controller/job/job_controller.go`, batch/v1 as of
Kubernetes 1.31+).

Level-triggered: handlers enqueue `namespace/name`; `sync(key)` does the rest.

- Pods: created from the template with generateName `<job>-` (Indexed: `<job>-<index>-`,
  hostname `<job>-<index>`, the completion-index annotation and label, JOB_COMPLETION_INDEX
  in every container), the controller reference, the `batch.kubernetes.io/job-tracking`
  finalizer, and the controller-uid / job-name labels (new and legacy) when the template
  lacks them. Active pods: `min(parallelism, completions - succeeded)` (nil completions:
  `parallelism` until one pod succeeds, then no new pods); extra pods, duplicate /
  out-of-range / already-succeeded indexes and, while suspended, every active pod are
  deleted (finalizer removed first, so they do not count as failures).
- Tracking: a finished pod that still carries the finalizer is first recorded in
  `status.uncountedTerminatedPods` (Indexed successes go straight to completedIndexes), then
  its finalizer is removed, then it moves to `succeeded` / `failed`: a pod is counted once
  and never lost, also when it is deleted (a deleted unfinished pod is a failure unless only
  Failed pods are replaced). Expectations (creations, deletions, finalizer removals) make a
  sync wait for the informer.
- Failure: new failures beyond backoffLimit (BackoffLimitExceeded; restartPolicy OnFailure:
  container restarts), activeDeadlineSeconds since startTime (DeadlineExceeded), a FailJob
  rule of the podFailurePolicy (PodFailurePolicy), backoffLimitPerIndex (FailedIndexes,
  MaxFailedIndexesExceeded): the interim FailureTarget condition is written, active pods
  are deleted, and Failed (same reason and message) follows once no pod is terminating and
  nothing is uncounted. Success: SuccessCriteriaMet (CompletionsReached), then Complete and
  completionTime. Events: Completed, or a Warning with the failure's reason.
- Pod re-creation after failures waits `backoff_base * 2**(n-1)` seconds (max 6 minutes).
- suspend: condition Suspended (JobSuspended / JobResumed), events Suspended / Resumed;
  resuming resets startTime.
- Pods whose Job is gone or finished lose the finalizer (the orphan queue).

Time comes from `clock` (injectable). Jobs with `spec.managedBy` other than
`kubernetes.io/job-controller` are left alone.
"""
from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from pyk8s.api.meta import parse_time
from pyk8s.api.selectors import LabelSelector, label_selector_from_dict
from pyk8s.client.events import NORMAL, WARNING, EventRecorder
from pyk8s.client.informer import (CONTROLLER_UID_INDEX, EventHandlerFuncs,
                                   SharedInformerFactory, controller_ref,
                                   index_by_controller_uid, object_key, split_key)
from pyk8s.client.rest import ApiError, NotFound, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.controllers import job_util as ju
from pyk8s.controllers.controller_utils import (NAMESPACE_TERMINATING_CAUSE,
                                                SLOW_START_INITIAL_BATCH_SIZE,
                                                ControllerEventHandlers, ControllerRefManager,
                                                PodControl, UIDTrackingControllerExpectations,
                                                filter_active_pods, is_pod_ready,
                                                new_controller_ref, pod_key,
                                                pods_to_delete, recheck_deletion_timestamp,
                                                resolve_controller_ref, slow_start_batch)

log = logging.getLogger("pyk8s.controllers.job")

Obj = dict[str, Any]
Clock = Callable[[], datetime]
COMPONENT = "job-controller"
API_VERSION = "batch/v1"
KIND = "Job"
REMOVE_FINALIZER_PATCH = {"metadata": {"$deleteFromPrimitiveList/finalizers":
                                       [ju.JOB_TRACKING_FINALIZER]}}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def job_path(namespace: str, name: str | None = None, sub: str | None = None) -> str:
    return resource_path("batch", "v1", "jobs", namespace, name, sub)


def pod_path(pod: Obj) -> str:
    return f"/api/v1/namespaces/{_md(pod).get('namespace')}/pods/{_md(pod).get('name')}"


def job_selector(job: Obj) -> LabelSelector:
    """spec.selector; without one (the API server did not generate it) the controller-uid
    label the pods it creates carry."""
    sel = _spec(job).get("selector")
    if sel is None:
        return label_selector_from_dict({"matchLabels": {
            ju.CONTROLLER_UID_LABEL: str(_md(job).get("uid"))}})
    return label_selector_from_dict(sel)


class FinalizerExpectations:
    """Per Job: uids of pods whose finalizer removal the informer has not shown yet."""

    def __init__(self) -> None:
        self._uids: dict[str, set[str]] = {}

    def expect_removed(self, key: str, uids: list[str]) -> None:
        self._uids.setdefault(key, set()).update(uids)

    def observed(self, key: str, uid: str) -> None:
        s = self._uids.get(key)
        if s is not None:
            s.discard(uid)
            if not s:
                del self._uids[key]

    def expected(self, key: str) -> set[str]:
        return set(self._uids.get(key, ()))

    def satisfied(self, key: str) -> bool:
        return not self._uids.get(key)

    def delete(self, key: str) -> None:
        self._uids.pop(key, None)


@dataclass
class SyncCtx:
    """What one sync knows (upstream's syncJobCtx)."""
    job: Obj
    status: Obj
    pods: list[Obj]
    active_pods: list[Obj]
    uncounted_succeeded: list[str]
    uncounted_failed: list[str]
    succeeded: int
    failed: int
    terminating: int
    finished: Obj | None = None
    deleted_now: int = 0            # pods this sync deleted: terminating, unseen yet
    prev_succeeded: ju.Intervals = field(default_factory=ju.Intervals)
    succeeded_indexes: ju.Intervals = field(default_factory=ju.Intervals)
    failed_indexes: ju.Intervals = field(default_factory=ju.Intervals)
    backoff: ju.BackoffRecord = field(default_factory=ju.BackoffRecord)


class JobController:
    """See the module docstring."""

    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: EventRecorder,
                 *, workers: int = 5, clock: Clock = utcnow,
                 backoff_base: float = ju.DEFAULT_BACKOFF,
                 backoff_max: float = ju.MAX_BACKOFF) -> None:
        self.client = client
        self.recorder = recorder
        self.workers = workers
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.pod_control = PodControl(client, recorder)
        self.expectations = UIDTrackingControllerExpectations()
        self.finalizer_expectations = FinalizerExpectations()
        self.backoffs: dict[str, ju.BackoffRecord] = {}
        self.queue: WorkQueue[str] = WorkQueue("job")
        self.orphan_queue: WorkQueue[str] = WorkQueue("job-orphan-pod")
        self.job_informer = factory.informer("batch", "v1", "jobs")
        self.pod_informer = factory.pods(indexers={CONTROLLER_UID_INDEX:
                                                   index_by_controller_uid})
        self._job_handler = ControllerEventHandlers(self.enqueue, self.forget_job)
        self.update_job = self._job_handler.on_update
        self.delete_job = self._job_handler.on_delete
        self._pod_handler = EventHandlerFuncs(self.add_pod, self.update_pod, self.delete_pod)
        self.job_informer.add_event_handler(self._job_handler)
        self.pod_informer.add_event_handler(self._pod_handler)

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await asyncio.gather(self.job_informer.synced.wait(),
                                 self.pod_informer.synced.wait())
            log.info("%s: synced", COMPONENT)
            await asyncio.gather(
                run_workers(self.queue, self.sync, self.workers, name=COMPONENT),
                run_workers(self.orphan_queue, self.sync_orphan_pod, 1,
                            name=f"{COMPONENT}-orphans"))
        finally:
            self.queue.shutdown()
            self.orphan_queue.shutdown()
            self.job_informer.remove_event_handler(self._job_handler)
            self.pod_informer.remove_event_handler(self._pod_handler)

    # -- handlers -------------------------------------------------------------------------
    def enqueue(self, job: Obj) -> None:
        self.queue.add(object_key(job))

    def forget_job(self, job: Obj) -> None:
        """A deleted Job: its expectations and backoff go; its pods that still carry the
        tracking finalizer are queued for its removal."""
        key = object_key(job)
        self.expectations.delete_expectations(key)
        self.finalizer_expectations.delete(key)
        self.backoffs.pop(key, None)
        uid = str(_md(job).get("uid"))
        for pod in self.pod_informer.store.by_index(CONTROLLER_UID_INDEX, uid):
            if ju.has_tracking_finalizer(pod):
                self.orphan_queue.add(pod_key(pod))

    def resolve(self, namespace: str, ref: Obj | None) -> Obj | None:
        return resolve_controller_ref(self.job_informer.store, namespace, ref, KIND, "batch")

    def _owner_or_orphan(self, pod: Obj) -> Obj | None:
        """The pod's live, unfinished Job; otherwise queue the pod for finalizer removal."""
        job = self.resolve(_md(pod).get("namespace") or "", controller_ref(pod))
        if job is None or ju.is_finished(job):
            if ju.has_tracking_finalizer(pod):
                self.orphan_queue.add(pod_key(pod))
            return None
        return job

    def add_pod(self, pod: Obj) -> None:
        if _md(pod).get("deletionTimestamp"):
            self.delete_pod(pod, final=False)
            return
        job = self._owner_or_orphan(pod)
        if job is not None:
            key = object_key(job)
            self.expectations.creation_observed(key)
            self.queue.add(key)

    def update_pod(self, old: Obj, cur: Obj) -> None:
        if _md(old).get("resourceVersion") == _md(cur).get("resourceVersion"):
            return
        if _md(cur).get("deletionTimestamp"):
            self.delete_pod(cur, final=False)
        old_ref, cur_ref = controller_ref(old), controller_ref(cur)
        ns = _md(cur).get("namespace") or ""
        if old_ref != cur_ref:
            prev = self.resolve(ns, old_ref)
            if prev is not None:
                self.enqueue(prev)
        job = self._owner_or_orphan(cur)
        if job is None:
            return
        key = object_key(job)
        if not ju.has_tracking_finalizer(cur):
            self.finalizer_expectations.observed(key, str(_md(cur).get("uid")))
        self.queue.add(key)

    def delete_pod(self, pod: Obj, final: bool = True) -> None:
        job = self.resolve(_md(pod).get("namespace") or "", controller_ref(pod))
        if job is None:
            if not final and ju.has_tracking_finalizer(pod):
                self.orphan_queue.add(pod_key(pod))
            return
        key = object_key(job)
        self.expectations.deletion_observed(key, pod_key(pod))
        if final:
            self.finalizer_expectations.observed(key, str(_md(pod).get("uid")))
        self.queue.add(key)

    # -- orphan pods ----------------------------------------------------------------------
    async def sync_orphan_pod(self, key: str) -> None:
        """Remove the tracking finalizer from a pod whose Job is gone or finished."""
        pod = self.pod_informer.store.get(key)
        if pod is None or not ju.has_tracking_finalizer(pod):
            return
        ns = _md(pod).get("namespace") or ""
        ref = controller_ref(pod)
        job = self.resolve(ns, ref)
        if job is None and ref is not None and ref.get("kind") == KIND:
            try:  # the informer may lag behind: ask the API server
                fresh = await self.client.get(job_path(ns, str(ref.get("name"))))
                if _md(fresh).get("uid") == ref.get("uid"):
                    job = fresh
            except NotFound:
                pass
        if job is not None and not ju.is_finished(job):
            return
        try:
            await self.client.patch(pod_path(pod), REMOVE_FINALIZER_PATCH, "strategic")
        except NotFound:
            pass

    # -- sync -----------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        job = self.job_informer.store.get(key)
        if job is None:
            self.expectations.delete_expectations(key)
            self.finalizer_expectations.delete(key)
            self.backoffs.pop(key, None)
            return
        managed_by = _spec(job).get("managedBy")
        if managed_by and managed_by != ju.JOB_CONTROLLER_NAME:
            return
        if ju.is_finished(job):
            self.backoffs.pop(key, None)
            return
        satisfied = self.expectations.satisfied_expectations(key) and \
            self.finalizer_expectations.satisfied(key)
        pods = await self.claim_pods(job)
        ctx = self.new_ctx(key, job, pods)
        now = self.clock()
        status = ctx.status
        if not status.get("startTime") and not ju.is_suspended(job):
            status["startTime"] = ju.rfc3339(now)
        ctx.finished = self.failure_condition(key, job, ctx, now)
        active = len(ctx.active_pods)
        ready = sum(1 for p in ctx.active_pods if is_pod_ready(p))
        manage_err: Exception | None = None
        if ctx.finished is not None:
            try:
                deleted, deleted_ready = await self.delete_active_pods(job, ctx.active_pods)
            except Exception as e:  # noqa: BLE001 - retried by the queue
                deleted, deleted_ready, manage_err = 0, 0, e
            active -= deleted
            ready -= deleted_ready
            ctx.deleted_now = deleted
        else:
            manage_called = False
            if satisfied and not _md(job).get("deletionTimestamp"):
                try:
                    active = await self.manage(key, job, ctx, now)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001
                    manage_err = e
                manage_called = True
            c = ju.completions(job)
            complete = ctx.succeeded > 0 and active == 0 if c is None else \
                ctx.succeeded >= c and active == 0
            if complete:
                ctx.finished = ju.new_condition(ju.SUCCESS_CRITERIA_MET, "True",
                                                ju.REASON_COMPLETIONS_REACHED,
                                                ju.MSG_COMPLETIONS_REACHED, now)
            elif manage_called:
                self.update_suspended_condition(job, status, now)
        status["active"] = active
        status["ready"] = max(ready, 0)
        status["terminating"] = ctx.terminating
        await self.track_and_remove_finalizers(key, ctx, satisfied)
        self.backoffs[key] = ctx.backoff
        if manage_err is not None:
            raise manage_err

    def new_ctx(self, key: str, job: Obj, pods: list[Obj]) -> SyncCtx:
        status = copy.deepcopy(job.get("status") or {})
        uncounted = status.get("uncountedTerminatedPods") or {}
        us, uf = list(uncounted.get("succeeded") or []), list(uncounted.get("failed") or [])
        status["uncountedTerminatedPods"] = uncounted
        new_s, new_f = [], []
        for p in pods:
            uid = str(_md(p).get("uid"))
            if not ju.has_tracking_finalizer(p) or uid in us or uid in uf:
                continue
            if ju.phase(p) == "Succeeded":
                new_s.append(p)
            elif ju.is_pod_failed(p, job):
                new_f.append(p)
        policy = _spec(job).get("podFailurePolicy")
        counted_f = [p for p in new_f if ju.match_pod_failure_policy(policy, p)[1]]
        ctx = SyncCtx(
            job=job, status=status, pods=pods, active_pods=filter_active_pods(pods),
            uncounted_succeeded=us, uncounted_failed=uf,
            succeeded=int(status.get("succeeded") or 0) + len(new_s) + len(us),
            failed=int(status.get("failed") or 0) + len(counted_f) + len(uf),
            terminating=sum(1 for p in pods if ju.is_terminating(p)))
        ctx.backoff = ju.new_backoff_record(self.backoffs.get(key), new_s, new_f, self.clock())
        if ju.is_indexed(job):
            comp = ju.completions(job) or 0
            ctx.prev_succeeded = ju.Intervals.parse(status.get("completedIndexes"), comp)
            ctx.succeeded_indexes = ctx.prev_succeeded.with_indexes(
                ju.completion_index(p) for p in pods
                if ju.phase(p) == "Succeeded" and ju.valid_index(p, job)
                and ju.has_tracking_finalizer(p))
            ctx.succeeded = ctx.succeeded_indexes.total()
            ctx.failed_indexes = self.failed_indexes(job, pods, status)
        return ctx

    def failed_indexes(self, job: Obj, pods: list[Obj], status: Obj) -> ju.Intervals:
        """backoffLimitPerIndex: indexes whose failures exceed it or hit a FailIndex rule."""
        if not ju.has_backoff_limit_per_index(job):
            return ju.Intervals()
        comp = ju.completions(job) or 0
        limit = int(_spec(job).get("backoffLimitPerIndex") or 0)
        policy = _spec(job).get("podFailurePolicy")
        out = ju.Intervals.parse(status.get("failedIndexes"), comp).indexes()
        for p in pods:
            if not (ju.has_tracking_finalizer(p) and ju.is_pod_failed(p, job)
                    and ju.valid_index(p, job)):
                continue
            _, counts, action = ju.match_pod_failure_policy(policy, p)
            if action == "FailIndex" or (counts and ju.index_failure_count(p) >= limit):
                out.append(ju.completion_index(p))
        return ju.Intervals.of(out)

    def failure_condition(self, key: str, job: Obj, ctx: SyncCtx, now: datetime) -> Obj | None:
        """The interim FailureTarget (or, once written, the final Failed) condition this
        sync decides on, if any; also requeues for activeDeadlineSeconds."""
        ft = ju.has_true_condition(job, ju.FAILURE_TARGET)
        if ft is not None:
            return ju.new_condition(ju.FAILED, "True", ft.get("reason") or "",
                                    ft.get("message") or "", now)
        sm = ju.has_true_condition(job, ju.SUCCESS_CRITERIA_MET)
        if sm is not None:
            return ju.new_condition(ju.COMPLETE, "True", sm.get("reason") or "",
                                    sm.get("message") or "", now)
        msg = ju.fail_job_message(job, ctx.pods)
        if msg is not None:
            return ju.new_condition(ju.FAILURE_TARGET, "True", ju.REASON_POD_FAILURE_POLICY,
                                    msg, now)
        status = job.get("status") or {}
        new_failure = ctx.failed > int(status.get("failed") or 0)
        exceeds = new_failure and len(ctx.active_pods) != ju.parallelism(job) and \
            ctx.failed > ju.backoff_limit(job) and not ju.has_backoff_limit_per_index(job)
        if exceeds or ju.past_backoff_limit_on_failure(job, ctx.pods):
            return ju.new_condition(ju.FAILURE_TARGET, "True", ju.REASON_BACKOFF_LIMIT_EXCEEDED,
                                    ju.MSG_BACKOFF_LIMIT, now)
        deadline = _spec(job).get("activeDeadlineSeconds")
        start = ctx.status.get("startTime")
        if deadline is not None and start and not ju.is_suspended(job):
            started = parse_time(start)
            if started is not None:
                left = float(deadline) - (now - started).total_seconds()
                if left <= 0:
                    return ju.new_condition(ju.FAILURE_TARGET, "True",
                                            ju.REASON_DEADLINE_EXCEEDED, ju.MSG_DEADLINE, now)
                self.queue.add_after(key, left)
        if ju.is_indexed(job) and ju.has_backoff_limit_per_index(job):
            nfailed = ctx.failed_indexes.total()
            max_failed = _spec(job).get("maxFailedIndexes")
            if max_failed is not None and nfailed > int(max_failed):
                return ju.new_condition(ju.FAILURE_TARGET, "True",
                                        ju.REASON_MAX_FAILED_INDEXES_EXCEEDED,
                                        ju.MSG_MAX_FAILED_INDEXES, now)
            if nfailed > 0 and nfailed + ctx.succeeded_indexes.total() >= (
                    ju.completions(job) or 0):
                return ju.new_condition(ju.FAILURE_TARGET, "True", ju.REASON_FAILED_INDEXES,
                                        ju.MSG_FAILED_INDEXES, now)
        return None

    def update_suspended_condition(self, job: Obj, status: Obj, now: datetime) -> None:
        conds: list[Obj] = status.setdefault("conditions", [])
        if ju.is_suspended(job):
            if ju.ensure_condition(conds, ju.SUSPENDED, "True", "JobSuspended", "Job suspended",
                                   now):
                self.recorder.event(job, NORMAL, "Suspended", "Job suspended")
        elif ju.ensure_condition(conds, ju.SUSPENDED, "False", "JobResumed", "Job resumed", now):
            self.recorder.event(job, NORMAL, "Resumed", "Job resumed")
            status["startTime"] = ju.rfc3339(now)
        if not conds:
            status.pop("conditions", None)

    async def claim_pods(self, job: Obj) -> list[Obj]:
        md = _md(job)
        ns, name, uid = md.get("namespace") or "", str(md.get("name")), str(md.get("uid"))
        try:
            selector = job_selector(job)
        except ValueError as e:
            log.info("%s: %s/%s has an invalid selector: %s", COMPONENT, ns, name, e)
            return []

        async def fresh() -> Obj:
            return await self.client.get(job_path(ns, name))
        manager = ControllerRefManager(self.client, job, API_VERSION, KIND, selector,
                                       recheck_deletion_timestamp(fresh, uid))
        return await manager.claim(self.pod_informer.store.list_namespace(ns))

    # -- managing pods --------------------------------------------------------------------
    async def manage(self, key: str, job: Obj, ctx: SyncCtx, now: datetime) -> int:
        """Create or delete pods toward the wanted number of active ones; returns the
        number of active pods afterwards (upstream's manageJob)."""
        active_pods = ctx.active_pods
        active = len(active_pods)
        if ju.is_suspended(job):
            victims = list(active_pods)
            if victims:
                self.expectations.expect_deletions(key, [pod_key(p) for p in victims])
                active -= await self.delete_job_pods(key, job, victims)
            return active
        c = ju.completions(job)
        par = ju.parallelism(job)
        if c is None:
            want = active if ctx.succeeded > 0 else par
        else:
            want = max(0, min(c - ctx.succeeded, par))
        victims = self.pods_for_removal(job, ctx, max(0, active - want))
        if victims:
            self.expectations.expect_deletions(key, [pod_key(p) for p in victims])
            active -= await self.delete_job_pods(key, job, victims)
            return active
        terminating = ctx.terminating if ju.only_replace_failed_pods(job) else 0
        diff = want - terminating - active
        if diff <= 0:
            return active
        wait = ctx.backoff.remaining(now, self.backoff_base, self.backoff_max)
        if wait > 0:
            self.queue.add_after(key, wait)
            return active
        diff = min(diff, ju.MAX_POD_CREATE_DELETE_PER_SYNC)
        indexes: list[int] = []
        if ju.is_indexed(job):
            indexes = ju.first_pending_indexes(active_pods, ctx.succeeded_indexes, diff, c or 0,
                                               job, ctx.failed_indexes)
            diff = len(indexes)
            if diff == 0:
                return active
        self.expectations.expect_creations(key, diff)
        pending = list(indexes)

        async def create() -> None:
            ix = pending.pop(0) if pending else None
            try:
                await self.create_pod(job, ix)
            except ApiError as e:
                if e.has_cause(NAMESPACE_TERMINATING_CAUSE):
                    return
                raise
        successes, err = await slow_start_batch(diff, SLOW_START_INITIAL_BATCH_SIZE, create)
        for _ in range(diff - successes):
            self.expectations.creation_observed(key)
        active += successes
        if err is not None:
            raise err
        return active

    def pods_for_removal(self, job: Obj, ctx: SyncCtx, rm_at_least: int) -> list[Obj]:
        """Active pods to delete: (Indexed) those with an invalid, succeeded or duplicate
        index, then the `rm_at_least` upstream's ranking picks first."""
        pods = list(ctx.active_pods)
        out: list[Obj] = []
        if ju.is_indexed(job):
            seen: dict[int, Obj] = {}
            keep: list[Obj] = []
            for p in sorted(pods, key=lambda p: (not is_pod_ready(p),
                                                 _md(p).get("creationTimestamp") or "")):
                ix = ju.completion_index(p)
                if not ju.valid_index(p, job) or ix in ctx.succeeded_indexes or ix in seen:
                    out.append(p)
                else:
                    seen[ix] = p
                    keep.append(p)
            pods = keep
        rest = rm_at_least - len(out)
        if rest > 0:
            out += pods_to_delete(pods, [], rest)
        return out

    def pod_template(self, job: Obj, index: int | None) -> Obj:
        template = copy.deepcopy(_spec(job).get("template") or {})
        md = template.setdefault("metadata", {})
        jmd = _md(job)
        if not _spec(job).get("manualSelector"):
            labels = md.setdefault("labels", {})
            for k, v in ((ju.CONTROLLER_UID_LABEL, jmd.get("uid")),
                         (ju.JOB_NAME_LABEL, jmd.get("name")),
                         (ju.LEGACY_CONTROLLER_UID_LABEL, jmd.get("uid")),
                         (ju.LEGACY_JOB_NAME_LABEL, jmd.get("name"))):
                labels.setdefault(k, str(v))
        finalizers = md.setdefault("finalizers", [])
        if ju.JOB_TRACKING_FINALIZER not in finalizers:
            finalizers.append(ju.JOB_TRACKING_FINALIZER)
        if index is not None:
            template = ju.add_completion_index(template, str(jmd.get("name")), index)
        return template

    async def create_pod(self, job: Obj, index: int | None) -> Obj:
        ns, name = _md(job).get("namespace") or "", str(_md(job).get("name"))
        return await self.pod_control.create_pods(
            ns, self.pod_template(job, index), job, new_controller_ref(job, API_VERSION, KIND),
            generate_name=f"{name}-{index}-" if index is not None else f"{name}-")

    async def delete_job_pods(self, key: str, job: Obj, pods: list[Obj]) -> int:
        """Remove the finalizer, then delete (upstream's deleteJobPods): such pods are not
        counted as failures. Returns the number deleted; raises the first error."""
        ns = _md(job).get("namespace") or ""

        async def one(pod: Obj) -> bool:
            try:
                if ju.has_tracking_finalizer(pod):
                    await self.client.patch(pod_path(pod), REMOVE_FINALIZER_PATCH, "strategic")
                await self.pod_control.delete_pod(ns, str(_md(pod).get("name")), job)
                return True
            except Exception as e:
                self.expectations.deletion_observed(key, pod_key(pod))
                if isinstance(e, NotFound):
                    return False
                raise
        return await _gather_count(one(p) for p in pods)

    async def delete_active_pods(self, job: Obj, pods: list[Obj]) -> tuple[int, int]:
        """Delete keeping the finalizers (upstream's deleteActivePods): the pods are counted
        once terminated. Returns (deleted, of which ready)."""
        ns = _md(job).get("namespace") or ""
        ready = 0

        async def one(pod: Obj) -> bool:
            nonlocal ready
            try:
                await self.pod_control.delete_pod(ns, str(_md(pod).get("name")), job)
            except NotFound:
                return False
            if is_pod_ready(pod):
                ready += 1
            return True
        deleted = await _gather_count(one(p) for p in pods)
        return deleted, ready

    # -- tracking -------------------------------------------------------------------------
    async def track_and_remove_finalizers(self, key: str, ctx: SyncCtx, satisfied: bool) -> None:
        """upstream's trackJobStatusAndRemoveFinalizers (see the module docstring)."""
        job, status = ctx.job, ctx.status
        indexed = ju.is_indexed(job)
        policy = _spec(job).get("podFailurePolicy")
        expected_rm = self.finalizer_expectations.expected(key)
        with_finalizer = {str(_md(p).get("uid")) for p in ctx.pods
                          if ju.has_tracking_finalizer(p)} - expected_rm
        us, uf = ctx.uncounted_succeeded, ctx.uncounted_failed
        finishing = ctx.finished is not None and ctx.finished.get("type") in (
            ju.FAILURE_TARGET, ju.FAILED)
        to_remove: list[Obj] = []
        new_indexes: list[int] = []
        for pod in ctx.pods:
            uid = str(_md(pod).get("uid"))
            if not ju.has_tracking_finalizer(pod) or uid in expected_rm:
                continue
            failed = ju.is_pod_failed(pod, job)
            done = ju.phase(pod) in ("Succeeded", "Failed")
            if not (failed or done or ctx.finished is not None):
                continue
            to_remove.append(pod)
            if ju.phase(pod) == "Succeeded" and uid not in uf:
                if indexed:
                    ix = ju.completion_index(pod)
                    if ju.valid_index(pod, job) and ix not in ctx.prev_succeeded:
                        new_indexes.append(ix)
                elif uid not in us:
                    us.append(uid)
            elif failed or finishing:
                if uid in uf or (indexed and not ju.valid_index(pod, job)):
                    continue
                if ju.match_pod_failure_policy(policy, pod)[1]:
                    uf.append(uid)
        if new_indexes:
            done_ix = ctx.prev_succeeded.with_indexes(new_indexes)
            status["completedIndexes"] = str(done_ix)
            status["succeeded"] = done_ix.total()
        if indexed and ju.has_backoff_limit_per_index(job) and ctx.failed_indexes.total():
            status["failedIndexes"] = str(ctx.failed_indexes)
        finished = ctx.finished
        conds: list[Obj] = status.setdefault("conditions", [])
        if finished is not None and finished["type"] == ju.FAILURE_TARGET:
            conds.append(finished)
            finished = ju.new_condition(ju.FAILED, "True", finished["reason"],
                                        finished["message"], self.clock())
        elif finished is not None and finished["type"] == ju.SUCCESS_CRITERIA_MET:
            if ju.find_condition(conds, ju.SUCCESS_CRITERIA_MET) is None:
                conds.append(finished)
            finished = ju.new_condition(ju.COMPLETE, "True", finished["reason"],
                                        finished["message"], self.clock())
        if not conds:
            status.pop("conditions", None)
        self._set_uncounted(status, us, uf)
        needs_flush = _clean_status(status) != (job.get("status") or {})
        job = await self.flush(key, job, status, to_remove, with_finalizer, needs_flush)
        status = copy.deepcopy(job.get("status") or {})
        if finished is not None and self._can_finish(key, status, ctx, satisfied):
            conds = status.setdefault("conditions", [])
            ju.ensure_condition(conds, finished["type"], "True", finished["reason"],
                                finished["message"], self.clock())
            if finished["type"] == ju.COMPLETE:
                status["completionTime"] = ju.rfc3339(self.clock())
            await self.update_status(job, status)
            if finished["type"] == ju.COMPLETE:
                self.recorder.event(job, NORMAL, "Completed", "Job completed")
            else:
                self.recorder.event(job, WARNING, finished["reason"], finished["message"])

    def _can_finish(self, key: str, status: Obj, ctx: SyncCtx, satisfied: bool) -> bool:
        unc = status.get("uncountedTerminatedPods") or {}
        if unc.get("succeeded") or unc.get("failed"):
            return False
        if not satisfied or not self.finalizer_expectations.satisfied(key):
            return False
        return int(status.get("active") or 0) == 0 and ctx.terminating == 0 and \
            ctx.deleted_now == 0

    @staticmethod
    def _set_uncounted(status: Obj, us: list[str], uf: list[str]) -> None:
        unc: Obj = {}
        if us:
            unc["succeeded"] = list(us)
        if uf:
            unc["failed"] = list(uf)
        status["uncountedTerminatedPods"] = unc

    async def flush(self, key: str, job: Obj, status: Obj, to_remove: list[Obj],
                    with_finalizer: set[str], needs_flush: bool) -> Obj:
        """Record the uncounted pods, remove their finalizers, then move the pods whose
        finalizer is gone from uncounted to succeeded / failed."""
        if needs_flush:
            job = await self.update_status(job, status)
        errors: list[Exception] = []
        if to_remove:
            uids = [str(_md(p).get("uid")) for p in to_remove]
            self.finalizer_expectations.expect_removed(key, uids)

            async def one(pod: Obj) -> None:
                uid = str(_md(pod).get("uid"))
                try:
                    await self.client.patch(pod_path(pod), REMOVE_FINALIZER_PATCH, "strategic")
                except NotFound:
                    self.finalizer_expectations.observed(key, uid)
                except Exception as e:
                    self.finalizer_expectations.observed(key, uid)
                    errors.append(e)
                    return
                with_finalizer.discard(uid)
            await asyncio.gather(*(one(p) for p in to_remove))
        status = copy.deepcopy(job.get("status") or {})
        unc = status.get("uncountedTerminatedPods") or {}
        us = [u for u in unc.get("succeeded") or [] if u in with_finalizer]
        uf = [u for u in unc.get("failed") or [] if u in with_finalizer]
        moved_s = len(unc.get("succeeded") or []) - len(us)
        moved_f = len(unc.get("failed") or []) - len(uf)
        if moved_s or moved_f:
            if not ju.is_indexed(job):
                status["succeeded"] = int(status.get("succeeded") or 0) + moved_s
            status["failed"] = int(status.get("failed") or 0) + moved_f
            self._set_uncounted(status, us, uf)
            job = await self.update_status(job, status)
        if errors:
            raise errors[0]
        return job

    async def update_status(self, job: Obj, status: Obj) -> Obj:
        """PUT the status subresource (conflicts are retried by the queue)."""
        md = _md(job)
        body = {**job, "status": _clean_status(status)}
        updated: Obj = await self.client.update(
            job_path(md.get("namespace") or "", str(md.get("name")), "status"), body)
        return updated


def _clean_status(status: Obj) -> Obj:
    """Upstream's wire shape: zero counters omitted (ready / terminating kept)."""
    out = {k: v for k, v in status.items()
           if not (k in ("active", "succeeded", "failed") and not v)
           and not (k in ("completedIndexes", "failedIndexes") and not v)}
    return out


async def _gather_count(coros: Any) -> int:
    results = await asyncio.gather(*coros, return_exceptions=True)
    for r in results:
        if isinstance(r, asyncio.CancelledError):
            raise r
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise errors[0]
    return sum(1 for r in results if r is True)


__all__ = ["JobController", "job_selector", "FinalizerExpectations", "utcnow"]

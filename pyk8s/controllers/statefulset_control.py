"""What a StatefulSet sync does with its pods, claims and revisions (upstream's
`stateful_set_control.go` and `stateful_pod_control.go`).

Rules (`StatefulSetControl.update`):

1. Revisions: the update revision is the set's template patch; an equal revision that is
   the newest is reused, an equal older one is re-numbered (a rollback), else one is
   created. The current revision is `status.currentRevision` (the update revision at
   first).
2. Pods are split into replicas (ordinals start … start+replicas-1, missing ones made
   from the current revision below the partition, else the update revision) and
   condemned ones (other valid ordinals, highest first).
3. Each replica, in ordinal order: a Failed / Succeeded pod is deleted and made again
   (RecreatingFailedPod / RecreatingTerminatedPod); a missing pod is created after its
   claims; with OrderedReady (monotonic) the walk stops at a pod just created, one
   terminating, or one not Running and Ready (and available for minReadySeconds); pods
   whose identity, storage or claim owner references drifted are updated. Parallel walks
   them all in slow-start batches.
4. Condemned pods are deleted, highest ordinal first; OrderedReady waits for each to
   terminate and deletes nothing while a replica is unhealthy (except the first
   unhealthy pod itself).
5. RollingUpdate: the highest-ordinal pod at or above the partition that is not at the
   update revision is deleted (it comes back at the update revision on the next sync);
   an unhealthy pod in that range stops the walk. `maxUnavailable` lets that many go at
   once. OnDelete: pods are only replaced when deleted by someone else.
6. Status: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
   currentRevision, updateRevision, collisionCount, observedGeneration; a completed
   RollingUpdate makes the update revision current. Revisions beyond
   revisionHistoryLimit that no pod uses are deleted, oldest first.

Events (StatefulSet as the object): `SuccessfulCreate` "create Pod web-0 in StatefulSet
web successful", `SuccessfulDelete`, `SuccessfulUpdate`, `FailedCreate` ... "failed error:
…", and "create Claim data-web-0 Pod web-0 in StatefulSet web success".
"""
from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from pyk8s.client.events import NORMAL, WARNING, EventRecorder
from pyk8s.client.informer import SharedInformer
from pyk8s.client.rest import AlreadyExists, ApiError, Conflict, NotFound, resource_path
from pyk8s.controllers import statefulset_util as su
from pyk8s.controllers.controller_utils import slow_start_batch
from pyk8s.controllers.deployment_util import scaled_value_from_int_or_percent
from pyk8s.controllers.history import (History, equal_revision, find_equal_revisions,
                                       new_controller_revision, next_revision,
                                       revisions_to_truncate, sort_revisions, template_patch)

log = logging.getLogger("pyk8s.controllers.statefulset")

Obj = dict[str, Any]

UPDATE_RETRIES = 5


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _name(obj: Obj) -> str:
    return str(_md(obj).get("name"))


def pod_path(namespace: str, name: str | None = None) -> str:
    return resource_path("", "v1", "pods", namespace, name)


def pvc_path(namespace: str, name: str | None = None) -> str:
    return resource_path("", "v1", "persistentvolumeclaims", namespace, name)


def sts_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    return resource_path("apps", "v1", "statefulsets", namespace, name, subresource)


class StatefulPodControl:
    """Pods and claims of a StatefulSet, with upstream's events."""

    def __init__(self, client: Any, recorder: EventRecorder, pvc_informer: SharedInformer
                 ) -> None:
        self.client = client
        self.recorder = recorder
        self.pvcs = pvc_informer

    def _pod_event(self, verb: str, s: Obj, pod: Obj, err: Exception | None) -> None:
        if err is None:
            self.recorder.event(s, NORMAL, f"Successful{verb.title()}",
                                f"{verb} Pod {_name(pod)} in StatefulSet {_name(s)} successful")
        else:
            self.recorder.event(s, WARNING, f"Failed{verb.title()}",
                                f"{verb} Pod {_name(pod)} in StatefulSet {_name(s)} failed "
                                f"error: {_message(err)}")

    def _claim_event(self, verb: str, s: Obj, pod: Obj, claim: Obj,
                     err: Exception | None) -> None:
        if err is None:
            self.recorder.event(s, NORMAL, f"Successful{verb.title()}",
                                f"{verb} Claim {_name(claim)} Pod {_name(pod)} in StatefulSet "
                                f"{_name(s)} success")
        else:
            self.recorder.event(s, WARNING, f"Failed{verb.title()}",
                                f"{verb} Claim {_name(claim)} for Pod {_name(pod)} in "
                                f"StatefulSet {_name(s)} failed error: {_message(err)}")

    def get_claim(self, namespace: str, name: str) -> Obj | None:
        return self.pvcs.store.get_by_name(namespace, name)

    async def create_missing_claims(self, s: Obj, pod: Obj) -> None:
        """Create the pod's claims that do not exist (upstream's
        createPersistentVolumeClaims); a claim being deleted is an error."""
        errors: list[str] = []
        ns = str(_md(s).get("namespace") or "")
        for _, claim in su.persistent_volume_claims(s, su.get_ordinal(pod)):
            existing = self.get_claim(ns, _name(claim))
            if existing is None:
                try:
                    await self.client.create(pvc_path(ns), claim)
                    self._claim_event("create", s, pod, claim, None)
                except AlreadyExists:
                    pass
                except ApiError as e:
                    errors.append(f"failed to create PVC {_name(claim)}: {_message(e)}")
                    self._claim_event("create", s, pod, claim, e)
            elif _md(existing).get("deletionTimestamp"):
                errors.append(f"pvc {_name(claim)} is being deleted")
        if errors:
            raise RuntimeError("; ".join(errors))

    async def create_pod(self, s: Obj, pod: Obj) -> None:
        try:
            await self.create_missing_claims(s, pod)
        except Exception as e:
            self._pod_event("create", s, pod, e)
            raise
        ns = str(_md(s).get("namespace") or "")
        try:
            created = await self.client.create(pod_path(ns), pod)
        except AlreadyExists:
            raise
        except ApiError as e:
            self._pod_event("create", s, pod, e)
            raise
        try:
            await self.update_claims_for_retention_policy(s, created)
        except Exception as e:
            self._pod_event("update", s, created, e)
            raise
        self._pod_event("create", s, pod, None)

    async def delete_pod(self, s: Obj, pod: Obj) -> None:
        ns = str(_md(pod).get("namespace") or "")
        try:
            await self.client.delete(pod_path(ns, _name(pod)))
        except Exception as e:
            self._pod_event("delete", s, pod, e if isinstance(e, Exception) else None)
            raise
        self._pod_event("delete", s, pod, None)

    def claims_match_retention_policy(self, s: Obj, pod: Obj) -> bool:
        ns = str(_md(s).get("namespace") or "")
        for _, claim in su.persistent_volume_claims(s, su.get_ordinal(pod)):
            existing = self.get_claim(ns, _name(claim))
            if existing is not None and not su.claim_owner_matches_set_and_pod(existing, s,
                                                                              pod):
                return False
        return True

    async def update_claims_for_retention_policy(self, s: Obj, pod: Obj) -> None:
        ns = str(_md(s).get("namespace") or "")
        for _, claim in su.persistent_volume_claims(s, su.get_ordinal(pod)):
            existing = self.get_claim(ns, _name(claim))
            if existing is None or su.claim_owner_matches_set_and_pod(existing, s, pod):
                continue
            body = copy.deepcopy(existing)
            if su.update_claim_owner_refs(body, s, pod):
                try:
                    await self.client.update(pvc_path(ns, _name(claim)), body)
                except ApiError as e:
                    raise RuntimeError(f"Could not update claim {_name(claim)} for delete "
                                       f"policy ownerRefs: {_message(e)}") from e

    def pod_claim_is_stale(self, s: Obj, pod: Obj) -> bool:
        """A claim still owned by an earlier pod of this name (whenScaled Delete only):
        wait for the garbage collector before making the pod again."""
        if su.retention_policy(s)[1] == su.RETAIN:
            return False
        ns = str(_md(s).get("namespace") or "")
        for _, claim in su.persistent_volume_claims(s, su.get_ordinal(pod)):
            existing = self.get_claim(ns, _name(claim))
            if existing is not None and su.has_stale_owner_ref(existing, pod):
                return True
        return False

    async def update_pod(self, s: Obj, pod: Obj) -> None:
        """Restore the pod's identity, storage and claim owners (upstream's
        UpdateStatefulPod), retrying on conflicts with a fresh copy."""
        ns = str(_md(s).get("namespace") or "")
        pod = copy.deepcopy(pod)
        attempted = False
        err: Exception | None = None
        for _ in range(UPDATE_RETRIES):
            consistent = True
            if not su.identity_matches(s, pod):
                su.update_identity(s, pod)
                consistent = False
            try:
                if not su.storage_matches(s, pod):
                    su.update_storage(s, pod)
                    consistent = False
                    await self.create_missing_claims(s, pod)
                if not self.claims_match_retention_policy(s, pod):
                    await self.update_claims_for_retention_policy(s, pod)
                    consistent = False
            except Exception as e:
                self._pod_event("update", s, pod, e)
                raise
            if consistent:
                return
            attempted = True
            try:
                await self.client.update(pod_path(ns, _name(pod)), pod)
                err = None
                break
            except Conflict as e:
                err = e
                try:
                    pod = await self.client.get(pod_path(ns, _name(pod)))
                except ApiError:
                    pass
            except ApiError as e:
                err = e
                break
        if attempted:
            self._pod_event("update", s, pod, err)
        if err is not None:
            raise err


def _message(e: BaseException) -> str:
    return e.message if isinstance(e, ApiError) else str(e)


@dataclass
class _Walk:
    """The state of one update pass."""
    s: Obj
    current: Obj
    update: Obj
    current_set: Obj
    update_set: Obj
    replicas: list[Obj]
    condemned: list[Obj]
    monotonic: bool
    first_unhealthy: Obj | None = None
    status: Obj = field(default_factory=dict)


class StatefulSetControl:
    """One sync of one StatefulSet (upstream's defaultStatefulSetControl)."""

    def __init__(self, client: Any, pod_control: StatefulPodControl, recorder: EventRecorder,
                 revision_informer: SharedInformer) -> None:
        self.client = client
        self.pods = pod_control
        self.recorder = recorder
        self.history = History(client)
        self.revisions = revision_informer

    async def update(self, s: Obj, pods: list[Obj], revisions: list[Obj]) -> Obj:
        """Run the rules of the module docstring; returns the status written."""
        revisions = sort_revisions(revisions)
        current, update, collision = await self.get_revisions(s, revisions)
        status: Obj = {}
        err: Exception | None = None
        try:
            status = await self.update_stateful_set(s, current, update, collision, pods)
        except asyncio.CancelledError:
            raise
        except _WithStatus as e:
            status, err = e.status, e.error
        await self.update_status(s, status)
        if err is not None:
            raise err
        await self.truncate_history(s, pods, revisions, current, update)
        return status

    async def get_revisions(self, s: Obj, revisions: list[Obj]) -> tuple[Obj, Obj, int]:
        """(current revision, update revision, collision count)."""
        collision = int((s.get("status") or {}).get("collisionCount") or 0)
        labels = ((_spec(s).get("template") or {}).get("metadata") or {}).get("labels")
        update = new_controller_revision(s, su.API_VERSION, su.KIND, labels, template_patch(s),
                                         next_revision(revisions), collision)
        if _md(s).get("annotations"):
            update["metadata"]["annotations"] = dict(_md(s)["annotations"])
        equal = find_equal_revisions(revisions, update)
        if equal and equal_revision(revisions[-1], equal[-1]):
            update = revisions[-1]
        elif equal:
            update = await self.history.update_revision(equal[-1], int(update["revision"]))
        else:
            update, collision = await self.history.create(s, update, collision)
        cur_name = (s.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if _name(r) == cur_name), None) or update
        return current, update, collision

    async def update_stateful_set(self, s: Obj, current: Obj, update: Obj, collision: int,
                                  pods: list[Obj]) -> Obj:
        current_set = su.apply_revision(s, current)
        update_set = su.apply_revision(s, update)
        min_ready = int(_spec(s).get("minReadySeconds") or 0)
        status: Obj = {"observedGeneration": int(_md(s).get("generation") or 0),
                       "currentRevision": _name(current), "updateRevision": _name(update),
                       "collisionCount": collision}
        status.update(su.compute_replica_status(pods, min_ready, _name(current), _name(update)))
        start, count = su.start_ordinal(s), su.replicas(s)
        replicas: list[Obj | None] = [None] * count
        condemned: list[Obj] = []
        for pod in pods:
            ordinal = su.get_ordinal(pod)
            if su.pod_in_ordinal_range(pod, s):
                replicas[ordinal - start] = pod
            elif ordinal >= 0:
                condemned.append(pod)
        for i in range(count):
            if replicas[i] is None:
                replicas[i] = su.new_versioned_pod(current_set, update_set, _name(current),
                                                   _name(update), start + i)
        reps: list[Obj] = [p for p in replicas if p is not None]
        condemned.sort(key=su.get_ordinal, reverse=True)
        w = _Walk(s, current, update, current_set, update_set, reps, condemned,
                  not su.allows_burst(s), status=status)
        for p in reps + condemned[::-1]:
            if not su.is_healthy(p):
                w.first_unhealthy = p
                break

        def refresh() -> None:
            status.update(su.compute_replica_status(reps + condemned, min_ready,
                                                    _name(current), _name(update)))
        if _md(s).get("deletionTimestamp"):
            return status
        try:
            if await self._run_for_all(len(reps), lambda i: self.process_replica(w, i),
                                       w.monotonic):
                refresh()
                return status

            async def fix_claim(i: int) -> bool:
                if not self.pods.claims_match_retention_policy(update_set, condemned[i]):
                    await self.pods.update_claims_for_retention_policy(update_set, condemned[i])
                return False
            if await self._run_for_all(len(condemned), fix_claim, w.monotonic):
                refresh()
                return status
            if await self._run_for_all(len(condemned), lambda i: self.process_condemned(w, i),
                                       w.monotonic):
                refresh()
                return status
        except Exception as e:
            refresh()
            raise _WithStatus(status, e) from e
        refresh()
        us = _spec(s).get("updateStrategy") or {}
        if us.get("type", su.ROLLING_UPDATE) == su.ON_DELETE:
            return status
        try:
            await self.rolling_update(w)
        except Exception as e:
            raise _WithStatus(status, e) from e
        return status

    @staticmethod
    async def _run_for_all(n: int, fn: Callable[[int], Awaitable[bool]], monotonic: bool
                           ) -> bool:
        """Ordered: stop at the first that says so (True) or fails. Parallel: all, in
        slow-start batches; stops (True) only on failure."""
        if monotonic:
            for i in range(n):
                if await fn(i):
                    return True
            return False
        idx = iter(range(n))

        async def one() -> None:
            await fn(next(idx))
        _, err = await slow_start_batch(n, 1, one)
        if err is not None:
            raise err
        return False

    async def process_replica(self, w: _Walk, i: int) -> bool:
        s, pod = w.s, w.replicas[i]
        ns = str(_md(s).get("namespace") or "")
        if su.is_failed(pod) or su.is_succeeded(pod):
            if su.is_failed(pod):
                self.recorder.event(s, WARNING, "RecreatingFailedPod",
                                    f"StatefulSet {ns}/{_name(s)} is recreating failed Pod "
                                    f"{_name(pod)}")
            else:
                self.recorder.event(s, NORMAL, "RecreatingTerminatedPod",
                                    f"StatefulSet {ns}/{_name(s)} is recreating terminated Pod "
                                    f"{_name(pod)}")
            await self.pods.delete_pod(s, pod)
            pod = w.replicas[i] = su.new_versioned_pod(
                w.current_set, w.update_set, _name(w.current), _name(w.update),
                i + su.start_ordinal(s))
        if not su.is_created(pod):
            if self.pods.pod_claim_is_stale(s, pod):
                return True
            await self.pods.create_pod(s, pod)
            if w.monotonic:
                return True
        if su.is_terminating(pod) and w.monotonic:
            return True
        if su.is_pending(pod):
            await self.pods.create_missing_claims(s, pod)
        if not su.is_running_and_ready(pod) and w.monotonic:
            return True
        min_ready = int(_spec(s).get("minReadySeconds") or 0)
        if not su.is_running_and_available(pod, min_ready) and w.monotonic:
            return True
        if not su.is_created(pod):
            return False
        retention_ok = self.pods.claims_match_retention_policy(w.update_set, pod)
        if su.identity_matches(s, pod) and su.storage_matches(s, pod) and retention_ok:
            return False
        await self.pods.update_pod(w.update_set, pod)
        return False

    async def process_condemned(self, w: _Walk, i: int) -> bool:
        pod = w.condemned[i]
        if su.is_terminating(pod):
            return w.monotonic
        min_ready = int(_spec(w.s).get("minReadySeconds") or 0)
        if w.monotonic and pod is not w.first_unhealthy and (
                not su.is_running_and_ready(pod)
                or not su.is_running_and_available(pod, min_ready)):
            return True
        await self.pods.delete_pod(w.s, pod)
        return w.monotonic

    async def rolling_update(self, w: _Walk) -> None:
        """Without `maxUnavailable`: delete the highest-ordinal pod at or above the
        partition that is not at the update revision, stopping at an unhealthy one. With
        it (upstream's MaxUnavailableStatefulSet): delete up to maxUnavailable minus the
        unhealthy replicas, highest ordinal first."""
        rolling = (_spec(w.s).get("updateStrategy") or {}).get("rollingUpdate") or {}
        update_min = int(rolling.get("partition") or 0)
        update_name = _name(w.update)
        if rolling.get("maxUnavailable") is None:
            for target in range(len(w.replicas) - 1, update_min - 1, -1):
                pod = w.replicas[target]
                if su.pod_revision(pod) != update_name and not su.is_terminating(pod):
                    await self._delete_for_update(w, pod)
                    return
                if not su.is_healthy(pod):
                    return
            return
        max_unavailable = max(1, scaled_value_from_int_or_percent(
            rolling["maxUnavailable"], su.replicas(w.s), True))
        unavailable = sum(1 for p in w.replicas if not su.is_healthy(p))
        if unavailable >= max_unavailable:
            return
        to_delete = max_unavailable - unavailable
        for target in range(len(w.replicas) - 1, update_min - 1, -1):
            if to_delete <= 0:
                return
            pod = w.replicas[target]
            if su.pod_revision(pod) != update_name and not su.is_terminating(pod):
                await self._delete_for_update(w, pod)
                to_delete -= 1

    async def _delete_for_update(self, w: _Walk, pod: Obj) -> None:
        log.info("StatefulSet %s/%s terminating Pod %s for update",
                 _md(w.s).get("namespace"), _name(w.s), _name(pod))
        try:
            await self.pods.delete_pod(w.s, pod)
        except NotFound:
            pass
        w.status["currentReplicas"] = int(w.status.get("currentReplicas") or 0) - 1

    async def update_status(self, s: Obj, status: Obj) -> None:
        if not status:
            return
        su.complete_rolling_update(s, status)
        if not su.inconsistent_status(s, status):
            return
        md = _md(s)
        ns, name = str(md.get("namespace") or ""), _name(s)
        cur = s
        for i in range(UPDATE_RETRIES):
            body = {**cur, "status": {**(cur.get("status") or {}), **status}}
            try:
                await self.client.update(sts_path(ns, name, "status"), body)
                return
            except Conflict:
                if i == UPDATE_RETRIES - 1:
                    raise
                cur = await self.client.get(sts_path(ns, name))

    async def truncate_history(self, s: Obj, pods: list[Obj], revisions: list[Obj],
                               current: Obj, update: Obj) -> None:
        live = {_name(current), _name(update)} | {su.pod_revision(p) for p in pods}
        limit = _spec(s).get("revisionHistoryLimit")
        for r in revisions_to_truncate(revisions, live, 10 if limit is None else int(limit)):
            try:
                await self.history.delete(r)
            except NotFound:
                pass


class _WithStatus(Exception):
    """A failure that still carries the status computed so far."""

    def __init__(self, status: Obj, error: Exception) -> None:
        super().__init__(str(error))
        self.status = status
        self.error = error


__all__ = ["StatefulSetControl", "StatefulPodControl", "sts_path", "pvc_path", "pod_path"]

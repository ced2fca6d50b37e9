"""The ReplicaSet controller, also serving ReplicationControllers (upstream's
`pkg/controller/replicaset`, with `pkg/controller/replication` as a thin adapter).

Level-triggered: event handlers only enqueue `namespace/name` keys; `sync(key)` compares
the active pods the workload owns (after adopting matching orphans and releasing owned
pods that no longer match) with `spec.replicas`, creates or deletes the difference, and
writes `status`:

- creations go in slow-start batches (1, 2, 4, …), at most `burst_replicas` (500) per
  sync; expectations make later syncs wait until the informer has seen them, so a burst
  of events never overshoots;
- deletions take the pods upstream would (unscheduled before scheduled, pending before
  running, not ready before ready, …);
- status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (ready for
  `minReadySeconds`), observedGeneration, and the ReplicaFailure condition while creating
  or deleting fails;
- events: SuccessfulCreate / FailedCreate / SuccessfulDelete / FailedDelete.
"""
from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from pyk8s.api.selectors import LabelSelector, label_selector_from_dict, label_selector_from_set
from pyk8s.client.events import EventRecorder
from pyk8s.client.informer import (CONTROLLER_UID_INDEX, SharedInformerFactory, controller_ref,
                                   index_by_controller_uid, object_key, split_key)
from pyk8s.client.rest import ApiError, NotFound, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.controllers.controller_utils import (NAMESPACE_TERMINATING_CAUSE,
                                                SLOW_START_INITIAL_BATCH_SIZE,
                                                ControllerEventHandlers, ControllerRefManager,
                                                DependentEventHandlers, PodControl,
                                                UIDTrackingControllerExpectations,
                                                controllers_selecting, filter_active_pods,
                                                is_pod_available, is_pod_ready,
                                                new_controller_ref, pod_key, pods_to_delete,
                                                recheck_deletion_timestamp,
                                                resolve_controller_ref, slow_start_batch)

log = logging.getLogger("pyk8s.controllers.replicaset")

Obj = dict[str, Any]

BURST_REPLICAS = 500
STATUS_UPDATE_RETRIES = 1
REPLICA_FAILURE = "ReplicaFailure"


@dataclass(frozen=True)
class WorkloadKind:
    """What differs between ReplicaSets and ReplicationControllers."""
    group: str
    version: str
    resource: str
    kind: str
    component: str                               # event source, log name
    selector: Callable[[Obj], LabelSelector]     # from the workload object

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None
             ) -> str:
        return resource_path(self.group, self.version, self.resource, namespace, name,
                             subresource)


def _rs_selector(rs: Obj) -> LabelSelector:
    return label_selector_from_dict((rs.get("spec") or {}).get("selector"))


def _rc_selector(rc: Obj) -> LabelSelector:
    # An RC's selector is a map; an empty one selects nothing here (defaulting sets it
    # to the template's labels, so it is only empty when the template has none).
    sel = (rc.get("spec") or {}).get("selector") or {}
    return label_selector_from_set(sel) if sel else LabelSelector.nothing()


REPLICA_SET = WorkloadKind("apps", "v1", "replicasets", "ReplicaSet", "replicaset-controller",
                           _rs_selector)
REPLICATION_CONTROLLER = WorkloadKind("", "v1", "replicationcontrollers",
                                      "ReplicationController", "replication-controller",
                                      _rc_selector)


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def replicas_of(obj: Obj) -> int:
    r = _spec(obj).get("replicas")
    return 1 if r is None else int(r)


def _labels_match_template(pod: Obj, template_labels: Obj) -> bool:
    labels = _md(pod).get("labels") or {}
    return all(labels.get(k) == v for k, v in template_labels.items())


def get_condition(status: Obj, type_: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def calculate_status(rs: Obj, filtered_pods: list[Obj], manage_err: Exception | None,
                     now: datetime | None = None) -> Obj:
    """The status `filtered_pods` give (upstream's calculateStatus)."""
    now = now or datetime.now(timezone.utc)
    status = copy.deepcopy(rs.get("status") or {})
    template_labels = ((_spec(rs).get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(_spec(rs).get("minReadySeconds") or 0)
    fully_labeled = ready = available = 0
    for pod in filtered_pods:
        if _labels_match_template(pod, template_labels):
            fully_labeled += 1
        if is_pod_ready(pod):
            ready += 1
            if is_pod_available(pod, min_ready, now):
                available += 1
    failure = get_condition(status, REPLICA_FAILURE)
    if manage_err is not None and failure is None:
        diff = len(filtered_pods) - replicas_of(rs)
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        cond = {"type": REPLICA_FAILURE, "status": "True",
                "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "reason": reason, "message": _err_message(manage_err)}
        status["conditions"] = [c for c in status.get("conditions") or []
                                if c.get("type") != REPLICA_FAILURE] + [cond]
    elif manage_err is None and failure is not None:
        conds = [c for c in status.get("conditions") or [] if c.get("type") != REPLICA_FAILURE]
        if conds:
            status["conditions"] = conds
        else:
            status.pop("conditions", None)
    status["replicas"] = len(filtered_pods)
    status["fullyLabeledReplicas"] = fully_labeled
    status["readyReplicas"] = ready
    status["availableReplicas"] = available
    return status


def _err_message(e: Exception) -> str:
    return e.message if isinstance(e, ApiError) else str(e)


def _status_equal(rs: Obj, new: Obj) -> bool:
    old = rs.get("status") or {}
    for f in ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
        if int(old.get(f) or 0) != int(new.get(f) or 0):
            return False
    if int(old.get("observedGeneration") or 0) != int(_md(rs).get("generation") or 0):
        return False
    return (old.get("conditions") or None) == (new.get("conditions") or None)


class ReplicaSetController:
    """Serves one `WorkloadKind` (ReplicaSets by default)."""

    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: EventRecorder,
                 *, kind: WorkloadKind = REPLICA_SET, workers: int = 5,
                 burst_replicas: int = BURST_REPLICAS) -> None:
        self.client = client
        self.kind = kind
        self.workers = workers
        self.burst_replicas = burst_replicas
        self.recorder = recorder
        self.pod_control = PodControl(client, recorder)
        self.expectations = UIDTrackingControllerExpectations()
        self.queue: WorkQueue[str] = WorkQueue(kind.resource)
        self.rs_informer = factory.informer(kind.group, kind.version, kind.resource,
                                            indexers={CONTROLLER_UID_INDEX:
                                                      index_by_controller_uid})
        self.pod_informer = factory.pods(indexers={CONTROLLER_UID_INDEX:
                                                   index_by_controller_uid})
        self._rs_handler = ControllerEventHandlers(self.enqueue, self.forget_rs)
        self.add_rs = self._rs_handler.on_add
        self.update_rs = self._rs_handler.on_update
        self.delete_rs = self._rs_handler.on_delete
        self._pod_handler = DependentEventHandlers(
            self.resolve_controller_ref, self.get_pod_owners, self.enqueue,
            expectations=self.expectations, relabelled_deleting_old=True,
            enqueue_after=self.enqueue_after, min_ready_extra=1.0)
        self.add_pod = self._pod_handler.on_add
        self.update_pod = self._pod_handler.on_update
        self.delete_pod = self._pod_handler.on_delete
        self.rs_informer.add_event_handler(self._rs_handler)
        self.pod_informer.add_event_handler(self._pod_handler)

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await asyncio.gather(self.rs_informer.synced.wait(), self.pod_informer.synced.wait())
            log.info("%s: synced", self.kind.component)
            await run_workers(self.queue, self.sync, self.workers, name=self.kind.component)
        finally:
            self.queue.shutdown()
            self.rs_informer.remove_event_handler(self._rs_handler)
            self.pod_informer.remove_event_handler(self._pod_handler)

    # -- event handlers -------------------------------------------------------------------
    def enqueue(self, rs: Obj) -> None:
        self.queue.add(object_key(rs))

    def enqueue_after(self, rs: Obj, delay: float) -> None:
        self.queue.add_after(object_key(rs), delay)

    def forget_rs(self, rs: Obj) -> None:
        self.expectations.delete_expectations(object_key(rs))

    def resolve_controller_ref(self, namespace: str, ref: Obj) -> Obj | None:
        return resolve_controller_ref(self.rs_informer.store, namespace, ref, self.kind.kind)

    def get_pod_owners(self, pod: Obj) -> list[Obj]:
        """Workloads in the pod's namespace whose (non-empty) selector matches it."""
        out = controllers_selecting(self.rs_informer.store, pod, self.kind.selector)
        if len(out) > 1:
            log.info("%s: pod %s matches %d controllers", self.kind.component, pod_key(pod),
                     len(out))
        return out

    # -- sync -----------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        rs = self.rs_informer.store.get(key)
        if rs is None:
            log.debug("%s: %s has been deleted", self.kind.component, key)
            self.expectations.delete_expectations(key)
            return
        needs_sync = self.expectations.satisfied_expectations(key)
        try:
            selector = self.kind.selector(rs)
        except ValueError as e:
            log.info("%s: %s has an invalid selector: %s", self.kind.component, key, e)
            return
        all_pods = self.pod_informer.store.list_namespace(namespace)
        filtered = await self.claim_pods(rs, selector, filter_active_pods(all_pods))
        manage_err: Exception | None = None
        if needs_sync and not _md(rs).get("deletionTimestamp"):
            try:
                await self.manage_replicas(filtered, rs)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                manage_err = e
        new_status = calculate_status(rs, filtered, manage_err)
        updated = await self.update_status(rs, new_status)
        spec = _spec(updated)
        min_ready = int(spec.get("minReadySeconds") or 0)
        st = updated.get("status") or {}
        want = replicas_of(updated)
        if manage_err is None and min_ready > 0 and int(st.get("readyReplicas") or 0) == want \
                and int(st.get("availableReplicas") or 0) != want:
            self.queue.add_after(key, float(min_ready))
        if manage_err is not None:
            raise manage_err

    async def claim_pods(self, rs: Obj, selector: LabelSelector, pods: list[Obj]) -> list[Obj]:
        md = _md(rs)
        ns, name, uid = md.get("namespace") or "", str(md.get("name")), str(md.get("uid"))

        async def fresh() -> Obj:
            return await self.client.get(self.kind.path(ns, name))
        manager = ControllerRefManager(self.client, rs, self.kind.api_version, self.kind.kind,
                                       selector, recheck_deletion_timestamp(fresh, uid))
        return await manager.claim(pods)

    async def manage_replicas(self, filtered: list[Obj], rs: Obj) -> None:
        """Create or delete pods to reach spec.replicas (upstream's manageReplicas)."""
        diff = len(filtered) - replicas_of(rs)
        key = object_key(rs)
        ns = _md(rs).get("namespace") or ""
        if diff < 0:
            diff = min(-diff, self.burst_replicas)
            template = _spec(rs).get("template")
            if not template:
                raise ValueError("spec.template is missing")
            self.expectations.expect_creations(key, diff)
            log.debug("%s: too few replicas for %s, need %d, creating %d", self.kind.component,
                      key, replicas_of(rs), diff)
            ref = new_controller_ref(rs, self.kind.api_version, self.kind.kind)

            async def create() -> None:
                try:
                    await self.pod_control.create_pods(ns, template, rs, ref)
                except ApiError as e:
                    if e.has_cause(NAMESPACE_TERMINATING_CAUSE):
                        return  # the namespace is going away: later creations fail too
                    raise
            successes, err = await slow_start_batch(diff, SLOW_START_INITIAL_BATCH_SIZE, create)
            skipped = diff - successes
            if skipped > 0:
                log.debug("%s: slow-start failure, skipping creation of %d pods for %s",
                          self.kind.component, skipped, key)
                for _ in range(skipped):
                    # The informer will not see what was never created.
                    self.expectations.creation_observed(key)
            if err is not None:
                raise err
        elif diff > 0:
            diff = min(diff, self.burst_replicas)
            log.debug("%s: too many replicas for %s, need %d, deleting %d",
                      self.kind.component, key, replicas_of(rs), diff)
            related = self.indirectly_related_pods(rs)
            victims = pods_to_delete(filtered, related, diff)
            self.expectations.expect_deletions(key, [pod_key(p) for p in victims])

            async def delete(pod: Obj) -> None:
                try:
                    await self.pod_control.delete_pod(ns, str(_md(pod).get("name")), rs)
                except Exception as e:
                    # The informer will not see this deletion.
                    self.expectations.deletion_observed(key, pod_key(pod))
                    if not isinstance(e, NotFound):
                        raise
            results = await asyncio.gather(*(delete(p) for p in victims),
                                           return_exceptions=True)
            for r in results:
                if isinstance(r, asyncio.CancelledError):
                    raise r
            errors = [r for r in results if isinstance(r, Exception)]
            if errors:
                raise errors[0]

    def indirectly_related_pods(self, rs: Obj) -> list[Obj]:
        """Pods of every workload controlled by the same owner as `rs` (a Deployment's
        ReplicaSets), to rank pods by how crowded their node is."""
        ref = controller_ref(rs)
        if ref is None or not ref.get("uid"):
            return []
        seen: set[str] = set()
        out: list[Obj] = []
        ns = _md(rs).get("namespace") or ""
        for other in self.rs_informer.store.by_index(CONTROLLER_UID_INDEX, str(ref["uid"])):
            try:
                sel = self.kind.selector(other)
            except ValueError:
                continue
            for pod in self.pod_informer.store.select(ns, sel):
                uid = str(_md(pod).get("uid"))
                if uid not in seen:
                    seen.add(uid)
                    out.append(pod)
        return out

    async def update_status(self, rs: Obj, new_status: Obj) -> Obj:
        """PUT the status subresource unless nothing changed (upstream's
        updateReplicaSetStatus: one retry after re-reading on failure)."""
        if _status_equal(rs, new_status):
            return rs
        new_status = {**new_status, "observedGeneration": int(_md(rs).get("generation") or 0)}
        md = _md(rs)
        path = self.kind.path(md.get("namespace") or "", str(md.get("name")), "status")
        cur = rs
        for i in range(STATUS_UPDATE_RETRIES + 1):
            body = {**cur, "status": new_status}
            try:
                return await self.client.update(path, body)  # type: ignore[no-any-return]
            except ApiError:
                if i >= STATUS_UPDATE_RETRIES:
                    raise
                cur = await self.client.get(self.kind.path(md.get("namespace") or "",
                                                           str(md.get("name"))))
        raise AssertionError("unreachable")


def replication_controller(client: Any, factory: SharedInformerFactory,
                           recorder: EventRecorder, **kw: Any) -> ReplicaSetController:
    """The ReplicationController controller: the same code on the v1 kind."""
    return ReplicaSetController(client, factory, recorder, kind=REPLICATION_CONTROLLER, **kw)


__all__ = ["ReplicaSetController", "replication_controller", "WorkloadKind", "REPLICA_SET",
           "REPLICATION_CONTROLLER", "calculate_status", "BURST_REPLICAS"]

"""The Deployment controller, after upstream's `pkg/controller/deployment` (sync.go,
rolling.go, recreate.go, progress.go, rollback.go, deployment_controller.go).

A Deployment owns one ReplicaSet per pod template: `<deployment>-<pod-template-hash>`,
whose selector, template labels and pods carry `pod-template-hash`. Each `sync(key)`:

1. claims the ReplicaSets of the Deployment (adopting matching orphans, releasing owned
   ones that no longer match);
2. if the Deployment is being deleted: status only; if paused: keeps the Progressing
   condition at DeploymentPaused and only scales (proportionally) and cleans up history;
   a legacy rollback request (`deprecated.deployment.rollback.to`) copies the old
   template back; a change of `spec.replicas` (the `desired-replicas` annotation of the
   active ReplicaSets differs) scales the ReplicaSets proportionally;
3. otherwise rolls out: RollingUpdate scales the new ReplicaSet up within
   `replicas + maxSurge` and the old ones down while at least `replicas - maxUnavailable`
   pods stay available (unhealthy old replicas first); Recreate scales every old
   ReplicaSet to zero, waits until their pods are gone, then creates the new one;
4. keeps the revision annotations (`deployment.kubernetes.io/revision` on the Deployment
   and its ReplicaSets, `revision-history` on a ReplicaSet rolled back to), deletes old
   ReplicaSets beyond `revisionHistoryLimit` once the rollout is complete, and writes
   `status` with the Available and Progressing conditions (upstream's reasons, and
   ProgressDeadlineExceeded once `progressDeadlineSeconds` pass without progress).

Events on the Deployment: ScalingReplicaSet ("Scaled up replica set web-xxx from 0 to
3"), ReplicaSetCreateError, SelectingAll, DeploymentRollback… as upstream.
Only the ReplicaSets are written here; their pods are the ReplicaSet controller's.
"""
from __future__ import annotations

import asyncio
import copy
import logging
from datetime import datetime, timezone
from typing import Any, Callable

from pyk8s.api.selectors import LabelSelector, SelectorError, label_selector_from_dict
from pyk8s.client.events import NORMAL, WARNING, EventRecorder
from pyk8s.client.informer import (CONTROLLER_UID_INDEX, SharedInformerFactory, controller_ref,
                                   index_by_controller_uid, object_key, split_key)
from pyk8s.client.rest import AlreadyExists, ApiError, NotFound, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.controllers import deployment_util as du
from pyk8s.controllers.controller_utils import (NAMESPACE_TERMINATING_CAUSE,
                                                ControllerRefManager, new_controller_ref,
                                                recheck_deletion_timestamp, resource_version,
                                                sync_or_drop)

log = logging.getLogger("pyk8s.controllers.deployment")

Obj = dict[str, Any]

COMPONENT = "deployment-controller"
# A key is retried this many times (rate-limited) before it is dropped (upstream: 15).
MAX_RETRIES = 15


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _rs_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    return resource_path("apps", "v1", "replicasets", namespace, name, subresource)


def _d_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    return resource_path("apps", "v1", "deployments", namespace, name, subresource)


def _selector(obj: Obj) -> LabelSelector:
    return label_selector_from_dict(_spec(obj).get("selector"))


def _uid(obj: Obj | None) -> str:
    return str(_md(obj).get("uid") or "") if obj is not None else ""


def _normalized_status(st: Obj) -> Obj:
    """What a status looks like on the wire (ints are omitempty): for comparisons."""
    return {k: v for k, v in st.items() if v not in (None, 0, [], {})}


def calculate_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj) -> Obj:
    """The status the ReplicaSets give (upstream's calculateStatus): counts, the kept
    conditions and collisionCount, and the Available condition."""
    available = du.available_replica_count(all_rss)
    total = du.replica_count(all_rss)
    unavailable = max(0, total - available)
    old = d.get("status") or {}
    status: Obj = {
        "observedGeneration": int(_md(d).get("generation") or 0),
        "replicas": du.actual_replica_count(all_rss),
        "updatedReplicas": du.actual_replica_count([new_rs]),
        "readyReplicas": du.ready_replica_count(all_rss),
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
    }
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = [dict(c) for c in old["conditions"]]
    if available >= du.replicas(d) - du.max_unavailable(d):
        du.set_condition(status, du.new_condition(
            du.DEPLOYMENT_AVAILABLE, "True", du.MINIMUM_REPLICAS_AVAILABLE,
            "Deployment has minimum availability."))
    else:
        du.set_condition(status, du.new_condition(
            du.DEPLOYMENT_AVAILABLE, "False", du.MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability."))
    return status


def get_rollback_to(d: Obj) -> int | None:
    """The revision a legacy `rollbackTo` asks for (the deprecated annotation)."""
    v = (_md(d).get("annotations") or {}).get(du.DEPRECATED_ROLLBACK_TO)
    if not v:
        return None
    try:
        return int(v)
    except ValueError:
        return None


class _Handlers:
    def __init__(self, on_add: Callable[[Obj], None] | None = None,
                 on_update: Callable[[Obj, Obj], None] | None = None,
                 on_delete: Callable[[Obj], None] | None = None) -> None:
        self.on_add = on_add or (lambda o: None)
        self.on_update = on_update or (lambda o, n: None)
        self.on_delete = on_delete or (lambda o: None)


class DeploymentController:
    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: EventRecorder,
                 *, workers: int = 5, now: Callable[[], datetime] | None = None) -> None:
        self.client = client
        self.recorder = recorder
        self.workers = workers
        self.now = now or (lambda: datetime.now(timezone.utc))
        self.queue: WorkQueue[str] = WorkQueue("deployment")
        # uid → resourceVersion of the Deployments and ReplicaSets this controller wrote
        # last, until the informers have caught up with them (see `_cache_is_stale`).
        self._written: dict[str, int] = {}
        self.d_informer = factory.deployments()
        self.rs_informer = factory.replica_sets(
            indexers={CONTROLLER_UID_INDEX: index_by_controller_uid})
        self.pod_informer = factory.pods(indexers={CONTROLLER_UID_INDEX: index_by_controller_uid})
        self._d_handler = _Handlers(self.add_deployment, self.update_deployment,
                                    self.delete_deployment)
        self._rs_handler = _Handlers(self.add_replica_set, self.update_replica_set,
                                     self.delete_replica_set)
        self._pod_handler = _Handlers(on_delete=self.delete_pod)
        self.d_informer.add_event_handler(self._d_handler)
        self.rs_informer.add_event_handler(self._rs_handler)
        self.pod_informer.add_event_handler(self._pod_handler)

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await asyncio.gather(self.d_informer.synced.wait(), self.rs_informer.synced.wait(),
                                 self.pod_informer.synced.wait())
            log.info("deployment-controller: synced")
            await run_workers(self.queue, self._sync_with_retries, self.workers,
                              name=COMPONENT)
        finally:
            self.queue.shutdown()
            self.d_informer.remove_event_handler(self._d_handler)
            self.rs_informer.remove_event_handler(self._rs_handler)
            self.pod_informer.remove_event_handler(self._pod_handler)

    async def _sync_with_retries(self, key: str) -> None:
        await sync_or_drop(self.sync, self.queue, key, COMPONENT, "deployment", MAX_RETRIES)

    # -- event handlers -------------------------------------------------------------------
    def enqueue(self, d: Obj) -> None:
        self.queue.add(object_key(d))

    def add_deployment(self, d: Obj) -> None:
        self.enqueue(d)

    def update_deployment(self, old: Obj, cur: Obj) -> None:
        self.enqueue(cur)

    def delete_deployment(self, d: Obj) -> None:
        self._written.pop(_uid(d), None)
        self.enqueue(d)

    def resolve_controller_ref(self, namespace: str, ref: Obj) -> Obj | None:
        if ref.get("kind") != "Deployment":
            return None
        d = self.d_informer.store.get_by_name(namespace, str(ref.get("name")))
        if d is None or _uid(d) != ref.get("uid"):
            return None
        return d

    def deployments_for_replica_set(self, rs: Obj) -> list[Obj]:
        """Deployments whose (non-empty) selector matches an orphan ReplicaSet's labels."""
        labels = _md(rs).get("labels") or {}
        if not labels:
            return []
        out = []
        for d in self.d_informer.store.list_namespace(_md(rs).get("namespace") or ""):
            try:
                sel = _selector(d)
            except (SelectorError, ValueError):
                continue
            if not sel.empty and sel.matches(labels):
                out.append(d)
        return out

    def add_replica_set(self, rs: Obj) -> None:
        if _md(rs).get("deletionTimestamp"):
            self.delete_replica_set(rs)
            return
        ref = controller_ref(rs)
        if ref is not None:
            d = self.resolve_controller_ref(_md(rs).get("namespace") or "", ref)
            if d is not None:
                self.enqueue(d)
            return
        for d in self.deployments_for_replica_set(rs):
            self.enqueue(d)

    def update_replica_set(self, old: Obj, cur: Obj) -> None:
        if _md(old).get("resourceVersion") == _md(cur).get("resourceVersion"):
            return
        ns = _md(cur).get("namespace") or ""
        cur_ref, old_ref = controller_ref(cur), controller_ref(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            d = self.resolve_controller_ref(ns, old_ref)
            if d is not None:
                self.enqueue(d)
        if cur_ref is not None:
            d = self.resolve_controller_ref(ns, cur_ref)
            if d is not None:
                self.enqueue(d)
            return
        if _md(old).get("labels") != _md(cur).get("labels") or ref_changed:
            for d in self.deployments_for_replica_set(cur):
                self.enqueue(d)

    def delete_replica_set(self, rs: Obj) -> None:
        self._written.pop(_uid(rs), None)
        ref = controller_ref(rs)
        if ref is None:
            return
        d = self.resolve_controller_ref(_md(rs).get("namespace") or "", ref)
        if d is not None:
            self.enqueue(d)

    def deployment_for_pod(self, pod: Obj) -> Obj | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        ns = _md(pod).get("namespace") or ""
        rs = self.rs_informer.store.get_by_name(ns, str(ref.get("name")))
        if rs is None or _uid(rs) != ref.get("uid"):
            return None
        rs_ref = controller_ref(rs)
        if rs_ref is None:
            return None
        return self.resolve_controller_ref(ns, rs_ref)

    def delete_pod(self, pod: Obj) -> None:
        """A Recreate Deployment waits for its old pods to be gone: sync it then."""
        d = self.deployment_for_pod(pod)
        if d is None or du.strategy_type(d) != du.RECREATE:
            return
        rss = self.rs_informer.store.by_index(CONTROLLER_UID_INDEX, _uid(d))
        pod_map = self.pod_map_for_deployment(d, rss)
        if not any(pod_map.values()):
            self.enqueue(d)

    # -- listers --------------------------------------------------------------------------
    async def replica_sets_for_deployment(self, d: Obj, selector: LabelSelector) -> list[Obj]:
        """The ReplicaSets `d` owns after adoption and release (ClaimReplicaSets)."""
        md = _md(d)
        ns, name, uid = md.get("namespace") or "", str(md.get("name")), _uid(d)
        rs_list = self.rs_informer.store.list_namespace(ns)

        async def fresh() -> Obj:
            return await self.client.get(_d_path(ns, name))  # type: ignore[no-any-return]
        manager = ControllerRefManager(
            self.client, d, "apps/v1", "Deployment", selector,
            recheck_deletion_timestamp(fresh, uid),
            dependent_path=lambda o: _rs_path(_md(o).get("namespace") or "",
                                              str(_md(o).get("name"))))
        return await manager.claim(rs_list)

    def pod_map_for_deployment(self, d: Obj, rs_list: list[Obj]) -> dict[str, list[Obj]]:
        """Pods matching the Deployment's selector, by the uid of the ReplicaSet (among
        `rs_list`) controlling them; inactive pods included (getPodMapForDeployment)."""
        try:
            sel = _selector(d)
        except (SelectorError, ValueError):
            return {}
        out: dict[str, list[Obj]] = {}
        for rs in rs_list:
            uid = _uid(rs)
            out[uid] = [p for p in self.pod_informer.store.by_index(CONTROLLER_UID_INDEX, uid)
                        if sel.matches(_md(p).get("labels"))]
        return out

    # -- sync -----------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        """upstream's syncDeployment."""
        namespace, name = split_key(key)
        cached = self.d_informer.store.get(key)
        if cached is None:
            log.debug("%s: deployment %s has been deleted", COMPONENT, key)
            return
        if self._cache_is_stale(cached):
            # Our last writes have not reached the informers yet: their events will queue
            # this Deployment again (acting now would only meet 409 Conflicts).
            self.queue.add_after(key, 1.0)
            return
        d = copy.deepcopy(cached)
        try:
            selector = _selector(d)
        except (SelectorError, ValueError) as e:
            log.info("%s: deployment %s has an invalid label selector: %s", COMPONENT, key, e)
            return
        if selector.empty:
            self.recorder.event(d, WARNING, "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector "
                                "is required.")
            st = d.setdefault("status", {})
            if int(st.get("observedGeneration") or 0) < int(_md(d).get("generation") or 0):
                st["observedGeneration"] = int(_md(d).get("generation") or 0)
                await self.update_status(d)
            return
        rs_list = await self.replica_sets_for_deployment(d, selector)
        if _md(d).get("deletionTimestamp"):
            await self.sync_status_only(d, rs_list)
            return
        await self.check_paused_conditions(d)
        if _spec(d).get("paused"):
            await self.sync_scale(d, rs_list)
            return
        if get_rollback_to(d) is not None:
            await self.rollback(d, rs_list)
            return
        if await self.is_scaling_event(d, rs_list):
            await self.sync_scale(d, rs_list)
            return
        st = du.strategy_type(d)
        if st == du.RECREATE:
            await self.rollout_recreate(d, rs_list)
        elif st == du.ROLLING_UPDATE:
            await self.rollout_rolling(d, rs_list)
        else:
            raise ValueError(f"unexpected deployment strategy type: {st}")

    # -- writes ---------------------------------------------------------------------------
    def _wrote(self, obj: Obj) -> Obj:
        rv = resource_version(obj)
        if rv:
            self._written[_uid(obj)] = rv
        return obj

    def _cache_is_stale(self, d: Obj) -> bool:
        """Whether the informers still hold an older version of the Deployment or of one
        of its ReplicaSets than this controller wrote (entries seen are forgotten)."""
        stale = False
        for obj in [d, *self.rs_informer.store.by_index(CONTROLLER_UID_INDEX, _uid(d))]:
            uid = _uid(obj)
            written = self._written.get(uid)
            if written is None:
                continue
            if resource_version(obj) < written:
                stale = True
            else:
                del self._written[uid]
        return stale

    async def update_status(self, d: Obj) -> Obj:
        """PUT the status subresource (it also takes the Deployment's annotations, as
        upstream's deployment status strategy does: that is how the revision annotation
        travels). `d` takes the new resourceVersion."""
        md = _md(d)
        updated: Obj = await self.client.update(
            _d_path(md.get("namespace") or "", str(md.get("name")), "status"), d)
        d.setdefault("metadata", {})["resourceVersion"] = _md(updated).get("resourceVersion")
        return self._wrote(updated)

    async def put_deployment(self, d: Obj) -> Obj:
        md = _md(d)
        updated: Obj = await self.client.update(
            _d_path(md.get("namespace") or "", str(md.get("name"))), d)
        return self._wrote(updated)

    async def scale_replica_set(self, rs: Obj, new_scale: int, d: Obj) -> tuple[bool, Obj]:
        """Set spec.replicas and the replicas annotations; a ScalingReplicaSet event when
        the size changed (scaleReplicaSet)."""
        size_needs_update = du.rs_replicas(rs) != new_scale
        desired, max_replicas = du.replicas(d), du.replicas(d) + du.max_surge(d)
        if not size_needs_update and \
                not du.replicas_annotations_need_update(rs, desired, max_replicas):
            return False, rs
        old_scale = du.rs_replicas(rs)
        rs_copy = copy.deepcopy(rs)
        rs_copy.setdefault("spec", {})["replicas"] = new_scale
        du.set_replicas_annotations(rs_copy, desired, max_replicas)
        md = _md(rs_copy)
        updated: Obj = self._wrote(await self.client.update(
            _rs_path(md.get("namespace") or "", str(md.get("name"))), rs_copy))
        scaled = False
        if size_needs_update:
            scaled = True
            op = "up" if old_scale < new_scale else "down"
            self.recorder.event(d, NORMAL, "ScalingReplicaSet",
                                f"Scaled {op} replica set {_md(updated).get('name')} from "
                                f"{old_scale} to {new_scale}")
        return scaled, updated

    async def scale_replica_set_and_record_event(self, rs: Obj, new_scale: int, d: Obj
                                                 ) -> tuple[bool, Obj]:
        """`scale_replica_set` unless the size is right already."""
        if du.rs_replicas(rs) == new_scale:
            return False, rs
        return await self.scale_replica_set(rs, new_scale, d)

    # -- the new and old ReplicaSets ------------------------------------------------------
    async def get_all_replica_sets_and_sync_revision(
            self, d: Obj, rs_list: list[Obj], create_if_not_existed: bool
    ) -> tuple[Obj | None, list[Obj]]:
        _, all_old = du.find_old_replica_sets(d, rs_list)
        new_rs = await self.get_new_replica_set(d, rs_list, all_old, create_if_not_existed)
        return new_rs, all_old

    async def get_new_replica_set(self, d: Obj, rs_list: list[Obj], old_rss: list[Obj],
                                  create_if_not_existed: bool) -> Obj | None:
        """The ReplicaSet of the current template, its annotations brought up to date
        (or created, when asked: `<name>-<hash>`, with as many replicas as the strategy
        allows now), and the Deployment's revision synced (getNewReplicaSet)."""
        existing = du.find_new_replica_set(d, rs_list)
        new_revision = str(du.max_revision(old_rss) + 1)
        md = _md(d)
        ns, name = md.get("namespace") or "", str(md.get("name"))
        if existing is not None:
            rs_copy = copy.deepcopy(existing)
            annotations_updated = du.set_new_replica_set_annotations(d, rs_copy, new_revision,
                                                                     True)
            min_ready = int(_spec(d).get("minReadySeconds") or 0)
            if annotations_updated or int(_spec(rs_copy).get("minReadySeconds") or 0) != \
                    min_ready:
                rs_copy.setdefault("spec", {})["minReadySeconds"] = min_ready
                updated: Obj = self._wrote(await self.client.update(
                    _rs_path(ns, str(_md(rs_copy).get("name"))), rs_copy))
                # Later steps of this sync see the ReplicaSet as written.
                for i, rs in enumerate(rs_list):
                    if rs is existing:
                        rs_list[i] = updated
                return updated
            needs_update = du.set_deployment_revision(
                d, (_md(rs_copy).get("annotations") or {}).get(du.REVISION_ANNOTATION, ""))
            status = d.setdefault("status", {})
            if du.has_progress_deadline(d) and \
                    du.get_condition(status, du.DEPLOYMENT_PROGRESSING) is None:
                du.set_condition(status, du.new_condition(
                    du.DEPLOYMENT_PROGRESSING, "True", du.FOUND_NEW_RS_REASON,
                    f'Found new replica set "{_md(rs_copy).get("name")}"', self.now()))
                needs_update = True
            if needs_update:
                await self.update_status(d)
            return rs_copy
        if not create_if_not_existed:
            return None
        # Create the new ReplicaSet.
        template = copy.deepcopy(_spec(d).get("template") or {})
        status = d.setdefault("status", {})
        pod_template_hash = du.compute_hash(template, status.get("collisionCount"))
        tmd = template.setdefault("metadata", {})
        tmd["labels"] = du.clone_and_add_label(
            tmd.get("labels"), du.DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY, pod_template_hash)
        selector = du.clone_selector_and_add_label(
            _spec(d).get("selector"), du.DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY, pod_template_hash)
        rs_name = f"{name}-{pod_template_hash}"
        new_rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": ns,
                         "ownerReferences": [new_controller_ref(d, "apps/v1", "Deployment")],
                         "labels": dict(tmd["labels"])},
            "spec": {"replicas": 0, "minReadySeconds": int(_spec(d).get("minReadySeconds") or 0),
                     "selector": selector, "template": template},
        }
        new_replicas = du.new_rs_new_replicas(d, [*old_rss, new_rs], new_rs)
        new_rs["spec"]["replicas"] = new_replicas
        du.set_new_replica_set_annotations(d, new_rs, new_revision, False)
        already_exists = False
        try:
            created: Obj | None = self._wrote(await self.client.create(_rs_path(ns), new_rs))
        except AlreadyExists:
            already_exists = True
            # A slow cache, or a hash collision.
            rs = self.rs_informer.store.get_by_name(ns, rs_name)
            if rs is None:
                rs = await self.client.get(_rs_path(ns, rs_name))
            ref = controller_ref(rs)
            if ref is not None and ref.get("uid") == _uid(d) and \
                    du.equal_ignore_hash(_spec(d).get("template"), _spec(rs).get("template")):
                created = rs
            else:
                pre = status.get("collisionCount")
                status["collisionCount"] = int(pre or 0) + 1
                try:
                    await self.update_status(d)
                    log.info("%s: hash collision for deployment %s/%s: collisionCount %s -> %d",
                             COMPONENT, ns, name, pre, status["collisionCount"])
                except ApiError:
                    pass
                raise
        except ApiError as e:
            if e.has_cause(NAMESPACE_TERMINATING_CAUSE):
                raise
            msg = f'Failed to create new replica set "{rs_name}": {e.message}'
            if du.has_progress_deadline(d):
                du.set_condition(status, du.new_condition(
                    du.DEPLOYMENT_PROGRESSING, "False", du.FAILED_RS_CREATE_REASON, msg,
                    self.now()))
                try:
                    await self.update_status(d)
                except ApiError:
                    pass
            self.recorder.event(d, WARNING, du.FAILED_RS_CREATE_REASON, msg)
            raise
        assert created is not None
        if not already_exists and new_replicas > 0:
            self.recorder.event(d, NORMAL, "ScalingReplicaSet",
                                f"Scaled up replica set {_md(created).get('name')} from 0 to "
                                f"{new_replicas}")
        needs_update = du.set_deployment_revision(d, new_revision)
        if not already_exists and du.has_progress_deadline(d):
            du.set_condition(status, du.new_condition(
                du.DEPLOYMENT_PROGRESSING, "True", du.NEW_REPLICA_SET_REASON,
                f'Created new replica set "{_md(created).get("name")}"', self.now()))
            needs_update = True
        if needs_update:
            await self.update_status(d)
        return created

    # -- sync (scaling, paused) ------------------------------------------------------------
    async def sync_status_only(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, False)
        await self.sync_deployment_status([*old_rss, new_rs], new_rs, d)

    async def sync_scale(self, d: Obj, rs_list: list[Obj]) -> None:
        """Scaling events and paused Deployments (upstream's `sync`)."""
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, False)
        await self.scale(d, new_rs, old_rss)
        if _spec(d).get("paused") and get_rollback_to(d) is None:
            await self.cleanup_deployment(old_rss, d)
        await self.sync_deployment_status([*old_rss, new_rs], new_rs, d)

    async def check_paused_conditions(self, d: Obj) -> None:
        """Progressing=Unknown DeploymentPaused / DeploymentResumed, so that the time a
        Deployment spends paused never counts against its progress deadline."""
        if not du.has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        cond = du.get_condition(status, du.DEPLOYMENT_PROGRESSING)
        if cond is not None and cond.get("reason") == du.TIMED_OUT_REASON:
            return
        paused_cond = cond is not None and cond.get("reason") == du.PAUSED_DEPLOY_REASON
        paused = bool(_spec(d).get("paused"))
        if paused and not paused_cond:
            du.set_condition(status, du.new_condition(
                du.DEPLOYMENT_PROGRESSING, "Unknown", du.PAUSED_DEPLOY_REASON,
                "Deployment is paused", self.now()))
        elif not paused and paused_cond:
            du.set_condition(status, du.new_condition(
                du.DEPLOYMENT_PROGRESSING, "Unknown", du.RESUMED_DEPLOY_REASON,
                "Deployment is resumed", self.now()))
        else:
            return
        await self.update_status(d)

    async def is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        """An active ReplicaSet's desired-replicas annotation differs from spec.replicas."""
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, False)
        for rs in du.filter_active([*old_rss, new_rs]):
            desired = du.desired_replicas_annotation(rs)
            if desired is None:
                continue
            if desired != du.replicas(d):
                return True
        return False

    async def scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        """Proportional scaling: spread a change of spec.replicas over the active
        ReplicaSets by their share, leftovers to the largest (upstream's `scale`)."""
        active_or_latest = du.find_active_or_latest(new_rs, old_rss)
        if active_or_latest is not None:
            if du.rs_replicas(active_or_latest) == du.replicas(d):
                return
            await self.scale_replica_set_and_record_event(active_or_latest, du.replicas(d), d)
            return
        if du.is_saturated(d, new_rs):
            for old in du.filter_active(old_rss):
                await self.scale_replica_set_and_record_event(old, 0, d)
            return
        if not du.is_rolling_update(d):
            return
        all_rss = du.filter_active([*old_rss, new_rs])
        all_replicas = du.replica_count(all_rss)
        allowed = 0
        if du.replicas(d) > 0:
            allowed = du.replicas(d) + du.max_surge(d)
        to_add = allowed - all_replicas
        if to_add > 0:
            all_rss = du.sort_by_size_newer(all_rss)
        elif to_add < 0:
            all_rss = du.sort_by_size_older(all_rss)
        sizes = proportional_sizes(d, all_rss, to_add)
        for rs in all_rss:
            await self.scale_replica_set(rs, sizes[_uid(rs) or str(_md(rs).get("name"))], d)

    async def cleanup_deployment(self, old_rss: list[Obj], d: Obj) -> None:
        """Delete the oldest old ReplicaSets beyond revisionHistoryLimit (only those
        scaled to zero, whose status says so)."""
        if not du.has_revision_history_limit(d):
            return
        cleanable = [rs for rs in old_rss if rs is not None and
                     not _md(rs).get("deletionTimestamp")]
        diff = len(cleanable) - int(_spec(d)["revisionHistoryLimit"])
        if diff <= 0:
            return
        cleanable = du.sort_by_revision(cleanable)
        for rs in cleanable[:diff]:
            st = rs.get("status") or {}
            if int(st.get("replicas") or 0) != 0 or du.rs_replicas(rs) != 0 or \
                    int(_md(rs).get("generation") or 0) > int(st.get("observedGeneration") or 0) \
                    or _md(rs).get("deletionTimestamp"):
                continue
            log.debug("%s: deleting old replica set %s", COMPONENT, object_key(rs))
            try:
                await self.client.delete(_rs_path(_md(rs).get("namespace") or "",
                                                  str(_md(rs).get("name"))))
            except NotFound:
                pass

    # -- status ---------------------------------------------------------------------------
    async def sync_deployment_status(self, all_rss: list[Obj | None], new_rs: Obj | None,
                                     d: Obj) -> None:
        new_status = calculate_status(all_rss, new_rs, d)
        if _normalized_status(d.get("status") or {}) == _normalized_status(new_status):
            return
        d["status"] = new_status
        await self.update_status(d)

    async def sync_rollout_status(self, all_rss: list[Obj | None], new_rs: Obj | None,
                                  d: Obj) -> None:
        """The status with the Progressing condition estimated (progress.go)."""
        new_status = calculate_status(all_rss, new_rs, d)
        if not du.has_progress_deadline(d):
            du.remove_condition(new_status, du.DEPLOYMENT_PROGRESSING)
        current = du.get_condition(d.get("status") or {}, du.DEPLOYMENT_PROGRESSING)
        complete = int(new_status.get("replicas") or 0) == \
            int(new_status.get("updatedReplicas") or 0) and current is not None and \
            current.get("reason") == du.NEW_RS_AVAILABLE_REASON
        d_name = _md(d).get("name")
        rs_name = _md(new_rs).get("name") if new_rs is not None else None
        if du.has_progress_deadline(d) and not complete:
            now = self.now()
            if du.deployment_complete(d, new_status):
                msg = (f'ReplicaSet "{rs_name}" has successfully progressed.' if rs_name
                       else f'Deployment "{d_name}" has successfully progressed.')
                du.set_condition(new_status, du.new_condition(
                    du.DEPLOYMENT_PROGRESSING, "True", du.NEW_RS_AVAILABLE_REASON, msg, now))
            elif du.deployment_progressing(d, new_status):
                msg = (f'ReplicaSet "{rs_name}" is progressing.' if rs_name
                       else f'Deployment "{d_name}" is progressing.')
                cond = du.new_condition(du.DEPLOYMENT_PROGRESSING, "True",
                                        du.REPLICA_SET_UPDATED_REASON, msg, now)
                # Progress moves lastUpdateTime even when the reason stays the same.
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime")
                    du.remove_condition(new_status, du.DEPLOYMENT_PROGRESSING)
                du.set_condition(new_status, cond)
            elif du.deployment_timed_out(d, new_status, self.now):
                msg = (f'ReplicaSet "{rs_name}" has timed out progressing.' if rs_name
                       else f'Deployment "{d_name}" has timed out progressing.')
                du.set_condition(new_status, du.new_condition(
                    du.DEPLOYMENT_PROGRESSING, "False", du.TIMED_OUT_REASON, msg, now))
        failures = self.replica_failures(all_rss, new_rs)
        if failures:
            du.set_condition(new_status, failures[0])
        else:
            du.remove_condition(new_status, du.DEPLOYMENT_REPLICA_FAILURE)
        if _normalized_status(d.get("status") or {}) == _normalized_status(new_status):
            self.requeue_stuck_deployment(d, new_status)
            return
        d["status"] = new_status
        await self.update_status(d)

    @staticmethod
    def replica_failures(all_rss: list[Obj | None], new_rs: Obj | None) -> list[Obj]:
        """ReplicaFailure conditions of the new ReplicaSet, else of any ReplicaSet."""
        def of(rs: Obj) -> list[Obj]:
            return [du.rs_condition_to_deployment(c)
                    for c in (rs.get("status") or {}).get("conditions") or []
                    if c.get("type") == du.DEPLOYMENT_REPLICA_FAILURE]
        if new_rs is not None:
            out = of(new_rs)
            if out:
                return out
        return [c for rs in all_rss if rs is not None for c in of(rs)]

    def requeue_stuck_deployment(self, d: Obj, new_status: Obj) -> float:
        """Sync again when the progress deadline would pass without progress: seconds
        until then, 0 for now, -1 for never."""
        current = du.get_condition(d.get("status") or {}, du.DEPLOYMENT_PROGRESSING)
        if not du.has_progress_deadline(d) or current is None:
            return -1.0
        if du.deployment_complete(d, new_status) or current.get("reason") == du.TIMED_OUT_REASON:
            return -1.0
        since = du.parse_time(current.get("lastUpdateTime"))
        if since is None:
            return -1.0
        after = since.timestamp() + int(_spec(d)["progressDeadlineSeconds"]) - \
            self.now().timestamp()
        key = object_key(d)
        if after < 1.0:
            self.queue.add_rate_limited(key)
            return 0.0
        self.queue.add_after(key, after + 1.0)
        return after

    # -- rolling update -------------------------------------------------------------------
    async def rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, True)
        assert new_rs is not None
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        scaled_up, new_rs = await self.reconcile_new_replica_set(all_rss, new_rs, d)
        all_rss = [*old_rss, new_rs]
        if scaled_up:
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        scaled_down = await self.reconcile_old_replica_sets(
            all_rss, du.filter_active(old_rss), new_rs, d)
        if scaled_down:
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if du.deployment_complete(d, d.get("status") or {}):
            await self.cleanup_deployment(old_rss, d)
        await self.sync_rollout_status(all_rss, new_rs, d)

    async def reconcile_new_replica_set(self, all_rss: list[Obj | None], new_rs: Obj, d: Obj
                                        ) -> tuple[bool, Obj]:
        if du.rs_replicas(new_rs) == du.replicas(d):
            return False, new_rs
        if du.rs_replicas(new_rs) > du.replicas(d):
            return await self.scale_replica_set_and_record_event(new_rs, du.replicas(d), d)
        count = du.new_rs_new_replicas(d, all_rss, new_rs)
        return await self.scale_replica_set_and_record_event(new_rs, count, d)

    async def reconcile_old_replica_sets(self, all_rss: list[Obj | None], old_rss: list[Obj],
                                         new_rs: Obj, d: Obj) -> bool:
        old_pods = du.replica_count(old_rss)
        if old_pods == 0:
            return False
        all_pods = du.replica_count(all_rss)
        max_scaled_down = max_old_scale_down(d, all_pods, new_rs)
        if max_scaled_down <= 0:
            return False
        # Unhealthy old replicas first: removing them never lowers availability.
        # As upstream, errors here end this step quietly (the next sync tries again).
        try:
            old_rss, cleaned = await self.cleanup_unhealthy_replicas(old_rss, d, max_scaled_down)
        except (ApiError, ValueError) as e:
            log.debug("%s: cleaning up unhealthy replicas: %s", COMPONENT, e)
            return False
        try:
            scaled = await self.scale_down_old_replica_sets_for_rolling_update(
                [*old_rss, new_rs], old_rss, d)
        except (ApiError, ValueError) as e:
            log.debug("%s: scaling down old replica sets: %s", COMPONENT, e)
            return False
        return cleaned + scaled > 0

    async def cleanup_unhealthy_replicas(self, old_rss: list[Obj], d: Obj, max_cleanup: int
                                         ) -> tuple[list[Obj], int]:
        old_rss = du.sort_by_creation(old_rss)
        total = 0
        for i, rs in enumerate(old_rss):
            if total >= max_cleanup:
                break
            n = du.rs_replicas(rs)
            available = int((rs.get("status") or {}).get("availableReplicas") or 0)
            if n == 0 or n == available:
                continue
            count = min(max_cleanup - total, n - available)
            new_count = n - count
            if new_count > n:
                raise ValueError(f"when cleaning up unhealthy replicas, got invalid request to "
                                 f"scale down {object_key(rs)} {n} -> {new_count}")
            _, updated = await self.scale_replica_set_and_record_event(rs, new_count, d)
            total += count
            old_rss[i] = updated
        return old_rss, total

    async def scale_down_old_replica_sets_for_rolling_update(
            self, all_rss: list[Obj | None], old_rss: list[Obj], d: Obj) -> int:
        plan = rolling_scale_down_plan(d, all_rss, old_rss)
        total = 0
        for rs, new_count in plan:
            await self.scale_replica_set_and_record_event(rs, new_count, d)
            total += du.rs_replicas(rs) - new_count
        return total

    # -- recreate -------------------------------------------------------------------------
    async def rollout_recreate(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, False)
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        active_old = du.filter_active(old_rss)
        scaled_down = False
        for i, rs in enumerate(active_old):
            scaled, updated = await self.scale_replica_set_and_record_event(rs, 0, d)
            if scaled:
                active_old[i] = updated
                scaled_down = True
        if scaled_down:
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        pod_map = self.pod_map_for_deployment(d, rs_list)
        if old_pods_running(new_rs, old_rss, pod_map):
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if new_rs is None:
            new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, True)
            all_rss = [*old_rss, new_rs]
        assert new_rs is not None
        await self.scale_replica_set_and_record_event(new_rs, du.replicas(d), d)
        if du.deployment_complete(d, d.get("status") or {}):
            await self.cleanup_deployment(old_rss, d)
        await self.sync_rollout_status(all_rss, new_rs, d)

    # -- rollback (the deprecated rollbackTo annotation) ----------------------------------
    async def rollback(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, all_old = await self.get_all_replica_sets_and_sync_revision(d, rs_list, True)
        all_rss = [*all_old, new_rs]
        to = get_rollback_to(d) or 0
        if to == 0:
            to = du.last_revision(all_rss)
            if to == 0:
                self.recorder.event(d, WARNING, du.ROLLBACK_REVISION_NOT_FOUND,
                                    "Unable to find last revision.")
                await self.update_deployment_and_clear_rollback_to(d)
                return
        for rs in all_rss:
            if rs is None:
                continue
            try:
                v = du.revision(rs)
            except ValueError:
                continue
            if v == to:
                performed = False
                if not du.equal_ignore_hash(_spec(d).get("template"), _spec(rs).get("template")):
                    du.set_from_replica_set_template(d, _spec(rs).get("template") or {})
                    du.set_deployment_annotations_to(d, rs)
                    performed = True
                else:
                    self.recorder.event(d, WARNING, du.ROLLBACK_TEMPLATE_UNCHANGED,
                                        "The rollback revision contains the same template as "
                                        f'current deployment "{_md(d).get("name")}"')
                await self.update_deployment_and_clear_rollback_to(d)
                if performed:
                    self.recorder.event(d, NORMAL, du.ROLLBACK_DONE,
                                        f'Rolled back deployment "{_md(d).get("name")}" to '
                                        f"revision {to}")
                return
        self.recorder.event(d, WARNING, du.ROLLBACK_REVISION_NOT_FOUND,
                            "Unable to find the revision to rollback to.")
        await self.update_deployment_and_clear_rollback_to(d)

    async def update_deployment_and_clear_rollback_to(self, d: Obj) -> None:
        (_md(d).get("annotations") or {}).pop(du.DEPRECATED_ROLLBACK_TO, None)
        await self.put_deployment(d)


# -- pure parts of the strategies ---------------------------------------------------------------
def proportional_sizes(d: Obj, all_rss: list[Obj], to_add: int) -> dict[str, int]:
    """The new size of each active ReplicaSet (already sorted as `scale` sorts them) when
    `to_add` replicas are spread by share, leftovers to the first (largest)."""
    def key(rs: Obj) -> str:
        return _uid(rs) or str(_md(rs).get("name"))
    sizes: dict[str, int] = {}
    added = 0
    for rs in all_rss:
        if to_add != 0:
            p = du.get_proportion(rs, d, to_add, added)
            sizes[key(rs)] = du.rs_replicas(rs) + p
            added += p
        else:
            sizes[key(rs)] = du.rs_replicas(rs)
    if all_rss and to_add != 0:
        first = key(all_rss[0])
        sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes


def max_old_scale_down(d: Obj, all_pods: int, new_rs: Obj) -> int:
    """How many old replicas may go: all pods beyond minAvailable, less the new
    ReplicaSet's unavailable ones (reconcileOldReplicaSets)."""
    min_avail = du.replicas(d) - du.max_unavailable(d)
    new_unavailable = du.rs_replicas(new_rs) - int(
        (new_rs.get("status") or {}).get("availableReplicas") or 0)
    return all_pods - min_avail - new_unavailable


def rolling_scale_down_plan(d: Obj, all_rss: list[Obj | None], old_rss: list[Obj]
                            ) -> list[tuple[Obj, int]]:
    """(ReplicaSet, new size) for the old ReplicaSets, oldest first, so that at least
    replicas - maxUnavailable pods stay available
    (scaleDownOldReplicaSetsForRollingUpdate)."""
    min_avail = du.replicas(d) - du.max_unavailable(d)
    available = du.available_replica_count(all_rss)
    if available <= min_avail:
        return []
    plan: list[tuple[Obj, int]] = []
    total_to_scale = available - min_avail
    total = 0
    for rs in du.sort_by_creation(old_rss):
        if total >= total_to_scale:
            break
        n = du.rs_replicas(rs)
        if n == 0:
            continue
        count = min(n, total_to_scale - total)
        plan.append((rs, n - count))
        total += count
    return plan


def old_pods_running(new_rs: Obj | None, old_rss: list[Obj],
                     pod_map: dict[str, list[Obj]]) -> bool:
    """Old ReplicaSets report pods, or pods of theirs are not terminal yet."""
    if du.actual_replica_count(old_rss) > 0:
        return True
    for uid, pods in pod_map.items():
        if new_rs is not None and _uid(new_rs) == uid:
            continue
        for pod in pods:
            if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                continue
            return True
    return False


__all__ = ["DeploymentController", "calculate_status", "proportional_sizes",
           "max_old_scale_down", "rolling_scale_down_plan", "old_pods_running",
           "get_rollback_to", "COMPONENT"]

"""The DaemonSet controller (upstream's `pkg/controller/daemon`: daemon_controller.go and
update.go).

Level-triggered: handlers on DaemonSets, pods, nodes and ControllerRevisions only enqueue
`namespace/name` keys; `sync(key)`:

1. skips a DaemonSet selecting everything (Warning SelectingAll) or being deleted;
2. builds the history (`construct_history`): claims the ControllerRevisions matching the
   selector, finds the one whose data is the current template patch (creating
   `<ds>-<hash>` with revision max+1, or re-numbering an equal older one: a rollback),
   dedupes equal ones; the current hash labels new pods `controller-revision-hash`;
3. while expectations are pending only status is written; otherwise `manage`: for each
   node, `node_should_run_daemon_pod` decides: create a pod where one should run and
   none exists (pinned by a `matchFields metadata.name` node affinity, bound by the
   scheduler), delete failed pods (Warning FailedDaemonPod, with a per-node backoff of
   1 s doubling to 15 min) and succeeded ones, keep only the oldest running pod (two
   during a surge), delete the pods of nodes that should not run one (untolerated
   NoExecute taints, selector / affinity mismatch), and the unscheduled pods of nodes
   that no longer exist (bound pods of deleted nodes are the pod GC's: 40 s quarantine);
   creations go in slow-start batches, at most 250 per sync;
4. RollingUpdate: without maxSurge, old pods are deleted while fewer than maxUnavailable
   (default 1) pods are unavailable (unavailable old pods are always replaced), and
   `manage` recreates them at the new revision; with maxSurge, new pods are created
   beside available old pods (up to maxSurge at once) and the old pod goes once the new
   one is available. OnDelete: only deleted pods are replaced;
5. old revisions beyond `revisionHistoryLimit` (10) not used by any pod are deleted;
6. status: desiredNumberScheduled, currentNumberScheduled, numberMisscheduled,
   numberReady, numberAvailable (ready for minReadySeconds), numberUnavailable,
   updatedNumberScheduled, observedGeneration (collisionCount is bumped on a hash
   collision).
"""
from __future__ import annotations

import asyncio
import copy
import logging
from datetime import datetime, timezone
from typing import Any

from pyk8s.api.selectors import LabelSelector, label_selector_from_dict
from pyk8s.client.events import NORMAL, WARNING, EventRecorder
from pyk8s.client.informer import EventHandlerFuncs, SharedInformerFactory, object_key
from pyk8s.client.rest import AlreadyExists, ApiError, NotFound, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.controllers import daemonset_util as du
from pyk8s.controllers.controller_utils import (NAMESPACE_TERMINATING_CAUSE,
                                                SLOW_START_INITIAL_BATCH_SIZE,
                                                ControllerEventHandlers, ControllerRefManager,
                                                DependentEventHandlers, PodControl,
                                                UIDTrackingControllerExpectations,
                                                controllers_selecting, is_pod_available,
                                                is_pod_ready, new_controller_ref, pod_key,
                                                recheck_deletion_timestamp,
                                                resolve_controller_ref)
from pyk8s.controllers.deployment_util import compute_hash
from pyk8s.controllers.history import (History, canonical_json, revision_dependent_path,
                                       revision_number, revisions_path, sort_revisions,
                                       template_patch)

log = logging.getLogger("pyk8s.controllers.daemonset")

Obj = dict[str, Any]

COMPONENT = "daemonset-controller"
API_VERSION = "apps/v1"
KIND = "DaemonSet"
BURST_REPLICAS = 250
STATUS_UPDATE_RETRIES = 1
HASH_LABEL = du.DEFAULT_DAEMONSET_UNIQUE_LABEL_KEY

SELECTING_ALL_REASON = "SelectingAll"
FAILED_DAEMON_POD_REASON = "FailedDaemonPod"
SUCCEEDED_DAEMON_POD_REASON = "SucceededDaemonPod"

_STATUS_FIELDS = ("desiredNumberScheduled", "currentNumberScheduled", "numberMisscheduled",
                  "numberReady", "updatedNumberScheduled", "numberAvailable",
                  "numberUnavailable")


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def ds_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    return resource_path("apps", "v1", "daemonsets", namespace, name, subresource)


def _selector(ds: Obj) -> LabelSelector:
    return label_selector_from_dict(_spec(ds).get("selector"))


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _node_in_same_condition(old: Obj, cur: Obj) -> bool:
    def true_types(n: Obj) -> set[str]:
        return {str(c.get("type")) for c in (n.get("status") or {}).get("conditions") or []
                if c.get("status") == "True"}
    return true_types(old) == true_types(cur)


def should_ignore_node_update(old: Obj, cur: Obj) -> bool:
    """Only the resourceVersion and condition details changed (shouldIgnoreNodeUpdate)."""
    if not _node_in_same_condition(old, cur):
        return False

    def strip(n: Obj) -> Obj:
        n = copy.copy(n)
        n["metadata"] = {k: v for k, v in _md(n).items()
                         if k not in ("resourceVersion", "managedFields")}
        n["status"] = {k: v for k, v in (n.get("status") or {}).items() if k != "conditions"}
        return n
    return strip(old) == strip(cur)


class DaemonSetsController:
    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: EventRecorder,
                 *, workers: int = 2, burst_replicas: int = BURST_REPLICAS,
                 backoff: du.FailedPodsBackoff | None = None) -> None:
        self.client = client
        self.recorder = recorder
        self.workers = workers
        self.burst_replicas = burst_replicas
        self.pod_control = PodControl(client, recorder)
        self.history = History(client)
        self.expectations = UIDTrackingControllerExpectations()
        self.failed_pods_backoff = backoff or du.FailedPodsBackoff()
        self.queue: WorkQueue[str] = WorkQueue("daemonset")
        self.ds_informer = factory.informer("apps", "v1", "daemonsets")
        self.history_informer = factory.informer("apps", "v1", "controllerrevisions")
        self.pod_informer = factory.pods()
        self.node_informer = factory.nodes()
        ds_events = ControllerEventHandlers(self.enqueue, self.forget_ds)
        self.add_ds = ds_events.on_add
        self.update_ds = ds_events.on_update
        self.delete_ds = ds_events.on_delete
        history_events = DependentEventHandlers(
            self.resolve_controller_ref, self.daemon_sets_for, self.enqueue,
            update_deleting=False)
        self.add_history = history_events.on_add
        self.update_history = history_events.on_update
        self.delete_history = history_events.on_delete
        pod_events = DependentEventHandlers(
            self.resolve_controller_ref, self.daemon_sets_for, self.enqueue,
            expectations=self.expectations, enqueue_after=self.enqueue_after,
            min_ready_extra=1.0)
        self.add_pod = pod_events.on_add
        self.update_pod = pod_events.on_update
        self.delete_pod = pod_events.on_delete
        self._handlers: list[tuple[Any, Any]] = [
            (self.ds_informer, ds_events),
            (self.history_informer, history_events),
            (self.pod_informer, pod_events),
            (self.node_informer, EventHandlerFuncs(self.add_node, self.update_node,
                                                   self.delete_node)),
        ]
        for inf, h in self._handlers:
            inf.add_event_handler(h)

    async def run(self) -> None:
        try:
            await asyncio.gather(*(inf.synced.wait() for inf, _ in self._handlers))
            log.info("%s: synced", COMPONENT)
            await asyncio.gather(run_workers(self.queue, self.sync, self.workers,
                                             name=COMPONENT), self._backoff_gc())
        finally:
            self.queue.shutdown()
            for inf, h in self._handlers:
                inf.remove_event_handler(h)

    async def _backoff_gc(self) -> None:
        while True:
            await asyncio.sleep(60.0)
            self.failed_pods_backoff.gc()

    # -- event handlers -------------------------------------------------------------------
    def enqueue(self, ds: Obj) -> None:
        self.queue.add(object_key(ds))

    def enqueue_after(self, ds: Obj, delay: float) -> None:
        self.queue.add_after(object_key(ds), delay)

    def forget_ds(self, ds: Obj) -> None:
        self.expectations.delete_expectations(object_key(ds))

    def resolve_controller_ref(self, namespace: str, ref: Obj) -> Obj | None:
        return resolve_controller_ref(self.ds_informer.store, namespace, ref, KIND)

    def daemon_sets_for(self, obj: Obj) -> list[Obj]:
        """DaemonSets in the object's namespace whose selector matches its labels."""
        return controllers_selecting(self.ds_informer.store, obj, _selector)

    def add_node(self, node: Obj) -> None:
        for ds in self.ds_informer.store.list():
            if du.node_should_run_daemon_pod(node, ds)[0]:
                self.enqueue(ds)

    def update_node(self, old: Obj, cur: Obj) -> None:
        if should_ignore_node_update(old, cur):
            return
        for ds in self.ds_informer.store.list():
            if du.node_should_run_daemon_pod(old, ds) != du.node_should_run_daemon_pod(cur, ds):
                self.enqueue(ds)

    def delete_node(self, node: Obj) -> None:
        # Not in upstream (it waits for the pod GC's deletion): refreshes the status at once.
        for ds in self.ds_informer.store.list():
            self.enqueue(ds)

    # -- pods per node --------------------------------------------------------------------
    def ref_manager(self, ds: Obj, **kw: Any) -> ControllerRefManager:
        """Claims `ds`'s dependents; before adopting one, `ds` is read again (upstream's
        RecheckDeletionTimestamp)."""
        md = _md(ds)
        ns, name, uid = str(md.get("namespace") or ""), str(md.get("name")), str(md.get("uid"))

        async def fresh() -> Obj:
            return await self.client.get(ds_path(ns, name))
        return ControllerRefManager(self.client, ds, API_VERSION, KIND, _selector(ds),
                                    recheck_deletion_timestamp(fresh, uid), **kw)

    async def get_daemon_pods(self, ds: Obj) -> list[Obj]:
        ns = str(_md(ds).get("namespace") or "")
        return await self.ref_manager(ds).claim(self.pod_informer.store.list_namespace(ns))

    async def nodes_to_daemon_pods(self, ds: Obj) -> dict[str, list[Obj]]:
        out: dict[str, list[Obj]] = {}
        for pod in await self.get_daemon_pods(ds):
            node = du.target_node_name(pod)
            if node is None:
                log.debug("%s: no target node of pod %s", COMPONENT, pod_key(pod))
                continue
            out.setdefault(node, []).append(pod)
        return out

    # -- sync -----------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        ds = self.ds_informer.store.get(key)
        if ds is None:
            log.debug("%s: %s has been deleted", COMPONENT, key)
            self.expectations.delete_expectations(key)
            return
        nodes = self.node_informer.store.list()
        sel = _spec(ds).get("selector")
        if sel is not None and not (sel.get("matchLabels") or sel.get("matchExpressions")):
            self.recorder.event(ds, WARNING, SELECTING_ALL_REASON, "This daemon set is "
                                "selecting all pods. A non-empty selector is required.")
            return
        try:
            _selector(ds)
        except ValueError as e:
            log.info("%s: %s has an invalid selector: %s", COMPONENT, key, e)
            return
        if _md(ds).get("deletionTimestamp"):
            return
        cur, old = await self.construct_history(ds)
        hash_ = str((_md(cur).get("labels") or {}).get(HASH_LABEL) or "")
        if not self.expectations.satisfied_expectations(key):
            await self.update_status(ds, nodes, hash_, update_observed_generation=False)
            return
        err: Exception | None = None
        try:
            await self.update_daemon_set(ds, nodes, hash_, key, old)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            err = e
        await self.update_status(ds, nodes, hash_, update_observed_generation=True)
        if err is not None:
            raise err

    async def update_daemon_set(self, ds: Obj, nodes: list[Obj], hash_: str, key: str,
                                old: list[Obj]) -> None:
        await self.manage(ds, nodes, hash_)
        if self.expectations.satisfied_expectations(key) and du.is_rolling_update(ds):
            await self.rolling_update(ds, nodes, hash_)
        await self.cleanup_history(ds, old)

    # -- history --------------------------------------------------------------------------
    async def controlled_histories(self, ds: Obj) -> list[Obj]:
        ns = str(_md(ds).get("namespace") or "")
        manager = self.ref_manager(ds, dependent_path=revision_dependent_path)
        return await manager.claim(self.history_informer.store.list_namespace(ns))

    async def construct_history(self, ds: Obj) -> tuple[Obj, list[Obj]]:
        """(the current revision, the old ones), creating / re-numbering as needed."""
        ns = str(_md(ds).get("namespace") or "")
        patch = canonical_json(template_patch(ds))
        current: list[Obj] = []
        old: list[Obj] = []
        for h in await self.controlled_histories(ds):
            if HASH_LABEL not in (_md(h).get("labels") or {}):
                body = copy.deepcopy(h)
                body["metadata"].setdefault("labels", {})[HASH_LABEL] = body["metadata"]["name"]
                h = await self.client.update(revisions_path(ns, str(_md(h).get("name"))), body)
            if canonical_json(h.get("data")) == patch:
                current.append(h)
            else:
                old.append(h)
        cur_revision = max((revision_number(h) for h in old), default=0) + 1
        if not current:
            return await self.snapshot(ds, cur_revision), old
        cur = await self.dedup_current_histories(ds, current)
        if revision_number(cur) < cur_revision:
            cur = await self.history.update_revision(cur, cur_revision)
        return cur, old

    async def dedup_current_histories(self, ds: Obj, current: list[Obj]) -> Obj:
        if len(current) == 1:
            return current[0]
        keep = sort_revisions(current)[-1]
        keep_hash = (_md(keep).get("labels") or {}).get(HASH_LABEL)
        pods = await self.get_daemon_pods(ds)
        for h in current:
            if h is keep:
                continue
            dup_hash = (_md(h).get("labels") or {}).get(HASH_LABEL)
            for pod in pods:
                if (_md(pod).get("labels") or {}).get(HASH_LABEL) == dup_hash:
                    await self.pod_control.patch_pod(
                        str(_md(pod).get("namespace")), str(_md(pod).get("name")),
                        {"metadata": {"labels": {HASH_LABEL: keep_hash}}})
            try:
                await self.history.delete(h)
            except NotFound:
                pass
        return keep

    async def snapshot(self, ds: Obj, revision: int) -> Obj:
        """Create `<ds>-<hash of the template>` (upstream's snapshot); a name taken by other
        data bumps status.collisionCount and fails the sync (it is retried)."""
        md = _md(ds)
        ns, name = str(md.get("namespace") or ""), str(md.get("name"))
        collision = (ds.get("status") or {}).get("collisionCount")
        h = compute_hash(_spec(ds).get("template") or {}, collision)
        labels = dict(((_spec(ds).get("template") or {}).get("metadata") or {}).get("labels")
                      or {})
        labels[HASH_LABEL] = h
        meta: Obj = {"name": f"{name}-{h}", "namespace": ns, "labels": labels,
                     "ownerReferences": [new_controller_ref(ds, API_VERSION, KIND)]}
        if md.get("annotations"):
            meta["annotations"] = dict(md["annotations"])
        body = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta,
                "data": template_patch(ds), "revision": revision}
        try:
            return await self.client.create(revisions_path(ns), body)  # type: ignore[no-any-return]
        except AlreadyExists:
            existing = await self.client.get(revisions_path(ns, meta["name"]))
            if canonical_json(existing.get("data")) == canonical_json(body["data"]):
                return existing  # type: ignore[no-any-return]
            cur = await self.client.get(ds_path(ns, name))
            cur_count = (cur.get("status") or {}).get("collisionCount")
            if cur_count != collision:
                raise RuntimeError(f"found a stale collision count ({collision}, expected "
                                   f"{cur_count}) of DaemonSet {name!r} while processing; will "
                                   f"retry until it is updated") from None
            cur.setdefault("status", {})["collisionCount"] = int(cur_count or 0) + 1
            await self.client.update(ds_path(ns, name, "status"), cur)
            log.info("%s: hash collision for DaemonSet %s/%s, collisionCount now %d",
                     COMPONENT, ns, name, int(cur_count or 0) + 1)
            raise

    async def cleanup_history(self, ds: Obj, old: list[Obj]) -> None:
        limit = _spec(ds).get("revisionHistoryLimit")
        to_kill = len(old) - (10 if limit is None else int(limit))
        if to_kill <= 0:
            return
        live = {str((_md(p).get("labels") or {}).get(HASH_LABEL))
                for pods in (await self.nodes_to_daemon_pods(ds)).values() for p in pods
                if (_md(p).get("labels") or {}).get(HASH_LABEL)}
        for h in sort_revisions(old):
            if to_kill <= 0:
                break
            if (_md(h).get("labels") or {}).get(HASH_LABEL) in live:
                continue
            try:
                await self.history.delete(h)
            except NotFound:
                pass
            to_kill -= 1

    # -- manage ---------------------------------------------------------------------------
    def pods_should_be_on_node(self, node: Obj, node_to_pods: dict[str, list[Obj]], ds: Obj,
                               hash_: str) -> tuple[list[str], list[str]]:
        """(nodes needing a daemon pod, pods to delete) for one node."""
        name = str(_md(node).get("name"))
        should_run, should_continue = du.node_should_run_daemon_pod(node, ds)
        pods = node_to_pods.get(name)
        need: list[str] = []
        delete: list[str] = []
        ns = _md(ds).get("namespace")
        if should_run and pods is None:
            need.append(name)
        elif should_continue:
            running: list[Obj] = []
            for pod in pods or []:
                if _md(pod).get("deletionTimestamp"):
                    continue
                if _phase(pod) == "Failed":
                    bkey = du.failed_pods_backoff_key(ds, name)
                    now = self.failed_pods_backoff.clock()
                    if self.failed_pods_backoff.is_in_backoff_since_update(bkey, now):
                        self.enqueue_after(ds, self.failed_pods_backoff.get(bkey))
                        continue
                    self.failed_pods_backoff.next(bkey, now)
                    self.recorder.event(ds, WARNING, FAILED_DAEMON_POD_REASON,
                                        f"Found failed daemon pod {ns}/{_md(pod).get('name')} "
                                        f"on node {name}, will try to kill it")
                    delete.append(str(_md(pod).get("name")))
                elif _phase(pod) == "Succeeded":
                    self.recorder.event(ds, NORMAL, SUCCEEDED_DAEMON_POD_REASON,
                                        f"Found succeeded daemon pod {ns}/"
                                        f"{_md(pod).get('name')} on node {name}, will try to "
                                        f"delete it")
                    delete.append(str(_md(pod).get("name")))
                else:
                    running.append(pod)
            running = du.sort_by_creation_and_phase(running)
            if not du.allows_surge(ds):
                delete.extend(str(_md(p).get("name")) for p in running[1:])
            elif len(running) <= 1:
                if not running and should_run:
                    need.append(name)
            else:
                newest: Obj | None = None
                oldest_old: Obj | None = None
                for pod in running:
                    if (_md(pod).get("labels") or {}).get(HASH_LABEL) == hash_:
                        if newest is None:
                            newest = pod
                            continue
                    elif oldest_old is None:
                        oldest_old = pod
                        continue
                    delete.append(str(_md(pod).get("name")))
                if newest is not None and oldest_old is not None:
                    min_ready = int(_spec(ds).get("minReadySeconds") or 0)
                    if not is_pod_ready(oldest_old) or is_pod_available(newest, min_ready):
                        delete.append(str(_md(oldest_old).get("name")))
        elif pods:
            delete.extend(str(_md(p).get("name")) for p in pods
                          if not _md(p).get("deletionTimestamp"))
        return need, delete

    async def manage(self, ds: Obj, nodes: list[Obj], hash_: str) -> None:
        node_to_pods = await self.nodes_to_daemon_pods(ds)
        need: list[str] = []
        delete: list[str] = []
        for node in nodes:
            n, d = self.pods_should_be_on_node(node, node_to_pods, ds, hash_)
            need += n
            delete += d
        existing = {str(_md(n).get("name")) for n in nodes}
        for node_name, pods in node_to_pods.items():
            if node_name not in existing:
                delete.extend(str(_md(p).get("name")) for p in pods
                              if not _spec(p).get("nodeName"))
        await self.sync_nodes(ds, delete, need, hash_)

    async def sync_nodes(self, ds: Obj, pods_to_delete: list[str], nodes_needing: list[str],
                         hash_: str) -> None:
        """Create daemon pods on `nodes_needing`, delete `pods_to_delete` (upstream's
        syncNodes), with expectations set first."""
        key = object_key(ds)
        ns = str(_md(ds).get("namespace") or "")
        nodes_needing = nodes_needing[:self.burst_replicas]
        pods_to_delete = pods_to_delete[:self.burst_replicas]
        self.expectations.set_expectations(key, len(nodes_needing), 0)
        self.expectations.expect_deletions(key, [f"{ns}/{p}" for p in pods_to_delete])
        self.expectations.raise_expectations(key, len(nodes_needing), 0)
        template = du.create_pod_template(_spec(ds).get("template") or {},
                                          du.template_generation(ds), hash_)
        ref = new_controller_ref(ds, API_VERSION, KIND)
        errors: list[Exception] = []
        pos = 0
        batch = min(len(nodes_needing), SLOW_START_INITIAL_BATCH_SIZE)
        while batch > 0:
            async def create(node_name: str) -> None:
                tmpl = copy.deepcopy(template)
                tmpl["spec"]["affinity"] = du.replace_node_name_affinity(
                    tmpl["spec"].get("affinity"), node_name)
                try:
                    await self.pod_control.create_pods(ns, tmpl, ds, ref)
                except ApiError as e:
                    if e.has_cause(NAMESPACE_TERMINATING_CAUSE):
                        return
                    self.expectations.creation_observed(key)
                    raise
                except Exception:
                    self.expectations.creation_observed(key)
                    raise
            results = await asyncio.gather(*(create(n) for n in
                                             nodes_needing[pos:pos + batch]),
                                           return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            for r in failed:
                if isinstance(r, asyncio.CancelledError):
                    raise r
                errors.append(r if isinstance(r, Exception) else Exception(str(r)))
            pos += batch
            skipped = len(nodes_needing) - pos
            if failed and skipped > 0:
                self.expectations.lower_expectations(key, skipped, 0)
                break
            batch = min(2 * batch, skipped)

        async def delete(name: str) -> None:
            try:
                await self.pod_control.delete_pod(ns, name, ds)
            except Exception as e:
                self.expectations.deletion_observed(key, f"{ns}/{name}")
                if not isinstance(e, NotFound):
                    raise
        results = await asyncio.gather(*(delete(p) for p in pods_to_delete),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, asyncio.CancelledError):
                raise r
            if isinstance(r, Exception):
                errors.append(r)
        if errors:
            raise errors[0]

    # -- rolling update -------------------------------------------------------------------
    def updated_desired_node_counts(self, ds: Obj, nodes: list[Obj],
                                    node_to_pods: dict[str, list[Obj]]) -> tuple[int, int, int]:
        """(maxSurge, maxUnavailable, desired), adding nodes that should run a pod to
        `node_to_pods` (upstream's updatedDesiredNodeCounts)."""
        desired = 0
        for node in nodes:
            if not du.node_should_run_daemon_pod(node, ds)[0]:
                continue
            desired += 1
            node_to_pods.setdefault(str(_md(node).get("name")), [])
        max_surge = du.surge_count(ds, desired)
        max_unavailable = du.unavailable_count(ds, desired)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1
        return max_surge, max_unavailable, desired

    @staticmethod
    def find_updated_pods_on_node(ds: Obj, pods: list[Obj], hash_: str
                                  ) -> tuple[Obj | None, Obj | None, bool]:
        """(new pod, old pod, ok): ok is False with more than one of either."""
        new = old = None
        gen = du.template_generation(ds)
        for pod in pods:
            if _md(pod).get("deletionTimestamp"):
                continue
            if du.is_pod_updated(pod, hash_, gen):
                if new is not None:
                    return None, None, False
                new = pod
            else:
                if old is not None:
                    return None, None, False
                old = pod
        return new, old, True

    async def rolling_update(self, ds: Obj, nodes: list[Obj], hash_: str) -> None:
        node_to_pods = await self.nodes_to_daemon_pods(ds)
        max_surge, max_unavailable, desired = self.updated_desired_node_counts(
            ds, nodes, node_to_pods)
        min_ready = int(_spec(ds).get("minReadySeconds") or 0)
        now = datetime.now(timezone.utc)

        def available(p: Obj) -> bool:
            return is_pod_available(p, min_ready, now)
        if max_surge == 0:
            num_unavailable = 0
            allowed: list[str] = []
            candidates: list[str] = []
            for node_name in sorted(node_to_pods):
                new, old, ok = self.find_updated_pods_on_node(ds, node_to_pods[node_name], hash_)
                if not ok or (new is None) == (old is None):
                    num_unavailable += 1
                elif new is not None:
                    if not available(new):
                        num_unavailable += 1
                else:
                    assert old is not None
                    if not available(old):
                        allowed.append(str(_md(old).get("name")))
                    elif num_unavailable < max_unavailable:
                        candidates.append(str(_md(old).get("name")))
            remaining = max(0, min(max_unavailable - num_unavailable, len(candidates)))
            await self.sync_nodes(ds, allowed + candidates[:remaining], [], hash_)
            return
        by_name = {str(_md(n).get("name")): n for n in nodes}
        old_to_delete: list[str] = []
        should_not_run: list[str] = []
        candidate_nodes: list[str] = []
        allowed_nodes: list[str] = []
        num_surge = num_available = 0
        for node_name in sorted(node_to_pods):
            new, old, ok = self.find_updated_pods_on_node(ds, node_to_pods[node_name], hash_)
            if not ok:
                num_surge += 1
                continue
            if old is not None:
                num_available += available(old)
            elif new is not None:
                num_available += available(new)
            if old is None:
                continue
            node = by_name.get(node_name)
            if new is None:
                if node is None:
                    raise RuntimeError(f"couldn't get node for nodeName {node_name!r}")
                should_run = du.node_should_run_daemon_pod(node, ds)[0]
                if not available(old):
                    if not should_run:
                        old_to_delete.append(str(_md(old).get("name")))
                        continue
                    allowed_nodes.append(node_name)
                else:
                    if not should_run:
                        should_not_run.append(str(_md(old).get("name")))
                        continue
                    if num_surge >= max_surge:
                        continue
                    candidate_nodes.append(node_name)
            else:
                if not available(new):
                    num_surge += 1
                    continue
                old_to_delete.append(str(_md(old).get("name")))
        remaining = max(0, min(max_surge - num_surge, len(candidate_nodes)))
        deletable = num_available - desired
        if deletable > 0:
            old_to_delete += should_not_run[:min(deletable, len(should_not_run))]
        await self.sync_nodes(ds, old_to_delete, allowed_nodes + candidate_nodes[:remaining],
                              hash_)

    # -- status ---------------------------------------------------------------------------
    async def update_status(self, ds: Obj, nodes: list[Obj], hash_: str, *,
                            update_observed_generation: bool) -> None:
        node_to_pods = await self.nodes_to_daemon_pods(ds)
        min_ready = int(_spec(ds).get("minReadySeconds") or 0)
        now = datetime.now(timezone.utc)
        gen = du.template_generation(ds)
        c = dict.fromkeys(_STATUS_FIELDS, 0)
        for node in nodes:
            should_run = du.node_should_run_daemon_pod(node, ds)[0]
            pods = node_to_pods.get(str(_md(node).get("name"))) or []
            if not should_run:
                c["numberMisscheduled"] += bool(pods)
                continue
            c["desiredNumberScheduled"] += 1
            if not pods:
                continue
            c["currentNumberScheduled"] += 1
            pod = du.sort_by_creation_and_phase(pods)[0]
            if is_pod_ready(pod):
                c["numberReady"] += 1
                if is_pod_available(pod, min_ready, now):
                    c["numberAvailable"] += 1
            if du.is_pod_updated(pod, hash_, gen):
                c["updatedNumberScheduled"] += 1
        c["numberUnavailable"] = c["desiredNumberScheduled"] - c["numberAvailable"]
        await self.store_status(ds, c, update_observed_generation)
        if min_ready > 0 and c["numberReady"] != c["numberAvailable"]:
            self.enqueue_after(ds, float(min_ready))

    async def store_status(self, ds: Obj, counts: dict[str, int],
                           update_observed_generation: bool) -> None:
        st = ds.get("status") or {}
        generation = int(_md(ds).get("generation") or 0)
        if all(int(st.get(f) or 0) == v for f, v in counts.items()) and \
                int(st.get("observedGeneration") or 0) >= generation:
            return
        md = _md(ds)
        ns, name = str(md.get("namespace") or ""), str(md.get("name"))
        cur = ds
        for i in range(STATUS_UPDATE_RETRIES + 1):
            status = dict(cur.get("status") or {})
            if update_observed_generation:
                status["observedGeneration"] = generation
            status.update(counts)
            try:
                await self.client.update(ds_path(ns, name, "status"), {**cur, "status": status})
                return
            except ApiError:
                if i >= STATUS_UPDATE_RETRIES:
                    raise
                cur = await self.client.get(ds_path(ns, name))


__all__ = ["DaemonSetsController", "should_ignore_node_update", "BURST_REPLICAS"]

"""The disruption controller (upstream's `pkg/controller/disruption`): keeps the status of
every policy/v1 PodDisruptionBudget, which the pods/eviction subresource reads.

Level-triggered: PDB and pod events only enqueue PDB keys; `sync(key)` lists the pods the
PDB selects (an empty selector `{}` selects every pod of the namespace, as policy/v1),
computes the status (rules in `disruption_util`) and writes it through `/status` when it
changed. The expected count of a maxUnavailable or percentage budget is the sum of the
scales of the selected pods' controllers, found as upstream does, in this order:
ReplicationController, Deployment (through its ReplicaSet), ReplicaSet not owned by a
Deployment, StatefulSet (all from informers), then any other kind through its `scale`
subresource (resource found by discovery). Pods without a controller are reported with an
`UnmanagedPods` event; a pod whose controller cannot be found fails the sync.

A failed sync (other than a conflict, which is simply retried) writes the fail-safe
status: disruptionsAllowed 0 and DisruptionAllowed False / SyncFailed. Entries of
`status.disruptedPods` are re-examined when their 2-minute deadline passes.

A second queue resets stale `DisruptionTarget` pod conditions: a pod carrying
DisruptionTarget=True (not set by the kubelet) that is still not terminating two minutes
later gets the condition set to False.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from pyk8s.api.selectors import SelectorError, label_selector_from_dict
from pyk8s.client.events import EventRecorder
from pyk8s.client.informer import (SharedInformerFactory, controller_ref, handler_funcs,
                                   object_key, split_key)
from pyk8s.client.rest import ApiError, Conflict, NotFound, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.controllers import disruption_util as du
from pyk8s.controllers.disruption_util import DISRUPTION_TARGET, rfc3339

log = logging.getLogger("pyk8s.controllers.disruption")

Obj = dict[str, Any]
Clock = Callable[[], datetime]


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _group_of(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _replicas(obj: Obj) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


class ExpectedScaleError(Exception):
    """The expected pod count could not be computed (the sync fails safe)."""


class DisruptionController:
    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: EventRecorder,
                 *, workers: int = 1, clock: Clock = _now,
                 stale_pod_disruption_timeout: timedelta = du.STALE_POD_DISRUPTION_TIMEOUT
                 ) -> None:
        self.client = client
        self.recorder = recorder
        self.workers = workers
        self.clock = clock
        self.stale_timeout = stale_pod_disruption_timeout
        self.queue: WorkQueue[str] = WorkQueue("disruption")
        self.stale_queue: WorkQueue[str] = WorkQueue("stale_pod_disruption")
        self.pdb_informer = factory.informer("policy", "v1", "poddisruptionbudgets")
        self.pod_informer = factory.pods()
        self.rc_informer = factory.informer("", "v1", "replicationcontrollers")
        self.rs_informer = factory.informer("apps", "v1", "replicasets")
        self.deploy_informer = factory.informer("apps", "v1", "deployments")
        self.ss_informer = factory.informer("apps", "v1", "statefulsets")
        self._pdb_handler = handler_funcs(self.enqueue, lambda _o, n: self.enqueue(n),
                                          self.enqueue)
        self._pod_handler = handler_funcs(self.add_pod, self.update_pod, self.delete_pod)
        self.pdb_informer.add_event_handler(self._pdb_handler)
        self.pod_informer.add_event_handler(self._pod_handler)

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        informers = (self.pdb_informer, self.pod_informer, self.rc_informer,
                     self.rs_informer, self.deploy_informer, self.ss_informer)
        try:
            await asyncio.gather(*(i.synced.wait() for i in informers))
            log.info("disruption-controller: synced")
            await asyncio.gather(
                run_workers(self.queue, self.sync, self.workers, name="disruption"),
                run_workers(self.stale_queue, self.sync_stale_pod_disruption, 1,
                            name="stale_pod_disruption"))
        finally:
            self.queue.shutdown()
            self.stale_queue.shutdown()
            self.pdb_informer.remove_event_handler(self._pdb_handler)
            self.pod_informer.remove_event_handler(self._pod_handler)

    # -- event handlers -------------------------------------------------------------------
    def enqueue(self, pdb: Obj) -> None:
        self.queue.add(object_key(pdb))

    def get_pdbs_for_pod(self, pod: Obj) -> list[Obj]:
        """The PDBs of the pod's namespace whose selector matches it (upstream's lister
        GetPodPodDisruptionBudgets: `{}` matches all, invalid selectors nothing)."""
        labels = _md(pod).get("labels") or {}
        out = []
        for pdb in self.pdb_informer.store.list_namespace(_md(pod).get("namespace") or ""):
            try:
                sel = label_selector_from_dict(du.spec_of(pdb).get("selector"))
            except SelectorError:
                continue
            if sel.matches(labels):
                out.append(pdb)
        return sorted(out, key=lambda p: _md(p).get("name") or "")

    def get_pdb_for_pod(self, pod: Obj) -> Obj | None:
        pdbs = self.get_pdbs_for_pod(pod)
        if not pdbs:
            return None
        if len(pdbs) > 1:
            md = _md(pod)
            msg = (f'Pod "{md.get("namespace")}"/"{md.get("name")}" matches multiple '
                   f'PodDisruptionBudgets.  Chose "{_md(pdbs[0]).get("name")}" arbitrarily.')
            log.info("disruption-controller: %s", msg)
            self.recorder.event(pod, "Warning", "MultiplePodDisruptionBudgets", msg)
        return pdbs[0]

    def _pod_changed(self, pod: Obj) -> None:
        pdb = self.get_pdb_for_pod(pod)
        if pdb is not None:
            self.enqueue(pdb)

    def add_pod(self, pod: Obj) -> None:
        self._pod_changed(pod)
        self._check_stale(pod)

    def update_pod(self, old: Obj, cur: Obj) -> None:
        self._pod_changed(cur)
        self._check_stale(cur)

    def delete_pod(self, pod: Obj) -> None:
        self._pod_changed(pod)

    def _check_stale(self, pod: Obj) -> None:
        wait = du.stale_disruption_wait(pod, self.clock(), self.stale_timeout)
        if wait is not None:
            self.stale_queue.add_after(object_key(pod), wait)

    # -- sync -----------------------------------------------------------------------------
    def pods_for_pdb(self, pdb: Obj) -> list[Obj]:
        sel = label_selector_from_dict(du.spec_of(pdb).get("selector"))
        return self.pod_informer.store.select(_md(pdb).get("namespace") or "", sel)

    async def sync(self, key: str) -> None:
        pdb = self.pdb_informer.store.get(key)
        if pdb is None:
            log.debug("disruption-controller: %s has been deleted", key)
            return
        try:
            await self.try_sync(pdb)
        except Conflict:
            raise   # retried by the queue, without the fail-safe write
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # Upstream's failSafe: once the safe status is written the key is done (the
            # next pod or PDB event syncs it again); a failed write is retried.
            log.info("disruption-controller: failed to sync %s: %s", key, e)
            await self.write_status(pdb, du.fail_safe_status(pdb, _message(e), self.clock()))

    async def try_sync(self, pdb: Obj) -> None:
        try:
            pods = self.pods_for_pdb(pdb)
        except SelectorError as e:
            self.recorder.event(pdb, "Warning", "NoPods", f"Failed to get pods: {e}")
            raise
        if not pods:
            self.recorder.event(pdb, "Normal", "NoPods", "No matching pods found")
        expected, desired = await self.expected_pod_count(pdb, pods)
        now = self.clock()
        disrupted = du.build_disrupted_pod_map(pods, pdb, now)
        for pod in disrupted.not_deleted:
            md = _md(pdb)
            log.info("disruption-controller: pod %s was expected to be deleted but it "
                     "wasn't", object_key(pod))
            # Upstream's message repeats the namespace (sic).
            self.recorder.event(pod, "Warning", "NotDeleted",
                                f"Pod was expected by PDB {md.get('namespace')}/"
                                f"{md.get('namespace')} to be deleted but it wasn't")
        healthy = du.count_healthy_pods(pods, disrupted.pods, now)
        status = du.new_status(pdb, healthy, desired, expected, disrupted.pods, now)
        if status is not None:
            await self.write_status(pdb, status)
        if disrupted.recheck is not None:
            self.queue.add_after(object_key(pdb),
                                 max(0.0, (disrupted.recheck - now).total_seconds()))

    async def write_status(self, pdb: Obj, status: Obj) -> None:
        """PUT /status without retrying: a failure is retried by the queue."""
        md = _md(pdb)
        body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {k: md[k] for k in ("name", "namespace", "resourceVersion", "uid")
                             if k in md},
                "spec": pdb.get("spec") or {}, "status": status}
        await self.client.update(resource_path("policy", "v1", "poddisruptionbudgets",
                                               md.get("namespace"), md.get("name"), "status"),
                                 body)

    # -- expected count -------------------------------------------------------------------
    async def expected_pod_count(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int]:
        """(expectedPods, desiredHealthy); ExpectedScaleError on failure (recorded as a
        CalculateExpectedPodCountFailed event)."""
        try:
            return await self._expected_pod_count(pdb, pods)
        except (ExpectedScaleError, ValueError, ApiError) as e:
            self.recorder.event(pdb, "Warning", "CalculateExpectedPodCountFailed",
                                f"Failed to calculate the number of expected pods: "
                                f"{_message(e)}")
            if isinstance(e, ValueError):
                raise ExpectedScaleError(str(e)) from None
            raise

    async def _expected_pod_count(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int]:
        scale: int | None = None
        if du.needs_controller_scale(pdb):
            scale, unmanaged = await self.expected_scale(pods)
            if unmanaged:
                log.debug("disruption-controller: unmanaged pods %s", unmanaged)
                sel = du.spec_of(pdb).get("selector")
                self.recorder.event(
                    pdb, "Warning", "UnmanagedPods",
                    f"Pods selected by this PodDisruptionBudget (selector: {_go_selector(sel)})"
                    " were found to be unmanaged. As a result, the status of the PDB cannot be "
                    "calculated correctly, which may result in undefined behavior. To account "
                    "for these pods please set \".spec.minAvailable\" field of the PDB to an "
                    "integer value.")
        return du.desired_from_spec(pdb, len(pods), scale)

    async def expected_scale(self, pods: list[Obj]) -> tuple[int, list[str]]:
        """Sum of the scales of the pods' controllers, and the unmanaged pods' names."""
        scales: dict[str, int] = {}
        unmanaged: list[str] = []
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                unmanaged.append(_md(pod).get("name") or "")
                continue
            if ref.get("uid") in scales:
                continue
            ns = _md(pod).get("namespace") or ""
            found = None
            for finder in (self._rc_scale, self._deployment_scale, self._rs_scale,
                           self._ss_scale):
                found = finder(ref, ns)
                if found is not None:
                    break
            if found is None:
                found = await self._scale_subresource(ref, ns)
            if found is None:
                raise ExpectedScaleError(
                    f'found no controllers for pod "{_md(pod).get("name")}"')
            scales[found[0]] = found[1]
        return sum(scales.values()), unmanaged

    @staticmethod
    def _is(ref: Obj, kind: str, groups: tuple[str, ...]) -> bool:
        return ref.get("kind") == kind and _group_of(str(ref.get("apiVersion") or "")) in groups

    def _rc_scale(self, ref: Obj, ns: str) -> tuple[str, int] | None:
        if not self._is(ref, "ReplicationController", ("",)):
            return None
        rc = self.rc_informer.store.get_by_name(ns, str(ref.get("name")))
        if rc is None or _md(rc).get("uid") != ref.get("uid"):
            return None
        return str(ref.get("uid")), _replicas(rc)

    def _owned_rs(self, ref: Obj, ns: str) -> Obj | None:
        if not self._is(ref, "ReplicaSet", ("apps", "extensions")):
            return None
        rs = self.rs_informer.store.get_by_name(ns, str(ref.get("name")))
        if rs is None or _md(rs).get("uid") != ref.get("uid"):
            return None
        return rs

    def _deployment_scale(self, ref: Obj, ns: str) -> tuple[str, int] | None:
        rs = self._owned_rs(ref, ns)
        if rs is None:
            return None
        dref = controller_ref(rs)
        if dref is None or not self._is(dref, "Deployment", ("apps", "extensions")):
            return None
        d = self.deploy_informer.store.get_by_name(ns, str(dref.get("name")))
        if d is None or _md(d).get("uid") != dref.get("uid"):
            return None
        return str(dref.get("uid")), _replicas(d)

    def _rs_scale(self, ref: Obj, ns: str) -> tuple[str, int] | None:
        rs = self._owned_rs(ref, ns)
        if rs is None:
            return None
        dref = controller_ref(rs)
        if dref is not None and dref.get("kind") == "Deployment":
            return None   # counted through its Deployment
        return str(ref.get("uid")), _replicas(rs)

    def _ss_scale(self, ref: Obj, ns: str) -> tuple[str, int] | None:
        if not self._is(ref, "StatefulSet", ("apps",)):
            return None
        ss = self.ss_informer.store.get_by_name(ns, str(ref.get("name")))
        if ss is None or _md(ss).get("uid") != ref.get("uid"):
            return None
        return str(ref.get("uid")), _replicas(ss)

    async def _scale_subresource(self, ref: Obj, ns: str) -> tuple[str, int] | None:
        """Any other controller kind, through its scale subresource (getScaleController)."""
        api_version = str(ref.get("apiVersion") or "")
        group = _group_of(api_version)
        version = api_version.split("/", 1)[1] if "/" in api_version else api_version
        resources = await self._discover(group, version)
        kind = ref.get("kind")
        plural = next((r["name"] for r in resources
                       if r.get("kind") == kind and "/" not in r.get("name", "")), None)
        if plural is None:
            raise ExpectedScaleError(f'no matches for kind "{kind}" in version '
                                     f'"{api_version}"')
        try:
            scale = await self.client.get(resource_path(group, version, plural, ns,
                                                        str(ref.get("name")), "scale"))
        except NotFound:
            sub = next((r for r in resources if r.get("name") == f"{plural}/scale"), None)
            if sub is None or sub.get("kind") != "Scale" or sub.get("group") != "autoscaling":
                gr = f"{plural}.{group}" if group else plural
                raise ExpectedScaleError(f"{gr} does not implement the scale subresource") \
                    from None
            return None
        if _md(scale).get("uid") != ref.get("uid"):
            return None
        return str(ref.get("uid")), int((scale.get("spec") or {}).get("replicas") or 0)

    async def _discover(self, group: str, version: str) -> list[Obj]:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            doc = await self.client.get(path)
        except NotFound:
            return []
        return list(doc.get("resources") or [])

    # -- stale DisruptionTarget conditions ------------------------------------------------
    async def sync_stale_pod_disruption(self, key: str) -> None:
        pod = self.pod_informer.store.get(key)
        if pod is None:
            return
        wait = du.stale_disruption_wait(pod, self.clock(), self.stale_timeout)
        if wait is None:
            return
        if wait > 0:
            self.stale_queue.add_after(key, wait)
            return
        ns, name = split_key(key)
        status = dict(pod.get("status") or {})
        conds = [dict(c) for c in status.get("conditions") or []]
        for c in conds:
            if c.get("type") == DISRUPTION_TARGET:
                c["status"] = "False"
                c["lastTransitionTime"] = rfc3339(self.clock())
        status["conditions"] = conds
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": dict(_md(pod)),
                "spec": pod.get("spec") or {}, "status": status}
        await self.client.update(resource_path("", "v1", "pods", ns, name, "status"), body)
        log.info("disruption-controller: reset stale DisruptionTarget condition of %s", key)


def _message(e: Exception) -> str:
    return e.message if isinstance(e, ApiError) else str(e)


def _go_selector(sel: Obj | None) -> str:
    """How Go's %v prints a *metav1.LabelSelector (roughly: the struct's fields)."""
    if sel is None:
        return "nil"
    ml = " ".join(f"{k}:{v}" for k, v in sorted((sel.get("matchLabels") or {}).items()))
    return f"&LabelSelector{{MatchLabels:map[string]string{{{ml}}},MatchExpressions:[]" \
           f"LabelSelectorRequirement{{}},}}"


__all__ = ["DisruptionController", "ExpectedScaleError"]

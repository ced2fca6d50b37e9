"""The scheduler: informers feed the cache (nodes, bound pods) and the queue (pending pods
it is responsible for); one loop pops a pod, runs its profile's framework on a snapshot,
assumes the pod on the chosen node and binds it in the background (pods/binding); a pod
that fits nowhere gets a FailedScheduling event, PodScheduled=False, a preemption attempt,
and waits in the queue until a cluster event may make it fit.

Talks to the API server over HTTP only (pyk8s.client). Leader-elected on the Lease
kube-system/kube-scheduler, like kube-scheduler.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyk8s.client.events import EventBroadcaster, EventRecorder
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.client.leaderelection import LeaderElectionConfig, run_while_leading, default_identity
from pyk8s.client.rest import ApiError, Conflict, NotFound, RESTClient
from pyk8s.scheduler.cache import Cache
from pyk8s.scheduler.config import SchedulerConfig, load_config
from pyk8s.scheduler.framework import FitError, Framework, PodInfo
from pyk8s.scheduler.plugins.volume_binding import VolumeBinding, VolumeListers
from pyk8s.scheduler.preemption import PDBs, preempt
from pyk8s.scheduler.queue import SchedulingQueue

log = logging.getLogger("pyk8s.scheduler")
Obj = dict[str, Any]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _node_relevant(node: Obj) -> tuple:
    md, spec = node.get("metadata") or {}, node.get("spec") or {}
    st = node.get("status") or {}
    return (md.get("labels"), spec.get("taints"), spec.get("unschedulable"),
            st.get("allocatable"), st.get("images"))


class Scheduler:
    def __init__(self, client: RESTClient, factory: SharedInformerFactory,
                 recorder: EventRecorder, config: SchedulerConfig | None = None, *,
                 record_scheduled_events: bool = True) -> None:
        self.client = client
        self.recorder = recorder
        self.config = config or SchedulerConfig()
        self.frameworks: dict[str, Framework] = self.config.frameworks()
        self.cache = Cache()
        self.queue = SchedulingQueue()
        self.record_scheduled = record_scheduled_events
        self.pods = factory.pods()
        self.nodes = factory.nodes()
        self.pdbs = factory.informer("policy", "v1", "poddisruptionbudgets")
        self.claims = factory.informer("", "v1", "persistentvolumeclaims")
        self.volumes = factory.informer("", "v1", "persistentvolumes", namespaced=False)
        self.storage_classes = factory.informer("storage.k8s.io", "v1", "storageclasses",
                                                namespaced=False)
        self._volume_listers()
        self.pods.add_event_handler(_Handler(self._pod_add, self._pod_update, self._pod_delete))
        self.nodes.add_event_handler(_Handler(self._node_add, self._node_update,
                                              self._node_delete))
        self.bound = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def _volume_listers(self) -> None:
        """VolumeBinding reads claims, volumes and classes from the informers; a change to
        any of them may make waiting pods schedulable (upstream's PVC / PV / StorageClass
        cluster events)."""
        listers = VolumeListers(
            claim=lambda ns, name: self.claims.store.get_by_name(ns, name),
            volume=lambda name: self.volumes.store.get_by_name(None, name),
            storage_class=lambda name: self.storage_classes.store.get_by_name(None, name))
        for fw in self.frameworks.values():
            for p in fw.filters:
                if isinstance(p, VolumeBinding):
                    p.listers = listers

        def changed(event: str) -> Any:
            return lambda *_: self.queue.move_all_to_active_or_backoff(event)
        for inf, what in ((self.claims, "Pvc"), (self.volumes, "Pv"),
                          (self.storage_classes, "StorageClass")):
            inf.add_event_handler(_Handler(changed(f"{what}Add"), changed(f"{what}Update"),
                                           lambda _: None))

    # -- informer events ------------------------------------------------------------------
    def _responsible(self, pod: Obj) -> bool:
        return ((pod.get("spec") or {}).get("schedulerName") or "default-scheduler") \
            in self.frameworks

    def pod_info(self, pod: Obj) -> PodInfo:
        """The pod's priority is `spec.priority`, which the Priority admission plugin set
        from its PriorityClass (upstream's scheduler reads no PriorityClasses either)."""
        return PodInfo(pod)

    def _pod_add(self, pod: Obj) -> None:
        if _terminal(pod):
            return
        if (pod.get("spec") or {}).get("nodeName"):
            self.cache.add_pod(self.pod_info(pod))
        elif self._responsible(pod) and not pod["metadata"].get("deletionTimestamp"):
            pi = self.pod_info(pod)
            nnn = (pod.get("status") or {}).get("nominatedNodeName")
            if nnn:  # nominated by an earlier scheduler (before a restart / failover)
                self.queue.nominate(pi, nnn)
            self.queue.add(pi)

    def _pod_update(self, old: Obj, new: Obj) -> None:
        key = f"{new['metadata'].get('namespace', '')}/{new['metadata']['name']}"
        if (new.get("spec") or {}).get("nodeName"):
            if not (old.get("spec") or {}).get("nodeName"):
                self.queue.delete(key)
            if _terminal(new):
                self.cache.remove_pod(key)
                self.queue.move_all_to_active_or_backoff("AssignedPodUpdate")
                return
            # Confirming an assumed pod: reuse its PodInfo (the spec cannot have changed).
            st = self.cache.pods.get(key)
            if st is not None and st.info.uid == new["metadata"].get("uid") and \
                    st.node == new["spec"]["nodeName"] and \
                    (st.assumed or old.get("spec") == new.get("spec")) and \
                    (old.get("metadata") or {}).get("labels") == new["metadata"].get("labels") and \
                    (old.get("metadata") or {}).get("deletionTimestamp") == \
                    new["metadata"].get("deletionTimestamp"):
                if st.assumed:
                    st.assumed = False
                st.info.pod = new
                return
            self.cache.update_pod(self.pod_info(new))
        elif self._responsible(new) and not _terminal(new):
            if new["metadata"].get("deletionTimestamp"):
                self.queue.delete(key)
            else:
                self.queue.update(self.pod_info(new))

    def _pod_delete(self, pod: Obj) -> None:
        key = f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"
        self.queue.delete(key)
        if key in self.cache.pods:
            self.cache.remove_pod(key)
            self.queue.move_all_to_active_or_backoff("AssignedPodDelete")

    def _node_add(self, node: Obj) -> None:
        self.cache.add_node(node)
        self.queue.move_all_to_active_or_backoff("NodeAdd")

    def _node_update(self, old: Obj, new: Obj) -> None:
        self.cache.update_node(new)
        if _node_relevant(old) != _node_relevant(new):
            self.queue.move_all_to_active_or_backoff("NodeUpdate")

    def _node_delete(self, node: Obj) -> None:
        self.cache.remove_node(node)

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        for inf in (self.pods, self.nodes, self.pdbs, self.claims,
                    self.volumes, self.storage_classes):
            await inf.wait_for_sync()
        log.info("scheduler: caches synced (%d nodes, %d pending pods)",
                 len(self.cache.node_list()), len(self.queue))
        janitor = asyncio.get_running_loop().create_task(self._janitor())
        try:
            n = 0
            while True:
                pi = await self.queue.pop()
                self.schedule_one(pi)
                n += 1
                if n % 4 == 0:
                    await asyncio.sleep(0)  # let informers and binds progress
        finally:
            janitor.cancel()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(janitor, *self._tasks, return_exceptions=True)

    async def _janitor(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for key in self.cache.cleanup_expired():
                log.warning("scheduler: assumed pod %s expired", key)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def schedule_one(self, pi: PodInfo) -> None:
        """One scheduling cycle (synchronous: the cache cannot change under it)."""
        cur = self.pods.store.get(pi.key)
        if cur is None or (cur.get("spec") or {}).get("nodeName") or \
                cur["metadata"].get("uid") != pi.uid or cur["metadata"].get("deletionTimestamp"):
            self.queue.done(pi.key)
            return
        fw = self.frameworks.get(pi.spec.get("schedulerName") or "default-scheduler")
        if fw is None:
            self.queue.done(pi.key)
            return
        cycle = self.queue.scheduling_cycle
        snapshot = self.cache.snapshot()
        nodes = snapshot.nodes
        try:
            node, _ = fw.schedule(pi, nodes, self.queue.nominated_by_node(), snapshot)
        except FitError as err:
            self._failure(fw, pi, err, nodes, cycle)
            return
        except Exception:
            log.exception("scheduler: error scheduling %s", pi.key)
            self.queue.add_backoff(pi)
            return
        self.cache.assume(pi, node.name)
        if self.queue.nominated:
            self.queue.clear_nomination(pi.key)
        self._spawn(self._bind(pi, node.name))

    async def _bind(self, pi: PodInfo, node: str) -> None:
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pi.name, "namespace": pi.namespace, "uid": pi.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            await self.client.create(
                f"/api/v1/namespaces/{pi.namespace}/pods/{pi.name}/binding", body)
        except (NotFound, Conflict) as e:
            # Deleted, or bound by someone else: the informer will tell the rest.
            log.info("scheduler: binding %s to %s: %s", pi.key, node, e)
            self.cache.forget(pi.key)
            self.queue.done(pi.key)
            return
        except (ApiError, OSError, asyncio.TimeoutError) as e:
            log.warning("scheduler: binding %s to %s failed: %s", pi.key, node, e)
            self.cache.forget(pi.key)
            self.queue.add_backoff(pi)
            self.queue.move_all_to_active_or_backoff("BindFailed")
            return
        self.cache.finish_binding(pi.key)
        self.queue.done(pi.key)
        self.bound += 1
        if self.record_scheduled:
            self.recorder.event(pi.pod, "Normal", "Scheduled",
                                f"Successfully assigned {pi.key} to {node}")

    def _failure(self, fw: Framework, pi: PodInfo, err: FitError, nodes: list,
                 cycle: int) -> None:
        self.failed += 1
        msg = err.message()
        pi.unschedulable_plugins = err.plugins()
        nominated = ""
        cand, pmsg = (None, "")
        if nodes:
            cand, pmsg = preempt(fw, pi, nodes, err, PDBs(self.pdbs.store.list()))
        if cand is not None:
            nominated = cand.node
            self.queue.nominate(pi, cand.node)
            self._spawn(self._preempt(pi, cand.node, cand.victims))
        elif pmsg:
            msg = f"{msg} {pmsg}"
        log.info("scheduler: unable to schedule %s: %s%s", pi.key, msg,
                 f" (nominated node {nominated})" if nominated else "")
        self.recorder.event(pi.pod, "Warning", "FailedScheduling", msg)
        self._spawn(self._set_unschedulable(pi, msg, nominated))
        self.queue.add_unschedulable(pi, cycle)

    async def _preempt(self, pi: PodInfo, node: str, victims: list[PodInfo]) -> None:
        for v in victims:
            try:
                await self.client.delete(f"/api/v1/namespaces/{v.namespace}/pods/{v.name}",
                                         {"preconditions": {"uid": v.uid}})
                self.recorder.event(v.pod, "Normal", "Preempted",
                                    f"Preempted by pod {pi.uid} on node {node}")
            except NotFound:
                pass
            except ApiError as e:
                log.warning("scheduler: preempting %s: %s", v.key, e)

    async def _set_unschedulable(self, pi: PodInfo, msg: str, nominated: str) -> None:
        cur = self.pods.store.get(pi.key) or pi.pod
        if (cur.get("spec") or {}).get("nodeName") or \
                cur["metadata"].get("uid") != pi.uid:
            return  # bound (or replaced) meanwhile: never mark a bound pod unschedulable
        status: Obj = {}
        for c in (cur.get("status") or {}).get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and \
                    c.get("message") == msg and not nominated:
                return
        status["conditions"] = [{"type": "PodScheduled", "status": "False",
                                 "reason": "Unschedulable", "message": msg,
                                 "lastProbeTime": None, "lastTransitionTime": _now()}]
        if nominated:
            status["nominatedNodeName"] = nominated
        try:
            await self.client.patch(
                f"/api/v1/namespaces/{pi.namespace}/pods/{pi.name}/status",
                {"status": status}, "strategic")
        except ApiError as e:
            log.info("scheduler: updating %s's status: %s", pi.key, e)


class _Handler:
    def __init__(self, add: Any, update: Any, delete: Any) -> None:
        self.on_add, self.on_update, self.on_delete = add, update, delete


# -- the process ------------------------------------------------------------------------------
@dataclass
class SchedulerOptions:
    """What `pyk8s scheduler`'s flags set (upstream's names in comments)."""
    config_file: str | None = None                  # --config
    leader_elect: bool = True                       # --leader-elect
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    lock_name: str = "kube-scheduler"
    lock_namespace: str = "kube-system"
    identity: str = field(default_factory=default_identity)
    kube_api_qps: float = 0.0                       # --kube-api-qps (upstream: 50); 0: off
    kube_api_burst: int = 0                         # --kube-api-burst (upstream: 100)
    max_inflight: int = 64                          # concurrent requests (binds)


async def run_scheduler_once(client: RESTClient, config: SchedulerConfig) -> None:
    factory = SharedInformerFactory(client)
    broadcaster = EventBroadcaster(client)
    sched = Scheduler(client, factory, broadcaster.new_recorder("default-scheduler"), config)
    broadcaster.start()
    factory.start()
    log.info("scheduler: started (profiles %s)", ", ".join(sched.frameworks))
    try:
        await sched.run()
    finally:
        sched.queue.close()
        await factory.stop()
        await broadcaster.shutdown(timeout=1.0)


async def run_scheduler(kubeconfig_path: str, stop: asyncio.Event,
                        options: SchedulerOptions | None = None) -> None:
    """Run the scheduler until `stop` is set (leader-elected unless disabled)."""
    o = options or SchedulerOptions()
    config = load_config(o.config_file)
    client = RESTClient.from_kubeconfig(kubeconfig_path, user_agent="pyk8s-scheduler",
                                        qps=o.kube_api_qps, burst=o.kube_api_burst,
                                        max_inflight=o.max_inflight)
    le_client = RESTClient.from_kubeconfig(kubeconfig_path,
                                           user_agent="pyk8s-scheduler/leader-election",
                                           timeout=o.renew_deadline)
    le = LeaderElectionConfig(
        lock_namespace=o.lock_namespace, lock_name=o.lock_name, identity=o.identity,
        lease_duration=o.lease_duration, renew_deadline=o.renew_deadline,
        retry_period=o.retry_period) if o.leader_elect else None
    try:
        await run_while_leading("scheduler", lambda: run_scheduler_once(client, config), stop,
                                le_client, le)
    finally:
        await client.close()
        await le_client.close()
        log.info("scheduler: stopped")

"""The kubelet: registers the Node, keeps its status and Lease current, and syncs the pods
bound to it (`fieldSelector=spec.nodeName=<node>`) through the runtime: start containers,
post `pods/<name>/status`, and finish graceful deletion (kill, then DELETE with
gracePeriodSeconds 0 and a uid precondition, as upstream)."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pyk8s.client.informer import SharedInformer, handler_funcs, object_key, split_key
from pyk8s.client.rest import AlreadyExists, Conflict, NotFound, RESTClient, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.kubelet.lease import NodeLease
from pyk8s.kubelet.node import (NODE_STATUS_REPORT_FREQUENCY, NODE_STATUS_UPDATE_FREQUENCY,
                                NodeConfig, NodeHealth, build_node, build_node_status,
                                now_rfc3339, should_post)
from pyk8s.kubelet.podworkers import (Backoff, PodIPAM, build_pod_status,
                                      crash_loop_message, pod_status_changed)
from pyk8s.kubelet.runtime import Runtime

log = logging.getLogger("pyk8s.kubelet")

Obj = dict[str, Any]


@dataclass
class KubeletOptions:
    node: NodeConfig
    pod_cidr: str
    status_update_frequency: float = NODE_STATUS_UPDATE_FREQUENCY
    status_report_frequency: float = NODE_STATUS_REPORT_FREQUENCY
    lease_interval: float = 10.0
    workers: int = 4
    # Container restart back-off (upstream: 10 s doubling to 5 min).
    backoff_initial: float = 10.0
    backoff_max: float = 300.0


class Kubelet:
    def __init__(self, client: RESTClient, runtime: Runtime, options: KubeletOptions) -> None:
        self.client = client
        self.runtime = runtime
        self.o = options
        self.name = options.node.name
        self.health = NodeHealth()
        self.ipam = PodIPAM(options.pod_cidr)
        self.node_uid = ""
        self.boot_id = str(uuid.uuid4())
        self.machine_id = uuid.uuid5(uuid.NAMESPACE_DNS, self.name).hex
        self._node_status: Obj | None = None
        self._last_report: float | None = None
        self._uids: dict[str, str] = {}       # pod key -> uid the runtime runs
        self.backoff = Backoff(options.backoff_initial, options.backoff_max)
        runtime.on_exit = self._container_exited
        self.queue: WorkQueue[str] = WorkQueue(name="kubelet-pods")
        self.pods = SharedInformer(client, resource_path("", "v1", "pods"),
                                   params={"fieldSelector": f"spec.nodeName={self.name}"},
                                   name=f"kubelet {self.name} pods")
        self.pods.add_event_handler(handler_funcs(
            on_add=lambda o: self.queue.add(object_key(o)),
            on_update=lambda old, new: self.queue.add(object_key(new)),
            on_delete=lambda o: self.queue.add(object_key(o))))

    # -- the node -------------------------------------------------------------------------
    async def register(self) -> Obj:
        """Create the Node, or adopt the existing one (upstream's tryRegisterWithAPIServer)."""
        path = resource_path("", "v1", "nodes")
        body = build_node(self.o.node, self.health, now_rfc3339())
        try:
            node = await self.client.create(path, body)
            log.info("registered node %s", self.name)
        except AlreadyExists:
            patch = {"metadata": {"labels": body["metadata"]["labels"]}}
            node = await self.client.patch(resource_path("", "v1", "nodes", name=self.name),
                                           patch)
            log.info("node %s already registered; adopting it", self.name)
        self.node_uid = node["metadata"]["uid"]
        self._node_status = node.get("status") or {}
        await self.sync_node_status(force=True)
        return node

    async def sync_node_status(self, force: bool = False) -> bool:
        desired = build_node_status(self.o.node, self._node_status, self.health, now_rfc3339(),
                                    boot_id=self.boot_id, machine_id=self.machine_id)
        mono = time.monotonic()
        if not force and not should_post(self._node_status, desired, self._last_report, mono,
                                         self.o.status_report_frequency):
            return False
        out = await self.client.patch(
            resource_path("", "v1", "nodes", name=self.name, subresource="status"),
            {"status": desired})
        self._node_status = out.get("status") or desired
        self._last_report = mono
        return True

    async def _node_status_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.o.status_update_frequency)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await self.sync_node_status()
            except Exception as e:
                log.warning("updating node %s status: %s", self.name, e)

    # -- pods -----------------------------------------------------------------------------
    async def sync_pod(self, key: str) -> None:
        pod = self.pods.store.get(key)
        old_uid = self._uids.get(key)
        if pod is None or (old_uid and pod["metadata"]["uid"] != old_uid):
            if old_uid:  # gone from the API (or replaced by a namesake): stop what runs
                await self._kill_pod(old_uid, 0)
                del self._uids[key]
            if pod is None:
                return
        md, st = pod["metadata"], pod.get("status") or {}
        uid = md["uid"]
        if md.get("deletionTimestamp"):
            await self._terminate(key, pod)
            return
        if st.get("phase") in ("Succeeded", "Failed"):
            return
        pod_ip = self.ipam.allocate(uid) if not (pod.get("spec") or {}).get(
            "hostNetwork") else self.o.node.node_ip
        if key not in self._uids:
            self.runtime.set_pod(pod, pod_ip)
            self._uids[key] = uid
            log.info("starting pod %s (%s)", key, uid)
        waiting, retry = await self._sync_containers(pod)
        status = build_pod_status(pod, self.runtime.pod_containers(uid), pod_ip,
                                  self.o.node.node_ip, now_rfc3339(), waiting)
        if retry is not None and status["phase"] not in ("Succeeded", "Failed"):
            self.queue.add_after(key, retry)
        if pod_status_changed(st, status):
            ns, name = split_key(key)
            try:
                await self.client.patch(
                    resource_path("", "v1", "pods", ns, name, "status"),
                    {"status": status})
            except NotFound:
                pass

    def _container_exited(self, uid: str) -> None:
        for key, u in list(self._uids.items()):
            if u == uid:
                self.queue.add(key)

    async def _sync_containers(self, pod: Obj) -> tuple[dict[str, tuple[str, str]],
                                                        float | None]:
        """Upstream's computePodActions, level-triggered: init containers one at a time in
        order, then every container; exited ones restart as the restart policy says, after
        the crash-loop back-off. Returns the containers waiting in back-off (reason,
        message) and when to look again."""
        md, spec = pod["metadata"], pod.get("spec") or {}
        uid = md["uid"]
        policy = spec.get("restartPolicy") or "Always"
        waiting: dict[str, tuple[str, str]] = {}
        retry: float | None = None

        def latest(init: bool, name: str) -> Any:
            found = None
            for c in self.runtime.pod_containers(uid):
                if c.init == init and c.name == name:
                    found = c
            return found

        async def start(ctr: Obj, init: bool) -> Any:
            cid = await self.runtime.create_container(uid, ctr, init=init)
            await self.runtime.start_container(cid)
            return latest(init, ctr["name"])

        def backed_off(c: Any) -> bool:
            nonlocal retry
            key = f"{uid}/{c.init}/{c.name}"
            now = time.time()
            if self.backoff.in_backoff_since(key, c.finished_time, now):
                b = self.backoff.get(key)
                waiting[c.name] = ("CrashLoopBackOff", crash_loop_message(b, c.name, pod))
                left = max(c.finished_time + b - now, 0.05)
                retry = left if retry is None else min(retry, left)
                return True
            self.backoff.next(key, c.finished_time)
            return False

        for ctr in spec.get("initContainers") or []:
            c = latest(True, ctr["name"])
            if c is None:
                c = await start(ctr, True)
            if c is None or c.state != "exited":
                return waiting, retry        # still initializing
            if c.exit_code == 0:
                continue
            if policy == "Never" or backed_off(c):
                return waiting, retry
            await start(ctr, True)
            return waiting, retry
        for ctr in spec.get("containers") or []:
            c = latest(False, ctr["name"])
            if c is None:
                await start(ctr, False)
                continue
            if c.state != "exited":
                continue
            if policy == "Always" or (policy == "OnFailure" and c.exit_code != 0):
                if not backed_off(c):
                    await start(ctr, False)
        return waiting, retry

    async def _kill_pod(self, uid: str, grace: float) -> None:
        await asyncio.gather(*(
            self.runtime.kill_container(c.container_id.split("://", 1)[-1], grace)
            for c in self.runtime.pod_containers(uid)))
        await self.runtime.remove_pod(uid)
        self.backoff.forget(f"{uid}/")
        self.ipam.release(uid)

    async def _terminate(self, key: str, pod: Obj) -> None:
        md = pod["metadata"]
        grace = md.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        grace = float(grace or 0)
        await self._kill_pod(md["uid"], grace)
        self._uids.pop(key, None)
        ns, name = split_key(key)
        try:
            await self.client.delete(resource_path("", "v1", "pods", ns, name),
                                     {"gracePeriodSeconds": 0,
                                      "preconditions": {"uid": md["uid"]}})
            log.info("deleted pod %s (graceful deletion finished)", key)
        except (NotFound, Conflict):
            pass

    # -- running --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.register()
                break
            except Exception as e:
                log.warning("registering node %s: %s; retrying", self.name, e)
                try:
                    await asyncio.wait_for(stop.wait(), 2.0)
                except asyncio.TimeoutError:
                    pass
        if stop.is_set():
            return
        lease = NodeLease(self.client, self.name, self.node_uid, self.o.lease_interval)
        tasks = [asyncio.create_task(lease.run(stop), name="node-lease"),
                 asyncio.create_task(self._node_status_loop(stop), name="node-status"),
                 asyncio.create_task(run_workers(self.queue, self.sync_pod, self.o.workers,
                                                 name="kubelet-pods"), name="pod-workers")]
        self.pods.start()
        try:
            await stop.wait()
        finally:
            self.queue.shutdown()
            await self.pods.stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

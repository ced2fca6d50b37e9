"""The pod garbage collector (upstream's `pkg/controller/podgc`). Every `gc_check_period`:

- terminated pods (Succeeded / Failed) beyond `terminated_pod_threshold` (upstream's
  `--terminated-pod-gc-threshold`, default 12,500; 0 disables) are deleted, evicted ones
  first, then the oldest;
- orphaned pods, bound to a node that has not existed for `quarantine_time` (checked again
  by a GET before acting), are marked Failed with a `DisruptionTarget` condition and deleted;
- unscheduled pods that are being deleted are force-deleted (grace period 0).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable

from pyk8s.api.meta import parse_time
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.client.rest import NotFound

log = logging.getLogger("pyk8s.controllers.podgc")

Obj = dict[str, Any]

GC_CHECK_PERIOD = 20.0
QUARANTINE_TIME = 40.0
DEFAULT_TERMINATED_POD_THRESHOLD = 12500


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def is_pod_terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Pending", "Running", "Unknown")


def _evicted(pod: Obj) -> bool:
    st = pod.get("status") or {}
    return st.get("phase") == "Failed" and st.get("reason") == "Evicted"


def _by_eviction_and_creation(a: Obj, b: Obj) -> int:
    ea, eb = _evicted(a), _evicted(b)
    if ea != eb:
        return -1 if ea else 1
    ta = parse_time(_md(a).get("creationTimestamp"))
    tb = parse_time(_md(b).get("creationTimestamp"))
    if ta != tb and ta is not None and tb is not None:
        return -1 if ta < tb else 1
    na, nb = str(_md(a).get("name")), str(_md(b).get("name"))
    return -1 if na < nb else (1 if na > nb else 0)


class PodGCController:
    def __init__(self, client: Any, factory: SharedInformerFactory, *,
                 terminated_pod_threshold: int = DEFAULT_TERMINATED_POD_THRESHOLD,
                 gc_check_period: float = GC_CHECK_PERIOD,
                 quarantine_time: float = QUARANTINE_TIME,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.terminated_pod_threshold = terminated_pod_threshold
        self.gc_check_period = gc_check_period
        self.quarantine_time = quarantine_time
        self.clock = clock
        self.pod_informer = factory.pods()
        self.node_informer = factory.nodes()
        self._missing_nodes: dict[str, float] = {}  # node name → first seen missing

    async def run(self) -> None:
        await asyncio.gather(self.pod_informer.synced.wait(), self.node_informer.synced.wait())
        log.info("pod garbage collector: synced")
        while True:
            try:
                await self.gc()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pod garbage collection failed")
            await asyncio.sleep(self.gc_check_period)

    async def gc(self) -> None:
        pods = self.pod_informer.store.list()
        nodes = {str(_md(n).get("name")) for n in self.node_informer.store.list()}
        if self.terminated_pod_threshold > 0:
            await self.gc_terminated(pods)
        await self.gc_orphaned(pods, nodes)
        await self.gc_unscheduled_terminating(pods)

    async def gc_terminated(self, pods: list[Obj]) -> None:
        terminated = [p for p in pods if is_pod_terminated(p)]
        delete_count = len(terminated) - self.terminated_pod_threshold
        if delete_count <= 0:
            return
        log.info("pod garbage collector: garbage collecting %d pods", delete_count)
        terminated.sort(key=functools.cmp_to_key(_by_eviction_and_creation))
        await self._delete_all(terminated[:delete_count], None)

    async def gc_orphaned(self, pods: list[Obj], nodes: set[str]) -> None:
        now = self.clock()
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node and node not in nodes:
                self._missing_nodes.setdefault(node, now)
        for node in list(self._missing_nodes):
            if node in nodes:
                del self._missing_nodes[node]
        deleted: set[str] = set()
        for node, since in list(self._missing_nodes.items()):
            if now - since < self.quarantine_time:
                continue
            del self._missing_nodes[node]
            try:
                await self.client.get(f"/api/v1/nodes/{node}")
            except NotFound:
                deleted.add(node)
        if not deleted:
            return
        orphans = [p for p in pods if (p.get("spec") or {}).get("nodeName") in deleted]
        for p in orphans:
            log.info("pod garbage collector: found orphaned pod %s/%s assigned to node %s, "
                     "deleting", _md(p).get("namespace"), _md(p).get("name"),
                     (p.get("spec") or {}).get("nodeName"))
        cond = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                "message": "PodGC: node no longer exists",
                "lastTransitionTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        await self._delete_all(orphans, cond)

    async def gc_unscheduled_terminating(self, pods: list[Obj]) -> None:
        victims = [p for p in pods if _md(p).get("deletionTimestamp")
                   and not (p.get("spec") or {}).get("nodeName")]
        for p in victims:
            log.info("pod garbage collector: found unscheduled terminating pod %s/%s, "
                     "force-deleting", _md(p).get("namespace"), _md(p).get("name"))
        await self._delete_all(victims, None)

    async def _delete_all(self, pods: list[Obj], condition: Obj | None) -> None:
        results = await asyncio.gather(*(self.mark_failed_and_delete(p, condition)
                                         for p in pods), return_exceptions=True)
        for p, r in zip(pods, results):
            if isinstance(r, asyncio.CancelledError):
                raise r
            if isinstance(r, Exception):
                log.info("pod garbage collector: deleting %s/%s failed: %s",
                         _md(p).get("namespace"), _md(p).get("name"), r)

    async def mark_failed_and_delete(self, pod: Obj, condition: Obj | None) -> None:
        md = _md(pod)
        path = f"/api/v1/namespaces/{md.get('namespace')}/pods/{md.get('name')}"
        if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            status: Obj = {"phase": "Failed"}
            if condition is not None:
                status["conditions"] = [condition]
            try:
                await self.client.patch(path + "/status", {"status": status}, "strategic")
            except NotFound:
                return
        try:
            await self.client.delete(path, {"gracePeriodSeconds": 0,
                                            "preconditions": {"uid": md.get("uid")}})
        except NotFound:
            pass


__all__ = ["PodGCController", "DEFAULT_TERMINATED_POD_THRESHOLD", "is_pod_terminated"]

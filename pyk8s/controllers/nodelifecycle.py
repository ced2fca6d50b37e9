"""The node lifecycle controller (upstream's `pkg/controller/nodelifecycle`, with taint-based
eviction and its NoExecute taint manager, `pkg/controller/tainteviction`).

Node health, every `node_monitor_period` (and whenever a Node changes):

- a node is alive while its Ready condition's `lastHeartbeatTime` or its Lease's
  `renewTime` (in `kube-node-lease`) advances; when neither has for
  `node_monitor_grace_period` (`--node-monitor-grace-period`, upstream 40 s;
  `--node-startup-grace-period` for a node that never posted Ready), its Ready /
  MemoryPressure / DiskPressure / PIDPressure conditions become Unknown, reason
  `NodeStatusUnknown`, "Kubelet stopped posting node status." (through `nodes/status`);
- on a transition away from Ready=True: a `NodeNotReady` event on the node, and its pods are
  marked Ready=False (upstream's MarkPodsNotReady, through `pods/status`);
- taints by condition (TaintNodesByCondition): NoSchedule `node.kubernetes.io/not-ready`
  (Ready=False), `node.kubernetes.io/unreachable` (Ready=Unknown), memory-pressure,
  disk-pressure, pid-pressure, network-unavailable, unschedulable;
- taint-based eviction: NoExecute `not-ready` / `unreachable` taints the same way; adding
  one to a healthy node takes a token of the eviction rate limiter (`--node-eviction-rate`,
  upstream 0.1 per second; one bucket here, no zones); swapping one for the other and
  removing them on recovery (Ready=True) are not limited.

The taint manager: a pod on a node with NoExecute taints it does not tolerate is deleted at
once; if it tolerates them all, it is deleted after the smallest `tolerationSeconds` of the
tolerations used (never, when one tolerates forever); the scheduled deletion is cancelled
when the taints go. Deletions add a `DisruptionTarget` condition first (reason
`DeletionByTaintManager`) and record `TaintManagerEviction` events, as upstream.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from pyk8s.api.scheduling import toleration_tolerates_taint
from pyk8s.client.informer import SharedInformerFactory, handler_funcs, object_key
from pyk8s.client.rest import ApiError, Conflict, NotFound
from pyk8s.client.workqueue import TokenBucket

log = logging.getLogger("pyk8s.controllers.nodelifecycle")

Obj = dict[str, Any]

NODE_MONITOR_PERIOD = 5.0
NODE_MONITOR_GRACE_PERIOD = 40.0
NODE_STARTUP_GRACE_PERIOD = 60.0
NODE_EVICTION_RATE = 0.1
LEASE_NAMESPACE = "kube-node-lease"

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
NO_SCHEDULE = "NoSchedule"
NO_EXECUTE = "NoExecute"

# TaintNodesByCondition: (condition type, status) → NoSchedule taint key.
CONDITION_TAINTS: dict[tuple[str, str], str] = {
    ("Ready", "False"): TAINT_NOT_READY,
    ("Ready", "Unknown"): TAINT_UNREACHABLE,
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
}
NO_SCHEDULE_KEYS = frozenset(CONDITION_TAINTS.values()) | {TAINT_UNSCHEDULABLE}
NO_EXECUTE_KEYS = frozenset({TAINT_NOT_READY, TAINT_UNREACHABLE})
UNKNOWN_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")

NODE_NAME_INDEX = "nodeName"


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def index_by_node_name(pod: Obj) -> list[str]:
    name = (pod.get("spec") or {}).get("nodeName")
    return [name] if name else []


def get_condition(node: Obj, ctype: str) -> Obj | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def ready_status(node: Obj) -> str | None:
    c = get_condition(node, "Ready")
    return None if c is None else str(c.get("status") or "Unknown")


# -- tolerations (upstream's v1helper / tainteviction helpers) ------------------------------
def get_matching_tolerations(taints: list[Obj], tolerations: list[Obj]
                             ) -> tuple[bool, list[Obj]]:
    """Whether every taint is tolerated, and the tolerations used."""
    used: list[Obj] = []
    for taint in taints:
        matched = [t for t in tolerations if toleration_tolerates_taint(t, taint)]
        if not matched:
            return False, []
        used.extend(t for t in matched if t not in used)
    return True, used


def min_toleration_time(tolerations: list[Obj]) -> float:
    """Seconds until eviction: 0 at once, -1 never (a toleration without a time)."""
    if not tolerations:
        return 0.0
    best: float | None = None
    for t in tolerations:
        secs = t.get("tolerationSeconds")
        if secs is None:
            continue
        if int(secs) <= 0:
            return 0.0
        best = float(secs) if best is None else min(best, float(secs))
    return -1.0 if best is None else best


# -- node health ----------------------------------------------------------------------------
@dataclass
class NodeHealth:
    probe_timestamp: float
    heartbeat: str | None            # the Ready condition's lastHeartbeatTime last seen
    lease_renew: str | None          # the Lease's renewTime last seen
    ready: str | None                # the Ready status after the last pass


@dataclass
class ScheduledEviction:
    uid: str
    created: float
    fire_at: float


def desired_taints(node: Obj, current: list[Obj]) -> tuple[list[Obj], bool]:
    """The node's taints with the managed NoSchedule ones per its conditions and the managed
    NoExecute ones per its Ready status; and whether a NoExecute taint is newly added to a
    node that had none (that one needs a rate-limiter token)."""
    now = now_rfc3339()
    ready = ready_status(node)
    keep = [t for t in current
            if not (t.get("effect") == NO_SCHEDULE and t.get("key") in NO_SCHEDULE_KEYS)
            and not (t.get("effect") == NO_EXECUTE and t.get("key") in NO_EXECUTE_KEYS)]
    out = list(keep)
    for c in (node.get("status") or {}).get("conditions") or []:
        key = CONDITION_TAINTS.get((str(c.get("type")), str(c.get("status"))))
        if key:
            out.append({"key": key, "effect": NO_SCHEDULE})
    if (node.get("spec") or {}).get("unschedulable"):
        out.append({"key": TAINT_UNSCHEDULABLE, "effect": NO_SCHEDULE})
    had_no_execute = [t for t in current
                      if t.get("effect") == NO_EXECUTE and t.get("key") in NO_EXECUTE_KEYS]
    want = {"False": TAINT_NOT_READY, "Unknown": TAINT_UNREACHABLE}.get(ready or "")
    newly = False
    if want is not None:
        existing = next((t for t in had_no_execute if t.get("key") == want), None)
        if existing is not None:
            out.append(existing)
        else:
            out.append({"key": want, "effect": NO_EXECUTE, "timeAdded": now})
            newly = not had_no_execute
    elif ready is None:
        out.extend(had_no_execute)   # no opinion before the first Ready condition
    return out, newly


def _same_taints(a: list[Obj], b: list[Obj]) -> bool:
    def k(ts: list[Obj]) -> list[tuple[str, str, str]]:
        return sorted((str(t.get("key")), str(t.get("value") or ""), str(t.get("effect")))
                      for t in ts)
    return k(a) == k(b)


class NodeLifecycleController:
    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: Any, *,
                 node_monitor_period: float = NODE_MONITOR_PERIOD,
                 node_monitor_grace_period: float = NODE_MONITOR_GRACE_PERIOD,
                 node_startup_grace_period: float = NODE_STARTUP_GRACE_PERIOD,
                 eviction_rate: float = NODE_EVICTION_RATE, eviction_burst: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.recorder = recorder
        self.period = node_monitor_period
        self.grace = node_monitor_grace_period
        self.startup_grace = node_startup_grace_period
        self.clock = clock
        self.limiter = TokenBucket(eviction_rate, eviction_burst, clock)
        self.node_informer = factory.nodes()
        self.pod_informer = factory.pods(indexers={NODE_NAME_INDEX: index_by_node_name})
        self.lease_informer = factory.informer("coordination.k8s.io", "v1", "leases")
        self.health: dict[str, NodeHealth] = {}
        self.scheduled: dict[str, ScheduledEviction] = {}
        self._granted: set[str] = set()   # nodes holding an eviction-rate token
        self._wake_monitor = asyncio.Event()
        self._wake_evictor = asyncio.Event()
        self.node_informer.add_event_handler(handler_funcs(
            on_add=self._node_changed,
            on_update=lambda old, new: self._node_changed(new),
            on_delete=self._node_deleted))
        self.pod_informer.add_event_handler(handler_funcs(
            on_add=self._pod_changed,
            on_update=lambda old, new: self._pod_changed(new),
            on_delete=lambda p: self._cancel(object_key(p), event=None)))

    # -- loops ----------------------------------------------------------------------------
    async def run(self) -> None:
        await asyncio.gather(self.node_informer.synced.wait(), self.pod_informer.synced.wait(),
                             self.lease_informer.synced.wait())
        log.info("node lifecycle controller: synced")
        for node in self.node_informer.store.list():
            self._node_changed(node)
        await asyncio.gather(self._monitor_loop(), self._eviction_loop())

    async def _monitor_loop(self) -> None:
        while True:
            self._wake_monitor.clear()
            try:
                await self.monitor_node_health()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node lifecycle controller: monitoring node health failed")
            try:
                await asyncio.wait_for(self._wake_monitor.wait(), self.period)
            except asyncio.TimeoutError:
                pass

    async def _eviction_loop(self) -> None:
        while True:
            self._wake_evictor.clear()
            try:
                await self.evict_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node lifecycle controller: evicting pods failed")
            now = self.clock()
            delay = min((s.fire_at - now for s in self.scheduled.values()), default=60.0)
            try:
                await asyncio.wait_for(self._wake_evictor.wait(), max(0.01, delay))
            except asyncio.TimeoutError:
                pass

    # -- node health ----------------------------------------------------------------------
    async def monitor_node_health(self) -> None:
        nodes = self.node_informer.store.list()
        names = {str(_md(n).get("name")) for n in nodes}
        for gone in set(self.health) - names:
            del self.health[gone]
        self._granted &= names
        for node in nodes:
            try:
                await self.process_node(node)
            except (Conflict, NotFound) as e:
                log.info("node lifecycle controller: node %s: %s; retrying",
                         _md(node).get("name"), e)
                self._wake_monitor.set()
            except ApiError as e:
                log.warning("node lifecycle controller: node %s: %s", _md(node).get("name"), e)

    async def process_node(self, node: Obj) -> None:
        name = str(_md(node).get("name"))
        saved = self.health.get(name)
        observed = saved.ready if saved is not None else ready_status(node)
        node = await self.try_update_node_health(node)
        current = ready_status(node)
        health = self.health[name]
        if saved is not None and observed == "True" and current != "True":
            self.recorder.event(node, "Normal", "NodeNotReady",
                                f"Node {name} status is now: NodeNotReady")
            await self.mark_pods_not_ready(name)
        elif saved is not None and observed not in (None, "True") and current == "True":
            self.recorder.event(node, "Normal", "NodeReady",
                                f"Node {name} status is now: NodeReady")
        health.ready = current
        await self.update_taints(node)

    async def try_update_node_health(self, node: Obj) -> Obj:
        """Upstream's tryUpdateNodeHealth: refresh the probe time from the heartbeat and the
        lease; past the grace period, post the conditions as Unknown. Returns the node."""
        name = str(_md(node).get("name"))
        now = self.clock()
        cond = get_condition(node, "Ready")
        heartbeat = cond.get("lastHeartbeatTime") if cond else None
        lease = self.lease_informer.store.get_by_name(LEASE_NAMESPACE, name)
        renew = ((lease or {}).get("spec") or {}).get("renewTime")
        saved = self.health.get(name)
        if saved is None:
            saved = self.health[name] = NodeHealth(now, heartbeat, renew, ready_status(node))
        else:
            if heartbeat != saved.heartbeat:
                saved.heartbeat = heartbeat
                saved.probe_timestamp = now
            if renew and renew != saved.lease_renew:
                saved.lease_renew = renew
                saved.probe_timestamp = now
        grace = self.grace if cond is not None else self.startup_grace
        if now - saved.probe_timestamp <= grace:
            return node
        status = copy.deepcopy(node.get("status") or {})
        conds = status.setdefault("conditions", [])
        ts = now_rfc3339()
        changed = False
        for ctype in UNKNOWN_CONDITIONS:
            c = next((x for x in conds if x.get("type") == ctype), None)
            if c is None:
                conds.append({"type": ctype, "status": "Unknown",
                              "reason": "NodeStatusNeverUpdated",
                              "message": "Kubelet never posted node status.",
                              "lastHeartbeatTime": _md(node).get("creationTimestamp"),
                              "lastTransitionTime": ts})
                changed = True
            elif c.get("status") != "Unknown":
                c.update(status="Unknown", reason="NodeStatusUnknown",
                         message="Kubelet stopped posting node status.",
                         lastTransitionTime=ts)
                changed = True
        if not changed:
            return node
        log.info("node lifecycle controller: node %s hasn't been updated for %.1fs; "
                 "marking its conditions Unknown", name, now - saved.probe_timestamp)
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": name, "resourceVersion": _md(node).get("resourceVersion")}, "status": status}
        out = await self.client.update(f"/api/v1/nodes/{name}/status", body)
        return out

    async def mark_pods_not_ready(self, node_name: str) -> None:
        """Upstream's MarkPodsNotReady: Ready=False on every pod of the node."""
        for pod in self.pod_informer.store.by_index(NODE_NAME_INDEX, node_name):
            conds = (pod.get("status") or {}).get("conditions") or []
            ready = next((c for c in conds if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") == "False":
                continue
            md = _md(pod)
            path = f"/api/v1/namespaces/{md.get('namespace')}/pods/{md.get('name')}/status"
            try:
                await self.client.patch(path, {"status": {"conditions": [
                    {"type": "Ready", "status": "False",
                     "lastTransitionTime": now_rfc3339()}]}}, "strategic")
            except NotFound:
                continue
            except ApiError as e:
                log.warning("node lifecycle controller: marking pod %s/%s not ready: %s",
                            md.get("namespace"), md.get("name"), e)
                continue
            self.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")

    async def update_taints(self, node: Obj) -> None:
        name = str(_md(node).get("name"))
        current = list((node.get("spec") or {}).get("taints") or [])
        want, newly = desired_taints(node, current)
        if not newly:
            self._granted.discard(name)
        elif name not in self._granted and self.limiter.try_accept():
            self._granted.add(name)   # kept until the taint is written (upstream's queue)
        if newly and name not in self._granted:
            # Rate-limited: keep the node's NoExecute taints as they are for now.
            want = [t for t in want if not (t.get("effect") == NO_EXECUTE and
                                            t.get("key") in NO_EXECUTE_KEYS)]
            log.info("node lifecycle controller: tainting node %s NoExecute is rate-limited",
                     name)
        if _same_taints(current, want):
            return
        log.info("node lifecycle controller: node %s taints: %s", name,
                 ", ".join(f"{t['key']}:{t['effect']}" for t in want) or "none")
        await self.client.patch(f"/api/v1/nodes/{name}", {
            "metadata": {"resourceVersion": _md(node).get("resourceVersion")},
            "spec": {"taints": want or None}}, "merge")
        self._granted.discard(name)

    # -- the taint manager ----------------------------------------------------------------
    def _node_changed(self, node: Obj) -> None:
        self._wake_monitor.set()
        name = str(_md(node).get("name"))
        for pod in self.pod_informer.store.by_index(NODE_NAME_INDEX, name):
            self.handle_pod(pod, node)

    def _node_deleted(self, node: Obj) -> None:
        name = str(_md(node).get("name"))
        self.health.pop(name, None)
        for pod in self.pod_informer.store.by_index(NODE_NAME_INDEX, name):
            self._cancel(object_key(pod), event=pod)

    def _pod_changed(self, pod: Obj) -> None:
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = self.node_informer.store.get_by_name(None, node_name) if node_name else None
        self.handle_pod(pod, node)

    def handle_pod(self, pod: Obj, node: Obj | None) -> None:
        """Upstream's processPodOnNode: schedule, keep or cancel the pod's eviction."""
        key = object_key(pod)
        if node is None or _md(pod).get("deletionTimestamp"):
            self._cancel(key, event=None)
            return
        taints = [t for t in (node.get("spec") or {}).get("taints") or []
                  if t.get("effect") == NO_EXECUTE]
        if not taints:
            self._cancel(key, event=pod)
            return
        ok, used = get_matching_tolerations(taints, (pod.get("spec") or {}).get("tolerations")
                                            or [])
        now = self.clock()
        uid = str(_md(pod).get("uid") or "")
        if not ok:
            log.info("node lifecycle controller: pod %s does not tolerate node %s's NoExecute "
                     "taints; deleting", key, _md(node).get("name"))
            self._cancel(key, event=None)
            self._schedule(key, ScheduledEviction(uid, now, now))
            return
        wait = min_toleration_time(used)
        if wait < 0:
            self._cancel(key, event=pod)
            return
        existing = self.scheduled.get(key)
        if existing is not None and existing.uid == uid:
            # Keep the time the pod started to be tolerated (upstream keeps its CreatedAt).
            if existing.fire_at != existing.created + wait:
                self._schedule(key, ScheduledEviction(uid, existing.created,
                                                      existing.created + wait))
            return
        self._schedule(key, ScheduledEviction(uid, now, now + wait))

    def _schedule(self, key: str, s: ScheduledEviction) -> None:
        self.scheduled[key] = s
        self._wake_evictor.set()

    def _cancel(self, key: str, *, event: Obj | None) -> None:
        if self.scheduled.pop(key, None) is not None and event is not None:
            self.recorder.event(event, "Normal", "TaintManagerEviction",
                                f"Cancelling deletion of Pod {key}")

    async def evict_due(self) -> None:
        now = self.clock()
        due = [(k, s) for k, s in self.scheduled.items() if s.fire_at <= now]
        for key, s in due:
            if self.scheduled.get(key) is s:
                del self.scheduled[key]
        await asyncio.gather(*(self.delete_pod(k, s) for k, s in due))

    async def delete_pod(self, key: str, s: ScheduledEviction) -> None:
        """Upstream's addConditionAndDeletePod (with the TaintManagerEviction event)."""
        ns, _, name = key.partition("/")
        path = f"/api/v1/namespaces/{ns}/pods/{name}"
        pod = self.pod_informer.store.get(key) or {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "name": name, "uid": s.uid}}
        self.recorder.event(pod, "Normal", "TaintManagerEviction",
                            f"Marking for deletion Pod {key}")
        try:
            await self.client.patch(path + "/status", {"status": {"conditions": [
                {"type": "DisruptionTarget", "status": "True",
                 "reason": "DeletionByTaintManager",
                 "message": "Taint manager: deleting due to NoExecute taint",
                 "lastTransitionTime": now_rfc3339()}]}}, "strategic")
            await self.client.delete(path, {"preconditions": {"uid": s.uid}} if s.uid else None)
        except (NotFound, Conflict):
            pass
        except ApiError as e:
            log.warning("node lifecycle controller: deleting pod %s: %s", key, e)


__all__ = ["NodeLifecycleController", "get_matching_tolerations", "min_toleration_time",
           "desired_taints", "TAINT_NOT_READY", "TAINT_UNREACHABLE"]

"""The node lifecycle controller against a seeded fake (no server): health from heartbeats
and leases, Unknown conditions, taints by condition, rate-limited NoExecute tainting, the
taint manager's evictions and MarkPodsNotReady."""
from __future__ import annotations

from typing import Any

from pyk8s.client.events import FakeRecorder
from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.controllers.nodelifecycle import (
    TAINT_NOT_READY, TAINT_UNREACHABLE, NodeLifecycleController, desired_taints,
    get_matching_tolerations, min_toleration_time)

Obj = dict[str, Any]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def node(name: str = "n1", ready: str = "True", heartbeat: str = "2024-01-01T00:00:00Z",
         taints: list[Obj] | None = None) -> Obj:
    conds = [{"type": t, "status": s, "reason": "KubeletReady", "lastHeartbeatTime": heartbeat,
              "lastTransitionTime": "2024-01-01T00:00:00Z"}
             for t, s in (("MemoryPressure", "False"), ("DiskPressure", "False"),
                          ("PIDPressure", "False"), ("Ready", ready))]
    n: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
              "spec": {}, "status": {"conditions": conds}}
    if taints:
        n["spec"]["taints"] = taints
    return n


def pod(name: str, node_name: str = "n1", tolerations: list[Obj] | None = None,
        ready: bool = True) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"nodeName": node_name, "tolerations": tolerations or []},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def unreachable_toleration(seconds: int | None) -> Obj:
    t: Obj = {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    if seconds is not None:
        t["tolerationSeconds"] = seconds
    return t


class Harness:
    def __init__(self, rate: float = 100.0) -> None:
        self.client = FakeClient()
        self.clock = Clock()
        self.recorder = FakeRecorder()
        self.c = NodeLifecycleController(
            self.client, SharedInformerFactory(self.client),  # type: ignore[arg-type]
            self.recorder, node_monitor_grace_period=3, node_startup_grace_period=5,
            eviction_rate=rate, clock=self.clock)

    def add_node(self, n: Obj) -> Obj:
        obj = self.client.seed("/api/v1/nodes", n)
        self.c.node_informer.store.add(obj)
        return obj

    def add_pod(self, p: Obj) -> Obj:
        obj = self.client.seed("/api/v1/namespaces/ns/pods", p)
        self.c.pod_informer.store.add(obj)
        self.c._pod_changed(obj)
        return obj

    def lease(self, name: str, renew: str) -> None:
        obj = self.client.seed("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                               {"metadata": {"name": name}, "spec": {"renewTime": renew}})
        self.c.lease_informer.store.add(obj)

    def sync_from_fake(self) -> None:
        """What the watch would deliver: the fake's nodes into the informer (+ handlers)."""
        for n in self.client.stored("", "nodes"):
            self.c.node_informer.store.add(n)
            self.c._node_changed(n)

    def stored_node(self, name: str = "n1") -> Obj:
        return next(n for n in self.client.stored("", "nodes") if n["metadata"]["name"] == name)


def taint_keys(n: Obj) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in (n.get("spec") or {}).get("taints") or []}


def test_tolerations_helpers() -> None:
    taint = {"key": TAINT_UNREACHABLE, "effect": "NoExecute"}
    ok, used = get_matching_tolerations([taint], [unreachable_toleration(2)])
    assert ok and min_toleration_time(used) == 2
    assert get_matching_tolerations([taint], [{"key": "other", "operator": "Exists"}]) == \
        (False, [])
    ok, used = get_matching_tolerations([taint], [{"operator": "Exists"}])
    assert ok and min_toleration_time(used) == -1          # forever
    ok, used = get_matching_tolerations([taint], [unreachable_toleration(0)])
    assert ok and min_toleration_time(used) == 0
    ok, _ = get_matching_tolerations([{"key": "k", "value": "a", "effect": "NoExecute"}],
                                     [{"key": "k", "value": "b", "effect": "NoExecute"}])
    assert not ok


def test_desired_taints_by_condition() -> None:
    n = node(ready="False")
    n["status"]["conditions"][0]["status"] = "True"     # MemoryPressure
    n["spec"]["unschedulable"] = True
    keep = {"key": "custom", "effect": "NoExecute"}
    want, newly = desired_taints(n, [keep])
    assert newly
    assert {(t["key"], t["effect"]) for t in want} == {
        ("custom", "NoExecute"), (TAINT_NOT_READY, "NoSchedule"), (TAINT_NOT_READY, "NoExecute"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule")}
    assert all("timeAdded" in t for t in want if t["key"] == TAINT_NOT_READY
               and t["effect"] == "NoExecute")
    # Swapping not-ready for unreachable is not a new NoExecute tainting.
    n2 = node(ready="Unknown")
    want2, newly2 = desired_taints(n2, [{"key": TAINT_NOT_READY, "effect": "NoExecute"}])
    assert not newly2 and {(t["key"], t["effect"]) for t in want2} == {
        (TAINT_UNREACHABLE, "NoSchedule"), (TAINT_UNREACHABLE, "NoExecute")}


async def test_stale_node_becomes_unknown_tainted_and_pods_not_ready() -> None:
    h = Harness()
    h.add_node(node())
    h.lease("n1", "2024-01-01T00:00:00.000000Z")
    h.add_pod(pod("p1"))
    await h.c.monitor_node_health()
    assert h.client.by_verb("update", "nodes") == [] and h.client.by_verb("patch", "nodes") == []
    h.clock.t += 2
    h.lease("n1", "2024-01-01T00:00:02.000000Z")          # lease renews: still healthy
    await h.c.monitor_node_health()
    h.clock.t += 2.5
    await h.c.monitor_node_health()
    assert h.client.by_verb("update", "nodes") == []
    h.clock.t += 1                                          # 3.5 s since the last renewal
    await h.c.monitor_node_health()
    [upd] = h.client.by_verb("update", "nodes")
    assert upd.subresource == "status"
    n = h.stored_node()
    for c in n["status"]["conditions"]:
        assert c["status"] == "Unknown" and c["reason"] == "NodeStatusUnknown"
        assert c["message"] == "Kubelet stopped posting node status."
        assert c["lastHeartbeatTime"] == "2024-01-01T00:00:00Z"
    assert taint_keys(n) == {(TAINT_UNREACHABLE, "NoSchedule"), (TAINT_UNREACHABLE, "NoExecute")}
    assert "Normal NodeNotReady Node n1 status is now: NodeNotReady" in h.recorder.events
    [pp] = h.client.by_verb("patch", "pods")
    assert pp.subresource == "status"
    assert pp.body["status"]["conditions"][0] == {**pp.body["status"]["conditions"][0],
                                                   "type": "Ready", "status": "False"}
    assert "Warning NodeNotReady Node is not ready" in h.recorder.events


async def test_recovery_removes_taints() -> None:
    h = Harness()
    h.add_node(node())
    await h.c.monitor_node_health()
    h.clock.t += 4
    await h.c.monitor_node_health()
    h.sync_from_fake()
    await h.c.monitor_node_health()                        # no change: no writes
    assert TAINT_UNREACHABLE in {k for k, _ in taint_keys(h.stored_node())}
    # The kubelet comes back and posts Ready with a fresh heartbeat.
    n = h.stored_node()
    n["status"]["conditions"] = node(heartbeat="2024-01-01T00:10:00Z")["status"]["conditions"]
    h.client.objects[("", "nodes", "", "n1")] = n
    h.sync_from_fake()
    h.clock.t += 1
    await h.c.monitor_node_health()
    assert taint_keys(h.stored_node()) == set()
    assert "Normal NodeReady Node n1 status is now: NodeReady" in h.recorder.events


async def test_ready_false_gives_not_ready_taints_and_keeps_others() -> None:
    h = Harness()
    h.add_node(node(ready="False", taints=[{"key": "dedicated", "value": "x",
                                             "effect": "NoSchedule"}]))
    await h.c.monitor_node_health()
    assert taint_keys(h.stored_node()) == {("dedicated", "NoSchedule"),
                                           (TAINT_NOT_READY, "NoSchedule"),
                                           (TAINT_NOT_READY, "NoExecute")}


async def test_no_execute_tainting_is_rate_limited() -> None:
    h = Harness(rate=0.5)                                   # one node per 2 s, burst 1
    for name in ("a", "b"):
        h.add_node(node(name, ready="False"))
    await h.c.monitor_node_health()
    tainted = {n["metadata"]["name"] for n in h.client.stored("", "nodes")
               if (TAINT_NOT_READY, "NoExecute") in taint_keys(n)}
    assert len(tainted) == 1
    # the other one got its NoSchedule taint already
    assert all((TAINT_NOT_READY, "NoSchedule") in taint_keys(n)
               for n in h.client.stored("", "nodes"))
    h.sync_from_fake()
    h.clock.t += 2.1
    await h.c.monitor_node_health()
    assert all((TAINT_NOT_READY, "NoExecute") in taint_keys(n)
               for n in h.client.stored("", "nodes"))


async def test_taint_manager_evicts_intolerant_at_once_and_tolerant_later() -> None:
    h = Harness()
    tainted = node(ready="Unknown", taints=[{"key": TAINT_UNREACHABLE, "effect": "NoExecute"}])
    h.add_node(tainted)
    h.add_pod(pod("plain"))
    h.add_pod(pod("tolerant", tolerations=[unreachable_toleration(2)]))
    h.add_pod(pod("forever", tolerations=[unreachable_toleration(None)]))
    await h.c.evict_due()
    assert [a.name for a in h.client.by_verb("delete", "pods")] == ["plain"]
    [cond] = h.client.by_verb("patch", "pods")[0].body["status"]["conditions"]
    assert cond["type"] == "DisruptionTarget" and cond["reason"] == "DeletionByTaintManager"
    h.clock.t += 1.5
    await h.c.evict_due()
    assert len(h.client.by_verb("delete", "pods")) == 1
    h.clock.t += 1
    await h.c.evict_due()
    assert [a.name for a in h.client.by_verb("delete", "pods")] == ["plain", "tolerant"]
    assert "Normal TaintManagerEviction Marking for deletion Pod ns/tolerant" in \
        h.recorder.events
    h.clock.t += 1000
    await h.c.evict_due()
    assert len(h.client.by_verb("delete", "pods")) == 2     # "forever" stays


async def test_taint_removed_cancels_eviction() -> None:
    h = Harness()
    h.add_node(node(ready="Unknown", taints=[{"key": TAINT_UNREACHABLE, "effect": "NoExecute"}]))
    h.add_pod(pod("tolerant", tolerations=[unreachable_toleration(2)]))
    assert "ns/tolerant" in h.c.scheduled
    healed = h.client.seed("/api/v1/nodes", node())
    h.c.node_informer.store.add(healed)
    h.c._node_changed(healed)
    assert h.c.scheduled == {}
    assert "Normal TaintManagerEviction Cancelling deletion of Pod ns/tolerant" in \
        h.recorder.events
    h.clock.t += 10
    await h.c.evict_due()
    assert h.client.by_verb("delete", "pods") == []


async def test_never_posted_node_uses_startup_grace() -> None:
    h = Harness()
    h.add_node({"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "n1", "creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": {}, "status": {}})
    await h.c.monitor_node_health()
    h.clock.t += 4                                          # past 3 s, within 5 s
    await h.c.monitor_node_health()
    assert h.client.by_verb("update", "nodes") == []
    h.clock.t += 2
    await h.c.monitor_node_health()
    n = h.stored_node()
    assert {c["reason"] for c in n["status"]["conditions"]} == {"NodeStatusNeverUpdated"}
    assert (TAINT_UNREACHABLE, "NoExecute") in taint_keys(n)


async def test_conflict_is_retried_next_pass() -> None:
    from pyk8s.client.rest import Conflict
    h = Harness()
    h.add_node(node(ready="False"))
    h.client.fail("patch", "nodes", Conflict(409, "Conflict", "modified"))
    await h.c.monitor_node_health()                          # logged, not raised
    assert h.c._wake_monitor.is_set()
    await h.c.monitor_node_health()
    assert (TAINT_NOT_READY, "NoExecute") in taint_keys(h.stored_node())

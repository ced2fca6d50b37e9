"""Pod GC and the service account controller against a seeded fake (no server)."""
from __future__ import annotations

from typing import Any

from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.controllers.podgc import PodGCController
from pyk8s.controllers.serviceaccount import ServiceAccountsController

Obj = dict[str, Any]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def pod(name: str, phase: str = "Running", node: str = "n1", created: str = "2024-01-01T00:00:00Z",
        **md: Any) -> Obj:
    spec = {"nodeName": node} if node else {}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created, **md},
            "spec": spec, "status": {"phase": phase}}


def gc_harness(threshold: int = 2) -> tuple[PodGCController, FakeClient, Clock]:
    client = FakeClient()
    clock = Clock()
    gc = PodGCController(client, SharedInformerFactory(client),  # type: ignore[arg-type]
                         terminated_pod_threshold=threshold, quarantine_time=40, clock=clock)
    return gc, client, clock


def seed(gc: PodGCController, client: FakeClient, *pods: Obj) -> None:
    for p in pods:
        gc.pod_informer.store.add(client.seed("/api/v1/namespaces/ns/pods", p))


async def test_terminated_pods_beyond_threshold_oldest_and_evicted_first() -> None:
    gc, client, _ = gc_harness(threshold=2)
    gc.node_informer.store.add(client.seed("/api/v1/nodes", {"metadata": {"name": "n1"}}))
    evicted = pod("evicted", "Failed", created="2024-03-01T00:00:00Z")
    evicted["status"]["reason"] = "Evicted"
    seed(gc, client, pod("old", "Succeeded", created="2024-01-01T00:00:00Z"),
         pod("mid", "Failed", created="2024-02-01T00:00:00Z"),
         pod("new", "Succeeded", created="2024-04-01T00:00:00Z"), evicted,
         pod("running"))
    await gc.gc()
    deleted = sorted(a.name for a in client.by_verb("delete", "pods"))
    assert deleted == ["evicted", "old"]
    assert all(a.body["gracePeriodSeconds"] == 0 for a in client.by_verb("delete", "pods"))
    assert client.by_verb("patch", "pods") == []  # already terminated: no status change


async def test_orphaned_pods_after_quarantine_are_failed_and_deleted() -> None:
    gc, client, clock = gc_harness(threshold=0)
    seed(gc, client, pod("orphan", node="gone"), pod("unbound", node=""))
    await gc.gc()
    assert client.by_verb("delete", "pods") == []  # quarantined for 40 s first
    clock.t = 41
    await gc.gc()
    [patch] = client.by_verb("patch", "pods")
    assert patch.subresource == "status" and patch.body["status"]["phase"] == "Failed"
    assert patch.body["status"]["conditions"][0]["reason"] == "DeletionByPodGC"
    assert [a.name for a in client.by_verb("delete", "pods")] == ["orphan"]


async def test_node_that_comes_back_is_not_orphaning() -> None:
    gc, client, clock = gc_harness(threshold=0)
    seed(gc, client, pod("p", node="late"))
    await gc.gc()
    client.seed("/api/v1/nodes", {"metadata": {"name": "late"}})  # exists by GET
    clock.t = 41
    await gc.gc()
    assert client.by_verb("delete", "pods") == []


async def test_unscheduled_terminating_pods_are_force_deleted() -> None:
    gc, client, _ = gc_harness(threshold=0)
    seed(gc, client, pod("stuck", phase="Pending", node="", deletionTimestamp="2024-01-01T00:00:00Z"),
         pod("bound", node="n1", deletionTimestamp="2024-01-01T00:00:00Z"))
    gc.node_informer.store.add(client.seed("/api/v1/nodes", {"metadata": {"name": "n1"}}))
    await gc.gc()
    assert [a.name for a in client.by_verb("delete", "pods")] == ["stuck"]


async def test_default_service_account_in_active_namespaces_only() -> None:
    client = FakeClient()
    f = SharedInformerFactory(client)  # type: ignore[arg-type]
    c = ServiceAccountsController(client, f)
    for name, phase, extra in (("active", "Active", {}), ("dying", "Terminating",
                                                           {"deletionTimestamp": "x"}),
                               ("has-one", "Active", {})):
        c.ns_informer.store.add({"metadata": {"name": name, **extra}, "status": {"phase": phase}})
    c.sa_informer.store.add({"metadata": {"name": "default", "namespace": "has-one"}})
    for ns in ("active", "dying", "has-one", "missing"):
        await c.sync(ns)
    [create] = client.by_verb("create")
    assert create.namespace == "active" and create.body["metadata"] == {"name": "default"}
    # Deleting the default account enqueues its namespace.
    c._service_account_deleted({"metadata": {"name": "default", "namespace": "has-one"}})
    c._service_account_deleted({"metadata": {"name": "builder", "namespace": "active"}})
    assert c.queue._dirty == {"has-one"}
    c.queue.shutdown()

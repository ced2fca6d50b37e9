"""ReplicaSet / ReplicationController `sync` against a seeded fake (no server)."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pyk8s.client.events import FakeRecorder
from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.client.rest import ApiError, Forbidden
from pyk8s.controllers.controller_utils import pods_to_delete, slow_start_batch
from pyk8s.controllers.replicaset import (REPLICA_SET, REPLICATION_CONTROLLER,
                                          ReplicaSetController)
from tests.controllers.helpers import observe_pods

Obj = dict[str, Any]
NS = "ns"
RS_PATH = f"/apis/apps/v1/namespaces/{NS}/replicasets"
RC_PATH = f"/api/v1/namespaces/{NS}/replicationcontrollers"
POD_PATH = f"/api/v1/namespaces/{NS}/pods"


def ts(seconds_ago: float = 0) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class Harness:
    def __init__(self, kind: Any = REPLICA_SET, **kw: Any) -> None:
        self.client = FakeClient()
        self.recorder = FakeRecorder()
        self.factory = SharedInformerFactory(self.client)  # type: ignore[arg-type]
        self.ctrl = ReplicaSetController(self.client, self.factory, self.recorder, kind=kind,
                                         **kw)
        self.kind = kind

    def add_rs(self, name: str = "web", replicas: int = 3, *, min_ready: int = 0,
               labels: dict[str, str] | None = None, template_extra: Obj | None = None,
               generation: int = 1, **md: Any) -> Obj:
        labels = labels or {"app": name}
        tmpl: Obj = {"metadata": {"labels": dict(labels)},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        for k, v in (template_extra or {}).items():
            tmpl["metadata"][k] = v
        if self.kind is REPLICA_SET:
            obj: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "metadata": {"name": name, **md},
                        "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                                 "selector": {"matchLabels": dict(labels)}, "template": tmpl}}
            path = RS_PATH
        else:
            obj = {"apiVersion": "v1", "kind": "ReplicationController",
                   "metadata": {"name": name, **md},
                   "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                            "selector": dict(labels), "template": tmpl}}
            path = RC_PATH
        obj = self.client.seed(path, obj)
        obj["metadata"]["generation"] = generation
        self.client.objects[(self.kind.group, self.kind.resource, NS, name)] = copy.deepcopy(obj)
        self.ctrl.rs_informer.store.add(obj)
        return obj

    def add_pod(self, name: str, labels: dict[str, str], owner: Obj | None = None, *,
                phase: str = "Running", ready: bool = False, node: str = "n1",
                ready_since: float = 100, created_ago: float = 100, **md: Any) -> Obj:
        meta: Obj = {"name": name, "labels": labels, "creationTimestamp": ts(created_ago), **md}
        if owner is not None:
            meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"],
                                        "kind": owner["kind"],
                                        "name": owner["metadata"]["name"],
                                        "uid": owner["metadata"]["uid"], "controller": True,
                                        "blockOwnerDeletion": True}]
        status: Obj = {"phase": phase}
        if ready:
            status["conditions"] = [{"type": "Ready", "status": "True",
                                     "lastTransitionTime": ts(ready_since)}]
        pod = self.client.seed(POD_PATH, {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                                          "spec": {"nodeName": node} if node else {},
                                          "status": status})
        self.ctrl.pod_informer.store.add(pod)
        return pod

    def observe_pods(self) -> None:
        """What the pod informer would deliver: the fake's pods, through the handlers."""
        observe_pods(self.client, self.ctrl, NS)

    def refresh_rs(self, name: str = "web") -> Obj:
        obj = self.client.objects[(self.kind.group, self.kind.resource, NS, name)]
        self.ctrl.rs_informer.store.add(copy.deepcopy(obj))
        return obj

    def status_updates(self) -> list[Obj]:
        return [a.body["status"] for a in self.client.by_verb("update", self.kind.resource)
                if a.subresource == "status"]


async def test_creates_missing_pods_from_the_template() -> None:
    h = Harness()
    rs = h.add_rs(replicas=3, template_extra={"annotations": {"a": "b"},
                                              "finalizers": ["example.com/f"]})
    await h.ctrl.sync(f"{NS}/web")
    creates = h.client.by_verb("create", "pods")
    assert len(creates) == 3
    pod = creates[0].body
    assert pod["metadata"]["generateName"] == "web-" and "name" not in pod["metadata"]
    assert pod["metadata"]["labels"] == {"app": "web"}
    assert pod["metadata"]["annotations"] == {"a": "b"}
    assert pod["metadata"]["finalizers"] == ["example.com/f"]
    assert pod["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
        "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert pod["spec"] == {"containers": [{"name": "c", "image": "nginx"}]}
    names = [p["metadata"]["name"] for p in h.client.stored("", "pods")]
    assert all(n.startswith("web-") and len(n) == 9 for n in names)
    assert h.recorder.events == [f"Normal SuccessfulCreate Created pod: {n}" for n in names]
    # status: nothing observed yet, but observedGeneration is recorded
    assert h.status_updates() == [{"replicas": 0, "fullyLabeledReplicas": 0, "readyReplicas": 0,
                                   "availableReplicas": 0, "observedGeneration": 1}]


async def test_expectations_prevent_overshoot_until_observed() -> None:
    h = Harness()
    h.add_rs(replicas=5)
    await h.ctrl.sync(f"{NS}/web")
    assert len(h.client.by_verb("create", "pods")) == 5
    # The informer has not seen them: a burst of syncs creates nothing more.
    for _ in range(3):
        await h.ctrl.sync(f"{NS}/web")
    assert len(h.client.by_verb("create", "pods")) == 5
    assert not h.ctrl.expectations.satisfied_expectations(f"{NS}/web")
    h.observe_pods()
    assert h.ctrl.expectations.satisfied_expectations(f"{NS}/web")
    h.refresh_rs()
    await h.ctrl.sync(f"{NS}/web")
    assert len(h.client.by_verb("create", "pods")) == 5
    assert h.status_updates()[-1]["replicas"] == 5


async def test_slow_start_batches_and_burst_cap() -> None:
    h = Harness(burst_replicas=20)
    h.add_rs(replicas=50)
    sizes: list[int] = []
    inflight = 0
    orig = h.client.create

    async def create(path: str, body: Obj, params: Any = None) -> Obj:
        nonlocal inflight
        inflight += 1
        sizes.append(inflight)
        import asyncio
        await asyncio.sleep(0)
        inflight -= 1
        return await orig(path, body, params)
    h.client.create = create  # type: ignore[method-assign]
    await h.ctrl.sync(f"{NS}/web")
    assert len(h.client.stored("", "pods")) == 20  # capped at burst_replicas per sync
    assert max(sizes) == 8  # 1, 2, 4, 8, then the 5 left

    calls: list[int] = []

    async def ok() -> None:
        calls.append(1)
    assert await slow_start_batch(10, 1, ok) == (10, None)


async def test_failed_creation_skips_the_rest_and_sets_replica_failure() -> None:
    h = Harness()
    h.add_rs(replicas=10)
    # The 1st create succeeds, the 2nd fails: batch (2) stops everything after it.
    orig = h.client.create
    n = 0

    async def create(path: str, body: Obj, params: Any = None) -> Obj:
        nonlocal n
        n += 1
        if n == 3:
            raise Forbidden(403, "Forbidden", "exceeded quota: q")
        return await orig(path, body, params)
    h.client.create = create  # type: ignore[method-assign]
    with pytest.raises(ApiError):
        await h.ctrl.sync(f"{NS}/web")
    assert n == 3  # 1 + 2, the batch of 4 never started
    exp = h.ctrl.expectations.get(f"{NS}/web")
    assert exp is not None and exp.add == 2  # 10 expected, 8 skipped, 2 created
    assert "Warning FailedCreate Error creating: exceeded quota: q" in h.recorder.events
    status = h.status_updates()[-1]
    [cond] = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == (
        "ReplicaFailure", "True", "FailedCreate", "exceeded quota: q")
    # Once creation works again, the condition goes away.
    h.client.create = orig  # type: ignore[method-assign]
    h.observe_pods()
    h.refresh_rs()
    await h.ctrl.sync(f"{NS}/web")
    assert "conditions" not in h.status_updates()[-1]


async def test_namespace_terminating_is_not_an_error() -> None:
    h = Harness()
    h.add_rs(replicas=2)
    err = Forbidden(403, "Forbidden", "unable to create new content in namespace ns because "
                    "it is being terminated",
                    {"kind": "Status", "code": 403, "reason": "Forbidden",
                     "details": {"causes": [{"reason": "NamespaceTerminating"}]}})
    h.client.fail("create", "pods", err, times=10)
    await h.ctrl.sync(f"{NS}/web")
    assert h.recorder.events == []


async def test_scale_down_deletes_in_upstream_order() -> None:
    h = Harness()
    rs = h.add_rs(replicas=2)
    lab = {"app": "web"}
    h.add_pod("ready-old", lab, rs, ready=True, ready_since=5000, created_ago=9000)
    h.add_pod("ready-new", lab, rs, ready=True, ready_since=5, created_ago=10)
    h.add_pod("running-notready", lab, rs)
    h.add_pod("pending", lab, rs, phase="Pending")
    h.add_pod("unscheduled", lab, rs, phase="Pending", node="")
    await h.ctrl.sync(f"{NS}/web")
    deleted = [a.name for a in h.client.by_verb("delete", "pods")]
    assert sorted(deleted) == ["pending", "running-notready", "unscheduled"]
    assert sorted(h.recorder.events) == sorted(f"Normal SuccessfulDelete Deleted pod: {n}"
                                               for n in deleted)
    # Deletions are expected by pod key: a pod seen twice lowers them once.
    assert h.ctrl.expectations.get_uids(f"{NS}/web") == {f"{NS}/{n}" for n in deleted}
    h.observe_pods()
    assert h.ctrl.expectations.satisfied_expectations(f"{NS}/web")


def test_deletion_ranking() -> None:
    def pod(name: str, node: str = "n", phase: str = "Running", ready: bool = False,
            ready_since: float = 0, created_ago: float = 100, restarts: int = 0,
            cost: str | None = None) -> Obj:
        md: Obj = {"name": name, "uid": name, "creationTimestamp": ts(created_ago)}
        if cost is not None:
            md["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": cost}
        st: Obj = {"phase": phase, "containerStatuses": [{"restartCount": restarts}]}
        if ready:
            st["conditions"] = [{"type": "Ready", "status": "True",
                                 "lastTransitionTime": ts(ready_since)}]
        return {"metadata": md, "spec": {"nodeName": node}, "status": st}
    pods = [pod("ready-long", ready=True, ready_since=100000),
            pod("ready-short", ready=True, ready_since=10),
            pod("restarts", restarts=5), pod("no-restarts"),
            pod("costly", cost="100"), pod("pending", phase="Pending"),
            pod("unassigned", node="")]
    order = [p["metadata"]["name"] for p in pods_to_delete(pods, [], len(pods) - 1)]
    assert order == ["unassigned", "pending", "restarts", "no-restarts", "costly",
                     "ready-short"]
    # Pods on crowded nodes (related pods counted) go first.
    a, b = pod("a", node="busy"), pod("b", node="quiet")
    related = [pod("x", node="busy"), pod("y", node="busy"), pod("z", node="quiet")]
    assert [p["metadata"]["name"] for p in pods_to_delete([b, a], related, 1)] == ["a"]


async def test_adopts_matching_orphans_and_releases_non_matching() -> None:
    h = Harness()
    rs = h.add_rs(replicas=2)
    other_owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": "other", "uid": "other-uid"}}
    h.add_pod("orphan", {"app": "web"})
    h.add_pod("mine-relabelled", {"app": "changed"}, rs)
    h.add_pod("someone-elses", {"app": "web"}, other_owner)
    h.add_pod("dying-orphan", {"app": "web"}, deletionTimestamp=ts())
    await h.ctrl.sync(f"{NS}/web")
    patches = {a.name: a.body for a in h.client.by_verb("patch", "pods")}
    assert set(patches) == {"orphan", "mine-relabelled"}
    assert patches["orphan"]["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    stored = h.client.objects[("", "pods", NS, "orphan")]
    assert stored["metadata"]["ownerReferences"][0]["controller"] is True
    released = h.client.objects[("", "pods", NS, "mine-relabelled")]
    assert not released["metadata"].get("ownerReferences")
    # The adopted orphan counts: one more pod is created for replicas 2.
    assert len(h.client.by_verb("create", "pods")) == 1
    # can_adopt read the RS fresh once.
    assert len([a for a in h.client.by_verb("get", "replicasets")]) == 1


async def test_no_adoption_by_a_deleted_controller() -> None:
    h = Harness()
    h.add_rs(replicas=1)
    h.client.objects[("apps", "replicasets", NS, "web")]["metadata"]["deletionTimestamp"] = ts()
    h.add_pod("orphan", {"app": "web"})
    with pytest.raises(RuntimeError, match="has just been deleted"):
        await h.ctrl.sync(f"{NS}/web")
    assert h.client.by_verb("patch", "pods") == []


async def test_status_ready_and_available_with_min_ready_seconds() -> None:
    h = Harness()
    rs = h.add_rs(replicas=3, min_ready=30, generation=4)
    lab = {"app": "web"}
    h.add_pod("a", lab, rs, ready=True, ready_since=100)
    h.add_pod("b", lab, rs, ready=True, ready_since=5)
    h.add_pod("c", {**lab, "extra": "x"}, rs)
    h.add_pod("done", lab, rs, phase="Succeeded")  # inactive: not counted
    await h.ctrl.sync(f"{NS}/web")
    assert h.client.by_verb("create", "pods") == []
    assert h.status_updates() == [{"replicas": 3, "fullyLabeledReplicas": 3,
                                   "readyReplicas": 2, "availableReplicas": 1,
                                   "observedGeneration": 4}]
    # Unchanged status: no write.
    h.refresh_rs()
    await h.ctrl.sync(f"{NS}/web")
    assert len(h.status_updates()) == 1


async def test_requeue_after_min_ready_seconds_when_all_ready() -> None:
    h = Harness()
    rs = h.add_rs(replicas=1, min_ready=2)
    h.add_pod("a", {"app": "web"}, rs, ready=True, ready_since=0)
    await h.ctrl.sync(f"{NS}/web")
    assert h.status_updates()[-1]["availableReplicas"] == 0
    assert h.ctrl.queue.waiting() == 1
    h.ctrl.queue.shutdown()


async def test_deleted_or_deleting_controller() -> None:
    h = Harness()
    await h.ctrl.sync(f"{NS}/gone")
    assert h.client.actions == []
    h.add_rs(replicas=3, deletionTimestamp=ts())
    await h.ctrl.sync(f"{NS}/web")
    assert h.client.by_verb("create", "pods") == []


async def test_event_handlers_enqueue_the_owner() -> None:
    h = Harness()
    rs = h.add_rs(replicas=1)
    other = h.add_rs(name="other", replicas=1, labels={"app": "other"})
    pod = h.add_pod("p", {"app": "web"}, rs)
    h.ctrl.queue.shutdown()  # inspect without workers
    h.ctrl.queue = type(h.ctrl.queue)("t")
    h.ctrl.add_pod(pod)
    assert h.ctrl.queue._dirty == {f"{NS}/web"}
    # An orphan enqueues every controller whose selector matches it.
    orphan = h.add_pod("o", {"app": "other"})
    h.ctrl.add_pod(orphan)
    assert h.ctrl.queue._dirty == {f"{NS}/web", f"{NS}/other"}
    # A controller ref to another kind or uid is ignored.
    assert h.ctrl.resolve_controller_ref(NS, {"kind": "ReplicaSet", "name": "other",
                                              "uid": "nope"}) is None
    assert h.ctrl.resolve_controller_ref(NS, {"kind": "Deployment", "name": "other",
                                              "uid": other["metadata"]["uid"]}) is None


async def test_replication_controller_adapter() -> None:
    h = Harness(kind=REPLICATION_CONTROLLER)
    rc = h.add_rs(name="legacy", replicas=2)
    await h.ctrl.sync(f"{NS}/legacy")
    creates = h.client.by_verb("create", "pods")
    assert len(creates) == 2
    ref = creates[0].body["metadata"]["ownerReferences"][0]
    assert (ref["apiVersion"], ref["kind"], ref["uid"]) == (
        "v1", "ReplicationController", rc["metadata"]["uid"])
    [status] = [a for a in h.client.by_verb("update", "replicationcontrollers")]
    assert status.path == f"{RC_PATH}/legacy/status"

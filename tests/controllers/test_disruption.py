"""The disruption controller: status math (pure) and `sync` against a seeded fake."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pyk8s.client.events import FakeRecorder
from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.client.rest import Conflict
from pyk8s.controllers import disruption_util as du
from pyk8s.controllers.disruption import DisruptionController

Obj = dict[str, Any]
NS = "ns"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
PDB_PATH = f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets"


def ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def mkpod(name: str, ready: bool = True, owner: Obj | None = None, **md: Any) -> Obj:
    meta: Obj = {"name": name, "namespace": NS, "labels": {"app": "web"},
                 "resourceVersion": "1", **md}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                    "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"], "controller": True}]
    return {"metadata": meta, "spec": {"nodeName": "n1"},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def mkpdb(min_available: Any = None, max_unavailable: Any = None, **status: Any) -> Obj:
    spec: Obj = {"selector": {"matchLabels": {"app": "web"}}}
    if min_available is not None:
        spec["minAvailable"] = min_available
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "budget", "namespace": NS, "generation": 1}, "spec": spec,
            "status": status}


# -- pure ------------------------------------------------------------------------------------
def test_count_healthy_skips_terminating_unready_and_recently_disrupted() -> None:
    pods = [mkpod("a"), mkpod("b", ready=False), mkpod("c", deletionTimestamp=ts(NOW)),
            mkpod("d"), mkpod("e")]
    disrupted = {"d": ts(NOW - timedelta(seconds=30)), "e": ts(NOW - timedelta(minutes=3))}
    assert du.count_healthy_pods(pods, disrupted, NOW) == 2   # a and e


def test_disrupted_pod_map_drops_gone_terminating_and_expired_entries() -> None:
    pods = [mkpod("fresh"), mkpod("old"), mkpod("dying", deletionTimestamp=ts(NOW))]
    pdb = mkpdb(2, disruptedPods={"fresh": ts(NOW - timedelta(seconds=20)),
                                  "old": ts(NOW - timedelta(minutes=5)),
                                  "dying": ts(NOW), "gone": ts(NOW)})
    out = du.build_disrupted_pod_map(pods, pdb, NOW)
    assert out.pods == {"fresh": ts(NOW - timedelta(seconds=20))}
    assert out.recheck == NOW - timedelta(seconds=20) + du.DELETION_TIMEOUT
    assert [p["metadata"]["name"] for p in out.not_deleted] == ["old"]


@pytest.mark.parametrize("spec,pods,scale,want", [
    ({"minAvailable": 2}, 3, None, (3, 2)),
    ({"minAvailable": "50%"}, 3, 4, (4, 2)),
    ({"minAvailable": "34%"}, 3, 3, (3, 2)),       # rounds up
    ({"maxUnavailable": 1}, 3, 3, (3, 2)),
    ({"maxUnavailable": "50%"}, 3, 3, (3, 1)),     # 1.5 → 2 unavailable
    ({"maxUnavailable": 5}, 3, 3, (3, 0)),
    ({}, 3, None, (0, 0)),
])
def test_desired_from_spec(spec: Obj, pods: int, scale: int | None,
                           want: tuple[int, int]) -> None:
    pdb = {"metadata": {}, "spec": spec}
    assert du.needs_controller_scale(pdb) == (scale is not None)
    assert du.desired_from_spec(pdb, pods, scale) == want


def test_desired_from_spec_rejects_non_percent_strings() -> None:
    with pytest.raises(ValueError, match="not a percentage"):
        du.desired_from_spec({"spec": {"minAvailable": "2"}}, 3, 3)


def test_disruptions_allowed() -> None:
    assert du.disruptions_allowed(3, 2, 3) == 1
    assert du.disruptions_allowed(1, 2, 3) == 0
    assert du.disruptions_allowed(3, 0, 0) == 0   # nothing expected: safe


def test_new_status_and_conditions() -> None:
    pdb = mkpdb(2)
    st = du.new_status(pdb, 3, 2, 3, {}, NOW)
    assert st is not None
    assert st["disruptionsAllowed"] == 1 and st["observedGeneration"] == 1
    assert st["conditions"] == [{"type": "DisruptionAllowed", "status": "True",
                                 "reason": "SufficientPods", "message": "",
                                 "observedGeneration": 1, "lastTransitionTime": ts(NOW)}]
    pdb["status"] = st
    assert du.new_status(pdb, 3, 2, 3, {}, NOW) is None           # up to date
    later = NOW + timedelta(minutes=1)
    st2 = du.new_status(pdb, 2, 2, 3, {}, later)
    assert st2 is not None
    assert st2["conditions"][0]["reason"] == "InsufficientPods"
    assert st2["conditions"][0]["lastTransitionTime"] == ts(later)
    fs = du.fail_safe_status(pdb, "boom", later)
    assert fs["disruptionsAllowed"] == 0
    assert (fs["conditions"][0]["status"], fs["conditions"][0]["reason"],
            fs["conditions"][0]["message"]) == ("False", "SyncFailed", "boom")


def test_stale_disruption_wait() -> None:
    p = mkpod("a")
    assert du.stale_disruption_wait(p, NOW) is None
    p["status"]["conditions"].append({"type": "DisruptionTarget", "status": "True",
                                      "reason": "EvictionByEvictionAPI",
                                      "lastTransitionTime": ts(NOW - timedelta(minutes=1))})
    assert du.stale_disruption_wait(p, NOW) == 60.0
    assert du.stale_disruption_wait(p, NOW + timedelta(minutes=5)) == 0.0
    p["metadata"]["deletionTimestamp"] = ts(NOW)
    assert du.stale_disruption_wait(p, NOW) is None


# -- sync ------------------------------------------------------------------------------------
class Harness:
    def __init__(self) -> None:
        self.client = FakeClient()
        self.recorder = FakeRecorder()
        self.factory = SharedInformerFactory(self.client)  # type: ignore[arg-type]
        self.now = NOW
        self.ctrl = DisruptionController(self.client, self.factory, self.recorder,
                                         clock=lambda: self.now)

    def add_pdb(self, pdb: Obj) -> Obj:
        obj = self.client.seed(PDB_PATH, pdb)
        obj["metadata"]["generation"] = pdb["metadata"]["generation"]
        self.client.objects[("policy", "poddisruptionbudgets", NS, "budget")] = \
            copy.deepcopy(obj)
        self.ctrl.pdb_informer.store.add(obj)
        return obj

    def add(self, group: str, resource: str, kind: str, name: str, replicas: int,
            owner: Obj | None = None) -> Obj:
        av = f"{group}/v1" if group else "v1"
        md: Obj = {"name": name, "namespace": NS}
        if owner is not None:
            md["ownerReferences"] = [{"apiVersion": owner["apiVersion"],
                                      "kind": owner["kind"],
                                      "name": owner["metadata"]["name"],
                                      "uid": owner["metadata"]["uid"], "controller": True}]
        path = f"/apis/{group}/v1/namespaces/{NS}/{resource}" if group else \
            f"/api/v1/namespaces/{NS}/{resource}"
        obj = self.client.seed(path, {"apiVersion": av, "kind": kind, "metadata": md,
                                      "spec": {"replicas": replicas}})
        informer = {"replicasets": self.ctrl.rs_informer,
                    "deployments": self.ctrl.deploy_informer,
                    "statefulsets": self.ctrl.ss_informer,
                    "replicationcontrollers": self.ctrl.rc_informer}[resource]
        informer.store.add(obj)
        return obj

    def add_pod(self, pod: Obj) -> None:
        self.ctrl.pod_informer.store.add(pod)

    def statuses(self) -> list[Obj]:
        return [a.body["status"] for a in self.client.by_verb("update", "poddisruptionbudgets")
                if a.subresource == "status"]


async def test_sync_min_available_int() -> None:
    h = Harness()
    h.add_pdb(mkpdb(2))
    for n in ("a", "b", "c"):
        h.add_pod(mkpod(n))
    await h.ctrl.sync(f"{NS}/budget")
    [st] = h.statuses()
    assert (st["expectedPods"], st["currentHealthy"], st["desiredHealthy"],
            st["disruptionsAllowed"], st["observedGeneration"]) == (3, 3, 2, 1, 1)
    assert st["conditions"][0]["reason"] == "SufficientPods"


async def test_sync_max_unavailable_uses_the_deployment_scale() -> None:
    h = Harness()
    h.add_pdb(mkpdb(max_unavailable=1))
    d = h.add("apps", "deployments", "Deployment", "web", 4)
    rs = h.add("apps", "replicasets", "ReplicaSet", "web-1", 4, owner=d)
    for n in ("a", "b", "c"):
        h.add_pod(mkpod(n, owner=rs))
    await h.ctrl.sync(f"{NS}/budget")
    [st] = h.statuses()
    # 4 expected, 3 desired, 3 healthy: nothing more may go
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"],
            st["disruptionsAllowed"]) == (4, 3, 3, 0)
    assert st["conditions"][0]["reason"] == "InsufficientPods"


async def test_sync_percent_with_replicaset_statefulset_and_rc() -> None:
    h = Harness()
    h.add_pdb(mkpdb("50%"))
    rs = h.add("apps", "replicasets", "ReplicaSet", "rs", 2)
    ss = h.add("apps", "statefulsets", "StatefulSet", "ss", 3)
    rc = h.add("", "replicationcontrollers", "ReplicationController", "rc", 1)
    for i, owner in enumerate((rs, rs, ss, rc)):
        h.add_pod(mkpod(f"p{i}", owner=owner))
    await h.ctrl.sync(f"{NS}/budget")
    [st] = h.statuses()
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"],
            st["disruptionsAllowed"]) == (6, 3, 4, 1)


async def test_unmanaged_pods_are_reported() -> None:
    h = Harness()
    h.add_pdb(mkpdb(max_unavailable="50%"))
    h.add_pod(mkpod("a"))
    await h.ctrl.sync(f"{NS}/budget")
    assert any(e.startswith("Warning UnmanagedPods") for e in h.recorder.events)
    [st] = h.statuses()
    assert st["expectedPods"] == 0 and st["disruptionsAllowed"] == 0


async def test_missing_controller_fails_safe() -> None:
    h = Harness()
    h.add_pdb(mkpdb(max_unavailable=1, disruptionsAllowed=2))
    ghost = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
             "metadata": {"name": "ghost", "uid": "u-ghost"}}
    h.add_pod(mkpod("a", owner=ghost))

    async def discover(group: str, version: str) -> list[Obj]:
        return [{"name": "replicasets", "kind": "ReplicaSet"},
                {"name": "replicasets/scale", "kind": "Scale", "group": "autoscaling",
                 "version": "v1"}]

    h.ctrl._discover = discover  # type: ignore[method-assign]
    await h.ctrl.sync(f"{NS}/budget")   # done once the fail-safe status is written
    [st] = h.statuses()
    assert st["disruptionsAllowed"] == 0
    cond = st["conditions"][0]
    assert (cond["status"], cond["reason"], cond["message"]) == \
        ("False", "SyncFailed", 'found no controllers for pod "a"')
    assert h.recorder.events[-1] == ("Warning CalculateExpectedPodCountFailed Failed to "
                                     'calculate the number of expected pods: found no '
                                     'controllers for pod "a"')
    # a kind discovery does not know
    stored = h.client.objects[("policy", "poddisruptionbudgets", NS, "budget")]
    h.ctrl.pdb_informer.store.add(copy.deepcopy(stored))
    h.ctrl._discover = lambda g, v: discover_none()  # type: ignore[method-assign,assignment]
    await h.ctrl.sync(f"{NS}/budget")
    assert h.statuses()[-1]["conditions"][0]["message"] == \
        'no matches for kind "ReplicaSet" in version "apps/v1"'


async def discover_none() -> list[Obj]:
    return []


async def test_disrupted_pods_are_not_healthy_and_expire() -> None:
    h = Harness()
    h.add_pdb(mkpdb(2, disruptedPods={"a": ts(NOW - timedelta(seconds=10))}))
    for n in ("a", "b", "c"):
        h.add_pod(mkpod(n))
    await h.ctrl.sync(f"{NS}/budget")
    [st] = h.statuses()
    assert st["currentHealthy"] == 2 and st["disruptionsAllowed"] == 0
    assert st["disruptedPods"] == {"a": ts(NOW - timedelta(seconds=10))}
    assert h.ctrl.queue.waiting() == 1   # the recheck at the entry's deadline
    # three minutes later the entry is dropped (the pod was never deleted)
    stored = h.client.objects[("policy", "poddisruptionbudgets", NS, "budget")]
    h.ctrl.pdb_informer.store.add(copy.deepcopy(stored))
    h.now = NOW + timedelta(minutes=3)
    await h.ctrl.sync(f"{NS}/budget")
    st = h.statuses()[-1]
    assert "disruptedPods" not in st and st["currentHealthy"] == 3
    assert any(e.startswith("Warning NotDeleted") for e in h.recorder.events)


async def test_unchanged_status_is_not_written_and_conflicts_propagate() -> None:
    h = Harness()
    h.add_pdb(mkpdb(2))
    h.add_pod(mkpod("a"))
    h.client.fail("update", "poddisruptionbudgets", Conflict(409, "Conflict", "changed"))
    with pytest.raises(Conflict):
        await h.ctrl.sync(f"{NS}/budget")
    await h.ctrl.sync(f"{NS}/budget")
    stored = h.client.objects[("policy", "poddisruptionbudgets", NS, "budget")]
    h.ctrl.pdb_informer.store.add(copy.deepcopy(stored))
    h.client.clear_actions()
    await h.ctrl.sync(f"{NS}/budget")
    assert h.statuses() == []


async def test_pod_events_enqueue_the_matching_pdb() -> None:
    h = Harness()
    h.add_pdb(mkpdb(1))
    h.ctrl.add_pod(mkpod("a"))
    other = mkpod("b")
    other["metadata"]["labels"] = {"app": "db"}
    h.ctrl.add_pod(other)
    assert len(h.ctrl.queue) == 1


async def test_stale_disruption_target_is_reset() -> None:
    h = Harness()
    pod = mkpod("a")
    pod["status"]["conditions"].append({"type": "DisruptionTarget", "status": "True",
                                        "reason": "EvictionByEvictionAPI",
                                        "lastTransitionTime": ts(NOW - timedelta(minutes=3))})
    h.client.seed(f"/api/v1/namespaces/{NS}/pods", pod)
    h.add_pod(h.client.objects[("", "pods", NS, "a")])
    await h.ctrl.sync_stale_pod_disruption(f"{NS}/a")
    [upd] = [a for a in h.client.by_verb("update", "pods") if a.subresource == "status"]
    cond = [c for c in upd.body["status"]["conditions"] if c["type"] == "DisruptionTarget"][0]
    assert cond["status"] == "False"

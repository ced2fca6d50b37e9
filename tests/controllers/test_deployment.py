"""The Deployment controller: pure arithmetic (hash, fenceposts, proportions, rolling steps)
and `sync` against a seeded fake (no server)."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pyk8s.client.events import FakeRecorder
from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.client.rest import AlreadyExists
from pyk8s.controllers import deployment_util as du
from pyk8s.controllers.deployment import (DeploymentController, calculate_status,
                                          max_old_scale_down, old_pods_running,
                                          proportional_sizes, rolling_scale_down_plan)

Obj = dict[str, Any]
NS = "ns"
D_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments"
RS_PATH = f"/apis/apps/v1/namespaces/{NS}/replicasets"
TEMPLATE: Obj = {"metadata": {"labels": {"app": "web"}},
                 "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


def ts(seconds_ago: float = 0) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def deploy(replicas: int = 3, *, surge: Any = "25%", unavailable: Any = "25%",
           strategy: str = "RollingUpdate", image: str = "nginx:1", **spec: Any) -> Obj:
    st: Obj = {"type": strategy}
    if strategy == "RollingUpdate":
        st["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    t = copy.deepcopy(TEMPLATE)
    t["spec"]["containers"][0]["image"] = image
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS, "generation": 1, "uid": "d-uid"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": st, "template": t, "revisionHistoryLimit": 10,
                     "progressDeadlineSeconds": 600, **spec},
            "status": {}}


def rs(name: str, replicas: int, *, available: int | None = None, revision: int | None = 1,
       image: str = "nginx:1", created_ago: float = 100, max_replicas: int | None = None,
       desired: int | None = None, owner: Obj | None = None) -> Obj:
    t = copy.deepcopy(TEMPLATE)
    t["spec"]["containers"][0]["image"] = image
    t["metadata"]["labels"]["pod-template-hash"] = name.rsplit("-", 1)[-1]
    ann: Obj = {}
    if revision is not None:
        ann[du.REVISION_ANNOTATION] = str(revision)
    if max_replicas is not None:
        ann[du.MAX_REPLICAS_ANNOTATION] = str(max_replicas)
    if desired is not None:
        ann[du.DESIRED_REPLICAS_ANNOTATION] = str(desired)
    md: Obj = {"name": name, "namespace": NS, "uid": f"{name}-uid", "annotations": ann,
               "creationTimestamp": ts(created_ago), "generation": 1,
               "labels": dict(t["metadata"]["labels"])}
    if owner is not None:
        md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment",
                                  "name": owner["metadata"]["name"],
                                  "uid": owner["metadata"]["uid"], "controller": True,
                                  "blockOwnerDeletion": True}]
    avail = replicas if available is None else available
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": md,
            "spec": {"replicas": replicas, "selector": {"matchLabels": t["metadata"]["labels"]},
                     "template": t},
            "status": {"replicas": replicas, "readyReplicas": avail, "availableReplicas": avail,
                       "observedGeneration": 1}}


# -- pure parts ---------------------------------------------------------------------------------
def test_fnv32a_and_safe_encoding() -> None:
    assert du.fnv32a(b"") == 0x811C9DC5
    assert du.fnv32a(b"a") == 0xE40C292C
    assert du.fnv32a(b"foobar") == 0xBF9CF968
    assert du.safe_encode_string("0123456789") == "456789bcdf"  # byte % 27
    assert set(du.safe_encode_string("4294967295")) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_pod_template_hash_is_stable_and_collision_aware() -> None:
    h = du.compute_hash(TEMPLATE, None)
    assert h == du.compute_hash(copy.deepcopy(TEMPLATE), None)  # deterministic
    assert h == "79bfd649dc"  # pinned: names must not change across versions
    reordered = {"spec": TEMPLATE["spec"], "metadata": TEMPLATE["metadata"]}
    assert du.compute_hash(reordered, None) == h  # key order does not matter
    assert du.compute_hash(TEMPLATE, 0) != h  # a collision count, even 0, changes it
    assert len({du.compute_hash(TEMPLATE, n) for n in range(50)}) == 50
    other = copy.deepcopy(TEMPLATE)
    other["spec"]["containers"][0]["image"] = "nginx:2"
    assert du.compute_hash(other, None) != h


def test_equal_ignore_hash_is_semantic() -> None:
    a = copy.deepcopy(TEMPLATE)
    b = copy.deepcopy(TEMPLATE)
    b["metadata"]["labels"]["pod-template-hash"] = "abc"
    b["metadata"]["annotations"] = {}
    b["spec"]["volumes"] = []
    assert du.equal_ignore_hash(a, b)
    b["spec"]["containers"][0]["image"] = "nginx:2"
    assert not du.equal_ignore_hash(a, b)


@pytest.mark.parametrize("surge, unavailable, desired, want", [
    ("0%", "0%", 0, (0, 1)),
    ("39%", "39%", 10, (4, 3)),          # surge rounds up, unavailable down
    ("25%", "25%", 10, (3, 2)),
    ("25%", "25%", 1, (1, 0)),
    ("25%", "25%", 3, (1, 0)),
    (None, "0%", 10, (0, 1)),            # both zero: unavailable becomes 1
    (2, 1, 8, (2, 1)),
    (0, 0, 5, (0, 1)),
    ("100%", "100%", 7, (7, 7)),
])
def test_resolve_fenceposts(surge: Any, unavailable: Any, desired: int,
                            want: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(surge, unavailable, desired) == want


@pytest.mark.parametrize("surge, unavailable", [("oops", "1%"), ("55%", "urg"), ("5", "1")])
def test_resolve_fenceposts_rejects_bad_values(surge: Any, unavailable: Any) -> None:
    with pytest.raises(ValueError):
        du.resolve_fenceposts(surge, unavailable, 10)


def test_max_surge_and_unavailable() -> None:
    assert (du.max_surge(deploy(10)), du.max_unavailable(deploy(10))) == (3, 2)
    assert du.max_unavailable(deploy(2, unavailable=5)) == 2  # capped at replicas
    assert du.max_unavailable(deploy(0)) == 0
    assert du.max_surge(deploy(4, strategy="Recreate")) == 0
    assert du.max_unavailable(deploy(4, strategy="Recreate")) == 0
    assert du.min_available(deploy(10)) == 8


def test_new_rs_new_replicas() -> None:
    d = deploy(10)  # surge 3
    old, new = rs("web-old", 10), rs("web-new", 0)
    assert du.new_rs_new_replicas(d, [old, new], new) == 3
    new = rs("web-new", 3)
    assert du.new_rs_new_replicas(d, [old, new], new) == 3  # at 13 already
    old = rs("web-old", 2)
    assert du.new_rs_new_replicas(d, [old, new], new) == 10  # never beyond replicas
    assert du.new_rs_new_replicas(deploy(4, strategy="Recreate"), [old, new], new) == 4


def test_proportional_scale_up_and_down() -> None:
    # 10 replicas (max 13) mid-rollout: old 8, new 5. Scaled to 20 (max 23).
    d = deploy(20, surge=3, unavailable=2)
    old = rs("web-old", 8, max_replicas=13, created_ago=200)
    new = rs("web-new", 5, max_replicas=13, created_ago=100)
    ordered = du.sort_by_size_newer([old, new])
    assert [r["metadata"]["name"] for r in ordered] == ["web-old", "web-new"]
    sizes = proportional_sizes(d, ordered, 23 - 13)
    assert sizes == {"web-old-uid": 14, "web-new-uid": 9}  # 8*23/13 → 14, 5*23/13 → 9
    # And back down to 10 (max 13) from 14 + 9, annotated with max 23.
    d = deploy(10, surge=3, unavailable=2)
    old = rs("web-old", 14, max_replicas=23, created_ago=200)
    new = rs("web-new", 9, max_replicas=23, created_ago=100)
    ordered = du.sort_by_size_older([old, new])
    assert proportional_sizes(d, ordered, 13 - 23) == {"web-old-uid": 8, "web-new-uid": 5}
    # Leftovers go to the largest; scaling to 0 empties everything.
    d = deploy(0)
    assert proportional_sizes(d, [rs("a-1", 3), rs("b-1", 2)], -5) == {"a-1-uid": 0,
                                                                       "b-1-uid": 0}


def test_proportion_rounds_half_away_from_zero() -> None:
    assert [du.go_round(x) for x in (0.5, 1.5, 2.5, -0.5, -1.5, 2.4999)] == [1, 2, 3, -1, -2, 2]
    # 3 of 4 → 3 * 6 / 4 = 4.5 → 5: +2
    assert du.get_proportion(rs("a-1", 3, max_replicas=4), deploy(5, surge=1), 2, 0) == 2
    assert du.get_proportion(rs("a-1", 3, max_replicas=4), deploy(5, surge=1), 2, 1) == 1
    assert du.get_proportion(rs("a-1", 0), deploy(5), 2, 0) == 0


def test_rolling_scale_down_math() -> None:
    d = deploy(10, surge=3, unavailable=2)  # min available 8
    # New RS pods all unavailable: nothing more may go (13 - 8 - 5).
    new = rs("web-new", 5, available=0)
    assert max_old_scale_down(d, 13, new) == 0
    new = rs("web-new", 5, available=4)
    assert max_old_scale_down(d, 13, new) == 4
    # 10 old available + 0 new: 2 may go, from the oldest first.
    oldest = rs("web-a", 4, created_ago=300)
    older = rs("web-b", 6, created_ago=200)
    plan = rolling_scale_down_plan(d, [oldest, older, rs("web-new", 3, available=0)],
                                   [older, oldest])
    assert [(r["metadata"]["name"], n) for r, n in plan] == [("web-a", 2)]
    plan = rolling_scale_down_plan(d, [oldest, older, rs("web-new", 3, available=3)],
                                   [older, oldest])
    assert [(r["metadata"]["name"], n) for r, n in plan] == [("web-a", 0), ("web-b", 5)]
    assert rolling_scale_down_plan(d, [rs("web-a", 8)], [rs("web-a", 8)]) == []


def test_status_and_conditions() -> None:
    d = deploy(4)  # max unavailable 1
    old, new = rs("web-old", 1), rs("web-new", 4, available=2)
    st = calculate_status([old, new], new, d)
    assert {k: st[k] for k in ("replicas", "updatedReplicas", "readyReplicas",
                               "availableReplicas", "unavailableReplicas",
                               "observedGeneration")} == {
        "replicas": 5, "updatedReplicas": 4, "readyReplicas": 3, "availableReplicas": 3,
        "unavailableReplicas": 2, "observedGeneration": 1}
    [avail] = st["conditions"]
    assert (avail["type"], avail["status"], avail["reason"]) == \
        ("Available", "True", "MinimumReplicasAvailable")
    st = calculate_status([rs("web-new", 4, available=2)], None, d)
    assert st["conditions"][0]["reason"] == "MinimumReplicasUnavailable"
    # set_condition keeps lastTransitionTime when only the reason changes
    status: Obj = {"conditions": [{"type": "Progressing", "status": "True", "reason": "A",
                                   "lastTransitionTime": "t0", "lastUpdateTime": "t0"}]}
    du.set_condition(status, du.new_condition("Progressing", "True", "B", "m"))
    assert status["conditions"][0]["reason"] == "B"
    assert status["conditions"][0]["lastTransitionTime"] == "t0"
    assert du.deployment_complete(deploy(2), {"updatedReplicas": 2, "replicas": 2,
                                              "availableReplicas": 2, "observedGeneration": 1})
    assert not du.deployment_complete(deploy(2), {"updatedReplicas": 2, "replicas": 3,
                                                  "availableReplicas": 2,
                                                  "observedGeneration": 1})


def test_timed_out() -> None:
    d = deploy(2, progressDeadlineSeconds=10)
    cond = du.new_condition("Progressing", "True", "ReplicaSetUpdated", "m")
    cond["lastUpdateTime"] = ts(11)
    assert du.deployment_timed_out(d, {"conditions": [cond]})
    cond["lastUpdateTime"] = ts(5)
    assert not du.deployment_timed_out(d, {"conditions": [cond]})
    cond["reason"] = "NewReplicaSetAvailable"
    cond["lastUpdateTime"] = ts(100)
    assert not du.deployment_timed_out(d, {"conditions": [cond]})


def test_revision_annotations() -> None:
    d = deploy(3)
    d["metadata"]["annotations"] = {"team": "a", du.LAST_APPLIED_CONFIG_ANNOTATION: "{}",
                                    du.REVISION_ANNOTATION: "7"}
    new = rs("web-x", 0, revision=None)
    assert du.set_new_replica_set_annotations(d, new, "4", False)
    ann = new["metadata"]["annotations"]
    assert ann == {"team": "a", du.REVISION_ANNOTATION: "4",
                   du.DESIRED_REPLICAS_ANNOTATION: "3", du.MAX_REPLICAS_ANNOTATION: "4"}
    # Rolling back to an old ReplicaSet: its revision rises, the old one is remembered.
    back = rs("web-y", 0, revision=1)
    back["metadata"]["annotations"][du.REVISION_HISTORY_ANNOTATION] = "0"
    assert du.set_new_replica_set_annotations(d, back, "5", True)
    assert back["metadata"]["annotations"][du.REVISION_ANNOTATION] == "5"
    assert back["metadata"]["annotations"][du.REVISION_HISTORY_ANNOTATION] == "0,1"
    assert not du.set_new_replica_set_annotations(d, back, "5", True)
    assert du.last_revision([rs("a-1", 0, revision=3), rs("b-1", 0, revision=5),
                             rs("c-1", 0, revision=4)]) == 4


def test_old_pods_running() -> None:
    old = rs("web-old", 0)
    old["status"]["replicas"] = 0
    assert not old_pods_running(None, [old], {"web-old-uid": []})
    running = {"status": {"phase": "Running"}}
    done = {"status": {"phase": "Succeeded"}}
    assert old_pods_running(None, [old], {"web-old-uid": [running]})
    assert not old_pods_running(None, [old], {"web-old-uid": [done]})
    new = rs("web-new", 2)
    assert not old_pods_running(new, [old], {"web-new-uid": [running]})


# -- sync against a fake ------------------------------------------------------------------------
class Harness:
    def __init__(self) -> None:
        self.client = FakeClient()
        self.recorder = FakeRecorder()
        self.factory = SharedInformerFactory(self.client)  # type: ignore[arg-type]
        self.ctrl = DeploymentController(self.client, self.factory, self.recorder)

    def add_deployment(self, d: Obj) -> Obj:
        d = copy.deepcopy(d)
        d["metadata"].pop("uid", None)
        gen = d["metadata"].get("generation", 1)
        obj = self.client.seed(D_PATH, d)
        obj["metadata"]["generation"] = gen
        self.client.objects[("apps", "deployments", NS, "web")] = copy.deepcopy(obj)
        self.ctrl.d_informer.store.add(obj)
        return obj

    def add_rs(self, obj: Obj) -> Obj:
        obj = self.client.seed(RS_PATH, obj)
        self.ctrl.rs_informer.store.add(obj)
        return obj

    def observe(self) -> None:
        """What the informers would deliver: the fake's objects."""
        for (g, r, _, _), o in self.client.objects.items():
            if (g, r) == ("apps", "deployments"):
                self.ctrl.d_informer.store.add(copy.deepcopy(o))
            elif (g, r) == ("apps", "replicasets"):
                self.ctrl.rs_informer.store.add(copy.deepcopy(o))
        names = {o["metadata"]["name"] for o in self.client.stored("apps", "replicasets")}
        for key in self.ctrl.rs_informer.store.keys():
            if key.split("/", 1)[1] not in names:
                self.ctrl.rs_informer.store.delete(key)

    def set_rs_status(self, name: str, replicas: int | None = None,
                      available: int | None = None) -> None:
        obj = self.client.objects[("apps", "replicasets", NS, name)]
        n = obj["spec"]["replicas"] if replicas is None else replicas
        a = n if available is None else available
        obj["status"] = {"replicas": n, "readyReplicas": a, "availableReplicas": a,
                         "observedGeneration": obj["metadata"].get("generation", 1)}
        obj["metadata"]["resourceVersion"] = str(next(self.client._rv))

    def replica_sets(self) -> dict[str, Obj]:
        return {o["metadata"]["name"]: o for o in self.client.stored("apps", "replicasets")}

    def sizes(self) -> dict[str, int]:
        return {n: o["spec"]["replicas"] for n, o in self.replica_sets().items()}

    def status_updates(self) -> list[Obj]:
        return [a.body for a in self.client.by_verb("update", "deployments")
                if a.subresource == "status"]

    async def sync(self) -> None:
        await self.ctrl.sync(f"{NS}/web")
        self.observe()


async def test_new_deployment_creates_its_replica_set() -> None:
    h = Harness()
    d = h.add_deployment(deploy(3))
    await h.sync()
    [created] = h.client.by_verb("create", "replicasets")
    obj = created.body
    hsh = du.compute_hash(d["spec"]["template"], None)
    assert obj["metadata"]["name"] == f"web-{hsh}"
    assert obj["metadata"]["labels"] == {"app": "web", "pod-template-hash": hsh}
    assert obj["spec"]["selector"] == {"matchLabels": {"app": "web", "pod-template-hash": hsh}}
    assert obj["spec"]["template"]["metadata"]["labels"] == {"app": "web",
                                                             "pod-template-hash": hsh}
    assert obj["spec"]["replicas"] == 3
    assert obj["metadata"]["annotations"] == {
        du.REVISION_ANNOTATION: "1", du.DESIRED_REPLICAS_ANNOTATION: "3",
        du.MAX_REPLICAS_ANNOTATION: "4"}
    assert obj["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
        "uid": d["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert h.recorder.events == [
        f"Normal ScalingReplicaSet Scaled up replica set web-{hsh} from 0 to 3"]
    first = h.status_updates()[0]
    assert first["metadata"]["annotations"][du.REVISION_ANNOTATION] == "1"
    [prog] = [c for c in first["status"]["conditions"] if c["type"] == "Progressing"]
    assert (prog["reason"], prog["message"]) == (
        "NewReplicaSetCreated", f'Created new replica set "web-{hsh}"')


async def test_rolling_update_steps() -> None:
    h = Harness()
    d = deploy(4, surge=1, unavailable=1, image="nginx:2")
    d = h.add_deployment(d)
    old = h.add_rs(rs("web-old", 4, owner=d, max_replicas=5, desired=4))
    assert old
    await h.sync()
    # 1: a new ReplicaSet with the surge pod; 4 available, 3 needed: one old pod goes.
    new_name = f"web-{du.compute_hash(d['spec']['template'], None)}"
    assert h.sizes() == {"web-old": 3, new_name: 1}
    assert h.replica_sets()[new_name]["metadata"]["annotations"][du.REVISION_ANNOTATION] == "2"
    # 2: room for one more new pod (3 + 1 < 4 + 1).
    h.set_rs_status("web-old")
    h.set_rs_status(new_name, available=0)
    h.observe()
    await h.sync()
    assert h.sizes() == {"web-old": 3, new_name: 2}
    # 3: the new pods are not available: nothing may go (5 - 3 - 2 unavailable).
    h.set_rs_status(new_name, available=0)
    h.observe()
    await h.sync()
    assert h.sizes() == {"web-old": 3, new_name: 2}
    # 4: both available: old down to 1 (available 5 - min 3).
    h.set_rs_status(new_name)
    h.observe()
    await h.sync()
    assert h.sizes() == {"web-old": 1, new_name: 2}
    # 5: the old ReplicaSet reports 1: the new one takes the rest.
    h.set_rs_status("web-old")
    h.observe()
    await h.sync()
    assert h.sizes() == {"web-old": 1, new_name: 4}
    h.set_rs_status(new_name)
    h.observe()
    await h.sync()
    assert h.sizes() == {"web-old": 0, new_name: 4}
    events = [e for e in h.recorder.events if "ScalingReplicaSet" in e]
    assert events[0] == f"Normal ScalingReplicaSet Scaled up replica set {new_name} from 0 to 1"
    assert "Normal ScalingReplicaSet Scaled down replica set web-old from 1 to 0" in events


async def test_scaling_event_is_proportional() -> None:
    h = Harness()
    d = h.add_deployment(deploy(20, surge=3, unavailable=2, image="nginx:2"))
    new_name = f"web-{du.compute_hash(d['spec']['template'], None)}"
    h.add_rs(rs("web-old", 8, owner=d, max_replicas=13, desired=10, created_ago=200))
    h.add_rs(rs(new_name, 5, owner=d, max_replicas=13, desired=10, image="nginx:2",
                revision=2, created_ago=100))
    await h.sync()
    assert h.sizes() == {"web-old": 14, new_name: 9}
    for obj in h.replica_sets().values():
        assert obj["metadata"]["annotations"][du.DESIRED_REPLICAS_ANNOTATION] == "20"
        assert obj["metadata"]["annotations"][du.MAX_REPLICAS_ANNOTATION] == "23"


async def test_paused_deployment_does_not_roll_out() -> None:
    h = Harness()
    d = h.add_deployment(deploy(2, image="nginx:2", paused=True))
    h.add_rs(rs("web-old", 2, owner=d, max_replicas=3, desired=2))
    await h.sync()
    assert not h.client.by_verb("create", "replicasets")
    [prog] = [c for c in h.status_updates()[0]["status"]["conditions"]
              if c["type"] == "Progressing"]
    assert (prog["status"], prog["reason"], prog["message"]) == (
        "Unknown", "DeploymentPaused", "Deployment is paused")


async def test_cleanup_keeps_revision_history_limit() -> None:
    h = Harness()
    d = h.add_deployment(deploy(1, revisionHistoryLimit=1))
    new_name = f"web-{du.compute_hash(d['spec']['template'], None)}"
    for i, name in enumerate(("web-r1", "web-r2", "web-r3")):
        old = rs(name, 0, owner=d, revision=i + 1, image=f"nginx:old{i}", created_ago=300 - i)
        old["status"] = {"replicas": 0, "observedGeneration": 1}
        h.add_rs(old)
    h.add_rs(rs(new_name, 1, owner=d, revision=4, max_replicas=2, desired=1))
    h.client.objects[("apps", "deployments", NS, "web")]["status"] = calculate_status(
        list(h.replica_sets().values()), h.replica_sets()[new_name], d)
    h.observe()
    await h.sync()
    assert sorted(a.name for a in h.client.by_verb("delete", "replicasets")) == \
        ["web-r1", "web-r2"]


async def test_hash_collision_bumps_collision_count() -> None:
    h = Harness()
    d = h.add_deployment(deploy(2))
    hsh = du.compute_hash(d["spec"]["template"], None)
    # Someone else's ReplicaSet holds the name.
    squatter = rs(f"web-{hsh}", 1, image="other:1", revision=None)
    squatter["metadata"]["labels"] = {"app": "other"}
    squatter["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    squatter["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    h.add_rs(squatter)
    with pytest.raises(AlreadyExists):
        await h.ctrl.sync(f"{NS}/web")
    assert h.status_updates()[-1]["status"]["collisionCount"] == 1
    h.observe()
    await h.sync()
    created = h.client.by_verb("create", "replicasets")[-1].body
    assert created["metadata"]["name"] == f"web-{du.compute_hash(d['spec']['template'], 1)}"


async def test_progress_deadline_exceeded() -> None:
    h = Harness()
    d = deploy(2, progressDeadlineSeconds=5)
    new_name = f"web-{du.compute_hash(d['spec']['template'], None)}"
    cond = du.new_condition("Progressing", "True", "NewReplicaSetCreated", "m")
    cond["lastUpdateTime"] = cond["lastTransitionTime"] = ts(10)
    d["status"] = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                   "conditions": [cond]}
    d["metadata"]["annotations"] = {du.REVISION_ANNOTATION: "1"}
    d = h.add_deployment(d)
    h.add_rs(rs(new_name, 2, owner=d, available=0, max_replicas=3, desired=2))
    await h.sync()
    [prog] = [c for c in h.status_updates()[-1]["status"]["conditions"]
              if c["type"] == "Progressing"]
    assert (prog["status"], prog["reason"], prog["message"]) == (
        "False", "ProgressDeadlineExceeded", f'ReplicaSet "{new_name}" has timed out progressing.')


async def test_recreate_scales_old_down_before_creating() -> None:
    h = Harness()
    d = h.add_deployment(deploy(2, strategy="Recreate", image="nginx:2"))
    h.add_rs(rs("web-old", 2, owner=d, desired=2, max_replicas=2))
    await h.sync()
    assert h.sizes() == {"web-old": 0}  # no new ReplicaSet yet
    # The old ReplicaSet still reports pods: wait.
    await h.sync()
    assert h.sizes() == {"web-old": 0}
    h.set_rs_status("web-old", replicas=0)
    h.observe()
    await h.sync()
    new_name = f"web-{du.compute_hash(d['spec']['template'], None)}"
    assert h.sizes() == {"web-old": 0, new_name: 2}


async def test_legacy_rollback_annotation() -> None:
    h = Harness()
    d = deploy(1, image="nginx:2")
    d["metadata"]["annotations"] = {du.DEPRECATED_ROLLBACK_TO: "1"}
    d = h.add_deployment(d)
    h.add_rs(rs("web-old", 0, owner=d, revision=1, image="nginx:1"))
    await h.ctrl.sync(f"{NS}/web")
    [put] = [a for a in h.client.by_verb("update", "deployments") if not a.subresource]
    assert put.body["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    assert "pod-template-hash" not in put.body["spec"]["template"]["metadata"]["labels"]
    assert du.DEPRECATED_ROLLBACK_TO not in put.body["metadata"]["annotations"]
    assert 'Normal DeploymentRollback Rolled back deployment "web" to revision 1' in \
        h.recorder.events


async def test_selecting_all_is_refused() -> None:
    h = Harness()
    d = deploy(1)
    d["spec"]["selector"] = {}
    h.add_deployment(d)
    await h.sync()
    assert not h.client.by_verb("create", "replicasets")
    assert h.recorder.events == ["Warning SelectingAll This deployment is selecting all pods. "
                                 "A non-empty selector is required."]

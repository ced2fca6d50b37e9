"""StatefulSet `sync` against a seeded fake (no server)."""
from __future__ import annotations

from typing import Any

from pyk8s.controllers import statefulset_util as su
from pyk8s.controllers.history import hash_revision, template_patch
from pyk8s.controllers.statefulset import StatefulSetController
from tests.controllers.fake_cluster import NS, FakeCluster

Obj = dict[str, Any]
STS_PATH = f"/apis/apps/v1/namespaces/{NS}/statefulsets"
KEY = f"{NS}/web"


class Harness(FakeCluster):
    def __init__(self) -> None:
        super().__init__()
        self.ctrl = StatefulSetController(self.client, self.factory, self.recorder)

    def add_set(self, replicas: int = 3, *, policy: str = "OrderedReady",
                strategy: Obj | None = None, claims: bool = True, retention: Obj | None = None,
                start: int | None = None) -> Obj:
        spec: Obj = {"replicas": replicas, "serviceName": "web-svc",
                     "podManagementPolicy": policy, "revisionHistoryLimit": 10,
                     "selector": {"matchLabels": {"app": "web"}},
                     "updateStrategy": strategy or {"type": "RollingUpdate",
                                                    "rollingUpdate": {"partition": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "img:1"}]}}}
        if claims:
            spec["volumeClaimTemplates"] = [{"metadata": {"name": "data",
                                                          "labels": {"tier": "db"}},
                                             "spec": {"accessModes": ["ReadWriteOnce"],
                                                      "resources": {"requests": {
                                                          "storage": "1Gi"}}}}]
        if retention:
            spec["persistentVolumeClaimRetentionPolicy"] = retention
        if start is not None:
            spec["ordinals"] = {"start": start}
        return self.seed(STS_PATH, {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                    "metadata": {"name": "web", "generation": 1},
                                    "spec": spec})

    def sts(self) -> Obj:
        return self.client.objects[("apps", "statefulsets", NS, "web")]

    def edit(self, **spec: Any) -> None:
        s = self.sts()
        s["spec"].update(spec)
        s["metadata"]["generation"] += 1
        s["metadata"]["resourceVersion"] = str(next(self.client._rv))

    def set_image(self, image: str) -> None:
        s = self.sts()
        s["spec"]["template"]["spec"]["containers"][0]["image"] = image
        s["metadata"]["generation"] += 1
        s["metadata"]["resourceVersion"] = str(next(self.client._rv))

    def observe(self) -> None:
        c = self.ctrl
        self.feed(c.set_informer, "apps", "statefulsets")
        self.feed(c.revision_informer, "apps", "controllerrevisions")
        self.feed(c.pvc_informer, "", "persistentvolumeclaims")
        self.feed(c.pod_informer, "", "pods")

    async def sync(self) -> None:
        self.observe()
        await self.ctrl.sync(KEY)
        self.observe()

    def names(self) -> list[str]:
        return [p["metadata"]["name"] for p in self.stored("", "pods")]

    def claims(self) -> list[Obj]:
        return self.stored("", "persistentvolumeclaims")

    def run_all(self) -> None:
        for p in self.stored("", "pods"):
            if not (p.get("status") or {}).get("conditions"):
                self.run_pod(p["metadata"]["name"], node="n1")

    async def settle(self, rounds: int = 12) -> None:
        for _ in range(rounds):
            await self.sync()
            self.run_all()
        await self.sync()


async def test_ordered_ready_creates_one_at_a_time_with_identity_and_claims() -> None:
    h = Harness()
    s = h.add_set()
    await h.sync()
    assert h.names() == ["web-0"]
    pod = h.pod("web-0")
    md, spec = pod["metadata"], pod["spec"]
    assert md["labels"] == {"app": "web", "statefulset.kubernetes.io/pod-name": "web-0",
                            "apps.kubernetes.io/pod-index": "0",
                            "controller-revision-hash": h.sts()["status"]["updateRevision"]}
    assert md["ownerReferences"][0] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                        "name": "web", "uid": s["metadata"]["uid"],
                                        "controller": True, "blockOwnerDeletion": True}
    assert spec["hostname"] == "web-0" and spec["subdomain"] == "web-svc"
    assert spec["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName":
                                                                          "data-web-0"}}]
    [claim] = h.claims()
    assert claim["metadata"]["name"] == "data-web-0"
    assert claim["metadata"]["labels"] == {"tier": "db", "app": "web"}
    assert "ownerReferences" not in claim["metadata"]          # Retain / Retain
    assert h.recorder.events == [
        "Normal SuccessfulCreate create Claim data-web-0 Pod web-0 in StatefulSet web success",
        "Normal SuccessfulCreate create Pod web-0 in StatefulSet web successful"]
    # web-0 not ready: nothing more
    await h.sync()
    assert h.names() == ["web-0"]
    h.run_pod("web-0", ready=False, node="n1")
    await h.sync()
    assert h.names() == ["web-0"]
    h.run_pod("web-0", node="n1")
    await h.sync()
    assert h.names() == ["web-0", "web-1"]
    await h.settle()
    assert h.names() == ["web-0", "web-1", "web-2"]
    st = h.sts()["status"]
    assert (st["replicas"], st["readyReplicas"], st["availableReplicas"],
            st["currentReplicas"], st["updatedReplicas"]) == (3, 3, 3, 3, 3)
    assert st["currentRevision"] == st["updateRevision"] and st["observedGeneration"] == 1
    assert st["collisionCount"] == 0
    [rev] = h.stored("apps", "controllerrevisions")
    assert rev["metadata"]["name"] == st["updateRevision"] and rev["revision"] == 1
    assert rev["metadata"]["labels"] == {
        "app": "web", "controller.kubernetes.io/hash": hash_revision(template_patch(h.sts()), 0)}


async def test_parallel_and_ordinals_start() -> None:
    h = Harness()
    h.add_set(3, policy="Parallel", start=5, claims=False)
    await h.sync()
    assert h.names() == ["web-5", "web-6", "web-7"]
    h.edit(replicas=1)
    await h.sync()
    assert h.names() == ["web-5"]                 # parallel: all condemned at once


async def test_scale_down_in_reverse_and_claims_kept() -> None:
    h = Harness()
    h.add_set(3)
    await h.settle()
    h.edit(replicas=1)
    await h.sync()
    assert h.names() == ["web-0", "web-1"]        # web-2 first
    await h.sync()
    assert h.names() == ["web-0"]
    assert [c["metadata"]["name"] for c in h.claims()] == ["data-web-0", "data-web-1",
                                                           "data-web-2"]
    assert "Normal SuccessfulDelete delete Pod web-2 in StatefulSet web successful" in \
        h.recorder.events
    # scale up: same names, same claims
    h.edit(replicas=3)
    await h.settle()
    assert h.names() == ["web-0", "web-1", "web-2"]
    assert len(h.claims()) == 3
    assert h.pod("web-2")["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == \
        "data-web-2"


async def test_ordered_scale_down_waits_for_terminating_pods() -> None:
    h = Harness()
    h.add_set(3, claims=False)
    await h.settle()
    h.edit(replicas=1)
    h.client.objects[("", "pods", NS, "web-2")]["metadata"]["deletionTimestamp"] = "x"
    h.client.objects[("", "pods", NS, "web-2")]["metadata"]["resourceVersion"] = "9999"
    await h.sync()
    assert h.names() == ["web-0", "web-1", "web-2"]   # waits for web-2 to go


async def test_deleted_pod_comes_back_with_its_claim() -> None:
    h = Harness()
    h.add_set(2)
    await h.settle()
    uid = h.pod("web-1")["metadata"]["uid"]
    h.delete_pod("web-1")
    await h.sync()
    assert h.names() == ["web-0", "web-1"] and h.pod("web-1")["metadata"]["uid"] != uid
    assert len(h.claims()) == 2


async def test_retention_policy_owner_references() -> None:
    h = Harness()
    s = h.add_set(2, retention={"whenDeleted": "Delete", "whenScaled": "Delete"})
    await h.settle()
    for c in h.claims():
        assert [r["uid"] for r in c["metadata"]["ownerReferences"]] == [s["metadata"]["uid"]]
        assert "controller" not in c["metadata"]["ownerReferences"][0]
    h.edit(replicas=1)
    await h.sync()
    claim1 = h.client.objects[("", "persistentvolumeclaims", NS, "data-web-1")]
    # the condemned pod owns its claim (the garbage collector deletes it with the pod)
    refs = claim1["metadata"]["ownerReferences"]
    assert [(r["kind"], r["name"]) for r in refs] == [("Pod", "web-1")]


async def test_rolling_update_in_reverse_order_with_partition() -> None:
    h = Harness()
    h.add_set(3, claims=False)
    await h.settle()
    first = h.sts()["status"]["currentRevision"]
    h.set_image("img:2")
    order: list[str] = []
    for _ in range(20):
        before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in h.stored("", "pods")}
        await h.sync()
        after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in h.stored("", "pods")}
        order += [n for n in after if n in before and after[n] != before[n] or
                  n not in before]
        h.run_all()
    assert order == ["web-2", "web-1", "web-0"]
    st = h.sts()["status"]
    assert st["currentRevision"] == st["updateRevision"] != first
    assert st["updatedReplicas"] == 3 and st["currentReplicas"] == 3
    # partition 2: only web-2 moves to img:3
    h.edit(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    h.set_image("img:3")
    await h.settle()
    images = [p["spec"]["containers"][0]["image"] for p in h.stored("", "pods")]
    assert images == ["img:2", "img:2", "img:3"]
    st = h.sts()["status"]
    assert st["updatedReplicas"] == 1 and st["currentRevision"] != st["updateRevision"]
    # rollback to img:2: the old revision is re-numbered, no new revision is made
    revs_before = {r["metadata"]["name"] for r in h.stored("apps", "controllerrevisions")}
    h.edit(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    h.set_image("img:2")
    await h.settle()
    revs = h.stored("apps", "controllerrevisions")
    assert {r["metadata"]["name"] for r in revs} == revs_before
    assert max(revs, key=lambda r: r["revision"])["metadata"]["name"] == \
        h.sts()["status"]["updateRevision"]
    assert [p["spec"]["containers"][0]["image"] for p in h.stored("", "pods")] == ["img:2"] * 3


async def test_on_delete_and_failed_pods() -> None:
    h = Harness()
    h.add_set(2, claims=False, strategy={"type": "OnDelete"})
    await h.settle()
    h.set_image("img:2")
    await h.settle()
    assert [p["spec"]["containers"][0]["image"] for p in h.stored("", "pods")] == ["img:1"] * 2
    h.delete_pod("web-0")
    await h.settle()
    assert [p["spec"]["containers"][0]["image"] for p in h.stored("", "pods")] == [
        "img:2", "img:1"]
    h.run_pod("web-1", phase="Failed")
    await h.sync()
    assert "Warning RecreatingFailedPod StatefulSet ns/web is recreating failed Pod web-1" in \
        h.recorder.events
    await h.settle()
    assert h.pod("web-1")["spec"]["containers"][0]["image"] == "img:2"


async def test_history_truncated_and_min_ready_seconds() -> None:
    h = Harness()
    h.add_set(1, claims=False)
    h.edit(revisionHistoryLimit=2)
    await h.settle()
    for i in range(2, 7):
        h.set_image(f"img:{i}")
        await h.settle()
    assert sorted(r["revision"] for r in h.stored("apps", "controllerrevisions")) == [4, 5, 6]
    h2 = Harness()
    h2.add_set(2, claims=False)
    h2.edit(minReadySeconds=60)
    await h2.sync()
    h2.run_pod("web-0", ready_since=1, node="n1")
    await h2.sync()
    assert h2.names() == ["web-0"]                 # ready, but not for 60 s
    h2.run_pod("web-0", ready_since=120, node="n1")
    await h2.sync()
    assert h2.names() == ["web-0", "web-1"]


def test_identity_helpers() -> None:
    s = {"metadata": {"name": "db", "namespace": NS}, "spec": {"replicas": 2}}
    pod = {"metadata": {"name": "db-1", "namespace": NS, "labels": {}}}
    assert su.get_ordinal(pod) == 1 and su.is_member_of(s, pod)
    assert not su.identity_matches(s, pod)
    su.update_identity(s, pod)
    assert su.identity_matches(s, pod)
    assert su.get_ordinal({"metadata": {"name": "db-x"}}) == -1

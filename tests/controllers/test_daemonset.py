"""DaemonSet `sync` against a seeded fake (no server)."""
from __future__ import annotations

import copy
from typing import Any

from pyk8s.controllers import daemonset_util as du
from pyk8s.controllers.daemonset import DaemonSetsController, should_ignore_node_update
from tests.controllers.fake_cluster import NS, FakeCluster, ts

Obj = dict[str, Any]
DS_PATH = f"/apis/apps/v1/namespaces/{NS}/daemonsets"
KEY = f"{NS}/ds"
HASH = "controller-revision-hash"


class Harness(FakeCluster):
    def __init__(self, **kw: Any) -> None:
        super().__init__()
        self.ctrl = DaemonSetsController(self.client, self.factory, self.recorder, **kw)

    def add_node(self, name: str, labels: dict[str, str] | None = None,
                 taints: list[Obj] | None = None) -> Obj:
        node: Obj = {"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": name,
                                  "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
                     "spec": {"taints": taints} if taints else {}}
        return self.seed("/api/v1/nodes", node)

    def add_ds(self, *, strategy: Obj | None = None, template_spec: Obj | None = None,
               min_ready: int = 0, history_limit: int = 10) -> Obj:
        ds = {"apiVersion": "apps/v1", "kind": "DaemonSet",
              "metadata": {"name": "ds", "generation": 1},
              "spec": {"selector": {"matchLabels": {"app": "ds"}}, "minReadySeconds": min_ready,
                       "revisionHistoryLimit": history_limit,
                       "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {
                           "maxUnavailable": 1, "maxSurge": 0}},
                       "template": {"metadata": {"labels": {"app": "ds"}},
                                    "spec": template_spec or {"containers": [
                                        {"name": "c", "image": "img:1"}]}}}}
        return self.seed(DS_PATH, ds)

    def ds(self) -> Obj:
        return self.client.objects[("apps", "daemonsets", NS, "ds")]

    def set_image(self, image: str) -> None:
        ds = self.ds()
        ds["spec"]["template"]["spec"]["containers"][0]["image"] = image
        ds["metadata"]["generation"] += 1
        ds["metadata"]["resourceVersion"] = str(next(self.client._rv))

    def observe(self) -> None:
        c = self.ctrl
        self.feed(c.node_informer, "", "nodes")
        self.feed(c.ds_informer, "apps", "daemonsets")
        self.feed(c.history_informer, "apps", "controllerrevisions")
        self.feed(c.pod_informer, "", "pods")

    async def sync(self) -> None:
        self.observe()
        await self.ctrl.sync(KEY)
        self.observe()

    def pods(self) -> list[Obj]:
        return self.stored("", "pods")

    def pods_by_node(self) -> dict[str, list[Obj]]:
        out: dict[str, list[Obj]] = {}
        for p in self.pods():
            out.setdefault(du.target_node_name(p) or "", []).append(p)
        return out

    def run_all(self, ready: bool = True) -> None:
        for p in self.pods():
            if not p.get("status", {}).get("conditions"):
                self.run_pod(p["metadata"]["name"], node=du.target_node_name(p), ready=ready)

    def revisions(self) -> list[Obj]:
        return sorted(self.stored("apps", "controllerrevisions"), key=lambda r: r["revision"])


async def test_one_pinned_pod_per_eligible_node() -> None:
    h = Harness()
    h.add_node("n1")
    h.add_node("n2", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                             {"key": "node.kubernetes.io/unschedulable",
                              "effect": "NoSchedule"}])
    h.add_node("n3", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    ds = h.add_ds()
    await h.sync()
    by_node = h.pods_by_node()
    assert sorted(by_node) == ["n1", "n2"]       # n3's taint is not tolerated
    pod = by_node["n1"][0]
    md, spec = pod["metadata"], pod["spec"]
    assert md["generateName"] == "ds-" and "nodeName" not in spec
    assert md["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                      "name": "ds", "uid": ds["metadata"]["uid"],
                                      "controller": True, "blockOwnerDeletion": True}]
    assert spec["affinity"] == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                "values": ["n1"]}]}]}}}
    assert [(t["key"], t["effect"]) for t in spec["tolerations"]] == [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule")]
    assert all(t["operator"] == "Exists" and "tolerationSeconds" not in t
               for t in spec["tolerations"])
    [rev] = h.revisions()
    assert rev["revision"] == 1 and rev["metadata"]["name"] == f"ds-{md['labels'][HASH]}"
    assert rev["metadata"]["labels"] == {"app": "ds", HASH: md["labels"][HASH]}
    assert rev["data"]["spec"]["template"]["$patch"] == "replace"
    assert rev["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    assert h.events("SuccessfulCreate") and all(
        e.startswith("Normal SuccessfulCreate Created pod: ds-") for e in h.events())
    assert h.ds()["status"]["currentNumberScheduled"] == 0   # not observed yet
    await h.sync()
    st = h.ds()["status"]
    assert st["desiredNumberScheduled"] == 2 and st["currentNumberScheduled"] == 2
    assert st["updatedNumberScheduled"] == 2 and st["numberReady"] == 0
    assert st["numberUnavailable"] == 2 and st["observedGeneration"] == 1
    # ready pods
    h.run_all()
    await h.sync()
    st = h.ds()["status"]
    assert (st["numberReady"], st["numberAvailable"], st["numberUnavailable"]) == (2, 2, 0)


async def test_host_network_tolerates_network_unavailable() -> None:
    spec = du.new_daemon_pod_spec({"spec": {"template": {"spec": {"hostNetwork": True}}}}, "n")
    assert {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
            "effect": "NoSchedule"} in spec["tolerations"]
    node = {"metadata": {"name": "n"}, "spec": {"taints": [
        {"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]}}
    plain = {"spec": {"template": {"spec": {}}}}
    host = {"spec": {"template": {"spec": {"hostNetwork": True}}}}
    assert du.node_should_run_daemon_pod(node, plain) == (False, True)
    assert du.node_should_run_daemon_pod(node, host) == (True, True)


async def test_node_selector_affinity_and_noexecute() -> None:
    h = Harness()
    h.add_node("a", labels={"disk": "ssd"})
    h.add_node("b", labels={"disk": "hdd"})
    h.add_node("c", labels={"disk": "ssd", "zone": "z1"})
    h.add_ds(template_spec={"containers": [{"name": "c", "image": "i"}],
                            "nodeSelector": {"disk": "ssd"},
                            "affinity": {"nodeAffinity": {
                                "requiredDuringSchedulingIgnoredDuringExecution": {
                                    "nodeSelectorTerms": [{"matchExpressions": [
                                        {"key": "zone", "operator": "NotIn",
                                         "values": ["z1"]}]}]}}}})
    await h.sync()
    assert sorted(h.pods_by_node()) == ["a"]
    # a NoExecute taint the pod does not tolerate evicts it; NoSchedule would not
    node = h.client.objects[("", "nodes", "", "a")]
    node["spec"]["taints"] = [{"key": "k", "effect": "NoSchedule"}]
    node["metadata"]["resourceVersion"] = "999"
    h.run_all()
    await h.sync()
    assert sorted(h.pods_by_node()) == ["a"]
    assert h.ds()["status"]["numberMisscheduled"] == 1
    assert h.ds()["status"]["desiredNumberScheduled"] == 0
    node["spec"]["taints"] = [{"key": "k", "effect": "NoExecute"}]
    node["metadata"]["resourceVersion"] = "1000"
    await h.sync()
    assert h.pods_by_node() == {}
    assert any("SuccessfulDelete Deleted pod: ds-" in e for e in h.events())


async def test_nodes_joining_and_leaving() -> None:
    h = Harness()
    h.add_node("n1")
    h.add_ds()
    await h.sync()
    h.run_all()
    h.add_node("n2")
    h.observe()
    assert KEY in h.ctrl.queue._queue           # add_node enqueued the DaemonSet
    await h.sync()
    assert sorted(h.pods_by_node()) == ["n1", "n2"]
    # n2 goes away: its bound pod is the pod GC's, an unscheduled one is ours
    del h.client.objects[("", "nodes", "", "n2")]
    await h.sync()
    assert sorted(h.pods_by_node()) == ["n1"]     # n2's pod was never bound
    h.add_node("n3")
    await h.sync()
    h.run_all()
    del h.client.objects[("", "nodes", "", "n3")]
    await h.sync()
    assert sorted(h.pods_by_node()) == ["n1", "n3"]
    assert h.ds()["status"]["desiredNumberScheduled"] == 1


async def test_failed_pods_are_replaced_with_backoff() -> None:
    clock = [1000.0]
    h = Harness(backoff=du.FailedPodsBackoff(clock=lambda: clock[0]))
    h.add_node("n1")
    h.add_ds()
    await h.sync()
    [pod] = h.pods()
    h.run_pod(pod["metadata"]["name"], node="n1", phase="Failed")
    await h.sync()
    assert h.events("FailedDaemonPod") == [
        f"Warning FailedDaemonPod Found failed daemon pod {NS}/{pod['metadata']['name']} on "
        f"node n1, will try to kill it"]
    await h.sync()                               # the replacement
    [new] = h.pods()
    assert new["metadata"]["name"] != pod["metadata"]["name"]
    h.run_pod(new["metadata"]["name"], node="n1", phase="Failed")
    clock[0] += 0.5
    await h.sync()                               # within the 1 s backoff: kept
    assert [p["metadata"]["name"] for p in h.pods()] == [new["metadata"]["name"]]
    clock[0] += 1.0
    await h.sync()
    assert h.pods() == [] or h.pods()[0]["metadata"]["name"] != new["metadata"]["name"]
    assert len(h.events("FailedDaemonPod")) == 2


async def test_rolling_update_respects_max_unavailable() -> None:
    h = Harness()
    for n in ("n1", "n2", "n3"):
        h.add_node(n)
    h.add_ds()
    await h.sync()
    h.run_all()
    await h.sync()
    old_hash = h.pods()[0]["metadata"]["labels"][HASH]
    h.set_image("img:2")
    await h.sync()
    revs = h.revisions()
    assert [r["revision"] for r in revs] == [1, 2]
    new_hash = revs[1]["metadata"]["labels"][HASH]
    assert new_hash != old_hash
    # one old pod deleted (maxUnavailable 1), replaced on the next sync
    assert len(h.pods()) == 2
    await h.sync()
    hashes = sorted(p["metadata"]["labels"][HASH] for p in h.pods())
    assert hashes.count(new_hash) == 1 and len(hashes) == 3
    await h.sync()                               # the new pod is not ready: nothing more
    assert len(h.pods()) == 3
    for _ in range(8):
        h.run_all()
        await h.sync()
    assert {p["metadata"]["labels"][HASH] for p in h.pods()} == {new_hash}
    st = h.ds()["status"]
    assert st["updatedNumberScheduled"] == 3 and st["numberAvailable"] == 3
    assert st["observedGeneration"] == 2
    # rollback to the first template: revision 1 is re-numbered 3
    h.set_image("img:1")
    await h.sync()
    assert [(r["metadata"]["labels"][HASH], r["revision"]) for r in h.revisions()] == [
        (new_hash, 2), (old_hash, 3)]


async def test_max_surge_creates_before_deleting() -> None:
    h = Harness()
    h.add_node("n1")
    h.add_ds(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0,
                                                                  "maxSurge": 1}})
    await h.sync()
    h.run_all()
    await h.sync()
    h.set_image("img:2")
    await h.sync()
    assert len(h.pods()) == 2                    # surged: old and new side by side
    await h.sync()
    assert len(h.pods()) == 2                    # the new one is not available yet
    h.run_all()
    await h.sync()
    [pod] = h.pods()
    assert pod["spec"]["containers"][0]["image"] == "img:2"


async def test_on_delete_waits_for_deletions() -> None:
    h = Harness()
    h.add_node("n1")
    h.add_ds(strategy={"type": "OnDelete"})
    await h.sync()
    h.run_all()
    h.set_image("img:2")
    await h.sync()
    [pod] = h.pods()
    assert pod["spec"]["containers"][0]["image"] == "img:1"
    assert h.ds()["status"]["updatedNumberScheduled"] == 0
    h.delete_pod(pod["metadata"]["name"])
    await h.sync()
    [pod] = h.pods()
    assert pod["spec"]["containers"][0]["image"] == "img:2"


async def test_history_is_truncated_to_the_limit() -> None:
    h = Harness()
    h.add_node("n1")
    h.add_ds(strategy={"type": "OnDelete"}, history_limit=2)
    await h.sync()
    for i in range(2, 7):
        h.set_image(f"img:{i}")
        await h.sync()
    # current (6) + 2 old; the pod still runs revision 1, which is kept as live
    revs = [r["revision"] for r in h.revisions()]
    assert revs == [1, 5, 6] or revs == [1, 4, 5, 6]
    await h.sync()
    assert [r["revision"] for r in h.revisions()] == [1, 5, 6]


async def test_selecting_everything_is_refused() -> None:
    h = Harness()
    h.add_node("n1")
    ds = h.add_ds()
    ds = h.ds()
    ds["spec"]["selector"] = {}
    await h.sync()
    assert h.pods() == []
    assert h.events() == ["Warning SelectingAll This daemon set is selecting all pods. A "
                          "non-empty selector is required."]


async def test_min_ready_seconds_and_orphan_adoption() -> None:
    h = Harness()
    h.add_node("n1")
    h.add_ds(min_ready=30, strategy={"type": "OnDelete"})
    orphan = h.seed(f"/api/v1/namespaces/{NS}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orphan", "labels": {"app": "ds"}, "creationTimestamp": ts(50)},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                                                       "lastTransitionTime": ts(5)}]}})
    await h.sync()
    [pod] = h.pods()
    assert pod["metadata"]["name"] == "orphan"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    st = h.ds()["status"]
    assert (st["numberReady"], st["numberAvailable"], st["updatedNumberScheduled"]) == (1, 0, 0)
    assert orphan["metadata"]["uid"] == pod["metadata"]["uid"]


def test_node_update_filter() -> None:
    n = {"metadata": {"name": "n", "resourceVersion": "1"},
         "status": {"conditions": [{"type": "Ready", "status": "True",
                                    "lastHeartbeatTime": "a"}]}}
    m = copy.deepcopy(n)
    m["metadata"]["resourceVersion"] = "2"
    m["status"]["conditions"][0]["lastHeartbeatTime"] = "b"
    assert should_ignore_node_update(n, m)
    m["metadata"]["labels"] = {"x": "y"}
    assert not should_ignore_node_update(n, m)

"""DaemonSets and StatefulSets in a real `pyk8s up` with hollow nodes (`pyk8s agent
--runtime fake`), driven by real kubectl: nodes joining and leaving, rollouts, ordered
creation, stable names and claims, reverse-order updates, history and undo."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, wait_for
from tests.e2e.test_agent import AgentProcess

NS = "dsts"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    d = tmp_path_factory.mktemp("pyk8s-dsts")
    up = ServerProcess(d, command="up", ready_log="statefulset-controller: synced").start(
        timeout=40)
    agent = None
    try:
        agent = AgentProcess(up, d, "--node-name", "hn", "--count", "2", "--runtime", "fake",
                             "--fake-cpu", "8", "--fake-memory", "16Gi").start()
        wait_for("2 hollow nodes Ready", lambda: up.kubectl(
            "get", "nodes", "--no-headers", check=False).stdout.count(" Ready ") == 2,
            timeout=30)
        up.kubectl("create", "namespace", NS)
        yield up, d
    finally:
        if agent is not None:
            agent.stop()
        up.stop()


def apply(c: ServerProcess, doc: str) -> None:
    c.kubectl("apply", "-n", NS, "-f", "-", input=doc)


def pods(c: ServerProcess, app: str) -> list[Obj]:
    items: list[Obj] = c.get(f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{app}"
                             ).json()["items"]
    return items


def ready_since(p: Obj) -> str | None:
    for cond in (p.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return str(cond.get("lastTransitionTime"))
    return None


def daemonset(name: str, image: str = "img:1") -> str:
    return f"""\
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: "{image}"}}], terminationGracePeriodSeconds: 1}}
"""


def by_node(c: ServerProcess, app: str) -> dict[str, Obj]:
    return {str(p["spec"].get("nodeName")): p for p in pods(c, app)
            if not p["metadata"].get("deletionTimestamp")}


def test_daemonset_follows_nodes_and_rolls_out(cluster: tuple[ServerProcess, Path]) -> None:
    c, d = cluster
    apply(c, daemonset("agentd"))
    wait_for("a ready daemon pod on each node", lambda: sorted(
        n for n, p in by_node(c, "agentd").items() if ready_since(p)) == ["hn-0", "hn-1"],
        timeout=20)
    ds = c.kubectl_json("get", "ds", "agentd", "-n", NS)
    pod = next(iter(by_node(c, "agentd").values()))
    assert pod["metadata"]["labels"]["controller-revision-hash"]
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchFields"][0]["key"] == "metadata.name"
    # a node joins: it gets a pod, bound there by the scheduler
    joiner_dir = d / "joiner"
    joiner_dir.mkdir()
    joiner = AgentProcess(c, joiner_dir, "--node-name", "joiner", "--runtime", "fake").start()
    try:
        wait_for("a daemon pod on the new node", lambda: ready_since(
            by_node(c, "agentd").get("joiner") or {}), timeout=20)
        wait_for("status counts 3", lambda: c.kubectl_json("get", "ds", "agentd", "-n", NS)[
            "status"].get("numberReady") == 3, timeout=10)
    finally:
        joiner.stop()
    # the node leaves: its pod is deleted by the pod GC (orphans: 40 s quarantine, checked
    # every 20 s, so 40-60 s after the deletion)
    joiner_pod = by_node(c, "agentd")["joiner"]["metadata"]["name"]
    c.kubectl("delete", "node", "joiner")
    left = time.monotonic()
    wait_for("desired back to 2", lambda: c.kubectl_json("get", "ds", "agentd", "-n", NS)[
        "status"].get("desiredNumberScheduled") == 2, timeout=10)
    # meanwhile: a rollout of another DaemonSet, its history and an undo
    apply(c, daemonset("roll"))
    assert "successfully rolled out" in c.kubectl(
        "rollout", "status", "ds/roll", "-n", NS, "--timeout=30s").stdout
    c.kubectl("set", "image", "ds/roll", "c=img:2", "-n", NS)
    out = c.kubectl("rollout", "status", "ds/roll", "-n", NS, "--timeout=30s").stdout
    assert 'daemon set "roll" successfully rolled out' in out
    assert {p["spec"]["containers"][0]["image"] for p in by_node(c, "roll").values()} == {
        "img:2"}
    hist = c.kubectl("rollout", "history", "ds/roll", "-n", NS).stdout
    assert [ln.split()[0] for ln in hist.splitlines()[2:] if ln.strip()] == ["1", "2"]
    c.kubectl("rollout", "undo", "ds/roll", "-n", NS)
    c.kubectl("rollout", "status", "ds/roll", "-n", NS, "--timeout=30s")
    wait_for("back on img:1", lambda: {p["spec"]["containers"][0]["image"]
                                       for p in by_node(c, "roll").values()} == {"img:1"},
             timeout=20)
    revs = c.kubectl_json("get", "controllerrevisions", "-n", NS, "-l", "app=roll")["items"]
    assert sorted(r["revision"] for r in revs) == [2, 3]
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1
    wait_for("the left node's pod deleted", lambda: c.get(
        f"/api/v1/namespaces/{NS}/pods/{joiner_pod}").status == 404,
        timeout=max(5.0, 80 - (time.monotonic() - left)))


def statefulset(name: str, replicas: int, *, policy: str = "OrderedReady", claims: bool = False,
                image: str = "img:1", min_ready: int = 0) -> str:
    vct = """  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
""" if claims else ""
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{clusterIP: None, selector: {{app: {name}}}, ports: [{{port: 80}}]}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  serviceName: {name}
  podManagementPolicy: {policy}
  minReadySeconds: {min_ready}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: "{image}"}}], terminationGracePeriodSeconds: 1}}
{vct}"""


class UidRecorder:
    """Polls the pods of an app, recording each (name, uid) the first time it appears."""

    def __init__(self, c: ServerProcess, app: str) -> None:
        self.c, self.app = c, app
        self.seen: dict[str, str] = {p["metadata"]["name"]: p["metadata"]["uid"]
                                     for p in pods(c, app)}
        self.new: list[str] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                current = pods(self.c, self.app)
            except Exception:       # the server went away: the test is over
                return
            for p in current:
                name, uid = p["metadata"]["name"], p["metadata"]["uid"]
                if self.seen.get(name) != uid:
                    self.seen[name] = uid
                    self.new.append(name)
            time.sleep(0.05)

    def stop(self) -> list[str]:
        self._stop.set()
        self._t.join()
        return self.new


def test_statefulset_ordered_start_and_reverse_update(
        cluster: tuple[ServerProcess, Path]) -> None:
    c, _ = cluster
    apply(c, statefulset("web", 3, min_ready=1))
    c.kubectl("rollout", "status", "sts/web", "-n", NS, "--timeout=30s")
    ps = {p["metadata"]["name"]: p for p in pods(c, "web")}
    assert sorted(ps) == ["web-0", "web-1", "web-2"]
    for k in range(2):
        ready_k = ready_since(ps[f"web-{k}"])
        assert ready_k is not None
        # created only once its predecessor was Ready (for minReadySeconds)
        assert ps[f"web-{k + 1}"]["metadata"]["creationTimestamp"] > ready_k
    for name, p in ps.items():
        assert p["spec"]["hostname"] == name and p["spec"]["subdomain"] == "web"
        assert p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == name
        assert p["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == name[-1]
    events = c.kubectl_json("get", "events", "-n", NS, "--field-selector",
                            "involvedObject.kind=StatefulSet,involvedObject.name=web")["items"]
    creates = [e["message"] for e in sorted(events, key=lambda e: e["firstTimestamp"])
               if e["reason"] == "SuccessfulCreate"]
    assert creates == [f"create Pod web-{k} in StatefulSet web successful" for k in range(3)]
    # an image change: pods are recreated from the highest ordinal down
    rec = UidRecorder(c, "web")
    try:
        c.kubectl("set", "image", "sts/web", "c=img:2", "-n", NS)
        out = c.kubectl("rollout", "status", "sts/web", "-n", NS, "--timeout=40s").stdout
        wait_for("the recorder saw web-0 replaced", lambda: len(rec.new) >= 3, timeout=5)
    finally:
        order = rec.stop()
    # (partition defaults to 0, so kubectl reports a partitioned roll out)
    assert "partitioned roll out complete: 3 new pods have been updated" in out
    assert order == ["web-2", "web-1", "web-0"]
    st = wait_for("all available (minReadySeconds 1)", lambda: (lambda x: x if x.get(
        "availableReplicas") == 3 else None)(c.kubectl_json("get", "sts", "web", "-n", NS)[
            "status"]), timeout=10)
    assert st["currentRevision"] == st["updateRevision"]
    assert (st["replicas"], st["readyReplicas"], st["updatedReplicas"],
            st["availableReplicas"]) == (3, 3, 3, 3)
    assert all(p["metadata"]["labels"]["controller-revision-hash"] == st["updateRevision"]
               for p in pods(c, "web"))
    hist = c.kubectl("rollout", "history", "sts/web", "-n", NS).stdout
    assert [ln.split()[0] for ln in hist.splitlines()[2:] if ln.strip()] == ["1", "2"]
    c.kubectl("rollout", "undo", "sts/web", "-n", NS)
    c.kubectl("rollout", "status", "sts/web", "-n", NS, "--timeout=40s")
    wait_for("rolled back to img:1", lambda: [p["spec"]["containers"][0]["image"]
                                              for p in pods(c, "web")] == ["img:1"] * 3,
             timeout=20)
    hist = c.kubectl("rollout", "history", "sts/web", "-n", NS).stdout
    assert [ln.split()[0] for ln in hist.splitlines()[2:] if ln.strip()] == ["2", "3"]


def test_statefulset_names_and_claims_are_stable(cluster: tuple[ServerProcess, Path]) -> None:
    """Parallel, with a claim template. No PV controller exists: the claims stay Pending,
    and the kubelet cannot set up `persistentVolumeClaim` volumes, so these pods are
    scheduled but never Ready (hence Parallel)."""
    c, _ = cluster
    apply(c, statefulset("db", 3, policy="Parallel", claims=True))

    def claims() -> list[str]:
        return sorted(p["metadata"]["name"] for p in c.kubectl_json(
            "get", "pvc", "-n", NS, "-l", "app=db")["items"])
    wait_for("3 pods bound", lambda: sorted(n for n, p in (
        (p["metadata"]["name"], p) for p in pods(c, "db")) if p["spec"].get("nodeName")) == [
        "db-0", "db-1", "db-2"], timeout=20)
    assert claims() == ["data-db-0", "data-db-1", "data-db-2"]
    uid = next(p for p in pods(c, "db") if p["metadata"]["name"] == "db-1")["metadata"]["uid"]
    c.kubectl("delete", "pod", "db-1", "-n", NS, "--wait=false")

    def db1() -> Obj | None:
        for p in pods(c, "db"):
            if p["metadata"]["name"] == "db-1" and p["metadata"]["uid"] != uid:
                return p
        return None
    again = wait_for("db-1 recreated", db1, timeout=30)
    assert again["spec"]["volumes"][0] == {"name": "data",
                                           "persistentVolumeClaim": {"claimName": "data-db-1"}}
    c.kubectl("scale", "sts/db", "--replicas=1", "-n", NS)
    wait_for("scaled down to db-0", lambda: [p["metadata"]["name"] for p in pods(c, "db")] == [
        "db-0"], timeout=30)
    assert claims() == ["data-db-0", "data-db-1", "data-db-2"]     # kept (Retain)
    c.kubectl("scale", "sts/db", "--replicas=3", "-n", NS)
    wait_for("scaled up again", lambda: sorted(p["metadata"]["name"] for p in pods(c, "db"))
             == ["db-0", "db-1", "db-2"], timeout=20)
    assert claims() == ["data-db-0", "data-db-1", "data-db-2"]
    sts = c.kubectl_json("get", "sts", "db", "-n", NS)
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                                   "whenScaled": "Retain"}
    assert json.dumps(sts["status"]).count("Revision") == 2

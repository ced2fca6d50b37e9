"""ReplicaSets, ReplicationControllers and the default ServiceAccount in a real `pyk8s up`.

There is no kubelet: tests mark pods Running / Ready through pods/status, as one would."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, wait_for

NS = "rs-e2e"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    up = ServerProcess(tmp_path_factory.mktemp("pyk8s-rs"), command="up",
                       ready_log="replicaset-controller: synced").start()
    try:
        up.kubectl("create", "namespace", NS)
        yield up
    finally:
        up.stop()



def rs_yaml(name: str, replicas: int, min_ready: int = 0, kind: str = "ReplicaSet") -> str:
    if kind == "ReplicaSet":
        return f"""\
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: {replicas}
  minReadySeconds: {min_ready}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}, annotations: {{note: copied}}}}
    spec: {{containers: [{{name: web, image: nginx:1.25}}]}}
"""
    return f"""\
apiVersion: v1
kind: ReplicationController
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: {replicas}
  selector: {{app: {name}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: web, image: nginx:1.25}}]}}
"""


def pods(c: ServerProcess, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.get(
        f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{app}").json()["items"]
    return items


def rs(c: ServerProcess, name: str, resource: str = "apis/apps/v1/namespaces/{ns}/replicasets"
       ) -> dict[str, Any]:
    obj: dict[str, Any] = c.get("/" + resource.format(ns=NS) + "/" + name).json()
    return obj


def n_pods(c: ServerProcess, app: str, n: int) -> list[dict[str, Any]] | None:
    p = [x for x in pods(c, app) if not x["metadata"].get("deletionTimestamp")]
    return p if len(p) == n else None


def status_is(c: ServerProcess, name: str, **want: int) -> dict[str, Any] | None:
    obj = rs(c, name)
    st = obj.get("status") or {}
    return obj if all(int(st.get(k) or 0) == v for k, v in want.items()) else None


def mark_ready(c: ServerProcess, pod: dict[str, Any]) -> None:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = c.patch(f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/status",
                {"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now}]}},
                "application/merge-patch+json")
    assert r.status == 200, r


def test_scale_up_and_down(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=rs_yaml("scale", 3))
    got = wait_for("3 pods", lambda: n_pods(cluster, "scale", 3))
    owner = rs(cluster, "scale")
    for p in got:
        assert p["metadata"]["name"].startswith("scale-") and len(p["metadata"]["name"]) == 11
        assert p["metadata"]["annotations"] == {"note": "copied"}
        [ref] = p["metadata"]["ownerReferences"]
        assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "scale",
                       "uid": owner["metadata"]["uid"], "controller": True,
                       "blockOwnerDeletion": True}
    obj = wait_for("status 3", lambda: status_is(cluster, "scale", replicas=3,
                                                 fullyLabeledReplicas=3))
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    cluster.kubectl("scale", "rs", "scale", "-n", NS, "--replicas=5")
    wait_for("5 pods", lambda: n_pods(cluster, "scale", 5))
    cluster.kubectl("scale", "rs", "scale", "-n", NS, "--replicas=1")
    wait_for("1 pod", lambda: n_pods(cluster, "scale", 1))
    obj = wait_for("status 1", lambda: status_is(cluster, "scale", replicas=1))
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 3
    out = cluster.kubectl("get", "rs", "scale", "-n", NS).stdout
    assert out.split("\n")[1].split()[:3] == ["scale", "1", "1"]


def test_deleted_pod_is_replaced(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=rs_yaml("replace", 2))
    before = wait_for("2 pods", lambda: n_pods(cluster, "replace", 2))
    victim = before[0]["metadata"]["name"]
    cluster.kubectl("delete", "pod", victim, "-n", NS)
    after = wait_for("a replacement", lambda: (p := n_pods(cluster, "replace", 2)) and
                     victim not in {x["metadata"]["name"] for x in p} and p)
    assert len(after) == 2
    time.sleep(0.3)  # and no overshoot
    assert len(pods(cluster, "replace")) == 2


def test_ready_and_available_replicas_from_pod_status(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=rs_yaml("ready", 2, min_ready=2))
    got = wait_for("2 pods", lambda: n_pods(cluster, "ready", 2))
    for p in got:
        mark_ready(cluster, p)
    marked = time.monotonic()
    obj = wait_for("readyReplicas 2", lambda: status_is(cluster, "ready", readyReplicas=2))
    if time.monotonic() - marked < 0.9:  # lastTransitionTime has whole seconds: 1 s at least
        assert obj["status"]["availableReplicas"] == 0  # not yet ready for minReadySeconds
    wait_for("availableReplicas 2", lambda: status_is(cluster, "ready", availableReplicas=2),
             timeout=8)
    out = cluster.kubectl("get", "rs", "ready", "-n", NS).stdout
    assert out.split("\n")[1].split()[:4] == ["ready", "2", "2", "2"]


def test_adopts_orphan_and_releases_on_label_change(cluster: ServerProcess) -> None:
    orphan = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "lonely", "namespace": NS, "labels": {"app": "adopt"}},
              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(orphan))
    cluster.kubectl("apply", "-f", "-", input=rs_yaml("adopt", 2))
    owner = rs(cluster, "adopt")

    def adopted() -> bool:
        p = cluster.get(f"/api/v1/namespaces/{NS}/pods/lonely").json()
        refs = p["metadata"].get("ownerReferences") or []
        return [r["uid"] for r in refs if r.get("controller")] == [owner["metadata"]["uid"]]
    wait_for("the orphan to be adopted", adopted)
    got = wait_for("2 pods", lambda: n_pods(cluster, "adopt", 2))
    assert "lonely" in {p["metadata"]["name"] for p in got}
    time.sleep(0.3)
    assert len(pods(cluster, "adopt")) == 2  # the orphan counted: only one created
    # A label change releases the pod; the RS makes another.
    cluster.kubectl("label", "pod", "lonely", "-n", NS, "app=released", "--overwrite")
    wait_for("the release", lambda: not cluster.get(
        f"/api/v1/namespaces/{NS}/pods/lonely").json()["metadata"].get("ownerReferences"))
    got = wait_for("2 owned pods again", lambda: n_pods(cluster, "adopt", 2))
    assert "lonely" not in {p["metadata"]["name"] for p in got}


def test_replication_controller(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=rs_yaml("legacy", 2, kind="ReplicationController"))
    got = wait_for("2 pods", lambda: n_pods(cluster, "legacy", 2))
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in got} == {"ReplicationController"}
    path = "api/v1/namespaces/{ns}/replicationcontrollers"
    wait_for("rc status", lambda: (rs(cluster, "legacy", path).get("status") or {}).get(
        "replicas") == 2)
    cluster.kubectl("scale", "rc", "legacy", "-n", NS, "--replicas=0")
    wait_for("0 pods", lambda: not pods(cluster, "legacy"))
    out = cluster.kubectl("describe", "rc", "legacy", "-n", NS).stdout
    assert "SuccessfulDelete" in out and "replication-controller" in out


def test_describe_shows_events(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=rs_yaml("described", 2))
    got = wait_for("2 pods", lambda: n_pods(cluster, "described", 2))

    def described() -> str | None:
        out = cluster.kubectl("describe", "rs", "described", "-n", NS).stdout
        return out if out.count("SuccessfulCreate") == 2 else None
    out = wait_for("events in describe", described)
    for p in got:
        assert f"Created pod: {p['metadata']['name']}" in out
    assert "replicaset-controller" in out
    events = cluster.kubectl_json("get", "events", "-n", NS,
                                  "--field-selector", "involvedObject.name=described")["items"]
    assert {e["reason"] for e in events} == {"SuccessfulCreate"}
    assert all(e["count"] == 1 and e["source"]["component"] == "replicaset-controller"
               for e in events)


def test_deleting_the_replicaset_collects_its_pods(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=rs_yaml("doomed", 2))
    wait_for("2 pods", lambda: n_pods(cluster, "doomed", 2))
    cluster.kubectl("delete", "rs", "doomed", "-n", NS)
    wait_for("the pods to be collected", lambda: not pods(cluster, "doomed"))


def test_default_service_account_in_a_new_namespace(cluster: ServerProcess) -> None:
    cluster.kubectl("create", "namespace", "sa-e2e")
    path = "/api/v1/namespaces/sa-e2e/serviceaccounts/default"
    wait_for("the default service account", lambda: cluster.get(path).status == 200)
    cluster.kubectl("delete", "serviceaccount", "default", "-n", "sa-e2e")
    wait_for("it to be re-created", lambda: cluster.get(path).status == 200)
    assert cluster.kubectl("get", "sa", "-n", "sa-e2e", "-o", "name").stdout.split() == \
        ["serviceaccount/default"]

"""Deployments in a real `pyk8s up`, driven by real kubectl.

There is no kubelet: `FakeKubelet` marks the pods Running / Ready through pods/status,
as a kubelet would (tests/e2e/fake_kubelet.py)."""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, wait_for
from tests.e2e.fake_kubelet import FakeKubelet

NS = "deploy-e2e"
HASH = "pod-template-hash"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    up = ServerProcess(tmp_path_factory.mktemp("pyk8s-deploy"), command="up",
                       ready_log="deployment-controller: synced").start(timeout=40)
    try:
        up.kubectl("create", "namespace", NS)
        yield up
    finally:
        up.stop()



def deployment_yaml(name: str, replicas: int, image: str = "nginx:1.25", *,
                    strategy: str = "", extra_spec: str = "") -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
{strategy}{extra_spec}  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: web, image: "{image}"}}]}}
"""


def pods(c: ServerProcess, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.get(
        f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{app}").json()["items"]
    return items


def live(ps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in ps if not p["metadata"].get("deletionTimestamp")]


def is_ready(p: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (p.get("status") or {}).get("conditions") or [])


def replica_sets(c: ServerProcess, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.get(
        f"/apis/apps/v1/namespaces/{NS}/replicasets?labelSelector=app%3D{app}").json()["items"]
    return items


def deployment(c: ServerProcess, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = c.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{name}").json()
    return obj


def image_of(obj: dict[str, Any]) -> str:
    """The image of a pod, or of a Deployment's / ReplicaSet's template."""
    spec = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    return str(spec["containers"][0]["image"])


def rollout_status(c: ServerProcess, name: str, timeout: str = "30s") -> str:
    return c.kubectl("rollout", "status", f"deploy/{name}", "-n", NS, f"--timeout={timeout}",
                     timeout=60).stdout


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def test_create_scale_and_replace(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web", 3))
    got = wait_for("3 pods", lambda: (p := live(pods(cluster, "web"))) and len(p) == 3 and p)
    [rs] = replica_sets(cluster, "web")
    h = rs["metadata"]["labels"][HASH]
    d = deployment(cluster, "web")
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH: h}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH: h}
    assert rs["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
        "uid": d["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    ann = rs["metadata"]["annotations"]
    assert ann["deployment.kubernetes.io/revision"] == "1"
    assert ann["deployment.kubernetes.io/desired-replicas"] == "3"
    assert ann["deployment.kubernetes.io/max-replicas"] == "4"  # 3 + ceil(25% of 3)
    for p in got:
        assert p["metadata"]["labels"][HASH] == h
        assert p["metadata"]["name"].startswith(f"web-{h}-")
    with FakeKubelet(cluster, NS, accept=lambda p: p["metadata"]["labels"]["app"] == "web"):
        out = rollout_status(cluster, "web")
        assert 'deployment "web" successfully rolled out' in out
        d = wait_for("status", lambda: (x := deployment(cluster, "web"))
                     .get("status", {}).get("availableReplicas") == 3 and x)
        st = d["status"]
        assert st["observedGeneration"] == d["metadata"]["generation"]
        assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"]) == (3, 3, 3)
        assert st.get("unavailableReplicas", 0) == 0
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        avail, prog = condition(d, "Available"), condition(d, "Progressing")
        assert (avail["status"], avail["reason"]) == ("True", "MinimumReplicasAvailable")
        assert (prog["status"], prog["reason"]) == ("True", "NewReplicaSetAvailable")
        assert prog["message"] == f'ReplicaSet "web-{h}" has successfully progressed.'
        # Scale up and down.
        cluster.kubectl("scale", "deploy", "web", "-n", NS, "--replicas=5")
        wait_for("5 pods", lambda: len(live(pods(cluster, "web"))) == 5)
        cluster.kubectl("scale", "deploy", "web", "-n", NS, "--replicas=2")
        wait_for("2 pods", lambda: len(live(pods(cluster, "web"))) == 2)
        [rs] = replica_sets(cluster, "web")
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "2"
        rollout_status(cluster, "web")
        # A deleted pod is replaced.
        victim = live(pods(cluster, "web"))[0]["metadata"]["name"]
        cluster.kubectl("delete", "pod", victim, "-n", NS, "--wait=false")
        wait_for("a replacement", lambda: (p := live(pods(cluster, "web"))) and len(p) == 2 and
                 victim not in {x["metadata"]["name"] for x in p})
        out = cluster.kubectl("get", "deploy", "web", "-n", NS).stdout.splitlines()
        assert out[1].split()[:2] == ["web", "2/2"] or "web" in out[1]
        out = cluster.kubectl("describe", "deploy", "web", "-n", NS).stdout
        assert f"Scaled up replica set web-{h} from 0 to 3" in out
        assert f"Scaled up replica set web-{h} from 3 to 5" in out
        assert f"Scaled down replica set web-{h} from 5 to 2" in out
        assert "ScalingReplicaSet" in out and "deployment-controller" in out
        assert f"NewReplicaSet:   web-{h} (2/2 replicas created)" in out


class Observer:
    """Polls the pods and ReplicaSets of one app and records the worst moments."""

    def __init__(self, c: ServerProcess, app: str) -> None:
        self.c, self.app = c, app
        self.max_pods = 0
        self.min_ready = 10**9
        self.max_rs_replicas = 0
        self.samples = 0
        self.both_at_once = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Observer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            ps = live(pods(self.c, self.app))
            rss = replica_sets(self.c, self.app)
            self.samples += 1
            self.max_pods = max(self.max_pods, len(ps))
            self.min_ready = min(self.min_ready, sum(1 for p in ps if is_ready(p)))
            self.max_rs_replicas = max(self.max_rs_replicas,
                                       sum(r["spec"]["replicas"] for r in rss))
            hashes = {p["metadata"]["labels"].get(HASH) for p in ps}
            if len(hashes) > 1:
                self.both_at_once = True
            time.sleep(0.01)


def test_rolling_update_within_surge_and_unavailable_then_undo(cluster: ServerProcess) -> None:
    strategy = ("  strategy:\n    type: RollingUpdate\n"
                "    rollingUpdate: {maxSurge: 2, maxUnavailable: 1}\n")
    cluster.kubectl("apply", "-f", "-", input=deployment_yaml("roll", 8, strategy=strategy))
    with FakeKubelet(cluster, NS, ready_delay=0.15,
                     accept=lambda p: p["metadata"]["labels"]["app"] == "roll"):
        rollout_status(cluster, "roll")
        with Observer(cluster, "roll") as obs:
            cluster.kubectl("set", "image", "deploy/roll", "-n", NS, "web=nginx:1.26")
            out = rollout_status(cluster, "roll")
        assert 'deployment "roll" successfully rolled out' in out
        assert obs.samples > 5
        assert obs.both_at_once  # it was rolling, not recreating
        assert obs.max_rs_replicas <= 8 + 2, obs.max_rs_replicas
        assert obs.max_pods <= 8 + 2, obs.max_pods
        assert obs.min_ready >= 8 - 1, obs.min_ready
        rss = replica_sets(cluster, "roll")
        assert sorted((image_of(r), r["spec"]["replicas"]) for r in rss) == \
            [("nginx:1.25", 0), ("nginx:1.26", 8)]
        assert all(image_of(p) == "nginx:1.26" for p in live(pods(cluster, "roll")))
        history = cluster.kubectl("rollout", "history", "deploy/roll", "-n", NS).stdout
        assert [ln.split()[0] for ln in history.splitlines()[2:] if ln.strip()] == ["1", "2"]
        detail = cluster.kubectl("rollout", "history", "deploy/roll", "-n", NS,
                                 "--revision=1").stdout
        assert "nginx:1.25" in detail
        # Undo: back to A, which becomes revision 3.
        out = cluster.kubectl("rollout", "undo", "deploy/roll", "-n", NS).stdout
        assert "rolled back" in out
        with Observer(cluster, "roll") as obs:
            rollout_status(cluster, "roll")
        assert obs.max_pods <= 10 and obs.min_ready >= 7, (obs.max_pods, obs.min_ready)
        assert image_of(deployment(cluster, "roll")) == "nginx:1.25"
        assert all(image_of(p) == "nginx:1.25" for p in live(pods(cluster, "roll")))
        history = cluster.kubectl("rollout", "history", "deploy/roll", "-n", NS).stdout
        assert [ln.split()[0] for ln in history.splitlines()[2:] if ln.strip()] == ["2", "3"]
        [back] = [r for r in replica_sets(cluster, "roll") if image_of(r) == "nginx:1.25"]
        ann = back["metadata"]["annotations"]
        assert ann["deployment.kubernetes.io/revision"] == "3"
        assert ann["deployment.kubernetes.io/revision-history"] == "1"
        d = deployment(cluster, "roll")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        # Undo to an explicit revision.
        cluster.kubectl("rollout", "undo", "deploy/roll", "-n", NS, "--to-revision=2")
        rollout_status(cluster, "roll")
        assert image_of(deployment(cluster, "roll")) == "nginx:1.26"


def test_restart_pause_and_resume(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=deployment_yaml("pr", 2))
    with FakeKubelet(cluster, NS, accept=lambda p: p["metadata"]["labels"]["app"] == "pr"):
        rollout_status(cluster, "pr")
        before = {p["metadata"]["name"] for p in live(pods(cluster, "pr"))}
        cluster.kubectl("rollout", "restart", "deploy/pr", "-n", NS)
        rollout_status(cluster, "pr")
        after = live(pods(cluster, "pr"))
        assert len(after) == 2 and not before & {p["metadata"]["name"] for p in after}
        assert all("kubectl.kubernetes.io/restartedAt" in p["metadata"]["annotations"]
                   for p in after)
        assert len(replica_sets(cluster, "pr")) == 2
        # Paused: a template change makes no new ReplicaSet.
        cluster.kubectl("rollout", "pause", "deploy/pr", "-n", NS)
        wait_for("the paused condition", lambda: condition(
            deployment(cluster, "pr"), "Progressing").get("reason") == "DeploymentPaused")
        cluster.kubectl("set", "image", "deploy/pr", "-n", NS, "web=nginx:1.27")
        time.sleep(1.0)
        assert len(replica_sets(cluster, "pr")) == 2
        assert all(image_of(p) == "nginx:1.25" for p in live(pods(cluster, "pr")))
        d = deployment(cluster, "pr")
        assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
        # ... but scaling still works while paused.
        cluster.kubectl("scale", "deploy", "pr", "-n", NS, "--replicas=3")
        wait_for("3 pods", lambda: len(live(pods(cluster, "pr"))) == 3)
        cluster.kubectl("rollout", "resume", "deploy/pr", "-n", NS)
        rollout_status(cluster, "pr")
        ps = live(pods(cluster, "pr"))
        assert len(ps) == 3 and all(image_of(p) == "nginx:1.27" for p in ps)
        assert condition(deployment(cluster, "pr"), "Progressing")["reason"] == \
            "NewReplicaSetAvailable"


def test_recreate_never_mixes_versions(cluster: ServerProcess) -> None:
    strategy = "  strategy: {type: Recreate}\n"
    cluster.kubectl("apply", "-f", "-", input=deployment_yaml("rec", 3, strategy=strategy))
    with FakeKubelet(cluster, NS, ready_delay=0.1,
                     accept=lambda p: p["metadata"]["labels"]["app"] == "rec"):
        rollout_status(cluster, "rec")
        with Observer(cluster, "rec") as obs:
            cluster.kubectl("set", "image", "deploy/rec", "-n", NS, "web=nginx:1.26")
            rollout_status(cluster, "rec")
        assert not obs.both_at_once
        assert obs.max_pods <= 3
        ps = live(pods(cluster, "rec"))
        assert len(ps) == 3 and all(image_of(p) == "nginx:1.26" for p in ps)
        out = cluster.kubectl("describe", "deploy", "rec", "-n", NS).stdout
        assert [ln.split() for ln in out.splitlines() if ln.startswith("StrategyType:")] == \
            [["StrategyType:", "Recreate"]]
        assert "Scaled down replica set rec-" in out and "from 3 to 0" in out


def test_revision_history_limit(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=deployment_yaml(
        "hist", 1, extra_spec="  revisionHistoryLimit: 1\n"))
    with FakeKubelet(cluster, NS, accept=lambda p: p["metadata"]["labels"]["app"] == "hist"):
        rollout_status(cluster, "hist")
        for tag in ("1.26", "1.27", "1.28"):
            cluster.kubectl("set", "image", "deploy/hist", "-n", NS, f"web=nginx:{tag}")
            rollout_status(cluster, "hist")
        wait_for("old ReplicaSets cleaned up", lambda: len(replica_sets(cluster, "hist")) == 2)
        revs = sorted(int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
                      for r in replica_sets(cluster, "hist"))
        assert revs == [3, 4]


def test_progress_deadline_exceeded(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=deployment_yaml(
        "stuck", 2, extra_spec="  progressDeadlineSeconds: 2\n"))
    # No kubelet runs these pods: the rollout never progresses.
    d = wait_for("ProgressDeadlineExceeded", lambda: (x := deployment(cluster, "stuck")) and
                 condition(x, "Progressing").get("reason") == "ProgressDeadlineExceeded" and x,
                 timeout=12)
    prog = condition(d, "Progressing")
    assert prog["status"] == "False"
    assert prog["message"].startswith('ReplicaSet "stuck-') and \
        prog["message"].endswith('" has timed out progressing.')
    assert condition(d, "Available")["reason"] == "MinimumReplicasUnavailable"
    p = cluster.kubectl("rollout", "status", "deploy/stuck", "-n", NS, "--timeout=10s",
                        check=False)
    assert p.returncode != 0 and "exceeded its progress deadline" in p.stderr


def test_deleting_the_deployment_collects_everything(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=deployment_yaml("gone", 2))
    wait_for("2 pods", lambda: len(live(pods(cluster, "gone"))) == 2)
    cluster.kubectl("delete", "deploy", "gone", "-n", NS)
    wait_for("ReplicaSets and pods collected",
             lambda: not replica_sets(cluster, "gone") and not pods(cluster, "gone"))

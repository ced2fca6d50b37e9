"""Persistent volumes end to end, k3s-style: `pyk8s up` (its persistentvolume-binder with the
built-in local-path provisioner, the DefaultStorageClass admission plugin) and one
`pyk8s agent --runtime process` (root: volumes are bind-mounted in a private mount
namespace). A claim without a class gets `local-path`, is provisioned and bound; data a
pod writes outlives it; deleting the claim deletes the volume and its directory; a
StatefulSet with a volumeClaimTemplate starts in order and a recreated pod gets its old
claim back."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyk8s.kubelet import crilog
from tests.conftest import ServerProcess, needs_root, wait_for
from tests.e2e.test_agent import AgentProcess, process_node

NODE = "pv-1"
MOUNT = "/tmp/pyk8s-e2e-pv/data"      # /tmp exists, /tmp/pyk8s-e2e-pv does not

pytestmark = needs_root

Cluster = tuple[ServerProcess, AgentProcess, Path]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    d = tmp_path_factory.mktemp("pyk8s-pv")
    storage = d / "storage"          # `pyk8s up` provisions under <data-dir>/storage
    try:
        with process_node(d, NODE, "--container-restart-backoff", "1",
                          "--kubelet-port", "0") as (up, agent):
            wait_for("default StorageClass", lambda: up.kubectl(
                "get", "storageclass", "local-path", check=False).returncode == 0, timeout=20)
            yield up, agent, storage
    finally:
        with open("/proc/self/mountinfo") as f:
            left = [line for line in f if str(d) in line or "pyk8s-e2e-pv" in line]
        assert not left, left
        assert not Path("/tmp/pyk8s-e2e-pv").exists()


def apply(up: ServerProcess, obj: Any) -> None:
    up.kubectl("apply", "-f", "-", input=json.dumps(obj))


def container(script: str) -> Any:
    return {"name": "main", "image": "busybox", "command": ["sh", "-c", script],
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.name"}}}],
            "volumeMounts": [{"name": "data", "mountPath": MOUNT}]}


def pod(name: str, claim: str, script: str) -> Any:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [container(script)],
                     "volumes": [{"name": "data",
                                  "persistentVolumeClaim": {"claimName": claim}}]}}


def log_of(up: ServerProcess, agent: AgentProcess, name: str) -> str:
    p = up.kubectl_json("get", "pod", name)
    f = agent.log_path.parent / "agent" / "pods" / p["metadata"]["uid"] / "main" / "0.log"
    return crilog.read_output(f) if f.exists() else ""


def phase(up: ServerProcess, kind: str, name: str) -> str:
    obj = up.kubectl_json("get", kind, name)
    return str((obj.get("status") or {}).get("phase") or "")


def ready_since(pod: Any) -> str | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return str(c.get("lastTransitionTime"))
    return None


def test_claim_provisioned_data_kept_and_deleted(cluster: Cluster) -> None:
    up, agent, storage = cluster
    apply(up, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "64Mi"}}}})
    claim = up.kubectl_json("get", "pvc", "data")
    assert claim["spec"]["storageClassName"] == "local-path"      # admission
    wait_for("claim Bound", lambda: phase(up, "pvc", "data") == "Bound", timeout=20)
    claim = up.kubectl_json("get", "pvc", "data")
    uid = claim["metadata"]["uid"]
    pv_name = claim["spec"]["volumeName"]
    assert pv_name == f"pvc-{uid}"
    pv = up.kubectl_json("get", "pv", pv_name)
    host = Path(pv["spec"]["hostPath"]["path"])
    assert host.name == f"pvc-{uid}_default_data"
    assert pv["status"]["phase"] == "Bound"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert claim["status"]["capacity"] == {"storage": "64Mi"}

    apply(up, pod("writer", "data", f"echo hello-from-$POD_NAME > {MOUNT}/greeting; "
                  f"echo wrote"))
    wait_for("writer done", lambda: phase(up, "pod", "writer") == "Succeeded", timeout=30)
    assert (host / "greeting").read_text() == "hello-from-writer\n"
    up.kubectl("delete", "pod", "writer", "--wait=true")
    apply(up, pod("reader", "data", f"echo got=$(cat {MOUNT}/greeting)"))
    wait_for("reader done", lambda: phase(up, "pod", "reader") == "Succeeded", timeout=30)
    assert log_of(up, agent, "reader").strip() == "got=hello-from-writer"
    up.kubectl("delete", "pod", "reader", "--wait=true")

    up.kubectl("delete", "pvc", "data", "--wait=true")
    wait_for("PV deleted", lambda: up.kubectl("get", "pv", pv_name,
                                              check=False).returncode != 0, timeout=20)
    assert not host.exists()
    assert host.parent == storage


def test_statefulset_with_claim_templates(cluster: Cluster) -> None:
    up, agent, _ = cluster
    script = (f"[ -f {MOUNT}/first ] || echo $POD_NAME > {MOUNT}/first; "
              f"echo start >> {MOUNT}/starts; echo first=$(cat {MOUNT}/first) "
              f"starts=$(wc -l < {MOUNT}/starts); exec sleep 3600")
    apply(up, {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
               "spec": {"replicas": 3, "serviceName": "web",
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"terminationGracePeriodSeconds": 1,
                                              # mounts the claim template "data"
                                              "containers": [container(script)]}},
                        "volumeClaimTemplates": [{
                            "metadata": {"name": "data"},
                            "spec": {"accessModes": ["ReadWriteOnce"],
                                     "resources": {"requests": {"storage": "16Mi"}}}}]}})

    def all_ready() -> bool:
        sts = up.kubectl_json("get", "statefulset", "web")
        return int((sts.get("status") or {}).get("readyReplicas") or 0) == 3
    wait_for("3 replicas Ready", all_ready, timeout=90)
    pods = {p["metadata"]["name"]: p for p in up.kubectl_json(
        "get", "pods", "-l", "app=web")["items"]}
    assert sorted(pods) == ["web-0", "web-1", "web-2"]
    for k in (0, 1):      # OrderedReady: pod k+1 created once pod k is Ready
        ready = ready_since(pods[f"web-{k}"])
        assert ready is not None
        assert pods[f"web-{k + 1}"]["metadata"]["creationTimestamp"] >= ready
    for name, p in pods.items():
        (vol,) = [v for v in p["spec"]["volumes"] if v["name"] == "data"]
        claim = vol["persistentVolumeClaim"]["claimName"]
        assert claim == f"data-{name}"
        pvc = up.kubectl_json("get", "pvc", claim)
        assert pvc["status"]["phase"] == "Bound"
        assert pvc["spec"]["storageClassName"] == "local-path"
        wait_for(f"{name}'s first log line", lambda n=name: log_of(up, agent, n).strip()
                 == f"first={n} starts=1", timeout=20)
    old_uid = pods["web-1"]["metadata"]["uid"]
    old_volume = up.kubectl_json("get", "pvc", "data-web-1")["spec"]["volumeName"]
    up.kubectl("delete", "pod", "web-1", "--wait=true")

    def recreated() -> bool:
        r = up.kubectl("get", "pod", "web-1", "-o", "json", check=False)
        p = json.loads(r.stdout) if r.returncode == 0 else {}
        return bool(p) and p["metadata"]["uid"] != old_uid and ready_since(p) is not None
    wait_for("web-1 recreated and Ready", recreated, timeout=60)
    assert up.kubectl_json("get", "pvc", "data-web-1")["spec"]["volumeName"] == old_volume
    wait_for("web-1 saw its old data", lambda: log_of(up, agent, "web-1").strip() ==
             "first=web-1 starts=2", timeout=20)
    up.kubectl("delete", "statefulset", "web", "--wait=true")
    wait_for("pods gone", lambda: not up.kubectl_json(
        "get", "pods", "-l", "app=web")["items"], timeout=30)


def test_pod_with_a_missing_claim_waits_unscheduled(cluster: Cluster) -> None:
    """The scheduler's VolumeBinding keeps it Pending (as upstream) instead of binding it
    to a node where the mount could only fail; the claim appearing schedules it."""
    up, _, _ = cluster
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waits"},
               "spec": {"terminationGracePeriodSeconds": 1,
                        "containers": [container("echo ok; exec sleep 3600")],
                        "volumes": [{"name": "data",
                                     "persistentVolumeClaim": {"claimName": "later"}}]}})

    def unschedulable() -> str | None:
        conds = (up.kubectl_json("get", "pod", "waits").get("status") or {}).get(
            "conditions") or []
        c = next((c for c in conds if c["type"] == "PodScheduled"), None)
        return c["message"] if c and c["status"] == "False" else None
    msg = wait_for("PodScheduled=False", unschedulable, timeout=20)
    assert 'persistentvolumeclaim "later" not found' in msg
    assert not up.kubectl_json("get", "pod", "waits")["spec"].get("nodeName")
    apply(up, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "later"},
               "spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Mi"}}}})
    wait_for("scheduled once the claim is bound", lambda: up.kubectl_json(
        "get", "pod", "waits")["spec"].get("nodeName"), timeout=30)
    up.kubectl("delete", "pod", "waits", "--wait=true")
    up.kubectl("delete", "pvc", "later", "--wait=true")

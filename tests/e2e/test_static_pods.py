"""`pyk8s agent --pod-manifest-path`: static pods run by the kubelet itself and shown in the
API as mirror pods; node-side admission (a pod that does not fit is rejected); kubelet
events (Created / Started / ...)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, wait_for
from tests.e2e.test_agent import AgentProcess, process_node
from tests.e2e.test_process_runtime import pid_alive

NODE = "static-1"
MIRROR = f"web-{NODE}"


def manifest(pid_file: Path, arg: str = "300") -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {{app: web}}\n"
            f"spec:\n  containers:\n  - name: main\n    image: busybox\n"
            f"    command: [sh, -c, 'echo $$$$ > {pid_file}; exec sleep {arg}']\n")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess,
                                                                          AgentProcess, Path]]:
    d = tmp_path_factory.mktemp("pyk8s-static")
    manifests = d / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(manifest(d / "web.pid"))
    with process_node(d, NODE, "--fake-cpu", "1", "--pod-manifest-path", str(manifests),
                      "--file-check-frequency", "1") as (up, agent):
        yield up, agent, d


def get(up: ServerProcess, name: str) -> Any:
    p = up.kubectl("get", "pod", name, "-o", "json", check=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


def running_mirror(up: ServerProcess, not_uid: str = "", not_hash: str = "") -> Any:
    def check() -> Any:
        p = get(up, MIRROR)
        if p is None or p["metadata"].get("deletionTimestamp"):
            return None
        ann = p["metadata"].get("annotations") or {}
        if p["metadata"]["uid"] == not_uid or ann.get("kubernetes.io/config.hash") == not_hash:
            return None
        return p if (p.get("status") or {}).get("phase") == "Running" else None
    return wait_for(f"mirror pod {MIRROR} Running", check, timeout=30)


def read_pid(path: Path, not_pid: int = 0) -> int:
    def check() -> int:
        try:
            pid = int(path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0
        return pid if pid != not_pid and pid_alive(pid) else 0
    return wait_for(f"pid in {path}", check, timeout=20)


def test_static_pod_and_mirror(cluster: tuple[ServerProcess, AgentProcess, Path]) -> None:
    up, agent, d = cluster
    p = running_mirror(up)
    md = p["metadata"]
    ann = md["annotations"]
    assert md["namespace"] == "default" and p["spec"]["nodeName"] == NODE
    assert ann["kubernetes.io/config.mirror"] == ann["kubernetes.io/config.hash"]
    assert ann["kubernetes.io/config.source"] == "file" and ann["kubernetes.io/config.seen"]
    assert md["uid"] != ann["kubernetes.io/config.hash"]    # the API's uid, not the hash
    (owner,) = md["ownerReferences"]
    node = up.kubectl_json("get", "node", NODE)
    assert owner == {"apiVersion": "v1", "kind": "Node", "name": NODE,
                     "uid": node["metadata"]["uid"], "controller": True}
    assert not p["spec"].get("serviceAccountName")          # mirror pods get none
    (cs,) = p["status"]["containerStatuses"]
    assert cs["ready"] and cs["state"].get("running"), p["status"]
    pid = read_pid(d / "web.pid")
    # Deleting the mirror pod does not stop the static pod: the kubelet recreates the mirror.
    up.kubectl("delete", "pod", MIRROR, "--wait=false")
    p2 = running_mirror(up, not_uid=md["uid"])
    assert p2["metadata"]["annotations"]["kubernetes.io/config.mirror"] == \
        ann["kubernetes.io/config.hash"]
    assert pid_alive(pid) and int((d / "web.pid").read_text()) == pid


def test_changed_manifest_replaces_pod(cluster: tuple[ServerProcess, AgentProcess, Path]
                                       ) -> None:
    up, agent, d = cluster
    old = running_mirror(up)
    old_hash = old["metadata"]["annotations"]["kubernetes.io/config.hash"]
    old_pid = read_pid(d / "web.pid")
    (d / "manifests" / "web.yaml").write_text(manifest(d / "web.pid", "301"))
    new = running_mirror(up, not_hash=old_hash)
    assert new["spec"]["containers"][0]["command"][-1].endswith("sleep 301")
    new_pid = read_pid(d / "web.pid", not_pid=old_pid)
    wait_for("old process gone", lambda: not pid_alive(old_pid), timeout=15)
    assert pid_alive(new_pid)


def test_removed_manifest_stops_pod(cluster: tuple[ServerProcess, AgentProcess, Path]) -> None:
    up, agent, d = cluster
    running_mirror(up)
    pid = read_pid(d / "web.pid")
    (d / "manifests" / "web.yaml").unlink()
    wait_for("mirror pod deleted", lambda: get(up, MIRROR) is None, timeout=20)
    wait_for("static pod process gone", lambda: not pid_alive(pid), timeout=15)


def test_mirror_pod_validation(cluster: tuple[ServerProcess, AgentProcess, Path]) -> None:
    up, _, _ = cluster
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "fake-mirror",
                         "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"nodeName": "nowhere", "containers": [
                {"name": "c", "image": "x", "env": [{"name": "A", "valueFrom": {
                    "secretKeyRef": {"name": "s", "key": "k"}}}]}]}}
    p = up.kubectl("create", "-f", "-", input=json.dumps(body), check=False)
    assert p.returncode != 0 and "a mirror pod may not reference secrets" in p.stderr, p


def test_pod_rejected_out_of_cpu(cluster: tuple[ServerProcess, AgentProcess, Path]) -> None:
    up, _, d = cluster
    marker = d / "never-started"
    up.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
        "spec": {"nodeName": NODE, "containers": [{
            "name": "main", "image": "busybox", "command": ["touch", str(marker)],
            "resources": {"requests": {"cpu": "4"}}}]}}))

    def failed() -> Any:
        p = get(up, "big")
        return p if (p or {}).get("status", {}).get("phase") == "Failed" else None
    p = wait_for("pod big Failed", failed, timeout=30)
    assert p["status"]["reason"] == "OutOfcpu"
    assert p["status"]["message"] == ("Pod was rejected: Node didn't have enough resource: "
                                      "cpu, requested: 4000, used: 0, capacity: 1000")
    assert not p["status"].get("containerStatuses")
    time.sleep(0.5)
    assert not marker.exists()
    ev = wait_for("OutOfcpu event", lambda: [
        e for e in up.kubectl_json("get", "events", "--field-selector",
                                   "involvedObject.name=big")["items"]
        if e["reason"] == "OutOfcpu"], timeout=15)
    assert ev[0]["type"] == "Warning" and ev[0]["source"] == {"component": "kubelet",
                                                              "host": NODE}


def test_container_events(cluster: tuple[ServerProcess, AgentProcess, Path]) -> None:
    up, _, _ = cluster
    up.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evt"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 5, "containers": [{
            "name": "main", "image": "busybox", "command": ["sleep", "300"]}]}}))

    def reasons() -> Any:
        evs = up.kubectl_json("get", "events", "--field-selector",
                              "involvedObject.name=evt")["items"]
        got = {e["reason"]: e for e in evs}
        return got if {"Pulled", "Created", "Started"} <= set(got) else None
    got = wait_for("kubelet events", reasons, timeout=30)
    assert got["Created"]["message"] == "Created container main"
    assert got["Started"]["message"] == "Started container main"
    assert got["Pulled"]["message"] == 'Container image "busybox" already present on machine'
    assert got["Started"]["involvedObject"]["fieldPath"] == "spec.containers{main}"
    assert got["Started"]["source"] == {"component": "kubelet", "host": NODE}
    out = up.kubectl("describe", "pod", "evt").stdout
    assert "Started container main" in out and "kubelet" in out, out
    up.kubectl("delete", "pod", "evt", "--wait=false")

    def killing() -> Any:
        evs = up.kubectl_json("get", "events", "--field-selector",
                              "involvedObject.name=evt")["items"]
        return [e for e in evs if e["reason"] == "Killing"]
    (k,) = wait_for("Killing event", killing, timeout=30)
    assert k["message"] == "Stopping container main"
    node_events = up.kubectl_json("get", "events", "--field-selector",
                                  f"involvedObject.name={NODE}")["items"]
    assert {"Starting", "NodeHasSufficientMemory"} <= {e["reason"] for e in node_events}

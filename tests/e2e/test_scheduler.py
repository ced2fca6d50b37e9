"""The scheduler against a real API server: `pyk8s server` and a `pyk8s scheduler` process
(leader-elected), with fake Node objects. Tests share the cluster: each one labels its
nodes `suite=<test>` and selects them with a nodeSelector."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import ROOT, ServerProcess

Obj = dict[str, Any]
NS = "default"


class Cluster:
    def __init__(self, server: ServerProcess, sched: subprocess.Popen[bytes], log: Path) -> None:
        self.server = server
        self.sched = sched
        self.log = log


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("sched")
    srv = ServerProcess(d).start()
    log_path = d / "scheduler.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyk8s.cli.main", "scheduler", "--kubeconfig",
         str(srv.kubeconfig), "--leader-elect-retry-period", "0.5s"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while "caches synced" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        srv.stop()


def make_node(srv: ServerProcess, name: str, suite: str, cpu: str = "4", memory: str = "32Gi",
              labels: dict | None = None, taints: list | None = None) -> None:
    alloc = {"cpu": cpu, "memory": memory, "pods": "110"}
    r = srv.post("/api/v1/nodes", {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "suite": suite,
                                              **(labels or {})}},
        "spec": {"taints": taints or []},
        "status": {"capacity": alloc, "allocatable": alloc,
                   "conditions": [{"type": "Ready", "status": "True"}]}})
    assert r.status == 201, r
    # Node status may be dropped on create: set it through nodes/status as a kubelet does.
    got = srv.get(f"/api/v1/nodes/{name}").json()
    if (got.get("status") or {}).get("allocatable") != alloc:
        r = srv.patch(f"/api/v1/nodes/{name}/status",
                      {"status": {"capacity": alloc, "allocatable": alloc}},
                      "application/merge-patch+json")
        assert r.status == 200, r


def make_pod(srv: ServerProcess, name: str, suite: str, cpu: str = "100m", memory: str = "64Mi",
             labels: dict | None = None, **spec: Any) -> None:
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"nodeSelector": {"suite": suite},
                     "containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
                     **spec}}
    r = srv.post(f"/api/v1/namespaces/{NS}/pods", body)
    assert r.status == 201, r


def get_pod(srv: ServerProcess, name: str) -> Obj:
    return srv.get(f"/api/v1/namespaces/{NS}/pods/{name}").json()


def wait(cond: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def node_of(srv: ServerProcess, name: str, timeout: float = 15.0) -> str:
    return wait(lambda: get_pod(srv, name)["spec"].get("nodeName"), timeout, f"{name} bound")


def unschedulable_message(srv: ServerProcess, name: str) -> str:
    def cond() -> str:
        for c in get_pod(srv, name).get("status", {}).get("conditions") or []:
            if c["type"] == "PodScheduled" and c["status"] == "False":
                return c.get("message") or "?"
        return ""
    return wait(cond, what=f"{name} unschedulable")


def events_for(srv: ServerProcess, name: str, reason: str) -> list[Obj]:
    items = srv.get(f"/api/v1/namespaces/{NS}/events").json()["items"]
    return [e for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason]


def test_resource_fit_and_failed_scheduling(cluster: ServerProcess) -> None:
    make_node(cluster, "fit-small", "fit", cpu="1")
    make_node(cluster, "fit-big", "fit", cpu="4")
    make_pod(cluster, "fit-2cpu", "fit", cpu="2")
    assert node_of(cluster, "fit-2cpu") == "fit-big"
    p = get_pod(cluster, "fit-2cpu")
    assert any(c["type"] == "PodScheduled" and c["status"] == "True"
               for c in p["status"]["conditions"])
    make_pod(cluster, "fit-huge", "fit", cpu="8")
    msg = unschedulable_message(cluster, "fit-huge")
    assert msg.startswith("0/"), msg
    assert "2 Insufficient cpu" in msg, msg
    ev = wait(lambda: events_for(cluster, "fit-huge", "FailedScheduling"), what="event")
    assert "2 Insufficient cpu" in ev[0]["message"]
    assert ev[0]["type"] == "Warning"
    wait(lambda: events_for(cluster, "fit-2cpu", "Scheduled"), what="Scheduled event")
    # A pod for another scheduler is left alone.
    make_pod(cluster, "fit-other", "fit", schedulerName="other-scheduler")
    time.sleep(0.5)
    p = get_pod(cluster, "fit-other")
    assert not p["spec"].get("nodeName") and not p.get("status", {}).get("conditions"), p


def test_pending_pod_scheduled_when_node_added(cluster: ServerProcess) -> None:
    make_node(cluster, "late-elsewhere", "late-other")  # a node that does not fit
    make_pod(cluster, "late", "late", cpu="1")
    msg = unschedulable_message(cluster, "late")
    assert "node affinity/selector" in msg, msg
    make_node(cluster, "late-node", "late")
    assert node_of(cluster, "late", timeout=20) == "late-node"


def test_taints_and_tolerations(cluster: ServerProcess) -> None:
    make_node(cluster, "taint-gpu", "taint",
              taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    make_node(cluster, "taint-soft", "taint",
              taints=[{"key": "slow", "effect": "PreferNoSchedule"}])
    make_node(cluster, "taint-plain", "taint")
    for i in range(3):
        make_pod(cluster, f"taint-p{i}", "taint")
    for i in range(3):
        assert node_of(cluster, f"taint-p{i}") != "taint-gpu"
    make_pod(cluster, "taint-tol", "taint", nodeSelector={"suite": "taint",
                                                         "kubernetes.io/hostname": "taint-gpu"},
             tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu",
                           "effect": "NoSchedule"}])
    assert node_of(cluster, "taint-tol") == "taint-gpu"
    make_pod(cluster, "taint-no", "taint", nodeSelector={"suite": "taint",
                                                        "kubernetes.io/hostname": "taint-gpu"})
    msg = unschedulable_message(cluster, "taint-no")
    assert "1 node(s) had untolerated taint {dedicated: gpu}" in msg, msg


def test_node_affinity(cluster: ServerProcess) -> None:
    make_node(cluster, "na-ssd", "na", labels={"disk": "ssd"})
    make_node(cluster, "na-hdd", "na", labels={"disk": "hdd"})
    req = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}
    pref = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["hdd"]}]}}]}}
    for i in range(3):
        make_pod(cluster, f"na-req{i}", "na", affinity=req)
        make_pod(cluster, f"na-pref{i}", "na", affinity=pref)
    for i in range(3):
        assert node_of(cluster, f"na-req{i}") == "na-ssd"
        assert node_of(cluster, f"na-pref{i}") == "na-hdd"


def test_pod_affinity_and_anti_affinity(cluster: ServerProcess) -> None:
    for i in range(3):
        make_node(cluster, f"aa-{i}", "aa")
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "aa-web"}},
         "topologyKey": "kubernetes.io/hostname"}]}}
    for i in range(4):
        make_pod(cluster, f"aa-web{i}", "aa", labels={"app": "aa-web"}, affinity=anti)
    placed = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(placed) < 3:
        for i in range(4):
            n = get_pod(cluster, f"aa-web{i}")["spec"].get("nodeName")
            if n:
                placed[f"aa-web{i}"] = n
        time.sleep(0.05)
    assert len(placed) == 3 and len(set(placed.values())) == 3, placed
    pending = [f"aa-web{i}" for i in range(4) if f"aa-web{i}" not in placed]
    msg = unschedulable_message(cluster, pending[0])
    # The placed pods' own anti-affinity matches it (checked first, as upstream).
    assert "3 node(s) didn't satisfy existing pods anti-affinity rules" in msg, msg
    # Required affinity: follows a pod of the cache tier onto its node.
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "aa-web"}},
         "topologyKey": "kubernetes.io/hostname"}]}}
    make_pod(cluster, "aa-cache", "aa", affinity=aff, nodeSelector={
        "suite": "aa", "kubernetes.io/hostname": placed["aa-web0"]} if "aa-web0" in placed
        else {"suite": "aa"})
    assert node_of(cluster, "aa-cache") in set(placed.values())


def test_topology_spread(cluster: ServerProcess) -> None:
    for z in ("a", "b"):
        for i in range(2):
            make_node(cluster, f"ts-{z}{i}", "ts", labels={"zone": z})
    tsc = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "ts"}}}]
    for i in range(6):
        make_pod(cluster, f"ts-{i}", "ts", labels={"app": "ts"}, topologySpreadConstraints=tsc)
    zones = [node_of(cluster, f"ts-{i}")[3] for i in range(6)]
    assert zones.count("a") == 3 and zones.count("b") == 3, zones


def test_preemption(cluster: ServerProcess) -> None:
    r = cluster.post("/apis/scheduling.k8s.io/v1/priorityclasses", {
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "pe-high"}, "value": 1000})
    assert r.status == 201, r
    # The pod's preemptionPolicy comes from its class (the Priority admission plugin).
    r = cluster.post("/apis/scheduling.k8s.io/v1/priorityclasses", {
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "pe-high-never"}, "value": 1000, "preemptionPolicy": "Never"})
    assert r.status == 201, r
    make_node(cluster, "pe-node", "pe", cpu="1")
    make_pod(cluster, "pe-low", "pe", cpu="800m")
    assert node_of(cluster, "pe-low") == "pe-node"
    make_pod(cluster, "pe-never", "pe", cpu="800m", priorityClassName="pe-high-never")
    assert get_pod(cluster, "pe-never")["spec"]["preemptionPolicy"] == "Never"
    msg = unschedulable_message(cluster, "pe-never")
    assert "Insufficient cpu" in msg and "preemption: not eligible" in msg, msg
    make_pod(cluster, "pe-high", "pe", cpu="800m", priorityClassName="pe-high")
    # The victim is deleted gracefully; play the kubelet and finish the deletion.
    wait(lambda: get_pod(cluster, "pe-low")["metadata"].get("deletionTimestamp") or
         get_pod(cluster, "pe-low").get("code") == 404, what="victim deleted")
    cluster.delete(f"/api/v1/namespaces/{NS}/pods/pe-low", {"gracePeriodSeconds": 0})
    assert wait(lambda: get_pod(cluster, "pe-high").get("status", {}).get("nominatedNodeName")
                or get_pod(cluster, "pe-high")["spec"].get("nodeName"),
                what="nominated") == "pe-node"
    bound = node_of(cluster, "pe-high", timeout=20)
    assert bound == "pe-node"
    assert get_pod(cluster, "pe-never")["spec"].get("nodeName") is None


def test_up_runs_the_scheduler(tmp_path: Path) -> None:
    """`pyk8s up` runs the scheduler (leader-elected) next to the controllers."""
    srv = ServerProcess(tmp_path, command="up", ready_log="scheduler: caches synced").start()
    try:
        make_node(srv, "up-node", "up")
        make_pod(srv, "up-pod", "up")
        assert node_of(srv, "up-pod") == "up-node"
        lease = srv.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler")
        assert lease.status == 200 and lease.json()["spec"]["holderIdentity"].endswith("_pyk8s-up")
    finally:
        srv.stop()

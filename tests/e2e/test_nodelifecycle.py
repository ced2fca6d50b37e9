"""The node lifecycle controller in a real `pyk8s up` (grace period 3 s) with a real
`pyk8s agent --runtime fake` renewing its Lease every second: the live node stays healthy;
kill -9 of the agent → conditions Unknown, `node.kubernetes.io/unreachable` taints, the pod
marked not Ready and evicted after its 2 s toleration; a restarted agent → Ready again, the
taints gone, the Deployment running again."""
from __future__ import annotations

import json
import time
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, wait_for
from tests.e2e.test_agent import AgentProcess

NODE = "lifecycle-1"
UNREACHABLE = "node.kubernetes.io/unreachable"

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "tolerant", "namespace": "default"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "tolerant"}},
             "template": {"metadata": {"labels": {"app": "tolerant"}}, "spec": {
                 "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "c", "image": "nginx:1.27"}],
                 "tolerations": [{"key": UNREACHABLE, "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 2}]}}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Any]]:
    d = tmp_path_factory.mktemp("pyk8s-nodelifecycle")
    up = ServerProcess(d, command="up", ready_log="node lifecycle controller: synced", extra=[
        "--node-monitor-grace-period", "3s", "--node-monitor-period", "500ms",
        "--node-eviction-rate", "100"]).start(timeout=40)
    agents: list[AgentProcess] = []

    def start_agent() -> AgentProcess:
        a = AgentProcess(up, d, "--node-name", NODE, "--node-lease-renew-interval", "1",
                         "--node-status-update-frequency", "1").start()
        agents.append(a)
        return a
    try:
        yield up, start_agent
    finally:
        for a in agents:
            a.stop()
        up.stop()


def _node(up: ServerProcess) -> dict[str, Any] | None:
    r = up.get(f"/api/v1/nodes/{NODE}")
    return r.json() if r.status == 200 else None


def _cond(node: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in node["status"]["conditions"] if c["type"] == ctype)


def _taints(node: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node.get("spec", {}).get("taints") or []}


def _pods(up: ServerProcess) -> list[dict[str, Any]]:
    return up.get("/api/v1/namespaces/default/pods?labelSelector=app%3Dtolerant").json()["items"]


def test_unreachable_node_is_tainted_its_pods_evicted_and_recovers(
        cluster: tuple[ServerProcess, Any]) -> None:
    up, start_agent = cluster
    agent = start_agent()

    def ready() -> bool:
        assert agent.proc is not None and agent.proc.poll() is None, agent.log()
        n = _node(up)
        return bool(n and n.get("status", {}).get("conditions")
                    and _cond(n, "Ready")["status"] == "True" and not _taints(n))
    wait_for("node Ready without taints", ready, timeout=30)

    up.kubectl("apply", "-f", "-", input=json.dumps(DEPLOYMENT))
    up.kubectl("rollout", "status", "deployment/tolerant", "--timeout=60s", timeout=90)
    [pod] = _pods(up)
    assert pod["spec"]["nodeName"] == NODE
    # Past the grace period, the heartbeating node is still healthy (the Lease counts).
    time.sleep(4)
    n = _node(up)
    assert n is not None and _cond(n, "Ready")["status"] == "True" and not _taints(n)

    assert agent.proc is not None
    agent.proc.kill()                                     # SIGKILL, this pid only
    agent.proc.wait(10)
    killed = time.monotonic()

    def unreachable() -> dict[str, Any] | None:
        n = _node(up)
        return n if n and (UNREACHABLE, "NoExecute") in _taints(n) else None
    n = wait_for("unreachable taint", unreachable, timeout=20)
    assert time.monotonic() - killed < 15
    ready_cond = _cond(n, "Ready")
    assert ready_cond["status"] == "Unknown" and ready_cond["reason"] == "NodeStatusUnknown"
    assert ready_cond["message"] == "Kubelet stopped posting node status."
    assert {c["status"] for c in n["status"]["conditions"]
            if c["type"] in ("MemoryPressure", "DiskPressure", "PIDPressure")} == {"Unknown"}
    assert (UNREACHABLE, "NoSchedule") in _taints(n)

    name = pod["metadata"]["name"]

    def evicted() -> dict[str, Any] | None:
        r = up.get(f"/api/v1/namespaces/default/pods/{name}")
        if r.status == 404:
            return {"gone": True}
        p = r.json()
        return p if p["metadata"].get("deletionTimestamp") else None
    p = wait_for("toleration-limited eviction", evicted, timeout=20)
    if "status" in p:
        conds = {c["type"]: c for c in p["status"].get("conditions") or []}
        assert conds["Ready"]["status"] == "False"               # MarkPodsNotReady
        assert conds["DisruptionTarget"]["reason"] == "DeletionByTaintManager"
    events = up.get("/api/v1/namespaces/default/events").json()["items"]
    reasons = {(e["involvedObject"].get("name"), e["reason"]) for e in events}
    assert (name, "TaintManagerEviction") in reasons, reasons
    node_events = up.get("/api/v1/namespaces/default/events").json()["items"]
    assert any(e["involvedObject"].get("kind") == "Node" and e["reason"] == "NodeNotReady"
               for e in node_events), node_events

    # The agent comes back: Ready, the taints go, the evicted pod is finished and the
    # Deployment's replacement runs on the node.
    agent = start_agent()

    def recovered() -> bool:
        assert agent.proc is not None and agent.proc.poll() is None, agent.log()
        n = _node(up)
        return bool(n and _cond(n, "Ready")["status"] == "True" and not _taints(n))
    wait_for("node Ready again, taints removed", recovered, timeout=30)

    def replacement_running() -> bool:
        ps = _pods(up)
        return len(ps) == 1 and ps[0]["metadata"]["name"] != name and \
            ps[0].get("status", {}).get("phase") == "Running"
    wait_for("replacement pod running", replacement_running, timeout=40)

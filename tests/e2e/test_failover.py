"""Node failure with real `pyk8s agent --runtime process` nodes: kill -9 of agent A → its
node NotReady (Unknown) and tainted unreachable → the Deployment's pod evicted after its
toleration → the replacement Running on agent B."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, wait_for
from tests.e2e.test_agent import AgentProcess
from tests.e2e.test_local_node import kill_marked, marked_pids, node_ready, pods, running

UNREACHABLE = "node.kubernetes.io/unreachable"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Any]]:
    d = tmp_path_factory.mktemp("pyk8s-failover")
    up = ServerProcess(d, command="up", ready_log="node lifecycle controller: synced", extra=[
        "--node-monitor-grace-period", "3s", "--node-monitor-period", "500ms",
        "--node-eviction-rate", "100"]).start(timeout=40)
    agents: list[AgentProcess] = []

    def start_agent(name: str) -> AgentProcess:
        sub = d / name
        sub.mkdir()
        a = AgentProcess(up, sub, "--node-name", name, "--runtime", "process",
                         "--node-lease-renew-interval", "1",
                         "--node-status-update-frequency", "1").start()
        agents.append(a)
        return a
    try:
        yield up, start_agent
    finally:
        for a in agents:
            a.stop()
        up.stop()


def test_killed_agent_pods_recreated_on_second_agent(
        cluster: tuple[ServerProcess, Any]) -> None:
    up, start_agent = cluster
    marker = f"pyk8s-failover-{uuid.uuid4().hex[:8]}"
    try:
        a = start_agent("node-a")
        wait_for("node-a Ready", lambda: node_ready(up, "node-a"), timeout=30)
        up.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "failover", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "failover"}},
                     "template": {"metadata": {"labels": {"app": "failover"}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "c", "image": "busybox",
                                         "command": ["sh", "-c", f"sleep 3600; : {marker}"]}],
                         "tolerations": [{"key": UNREACHABLE, "operator": "Exists",
                                          "effect": "NoExecute",
                                          "tolerationSeconds": 2}]}}}}))
        [pod] = wait_for("pod Running on node-a", lambda: running(pods(up, "failover")),
                         timeout=30)
        assert pod["spec"]["nodeName"] == "node-a"
        wait_for("container process", lambda: marked_pids(marker), timeout=10)
        b = start_agent("node-b")
        wait_for("node-b Ready", lambda: node_ready(up, "node-b"), timeout=30)

        assert a.proc is not None
        a.proc.kill()                          # kill -9 of agent A (this pid only)
        a.proc.wait(10)
        killed = time.monotonic()

        def not_ready() -> bool:
            r = up.get("/api/v1/nodes/node-a").json()
            conds = {c["type"]: c for c in r["status"]["conditions"]}
            return conds["Ready"]["status"] == "Unknown"
        wait_for("node-a NotReady", not_ready, timeout=20)

        def replaced() -> list[dict[str, Any]] | None:
            assert b.proc is not None and b.proc.poll() is None, b.log()
            r = [p for p in running(pods(up, "failover")) if p["spec"]["nodeName"] == "node-b"]
            return r or None
        [new] = wait_for("replacement Running on node-b", replaced, timeout=40)
        assert new["metadata"]["name"] != pod["metadata"]["name"]
        assert time.monotonic() - killed < 40
        old = up.get(f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}")
        assert old.status == 404 or old.json()["metadata"].get("deletionTimestamp")
        # The replacement's process runs under agent B (A's orphan carries the same
        # command line: two of them now).
        wait_for("replacement process", lambda: len(marked_pids(marker)) >= 2, timeout=10)
    finally:
        kill_marked(marker)    # A's container outlives its kill -9; B's stops with B anyway

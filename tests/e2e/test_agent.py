"""`pyk8s agent --runtime fake` joined to a real `pyk8s up` with the node token: the Node
registers Ready, its Lease renews, a Deployment's pods run on it, graceful deletion
completes through the agent."""
from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT, ServerProcess, wait_for

NODE = "hollow-1"


class AgentProcess:
    def __init__(self, server: ServerProcess, data_dir: Path, *extra: str) -> None:
        self.log_path = data_dir / "agent.log"
        self.cmd = [sys.executable, "-m", "pyk8s.cli.main", "agent", "--server", server.url,
                    "--token-file", str(server.data_dir / "node-token"),
                    "--data-dir", str(data_dir / "agent"),
                    "--certificate-authority", str(server.data_dir / "tls" / "ca.crt"),
                    *extra]
        if "--node-ip" not in extra:   # the kubelet on loopback, not the host's address
            self.cmd += ["--node-ip", "127.0.0.1"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "AgentProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def log(self) -> str:
        return self.log_path.read_text()[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def process_node(d: Path, node: str, *agent_args: str
                 ) -> Iterator[tuple[ServerProcess, AgentProcess]]:
    """`pyk8s up` (no node of its own) and one `pyk8s agent --runtime process` named
    `node`, Ready; both stopped on exit."""
    up = ServerProcess(d, command="up", ready_log="deployment-controller: synced").start(
        timeout=40)
    agent = None
    try:
        agent = AgentProcess(up, d, "--node-name", node, "--runtime", "process",
                             *agent_args).start()
        wait_for("node Ready", lambda: " Ready " in up.kubectl(
            "get", "nodes", node, "--no-headers", check=False).stdout, timeout=30)
        yield up, agent
    finally:
        if agent is not None:
            agent.stop()
        up.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess,
                                                                          AgentProcess]]:
    d = tmp_path_factory.mktemp("pyk8s-agent")
    up = ServerProcess(d, command="up", ready_log="deployment-controller: synced").start(
        timeout=40)
    agent = None
    try:
        agent = AgentProcess(up, d, "--node-name", NODE, "--fake-cpu", "8",
                             "--fake-memory", "16Gi").start()
        yield up, agent
    finally:
        if agent is not None:
            agent.stop()
        up.stop()


def test_unknown_runtime(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "agent", "--server",
                        "https://127.0.0.1:1", "--token", "x", "--data-dir",
                        str(tmp_path), "--runtime", "docker"], capture_output=True, text=True,
                       cwd=ROOT, timeout=30)
    assert p.returncode != 0 and "unknown runtime 'docker'" in p.stderr, p.stderr


def test_node_registers_ready(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster

    def ready() -> bool:
        p = up.kubectl("get", "nodes", NODE, "--no-headers", check=False)
        assert agent.proc is not None and agent.proc.poll() is None, agent.log()
        return p.returncode == 0 and " Ready " in p.stdout
    wait_for("node Ready", ready, timeout=30)
    node = up.kubectl_json("get", "node", NODE)
    st = node["status"]
    assert st["capacity"]["cpu"] == "8" and st["capacity"]["memory"] == "16777216Ki"
    assert st["capacity"]["pods"] == "110"
    assert st["nodeInfo"]["kubeletVersion"] == "v1.32.0"
    assert st["nodeInfo"]["containerRuntimeVersion"] == "fake://0.1"
    assert {"type": "Hostname", "address": NODE} in st["addresses"]
    ready_cond = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready_cond["reason"] == "KubeletReady"
    # The node token is a bootstrap identity (CSRs only); the kubelet runs as
    # system:node:<name> with the client certificate it asked for; wrong tokens are 401.
    node_token = (up.data_dir / "node-token").read_text().strip()
    assert up.get("/api/v1/nodes", token=node_token).status == 403
    assert up.get("/apis/certificates.k8s.io/v1/certificatesigningrequests",
                  token=node_token).status == 200
    assert up.get("/api/v1/nodes", token="wrong").status == 401


def test_lease_renews(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}"
    first = wait_for("lease", lambda: (r := up.get(path)).status == 200 and r.json(),
                     timeout=30)
    assert first["spec"]["holderIdentity"] == NODE
    assert first["spec"]["leaseDurationSeconds"] == 40
    assert first["metadata"]["ownerReferences"][0]["kind"] == "Node"
    t0 = first["spec"]["renewTime"]
    wait_for("lease renewal", lambda: up.get(path).json()["spec"]["renewTime"] != t0,
             timeout=25)


def test_deployment_runs_and_pod_deletes(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster
    wait_for("node Ready", lambda: " Ready " in up.kubectl(
        "get", "nodes", NODE, "--no-headers", check=False).stdout, timeout=30)
    up.kubectl("create", "deployment", "web", "--image=nginx:1.27", "--replicas=3")
    up.kubectl("rollout", "status", "deployment/web", "--timeout=60s", timeout=90)
    pods = up.kubectl_json("get", "pods", "-l", "app=web")["items"]
    assert len(pods) == 3
    ips = set()
    for p in pods:
        assert p["spec"]["nodeName"] == NODE
        st = p["status"]
        assert st["phase"] == "Running" and st["hostIP"] == "127.0.0.1"
        assert st["podIP"].startswith("10.244.")
        ips.add(st["podIP"])
        conds = {c["type"]: c["status"] for c in st["conditions"]}
        assert conds["Ready"] == conds["ContainersReady"] == conds["Initialized"] == "True"
        (cs,) = st["containerStatuses"]
        assert cs["ready"] and cs["containerID"].startswith("fake://")
        assert "startedAt" in cs["state"]["running"]
    assert len(ips) == 3
    victim = pods[0]["metadata"]["name"]
    # Graceful deletion: the API server only sets deletionTimestamp; the agent finishes it.
    up.kubectl("delete", "pod", victim, "--timeout=30s", timeout=60)
    p = up.kubectl("get", "pod", victim, check=False)
    assert p.returncode != 0 and "NotFound" in p.stderr
    up.kubectl("rollout", "status", "deployment/web", "--timeout=60s", timeout=90)
    assert "deleted pod default/" + victim in agent.log_path.read_text()


def test_kill_agent(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster
    assert agent.proc is not None and agent.proc.poll() is None, agent.log()
    # Registered (its signal handlers are installed long before): SIGTERM stops it cleanly.
    wait_for("node registered", lambda: up.kubectl("get", "node", NODE, check=False)
             .returncode == 0, timeout=30)
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(15) == 0, agent.log()

"""`pyk8s up` with its own local node (k3s server's embedded agent), `--disable-agent`,
hollow nodes (`pyk8s agent --runtime fake --count N`) and the fake runtime's
`pyk8s.io/fake-exit-code` annotation."""
from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, wait_for
from tests.e2e.test_agent import AgentProcess


def marked_pids(marker: str) -> list[int]:
    """Live processes whose command line contains `marker` (zombies do not count)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if marker.encode() in cmd and stat[stat.rindex(")") + 2:].split()[0] != "Z":
            out.append(int(d.name))
    return out


def kill_marked(marker: str) -> None:
    """Kill the process groups of `marker`'s processes (containers left by a killed agent)."""
    for pid in marked_pids(marker):
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def node_ready(up: ServerProcess, name: str) -> bool:
    r = up.get(f"/api/v1/nodes/{name}")
    if r.status != 200:
        return False
    conds = r.json().get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def deployment(name: str, command: list[str], replicas: int = 1) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "c", "image": "busybox",
                                     "command": command}]}}}})


def pods(up: ServerProcess, app: str) -> list[dict[str, Any]]:
    return up.get(f"/api/v1/namespaces/default/pods?labelSelector=app%3D{app}").json()["items"]


def running(ps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in ps if p.get("status", {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


def test_up_runs_a_local_node(tmp_path: Path) -> None:
    """`pyk8s up` alone: its node registers Ready, a Deployment's pod runs on it as a host
    process, its static pod (--pod-manifest-path) shows as a mirror pod, and stopping `up`
    leaves no container process behind."""
    marker = f"pyk8s-local-{uuid.uuid4().hex[:8]}"
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "static.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n"
        f"  - {{name: main, image: busybox, command: [sh, -c, 'sleep 3600; : {marker}']}}\n")
    up = ServerProcess(tmp_path, command="up", ready_log="deployment-controller: synced",
                       local_node=True, extra=["--node-name", "local-1", "--runtime", "process",
                                               "--pod-manifest-path", str(manifests)])
    try:
        up.start(timeout=40)
        wait_for("local node Ready", lambda: node_ready(up, "local-1"), timeout=30)
        up.kubectl("apply", "-f", "-", input=deployment(
            "hello", ["sh", "-c", f"sleep 3600; : {marker}"]))
        [pod] = wait_for("pod Running", lambda: running(pods(up, "hello")), timeout=30)
        assert pod["spec"]["nodeName"] == "local-1"
        mirror = wait_for("mirror pod Running", lambda: (
            r := up.get("/api/v1/namespaces/default/pods/web-local-1")).status == 200
            and r.json().get("status", {}).get("phase") == "Running" and r.json(), timeout=30)
        assert "kubernetes.io/config.mirror" in mirror["metadata"]["annotations"]
        wait_for("container processes", lambda: len(marked_pids(marker)) >= 2, timeout=10)
        up.stop()
        assert marked_pids(marker) == []
    finally:
        up.stop()
        kill_marked(marker)


def test_up_runtime_oci_not_implemented(tmp_path: Path) -> None:
    import subprocess
    import sys
    from tests.conftest import ROOT
    p = subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "up", "--data-dir",
                        str(tmp_path), "--runtime", "oci"], capture_output=True, text=True,
                       cwd=ROOT, timeout=30)
    assert p.returncode != 0 and "not implemented yet" in p.stderr, p.stderr


@pytest.fixture(scope="module")
def hollow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess,
                                                                         AgentProcess]]:
    """`up --disable-agent` and one agent process running three hollow nodes."""
    d = tmp_path_factory.mktemp("pyk8s-hollow")
    up = ServerProcess(d, command="up", ready_log="deployment-controller: synced").start(
        timeout=40)
    agent = None
    try:
        agent = AgentProcess(up, d, "--node-name", "hollow", "--count", "3",
                             "--container-restart-backoff", "1",
                             "--fake-cpu", "4", "--fake-memory", "8Gi").start()
        yield up, agent
    finally:
        if agent is not None:
            agent.stop()
        up.stop()


def test_count_runs_three_nodes_and_pods_spread(
        hollow: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = hollow
    names = ["hollow-0", "hollow-1", "hollow-2"]

    def all_ready() -> bool:
        assert agent.proc is not None and agent.proc.poll() is None, agent.log()
        return all(node_ready(up, n) for n in names)
    wait_for("3 hollow nodes Ready", all_ready, timeout=30)
    # --disable-agent: no local node besides the hollow ones.
    nodes = {n["metadata"]["name"] for n in up.get("/api/v1/nodes").json()["items"]}
    assert nodes == set(names)

    def leases() -> bool:
        ls = up.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases").json()
        return {x["metadata"]["name"] for x in ls["items"]} >= set(names)
    wait_for("3 Leases", leases, timeout=15)
    up.kubectl("apply", "-f", "-", input=deployment("spread", ["sleep", "3600"], 6))
    ps = wait_for("6 pods Running", lambda: (lambda r: r if len(r) == 6 else None)(
        running(pods(up, "spread"))), timeout=40)
    assert {p["spec"]["nodeName"] for p in ps} == set(names)


def _pod(name: str, code: str, restart: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "annotations": {"pyk8s.io/fake-exit-code": code}},
        "spec": {"nodeName": "hollow-0", "restartPolicy": restart,
                 "containers": [{"name": "main", "image": "busybox"}]}})


def test_fake_exit_code_annotation(hollow: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = hollow
    wait_for("hollow-0 Ready", lambda: node_ready(up, "hollow-0"), timeout=30)
    for name, code, restart in (("exit3", "3", "Always"), ("exit0", "0", "Never"),
                                ("exit2", "2", "Never")):
        up.kubectl("apply", "-f", "-", input=_pod(name, code, restart))

    def get(name: str) -> dict[str, Any]:
        return up.get(f"/api/v1/namespaces/default/pods/{name}").json()

    def restarted() -> dict[str, Any] | None:
        cs = (get("exit3").get("status", {}).get("containerStatuses") or [{}])[0]
        return cs if cs.get("restartCount", 0) >= 1 else None
    cs = wait_for("exit3 restarted", restarted, timeout=30)
    term = cs.get("lastState", {}).get("terminated") or cs.get("state", {}).get("terminated")
    assert term["exitCode"] == 3 and term["reason"] == "Error", cs
    assert get("exit3")["status"]["phase"] == "Running"   # restartPolicy Always: not final
    wait_for("exit0 Succeeded", lambda: get("exit0").get("status", {}).get("phase")
             == "Succeeded", timeout=30)
    p = wait_for("exit2 Failed", lambda: (lambda x: x if x.get("status", {}).get("phase")
                                          == "Failed" else None)(get("exit2")), timeout=30)
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 2

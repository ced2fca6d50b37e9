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

"""After a crash with the process runtime (issue 19, point 7): the container processes of a
`pyk8s agent --runtime process` / `pyk8s up --runtime process` killed with SIGKILL keep
running (sessions of their own). Started again on the same data dir, the agent stops them
— they cannot be adopted, their output pipes died with it — and the kubelet runs the pod
anew; `pyk8s killall` stops them for a node that is not started again. Nothing marked is
left once the pods are deleted and the nodes stopped."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from pyk8s.kubelet.runtimes.process import GROUPS_DIR, session_members
from tests.conftest import ROOT, ServerProcess, wait_for
from tests.e2e.test_agent import process_node
from tests.e2e.test_local_node import kill_marked, marked_pids, node_ready


def _apply(up: ServerProcess, node: str, marker: str) -> None:
    up.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2, "containers": [{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c", f"sleep 3600; : {marker}"]}]}}))


def _running_container(up: ServerProcess) -> str | None:
    """The sleeper's container id while it runs."""
    st = up.kubectl_json("get", "pod", "sleeper").get("status") or {}
    cs = (st.get("containerStatuses") or [{}])[0]
    return cs.get("containerID") if st.get("phase") == "Running" and cs.get("ready") \
        else None


def _records(node_dir: Path) -> list[Path]:
    return sorted((node_dir / GROUPS_DIR).glob("*.json"))


def test_restarted_agent_stops_what_its_killed_predecessor_left(tmp_path: Path) -> None:
    marker = f"pyk8s-crash-{uuid.uuid4().hex[:8]}"
    node = "proc-crash"
    try:
        with process_node(tmp_path, node) as (up, agent):
            _apply(up, node, marker)
            old_cid = wait_for("sleeper Running", lambda: _running_container(up), timeout=30)
            [old] = wait_for("its process", lambda: marked_pids(marker), timeout=10)
            assert len(_records(tmp_path / "agent")) == 1   # its session, recorded
            wait_for("the shell and its sleep", lambda: len(session_members(old)) == 2,
                     timeout=10)
            assert agent.proc is not None
            agent.proc.kill()                 # kill -9 of the agent (this pid only)
            agent.proc.wait(10)
            assert marked_pids(marker) == [old]   # the container outlives it
            assert len(session_members(old)) == 2

            agent.start()                     # the same data dir
            wait_for("the old session gone", lambda: not session_members(old), timeout=30)
            new_cid = wait_for("sleeper Running again", lambda: (
                cid := _running_container(up)) and cid != old_cid and cid, timeout=60)
            [new] = wait_for("the new process", lambda: marked_pids(marker), timeout=10)
            assert new != old and new_cid != old_cid
            [record] = _records(tmp_path / "agent")
            assert json.loads(record.read_text())["sid"] == new

            up.kubectl("delete", "pod", "sleeper", "--timeout=30s", timeout=60)
            assert marked_pids(marker) == []
            assert _records(tmp_path / "agent") == []
            agent.stop()
            assert agent.proc.returncode == 0, agent.log()
        assert marked_pids(marker) == []
    finally:
        kill_marked(marker)   # safety net only


def test_killall_stops_the_containers_of_a_killed_up(tmp_path: Path) -> None:
    marker = f"pyk8s-crash-{uuid.uuid4().hex[:8]}"
    node = "proc-killall"
    up = ServerProcess(tmp_path, command="up", ready_log="deployment-controller: synced",
                       local_node=True, extra=["--node-name", node, "--runtime", "process"])
    try:
        up.start(timeout=40)
        wait_for("node Ready", lambda: node_ready(up, node), timeout=30)
        _apply(up, node, marker)
        wait_for("sleeper Running", lambda: _running_container(up), timeout=30)
        [pid] = wait_for("its process", lambda: marked_pids(marker), timeout=10)
        up.kill9()
        assert marked_pids(marker) == [pid] and len(_records(tmp_path / "agent")) == 1
        p = subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "killall", "--data-dir",
                            str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        assert marked_pids(marker) == [] and not session_members(pid), p.stderr
        assert _records(tmp_path / "agent") == []
    finally:
        up.stop()
        kill_marked(marker)   # safety net only

"""`pyk8s killall` / `make down` (issue 19, point 6): after `pyk8s up` with real containers
was killed with SIGKILL, its containers keep running; killall removes them and everything
else the node left (mounts, pod network, cgroups, iptables chains, the bridge)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, needs_root, wait_for
from tests.e2e.test_oci_runtime import _node_state, _pod_spec, oci_up
from tests.registry import registry  # noqa: F401  (the session's local registry)

pytestmark = needs_root
NODE = "killall-1"


def _container_pids(agent: Path) -> list[int]:
    out = subprocess.run(["runc", "--root", str(agent / "runc"), "list", "--format", "json"],
                         capture_output=True, text=True).stdout.strip()
    return [c["pid"] for c in json.loads(out or "null") or [] if c.get("pid")]


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed container's process waits for whoever adopted it
    to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killall_removes_what_a_killed_cluster_left(registry: Any,  # noqa: F811
                                                    tmp_path: Path) -> None:
    up, bridge = oci_up(tmp_path, registry, NODE)
    up.start(timeout=40)
    try:
        wait_for("node Ready", lambda: " Ready " in up.kubectl(
            "get", "nodes", NODE, "--no-headers", check=False).stdout, timeout=30)
        spec = _pod_spec(registry.image("busybox"))
        spec["containers"][0]["command"] = ["sleep", "3600"]
        up.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"}, "spec": spec}))
        wait_for("pod Running", lambda: up.kubectl_json("get", "pod", "sleeper")
                 .get("status", {}).get("phase") == "Running", timeout=40)
    finally:
        up.kill9()
    agent = tmp_path / "agent"
    pids = _container_pids(agent)
    assert pids and all(Path(f"/proc/{p}").exists() for p in pids)   # leaked by the kill
    assert _node_state(agent, bridge, node=NODE)
    p = subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "killall", "--data-dir",
                        str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert not [pid for pid in pids if _running(pid)], p.stderr
    left = _node_state(agent, bridge, stopped=True, node=NODE)
    assert not left, left
    from pyk8s.kubelet.network.hostclaims import CLAIMS_DIR
    owner = str(agent.resolve()) + " "
    assert not [f for f in CLAIMS_DIR.glob("*.lock") if f.read_text().startswith(owner)]

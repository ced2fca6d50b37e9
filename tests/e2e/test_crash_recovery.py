"""After a crash (issue 19, point 7): `pyk8s up` with real containers killed with SIGKILL
and started again on the same data dir adopts the containers of the pods still bound to
its node — same container, restart count, pod IP and volumes; it keeps serving and its log
goes on — reports a container that died meanwhile, and a `tty: true` one (its terminal died
with `up`), terminated with upstream's ContainerStatusUnknown / 137 and starts them again,
and removes the containers and volumes of a pod deleted while it was going down; once the
pods are deleted and `up` stopped, nothing of them is left (processes, mounts, cgroups,
namespaces, network).
Traffic goes only to loopback and to pod IPs on the test's own bridge."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, needs_root, wait_for
from tests.e2e.test_local_node import marked_pids
from tests.e2e.test_oci_runtime import _node_state, _pod_spec, http_get, oci_up
from tests.registry import registry  # noqa: F401  (the session's local registry)

pytestmark = needs_root

NODE = "crash-1"   # a node (and cgroup root) of its own


def _runc(agent: Path) -> dict[str, tuple[str, int]]:
    """The node's runc containers: id → (status, init pid)."""
    out = subprocess.run(["runc", "--root", str(agent / "runc"), "list", "--format", "json"],
                         capture_output=True, text=True).stdout.strip()
    return {c["id"]: (c["status"], c["pid"]) for c in json.loads(out or "null") or []}


def _live(pid: int) -> bool:
    """Alive and not a zombie (a container killed after its agent died waits for init to
    reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _status(up: Any, name: str) -> dict[str, Any]:
    return up.kubectl_json("get", "pod", name).get("status") or {}


def _ticks(up: Any) -> list[str]:
    return [line for line in up.kubectl("logs", "keeper", check=False).stdout.splitlines()
            if line.startswith("tick ")]


def _cid(status: dict[str, Any]) -> str:
    return status["containerStatuses"][0]["containerID"].split("://")[1]


def _lost_and_restarted(up: Any, name: str) -> dict[str, Any] | None:
    """The pod's container, reported terminated with an unknown status and running again
    (restartCount 1), or None."""
    cs = (_status(up, name).get("containerStatuses") or [{}])[0]
    term = (cs.get("lastState") or {}).get("terminated") or {}
    return cs if cs.get("restartCount") == 1 and "running" in (cs.get("state") or {}) \
        and term.get("reason") == "ContainerStatusUnknown" else None


def test_kill9_then_restart_adopts_bound_pods_and_removes_the_rest(
        registry: Any, tmp_path: Path) -> None:  # noqa: F811
    up, bridge = oci_up(tmp_path, registry, NODE)
    agent = tmp_path / "agent"
    marker = f"pyk8s-crash-{uuid.uuid4().hex[:8]}"
    image = registry.image("busybox")

    def sleeper(**extra: Any) -> dict[str, Any]:
        return _pod_spec(image, containers=[{
            "name": "main", "image": image, "command": ["sh", "-c", f"sleep 3600; : {marker}"],
            **extra}])
    pods = {
        # Serves a ConfigMap's page (copied to an emptyDir by its init container) on its
        # pod IP and logs a numbered line every 0.3 s: adopted as it is.
        "keeper": _pod_spec(image, volumes=[
            {"name": "www", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "web"}}],
            initContainers=[{
                "name": "copy", "image": image, "command": ["cp", "/etc/web/index.html",
                                                            "/www/"],
                "volumeMounts": [{"name": "www", "mountPath": "/www"},
                                 {"name": "conf", "mountPath": "/etc/web"}]}],
            containers=[{
                "name": "web", "image": image, "command": ["sh", "-c", (
                    "(i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done) & "
                    f"exec httpd -f -p 8080 -h /www; : {marker}")],
                "volumeMounts": [{"name": "www", "mountPath": "/www"},
                                 {"name": "conf", "mountPath": "/etc/web"}]}]),
        # Deleted while its preStop hook runs, then force-deleted just before the kill:
        # gone from the API, still running on the node.
        "victim": {**sleeper(lifecycle={"preStop": {"exec": {"command": [
            "sh", "-c", f"sleep 60; : {marker}-hook"]}}}, volumeMounts=[
                {"name": "scratch", "mountPath": "/scratch"}]),
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "terminationGracePeriodSeconds": 60},
        # Its container dies while the node is down: its exit code is lost.
        "lost": sleeper(),
        # A terminal's container: its master died with the node; killed and restarted.
        "term": sleeper(tty=True, stdin=True),
    }
    try:
        up.start(timeout=40)
        wait_for("node Ready", lambda: " Ready " in up.kubectl(
            "get", "nodes", NODE, "--no-headers", check=False).stdout, timeout=30)
        up.kubectl("create", "configmap", "web", "--from-literal=index.html=served")
        up.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
                for name, spec in pods.items()]}))
        for name in pods:
            wait_for(f"{name} Running", lambda n=name: _status(up, n).get("phase")
                     == "Running", timeout=40)
        before = _status(up, "keeper")
        ip, cid = before["podIP"], _cid(before)
        assert wait_for("keeper serves", lambda: _try_get(f"http://{ip}:8080/index.html"),
                        timeout=20) == "served"
        victim_cid, lost_cid, term_cid = (_cid(_status(up, n)) for n in ("victim", "lost",
                                                                          "term"))
        uids = {n: up.kubectl_json("get", "pod", n)["metadata"]["uid"] for n in pods}
        assert (agent / "volumes" / uids["victim"] / "scratch").is_dir()
        up.kubectl("delete", "pod", "victim", "--wait=false")
        wait_for("victim's preStop hook running", lambda: marked_pids(f"{marker}-hook"),
                 timeout=20)
        up.kubectl("delete", "pod", "victim", "--grace-period=0", "--force")
        wait_for("a few ticks logged", lambda: len(_ticks(up)) >= 3, timeout=10)

        up.kill9()                                  # `pyk8s up` only (its pid)
        left = _runc(agent)
        for c in (cid, victim_cid, lost_cid, term_cid):   # they outlive it
            assert left.get(c, ("", 0))[0] == "running", left
        keeper_pid, victim_pid = left[cid][1], left[victim_cid][1]
        os.kill(left[lost_cid][1], signal.SIGKILL)  # dies while nobody watches

        up.log_path = tmp_path / "server-2.log"     # its ready line, not the first run's
        up.start(timeout=40)
        # The pod force-deleted while the node went down: its container removed.
        wait_for("victim's container removed", lambda: victim_cid not in _runc(agent)
                 and not _live(victim_pid), timeout=30)
        wait_for("and its volumes", lambda: not (agent / "volumes" / uids["victim"]).exists(),
                 timeout=10)
        # Those that ended meanwhile (or could not be adopted): reported as upstream's
        # kubelet reports a lost status, and started again.
        for name in ("lost", "term"):
            cs = wait_for(f"{name} restarted", lambda n=name: _lost_and_restarted(up, n),
                          timeout=30)
            assert cs["lastState"]["terminated"]["exitCode"] == 137
            assert cs["containerID"].split("://")[1] not in (lost_cid, term_cid)
        # The bound pod: the same container, process, restart count and IP.
        assert _runc(agent).get(cid) == ("running", keeper_pid)
        st = _status(up, "keeper")
        [cs] = st["containerStatuses"]
        assert _cid(st) == cid and cs["restartCount"] == 0 and not cs.get("lastState")
        assert st["initContainerStatuses"] == before["initContainerStatuses"]   # not rerun
        assert "running" in cs["state"] and st["podIP"] == ip
        assert _try_get(f"http://{ip}:8080/index.html") == "served"
        # Its log goes on in the same file (what it wrote meanwhile included), through the
        # restarted kubelet, and it takes exec.
        n = len(wait_for("the log, through the restarted kubelet", lambda: _ticks(up),
                         timeout=20))
        ticks = wait_for("more ticks", lambda: (lambda t: len(t) > n + 3 and t)(_ticks(up)),
                         timeout=20)
        assert [int(t.split()[1]) for t in ticks] == list(range(len(ticks)))
        # Its volumes are still there (the emptyDir it serves from, the ConfigMap's files).
        assert up.kubectl("exec", "keeper", "--", "cat", "/etc/web/index.html",
                          "/www/index.html").stdout == "servedserved"

        # Deleted pods leave nothing; a clean stop stops the adopted container too.
        up.kubectl("delete", "pods", "lost", "term", "--wait=true", "--timeout=60s")
        assert not (agent / "volumes" / uids["lost"]).exists()
        assert _runc(agent) == {cid: ("running", keeper_pid)}
        state = _node_state(agent, bridge, node=NODE)   # the keeper's alone
        net = [k for k in state if k.startswith(("veth ", "ip "))]
        assert len(net) == 2, state                      # its veth and its IP
        assert [k for k in state if k not in net and uids["keeper"] not in k
                and cid not in k] == [], state
        up.stop()
        assert not _live(keeper_pid)
    finally:
        up.stop()
        stray = marked_pids(marker)
        if stray or _runc(agent):   # a failure above: leave the host clean all the same
            subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "killall", "--data-dir",
                            str(tmp_path)], capture_output=True, cwd=ROOT, timeout=120)
    assert not stray, stray
    left_over = _node_state(agent, bridge, stopped=True, node=NODE)
    assert not left_over, left_over


def _try_get(url: str) -> str | None:
    try:
        return http_get(url, timeout=1.0)
    except OSError:
        return None

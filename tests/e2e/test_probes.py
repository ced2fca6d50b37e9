"""Container probes on `pyk8s agent --runtime process` joined to a real `pyk8s up`: an
httpGet readiness probe makes a Deployment's pod Ready (at podIP = the node IP, the
process runtime shares the host network), a failing exec liveness probe restarts the
container (restartCount, exit code 143), readiness drives the pod's Ready condition."""
from __future__ import annotations

import json
import sys
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, free_port, wait_for
from tests.e2e.test_agent import AgentProcess, process_node

NODE = "probe-1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess,
                                                                          AgentProcess]]:
    with process_node(tmp_path_factory.mktemp("pyk8s-probes"), NODE,
                      "--container-restart-backoff", "1") as cluster:
        yield cluster


def conditions(p: Any) -> dict[str, Any]:
    return {c["type"]: c for c in (p.get("status") or {}).get("conditions") or []}


def pod(name: str, command: list[str], **container: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 5,
                                "containers": [{"name": "main", "image": "busybox",
                                                "command": command, **container}]}})


def test_http_readiness_deployment(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    port = free_port()
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                        "nodeName": NODE, "terminationGracePeriodSeconds": 5,
                        "containers": [{
                            "name": "web", "image": "python",
                            "command": [sys.executable, "-m", "http.server", str(port),
                                        "--bind", "127.0.0.1"],
                            "ports": [{"name": "http", "containerPort": port}],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": "http",
                                            "httpHeaders": [{"name": "X-Probe",
                                                             "value": "1"}]},
                                "periodSeconds": 1}}]}}}}
    up.kubectl("apply", "-f", "-", input=json.dumps(dep))
    wait_for("availableReplicas 1", lambda: (up.kubectl_json("get", "deployment", "web")
                                             .get("status") or {}).get(
        "availableReplicas") == 1, timeout=60)
    (p,) = up.kubectl_json("get", "pods", "-l", "app=web")["items"]
    assert p["status"]["podIP"] == "127.0.0.1"          # host network: the node IP
    (cs,) = p["status"]["containerStatuses"]
    assert cs["ready"] and cs["started"]
    assert conditions(p)["Ready"]["status"] == "True"
    r = up.kubectl("rollout", "status", "deployment/web", "--timeout=30s", timeout=60)
    assert "successfully rolled out" in r.stdout
    up.kubectl("delete", "deployment", "web", "--timeout=30s", timeout=60)


def test_liveness_failure_restarts(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster
    marker = up.data_dir / "no-such-marker"
    up.kubectl("apply", "-f", "-", input=pod(
        "unhealthy", ["sleep", "300"],
        livenessProbe={"exec": {"command": ["test", "-f", str(marker)]},
                       "periodSeconds": 1, "failureThreshold": 2}))

    def restarted() -> Any:
        p = up.kubectl_json("get", "pod", "unhealthy")
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            if cs["restartCount"] >= 1 and (cs.get("lastState") or {}).get("terminated"):
                return p, cs
        return None
    p, cs = wait_for("a liveness restart", restarted, timeout=60)
    t = cs["lastState"]["terminated"]
    assert t["exitCode"] == 143 and t["reason"] == "Error"   # SIGTERM
    assert p["status"]["phase"] == "Running"
    assert "failed liveness probe, will be restarted" in agent.log_path.read_text()
    ev = up.kubectl("get", "events", "--field-selector", "involvedObject.name=unhealthy",
                    check=False).stdout
    assert "Unhealthy" in ev and "Liveness probe failed" in ev, ev
    # It keeps failing: restarted again (after the 1 s back-off).
    wait_for("another restart", lambda: up.kubectl_json("get", "pod", "unhealthy")[
        "status"]["containerStatuses"][0]["restartCount"] >= 2, timeout=60)
    up.kubectl("delete", "pod", "unhealthy", "--timeout=30s", timeout=60)


def test_readiness_drives_ready_condition(
        cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    marker = up.data_dir / "ready-marker"
    up.kubectl("apply", "-f", "-", input=pod(
        "gated", ["sleep", "300"],
        readinessProbe={"exec": {"command": ["test", "-f", str(marker)]},
                        "periodSeconds": 1}))

    def ready_is(status: str) -> Any:
        def check() -> Any:
            p = up.kubectl_json("get", "pod", "gated")
            c = conditions(p)
            if (p.get("status") or {}).get("phase") == "Running" and \
                    c.get("Ready", {}).get("status") == status:
                return p
            return None
        return check
    p = wait_for("Running, not Ready", ready_is("False"), timeout=30)
    c = conditions(p)
    assert c["Ready"]["reason"] == "ContainersNotReady"
    assert c["ContainersReady"]["status"] == "False"
    (cs,) = p["status"]["containerStatuses"]
    assert not cs["ready"] and cs["started"] and cs["restartCount"] == 0
    marker.touch()
    p = wait_for("Ready", ready_is("True"), timeout=30)
    assert p["status"]["containerStatuses"][0]["ready"]
    marker.unlink()
    p = wait_for("not Ready again", ready_is("False"), timeout=30)
    assert p["status"]["containerStatuses"][0]["restartCount"] == 0   # readiness never kills
    up.kubectl("delete", "pod", "gated", "--timeout=30s", timeout=60)


def test_lifecycle_hooks(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    d = up.data_dir / "hooks"
    d.mkdir(exist_ok=True)
    script = f"trap 'echo term >> {d}/order; exit 0' TERM; sleep 300 & wait"
    up.kubectl("apply", "-f", "-", input=pod(
        "hooked", ["sh", "-c", script],
        lifecycle={"postStart": {"exec": {"command": ["sh", "-c",
                                                      f"echo $HOSTNAME > {d}/post"]}},
                   "preStop": {"exec": {"command": ["sh", "-c",
                                                    f"echo pre-stop >> {d}/order"]}}}))
    wait_for("postStart ran", lambda: (d / "post").exists()
             and (d / "post").read_text() == "hooked\n", timeout=30)
    wait_for("Running", lambda: (up.kubectl_json("get", "pod", "hooked").get("status")
                                 or {}).get("phase") == "Running", timeout=30)
    up.kubectl("delete", "pod", "hooked", "--timeout=30s", timeout=60)
    # preStop first, then SIGTERM.
    assert (d / "order").read_text() == "pre-stop\nterm\n"


def test_failed_post_start_kills(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    up.kubectl("apply", "-f", "-", input=pod(
        "badhook", ["sleep", "300"],
        lifecycle={"postStart": {"exec": {"command": ["sh", "-c", "exit 7"]}}}))

    def restarted() -> Any:
        p = up.kubectl_json("get", "pod", "badhook")
        cs = ((p.get("status") or {}).get("containerStatuses") or [{}])[0]
        return cs if cs.get("restartCount", 0) >= 1 else None
    wait_for("restarted after FailedPostStartHook", restarted, timeout=60)
    ev = up.kubectl("get", "events", "--field-selector", "involvedObject.name=badhook",
                    check=False).stdout
    assert "FailedPostStartHook" in ev, ev
    up.kubectl("delete", "pod", "badhook", "--timeout=30s", timeout=60)

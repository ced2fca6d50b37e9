"""`pyk8s agent --runtime process` joined to a real `pyk8s up`: containers are host
processes; restart policies, container statuses, crash-loop back-off, init containers,
logs under the agent's data dir, graceful deletion by SIGTERM."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyk8s.kubelet import crilog
from tests.conftest import ServerProcess, wait_for
from tests.e2e.test_agent import AgentProcess, process_node
from tests.kubelet.test_process_runtime import group_alive

NODE = "proc-1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess,
                                                                          AgentProcess]]:
    with process_node(tmp_path_factory.mktemp("pyk8s-process"), NODE,
                      "--container-restart-backoff", "1") as cluster:
        yield cluster


def pod(name: str, script: str, restart: str = "Always", **spec: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"nodeName": NODE, "restartPolicy": restart,
                                "terminationGracePeriodSeconds": 10,
                                "containers": [{"name": "main", "image": "busybox",
                                                "command": ["sh", "-c", script]}], **spec}})


def get(up: ServerProcess, name: str) -> Any:
    return up.kubectl_json("get", "pod", name)


def phase_is(up: ServerProcess, name: str, phase: str) -> Any:
    def check() -> Any:
        p = get(up, name)
        return p if p.get("status", {}).get("phase") == phase else None
    return wait_for(f"pod {name} {phase}", check, timeout=30)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_running_pod_and_logs(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster
    script = ("trap 'echo got-term > term; exit 0' TERM; echo hello $(POD); "
              "echo $$$$ > pid; sleep 30 & wait")
    up.kubectl("apply", "-f", "-", input=pod(
        "hello", script,
        containers=[{"name": "main", "image": "busybox", "command": ["sh", "-c", script],
                     "workingDir": str(agent.log_path.parent),
                     "env": [{"name": "POD", "valueFrom": {
                         "fieldRef": {"fieldPath": "metadata.name"}}}]}]))
    p = phase_is(up, "hello", "Running")
    uid = p["metadata"]["uid"]
    (cs,) = p["status"]["containerStatuses"]
    assert cs["ready"] and cs["image"] == "busybox" and cs["restartCount"] == 0
    assert cs["containerID"].startswith("process://") and "startedAt" in cs["state"]["running"]
    conds = {c["type"]: c["status"] for c in p["status"]["conditions"]}
    assert conds["Ready"] == conds["ContainersReady"] == "True"
    log = agent.log_path.parent / "agent" / "pods" / uid / "main" / "0.log"
    wait_for("log", lambda: "hello hello\n" in crilog.read_output(log), timeout=10)

    # kubectl delete: SIGTERM to the process group, then the pod disappears.
    pidfile = agent.log_path.parent / "pid"
    wait_for("pid file", lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10)
    pid = int(pidfile.read_text())
    assert pid_alive(pid)
    up.kubectl("delete", "pod", "hello", "--timeout=30s", timeout=60)
    r = up.kubectl("get", "pod", "hello", check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr
    wait_for("processes gone", lambda: not group_alive(pid), timeout=10)
    assert (agent.log_path.parent / "term").read_text() == "got-term\n"   # SIGTERM, not KILL
    assert "deleted pod default/hello" in agent.log_path.read_text()


def test_never_failed(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    up.kubectl("apply", "-f", "-", input=pod("fails", "exit 3", "Never"))
    p = phase_is(up, "fails", "Failed")
    (cs,) = p["status"]["containerStatuses"]
    t = cs["state"]["terminated"]
    assert t["exitCode"] == 3 and t["reason"] == "Error" and t["finishedAt"]
    assert cs["restartCount"] == 0 and not cs["ready"]
    conds = {c["type"]: c for c in p["status"]["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "PodCompleted"


def test_never_succeeded(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    up.kubectl("apply", "-f", "-", input=pod("works", "exit 0", "Never"))
    p = phase_is(up, "works", "Succeeded")
    (cs,) = p["status"]["containerStatuses"]
    assert cs["state"]["terminated"]["exitCode"] == 0
    assert cs["state"]["terminated"]["reason"] == "Completed"


def test_always_crash_loop(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    up.kubectl("apply", "-f", "-", input=pod("crash", "exit 1", "Always"))

    def crash_looping() -> Any:
        p = get(up, "crash")
        for cs in p.get("status", {}).get("containerStatuses") or []:
            w = cs["state"].get("waiting") or {}
            if cs["restartCount"] >= 1 and w.get("reason") == "CrashLoopBackOff":
                return p, cs
        return None
    p, cs = wait_for("CrashLoopBackOff", crash_looping, timeout=30)
    md = p["metadata"]
    assert cs["state"]["waiting"]["message"].endswith(
        f"restarting failed container=main pod=crash_default({md['uid']})")
    assert cs["state"]["waiting"]["message"].startswith("back-off ")
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert p["status"]["phase"] == "Running"
    # It keeps restarting after the (1 s doubling) back-off.
    n = cs["restartCount"]
    wait_for("another restart", lambda: get(up, "crash")["status"]["containerStatuses"][0][
        "restartCount"] > n, timeout=20)
    up.kubectl("delete", "pod", "crash", "--timeout=30s", timeout=60)


def test_on_failure(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    # Fails once (no marker file yet), then succeeds: OnFailure restarts it, then Succeeded.
    d = up.data_dir / "onfailure"
    d.mkdir(exist_ok=True)
    up.kubectl("apply", "-f", "-", input=pod(
        "onf", f"if [ -e {d}/m ]; then exit 0; fi; touch {d}/m; exit 2", "OnFailure"))
    p = phase_is(up, "onf", "Succeeded")
    (cs,) = p["status"]["containerStatuses"]
    assert cs["restartCount"] == 1 and cs["lastState"]["terminated"]["exitCode"] == 2


def test_init_container_first(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    d = up.data_dir / "init"
    d.mkdir(exist_ok=True)
    up.kubectl("apply", "-f", "-", input=pod(
        "withinit", f"test -e {d}/init-done && echo main >> {d}/order; sleep 30", "Never",
        initContainers=[{"name": "init", "image": "busybox", "command": [
            "sh", "-c", f"sleep 0.5; echo init >> {d}/order; touch {d}/init-done"]}]))
    p = phase_is(up, "withinit", "Running")
    (ics,) = p["status"]["initContainerStatuses"]
    assert ics["state"]["terminated"]["exitCode"] == 0 and ics["ready"]
    conds = {c["type"]: c["status"] for c in p["status"]["conditions"]}
    assert conds["Initialized"] == "True"
    wait_for("order", lambda: (d / "order").exists()
             and (d / "order").read_text() == "init\nmain\n", timeout=10)
    up.kubectl("delete", "pod", "withinit", "--timeout=30s", timeout=60)


def test_failed_init_container_never(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    up.kubectl("apply", "-f", "-", input=pod(
        "badinit", "echo never-runs", "Never",
        initContainers=[{"name": "init", "image": "busybox",
                         "command": ["sh", "-c", "exit 4"]}]))
    p = phase_is(up, "badinit", "Failed")
    (ics,) = p["status"]["initContainerStatuses"]
    assert ics["state"]["terminated"]["exitCode"] == 4
    (cs,) = p["status"]["containerStatuses"]
    assert cs["state"]["waiting"]["reason"] == "PodInitializing"


def test_service_environment_variables(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    """Every container gets the `kubernetes` Service's variables, and with
    enableServiceLinks (the default) those of its namespace's Services, as upstream."""
    up, agent = cluster
    up.kubectl("create", "service", "clusterip", "web-app", "--tcp=8080:80")
    ip = up.kubectl_json("get", "service", "web-app")["spec"]["clusterIP"]
    out = agent.log_path.parent / "service-env"
    # A Service created an instant before the pod may not have reached the kubelet yet
    # (as upstream: Services should exist before their clients): then exit and restart.
    script = f"env | sort > {out}; grep -q WEB_APP {out} || exit 1; sleep 30"
    up.kubectl("apply", "-f", "-", input=pod("envs", script))
    phase_is(up, "envs", "Running")
    wait_for("env written", lambda: out.exists() and "WEB_APP" in out.read_text(), timeout=20)
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    kube_ip = up.kubectl_json("get", "service", "kubernetes")["spec"]["clusterIP"]
    assert env["KUBERNETES_SERVICE_HOST"] == kube_ip and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_PORT_443_TCP"] == f"tcp://{kube_ip}:443"
    assert env["WEB_APP_SERVICE_HOST"] == ip and env["WEB_APP_SERVICE_PORT"] == "8080"
    assert env["WEB_APP_PORT"] == f"tcp://{ip}:8080"
    up.kubectl("delete", "pod", "envs", "--wait=false")
    up.kubectl("delete", "service", "web-app")


def test_agent_stop_kills_processes(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster
    d = up.data_dir / "stop"
    d.mkdir(exist_ok=True)
    up.kubectl("apply", "-f", "-", input=pod("lingers", f"echo $$$$ > {d}/pid; sleep 60"))
    phase_is(up, "lingers", "Running")
    wait_for("pid", lambda: (d / "pid").exists() and (d / "pid").read_text().strip(),
             timeout=10)
    pid = int((d / "pid").read_text())
    assert pid_alive(pid)
    assert agent.proc is not None
    agent.stop()
    assert agent.proc.returncode == 0, agent.log()
    wait_for("processes gone", lambda: not group_alive(pid), timeout=10)


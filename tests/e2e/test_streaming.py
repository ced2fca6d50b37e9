"""pods/log and pods/exec end to end: real `pyk8s up`, `pyk8s agent --runtime process` with
its kubelet HTTPS server, real kubectl (WebSocket v5) and the official Python client (v4)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import urllib3

from tests.conftest import KUBECTL, ServerProcess, free_port, wait_for
from tests.e2e.test_agent import AgentProcess, process_node

NODE = "stream-1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess,
                                                                          AgentProcess, int]]:
    port = free_port()
    with process_node(tmp_path_factory.mktemp("pyk8s-streaming"), NODE,
                      "--container-restart-backoff", "1",
                      "--kubelet-port", str(port)) as (up, agent):
        up.kubectl("apply", "-f", "-", input=pod("shell", "echo one; echo two; echo three; "
                                                          "exec sleep 3600"))
        running(up, "shell")
        yield up, agent, port


def pod(name: str, script: str, restart: str = "Always", **spec: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"nodeName": NODE, "restartPolicy": restart,
                                "terminationGracePeriodSeconds": 2,
                                "containers": [{"name": "main", "image": "busybox",
                                                "command": ["sh", "-c", script]}], **spec}})


def running(up: ServerProcess, name: str) -> Any:
    def check() -> Any:
        p = up.kubectl_json("get", "pod", name)
        return p if p.get("status", {}).get("phase") == "Running" else None
    return wait_for(f"pod {name} Running", check, timeout=30)


def kubectl_env(up: ServerProcess) -> dict[str, str]:
    return dict(os.environ, KUBECONFIG=str(up.kubeconfig), HOME=str(up.data_dir))


def test_node_reports_kubelet_port(cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    up, _, port = cluster
    node = up.kubectl_json("get", "node", NODE)
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == port


def test_discovery_lists_streaming_subresources(
        cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    up, _, _ = cluster
    names = {r["name"] for r in json.loads(up.kubectl("get", "--raw", "/api/v1").stdout)
             ["resources"]}
    assert {"pods/log", "pods/exec", "pods/attach", "pods/portforward"} <= names


def test_logs(cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    up, _, _ = cluster
    wait_for("logs", lambda: up.kubectl("logs", "shell").stdout == "one\ntwo\nthree\n")
    assert up.kubectl("logs", "shell", "--tail=2").stdout == "two\nthree\n"
    assert up.kubectl("logs", "shell", "-c", "main").stdout == "one\ntwo\nthree\n"
    assert up.kubectl("logs", "shell", "--limit-bytes=4").stdout == "one\n"
    bad = up.kubectl("logs", "shell", "-c", "nope", check=False)
    assert bad.returncode != 0 and "container nope is not valid for pod shell" in bad.stderr
    missing = up.kubectl("logs", "nosuchpod", check=False)
    assert missing.returncode != 0 and 'pods "nosuchpod" not found' in missing.stderr
    prev = up.kubectl("logs", "shell", "--previous", check=False)
    assert prev.returncode != 0 and "previous terminated container" in prev.stderr


TS_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (.*)$")


def test_logs_timestamps_since_and_stderr(
        cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    """The runtime writes CRI records (stdout and stderr apart): logs carry both streams,
    --timestamps prefixes each line with its record's time, --since / --since-time filter
    by it."""
    up, _, _ = cluster
    up.kubectl("apply", "-f", "-", input=pod(
        "stamped", "echo early; echo early-err >&2; sleep 3; echo late; echo late-err >&2; "
                   "exec sleep 3600"))
    running(up, "stamped")
    out = wait_for("late lines", lambda: (lambda o: o if "late-err" in o else None)(
        up.kubectl("logs", "stamped").stdout), timeout=20)
    assert sorted(out.splitlines()) == ["early", "early-err", "late", "late-err"], out
    # Written 3s after the early ones: --since=2s has the late lines only.
    recent = up.kubectl("logs", "stamped", "--since=2s").stdout
    assert sorted(recent.splitlines()) == ["late", "late-err"], recent
    stamped = up.kubectl("logs", "stamped", "--timestamps").stdout.splitlines()
    matches = [TS_LINE.match(line) for line in stamped]
    assert all(matches), stamped
    by_line = {m.group(2): m.group(1) for m in matches if m}
    assert sorted(by_line) == ["early", "early-err", "late", "late-err"]
    assert by_line["early"] < by_line["late"]
    # --since-time (seconds precision on the wire): from the late lines' second on.
    since = by_line["late"][:19] + "Z"
    after = up.kubectl("logs", "stamped", f"--since-time={since}").stdout
    assert sorted(after.splitlines()) == ["late", "late-err"], after
    assert up.kubectl("logs", "stamped", "--tail=1", "--timestamps").stdout.count(" ") == 1
    # Nothing was written in the last second once a moment has passed.
    time.sleep(1.5)
    assert up.kubectl("logs", "stamped", "--since=1s").stdout == ""
    up.kubectl("delete", "pod", "stamped", "--wait=false")


def test_attach_separates_stderr(cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    up, _, _ = cluster
    up.kubectl("apply", "-f", "-", input=pod(
        "twostreams", "sleep 4; echo to-out; echo to-err >&2; sleep 1", restart="Never"))
    running(up, "twostreams")
    p = up.kubectl("attach", "twostreams", timeout=30, check=False)
    assert "to-out" in p.stdout and "to-err" not in p.stdout, (p.stdout, p.stderr)
    assert "to-err" in p.stderr, (p.stdout, p.stderr)


def test_logs_previous_after_restart(cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    up, _, _ = cluster
    up.kubectl("apply", "-f", "-", input=pod(
        "restarter", "echo run-$(cat /proc/self/stat | cut -d' ' -f1); sleep 1; exit 1"))

    def restarted() -> bool:
        st = up.kubectl_json("get", "pod", "restarter").get("status", {})
        cs = (st.get("containerStatuses") or [{}])[0]
        return cs.get("restartCount", 0) >= 1 and "running" in (cs.get("state") or {})
    wait_for("a restart", restarted, timeout=30)
    out = up.kubectl("logs", "restarter", "--previous").stdout
    assert out.startswith("run-"), out


def test_logs_of_completed_pod(cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    up, _, _ = cluster
    up.kubectl("apply", "-f", "-", input=pod("done", "echo finished", restart="Never"))

    def succeeded() -> bool:
        return up.kubectl_json("get", "pod", "done").get("status", {}).get(
            "phase") == "Succeeded"
    wait_for("pod done Succeeded", succeeded, timeout=30)
    assert up.kubectl("logs", "done").stdout == "finished\n"
    # follow ends at once: the container has exited.
    assert up.kubectl("logs", "-f", "done", timeout=20).stdout == "finished\n"
    p = up.kubectl("exec", "done", "--", "true", check=False)
    assert p.returncode != 0 and "cannot exec into a container in a completed pod" in p.stderr


def test_logs_follow(cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    up, _, _ = cluster
    up.kubectl("apply", "-f", "-", input=pod(
        "ticker", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done"))
    running(up, "ticker")
    p = subprocess.Popen([KUBECTL, "logs", "-f", "ticker"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=kubectl_env(up))
    try:
        assert p.stdout is not None
        lines = [p.stdout.readline() for _ in range(8)]
        assert lines[-1].startswith(b"tick "), lines
        # Lines written after the request started arrived too.
        assert int(lines[-1].split()[1]) >= 7
        assert p.poll() is None
    finally:
        p.terminate()
        p.wait(10)


def test_exec_exit_code(cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    up, _, _ = cluster
    p = up.kubectl("exec", "shell", "--", "sh", "-c", "echo hi; echo err >&2; exit 3",
                   check=False)
    assert p.stdout == "hi\n", (p.stdout, p.stderr)
    assert "err" in p.stderr
    assert p.returncode == 3
    ok = up.kubectl("exec", "shell", "--", "sh", "-c", "echo $HOSTNAME")
    assert ok.stdout == "shell\n"


def test_exec_stdin(cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    up, _, _ = cluster
    data = "".join(f"line {i}\n" for i in range(2000))
    p = up.kubectl("exec", "-i", "shell", "--", "cat", input=data)
    assert p.stdout == data


def test_exec_tty(cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    """tty=true: the command gets a terminal (the Python client; kubectl -t wants one)."""
    up, _, _ = cluster
    from kubernetes import client, config
    from kubernetes.stream import stream
    api_client = config.new_client_from_config(str(up.kubeconfig))
    try:
        core = client.CoreV1Api(api_client)
        out = stream(core.connect_get_namespaced_pod_exec, "shell", "default",
                     command=["sh", "-c", "test -t 0 && echo is-a-tty; stty size"],
                     stderr=True, stdin=False, stdout=True, tty=True)
        assert "is-a-tty" in out, out
        # A resize on channel 4 sets the terminal's size (TIOCSWINSZ).
        ws = stream(core.connect_get_namespaced_pod_exec, "shell", "default",
                    command=["sh", "-c", "sleep 1; stty size"], stderr=True, stdin=True,
                    stdout=True, tty=True, _preload_content=False)
        try:
            ws.write_channel(4, json.dumps({"Width": 91, "Height": 33}))
            ws.run_forever(timeout=20)
            assert ws.returncode == 0   # (read before read_all, which drops channel 3)
            assert "33 91" in ws.read_all()
        finally:
            ws.close()
    finally:
        api_client.close()


def test_cp(cluster: tuple[ServerProcess, AgentProcess, int], tmp_path: Path) -> None:
    up, _, _ = cluster
    src = tmp_path / "in.txt"
    src.write_text("copied through tar\n")
    target = tmp_path / "pod-side"
    target.mkdir()
    up.kubectl("cp", str(src), f"shell:{target}/in.txt")
    assert (target / "in.txt").read_text() == "copied through tar\n"
    back = tmp_path / "back.txt"
    up.kubectl("cp", f"shell:{target}/in.txt", str(back))
    assert back.read_text() == "copied through tar\n"


def test_python_client_exec_v4(cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    up, _, _ = cluster
    from kubernetes import client, config
    from kubernetes.stream import stream
    api_client = config.new_client_from_config(str(up.kubeconfig))
    try:
        core = client.CoreV1Api(api_client)
        out = stream(core.connect_get_namespaced_pod_exec, "shell", "default",
                     command=["sh", "-c", "echo from-python"], stderr=True, stdin=False,
                     stdout=True, tty=False)
        assert out == "from-python\n"
    finally:
        api_client.close()


def test_kubelet_requires_authentication(
        cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    up, _, port = cluster
    http = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False)
    r = http.request("GET", f"https://127.0.0.1:{port}/containerLogs/default/shell/main",
                     timeout=10)
    assert r.status == 401
    r = http.request("GET", f"https://127.0.0.1:{port}/healthz", timeout=10,
                     headers={"Authorization": "Bearer not-a-token"})
    assert r.status == 401
    # The node token authenticates, but is not allowed to read logs.
    node_token = (up.data_dir / "node-token").read_text().strip()
    r = http.request("GET", f"https://127.0.0.1:{port}/containerLogs/default/shell/main",
                     timeout=10, headers={"Authorization": f"Bearer {node_token}"})
    assert r.status == 403
    r = http.request("GET", f"https://127.0.0.1:{port}/containerLogs/default/shell/main",
                     timeout=10, headers={"Authorization": f"Bearer {up.token}"})
    assert r.status == 200 and r.data.startswith(b"one\n")


def test_attach_stdin(cluster: tuple[ServerProcess, AgentProcess, int]) -> None:
    """A container with stdin (stdinOnce): attach forwards stdin to it and streams what it
    writes; stdin's close ends it, and the attach with it."""
    up, _, _ = cluster
    up.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "attached"},
        "spec": {"nodeName": NODE, "restartPolicy": "Never",
                 "containers": [{"name": "main", "image": "busybox", "command": ["cat"],
                                 "stdin": True, "stdinOnce": True}]}}))
    running(up, "attached")
    p = up.kubectl("attach", "-i", "attached", input="hello\nworld\n", timeout=30)
    assert "hello\nworld\n" in p.stdout, (p.stdout, p.stderr)
    assert up.kubectl("logs", "attached").stdout == "hello\nworld\n"


def test_local_node_logs_and_exec(tmp_path: Path) -> None:
    """`pyk8s up`'s own node serves logs and exec too (its kubelet on an ephemeral port)."""
    up = ServerProcess(tmp_path, command="up", ready_log="deployment-controller: synced",
                       local_node=True, extra=["--node-name", "local-1", "--runtime",
                                               "process"]).start(timeout=40)
    try:
        wait_for("node Ready", lambda: " Ready " in up.kubectl(
            "get", "nodes", "local-1", "--no-headers", check=False).stdout, timeout=30)
        port = up.kubectl_json("get", "node", "local-1")["status"]["daemonEndpoints"][
            "kubeletEndpoint"]["Port"]
        assert port > 0
        up.kubectl("apply", "-f", "-", input=pod("local", "echo local-hello; exec sleep 60")
                   .replace(NODE, "local-1"))
        running(up, "local")
        wait_for("logs", lambda: up.kubectl("logs", "local").stdout == "local-hello\n")
        assert up.kubectl("exec", "local", "--", "echo", "x").stdout == "x\n"
        up.kubectl("delete", "pod", "local", "--wait=false")
    finally:
        up.stop()


def test_fake_runtime_logs_empty_exec_refused(
        cluster: tuple[ServerProcess, AgentProcess, int], tmp_path: Path) -> None:
    up, _, _ = cluster
    fake = AgentProcess(up, tmp_path, "--node-name", "stream-fake", "--runtime", "fake",
                        "--kubelet-port", str(free_port())).start()
    try:
        wait_for("node Ready", lambda: " Ready " in up.kubectl(
            "get", "nodes", "stream-fake", "--no-headers", check=False).stdout, timeout=30)
        up.kubectl("apply", "-f", "-", input=pod("hollow", "true").replace(NODE, "stream-fake"))
        running(up, "hollow")
        assert up.kubectl("logs", "hollow").stdout == ""
        p = up.kubectl("exec", "hollow", "--", "true", check=False)
        assert p.returncode != 0
        assert "the fake runtime does not support exec" in p.stderr, p.stderr
        up.kubectl("delete", "pod", "hollow", "--grace-period=0", "--force")
    finally:
        fake.stop()

"""Terminals with the process runtime (issue 19): a `tty: true` container's process runs on
a pseudo-terminal (its controlling terminal), whose output is its log (one `stdout`
stream) and that `kubectl run -it` / `kubectl attach -it` connect to; `kubectl exec -it`
and `attach -it` size it to the client's terminal. Real kubectl on a pseudo-terminal of
the test's own, against a real `pyk8s up --runtime process`."""
from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, wait_for
from tests.e2e.test_local_node import kill_marked, marked_pids, node_ready
from tests.e2e.test_oci_tty import Terminal

NODE = "proc-tty"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    up = ServerProcess(tmp_path_factory.mktemp("pyk8s-process-tty"), command="up",
                       ready_log="deployment-controller: synced", local_node=True,
                       extra=["--node-name", NODE, "--runtime", "process"])
    try:
        up.start(timeout=40)
        wait_for("node Ready", lambda: node_ready(up, NODE), timeout=30)
        yield up
    finally:
        up.stop()


def _kubectl_on_terminal(up: ServerProcess, *args: str, rows: int = 24,
                         cols: int = 80) -> Terminal:
    env = {**os.environ, "KUBECONFIG": str(up.kubeconfig), "TERM": "xterm"}
    return Terminal(["kubectl", *args], env, rows, cols)


def _apply(up: ServerProcess, name: str, **container: Any) -> None:
    up.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
                 "containers": [{"name": "main", "image": "busybox", **container}]}}))


def _phase(up: ServerProcess, name: str, phase: str) -> None:
    wait_for(f"{name} {phase}", lambda: up.kubectl_json("get", "pod", name)
             .get("status", {}).get("phase") == phase, timeout=30)


def _gone(up: ServerProcess, name: str) -> None:
    wait_for(f"pod {name} gone", lambda: up.kubectl("get", "pod", name, check=False)
             .returncode != 0, timeout=30)


def test_kubectl_run_it_rm_shell_prompt_echo_and_size(up: ServerProcess) -> None:
    """`kubectl run -it --rm`: the container's shell is on a terminal; kubectl attaches
    (a prompt once the user presses enter, typed text echoed, the client's size), and
    deletes the pod once the shell exits."""
    t = _kubectl_on_terminal(up, "run", "-it", "--rm", "--restart=Never", "tshell",
                             "--image=busybox", "--", "sh", rows=30, cols=90)
    try:
        t.expect(r"try pressing enter", timeout=60)
        t.expect(r"[#$] ", since=t.send("\n"))
        mark = t.send("echo hi $((6*7)) $TERM\n")
        # the terminal's echo, then the output: lines end in CR LF (no stair steps on the
        # client's raw terminal)
        t.expect(r"echo hi \$\(\(6\*7\)\) \$TERM\r\n", since=mark)
        t.expect(r"\r\nhi 42 xterm\r\n", since=mark)
        t.expect(r"\b30 90\b", since=t.send("stty size\n"))
        t.resize(40, 100)
        time.sleep(0.5)
        t.expect(r"\b40 100\b", since=t.send("stty size\n"))
        t.expect(r'pod "tshell" deleted', since=t.send("exit\n"))
        assert t.finish() == 0, t.out
    finally:
        t.close()
    _gone(up, "tshell")


def test_exec_it_terminal_has_the_clients_size(up: ServerProcess) -> None:
    _apply(up, "sized", command=["sleep", "3600"])
    _phase(up, "sized", "Running")
    t = _kubectl_on_terminal(up, "exec", "-it", "sized", "--", "sh", rows=37, cols=101)
    try:
        t.expect(r"[#$] ")
        t.expect(r"\b37 101\b", since=t.send("stty size\n"))
        t.resize(50, 132)   # the user resizes the window: kubectl sends the new size
        time.sleep(0.5)
        t.expect(r"\b50 132\b", since=t.send("stty size\n"))
        t.expect(r"\nterm=xterm", since=t.send("echo term=$TERM\n"))
        t.send("exit 4\n")
        assert t.finish() == 4, t.out
    finally:
        t.close()
    up.kubectl("delete", "pod", "sized", "--wait=false")


def test_tty_pod_log_is_the_terminals_output(up: ServerProcess) -> None:
    _apply(up, "ttylog", tty=True, command=[
        "sh", "-c", "test -t 0 && test -t 1 && echo on-a-tty TERM=$TERM; "
                    "echo to-stderr >&2; echo done"])
    _phase(up, "ttylog", "Succeeded")
    logs = up.kubectl("logs", "ttylog").stdout
    # Lines as containerd's CRI logger splits them: on "\n", a terminal's "\r\n" dropped.
    assert "on-a-tty TERM=xterm\nto-stderr\ndone\n" == logs, repr(logs)
    uid = up.kubectl_json("get", "pod", "ttylog")["metadata"]["uid"]
    records = (up.data_dir / "agent" / "pods" / uid / "main" / "0.log").read_text()
    assert {line.split(" ")[1] for line in records.splitlines()} == {"stdout"}, records
    up.kubectl("delete", "pod", "ttylog", "--wait=false")


def test_attach_it_then_stdin_once_closes_the_terminals_input(up: ServerProcess) -> None:
    """`kubectl attach -it` types into the container's terminal (echoed, sized to the
    client); with stdinOnce the input ends when that first session ends."""
    _apply(up, "once", tty=True, stdin=True, stdinOnce=True, command=[
        "sh", "-c", "read line; echo got=$line size=$(stty size); cat; echo input-ended; "
                    "sleep 3600"])
    _phase(up, "once", "Running")
    t = _kubectl_on_terminal(up, "attach", "-it", "once", rows=33, cols=77)
    try:
        t.expect(r"try pressing enter", timeout=30)
        time.sleep(1)   # attached: the size is sent as the session opens
        t.expect(r"got=hello size=33 77", since=t.send("hello\n"))
        t.proc.kill()   # the user goes away: the first session is over
        t.proc.wait()
    finally:
        t.close()
    wait_for("stdin closed", lambda: "input-ended" in up.kubectl(
        "logs", "once", check=False).stdout, timeout=20)
    assert "hello" in up.kubectl("logs", "once").stdout   # the terminal's echo
    up.kubectl("delete", "pod", "once", "--wait=false")


def test_deleting_a_tty_shell_pod_stops_its_jobs(up: ServerProcess) -> None:
    """An interactive shell on a terminal ignores SIGTERM and runs each job in a process
    group of its own: after the grace period everything of the container's session goes,
    and the pod with it."""
    marker = f"pyk8s-ttyjob-{uuid.uuid4().hex[:8]}"
    _apply(up, "ttysh", tty=True, stdin=True, command=["sh"])
    _phase(up, "ttysh", "Running")
    t = _kubectl_on_terminal(up, "attach", "-it", "ttysh")
    try:
        t.expect(r"try pressing enter", timeout=30)
        t.send(f"sh -c 'sleep 3600; : {marker}' &\n")
        wait_for("the job", lambda: marked_pids(marker), timeout=10)
        t.proc.kill()
        t.proc.wait()
        up.kubectl("delete", "pod", "ttysh", "--wait=false")
        _gone(up, "ttysh")
        assert marked_pids(marker) == []
    finally:
        t.close()
        kill_marked(marker)   # safety net only

"""Terminals of real containers (issue 19): `tty: true` containers get a terminal whose
output is their log (one `stdout` stream) and that `kubectl attach -it` / `kubectl run -it`
connect to; `kubectl exec -it` and `attach -it` resize it to the client's terminal (channel
4, TIOCSWINSZ). kubectl runs on a pseudo-terminal of the test's own, like a user's."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, needs_root, wait_for
from tests.e2e.test_oci_runtime import apply, pod, running_oci_node
from tests.registry import registry  # noqa: F401  (the session's local registry)

pytestmark = needs_root

NODE = "oci-tty"   # a node (and cgroup root) of its own: test_oci_runtime's may run alongside


@pytest.fixture(scope="module")
def oci(registry: Any, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
        ) -> Iterator[tuple[ServerProcess, Any]]:
    with running_oci_node(tmp_path_factory.mktemp("pyk8s-oci-tty"), registry, NODE) as up:
        yield up, registry


class Terminal:
    """A command on a pseudo-terminal of `rows` x `cols`: `expect` what it prints,
    `send` what a user types, `resize` the window (SIGWINCH, as a terminal emulator)."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int, cols: int) -> None:
        self.master, slave = pty.openpty()
        self._winsize(slave, rows, cols)
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     close_fds=True, start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.out = b""

    @staticmethod
    def _winsize(fd: int, rows: int, cols: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def resize(self, rows: int, cols: int) -> None:
        self._winsize(self.master, rows, cols)
        os.killpg(self.proc.pid, signal.SIGWINCH)

    def expect(self, pattern: str, timeout: float = 30.0, since: int = 0) -> str:
        """Wait until the output (from byte `since`) matches `pattern`; the text so far."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.out[since:].decode(errors="replace")):
            if time.monotonic() > deadline or not self._read(deadline - time.monotonic()):
                raise AssertionError(f"{pattern!r} not in {self.out.decode(errors='replace')!r}")
        return self.out.decode(errors="replace")

    def _read(self, timeout: float) -> bool:
        r, _, _ = select.select([self.master], [], [], max(min(timeout, 0.5), 0))
        if r:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return False
            if not data:
                return False
            self.out += data
        return True

    def send(self, text: str) -> int:
        """Type `text`; the output offset before it (for `expect(..., since=)`)."""
        mark = len(self.out)
        os.write(self.master, text.encode())
        return mark

    def finish(self, timeout: float = 30.0) -> int:
        """Read to the end; the command's exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._read(0.1) and select.select([self.master], [], [], 0)[0]:
            pass
        return self.proc.wait(timeout=5)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def _kubectl_on_terminal(up: Any, *args: str, rows: int = 24, cols: int = 80) -> Terminal:
    env = {**os.environ, "KUBECONFIG": str(up.kubeconfig), "TERM": "xterm"}
    return Terminal(["kubectl", *args], env, rows, cols)


def test_exec_it_terminal_has_the_clients_size(oci: Any) -> None:
    up, reg = oci
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sized"},
               "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                   "name": "main", "image": reg.image("busybox"),
                   "command": ["sleep", "3600"]}]}})
    wait_for("Running", lambda: pod(up, "sized").get("status", {}).get("phase") == "Running",
             timeout=60)
    t = _kubectl_on_terminal(up, "exec", "-it", "sized", "--", "sh", rows=37, cols=101)
    try:
        t.expect(r"# ")
        t.expect(r"\b37 101\b", since=t.send("stty size\n"))
        t.resize(50, 132)   # the user resizes the window: kubectl sends the new size
        time.sleep(0.5)
        t.expect(r"\b50 132\b", since=t.send("stty size\n"))
        t.send("exit 4\n")
        assert t.finish() == 4, t.out
    finally:
        t.close()
    up.kubectl("delete", "pod", "sized", "--wait=false")


def test_kubectl_run_it_rm_shell_prompt_echo_and_size(oci: Any) -> None:
    """`kubectl run -it --rm`: the pod's container has a terminal; kubectl attaches to it
    (a prompt once the user presses enter, typed text echoed, the client's size), and
    deletes the pod once the shell exits."""
    up, reg = oci
    t = _kubectl_on_terminal(up, "run", "-it", "--rm", "--restart=Never", "tshell",
                             f"--image={reg.image('busybox')}", "--", "sh", rows=30, cols=90)
    try:
        t.expect(r"try pressing enter", timeout=90)
        t.expect(r"/ # ", since=t.send("\n"))
        mark = t.send("echo hi $((6*7))\n")
        # the terminal's echo, then the output, lines in CR LF (no stair steps)
        t.expect(r"echo hi \$\(\(6\*7\)\)\r\n", since=mark)
        t.expect(r"\r\nhi 42\r\n", since=mark)
        t.expect(r"\b30 90\b", since=t.send("stty size\n"))
        t.resize(40, 100)
        time.sleep(0.5)
        t.expect(r"\b40 100\b", since=t.send("stty size\n"))
        t.expect(r'pod "tshell" deleted', since=t.send("exit\n"))
        assert t.finish() == 0, t.out
    finally:
        t.close()
    wait_for("pod gone", lambda: up.kubectl("get", "pod", "tshell", check=False)
             .returncode != 0, timeout=20)


def test_tty_pod_log_is_the_terminals_output(oci: Any) -> None:
    up, reg = oci
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ttylog"},
               "spec": {"restartPolicy": "Never", "containers": [{
                   "name": "main", "image": reg.image("busybox"), "tty": True,
                   "command": ["sh", "-c", "test -t 1 && echo on-a-tty TERM=$TERM; "
                                           "echo to-stderr >&2; echo done"]}]}})
    wait_for("Succeeded", lambda: pod(up, "ttylog").get("status", {}).get("phase")
             == "Succeeded", timeout=60)
    logs = up.kubectl("logs", "ttylog").stdout
    # Lines as containerd's CRI logger splits them: on "\n", a terminal's "\r\n" dropped.
    assert "on-a-tty TERM=xterm\nto-stderr\ndone\n" == logs, repr(logs)
    uid = pod(up, "ttylog")["metadata"]["uid"]
    records = (up.data_dir / "agent" / "pods" / uid / "main" / "0.log").read_text()
    streams = {line.split(" ")[1] for line in records.splitlines()}
    assert streams == {"stdout"}, records   # a terminal is one stream
    up.kubectl("delete", "pod", "ttylog", "--wait=false")


def test_tty_shell_pod_deleted_after_its_grace_period(oci: Any) -> None:
    """sh as pid 1 on a terminal ignores SIGTERM: SIGKILL once the grace period is over,
    the terminal let go and the pod gone."""
    up, reg = oci
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ttysh"},
               "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                   "name": "main", "image": reg.image("busybox"), "tty": True,
                   "stdin": True, "command": ["sh"]}]}})
    wait_for("Running", lambda: pod(up, "ttysh").get("status", {}).get("phase") == "Running",
             timeout=60)
    t0 = time.monotonic()
    up.kubectl("delete", "pod", "ttysh", "--wait=false")
    wait_for("pod gone", lambda: up.kubectl("get", "pod", "ttysh", check=False)
             .returncode != 0, timeout=20)
    assert time.monotonic() - t0 >= 1.5


def test_attach_it_then_stdin_once_closes_the_terminals_input(oci: Any) -> None:
    """`kubectl attach -it` types into the container's terminal (echoed, resized to the
    client); with stdinOnce the input ends when that first session ends."""
    up, reg = oci
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "once"},
               "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                   "name": "main", "image": reg.image("busybox"), "tty": True,
                   "stdin": True, "stdinOnce": True, "command": [
                       "sh", "-c", "read line; echo got=$line size=$(stty size); cat; "
                                   "echo input-ended; sleep 3600"]}]}})
    wait_for("Running", lambda: pod(up, "once").get("status", {}).get("phase") == "Running",
             timeout=60)
    t = _kubectl_on_terminal(up, "attach", "-it", "once", rows=33, cols=77)
    try:
        t.expect(r"try pressing enter", timeout=30)
        time.sleep(1)   # attached: the size is sent as the session opens
        mark = t.send("hello\n")
        t.expect(r"got=hello size=33 77", since=mark)
        t.proc.kill()   # the user goes away: the first session is over
        t.proc.wait()
    finally:
        t.close()
    wait_for("stdin closed", lambda: "input-ended" in up.kubectl(
        "logs", "once", check=False).stdout, timeout=20)
    assert "hello" in up.kubectl("logs", "once").stdout   # the terminal's echo
    up.kubectl("delete", "pod", "once", "--wait=false")

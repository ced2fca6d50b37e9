"""`tty: true` containers of the process runtime, on real pseudo-terminals: the program's
stdin / stdout / stderr and controlling terminal are the terminal, its output is the log's
one `stdout` stream, attach writes to it and resizes it, stdinOnce's close is end of input,
and a shell's jobs (process groups of their own) go with the container. Under asyncio's
loop and under uvloop (what the agent runs), which start children differently."""
from __future__ import annotations

import asyncio
import os
import re
import termios
from pathlib import Path
from typing import Any, Callable

import pytest
import uvloop

from pyk8s.kubelet import crilog
from pyk8s.kubelet.containertty import ContainerTerminal, pump_terminal
from pyk8s.kubelet.runtimes.process import ProcessRuntime, session_members

JOB = re.compile(r"job=(\d+)")
POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {}}


async def _until(what: str, check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Any], Any]:
    return asyncio.run if request.param == "asyncio" else uvloop.run


def _records(path: Path) -> set[str]:
    return {line.split(" ")[1] for line in path.read_text().splitlines()}


def test_tty_container_reads_and_writes_its_terminal(tmp_path: Path, run: Any) -> None:
    async def main() -> None:
        rt = ProcessRuntime(tmp_path)
        rt.set_pod(POD, "127.0.0.1")
        cid = await rt.create_container("u1", {
            "name": "t", "tty": True, "stdin": True, "stdinOnce": True, "command": [
                "sh", "-c", "test -t 0 && test -t 1 && test -t 2 && echo on-a-tty $TERM; "
                            "echo to-stderr >&2; read line; echo got=$line size=$(stty size) "
                            "tty=$(ps -o tty= -p $$ | tr -d ' ' | grep -c pts); "
                            "cat; echo input-ended"]})
        await rt.start_container(cid)
        path = tmp_path / "pods" / "u1" / "t" / "0.log"
        await _until("the first line", lambda: "to-stderr" in crilog.read_output(path))
        _, status, writer, once = rt.attach_context("u1", "t")
        term = rt.terminal("u1", "t")
        assert isinstance(term, ContainerTerminal) and writer is term and once
        term.resize(101, 37)
        writer.write(b"hello\n")
        await writer.drain()
        await _until("the size", lambda: "got=hello" in crilog.read_output(path))
        writer.write(b"more\n")
        await writer.drain()
        writer.close()   # stdinOnce: the session ended, cat reads end of input
        await _until("exit", lambda: status.state == "exited")
        assert status.exit_code == 0, crilog.read_output(path)
        out = crilog.read_output(path)
        assert "on-a-tty xterm\nto-stderr\n" in out, out
        assert "got=hello size=37 101 tty=1\n" in out, out   # its controlling terminal
        assert "more\n" in out and out.endswith("input-ended\n"), out
        assert _records(path) == {"stdout"}      # a terminal is one stream
        assert term.is_closing()                 # released with the container
        await rt.remove_pod("u1")

    run(main())


def test_tty_without_stdin_takes_no_input(tmp_path: Path, run: Any) -> None:
    async def main() -> None:
        rt = ProcessRuntime(tmp_path)
        rt.set_pod(POD, "127.0.0.1")
        cid = await rt.create_container("u1", {"name": "t", "tty": True,
                                               "command": ["sleep", "30"]})
        await rt.start_container(cid)
        _, _, writer, once = rt.attach_context("u1", "t")
        assert writer is None and not once
        assert rt.terminal("u1", "t") is not None   # resizes still apply
        await rt.kill_container(cid, 0)
        await rt.remove_pod("u1")

    run(main())


def test_killing_a_tty_shell_kills_its_jobs(tmp_path: Path, run: Any) -> None:
    """An interactive shell on a terminal shows its prompt and runs each job in a process
    group of its own; SIGKILL after the grace period (the shell ignores SIGTERM) reaches
    the whole session."""
    async def main() -> None:
        rt = ProcessRuntime(tmp_path)
        rt.set_pod(POD, "127.0.0.1")
        cid = await rt.create_container("u1", {"name": "sh", "tty": True, "stdin": True,
                                               "command": ["sh", "-i"]})
        await rt.start_container(cid)
        pid = rt._containers[cid].proc.pid  # type: ignore[union-attr]
        _, status, writer, _ = rt.attach_context("u1", "sh")
        path = tmp_path / "pods" / "u1" / "sh" / "0.log"
        # Its prompt, waiting for input, is in the log (what attach shows).
        await _until("the prompt", lambda: crilog.read_output(path).endswith(("# ", "$ ")))
        writer.write(b"sleep 300 &\necho job=$!\n")
        await writer.drain()
        await _until("the job", lambda: JOB.search(crilog.read_output(path)))
        job = int(JOB.findall(crilog.read_output(path))[-1])
        assert os.getpgid(job) != pid and os.getsid(job) == pid   # a group of its own
        await rt.kill_container(cid, 0.5)
        assert status.state == "exited" and status.exit_code == 137
        await _until("the session gone", lambda: not session_members(pid))
        await rt.remove_pod("u1")

    run(main())


def test_pump_terminal_writes_a_waiting_prompt(tmp_path: Path, run: Any) -> None:
    """Output left without its newline while the terminal is idle (a prompt) reaches the
    log as a P record; a line's "\\r\\n" is never cut in two."""
    path = tmp_path / "0.log"

    async def main() -> None:
        master, slave = os.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST   # the bytes as written
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        [pump] = await pump_terminal(master, path)
        os.write(slave, b"$ ")
        await _until("the prompt", lambda: path.exists() and path.read_text())
        os.write(slave, b"ls\r")
        await asyncio.sleep(0.3)
        os.write(slave, b"\nend")
        os.close(slave)
        await asyncio.wait_for(pump, 10)

    run(main())
    recs = [crilog.parse_record(line) for line in path.read_bytes().splitlines()]
    assert [(r.partial, r.content) for r in recs if r] == [
        (True, b"$ "), (False, b"ls"), (True, b"end")]
    assert crilog.read_output(path) == "$ ls\nend"

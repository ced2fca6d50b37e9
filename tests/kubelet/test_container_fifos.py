"""A container's stdio as named FIFOs (crilog.make_stdio_fifos / container_stdio /
pump_fifos) and the records the oci runtime adopts after a crash: real processes write to
the FIFOs, real pidfds watch processes that are not our children."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pyk8s.kubelet import crilog
from pyk8s.kubelet.procfs import start_time
from pyk8s.kubelet.reaper import AdoptedProcess
from pyk8s.kubelet.runtime import ContainerStatus
from pyk8s.kubelet.runtimes import ociconfig
from pyk8s.kubelet.runtimes.oci import _Ctr, _Sandbox, read_record, write_record


def _spawn(d: Path, script: str, stdin_once: bool = False) -> subprocess.Popen[bytes]:
    """A "container": `sh -c script` on the FIFOs' container ends (closed here after)."""
    fin, out, err = crilog.container_stdio(d, stdin_once=stdin_once)
    try:
        return subprocess.Popen(["sh", "-c", script], stdin=fin if fin >= 0 else None,
                                stdout=out, stderr=err, start_new_session=True)
    finally:
        for fd in (fin, out, err):
            if fd >= 0:
                os.close(fd)


async def _until(what: str, cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():   # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_pumps_end_when_the_container_exits(tmp_path: Path) -> None:
    crilog.make_stdio_fifos(tmp_path, stdin=False)
    proc = _spawn(tmp_path, "echo out; echo err >&2; sleep 0.3; echo bye")
    pumps = await crilog.pump_fifos(tmp_path, tmp_path / "0.log")
    # EOF once the container's processes (the only writers) are gone.
    await asyncio.wait_for(asyncio.gather(*pumps), 10)
    assert proc.wait(5) == 0
    assert crilog.read_output(tmp_path / "0.log") == "out\nerr\nbye\n"
    assert crilog.read_output(tmp_path / "0.log", crilog.STDERR) == "err\n"


async def test_output_survives_the_agent_and_continues_in_the_same_log(
        tmp_path: Path) -> None:
    """The pumping agent goes away (its read ends closed, as by SIGKILL): the container
    writes on without SIGPIPE (its own read-write end keeps a reader), what it writes
    meanwhile waits in the pipe; a new agent pumps on, appending to the same log."""
    crilog.make_stdio_fifos(tmp_path, stdin=False)
    proc = _spawn(tmp_path, "i=0; while [ $i -lt 30 ]; do echo line $i; i=$((i+1)); "
                            "sleep 0.05; done")
    log = tmp_path / "0.log"
    pumps = await crilog.pump_fifos(tmp_path, log)
    await _until("a first line", lambda: "line 0" in crilog.read_output(log))
    for t in pumps:      # the agent dies
        t.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)
    await asyncio.sleep(0.5)
    assert proc.poll() is None          # still writing: no SIGPIPE
    pumps = await crilog.pump_fifos(tmp_path, log)   # the restarted agent
    await asyncio.wait_for(asyncio.gather(*pumps), 10)
    assert proc.wait(5) == 0
    out = crilog.read_output(log)
    assert out.startswith("line 0\n") and out.endswith("line 29\n"), out
    assert "line 15\n" in out


async def test_stdin_stays_open_unless_stdin_once(tmp_path: Path) -> None:
    """stdin: read-write for the container (never EOF: it outlives the agent's writer);
    with stdinOnce read-only, so closing the agent's writer is its end of input."""
    for once in (False, True):
        d = tmp_path / str(once)
        d.mkdir()
        crilog.make_stdio_fifos(d, stdin=True)
        fin, out, err = crilog.container_stdio(d, stdin_once=once)
        # The writer first, as the runtime opens it between `runc create` and `runc
        # start`: a FIFO read without any writer is EOF.
        fd = crilog.stdin_writer(d)
        assert fd is not None
        proc = subprocess.Popen(["sh", "-c", "read line; echo got $line; cat; echo eof"],
                                stdin=fin, stdout=out, stderr=err, start_new_session=True)
        for end in (fin, out, err):
            os.close(end)
        pumps = await crilog.pump_fifos(d, d / "0.log")
        os.write(fd, b"hello\n")
        await _until("the line", lambda: "got hello" in crilog.read_output(d / "0.log"))
        os.close(fd)            # the agent's writer goes
        if once:
            await asyncio.wait_for(asyncio.gather(*pumps), 10)
            assert crilog.read_output(d / "0.log").endswith("eof\n")
        else:
            await asyncio.sleep(0.3)
            assert proc.poll() is None and "eof" not in crilog.read_output(d / "0.log")
            fd = crilog.stdin_writer(d)   # a restarted agent writes on
            assert fd is not None
            os.write(fd, b"again\n")
            os.close(fd)
            await _until("the next line", lambda: "again" in crilog.read_output(d / "0.log"))
            os.killpg(proc.pid, signal.SIGKILL)   # sh and its cat
            await asyncio.wait_for(asyncio.gather(*pumps), 10)
        proc.wait(5)


async def test_adopted_process_is_watched_by_pidfd(tmp_path: Path) -> None:
    """A process that is not our child (its parent, a shell, exits at once and leaves it
    to init): its end seen, its exit status unknown; a wrong start time refuses it."""
    out = subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True).stdout
    pid = int(out)
    started = start_time(pid)
    assert started is not None
    with pytest.raises(ProcessLookupError):
        AdoptedProcess(pid, started + 1)
    p = AdoptedProcess(pid, started)
    waiter = asyncio.ensure_future(p.wait())
    await asyncio.sleep(0.2)
    assert not waiter.done()
    p.send_signal(signal.SIGKILL)
    await asyncio.wait_for(waiter, 10)
    assert p.exited and p.exit_code() is None
    p.send_signal(signal.SIGKILL)       # gone: a no-op
    with pytest.raises(ProcessLookupError):
        AdoptedProcess(pid, started)


def test_records_round_trip_atomically(tmp_path: Path) -> None:
    d = tmp_path / "pods" / "uid-1"
    d.mkdir(parents=True)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "uid-1"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]},
           "status": {"phase": "Running"}}
    sb = _Sandbox("uid-1", pod, d, ip="10.1.0.5", ips=["10.1.0.5"], netns="/ns/net",
                  paths=ociconfig.PodSandboxPaths(net="/ns/net", ipc="/ns/ipc", uts="/ns/uts",
                                                  hosts=str(d / "hosts")),
                  network_up=True, hostname="p")
    write_record(d / "sandbox.json", sb.record())
    assert [p.name for p in d.iterdir()] == ["sandbox.json"]    # no temporary file left
    back = _Sandbox.from_record(read_record(d / "sandbox.json") or {}, d)
    assert back.pod == {k: v for k, v in pod.items() if k != "status"}
    assert (back.ip, back.ips, back.netns, back.paths, back.network_up, back.hostname) == \
        (sb.ip, sb.ips, sb.netns, sb.paths, True, "p")
    with pytest.raises(ValueError):      # another pod's record
        _Sandbox.from_record(sb.record(), tmp_path)

    st = ContainerStatus(name="c", image="busybox", image_id="reg/busybox@sha256:ab",
                         container_id="containerd://abc", state="running",
                         started_at="2024-01-01T00:00:00Z", restart_count=3)
    c = _Ctr("abc", "uid-1", pod["spec"]["containers"][0], st, tmp_path / "abc",
             "/pyk8s-n/poduid-1/abc", pid=4242, started=99)
    write_record(d / "container-abc.json", c.record())
    back_c = _Ctr.from_record(read_record(d / "container-abc.json") or {})
    assert (back_c.id, back_c.pod_uid, back_c.spec, back_c.status, back_c.bundle,
            back_c.cgroup, back_c.pid, back_c.started, back_c.created) == \
        (c.id, c.pod_uid, c.spec, c.status, c.bundle, c.cgroup, 4242, 99, c.created)
    (d / "container-bad.json").write_bytes(b'{"id": "bad"')
    assert read_record(d / "container-bad.json") is None
    with pytest.raises(KeyError):
        _Ctr.from_record({"id": "bad"})


def test_fifos_never_raise_sigpipe_for_the_container(tmp_path: Path) -> None:
    """No reader of ours at all: writes still succeed (the container's own end reads)."""
    crilog.make_stdio_fifos(tmp_path, stdin=False)
    proc = _spawn(tmp_path, "echo one; echo two >&2; echo three")
    assert proc.wait(10) == 0     # with anonymous pipes: -SIGPIPE

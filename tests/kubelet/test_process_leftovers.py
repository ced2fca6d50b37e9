"""What a process-runtime agent killed with SIGKILL leaves running: each container's session
is recorded while it runs (and only then); the next runtime on the same data dir kills
every recorded session whose leader is still the recorded process, and never a process
that merely has the recorded pid (another start time, another boot)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from pyk8s.kubelet.procfs import proc_stat
from pyk8s.kubelet.runtimes.process import (GROUPS_DIR, ProcessRuntime, SessionRecords,
                                            session_members)
from tests.conftest import ROOT, wait_for

# An agent's runtime: two containers (one on a terminal), each a shell and its `sleep`s;
# their pids on stdout, then it waits to be killed. (The terminal's hangup when
# the agent dies is ignored, as by a daemon, so that both outlive it.)
AGENT = """
import asyncio, sys
from pyk8s.kubelet.runtimes.process import ProcessRuntime

async def main():
    rt = ProcessRuntime(sys.argv[1])
    rt.set_pod({"metadata": {"name": "p", "uid": "u1"}}, "")
    for name, tty in (("plain", False), ("tty", True)):
        cid = await rt.create_container("u1", {"name": name, "tty": tty, "command": [
            "sh", "-c", "trap '' HUP; sleep 300 & sleep 300"]})
        await rt.start_container(cid)
        print(rt._containers[cid].proc.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _kill_sessions(sids: list[int]) -> None:
    """Safety net: what a failed test left."""
    for sid in sids:
        for pid in session_members(sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_next_start_kills_what_a_killed_agent_left(tmp_path: Path) -> None:
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(tmp_path)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    sids: list[int] = []
    try:
        assert agent.stdout is not None
        sids = [int(agent.stdout.readline()) for _ in range(2)]
        wait_for("each shell and its two sleeps", lambda: all(
            len(session_members(sid)) == 3 for sid in sids), timeout=10)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        # Both shells and their `sleep`s outlive the agent, and so do the records.
        assert all(len(session_members(sid)) == 3 for sid in sids)
        records = sorted((tmp_path / GROUPS_DIR).glob("*.json"))
        assert sorted(json.loads(f.read_text())["sid"] for f in records) == sorted(sids)
        assert (tmp_path / "pods" / "u1").is_dir()

        rt = ProcessRuntime(tmp_path)
        asyncio.run(rt.start())
        assert [sid for sid in sids if session_members(sid)] == []
        assert list((tmp_path / GROUPS_DIR).iterdir()) == []
        assert list((tmp_path / "pods").iterdir()) == []   # the old instances' logs
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        _kill_sessions(sids)


def test_a_recycled_pid_is_never_killed(tmp_path: Path) -> None:
    records = SessionRecords(tmp_path)
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        st = proc_stat(other.pid)
        assert st is not None
        real = {"sid": other.pid, "start": st.start,
                "boot": Path("/proc/sys/kernel/random/boot_id").read_text().strip()}
        tmp_path.mkdir(exist_ok=True)
        for name, rec in (("later", {**real, "start": st.start + 1}),   # another process
                          ("reboot", {**real, "boot": "another-boot"})):
            (tmp_path / f"{name}.json").write_text(json.dumps(rec))
        (tmp_path / "broken.json").write_text("{")
        (tmp_path / ".cut-short.tmp").write_text(json.dumps(real))   # never renamed
        assert records.kill_leftovers() == []
        assert other.poll() is None
        assert list(tmp_path.iterdir()) == []    # all forgotten

        (tmp_path / "same.json").write_text(json.dumps(real))
        assert records.kill_leftovers() == [other.pid]
        assert other.wait(10) == -signal.SIGKILL
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


def test_records_last_as_long_as_the_container(tmp_path: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(tmp_path)
        rt.set_pod({"metadata": {"name": "p", "uid": "u1"}}, "")
        cid = await rt.create_container("u1", {"name": "c", "command": ["sleep", "30"]})
        await rt.start_container(cid)
        record = tmp_path / GROUPS_DIR / f"{cid}.json"
        pid = rt._containers[cid].proc.pid  # type: ignore[union-attr]
        assert json.loads(record.read_text())["sid"] == pid
        await rt.kill_container(cid, 1)
        assert not record.exists()
        bad = await rt.create_container("u1", {"name": "bad", "command": ["/nonexistent"]})
        await rt.start_container(bad)   # StartError: nothing ran, nothing recorded
        assert list((tmp_path / GROUPS_DIR).iterdir()) == []
        await rt.remove_pod("u1")

    asyncio.run(main())

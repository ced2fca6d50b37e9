"""Processes the kubelet reaps without having spawned them: container processes and
detached execs that runc started and left, reparented to the kubelet (it is the child
subreaper, syscalls.set_child_subreaper). Their exit status comes from waitpid(), woken by
a pidfd (polled on kernels without pidfd_open).

AdoptedProcess is the other kind: a container's init that an earlier agent (killed) started.
It was re-parented to init when that agent died, so nobody here can waitpid() it: its end
is seen through a pidfd (readable once the process has exited, reaped or not), its exit
status stays unknown."""
from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from pyk8s.kubelet.procfs import gone, start_time

# Not our child (any more): nobody can tell its status; call it killed.
UNKNOWN_STATUS = signal.SIGKILL


async def _readable(fd: int) -> None:
    """Until `fd` is readable (a pidfd is once its process has exited)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


class ReapedProcess:
    """`wait()` and `returncode` as asyncio's Process has them (negative: the signal that
    killed it); `send_signal()` by pidfd, which never hits a recycled pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = None
        try:
            self._pidfd = os.pidfd_open(pid)
        except OSError:
            self._pidfd = -1

    def _reap(self) -> bool:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, UNKNOWN_STATUS
        if pid == 0:
            return False
        self.returncode = os.waitstatus_to_exitcode(status)
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        return True

    async def wait(self) -> int:
        while self.returncode is None and not self._reap():
            if self._pidfd < 0:
                await asyncio.sleep(0.1)
                continue
            await _readable(self._pidfd)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal it unless it has been reaped; a process already gone is fine."""
        if self.returncode is not None:
            return
        try:
            if self._pidfd >= 0:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def exit_code(self) -> int:
        """The status as a shell shows it: 128 + signal for a killed process."""
        rc = self.returncode if self.returncode is not None else 0
        return 128 - rc if rc < 0 else rc


class AdoptedProcess:
    """A process that is not our child, watched until it exits: `wait()` (its exit status
    is unknown) and `send_signal()` by pidfd. Raises ProcessLookupError when `pid` is gone
    or, with `started`, is another process now."""

    def __init__(self, pid: int, started: int | None = None) -> None:
        self.pid = pid
        self.exited = False
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise
        except OSError:   # no pidfd_open (Linux < 5.3): /proc, polled
            self._pidfd = -1
        if gone(pid) or (started is not None and start_time(pid) != started):
            self._close()
            raise ProcessLookupError(pid)

    def _close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    async def wait(self) -> None:
        """Until the process has exited."""
        while not self.exited:
            if self._pidfd < 0:
                if gone(self.pid):
                    self.exited = True
                else:
                    await asyncio.sleep(0.2)
                continue
            await _readable(self._pidfd)
            self.exited = True
            self._close()

    def send_signal(self, sig: int) -> None:
        """Signal it unless it has exited (a pidfd never hits a recycled pid)."""
        if self.exited:
            return
        try:
            if self._pidfd >= 0:
                signal.pidfd_send_signal(self._pidfd, sig)
            elif not gone(self.pid):
                os.kill(self.pid, sig)
        except OSError:
            pass

    def exit_code(self) -> None:
        """Unknown: whoever reaps the process (init) gets its status."""
        return None


def _children() -> list[int]:
    """This process's children (every thread's: an orphan is re-parented to one of them)."""
    out: list[int] = []
    for tid in os.listdir("/proc/self/task"):
        try:
            out += [int(p) for p in Path(f"/proc/self/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return out


def _zombie_in_child_pid_ns(pid: int) -> bool:
    """A zombie whose pid namespace is nested in ours (a container's process)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return fields.get("State", "").strip().startswith("Z") and \
        len(fields.get("NSpid", "").split()) > 1


def reap_orphans(tracked: set[int]) -> list[int]:
    """Reap the container processes re-parented to us that nobody waits for: a process
    `runc exec` started, whose runc went away (its session's client died), ends as our
    zombie. Besides the leak, the container's init cannot finish exiting while any
    process of its pid namespace is unreaped (the kernel's zap_pid_ns_processes waits for
    them), so a SIGKILLed container would never be seen gone. `tracked`: pids a
    ReapedProcess waits for (left to it). Our own direct children (runc, …: our pid
    namespace) are left to whoever spawned them. The pids reaped."""
    reaped = []
    for pid in _children():
        if pid in tracked or not _zombie_in_child_pid_ns(pid):
            continue
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
        except ChildProcessError:
            pass
    return reaped

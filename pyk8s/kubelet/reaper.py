"""Processes the kubelet reaps without having spawned them: container processes and
detached execs that runc started and left, reparented to the kubelet (it is the child
subreaper, syscalls.set_child_subreaper). Their exit status comes from waitpid(), woken by
a pidfd (polled on kernels without pidfd_open)."""
from __future__ import annotations

import asyncio
import os
import signal

# Not our child (any more): nobody can tell its status; call it killed.
UNKNOWN_STATUS = signal.SIGKILL


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
        loop = asyncio.get_running_loop()
        while self.returncode is None and not self._reap():
            if self._pidfd < 0:
                await asyncio.sleep(0.1)
                continue
            ready = loop.create_future()
            fd = self._pidfd
            loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(fd)
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

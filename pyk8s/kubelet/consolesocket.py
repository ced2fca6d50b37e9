"""The OCI runtimes' console socket (`runc exec --tty --console-socket PATH`): the runtime
creates the terminal inside the container (its own /dev/pts) and hands us the master end
over a Unix socket (SCM_RIGHTS), as containerd does for `kubectl exec -it`.

runc takes a console socket only with `--detach`, so the command is detached: the runtime
exits once the process runs, and the process, reparented to us (the kubelet is the child
subreaper of its containers), is waited for by the pid the runtime writes to `--pid-file`.

A runtime asks for all this by putting `--console-socket PATH` and `--pid-file FILE` in the
exec argv it returns; the streaming code listens on PATH before starting the command,
relays the master and waits for the process in FILE."""
from __future__ import annotations

import asyncio
import os
import secrets
import socket
import tempfile
from pathlib import Path
from typing import Any

FLAG = "--console-socket"


def new_socket_path() -> str:
    """A fresh path, short enough for a Unix socket (108 bytes)."""
    return os.path.join(tempfile.gettempdir(), f"pyk8s-console-{secrets.token_hex(8)}.sock")


def _flag(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv[:-1]):
        if a == flag:
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def socket_path(argv: list[str]) -> str | None:
    """The console socket an exec argv asks for, if any."""
    return _flag(argv, FLAG)


def pid_file(argv: list[str]) -> str | None:
    return _flag(argv, "--pid-file")


class ConsoleSocketError(Exception):
    pass


class ConsoleSocket:
    """A listening socket at `path` (0600); `receive()` the terminal master's fd."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            Path(path).unlink(missing_ok=True)
            self.sock.bind(path)
            os.chmod(path, 0o600)
            self.sock.listen(1)
            self.sock.setblocking(False)
        except OSError:
            self.close()
            raise

    async def receive(self, proc: "asyncio.subprocess.Process", timeout: float = 30.0) -> int:
        """The master fd the runtime sends; ConsoleSocketError if `proc` exits first."""
        exited = asyncio.ensure_future(proc.wait())
        try:
            return await self.receive_until(exited, timeout)
        finally:
            exited.cancel()

    async def receive_until(self, runtime: "asyncio.Future[Any]", timeout: float = 30.0
                            ) -> int:
        """The master fd the runtime sends; ConsoleSocketError if the `runtime` future (its
        run) is done first. The future is left running."""
        loop = asyncio.get_running_loop()
        accept = asyncio.ensure_future(loop.sock_accept(self.sock))
        done, _ = await asyncio.wait({accept, runtime}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if accept not in done:
            accept.cancel()
            raise ConsoleSocketError("the runtime did not send the terminal"
                                     + (" (it exited)" if runtime.done() else ""))
        conn, _ = accept.result()
        with conn:
            conn.setblocking(True)
            conn.settimeout(timeout)
            try:
                _, fds, _, _ = await loop.run_in_executor(None, socket.recv_fds, conn, 4096, 1)
            except OSError as e:
                raise ConsoleSocketError(f"receiving the terminal: {e}") from None
        if not fds:
            raise ConsoleSocketError("the runtime sent no terminal")
        for extra in fds[1:]:
            os.close(extra)
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

"""The terminal of a `tty: true` container: the master end of the pty the OCI runtime made
inside the container (`runc create --console-socket`), kept by the kubelet as containerd's
shim keeps it (or the master of a pty the process runtime made for a host process). Its
output is pumped into the container's log (one `stdout` stream, `pump_terminal`); attach
sessions write their stdin to it (`write` / `drain` / `close`, the calls they make on a
stdin pipe's StreamWriter) and resize it (TIOCSWINSZ)."""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios

from pyk8s.kubelet import crilog

EOF = b"\x04"   # ^D: end of input on a terminal in canonical mode
# How long output without a newline (a shell's prompt) waits for the rest of its line
# before what there is goes to the log as a P record.
PROMPT_FLUSH_SECONDS = 0.05


async def pump_terminal(master: int, path: str | os.PathLike[str]
                        ) -> list[asyncio.Task[None]]:
    """Pump a terminal's output (its master `master`, which the task then owns) into the
    container's log `path` as `stdout` records, as crilog.pump_pipes does, except that a
    line left incomplete while the terminal is idle — a prompt waiting for input — is
    written as a P record: `kubectl logs` renders the same text, and `kubectl attach`,
    which follows the log, shows the prompt."""
    logf = crilog.LogFile(path)
    transport, reader = await crilog.pipe_reader(master)

    async def pump() -> None:
        sp = crilog.LineSplitter()
        try:
            while True:
                waiting = bool(sp.buf) and not sp.buf.endswith(b"\r")   # not half a \r\n
                try:
                    data = await (asyncio.wait_for(reader.read(65536), PROMPT_FLUSH_SECONDS)
                                  if waiting else reader.read(65536))
                except asyncio.TimeoutError:
                    logf.write(crilog.STDOUT, sp.close())
                    continue
                except OSError:   # EIO: the container's side is closed
                    data = b""
                if not data:
                    break
                logf.write(crilog.STDOUT, sp.feed(data))
        finally:
            logf.write(crilog.STDOUT, sp.close())
            transport.close()
            logf.close()
    return [asyncio.create_task(pump(), name=f"log {path} terminal")]


class ContainerTerminal:
    """Stdin and window size of a container's terminal (its own dup of the master)."""

    def __init__(self, master: int, stdin: bool) -> None:
        self.fd = os.dup(master)
        os.set_blocking(self.fd, False)
        self.stdin = stdin          # the container asked for stdin: attach may write
        self._buf = bytearray()
        self._closing = not stdin
        self._released = False
        self._flushed: asyncio.Future[None] | None = None

    # -- stdin, as a StreamWriter of a pipe -------------------------------------------------
    def is_closing(self) -> bool:
        return self._closing or self._released

    def write(self, data: bytes) -> None:
        if self.is_closing():
            return
        self._buf += data
        self._flush()

    async def drain(self) -> None:
        while self._buf and not self._released:
            loop = asyncio.get_running_loop()
            if self._flushed is None or self._flushed.done():
                self._flushed = loop.create_future()
                loop.add_writer(self.fd, self._on_writable)
            await asyncio.shield(self._flushed)

    def _on_writable(self) -> None:
        self._flush()
        if not self._buf or self._released:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_writer(self.fd)
            if self._flushed is not None and not self._flushed.done():
                self._flushed.set_result(None)

    def _flush(self) -> None:
        while self._buf and not self._released:
            try:
                n = os.write(self.fd, self._buf)
            except BlockingIOError:
                return
            except OSError:   # the container is gone
                self._buf.clear()
                return
            del self._buf[:n]

    def close(self) -> None:
        """stdinOnce: the first attach session ended; the program reads end of input."""
        if self.is_closing():
            return
        self._buf += EOF
        self._flush()
        self._closing = True

    # -- size -----------------------------------------------------------------------------
    def resize(self, width: int, height: int) -> None:
        if self._released or width <= 0 or height <= 0:
            return
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.fd, termios.TIOCSWINSZ,
                        struct.pack("HHHH", min(height, 0xFFFF), min(width, 0xFFFF), 0, 0))

    def release(self) -> None:
        """The container exited: let go of the master."""
        if self._released:
            return
        self._released = True
        self._closing = True
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_writer(self.fd)
        if self._flushed is not None and not self._flushed.done():
            self._flushed.set_result(None)
        os.close(self.fd)

"""A tty container's terminal as the kubelet holds it (containertty.py), on a real
pseudo-terminal pair: attach's stdin reaches the program, stdinOnce's close is end of input,
resizes set the window size, and after release nothing is written."""
from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import struct
import termios

from pyk8s.kubelet.containertty import ContainerTerminal
from pyk8s.kubelet.streaming import _winsize


def _read_all(fd: int) -> bytes:
    out = b""
    os.set_blocking(fd, False)
    try:
        while True:
            out += os.read(fd, 4096)
    except BlockingIOError:
        return out


def test_stdin_close_and_resize() -> None:
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO   # the program's side: what it reads, without the echo
    termios.tcsetattr(slave, termios.TCSANOW, attrs)

    async def main() -> None:
        t = ContainerTerminal(master, stdin=True)
        t.write(b"hello\n")
        await t.drain()
        t.resize(120, 40)
        t.close()            # stdinOnce: ^D, then nothing more goes in
        t.write(b"late\n")
        assert t.is_closing()
        t.release()
        t.release()
        t.resize(10, 10)     # released: ignored

    asyncio.run(main())
    try:
        assert os.read(slave, 100) == b"hello\n"
        assert os.read(slave, 100) == b""        # ^D at the start of a line: end of input
        assert _read_all(slave) == b""           # "late" never written
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(slave, termios.TIOCGWINSZ,
                                                             b"\0" * 8))
        assert (rows, cols) == (40, 120)
    finally:
        os.close(master)
        os.close(slave)


def test_no_stdin_writes_nothing() -> None:
    master, slave = pty.openpty()
    try:
        t = ContainerTerminal(master, stdin=False)
        assert t.is_closing()
        t.write(b"ignored\n")
        t.close()
        t.release()
        assert _read_all(slave) == b""
    finally:
        os.close(master)
        os.close(slave)


def test_resize_frames() -> None:
    assert _winsize(b'{"Width":101,"Height":37}') == (101, 37)
    assert _winsize(b"not json") is None
    assert _winsize(b"[1,2]") is None

"""The Kubernetes remote-command streaming protocol over WebSocket (upstream's
`k8s.io/apimachinery/pkg/util/remotecommand` / `kubelet/cri/streaming`): binary frames
whose first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize);
`v5.channel.k8s.io` adds the stdin close frame `ff 00`; `base64.channel.k8s.io` sends text
frames, the channel as an ASCII digit followed by base64 data."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import logging
import os
import pty
import signal
import struct
import subprocess
import termios
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from pyk8s.kubelet import consolesocket, crilog
from pyk8s.kubelet.reaper import ReapedProcess

log = logging.getLogger("pyk8s.kubelet.streaming")

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "base64.channel.k8s.io",
             "channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255


def exit_status(code: int | None, message: str = "") -> bytes:
    """What upstream writes on the error channel (v4+): a metav1.Status."""
    if code == 0:
        return orjson.dumps({"metadata": {}, "status": "Success"})
    if code is None:
        return orjson.dumps({"metadata": {}, "status": "Failure", "message": message,
                             "reason": "InternalError", "code": 500})
    return orjson.dumps({
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
                   f"[{message}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}})


def query_bool(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "t", "yes", "y")


class Channels:
    """Writes and decodes channel frames for the negotiated subprotocol."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.protocol = ws.ws_protocol or "channel.k8s.io"
        self.b64 = self.protocol.startswith("base64")
        self.lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        if self.ws.closed:
            return
        async with self.lock:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                if self.b64:
                    await self.ws.send_str(chr(ord("0") + channel) +
                                           base64.b64encode(data).decode())
                else:
                    await self.ws.send_bytes(bytes([channel]) + data)

    def decode(self, msg: Any) -> tuple[int, bytes] | None:
        if msg.type == WSMsgType.BINARY and msg.data:
            return msg.data[0], msg.data[1:]
        if msg.type == WSMsgType.TEXT and msg.data and not self.b64:
            # Text frames of the binary protocols (the Python client's write_channel(str)).
            return ord(msg.data[0]), msg.data[1:].encode()
        if msg.type == WSMsgType.TEXT and msg.data:
            try:
                return ord(msg.data[0]) - ord("0"), base64.b64decode(msg.data[1:])
            except ValueError:
                return None
        return None


def _winsize(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a resize frame: `{"Width": .., "Height": ..}`."""
    try:
        size = orjson.loads(data)
        return int(size.get("Width", 0)), int(size.get("Height", 0))
    except (ValueError, TypeError, AttributeError):
        return None


def _set_winsize(fd: int, data: bytes) -> None:
    size = _winsize(data)
    if size is None or size[0] <= 0 or size[1] <= 0:
        return
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", min(size[1], 0xFFFF), min(size[0], 0xFFFF), 0, 0))
    except OSError:
        pass


async def _pump(stream: asyncio.StreamReader, ch: Channels, channel: int) -> None:
    while True:
        try:
            data = await stream.read(32768)
        except OSError:   # a pty master reads EIO once the slave side is gone
            return
        if not data:
            return
        await ch.send(channel, data)


def _kill(pid: int) -> None:
    """SIGKILL the command's process group (a session of its own), or the process."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class _StartError(Exception):
    pass


async def _start_in_console(argv: list[str], env: dict[str, str], cwd: str | None
                            ) -> tuple[ReapedProcess, int]:
    """The runtime makes the terminal inside the container and sends us its master; the
    command runs detached (its pid in the argv's --pid-file)."""
    try:
        listener = consolesocket.ConsoleSocket(consolesocket.socket_path(argv) or "")
    except OSError as e:
        raise _StartError(f"console socket: {e}") from None
    runtime: asyncio.subprocess.Process | None = None
    try:
        runtime = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=env, cwd=cwd, start_new_session=True)
        master = await listener.receive(runtime)
    except (OSError, consolesocket.ConsoleSocketError) as e:
        if runtime is None:
            raise _StartError(str(e)) from None
        if runtime.returncode is None:
            _kill(runtime.pid)
        await runtime.wait()
        raise _StartError(await _stderr(runtime) or str(e)) from None
    finally:
        listener.close()
    pid_file = consolesocket.pid_file(argv) or ""
    try:
        if await runtime.wait() != 0:
            raise _StartError(await _stderr(runtime)
                              or f"the runtime exited with status {runtime.returncode}")
        try:
            with open(pid_file) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError) as e:
            raise _StartError(f"reading the pid file: {e}") from None
    except _StartError:
        os.close(master)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(pid_file)
    return ReapedProcess(pid), master


async def _stderr(proc: asyncio.subprocess.Process) -> str:
    if proc.stderr is None:
        return ""
    return (await proc.stderr.read()).decode(errors="replace").strip()


async def _start_on_pty(argv: list[str], env: dict[str, str], cwd: str | None
                        ) -> tuple[asyncio.subprocess.Process, int]:
    """A host process with a pty of ours as its controlling terminal."""
    master, slave = pty.openpty()

    def ctty() -> None:   # a session of its own, with the pty as controlling terminal
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=slave, stdout=slave, stderr=slave, env={"TERM": "xterm", **env},
            cwd=cwd, preexec_fn=ctty)
    except (OSError, subprocess.SubprocessError) as e:
        os.close(master)
        raise _StartError(str(e)) from None
    finally:
        os.close(slave)
    return proc, master


async def run_exec(ws: web.WebSocketResponse, argv: list[str], env: dict[str, str],
                   cwd: str | None, stdin: bool, stdout: bool, stderr: bool,
                   tty: bool) -> None:
    """Run `argv` (a host process, or an OCI runtime's exec) wired to the WebSocket;
    report its exit status on the error channel and close."""
    ch = Channels(ws)
    loop = asyncio.get_running_loop()
    master = -1
    transport = None
    proc: Any
    try:
        if tty:
            start = _start_in_console if consolesocket.socket_path(argv) else _start_on_pty
            proc, master = await start(argv, env, cwd)
        else:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE if stderr else asyncio.subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True)
    except (_StartError, OSError) as e:
        await ch.send(ERROR, exit_status(None, f"exec: {e}"))
        await ws.close()
        return
    if tty:
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(master, "rb", 0))
        pumps = [asyncio.create_task(_pump(reader, ch, STDOUT))]
    else:
        pumps = [asyncio.create_task(_pump(stream, ch, channel))
                 for stream, channel in ((proc.stdout, STDOUT), (proc.stderr, STDERR))
                 if stream is not None]

    def write_stdin(data: bytes) -> None:
        if tty:
            view = memoryview(data)
            while view:
                try:
                    n = os.write(master, view)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                view = view[n:]
        elif proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(data)

    def close_stdin() -> None:
        if tty:
            write_stdin(b"\x04")   # EOF on a terminal
        elif proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()

    async def read_client() -> None:
        async for msg in ws:
            frame = ch.decode(msg)
            if frame is None:
                continue
            channel, data = frame
            if channel == STDIN and stdin:
                write_stdin(data)
                if not tty and proc.stdin is not None:
                    with contextlib.suppress(ConnectionError):
                        await proc.stdin.drain()
            elif channel == RESIZE and tty:
                _set_winsize(master, data)
            elif channel == CLOSE and data[:1] == bytes([STDIN]):
                close_stdin()

    client = asyncio.create_task(read_client())
    waiter = asyncio.create_task(proc.wait())
    try:
        await asyncio.wait({waiter, client}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():   # the client went away: the command goes too
            _kill(proc.pid)
            await waiter
            return
        code = waiter.result()
        if code < 0:
            code = 128 - code
        # What the process wrote before exiting; a pty may hold on to a leftover reader.
        await asyncio.wait(pumps, timeout=2.0)
        await ch.send(ERROR, exit_status(code, " ".join(argv)))
        await ws.close()
    finally:
        for t in (*pumps, client, waiter):
            t.cancel()
        if transport is not None:
            transport.close()
        if proc.returncode is None:
            _kill(proc.pid)


async def run_attach(ws: web.WebSocketResponse, log_path: Any, status: Any,
                     writer: asyncio.StreamWriter | None, stdin_once: bool, stdin: bool,
                     stdout: bool, stderr: bool = False, terminal: Any = None) -> None:
    """Attach to a running container: its output from now on (tailed from its CRI log
    file: stdout records to the stdout channel, stderr records to the stderr channel) and,
    when the container has `stdin: true`, the client's stdin into its pipe (or its
    terminal). A `tty: true` container's `terminal` takes the client's sizes (channel 4).
    Ends when the container exits (Success on the error channel) or the client goes
    away."""
    ch = Channels(ws)
    renderers = {crilog.STDOUT: crilog.LogRenderer(streams=(crilog.STDOUT,)),
                 crilog.STDERR: crilog.LogRenderer(streams=(crilog.STDERR,))}
    wanted = {crilog.STDOUT: (stdout, STDOUT), crilog.STDERR: (stderr, STDERR)}

    async def tail() -> None:
        try:
            f = open(log_path, "rb")
        except FileNotFoundError:
            return
        with f:
            f.seek(0, os.SEEK_END)
            reader = crilog.LogRenderer()
            while True:
                exited = status.state == "exited"   # before the read: nothing is missed
                data = f.read(32768)
                if data:
                    for rec in reader.records(data):
                        on, channel = wanted[rec.stream]
                        out = renderers[rec.stream].render(rec)
                        if terminal is not None:   # CR LF as the terminal wrote it (the
                            # log keeps LF only): no stair steps on a raw-mode client
                            out = out.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                        if on and out:
                            await ch.send(channel, out)
                    continue
                if exited:
                    return
                await asyncio.sleep(0.1)

    def close_stdin() -> None:
        if writer is not None and stdin_once and not writer.is_closing():
            writer.close()

    async def read_client() -> None:
        async for msg in ws:
            frame = ch.decode(msg)
            if frame is None:
                continue
            channel, data = frame
            if channel == STDIN and stdin and writer is not None and not writer.is_closing():
                writer.write(data)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
            elif channel == RESIZE and terminal is not None:
                size = _winsize(data)
                if size is not None:
                    terminal.resize(*size)
            elif channel == CLOSE and data[:1] == bytes([STDIN]):
                close_stdin()

    tailer = asyncio.create_task(tail())
    client = asyncio.create_task(read_client())
    try:
        await asyncio.wait({tailer, client}, return_when=asyncio.FIRST_COMPLETED)
        if tailer.done():
            await ch.send(ERROR, exit_status(0))
            await ws.close()
    finally:
        tailer.cancel()
        client.cancel()
        # stdinOnce: the first attach session's end closes stdin, however it ends (the
        # handler is cancelled when the client's connection is lost).
        close_stdin()

"""The CRI container log format (what containerd / CRI-O write and upstream's kubelet
reads, pkg/kubelet/kuberuntime/logs): one record a line,

    <RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\\n

`F` ends a line of the container's output; `P` is a part of a line, the rest follows in
later records of the same stream (a line longer than MAX_LINE bytes is split; output that
ends without a newline is written as P). The writer side is `pump` (one per stream of a
container, asyncio); the reader side `LogRenderer`, which turns records back into the
container's output for `kubectl logs` (with `timestamps`, `since` and tail support).

A container's stdio are named FIFOs in its bundle (`make_stdio_fifos`), so that it
outlives the agent that pumps them: the container holds stdout / stderr opened read-write
— a reader always exists, so a write never raises SIGPIPE / EPIPE, it blocks once the pipe
buffer (64 KiB) is full while no agent reads — and the agent opens them read-only
(`pump_fifos`); a restarted agent opens them again and appends to the same log file. The
pump sees EOF when no writer is left: once every process of the container holding them
has exited (the agent holds no writer). What a container wrote while no agent ran is lost
only if it also exits before the next agent starts (the pipe goes with its last opener)."""
from __future__ import annotations

import asyncio
import calendar
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

STDOUT, STDERR = "stdout", "stderr"
FULL, PARTIAL = "F", "P"
# containerd's default max_container_log_line_size.
MAX_LINE = 16 * 1024

_TS = re.compile(rb"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                 rb"(?:([Zz])|([+-])(\d\d):(\d\d))$")


def format_timestamp(ns: int) -> str:
    """RFC3339 with nanoseconds, fixed width, UTC (upstream's RFC3339NanoFixed)."""
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def parse_timestamp(raw: bytes | str) -> int:
    """Nanoseconds since the epoch of an RFC3339 (optionally fractional) timestamp."""
    if isinstance(raw, str):
        raw = raw.encode()
    m = _TS.match(raw)
    if m is None:
        raise ValueError(f"not an RFC3339 timestamp: {raw!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or b""
    ns = int(frac.ljust(9, b"0")) if frac else 0
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    if m.group(9):
        off = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        secs -= off if m.group(9) == b"+" else -off
    return secs * 1_000_000_000 + ns


@dataclass
class Record:
    ts: int          # nanoseconds since the epoch
    stream: str      # stdout | stderr
    partial: bool
    content: bytes   # without the line's newline


def format_record(stream: str, partial: bool, content: bytes, ts: int | None = None) -> bytes:
    stamp = format_timestamp(time.time_ns() if ts is None else ts)
    return b"%s %s %s %s\n" % (stamp.encode(), stream.encode(),
                               PARTIAL.encode() if partial else FULL.encode(), content)


def parse_record(line: bytes) -> Record | None:
    """One line of a CRI log (with or without its newline); None if it is not one."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    try:
        ts = parse_timestamp(parts[0])
    except ValueError:
        return None
    stream = parts[1].decode("ascii", "replace")
    if stream not in (STDOUT, STDERR):
        return None
    tag = parts[2].split(b":")[0]   # tags are `:`-separated; the first is F / P
    return Record(ts, stream, tag == PARTIAL.encode(), parts[3] if len(parts) > 3 else b"")


class LineSplitter:
    """Cuts one stream's output into CRI records as containerd does: a record per line
    (without "\\n" or "\\r\\n"), a P record for each MAX_LINE bytes of a longer line, and
    a P record for what is left without a newline at the end of the stream."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        """(partial, content) records completed by `data`."""
        self.buf += data
        out: list[tuple[bool, bytes]] = []
        start = 0
        buf = self.buf
        while True:
            i = buf.find(b"\n", start, start + self.max_line + 2)
            if 0 <= i and i - start <= self.max_line:
                end = i - 1 if i > start and buf[i - 1] == 0x0D else i   # \r\n
                out.append((False, bytes(buf[start:end])))
                start = i + 1
            elif len(buf) - start > self.max_line:
                out.append((True, bytes(buf[start:start + self.max_line])))
                start += self.max_line
            else:
                break
        del buf[:start]
        return out

    def close(self) -> list[tuple[bool, bytes]]:
        """The end of the stream: what is left, as a partial record."""
        if not self.buf:
            return []
        rest = bytes(self.buf)
        self.buf.clear()
        return [(True, rest)]


class LogFile:
    """A container's log file, shared by the pumps of its stdout and stderr: each record
    is one write(2) to an O_APPEND file, so readers see whole lines promptly."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self.users = 0

    def write(self, stream: str, records: Iterable[tuple[bool, bytes]]) -> None:
        if self.fd < 0:
            return
        data = b"".join(format_record(stream, partial, content) for partial, content in records)
        if data:
            try:
                os.write(self.fd, data)
            except OSError:   # a full disk must not take the pump (and the pipe) down
                pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def write_message(path: str | os.PathLike[str], stream: str, text: str) -> None:
    """A runtime's own message (say, why the container could not start) as log records."""
    f = LogFile(path)
    try:
        sp = LineSplitter()
        f.write(stream, sp.feed(text.encode()) + sp.close())
    finally:
        f.close()


async def pump(reader: asyncio.StreamReader, stream: str, out: LogFile) -> None:
    """Copy one stream of a container into its log file until EOF (after the container
    exits: whatever is left in the pipe is drained)."""
    sp = LineSplitter()
    try:
        while True:
            try:
                data = await reader.read(65536)
            except OSError:
                data = b""
            if not data:
                break
            out.write(stream, sp.feed(data))
    finally:
        out.write(stream, sp.close())


async def pipe_reader(fd: int) -> tuple[asyncio.BaseTransport, asyncio.StreamReader]:
    """An asyncio StreamReader on the read end `fd` of a pipe (which it then owns)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2 ** 20)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    return transport, reader


async def pump_pipes(fds: list[tuple[int, str]], path: str | os.PathLike[str]
                     ) -> list[asyncio.Task[None]]:
    """Pump the read ends of a container's stdout / stderr pipes (fd, STDOUT | STDERR)
    into its log file as CRI records, one task per pipe; the file closes after the last."""
    logf = LogFile(path)
    logf.users = len(fds)

    async def one(reader: asyncio.StreamReader, stream: str,
                  transport: asyncio.BaseTransport) -> None:
        try:
            await pump(reader, stream, logf)
        finally:
            transport.close()
            logf.users -= 1
            if logf.users == 0:
                logf.close()

    tasks = []
    for fd, stream in fds:
        transport, reader = await pipe_reader(fd)
        tasks.append(asyncio.create_task(one(reader, stream, transport),
                                         name=f"log {path} {stream}"))
    return tasks


STDIN = "stdin"


def make_stdio_fifos(d: str | os.PathLike[str], stdin: bool) -> None:
    """The FIFOs `stdout`, `stderr` (and `stdin`) of a container in its bundle `d`."""
    for name in (STDOUT, STDERR) + ((STDIN,) if stdin else ()):
        os.mkfifo(os.path.join(d, name), 0o600)


def _open_fifo(path: str, flags: int, blocking: bool) -> int:
    """Open without waiting for the other end (O_NONBLOCK), then make the file blocking
    if asked (what the container gets: it must wait, not fail, on a full / empty pipe)."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)
    if blocking:
        os.set_blocking(fd, True)
    return fd


def container_stdio(d: str | os.PathLike[str], stdin_once: bool = False
                    ) -> tuple[int, int, int]:
    """The container's ends of its FIFOs in `d`: (stdin or -1, stdout, stderr), blocking.
    stdout / stderr read-write (never a write without a reader). stdin read-write too —
    it stays open for the container's lifetime, as upstream's without stdinOnce — except
    with `stdin_once`: read-only, so the container reads EOF once the agent closes its
    writer (the first attach session ended, or the agent died)."""
    fifo_in = os.path.join(d, STDIN)
    fds = [-1, -1, -1]
    try:
        if os.path.exists(fifo_in):
            fds[0] = _open_fifo(fifo_in, os.O_RDONLY if stdin_once else os.O_RDWR, True)
        fds[1] = _open_fifo(os.path.join(d, STDOUT), os.O_RDWR, True)
        fds[2] = _open_fifo(os.path.join(d, STDERR), os.O_RDWR, True)
    except OSError:
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        raise
    return fds[0], fds[1], fds[2]


def stdin_writer(d: str | os.PathLike[str]) -> int | None:
    """The agent's (non-blocking) write end of the container's stdin FIFO; None when
    there is none or the container no longer reads it."""
    try:
        return _open_fifo(os.path.join(d, STDIN), os.O_WRONLY, False)
    except OSError:   # ENOENT; ENXIO: no reader
        return None


async def pump_fifos(d: str | os.PathLike[str], path: str | os.PathLike[str]
                     ) -> list[asyncio.Task[None]]:
    """Pump the container's stdout / stderr FIFOs in `d` into its log file `path`
    (appended), as pump_pipes; each task ends at EOF (no writer left)."""
    fds: list[tuple[int, str]] = []
    try:
        for stream in (STDOUT, STDERR):
            fds.append((_open_fifo(os.path.join(d, stream), os.O_RDONLY, False), stream))
    except OSError:
        for fd, _ in fds:
            os.close(fd)
        raise
    return await pump_pipes(fds, path)


class LogRenderer:
    """Turns CRI records back into a container's output, as upstream's kubelet writes it
    for `kubectl logs`: each record's content, P records joined with what follows them on
    the same stream; with `timestamps`, each line prefixed with the RFC3339Nano time of its
    first record; records older than `since` (ns) left out. Feed it the file's bytes in
    any chunks."""

    def __init__(self, timestamps: bool = False, since: int | None = None,
                 streams: Iterable[str] = (STDOUT, STDERR)) -> None:
        self.timestamps = timestamps
        self.since = since
        self.streams = set(streams)
        self.pending = b""   # an incomplete last line of the file
        self.at_line_start = {STDOUT: True, STDERR: True}
        self.skip_continuation: set[str] = set()

    def render(self, rec: Record) -> bytes:
        start = self.at_line_start[rec.stream]
        self.at_line_start[rec.stream] = not rec.partial
        if rec.stream in self.skip_continuation:   # the rest of a line left out by tail
            if not rec.partial:
                self.skip_continuation.discard(rec.stream)
            return b""
        if rec.stream not in self.streams:
            return b""
        if self.since is not None and rec.ts < self.since:
            return b""
        out = rec.content if rec.partial else rec.content + b"\n"
        if self.timestamps and start:
            out = format_timestamp(rec.ts).encode() + b" " + out
        return out

    def records(self, data: bytes) -> list[Record]:
        data = self.pending + data
        lines = data.split(b"\n")
        self.pending = lines.pop()
        recs = []
        for line in lines:
            rec = parse_record(line)
            if rec is not None:   # not a CRI record: left out, as upstream does
                recs.append(rec)
        return recs

    def feed(self, data: bytes) -> bytes:
        return b"".join(self.render(r) for r in self.records(data))

    def feed_tail(self, data: bytes, lines: int) -> bytes:
        """Like feed, but only the last `lines` lines of the container's output (a
        line = a run of P records ended by an F record of the same stream)."""
        recs = self.records(data)
        starts = []
        at_start = dict(self.at_line_start)
        for i, r in enumerate(recs):
            if r.stream in self.streams and at_start[r.stream]:
                starts.append(i)
            at_start[r.stream] = not r.partial
        first = starts[-lines] if 0 < lines <= len(starts) else (
            len(recs) if lines <= 0 else 0)
        # Streams whose line began before `first` and continues after it: skip the rest.
        open_line = dict(self.at_line_start)
        for r in recs[:first]:
            open_line[r.stream] = not r.partial
        self.skip_continuation = {s for s, st in open_line.items() if not st}
        self.at_line_start = {STDOUT: True, STDERR: True}
        return b"".join(self.render(r) for r in recs[first:])


def read_output(path: str | os.PathLike[str], stream: str | None = None) -> str:
    """The container's output recorded in a CRI log file (for tests and tools)."""
    p = Path(path)
    if not p.exists():
        return ""
    r = LogRenderer(streams=(STDOUT, STDERR) if stream is None else (stream,))
    return r.feed(p.read_bytes()).decode(errors="replace")

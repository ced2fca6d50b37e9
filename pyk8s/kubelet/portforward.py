"""Port forwarding to a pod (upstream's `kubelet/cri/streaming/portforward`), over a
WebSocket in two dialects:

- `SPDY/3.1+portforward.k8s.io` (kubectl ≥ 1.31): SPDY/3.1 frames tunnelled in WebSocket
  binary messages. Per forwarded connection the client opens two streams sharing a
  `requestid` header, `streamtype: error` and `streamtype: data`, both with a `port`
  header; the data stream carries the bytes, a failure is written as text on the error
  stream.
- `v4.channel.k8s.io` (and plain `channel.k8s.io` / `portforward.k8s.io`), `?ports=a,b`
  (the official Python client): one connection per port for the WebSocket's lifetime; port
  i's data on channel 2i and errors on 2i+1, each channel's first frame the port number
  (uint16 little-endian)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import Any, Awaitable, Callable

from aiohttp import WSMsgType, web

from pyk8s.kubelet import spdy

# A runtime's way into a pod's network namespace: port → connection to localhost:port there.
Dialer = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

log = logging.getLogger("pyk8s.kubelet.portforward")

SPDY_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
CHANNEL_PROTOCOLS = ("v4.channel.k8s.io", "channel.k8s.io", "portforward.k8s.io")
PROTOCOLS = (SPDY_PROTOCOL, *CHANNEL_PROTOCOLS)
CHUNK = 32 * 1024
PAIR_TIMEOUT = 30.0
REFUSED = "the container runtime does not support port forwarding"


def parse_ports(values: list[str]) -> list[int]:
    """`?ports=80,443&ports=8080` → [80, 443, 8080]; ValueError on a bad port."""
    ports = []
    for v in values:
        for p in v.split(","):
            p = p.strip()
            if not p:
                continue
            n = int(p)
            if not 0 < n < 65536:
                raise ValueError(f"invalid port {p}")
            ports.append(n)
    return ports


async def _dial(host: "str | Dialer | None", port: int
                ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the pod's port: on `host`, or through the runtime's dialer (inside the
    pod's network namespace); `host` None: the runtime cannot forward (`REFUSED`)."""
    if host is None:
        raise OSError(REFUSED)
    try:
        if callable(host):
            return await asyncio.wait_for(host(port), 10)
        return await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    except asyncio.TimeoutError:
        raise OSError(f"dial tcp4 {_addr(host)}:{port}: i/o timeout") from None
    except OSError as e:
        reason = "connection refused" if isinstance(e, ConnectionRefusedError) else \
            (e.strerror or str(e)).lower()
        raise OSError(f"dial tcp4 {_addr(host)}:{port}: connect: {reason}") from None


def _addr(host: "str | Dialer") -> str:
    return "127.0.0.1" if callable(host) else host


def _error_message(port: int, pod: str, uid: str, err: Exception) -> str:
    return f"error forwarding port {port} to pod {pod}, uid {uid}: {err}"


# -- v4 channel protocol ------------------------------------------------------------------

async def run_channels(ws: web.WebSocketResponse, host: "str | Dialer | None", ports: list[int], pod: str,
                       uid: str) -> None:
    lock = asyncio.Lock()

    async def send(channel: int, data: bytes) -> None:
        if ws.closed:
            return
        async with lock:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await ws.send_bytes(bytes([channel]) + data)

    writers: dict[int, asyncio.StreamWriter | None] = {}
    pending: dict[int, list[bytes]] = {i: [] for i in range(len(ports))}
    for i, port in enumerate(ports):
        lohi = struct.pack("<H", port)
        await send(2 * i, lohi)
        await send(2 * i + 1, lohi)

    async def forward(i: int, port: int) -> None:
        try:
            reader, writer = await _dial(host, port)
        except OSError as e:
            writers[i] = None
            await send(2 * i + 1, _error_message(port, pod, uid, e).encode())
            return
        writers[i] = writer
        for data in pending.pop(i, []):
            writer.write(data)
        try:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    break
                if not data:
                    break
                await send(2 * i, data)
        finally:
            writer.close()

    async def read_client() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel % 2 or channel // 2 >= len(ports) or not data:
                continue
            i = channel // 2
            if i not in writers:
                pending.setdefault(i, []).append(data)   # still dialling
                continue
            w = writers[i]
            if w is not None and not w.is_closing():
                w.write(data)
                with contextlib.suppress(ConnectionError):
                    await w.drain()

    forwards = [asyncio.create_task(forward(i, p)) for i, p in enumerate(ports)]
    client = asyncio.create_task(read_client())
    try:
        done = asyncio.gather(*forwards, return_exceptions=True)
        await asyncio.wait({done, client}, return_when=asyncio.FIRST_COMPLETED)
        if not client.done():
            await ws.close()
    finally:
        for t in (*forwards, client):
            t.cancel()
        for w in writers.values():
            if w is not None:
                w.close()


# -- SPDY over WebSocket ------------------------------------------------------------------

class _Stream:
    def __init__(self, sid: int, headers: spdy.Headers) -> None:
        self.id = sid
        self.headers = headers
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.local_fin = False
        self.reset = False

    def header(self, name: str) -> str:
        return (self.headers.get(name) or [""])[0]


class SpdySession:
    def __init__(self, ws: web.WebSocketResponse, host: "str | Dialer | None", pod: str,
                 uid: str) -> None:
        self.ws = ws
        self.host = host
        self.pod = pod
        self.uid = uid
        self.reader = spdy.FrameReader()
        self.comp = spdy.HeaderCompressor()
        self.lock = asyncio.Lock()
        self.streams: dict[int, _Stream] = {}
        self.pairs: dict[str, dict[str, _Stream]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.last_id = 0

    async def _write(self, build: Any) -> None:
        """Build (header compression keeps frame order) and send under one lock."""
        if self.ws.closed:
            return
        async with self.lock:
            frame = build()
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await self.ws.send_bytes(frame)

    async def send_data(self, st: _Stream, data: bytes, fin: bool = False) -> None:
        if st.local_fin or st.reset:
            return
        if fin:
            st.local_fin = True
        await self._write(lambda: spdy.data_frame(st.id, data, fin))

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                try:
                    frames = self.reader.feed(msg.data)
                except spdy.ProtocolError as e:
                    log.warning("port-forward: %s", e)
                    await self._write(lambda: spdy.goaway(self.last_id, 1))
                    break
                for f in frames:
                    if await self._handle(f):
                        return
        finally:
            for t in list(self.tasks):
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.ws.close()

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _handle(self, f: spdy.Frame) -> bool:
        """Handle one frame; True ends the session."""
        if f.type == 0:
            st = self.streams.get(f.stream_id)
            if st is None:
                return False
            if f.data:
                st.inbox.put_nowait(f.data)
            if f.fin:
                st.inbox.put_nowait(None)
        elif f.type == spdy.SYN_STREAM:
            await self._syn_stream(f)
        elif f.type == spdy.RST_STREAM:
            st = self.streams.pop(f.stream_id, None)
            if st is not None:
                st.reset = True
                st.inbox.put_nowait(None)
        elif f.type == spdy.PING:
            await self._write(lambda: spdy.ping(f.ping_id))
        elif f.type == spdy.GOAWAY:
            return True
        # SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do (spdystream has no flow control)
        return False

    async def _syn_stream(self, f: spdy.Frame) -> None:
        sid = f.stream_id
        self.last_id = max(self.last_id, sid)
        st = _Stream(sid, f.headers)
        kind, rid = st.header("streamtype"), st.header("requestid")
        try:
            int(st.header("port"))
            ok = kind in ("error", "data")
        except ValueError:
            ok = False
        if not ok or sid in self.streams:
            await self._write(lambda: spdy.syn_reply(self.comp, sid, fin=True))
            await self._write(lambda: spdy.rst_stream(sid, spdy.REFUSED_STREAM))
            return
        self.streams[sid] = st
        if f.fin:
            st.inbox.put_nowait(None)
        await self._write(lambda: spdy.syn_reply(self.comp, sid))
        pair = self.pairs.setdefault(rid, {})
        if kind in pair:   # a duplicate stream for the request
            await self._write(lambda: spdy.rst_stream(sid, spdy.PROTOCOL_ERROR))
            return
        pair[kind] = st
        if len(pair) == 2:
            del self.pairs[rid]
            self._spawn(self._forward(pair["data"], pair["error"]))
        else:
            self._spawn(self._pair_timeout(rid))

    async def _pair_timeout(self, rid: str) -> None:
        await asyncio.sleep(PAIR_TIMEOUT)
        pair = self.pairs.pop(rid, None)
        for st in (pair or {}).values():
            if st.header("streamtype") == "error":
                await self.send_data(st, b"timed out waiting for the data and error streams "
                                         b"of request " + rid.encode(), fin=True)
            else:
                await self.send_data(st, b"", fin=True)

    async def _forward(self, data: _Stream, err: _Stream) -> None:
        port = int(data.header("port"))
        writer = None
        try:
            try:
                reader, writer = await _dial(self.host, port)
            except OSError as e:
                await self.send_data(err, _error_message(port, self.pod, self.uid, e).encode())
                return

            async def upstream() -> None:   # client → pod
                while True:
                    chunk = await data.inbox.get()
                    if chunk is None:
                        if data.reset:
                            writer.close()
                        elif writer.can_write_eof():
                            with contextlib.suppress(OSError):
                                writer.write_eof()
                        return
                    writer.write(chunk)
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()

            up = asyncio.create_task(upstream())
            try:
                while not data.reset:
                    try:
                        chunk = await reader.read(CHUNK)
                    except OSError:
                        break
                    if not chunk:
                        break
                    await self.send_data(data, chunk)
            finally:
                up.cancel()
        finally:
            if writer is not None:
                writer.close()
            await self.send_data(data, b"", fin=True)
            await self.send_data(err, b"", fin=True)
            self.streams.pop(data.id, None)
            self.streams.pop(err.id, None)


async def run_spdy(ws: web.WebSocketResponse, host: "str | Dialer | None", pod: str, uid: str) -> None:
    await SpdySession(ws, host, pod, uid).run()

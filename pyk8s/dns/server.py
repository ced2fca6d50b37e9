"""The DNS server: UDP and TCP listeners (RFC 1035, RFC 7766 framing) on asyncio, dnslib for
the wire format.

- Each listen address is bound for UDP and TCP on the same port (port 0: a free one, the
  same for both), with `IP_FREEBIND` so an address that appears later (a pod bridge's
  gateway) can be bound before it exists.
- A query in the cluster zone (or a reverse name the cluster owns) is answered from
  `ClusterRecords` with the AA flag; anything else is forwarded (`Forwarder`), and a
  forward that fails is SERVFAIL. An ExternalName CNAME to an outside name is followed
  upstream, its records appended (as CoreDNS's upstream lookup does).
- Malformed queries get FORMERR (when the header can be read; shorter junk, and anything
  with the QR bit set, is dropped), opcodes other than QUERY get NOTIMP, a query with
  other than one question FORMERR. A failure of the lookup itself is SERVFAIL.
- UDP answers fit the client's size (512 bytes, or its EDNS0 payload size): a larger
  answer goes out truncated (TC, no records) so the client retries over TCP. An EDNS0
  query gets an OPT record back.
- At most `max_inflight` UDP queries are worked on at once; more are dropped (the
  clients retry). A TCP connection is closed after `idle_timeout` seconds without a query.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from typing import Sequence

from dnslib import CLASS, EDNS0, OPCODE, QTYPE, RCODE, DNSHeader, DNSRecord

from pyk8s.dns.forwarder import Forwarder
from pyk8s.dns.records import ClusterRecords

log = logging.getLogger("pyk8s.dns.server")

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux
UDP_MIN = 512
EDNS_PAYLOAD = 1232  # what we tell EDNS0 clients we accept (the DNS flag day's size)


class DNSHandler:
    """Bytes in, bytes out (None: send nothing)."""

    def __init__(self, records: ClusterRecords, forwarder: Forwarder | None) -> None:
        self.records = records
        self.forwarder = forwarder

    async def handle(self, data: bytes, *, tcp: bool) -> bytes | None:
        if len(data) < 12 or data[2] & 0x80:
            return None
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return error_reply(data, RCODE.FORMERR)
        if req.header.opcode != OPCODE.QUERY:
            return error_reply(data, RCODE.NOTIMP)
        if len(req.questions) != 1:
            return error_reply(data, RCODE.FORMERR)
        limit = 65535 if tcp else udp_limit(req)
        q = req.q
        try:
            ans = self.records.lookup(q.qname, q.qtype) if q.qclass == CLASS.IN else None
        except Exception:
            log.exception("lookup of %s %s failed", q.qname, QTYPE.get(q.qtype))
            return fit(self._reply(req, RCODE.SERVFAIL).pack(), limit)
        if ans is None:
            forwarded = None
            if self.forwarder is not None:
                forwarded = await self.forwarder.forward(data, tcp=tcp)
            if forwarded is None:
                return fit(self._reply(req, RCODE.SERVFAIL, aa=False).pack(), limit)
            return fit(forwarded, limit)
        reply = self._reply(req, ans.rcode)
        reply.rr, reply.auth = list(ans.answer), list(ans.authority)
        reply.ar = list(ans.additional) + reply.ar
        if ans.chase is not None and self.forwarder is not None:
            reply.rr += await self.forwarder.resolve(ans.chase, q.qtype)
        return fit(reply.pack(), limit)

    @staticmethod
    def _reply(req: DNSRecord, rcode: int, aa: bool = True) -> DNSRecord:
        reply = DNSRecord(DNSHeader(id=req.header.id, qr=1, aa=int(aa), rd=req.header.rd,
                                    ra=1, rcode=rcode), q=req.q)
        if any(r.rtype == QTYPE.OPT for r in req.ar):
            reply.add_ar(EDNS0(udp_len=EDNS_PAYLOAD))
        return reply


def error_reply(data: bytes, rcode: int) -> bytes:
    """A header-only answer to a query we could not (or will not) parse."""
    (qid, flags) = struct.unpack("!HH", data[:4])
    flags = 0x8000 | (flags & 0x7900) | 0x0080 | (rcode & 0xF)  # QR, opcode+RD, RA
    return struct.pack("!HHHHHH", qid, flags, 0, 0, 0, 0)


def udp_limit(req: DNSRecord) -> int:
    """The largest UDP answer the client takes: its EDNS0 payload size, at least 512."""
    for r in req.ar:
        if r.rtype == QTYPE.OPT:
            return max(UDP_MIN, min(int(r.rclass), 65535))
    return UDP_MIN


def fit(packet: bytes, limit: int) -> bytes:
    """`packet`, or when longer than `limit` its truncated form: TC set, records dropped
    (the OPT record kept)."""
    if len(packet) <= limit:
        return packet
    try:
        msg = DNSRecord.parse(packet)
    except Exception:
        return packet[:2] + bytes([packet[2] | 0x02]) + packet[3:4] + b"\0" * 8
    msg.header.tc = 1
    msg.rr, msg.auth = [], []
    msg.ar = [r for r in msg.ar if r.rtype == QTYPE.OPT]
    out: bytes = msg.pack()
    return out if len(out) <= limit else out[:2] + out[2:4] + b"\0" * 8


# -- listeners --------------------------------------------------------------------------------
class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: "DNSServer") -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(self.server.tasks) >= self.server.max_inflight:
            return
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = await self.server.handler.handle(data, tcp=False)
        except Exception:
            log.exception("query from %s failed", addr)
            return
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)


def bind_socket(host: str, port: int, kind: socket.SocketKind) -> socket.socket:
    """A bound, non-blocking socket with IP_FREEBIND (and SO_REUSEADDR for TCP)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        except OSError:
            pass  # not Linux: the address must exist already
        sock.setblocking(False)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same port (port 0: a free port both can have)."""
    for _ in range(20):
        udp = bind_socket(host, port, socket.SOCK_DGRAM)
        try:
            tcp = bind_socket(host, udp.getsockname()[1], socket.SOCK_STREAM)
        except OSError as e:
            udp.close()
            if port == 0 and e.errno == errno.EADDRINUSE:
                continue
            raise
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no free port for UDP and TCP on {host}")


class DNSServer:
    """The listeners of `listen` ((host, port) pairs) answering through `handler`."""

    def __init__(self, handler: DNSHandler, listen: Sequence[tuple[str, int]], *,
                 max_inflight: int = 1024, idle_timeout: float = 10.0) -> None:
        self.handler = handler
        self.listen = list(listen)
        self.max_inflight = max_inflight
        self.idle_timeout = idle_timeout
        self.tasks: set[asyncio.Task[None]] = set()
        self.addresses: list[tuple[str, int]] = []
        self._udp: list[tuple[asyncio.DatagramTransport, _UDPProtocol]] = []
        self._servers: list[asyncio.Server] = []
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind every address (an OSError closes what was bound and propagates)."""
        loop = asyncio.get_running_loop()
        try:
            for host, port in self.listen:
                udp, tcp = bind_pair(host, port)
                transport, proto = await loop.create_datagram_endpoint(
                    lambda: _UDPProtocol(self), sock=udp)
                self._udp.append((transport, proto))
                tcp.listen(128)
                self._servers.append(await asyncio.start_server(self._tcp_client, sock=tcp))
                self.addresses.append((host, udp.getsockname()[1]))
                log.info("DNS listening on %s port %d (UDP, TCP)", host, udp.getsockname()[1])
        except BaseException:
            await self.close()
            raise

    async def _tcp_client(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            while True:
                async with asyncio.timeout(self.idle_timeout):
                    (n,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(n)
                out = await self.handler.handle(data, tcp=True)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("TCP DNS connection failed")
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()

    async def close(self) -> None:
        """Close the sockets and drop the queries in flight."""
        for transport, _ in self._udp:
            transport.close()
        for s in self._servers:
            s.close()
        pending = list(self.tasks) + list(self._conns)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for s in self._servers:
            await s.wait_closed()
        await asyncio.gather(*(proto.closed for _, proto in self._udp))
        self._udp, self._servers = [], []


__all__ = ["DNSHandler", "DNSServer", "bind_socket", "bind_pair", "error_reply", "fit",
           "udp_limit"]

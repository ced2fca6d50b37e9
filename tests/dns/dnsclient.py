"""Asyncio DNS queries for the tests (the server under test runs in the same loop), and a
fake upstream resolver on 127.0.0.1. Nothing here sends to any address but loopback."""
from __future__ import annotations

import asyncio
import struct
from dnslib import QTYPE, RR, DNSRecord


class _Once(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)


async def udp_raw(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _Once, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(proto.answer, timeout)
    finally:
        transport.close()


async def tcp_raw(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            (n,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(n)
    finally:
        writer.close()


async def query(port: int, name: str, qtype: str = "A", *, tcp: bool = False,
                edns: bool = False) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    if edns:
        from dnslib import EDNS0
        q.add_ar(EDNS0(udp_len=4096))
    raw = await (tcp_raw if tcp else udp_raw)(port, q.pack())
    reply = DNSRecord.parse(raw)
    assert reply.header.id == q.header.id
    return reply


def rdatas(reply: DNSRecord, qtype: str | None = None) -> list[str]:
    return sorted(str(r.rdata) for r in reply.rr
                  if qtype is None or r.rtype == getattr(QTYPE, qtype))


class FakeUpstream:
    """A resolver on 127.0.0.1 (UDP and TCP, same port): `answers[(name, qtype)]` → records
    (names lowercase, no trailing dot); names in `truncate` get TC over UDP and the records
    over TCP; names in `silent` are never answered; others are NXDOMAIN."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], list[RR]] = {}
        self.truncate: set[str] = set()
        self.silent: set[str] = set()
        self.seen: list[tuple[str, str, str]] = []  # (transport, name, qtype)
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def answer(self, data: bytes, transport: str) -> bytes | None:
        q = DNSRecord.parse(data)
        name = str(q.q.qname).rstrip(".").lower()
        qtype = QTYPE[q.q.qtype]
        self.seen.append((transport, name, qtype))
        if name in self.silent:
            return None
        reply = q.reply()
        reply.header.aa = 0
        if name in self.truncate and transport == "udp":
            reply.header.tc = 1
            return bytes(reply.pack())
        rrs = self.answers.get((name, qtype))
        if rrs is None:
            reply.header.rcode = 3
        for rr in rrs or []:
            reply.add_answer(rr)
        return bytes(reply.pack())

    async def start(self) -> "FakeUpstream":
        from pyk8s.dns.server import bind_pair
        udp, tcp = bind_pair("127.0.0.1", 0)
        self.port = udp.getsockname()[1]
        up = self

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                out = up.answer(data, "udp")
                if out is not None:
                    self.transport.sendto(out, addr)  # type: ignore[attr-defined]

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                out = up.answer(await reader.readexactly(n), "tcp")
                if out is not None:
                    writer.write(struct.pack("!H", len(out)) + out)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(Proto, sock=udp)
        tcp.listen(16)
        self._tcp = await asyncio.start_server(client, sock=tcp)
        return self

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()


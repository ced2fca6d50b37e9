"""Forwarding of the names the cluster zone does not own (CoreDNS's `forward . /etc/resolv.conf`).

- The upstreams are the `nameserver` lines of a resolv.conf, in order (a zone id such as
  `%eth0` dropped), on port 53. Loopback resolvers such as systemd-resolved's 127.0.0.53
  are kept, as CoreDNS keeps them (its `loop` plugin halts on a loop instead): this server
  runs in the host's network namespace, where they answer. Only an upstream that is this
  server itself (one of its listen addresses, same port) is skipped. The file is read again
  when it changes.
- A query goes out with a fresh random ID (restored in the answer) over UDP; a truncated
  answer is asked again over TCP. A query that came over TCP is forwarded over TCP.
- Each attempt waits at most `attempt_timeout`; on error or timeout the next upstream is
  tried, round and round, until `timeout` has passed: then the caller answers SERVFAIL.
- Upstream answers, whatever their rcode, are passed on as they are.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import struct
import time
from pathlib import Path
from typing import Iterable

from dnslib import QTYPE, RR, DNSRecord

log = logging.getLogger("pyk8s.dns.forwarder")


def read_resolv_conf(path: str) -> list[str]:
    """The addresses of the `nameserver` lines of `path` (none if it is unreadable)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out: list[str] = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            out.append(parts[1].split("%", 1)[0])
    return out


class _UDPExchange(asyncio.DatagramProtocol):
    """Waits for the answer with our ID on a connected UDP socket."""

    def __init__(self, qid: bytes) -> None:
        self.qid = qid
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) >= 12 and data[:2] == self.qid and data[2] & 0x80 and \
                not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc or ConnectionError("socket closed"))


class Forwarder:
    """See the module docstring."""

    def __init__(self, resolv_conf: str, *, port: int = 53, timeout: float = 5.0,
                 attempt_timeout: float = 2.0,
                 exclude: Iterable[tuple[str, int]] = ()) -> None:
        self.resolv_conf = resolv_conf
        self.port = port
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.exclude = set(exclude)
        self._mtime: float | None = None
        self._loaded = False
        self._upstreams: list[tuple[str, int]] = []

    def upstreams(self) -> list[tuple[str, int]]:
        """(address, port) of every upstream, re-read when the file changed."""
        try:
            mtime: float | None = os.stat(self.resolv_conf).st_mtime
        except OSError:
            mtime = None
        if mtime != self._mtime or not self._loaded:
            self._mtime, self._loaded = mtime, True
            ups = [(ip, self.port) for ip in read_resolv_conf(self.resolv_conf)]
            for up in ups:
                if up in self.exclude:
                    log.warning("resolver %s:%d in %s is this server: skipped", *up,
                                self.resolv_conf)
            self._upstreams = [up for up in ups if up not in self.exclude]
            if not self._upstreams:
                log.warning("no upstream resolvers in %s: names outside the cluster get "
                            "SERVFAIL", self.resolv_conf)
        return self._upstreams

    async def forward(self, query: bytes, *, tcp: bool = False) -> bytes | None:
        """The upstream's answer to the wire-format `query` (its ID kept), or None when no
        upstream answered in time."""
        ups = self.upstreams()
        if not ups or len(query) < 12:
            return None
        deadline = time.monotonic() + self.timeout
        i = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            host, port = ups[i % len(ups)]
            i += 1
            rid = secrets.token_bytes(2)
            out = rid + query[2:]
            try:
                async with asyncio.timeout(min(left, self.attempt_timeout)):
                    if tcp:
                        answer = await self._tcp(host, port, out)
                    else:
                        answer = await self._udp(host, port, out)
                        if answer[2] & 0x02:  # TC: ask again over TCP
                            answer = await self._tcp(host, port, out)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                log.debug("upstream %s:%d: %s", host, port, e or type(e).__name__)
                continue
            return query[:2] + answer[2:]

    async def _udp(self, host: str, port: int, query: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _UDPExchange(query[:2]), remote_addr=(host, port))
        try:
            transport.sendto(query)
            return await proto.answer
        finally:
            transport.close()

    async def _tcp(self, host: str, port: int, query: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            await writer.drain()
            while True:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                answer = await reader.readexactly(n)
                if len(answer) >= 12 and answer[:2] == query[:2]:
                    return answer
        finally:
            writer.close()

    async def resolve(self, name: str, qtype: int) -> list[RR]:
        """The answer records of a recursive query upstream (none on any failure)."""
        q = DNSRecord.question(name, QTYPE[qtype])
        raw = await self.forward(q.pack())
        if raw is None:
            return []
        try:
            return list(DNSRecord.parse(raw).rr)
        except Exception:
            return []


__all__ = ["Forwarder", "read_resolv_conf"]

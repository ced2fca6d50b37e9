"""The DNS server over real UDP and TCP sockets on 127.0.0.1 (a free port)."""
from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path
from typing import AsyncIterator

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, A, DNSHeader, DNSQuestion, DNSRecord

from pyk8s.dns.forwarder import Forwarder
from pyk8s.dns.server import DNSHandler, DNSServer, bind_pair, fit
from tests.dns.dnsclient import FakeUpstream, query, rdatas, tcp_raw, udp_raw
from tests.dns.test_records import Cluster, ep, eslice, svc


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.answers[("example.com", "A")] = [RR("example.com", QTYPE.A, ttl=60, rdata=A("192.0.2.1"))]
    yield up
    await up.close()


@pytest.fixture
async def dns(tmp_path: Path, upstream: FakeUpstream) -> AsyncIterator[tuple[DNSServer, Cluster]]:
    c = Cluster()
    c.services.add(svc("web"))
    c.services.add(svc("db", ip="None", ports=[{"name": "pg", "port": 5432}]))
    c.slices.add(eslice("db-1", "db", [ep(f"10.1.{i // 250}.{i % 250 + 1}")
                                       for i in range(100)],
                        ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    c.services.add(svc("ext", ip=None, type="ExternalName", externalName="example.com"))
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    fwd = Forwarder(str(resolv), port=upstream.port, timeout=1.0, attempt_timeout=0.5)
    server = DNSServer(DNSHandler(c.records, fwd), [("127.0.0.1", 0)])
    await server.start()
    yield server, c
    await server.close()


def port_of(dns: tuple[DNSServer, Cluster]) -> int:
    return dns[0].addresses[0][1]


async def test_udp_and_tcp_answers(dns: tuple[DNSServer, Cluster]) -> None:
    port = port_of(dns)
    for tcp in (False, True):
        r = await query(port, "web.default.svc.cluster.local", tcp=tcp)
        assert r.header.rcode == RCODE.NOERROR and r.header.aa == 1 and r.header.qr == 1
        assert rdatas(r) == ["10.96.0.20"] and r.rr[0].ttl == 5
        r = await query(port, "nope.default.svc.cluster.local", tcp=tcp)
        assert r.header.rcode == RCODE.NXDOMAIN and QTYPE[r.auth[0].rtype] == "SOA"
        r = await query(port, "_pg._tcp.db.default.svc.cluster.local", "SRV", tcp=tcp)
        assert len(r.rr) == 100 or r.header.tc == 1


async def test_big_answers_are_truncated_over_udp_only(dns: tuple[DNSServer, Cluster]) -> None:
    port = port_of(dns)
    r = await query(port, "db.default.svc.cluster.local")  # 100 A records > 512 bytes
    assert r.header.tc == 1 and r.rr == []
    r = await query(port, "db.default.svc.cluster.local", tcp=True)
    assert r.header.tc == 0 and len(r.rr) == 100
    r = await query(port, "db.default.svc.cluster.local", edns=True)  # 4096 bytes fit
    assert r.header.tc == 0 and len(r.rr) == 100
    assert [QTYPE[x.rtype] for x in r.ar] == ["OPT"]


async def test_one_tcp_connection_many_queries(dns: tuple[DNSServer, Cluster]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(dns))
    try:
        for i in range(3):
            q = DNSRecord.question("web.default.svc.cluster.local")
            writer.write(struct.pack("!H", len(q.pack())) + q.pack())
            await writer.drain()
            (n,) = struct.unpack("!H", await reader.readexactly(2))
            r = DNSRecord.parse(await reader.readexactly(n))
            assert r.header.id == q.header.id and rdatas(r) == ["10.96.0.20"]
    finally:
        writer.close()


async def test_malformed_queries(dns: tuple[DNSServer, Cluster]) -> None:
    port = port_of(dns)
    junk = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x05abc"  # cut question
    for send in (udp_raw, tcp_raw):
        r = DNSRecord.parse(await send(port, junk))
        assert r.header.id == 0x1234 and r.header.rcode == RCODE.FORMERR and r.header.qr
    # two questions: FORMERR; an opcode other than QUERY: NOTIMP
    two = DNSRecord(DNSHeader(id=7), questions=[DNSQuestion("a.cluster.local"),
                                               DNSQuestion("b.cluster.local")])
    r = DNSRecord.parse(await udp_raw(port, two.pack()))
    assert r.header.rcode == RCODE.FORMERR
    notify = DNSRecord(DNSHeader(id=8, opcode=4), q=DNSQuestion("cluster.local"))
    r = DNSRecord.parse(await udp_raw(port, notify.pack()))
    assert r.header.rcode == RCODE.NOTIMP and r.header.id == 8
    # too short, or a response: no answer at all; the server keeps serving
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x01\x02\x03", ("127.0.0.1", port))
        reply = DNSRecord.question("web.default.svc.cluster.local").reply()
        s.sendto(reply.pack(), ("127.0.0.1", port))
    with pytest.raises(TimeoutError):
        await udp_raw(port, b"\x01\x02\x03", timeout=0.3)
    assert rdatas(await query(port, "web.default.svc.cluster.local")) == ["10.96.0.20"]


async def test_forwarding(dns: tuple[DNSServer, Cluster], upstream: FakeUpstream) -> None:
    port = port_of(dns)
    r = await query(port, "Example.COM")
    assert r.header.rcode == RCODE.NOERROR and rdatas(r) == ["192.0.2.1"]
    assert r.header.aa == 0
    r = await query(port, "example.com", tcp=True)
    assert rdatas(r) == ["192.0.2.1"] and upstream.seen[-1][0] == "tcp"
    r = await query(port, "nothing.example")
    assert r.header.rcode == RCODE.NXDOMAIN
    upstream.silent.add("slow.example")
    r = await query(port, "slow.example")
    assert r.header.rcode == RCODE.SERVFAIL
    # reverse names the cluster does not own go upstream too
    await query(port, "4.3.2.1.in-addr.arpa", "PTR")
    assert upstream.seen[-1][1:] == ("4.3.2.1.in-addr.arpa", "PTR")


async def test_external_name_is_chased_upstream(dns: tuple[DNSServer, Cluster]) -> None:
    r = await query(port_of(dns), "ext.default.svc.cluster.local")
    assert [(QTYPE[x.rtype], str(x.rdata)) for x in r.rr] == [
        ("CNAME", "example.com."), ("A", "192.0.2.1")]


async def test_lookup_errors_are_servfail(dns: tuple[DNSServer, Cluster]) -> None:
    server, c = dns

    def boom(*_: object) -> None:
        raise RuntimeError("boom")

    c.records.lookup = boom  # type: ignore[method-assign,assignment]
    r = await query(port_of(dns), "web.default.svc.cluster.local")
    assert r.header.rcode == RCODE.SERVFAIL


async def test_bind_pair_shares_the_port_and_freebind() -> None:
    udp, tcp = bind_pair("127.0.0.1", 0)
    try:
        assert udp.getsockname()[1] == tcp.getsockname()[1]
        assert tcp.type == socket.SOCK_STREAM and udp.type == socket.SOCK_DGRAM
    finally:
        udp.close()
        tcp.close()
    # IP_FREEBIND: an address this host does not have (yet) can be bound
    udp, tcp = bind_pair("192.0.2.53", 0)
    udp.close()
    tcp.close()


async def test_close_releases_the_port(dns: tuple[DNSServer, Cluster]) -> None:
    server, _ = dns
    port = port_of(dns)
    await server.close()
    udp, tcp = bind_pair("127.0.0.1", port)
    udp.close()
    tcp.close()


def test_fit() -> None:
    q = DNSRecord.question("x.cluster.local")
    q.add_ar(EDNS0(udp_len=4096))
    reply = q.reply()
    for i in range(60):
        reply.add_answer(RR("x.cluster.local", QTYPE.A, rdata=A(f"10.0.0.{i}")))
    reply.add_ar(EDNS0(udp_len=1232))
    packed = reply.pack()
    assert fit(packed, 65535) == packed
    small = DNSRecord.parse(fit(packed, 512))
    assert small.header.tc == 1 and small.rr == [] and len(small.ar) == 1

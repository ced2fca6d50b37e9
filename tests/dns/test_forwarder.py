"""The forwarder against fake upstream resolvers on 127.0.0.1 (never any other address)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import AsyncIterator

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from pyk8s.dns.forwarder import Forwarder, read_resolv_conf
from pyk8s.dns.server import bind_pair
from tests.dns.dnsclient import FakeUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.answers[("example.com", "A")] = [RR("example.com", QTYPE.A, ttl=60, rdata=A("192.0.2.1"))]
    up.answers[("big.example", "A")] = [RR("big.example", QTYPE.A, ttl=60,
                                           rdata=A(f"192.0.2.{i}")) for i in range(1, 60)]
    up.truncate.add("big.example")
    yield up
    await up.close()


def resolv(tmp_path: Path, *lines: str) -> str:
    p = tmp_path / "resolv.conf"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def test_read_resolv_conf(tmp_path: Path) -> None:
    path = resolv(tmp_path, "# generated", "search default.svc.cluster.local",
                  "nameserver 127.0.0.53", "nameserver   fe80::1%eth0  # link-local",
                  "options ndots:5", "nameserver", ";nameserver 127.0.0.9")
    # loopback resolvers are kept, as CoreDNS keeps them
    assert read_resolv_conf(path) == ["127.0.0.53", "fe80::1"]
    assert read_resolv_conf(str(tmp_path / "missing")) == []


def test_self_is_skipped_and_the_file_is_reread(tmp_path: Path) -> None:
    path = resolv(tmp_path, "nameserver 127.0.0.1", "nameserver 127.0.0.53")
    fwd = Forwarder(path, exclude=[("127.0.0.1", 53)])
    assert fwd.upstreams() == [("127.0.0.53", 53)]
    Path(path).write_text("nameserver 127.0.0.2\n")
    t = time.time() + 5
    os.utime(path, (t, t))
    assert fwd.upstreams() == [("127.0.0.2", 53)]


async def test_forward_keeps_the_client_id(tmp_path: Path, upstream: FakeUpstream) -> None:
    fwd = Forwarder(resolv(tmp_path, "nameserver 127.0.0.1"), port=upstream.port)
    q = DNSRecord.question("example.com")
    raw = await fwd.forward(q.pack())
    assert raw is not None
    r = DNSRecord.parse(raw)
    assert r.header.id == q.header.id and [str(x.rdata) for x in r.rr] == ["192.0.2.1"]
    assert upstream.seen == [("udp", "example.com", "A")]
    raw = await fwd.forward(q.pack(), tcp=True)
    assert raw is not None and DNSRecord.parse(raw).header.id == q.header.id
    assert upstream.seen[-1][0] == "tcp"


async def test_truncated_answers_are_asked_again_over_tcp(tmp_path: Path,
                                                          upstream: FakeUpstream) -> None:
    fwd = Forwarder(resolv(tmp_path, "nameserver 127.0.0.1"), port=upstream.port)
    raw = await fwd.forward(DNSRecord.question("big.example").pack())
    assert raw is not None
    r = DNSRecord.parse(raw)
    assert r.header.tc == 0 and len(r.rr) == 59
    assert [s[0] for s in upstream.seen] == ["udp", "tcp"]


async def test_upstream_rcodes_pass_through(tmp_path: Path, upstream: FakeUpstream) -> None:
    fwd = Forwarder(resolv(tmp_path, "nameserver 127.0.0.1"), port=upstream.port)
    raw = await fwd.forward(DNSRecord.question("nothing.example").pack())
    assert raw is not None and DNSRecord.parse(raw).header.rcode == RCODE.NXDOMAIN


async def test_timeout_gives_none(tmp_path: Path, upstream: FakeUpstream) -> None:
    upstream.silent.add("slow.example")
    fwd = Forwarder(resolv(tmp_path, "nameserver 127.0.0.1"), port=upstream.port,
                    timeout=0.6, attempt_timeout=0.2)
    started = time.monotonic()
    assert await fwd.forward(DNSRecord.question("slow.example").pack()) is None
    assert 0.5 < time.monotonic() - started < 2.0
    assert len(upstream.seen) >= 2  # tried again until the deadline


async def test_a_dead_upstream_is_skipped(tmp_path: Path, upstream: FakeUpstream) -> None:
    # a closed port on loopback (connection refused), then the working upstream
    udp, tcp = bind_pair("127.0.0.1", 0)
    dead = udp.getsockname()[1]
    udp.close()
    tcp.close()

    class Two(Forwarder):
        def upstreams(self) -> list[tuple[str, int]]:
            return [("127.0.0.1", dead), ("127.0.0.1", upstream.port)]

    fwd = Two("/nonexistent", timeout=2.0, attempt_timeout=0.5)
    raw = await fwd.forward(DNSRecord.question("example.com").pack())
    assert raw is not None and [str(x.rdata) for x in DNSRecord.parse(raw).rr] == ["192.0.2.1"]


async def test_no_upstreams(tmp_path: Path) -> None:
    fwd = Forwarder(resolv(tmp_path, "search x"))
    assert await fwd.forward(DNSRecord.question("example.com").pack()) is None
    assert await fwd.resolve("example.com", QTYPE.A) == []


async def test_resolve(tmp_path: Path, upstream: FakeUpstream) -> None:
    fwd = Forwarder(resolv(tmp_path, "nameserver 127.0.0.1"), port=upstream.port)
    rrs = await fwd.resolve("example.com", QTYPE.A)
    assert [str(r.rdata) for r in rrs] == ["192.0.2.1"]

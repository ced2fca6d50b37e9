"""userspace mode: real TCP and UDP relays on loopback (cluster IPs in 127.0.0.0/8 are
local, so no root is needed)."""
from __future__ import annotations

import asyncio
import random
import socket
from typing import AsyncIterator

import pytest

from pyk8s.proxy.model import Endpoint, ServicePort
from pyk8s.proxy.userspace import Balancer, UserspaceProxier
from tests.conftest import free_port


def vip() -> str:
    return f"127.{random.randint(60, 250)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def sp(ip: str, port: int, eps: list[Endpoint], protocol: str = "TCP",
       **kw: object) -> ServicePort:
    return ServicePort(namespace="default", name="web", port_name="", protocol=protocol,
                       port=port, cluster_ips=(ip,), endpoints=eps, **kw)  # type: ignore


async def tcp_backend(name: str) -> tuple[asyncio.AbstractServer, int]:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.read(100)
        w.write(name.encode() + b":" + data)
        await w.drain()
        w.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def ask(host: str, port: int, msg: bytes = b"hi") -> bytes:
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    w.write(msg)
    await w.drain()
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    return data


@pytest.fixture
async def proxier() -> AsyncIterator[UserspaceProxier]:
    p = UserspaceProxier("n1", interface="", nodeport_address="127.0.0.1")
    await p.setup()
    yield p
    await p.cleanup()


def test_balancer_round_robin_skip_and_affinity() -> None:
    a, b = Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80)
    bal = Balancer("x", [a, b])
    assert [bal.choose("c") for _ in range(4)] == [a, b, a, b]
    assert bal.choose("c", skip=[a]) == b
    assert bal.choose("c", skip=[a, b]) is None
    bal.update([a, b], 60)
    first = bal.choose("c1")
    assert all(bal.choose("c1") == first for _ in range(5))
    bal.update([x for x in (a, b) if x != first], 60)    # its endpoint went away
    assert bal.choose("c1") != first


async def test_tcp_round_robin_over_ready_endpoints(proxier: UserspaceProxier) -> None:
    s1, p1 = await tcp_backend("one")
    s2, p2 = await tcp_backend("two")
    s3, p3 = await tcp_backend("unready")
    ip, port = vip(), free_port()
    eps = [Endpoint("127.0.0.1", p1), Endpoint("127.0.0.1", p2),
           Endpoint("127.0.0.1", p3, ready=False, serving=False)]
    await proxier.sync([sp(ip, port, eps)])
    got = {(await ask(ip, port)).split(b":")[0] for _ in range(6)}
    assert got == {b"one", b"two"}
    await proxier.sync([sp(ip, port, eps[:1])])            # endpoint removed: one only
    assert {(await ask(ip, port)).split(b":")[0] for _ in range(4)} == {b"one"}
    for s in (s1, s2, s3):
        s.close()


async def test_tcp_dead_endpoint_is_skipped_and_none_closes(proxier: UserspaceProxier
                                                            ) -> None:
    s1, p1 = await tcp_backend("alive")
    dead = free_port()
    ip, port = vip(), free_port()
    await proxier.sync([sp(ip, port, [Endpoint("127.0.0.1", dead), Endpoint("127.0.0.1", p1)])])
    for _ in range(3):
        assert (await ask(ip, port)).startswith(b"alive:")
    await proxier.sync([sp(ip, port, [])])
    assert await ask(ip, port) == b""                     # accepted, then closed
    s1.close()


async def test_session_affinity_sticks(proxier: UserspaceProxier) -> None:
    s1, p1 = await tcp_backend("one")
    s2, p2 = await tcp_backend("two")
    ip, port = vip(), free_port()
    await proxier.sync([sp(ip, port, [Endpoint("127.0.0.1", p1), Endpoint("127.0.0.1", p2)],
                           affinity_seconds=60)])
    assert len({(await ask(ip, port)).split(b":")[0] for _ in range(5)}) == 1
    s1.close()
    s2.close()


async def test_node_port_and_service_removal(proxier: UserspaceProxier) -> None:
    s1, p1 = await tcp_backend("one")
    ip, port, node_port = vip(), free_port(), free_port()
    await proxier.sync([sp(ip, port, [Endpoint("127.0.0.1", p1)], node_port=node_port)])
    assert (await ask("127.0.0.1", node_port)).startswith(b"one:")
    await proxier.sync([])
    assert not proxier.listeners
    with pytest.raises(OSError):
        await ask("127.0.0.1", node_port)
    s1.close()


async def test_udp_relay_keeps_a_session_per_client(proxier: UserspaceProxier) -> None:
    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, t: asyncio.BaseTransport) -> None:
            self.t = t

        def datagram_received(self, data: bytes, addr: object) -> None:
            self.t.sendto(b"echo:" + data, addr)  # type: ignore[attr-defined]

    t, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    bport = t.get_extra_info("sockname")[1]
    ip, port = vip(), free_port()
    await proxier.sync([sp(ip, port, [Endpoint("127.0.0.1", bport)], protocol="UDP")])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(5)
        for i in range(3):
            c.sendto(f"m{i}".encode(), (ip, port))
            data, addr = await loop.run_in_executor(None, c.recvfrom, 100)
            assert data == f"echo:m{i}".encode() and addr == (ip, port)
    t.close()

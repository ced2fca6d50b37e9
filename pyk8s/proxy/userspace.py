"""kube-proxy's userspace mode: asyncio listeners on every cluster IP:port and NodePort that
relay TCP connections and UDP datagrams to the service's endpoints (round robin; session
affinity ClientIP keeps a client on one endpoint for the affinity timeout).

For the process runtime, whose pods are host processes: packet rules cannot steer them,
but a listener on the cluster IP can. A cluster IP must be a local address to receive
anything: as root the proxier adds each one to a dummy interface of its own (as upstream's
IPVS mode does with kube-ipvs0; an empty bridge where the kernel has no dummy links);
without root only cluster IPs that are already local (a
service range inside 127.0.0.0/8) work, and the others are reported once.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from pyk8s.proxy.model import Endpoint, ServicePort

log = logging.getLogger(__name__)

IP_FREEBIND = 15
CONNECT_TIMEOUT = 5.0
UDP_IDLE_TIMEOUT = 60.0
BUFFER = 65536


@dataclass
class Balancer:
    """Chooses an endpoint per client: round robin, or sticky for `affinity` seconds."""
    key: str
    endpoints: list[Endpoint] = field(default_factory=list)
    affinity: int = 0
    _next: int = 0
    _sticky: dict[str, tuple[Endpoint, float]] = field(default_factory=dict)

    def update(self, endpoints: list[Endpoint], affinity: int) -> None:
        if endpoints != self.endpoints:
            self._sticky = {c: v for c, v in self._sticky.items() if v[0] in endpoints}
        self.endpoints, self.affinity = list(endpoints), affinity
        if not affinity:
            self._sticky.clear()

    def choose(self, client_ip: str, skip: Sequence[Endpoint] = ()) -> Endpoint | None:
        now = time.monotonic()
        if self.affinity and not skip:
            hit = self._sticky.get(client_ip)
            if hit is not None and hit[1] > now and hit[0] in self.endpoints:
                self._sticky[client_ip] = (hit[0], now + self.affinity)
                return hit[0]
        candidates = [e for e in self.endpoints if e not in skip]
        if not candidates:
            return None
        ep = candidates[self._next % len(candidates)]
        self._next += 1
        if self.affinity:
            self._sticky[client_ip] = (ep, now + self.affinity)
        return ep


def _bind_socket(host: str, port: int, kind: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(512)
        sock.setblocking(False)
        return sock
    except BaseException:
        sock.close()
        raise


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class _TCPListener:
    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.server: asyncio.AbstractServer | None = None
        self.conns: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._handle,
                                                 sock=_bind_socket(host, port,
                                                                   socket.SOCK_STREAM))

    def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A task of our own (asyncio's connection callback task must not be cancelled).
        task = asyncio.get_running_loop().create_task(self._relay(reader, writer))
        self.conns.add(task)
        task.add_done_callback(self.conns.discard)

    async def _relay(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        tried: list[Endpoint] = []
        try:
            while True:
                ep = self.balancer.choose(str(peer[0]), tried)
                if ep is None:
                    log.debug("%s: no endpoint reachable for %s", self.balancer.key, peer)
                    return
                tried.append(ep)
                try:
                    r2, w2 = await asyncio.wait_for(asyncio.open_connection(ep.ip, ep.port),
                                                    CONNECT_TIMEOUT)
                    break
                except (OSError, asyncio.TimeoutError) as e:
                    log.info("%s: connecting to %s: %s", self.balancer.key, ep.address, e)
            try:
                await asyncio.gather(_pipe(reader, w2), _pipe(r2, writer))
            finally:
                w2.close()
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self.conns):
            t.cancel()
        await asyncio.gather(*self.conns, return_exceptions=True)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


class _UDPBackend(asyncio.DatagramProtocol):
    def __init__(self, front: asyncio.DatagramTransport, client: Any) -> None:
        self.front, self.client = front, client
        self.transport: asyncio.DatagramTransport | None = None
        self.used = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.used = time.monotonic()
        with contextlib.suppress(Exception):
            self.front.sendto(data, self.client)


class _UDPListener(asyncio.DatagramProtocol):
    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[Any, _UDPBackend] = {}
        self.pending: dict[Any, list[bytes]] = {}
        self._reaper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self,
                                            sock=_bind_socket(host, port, socket.SOCK_DGRAM))
        self._reaper = asyncio.create_task(self._reap())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        s = self.sessions.get(addr)
        if s is not None and s.transport is not None:
            s.used = time.monotonic()
            s.transport.sendto(data)
            return
        if addr in self.pending:
            self.pending[addr].append(data)
            return
        self.pending[addr] = [data]
        asyncio.get_running_loop().create_task(self._open(addr))

    async def _open(self, addr: Any) -> None:
        ep = self.balancer.choose(str(addr[0]))
        if ep is None or self.transport is None:
            self.pending.pop(addr, None)      # no endpoint: dropped, as a REJECT would
            return
        try:
            _, proto = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _UDPBackend(self.transport, addr),  # type: ignore[arg-type]
                remote_addr=(ep.ip, ep.port))
        except OSError as e:
            log.info("%s: udp to %s: %s", self.balancer.key, ep.address, e)
            self.pending.pop(addr, None)
            return
        self.sessions[addr] = proto
        for data in self.pending.pop(addr, []):
            assert proto.transport is not None
            proto.transport.sendto(data)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(UDP_IDLE_TIMEOUT / 4)
            now = time.monotonic()
            for addr, s in list(self.sessions.items()):
                if now - s.used > UDP_IDLE_TIMEOUT or (
                        s.transport is not None and
                        not self._still_endpoint(s.transport.get_extra_info("peername"))):
                    if s.transport is not None:
                        s.transport.close()
                    self.sessions.pop(addr, None)

    def _still_endpoint(self, peer: Any) -> bool:
        return peer is None or any((e.ip, e.port) == tuple(peer[:2])
                                   for e in self.balancer.endpoints)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        for s in self.sessions.values():
            if s.transport is not None:
                s.transport.close()
        self.sessions.clear()
        if self.transport is not None:
            self.transport.close()


def is_local_address(ip: str) -> bool:
    """Bindable without help: 127/8, ::1, or an address the host already has."""
    addr = ipaddress.ip_address(ip)
    if addr.is_loopback:
        return True
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
            return True
        except OSError:
            return False


async def _ip(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(errors="replace")


class UserspaceProxier:
    """Listeners for the service ports of the last sync. `interface`: the dummy link that
    carries the cluster IPs (root only; "" never adds addresses). `nodeport_address`:
    where NodePorts listen."""

    def __init__(self, node_name: str, interface: str = "", nodeport_address: str = "0.0.0.0"
                 ) -> None:
        self.node_name = node_name
        self.interface = interface if os.geteuid() == 0 else ""
        self.nodeport_address = nodeport_address
        self.listeners: dict[tuple[str, int, str], _TCPListener | _UDPListener] = {}
        self.balancers: dict[tuple[str, str], Balancer] = {}
        self.vips: set[str] = set()
        self._warned: set[str] = set()
        self._link_made = False
        self.last_rules = 0

    async def setup(self) -> None:
        if self.interface:
            rc, out = await _ip("link", "show", "dev", self.interface)
            if rc != 0:
                rc, out = await _ip("link", "add", self.interface, "type", "dummy")
                if rc != 0 and "Unknown device type" in out:
                    # No dummy module: an empty bridge holds local addresses as well.
                    rc, out = await _ip("link", "add", self.interface, "type", "bridge")
                if rc != 0:
                    log.warning("userspace proxy: cannot add dummy link %s (%s): cluster "
                                "IPs stay unbound", self.interface, out.strip())
                    self.interface = ""
                    return
            self._link_made = True
            await _ip("link", "set", self.interface, "up")

    async def _ensure_vip(self, ip: str) -> bool:
        if ip in self.vips or is_local_address(ip):
            return True
        if not self.interface:
            if ip not in self._warned:
                self._warned.add(ip)
                log.warning("userspace proxy: cluster IP %s is not a local address and no "
                            "link carries cluster IPs (root and --proxy-vip-interface): the "
                            "service is reachable only through its NodePort (or use a "
                            "--service-cluster-ip-range inside 127.0.0.0/8)", ip)
            return False
        plen = 128 if ":" in ip else 32
        rc, out = await _ip("addr", "add", f"{ip}/{plen}", "dev", self.interface)
        if rc != 0 and "File exists" not in out:
            log.warning("userspace proxy: adding %s to %s: %s", ip, self.interface, out.strip())
            return False
        self.vips.add(ip)
        return True

    def _balancer(self, key: str, kind: str, sp: ServicePort,
                  eps: list[Endpoint]) -> Balancer:
        b = self.balancers.setdefault((key, kind), Balancer(f"{key} ({kind})"))
        b.update(eps, sp.affinity_seconds)
        return b

    async def sync(self, ports: Sequence[ServicePort]) -> float:
        t0 = time.perf_counter()
        want: dict[tuple[str, int, str], Balancer] = {}
        for sp in ports:
            if sp.protocol not in ("TCP", "UDP"):
                continue
            key = f"{sp.key}/{sp.protocol}"
            internal = self._balancer(key, "cluster", sp, sp.cluster_endpoints(self.node_name))
            for ip in sp.cluster_ips:
                want[(ip, sp.port, sp.protocol)] = internal
            if sp.node_port:
                want[(self.nodeport_address, sp.node_port, sp.protocol)] = self._balancer(
                    key, "external", sp, sp.external_endpoints(self.node_name))
        for k in [k for k in self.listeners if k not in want
                  or self.listeners[k].balancer is not want[k]]:
            await self.listeners.pop(k).close()
        for (host, port, proto), bal in want.items():
            if (host, port, proto) in self.listeners:
                continue
            if host != self.nodeport_address and not await self._ensure_vip(host):
                continue
            listener: _TCPListener | _UDPListener = (_TCPListener(bal) if proto == "TCP"
                                                     else _UDPListener(bal))
            try:
                await listener.start(host, port)
            except OSError as e:
                log.warning("userspace proxy: listening on %s:%d/%s for %s: %s", host, port,
                            proto, bal.key, e)
                continue
            self.listeners[(host, port, proto)] = listener
        used = {id(b) for b in want.values()}
        self.balancers = {k: b for k, b in self.balancers.items() if id(b) in used}
        wanted_vips = {h for h, _, _ in want if h != self.nodeport_address}
        for ip in sorted(self.vips - wanted_vips):
            await _ip("addr", "del", f"{ip}/{128 if ':' in ip else 32}", "dev", self.interface)
            self.vips.discard(ip)
        self.last_rules = len(self.listeners)
        return time.perf_counter() - t0

    async def cleanup(self) -> None:
        for listener in self.listeners.values():
            await listener.close()
        self.listeners.clear()
        if self.interface and self._link_made:
            await _ip("link", "delete", "dev", self.interface)
        self.vips.clear()

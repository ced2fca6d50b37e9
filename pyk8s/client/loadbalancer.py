"""A client-side load balancer over several API servers (k3s's agent load balancer).

An agent given several servers (`pyk8s agent --server URL1,URL2,URL3`) runs this TCP proxy
on 127.0.0.1:<ephemeral port>, and its kubelet, service proxy and DNS talk to the API
through it (`LoadBalancer.url`). TLS goes through untouched, end to end: the servers'
certificates name 127.0.0.1 and are verified against the cluster CA as before.

* Sticky: every connection goes to the current server while it is healthy; a server that
  comes back does not take its clients back (no reconnect storm).
* Health checks: every `check_interval` seconds each server is asked `GET /readyz` (over
  TLS, verified with the CA when given, for https:// servers) with `check_timeout`: 200
  is healthy, and so are 401 / 403 (the server answers, but this cluster does not let
  anonymous requests read /readyz); anything else, or no answer, is unhealthy.
* Fail-over: when the current server fails a check, or a new connection cannot reach it,
  the first healthy server in the given order becomes current, and every connection still
  open to the failed one is closed, so its clients reconnect (watches resume from their
  last resourceVersion on the new server). A connection that cannot reach any healthy
  server tries the rest before it gives up.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.parse
from dataclasses import dataclass, field
from typing import Sequence

from pyk8s.client.rest import ClientConfig

log = logging.getLogger("pyk8s.client.loadbalancer")

COPY_CHUNK = 65536


@dataclass(eq=False)
class Backend:
    """One API server and the proxied connections open to it."""
    url: str
    host: str
    port: int
    healthy: bool = True            # until a check says otherwise
    connections: set[asyncio.StreamWriter] = field(default_factory=set)

    def close_connections(self) -> None:
        for w in list(self.connections):
            w.close()
        self.connections.clear()


def parse_servers(value: str | Sequence[str]) -> list[str]:
    """`https://a:6443,https://b:6443` (or a list) → the URLs, without trailing slashes;
    ValueError unless they are http(s) URLs with a host, all of one scheme."""
    items = value.split(",") if isinstance(value, str) else list(value)
    urls = [i.strip().rstrip("/") for i in items if i.strip()]
    if not urls:
        raise ValueError("no API server URL")
    schemes = set()
    for u in urls:
        parts = urllib.parse.urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{u!r} is not an http(s) URL of an API server")
        schemes.add(parts.scheme)
    if len(schemes) > 1:
        raise ValueError("the API server URLs mix http:// and https://")
    return urls


def _backend(url: str) -> Backend:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    return Backend(url, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


class LoadBalancer:
    """Proxy from `bind`:`port` (0: an ephemeral port) to the current API server of
    `servers`; `ca_data` verifies their certificates in health checks."""

    def __init__(self, servers: Sequence[str], *, ca_data: bytes | None = None,
                 bind: str = "127.0.0.1", port: int = 0, check_interval: float = 1.0,
                 check_timeout: float = 2.0, dial_timeout: float = 3.0) -> None:
        urls = parse_servers(servers)
        self.scheme = urllib.parse.urlsplit(urls[0]).scheme
        self.backends = [_backend(u) for u in urls]
        self.current = self.backends[0]
        self.bind = bind
        self.port = port
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.dial_timeout = dial_timeout
        self._ssl: ssl.SSLContext | None = None
        if self.scheme == "https":
            ctx = ClientConfig(server=urls[0], ca_data=ca_data,
                               insecure_skip_tls_verify=ca_data is None).ssl_context()
            assert isinstance(ctx, ssl.SSLContext)
            self._ssl = ctx
        self._server: asyncio.AbstractServer | None = None
        self._checks: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """Where clients connect: `https://127.0.0.1:<port>` (the servers' scheme)."""
        return f"{self.scheme}://{self.bind}:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Check every server once (the first healthy one becomes current), listen, and
        keep checking in the background."""
        await self.check_all()
        self._server = await asyncio.start_server(self._accept, self.bind, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("load balancer %s: %s (current %s)", self.url,
                 ", ".join(b.url for b in self.backends), self.current.url)
        self._checks = asyncio.create_task(self._check_loop(), name="loadbalancer-checks")

    async def close(self) -> None:
        if self._checks is not None:
            self._checks.cancel()
            await asyncio.gather(self._checks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for b in self.backends:
            b.close_connections()
        for t in list(self._handlers):
            t.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- health -----------------------------------------------------------------------------
    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                await self.check_all()
            except Exception:  # a bug: keep checking rather than stop failing over
                log.exception("load balancer: health check failed")

    async def check_all(self) -> None:
        """Check every server at once, then keep or change the current one."""
        results = await asyncio.gather(*(self._healthy(b) for b in self.backends))
        for b, ok in zip(self.backends, results):
            if b.healthy and not ok:
                log.info("load balancer: API server %s failed its health check", b.url)
            elif ok and not b.healthy:
                log.info("load balancer: API server %s is healthy again", b.url)
            b.healthy = ok
        self._choose()

    async def _healthy(self, b: Backend) -> bool:
        try:
            async with asyncio.timeout(self.check_timeout):
                return await self._readyz(b)
        except (OSError, TimeoutError, ssl.SSLError, ValueError, EOFError):
            return False

    async def _readyz(self, b: Backend) -> bool:
        reader, writer = await asyncio.open_connection(
            b.host, b.port, ssl=self._ssl, server_hostname=b.host if self._ssl else None)
        try:
            host = f"[{b.host}]" if ":" in b.host else b.host
            writer.write(f"GET /readyz HTTP/1.1\r\nHost: {host}:{b.port}\r\n"
                         "User-Agent: pyk8s-loadbalancer\r\nConnection: close\r\n\r\n"
                         .encode())
            await writer.drain()
            status = (await reader.readline()).split()
            return len(status) >= 2 and status[1] in (b"200", b"401", b"403")
        finally:
            writer.close()

    def _choose(self) -> None:
        """Stay on the current server while it is healthy, else take the first healthy
        one (none healthy: stay, connections try every server in turn)."""
        if self.current.healthy:
            return
        for b in self.backends:
            if b.healthy:
                self._switch(b)
                return

    def _switch(self, to: Backend) -> None:
        old, self.current = self.current, to
        log.warning("load balancer %s: switched from API server %s to %s", self.url,
                    old.url, to.url)
        old.close_connections()

    def _failed(self, b: Backend, error: BaseException) -> None:
        """A connection could not reach `b`: it is unhealthy until a check says otherwise."""
        if b.healthy:
            log.info("load balancer: cannot reach API server %s: %s", b.url,
                     error or type(error).__name__)
        b.healthy = False
        if b is self.current:
            self._choose()

    # -- proxying ---------------------------------------------------------------------------
    def _candidates(self) -> list[Backend]:
        """The servers a new connection tries, in order: the current one, the other healthy
        ones, then the rest."""
        rest = [b for b in self.backends if b is not self.current]
        return ([self.current] + [b for b in rest if b.healthy] +
                [b for b in rest if not b.healthy])

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._proxy(reader, writer)
        except asyncio.CancelledError:
            pass   # close(): end quietly (Python 3.11's stream callback logs a cancelled task)
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _proxy(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        for b in self._candidates():
            try:
                async with asyncio.timeout(self.dial_timeout):
                    up_reader, up_writer = await asyncio.open_connection(b.host, b.port)
            except (OSError, TimeoutError) as e:
                self._failed(b, e)
                continue
            if b is not self.current and not self.current.healthy:
                b.healthy = True   # no healthy server answered, this one did: it serves
                self._switch(b)
            b.connections.update((writer, up_writer))
            try:
                await self._pipe(reader, writer, up_reader, up_writer)
            finally:
                b.connections.discard(writer)
                b.connections.discard(up_writer)
                up_writer.close()
            return
        log.warning("load balancer: no API server reachable (%s)",
                    ", ".join(b.url for b in self.backends))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        """Copy both ways until the server's side ends (the client's end of file is passed
        on as a half-close: the answer still comes back); an error on either side ends
        both."""
        async def to_server() -> None:
            while data := await reader.read(COPY_CHUNK):
                up_writer.write(data)
                await up_writer.drain()
            if up_writer.can_write_eof() and not up_writer.is_closing():
                up_writer.write_eof()
            await asyncio.Future()   # done sending: wait for the server's side to end

        async def to_client() -> None:
            while data := await up_reader.read(COPY_CHUNK):
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(to_server()), asyncio.ensure_future(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            up_writer.close()

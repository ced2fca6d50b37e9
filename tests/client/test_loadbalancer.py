"""The agent's load balancer over several API servers (pyk8s/client/loadbalancer.py), with
real HTTP(S) servers on loopback ports: sticky while healthy, fail-over on a dead or unready
server (its open connections closed), TLS passed through, half-closes kept, and an informer
behind it resuming its watch on the next server from its last resourceVersion."""
from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest
from aiohttp import web

from pyk8s.apiserver.certs import ensure_credentials
from pyk8s.client.informer import SharedInformer
from pyk8s.client.loadbalancer import LoadBalancer, parse_servers
from pyk8s.client.rest import ClientConfig, RESTClient
from tests.conftest import free_port

FAST = {"check_interval": 0.1, "check_timeout": 1.0, "dial_timeout": 1.0}


async def eventually(what: str, cond: Callable[[], Awaitable[bool] | bool],
                     timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        v = cond()
        if isinstance(v, Awaitable):
            v = await v
        if v:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class FakeAPIServer:
    """An HTTP(S) server on a fixed loopback port: /readyz (status settable), /whoami (its
    name), and a ConfigMap list + watch that records what it was asked."""

    def __init__(self, name: str, ssl_ctx: ssl.SSLContext | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.ssl_ctx = ssl_ctx
        self.ready_status = 200
        self.hang = asyncio.Event()        # set: /readyz never answers
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.watch_events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_ctx else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> "FakeAPIServer":
        app = web.Application()
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/whoami", self._whoami)
        app.router.add_get("/api/v1/configmaps", self._configmaps)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ssl_ctx).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.hang.is_set():
            await asyncio.Future()
        return web.Response(status=self.ready_status, text="ok")

    async def _whoami(self, request: web.Request) -> web.Response:
        return web.Response(text=self.name)

    async def _configmaps(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.query.get("watch", ""), dict(request.query)))
        if not request.query.get("watch"):
            return web.json_response({"kind": "ConfigMapList", "apiVersion": "v1",
                                      "metadata": {"resourceVersion": "5"}, "items": []})
        resp = web.StreamResponse()
        await resp.prepare(request)
        while True:
            ev = await self.watch_events.get()
            await resp.write(orjson.dumps(ev) + b"\n")


@pytest.fixture
async def servers() -> AsyncIterator[list[FakeAPIServer]]:
    started = [await FakeAPIServer(n).start() for n in ("a", "b", "c")]
    yield started
    for s in started:
        await s.stop()


async def whoami(url: str) -> str:
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/whoami", timeout=aiohttp.ClientTimeout(total=5)) as r:
            return await r.text()


def test_server_lists() -> None:
    assert parse_servers("https://a:6443/, https://b:6443") == ["https://a:6443",
                                                                 "https://b:6443"]
    for bad, message in (("", "no API server URL"), ("a:6443", r"is not an http\(s\) URL"),
                         ("https://a:1,http://b:2", "mix http:// and https://")):
        with pytest.raises(ValueError, match=message):
            parse_servers(bad)


async def test_sticks_to_a_healthy_server_and_fails_over(servers: list[FakeAPIServer]) -> None:
    a, b, c = servers
    lb = LoadBalancer([a.url, b.url, c.url], **FAST)
    await lb.start()
    try:
        assert lb.url == f"http://127.0.0.1:{lb.port}"
        assert [await whoami(lb.url) for _ in range(3)] == ["a", "a", "a"]
        await a.stop()                      # gone: the next connection goes to b at once
        assert await whoami(lb.url) == "b" and lb.current.url == b.url
        await a.start()                     # back and healthy: b keeps its clients
        await eventually("a healthy again", lambda: lb.backends[0].healthy)
        assert [await whoami(lb.url) for _ in range(3)] == ["b", "b", "b"]
        b.ready_status = 500                # unready: left within a health check
        await eventually("switch to a", lambda: lb.current.url == a.url)
        assert await whoami(lb.url) == "a"
    finally:
        await lb.close()


async def test_open_connections_to_a_failed_server_are_closed(
        servers: list[FakeAPIServer]) -> None:
    a, b, _ = servers
    lb = LoadBalancer([a.url, b.url], **FAST)
    await lb.start()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(lb.url + "/api/v1/configmaps?watch=1") as r:
                a.watch_events.put_nowait({"type": "ADDED", "object": {}})
                assert orjson.loads(await r.content.readline())["type"] == "ADDED"
                a.ready_status = 503        # a still serves the stream, but is unready
                with pytest.raises(aiohttp.ClientPayloadError):
                    await asyncio.wait_for(r.content.readline(), 5)
        assert lb.current.url == b.url and await whoami(lb.url) == "b"
    finally:
        await lb.close()


async def test_a_hung_server_is_left_after_a_check_times_out(
        servers: list[FakeAPIServer]) -> None:
    a, b, _ = servers
    lb = LoadBalancer([a.url, b.url], check_interval=0.1, check_timeout=0.3)
    await lb.start()
    try:
        assert await whoami(lb.url) == "a"
        a.hang.set()
        await eventually("switch to b", lambda: lb.current.url == b.url, timeout=3)
        assert await whoami(lb.url) == "b"
    finally:
        await lb.close()


async def test_no_healthy_server_still_tries_every_one(tmp_path: Path) -> None:
    """A server no health check likes (here: not HTTP at all) still gets the connections
    when nothing else answers; a client's half-close reaches it and its answer comes back."""
    async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()          # until the client's end of file
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    raw = await asyncio.start_server(upper, "127.0.0.1", 0)
    port = raw.sockets[0].getsockname()[1]
    dead = f"http://127.0.0.1:{free_port()}"
    lb = LoadBalancer([dead, f"http://127.0.0.1:{port}"], **FAST)
    await lb.start()
    try:
        assert not any(b.healthy for b in lb.backends)
        reader, writer = await asyncio.open_connection("127.0.0.1", lb.port)
        writer.write(b"hello")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"HELLO"
        writer.close()
        assert lb.current.port == port
    finally:
        await lb.close()
        raw.close()
        await raw.wait_closed()


async def test_tls_goes_through_and_checks_verify_the_ca(tmp_path: Path) -> None:
    creds = ensure_credentials(tmp_path / "cluster")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(creds.server_cert, creds.server_key)
    a, b = FakeAPIServer("a", ctx), FakeAPIServer("b", ctx)
    await a.start()
    await b.start()
    ca = creds.ca_cert.read_bytes()
    other_ca = ensure_credentials(tmp_path / "other").ca_cert.read_bytes()
    lb = LoadBalancer([a.url, b.url], ca_data=ca, **FAST)
    wrong = LoadBalancer([a.url, b.url], ca_data=other_ca, **FAST)
    await lb.start()
    await wrong.start()
    try:
        assert lb.url.startswith("https://127.0.0.1:")
        assert all(x.healthy for x in lb.backends)
        assert not any(x.healthy for x in wrong.backends)   # not the servers' CA
        # The client verifies the server's certificate (127.0.0.1 is in it) end to end.
        async with RESTClient(ClientConfig(server=lb.url, ca_data=ca)) as client:
            assert (await client.request("GET", "/api/v1/configmaps"))["kind"] == \
                "ConfigMapList"
            await a.stop()
            assert (await client.request("GET", "/api/v1/configmaps"))["kind"] == \
                "ConfigMapList"
        assert lb.current.url == b.url and len(b.requests) == 1
    finally:
        await lb.close()
        await wrong.close()
        await a.stop()
        await b.stop()


async def test_informer_resumes_its_watch_on_the_next_server(
        servers: list[FakeAPIServer]) -> None:
    """The server of a watch dies: the informer watches again from its last
    resourceVersion through the load balancer, now on another server, without a list."""
    a, b, _ = servers
    lb = LoadBalancer([a.url, b.url], **FAST)
    await lb.start()
    client = RESTClient(ClientConfig(server=lb.url))
    inf = SharedInformer(client, "/api/v1/configmaps", name="t")
    inf.start()
    try:
        await eventually("synced", inf.has_synced)
        await eventually("watching on a", lambda: len(a.requests) == 2)
        a.watch_events.put_nowait({"type": "ADDED", "object": {
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "x", "namespace": "default", "resourceVersion": "7"}}})
        await eventually("event seen", lambda: inf.resource_version == "7")
        await a.stop()
        await eventually("watching on b", lambda: len(b.requests) >= 1)
        watch, query = b.requests[0]
        assert watch == "true" and query["resourceVersion"] == "7"
        assert [w for w, _ in b.requests] == ["true"] * len(b.requests)   # no relist
        assert inf.relists == 1 and "default/x" in inf.store
    finally:
        await inf.stop()
        await client.close()
        await lb.close()

"""The controllers' client builders: service accounts made on demand, TokenRequest tokens
cached until 80% of their life and refreshed, dropped on 401, no root credentials on the
controller clients, one request budget for all. Against a small HTTP server that plays
the API server's part."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import pytest
from aiohttp import web

from pyk8s.client.rest import ClientConfig, RESTClient, ServerError
from pyk8s.controllers.clientbuilder import (DynamicClientBuilder, ServiceAccountTokenSource,
                                             SimpleClientBuilder, service_account_for)
from pyk8s.controllers.context import ControllerContext

ROOT_TOKEN = "root-token"


class FakeAPI:
    """ServiceAccounts in kube-system, TokenRequest, and one endpoint that reports who
    called it (by bearer token); `reject` makes the next calls of a token 401."""

    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {}
        self.issued: list[tuple[str, int]] = []         # (account, expirationSeconds)
        self.lifetime: float | None = None              # answer with this lifetime instead
        self.token_failures = 0
        self.seen: list[tuple[str, str, str]] = []      # (path, authorization, user agent)
        self.reject: set[str] = set()
        self.now = 1_700_000_000.0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.seen.append((request.path, auth, request.headers.get("User-Agent", "")))
        sa_path = "/api/v1/namespaces/kube-system/serviceaccounts"
        if request.path.startswith(sa_path) or request.path.startswith("/api/v1/namespaces"):
            assert auth == f"Bearer {ROOT_TOKEN}", auth
        if request.path == "/api/v1/namespaces/kube-system":
            return web.json_response({"metadata": {"name": "kube-system"}})
        if request.path == sa_path and request.method == "POST":
            body = await request.json()
            name = body["metadata"]["name"]
            self.accounts[name] = {"metadata": {"name": name, "uid": f"uid-{name}"}}
            return web.json_response(self.accounts[name], status=201)
        if request.path.startswith(sa_path + "/"):
            rest = request.path[len(sa_path) + 1:].split("/")
            name = rest[0]
            if len(rest) == 2 and rest[1] == "token":
                if self.token_failures:
                    self.token_failures -= 1
                    return web.json_response({"kind": "Status", "code": 500,
                                              "reason": "InternalError", "message": "x"},
                                             status=500)
                assert name in self.accounts
                seconds = (await request.json())["spec"]["expirationSeconds"]
                self.issued.append((name, seconds))
                life = self.lifetime if self.lifetime is not None else seconds
                exp = datetime.fromtimestamp(self.now + life, timezone.utc)
                return web.json_response({"status": {
                    "token": f"{name}-{len(self.issued)}",
                    "expirationTimestamp": exp.strftime("%Y-%m-%dT%H:%M:%SZ")}}, status=201)
            if name not in self.accounts:
                return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound",
                                          "message": "not found"}, status=404)
            return web.json_response(self.accounts[name])
        if auth.removeprefix("Bearer ") in self.reject:
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized",
                                      "message": "Unauthorized"}, status=401)
        return web.json_response({"kind": "Whoami", "token": auth.removeprefix("Bearer ")})


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeAPI, RESTClient]]:
    fake = FakeAPI()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    root = RESTClient(ClientConfig(server=f"http://127.0.0.1:{port}", token=ROOT_TOKEN),
                      user_agent="pyk8s-controller-manager", qps=1000, burst=1000,
                      max_inflight=4)
    try:
        yield fake, root
    finally:
        await root.close()
        await runner.cleanup()


def test_service_account_names() -> None:
    assert service_account_for("replicaset") == "replicaset-controller"
    assert service_account_for("daemonset") == "daemon-set-controller"
    assert service_account_for("garbagecollector") == "generic-garbage-collector"
    assert service_account_for("nodeipam") == "node-controller"
    assert service_account_for("csrsigning") == "certificate-controller"
    assert service_account_for("persistentvolume-binder") == "persistent-volume-binder"
    assert service_account_for("brand-new") == "brand-new-controller"   # pyk8s-only


async def test_token_cached_until_80_percent_then_refreshed(api: Any) -> None:
    fake, root = api
    now = [fake.now]
    src = ServiceAccountTokenSource(root, "kube-system", "job-controller",
                                    clock=lambda: now[0], backoff=(0.0,))
    assert await src.token() == "job-controller-1"
    assert "job-controller" in fake.accounts                 # made on demand
    assert fake.issued == [("job-controller", 3600)]
    now[0] += 2879                                           # < 80% of an hour
    assert await src.token() == "job-controller-1"
    now[0] += 2                                              # past 80%
    assert await src.token() == "job-controller-2"
    src.reset()                                              # after a 401
    assert await src.token() == "job-controller-3"
    assert src.fetches == 3


async def test_short_lifetimes_are_taken_as_clock_skew(api: Any) -> None:
    fake, root = api
    fake.lifetime = 60                                       # the server's clock is ahead
    now = [fake.now]
    src = ServiceAccountTokenSource(root, "kube-system", "a", clock=lambda: now[0])
    await src.token()
    assert src.expiry == pytest.approx(now[0] + 600 * 0.8)  # a 10-minute lifetime assumed


async def test_concurrent_requests_fetch_one_token(api: Any) -> None:
    fake, root = api
    src = ServiceAccountTokenSource(root, "kube-system", "b", clock=lambda: fake.now)
    tokens = await asyncio.gather(*(src.token() for _ in range(10)))
    assert set(tokens) == {"b-1"} and len(fake.issued) == 1


async def test_fetch_retries_then_fails_as_unavailable(api: Any) -> None:
    fake, root = api
    fake.token_failures = 2
    src = ServiceAccountTokenSource(root, "kube-system", "c", clock=lambda: fake.now,
                                    backoff=(0.0, 0.0, 0.0))
    assert await src.token() == "c-1"                        # third try
    fake.token_failures = 10
    src.reset()
    with pytest.raises(ServerError) as e:
        await src.token()
    assert e.value.code == 503 and "failed to get token for kube-system/c" in e.value.message


async def test_controller_clients_carry_their_own_tokens(api: Any) -> None:
    fake, root = api
    builder = DynamicClientBuilder(root)
    rs = builder.client("replicaset-controller")
    assert builder.client("replicaset-controller") is rs     # one per account
    assert rs.config.token is None and rs.config.client_cert_data is None
    assert rs.rate_limiter is root.rate_limiter               # one budget for the manager
    await rs.get("/whoami")
    path, auth, agent = fake.seen[-1]
    assert auth == "Bearer replicaset-controller-1"
    assert agent == "pyk8s-controller-manager/system:serviceaccount:kube-system:" \
                    "replicaset-controller"
    fake.reject.add("replicaset-controller-1")               # e.g. the account was remade
    with pytest.raises(Exception):
        await rs.get("/whoami")
    await rs.get("/whoami")                                  # a new token after the 401
    assert fake.seen[-1][1] == "Bearer replicaset-controller-2"
    await builder.close()


async def test_context_records_events_with_the_controllers_client(api: Any) -> None:
    fake, root = api
    ctx = ControllerContext(DynamicClientBuilder(root))
    ctx.start()
    rec = ctx.recorder("deployment-controller", "deployment-controller")
    other = ctx.recorder("deployment-controller", "deployment-controller")
    assert rec.broadcaster is other.broadcaster             # one per client
    assert rec.broadcaster.client is ctx.client("deployment-controller")
    assert ctx.recorder("job-controller", "job-controller").broadcaster is not rec.broadcaster
    await ctx.shutdown()
    simple = ControllerContext(SimpleClientBuilder(root))
    assert simple.client("job-controller") is root
    assert simple.recorder("a", "x").broadcaster is simple.recorder("b", "y").broadcaster
    await simple.shutdown()
    assert not root.session.closed                           # the root is its owner's

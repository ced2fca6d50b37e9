"""Dynamic admission against an in-process webhook server (plain HTTP on 127.0.0.1; the
HTTPS + caBundle path is covered end to end in tests/e2e/test_admission.py)."""
from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, AsyncIterator

import pytest
from aiohttp import web

from pyk8s.api import errors
from pyk8s.apiserver.app import APIServer, ServerConfig
from pyk8s.storage.memory import MemoryStorage

Obj = dict[str, Any]


class Hooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Obj]] = []
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        review = await request.json()
        req = review["request"]
        name = request.match_info["name"]
        self.calls.append((name, req))
        resp: Obj = {"uid": req["uid"], "allowed": True}
        labels = ((req.get("object") or {}).get("metadata") or {}).get("labels") or {}
        ops: list[Obj] = []
        if name == "slow":
            await asyncio.sleep(1.3)
        elif name == "a":  # counts its calls in a label
            n = sum(1 for c, _ in self.calls if c == "a")
            ops = [{"op": "add", "path": "/metadata/labels/a", "value": str(n)} if labels
                   else {"op": "add", "path": "/metadata/labels", "value": {"a": str(n)}}]
        elif name == "b" and "b" not in labels:
            ops = [{"op": "add", "path": "/metadata/labels/b", "value": "yes"} if labels
                   else {"op": "add", "path": "/metadata/labels", "value": {"b": "yes"}}]
        elif name == "deny":
            resp = {"uid": req["uid"], "allowed": False, "status": {"reason": "NotToday"}}
        if ops:
            resp["patchType"] = "JSONPatch"
            resp["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        return web.json_response({"apiVersion": "admission.k8s.io/v1",
                                  "kind": "AdmissionReview", "response": resp})


@pytest.fixture
async def env() -> AsyncIterator[tuple[APIServer, Hooks]]:
    hooks = Hooks()
    app = web.Application()
    app.router.add_post("/{name}", hooks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hooks.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    s = APIServer(MemoryStorage(), ServerConfig(compaction_interval=0))
    await s.start()
    try:
        yield s, hooks
    finally:
        await s.stop()
        await runner.cleanup()


def st(s: APIServer, group: str, plural: str) -> Any:
    info = s.catalogue.lookup(group, "v1", plural)
    assert info is not None
    return s.store(info)


async def configure(s: APIServer, kind: str, name: str, hooks: list[Obj]) -> None:
    plural = kind.lower() + "s"
    store = st(s, "admissionregistration.k8s.io", plural)
    store.strategy.validate = lambda obj, old=None: []  # plain-HTTP URLs for this test only
    await store.create(None, {
        "metadata": {"name": name}, "webhooks": [dict({
            "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["configmaps"]}]}, **h) for h in hooks]})
    await s.cache.consistent_rev()


def hook(hooks: Hooks, path: str, **extra: Any) -> Obj:
    return {"name": f"{path}.example.com", "clientConfig": {"url": hooks.url("/" + path)},
            **extra}


async def test_reinvocation_if_needed(env: tuple[APIServer, Hooks]) -> None:
    s, hooks = env
    await configure(s, "MutatingWebhookConfiguration", "m", [
        hook(hooks, "a", reinvocationPolicy="IfNeeded"), hook(hooks, "b")])
    obj, _ = await st(s, "", "configmaps").create("default", {"metadata": {"name": "x"}})
    # a ran, b changed the object after it, so a ran once more
    assert obj["metadata"]["labels"] == {"a": "2", "b": "yes"}
    assert [c for c, _ in hooks.calls] == ["a", "b", "a"]


async def test_denial_timeout_failure_policy_selectors_dry_run(
        env: tuple[APIServer, Hooks]) -> None:
    s, hooks = env
    cms = st(s, "", "configmaps")
    await configure(s, "ValidatingWebhookConfiguration", "v", [
        hook(hooks, "deny", objectSelector={"matchLabels": {"deny": "yes"}}),
        hook(hooks, "slow", timeoutSeconds=1, failurePolicy="Ignore",
             objectSelector={"matchLabels": {"slow": "ignore"}}),
        hook(hooks, "slow", timeoutSeconds=1, name="slowfail.example.com",
             objectSelector={"matchLabels": {"slow": "fail"}}),
        hook(hooks, "b", sideEffects="NoneOnDryRun", name="effects.example.com",
             objectSelector={"matchLabels": {"effects": "yes"}})])
    await cms.create("default", {"metadata": {"name": "plain"}})
    assert hooks.calls == []
    with pytest.raises(errors.ApiError) as e:
        await cms.create("default", {"metadata": {"name": "d", "labels": {"deny": "yes"}}})
    assert e.value.code == 400 and e.value.message == \
        'admission webhook "deny.example.com" denied the request: NotToday'
    await cms.create("default", {"metadata": {"name": "i", "labels": {"slow": "ignore"}}})
    with pytest.raises(errors.InternalError) as e:
        await cms.create("default", {"metadata": {"name": "f", "labels": {"slow": "fail"}}})
    assert 'failed calling webhook "slowfail.example.com"' in e.value.message
    assert "context deadline exceeded" in e.value.message
    n = len(hooks.calls)
    await cms.create("default", {"metadata": {"name": "e", "labels": {"effects": "yes"}}},
                     dry_run=True)
    assert hooks.calls[n][1]["dryRun"] is True
    assert hooks.calls[n][1]["options"]["dryRun"] == ["All"]
    review = hooks.calls[0][1]
    assert review["operation"] == "CREATE" and review["namespace"] == "default"
    assert review["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}

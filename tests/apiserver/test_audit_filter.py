"""The audit filter in an aiohttp app shaped as the API server's chain (errors,
authentication, audit, impersonation + authorization): stages, levels, objects, status
codes, the Audit-Id header, long-running requests, panics and failed authentication."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pyk8s.api import errors
from pyk8s.apiserver.audit.filter import AuditConfigError, AuditFilter, from_config
from pyk8s.apiserver.authn import UserInfo
from pyk8s.apiserver.responses import json_response, status_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
USERS = {"admin-token": UserInfo("system:admin", groups=("system:masters",
                                                        "system:authenticated")),
         "alice-token": UserInfo("alice", uid="u-1", groups=("devs",))}
CM = {"kind": "ConfigMap", "apiVersion": "v1",
      "metadata": {"name": "x", "namespace": "default", "uid": "uid-x",
                   "resourceVersion": "7", "managedFields": [{"manager": "kubectl"}]},
      "data": {"a": "b"}}


def build_app(audit: AuditFilter) -> web.Application:
    @web.middleware
    async def error_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.ApiError as e:
            return status_response(e)
        except Exception as e:
            return status_response(errors.InternalError(f"Internal error occurred: {e!r}"))

    @web.middleware
    async def authn_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = request.headers.get("Authorization", "")[7:]
        if token:
            user = USERS.get(token)
            if user is None:
                err = errors.Unauthorized("Unauthorized")
                audit.failed_authentication(request, err)
                raise err
            request["user"] = user
        return await handler(request)

    @web.middleware
    async def authz_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Impersonate-User"):
            request["impersonator"] = request["user"]
            request["user"] = UserInfo(request.headers["Impersonate-User"],
                                       groups=("system:authenticated",))
        if request.get("user") is not None:
            forbid = request.headers.get("X-Forbid") == "1"
            request["authz_decision"] = "forbid" if forbid else "allow"
            request["authz_reason"] = "" if forbid else "RBAC: allowed by test"
            if forbid:
                raise errors.Forbidden("configmaps is forbidden: no")
        return await handler(request)

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/healthz":
            return web.Response(text="ok")
        if path.endswith("/configmaps") and request.method == "POST":
            body = await request.json()
            if body["metadata"]["name"] == "taken":
                raise errors.AlreadyExists.of("", "configmaps", "taken")
            return json_response(dict(CM, metadata=dict(CM["metadata"],
                                                        name=body["metadata"]["name"])),
                                 status=201)
        if path.endswith("/configmaps/x") and request.method == "GET":
            return json_response(CM)
        if path.endswith("/configmaps/x") and request.method == "PATCH":
            await request.read()
            return json_response(CM)
        if path.endswith("/configmaps/x") and request.method == "DELETE":
            return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                  "status": "Success", "details": {"name": "x",
                                                                   "kind": "configmaps"}})
        if path.endswith("/configmaps/missing"):
            raise errors.NotFound.of("", "configmaps", "missing")
        if path.endswith("/pods") and request.query.get("watch"):
            resp = web.StreamResponse(status=200)
            await resp.prepare(request)
            await resp.write(b'{"type":"ADDED"}\n')
            return resp
        if path.endswith("/pods/p/log"):
            return web.Response(text="hello\n")
        if path.endswith("/pods/boom"):
            raise RuntimeError("kaboom")
        raise errors.NotFound("the server could not find the requested resource")

    app = web.Application(middlewares=[error_mw, authn_mw, audit.middleware, authz_mw])
    app.on_response_prepare.append(audit.on_response_prepare)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class Harness:
    def __init__(self, tmp: Path, client: TestClient, audit: AuditFilter) -> None:
        self.log = tmp / "audit.log"
        self.client = client
        self.audit = audit

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    async def call(self, method: str, path: str, token: str | None = "admin-token",
                   **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        resp = await self.client.request(method, path, headers=headers, **kw)
        await resp.read()
        return resp


@pytest.fixture
async def harness_factory(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[Harness]]]:
    """Starts the app with a policy (YAML after the Policy's head)."""
    made: list[Harness] = []

    async def factory(policy: str) -> Harness:
        pf = tmp_path / "policy.yaml"
        pf.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\n" + policy)
        audit = from_config(str(pf), str(tmp_path / "audit.log"))
        assert audit is not None
        client = TestClient(TestServer(build_app(audit)))
        await client.start_server()
        made.append(Harness(tmp_path, client, audit))
        return made[-1]
    yield factory
    for h in made:
        await h.client.close()
        h.audit.close()


METADATA = "rules:\n- level: Metadata\n"


async def test_metadata_create_stages_and_fields(harness_factory: Any) -> None:
    h = await harness_factory(METADATA)
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "default"}, "data": {"a": "b"}}
    r = await h.call("POST", "/api/v1/namespaces/default/configmaps?fieldManager=kubectl",
                     json=body, headers={"User-Agent": "kubectl/v1.32.0",
                                         "X-Forwarded-For": "10.0.0.1, bogus, 10.0.0.2"})
    assert r.status == 201
    events = h.events()
    assert [e["stage"] for e in events] == ["RequestReceived", "ResponseComplete"]
    received, complete = events
    assert r.headers["Audit-Id"] == received["auditID"] == complete["auditID"]
    assert complete["kind"] == "Event" and complete["apiVersion"] == "audit.k8s.io/v1"
    assert complete["level"] == "Metadata"
    assert complete["verb"] == "create"
    assert complete["requestURI"] == "/api/v1/namespaces/default/configmaps?fieldManager=kubectl"
    assert complete["user"] == {"username": "system:admin",
                                "groups": ["system:masters", "system:authenticated"]}
    assert complete["sourceIPs"] == ["10.0.0.1", "10.0.0.2", "127.0.0.1"]
    assert complete["userAgent"] == "kubectl/v1.32.0"
    # RequestReceived knows the URL only; the body names the object afterwards.
    assert received["objectRef"] == {"resource": "configmaps", "namespace": "default",
                                     "apiVersion": "v1"}
    assert complete["objectRef"] == {"resource": "configmaps", "namespace": "default",
                                     "name": "x", "apiVersion": "v1"}
    assert "responseStatus" not in received
    assert complete["responseStatus"] == {"metadata": {}, "code": 201}
    assert "requestObject" not in complete and "responseObject" not in complete
    assert complete["annotations"] == {"authorization.k8s.io/decision": "allow",
                                       "authorization.k8s.io/reason": "RBAC: allowed by test"}
    assert received["stageTimestamp"] == received["requestReceivedTimestamp"]
    ts = complete["stageTimestamp"]
    assert len(ts) == len("2026-12-07T12:00:00.123456Z") and ts.endswith("Z")
    assert complete["stageTimestamp"] >= complete["requestReceivedTimestamp"]


async def test_request_response_level_objects_and_managed_fields(harness_factory: Any) -> None:
    h = await harness_factory("omitManagedFields: true\nrules:\n- level: RequestResponse\n")
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "y", "managedFields": [{"manager": "me"}]},
            "data": {"k": "v"}}
    await h.call("POST", "/api/v1/namespaces/default/configmaps", json=body)
    complete = h.events()[-1]
    assert complete["requestObject"] == {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "y"}, "data": {"k": "v"}}
    assert complete["responseObject"]["metadata"]["name"] == "y"
    assert "managedFields" not in complete["responseObject"]["metadata"]
    assert complete["objectRef"]["name"] == "y"
    # A patch is recorded as sent.
    patch = {"data": {"k": "w"}}
    await h.call("PATCH", "/api/v1/namespaces/default/configmaps/x", data=json.dumps(patch),
                 headers={"Content-Type": "application/merge-patch+json"})
    complete = h.events()[-1]
    assert complete["verb"] == "patch" and complete["requestObject"] == patch
    assert complete["objectRef"] == {"resource": "configmaps", "namespace": "default",
                                     "name": "x", "apiVersion": "v1"}


async def test_metadata_never_records_secret_data(harness_factory: Any) -> None:
    h = await harness_factory(METADATA)
    secret = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"},
              "data": {"password": base64.b64encode(b"hunter2").decode()}}
    await h.call("POST", "/api/v1/namespaces/default/configmaps", json=secret)
    text = h.log.read_text()
    assert "hunter2" not in text and base64.b64encode(b"hunter2").decode() not in text


async def test_errors_keep_their_status(harness_factory: Any) -> None:
    h = await harness_factory("rules:\n- level: RequestResponse\n")
    r = await h.call("GET", "/api/v1/namespaces/default/configmaps/missing")
    assert r.status == 404
    complete = h.events()[-1]
    assert complete["stage"] == "ResponseComplete" and complete["verb"] == "get"
    assert complete["responseStatus"] == {
        "metadata": {}, "status": "Failure", "message": 'configmaps "missing" not found',
        "reason": "NotFound", "details": {"name": "missing", "kind": "configmaps"},
        "code": 404}
    assert complete["responseObject"]["kind"] == "Status"
    await h.call("GET", "/api/v1/namespaces/default/configmaps/x")
    assert h.events()[-1]["responseObject"] == CM  # as served, managedFields included
    r = await h.call("POST", "/api/v1/namespaces/default/configmaps",
                     json={"metadata": {"name": "taken"}})
    assert r.status == 409
    complete = h.events()[-1]
    assert complete["responseStatus"]["code"] == 409
    assert complete["responseStatus"]["reason"] == "AlreadyExists"
    assert complete["objectRef"]["name"] == "taken"
    # A success Status body (a delete) is a Status too.
    await h.call("DELETE", "/api/v1/namespaces/default/configmaps/x")
    complete = h.events()[-1]
    assert complete["verb"] == "delete"
    assert complete["responseStatus"] == {"metadata": {}, "status": "Success",
                                          "details": {"name": "x", "kind": "configmaps"},
                                          "code": 200}


async def test_forbidden_requests_are_audited(harness_factory: Any) -> None:
    h = await harness_factory(METADATA)
    r = await h.call("POST", "/api/v1/namespaces/default/configmaps",
                     json={"metadata": {"name": "z"}}, headers={"X-Forbid": "1"})
    assert r.status == 403
    complete = h.events()[-1]
    assert complete["responseStatus"]["code"] == 403
    assert complete["annotations"] == {"authorization.k8s.io/decision": "forbid",
                                       "authorization.k8s.io/reason": ""}
    # The body was never read by a handler: not recorded (as upstream).
    assert "name" not in complete["objectRef"]


async def test_impersonation(harness_factory: Any) -> None:
    h = await harness_factory(METADATA)
    await h.call("GET", "/api/v1/namespaces/default/configmaps/x",
                 headers={"Impersonate-User": "bob"})
    complete = h.events()[-1]
    assert complete["user"]["username"] == "system:admin"
    assert complete["impersonatedUser"] == {"username": "bob",
                                            "groups": ["system:authenticated"]}


async def test_policy_is_matched_on_the_authenticated_user(harness_factory: Any) -> None:
    h = await harness_factory("""rules:
- level: None
  users: ["alice"]
  verbs: ["get"]
- level: Metadata
  omitStages: ["RequestReceived"]
""")
    r = await h.call("GET", "/api/v1/namespaces/default/configmaps/x", token="alice-token")
    assert r.status == 200 and r.headers.get("Audit-Id")  # the header even at None
    assert h.events() == []
    await h.call("DELETE", "/api/v1/namespaces/default/configmaps/x", token="alice-token")
    events = h.events()
    assert [e["stage"] for e in events] == ["ResponseComplete"]
    assert events[0]["user"] == {"username": "alice", "uid": "u-1", "groups": ["devs"]}


async def test_client_audit_id_is_kept(harness_factory: Any) -> None:
    h = await harness_factory(METADATA)
    r = await h.call("GET", "/healthz", headers={"Audit-ID": "my-id"})
    assert r.headers["Audit-Id"] == "my-id"
    events = h.events()
    assert {e["auditID"] for e in events} == {"my-id"}
    assert events[-1]["verb"] == "get" and "objectRef" not in events[-1]
    assert events[-1]["requestURI"] == "/healthz"


async def test_watch_and_logs_are_long_running(harness_factory: Any) -> None:
    h = await harness_factory(METADATA)
    r = await h.call("GET", "/api/v1/namespaces/default/pods?watch=1")
    assert r.status == 200
    events = h.events()
    assert [e["stage"] for e in events] == ["RequestReceived", "ResponseStarted",
                                            "ResponseComplete"]
    assert events[1]["verb"] == "watch"
    assert events[1]["responseStatus"] == {"metadata": {}, "code": 200}
    assert events[2]["responseStatus"] == {"metadata": {}, "code": 200}
    assert r.headers["Audit-Id"] == events[0]["auditID"]
    await h.call("GET", "/api/v1/namespaces/default/pods/p/log")
    events = h.events()[3:]
    assert [e["stage"] for e in events] == ["RequestReceived", "ResponseStarted",
                                            "ResponseComplete"]
    assert events[1]["objectRef"]["subresource"] == "log"
    # A long-running request that fails before it starts: started, then complete.
    await h.call("GET", "/api/v1/namespaces/default/configmaps/missing?watch=1")
    events = h.events()[6:]
    assert [(e["stage"], e["responseStatus"]["code"]) for e in events[1:]] == [
        ("ResponseStarted", 404), ("ResponseComplete", 404)]


async def test_omit_stages(harness_factory: Any) -> None:
    h = await harness_factory("omitStages: [RequestReceived, ResponseStarted]\n" + METADATA)
    await h.call("GET", "/api/v1/namespaces/default/pods?watch=1")
    assert [e["stage"] for e in h.events()] == ["ResponseComplete"]


async def test_panic(harness_factory: Any) -> None:
    h = await harness_factory(METADATA)
    r = await h.call("GET", "/api/v1/namespaces/default/pods/boom")
    assert r.status == 500
    events = h.events()
    assert [e["stage"] for e in events] == ["RequestReceived", "Panic"]
    assert events[1]["responseStatus"]["code"] == 500
    assert events[1]["responseStatus"]["reason"] == "InternalError"
    assert "kaboom" in events[1]["responseStatus"]["message"]


async def test_failed_authentication(harness_factory: Any) -> None:
    h = await harness_factory(METADATA)
    r = await h.call("GET", "/api/v1/namespaces/default/configmaps", token="wrong")
    assert r.status == 401
    events = h.events()
    assert len(events) == 1
    ev = events[0]
    assert ev["stage"] == "ResponseStarted" and ev["user"] == {}
    assert ev["verb"] == "list"
    assert ev["responseStatus"] == {"metadata": {}, "status": "Failure",
                                    "message": "Unauthorized", "reason": "Unauthorized",
                                    "code": 401}
    assert r.headers["Audit-Id"] == ev["auditID"]


def test_config_errors(tmp_path: Path) -> None:
    assert from_config("", str(tmp_path / "a.log")) is None
    pf = tmp_path / "p.yaml"
    pf.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
    assert from_config(str(pf), "") is None  # no backend: no events, as upstream
    with pytest.raises(AuditConfigError, match="--audit-log-maxbackup -1 can't be a negative"):
        from_config(str(pf), str(tmp_path / "a.log"), max_backups=-1)
    pf.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n")
    with pytest.raises(AuditConfigError, match='^loading audit policy file: rules.0..level: '
                                               'Unsupported value: "Loud"'):
        from_config(str(pf), str(tmp_path / "a.log"))

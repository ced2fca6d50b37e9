"""The probe handlers (exec, httpGet, tcpSocket, grpc) against local servers, and the
probe workers / manager (thresholds, started / ready, liveness kills) on a stub runtime."""
from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import web

from pyk8s.kubelet.prober import ProbeManager, Result
from pyk8s.kubelet.prober.handlers import (ProbeError, decode_health_status,
                                           encode_health_request, resolve_port, run_handler)
from pyk8s.kubelet.runtimes.fake import FakeRuntime
from pyk8s.kubelet.runtimes.process import ProcessRuntime

Obj = dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_resolve_port() -> None:
    ctr = {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port(80, ctr) == 80
    assert resolve_port("81", ctr) == 81
    assert resolve_port("http", ctr) == 8080
    with pytest.raises(ProbeError):
        resolve_port("nope", ctr)
    with pytest.raises(ProbeError):
        resolve_port(0, ctr)


def test_health_wire_format() -> None:
    assert encode_health_request("") == b""
    assert encode_health_request("svc") == b"\x0a\x03svc"
    assert decode_health_status(b"\x08\x01") == 1
    assert decode_health_status(b"") == 0


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="fine")

    async def redirect(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    async def bad(_: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    async def headers(r: web.Request) -> web.Response:
        ok = (r.headers.get("X-Probe") == "yes" and r.headers.get("User-Agent", "")
              .startswith("kube-probe/") and r.host == "example.test")
        return web.Response(status=200 if ok else 400)

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/bad", bad)
    app.router.add_get("/slow", slow)
    app.router.add_get("/headers", headers)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def http(port: Any, path: str, timeout: float = 1.0, ctr: Obj | None = None,
               **extra: Any) -> tuple[Result, str]:
    return await run_handler({"httpGet": {"port": port, "path": path, **extra}},
                             pod_ip="127.0.0.1", container=ctr or {"name": "c"},
                             timeout=timeout, exec_fn=None)


async def test_http_get(http_server: int) -> None:
    port = http_server
    assert (await http(port, "/ok")) == (Result.SUCCESS, "fine")
    assert (await http(port, "ok"))[0] == Result.SUCCESS            # path without "/"
    assert (await http(port, "/redirect"))[0] == Result.SUCCESS     # 3xx: success
    r, msg = await http(port, "/bad")
    assert r == Result.FAILURE and "statuscode: 503" in msg
    assert (await http(port, "/missing"))[0] == Result.FAILURE      # 404
    r, msg = await http(port, "/slow", timeout=0.3)
    assert r == Result.FAILURE and "deadline exceeded" in msg
    assert (await http(port, "/headers"))[0] == Result.FAILURE
    assert (await http(port, "/headers", httpHeaders=[
        {"name": "X-Probe", "value": "yes"}, {"name": "Host", "value": "example.test"}]))[0] \
        == Result.SUCCESS
    named = {"name": "c", "ports": [{"name": "web", "containerPort": port}]}
    assert (await http("web", "/ok", ctr=named))[0] == Result.SUCCESS
    assert (await http("other", "/ok", ctr=named))[0] == Result.FAILURE
    assert (await http(port, "/ok", host="127.0.0.1", scheme="HTTP"))[0] == Result.SUCCESS
    r, msg = await http(free_port(), "/ok")                         # refused
    assert r == Result.FAILURE and "Get " in msg


async def test_tcp_socket() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        r, _ = await run_handler({"tcpSocket": {"port": port}}, pod_ip="127.0.0.1",
                                 container={"name": "c"}, timeout=1, exec_fn=None)
        assert r == Result.SUCCESS
    finally:
        server.close()
        await server.wait_closed()
    r, msg = await run_handler({"tcpSocket": {"port": free_port()}}, pod_ip="127.0.0.1",
                               container={"name": "c"}, timeout=1, exec_fn=None)
    assert r == Result.FAILURE and "dial tcp" in msg


async def test_grpc() -> None:
    import grpc
    statuses = {"": 1, "sick": 2}

    def check(request: bytes, context: Any) -> bytes:
        svc = request[2:].decode() if request else ""
        if svc not in statuses:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return b"\x08" + bytes([statuses[svc]])

    handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=lambda b: b, response_serializer=lambda b: b)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async def probe(service: str = "", p: int = port) -> tuple[Result, str]:
            return await run_handler({"grpc": {"port": p, "service": service}},
                                     pod_ip="127.0.0.1", container={"name": "c"},
                                     timeout=2, exec_fn=None)
        assert (await probe())[0] == Result.SUCCESS
        r, msg = await probe("sick")
        assert r == Result.FAILURE and "NOT_SERVING" in msg
        assert (await probe("unknown"))[0] == Result.FAILURE
    finally:
        await server.stop(None)
    assert (await probe(p=free_port()))[0] == Result.FAILURE


async def test_process_exec_sync(tmp_path: Path) -> None:
    rt = ProcessRuntime(tmp_path)
    rt.set_pod({"metadata": {"name": "p", "namespace": "default", "uid": "u1"}}, "127.0.0.1")
    cid = await rt.create_container("u1", {
        "name": "main", "command": ["sleep", "30"], "workingDir": str(tmp_path),
        "env": [{"name": "FOO", "value": "bar"}]})
    await rt.start_container(cid)
    try:
        code, out = await rt.exec_sync(cid, ["sh", "-c", "echo $FOO; pwd; exit 3"], 5)
        assert code == 3 and out.decode().split() == ["bar", str(tmp_path)]

        async def exec_fn(argv: list[str], t: float) -> tuple[int, bytes]:
            return await rt.exec_sync(cid, argv, t)
        r, _ = await run_handler({"exec": {"command": ["true"]}}, pod_ip="", container={},
                                 timeout=1, exec_fn=exec_fn)
        assert r == Result.SUCCESS
        r, _ = await run_handler({"exec": {"command": ["false"]}}, pod_ip="", container={},
                                 timeout=1, exec_fn=exec_fn)
        assert r == Result.FAILURE
        r, msg = await run_handler({"exec": {"command": ["sleep", "10"]}}, pod_ip="",
                                   container={}, timeout=0.3, exec_fn=exec_fn)
        assert r == Result.FAILURE and "timed out" in msg
        r, _ = await run_handler({"exec": {"command": ["/no/such/binary"]}}, pod_ip="",
                                 container={}, timeout=1, exec_fn=exec_fn)
        assert r == Result.FAILURE
    finally:
        await rt.kill_container(cid, 1)
        await rt.remove_pod("u1")
    assert await FakeRuntime().exec_sync("x", ["anything"], 1) == (0, b"")


# -- workers and the manager on a stub runtime --------------------------------------------

class StubRuntime(FakeRuntime):
    """The fake runtime whose exec results the test sets (and that runs probes)."""
    run_probes = True

    def __init__(self) -> None:
        super().__init__()
        self.exit_code = 0
        self.execs = 0

    async def exec_sync(self, container_id: str, argv: list[str],
                        timeout: float) -> tuple[int, bytes]:
        self.execs += 1
        return self.exit_code, b""


def probe_pod(uid: str, **probes: Obj) -> Obj:
    return {"metadata": {"name": "p", "namespace": "default", "uid": uid},
            "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 5,
                     "containers": [{"name": "main", "image": "x", **{
                         f"{k}Probe": {"exec": {"command": ["check"]}, "periodSeconds": 0.05,
                                       **v} for k, v in probes.items()}}]}}


async def started_pod(rt: StubRuntime, pod: Obj) -> tuple[ProbeManager, list[str]]:
    uid = pod["metadata"]["uid"]
    changes: list[str] = []
    m = ProbeManager(rt, on_change=changes.append)
    cid = await rt.create_container(uid, pod["spec"]["containers"][0])
    await rt.start_container(cid)
    m.add_pod(pod, "127.0.0.1")
    return m, changes


def status_of(m: ProbeManager, rt: StubRuntime, uid: str) -> Obj:
    (c,) = rt.pod_containers(uid)
    s = {"name": c.name, "containerID": c.container_id, "ready": True, "started": True,
         "state": {"running": {}} if c.state == "running" else {"terminated": {}}}
    m.update_pod_status(uid, "Running", [s])
    return s


async def until(cond: Any, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_readiness_drives_ready() -> None:
    rt = StubRuntime()
    rt.exit_code = 1
    pod = probe_pod("u1", readiness={"successThreshold": 2, "failureThreshold": 2})
    m, changes = await started_pod(rt, pod)
    try:
        await until(lambda: rt.execs >= 2)
        s = status_of(m, rt, "u1")
        assert s["started"] and not s["ready"]          # failing readiness
        rt.exit_code = 0
        n = rt.execs
        await until(lambda: status_of(m, rt, "u1")["ready"])
        assert rt.execs - n >= 2                         # successThreshold 2
        assert "u1" in changes
        rt.exit_code = 1
        await until(lambda: not status_of(m, rt, "u1")["ready"])
        (c,) = rt.pod_containers("u1")
        assert m.kill_reason("u1", c, pod) is None       # readiness never kills
    finally:
        m.remove_pod("u1")
        await m.shutdown()


async def test_no_probe_ready_when_running() -> None:
    rt = StubRuntime()
    pod = probe_pod("u2")
    m, _ = await started_pod(rt, pod)
    s = status_of(m, rt, "u2")
    assert s["ready"] and s["started"]
    await m.shutdown()


async def test_liveness_failure_kills() -> None:
    rt = StubRuntime()
    pod = probe_pod("u3", liveness={"failureThreshold": 3,
                                    "terminationGracePeriodSeconds": 2})
    m, _ = await started_pod(rt, pod)
    try:
        (c,) = rt.pod_containers("u3")
        await until(lambda: rt.execs >= 3)
        assert m.kill_reason("u3", c, pod) is None        # passing
        rt.exit_code = 1
        await until(lambda: m.kill_reason("u3", c, pod) is not None)
        msg, grace = m.kill_reason("u3", c, pod)  # type: ignore[misc]
        assert msg == "Container main failed liveness probe, will be restarted"
        assert grace == 2.0                               # the probe's own grace period
        n = rt.execs
        await asyncio.sleep(0.2)
        assert rt.execs == n                              # on hold until a new container
        await rt.kill_container(c.container_id.split("://")[1], 0)
        cid = await rt.create_container("u3", pod["spec"]["containers"][0])
        await rt.start_container(cid)
        rt.exit_code = 0
        await until(lambda: rt.execs > n)
        c2 = rt.pod_containers("u3")[-1]
        assert m.kill_reason("u3", c2, pod) is None
    finally:
        m.remove_pod("u3")
        await m.shutdown()


async def test_startup_gates_liveness_and_readiness() -> None:
    rt = StubRuntime()
    rt.exit_code = 1
    pod = probe_pod("u4", startup={"failureThreshold": 1000}, readiness={},
                    liveness={})
    m, _ = await started_pod(rt, pod)
    try:
        await until(lambda: rt.execs >= 3)
        s = status_of(m, rt, "u4")
        assert not s["started"] and not s["ready"]
        (c,) = rt.pod_containers("u4")
        assert m.kill_reason("u4", c, pod) is None        # liveness waits for startup
        rt.exit_code = 0
        await until(lambda: status_of(m, rt, "u4")["started"])
        await until(lambda: status_of(m, rt, "u4")["ready"])
    finally:
        m.remove_pod("u4")
        await m.shutdown()


async def test_startup_failure_kills_and_remove_stops_workers() -> None:
    rt = StubRuntime()
    rt.exit_code = 1
    pod = probe_pod("u5", startup={"failureThreshold": 2}, readiness={})
    m, _ = await started_pod(rt, pod)
    (c,) = rt.pod_containers("u5")
    await until(lambda: m.kill_reason("u5", c, pod) is not None)
    assert m.kill_reason("u5", c, pod)[0].endswith("failed startup probe, will be restarted")  # type: ignore[index]
    m.remove_pod("u5")
    await asyncio.sleep(0.1)
    n = rt.execs
    await asyncio.sleep(0.2)
    assert rt.execs == n and not m._workers
    assert m.results["startup"].get(c.container_id) is None   # results dropped
    await m.shutdown()


async def test_lifecycle_hooks(http_server: int) -> None:
    from pyk8s.kubelet.prober.lifecycle import hook_of, run_hook
    rt = StubRuntime()
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u6"},
           "spec": {"containers": [{"name": "main", "lifecycle": {
               "postStart": {"httpGet": {"port": http_server, "path": "/ok"}}}}]}}
    assert hook_of(pod, "main", "postStart") == {"httpGet": {"port": http_server,
                                                             "path": "/ok"}}
    assert hook_of(pod, "main", "preStop") is None
    ok = {"httpGet": {"port": http_server, "path": "/ok"}}
    assert await run_hook(rt, pod, "main", "fake://1", ok, "127.0.0.1", 1) is None
    err = await run_hook(rt, pod, "main", "fake://1",
                         {"httpGet": {"port": http_server, "path": "/bad"}}, "127.0.0.1", 1)
    assert err is not None and err.startswith("HTTP lifecycle hook (/bad)")
    assert await run_hook(rt, pod, "main", "fake://1", {"exec": {"command": ["x"]}},
                          "", 1) is None
    rt.exit_code = 2
    err = await run_hook(rt, pod, "main", "fake://1", {"exec": {"command": ["x"]}}, "", 1)
    assert err is not None and err.startswith("Exec lifecycle hook (['x'])")
    assert await run_hook(rt, pod, "main", "fake://1", {"sleep": {"seconds": 0}}, "", 1) \
        is None


async def test_fake_runtime_runs_no_probes() -> None:
    rt = FakeRuntime()
    m = ProbeManager(rt)
    pod = probe_pod("u7", readiness={"httpGet": {"port": 1}})
    cid = await rt.create_container("u7", pod["spec"]["containers"][0])
    await rt.start_container(cid)
    m.add_pod(pod, "10.244.0.2")
    assert not m._workers
    s = status_of(m, rt, "u7")  # type: ignore[arg-type]
    assert s["ready"] and s["started"]


async def test_initial_delay() -> None:
    rt = StubRuntime()
    pod = probe_pod("u8", readiness={"initialDelaySeconds": 2})
    m, _ = await started_pod(rt, pod)
    try:
        await asyncio.sleep(0.5)
        assert rt.execs == 0 and not status_of(m, rt, "u8")["ready"]
        await until(lambda: rt.execs > 0, timeout=4)
        await until(lambda: status_of(m, rt, "u8")["ready"])
    finally:
        await m.shutdown()

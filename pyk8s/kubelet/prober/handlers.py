"""The probe handlers (upstream pkg/probe/{exec,http,tcp,grpc}): each returns a Result and
its output/message. Errors (refused, timed out, no such port) are failures, as upstream.
The same exec / httpGet handlers run the lifecycle hooks (postStart, preStop)."""
from __future__ import annotations

import asyncio
import ssl
from typing import Any, Awaitable, Callable

from pyk8s.kubelet.prober.results import Result

Obj = dict[str, Any]

# Upstream reads at most 10 KiB of a probe's output / response body.
MAX_OUTPUT = 10 * 1024
USER_AGENT = "kube-probe/1.31"

ExecFn = Callable[[list[str], float], Awaitable[tuple[int, bytes]]]


class ProbeError(Exception):
    pass


def resolve_port(port: Any, container: Obj) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) and not isinstance(port, bool):
        p = port
    elif isinstance(port, str) and port.isdigit():
        p = int(port)
    elif isinstance(port, str) and port:
        for cp in container.get("ports") or []:
            if cp.get("name") == port:
                p = int(cp.get("containerPort") or 0)
                break
        else:
            raise ProbeError(f"couldn't find port: {port} in {container.get('name')}")
    else:
        raise ProbeError(f"invalid port {port!r}")
    if not 0 < p < 65536:
        raise ProbeError(f"invalid port number: {p}")
    return p


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


async def probe_exec(argv: list[str], timeout: float, exec_fn: ExecFn) -> tuple[Result, str]:
    if not argv:
        raise ProbeError("exec probe without a command")
    try:
        code, out = await exec_fn([str(a) for a in argv], timeout)
    except asyncio.TimeoutError:
        return Result.FAILURE, f"command {argv!r} timed out"
    text = out[:MAX_OUTPUT].decode(errors="replace")
    if code == 0:
        return Result.SUCCESS, text
    return Result.FAILURE, text or f"command {argv!r} exited with {code}"


async def probe_http(spec: Obj, pod_ip: str, container: Obj,
                     timeout: float) -> tuple[Result, str]:
    import aiohttp
    scheme = (spec.get("scheme") or "HTTP").lower()
    host = spec.get("host") or pod_ip
    port = resolve_port(spec.get("port"), container)
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{_host(host)}:{port}{path}"
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    for h in spec.get("httpHeaders") or []:
        name = h.get("name")
        if name:
            # Upstream: a header named like a default replaces it ("Host" sets the host).
            for k in [k for k in headers if k.lower() == name.lower()]:
                del headers[k]
            headers[name] = str(h.get("value") or "")
    ctx: ssl.SSLContext | bool = False
    if scheme == "https":   # upstream: InsecureSkipVerify
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout), auto_decompress=False,
                connector=aiohttp.TCPConnector(ssl=ctx, force_close=True)) as s:
            # Redirects are not followed: a 3xx is a success (200-399), as upstream
            # reports a redirect it does not follow.
            async with s.get(url, headers=headers, allow_redirects=False) as r:
                body = await r.content.read(MAX_OUTPUT)
                status = r.status
    except asyncio.TimeoutError:
        return Result.FAILURE, (f"Get \"{url}\": context deadline exceeded "
                                f"(Client.Timeout exceeded while awaiting headers)")
    except (aiohttp.ClientError, OSError) as e:
        return Result.FAILURE, f"Get \"{url}\": {e}"
    text = body.decode(errors="replace")
    if 200 <= status < 400:
        return Result.SUCCESS, text
    return Result.FAILURE, f"HTTP probe failed with statuscode: {status}"


async def probe_tcp(spec: Obj, pod_ip: str, container: Obj,
                    timeout: float) -> tuple[Result, str]:
    host = spec.get("host") or pod_ip
    port = resolve_port(spec.get("port"), container)
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except asyncio.TimeoutError:
        return Result.FAILURE, f"dial tcp {host}:{port}: i/o timeout"
    except OSError as e:
        return Result.FAILURE, f"dial tcp {host}:{port}: {e}"
    w.close()
    try:
        await w.wait_closed()
    except OSError:
        pass
    return Result.SUCCESS, ""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_health_request(service: str) -> bytes:
    """grpc.health.v1.HealthCheckRequest{service} in protobuf wire format."""
    if not service:
        return b""
    raw = service.encode()
    return b"\x0a" + _varint(len(raw)) + raw


def decode_health_status(data: bytes) -> int:
    """HealthCheckResponse.status (field 1, varint); 0 (UNKNOWN) when absent."""
    i, status = 0, 0
    while i < len(data):
        key = data[i]
        i += 1
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, shift = 0, 0
            while True:
                b = data[i]
                i += 1
                val |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if field == 1:
                status = val
        elif wire == 2:
            ln, shift = 0, 0
            while True:
                b = data[i]
                i += 1
                ln |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            i += ln
        else:
            break
    return status


SERVING = 1


async def probe_grpc(spec: Obj, pod_ip: str, timeout: float) -> tuple[Result, str]:
    """grpc.health.v1.Health/Check at podIP:port (upstream: no TLS, the pod IP)."""
    import grpc
    port = int(spec.get("port") or 0)
    service = spec.get("service") or ""
    target = f"{_host(pod_ip)}:{port}"
    async with grpc.aio.insecure_channel(target) as ch:
        call = ch.unary_unary("/grpc.health.v1.Health/Check",
                              request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
        try:
            resp = await call(encode_health_request(service), timeout=timeout,
                              metadata=(("user-agent", USER_AGENT),))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Result.FAILURE, (f"timeout: health rpc did not complete within "
                                        f"{timeout:g}s")
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                return Result.FAILURE, (f"timeout: failed to connect service {target!r} "
                                        f"within {timeout:g}s: {e.details()}")
            return Result.FAILURE, f"error: health rpc probe failed: {e.details()}"
    status = decode_health_status(resp)
    if status != SERVING:
        names = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
        return Result.FAILURE, f"service unhealthy (responded with \"{names.get(status, status)}\")"
    return Result.SUCCESS, "service is serving"


async def run_handler(handler: Obj, *, pod_ip: str, container: Obj, timeout: float,
                      exec_fn: ExecFn | None) -> tuple[Result, str]:
    """Run a probe (or lifecycle handler): exactly one of exec, httpGet, tcpSocket, grpc.
    Errors are failures."""
    try:
        if handler.get("exec") is not None:
            if exec_fn is None:
                raise ProbeError("the runtime cannot exec")
            return await probe_exec(list((handler["exec"] or {}).get("command") or []),
                                    timeout, exec_fn)
        if handler.get("httpGet") is not None:
            return await probe_http(handler["httpGet"], pod_ip, container, timeout)
        if handler.get("tcpSocket") is not None:
            return await probe_tcp(handler["tcpSocket"], pod_ip, container, timeout)
        if handler.get("grpc") is not None:
            return await probe_grpc(handler["grpc"], pod_ip, timeout)
        raise ProbeError("missing probe handler")
    except ProbeError as e:
        return Result.FAILURE, str(e)
    except LookupError as e:   # the container stopped meanwhile
        return Result.FAILURE, str(e)
    except NotImplementedError as e:
        return Result.FAILURE, str(e) or "not supported by the runtime"

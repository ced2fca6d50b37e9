"""pods/log, exec, attach and portforward, and nodes/proxy (GET): the API server finds the
(pod's) node and proxies to its kubelet
(`https://<InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>`), verifying the kubelet's
serving certificate against --kubelet-certificate-authority and presenting its kubelet
client certificate (kubeletclient.py), which the kubelet authorizes by SubjectAccessReview.
Streams are WebSocket only (exec/attach `v5.channel.k8s.io`, `v4.channel.k8s.io`, ...;
portforward `SPDY/3.1+portforward.k8s.io`, `v4.channel.k8s.io`); frames are relayed
unchanged, the subprotocol the kubelet chose passed through."""
from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import WSMsgType, web

from pyk8s.api import errors
from pyk8s.apiserver.kubeletclient import KubeletClientConfig, dial_error

if TYPE_CHECKING:
    from pyk8s.apiserver.app import APIServer
    from pyk8s.registry.store import Store

Obj = dict[str, Any]
STREAM_SUBRESOURCES = ("log", "exec", "attach", "portforward")


def _split_scheme_name_port(id_: str) -> tuple[str, str, str]:
    """`n1`, `n1:10250`, `https:n1:10250` → (scheme, name, port), as upstream's
    net.SplitSchemeNamePort."""
    parts = id_.split(":")
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return "", "", ""


def _go_list(names: list[str]) -> str:
    return "[" + " ".join(names) + "]"


def _container(pod: Obj, name: str, requested: str) -> str:
    """The container a request means (upstream's LogLocation / streamLocation checks)."""
    spec = pod.get("spec") or {}
    ctrs = [c.get("name", "") for c in spec.get("containers") or []]
    inits = [c.get("name", "") for c in spec.get("initContainers") or []]
    eph = [c.get("name", "") for c in spec.get("ephemeralContainers") or []]
    if not requested:
        if len(ctrs) == 1:
            return ctrs[0]
        msg = f"a container name must be specified for pod {name}, choose one of: {_go_list(ctrs)}"
        if inits:
            msg += f" or one of the init containers: {_go_list(inits)}"
        raise errors.BadRequest(msg)
    if requested not in ctrs + inits + eph:
        raise errors.BadRequest(f"container {requested} is not valid for pod {name}")
    return requested


def _waiting(pod: Obj, name: str, container: str) -> str | None:
    """The reason a container is waiting to start, None if it has started."""
    st = pod.get("status") or {}
    for cs in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or []):
        if cs.get("name") == container:
            w = (cs.get("state") or {}).get("waiting")
            if w is None and (cs.get("state") or {}):
                return None
            return (w or {}).get("reason") or "ContainerCreating"
    return "ContainerCreating"



async def _relay(request: web.Request, resp: aiohttp.ClientResponse,
                 out: web.StreamResponse) -> web.StreamResponse:
    """Stream an upstream response's body to the client as it comes (chunked)."""
    out.enable_chunked_encoding()
    await out.prepare(request)
    with contextlib.suppress(aiohttp.ClientError, ConnectionResetError):
        async for chunk in resp.content.iter_any():
            await out.write(chunk)
    await out.write_eof()
    return out

class PodProxy:
    def __init__(self, server: "APIServer") -> None:
        self.server = server
        c = server.config
        self.kubelet_client = KubeletClientConfig(c.kubelet_certificate_authority,
                                                  c.kubelet_client_certificate,
                                                  c.kubelet_client_key)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.kubelet_client.ssl_context()),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _kubelet(self, pod: Obj, name: str) -> str:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.BadRequest(f"pod {name} does not have a host assigned")
        return await self._node_kubelet(node_name)

    async def _node_kubelet(self, node_name: str, port: str = "", scheme: str = "") -> str:
        """`https://<InternalIP>:<kubelet port>` of a node (upstream's
        GetConnectionInfo); `port` / `scheme` as a nodes/proxy name asks (`n1:10255`)."""
        info = self.server.catalogue.lookup("", "v1", "nodes")
        assert info is not None
        try:
            node = await self.server.store(info).get(None, node_name)
        except errors.NotFound:
            raise errors.NotFound.of("", "nodes", node_name) from None
        st = node.get("status") or {}
        ip = next((a.get("address") for a in st.get("addresses") or []
                   if a.get("type") == "InternalIP"), None)
        port = port or str(((st.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {})
                           .get("Port") or "")
        if not ip or not port or port == "0":
            raise errors.ServiceUnavailable(f"node {node_name} reports no kubelet endpoint")
        host = f"[{ip}]" if ":" in ip else ip
        return f"{scheme or 'https'}://{host}:{port}"

    async def node_proxy(self, request: web.Request, name: str,
                         rest: tuple[str, ...]) -> web.StreamResponse:
        """nodes/proxy (`/api/v1/nodes/{name}/proxy/{path}`, name `[scheme:]node[:port]`):
        GET relayed to `https://<InternalIP>:<kubelet port>/{path}?{query}` (the kubelet's
        /stats/summary, /metrics/resource, /pods, /healthz, ...), its answer passed back
        as it is. Other verbs (upstream: connect) are not served."""
        if request.method != "GET":
            raise errors.MethodNotAllowed("the server does not allow this method on the "
                                          "requested resource")
        scheme, node_name, port = _split_scheme_name_port(name)
        if scheme not in ("", "http", "https") or not node_name:
            raise errors.BadRequest(f"invalid node request {name!r}")
        base = await self._node_kubelet(node_name, port, scheme)
        path = "/" + "/".join(quote(p) for p in rest)
        if rest and request.path.endswith("/"):
            path += "/"
        query = request.rel_url.raw_query_string
        url = f"{base}{path}" + (f"?{query}" if query else "")
        try:
            resp = await self.session.get(url, allow_redirects=False)
        except aiohttp.ClientConnectorCertificateError as e:
            raise dial_error("Get", url, e) from None
        except aiohttp.ClientError as e:
            raise errors.ServiceUnavailable(f"error trying to reach service: {e}") from None
        async with resp:
            out = web.StreamResponse(status=resp.status, reason=resp.reason)
            if "Content-Type" in resp.headers:
                out.headers["Content-Type"] = resp.headers["Content-Type"]
            return await _relay(request, resp, out)

    async def handle(self, request: web.Request, store: "Store", ns: str | None, name: str,
                     sub: str) -> web.StreamResponse:
        if not name or ns is None:
            raise errors.NotFound("the server could not find the requested resource")
        if sub == "portforward":
            return await self._port_forward(request, store, ns, name)
        if sub == "log" and request.method != "GET":
            raise errors.MethodNotAllowed("the server does not allow this method on the "
                                          "requested resource")
        pod = await store.get(ns, name)
        q = request.query
        ctr = _container(pod, name, q.get("container", ""))
        if sub == "log":
            previous = q.get("previous", "").lower() in ("1", "true")
            if not (pod.get("spec") or {}).get("nodeName"):
                return web.Response(body=b"", content_type="text/plain")
            if not previous:
                reason = _waiting(pod, name, ctr)
                if reason is not None:
                    raise errors.BadRequest(f'container "{ctr}" in pod "{name}" is waiting '
                                            f'to start: {reason}')
            base = await self._kubelet(pod, name)
            params = [(k, v) for k, v in q.items() if k != "container"]
            url = f"{base}/containerLogs/{quote(ns)}/{quote(name)}/{quote(ctr)}"
            return await self._logs(request, url, params)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise errors.BadRequest(f"cannot {sub} into a container in a completed pod; "
                                    f"current phase is {phase}")
        reason = _waiting(pod, name, ctr)
        if reason is not None:
            raise errors.BadRequest(f'container "{ctr}" in pod "{name}" is waiting to start: '
                                    f'{reason}')
        base = await self._kubelet(pod, name)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise errors.BadRequest(f"pyk8s streams {sub} over WebSocket only "
                                    "(v5.channel.k8s.io / v4.channel.k8s.io), not SPDY")
        params = [(k, v) for k, v in q.items() if k != "container"]
        url = f"{base}/{sub}/{quote(ns)}/{quote(name)}/{quote(ctr)}"
        return await self._websocket(request, url, params)

    async def _port_forward(self, request: web.Request, store: "Store", ns: str,
                            name: str) -> web.StreamResponse:
        """pods/portforward: the WebSocket (`SPDY/3.1+portforward.k8s.io` from kubectl,
        `v4.channel.k8s.io` with `?ports=` from the Python client) relayed to the kubelet's
        /portForward, the negotiated subprotocol passed through."""
        pod = await store.get(ns, name)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise errors.BadRequest(f"cannot port-forward to a completed pod; "
                                    f"current phase is {phase}")
        base = await self._kubelet(pod, name)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise errors.BadRequest("pyk8s streams portforward over WebSocket only "
                                    "(SPDY/3.1+portforward.k8s.io / v4.channel.k8s.io), "
                                    "not native SPDY")
        url = f"{base}/portForward/{quote(ns)}/{quote(name)}"
        return await self._websocket(request, url, list(request.query.items()))

    async def _kubelet_error(self, resp: aiohttp.ClientResponse) -> errors.ApiError:
        raw = await resp.read()
        try:
            st = orjson.loads(raw)
            msg = st.get("message") or raw.decode(errors="replace")
        except (orjson.JSONDecodeError, AttributeError):
            msg = raw.decode(errors="replace").strip()
        if resp.status == 404:
            return errors.NotFound(msg)
        if resp.status in (401, 403):
            return errors.InternalError(f"the kubelet refused the API server: {msg}")
        return errors.ApiError(msg, code=resp.status,
                               reason="BadRequest" if resp.status == 400 else None)

    async def _logs(self, request: web.Request, url: str,
                    params: list[tuple[str, str]]) -> web.StreamResponse:
        try:
            resp = await self.session.get(url, params=params)
        except aiohttp.ClientError as e:
            raise dial_error("Get", url, e) from None
        async with resp:
            if resp.status != 200:
                raise await self._kubelet_error(resp)
            return await _relay(request, resp,
                                web.StreamResponse(headers={"Content-Type": "text/plain"}))

    async def _websocket(self, request: web.Request, url: str,
                         params: list[tuple[str, str]]) -> web.StreamResponse:
        asked = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                 if p.strip()]
        try:
            upstream = await self.session.ws_connect(url, params=params, protocols=asked,
                                                     autoping=True, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            if e.status in (401, 403):
                what = "Unauthorized" if e.status == 401 else "Forbidden"
                raise errors.InternalError(f"the kubelet refused the API server: {e.status} "
                                           f"{what}") from None
            raise errors.ApiError(f"error from the kubelet: {e.message}", code=e.status or 500,
                                  reason="BadRequest" if e.status == 400 else None) from None
        except aiohttp.ClientError as e:
            raise dial_error("Get", url, e) from None
        try:
            protocols = (upstream.protocol,) if upstream.protocol else ()
            ws = web.WebSocketResponse(protocols=protocols, autoping=True, max_msg_size=0)
            await ws.prepare(request)

            async def relay(src: Any, dst: Any) -> None:
                async for msg in src:
                    if msg.type == WSMsgType.BINARY:
                        await dst.send_bytes(msg.data)
                    elif msg.type == WSMsgType.TEXT:
                        await dst.send_str(msg.data)
                    else:
                        break

            tasks = [asyncio.create_task(relay(upstream, ws)),
                     asyncio.create_task(relay(ws, upstream))]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                # The kubelet's session first (a client gone away must end it: stdinOnce,
                # exec's command); closing a client connection that is lost may not return.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(upstream.close(), 5.0)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 5.0)
            return ws
        finally:
            await upstream.close()

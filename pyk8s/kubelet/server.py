"""The kubelet's HTTPS server (upstream's port 10250): /healthz, /pods, /containerLogs,
/exec, /attach and /portForward, for the API server's pods/log, exec, attach and
portforward; /stats/summary and /metrics/resource (stats.py) for nodes/proxy. A
self-signed serving certificate in the agent's data dir; bearer tokens are checked by a
TokenReview against the API server (cached a minute) and must belong to `system:masters`
(the API server's own token)."""
from __future__ import annotations

import asyncio
import datetime
import errno
import ipaddress
import logging
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyk8s.client.rest import RESTClient, resource_path
from pyk8s.kubelet import portforward
from pyk8s.kubelet import crilog, streaming
from pyk8s.kubelet.stats import METRICS_CONTENT_TYPE, StatsProvider

if TYPE_CHECKING:
    from pyk8s.kubelet.kubelet import Kubelet

log = logging.getLogger("pyk8s.kubelet.server")

Obj = dict[str, Any]
TOKEN_CACHE_SECONDS = 60.0


def ensure_serving_cert(dir_: Path, node_name: str, node_ip: str) -> tuple[Path, Path]:
    """`kubelet.crt` / `kubelet.key` in `dir_`, self-signed (as upstream's kubelet without
    --tls-cert-file), created on first use."""
    crt, key_path = dir_ / "kubelet.crt", dir_ / "kubelet.key"
    if crt.exists() and key_path.exists():
        return crt, key_path
    dir_.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name}@{int(time.time())}")])
    sans: list[x509.GeneralName] = [x509.DNSName(node_name), x509.DNSName("localhost")]
    for ip in {node_ip, "127.0.0.1"}:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            pass
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt, key_path


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    return web.Response(status=code, body=orjson.dumps(body), content_type="application/json")


class TokenAuthenticator:
    """TokenReview against the API server, results cached for a minute."""

    def __init__(self, client: RESTClient) -> None:
        self.client = client
        self._cache: dict[str, tuple[float, Obj | None]] = {}

    async def user(self, token: str) -> Obj | None:
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        review = await self.client.create(
            resource_path("authentication.k8s.io", "v1", "tokenreviews"),
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
             "spec": {"token": token}})
        st = review.get("status") or {}
        user = st.get("user") if st.get("authenticated") else None
        if len(self._cache) > 1000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[token] = (now + TOKEN_CACHE_SECONDS, user)
        return user


class KubeletServer:
    def __init__(self, kubelet: "Kubelet", data_dir: Path, port: int,
                 bind: str = "0.0.0.0") -> None:
        self.kubelet = kubelet
        self.data_dir = data_dir
        self.port = port
        self.bind = bind
        self.authn = TokenAuthenticator(kubelet.client)
        self._runner: web.AppRunner | None = None
        self.stats = StatsProvider(kubelet, fs_path=str(data_dir))

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> int:
        """Listen; the port actually bound (0 if the port is taken: serve nothing)."""
        node = self.kubelet.o.node
        crt, key = ensure_serving_cert(self.data_dir / "pki", node.name, node.node_ip)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(crt, key)
        app = web.Application(middlewares=[self._auth_mw])
        r = app.router
        r.add_get("/healthz", self._healthz)
        r.add_get("/pods", self._pods)
        r.add_get("/pods/", self._pods)
        r.add_get("/containerLogs/{ns}/{pod}/{container}", self._logs)
        for verb, h in (("exec", self._exec), ("attach", self._attach)):
            r.add_route("*", f"/{verb}/{{ns}}/{{pod}}/{{container}}", h)
            r.add_route("*", f"/{verb}/{{ns}}/{{pod}}/{{uid}}/{{container}}", h)
        r.add_route("*", "/portForward/{ns}/{pod}", self._port_forward)
        r.add_route("*", "/portForward/{ns}/{pod}/{uid}", self._port_forward)
        r.add_get("/stats/summary", self._stats_summary)
        r.add_get("/metrics/resource", self._metrics_resource)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, self.port, ssl_context=ctx)
        try:
            await site.start()
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            log.error("kubelet port %d is in use: serving no logs / exec (use --kubelet-port)",
                      self.port)
            await self._runner.cleanup()
            self._runner = None
            return 0
        server = getattr(site, "_server", None)
        socks = getattr(server, "sockets", None) or []
        if socks:
            self.port = socks[0].getsockname()[1]
        log.info("kubelet server listening on https://%s:%d", self.bind, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- authn ----------------------------------------------------------------------------
    @web.middleware
    async def _auth_mw(self, request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not token:
            return web.Response(status=401, text="Unauthorized")
        try:
            user = await self.authn.user(token)
        except Exception as e:
            log.warning("TokenReview failed: %s", e)
            return web.Response(status=401, text="Unauthorized")
        if user is None:
            return web.Response(status=401, text="Unauthorized")
        if "system:masters" not in (user.get("groups") or []):
            return web.Response(
                status=403, text=f"Forbidden (user={user.get('username')}, verb=get, "
                                 f"resource=nodes, subresource=proxy)")
        return await handler(request)

    # -- handlers -------------------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _stats_summary(self, request: web.Request) -> web.Response:
        """The Summary API (stats.py); `?only_cpu_and_memory=true` as upstream."""
        only = request.query.getall("only_cpu_and_memory", []) == ["true"]
        summary = await self.stats.summary(only_cpu_and_memory=only)
        return web.Response(body=orjson.dumps(summary, option=orjson.OPT_INDENT_2),
                            content_type="application/json")

    async def _metrics_resource(self, request: web.Request) -> web.Response:
        return web.Response(body=(await self.stats.resource_metrics()).encode(),
                            headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _pods(self, request: web.Request) -> web.Response:
        items = [p for p in self.kubelet.pods.store.list()]
        return web.Response(body=orjson.dumps({"kind": "PodList", "apiVersion": "v1",
                                               "metadata": {}, "items": items}),
                            content_type="application/json")

    def _pod_uid(self, ns: str, name: str) -> str | None:
        uid = self.kubelet._uids.get(f"{ns}/{name}")
        if uid:
            return uid
        pod = self.kubelet.pods.store.get(f"{ns}/{name}")
        return (pod or {}).get("metadata", {}).get("uid") if pod else None

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        ns, name, ctr = (request.match_info[k] for k in ("ns", "pod", "container"))
        q = request.query
        follow = streaming.query_bool(request, "follow")
        previous = streaming.query_bool(request, "previous")
        timestamps = streaming.query_bool(request, "timestamps")
        try:
            tail = int(q["tailLines"]) if q.get("tailLines") else None
            limit = int(q["limitBytes"]) if q.get("limitBytes") else None
            since_seconds = int(q["sinceSeconds"]) if q.get("sinceSeconds") else None
        except ValueError:
            return _status(400, "BadRequest",
                           "tailLines, limitBytes and sinceSeconds must be integers")
        since: int | None = None
        if since_seconds is not None and q.get("sinceTime"):
            return _status(400, "BadRequest",
                           "at most one of `sinceTime` or `sinceSeconds` may be specified")
        if since_seconds is not None:
            if since_seconds < 1:
                return _status(400, "BadRequest", "sinceSeconds: Invalid value: "
                                                  f"{since_seconds}: must be greater than 0")
            since = time.time_ns() - since_seconds * 1_000_000_000
        elif q.get("sinceTime"):
            try:
                since = crilog.parse_timestamp(q["sinceTime"])
            except ValueError:
                return _status(400, "BadRequest",
                               f"sinceTime: Invalid value: {q['sinceTime']!r}: not RFC3339")
        uid = self._pod_uid(ns, name)
        if uid is None:
            return _status(404, "NotFound", f'pod "{name}" not found')
        try:
            found = self.kubelet.runtime.container_log(uid, ctr, previous)
        except NotImplementedError:
            return web.Response(text="", content_type="text/plain")
        if found is None:
            if previous:
                return _status(400, "BadRequest", f'previous terminated container "{ctr}" in '
                                                  f'pod "{name}" not found')
            return _status(400, "BadRequest", f'container "{ctr}" in pod "{name}" is waiting '
                                              f'to start: ContainerCreating')
        path, live = found
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        sent = 0
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            await resp.write_eof()
            return resp
        # The file holds CRI records (crilog.py): the output is their content, stdout
        # and stderr as recorded, as upstream's kubelet serves it.
        render = crilog.LogRenderer(timestamps=timestamps, since=since)
        with f:
            raw = f.read()
            data = render.feed_tail(raw, tail) if tail is not None else render.feed(raw)
            while True:
                if data:
                    if limit is not None:
                        data = data[:max(limit - sent, 0)]
                    if data:
                        await resp.write(data)
                        sent += len(data)
                    if limit is not None and sent >= limit:
                        break
                if not follow or live is None:
                    break
                if live.state == "exited" and not raw:
                    raw = f.read()   # a last look after the exit
                    if not raw:
                        break
                    data = render.feed(raw)
                    continue
                await asyncio.sleep(0.2)
                raw = f.read()
                data = render.feed(raw)
        await resp.write_eof()
        return resp

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        ns, name, ctr = (request.match_info[k] for k in ("ns", "pod", "container"))
        argv = request.query.getall("command", [])
        if not argv:
            return _status(400, "BadRequest", "you must specify at least 1 command")
        uid = self._stream_pod(request, "exec", ns, name)
        if isinstance(uid, web.Response):
            return uid
        ws = web.WebSocketResponse(protocols=streaming.PROTOCOLS, autoping=True)
        try:
            argv, env, cwd = self.kubelet.runtime.exec_context(
                uid, ctr, argv, tty=streaming.query_bool(request, "tty"))
        except (NotImplementedError, LookupError) as e:
            return await self._stream_error(request, ws, f"error executing command in "
                                                         f"container: {e}")
        await ws.prepare(request)
        await streaming.run_exec(ws, argv, env, cwd,
                                 stdin=streaming.query_bool(request, "stdin"),
                                 stdout=streaming.query_bool(request, "stdout") or
                                 "stdout" not in request.query,
                                 stderr=streaming.query_bool(request, "stderr"),
                                 tty=streaming.query_bool(request, "tty"))
        return ws

    def _stream_pod(self, request: web.Request, what: str, ns: str,
                    name: str) -> str | web.Response:
        """The uid of the pod a streaming request (exec, attach, port-forward) is for, or
        the error reply: only WebSocket upgrades are served (native SPDY is not)."""
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _status(400, "BadRequest", f"pyk8s: {what} needs a WebSocket upgrade "
                                              "(SPDY is not supported)")
        uid = self._pod_uid(ns, name)
        if uid is None:
            return _status(404, "NotFound", f'pod "{name}" not found')
        return uid

    @staticmethod
    async def _stream_error(request: web.Request, ws: web.WebSocketResponse,
                            message: str) -> web.WebSocketResponse:
        """As upstream: the stream opens and its error channel carries the failure (a
        refused upgrade would make kubectl retry over SPDY and lose the message)."""
        await ws.prepare(request)
        await streaming.Channels(ws).send(streaming.ERROR, streaming.exit_status(None, message))
        await ws.close()
        return ws

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        ns, name, ctr = (request.match_info[k] for k in ("ns", "pod", "container"))
        uid = self._stream_pod(request, "attach", ns, name)
        if isinstance(uid, web.Response):
            return uid
        ws = web.WebSocketResponse(protocols=streaming.PROTOCOLS, autoping=True)
        try:
            path, status, writer, once = self.kubelet.runtime.attach_context(uid, ctr)
        except (NotImplementedError, LookupError) as e:
            return await self._stream_error(request, ws, f"error attaching to container: {e}")
        await ws.prepare(request)
        await streaming.run_attach(ws, path, status, writer, once,
                                   stdin=streaming.query_bool(request, "stdin"),
                                   stdout=streaming.query_bool(request, "stdout"),
                                   stderr=streaming.query_bool(request, "stderr"))
        return ws

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        """Port forwarding over a WebSocket: SPDY/3.1 tunnelled (kubectl) or the v4
        channel protocol with `?ports=` (the Python client). Host-network runtimes (process)
        reach the pod's ports on the host's loopback, as upstream dials localhost inside
        the pod's network namespace."""
        ns, name = request.match_info["ns"], request.match_info["pod"]
        uid = self._stream_pod(request, "port-forward", ns, name)
        if isinstance(uid, web.Response):
            return uid
        ws = web.WebSocketResponse(protocols=portforward.PROTOCOLS, autoping=True,
                                   max_msg_size=0)
        ready = ws.can_prepare(request)
        if not ready.ok:
            return _status(400, "BadRequest", "pyk8s: port-forward needs a WebSocket upgrade")
        spdy_tunnel = ready.protocol == portforward.SPDY_PROTOCOL
        ports: list[int] = []
        if not spdy_tunnel:
            try:
                ports = portforward.parse_ports(request.query.getall("ports", []))
            except ValueError as e:
                return _status(400, "BadRequest", f"pyk8s: {e}")
            if not ports:
                return _status(400, "BadRequest", 'query parameter "ports" is required')
        # Other runtimes (fake) have no reachable pod network: each forwarded connection
        # fails on its error stream, as exec's failures do.
        rt = self.kubelet.runtime
        host: Any = "127.0.0.1" if rt.host_network else None
        dial = getattr(rt, "dial", None)
        if dial is not None:   # inside the pod's network namespace (oci)
            host = lambda port: dial(uid, port)  # noqa: E731
        await ws.prepare(request)
        pod = f"{ns}/{name}"
        if spdy_tunnel:
            await portforward.run_spdy(ws, host, pod, uid)
        else:
            await portforward.run_channels(ws, host, ports, pod, uid)
        return ws

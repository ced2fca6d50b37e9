"""The kubelet's HTTPS server (upstream's port 10250): /healthz, /pods, /containerLogs,
/exec, /attach and /portForward, for the API server's pods/log, exec, attach and
portforward; /stats/summary and /metrics/resource (stats.py) for nodes/proxy.

Its serving certificate comes from a CertificateSigningRequest for signer
`kubernetes.io/kubelet-serving` (CN `system:node:<name>`, the node's InternalIP and host
name as SANs; upstream's --rotate-server-certificates), stored in
`DATA_DIR/pki/kubelet-server-current.pem` and rotated; until it is issued the server
presents a self-signed certificate. Requests are authenticated by client certificate
(verified against the client CA) or bearer token (TokenReview) and authorized by
SubjectAccessReview (auth.py)."""
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

from pyk8s.kubelet import portforward
from pyk8s.kubelet import crilog, streaming
from pyk8s.kubelet.auth import (CertificateAuthenticator, SubjectAccessReviewAuthorizer,
                                TokenAuthenticator, User, authorization_error_message,
                                forbidden_message, request_attributes)
from pyk8s.kubelet.certificates import (SERVING_SIGNER, CertificateStore, KeyPair, Subject,
                                        serving_usages)
from pyk8s.kubelet.certmanager import CertificateManager
from pyk8s.kubelet.stats import METRICS_CONTENT_TYPE, StatsProvider

if TYPE_CHECKING:
    from pyk8s.kubelet.kubelet import Kubelet

log = logging.getLogger("pyk8s.kubelet.server")

Obj = dict[str, Any]
SERVING_PREFIX = "kubelet-server"


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


class KubeletServer:
    def __init__(self, kubelet: "Kubelet", data_dir: Path, port: int,
                 bind: str = "0.0.0.0", *, client_ca: bytes | None = None,
                 cluster_ca: bytes | None = None,
                 rotate_server_certificates: bool = True) -> None:
        """`client_ca`: the CA bundle client certificates are verified against
        (--client-ca-file; None: bearer tokens only). `cluster_ca`: the CA an issued
        serving certificate must chain to (the API server's, --certificate-authority)."""
        self.kubelet = kubelet
        self.data_dir = data_dir
        self.port = port
        self.bind = bind
        self.client_ca = client_ca
        self.tokens = TokenAuthenticator(kubelet.client)
        self.certs = CertificateAuthenticator()
        self.authorizer = SubjectAccessReviewAuthorizer(kubelet.client)
        self._runner: web.AppRunner | None = None
        self.stats = StatsProvider(kubelet, fs_path=str(data_dir))
        self._ssl: ssl.SSLContext | None = None
        self._stop = asyncio.Event()
        self._rotation: asyncio.Task[None] | None = None
        self.serving: CertificateManager | None = None
        if rotate_server_certificates:
            self.serving = CertificateManager(
                kind="serving", store=CertificateStore(data_dir / "pki", SERVING_PREFIX),
                signer=SERVING_SIGNER, subject=self._serving_subject, usages=serving_usages,
                client=lambda: self.kubelet.client, on_update=self._serve_with,
                ca_pem=cluster_ca)

    def _serving_subject(self) -> Subject:
        """The node's host name and InternalIP (upstream: its Hostname / DNS and IP
        addresses)."""
        node = self.kubelet.o.node
        return Subject.node(node.name, dns_names=[node.name], ip_addresses=[node.node_ip])

    def _serve_with(self, pair: KeyPair) -> None:
        """New handshakes present `pair` (the context is shared by the listener)."""
        if self._ssl is not None and self.serving is not None:
            self._ssl.load_cert_chain(self.serving.store.current_path)
            log.info("kubelet server: serving certificate %s from the cluster CA (valid "
                     "until %s)", pair.common_name, pair.not_after.isoformat())

    def _tls_context(self) -> ssl.SSLContext:
        node = self.kubelet.o.node
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        issued = self.serving.store.current() if self.serving is not None else None
        if self.serving is not None and self.serving.fits(issued):
            self.serving.current = issued
            ctx.load_cert_chain(self.serving.store.current_path)
        else:
            crt, key = ensure_serving_cert(self.data_dir / "pki", node.name, node.node_ip)
            ctx.load_cert_chain(crt, key)
        if self.client_ca:
            # Client certificates are asked for, not required (bearer tokens work too).
            ctx.load_verify_locations(cadata=self.client_ca.decode())
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> int:
        """Listen; the port actually bound (0 if the port is taken: serve nothing)."""
        ctx = self._ssl = self._tls_context()
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
        if self.serving is not None:
            self._rotation = asyncio.create_task(self.serving.run(self._stop),
                                                 name="serving-certificate")
        return self.port

    async def stop(self) -> None:
        self._stop.set()
        if self._rotation is not None:
            self._rotation.cancel()
            await asyncio.gather(self._rotation, return_exceptions=True)
            self._rotation = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- authn / authz --------------------------------------------------------------------
    async def authenticate(self, request: web.Request) -> User | None:
        """The client certificate's user (the handshake verified it against the client
        CA), else the bearer token's (TokenReview)."""
        ssl_object = request.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            user = self.certs.user(der)
            if user is not None:
                return user
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not token:
            return None
        return await self.tokens.user(token)

    @web.middleware
    async def _auth_mw(self, request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
        """Upstream's InstallAuthFilter: 401 `Unauthorized` without a user, 500 when the
        SubjectAccessReview fails, 403 `Forbidden (user=…)` when it is not allowed."""
        try:
            user = await self.authenticate(request)
        except Exception as e:
            log.warning("unable to authenticate the request due to an error: %s", e)
            user = None
        if user is None:
            return web.Response(status=401, text="Unauthorized")
        attrs = request_attributes(request.method, request.path, self.kubelet.name)
        try:
            allowed, reason = await self.authorizer.authorize(user, attrs)
        except Exception as e:
            log.error("authorization error (user %s, verb %s, subresource %s): %s",
                      user.username, attrs.verb, attrs.subresource, e)
            return web.Response(status=500, text=authorization_error_message(user, attrs))
        if not allowed:
            log.info("forbidden: user %s, verb %s, nodes/%s%s", user.username, attrs.verb,
                     attrs.subresource, f" ({reason})" if reason else "")
            return web.Response(status=403, text=forbidden_message(user, attrs))
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
            terminal = self.kubelet.runtime.terminal(uid, ctr)
        except (NotImplementedError, LookupError) as e:
            return await self._stream_error(request, ws, f"error attaching to container: {e}")
        await ws.prepare(request)
        await streaming.run_attach(ws, path, status, writer, once,
                                   stdin=streaming.query_bool(request, "stdin"),
                                   stdout=streaming.query_bool(request, "stdout"),
                                   stderr=streaming.query_bool(request, "stderr"),
                                   terminal=terminal)
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

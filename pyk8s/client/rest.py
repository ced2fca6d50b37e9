"""A small asynchronous REST client for the Kubernetes API, over aiohttp.

Like client-go's `rest.RESTClient` plus the bits of `clientcmd` and `discovery` the
controllers need: built from a kubeconfig (server, CA, bearer token or client
certificate; plain `http://` servers work too), verbs on paths, typed errors, a watch
that yields decoded events, and legacy discovery of the server's preferred resources.

Error mapping happens here, at the edge: every non-2xx answer raises `ApiError` (or one
of its subclasses) carrying the server's `Status`. A watch's in-band `ERROR` event is
raised the same way (a 410 there is `Expired`, the signal to relist).
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Literal, Mapping, Protocol
from urllib.parse import quote

import aiohttp
import orjson
import yaml

from pyk8s.client.workqueue import TokenBucket

log = logging.getLogger("pyk8s.client")

Obj = dict[str, Any]
PatchType = Literal["merge", "json", "strategic"]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


# -- errors -----------------------------------------------------------------------------------
class ApiError(Exception):
    """A failed request: the HTTP code and the server's `Status` (reason, message, details)."""

    def __init__(self, code: int, reason: str, message: str, status: Obj | None = None) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.status: Obj = status if status is not None else {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "code": code, "reason": reason, "message": message}

    @property
    def causes(self) -> list[Obj]:
        return list((self.status.get("details") or {}).get("causes") or [])

    def has_cause(self, cause_type: str) -> bool:
        """Whether `details.causes` holds one of `cause_type` (apierrors.HasStatusCause)."""
        return any(c.get("reason") == cause_type for c in self.causes)


class NotFound(ApiError):
    """404: the object (or the resource) does not exist."""


class Conflict(ApiError):
    """409 Conflict: a stale resourceVersion or a failed precondition."""


class AlreadyExists(ApiError):
    """409 AlreadyExists: create of a name that is taken."""


class Expired(ApiError):
    """410: the resourceVersion is too old (relist)."""


class BadRequest(ApiError):
    """400."""


class Unauthorized(ApiError):
    """401."""


class Forbidden(ApiError):
    """403 (also: creating in a terminating namespace, cause `NamespaceTerminating`)."""


class Invalid(ApiError):
    """422: validation failed; `causes` name the fields."""


class TooManyRequests(ApiError):
    """429."""


class ServerError(ApiError):
    """5xx."""


def error_from_status(code: int, status: Obj | None, fallback: str = "") -> ApiError:
    """The typed error for an HTTP code and a (possibly missing) `Status` body."""
    st = status if isinstance(status, dict) and status.get("kind") == "Status" else None
    if st is not None:
        code = int(st.get("code") or code)
    reason = str((st or {}).get("reason") or "")
    message = str((st or {}).get("message") or fallback or f"HTTP {code}")
    cls: type[ApiError] = ApiError
    if code == 404:
        cls = NotFound
    elif code == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif code == 410 or reason in ("Expired", "Gone"):
        cls = Expired
    else:
        cls = _CLASSES.get(code, ServerError if code >= 500 else ApiError)
    return cls(code, reason or _DEFAULT_REASONS.get(code, "Unknown"), message, st)


_CLASSES: dict[int, type[ApiError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden,
                                       422: Invalid, 429: TooManyRequests}

_DEFAULT_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                    405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 422: "Invalid",
                    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                    504: "Timeout"}


# -- kubeconfig -------------------------------------------------------------------------------
@dataclass
class ClientConfig:
    """Where and how to connect: what a kubeconfig context resolves to."""
    server: str
    token: str | None = None
    ca_data: bytes | None = None          # PEM
    insecure_skip_tls_verify: bool = False
    client_cert_data: bytes | None = None  # PEM
    client_key_data: bytes | None = None   # PEM

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str],
                        context: str | None = None) -> "ClientConfig":
        """Resolve `context` (default: current-context) of the kubeconfig at `path`."""
        p = Path(path)
        cfg = yaml.safe_load(p.read_text()) or {}
        base = p.resolve().parent
        ctx_name = context or cfg.get("current-context")
        ctxs = {c["name"]: c.get("context") or {} for c in cfg.get("contexts") or []}
        if ctx_name not in ctxs:
            if len(ctxs) != 1 or context:
                raise ValueError(f"kubeconfig {path}: context {ctx_name!r} not found")
            ctx_name = next(iter(ctxs))
        ctx = ctxs[ctx_name]
        clusters = {c["name"]: c.get("cluster") or {} for c in cfg.get("clusters") or []}
        users = {u["name"]: u.get("user") or {} for u in cfg.get("users") or []}
        cluster = clusters.get(ctx.get("cluster"))
        if cluster is None or not cluster.get("server"):
            raise ValueError(f"kubeconfig {path}: cluster of context {ctx_name!r} has no server")
        user = users.get(ctx.get("user"), {})

        def data(d: Mapping[str, Any], key: str) -> bytes | None:
            if d.get(f"{key}-data"):
                return base64.b64decode(d[f"{key}-data"])
            if d.get(key):
                f = Path(d[key])
                return (f if f.is_absolute() else base / f).read_bytes()
            return None

        token = user.get("token")
        if not token and user.get("tokenFile"):
            tf = Path(user["tokenFile"])
            token = (tf if tf.is_absolute() else base / tf).read_text().strip()
        return cls(server=str(cluster["server"]).rstrip("/"), token=token or None,
                   ca_data=data(cluster, "certificate-authority"),
                   insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
                   client_cert_data=data(user, "client-certificate"),
                   client_key_data=data(user, "client-key"))

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The TLS settings for aiohttp (`True`: system defaults)."""
        if not self.server.startswith("https://"):
            return True
        if self.insecure_skip_tls_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data:
            ctx = ssl.create_default_context(cadata=self.ca_data.decode())
        else:
            ctx = ssl.create_default_context()
        if self.client_cert_data and self.client_key_data:
            # ssl loads certificate chains from files only: one private temporary file.
            fd, path = tempfile.mkstemp(suffix=".pem")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(self.client_cert_data.rstrip(b"\n") + b"\n" +
                            self.client_key_data)
                ctx.load_cert_chain(path)
            finally:
                os.unlink(path)
        return ctx


# -- paths ------------------------------------------------------------------------------------
def resource_path(group: str, version: str, resource: str, namespace: str | None = None,
                  name: str | None = None, subresource: str | None = None) -> str:
    """`/api/v1/namespaces/ns/pods/name/status`-style paths (empty namespace: all)."""
    parts = ["/api/" + version if not group else f"/apis/{group}/{version}"]
    if namespace:
        parts.append("namespaces/" + quote(namespace, safe=""))
    parts.append(resource)
    if name:
        parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
    return "/".join(parts)


# -- the client -------------------------------------------------------------------------------
class TokenSource(Protocol):
    """Bearer tokens that change over time (client-go's ResettableTokenSource): `token()`
    gives the current one (fetching a new one when it is due); `reset()` drops it after
    the server answered 401, so the next request fetches another."""

    async def token(self) -> str: ...

    def reset(self) -> None: ...


class RESTClient:
    """Verbs on API paths. One aiohttp session, created on first use in the running loop."""

    def __init__(self, config: ClientConfig, *, timeout: float = 30.0,
                 user_agent: str = "pyk8s-client", qps: float = 0.0, burst: int = 0,
                 max_inflight: int = 0, connection_limit: int = 0,
                 token_source: TokenSource | None = None,
                 throttle_with: "RESTClient | None" = None) -> None:
        """`qps` / `burst`: client-side throttling of requests, a token bucket like
        client-go's (`qps <= 0`: unlimited). Each request and each watch start takes a token.
        `max_inflight`: at most this many requests (watches aside) at once (0: no cap).
        `connection_limit`: at most this many connections, watches included (0: no cap;
        a small client, such as a hollow node's, keeps few sockets).
        `token_source`: each request carries its current bearer token (instead of the
        config's). `throttle_with`: share that client's token bucket and in-flight cap
        (several identities, one request budget); `qps` / `burst` / `max_inflight` unused."""
        self.config = config
        self.timeout = timeout
        self.connection_limit = connection_limit
        self.token_source = token_source
        self._retired: list[aiohttp.ClientSession] = []   # replaced, closing soon
        self._closing: set[asyncio.Future[None]] = set()
        if throttle_with is not None:
            self.rate_limiter = throttle_with.rate_limiter
            self._inflight = throttle_with._inflight
        else:
            self.rate_limiter = TokenBucket(qps, burst or max(1, int(qps)))
            self._inflight = asyncio.Semaphore(max_inflight) if max_inflight > 0 else None
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}
        if config.token:
            self._headers["Authorization"] = f"Bearer {config.token}"
        self._ssl = config.ssl_context()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], context: str | None = None,
                        **kw: Any) -> "RESTClient":
        return cls(ClientConfig.from_kubeconfig(path, context), **kw)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No connection cap: each watch holds a connection for its lifetime.
            connector = aiohttp.TCPConnector(limit=self.connection_limit, ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    def set_client_certificate(self, cert_pem: bytes, key_pem: bytes,
                               grace: float = 10.0) -> None:
        """Present a new client certificate (certificate rotation): new requests go over
        a new session whose connections carry it; the old session's connections (requests
        in flight, watches) are closed `grace` seconds later, so nothing keeps speaking
        with the old identity (client-go's rotating transport closes its connections)."""
        self.config = dataclasses.replace(self.config, client_cert_data=cert_pem,
                                          client_key_data=key_pem)
        self._ssl = self.config.ssl_context()
        old, self._session = self._session, None
        if old is None or old.closed:
            return
        self._retired.append(old)

        def retire() -> None:
            if old in self._retired:
                self._retired.remove(old)
                task = asyncio.ensure_future(old.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        asyncio.get_running_loop().call_later(grace, retire)

    async def close(self) -> None:
        for old in self._retired:
            await old.close()
        self._retired.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "RESTClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the one request path -----------------------------------------------------------------
    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json") -> Any:
        """Send one request; decode the JSON answer or raise the typed error."""
        # The token first: fetching one may go through a client sharing this one's budget.
        headers = await self._auth_headers()
        if not self.rate_limiter.unlimited:
            await self.rate_limiter.acquire()
        if self._inflight is None:
            return await self._request(method, path, params, body, content_type, headers)
        async with self._inflight:
            return await self._request(method, path, params, body, content_type, headers)

    async def _auth_headers(self) -> dict[str, str]:
        if self.token_source is None:
            return {}
        return {"Authorization": f"Bearer {await self.token_source.token()}"}

    def _check_auth(self, status: int) -> None:
        if status == 401 and self.token_source is not None:
            self.token_source.reset()

    async def _request(self, method: str, path: str, params: Mapping[str, Any] | None,
                       body: Any, content_type: str, headers: dict[str, str]) -> Any:
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = content_type
        async with self.session.request(
                method, self.config.server + path, params=_params(params), data=data,
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                self._check_auth(resp.status)
                raise _error(resp.status, raw)
            if not raw:
                return None
            return orjson.loads(raw)

    async def _object(self, method: str, path: str, **kw: Any) -> Obj:
        """A request whose answer must be a JSON object (an API object, list or Status)."""
        out = await self.request(method, path, **kw)
        if not isinstance(out, dict):
            raise ApiError(500, "InternalError",
                           f"{method} {path}: expected a JSON object, got {type(out).__name__}")
        return out

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Obj:
        return await self._object("GET", path, params=params)

    async def list(self, path: str, params: Mapping[str, Any] | None = None) -> Obj:
        """A list (`items`, `metadata.resourceVersion`, `metadata.continue`)."""
        return await self._object("GET", path, params=params)

    async def create(self, path: str, body: Obj,
                     params: Mapping[str, Any] | None = None) -> Obj:
        return await self._object("POST", path, params=params, body=body)

    async def update(self, path: str, body: Obj,
                     params: Mapping[str, Any] | None = None) -> Obj:
        return await self._object("PUT", path, params=params, body=body)

    async def patch(self, path: str, body: Any, patch_type: PatchType = "merge",
                    params: Mapping[str, Any] | None = None) -> Obj:
        return await self._object("PATCH", path, params=params, body=body,
                                  content_type=PATCH_CONTENT_TYPES[patch_type])

    async def delete(self, path: str, options: Obj | None = None,
                     params: Mapping[str, Any] | None = None) -> Obj:
        """DELETE with optional `DeleteOptions` (propagationPolicy, preconditions…)."""
        body = None
        if options is not None:
            body = {"kind": "DeleteOptions", "apiVersion": "v1", **options}
        return await self._object("DELETE", path, params=params, body=body)

    async def watch(self, path: str, resource_version: str | None = None, *,
                    params: Mapping[str, Any] | None = None, timeout_seconds: int | None = None,
                    allow_bookmarks: bool = True) -> AsyncIterator[Obj]:
        """Watch `path` from `resource_version`: yields `{"type", "object"}` events until the
        server ends the stream. An `ERROR` event raises its typed error (410 → `Expired`)."""
        q: dict[str, Any] = dict(params or {})
        q["watch"] = "true"
        if resource_version is not None:
            q["resourceVersion"] = resource_version
        if allow_bookmarks:
            q["allowWatchBookmarks"] = "true"
        if timeout_seconds is not None:
            q["timeoutSeconds"] = str(timeout_seconds)
        headers = await self._auth_headers()
        if not self.rate_limiter.unlimited:
            await self.rate_limiter.acquire()
        read_timeout = (timeout_seconds + 30.0) if timeout_seconds else None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout,
                                        sock_read=read_timeout)
        async with self.session.get(self.config.server + path, params=_params(q),
                                    headers=headers, timeout=timeout) as resp:
            if resp.status >= 400:
                self._check_auth(resp.status)
                raise _error(resp.status, await resp.read())
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 1:]
                    if line.strip():
                        yield _event(line)
            if buf.strip():
                yield _event(buf)


def _event(line: bytes) -> Obj:
    ev = orjson.loads(line)
    if not isinstance(ev, dict):
        raise ApiError(500, "InternalError", f"watch: not an event: {line[:200]!r}")
    if ev.get("type") == "ERROR":
        obj = ev.get("object") or {}
        raise error_from_status(int(obj.get("code") or 500), obj)
    return ev


def _params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    out: dict[str, str] = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def _error(code: int, raw: bytes) -> ApiError:
    try:
        status = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        status = None
    return error_from_status(code, status, raw[:200].decode(errors="replace"))


# -- discovery --------------------------------------------------------------------------------
@dataclass(frozen=True)
class APIResource:
    """One resource from legacy discovery, in the version the server prefers."""
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    verbs: frozenset[str] = field(default_factory=frozenset)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """`deployments.apps`; `configmaps.` for the core group (upstream's GroupResource)."""
        return f"{self.resource}.{self.group}"

    def supports(self, *verbs: str) -> bool:
        return all(v in self.verbs for v in verbs)

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        return resource_path(self.group, self.version, self.resource,
                             namespace if self.namespaced else None, name, subresource)


async def server_preferred_resources(client: RESTClient) -> list[APIResource]:
    """Like client-go's `ServerPreferredResources`: every resource (no subresources) once,
    in the most preferred version of its group that serves it."""
    group_versions: list[tuple[str, list[str]]] = []
    core = await client.get("/api")
    group_versions.append(("", list(core.get("versions") or [])))
    groups = await client.get("/apis")
    for g in groups.get("groups") or []:
        preferred = (g.get("preferredVersion") or {}).get("version")
        versions = [v["version"] for v in g.get("versions") or []]
        if preferred in versions:
            versions.remove(preferred)
            versions.insert(0, preferred)
        group_versions.append((g["name"], versions))
    out: list[APIResource] = []
    for group, versions in group_versions:
        seen: set[str] = set()
        for version in versions:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            doc = await client.get(path)
            for r in doc.get("resources") or []:
                name = r.get("name") or ""
                if "/" in name or name in seen:
                    continue
                seen.add(name)
                out.append(APIResource(group=group, version=version, resource=name,
                                       kind=r.get("kind") or "",
                                       namespaced=bool(r.get("namespaced")),
                                       verbs=frozenset(r.get("verbs") or ())))
    return out

"""Pulling images with the OCI distribution API v2 (aiohttp), into an ImageStore.

- HTTPS with the system CA bundle by default. A registry listed in `insecure_registries`
  (`host:port` as the user wrote it) is tried over HTTPS without verification, then plain
  HTTP when TLS fails (containerd's HTTP fallback); the scheme that worked is remembered.
- Manifests are asked for with the four media types (OCI index / manifest, Docker manifest
  list / v2 schema 2); an index picks this node's platform (linux/amd64, variant-less
  first). `Docker-Content-Digest` and every blob's sha256 are verified; a blob whose digest
  does not match is discarded. Blobs already in the store are not fetched again; layers
  download (streamed to disk while hashed) and unpack up to `max_concurrent_downloads` at a
  time.
- Auth: on 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` a token is fetched
  from the realm (Basic auth with the credentials, if any) and cached per (registry, scope)
  until `expires_in`; `WWW-Authenticate: Basic` sends the credentials. Credentials come from
  imagePullSecrets (credentials.py), each matching one tried in turn as upstream's kubelet.
- Errors are ImagePullError (reason ErrImagePull) with containerd's wording, e.g.
  `failed to pull and unpack image "docker.io/library/nope:latest": failed to resolve
  reference "docker.io/library/nope:latest": docker.io/library/nope:latest: not found`.
"""
from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Iterable

import aiohttp
import orjson

from pyk8s.kubelet.images.credentials import (RegistryCredential, as_credentials,
                                              credentials_from_secrets, lookup)
from pyk8s.kubelet.images.errors import (ContentMissing, DigestMismatch, ImageError,
                                         ImagePullError)
from pyk8s.kubelet.images.manifests import (DOCKER_CONFIG, DOCKER_SCHEMA1, INDEX_TYPES,
                                            LAYER_TYPES, MANIFEST_ACCEPT, OCI_CONFIG,
                                            host_platform,
                                            media_type, select_platform)
from pyk8s.kubelet.images.reference import Reference, parse_reference
from pyk8s.kubelet.images.store import CHUNK, ImageRecord, ImageStore

__all__ = ["RegistryClient", "credentials_from_secrets", "RegistryCredential",
           "ImagePullError", "MANIFEST_ACCEPT"]

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 4 << 20

class _Failure(Exception):
    """An error inside one pull attempt; pull() words it as containerd does."""

    def __init__(self, message: str, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


def _parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """`WWW-Authenticate` → [(scheme lower-case, params)]."""
    out: list[tuple[str, dict[str, str]]] = []
    pos = 0
    token_re = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)')
    param_re = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')
    while pos < len(header):
        m = token_re.match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while True:
            pm = param_re.match(header, pos)
            if not pm:
                break
            # a bare word followed by another `=` pair is the next scheme, not a param
            params[pm.group(1).lower()] = (pm.group(2) if pm.group(2) is not None
                                           else pm.group(3) or "").replace('\\"', '"')
            pos = pm.end()
        out.append((scheme, params))
        while pos < len(header) and header[pos] in ", ":
            pos += 1
    return out


def _host_of(registry: str) -> str:
    """`http://127.0.0.1:5000/` → `127.0.0.1:5000` (as written otherwise, lower-cased)."""
    h = registry.strip().lower()
    for prefix in ("https://", "http://"):
        if h.startswith(prefix):
            h = h[len(prefix):]
    return h.split("/", 1)[0]


def _first(eg: BaseExceptionGroup) -> BaseException:  # type: ignore[type-arg]
    e: BaseException = eg
    while isinstance(e, BaseExceptionGroup):
        e = e.exceptions[0]
    return e


def _status_text(resp: aiohttp.ClientResponse) -> str:
    return f"{resp.status} {resp.reason or ''}".strip()


def _conn_message(method: str, url: str, e: BaseException) -> str:
    """containerd's `failed to do request: Get "URL": dial tcp H:P: connect: …`."""
    verb = method.capitalize()
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        cert_err = e.certificate_error
        why = getattr(cert_err, "verify_message", "") or str(cert_err)
        return (f'failed to do request: {verb} "{url}": tls: failed to verify certificate: '
                f'x509: {why}')
    if isinstance(e, aiohttp.ClientConnectorSSLError):
        return f'failed to do request: {verb} "{url}": tls: {e.os_error}'
    if isinstance(e, aiohttp.ClientConnectorError) and isinstance(e.os_error,
                                                                  socket.gaierror):
        why = (e.os_error.strerror or str(e.os_error)).lower()
        return f'failed to do request: {verb} "{url}": dial tcp: lookup {e.host}: {why}'
    if isinstance(e, aiohttp.ClientConnectorError):
        addr = f"{e.host}:{e.port}"
        os_err = e.os_error
        if isinstance(os_err, ConnectionRefusedError) or \
                getattr(os_err, "errno", None) == errno.ECONNREFUSED:
            why = "connect: connection refused"
        elif isinstance(os_err, OSError) and os_err.strerror:
            why = f"connect: {os_err.strerror.lower()}"
        else:
            why = str(os_err or e)
        return f'failed to do request: {verb} "{url}": dial tcp {addr}: {why}'
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return f'failed to do request: {verb} "{url}": i/o timeout'
    return f'failed to do request: {verb} "{url}": {e}'


@dataclass
class _Ctx:
    """One pull attempt: the repository, its base URL and the auth to send."""
    ref: Reference
    base: str
    credential: RegistryCredential | None
    ssl: Any
    auth_header: str = ""
    downloaded: int = 0

    @property
    def scope(self) -> str:
        return f"repository:{self.ref.path}:pull"

    @property
    def token_key(self) -> tuple[str, str, str]:
        """Tokens are cached per registry, scope and credential (never shared between
        pods with different pull secrets)."""
        c = self.credential
        who = "" if c is None else hashlib.sha256(
            f"{c.server}\0{c.username}\0{c.password}".encode()).hexdigest()
        return self.ref.api_host, self.scope, who


class RegistryClient:
    def __init__(self, store: ImageStore, insecure_registries: Iterable[str] = (),
                 timeout: float = 30.0, max_concurrent_downloads: int = 3,
                 platform: tuple[str, str, str] | None = None,
                 user_agent: str = "pyk8s-kubelet") -> None:
        self.store = store
        self.insecure = {_host_of(h) for h in insecure_registries or () if h.strip()}
        self.timeout = timeout
        self.max_concurrent = max(1, max_concurrent_downloads)
        self.platform = platform or host_platform()
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._schemes: dict[str, str] = {}
        self._ssl = ssl.create_default_context()

    # -- session ---------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=32, ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout,
                                              sock_connect=self.timeout,
                                              sock_read=self.timeout),
                headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity"},
                auto_decompress=False)
            self._session_loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # -- endpoints -------------------------------------------------------------------------
    def is_insecure(self, ref: Reference) -> bool:
        return ref.domain.lower() in self.insecure or ref.api_host.lower() in self.insecure

    async def _base(self, ref: Reference) -> tuple[str, Any]:
        """(base URL, ssl argument for aiohttp) of the registry's API."""
        host = ref.api_host
        if not self.is_insecure(ref):
            return f"https://{host}", self._ssl
        scheme = self._schemes.get(host)
        if scheme is None:
            scheme, remember = await self._probe(host)
            if remember:
                self._schemes[host] = scheme
        return f"{scheme}://{host}", (False if scheme == "https" else True)

    async def _probe(self, host: str) -> tuple[str, bool]:
        """An insecure registry: HTTPS without verification if it speaks TLS, else plain
        HTTP (containerd's fallback). Returns (scheme, worth remembering)."""
        url = f"https://{host}/v2/"
        try:
            async with self._http().get(url, ssl=False, allow_redirects=False,
                                        timeout=aiohttp.ClientTimeout(total=self.timeout)):
                return "https", True
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, ConnectionRefusedError) or \
                    getattr(e.os_error, "errno", None) == errno.ECONNREFUSED:
                return "http", False    # nothing listens: say so with the plain-HTTP URL
            return "http", True
        except (aiohttp.ClientError, ssl.SSLError, asyncio.TimeoutError, OSError):
            return "http", True

    # -- requests with auth ----------------------------------------------------------------
    async def _request(self, ctx: _Ctx, url: str, headers: dict[str, str] | None = None
                       ) -> aiohttp.ClientResponse:
        """GET `url` with the context's auth; answers a 401 challenge once (token or
        Basic). The caller reads and releases the response."""
        h = dict(headers or {})
        fetched = False
        for _ in range(3):
            cached = self._tokens.get(ctx.token_key)
            if not ctx.auth_header and cached and cached[1] > time.monotonic():
                ctx.auth_header = f"Bearer {cached[0]}"
            if ctx.auth_header:
                h["Authorization"] = ctx.auth_header
            try:
                resp = await self._http().get(url, headers=h, ssl=ctx.ssl)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                raise _Failure(_conn_message("GET", url, e)) from None
            if resp.status != 401:
                return resp
            challenges = _parse_challenges(resp.headers.get("WWW-Authenticate", ""))
            resp.release()
            bearer = next((p for s, p in challenges if s == "bearer"), None)
            basic = next((p for s, p in challenges if s == "basic"), None)
            if bearer is not None and bearer.get("realm"):
                if fetched:
                    err = bearer.get("error")
                    if err:
                        raise _Failure("pull access denied, repository does not exist or may "
                                       f"require authorization: server message: {err}: "
                                       "authorization failed", auth=True)
                    raise _Failure(f"unexpected status from GET request to {url}: "
                                   f"{_status_text(resp)}", auth=True)
                token = await self._fetch_token(ctx, bearer)
                ctx.auth_header = f"Bearer {token}"
                fetched = True
                continue
            if basic is not None and ctx.credential is not None and \
                    not ctx.auth_header.startswith("Basic "):
                ctx.auth_header = f"Basic {ctx.credential.basic()}"
                continue
            raise _Failure(f"unexpected status from GET request to {url}: "
                           f"{_status_text(resp)}", auth=True)
        raise _Failure(f"unexpected status from GET request to {url}: 401 Unauthorized",
                       auth=True)

    async def _fetch_token(self, ctx: _Ctx, challenge: dict[str, str]) -> str:
        realm = challenge["realm"]
        scope = challenge.get("scope") or ctx.scope
        params = {}
        if challenge.get("service"):
            params["service"] = challenge["service"]
        if scope:
            params["scope"] = scope
        key = ctx.token_key
        cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic() and \
                ctx.auth_header != f"Bearer {cached[0]}":
            return cached[0]
        cred = ctx.credential
        headers: dict[str, str] = {}
        what = "anonymous token"
        if cred is not None and cred.registry_token:
            return cred.registry_token
        if cred is not None and (cred.username or cred.password):
            headers["Authorization"] = f"Basic {cred.basic()}"
            what = "oauth token"
        try:
            async with self._http().get(realm, params=params, headers=headers,
                                        ssl=False if ctx.ssl is False else self._ssl
                                        ) as resp:
                url = str(resp.url)
                if resp.status != 200:
                    raise _Failure(f"failed to authorize: failed to fetch {what}: unexpected "
                                   f"status from GET request to {url}: "
                                   f"{_status_text(resp)}", auth=True)
                body = await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise _Failure(f"failed to authorize: failed to fetch {what}: "
                           f"{_conn_message('GET', realm, e)}", auth=True) from None
        try:
            doc = orjson.loads(body)
            token = str(doc.get("token") or doc.get("access_token") or "")
            expires = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token, expires = "", 0.0
        if not token:
            raise _Failure(f"failed to authorize: failed to fetch {what}: no token in the "
                           f"answer of {realm}", auth=True)
        self._tokens[key] = (token, time.monotonic() + max(expires - 5, 1.0))
        return token

    # -- manifests -------------------------------------------------------------------------
    async def _manifest(self, ctx: _Ctx, reference: str, resolving: bool
                        ) -> tuple[bytes, str, str]:
        """(body, media type, digest) of the manifest `reference` (tag or digest)."""
        url = f"{ctx.base}/v2/{ctx.ref.path}/manifests/{reference}"
        resp = await self._request(ctx, url, {"Accept": MANIFEST_ACCEPT})
        try:
            if resp.status == 404:
                if resolving:
                    raise _Failure(f"{ctx.ref.normalized()}: not found")
                raise _Failure(f"content at {url} not found: not found")
            if resp.status >= 400:
                raise _Failure(f"unexpected status from GET request to {url}: "
                               f"{_status_text(resp)}", auth=resp.status == 403)
            parts, size = [], 0
            async for chunk in resp.content.iter_any():
                parts.append(chunk)
                size += len(chunk)
                if size > MAX_MANIFEST_BYTES:
                    raise _Failure(f"manifest {reference} is larger than 4 MiB")
            body = b"".join(parts)
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = resp.headers.get("Docker-Content-Digest", "")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise _Failure(_conn_message("GET", url, e)) from None
        finally:
            resp.release()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        expected = reference if reference.startswith("sha256:") else (
            header_digest if header_digest.startswith("sha256:") else None)
        if expected is not None and expected != digest:
            raise _Failure(f"failed to copy: {DigestMismatch(expected, digest)}")
        try:
            doc = orjson.loads(body)
        except ValueError:
            raise _Failure(f"manifest {reference}: invalid JSON") from None
        if not isinstance(doc, dict):
            raise _Failure(f"manifest {reference}: not a JSON object")
        media = media_type(doc, ctype)
        if media in DOCKER_SCHEMA1:
            raise _Failure("Docker Image Format v1 and Docker Image manifest version 2, "
                           "schema 1 support has been removed. Suggest the author of "
                           f"{ctx.ref.normalized()} to upgrade the image to the OCI "
                           "Format or Docker Image manifest v2, schema 2")
        return body, media, digest

    def _pick(self, index: dict[str, Any]) -> dict[str, Any]:
        chosen = select_platform(index, self.platform)
        if chosen is None:
            raise _Failure("no match for platform in manifest: not found")
        return chosen

    # -- blobs -----------------------------------------------------------------------------
    async def _blob(self, ctx: _Ctx, desc: dict[str, Any]) -> None:
        """Fetch the blob `desc` into the store (streamed, verified) unless it is there."""
        digest = str(desc.get("digest") or "")
        if self.store.has_blob(digest):
            return
        url = f"{ctx.base}/v2/{ctx.ref.path}/blobs/{digest}"
        resp = await self._request(ctx, url)
        try:
            if resp.status == 404:
                raise _Failure(f"failed to copy: httpReadSeeker: failed open: content at "
                               f"{url} not found: not found")
            if resp.status >= 400:
                raise _Failure(f"failed to copy: httpReadSeeker: failed open: unexpected "
                               f"status code {url}: {_status_text(resp)}",
                               auth=resp.status in (401, 403))
            w = self.store.blob_writer(digest)
            try:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    w.write(chunk)
                size = desc.get("size")
                if isinstance(size, int) and size >= 0 and w.size != size:
                    w.abort()
                    raise _Failure(f"failed to copy: unexpected size {w.size}, expected "
                                   f"{size} for {digest}: failed precondition")
                w.commit()
                ctx.downloaded += w.size
            except DigestMismatch as e:
                raise _Failure(f"failed to copy: {e}") from None
            except BaseException:
                w.abort()
                raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise _Failure(f"failed to copy: {_conn_message('GET', url, e)}") from None
        finally:
            resp.release()

    async def _layer(self, ctx: _Ctx, desc: dict[str, Any], sem: asyncio.Semaphore) -> None:
        digest = str(desc.get("digest") or "")
        async with sem:
            await self._blob(ctx, desc)
            if not self.store.has_layer(digest):
                try:
                    await asyncio.to_thread(self.store.unpack, digest)
                except ImageError as e:
                    raise _Failure(f"failed to extract layer {digest}: {e}") from None
                except OSError as e:
                    raise _Failure(f"failed to extract layer {digest}: {e}") from None

    # -- pull ------------------------------------------------------------------------------
    async def pull(self, ref: str | Reference,
                   credentials: Iterable[RegistryCredential | dict[str, Any]] = ()
                   ) -> ImageRecord:
        """Pull `ref` into the store and record it. `credentials`: RegistryCredentials (or
        Secret dicts / {server, username, password} dicts); the ones matching the registry
        are tried in turn, else the pull is anonymous. Raises InvalidImageName or
        ImagePullError."""
        r = ref if isinstance(ref, Reference) else parse_reference(ref)
        creds = lookup(as_credentials(credentials), r.name)
        attempts: list[RegistryCredential | None] = list(creds) or [None]
        last: ImagePullError | None = None
        for cred in attempts:
            try:
                try:
                    return await self._pull_once(r, cred)
                except ContentMissing:   # removed by GC meanwhile: fetch it again
                    return await self._pull_once(r, cred)
            except ImagePullError as e:
                last = e
                if not e.auth:
                    raise
        assert last is not None
        raise last

    async def _pull_once(self, r: Reference, cred: RegistryCredential | None) -> ImageRecord:
        name = r.normalized()
        stage = "resolve"
        try:
            base, sslctx = await self._base(r)
            ctx = _Ctx(ref=r, base=base, credential=cred, ssl=sslctx)
            if cred is not None and cred.registry_token:
                ctx.auth_header = f"Bearer {cred.registry_token}"
            body, media, top_digest = await self._manifest(ctx, r.reference, resolving=True)
            stage = "fetch"
            manifests = [(top_digest, body)]
            depth = 0
            while media in INDEX_TYPES:
                depth += 1
                if depth > 3:
                    raise _Failure("manifest index nested too deep")
                chosen = self._pick(orjson.loads(body))
                body, media, digest = await self._manifest(ctx, str(chosen["digest"]),
                                                           resolving=False)
                manifests.append((digest, body))
            doc = orjson.loads(body)
            cfg_desc = doc.get("config") or {}
            layers = [d for d in doc.get("layers") or [] if isinstance(d, dict)]
            for d in layers:
                mt = d.get("mediaType", "")
                if mt and mt not in LAYER_TYPES:
                    raise _Failure(f"unsupported layer media type {mt}")
            if not cfg_desc.get("digest"):
                raise _Failure("manifest has no config")
            if cfg_desc.get("mediaType") not in (None, "", OCI_CONFIG, DOCKER_CONFIG):
                raise _Failure(f"unsupported config media type {cfg_desc['mediaType']}: "
                               f"not a container image")
            await self._blob(ctx, cfg_desc)
            sem = asyncio.Semaphore(self.max_concurrent)
            try:
                async with asyncio.TaskGroup() as tg:
                    for d in layers:
                        tg.create_task(self._layer(ctx, d, sem))
            except BaseExceptionGroup as eg:
                raise _first(eg) from None
            for digest, data in manifests:
                self.store.write_blob(data, digest)
            cfg_digest = str(cfg_desc["digest"])
            try:
                cfg = orjson.loads(self.store.read_blob(cfg_digest))
            except ValueError:
                raise _Failure(f"image config {cfg_digest}: invalid JSON") from None
            record = self.store.add_image(
                config_digest=cfg_digest, manifest_digest=top_digest,
                manifests=[d for d, _ in manifests],
                layers=[str(d["digest"]) for d in layers],
                config=dict(cfg.get("config") or {}),
                repo_tags=[r.normalized()] if r.tag and not r.digest else [],
                repo_digests=[r.with_digest(top_digest)],
                architecture=str(cfg.get("architecture") or ""),
                os_name=str(cfg.get("os") or ""))
            log.info("pulled %s (%s, %d bytes downloaded)", name, record.id, ctx.downloaded)
            return record
        except _Failure as e:
            msg = str(e)
            if stage == "resolve" and not msg.startswith(("failed to copy",
                                                         "no match for platform")):
                msg = f'failed to resolve reference "{name}": {msg}'
            raise ImagePullError(f'failed to pull and unpack image "{name}": {msg}',
                                 auth=e.auth) from None
        except ContentMissing:
            raise
        except (ImageError, OSError) as e:
            raise ImagePullError(f'failed to pull and unpack image "{name}": {e}') from None

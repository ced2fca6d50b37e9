"""A small distribution-API server on 127.0.0.1 (aiohttp) serving one OCI layout for every
repository name, for what a real docker-registry cannot do in a test: count requests, lie
about digests, demand Basic auth or bearer tokens (with its own token endpoint)."""
from __future__ import annotations

import base64
import collections
import hashlib
import json
import secrets
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

REF_NAME = "org.opencontainers.image.ref.name"


class FakeRegistry:
    def __init__(self, layout: Path, auth: str | None = None,
                 users: dict[str, str] | None = None, private: bool = False,
                 corrupt_blobs: set[str] | None = None, lie_manifest_digest: bool = False,
                 token_expires_in: int = 300, aliases: dict[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        """auth None | "basic" | "bearer"; `private`: only authenticated users get tokens
        with access (anonymous ones get a token without it); `aliases`: more tags, each
        naming a tag of the layout."""
        self.aliases = aliases or {}
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context else "http"
        self.layout = Path(layout)
        self.auth = auth
        self.users = users or {}
        self.private = private
        self.corrupt = corrupt_blobs or set()
        self.lie = lie_manifest_digest
        self.expires_in = token_expires_in
        self.tokens: dict[str, bool] = {}          # token → grants access
        self.counts: collections.Counter[str] = collections.Counter()
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def image(self, name: str = "busybox", tag: str = "latest") -> str:
        return f"{self.host}/{name}:{tag}"

    async def start(self) -> "FakeRegistry":
        app = web.Application()
        app.router.add_get("/v2/", self.ping)
        app.router.add_get("/token", self.token)
        app.router.add_get(r"/v2/{name:.+}/manifests/{ref}", self.manifest)
        app.router.add_get(r"/v2/{name:.+}/blobs/{digest}", self.blob)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def __aenter__(self) -> "FakeRegistry":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # -- auth ------------------------------------------------------------------------------
    def _basic_user(self, request: web.Request) -> str | None:
        h = request.headers.get("Authorization", "")
        if not h.startswith("Basic "):
            return None
        try:
            user, pw = base64.b64decode(h[6:]).decode().split(":", 1)
        except ValueError:
            return None
        return user if self.users.get(user) == pw else ""

    def _denied(self, request: web.Request, scope: str) -> web.Response | None:
        if self.auth is None:
            return None
        h = request.headers.get("Authorization", "")
        if self.auth == "basic":
            if self._basic_user(request):
                return None
            return web.Response(status=401, headers={
                "WWW-Authenticate": 'Basic realm="fake"'}, text='{"errors":[]}')
        if h.startswith("Bearer ") and self.tokens.get(h[7:]):
            return None
        challenge = (f'Bearer realm="{self.scheme}://{self.host}/token",service="fake",'
                     f'scope="{scope}"')
        if h.startswith("Bearer ") and h[7:] in self.tokens:
            challenge += ',error="insufficient_scope"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge},
                            text='{"errors":[{"code":"UNAUTHORIZED"}]}')

    async def token(self, request: web.Request) -> web.Response:
        self.counts["token"] += 1
        user = self._basic_user(request)
        if user == "":
            return web.Response(status=401, text="bad credentials")
        grant = bool(user) or not self.private
        tok = secrets.token_hex(8)
        self.tokens[tok] = grant
        key = "access_token" if self.counts["token"] % 2 == 0 else "token"
        return web.json_response({key: tok, "expires_in": self.expires_in})

    # -- content ---------------------------------------------------------------------------
    def _blob_bytes(self, digest: str) -> bytes | None:
        p = self.layout / "blobs" / "sha256" / digest.split(":", 1)[-1]
        return p.read_bytes() if p.is_file() else None

    async def ping(self, request: web.Request) -> web.Response:
        denied = self._denied(request, "")
        return denied or web.json_response({})

    async def manifest(self, request: web.Request) -> web.Response:
        name, ref = request.match_info["name"], request.match_info["ref"]
        self.counts["manifest"] += 1
        denied = self._denied(request, f"repository:{name}:pull")
        if denied:
            return denied
        media = "application/vnd.oci.image.manifest.v1+json"
        if ref.startswith("sha256:"):
            data = self._blob_bytes(ref)
        else:
            ref = self.aliases.get(ref, ref)
            index = json.loads((self.layout / "index.json").read_text())
            desc = next((m for m in index["manifests"]
                         if (m.get("annotations") or {}).get(REF_NAME) == ref), None)
            data = self._blob_bytes(desc["digest"]) if desc else None
            if desc:
                media = desc.get("mediaType", media)
        if data is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.lie:
            digest = "sha256:" + hashlib.sha256(b"lie" + data).hexdigest()
        return web.Response(body=data, headers={"Content-Type": media,
                                                "Docker-Content-Digest": digest})

    async def blob(self, request: web.Request) -> web.StreamResponse:
        name, digest = request.match_info["name"], request.match_info["digest"]
        self.counts["blob"] += 1
        self.counts[f"blob:{digest}"] += 1
        denied = self._denied(request, f"repository:{name}:pull")
        if denied:
            return denied
        data = self._blob_bytes(digest)
        if data is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        if digest in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                           "Docker-Content-Digest": digest})
        resp.content_length = len(data)
        await resp.prepare(request)
        for i in range(0, len(data), 65536):      # streamed, as a registry does
            await resp.write(data[i:i + 65536])
        await resp.write_eof()
        return resp

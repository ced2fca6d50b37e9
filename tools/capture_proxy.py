"""A logging reverse proxy on 127.0.0.1 for seeing what clients send.

    python tools/capture_proxy.py LISTEN_PORT UPSTREAM_URL OUT_DIR [--advertise-eviction]

Forwards every request to UPSTREAM_URL (plain HTTP, e.g. `pyk8s server --insecure-http`)
and, for requests with a body, writes `OUT_DIR/NNN-METHOD.bin` (the body) and
`OUT_DIR/NNN-METHOD.json` (method, path, headers). Used to capture kubectl's protobuf
request bodies for tests/api/protobuf_fixtures/ (tools/capture_protobuf_fixtures.py).

`--advertise-eviction` adds `pods/eviction` (policy/v1 Eviction) to the core discovery
documents, so that `kubectl drain` evicts instead of deleting.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}
EVICTION = {"group": "policy", "version": "v1", "kind": "Eviction"}


def add_eviction(path: str, doc: Any) -> Any:
    """pods/eviction in /api/v1 (APIResourceList) and /api (aggregated discovery)."""
    if not isinstance(doc, dict):
        return doc
    if path == "/api/v1" and doc.get("kind") == "APIResourceList":
        doc["resources"].append({"name": "pods/eviction", "singularName": "", "namespaced": True,
                                 **EVICTION, "verbs": ["create"]})
    if path == "/api" and doc.get("kind") == "APIGroupDiscoveryList":
        for item in doc.get("items", []):
            for version in item.get("versions", []):
                for r in version.get("resources", []):
                    if r.get("resource") == "pods":
                        r.setdefault("subresources", []).append(
                            {"subresource": "eviction", "responseKind": EVICTION,
                             "verbs": ["create"]})
    return doc


def make_app(upstream: str, out: Path, advertise_eviction: bool = False) -> web.Application:
    counter = itertools.count(1)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if body:
            stem = out / f"{next(counter):03d}-{request.method}"
            stem.with_suffix(".bin").write_bytes(body)
            stem.with_suffix(".json").write_text(json.dumps(
                {"method": request.method, "path": request.path_qs,
                 "headers": dict(request.headers)}, indent=1))
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in HOP and k.lower() != "accept-encoding"}
        async with aiohttp.ClientSession() as s:
            async with s.request(request.method, upstream + request.path_qs, data=body or None,
                                 headers=headers) as r:
                data = await r.read()
                rh = {k: v for k, v in r.headers.items() if k.lower() not in HOP}
        if advertise_eviction and request.method == "GET" and request.path in ("/api", "/api/v1") \
                and r.status == 200:
            data = json.dumps(add_eviction(request.path, json.loads(data))).encode()
        return web.Response(status=r.status, body=data, headers=rh)

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    port, upstream, out = int(sys.argv[1]), sys.argv[2].rstrip("/"), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    app = make_app(upstream, out, "--advertise-eviction" in sys.argv[4:])
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()

"""A logging reverse proxy on 127.0.0.1 for seeing what clients send.

    python tools/capture_proxy.py LISTEN_PORT UPSTREAM_URL OUT_DIR

Forwards every request to UPSTREAM_URL (plain HTTP, e.g. `pyk8s server --insecure-http`)
and, for requests with a body, writes `OUT_DIR/NNN-METHOD.bin` (the body) and
`OUT_DIR/NNN-METHOD.json` (method, path, headers). Used to capture kubectl's protobuf
request bodies for tests/api/protobuf_fixtures/.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

HOP = {"host", "content-length", "transfer-encoding", "connection"}


def make_app(upstream: str, out: Path) -> web.Application:
    counter = itertools.count(1)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if body:
            n = next(counter)
            stem = out / f"{n:03d}-{request.method}"
            stem.with_suffix(".bin").write_bytes(body)
            stem.with_suffix(".json").write_text(json.dumps(
                {"method": request.method, "path": request.path_qs,
                 "headers": dict(request.headers)}, indent=1))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            async with s.request(request.method, upstream + request.path_qs, data=body or None,
                                 headers=headers) as r:
                data = await r.read()
                rh = {k: v for k, v in r.headers.items() if k.lower() not in HOP}
                return web.Response(status=r.status, body=data, headers=rh)

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    port, upstream, out = int(sys.argv[1]), sys.argv[2].rstrip("/"), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    web.run_app(make_app(upstream, out), host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()

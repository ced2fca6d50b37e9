"""Serving a watch: one JSON event per line over a chunked response."""
from __future__ import annotations

import asyncio
import random
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from pyk8s.api import errors, meta
from pyk8s.apiserver import negotiation as neg, tables
from pyk8s.registry.store import ListOptions, Store

if TYPE_CHECKING:
    from pyk8s.apiserver.app import APIServer

Obj = dict[str, Any]


def _event_line(type_: str, obj_json: bytes) -> bytes:
    return b'{"type":"' + type_.encode() + b'","object":' + obj_json + b"}\n"


def _bookmark(store: Store, rv: int, initial_end: bool = False) -> bytes:
    md: Obj = {"resourceVersion": str(rv)}
    if initial_end:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"kind": store.info.kind, "apiVersion": store.info.api_version, "metadata": md}
    return _event_line("BOOKMARK", orjson.dumps(obj))


async def serve_watch(server: "APIServer", request: web.Request, store: Store,
                      ns: str | None, opts: ListOptions) -> web.StreamResponse:
    out = neg.choose_output(request)
    q = request.query
    try:
        bookmarks = meta.parse_bool(q.get("allowWatchBookmarks"))
        sie_raw = q.get("sendInitialEvents")
        send_initial = meta.parse_bool(sie_raw) if sie_raw is not None else None
    except ValueError as e:
        raise errors.BadRequest(str(e)) from None
    if send_initial is not None and opts.resource_version_match != "NotOlderThan":
        raise errors.Invalid.of("meta.k8s.io", "ListOptions", "", [errors.field_forbidden(
            "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch "
            "to NotOlderThan")])
    if send_initial and not bookmarks:
        raise errors.Invalid.of("meta.k8s.io", "ListOptions", "", [errors.field_forbidden(
            "allowWatchBookmarks", "sendInitialEvents requires setting allowWatchBookmarks "
            "to true")])
    if opts.resource_version_match and send_initial is None:
        raise errors.BadRequest("resourceVersionMatch is forbidden for watch unless "
                                "sendInitialEvents is provided")
    timeout = server.config.min_request_timeout * (1 + random.random())
    if q.get("timeoutSeconds"):
        try:
            timeout = float(int(q["timeoutSeconds"]))
        except ValueError:
            raise errors.BadRequest(f"invalid timeoutSeconds: {q['timeoutSeconds']}") from None

    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = neg.TABLE_CT if out.kind == "table" else "application/json"
    resp.headers["Cache-Control"] = "no-cache, private"
    resp.enable_chunked_encoding()

    try:
        watcher, start_rv = await store.watch(ns, opts, send_initial_events=send_initial)
    except errors.Expired as e:
        # A too-old resourceVersion is reported in-band, like upstream's cacher.
        await resp.prepare(request)
        await resp.write(_event_line("ERROR", orjson.dumps(e.status())))
        await resp.write_eof()
        return resp

    await resp.prepare(request)
    first_table = True
    initial_pending = bool(send_initial)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    bookmark_every = server.config.bookmark_interval
    next_bookmark = loop.time() + bookmark_every

    def render(type_: str, obj: Obj, ev: Any) -> bytes:
        nonlocal first_table
        if store.conversion:
            obj, ev = store.external(obj), None
        if out.kind == "table":
            t = tables.build_table(store.info.group, store.info.kind, [obj],
                                   now=datetime.now(timezone.utc),
                                   include_object=out.include_object,
                                   resource_version=(obj.get("metadata") or {}).get("resourceVersion", ""),
                                   continue_token=None, remaining=None, with_columns=first_table)
            first_table = False
            return _event_line(type_, orjson.dumps(t))
        return _event_line(type_, ev.obj_json() if ev is not None and ev.obj is obj
                           else orjson.dumps(obj))

    initial_left = watcher.initial_count
    try:
        while True:
            now = loop.time()
            if now >= deadline:
                break
            if initial_pending and initial_left <= 0:
                await resp.write(_bookmark(store, start_rv, initial_end=True))
                initial_pending = False
            wait = min(deadline, next_bookmark) - now if bookmarks else deadline - now
            try:
                type_, obj, ev = await asyncio.wait_for(watcher.queue.get(), max(wait, 0.001))
            except TimeoutError:
                if bookmarks and loop.time() >= next_bookmark:
                    await resp.write(_bookmark(store, server.cache.processed_rev))
                    next_bookmark = loop.time() + bookmark_every
                continue
            if type_ == "CLOSED":
                break
            chunk = [render(type_, obj, ev)]
            initial_left -= 1
            # Drain what is already queued into one write.
            while not watcher.queue.empty() and len(chunk) < 256 and \
                    (not initial_pending or initial_left > 0):
                t2, o2, e2 = watcher.queue.get_nowait()
                if t2 == "CLOSED":
                    watcher.queue.put_nowait((t2, o2, e2))
                    break
                chunk.append(render(t2, o2, e2))
                initial_left -= 1
            await resp.write(b"".join(chunk))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        watcher.close("client gone")
    try:
        await resp.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass
    return resp

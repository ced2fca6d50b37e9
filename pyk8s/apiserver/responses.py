"""Writing objects, lists, tables and Status errors to HTTP responses."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
import yaml
from aiohttp import web

from pyk8s.api import errors
from pyk8s.api.catalogue import ResourceInfo
from pyk8s.apiserver import tables
from pyk8s.apiserver.negotiation import TABLE_CT, Output

Obj = dict[str, Any]

_REASON_PHRASES = {422: "Unprocessable Entity", 429: "Too Many Requests"}


def json_response(body: Any, status: int = 200, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> web.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = web.Response(body=data, status=status, headers=headers)
    resp.headers["Content-Type"] = content_type
    return resp


def status_response(err: errors.ApiError) -> web.Response:
    resp = json_response(err.status(), status=err.code, headers=err.headers or None)
    return resp


def success_status(info: ResourceInfo, obj: Obj) -> Obj:
    md = obj.get("metadata") or {}
    details: Obj = {"name": md.get("name", "")}
    if info.group:
        details["group"] = info.group
    details["kind"] = info.plural
    if md.get("uid"):
        details["uid"] = md["uid"]
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details}


def _warning_headers(resp: web.StreamResponse, warnings: list[str]) -> None:
    for w in warnings:
        resp.headers.add("Warning", f'299 - "{w}"')


def object_response(out: Output, info: ResourceInfo, obj: Obj, status: int = 200,
                    warnings: list[str] | None = None) -> web.Response:
    if out.kind == "table":
        table = tables.build_table(info.group, info.kind, [obj], now=datetime.now(timezone.utc),
                                   include_object=out.include_object,
                                   resource_version=(obj.get("metadata") or {}).get("resourceVersion", ""),
                                   continue_token=None, remaining=None)
        resp = json_response(table, status, TABLE_CT)
    elif out.kind == "yaml":
        resp = web.Response(body=yaml.safe_dump(obj, sort_keys=False).encode(), status=status)
        resp.headers["Content-Type"] = "application/yaml"
    else:
        resp = json_response(obj, status)
    _warning_headers(resp, warnings or [])
    return resp


def list_response(out: Output, info: ResourceInfo, items: list[Obj], rv: int,
                  continue_token: str | None, remaining: int | None) -> web.Response:
    if out.kind == "table":
        table = tables.build_table(info.group, info.kind, items, now=datetime.now(timezone.utc),
                                   include_object=out.include_object, resource_version=str(rv),
                                   continue_token=continue_token, remaining=remaining)
        return json_response(table, 200, TABLE_CT)
    md: Obj = {"resourceVersion": str(rv)}
    if continue_token:
        md["continue"] = continue_token
    if remaining is not None:
        md["remainingItemCount"] = remaining
    body = {"kind": f"{info.kind}List", "apiVersion": info.api_version, "metadata": md,
            "items": items}
    if out.kind == "yaml":
        resp = web.Response(body=yaml.safe_dump(body, sort_keys=False).encode())
        resp.headers["Content-Type"] = "application/yaml"
        return resp
    return json_response(body)

"""Content negotiation: request bodies in, response media types out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from aiohttp import web

from pyk8s.api import errors, protobuf

MAX_BODY = 3 * 1024 * 1024  # upstream's 3 MiB request limit

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
TABLE_CT = "application/json;as=Table;v=v1;g=meta.k8s.io"

PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")

_UNKNOWN_FORMAT = ("the body of the request was in an unknown format - accepted media types "
                   "include: application/json, application/yaml")


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str]


def parse_accept(header: str | None) -> list[MediaRange]:
    out = []
    for part in (header or "").split(","):
        part = part.strip()
        if not part:
            continue
        fields = [f.strip() for f in part.split(";")]
        params = {}
        for f in fields[1:]:
            if "=" in f:
                k, v = f.split("=", 1)
                params[k.strip()] = v.strip()
        out.append(MediaRange(fields[0].lower(), params))
    return out


def media_type(request: web.Request) -> str:
    ct = request.headers.get("Content-Type", "")
    return ct.split(";", 1)[0].strip().lower()


async def read_raw(request: web.Request) -> bytes:
    if request.content_length is not None:
        if request.content_length > MAX_BODY:
            raise errors.RequestEntityTooLarge(f"Request entity too large: limit is {MAX_BODY}")
        return await request.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.RequestEntityTooLarge(f"Request entity too large: limit is {MAX_BODY}")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_object(raw: bytes, ct: str) -> Any:
    """JSON (also when no Content-Type) or YAML → a Python value; 400/415 otherwise."""
    if ct in ("", JSON, "*/*", "text/plain") or ct.endswith("+json"):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise errors.BadRequest(f"couldn't get version/kind; json parse error: {e}") from None
    if ct in (YAML, "application/x-yaml", "text/yaml") or ct.endswith("+yaml"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise errors.BadRequest(f"error converting YAML to JSON: {e}") from None
    if ct == PROTOBUF:
        return _decode_protobuf(raw)
    raise errors.UnsupportedMediaType(_UNKNOWN_FORMAT)


def _decode_protobuf(raw: bytes) -> dict[str, Any]:
    """Built-in kinds in protobuf (kubectl ≥ 1.32's typed clients); 415 naming the kind when
    we have no table for it, 400 when the bytes are malformed."""
    try:
        return protobuf.decode_request(raw)
    except protobuf.UnknownKind as e:
        raise errors.UnsupportedMediaType(f"{_UNKNOWN_FORMAT} ({e}; send it as JSON)") from None
    except protobuf.ProtobufError as e:
        raise errors.BadRequest(f"unable to decode the protobuf body: {e}") from None


def decode_options(raw: bytes, ct: str) -> Any:
    """An options body (DELETE's DeleteOptions): JSON whatever the Content-Type says, except
    protobuf (kubectl's typed clients, e.g. drain)."""
    return decode_object(raw, PROTOBUF if ct == PROTOBUF else JSON)


async def read_object(request: web.Request) -> dict[str, Any]:
    raw = await read_raw(request)
    if not raw.strip():
        raise errors.BadRequest("the server could not find the requested resource: empty body")
    value = decode_object(raw, media_type(request))
    if not isinstance(value, dict):
        raise errors.BadRequest("Object 'Kind' is missing in '" + raw[:100].decode(errors="replace") + "'")
    return value


@dataclass(frozen=True)
class Output:
    """What representation the client asked for."""

    kind: str  # "json" | "yaml" | "table"
    include_object: str = "Metadata"


def choose_output(request: web.Request) -> Output:
    ranges = parse_accept(request.headers.get("Accept"))
    if not ranges:
        return Output("json")
    saw_unacceptable = False
    for r in ranges:
        if r.params.get("as") == "Table" and r.params.get("g") == "meta.k8s.io":
            if r.params.get("v") in ("v1", "v1beta1"):
                inc = request.query.get("includeObject") or "Metadata"
                if inc not in ("None", "Metadata", "Object"):
                    raise errors.BadRequest(
                        "Unable to convert to Table as requested: includeObject: Unsupported "
                        f'value: "{inc}": supported values: "None", "Metadata", "Object"')
                return Output("table", inc)
            continue
        if r.params.get("as"):
            # PartialObjectMetadata etc.: not served; fall through to the next range.
            saw_unacceptable = True
            continue
        if r.type in (JSON, "application/*", "*/*", "application/json-patch+json"):
            return Output("json")
        if r.type in (YAML,):
            return Output("yaml")
        saw_unacceptable = True
    if saw_unacceptable:
        raise errors.NotAcceptable("only the following media types are accepted: "
                                   "application/json, application/yaml")
    return Output("json")

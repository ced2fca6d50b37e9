"""audit.k8s.io/v1 Events: one per request, written at each of its stages.

As upstream's k8s.io/apiserver/pkg/audit (request.go, context.go): the event carries the
request's metadata (user, source IPs, verb, objectRef) from the start; the request object
(Request level and up), the response object (RequestResponse) and the response status are
added as the request is served. Field order and omitted empty fields follow the Go types'
JSON encoding.
"""
from __future__ import annotations

import functools
import ipaddress
from datetime import datetime, timezone
from typing import Any, Mapping

import orjson

from pyk8s.apiserver.audit.policy import Level
from pyk8s.apiserver.authn import UserInfo
from pyk8s.apiserver.authz.attributes import RequestAttributes

KIND = "Event"
API_VERSION = "audit.k8s.io/v1"
HEADER_AUDIT_ID = "Audit-Id"  # Go's canonical form of upstream's "Audit-ID"

MAX_USER_AGENT = 1024
USER_AGENT_TRUNCATED = "...TRUNCATED"

ANNOTATION_DECISION = "authorization.k8s.io/decision"
ANNOTATION_REASON = "authorization.k8s.io/reason"


def micro_time(ts: float) -> str:
    """metav1.MicroTime: RFC 3339 in UTC with microseconds (`…T12:00:00.123456Z`)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


def user_info(user: UserInfo | None) -> dict[str, Any]:
    """authentication/v1 UserInfo, empty fields left out (`{}` for no user)."""
    if user is None:
        return {}
    out: dict[str, Any] = {"username": user.username} if user.username else {}
    if user.uid:
        out["uid"] = user.uid
    if user.groups:
        out["groups"] = list(user.groups)
    if user.extra:
        out["extra"] = {k: list(v) for k, v in user.extra.items()}
    return out


@functools.lru_cache(maxsize=1024)  # peers and proxies repeat: parse each once
def _ip(text: str) -> str | None:
    """Go's ParseIPSloppy then IP.String(): IPv4-mapped IPv6 prints as IPv4, leading zeros
    in IPv4 octets are accepted."""
    text = text.strip()
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        parts = text.split(".")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            return None
        try:
            addr = ipaddress.ip_address(".".join(str(int(p)) for p in parts))
        except ValueError:
            return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def source_ips(headers: Mapping[str, str], peer: str | None) -> list[str]:
    """Upstream's utilnet.SourceIPs: X-Forwarded-For's IPs, X-Real-Ip when not among them,
    then the connection's peer unless it is the last one already."""
    ips: list[str] = []
    forwarded = headers.get("X-Forwarded-For", "")
    if forwarded:
        for part in forwarded.split(","):
            ip = _ip(part)
            if ip is not None:
                ips.append(ip)
    real = headers.get("X-Real-Ip", "")
    if real:
        ip = _ip(real)
        if ip is not None and ip not in ips:
            ips.append(ip)
    remote = _ip(peer) if peer else None
    if remote is not None and (not ips or ips[-1] != remote):
        ips.append(remote)
    return ips


def truncate_user_agent(agent: str) -> str:
    if len(agent) > MAX_USER_AGENT:
        return agent[:MAX_USER_AGENT] + USER_AGENT_TRUNCATED
    return agent


def response_status(code: int, status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The event's responseStatus: the code alone for a plain object, a Status's bounded
    fields (status, message, reason, details, code) when the response is one."""
    out: dict[str, Any] = {"metadata": {}}
    if status is not None:
        for key in ("status", "message", "reason", "details"):
            if status.get(key):
                out[key] = status[key]
        code = int(status.get("code") or code)
    if code:
        out["code"] = code
    return out


def without_managed_fields(obj: Any) -> Any:
    """A copy of an object, list or Table without metadata.managedFields (shallow where
    nothing changes: objects from the server are never mutated)."""
    if not isinstance(obj, dict):
        return obj
    out = obj
    md = obj.get("metadata")
    if isinstance(md, dict) and "managedFields" in md:
        out = dict(obj)
        out["metadata"] = {k: v for k, v in md.items() if k != "managedFields"}
    items = obj.get("items")
    if isinstance(items, list):
        out = dict(out) if out is obj else out
        out["items"] = [without_managed_fields(i) for i in items]
    rows = obj.get("rows")
    if obj.get("kind") == "Table" and isinstance(rows, list):
        out = dict(out) if out is obj else out
        out["rows"] = [dict(r, object=without_managed_fields(r["object"]))
                       if isinstance(r, dict) and "object" in r else r for r in rows]
    return out


class AuditEvent:
    """One request's event; `encode(stage)` renders it as a JSON line at a stage."""

    __slots__ = ("level", "audit_id", "request_uri", "verb", "user", "impersonated_user",
                 "source_ips", "user_agent", "object_ref", "response_status",
                 "request_object", "response_object", "received", "annotations")

    def __init__(self, level: Level, audit_id: str, request_uri: str,
                 attrs: RequestAttributes, source_ips: list[str], user_agent: str,
                 received: float) -> None:
        self.level = level
        self.audit_id = audit_id
        self.request_uri = request_uri
        self.verb = attrs.verb
        self.user = user_info(attrs.user)
        self.impersonated_user: dict[str, Any] | None = None
        self.source_ips = source_ips
        self.user_agent = truncate_user_agent(user_agent)
        self.object_ref: dict[str, str] | None = None
        if attrs.resource_request:
            ref = {"resource": attrs.resource, "namespace": attrs.namespace,
                   "name": attrs.name, "apiGroup": attrs.api_group,
                   "apiVersion": attrs.api_version, "subresource": attrs.subresource}
            self.object_ref = {k: v for k, v in ref.items() if v}
        self.response_status: dict[str, Any] | None = None
        self.request_object: Any = None
        self.response_object: Any = None
        self.received = received
        self.annotations: dict[str, str] = {}

    def log_request_object(self, obj: Any) -> None:
        """The decoded request body (upstream's LogRequestObject / LogRequestPatch): fills
        objectRef's name, namespace, uid and resourceVersion from the object's metadata when
        the URL did not say; the object itself is kept at Request level and up only."""
        if self.level < Level.METADATA:
            return
        md = obj.get("metadata") if isinstance(obj, dict) else None
        if isinstance(md, dict) and self.object_ref is not None:
            ref = self.object_ref
            for field in ("namespace", "name", "uid", "resourceVersion"):
                if not ref.get(field) and isinstance(md.get(field), str) and md[field]:
                    ref[field] = md[field]
            self.object_ref = {k: ref[k] for k in _OBJECT_REF_ORDER if ref.get(k)}
        if self.level >= Level.REQUEST:
            self.request_object = obj

    def log_response(self, code: int, status: Mapping[str, Any] | None = None,
                     obj: Any = None) -> None:
        """The response's status (a Status's fields when it is one) and, at
        RequestResponse level, the object written."""
        self.response_status = response_status(code, status)
        # Not for non-resource requests (no objectRef), as upstream documents.
        if self.level >= Level.REQUEST_RESPONSE and obj is not None and \
                self.object_ref is not None:
            self.response_object = obj

    def annotate(self, key: str, value: str) -> None:
        """Annotations are kept at Metadata level and up; a key keeps its first value."""
        if self.level >= Level.METADATA and key not in self.annotations:
            self.annotations[key] = value

    def as_dict(self, stage: str, stage_timestamp: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": KIND, "apiVersion": API_VERSION, "level": self.level.api_name,
            "auditID": self.audit_id, "stage": stage, "requestURI": self.request_uri,
            "verb": self.verb, "user": self.user}
        if self.impersonated_user is not None:
            out["impersonatedUser"] = self.impersonated_user
        if self.source_ips:
            out["sourceIPs"] = self.source_ips
        if self.user_agent:
            out["userAgent"] = self.user_agent
        if self.object_ref is not None:
            out["objectRef"] = self.object_ref
        if self.response_status is not None:
            out["responseStatus"] = self.response_status
        if self.request_object is not None:
            out["requestObject"] = self.request_object
        if self.response_object is not None:
            out["responseObject"] = self.response_object
        out["requestReceivedTimestamp"] = micro_time(self.received)
        out["stageTimestamp"] = micro_time(stage_timestamp)
        if self.annotations:
            out["annotations"] = self.annotations
        return out

    def encode(self, stage: str, stage_timestamp: float) -> bytes:
        """The event at `stage` as one JSON line (newline-terminated)."""
        return orjson.dumps(self.as_dict(stage, stage_timestamp),
                            option=orjson.OPT_APPEND_NEWLINE)


_OBJECT_REF_ORDER = ("resource", "namespace", "name", "uid", "apiGroup", "apiVersion",
                     "resourceVersion", "subresource")

"""Parse a request path into what it addresses, as upstream's RequestInfoFactory."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RequestInfo:
    is_resource: bool
    group: str = ""
    version: str = ""
    namespace: str | None = None
    resource: str = ""
    name: str = ""
    subresource: str = ""
    verb: str = ""
    # The path's segments; for resource requests, as upstream's RequestInfo.Parts, from
    # the resource on (`nodes`, `n1`, `proxy`, `stats`, `summary`): what follows the
    # subresource is parts[3:].
    parts: tuple[str, ...] = ()


_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
          "DELETE": "delete"}


def parse(method: str, path: str, watch: bool) -> RequestInfo:
    """`/api/v1/namespaces/ns/pods/x/status` → group "", version v1, namespace ns, ...

    Non-resource paths (`/api`, `/apis/apps`, `/healthz`) return is_resource=False.
    """
    parts = tuple(p for p in path.split("/") if p)
    if not parts or parts[0] not in ("api", "apis"):
        return RequestInfo(False, parts=parts)
    if parts[0] == "api":
        if len(parts) < 3:
            return RequestInfo(False, parts=parts)
        group, version, rest = "", parts[1], list(parts[2:])
    else:
        if len(parts) < 4:
            return RequestInfo(False, parts=parts)
        group, version, rest = parts[1], parts[2], list(parts[3:])
    info = RequestInfo(True, group=group, version=version, parts=parts)
    if rest[0] == "namespaces" and len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        info.namespace = rest[1]
        rest = rest[2:]
    info.resource = rest[0]
    info.parts = tuple(rest)
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = rest[2]
    verb = _VERBS.get(method, method.lower())
    if method in ("GET", "HEAD"):
        if watch:
            verb = "watch"
        elif not info.name:
            verb = "list"
    elif method == "DELETE" and not info.name:
        verb = "deletecollection"
    info.verb = verb
    return info

"""An in-memory stand-in for `RESTClient`, for controllers' unit tests (client-go's fake
clientset): objects by path, generateName, resourceVersion, uid, optimistic concurrency,
status subresources, merge patches, and a log of every action. No watch: tests seed the
informers' stores and call a controller's `sync(key)` directly.

    client = FakeClient()
    client.fail("create", "pods", Forbidden(403, "Forbidden", "nope"), times=1)
    await client.create("/api/v1/namespaces/ns/pods", pod)
    [a.verb for a in client.actions]   # ["create"]
"""
from __future__ import annotations

import copy
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Mapping

from pyk8s.api.meta import generate_name
from pyk8s.api.selectors import parse_label_selector
from pyk8s.client.rest import AlreadyExists, ApiError, Conflict, NotFound

Obj = dict[str, Any]


@dataclass(frozen=True)
class ParsedPath:
    group: str
    version: str
    namespace: str
    resource: str
    name: str = ""
    subresource: str = ""


def parse_path(path: str) -> ParsedPath:
    parts = [p for p in path.split("?")[0].split("/") if p]
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ValueError(f"not an API path: {path}")
    ns = ""
    if len(rest) >= 3 and rest[0] == "namespaces" and not (
            len(rest) == 3 and rest[2] in ("status", "finalize")):
        ns, rest = rest[1], rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    return ParsedPath(group, version, ns, resource, name, sub)


@dataclass
class Action:
    verb: str            # create get list update patch delete
    path: str
    resource: str
    namespace: str
    name: str
    subresource: str = ""
    body: Any = None

    def __repr__(self) -> str:
        sub = f"/{self.subresource}" if self.subresource else ""
        return f"<{self.verb} {self.resource}{sub} {self.namespace}/{self.name}>"


@dataclass
class _Failure:
    verb: str
    resource: str
    error: Exception
    times: int = 1
    name: str = ""


_KINDS = {"pods": "Pod", "replicasets": "ReplicaSet", "replicationcontrollers":
          "ReplicationController", "deployments": "Deployment", "events": "Event",
          "services": "Service", "endpoints": "Endpoints", "endpointslices": "EndpointSlice",
          "serviceaccounts": "ServiceAccount", "nodes": "Node", "namespaces": "Namespace"}


def _merge(target: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386); strategic patches are approximated by it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


@dataclass
class FakeClient:
    """See the module docstring. `objects[(group, resource, namespace, name)]`."""
    objects: dict[tuple[str, str, str, str], Obj] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    status_resources: set[str] = field(default_factory=lambda: {
        "pods", "replicasets", "replicationcontrollers", "deployments", "statefulsets",
        "daemonsets", "jobs", "namespaces", "nodes", "services"})
    _rv: Any = field(default_factory=lambda: itertools.count(1))

    # -- test helpers ---------------------------------------------------------------------
    def fail(self, verb: str, resource: str, error: Exception, times: int = 1,
             name: str = "") -> None:
        """Make the next `times` `verb`s on `resource` (and `name`, if given) raise `error`."""
        self.failures.append(_Failure(verb, resource, error, times, name))

    def seed(self, path: str, obj: Obj) -> Obj:
        """Store `obj` under the collection `path` without recording an action."""
        p = parse_path(path)
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        if p.namespace:
            md.setdefault("namespace", p.namespace)
        md.setdefault("uid", str(uuid.uuid4()))
        md["resourceVersion"] = str(next(self._rv))
        self.objects[(p.group, p.resource, p.namespace, md["name"])] = obj
        return copy.deepcopy(obj)

    def by_verb(self, verb: str, resource: str | None = None) -> list[Action]:
        return [a for a in self.actions if a.verb == verb and
                (resource is None or a.resource == resource)]

    def stored(self, group: str, resource: str, namespace: str = "") -> list[Obj]:
        return [o for (g, r, ns, _), o in self.objects.items()
                if g == group and r == resource and (not namespace or ns == namespace)]

    def clear_actions(self) -> None:
        self.actions.clear()

    def _record(self, verb: str, path: str, body: Any = None) -> ParsedPath:
        p = parse_path(path)
        self.actions.append(Action(verb, path, p.resource, p.namespace, p.name, p.subresource,
                                   copy.deepcopy(body)))
        for f in self.failures:
            if f.times > 0 and f.verb == verb and f.resource == p.resource and \
                    (not f.name or f.name == p.name):
                f.times -= 1
                raise f.error
        return p

    @staticmethod
    def _not_found(p: ParsedPath) -> NotFound:
        return NotFound(404, "NotFound", f'{p.resource} "{p.name}" not found',
                        {"kind": "Status", "code": 404, "reason": "NotFound",
                         "details": {"name": p.name, "kind": p.resource}})

    # -- the RESTClient surface -----------------------------------------------------------
    async def close(self) -> None:
        pass

    async def create(self, path: str, body: Obj, params: Mapping[str, Any] | None = None
                     ) -> Obj:
        p = self._record("create", path, body)
        obj = copy.deepcopy(body)
        md = obj.setdefault("metadata", {})
        if not md.get("name") and md.get("generateName"):
            md["name"] = generate_name(md["generateName"])
        if not md.get("name"):
            raise ApiError(422, "Invalid", "name or generateName is required")
        if p.namespace:
            md["namespace"] = p.namespace
        key = (p.group, p.resource, p.namespace, md["name"])
        if key in self.objects:
            raise AlreadyExists(409, "AlreadyExists",
                                f'{p.resource} "{md["name"]}" already exists')
        md["uid"] = str(uuid.uuid4())
        md["resourceVersion"] = str(next(self._rv))
        md["creationTimestamp"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if p.resource in ("replicasets", "replicationcontrollers", "deployments"):
            md["generation"] = 1
        if p.resource == "pods":
            obj.setdefault("status", {"phase": "Pending"})
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def _get(self, p: ParsedPath) -> Obj:
        obj = self.objects.get((p.group, p.resource, p.namespace, p.name))
        if obj is None:
            raise self._not_found(p)
        return obj

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Obj:
        p = self._record("get", path)
        return copy.deepcopy(self._get(p))

    async def list(self, path: str, params: Mapping[str, Any] | None = None) -> Obj:
        p = self._record("list", path)
        sel = parse_label_selector(str((params or {}).get("labelSelector") or ""))
        items = [copy.deepcopy(o) for (g, r, ns, _), o in sorted(self.objects.items())
                 if g == p.group and r == p.resource and (not p.namespace or ns == p.namespace)
                 and sel.matches((o.get("metadata") or {}).get("labels"))]
        return {"kind": "List", "apiVersion": "v1", "items": items,
                "metadata": {"resourceVersion": str(next(self._rv))}}

    async def update(self, path: str, body: Obj, params: Mapping[str, Any] | None = None
                     ) -> Obj:
        p = self._record("update", path, body)
        cur = self._get(p)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != cur["metadata"].get("resourceVersion"):
            raise Conflict(409, "Conflict", "the object has been modified; please apply your "
                           "changes to the latest version and try again")
        if p.subresource == "status":
            new = copy.deepcopy(cur)
            new["status"] = copy.deepcopy(body.get("status"))
        else:
            new = copy.deepcopy(body)
            for k in ("uid", "creationTimestamp", "namespace", "name"):
                if k in cur["metadata"]:
                    new.setdefault("metadata", {})[k] = cur["metadata"][k]
            if p.resource in self.status_resources:
                new["status"] = copy.deepcopy(cur.get("status"))
                if new["status"] is None:
                    new.pop("status")
            if "generation" in cur["metadata"]:
                spec_old = {k: v for k, v in cur.items() if k not in ("metadata", "status")}
                spec_new = {k: v for k, v in new.items() if k not in ("metadata", "status")}
                new["metadata"]["generation"] = cur["metadata"]["generation"] + (
                    spec_old != spec_new)
        new["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[(p.group, p.resource, p.namespace, p.name)] = new
        return copy.deepcopy(new)

    async def patch(self, path: str, body: Any, patch_type: str = "merge",
                    params: Mapping[str, Any] | None = None) -> Obj:
        p = self._record("patch", path, body)
        cur = self._get(p)
        if patch_type == "json":
            raise NotImplementedError("json patches")
        rv = ((body or {}).get("metadata") or {}).get("resourceVersion")
        if rv and rv != cur["metadata"].get("resourceVersion"):
            raise Conflict(409, "Conflict", "the object has been modified")
        if patch_type == "strategic":
            from pyk8s.api import schemas
            from pyk8s.api.patch import apply_strategic_merge_patch
            kind = _KINDS.get(p.resource)
            schema = schemas.schema_for(p.group, p.version, kind) if kind else None
            new = apply_strategic_merge_patch(cur, body, schema)
        else:
            new = _merge(cur, body)
        new["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[(p.group, p.resource, p.namespace, p.name)] = new
        return copy.deepcopy(new)

    async def delete(self, path: str, options: Obj | None = None,
                     params: Mapping[str, Any] | None = None) -> Obj:
        p = self._record("delete", path, options)
        cur = self._get(p)
        pre = (options or {}).get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != cur["metadata"].get("uid"):
            raise Conflict(409, "Conflict", "Precondition failed: UID in precondition: "
                           f"{pre['uid']}, UID in object meta: {cur['metadata'].get('uid')}")
        del self.objects[(p.group, p.resource, p.namespace, p.name)]
        return copy.deepcopy(cur)

    async def watch(self, path: str, resource_version: str | None = None, **kw: Any
                    ) -> AsyncIterator[Obj]:
        raise NotImplementedError("FakeClient has no watch: seed the informers")
        yield {}  # pragma: no cover


__all__ = ["FakeClient", "Action", "parse_path", "ParsedPath"]

"""REST handlers for resources: get, list, watch, create, update, patch, delete.

Each handler turns HTTP into store calls and store results into HTTP; the semantics live
in `pyk8s.registry`.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pyk8s.api import errors, meta, patch as patching, schemas
from pyk8s.api.selectors import SelectorError, selector_dict_to_string
from pyk8s.apiserver import eviction, negotiation as neg, podproxy, reviews
from pyk8s.apiserver.requestinfo import RequestInfo
from pyk8s.apiserver.responses import (list_response, object_response, json_response,
                                       success_status)
from pyk8s.apiserver.watch import serve_watch
from pyk8s.registry.store import DeleteOptions, ListOptions, Store

if TYPE_CHECKING:
    from pyk8s.apiserver.app import APIServer

Obj = dict[str, Any]


def _query_bool(request: web.Request, name: str) -> bool | None:
    v = request.query.get(name)
    if v is None:
        return None
    try:
        return meta.parse_bool(v)
    except ValueError as e:
        raise errors.BadRequest(str(e)) from None


def _dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.BadRequest(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(values)


def _field_validation(request: web.Request) -> str:
    v = request.query.get("fieldValidation", "Warn") or "Warn"
    if v not in ("Strict", "Warn", "Ignore"):
        raise errors.BadRequest(f"fieldValidation: Unsupported value: {v!r}: supported "
                                'values: "Ignore", "Warn", "Strict"')
    return v


def _field_manager(request: web.Request, required: bool = False) -> str:
    """`fieldManager`, else the User-Agent's product (upstream's prefixFromUserAgent)."""
    fm = request.query.get("fieldManager")
    if fm is not None and len(fm) > 128:
        raise errors.Invalid.of("meta.k8s.io", "PatchOptions", "", [errors.field_invalid(
            "fieldManager", fm, "must be less than 128 characters")])
    if fm:
        return fm
    if required:
        raise errors.Invalid.of("meta.k8s.io", "PatchOptions", "", [errors.field_required(
            "fieldManager", "is required for apply requests")])
    return request.headers.get("User-Agent", "").split("/", 1)[0][:128]


def _list_options(request: web.Request) -> ListOptions:
    q = request.query
    limit = 0
    if q.get("limit"):
        try:
            limit = max(0, int(q["limit"]))
        except ValueError:
            raise errors.BadRequest(f"invalid limit: {q['limit']}") from None
    return ListOptions(label_selector=q.get("labelSelector", ""),
                       field_selector=q.get("fieldSelector", ""), limit=limit,
                       continue_token=q.get("continue", ""),
                       resource_version=q.get("resourceVersion", ""),
                       resource_version_match=q.get("resourceVersionMatch", ""))


def _check_body_type(info_kind: str, api_version: str, body: Obj) -> None:
    """A body's apiVersion/kind, when given, must be what the URL serves."""
    kind, av = body.get("kind"), body.get("apiVersion")
    if kind and kind != info_kind:
        raise errors.BadRequest(f"the API version in the data ({av}) does not match the expected "
                                f"API version ({api_version})" if av and av != api_version else
                                f'Object kind "{kind}" does not match "{info_kind}"')
    if av and av != api_version:
        raise errors.BadRequest(f"the API version in the data ({av}) does not match the expected "
                                f"API version ({api_version})")


class ResourceHandler:
    def __init__(self, server: "APIServer") -> None:
        self.server = server

    async def handle(self, request: web.Request, ri: RequestInfo) -> web.StreamResponse:
        info = self.server.catalogue.lookup(ri.group, ri.version, ri.resource)
        if info is None or (len(ri.parts) > 3 and ri.subresource != "proxy"):
            raise errors.NotFound("the server could not find the requested resource")
        if (info.group, info.plural, ri.subresource) in reviews.VIRTUAL:
            return await reviews.handle(self.server, request, ri)
        store = self.server.store(info)
        if ri.namespace is not None and not info.namespaced:
            raise errors.NotFound("the server could not find the requested resource")
        ns = ri.namespace if info.namespaced else None
        sub = ri.subresource
        if sub and sub not in info.subresources:
            raise errors.NotFound("the server could not find the requested resource")
        if ri.name and not ri.name.strip():
            raise errors.NotFound("the server could not find the requested resource")
        m = request.method
        if info.group == "" and info.plural == "pods" and sub in podproxy.STREAM_SUBRESOURCES:
            return await self.server.pod_proxy.handle(request, store, ns, ri.name, sub)
        if info.group == "" and info.plural == "nodes" and sub == "proxy":
            return await self.server.pod_proxy.node_proxy(request, ri.name, ri.parts[3:])
        if info.group == "" and info.plural == "pods" and sub == "eviction":
            _dry_run(request)  # rejects unsupported values
            pdbs = self.server.catalogue.lookup("policy", "v1", "poddisruptionbudgets")
            assert pdbs is not None
            return await eviction.handle(request, store, self.server.store(pdbs), ns or "",
                                         ri.name, request.query.getall("dryRun", []))
        if sub == "scale":
            return await self.scale(request, store, ns, ri.name)
        if sub == "binding":
            if m != "POST":
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            return await self.binding(request, store, ns, ri.name)
        if m == "GET":
            if ri.name:
                return object_response(neg.choose_output(request), info, await store.get(ns, ri.name))
            if _query_bool(request, "watch"):
                return await serve_watch(self.server, request, store, ns, _list_options(request))
            return await self.list(request, store, ns)
        if m == "POST":
            if ri.name:
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            return await self.create(request, store, ns)
        if m == "PUT":
            if not ri.name:
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            return await self.update(request, store, ns, ri.name, sub)
        if m == "PATCH":
            if not ri.name:
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            return await self.patch(request, store, ns, ri.name, sub)
        if m == "DELETE":
            if ri.name:
                return await self.delete(request, store, ns, ri.name)
            return await self.delete_collection(request, store, ns)
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")

    # -- read ------------------------------------------------------------------------------
    async def list(self, request: web.Request, store: Store, ns: str | None) -> web.StreamResponse:
        out = neg.choose_output(request)
        res = await store.list(ns, _list_options(request))
        return list_response(out, store.info, res.items, res.resource_version,
                             res.continue_token, res.remaining)

    # -- write -----------------------------------------------------------------------------
    async def create(self, request: web.Request, store: Store, ns: str | None) -> web.StreamResponse:
        out = neg.choose_output(request)
        body = await neg.read_object(request)
        _check_body_type(store.info.kind, store.info.api_version, body)
        if self.server.crds.terminating(store.info):
            raise errors.MethodNotAllowed("create not allowed while custom resource definition "
                                          "is terminating")
        obj, warnings = await store.create(ns, body, dry_run=_dry_run(request),
                                           field_validation=_field_validation(request),
                                           manager=_field_manager(request),
                                           user=request.get("user"))
        return object_response(out, store.info, obj, 201, warnings)

    async def update(self, request: web.Request, store: Store, ns: str | None, name: str,
                     sub: str) -> web.StreamResponse:
        out = neg.choose_output(request)
        body = await neg.read_object(request)
        _check_body_type(store.info.kind, store.info.api_version, body)
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise errors.BadRequest(f"the name of the object ({body_name}) does not match the "
                                    f"name on the URL ({name})")
        create_obj = copy.deepcopy(body) if not sub and store.info.kind not in ("Namespace",) \
            and _allows_create_on_update(store) else None
        obj, created, warnings = await store.update(
            ns, name, lambda cur: body, subresource=sub, dry_run=_dry_run(request),
            field_validation=_field_validation(request), create_obj=create_obj,
            manager=_field_manager(request), user=request.get("user"))
        return object_response(out, store.info, obj, 201 if created else 200, warnings)

    async def patch(self, request: web.Request, store: Store, ns: str | None, name: str,
                    sub: str) -> web.StreamResponse:
        out = neg.choose_output(request)
        ct = neg.media_type(request)
        if ct == "application/apply-patch+yaml":
            return await self.apply(request, store, ns, name, sub)
        custom = hasattr(store.strategy, "prune_unknown")  # custom resources: no SMP
        if ct not in neg.PATCH_TYPES or (custom and ct == "application/strategic-merge-patch+json"):
            raise errors.UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(t for t in neg.PATCH_TYPES if not custom or 'strategic' not in t)}")
        raw = await neg.read_raw(request)
        patch_doc = neg.decode_object(raw, "application/json")
        schema = schemas.schema_for(store.info.group, store.info.version, store.info.kind)
        info = store.info

        def mutate(current: Obj) -> Obj:
            try:
                new = patching.apply_patch(current, patch_doc, ct, schema)
            except patching.PatchError as e:
                raise _patch_error(e) from None
            if not isinstance(new, dict):
                raise errors.BadRequest("patch result is not an object")
            _check_body_type(info.kind, info.api_version, new)
            return new

        obj, _, warnings = await store.update(ns, name, mutate, subresource=sub,
                                              dry_run=_dry_run(request),
                                              field_validation=_field_validation(request),
                                              manager=_field_manager(request),
                                              user=request.get("user"))
        return object_response(out, info, obj, 200, warnings)

    async def apply(self, request: web.Request, store: Store, ns: str | None, name: str,
                    sub: str) -> web.StreamResponse:
        """Server-side apply: PATCH with application/apply-patch+yaml; creates if absent."""
        out = neg.choose_output(request)
        manager = _field_manager(request, required=True)
        force = bool(_query_bool(request, "force"))
        applied = neg.decode_object(await neg.read_raw(request), "application/yaml")
        if not isinstance(applied, dict):
            raise errors.BadRequest("error decoding YAML: the applied configuration must be an object")
        body_name = (applied.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise errors.BadRequest(f"the name of the object ({body_name}) does not match the "
                                    f"name on the URL ({name})")
        applied.setdefault("metadata", {})["name"] = name
        warnings = store.prune(applied, _field_validation(request))

        def mutate(current: Obj) -> Obj:
            return store.apply(current, applied, manager, force, sub)

        create_obj = store.apply(None, applied, manager, force, sub) if not sub else None
        obj, created, more = await store.update(
            ns, name, mutate, subresource=sub, dry_run=_dry_run(request),
            field_validation="Ignore", create_obj=create_obj, manager=manager, applied=True,
            user=request.get("user"))
        return object_response(out, store.info, obj, 201 if created else 200, warnings + more)

    async def delete(self, request: web.Request, store: Store, ns: str | None,
                     name: str) -> web.StreamResponse:
        out = neg.choose_output(request)
        raw = await neg.read_raw(request)
        body = neg.decode_options(raw, neg.media_type(request)) if raw.strip() else None
        opts = DeleteOptions.from_body(body if isinstance(body, dict) else None,
                                       dict(request.query))
        opts.dry_run = opts.dry_run or _dry_run(request)
        obj, pending = await store.delete(ns, name, opts, user=request.get("user"))
        if pending:
            return object_response(out, store.info, obj, 202 if not opts.dry_run else 200)
        if store.info.kind in ("Pod", "Namespace") or store.info.group == "" and \
                store.info.kind in ("Service",):
            return object_response(out, store.info, obj, 200)
        return json_response(success_status(store.info, obj))

    async def delete_collection(self, request: web.Request, store: Store,
                                ns: str | None) -> web.StreamResponse:
        out = neg.choose_output(request)
        raw = await neg.read_raw(request)
        body = neg.decode_options(raw, neg.media_type(request)) if raw.strip() else None
        opts = DeleteOptions.from_body(body if isinstance(body, dict) else None,
                                       dict(request.query))
        opts.dry_run = opts.dry_run or _dry_run(request)
        items = await store.delete_collection(ns, _list_options(request), opts,
                                              user=request.get("user"))
        return list_response(out, store.info, items, store.cache.processed_rev, None, None)

    # -- subresources ----------------------------------------------------------------------
    async def scale(self, request: web.Request, store: Store, ns: str | None,
                    name: str) -> web.StreamResponse:
        m = request.method
        paths = getattr(store.strategy, "scale_paths", lambda: None)()  # custom resources
        if m == "GET":
            return json_response(_scale_of(await store.get(ns, name), paths))
        if m not in ("PUT", "PATCH"):
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        ct = neg.media_type(request)
        raw = await neg.read_raw(request)
        if m == "PUT":
            body = neg.decode_object(raw, ct)
        else:
            if ct not in neg.PATCH_TYPES or ct == "application/apply-patch+yaml":
                raise errors.UnsupportedMediaType(f"unsupported patch type {ct} for scale")
            body = neg.decode_object(raw, "application/json")
        if not isinstance(body, dict):
            raise errors.BadRequest("Scale body must be an object")
        scale_schema = schemas.schema_for("autoscaling", "v1", "Scale")

        def mutate(current: Obj) -> Obj:
            scale = _scale_of(current, paths)
            if m == "PUT":
                want = body
            else:
                try:
                    want = patching.apply_patch(scale, body, ct, scale_schema)
                except patching.PatchError as e:
                    raise _patch_error(e) from None
            replicas = (want.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.Invalid.of("autoscaling", "Scale", name, [errors.field_invalid(
                    "spec.replicas", replicas, "must be greater than or equal to 0")])
            new = current
            if paths:
                _set_path(new, paths["specReplicasPath"], replicas)
            else:
                new.setdefault("spec", {})["replicas"] = replicas
            rv = (want.get("metadata") or {}).get("resourceVersion")
            if rv:
                new["metadata"]["resourceVersion"] = rv
            return new

        obj, _, _ = await store.update(ns, name, mutate, dry_run=_dry_run(request),
                                       manager=_field_manager(request),
                                       user=request.get("user"))
        return json_response(_scale_of(obj, paths))

    async def binding(self, request: web.Request, store: Store, ns: str | None,
                      name: str) -> web.StreamResponse:
        body = await neg.read_object(request)
        target = (body.get("target") or {}).get("name")
        if not target:
            raise errors.Invalid.of("", "Binding", name, [errors.field_required("target.name")])

        def mutate(current: Obj) -> Obj:
            spec = current.setdefault("spec", {})
            if current["metadata"].get("deletionTimestamp"):
                raise errors.Conflict.of("", "pods", name, "pod is being deleted")
            if spec.get("nodeName"):
                raise errors.Conflict.of("", "pods", name,
                                         f"pod {name} is already assigned to node \"{spec['nodeName']}\"")
            spec["nodeName"] = target
            conds = [c for c in (current.setdefault("status", {}).get("conditions") or [])
                     if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": meta.rfc3339()})
            current["status"]["conditions"] = conds
            return current

        await store.update(ns, name, mutate, subresource="binding", dry_run=_dry_run(request))
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "code": 201}, 201)


def _patch_error(e: errors.ApiError) -> errors.ApiError:
    """Patch failures keep upstream's 400/413/422; upstream's 500 for a strategic merge that
    cannot be applied is reported as 422, the client's mistake it is."""
    if e.code >= 500:
        return errors.Invalid(e.message)
    return e


def _allows_create_on_update(store: Store) -> bool:
    # Upstream: most kinds do not create on PUT; a few (leases, events, endpoints…) do.
    return (store.info.group, store.info.kind) in {
        ("coordination.k8s.io", "Lease"), ("", "Endpoints"), ("", "Event"),
        ("events.k8s.io", "Event"), ("discovery.k8s.io", "EndpointSlice"),
        ("rbac.authorization.k8s.io", "ClusterRole"), ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
    }


def _get_path(obj: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _set_path(obj: Obj, path: str, value: Any) -> None:
    parts = [p for p in path.split(".") if p]
    for part in parts[:-1]:
        nxt = obj.get(part)
        if not isinstance(nxt, dict):
            nxt = obj[part] = {}
        obj = nxt
    obj[parts[-1]] = value


def _custom_scale_of(obj: Obj, paths: Obj) -> Obj:
    """A custom resource's Scale, from the CRD's specReplicasPath / statusReplicasPath /
    labelSelectorPath (as upstream's apiextensions scale subresource)."""
    md = obj["metadata"]
    scale_md = {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                   "creationTimestamp") if k in md}
    spec_r = _get_path(obj, paths.get("specReplicasPath") or "")
    status_r = _get_path(obj, paths.get("statusReplicasPath") or "")
    st: Obj = {"replicas": int(status_r) if isinstance(status_r, int) else 0}
    if paths.get("labelSelectorPath"):
        sel = _get_path(obj, paths["labelSelectorPath"])
        if isinstance(sel, str) and sel:
            st["selector"] = sel
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_md,
            "spec": {"replicas": int(spec_r) if isinstance(spec_r, int) else 0}, "status": st}


def _scale_of(obj: Obj, paths: Obj | None = None) -> Obj:
    if paths:
        return _custom_scale_of(obj, paths)
    md = obj["metadata"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    sel = spec.get("selector")
    if obj.get("kind") == "ReplicationController":
        selector = ",".join(f"{k}={v}" for k, v in sorted((sel or {}).items()))
    else:
        try:
            selector = selector_dict_to_string(sel) if sel is not None else ""
        except SelectorError:
            selector = ""
    scale_md = {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                   "creationTimestamp") if k in md}
    st: Obj = {"replicas": int(status.get("replicas") or 0)}
    if selector:
        st["selector"] = selector
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_md,
            "spec": {"replicas": int(spec.get("replicas", 0))}, "status": st}


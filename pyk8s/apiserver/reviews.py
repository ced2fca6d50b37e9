"""Create-only API resources that compute an answer instead of storing an object:
TokenRequest (serviceaccounts/<name>/token), TokenReview, SelfSubjectReview and
SelfSubjectAccessReview."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pyk8s.api import errors, meta
from pyk8s.apiserver import negotiation as neg
from pyk8s.apiserver.authn import ADMIN, ISSUER, UserInfo
from pyk8s.apiserver.requestinfo import RequestInfo
from pyk8s.apiserver.responses import json_response

if TYPE_CHECKING:
    from pyk8s.apiserver.app import APIServer

Obj = dict[str, Any]

# (group, resource, subresource) of the computed resources.
VIRTUAL = {
    ("", "serviceaccounts", "token"),
    ("authentication.k8s.io", "tokenreviews", ""),
    ("authentication.k8s.io", "selfsubjectreviews", ""),
    ("authorization.k8s.io", "selfsubjectaccessreviews", ""),
}


def user_of(request: web.Request) -> UserInfo:
    return request.get("user") or ADMIN


async def handle(server: "APIServer", request: web.Request, ri: RequestInfo) -> web.StreamResponse:
    if request.method != "POST" or (ri.name and not ri.subresource):
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
    body = await neg.read_object(request)
    if ri.resource == "serviceaccounts":
        return await _token_request(server, ri, body)
    if ri.resource == "tokenreviews":
        return await _token_review(server, body)
    if ri.resource == "selfsubjectreviews":
        return _created(body, "authentication.k8s.io/v1", "SelfSubjectReview",
                        {"userInfo": user_of(request).as_dict()})
    return _created(body, "authorization.k8s.io/v1", "SelfSubjectAccessReview",
                    _access_review(body))


def _created(body: Obj, api_version: str, kind: str, status: Obj) -> web.Response:
    out = dict(body)
    out["apiVersion"], out["kind"] = api_version, kind
    md = dict(out.get("metadata") or {})
    md.setdefault("creationTimestamp", None)
    out["metadata"] = md
    out["status"] = status
    return json_response(out, 201)


def _access_review(body: Obj) -> Obj:
    spec = body.get("spec") or {}
    if not spec.get("resourceAttributes") and not spec.get("nonResourceAttributes"):
        raise errors.Invalid.of("authorization.k8s.io", "SelfSubjectAccessReview", "", [
            errors.field_required("spec.resourceAttributes",
                                  "exactly one of nonResourceAttributes or resourceAttributes must be specified")])
    # No authorizer is enforced yet: every authenticated request is allowed, and the review
    # says so rather than guessing what RBAC would answer.
    return {"allowed": True, "reason": "pyk8s enforces no authorization yet: every "
                                       "authenticated user may perform every action"}


async def _token_request(server: "APIServer", ri: RequestInfo, body: Obj) -> web.Response:
    if server.authn is None or server.authn.signer is None:
        raise errors.ServiceUnavailable("service account token issuing is not configured "
                                        "(the server runs without authentication)")
    info = server.catalogue.lookup("", "v1", "serviceaccounts")
    assert info is not None
    sa = await server.store(info).get(ri.namespace, ri.name)
    spec = dict(body.get("spec") or {})
    seconds = int(spec.get("expirationSeconds") or 3600)
    if seconds < 600:
        raise errors.Invalid.of("authentication.k8s.io", "TokenRequest", ri.name, [
            errors.field_invalid("spec.expirationSeconds", seconds,
                                 "may not specify a duration less than 10 minutes")])
    audiences = list(spec.get("audiences") or [ISSUER])
    token, exp = server.authn.signer.issue(ri.namespace or "", ri.name, sa["metadata"]["uid"],
                                           audiences, seconds)
    spec.update({"audiences": audiences, "expirationSeconds": seconds})
    spec.setdefault("boundObjectRef", None)
    out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
           "metadata": {"name": ri.name, "namespace": ri.namespace,
                        "creationTimestamp": meta.rfc3339()},
           "spec": spec,
           "status": {"token": token, "expirationTimestamp": meta.rfc3339(
               datetime.fromtimestamp(exp, timezone.utc))}}
    return json_response(out, 201)


async def _token_review(server: "APIServer", body: Obj) -> web.Response:
    token = (body.get("spec") or {}).get("token") or ""
    user = await server.authn.authenticate(token) if server.authn and token else None
    status: Obj = {"authenticated": user is not None}
    if user is not None:
        status["user"] = user.as_dict()
        status["audiences"] = list((body.get("spec") or {}).get("audiences") or [ISSUER])
    else:
        status["user"] = {}
    return _created(body, "authentication.k8s.io/v1", "TokenReview", status)

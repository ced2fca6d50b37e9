"""Create-only API resources that compute an answer instead of storing an object:
TokenRequest (serviceaccounts/<name>/token), TokenReview, SelfSubjectReview, and the
authorization reviews with the server's authorizer's decisions: SubjectAccessReview,
LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pyk8s.api import errors, meta
from pyk8s.apiserver import negotiation as neg
from pyk8s.apiserver.admission.chain import Attributes as AdmissionAttributes
from pyk8s.apiserver.authn import ADMIN, ISSUER, UserInfo
from pyk8s.apiserver.authz.attributes import Attributes, Decision
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
    ("authorization.k8s.io", "subjectaccessreviews", ""),
    ("authorization.k8s.io", "localsubjectaccessreviews", ""),
    ("authorization.k8s.io", "selfsubjectrulesreviews", ""),
}


def user_of(request: web.Request) -> UserInfo:
    return request.get("user") or ADMIN


async def handle(server: "APIServer", request: web.Request, ri: RequestInfo) -> web.StreamResponse:
    if request.method != "POST" or (ri.name and not ri.subresource):
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
    body = await neg.read_object(request)
    if ri.resource == "serviceaccounts":
        return await _token_request(server, ri, body, user_of(request))
    if ri.resource == "tokenreviews":
        return await _token_review(server, body)
    if ri.resource == "selfsubjectreviews":
        return _created(body, "authentication.k8s.io/v1", "SelfSubjectReview",
                        {"userInfo": user_of(request).as_dict()})
    if ri.resource == "selfsubjectrulesreviews":
        return _created(body, "authorization.k8s.io/v1", "SelfSubjectRulesReview",
                        _rules_review(server, user_of(request), body))
    kind = {"selfsubjectaccessreviews": "SelfSubjectAccessReview",
            "subjectaccessreviews": "SubjectAccessReview",
            "localsubjectaccessreviews": "LocalSubjectAccessReview"}[ri.resource]
    spec = body.get("spec") or {}
    _validate_access_review(kind, spec, ri.namespace)
    user = user_of(request) if kind == "SelfSubjectAccessReview" else UserInfo(
        spec.get("user") or "", uid=spec.get("uid") or "",
        groups=tuple(spec.get("groups") or ()), extra=dict(spec.get("extra") or {}))
    if ri.namespace:
        body = {**body, "metadata": {**(body.get("metadata") or {}),
                                     "namespace": ri.namespace}}
    return _created(body, "authorization.k8s.io/v1", kind,
                    await _access_review(server, user, spec))


def _created(body: Obj, api_version: str, kind: str, status: Obj) -> web.Response:
    out = dict(body)
    out["apiVersion"], out["kind"] = api_version, kind
    md = dict(out.get("metadata") or {})
    md.setdefault("creationTimestamp", None)
    out["metadata"] = md
    out["status"] = status
    return json_response(out, 201)


def _validate_access_review(kind: str, spec: Obj, namespace: str | None) -> None:
    """Upstream's ValidateSubjectAccessReviewSpec and friends."""
    causes: list[errors.StatusCause] = []
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if not ra and not nra:
        causes.append(errors.field_required(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
    elif ra and nra:
        causes.append(errors.field_invalid(
            "spec.nonResourceAttributes", nra,
            "cannot be specified in combination with resourceAttributes"))
    if kind == "SubjectAccessReview" and not spec.get("user") and not spec.get("groups"):
        causes.append(errors.field_invalid("spec.user", spec.get("user") or "",
                                           "at least one of user or group must be specified"))
    if kind == "LocalSubjectAccessReview":
        if nra:
            causes.append(errors.field_invalid("spec.nonResourceAttributes", nra,
                                               "disallowed on this kind of request"))
        if ra and (ra.get("namespace") or "") != (namespace or ""):
            causes.append(errors.field_invalid(
                "spec.resourceAttributes.namespace", ra.get("namespace") or "",
                "must match metadata.namespace"))
    if causes:
        raise errors.Invalid.of("authorization.k8s.io", kind, "", causes)


async def _access_review(server: "APIServer", user: UserInfo, spec: Obj) -> Obj:
    if server.authorizer is None:
        return {"allowed": True, "reason": "the server runs without authentication or "
                                           "authorization (--insecure-http)"}
    ra = spec.get("resourceAttributes")
    if ra:
        a = Attributes(user, ra.get("verb") or "", namespace=ra.get("namespace") or "",
                       api_group=ra.get("group") or "", api_version=ra.get("version") or "",
                       resource=ra.get("resource") or "",
                       subresource=ra.get("subresource") or "", name=ra.get("name") or "")
    else:
        nra = spec.get("nonResourceAttributes") or {}
        a = Attributes(user, nra.get("verb") or "", resource_request=False,
                       path=nra.get("path") or "")
    decision, reason = await server.authorizer.authorize(a)
    if decision != Decision.ALLOW:  # the indexes may lag a write that just granted it
        await server.cache.consistent_rev()
        decision, reason = await server.authorizer.authorize(a)
    status: Obj = {"allowed": decision == Decision.ALLOW}
    if decision == Decision.DENY:
        status["denied"] = True
    if reason:
        status["reason"] = reason
    return status


def _rules_review(server: "APIServer", user: UserInfo, body: Obj) -> Obj:
    namespace = (body.get("spec") or {}).get("namespace") or ""
    if server.authorizer is None:
        return {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": False}
    resource, non_resource, incomplete, error = server.authorizer.rules_for(user, namespace)
    status: Obj = {"resourceRules": [r.as_dict() for r in resource],
                   "nonResourceRules": [r.as_dict() for r in non_resource],
                   "incomplete": incomplete}
    if error:
        status["evaluationError"] = error
    return status


async def _token_request(server: "APIServer", ri: RequestInfo, body: Obj,
                         user: UserInfo) -> web.Response:
    if server.authn is None or server.authn.signer is None:
        raise errors.ServiceUnavailable("service account token issuing is not configured "
                                        "(the server runs without authentication)")
    info = server.catalogue.lookup("", "v1", "serviceaccounts")
    assert info is not None
    sa = await server.store(info).get(ri.namespace, ri.name)
    # Admission sees the TokenRequest as upstream's create of serviceaccounts/token
    # (NodeRestriction: a node asks only for tokens bound to its own pods).
    attrs = AdmissionAttributes("CREATE", "", "v1", "serviceaccounts",
                                "TokenRequest", ri.namespace or "", ri.name, body,
                                subresource="token", user=user)
    await server.admission.admit(attrs)
    await server.admission.validate(attrs)
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

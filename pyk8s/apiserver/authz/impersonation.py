"""Impersonation headers (`kubectl --as`, `--as-group`, `--as-uid`), as upstream's
k8s.io/apiserver/pkg/endpoints/filters/impersonation.go: each requested identity needs the
`impersonate` verb on users / groups / serviceaccounts / uids / userextras."""
from __future__ import annotations

from typing import Mapping
from urllib.parse import unquote

from pyk8s.api import errors
from pyk8s.apiserver.authn import UserInfo
from pyk8s.apiserver.authz.attributes import Attributes, Authorizer, Decision, forbidden

IMPERSONATE_USER = "Impersonate-User"
IMPERSONATE_GROUP = "Impersonate-Group"
IMPERSONATE_UID = "Impersonate-Uid"
IMPERSONATE_EXTRA = "Impersonate-Extra-"
AUTHENTICATED, UNAUTHENTICATED = "system:authenticated", "system:unauthenticated"
ANONYMOUS = "system:anonymous"
SA_PREFIX = "system:serviceaccount:"


def requested(headers: Mapping[str, str]) -> bool:
    return any(k.lower().startswith("impersonate-") for k in headers)


def _requested_identity(headers: Mapping[str, str]) -> tuple[str, list[str], str,
                                                             dict[str, list[str]]]:
    getall = getattr(headers, "getall", None)
    username = headers.get(IMPERSONATE_USER, "")
    groups = list(getall(IMPERSONATE_GROUP, [])) if getall else \
        ([headers[IMPERSONATE_GROUP]] if IMPERSONATE_GROUP in headers else [])
    uid = headers.get(IMPERSONATE_UID, "")
    extra: dict[str, list[str]] = {}
    for k in headers:
        if k.lower().startswith(IMPERSONATE_EXTRA.lower()):
            key = unquote(k[len(IMPERSONATE_EXTRA):]).lower()
            values = list(getall(k, [])) if getall else [headers[k]]
            extra.setdefault(key, []).extend(v for v in values if v not in extra.get(key, []))
    if not username and (groups or uid or extra):
        raise errors.InternalError("requested impersonation of groups, uid or extra without "
                                   "impersonating a user")
    return username, groups, uid, extra


async def impersonate(headers: Mapping[str, str], user: UserInfo,
                      authorizer: Authorizer) -> UserInfo:
    """The impersonated user, once `user` may impersonate every part of it (403 else)."""
    username, groups, uid, extra = _requested_identity(headers)
    wanted: list[Attributes] = []
    if username.startswith(SA_PREFIX) and username.count(":") == 3:
        ns, name = username[len(SA_PREFIX):].split(":", 1)
        wanted.append(Attributes(user, "impersonate", resource="serviceaccounts",
                                 namespace=ns, name=name))
    else:
        wanted.append(Attributes(user, "impersonate", resource="users", name=username))
    wanted.extend(Attributes(user, "impersonate", resource="groups", name=g) for g in groups)
    if uid:
        wanted.append(Attributes(user, "impersonate", api_group="authentication.k8s.io",
                                 resource="uids", name=uid))
    for key, values in extra.items():
        wanted.extend(Attributes(user, "impersonate", api_group="authentication.k8s.io",
                                 resource="userextras", subresource=key, name=v)
                      for v in values)
    for a in wanted:
        decision, reason = await authorizer.authorize(a)
        if decision != Decision.ALLOW:
            raise forbidden(a, reason)
    # Upstream adds the implied groups: an impersonated service account's, unless groups
    # were asked for explicitly, and system:authenticated for everyone but anonymous.
    if username.startswith(SA_PREFIX) and not groups and username.count(":") == 3:
        ns = username[len(SA_PREFIX):].split(":", 1)[0]
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
    if username == ANONYMOUS:
        if UNAUTHENTICATED not in groups:
            groups.append(UNAUTHENTICATED)
    elif AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return UserInfo(username, uid=uid, groups=tuple(groups), extra=extra)

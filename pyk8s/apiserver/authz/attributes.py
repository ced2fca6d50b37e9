"""What an authorizer is asked, and what it answers (upstream's authorizer.Attributes); the
audit policy is matched against the same attributes (`RequestAttributes`: no user when
authentication failed)."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from pyk8s.api import errors
from pyk8s.apiserver.authn import UserInfo

if TYPE_CHECKING:
    from pyk8s.apiserver.requestinfo import RequestInfo


class Decision(enum.IntEnum):
    DENY = 0
    ALLOW = 1
    NO_OPINION = 2


@dataclass(frozen=True)
class RequestAttributes:
    """One request: the user (None when authentication failed: the audit policy matches
    such requests too), the verb and what is addressed. Non-resource requests carry `path`
    only."""
    user: UserInfo | None
    verb: str
    resource_request: bool = True
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class Attributes(RequestAttributes):
    """One request as authorizers see it: an authenticated user."""
    user: UserInfo
    # The request's `fieldSelector` / `labelSelector` query parameters as sent (list and
    # watch): the Node authorizer lets nodes list / watch pods with `spec.nodeName=<node>`.
    field_selector: str = ""
    label_selector: str = ""


@dataclass
class ResourceRule:
    """A rule as SelfSubjectRulesReview reports it."""
    verbs: list[str]
    api_groups: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    resource_names: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verbs": self.verbs, "apiGroups": self.api_groups,
                               "resources": self.resources}
        if self.resource_names:
            out["resourceNames"] = self.resource_names
        return out


@dataclass
class NonResourceRule:
    verbs: list[str]
    non_resource_urls: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"verbs": self.verbs, "nonResourceURLs": self.non_resource_urls}


class Authorizer(Protocol):
    async def authorize(self, a: Attributes) -> tuple[Decision, str]:
        """(decision, reason); the reason may be ""."""
        ...


class RuleResolver(Protocol):
    def rules_for(self, user: UserInfo, namespace: str) -> tuple[
            list[ResourceRule], list[NonResourceRule], bool, str]:
        """(resource rules, non-resource rules, incomplete, evaluation error)."""
        ...


def request_attributes(ri: "RequestInfo", user: UserInfo, request: Any) -> Attributes:
    """The attributes of an HTTP request (aiohttp), as upstream's GetAuthorizerAttributes
    with the RequestInfo's rules: a namespace's own name is its namespace, and a list or
    watch by `fieldSelector=metadata.name=x` is about `x`."""
    if not ri.is_resource:
        return Attributes(user, request.method.lower(), resource_request=False,
                          path=request.path)
    query: Mapping[str, str] = request.query
    name = ri.name
    field_selector = query.get("fieldSelector", "")
    if not name and ri.verb in ("list", "watch") and field_selector:
        for term in field_selector.split(","):
            key, sep, value = term.partition("=")
            if key.strip() == "metadata.name" and sep and not value.startswith("="):
                name = value.strip()
            elif key.strip() == "metadata.name" and value.startswith("="):
                name = value[1:].strip()
    namespace = ri.namespace or ""
    if ri.resource == "namespaces" and ri.name and not namespace:
        namespace = ri.name
    return Attributes(user, ri.verb, namespace=namespace, api_group=ri.group,
                      api_version=ri.version, resource=ri.resource,
                      subresource=ri.subresource, name=name, path=request.path,
                      field_selector=field_selector,
                      label_selector=query.get("labelSelector", ""))


def forbidden_message(a: Attributes) -> str:
    """Upstream's authorization forbiddenMessage."""
    user = a.user.username
    if not a.resource_request:
        return f'User "{user}" cannot {a.verb} path "{a.path}"'
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    if a.namespace:
        return (f'User "{user}" cannot {a.verb} resource "{resource}" in API group '
                f'"{a.api_group}" in the namespace "{a.namespace}"')
    return (f'User "{user}" cannot {a.verb} resource "{resource}" in API group '
            f'"{a.api_group}" at the cluster scope')


def forbidden(a: Attributes, reason: str = "") -> errors.Forbidden:
    """The 403 a denied request gets (upstream's responsewriters.Forbidden)."""
    msg = forbidden_message(a)
    if reason:
        msg += ": " + reason
    if not a.resource_request:
        return errors.Forbidden(f"forbidden: {msg}", details={})
    qualified = f"{a.resource}.{a.api_group}" if a.api_group else a.resource
    details: dict[str, Any] = {}
    if a.name:
        details["name"] = a.name
    if a.api_group:
        details["group"] = a.api_group
    details["kind"] = a.resource
    head = f'{qualified} "{a.name}" is forbidden' if a.name else f"{qualified} is forbidden"
    return errors.Forbidden(f"{head}: {msg}", details=details)

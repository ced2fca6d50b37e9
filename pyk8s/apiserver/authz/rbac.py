"""RBAC (`rbac.authorization.k8s.io/v1`), as upstream's plugin/pkg/auth/authorizer/rbac and
pkg/registry/rbac/validation.

Rule matching (`rule_allows`), rule coverage for escalation checks (`covers`), and the
authorizer: decisions come from indexes built from the watch cache's Roles, ClusterRoles,
RoleBindings and ClusterRoleBindings (no storage reads per request). The indexes are rebuilt
when one of the four resources changed (their caches' `rev`), and the rules a (user,
namespace) holds are memoized until then.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from pyk8s.apiserver.authn import UserInfo
from pyk8s.apiserver.authz.attributes import (Attributes, Decision, NonResourceRule,
                                              ResourceRule)

if TYPE_CHECKING:
    from pyk8s.watch.cache import WatchCache

Obj = dict[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"


# -- rule matching (upstream's rbac.RuleAllows) ------------------------------------------------
def verb_matches(rule: Obj, verb: str) -> bool:
    verbs = rule.get("verbs") or ()
    return "*" in verbs or verb in verbs


def api_group_matches(rule: Obj, group: str) -> bool:
    groups = rule.get("apiGroups") or ()
    return "*" in groups or group in groups


def resource_entry_matches(r: str, combined: str, subresource: str) -> bool:
    """One `resources` entry: `*`, the resource (`res` or `res/sub`) itself, or `*/sub`
    (the audit policy's GroupResources match these too)."""
    if r == "*" or r == combined:
        return True
    # `*/status` matches the status subresource of every resource.
    return bool(subresource) and len(r) == len(subresource) + 2 and r.startswith("*/") and \
        r.endswith(subresource)


def resource_matches(rule: Obj, combined: str, subresource: str) -> bool:
    return any(resource_entry_matches(r, combined, subresource)
               for r in rule.get("resources") or ())


def resource_name_matches(rule: Obj, name: str) -> bool:
    names = rule.get("resourceNames") or ()
    return not names or name in names


def url_matches(url: str, path: str) -> bool:
    """One non-resource URL entry: `*`, the path itself, or a prefix ending in `*`."""
    return url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1]))


def non_resource_url_matches(rule: Obj, path: str) -> bool:
    return any(url_matches(url, path) for url in rule.get("nonResourceURLs") or ())


def rule_allows(a: Attributes, rule: Obj) -> bool:
    if a.resource_request:
        combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        return (verb_matches(rule, a.verb) and api_group_matches(rule, a.api_group)
                and resource_matches(rule, combined, a.subresource)
                and resource_name_matches(rule, a.name))
    return verb_matches(rule, a.verb) and non_resource_url_matches(rule, a.path)


# -- coverage (upstream's validation.Covers) ------------------------------------------------------
def _breakdown(rule: Obj) -> list[Obj]:
    """One rule per (group, resource, name, verb) or (url, verb)."""
    out: list[Obj] = []
    verbs = rule.get("verbs") or []
    for group in rule.get("apiGroups") or []:
        for resource in rule.get("resources") or []:
            names = rule.get("resourceNames") or []
            for verb in verbs:
                if names:
                    out.extend({"verbs": [verb], "apiGroups": [group], "resources": [resource],
                                "resourceNames": [n]} for n in names)
                else:
                    out.append({"verbs": [verb], "apiGroups": [group],
                                "resources": [resource]})
    for url in rule.get("nonResourceURLs") or []:
        out.extend({"verbs": [v], "nonResourceURLs": [url]} for v in verbs)
    return out


def _has_all(have: Iterable[str], want: Iterable[str]) -> bool:
    s = set(have)
    return all(w in s for w in want)


def _resource_covers(owner: list[str], sub: str) -> bool:
    if "*" in owner or sub in owner:
        return True
    # `res/*` covers `res/sub`, `*/sub` covers every resource's sub (upstream).
    if "/" in sub:
        res, subres = sub.split("/", 1)
        return f"{res}/*" in owner or f"*/{subres}" in owner
    return False


def _non_resource_covers(owner: list[str], url: str) -> bool:
    return any(url_matches(o, url) for o in owner)


def rule_covers(owner: Obj, sub: Obj) -> bool:
    """Upstream's ruleCovers: `owner` allows at least everything `sub` (one atomic rule)
    allows."""
    ov = owner.get("verbs") or []
    if "*" not in ov and not _has_all(ov, sub.get("verbs") or []):
        return False
    if sub.get("nonResourceURLs"):
        return all(_non_resource_covers(owner.get("nonResourceURLs") or [], u)
                   for u in sub["nonResourceURLs"])
    og = owner.get("apiGroups") or []
    if "*" not in og and not _has_all(og, sub.get("apiGroups") or []):
        return False
    if not all(_resource_covers(owner.get("resources") or [], r)
               for r in sub.get("resources") or []):
        return False
    on, sn = owner.get("resourceNames") or [], sub.get("resourceNames") or []
    return not on or (bool(sn) and _has_all(on, sn))


def covers(owner_rules: list[Obj], rules: list[Obj]) -> tuple[bool, list[Obj]]:
    """Whether `owner_rules` cover every one of `rules`; the atomic rules they miss."""
    missing: list[Obj] = []
    for rule in rules:
        for sub in _breakdown(rule):
            if not any(rule_covers(o, sub) for o in owner_rules):
                missing.append(sub)
    return not missing, missing


def compact_string(rule: Obj) -> str:
    """Upstream's rbacv1helpers.CompactString: `{APIGroups:["apps"], Resources:["pods"],
    Verbs:["get"]}`."""
    def q(values: list[str]) -> str:
        return "[" + " ".join(f'"{v}"' for v in values) + "]"
    parts = []
    for field, label in (("apiGroups", "APIGroups"), ("resources", "Resources"),
                         ("nonResourceURLs", "NonResourceURLs"),
                         ("resourceNames", "ResourceNames"), ("verbs", "Verbs")):
        if rule.get(field):
            parts.append(f"{label}:{q(list(rule[field]))}")
    return "{" + ", ".join(parts) + "}"


# -- subjects --------------------------------------------------------------------------------------
def _subject_keys(subject: Obj, binding_namespace: str) -> str | None:
    """The index key of a subject: `u:<username>` or `g:<group>`."""
    kind = subject.get("kind")
    name = subject.get("name") or ""
    if kind == "User":
        return "u:" + name
    if kind == "Group":
        return "g:" + name
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        if not ns or not name:
            return None
        return f"u:system:serviceaccount:{ns}:{name}"
    return None


def _user_keys(user: UserInfo) -> list[str]:
    return ["u:" + user.username, *("g:" + g for g in user.groups)]


@dataclass(frozen=True)
class _Binding:
    kind: str  # ClusterRoleBinding | RoleBinding
    name: str
    namespace: str
    role_kind: str  # ClusterRole | Role
    role_name: str
    subject: str  # the matched subject, for reasons: `User "x"`


@dataclass
class _Grant:
    binding: _Binding
    rules: list[Obj]


_SUBJECT_LABEL = {"u": "User", "g": "Group"}


class RBACAuthorizer:
    """Upstream's RBAC authorizer over the watch cache's RBAC objects."""

    def __init__(self, cache: "WatchCache", prefixes: dict[str, str]) -> None:
        """`prefixes`: storage prefix of `roles`, `rolebindings`, `clusterroles` and
        `clusterrolebindings`."""
        self.cache = cache
        self.prefixes = prefixes
        self._revs: tuple[int, ...] = ()
        self._cluster_bindings: dict[str, list[_Binding]] = {}
        self._ns_bindings: dict[str, dict[str, list[_Binding]]] = {}
        self._memo: dict[tuple[str, tuple[str, ...], str], list[_Grant]] = {}

    # -- indexes -----------------------------------------------------------------------------
    def _current_revs(self) -> tuple[int, ...]:
        return tuple(self.cache.resource(self.prefixes[r]).rev
                     for r in ("roles", "rolebindings", "clusterroles", "clusterrolebindings"))

    def _refresh(self) -> None:
        revs = self._current_revs()
        if revs == self._revs:
            return
        cluster: dict[str, list[_Binding]] = {}
        namespaced: dict[str, dict[str, list[_Binding]]] = {}
        for obj in self.cache.resource(self.prefixes["clusterrolebindings"]).objects.values():
            self._index_binding(obj, "ClusterRoleBinding", "", cluster)
        for obj in self.cache.resource(self.prefixes["rolebindings"]).objects.values():
            ns = obj["metadata"].get("namespace") or ""
            self._index_binding(obj, "RoleBinding", ns, namespaced.setdefault(ns, {}))
        self._cluster_bindings, self._ns_bindings = cluster, namespaced
        self._memo = {}
        self._revs = revs

    @staticmethod
    def _index_binding(obj: Obj, kind: str, ns: str, into: dict[str, list[_Binding]]) -> None:
        ref = obj.get("roleRef") or {}
        if ref.get("apiGroup", RBAC_GROUP) != RBAC_GROUP:
            return
        for subject in obj.get("subjects") or ():
            key = _subject_keys(subject, ns)
            if key is None:
                continue
            label = _SUBJECT_LABEL[key[0]]
            if subject.get("kind") == "ServiceAccount":
                label = "ServiceAccount"
                shown = f'"{subject.get("name")}/{subject.get("namespace") or ns}"'
            else:
                shown = f'"{key[2:]}"'
            into.setdefault(key, []).append(_Binding(
                kind, obj["metadata"]["name"], ns, ref.get("kind", ""), ref.get("name", ""),
                f"{label} {shown}"))

    def _role_rules(self, b: _Binding) -> list[Obj] | None:
        if b.role_kind == "ClusterRole":
            prefix = self.prefixes["clusterroles"]
            role = self.cache.resource(prefix).objects.get(prefix + b.role_name)
        elif b.role_kind == "Role" and b.namespace:
            prefix = self.prefixes["roles"]
            role = self.cache.resource(prefix).objects.get(
                f"{prefix}{b.namespace}/{b.role_name}")
        else:
            return None
        if role is None:
            return None
        return list(role.get("rules") or [])

    def grants(self, user: UserInfo, namespace: str) -> list[_Grant]:
        """Every binding that applies to `user` (cluster-wide, and in `namespace`), with
        its role's rules; memoized until an RBAC object changes."""
        self._refresh()
        memo_key = (user.username, user.groups, namespace)
        hit = self._memo.get(memo_key)
        if hit is not None:
            return hit
        keys = _user_keys(user)
        out: list[_Grant] = []
        seen: set[_Binding] = set()
        sources = [self._cluster_bindings]
        if namespace:
            ns_index = self._ns_bindings.get(namespace)
            if ns_index:
                sources.append(ns_index)
        for index in sources:
            for key in keys:
                for b in index.get(key, ()):
                    if b in seen:
                        continue
                    seen.add(b)
                    rules = self._role_rules(b)
                    if rules:
                        out.append(_Grant(b, rules))
        if len(self._memo) > 10000:
            self._memo.clear()
        self._memo[memo_key] = out
        return out

    # -- Authorizer ----------------------------------------------------------------------------
    async def authorize(self, a: Attributes) -> tuple[Decision, str]:
        for g in self.grants(a.user, a.namespace):
            for rule in g.rules:
                if rule_allows(a, rule):
                    b = g.binding
                    name = f"{b.name}/{b.namespace}" if b.kind == "RoleBinding" else b.name
                    return Decision.ALLOW, (f'RBAC: allowed by {b.kind} "{name}" of '
                                            f'{b.role_kind} "{b.role_name}" to {b.subject}')
        return Decision.NO_OPINION, ""

    # -- RuleResolver ----------------------------------------------------------------------------
    def rule_objects(self, user: UserInfo, namespace: str) -> list[Obj]:
        return [r for g in self.grants(user, namespace) for r in g.rules]

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[
            list[ResourceRule], list[NonResourceRule], bool, str]:
        resource: list[ResourceRule] = []
        non_resource: list[NonResourceRule] = []
        for r in self.rule_objects(user, namespace):
            if r.get("nonResourceURLs"):
                non_resource.append(NonResourceRule(list(r.get("verbs") or []),
                                                    list(r["nonResourceURLs"])))
            if r.get("resources") or r.get("apiGroups"):
                resource.append(ResourceRule(list(r.get("verbs") or []),
                                             list(r.get("apiGroups") or []),
                                             list(r.get("resources") or []),
                                             list(r.get("resourceNames") or [])))
        return resource, non_resource, False, ""

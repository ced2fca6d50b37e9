"""RBAC's pure parts: rule matching, coverage (escalation checks), compact strings, the
authorizer's indexes over watch-cache objects."""
from __future__ import annotations

import pytest

from pyk8s.apiserver.authn import UserInfo
from pyk8s.apiserver.authz.attributes import Attributes, Decision, forbidden
from pyk8s.apiserver.authz.escalation import _compact
from pyk8s.apiserver.authz.impersonation import impersonate
from pyk8s.apiserver.authz.rbac import (RBACAuthorizer, compact_string, covers, rule_allows)
from pyk8s.apiserver.authz.union import (AlwaysAllow, AlwaysDeny, PrivilegedGroups, Union,
                                         parse_modes)

JANE = UserInfo("jane", groups=("devs", "system:authenticated"))


def attrs(verb: str, resource: str = "pods", *, group: str = "", ns: str = "default",
          name: str = "", sub: str = "", user: UserInfo = JANE) -> Attributes:
    return Attributes(user, verb, namespace=ns, api_group=group, resource=resource,
                      subresource=sub, name=name)


def test_rule_allows_verbs_groups_resources() -> None:
    rule = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}
    assert rule_allows(attrs("get"), rule)
    assert rule_allows(attrs("list"), rule)
    assert not rule_allows(attrs("create"), rule)
    assert not rule_allows(attrs("get", group="apps"), rule)
    assert not rule_allows(attrs("get", "secrets"), rule)
    assert rule_allows(attrs("delete", "deployments", group="apps"),
                       {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})


def test_rule_allows_subresources() -> None:
    log_rule = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}
    assert rule_allows(attrs("get", name="p", sub="log"), log_rule)
    assert not rule_allows(attrs("get", name="p"), log_rule)
    assert not rule_allows(attrs("get", name="p", sub="exec"), log_rule)
    # `pods` does not cover `pods/log`, `*/status` covers every status
    assert not rule_allows(attrs("get", name="p", sub="log"),
                           {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})
    any_status = {"verbs": ["update"], "apiGroups": ["*"], "resources": ["*/status"]}
    assert rule_allows(attrs("update", "deployments", group="apps", name="d", sub="status"),
                       any_status)
    assert not rule_allows(attrs("update", "deployments", group="apps", name="d"), any_status)


def test_rule_allows_resource_names() -> None:
    rule = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": ["mine"]}
    assert rule_allows(attrs("get", "configmaps", name="mine"), rule)
    assert not rule_allows(attrs("get", "configmaps", name="other"), rule)
    assert not rule_allows(attrs("list", "configmaps"), rule)  # a list names nothing


def test_rule_allows_non_resource_urls() -> None:
    rule = {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/healthz/*", "/api"]}

    def nr(path: str, verb: str = "get") -> Attributes:
        return Attributes(JANE, verb, resource_request=False, path=path)
    assert rule_allows(nr("/healthz"), rule)
    assert rule_allows(nr("/healthz/etcd"), rule)
    assert rule_allows(nr("/api"), rule)
    assert not rule_allows(nr("/api/v1"), rule)
    assert not rule_allows(nr("/healthz", "post"), rule)
    assert not rule_allows(attrs("get"), rule)


def test_covers_and_missing_rules() -> None:
    owner = [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods", "pods/log"]},
             {"verbs": ["*"], "apiGroups": ["apps"], "resources": ["deployments"]}]
    ok, missing = covers(owner, [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                                 {"verbs": ["create", "delete"], "apiGroups": ["apps"],
                                  "resources": ["deployments"]}])
    assert ok and not missing
    ok, missing = covers(owner, [{"verbs": ["get", "create"], "apiGroups": [""],
                                  "resources": ["pods"]}])
    assert not ok
    assert missing == [{"verbs": ["create"], "apiGroups": [""], "resources": ["pods"]}]
    # resourceNames: an owner restricted to names covers only those names
    named = [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]}]
    assert covers(named, [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"],
                           "resourceNames": ["a"]}])[0]
    assert not covers(named, [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}])[0]
    # `res/*` and `*/sub` cover subresources
    assert covers([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods/*"]}],
                  [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}])[0]
    assert covers([{"verbs": ["get"], "nonResourceURLs": ["/metrics*"]}],
                  [{"verbs": ["get"], "nonResourceURLs": ["/metrics/cadvisor"]}])[0]


def test_compact_string_as_upstream() -> None:
    assert compact_string({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}) == \
        '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}'
    assert compact_string({"verbs": ["get", "list"], "nonResourceURLs": ["/api"]}) == \
        '{NonResourceURLs:["/api"], Verbs:["get" "list"]}'
    merged = _compact([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                       {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}])
    assert merged == [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]


def test_forbidden_messages_as_upstream() -> None:
    sa = UserInfo("system:serviceaccount:default:default")
    e = forbidden(attrs("list", user=sa))
    assert e.code == 403 and e.message == (
        'pods is forbidden: User "system:serviceaccount:default:default" cannot list '
        'resource "pods" in API group "" in the namespace "default"')
    e = forbidden(attrs("get", "deployments", group="apps", ns="", name="d", user=sa))
    assert e.message == ('deployments.apps "d" is forbidden: User "system:serviceaccount:'
                         'default:default" cannot get resource "deployments" in API group '
                         '"apps" at the cluster scope')
    assert e.details == {"name": "d", "group": "apps", "kind": "deployments"}
    e = forbidden(Attributes(UserInfo("system:anonymous"), "get", resource_request=False,
                             path="/api/v1"))
    assert e.message == 'forbidden: User "system:anonymous" cannot get path "/api/v1"'
    e = forbidden(attrs("get", name="p", sub="log", user=sa), "no way")
    assert e.message.endswith('cannot get resource "pods/log" in API group "" in the '
                              'namespace "default": no way')


def test_parse_modes() -> None:
    assert parse_modes("Node,RBAC") == ["Node", "RBAC"]
    with pytest.raises(ValueError, match="not a valid mode"):
        parse_modes("RBAC,Magic")
    with pytest.raises(ValueError, match="more than once"):
        parse_modes("RBAC,RBAC")
    with pytest.raises(ValueError):
        parse_modes("")


class _Resource:
    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.rev = 0


class _Cache:
    def __init__(self) -> None:
        self.res: dict[str, _Resource] = {}

    def resource(self, prefix: str) -> _Resource:
        return self.res.setdefault(prefix, _Resource())

    def put(self, prefix: str, key: str, obj: dict) -> None:
        r = self.resource(prefix)
        r.objects[prefix + key] = obj
        r.rev += 1


PREFIXES = {p: f"/registry/{p}/" for p in ("roles", "rolebindings", "clusterroles",
                                            "clusterrolebindings")}


async def test_authorizer_bindings_and_reasons() -> None:
    cache = _Cache()
    rbac = RBACAuthorizer(cache, PREFIXES)  # type: ignore[arg-type]
    a = attrs("list", user=UserInfo("system:serviceaccount:default:bob",
                                    groups=("system:serviceaccounts", "system:authenticated")))
    assert (await rbac.authorize(a))[0] == Decision.NO_OPINION
    cache.put("/registry/clusterroles/", "view", {
        "metadata": {"name": "view"},
        "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]})
    cache.put("/registry/rolebindings/", "default/bob-view", {
        "metadata": {"name": "bob-view", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "bob"}]})
    decision, reason = await rbac.authorize(a)
    assert decision == Decision.ALLOW
    assert reason == ('RBAC: allowed by RoleBinding "bob-view/default" of ClusterRole "view" '
                      'to ServiceAccount "bob/default"')
    # only in its namespace; and not for other verbs
    assert (await rbac.authorize(attrs("list", ns="other", user=a.user)))[0] == Decision.NO_OPINION
    assert (await rbac.authorize(attrs("create", user=a.user)))[0] == Decision.NO_OPINION
    # groups, cluster-wide
    cache.put("/registry/clusterrolebindings/", "devs", {
        "metadata": {"name": "devs"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "view"},
        "subjects": [{"kind": "Group", "name": "devs"}]})
    decision, reason = await rbac.authorize(attrs("get", ns="x", name="p"))
    assert decision == Decision.ALLOW
    assert reason == 'RBAC: allowed by ClusterRoleBinding "devs" of ClusterRole "view" to Group "devs"'
    rules, non_resource, incomplete, _ = rbac.rules_for(JANE, "x")
    assert [r.as_dict() for r in rules] == [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]
    assert not non_resource and not incomplete
    # a binding to a missing role grants nothing
    cache.put("/registry/clusterrolebindings/", "ghost", {
        "metadata": {"name": "ghost"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "nope"},
        "subjects": [{"kind": "User", "name": "ghosty"}]})
    assert (await rbac.authorize(attrs("get", user=UserInfo("ghosty"))))[0] == Decision.NO_OPINION


async def test_union_and_privileged_groups() -> None:
    admin = UserInfo("root", groups=("system:masters",))
    chain = Union([PrivilegedGroups(), AlwaysDeny()])
    assert (await chain.authorize(attrs("delete", user=admin)))[0] == Decision.ALLOW
    assert await chain.authorize(attrs("get")) == (Decision.NO_OPINION, "Everything is forbidden.")
    assert (await Union([AlwaysAllow()]).authorize(attrs("get")))[0] == Decision.ALLOW


class _Only:
    """Allows exactly the impersonations listed."""

    def __init__(self, *allowed: tuple[str, str, str]) -> None:
        self.allowed = set(allowed)

    async def authorize(self, a: Attributes) -> tuple[Decision, str]:
        ok = a.verb == "impersonate" and (a.resource, a.namespace, a.name) in self.allowed
        return (Decision.ALLOW if ok else Decision.NO_OPINION), ""


async def test_impersonation_checks_each_part() -> None:
    admin = UserInfo("root")
    authz = _Only(("users", "", "jane"), ("groups", "", "devs"),
                  ("serviceaccounts", "kube-system", "bob"))
    user = await impersonate({"Impersonate-User": "jane", "Impersonate-Group": "devs"},
                             admin, authz)
    assert user.username == "jane" and user.groups == ("devs", "system:authenticated")
    with pytest.raises(Exception) as e:
        await impersonate({"Impersonate-User": "jane", "Impersonate-Group": "admins"},
                          admin, authz)
    assert getattr(e.value, "code", 0) == 403
    assert 'cannot impersonate resource "groups"' in str(e.value)
    sa = await impersonate({"Impersonate-User": "system:serviceaccount:kube-system:bob"},
                           admin, authz)
    assert sa.groups == ("system:serviceaccounts", "system:serviceaccounts:kube-system",
                         "system:authenticated")
    with pytest.raises(Exception) as e:
        await impersonate({"Impersonate-Group": "devs"}, admin, authz)
    assert getattr(e.value, "code", 0) == 500

"""Reconciliation of the RBAC bootstrap policy at API server start: creation, additive
repair of autoupdate objects, protected objects, bindings' roleRef changes, idempotence,
and several API servers on one storage."""
from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any, AsyncIterator

import pytest

from pyk8s.apiserver.app import APIServer, ServerConfig
from pyk8s.apiserver.authn import ADMIN
from pyk8s.apiserver.authz import bootstrappolicy as bp
from pyk8s.apiserver.authz import reconcile as rc
from pyk8s.apiserver.authz.reconcile import (Operation, reconcile_binding,
                                             reconcile_bootstrap_policy, reconcile_role)
from pyk8s.registry.store import DeleteOptions, ListOptions
from pyk8s.storage.memory import MemoryStorage

Obj = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"


def new_server(storage: MemoryStorage) -> APIServer:
    return APIServer(storage, ServerConfig(compaction_interval=0, kubernetes_service=False))


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    s = new_server(MemoryStorage())
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def store(s: APIServer, plural: str) -> Any:
    info = s.catalogue.lookup(RBAC, "v1", plural)
    assert info is not None
    return s.store(info)


async def names(s: APIServer, plural: str, namespace: str | None = None) -> set[str]:
    res = await store(s, plural).list(namespace, ListOptions())
    return {o["metadata"]["name"] for o in res.items}


async def edit(s: APIServer, plural: str, name: str, fn: Any, namespace: str | None = None
               ) -> Obj:
    def mutate(obj: Obj) -> Obj:
        fn(obj)
        return obj
    obj, _, _ = await store(s, plural).update(namespace, name, mutate, user=ADMIN)
    await s.cache.consistent_rev()
    return obj


# -- the pure part -----------------------------------------------------------------------------
def test_missing_rules_are_appended_as_atomic_rules() -> None:
    expected = bp.cluster_role("r", [bp.rule(("get", "list"), ("",), ("pods", "services"))])
    existing = bp.cluster_role("r", [bp.rule(("get", "list"), ("",), ("pods",)),
                                     bp.rule(("get",), ("",), ("services",)),
                                     bp.rule(("delete",), ("apps",), ("deployments",))])
    result = reconcile_role(existing, expected)
    assert result.operation is Operation.UPDATE
    assert result.missing_rules == [{"verbs": ["list"], "apiGroups": [""],
                                     "resources": ["services"]}]
    # Nothing the user added goes away.
    assert result.role["rules"] == existing["rules"] + result.missing_rules
    assert reconcile_role(result.role, expected).operation is Operation.NONE


def test_wildcards_cover_expected_rules() -> None:
    expected = bp.cluster_role("r", [bp.rule(("get",), ("",), ("pods/status",)),
                                     bp.url_rule(("get",), ("/healthz/ready",))])
    existing = bp.cluster_role("r", [bp.rule(("*",), ("*",), ("*/status",)),
                                     bp.url_rule(("get",), ("/healthz/*",))])
    assert reconcile_role(existing, expected).operation is Operation.NONE


def test_metadata_is_merged_with_existing_values_winning() -> None:
    expected = bp.cluster_role("r", [])
    existing = copy.deepcopy(expected)
    existing["metadata"]["labels"] = {"team": "a", bp.BOOTSTRAP_LABEL: "mine"}
    existing["metadata"]["annotations"] = {"note": "x"}
    result = reconcile_role(existing, expected)
    assert result.operation is Operation.UPDATE
    assert result.role["metadata"]["labels"] == {"team": "a", bp.BOOTSTRAP_LABEL: "mine"}
    assert result.role["metadata"]["annotations"] == {
        "note": "x", bp.AUTOUPDATE_ANNOTATION: "true"}


def test_aggregation_selectors_are_added_and_kept() -> None:
    expected = bp.cluster_role("admin", [], aggregate_from="admin")
    existing = copy.deepcopy(expected)
    custom = {"matchLabels": {"example.com/aggregate-to-admin": "true"}}
    existing["aggregationRule"]["clusterRoleSelectors"] = [custom]
    existing["rules"] = [bp.rule(("get",), ("",), ("pods",))]   # the controller's
    result = reconcile_role(existing, expected)
    assert result.operation is Operation.UPDATE
    assert result.role["aggregationRule"]["clusterRoleSelectors"] == [
        custom, {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]
    assert result.role["rules"] == existing["rules"]
    # An aggregated role not expected to aggregate loses its aggregation.
    plain = bp.cluster_role("admin", [])
    assert "aggregationRule" not in reconcile_role(result.role, plain).role


def test_bindings_get_missing_subjects_or_are_recreated() -> None:
    expected = bp.cluster_role_binding("r", [bp.group("g1"), bp.user("u1")])
    existing = bp.cluster_role_binding("r", [bp.user("u1"), bp.user("mine")])
    result = reconcile_binding(existing, expected)
    assert result.operation is Operation.UPDATE
    assert result.binding["subjects"] == [bp.user("u1"), bp.user("mine"), bp.group("g1")]
    moved = copy.deepcopy(existing)
    moved["roleRef"]["name"] = "other"
    result = reconcile_binding(moved, expected)
    assert result.operation is Operation.RECREATE and result.binding == expected
    protected = copy.deepcopy(moved)
    protected["metadata"]["annotations"][bp.AUTOUPDATE_ANNOTATION] = "false"
    assert reconcile_binding(protected, expected).protected


# -- through the stores ------------------------------------------------------------------------
async def test_start_creates_the_whole_policy(server: APIServer) -> None:
    policy = bp.bootstrap_policy()
    assert await names(server, "clusterroles") == \
        {r["metadata"]["name"] for r in policy.cluster_roles}
    assert await names(server, "clusterrolebindings") == \
        {b["metadata"]["name"] for b in policy.cluster_role_bindings}
    for ns, roles in policy.roles.items():
        assert await names(server, "roles", ns) == {r["metadata"]["name"] for r in roles}
    for ns, bindings in policy.role_bindings.items():
        assert await names(server, "rolebindings", ns) == \
            {b["metadata"]["name"] for b in bindings}
    view = await store(server, "clusterroles").get(None, "system:aggregate-to-view")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert view["metadata"]["annotations"][bp.AUTOUPDATE_ANNOTATION] == "true"
    assert view["metadata"]["managedFields"][0]["manager"] == "kube-apiserver"


async def test_a_second_start_writes_nothing() -> None:
    storage = MemoryStorage()
    first = new_server(storage)
    await first.start()
    try:
        rev = await storage.current_revision()
        second = new_server(storage)
        await second.start()
        assert await storage.current_revision() == rev
        await reconcile_bootstrap_policy(first)
        assert await storage.current_revision() == rev
        await second.stop()
    finally:
        await first.stop()


async def test_two_servers_starting_at_once_on_one_storage(
        caplog: pytest.LogCaptureFixture) -> None:
    storage = MemoryStorage()
    a, b = new_server(storage), new_server(storage)
    with caplog.at_level(logging.WARNING, logger="pyk8s.apiserver"):
        await asyncio.gather(a.start(), b.start())
    try:
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert await names(a, "clusterroles") == await names(b, "clusterroles") == \
            {r["metadata"]["name"] for r in bp.bootstrap_policy().cluster_roles}
        rev = await storage.current_revision()
        await asyncio.gather(reconcile_bootstrap_policy(a), reconcile_bootstrap_policy(b))
        assert await storage.current_revision() == rev
    finally:
        await b.stop()
        await a.stop()


async def test_removed_rules_labels_and_objects_come_back_user_additions_stay(
        server: APIServer) -> None:
    extra = bp.rule(("get",), ("example.com",), ("widgets",))

    def damage(role: Obj) -> None:
        role["rules"] = [extra]
        del role["metadata"]["labels"][bp.BOOTSTRAP_LABEL]
        role["metadata"]["labels"]["team"] = "a"
    await edit(server, "clusterroles", "system:basic-user", damage)
    await store(server, "clusterroles").delete(None, "system:discovery", DeleteOptions(),
                                               user=ADMIN)
    await server.cache.consistent_rev()
    await reconcile_bootstrap_policy(server)
    basic = await store(server, "clusterroles").get(None, "system:basic-user")
    assert basic["rules"][0] == extra
    assert basic["rules"][1:] == [
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
         "resources": ["selfsubjectaccessreviews"]},
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
         "resources": ["selfsubjectrulesreviews"]},
        {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
         "resources": ["selfsubjectreviews"]}]
    assert basic["metadata"]["labels"] == {"team": "a", bp.BOOTSTRAP_LABEL: "rbac-defaults"}
    discovery = await store(server, "clusterroles").get(None, "system:discovery")
    expected = next(r for r in bp.cluster_roles()
                    if r["metadata"]["name"] == "system:discovery")
    assert discovery["rules"] == expected["rules"]
    assert discovery["metadata"]["labels"] == expected["metadata"]["labels"]


async def test_protected_objects_are_left_alone(server: APIServer) -> None:
    def protect(obj: Obj) -> None:
        obj["metadata"]["annotations"][bp.AUTOUPDATE_ANNOTATION] = "false"
        obj["rules"] = []
    before = await edit(server, "clusterroles", "system:basic-user", protect)

    def protect_binding(obj: Obj) -> None:
        obj["metadata"]["annotations"][bp.AUTOUPDATE_ANNOTATION] = "false"
        obj["subjects"] = []
    before_binding = await edit(server, "clusterrolebindings", "system:basic-user",
                                protect_binding)
    rev = await server.storage.current_revision()
    await reconcile_bootstrap_policy(server)
    assert await server.storage.current_revision() == rev
    after = await store(server, "clusterroles").get(None, "system:basic-user")
    assert after["rules"] == [] and after == before
    binding = await store(server, "clusterrolebindings").get(None, "system:basic-user")
    assert binding == before_binding


async def test_subjects_come_back_and_a_changed_role_ref_is_recreated(
        server: APIServer) -> None:
    mine = bp.user("alice")
    await edit(server, "clusterrolebindings", "system:discovery",
               lambda b: b.__setitem__("subjects", [mine]))
    crb = store(server, "clusterrolebindings")
    old = await crb.get(None, "system:basic-user")
    await crb.delete(None, "system:basic-user", DeleteOptions(), user=ADMIN)
    wrong = bp.cluster_role_binding("view", [bp.user("bob")], name="system:basic-user")
    await crb.create(None, wrong, user=ADMIN)
    # A namespaced binding too.
    await edit(server, "rolebindings", "system::leader-locking-kube-scheduler",
               lambda b: b.__setitem__("subjects", []), namespace="kube-system")
    await server.cache.consistent_rev()
    await reconcile_bootstrap_policy(server)
    discovery = await crb.get(None, "system:discovery")
    assert discovery["subjects"] == [mine, bp.group("system:authenticated")]
    basic = await crb.get(None, "system:basic-user")
    assert basic["roleRef"]["name"] == "system:basic-user"
    assert basic["subjects"] == [bp.group("system:authenticated")]
    assert basic["metadata"]["uid"] != old["metadata"]["uid"]
    lock = await store(server, "rolebindings").get("kube-system",
                                                   "system::leader-locking-kube-scheduler")
    assert [s["name"] for s in lock["subjects"]] == ["system:kube-scheduler", "kube-scheduler"]


async def test_a_stale_read_conflicts_and_is_retried(server: APIServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cr = store(server, "clusterroles")
    await edit(server, "clusterroles", "system:basic-user", lambda r: r.__setitem__("rules", []))
    stale = await cr.get(None, "system:basic-user")
    extra = bp.rule(("get",), ("example.com",), ("widgets",))
    await edit(server, "clusterroles", "system:basic-user",
               lambda r: r.__setitem__("rules", [extra]))
    real_cached = rc._Reconciler._cached

    def cached(self: Any, st: Any, ns: Any, name: str) -> Obj | None:
        return stale if name == "system:basic-user" else real_cached(self, st, ns, name)
    monkeypatch.setattr(rc._Reconciler, "_cached", cached)
    await reconcile_bootstrap_policy(server)
    basic = await cr.get(None, "system:basic-user")
    assert basic["rules"][0] == extra and len(basic["rules"]) == 4


async def test_a_missing_namespace_is_created_for_its_roles(server: APIServer) -> None:
    policy = bp.Policy([], [], {"team-a": [bp.role("team-a", "reader", [
        bp.rule(bp.READ, ("",), ("pods",))])]}, {})
    await reconcile_bootstrap_policy(server, policy)
    assert await names(server, "roles", "team-a") == {"reader"}

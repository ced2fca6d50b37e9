"""The ClusterRole aggregation controller's sync against a FakeClient."""
from __future__ import annotations

from typing import Any

import pytest

from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.client.rest import Conflict
from pyk8s.controllers.clusterroleaggregation import (ClusterRoleAggregationController,
                                                      aggregated_rules)

Obj = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"
PATH = f"/apis/{RBAC}/v1/clusterroles"
TO = "rbac.authorization.k8s.io/aggregate-to-"


def rule(verbs: list[str], resources: list[str], group: str = "") -> Obj:
    return {"verbs": verbs, "apiGroups": [group], "resources": resources}


def role(name: str, rules: list[Obj] | None = None, *, labels: dict[str, str] | None = None,
         aggregate: list[dict[str, str]] | None = None) -> Obj:
    out: Obj = {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole",
                "metadata": {"name": name, "labels": labels or {}}}
    if rules is not None:
        out["rules"] = rules
    if aggregate is not None:
        out["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": m}
                                                           for m in aggregate]}
    return out


class Harness:
    def __init__(self) -> None:
        self.client = FakeClient()
        self.ctrl = ClusterRoleAggregationController(
            self.client, SharedInformerFactory(self.client))  # type: ignore[arg-type]

    def seed(self, *roles: Obj) -> None:
        for r in roles:
            self.client.seed(PATH, r)
        self.observe()

    def observe(self) -> None:
        """What the informer would deliver: the fake's cluster roles into its store."""
        store = self.ctrl.informer.store
        for obj in self.client.stored(RBAC, "clusterroles"):
            if store.add(obj) is None:
                self.ctrl.informer._dispatch_add(obj)

    def get(self, name: str) -> Obj:
        return self.client.objects[(RBAC, "clusterroles", "", name)]

    def updates(self) -> list[str]:
        return [a.name for a in self.client.by_verb("update", "clusterroles")]


async def test_view_gets_the_union_of_the_labelled_roles_in_name_order() -> None:
    h = Harness()
    h.seed(role("view", [], aggregate=[{TO + "view": "true"}]),
           role("z-crd-viewer", [rule(["get", "list"], ["widgets"], "example.com")],
                labels={TO + "view": "true"}),
           role("a-pods", [rule(["get"], ["pods"]), rule(["list"], ["pods"])],
                labels={TO + "view": "true"}),
           role("b-dup", [rule(["get"], ["pods"])], labels={TO + "view": "true"}),
           role("unrelated", [rule(["delete"], ["pods"])], labels={TO + "edit": "true"}))
    await h.ctrl.sync("view")
    assert h.updates() == ["view"]
    assert h.get("view")["rules"] == [rule(["get"], ["pods"]), rule(["list"], ["pods"]),
                                      rule(["get", "list"], ["widgets"], "example.com")]
    # Written once: the next sync with the informer's new copy finds nothing to do.
    h.ctrl.informer.store.add(h.get("view"))
    await h.ctrl.sync("view")
    assert h.updates() == ["view"]


async def test_selectors_in_order_dedup_across_them_and_skip_itself() -> None:
    h = Harness()
    h.seed(role("agg", [rule(["stale"], ["x"])], labels={"a": "1"},
                aggregate=[{"b": "1"}, {"a": "1"}]),
           role("one", [rule(["get"], ["configmaps"])], labels={"a": "1"}),
           role("two", [rule(["get"], ["secrets"]), rule(["get"], ["configmaps"])],
                labels={"b": "1", "a": "1"}))
    await h.ctrl.sync("agg")
    # Selector b first (two), then selector a (one, two); agg itself matches a: skipped.
    assert h.get("agg")["rules"] == [rule(["get"], ["secrets"]), rule(["get"], ["configmaps"])]


async def test_nothing_is_written_when_the_rules_are_the_same() -> None:
    h = Harness()
    same = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": []}
    h.seed(role("view", [same], aggregate=[{TO + "view": "true"}]),
           role("pods", [rule(["get"], ["pods"])], labels={TO + "view": "true"}),
           role("empty-agg", None, aggregate=[{"nothing": "matches"}]),
           role("plain", [rule(["get"], ["nodes"])]))
    for name in ("view", "empty-agg", "plain", "gone"):
        await h.ctrl.sync(name)
    assert h.updates() == []


async def test_rules_removed_from_a_source_role_leave_the_aggregate() -> None:
    h = Harness()
    h.seed(role("edit", [rule(["get"], ["pods"]), rule(["delete"], ["pods"])],
                aggregate=[{TO + "edit": "true"}]),
           role("src", [rule(["get"], ["pods"])], labels={TO + "edit": "true"}))
    await h.ctrl.sync("edit")
    assert h.get("edit")["rules"] == [rule(["get"], ["pods"])]


async def test_aggregates_chain_view_into_edit_into_admin() -> None:
    h = Harness()
    h.seed(role("admin", [], aggregate=[{TO + "admin": "true"}]),
           role("edit", [], labels={TO + "admin": "true"}, aggregate=[{TO + "edit": "true"}]),
           role("view", [], labels={TO + "edit": "true"}, aggregate=[{TO + "view": "true"}]),
           role("v", [rule(["get"], ["pods"])], labels={TO + "view": "true"}),
           role("e", [rule(["create"], ["pods"])], labels={TO + "edit": "true"}))
    for name in ("view", "edit", "admin"):
        h.observe()
        h.ctrl.informer.store.add(h.get(name))
        await h.ctrl.sync(name)
        h.ctrl.informer.store.add(h.get(name))
    assert h.get("view")["rules"] == [rule(["get"], ["pods"])]
    assert h.get("edit")["rules"] == [rule(["create"], ["pods"]), rule(["get"], ["pods"])]
    assert h.get("admin")["rules"] == [rule(["create"], ["pods"]), rule(["get"], ["pods"])]


async def test_any_cluster_role_event_queues_every_aggregating_role() -> None:
    h = Harness()
    h.seed(role("admin", [], aggregate=[{TO + "admin": "true"}]),
           role("view", [], aggregate=[{TO + "view": "true"}]),
           role("plain", [rule(["get"], ["pods"])]))
    queued = [await h.ctrl.queue.get() for _ in range(len(h.ctrl.queue))]
    assert sorted(queued) == ["admin", "view"]


async def test_a_conflict_fails_the_sync_for_a_retry() -> None:
    h = Harness()
    h.seed(role("view", [], aggregate=[{TO + "view": "true"}]),
           role("src", [rule(["get"], ["pods"])], labels={TO + "view": "true"}))
    h.client.fail("update", "clusterroles", Conflict(409, "Conflict", "modified"))
    with pytest.raises(Conflict):
        await h.ctrl.sync("view")
    await h.ctrl.sync("view")
    assert h.get("view")["rules"] == [rule(["get"], ["pods"])]


def test_aggregated_rules_of_the_bootstrap_roles() -> None:
    from pyk8s.apiserver.authz import bootstrappolicy as bp
    roles = bp.cluster_roles()
    by_name = {r["metadata"]["name"]: r for r in roles}
    view = aggregated_rules(by_name["view"], roles)
    assert view == by_name["system:aggregate-to-view"]["rules"]
    assert not any("secrets" in r.get("resources", []) for r in view)

"""The ClusterRole aggregation controller (upstream's pkg/controller/clusterroleaggregation):
a ClusterRole with an `aggregationRule` gets as its rules the union of the rules of the
ClusterRoles its `clusterRoleSelectors` match (itself excluded), deduplicated, in a stable
order: selector by selector, matched roles by name, their rules in order. Written (a PUT
with the field manager `clusterrole-aggregation-controller`) only when that changes.

Any ClusterRole change may change any aggregation, so every event queues every ClusterRole
that has an aggregationRule, as upstream does.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from pyk8s.api.selectors import label_selector_from_dict
from pyk8s.client.informer import SharedInformerFactory, handler_funcs
from pyk8s.client.workqueue import WorkQueue, run_workers

log = logging.getLogger("pyk8s.controllers.clusterroleaggregation")

Obj = dict[str, Any]

RBAC_GROUP = "rbac.authorization.k8s.io"
CLUSTERROLES_PATH = f"/apis/{RBAC_GROUP}/v1/clusterroles"
FIELD_MANAGER = "clusterrole-aggregation-controller"


def _rule_key(rule: Obj) -> Obj:
    """A rule without its empty fields: nil and empty lists are the same rule (upstream
    compares with equality.Semantic)."""
    return {k: v for k, v in rule.items() if v not in (None, [], "")}


def aggregated_rules(role: Obj, cluster_roles: list[Obj]) -> list[Obj]:
    """The rules `role`'s aggregationRule gathers from `cluster_roles`."""
    name = (role.get("metadata") or {}).get("name")
    by_name = sorted(cluster_roles, key=lambda r: (r.get("metadata") or {}).get("name") or "")
    rules: list[Obj] = []
    seen: list[Obj] = []
    for sel in (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
        selector = label_selector_from_dict(sel)
        for other in by_name:
            md = other.get("metadata") or {}
            if md.get("name") == name or not selector.matches(md.get("labels") or {}):
                continue
            for rule in other.get("rules") or []:
                key = _rule_key(rule)
                if key not in seen:
                    seen.append(key)
                    rules.append(copy.deepcopy(rule))
    return rules


def same_rules(a: list[Obj] | None, b: list[Obj] | None) -> bool:
    return [_rule_key(r) for r in a or []] == [_rule_key(r) for r in b or []]


class ClusterRoleAggregationController:
    def __init__(self, client: Any, factory: SharedInformerFactory, *,
                 workers: int = 5) -> None:
        self.client = client
        self.workers = workers
        self.queue: WorkQueue[str] = WorkQueue("clusterrole-aggregation")
        self.informer = factory.informer(RBAC_GROUP, "v1", "clusterroles", namespaced=False)
        self._handler = handler_funcs(on_add=lambda _obj: self.enqueue(),
                                      on_update=lambda _old, _new: self.enqueue(),
                                      on_delete=lambda _obj: self.enqueue())
        self.informer.add_event_handler(self._handler)

    def enqueue(self) -> None:
        """Queue every ClusterRole that aggregates."""
        for role in self.informer.store.list():
            if role.get("aggregationRule") is not None:
                self.queue.add(role["metadata"]["name"])

    async def run(self) -> None:
        try:
            await self.informer.synced.wait()
            log.info("clusterrole-aggregation controller: synced")
            await run_workers(self.queue, self.sync, self.workers,
                              name="clusterrole-aggregation")
        finally:
            self.queue.shutdown()
            self.informer.remove_event_handler(self._handler)

    async def sync(self, name: str) -> None:
        role = self.informer.store.get(name)
        if role is None or role.get("aggregationRule") is None:
            return
        rules = aggregated_rules(role, self.informer.store.list())
        if same_rules(rules, role.get("rules")):
            return
        body = copy.deepcopy(role)
        body["rules"] = rules
        # The informer's resourceVersion: a concurrent change is a Conflict, retried with
        # the newer copy the informer will have by then.
        await self.client.update(f"{CLUSTERROLES_PATH}/{name}", body,
                                 params={"fieldManager": FIELD_MANAGER})
        log.debug("clusterrole %s: %d aggregated rules", name, len(rules))


__all__ = ["ClusterRoleAggregationController", "aggregated_rules"]

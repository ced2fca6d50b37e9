"""NodeUnschedulable: nodes with spec.unschedulable fit only pods tolerating the
`node.kubernetes.io/unschedulable:NoSchedule` taint."""
from __future__ import annotations

from pyk8s.scheduler.framework import (SKIP_STATUS, CycleState, NodeInfo, Plugin, PodInfo,
                                       Status, unresolvable)

TAINT_KEY = "node.kubernetes.io/unschedulable"
REASON = "node(s) were unschedulable"


def tolerates_unschedulable(pod: PodInfo) -> bool:
    for t in pod.tolerations:
        eff = t.get("effect") or ""
        if eff and eff != "NoSchedule":
            continue
        if t.get("operator") == "Exists" and not t.get("key"):
            return True
        if t.get("key") == TAINT_KEY and (t.get("operator") == "Exists" or
                                          (t.get("value") or "") == ""):
            return True
    return False


class NodeUnschedulable(Plugin):
    name = "NodeUnschedulable"
    has_filter = True

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        # pyk8s: no unschedulable node in the cache → nothing to check (same verdicts).
        cache = getattr(state.get("snapshot"), "cache", None)
        if cache is not None and cache.nodes_unschedulable == 0:
            return SKIP_STATUS
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.unschedulable and not tolerates_unschedulable(pod):
            return unresolvable(REASON, self.name)
        return None

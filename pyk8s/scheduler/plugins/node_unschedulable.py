"""NodeUnschedulable: nodes with spec.unschedulable fit only pods tolerating the
`node.kubernetes.io/unschedulable:NoSchedule` taint."""
from __future__ import annotations

from pyk8s.scheduler.framework import CycleState, NodeInfo, Plugin, PodInfo, Status, unresolvable

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

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.unschedulable and not tolerates_unschedulable(pod):
            return unresolvable(REASON, self.name)
        return None

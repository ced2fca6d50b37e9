"""NodeName: a pod naming a node in spec.nodeName fits that node only."""
from __future__ import annotations

from pyk8s.scheduler.framework import (SKIP_STATUS, CycleState, NodeInfo, Plugin, PodInfo,
                                       Status, unresolvable)

REASON = "node(s) didn't match the requested node name"


class NodeName(Plugin):
    name = "NodeName"
    has_filter = True

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        return None if pod.node_name else SKIP_STATUS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if pod.node_name and pod.node_name != node.name:
            return unresolvable(REASON, self.name)
        return None

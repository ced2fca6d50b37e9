"""NodePorts: a pod's hostPorts must be free on the node (0.0.0.0 conflicts with all IPs)."""
from __future__ import annotations

from pyk8s.scheduler.framework import (SKIP_STATUS, CycleState, NodeInfo, Plugin, PodInfo,
                                       Status, unschedulable)

REASON = "node(s) didn't have free ports for the requested pod ports"


def port_conflict(used: dict[tuple[str, str, int], int], want: tuple[str, str, int]) -> bool:
    ip, proto, port = want
    for (uip, uproto, uport) in used:
        if uport == port and uproto == proto and (
                ip == uip or ip == "0.0.0.0" or uip == "0.0.0.0"):
            return True
    return False


class NodePorts(Plugin):
    name = "NodePorts"
    has_filter = True

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        return None if pod.ports else SKIP_STATUS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.used_ports:
            for p in pod.ports:
                if port_conflict(node.used_ports, p):
                    return unschedulable(REASON, self.name)
        return None

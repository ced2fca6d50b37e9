"""NodeResourcesBalancedAllocation: favours nodes whose cpu and memory fractions would be
close to each other (score = (1 - standard deviation) × 100)."""
from __future__ import annotations

import math

from pyk8s.scheduler.framework import MAX_NODE_SCORE, CycleState, NodeInfo, Plugin, PodInfo


def balanced_score(fractions: list[float]) -> int:
    if len(fractions) == 2:
        std = abs(fractions[0] - fractions[1]) / 2
    elif fractions:
        mean = sum(fractions) / len(fractions)
        std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
    else:
        std = 0.0
    return int((1 - std) * MAX_NODE_SCORE)


class NodeResourcesBalancedAllocation(Plugin):
    name = "NodeResourcesBalancedAllocation"
    has_score = True

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        a = node.allocatable
        fr = []
        if a.milli_cpu:
            fr.append(min(1.0, (node.non_zero_cpu + pod.non_zero[0]) / a.milli_cpu))
        if a.memory:
            fr.append(min(1.0, (node.non_zero_mem + pod.non_zero[1]) / a.memory))
        return balanced_score(fr)

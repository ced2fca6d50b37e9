"""NodeResourcesFit: Filter (requests against allocatable, pod count) and Score
(LeastAllocated, the default, or MostAllocated; cpu and memory weighted 1 each by default,
using the non-zero requests as upstream)."""
from __future__ import annotations

from pyk8s.scheduler.framework import (MAX_NODE_SCORE, CycleState, NodeInfo, Plugin, PodInfo,
                                       Status)

LEAST, MOST = "LeastAllocated", "MostAllocated"


def insufficient(pod: PodInfo, node: NodeInfo) -> list[str]:
    """The resources the node lacks for the pod (upstream's fitsRequest reasons)."""
    out: list[str] = []
    alloc, used, req = node.allocatable, node.requested, pod.requests
    if len(node.pods) + 1 > alloc.pods:
        out.append("Too many pods")
    if req.milli_cpu and req.milli_cpu > alloc.milli_cpu - used.milli_cpu:
        out.append("Insufficient cpu")
    if req.memory and req.memory > alloc.memory - used.memory:
        out.append("Insufficient memory")
    if req.ephemeral and req.ephemeral > alloc.ephemeral - used.ephemeral:
        out.append("Insufficient ephemeral-storage")
    for k, v in req.scalar.items():
        if v and v > alloc.scalar.get(k, 0) - used.scalar.get(k, 0):
            out.append(f"Insufficient {k}")
    return out


def least_allocated(requested: int, capacity: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def most_allocated(requested: int, capacity: int) -> int:
    if capacity == 0:
        return 0
    if requested > capacity:
        requested = capacity
    return requested * MAX_NODE_SCORE // capacity


class NodeResourcesFit(Plugin):
    name = "NodeResourcesFit"
    has_filter = True
    has_score = True

    def __init__(self, args: dict | None = None) -> None:
        super().__init__(args)
        strategy = (self.args.get("scoringStrategy") or {})
        self.strategy = strategy.get("type") or LEAST
        res = strategy.get("resources") or [{"name": "cpu", "weight": 1},
                                            {"name": "memory", "weight": 1}]
        self.resources = [(r["name"], int(r.get("weight") or 1)) for r in res]
        self._fn = most_allocated if self.strategy == MOST else least_allocated
        self._cache: dict[tuple[str, ...], Status] = {}

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        alloc, used, req = node.allocatable, node.requested, pod.requests
        # Fast path: the common resources only.
        if (len(node.pods) < alloc.pods and req.milli_cpu <= alloc.milli_cpu - used.milli_cpu
                and req.memory <= alloc.memory - used.memory
                and req.ephemeral <= alloc.ephemeral - used.ephemeral and not req.scalar):
            return None
        reasons = tuple(insufficient(pod, node))
        if not reasons:
            return None
        st = self._cache.get(reasons)
        if st is None:
            st = self._cache[reasons] = Status(2, *reasons, plugin=self.name)
        return st

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        fn = self._fn
        total = wsum = 0
        for name, w in self.resources:
            if name == "cpu":
                req, cap = node.non_zero_cpu + pod.non_zero[0], node.allocatable.milli_cpu
            elif name == "memory":
                req, cap = node.non_zero_mem + pod.non_zero[1], node.allocatable.memory
            else:
                cap = node.allocatable.get(name)
                req = node.requested.get(name) + pod.requests.get(name)
                if cap == 0:
                    continue
            total += fn(req, cap) * w
            wsum += w
        return total // wsum if wsum else 0

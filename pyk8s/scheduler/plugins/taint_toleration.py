"""TaintToleration: Filter on NoSchedule / NoExecute taints the pod does not tolerate;
Score by the number of intolerable PreferNoSchedule taints (fewer is better)."""
from __future__ import annotations

from pyk8s.api.scheduling import find_untolerated_taint, tolerations_tolerate_taint
from pyk8s.scheduler.framework import (SKIP_STATUS, CycleState, NodeInfo, Plugin, PodInfo, Status,
                                       default_normalize, unresolvable)


tolerated = tolerations_tolerate_taint  # the kubelet's admission uses it


def taint_string(taint: dict) -> str:
    v = taint.get("value") or ""
    return f"{{{taint.get('key')}: {v}}}" if v else f"{{{taint.get('key')}: }}"


class TaintToleration(Plugin):
    name = "TaintToleration"
    has_filter = True
    has_score = True

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        # pyk8s: no tainted node in the cache → nothing to check (same verdicts).
        cache = getattr(state.get("snapshot"), "cache", None)
        if cache is not None and cache.nodes_with_taints == 0:
            return SKIP_STATUS
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.taints:
            return None
        taint = find_untolerated_taint(node.taints, pod.tolerations, ("NoSchedule", "NoExecute"))
        if taint is not None:
            return unresolvable(f"node(s) had untolerated taint {taint_string(taint)}", self.name)
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> bool:
        cache = getattr(state.get("snapshot"), "cache", None)
        if cache is not None and cache.nodes_with_taints == 0:
            return False  # every node scores 0 → 100 after normalization: no ranking
        state["tt.prefer"] = [t for t in pod.tolerations
                              if not t.get("effect") or t.get("effect") == "PreferNoSchedule"]
        return True

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        if not node.taints:
            return 0
        tols = state.get("tt.prefer", pod.tolerations)
        return sum(1 for t in node.taints if t.get("effect") == "PreferNoSchedule"
                   and not tolerated(tols, t))

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        default_normalize(scores, reverse=True)

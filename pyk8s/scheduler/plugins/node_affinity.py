"""NodeAffinity: Filter on spec.nodeSelector and required node affinity; Score by the
weights of the preferred terms a node matches."""
from __future__ import annotations

from typing import Any

from pyk8s.api.scheduling import (node_selector_term_matches, required_node_affinity_matches,
                                  required_node_selector_terms)
from pyk8s.scheduler.framework import (SKIP_STATUS, CycleState, NodeInfo, Plugin, PodInfo,
                                       Status, default_normalize, unresolvable)

REASON = "node(s) didn't match Pod's node affinity/selector"


def match_term(term: dict, node: NodeInfo) -> bool:
    """A NodeSelectorTerm: all its expressions and fields match (an empty term matches none)."""
    return node_selector_term_matches(term, node.labels, node.name)


def required_terms(pod: PodInfo) -> list[dict] | None:
    return required_node_selector_terms(pod.spec)


def pod_matches_node(pod: PodInfo, node: NodeInfo) -> bool:
    """nodeSelector and required node affinity (upstream's GetRequiredNodeAffinity.Match)."""
    return required_node_affinity_matches(pod.spec, node.labels, node.name)


class NodeAffinity(Plugin):
    name = "NodeAffinity"
    has_filter = True
    has_score = True

    def __init__(self, args: dict[str, Any] | None = None) -> None:
        super().__init__(args)
        self.added = (self.args.get("addedAffinity") or {})

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        if not pod.spec.get("nodeSelector") and required_terms(pod) is None:
            return SKIP_STATUS
        terms = required_terms(pod)
        if terms is not None and not terms:
            return unresolvable(REASON, self.name)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if pod_matches_node(pod, node):
            return None
        return unresolvable(REASON, self.name)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> bool:
        na = ((pod.spec.get("affinity") or {}).get("nodeAffinity") or {})
        pref = na.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        state["na.pref"] = [(int(p.get("weight") or 0), p.get("preference") or {}) for p in pref]
        return bool(pref)

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return sum(w for w, term in state["na.pref"] if w and match_term(term, node))

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        default_normalize(scores)

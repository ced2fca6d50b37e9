"""NodeAffinity: Filter on spec.nodeSelector and required node affinity; Score by the
weights of the preferred terms a node matches."""
from __future__ import annotations

from typing import Any

from pyk8s.scheduler.framework import (SKIP_STATUS, CycleState, NodeInfo, Plugin, PodInfo,
                                       Status, default_normalize, unresolvable)

REASON = "node(s) didn't match Pod's node affinity/selector"


def _int(v: str) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def match_expression(expr: dict, labels: dict, fields: dict | None = None) -> bool:
    key, op = expr.get("key"), expr.get("operator")
    values = expr.get("values") or []
    src = labels if fields is None else fields
    has = key in src
    v = src.get(key)
    if op == "In":
        return has and v in values
    if op == "NotIn":
        return not has or v not in values
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt"):
        if not has or len(values) != 1:
            return False
        a, b = _int(v), _int(values[0])
        if a is None or b is None:
            return False
        return a > b if op == "Gt" else a < b
    return False


def match_term(term: dict, node: NodeInfo) -> bool:
    """A NodeSelectorTerm: all its expressions and fields match (an empty term matches none)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    for e in exprs:
        if not match_expression(e, node.labels):
            return False
    for f in fields:
        if not match_expression(f, {}, {"metadata.name": node.name}):
            return False
    return True


def required_terms(pod: PodInfo) -> list[dict] | None:
    na = ((pod.spec.get("affinity") or {}).get("nodeAffinity") or {})
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if req is None:
        return None
    return req.get("nodeSelectorTerms") or []


def pod_matches_node(pod: PodInfo, node: NodeInfo) -> bool:
    """nodeSelector and required node affinity (upstream's GetRequiredNodeAffinity.Match)."""
    sel = pod.spec.get("nodeSelector")
    if sel:
        for k, v in sel.items():
            if node.labels.get(k) != v:
                return False
    terms = required_terms(pod)
    if terms is not None:
        return any(match_term(t, node) for t in terms)
    return True


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

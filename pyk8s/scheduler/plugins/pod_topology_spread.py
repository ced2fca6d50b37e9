"""PodTopologySpread: Filter on DoNotSchedule constraints (skew against the least loaded
domain, minDomains), Score on ScheduleAnyway constraints (fewer matching pods in the
node's domains is better, weighted by log(domains + 2))."""
from __future__ import annotations

import math

from pyk8s.api.selectors import label_selector_from_dict
from pyk8s.scheduler.framework import (MAX_NODE_SCORE, SKIP_STATUS, CycleState, NodeInfo,
                                       Plugin, PodInfo, Status, unresolvable, unschedulable)
from pyk8s.scheduler.plugins.node_affinity import pod_matches_node

ERR_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
ERR_CONSTRAINTS = "node(s) didn't match pod topology spread constraints"


class Constraint:
    __slots__ = ("max_skew", "key", "selector", "min_domains", "self_match")

    def __init__(self, c: dict, pod: PodInfo) -> None:
        self.max_skew = int(c.get("maxSkew") or 1)
        self.key = c.get("topologyKey") or ""
        sel = dict(c.get("labelSelector") or {})
        keys = c.get("matchLabelKeys") or []
        if keys:
            ml = dict(sel.get("matchLabels") or {})
            for k in keys:
                if k in pod.labels:
                    ml[k] = pod.labels[k]
            sel["matchLabels"] = ml
        self.selector = label_selector_from_dict(sel) if c.get("labelSelector") is not None \
            else None
        self.min_domains = int(c.get("minDomains") or 1)
        self.self_match = 1 if (self.selector is not None and
                                self.selector.matches(pod.labels)) else 0

    def matches(self, p: PodInfo, namespace: str) -> bool:
        return (p.namespace == namespace and self.selector is not None and
                self.selector.matches(p.labels) and
                not (p.pod.get("metadata") or {}).get("deletionTimestamp"))


def constraints(pod: PodInfo, when: str) -> list[Constraint]:
    return [Constraint(c, pod) for c in pod.spec.get("topologySpreadConstraints") or []
            if c.get("whenUnsatisfiable", "DoNotSchedule") == when]


def node_contribution(pod: PodInfo, cons: list[Constraint], nd: NodeInfo
                      ) -> tuple[tuple[str, int], ...] | None:
    """Per constraint (domain, matching pods) of one node, or None when the node is not
    counted: it lacks a constraint's key or the pod's node affinity excludes it
    (nodeAffinityPolicy Honor)."""
    if nd.node is None or any(c.key not in nd.labels for c in cons) or \
            not pod_matches_node(pod, nd):
        return None
    out = []
    for c in cons:
        n = 0
        if nd.pods:
            for p in nd.pods.values():
                if c.matches(p, pod.namespace):
                    n += 1
        out.append((nd.labels[c.key], n))
    return tuple(out)


class _Counts:
    """Domain counts over all nodes for one (namespace, constraints, node affinity)
    signature, kept up to date from the cache's change log."""
    __slots__ = ("epoch", "pos", "per_node", "counts", "domain_nodes")

    def __init__(self, k: int) -> None:
        self.epoch = -1
        self.pos = 0
        self.per_node: dict[str, tuple[tuple[str, int], ...] | None] = {}
        self.counts: list[dict[str, int]] = [{} for _ in range(k)]
        self.domain_nodes: list[dict[str, int]] = [{} for _ in range(k)]

    def apply(self, name: str, contrib: tuple[tuple[str, int], ...] | None, sign: int) -> None:
        if contrib is None:
            return
        for i, (v, n) in enumerate(contrib):
            c, dn = self.counts[i], self.domain_nodes[i]
            left = dn.get(v, 0) + sign
            if left <= 0:
                dn.pop(v, None)
                c.pop(v, None)
            else:
                dn[v] = left
                c[v] = c.get(v, 0) + sign * n

    def set(self, name: str, contrib: tuple[tuple[str, int], ...] | None) -> None:
        old = self.per_node.get(name)
        if old == contrib:
            return
        self.apply(name, old, -1)
        self.per_node[name] = contrib
        self.apply(name, contrib, +1)


_MEMO: dict[tuple, _Counts] = {}


def count_domains(pod: PodInfo, cons: list[Constraint], nodes: list[NodeInfo],
                  snapshot: object = None) -> list[dict[str, int]]:
    """Per constraint: matching pods per domain (domains of counted nodes, zeros included).
    With a snapshot, incremental: only the nodes changed since the last call are recounted."""
    cache = getattr(snapshot, "cache", None)
    if cache is None:
        fresh = _Counts(len(cons))
        for nd in nodes:
            fresh.set(nd.name, node_contribution(pod, cons, nd))
        return fresh.counts
    sig = (pod.namespace, tuple((c.key, str(c.selector), c.selector is None) for c in cons),
           repr(pod.spec.get("nodeSelector")),
           repr(((pod.spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution")))
    memo = _MEMO.get(sig)
    if memo is None or memo.epoch != cache.epoch or memo.pos > len(cache.changes):
        if len(_MEMO) > 256:
            _MEMO.clear()
        memo = _MEMO[sig] = _Counts(len(cons))
        for nd in nodes:
            memo.set(nd.name, node_contribution(pod, cons, nd))
    else:
        changed = set(cache.changes[memo.pos:])
        for name in changed:
            nd = cache.nodes.get(name)
            memo.set(name, node_contribution(pod, cons, nd) if nd is not None else None)
    memo.epoch = cache.epoch
    memo.pos = len(cache.changes)
    return memo.counts


class PodTopologySpread(Plugin):
    name = "PodTopologySpread"
    has_filter = True
    has_score = True
    _missing = unresolvable(ERR_MISSING_LABEL, "PodTopologySpread")
    _skew = unschedulable(ERR_CONSTRAINTS, "PodTopologySpread")

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        cons = constraints(pod, "DoNotSchedule")
        if not cons:
            return SKIP_STATUS
        counts = count_domains(pod, cons, nodes, state.get("snapshot"))
        checks = []
        for c, d in zip(cons, counts):
            m = min(d.values()) if d else 0
            if len(d) < c.min_domains:
                m = 0
            # The domains where adding the pod keeps the skew within maxSkew; a node in a
            # domain not counted (excluded by node affinity) has count 0.
            zero_ok = 0 + c.self_match - m <= c.max_skew
            ok = {v for v, n in d.items() if n + c.self_match - m <= c.max_skew}
            checks.append((c.key, ok, zero_ok, set(d)))
        state["pts"] = checks
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        for key, ok, zero_ok, known in state["pts"]:
            v = node.labels.get(key)
            if v is None:
                return self._missing
            if v not in ok and (v in known or not zero_ok):
                return self._skew
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> bool:
        cons = constraints(pod, "ScheduleAnyway")
        if not cons:
            return False
        counts = count_domains(pod, cons, nodes, state.get("snapshot"))
        weights = [math.log(len(d) + 2) for d in counts]
        state["pts.score"] = (cons, counts, weights)
        return True

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        cons, counts, weights = state["pts.score"]
        s = 0.0
        for c, d, w in zip(cons, counts, weights):
            v = node.labels.get(c.key)
            if v is None:
                return -1  # ignored node: scored 0 after normalization
            s += d.get(v, 0) * w + (c.max_skew - 1)
        return round(s)

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        valid = [s for s in scores if s >= 0]
        if not valid:
            return
        lo, hi = min(valid), max(valid)
        for i, s in enumerate(scores):
            if s < 0:
                scores[i] = 0
            elif hi == 0:
                scores[i] = MAX_NODE_SCORE
            else:
                scores[i] = MAX_NODE_SCORE * (hi + lo - s) // hi

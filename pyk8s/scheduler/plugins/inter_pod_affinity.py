"""InterPodAffinity: Filter on required pod affinity / anti-affinity (the incoming pod's
terms and existing pods' anti-affinity terms), Score by preferred terms (both ways)."""
from __future__ import annotations

from pyk8s.scheduler.framework import (MAX_NODE_SCORE, SKIP_STATUS, CycleState, NodeInfo,
                                       Plugin, PodInfo, Status, unschedulable)

ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
HARD_POD_AFFINITY_WEIGHT = 1


def _pre_filter_state(pod: PodInfo, nodes: list[NodeInfo]) -> dict:
    forbidden: dict[str, set[str]] = {}   # existing pods' anti-affinity vs this pod: key → values
    aff_counts = [dict() for _ in pod.required_affinity]   # per term: (key, value) → n
    anti: dict[str, set[str]] = {}
    want_all = bool(pod.required_affinity or pod.required_anti_affinity)
    for nd in nodes:
        if not nd.pods:
            continue
        if nd.pods_with_required_anti_affinity:
            for p in nd.pods.values():
                for t in p.required_anti_affinity:
                    v = nd.labels.get(t.topology_key)
                    if v is not None and t.matches(pod):
                        forbidden.setdefault(t.topology_key, set()).add(v)
        if want_all:
            for p in nd.pods.values():
                for i, t in enumerate(pod.required_affinity):
                    v = nd.labels.get(t.topology_key)
                    if v is not None and t.matches(p):
                        c = aff_counts[i]
                        c[(t.topology_key, v)] = c.get((t.topology_key, v), 0) + 1
                for t in pod.required_anti_affinity:
                    v = nd.labels.get(t.topology_key)
                    if v is not None and t.matches(p):
                        anti.setdefault(t.topology_key, set()).add(v)
    no_match_anywhere = all(not c for c in aff_counts)
    self_match = all(t.matches(pod) for t in pod.required_affinity)
    return {"forbidden": forbidden, "aff": aff_counts, "anti": anti,
            "bootstrap": no_match_anywhere and self_match}


class InterPodAffinity(Plugin):
    name = "InterPodAffinity"
    has_filter = True
    has_score = True

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        if not (pod.required_affinity or pod.required_anti_affinity):
            cache = getattr(state.get("snapshot"), "cache", None)
            if (cache.pods_with_required_anti_affinity == 0 if cache is not None
                    else not any(n.pods_with_required_anti_affinity for n in nodes)):
                return SKIP_STATUS
        state["ipa"] = _pre_filter_state(pod, nodes)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        s = state["ipa"]
        labels = node.labels
        for k, vals in s["forbidden"].items():
            if labels.get(k) in vals:
                return unschedulable(ERR_EXISTING_ANTI, self.name)
        anti = s["anti"]
        if anti:
            for t in pod.required_anti_affinity:
                v = labels.get(t.topology_key)
                if v is not None and v in anti.get(t.topology_key, ()):
                    return unschedulable(ERR_ANTI_AFFINITY, self.name)
        if pod.required_affinity:
            ok = True
            for i, t in enumerate(pod.required_affinity):
                v = labels.get(t.topology_key)
                if v is None or not s["aff"][i].get((t.topology_key, v)):
                    ok = False
                    break
            if not ok:
                # The first pod of a group that selects itself may go anywhere the topology
                # keys exist.
                if not (s["bootstrap"] and all(t.topology_key in labels
                                               for t in pod.required_affinity)):
                    return unschedulable(ERR_AFFINITY, self.name)
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> bool:
        has_own = bool(pod.preferred_affinity or pod.preferred_anti_affinity)
        cache = getattr(state.get("snapshot"), "cache", None)
        if not has_own and cache is not None and cache.pods_with_affinity == 0:
            return False
        topo: dict[str, dict[str, int]] = {}

        def add(key: str, val: str, w: int) -> None:
            d = topo.setdefault(key, {})
            d[val] = d.get(val, 0) + w

        for nd in nodes:
            if not nd.pods or (not has_own and not nd.pods_with_affinity):
                continue
            for p in nd.pods.values():
                if has_own:
                    for t in pod.preferred_affinity:
                        v = nd.labels.get(t.topology_key)
                        if v is not None and t.matches(p):
                            add(t.topology_key, v, t.weight)
                    for t in pod.preferred_anti_affinity:
                        v = nd.labels.get(t.topology_key)
                        if v is not None and t.matches(p):
                            add(t.topology_key, v, -t.weight)
                if p.has_affinity:
                    for t in p.preferred_affinity:
                        v = nd.labels.get(t.topology_key)
                        if v is not None and t.matches(pod):
                            add(t.topology_key, v, t.weight)
                    for t in p.preferred_anti_affinity:
                        v = nd.labels.get(t.topology_key)
                        if v is not None and t.matches(pod):
                            add(t.topology_key, v, -t.weight)
                    for t in p.required_affinity:
                        v = nd.labels.get(t.topology_key)
                        if v is not None and t.matches(pod):
                            add(t.topology_key, v, HARD_POD_AFFINITY_WEIGHT)
        if not topo:
            return False
        state["ipa.topo"] = topo
        return True

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        s = 0
        for key, vals in state["ipa.topo"].items():
            v = node.labels.get(key)
            if v is not None:
                s += vals.get(v, 0)
        return s

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        if not scores:
            return
        lo, hi = min(scores), max(scores)
        diff = hi - lo
        for i, s in enumerate(scores):
            scores[i] = MAX_NODE_SCORE * (s - lo) // diff if diff > 0 else 0

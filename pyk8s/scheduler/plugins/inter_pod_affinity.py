"""InterPodAffinity: Filter on required pod affinity / anti-affinity (the incoming pod's
terms and existing pods' anti-affinity terms), Score by preferred terms (both ways)."""
from __future__ import annotations

from pyk8s.scheduler.framework import (MAX_NODE_SCORE, SKIP_STATUS, CycleState, NodeInfo,
                                       Plugin, PodInfo, Status, unschedulable)

ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
HARD_POD_AFFINITY_WEIGHT = 1


def _node_contribution(pod: PodInfo, nd: NodeInfo) -> tuple | None:
    """What one node adds to the PreFilter state of `pod`: the (key, value) pairs its pods'
    required anti-affinity forbids to `pod`, per required affinity term the pods matching
    it, per required anti-affinity term whether a pod matches it."""
    if not nd.pods or nd.node is None:
        return None
    labels = nd.labels
    forb = []
    if nd.pods_with_required_anti_affinity:
        for p in nd.pods.values():
            for t in p.required_anti_affinity:
                v = labels.get(t.topology_key)
                if v is not None and t.matches(pod):
                    forb.append((t.topology_key, v))
    aff = []
    for t in pod.required_affinity:
        v = labels.get(t.topology_key)
        n = 0
        if v is not None:
            for p in nd.pods.values():
                if t.matches(p):
                    n += 1
        aff.append((t.topology_key, v, n) if n else None)
    anti = []
    for t in pod.required_anti_affinity:
        v = labels.get(t.topology_key)
        hit = None
        if v is not None:
            for p in nd.pods.values():
                if t.matches(p):
                    hit = (t.topology_key, v)
                    break
        anti.append(hit)
    if not forb and not any(aff) and not any(anti):
        return None
    return (tuple(forb), tuple(aff), tuple(anti))


class _Agg:
    """The PreFilter state summed over all nodes, kept current from the cache's change log
    (pods of one workload share it: the scan of every pod becomes a replay of the nodes
    that changed since the last cycle)."""
    __slots__ = ("epoch", "pos", "per_node", "forbidden", "forbidden_keys", "aff", "anti")

    def __init__(self, n_aff: int, n_anti: int) -> None:
        self.epoch, self.pos = -1, 0
        self.per_node: dict[str, tuple | None] = {}
        self.forbidden: dict[tuple[str, str], int] = {}
        self.forbidden_keys: dict[str, int] = {}
        self.aff: list[dict[tuple[str, str], int]] = [{} for _ in range(n_aff)]
        self.anti: dict[tuple[str, str], int] = {}

    @staticmethod
    def _bump(d: dict, k: tuple, n: int) -> None:
        v = d.get(k, 0) + n
        if v <= 0:
            d.pop(k, None)
        else:
            d[k] = v

    def _apply(self, c: tuple | None, sign: int) -> None:
        if c is None:
            return
        forb, aff, anti = c
        for kv in forb:
            self._bump(self.forbidden, kv, sign)
            self._bump(self.forbidden_keys, kv[0], sign)
        for i, a in enumerate(aff):
            if a is not None:
                self._bump(self.aff[i], (a[0], a[1]), sign * a[2])
        for kv in anti:
            if kv is not None:
                self._bump(self.anti, kv, sign)

    def set(self, name: str, c: tuple | None) -> None:
        old = self.per_node.get(name)
        if old == c:
            return
        self._apply(old, -1)
        self.per_node[name] = c
        self._apply(c, 1)


_MEMO: dict[tuple, _Agg] = {}


def _signature(pod: PodInfo) -> tuple:
    def terms(ts: list) -> tuple:
        return tuple((t.sig, t.topology_key, tuple(sorted(t.namespaces)), t.all_namespaces)
                     for t in ts)
    return (pod.namespace, pod.labels_key, terms(pod.required_affinity),
            terms(pod.required_anti_affinity))


def _pre_filter_state(pod: PodInfo, nodes: list[NodeInfo], snapshot: object = None) -> dict:
    cache = getattr(snapshot, "cache", None)
    na, nn = len(pod.required_affinity), len(pod.required_anti_affinity)
    if cache is None:
        agg = _Agg(na, nn)
        for nd in nodes:
            agg.set(nd.name, _node_contribution(pod, nd))
    else:
        sig = _signature(pod)
        agg = _MEMO.get(sig)
        if agg is None or agg.epoch != cache.epoch or agg.pos > len(cache.changes):
            if len(_MEMO) > 256:
                _MEMO.clear()
            agg = _MEMO[sig] = _Agg(na, nn)
            for nd in nodes:
                agg.set(nd.name, _node_contribution(pod, nd))
        else:
            for name in set(cache.changes[agg.pos:]):
                nd = cache.nodes.get(name)
                agg.set(name, _node_contribution(pod, nd) if nd is not None else None)
        agg.epoch, agg.pos = cache.epoch, len(cache.changes)
    forbidden_keys = list(agg.forbidden_keys)
    no_match_anywhere = all(not c for c in agg.aff)
    self_match = all(t.matches(pod) for t in pod.required_affinity)
    return {"forbidden": agg.forbidden, "forbidden_keys": forbidden_keys, "aff": agg.aff,
            "anti": agg.anti, "bootstrap": no_match_anywhere and self_match}


class InterPodAffinity(Plugin):
    name = "InterPodAffinity"
    has_filter = True
    has_score = True
    _existing_anti = unschedulable(ERR_EXISTING_ANTI, "InterPodAffinity")
    _anti = unschedulable(ERR_ANTI_AFFINITY, "InterPodAffinity")
    _aff = unschedulable(ERR_AFFINITY, "InterPodAffinity")

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        if not (pod.required_affinity or pod.required_anti_affinity):
            cache = getattr(state.get("snapshot"), "cache", None)
            if (cache.pods_with_required_anti_affinity == 0 if cache is not None
                    else not any(n.pods_with_required_anti_affinity for n in nodes)):
                return SKIP_STATUS
        state["ipa"] = _pre_filter_state(pod, nodes, state.get("snapshot"))
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        s = state["ipa"]
        labels = node.labels
        forbidden = s["forbidden"]
        for k in s["forbidden_keys"]:
            v = labels.get(k)
            if v is not None and (k, v) in forbidden:
                return self._existing_anti
        anti = s["anti"]
        if anti:
            for t in pod.required_anti_affinity:
                v = labels.get(t.topology_key)
                if v is not None and (t.topology_key, v) in anti:
                    return self._anti
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
                    return self._aff
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

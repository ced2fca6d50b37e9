"""Preemption (upstream's DefaultPreemption PostFilter): on nodes where removing
lower-priority pods would let the pod fit, pick the fewest victims that do (reprieving the
most important pods first, PDB-violating ones before the others), then choose the node
with the fewest PDB violations, then the lowest highest-victim priority, the smallest sum
of victim priorities, the fewest victims, the latest start of the earliest victim."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyk8s.api.selectors import label_selector_from_dict
from pyk8s.scheduler.framework import (UNRESOLVABLE, CycleState, FitError, Framework,
                                       NodeInfo, PodInfo)

Obj = dict[str, Any]
MIN_CANDIDATE_NODES_PERCENTAGE = 10
MIN_CANDIDATE_NODES_ABSOLUTE = 100


@dataclass
class Candidate:
    node: str
    victims: list[PodInfo] = field(default_factory=list)
    pdb_violations: int = 0


def _start_time(p: PodInfo) -> str:
    st = (p.pod.get("status") or {}).get("startTime") or \
        (p.pod.get("metadata") or {}).get("creationTimestamp") or ""
    return st


class PDBs:
    """PodDisruptionBudgets as (namespace, selector, disruptionsAllowed)."""

    def __init__(self, pdbs: list[Obj]) -> None:
        self.items = []
        for pdb in pdbs:
            sel = (pdb.get("spec") or {}).get("selector")
            if sel is None:
                continue
            self.items.append(((pdb.get("metadata") or {}).get("namespace", ""),
                               label_selector_from_dict(sel),
                               int((pdb.get("status") or {}).get("disruptionsAllowed") or 0)))

    def split(self, victims: list[PodInfo]) -> tuple[list[PodInfo], list[PodInfo]]:
        """(violating, non-violating), as upstream's filterPodsWithPDBViolation."""
        allowed = [a for _, _, a in self.items]
        violating, ok = [], []
        for v in victims:
            bad = False
            for i, (ns, sel, _) in enumerate(self.items):
                if ns == v.namespace and v.labels and sel.matches(v.labels):
                    allowed[i] -= 1
                    if allowed[i] < 0:
                        bad = True
            (violating if bad else ok).append(v)
        return violating, ok


def eligible(pod: PodInfo) -> bool:
    return (pod.spec.get("preemptionPolicy") or "PreemptLowerPriority") != "Never"


def _fits(fw: Framework, pod: PodInfo, node: NodeInfo, nodes: list[NodeInfo]) -> bool:
    state = CycleState()
    filters, st = fw.run_pre_filters(state, pod, nodes)
    if st is not None:
        return False
    return fw.filter_node(state, pod, node, filters) is None


def select_victims(fw: Framework, pod: PodInfo, node: NodeInfo, nodes: list[NodeInfo],
                   pdbs: PDBs) -> Candidate | None:
    clone = node.clone()
    idx = nodes.index(node)
    view = nodes[:idx] + [clone] + nodes[idx + 1:]
    potential = [p for p in clone.pods.values() if p.priority < pod.priority]
    if not potential:
        return None
    for p in potential:
        clone.remove_pod(p)
    if not _fits(fw, pod, clone, view):
        return None
    # Most important first: higher priority, then earlier start.
    potential.sort(key=lambda p: (-p.priority, _start_time(p)))
    violating, ok = pdbs.split(potential)
    victims: list[PodInfo] = []
    violations = 0

    def reprieve(p: PodInfo) -> bool:
        clone.add_pod(p)
        if _fits(fw, pod, clone, view):
            return True
        clone.remove_pod(p)
        victims.append(p)
        return False

    for p in violating:
        if not reprieve(p):
            violations += 1
    for p in ok:
        reprieve(p)
    return Candidate(node.name, victims, violations)


def pick_one(cands: list[Candidate]) -> Candidate | None:
    if not cands:
        return None

    def key(c: Candidate) -> tuple:
        prios = [v.priority for v in c.victims]
        earliest = min((_start_time(v) for v in c.victims), default="")
        # Latest earliest-start wins: invert by sorting descending on it (negate via tuple).
        return (c.pdb_violations, max(prios, default=-(2**31)), sum(prios), len(c.victims),
                tuple(-ord(ch) for ch in earliest))

    return min(cands, key=key)


def preempt(fw: Framework, pod: PodInfo, nodes: list[NodeInfo], err: FitError,
            pdbs: PDBs) -> tuple[Candidate | None, str]:
    """The chosen candidate (or None) and upstream's `preemption: …` message part."""
    n = len(nodes)
    if not eligible(pod):
        return None, "preemption: not eligible due to preemptionPolicy=Never."
    cands: list[Candidate] = []
    not_helpful = 0
    want = max(n * MIN_CANDIDATE_NODES_PERCENTAGE // 100, MIN_CANDIDATE_NODES_ABSOLUTE)
    for node in nodes:
        st = err.statuses.get(node.name)
        if (st is not None and st.code == UNRESOLVABLE) or (
                err.pre_filter is not None and err.pre_filter.code == UNRESOLVABLE):
            not_helpful += 1
            continue
        c = select_victims(fw, pod, node, nodes, pdbs)
        if c is not None:
            cands.append(c)
            if len(cands) >= want:
                break
    best = pick_one(cands)
    if best is not None:
        return best, ""
    parts = []
    no_victims = n - not_helpful
    if no_victims:
        parts.append(f"{no_victims} No preemption victims found for incoming pod")
    if not_helpful:
        parts.append(f"{not_helpful} Preemption is not helpful for scheduling")
    return None, f"preemption: 0/{n} nodes are available: {', '.join(sorted(parts))}."

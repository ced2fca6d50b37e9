"""The scheduling framework: pod and node views, plugin interface, and the per-profile
plugin runner (PreFilter → Filter → PreScore → Score → NormalizeScore → weights).

Everything here is pure: no I/O. `PodInfo` / `NodeInfo` are built from API dicts once and
carry what the plugins need precomputed (requests in milli-CPU and bytes, ports, taints,
parsed affinity), like upstream's framework.PodInfo / NodeInfo.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Any, Iterable

from pyk8s.api.validation import parse_quantity

Obj = dict[str, Any]
MAX_NODE_SCORE = 100

CPU, MEMORY, EPHEMERAL, PODS = "cpu", "memory", "ephemeral-storage", "pods"
# Upstream's defaults for requests left unset, used when scoring (not when filtering).
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024


@lru_cache(maxsize=4096)
def quantity_value(q: Any, milli: bool = False) -> int:
    """A Quantity as an integer (rounded up, as Quantity.Value / MilliValue)."""
    f = parse_quantity(q)
    if f is None:
        return 0
    if milli:
        f = f * 1000
    return math.ceil(f) if isinstance(f, Fraction) else int(f)


def _resource_list(rl: Obj | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in (rl or {}).items():
        out[k] = quantity_value(v, milli=(k == CPU))
    return out


def _add(into: dict[str, int], other: dict[str, int]) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def _max(into: dict[str, int], other: dict[str, int]) -> None:
    for k, v in other.items():
        if v > into.get(k, 0):
            into[k] = v


def pod_requests(spec: Obj, non_zero: bool = False) -> dict[str, int]:
    """Upstream's resource.PodRequests: the sum of the containers' requests (plus restartable
    init containers, i.e. sidecars), max'ed with every init container's request (plus the
    sidecars started before it), plus the pod overhead. `non_zero`: unset cpu / memory
    requests count as 100m / 200Mi (what scoring uses)."""
    def reqs(c: Obj) -> dict[str, int]:
        r = _resource_list((c.get("resources") or {}).get("requests"))
        if non_zero:
            r.setdefault(CPU, DEFAULT_MILLI_CPU_REQUEST)
            r.setdefault(MEMORY, DEFAULT_MEMORY_REQUEST)
            if r[CPU] == 0:
                r[CPU] = DEFAULT_MILLI_CPU_REQUEST
            if r[MEMORY] == 0:
                r[MEMORY] = DEFAULT_MEMORY_REQUEST
        return r

    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        _add(total, reqs(c))
    sidecars: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        r = reqs(c)
        if c.get("restartPolicy") == "Always":
            _add(sidecars, r)
            _add(total, r)
            cur = dict(sidecars)
        else:
            cur = dict(sidecars)
            _add(cur, r)
        _max(init_max, cur)
    _max(total, init_max)
    if spec.get("overhead"):
        _add(total, _resource_list(spec["overhead"]))
    return total


class Resource:
    """cpu (milli), memory, ephemeral-storage (bytes), allowed pods, and scalar resources."""
    __slots__ = ("milli_cpu", "memory", "ephemeral", "pods", "scalar")

    def __init__(self, d: dict[str, int] | None = None) -> None:
        d = dict(d or {})
        self.milli_cpu = d.pop(CPU, 0)
        self.memory = d.pop(MEMORY, 0)
        self.ephemeral = d.pop(EPHEMERAL, 0)
        self.pods = d.pop(PODS, 0)
        self.scalar = {k: v for k, v in d.items() if _is_scalar(k)}

    def add(self, o: "Resource", sign: int = 1) -> None:
        self.milli_cpu += sign * o.milli_cpu
        self.memory += sign * o.memory
        self.ephemeral += sign * o.ephemeral
        for k, v in o.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) + sign * v

    def get(self, name: str) -> int:
        if name == CPU:
            return self.milli_cpu
        if name == MEMORY:
            return self.memory
        if name == EPHEMERAL:
            return self.ephemeral
        if name == PODS:
            return self.pods
        return self.scalar.get(name, 0)


def _is_scalar(name: str) -> bool:
    # Extended resources (domain-prefixed), hugepages and attachable volumes.
    return "/" in name or name.startswith("hugepages-")


# -- pods -------------------------------------------------------------------------------------
_MATCH_MEMO: dict[tuple[str, tuple], bool] = {}


def labels_key(labels: dict[str, str]) -> tuple:
    return tuple(sorted(labels.items()))


def selector_matches(sig: str, selector: Any, labels: dict[str, str], lkey: tuple) -> bool:
    """A label selector's verdict on a label set, memoized by (selector, labels): pods of
    one workload share both, so the scheduler's per-cycle scans become dict lookups."""
    k = (sig, lkey)
    v = _MATCH_MEMO.get(k)
    if v is None:
        if len(_MATCH_MEMO) > 200_000:
            _MATCH_MEMO.clear()
        v = _MATCH_MEMO[k] = bool(selector.matches(labels))
    return v


class AffinityTerm:
    """A PodAffinityTerm with its namespaces resolved and its selector parsed."""
    __slots__ = ("topology_key", "namespaces", "all_namespaces", "ns_selector", "selector",
                 "weight", "sig")

    def __init__(self, term: Obj, pod_namespace: str, weight: int = 0) -> None:
        from pyk8s.api.selectors import label_selector_from_dict
        self.topology_key = term.get("topologyKey") or ""
        self.namespaces = set(term.get("namespaces") or [])
        nsel = term.get("namespaceSelector")
        # An empty namespaceSelector ({}) selects every namespace.
        self.all_namespaces = nsel is not None and not (nsel.get("matchLabels") or
                                                        nsel.get("matchExpressions"))
        self.ns_selector = None  # non-empty namespace selectors: not supported (no ns labels)
        if not self.namespaces and nsel is None:
            self.namespaces = {pod_namespace}
        self.selector = label_selector_from_dict(term.get("labelSelector")) \
            if term.get("labelSelector") is not None else None
        self.weight = weight
        self.sig = ("!" if self.selector is not None and self.selector.selects_nothing
                    else "") + str(self.selector)

    def matches(self, pod: "PodInfo") -> bool:
        if not self.all_namespaces and pod.namespace not in self.namespaces:
            return False
        if self.selector is None:
            return False
        return selector_matches(self.sig, self.selector, pod.labels, pod.labels_key)


def _terms(aff: Obj | None, key: str, ns: str) -> tuple[list[AffinityTerm], list[AffinityTerm]]:
    if not aff:
        return [], []
    a = aff.get(key) or {}
    req = [AffinityTerm(t, ns) for t in a.get("requiredDuringSchedulingIgnoredDuringExecution") or []]
    pref = [AffinityTerm(t.get("podAffinityTerm") or {}, ns, int(t.get("weight") or 0))
            for t in a.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    return req, pref


class PodInfo:
    """A pod as the scheduler sees it."""
    __slots__ = ("pod", "key", "name", "namespace", "uid", "labels", "spec", "requests",
                 "non_zero", "priority", "ports", "required_affinity", "required_anti_affinity",
                 "preferred_affinity", "preferred_anti_affinity", "node_name", "tolerations",
                 "has_affinity", "timestamp", "attempts", "unschedulable_plugins",
                 "initial_attempt", "labels_key")

    def __init__(self, pod: Obj) -> None:
        md = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.pod = pod
        self.name = md.get("name", "")
        self.namespace = md.get("namespace", "")
        self.key = f"{self.namespace}/{self.name}"
        self.uid = md.get("uid", "")
        self.labels = md.get("labels") or {}
        self.labels_key = labels_key(self.labels)
        self.spec = spec
        r = pod_requests(spec)
        self.requests = Resource(r)
        nz = pod_requests(spec, non_zero=True)
        self.non_zero = (nz.get(CPU, 0), nz.get(MEMORY, 0))
        self.priority = int(spec.get("priority") or 0)
        ports = []
        for c in spec.get("containers") or []:
            for p in c.get("ports") or []:
                hp = p.get("hostPort") or 0
                if hp > 0:
                    ports.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", hp))
        self.ports = ports
        aff = spec.get("affinity") or {}
        self.required_affinity, self.preferred_affinity = _terms(aff, "podAffinity", self.namespace)
        self.required_anti_affinity, self.preferred_anti_affinity = _terms(
            aff, "podAntiAffinity", self.namespace)
        self.has_affinity = bool(self.required_affinity or self.preferred_affinity or
                                 self.required_anti_affinity or self.preferred_anti_affinity)
        self.node_name = spec.get("nodeName") or ""
        self.tolerations = spec.get("tolerations") or []
        self.timestamp = 0.0
        self.initial_attempt = 0.0
        self.attempts = 0
        self.unschedulable_plugins: set[str] = set()


# -- nodes ------------------------------------------------------------------------------------
class NodeInfo:
    """A node with the pods counted against it (bound and assumed)."""
    __slots__ = ("node", "name", "labels", "taints", "unschedulable", "allocatable",
                 "requested", "non_zero_cpu", "non_zero_mem", "pods", "used_ports",
                 "images", "generation", "pods_with_affinity",
                 "pods_with_required_anti_affinity")

    def __init__(self, node: Obj | None = None, name: str = "") -> None:
        self.pods: dict[str, PodInfo] = {}
        self.requested = Resource()
        self.non_zero_cpu = 0
        self.non_zero_mem = 0
        self.used_ports: dict[tuple[str, str, int], int] = {}
        self.pods_with_affinity = 0
        self.pods_with_required_anti_affinity = 0
        self.generation = 0
        self.node: Obj | None = None
        self.name = name
        self.labels: dict[str, str] = {}
        self.taints: list[Obj] = []
        self.unschedulable = False
        self.allocatable = Resource()
        self.images: dict[str, int] = {}
        if node is not None:
            self.set_node(node)

    def set_node(self, node: Obj) -> None:
        md = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.node = node
        self.name = md.get("name", "")
        self.labels = md.get("labels") or {}
        self.taints = spec.get("taints") or []
        self.unschedulable = bool(spec.get("unschedulable"))
        self.allocatable = Resource(_resource_list(status.get("allocatable")))
        images: dict[str, int] = {}
        for img in status.get("images") or []:
            for n in img.get("names") or []:
                images[n] = int(img.get("sizeBytes") or 0)
        self.images = images
        self.generation += 1

    def add_pod(self, p: PodInfo) -> None:
        if p.key in self.pods:
            self.remove_pod(self.pods[p.key])
        self.pods[p.key] = p
        self.requested.add(p.requests)
        self.non_zero_cpu += p.non_zero[0]
        self.non_zero_mem += p.non_zero[1]
        for port in p.ports:
            self.used_ports[port] = self.used_ports.get(port, 0) + 1
        if p.has_affinity:
            self.pods_with_affinity += 1
        if p.required_anti_affinity:
            self.pods_with_required_anti_affinity += 1
        self.generation += 1

    def remove_pod(self, p: PodInfo) -> bool:
        cur = self.pods.pop(p.key, None)
        if cur is None:
            return False
        self.requested.add(cur.requests, -1)
        self.non_zero_cpu -= cur.non_zero[0]
        self.non_zero_mem -= cur.non_zero[1]
        for port in cur.ports:
            n = self.used_ports.get(port, 0) - 1
            if n <= 0:
                self.used_ports.pop(port, None)
            else:
                self.used_ports[port] = n
        if cur.has_affinity:
            self.pods_with_affinity -= 1
        if cur.required_anti_affinity:
            self.pods_with_required_anti_affinity -= 1
        self.generation += 1
        return True

    def clone(self) -> "NodeInfo":
        """A copy whose pod set can change without touching this one (preemption)."""
        c = NodeInfo()
        c.node, c.name, c.labels, c.taints = self.node, self.name, self.labels, self.taints
        c.unschedulable, c.allocatable, c.images = self.unschedulable, self.allocatable, self.images
        for p in self.pods.values():
            c.add_pod(p)
        return c


# -- status -----------------------------------------------------------------------------------
SUCCESS, UNSCHEDULABLE, UNRESOLVABLE, ERROR, SKIP = 0, 2, 3, 1, 4


class Status:
    """A plugin's verdict: code and reasons (upstream's framework.Status)."""
    __slots__ = ("code", "reasons", "plugin")

    def __init__(self, code: int, *reasons: str, plugin: str = "") -> None:
        self.code = code
        self.reasons = reasons
        self.plugin = plugin

    def __repr__(self) -> str:
        return f"Status({self.code}, {self.reasons!r}, {self.plugin!r})"


def unschedulable(reason: str, plugin: str = "") -> Status:
    return Status(UNSCHEDULABLE, reason, plugin=plugin)


def unresolvable(reason: str, plugin: str = "") -> Status:
    return Status(UNRESOLVABLE, reason, plugin=plugin)


SKIP_STATUS = Status(SKIP)


class CycleState(dict):
    """Per-cycle data the plugins write in PreFilter / PreScore and read later."""


class Plugin:
    """Base class: a plugin implements the extension points it needs.

    - `pre_filter(state, pod, nodes)` → None (run Filter), SKIP_STATUS (skip this plugin's
      Filter for this pod) or an unschedulable Status (the pod fits nowhere);
    - `filter(state, pod, node)` → None when the node fits, else a Status;
    - `pre_score(state, pod, nodes)` → False to skip Score for this pod;
    - `score(state, pod, node)` → int; `normalize(state, pod, scores)` in place, to 0..100.
    """
    name = ""
    has_filter = False
    has_score = False

    def __init__(self, args: Obj | None = None) -> None:
        self.args = args or {}

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> bool:
        return True

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return 0

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        return None


def default_normalize(scores: list[int], reverse: bool = False) -> None:
    """Upstream's helper.DefaultNormalizeScore: scale to 0..MaxNodeScore by the maximum."""
    mx = max(scores) if scores else 0
    if mx == 0:
        if reverse:
            for i in range(len(scores)):
                scores[i] = MAX_NODE_SCORE
        return
    for i, s in enumerate(scores):
        s = MAX_NODE_SCORE * s // mx
        scores[i] = MAX_NODE_SCORE - s if reverse else s


# -- the runner -------------------------------------------------------------------------------
class FitError(Exception):
    """No node fits: per-node statuses for the FailedScheduling message and preemption."""

    def __init__(self, num_nodes: int, statuses: dict[str, Status],
                 pre_filter: Status | None = None) -> None:
        super().__init__("unschedulable")
        self.num_nodes = num_nodes
        self.statuses = statuses
        self.pre_filter = pre_filter

    def message(self) -> str:
        """Upstream's FitError.Error(): `0/3 nodes are available: 3 Insufficient cpu.`"""
        if self.pre_filter is not None:
            reasons = {r: self.num_nodes for r in self.pre_filter.reasons}
        else:
            reasons = {}
            for st in self.statuses.values():
                for r in st.reasons:
                    reasons[r] = reasons.get(r, 0) + 1
        parts = sorted(f"{n} {r}" for r, n in reasons.items())
        return f"0/{self.num_nodes} nodes are available: {', '.join(parts)}."

    def plugins(self) -> set[str]:
        out = {st.plugin for st in self.statuses.values() if st.plugin}
        if self.pre_filter is not None and self.pre_filter.plugin:
            out.add(self.pre_filter.plugin)
        return out


def num_feasible_nodes_to_find(num_all: int, percentage: int = 0) -> int:
    """Upstream's numFeasibleNodesToFind (adaptive percentageOfNodesToScore)."""
    min_feasible, min_pct = 100, 5
    if num_all < min_feasible:
        return num_all
    pct = percentage
    if pct <= 0:
        pct = 50 - num_all // 125
        if pct < min_pct:
            pct = min_pct
    if pct >= 100:
        return num_all
    n = num_all * pct // 100
    return max(n, min_feasible)


class Framework:
    """One profile's plugins with their weights."""

    def __init__(self, scheduler_name: str, filters: list[Plugin],
                 scorers: list[tuple[Plugin, int]], percentage_of_nodes_to_score: int = 0,
                 rand: Any = None) -> None:
        import random
        self.scheduler_name = scheduler_name
        self.filters = filters
        self.scorers = scorers
        self.percentage = percentage_of_nodes_to_score
        self.next_start = 0
        self.rand = rand or random.Random()

    def run_pre_filters(self, state: CycleState, pod: PodInfo,
                        nodes: list[NodeInfo]) -> tuple[list[Plugin], Status | None]:
        active = []
        for p in self.filters:
            st = p.pre_filter(state, pod, nodes)
            if st is None:
                active.append(p)
            elif st.code == SKIP:
                continue
            else:
                if not st.plugin:
                    st.plugin = p.name
                return active, st
        return active, None

    def filter_node(self, state: CycleState, pod: PodInfo, node: NodeInfo,
                    filters: Iterable[Plugin]) -> Status | None:
        for p in filters:
            st = p.filter(state, pod, node)
            if st is not None:
                return st
        return None

    def _filter_with_nominated(self, state: CycleState, pod: PodInfo, node: NodeInfo,
                               filters: list[Plugin], others: list[PodInfo]) -> Status | None:
        """Upstream's RunFilterPluginsWithNominatedPods: a node where pods of equal or higher
        priority are nominated must fit the pod with them added too (and without them)."""
        st = self.filter_node(state, pod, node, filters)
        if st is not None:
            return st
        clone = node.clone()
        for o in others:
            clone.add_pod(o)
        return self.filter_node(state, pod, clone, filters)

    def find_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                   nominated: dict[str, list[PodInfo]] | None = None
                   ) -> tuple[list[NodeInfo], dict[str, Status]]:
        """PreFilter, then Filter round-robin from where the last cycle stopped, until
        enough feasible nodes are found (upstream's findNodesThatPassFilters)."""
        n = len(nodes)
        if n == 0:
            raise FitError(0, {})
        filters, st = self.run_pre_filters(state, pod, nodes)
        if st is not None:
            raise FitError(n, {}, pre_filter=st)
        want = num_feasible_nodes_to_find(n, self.percentage)
        feasible: list[NodeInfo] = []
        statuses: dict[str, Status] = {}
        start = self.next_start % n
        processed = 0
        noms: dict[str, list[PodInfo]] = {}
        for node_name, pods in (nominated or {}).items():
            keep = [o for o in pods if o.key != pod.key and o.priority >= pod.priority]
            if keep:
                noms[node_name] = keep
        if noms:
            # Rare: check each node, with the nominated pods where there are some.
            for i in range(n):
                node = nodes[(start + i) % n]
                processed += 1
                others = noms.get(node.name)
                s = (self._filter_with_nominated(state, pod, node, filters, others) if others
                     else self.filter_node(state, pod, node, filters))
                if s is None:
                    feasible.append(node)
                    if len(feasible) >= want:
                        break
                else:
                    statuses[node.name] = s
        elif not filters:
            for i in range(want):
                feasible.append(nodes[(start + i) % n])
            processed = want
        else:
            i = start
            fns = [p.filter for p in filters]
            for _ in range(n):
                node = nodes[i]
                processed += 1
                s = None
                for f in fns:
                    s = f(state, pod, node)
                    if s is not None:
                        break
                if s is None:
                    feasible.append(node)
                    if len(feasible) >= want:
                        break
                else:
                    statuses[node.name] = s
                i += 1
                if i == n:
                    i = 0
        self.next_start = (start + processed) % n
        if not feasible:
            raise FitError(n, statuses)
        return feasible, statuses

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                    all_nodes: list[NodeInfo]) -> list[int]:
        totals = [0] * len(nodes)
        for p, weight in self.scorers:
            if not p.pre_score(state, pod, all_nodes):
                continue
            score = p.score
            scores = [score(state, pod, nd) for nd in nodes]
            p.normalize(state, pod, scores)
            for i, s in enumerate(scores):
                totals[i] += s * weight
        return totals

    def schedule(self, pod: PodInfo, nodes: list[NodeInfo],
                 nominated: dict[str, list[PodInfo]] | None = None,
                 snapshot: Any = None) -> tuple[NodeInfo, int]:
        """One scheduling cycle's algorithm: the chosen node and how many were feasible.
        `snapshot` (optional) lets plugins update per-cycle aggregates incrementally."""
        state = CycleState()
        if snapshot is not None:
            state["snapshot"] = snapshot
        nnn = ((pod.pod.get("status") or {}).get("nominatedNodeName") or "")
        if nnn:
            # Upstream's evaluateNominatedNode: a preemptor tries its nominated node first.
            node = next((n for n in nodes if n.name == nnn), None)
            if node is not None:
                filters, st = self.run_pre_filters(state, pod, nodes)
                others = [o for o in (nominated or {}).get(nnn, ())
                          if o.key != pod.key and o.priority >= pod.priority]
                if st is None and self._filter_with_nominated(
                        state, pod, node, filters, others) is None:
                    return node, 1
            state = CycleState()
            if snapshot is not None:
                state["snapshot"] = snapshot
        feasible, _ = self.find_nodes(state, pod, nodes, nominated)
        if len(feasible) == 1:
            return feasible[0], 1
        totals = self.score_nodes(state, pod, feasible, nodes)
        # selectHost: the highest score, ties broken at random (reservoir sampling).
        best, best_i, ties = -1, 0, 0
        rnd = self.rand.random
        for i, s in enumerate(totals):
            if s > best:
                best, best_i, ties = s, i, 1
            elif s == best:
                ties += 1
                if rnd() * ties < 1:
                    best_i = i
        return feasible[best_i], len(feasible)

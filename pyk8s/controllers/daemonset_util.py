"""Pure helpers of the DaemonSet controller, after upstream's `pkg/controller/daemon/util`
and the predicates of `daemon_controller.go`. No I/O.

- Daemon pods tolerate, besides what their template says (upstream's
  AddOrUpdateDaemonPodTolerations): `node.kubernetes.io/not-ready` and `unreachable`
  NoExecute, `disk-pressure`, `memory-pressure`, `pid-pressure` and `unschedulable`
  NoSchedule, and `network-unavailable` NoSchedule when they use the host network; all
  with `operator: Exists` and no `tolerationSeconds`.
- `node_should_run_daemon_pod(node, ds)` → (should run, should continue running): the
  template's nodeName, nodeSelector and required node affinity must match; untolerated
  NoSchedule / NoExecute taints stop new pods, only untolerated NoExecute ones evict.
- Pods are labelled `controller-revision-hash: <hash>` (and `pod-template-generation`
  when the DaemonSet carries `deprecated.daemonset.template.generation`) and pinned to
  their node by a required node affinity `matchFields metadata.name In [<node>]`; the
  scheduler binds them (upstream ≥ 1.12).
- `surge_count` / `unavailable_count`: `maxSurge` / `maxUnavailable` scaled on the
  desired number of nodes, rounding up; both 0 means maxUnavailable 1.
- `FailedPodsBackoff`: per DaemonSet + node, 1 s doubling to 15 min (client-go's
  flowcontrol.Backoff), so a pod the kubelet keeps failing is not replaced in a hot loop.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pyk8s.api import scheduling
from pyk8s.api.meta import parse_time
from pyk8s.api.scheduling import OBJECT_NAME_FIELD, find_untolerated_taint
from pyk8s.controllers.deployment_util import scaled_value_from_int_or_percent

Obj = dict[str, Any]

DEFAULT_DAEMONSET_UNIQUE_LABEL_KEY = "controller-revision-hash"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
TAINT_PID_PRESSURE = "node.kubernetes.io/pid-pressure"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"

NO_EXECUTE = "NoExecute"
NO_SCHEDULE = "NoSchedule"


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


# -- tolerations --------------------------------------------------------------------------------
def _match_toleration(a: Obj, b: Obj) -> bool:
    """Toleration.MatchToleration: same key, operator, value and effect."""
    return all((a.get(k) or "") == (b.get(k) or "") for k in ("key", "operator", "value",
                                                                 "effect"))


def add_or_update_toleration(spec: Obj, toleration: Obj) -> None:
    tols = spec.setdefault("tolerations", [])
    for i, t in enumerate(tols):
        if _match_toleration(t, toleration):
            tols[i] = dict(toleration)
            return
    tols.append(dict(toleration))


def daemon_tolerations(host_network: bool) -> list[Obj]:
    out = [{"key": TAINT_NOT_READY, "operator": "Exists", "effect": NO_EXECUTE},
           {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": NO_EXECUTE},
           {"key": TAINT_DISK_PRESSURE, "operator": "Exists", "effect": NO_SCHEDULE},
           {"key": TAINT_MEMORY_PRESSURE, "operator": "Exists", "effect": NO_SCHEDULE},
           {"key": TAINT_PID_PRESSURE, "operator": "Exists", "effect": NO_SCHEDULE},
           {"key": TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": NO_SCHEDULE}]
    if host_network:
        out.append({"key": TAINT_NETWORK_UNAVAILABLE, "operator": "Exists",
                    "effect": NO_SCHEDULE})
    return out


def add_daemon_pod_tolerations(spec: Obj) -> None:
    """upstream's AddOrUpdateDaemonPodTolerations (in place)."""
    for t in daemon_tolerations(bool(spec.get("hostNetwork"))):
        add_or_update_toleration(spec, t)


def has_untolerated_taint(taints: list[Obj], tolerations: list[Obj],
                          effects: tuple[str, ...]) -> bool:
    """FindMatchingUntoleratedTaint restricted to `effects`."""
    return find_untolerated_taint(taints, tolerations, effects) is not None


# -- node affinity ------------------------------------------------------------------------------
def required_node_affinity_matches(pod_spec: Obj, node: Obj) -> bool:
    """nodeaffinity.GetRequiredNodeAffinity(pod).Match(node): nodeSelector and the
    required terms (ORed)."""
    md = _md(node)
    return scheduling.required_node_affinity_matches(
        pod_spec, md.get("labels") or {}, md.get("name"), name_field_only=True)


def replace_node_name_affinity(affinity: Obj | None, node_name: str) -> Obj:
    """upstream's ReplaceDaemonSetPodNodeNameNodeAffinity: the required node selector
    becomes one term `matchFields metadata.name In [node]` (preferred terms and pod
    (anti-)affinity are kept)."""
    out = copy.deepcopy(affinity) if affinity else {}
    na = out.setdefault("nodeAffinity", {})
    na["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": OBJECT_NAME_FIELD, "operator": "In",
                          "values": [node_name]}]}]}
    return out


def target_node_name(pod: Obj) -> str | None:
    """spec.nodeName, or the single node the pod's required affinity names
    (upstream's GetTargetNodeName); None when neither says."""
    spec = _spec(pod)
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    na = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    terms = (na.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get(
        "nodeSelectorTerms") or []
    if len(terms) != 1:
        return None
    for f in terms[0].get("matchFields") or []:
        if f.get("key") == OBJECT_NAME_FIELD and f.get("operator") == "In" and \
                len(f.get("values") or []) == 1:
            return str(f["values"][0])
    return None


# -- placement ----------------------------------------------------------------------------------
def new_daemon_pod_spec(ds: Obj, node_name: str) -> Obj:
    """The spec a daemon pod for `node_name` would have (upstream's NewPod)."""
    spec = copy.deepcopy(_spec(_spec(ds).get("template") or {}))
    spec["nodeName"] = node_name
    add_daemon_pod_tolerations(spec)
    return spec


def node_should_run_daemon_pod(node: Obj, ds: Obj) -> tuple[bool, bool]:
    """(shouldRun, shouldContinueRunning) of upstream's NodeShouldRunDaemonPod."""
    name = str(_md(node).get("name"))
    tmpl_node = _spec(_spec(ds).get("template") or {}).get("nodeName")
    if tmpl_node and tmpl_node != name:
        return False, False
    spec = new_daemon_pod_spec(ds, name)
    if not required_node_affinity_matches(spec, node):
        return False, False
    taints = _spec(node).get("taints") or []
    tolerations = spec.get("tolerations") or []
    if has_untolerated_taint(taints, tolerations, (NO_EXECUTE, NO_SCHEDULE)):
        return False, not has_untolerated_taint(taints, tolerations, (NO_EXECUTE,))
    return True, True


def template_generation(ds: Obj) -> int | None:
    """The `deprecated.daemonset.template.generation` annotation, if any and numeric."""
    v = (_md(ds).get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)
    return _int(v) if v is not None else None


def create_pod_template(template: Obj, generation: int | None, hash_: str) -> Obj:
    """upstream's CreatePodTemplate: the daemon tolerations and the generation / hash
    labels."""
    out = copy.deepcopy(template)
    add_daemon_pod_tolerations(out.setdefault("spec", {}))
    labels = out.setdefault("metadata", {}).setdefault("labels", {})
    if generation is not None:
        labels[TEMPLATE_GENERATION_LABEL] = str(generation)
    if hash_:
        labels[DEFAULT_DAEMONSET_UNIQUE_LABEL_KEY] = hash_
    return out


def is_pod_updated(pod: Obj, hash_: str, generation: int | None) -> bool:
    """upstream's IsPodUpdated: the hash label, or the template generation, matches."""
    labels = _md(pod).get("labels") or {}
    template_matches = generation is not None and \
        labels.get(TEMPLATE_GENERATION_LABEL) == str(generation)
    hash_matches = bool(hash_) and labels.get(DEFAULT_DAEMONSET_UNIQUE_LABEL_KEY) == hash_
    return hash_matches or template_matches


# -- rolling update arithmetic ------------------------------------------------------------------
def _rolling(ds: Obj) -> Obj:
    us = _spec(ds).get("updateStrategy") or {}
    return us.get("rollingUpdate") or {}


def is_rolling_update(ds: Obj) -> bool:
    return ((_spec(ds).get("updateStrategy") or {}).get("type") or "RollingUpdate") == \
        "RollingUpdate"


def allows_surge(ds: Obj) -> bool:
    """A RollingUpdate with a non-zero maxSurge (upstream's AllowsSurge)."""
    if not is_rolling_update(ds):
        return False
    ms = _rolling(ds).get("maxSurge")
    if ms is None:
        return False
    try:
        return scaled_value_from_int_or_percent(ms, 100, True) != 0
    except ValueError:
        return False


def surge_count(ds: Obj, desired: int) -> int:
    if not is_rolling_update(ds):
        return 0
    ms = _rolling(ds).get("maxSurge")
    return 0 if ms is None else scaled_value_from_int_or_percent(ms, desired, True)


def unavailable_count(ds: Obj, desired: int) -> int:
    if not is_rolling_update(ds):
        return 0
    mu = _rolling(ds).get("maxUnavailable")
    return 1 if mu is None else scaled_value_from_int_or_percent(mu, desired, True)


def sort_by_creation_and_phase(pods: list[Obj]) -> list[Obj]:
    """upstream's podByCreationTimestampAndPhase: older first; between equal times, a
    pod with a nodeName, then name order."""
    def key(p: Obj) -> tuple[float, int, str]:
        t = parse_time(_md(p).get("creationTimestamp"))
        return (t.timestamp() if t is not None else 0.0,
                0 if _spec(p).get("nodeName") else 1, str(_md(p).get("name")))
    return sorted(pods, key=key)


# -- the failed-pod backoff ---------------------------------------------------------------------
@dataclass
class _Entry:
    backoff: float
    last_update: float


@dataclass
class FailedPodsBackoff:
    """client-go's flowcontrol.Backoff: per key, `initial` doubling to `maximum`; an
    entry idle for twice the maximum starts again from `initial`."""
    initial: float = 1.0
    maximum: float = 15 * 60.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, _Entry] = field(default_factory=dict)

    def get(self, key: str) -> float:
        e = self._entries.get(key)
        return e.backoff if e is not None else 0.0

    def next(self, key: str, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        e = self._entries.get(key)
        if e is None or now - e.last_update > 2 * self.maximum:
            self._entries[key] = _Entry(self.initial, now)
            return
        e.last_update = now
        e.backoff = min(e.backoff * 2, self.maximum)

    def is_in_backoff_since_update(self, key: str, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        e = self._entries.get(key)
        if e is None or now - e.last_update > 2 * self.maximum:
            return False
        return now - e.last_update < e.backoff

    def gc(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        for k in [k for k, e in self._entries.items() if now - e.last_update > 2 * self.maximum]:
            del self._entries[k]


def failed_pods_backoff_key(ds: Obj, node_name: str) -> str:
    return f"{_md(ds).get('uid')}/{int((ds.get('status') or {}).get('observedGeneration') or 0)}" \
           f"/{node_name}"


__all__ = ["DEFAULT_DAEMONSET_UNIQUE_LABEL_KEY", "TEMPLATE_GENERATION_LABEL",
           "add_daemon_pod_tolerations", "daemon_tolerations", "node_should_run_daemon_pod",
           "replace_node_name_affinity", "target_node_name", "create_pod_template",
           "is_pod_updated", "template_generation", "allows_surge", "surge_count",
           "unavailable_count", "sort_by_creation_and_phase", "FailedPodsBackoff",
           "failed_pods_backoff_key", "required_node_affinity_matches", "is_rolling_update"]

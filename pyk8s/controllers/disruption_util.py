"""The pure parts of the disruption controller (upstream's `pkg/controller/disruption` and
`component-helpers/apps/poddisruptionbudget`): no I/O, times passed in.

Rules (policy/v1 PodDisruptionBudget status):

- `currentHealthy`: the selected pods that are Ready, not terminating
  (`deletionTimestamp` unset) and not in `status.disruptedPods` younger than
  `DELETION_TIMEOUT` (2 min; the eviction subresource records there the pods it let go);
- `desiredHealthy` / `expectedPods`: with `maxUnavailable` (int or percent) the expected
  count is the sum of the scales of the pods' controllers and desiredHealthy =
  max(0, expected − maxUnavailable scaled, rounding up); with an integer `minAvailable`
  desiredHealthy is that integer and expectedPods the number of selected pods; with a
  percentage `minAvailable`, the percentage (rounded up) of the controllers' scale;
- `disruptionsAllowed` = currentHealthy − desiredHealthy, never below 0, and 0 while
  expectedPods is 0;
- `disruptedPods`: entries of pods that are gone, terminating, or older than
  `DELETION_TIMEOUT` are dropped; the earliest expiry of the rest is when to sync again;
- condition `DisruptionAllowed`: True / SufficientPods when disruptions are allowed, else
  False / InsufficientPods; False / SyncFailed (with the error) when a sync fails.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pyk8s.api.meta import parse_time
from pyk8s.controllers.controller_utils import is_pod_ready
from pyk8s.controllers.deployment_util import scaled_value_from_int_or_percent

Obj = dict[str, Any]

DELETION_TIMEOUT = timedelta(minutes=2)
STALE_POD_DISRUPTION_TIMEOUT = timedelta(minutes=2)

DISRUPTION_ALLOWED = "DisruptionAllowed"
SUFFICIENT_PODS = "SufficientPods"
INSUFFICIENT_PODS = "InsufficientPods"
SYNC_FAILED = "SyncFailed"
DISRUPTION_TARGET = "DisruptionTarget"
TERMINATION_BY_KUBELET = "TerminationByKubelet"

IF_HEALTHY_BUDGET = "IfHealthyBudget"
ALWAYS_ALLOW = "AlwaysAllow"


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def spec_of(pdb: Obj) -> Obj:
    return pdb.get("spec") or {}


def status_of(pdb: Obj) -> Obj:
    return pdb.get("status") or {}


# -- counting ----------------------------------------------------------------------------------
def count_healthy_pods(pods: list[Obj], disrupted: dict[str, str], now: datetime) -> int:
    """Ready pods that are neither terminating nor recently allowed to be evicted."""
    healthy = 0
    for pod in pods:
        if _md(pod).get("deletionTimestamp"):
            continue
        since = parse_time(disrupted.get(_md(pod).get("name") or ""))
        if since is not None and since + DELETION_TIMEOUT > now:
            continue
        if is_pod_ready(pod):
            healthy += 1
    return healthy


@dataclass
class DisruptedPods:
    """The kept `status.disruptedPods`, the next time to look again, and the pods that
    were expected to be deleted but were not (upstream's NotDeleted events)."""
    pods: dict[str, str]
    recheck: datetime | None
    not_deleted: list[Obj]


def build_disrupted_pod_map(pods: list[Obj], pdb: Obj, now: datetime) -> DisruptedPods:
    """Upstream's buildDisruptedPodMap: keep entries of live, not-yet-terminating pods
    whose deadline has not passed."""
    recorded = status_of(pdb).get("disruptedPods") or {}
    kept: dict[str, str] = {}
    recheck: datetime | None = None
    not_deleted: list[Obj] = []
    if not recorded:
        return DisruptedPods(kept, None, [])
    for pod in pods:
        md = _md(pod)
        if md.get("deletionTimestamp"):
            continue
        name = md.get("name") or ""
        if name not in recorded:
            continue
        since = parse_time(recorded[name])
        if since is None:
            continue
        expected = since + DELETION_TIMEOUT
        if expected < now:
            not_deleted.append(pod)
            continue
        if recheck is None or expected < recheck:
            recheck = expected
        kept[name] = recorded[name]
    return DisruptedPods(kept, recheck, not_deleted)


def disruptions_allowed(current_healthy: int, desired_healthy: int, expected: int) -> int:
    """Never negative; 0 while no pods are expected (a safe state for a new PDB)."""
    allowed = current_healthy - desired_healthy
    if expected <= 0 or allowed <= 0:
        return 0
    return allowed


# -- desired healthy ---------------------------------------------------------------------------
def needs_controller_scale(pdb: Obj) -> bool:
    """maxUnavailable, or a percentage minAvailable, count against the controllers' scale."""
    spec = spec_of(pdb)
    if spec.get("maxUnavailable") is not None:
        return True
    return isinstance(spec.get("minAvailable"), str)


def desired_from_spec(pdb: Obj, pod_count: int, scale: int | None) -> tuple[int, int]:
    """(expectedCount, desiredHealthy) from the spec; `scale` is the controllers' summed
    scale when `needs_controller_scale`. ValueError for an unusable int-or-percent."""
    spec = spec_of(pdb)
    max_unavailable = spec.get("maxUnavailable")
    min_available = spec.get("minAvailable")
    if max_unavailable is not None:
        expected = int(scale or 0)
        unavailable = scaled_value_from_int_or_percent(max_unavailable, expected, True)
        return expected, max(0, expected - unavailable)
    if min_available is not None:
        if isinstance(min_available, int) and not isinstance(min_available, bool):
            return pod_count, min_available
        expected = int(scale or 0)
        return expected, scaled_value_from_int_or_percent(min_available, expected, True)
    return 0, 0


# -- conditions (apimeta.SetStatusCondition, pdbhelper) -----------------------------------------
def find_condition(conditions: list[Obj] | None, type_: str) -> Obj | None:
    for c in conditions or []:
        if c.get("type") == type_:
            return c
    return None


def set_status_condition(conditions: list[Obj], new: Obj, now: datetime) -> list[Obj]:
    """metav1 SetStatusCondition: lastTransitionTime moves only when the status does."""
    out = [copy.deepcopy(c) for c in conditions]
    cur = find_condition(out, new["type"])
    if cur is None:
        cond = dict(new)
        cond.setdefault("lastTransitionTime", rfc3339(now))
        out.append(cond)
        return out
    if cur.get("status") != new["status"]:
        cur["status"] = new["status"]
        cur["lastTransitionTime"] = new.get("lastTransitionTime") or rfc3339(now)
    cur["reason"] = new.get("reason", "")
    cur["message"] = new.get("message", "")
    cur["observedGeneration"] = new.get("observedGeneration", 0)
    return out


def update_disruption_allowed_condition(status: Obj, now: datetime) -> None:
    """pdbhelper.UpdateDisruptionAllowedCondition, in place on a status dict."""
    allowed = int(status.get("disruptionsAllowed") or 0) > 0
    cond = {"type": DISRUPTION_ALLOWED, "status": "True" if allowed else "False",
            "reason": SUFFICIENT_PODS if allowed else INSUFFICIENT_PODS, "message": "",
            "observedGeneration": int(status.get("observedGeneration") or 0)}
    status["conditions"] = set_status_condition(status.get("conditions") or [], cond, now)


def conditions_up_to_date(pdb: Obj) -> bool:
    """pdbhelper.ConditionsAreUpToDate."""
    status = status_of(pdb)
    cond = find_condition(status.get("conditions"), DISRUPTION_ALLOWED)
    if cond is None:
        return False
    if int(status.get("observedGeneration") or 0) != int(_md(pdb).get("generation") or 0):
        return False
    if int(status.get("disruptionsAllowed") or 0) > 0:
        return cond.get("status") == "True" and cond.get("reason") == SUFFICIENT_PODS
    return cond.get("status") == "False" and cond.get("reason") == INSUFFICIENT_PODS


def new_status(pdb: Obj, current_healthy: int, desired_healthy: int, expected: int,
               disrupted: dict[str, str], now: datetime) -> Obj | None:
    """The status to write, or None when the stored one is already it (updatePdbStatus)."""
    allowed = disruptions_allowed(current_healthy, desired_healthy, expected)
    old = status_of(pdb)
    generation = int(_md(pdb).get("generation") or 0)
    if (int(old.get("currentHealthy") or 0) == current_healthy
            and int(old.get("desiredHealthy") or 0) == desired_healthy
            and int(old.get("expectedPods") or 0) == expected
            and int(old.get("disruptionsAllowed") or 0) == allowed
            and (old.get("disruptedPods") or {}) == disrupted
            and int(old.get("observedGeneration") or 0) == generation
            and conditions_up_to_date(pdb)):
        return None
    status: Obj = {"observedGeneration": generation}
    if disrupted:
        status["disruptedPods"] = dict(disrupted)
    status.update({"disruptionsAllowed": allowed, "currentHealthy": current_healthy,
                   "desiredHealthy": desired_healthy, "expectedPods": expected,
                   "conditions": copy.deepcopy(old.get("conditions") or [])})
    update_disruption_allowed_condition(status, now)
    return status


def fail_safe_status(pdb: Obj, err: str, now: datetime) -> Obj:
    """On a failed sync: disruptionsAllowed 0 and DisruptionAllowed False / SyncFailed."""
    status = copy.deepcopy(status_of(pdb))
    status["disruptionsAllowed"] = 0
    cond = {"type": DISRUPTION_ALLOWED, "status": "False", "reason": SYNC_FAILED,
            "message": err, "observedGeneration": int(status.get("observedGeneration") or 0)}
    status["conditions"] = set_status_condition(status.get("conditions") or [], cond, now)
    return status


# -- stale DisruptionTarget conditions ---------------------------------------------------------
def stale_disruption_wait(pod: Obj, now: datetime,
                          timeout: timedelta = STALE_POD_DISRUPTION_TIMEOUT) -> float | None:
    """Seconds until a non-terminating pod's DisruptionTarget=True condition counts as
    stale (0: now), or None when it has none that can go stale (set by the kubelet, or the
    pod is terminating or terminal)."""
    if _md(pod).get("deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    cond = find_condition(status.get("conditions"), DISRUPTION_TARGET)
    if cond is None or cond.get("status") != "True" or \
            cond.get("reason") == TERMINATION_BY_KUBELET or \
            status.get("phase") in ("Succeeded", "Failed"):
        return None
    since = parse_time(cond.get("lastTransitionTime")) or now
    return max(0.0, (since + timeout - now).total_seconds())


__all__ = ["DELETION_TIMEOUT", "DISRUPTION_ALLOWED", "SUFFICIENT_PODS", "INSUFFICIENT_PODS",
           "SYNC_FAILED", "DISRUPTION_TARGET", "IF_HEALTHY_BUDGET", "ALWAYS_ALLOW",
           "count_healthy_pods", "build_disrupted_pod_map", "disruptions_allowed",
           "needs_controller_scale", "desired_from_spec", "set_status_condition",
           "update_disruption_allowed_condition", "conditions_up_to_date", "new_status",
           "fail_safe_status", "stale_disruption_wait", "find_condition", "DisruptedPods"]

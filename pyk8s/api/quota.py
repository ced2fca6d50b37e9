"""ResourceQuota evaluation, shared by the admission plugin and the quota controller (pure
data, no I/O), after upstream's `pkg/quota/v1/evaluator/core`."""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Iterable

from pyk8s.api.validation import parse_quantity

Obj = dict[str, Any]

# Upstream's legacy object-count names in the core group.
LEGACY_COUNTS = {"pods": "pods", "services": "services", "configmaps": "configmaps",
                 "secrets": "secrets", "replicationcontrollers": "replicationcontrollers",
                 "resourcequotas": "resourcequotas",
                 "persistentvolumeclaims": "persistentvolumeclaims"}
POD_COMPUTE = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu",
               "memory", "requests.ephemeral-storage", "limits.ephemeral-storage",
               "ephemeral-storage")
POD_SCOPES = ("BestEffort", "NotBestEffort", "Terminating", "NotTerminating", "PriorityClass")


def count_name(group: str, plural: str) -> str:
    return f"count/{plural}.{group}" if group else f"count/{plural}"


def resource_for(name: str) -> tuple[str, str] | None:
    """(group, plural) whose objects a quota resource name counts or measures."""
    if name in LEGACY_COUNTS:
        return "", LEGACY_COUNTS[name]
    if name in POD_COMPUTE:
        return "", "pods"
    if name in ("services.loadbalancers", "services.nodeports"):
        return "", "services"
    if name == "requests.storage" or name.endswith(".storageclass.storage.k8s.io/requests.storage") \
            or name.endswith(".storageclass.storage.k8s.io/persistentvolumeclaims"):
        return "", "persistentvolumeclaims"
    if name.startswith("count/"):
        rest = name[len("count/"):]
        plural, _, group = rest.partition(".")
        return group, plural
    return None


def parse(value: Any) -> Fraction:
    q = parse_quantity(value)
    return q if q is not None else Fraction(0)


def format_quantity(q: Fraction) -> str:
    """A quantity as upstream prints it for counts and milli-units (decimal SI)."""
    if q.denominator == 1:
        return str(q.numerator)
    milli = q * 1000
    if milli.denominator == 1:
        return f"{milli.numerator}m"
    return f"{float(q):g}"


def pod_is_terminal(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed")


def _containers(pod: Obj) -> list[Obj]:
    spec = pod.get("spec") or {}
    return list(spec.get("containers") or [])


def pod_requests_limits(pod: Obj) -> tuple[dict[str, Fraction], dict[str, Fraction]]:
    """Pod-level requests and limits: the sum over containers, max'ed with each init
    container (as upstream's PodRequests / PodLimits)."""
    req: dict[str, Fraction] = {}
    lim: dict[str, Fraction] = {}
    for c in _containers(pod):
        res = c.get("resources") or {}
        for k, v in (res.get("requests") or {}).items():
            req[k] = req.get(k, Fraction(0)) + parse(v)
        for k, v in (res.get("limits") or {}).items():
            lim[k] = lim.get(k, Fraction(0)) + parse(v)
    for c in (pod.get("spec") or {}).get("initContainers") or []:
        res = c.get("resources") or {}
        for k, v in (res.get("requests") or {}).items():
            req[k] = max(req.get(k, Fraction(0)), parse(v))
        for k, v in (res.get("limits") or {}).items():
            lim[k] = max(lim.get(k, Fraction(0)), parse(v))
    return req, lim


def is_best_effort(pod: Obj) -> bool:
    for c in _containers(pod) + list((pod.get("spec") or {}).get("initContainers") or []):
        res = c.get("resources") or {}
        if res.get("requests") or res.get("limits"):
            return False
    return True


def usage(group: str, plural: str, obj: Obj) -> dict[str, Fraction]:
    """What one object uses, under every name a quota may limit."""
    out: dict[str, Fraction] = {count_name(group, plural): Fraction(1)}
    if group == "" and plural in LEGACY_COUNTS:
        out[plural] = Fraction(1)
    if group == "" and plural == "pods":
        if pod_is_terminal(obj):
            return {}
        req, lim = pod_requests_limits(obj)
        for r in ("cpu", "memory", "ephemeral-storage"):
            if r in req:
                out[f"requests.{r}"] = req[r]
                out[r] = req[r]
            if r in lim:
                out[f"limits.{r}"] = lim[r]
    elif group == "" and plural == "services":
        spec = obj.get("spec") or {}
        t = spec.get("type")
        if t == "LoadBalancer":
            out["services.loadbalancers"] = Fraction(1)
        if t in ("NodePort", "LoadBalancer"):
            out["services.nodeports"] = Fraction(len(spec.get("ports") or []))
    elif group == "" and plural == "persistentvolumeclaims":
        spec = obj.get("spec") or {}
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if storage is not None:
            out["requests.storage"] = parse(storage)
        sc = spec.get("storageClassName")
        if sc:
            out[f"{sc}.storageclass.storage.k8s.io/persistentvolumeclaims"] = Fraction(1)
            if storage is not None:
                out[f"{sc}.storageclass.storage.k8s.io/requests.storage"] = parse(storage)
    return out


def _scope_selector_matches(expr: Obj, pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    scope, op = expr.get("scopeName"), expr.get("operator")
    values = list(expr.get("values") or [])
    if scope == "PriorityClass":
        pc = spec.get("priorityClassName")
        if op == "Exists":
            return bool(pc)
        if op == "DoesNotExist":
            return not pc
        if op == "In":
            return bool(pc) and pc in values
        if op == "NotIn":
            return not pc or pc not in values
        return False
    return scope_matches(str(scope), pod)


def scope_matches(scope: str, pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    if scope == "BestEffort":
        return is_best_effort(pod)
    if scope == "NotBestEffort":
        return not is_best_effort(pod)
    if scope == "Terminating":
        return spec.get("activeDeadlineSeconds") is not None
    if scope == "NotTerminating":
        return spec.get("activeDeadlineSeconds") is None
    if scope == "PriorityClass":
        return bool(spec.get("priorityClassName"))
    return False


def quota_selects(quota: Obj, group: str, plural: str, obj: Obj) -> bool:
    """Whether `quota`'s scopes select `obj` (scoped quotas track pods only)."""
    spec = quota.get("spec") or {}
    scopes = list(spec.get("scopes") or [])
    exprs = list((spec.get("scopeSelector") or {}).get("matchExpressions") or [])
    if not scopes and not exprs:
        return True
    if (group, plural) != ("", "pods"):
        return False
    return all(scope_matches(s, obj) for s in scopes) and \
        all(_scope_selector_matches(e, obj) for e in exprs)


def compute_used(quota: Obj, objects: dict[tuple[str, str], Iterable[Obj]]) -> dict[str, str]:
    """`status.used` of a quota from the objects of its namespace, per (group, plural)."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    totals: dict[str, Fraction] = {name: Fraction(0) for name in hard}
    for (group, plural), items in objects.items():
        for o in items:
            if not quota_selects(quota, group, plural, o):
                continue
            for name, q in usage(group, plural, o).items():
                if name in totals:
                    totals[name] += q
    return {name: format_quantity(q) for name, q in sorted(totals.items())}

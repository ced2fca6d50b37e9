"""Conversion between the version a client speaks and the version objects are stored in.

Where several group-versions serve the same objects (autoscaling v1 and v2 HPAs, core and
events.k8s.io Events) they share storage in one version, as upstream; a `Conversion` maps
objects in and out. Pure functions over dicts; inputs are never mutated.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

from pyk8s.api.catalogue import ResourceInfo

Obj = dict[str, Any]
Convert = Callable[[Obj], Obj]


@dataclass(frozen=True)
class Conversion:
    to_storage: Convert
    to_external: Convert


def _rename(obj: Obj, pairs: list[tuple[str, str]], api_version: str) -> Obj:
    out = {k: v for k, v in obj.items() if k not in dict(pairs)}
    for src, dst in pairs:
        if src in obj:
            out[dst] = copy.deepcopy(obj[src])
    out["apiVersion"] = api_version
    return out


# -- events: events.k8s.io/v1 ↔ core v1 (stored) ---------------------------------------------
_EVENT_FIELDS = [("regarding", "involvedObject"), ("note", "message"),
                 ("reportingController", "reportingComponent"), ("deprecatedSource", "source"),
                 ("deprecatedFirstTimestamp", "firstTimestamp"),
                 ("deprecatedLastTimestamp", "lastTimestamp"), ("deprecatedCount", "count")]


def _event_to_core(obj: Obj) -> Obj:
    out = _rename(obj, _EVENT_FIELDS, "v1")
    series = obj.get("series")
    if isinstance(series, dict):
        out["series"] = {"count": series.get("count"),
                         "lastObservedTime": series.get("lastObservedTime")}
    return out


def _event_from_core(obj: Obj) -> Obj:
    out = _rename(obj, [(b, a) for a, b in _EVENT_FIELDS], "events.k8s.io/v1")
    return out


# -- HPA: autoscaling/v1 ↔ autoscaling/v2 (stored) ------------------------------------------
def _hpa_v1_to_v2(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v2"
    spec = out.get("spec") or {}
    target = spec.pop("targetCPUUtilizationPercentage", None)
    if target is not None:
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}]
    status = out.get("status")
    if isinstance(status, dict):
        current = status.pop("currentCPUUtilizationPercentage", None)
        if current is not None:
            status["currentMetrics"] = [{"type": "Resource", "resource": {
                "name": "cpu", "current": {"averageUtilization": current}}}]
    return out


def _hpa_v2_to_v1(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v1"
    spec = out.get("spec") or {}
    for m in spec.pop("metrics", None) or []:
        res = m.get("resource") or {}
        if m.get("type") == "Resource" and res.get("name") == "cpu":
            util = (res.get("target") or {}).get("averageUtilization")
            if util is not None:
                spec["targetCPUUtilizationPercentage"] = util
    spec.pop("behavior", None)
    status = out.get("status")
    if isinstance(status, dict):
        for m in status.pop("currentMetrics", None) or []:
            res = m.get("resource") or {}
            if m.get("type") == "Resource" and res.get("name") == "cpu":
                util = (res.get("current") or {}).get("averageUtilization")
                if util is not None:
                    status["currentCPUUtilizationPercentage"] = util
        status.pop("conditions", None)
    return out


_CONVERSIONS: dict[tuple[str, str, str], Conversion] = {
    ("events.k8s.io", "v1", "Event"): Conversion(_event_to_core, _event_from_core),
    ("autoscaling", "v1", "HorizontalPodAutoscaler"): Conversion(_hpa_v1_to_v2, _hpa_v2_to_v1),
}


def conversion_for(info: ResourceInfo) -> Conversion | None:
    return _CONVERSIONS.get((info.group, info.version, info.kind))

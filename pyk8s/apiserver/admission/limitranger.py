"""LimitRanger: container defaults from the namespace's LimitRanges (mutating, on pod
create) and their min / max / maxLimitRequestRatio (validating), as upstream's
`plugin/pkg/admission/limitranger`."""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Awaitable, Callable

from pyk8s.api import quota
from pyk8s.apiserver.admission.chain import CREATE, UPDATE, Attributes, Plugin, forbidden

Obj = dict[str, Any]
ListFn = Callable[[str, str, str, str], Awaitable[list[Obj]]]
ANNOTATION = "kubernetes.io/limit-ranger"


def container_defaults(item: Obj) -> tuple[Obj, Obj]:
    """(default limits, default requests) of a Container item, with upstream's LimitRange
    defaulting: default ← max, defaultRequest ← default, else min."""
    limits = dict(item.get("default") or {})
    for k, v in (item.get("max") or {}).items():
        limits.setdefault(k, v)
    requests = dict(item.get("defaultRequest") or {})
    for k, v in limits.items():
        requests.setdefault(k, v)
    for k, v in (item.get("min") or {}).items():
        requests.setdefault(k, v)
    return limits, requests


class LimitRanger(Plugin):
    name = "LimitRanger"
    mutating = True
    validating = True

    def __init__(self, list_objects: ListFn) -> None:
        self.list_objects = list_objects

    def handles(self, attrs: Attributes) -> bool:
        return attrs.group == "" and attrs.resource == "pods" and not attrs.subresource and \
            attrs.operation in (CREATE, UPDATE) and attrs.object is not None

    async def _items(self, namespace: str, typ: str) -> list[Obj]:
        out = []
        for lr in await self.list_objects("", "v1", "limitranges", namespace):
            for item in (lr.get("spec") or {}).get("limits") or []:
                if item.get("type") == typ:
                    out.append(item)
        return out

    async def admit(self, attrs: Attributes) -> None:
        if attrs.operation != CREATE:
            return
        items = await self._items(attrs.namespace, "Container")
        if not items:
            return
        pod = attrs.object
        assert pod is not None
        notes: list[str] = []
        for item in items:
            limits, requests = container_defaults(item)
            for c in list((pod.get("spec") or {}).get("containers") or []) + \
                    list((pod.get("spec") or {}).get("initContainers") or []):
                res = c.setdefault("resources", {})
                for kind, defaults in (("limits", limits), ("requests", requests)):
                    for k, v in defaults.items():
                        have = res.get(kind) or {}
                        if k in have:
                            continue
                        # a request never defaults above an explicit limit
                        if kind == "requests" and k in (res.get("limits") or {}) and \
                                k not in limits:
                            continue
                        if kind == "requests" and k in (res.get("limits") or {}) and \
                                quota.parse(v) > quota.parse(res["limits"][k]):
                            v = res["limits"][k]
                        res.setdefault(kind, {})[k] = v
                        notes.append(f"{k} {kind[:-1]} for container {c.get('name')}")
                if not res:
                    c.pop("resources", None)
        if notes:
            anns = pod.setdefault("metadata", {}).setdefault("annotations", {})
            anns[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)

    async def validate(self, attrs: Attributes) -> None:
        pod = attrs.object
        assert pod is not None
        errs: list[str] = []
        for item in await self._items(attrs.namespace, "Container"):
            for c in (pod.get("spec") or {}).get("containers") or []:
                res = c.get("resources") or {}
                errs += _check(item, "Container", res.get("requests") or {},
                               res.get("limits") or {})
        for item in await self._items(attrs.namespace, "Pod"):
            req, lim = quota.pod_requests_limits(pod)
            errs += _check(item, "Pod", req, lim)
        if errs:
            raise forbidden(attrs, errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")


def _check(item: Obj, typ: str, requests: dict[str, Any], limits: dict[str, Any]) -> list[str]:
    errs: list[str] = []
    for k, v in (item.get("min") or {}).items():
        minv = quota.parse(v)
        if k not in requests:
            errs.append(f"minimum {k} usage per {typ} is {v}.  No request is specified")
        elif _q(requests[k]) < minv:
            errs.append(f"minimum {k} usage per {typ} is {v}, but request is "
                        f"{_s(requests[k])}")
    for k, v in (item.get("max") or {}).items():
        maxv = quota.parse(v)
        if k not in limits:
            errs.append(f"maximum {k} usage per {typ} is {v}.  No limit is specified")
        elif _q(limits[k]) > maxv:
            errs.append(f"maximum {k} usage per {typ} is {v}, but limit is {_s(limits[k])}")
    for k, v in (item.get("maxLimitRequestRatio") or {}).items():
        if k in limits and k in requests and _q(requests[k]) > 0:
            ratio = _q(limits[k]) / _q(requests[k])
            if ratio > quota.parse(v):
                errs.append(f"{k} max limit to request ratio per {typ} is {v}, but provided "
                            f"ratio is {float(ratio):f}")
    return errs


def _q(v: Any) -> Fraction:
    return v if isinstance(v, Fraction) else quota.parse(v)


def _s(v: Any) -> str:
    return quota.format_quantity(v) if isinstance(v, Fraction) else str(v)

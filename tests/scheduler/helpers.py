"""Builders for scheduler unit tests."""
from __future__ import annotations

from typing import Any

from pyk8s.scheduler.framework import NodeInfo, PodInfo

Obj = dict[str, Any]


def node(name: str, cpu: str = "4", memory: str = "32Gi", pods: int = 110,
         labels: dict | None = None, taints: list | None = None, unschedulable: bool = False,
         extra: dict | None = None, images: list | None = None) -> NodeInfo:
    alloc = {"cpu": cpu, "memory": memory, "pods": str(pods), **(extra or {})}
    return NodeInfo({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                           **(labels or {})}},
                     "spec": {"taints": taints or [], "unschedulable": unschedulable},
                     "status": {"allocatable": alloc, "capacity": alloc,
                                "images": images or []}})


def pod(name: str, cpu: str | None = None, memory: str | None = None, ns: str = "default",
        labels: dict | None = None, priority: int = 0, **spec: Any) -> PodInfo:
    req = {}
    if cpu:
        req["cpu"] = cpu
    if memory:
        req["memory"] = memory
    c: Obj = {"name": "c", "image": spec.pop("image", "busybox"),
              "resources": {"requests": req} if req else {}}
    if "ports" in spec:
        c["ports"] = spec.pop("ports")
    if "extended" in spec:
        c["resources"].setdefault("requests", {}).update(spec.pop("extended"))
    s = {"containers": [c], "priority": priority, **spec}
    return PodInfo({"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                                 "labels": labels or {}}, "spec": s})


def on(n: NodeInfo, *pods: PodInfo) -> NodeInfo:
    for p in pods:
        n.add_pod(p)
    return n

"""Node-side pod admission (upstream's lifecycle predicateAdmitHandler): a pod bound to the
node that does not fit it — resources against allocatable given the pods already admitted,
nodeName, nodeSelector / required node affinity, host ports, untolerated NoExecute taints
(not checked for static pods) — is rejected: phase Failed, no container started.

The checks are the scheduler's (pyk8s.scheduler), as upstream reuses its AdmissionCheck."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from pyk8s.kubelet.staticpods import is_static_pod
from pyk8s.scheduler.framework import CPU, EPHEMERAL, MEMORY, NodeInfo, PodInfo
from pyk8s.scheduler.plugins import node_affinity, node_name, node_ports
from pyk8s.scheduler.plugins.node_ports import port_conflict
from pyk8s.scheduler.plugins.taint_toleration import tolerated

Obj = dict[str, Any]

TAINT_REASON = "node(s) had untolerated taint"


@dataclass
class AdmitResult:
    admit: bool
    reason: str = ""
    message: str = ""


def _insufficient(pod: PodInfo, node: NodeInfo) -> list[tuple[str, int, int, int]]:
    """(resource, requested, used, capacity) of what the node lacks, in upstream's order
    (noderesources.Fits: pods, cpu, memory, ephemeral-storage, scalar resources)."""
    out = []
    alloc, used, req = node.allocatable, node.requested, pod.requests
    if len(node.pods) + 1 > alloc.pods:
        out.append(("pods", 1, len(node.pods), alloc.pods))
    for name in (CPU, MEMORY, EPHEMERAL):
        r = req.get(name)
        if r and r > alloc.get(name) - used.get(name):
            out.append((name, r, used.get(name), alloc.get(name)))
    for k, v in req.scalar.items():
        if v and v > alloc.scalar.get(k, 0) - used.scalar.get(k, 0):
            out.append((k, v, used.scalar.get(k, 0), alloc.scalar.get(k, 0)))
    return out


def admit(pod: Obj, node: Obj, others: Iterable[Obj]) -> AdmitResult:
    """Whether `pod` may run on `node` next to `others` (the pods already admitted and
    not terminated). On rejection: upstream's reason (`OutOfcpu`, `NodeAffinity`, ...)
    and message (the kubelet prefixes `Pod was rejected: `)."""
    info = NodeInfo(node)
    for o in others:
        info.add_pod(PodInfo(o))
    p = PodInfo(pod)
    for name, requested, used, capacity in _insufficient(p, info):
        return AdmitResult(False, f"OutOf{name}",
                           f"Node didn't have enough resource: {name}, requested: "
                           f"{requested}, used: {used}, capacity: {capacity}")
    if not node_affinity.pod_matches_node(p, info):
        return AdmitResult(False, "NodeAffinity", node_affinity.REASON)
    if p.node_name and p.node_name != info.name:
        return AdmitResult(False, "NodeName", node_name.REASON)
    if any(port_conflict(info.used_ports, want) for want in p.ports):
        return AdmitResult(False, "NodePorts", node_ports.REASON)
    if not is_static_pod(pod):
        for t in info.taints:
            if t.get("effect") == "NoExecute" and not tolerated(p.tolerations, t):
                return AdmitResult(False, "TaintToleration", TAINT_REASON)
    return AdmitResult(True)


def rejected_status(pod: Obj, result: AdmitResult) -> Obj:
    """What the kubelet posts for a rejected pod (upstream's rejectPod)."""
    cur = pod.get("status") or {}
    st: Obj = {"phase": "Failed", "reason": result.reason,
               "message": f"Pod was rejected: {result.message}"}
    if cur.get("conditions"):
        st["conditions"] = cur["conditions"]
    return st

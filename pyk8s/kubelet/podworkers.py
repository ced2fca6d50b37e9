"""Pod status building (pure) and the per-node pod IP pool of the fake network."""
from __future__ import annotations

import ipaddress
import zlib
from typing import Any

from pyk8s.kubelet.runtime import ContainerStatus

Obj = dict[str, Any]


def default_pod_cidr(node_name: str) -> str:
    """A per-node /24 in 10.244.0.0/16 (stable for a name), for the fake network."""
    return f"10.244.{zlib.crc32(node_name.encode()) % 256}.0/24"


class PodIPAM:
    """Pod IPs from one /24: .1 is the gateway, .2 … .254 are handed out, lowest free first."""

    def __init__(self, cidr: str) -> None:
        net = ipaddress.ip_network(cidr, strict=False)
        self._free = [str(ip) for ip in list(net.hosts())[1:]]
        self._by_uid: dict[str, str] = {}

    def allocate(self, uid: str) -> str:
        ip = self._by_uid.get(uid)
        if ip is None:
            if not self._free:
                raise RuntimeError("pod CIDR exhausted")
            ip = self._free.pop(0)
            self._by_uid[uid] = ip
        return ip

    def release(self, uid: str) -> None:
        ip = self._by_uid.pop(uid, None)
        if ip is not None:
            self._free.append(ip)
            self._free.sort(key=lambda s: ipaddress.ip_address(s))

    def get(self, uid: str) -> str | None:
        return self._by_uid.get(uid)


def container_status_obj(c: ContainerStatus) -> Obj:
    if c.state == "running":
        state: Obj = {"running": {"startedAt": c.started_at}}
    elif c.state == "exited":
        state = {"terminated": {"exitCode": c.exit_code, "reason": c.reason,
                                "startedAt": c.started_at, "finishedAt": c.finished_at,
                                "containerID": c.container_id}}
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    running = c.state == "running"
    out: Obj = {"name": c.name, "image": c.image, "imageID": c.image_id,
                "containerID": c.container_id, "restartCount": c.restart_count,
                "lastState": {}, "state": state,
                # No probes yet: a running container is ready (upstream: no readinessProbe).
                "ready": running or (c.init and c.state == "exited" and c.exit_code == 0),
                "started": running}
    if c.init:
        out["started"] = False
    return out


def _condition(ctype: str, ok: bool, prev: dict[str, Obj], now: str,
               reason: str = "") -> Obj:
    status = "True" if ok else "False"
    old = prev.get(ctype)
    transition = (old["lastTransitionTime"] if old and old.get("status") == status
                  and old.get("lastTransitionTime") else now)
    c: Obj = {"type": ctype, "status": status, "lastProbeTime": None,
              "lastTransitionTime": transition}
    if not ok and reason:
        c["reason"] = reason
    return c


def build_pod_status(pod: Obj, containers: list[ContainerStatus], pod_ip: str, host_ip: str,
                     now: str) -> Obj:
    """The status the kubelet posts for a pod whose containers are `containers` (in the
    runtime's order): phase, upstream's conditions, container statuses, IPs, startTime."""
    spec, cur = pod.get("spec") or {}, pod.get("status") or {}
    prev = {c.get("type"): c for c in cur.get("conditions") or []}
    by_name = {c.name: c for c in containers if not c.init}
    init_by_name = {c.name: c for c in containers if c.init}
    statuses = []
    for ctr in spec.get("containers") or []:
        c = by_name.get(ctr["name"])
        statuses.append(container_status_obj(c) if c else {
            "name": ctr["name"], "image": ctr.get("image", ""), "imageID": "",
            "ready": False, "started": False, "restartCount": 0, "lastState": {},
            "state": {"waiting": {"reason": "ContainerCreating"}}})
    init_statuses = []
    for ctr in spec.get("initContainers") or []:
        c = init_by_name.get(ctr["name"])
        init_statuses.append(container_status_obj(c) if c else {
            "name": ctr["name"], "image": ctr.get("image", ""), "imageID": "",
            "ready": False, "started": False, "restartCount": 0, "lastState": {},
            "state": {"waiting": {"reason": "PodInitializing"}}})
    initialized = all(s["ready"] for s in init_statuses)
    containers_ready = initialized and bool(statuses) and all(s["ready"] for s in statuses)
    running = any("running" in s["state"] for s in statuses)
    scheduled = prev.get("PodScheduled") or {"type": "PodScheduled", "status": "True",
                                             "lastProbeTime": None,
                                             "lastTransitionTime": now}
    conditions = [
        _condition("PodReadyToStartContainers", True, prev, now),
        _condition("Initialized", initialized, prev, now, "ContainersNotInitialized"),
        _condition("Ready", containers_ready, prev, now, "ContainersNotReady"),
        _condition("ContainersReady", containers_ready, prev, now, "ContainersNotReady"),
        scheduled,
    ]
    ip = host_ip if spec.get("hostNetwork") else pod_ip
    status: Obj = {"phase": "Running" if running else "Pending", "conditions": conditions,
                   "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                   "podIP": ip, "podIPs": [{"ip": ip}],
                   "startTime": cur.get("startTime") or now,
                   "containerStatuses": statuses}
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    if cur.get("qosClass"):
        status["qosClass"] = cur["qosClass"]
    return status


STATUS_KEYS = ("phase", "conditions", "hostIP", "hostIPs", "podIP", "podIPs", "startTime",
               "containerStatuses", "initContainerStatuses")


def pod_status_changed(current: Obj | None, desired: Obj) -> bool:
    cur = current or {}
    return any(cur.get(k) != desired.get(k) for k in STATUS_KEYS if k in desired)

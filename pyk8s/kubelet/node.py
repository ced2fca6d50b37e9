"""The Node object the kubelet registers and keeps current: capacity, addresses, nodeInfo
and the four conditions, with upstream's reasons and messages and its update rules
(status posted on change, else every `nodeStatusReportFrequency`)."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

Obj = dict[str, Any]

KUBELET_VERSION = "v1.32.0"
NODE_STATUS_UPDATE_FREQUENCY = 10.0      # upstream nodeStatusUpdateFrequency: how often checked
NODE_STATUS_REPORT_FREQUENCY = 300.0     # upstream nodeStatusReportFrequency: post unchanged
MAX_PODS = 110
# Upstream's default evictionHard (memory.available<100Mi, nodefs.available<10%) is
# subtracted from capacity to give allocatable (kube/system reserved default to zero).
EVICTION_MEMORY_BYTES = 100 * 1024 * 1024
EVICTION_NODEFS_FRACTION = 0.10

# (type, reason when healthy, message when healthy), in upstream's order.
CONDITIONS: tuple[tuple[str, str, str, str], ...] = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
     "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)
# What upstream says when a condition goes the other way.
UNHEALTHY: dict[str, tuple[str, str, str]] = {
    "MemoryPressure": ("True", "KubeletHasInsufficientMemory",
                       "kubelet has insufficient memory available"),
    "DiskPressure": ("True", "KubeletHasDiskPressure", "kubelet has disk pressure"),
    "PIDPressure": ("True", "KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
    "Ready": ("False", "KubeletNotReady", "container runtime is down"),
}


def now_rfc3339(t: datetime | None = None) -> str:
    return (t or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_meminfo_bytes(path: str = "/proc/meminfo") -> int:
    """MemTotal from /proc/meminfo, in bytes."""
    with open(path) as f:
        for line in f:
            if line.startswith("MemTotal:"):
                parts = line.split()
                return int(parts[1]) * 1024
    raise RuntimeError(f"{path}: no MemTotal")


def filesystem_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def _ki(n: int) -> str:
    return f"{max(0, n) // 1024}Ki"


@dataclass(frozen=True)
class NodeResources:
    cpu: int
    memory_bytes: int
    ephemeral_bytes: int
    pods: int = MAX_PODS

    def capacity(self) -> Obj:
        return {"cpu": str(self.cpu), "ephemeral-storage": _ki(self.ephemeral_bytes),
                "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                "memory": _ki(self.memory_bytes), "pods": str(self.pods)}

    def allocatable(self) -> Obj:
        eph = int(self.ephemeral_bytes * (1 - EVICTION_NODEFS_FRACTION))
        return {"cpu": str(self.cpu), "ephemeral-storage": str(eph),
                "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                "memory": _ki(self.memory_bytes - EVICTION_MEMORY_BYTES),
                "pods": str(self.pods)}


@dataclass
class NodeHealth:
    """What the conditions report: the runtime's readiness and the pressure signals."""
    runtime_ready: bool = True
    # Why the runtime cannot run pods (its network cannot come up: a pod CIDR another node
    # on this host holds, …): Ready is False with this message, as upstream's
    # "container runtime network not ready" (empty: nothing wrong).
    runtime_error: str = ""
    memory_pressure: bool = False
    disk_pressure: bool = False
    pid_pressure: bool = False

    def healthy(self, cond_type: str) -> bool:
        return {"Ready": self.runtime_ready and not self.runtime_error,
                "MemoryPressure": not self.memory_pressure,
                "DiskPressure": not self.disk_pressure,
                "PIDPressure": not self.pid_pressure}[cond_type]


def build_conditions(previous: list[Obj] | None, health: NodeHealth, now: str) -> list[Obj]:
    """The four conditions at `now`: heartbeat always `now`; lastTransitionTime kept from
    `previous` unless the status flips."""
    prev = {c.get("type"): c for c in previous or []}
    out: list[Obj] = []
    for ctype, ok_status, ok_reason, ok_message in CONDITIONS:
        if health.healthy(ctype):
            status, reason, message = ok_status, ok_reason, ok_message
        else:
            status, reason, message = UNHEALTHY[ctype]
            if ctype == "Ready" and health.runtime_error:
                message = health.runtime_error
        old = prev.get(ctype)
        transition = (old.get("lastTransitionTime") if old and old.get("status") == status
                      and old.get("lastTransitionTime") else now)
        out.append({"type": ctype, "status": status, "lastHeartbeatTime": now,
                    "lastTransitionTime": transition, "reason": reason, "message": message})
    return out


@dataclass
class NodeConfig:
    name: str
    node_ip: str
    resources: NodeResources
    runtime_version: str
    labels: dict[str, str] = field(default_factory=dict)
    kubelet_port: int = 10250
    os_image: str = "pyk8s hollow node"     # a real node: the host's PRETTY_NAME


def host_os_image(path: str = "/etc/os-release") -> str:
    """The host's os-release PRETTY_NAME (what upstream reports as nodeInfo.osImage)."""
    try:
        for line in open(path, encoding="utf-8"):
            key, _, value = line.strip().partition("=")
            if key == "PRETTY_NAME":
                return value.strip().strip('"') or "Linux"
    except OSError:
        pass
    return "Linux"


# Upstream's nodeStatusMaxImages: the Node lists at most this many images, biggest first.
NODE_STATUS_MAX_IMAGES = 50


def node_images(records: list[Any]) -> list[Obj]:
    """status.images from the image store's records (names: digests, then tags)."""
    out = [{"names": list(r.repo_digests) + list(r.repo_tags), "sizeBytes": r.size}
           for r in sorted(records, key=lambda r: (-r.size, r.id))]
    return [i for i in out if i["names"]][:NODE_STATUS_MAX_IMAGES]


def node_labels(cfg: NodeConfig) -> dict[str, str]:
    return {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": cfg.name,
            "kubernetes.io/os": "linux", **cfg.labels}


def build_node_status(cfg: NodeConfig, previous: Obj | None, health: NodeHealth,
                      now: str, boot_id: str = "", machine_id: str = "",
                      images: list[Obj] | None = None) -> Obj:
    prev_conds = (previous or {}).get("conditions")
    status = {
        "capacity": cfg.resources.capacity(),
        "allocatable": cfg.resources.allocatable(),
        "conditions": build_conditions(prev_conds, health, now),
        "addresses": [{"type": "InternalIP", "address": cfg.node_ip},
                      {"type": "Hostname", "address": cfg.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
        "nodeInfo": {"machineID": machine_id, "systemUUID": machine_id, "bootID": boot_id,
                     "kernelVersion": os.uname().release, "osImage": cfg.os_image,
                     "containerRuntimeVersion": cfg.runtime_version,
                     "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
                     "operatingSystem": "linux", "architecture": "amd64"},
    }
    if images is not None:
        status["images"] = images
    return status


def build_node(cfg: NodeConfig, health: NodeHealth, now: str) -> Obj:
    """The Node to register (`POST /api/v1/nodes`)."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": cfg.name, "labels": node_labels(cfg),
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                         "volumes.kubernetes.io/controller-managed-attach-detach":
                                             "true"}},
            "spec": {},
            "status": build_node_status(cfg, None, health, now)}


def _without_heartbeats(status: Obj) -> Obj:
    s = copy.deepcopy(status)
    for c in s.get("conditions") or []:
        c.pop("lastHeartbeatTime", None)
    return s


KEYS = ("capacity", "allocatable", "conditions", "addresses", "daemonEndpoints", "nodeInfo",
        "images")


def status_changed(current: Obj | None, desired: Obj) -> bool:
    """Whether `desired` differs from the posted status beyond heartbeat times."""
    cur = _without_heartbeats({k: (current or {}).get(k) for k in KEYS})
    want = _without_heartbeats({k: desired.get(k) for k in KEYS})
    return cur != want


def should_post(current: Obj | None, desired: Obj, last_report: float | None,
                now_mono: float, report_frequency: float = NODE_STATUS_REPORT_FREQUENCY
                ) -> bool:
    """Upstream's rule (with leases on): post when the status changed, or when
    `nodeStatusReportFrequency` has passed since the last post."""
    if last_report is None or status_changed(current, desired):
        return True
    return now_mono - last_report >= report_frequency

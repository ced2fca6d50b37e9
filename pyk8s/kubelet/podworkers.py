"""Pod status building (pure) and the per-node pod IP pool of the fake network."""
from __future__ import annotations

import heapq
import ipaddress
import zlib
from typing import Any, Callable

from pyk8s.kubelet.runtime import ContainerStatus

Obj = dict[str, Any]


def default_pod_cidr(node_name: str) -> str:
    """A per-node /24 in 10.244.0.0/16 (stable for a name), for the fake network."""
    return f"10.244.{zlib.crc32(node_name.encode()) % 256}.0/24"


class PodIPAM:
    """Pod IPs from one /24: .1 is the gateway, .2 … .254 are handed out, lowest free first."""

    def __init__(self, cidr: str) -> None:
        # Lazy: an offset counter and the released offsets, not 253 strings per node (a
        # thousand hollow nodes share one process).
        net = ipaddress.ip_network(cidr, strict=False)
        self._base = int(net.network_address)
        self._limit = net.num_addresses - 2      # the last host offset (.254 of a /24)
        self._next = 2                           # .1 is the gateway
        self._released: list[int] = []           # a heap of offsets below _next
        self._by_uid: dict[str, str] = {}

    def allocate(self, uid: str) -> str:
        ip = self._by_uid.get(uid)
        if ip is None:
            if self._released:
                off = heapq.heappop(self._released)
            elif self._next <= self._limit:
                off, self._next = self._next, self._next + 1
            else:
                raise RuntimeError("pod CIDR exhausted")
            ip = str(ipaddress.ip_address(self._base + off))
            self._by_uid[uid] = ip
        return ip

    def release(self, uid: str) -> None:
        ip = self._by_uid.pop(uid, None)
        if ip is not None:
            heapq.heappush(self._released, int(ipaddress.ip_address(ip)) - self._base)

    def get(self, uid: str) -> str | None:
        return self._by_uid.get(uid)


def _terminated(c: ContainerStatus) -> Obj:
    term = {"exitCode": c.exit_code, "reason": c.reason, "startedAt": c.started_at,
            "finishedAt": c.finished_at, "containerID": c.container_id}
    if c.message:
        term["message"] = c.message
    return {"terminated": term}


def container_status_obj(c: ContainerStatus, previous: ContainerStatus | None = None,
                         waiting: tuple[str, str] | None = None) -> Obj:
    """`c`: the latest instance of a container; `previous`: the one before (lastState);
    `waiting`: (reason, message) when `c` exited and waits for its restart (back-off)."""
    last: Obj = {}
    if waiting is not None and c.state == "exited":
        state: Obj = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
        last = _terminated(c)
    else:
        if c.state == "running":
            state = {"running": {"startedAt": c.started_at}}
        elif c.state == "exited":
            state = _terminated(c)
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        if previous is not None and previous.state == "exited":
            last = _terminated(previous)
    running = c.state == "running"
    out: Obj = {"name": c.name, "image": c.image, "imageID": c.image_id,
                "containerID": c.container_id, "restartCount": c.restart_count,
                "lastState": last, "state": state,
                # No probes yet: a running container is ready (upstream: no readinessProbe).
                "ready": (running and not c.init) or (c.init and c.state == "exited"
                                                      and c.exit_code == 0),
                "started": running}
    if c.init:
        out["started"] = False
    return out


def pod_phase(spec: Obj, init_statuses: list[Obj], statuses: list[Obj]) -> str:
    """Upstream's getPhase (kubelet_pods.go), without sidecars: from the container
    statuses and the restart policy."""
    policy = spec.get("restartPolicy") or "Always"
    pending_init = failed_init = 0
    for s in init_statuses:
        st, last = s.get("state") or {}, s.get("lastState") or {}
        term = st.get("terminated")
        if term is not None and term.get("exitCode") == 0:
            continue
        pending_init += 1
        if term is not None or (st.get("waiting") is not None
                                and (last.get("terminated") or {}).get("exitCode", 0) != 0):
            failed_init += 1
    running = waiting = stopped = succeeded = unknown = 0
    for s in statuses:
        st = s.get("state") or {}
        if "running" in st:
            running += 1
        elif "terminated" in st:
            stopped += 1
            if st["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in st:
            if (s.get("lastState") or {}).get("terminated") is not None:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init and policy == "Never":
        return "Failed"
    if pending_init or waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


class Backoff:
    """Upstream's flowcontrol.Backoff as the kubelet uses it for container restarts
    (10 s doubling to 5 min; an entry older than twice the maximum is forgotten, i.e. a
    container that ran 10 min starts over at 10 s). Times are seconds (time.time())."""

    def __init__(self, initial: float = 10.0, maximum: float = 300.0) -> None:
        self.initial, self.maximum = initial, maximum
        self._entries: dict[str, tuple[float, float]] = {}   # key -> (backoff, lastUpdate)

    def get(self, key: str) -> float:
        e = self._entries.get(key)
        return e[0] if e else 0.0

    def _expired(self, event_time: float, last_update: float) -> bool:
        return event_time - last_update > 2 * self.maximum

    def in_backoff_since(self, key: str, event_time: float, now: float) -> bool:
        e = self._entries.get(key)
        if e is None or self._expired(event_time, e[1]):
            return False
        return now - event_time < e[0]

    def next(self, key: str, event_time: float) -> None:
        e = self._entries.get(key)
        if e is None or self._expired(event_time, e[1]):
            self._entries[key] = (self.initial, event_time)
        else:
            self._entries[key] = (min(e[0] * 2, self.maximum), event_time)

    def forget(self, prefix: str) -> None:
        for k in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[k]


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() for the whole-ish durations back-offs take: 10s, 1m20s,
    5m0s, 1.5s, 500ms."""
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms else "0s"
    h, rem = divmod(seconds, 3600)
    m, sec = divmod(rem, 60)
    s = f"{sec:.9f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{int(h)}h{int(m)}m{s}"
    if m:
        return f"{int(m)}m{s}"
    return s


def crash_loop_message(backoff: float, container: str, pod: Obj) -> str:
    md = pod.get("metadata") or {}
    return (f"back-off {go_duration(backoff)} restarting failed container={container} "
            f"pod={md.get('name')}_{md.get('namespace')}({md.get('uid')})")


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
                     now: str, waiting: dict[str, tuple[str, str]] | None = None,
                     probes: "Callable[[str, list[Obj]], None] | None" = None) -> Obj:
    """The status the kubelet posts for a pod whose containers are `containers` (in the
    runtime's order, restarts after the instances they replace): phase, upstream's
    conditions, container statuses, IPs, startTime. `waiting`: container name ->
    (reason, message) of exited containers waiting for a restart (CrashLoopBackOff)."""
    spec, cur = pod.get("spec") or {}, pod.get("status") or {}
    waiting = waiting or {}
    prev = {c.get("type"): c for c in cur.get("conditions") or []}
    latest: dict[tuple[bool, str], ContainerStatus] = {}
    before: dict[tuple[bool, str], ContainerStatus] = {}
    for c in containers:
        k = (c.init, c.name)
        if k in latest:
            before[k] = latest[k]
        latest[k] = c

    def entry(ctr: Obj, init: bool, reason: str) -> Obj:
        k = (init, ctr["name"])
        c = latest.get(k)
        if c is not None:
            return container_status_obj(c, before.get(k), waiting.get(ctr["name"]))
        w = waiting.get(ctr["name"])   # not created: CreateContainerConfigError, ...
        return {"name": ctr["name"], "image": ctr.get("image", ""), "imageID": "",
                "ready": False, "started": False, "restartCount": 0, "lastState": {},
                "state": {"waiting": {"reason": w[0], "message": w[1]} if w
                          else {"reason": reason}}}

    init_statuses = [entry(ctr, True, "PodInitializing")
                     for ctr in spec.get("initContainers") or []]
    initialized = all(s["ready"] for s in init_statuses)
    statuses = [entry(ctr, False, "ContainerCreating" if initialized else "PodInitializing")
                for ctr in spec.get("containers") or []]
    phase = pod_phase(spec, init_statuses, statuses)
    if probes is not None:   # the prober sets `started` / `ready` (readiness probes)
        probes(phase, statuses)
    terminal = phase in ("Succeeded", "Failed")
    containers_ready = (initialized and bool(statuses) and all(s["ready"] for s in statuses)
                        and not terminal)
    not_ready = "PodCompleted" if terminal else "ContainersNotReady"
    scheduled = prev.get("PodScheduled") or {"type": "PodScheduled", "status": "True",
                                             "lastProbeTime": None,
                                             "lastTransitionTime": now}
    conditions = [
        _condition("PodReadyToStartContainers", not terminal, prev, now),
        _condition("Initialized", initialized, prev, now,
                   "ContainersNotInitialized"),
        _condition("Ready", containers_ready, prev, now, not_ready),
        _condition("ContainersReady", containers_ready, prev, now, not_ready),
        scheduled,
    ]
    ip = host_ip if spec.get("hostNetwork") else pod_ip
    status: Obj = {"phase": phase, "conditions": conditions,
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

"""The probe manager (upstream prober/prober_manager.go): starts a worker per probe of a
pod's containers, stops them when the pod goes away, fills in each container status's
`started` / `ready` from the results, and tells the kubelet which running container failed
its liveness or startup probe (to be killed and restarted per the restart policy)."""
from __future__ import annotations

import logging
from typing import Any, Callable

from pyk8s.kubelet.prober.results import Result, ResultsManager
from pyk8s.kubelet.prober.worker import LIVENESS, PROBE_TYPES, READINESS, STARTUP, Worker
from pyk8s.kubelet.runtime import ContainerStatus, Runtime

log = logging.getLogger("pyk8s.kubelet.prober")

Obj = dict[str, Any]


class ProbeManager:
    def __init__(self, runtime: Runtime, on_change: Callable[[str], None] | None = None) -> None:
        """`on_change(pod_uid)`: a probe result changed (the kubelet re-syncs the pod)."""
        self.runtime = runtime
        self.results = {k: ResultsManager(on_change) for k in PROBE_TYPES}
        self._workers: dict[tuple[str, str, str], Worker] = {}
        self._pods: dict[str, tuple[Obj, str]] = {}
        self._phase: dict[str, str] = {}
        # Called (pod uid, container, probe type, output) on every failed probe.
        self.on_failure: Callable[[str, str, str, str], None] | None = None

    # -- pods -----------------------------------------------------------------------------
    def add_pod(self, pod: Obj, pod_ip: str) -> None:
        """Start the probe workers of a pod's containers (once per pod, as upstream's
        AddPod; later calls only refresh the pod object the workers read)."""
        uid = pod["metadata"]["uid"]
        first = uid not in self._pods
        self._pods[uid] = (pod, pod_ip)
        if not first or not self.runtime.run_probes:
            return
        for c in (pod.get("spec") or {}).get("containers") or []:
            for kind in PROBE_TYPES:
                if c.get(f"{kind}Probe") and (uid, c["name"], kind) not in self._workers:
                    w = Worker(self, uid, c, kind)
                    self._workers[(uid, c["name"], kind)] = w
                    w.start()

    def remove_pod(self, uid: str) -> None:
        """Stop the pod's workers (they drop their results as they end)."""
        for key, w in list(self._workers.items()):
            if key[0] == uid:
                w.stop()
                self._workers.pop(key, None)
        self._pods.pop(uid, None)
        self._phase.pop(uid, None)

    async def shutdown(self) -> None:
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        for w in list(self._workers.values()):
            w.stop()
            if w.task is not None:
                w.task.cancel()
        self._workers.clear()
        for t in tasks:
            try:
                await t
            except BaseException:
                pass

    def _worker_done(self, w: Worker) -> None:
        if self._workers.get((w.uid, w.name, w.kind)) is w:
            del self._workers[(w.uid, w.name, w.kind)]

    def has_worker(self, uid: str, name: str, kind: str) -> bool:
        return (uid, name, kind) in self._workers

    # -- what the workers read ------------------------------------------------------------
    def pod(self, uid: str) -> tuple[Obj | None, str]:
        return self._pods.get(uid, (None, ""))

    def pod_name(self, uid: str) -> str:
        pod = self._pods.get(uid, (None, ""))[0] or {}
        md = pod.get("metadata") or {}
        return f"{md.get('namespace')}/{md.get('name')}"

    def phase(self, uid: str) -> str:
        return self._phase.get(uid, "")

    def container_status(self, uid: str, name: str) -> ContainerStatus | None:
        found = None
        for c in self.runtime.pod_containers(uid):
            if not c.init and c.name == name:
                found = c
        return found

    def is_started(self, uid: str, name: str, container_id: str, running: bool) -> bool:
        """Upstream isContainerStarted: running, and its startup probe (if any) passed."""
        if not running:
            return False
        r = self.results[STARTUP].get(container_id)
        if r is not None:
            return r == Result.SUCCESS
        return not self.has_worker(uid, name, STARTUP)

    # -- what the kubelet asks ------------------------------------------------------------
    def update_pod_status(self, uid: str, phase: str, statuses: list[Obj]) -> None:
        """Set `started` and `ready` of the (regular) container statuses (upstream
        UpdatePodStatus); no readinessProbe: ready once running and started."""
        self._phase[uid] = phase
        for s in statuses:
            running = "running" in (s.get("state") or {})
            cid = s.get("containerID") or ""
            started = self.is_started(uid, s["name"], cid, running)
            s["started"] = started
            if not started:
                s["ready"] = False
                continue
            if self.results[READINESS].get(cid) == Result.SUCCESS:
                ready = True
            else:
                w = self._workers.get((uid, s["name"], READINESS))
                ready = w is None
                if w is not None:
                    w.trigger.set()   # probe at once (e.g. the startup probe just passed)
            s["ready"] = ready

    def kill_reason(self, uid: str, c: ContainerStatus, pod: Obj) -> tuple[str, float] | None:
        """(message, grace period) when a running container failed its liveness or startup
        probe and must be killed (upstream computePodActions)."""
        if c.state != "running" or c.init:
            return None
        if self.results[LIVENESS].get(c.container_id) == Result.FAILURE:
            kind = LIVENESS
        elif self.results[STARTUP].get(c.container_id) == Result.FAILURE:
            kind = STARTUP
        else:
            return None
        spec = pod.get("spec") or {}
        grace: Any = spec.get("terminationGracePeriodSeconds")
        for ctr in spec.get("containers") or []:
            if ctr.get("name") == c.name:
                probe_grace = (ctr.get(f"{kind}Probe") or {}).get(
                    "terminationGracePeriodSeconds")
                if probe_grace is not None:
                    grace = probe_grace
        grace = 30.0 if grace is None else float(grace)
        return f"Container {c.name} failed {kind} probe, will be restarted", grace

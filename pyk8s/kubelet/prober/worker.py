"""One probe worker per (pod, container, probe type) (upstream prober/worker.go): probes
every periodSeconds, keeps the result until successThreshold / failureThreshold
consecutive results agree, and holds after a liveness / startup failure until the
container is replaced."""
from __future__ import annotations

import asyncio
import calendar
import logging
import time
from typing import TYPE_CHECKING, Any

from pyk8s.kubelet.prober.handlers import run_handler
from pyk8s.kubelet.prober.results import Result, ResultsManager

if TYPE_CHECKING:
    from pyk8s.kubelet.prober.manager import ProbeManager

log = logging.getLogger("pyk8s.kubelet.prober")

Obj = dict[str, Any]

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"
PROBE_TYPES = (LIVENESS, READINESS, STARTUP)
INITIAL = {READINESS: Result.FAILURE, LIVENESS: Result.SUCCESS, STARTUP: Result.UNKNOWN}


def _since(rfc3339: str) -> float:
    """Seconds since an RFC 3339 time (UTC, `Z`); 0 when unparsable."""
    try:
        t = calendar.timegm(time.strptime(rfc3339[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0
    return time.time() - t


class Worker:
    def __init__(self, manager: "ProbeManager", pod_uid: str, container: Obj,
                 kind: str) -> None:
        self.m = manager
        self.uid = pod_uid
        self.container = container
        self.name = container["name"]
        self.kind = kind
        self.spec: Obj = container.get(f"{kind}Probe") or {}
        self.results: ResultsManager = manager.results[kind]
        self.container_id = ""
        self.last_result: Result | None = None
        self.result_run = 0
        self.on_hold = False
        self.trigger = asyncio.Event()
        self._stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    # timing fields with upstream's defaults
    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds") or 1)

    @property
    def success_threshold(self) -> int:
        return int(self.spec.get("successThreshold") or 1)

    @property
    def failure_threshold(self) -> int:
        return int(self.spec.get("failureThreshold") or 3)

    def start(self) -> None:
        self.task = asyncio.create_task(
            self.run(), name=f"{self.kind} probe {self.uid}/{self.name}")

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    keep = await self.do_probe()
                except asyncio.CancelledError:
                    raise
                except Exception:   # a probe's bug must not end the worker
                    log.exception("%s probe of %s/%s", self.kind, self.uid, self.name)
                    keep = True
                if not keep or self._stop.is_set():
                    break
                waits = [asyncio.ensure_future(self.trigger.wait()),
                         asyncio.ensure_future(self._stop.wait())]
                try:
                    await asyncio.wait(waits, timeout=self.period,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
                self.trigger.clear()
        finally:
            if self.container_id:
                self.results.remove(self.container_id)
            self.m._worker_done(self)

    async def do_probe(self) -> bool:
        """One probe; False when the worker should stop (upstream doProbe)."""
        pod, pod_ip = self.m.pod(self.uid)
        if pod is None:
            return True
        if self.m.phase(self.uid) in ("Succeeded", "Failed"):
            return False
        c = self.m.container_status(self.uid, self.name)
        if c is None or not c.container_id:
            return True   # not created yet
        if self.container_id != c.container_id:
            if self.container_id:
                self.results.remove(self.container_id)
            self.container_id = c.container_id
            self.results.set(self.container_id, INITIAL[self.kind], self.uid)
            self.on_hold = False
            self.last_result, self.result_run = None, 0
        if self.on_hold:
            return True   # after a liveness / startup failure: until a new container runs
        spec = pod.get("spec") or {}
        if c.state != "running":
            if c.state == "exited":
                self.results.set(self.container_id, Result.FAILURE, self.uid)
                return (spec.get("restartPolicy") or "Always") != "Never"
            return True
        if (pod.get("metadata") or {}).get("deletionTimestamp") and \
                self.kind in (LIVENESS, STARTUP):
            self.results.set(self.container_id, Result.SUCCESS, self.uid)
            return True
        if _since(c.started_at) < int(self.spec.get("initialDelaySeconds") or 0):
            return True
        started = self.m.is_started(self.uid, self.name, c.container_id, True)
        if started and self.kind == STARTUP:
            return True   # the startup probe is done
        if not started and self.kind != STARTUP:
            return True   # liveness / readiness wait for the startup probe
        cid = c.container_id.split("://", 1)[-1]

        async def exec_fn(argv: list[str], timeout: float) -> tuple[int, bytes]:
            return await self.m.runtime.exec_sync(cid, argv, timeout)
        result, output = await run_handler(self.spec, pod_ip=pod_ip,
                                           container=self.container,
                                           timeout=self.timeout, exec_fn=exec_fn)
        if self._stop.is_set() or self.container_id != c.container_id:
            return True
        if result != Result.SUCCESS:
            log.info("%s probe failed for %s/%s: %s", self.kind.capitalize(),
                     self.m.pod_name(self.uid), self.name, output.strip()[:200])
            if self.m.on_failure is not None:   # upstream's `Unhealthy` event
                self.m.on_failure(self.uid, self.name, self.kind, output.strip())
        if self.last_result == result:
            self.result_run += 1
        else:
            self.last_result, self.result_run = result, 1
        if (result == Result.FAILURE and self.result_run < self.failure_threshold) or \
                (result == Result.SUCCESS and self.result_run < self.success_threshold):
            return True   # keep the previous result
        self.results.set(self.container_id, result, self.uid)
        if self.kind in (LIVENESS, STARTUP) and result == Result.FAILURE:
            # The kubelet kills the container; wait for its replacement.
            self.on_hold = True
            self.result_run = 0
        return True

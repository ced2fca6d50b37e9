"""Container lifecycle hooks (upstream pkg/kubelet/lifecycle/handlers.go): postStart right
after the container starts (a failure kills it: FailedPostStartHook), preStop before the
SIGTERM, within the grace period. Handlers: exec, httpGet (the probe handlers) and sleep;
tcpSocket is accepted and does nothing, as upstream."""
from __future__ import annotations

import asyncio
from typing import Any

from pyk8s.kubelet.prober.handlers import probe_exec, probe_http, ProbeError
from pyk8s.kubelet.prober.results import Result
from pyk8s.kubelet.runtime import Runtime

Obj = dict[str, Any]

# postStart has no deadline upstream (it blocks the pod worker); ours is bounded.
POST_START_TIMEOUT = 600.0
# Upstream's minimumGracePeriodInSeconds: what is left for SIGTERM after a preStop hook.
MINIMUM_GRACE_PERIOD = 2.0


def hook_of(pod: Obj | None, container: str, which: str) -> Obj | None:
    """The container's `lifecycle.<which>` handler (postStart / preStop), if any."""
    for c in ((pod or {}).get("spec") or {}).get("containers") or []:
        if c.get("name") == container:
            return ((c.get("lifecycle") or {}).get(which)) or None
    return None


def _container(pod: Obj, name: str) -> Obj:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == name:
            return c
    return {"name": name}


async def run_hook(runtime: Runtime, pod: Obj, container: str, container_id: str,
                   handler: Obj, pod_ip: str, timeout: float) -> str | None:
    """Run a lifecycle handler; None on success, else upstream's error message."""
    md = pod.get("metadata") or {}
    where = f'for Container "{container}" in Pod "{md.get("name")}_{md.get("namespace")}' \
            f'({md.get("uid")})"'
    cid = container_id.split("://", 1)[-1]
    try:
        if handler.get("exec") is not None:
            argv = [str(a) for a in (handler["exec"] or {}).get("command") or []]

            async def exec_fn(a: list[str], t: float) -> tuple[int, bytes]:
                return await runtime.exec_sync(cid, a, t)
            result, out = await probe_exec(argv, timeout, exec_fn)
            if result != Result.SUCCESS:
                return f"Exec lifecycle hook ({argv}) {where} failed - error: {out.strip()}"
            return None
        if handler.get("httpGet") is not None:
            result, out = await probe_http(handler["httpGet"], pod_ip,
                                           _container(pod, container), timeout)
            if result != Result.SUCCESS:
                path = handler["httpGet"].get("path") or "/"
                return f"HTTP lifecycle hook ({path}) {where} failed - error: {out.strip()}"
            return None
        if handler.get("sleep") is not None:
            await asyncio.sleep(min(float((handler["sleep"] or {}).get("seconds") or 0),
                                    timeout))
            return None
        if handler.get("tcpSocket") is not None:
            return None
        return f"Cannot run handler {where}: no handler"
    except (ProbeError, LookupError, NotImplementedError) as e:
        return f"Lifecycle hook {where} failed - error: {e}"

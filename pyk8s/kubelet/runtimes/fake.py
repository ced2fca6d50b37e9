"""The fake runtime (upstream kubemark's hollow kubelet): no processes. A container starts
at once and runs until killed; init containers complete at once with exit code 0.

Test hook: the pod annotation `pyk8s.io/fake-exit-code: "<n>"` makes the pod's (regular)
containers exit with code n as soon as they start; the restart policy then applies as
for a real exit (Always / OnFailure restart after the crash-loop back-off)."""
from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Any

from pyk8s.kubelet.node import now_rfc3339
from pyk8s.kubelet.runtime import ContainerConfig, ContainerStatus, Runtime

Obj = dict[str, Any]
EXIT_CODE_ANNOTATION = "pyk8s.io/fake-exit-code"


def image_id(image: str) -> str:
    """`repo@sha256:<digest>` (the digest: of the reference, there is no registry)."""
    ref = image.split("@", 1)[0]
    repo = ref
    colon = ref.rfind(":")
    if colon > ref.rfind("/"):
        repo = ref[:colon]
    return f"{repo}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


class FakeRuntime(Runtime):
    name = "fake"
    # No probes (the pod IPs are not reachable): a running container is ready and started,
    # as before probes existed; hollow nodes stay cheap.
    run_probes = False

    def __init__(self) -> None:
        self._containers: dict[str, ContainerStatus] = {}
        self._pods: dict[str, list[str]] = {}
        self._exit_codes: dict[str, int] = {}     # pod uid -> code its containers exit with
        self._owner: dict[str, str] = {}          # container id -> pod uid (exiting ones)

    def set_pod(self, pod: Obj, pod_ip: str) -> None:
        md = pod.get("metadata") or {}
        code = (md.get("annotations") or {}).get(EXIT_CODE_ANNOTATION)
        if code is not None:
            try:
                self._exit_codes[md["uid"]] = int(code)
            except ValueError:
                pass

    def version(self) -> str:
        return "fake://0.1"

    async def create_container(self, pod_uid: str, container: Obj, init: bool = False,
                               config: ContainerConfig | None = None) -> str:
        cid = uuid.uuid4().hex
        image = str(container.get("image") or "")
        ids = self._pods.setdefault(pod_uid, [])
        same = [c for c in ids if self._containers[c].name == container["name"]
                and self._containers[c].init == init]
        for old in same[:-1]:   # keep the latest instance (lastState), forget older ones
            ids.remove(old)
            self._containers.pop(old, None)
        restart = self._containers[same[-1]].restart_count + 1 if same else 0
        self._containers[cid] = ContainerStatus(
            name=container["name"], image=image, image_id=image_id(image),
            container_id=f"fake://{cid}", state="created", init=init,
            restart_count=restart)
        ids.append(cid)
        if not init and pod_uid in self._exit_codes:
            self._owner[cid] = pod_uid
        return cid

    async def start_container(self, container_id: str) -> None:
        c = self._containers[container_id]
        c.started_at = now_rfc3339()
        if c.init:
            c.state, c.finished_at, c.exit_code, c.reason = "exited", c.started_at, 0, "Completed"
        elif container_id in self._owner:
            uid = self._owner.pop(container_id)
            code = self._exit_codes.get(uid, 0)
            c.state, c.finished_at, c.exit_code = "exited", c.started_at, code
            c.reason = "Completed" if code == 0 else "Error"
            c.finished_time = time.time()
            if self.on_exit is not None:   # the kubelet re-syncs the pod (restart policy)
                asyncio.get_running_loop().call_soon(self.on_exit, uid)
        else:
            c.state = "running"

    async def kill_container(self, container_id: str, grace_period: float) -> None:
        c = self._containers.get(container_id)
        if c is not None and c.state != "exited":
            # A fake process exits on SIGTERM at once; 137/143 as upstream reports them.
            c.state, c.finished_at, c.exit_code, c.reason = "exited", now_rfc3339(), 143, "Error"

    async def remove_pod(self, pod_uid: str) -> None:
        for cid in self._pods.pop(pod_uid, []):
            self._containers.pop(cid, None)
            self._owner.pop(cid, None)
        self._exit_codes.pop(pod_uid, None)

    def pod_containers(self, pod_uid: str) -> list[ContainerStatus]:
        return [self._containers[c] for c in self._pods.get(pod_uid, [])]

    async def exec_sync(self, container_id: str, argv: list[str],
                        timeout: float) -> tuple[int, bytes]:
        """No processes: every command succeeds at once (exec probes pass)."""
        return 0, b""

    def pod_uids(self) -> list[str]:
        return list(self._pods)

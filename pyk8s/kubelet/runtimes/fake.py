"""The fake runtime (upstream kubemark's hollow kubelet): no processes. A container starts
at once and runs until killed; init containers complete at once with exit code 0."""
from __future__ import annotations

import hashlib
import uuid
from typing import Any

from pyk8s.kubelet.node import now_rfc3339
from pyk8s.kubelet.runtime import ContainerStatus, Runtime

Obj = dict[str, Any]


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

    def __init__(self) -> None:
        self._containers: dict[str, ContainerStatus] = {}
        self._pods: dict[str, list[str]] = {}

    def version(self) -> str:
        return "fake://0.1"

    async def create_container(self, pod_uid: str, container: Obj, init: bool = False) -> str:
        cid = uuid.uuid4().hex
        image = str(container.get("image") or "")
        self._containers[cid] = ContainerStatus(
            name=container["name"], image=image, image_id=image_id(image),
            container_id=f"fake://{cid}", state="created", init=init)
        self._pods.setdefault(pod_uid, []).append(cid)
        return cid

    async def start_container(self, container_id: str) -> None:
        c = self._containers[container_id]
        c.started_at = now_rfc3339()
        if c.init:
            c.state, c.finished_at, c.exit_code, c.reason = "exited", c.started_at, 0, "Completed"
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

    def pod_containers(self, pod_uid: str) -> list[ContainerStatus]:
        return [self._containers[c] for c in self._pods.get(pod_uid, [])]

    def pod_uids(self) -> list[str]:
        return list(self._pods)

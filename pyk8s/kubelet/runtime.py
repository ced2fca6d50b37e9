"""The container runtime interface the kubelet drives (a small slice of the CRI):
create / start / kill containers of a pod sandbox, and their status."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable

Obj = dict[str, Any]


@dataclass
class ContainerStatus:
    name: str
    image: str
    image_id: str
    container_id: str          # "<runtime>://<id>"
    state: str                 # "created" | "running" | "exited"
    started_at: str = ""
    finished_at: str = ""
    exit_code: int = 0
    reason: str = ""
    restart_count: int = 0
    init: bool = False
    finished_time: float = 0.0   # time.time() of finished_at (backoff), 0 if not exited


class Runtime(abc.ABC):
    """What a runtime offers the kubelet. Containers belong to a pod by `pod_uid`."""

    name: str = ""
    # Called with a pod's uid when one of its containers exits on its own (the kubelet
    # re-syncs the pod: restart policy, phase).
    on_exit: Callable[[str], None] | None = None

    def set_pod(self, pod: Obj, pod_ip: str) -> None:
        """The pod a uid's containers belong to (env from fieldRef); before creating."""

    async def shutdown(self) -> None:
        """Stop everything still running (the agent is stopping)."""

    @abc.abstractmethod
    def version(self) -> str:
        """`<name>://<version>`, the Node's containerRuntimeVersion."""

    @abc.abstractmethod
    async def create_container(self, pod_uid: str, container: Obj, init: bool = False) -> str:
        """Create (not start) a container from its pod-spec entry; its id."""

    @abc.abstractmethod
    async def start_container(self, container_id: str) -> None:
        ...

    @abc.abstractmethod
    async def kill_container(self, container_id: str, grace_period: float) -> None:
        """Stop a container (SIGTERM, then SIGKILL after `grace_period`)."""

    @abc.abstractmethod
    async def remove_pod(self, pod_uid: str) -> None:
        """Forget a pod's containers (all must be stopped)."""

    @abc.abstractmethod
    def pod_containers(self, pod_uid: str) -> list[ContainerStatus]:
        """The pod's containers, in creation order."""

    def pod_uids(self) -> list[str]:
        return []


class NotImplementedRuntime(Exception):
    pass


def make_runtime(name: str, data_dir: str = ".pyk8s-agent") -> Runtime:
    if name == "fake":
        from pyk8s.kubelet.runtimes.fake import FakeRuntime
        return FakeRuntime()
    if name == "process":
        from pyk8s.kubelet.runtimes.process import ProcessRuntime
        return ProcessRuntime(data_dir)
    if name == "oci":
        raise NotImplementedRuntime(f"runtime {name!r} is not implemented yet "
                                    f"(only 'fake' and 'process' are)")
    raise NotImplementedRuntime(f"unknown runtime {name!r}")

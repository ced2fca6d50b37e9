"""The container runtime interface the kubelet drives (a small slice of the CRI):
create / start / kill containers of a pod sandbox, and their status."""
from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
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
    message: str = ""
    restart_count: int = 0
    init: bool = False
    finished_time: float = 0.0   # time.time() of finished_at (backoff), 0 if not exited


@dataclass
class ContainerConfig:
    """What the kubelet resolved for a container (upstream's CRI ContainerConfig): the
    command line (`command` + `args`, `$(VAR)` expanded), the environment in order, the
    working directory and the volume mounts (container path, host path, read-only)."""
    argv: list[str]
    env: list[tuple[str, str]] = field(default_factory=list)
    working_dir: str = ""
    mounts: list[tuple[str, str, bool]] = field(default_factory=list)
    # A per-pod empty directory a runtime may mount over privately (launcher.py).
    stage_dir: str = ""
    # `command` and `args` on their own, expanded (None: not set), for runtimes that
    # merge them with an image's Entrypoint / Cmd.
    command: list[str] | None = None
    args: list[str] | None = None


class CreateContainerError(Exception):
    """The runtime cannot create the container (upstream's CreateContainerError)."""
    reason = "CreateContainerError"


class Runtime(abc.ABC):
    """What a runtime offers the kubelet. Containers belong to a pod by `pod_uid`."""

    name: str = ""
    # Called with a pod's uid when one of its containers exits on its own (the kubelet
    # re-syncs the pod: restart policy, phase).
    on_exit: Callable[[str], None] | None = None
    # Containers share the host's network namespace (the process runtime): the pod IP
    # the kubelet reports is the node IP, so that probes and Services at podIP reach them.
    host_network: bool = False
    # The kubelet runs the containers' liveness / readiness / startup probes (prober/).
    run_probes: bool = True
    # Pods need the Node's spec.podCIDR before they can start (a CNI pod network).
    needs_pod_cidr: bool = False
    # The image service (images/ImageManager) when containers run from images, else None.
    images: Any = None

    async def start(self) -> None:
        """Prepare the runtime (clean what an earlier agent left); before the first pod."""

    def set_pod_cidr(self, cidr: str) -> None:
        """The Node's spec.podCIDR, once known."""

    async def run_pod_sandbox(self, pod: Obj, node_ip: str) -> str | None:
        """Set up the pod's sandbox (namespaces, network); its IP, or None when the kubelet
        hands out pod IPs itself."""
        return None

    async def stop_pod_sandbox(self, pod_uid: str) -> None:
        """A pod that finished gives back its network (its containers stay, for logs)."""

    def pod_ip(self, pod_uid: str) -> str | None:
        return None

    def set_pod(self, pod: Obj, pod_ip: str) -> None:
        """The pod a uid's containers belong to (env from fieldRef); before creating."""

    async def shutdown(self) -> None:
        """Stop everything still running (the agent is stopping)."""

    @abc.abstractmethod
    def version(self) -> str:
        """`<name>://<version>`, the Node's containerRuntimeVersion."""

    @abc.abstractmethod
    async def create_container(self, pod_uid: str, container: Obj, init: bool = False,
                               config: ContainerConfig | None = None) -> str:
        """Create (not start) a container from its pod-spec entry and the configuration
        the kubelet resolved (env, argv, mounts; None: from the spec alone); its id.
        May raise CreateContainerError."""

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

    # -- streaming (logs, exec): optional, a runtime without them raises NotImplementedError
    def container_log(self, pod_uid: str, name: str,
                      previous: bool = False) -> "tuple[Any, ContainerStatus | None] | None":
        """(path of the log file, status while that instance may still write to it, else
        None) of a container's latest instance (`previous`: the one before); None if there
        is no such instance."""
        raise NotImplementedError(f"the {self.name} runtime keeps no container logs")

    def exec_context(self, pod_uid: str, name: str, argv: list[str], tty: bool = False
                     ) -> tuple[list[str], dict[str, str], str | None]:
        """(argv, env, working dir) of a host process that runs `argv` as a `kubectl exec`
        command in a running container."""
        raise NotImplementedError(f"the {self.name} runtime does not support exec")

    def attach_context(self, pod_uid: str, name: str) -> tuple[Any, ContainerStatus, Any, bool]:
        """(log file, status, stdin writer or None, stdinOnce) of a running container, for
        `kubectl attach`: its new output is tailed from the log, stdin goes to the writer."""
        raise NotImplementedError(f"the {self.name} runtime does not support attach")

    def terminal(self, pod_uid: str, name: str) -> Any:
        """The terminal of a running `tty: true` container (a ContainerTerminal: attach
        resizes it), or None."""
        return None

    async def exec_sync(self, container_id: str, argv: list[str],
                        timeout: float) -> tuple[int, bytes]:
        """Run `argv` in a running container (CRI ExecSync: exec probes, lifecycle hooks);
        (exit code, stdout+stderr). Raises TimeoutError after `timeout` seconds (the
        command is killed)."""
        raise NotImplementedError(f"the {self.name} runtime does not support exec")


class NotImplementedRuntime(Exception):
    pass


def make_runtime(name: str, data_dir: str = ".pyk8s-agent",
                 oci_options: dict[str, Any] | None = None) -> Runtime:
    if name == "fake":
        from pyk8s.kubelet.runtimes.fake import FakeRuntime
        return FakeRuntime()
    if name == "process":
        from pyk8s.kubelet.runtimes.process import ProcessRuntime
        return ProcessRuntime(data_dir)
    if name == "oci":
        from pyk8s.kubelet.runtimes.oci import OCIRuntime, find_oci_runtime
        if os.geteuid() != 0:
            raise NotImplementedRuntime("runtime 'oci' needs root (namespaces, mounts, "
                                        "cgroups); use --runtime process")
        if find_oci_runtime() is None:
            raise NotImplementedRuntime("runtime 'oci' needs runc or crun on PATH "
                                        "(apt-get install runc)")
        return OCIRuntime(data_dir, **(oci_options or {}))
    raise NotImplementedRuntime(f"unknown runtime {name!r}")

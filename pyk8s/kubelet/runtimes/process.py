"""The process runtime: no images, no isolation, no root. Each container is a host process
(`command` + `args` of its spec, `$(VAR)` expanded as upstream, env from `env[].value` and a
few cheap `valueFrom.fieldRef`s, `workingDir`) in its own process group, so that SIGTERM /
SIGKILL reach everything it started. stdout and stderr go to
`<data-dir>/pods/<uid>/<container>/<restart>.log`."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyk8s.kubelet.node import now_rfc3339
from pyk8s.kubelet.runtime import ContainerStatus, Runtime

log = logging.getLogger("pyk8s.kubelet.process")

Obj = dict[str, Any]

# Upstream's exit code / reason for a container that could not be started.
START_ERROR_EXIT_CODE = 128


def expand(s: str, env: dict[str, str]) -> str:
    """Upstream's `$(VAR)` expansion (third_party/forked/golang/expansion): `$(VAR)` becomes
    VAR's value when VAR is defined, stays as written otherwise; `$$` escapes a `$`; a `$`
    followed by anything else is kept."""
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = s[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = s.find(")", i + 2)
            if end < 0:  # unterminated: kept as written
                out.append(s[i:])
                break
            name = s[i + 2:end]
            out.append(env[name] if name in env else s[i:end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def container_env(container: Obj, pod_fields: dict[str, str]) -> dict[str, str]:
    """The container's env, in order, each value expanded against those before it (and
    `valueFrom.fieldRef` for metadata.name / metadata.namespace / status.podIP / ...)."""
    env: dict[str, str] = {}
    for e in container.get("env") or []:
        name = e.get("name")
        if not name:
            continue
        vf = e.get("valueFrom")
        if vf:
            path = ((vf.get("fieldRef") or {}).get("fieldPath") or "")
            if path in pod_fields:
                env[name] = pod_fields[path]
            continue  # other sources (secrets, config maps, resources): not supported yet
        env[name] = expand(str(e.get("value") or ""), env)
    return env


def container_argv(container: Obj, env: dict[str, str]) -> list[str]:
    return [expand(str(a), env) for a in (container.get("command") or [])] + \
           [expand(str(a), env) for a in (container.get("args") or [])]


@dataclass
class _Proc:
    pod_uid: str
    spec: Obj
    status: ContainerStatus
    proc: asyncio.subprocess.Process | None = None
    waiter: asyncio.Task[None] | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)


class ProcessRuntime(Runtime):
    name = "process"

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir).resolve() / "pods"
        self._containers: dict[str, _Proc] = {}
        self._pods: dict[str, list[str]] = {}
        self._pod_fields: dict[str, dict[str, str]] = {}

    def version(self) -> str:
        return "process://0.1"

    def set_pod(self, pod: Obj, pod_ip: str) -> None:
        md = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self._pod_fields[md.get("uid", "")] = {
            "metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", ""),
            "metadata.uid": md.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.podIP": pod_ip}

    def log_path(self, pod_uid: str, name: str, restart: int) -> Path:
        return self.root / pod_uid / name / f"{restart}.log"

    async def create_container(self, pod_uid: str, container: Obj, init: bool = False) -> str:
        name = container["name"]
        ids = self._pods.setdefault(pod_uid, [])
        same = [c for c in ids if self._containers[c].status.name == name
                and self._containers[c].status.init == init]
        # Keep the latest instance (lastState) and forget older ones.
        for old in same[:-1]:
            ids.remove(old)
            self._containers.pop(old, None)
        restart = (self._containers[same[-1]].status.restart_count + 1) if same else 0
        cid = uuid.uuid4().hex
        self._containers[cid] = _Proc(pod_uid, container, ContainerStatus(
            name=name, image=str(container.get("image") or ""), image_id="",
            container_id=f"process://{cid}", state="created", restart_count=restart,
            init=init))
        ids.append(cid)
        return cid

    def _exited(self, p: _Proc, code: int, reason: str) -> None:
        st = p.status
        st.finished_time = time.time()
        st.state, st.finished_at, st.exit_code = "exited", now_rfc3339(), code
        st.reason = reason
        p.exited.set()

    async def start_container(self, container_id: str) -> None:
        p = self._containers[container_id]
        st = p.status
        fields = self._pod_fields.get(p.pod_uid, {})
        env = container_env(p.spec, fields)
        argv = container_argv(p.spec, env)
        base = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
                "HOSTNAME": fields.get("metadata.name", "")}
        path = self.log_path(p.pod_uid, st.name, st.restart_count)
        path.parent.mkdir(parents=True, exist_ok=True)
        st.started_at = now_rfc3339()
        if not argv:
            self._exited(p, START_ERROR_EXIT_CODE, "StartError")
            path.write_text("process runtime: the container has no command (no images)\n")
            return
        logf = open(path, "ab")
        try:
            p.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=logf,
                stderr=asyncio.subprocess.STDOUT, env={**base, **env},
                cwd=p.spec.get("workingDir") or None, start_new_session=True)
        except OSError as e:
            logf.write(f"process runtime: {e}\n".encode())
            logf.close()
            self._exited(p, START_ERROR_EXIT_CODE, "StartError")
            return
        finally:
            if not logf.closed:
                logf.close()
        st.state = "running"
        p.waiter = asyncio.create_task(self._wait(p), name=f"container {st.name}")

    async def _wait(self, p: _Proc) -> None:
        assert p.proc is not None
        rc = await p.proc.wait()
        code = 128 - rc if rc < 0 else rc   # killed by a signal: 128 + signal, as upstream
        self._exited(p, code, "Completed" if code == 0 else "Error")
        self._killpg(p, signal.SIGKILL)   # what the leader left behind in its group
        if self.on_exit is not None:
            try:
                self.on_exit(p.pod_uid)
            except Exception:  # pragma: no cover - a callback's bug must not kill us
                log.exception("on_exit callback")

    @staticmethod
    def _killpg(p: _Proc, sig: int) -> None:
        if p.proc is None:
            return
        try:
            os.killpg(p.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    async def kill_container(self, container_id: str, grace_period: float) -> None:
        p = self._containers.get(container_id)
        if p is None or p.status.state == "exited":
            return
        if p.proc is None:  # created, never started
            self._exited(p, 0, "Completed")
            return
        self._killpg(p, signal.SIGTERM)
        try:
            await asyncio.wait_for(p.exited.wait(), max(grace_period, 0.0))
        except asyncio.TimeoutError:
            self._killpg(p, signal.SIGKILL)
            await p.exited.wait()

    async def remove_pod(self, pod_uid: str) -> None:
        for cid in self._pods.pop(pod_uid, []):
            p = self._containers.pop(cid, None)
            if p is not None and p.status.state != "exited":
                self._killpg(p, signal.SIGKILL)
        self._pod_fields.pop(pod_uid, None)

    def pod_containers(self, pod_uid: str) -> list[ContainerStatus]:
        return [self._containers[c].status for c in self._pods.get(pod_uid, [])]

    def pod_uids(self) -> list[str]:
        return list(self._pods)

    async def shutdown(self, grace_period: float = 5.0) -> None:
        running = [cid for cid, p in self._containers.items() if p.status.state == "running"]
        if running:
            log.info("stopping %d container processes", len(running))
        await asyncio.gather(*(self.kill_container(cid, grace_period) for cid in running),
                             return_exceptions=True)

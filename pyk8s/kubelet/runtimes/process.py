"""The process runtime: no images, no isolation. Each container is a host process (the
argv, env and working dir the kubelet resolved — envvars.py; without a ContainerConfig,
`command` + `args` `$(VAR)`-expanded with env from `env[].value` and a few cheap
`valueFrom.fieldRef`s) in its own process group, so that SIGTERM / SIGKILL reach
everything it started. Volume mounts need root: the process starts in a private mount
namespace with the volumes bound at their mountPaths (launcher.py); without root a
container with mounts fails with CreateContainerError. stdout and stderr are pipes that
the runtime pumps into `<data-dir>/pods/<uid>/<container>/<restart>.log` in the CRI log
format (crilog.py), as containerd writes it."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyk8s.kubelet import crilog
from pyk8s.kubelet.envvars import container_argv, expand  # noqa: F401 (re-exported)
from pyk8s.kubelet.node import now_rfc3339
from pyk8s.kubelet.runtime import (ContainerConfig, ContainerStatus, CreateContainerError,
                                   Runtime)

log = logging.getLogger("pyk8s.kubelet.process")

Obj = dict[str, Any]

# Upstream's exit code / reason for a container that could not be started.
START_ERROR_EXIT_CODE = 128
# How long an exited container's output may take to reach its log file.
PUMP_DRAIN_SECONDS = 2.0


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


@dataclass
class _Proc:
    pod_uid: str
    spec: Obj
    status: ContainerStatus
    proc: asyncio.subprocess.Process | None = None
    waiter: asyncio.Task[None] | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    config: ContainerConfig | None = None
    pumps: list[asyncio.Task[None]] = field(default_factory=list)


class ProcessRuntime(Runtime):
    name = "process"
    host_network = True

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

    async def create_container(self, pod_uid: str, container: Obj, init: bool = False,
                               config: ContainerConfig | None = None) -> str:
        name = container["name"]
        if config is not None and config.mounts and os.geteuid() != 0:
            raise CreateContainerError(
                "the process runtime needs root for volume mounts (a private mount namespace "
                "per container); run the agent as root or drop the container's volumeMounts")
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
            init=init), config=config)
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
        cwd = p.spec.get("workingDir") or None
        if p.config is not None:      # resolved by the kubelet (envvars.py, volumes)
            env = dict(p.config.env)
            argv = list(p.config.argv)
            cwd = p.config.working_dir or None
        else:
            env = container_env(p.spec, fields)
            argv = container_argv(p.spec, env)
        base = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
                "HOSTNAME": fields.get("metadata.name", "")}
        if argv and p.config is not None and p.config.mounts:
            # A private mount namespace with the volumes bound in (launcher.py); it execs
            # argv in place, so the pid / process group are the container's.
            spec = {"argv": argv, "env": {**base, **env}, "cwd": cwd or "",
                    "stage": p.config.stage_dir, "mounts": [list(m) for m in p.config.mounts]}
            argv = [sys.executable, "-m", "pyk8s.kubelet.runtimes.launcher", json.dumps(spec)]
            cwd = None
        path = self.log_path(p.pod_uid, st.name, st.restart_count)
        path.parent.mkdir(parents=True, exist_ok=True)
        st.started_at = now_rfc3339()
        if not argv:
            self._exited(p, START_ERROR_EXIT_CODE, "StartError")
            crilog.write_message(path, crilog.STDERR,
                                 "process runtime: the container has no command (no images)\n")
            return
        # stdout and stderr: pipes of their own, pumped into the log file as CRI records
        # (crilog.py) by this process; the container never blocks on the file.
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            p.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=(asyncio.subprocess.PIPE if p.spec.get("stdin")   # for attach
                              else asyncio.subprocess.DEVNULL), stdout=out_w,
                stderr=err_w, env={**base, **env}, cwd=cwd, start_new_session=True)
        except OSError as e:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            crilog.write_message(path, crilog.STDERR, f"process runtime: {e}\n")
            self._exited(p, START_ERROR_EXIT_CODE, "StartError")
            return
        finally:
            if p.proc is not None:
                os.close(out_w)
                os.close(err_w)
        p.pumps = await crilog.pump_pipes([(out_r, crilog.STDOUT), (err_r, crilog.STDERR)],
                                          path)
        st.state = "running"
        p.waiter = asyncio.create_task(self._wait(p), name=f"container {st.name}")

    async def _wait(self, p: _Proc) -> None:
        assert p.proc is not None
        rc = await p.proc.wait()
        code = 128 - rc if rc < 0 else rc   # killed by a signal: 128 + signal, as upstream
        self._killpg(p, signal.SIGKILL)   # what the leader left behind in its group
        if p.pumps:
            # What the container wrote before exiting is in the log before it counts as
            # exited (logs -f / attach stop at the exit); a process that left the group
            # and keeps the pipe open is not waited for (its pump goes on until EOF).
            await asyncio.wait(p.pumps, timeout=PUMP_DRAIN_SECONDS)
        self._exited(p, code, "Completed" if code == 0 else "Error")
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

    def _latest(self, pod_uid: str, name: str) -> _Proc | None:
        found = None
        for cid in self._pods.get(pod_uid, []):
            p = self._containers[cid]
            if p.status.name == name and (found is None or found.status.init
                                          or not p.status.init):
                found = p
        return found

    def container_log(self, pod_uid: str, name: str,
                      previous: bool = False) -> tuple[Path, ContainerStatus | None] | None:
        p = self._latest(pod_uid, name)
        if p is None:
            return None
        restart = p.status.restart_count - (1 if previous else 0)
        if restart < 0:
            return None
        path = self.log_path(pod_uid, name, restart)
        return path, (None if previous else p.status)

    def exec_context(self, pod_uid: str, name: str, argv: list[str], tty: bool = False
                     ) -> tuple[list[str], dict[str, str], str | None]:
        p = self._latest(pod_uid, name)
        if p is None or p.status.state != "running":
            raise LookupError(f"container {name} is not running")
        return self._exec_plan(p, argv)

    def _exec_plan(self, p: _Proc, argv: list[str]
                   ) -> tuple[list[str], dict[str, str], str | None]:
        """A command run in a container (exec, exec probes and hooks): the container's env
        and workingDir; with volume mounts, inside its private mount namespace."""
        fields = self._pod_fields.get(p.pod_uid, {})
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
               "HOSTNAME": fields.get("metadata.name", "")}
        cwd = p.spec.get("workingDir") or None
        if p.config is not None:   # resolved by the kubelet (env sources, workingDir)
            env.update(p.config.env)
            cwd = p.config.working_dir or None
        else:
            env.update(container_env(p.spec, fields))
        if p.config is not None and p.config.mounts and p.proc is not None and argv:
            spec = {"argv": list(argv), "env": env, "cwd": cwd or "", "join": p.proc.pid}
            return ([sys.executable, "-m", "pyk8s.kubelet.runtimes.launcher",
                     json.dumps(spec)], env, None)
        return list(argv), env, cwd

    def attach_context(self, pod_uid: str, name: str
                       ) -> tuple[Path, ContainerStatus, asyncio.StreamWriter | None, bool]:
        p = self._latest(pod_uid, name)
        if p is None or p.status.state != "running":
            raise LookupError(f"container {name} is not running")
        writer = p.proc.stdin if p.proc is not None else None
        return (self.log_path(pod_uid, name, p.status.restart_count), p.status, writer,
                bool(p.spec.get("stdinOnce")))

    async def exec_sync(self, container_id: str, argv: list[str],
                        timeout: float) -> tuple[int, bytes]:
        """A host process with the container's env and workingDir, in its own process
        group (killed with everything it started on timeout)."""
        p = self._containers.get(container_id)
        if p is None or p.status.state != "running":
            raise LookupError(f"container {container_id} is not running")
        argv, env, cwd = self._exec_plan(p, argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        except OSError as e:
            return 126 if isinstance(e, PermissionError) else 127, f"{e}\n".encode()
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            await proc.wait()
            raise
        rc = proc.returncode if proc.returncode is not None else 0
        return (128 - rc if rc < 0 else rc), out

    async def shutdown(self, grace_period: float = 5.0) -> None:
        running = [cid for cid, p in self._containers.items() if p.status.state == "running"]
        if running:
            log.info("stopping %d container processes", len(running))
        await asyncio.gather(*(self.kill_container(cid, grace_period) for cid in running),
                             return_exceptions=True)

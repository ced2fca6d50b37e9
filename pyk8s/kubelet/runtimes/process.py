"""The process runtime: no images, no isolation. Each container is a host process (the
argv, env and working dir the kubelet resolved — envvars.py; without a ContainerConfig,
`command` + `args` `$(VAR)`-expanded with env from `env[].value` and a few cheap
`valueFrom.fieldRef`s) in its own process group, so that SIGTERM / SIGKILL reach
everything it started. Volume mounts need root: the process starts in a private mount
namespace with the volumes bound at their mountPaths (launcher.py); without root a
container with mounts fails with CreateContainerError. stdout and stderr are pipes that
the runtime pumps into `<data-dir>/pods/<uid>/<container>/<restart>.log` in the CRI log
format (crilog.py), as containerd writes it.

A `tty: true` container gets a pseudo-terminal instead: the slave is its stdin, stdout,
stderr and controlling terminal (a session of its own, TIOCSCTTY), the master is pumped
into the log as its one `stdout` stream, as containerd does, and held as a
ContainerTerminal (containertty.py) that attach writes to and resizes.

Each container is the leader of its own session and process group. Its pid, the start
time of that process and the boot id are recorded in `<data-dir>/process-groups/<id>.json`
until the container is gone, so that what an agent killed with SIGKILL left running is
found again: the next start on the same data dir (and `pyk8s killall`) SIGKILLs every
recorded session whose leader is still that process (a recycled pid never matches). Such
processes cannot be adopted — their stdout / stderr pipes died with the agent — so the
kubelet creates the containers of the pods still bound to the node anew."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import termios
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyk8s.apiserver.admission.serviceaccount import TOKEN_MOUNT_PATH
from pyk8s.kubelet import crilog
from pyk8s.kubelet.containertty import ContainerTerminal, pump_terminal
from pyk8s.kubelet.envvars import container_argv, expand  # noqa: F401 (re-exported)
from pyk8s.kubelet.node import now_rfc3339
from pyk8s.kubelet.procfs import boot_id, proc_stat
from pyk8s.kubelet.runtime import (ContainerConfig, ContainerStatus, CreateContainerError,
                                   Runtime)

log = logging.getLogger("pyk8s.kubelet.process")

Obj = dict[str, Any]

# Upstream's exit code / reason for a container that could not be started.
START_ERROR_EXIT_CODE = 128
# How long an exited container's output may take to reach its log file.
PUMP_DRAIN_SECONDS = 2.0
# Where the running containers' sessions are recorded, under the runtime's data dir.
GROUPS_DIR = "process-groups"
# How long an earlier agent's killed containers may take to go before start-up goes on.
LEFTOVER_KILL_SECONDS = 5.0


LAUNCHER = Path(__file__).with_name("launcher.py")


def launcher_argv(spec: Obj) -> list[str]:
    """The launcher (launcher.py) run as a script with the standard library alone (-I: no
    environment or user site, -S: no site packages): a container start pays a bare
    interpreter's few milliseconds, not pyk8s's imports."""
    return [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec)]


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


# -- sessions: a container's processes, found in /proc ---------------------------------------
def session_members(sid: int) -> list[int]:
    """The live processes (zombies are gone) of session `sid`."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None and st.sid == sid and st.state != "Z":
                out.append(int(name))
    return out


def signal_session(sid: int, sig: int) -> None:
    """Signal every process of session `sid`, also those a shell on a terminal moved to
    process groups of their own (its jobs). Through a pidfd, checked after it is opened:
    a pid reused since /proc was read is never signalled."""
    for pid in session_members(sid):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            st = proc_stat(pid)
            if st is not None and st.sid == sid:
                signal.pidfd_send_signal(fd, sig)
        except OSError:
            pass
        finally:
            os.close(fd)


def _take_terminal(slave: int) -> None:
    """In the child: a session of its own whose controlling terminal is the terminal's
    `slave` (job control, ^C, SIGWINCH). By the slave's own fd and with setsid() here:
    uvloop runs this before it sets up the child's stdio and session."""
    if os.getsid(0) != os.getpid():
        os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)


class SessionRecords:
    """`<dir>/<container id>.json`: {"sid", "start", "boot"} of each running container's
    session leader, written atomically (a file renamed into place), removed once the
    container is gone."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def add(self, cid: str, pid: int) -> None:
        """Record our child `pid` (nothing if it has exited and been reaped already)."""
        st = proc_stat(pid)
        if st is None or st.ppid != os.getpid():
            return
        tmp = self.dir / f".{cid}.tmp"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"sid": pid, "start": st.start, "boot": boot_id()}))
            os.replace(tmp, self.dir / f"{cid}.json")
        except OSError as e:   # the container runs; only a crash would leave it behind
            log.warning("recording the session of container %s: %s", cid, e)

    def remove(self, cid: str) -> None:
        with contextlib.suppress(OSError):
            (self.dir / f"{cid}.json").unlink(missing_ok=True)

    def kill_leftovers(self) -> list[int]:
        """SIGKILL the recorded sessions whose leader is still the process recorded (same
        boot, same start time) and forget all records; the sessions killed."""
        try:
            files = sorted(self.dir.iterdir())
        except OSError:   # none recorded
            return []
        boot, killed = boot_id(), []
        for f in files:
            try:   # a .tmp file is a record whose writing was cut short: no such session
                rec = json.loads(f.read_text()) if f.suffix == ".json" else {}
                sid, start, same_boot = int(rec["sid"]), int(rec["start"]), \
                    rec.get("boot") == boot
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                sid, start, same_boot = 0, -1, False
            st = proc_stat(sid) if sid > 0 and same_boot else None
            if st is not None and st.start == start and st.sid == sid:
                log.info("killing the processes of container %s (session %d), left running "
                         "by an earlier agent", f.stem, sid)
                signal_session(sid, signal.SIGKILL)
                killed.append(sid)
            with contextlib.suppress(OSError):
                f.unlink(missing_ok=True)
        return killed


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
    terminal: ContainerTerminal | None = None   # tty: true

    @property
    def id(self) -> str:
        return self.status.container_id.split("://", 1)[-1]


class ProcessRuntime(Runtime):
    name = "process"
    host_network = True

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir).resolve() / "pods"
        self.sessions = SessionRecords(Path(data_dir).resolve() / GROUPS_DIR)
        self._containers: dict[str, _Proc] = {}
        self._pods: dict[str, list[str]] = {}
        self._pod_fields: dict[str, dict[str, str]] = {}
        self.warnings: list[tuple[str, str, str]] = []   # (pod uid, reason, message) events

    def version(self) -> str:
        return "process://0.1"

    async def start(self) -> None:
        """Stop what an earlier agent of this data dir, killed with SIGKILL, left running
        (its containers cannot be adopted: the kubelet creates them anew) and remove the
        logs nobody can reach any more (a new instance starts at restart count 0)."""
        await self.remove_leftovers()
        if self.root.is_dir():
            for d in self.root.iterdir():
                shutil.rmtree(d, ignore_errors=True)

    async def remove_leftovers(self) -> None:
        """SIGKILL the recorded sessions of an earlier agent's containers (`pyk8s
        killall` too) and wait a little for them to go: a new instance must find the
        ports they held free."""
        killed = self.sessions.kill_leftovers()
        deadline = time.monotonic() + LEFTOVER_KILL_SECONDS
        while killed and time.monotonic() < deadline:
            killed = [sid for sid in killed if session_members(sid)]
            if killed:
                await asyncio.sleep(0.05)

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
            config = self._without_token_mount(pod_uid, name, config)
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

    def _without_token_mount(self, pod_uid: str, name: str, config: ContainerConfig
                             ) -> ContainerConfig:
        """Without root no volume can be mounted; the service account token volume every
        pod gets (ServiceAccount admission) is left out with a warning event rather than
        failing every pod. Other volumes still fail the container."""
        kept = [m for m in config.mounts if m[0].rstrip("/") != TOKEN_MOUNT_PATH]
        if len(kept) == len(config.mounts):
            return config
        self.warnings.append((pod_uid, "FailedMount", (
            f'container "{name}": the process runtime needs root to mount volumes; the '
            f"service account token is not at {TOKEN_MOUNT_PATH} (run the node as root, "
            "or set automountServiceAccountToken: false on the pod)")))
        return dataclasses.replace(config, mounts=kept)

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
        tty = bool(p.spec.get("tty"))
        if tty:
            base["TERM"] = "xterm"   # containerd's WithTTY
        if argv and p.config is not None and p.config.mounts:
            # A private mount namespace with the volumes bound in (launcher.py); it execs
            # argv in place, so the pid / process group are the container's.
            spec = {"argv": argv, "env": {**base, **env}, "cwd": cwd or "",
                    "stage": p.config.stage_dir, "mounts": [list(m) for m in p.config.mounts]}
            argv = launcher_argv(spec)
            cwd = None
        path = self.log_path(p.pod_uid, st.name, st.restart_count)
        path.parent.mkdir(parents=True, exist_ok=True)
        st.started_at = now_rfc3339()
        if not argv:
            self._exited(p, START_ERROR_EXIT_CODE, "StartError")
            crilog.write_message(path, crilog.STDERR,
                                 "process runtime: the container has no command (no images)\n")
            return
        spawn = self._spawn_on_terminal if tty else self._spawn_on_pipes
        pumps = await spawn(p, argv, {**base, **env}, cwd, path)
        if pumps is None:
            return
        p.pumps = pumps
        st.state = "running"
        p.waiter = asyncio.create_task(self._wait(p), name=f"container {st.name}")

    def _start_failed(self, p: _Proc, path: Path, e: Exception) -> None:
        crilog.write_message(path, crilog.STDERR, f"process runtime: {e}\n")
        self._exited(p, START_ERROR_EXIT_CODE, "StartError")

    async def _spawn_on_pipes(self, p: _Proc, argv: list[str], env: dict[str, str],
                              cwd: str | None, path: Path) -> list[asyncio.Task[None]] | None:
        """Start the process, its session recorded. stdout and stderr: pipes of their own,
        pumped into the log file as CRI records (crilog.py) by this process; the container
        never blocks on the file. The pumps, or None if the process could not start."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            p.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=(asyncio.subprocess.PIPE if p.spec.get("stdin")   # for attach
                              else asyncio.subprocess.DEVNULL), stdout=out_w,
                stderr=err_w, env=env, cwd=cwd, start_new_session=True)
        except OSError as e:
            for fd in (out_r, err_r):
                os.close(fd)
            self._start_failed(p, path, e)
            return None
        finally:
            os.close(out_w)
            os.close(err_w)
        self.sessions.add(p.id, p.proc.pid)
        return await crilog.pump_pipes([(out_r, crilog.STDOUT), (err_r, crilog.STDERR)], path)

    async def _spawn_on_terminal(self, p: _Proc, argv: list[str], env: dict[str, str],
                                 cwd: str | None, path: Path
                                 ) -> list[asyncio.Task[None]] | None:
        """Start a `tty: true` container's process, its session recorded: a new
        pseudo-terminal's slave is its stdin, stdout, stderr and controlling terminal; the
        master, its one output, is pumped into the log as `stdout`. The pump, or None if
        the process could not start."""
        master, slave = os.openpty()
        try:
            p.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                preexec_fn=functools.partial(_take_terminal, slave))
        except (OSError, subprocess.SubprocessError) as e:
            os.close(master)
            self._start_failed(p, path, e)
            return None
        finally:
            os.close(slave)
        self.sessions.add(p.id, p.proc.pid)
        p.terminal = ContainerTerminal(master, stdin=bool(p.spec.get("stdin")))
        return await pump_terminal(master, path)

    async def _wait(self, p: _Proc) -> None:
        assert p.proc is not None
        rc = await p.proc.wait()
        code = 128 - rc if rc < 0 else rc   # killed by a signal: 128 + signal, as upstream
        self._killpg(p, signal.SIGKILL)   # what the leader left behind in its session
        self.sessions.remove(p.id)
        if p.pumps:
            # What the container wrote before exiting is in the log before it counts as
            # exited (logs -f / attach stop at the exit); a process that left the session
            # and keeps the pipe open is not waited for (its pump goes on until EOF).
            await asyncio.wait(p.pumps, timeout=PUMP_DRAIN_SECONDS)
        if p.terminal is not None:
            p.terminal.release()
        self._exited(p, code, "Completed" if code == 0 else "Error")
        if self.on_exit is not None:
            try:
                self.on_exit(p.pod_uid)
            except Exception:  # pragma: no cover - a callback's bug must not kill us
                log.exception("on_exit callback")

    @staticmethod
    def _killpg(p: _Proc, sig: int) -> None:
        """Signal the container's process group; SIGKILL reaches its whole session (the
        jobs of a shell on a terminal are groups of their own)."""
        if p.proc is None:
            return
        try:
            os.killpg(p.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        if sig == signal.SIGKILL:
            signal_session(p.proc.pid, sig)

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
        """`kubectl exec`; with `tty` it runs on a terminal of the kubelet's
        (streaming.py), with TERM=xterm as containerd sets it."""
        p = self._latest(pod_uid, name)
        if p is None or p.status.state != "running":
            raise LookupError(f"container {name} is not running")
        return self._exec_plan(p, argv, {"TERM": "xterm"} if tty else {})

    def _exec_plan(self, p: _Proc, argv: list[str], extra_env: dict[str, str] | None = None
                   ) -> tuple[list[str], dict[str, str], str | None]:
        """A command run in a container (exec, exec probes and hooks): the container's env
        (then `extra_env`) and workingDir; with volume mounts, inside its private mount
        namespace."""
        fields = self._pod_fields.get(p.pod_uid, {})
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
               "HOSTNAME": fields.get("metadata.name", "")}
        cwd = p.spec.get("workingDir") or None
        if p.config is not None:   # resolved by the kubelet (env sources, workingDir)
            env.update(p.config.env)
            cwd = p.config.working_dir or None
        else:
            env.update(container_env(p.spec, fields))
        env.update(extra_env or {})
        if p.config is not None and p.config.mounts and p.proc is not None and argv:
            spec = {"argv": list(argv), "env": env, "cwd": cwd or "", "join": p.proc.pid}
            return launcher_argv(spec), env, None
        return list(argv), env, cwd

    def attach_context(self, pod_uid: str, name: str
                       ) -> tuple[Path, ContainerStatus, Any, bool]:
        p = self._latest(pod_uid, name)
        if p is None or p.status.state != "running":
            raise LookupError(f"container {name} is not running")
        if p.terminal is not None:
            writer: Any = p.terminal if p.terminal.stdin else None
        else:
            writer = p.proc.stdin if p.proc is not None else None
        return (self.log_path(pod_uid, name, p.status.restart_count), p.status, writer,
                bool(p.spec.get("stdinOnce")))

    def terminal(self, pod_uid: str, name: str) -> ContainerTerminal | None:
        p = self._latest(pod_uid, name)
        if p is None or p.status.state != "running":
            raise LookupError(f"container {name} is not running")
        return p.terminal

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

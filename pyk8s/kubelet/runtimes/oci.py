"""The OCI runtime: pods as real containers, driven straight through runc (or crun) —
no containerd, no pause container.

- A pod sandbox is a set of pinned namespaces (network, IPC, UTS; network/namespaces.py)
  with its CNI network (network/podnetwork.py: bridge + host-local + portmap on the node's
  spec.podCIDR) and the files every container of the pod shares (/etc/hosts,
  /etc/resolv.conf, /etc/hostname; podfiles.py).
- A container is an overlayfs root (the image's unpacked layers, images/, read-only below a
  writable upper dir) with an OCI spec (ociconfig.py); `runc create` + `runc start` with
  stdout / stderr on pipes pumped into the CRI log (crilog.py). This process is a child
  subreaper: the container's init is re-parented to it when `runc create` exits, so its
  exit status comes from waitpid(), woken by a pidfd (reaper.py). An OOM kill shows as
  SIGKILL with the memory cgroup's oom_kill count > 0: reason OOMKilled.
- Cgroups: `/pyk8s-<node>/pod<uid>/<container id>` in every hierarchy (cgroups.py).
- Teardown: kill → runc delete → unmount rootfs → CNI DEL → namespaces → cgroups; what an
  earlier agent left behind (kill -9) is cleaned up at start-up."""
from __future__ import annotations

import asyncio
import logging
import os
import resource
import secrets
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pyk8s.kubelet import cgroups, consolesocket, crilog, podfiles, syscalls
from pyk8s.kubelet.containertty import ContainerTerminal
from pyk8s.kubelet.images import ImageManager, ImageStore, RegistryClient
from pyk8s.kubelet.images.inuse import write_image_use
from pyk8s.kubelet.network import hostclaims
from pyk8s.kubelet.network.namespaces import (create_pod_namespaces, delete_all,
                                              delete_pod_namespaces, list_sandboxes)
from pyk8s.kubelet.network.podnetwork import PodNetwork
from pyk8s.kubelet.node import now_rfc3339
from pyk8s.kubelet.reaper import ReapedProcess
from pyk8s.kubelet.runtime import (ContainerConfig, ContainerStatus, CreateContainerError,
                                   Runtime)
from pyk8s.kubelet.runtimes import ociconfig

log = logging.getLogger("pyk8s.kubelet.oci")

Obj = dict[str, Any]

START_ERROR_EXIT_CODE = 128
PUMP_DRAIN_SECONDS = 2.0
RUNC_TIMEOUT = 60.0


def find_oci_runtime() -> str | None:
    """runc or crun, by probing: crun (faster to start) only where it can drive this
    host's cgroups — it refuses a hybrid layout whose cgroup2 hierarchy has controllers
    (RUNTIME-NOTES) — else runc, the safe default."""
    runc = shutil.which("runc")
    crun = shutil.which("crun")
    if crun and not cgroups.is_v2():
        unified = Path("/sys/fs/cgroup/unified/cgroup.controllers")
        try:
            hybrid_busy = bool(unified.read_text().split())
        except OSError:
            hybrid_busy = False
        if hybrid_busy:
            crun = None
    if os.environ.get("PYK8S_OCI_RUNTIME"):
        return shutil.which(os.environ["PYK8S_OCI_RUNTIME"])
    return runc or crun


def oci_available() -> bool:
    """Root, an OCI runtime and the CNI plugins: what `--runtime oci` needs."""
    return (os.geteuid() == 0 and find_oci_runtime() is not None
            and any(Path(d, "bridge").exists() for d in ("/usr/lib/cni", "/opt/cni/bin")))


class RuntimeNotReady(Exception):
    reason = "NetworkNotReady"


class SandboxError(Exception):
    reason = "FailedCreatePodSandBox"


@dataclass
class _Sandbox:
    uid: str
    pod: Obj
    dir: Path
    ip: str = ""
    ips: list[str] = field(default_factory=list)
    netns: str | None = None
    paths: ociconfig.PodSandboxPaths = field(default_factory=ociconfig.PodSandboxPaths)
    network_up: bool = False
    hostname: str = ""


@dataclass
class _Ctr:
    id: str
    pod_uid: str
    spec: Obj
    status: ContainerStatus
    bundle: Path
    cgroup: str
    config: ContainerConfig | None = None
    pid: int = 0
    proc: ReapedProcess | None = None    # once started: reaped by us (the subreaper)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    stdin: Any = None
    terminal: ContainerTerminal | None = None   # tty: true
    mounted: bool = False
    cleanup: asyncio.Task[None] | None = None


class OCIRuntime(Runtime):
    name = "oci"
    host_network = False
    needs_pod_cidr = True

    def __init__(self, data_dir: str | os.PathLike[str], node_name: str = "",
                 insecure_registries: tuple[str, ...] = (), binary: str | None = None,
                 cni_bridge: str = "cni0", cluster_dns: tuple[str, ...] = (),
                 cluster_domain: str = "cluster.local", resolv_conf: str = "/etc/resolv.conf",
                 pod_max_pids: int = -1) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.binary = binary or find_oci_runtime() or "runc"
        self.node_name = node_name or socket.gethostname().lower()
        self.state_root = self.data_dir / "runc"
        self.containers_dir = self.data_dir / "containers"
        self.pods_dir = self.data_dir / "pods"
        self.sandbox_root = self.data_dir / "sandboxes"
        self.cgroup_root = f"/pyk8s-{self.node_name}"
        self.store = ImageStore(self.data_dir / "images")
        self.images = ImageManager(self.store, RegistryClient(
            self.store, insecure_registries=set(insecure_registries)))
        self.cni_bridge = cni_bridge
        self.cluster_dns = list(cluster_dns)
        self.cluster_domain = cluster_domain
        self.resolv_conf_path = resolv_conf
        self.pod_max_pids = pod_max_pids
        self.network: PodNetwork | None = None   # once the node has its pod CIDR
        self.network_error = ""                   # why it cannot come up (a taken CIDR)
        self._bridge_claim: hostclaims.HostClaim | None = None
        self._cidr_claims: dict[str, hostclaims.HostClaim] = {}
        self.pod_cidr = ""
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Ctr] = {}
        self._pods: dict[str, list[str]] = {}
        self._pod_fields: dict[str, dict[str, str]] = {}
        self._host_caps = ociconfig.host_bounding_caps()
        try:
            self._min_oom = int(Path("/proc/self/oom_score_adj").read_text().strip())
        except (OSError, ValueError):
            self._min_oom = 0
        self._nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1048576)
        self._version = ""
        self._started = False
        self.warnings: list[tuple[str, str, str]] = []   # (pod uid, reason, message) events

    # -- life cycle of the runtime ---------------------------------------------------------
    def version(self) -> str:
        if not self._version:
            import subprocess
            try:
                out = subprocess.run([self.binary, "--version"], capture_output=True,
                                     text=True, timeout=10).stdout
                ver = out.split("\n")[0].split()[-1]
            except (OSError, subprocess.SubprocessError, IndexError):
                ver = "unknown"
            self._version = f"{Path(self.binary).name}://{ver.split('+')[0]}"
        return self._version

    async def start(self) -> None:
        """Become the containers' subreaper and clean what an earlier agent left behind
        (containers, mounts, CNI attachments, namespaces, cgroups)."""
        if self._started:
            return
        if os.geteuid() != 0:
            raise RuntimeError("the oci runtime needs root")
        if self._bridge_claim is None:
            try:
                self._bridge_claim = hostclaims.claim("bridge", self.cni_bridge,
                                                      str(self.data_dir))
            except hostclaims.ClaimedElsewhere as e:
                raise RuntimeError(
                    f"the pod bridge {self.cni_bridge} is in use by another pyk8s node on this "
                    f"host ({e}): give this cluster its own with --cni-bridge, --cluster-cidr "
                    "and --service-cluster-ip-range (or stop the other one)") from None
        syscalls.set_child_subreaper()
        for d in (self.state_root, self.containers_dir, self.pods_dir, self.sandbox_root):
            d.mkdir(parents=True, exist_ok=True)
        await self._recover()
        self._started = True

    async def remove_leftovers(self) -> None:
        """What a node killed earlier left (`pyk8s killall`): as at start, without running."""
        if os.geteuid() != 0:
            raise RuntimeError("the oci runtime needs root")
        await self._recover()

    async def _recover(self) -> None:
        rc, out = await self._runc("list", "--format", "json", check=False)
        leftovers = []
        if rc == 0 and out.strip() and out.strip() != b"null":
            try:
                leftovers = [c["id"] for c in orjson.loads(out) or []]
            except (ValueError, TypeError, KeyError):
                leftovers = []
        for cid in leftovers:
            log.info("removing container %s left by an earlier agent", cid)
            await self._runc("delete", "--force", cid, check=False)
        for mp in syscalls.mounts_under(str(self.containers_dir)):
            syscalls.umount(mp)
        shutil.rmtree(self.containers_dir, ignore_errors=True)
        self.containers_dir.mkdir(parents=True, exist_ok=True)
        await PodNetwork.cleanup_leftovers(self.data_dir / "cni")
        await self._remove_stray_sandboxes()
        for d in self.pods_dir.iterdir() if self.pods_dir.exists() else []:
            shutil.rmtree(d, ignore_errors=True)
        cgroups.remove(self.cgroup_root)

    async def _remove_stray_sandboxes(self) -> None:
        """Namespaces under the sandbox root that no known pod owns (an earlier agent's,
        or one whose creation was cut short)."""
        for sid in list_sandboxes(self.sandbox_root):
            if sid not in self._sandboxes:
                await delete_pod_namespaces(self.sandbox_root, sid)

    def set_pod_cidr(self, cidr: str) -> None:
        """The node's spec.podCIDR (from the controller manager's node IPAM): the CNI
        network comes up with it."""
        if not cidr or cidr == self.pod_cidr:
            return
        self.pod_cidr = cidr
        try:
            claims = [hostclaims.claim("podcidr", c.strip(), str(self.data_dir))
                      for c in cidr.split(",") if c.strip() not in self._cidr_claims]
        except hostclaims.ClaimedElsewhere as e:
            self.network = None
            self.network_error = (
                f"pod CIDR {cidr} is in use by another pyk8s node on this host ({e}): give "
                "this cluster another with --cluster-cidr (and --cni-bridge)")
            log.error("%s", self.network_error)
            return
        for c in claims:
            self._cidr_claims[c.name] = c
        self.network_error = ""
        self.network = PodNetwork(cidr, self.cni_bridge, self.data_dir / "cni")
        log.info("pod network: bridge %s, pod CIDR %s", self.cni_bridge, cidr)

    def network_ready(self) -> tuple[bool, str]:
        if self.network_error:
            return False, ("container runtime network not ready: NetworkReady=false "
                           f"reason:NetworkPluginNotReady message:{self.network_error}")
        if self.network is None:
            return False, ("container runtime network not ready: NetworkReady=false "
                           "reason:NetworkPluginNotReady message:Network plugin returns "
                           "error: cni plugin not initialized")
        return True, ""

    async def shutdown(self, grace_period: float = 5.0) -> None:
        running = [c.id for c in self._containers.values() if c.status.state == "running"]
        if running:
            log.info("stopping %d containers", len(running))
        await asyncio.gather(*(self.kill_container(cid, grace_period) for cid in running),
                             return_exceptions=True)
        uids = list(set(self._pods) | set(self._sandboxes))
        for uid, e in zip(uids, await asyncio.gather(
                *(self.remove_pod(uid) for uid in uids), return_exceptions=True)):
            if isinstance(e, BaseException):  # pragma: no cover - best effort on the way out
                log.error("removing pod %s: %s", uid, e)
        # What is left under the sandbox root, and its own private bind mount if it has one.
        await delete_all(self.sandbox_root)
        if self.network is not None:
            try:
                await self.network.cleanup_all()
            except Exception:  # pragma: no cover
                log.exception("removing the pod network")
        cgroups.remove(self.cgroup_root)
        for c in [self._bridge_claim, *self._cidr_claims.values()]:
            if c is not None:
                c.release()
        self._bridge_claim, self._cidr_claims = None, {}

    # -- runc -----------------------------------------------------------------------------
    async def _runc(self, *args: str, check: bool = True, stdin: int | None = None,
                    stdout: int | None = None, stderr: int | None = None,
                    log_file: Path | None = None) -> tuple[int, bytes]:
        argv = [self.binary, "--root", str(self.state_root)]
        if log_file is not None:
            argv += ["--log", str(log_file), "--log-format", "json"]
        argv += list(args)
        capture = stdout is None
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if capture else stdout,
            stderr=asyncio.subprocess.STDOUT if capture and stderr is None else stderr)
        if capture:
            out, _ = await asyncio.wait_for(proc.communicate(), RUNC_TIMEOUT)
        else:
            await asyncio.wait_for(proc.wait(), RUNC_TIMEOUT)
            out = b""
        rc = proc.returncode or 0
        if check and rc != 0:
            raise OSError(f"{Path(self.binary).name} {args[0]}: "
                          f"{self._runc_error(out, log_file)}")
        return rc, out

    @staticmethod
    def _runc_error(out: bytes, log_file: Path | None) -> str:
        """The last error runc logged (its JSON log), else its output."""
        msg = ""
        if log_file is not None and log_file.exists():
            for line in log_file.read_bytes().splitlines():
                try:
                    rec = orjson.loads(line)
                except ValueError:
                    continue
                if rec.get("level") in ("error", "fatal"):
                    msg = str(rec.get("msg", ""))
        if not msg:
            msg = out.decode(errors="replace").strip().splitlines()[-1] if out.strip() else \
                "failed"
        return msg

    # -- pod sandboxes ----------------------------------------------------------------------
    def set_pod(self, pod: Obj, pod_ip: str) -> None:
        md = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self._pod_fields[md.get("uid", "")] = {
            "metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", ""),
            "spec.nodeName": spec.get("nodeName", ""), "status.podIP": pod_ip}

    def pod_ip(self, pod_uid: str) -> str | None:
        sb = self._sandboxes.get(pod_uid)
        return sb.ip if sb is not None and sb.ip else None

    async def run_pod_sandbox(self, pod: Obj, node_ip: str) -> str:
        """The pod's namespaces, network and shared files; its IP. Idempotent."""
        md, spec = pod["metadata"], pod.get("spec") or {}
        uid = md["uid"]
        sb = self._sandboxes.get(uid)
        if sb is not None and (sb.network_up or spec.get("hostNetwork")):
            return sb.ip
        host_net = bool(spec.get("hostNetwork"))
        if not host_net:
            ok, why = self.network_ready()
            if not ok:
                raise RuntimeNotReady(f"network is not ready: {why}")
        await self.start()
        if sb is None:
            d = self.pods_dir / uid
            d.mkdir(parents=True, exist_ok=True)
            hostname = socket.gethostname() if host_net else podfiles.pod_hostname(pod)
            if self.pod_max_pids > 0:
                try:
                    cgroups.set_pids_max(self.pod_cgroup(uid), self.pod_max_pids)
                except OSError as e:
                    raise SandboxError(f"Failed to create pod sandbox: pids limit: {e}"
                                       ) from None
            creating = asyncio.ensure_future(create_pod_namespaces(
                self.sandbox_root, uid, hostname, host_network=host_net))
            try:
                ns = await asyncio.shield(creating)
            except asyncio.CancelledError:   # they are made in a thread: undo once made
                await asyncio.gather(creating, return_exceptions=True)
                await delete_pod_namespaces(self.sandbox_root, uid)
                raise
            except Exception as e:
                raise SandboxError(f"Failed to create pod sandbox: {e}") from None
            sb = _Sandbox(uid, pod, d, netns=ns.net, hostname=hostname,
                          paths=ociconfig.PodSandboxPaths(net=ns.net, ipc=ns.ipc,
                                                          uts=ns.uts))
            self._sandboxes[uid] = sb
        if host_net:
            sb.ip, sb.ips = node_ip, [node_ip]
        else:
            assert sb.netns is not None and self.network is not None
            try:
                sb.ip = await self.network.setup(uid, sb.netns, pod)
            except Exception as e:
                raise SandboxError(
                    f'Failed to create pod sandbox: plugin type="bridge" failed (add): {e}'
                ) from None
            sb.ips = [sb.ip]
            sb.network_up = True
        self._write_pod_files(sb, pod)
        return sb.ip

    def _write_pod_files(self, sb: _Sandbox, pod: Obj) -> None:
        hosts = podfiles.hosts_file(pod, sb.ips, self.cluster_domain,
                                    podfiles.read_host_file("/etc/hosts"))
        resolv, warning = podfiles.resolv_conf(pod, self.cluster_dns, self.cluster_domain,
                                               podfiles.read_host_file(self.resolv_conf_path))
        if warning:
            self.warnings.append((sb.uid, "MissingClusterDNS", warning))
        for name, text in (("hosts", hosts), ("resolv.conf", resolv),
                           ("hostname", sb.hostname + "\n")):
            p = sb.dir / name
            p.write_text(text)
        sb.paths.hosts = str(sb.dir / "hosts")
        sb.paths.resolv_conf = str(sb.dir / "resolv.conf")
        sb.paths.hostname = str(sb.dir / "hostname")

    async def stop_pod_sandbox(self, pod_uid: str) -> None:
        """A finished pod keeps its containers (logs) but gives back its network."""
        sb = self._sandboxes.get(pod_uid)
        if sb is None or not sb.network_up or self.network is None:
            return
        await self.network.teardown(pod_uid, sb.netns)
        sb.network_up = False

    # -- containers ------------------------------------------------------------------------
    async def create_container(self, pod_uid: str, container: Obj, init: bool = False,
                               config: ContainerConfig | None = None) -> str:
        sb = self._sandboxes.get(pod_uid)
        if sb is None:
            raise CreateContainerError("the pod has no sandbox")
        name = container["name"]
        image_ref = str(container.get("image") or "")
        record = self.store.get(image_ref)
        if record is None:
            raise CreateContainerError(f'image "{image_ref}" is not present')
        ids = self._pods.setdefault(pod_uid, [])
        same = [c for c in ids if self._containers[c].status.name == name
                and self._containers[c].status.init == init]
        for old in same[:-1]:
            ids.remove(old)
            self._forget(old)
        restart = (self._containers[same[-1]].status.restart_count + 1) if same else 0
        cid = secrets.token_hex(32)
        bundle = self.containers_dir / cid
        rootfs = bundle / "rootfs"
        for d in (rootfs, bundle / "upper", bundle / "work"):
            d.mkdir(parents=True)
        lower = [str(p) for p in reversed(self.store.layer_dirs(record))]
        if not lower:
            (bundle / "empty").mkdir()
            lower = [str(bundle / "empty")]
        image_id = f"{record.repo_digests[0]}" if record.repo_digests else record.id
        # which image the bundle holds, for `pyk8s image rm` (another process) to refuse
        # removing it while the container exists
        write_image_use(bundle, image_id=record.id, image=image_ref, pod_uid=pod_uid,
                        container=name)
        c = _Ctr(cid, pod_uid, container, ContainerStatus(
            name=name, image=image_ref, image_id=image_id, container_id=f"containerd://{cid}",
            state="created", restart_count=restart, init=init), bundle,
            f"{self.cgroup_root}/pod{pod_uid}/{cid}", config=config)
        self._containers[cid] = c
        ids.append(cid)
        try:
            syscalls.mount_overlay(lower, str(bundle / "upper"), str(bundle / "work"),
                                   str(rootfs))
            c.mounted = True
            tlog = bundle / "termination-log"
            tlog.touch()
            cfg = config or ContainerConfig(argv=[])
            spec = ociconfig.build_spec(ociconfig.ContainerSpecInput(
                container=container, pod=sb.pod, image_config=record.config or {},
                rootfs=str(rootfs), cgroups_path=c.cgroup,
                command=cfg.command, args=cfg.args,
                env=list(cfg.env), working_dir=cfg.working_dir, mounts=list(cfg.mounts),
                sandbox=sb.paths, host_caps=self._host_caps,
                min_oom_score_adj=self._min_oom, nofile=self._nofile,
                hostname=sb.hostname, termination_log=str(tlog)))
        except (OSError, ValueError) as e:
            self._drop(c)
            raise CreateContainerError(str(e)) from None
        (bundle / "config.json").write_bytes(orjson.dumps(spec))
        self.store.touch(record.id)
        return cid

    def _drop(self, c: _Ctr) -> None:
        """Undo a container that never ran."""
        ids = self._pods.get(c.pod_uid, [])
        if c.id in ids:
            ids.remove(c.id)
        self._containers.pop(c.id, None)
        self._release_rootfs(c)

    def _release_rootfs(self, c: _Ctr) -> None:
        if c.mounted:
            try:
                syscalls.umount(str(c.bundle / "rootfs"))
            except OSError as e:
                log.warning("unmounting %s: %s", c.bundle / "rootfs", e)
            c.mounted = False
        shutil.rmtree(c.bundle, ignore_errors=True)

    def _forget(self, cid: str) -> None:
        c = self._containers.pop(cid, None)
        if c is not None:
            self._release_rootfs(c)

    def log_path(self, pod_uid: str, name: str, restart: int) -> Path:
        return self.pods_dir / pod_uid / name / f"{restart}.log"

    def _exited(self, c: _Ctr, code: int, reason: str, message: str = "") -> None:
        st = c.status
        st.finished_time = time.time()
        st.state, st.finished_at, st.exit_code, st.reason = "exited", now_rfc3339(), code, \
            reason
        st.message = message
        c.exited.set()

    async def start_container(self, container_id: str) -> None:
        c = self._containers[container_id]
        st = c.status
        path = self.log_path(c.pod_uid, st.name, st.restart_count)
        path.parent.mkdir(parents=True, exist_ok=True)
        st.started_at = now_rfc3339()
        tty = bool(c.spec.get("tty"))
        out_r = out_w = err_r = err_w = in_r = in_w = master = -1
        if not tty:   # a terminal is stdin, stdout and stderr at once
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            if c.spec.get("stdin"):
                in_r, in_w = os.pipe()
        runc_log = c.bundle / "runc.log"
        pid_file = c.bundle / "init.pid"
        try:
            if tty:
                rc, out, master = await self._create_on_terminal(c, pid_file, runc_log)
            else:
                rc, out = await self._runc(
                    "create", "--bundle", str(c.bundle), "--pid-file", str(pid_file), c.id,
                    check=False, stdin=in_r if in_r >= 0 else None, stdout=out_w,
                    stderr=err_w, log_file=runc_log)
            if rc == 0:
                c.pid = int(pid_file.read_text().strip())
        except (OSError, ValueError, asyncio.TimeoutError) as e:
            rc, out = -1, str(e).encode()
        finally:
            for fd in (out_w, err_w, in_r):
                if fd >= 0:
                    os.close(fd)
        if rc != 0 or not c.pid:
            msg = self._runc_error(out, runc_log)
            for fd in (out_r, err_r, in_w, master):
                if fd >= 0:
                    os.close(fd)
            tool = Path(self.binary).name
            if not msg.startswith(f"{tool} create failed"):
                msg = f"{tool} create failed: {msg}"
            message = (f"failed to create containerd task: failed to create shim task: OCI "
                       f"runtime create failed: {msg}: unknown")
            crilog.write_message(path, crilog.STDERR, message + "\n")
            await self._runc("delete", "--force", c.id, check=False)
            cgroups.remove(c.cgroup)
            self._release_rootfs(c)
            self._exited(c, START_ERROR_EXIT_CODE, "StartError", message)
            return
        if master >= 0:   # the terminal's output is the log's one stream, stdout
            c.terminal = ContainerTerminal(master, stdin=bool(c.spec.get("stdin")))
            c.pumps = await crilog.pump_pipes([(master, crilog.STDOUT)], path)
        else:
            c.pumps = await crilog.pump_pipes([(out_r, crilog.STDOUT),
                                               (err_r, crilog.STDERR)], path)
        if in_w >= 0:
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, os.fdopen(in_w, "wb", 0))
            c.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        self._watch_exit(c)
        rc, out = await self._runc("start", c.id, check=False, log_file=runc_log)
        if rc != 0 and not c.exited.is_set():
            log.warning("container %s: runc start: %s", st.name,
                        self._runc_error(out, runc_log))
            self._signal(c, signal.SIGKILL)
        st.state = "running" if not c.exited.is_set() else st.state

    async def _create_on_terminal(self, c: _Ctr, pid_file: Path, runc_log: Path
                                  ) -> tuple[int, bytes, int]:
        """`runc create --console-socket` for a `tty: true` container: (runc's status, its
        output, the terminal's master fd or -1)."""
        listener = consolesocket.ConsoleSocket(consolesocket.new_socket_path())
        try:
            create = asyncio.ensure_future(self._runc(
                "create", "--bundle", str(c.bundle), "--pid-file", str(pid_file),
                consolesocket.FLAG, listener.path, c.id, check=False, log_file=runc_log))
            try:
                master = await listener.receive_until(create, RUNC_TIMEOUT)
            except consolesocket.ConsoleSocketError as e:
                rc, out = await create
                return (rc or -1), (out or str(e).encode()), -1
            try:
                rc, out = await create
            except BaseException:
                os.close(master)
                raise
            if rc != 0:
                os.close(master)
                return rc, out, -1
            return rc, out, master
        finally:
            listener.close()

    def _watch_exit(self, c: _Ctr) -> None:
        c.proc = ReapedProcess(c.pid)

        async def watch() -> None:
            await c.proc.wait()
            await self._after_exit(c, c.proc.exit_code())
        c.cleanup = asyncio.create_task(watch(), name=f"container {c.status.name}")

    async def _after_exit(self, c: _Ctr, code: int) -> None:
        oom = code == 137 and cgroups.oom_kills(c.cgroup) > 0
        if c.pumps:
            await asyncio.wait(c.pumps, timeout=PUMP_DRAIN_SECONDS)
        message = ""
        try:
            message = (c.bundle / "termination-log").read_text(errors="replace")[:4096]
        except OSError:
            pass
        if not message and (c.spec.get("terminationMessagePolicy") ==
                            "FallbackToLogsOnError") and code != 0:
            message = crilog.read_output(self.log_path(c.pod_uid, c.status.name,
                                                       c.status.restart_count))[-2048:]
        await self._runc("delete", "--force", c.id, check=False)
        cgroups.remove(c.cgroup)
        self._release_rootfs(c)
        if c.stdin is not None:
            c.stdin.close()
        if c.terminal is not None:
            c.terminal.release()
        self._exited(c, code, "OOMKilled" if oom else ("Completed" if code == 0 else "Error"),
                     message)
        if self.on_exit is not None:
            try:
                self.on_exit(c.pod_uid)
            except Exception:  # pragma: no cover
                log.exception("on_exit callback")

    def _signal(self, c: _Ctr, sig: int) -> None:
        if not c.pid or c.exited.is_set():
            return
        if c.proc is not None:
            c.proc.send_signal(sig)

    async def kill_container(self, container_id: str, grace_period: float) -> None:
        c = self._containers.get(container_id)
        if c is None or c.status.state == "exited":
            return
        if not c.pid:   # created, never started
            self._release_rootfs(c)
            self._exited(c, 0, "Completed")
            return
        self._signal(c, signal.SIGTERM)
        try:
            await asyncio.wait_for(c.exited.wait(), max(grace_period, 0.0))
        except asyncio.TimeoutError:
            if (c.spec and (self._sandboxes.get(c.pod_uid) or _Sandbox("", {}, Path())).pod
                    .get("spec", {}).get("hostPID")):
                await self._runc("kill", "--all", c.id, "KILL", check=False)
            self._signal(c, signal.SIGKILL)
            await c.exited.wait()

    async def remove_pod(self, pod_uid: str) -> None:
        for cid in self._pods.pop(pod_uid, []):
            c = self._containers.get(cid)
            if c is None:
                continue
            if c.status.state != "exited" and c.pid:
                self._signal(c, signal.SIGKILL)
                await c.exited.wait()
            if c.cleanup is not None:
                await asyncio.gather(c.cleanup, return_exceptions=True)
            self._forget(cid)
        self._pod_fields.pop(pod_uid, None)
        sb = self._sandboxes.pop(pod_uid, None)
        if sb is not None:
            if sb.network_up and self.network is not None:
                try:
                    await self.network.teardown(pod_uid, sb.netns)
                except Exception as e:
                    log.warning("pod %s: CNI DEL: %s", pod_uid, e)
            await delete_pod_namespaces(self.sandbox_root, pod_uid)
        shutil.rmtree(self.pods_dir / pod_uid, ignore_errors=True)
        cgroups.remove(f"{self.cgroup_root}/pod{pod_uid}")

    def pod_containers(self, pod_uid: str) -> list[ContainerStatus]:
        return [self._containers[c].status for c in self._pods.get(pod_uid, [])]

    def pod_uids(self) -> list[str]:
        return list(self._pods)

    def cgroup_of(self, container_id: str) -> str | None:
        c = self._containers.get(container_id.split("://", 1)[-1])
        return c.cgroup if c is not None and c.status.state == "running" else None

    def pod_cgroup(self, pod_uid: str) -> str:
        return f"{self.cgroup_root}/pod{pod_uid}"

    # -- streaming -------------------------------------------------------------------------
    def _latest(self, pod_uid: str, name: str) -> _Ctr | None:
        found = None
        for cid in self._pods.get(pod_uid, []):
            c = self._containers[cid]
            if c.status.name == name and (found is None or found.status.init
                                          or not c.status.init):
                found = c
        return found

    def container_log(self, pod_uid: str, name: str,
                      previous: bool = False) -> tuple[Path, ContainerStatus | None] | None:
        c = self._latest(pod_uid, name)
        if c is None:
            return None
        restart = c.status.restart_count - (1 if previous else 0)
        if restart < 0:
            return None
        return self.log_path(pod_uid, name, restart), (None if previous else c.status)

    def _running(self, pod_uid: str, name: str) -> _Ctr:
        c = self._latest(pod_uid, name)
        if c is None or c.status.state != "running":
            raise LookupError(f"container {name} is not running")
        return c

    def exec_context(self, pod_uid: str, name: str, argv: list[str], tty: bool = False
                     ) -> tuple[list[str], dict[str, str], str | None]:
        """`runc exec` into the container: its namespaces, cgroup, user, env and cwd."""
        c = self._running(pod_uid, name)
        cmd = [self.binary, "--root", str(self.state_root), "exec"]
        if tty:   # a terminal inside the container, its master sent to the console socket
            sock = consolesocket.new_socket_path()
            cmd += ["--detach", "--tty", consolesocket.FLAG, sock,
                    "--pid-file", sock[:-len(".sock")] + ".pid", "--env", "TERM=xterm"]
        return cmd + [c.id] + list(argv), {"PATH": os.environ.get(
            "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")}, None

    def attach_context(self, pod_uid: str, name: str
                       ) -> tuple[Path, ContainerStatus, Any, bool]:
        c = self._running(pod_uid, name)
        stdin = c.terminal if c.terminal is not None and c.terminal.stdin else c.stdin
        return (self.log_path(pod_uid, name, c.status.restart_count), c.status, stdin,
                bool(c.spec.get("stdinOnce")))

    def terminal(self, pod_uid: str, name: str) -> ContainerTerminal | None:
        c = self._running(pod_uid, name)
        return c.terminal

    async def exec_sync(self, container_id: str, argv: list[str],
                        timeout: float) -> tuple[int, bytes]:
        c = self._containers.get(container_id.split("://", 1)[-1])
        if c is None or c.status.state != "running":
            raise LookupError(f"container {container_id} is not running")
        pid_file = c.bundle / f"exec-{secrets.token_hex(4)}.pid"
        proc = await asyncio.create_subprocess_exec(
            self.binary, "--root", str(self.state_root), "exec", "--pid-file", str(pid_file),
            c.id, *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
            try:
                proc.kill()
            except ProcessLookupError:
                pass
            await proc.wait()
            raise
        finally:
            try:
                pid_file.unlink()
            except OSError:
                pass
        rc = proc.returncode or 0
        return (128 - rc if rc < 0 else rc), out

    async def dial(self, pod_uid: str, port: int) -> tuple[asyncio.StreamReader,
                                                         asyncio.StreamWriter]:
        """A connection to localhost:port inside the pod's network namespace (kubectl
        port-forward), as upstream's runtime dials it."""
        sb = self._sandboxes.get(pod_uid)
        if sb is None or not sb.netns:
            return await asyncio.open_connection("127.0.0.1", port)
        sock = syscalls.socket_in_netns(sb.netns)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

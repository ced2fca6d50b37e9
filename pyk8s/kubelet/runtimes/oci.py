"""The OCI runtime: pods as real containers, driven straight through runc (or crun) —
no containerd, no pause container.

- A pod sandbox is a set of pinned namespaces (network, IPC, UTS; network/namespaces.py)
  with its CNI network (network/podnetwork.py: bridge + host-local + portmap on the node's
  spec.podCIDR; other nodes' pods through the VXLAN overlay, network/overlay.py, which the
  node runs beside the kubelet) and the files every container of the pod shares
  (/etc/hosts, /etc/resolv.conf, /etc/hostname; podfiles.py).
- A container is an overlayfs root (the image's unpacked layers, images/, read-only below a
  writable upper dir) with an OCI spec (ociconfig.py); `runc create` + `runc start` with
  stdout / stderr on named FIFOs in its bundle, pumped into the CRI log (crilog.py). This
  process is a child subreaper: the container's init is re-parented to it when `runc
  create` exits, so its exit status comes from waitpid(), woken by a pidfd (reaper.py). An
  OOM kill shows as SIGKILL with the memory cgroup's oom_kill count > 0: reason OOMKilled.
- Cgroups: `/pyk8s-<node>/pod<uid>/<container id>` in every hierarchy (cgroups.py).
- Teardown: kill → runc delete → unmount rootfs → CNI DEL → namespaces → cgroups.

After a crash (the agent killed with SIGKILL), containers keep running, as upstream's with
containerd when the kubelet restarts. What the runtime knows is kept in small JSON records
(written to a temporary file, then renamed): `pods/<uid>/sandbox.json` (the pod, its IPs,
namespaces, network state) and `pods/<uid>/container-<id>.json` (its status, spec entry,
cgroup, bundle and init pid with the pid's start time). `start()` adopts them:

- a sandbox whose record is whole and whose namespaces are still pinned is taken over with
  its IP (its CNI attachment is kept);
- a container recorded running that runc still runs with the same init process is adopted:
  its FIFOs are pumped again (appended to the same log), its end is seen through a pidfd
  (reaper.AdoptedProcess). It is not our child: its exit code is unknown; it is then
  reported terminated as upstream's kubelet reports a container whose status is lost —
  reason ContainerStatusUnknown, exit code 137 (OOMKilled if its cgroup saw an OOM kill),
  with LOST_STATUS_MESSAGE (or its termination message);
- a container recorded running that is gone (or stopped) is reported the same way and its
  remains removed; one recorded exited keeps its recorded status (lastState, init
  containers done);
- a `tty: true` container cannot be adopted (its terminal's master was the dead agent's):
  it is killed and reported as lost, and the kubelet starts it again as its restart policy
  says;
- everything else — runc containers without a record, never-started ones, rootfs mounts,
  CNI attachments, namespaces and pod directories of sandboxes not adopted, empty cgroups —
  is removed (all of it by `remove_leftovers`, `pyk8s killall`).

The kubelet then removes the adopted pods that are no longer bound to the node. A clean
stop (`shutdown`) stops every container, adopted ones too."""
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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from pyk8s.kubelet import cgroups, consolesocket, crilog, podfiles, syscalls
from pyk8s.kubelet.containertty import ContainerTerminal, pump_terminal
from pyk8s.kubelet.images import ImageManager, ImageStore, RegistryClient
from pyk8s.kubelet.images.inuse import write_image_use
from pyk8s.kubelet.network import hostclaims
from pyk8s.kubelet.network.cni import cached_entries
from pyk8s.kubelet.network.namespaces import (create_pod_namespaces, delete_all,
                                              delete_pod_namespaces, is_namespace_file,
                                              list_sandboxes)
from pyk8s.kubelet.network.overlay import Overlay, OverlayError
from pyk8s.kubelet.network.podnetwork import PodNetwork
from pyk8s.kubelet.node import now_rfc3339
from pyk8s.kubelet.procfs import start_time
from pyk8s.kubelet.reaper import AdoptedProcess, ReapedProcess, reap_orphans
from pyk8s.kubelet.runtime import (ContainerConfig, ContainerStatus, CreateContainerError,
                                   Runtime)
from pyk8s.kubelet.runtimes import ociconfig

log = logging.getLogger("pyk8s.kubelet.oci")

Obj = dict[str, Any]

START_ERROR_EXIT_CODE = 128
PUMP_DRAIN_SECONDS = 2.0
RUNC_TIMEOUT = 60.0
ORPHAN_REAP_INTERVAL = 0.5
# A container whose exit status is lost (it exited while not our child: started by an
# earlier agent) is reported terminated as upstream's kubelet reports a container the
# runtime no longer knows (convertToAPIContainerStatuses): this reason and exit code.
LOST_STATUS_REASON = "ContainerStatusUnknown"
LOST_STATUS_EXIT_CODE = 137
LOST_STATUS_MESSAGE = ("The container exited while the kubelet that started it was not "
                       "running: its exit code is unknown")
LOST_TERMINAL_MESSAGE = ("The container's terminal was lost with the kubelet that started "
                         "it: the container was killed")
SANDBOX_RECORD = "sandbox.json"


def write_record(path: Path, record: Obj) -> None:
    """Write a JSON record atomically (a temporary file renamed over it): whoever reads it
    — the next agent, after a crash — sees the old record or the new one, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(record))
    os.replace(tmp, path)


def read_record(path: Path) -> Obj | None:
    """A record written by write_record; None if it is missing or not a JSON object."""
    try:
        rec = orjson.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


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

    def record(self) -> Obj:
        """What a restarted agent needs to adopt the sandbox (pods/<uid>/sandbox.json)."""
        pod = {k: self.pod[k] for k in ("apiVersion", "kind", "metadata", "spec")
               if k in self.pod}
        return {"uid": self.uid, "pod": pod, "ip": self.ip, "ips": self.ips,
                "netns": self.netns, "hostname": self.hostname,
                "networkUp": self.network_up, "paths": asdict(self.paths)}

    @classmethod
    def from_record(cls, rec: Obj, d: Path) -> "_Sandbox":
        """The sandbox of a record (KeyError, TypeError, ValueError when it is broken)."""
        names = {f.name for f in fields(ociconfig.PodSandboxPaths)}
        paths = ociconfig.PodSandboxPaths(**{k: v for k, v in rec["paths"].items()
                                             if k in names})
        if rec["uid"] != d.name or not isinstance(rec["pod"], dict):
            raise ValueError(f"sandbox record {d} is not pod {rec['uid']}'s")
        return cls(str(rec["uid"]), rec["pod"], d, ip=str(rec["ip"]),
                   ips=[str(i) for i in rec["ips"]], netns=rec["netns"],
                   paths=paths, network_up=bool(rec["networkUp"]),
                   hostname=str(rec["hostname"]))


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
    started: int | None = None           # the init's start time (reaper.start_time)
    created: int = field(default_factory=time.time_ns)   # orders a pod's containers
    # once started: reaped by us (the subreaper); adopted: only watched (not our child)
    proc: ReapedProcess | AdoptedProcess | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    stdin: Any = None
    terminal: ContainerTerminal | None = None   # tty: true
    mounted: bool = False
    cleanup: asyncio.Task[None] | None = None

    def record(self) -> Obj:
        """What a restarted agent needs to adopt the container or report how it ended
        (pods/<uid>/container-<id>.json)."""
        return {"id": self.id, "podUID": self.pod_uid, "spec": self.spec,
                "status": asdict(self.status), "bundle": str(self.bundle),
                "cgroup": self.cgroup, "pid": self.pid, "pidStarted": self.started,
                "created": self.created}

    @classmethod
    def from_record(cls, rec: Obj) -> "_Ctr":
        """The container of a record (KeyError, TypeError, ValueError when broken)."""
        names = {f.name for f in fields(ContainerStatus)}
        status = ContainerStatus(**{k: v for k, v in rec["status"].items() if k in names})
        if not isinstance(rec["spec"], dict) or status.state not in ("created", "running",
                                                                     "exited"):
            raise ValueError(f"container record {rec['id']} is broken")
        started = rec.get("pidStarted")
        return cls(str(rec["id"]), str(rec["podUID"]), rec["spec"], status,
                   Path(rec["bundle"]), str(rec["cgroup"]), pid=int(rec["pid"]),
                   started=int(started) if started is not None else None,
                   created=int(rec["created"]))


class OCIRuntime(Runtime):
    name = "oci"
    host_network = False
    needs_pod_cidr = True

    def __init__(self, data_dir: str | os.PathLike[str], node_name: str = "",
                 insecure_registries: tuple[str, ...] = (), binary: str | None = None,
                 cni_bridge: str = "cni0", cluster_dns: tuple[str, ...] = (),
                 cluster_domain: str = "cluster.local", resolv_conf: str = "/etc/resolv.conf",
                 pod_max_pids: int = -1, overlay: Overlay | None = None) -> None:
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
        self.overlay = overlay                    # None: this node's bridge only
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
        self._orphan_reaper: asyncio.Task[None] | None = None
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
        """Become the containers' subreaper, adopt the sandboxes and containers an earlier
        agent of this data dir recorded and left running (killed), and remove the rest of
        what it left (containers, mounts, CNI attachments, namespaces, cgroups)."""
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
        if self.overlay is not None:
            try:
                self.overlay.claim(str(self.data_dir))
            except OverlayError as e:
                # Another node in this network namespace has the VNI: most likely a second
                # node of this cluster on the host (one VXLAN device per VNI and port).
                log.warning("%s. This node runs without the overlay: its pods reach other "
                            "nodes' pods through this host only", e)
                self.overlay = None
        syscalls.set_child_subreaper()
        self._orphan_reaper = asyncio.create_task(self._reap_orphans(), name="orphan reaper")
        for d in (self.state_root, self.containers_dir, self.pods_dir, self.sandbox_root):
            d.mkdir(parents=True, exist_ok=True)
        await self._adopt()
        await self._remove_unadopted()
        self._started = True

    async def _reap_orphans(self) -> None:
        """As a subreaper, reap the container processes nobody waits for (reaper.py
        reap_orphans), twice a second."""
        while True:
            await asyncio.sleep(ORPHAN_REAP_INTERVAL)
            for pid in reap_orphans({c.pid for c in self._containers.values() if c.pid}):
                log.debug("reaped orphaned container process %d", pid)

    async def remove_leftovers(self) -> None:
        """What a node killed earlier left (`pyk8s killall`): all of it, adopting nothing,
        without running."""
        if os.geteuid() != 0:
            raise RuntimeError("the oci runtime needs root")
        await self._remove_unadopted()
        await delete_all(self.sandbox_root)

    async def _runc_states(self) -> dict[str, tuple[str, int]]:
        """runc's containers: id → (status, init pid)."""
        rc, out = await self._runc("list", "--format", "json", check=False)
        if rc != 0 or not out.strip():
            return {}
        try:
            return {str(c["id"]): (str(c.get("status") or ""), int(c.get("pid") or 0))
                    for c in orjson.loads(out) or []}
        except (ValueError, TypeError, KeyError):
            return {}

    # -- after a crash: adopt what was recorded, remove the rest ----------------------------
    def _record_path(self, c: _Ctr) -> Path:
        return self.pods_dir / c.pod_uid / f"container-{c.id}.json"

    def _save_sandbox(self, sb: _Sandbox) -> None:
        try:
            write_record(sb.dir / SANDBOX_RECORD, sb.record())
        except OSError as e:   # pragma: no cover - a full disk: adoption then fails
            log.warning("pod %s: writing its sandbox record: %s", sb.uid, e)

    def _save_container(self, c: _Ctr) -> None:
        """Record the container's state (known containers only: a forgotten one's record
        is gone for good)."""
        if self._containers.get(c.id) is not c or c.pod_uid not in self._sandboxes:
            return
        try:
            write_record(self._record_path(c), c.record())
        except OSError as e:   # pragma: no cover - a full disk, or its pod being removed
            log.warning("container %s: writing its record: %s", c.status.name, e)

    def _load_sandbox(self, d: Path, attached: set[str]) -> _Sandbox | None:
        """The sandbox recorded in pod dir `d` if its namespaces are still pinned (after a
        reboot they are not); its network counts as up only with a CNI attachment."""
        rec = read_record(d / SANDBOX_RECORD)
        if rec is None:
            return None
        try:
            sb = _Sandbox.from_record(rec, d)
        except (KeyError, TypeError, ValueError) as e:
            log.warning("pod %s: broken sandbox record: %s", d.name, e)
            return None
        pinned = [p for p in (sb.paths.net, sb.paths.ipc, sb.paths.uts) if p]
        if not all(is_namespace_file(p) for p in pinned):
            return None
        if sb.network_up and sb.uid not in attached:
            sb.network_up, sb.ip, sb.ips = False, "", []
        return sb

    async def _adopt(self) -> None:
        """Take over the sandboxes and containers recorded under the pods dir (module
        docstring); what is not taken over is left for _remove_unadopted."""
        states = await self._runc_states()
        attached = {str(e.get("containerId")) for _, e in
                    cached_entries(self.data_dir / "cni" / "cache")}
        for d in sorted(self.pods_dir.iterdir()):
            sb = self._load_sandbox(d, attached)
            if sb is None:
                continue
            self._sandboxes[sb.uid] = sb
            self._pods.setdefault(sb.uid, [])
            ctrs = []
            for f in d.glob("container-*.json"):
                try:
                    c = _Ctr.from_record(read_record(f) or {})
                except (KeyError, TypeError, ValueError) as e:
                    log.warning("pod %s: broken container record %s: %s", sb.uid, f.name, e)
                    f.unlink(missing_ok=True)
                    continue
                if c.pod_uid == sb.uid and f == self._record_path(c):
                    ctrs.append(c)
            for c in sorted(ctrs, key=lambda c: c.created):
                await self._adopt_container(c, states.get(c.id, ("", 0)))
            log.info("adopted pod %s (IP %s): %d running containers", sb.uid,
                     sb.ip or "none", sum(self._containers[cid].status.state == "running"
                                          for cid in self._pods[sb.uid]))

    async def _adopt_container(self, c: _Ctr, state: tuple[str, int]) -> None:
        """One recorded container of an adopted sandbox, as runc sees it (status, pid):
        adopted when runc still runs its recorded init process; else reported ended with
        an unknown status (LOST_STATUS_*) and removed. A `tty: true` container is never
        adopted: the master of its terminal was the earlier agent's and died with it, so
        nothing reaches the terminal any more; it is killed and reported lost, and the
        kubelet starts it again (a new container) as its restart policy says."""
        status, pid = state
        st = c.status
        c.mounted = os.path.ismount(c.bundle / "rootfs")
        if st.state == "created" or status == "created":   # never started: never made
            await self._runc("delete", "--force", c.id, check=False)
            self._release_rootfs(c)
            self._record_path(c).unlink(missing_ok=True)
            return
        self._containers[c.id] = c
        self._pods[c.pod_uid].append(c.id)
        if st.state == "exited":
            if c.bundle.exists():   # the agent died while removing it
                await self._runc("delete", "--force", c.id, check=False)
                cgroups.remove(c.cgroup)
                self._release_rootfs(c)
            c.exited.set()
            return
        if status == "running" and pid == c.pid and not c.spec.get("tty"):
            try:
                c.proc = AdoptedProcess(pid, c.started)
            except ProcessLookupError:
                c.proc = None
            if c.proc is not None:
                await self._reattach(c)
                self._watch_exit(c)
                log.info("adopted container %s of pod %s (pid %d)", st.name, c.pod_uid, pid)
                return
        # Gone, or a terminal's container whose master died with the earlier agent: its
        # processes (if any) are killed by `runc delete --force`.
        if status == "running" and c.spec.get("tty"):
            log.info("killing container %s of pod %s: its terminal died with the earlier "
                     "kubelet", st.name, c.pod_uid)
            await self._after_exit(c, None, LOST_TERMINAL_MESSAGE)
        else:
            log.info("container %s of pod %s ended while the kubelet was down", st.name,
                     c.pod_uid)
            await self._after_exit(c, None)

    async def _reattach(self, c: _Ctr) -> None:
        """Pump an adopted container's output FIFOs into its log again (appended); its
        stdin, unless stdinOnce (that stdin was closed with the earlier agent)."""
        path = self.log_path(c.pod_uid, c.status.name, c.status.restart_count)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            c.pumps = await crilog.pump_fifos(c.bundle, path)
        except OSError as e:
            log.warning("container %s: its output FIFOs: %s", c.status.name, e)
        if c.spec.get("stdin") and not c.spec.get("stdinOnce"):
            await self._open_stdin(c)

    async def _remove_unadopted(self) -> None:
        """Everything under the data dir that no adopted sandbox or running container owns:
        runc containers, rootfs mounts and bundles, CNI attachments, pinned namespaces, pod
        directories, empty cgroups (all of it when nothing was adopted)."""
        live = {cid for cid, c in self._containers.items() if c.status.state == "running"}
        for cid in await self._runc_states():
            if cid not in live:
                log.info("removing container %s left by an earlier agent", cid)
                await self._runc("delete", "--force", cid, check=False)
        keep = [str(self._containers[cid].bundle) for cid in live]
        for mp in syscalls.mounts_under(str(self.containers_dir)):
            if not any(mp == k or mp.startswith(k + "/") for k in keep):
                syscalls.umount(mp)
        for d in list(self.containers_dir.iterdir()) if self.containers_dir.exists() else []:
            if d.name not in live:
                shutil.rmtree(d, ignore_errors=True)
        await PodNetwork.cleanup_leftovers(
            self.data_dir / "cni", keep=[u for u, sb in self._sandboxes.items() if sb.network_up])
        await self._remove_stray_sandboxes()
        for d in list(self.pods_dir.iterdir()) if self.pods_dir.exists() else []:
            if d.name not in self._sandboxes:
                shutil.rmtree(d, ignore_errors=True)
        cgroups.remove(self.cgroup_root)   # what holds an adopted container's processes stays
        for uid in self._sandboxes if self.pod_max_pids > 0 else ():
            try:
                cgroups.set_pids_max(self.pod_cgroup(uid), self.pod_max_pids)
            except OSError as e:
                log.warning("pod %s: pids limit: %s", uid, e)

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
        ov = self.overlay
        self.network = PodNetwork(cidr, self.cni_bridge, self.data_dir / "cni",
                                  mtu=ov.mtu if ov else None, ip_masq=ov is None)
        log.info("pod network: bridge %s, pod CIDR %s", self.cni_bridge, cidr)
        if ov is not None:
            ov.set_pod_cidr(cidr)

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
        if self.overlay is not None:
            await self.overlay.close()   # the device, its routes, the chains; the claim
        if self._orphan_reaper is not None:
            self._orphan_reaper.cancel()
            self._orphan_reaper = None

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
        self._save_sandbox(sb)
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
        self._save_sandbox(sb)

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
        self._record_path(c).unlink(missing_ok=True)
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
            self._record_path(c).unlink(missing_ok=True)
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
        self._save_container(c)

    async def start_container(self, container_id: str) -> None:
        c = self._containers[container_id]
        st = c.status
        path = self.log_path(c.pod_uid, st.name, st.restart_count)
        path.parent.mkdir(parents=True, exist_ok=True)
        st.started_at = now_rfc3339()
        tty = bool(c.spec.get("tty"))
        in_fd = out_fd = err_fd = master = -1
        runc_log = c.bundle / "runc.log"
        pid_file = c.bundle / "init.pid"
        try:
            if tty:   # a terminal is stdin, stdout and stderr at once
                rc, out, master = await self._create_on_terminal(c, pid_file, runc_log)
            else:
                crilog.make_stdio_fifos(c.bundle, stdin=bool(c.spec.get("stdin")))
                in_fd, out_fd, err_fd = crilog.container_stdio(
                    c.bundle, stdin_once=bool(c.spec.get("stdinOnce")))
                rc, out = await self._runc(
                    "create", "--bundle", str(c.bundle), "--pid-file", str(pid_file), c.id,
                    check=False, stdin=in_fd if in_fd >= 0 else None, stdout=out_fd,
                    stderr=err_fd, log_file=runc_log)
            if rc == 0:
                c.pid = int(pid_file.read_text().strip())
                c.started = start_time(c.pid)
                if not tty:   # while our ends are open: the pumps cannot see EOF yet
                    c.pumps = await crilog.pump_fifos(c.bundle, path)
        except (OSError, ValueError, asyncio.TimeoutError) as e:
            rc, out = -1, str(e).encode()
        finally:
            for fd in (in_fd, out_fd, err_fd):
                if fd >= 0:
                    os.close(fd)
        if rc != 0 or not c.pid:
            msg = self._runc_error(out, runc_log)
            if master >= 0:
                os.close(master)
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
            c.pumps = await pump_terminal(master, path)   # prompts reach attach too
        elif c.spec.get("stdin"):
            await self._open_stdin(c)
        c.proc = ReapedProcess(c.pid)
        self._watch_exit(c)
        rc, out = await self._runc("start", c.id, check=False, log_file=runc_log)
        if rc != 0 and not c.exited.is_set():
            log.warning("container %s: runc start: %s", st.name,
                        self._runc_error(out, runc_log))
            self._signal(c, signal.SIGKILL)
        if not c.exited.is_set():
            st.state = "running"
            self._save_container(c)

    async def _open_stdin(self, c: _Ctr) -> None:
        """The agent's writer on the container's stdin FIFO (attach writes to it)."""
        fd = crilog.stdin_writer(c.bundle)
        if fd is None:
            return
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(fd, "wb", 0))
        c.stdin = asyncio.StreamWriter(transport, protocol, None, loop)

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
        proc = c.proc
        assert proc is not None

        async def watch() -> None:
            await proc.wait()
            await self._after_exit(c, proc.exit_code())
        c.cleanup = asyncio.create_task(watch(), name=f"container {c.status.name}")

    async def _after_exit(self, c: _Ctr, code: int | None,
                          lost_message: str = LOST_STATUS_MESSAGE) -> None:
        """The container's processes are gone (`code` None: how it ended is unknown, said
        by `lost_message`): drain its output, read its termination message, remove it,
        report it exited."""
        oom = code in (137, None) and cgroups.oom_kills(c.cgroup) > 0
        if c.pumps:
            await asyncio.wait(c.pumps, timeout=PUMP_DRAIN_SECONDS)
        message = ""
        try:
            message = (c.bundle / "termination-log").read_text(errors="replace")[:4096]
        except OSError:
            pass
        if not message and (c.spec.get("terminationMessagePolicy") ==
                            "FallbackToLogsOnError") and code not in (0, None):
            message = crilog.read_output(self.log_path(c.pod_uid, c.status.name,
                                                       c.status.restart_count))[-2048:]
        await self._runc("delete", "--force", c.id, check=False)
        cgroups.remove(c.cgroup)
        self._release_rootfs(c)
        if c.stdin is not None:
            c.stdin.close()
        if c.terminal is not None:
            c.terminal.release()
        if code is None:
            code, reason = LOST_STATUS_EXIT_CODE, LOST_STATUS_REASON
            message = message or lost_message
        else:
            reason = "Completed" if code == 0 else "Error"
        self._exited(c, code, "OOMKilled" if oom else reason, message)
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
            if sb.network_up:
                try:
                    if self.network is not None:
                        await self.network.teardown(pod_uid, sb.netns)
                    else:   # adopted, no pod CIDR yet: DEL with the cached config
                        await PodNetwork.cleanup_leftovers(
                            self.data_dir / "cni",
                            keep=[u for u, o in self._sandboxes.items() if o.network_up])
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

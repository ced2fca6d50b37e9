"""The kubelet: registers the Node, keeps its status and Lease current, and syncs the pods
bound to it (`fieldSelector=spec.nodeName=<node>`) through the runtime: start containers,
post `pods/<name>/status`, and finish graceful deletion (kill, then DELETE with
gracePeriodSeconds 0 and a uid precondition, as upstream)."""
from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pyk8s.client.events import NORMAL, WARNING, EventBroadcaster, object_reference
from pyk8s.client.informer import SharedInformer, handler_funcs, object_key, split_key
from pyk8s.client.rest import AlreadyExists, Conflict, NotFound, RESTClient, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.kubelet.admission import admit, rejected_status
from pyk8s.kubelet.envvars import (CachedGetter, ContainerConfigError, container_argv,
                                   expand, make_environment, service_environment)
from pyk8s.kubelet.lease import NodeLease
from pyk8s.kubelet.node import (NODE_STATUS_REPORT_FREQUENCY, NODE_STATUS_UPDATE_FREQUENCY,
                                NodeConfig, NodeHealth, build_node, build_node_status,
                                node_images, now_rfc3339, should_post)
from pyk8s.kubelet.podworkers import (Backoff, PodIPAM, build_pod_status,
                                      crash_loop_message, go_duration, pod_status_changed)
from pyk8s.kubelet.prober import ProbeManager
from pyk8s.kubelet.prober.lifecycle import MINIMUM_GRACE_PERIOD, POST_START_TIMEOUT, hook_of, \
    run_hook
from pyk8s.kubelet.runtime import ContainerConfig, CreateContainerError, Runtime
from pyk8s.kubelet.staticpods import (FILE_CHECK_FREQUENCY, FileSource, is_mirror_of,
                                      is_mirror_pod, mirror_pod)
from pyk8s.kubelet.volumes import VolumeError, VolumeManager
from pyk8s.kubelet.volumes.manager import TokenCache
from pyk8s.verbosity import V

log = logging.getLogger("pyk8s.kubelet")

Obj = dict[str, Any]


async def stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; whether `stop` was set by then."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except asyncio.TimeoutError:
        return stop.is_set()


def _semantic(pod: Obj) -> Obj:
    md = {k: v for k, v in (pod.get("metadata") or {}).items()
          if k not in ("resourceVersion", "managedFields")}
    return {k: v for k, v in pod.items() if k not in ("status", "metadata")} | {"metadata": md}


def pod_differs(old: Obj, new: Obj) -> bool:
    """Whether an update is more than a status write (upstream's config source drops
    status-only updates: the kubelet made them itself)."""
    return _semantic(old) != _semantic(new)


@dataclass
class KubeletOptions:
    node: NodeConfig
    pod_cidr: str
    status_update_frequency: float = NODE_STATUS_UPDATE_FREQUENCY
    status_report_frequency: float = NODE_STATUS_REPORT_FREQUENCY
    lease_interval: float = 10.0
    workers: int = 16
    # Container restart back-off (upstream: 10 s doubling to 5 min).
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    # The agent's data dir (pod volumes live in <data_dir>/volumes; "": a temp dir) and how
    # often mounted ConfigMaps / Secrets / downward API files are refreshed (upstream: on
    # the pod resync, ~60 s, plus the object cache's TTL).
    data_dir: str = ""
    volume_sync_period: float = 60.0
    # Static pods (upstream --pod-manifest-path, --file-check-frequency).
    pod_manifest_path: str = ""
    file_check_frequency: float = FILE_CHECK_FREQUENCY
    # Image GC (upstream --image-gc-high-threshold / low / --image-minimum-gc-age, and
    # ImageGCPeriod).
    image_gc_high_threshold: int = 85
    image_gc_low_threshold: int = 80
    image_minimum_gc_age: float = 120.0
    image_gc_period: float = 300.0


class Kubelet:
    def __init__(self, client: RESTClient, runtime: Runtime, options: KubeletOptions) -> None:
        self.client = client
        self.runtime = runtime
        self.o = options
        self.name = options.node.name
        self.health = NodeHealth()
        self.ipam = PodIPAM(options.pod_cidr)
        self.node_uid = ""
        self.boot_id = str(uuid.uuid4())
        self.machine_id = uuid.uuid5(uuid.NAMESPACE_DNS, self.name).hex
        self._node_status: Obj | None = None
        self._last_report: float | None = None
        self._uids: dict[str, str] = {}       # pod key -> uid the runtime runs
        self._node: Obj = {}                  # the Node as last read or written
        self.static: dict[str, Obj] = {}      # static pods by key (they run, not the mirror)
        self.file_source = (FileSource(options.pod_manifest_path, self.name)
                            if options.pod_manifest_path else None)
        self._refs: dict[str, Obj] = {}       # uid -> the pod, for events
        self.events = EventBroadcaster(client)
        self.recorder = self.events.new_recorder("kubelet", host=self.name)
        self.backoff = Backoff(options.backoff_initial, options.backoff_max)
        # Image pulls back off per pod and image (upstream: 10 s doubling to 5 min).
        self.image_backoff = Backoff(options.backoff_initial, options.backoff_max)
        self._pull_failures: dict[str, float] = {}
        # ConfigMaps / Secrets for env (envvars.py) and volumes, pod volumes (volumes/).
        self.objects = CachedGetter(client, ttl=min(1.0, options.volume_sync_period))
        self.tokens = TokenCache(client)
        self.volumes = VolumeManager(
            os.path.join(options.data_dir or os.path.join(tempfile.gettempdir(),
                                                          f"pyk8s-agent-{self.name}"),
                         "volumes"),
            self.objects, self.tokens, allocatable=options.node.resources.allocatable())
        runtime.on_exit = self._container_exited
        # Probe results that change re-sync the pod (ready / started, liveness kills).
        self.probes = ProbeManager(runtime, on_change=self._container_exited)
        self.probes.on_failure = self._probe_failed
        self.queue: WorkQueue[str] = WorkQueue(name="kubelet-pods")
        self.pods = SharedInformer(client, resource_path("", "v1", "pods"),
                                   params={"fieldSelector": f"spec.nodeName={self.name}"},
                                   name=f"kubelet {self.name} pods")
        # Services, for the containers' service environment variables (upstream's
        # kubelet watches them too); hollow nodes run no processes and need none.
        self.services: SharedInformer | None = None
        if getattr(runtime, "name", "") != "fake":
            self.services = SharedInformer(client, resource_path("", "v1", "services"),
                                           name=f"kubelet {self.name} services")
        self.pods.add_event_handler(handler_funcs(
            on_add=lambda o: self.queue.add(object_key(o)),
            on_update=lambda old, new: (self.queue.add(object_key(new))
                                        if pod_differs(old, new) else None),
            on_delete=lambda o: self.queue.add(object_key(o))))

    # -- the node -------------------------------------------------------------------------
    async def register(self) -> Obj:
        """Create the Node, or adopt the existing one (upstream's tryRegisterWithAPIServer)."""
        path = resource_path("", "v1", "nodes")
        body = build_node(self.o.node, self.health, now_rfc3339())
        try:
            node = await self.client.create(path, body)
            log.info("registered node %s", self.name)
        except AlreadyExists:
            patch = {"metadata": {"labels": body["metadata"]["labels"]}}
            node = await self.client.patch(resource_path("", "v1", "nodes", name=self.name),
                                           patch)
            log.info("node %s already registered; adopting it", self.name)
        self.node_uid = node["metadata"]["uid"]
        self._node = node
        self._node_status = node.get("status") or {}
        await self.sync_node_status(force=True)
        self._node_events()
        return node

    def _node_events(self) -> None:
        """Upstream's `Starting` and the healthy conditions' events at start."""
        ref = {"kind": "Node", "name": self.name, "uid": self.name, "apiVersion": "v1"}
        self.recorder.event({}, NORMAL, "Starting", "Starting kubelet.", ref=ref)
        for reason in ("NodeHasSufficientMemory", "NodeHasNoDiskPressure",
                       "NodeHasSufficientPID"):
            self.recorder.event({}, NORMAL, reason,
                                f"Node {self.name} status is now: {reason}", ref=ref)

    async def sync_node_status(self, force: bool = False) -> bool:
        """Post the node's status if it changed (or is due). As upstream's
        tryUpdateNodeStatus, "changed" is against the Node as the API server has it (read
        from its cache): conditions the node lifecycle controller set meanwhile (Ready
        Unknown while this kubelet was frozen or cut off) are put right at once."""
        if not force:
            node = await self.client.get(resource_path("", "v1", "nodes", name=self.name),
                                         {"resourceVersion": "0"})
            self._node, self._node_status = node, node.get("status") or {}
        images = self.runtime.images
        desired = build_node_status(self.o.node, self._node_status, self.health, now_rfc3339(),
                                    boot_id=self.boot_id, machine_id=self.machine_id,
                                    images=node_images(images.store.list())
                                    if images is not None else None)
        mono = time.monotonic()
        if not force and not should_post(self._node_status, desired, self._last_report, mono,
                                         self.o.status_report_frequency):
            return False
        out = await self.client.patch(
            resource_path("", "v1", "nodes", name=self.name, subresource="status"),
            {"status": desired})
        self._node_status = out.get("status") or desired
        if out.get("metadata"):
            self._node = out
        self._last_report = mono
        return True

    def _take_pod_cidr(self, node: Obj) -> bool:
        cidr = (node.get("spec") or {}).get("podCIDR") or ""
        if not cidr:
            return False
        if cidr != self.o.pod_cidr or not getattr(self.runtime, "pod_cidr", cidr):
            log.info("node %s: pod CIDR %s", self.name, cidr)
            self.o.pod_cidr = cidr
            self.runtime.set_pod_cidr(cidr)
            # A network that cannot come up at all (oci: the CIDR is another node's on this
            # host) makes the node NotReady with the runtime's reason.
            self.health.runtime_error = getattr(self.runtime, "network_error", "")
            for key in list(self.pods.store.keys()) + list(self.static):
                self.queue.add(key)
        return True

    async def _pod_cidr_loop(self, stop: asyncio.Event) -> None:
        """Upstream's kubelet takes spec.podCIDR from its Node (the controller manager's
        node IPAM sets it); until then pods wait with NetworkNotReady."""
        delay = 0.2
        while not stop.is_set():
            node = self._node
            try:
                if not (node.get("spec") or {}).get("podCIDR"):
                    node = await self.client.get(resource_path("", "v1", "nodes",
                                                               name=self.name))
                if self._take_pod_cidr(node):
                    return
            except Exception as e:
                log.warning("reading node %s: %s", self.name, e)
            if await stopped(stop, delay):
                return
            delay = min(delay * 2, 5.0)

    async def _node_status_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await stopped(stop, self.o.status_update_frequency):
                return
            try:
                await self.sync_node_status()
            except Exception as e:
                log.warning("updating node %s status: %s", self.name, e)

    async def _image_gc_loop(self, stop: asyncio.Event) -> None:
        """Upstream's image garbage collection, every ImageGCPeriod (5 min): above the
        high disk threshold, unused images (no container of any pod here refers to them)
        older than the minimum age go, least recently used first, down to the low
        threshold."""
        images = self.runtime.images
        while not stop.is_set():
            if await stopped(stop, self.o.image_gc_period):
                return
            in_use = {ref for uid in self.runtime.pod_uids()
                      for c in self.runtime.pod_containers(uid)
                      for ref in (c.image, c.image_id) if ref}
            try:
                removed, freed = await images.gc(
                    in_use, high_percent=self.o.image_gc_high_threshold,
                    low_percent=self.o.image_gc_low_threshold,
                    min_age=self.o.image_minimum_gc_age)
            except Exception as e:
                log.warning("image garbage collection: %s", e)
                continue
            if removed:
                log.info("image garbage collection: removed %d images, %d bytes",
                         len(removed), freed)
                await self.sync_node_status()

    # -- pods -----------------------------------------------------------------------------
    async def sync_pod(self, key: str) -> None:
        pod, mirror = await self._pod_for(key)
        old_uid = self._uids.get(key)
        if pod is None or (old_uid and pod["metadata"]["uid"] != old_uid):
            if old_uid:  # gone from the API (or replaced by a namesake): stop what runs
                await self._kill_pod(old_uid, 0)
                del self._uids[key]
            if pod is None:
                return
        md, st = pod["metadata"], pod.get("status") or {}
        uid = md["uid"]
        if md.get("deletionTimestamp"):
            await self._terminate(key, pod)
            return
        if st.get("phase") in ("Succeeded", "Failed"):
            return
        if key not in self._uids and not await self._admit(key, pod, mirror):
            return
        new = key not in self._uids
        if new:
            self._uids[key] = uid
            self._refs[uid] = pod
            log.log(V(2), "starting pod %s (%s)", key, uid)  # upstream: SyncLoop ADD, V(2)
        if self.runtime.needs_pod_cidr:
            pod_ip = await self._sandbox(key, pod, mirror)
            if pod_ip is None:
                return
            if new or self.runtime.pod_ip(uid) != pod_ip:
                self.runtime.set_pod(pod, pod_ip)
        else:
            pod_ip = self.ipam.allocate(uid) if not (
                (pod.get("spec") or {}).get("hostNetwork") or self.runtime.host_network) \
                else self.o.node.node_ip
            if new:
                self.runtime.set_pod(pod, pod_ip)
        if new:
            await self._adopt_volumes(pod, pod_ip)
        waiting, retry = await self._sync_containers(pod)
        self.probes.add_pod(pod, pod_ip)
        status = build_pod_status(
            pod, self.runtime.pod_containers(uid), pod_ip, self.o.node.node_ip,
            now_rfc3339(), waiting,
            probes=lambda phase, sts: self.probes.update_pod_status(uid, phase, sts))
        if retry is not None and status["phase"] not in ("Succeeded", "Failed"):
            self.queue.add_after(key, retry)
        if status["phase"] in ("Succeeded", "Failed"):
            await self.runtime.stop_pod_sandbox(uid)
        await self._post_status(key, pod, mirror, status)

    async def _sandbox(self, key: str, pod: Obj, mirror: Obj | None) -> str | None:
        """The pod's sandbox (namespaces, CNI network) through the runtime; its IP, or None
        when it cannot be made yet (no pod CIDR, a CNI error): an event, and a retry."""
        uid = pod["metadata"]["uid"]
        try:
            ip = await self.runtime.run_pod_sandbox(pod, self.o.node.node_ip)
        except Exception as e:
            reason = getattr(e, "reason", "FailedCreatePodSandBox")
            log.info("pod %s: %s: %s", key, reason, e)
            self._event(pod, "", False, WARNING, reason, str(e))
            self.queue.add_after(key, 1.0 if reason == "NetworkNotReady" else 2.0)
            return None
        for w_uid, reason, message in getattr(self.runtime, "warnings", [])[:]:
            self.runtime.warnings.remove((w_uid, reason, message))
            self._event(self._refs.get(w_uid), "", False, WARNING, reason, message)
        return ip or self.o.node.node_ip

    def _pod_ip(self, uid: str) -> str:
        return self.runtime.pod_ip(uid) or self.ipam.get(uid) or self.o.node.node_ip

    async def _post_status(self, key: str, pod: Obj, mirror: Obj | None, status: Obj) -> None:
        """PATCH pods/status when it changed; a static pod keeps its status itself and
        posts it to its mirror pod (upstream's status manager does the same)."""
        target: Obj | None = pod
        if self.static.get(key) is pod:
            pod["status"] = status
            target = mirror
        if target is None or not pod_status_changed(target.get("status"), status):
            return
        ns, name = split_key(key)
        try:
            await self.client.patch(resource_path("", "v1", "pods", ns, name, "status"),
                                    {"status": status})
        except NotFound:
            pass

    # -- static pods and their mirror pods ------------------------------------------------
    async def _pod_for(self, key: str) -> tuple[Obj | None, Obj | None]:
        """The pod the kubelet runs under `key` — the static pod if there is one (the API
        object is then its mirror pod), else the API pod — and that mirror pod. Mirror
        pods are never run; an orphaned or outdated one is deleted, a missing one created
        (after a deletion, when the informer has seen it go)."""
        api = self.pods.store.get(key)
        static = self.static.get(key)
        if static is None:
            if is_mirror_pod(api):      # its static pod is gone
                await self._delete_mirror_pod(api)
                return None, None
            return api, None
        if api is not None and not is_mirror_pod(api):
            log.warning("static pod %s: a pod of the same name exists in the API; no mirror "
                        "pod", key)
            return static, None
        if api is not None and ((api.get("metadata") or {}).get("deletionTimestamp")
                                or not is_mirror_of(api, static)):
            await self._delete_mirror_pod(api)
            return static, None
        if api is None and self.node_uid:
            ns, _ = split_key(key)
            try:
                api = await self.client.create(resource_path("", "v1", "pods", ns),
                                               mirror_pod(static, self.name, self.node_uid))
                log.info("created mirror pod %s", key)
            except AlreadyExists:
                api = None              # the informer will bring it
            except Exception as e:
                log.warning("creating mirror pod %s: %s", key, e)
                api = None
        return static, api

    async def _delete_mirror_pod(self, mirror: Obj) -> None:
        md = mirror["metadata"]
        try:
            await self.client.delete(resource_path("", "v1", "pods", md["namespace"],
                                                   md["name"]),
                                     {"gracePeriodSeconds": 0,
                                      "preconditions": {"uid": md["uid"]}})
            log.info("deleted mirror pod %s/%s", md["namespace"], md["name"])
        except (NotFound, Conflict):
            pass

    def rescan_static_pods(self) -> None:
        """Re-read the manifests; sync the static pods that came, went or changed."""
        if self.file_source is None:
            return
        new = self.file_source.scan()
        for key in set(self.static) | set(new):
            old, cur = self.static.get(key), new.get(key)
            if old is not None and cur is not None and \
                    old["metadata"]["uid"] == cur["metadata"]["uid"]:
                new[key] = old          # unchanged: keep the pod (and its status)
            else:
                self.queue.add(key)
        self.static = new

    async def _static_pods_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await stopped(stop, self.o.file_check_frequency):
                return
            try:
                self.rescan_static_pods()
            except Exception:
                log.exception("reading static pod manifests")

    # -- admission and events -------------------------------------------------------------
    async def _admit(self, key: str, pod: Obj, mirror: Obj | None) -> bool:
        """Upstream's predicate admit handler, for a pod about to start (decided before
        any await, so that pods admitted concurrently see each other)."""
        if not self._node:
            return True
        others = []
        for k in self._uids:
            o = self.static.get(k) or self.pods.store.get(k)
            if o is not None and k != key and \
                    (o.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                others.append(o)
        result = admit(pod, self._node or {"metadata": {"name": self.name}}, others)
        if result.admit:
            return True
        log.info("rejected pod %s: %s: %s", key, result.reason, result.message)
        self.recorder.event(pod, WARNING, result.reason, result.message,
                            ref=self._ref(pod))
        await self._post_status(key, pod, mirror, rejected_status(pod, result))
        return False

    @staticmethod
    def _ref(pod: Obj, container: str = "", init: bool = False) -> Obj:
        fp = f"spec.{'initContainers' if init else 'containers'}{{{container}}}" \
            if container else ""
        return object_reference({**pod, "kind": "Pod", "apiVersion": "v1"}, field_path=fp)

    def _event(self, pod: Obj | None, container: str, init: bool, type_: str, reason: str,
               message: str) -> None:
        if pod is not None:
            self.recorder.event(pod, type_, reason, message,
                                ref=self._ref(pod, container, init))

    async def _container_config(self, pod: Obj, ctr: Obj) -> ContainerConfig:
        """Upstream's generateContainerConfig: env (envvars.py), argv `$(VAR)`-expanded,
        the volume mounts (the pod's volumes are set up on the first container)."""
        uid = pod["metadata"]["uid"]
        pod_ip = self._pod_ip(uid)
        host_ip = self.o.node.node_ip
        if (pod.get("spec") or {}).get("volumes") and uid not in self.volumes.pods():
            await self.volumes.setup(pod, pod_ip, host_ip)
        env = await make_environment(pod, ctr, self.objects, pod_ip, host_ip,
                                     self.o.node.resources.allocatable(),
                                     await self._service_env(pod))
        mounts = self.volumes.mounts(pod, ctr) if ctr.get("volumeMounts") else []
        envd = dict(env)
        return ContainerConfig(argv=container_argv(ctr, envd), env=env,
                               working_dir=ctr.get("workingDir") or "", mounts=mounts,
                               stage_dir=str(self.volumes.stage_dir(uid)),
                               command=[expand(str(a), envd) for a in ctr["command"]]
                               if ctr.get("command") else None,
                               args=[expand(str(a), envd) for a in ctr["args"]]
                               if ctr.get("args") else None)

    async def _service_env(self, pod: Obj) -> dict[str, str]:
        if self.services is None:
            return {}
        if not self.services.has_synced() and \
                not await self.services.wait_for_sync(timeout=10.0):
            raise ContainerConfigError("services have not yet been read at least once, "
                                       "cannot construct envvars")
        return service_environment(pod, self.services.store.list())

    async def _volume_sync_loop(self, stop: asyncio.Event) -> None:
        """Refresh mounted ConfigMaps / Secrets / downward API files of running pods."""
        while not stop.is_set():
            if await stopped(stop, self.o.volume_sync_period):
                return
            for key, uid in list(self._uids.items()):
                if uid not in self.volumes.pods():
                    continue
                pod = self.pods.store.get(key) or self.static.get(key)
                if pod is None or pod["metadata"].get("uid") != uid:
                    continue
                try:
                    await self.volumes.refresh(pod, self._pod_ip(uid), self.o.node.node_ip)
                except Exception as e:   # pragma: no cover - logged, next round retries
                    log.warning("refreshing volumes of pod %s: %s", key, e)

    def _container_exited(self, uid: str) -> None:
        for key, u in list(self._uids.items()):
            if u == uid:
                self.queue.add(key)

    async def _sync_containers(self, pod: Obj) -> tuple[dict[str, tuple[str, str]],
                                                        float | None]:
        """Upstream's computePodActions, level-triggered: init containers one at a time in
        order, then every container; exited ones restart as the restart policy says, after
        the crash-loop back-off. Returns the containers waiting in back-off (reason,
        message) and when to look again."""
        md, spec = pod["metadata"], pod.get("spec") or {}
        uid = md["uid"]
        policy = spec.get("restartPolicy") or "Always"
        waiting: dict[str, tuple[str, str]] = {}
        retry: float | None = None

        def latest(init: bool, name: str) -> Any:
            found = None
            for c in self.runtime.pod_containers(uid):
                if c.init == init and c.name == name:
                    found = c
            return found

        async def start(ctr: Obj, init: bool) -> Any:
            nonlocal retry
            name = ctr["name"]
            if self.runtime.images is None:
                self._event(pod, name, init, NORMAL, "Pulled",
                            f'Container image "{ctr.get("image", "")}" already present on '
                            f'machine')
            else:
                pull_retry = await self._pull_image(pod, ctr, init, waiting)
                if pull_retry is not None:
                    retry = pull_retry if retry is None else min(retry, pull_retry)
                    return None
            try:
                config = await self._container_config(pod, ctr)
                cid = await self.runtime.create_container(uid, ctr, init=init, config=config)
            except (ContainerConfigError, CreateContainerError, VolumeError) as e:
                # Upstream: the container waits (CreateContainerConfigError, ...) and the
                # pod worker tries again.
                reason = getattr(e, "reason", "ContainerCreating")
                waiting[name] = (reason, str(e))
                self._event(pod, name, init, WARNING,
                            "FailedMount" if isinstance(e, VolumeError) else "Failed",
                            str(e) if isinstance(e, VolumeError) else f"Error: {e}")
                again = min(self.o.backoff_initial, 2.0)
                retry = again if retry is None else min(retry, again)
                return None
            self._event(pod, name, init, NORMAL, "Created", f"Created container {name}")
            await self.runtime.start_container(cid)
            c = latest(init, name)
            if c is not None and c.reason == "StartError":
                self._event(pod, name, init, WARNING, "Failed",
                            f'Error: failed to start container "{name}"')
            else:
                self._event(pod, name, init, NORMAL, "Started", f"Started container {name}")
                if not init and c is not None and c.state == "running" and \
                        hook_of(pod, name, "postStart"):
                    await self._post_start(pod, c)
            return c

        def backed_off(c: Any) -> bool:
            nonlocal retry
            key = f"{uid}/{c.init}/{c.name}"
            now = time.time()
            if self.backoff.in_backoff_since(key, c.finished_time, now):
                b = self.backoff.get(key)
                waiting[c.name] = ("CrashLoopBackOff", crash_loop_message(b, c.name, pod))
                self._event(pod, c.name, c.init, WARNING, "BackOff",
                            f"Back-off restarting failed container {c.name} in pod "
                            f"{md.get('name')}_{md.get('namespace')}({uid})")
                left = max(c.finished_time + b - now, 0.05)
                retry = left if retry is None else min(retry, left)
                return True
            self.backoff.next(key, c.finished_time)
            return False

        for ctr in spec.get("initContainers") or []:
            c = latest(True, ctr["name"])
            if c is None:
                c = await start(ctr, True)
            if c is None or c.state != "exited":
                return waiting, retry        # still initializing
            if c.exit_code == 0:
                continue
            if policy == "Never" or backed_off(c):
                return waiting, retry
            await start(ctr, True)
            return waiting, retry
        for ctr in spec.get("containers") or []:
            c = latest(False, ctr["name"])
            if c is None:
                await start(ctr, False)
                continue
            kill = self.probes.kill_reason(uid, c, pod)
            if kill is not None:   # failed its liveness / startup probe: kill, restart
                log.info("pod %s/%s: %s", md.get("namespace"), md.get("name"), kill[0])
                self._event(pod, c.name, False, NORMAL, "Killing", kill[0])
                await self._stop_container(pod, c, kill[1])
                c = latest(False, ctr["name"])
            if c.state != "exited":
                continue
            if policy == "Always" or (policy == "OnFailure" and c.exit_code != 0):
                if not backed_off(c):
                    await start(ctr, False)
        return waiting, retry

    # -- images ---------------------------------------------------------------------------
    async def _pull_image(self, pod: Obj, ctr: Obj, init: bool,
                          waiting: dict[str, tuple[str, str]]) -> float | None:
        """Upstream's imageManager.EnsureImageExists: the image by its pull policy, with
        Pulling / Pulled / Failed / BackOff events; on failure the container waits
        (ErrImagePull, then ImagePullBackOff while backing off: 10 s doubling to 5 min per
        pod and image). Returns None when the image is there, else when to look again."""
        uid, name = pod["metadata"]["uid"], ctr["name"]
        image = str(ctr.get("image") or "")
        policy = ctr.get("imagePullPolicy") or ""
        images = self.runtime.images
        key = f"{uid}/{image}"
        now = time.time()
        failed_at = self._pull_failures.get(key)
        if failed_at is not None and self.image_backoff.in_backoff_since(key, failed_at, now):
            msg = f'Back-off pulling image "{image}"'
            waiting[name] = ("ImagePullBackOff", msg)
            self._event(pod, name, init, NORMAL, "BackOff", msg)
            self._event(pod, name, init, WARNING, "Failed", "Error: ImagePullBackOff")
            return max(failed_at + self.image_backoff.get(key) - now, 0.05)
        present = images.present(image) if policy != "Always" else False
        if present:
            self._event(pod, name, init, NORMAL, "Pulled",
                        f'Container image "{image}" already present on machine')
            return None
        if policy == "Never":
            msg = f'Container image "{image}" is not present with pull policy of Never'
            waiting[name] = ("ErrImageNeverPull", msg)
            self._event(pod, name, init, WARNING, "ErrImageNeverPull", msg)
            return 5.0
        self._event(pod, name, init, NORMAL, "Pulling", f'Pulling image "{image}"')
        t0 = time.monotonic()
        try:
            secrets = await self._pull_secrets(pod)
            _, _, seconds, size = await images.ensure(image, policy, secrets)
        except Exception as e:
            reason = getattr(e, "reason", "ErrImagePull")
            if reason == "InvalidImageName":
                msg = f'Failed to apply default image tag "{image}": {e}'
                waiting[name] = ("InvalidImageName", msg)
                self._event(pod, name, init, WARNING, "InspectFailed", msg)
                return 30.0
            log.info("pod %s: pulling %s: %s", uid, image, e)
            self._event(pod, name, init, WARNING, "Failed",
                        f'Failed to pull image "{image}": {e}')
            self._event(pod, name, init, WARNING, "Failed", "Error: ErrImagePull")
            waiting[name] = ("ErrImagePull", str(e))
            self.image_backoff.next(key, now)
            self._pull_failures[key] = now
            # Look again halfway through the back-off (ImagePullBackOff then shows, as
            # upstream's pod worker re-syncs a failed pod before the image back-off ends).
            return self.image_backoff.get(key) / 2
        self._pull_failures.pop(key, None)
        total = time.monotonic() - t0
        self._event(pod, name, init, NORMAL, "Pulled",
                    f'Successfully pulled image "{image}" in {go_duration(seconds)} '
                    f'({go_duration(total)} including waiting). Image size: {size} bytes.')
        return None

    async def _pull_secrets(self, pod: Obj) -> list[Obj]:
        """The pod's imagePullSecrets (missing ones are skipped, as upstream)."""
        ns = pod["metadata"].get("namespace", "default")
        out = []
        for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
            if ref.get("name"):
                s = await self.objects("secret", ns, ref["name"])
                if s is not None:
                    out.append(s)
        return out

    # -- probes and lifecycle hooks (prober/) -----------------------------------------------
    def _probe_failed(self, uid: str, container: str, kind: str, output: str) -> None:
        self._event(self._refs.get(uid), container, False, WARNING, "Unhealthy",
                    f"{kind.capitalize()} probe failed: {output}")

    async def _post_start(self, pod: Obj, c: Any) -> None:
        """Run the container's postStart hook; on failure kill it (FailedPostStartHook),
        the restart policy then applies, as upstream."""
        uid = pod["metadata"]["uid"]
        hook = hook_of(pod, c.name, "postStart")
        if hook is None:
            return
        err = await run_hook(self.runtime, pod, c.name, c.container_id, hook,
                             self._pod_ip(uid), POST_START_TIMEOUT)
        if err is None:
            return
        log.info("pod %s: %s", uid, err)
        self._event(pod, c.name, False, WARNING, "FailedPostStartHook", err)
        grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        await self.runtime.kill_container(c.container_id.split("://", 1)[-1],
                                          30.0 if grace is None else float(grace))

    async def _stop_container(self, pod: Obj | None, c: Any, grace: float) -> None:
        """Upstream killContainer: the preStop hook (if any, and grace > 0) within the grace
        period, then SIGTERM with what is left (at least 2 s), SIGKILL after it."""
        cid = c.container_id.split("://", 1)[-1]
        hook = hook_of(pod, c.name, "preStop") if not c.init else None
        if pod is not None and hook is not None and grace > 0 and c.state == "running":
            uid = pod["metadata"]["uid"]
            t0 = time.monotonic()
            try:
                err = await asyncio.wait_for(run_hook(
                    self.runtime, pod, c.name, c.container_id, hook,
                    self._pod_ip(uid), grace), grace)
            except asyncio.TimeoutError:
                err = None   # upstream: the hook ran out the grace period
            if err is not None:
                log.info("pod %s: %s", uid, err)
                self._event(pod, c.name, False, WARNING, "FailedPreStopHook", err)
            grace = max(grace - (time.monotonic() - t0), MINIMUM_GRACE_PERIOD)
        await self.runtime.kill_container(cid, grace)

    async def _kill_pod(self, uid: str, grace: float) -> None:
        ref = self._refs.pop(uid, None)
        for c in self.runtime.pod_containers(uid):
            if c.state != "exited":
                self._event(ref, c.name, c.init, NORMAL, "Killing",
                            f"Stopping container {c.name}")
        self.probes.remove_pod(uid)
        await asyncio.gather(*(self._stop_container(ref, c, grace)
                               for c in self.runtime.pod_containers(uid)))
        await self.runtime.remove_pod(uid)
        self.volumes.teardown(uid)
        self.tokens.forget(uid)
        self.backoff.forget(f"{uid}/")
        self.image_backoff.forget(f"{uid}/")
        for k in [k for k in self._pull_failures if k.startswith(f"{uid}/")]:
            del self._pull_failures[k]
        self.ipam.release(uid)

    async def _terminate(self, key: str, pod: Obj) -> None:
        md = pod["metadata"]
        grace = md.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        grace = float(grace or 0)
        await self._kill_pod(md["uid"], grace)
        self._uids.pop(key, None)
        ns, name = split_key(key)
        try:
            await self.client.delete(resource_path("", "v1", "pods", ns, name),
                                     {"gracePeriodSeconds": 0,
                                      "preconditions": {"uid": md["uid"]}})
            log.info("deleted pod %s (graceful deletion finished)", key)
        except (NotFound, Conflict):
            pass

    # -- after a restart: what the runtime adopted ------------------------------------------
    async def _remove_unbound(self, adopted: list[str], stop: asyncio.Event) -> None:
        """Upstream's kubelet after a restart: once the pod informer has listed the pods
        bound to this node, the pods the runtime adopted that are not among them (deleted,
        force-deleted or bound elsewhere while this kubelet was down) and are no static
        pods are stopped and removed with their volumes, as a deleted pod."""
        while not await self.pods.wait_for_sync(timeout=1.0):
            if stop.is_set():
                return
        known = ({(p.get("metadata") or {}).get("uid") for p in self.pods.store.list()}
                 | {p["metadata"]["uid"] for p in self.static.values()}
                 | set(self._uids.values()))
        for uid in adopted:
            if uid not in known and uid in self.runtime.pod_uids():
                log.info("removing pod %s: no longer bound to node %s", uid, self.name)
                await self._kill_pod(uid, 0)

    async def _adopt_volumes(self, pod: Obj, pod_ip: str) -> None:
        """A pod whose containers the runtime adopted: its volumes known again (set up
        anew: the same directories, rewritten in place), so that they are refreshed and
        its next containers mount them."""
        uid = pod["metadata"]["uid"]
        if not (pod.get("spec") or {}).get("volumes") or uid in self.volumes.pods() or \
                not self.runtime.pod_containers(uid):
            return
        try:
            await self.volumes.setup(pod, pod_ip, self.o.node.node_ip)
        except VolumeError as e:   # the running containers keep what they mount
            log.warning("pod %s: volumes of its adopted containers: %s", uid, e)

    # -- running --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.register()
                break
            except Exception as e:
                log.warning("registering node %s: %s; retrying", self.name, e)
                await stopped(stop, 2.0)
        if stop.is_set():
            return
        lease = NodeLease(self.client, self.name, self.node_uid, self.o.lease_interval)
        await self.runtime.start()
        adopted = self.runtime.pod_uids()   # what an earlier kubelet left running
        self.events.start()
        self.rescan_static_pods()
        tasks = [asyncio.create_task(lease.run(stop), name="node-lease"),
                 asyncio.create_task(self._static_pods_loop(stop), name="static-pods"),
                 asyncio.create_task(self._node_status_loop(stop), name="node-status"),
                 asyncio.create_task(run_workers(self.queue, self.sync_pod, self.o.workers,
                                                 name="kubelet-pods"), name="pod-workers")]
        tasks.append(asyncio.create_task(self._volume_sync_loop(stop), name="volume-sync"))
        if self.runtime.images is not None:
            tasks.append(asyncio.create_task(self._image_gc_loop(stop), name="image-gc"))
        if self.runtime.needs_pod_cidr:
            tasks.append(asyncio.create_task(self._pod_cidr_loop(stop), name="pod-cidr"))
        self.pods.start()
        if adopted:
            tasks.append(asyncio.create_task(self._remove_unbound(adopted, stop),
                                             name="remove-unbound-pods"))
        if self.services is not None:
            self.services.start()
        try:
            await stop.wait()
        finally:
            self.queue.shutdown()
            await self.pods.stop()
            if self.services is not None:
                await self.services.stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.probes.shutdown()
            await self.events.shutdown()

"""The PersistentVolume binder and local-path provisioner ("persistentvolume-binder",
upstream's `pkg/controller/volume/persistentvolume/pv_controller.go`, with k3s's
local-path provisioner built in).

Level-triggered over two queues (claims `namespace/name`, volumes `name`); event handlers
only enqueue. The matching rules are in `persistentvolume_util.py`.

Claims (`sync_claim`):
- unbound, no `spec.volumeName`: bind to the best matching volume; when none matches and
  the claim has a class: WaitForFirstConsumer classes wait until a pod using the claim has
  `spec.nodeName` (or the claim has `volume.kubernetes.io/selected-node`); a class whose
  provisioner is `rancher.io/local-path` or `pyk8s.io/local-path` gets a volume
  `pvc-<claim uid>` (hostPath DirectoryOrCreate `<local_path_dir>/pvc-<uid>_<ns>_<name>`,
  the claim's size, the class's reclaim policy) which is then bound; other provisioners
  are left to an external provisioner (event ExternalProvisioning);
- unbound, `spec.volumeName` set: bind to that volume if it is free and satisfies the
  claim, or is already bound to it;
- bound (`pv.kubernetes.io/bind-completed`): keep both sides consistent; a claim whose
  volume is gone or bound elsewhere becomes `Lost`.

Binding writes, in upstream's order: the volume's `claimRef` (+ `bound-by-controller` when
the controller chose it), the volume's phase `Bound`, the claim's `volumeName` and
`bind-completed` (+ `bound-by-controller`), the claim's status (`Bound`, capacity,
accessModes).

Volumes (`sync_volume`): no claimRef → `Available`; claimRef to a claim that no longer
exists (by uid; double-checked with a GET) → `Released`, then the reclaim policy: Retain
keeps it; Delete removes provisioned volumes (their directory, when under
`local_path_dir`, then the PV) and fails others (`Failed`, as upstream's hostPath deleter
outside /tmp); Recycle is not supported (`Failed`).

The default StorageClass `local-path` is not this controller's to make (its role may not
create StorageClasses, as upstream's): `pyk8s up` creates it at start with
`ensure_default_storage_class`, as k3s's server applies its local-storage manifest.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import os
import shutil
from typing import Any

from pyk8s.client.events import NORMAL, WARNING, EventRecorder
from pyk8s.client.informer import SharedInformerFactory, handler_funcs, object_key
from pyk8s.client.rest import AlreadyExists, NotFound, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.controllers.controller_utils import resource_version
from pyk8s.controllers.persistentvolume_util import (
    ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, DEFAULT_LOCAL_PATH_DIR,
    LOCAL_PATH_PROVISIONERS, claim_class, claim_ref, default_storage_class, find_best_match,
    is_bound_to_claim, provisioned_volume, satisfies_claim)

log = logging.getLogger("pyk8s.controllers.persistentvolume")

Obj = dict[str, Any]
COMPONENT = "persistentvolume-controller"
CLAIM_INDEX = "pv-claim"          # volumes by claimRef, pods by the claims they use
RESYNC_PERIOD = 15.0              # upstream's --pvclaimbinder-sync-period


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _phase(obj: Obj) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


def index_volume_by_claim(pv: Obj) -> list[str]:
    ref = _spec(pv).get("claimRef") or {}
    return [f"{ref.get('namespace') or ''}/{ref.get('name')}"] if ref.get("name") else []


def index_pod_by_claim(pod: Obj) -> list[str]:
    ns = _md(pod).get("namespace") or ""
    return [f"{ns}/{v['persistentVolumeClaim'].get('claimName')}"
            for v in _spec(pod).get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName")]


def _pv_path(name: str, sub: str | None = None) -> str:
    return resource_path("", "v1", "persistentvolumes", None, name, sub)


def _pvc_path(ns: str, name: str, sub: str | None = None) -> str:
    return resource_path("", "v1", "persistentvolumeclaims", ns, name, sub)


class PersistentVolumeController:
    """See the module docstring; one worker per queue, as upstream."""

    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: EventRecorder,
                 *, local_path_dir: str = DEFAULT_LOCAL_PATH_DIR,
                 resync_period: float = RESYNC_PERIOD) -> None:
        self.client = client
        self.recorder = recorder
        self.local_path_dir = os.path.abspath(local_path_dir)
        self.resync_period = resync_period
        self.claim_queue: WorkQueue[str] = WorkQueue("claims")
        self.volume_queue: WorkQueue[str] = WorkQueue("volumes")
        self.pv_informer = factory.informer("", "v1", "persistentvolumes", namespaced=False,
                                            indexers={CLAIM_INDEX: index_volume_by_claim})
        self.pvc_informer = factory.informer("", "v1", "persistentvolumeclaims")
        self.sc_informer = factory.informer("storage.k8s.io", "v1", "storageclasses",
                                            namespaced=False)
        self.pod_informer = factory.pods(indexers={CLAIM_INDEX: index_pod_by_claim})
        self._handlers = [
            (self.pv_informer, handler_funcs(self._volume_event,
                                             lambda o, n: self._volume_event(n),
                                             self._volume_event)),
            (self.pvc_informer, handler_funcs(self._claim_event,
                                              lambda o, n: self._claim_event(n),
                                              self._claim_deleted)),
            (self.sc_informer, handler_funcs(self._class_event,
                                             lambda o, n: self._class_event(n), None)),
            (self.pod_informer, handler_funcs(self._pod_event,
                                              lambda o, n: self._pod_event(n), None)),
        ]
        self._written: dict[tuple[str, str], Obj] = {}   # (kind, key) -> our last write
        for inf, h in self._handlers:
            inf.add_event_handler(h)

    # -- our own writes, newer than the informers' copies (upstream's storeObjectUpdate) --
    def _volume(self, name: str) -> Obj | None:
        return self._newest("pv", name, self.pv_informer.store.get(name))

    def _volumes(self) -> list[Obj]:
        return [self._newest("pv", object_key(pv), pv) or pv
                for pv in self.pv_informer.store.list()]  # (never None: pv is cached)

    def _claim(self, key: str) -> Obj | None:
        return self._newest("pvc", key, self.pvc_informer.store.get(key))

    def _newest(self, kind: str, key: str, cached: Obj | None) -> Obj | None:
        """The informer's object, or the one we last wrote when that is newer (the watch
        has not delivered it yet); syncs then never write from a stale copy."""
        written = self._written.get((kind, key))
        if written is None or cached is None:
            return cached
        if _md(written).get("uid") == _md(cached).get("uid") and \
                resource_version(written) > resource_version(cached):
            return written
        del self._written[(kind, key)]
        return cached

    async def _update(self, kind: str, path: str, obj: Obj) -> Obj:
        out: Obj = await self.client.update(path, obj)
        self._written[(kind, object_key(out))] = out
        return out

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        try:
            await asyncio.gather(*(inf.synced.wait() for inf, _ in self._handlers))
            log.info("%s: synced", COMPONENT)
            tasks = [loop.create_task(self._resync()),
                     loop.create_task(run_workers(self.volume_queue, self.sync_volume, 1,
                                                  name="pv-volumes")),
                     loop.create_task(run_workers(self.claim_queue, self.sync_claim, 1,
                                                  name="pv-claims"))]
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.claim_queue.shutdown()
            self.volume_queue.shutdown()
            for inf, h in self._handlers:
                inf.remove_event_handler(h)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            for key in self.pv_informer.store.keys():
                self.volume_queue.add(key)
            for key in self.pvc_informer.store.keys():
                self.claim_queue.add(key)

    # -- event handlers -------------------------------------------------------------------
    def _volume_event(self, pv: Obj) -> None:
        self.volume_queue.add(object_key(pv))
        for key in index_volume_by_claim(pv):
            self.claim_queue.add(key)
        if not _spec(pv).get("claimRef"):
            self._pending_claims()      # a free volume may serve a waiting claim now

    def _pending_claims(self) -> None:
        for claim in self.pvc_informer.store.list():
            if _phase(claim) in ("", "Pending"):
                self.claim_queue.add(object_key(claim))

    def _claim_event(self, claim: Obj) -> None:
        self.claim_queue.add(object_key(claim))

    def _claim_deleted(self, claim: Obj) -> None:
        key = object_key(claim)
        self.claim_queue.add(key)
        name = _spec(claim).get("volumeName")
        if name:
            self.volume_queue.add(str(name))
        for pv in self.pv_informer.store.by_index(CLAIM_INDEX, key):
            self.volume_queue.add(object_key(pv))

    def _class_event(self, sc: Obj) -> None:
        """A new class may let pending claims provision."""
        self._pending_claims()

    def _pod_event(self, pod: Obj) -> None:
        """A scheduled pod is the first consumer of WaitForFirstConsumer claims."""
        if _spec(pod).get("nodeName"):
            for key in index_pod_by_claim(pod):
                self.claim_queue.add(key)

    # -- claims ---------------------------------------------------------------------------
    async def sync_claim(self, key: str) -> None:
        claim = self._claim(key)
        if claim is None:
            self._written.pop(("pvc", key), None)
            return
        if (_md(claim).get("annotations") or {}).get(ANN_BIND_COMPLETED):
            await self._sync_bound_claim(claim)
        else:
            await self._sync_unbound_claim(claim)

    def _class(self, claim: Obj) -> Obj | None:
        name = claim_class(claim)
        return self.sc_informer.store.get(name) if name else None

    def _has_consumer(self, claim: Obj) -> bool:
        if (_md(claim).get("annotations") or {}).get(ANN_SELECTED_NODE):
            return True
        for pod in self.pod_informer.store.by_index(CLAIM_INDEX, object_key(claim)):
            if _spec(pod).get("nodeName") and _phase(pod) not in ("Succeeded", "Failed"):
                return True
        return False

    async def _sync_unbound_claim(self, claim: Obj) -> None:
        volume_name = _spec(claim).get("volumeName")
        if volume_name:
            await self._sync_prebound_claim(claim, str(volume_name))
            return
        sc = self._class(claim)
        delay = sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer" \
            and not self._has_consumer(claim)
        pv = find_best_match(claim, self._volumes(), delay_binding=delay)
        if pv is not None:
            await self.bind(pv, claim)
            return
        claim = await self._set_claim_pending(claim)
        name = claim_class(claim)
        if delay:
            self.recorder.event(claim, NORMAL, "WaitForFirstConsumer",
                                "waiting for first consumer to be created before binding")
        elif not name:
            self.recorder.event(claim, NORMAL, "FailedBinding", "no persistent volumes "
                                "available for this claim and no storage class is set")
        elif sc is None:
            self.recorder.event(claim, WARNING, "ProvisioningFailed",
                                f'storageclass.storage.k8s.io "{name}" not found')
        elif sc.get("provisioner") in LOCAL_PATH_PROVISIONERS:
            await self.provision(claim, sc)
        else:
            self.recorder.event(
                claim, NORMAL, "ExternalProvisioning",
                f"Waiting for a volume to be created either by the external provisioner "
                f"'{sc.get('provisioner')}' or manually by the system administrator. If "
                f"volume creation is delayed, please verify that the provisioner is "
                f"running and correctly registered.")

    async def _sync_prebound_claim(self, claim: Obj, volume_name: str) -> None:
        pv = self._volume(volume_name)
        if pv is None:
            await self._set_claim_pending(claim)     # the volume may come later
            return
        if not _spec(pv).get("claimRef"):
            why = satisfies_claim(pv, claim)
            if why:
                await self._set_claim_pending(claim)
                self.recorder.event(claim, WARNING, "VolumeMismatch",
                                    f"Cannot bind to requested volume \"{volume_name}\": {why}")
                return
            await self.bind(pv, claim)
        elif is_bound_to_claim(pv, claim):
            await self.bind(pv, claim)
        else:
            await self._set_claim_pending(claim)
            self.recorder.event(claim, WARNING, "FailedBinding",
                                f'volume "{volume_name}" already bound to a different claim.')

    async def _sync_bound_claim(self, claim: Obj) -> None:
        volume_name = _spec(claim).get("volumeName")
        pv = self._volume(str(volume_name)) if volume_name else None
        if pv is None and volume_name:
            try:
                pv = await self.client.get(_pv_path(str(volume_name)))
            except NotFound:
                pv = None
        if pv is None:
            if _phase(claim) != "Lost":
                msg = ("Bound claim has lost its PersistentVolume. Data on the volume is lost!"
                       if volume_name else "Bound claim has lost reference to "
                       "PersistentVolume. Data on the volume is lost!")
                self.recorder.event(claim, WARNING, "ClaimLost", msg)
                await self._claim_status(claim, {"phase": "Lost"})
            return
        ref = _spec(pv).get("claimRef")
        if not ref or ref.get("uid") == _md(claim).get("uid"):
            await self.bind(pv, claim)
        elif _phase(claim) != "Lost":
            self.recorder.event(claim, WARNING, "ClaimMisbound", "Two claims are bound to "
                                "the same volume, this one is bound incorrectly")
            await self._claim_status(claim, {"phase": "Lost"})

    async def provision(self, claim: Obj, sc: Obj) -> None:
        """The local-path provisioner: create `pvc-<uid>` for the claim, then bind."""
        if _spec(claim).get("selector"):
            self.recorder.event(claim, WARNING, "ProvisioningFailed", "claim.Spec.Selector "
                                "is not supported for dynamic provisioning")
            return
        body = provisioned_volume(claim, sc, self.local_path_dir)
        name = body["metadata"]["name"]
        pv = self._volume(name)
        if pv is None:
            await asyncio.to_thread(self._make_dir, body["spec"]["hostPath"]["path"])
            try:
                pv = await self.client.create(_pv_path(""), body)
                self.recorder.event(claim, NORMAL, "ProvisioningSucceeded",
                                    f"Successfully provisioned volume {name} using "
                                    f"{sc.get('provisioner')}")
            except AlreadyExists:
                pv = await self.client.get(_pv_path(name))
        if is_bound_to_claim(pv, claim):
            await self.bind(pv, claim)

    @staticmethod
    def _make_dir(path: str) -> None:
        """Like k3s's helper pod (`mkdir -m 0777 -p`); the kubelet creates it otherwise."""
        try:
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o777)
        except OSError as e:
            log.debug("%s: cannot create %s here (%s); the kubelet will", COMPONENT, path, e)

    # -- binding --------------------------------------------------------------------------
    async def bind(self, pv: Obj, claim: Obj) -> None:
        pv = await self._bind_volume_to_claim(pv, claim)
        pv = await self._volume_phase(pv, "Bound")
        claim = await self._bind_claim_to_volume(claim, pv)
        status = dict(claim.get("status") or {})
        status.update({"phase": "Bound",
                       "accessModes": list(_spec(pv).get("accessModes") or []),
                       "capacity": dict(_spec(pv).get("capacity") or {})})
        await self._claim_status(claim, status)

    async def _bind_volume_to_claim(self, pv: Obj, claim: Obj) -> Obj:
        ref = _spec(pv).get("claimRef")
        want = claim_ref(claim)
        if ref and ref.get("uid") == want["uid"] and ref.get("name") == want["name"] and \
                ref.get("namespace") == want["namespace"]:
            return pv
        new = copy.deepcopy(pv)
        new["spec"]["claimRef"] = want
        if not ref:
            new["metadata"].setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
        return await self._update("pv", _pv_path(_md(pv)["name"]), new)

    async def _bind_claim_to_volume(self, claim: Obj, pv: Obj) -> Obj:
        new = copy.deepcopy(claim)
        spec, md = new.setdefault("spec", {}), new["metadata"]
        ann = md.setdefault("annotations", {})
        if spec.get("volumeName") != _md(pv)["name"]:
            spec["volumeName"] = _md(pv)["name"]
            ann[ANN_BOUND_BY_CONTROLLER] = "yes"
        ann[ANN_BIND_COMPLETED] = "yes"
        provisioner = (_md(pv).get("annotations") or {}).get(ANN_PROVISIONED_BY)
        if provisioner and ann.get(ANN_STORAGE_PROVISIONER) is None:
            ann[ANN_STORAGE_PROVISIONER] = ann[ANN_BETA_STORAGE_PROVISIONER] = provisioner
        if new == claim:
            return claim
        md2 = _md(claim)
        return await self._update("pvc", _pvc_path(md2["namespace"], md2["name"]), new)

    async def _claim_status(self, claim: Obj, status: Obj) -> Obj:
        if (claim.get("status") or {}) == status:
            return claim
        new = copy.deepcopy(claim)
        new["status"] = status
        md = _md(claim)
        return await self._update("pvc", _pvc_path(md["namespace"], md["name"], "status"),
                                  new)

    async def _set_claim_pending(self, claim: Obj) -> Obj:
        if _phase(claim) == "Pending":
            return claim
        return await self._claim_status(claim, {**(claim.get("status") or {}),
                                                "phase": "Pending"})

    async def _volume_phase(self, pv: Obj, phase: str, message: str = "") -> Obj:
        status = {"phase": phase, **({"message": message} if message else {})}
        if (pv.get("status") or {}) == status:
            return pv
        new = copy.deepcopy(pv)
        new["status"] = status
        return await self._update("pv", _pv_path(_md(pv)["name"], "status"), new)

    # -- volumes --------------------------------------------------------------------------
    async def sync_volume(self, key: str) -> None:
        pv = self._volume(key)
        if pv is None:
            self._written.pop(("pv", key), None)
            return
        ref = _spec(pv).get("claimRef")
        if not ref or not ref.get("uid"):
            # Free, or pre-bound by a user and waiting for its claim.
            await self._volume_phase(pv, "Available")
            if ref:
                self.claim_queue.add(f"{ref.get('namespace') or ''}/{ref.get('name')}")
            return
        claim = await self._claim_of(ref)
        if claim is None:
            if _phase(pv) not in ("Released", "Failed"):
                pv = await self._volume_phase(pv, "Released")
            await self.reclaim(pv)
            return
        volume_name = _spec(claim).get("volumeName")
        if not volume_name:
            self.claim_queue.add(object_key(claim))       # the claim side finishes binding
        elif volume_name == _md(pv)["name"]:
            await self._volume_phase(pv, "Bound")
        elif (_md(pv).get("annotations") or {}).get(ANN_BOUND_BY_CONTROLLER):
            await self._unbind(pv)                        # the claim went elsewhere

    async def _claim_of(self, ref: Obj) -> Obj | None:
        """The claim a claimRef names, if it is still that claim (same uid); the cache may
        lag behind a claim just created, so a miss is checked with a GET."""
        ns, name = str(ref.get("namespace") or ""), str(ref.get("name") or "")
        claim = self._claim(f"{ns}/{name}")
        if claim is None or _md(claim).get("uid") != ref.get("uid"):
            try:
                claim = await self.client.get(_pvc_path(ns, name))
            except NotFound:
                return None
        return claim if _md(claim).get("uid") == ref.get("uid") else None

    async def _unbind(self, pv: Obj) -> None:
        new = copy.deepcopy(pv)
        new["spec"].pop("claimRef", None)
        (new["metadata"].get("annotations") or {}).pop(ANN_BOUND_BY_CONTROLLER, None)
        pv = await self._update("pv", _pv_path(_md(pv)["name"]), new)
        await self._volume_phase(pv, "Available")

    def _owned_path(self, pv: Obj) -> str | None:
        """The directory of a volume this provisioner made (under local_path_dir)."""
        ann = _md(pv).get("annotations") or {}
        path = (_spec(pv).get("hostPath") or {}).get("path") or ""
        if ann.get(ANN_PROVISIONED_BY) not in LOCAL_PATH_PROVISIONERS or not path:
            return None
        path = os.path.abspath(path)
        return path if os.path.dirname(path) == self.local_path_dir else None

    async def reclaim(self, pv: Obj) -> None:
        """Apply the reclaim policy of a released volume."""
        policy = _spec(pv).get("persistentVolumeReclaimPolicy") or "Retain"
        name = _md(pv)["name"]
        if policy == "Retain":
            return
        if policy == "Recycle":
            if _phase(pv) != "Failed":
                msg = "Recycle is not supported"
                self.recorder.event(pv, WARNING, "VolumeFailedRecycle", msg)
                await self._volume_phase(pv, "Failed", msg)
            return
        if (_md(pv).get("annotations") or {}).get(ANN_PROVISIONED_BY) not in \
                LOCAL_PATH_PROVISIONERS:
            if _phase(pv) != "Failed":
                msg = (f'error getting deleter volume plugin for volume "{name}": no '
                       f"deletable volume plugin matched")
                self.recorder.event(pv, WARNING, "VolumeFailedDelete", msg)
                await self._volume_phase(pv, "Failed", msg)
            return
        path = self._owned_path(pv)
        if path is not None:
            await asyncio.to_thread(_remove_tree, path)
        try:
            await self.client.delete(_pv_path(name),
                                     {"preconditions": {"uid": _md(pv).get("uid")}})
            self._written.pop(("pv", name), None)
            log.info("%s: deleted volume %s", COMPONENT, name)
        except NotFound:
            pass


def _remove_tree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


async def ensure_default_storage_class(client: Any) -> None:
    """Create the default StorageClass `local-path` unless it exists (an admin's changes to
    it stay)."""
    try:
        await client.create(resource_path("storage.k8s.io", "v1", "storageclasses"),
                            default_storage_class())
        log.info("created the default StorageClass local-path")
    except AlreadyExists:
        pass


__all__ = ["PersistentVolumeController", "index_volume_by_claim", "index_pod_by_claim",
           "ensure_default_storage_class"]

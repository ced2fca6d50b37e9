"""The PersistentVolume binder and local-path provisioner: `sync_claim` / `sync_volume`
against a seeded fake (no server), and the pure matching rules."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pyk8s.client.informer import SharedInformer
from pyk8s.controllers.persistentvolume import (PersistentVolumeController,
                                                ensure_default_storage_class)
from pyk8s.controllers.persistentvolume_util import (ANN_BIND_COMPLETED,
                                                     ANN_BOUND_BY_CONTROLLER,
                                                     ANN_PROVISIONED_BY, find_best_match,
                                                     satisfies_claim)
from tests.controllers.fake_cluster import NS, FakeCluster

Obj = dict[str, Any]
PV_PATH = "/api/v1/persistentvolumes"
PVC_PATH = f"/api/v1/namespaces/{NS}/persistentvolumeclaims"
SC_PATH = "/apis/storage.k8s.io/v1/storageclasses"
POD_PATH = f"/api/v1/namespaces/{NS}/pods"


def pv(name: str, size: str = "1Gi", *, modes: tuple[str, ...] = ("ReadWriteOnce",),
       cls: str = "", phase: str = "Available", labels: dict[str, str] | None = None,
       claim_ref: Obj | None = None, policy: str = "Retain", mode: str = "Filesystem",
       **spec: Any) -> Obj:
    s: Obj = {"capacity": {"storage": size}, "accessModes": list(modes),
              "persistentVolumeReclaimPolicy": policy, "volumeMode": mode,
              "hostPath": {"path": f"/data/{name}"}, **spec}
    if cls:
        s["storageClassName"] = cls
    if claim_ref:
        s["claimRef"] = claim_ref
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {}},
            "spec": s, "status": {"phase": phase}}


def pvc(name: str, size: str = "1Gi", *, modes: tuple[str, ...] = ("ReadWriteOnce",),
        cls: str | None = None, selector: Obj | None = None, volume: str = "",
        mode: str = "Filesystem") -> Obj:
    s: Obj = {"accessModes": list(modes), "resources": {"requests": {"storage": size}},
              "volumeMode": mode}
    if cls is not None:
        s["storageClassName"] = cls
    if selector:
        s["selector"] = selector
    if volume:
        s["volumeName"] = volume
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
            "spec": s, "status": {"phase": "Pending"}}


# -- matching -----------------------------------------------------------------------------
def test_smallest_matching_volume_wins() -> None:
    vols = [pv("big", "10Gi"), pv("small", "2Gi"), pv("tiny", "500Mi"),
            pv("rwx", "2Gi", modes=("ReadWriteOnce", "ReadWriteMany"))]
    assert find_best_match(pvc("c", "1Gi"), vols)["metadata"]["name"] == "small"
    # Fewer access modes first, even when a volume with more is smaller.
    vols2 = [pv("rwx-small", "1Gi", modes=("ReadWriteOnce", "ReadWriteMany")),
             pv("rwo-big", "5Gi")]
    assert find_best_match(pvc("c", "1Gi"), vols2)["metadata"]["name"] == "rwo-big"
    assert find_best_match(pvc("c", "1Gi", modes=("ReadWriteMany",)), vols2
                           )["metadata"]["name"] == "rwx-small"
    assert find_best_match(pvc("c", "20Gi"), vols) is None


def test_match_filters() -> None:
    c = pvc("c", cls="fast", selector={"matchLabels": {"tier": "db"}})
    ok = pv("ok", cls="fast", labels={"tier": "db"})
    assert find_best_match(c, [ok]) is ok
    assert find_best_match(c, [pv("x", cls="slow", labels={"tier": "db"})]) is None
    assert find_best_match(c, [pv("x", cls="fast", labels={"tier": "web"})]) is None
    assert find_best_match(c, [pv("x", cls="fast", labels={"tier": "db"},
                                  phase="Released")]) is None
    assert find_best_match(c, [pv("x", cls="fast", labels={"tier": "db"},
                                  mode="Block")]) is None
    assert find_best_match(c, [pv("x", cls="fast", labels={"tier": "db"},
                                  modes=("ReadOnlyMany",))]) is None
    other = {"namespace": NS, "name": "other", "uid": "u"}
    assert find_best_match(c, [pv("x", cls="fast", labels={"tier": "db"},
                                  claim_ref=other)]) is None
    # "" asks for volumes without a class.
    assert find_best_match(pvc("c", cls=""), [pv("nocls")])["metadata"]["name"] == "nocls"
    assert find_best_match(pvc("c", cls=""), [pv("x", cls="fast")]) is None


def test_prebound_volume_first_and_delay_binding() -> None:
    c = pvc("c")
    pre = pv("pre", "5Gi", phase="Available",
             claim_ref={"namespace": NS, "name": "c"})       # a user pre-bound it
    small = pv("small", "1Gi")
    assert find_best_match(c, [small, pre]) is pre
    assert find_best_match(c, [small], delay_binding=True) is None
    assert find_best_match(c, [small, pre], delay_binding=True) is pre
    wrong_uid = pv("w", claim_ref={"namespace": NS, "name": "c", "uid": "other"})
    assert find_best_match(c, [wrong_uid]) is None


def test_satisfies_claim() -> None:
    assert satisfies_claim(pv("v", "2Gi"), pvc("c", "1Gi")) == ""
    assert satisfies_claim(pv("v", "1Gi"), pvc("c", "2Gi")) == "requested PV is too small"
    assert satisfies_claim(pv("v", cls="a"), pvc("c", cls="b")) == \
        "storageClassName does not match"
    assert satisfies_claim(pv("v", modes=("ReadOnlyMany",)), pvc("c")) == \
        "incompatible accessMode"


# -- the controller -----------------------------------------------------------------------
class Harness(FakeCluster):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.ctrl = PersistentVolumeController(self.client, self.factory, self.recorder,
                                               local_path_dir=str(root))

    def feed_all(self) -> None:
        c = self.ctrl
        informers: list[tuple[SharedInformer, str, str]] = [
            (c.pv_informer, "", "persistentvolumes"),
            (c.pvc_informer, "", "persistentvolumeclaims"),
            (c.sc_informer, "storage.k8s.io", "storageclasses"),
            (c.pod_informer, "", "pods")]
        for inf, group, resource in informers:
            self.feed(inf, group, resource)

    async def converge(self, rounds: int = 6) -> None:
        """Run the queued syncs (what the workers would), feeding the informers between."""
        for _ in range(rounds):
            self.feed_all()
            for q, sync in ((self.ctrl.claim_queue, self.ctrl.sync_claim),
                            (self.ctrl.volume_queue, self.ctrl.sync_volume)):
                while len(q):
                    key = await q.get()
                    try:
                        await sync(key)
                    finally:
                        q.done(key)

    def claim(self, name: str) -> Obj:
        return self.client.objects[("", "persistentvolumeclaims", NS, name)]

    def volume(self, name: str) -> Obj | None:
        return self.client.objects.get(("", "persistentvolumes", "", name))


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path / "storage")


def assert_bound(h: Harness, claim: str, volume: str, *, by_controller: bool = True) -> None:
    c, v = h.claim(claim), h.volume(volume)
    assert v is not None
    assert c["spec"]["volumeName"] == volume
    assert c["status"]["phase"] == "Bound"
    assert c["status"]["capacity"] == v["spec"]["capacity"]
    assert c["status"]["accessModes"] == v["spec"]["accessModes"]
    assert c["metadata"]["annotations"][ANN_BIND_COMPLETED] == "yes"
    ref = v["spec"]["claimRef"]
    assert (ref["namespace"], ref["name"], ref["uid"]) == (NS, claim, c["metadata"]["uid"])
    assert ref["kind"] == "PersistentVolumeClaim"
    assert v["status"]["phase"] == "Bound"
    if by_controller:
        assert c["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER] == "yes"


async def test_binds_pending_claim_to_smallest_volume(h: Harness) -> None:
    h.seed(PV_PATH, pv("big", "10Gi"))
    h.seed(PV_PATH, pv("small", "2Gi"))
    h.seed(PVC_PATH, pvc("data", "1Gi"))
    h.ctrl.claim_queue.add(f"{NS}/data")
    await h.converge()
    assert_bound(h, "data", "small")
    assert h.volume("small")["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER] == "yes"
    assert h.volume("big")["status"]["phase"] == "Available"
    # Level-triggered: another pass writes nothing.
    h.client.clear_actions()
    h.ctrl.claim_queue.add(f"{NS}/data")
    h.ctrl.volume_queue.add("small")
    await h.converge()
    assert not [a for a in h.client.actions if a.verb != "get"]


async def test_prebound_claim_and_volume(h: Harness) -> None:
    h.seed(PV_PATH, pv("chosen", "5Gi"))
    h.seed(PV_PATH, pv("other", "1Gi"))
    h.seed(PVC_PATH, pvc("named", volume="chosen"))
    h.seed(PV_PATH, pv("for-c2", claim_ref={"namespace": NS, "name": "c2"}))
    h.seed(PVC_PATH, pvc("c2"))
    h.ctrl.claim_queue.add(f"{NS}/named")
    h.ctrl.claim_queue.add(f"{NS}/c2")
    await h.converge()
    assert_bound(h, "named", "chosen", by_controller=False)
    assert ANN_BOUND_BY_CONTROLLER not in h.claim("named")["metadata"]["annotations"]
    assert_bound(h, "c2", "for-c2")
    assert ANN_BOUND_BY_CONTROLLER not in (h.volume("for-c2")["metadata"].get("annotations")
                                           or {})
    assert h.volume("other")["status"]["phase"] == "Available"


async def test_prebound_claim_to_unfit_volume_stays_pending(h: Harness) -> None:
    h.seed(PV_PATH, pv("small", "1Gi"))
    h.seed(PVC_PATH, pvc("big", "5Gi", volume="small"))
    h.ctrl.claim_queue.add(f"{NS}/big")
    await h.converge()
    assert h.claim("big")["status"]["phase"] == "Pending"
    assert "claimRef" not in h.volume("small")["spec"]
    assert any("VolumeMismatch" in e and "too small" in e for e in h.events())


async def test_no_class_no_volume_waits(h: Harness) -> None:
    h.seed(PVC_PATH, pvc("lonely"))
    h.ctrl.claim_queue.add(f"{NS}/lonely")
    await h.converge()
    assert h.claim("lonely")["status"]["phase"] == "Pending"
    assert h.events("FailedBinding")
    h.seed(PVC_PATH, pvc("ghost", cls="nope"))
    h.ctrl.claim_queue.add(f"{NS}/ghost")
    await h.converge()
    assert any('storageclass.storage.k8s.io "nope" not found' in e for e in h.events())


def local_path_class(name: str = "local-path", provisioner: str = "rancher.io/local-path",
                     **kw: Any) -> Obj:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name}, "provisioner": provisioner,
            "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate", **kw}


async def test_provisions_binds_and_deletes(h: Harness) -> None:
    h.seed(SC_PATH, local_path_class())
    h.seed(PVC_PATH, pvc("data", "3Gi", cls="local-path"))
    h.ctrl.claim_queue.add(f"{NS}/data")
    await h.converge()
    uid = h.claim("data")["metadata"]["uid"]
    name = f"pvc-{uid}"
    assert_bound(h, "data", name)
    v = h.volume(name)
    assert v is not None
    path = h.root / f"pvc-{uid}_{NS}_data"
    assert v["spec"]["hostPath"] == {"path": str(path), "type": "DirectoryOrCreate"}
    assert v["spec"]["capacity"] == {"storage": "3Gi"}
    assert v["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert v["spec"]["storageClassName"] == "local-path"
    assert v["metadata"]["annotations"][ANN_PROVISIONED_BY] == "rancher.io/local-path"
    ann = h.claim("data")["metadata"]["annotations"]
    assert ann["volume.kubernetes.io/storage-provisioner"] == "rancher.io/local-path"
    assert h.events("ProvisioningSucceeded")
    assert path.is_dir() and path.stat().st_mode & 0o777 == 0o777
    (path / "file").write_text("x")
    # The claim goes: the volume is released, its directory removed, the PV deleted.
    del h.client.objects[("", "persistentvolumeclaims", NS, "data")]
    await h.converge()
    assert h.volume(name) is None
    assert not path.exists()


async def test_retain_releases(h: Harness) -> None:
    h.seed(SC_PATH, local_path_class("keep", "pyk8s.io/local-path", reclaimPolicy="Retain"))
    h.seed(PVC_PATH, pvc("data", cls="keep"))
    h.ctrl.claim_queue.add(f"{NS}/data")
    await h.converge()
    name = f"pvc-{h.claim('data')['metadata']['uid']}"
    assert_bound(h, "data", name)
    assert h.volume(name)["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    del h.client.objects[("", "persistentvolumeclaims", NS, "data")]
    await h.converge()
    v = h.volume(name)
    assert v is not None and v["status"]["phase"] == "Released"
    assert v["spec"]["claimRef"]["name"] == "data"
    # A new claim of the same name is another claim: the released volume is not reused.
    h.seed(PVC_PATH, pvc("data", cls="keep") | {"metadata": {
        "name": "data", "namespace": NS, "uid": "uid-data-2"}})
    await h.converge()
    assert h.claim("data")["spec"]["volumeName"] == "pvc-uid-data-2"


async def test_static_volume_with_delete_policy_fails(h: Harness) -> None:
    h.seed(PV_PATH, pv("static", policy="Delete"))
    h.seed(PVC_PATH, pvc("c", cls=""))
    h.ctrl.claim_queue.add(f"{NS}/c")
    await h.converge()
    assert_bound(h, "c", "static")
    del h.client.objects[("", "persistentvolumeclaims", NS, "c")]
    await h.converge()
    v = h.volume("static")
    assert v is not None and v["status"]["phase"] == "Failed"
    assert "no deletable volume plugin matched" in v["status"]["message"]


async def test_wait_for_first_consumer(h: Harness) -> None:
    h.seed(SC_PATH, local_path_class("lazy", volumeBindingMode="WaitForFirstConsumer"))
    h.seed(PV_PATH, pv("static", cls="lazy"))
    h.seed(PVC_PATH, pvc("data", cls="lazy"))
    h.ctrl.claim_queue.add(f"{NS}/data")
    await h.converge()
    assert h.claim("data")["status"]["phase"] == "Pending"
    assert h.events("WaitForFirstConsumer")
    pod = {"metadata": {"name": "user"}, "spec": {
        "containers": [{"name": "c", "image": "busybox"}],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}
    h.seed(POD_PATH, pod)
    await h.converge()
    assert h.claim("data")["status"]["phase"] == "Pending"    # not scheduled yet
    scheduled = copy.deepcopy(h.pod("user"))      # what the scheduler's binding does
    scheduled["spec"]["nodeName"] = "n1"
    scheduled["metadata"]["resourceVersion"] = str(next(h.client._rv))
    h.client.objects[("", "pods", NS, "user")] = scheduled
    await h.converge()
    assert_bound(h, "data", "static")


async def test_external_provisioner_and_lost_claim(h: Harness) -> None:
    h.seed(SC_PATH, local_path_class("ext", "example.com/nfs"))
    h.seed(PVC_PATH, pvc("data", cls="ext"))
    h.ctrl.claim_queue.add(f"{NS}/data")
    await h.converge()
    assert h.events("ExternalProvisioning") and not h.stored("", "persistentvolumes")
    # A bound claim whose volume disappears is Lost.
    h.seed(PV_PATH, pv("v1", cls="ext"))
    await h.converge()
    assert_bound(h, "data", "v1")
    del h.client.objects[("", "persistentvolumes", "", "v1")]
    h.ctrl.claim_queue.add(f"{NS}/data")
    await h.converge()
    assert h.claim("data")["status"]["phase"] == "Lost"
    assert h.events("ClaimLost")


async def test_default_class_created_once(h: Harness) -> None:
    await ensure_default_storage_class(h.client)
    (sc,) = h.client.stored("storage.k8s.io", "storageclasses")
    assert sc["metadata"]["name"] == "local-path"
    assert sc["provisioner"] == "rancher.io/local-path"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == \
        "true"
    sc["reclaimPolicy"] = "Retain"                       # an admin's change stays
    await ensure_default_storage_class(h.client)
    (sc,) = h.client.stored("storage.k8s.io", "storageclasses")
    assert sc["reclaimPolicy"] == "Retain"

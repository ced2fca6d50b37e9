"""persistentVolumeClaim volumes in the kubelet's volume manager."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyk8s.kubelet.envvars import ContainerConfigError
from pyk8s.kubelet.volumes import VolumeError, VolumeManager

Obj = dict[str, Any]


def claim(name: str = "data", phase: str = "Bound", volume: str = "pv1") -> Obj:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {"volumeName": volume} if volume else {}, "status": {"phase": phase}}


def volume(name: str = "pv1", claim_uid: str = "uid-data", **source: Any) -> Obj:
    return {"metadata": {"name": name},
            "spec": {"claimRef": {"namespace": "ns", "name": "data", "uid": claim_uid},
                     **source}}


class Objects:
    def __init__(self) -> None:
        self.objs: dict[tuple[str, str, str], Obj] = {}
        self.error: Exception | None = None

    async def __call__(self, kind: str, ns: str, name: str) -> Obj | None:
        if self.error is not None:
            raise self.error
        return self.objs.get((kind, ns, name))

    def claim(self, c: Obj) -> None:
        self.objs[("persistentvolumeclaim", "ns", c["metadata"]["name"])] = c

    def volume(self, v: Obj) -> None:
        self.objs[("persistentvolume", "", v["metadata"]["name"])] = v


def pod(read_only: bool = False) -> Obj:
    src: Obj = {"claimName": "data"}
    if read_only:
        src["readOnly"] = True
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": src}],
                     "containers": [{"name": "c", "volumeMounts": [
                         {"name": "d", "mountPath": "/data"}]}]}}


async def test_claim_volume_uses_the_bound_host_path(tmp_path: Path) -> None:
    objs = Objects()
    m = VolumeManager(tmp_path / "vols", objs)
    host = tmp_path / "storage" / "pvc-1"
    with pytest.raises(VolumeError, match='persistentvolumeclaim "data" not found'):
        await m.setup(pod())
    objs.claim(claim(phase="Pending", volume=""))
    with pytest.raises(VolumeError) as e:
        await m.setup(pod())
    assert str(e.value) == ('MountVolume.SetUp failed for volume "d" : PVC ns/data has '
                            'non-bound phase ("Pending") or empty pvc.Spec.VolumeName ("")')
    objs.claim(claim())
    with pytest.raises(VolumeError, match='failed to fetch PV "pv1"'):
        await m.setup(pod())
    objs.volume(volume(claim_uid="someone-else",
                       hostPath={"path": str(host), "type": "DirectoryOrCreate"}))
    with pytest.raises(VolumeError, match="does not point to claim.UID"):
        await m.setup(pod())
    assert m.pods() == []              # nothing set up: the kubelet retries
    objs.volume(volume(hostPath={"path": str(host), "type": "DirectoryOrCreate"}))
    paths = await m.setup(pod())
    assert paths == {"d": str(host)} and host.is_dir()        # DirectoryOrCreate made it
    p = pod()
    assert m.mounts(p, p["spec"]["containers"][0]) == [("/data", str(host), False)]
    m.teardown("u1")
    assert host.is_dir()               # the claim's data outlives the pod


async def test_read_only_local_and_errors(tmp_path: Path) -> None:
    objs = Objects()
    m = VolumeManager(tmp_path / "vols", objs)
    local = tmp_path / "disk"
    objs.claim(claim())
    objs.volume(volume(local={"path": str(local)}))
    with pytest.raises(VolumeError, match="does not exist"):
        await m.setup(pod())
    local.mkdir()
    p = pod(read_only=True)
    await m.setup(p)
    assert m.mounts(p, p["spec"]["containers"][0]) == [("/data", str(local), True)]
    m.teardown("u1")
    objs.volume(volume(nfs={"server": "x", "path": "/"}))
    with pytest.raises(VolumeError, match="volume source not supported"):
        await m.setup(pod())
    objs.volume(volume(hostPath={"path": str(local)}, volumeMode="Block"))
    with pytest.raises(VolumeError, match="Block"):
        await m.setup(pod())
    objs.error = ContainerConfigError("getting persistentvolumeclaim ns/data: refused")
    with pytest.raises(VolumeError, match="refused"):
        await m.setup(pod())

"""persistentVolumeClaim volumes: the host directory of the claim's PersistentVolume
(upstream's kubelet desired-state populator `getPVCExtractPV` + the hostPath / local
volume plugins).

Rules:
- the claim (`claimName`, in the pod's namespace) must exist: else
  `persistentvolumeclaim "<name>" not found`;
- it must be `Bound` with `spec.volumeName` set, else upstream's
  `PVC <ns>/<name> has non-bound phase ("Pending") or empty pvc.Spec.VolumeName ("")`;
- the PersistentVolume must exist and its claimRef must carry the claim's uid;
- its `hostPath` (type-checked; `DirectoryOrCreate` creates the directory) or `local.path`
  (which must be an existing directory) is the volume's host path; other sources and
  `volumeMode: Block` are not supported;
- the volume is read-only when the pod's `persistentVolumeClaim.readOnly` says so.
All failures are `VolumeError`s: the pod stays ContainerCreating and the kubelet retries.
"""
from __future__ import annotations

import os
from typing import Any

from pyk8s.kubelet.envvars import ContainerConfigError, ObjectGetter
from pyk8s.kubelet.volumes.sources import VolumeError, check_host_path

Obj = dict[str, Any]


async def _get(getter: ObjectGetter, kind: str, ns: str, name: str) -> Obj | None:
    try:
        return await getter(kind, ns, name)
    except ContainerConfigError as e:     # the API server unreachable, forbidden, ...
        raise VolumeError(str(e)) from None


async def claim_host_path(src: Obj, namespace: str, getter: ObjectGetter) -> tuple[str, bool]:
    """(host path, read-only) of a `persistentVolumeClaim` volume source."""
    name = str(src.get("claimName") or "")
    claim = await _get(getter, "persistentvolumeclaim", namespace, name)
    if claim is None:
        raise VolumeError(f'persistentvolumeclaim "{name}" not found')
    spec, status = claim.get("spec") or {}, claim.get("status") or {}
    phase, volume = str(status.get("phase") or ""), str(spec.get("volumeName") or "")
    if phase != "Bound" or not volume:
        raise VolumeError(f'PVC {namespace}/{name} has non-bound phase ("{phase}") or empty '
                          f'pvc.Spec.VolumeName ("{volume}")')
    pv = await _get(getter, "persistentvolume", "", volume)
    if pv is None:
        raise VolumeError(f'failed to fetch PV "{volume}" from API server: persistentvolumes '
                          f'"{volume}" not found')
    pv_spec = pv.get("spec") or {}
    ref_uid = (pv_spec.get("claimRef") or {}).get("uid") or ""
    claim_uid = (claim.get("metadata") or {}).get("uid") or ""
    if ref_uid != claim_uid:
        raise VolumeError(f"pv.Spec.ClaimRef.UID ({ref_uid}) does not point to claim.UID "
                          f"({claim_uid})")
    if pv_spec.get("volumeMode") == "Block":
        raise VolumeError(f'PersistentVolume "{volume}" has volumeMode Block, which is not '
                          f"supported")
    if pv_spec.get("hostPath") is not None:
        path = check_host_path(pv_spec["hostPath"])
    elif pv_spec.get("local") is not None:
        path = str(pv_spec["local"].get("path") or "")
        if not os.path.isdir(path):
            raise VolumeError(f"path {path!r} does not exist")
    else:
        raise VolumeError(f'PersistentVolume "{volume}": volume source not supported '
                          f"(hostPath and local are)")
    return path, bool(src.get("readOnly"))


__all__ = ["claim_host_path"]

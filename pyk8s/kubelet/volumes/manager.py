"""The kubelet's volume manager: a pod's volumes live under `<data-dir>/volumes/<uid>/
<volume>`; emptyDir is a directory there (medium Memory too), hostPath the host's path
(after its type check), configMap / secret / downwardAPI / projected AtomicWriter
directories there, rewritten by `refresh` (the kubelet calls it periodically) when their
sources change; persistentVolumeClaim the bound PersistentVolume's host directory
(claims.py), read-only when the claim source says so. `teardown` removes a pod's directory
when the pod is gone (never a claim's data)."""
from __future__ import annotations

import logging
import os
import posixpath
import shutil
import time
from pathlib import Path
from typing import Any

from pyk8s.kubelet.envvars import ObjectGetter
from pyk8s.kubelet.volumes.atomic_writer import write_payload
from pyk8s.kubelet.volumes.claims import claim_host_path
from pyk8s.kubelet.volumes.sources import TokenGetter, VolumeError, check_host_path, payload

log = logging.getLogger("pyk8s.kubelet.volumes")

Obj = dict[str, Any]
Mount = tuple[str, str, bool]     # (container path, host path, read-only)

__all__ = ["VolumeError", "VolumeManager", "Mount"]


class VolumeManager:
    def __init__(self, root: str | os.PathLike[str], getter: ObjectGetter,
                 tokens: TokenGetter | None = None,
                 allocatable: dict[str, Any] | None = None) -> None:
        self.root = Path(root).resolve()
        self.getter, self.tokens, self.allocatable = getter, tokens, allocatable
        self._paths: dict[str, dict[str, str]] = {}    # uid -> volume name -> host path
        self._read_only: dict[str, set[str]] = {}      # uid -> read-only volume names

    def pod_dir(self, uid: str) -> Path:
        return self.root / uid

    def stage_dir(self, uid: str) -> Path:
        """An empty per-pod directory runtimes may mount over in a private namespace."""
        return self.root / uid / "..stage"

    async def _write(self, pod: Obj, vol: Obj, pod_ip: str, host_ip: str) -> str | None:
        uid = pod["metadata"]["uid"]
        files = await payload(vol, pod, self.getter, self.tokens, pod_ip, host_ip,
                              self.allocatable)
        if files is None:
            return None
        d = self.pod_dir(uid) / vol["name"]
        if write_payload(d, files):
            log.debug("volume %s of pod %s written", vol["name"], uid)
        return str(d)

    async def setup(self, pod: Obj, pod_ip: str = "", host_ip: str = "") -> dict[str, str]:
        """Make every volume of the pod; volume name -> host path. VolumeError (with
        upstream's message) when one cannot be made (a missing ConfigMap, ...)."""
        uid = pod["metadata"]["uid"]
        paths: dict[str, str] = {}
        read_only: set[str] = set()
        ns = (pod.get("metadata") or {}).get("namespace") or "default"
        self.stage_dir(uid).mkdir(parents=True, exist_ok=True)
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = vol.get("name") or ""
            try:
                if vol.get("hostPath") is not None:
                    paths[name] = check_host_path(vol["hostPath"])
                elif vol.get("persistentVolumeClaim") is not None:
                    paths[name], ro = await claim_host_path(vol["persistentVolumeClaim"], ns,
                                                            self.getter)
                    if ro:
                        read_only.add(name)
                elif vol.get("emptyDir") is not None:
                    d = self.pod_dir(uid) / name
                    d.mkdir(parents=True, exist_ok=True)
                    os.chmod(d, 0o777)
                    paths[name] = str(d)
                else:
                    p = await self._write(pod, vol, pod_ip, host_ip)
                    if p is None:
                        raise VolumeError("volume source not supported")
                    paths[name] = p
            except VolumeError as e:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {e}') \
                    from None
            except OSError as e:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {e}') \
                    from None
        self._paths[uid] = paths
        self._read_only[uid] = read_only
        return paths

    async def refresh(self, pod: Obj, pod_ip: str = "", host_ip: str = "") -> None:
        """Rewrite the pod's configMap / secret / downwardAPI / projected volumes whose
        content changed (errors are logged; the old content stays, as upstream)."""
        uid = pod["metadata"]["uid"]
        if uid not in self._paths:
            return
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            if vol.get("hostPath") is not None or vol.get("emptyDir") is not None or \
                    vol.get("persistentVolumeClaim") is not None:
                continue
            try:
                await self._write(pod, vol, pod_ip, host_ip)
            except Exception as e:
                log.warning("refreshing volume %s of pod %s: %s", vol.get("name"), uid, e)

    def mounts(self, pod: Obj, container: Obj) -> list[Mount]:
        """The container's volumeMounts as (container path, host path, read-only)."""
        uid = pod["metadata"]["uid"]
        paths = self._paths.get(uid) or {}
        read_only = self._read_only.get(uid) or set()
        out: list[Mount] = []
        for m in container.get("volumeMounts") or []:
            host = paths.get(m.get("name") or "")
            if host is None:
                raise VolumeError(f'cannot find volume "{m.get("name")}" to mount into '
                                  f'container "{container.get("name")}"')
            sub = m.get("subPath") or ""
            if sub:
                norm = posixpath.normpath(sub)
                if norm.startswith("..") or norm.startswith("/"):
                    raise VolumeError(f"invalid subPath {sub!r}")
                host = os.path.join(host, norm)
                if not os.path.exists(host):
                    os.makedirs(host, mode=0o755, exist_ok=True)
            out.append((m.get("mountPath") or "", host,
                        bool(m.get("readOnly")) or m.get("name") in read_only))
        return out

    def pods(self) -> list[str]:
        return list(self._paths)

    def teardown(self, uid: str) -> None:
        self._paths.pop(uid, None)
        self._read_only.pop(uid, None)
        d = self.pod_dir(uid)
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)


class TokenCache:
    """Projected serviceAccountTokens by TokenRequest (`serviceaccounts/<sa>/token`, bound
    to the pod), reused until 80 % of their lifetime has passed (upstream's token
    manager)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._tokens: dict[tuple[str, str, str, int], tuple[float, str]] = {}

    async def __call__(self, pod: Obj, proj: Obj) -> str:
        from pyk8s.client.rest import resource_path
        md, spec = pod["metadata"], pod.get("spec") or {}
        sa = spec.get("serviceAccountName") or "default"
        exp = int(proj.get("expirationSeconds") or 3600)
        aud = proj.get("audience") or ""
        key = (md["uid"], sa, aud, exp)
        hit = self._tokens.get(key)
        now = time.monotonic()
        if hit is not None and now < hit[0]:
            return hit[1]
        body: Obj = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                     "spec": {"audiences": [aud] if aud else [], "expirationSeconds": exp,
                              "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                                 "name": md["name"], "uid": md["uid"]}}}
        out = await self.client.create(
            resource_path("", "v1", "serviceaccounts", md.get("namespace") or "default", sa,
                          "token"), body)
        token = (out.get("status") or {}).get("token") or ""
        self._tokens[key] = (now + 0.8 * exp, token)
        return token

    def forget(self, uid: str) -> None:
        for k in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[k]

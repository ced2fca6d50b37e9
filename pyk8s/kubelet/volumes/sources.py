"""What each volume source holds: the AtomicWriter payload of configMap, secret,
downwardAPI and projected volumes (upstream's pkg/volume/{configmap,secret,downwardapi,
projected}), and the checks of hostPath types."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Awaitable, Callable

from pyk8s.kubelet.envvars import (ContainerConfigError, ObjectGetter, object_data,
                                   pod_field, resource_value)
from pyk8s.kubelet.volumes.atomic_writer import FileProjection

Obj = dict[str, Any]
# (pod, serviceAccountToken projection) -> the token
TokenGetter = Callable[[Obj, Obj], Awaitable[str]]

DEFAULT_MODE = 0o644


class VolumeError(Exception):
    pass


def _items(kind: str, name: str, data: dict[str, bytes], items: list[Obj] | None,
           default_mode: int, optional: bool) -> dict[str, FileProjection]:
    out: dict[str, FileProjection] = {}
    if not items:
        for k, v in data.items():
            out[k] = FileProjection(v, default_mode)
        return out
    for it in items:
        k = it.get("key") or ""
        if k not in data:
            if optional:
                continue
            raise VolumeError(f"{kind} references non-existent config key: {k}")
        mode = it.get("mode")
        out[it.get("path") or k] = FileProjection(data[k], default_mode if mode is None
                                                  else int(mode))
    return out


async def _object_payload(kind: str, src: Obj, ns: str, getter: ObjectGetter,
                          default_mode: int) -> dict[str, FileProjection]:
    name = src.get("secretName" if kind == "secret" and "secretName" in src else "name") or ""
    optional = bool(src.get("optional"))
    obj = await getter(kind, ns, name)
    if obj is None:
        if optional:
            return {}
        raise VolumeError(f'{kind} "{name}" not found')
    return _items(kind, name, object_data(kind, obj), src.get("items"), default_mode,
                  optional)


def _downward_payload(pod: Obj, items: list[Obj], default_mode: int, pod_ip: str,
                      host_ip: str, allocatable: dict[str, Any] | None
                      ) -> dict[str, FileProjection]:
    out: dict[str, FileProjection] = {}
    for it in items or []:
        try:
            if it.get("fieldRef"):
                v = pod_field(pod, it["fieldRef"].get("fieldPath") or "", pod_ip, host_ip,
                              allow_maps=True)
            elif it.get("resourceFieldRef"):
                v = resource_value(pod, it["resourceFieldRef"], "", allocatable)
            else:
                continue
        except ContainerConfigError as e:
            raise VolumeError(str(e)) from None
        mode = it.get("mode")
        out[it.get("path") or ""] = FileProjection(v.encode(), default_mode if mode is None
                                                   else int(mode))
    return out


async def payload(vol: Obj, pod: Obj, getter: ObjectGetter, tokens: TokenGetter | None,
                  pod_ip: str = "", host_ip: str = "",
                  allocatable: dict[str, Any] | None = None) -> dict[str, FileProjection] | None:
    """The files of a configMap / secret / downwardAPI / projected volume; None for other
    sources (emptyDir, hostPath: nothing to write)."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    for kind, key in (("configmap", "configMap"), ("secret", "secret")):
        if vol.get(key) is not None:
            src = vol[key]
            mode = src.get("defaultMode")
            return await _object_payload(kind, src, ns, getter,
                                         DEFAULT_MODE if mode is None else int(mode))
    if vol.get("downwardAPI") is not None:
        src = vol["downwardAPI"]
        mode = src.get("defaultMode")
        return _downward_payload(pod, src.get("items") or [],
                                 DEFAULT_MODE if mode is None else int(mode), pod_ip, host_ip,
                                 allocatable)
    if vol.get("projected") is not None:
        src = vol["projected"]
        mode = src.get("defaultMode")
        dm = DEFAULT_MODE if mode is None else int(mode)
        out: dict[str, FileProjection] = {}
        for s in src.get("sources") or []:
            if s.get("configMap") is not None:
                out.update(await _object_payload("configmap", s["configMap"], ns, getter, dm))
            elif s.get("secret") is not None:
                out.update(await _object_payload("secret", s["secret"], ns, getter, dm))
            elif s.get("downwardAPI") is not None:
                out.update(_downward_payload(pod, s["downwardAPI"].get("items") or [], dm,
                                             pod_ip, host_ip, allocatable))
            elif s.get("serviceAccountToken") is not None:
                if tokens is None:
                    raise VolumeError("serviceAccountToken projection: no token source")
                t = s["serviceAccountToken"]
                out[t.get("path") or "token"] = FileProjection(
                    (await tokens(pod, t)).encode(), dm)
        return out
    return None


_HOSTPATH_CHECKS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def check_host_path(src: Obj) -> str:
    """hostPath `type` (upstream's hostpath checkType): create for *OrCreate, else the
    path must exist and be of the type. The host path."""
    path = src.get("path") or ""
    htype = src.get("type") or ""
    if not path.startswith("/"):
        raise VolumeError(f"hostPath {path!r} is not absolute")
    p = Path(path)
    if htype == "DirectoryOrCreate":
        if not p.exists():
            p.mkdir(parents=True, mode=0o755)
        htype = "Directory"
    elif htype == "FileOrCreate":
        if not p.exists():
            if not p.parent.is_dir():
                raise VolumeError(f"hostPath type check failed: {path} parent is not a "
                                  f"directory")
            p.touch(mode=0o644)
        htype = "File"
    if htype in _HOSTPATH_CHECKS:
        check, what = _HOSTPATH_CHECKS[htype]
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise VolumeError(f"hostPath type check failed: {path} is not {what}") from None
        if not check(st.st_mode):
            raise VolumeError(f"hostPath type check failed: {path} is not {what}")
    elif htype:
        raise VolumeError(f"hostPath type {htype!r} is not supported")
    return path



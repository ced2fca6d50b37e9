"""Static pods from a manifest directory (upstream's `--pod-manifest-path`, the kubelet's
file config source) and the mirror pods that show them in the API.

Each file (dotfiles are skipped) holds Pods in YAML or JSON (several YAML documents are
fine). A static pod is the manifest with upstream's defaults (pkg/kubelet/config/common.go
applyDefaults): name `<name>-<nodeName>`, namespace `default` if unset, uid the md5 of the
manifest plus `host:<node>` and `file:<path>` (a changed manifest is a new pod), nodeName
set, the `kubernetes.io/config.hash` (the uid), `config.source: file` and `config.seen`
annotations, and a NoExecute `Exists` toleration. The kubelet runs it itself; the mirror
pod is a copy in the API with `kubernetes.io/config.mirror: <hash>` and the Node as its
controlling owner."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("pyk8s.kubelet.staticpods")

Obj = dict[str, Any]

CONFIG_HASH = "kubernetes.io/config.hash"
CONFIG_SOURCE = "kubernetes.io/config.source"
CONFIG_SEEN = "kubernetes.io/config.seen"
CONFIG_MIRROR = "kubernetes.io/config.mirror"
FILE_SOURCE = "file"
FILE_CHECK_FREQUENCY = 20.0


class ManifestError(ValueError):
    pass


def parse_manifest(text: str, source: str = "") -> list[Obj]:
    """The Pods of one manifest file (JSON, or YAML with one or more documents)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ManifestError(f"{source}: not YAML or JSON: {e}") from None
    pods = []
    for d in docs:
        if not isinstance(d, dict):
            raise ManifestError(f"{source}: not an object")
        if d.get("kind", "Pod") != "Pod" or d.get("apiVersion", "v1") != "v1":
            raise ManifestError(f"{source}: {d.get('apiVersion')}/{d.get('kind')} is not a "
                                f"v1 Pod")
        md = d.get("metadata") or {}
        if not md.get("name"):
            raise ManifestError(f"{source}: the pod has no metadata.name")
        if not ((d.get("spec") or {}).get("containers")):
            raise ManifestError(f"{source}: the pod has no containers")
        pods.append(d)
    return pods


def pod_hash(manifest: Obj, node_name: str, source: str) -> str:
    """Upstream hashes the decoded pod, then `host:<node>` and `file:<path>` (md5, hex)."""
    h = hashlib.md5(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    h.update(f"host:{node_name}".encode())
    h.update(f"file:{source}".encode())
    return h.hexdigest()


def static_pod(manifest: Obj, node_name: str, source: str, seen: str = "") -> Obj:
    """The pod the kubelet runs for one manifest (upstream's applyDefaults)."""
    pod = copy.deepcopy(manifest)
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    md = pod.setdefault("metadata", {})
    uid = md.get("uid") or pod_hash(manifest, node_name, source)
    md["uid"] = uid
    md["name"] = f"{md['name']}-{node_name.lower()}"
    md["namespace"] = md.get("namespace") or "default"
    spec = pod.setdefault("spec", {})
    spec["nodeName"] = node_name
    ann = md.setdefault("annotations", {})
    ann[CONFIG_HASH] = uid
    ann[CONFIG_SOURCE] = FILE_SOURCE
    ann[CONFIG_SEEN] = seen or datetime.now(timezone.utc).isoformat(timespec="microseconds")
    tol = {"operator": "Exists", "effect": "NoExecute"}
    tols = spec.setdefault("tolerations", [])
    if tol not in tols:
        tols.append(tol)
    pod["status"] = {"phase": "Pending"}
    return pod


def is_mirror_pod(pod: Obj | None) -> bool:
    return bool(pod) and CONFIG_MIRROR in (((pod or {}).get("metadata") or {})
                                           .get("annotations") or {})


def is_static_pod(pod: Obj) -> bool:
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    return ann.get(CONFIG_SOURCE, "api") != "api" and not is_mirror_pod(pod)


def is_mirror_of(mirror: Obj, static: Obj) -> bool:
    """Upstream's IsMirrorPodOf: same name and namespace, hash as the static pod's."""
    mm, sm = mirror.get("metadata") or {}, static.get("metadata") or {}
    return (mm.get("name") == sm.get("name") and mm.get("namespace") == sm.get("namespace")
            and (mm.get("annotations") or {}).get(CONFIG_MIRROR)
            == (sm.get("annotations") or {}).get(CONFIG_HASH))


def mirror_pod(static: Obj, node_name: str, node_uid: str) -> Obj:
    """The mirror pod to create for a static pod (upstream's CreateMirrorPod)."""
    pod = copy.deepcopy(static)
    md = pod["metadata"]
    for k in ("uid", "resourceVersion", "creationTimestamp", "generation"):
        md.pop(k, None)
    md.setdefault("annotations", {})[CONFIG_MIRROR] = md["annotations"][CONFIG_HASH]
    md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                              "uid": node_uid, "controller": True}]
    pod.pop("status", None)
    return pod


class FileSource:
    """The manifests of one directory, re-read by `scan()`: static pods by `ns/name`."""

    def __init__(self, path: str | os.PathLike[str], node_name: str) -> None:
        self.path = Path(path)
        self.node_name = node_name
        self._seen: dict[str, str] = {}   # uid -> config.seen (kept while the pod lasts)
        self._errors: dict[str, str] = {}

    def scan(self) -> dict[str, Obj]:
        out: dict[str, Obj] = {}
        files: list[Path] = []
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir()
                           if p.is_file() and not p.name.startswith("."))
        elif self.path.is_file():
            files = [self.path]
        seen: dict[str, str] = {}
        for f in files:
            try:
                manifests = parse_manifest(f.read_text(), str(f))
            except (OSError, UnicodeDecodeError, ManifestError) as e:
                msg = str(e)
                if self._errors.get(str(f)) != msg:   # one log line per new error
                    log.warning("static pod manifest %s", msg)
                self._errors[str(f)] = msg
                continue
            self._errors.pop(str(f), None)
            for m in manifests:
                uid = (m.get("metadata") or {}).get("uid") or pod_hash(
                    m, self.node_name, str(f))
                pod = static_pod(m, self.node_name, str(f), self._seen.get(uid, ""))
                seen[uid] = pod["metadata"]["annotations"][CONFIG_SEEN]
                key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
                if key in out:
                    log.warning("static pod %s defined twice; %s ignored", key, f)
                    continue
                out[key] = pod
        self._seen = seen
        return out

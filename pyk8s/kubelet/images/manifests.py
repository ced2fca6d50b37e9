"""OCI / Docker manifest media types and platform selection in an index."""
from __future__ import annotations

import platform as _platform
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
# The manifest Accept header: all four, or a registry answers an OCI manifest with 404.
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
LAYER_TYPES = (
    OCI_LAYER_TAR,
    OCI_LAYER_GZIP,
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> tuple[str, str, str]:
    """(os, architecture, variant) of this node, in OCI's words."""
    machine = _platform.machine().lower()
    arch = _ARCH.get(machine, machine)
    return "linux", arch, "v7" if arch == "arm" else ""


def media_type(doc: dict[str, Any], content_type: str = "") -> str:
    """A manifest's media type: its `mediaType`, else the Content-Type, else by shape."""
    media = doc.get("mediaType") or content_type
    if media in (*INDEX_TYPES, *MANIFEST_TYPES, *DOCKER_SCHEMA1):
        return str(media)
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1[1]
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def select_platform(index: dict[str, Any], platform: tuple[str, str, str]
                    ) -> dict[str, Any] | None:
    """The index entry for `platform` (os, architecture, variant): the exact variant
    first, then a variant-less entry, then any variant; None when nothing matches."""
    want_os, want_arch, want_variant = platform
    best: tuple[int, dict[str, Any]] | None = None
    for d in index.get("manifests") or []:
        if not isinstance(d, dict) or d.get("mediaType") not in (
                *MANIFEST_TYPES, *INDEX_TYPES, None):
            continue
        p = d.get("platform") or {}
        if p.get("os") != want_os or p.get("architecture") != want_arch:
            continue
        variant = p.get("variant", "") or ""
        rank = 0 if variant == want_variant else 1 if not variant else 2
        if best is None or rank < best[0]:
            best = (rank, d)
    return None if best is None else best[1]

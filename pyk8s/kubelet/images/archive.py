"""Importing images from files: OCI image layouts (a directory, or a tar of one as
`skopeo copy … oci-archive:FILE:TAG` writes: `oci-layout`, `index.json`, `blobs/sha256/…`)
and `docker save` archives (`manifest.json` with RepoTags).

An image's name comes from its index entry's `io.containerd.image.name`, else
`org.opencontainers.image.ref.name` when that is a full reference, unless `name` is given.
A ref.name that is only a tag (`latest`, `v1`: what `skopeo copy … oci:DIR:TAG` writes)
names no repository, so such an image is imported untagged (by its id) unless `name` is
given, as containerd does without a base name.
"""
from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tarfile
from pathlib import Path
from typing import Any

import orjson

from pyk8s.kubelet.images.errors import ImageError
from pyk8s.kubelet.images.manifests import (CONTAINERD_NAME, INDEX_TYPES, OCI_CONFIG,
                                            OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST,
                                            REF_NAME, host_platform, media_type,
                                            select_platform)
from pyk8s.kubelet.images.reference import Reference, parse_reference
from pyk8s.kubelet.images.store import CHUNK, ImageRecord, ImageStore, sha256_hex

log = logging.getLogger(__name__)


class ImageImportError(ImageError):
    reason = "ImportFailed"


def _name_ref(name: str) -> Reference | None:
    try:
        return parse_reference(name)
    except ValueError:
        log.warning("image name %r is not a valid reference: imported untagged", name)
        return None


def _tag_only(name: str) -> bool:
    """An OCI ref.name that is just a tag: no registry, repository or digest."""
    return not any(c in name for c in "/:@")


def _extract(archive: Path, dest: Path) -> None:
    """Regular files and directories of `archive` (any compression tarfile knows) into
    `dest`; names leaving `dest` are refused."""
    try:
        tf = tarfile.open(archive, mode="r|*", bufsize=CHUNK)
    except (tarfile.TarError, OSError) as e:
        raise ImageImportError(f"{archive}: not a tar archive: {e}") from None
    with tf:
        try:
            for m in tf:
                rel = posixpath.normpath(m.name.lstrip("/"))
                if rel in ("", ".") or rel == ".." or rel.startswith("../"):
                    continue
                path = dest / rel
                if m.isdir():
                    path.mkdir(parents=True, exist_ok=True)
                elif m.isreg():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(m)
                    with open(path, "wb") as out:
                        if src is not None:
                            shutil.copyfileobj(src, out, CHUNK)
        except (tarfile.TarError, EOFError) as e:
            raise ImageImportError(f"{archive}: corrupt archive: {e}") from None


class _Layout:
    """Reads blobs of an OCI layout directory and moves them into the store."""

    def __init__(self, store: ImageStore, root: Path, move: bool) -> None:
        self.store, self.root, self.move = store, root, move

    def ingest(self, digest: str) -> None:
        if self.store.has_blob(digest):
            return
        path = self.root / "blobs" / "sha256" / sha256_hex(digest)
        if not path.is_file():
            raise ImageImportError(f"blob {digest} is missing from the image layout")
        self.store.ingest_file(path, expected=digest, move=self.move)

    def doc(self, digest: str) -> dict[str, Any]:
        self.ingest(digest)
        try:
            d = orjson.loads(self.store.read_blob(digest))
        except ValueError:
            raise ImageImportError(f"blob {digest}: invalid JSON") from None
        if not isinstance(d, dict):
            raise ImageImportError(f"blob {digest}: not a JSON object")
        return d


def _commit(store: ImageStore, *, config_digest: str, manifest_digest: str,
            manifests: list[str], layers: list[str], ref: Reference | None,
            repo_digest: bool = True) -> ImageRecord:
    for d in layers:
        store.unpack(d)
    cfg = orjson.loads(store.read_blob(config_digest))
    tags = [ref.normalized()] if ref is not None and ref.tag and not ref.digest else []
    digests = [ref.with_digest(manifest_digest)] if ref is not None and repo_digest else []
    return store.add_image(config_digest=config_digest, manifest_digest=manifest_digest,
                           manifests=manifests, layers=layers,
                           config=dict(cfg.get("config") or {}), repo_tags=tags,
                           repo_digests=digests,
                           architecture=str(cfg.get("architecture") or ""),
                           os_name=str(cfg.get("os") or ""))


def import_layout(store: ImageStore, layout: str | os.PathLike[str], name: str | None = None,
                  move: bool = False) -> list[ImageRecord]:
    """Import every image named in an OCI layout directory's index.json (unnamed entries
    too when there is only one, or when `name` is given)."""
    root = Path(layout)
    try:
        index = orjson.loads((root / "index.json").read_bytes())
    except (OSError, ValueError) as e:
        raise ImageImportError(f"{root}: no OCI image layout (index.json: {e})") from None
    lay = _Layout(store, root, move)
    entries = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
    if name is not None and len(entries) != 1:
        named = [d for d in entries if (d.get("annotations") or {}).get(REF_NAME)]
        if len(named) != 1:
            raise ImageImportError(f"{root}: {len(entries)} images in the layout; a name can "
                               f"be given to one only")
        entries = named
    records = []
    for desc in entries:
        ann = desc.get("annotations") or {}
        ref_name = name or ann.get(CONTAINERD_NAME) or ann.get(REF_NAME) or ""
        if ref_name and ref_name == ann.get(REF_NAME) and not name and _tag_only(ref_name):
            log.warning("%s: the image is named only %r (a tag): imported untagged; name "
                        "it with --name REPOSITORY[:TAG]", root, ref_name)
            ref_name = ""
        ref = _name_ref(ref_name) if ref_name else None
        top = str(desc.get("digest") or "")
        doc = lay.doc(top)
        manifests = [top]
        depth = 0
        while media_type(doc, str(desc.get("mediaType") or "")) in INDEX_TYPES:
            depth += 1
            chosen = select_platform(doc, host_platform())
            if chosen is None or depth > 3:
                raise ImageImportError(f"{ref_name or top}: no image for this platform "
                                   f"({'/'.join(p for p in host_platform() if p)})")
            desc = chosen
            doc = lay.doc(str(chosen["digest"]))
            manifests.append(str(chosen["digest"]))
        cfg_digest = str((doc.get("config") or {}).get("digest") or "")
        layers = [str(d["digest"]) for d in doc.get("layers") or []]
        for d in (cfg_digest, *layers):
            lay.ingest(d)
        records.append(_commit(store, config_digest=cfg_digest, manifest_digest=top,
                               manifests=manifests, layers=layers, ref=ref))
    return records


def _import_docker_save(store: ImageStore, root: Path, name: str | None
                        ) -> list[ImageRecord]:
    try:
        items = orjson.loads((root / "manifest.json").read_bytes())
    except (OSError, ValueError) as e:
        raise ImageImportError(f"manifest.json: {e}") from None
    if name is not None and len(items) != 1:
        raise ImageImportError(f"{len(items)} images in the archive; a name can be given to "
                           f"one only")
    records = []
    for item in items:
        cfg_digest = store.ingest_file(root / item["Config"], move=True)
        layer_descs = []
        for rel in item.get("Layers") or []:
            path = root / rel
            with open(path, "rb") as f:
                gz = f.read(2) == b"\x1f\x8b"
            size = path.stat().st_size
            digest = store.ingest_file(path, move=True)
            layer_descs.append({"mediaType": OCI_LAYER_GZIP if gz else OCI_LAYER_TAR,
                                "digest": digest, "size": size})
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest,
                               "size": store.blob_size(cfg_digest)},
                    "layers": layer_descs}
        mdigest = store.write_blob(orjson.dumps(manifest))
        tags = [name] if name else list(item.get("RepoTags") or [])
        refs = [r for r in (_name_ref(t) for t in tags) if r is not None] or [None]
        layers = [d["digest"] for d in layer_descs]
        for ref in refs:
            # docker save images come from no registry: no repo digest to show
            rec = _commit(store, config_digest=cfg_digest, manifest_digest=mdigest,
                          manifests=[mdigest], layers=layers, ref=ref, repo_digest=False)
        records.append(rec)
    return records


def import_archive(store: ImageStore, path: str | os.PathLike[str], name: str | None = None
                   ) -> list[ImageRecord]:
    """Import the images of an OCI layout (directory or tar) or a `docker save` archive.
    `name` (a reference) names the one image in it instead of its annotation / RepoTags.
    Returns the records."""
    p = Path(path)
    if p.is_dir():
        return import_layout(store, p, name)
    if not p.is_file():
        raise ImageImportError(f"{p}: no such file")
    tmp = store.tmp_path("import-")
    tmp.mkdir()
    try:
        _extract(p, tmp)
        if (tmp / "index.json").is_file() and (tmp / "oci-layout").is_file():
            return import_layout(store, tmp, name, move=True)
        if (tmp / "manifest.json").is_file():
            return _import_docker_save(store, tmp, name)
        raise ImageImportError(f"{p}: neither an OCI image layout nor a docker save archive")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

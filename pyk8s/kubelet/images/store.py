"""The node's image store: content-addressed blobs, unpacked layers and an index of images,
shared by the agent and `pyk8s image` (several processes) through the filesystem:

    root/blobs/sha256/<hex>          manifests, indexes, configs, compressed layers
    root/layers/sha256/<hex>/        a layer unpacked (named by its compressed digest),
                                     whiteouts in overlayfs form; shared by images
    root/images/<config hex>.json    one ImageRecord per image (its tags and digests)
    root/tmp/                        downloads and unpacks in progress (same filesystem)
    root/lock                        flock(2) held while the index changes

Everything is written to tmp/ and renamed into place, so readers never see half a file;
`get()` / `list()` read the index from disk (a cache keyed by each file's inode and mtime),
so an image imported by another process is seen at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from pyk8s.kubelet.images.errors import ContentMissing, DigestMismatch, ImageError
from pyk8s.kubelet.images.layers import unpack_layer
from pyk8s.kubelet.images.reference import parse_reference

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TMP_MAX_AGE = 3600.0


def sha256_hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef"
                                                     for c in hexpart):
        raise ImageError(f"unsupported or invalid digest {digest!r}")
    return hexpart


@dataclass
class ImageRecord:
    """One image of the store. Records returned by get() / list() are shared with the
    store's cache: treat them as read-only."""
    id: str                                  # config digest, sha256:…
    manifest_digest: str                     # digest pulled / imported (index or manifest)
    repo_tags: list[str] = field(default_factory=list)      # docker.io/library/x:latest
    repo_digests: list[str] = field(default_factory=list)   # docker.io/library/x@sha256:…
    config: dict[str, Any] = field(default_factory=dict)    # the image config's `config`
    layers: list[str] = field(default_factory=list)         # compressed digests, bottom → top
    size: int = 0                                           # bytes of its blobs
    last_used: float = 0.0
    manifests: list[str] = field(default_factory=list)      # every manifest / index blob
    architecture: str = ""
    os: str = ""

    @property
    def image_ref(self) -> str:
        """What Kubernetes shows as a container's imageID: `<repo>@<digest>` (else the
        id)."""
        return self.repo_digests[0] if self.repo_digests else self.id

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> "ImageRecord":
        d = orjson.loads(data)
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


class BlobWriter:
    """Streams one blob into tmp/ while hashing; `commit()` verifies the digest and renames
    it into blobs/ (a mismatch discards it and raises DigestMismatch)."""

    def __init__(self, store: "ImageStore", expected: str | None = None) -> None:
        self.store = store
        self.expected = expected
        self.hash = hashlib.sha256()
        self.size = 0
        self.tmp = store.tmp_path("blob-")
        self.f = open(self.tmp, "wb")

    def write(self, data: bytes) -> None:
        self.hash.update(data)
        self.f.write(data)
        self.size += len(data)

    def commit(self) -> str:
        self.f.close()
        digest = "sha256:" + self.hash.hexdigest()
        if self.expected is not None and digest != self.expected:
            self.abort()
            raise DigestMismatch(self.expected, digest)
        final = self.store.blob_path(digest)
        os.rename(self.tmp, final)   # replaces an identical blob written meanwhile
        return digest

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.f.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:
            self.abort()


class ImageStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.layers_dir = self.root / "layers" / "sha256"
        self.images_dir = self.root / "images"
        self.tmp_dir = self.root / "tmp"
        for d in (self.blobs_dir, self.layers_dir, self.images_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "lock"
        self._cache: dict[str, tuple[tuple[int, int, int], ImageRecord]] = {}
        self._unpack_locks: dict[str, threading.Lock] = {}
        self._unpack_guard = threading.Lock()
        self._clean_tmp()

    # -- paths and blobs -------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs_dir / sha256_hex(digest)

    def layer_dir(self, digest: str) -> Path:
        return self.layers_dir / sha256_hex(digest)

    def tmp_path(self, prefix: str) -> Path:
        return self.tmp_dir / f"{prefix}{secrets.token_hex(8)}"

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def blob_size(self, digest: str) -> int:
        return self.blob_path(digest).stat().st_size

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def blob_writer(self, expected: str | None = None) -> BlobWriter:
        return BlobWriter(self, expected)

    def write_blob(self, data: bytes, expected: str | None = None) -> str:
        """Store `data` (verified against `expected`); returns its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if expected is not None and digest != expected:
            raise DigestMismatch(expected, digest)
        if not self.has_blob(digest):
            with self.blob_writer(digest) as w:
                w.write(data)
                w.commit()
        return digest

    def ingest_file(self, path: str | os.PathLike[str], expected: str | None = None,
                    move: bool = False) -> str:
        """Hash the file at `path` and store it as a blob (renamed when `move` and on the
        same filesystem, else copied)."""
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        digest = "sha256:" + h.hexdigest()
        if expected is not None and digest != expected:
            raise DigestMismatch(expected, digest)
        if self.has_blob(digest):
            return digest
        if move:
            try:
                os.rename(path, self.blob_path(digest))
                return digest
            except OSError:
                pass
        tmp = self.tmp_path("blob-")
        shutil.copyfile(path, tmp)
        os.rename(tmp, self.blob_path(digest))
        return digest

    # -- layers ----------------------------------------------------------------------------
    def has_layer(self, digest: str) -> bool:
        return self.layer_dir(digest).is_dir()

    def unpack(self, digest: str) -> Path:
        """The layer unpacked (once: into tmp/, then renamed). Blocking: run it in a
        thread from async code."""
        dest = self.layer_dir(digest)
        if dest.is_dir():
            return dest
        with self._unpack_guard:
            lock = self._unpack_locks.setdefault(digest, threading.Lock())
        with lock:
            if dest.is_dir():
                return dest
            tmp = self.tmp_path("layer-")
            try:
                unpack_layer(self.blob_path(digest), tmp)
                try:
                    os.rename(tmp, dest)
                except OSError:
                    if not dest.is_dir():   # not another process that won the race
                        raise
            finally:
                if tmp.exists():
                    self._rmtree(tmp)
        return dest

    def layer_dirs(self, record: ImageRecord) -> list[Path]:
        """The record's unpacked layer directories, bottom → top."""
        return [self.layer_dir(d) for d in record.layers]

    # -- the index -------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _record_path(self, image_id: str) -> Path:
        return self.images_dir / f"{sha256_hex(image_id)}.json"

    def _write_record(self, rec: ImageRecord) -> None:
        tmp = self.tmp_path("image-")
        tmp.write_bytes(rec.to_json())
        os.rename(tmp, self._record_path(rec.id))

    def _read_record_file(self, path: Path) -> ImageRecord | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        hit = self._cache.get(path.name)
        if hit is not None and hit[0] == key:
            return hit[1]
        try:
            rec = ImageRecord.from_json(path.read_bytes())
        except (OSError, ValueError, TypeError):
            return None
        self._cache[path.name] = (key, rec)
        return rec

    def list(self) -> list[ImageRecord]:
        """Every image, read from disk (cached per file by inode / mtime / size)."""
        out = []
        names = set()
        try:
            entries = os.listdir(self.images_dir)
        except FileNotFoundError:
            entries = []
        for name in entries:
            if not name.endswith(".json"):
                continue
            names.add(name)
            rec = self._read_record_file(self.images_dir / name)
            if rec is not None:
                out.append(rec)
        for gone in set(self._cache) - names:
            self._cache.pop(gone, None)
        out.sort(key=lambda r: (r.repo_tags[:1] or r.repo_digests[:1] or [r.id], r.id))
        return out

    @staticmethod
    def _match(ref: str, records: list[ImageRecord]) -> ImageRecord | None:
        ref = ref.strip()
        if not ref:
            return None
        try:
            r = parse_reference(ref)
        except ValueError:
            r = None
        if r is not None:
            if r.digest:
                want = r.with_digest(r.digest)
                for rec in records:
                    if want in rec.repo_digests:
                        return rec
            else:
                want = r.normalized()
                for rec in records:
                    if want in rec.repo_tags:
                        return rec
        # an id, or a unique prefix of one (`sha256:` optional)
        hexpart = ref[len("sha256:"):] if ref.startswith("sha256:") else ref
        if hexpart and all(c in "0123456789abcdef" for c in hexpart) and len(hexpart) <= 64:
            found = [rec for rec in records if rec.id[len("sha256:"):].startswith(hexpart)]
            if len(found) == 1:
                return found[0]
        return None

    def get(self, ref: str) -> ImageRecord | None:
        """The image `ref` names: a tag (normalized: `busybox` = docker.io/library/busybox:
        latest), a repo digest (`name@sha256:…`), an id (`sha256:…`) or a unique id
        prefix."""
        return self._match(ref, self.list())

    def add_image(self, *, config_digest: str, manifest_digest: str, manifests: list[str],
                  layers: list[str], config: dict[str, Any], repo_tags: list[str] = (),
                  repo_digests: list[str] = (), architecture: str = "",
                  os_name: str = "") -> ImageRecord:
        """Record an image whose blobs and unpacked layers are in the store; `repo_tags`
        move to it from any other image."""
        wanted_blobs = [config_digest, *manifests, *layers]
        with self.locked():
            missing = [d for d in wanted_blobs if not self.has_blob(d)]
            missing += [d for d in layers if not self.has_layer(d)]
            if missing:
                raise ContentMissing(f"image content missing from the store (removed "
                                     f"meanwhile?): {', '.join(missing[:3])}")
            size = sum(self.blob_size(d) for d in dict.fromkeys(wanted_blobs))
            records = self.list()
            old = next((r for r in records if r.id == config_digest), None)
            now = time.time()
            if old is None:
                rec = ImageRecord(id=config_digest, manifest_digest=manifest_digest,
                                  config=config, layers=list(layers), size=size,
                                  last_used=now, manifests=list(dict.fromkeys(manifests)),
                                  architecture=architecture, os=os_name)
            else:
                rec = ImageRecord(**asdict(old))
                rec.manifest_digest = manifest_digest
                rec.manifests = list(dict.fromkeys([*old.manifests, *manifests]))
                rec.size = sum(self.blob_size(d) for d in
                               dict.fromkeys([config_digest, *rec.manifests, *rec.layers])
                               if self.has_blob(d))
                rec.last_used = now
            for t in repo_tags:
                if t not in rec.repo_tags:
                    rec.repo_tags.append(t)
            for d in repo_digests:
                if d not in rec.repo_digests:
                    rec.repo_digests.insert(0, d)
            for other in records:
                if other.id == rec.id:
                    continue
                moved = [t for t in other.repo_tags if t in repo_tags]
                if moved:
                    o = ImageRecord(**asdict(other))
                    o.repo_tags = [t for t in other.repo_tags if t not in moved]
                    self._write_record(o)
            self._write_record(rec)
            return rec

    def touch(self, image_id: str) -> None:
        """Mark the image used now (image GC removes the least recently used first)."""
        with self.locked():
            rec = self._read_record_file(self._record_path(image_id))
            if rec is None:
                return
            rec = ImageRecord(**asdict(rec))
            rec.last_used = time.time()
            self._write_record(rec)

    def remove(self, ref: str) -> ImageRecord | None:
        """Delete the image (`ref` as for get(): id, tag or digest) and its blobs and
        layers no other image uses. Returns the removed record (None: no such image)."""
        with self.locked():
            records = self.list()
            rec = self._match(ref, records)
            if rec is None:
                return None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._record_path(rec.id))
            self._cache.pop(self._record_path(rec.id).name, None)
            others = [r for r in records if r.id != rec.id]
            used = {d for r in others for d in (r.id, *r.manifests, *r.layers)}
            for d in dict.fromkeys([rec.id, *rec.manifests, *rec.layers]):
                if d in used:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.blob_path(d))
                ldir = self.layer_dir(d)
                if ldir.exists():
                    trash = self.tmp_path("rm-")
                    try:
                        os.rename(ldir, trash)
                    except OSError:
                        continue
                    self._rmtree(trash)
            return rec

    def import_archive(self, path: str | os.PathLike[str], name: str | None = None
                       ) -> list[ImageRecord]:
        """archive.import_archive: an OCI layout (dir or tar) or a docker save archive."""
        from pyk8s.kubelet.images.archive import import_archive
        return import_archive(self, path, name)

    # -- garbage collection ----------------------------------------------------------------
    def disk_usage(self) -> tuple[int, int]:
        """(capacity, available) bytes of the filesystem holding the store."""
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def gc(self, in_use: set[str], high_percent: int = 85, low_percent: int = 80,
           min_age: float = 120.0, usage: Callable[[], tuple[int, int]] | None = None,
           now: float | None = None) -> tuple[list[str], int]:
        """Upstream kubelet's image GC: when the store's filesystem is at or above
        `high_percent` used, remove images not in use (`in_use`: ids or references)
        and unused for at least `min_age` seconds, least recently used first, until
        usage is back under `low_percent`. `usage()` returns (capacity, available) bytes
        (default: statvfs of the store). Returns (ids removed, bytes freed)."""
        capacity, available = (usage or self.disk_usage)()
        if capacity <= 0:
            return [], 0
        usage_percent = 100 - int(available * 100 / capacity)
        if usage_percent < high_percent:
            return [], 0
        to_free = capacity * (100 - low_percent) // 100 - available
        if to_free <= 0:
            return [], 0
        records = self.list()
        busy = set()
        for s in in_use:
            r = self._match(s, records)
            if r is not None:
                busy.add(r.id)
        now = time.time() if now is None else now
        removed: list[str] = []
        freed = 0
        for rec in sorted(records, key=lambda r: (r.last_used, r.id)):
            if rec.id in busy or now - rec.last_used < min_age:
                continue
            gone = self.remove(rec.id)
            if gone is None:
                continue
            log.info("image GC: removed %s (%s), %d bytes", rec.id,
                     ", ".join(rec.repo_tags) or "untagged", rec.size)
            removed.append(rec.id)
            freed += rec.size
            if freed >= to_free:
                break
        return removed, freed

    # -- housekeeping ----------------------------------------------------------------------
    @staticmethod
    def _rmtree(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def _clean_tmp(self) -> None:
        """Drop what crashed writers left in tmp/ (older than an hour: another process
        may be writing there right now)."""
        cutoff = time.time() - TMP_MAX_AGE
        try:
            entries = list(os.scandir(self.tmp_dir))
        except OSError:
            return
        for e in entries:
            try:
                if e.stat(follow_symlinks=False).st_mtime < cutoff:
                    if e.is_dir(follow_symlinks=False):
                        self._rmtree(Path(e.path))
                    else:
                        os.unlink(e.path)
            except OSError:
                pass

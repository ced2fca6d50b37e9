"""Unpacking one image layer (a tar, plain / gzip / zstd) into its own directory, streamed,
with the OCI whiteouts turned into overlayfs' form so the layer directories stack as an
overlay mount's lower dirs:

- `.wh.<name>` → a character device 0:0 named `<name>` (deletes it from lower layers);
- `.wh..wh..opq` → the xattr `trusted.overlay.opaque=y` on its directory.

Modes, owners, mtimes, symlinks, hard links (inside the layer), device nodes (as root) and
`SCHILY.xattr.*` extended attributes are kept. Entries that would land outside the layer
directory (`..`, through a symlink) are refused with LayerError.
"""
from __future__ import annotations

import gzip
import os
import posixpath
import shutil
import stat
import subprocess
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any

from pyk8s.kubelet.images.errors import LayerError

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
CHUNK = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _is_root() -> bool:
    return os.geteuid() == 0


class _ZstdStream:
    """A zstd-decompressing reader: the `zstandard` module when installed, else the
    `zstd` program (a pipe). Raises LayerError when neither is there."""

    def __init__(self, f: IO[bytes]) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            import zstandard  # type: ignore[import-not-found]
            self.reader: Any = zstandard.ZstdDecompressor().stream_reader(f)
            return
        except ImportError:
            pass
        exe = shutil.which("zstd")
        if exe is None:
            raise LayerError("zstd-compressed layer: neither the zstandard module nor the "
                             "zstd program is installed")
        os.lseek(f.fileno(), f.tell(), os.SEEK_SET)   # the buffered reader read ahead
        self.proc = subprocess.Popen([exe, "-dc", "-q"], stdin=f.fileno(),
                                     stdout=subprocess.PIPE)
        self.reader = self.proc.stdout

    def read(self, n: int = -1) -> bytes:
        return bytes(self.reader.read(n))

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            if self.proc is not None:
                self.proc.kill()
                rc = self.proc.wait()
                if rc not in (0, -9):
                    raise LayerError(f"zstd exited with {rc}")


def open_decompressed(f: IO[bytes]) -> Any:
    """A reader of `f`'s uncompressed bytes, by its magic (gzip, zstd, else plain)."""
    head = f.read(4)
    f.seek(0)
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=f, mode="rb")
    if head == _ZSTD_MAGIC:
        return _ZstdStream(f)
    return f


def _clean_name(name: str) -> str:
    """The member's path relative to the layer root; "" is the root; LayerError if it
    would leave it."""
    n = name.lstrip("/")
    n = posixpath.normpath(n) if n else "."
    if n == ".":
        return ""
    if n == ".." or n.startswith("../"):
        raise LayerError(f"layer entry {name!r}: path escapes the layer (path traversal)")
    return n


class _Unpacker:
    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.root = str(dest)
        self.is_root = _is_root()
        self.safe_dirs: set[str] = {""}
        self.dir_times: list[tuple[str, float]] = []

    # -- paths -----------------------------------------------------------------------------
    def _check_parent(self, rel: str, name: str) -> str:
        """The absolute path of `rel`, its parent directories created (0755, root) and
        checked to resolve inside the layer."""
        parent = posixpath.dirname(rel)
        if parent not in self.safe_dirs:
            ppath = os.path.join(self.root, parent)
            real = os.path.realpath(ppath)
            if real != self.root and not real.startswith(self.root + os.sep):
                raise LayerError(f"layer entry {name!r}: path escapes the layer through a "
                                 f"symlink")
            if not os.path.isdir(ppath):
                try:
                    os.makedirs(ppath, 0o755, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise LayerError(f"layer entry {name!r}: a parent is not a directory") \
                        from None
                real = os.path.realpath(ppath)
                if real != self.root and not real.startswith(self.root + os.sep):
                    raise LayerError(f"layer entry {name!r}: path escapes the layer")
            self.safe_dirs.add(parent)
        return os.path.join(self.root, rel)

    def _clear(self, path: str, keep_dir: bool) -> None:
        """Remove what is at `path` (a later entry replaces an earlier one), except a
        directory when the new entry is a directory too."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(path)
            self.safe_dirs = {""}
        else:
            os.unlink(path)

    # -- metadata --------------------------------------------------------------------------
    def _meta(self, path: str, m: tarfile.TarInfo, is_link: bool = False) -> None:
        if self.is_root:
            try:
                os.lchown(path, m.uid, m.gid)
            except OSError:
                pass
            for k, v in (m.pax_headers or {}).items():
                if k.startswith("SCHILY.xattr."):
                    try:
                        os.setxattr(path, k[len("SCHILY.xattr."):],
                                    v.encode("utf-8", "surrogateescape"),
                                    follow_symlinks=False)
                    except OSError:
                        pass
        if not is_link:
            os.chmod(path, stat.S_IMODE(m.mode))
        try:
            os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)
        except OSError:
            pass

    # -- entries ---------------------------------------------------------------------------
    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        rel = _clean_name(m.name)
        base = posixpath.basename(rel)
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(rel, base, m)
            return
        if rel == "":
            if m.isdir():
                self._meta(self.root, m)
                self.dir_times.append((self.root, m.mtime))
            return
        path = self._check_parent(rel, m.name)
        if m.isdir():
            self._clear(path, keep_dir=True)
            if not os.path.isdir(path):
                os.mkdir(path, 0o700)
            self._meta(path, m)
            self.dir_times.append((path, m.mtime))
            return
        self._clear(path, keep_dir=False)
        if m.isreg():
            src = tf.extractfile(m)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                if src is not None:
                    shutil.copyfileobj(src, out, CHUNK)
            self._meta(path, m)
        elif m.issym():
            os.symlink(m.linkname, path)
            self._meta(path, m, is_link=True)
            self.safe_dirs = {""}   # a symlink may now stand in a cached parent's path
        elif m.islnk():
            target_rel = _clean_name(m.linkname)
            if target_rel == "":
                raise LayerError(f"layer entry {m.name!r}: hard link to the layer root")
            target = self._check_parent(target_rel, m.linkname)
            if not os.path.lexists(target):
                raise LayerError(f"layer entry {m.name!r}: hard link to {m.linkname!r}, "
                                 f"which is not in the layer")
            os.link(target, path, follow_symlinks=False)
        elif m.ischr() or m.isblk():
            if not self.is_root:
                return   # device nodes need root; skipped as rootless unpackers do
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(path, kind | stat.S_IMODE(m.mode), os.makedev(m.devmajor, m.devminor))
            self._meta(path, m)
        elif m.isfifo():
            os.mkfifo(path, stat.S_IMODE(m.mode))
            self._meta(path, m)
        else:
            return   # unknown types (e.g. GNU sparse leftovers) are skipped

    def _whiteout(self, rel: str, base: str, m: tarfile.TarInfo) -> None:
        parent_rel = posixpath.dirname(rel)
        if base == WHITEOUT_OPAQUE:
            self._check_parent(rel, m.name)
            dpath = os.path.join(self.root, parent_rel) if parent_rel else self.root
            if not self.is_root:
                raise LayerError("opaque whiteouts need root (trusted.overlay.* xattrs)")
            os.setxattr(dpath, OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return   # other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content
        name = base[len(WHITEOUT_PREFIX):]
        if not name or name in (".", ".."):
            raise LayerError(f"layer entry {m.name!r}: invalid whiteout")
        target_rel = posixpath.join(parent_rel, name) if parent_rel else name
        path = self._check_parent(target_rel, m.name)
        self._clear(path, keep_dir=False)
        if not self.is_root:
            raise LayerError("whiteouts need root (overlayfs whiteouts are 0:0 devices)")
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        if self.is_root:
            try:
                os.lchown(path, m.uid, m.gid)
            except OSError:
                pass

    def finish(self) -> None:
        for path, mtime in reversed(self.dir_times):
            try:
                os.utime(path, (mtime, mtime), follow_symlinks=False)
            except OSError:
                pass


def unpack_layer(blob: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Unpack the layer file `blob` into the (new, empty or absent) directory `dest`."""
    dest_p = Path(dest)
    dest_p.mkdir(parents=True, exist_ok=True)
    os.chmod(dest_p, 0o755)
    u = _Unpacker(dest_p.resolve())
    try:
        with open(blob, "rb") as raw:
            stream = open_decompressed(raw)
            try:
                try:
                    tf = tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK)
                except tarfile.ReadError as e:
                    raise LayerError(f"layer is not a tar archive: {e}") from None
                with tf:
                    for m in tf:
                        u.entry(tf, m)
            finally:
                if stream is not raw:
                    stream.close()
    except LayerError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise LayerError(f"corrupt layer: {e}") from None
    except OSError as e:
        raise LayerError(f"unpacking layer: {e}") from None
    u.finish()


def layer_diff_id(blob: str | os.PathLike[str]) -> str:
    """sha256 of the layer's uncompressed tar (the config's rootfs.diff_ids entry)."""
    import hashlib
    h = hashlib.sha256()
    with open(blob, "rb") as raw:
        stream = open_decompressed(raw)
        try:
            while True:
                b = stream.read(CHUNK)
                if not b:
                    break
                h.update(b)
        finally:
            if stream is not raw:
                stream.close()
    return "sha256:" + h.hexdigest()

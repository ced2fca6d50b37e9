"""Layer unpacking: whiteouts → overlayfs form, opaque dirs, hard links, symlinks, owners,
devices, compression, and refusal of paths leaving the layer."""
from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from pyk8s.kubelet.images import LayerError
from pyk8s.kubelet.images.layers import OPAQUE_XATTR, layer_diff_id, unpack_layer
from tests.conftest import needs, require
from tests.images import LayerBuilder, sha256

root_only = needs(os.geteuid() != 0, "whiteouts, owners need root")


def tar_bytes(build) -> bytes:   # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        build(tf)
    return buf.getvalue()


def add(tf: tarfile.TarFile, name: str, type_: bytes = tarfile.REGTYPE, data: bytes = b"",
        linkname: str = "", mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.linkname, ti.mtime = type_, mode, uid, gid, \
        linkname, 1600000000
    ti.size = len(data) if type_ == tarfile.REGTYPE else 0
    tf.addfile(ti, io.BytesIO(data) if type_ == tarfile.REGTYPE else None)


def unpack_bytes(tmp: Path, data: bytes, name: str = "layer") -> Path:
    blob = tmp / f"{name}.blob"
    blob.write_bytes(data)
    dest = tmp / name
    unpack_layer(blob, dest)
    return dest


@root_only
def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    lb = LayerBuilder()
    lb.file("etc/keep", "k")
    lb.whiteout("etc/gone")
    lb.whiteout("topgone")
    lb.opaque("var/cache")
    lb.file("var/cache/new", "n")
    data, diff_id = lb.gzipped()
    dest = unpack_bytes(tmp_path, data)
    for p in (dest / "etc" / "gone", dest / "topgone"):
        st = os.lstat(p)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert not list(dest.rglob(".wh.*"))
    assert os.getxattr(dest / "var" / "cache", OPAQUE_XATTR) == b"y"
    assert (dest / "var" / "cache" / "new").read_text() == "n"
    with pytest.raises(OSError):
        os.getxattr(dest / "etc", OPAQUE_XATTR)
    assert layer_diff_id(tmp_path / "layer.blob") == diff_id


@root_only
def test_overlay_mount_applies_whiteouts(tmp_path: Path) -> None:
    """The converted layers really stack: the whiteout hides, the opaque dir hides."""
    lower = LayerBuilder()
    lower.file("a/one", "1")
    lower.file("a/two", "2")
    lower.file("d/old", "o")
    upper = LayerBuilder()
    upper.whiteout("a/one")
    upper.opaque("d")
    upper.file("d/new", "n")
    l1 = unpack_bytes(tmp_path, lower.gzipped()[0], "l1")
    l2 = unpack_bytes(tmp_path, upper.gzipped()[0], "l2")
    merged = tmp_path / "merged"
    merged.mkdir()
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={l2}:{l1}", str(merged)], capture_output=True, text=True)
    require(r.returncode == 0, f"overlay mount unavailable: {r.stderr}")
    try:
        assert sorted(os.listdir(merged / "a")) == ["two"]
        assert sorted(os.listdir(merged / "d")) == ["new"]
    finally:
        subprocess.run(["umount", str(merged)], check=True)


@root_only
def test_metadata_links_devices(tmp_path: Path) -> None:
    def build(tf: tarfile.TarFile) -> None:
        add(tf, "./", tarfile.DIRTYPE, mode=0o755)
        add(tf, "./bin", tarfile.DIRTYPE, mode=0o755)
        add(tf, "./bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1001)
        add(tf, "./bin/tool-link", tarfile.LNKTYPE, linkname="./bin/tool")
        add(tf, "./bin/sh", tarfile.SYMTYPE, linkname="/bin/busybox")
        add(tf, "/abs/file", data=b"abs")             # absolute: inside the layer
        add(tf, "dev", tarfile.DIRTYPE, mode=0o755)
        ti = tarfile.TarInfo("dev/null")
        ti.type, ti.mode, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 0o666, 1, 3
        tf.addfile(ti)
        add(tf, "dev/fifo", tarfile.FIFOTYPE, mode=0o600)
        add(tf, "tmp", tarfile.DIRTYPE, mode=0o1777)
        add(tf, "over", data=b"first")
        add(tf, "over", data=b"second")               # a later entry replaces
        add(tf, "bin/sh2", data=b"x")
        add(tf, "bin/sh2", tarfile.SYMTYPE, linkname="busybox")
    dest = unpack_bytes(tmp_path, tar_bytes(build))
    st = os.stat(dest / "bin" / "tool")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o4755)
    assert st.st_mtime == 1600000000
    assert os.stat(dest / "bin" / "tool-link").st_ino == st.st_ino
    assert os.readlink(dest / "bin" / "sh") == "/bin/busybox"
    assert (dest / "abs" / "file").read_bytes() == b"abs"
    null = os.lstat(dest / "dev" / "null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.lstat(dest / "dev" / "fifo").st_mode)
    assert stat.S_IMODE(os.stat(dest / "tmp").st_mode) == 0o1777
    assert (dest / "over").read_bytes() == b"second"
    assert os.readlink(dest / "bin" / "sh2") == "busybox"
    assert os.stat(dest / "bin").st_mtime == 1600000000


@pytest.mark.parametrize("entries,what", [
    ([("../evil", tarfile.REGTYPE, "")], "path traversal"),
    ([("a/../../evil", tarfile.REGTYPE, "")], "path traversal"),
    ([("link", tarfile.SYMTYPE, "/tmp"), ("link/evil", tarfile.REGTYPE, "")], "symlink"),
    ([("link", tarfile.SYMTYPE, "../../../.."), ("link/evil", tarfile.REGTYPE, "")],
     "symlink"),
    ([("d", tarfile.DIRTYPE, ""), ("d/link", tarfile.SYMTYPE, "/"),
      ("d/link/etc/evil", tarfile.REGTYPE, "")], "symlink"),
    ([("hl", tarfile.LNKTYPE, "../../etc/passwd")], "path traversal"),
    ([("link", tarfile.SYMTYPE, "/etc"), ("hl", tarfile.LNKTYPE, "link/passwd")],
     "symlink"),
    ([("hl", tarfile.LNKTYPE, "missing")], "not in the layer"),
])
def test_refuses_escapes(tmp_path: Path, entries: list[tuple[str, bytes, str]],
                         what: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()

    def build(tf: tarfile.TarFile) -> None:
        for name, type_, link in entries:
            add(tf, name, type_, data=b"evil", linkname=link)
    blob = tmp_path / "evil.tar"
    blob.write_bytes(tar_bytes(build))
    dest = tmp_path / "deep" / "er" / "layer"
    with pytest.raises(LayerError) as ei:
        unpack_layer(blob, dest)
    assert what in str(ei.value)
    assert not (tmp_path / "deep" / "evil").exists()
    assert not (tmp_path / "deep" / "er" / "evil").exists()
    assert not Path("/tmp/evil").exists() and not Path("/etc/evil").exists()


def test_plain_tar_and_corrupt(tmp_path: Path) -> None:
    lb = LayerBuilder()
    lb.file("x/y", "plain")
    raw = lb.raw()
    dest = unpack_bytes(tmp_path, raw, "plain")
    assert (dest / "x" / "y").read_text() == "plain"
    lb2 = LayerBuilder()
    lb2.file("big", os.urandom(4096))
    gz, _ = lb2.gzipped()
    bad = tmp_path / "bad.blob"
    bad.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(LayerError):
        unpack_layer(bad, tmp_path / "bad")
    (tmp_path / "junk.blob").write_bytes(b"not a tar at all" * 10)
    with pytest.raises(LayerError):
        unpack_layer(tmp_path / "junk.blob", tmp_path / "junk")


@needs(shutil.which("zstd") is None, "no zstd program (apt-get install zstd)")
def test_zstd(tmp_path: Path) -> None:
    lb = LayerBuilder()
    lb.file("z/file", "zstd!")
    raw = lb.raw()
    comp = subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True,
                          check=True).stdout
    dest = unpack_bytes(tmp_path, comp, "z")
    assert (dest / "z" / "file").read_text() == "zstd!"
    assert layer_diff_id(tmp_path / "z.blob") == sha256(raw)

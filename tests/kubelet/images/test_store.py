"""The image store: blobs, shared layers, the on-disk index seen by several processes,
removal, and image GC's choice of victims."""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pytest

from pyk8s.kubelet.images import DigestMismatch, ImageRecord, ImageStore, import_archive
from tests.images import (build_busybox_image, layout_config_digest, layout_manifest_digest,
                          write_oci_archive)


def set_last_used(store: ImageStore, image_id: str, t: float) -> None:
    with store.locked():
        rec = ImageRecord(**asdict(store.get(image_id)))  # type: ignore[arg-type]
        rec.last_used = t
        store._write_record(rec)


def test_blobs_verified_atomic(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "s")
    d = store.write_blob(b"hello")
    assert store.read_blob(d) == b"hello"
    with pytest.raises(DigestMismatch):
        store.write_blob(b"other", expected="sha256:" + "0" * 64)
    w = store.blob_writer("sha256:" + "1" * 64)
    w.write(b"data")
    with pytest.raises(DigestMismatch) as ei:
        w.commit()
    assert "unexpected commit digest" in str(ei.value)
    assert not store.has_blob("sha256:" + "1" * 64)
    assert os.listdir(store.tmp_dir) == []


def test_import_layout_and_lookups(tmp_path: Path, busybox_archive: Path,
                                   busybox_layout: Path) -> None:
    store = ImageStore(tmp_path / "s")
    [rec] = import_archive(store, busybox_archive)
    cfg = layout_config_digest(busybox_layout)
    mdigest = layout_manifest_digest(busybox_layout)
    assert rec.id == cfg
    assert rec.manifest_digest == mdigest
    assert rec.repo_tags == ["example.com/test/busybox:v1"]
    assert rec.repo_digests == [f"example.com/test/busybox@{mdigest}"]
    assert rec.config["Cmd"] == ["sh"]
    assert rec.config["Env"][0].startswith("PATH=/usr/local/sbin")
    assert rec.architecture == "amd64" and rec.os == "linux"
    [layer] = store.layer_dirs(rec)
    assert (layer / "bin" / "busybox").stat().st_mode & 0o111
    assert os.readlink(layer / "bin" / "sh") == "busybox"
    assert (layer / "etc" / "passwd").read_text().startswith("root:x:0:0")
    assert oct((layer / "tmp").stat().st_mode & 0o7777) == "0o1777"
    assert rec.size == sum(store.blob_size(d) for d in (rec.id, *rec.manifests, *rec.layers))
    for ref in ("example.com/test/busybox:v1", f"example.com/test/busybox@{mdigest}",
                rec.id, rec.id[7:19], "sha256:" + rec.id[7:15]):
        got = store.get(ref)
        assert got is not None and got.id == rec.id, ref
    assert store.get("example.com/test/busybox:v2") is None
    assert store.get("busybox") is None
    assert store.get("not a ref!") is None
    # importing the same again changes nothing but keeps one record
    import_archive(store, busybox_archive)
    assert [r.id for r in store.list()] == [rec.id]


def test_other_process_sees_changes(tmp_path: Path, busybox_archive: Path) -> None:
    agent = ImageStore(tmp_path / "s")
    assert agent.list() == []
    cli = ImageStore(tmp_path / "s")          # as `pyk8s image import` would
    [rec] = cli.import_archive(busybox_archive)
    assert agent.get("example.com/test/busybox:v1") is not None
    before = agent.get(rec.id).last_used     # type: ignore[union-attr]
    cli.touch(rec.id)
    assert agent.get(rec.id).last_used >= before   # type: ignore[union-attr]
    cli.remove(rec.id)
    assert agent.get(rec.id) is None and agent.list() == []


def test_shared_layers_and_remove(tmp_path: Path) -> None:
    a = build_busybox_image(tmp_path / "a", extra_files={"/a.txt": "a"})
    b = build_busybox_image(tmp_path / "b", extra_files={"/b.txt": "b"})
    store = ImageStore(tmp_path / "s")
    [ra] = import_archive(store, write_oci_archive(a, tmp_path / "a.tar", "img-a:1"))
    [rb] = import_archive(store, write_oci_archive(b, tmp_path / "b.tar", "img-b:1"))
    assert ra.layers[0] == rb.layers[0] and ra.layers[1] != rb.layers[1]
    base = store.layer_dir(ra.layers[0])
    ino = base.stat().st_ino
    assert store.remove("img-a:1") is not None
    assert base.is_dir() and base.stat().st_ino == ino   # shared: kept
    assert not store.layer_dir(ra.layers[1]).exists()
    assert not store.has_blob(ra.layers[1]) and not store.has_blob(ra.id)
    assert store.has_blob(ra.layers[0])
    assert store.remove("img-a:1") is None
    store.remove(rb.id)
    assert not base.exists() and not store.has_blob(rb.layers[0])
    assert os.listdir(store.blobs_dir) == [] and os.listdir(store.layers_dir) == []
    assert os.listdir(store.tmp_dir) == []


def test_tag_moves_and_whiteout_layer(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "s")
    v1 = build_busybox_image(tmp_path / "v1", whiteouts=["/bin/vi"], opaque_dirs=["/var"],
                             extra_files={"/var/www/index.html": "v1"})
    [r1] = import_archive(store, v1, name="app:latest")
    upper = store.layer_dirs(r1)[1]
    assert (upper / "bin" / "vi").is_char_device()
    assert os.getxattr(upper / "var", "trusted.overlay.opaque") == b"y"
    v2 = build_busybox_image(tmp_path / "v2", extra_files={"/v2": "2"})
    [r2] = import_archive(store, v2, name="app:latest")
    assert store.get("app").id == r2.id          # type: ignore[union-attr]
    assert store.get(r1.id).repo_tags == []      # type: ignore[union-attr]


def test_gc_lru_in_use_min_age(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "s")
    ids = []
    for i in range(4):
        lay = build_busybox_image(tmp_path / f"l{i}", extra_files={f"/f{i}": str(i)})
        [r] = import_archive(store, lay, name=f"img{i}:v")
        ids.append(r.id)
    now = 1_000_000.0
    for i, t in enumerate([now - 500, now - 400, now - 300, now - 10]):
        set_last_used(store, ids[i], t)
    size = store.get(ids[1]).size                # type: ignore[union-attr]
    # below the high threshold: nothing
    assert store.gc(set(), usage=lambda: (1000, 200), now=now) == ([], 0)
    # 90% used, free down to 80%: 100 bytes, one image is enough; the oldest (img0) is in
    # use, so the next least recently used goes
    removed, freed = store.gc({"img0:v"}, usage=lambda: (1000, 100), now=now)
    assert removed == [ids[1]] and freed == size
    # a lot to free: everything unused and older than min_age, oldest first; img3 is too
    # recent (10 s < 120 s)
    removed, freed = store.gc({ids[0]}, usage=lambda: (10**12, 10**10), now=now)
    assert removed == [ids[2]]
    assert {r.id for r in store.list()} == {ids[0], ids[3]}
    # min_age 0 and nothing in use: all go, least recently used first
    removed, _ = store.gc(set(), min_age=0, usage=lambda: (10**12, 0), now=now)
    assert removed == [ids[0], ids[3]]
    assert store.list() == []

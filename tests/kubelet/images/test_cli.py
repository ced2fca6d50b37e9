"""`pyk8s image import / ls / rm` through the real CLI, and archive formats."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from pyk8s.cli.image import human_size, store_dir
from pyk8s.kubelet.images import ImageStore, import_archive
from tests.images import busybox_base_layer, layout_config_digest

ROOT = Path(__file__).resolve().parents[3]


def pyk8s(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "image", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_import_then_ls_and_rm(tmp_path: Path, busybox_archive: Path,
                               busybox_layout: Path) -> None:
    data = tmp_path / "agent-data"
    r = pyk8s("import", "--data-dir", str(data), str(busybox_archive))
    assert r.returncode == 0, r.stderr
    image_id = layout_config_digest(busybox_layout)
    assert r.stdout.splitlines() == [f"imported example.com/test/busybox:v1 {image_id}",
                                     f"into node, image store {data / 'images'}"]
    assert "imagePullPolicy" not in r.stderr      # a v1 tag: no note about latest
    # the running agent's store (another process) sees it
    assert ImageStore(data / "images").get("example.com/test/busybox:v1") is not None
    r = pyk8s("ls", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    # crictl's tabwriter: columns ≥ 20 wide, 3 spaces of padding
    assert lines[0].index("TAG") == len("example.com/test/busybox") + 3
    assert lines[0].index("IMAGE ID") == lines[0].index("TAG") + 20
    cols = lines[1].split()
    size = ImageStore(data / "images").get(image_id).size  # type: ignore[union-attr]
    assert cols == ["example.com/test/busybox", "v1", image_id[7:20], human_size(size)]
    assert cols[3].endswith("MB")
    r = pyk8s("ls", "-q", "--data-dir", str(data))
    assert r.stdout.split() == [image_id]
    r = pyk8s("rm", "--data-dir", str(data), "example.com/test/busybox:v1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "Deleted: example.com/test/busybox:v1"
    assert pyk8s("ls", "-q", "--data-dir", str(data)).stdout.strip() == ""
    r = pyk8s("rm", "--data-dir", str(data), "nope")
    assert r.returncode == 1 and "no such image 'nope'" in r.stderr


def test_up_data_dir_and_name(tmp_path: Path, busybox_layout: Path) -> None:
    up = tmp_path / "up"
    (up / "agent").mkdir(parents=True)
    assert store_dir(up) == up / "agent" / "images"
    assert store_dir(tmp_path / "plain") == tmp_path / "plain" / "images"
    r = pyk8s("import", "--data-dir", str(up), "--name", "busybox", str(busybox_layout))
    assert r.returncode == 0, r.stderr
    assert ImageStore(up / "agent" / "images").get("docker.io/library/busybox:latest")
    r = pyk8s("import", "--data-dir", str(up), str(tmp_path / "missing.tar"))
    assert r.returncode == 1 and "no such file" in r.stderr


def test_tag_only_ref_name_imports_untagged(tmp_path: Path, busybox_layout: Path) -> None:
    """`skopeo copy … oci:DIR:latest` names the image only `latest`: no repository, so
    it comes in by id (as containerd without a base name), with a hint."""
    data = tmp_path / "agent"
    r = pyk8s("import", "--data-dir", str(data), str(busybox_layout))
    assert r.returncode == 0, r.stderr
    image_id = layout_config_digest(busybox_layout)
    assert r.stdout.splitlines()[0] == f"imported (untagged: name it with --name) {image_id}"
    assert "--name REPOSITORY[:TAG]" in r.stderr
    store = ImageStore(data / "images")
    assert store.get(image_id) is not None and store.get("latest") is None


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 1036988, 2_160_000_000)] == \
        ["0B", "999B", "1kB", "1.04MB", "2.16GB"]


def test_docker_save_archive(tmp_path: Path) -> None:
    layer, diff_id = busybox_base_layer()
    raw = gzip.decompress(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    cfg_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": cfg_name, "Layers": ["abc/layer.tar"],
                            "RepoTags": ["saved/app:1.0", "saved/app:latest"]}]).encode()
    archive = tmp_path / "saved.tar"
    with tarfile.open(archive, "w") as tf:
        for name, data in ((cfg_name, config), ("abc/layer.tar", raw),
                           ("manifest.json", manifest), ("repositories", b"{}")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    store = ImageStore(tmp_path / "s")
    [rec] = import_archive(store, archive)
    assert rec.repo_tags == ["docker.io/saved/app:1.0", "docker.io/saved/app:latest"]
    assert rec.repo_digests == []
    assert rec.config["Cmd"] == ["sh"]
    assert rec.layers == [diff_id]
    assert (store.layer_dirs(rec)[0] / "bin" / "busybox").is_file()
    assert store.get("saved/app") is not None

"""Test images built by our own code from the host's static busybox (busybox-static): OCI
image layouts (directories) and oci-archive tars, deterministic (fixed mtimes, gzip
without timestamps) so their digests are stable.

    from tests.images import build_busybox_image, write_oci_archive
    layout = build_busybox_image(tmp_path / "bb")                 # tag "latest"
    layout = build_busybox_image(tmp_path / "web", tag="v1",
                                 extra_files={"/var/www/index.html": "hi\\n"},
                                 cmd=["httpd", "-f", "-p", "80", "-h", "/var/www"])
    archive = write_oci_archive(layout, tmp_path / "bb.tar")      # like skopeo's oci-archive

The rootfs: /bin/busybox and a symlink per applet in /bin, /etc/passwd (root, nobody
65534), /etc/group, /tmp (1777), /root, /var/www/index.html; config Env PATH=… and
Cmd ["sh"]. `extra_files` / `whiteouts` / `opaque_dirs` make a second layer.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Union

BUSYBOX = os.environ.get("PYK8S_TEST_BUSYBOX", "/usr/bin/busybox")
MTIME = 1700000000   # fixed: stable digests
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

FileContent = Union[bytes, str, tuple[Union[bytes, str], int]]

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\nnobody:x:65534:\n"
INDEX_HTML = "<html><body>pyk8s test image</body></html>\n"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=1)
def busybox_applets() -> tuple[str, ...]:
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    return tuple(sorted({a.strip() for a in out.stdout.split() if a.strip()} - {"busybox"}))


class LayerBuilder:
    """A deterministic tar layer; `gzipped()` → (compressed bytes, diff_id)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.dirs: set[str] = set()

    def _info(self, name: str, type_: bytes, mode: int, uid: int = 0,
              gid: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = type_, mode, uid, gid, MTIME
        ti.uname = ti.gname = ""
        return ti

    def parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dir("/".join(parts[:i]))

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        p = path.strip("/")
        if p in self.dirs:
            return
        self.parents(p)
        self.dirs.add(p)
        self.tar.addfile(self._info(p, tarfile.DIRTYPE, mode, uid, gid))

    def file(self, path: str, data: bytes | str, mode: int = 0o644, uid: int = 0,
             gid: int = 0) -> None:
        p = path.strip("/")
        self.parents(p)
        raw = data.encode() if isinstance(data, str) else data
        ti = self._info(p, tarfile.REGTYPE, mode, uid, gid)
        ti.size = len(raw)
        self.tar.addfile(ti, io.BytesIO(raw))

    def symlink(self, path: str, target: str) -> None:
        p = path.strip("/")
        self.parents(p)
        ti = self._info(p, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tar.addfile(ti)

    def hardlink(self, path: str, target: str) -> None:
        p = path.strip("/")
        self.parents(p)
        ti = self._info(p, tarfile.LNKTYPE, 0o644)
        ti.linkname = target.strip("/")
        self.tar.addfile(ti)

    def whiteout(self, path: str) -> None:
        """Delete `path` of lower layers (`.wh.<name>`)."""
        d, _, base = path.strip("/").rpartition("/")
        self.file(f"{d}/.wh.{base}" if d else f".wh.{base}", b"")

    def opaque(self, path: str) -> None:
        """Hide the lower layers' content of directory `path` (`.wh..wh..opq`)."""
        self.dir(path)
        self.file(f"{path.strip('/')}/.wh..wh..opq", b"")

    def raw(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()

    def gzipped(self) -> tuple[bytes, str]:
        data = self.raw()
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="",
                           compresslevel=6) as gz:
            gz.write(data)
        return out.getvalue(), sha256(data)


@functools.lru_cache(maxsize=2)
def busybox_base_layer(busybox: str = BUSYBOX) -> tuple[bytes, str]:
    """The base layer (gzip bytes, diff_id); built once per process."""
    lb = LayerBuilder()
    for d in ("bin", "dev", "etc", "proc", "sys", "usr", "usr/bin", "usr/sbin", "sbin",
              "var", "var/www", "home"):
        lb.dir(d)
    lb.dir("root", 0o700)
    lb.dir("tmp", 0o1777)
    lb.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    for applet in busybox_applets():
        lb.symlink(f"bin/{applet}", "busybox")
    lb.file("etc/passwd", PASSWD)
    lb.file("etc/group", GROUP)
    lb.file("var/www/index.html", INDEX_HTML)
    return lb.gzipped()


def _write_blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = sha256(data)
    d = layout / "blobs" / "sha256"
    d.mkdir(parents=True, exist_ok=True)
    p = d / digest.split(":", 1)[1]
    if not p.exists():
        p.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def build_image_layout(dest_dir: Path, layers: list[tuple[bytes, str]], config: dict[str, Any],
                       tag: str = "latest", architecture: str = "amd64",
                       os_name: str = "linux") -> Path:
    """An OCI layout with one image from gzipped `layers` [(bytes, diff_id)] and the
    runtime `config`; `tag` is its ref.name (replacing an entry of the same name if the
    layout exists already, so one layout can hold several tags)."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    layer_descs = [{"mediaType": OCI_LAYER_GZIP, **_write_blob(dest_dir, data)}
                   for data, _ in layers]
    cfg = {"architecture": architecture, "os": os_name, "created": "2023-11-14T22:13:20Z",
           "config": config,
           "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
           "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "tests/images.py"}
                       for _ in layers]}
    cfg_desc = {"mediaType": OCI_CONFIG, **_write_blob(dest_dir, _dumps(cfg))}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg_desc,
                "layers": layer_descs}
    m_desc = {"mediaType": OCI_MANIFEST, **_write_blob(dest_dir, _dumps(manifest)),
              "annotations": {REF_NAME: tag},
              "platform": {"architecture": architecture, "os": os_name}}
    index_path = dest_dir / "index.json"
    entries = []
    if index_path.exists():
        entries = [m for m in json.loads(index_path.read_text()).get("manifests", [])
                   if (m.get("annotations") or {}).get(REF_NAME) != tag]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*entries, m_desc]}
    index_path.write_bytes(_dumps(index))
    (dest_dir / "oci-layout").write_bytes(_dumps({"imageLayoutVersion": "1.0.0"}))
    return dest_dir


def build_busybox_image(dest_dir: Path, tag: str = "latest",
                        extra_files: dict[str, FileContent] | None = None,
                        entrypoint: list[str] | None = None,
                        cmd: list[str] | None = ["sh"],  # noqa: B006 (never mutated)
                        env: list[str] | None = None, working_dir: str = "",
                        user: str = "", exposed_ports: list[str] | None = None,
                        volumes: list[str] | None = None,
                        labels: dict[str, str] | None = None,
                        whiteouts: list[str] | None = None,
                        opaque_dirs: list[str] | None = None,
                        symlinks: dict[str, str] | None = None,
                        architecture: str = "amd64") -> Path:
    """Build the busybox test image into the OCI layout `dest_dir`; returns `dest_dir`.
    `env` adds to (or, for PATH, replaces) the default PATH; `extra_files` (path →
    content, or (content, mode)), `symlinks` (path → target), `whiteouts` (paths deleted
    from the base layer) and `opaque_dirs` go into a second layer."""
    layers = [busybox_base_layer()]
    if extra_files or whiteouts or opaque_dirs or symlinks:
        lb = LayerBuilder()
        for d in opaque_dirs or []:
            lb.opaque(d)
        for p in whiteouts or []:
            lb.whiteout(p)
        for p, content in (extra_files or {}).items():
            if isinstance(content, tuple):
                lb.file(p, content[0], content[1])
            else:
                lb.file(p, content)
        for p, target in (symlinks or {}).items():
            lb.symlink(p, target)
        layers.append(lb.gzipped())
    env_list = [DEFAULT_PATH]
    for e in env or []:
        if e.startswith("PATH="):
            env_list[0] = e
        else:
            env_list.append(e)
    config: dict[str, Any] = {"Env": env_list}
    if entrypoint is not None:
        config["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        config["Cmd"] = list(cmd)
    if working_dir:
        config["WorkingDir"] = working_dir
    if user:
        config["User"] = user
    if exposed_ports:
        config["ExposedPorts"] = {p if "/" in p else f"{p}/tcp": {} for p in exposed_ports}
    if volumes:
        config["Volumes"] = {v: {} for v in volumes}
    if labels:
        config["Labels"] = dict(labels)
    return build_image_layout(Path(dest_dir), layers, config, tag=tag,
                              architecture=architecture)


def layout_manifest_digest(layout: Path, tag: str = "latest") -> str:
    """The digest of the manifest tagged `tag` in the layout."""
    index = json.loads((Path(layout) / "index.json").read_text())
    for m in index["manifests"]:
        if (m.get("annotations") or {}).get(REF_NAME) == tag:
            return str(m["digest"])
    raise KeyError(tag)


def layout_config_digest(layout: Path, tag: str = "latest") -> str:
    """The image id (config digest) of `tag` in the layout."""
    d = layout_manifest_digest(layout, tag).split(":", 1)[1]
    manifest = json.loads((Path(layout) / "blobs" / "sha256" / d).read_text())
    return str(manifest["config"]["digest"])


def write_oci_archive(layout: Path, archive: Path, ref_name: str | None = None) -> Path:
    """A tar of the layout (oci-layout, index.json, blobs/…), as skopeo's oci-archive;
    `ref_name` renames the single image (e.g. a full reference)."""
    layout, archive = Path(layout), Path(archive)
    index = json.loads((layout / "index.json").read_text())
    if ref_name is not None:
        for m in index["manifests"]:
            m.setdefault("annotations", {})[REF_NAME] = ref_name
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tf:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), MTIME, 0o644
            tf.addfile(ti, io.BytesIO(data))
        add("oci-layout", (layout / "oci-layout").read_bytes())
        add("index.json", _dumps(index))
        for p in sorted((layout / "blobs" / "sha256").iterdir()):
            add(f"blobs/sha256/{p.name}", p.read_bytes())
    return archive

"""A real local registry for tests: Debian's `docker-registry` (distribution 2.8) on
127.0.0.1:<free port>, plain HTTP, no auth, filesystem storage in a temp dir; images are
pushed with skopeo.

(This module is tests/localregistry.py: tests/registry/ is the package of pyk8s/registry's
tests, whose __init__ re-exports `registry` and `LocalRegistry` from here.)

The session fixture `registry` starts one per test session (per xdist worker) and pushes
the busybox test image (tests/images.py) as `127.0.0.1:PORT/busybox:latest`. Use it from a
test module with

    from tests.registry import registry  # noqa: F401  (the session's local registry)

    def test_pull(registry):
        image = registry.image("busybox")       # "127.0.0.1:PORT/busybox:latest"
        registry.host                           # "127.0.0.1:PORT" (an insecure registry)
        registry.push(layout_dir, "web", "v1")  # push more (OCI layout dir, name, tag)

(or import it in tests/conftest.py). Agents pulling from it need
`--insecure-registry <registry.host>`. Outside the fixture: `with LocalRegistry() as reg:`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import require
from tests.images import build_busybox_image

DOCKER_REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"

CONFIG = """version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: the registry goes when the test process dies, however it dies."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


class LocalRegistry:
    """`docker-registry serve` on 127.0.0.1 (context manager); `push()` with skopeo."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="pyk8s-registry-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.busybox_layout: Path | None = None   # the fixture's busybox OCI layout

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def image(self, name: str, tag: str = "latest") -> str:
        """The full reference of a pushed image: `127.0.0.1:PORT/NAME:TAG`."""
        return f"{self.host}/{name}:{tag}"

    def start(self, timeout: float = 15.0) -> "LocalRegistry":
        (self.tmp / "data").mkdir(exist_ok=True)
        cfg = self.tmp / "config.yml"
        cfg.write_text(CONFIG.format(root=self.tmp / "data", port=self.port))
        log = open(self.tmp / "registry.log", "wb")
        self.proc = subprocess.Popen([DOCKER_REGISTRY, "serve", str(cfg)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer /v2/: {self.log()}")

    def log(self) -> str:
        try:
            return (self.tmp / "registry.log").read_text()[-3000:]
        except OSError:
            return ""

    def push(self, layout: Path, name: str, tag: str = "latest", src_tag: str | None = None,
             format: str | None = None) -> str:
        """Push the image `src_tag` (default: `tag`) of the OCI layout `layout` as
        NAME:TAG; `format="v2s2"` converts it to a Docker v2 schema 2 manifest.
        Returns the full reference."""
        cmd = [SKOPEO, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
        if format:
            cmd += ["--format", format]
        cmd += [f"oci:{layout}:{src_tag or tag}", f"docker://{self.host}/{name}:{tag}"]
        env = dict(os.environ, HOME=str(self.tmp))
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"skopeo copy failed: {p.stderr}")
        return self.image(name, tag)

    def request(self, method: str, path: str, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """A raw distribution-API request (tests build indexes with it)."""
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def put_blob(self, name: str, data: bytes) -> str:
        """Upload a blob (monolithic); returns its digest."""
        import hashlib
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, body = self.request("POST", f"/v2/{name}/blobs/uploads/")
        if status != 202:
            raise RuntimeError(f"blob upload start: {status} {body!r}")
        loc = headers.get("Location", "")
        if loc.startswith("http"):
            loc = loc.split(self.host, 1)[1]
        sep = "&" if "?" in loc else "?"
        status, _, body = self.request("PUT", f"{loc}{sep}digest={digest}", data,
                                       {"Content-Type": "application/octet-stream"})
        if status != 201:
            raise RuntimeError(f"blob upload: {status} {body!r}")
        return digest

    def put_manifest(self, name: str, ref: str, doc: dict[str, Any] | bytes,
                     media_type: str) -> str:
        """PUT a manifest / index; returns its digest."""
        import hashlib
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        status, _, body = self.request("PUT", f"/v2/{name}/manifests/{ref}", data,
                                       {"Content-Type": media_type})
        if status != 201:
            raise RuntimeError(f"manifest PUT: {status} {body!r}")
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "LocalRegistry":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """The session's local registry with `busybox:latest` pushed (see the module doc)."""
    require(Path(DOCKER_REGISTRY).exists() and Path(SKOPEO).exists(),
            "docker-registry and skopeo are needed (apt-get install docker-registry skopeo)")
    layout = build_busybox_image(tmp_path_factory.mktemp("busybox-image") / "layout")
    reg = LocalRegistry().start()
    try:
        reg.push(layout, "busybox", "latest")
        reg.busybox_layout = layout
        yield reg
    finally:
        reg.stop()

"""Shared fixtures: real `pyk8s server` processes, an HTTP helper and real kubectl."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest
import urllib3
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")


# Outside CI a test whose prerequisite (root, a system package) is missing is skipped; in
# CI (CI=true) nothing is skipped: `make test` installs the packages, CI runs as root, and
# a test missing either runs and fails.
IN_CI = os.environ.get("CI") == "true"


def needs(missing: bool, reason: str) -> pytest.MarkDecorator:
    """Skip when `missing`, except in CI."""
    return pytest.mark.skipif(missing and not IN_CI, reason=reason)


def require(present: bool, reason: str) -> None:
    """In a test or fixture: skip when not `present` (fail in CI)."""
    if not present:
        (pytest.fail if IN_CI else pytest.skip)(reason)


needs_root = needs(os.geteuid() != 0, "mount namespaces need root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Response:
    def __init__(self, r: urllib3.BaseHTTPResponse) -> None:
        self.status = r.status
        self.headers = r.headers
        self.data = r.data

    def json(self) -> Any:
        return json.loads(self.data)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.data[:300]!r}>"


class ServerProcess:
    """A real `pyk8s server` in its own process, HTTPS with the admin token."""

    def __init__(self, data_dir: Path, storage: str = "sqlite", extra: list[str] | None = None,
                 command: str = "server", ready_log: str | None = None,
                 local_node: bool = False) -> None:
        """`command` is `server` (API server alone) or `up` (with the controllers);
        `ready_log` is a log line to wait for besides /readyz. `up` runs with
        `--disable-agent` (tests bring their own nodes) unless `local_node`.

        Unless `extra` says otherwise: the server listens on loopback only (so it advertises
        no address and the local node's InternalIP is 127.0.0.1: tests never send traffic
        to the host's own addresses), and a lone `server`, with no controller to create
        service accounts, runs without the ServiceAccount admission plugin, as upstream's
        integration tests."""
        self.command = command
        self.ready_log = ready_log
        self.data_dir = data_dir
        self.storage = storage
        self.extra = list(extra or [])
        if command == "up" and not local_node and "--disable-agent" not in self.extra:
            self.extra.append("--disable-agent")
        if "--bind" not in self.extra:
            self.extra += ["--bind", "127.0.0.1"]
        if command == "server" and "--disable-admission-plugins" not in self.extra:
            self.extra += ["--disable-admission-plugins", "ServiceAccount"]
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self.http = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False, maxsize=8)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    def start(self, timeout: float = 20.0) -> "ServerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pyk8s.cli.main", self.command, "--data-dir", str(self.data_dir),
               "--port", str(self.port), "--storage", self.storage, *self.extra]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                token = self.data_dir / "token"  # with --anonymous-auth=false
                headers = {"Authorization": f"Bearer {self.token}"} if token.exists() else {}
                r = self.http.request("GET", self.url + "/readyz", timeout=1.0, headers=headers)
                if r.status == 200 and self.kubeconfig.exists() and (
                        not self.ready_log or self.ready_log in self.log_path.read_text()):
                    return self
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.05)
        self.kill9()  # never leave a half-started server behind
        raise RuntimeError(f"server did not become ready: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(float(os.environ.get("PYK8S_TEST_STOP_WAIT", "10")))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    # -- HTTP --------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                content_type: str | None = "application/json", token: str | None = "admin",
                raw: bytes | None = None, timeout: float = 30.0) -> Response:
        h = dict(headers or {})
        if token == "admin":
            h["Authorization"] = f"Bearer {self.token}"
        elif token:
            h["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None and content_type:
            h.setdefault("Content-Type", content_type)
        r = self.http.request(method, self.url + path, body=data, headers=h, timeout=timeout,
                              preload_content=True)
        return Response(r)

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("PUT", path, body, **kw)

    def patch(self, path: str, body: Any, content_type: str, **kw: Any) -> Response:
        return self.request("PATCH", path, body, content_type=content_type, **kw)

    def delete(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("DELETE", path, body, **kw)

    # -- kubectl -----------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), HOME=str(self.data_dir))
        p = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True,
                           env=env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n"
                                 f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)


class WatchReader:
    """Reads a watch stream in a thread, collecting its events."""

    def __init__(self, server: ServerProcess, path: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.pool = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False)
        self.resp = self.pool.request("GET", server.url + path, preload_content=False,
                                        headers={"Authorization": f"Bearer {server.token}"},
                                        timeout=30)
        self.status = self.resp.status
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buf = b""
        try:
            for chunk in self.resp.stream(1024, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self.events.append(json.loads(line))
        except Exception:
            pass

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.time() + timeout
        while len(self.events) < n and time.time() < deadline:
            time.sleep(0.02)
        assert len(self.events) >= n, self.events
        return self.events

    def close(self) -> None:
        self.pool.clear()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server per test module: SQLite storage, or with PYK8S_TEST_STORAGE=etcd a
    throwaway etcd member (tests/etcd_cluster.py) behind `--storage etcd`."""
    etcd = None
    storage, extra = "sqlite", []
    if os.environ.get("PYK8S_TEST_STORAGE", "sqlite") == "etcd":
        from tests.etcd_cluster import EtcdCluster
        etcd = EtcdCluster(1).start()
        storage, extra = "etcd", ["--etcd-servers", etcd.endpoints]
    try:
        srv = ServerProcess(tmp_path_factory.mktemp("pyk8s"), storage=storage, extra=extra).start()
        try:
            yield srv
        finally:
            srv.stop()
    finally:
        if etcd is not None:
            etcd.stop()


T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 15.0) -> T:
    """Poll `fn` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def load_yaml_docs(text: str) -> list[Any]:
    return [d for d in yaml.safe_load_all(text) if d]

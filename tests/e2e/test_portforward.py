"""pods/portforward end to end: real `pyk8s up`, a process-runtime agent with its kubelet
HTTPS server, a pod serving HTTP (`python3 -m http.server`), real kubectl (SPDY/3.1 over
WebSocket) and the official Python client (v4 channels)."""
from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import KUBECTL, ServerProcess, free_port, wait_for
from tests.e2e.test_agent import AgentProcess, process_node

NODE = "pf-1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[ServerProcess, int]]:
    d = tmp_path_factory.mktemp("pyk8s-portforward")
    served = d / "www"
    served.mkdir()
    (served / "marker-file.txt").write_text("forwarded\n")
    (served / "big.bin").write_bytes(bytes(range(256)) * (3 * 4096))   # 3 MiB
    pod_port = free_port()
    with process_node(d, NODE, "--kubelet-port", str(free_port())) as (up, _):
        up.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "main", "image": "python",
                                     "workingDir": str(served),
                                     "command": ["python3", "-m", "http.server",
                                                 "--bind", "127.0.0.1", str(pod_port)]}]}}))

        def serving() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", pod_port), timeout=1):
                    return True
            except OSError:
                return False
        wait_for("pod web serving", serving, timeout=30)
        yield up, pod_port


def kubectl_env(up: ServerProcess) -> dict[str, str]:
    return dict(os.environ, KUBECONFIG=str(up.kubeconfig), HOME=str(up.data_dir))


def start_port_forward(up: ServerProcess, spec: str) -> subprocess.Popen[bytes]:
    p = subprocess.Popen([KUBECTL, "port-forward", "pod/web", spec], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=kubectl_env(up))
    assert p.stdout is not None
    ready, _, _ = select.select([p.stdout], [], [], 30)
    line = p.stdout.readline() if ready else b""
    if b"Forwarding from" not in line:
        p.kill()
        _, err = p.communicate(timeout=10)
        raise AssertionError(f"kubectl port-forward did not start: {line!r} {err!r}")
    return p


def stop(p: subprocess.Popen[bytes]) -> bytes:
    if p.poll() is None:
        p.terminate()
    try:
        _, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate(timeout=10)
    return err


def test_kubectl_port_forward(cluster: tuple[ServerProcess, int]) -> None:
    up, pod_port = cluster
    local = free_port()
    p = start_port_forward(up, f"{local}:{pod_port}")
    try:
        for _ in range(2):   # two connections over the one port-forward session
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=20) as r:
                body = r.read().decode()
            assert r.status == 200 and "marker-file.txt" in body, body
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/marker-file.txt",
                                    timeout=20) as r:
            assert r.read() == b"forwarded\n"
        # Megabytes through the SPDY data stream (no flow-control stall).
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/big.bin", timeout=30) as r:
            assert r.read() == bytes(range(256)) * (3 * 4096)
        assert p.poll() is None
    finally:
        stop(p)


def test_kubectl_port_forward_refused_port(cluster: tuple[ServerProcess, int]) -> None:
    """Nobody listens on the pod port: the kubelet reports it on the error stream and
    kubectl says so (and does not hang)."""
    up, _ = cluster
    local, dead = free_port(), free_port()
    p = start_port_forward(up, f"{local}:{dead}")
    try:
        with pytest.raises(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=20) as r:
                r.read()
        deadline = time.monotonic() + 20
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert p.poll() is not None, "kubectl port-forward hangs after the error"
    finally:
        err = stop(p)
    assert f"error forwarding port {dead} to pod default/web".encode() in err, err
    assert b"connection refused" in err, err


def test_python_client_port_forward(cluster: tuple[ServerProcess, int]) -> None:
    up, pod_port = cluster
    from kubernetes import client, config
    from kubernetes.stream import portforward
    api_client = config.new_client_from_config(str(up.kubeconfig))
    try:
        core = client.CoreV1Api(api_client)
        pf = portforward(core.connect_get_namespaced_pod_portforward, "web", "default",
                         ports=str(pod_port))
        sock = pf.socket(pod_port)
        sock.settimeout(20)
        sock.sendall(b"GET /marker-file.txt HTTP/1.0\r\nHost: web\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        assert data.startswith(b"HTTP/1.0 200"), data
        assert data.endswith(b"\r\n\r\nforwarded\n"), data
        assert pf.error(pod_port) is None

        dead = free_port()
        pf = portforward(core.connect_get_namespaced_pod_portforward, "web", "default",
                         ports=str(dead))
        sock = pf.socket(dead)
        sock.settimeout(20)
        assert sock.recv(10) == b""
        wait_for("error", lambda: pf.error(dead), timeout=10)
        assert "connection refused" in pf.error(dead)
        sock.close()
    finally:
        api_client.close()


def test_portforward_needs_a_pod(cluster: tuple[ServerProcess, int]) -> None:
    up, _ = cluster
    p = subprocess.run([KUBECTL, "port-forward", "pod/nosuchpod", "1234:80"],
                       capture_output=True, env=kubectl_env(up), timeout=30)
    assert p.returncode != 0 and b'pods "nosuchpod" not found' in p.stderr, p.stderr


def test_fake_runtime_refuses_port_forward(cluster: tuple[ServerProcess, int],
                                           tmp_path: Path) -> None:
    """The fake runtime has no pod network: the forwarded connection fails on its error
    stream (kubectl reports it and stops) rather than at the upgrade."""
    up, _ = cluster
    fake = AgentProcess(up, tmp_path, "--node-name", "pf-fake", "--runtime", "fake",
                        "--kubelet-port", str(free_port())).start()
    try:
        wait_for("node Ready", lambda: " Ready " in up.kubectl(
            "get", "nodes", "pf-fake", "--no-headers", check=False).stdout, timeout=30)
        up.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hollow"},
            "spec": {"nodeName": "pf-fake", "containers": [
                {"name": "main", "image": "busybox", "command": ["true"]}]}}))
        wait_for("hollow Running", lambda: up.kubectl_json("get", "pod", "hollow").get(
            "status", {}).get("phase") == "Running", timeout=30)
        local = free_port()
        p = subprocess.Popen([KUBECTL, "port-forward", "pod/hollow", f"{local}:80"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=kubectl_env(up))
        try:
            assert p.stdout is not None
            ready, _, _ = select.select([p.stdout], [], [], 30)
            assert ready and b"Forwarding from" in p.stdout.readline()
            with pytest.raises(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=20) as r:
                    r.read()
        finally:
            err = stop(p)
        assert b"does not support port forwarding" in err, err
        up.kubectl("delete", "pod", "hollow", "--grace-period=0", "--force")
    finally:
        fake.stop()

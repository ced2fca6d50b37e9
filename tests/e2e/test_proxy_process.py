"""`pyk8s proxy` as its own process against a real `pyk8s server` (kube-proxy alone):
userspace mode relays a NodePort on 127.0.0.1 to the Service's endpoint; iptables mode
programs its chains, removes them on SIGTERM, and `--cleanup` removes what a killed
proxy left."""
from __future__ import annotations

import http.server
import json
import secrets
import signal
import subprocess
import sys
import threading
import urllib.request
from typing import Any, Iterator

import pytest

from pyk8s.proxy.iptables import chains_in_save
from tests.conftest import ROOT, ServerProcess, free_port, needs_root, wait_for

NODE = "px-1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("pyk8s-proxy")).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def backend() -> Iterator[int]:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello from the endpoint")

        def log_message(self, *_: Any) -> None:
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def service(srv: ServerProcess, name: str, endpoint_port: int) -> int:
    """A NodePort Service without selector and its EndpointSlice (127.0.0.1 on this
    node); its node port."""
    srv.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80}]}}))
    srv.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": endpoint_port, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["127.0.0.1"], "nodeName": NODE,
                       "conditions": {"ready": True}}]}))
    return int(srv.kubectl_json("get", "service", name)["spec"]["ports"][0]["nodePort"])


def proxy(srv: ServerProcess, *args: str) -> subprocess.Popen[bytes]:
    log = open(srv.data_dir / f"proxy-{secrets.token_hex(2)}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "pyk8s.cli.main", "proxy", "--kubeconfig",
                             str(srv.kubeconfig), "--hostname-override", NODE, *args],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def answer(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def test_userspace_proxy_process_relays_a_node_port(srv: ServerProcess, backend: int) -> None:
    node_port = service(srv, "us", backend)
    p = proxy(srv, "--proxy-mode", "userspace", "--nodeport-address", "127.0.0.1")
    try:
        assert wait_for("the node port relayed", lambda: answer(node_port),
                        timeout=20) == "hello from the endpoint"
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
    assert answer(node_port) is None          # its listeners went with it
    srv.kubectl("delete", "service", "us")


def _chains(prefix: str) -> list[str]:
    save = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return chains_in_save(save, prefix)


@needs_root
def test_iptables_proxy_process_chains_stop_and_cleanup(srv: ServerProcess,
                                                        backend: int) -> None:
    node_port = service(srv, "ipt", backend)
    prefix = "T" + secrets.token_hex(3).upper()
    args = ("--proxy-mode", "iptables", "--iptables-chain-prefix", prefix,
            "--iptables-localhost-nodeports", "false", "--cluster-cidr", "10.244.0.0/16")

    def node_port_rule() -> bool:
        nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                             text=True).stdout
        return f"-A {prefix}-NODEPORTS" in nat and f"--dport {node_port}" in nat
    p = proxy(srv, *args)
    try:
        wait_for("the node port's rule", node_port_rule, timeout=20)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
    assert not _chains(prefix), "SIGTERM left chains behind"
    p = proxy(srv, *args)                      # again, then killed: chains stay ...
    try:
        wait_for("the node port's rule again", node_port_rule, timeout=20)
    finally:
        p.kill()
        p.wait()
    assert _chains(prefix)
    done = subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "proxy", "--kubeconfig",
                           str(srv.kubeconfig), *args, "--cleanup"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not _chains(prefix)                 # ... until --cleanup
    srv.kubectl("delete", "service", "ipt")

"""The root CA certificate publisher in a real `pyk8s up`, driven by kubectl: every namespace
gets `kube-root-ca.crt`, whose CA verifies the API server's serving certificate, and the
ConfigMap comes back when deleted or edited."""
from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyk8s.apiserver.certs import ensure_credentials
from tests.conftest import ROOT, ServerProcess, wait_for

CM = "kube-root-ca.crt"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using "
               "internal endpoints such as the internal service IP or kubernetes.default.svc. "
               "No other usage is guaranteed across distributions of Kubernetes clusters.")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    up = ServerProcess(tmp_path_factory.mktemp("pyk8s-rootca"), command="up").start()
    try:
        yield up
    finally:
        up.stop()


def root_ca_map(c: ServerProcess, ns: str) -> dict[str, Any] | None:
    r = c.get(f"/api/v1/namespaces/{ns}/configmaps/{CM}")
    return r.json() if r.status == 200 else None


def published(c: ServerProcess, ns: str, not_uid: str = "") -> dict[str, Any]:
    """The namespace's kube-root-ca.crt once it holds the cluster CA and the description
    (and, with `not_uid`, once it is another object than that one)."""
    ca = (c.data_dir / "tls" / "ca.crt").read_text()

    def current() -> dict[str, Any] | None:
        cm = root_ca_map(c, ns)
        if cm is None or cm["metadata"]["uid"] == not_uid or cm.get("data") != {"ca.crt": ca}:
            return None
        annotations = cm["metadata"].get("annotations") or {}
        return cm if annotations.get("kubernetes.io/description") == DESCRIPTION else None
    return wait_for(f"{CM} in {ns}", current)


def handshake(c: ServerProcess, ca: str, server_name: str) -> dict[str, Any]:
    """TLS to the API server on loopback trusting only `ca`, checking `server_name`."""
    ctx = ssl.create_default_context(cadata=ca)
    with socket.create_connection(("127.0.0.1", c.port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=server_name) as tls:
            peer: dict[str, Any] = tls.getpeercert()
    return peer


def test_system_namespaces_get_the_ca_that_verifies_the_api_server(
        cluster: ServerProcess, tmp_path: Path) -> None:
    for ns in ("kube-system", "default", "kube-public"):
        cm = published(cluster, ns)
    ca = cm["data"]["ca.crt"]
    for name in ("127.0.0.1", "kubernetes.default.svc"):
        peer = handshake(cluster, ca, name)
        assert ("commonName", "kube-apiserver") in (rdn[0] for rdn in peer["subject"])
    # Another CA does not verify it.
    foreign = ensure_credentials(tmp_path).ca_cert.read_text()
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(cluster, foreign, "127.0.0.1")


def test_new_namespace_gets_it_and_deletes_and_edits_are_undone(
        cluster: ServerProcess) -> None:
    cluster.kubectl("create", "namespace", "x")
    first = published(cluster, "x")
    cluster.kubectl("delete", "configmap", CM, "-n", "x")
    published(cluster, "x", not_uid=first["metadata"]["uid"])
    cluster.kubectl("patch", "configmap", CM, "-n", "x", "--type=merge",
                    "-p", json.dumps({"data": {"ca.crt": "forged", "extra": "x"}}))
    cm = published(cluster, "x")
    assert cm["data"] == {"ca.crt": (cluster.data_dir / "tls" / "ca.crt").read_text()}
    cluster.kubectl("annotate", "configmap", CM, "-n", "x", "kubernetes.io/description-")
    published(cluster, "x")
    # The namespace still goes away: nothing is published into a terminating namespace.
    cluster.kubectl("delete", "namespace", "x", "--timeout=20s", timeout=30)
    assert cluster.get("/api/v1/namespaces/x").status == 404


def test_controller_manager_publishes_its_kubeconfig_ca_without_root_ca_file(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """`pyk8s controller-manager` without --root-ca-file: the CA of its kubeconfig."""
    srv = ServerProcess(tmp_path_factory.mktemp("pyk8s-rootca-cm")).start()
    cm_log = srv.data_dir / "controller-manager.log"
    cm: subprocess.Popen[bytes] | None = None
    base = [sys.executable, "-m", "pyk8s.cli.main", "controller-manager",
            "--kubeconfig", str(srv.kubeconfig), "--controllers=root-ca-cert-publisher"]
    try:
        bad = srv.data_dir / "bad.pem"
        bad.write_text("not a certificate\n")
        p = subprocess.run([*base, f"--root-ca-file={bad}"], capture_output=True, text=True,
                           cwd=ROOT, timeout=30)
        assert p.returncode == 2 and f"error parsing root-ca-file at {bad}: " in p.stderr
        with open(cm_log, "ab") as log:
            cm = subprocess.Popen([*base, "--leader-elect=false"], stdout=log,
                                  stderr=subprocess.STDOUT, cwd=ROOT)
        srv.kubectl("create", "namespace", "y")
        for ns in ("default", "y"):
            published(srv, ns)
        cm.terminate()
        assert cm.wait(10) == 0, cm_log.read_text()[-2000:]
    finally:
        if cm is not None and cm.poll() is None:
            cm.kill()
            cm.wait()
        srv.stop()

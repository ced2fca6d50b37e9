"""x509 client certificates and the certificate controllers against a real `pyk8s up`:
certificates signed by the cluster CA authenticate (CN = user, O = groups), a bootstrap
identity's kubelet client CSR is approved (csrapproving, SubjectAccessReview) and issued
(csrsigning), an admin-approved kube-apiserver-client CSR is issued, a malformed kubelet
CSR fails."""
from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyk8s.apiserver.certs import (issue_client_certificate, write_client_kubeconfig,
                                   write_kubeconfig)
from tests.conftest import KUBECTL, ServerProcess, wait_for

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("pyk8s"), command="up",
                        ready_log="controller manager: started").start()
    try:
        yield srv
    finally:
        srv.stop()


def kubectl_as(cluster: ServerProcess, kubeconfig: Path, *args: str,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(cluster.data_dir))
    return subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True,
                          env=env, timeout=60)


def whoami(cluster: ServerProcess, kubeconfig: Path) -> Obj:
    p = kubectl_as(cluster, kubeconfig, "auth", "whoami", "-o", "json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["status"]["userInfo"]


def cert_kubeconfig(cluster: ServerProcess, name: str, cert_pem: bytes, key_pem: bytes) -> Path:
    path = cluster.data_dir / f"{name}.kubeconfig"
    write_client_kubeconfig(path, cluster.url, cluster.data_dir / "tls" / "ca.crt", cert_pem,
                            key_pem, name)
    return path


def new_csr(cn: str, orgs: tuple[str, ...] = ()) -> tuple[str, bytes]:
    """(spec.request, key PEM) for a new EC key."""
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    pem = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return base64.b64encode(pem).decode(), key_pem


def csr_manifest(name: str, request: str, signer: str, usages: list[str], **spec: Any) -> str:
    return json.dumps({"apiVersion": "certificates.k8s.io/v1",
                       "kind": "CertificateSigningRequest", "metadata": {"name": name},
                       "spec": {"request": request, "signerName": signer, "usages": usages,
                                **spec}})


def issued_certificate(cluster: ServerProcess, name: str, timeout: float = 10.0) -> bytes:
    def get() -> bytes | None:
        cert = (cluster.kubectl_json("get", "csr", name).get("status") or {}).get("certificate")
        return base64.b64decode(cert) if cert else None
    return wait_for(f"certificate of CSR {name}", get, timeout=timeout)


def test_client_certificate_signed_by_the_cluster_ca_authenticates(cluster: ServerProcess
                                                                   ) -> None:
    cert_pem, key_pem = issue_client_certificate(cluster.data_dir / "tls" / "ca.crt",
                                                 cluster.data_dir / "tls" / "ca.key", "jane",
                                                 ["devs"], days=1)
    user = whoami(cluster, cert_kubeconfig(cluster, "jane", cert_pem, key_pem))
    assert user["username"] == "jane"
    assert user["groups"] == ["devs", "system:authenticated"]


def make_ca(dir_: Path, cn: str) -> tuple[Path, Path]:
    dir_.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(key, hashes.SHA256()))
    (dir_ / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (dir_ / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    return dir_ / "ca.crt", dir_ / "ca.key"


def refused(p: subprocess.CompletedProcess[str]) -> bool:
    """kubectl got nothing: the TLS layer refused a certificate it cannot verify against
    the client CA (the handshake fails; upstream answers 401 after the handshake — Python's
    ssl can ask for a client certificate only by verifying it)."""
    return p.returncode != 0 and p.stdout == "" and (
        "Unable to connect to the server" in p.stderr or "Unauthorized" in p.stderr)


def test_client_certificate_of_another_ca_does_not_authenticate(cluster: ServerProcess,
                                                                tmp_path: Path) -> None:
    ca_crt, ca_key = make_ca(tmp_path / "other", "other-ca")
    cert_pem, key_pem = issue_client_certificate(ca_crt, ca_key, "mallory", ["system:masters"],
                                                 days=1)
    p = kubectl_as(cluster, cert_kubeconfig(cluster, "mallory", cert_pem, key_pem),
                   "get", "--raw", "/api/v1/namespaces")
    assert refused(p), (p.stdout, p.stderr)
    assert cluster.get("/api/v1/namespaces").status == 200  # the server serves on


def test_client_ca_file_flag(tmp_path: Path) -> None:
    ca_crt, ca_key = make_ca(tmp_path / "clients", "client-ca")
    srv = ServerProcess(tmp_path / "server", extra=["--client-ca-file", str(ca_crt)]).start()
    try:
        cert_pem, key_pem = issue_client_certificate(ca_crt, ca_key, "bob", ["qa"], days=1)
        assert whoami(srv, cert_kubeconfig(srv, "bob", cert_pem, key_pem))["username"] == "bob"
        # The cluster CA no longer verifies client certificates.
        cert_pem, key_pem = issue_client_certificate(srv.data_dir / "tls" / "ca.crt",
                                                     srv.data_dir / "tls" / "ca.key", "jane",
                                                     [], days=1)
        p = kubectl_as(srv, cert_kubeconfig(srv, "jane", cert_pem, key_pem),
                       "get", "--raw", "/api/v1/namespaces")
        assert refused(p), (p.stdout, p.stderr)
    finally:
        srv.stop()


def test_bootstrap_token_gets_a_node_client_certificate(cluster: ServerProcess) -> None:
    node_token = (cluster.data_dir / "node-token").read_text().strip()
    bootstrap = cluster.data_dir / "bootstrap.kubeconfig"
    write_kubeconfig(bootstrap, cluster.url, node_token, cluster.data_dir / "tls" / "ca.crt")
    assert whoami(cluster, bootstrap)["username"] == "system:bootstrap:pyk8s"
    request, key_pem = new_csr("system:node:n1", ("system:nodes",))
    p = kubectl_as(cluster, bootstrap, "create", "-f", "-", input=csr_manifest(
        "node-csr-n1", request, "kubernetes.io/kube-apiserver-client-kubelet",
        ["digital signature", "client auth"], expirationSeconds=3600))
    assert p.returncode == 0, p.stderr
    # Approved by csrapproving (a SubjectAccessReview for certificatesigningrequests/
    # nodeclient) and issued by csrsigning, without the admin.
    cert_pem = issued_certificate(cluster, "node-csr-n1")
    csr = cluster.kubectl_json("get", "csr", "node-csr-n1")
    assert csr["spec"]["username"] == "system:bootstrap:pyk8s"
    assert "system:bootstrappers" in csr["spec"]["groups"]
    [approved] = [c for c in csr["status"]["conditions"] if c["type"] == "Approved"]
    assert approved["reason"] == "AutoApproved"
    assert approved["message"] == \
        "Auto approving kubelet client certificate after SubjectAccessReview."
    cert = x509.load_pem_x509_certificate(cert_pem)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == datetime.timedelta(minutes=65)  # expirationSeconds, backdated 5 min
    user = whoami(cluster, cert_kubeconfig(cluster, "n1", cert_pem, key_pem))
    assert user["username"] == "system:node:n1"
    assert user["groups"] == ["system:nodes", "system:authenticated"]


def test_admin_approved_client_certificate_authenticates(cluster: ServerProcess) -> None:
    request, key_pem = new_csr("alice", ("devs", "ops"))
    cluster.kubectl("create", "-f", "-", input=csr_manifest(
        "alice", request, "kubernetes.io/kube-apiserver-client", ["client auth"]))
    assert not (cluster.kubectl_json("get", "csr", "alice").get("status") or {}).get(
        "conditions")  # not a kubelet request: left to the admin
    cluster.kubectl("certificate", "approve", "alice")
    cert_pem = issued_certificate(cluster, "alice")
    user = whoami(cluster, cert_kubeconfig(cluster, "alice", cert_pem, key_pem))
    assert user["username"] == "alice"
    assert user["groups"] == ["devs", "ops", "system:authenticated"]
    out = cluster.kubectl("get", "csr", "alice").stdout
    assert "Approved,Issued" in out, out


def test_malformed_kubelet_csr_fails(cluster: ServerProcess) -> None:
    request, _ = new_csr("system:node:n2", ("system:masters",))
    cluster.kubectl("create", "-f", "-", input=csr_manifest(
        "bad-kubelet", request, "kubernetes.io/kube-apiserver-client-kubelet",
        ["digital signature", "client auth"]))
    cluster.kubectl("certificate", "approve", "bad-kubelet")

    def failed() -> Obj | None:
        csr = cluster.kubectl_json("get", "csr", "bad-kubelet")
        return next((c for c in (csr.get("status") or {}).get("conditions") or []
                     if c["type"] == "Failed"), None)
    cond = wait_for("Failed condition", failed, timeout=10)
    assert cond["reason"] == "SignerValidationFailure"
    assert cond["message"] == "subject organization is not system:nodes"
    assert not cluster.kubectl_json("get", "csr", "bad-kubelet")["status"].get("certificate")
    assert "Approved,Failed" in cluster.kubectl("get", "csr", "bad-kubelet").stdout

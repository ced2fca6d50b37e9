"""First-start credentials: a CA, a serving certificate, an admin token and kubeconfig.

Everything lives in the data directory and is reused on later starts (like k3s). Also
client certificates signed by the CA (`issue_client_certificate`) and kubeconfigs holding
them (`write_client_kubeconfig`): one identity per component.
"""
from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Credentials:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    admin_token: str
    node_token: str


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _new_ca(dir_: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pyk8s-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_private(dir_ / "ca.key", _key_pem(key))
    (dir_ / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _load_ca(dir_: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((dir_ / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((dir_ / "ca.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def _names_covered(cert_path: Path, hosts: list[str]) -> bool:
    """Whether the serving certificate names every host (an address the API server now
    advertises, a new service range's first IP): if not it is issued again, as k3s does."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    dns = set(san.get_values_for_type(x509.DNSName))
    for h in hosts:
        try:
            if str(ipaddress.ip_address(h)) not in ips:
                return False
        except ValueError:
            if h not in dns:
                return False
    return True


def _server_cert(dir_: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                 extra_hosts: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    hosts = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", socket.gethostname(), *extra_hosts]
    ips = ["127.0.0.1", "::1", "10.96.0.1"]
    san: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts + ips):
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            san.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(dir_ / "server.key", _key_pem(key))
    (dir_ / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


KUBELET_CLIENT_CN = "kube-apiserver-kubelet-client"
# kubeadm before 1.29 (kubeadm:cluster-admins came later): the kubelet's
# SubjectAccessReview for it is allowed by system:masters.
KUBELET_CLIENT_ORG = "system:masters"


def ensure_kubelet_client_cert(data_dir: Path) -> tuple[Path, Path]:
    """The API server's client certificate for kubelets (kubeadm's apiserver-kubelet-client):
    DIR/tls/kubelet-client.crt / .key, CN `kube-apiserver-kubelet-client`, O
    `system:masters`, from the cluster CA; re-issued when missing, expiring within a day
    or not from the current CA."""
    tls = data_dir / "tls"
    crt, key_path = tls / "kubelet-client.crt", tls / "kubelet-client.key"
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    if crt.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
            cert.verify_directly_issued_by(ca)
            if cert.not_valid_after_utc > now + datetime.timedelta(days=1):
                return crt, key_path
        except Exception:  # unreadable, or another CA's: issue a new one
            pass
    cert_pem, key_pem = issue_client_certificate(tls / "ca.crt", tls / "ca.key",
                                                 KUBELET_CLIENT_CN, [KUBELET_CLIENT_ORG])
    _write_private(key_path, key_pem)
    _write_private(crt, cert_pem)
    return crt, key_path


def _token(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    tok = secrets.token_hex(24)
    _write_private(path, (tok + "\n").encode())
    return tok


def ensure_credentials(data_dir: Path, extra_hosts: list[str] | None = None) -> Credentials:
    tls = data_dir / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    if (tls / "ca.crt").exists() and (tls / "ca.key").exists():
        ca, ca_key = _load_ca(tls)
    else:
        ca, ca_key = _new_ca(tls)
    hosts = [h for h in extra_hosts or [] if h and h not in ("0.0.0.0", "::")]
    if not (tls / "server.crt").exists() or not (tls / "server.key").exists() or \
            not _names_covered(tls / "server.crt", hosts):
        _server_cert(tls, ca, ca_key, hosts)
    return Credentials(ca_cert=tls / "ca.crt", server_cert=tls / "server.crt",
                       server_key=tls / "server.key", admin_token=_token(data_dir / "token"),
                       node_token=_token(data_dir / "node-token"))


def _write_kubeconfig(path: Path, server: str, ca_cert: Path | None, user_name: str,
                      user: dict[str, str]) -> None:
    """A kubeconfig of the cluster `pyk8s` and one user, written 0600."""
    cluster: dict[str, object] = {"server": server}
    if ca_cert is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_cert.read_bytes()).decode()
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "pyk8s", "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": "pyk8s", "context": {"cluster": "pyk8s", "user": user_name}}],
        "current-context": "pyk8s",
        "preferences": {},
    }
    _write_private(path, yaml.safe_dump(cfg, sort_keys=False).encode())


def write_kubeconfig(path: Path, server: str, token: str, ca_cert: Path | None) -> None:
    _write_kubeconfig(path, server, ca_cert, "admin", {"token": token})


def issue_client_certificate(ca_cert_path: Path, ca_key_path: Path, common_name: str,
                             organizations: list[str] | tuple[str, ...] = (),
                             days: int = 365) -> tuple[bytes, bytes]:
    """A client certificate (CN = user name, one O per group: what the x509 authenticator
    reads) and its new EC P-256 key, signed by the CA: (cert PEM, key PEM)."""
    ca_cert = x509.load_pem_x509_certificate(Path(ca_cert_path).read_bytes())
    ca_key = serialization.load_pem_private_key(Path(ca_key_path).read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    now = datetime.datetime.now(datetime.timezone.utc)
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name(attrs))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def write_client_kubeconfig(path: Path, server: str, ca_cert: Path | None, cert_pem: bytes,
                            key_pem: bytes, user_name: str) -> None:
    """A kubeconfig authenticating with a client certificate (client-certificate-data /
    client-key-data), written 0600."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _write_kubeconfig(Path(path), server, ca_cert, user_name, {
        "client-certificate-data": base64.b64encode(cert_pem).decode(),
        "client-key-data": base64.b64encode(key_pem).decode()})

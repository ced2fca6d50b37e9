"""x509 client-certificate authentication (upstream's CommonNameUserConversion) and the
client-certificate helpers of certs.py."""
from __future__ import annotations

import datetime
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyk8s.apiserver.authn import Authenticator
from pyk8s.apiserver.certs import (ensure_credentials, issue_client_certificate,
                                   write_client_kubeconfig)
from pyk8s.client.rest import ClientConfig


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def self_signed(cn: str | None, eku: list[x509.ObjectIdentifier] | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else
                     [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "devs")])
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(key.public_key()).serial_number(1)
         .not_valid_before(now - datetime.timedelta(minutes=1))
         .not_valid_after(now + datetime.timedelta(hours=1)))
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return b.sign(key, hashes.SHA256())


def test_common_name_is_the_user_and_organizations_the_groups(tmp_path: Path) -> None:
    creds = ensure_credentials(tmp_path)
    cert_pem, key_pem = issue_client_certificate(creds.ca_cert, tmp_path / "tls" / "ca.key",
                                                 "jane", ["devs", "ops"], days=2)
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(creds.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key() == cert.public_key()
    authn = Authenticator({}, None)
    user = authn.authenticate_certificate(der(cert_pem))
    assert user is not None and user.username == "jane"
    assert user.groups == ("devs", "ops", "system:authenticated")
    assert user.uid == "" and user.extra == {}


def test_expired_and_not_yet_valid_certificates_are_refused(tmp_path: Path) -> None:
    creds = ensure_credentials(tmp_path)
    cert_pem, _ = issue_client_certificate(creds.ca_cert, tmp_path / "tls" / "ca.key", "jane",
                                           [], days=1)
    cert = x509.load_pem_x509_certificate(cert_pem)
    authn = Authenticator({}, None)
    d = der(cert_pem)
    assert authn.authenticate_certificate(d) is not None
    after = cert.not_valid_after_utc.timestamp() + 1
    before = cert.not_valid_before_utc.timestamp() - 1
    assert authn.authenticate_certificate(d, now=after) is None
    assert authn.authenticate_certificate(d, now=before) is None


def test_extended_key_usage_must_allow_client_auth() -> None:
    authn = Authenticator({}, None)

    def user(cert: x509.Certificate) -> str | None:
        u = authn.authenticate_certificate(cert.public_bytes(serialization.Encoding.DER))
        return u.username if u else None
    assert user(self_signed("a", [ExtendedKeyUsageOID.SERVER_AUTH])) is None
    assert user(self_signed("b", [ExtendedKeyUsageOID.SERVER_AUTH,
                                  ExtendedKeyUsageOID.CLIENT_AUTH])) == "b"
    assert user(self_signed("c", [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])) == "c"
    assert user(self_signed("d", None)) == "d"          # no EKU: any usage, as Go
    assert user(self_signed(None, None)) is None         # no CN: no user
    assert authn.authenticate_certificate(b"garbage") is None


def test_client_kubeconfig(tmp_path: Path) -> None:
    creds = ensure_credentials(tmp_path)
    cert_pem, key_pem = issue_client_certificate(creds.ca_cert, tmp_path / "tls" / "ca.key",
                                                 "system:kube-scheduler", [])
    path = tmp_path / "scheduler.kubeconfig"
    write_client_kubeconfig(path, "https://127.0.0.1:6443", creds.ca_cert, cert_pem, key_pem,
                            "system:kube-scheduler")
    assert path.stat().st_mode & 0o777 == 0o600
    cfg = yaml.safe_load(path.read_text())
    assert cfg["users"][0]["name"] == "system:kube-scheduler"
    cc = ClientConfig.from_kubeconfig(path)
    assert cc.token is None and cc.client_cert_data == cert_pem and cc.client_key_data == key_pem
    assert cc.ca_data == creds.ca_cert.read_bytes()

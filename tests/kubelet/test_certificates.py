"""The pure parts of kubelet certificates: CSRs (subject, SANs, usages, upstream's digested
name), the jittered rotation deadline, the one-file PEM store."""
from __future__ import annotations

import base64
import datetime
import hashlib
import random
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyk8s.kubelet.certificates import (CLIENT_SIGNER, CertificateStore, Subject,
                                        client_usages, csr_body, digested_name,
                                        jittered_fraction, key_pem, load_key_pair, make_csr,
                                        new_private_key, rotation_deadline, serving_usages)

UTC = datetime.timezone.utc


def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def _sign(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], csr_pem: bytes,
          seconds: float = 3600.0, eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH
          ) -> bytes:
    req = x509.load_pem_x509_csr(csr_pem)
    now = datetime.datetime.now(UTC)
    b = (x509.CertificateBuilder().subject_name(req.subject).issuer_name(ca[0].subject)
         .public_key(req.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(seconds=seconds))
         .add_extension(x509.ExtendedKeyUsage([eku]), critical=False))
    for ext in req.extensions:
        b = b.add_extension(ext.value, ext.critical)
    return b.sign(ca[1], hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_client_csr_subject_and_usages() -> None:
    key = new_private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    pem = make_csr(key, Subject.node("n1"))
    assert pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    req = x509.load_pem_x509_csr(pem)
    assert req.is_signature_valid
    assert [a.value for a in req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == \
        ["system:node:n1"]
    assert [a.value for a in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == \
        ["system:nodes"]
    assert not list(req.extensions)           # a client certificate has no SANs
    # key encipherment only for RSA keys, as upstream's kubelet.
    assert client_usages(key) == ["digital signature", "client auth"]
    rsa_key = rsa.generate_private_key(65537, 2048)
    assert client_usages(rsa_key) == ["digital signature", "key encipherment", "client auth"]
    assert serving_usages(key) == ["digital signature", "server auth"]
    assert serving_usages(rsa_key) == ["digital signature", "key encipherment", "server auth"]


def test_serving_csr_has_the_node_sans() -> None:
    key = new_private_key()
    req = x509.load_pem_x509_csr(make_csr(key, Subject.node(
        "n1", dns_names=["n1", "n1"], ip_addresses=["10.0.0.7", "fd00::7"])))
    san = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7", "fd00::7"]


def test_csr_body() -> None:
    body = csr_body(b"PEM", CLIENT_SIGNER, ["digital signature", "client auth"],
                    name="node-csr-x")
    assert body["metadata"] == {"name": "node-csr-x"}
    assert body["spec"] == {"request": base64.b64encode(b"PEM").decode(),
                            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                            "usages": ["digital signature", "client auth"]}
    assert "expirationSeconds" not in body["spec"]          # unset, as upstream's kubelet
    assert csr_body(b"PEM", CLIENT_SIGNER, [])["metadata"] == {"generateName": "csr-"}


def test_digested_name_is_upstreams() -> None:
    key = new_private_key()
    subject = Subject.node("n1")
    usages = ["digital signature", "client auth"]
    name = digested_name(key.public_key(), subject, usages)
    # Recomputed here the way upstream's bootstrap.digestedName does it.
    h = hashlib.new("sha512_256")
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")  # noqa: E731
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    for part in (der, b"system:node:n1", b"system:nodes", *(u.encode() for u in usages)):
        h.update(enc(part) + b"|")
    assert name == "node-csr-" + enc(h.digest()).decode()
    assert len(name) == len("node-csr-") + 43
    # Stable for one key and request; another key, name or usage list differs.
    assert digested_name(key.public_key(), subject, usages) == name
    assert digested_name(new_private_key().public_key(), subject, usages) != name
    assert digested_name(key.public_key(), Subject.node("n2"), usages) != name
    assert digested_name(key.public_key(), subject, usages[:1]) != name


def test_rotation_deadline_is_70_to_90_percent() -> None:
    nb = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    na = nb + datetime.timedelta(days=100)
    rng = random.Random(7)
    fractions = [jittered_fraction(rng) for _ in range(2000)]
    assert min(fractions) >= 0.7 and max(fractions) < 0.9
    assert min(fractions) < 0.71 and max(fractions) > 0.89      # spread over the range
    assert rotation_deadline(nb, na, 0.7) == nb + datetime.timedelta(days=70)
    assert rotation_deadline(nb, na, 0.9) == nb + datetime.timedelta(days=90)


def test_rotation_deadline_of_a_backdated_short_certificate() -> None:
    """The signer backdates notBefore by 5 minutes; a 20 s certificate would look 98 %
    spent on arrival. Counted from when it arrived, rotation comes 14–18 s later."""
    now = datetime.datetime(2026, 1, 1, 12, tzinfo=UTC)
    nb, na = now - datetime.timedelta(minutes=5), now + datetime.timedelta(seconds=20)
    assert rotation_deadline(nb, na, 0.7) < now                  # upstream's arithmetic
    assert rotation_deadline(nb, na, 0.7, received=now) == now + datetime.timedelta(seconds=14)
    assert rotation_deadline(nb, na, 0.9, received=now) == now + datetime.timedelta(seconds=18)
    # A certificate received before its notBefore: counted from notBefore.
    assert rotation_deadline(nb, na, 0.5, received=nb - datetime.timedelta(hours=1)) == \
        nb + (na - nb) / 2


def test_store_one_file_0600_and_pending_key(tmp_path: Path) -> None:
    ca = _ca()
    store = CertificateStore(tmp_path / "pki", "kubelet-client")
    assert store.current() is None
    key = store.pending_key()
    assert stat.S_IMODE(store.pending_key_path.stat().st_mode) == 0o600
    # The pending key survives a restart (the same CSR name is asked again).
    assert store.pending_key().private_numbers() == key.private_numbers()
    cert = _sign(ca, make_csr(key, Subject.node("n1")))
    pair = store.update(cert, key_pem(key))
    assert not store.pending_key_path.exists()
    path = store.current_path
    assert path.name == "kubelet-client-current.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert data.index(b"BEGIN CERTIFICATE") < data.index(b"PRIVATE KEY")   # cert, then key
    loaded = store.current()
    assert loaded is not None and loaded.cert == pair.cert
    assert loaded.common_name == "system:node:n1" and not loaded.expired()
    assert loaded.issued_by(ca[0].public_bytes(serialization.Encoding.PEM))
    assert not loaded.issued_by(_ca()[0].public_bytes(serialization.Encoding.PEM))
    assert loaded.issued_by(None)
    assert loaded.has_usage(ExtendedKeyUsageOID.CLIENT_AUTH)
    assert not loaded.has_usage(ExtendedKeyUsageOID.SERVER_AUTH)
    assert list(path.parent.iterdir()) == [path]     # no temporary files left behind


def test_mismatched_key_is_refused() -> None:
    ca = _ca()
    key = new_private_key()
    cert = _sign(ca, make_csr(key, Subject.node("n1")))
    try:
        load_key_pair(cert, key_pem(new_private_key()))
    except ValueError as e:
        assert "does not match" in str(e)
    else:
        raise AssertionError("a foreign key was accepted")


def test_sans_of_a_serving_pair() -> None:
    ca = _ca()
    key = new_private_key()
    cert = _sign(ca, make_csr(key, Subject.node("n1", ["n1"], ["127.0.0.1"])),
                 eku=ExtendedKeyUsageOID.SERVER_AUTH)
    pair = load_key_pair(cert, key_pem(key))
    assert pair.sans() == ({"n1"}, {"127.0.0.1"})
    assert pair.has_usage(ExtendedKeyUsageOID.SERVER_AUTH)

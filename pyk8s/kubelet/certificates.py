"""The pure parts of the kubelet's certificates (upstream's pkg/kubelet/certificate and
client-go's util/certificate): keys, certificate signing requests for a node's client and
serving certificates, the CSR's digested name, the rotation deadline, and the file store
(`<prefix>-current.pem`: certificate chain and private key in one PEM file, written
atomically, mode 0600)."""
from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)


def node_user(node_name: str) -> str:
    return NODE_USER_PREFIX + node_name


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """EC P-256, as upstream's keyutil.MakeEllipticPrivateKeyPEM."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    """The key as upstream's keyutil writes it (`EC PRIVATE KEY` / `RSA PRIVATE KEY`)."""
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def client_usages(key: PrivateKey) -> list[str]:
    """A kubelet client certificate's usages: `key encipherment` only for RSA keys (the
    key exchange an RSA key may do), as upstream's kubelet since 1.27."""
    usages = ["digital signature"]
    if isinstance(key, rsa.RSAPrivateKey):
        usages.append("key encipherment")
    return usages + ["client auth"]


def serving_usages(key: PrivateKey) -> list[str]:
    usages = ["digital signature"]
    if isinstance(key, rsa.RSAPrivateKey):
        usages.append("key encipherment")
    return usages + ["server auth"]


@dataclass(frozen=True)
class Subject:
    """What a node's certificate says: CN `system:node:<name>`, O `system:nodes`, and for
    a serving certificate its host names and IPs."""
    common_name: str
    organizations: tuple[str, ...] = (NODES_GROUP,)
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    @classmethod
    def node(cls, node_name: str, dns_names: Iterable[str] = (),
             ip_addresses: Iterable[str] = ()) -> "Subject":
        return cls(node_user(node_name), (NODES_GROUP,), tuple(dict.fromkeys(dns_names)),
                   tuple(dict.fromkeys(ip_addresses)))


def make_csr(key: PrivateKey, subject: Subject) -> bytes:
    """A PEM `CERTIFICATE REQUEST` signed by `key` (upstream's certutil.MakeCSR)."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in subject.organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, subject.common_name))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in subject.dns_names]
    for ip in subject.ip_addresses:
        sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def digested_name(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
                  subject: Subject, usages: Sequence[str]) -> str:
    """`node-csr-<hash>` (upstream's bootstrap digestedName): SHA-512/256 over the public
    key, CN, organizations and usages, each base64url-encoded and `|`-terminated, so one
    key asking for one certificate always names the same CSR (a restarted bootstrap finds
    its pending request instead of making another)."""
    h = hashlib.new("sha512_256")
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    for part in (der, subject.common_name.encode(), *(o.encode() for o in subject.organizations),
                 *(u.encode() for u in usages)):
        h.update(_b64(part).encode())
        h.update(b"|")
    return "node-csr-" + _b64(h.digest())


def csr_body(csr_pem: bytes, signer_name: str, usages: Sequence[str], name: str = "",
             expiration_seconds: int | None = None) -> dict[str, object]:
    """A certificates.k8s.io/v1 CertificateSigningRequest (generateName `csr-` without a
    name, as client-go's csr.RequestCertificate)."""
    md: dict[str, object] = {"name": name} if name else {"generateName": "csr-"}
    spec: dict[str, object] = {"request": base64.b64encode(csr_pem).decode(),
                               "signerName": signer_name, "usages": list(usages)}
    if expiration_seconds is not None:
        spec["expirationSeconds"] = expiration_seconds
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": md, "spec": spec}


# -- rotation ------------------------------------------------------------------------------
def jittered_fraction(rng: random.Random | None = None) -> float:
    """Where in a certificate's lifetime rotation starts: uniformly in [0.7, 0.9)
    (client-go: wait.Jitter(total, 0.2) - 0.3 × total)."""
    return 0.7 + 0.2 * (rng or random).random()


def rotation_deadline(not_before: datetime.datetime, not_after: datetime.datetime,
                      fraction: float, received: datetime.datetime | None = None
                      ) -> datetime.datetime:
    """When to request the next certificate: `fraction` of the way through the validity.
    `received` (a certificate just issued): the lifetime counts from then if the signer
    backdated notBefore by more than it, so a certificate shorter than its backdate (a
    test's short signing duration) does not look due the moment it arrives."""
    start = not_before
    if received is not None and received > start:
        start = received
    return start + (not_after - start) * fraction


# -- PEM and the file store ----------------------------------------------------------------
def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """The PEM blocks of `data`: (type, the block's text)."""
    return [(m.group(1).decode(), m.group(0)) for m in _PEM_BLOCK.finditer(data)]


@dataclass(frozen=True)
class KeyPair:
    """A certificate (chain) and its private key, parsed and as PEM."""
    cert: x509.Certificate
    key: PrivateKey
    cert_pem: bytes      # the chain, leaf first
    key_pem: bytes

    @property
    def pem(self) -> bytes:
        """Certificate chain then key: the store's one-file format (upstream's)."""
        return self.cert_pem + self.key_pem

    @property
    def not_before(self) -> datetime.datetime:
        return self.cert.not_valid_before_utc

    @property
    def not_after(self) -> datetime.datetime:
        return self.cert.not_valid_after_utc

    @property
    def common_name(self) -> str:
        cns = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(cns[0].value) if cns else ""

    def expired(self, now: datetime.datetime | None = None) -> bool:
        return (now or utcnow()) >= self.not_after

    def issued_by(self, ca_pem: bytes | None) -> bool:
        """Whether one of the CA bundle's certificates signed this one (True without a CA
        bundle: nothing to check against)."""
        if not ca_pem:
            return True
        for kind, block in pem_blocks(ca_pem):
            if kind != "CERTIFICATE":
                continue
            try:
                self.cert.verify_directly_issued_by(x509.load_pem_x509_certificate(block))
                return True
            except (ValueError, TypeError, InvalidSignature):
                continue
        return False

    def sans(self) -> tuple[set[str], set[str]]:
        """(DNS names, IP addresses) of the certificate."""
        try:
            ext = self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return set(), set()
        return (set(ext.value.get_values_for_type(x509.DNSName)),
                {str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)})

    def has_usage(self, oid: x509.ObjectIdentifier) -> bool:
        try:
            eku = self.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            return False
        return oid in eku.value or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku.value


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def parse_key(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


def load_key_pair(cert_pem: bytes, key_pem: bytes) -> KeyPair:
    """Parse a certificate chain and its key; ValueError if they do not belong together."""
    certs = b"".join(block for kind, block in pem_blocks(cert_pem) if kind == "CERTIFICATE")
    keys = [block for kind, block in pem_blocks(key_pem) if kind.endswith("PRIVATE KEY")]
    if not certs:
        raise ValueError("no certificate in PEM data")
    if not keys:
        raise ValueError("no private key in PEM data")
    cert = x509.load_pem_x509_certificate(certs)
    key = parse_key(keys[0])
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if (cert.public_key().public_bytes(serialization.Encoding.DER, pub) !=
            key.public_key().public_bytes(serialization.Encoding.DER, pub)):
        raise ValueError("the private key does not match the certificate")
    return KeyPair(cert, key, certs, keys[0])


def load_pem_file(path: Path) -> KeyPair:
    data = path.read_bytes()
    return load_key_pair(data, data)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (a temporary file renamed over it), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)   # readers see the old file or the new one, never half
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CertificateStore:
    """`<dir>/<prefix>-current.pem` (upstream's certificate.FileStore, without the dated
    files and symlink: the current file is replaced atomically), and a pending request's
    key in `<dir>/<prefix>.key.tmp` until its certificate arrives."""

    def __init__(self, dir_: Path, prefix: str) -> None:
        self.dir = dir_
        self.prefix = prefix

    @property
    def current_path(self) -> Path:
        return self.dir / f"{self.prefix}-current.pem"

    @property
    def pending_key_path(self) -> Path:
        return self.dir / f"{self.prefix}.key.tmp"

    def current(self) -> KeyPair | None:
        """The stored pair, None if missing or unreadable."""
        try:
            return load_pem_file(self.current_path)
        except (OSError, ValueError):
            return None

    def update(self, cert_pem: bytes, key_pem: bytes) -> KeyPair:
        pair = load_key_pair(cert_pem, key_pem)
        write_private(self.current_path, pair.pem)
        self.pending_key_path.unlink(missing_ok=True)
        return pair

    def pending_key(self) -> PrivateKey:
        """The key of a request in flight: reused across restarts (so the same CSR name
        is asked again), made on first use."""
        try:
            return parse_key(self.pending_key_path.read_bytes())
        except (OSError, ValueError):
            key = new_private_key()
            write_private(self.pending_key_path, key_pem(key))
            return key

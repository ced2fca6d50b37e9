"""The CSR signing controller, `csrsigning` (upstream's pkg/controller/certificates/signer
and its authority package).

It signs approved CertificateSigningRequests that have no certificate yet and no Failed
condition, for the four built-in signers, with one CA (`--cluster-signing-cert-file` /
`--cluster-signing-key-file`; upstream runs one controller per signer, each may have its
own CA — pyk8s has the single pair):

- `kubernetes.io/kube-apiserver-client`: usages client auth, optionally digital signature
  and key encipherment;
- `kubernetes.io/kube-apiserver-client-kubelet`: a kubelet client request (CN
  `system:node:<name>`, O exactly `system:nodes`, no SANs, usages digital signature +
  client auth (+ key encipherment));
- `kubernetes.io/kubelet-serving`: the same subject, DNS / IP SANs only, usages digital
  signature + server auth (+ key encipherment);
- `kubernetes.io/legacy-unknown`: anything.

A request that breaks its signer's rules gets the condition Failed (reason
`SignerValidationFailure`, the rule's message) and no certificate. The certificate
(PermissiveSigningPolicy): the request's subject and SANs, the requested key usages
(critical) and extended key usages, CA:false, no other extension; valid from now - 5 min
until now + duration (- 5 min for durations of 8 h or more), cut at the CA's own expiry.
The duration is `--cluster-signing-duration` (8760 h), or the CSR's
`spec.expirationSeconds` when shorter (but at least 10 min). Issued through
`certificatesigningrequests/<name>/status` (status.certificate, PEM). The CA files are
re-read when they change on disk.
"""
from __future__ import annotations

import base64
import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from pyk8s.client.informer import SharedInformerFactory
from pyk8s.controllers.certificates import (
    KUBE_APISERVER_CLIENT_KUBELET_SIGNER, KUBE_APISERVER_CLIENT_SIGNER,
    KUBELET_SERVING_SIGNER, LEGACY_UNKNOWN_SIGNER, CertificateController, add_condition,
    csr_path, csr_request, has_true_condition, is_approved, validate_kube_apiserver_client_usages,
    validate_kubelet_client_csr, validate_kubelet_serving_csr)

log = logging.getLogger("pyk8s.controllers.csrsigning")

Obj = dict[str, Any]
COMPONENT = "csrsigning"

DEFAULT_DURATION = 8760 * 3600.0       # --cluster-signing-duration (1 year)
MIN_DURATION = 600.0                   # spec.expirationSeconds lower bound (2 × backdate)
BACKDATE = datetime.timedelta(minutes=5)
SHORT = datetime.timedelta(hours=8)    # shorter certificates are not backdated at the end


class SigningError(Exception):
    pass


# -- which requests each signer accepts --------------------------------------------------------
SignerCheck = Callable[[x509.CertificateSigningRequest, list[str]], str | None]
SIGNER_CHECKS: dict[str, SignerCheck] = {
    KUBELET_SERVING_SIGNER: validate_kubelet_serving_csr,
    KUBE_APISERVER_CLIENT_KUBELET_SIGNER: validate_kubelet_client_csr,
    KUBE_APISERVER_CLIENT_SIGNER: lambda _req, usages: validate_kube_apiserver_client_usages(
        usages),
    LEGACY_UNKNOWN_SIGNER: lambda _req, _usages: None,  # no rules, for compatibility
}


def signer_validation_error(signer_name: str, req: x509.CertificateSigningRequest,
                            usages: list[str]) -> str | None:
    """Why the signer refuses `req`, or None (also None for signers not ours)."""
    check = SIGNER_CHECKS.get(signer_name)
    return check(req, usages) if check is not None else None


# -- key usages (authority/policies.go) ----------------------------------------------------------
_KEY_USAGE_FLAGS = {
    "signing": "digital_signature", "digital signature": "digital_signature",
    "content commitment": "content_commitment", "key encipherment": "key_encipherment",
    "key agreement": "key_agreement", "data encipherment": "data_encipherment",
    "cert sign": "key_cert_sign", "crl sign": "crl_sign", "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}
# In Go's x509.ExtKeyUsage order (the order upstream writes them in).
_EXT_KEY_USAGES: dict[str, ObjectIdentifier] = {
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "s/mime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": ObjectIdentifier("2.16.840.1.113730.4.1"),
}
_EKU_ORDER = list(dict.fromkeys(_EXT_KEY_USAGES.values()))


def key_usages(usages: list[str]) -> tuple[x509.KeyUsage | None, list[ObjectIdentifier]]:
    """The KeyUsage extension (None when no bit is set) and the extended key usages of the
    API's usage strings."""
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                           "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                           "encipher_only", "decipher_only"), False)
    ext: set[ObjectIdentifier] = set()
    unrecognized = []
    for u in usages:
        if u in _KEY_USAGE_FLAGS:
            flags[_KEY_USAGE_FLAGS[u]] = True
        elif u in _EXT_KEY_USAGES:
            ext.add(_EXT_KEY_USAGES[u])
        else:
            unrecognized.append(u)
    if unrecognized:
        raise SigningError("unrecognized usage values: [" +
                           " ".join(f'"{u}"' for u in unrecognized) + "]")
    ku = None
    if any(flags.values()):
        try:
            ku = x509.KeyUsage(**flags)
        except ValueError as e:  # encipher / decipher only without key agreement
            raise SigningError(str(e)) from None
    return ku, [oid for oid in _EKU_ORDER if oid in ext]


def certificate_duration(max_duration: float, expiration_seconds: int | None) -> float:
    """Upstream's signer.duration: the CSR's expirationSeconds when shorter than the
    signer's duration, never under 10 minutes."""
    if expiration_seconds is None:
        return max_duration
    requested = float(expiration_seconds)
    if requested > max_duration:
        return max_duration
    return max(requested, MIN_DURATION)


# -- the authority ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its key (authority.go)."""
    certificate: x509.Certificate
    private_key: Any

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> "CertificateAuthority":
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as e:
            raise SigningError(f"error reading CA cert: {e}") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as e:
            raise SigningError(f"error reading CA key: {e}") from None
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, pub) != \
                cert.public_key().public_bytes(serialization.Encoding.DER, pub):
            raise SigningError("the CA key does not match the CA certificate")
        return cls(cert, key)

    def _hash(self) -> hashes.HashAlgorithm | None:
        if isinstance(self.private_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
            return None
        if isinstance(self.private_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            return hashes.SHA256()
        raise SigningError(f"unsupported CA key type {type(self.private_key).__name__}")

    def sign(self, req: x509.CertificateSigningRequest, usages: list[str], ttl: float,
             now: datetime.datetime | None = None) -> x509.Certificate:
        """A certificate for `req` under PermissiveSigningPolicy (see the module docstring)."""
        if not req.is_signature_valid:
            raise SigningError("unable to verify certificate request signature")
        now = (now or datetime.datetime.now(datetime.timezone.utc)).replace(microsecond=0)
        ku, ekus = key_usages(usages)
        ttl_delta = datetime.timedelta(seconds=ttl)
        not_before = now - BACKDATE
        not_after = now + ttl_delta if ttl_delta < SHORT else now + ttl_delta - BACKDATE
        ca_not_after = self.certificate.not_valid_after_utc
        if not_after >= ca_not_after:
            not_after = ca_not_after
        if not_before >= ca_not_after:
            raise SigningError(f"the signer has expired: NotAfter={ca_not_after}")
        if now >= ca_not_after:
            raise SigningError("refusing to sign a certificate that expired in the past: "
                               f"NotAfter={ca_not_after}")
        builder = (x509.CertificateBuilder()
                   .subject_name(req.subject).issuer_name(self.certificate.subject)
                   .public_key(req.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after))
        if ku is not None:
            builder = builder.add_extension(ku, critical=True)
        if ekus:
            builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                        critical=True)
        try:
            ski = self.certificate.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier).value
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False)
        except x509.ExtensionNotFound:
            pass
        try:
            san = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            # Critical when the subject is empty (RFC 5280, as Go does).
            builder = builder.add_extension(san, critical=len(req.subject) == 0)
        except x509.ExtensionNotFound:
            pass
        return builder.sign(self.private_key, self._hash())


class CAProvider:
    """The CA from its two files, re-read when either changes (upstream's dynamic CA
    content)."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self._stamp: tuple[float, float] | None = None
        self._ca: CertificateAuthority | None = None
        self.current()  # unreadable files fail the controller's start

    def _read_stamp(self) -> tuple[float, float]:
        try:
            return os.stat(self.cert_file).st_mtime, os.stat(self.key_file).st_mtime
        except OSError as e:
            raise SigningError(f"error reading CA files: {e}") from None

    def current(self) -> CertificateAuthority:
        stamp = self._read_stamp()
        if self._ca is None or stamp != self._stamp:
            try:
                with open(self.cert_file, "rb") as f:
                    cert_pem = f.read()
                with open(self.key_file, "rb") as f:
                    key_pem = f.read()
            except OSError as e:
                raise SigningError(f"error reading CA files: {e}") from None
            self._ca = CertificateAuthority.from_pem(cert_pem, key_pem)
            self._stamp = stamp
        return self._ca


# -- the controller --------------------------------------------------------------------------------
class CSRSigningController:
    """See the module docstring."""

    def __init__(self, client: Any, factory: SharedInformerFactory, ca: CAProvider, *,
                 duration: float = DEFAULT_DURATION, workers: int = 5,
                 clock: Callable[[], datetime.datetime] | None = None) -> None:
        self.client = client
        self.ca = ca
        self.duration = duration
        self.clock = clock
        self.controller = CertificateController(COMPONENT, factory, self.handle, workers=workers)

    async def run(self) -> None:
        await self.controller.run()

    async def sync(self, key: str) -> None:
        await self.controller.sync(key)

    async def handle(self, csr: Obj) -> None:
        """Sign `csr` (the controller's copy) when approved, not failed, and ours."""
        if not is_approved(csr) or has_true_condition(csr, "Failed"):
            return
        spec = csr.get("spec") or {}
        signer = spec.get("signerName") or ""
        if signer not in SIGNER_CHECKS:
            return
        name = csr["metadata"]["name"]
        req = csr_request(csr, SigningError)
        usages = list(spec.get("usages") or [])
        problem = signer_validation_error(signer, req, usages)
        if problem is not None:
            log.info("%s: CSR %s fails %s's rules: %s", COMPONENT, name, signer, problem)
            add_condition(csr, "Failed", "SignerValidationFailure", problem)
            await self.client.update(csr_path(name, "status"), csr)
            return
        ttl = certificate_duration(self.duration, spec.get("expirationSeconds"))
        now = self.clock() if self.clock is not None else None
        try:
            cert = self.ca.current().sign(req, usages, ttl, now)
        except SigningError as e:
            raise SigningError(f"error auto signing csr: {e}") from None
        pem = cert.public_bytes(serialization.Encoding.PEM)
        csr.setdefault("status", {})["certificate"] = base64.b64encode(pem).decode()
        await self.client.update(csr_path(name, "status"), csr)
        log.info("%s: issued a certificate for CSR %s (%s, until %s)", COMPONENT, name, signer,
                 cert.not_valid_after_utc.isoformat())


__all__ = ["CSRSigningController", "CAProvider", "CertificateAuthority", "SigningError",
           "certificate_duration", "key_usages", "signer_validation_error", "DEFAULT_DURATION"]

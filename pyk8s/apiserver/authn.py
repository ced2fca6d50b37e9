"""Authentication: who is making a request.

Two kinds of bearer token, as in upstream: static tokens (the admin token, a member of
`system:masters`) and service-account JWTs (ES256, signed with the key in the data dir and
issued through `serviceaccounts/<name>/token`); and client certificates (x509: CN = user,
O = groups) that the TLS layer verified against `--client-ca-file`.
"""
from __future__ import annotations

import base64
import hmac
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                              encode_dss_signature)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class UserInfo:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


ADMIN = UserInfo("system:admin", groups=("system:masters", "system:authenticated"))
# `--anonymous-auth`: requests with no credentials, as upstream.
ANONYMOUS = UserInfo("system:anonymous", groups=("system:unauthenticated",))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class ServiceAccountSigner:
    """Issues and verifies service-account tokens (JWT, ES256)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.key = key
        pub = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        digest = hashes.Hash(hashes.SHA256())
        digest.update(pub)
        self.kid = _b64(digest.finalize())

    @classmethod
    def load_or_create(cls, path: Path) -> "ServiceAccountSigner":
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            path.chmod(0o600)
        return cls(key)

    def issue(self, namespace: str, name: str, sa_uid: str, audiences: list[str],
              expiration_seconds: int, now: float | None = None) -> tuple[str, int]:
        now = int(now if now is not None else time.time())
        exp = now + expiration_seconds
        header = {"alg": "ES256", "kid": self.kid}
        claims = {"aud": audiences, "exp": exp, "iat": now, "nbf": now, "iss": ISSUER,
                  "sub": f"system:serviceaccount:{namespace}:{name}",
                  "kubernetes.io": {"namespace": namespace,
                                    "serviceaccount": {"name": name, "uid": sa_uid}}}
        signing_input = _b64(orjson.dumps(header)) + "." + _b64(orjson.dumps(claims))
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input + "." + _b64(sig), exp

    def verify(self, token: str, now: float | None = None) -> dict[str, Any] | None:
        """The claims of a valid, unexpired token of ours, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = orjson.loads(_unb64(parts[0]))
            claims = orjson.loads(_unb64(parts[1]))
            sig = _unb64(parts[2])
        except (ValueError, orjson.JSONDecodeError):
            return None
        if header.get("alg") != "ES256" or header.get("kid") != self.kid or len(sig) != 64:
            return None
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            self.key.public_key().verify(der, f"{parts[0]}.{parts[1]}".encode(),
                                         ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return None
        now = now if now is not None else time.time()
        if claims.get("iss") != ISSUER or not isinstance(claims.get("exp"), int) or claims["exp"] < now:
            return None
        return claims


ServiceAccountLookup = Callable[[str, str], Awaitable[str | None]]  # (ns, name) → uid


@dataclass(frozen=True)
class _ClientCertificate:
    """What the x509 authenticator needs of a client certificate, parsed once."""
    user: UserInfo | None        # None: no CN
    not_before: float
    not_after: float
    usable: bool                 # parses, has a CN, allows client authentication


def _parse_client_certificate(der: bytes) -> _ClientCertificate:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return _ClientCertificate(None, 0.0, 0.0, False)
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        client_auth = ExtendedKeyUsageOID.CLIENT_AUTH in eku or \
            ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
    except x509.ExtensionNotFound:
        client_auth = True
    except ValueError:  # a malformed extension
        client_auth = False
    # Go's pkix.Name keeps the last CN of the subject; O values in order.
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    user = UserInfo(cns[-1], groups=(*orgs, "system:authenticated")) if cns and cns[-1] else None
    return _ClientCertificate(user, cert.not_valid_before_utc.timestamp(),
                              cert.not_valid_after_utc.timestamp(), client_auth and user is not None)


class Authenticator:
    def __init__(self, static_tokens: dict[str, UserInfo], signer: ServiceAccountSigner | None,
                 sa_uid: ServiceAccountLookup | None = None) -> None:
        self.static_tokens = static_tokens
        self.signer = signer
        self.sa_uid = sa_uid
        self._certificates: dict[bytes, _ClientCertificate] = {}  # DER → parsed
        # Service-account tokens whose signature was verified (ES256 costs ~130 µs): token →
        # (expiry, user). Their service account's uid is still checked on every request,
        # so a token dies with its ServiceAccount at once.
        self._verified: dict[str, tuple[float, UserInfo, str, str]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.static_tokens)

    def authenticate_request_certificate(self, request: Any) -> UserInfo | None:
        """The user of a request's client certificate, which the TLS layer verified against
        the client CA (aiohttp request; None without one)."""
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None:
            return None
        der = ssl_object.getpeercert(binary_form=True)
        return self.authenticate_certificate(der) if der else None

    def authenticate_certificate(self, der: bytes, now: float | None = None) -> UserInfo | None:
        """Upstream's x509 authenticator (CommonNameUserConversion): CN is the user name,
        each O a group, plus system:authenticated. The TLS layer verified the chain against
        the client CA; the certificate must also be valid `now` (a kept-alive connection
        can outlive it) and allow client authentication (no extended key usage, or
        clientAuth / any, as Go's x509 verification with ExtKeyUsageClientAuth)."""
        parsed = self._certificates.get(der)
        if parsed is None:
            parsed = _parse_client_certificate(der)
            if len(self._certificates) >= 1024:  # one entry per distinct client certificate
                self._certificates.pop(next(iter(self._certificates)))
            self._certificates[der] = parsed
        if not parsed.usable:
            return None
        now = time.time() if now is None else now
        if not parsed.not_before <= now <= parsed.not_after:
            return None
        return parsed.user

    async def authenticate(self, token: str) -> UserInfo | None:
        for known, user in self.static_tokens.items():
            if hmac.compare_digest(token, known):
                return user
        if self.signer is None:
            return None
        hit = self._verified.get(token)
        if hit is None or hit[0] < time.time():
            claims = self.signer.verify(token)
            if claims is None:
                return None
            k8s = claims.get("kubernetes.io") or {}
            ns, sa = k8s.get("namespace", ""), (k8s.get("serviceaccount") or {})
            user = UserInfo(f"system:serviceaccount:{ns}:{sa.get('name')}", uid=sa.get("uid", ""),
                            groups=("system:serviceaccounts", f"system:serviceaccounts:{ns}",
                                    "system:authenticated"))
            if len(self._verified) >= 8192:
                self._verified.clear()
            hit = self._verified[token] = (float(claims["exp"]), user, ns, sa.get("name", ""))
        _, user, ns, name = hit
        # Bound tokens die with their ServiceAccount, as upstream.
        if self.sa_uid is not None and await self.sa_uid(ns, name) != user.uid:
            return None
        return user

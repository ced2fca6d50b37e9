"""The kubelet API's authorization attributes (upstream's nodeAuthorizerAttributesGetter),
its 403 text, client-certificate users and the cached SubjectAccessReview / TokenReview."""
from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyk8s.kubelet import auth
from pyk8s.kubelet.auth import (CertificateAuthenticator, RequestAttributes,
                                SubjectAccessReviewAuthorizer, TokenAuthenticator, User,
                                access_review, certificate_user, forbidden_message,
                                request_attributes)

UTC = datetime.timezone.utc


@pytest.mark.parametrize("method,path,verb,sub", [
    ("GET", "/pods", "get", "proxy"),
    ("HEAD", "/healthz", "get", "proxy"),
    ("GET", "/containerLogs/ns/p/c", "get", "proxy"),
    ("POST", "/exec/ns/p/c", "create", "proxy"),
    ("GET", "/exec/ns/p/c", "get", "proxy"),
    ("POST", "/attach/ns/p/c", "create", "proxy"),
    ("POST", "/portForward/ns/p", "create", "proxy"),
    ("POST", "/run/ns/p/c", "create", "proxy"),
    ("PUT", "/pods", "update", "proxy"),
    ("PATCH", "/pods", "patch", "proxy"),
    ("DELETE", "/pods", "delete", "proxy"),
    ("GET", "/stats/summary", "get", "stats"),
    ("GET", "/stats", "get", "stats"),
    ("GET", "/stats/", "get", "stats"),
    ("GET", "/statsx", "get", "proxy"),          # a sub-path, not a prefix
    ("GET", "/metrics", "get", "metrics"),
    ("GET", "/metrics/resource", "get", "metrics"),
    ("GET", "/metrics/cadvisor", "get", "metrics"),
    ("GET", "/logs/syslog", "get", "log"),
    ("GET", "/logs/", "get", "log"),
    ("GET", "/spec/", "get", "spec"),
    ("OPTIONS", "/pods", "", "proxy"),
])
def test_request_attributes(method: str, path: str, verb: str, sub: str) -> None:
    a = request_attributes(method, path, "n1")
    assert (a.verb, a.resource, a.subresource, a.name, a.api_version) == \
        (verb, "nodes", sub, "n1", "v1")


def test_forbidden_text_is_upstreams() -> None:
    u = User("system:serviceaccount:default:default")
    assert forbidden_message(u, request_attributes("GET", "/stats/summary", "n1")) == \
        "Forbidden (user=system:serviceaccount:default:default, verb=get, resource=nodes, " \
        "subresource(s)=[stats])\n"
    assert forbidden_message(u, request_attributes("POST", "/exec/a/b/c", "n1")) == \
        "Forbidden (user=system:serviceaccount:default:default, verb=create, " \
        "resource=nodes, subresource(s)=[proxy])\n"


def test_access_review_body() -> None:
    u = User("alice", "uid-1", ("dev", "system:authenticated"), (("scopes", ("a", "b")),))
    body = access_review(u, request_attributes("GET", "/metrics", "n1"))
    assert body == {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                    "spec": {"resourceAttributes": {"verb": "get", "version": "v1",
                                                    "resource": "nodes",
                                                    "subresource": "metrics", "name": "n1"},
                             "user": "alice", "groups": ["dev", "system:authenticated"],
                             "uid": "uid-1", "extra": {"scopes": ["a", "b"]}}}


def _cert(cn: str, orgs: list[str], eku: list[x509.ObjectIdentifier] | None,
          days: float = 1.0) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    if cn:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    now = datetime.datetime.now(UTC)
    b = (x509.CertificateBuilder().subject_name(x509.Name(attrs))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]))
         .public_key(key.public_key()).serial_number(1)
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=days)))
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_certificate_user() -> None:
    u = certificate_user(_cert("kube-apiserver-kubelet-client", ["system:masters"],
                               [ExtendedKeyUsageOID.CLIENT_AUTH]))
    assert u == User("kube-apiserver-kubelet-client",
                     groups=("system:masters", "system:authenticated"))
    # No extended key usage at all: any usage (Go's x509 rules).
    assert certificate_user(_cert("a", [], None)) == User("a", groups=("system:authenticated",))
    # A serving-only certificate does not authenticate a client; neither does no CN.
    assert certificate_user(_cert("a", [], [ExtendedKeyUsageOID.SERVER_AUTH])) is None
    assert certificate_user(_cert("", ["g"], None)) is None
    assert certificate_user(b"not a certificate") is None


def test_certificate_validity_is_checked_per_request() -> None:
    der = _cert("a", [], None, days=1.0)
    authn = CertificateAuthenticator()
    now = datetime.datetime.now(UTC).timestamp()
    assert authn.user(der, now) is not None
    assert authn.user(der, now + 2 * 86400) is None       # cached, but expired by then


class _ReviewClient:
    """Answers reviews from a table; counts the calls."""

    def __init__(self, allowed: dict[str, bool]) -> None:
        self.allowed = allowed
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = False

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((path, body))
        if self.fail:
            raise ConnectionError("API server down")
        if body["kind"] == "TokenReview":
            tok = body["spec"]["token"]
            ok = tok in self.allowed
            return {"status": {"authenticated": ok, "user": {
                "username": tok, "groups": ["g"], "extra": {"k": ["v"]}} if ok else {}}}
        user = body["spec"]["user"]
        return {"status": {"allowed": self.allowed.get(user, False),
                           "reason": "RBAC: allowed" if self.allowed.get(user) else ""}}


async def test_subject_access_review_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _ReviewClient({"admin": True})
    authz = SubjectAccessReviewAuthorizer(client)  # type: ignore[arg-type]
    a: RequestAttributes = request_attributes("GET", "/pods", "n1")
    assert await authz.authorize(User("admin"), a) == (True, "RBAC: allowed")
    assert await authz.authorize(User("admin"), a) == (True, "RBAC: allowed")
    assert await authz.authorize(User("eve"), a) == (False, "")
    assert await authz.authorize(User("eve"), a) == (False, "")
    assert [p for p, _ in client.calls] == \
        ["/apis/authorization.k8s.io/v1/subjectaccessreviews"] * 2
    # Other attributes are another question.
    await authz.authorize(User("admin"), request_attributes("GET", "/stats/summary", "n1"))
    assert len(client.calls) == 3
    # Denials expire after 30 s, allows after 5 min (upstream's webhook cache TTLs).
    clock = [0.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    client.calls.clear()
    authz = SubjectAccessReviewAuthorizer(client)  # type: ignore[arg-type]
    await authz.authorize(User("admin"), a)
    await authz.authorize(User("eve"), a)
    clock[0] = 31.0
    await authz.authorize(User("admin"), a)
    await authz.authorize(User("eve"), a)
    assert [b["spec"]["user"] for _, b in client.calls] == ["admin", "eve", "eve"]
    clock[0] = 301.0
    await authz.authorize(User("admin"), a)
    assert [b["spec"]["user"] for _, b in client.calls][-1] == "admin"
    # An API server that cannot answer is an error (the kubelet answers 500), not a "no".
    client.fail = True
    with pytest.raises(ConnectionError):
        await authz.authorize(User("mallory"), a)


async def test_token_review_is_cached() -> None:
    client = _ReviewClient({"good": True})
    authn = TokenAuthenticator(client)  # type: ignore[arg-type]
    u = await authn.user("good")
    assert u == User("good", "", ("g",), (("k", ("v",)),))
    assert await authn.user("good") == u
    assert await authn.user("bad") is None and await authn.user("bad") is None
    assert len(client.calls) == 2

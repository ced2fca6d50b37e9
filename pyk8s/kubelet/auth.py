"""Who may use the kubelet API (upstream's pkg/kubelet/server/auth.go with the delegating
authenticator and authorizer the kubelet builds from its kubeconfig):

- authentication: a client certificate the TLS handshake verified against the client CA
  (`--client-ca-file`; CN = user, O = groups, as the API server's x509 authenticator),
  else a bearer token checked by a TokenReview (cached a minute);
- authorization: a SubjectAccessReview to the API server for `<verb> nodes/<subresource>`
  of this node (cached: allowed 5 min, denied 30 s, as upstream's webhook authorizer),
  the verb from the HTTP method and the subresource from the path."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyk8s.client.rest import RESTClient, resource_path

Obj = dict[str, Any]

TOKEN_CACHE_SECONDS = 60.0
ALLOWED_CACHE_SECONDS = 300.0     # upstream: --authorization-webhook-cache-authorized-ttl
DENIED_CACHE_SECONDS = 30.0       # upstream: --authorization-webhook-cache-unauthorized-ttl
CACHE_LIMIT = 10_000
AUTHENTICATED = "system:authenticated"

_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
          "DELETE": "delete"}
# Path prefixes with a subresource of their own; everything else is `proxy`.
_SUBRESOURCES = (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"),
                 ("/spec", "spec"))


@dataclass(frozen=True)
class User:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_review(cls, u: Obj) -> "User":
        extra = tuple(sorted((k, tuple(v or ())) for k, v in (u.get("extra") or {}).items()))
        return cls(str(u.get("username") or ""), str(u.get("uid") or ""),
                   tuple(u.get("groups") or ()), extra)


@dataclass(frozen=True)
class RequestAttributes:
    """What a kubelet request is, as a request to the API would be: `verb` on
    `nodes/<subresource>` named after this node."""
    verb: str
    subresource: str
    name: str
    path: str = ""
    resource: str = "nodes"
    api_version: str = "v1"


def is_subpath(subpath: str, path: str) -> bool:
    """Upstream's isSubpath: `path` itself or below it."""
    path = path.rstrip("/")
    return subpath == path or (subpath.startswith(path) and subpath[len(path)] == "/")


def request_attributes(method: str, path: str, node_name: str) -> RequestAttributes:
    """Upstream's nodeAuthorizerAttributesGetter: GET/HEAD → get, POST → create, PUT →
    update, PATCH → patch, DELETE → delete; /stats/* → stats, /metrics/* → metrics,
    /logs/* → log, /spec/* → spec, anything else (exec, attach, portForward,
    containerLogs, run, pods, healthz, …) → proxy."""
    sub = next((s for prefix, s in _SUBRESOURCES if is_subpath(path, prefix)), "proxy")
    return RequestAttributes(verb=_VERBS.get(method.upper(), ""), subresource=sub,
                             name=node_name, path=path)


def forbidden_message(user: User, a: RequestAttributes) -> str:
    """Upstream's 403 body (its subresources are a Go slice, hence the brackets)."""
    return (f"Forbidden (user={user.username}, verb={a.verb}, resource={a.resource}, "
            f"subresource(s)=[{a.subresource}])\n")


def authorization_error_message(user: User, a: RequestAttributes) -> str:
    """Upstream's 500 body when the SubjectAccessReview could not be made."""
    return (f"Authorization error (user={user.username}, verb={a.verb}, "
            f"resource={a.resource}, subresource={a.subresource})")


def access_review(user: User, a: RequestAttributes) -> Obj:
    """The SubjectAccessReview asking whether `user` may do `a`."""
    spec: Obj = {"resourceAttributes": {"verb": a.verb, "version": a.api_version,
                                        "resource": a.resource, "subresource": a.subresource,
                                        "name": a.name},
                 "user": user.username, "groups": list(user.groups)}
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": spec}


# -- authentication --------------------------------------------------------------------------
def certificate_user(der: bytes) -> User | None:
    """The user of a client certificate the handshake already verified against the client
    CA (chain and validity): CN is the user name, each O a group; None unless it may be
    used for client authentication (upstream's x509 authenticator checks the usage)."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if (ExtendedKeyUsageOID.CLIENT_AUTH not in eku and
                ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku):
            return None
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or not cns[0].value:
        return None
    groups = [str(o.value) for o in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return User(str(cns[0].value), groups=tuple(groups + [AUTHENTICATED]))


class _TTLCache:
    def __init__(self) -> None:
        self._items: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        hit = self._items.get(key)
        if hit is None or hit[0] <= time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, key: Any, value: Any, ttl: float) -> None:
        now = time.monotonic()
        if len(self._items) >= CACHE_LIMIT:
            self._items = {k: v for k, v in self._items.items() if v[0] > now}
            if len(self._items) >= CACHE_LIMIT:
                self._items.clear()
        self._items[key] = (now + ttl, value)


class TokenAuthenticator:
    """Bearer tokens: a TokenReview against the API server, results cached a minute."""

    def __init__(self, client: RESTClient) -> None:
        self.client = client
        self._cache = _TTLCache()

    async def user(self, token: str) -> User | None:
        found, user = self._cache.get(token)
        if found:
            return user  # type: ignore[no-any-return]
        review = await self.client.create(
            resource_path("authentication.k8s.io", "v1", "tokenreviews"),
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
             "spec": {"token": token}})
        st = review.get("status") or {}
        user = User.from_review(st.get("user") or {}) if st.get("authenticated") else None
        self._cache.put(token, user, TOKEN_CACHE_SECONDS)
        return user


class CertificateAuthenticator:
    """Client certificates, parsed once per certificate; each request also checks the
    validity period (a kept-alive connection can outlive its certificate)."""

    def __init__(self) -> None:
        self._cache = _TTLCache()

    def user(self, der: bytes, now: float | None = None) -> User | None:
        found, entry = self._cache.get(der)
        if not found:
            entry = None
            user = certificate_user(der)
            if user is not None:
                cert = x509.load_der_x509_certificate(der)
                entry = (user, cert.not_valid_before_utc.timestamp(),
                         cert.not_valid_after_utc.timestamp())
            self._cache.put(der, entry, TOKEN_CACHE_SECONDS)
        if entry is None:
            return None
        user, not_before, not_after = entry
        now = time.time() if now is None else now
        return user if not_before <= now <= not_after else None  # type: ignore[no-any-return]


# -- authorization ---------------------------------------------------------------------------
@dataclass
class SubjectAccessReviewAuthorizer:
    """Decisions by SubjectAccessReview (upstream's delegating webhook authorizer)."""
    client: RESTClient
    _cache: _TTLCache = field(default_factory=_TTLCache)

    async def authorize(self, user: User, a: RequestAttributes) -> tuple[bool, str]:
        """(allowed, reason); raises when the API server cannot be asked."""
        body = access_review(user, a)
        key = orjson.dumps(body["spec"], option=orjson.OPT_SORT_KEYS)
        found, decision = self._cache.get(key)
        if found:
            return decision  # type: ignore[no-any-return]
        review = await self.client.create(
            resource_path("authorization.k8s.io", "v1", "subjectaccessreviews"), body)
        st = review.get("status") or {}
        decision = (bool(st.get("allowed")) and not st.get("denied"),
                    str(st.get("reason") or st.get("evaluationError") or ""))
        self._cache.put(key, decision,
                        ALLOWED_CACHE_SECONDS if decision[0] else DENIED_CACHE_SECONDS)
        return decision

"""Registry credentials from a pod's imagePullSecrets, matched to an image as upstream's
credentialprovider keyring does (pkg/credentialprovider/keyring.go):

- Secrets of type `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`:
  `{"auths": {server: {username, password, auth}}}`) and the legacy
  `kubernetes.io/dockercfg` (`.dockercfg`: `{server: {...}}`); `auth` (base64 of
  `user:password`) wins over username / password.
- A server key loses its scheme and a `/v1/` or `/v2/` path prefix: `https://index.docker.io/v1/`
  becomes `index.docker.io`, which stands for docker.io.
- A key matches an image `host[:port]/path` when the ports are equal, the host has the same
  number of dot-separated parts each matching as a glob (`*.example.com`), and the key's
  path is a prefix of the image's; the most specific keys come first (reverse sorted).
  Docker Hub images also get `index.docker.io`'s credentials when nothing else matched.
"""
from __future__ import annotations

import base64
import binascii
import fnmatch
import logging
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import urlsplit

import orjson

log = logging.getLogger(__name__)

DEFAULT_REGISTRY_HOST = "index.docker.io"
DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
DOCKERCFG = "kubernetes.io/dockercfg"


@dataclass(frozen=True)
class RegistryCredential:
    server: str            # the key as written in the secret ("https://index.docker.io/v1/")
    username: str = ""
    password: str = ""
    identity_token: str = ""   # `identitytoken`: an OAuth refresh token
    registry_token: str = ""   # `registrytoken`: a bearer token to send as is

    @property
    def key(self) -> str:
        """The keyring key: host[:port][/path] without scheme and /v1/, /v2/."""
        return keyring_key(self.server)

    def basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def __repr__(self) -> str:   # never print the password
        return f"RegistryCredential(server={self.server!r}, username={self.username!r})"


def keyring_key(server: str) -> str:
    value = server.strip()
    if not value.startswith(("https://", "http://")):
        value = "https://" + value
    parts = urlsplit(value)
    path = parts.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return parts.netloc + path if path and path != "/" else parts.netloc


def _entry(server: str, e: Any) -> RegistryCredential | None:
    if not isinstance(e, dict):
        return None
    user, pw = str(e.get("username") or ""), str(e.get("password") or "")
    auth = e.get("auth")
    if auth:
        try:
            decoded = base64.b64decode(str(auth), validate=False).decode()
        except (binascii.Error, UnicodeDecodeError):
            log.warning("imagePullSecret entry for %s: auth is not base64", server)
            return None
        if ":" not in decoded:
            log.warning("imagePullSecret entry for %s: auth is not user:password", server)
            return None
        user, pw = decoded.split(":", 1)
        pw = pw.strip("\x00")
    return RegistryCredential(server=server, username=user, password=pw,
                              identity_token=str(e.get("identitytoken") or ""),
                              registry_token=str(e.get("registrytoken") or ""))


def _decode(data: dict[str, Any], key: str) -> Any:
    raw = data.get(key)
    if not raw:
        return None
    try:
        return orjson.loads(base64.b64decode(raw))
    except (binascii.Error, ValueError):
        return None


def credentials_from_secrets(secrets: Iterable[dict[str, Any]]) -> list[RegistryCredential]:
    """The credentials in Secrets of type dockerconfigjson / dockercfg (others and
    malformed ones are skipped, as upstream's MakeDockerKeyring skips them)."""
    out: list[RegistryCredential] = []
    for s in secrets or ():
        if not isinstance(s, dict):
            continue
        data = dict(s.get("data") or {})
        for k, v in (s.get("stringData") or {}).items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        typ = s.get("type", "")
        cfg: Any = None
        if typ == DOCKERCONFIGJSON or (not typ and ".dockerconfigjson" in data):
            doc = _decode(data, ".dockerconfigjson")
            cfg = doc.get("auths") if isinstance(doc, dict) else None
        elif typ == DOCKERCFG or (not typ and ".dockercfg" in data):
            cfg = _decode(data, ".dockercfg")
        if not isinstance(cfg, dict):
            continue
        for server, e in cfg.items():
            c = _entry(str(server), e)
            if c is not None:
                out.append(c)
    return out


def as_credentials(items: Iterable[Any]) -> list[RegistryCredential]:
    """RegistryCredentials from a mixed list: RegistryCredential, Secret dicts, or dicts
    `{"server" | "registry": host, "username", "password" | "auth"}`."""
    out: list[RegistryCredential] = []
    secrets = []
    for it in items or ():
        if isinstance(it, RegistryCredential):
            out.append(it)
        elif isinstance(it, dict) and ("data" in it or "stringData" in it or "type" in it):
            secrets.append(it)
        elif isinstance(it, dict):
            server = str(it.get("server") or it.get("registry") or "")
            c = _entry(server, it)
            if c is not None and server:
                out.append(c)
    return out + credentials_from_secrets(secrets)


def _split_host_port(host: str) -> tuple[str, str]:
    if host.startswith("["):
        end = host.find("]")
        h, rest = host[:end + 1], host[end + 1:]
        return h, rest[1:] if rest.startswith(":") else ""
    if ":" in host:
        h, p = host.rsplit(":", 1)
        return h, p
    return host, ""


def urls_match(glob_key: str, target: str) -> bool:
    """upstream's URLsMatchStr on schemeless `host[:port][/path]` strings."""
    g = urlsplit("https://" + glob_key)
    t = urlsplit("https://" + target)
    gh, gp = _split_host_port(g.netloc)
    th, tp = _split_host_port(t.netloc)
    if gp != tp:
        return False
    gparts, tparts = gh.split("."), th.split(".")
    if len(gparts) != len(tparts):
        return False
    for gpart, tpart in zip(gparts, tparts):
        if not fnmatch.fnmatchcase(tpart, gpart):
            return False
    return t.path.startswith(g.path)


def is_default_registry_match(image: str) -> bool:
    parts = image.split("/", 1)
    if not parts[0]:
        return False
    if len(parts) == 1:
        return True
    if parts[0] in ("docker.io", "index.docker.io"):
        return True
    return not any(c in parts[0] for c in ".:")


def lookup(credentials: Iterable[RegistryCredential], image: str) -> list[RegistryCredential]:
    """The credentials for `image` (its normalized name without tag, e.g.
    `docker.io/library/busybox`), most specific key first."""
    by_key: dict[str, list[RegistryCredential]] = {}
    for c in credentials:
        by_key.setdefault(c.key, []).append(c)
    out: list[RegistryCredential] = []
    for k in sorted(by_key, reverse=True):
        if urls_match(k, image):
            out.extend(by_key[k])
    if out:
        return out
    if is_default_registry_match(image) and DEFAULT_REGISTRY_HOST in by_key:
        return list(by_key[DEFAULT_REGISTRY_HOST])
    return []

"""Bootstrap data: what every API server of one cluster shares, kept in the datastore (k3s's
bootstrap data), so that a second and third server join with the cluster token alone.

What is shared (paths in DATA_DIR): the cluster CA `tls/ca.crt` + `tls/ca.key` (it issues
every serving, client and kubelet certificate and verifies client certificates), the
service-account signing key `tls/sa.key` (a token issued by one server is valid on all),
the admin token `token` and the node token `node-token`. Each server still issues its own
serving certificate from the shared CA, with its own addresses, and its own client
certificates (kubelet client, controller manager, scheduler).

Where: the etcd key `/pyk8s/bootstrap`, outside `/registry/` (no resource, no watch sees
it), sealed with the cluster token: AES-256-GCM under a key derived from the token with
PBKDF2-HMAC-SHA256 (random salt and nonce, the key name as authenticated data), so the
datastore alone does not give the CA away.

When an API server on etcd starts (before it serves):

* no bootstrap data yet: it makes its own CA, keys and tokens if it has none, seals them and
  creates the key if still absent (an etcd transaction comparing the key's mod revision
  with 0): of servers starting at the same time exactly one wins, the others read the
  winner's data as joiners do;
* bootstrap data present and a token given: it unseals the data (a wrong token stops the
  server with an error) and writes the files into its data dir, replacing its own; when the
  CA changes, its serving certificate (issued by the old CA) is removed so it is issued
  again;
* bootstrap data present and no token given (an independent server on a shared etcd, or
  one whose CA and tokens were copied by hand): it runs with its own files, as before.

The token: `--token`, `--token-file`, else DATA_DIR/server-token (written by every server
that stored or joined, so a restart needs no flag); a first server without any makes a
random one there (k3s's server/token): give that file to the servers that join.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import secrets
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pyk8s.storage import KeyExists, KeyNotFound, Storage, StorageUnavailable

log = logging.getLogger(__name__)

KEY = "/pyk8s/bootstrap"
TOKEN_FILE = "server-token"
SHARED_FILES = ("tls/ca.crt", "tls/ca.key", "tls/sa.key", "token", "node-token")
# Issued from the CA by each server itself: stale once another CA replaces its own.
CA_DERIVED_FILES = ("tls/server.crt", "tls/server.key")
PBKDF2_ITERATIONS = 200_000
FORMAT_VERSION = 1
# How long start-up waits for etcd to take the bootstrap data (a leader election, …).
UNAVAILABLE_WAIT = 60.0


class BootstrapError(Exception):
    """The bootstrap data cannot be used (sealed with another token, malformed)."""


# -- the token ----------------------------------------------------------------------------------
def given_token(data_dir: Path, token: str | None, token_file: str | None) -> str | None:
    """The cluster token: `--token`, `--token-file`'s content, else DATA_DIR/server-token's;
    None when there is none."""
    if token:
        return token.strip()
    if token_file:
        return Path(token_file).read_text().strip() or None
    own = data_dir / TOKEN_FILE
    if own.exists():
        return own.read_text().strip() or None
    return None


# -- sealing ------------------------------------------------------------------------------------
def _key(token: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", token.encode(), salt, PBKDF2_ITERATIONS, 32)


def seal(files: dict[str, bytes], token: str) -> bytes:
    """The stored value: `files` (DATA_DIR-relative path → content) sealed with `token`."""
    salt, nonce = os.urandom(16), os.urandom(12)
    plain = orjson.dumps({p: base64.b64encode(c).decode() for p, c in sorted(files.items())})
    sealed = AESGCM(_key(token, salt)).encrypt(nonce, plain, KEY.encode())
    return orjson.dumps({"version": FORMAT_VERSION, "kdf": "pbkdf2-sha256",
                         "iterations": PBKDF2_ITERATIONS,
                         "salt": base64.b64encode(salt).decode(),
                         "nonce": base64.b64encode(nonce).decode(),
                         "data": base64.b64encode(sealed).decode()})


def unseal(value: bytes, token: str) -> dict[str, bytes]:
    """The files sealed in `value`; BootstrapError when `token` is not the one they were
    sealed with or the value is malformed."""
    try:
        rec = orjson.loads(value)
        if rec.get("version") != FORMAT_VERSION or rec.get("kdf") != "pbkdf2-sha256":
            raise BootstrapError(f"bootstrap data of an unknown format (version "
                                 f"{rec.get('version')!r}, kdf {rec.get('kdf')!r})")
        salt, nonce, sealed = (base64.b64decode(rec[k]) for k in ("salt", "nonce", "data"))
        key = hashlib.pbkdf2_hmac("sha256", token.encode(), salt, int(rec["iterations"]), 32)
        plain = AESGCM(key).decrypt(nonce, sealed, KEY.encode())
        files = {str(p): base64.b64decode(c) for p, c in orjson.loads(plain).items()}
    except InvalidTag:
        raise BootstrapError("the cluster's bootstrap data in the datastore is sealed with "
                             "another token: pass the cluster's token (--token or "
                             "--token-file: the first server's DATA_DIR/server-token)") from None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise BootstrapError(f"malformed bootstrap data in the datastore: {e}") from None
    missing = [p for p in SHARED_FILES if p not in files]
    if missing:
        raise BootstrapError(f"bootstrap data in the datastore lacks {', '.join(missing)}")
    return files


# -- the data dir -------------------------------------------------------------------------------
def _write(path: Path, content: bytes) -> None:
    """Replace `path` atomically: private (0600) unless it is a certificate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                 0o644 if path.suffix == ".crt" else 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.replace(tmp, path)


def ensure_local_files(data_dir: Path) -> dict[str, bytes]:
    """This server's own shared files, made now when missing (a first start)."""
    from pyk8s.apiserver.authn import ServiceAccountSigner
    from pyk8s.apiserver.certs import ensure_credentials
    ensure_credentials(data_dir)
    ServiceAccountSigner.load_or_create(data_dir / "tls" / "sa.key")
    return {p: (data_dir / p).read_bytes() for p in SHARED_FILES}


def install(data_dir: Path, files: dict[str, bytes]) -> list[str]:
    """Write the shared files that differ from the data dir's; the paths replaced."""
    changed = []
    for p in SHARED_FILES:
        path = data_dir / p
        try:
            same = path.read_bytes() == files[p]
        except FileNotFoundError:
            same = False
        if not same:
            _write(path, files[p])
            changed.append(p)
    if {"tls/ca.crt", "tls/ca.key"} & set(changed):
        for p in CA_DERIVED_FILES:
            (data_dir / p).unlink(missing_ok=True)
    return changed


# -- the datastore ------------------------------------------------------------------------------
async def share_bootstrap_data(storage: Storage, data_dir: Path, token: str | None,
                               wait: float = UNAVAILABLE_WAIT) -> None:
    """Store this server's bootstrap data, or install the cluster's (module docstring).
    Retries while etcd is unavailable (up to `wait` seconds); raises BootstrapError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            await _share(storage, data_dir, token)
            return
        except StorageUnavailable as e:
            if loop.time() >= deadline:
                raise
            log.warning("bootstrap data: the datastore is unavailable (%s); retrying", e)
            await asyncio.sleep(1.0)


async def _share(storage: Storage, data_dir: Path, token: str | None) -> None:
    try:
        stored = (await storage.get(KEY)).value
    except KeyNotFound:
        own = ensure_local_files(data_dir)
        new_token = token or secrets.token_hex(24)
        try:
            await storage.create(KEY, seal(own, new_token))
        except KeyExists:   # another server stored its data first: join it instead
            stored = (await storage.get(KEY)).value
        else:
            _write(data_dir / TOKEN_FILE, (new_token + "\n").encode())
            log.info("bootstrap data: stored this server's CA, keys and tokens in the "
                     "datastore; other servers join with the token in %s",
                     data_dir / TOKEN_FILE)
            return
        if token is None:
            raise BootstrapError("another server stored the cluster's bootstrap data at the "
                                 "same time: start this one with its token (--token or "
                                 "--token-file: that server's DATA_DIR/server-token)")
    if token is None:
        ensure_local_files(data_dir)
        log.warning("bootstrap data: the datastore holds a cluster's CA, keys and tokens, "
                    "but no --token was given: this server runs with its own (pass the "
                    "cluster's token to share them)")
        return
    changed = install(data_dir, unseal(stored, token))
    _write(data_dir / TOKEN_FILE, (token + "\n").encode())
    if changed:
        log.info("bootstrap data: joined the cluster; from the datastore: %s",
                 ", ".join(changed))

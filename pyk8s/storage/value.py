"""Value transformers: stored bytes ↔ plain bytes (encryption at rest), no Kubernetes meaning.

Modelled on upstream's `k8s.io/apiserver/pkg/storage/value` and its `encrypt/{identity,aes,
secretbox}` packages, byte for byte, so values either side wrote can be read by the other:

- `Identity`: the value as is; reading a value that starts with `k8s:enc:` fails.
- `AESCBC`: 16-byte random IV, then AES-CBC of the value with PKCS#7 padding (no
  authentication).
- `AESGCM`: 12-byte random nonce, then AES-GCM ciphertext and 16-byte tag; the storage key
  is the authenticated data, so a value copied under another key does not decrypt.
- `Secretbox`: 24-byte random nonce, then NaCl secretbox (XSalsa20-Poly1305: tag, then
  ciphertext).
- `PrefixTransformers`: picks by prefix. Writes use the first entry and prepend its prefix;
  reads try every entry whose prefix the value starts with, in order, and report the value
  stale when an entry other than the first read it (so an update rewrites it with the
  current one, even when nothing else changed).

The context passed along (`context`) is the storage key: the authenticated data of AES-GCM.
"""
from __future__ import annotations

import os
from typing import Protocol, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM as _AESGCM
import nacl.exceptions
import nacl.secret

ENCRYPTED_PREFIX = b"k8s:enc:"
AES_BLOCK = 16
GCM_NONCE = 12
GCM_TAG = 16
SECRETBOX_NONCE = nacl.secret.SecretBox.NONCE_SIZE  # 24
SECRETBOX_OVERHEAD = nacl.secret.SecretBox.MACBYTES  # 16
AES_KEY_SIZES = (16, 24, 32)
SECRETBOX_KEY_SIZES = (32,)

_SHORT = "the stored data was shorter than the required size"


class TransformError(Exception):
    """A value cannot be transformed; the message is upstream's."""


class Transformer(Protocol):
    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        """The plain value and whether it is stale (a write should rewrite it)."""

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        """The value to store."""


class Identity:
    """No transformation; refuses encrypted data (upstream's NewEncryptCheckTransformer)."""

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        if data.startswith(ENCRYPTED_PREFIX):
            raise TransformError("identity transformer tried to read encrypted data")
        return data, False

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        return data


class AESCBC:
    """AES-CBC with PKCS#7 padding: IV (16 bytes) ‖ ciphertext."""

    def __init__(self, key: bytes) -> None:
        self._algorithm = algorithms.AES(key)  # ValueError on a wrong key size

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        if len(data) < AES_BLOCK:
            raise TransformError(_SHORT)
        iv, body = data[:AES_BLOCK], data[AES_BLOCK:]
        if len(body) % AES_BLOCK:
            raise TransformError("the stored data is not a multiple of the block size")
        if not body:
            raise TransformError("invalid PKCS7 data (empty or not padded)")
        decryptor = Cipher(self._algorithm, modes.CBC(iv)).decryptor()
        plain = decryptor.update(body) + decryptor.finalize()
        pad = plain[-1]
        if pad == 0 or pad > len(plain):
            raise TransformError("invalid PKCS7 data (empty or not padded)")
        if plain[-pad:] != bytes([pad]) * pad:
            raise TransformError("invalid padding on input")
        return plain[:-pad], False

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        pad = AES_BLOCK - len(data) % AES_BLOCK
        iv = os.urandom(AES_BLOCK)
        encryptor = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        return iv + encryptor.update(data + bytes([pad]) * pad) + encryptor.finalize()


class AESGCM:
    """AES-GCM with a random 96-bit nonce: nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes);
    the context (storage key) is authenticated."""

    def __init__(self, key: bytes) -> None:
        self._aead = _AESGCM(key)  # ValueError on a wrong key size

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        if len(data) < GCM_NONCE:
            raise TransformError(_SHORT)
        try:
            return self._aead.decrypt(data[:GCM_NONCE], data[GCM_NONCE:], context), False
        except InvalidTag:
            raise TransformError("cipher: message authentication failed") from None

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        nonce = os.urandom(GCM_NONCE)
        return nonce + self._aead.encrypt(nonce, data, context)


class Secretbox:
    """NaCl secretbox (XSalsa20-Poly1305) with a 32-byte key: nonce (24 bytes) ‖ tag ‖
    ciphertext. The context is not used (as upstream)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError(f"expected key size 32 for secretbox provider, got {len(key)}")
        self._box = nacl.secret.SecretBox(key)

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        if len(data) < SECRETBOX_NONCE + SECRETBOX_OVERHEAD:
            raise TransformError(_SHORT)
        try:
            return self._box.decrypt(data[SECRETBOX_NONCE:], data[:SECRETBOX_NONCE]), False
        except nacl.exceptions.CryptoError:
            # Upstream's message for a failed secretbox.Open, odd as it reads.
            raise TransformError("output array was not large enough for encryption") from None

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        nonce = os.urandom(SECRETBOX_NONCE)
        return bytes(self._box.encrypt(data, nonce))


class PrefixTransformers:
    """Chooses a transformer by the value's prefix (upstream's value.NewPrefixTransformers).

    `entries` are (prefix, transformer) pairs; the first one writes. `no_match` is the error
    when no entry's prefix matches. An entry with an empty prefix (identity) that fails is
    skipped silently; failures of the others are reported when nothing else could read the
    value (a later entry with the same prefix, an older key of the same provider, may)."""

    def __init__(self, entries: Sequence[tuple[bytes, Transformer]], no_match: str) -> None:
        if not entries:
            raise ValueError("at least one transformer is required")
        self.entries = list(entries)
        self.no_match = no_match

    @property
    def write_prefix(self) -> bytes:
        """The prefix every written value starts with (nested prefixes concatenated)."""
        prefix, t = self.entries[0]
        return prefix + (t.write_prefix if isinstance(t, PrefixTransformers) else b"")

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        errors: list[str] = []
        for i, (prefix, t) in enumerate(self.entries):
            if not data.startswith(prefix):
                continue
            try:
                plain, stale = t.from_storage(data[len(prefix):], context)
            except TransformError as e:
                if prefix:
                    errors.append(str(e))
                continue
            return plain, stale or i != 0
        if errors:
            raise TransformError(_aggregate(errors))
        raise TransformError(self.no_match)

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        prefix, t = self.entries[0]
        return prefix + t.to_storage(data, context)


def _aggregate(messages: list[str]) -> str:
    """Go's utilerrors.Reduce(NewAggregate(errs)): one message as is, several as `[a, b]`."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


__all__ = ["AESCBC", "AESGCM", "AES_KEY_SIZES", "ENCRYPTED_PREFIX", "Identity",
           "PrefixTransformers", "SECRETBOX_KEY_SIZES", "Secretbox", "TransformError",
           "Transformer"]

"""Value transformers: round trips, prefixes, wrong keys, and upstream's byte layouts
(checked with the bare primitives, as upstream's Go code reads them)."""
from __future__ import annotations

import os

import nacl.bindings
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM as RawGCM

from pyk8s.storage.value import (AESCBC, AESGCM, Identity, PrefixTransformers, Secretbox,
                                 TransformError)

KEY = b"/registry/secrets/default/s"
PLAIN = b'{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}'
# Keys of upstream's own encryptionconfig tests ("secret is secure", 32 letters and digits).
AES16 = b"secret is secure"
SB32 = b"abcdefghijklmnopqrstuvwxyz123456"


# Fixed parameters (ids must be the same in every xdist worker).
@pytest.mark.parametrize("make,key", [
    (AESCBC, AES16), (AESCBC, bytes(range(24))), (AESCBC, bytes(range(32))),
    (AESGCM, AES16), (AESGCM, bytes(range(24))), (AESGCM, bytes(range(32))), (Secretbox, SB32),
], ids=["aescbc-16", "aescbc-24", "aescbc-32", "aesgcm-16", "aesgcm-24", "aesgcm-32",
        "secretbox"])
@pytest.mark.parametrize("plain", [b"", b"x", b"0123456789abcdef", PLAIN,
                                   bytes(range(256)) * 20],
                         ids=["empty", "one-byte", "one-block", "object", "5k"])
def test_round_trip_random_and_not_plain(make: type, key: bytes, plain: bytes) -> None:
    t = make(key)
    a, b = t.to_storage(plain, KEY), t.to_storage(plain, KEY)
    assert a != b  # random IV / nonce each time
    if len(plain) >= 8:  # shorter ones turn up in random bytes by chance
        assert plain not in a
    assert t.from_storage(a, KEY) == (plain, False)
    assert t.from_storage(b, KEY) == (plain, False)


def test_wrong_key_sizes_are_refused() -> None:
    for make in (AESCBC, AESGCM):
        with pytest.raises(ValueError):
            make(b"short")
    with pytest.raises(ValueError, match="expected key size 32 for secretbox provider, got 16"):
        Secretbox(AES16)


def test_aescbc_layout_iv_then_pkcs7_padded_cbc() -> None:
    stored = AESCBC(AES16).to_storage(PLAIN, KEY)
    pad = 16 - len(PLAIN) % 16
    assert len(stored) == 16 + len(PLAIN) + pad
    d = Cipher(algorithms.AES(AES16), modes.CBC(stored[:16])).decryptor()
    raw = d.update(stored[16:]) + d.finalize()
    assert raw == PLAIN + bytes([pad]) * pad
    # A full block of padding when the value fills its blocks.
    stored = AESCBC(AES16).to_storage(b"0123456789abcdef", KEY)
    assert len(stored) == 16 + 32


def test_aescbc_reads_what_the_bare_primitive_wrote() -> None:
    iv = os.urandom(16)
    e = Cipher(algorithms.AES(AES16), modes.CBC(iv)).encryptor()
    stored = iv + e.update(b"hello" + b"\x0b" * 11) + e.finalize()
    assert AESCBC(AES16).from_storage(stored, b"any key: not authenticated") == (b"hello", False)


def test_aescbc_errors_are_upstreams() -> None:
    t = AESCBC(AES16)
    with pytest.raises(TransformError, match="the stored data was shorter than the required size"):
        t.from_storage(b"short", KEY)
    with pytest.raises(TransformError, match="not a multiple of the block size"):
        t.from_storage(os.urandom(16 + 5), KEY)
    iv = os.urandom(16)
    e = Cipher(algorithms.AES(AES16), modes.CBC(iv)).encryptor()
    bad_padding = iv + e.update(b"hello" + b"\x0b" * 10 + b"\x05") + e.finalize()
    with pytest.raises(TransformError, match="invalid padding on input"):
        t.from_storage(bad_padding, KEY)
    e = Cipher(algorithms.AES(AES16), modes.CBC(iv)).encryptor()
    zero_padding = iv + e.update(b"hello" + b"\x00" * 11) + e.finalize()
    with pytest.raises(TransformError, match=r"invalid PKCS7 data \(empty or not padded\)"):
        t.from_storage(zero_padding, KEY)


def test_aescbc_wrong_key_fails_or_yields_no_plain_value() -> None:
    """CBC is not authenticated: a wrong key fails the padding check, except by chance
    (about 1 in 256), and then never yields the plain value."""
    stored = [AESCBC(AES16).to_storage(PLAIN, KEY) for _ in range(200)]
    other = AESCBC(b"another 16 b key")
    failures = 0
    for s in stored:
        try:
            plain, _ = other.from_storage(s, KEY)
        except TransformError:
            failures += 1
        else:
            assert plain != PLAIN
    assert failures >= 190


def test_aesgcm_layout_nonce_then_sealed_with_the_key_authenticated() -> None:
    stored = AESGCM(AES16).to_storage(PLAIN, KEY)
    assert len(stored) == 12 + len(PLAIN) + 16
    assert RawGCM(AES16).decrypt(stored[:12], stored[12:], KEY) == PLAIN
    nonce = os.urandom(12)
    theirs = nonce + RawGCM(AES16).encrypt(nonce, PLAIN, KEY)
    assert AESGCM(AES16).from_storage(theirs, KEY) == (PLAIN, False)


def test_aesgcm_wrong_key_or_moved_value_fails() -> None:
    stored = AESGCM(AES16).to_storage(PLAIN, KEY)
    with pytest.raises(TransformError, match="cipher: message authentication failed"):
        AESGCM(b"another 16 b key").from_storage(stored, KEY)
    with pytest.raises(TransformError, match="cipher: message authentication failed"):
        AESGCM(AES16).from_storage(stored, b"/registry/secrets/default/other")
    with pytest.raises(TransformError, match="shorter than the required size"):
        AESGCM(AES16).from_storage(b"tiny", KEY)


def test_secretbox_layout_nonce_then_tag_and_ciphertext() -> None:
    stored = Secretbox(SB32).to_storage(PLAIN, KEY)
    assert len(stored) == 24 + 16 + len(PLAIN)
    # Go's secretbox.Open(box=stored[24:], nonce=stored[:24]) is NaCl's crypto_secretbox_open.
    assert nacl.bindings.crypto_secretbox_open(stored[24:], stored[:24], SB32) == PLAIN
    nonce = os.urandom(24)
    theirs = nonce + nacl.bindings.crypto_secretbox(PLAIN, nonce, SB32)
    assert Secretbox(SB32).from_storage(theirs, b"not authenticated") == (PLAIN, False)


def test_secretbox_wrong_key_fails() -> None:
    stored = Secretbox(SB32).to_storage(PLAIN, KEY)
    with pytest.raises(TransformError, match="output array was not large enough"):
        Secretbox(b"A" * 32).from_storage(stored, KEY)
    with pytest.raises(TransformError, match="shorter than the required size"):
        Secretbox(SB32).from_storage(stored[:30], KEY)


def test_identity_passes_plain_values_and_refuses_encrypted_ones() -> None:
    assert Identity().to_storage(PLAIN, KEY) == PLAIN
    assert Identity().from_storage(PLAIN, KEY) == (PLAIN, False)
    with pytest.raises(TransformError, match="identity transformer tried to read encrypted data"):
        Identity().from_storage(b"k8s:enc:aescbc:v1:key1:xxxx", KEY)


def _aescbc(*keys: tuple[str, bytes]) -> PrefixTransformers:
    return PrefixTransformers([(f"{n}:".encode(), AESCBC(k)) for n, k in keys],
                              "no matching key was found for the provided AES transformer")


def test_prefix_transformers_write_first_and_read_any_marking_stale() -> None:
    k1, k2 = (b"1" * 32, b"2" * 32)
    old = PrefixTransformers([(b"k8s:enc:aescbc:v1:", _aescbc(("key1", k1)))], "no match")
    new = PrefixTransformers([(b"k8s:enc:aescbc:v1:", _aescbc(("key2", k2), ("key1", k1))),
                              (b"", Identity())], "no matching prefix found")
    assert new.write_prefix == b"k8s:enc:aescbc:v1:key2:"
    written_old = old.to_storage(PLAIN, KEY)
    assert written_old.startswith(b"k8s:enc:aescbc:v1:key1:")
    assert new.from_storage(written_old, KEY) == (PLAIN, True)  # an older key: stale
    written_new = new.to_storage(PLAIN, KEY)
    assert written_new.startswith(b"k8s:enc:aescbc:v1:key2:")
    assert new.from_storage(written_new, KEY) == (PLAIN, False)
    assert new.from_storage(PLAIN, KEY) == (PLAIN, True)  # plain, read by identity: stale
    with pytest.raises(TransformError, match="no matching key was found for the provided AES"):
        old.from_storage(written_new, KEY)


def test_prefix_transformers_errors() -> None:
    only_identity = PrefixTransformers([(b"", Identity())], "no matching prefix found")
    encrypted = _aescbc(("key1", AES16)).to_storage(PLAIN, KEY)
    with pytest.raises(TransformError, match="^no matching prefix found$"):
        only_identity.from_storage(b"k8s:enc:aescbc:v1:" + encrypted, KEY)
    # Two providers sharing a prefix and a key name: the first's failure does not stop the
    # second; when both fail, both messages are reported.
    def gcm(key: bytes) -> PrefixTransformers:
        return PrefixTransformers([(b"key1:", AESGCM(key))], "no matching key")
    k_old, k_new = b"o" * 16, b"n" * 16
    two = PrefixTransformers([(b"k8s:enc:aesgcm:v1:", gcm(k_new)),
                              (b"k8s:enc:aesgcm:v1:", gcm(k_old))], "none")
    stored = b"k8s:enc:aesgcm:v1:" + gcm(k_old).to_storage(PLAIN, KEY)
    assert two.from_storage(stored, KEY) == (PLAIN, True)
    with pytest.raises(TransformError, match="^cipher: message authentication failed$"):
        two.from_storage(stored, b"/registry/secrets/default/moved")
    key2_only = PrefixTransformers([(b"key2:", AESGCM(k_old))], "no key2")
    mixed = PrefixTransformers([(b"k8s:enc:aesgcm:v1:", gcm(k_new)),
                                (b"k8s:enc:aesgcm:v1:", key2_only)], "none")
    with pytest.raises(TransformError,
                       match=r"^\[cipher: message authentication failed, no key2\]$"):
        mixed.from_storage(stored, KEY)
    with pytest.raises(ValueError):
        PrefixTransformers([], "none")

"""TransformingStorage: the whole storage conformance suite through an encrypting decorator
(memory, SQLite, etcd), then what the decorator adds: values encrypted underneath, stale
reads after a key rotation, unreadable values, and the watch cache over them."""
from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import AsyncIterator

import orjson
import pytest

from pyk8s.apiserver.app import APIServer, ServerConfig
from pyk8s.storage.interface import (KeyValue, Storage, StorageInternalError,
                                     UnreadableValues)
from pyk8s.storage.memory import MemoryStorage
from pyk8s.storage.transforming import TransformerFor, TransformingStorage
from pyk8s.storage.value import AESGCM, Identity, PrefixTransformers, Transformer
from pyk8s.watch.cache import WatchCache
from tests.etcd_cluster import EtcdCluster
from tests.storage.test_conformance import (  # noqa: F401 — collected here, on `store` below
    backend_store, etcd_server, take, assert_quiet, test_compaction,
    test_compaction_during_replay_raises, test_concurrent_creates_with_failures,
    test_concurrent_increments_all_land, test_create_get, test_delete,
    test_delete_expected_revision, test_expected_revision_conflict,
    test_expected_revision_conflict_during_fn, test_guaranteed_update,
    test_list_prefix_sorted_and_isolated, test_non_bytes_value_rejected_alone,
    test_revisions_strictly_increase, test_update_after_compaction_keeps_prev_value,
    test_update_fn_none_writes_nothing, test_update_fn_raising_propagates,
    test_watch_delete_and_update_values, test_watch_ends_on_close,
    test_watch_from_current_revision_is_live_only,
    test_watch_many_history_chunks, test_watch_no_gap_no_duplicate_with_concurrent_writes,
    test_watch_prefix_filtering, test_watch_replays_history_then_live)

K1, K2 = b"1" * 32, b"2" * 32
GCM = b"k8s:enc:aesgcm:v1:"


def aesgcm(*keys: tuple[str, bytes], identity: bool = False) -> PrefixTransformers:
    """An `aesgcm` provider with `keys` (the first writes), optionally identity after it."""
    named = PrefixTransformers([(f"{n}:".encode(), AESGCM(k)) for n, k in keys],
                               "no matching key was found for the provided AES transformer")
    entries: list[tuple[bytes, Transformer]] = [(GCM, named)]
    if identity:
        entries.append((b"", Identity()))
    return PrefixTransformers(entries, "no matching prefix found")


@pytest.fixture(params=["memory", "sqlite", "etcd"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """Every key encrypted with AES-GCM (its storage key authenticated)."""
    t = aesgcm(("key1", K1))
    async with backend_store(request, tmp_path,
                             lambda s: TransformingStorage(s, lambda key: t)) as s:
        yield s


# -- what the decorator adds (memory underneath) --------------------------------------------

SECRET = "/registry/secrets/default/s"
CONFIGMAP = "/registry/configmaps/default/c"


def secrets_only(t: Transformer) -> TransformerFor:
    """`t` for Secrets' keys, identity for the others."""
    identity = Identity()
    return lambda key: t if key.startswith("/registry/secrets/") else identity


async def test_values_are_encrypted_underneath_and_plain_above() -> None:
    inner = MemoryStorage()
    s = TransformingStorage(inner, secrets_only(aesgcm(("key1", K1))))
    kv = await s.create(SECRET, b'{"password":"hunter2"}')
    assert kv.value == b'{"password":"hunter2"}'
    raw = (await inner.get(SECRET)).value
    assert raw.startswith(b"k8s:enc:aesgcm:v1:key1:") and b"hunter2" not in raw
    assert (await s.get(SECRET)).value == b'{"password":"hunter2"}'
    await s.create(CONFIGMAP, b'{"plain":true}')
    assert (await inner.get(CONFIGMAP)).value == b'{"plain":true}'
    kvs, _ = await s.list("/registry/")
    assert [kv.value for kv in kvs] == [b'{"plain":true}', b'{"password":"hunter2"}']
    assert not any(kv.stale for kv in kvs)


async def test_rotation_reads_old_values_as_stale_and_rewrites_them() -> None:
    inner = MemoryStorage()
    old = TransformingStorage(inner, secrets_only(aesgcm(("key1", K1))))
    await old.create(SECRET, b"v")
    new = TransformingStorage(inner, secrets_only(aesgcm(("key2", K2), ("key1", K1))))
    kv = await new.get(SECRET)
    assert (kv.value, kv.stale) == (b"v", True)
    seen: list[KeyValue] = []

    def same(cur: KeyValue) -> bytes:
        seen.append(cur)
        return cur.value

    out = await new.guaranteed_update(SECRET, same)
    assert seen[0].stale and (out.value, out.stale) == (b"v", False)
    assert out.mod_revision > kv.mod_revision
    assert (await inner.get(SECRET)).value.startswith(b"k8s:enc:aesgcm:v1:key2:")
    assert not (await new.get(SECRET)).stale
    # Plain values written before encryption was configured are stale too.
    await inner.create("/registry/secrets/default/plain", b"p")
    with_identity = TransformingStorage(inner, secrets_only(aesgcm(("key2", K2),
                                                                   identity=True)))
    assert (await with_identity.get("/registry/secrets/default/plain")).stale


async def test_unreadable_values_are_errors_not_garbage() -> None:
    inner = MemoryStorage()
    await TransformingStorage(inner, secrets_only(aesgcm(("key1", K1)))).create(SECRET, b"v")
    await inner.create(CONFIGMAP, b"{}")
    lacking = TransformingStorage(inner, secrets_only(aesgcm(("key2", K2))))
    msg = "no matching key was found for the provided AES transformer"
    with pytest.raises(StorageInternalError, match=msg) as ei:
        await lacking.get(SECRET)
    assert ei.value.key == SECRET
    with pytest.raises(StorageInternalError, match=msg):
        await lacking.guaranteed_update(SECRET, lambda cur: b"new")
    with pytest.raises(UnreadableValues) as li:
        await lacking.list("/registry/")
    assert [kv.key for kv in li.value.readable] == [CONFIGMAP]
    assert li.value.errors == {SECRET: msg}
    assert li.value.revision == await inner.current_revision()
    assert str(li.value) == f'unable to transform key "{SECRET}": {msg}'
    # No encryption configured for secrets any more: identity refuses encrypted data.
    plain = TransformingStorage(inner, lambda key: Identity())
    with pytest.raises(StorageInternalError, match="identity transformer tried to read"):
        await plain.get(SECRET)
    # A value moved to another key does not decrypt (AES-GCM authenticates the key).
    raw = (await inner.get(SECRET)).value
    await inner.create("/registry/secrets/default/moved", raw)
    reader = TransformingStorage(inner, secrets_only(aesgcm(("key1", K1))))
    with pytest.raises(StorageInternalError, match="message authentication failed"):
        await reader.get("/registry/secrets/default/moved")


async def test_watch_skips_unreadable_events_and_reports_progress() -> None:
    inner = MemoryStorage()
    writer = TransformingStorage(inner, secrets_only(aesgcm(("key1", K1))))
    lacking = TransformingStorage(inner, secrets_only(aesgcm(("key2", K2), ("key1", K1))))
    reader = TransformingStorage(inner, secrets_only(aesgcm(("key2", K2))))
    start = await inner.current_revision()
    plain_watch = reader.watch("/registry/", start)
    progress_watch = reader.watch_with_progress("/registry/", start)
    r1 = (await writer.create(SECRET, b"old")).mod_revision      # key1: unreadable
    r2 = (await lacking.guaranteed_update(SECRET, lambda kv: b"new")).mod_revision  # key2
    r3 = (await writer.create(CONFIGMAP, b"cm")).mod_revision
    evs = await take(plain_watch, 2)
    assert [(e.key, e.value, e.revision) for e in evs] == [(SECRET, b"new", r2),
                                                           (CONFIGMAP, b"cm", r3)]
    assert evs[0].prev_value == b""  # the previous value could not be read
    await assert_quiet(plain_watch)
    evs = await take(progress_watch, 3)
    assert [(e.type, e.revision) for e in evs] == [("PROGRESS", r1), ("PUT", r2), ("PUT", r3)]
    r4 = (await reader.delete(SECRET)).mod_revision
    (d,) = await take(plain_watch, 1)
    assert (d.type, d.value, d.prev_value, d.revision) == ("DELETE", b"new", b"new", r4)
    await plain_watch.aclose()  # type: ignore[attr-defined]
    await progress_watch.aclose()  # type: ignore[attr-defined]


async def test_watch_cache_logs_and_skips_unreadable_values() -> None:
    inner = MemoryStorage()
    writer = TransformingStorage(inner, secrets_only(aesgcm(("key1", K1))))
    await writer.create(SECRET, orjson.dumps({"metadata": {"name": "s"}}))
    await writer.create(CONFIGMAP, orjson.dumps({"metadata": {"name": "c"}}))
    await inner.create("/registry/configmaps/default/garbage", b"k8s:enc:aescbc:v1:x:junk")
    reader = TransformingStorage(inner, secrets_only(aesgcm(("key2", K2))))
    cache = WatchCache(reader)
    await cache.start()
    try:
        assert list(cache.resource("/registry/secrets/").objects) == []
        assert list(cache.resource("/registry/configmaps/").objects) == [CONFIGMAP]
        # Live: an unreadable write still moves the cache's revision (consistent reads).
        rev = (await writer.create("/registry/secrets/default/t",
                                   orjson.dumps({"metadata": {"name": "t"}}))).mod_revision
        assert await asyncio.wait_for(cache.consistent_rev(), 3) == rev
        await inner.create("/registry/configmaps/default/junk2", b"not json")
        rev = (await reader.create("/registry/secrets/default/u",
                                   orjson.dumps({"metadata": {"name": "u"}}))).mod_revision
        assert await asyncio.wait_for(cache.consistent_rev(), 3) == rev
        assert list(cache.resource("/registry/secrets/").objects) == [
            "/registry/secrets/default/u"]
    finally:
        await cache.stop()


async def test_store_update_rewrites_stale_values_and_skips_fresh_no_ops() -> None:
    """An update that changes nothing rewrites a value read with an older key (upstream's
    stale read: `kubectl get -o json | kubectl replace -f -` rotates keys)."""
    inner = MemoryStorage()
    config = ServerConfig(compaction_interval=0)
    first = APIServer(TransformingStorage(inner, secrets_only(aesgcm(("key1", K1)))), config)
    await first.start()
    secrets = first.store(first.catalogue.lookup("", "v1", "secrets"))  # type: ignore[arg-type]
    await secrets.create("default", {"metadata": {"name": "s"},
                                     "data": {"password": "aHVudGVyMg=="}})
    # A second API server on the same storage with the rotated configuration.
    rotated = APIServer(TransformingStorage(inner, secrets_only(aesgcm(("key2", K2),
                                                                       ("key1", K1)))), config)
    await rotated.start()
    try:
        secrets = rotated.store(rotated.catalogue.lookup("", "v1", "secrets"))  # type: ignore[arg-type]
        before = await secrets.get("default", "s")
        obj, _, _ = await secrets.update("default", "s", lambda cur: cur)
        assert int(obj["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
        assert (await inner.get(SECRET)).value.startswith(b"k8s:enc:aesgcm:v1:key2:")
        again, _, _ = await secrets.update("default", "s", lambda cur: cur)  # fresh: a no-op
        assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
        dry, _, _ = await secrets.update("default", "s", lambda cur: cur, dry_run=True)
        assert dry["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
        assert (await secrets.get("default", "s"))["data"] == {"password": "aHVudGVyMg=="}
    finally:
        await rotated.stop()
        await first.stop()


async def test_etcd_holds_encrypted_values(etcd_server: EtcdCluster) -> None:
    """Written through the decorator, read raw by a second client of the same etcd."""
    from pyk8s.storage.etcd import EtcdStorage
    ns = f"/t-{uuid.uuid4().hex[:12]}"
    raw = await EtcdStorage.open(etcd_server.endpoints, namespace=ns, wait=10)
    s = TransformingStorage(await EtcdStorage.open(etcd_server.endpoints, namespace=ns,
                                                   wait=10),
                            secrets_only(aesgcm(("key1", K1))))
    try:
        await s.create(SECRET, b"hunter2")
        stored = (await raw.get(SECRET)).value
        assert stored.startswith(b"k8s:enc:aesgcm:v1:key1:") and b"hunter2" not in stored
        assert (await s.get(SECRET)).value == b"hunter2"
    finally:
        await s.close()
        await raw.close()

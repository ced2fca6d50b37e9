"""A Storage decorator that passes every value through a value transformer (encryption at
rest), chosen per key; like upstream's etcd3 store calling its transformer on each write
and read. Whatever sits above (the watch cache, the registry) sees plain values only.

- Writes (`create`, the new value of `guaranteed_update`) store `to_storage(value)`.
- Reads (`get`, `list`, the current value `guaranteed_update` hands its fn, the value
  `delete` returns, watch events and their previous values) give `from_storage(value)`.
  A value read through a transformer other than the current writer is marked
  `KeyValue.stale`, so an update that changes nothing still rewrites it (upstream's stale
  read: that is how a key rotation reaches every object).
- A value that cannot be read is a `StorageInternalError` on `get`, `guaranteed_update` and
  `delete`; `list` raises `UnreadableValues` carrying the readable rest; a watch event whose
  value cannot be read is logged and left out (with `watch_with_progress` a PROGRESS event
  at its revision takes its place, so consistent reads still reach the current revision).

The storage key is each transformation's context (AES-GCM's authenticated data).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import AsyncIterator, Callable

from .interface import (Event, KeyValue, Storage, StorageInternalError, UnreadableValues,
                        UpdateFn)
from .memory import call_update_fn
from .value import TransformError, Transformer

log = logging.getLogger(__name__)

TransformerFor = Callable[[str], Transformer]
"""The transformer of a storage key."""


class TransformingStorage(Storage):
    def __init__(self, inner: Storage, transformer_for: TransformerFor) -> None:
        self.inner = inner
        self.transformer_for = transformer_for

    # -- helpers ------------------------------------------------------------------------------
    def _read(self, kv: KeyValue) -> KeyValue:
        """`kv` with its plain value (the same object when the transformer changed nothing)."""
        try:
            plain, stale = self.transformer_for(kv.key).from_storage(kv.value, kv.key.encode())
        except TransformError as e:
            raise StorageInternalError(kv.key, str(e)) from None
        if plain is kv.value and not stale:
            return kv
        return dataclasses.replace(kv, value=plain, stale=stale)

    def _write(self, key: str, value: bytes) -> bytes:
        if not isinstance(value, bytes):
            raise TypeError(f"{key}: value must be bytes, not {type(value).__name__}")
        return self.transformer_for(key).to_storage(value, key.encode())

    # -- writes -------------------------------------------------------------------------------
    async def create(self, key: str, value: bytes) -> KeyValue:
        stored = self._write(key, value)
        kv = await self.inner.create(key, stored)
        return kv if stored is value else dataclasses.replace(kv, value=value)

    async def guaranteed_update(self, key: str, fn: UpdateFn,
                                expected_revision: int | None = None) -> KeyValue:
        read: dict[bytes, KeyValue] = {}  # stored value → what fn was given
        written: dict[bytes, bytes] = {}  # stored value → plain value

        async def transformed_fn(current: KeyValue) -> bytes | None:
            plain = self._read(current)
            read[current.value] = plain
            new = await call_update_fn(fn, plain)
            if new is None:
                return None
            stored = self._write(key, new)
            written[stored] = new
            return stored

        kv = await self.inner.guaranteed_update(key, transformed_fn, expected_revision)
        if kv.value in written:
            return dataclasses.replace(kv, value=written[kv.value])
        if kv.value in read:  # fn left it as it was
            return read[kv.value]
        return self._read(kv)

    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        return self._read(await self.inner.delete(key, expected_revision))

    # -- reads --------------------------------------------------------------------------------
    async def get(self, key: str) -> KeyValue:
        return self._read(await self.inner.get(key))

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        kvs, rev = await self.inner.list(prefix)
        out: list[KeyValue] = []
        errors: dict[str, str] = {}
        for kv in kvs:
            try:
                out.append(self._read(kv))
            except StorageInternalError as e:
                errors[kv.key] = str(e)
        if errors:
            raise UnreadableValues(prefix, out, rev, errors)
        return out, rev

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        return _TransformedWatch(self, self.inner.watch(prefix, from_revision), progress=False)

    def watch_with_progress(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        return _TransformedWatch(self, self.inner.watch_with_progress(prefix, from_revision),
                                 progress=True)

    # -- the rest is the inner storage's -------------------------------------------------------
    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)

    async def compacted_revision(self) -> int:
        return await self.inner.compacted_revision()

    async def close(self) -> None:
        await self.inner.close()


class _TransformedWatch:
    """The inner storage's watch with plain values. Registered when created (the inner
    watch is), as `Storage.watch` requires."""

    def __init__(self, storage: TransformingStorage, inner: AsyncIterator[Event],
                 progress: bool) -> None:
        self._storage = storage
        self._inner = inner
        self._progress = progress

    def __aiter__(self) -> _TransformedWatch:
        return self

    async def __anext__(self) -> Event:
        while True:
            ev = await self._inner.__anext__()
            if ev.type == "PROGRESS":
                return ev
            out = self._transformed(ev)
            if out is not None:
                return out
            if self._progress:
                return Event("PROGRESS", "", b"", ev.revision)

    def _transformed(self, ev: Event) -> Event | None:
        """The event with plain values; None when its value cannot be read. A previous
        value that cannot be read is given as b"" (the new value is what consumers apply)."""
        transformer = self._storage.transformer_for(ev.key)
        context = ev.key.encode()
        try:
            value, _ = transformer.from_storage(ev.value, context)
        except TransformError as e:
            log.error("skipping the %s event of %s at revision %d: the value cannot be read: "
                      "%s", ev.type, ev.key, ev.revision, e)
            return None
        prev = ev.prev_value
        if prev is not None:
            if prev is ev.value or prev == ev.value:  # DELETE events carry the value twice
                prev = value
            else:
                try:
                    prev, _ = transformer.from_storage(prev, context)
                except TransformError as e:
                    log.error("the previous value of %s at revision %d cannot be read: %s",
                              ev.key, ev.revision, e)
                    prev = b""
        if value is ev.value and prev is ev.prev_value:
            return ev
        return dataclasses.replace(ev, value=value, prev_value=prev)

    async def aclose(self) -> None:
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()


__all__ = ["TransformerFor", "TransformingStorage"]

"""Cluster IPs and node ports held in storage: one key per allocated value.

Rules:

* a value is taken by creating its key — `/registry/ranges/serviceips/<ip>`,
  `/registry/ranges/servicenodeports/<port>` — with storage `create`, which fails with
  KeyExists when anyone holds it: this API server, another one on the same storage, or this
  one before a restart. A value is therefore never handed out twice.
* the key's value names its owner (the Service's namespace, name and uid, like upstream's
  IPAddress `parentRef`) and when it was taken. Releasing deletes the key, and only when the
  owner asking is the one recorded (a key re-taken by another Service stays).
* choosing a free value reads the watch cache's copy of the keys, which may lag: KeyExists
  then only means "try the next one".
* the watch cache keeps these keys under the resource prefix `/registry/ranges/`, which no
  API resource uses, so they never show up in an API list or watch.
* dry runs write nothing: a requested IP is only checked against the range (as upstream's
  dry-run IP allocator), a requested port against the range and the ports in use; a dynamic
  dry-run IP is the range's network address and dynamic dry-run ports count up from 32769
  (the placeholders upstream's dry-run allocators answer with).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Union

import orjson

from pyk8s.api import meta
from pyk8s.registry.service.ranges import PortRange, ServiceIPRange, pick
from pyk8s.storage import interface as st
from pyk8s.watch.cache import WatchCache

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Range = Union[ServiceIPRange, PortRange]

ROOT = "/registry/ranges/"
IP_PREFIX = ROOT + "serviceips/"
PORT_PREFIX = ROOT + "servicenodeports/"


class AllocationError(Exception):
    """Why a value could not be taken; str() is upstream's message."""


class NotInRange(AllocationError):
    pass


class AlreadyAllocated(AllocationError):
    pass


class RangeFull(AllocationError):
    def __init__(self) -> None:
        super().__init__("range is full")


@dataclass(frozen=True)
class Owner:
    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, svc: Obj) -> "Owner":
        md = svc.get("metadata") or {}
        return cls(str(md.get("namespace") or ""), str(md.get("name") or ""),
                   str(md.get("uid") or ""))

    def holds(self, record: Obj) -> bool:
        """Whether `record` (a key's value) names this owner: by uid when both have one."""
        ref = (record.get("spec") or {}).get("parentRef") or {}
        if self.uid and ref.get("uid"):
            return bool(ref["uid"] == self.uid)
        return bool(ref.get("namespace") == self.namespace and ref.get("name") == self.name)


def record_owner(record: Obj) -> tuple[str, str]:
    ref = (record.get("spec") or {}).get("parentRef") or {}
    return str(ref.get("namespace") or ""), str(ref.get("name") or "")


def record_age(record: Obj, now: float | None = None) -> float:
    """Seconds since the key was taken (infinite for a record without the time)."""
    at = record.get("allocatedAt")
    if not isinstance(at, (int, float)):
        return float("inf")
    return (time.time() if now is None else now) - float(at)


class Allocator:
    """Values of one range, one storage key each (see the module's rules)."""

    prefix = ""
    kind = ""

    def __init__(self, rng: Range, storage: st.Storage, cache: WatchCache) -> None:
        self.range = rng
        self.storage = storage
        self.cache = cache

    # -- values ----------------------------------------------------------------------------
    def canonical(self, value: Any) -> str | None:
        """The value as keys spell it, or None when it is not in the range."""
        off = self.range.offset(value)
        return None if off is None else self.range.value(off)

    def not_in_range(self, value: Any) -> NotInRange:
        raise NotImplementedError

    def already_allocated(self) -> AlreadyAllocated:
        raise NotImplementedError

    def key(self, value: str) -> str:
        return self.prefix + value

    def in_use(self, value: str) -> bool:
        """As far as the watch cache knows."""
        return self.key(value) in self.cache.resource(ROOT).objects

    def encode_record(self, value: str, owner: Owner) -> bytes:
        return orjson.dumps({
            "kind": self.kind, "metadata": {"name": value, "creationTimestamp": meta.rfc3339()},
            "spec": {"parentRef": {"group": "", "resource": "services",
                                   "namespace": owner.namespace, "name": owner.name,
                                   "uid": owner.uid}},
            "allocatedAt": time.time()})

    # -- allocation ------------------------------------------------------------------------
    async def allocate(self, value: Any, owner: Owner, dry_run: bool = False) -> str:
        """Take `value` for `owner`; NotInRange or AlreadyAllocated otherwise."""
        v = self.canonical(value)
        if v is None:
            raise self.not_in_range(value)
        if dry_run:
            self._check_dry_run(v)
            return v
        try:
            await self.storage.create(self.key(v), self.encode_record(v, owner))
        except st.KeyExists:
            raise self.already_allocated() from None
        return v

    def _check_dry_run(self, value: str) -> None:
        """What a dry run checks beyond the range."""

    async def allocate_next(self, owner: Owner) -> str:
        """Take a free value (see `ranges.pick`); RangeFull when there is none."""
        objects = self.cache.resource(ROOT).objects
        tried: set[int] = set()
        r = self.range

        def taken(off: int) -> bool:
            return off in tried or self.prefix + r.value(off) in objects
        while True:
            off = pick(r.size, r.band, taken)
            if off is None:
                raise RangeFull()
            v = r.value(off)
            try:
                await self.storage.create(self.key(v), self.encode_record(v, owner))
                return v
            except st.KeyExists:   # taken meanwhile (by another server): the next one
                tried.add(off)

    async def release(self, value: str, owner: Owner | None) -> bool:
        """Delete `value`'s key if `owner` (None: anyone) holds it. True if deleted."""
        key = self.key(value)
        try:
            kv = await self.storage.get(key)
        except st.KeyNotFound:
            return False
        if owner is not None and not owner.holds(orjson.loads(kv.value)):
            log.warning("not releasing %s %s: held by another owner than %s/%s", self.kind,
                        value, owner.namespace, owner.name)
            return False
        try:
            await self.storage.delete(key, expected_revision=kv.mod_revision)
        except (st.KeyNotFound, st.RevisionConflict):
            return False
        return True

    async def records(self) -> list[tuple[str, Obj, st.KeyValue]]:
        """Every key of this allocator, read from storage: (value, record, key-value)."""
        kvs, _ = await self.storage.list(self.prefix)
        out = []
        for kv in kvs:
            try:
                rec = orjson.loads(kv.value)
            except orjson.JSONDecodeError:
                rec = {}
            out.append((kv.key[len(self.prefix):], rec if isinstance(rec, dict) else {}, kv))
        return out

    async def record(self, value: str, owner: Owner) -> bool:
        """Repair: create the key of a value `owner` holds; False if it exists already."""
        try:
            await self.storage.create(self.key(value), self.encode_record(value, owner))
            return True
        except st.KeyExists:
            return False


class IPAllocator(Allocator):
    """Cluster IPs of one `--service-cluster-ip-range` CIDR."""

    prefix = IP_PREFIX
    kind = "ServiceIPAllocation"
    range: ServiceIPRange

    def not_in_range(self, value: Any) -> NotInRange:
        return NotInRange(f"the provided IP ({value}) is not in the valid range. The range "
                          f"of valid IPs is {self.range}")

    def already_allocated(self) -> AlreadyAllocated:
        return AlreadyAllocated("provided IP is already allocated")

    def dry_run_next(self) -> str:
        return str(self.range.network.network_address)


class PortAllocator(Allocator):
    """Node ports of `--service-node-port-range`."""

    prefix = PORT_PREFIX
    kind = "ServiceNodePortAllocation"
    range: PortRange

    def not_in_range(self, value: Any) -> NotInRange:
        return NotInRange("provided port is not in the valid range. The range of valid "
                          f"ports is {self.range}")

    def already_allocated(self) -> AlreadyAllocated:
        return AlreadyAllocated("provided port is already allocated")

    def _check_dry_run(self, value: str) -> None:
        if self.in_use(value):
            raise self.already_allocated()

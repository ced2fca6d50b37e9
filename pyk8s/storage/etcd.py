"""etcd v3 storage: the state lives in a real etcd (3.4+), as upstream's.

Keys are upstream's (`/registry/...`), values are the stored bytes, and every revision is
etcd's: `KeyValue.mod_revision` is the key's etcd mod_revision, so the resourceVersion
several API servers hand out for one object is the same. Writes are etcd transactions:

* create: `txn(mod_revision(key) == 0) put` (upstream's `Compare(ModRevision(key), "=", 0)`);
* update: read, `fn`, then `txn(mod_revision(key) == read) put else get` and retry with
  the fresh value the failure branch returned (compare-and-swap on mod_revision);
* delete: `delete_range(prev_kv)`, or with a precondition `txn(mod == expected) delete
  else get`; the returned revision is the response header's (the delete's revision).

Watch: one gRPC stream per `watch()`, `start_revision = from_revision + 1` and prev_kv (DELETE
events carry the last value). A reader task moves events from the stream into a bounded
queue, so a consumer that falls too far behind is cut off with `WatcherTooSlow`, as with the
other backends. `watch_with_progress` (the watch cache's) watches the *whole* key space and
turns every event outside the prefix into a PROGRESS event: every etcd revision is made by
at least one event somewhere in the key space, so the consumer's position always reaches
`current_revision()` even when other clients write outside `/registry/`. (etcd 3.4's
WatchProgressRequest answers from a separate control channel that can overtake queued
events, etcd-io/etcd#15220, fixed only in 3.4.25/3.5.8; so it is not relied on.)

Client: gRPC (`grpc.aio`) with the etcd v3 API's generated messages and stubs that `aetcd`
ships. One channel spreads calls round-robin over every endpoint and skips members that are
down. Every unary call has a deadline (`request_timeout`); unavailability (member down, no
leader, deadline) is `StorageUnavailable`, which the API server answers with 503. Idempotent
reads retry once on another member; writes never retry on an ambiguous failure (the write
may have committed), so nothing is applied twice.

`namespace` prefixes every key (like clientv3's namespace wrapper): tests share one etcd.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import sys
import time
import urllib.parse
from typing import Any, AsyncIterator

if "grpc" not in sys.modules:
    # gRPC core's older epoll poller instead of its EventEngine client: one thread instead of
    # four handing each completion over, ~25% more creates/s through the API server here
    # (docs/architecture.md). Only before gRPC is first imported; an explicit setting wins.
    os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client")

import grpc  # noqa: E402
from aetcd import rpc as pb  # noqa: E402
from grpc import aio  # noqa: E402

from .interface import (Event, KeyExists, KeyNotFound, KeyValue,  # noqa: E402
                        RevisionCompacted, RevisionConflict, Storage, StorageError,
                        StorageUnavailable, UpdateFn)
from .memory import DEFAULT_WATCH_QUEUE, _Subscriber, call_update_fn  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"
DEFAULT_REQUEST_TIMEOUT = 5.0
# Compaction may take longer than an ordinary request.
COMPACT_TIMEOUT = 60.0
# Keys per range request while listing (all pages read at one revision).
LIST_PAGE = 10_000

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),  # etcd enforces its own --max-request-bytes
    # Find a hung member behind an idle watch stream (etcd refuses pings < 5 s apart).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect quickly once etcd is back (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]

_UNAVAILABLE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                      grpc.StatusCode.CANCELLED}
# etcd server errors that mean "try again later" whatever their gRPC code.
_UNAVAILABLE_MESSAGES = ("no leader", "leader changed", "timed out", "server stopped",
                         "not capable", "too many requests", "unhealthy cluster")

_MOD = pb.Compare.CompareTarget.Value("MOD")
_EQUAL = pb.Compare.CompareResult.Value("EQUAL")
_DELETE = pb.Event.EventType.Value("DELETE")


def parse_endpoints(endpoints: str | list[str]) -> list[tuple[str, int]]:
    """`"http://a:2379,http://b:2379"` (or a list) → [(host, port)]."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out: list[tuple[str, int]] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        u = urllib.parse.urlsplit(item if "://" in item else "http://" + item)
        if u.scheme != "http":
            raise ValueError(f"etcd endpoint {item!r}: only http:// is supported")
        if not u.hostname:
            raise ValueError(f"etcd endpoint {item!r}: no host")
        out.append((u.hostname, u.port or 2379))
    if not out:
        raise ValueError("no etcd endpoints given")
    return out


def grpc_target(endpoints: str | list[str]) -> str:
    """One gRPC target naming every endpoint (host names are resolved now, to IPv4 first)."""
    addrs: list[tuple[str, int]] = []
    for host, port in parse_endpoints(endpoints):
        try:
            ipaddress.ip_address(host)
            addrs.append((host, port))
        except ValueError:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            infos.sort(key=lambda i: i[0] != socket.AF_INET)
            addrs.append((str(infos[0][4][0]), port))
    v6 = [ipaddress.ip_address(h).version == 6 for h, _ in addrs]
    if all(v6):
        return "ipv6:" + ",".join(f"[{h}]:{p}" for h, p in addrs)
    if not any(v6):
        return "ipv4:" + ",".join(f"{h}:{p}" for h, p in addrs)
    raise ValueError("etcd endpoints mix IPv4 and IPv6 addresses")


def range_end(prefix: bytes) -> bytes:
    """etcd's range end for every key starting with `prefix` (b"\\0": no upper bound)."""
    p = prefix.rstrip(b"\xff")
    if not p:
        return b"\0"
    return p[:-1] + bytes([p[-1] + 1])


def _map_error(e: aio.AioRpcError, key: str) -> StorageError:
    msg = e.details() or ""
    if e.code() in _UNAVAILABLE_CODES or any(m in msg for m in _UNAVAILABLE_MESSAGES):
        return StorageUnavailable(key, f"etcd: {msg or e.code().name}")
    return StorageError(key, f"etcd: {e.code().name}: {msg}")


class EtcdStorage(Storage):
    """Storage in etcd. Create with `await EtcdStorage.open(endpoints)`."""

    def __init__(self, endpoints: str | list[str] = DEFAULT_ENDPOINTS, *,
                 namespace: str = "", request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 watch_queue_size: int = DEFAULT_WATCH_QUEUE) -> None:
        """Use `open()` (the channel must be made on the running loop)."""
        self.endpoints = endpoints
        self.target = grpc_target(endpoints)
        self.namespace = namespace.encode()
        self.request_timeout = request_timeout
        self.watch_queue_size = watch_queue_size
        self._channel: aio.Channel | None = None
        self._kv: Any = None
        self._watch: Any = None
        self._maint: Any = None
        self._closed = True
        self._watches: dict[asyncio.Task[None], _Subscriber] = {}

    @classmethod
    async def open(cls, endpoints: str | list[str] = DEFAULT_ENDPOINTS, *,
                   wait: float = 0.0, **kwargs: Any) -> EtcdStorage:
        """Connect; with `wait` > 0, wait up to that many seconds for etcd to answer."""
        self = cls(endpoints, **kwargs)
        self._channel = aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        self._kv = pb.KVStub(self._channel)
        self._watch = pb.WatchStub(self._channel)
        self._maint = pb.MaintenanceStub(self._channel)
        self._closed = False
        deadline = time.monotonic() + wait
        logged = 0.0
        while True:
            try:
                await self.current_revision()
                break
            except StorageUnavailable as e:
                now = time.monotonic()
                if now >= deadline:
                    if wait > 0:
                        await self.close()
                        raise
                    break  # not reachable yet: calls fail with StorageUnavailable until it is
                if now - logged >= 5:
                    log.warning("waiting for etcd at %s: %s", endpoints, e)
                    logged = now
                await asyncio.sleep(0.2)
        return self

    # -- helpers --------------------------------------------------------------------------
    def _k(self, key: str) -> bytes:
        return self.namespace + key.encode()

    def _unk(self, key: bytes) -> str:
        return key[len(self.namespace):].decode()

    def _kv_of(self, kv: Any) -> KeyValue:
        return KeyValue(self._unk(kv.key), kv.value, kv.mod_revision, kv.create_revision)

    async def _call(self, method: Any, request: Any, key: str, *, read: bool = False,
                    timeout: float | None = None) -> Any:
        if self._closed:
            raise StorageUnavailable(key, "storage closed")
        timeout = timeout or self.request_timeout
        deadline = time.monotonic() + timeout
        tries = 2 if read else 1
        while True:
            tries -= 1
            try:
                return await method(request, timeout=max(0.05, deadline - time.monotonic()))
            except aio.AioRpcError as e:
                err = _map_error(e, key)
                if (tries > 0 and isinstance(err, StorageUnavailable)
                        and e.code() != grpc.StatusCode.DEADLINE_EXCEEDED
                        and deadline - time.monotonic() > 0.1):
                    await asyncio.sleep(0.02)  # another member answers the retry
                    continue
                raise err from None
            except aio.UsageError:
                raise StorageUnavailable(key, "storage closed") from None

    @staticmethod
    def _check_value(key: str, value: object) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"{key}: value must be bytes, not {type(value).__name__}")

    # -- writes ---------------------------------------------------------------------------
    async def create(self, key: str, value: bytes) -> KeyValue:
        self._check_value(key, value)
        k = self._k(key)
        resp = await self._call(self._kv.Txn, pb.TxnRequest(
            compare=[pb.Compare(key=k, target=_MOD, result=_EQUAL, mod_revision=0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=k, value=value))]), key)
        if not resp.succeeded:
            raise KeyExists(key)
        rev = resp.header.revision
        return KeyValue(key, value, rev, rev)

    async def guaranteed_update(self, key: str, fn: UpdateFn,
                                expected_revision: int | None = None) -> KeyValue:
        cur = await self.get(key)
        k = self._k(key)
        while True:
            if expected_revision is not None and cur.mod_revision != expected_revision:
                raise RevisionConflict(key, f"expected revision {expected_revision}, "
                                            f"current {cur.mod_revision}")
            new = await call_update_fn(fn, cur)
            if new is None:
                return cur
            self._check_value(key, new)
            resp = await self._call(self._kv.Txn, pb.TxnRequest(
                compare=[pb.Compare(key=k, target=_MOD, result=_EQUAL,
                                    mod_revision=cur.mod_revision)],
                success=[pb.RequestOp(request_put=pb.PutRequest(key=k, value=new))],
                failure=[pb.RequestOp(request_range=pb.RangeRequest(key=k))]), key)
            if resp.succeeded:
                return KeyValue(key, new, resp.header.revision, cur.create_revision)
            kvs = resp.responses[0].response_range.kvs
            if not kvs:
                raise KeyNotFound(key)
            cur = self._kv_of(kvs[0])
            if expected_revision is not None:
                raise RevisionConflict(key, "changed during update")

    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        k = self._k(key)
        if expected_revision is None:
            resp = await self._call(self._kv.DeleteRange,
                                    pb.DeleteRangeRequest(key=k, prev_kv=True), key)
            if not resp.prev_kvs:
                raise KeyNotFound(key)
            prev = resp.prev_kvs[0]
            return KeyValue(key, prev.value, resp.header.revision, prev.create_revision)
        resp = await self._call(self._kv.Txn, pb.TxnRequest(
            compare=[pb.Compare(key=k, target=_MOD, result=_EQUAL,
                                mod_revision=expected_revision)],
            success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(
                key=k, prev_kv=True))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=k))]), key)
        if resp.succeeded:
            prev_kvs = resp.responses[0].response_delete_range.prev_kvs
            if not prev_kvs:
                raise KeyNotFound(key)
            prev = prev_kvs[0]
            return KeyValue(key, prev.value, resp.header.revision, prev.create_revision)
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            raise KeyNotFound(key)
        raise RevisionConflict(key, f"expected revision {expected_revision}, "
                                    f"current {kvs[0].mod_revision}")

    # -- reads ----------------------------------------------------------------------------
    async def get(self, key: str) -> KeyValue:
        resp = await self._call(self._kv.Range, pb.RangeRequest(key=self._k(key)), key,
                                read=True)
        if not resp.kvs:
            raise KeyNotFound(key)
        return self._kv_of(resp.kvs[0])

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        first = self._k(prefix)
        end = range_end(first)
        while True:
            start = first
            out: list[KeyValue] = []
            rev = 0  # the first page's revision; later pages are read at it
            try:
                while True:
                    resp = await self._call(self._kv.Range, pb.RangeRequest(
                        key=start, range_end=end, limit=LIST_PAGE, revision=rev), prefix,
                        read=True)
                    if rev == 0:
                        rev = resp.header.revision
                    out.extend(self._kv_of(kv) for kv in resp.kvs)
                    if not resp.more or not resp.kvs:
                        return out, rev
                    start = resp.kvs[-1].key + b"\0"
            except StorageError as e:
                if rev == 0 or "compacted" not in str(e):
                    raise
                # compacted past the first page's revision while paging: start again

    async def current_revision(self) -> int:
        # A linearizable read of one (absent) key: its header carries the newest revision.
        resp = await self._call(self._kv.Range, pb.RangeRequest(
            key=self.namespace + b"\0", count_only=True), "", read=True)
        return int(resp.header.revision)

    async def compacted_revision(self) -> int:
        resp = await self._call(self._maint.HashKV, pb.HashKVRequest(revision=0), "",
                                read=True, timeout=COMPACT_TIMEOUT)
        return max(0, int(resp.compact_revision))  # -1: never compacted

    # -- compaction -----------------------------------------------------------------------
    async def compact(self, revision: int) -> None:
        revision = min(revision, await self.current_revision())
        if revision <= 0:
            return
        try:
            await self._call(self._kv.Compact, pb.CompactionRequest(revision=revision), "",
                             timeout=COMPACT_TIMEOUT)
        except StorageError as e:
            if "compacted" in str(e):  # already compacted at or past `revision`
                return
            raise

    # -- watch ----------------------------------------------------------------------------
    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        return self._open_watch(prefix, from_revision, progress=False)

    def watch_with_progress(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        return self._open_watch(prefix, from_revision, progress=True)

    def _open_watch(self, prefix: str, from_revision: int, progress: bool) -> EtcdWatch:
        if self._closed:
            raise StorageUnavailable(prefix, "storage closed")
        sub = _Subscriber(prefix, self.watch_queue_size)
        task = asyncio.get_running_loop().create_task(
            self._read_watch(sub, prefix, from_revision, progress), name=f"etcd-watch {prefix}")
        self._watches[task] = sub
        task.add_done_callback(lambda t: self._watches.pop(t, None))
        return EtcdWatch(sub, task)

    async def _read_watch(self, sub: _Subscriber, prefix: str, from_revision: int,
                          progress: bool) -> None:
        """Reader task: etcd watch responses → `sub` (events, PROGRESS, or a failure)."""
        kprefix = self._k(prefix)
        if progress:  # the whole key space (even outside `namespace`): module docstring
            key, end = b"\0", b"\0"
        else:
            key, end = kprefix, range_end(kprefix)
        ns = self.namespace
        call = self._watch.Watch()
        try:
            await call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(
                key=key, range_end=end, start_revision=from_revision + 1, prev_kv=True,
                progress_notify=progress)))
            last = from_revision  # newest revision pushed (event or progress)
            while True:
                resp = await call.read()
                if resp is aio.EOF:
                    raise StorageUnavailable(prefix, "etcd watch stream ended")
                if resp.compact_revision:
                    raise RevisionCompacted(prefix, from_revision, resp.compact_revision)
                if resp.canceled:
                    raise StorageUnavailable(prefix, "etcd canceled the watch: "
                                                     f"{resp.cancel_reason or 'no reason'}")
                if resp.created:
                    continue  # its header revision says nothing about this watch's progress
                newest = last
                for e in resp.events:
                    kv = e.kv
                    rev = kv.mod_revision
                    if rev > newest:
                        newest = rev
                    if not kv.key.startswith(kprefix):
                        continue  # progress watch: outside the prefix
                    if e.type == _DELETE:
                        if not e.HasField("prev_kv"):
                            # Its last value is compacted away: the consumer must re-list.
                            raise RevisionCompacted(prefix, from_revision, rev)
                        prev = e.prev_kv
                        ev = Event("DELETE", kv.key[len(ns):].decode(), prev.value, rev,
                                   prev.value, prev.create_revision)
                    else:
                        ev = Event("PUT", kv.key[len(ns):].decode(), kv.value, rev,
                                   e.prev_kv.value if e.HasField("prev_kv") else None,
                                   kv.create_revision)
                    if not sub.push(ev):
                        return  # too slow: sub failed with WatcherTooSlow
                    last = rev
                if not resp.events and progress:
                    # progress_notify: sent in order with events, only once synced
                    newest = max(newest, resp.header.revision)
                if progress and newest > last:
                    if not sub.push(Event("PROGRESS", "", b"", newest)):
                        return
                    last = newest
        except asyncio.CancelledError:
            raise
        except aio.AioRpcError as e:
            sub.fail(StorageUnavailable(prefix, "storage closed") if self._closed
                     else _map_error(e, prefix))
        except StorageError as e:
            sub.fail(e)
        except Exception as e:  # a bug: end the watch rather than hang it
            log.exception("etcd watch on %r failed", prefix)
            sub.fail(StorageError(prefix, f"etcd watch failed: {e!r}"))
        finally:
            call.cancel()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task, sub in list(self._watches.items()):
            sub.fail(None)
            task.cancel()
        self._watches.clear()
        if self._channel is not None:
            await self._channel.close()


class EtcdWatch:
    """Async iterator over one etcd watch; its reader task stops when this is closed or
    garbage-collected (the task does not reference the iterator)."""

    def __init__(self, sub: _Subscriber, task: asyncio.Task[None]) -> None:
        self._sub = sub
        self._task: asyncio.Task[None] | None = task
        self._done = False

    def __aiter__(self) -> EtcdWatch:
        return self

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        try:
            ev = await self._sub.next()
        except StorageError:
            self._close()
            raise
        if ev is None:
            self._close()
            raise StopAsyncIteration
        return ev

    def _close(self) -> None:
        self._done = True
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def aclose(self) -> None:
        """Stop watching."""
        self._close()

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:  # interpreter shutdown, loop closed
            pass


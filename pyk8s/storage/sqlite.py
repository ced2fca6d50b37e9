"""SQLite storage: a revision log plus a current-state table, with group commit.

Layout (one file, WAL mode):

* `log(revision PK, key, value, prev_value, prev_revision, create_revision, deleted)`:
  append-only, one row per write; the source of watch history; compaction deletes old rows.
  For a delete, `value` is the last value. `prev_value` is NULL on creation (and on delete
  rows), so PUT events keep their previous value even after the previous row is compacted.
* `kv(key PK, value, mod_revision, create_revision)`: the current state, updated in the same
  transaction as the log, so GET/LIST never scan the log.
* `meta(name PK, value)`: `compacted` (newest compacted revision) and `schema`.

The current revision is max(log.revision, compacted); it is kept in memory and survives
restarts through those two.

Concurrency: every write goes through ONE writer thread and a queue. The thread takes
everything queued, applies it in one transaction (group commit) and resolves each request
on its own: a failing request (KeyExists, a CAS mismatch, ...) is detected before it writes,
so it never fails its neighbours. After COMMIT the results and watch events are handed to
the event loop in one callback, which publishes the events (revision order) and then
resolves the futures. Reads run on a separate reader thread and connection.

Durability: `synchronous=NORMAL` in WAL mode means a committed transaction is in the WAL
file (OS page cache) before the write is acknowledged, so it survives kill -9 of the
process (not necessarily a power loss). WAL growth is bounded by `wal_autocheckpoint`,
`journal_size_limit` and a `wal_checkpoint(TRUNCATE)` after each compaction.

Compaction deletes at most COMPACT_BATCH log rows per writer transaction, interleaved with
ordinary writes, so writers never wait long and nothing ever sees "database is locked".

Only one process may open a database file at a time (revisions are allocated in memory).
"""
from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from .interface import (Event, KeyExists, KeyNotFound, KeyValue, RevisionConflict, Storage,
                        StorageError, StorageUnavailable, UpdateFn)
from .memory import DEFAULT_WATCH_QUEUE, WatchHub, WatchStream, call_update_fn, prefix_end

SCHEMA_VERSION = 1
# Most write requests applied in one transaction.
MAX_BATCH = 1_000
# Most log rows deleted per compaction transaction.
COMPACT_BATCH = 1_000
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    revision        INTEGER PRIMARY KEY,
    key             TEXT    NOT NULL,
    value           BLOB    NOT NULL,
    prev_value      BLOB,
    prev_revision   INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    deleted         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key             TEXT PRIMARY KEY,
    value           BLOB    NOT NULL,
    mod_revision    INTEGER NOT NULL,
    create_revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

_PRAGMAS = (  # every connection
    f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}",
    "PRAGMA cache_size=-32768",  # 32 MiB
)
_WRITER_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # WAL: survives a process crash (not a power cut)
    "PRAGMA wal_autocheckpoint=1000",  # pages
    "PRAGMA journal_size_limit=67108864",  # truncate the WAL back to 64 MiB when reset
)


class _CasFailed(RevisionConflict):
    """Internal: the key's mod revision moved; carries the fresh value for the retry."""

    def __init__(self, current: KeyValue) -> None:
        super().__init__(current.key, f"key changed (now at revision {current.mod_revision})")
        self.current = current


@dataclass(eq=False)
class _Write:
    """One request for the writer thread."""

    kind: str  # "create" | "update" | "delete" | "compact" | "checkpoint"
    future: asyncio.Future[Any]
    key: str = ""
    value: bytes = b""
    revision: int | None = None  # expected mod revision, or the compaction target


@dataclass
class _Outcome:
    op: _Write
    result: Any = None
    error: BaseException | None = None


_STOP = object()


def _resolve(fut: asyncio.Future[Any], result: Any = None,
             error: BaseException | None = None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


def _row_event(row: tuple[Any, ...]) -> Event:
    revision, key, value, prev_value, create_revision, deleted = row
    if deleted:
        return Event("DELETE", key, value, revision, value, create_revision)
    return Event("PUT", key, value, revision, prev_value, create_revision)


class SQLiteStorage(Storage):
    """Storage in one SQLite file. Create with `await SQLiteStorage.open(path)`."""

    def __init__(self, path: str, watch_queue_size: int = DEFAULT_WATCH_QUEUE) -> None:
        """Use `open()`; this only sets fields."""
        self.path = path
        self._hub = WatchHub(watch_queue_size)
        self._rev = 0  # newest revision published on the loop
        self._compacted = 0  # compaction target; set before any row is deleted
        self._closed = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wq: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._wconn: sqlite3.Connection | None = None  # writer thread only
        self._wrev = 0  # writer thread only: newest revision written
        self._reader: ThreadPoolExecutor | None = None
        self._rconn: sqlite3.Connection | None = None  # reader thread only
        self._compact_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str, watch_queue_size: int = DEFAULT_WATCH_QUEUE
                   ) -> SQLiteStorage:
        """Open (creating if needed) the database at `path` and start its threads."""
        self = cls(path, watch_queue_size)
        await self._start()
        return self

    # -- lifecycle ------------------------------------------------------------------------
    async def _start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[tuple[int, int, int]] = loop.create_future()
        self._thread = threading.Thread(target=self._writer_main, args=(ready,),
                                        name="sqlite-writer", daemon=True)
        self._thread.start()
        rev, compacted, oldest = await ready
        self._rev = self._wrev = rev
        self._compacted = compacted
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        self._rconn = await loop.run_in_executor(self._reader, self._connect_reader)
        self._closed = False
        if oldest and oldest <= compacted:  # a compaction was interrupted: finish it
            await self._delete_log_rows(compacted)

    def _connect(self, pragmas: tuple[str, ...]) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        for pragma in _PRAGMAS + pragmas:
            conn.execute(pragma)
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        return self._connect(("PRAGMA query_only=1",))

    def _init_db(self, conn: sqlite3.Connection) -> tuple[int, int, int]:
        """Create the schema; return (current revision, compacted revision, oldest log row)."""
        conn.executescript(_SCHEMA)
        conn.execute("INSERT OR IGNORE INTO meta(name, value) VALUES('schema', ?)",
                     (SCHEMA_VERSION,))
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        if meta["schema"] != SCHEMA_VERSION:
            raise StorageUnavailable("", f"{self.path}: schema {meta['schema']} unsupported")
        compacted = int(meta.get("compacted", 0))
        oldest, newest = conn.execute("SELECT MIN(revision), MAX(revision) FROM log").fetchone()
        return max(newest or 0, compacted), compacted, oldest or 0

    async def close(self) -> None:
        """End watches, finish queued writes, stop the threads and close the connections."""
        if self._closed:
            return
        self._closed = True
        self._hub.close()
        self._wq.put(_STOP)
        assert self._thread is not None and self._reader is not None
        await asyncio.to_thread(self._thread.join)
        rconn = self._rconn
        if rconn is not None:
            await asyncio.get_running_loop().run_in_executor(self._reader, rconn.close)
        self._reader.shutdown(wait=True)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailable("", f"{self.path}: storage closed")

    # -- writer thread --------------------------------------------------------------------
    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback(*args)` on the event loop (from the writer thread)."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed: nobody is waiting any more
            pass

    def _writer_main(self, ready: asyncio.Future[tuple[int, int, int]]) -> None:
        try:
            conn = self._wconn = self._connect(_WRITER_PRAGMAS)
            state = self._init_db(conn)
        except BaseException as e:  # report open failures to open()
            self._post(_resolve, ready, None, StorageUnavailable("", f"{self.path}: {e}"))
            return
        self._post(_resolve, ready, state)
        try:
            stop = False
            while not stop:
                batch: list[_Write] = []
                item = self._wq.get()
                while True:
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                    if len(batch) >= MAX_BATCH:
                        break
                    try:
                        item = self._wq.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._apply_batch(batch)
        finally:
            conn.close()

    def _apply_batch(self, batch: list[_Write]) -> None:
        """Apply `batch` in one transaction and hand the outcomes to the loop."""
        conn = self._wconn
        assert conn is not None
        start_rev = self._wrev
        outcomes: list[_Outcome] = []
        events: list[Event] = []
        checkpoints = [op for op in batch if op.kind == "checkpoint"]
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                if op.kind == "checkpoint":
                    continue
                try:
                    result, event = self._apply_one(conn, op)
                except StorageError as e:
                    outcomes.append(_Outcome(op, error=e))
                else:
                    outcomes.append(_Outcome(op, result))
                    if event is not None:
                        events.append(event)
            conn.execute("COMMIT")
        except Exception as e:  # sqlite failure: nothing in this batch was written
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._wrev = start_rev
            events = []
            err = StorageUnavailable("", f"{self.path}: write failed: {e!r}")
            outcomes = [_Outcome(op, error=err) for op in batch if op.kind != "checkpoint"]
        for op in checkpoints:
            try:
                row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                outcomes.append(_Outcome(op, tuple(row)))
            except sqlite3.Error as e:
                outcomes.append(_Outcome(op, error=StorageUnavailable("", repr(e))))
        self._post(self._complete, outcomes, events, self._wrev)

    def _apply_one(self, conn: sqlite3.Connection, op: _Write) -> tuple[Any, Event | None]:
        """Apply one request inside the open transaction. Raises StorageError BEFORE
        writing anything, so the rest of the batch is unaffected."""
        key, value = op.key, op.value
        if op.kind == "create":
            rev = self._wrev + 1
            try:
                conn.execute("INSERT INTO kv(key, value, mod_revision, create_revision) "
                             "VALUES(?, ?, ?, ?)", (key, value, rev, rev))
            except sqlite3.IntegrityError:
                raise KeyExists(key) from None
            conn.execute("INSERT INTO log(revision, key, value, prev_value, prev_revision, "
                         "create_revision, deleted) VALUES(?, ?, ?, NULL, 0, ?, 0)",
                         (rev, key, value, rev))
            self._wrev = rev
            return KeyValue(key, value, rev, rev), Event("PUT", key, value, rev, None, rev)

        if op.kind in ("update", "delete"):
            row = conn.execute("SELECT value, mod_revision, create_revision FROM kv "
                               "WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyNotFound(key)
            old = KeyValue(key, row[0], row[1], row[2])
            if op.revision is not None and old.mod_revision != op.revision:
                if op.kind == "update":
                    raise _CasFailed(old)
                raise RevisionConflict(key, f"expected revision {op.revision}, "
                                            f"current {old.mod_revision}")
            rev = self._wrev + 1
            if op.kind == "update":
                conn.execute("UPDATE kv SET value = ?, mod_revision = ? WHERE key = ?",
                             (value, rev, key))
                conn.execute("INSERT INTO log(revision, key, value, prev_value, prev_revision,"
                             " create_revision, deleted) VALUES(?, ?, ?, ?, ?, ?, 0)",
                             (rev, key, value, old.value, old.mod_revision,
                              old.create_revision))
                self._wrev = rev
                return (KeyValue(key, value, rev, old.create_revision),
                        Event("PUT", key, value, rev, old.value, old.create_revision))
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            conn.execute("INSERT INTO log(revision, key, value, prev_value, prev_revision, "
                         "create_revision, deleted) VALUES(?, ?, ?, NULL, ?, ?, 1)",
                         (rev, key, old.value, old.mod_revision, old.create_revision))
            self._wrev = rev
            return (KeyValue(key, old.value, rev, old.create_revision),
                    Event("DELETE", key, old.value, rev, old.value, old.create_revision))

        if op.kind == "compact":
            conn.execute("INSERT INTO meta(name, value) VALUES('compacted', ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
                         (op.revision,))
            cur = conn.execute("DELETE FROM log WHERE revision IN (SELECT revision FROM log "
                               "WHERE revision <= ? ORDER BY revision LIMIT ?)",
                               (op.revision, COMPACT_BATCH))
            return cur.rowcount, None
        raise AssertionError(f"unknown write {op.kind}")

    def _complete(self, outcomes: list[_Outcome], events: list[Event], rev: int) -> None:
        """On the loop, after COMMIT: publish events, then resolve the requests."""
        if rev > self._rev:
            self._rev = rev
        self._hub.publish(events)
        for o in outcomes:
            _resolve(o.op.future, o.result, o.error)

    async def _submit(self, kind: str, key: str = "", value: bytes = b"",
                      revision: int | None = None) -> Any:
        self._check_open()
        if not isinstance(value, bytes):  # one bad request must not fail a whole batch
            raise TypeError(f"{key}: value must be bytes, not {type(value).__name__}")
        assert self._loop is not None
        fut = self._loop.create_future()
        self._wq.put(_Write(kind, fut, key, value, revision))
        return await fut

    # -- writes ---------------------------------------------------------------------------
    async def create(self, key: str, value: bytes) -> KeyValue:
        return await self._submit("create", key, value)

    async def guaranteed_update(self, key: str, fn: UpdateFn,
                                expected_revision: int | None = None) -> KeyValue:
        cur = await self.get(key)
        while True:
            if expected_revision is not None and cur.mod_revision != expected_revision:
                raise RevisionConflict(key, f"expected revision {expected_revision}, "
                                            f"current {cur.mod_revision}")
            new = await call_update_fn(fn, cur)
            if new is None:
                return cur
            try:
                return await self._submit("update", key, new, cur.mod_revision)
            except _CasFailed as e:
                cur = e.current  # someone else wrote meanwhile: retry on the fresh value

    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        return await self._submit("delete", key, revision=expected_revision)

    # -- reads ----------------------------------------------------------------------------
    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._check_open()
        assert self._loop is not None
        try:
            return await self._loop.run_in_executor(self._reader, fn, *args)
        except sqlite3.Error as e:
            raise StorageUnavailable("", f"{self.path}: read failed: {e!r}") from e

    def _get_sync(self, key: str) -> KeyValue | None:
        assert self._rconn is not None
        row = self._rconn.execute("SELECT value, mod_revision, create_revision FROM kv "
                                  "WHERE key = ?", (key,)).fetchone()
        return None if row is None else KeyValue(key, row[0], row[1], row[2])

    def _list_sync(self, prefix: str) -> tuple[list[KeyValue], int]:
        conn = self._rconn
        assert conn is not None
        end = prefix_end(prefix)
        sql = "SELECT key, value, mod_revision, create_revision FROM kv WHERE key >= ?"
        args: tuple[str, ...] = (prefix,)
        if end is not None:
            sql += " AND key < ?"
            args = (prefix, end)
        conn.execute("BEGIN")  # one snapshot for the rows and the revision
        try:
            rows = conn.execute(sql + " ORDER BY key", args).fetchall()
            (rev,) = conn.execute(
                "SELECT MAX(IFNULL((SELECT MAX(revision) FROM log), 0), "
                "IFNULL((SELECT value FROM meta WHERE name = 'compacted'), 0))").fetchone()
        finally:
            conn.execute("COMMIT")
        return [KeyValue(*r) for r in rows], rev

    def _history_sync(self, prefix: str, after: int, limit: int) -> list[Event]:
        assert self._rconn is not None
        end = prefix_end(prefix)
        sql = ("SELECT revision, key, value, prev_value, create_revision, deleted FROM log "
               "WHERE revision > ? AND key >= ?")
        args: tuple[Any, ...] = (after, prefix)
        if end is not None:
            sql += " AND key < ?"
            args += (end,)
        rows = self._rconn.execute(sql + " ORDER BY revision LIMIT ?", args + (limit,))
        return [_row_event(r) for r in rows]

    async def get(self, key: str) -> KeyValue:
        kv = await self._read(self._get_sync, key)
        if kv is None:
            raise KeyNotFound(key)
        return kv

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        # The revision comes from the same snapshot as the rows (it may be ahead of the
        # published self._rev, never behind), so watch(prefix, rev) continues gap-free.
        kvs, rev = await self._read(self._list_sync, prefix)
        return kvs, rev

    async def current_revision(self) -> int:
        return self._rev

    async def compacted_revision(self) -> int:
        return self._compacted

    # -- watch / compaction ---------------------------------------------------------------
    def watch(self, prefix: str, from_revision: int) -> WatchStream:
        """See `Storage.watch`. Live only: `watch(prefix, await current_revision())`."""
        self._check_open()
        return WatchStream(self._hub, prefix, from_revision, fetch=self._fetch_history,
                           compacted=lambda: self._compacted)

    async def _fetch_history(self, prefix: str, after: int, limit: int) -> list[Event]:
        events: list[Event] = await self._read(self._history_sync, prefix, after, limit)
        return events

    async def compact(self, revision: int) -> None:
        """Drop log rows at or below `revision` (clamped to the current revision) in
        small transactions, then truncate the WAL."""
        async with self._compact_lock:
            revision = min(revision, self._rev)
            if revision <= self._compacted:
                return
            self._compacted = revision  # watches check this; set before rows disappear
            await self._delete_log_rows(revision)
            await self._submit("checkpoint")

    async def _delete_log_rows(self, revision: int) -> None:
        while await self._submit("compact", revision=revision) >= COMPACT_BATCH:
            await asyncio.sleep(0)  # let queued writes in between batches


async def open_sqlite(data_dir: str) -> SQLiteStorage:
    """Open `<data_dir>/state.db`, creating the directory if needed."""
    os.makedirs(data_dir, exist_ok=True)
    return await SQLiteStorage.open(os.path.join(data_dir, "state.db"))

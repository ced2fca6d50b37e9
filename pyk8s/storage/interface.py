"""The storage interface: keys, values and revisions, with no Kubernetes meaning.

Values are opaque bytes (the apiserver stores JSON without resourceVersion; it sets
`metadata.resourceVersion` from the revision it reads back). Every write gets a new,
strictly increasing cluster-wide revision. Modelled on upstream's
`k8s.io/apiserver/pkg/storage/interfaces.go` and kine's revision log.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, Literal


class StorageError(Exception):
    """Base class. `key` names the key concerned."""

    def __init__(self, key: str, message: str = "") -> None:
        super().__init__(message or key)
        self.key = key


class KeyNotFound(StorageError):
    pass


class KeyExists(StorageError):
    pass


class RevisionConflict(StorageError):
    """A precondition on the current revision failed (optimistic concurrency)."""


class RevisionCompacted(StorageError):
    """The requested revision is older than the oldest kept one."""

    def __init__(self, key: str, requested: int, compacted: int) -> None:
        super().__init__(key, f"revision {requested} compacted (oldest kept {compacted})")
        self.requested = requested
        self.compacted = compacted


class StorageUnavailable(StorageError):
    """The backend cannot be reached (for example etcd down)."""


class StorageInternalError(StorageError):
    """A stored value cannot be read back (a value transformer failed: encryption key
    missing or wrong); upstream's storage.InternalError. The API answers 500 InternalError
    with this message."""


class UnreadableValues(StorageInternalError):
    """A list found values it cannot read (`errors`: key → message). `readable` and
    `revision` are the rest of the list, for a consumer that goes on without them (the
    watch cache logs and skips them; upstream's list fails as a whole)."""

    def __init__(self, prefix: str, readable: list["KeyValue"], revision: int,
                 errors: dict[str, str]) -> None:
        first = next(iter(errors.items()))
        super().__init__(prefix, f'unable to transform key "{first[0]}": {first[1]}' +
                         (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
        self.readable = readable
        self.revision = revision
        self.errors = errors


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    # Read through a value transformer other than the one writes use now (encryption at
    # rest after a key rotation): an update must rewrite it even when nothing changed.
    stale: bool = field(default=False, compare=False)


EventType = Literal["PUT", "DELETE", "PROGRESS"]  # PROGRESS: only from watch_with_progress


@dataclass(frozen=True)
class Event:
    """One change. For DELETE, `value` is the last value before deletion and `revision`
    is the revision of the delete. For PUT, `prev_value` is None on creation."""

    type: EventType
    key: str
    value: bytes
    revision: int
    prev_value: bytes | None = None
    create_revision: int = 0

    @property
    def is_create(self) -> bool:
        return self.type == "PUT" and self.prev_value is None


# fn(current) -> new value, or None to leave the object as it is (no write, no new revision).
# May raise to abort; the exception propagates to the caller unchanged.
UpdateFn = Callable[[KeyValue], Awaitable[bytes | None] | bytes | None]


class Storage(abc.ABC):
    """All methods are coroutines; implementations are safe for concurrent use from one loop."""

    @abc.abstractmethod
    async def create(self, key: str, value: bytes) -> KeyValue:
        """Create `key`; raise KeyExists if present. Returns the stored KeyValue."""

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue:
        """Current value; raise KeyNotFound."""

    @abc.abstractmethod
    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under `prefix`, sorted by key, with the current revision."""

    @abc.abstractmethod
    async def guaranteed_update(self, key: str, fn: UpdateFn,
                                expected_revision: int | None = None) -> KeyValue:
        """Read-modify-write with retries on concurrent change.

        If `expected_revision` is given and the current mod revision differs, raise
        RevisionConflict without calling fn. If fn returns None nothing is written and the
        current KeyValue is returned. Raises KeyNotFound if the key is absent.
        """

    @abc.abstractmethod
    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        """Delete; returns the last KeyValue with `mod_revision` set to the delete's revision.
        Raises KeyNotFound, or RevisionConflict when expected_revision differs."""

    @abc.abstractmethod
    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Events on keys under `prefix` with revision > from_revision, in revision order,
        then live ones, until the iterator is closed. Raises RevisionCompacted (on first
        iteration) if from_revision + 1 is older than the oldest kept revision.

        from_revision=0 is not special: it replays all history (so a watch from the
        revision of a LIST of an empty store misses nothing). For live events only, pass
        `await current_revision()`. The watch is registered when `watch()` is called, not
        at first iteration. DELETE events carry the last value as both `value` and
        `prev_value`. A watcher that falls too far behind gets a StorageError and must
        re-list; the iterator ends (StopAsyncIteration) when the storage is closed."""

    def watch_with_progress(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """`watch`, plus PROGRESS events: `Event("PROGRESS", "", b"", R)` means every event
        under `prefix` with revision <= R has been yielded.

        A consumer that waits for its position to reach `current_revision()` (the watch
        cache's consistent reads) needs them where the revision also moves through writes
        outside `prefix` (etcd shared with other clients). The default is plain `watch`:
        memory and SQLite only change through this process, under /registry/."""
        return self.watch(prefix, from_revision)

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """The newest revision (0 for an empty store)."""

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Forget history at or below `revision` (current values always stay)."""

    async def compacted_revision(self) -> int:
        """The newest revision that has been compacted away (0 if none)."""
        return 0

    async def close(self) -> None:
        """Release resources."""


StorageFactory = Callable[[], Awaitable[Storage]]

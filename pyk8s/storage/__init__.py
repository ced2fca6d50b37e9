"""Key-value storage backends (see `interface.Storage`)."""
from __future__ import annotations

from .interface import (Event, KeyExists, KeyNotFound, KeyValue, RevisionCompacted,
                        RevisionConflict, Storage, StorageError, StorageInternalError,
                        StorageUnavailable, UnreadableValues)

__all__ = ["Event", "KeyExists", "KeyNotFound", "KeyValue", "RevisionCompacted",
           "RevisionConflict", "Storage", "StorageError", "StorageInternalError",
           "StorageUnavailable", "UnreadableValues", "open_storage"]


async def open_storage(kind: str, data_dir: str | None = None, *,
                       etcd_servers: str | None = None, wait: float = 0.0) -> Storage:
    """Open a backend: "memory", "sqlite" (the file `<data_dir>/state.db`), or "etcd"
    (`etcd_servers`: comma-separated client URLs; waits up to `wait` s for etcd)."""
    if kind == "memory":
        from .memory import MemoryStorage
        return MemoryStorage()
    if kind == "sqlite":
        if not data_dir:
            raise ValueError("the sqlite storage needs a data directory")
        from .sqlite import open_sqlite
        return await open_sqlite(data_dir)
    if kind == "etcd":
        from .etcd import DEFAULT_ENDPOINTS, EtcdStorage
        return await EtcdStorage.open(etcd_servers or DEFAULT_ENDPOINTS, wait=wait)
    raise ValueError(f"unknown storage kind {kind!r} (expected 'memory', 'sqlite' or 'etcd')")

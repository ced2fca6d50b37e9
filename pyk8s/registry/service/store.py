"""The Services store: the generic store plus the allocation hooks (upstream's service
REST `beginCreate` / `beginUpdate` / `afterDelete`).

Rules: a create allocates after validation and before the write, and gives the values back
if the write certainly failed; an update allocates what the new object needs and releases
what it no longer uses once the write is stored; a Service really removed from storage (a
delete, or the update that clears its last finalizer) releases everything it held.
"""
from __future__ import annotations

from typing import Any

from pyk8s.api.catalogue import ResourceInfo
from pyk8s.registry.service.alloc import ServiceAllocators, Transaction
from pyk8s.registry.service.strategy import ServiceStrategy
from pyk8s.registry.store import Store
from pyk8s.storage import interface as st
from pyk8s.watch.cache import WatchCache

Obj = dict[str, Any]


class ServiceStore(Store):
    def __init__(self, info: ResourceInfo, storage: st.Storage, cache: WatchCache,
                 allocators: ServiceAllocators) -> None:
        super().__init__(info, storage, cache, ServiceStrategy(info))
        self.allocators = allocators

    async def begin_create(self, obj: Obj, dry_run: bool) -> Transaction:
        return await self.allocators.allocate_create(obj, dry_run)

    async def begin_update(self, new: Obj, old: Obj, dry_run: bool) -> Transaction:
        return await self.allocators.allocate_update(new, old, dry_run)

    async def after_delete(self, obj: Obj) -> None:
        await self.allocators.release_all(obj)

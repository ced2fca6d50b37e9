"""The repair pass: allocation keys agree with the stored Services, as upstream's
ipallocator and portallocator repair controllers.

Rules:

* every cluster IP and node port a stored Service holds has its key; a missing one is
  recorded for that Service. A value held by two Services, or outside the configured range,
  is only logged (upstream asks to recreate such Services).
* a key whose owner is not the Service holding the value is rewritten to name the holder.
* a key no Service holds is released once it is older than `min_age` seconds (a younger one
  may belong to a create or update still in flight), and only at the revision it was read
  at, so a key taken again meanwhile stays.
* keys are listed before the Services, so a Service stored after the keys were read is seen.

The API server runs it at start and then every `interval` seconds (upstream: 3 minutes);
several API servers on one storage may run it at the same time.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from pyk8s.registry.service.alloc import (ServiceAllocators, cluster_ips_of, family_of,
                                          node_ports_of)
from pyk8s.registry.service.allocator import Allocator, Owner, record_age, record_owner
from pyk8s.storage import interface as st

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass
class RepairReport:
    recorded: list[str] = field(default_factory=list)    # keys created for held values
    released: list[str] = field(default_factory=list)    # keys of values nobody holds
    reowned: list[str] = field(default_factory=list)     # keys rewritten to their holder
    problems: list[str] = field(default_factory=list)    # duplicates, out of range


class Repair:
    def __init__(self, storage: st.Storage, allocators: ServiceAllocators,
                 services_prefix: str, min_age: float = 60.0) -> None:
        self.storage = storage
        self.allocators = allocators
        self.services_prefix = services_prefix
        self.min_age = min_age

    async def run_once(self) -> RepairReport:
        report = RepairReport()
        allocs: list[Allocator] = [self.allocators.ips, self.allocators.ports]
        keys = {a.prefix: await a.records() for a in allocs}
        kvs, _ = await self.storage.list(self.services_prefix)
        holders: dict[tuple[str, str], list[Owner]] = {}
        for kv in kvs:
            try:
                svc = orjson.loads(kv.value)
            except orjson.JSONDecodeError:
                continue
            self._check_range(svc, report)
            for alloc, v in self.allocators.held(svc):
                holders.setdefault((alloc.prefix, v), []).append(Owner.of(svc))
        for (prefix, v), owners in holders.items():
            if len(owners) > 1:
                names = ", ".join(f"{o.namespace}/{o.name}" for o in owners)
                report.problems.append(f"{prefix}{v} held by {names}")
                log.warning("the value %s is allocated to several services (%s); please "
                            "recreate all but one", v, names)
        for alloc in allocs:
            seen: set[str] = set()
            for v, rec, kv in keys[alloc.prefix]:
                seen.add(v)
                held_by = holders.get((alloc.prefix, v), [])
                if held_by:
                    if not any(o.holds(rec) for o in held_by) and \
                            await self._reown(alloc, v, kv, held_by[0]):
                        report.reowned.append(kv.key)
                elif record_age(rec) >= self.min_age:
                    try:
                        await self.storage.delete(kv.key, expected_revision=kv.mod_revision)
                        report.released.append(kv.key)
                        ns, name = record_owner(rec)
                        log.info("repair: released %s (service %s/%s is gone)", kv.key, ns,
                                 name)
                    except (st.KeyNotFound, st.RevisionConflict):
                        pass
            for (prefix, v), owners in holders.items():
                if prefix == alloc.prefix and v not in seen and await alloc.record(v, owners[0]):
                    report.recorded.append(alloc.key(v))
                    log.info("repair: recorded %s for service %s/%s", alloc.key(v),
                             owners[0].namespace, owners[0].name)
        return report

    def _check_range(self, svc: Obj, report: RepairReport) -> None:
        md = svc.get("metadata") or {}
        who = f"{md.get('namespace')}/{md.get('name')}"
        for ip in cluster_ips_of(svc):
            if ip != "None" and self.allocators.ips.canonical(ip) is None and \
                    family_of(ip) == self.allocators.family:
                report.problems.append(f"{who}: cluster IP {ip} out of range")
                log.warning("the cluster IP %s for service %s is not within the service CIDR "
                            "%s; please recreate", ip, who, self.allocators.ips.range)
        for port in node_ports_of(svc):
            if self.allocators.ports.canonical(port) is None:
                report.problems.append(f"{who}: node port {port} out of range")
                log.warning("the node port %d for service %s is not within the port range "
                            "%s; please recreate", port, who, self.allocators.ports.range)

    async def _reown(self, alloc: Allocator, value: str, kv: st.KeyValue, owner: Owner) -> bool:
        record = alloc.encode_record(value, owner)
        try:
            await self.storage.guaranteed_update(kv.key, lambda _cur: record,
                                                 expected_revision=kv.mod_revision)
            return True
        except (st.KeyNotFound, st.RevisionConflict):
            return False

    async def run_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("service allocation repair failed; will retry")


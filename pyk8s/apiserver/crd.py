"""The in-server CRD controller, as upstream's apiextensions-apiserver inside kube-apiserver.

Driven by the watch cache (the API server's own state): for every CustomResourceDefinition
it registers the served versions' `ResourceInfo`s in the catalogue (keys under
`/registry/<group>/<plural>/`), sets the NamesAccepted / Established conditions and
`acceptedNames`, publishes the schemas in OpenAPI v2 / v3, registers printer columns, and
on deletion removes every custom resource before the cleanup finalizer (then the CRD).
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pyk8s.api import errors
from pyk8s.api.catalogue import ResourceInfo
from pyk8s.apiserver import tables
from pyk8s.registry.customresource import (CLEANUP_FINALIZER, CustomResourceConversion,
                                           CustomResourceStrategy, ServedVersion,
                                           served_versions, set_condition, storage_version)
from pyk8s.registry.store import DeleteOptions, ListOptions
from pyk8s.registry.strategy import Strategy

if TYPE_CHECKING:
    from pyk8s.apiserver.app import APIServer

log = logging.getLogger("pyk8s.apiserver.crd")
Obj = dict[str, Any]


class CRDController:
    def __init__(self, server: "APIServer") -> None:
        self.server = server
        self.served: dict[tuple[str, str, str], ServedVersion] = {}
        self.by_crd: dict[str, list[ServedVersion]] = {}
        self._crd_rv: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._cleanups: dict[str, asyncio.Task[None]] = {}

    @property
    def crd_info(self) -> ResourceInfo:
        info = self.server.catalogue.lookup("apiextensions.k8s.io", "v1",
                                            "customresourcedefinitions")
        assert info is not None
        return info

    # -- what the server asks -------------------------------------------------------------
    def strategy_for(self, info: ResourceInfo) -> Strategy | None:
        sv = self.served.get((info.group, info.version, info.plural))
        return CustomResourceStrategy(sv) if sv and sv.info == info else None

    def conversion_for(self, info: ResourceInfo) -> CustomResourceConversion | None:
        sv = self.served.get((info.group, info.version, info.plural))
        return CustomResourceConversion(sv) if sv and sv.info == info else None

    def is_custom(self, info: ResourceInfo) -> bool:
        return (info.group, info.version, info.plural) in self.served

    def terminating(self, info: ResourceInfo) -> bool:
        """The resource's CRD is being deleted (creates are refused, as upstream)."""
        sv = self.served.get((info.group, info.version, info.plural))
        crd = self._current(sv.crd_name) if sv else None
        return bool(crd and crd["metadata"].get("deletionTimestamp"))

    def schema_for(self, info: ResourceInfo) -> Obj | None:
        sv = self.served.get((info.group, info.version, info.plural))
        return sv.schema if sv else None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        cache = self.server.cache
        prefix = self.crd_info.storage_prefix
        rc = cache.resource(prefix)
        initial = rc.items(prefix)
        watcher = cache.watch(prefix, prefix, cache.processed_rev, lambda o: True,
                              initial=initial)
        for _ in range(watcher.initial_count):
            _, obj, _ = watcher.queue.get_nowait()
            await self._sync(obj["metadata"]["name"])
        self._task = asyncio.create_task(self._run(watcher), name="crd-controller")

    async def stop(self) -> None:
        for t in [self._task, *self._cleanups.values()]:
            if t is not None:
                t.cancel()

    async def _run(self, watcher: Any) -> None:
        while True:
            type_, obj, ev = await watcher.queue.get()
            if type_ == "CLOSED":
                await asyncio.sleep(0.2)
                await self.start()  # the cache reloaded: start over
                return
            if ev is not None:
                obj = ev.obj
            try:
                await self._sync(obj["metadata"]["name"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("syncing CRD %s failed", obj.get("metadata", {}).get("name"))

    # -- reconcile ----------------------------------------------------------------------------
    def _current(self, name: str) -> Obj | None:
        info = self.crd_info
        return self.server.cache.resource(info.storage_prefix).objects.get(info.key(None, name))

    async def _sync(self, name: str) -> None:
        crd = self._current(name)
        if crd is None:
            self._unregister(name)
            return
        import orjson
        rv = orjson.dumps(crd.get("spec"), option=orjson.OPT_SORT_KEYS).decode()
        accepted, reason, message = self._names_accepted(crd)
        if self._crd_rv.get(name) != rv:
            self._crd_rv[name] = rv
            if accepted:
                self._register(name, crd)
            else:
                self._unregister(name)
        await self._update_status(crd, accepted, reason, message)
        md = crd["metadata"]
        if md.get("deletionTimestamp") and CLEANUP_FINALIZER in (md.get("finalizers") or []) \
                and name not in self._cleanups:
            self._cleanups[name] = asyncio.create_task(self._cleanup(name, crd),
                                                       name=f"crd-cleanup-{name}")

    def _names_accepted(self, crd: Obj) -> tuple[bool, str, str]:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group = spec.get("group")
        me = crd["metadata"]["name"]
        for other, svs in self.by_crd.items():
            if other == me or not svs or svs[0].info.group != group:
                continue
            oi = svs[0].info
            if oi.plural == names.get("plural"):
                return False, "PluralConflict", f'"{oi.plural}" is already in use'
            if oi.kind == names.get("kind"):
                return False, "KindConflict", f'"{oi.kind}" is already in use'
        for r in self.server.catalogue.resources:
            if r.group == group and not self.is_custom(r) and r.plural == names.get("plural"):
                return False, "PluralConflict", f'"{r.plural}" is already in use'
        return True, "NoConflicts", "no conflicts found"

    def _register(self, name: str, crd: Obj) -> None:
        old = self.by_crd.get(name, [])
        new = served_versions(crd)
        cat = self.server.catalogue
        old_infos = [sv.info for sv in old]
        new_infos = [sv.info for sv in new]
        for sv in old:
            self.served.pop((sv.info.group, sv.info.version, sv.info.plural), None)
            self.server.stores.pop((sv.info.group, sv.info.version, sv.info.plural), None)
        for sv in new:
            self.served[(sv.info.group, sv.info.version, sv.info.plural)] = sv
            self.server.stores.pop((sv.info.group, sv.info.version, sv.info.plural), None)
        self.by_crd[name] = new
        if old_infos != new_infos:
            cat.resources = [r for r in cat.resources if r not in old_infos] + new_infos
        for sv in reversed(new):  # printers are per kind: the preferred version's wins
            _register_printer(sv)
        self.server.openapi.invalidate()

    def _unregister(self, name: str) -> None:
        self._crd_rv.pop(name, None)
        old = self.by_crd.pop(name, [])
        if not old:
            return
        infos = [sv.info for sv in old]
        for sv in old:
            self.served.pop((sv.info.group, sv.info.version, sv.info.plural), None)
            self.server.stores.pop((sv.info.group, sv.info.version, sv.info.plural), None)
        cat = self.server.catalogue
        cat.resources = [r for r in cat.resources if r not in infos]
        self.server.openapi.invalidate()

    async def _update_status(self, crd: Obj, accepted: bool, reason: str, message: str) -> None:
        name = crd["metadata"]["name"]
        names = dict((crd.get("spec") or {}).get("names") or {})
        stored = storage_version(crd)

        def mutate(cur: Obj) -> Obj:
            status = cur.setdefault("status", {})
            set_condition(status, "NamesAccepted", "True" if accepted else "False", reason,
                          message)
            if accepted:
                status["acceptedNames"] = names
                set_condition(status, "Established", "True", "InitialNamesAccepted",
                              "the initial names have been accepted")
            else:
                status.setdefault("acceptedNames", {"plural": "", "kind": ""})
                set_condition(status, "Established", "False", "NotAccepted",
                              "not all names are accepted")
            sv = list(status.get("storedVersions") or [])
            if stored and stored not in sv:
                sv.append(stored)
            status["storedVersions"] = sv
            return cur

        probe = mutate(_copy(crd))
        if probe.get("status") == crd.get("status"):
            return
        try:
            await self.server.store(self.crd_info).update(None, name, mutate,
                                                          subresource="status")
        except errors.NotFound:
            pass

    async def _cleanup(self, name: str, crd: Obj) -> None:
        """Delete every custom resource of the CRD, wait until they are gone, then drop the
        cleanup finalizer (which removes the CRD)."""
        try:
            svs = self.by_crd.get(name) or served_versions(crd)
            if svs:
                info = svs[0].info
                store = self.server.store(info) if self.is_custom(info) else None
                while store is not None:
                    items = (await store.list(None, ListOptions())).items
                    if not items:
                        break
                    for o in items:
                        md = o["metadata"]
                        if md.get("deletionTimestamp"):
                            continue
                        try:
                            await store.delete(md.get("namespace"), md["name"], DeleteOptions())
                        except errors.NotFound:
                            pass
                    await asyncio.sleep(0.2)

            def drop(cur: Obj) -> Obj:
                fins = [f for f in cur["metadata"].get("finalizers") or []
                        if f != CLEANUP_FINALIZER]
                cur["metadata"]["finalizers"] = fins
                return cur
            await self.server.store(self.crd_info).update(None, name, drop)
        except errors.NotFound:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cleaning up CRD %s failed", name)
        finally:
            self._cleanups.pop(name, None)


def _copy(o: Obj) -> Obj:
    import copy
    return copy.deepcopy(o)


# --- printer columns ---------------------------------------------------------------------------

def _jsonpath(obj: Any, path: str) -> Any:
    p = path.strip()
    if p.startswith("{") and p.endswith("}"):
        p = p[1:-1]
    p = p.lstrip("$")
    cur = obj
    for part in [x for x in p.replace("[", ".[").split(".") if x]:
        if part.startswith("[") and part.endswith("]"):
            idx = part[1:-1]
            if isinstance(cur, list) and idx.lstrip("-").isdigit() and -len(cur) <= int(idx) < len(cur):
                cur = cur[int(idx)]
            elif isinstance(cur, dict) and idx.strip("'\"") in cur:
                cur = cur[idx.strip("'\"")]
            else:
                return None
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def _register_printer(sv: ServedVersion) -> None:
    cols = sv.columns or [{"name": "Age", "type": "date",
                           "jsonPath": ".metadata.creationTimestamp"}]
    defs = [tables._name_col()] + [  # noqa: SLF001
        {"name": c.get("name", ""), "type": c.get("type", "string"),
         "format": c.get("format", ""), "description": c.get("description", ""),
         "priority": int(c.get("priority") or 0)} for c in cols]

    def cells(obj: Obj, now: datetime) -> list:
        row: list = [obj.get("metadata", {}).get("name", "")]
        for c in cols:
            v = _jsonpath(obj, c.get("jsonPath", ""))
            t = c.get("type")
            if v is None:
                row.append(None)
            elif t == "date":
                row.append(tables.translate_timestamp_since(v, now))
            elif t == "integer" and isinstance(v, (int, float)) and not isinstance(v, bool):
                row.append(int(v))
            elif t in ("string",) and not isinstance(v, str):
                import orjson
                row.append(orjson.dumps(v).decode() if isinstance(v, (dict, list)) else
                           (str(v).lower() if isinstance(v, bool) else str(v)))
            else:
                row.append(v)
        return row

    tables.register_printer(sv.info.group, sv.info.kind, defs, cells)

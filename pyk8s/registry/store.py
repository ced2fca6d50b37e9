"""The generic store: CRUD, list, watch and delete semantics for any resource.

Like upstream's `genericregistry.Store`: writes go to storage (optimistic concurrency via
`guaranteed_update`), reads of lists and watches come from the watch cache, and every
resource-specific rule is in its `Strategy`.
"""
from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

import orjson

from pyk8s.api import errors, managedfields, meta, pruning, schemas
from pyk8s.api.catalogue import ResourceInfo
from pyk8s.api.selectors import (FieldSelector, LabelSelector, SelectorError,
                                 convert_field_selector, object_fields, parse_label_selector)
from pyk8s.registry.conversion import conversion_for
from pyk8s.registry.strategy import NamespaceStrategy, Strategy
from pyk8s.storage import interface as st
from pyk8s.watch.cache import CacheEvent, TooLarge, TooOld, WatchCache, Watcher, decode

Obj = dict[str, Any]

_CONFLICT_MSG = "the object has been modified; please apply your changes to the latest version and try again"


def encode(obj: Obj) -> bytes:
    """Objects are stored without resourceVersion (it is the storage revision)."""
    md = obj.get("metadata") or {}
    rv = md.pop("resourceVersion", None)
    try:
        return orjson.dumps(obj)
    finally:
        if rv is not None:
            md["resourceVersion"] = rv


@dataclass
class ListOptions:
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    orphan_dependents: bool | None = None
    preconditions: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False

    @classmethod
    def from_body(cls, body: Obj | None, query: dict[str, str]) -> "DeleteOptions":
        body = body or {}
        opts = cls()
        gp = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        if gp is not None and gp != "":
            try:
                opts.grace_period_seconds = int(gp)
            except (TypeError, ValueError):
                raise errors.BadRequest(f"invalid gracePeriodSeconds: {gp}") from None
        opts.propagation_policy = body.get("propagationPolicy") or query.get("propagationPolicy")
        if opts.propagation_policy not in (None, "Foreground", "Background", "Orphan"):
            raise errors.Invalid(f'Unsupported value: "{opts.propagation_policy}": supported '
                                 'values: "Foreground", "Background", "Orphan"')
        od = body.get("orphanDependents", query.get("orphanDependents"))
        if od is not None:
            opts.orphan_dependents = od if isinstance(od, bool) else meta.parse_bool(str(od))
        opts.preconditions = body.get("preconditions") or {}
        dr = body.get("dryRun")
        opts.dry_run = bool(dr) or query.get("dryRun") == "All"
        return opts


class _DeleteInstead(Exception):
    def __init__(self, obj: Obj) -> None:
        self.obj = obj


@dataclass
class ListResult:
    items: list[Obj]
    resource_version: int
    continue_token: str | None = None
    remaining: int | None = None


class Admission(Protocol):
    """The admission chain (pyk8s.apiserver.admission.Chain) as the store sees it."""
    async def admit(self, attrs: Any) -> None: ...
    async def validate(self, attrs: Any) -> None: ...


AttributesFactory = Callable[..., Any]


class Transaction(Protocol):
    """What a `begin_create` / `begin_update` hook did outside the object's own key
    (upstream's BeginCreate / BeginUpdate finish functions): `commit` once the write is
    stored, `revert` when it certainly was not."""
    async def commit(self) -> None: ...
    async def revert(self) -> None: ...


# Failures after which the write certainly did not happen (so a hook's work is reverted);
# after anything else (cancellation, storage trouble) it may have, and is kept.
_CERTAIN_FAILURES = (errors.ApiError, st.KeyExists, st.KeyNotFound, st.RevisionConflict,
                     _DeleteInstead)


class Store:
    def __init__(self, info: ResourceInfo, storage: st.Storage, cache: WatchCache,
                 strategy: Strategy) -> None:
        self.info = info
        self.storage = storage
        self.cache = cache
        self.strategy = strategy
        # Admission: set by the API server (None: no admission, e.g. unit tests).
        self.admission: Admission | None = None
        self.attributes: AttributesFactory | None = None
        self.conversion = conversion_for(info)
        self.schema = schemas.schema_for(info.group, info.version, info.kind)

    def external(self, obj: Obj) -> Obj:
        """A stored object in the version this store serves (the same dict if no conversion)."""
        return self.conversion.to_external(obj) if self.conversion else obj

    def _encode(self, obj: Obj) -> bytes:
        return encode(self.conversion.to_storage(obj) if self.conversion else obj)

    # -- helpers ---------------------------------------------------------------------------
    def _key(self, namespace: str | None, name: str) -> str:
        return self.info.key(namespace, name)

    def not_found(self, name: str) -> errors.NotFound:
        return errors.NotFound.of(self.info.group, self.info.plural, name)

    def _invalid(self, name: str, causes: list[errors.StatusCause]) -> errors.Invalid:
        return errors.Invalid.of(self.info.group, self.info.kind, name, causes)

    def _conflict(self, name: str, why: str = _CONFLICT_MSG) -> errors.Conflict:
        return errors.Conflict.of(self.info.group, self.info.plural, name, why)

    def _stamp(self, obj: Obj) -> None:
        obj["apiVersion"] = self.info.api_version
        obj["kind"] = self.info.kind

    # -- hooks: state outside the object's key (Services' cluster IPs and node ports) -------
    async def begin_create(self, obj: Obj, dry_run: bool) -> Transaction | None:
        """Called with a valid object about to be created."""
        return None

    async def begin_update(self, new: Obj, old: Obj, dry_run: bool) -> Transaction | None:
        """Called with a valid changed object about to replace `old` (main resource only)."""
        return None

    async def after_delete(self, obj: Obj) -> None:
        """Called once `obj` is gone from storage."""

    def reset_paths(self, subresource: str) -> list[tuple[str, ...]]:
        """Fields a write through this endpoint cannot set (upstream's reset fields)."""
        if subresource == "status":
            return [("spec",)]
        return [("status",)] if self.strategy.has_status else []

    def track_managed_fields(self, old: Obj | None, new: Obj, manager: str,
                             subresource: str = "") -> None:
        """Record `manager`'s Update in `metadata.managedFields` (every non-apply write)."""
        if not manager:
            return
        entries = managedfields.update_managed_fields(
            old, new, manager, subresource=subresource, now=meta.rfc3339(), schema=self.schema,
            api_version=self.info.api_version, reset_paths=self.reset_paths(subresource))
        if entries:
            new["metadata"]["managedFields"] = entries
        else:
            new["metadata"].pop("managedFields", None)

    def apply(self, live: Obj | None, applied: Obj, manager: str, force: bool,
              subresource: str = "") -> Obj:
        """Server-side apply of `applied` onto `live` (None: create)."""
        return managedfields.apply(live, applied, manager, force=force, schema=self.schema,
                                   now=meta.rfc3339(), api_version=self.info.api_version,
                                   kind=self.info.kind, subresource=subresource,
                                   reset_paths=self.reset_paths(subresource))

    def prune(self, obj: Obj, field_validation: str) -> list[str]:
        """Drop unknown fields; Strict → 400, Warn → warnings (returned)."""
        custom = getattr(self.strategy, "prune_unknown", None)  # custom resources' schemas
        unknown = custom(obj) if custom else pruning.prune_unknown_fields(
            self.info.group, self.info.version, self.info.kind, obj)
        if not unknown:
            return []
        msgs = [f'unknown field "{p}"' for p in unknown]
        if field_validation == "Strict":
            kind, ver = self.info.kind, self.info.version
            raise errors.BadRequest(
                f'{kind} in version "{ver}" cannot be handled as a {kind}: strict decoding '
                f"error: {', '.join(msgs)}")
        return msgs if field_validation == "Warn" else []

    def _attrs(self, operation: str, namespace: str | None, name: str, obj: Obj | None,
               old: Obj | None, subresource: str, user: Any, dry_run: bool) -> Any:
        assert self.attributes is not None
        info = self.info
        return self.attributes(operation=operation, group=info.group, version=info.version,
                               resource=info.plural, kind=info.kind,
                               namespace=namespace or "", name=name, object=obj,
                               old_object=old, subresource=subresource, user=user,
                               dry_run=dry_run)

    # -- create ----------------------------------------------------------------------------
    async def create(self, namespace: str | None, obj: Obj, *, dry_run: bool = False,
                     field_validation: str = "Warn", manager: str = "",
                     applied: bool = False, user: Any = None) -> tuple[Obj, list[str]]:
        """`manager` names the field manager of this write; `applied` says managedFields
        were already computed by server-side apply."""
        self._stamp(obj)
        md = meta.metadata(obj)
        if self.info.namespaced:
            if md.get("namespace") and namespace and md["namespace"] != namespace:
                raise errors.BadRequest("the namespace of the provided object does not match "
                                        "the namespace sent on the request")
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        if md.get("resourceVersion"):
            raise errors.BadRequest("resourceVersion should not be set on objects to be created")
        if not md.get("name") and md.get("generateName"):
            md["name"] = meta.generate_name(md["generateName"])
        warnings = self.prune(obj, field_validation)
        self.strategy.default(obj)
        attrs = None
        if self.admission is not None:
            attrs = self._attrs("CREATE", namespace, md.get("name") or "", obj, None, "",
                                user, dry_run)
            await self.admission.admit(attrs)
            obj = attrs.object
            if attrs.mutated:
                self._stamp(obj)
                self.strategy.default(obj)
            md = meta.metadata(obj)
            if self.info.namespaced:
                md["namespace"] = namespace
        self.strategy.prepare_for_create(obj)
        if hasattr(self.strategy, "set_user"):
            self.strategy.set_user(obj, user)
        md["uid"] = meta.new_uid()
        md["creationTimestamp"] = meta.rfc3339()
        self.strategy.prepare_with_identity(obj)
        name = md.get("name") or ""
        causes = self.strategy.validate(obj)
        if causes:
            raise self._invalid(name, causes)
        if not applied:
            self.track_managed_fields(None, obj, manager)
        txn = await self.begin_create(obj, dry_run)
        try:
            if attrs is not None:
                assert self.admission is not None
                attrs.object = obj
                await self.admission.validate(attrs)
            if dry_run:
                return obj, warnings
            try:
                kv = await self.storage.create(self._key(namespace, name), self._encode(obj))
            except st.KeyExists:
                raise errors.AlreadyExists.of(self.info.group, self.info.plural,
                                              name) from None
        except _CERTAIN_FAILURES:
            if txn is not None:
                await txn.revert()
            raise
        if txn is not None:
            await txn.commit()
        md["resourceVersion"] = str(kv.mod_revision)
        return obj, warnings

    # -- get -------------------------------------------------------------------------------
    async def get(self, namespace: str | None, name: str) -> Obj:
        try:
            kv = await self.storage.get(self._key(namespace, name))
        except st.KeyNotFound:
            raise self.not_found(name) from None
        return self.external(decode(kv.value, kv.mod_revision))

    # -- list ------------------------------------------------------------------------------
    def selectors(self, opts: ListOptions) -> tuple[LabelSelector, FieldSelector]:
        try:
            ls = parse_label_selector(opts.label_selector or "")
            fs = convert_field_selector(self.info.group, self.info.kind, opts.field_selector or "")
        except SelectorError as e:
            raise errors.BadRequest(str(e)) from None
        return ls, fs

    def matcher(self, ls: LabelSelector, fs: FieldSelector) -> Callable[[Obj], bool]:
        group, kind = self.info.group, self.info.kind
        if ls.empty and fs.empty:
            return lambda o: True

        def matches(o: Obj) -> bool:
            md = o.get("metadata") or {}
            if not ls.matches(md.get("labels") or {}):
                return False
            return fs.empty or fs.matches(object_fields(group, kind, o))
        return matches

    async def _read_rev(self, rv: str) -> int | None:
        """The revision to serve a read at: None = whatever the cache has now."""
        if rv == "":
            return await self.cache.consistent_rev()
        try:
            n = int(rv)
        except ValueError:
            raise errors.BadRequest(f"invalid resource version: {rv}") from None
        if n == 0:
            return None
        try:
            await self.cache.wait_for(n)
        except TooLarge as e:
            raise _too_large(e) from None
        return n

    async def list(self, namespace: str | None, opts: ListOptions) -> ListResult:
        ls, fs = self.selectors(opts)
        matches = self.matcher(ls, fs)
        rc = self.cache.resource(self.info.storage_prefix)
        prefix = self.info.list_prefix(namespace)
        start = ""
        exact: int | None = None
        if opts.continue_token:
            start, exact = _decode_continue(opts.continue_token)
            if opts.resource_version not in ("", "0"):
                raise errors.BadRequest("specifying resource version is not allowed when using continue")
        else:
            exact_match = opts.resource_version_match == "Exact"
            if opts.resource_version_match not in ("", "Exact", "NotOlderThan"):
                raise errors.BadRequest(
                    f'resourceVersionMatch: Unsupported value: "{opts.resource_version_match}"')
            if opts.resource_version_match and opts.resource_version in ("",):
                raise errors.BadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
            rev = await self._read_rev(opts.resource_version)
            if exact_match or (opts.limit and rev is not None and opts.resource_version not in ("", "0")):
                exact = rev
        current = self.cache.processed_rev
        if exact is not None and exact < current:
            try:
                pairs = rc.items_at(prefix, exact, current)
            except TooOld:
                if opts.continue_token:
                    raise errors.Expired(_CONTINUE_EXPIRED, details=None) from None
                raise errors.Expired(f"too old resource version: {exact} ({rc.window_start})") from None
            list_rev = exact
        else:
            pairs = sorted((k, v) for k, v in rc.objects.items() if k.startswith(prefix))
            list_rev = current if exact is None else exact
        if start:
            full_start = self.info.storage_prefix + start
            pairs = [(k, v) for k, v in pairs if k >= full_start]
        items: list[Obj] = []
        token: str | None = None
        remaining: int | None = None
        for i, (k, o) in enumerate(pairs):
            if not matches(o):
                continue
            if opts.limit and len(items) >= opts.limit:
                token = _encode_continue(k[len(self.info.storage_prefix):], list_rev)
                if ls.empty and fs.empty:
                    remaining = len(pairs) - i
                break
            items.append(o)
        if self.conversion:
            items = [self.external(o) for o in items]
        return ListResult(items, list_rev, token, remaining)

    # -- watch -----------------------------------------------------------------------------
    async def watch(self, namespace: str | None, opts: ListOptions, *,
                    send_initial_events: bool | None = None) -> tuple[Watcher, int]:
        ls, fs = self.selectors(opts)
        matches = self.matcher(ls, fs)
        rc_prefix = self.info.storage_prefix
        key_prefix = self.info.list_prefix(namespace)
        rv = opts.resource_version
        initial: list[Obj] | None = None
        if send_initial_events is None:
            send_initial_events = rv in ("", "0")
        if rv not in ("", "0"):
            try:
                from_rv = int(rv)
            except ValueError:
                raise errors.BadRequest(f"invalid resource version: {rv}") from None
            try:
                await self.cache.wait_for(from_rv)
            except TooLarge as e:
                raise _too_large(e) from None
        else:
            if rv == "":
                await self.cache.consistent_rev()
            from_rv = self.cache.processed_rev
        if send_initial_events:
            rc = self.cache.resource(rc_prefix)
            if from_rv < self.cache.processed_rev and rv not in ("", "0"):
                initial = [o for _, o in rc.items_at(key_prefix, from_rv, self.cache.processed_rev)]
            else:
                from_rv = self.cache.processed_rev
                initial = rc.items(key_prefix)
        try:
            w = self.cache.watch(rc_prefix, key_prefix, from_rv, matches, initial=initial)
        except TooOld as e:
            raise errors.Expired(str(e)) from None
        return w, from_rv

    # -- update ----------------------------------------------------------------------------
    async def update(self, namespace: str | None, name: str,
                     mutate: Callable[[Obj], Awaitable[Obj] | Obj], *,
                     subresource: str = "", dry_run: bool = False,
                     field_validation: str = "Warn", create_obj: Obj | None = None,
                     manager: str = "", applied: bool = False, user: Any = None,
                     ) -> tuple[Obj, bool, list[str]]:
        """Read-modify-write. `mutate(current)` returns the new object as the client wants it.

        Returns (object, created, warnings). With `create_obj` (PUT of a missing object
        for kinds that allow create-on-update, or apply) a missing object is created.
        """
        key = self._key(namespace, name)
        warnings: list[str] = []
        result: dict[str, Obj] = {}
        txns: list[Transaction] = []  # the begin_update of the latest attempt

        async def fn(kv: st.KeyValue) -> bytes | None:
            while txns:  # a retry: what the previous attempt allocated is not needed
                await txns.pop().revert()
            old = self.external(decode(kv.value, kv.mod_revision))
            new = mutate(copy.deepcopy(old))
            if hasattr(new, "__await__"):
                new = await new  # type: ignore[misc]
            assert isinstance(new, dict)
            new_obj = await self._prepare_update(new, old, subresource, field_validation,
                                                 warnings, user, dry_run)
            if not applied and subresource in ("", "status"):
                self.track_managed_fields(old, new_obj, manager, subresource)
            want_rv = (new_obj.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise self._conflict(name)
            new_obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            # A no-op is skipped, unless storage read a stale value (written with an older
            # encryption key): then it is rewritten, as upstream's GuaranteedUpdate does.
            if new_obj == old and not kv.stale:
                result["obj"] = old
                return None
            md = new_obj["metadata"]
            if md.get("deletionTimestamp") and not md.get("finalizers") and \
                    not _namespace_finalizers(new_obj, self.strategy):
                raise _DeleteInstead(new_obj)
            if subresource == "":
                txn = await self.begin_update(new_obj, old, dry_run)
                if txn is not None:
                    txns.append(txn)
            result["obj"] = new_obj
            if dry_run:
                return None
            return self._encode(new_obj)

        while True:
            try:
                try:
                    kv = await self.storage.guaranteed_update(key, fn)
                except _CERTAIN_FAILURES:
                    while txns:
                        await txns.pop().revert()
                    raise
            except st.KeyNotFound:
                if create_obj is None:
                    raise self.not_found(name) from None
                obj, w = await self.create(namespace, create_obj, dry_run=dry_run,
                                           field_validation=field_validation,
                                           manager=manager, applied=applied, user=user)
                return obj, True, w
            except _DeleteInstead as d:
                if dry_run:
                    return d.obj, False, warnings
                try:
                    rev = int(d.obj["metadata"]["resourceVersion"])
                    gone = await self.storage.delete(key, expected_revision=rev)
                except st.RevisionConflict:
                    continue
                except st.KeyNotFound:
                    raise self.not_found(name) from None
                await self.after_delete(self.external(decode(gone.value, gone.mod_revision)))
                return d.obj, False, warnings
            for txn in txns:
                await txn.commit()
            obj = result["obj"]
            if not dry_run:
                obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
            return obj, False, warnings

    async def _prepare_update(self, new: Obj, old: Obj, subresource: str,
                              field_validation: str, warnings: list[str], user: Any = None,
                              dry_run: bool = False) -> Obj:
        name = old["metadata"]["name"]
        self._stamp(new)
        md = meta.metadata(new)
        if md.get("name") not in (None, name):
            raise errors.BadRequest(f'the name of the object ({md.get("name")}) does not '
                                    f"match the name on the URL ({name})")
        if self.info.namespaced:
            ns = old["metadata"].get("namespace")
            if md.get("namespace") not in (None, "", ns):
                raise errors.BadRequest("the namespace of the provided object does not match "
                                        "the namespace sent on the request")
            md["namespace"] = ns
        md["name"] = name
        warnings.extend(self.prune(new, field_validation))
        if subresource == "status":
            new = self.strategy.prepare_for_status_update(new, old)
            causes = self.strategy.validate_status(new, old)
        elif subresource == "binding":
            causes = []  # the binding handler changed only spec.nodeName and a condition
        elif subresource == "approval" and hasattr(self.strategy, "prepare_for_approval"):
            new = self.strategy.prepare_for_approval(new, old)
            causes = self.strategy.validate_approval(new, old)
        elif subresource == "finalize" and isinstance(self.strategy, NamespaceStrategy):
            new = self.strategy.prepare_for_finalize(new, old)
            causes = []
        else:
            self.strategy.default(new)
            attrs = None
            if self.admission is not None:
                attrs = self._attrs("UPDATE", old["metadata"].get("namespace"), name, new,
                                    old, subresource, user, dry_run)
                await self.admission.admit(attrs)
                new = attrs.object
                if attrs.mutated:
                    self._stamp(new)
                    self.strategy.default(new)
                new["metadata"]["name"] = name
                if self.info.namespaced:
                    new["metadata"]["namespace"] = old["metadata"].get("namespace")
            self.strategy.prepare_for_update(new, old)
            causes = self.strategy.validate(new, old)
            if not causes and attrs is not None:
                assert self.admission is not None
                attrs.object = new
                await self.admission.validate(attrs)
            return self._checked(name, new, causes)
        if not causes and self.admission is not None and subresource in ("status", "approval"):
            attrs = self._attrs("UPDATE", old["metadata"].get("namespace"), name, new, old,
                                subresource, user, dry_run)
            await self.admission.admit(attrs)
            new = attrs.object
            await self.admission.validate(attrs)
        return self._checked(name, new, causes)

    def _checked(self, name: str, new: Obj, causes: list[errors.StatusCause]) -> Obj:
        if causes:
            raise self._invalid(name, causes)
        return new

    # -- delete ----------------------------------------------------------------------------
    async def delete(self, namespace: str | None, name: str,
                     opts: DeleteOptions, user: Any = None) -> tuple[Obj, bool]:
        """Returns (object, pending): pending objects remain (finalizers, grace period)."""
        key = self._key(namespace, name)
        admitted = False
        while True:
            current = await self.get(namespace, name)
            self._check_preconditions(current, opts, name)
            if self.admission is not None and not admitted:
                attrs = self._attrs("DELETE", namespace, name, None, current, "", user,
                                    opts.dry_run)
                await self.admission.validate(attrs)
                admitted = True
            md = current["metadata"]
            finalizers = list(md.get("finalizers") or [])
            policy = opts.propagation_policy
            if policy is None and opts.orphan_dependents is not None:
                policy = "Orphan" if opts.orphan_dependents else "Background"
            if policy is None and "orphan" in finalizers:
                policy = "Orphan"
            grace = self.strategy.graceful_delete_seconds(current, opts.grace_period_seconds)
            wants = list(finalizers)
            if policy == "Foreground" and "foregroundDeletion" not in wants:
                wants = [f for f in wants if f != "orphan"] + ["foregroundDeletion"]
            elif policy == "Orphan" and "orphan" not in wants:
                wants = [f for f in wants if f != "foregroundDeletion"] + ["orphan"]
            elif policy == "Background":
                wants = [f for f in wants if f not in ("orphan", "foregroundDeletion")]
            on_delete = getattr(self.strategy, "finalizers_on_delete", None)  # CRD cleanup
            if on_delete is not None:
                wants = on_delete(current, wants)
            ns_finalizers = _namespace_finalizers(current, self.strategy)
            if not wants and grace == 0 and not ns_finalizers:
                if opts.dry_run:
                    return current, False
                try:
                    kv = await self.storage.delete(key, expected_revision=int(md["resourceVersion"]))
                except st.RevisionConflict:
                    continue
                except st.KeyNotFound:
                    raise self.not_found(name) from None
                gone = self.external(decode(kv.value, kv.mod_revision))
                await self.after_delete(gone)
                return gone, False
            # Graceful / finalized deletion: mark, keep.
            if md.get("deletionTimestamp") and wants == finalizers and grace >= int(
                    md.get("deletionGracePeriodSeconds") or 0):
                return current, True
            obj = copy.deepcopy(current)
            omd = obj["metadata"]
            now = meta.now()
            if not omd.get("deletionTimestamp"):
                from datetime import timedelta
                omd["deletionTimestamp"] = meta.rfc3339(now + timedelta(seconds=grace))
            omd["deletionGracePeriodSeconds"] = grace
            if wants:
                omd["finalizers"] = wants
            else:
                omd.pop("finalizers", None)
            self.strategy.on_delete_pending(obj)
            if opts.dry_run:
                return obj, True
            try:
                kv = await self.storage.guaranteed_update(
                    key, lambda _kv, o=obj: self._encode(o), expected_revision=int(md["resourceVersion"]))
            except st.RevisionConflict:
                continue
            except st.KeyNotFound:
                raise self.not_found(name) from None
            obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
            return obj, True

    def _check_preconditions(self, obj: Obj, opts: DeleteOptions, name: str) -> None:
        pre = opts.preconditions
        md = obj["metadata"]
        if pre.get("uid") and pre["uid"] != md.get("uid"):
            raise self._conflict(name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                       f"UID in object meta: {md.get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != md.get("resourceVersion"):
            raise self._conflict(name, "Precondition failed: ResourceVersion in precondition: "
                                       f"{pre['resourceVersion']}, ResourceVersion in object "
                                       f"meta: {md.get('resourceVersion')}")

    async def delete_collection(self, namespace: str | None, lopts: ListOptions,
                                dopts: DeleteOptions, user: Any = None) -> list[Obj]:
        res = await self.list(namespace, ListOptions(label_selector=lopts.label_selector,
                                                     field_selector=lopts.field_selector))
        out = []
        for o in res.items:
            try:
                obj, _ = await self.delete(o["metadata"].get("namespace"), o["metadata"]["name"],
                                           dopts, user)
                out.append(obj)
            except errors.NotFound:
                pass
        return out


def _namespace_finalizers(obj: Obj, strategy: Strategy) -> list[str]:
    if isinstance(strategy, NamespaceStrategy):
        return list((obj.get("spec") or {}).get("finalizers") or [])
    return []


_CONTINUE_EXPIRED = ("The provided continue parameter is too old to display a consistent list "
                     "result. You can start a new list without the continue parameter, or use "
                     "the continue token in this response to retrieve the remainder of the "
                     "results. Continuing with the provided token results in an inconsistent "
                     "list - objects that were created, modified, or deleted between the time "
                     "the first chunk was returned and now may show up in the list.")


def _encode_continue(start: str, rv: int) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError
        return str(data["start"]), int(data["rv"])
    except Exception:
        raise errors.BadRequest("continue key is not valid: invalid continue token") from None


def _too_large(e: TooLarge) -> errors.ApiError:
    err = errors.Timeout(f"Too large resource version: {e.requested}, current: {e.current}",
                         details={"causes": [{"reason": "ResourceVersionTooLarge",
                                              "message": "Too large resource version"}],
                                  "retryAfterSeconds": 1})
    return err


__all__ = ["Store", "ListOptions", "DeleteOptions", "ListResult", "CacheEvent", "encode"]
